//! A Byzantine libp2p peer (`tests::byzantine`) against a real localnet of four `ledgerd` processes: one
//! test per flood, each 30 s long, asserting while it runs that the network is not hurt and afterwards that
//! the attacker was punished.
//!
//! Every test checks, over the flood:
//! - blocks keep committing: no gap above [`MAX_COMMIT_GAP`] between the header timestamps of consecutive
//!   blocks, and a block within that of the flood's end;
//! - transfers submitted one after the other through every node in turn (the attacker is aimed at all of
//!   them, see [`ALL`]) each commit within [`TRANSFER_DEADLINE`];
//! - every `ledgerd`'s resident memory stays under [`RSS_MAX_KIB`];
//! - the attack does not flood the logs: at most [`ATTACK_LOG_LINES_MAX`] lines per node name an attacker
//!   identity or say "at capacity", and at most as many WARN lines are written during the flood;
//! - after it, every node advances two heights within [`RECOVERY`];
//!
//! and the punishment its flood calls for, from the defence metrics (`ledger_peer_penalties_total{reason}`,
//! `ledger_peer_bans_total`, `ledger_gossip_dropped_total{reason}`) and what the attacker saw (its
//! connections closed by the targets). The tests run one at a time (each with its own localnet) so that
//! two floods never share the machine's two cores.

use std::fmt::Write as _;
use std::io::{Read, Seek, SeekFrom};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tests::byzantine::{self, ChainInfo, DefenceCounters, Flood, FloodReport, FloodSpec};
use tests::harness::{Localnet, strip_ansi, wait_for};

/// Length of every flood.
const FLOOD: Duration = Duration::from_secs(30);
/// Largest gap between consecutive commits (header timestamps) while a flood runs. Empty blocks come every
/// second (`consensus.empty_block_interval_ms`), so 3 s is three missed blocks in a row.
const MAX_COMMIT_GAP: Duration = Duration::from_secs(3);
/// A transfer submitted during a flood must be committed within this (`POST /txs?wait=commit`).
const TRANSFER_DEADLINE: Duration = Duration::from_secs(2);
/// Bound on each `ledgerd`'s resident memory during a flood: 256 MiB. What a node may hold by design is
/// 64 MiB of sled page cache (`storage.cache_capacity_mb`), a mempool of at most 32 MiB of encoded
/// transactions (`mempool.max_bytes`; about 100 MiB in memory with decoded copies and indexes), gossipsub's
/// duplicate cache and per-peer queues (bounded by `p2p.max_peers`), and a baseline of about 15 MiB (code,
/// runtime, libp2p; measured before every flood and printed): about 200 MiB, rounded up. None of the
/// floods can fill the mempool (forged and unfunded transactions are not admitted), so a node near the
/// bound holds something that grows with the attacker's messages, and crosses it within the 30 s.
const RSS_MAX_KIB: u64 = 256 * 1024;
/// Most log lines per node that name an attacker identity or say "at capacity", and most WARN lines per
/// node during a flood: warnings about a peer must be rate-limited, not one per message.
const ATTACK_LOG_LINES_MAX: usize = 50;
/// After the flood every node advances two heights within this.
const RECOVERY: Duration = Duration::from_secs(10);
/// Start-up of the localnet (build of ledgerd included on the first test).
const START: Duration = Duration::from_secs(120);

/// One flood at a time on this machine (see the module doc).
static SERIAL: Mutex<()> = Mutex::new(());

/// Dev account used as the sender of the transfers submitted through node `i` (one sender per node, so
/// nonces never race between nodes); the last account receives them.
const ACCOUNTS: usize = 5;
const RECIPIENT: usize = ACCOUNTS - 1;

fn localnet() -> Result<Localnet> {
    let mut net = Localnet::create(4, ACCOUNTS)?;
    for i in 0..4 {
        // A short double-sign watch: the floods are the subject here, not the start-up guard.
        net.add_start_args(i, &["--set".to_string(), "consensus.double_sign_watch_ms=1000".to_string()]);
    }
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, START).context("localnet start")?;
    Ok(net)
}

/// What was measured during one flood.
#[derive(Debug, Default)]
struct Figures {
    report: FloodReport,
    aimed: Vec<usize>,
    via: Vec<usize>,
    /// Largest gap between consecutive block timestamps over the flood, and blocks in it.
    max_commit_gap: Duration,
    blocks: usize,
    /// Time from the last block to the end of the flood.
    end_gap: Duration,
    /// Largest time between two observed height increases, per node, polling /status every 100 ms.
    max_poll_gap: Vec<Duration>,
    /// (node, latency) of each transfer, and the failures.
    transfers: Vec<(usize, Duration)>,
    transfer_failures: Vec<String>,
    rss_before_kib: Vec<u64>,
    rss_max_kib: Vec<u64>,
    /// Largest n_peers each node reported.
    peers_max: Vec<u64>,
    counters: Vec<DefenceCounters>,
    /// Per node: lines naming an attacker or "at capacity", and WARN lines, written during the flood.
    attack_lines: Vec<usize>,
    warn_lines: Vec<usize>,
    /// The first few of those lines, per node.
    attack_samples: Vec<Vec<String>>,
    recovered_in: Option<Duration>,
}

impl Figures {
    fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "attacker: {}", self.report.summary());
        let _ = writeln!(s, "aimed at nodes {:?}; transfers through nodes {:?}", self.aimed, self.via);
        let _ = writeln!(
            s,
            "commits: {} blocks, largest gap {:.2}s, last block {:.2}s before the end; polled height gaps {:?}",
            self.blocks,
            self.max_commit_gap.as_secs_f64(),
            self.end_gap.as_secs_f64(),
            self.max_poll_gap.iter().map(|d| format!("{:.2}s", d.as_secs_f64())).collect::<Vec<_>>()
        );
        let mut lat: Vec<f64> = self.transfers.iter().map(|(_, d)| d.as_secs_f64()).collect();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat.get(((lat.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
        let _ = writeln!(
            s,
            "transfers: {} committed, p50 {:.3}s, max {:.3}s; failures {:?}",
            lat.len(),
            pct(0.5),
            pct(1.0),
            self.transfer_failures
        );
        let _ = writeln!(
            s,
            "RSS MiB before {:?}, max {:?}; peers max {:?}",
            self.rss_before_kib.iter().map(|k| k / 1024).collect::<Vec<_>>(),
            self.rss_max_kib.iter().map(|k| k / 1024).collect::<Vec<_>>(),
            self.peers_max
        );
        for (i, c) in self.counters.iter().enumerate() {
            let _ = writeln!(
                s,
                "node{i}: metrics present {}, penalties {:?}, bans +{}, banned now {}, dropped {:?}; log lines naming the attacker {}, WARN lines {}",
                c.present,
                c.penalties,
                c.bans,
                c.banned_now,
                c.dropped,
                self.attack_lines.get(i).copied().unwrap_or(0),
                self.warn_lines.get(i).copied().unwrap_or(0)
            );
        }
        for (i, lines) in self.attack_samples.iter().enumerate() {
            for l in lines {
                let _ = writeln!(s, "  node{i} log: {}", l.chars().take(300).collect::<String>());
            }
        }
        let _ = writeln!(s, "recovery after the flood: {:?}", self.recovered_in);
        s
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The log text written after byte `offset` (colour codes removed).
fn log_since(path: &std::path::Path, offset: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path)
        && f.seek(SeekFrom::Start(offset)).is_ok()
    {
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    strip_ansi(&text)
}

/// Header timestamps (ms) of the blocks of node `i` with a timestamp from `from_ms` on, oldest first.
fn block_times(net: &Localnet, i: usize, from_ms: u64) -> Result<Vec<u64>> {
    let api = &net.nodes[i].api;
    let mut times = Vec::new();
    let mut before: Option<u64> = None;
    loop {
        let path = match before {
            Some(b) => format!("/blocks?limit=100&before={b}"),
            None => "/blocks?limit=100".to_string(),
        };
        let page = api.get(&path)?;
        if page.status != 200 {
            bail!("GET {path} answered {}: {}", page.status, page.body);
        }
        let blocks = page.body["blocks"].as_array().cloned().unwrap_or_default();
        let mut older = false;
        for b in &blocks {
            let t = b["header"]["timestamp_ms"].as_u64().ok_or_else(|| anyhow!("block without timestamp: {b}"))?;
            if t >= from_ms {
                times.push(t);
            } else {
                older = true;
            }
        }
        match page.body["next"].as_u64() {
            Some(next) if !older && !blocks.is_empty() => before = Some(next),
            _ => break,
        }
    }
    times.sort_unstable();
    Ok(times)
}

/// Submit a transfer through node `via` (from its own sender account) and wait for its commit there.
fn timed_transfer(net: &Localnet, via: usize) -> Result<Duration> {
    let tx = net.transfer(via, via, RECIPIENT, 1)?;
    let body = serde_json::json!({ "tx": hex::encode(tx.encode()) });
    let t0 = Instant::now();
    let answer = net.nodes[via].api.post("/txs?wait=commit&timeout_ms=10000", &body)?;
    let took = t0.elapsed();
    if answer.status != 200 || answer.body["status"] != "committed" {
        bail!("transfer via node{via}: {} {} after {:.2}s", answer.status, answer.body, took.as_secs_f64());
    }
    Ok(took)
}

/// Run `flood` against nodes `aimed` while transfers go through nodes `via`, and measure.
fn attack(net: &Localnet, flood: Flood, aimed: &[usize], via: &[usize]) -> Result<Figures> {
    let n = net.nodes.len();
    let genesis_text = std::fs::read_to_string(net.dir.join("genesis.json"))?;
    let genesis = ledger_core::Genesis::from_json(&genesis_text).map_err(|e| anyhow!("genesis: {e}"))?;
    let chain = ChainInfo::new(&genesis, net.nodes[0].api.height()?);
    let targets = byzantine::targets(&net.manifest, aimed)?;
    let pids: Vec<u32> =
        net.nodes.iter().map(|nd| nd.pid().ok_or_else(|| anyhow!("{} not running", nd.name))).collect::<Result<_>>()?;
    let mut fig = Figures {
        aimed: aimed.to_vec(),
        via: via.to_vec(),
        rss_before_kib: pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect(),
        ..Figures::default()
    };
    let before: Vec<DefenceCounters> =
        net.nodes.iter().map(|nd| DefenceCounters::read(&nd.api)).collect::<Result<_>>()?;
    let log_offsets: Vec<u64> =
        net.nodes.iter().map(|nd| std::fs::metadata(nd.log_path()).map(|m| m.len()).unwrap_or(0)).collect();

    // Monitor: RSS, heights and peer counts of every node every 100 ms until the flood is over.
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let done = done.clone();
        let apis: Vec<_> = net.nodes.iter().map(|nd| nd.api.clone()).collect();
        let pids = pids.clone();
        std::thread::spawn(move || {
            let mut rss_max = vec![0u64; apis.len()];
            let mut peers_max = vec![0u64; apis.len()];
            let mut last: Vec<Option<(u64, Instant)>> = vec![None; apis.len()];
            let mut gap_max = vec![Duration::ZERO; apis.len()];
            while !done.load(Ordering::Relaxed) {
                for (i, api) in apis.iter().enumerate() {
                    rss_max[i] = rss_max[i].max(rss_kib(pids[i]).unwrap_or(0));
                    if let Ok(st) = api.status() {
                        peers_max[i] = peers_max[i].max(st["n_peers"].as_u64().unwrap_or(0));
                        let h = st["height"].as_u64().unwrap_or(0);
                        match last[i] {
                            Some((lh, _)) if lh >= h => {}
                            _ => last[i] = Some((h, Instant::now())),
                        }
                    }
                    if let Some((_, t)) = last[i] {
                        gap_max[i] = gap_max[i].max(t.elapsed());
                    }
                }
                // Sampling interval of a monitor, not a synchronisation.
                std::thread::sleep(Duration::from_millis(100));
            }
            (rss_max, peers_max, gap_max)
        })
    };

    let spec = FloodSpec::new(flood, FLOOD);
    let (stop, attacker) = byzantine::spawn_flood(chain, targets, spec, None);
    // Transfers one after the other, through the `via` nodes in turn, for as long as the attacker runs.
    let mut k = 0;
    while !attacker.is_finished() {
        let node = via[k % via.len()];
        k += 1;
        match timed_transfer(net, node) {
            Ok(d) => fig.transfers.push((node, d)),
            Err(e) => fig.transfer_failures.push(format!("{e:#}")),
        }
        if fig.transfer_failures.len() > 20 {
            stop.store(true, Ordering::Relaxed);
        }
    }
    let flood_end_ms = now_ms();
    let report = attacker.join().map_err(|_| anyhow!("attacker thread panicked"))??;
    done.store(true, Ordering::Relaxed);
    let (rss_max, peers_max, gap_max) = monitor.join().map_err(|_| anyhow!("monitor panicked"))?;
    fig.rss_max_kib = rss_max;
    fig.peers_max = peers_max;
    fig.max_poll_gap = gap_max;

    // Commit gaps from the header timestamps of the blocks over the flood.
    let flood_start_ms = flood_end_ms.saturating_sub(report.ran_for.as_millis() as u64);
    let times = block_times(net, via[0], flood_start_ms.saturating_sub(MAX_COMMIT_GAP.as_millis() as u64 * 2))?;
    let mut prev: Option<u64> = None;
    for &t in &times {
        if let Some(p) = prev
            && t >= flood_start_ms
            && p <= flood_end_ms
        {
            fig.max_commit_gap = fig.max_commit_gap.max(Duration::from_millis(t - p));
        }
        if t >= flood_start_ms && t <= flood_end_ms {
            fig.blocks += 1;
        }
        prev = Some(t);
    }
    let last_before_end = times.iter().copied().filter(|t| *t <= flood_end_ms).max().unwrap_or(0);
    fig.end_gap = Duration::from_millis(flood_end_ms.saturating_sub(last_before_end));

    for (i, nd) in net.nodes.iter().enumerate() {
        let after = DefenceCounters::read(&nd.api)?;
        fig.counters.push(after.since(&before[i]));
        let text = log_since(nd.log_path(), log_offsets[i]);
        let ids: Vec<String> = report.identities.iter().map(|p| p.to_string()).collect();
        let naming: Vec<&str> =
            text.lines().filter(|l| l.contains("at capacity") || ids.iter().any(|id| l.contains(id))).collect();
        fig.attack_lines.push(naming.len());
        fig.attack_samples.push(naming.iter().take(3).map(|l| l.to_string()).collect());
        fig.warn_lines.push(text.lines().filter(|l| l.contains(" WARN ")).count());
    }
    fig.report = report;

    let t0 = Instant::now();
    let top = (0..n).filter_map(|i| net.nodes[i].api.height().ok()).max().unwrap_or(0);
    let all: Vec<usize> = (0..n).collect();
    if net.wait_all(&all, top + 2, RECOVERY).is_ok() {
        fig.recovered_in = Some(t0.elapsed());
    }
    Ok(fig)
}

/// What every flood must leave intact; the failures, as messages.
fn common_failures(fig: &Figures) -> Vec<String> {
    let mut f = Vec::new();
    if fig.report.ran_for < FLOOD - Duration::from_secs(1) {
        f.push(format!("the flood ran only {:.1}s", fig.report.ran_for.as_secs_f64()));
    }
    if fig.report.sent == 0 {
        f.push("the attacker sent nothing: the attack did not happen".to_string());
    }
    if fig.max_commit_gap > MAX_COMMIT_GAP || fig.end_gap > MAX_COMMIT_GAP {
        f.push(format!(
            "commit gap {:.2}s (last block {:.2}s before the end), limit {:?}",
            fig.max_commit_gap.as_secs_f64(),
            fig.end_gap.as_secs_f64(),
            MAX_COMMIT_GAP
        ));
    }
    if fig.transfers.is_empty() {
        f.push("no transfer committed during the flood".to_string());
    }
    if !fig.transfer_failures.is_empty() {
        f.push(format!("{} transfers failed: {:?}", fig.transfer_failures.len(), fig.transfer_failures));
    }
    let slow: Vec<String> = fig
        .transfers
        .iter()
        .filter(|(_, d)| *d > TRANSFER_DEADLINE)
        .map(|(i, d)| format!("node{i} {:.2}s", d.as_secs_f64()))
        .collect();
    if !slow.is_empty() {
        f.push(format!(
            "{} of {} transfers took longer than {TRANSFER_DEADLINE:?}: {slow:?}",
            slow.len(),
            fig.transfers.len()
        ));
    }
    for (i, kib) in fig.rss_max_kib.iter().enumerate() {
        if *kib > RSS_MAX_KIB {
            f.push(format!("node{i} RSS {} MiB above {} MiB", kib / 1024, RSS_MAX_KIB / 1024));
        }
    }
    for (i, (a, w)) in fig.attack_lines.iter().zip(&fig.warn_lines).enumerate() {
        if *a > ATTACK_LOG_LINES_MAX {
            f.push(format!(
                "node{i} logged {a} lines naming the attacker or 'at capacity' (limit {ATTACK_LOG_LINES_MAX})"
            ));
        }
        if *w > ATTACK_LOG_LINES_MAX {
            f.push(format!("node{i} logged {w} WARN lines during the flood (limit {ATTACK_LOG_LINES_MAX})"));
        }
    }
    if fig.recovered_in.is_none() {
        f.push(format!("the nodes did not all advance two heights within {RECOVERY:?} after the flood"));
    }
    f
}

/// Fail with every failure and the figures; print the figures either way.
fn verdict(flood: Flood, started: Instant, fig: &Figures, failures: Vec<String>) -> Result<()> {
    println!("=== {flood} (test took {:.1}s)\n{}", started.elapsed().as_secs_f64(), fig.describe());
    if failures.is_empty() {
        return Ok(());
    }
    bail!("{flood}: {} failed assertions:\n  - {}\n{}", failures.len(), failures.join("\n  - "), fig.describe())
}

/// Every flood is aimed at all four validators, and the transfers go through each of them in turn. Aiming
/// at fewer would not spare the others: the validators learn the attacker's address from each other
/// (identify, Kademlia) and dial it, and its gossip goes to every peer it has.
const ALL: [usize; 4] = [0, 1, 2, 3];

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn forged_transaction_flood_is_rejected_and_the_attacker_banned() -> Result<()> {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let net = localnet()?;
    println!("localnet up in {:.1}s", started.elapsed().as_secs_f64());
    let fig = attack(&net, Flood::ForgedTxs, &ALL, &ALL)?;
    let mut failures = common_failures(&fig);
    for &i in &ALL {
        let c = &fig.counters[i];
        if c.penalty("invalid") < 1.0 {
            failures.push(format!("node{i}: no penalty with reason invalid (penalties {:?})", c.penalties));
        }
        if c.bans < 1.0 {
            failures.push(format!("node{i}: the forger was not banned (ledger_peer_bans_total +{})", c.bans));
        }
        let name = &net.nodes[i].name;
        if fig.report.disconnects.get(name).copied().unwrap_or(0) < 1 {
            failures.push(format!("{name} never closed the attacker's connection"));
        }
    }
    verdict(Flood::ForgedTxs, started, &fig, failures)
}

#[test]
fn unfunded_reshuffled_transactions_are_dropped() -> Result<()> {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let net = localnet()?;
    println!("localnet up in {:.1}s", started.elapsed().as_secs_f64());
    let fig = attack(&net, Flood::UnfundedTxs, &ALL, &ALL)?;
    let mut failures = common_failures(&fig);
    for &i in &ALL {
        let c = &fig.counters[i];
        let ignored: f64 = ["refused_recently", "not_admissible", "over_budget", "peer_ignored", "duplicate"]
            .iter()
            .map(|r| c.drop(r))
            .sum();
        if ignored < 1.0 {
            failures.push(format!("node{i}: no unfunded batch counted as dropped (dropped {:?})", c.dropped));
        }
    }
    verdict(Flood::UnfundedTxs, started, &fig, failures)
}

#[test]
fn replayed_old_votes_are_dropped_and_the_replayer_penalised() -> Result<()> {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let net = localnet()?;
    println!("localnet up in {:.1}s", started.elapsed().as_secs_f64());
    let fig = attack(&net, Flood::ReplayVotes, &ALL, &ALL)?;
    let mut failures = common_failures(&fig);
    for &i in &ALL {
        let c = &fig.counters[i];
        let dropped = c.drop("old_height") + c.drop("over_budget") + c.drop("peer_ignored");
        if dropped < 1.0 {
            failures.push(format!("node{i}: no replayed vote counted as dropped (dropped {:?})", c.dropped));
        }
        if c.penalty("over_budget") < 1.0 {
            failures.push(format!("node{i}: the replayer was never over budget (penalties {:?})", c.penalties));
        }
    }
    verdict(Flood::ReplayVotes, started, &fig, failures)
}

#[test]
fn sync_request_flood_is_metered_and_penalised() -> Result<()> {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let net = localnet()?;
    println!("localnet up in {:.1}s", started.elapsed().as_secs_f64());
    let fig = attack(&net, Flood::SyncFlood, &ALL, &ALL)?;
    let mut failures = common_failures(&fig);
    for &i in &ALL {
        let c = &fig.counters[i];
        if c.penalty("sync_abuse") < 1.0 {
            failures.push(format!("node{i}: no sync_abuse penalty (penalties {:?}, bans +{})", c.penalties, c.bans));
        }
        // Requests beyond the in-flight limit or the budget, and any while ignored, cost score: a peer that
        // keeps flooding ends banned (disconnected), not just slowed.
        if c.bans < 1.0 {
            failures.push(format!("node{i}: the sync flooder was never banned (penalties {:?})", c.penalties));
        }
    }
    verdict(Flood::SyncFlood, started, &fig, failures)
}

#[test]
fn connection_churn_leaves_peers_bounded() -> Result<()> {
    let _one_at_a_time = serial();
    let started = Instant::now();
    let net = localnet()?;
    println!("localnet up in {:.1}s", started.elapsed().as_secs_f64());
    let fig = attack(&net, Flood::Churn, &ALL, &ALL)?;
    let mut failures = common_failures(&fig);
    // p2p.max_peers (50) plus the connections being closed when a node finds itself above it.
    const PEERS_SEEN_MAX: u64 = 50 + byzantine::CHURN_LANES as u64;
    for &i in &ALL {
        if fig.peers_max[i] > PEERS_SEEN_MAX {
            failures.push(format!("node{i} reported {} peers (limit {PEERS_SEEN_MAX})", fig.peers_max[i]));
        }
    }
    // Once the churn stops, every node is back to its three validator peers: no attacker connection lingers.
    let back = wait_for("every node back to 3 peers", RECOVERY, || {
        let peers: Vec<u64> = net
            .nodes
            .iter()
            .map(|nd| nd.api.status().map(|s| s["n_peers"].as_u64().unwrap_or(0)))
            .collect::<Result<_>>()?;
        Ok(peers.iter().all(|p| *p == 3).then_some(()))
    });
    if let Err(e) = back {
        failures.push(format!("{e:#}"));
    }
    verdict(Flood::Churn, started, &fig, failures)
}
