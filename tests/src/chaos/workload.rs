//! The bank workload: client threads submit random transfers among the dev accounts to random nodes and
//! log every outcome, as Jepsen does.
//!
//! Each client owns a disjoint set of sending accounts (so clients do not race each other's nonces) and
//! asks the node it is about to use for the sender's next nonce. Under faults the nodes' views differ, so a
//! client sometimes signs a second transaction with a nonce that is already taken: exactly one of them
//! may commit, which is what the checker's no-double-spend check is about.
//!
//! Outcomes as the client sees them:
//! - **ok**: the node answered `committed` (the client then reads it back with `GET /txs/{id}`);
//! - **failed**: refused at admission with a 4xx (never gossiped, so it can never commit);
//! - **pending**: admitted but not (yet) seen committed; resolved after the heal;
//! - **indeterminate**: timeout, connection refused, 5xx: the client cannot know.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use ledger_core::{Keypair, PublicKey, SignedTransaction, Transaction};
use serde_json::Value;

use super::rng::Rng;

/// How long a client lets `POST /txs?wait=commit` wait on the node, and its own HTTP deadline.
const WAIT_COMMIT_MS: u64 = 3_000;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(6);
/// Blocks a workload transaction stays valid for: long enough for any fault window, short enough that a
/// transaction stranded behind a lost nonce leaves the mempools soon after the heal.
pub const EXPIRY_BLOCKS: u64 = 120;

/// Where a node's API is and the HTTP client that reaches it.
#[derive(Clone)]
pub struct Target {
    pub base: String,
    pub http: reqwest::blocking::Client,
}

impl Target {
    fn get(&self, path: &str, timeout: Duration) -> Result<(u16, Value)> {
        let resp = self.http.get(format!("{}{}", self.base, path)).timeout(timeout).send()?;
        let status = resp.status().as_u16();
        Ok((status, serde_json::from_str(&resp.text()?).unwrap_or(Value::Null)))
    }

    fn post(&self, path: &str, body: &Value, timeout: Duration) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(timeout)
            .send()?;
        let status = resp.status().as_u16();
        Ok((status, serde_json::from_str(&resp.text()?).unwrap_or(Value::Null)))
    }

    /// `GET /txs/{id}`: the status string and the committed height, if any.
    pub fn tx_status(&self, id: &str) -> Result<(String, Option<u64>)> {
        let (code, body) = self.get(&format!("/txs/{id}"), Duration::from_secs(3))?;
        if code != 200 {
            bail!("GET /txs/{id} answered {code}: {body}");
        }
        let status = body["status"].as_str().ok_or_else(|| anyhow!("no status in {body}"))?.to_string();
        Ok((status, body["height"].as_u64()))
    }

    /// `GET /accounts/{address}`: (nonce, next_nonce).
    pub fn nonces(&self, address: &PublicKey) -> Result<(u64, u64)> {
        let (code, body) = self.get(&format!("/accounts/{address}"), Duration::from_secs(2))?;
        if code != 200 {
            bail!("GET /accounts answered {code}: {body}");
        }
        let nonce = body["nonce"].as_u64().ok_or_else(|| anyhow!("no nonce in {body}"))?;
        let next = body["next_nonce"].as_u64().ok_or_else(|| anyhow!("no next_nonce in {body}"))?;
        Ok((nonce, next))
    }

    pub fn height(&self) -> Result<u64> {
        let (code, body) = self.get("/status", Duration::from_secs(2))?;
        if code != 200 {
            bail!("GET /status answered {code}");
        }
        body["height"].as_u64().ok_or_else(|| anyhow!("no height in {body}"))
    }
}

/// What a client knows about one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Ok { height: u64 },
    Failed { code: String },
    Pending { note: String },
    Indeterminate { why: String },
}

/// One submitted transaction and its outcome.
#[derive(Clone, Debug)]
pub struct TxRecord {
    pub id: String,
    pub tx: SignedTransaction,
    pub client: usize,
    /// Node it was submitted to.
    pub node: usize,
    pub outcome: Outcome,
}

/// What the workload needs to sign transfers.
#[derive(Clone)]
pub struct Accounts {
    pub chain_id: String,
    pub keys: Vec<Arc<Keypair>>,
    pub fee: u64,
}

/// Running client threads.
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<TxRecord>>>,
}

impl Workload {
    /// Start `clients` threads; client `c` sends from accounts `c, c + clients, …`.
    pub fn start(targets: Vec<Target>, accounts: Accounts, clients: usize, rng: &Rng) -> Workload {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let (targets, accounts, stop) = (targets.clone(), accounts.clone(), stop.clone());
                let senders: Vec<usize> = (c..accounts.keys.len()).step_by(clients).collect();
                let mut rng = rng.fork(c as u64 + 1);
                std::thread::spawn(move || client_loop(c, &targets, &accounts, &senders, &mut rng, &stop))
            })
            .collect();
        Workload { stop, threads }
    }

    /// Ask the clients to stop and collect their histories (each finishes its request in flight).
    pub fn stop(self) -> Vec<TxRecord> {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Vec::new();
        for t in self.threads {
            all.extend(t.join().unwrap_or_default());
        }
        all
    }
}

fn client_loop(
    client: usize,
    targets: &[Target],
    accounts: &Accounts,
    senders: &[usize],
    rng: &mut Rng,
    stop: &AtomicBool,
) -> Vec<TxRecord> {
    let mut history = Vec::new();
    if senders.is_empty() || accounts.keys.len() < 2 {
        return history;
    }
    while !stop.load(Ordering::SeqCst) {
        let node = rng.below(targets.len());
        let from = senders[rng.below(senders.len())];
        let to = loop {
            let j = rng.below(accounts.keys.len());
            if j != from {
                break j;
            }
        };
        let amount = rng.range(1, 1_000);
        match submit_one(&targets[node], accounts, from, to, amount) {
            Some((tx, outcome)) => {
                history.push(TxRecord { id: tx.id().to_hex(), tx, client, node, outcome });
            }
            // The node did not answer before anything was signed: nothing to record. Pace the retry so a
            // dead node does not turn this client into a busy loop (the next pick is another random node).
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    history
}

/// Sign and submit one transfer via `target`; `None` when the node could not even give a nonce.
fn submit_one(
    target: &Target,
    accounts: &Accounts,
    from: usize,
    to: usize,
    amount: u64,
) -> Option<(SignedTransaction, Outcome)> {
    let key = &accounts.keys[from];
    let (_, next_nonce) = target.nonces(&key.public()).ok()?;
    let height = target.height().ok()?;
    let tx = Transaction {
        chain_id: accounts.chain_id.clone(),
        sender: key.public(),
        recipient: accounts.keys[to].public(),
        amount,
        fee: accounts.fee,
        nonce: next_nonce,
        expiry_height: height + EXPIRY_BLOCKS,
        memo: String::new(),
    }
    .sign(key);
    let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
    let path = format!("/txs?wait=commit&timeout_ms={WAIT_COMMIT_MS}");
    let outcome = match target.post(&path, &body, REQUEST_TIMEOUT) {
        Err(e) => Outcome::Indeterminate { why: short(&format!("{e:#}")) },
        Ok((200, answer)) => match answer["status"].as_str() {
            Some("committed") => match target.tx_status(&tx.id().to_hex()) {
                Ok((s, Some(h))) if s == "committed" => Outcome::Ok { height: h },
                // Acknowledged as committed but not readable back: the checker decides from the chains.
                other => Outcome::Pending { note: format!("committed answer, read back {other:?}") },
            },
            Some(s) => Outcome::Pending { note: format!("{s} {}", answer["reason"]["code"].as_str().unwrap_or("")) },
            None => Outcome::Indeterminate { why: format!("200 without status: {answer}") },
        },
        // Not admitted: this node refused it and, having refused it, never gossiped it.
        Ok((code @ 400..=499, answer)) if code != 408 && code != 409 => {
            Outcome::Failed { code: answer["error"]["code"].as_str().unwrap_or("4xx").to_string() }
        }
        Ok((code, answer)) => Outcome::Indeterminate { why: short(&format!("{code} {answer}")) },
    };
    Some((tx, outcome))
}

fn short(s: &str) -> String {
    s.chars().take(160).collect()
}

/// Resolve every pending or indeterminate record by asking the nodes: committed somewhere → ok;
/// rejected or evicted where submitted and held (pending or committed) nowhere → failed; otherwise left
/// as it is. Returns how many records changed.
pub fn resolve(history: &mut [TxRecord], targets: &[Target]) -> usize {
    let mut changed = 0;
    for r in history.iter_mut() {
        if matches!(r.outcome, Outcome::Ok { .. } | Outcome::Failed { .. }) {
            continue;
        }
        let statuses: Vec<Option<(String, Option<u64>)>> = targets.iter().map(|t| t.tx_status(&r.id).ok()).collect();
        if let Some(h) = statuses.iter().flatten().find_map(|(s, h)| (s == "committed").then_some(*h).flatten()) {
            r.outcome = Outcome::Ok { height: h };
            changed += 1;
            continue;
        }
        let all_answered = statuses.iter().all(Option::is_some);
        let held_anywhere = statuses.iter().flatten().any(|(s, _)| s == "pending" || s == "committed");
        if let Some(Some((s, _))) = statuses.get(r.node)
            && (s == "rejected" || s == "evicted")
            && all_answered
            && !held_anywhere
        {
            r.outcome = Outcome::Failed { code: s.clone() };
            changed += 1;
        }
    }
    changed
}

/// Records still pending somewhere after `deadline` whose nonce is the sender's current one, i.e. valid
/// transactions the healed network should have committed (I6). Each entry is (record id, node name index).
pub fn stuck_valid(history: &[TxRecord], targets: &[Target]) -> Vec<(String, usize)> {
    let mut stuck = Vec::new();
    for r in history {
        if matches!(r.outcome, Outcome::Ok { .. } | Outcome::Failed { .. }) {
            continue;
        }
        for (i, t) in targets.iter().enumerate() {
            let Ok((s, _)) = t.tx_status(&r.id) else { continue };
            if s != "pending" {
                continue;
            }
            let valid_now = t.nonces(&r.tx.tx().sender).is_ok_and(|(nonce, _)| nonce == r.tx.tx().nonce)
                && t.height().is_ok_and(|h| h < r.tx.tx().expiry_height);
            if valid_now {
                stuck.push((r.id.clone(), i));
            }
        }
    }
    stuck
}

/// Counts of (ok, failed, indeterminate); pending counts as indeterminate.
pub fn tally(history: &[TxRecord]) -> (usize, usize, usize) {
    let ok = history.iter().filter(|r| matches!(r.outcome, Outcome::Ok { .. })).count();
    let failed = history.iter().filter(|r| matches!(r.outcome, Outcome::Failed { .. })).count();
    (ok, failed, history.len() - ok - failed)
}
