//! The nemesis: a seeded fault schedule, printed before the run, and the code that injects each fault
//! and heals it.
//!
//! One fault is active at a time, with a quiet gap after each heal, so that >2/3 of the power is up and
//! connected between faults and every heal is followed by a measured recovery. The scheduled durations
//! (how long a node stays down, paused or cut off) are the faults themselves; everything else waits on
//! observed heights with deadlines.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use super::disk::DiskFault;
use super::rng::Rng;
use crate::byzantine::Flood;

/// The kinds of fault; docs/reliability.md's fault catalogue ("Faults") describes each and the tests that
/// cover it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// kill -9, stay down a while, restart on the same data.
    Kill9,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGTERM, wait for the clean exit, start again.
    Restart,
    /// Stop a node (kill -9 or SIGTERM), damage its data directory (sled log, signer state, reset-data),
    /// start it again, and recover it as an operator would when it refuses.
    Disk,
    /// Cut one node off from every other node.
    Isolate,
    /// Two halves that cannot reach each other (2|2 for four nodes): no block may commit.
    Split,
    /// Links cut and mended at random, healed in random order.
    Flap,
    /// Delay with jitter and loss on one node's link (tc netem), or loss alone (iptables) without netem.
    Lossy,
    /// A Byzantine libp2p peer (`crate::byzantine`) joins the validators and runs one of its floods.
    /// Opt-in (not in [`FaultKind::ALL`]): `chaos --faults …,byzantine` or `chaos --byzantine`.
    Byzantine,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        FaultKind::Kill9,
        FaultKind::Pause,
        FaultKind::Restart,
        FaultKind::Disk,
        FaultKind::Isolate,
        FaultKind::Split,
        FaultKind::Flap,
        FaultKind::Lossy,
    ];

    /// Kinds a run uses only when asked for by name: they are not in [`FaultKind::ALL`], so the schedules
    /// of existing seeds do not change.
    pub const OPT_IN: [FaultKind; 1] = [FaultKind::Byzantine];

    /// Faults that need a network namespace per node.
    pub fn needs_netns(self) -> bool {
        matches!(self, FaultKind::Isolate | FaultKind::Split | FaultKind::Flap | FaultKind::Lossy)
    }

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill9 => "kill9",
            FaultKind::Pause => "pause",
            FaultKind::Restart => "restart",
            FaultKind::Disk => "disk",
            FaultKind::Isolate => "isolate",
            FaultKind::Split => "split",
            FaultKind::Flap => "flap",
            FaultKind::Lossy => "lossy",
            FaultKind::Byzantine => "byzantine",
        }
    }

    pub fn parse(name: &str) -> Option<FaultKind> {
        FaultKind::ALL.into_iter().chain(FaultKind::OPT_IN).find(|k| k.name() == name)
    }
}

/// One fault with its parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Kill9 {
        node: usize,
        down_ms: u64,
    },
    Pause {
        node: usize,
        ms: u64,
    },
    Restart {
        node: usize,
    },
    /// Stop `node` (kill -9 when `crash`, else SIGTERM), apply `what` to its data directory, keep it down
    /// `down_ms`, start it; when it refuses, recover it with `--accept-rewind` (and `reset-data` when the
    /// database is corrupt or `prefer_reset`). `seed` places the damaged bytes.
    Disk {
        node: usize,
        what: DiskFault,
        crash: bool,
        prefer_reset: bool,
        down_ms: u64,
        seed: u64,
    },
    Isolate {
        node: usize,
        ms: u64,
    },
    Split {
        side_a: Vec<usize>,
        side_b: Vec<usize>,
        ms: u64,
    },
    /// Every `period_ms` one random link is toggled; `seed` drives the choices and the healing order.
    Flap {
        ms: u64,
        period_ms: u64,
        seed: u64,
    },
    Lossy {
        node: usize,
        delay_ms: u64,
        jitter_ms: u64,
        loss_pct: u64,
        ms: u64,
    },
    /// A Byzantine peer connected to every validator runs `flood` at its default rate for `ms`.
    Byzantine {
        flood: Flood,
        ms: u64,
    },
}

impl Fault {
    pub fn kind(&self) -> FaultKind {
        match self {
            Fault::Kill9 { .. } => FaultKind::Kill9,
            Fault::Pause { .. } => FaultKind::Pause,
            Fault::Restart { .. } => FaultKind::Restart,
            Fault::Disk { .. } => FaultKind::Disk,
            Fault::Isolate { .. } => FaultKind::Isolate,
            Fault::Split { .. } => FaultKind::Split,
            Fault::Flap { .. } => FaultKind::Flap,
            Fault::Lossy { .. } => FaultKind::Lossy,
            Fault::Byzantine { .. } => FaultKind::Byzantine,
        }
    }

    /// How long the fault is held before it is healed.
    pub fn hold(&self) -> Duration {
        Duration::from_millis(match self {
            Fault::Kill9 { down_ms, .. } | Fault::Disk { down_ms, .. } => *down_ms,
            Fault::Restart { .. } => 0,
            Fault::Pause { ms, .. }
            | Fault::Isolate { ms, .. }
            | Fault::Split { ms, .. }
            | Fault::Flap { ms, .. }
            | Fault::Lossy { ms, .. }
            | Fault::Byzantine { ms, .. } => *ms,
        })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Kill9 { node, down_ms } => write!(f, "kill9 node{node}, down {down_ms} ms"),
            Fault::Pause { node, ms } => write!(f, "pause (SIGSTOP) node{node} for {ms} ms"),
            Fault::Restart { node } => write!(f, "clean restart (SIGTERM) node{node}"),
            Fault::Disk { node, what, crash, prefer_reset, down_ms, seed } => {
                let how = if *crash { "kill -9" } else { "SIGTERM" };
                let recovery = if *prefer_reset { "reset-data" } else { "accept-rewind" };
                write!(f, "disk node{node}: {how}, {what}, down {down_ms} ms (seed {seed}, recovery by {recovery})")
            }
            Fault::Isolate { node, ms } => write!(f, "isolate node{node} for {ms} ms"),
            Fault::Split { side_a, side_b, ms } => write!(f, "split {side_a:?}|{side_b:?} for {ms} ms"),
            Fault::Flap { ms, period_ms, seed } => {
                write!(f, "flapping links every {period_ms} ms for {ms} ms (seed {seed})")
            }
            Fault::Lossy { node, delay_ms, jitter_ms, loss_pct, ms } => {
                write!(f, "lossy link node{node}: delay {delay_ms}±{jitter_ms} ms, loss {loss_pct}% for {ms} ms")
            }
            Fault::Byzantine { flood, ms } => write!(
                f,
                "byzantine peer on every validator: {flood} at {} {}/s for {ms} ms",
                flood.default_rate(),
                flood.unit()
            ),
        }
    }
}

/// A fault and when (from the start of the chaos phase) it begins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub fault: Fault,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:>5.1}s  {}", self.at.as_secs_f64(), self.fault)
    }
}

/// Time allowed after a fault's hold for its heal and the recovery, when laying out the schedule.
const STEP_SLACK_MS: u64 = 2_000;
/// First fault this long after the workload starts, so the history begins with a healthy network.
const FIRST_FAULT_MS: u64 = 3_000;
/// Extra time laid out after a disk fault: the restarted validator watches the network (6 s by default,
/// `consensus.double_sign_watch_ms`) before it signs again, and may resync.
const DISK_SLACK_MS: u64 = 8_000;
/// Extra time laid out after a Byzantine flood: the attacker joins every validator before it floods.
const BYZANTINE_SLACK_MS: u64 = 5_000;

/// The schedule for `seed`: faults of `kinds` (a seeded permutation, repeated) until `duration` is used.
pub fn schedule(seed: u64, duration: Duration, n: usize, kinds: &[FaultKind]) -> Vec<Step> {
    let mut rng = Rng::new(seed ^ 0x6E65_6D65_7369_7321);
    let mut order: Vec<FaultKind> = kinds.to_vec();
    let mut steps = Vec::new();
    if order.is_empty() || n == 0 {
        return steps;
    }
    let end_ms = duration.as_millis() as u64;
    let mut t = FIRST_FAULT_MS;
    let mut k = 0;
    loop {
        if k % order.len() == 0 {
            rng.shuffle(&mut order);
        }
        let fault = make_fault(order[k % order.len()], n, &mut rng);
        k += 1;
        let extra = match fault.kind() {
            FaultKind::Disk => DISK_SLACK_MS,
            FaultKind::Byzantine => BYZANTINE_SLACK_MS,
            _ => 0,
        };
        let budget = fault.hold().as_millis() as u64 + STEP_SLACK_MS + extra;
        if t + budget > end_ms {
            break;
        }
        steps.push(Step { at: Duration::from_millis(t), fault });
        t += budget + rng.range(2_000, 4_000);
    }
    steps
}

fn make_fault(kind: FaultKind, n: usize, rng: &mut Rng) -> Fault {
    let node = rng.below(n);
    match kind {
        FaultKind::Kill9 => Fault::Kill9 { node, down_ms: rng.range(1_000, 5_000) },
        FaultKind::Pause => Fault::Pause { node, ms: rng.range(8_000, 10_000) },
        FaultKind::Restart => Fault::Restart { node },
        FaultKind::Disk => Fault::Disk {
            node,
            what: DiskFault::random(rng),
            crash: rng.below(2) == 0,
            prefer_reset: rng.below(2) == 0,
            down_ms: rng.range(500, 3_000),
            seed: rng.next_u64(),
        },
        FaultKind::Isolate => Fault::Isolate { node, ms: rng.range(4_000, 8_000) },
        FaultKind::Split => {
            let mut all: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut all);
            let (a, b) = all.split_at(n / 2);
            let (mut side_a, mut side_b) = (a.to_vec(), b.to_vec());
            side_a.sort_unstable();
            side_b.sort_unstable();
            Fault::Split { side_a, side_b, ms: rng.range(5_000, 8_000) }
        }
        FaultKind::Flap => {
            Fault::Flap { ms: rng.range(6_000, 9_000), period_ms: rng.range(400, 1_200), seed: rng.next_u64() }
        }
        FaultKind::Lossy => {
            let delay_ms = rng.range(50, 200);
            Fault::Lossy {
                node,
                delay_ms,
                jitter_ms: delay_ms / 4,
                loss_pct: rng.range(5, 20),
                ms: rng.range(5_000, 8_000),
            }
        }
        FaultKind::Byzantine => {
            Fault::Byzantine { flood: Flood::ALL[rng.below(Flood::ALL.len())], ms: rng.range(10_000, 20_000) }
        }
    }
}

/// The kinds a schedule exercises.
pub fn kinds_of(steps: &[Step]) -> BTreeSet<FaultKind> {
    steps.iter().map(|s| s.fault.kind()).collect()
}

/// Sleep until `at` past `start` (no-op when already late): the schedule's own clock.
pub fn sleep_until(start: Instant, at: Duration) {
    let now = start.elapsed();
    if at > now {
        std::thread::sleep(at - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_a_function_of_the_seed_and_fits_the_duration() {
        let d = Duration::from_secs(60);
        let a = schedule(5, d, 4, &FaultKind::ALL);
        assert_eq!(a, schedule(5, d, 4, &FaultKind::ALL));
        assert_ne!(a, schedule(6, d, 4, &FaultKind::ALL));
        assert!(!a.is_empty());
        for s in &a {
            assert!(s.at + s.fault.hold() <= d, "{s}");
        }
        let process_only = [FaultKind::Kill9, FaultKind::Pause, FaultKind::Restart];
        assert!(schedule(5, d, 4, &process_only).iter().all(|s| !s.fault.kind().needs_netns()));
    }

    #[test]
    fn byzantine_is_opt_in_and_scheduled_when_asked_for() {
        assert!(!FaultKind::ALL.contains(&FaultKind::Byzantine));
        assert_eq!(FaultKind::parse("byzantine"), Some(FaultKind::Byzantine));
        let d = Duration::from_secs(120);
        let floods: BTreeSet<Flood> = (0..40)
            .flat_map(|seed| schedule(seed, d, 4, &[FaultKind::Byzantine, FaultKind::Pause]))
            .filter_map(|s| if let Fault::Byzantine { flood, .. } = s.fault { Some(flood) } else { None })
            .collect();
        assert_eq!(floods.len(), Flood::ALL.len(), "every flood is scheduled by some seed: {floods:?}");
        assert!(schedule(5, d, 4, &FaultKind::ALL).iter().all(|s| s.fault.kind() != FaultKind::Byzantine));
    }
}
