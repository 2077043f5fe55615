//! The consensus simulator as a test suite: 1000 mixed seeds with no violation, same seed same trace, the
//! negative controls (the checker does see a fork when one happens), and scenarios named by topology.

use tests::sim::{Behaviour, CrashKind, Fault, FlushPolicy, LinkProfile, Report, SimConfig, Violation, World, run};

/// Run seeds `range` of the random mix; fail with every failing seed and its configuration.
fn mixed(range: std::ops::Range<u64>) -> Vec<Report> {
    let mut failures = String::new();
    let mut reports = Vec::new();
    for seed in range {
        let cfg = SimConfig::random(seed, None, None);
        let r = run(&cfg);
        if !r.violations.is_empty() {
            failures.push_str(&format!("FAILED seed={seed}\n{cfg}"));
            for v in &r.violations {
                failures.push_str(&format!("  {v}\n"));
            }
        }
        reports.push(r);
    }
    assert!(failures.is_empty(), "{failures}");
    reports
}

/// The mix must actually exercise what it claims to.
fn assert_coverage(reports: &[Report]) {
    let sum = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    assert!(sum(|r| r.heights) > 10 * reports.len() as u64 / 2, "too few heights");
    assert!(sum(|r| r.faults) > reports.len() as u64, "too few faults");
    assert!(sum(|r| r.restarts) > 0 && sum(|r| r.resumes_mid_height) > 0, "no restarts mid-height");
    assert!(sum(|r| r.evidence as u64) > 0, "no evidence");
    assert!(sum(|r| r.syncs) > 0, "no sync");
    for n in [4, 7, 10] {
        assert!(reports.iter().any(|r| r.validators == n), "no run with {n} validators");
    }
}

#[test]
fn mixed_seeds_0_to_249() {
    assert_coverage(&mixed(0..250));
}

#[test]
fn mixed_seeds_250_to_499() {
    assert_coverage(&mixed(250..500));
}

#[test]
fn mixed_seeds_500_to_749() {
    assert_coverage(&mixed(500..750));
}

#[test]
fn mixed_seeds_750_to_999() {
    assert_coverage(&mixed(750..1000));
}

#[test]
fn same_seed_gives_the_same_trace() {
    for seed in [3, 15, 42] {
        let cfg = SimConfig::random(seed, None, None);
        let (a, b) = (run(&cfg), run(&cfg));
        assert_eq!(a.trace_hash, b.trace_hash, "seed {seed}");
        assert_eq!((a.heights, a.delivered, a.sim_ms), (b.heights, b.delivered, b.sim_ms), "seed {seed}");
        assert!(a.delivered > 100, "seed {seed} did not run");
    }
    let other = run(&SimConfig::random(43, None, None));
    assert_ne!(run(&SimConfig::random(42, None, None)).trace_hash, other.trace_hash);
}

fn first_seed_with(seeds: std::ops::Range<u64>, cfg: impl Fn(u64) -> SimConfig, kind: &str) -> Option<(u64, Report)> {
    seeds.map(|s| (s, run(&cfg(s)))).find(|(_, r)| r.violations.iter().any(|v| v.kind() == kind))
}

/// Four validators, two of them (1/2 of the power) a coalition that equivocates as proposer and votes for
/// each half's block: the checker must report a fork.
#[test]
fn negative_control_byzantine_half_forks() {
    let cfg = |seed| {
        let mut c = SimConfig::random(seed, Some(4), Some(0));
        c.byzantine = vec![(0, Behaviour::ForkCoalition), (1, Behaviour::ForkCoalition)];
        c.leak_equivocations = false;
        c.check_liveness = false;
        c
    };
    let found = first_seed_with(0..1000, cfg, "agreement");
    let (seed, report) = found.expect("no fork within 1000 seeds: the checker cannot see one");
    println!("fork found at seed {seed}: {}", report.violations[0]);
}

/// The same coalition with 1/4 of the power (below 1/3) cannot fork: a control for the control.
#[test]
fn byzantine_quarter_coalition_does_not_fork() {
    for seed in 0..60 {
        let mut c = lock_stress(seed);
        c.core_hook = None;
        let r = run(&c);
        assert!(r.violations.is_empty(), "seed {seed}\n{c}{:?}", r.violations);
    }
}

/// Four validators, one Byzantine coalition member, links slow and jittery against short timeouts, and
/// flapping one-way cuts: rounds fail after some nodes locked, which is what the lock is for.
fn lock_stress(seed: u64) -> SimConfig {
    let mut c = SimConfig::random(seed, Some(4), Some(0));
    c.byzantine = vec![(3, Behaviour::ForkCoalition)];
    c.leak_equivocations = false;
    c.check_liveness = false;
    c.chaos_ms = 20_000;
    c.chaos_link = LinkProfile {
        latency_min_ms: 20,
        latency_max_ms: 400,
        jitter_ms: 600,
        tail_per_mille: 50,
        loss_per_mille: 100,
        duplicate_per_mille: 0,
        replay_per_mille: 0,
    };
    c.faults.retain(|(_, f)| {
        !matches!(f, Fault::Crash { .. } | Fault::CrashAfterNextPersist { .. } | Fault::Restart { .. })
    });
    c
}

/// Honest nodes that ignore their lock (the `broken-lock` control in the core) must be caught forking.
#[test]
fn negative_control_broken_lock_is_caught() {
    let cfg = |seed| {
        let mut c = lock_stress(seed);
        c.core_hook = Some(|core| core.set_broken_lock(true));
        c
    };
    let found = first_seed_with(0..1000, cfg, "agreement");
    let (seed, report) = found.expect("broken lock not caught within 1000 seeds");
    println!("broken lock caught at seed {seed}: {}", report.violations[0]);
}

/// Split 2|2: neither side has 2/3, so nothing commits while the split lasts; after the heal, every
/// height commits within the bound.
#[test]
fn n4_split_2_2_halts_then_resumes() {
    let mut c = SimConfig::quiet(7, 4);
    c.chaos_ms = 20_000;
    c.faults = Fault::split(1, &[0, 1], &[2, 3]).into_iter().map(|f| (3_000, f)).collect();
    let mut w = World::new(c);
    w.run_until(6_000);
    let during = w.honest_heights();
    assert!(during.iter().all(|h| *h >= 1), "nothing committed before the split: {during:?}");
    w.run_until(19_900);
    assert_eq!(w.honest_heights(), during, "committed during a 2|2 split");
    let r = w.run();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.min_height >= during.iter().max().unwrap() + 3, "did not resume: {}", r.min_height);
}

/// One-way cut: node 0 can send but not receive, then the reverse, then healed.
#[test]
fn n4_asymmetric_cuts_heal() {
    let mut c = SimConfig::quiet(11, 4);
    c.chaos_ms = 12_000;
    c.faults = vec![
        (1_000, Fault::Cut { id: 1, from: vec![1, 2, 3], to: vec![0] }),
        (5_000, Fault::Heal { id: 1 }),
        (5_000, Fault::Cut { id: 2, from: vec![0], to: vec![1, 2, 3] }),
        (9_000, Fault::Heal { id: 2 }),
    ];
    let r = run(&c);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert!(r.min_height >= 5);
}

/// Seven validators, crashes right after a persist (before the broadcast it guards) and at random, by
/// power loss: the restarted cores resume from the persisted signer state and never sign twice.
#[test]
fn n7_crash_restart_keeps_signer_state() {
    let mut resumed = 0;
    for seed in 0..20 {
        let mut c = SimConfig::quiet(seed, 7);
        c.chaos_ms = 15_000;
        c.faults = Vec::new();
        for k in 0..8u64 {
            let node = ((seed + k) % 7) as usize;
            let t = 500 + k * 1_700;
            let crash = if k % 2 == 0 {
                Fault::CrashAfterNextPersist { node, kind: CrashKind::Power }
            } else {
                Fault::Crash { node, kind: CrashKind::Power }
            };
            c.faults.extend([(t, crash), (t + 900, Fault::Restart { node })]);
        }
        let r = run(&c);
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        assert!(r.restarts >= 4, "seed {seed}: {} restarts", r.restarts);
        resumed += r.resumes_mid_height;
    }
    assert!(resumed > 10, "few restarts resumed mid-height: {resumed}");
}

fn power_loss_storm(seed: u64, flush: FlushPolicy) -> SimConfig {
    let mut c = SimConfig::quiet(seed, 4);
    c.flush = flush;
    c.chaos_ms = 15_000;
    c.gossip_ms = 1_000;
    c.check_liveness = flush == FlushPolicy::PerContract;
    for k in 0..12u64 {
        let node = ((seed * 7 + k) % 4) as usize;
        let t = 400 + k * 1_100 + seed % 300;
        c.faults.extend([(t, Fault::Crash { node, kind: CrashKind::Power }), (t + 300, Fault::Restart { node })]);
    }
    c
}

/// Power loss drops unflushed writes; a shell that flushes per the ordering contract stays safe and
/// durable.
#[test]
fn n4_lost_unflushed_writes() {
    let mut lost = 0;
    for seed in 0..30 {
        let r = run(&power_loss_storm(seed, FlushPolicy::PerContract));
        assert!(r.violations.is_empty(), "seed {seed}: {:?}", r.violations);
        lost += r.lost_writes;
    }
    assert!(lost > 0, "no write was ever lost: the scenario tests nothing");
}

/// The same storm with a shell that flushes on a timer instead: the checker must catch it (a double sign
/// or a chain that went back). This is what the contract buys.
#[test]
fn n4_lost_unflushed_writes_without_contract_is_caught() {
    let caught = |wanted: fn(&Violation) -> bool| {
        (0..200).find_map(|seed| {
            let r = run(&power_loss_storm(seed, FlushPolicy::Lazy));
            r.violations.iter().find(|v| wanted(v)).map(|v| (seed, v.clone()))
        })
    };
    let (seed, v) = caught(|v| matches!(v, Violation::Durability { .. })).expect("chain going back not caught");
    println!("lazy flush: durability caught at seed {seed}: {v}");
    let (seed, v) = caught(|v| matches!(v, Violation::DoubleSign { .. })).expect("double sign not caught");
    println!("lazy flush: double sign caught at seed {seed}: {v}");
}

/// Known issue, pinned: one double-voting validator can stall the core for good (the keeper counts only
/// the first vote per validator and slot). When the core is fixed this test fails: make the random mix
/// check liveness for double voters again and drop this test.
#[test]
fn n4_double_voter_stall_known_issue() {
    let mut c = SimConfig::random(276, None, None);
    assert_eq!((c.validators, c.byzantine.len()), (4, 1));
    assert_eq!(c.byzantine[0].1, Behaviour::DoubleVoter);
    c.check_liveness = true;
    let r = run(&c);
    assert!(r.violations.iter().any(|v| v.kind() == "liveness"), "{:?}", r.violations);
    assert!(r.violations.iter().all(|v| v.kind() == "liveness"), "{:?}", r.violations);
}
