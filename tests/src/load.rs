//! Load generator for a localnet of real `ledgerd` processes: pre-signed transfers submitted through
//! `POST /txs/batch`, open-loop at a target rate or at full speed, and a chain observer that records when each
//! block height first appears on a node.
//!
//! What it is: a client a real user could run. It signs everything before the measurement (signing costs
//! ~13 µs per transaction and would otherwise compete with the nodes for the same cores), sends hex in JSON
//! as the API requires, and never reads node internals. What it is not: a correctness test. It counts what the
//! nodes answer and what they commit; it does not check balances.
//!
//! Ordering: transaction `i` is sent by dev account `i % K` with nonce `i / K` (one "round" of nonces over all
//! senders after the other). Sender `s` is owned by sender thread `s % T`, which always submits to node
//! `t % n`: one sender's transactions reach one node in nonce order, so the per-sender nonce window of the
//! mempool (`mempool.max_nonce_gap`) is never exceeded by reordering, only by a backlog.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::{Keypair, PublicKey, Transaction};
use serde::Deserialize;

/// Most transactions `POST /txs/batch` accepts in one request (docs/api.md).
pub const BATCH_TXS_MAX: usize = 1000;
/// Transactions a sender thread's batch holds when `asked` are asked of a thread owning `senders`: a batch
/// takes one transaction per sender, so at most `senders`.
pub fn batch_held(asked: usize, senders: usize) -> usize {
    asked.min(senders).max(1)
}
/// Attempts of one batch request when the node answers 429/503 or the connection fails.
pub const BATCH_ATTEMPTS_MAX: u32 = 20;

/// Pre-signed transactions, in sending order.
pub struct Workload {
    /// Canonical bytes of each signed transaction.
    pub txs: Vec<Vec<u8>>,
    /// Id of each transaction (blake3 of the canonical bytes, as the node computes it).
    pub ids: Vec<[u8; 32]>,
    /// Number of senders (dev accounts) the transactions are spread over.
    pub senders: usize,
}

impl Workload {
    pub fn len(&self) -> usize {
        self.txs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.txs.is_empty()
    }

    pub fn sender_of(&self, i: usize) -> usize {
        i % self.senders
    }
}

/// What every transaction of a workload shares.
pub struct TxTemplate {
    pub chain_id: String,
    pub amount: u64,
    pub fee: u64,
    pub expiry_height: u64,
}

/// One signing thread's output: encoded transactions and their ids.
type SignedPart = (Vec<Vec<u8>>, Vec<[u8; 32]>);

/// Sign `count` transfers: transaction `i` from `keys[i % K]` with nonce `first_nonce + i / K` to the next
/// account's key. Spread over `threads` threads.
pub fn presign(keys: &[Keypair], template: &TxTemplate, count: usize, threads: usize) -> Workload {
    presign_from(keys, template, count, threads, &[])
}

/// [`presign`] with each sender's nonces starting at `first_nonces[s]` (0 where the slice is short): a
/// second workload for accounts that already sent transactions.
pub fn presign_from(
    keys: &[Keypair],
    template: &TxTemplate,
    count: usize,
    threads: usize,
    first_nonces: &[u64],
) -> Workload {
    assert!(keys.len() >= 2, "need at least two accounts");
    let publics: Vec<PublicKey> = keys.iter().map(Keypair::public).collect();
    let k = keys.len();
    let threads = threads.clamp(1, 64);
    let chunk = count.div_ceil(threads).max(1);
    let mut parts: Vec<SignedPart> = Vec::new();
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let publics = &publics;
                scope.spawn(move || {
                    let start = (t * chunk).min(count);
                    let end = ((t + 1) * chunk).min(count);
                    let mut txs = Vec::with_capacity(end - start);
                    let mut ids = Vec::with_capacity(end - start);
                    for i in start..end {
                        let s = i % k;
                        let signed = Transaction {
                            chain_id: template.chain_id.clone(),
                            sender: publics[s],
                            recipient: publics[(s + 1) % k],
                            amount: template.amount,
                            fee: template.fee,
                            nonce: first_nonces.get(s).copied().unwrap_or(0) + (i / k) as u64,
                            expiry_height: template.expiry_height,
                            memo: String::new(),
                        }
                        .sign(&keys[s]);
                        ids.push(*signed.id().as_bytes());
                        txs.push(signed.encode());
                    }
                    (txs, ids)
                })
            })
            .collect();
        parts = handles.into_iter().map(|h| h.join().expect("signing thread panicked")).collect();
    });
    let mut txs = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    for (t, i) in parts {
        txs.extend(t);
        ids.extend(i);
    }
    Workload { txs, ids, senders: k }
}

/// How to submit a workload.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Base URLs of the nodes (`http://127.0.0.1:PORT`).
    pub endpoints: Vec<String>,
    /// Target rate over all threads in tx/s; `None` sends as fast as the nodes answer, bounded by
    /// `inflight_max`.
    pub rate_tps: Option<f64>,
    pub threads: usize,
    /// Transactions per `POST /txs/batch`.
    pub batch: usize,
    /// Stop sending after this long (warm-up included).
    pub duration: Duration,
    /// At full speed: pause while accepted-but-uncommitted transactions exceed this.
    pub inflight_max: u64,
}

/// What one transaction's submission ended as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitStatus {
    NotSent,
    Accepted,
    Rejected,
}

/// Per-transaction submission records, indexed like the workload.
pub struct LoadResult {
    /// Microseconds since the run's epoch when the request carrying the transaction was last sent (the
    /// attempt that was accepted, for an accepted one).
    pub submit_us: Vec<u64>,
    pub status: Vec<SubmitStatus>,
    /// Rejections by the code the node gave (`http_<status>` / `transport` after the last attempt).
    pub rejected_by_code: BTreeMap<String, u64>,
    /// Batch requests sent (each attempt counts).
    pub requests: u64,
    /// Attempts repeated after 429/503 or a connection error.
    pub retries: u64,
    /// Transactions sent again after a refusal worth retrying (full pool, gap under load, sender limit).
    pub resent: u64,
    /// Time spent waiting for an answer, summed over requests, in microseconds (client-side latency of the
    /// batch endpoint).
    pub request_us_total: u64,
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<BatchItem>,
}

#[derive(Deserialize)]
struct BatchItem {
    id: Option<String>,
    error: Option<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    code: String,
}

/// Refusals a client answers by sending the same transaction again later (in nonce order).
pub fn worth_retrying(code: &str) -> bool {
    matches!(code, "mempool_full" | "nonce_gap_under_load" | "sender_limit" | "nonce_too_far_ahead" | "unavailable")
}

/// Submit `work` as `cfg` says. `accepted` is incremented per accepted transaction and `committed` is read
/// (maintained by a [`ChainObserver`]) to bound the backlog at full speed. Returns when every thread has sent
/// its share or `cfg.duration` has passed since `epoch`, or `stop` is set.
pub fn run(
    work: &Workload,
    cfg: &LoadConfig,
    epoch: Instant,
    accepted: &AtomicU64,
    committed: &AtomicU64,
    stop: &AtomicBool,
) -> Result<LoadResult> {
    if cfg.endpoints.is_empty() {
        bail!("no endpoints");
    }
    let threads = cfg.threads.max(1);
    let batch = cfg.batch.clamp(1, BATCH_TXS_MAX);
    let n = work.len();
    let submit_us: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(u64::MAX)).collect();
    let status: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
    let rejected: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let requests = AtomicU64::new(0);
    let retries = AtomicU64::new(0);
    let resent = AtomicU64::new(0);
    let request_us_total = AtomicU64::new(0);
    let start = Instant::now();

    std::thread::scope(|scope| -> Result<()> {
        let mut handles = Vec::new();
        for t in 0..threads {
            let endpoint = cfg.endpoints[t % cfg.endpoints.len()].clone();
            let (submit_us, status, rejected) = (&submit_us, &status, &rejected);
            let (requests, retries, request_us_total, resent) = (&requests, &retries, &request_us_total, &resent);
            handles.push(scope.spawn(move || -> Result<()> {
                let http = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .pool_max_idle_per_host(1)
                    .build()?;
                let url = format!("{endpoint}/txs/batch");
                // This thread's senders, each with a cursor on its next transaction (nonce order: sender a's
                // are a, a + K, a + 2K, ...). A batch takes the cursor transaction of the next senders in
                // turn, one each; the cursor moves on when the node answers, except for a refusal worth
                // retrying (full pool, gap under load, ...): then that transaction is sent again the next
                // time the sender's turn comes, as a client does that keeps its nonces in order.
                let senders = work.senders.max(1);
                let accounts: Vec<usize> = (0..senders.min(n)).filter(|a| a % threads == t).collect();
                let mut cursor: Vec<usize> = accounts.clone();
                // The pace is set by what a batch holds, not by what was asked (with 500 asked of 250
                // senders, a paced thread offered half its rate until session 29).
                let batch = batch_held(batch, accounts.len());
                let mut turn = 0usize;
                let per_thread_rate = cfg.rate_tps.map(|r| r / threads as f64);
                let mut body = String::with_capacity(batch * 400 + 16);
                let mut chunk: Vec<(usize, usize)> = Vec::with_capacity(batch);
                for j in 0usize.. {
                    if stop.load(Ordering::Relaxed) || start.elapsed() >= cfg.duration || accounts.is_empty() {
                        break;
                    }
                    match per_thread_rate {
                        Some(r) => {
                            // Open loop: batch j is due at j * batch / r after the start, whatever happened to
                            // earlier batches; a late thread sends at once and catches up.
                            let due = start + Duration::from_secs_f64((j * batch) as f64 / r);
                            let now = Instant::now();
                            if due > now {
                                std::thread::sleep(due - now);
                            }
                        }
                        None => {
                            // Full speed, but never more than `inflight_max` accepted and uncommitted: beyond the
                            // mempool's capacity the node would only answer mempool_full.
                            while accepted.load(Ordering::Relaxed).saturating_sub(committed.load(Ordering::Relaxed))
                                > cfg.inflight_max
                            {
                                if stop.load(Ordering::Relaxed) || start.elapsed() >= cfg.duration {
                                    return Ok(());
                                }
                                std::thread::sleep(Duration::from_millis(2));
                            }
                        }
                    }
                    chunk.clear();
                    for _ in 0..accounts.len() {
                        if chunk.len() >= batch {
                            break;
                        }
                        let k = turn % accounts.len();
                        turn = turn.wrapping_add(1);
                        if cursor[k] < n {
                            chunk.push((k, cursor[k]));
                        }
                    }
                    if chunk.is_empty() {
                        break; // every transaction of this thread has been answered
                    }
                    body.clear();
                    body.push_str("{\"txs\":[");
                    for (m, &(_, i)) in chunk.iter().enumerate() {
                        if m > 0 {
                            body.push(',');
                        }
                        body.push('"');
                        body.push_str(&hex::encode(&work.txs[i]));
                        body.push('"');
                    }
                    body.push_str("]}");
                    let mut sent_us = epoch.elapsed().as_micros() as u64;
                    let outcome =
                        post_batch(&http, &url, &body, requests, retries, request_us_total, epoch, &mut sent_us);
                    for &(_, i) in &chunk {
                        submit_us[i].store(sent_us, Ordering::Relaxed);
                    }
                    let mut local_rejects: BTreeMap<String, u64> = BTreeMap::new();
                    let mut again = 0u64;
                    match outcome {
                        Ok(resp) if resp.results.len() == chunk.len() => {
                            let mut ok = 0;
                            for (&(k, i), item) in chunk.iter().zip(resp.results) {
                                match (item.id, item.error) {
                                    (Some(_), _) => {
                                        status[i].store(1, Ordering::Relaxed);
                                        ok += 1;
                                        cursor[k] += senders;
                                    }
                                    (None, e) => {
                                        status[i].store(2, Ordering::Relaxed);
                                        let code = e.map_or_else(|| "no_result".to_string(), |e| e.code);
                                        if worth_retrying(&code) {
                                            again += 1;
                                        } else {
                                            cursor[k] += senders;
                                        }
                                        *local_rejects.entry(code).or_default() += 1;
                                    }
                                }
                            }
                            accepted.fetch_add(ok, Ordering::Relaxed);
                        }
                        Ok(resp) => bail!("{url} answered {} results for {} txs", resp.results.len(), chunk.len()),
                        Err(code) => {
                            // The request failed after every attempt: the whole batch is sent again later.
                            for &(_, i) in &chunk {
                                status[i].store(2, Ordering::Relaxed);
                            }
                            again += chunk.len() as u64;
                            *local_rejects.entry(code).or_default() += chunk.len() as u64;
                        }
                    }
                    resent.fetch_add(again, Ordering::Relaxed);
                    if !local_rejects.is_empty() {
                        let mut all = rejected.lock().expect("rejection map poisoned");
                        for (c, k) in local_rejects {
                            *all.entry(c).or_default() += k;
                        }
                    }
                    if per_thread_rate.is_none() && again == chunk.len() as u64 {
                        // Full speed and nothing taken: the node asked to come back (Retry-After); a short pause.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                Ok(())
            }));
        }
        for h in handles {
            h.join().map_err(|_| anyhow!("sender thread panicked"))??;
        }
        Ok(())
    })?;

    Ok(LoadResult {
        submit_us: submit_us.into_iter().map(AtomicU64::into_inner).collect(),
        status: status
            .into_iter()
            .map(|s| match s.into_inner() {
                1 => SubmitStatus::Accepted,
                2 => SubmitStatus::Rejected,
                _ => SubmitStatus::NotSent,
            })
            .collect(),
        rejected_by_code: rejected.into_inner().expect("rejection map poisoned"),
        requests: requests.into_inner(),
        retries: retries.into_inner(),
        resent: resent.into_inner(),
        request_us_total: request_us_total.into_inner(),
    })
}

/// One batch request, repeated on 429/503/connection errors with a growing pause. `Err` is the code every
/// transaction of the batch is counted as rejected with.
#[allow(clippy::too_many_arguments)]
fn post_batch(
    http: &reqwest::blocking::Client,
    url: &str,
    body: &str,
    requests: &AtomicU64,
    retries: &AtomicU64,
    request_us_total: &AtomicU64,
    epoch: Instant,
    sent_us: &mut u64,
) -> std::result::Result<BatchResponse, String> {
    let mut last = String::new();
    for attempt in 0..BATCH_ATTEMPTS_MAX {
        if attempt > 0 {
            retries.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(10 * u64::from(attempt.min(10))));
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let t0 = Instant::now();
        // The latency of what this attempt gets admitted starts here, not at a refused earlier attempt.
        *sent_us = t0.duration_since(epoch).as_micros() as u64;
        let resp = http.post(url).header("content-type", "application/json").body(body.to_string()).send();
        let outcome = resp.and_then(|r| {
            let status = r.status().as_u16();
            r.bytes().map(|b| (status, b))
        });
        request_us_total.fetch_add(t0.elapsed().as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Ok((200, bytes)) => {
                return serde_json::from_slice(&bytes).map_err(|e| format!("bad_response: {e}"));
            }
            Ok((status @ (429 | 503), _)) => last = format!("http_{status}"),
            Ok((status, bytes)) => {
                let code = serde_json::from_slice::<serde_json::Value>(&bytes)
                    .ok()
                    .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
                    .unwrap_or_default();
                return Err(format!("http_{status}_{code}"));
            }
            Err(_) => last = "transport".to_string(),
        }
    }
    Err(last)
}

/// A committed block as seen by the observer.
#[derive(Clone, Debug)]
pub struct BlockObservation {
    pub height: u64,
    /// Microseconds since the run's epoch when the observer first saw this height on its node.
    pub seen_us: u64,
    /// Header timestamp (proposer's clock), ms since the Unix epoch.
    pub timestamp_ms: u64,
    pub tx_count: u64,
}

/// Polls one node's `GET /status` and, for each new height, the block summaries of `GET /blocks` (small:
/// header and tx count, not the transactions). Cheap enough to run during the measurement.
pub struct ChainObserver {
    api: reqwest::blocking::Client,
    base: String,
    poll: Duration,
    pub blocks: Vec<BlockObservation>,
    last_height: u64,
}

#[derive(Deserialize)]
struct BlocksPage {
    blocks: Vec<BlockSummary>,
}

#[derive(Deserialize)]
struct BlockSummary {
    height: u64,
    header: serde_json::Value,
    tx_count: u64,
}

impl ChainObserver {
    /// Observe the node at `base`, starting above its current height.
    pub fn new(base: &str, poll: Duration) -> Result<ChainObserver> {
        let api = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut obs = ChainObserver { api, base: base.to_string(), poll, blocks: Vec::new(), last_height: 0 };
        obs.last_height = obs.height()?;
        Ok(obs)
    }

    /// The committed height, from `ledger_committed_height` in `/metrics`: `/status` reads and decodes the
    /// whole tip block from storage on every call (~150 µs of node CPU with 250-tx blocks), too much to poll
    /// every 10 ms on a measured node. Falls back to `/status` when the metric is missing.
    fn height(&self) -> Result<u64> {
        let url = format!("{}/metrics", self.base);
        let text = self.api.get(&url).send().and_then(|r| r.text()).with_context(|| format!("GET {url}"))?;
        let from_metrics = text
            .lines()
            .find_map(|l| l.strip_prefix("ledger_committed_height "))
            .and_then(|v| v.trim().parse::<f64>().ok());
        match from_metrics {
            Some(h) => Ok(h as u64),
            None => {
                let v: serde_json::Value = self.get_json(&format!("{}/status", self.base))?;
                v["height"].as_u64().ok_or_else(|| anyhow!("status without height: {v}"))
            }
        }
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T> {
        let resp = self.api.get(url).send().with_context(|| format!("GET {url}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().with_context(|| format!("GET {url}"))?;
        if status != 200 {
            bail!("GET {url} answered {status}: {}", String::from_utf8_lossy(&bytes));
        }
        serde_json::from_slice(&bytes).with_context(|| format!("GET {url}: unexpected body"))
    }

    /// Poll until `stop` is set, adding each committed block's tx count to `committed`.
    pub fn run(&mut self, epoch: Instant, committed: &AtomicU64, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = self.poll_once(epoch, committed) {
                eprintln!("observer: {e:#}");
            }
            std::thread::sleep(self.poll);
        }
    }

    /// One poll: record every height above the last one seen.
    pub fn poll_once(&mut self, epoch: Instant, committed: &AtomicU64) -> Result<()> {
        let h = self.height()?;
        if h <= self.last_height {
            return Ok(());
        }
        let seen_us = epoch.elapsed().as_micros() as u64;
        let mut new = Vec::new();
        let mut before = h + 1;
        while before > self.last_height + 1 {
            let limit = (before - self.last_height - 1).min(100);
            let url = format!("{}/blocks?before={before}&limit={limit}", self.base);
            let page: BlocksPage = self.get_json(&url)?;
            if page.blocks.is_empty() {
                bail!("{url} returned no blocks");
            }
            for b in page.blocks {
                before = before.min(b.height);
                if b.height > self.last_height {
                    let timestamp_ms = b.header["timestamp_ms"].as_u64().unwrap_or(0);
                    new.push(BlockObservation { height: b.height, seen_us, timestamp_ms, tx_count: b.tx_count });
                }
            }
        }
        new.sort_by_key(|b| b.height);
        committed.fetch_add(new.iter().map(|b| b.tx_count).sum(), Ordering::Relaxed);
        self.blocks.extend(new);
        self.last_height = h;
        Ok(())
    }

    /// The ids of the transactions of block `height` (the full block: use after the measurement).
    pub fn block_tx_ids(&self, height: u64) -> Result<Vec<[u8; 32]>> {
        #[derive(Deserialize)]
        struct Block {
            txs: Vec<TxIdOnly>,
        }
        #[derive(Deserialize)]
        struct TxIdOnly {
            id: String,
        }
        let url = format!("{}/blocks/{height}", self.base);
        let block: Block = self.get_json(&url)?;
        block
            .txs
            .iter()
            .map(|t| {
                let mut id = [0u8; 32];
                hex::decode_to_slice(&t.id, &mut id).with_context(|| format!("bad tx id {:?}", t.id))?;
                Ok(id)
            })
            .collect()
    }
}

/// The value at quantile `q` (0..=1) of sorted `values`, nearest rank.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn presign_spreads_senders_with_sequential_nonces() {
        let keys: Vec<Keypair> = (0..3u8).map(|i| Keypair::from_seed(&[i + 1; 32])).collect();
        let template = TxTemplate { chain_id: "c".into(), amount: 1, fee: 1, expiry_height: 10 };
        let w = presign(&keys, &template, 7, 2);
        assert_eq!(w.len(), 7);
        for (i, bytes) in w.txs.iter().enumerate() {
            let tx = ledger_core::SignedTransaction::decode(bytes, 1024).unwrap();
            assert_eq!(tx.tx().sender, keys[i % 3].public());
            assert_eq!(tx.tx().nonce, (i / 3) as u64);
            assert_eq!(*tx.id().as_bytes(), w.ids[i]);
            tx.verify_signature().unwrap();
        }
    }
}
