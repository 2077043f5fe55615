//! A short overload does not collapse a network: four real `ledgerd` validators on this machine, first
//! loaded as fast as they commit (closed loop: at most a few blocks' worth admitted and not committed),
//! then offered three times that rate (open loop) for as long. Committed throughput under overload must
//! stay at least half of the unloaded figure, and the excess must be refused at the door (429
//! `mempool_full` with a retry hint), not admitted and left to wait.
//!
//! Throughput is what the blocks carry whose header timestamps fall in each phase (after a settling
//! second), read back from node 0 by the same observer the bench uses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tests::harness::Localnet;
use tests::load::{self, ChainObserver, LoadConfig, TxTemplate};

const PHASE: Duration = Duration::from_secs(10);
const SETTLE_MS: u64 = 2_000;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Committed tx/s over blocks with header timestamps in [from_ms, to_ms).
fn committed_tps(observer: &ChainObserver, from_ms: u64, to_ms: u64) -> f64 {
    let txs: u64 = observer
        .blocks
        .iter()
        .filter(|b| b.timestamp_ms >= from_ms && b.timestamp_ms < to_ms)
        .map(|b| b.tx_count)
        .sum();
    txs as f64 * 1000.0 / (to_ms - from_ms) as f64
}

/// One load phase: `cfg` over `work` while an observer follows node 0. Returns what the loader saw, the
/// committed tx/s of the phase (blocks stamped from `SETTLE_MS` after its start to its end) and how many
/// transactions were admitted.
fn phase(node0: &str, work: &load::Workload, cfg: &LoadConfig) -> (load::LoadResult, f64, u64) {
    let (accepted, committed, stop) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));
    let mut observer = ChainObserver::new(node0, Duration::from_millis(20)).expect("observer");
    let epoch = Instant::now();
    let start = unix_ms();
    let result = std::thread::scope(|scope| {
        let obs = scope.spawn(|| observer.run(epoch, &committed, &stop));
        let r = load::run(work, cfg, epoch, &accepted, &committed, &stop).expect("load");
        stop.store(true, Ordering::Relaxed);
        obs.join().expect("observer");
        r
    });
    let tps = committed_tps(&observer, start + SETTLE_MS, unix_ms());
    (result, tps, accepted.into_inner())
}

#[test]
fn three_times_the_capacity_does_not_halve_what_is_committed() {
    let t0 = Instant::now();
    let validators = 4;
    let accounts = 2000;
    let mut net = Localnet::create(validators, accounts).expect("localnet");
    let keys = (0..accounts).map(|j| net.account_key(j)).collect::<anyhow::Result<Vec<_>>>().expect("keys");
    let template = TxTemplate {
        chain_id: net.manifest.chain_id.clone(),
        amount: 1,
        fee: ledger_core::ConsensusParams::default().min_fee,
        expiry_height: 10_000_000,
    };
    net.start_all().expect("start");
    let all: Vec<usize> = (0..validators).collect();
    net.wait_all(&all, 2, Duration::from_secs(60)).expect("first blocks");
    let endpoints: Vec<String> = net.nodes.iter().map(|n| n.api.base.clone()).collect();

    eprintln!("{:.1}s: network up", t0.elapsed().as_secs_f64());
    // Phase 1: as fast as the network commits (closed loop).
    let unloaded_work = load::presign(&keys, &template, 60_000, 2);
    let cfg = LoadConfig {
        endpoints: endpoints.clone(),
        rate_tps: None,
        threads: 2 * validators,
        batch: 200,
        duration: PHASE,
        inflight_max: 8_000,
    };
    let (p1, unloaded, admitted1) = phase(&endpoints[0], &unloaded_work, &cfg);
    eprintln!("unloaded: {unloaded:.0} tx/s committed, {admitted1} admitted, refusals {:?}", p1.rejected_by_code);
    assert!(unloaded > 100.0, "the network commits under a closed-loop load ({unloaded:.0} tx/s)");

    // Let the pools drain, then phase 2: three times that, open loop, from fresh senders' next nonces.
    let drained = Instant::now();
    while net
        .nodes
        .iter()
        .any(|n| n.api.get("/mempool").ok().and_then(|a| a.body["count"].as_u64()).is_none_or(|c| c > 0))
    {
        assert!(drained.elapsed() < Duration::from_secs(60), "pools drain after phase 1");
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("{:.1}s: pools drained", t0.elapsed().as_secs_f64());
    let offered = 3.0 * unloaded;
    // Phase 1 left each sender at some nonce: phase 2 signs from there.
    let start_nonces: Vec<u64> = (0..accounts)
        .map(|j| {
            let addr = keys[j].public().to_address_string();
            net.nodes[0].api.get(&format!("/accounts/{addr}")).ok().and_then(|a| a.body["nonce"].as_u64()).unwrap_or(0)
        })
        .collect();
    let count = (offered * PHASE.as_secs_f64() * 1.1) as usize + 1000;
    let overload_work = load::presign_from(&keys, &template, count, 2, &start_nonces);
    eprintln!("{:.1}s: phase 2 signed", t0.elapsed().as_secs_f64());
    let cfg = LoadConfig {
        endpoints: endpoints.clone(),
        rate_tps: Some(offered),
        threads: 2 * validators,
        batch: ((offered / (2 * validators) as f64 / 20.0) as usize).clamp(50, 1000),
        duration: PHASE,
        inflight_max: u64::MAX,
    };
    let (p2, overloaded, admitted2) = phase(&endpoints[0], &overload_work, &cfg);
    let refused_full: u64 = p2
        .rejected_by_code
        .iter()
        .filter(|(code, _)| code.as_str() == "mempool_full" || code.as_str() == "http_429")
        .map(|(_, n)| n)
        .sum();
    eprintln!(
        "offered {offered:.0} tx/s: {overloaded:.0} tx/s committed ({:.0} % of unloaded), {admitted2} admitted, \
         {} batch requests repeated after a 429 or 503, refusals {:?}",
        100.0 * overloaded / unloaded,
        p2.retries,
        p2.rejected_by_code
    );
    assert!(
        overloaded >= 0.5 * unloaded,
        "overload committed {overloaded:.0} tx/s, less than half of the unloaded {unloaded:.0} tx/s"
    );
    assert!(p2.retries > 0 || refused_full > 0, "the excess is refused at the door with 429 mempool_full");
    // Every node is still live afterwards.
    let h = net.nodes[0].api.height().expect("height");
    net.wait_all(&all, h + 2, Duration::from_secs(30)).expect("blocks after the overload");
}
