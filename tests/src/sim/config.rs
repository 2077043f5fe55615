//! What one run is: validators, Byzantine behaviours, link quality and the fault schedule, all derived
//! from a seed by [`SimConfig::random`] (or written by hand for the scenarios named by topology).

use std::fmt;

use ledger_core::consensus::Consensus;
use ledger_core::gossip::MessageCheck;

use ledger_core::governance::GovState;
use ledger_core::{Height, ValidatorSet};

pub use super::governance::GovAction;
use super::rng::Rng;

/// A Byzantine validator's behaviour. Each is small and named, as in commonware's mocks; all but `Silent`
/// run a real consensus core to stay in step and tamper with what it sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// Sends nothing, answers nothing: absent stake.
    Silent,
    /// As proposer, signs two different valid blocks for one (height, round) and sends one to each half.
    EquivocatingProposer,
    /// Signs two different votes for every (height, round, step): one to each half of the honest nodes.
    DoubleVoter,
    /// Proposes invalid blocks (wrong state root) and votes only for invalid or unknown blocks.
    InvalidVoter,
    /// Honest votes, plus replays of old messages (its own and others', any height) to random peers.
    Replayer,
    /// Honest votes, plus signed votes for far-future rounds (some beyond the core's window).
    RoundSkipper,
    /// Honest votes, plus a flood every gossip round: votes and proposals with forged signatures, votes
    /// signed by keys outside the set, garbage-height replays of old messages. Honest nodes must refuse
    /// it cheaply, ban it, and stay live.
    Flooder,
    /// Equivocating proposer and double voter acting together: the votes sent to each half name the block
    /// that half was proposed. With >= 1/3 of the power this forks the chain (the negative control).
    ForkCoalition,
}

impl Behaviour {
    /// The behaviours mixed into random runs (the coalition is for the negative control).
    pub const RANDOM: [Behaviour; 7] = [
        Behaviour::Silent,
        Behaviour::EquivocatingProposer,
        Behaviour::DoubleVoter,
        Behaviour::InvalidVoter,
        Behaviour::Replayer,
        Behaviour::RoundSkipper,
        Behaviour::Flooder,
    ];

    pub fn equivocates_proposals(self) -> bool {
        matches!(self, Behaviour::EquivocatingProposer | Behaviour::ForkCoalition)
    }

    pub fn equivocates_votes(self) -> bool {
        matches!(self, Behaviour::DoubleVoter | Behaviour::ForkCoalition)
    }
}

/// Link quality: every message gets `latency(from, to) + uniform(0..=jitter_ms)`, where the per-link
/// latency is drawn once in `latency_min_ms..=latency_max_ms`; a small share gets a long tail (x5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkProfile {
    pub latency_min_ms: u64,
    pub latency_max_ms: u64,
    pub jitter_ms: u64,
    pub tail_per_mille: u32,
    pub loss_per_mille: u32,
    pub duplicate_per_mille: u32,
    /// A copy delivered again 1-10 s later: a replay by the network.
    pub replay_per_mille: u32,
}

impl LinkProfile {
    /// Faults off: delays and jitter (so still reordering), nothing lost, duplicated or replayed.
    pub fn healed(latency_min_ms: u64, latency_max_ms: u64, jitter_ms: u64) -> LinkProfile {
        LinkProfile {
            latency_min_ms,
            latency_max_ms,
            jitter_ms,
            tail_per_mille: 0,
            loss_per_mille: 0,
            duplicate_per_mille: 0,
            replay_per_mille: 0,
        }
    }
}

/// What a crash does to writes not yet flushed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashKind {
    /// kill -9: the page cache survives, pending writes reach the disk.
    Process,
    /// Power loss: pending writes are lost.
    Power,
}

/// When the shell flushes its disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// Per the action-ordering contract: after every `PersistSignerState` (before the broadcast it guards)
    /// and after committing a decided block (before `NewHeight`).
    PerContract,
    /// Group commit on a timer only: breaks the contract. For the negative control.
    Lazy,
}

/// How a restart damages the durable signer state (see [`Fault::LoseSigner`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignerLoss {
    /// The state is gone: the node starts from `SignerState::default()` (a deleted or unreadable file).
    Lost,
    /// An older persisted state comes back (a restored backup, a disk that reverted): the one `back`
    /// persists before the last, or the oldest the disk still holds.
    Rewound { back: usize },
}

/// A fault injected at a time. Cuts with the same id are removed together by [`Fault::Heal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Messages from any node in `from` to any node in `to` are lost (one direction).
    Cut {
        id: u32,
        from: Vec<usize>,
        to: Vec<usize>,
    },
    Heal {
        id: u32,
    },
    Crash {
        node: usize,
        kind: CrashKind,
    },
    /// Crash right after the next `PersistSignerState` (before the broadcast it guards).
    CrashAfterNextPersist {
        node: usize,
        kind: CrashKind,
    },
    Restart {
        node: usize,
    },
    /// The next restart of `node` (by [`Fault::Restart`], [`Fault::QuickRestart`] or the heal) starts from
    /// a damaged signer state: lost or rewound. The node must be honest; a live node keeps running and is
    /// damaged when it next restarts.
    LoseSigner {
        node: usize,
        loss: SignerLoss,
    },
    /// The next crash of `node` is followed by a restart `down_ms` later (so a crash at an unknown time,
    /// such as [`Fault::CrashAfterNextPersist`], can restart while the network is still at its height).
    QuickRestart {
        node: usize,
        down_ms: u64,
    },
}

impl Fault {
    /// Both directions between `a` and `b`.
    pub fn split(id: u32, a: &[usize], b: &[usize]) -> [Fault; 2] {
        [Fault::Cut { id, from: a.to_vec(), to: b.to_vec() }, Fault::Cut { id, from: b.to_vec(), to: a.to_vec() }]
    }

    /// Counted in the run's fault figure (heals and restarts end a fault, they are not one).
    pub fn counts(&self) -> bool {
        !matches!(self, Fault::Heal { .. } | Fault::Restart { .. } | Fault::QuickRestart { .. })
    }
}

/// A hook applied to every honest core when it is built (at start and after each restart). Tests use
/// it for `set_broken_lock(true)`; the `sim` binary never sets one.
pub type CoreHook = fn(&mut Consensus);

/// A hook applied to every gossip check an honest shell makes (`ledger_core::gossip::MessageCheck`). Tests
/// use it to put back the rule that refused honest re-proposals (`with_broken_reproposal`); the `sim`
/// binary never sets one.
pub type CheckHook = for<'a> fn(MessageCheck<'a>) -> MessageCheck<'a>;

/// A hook that picks the set one honest shell hands its core for `height` from its governance state (the
/// honest rule is `gov.set_at(height)`). Tests use it for the early-activation negative control; the `sim`
/// binary never sets one.
pub type SetHook = fn(&GovState, Height) -> Option<ValidatorSet>;

/// One run.
#[derive(Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Validators of the genesis set: nodes `0..validators`.
    pub validators: usize,
    /// Honest nodes outside the genesis set (`validators..validators + spares`): they follow the chain and
    /// sign once a governance change adds them.
    pub spares: usize,
    /// Validator-set changes: (time ms, change). At that time the operators of the honest validators sign
    /// their approvals and hand them to every honest node (as `POST /governance/approvals`), again after each
    /// restart and on every gossip round until the change is executed.
    pub gov: Vec<(u64, GovAction)>,
    /// (node, hook): that honest node picks the set it hands its core with the hook (negative control).
    pub set_hook: Option<(usize, SetHook)>,
    /// (validator index, behaviour), indices distinct.
    pub byzantine: Vec<(usize, Behaviour)>,
    /// Byzantine equivocators also send the other version to everyone (so honest nodes can see both and
    /// must produce evidence); without it each half sees only its own version.
    pub leak_equivocations: bool,
    pub chaos_link: LinkProfile,
    pub healed_link: LinkProfile,
    /// (time ms, fault), in any order; only faults before `chaos_ms` are applied.
    pub faults: Vec<(u64, Fault)>,
    pub chaos_ms: u64,
    /// After the heal, every honest node must commit this many more heights...
    pub healed_heights: u64,
    /// ...the first within `first_height_bound_ms` of the heal, each next within `height_bound_ms`.
    pub first_height_bound_ms: u64,
    pub height_bound_ms: u64,
    /// Without the healed phase the run stops at `chaos_ms` (safety only).
    pub check_liveness: bool,
    pub flush: FlushPolicy,
    /// Re-gossip period of each node (jittered +-25%).
    pub gossip_ms: u64,
    pub core_hook: Option<CoreHook>,
    pub check_hook: Option<CheckHook>,
    /// The double-sign guard at start in every honest shell, as the node runs it: a (re)started validator
    /// watches before it signs, its look-back floor comes from the certificates in its chain, and synced
    /// certificates with its key raise it. Off (the negative control): no watch, floor 0, no raise.
    pub signer_guard: bool,
}

impl SimConfig {
    /// Faulty power the protocol tolerates: f with n >= 3f + 1 (all powers are 1).
    pub fn max_faulty(validators: usize) -> usize {
        validators.saturating_sub(1) / 3
    }

    /// A fault-free run of `validators` nodes: the base that scenarios edit.
    pub fn quiet(seed: u64, validators: usize) -> SimConfig {
        SimConfig {
            seed,
            validators,
            spares: 0,
            gov: Vec::new(),
            set_hook: None,
            byzantine: Vec::new(),
            leak_equivocations: true,
            chaos_link: LinkProfile::healed(20, 80, 30),
            healed_link: LinkProfile::healed(20, 80, 30),
            faults: Vec::new(),
            chaos_ms: 5_000,
            healed_heights: 3,
            first_height_bound_ms: 30_000,
            height_bound_ms: 10_000,
            check_liveness: true,
            flush: FlushPolicy::PerContract,
            gossip_ms: 800,
            core_hook: None,
            check_hook: None,
            signer_guard: true,
        }
    }

    /// Everything drawn from `seed`: n in {4, 7, 10} unless given, up to f Byzantine validators (or
    /// `byzantine` of them) with random behaviours, lossy links, partitions (symmetric splits, isolation,
    /// one-way cuts, flapping links), crashes with restarts (process or power), crashes between persist and
    /// broadcast.
    pub fn random(seed: u64, validators: Option<usize>, byzantine: Option<usize>) -> SimConfig {
        let mut r = Rng::new(seed);
        let n = validators.unwrap_or_else(|| r.pick(&[4, 4, 4, 7, 7, 10]));
        let f = Self::max_faulty(n);
        let n_byz = byzantine.unwrap_or_else(|| r.below(f as u64 + 1) as usize).min(n);
        let mut order: Vec<usize> = (0..n).collect();
        r.shuffle(&mut order);
        let byzantine: Vec<(usize, Behaviour)> =
            order[..n_byz].iter().map(|i| (*i, r.pick(&Behaviour::RANDOM))).collect();
        let honest: Vec<usize> = order[n_byz..].to_vec();
        let latency_min_ms = r.range(5, 60);
        let chaos_link = LinkProfile {
            latency_min_ms,
            latency_max_ms: latency_min_ms + r.range(10, 250),
            jitter_ms: r.range(0, 200),
            tail_per_mille: r.range(0, 30) as u32,
            loss_per_mille: r.pick(&[0, 20, 50, 100, 200]),
            duplicate_per_mille: r.pick(&[0, 0, 20, 100]),
            replay_per_mille: r.pick(&[0, 0, 5, 20]),
        };
        let healed_link = LinkProfile::healed(latency_min_ms, latency_min_ms + r.range(10, 120), r.range(0, 60));
        let chaos_ms = r.range(4_000, 12_000);
        let mut faults = Vec::new();
        let mut loss_rng = Rng::new(seed ^ 0x5349_474e_4c4f_5353);
        let mut lossy: Vec<usize> = Vec::new();
        let mut id = 0;
        for _ in 0..r.range(0, 6) {
            id += 1;
            let start = r.below(chaos_ms);
            let end = start + r.range(300, 6_000);
            let all: Vec<usize> = (0..n).collect();
            match r.below(7) {
                // Symmetric split into two random groups.
                0 => {
                    let mut nodes = all.clone();
                    r.shuffle(&mut nodes);
                    let k = r.range(1, n as u64 - 1) as usize;
                    let [a, b] = Fault::split(id, &nodes[..k], &nodes[k..]);
                    faults.extend([(start, a), (start, b), (end, Fault::Heal { id })]);
                }
                // Isolate one node.
                1 => {
                    let x = r.index(n);
                    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != x).collect();
                    let [a, b] = Fault::split(id, &[x], &rest);
                    faults.extend([(start, a), (start, b), (end, Fault::Heal { id })]);
                }
                // Asymmetric: one node can send but not receive, or receive but not send.
                2 => {
                    let x = r.index(n);
                    let rest: Vec<usize> = all.iter().copied().filter(|i| *i != x).collect();
                    let cut = if r.chance(500) {
                        Fault::Cut { id, from: rest, to: vec![x] }
                    } else {
                        Fault::Cut { id, from: vec![x], to: rest }
                    };
                    faults.extend([(start, cut), (end, Fault::Heal { id })]);
                }
                // A flapping link: cut and healed a few times.
                3 => {
                    let a = r.index(n);
                    let b = (a + 1 + r.index(n - 1)) % n;
                    let mut t = start;
                    for _ in 0..r.range(2, 5) {
                        let [x, y] = Fault::split(id, &[a], &[b]);
                        let up = t + r.range(100, 1_500);
                        faults.extend([(t, x), (t, y), (up, Fault::Heal { id })]);
                        t = up + r.range(100, 1_500);
                    }
                }
                // Crash an honest node, restart it later.
                4 | 5 if !honest.is_empty() => {
                    let node = r.pick(&honest);
                    let kind = if r.chance(500) { CrashKind::Power } else { CrashKind::Process };
                    let crash = if r.chance(300) {
                        Fault::CrashAfterNextPersist { node, kind }
                    } else {
                        Fault::Crash { node, kind }
                    };
                    faults.extend([(start, crash), (end, Fault::Restart { node })]);
                    // Some restarts lose or rewind the signer state (drawn from a stream of their own, so the
                    // rest of the schedule is the one this seed always had). A validator that finds its own
                    // earlier signatures abstains from that height, so it spends fault budget: only
                    // `f - byzantine` distinct validators per run get this fault, and liveness still holds.
                    let may_lose = lossy.contains(&node) || lossy.len() < f.saturating_sub(n_byz);
                    if may_lose && loss_rng.chance(SIGNER_LOSS_PER_MILLE) {
                        if !lossy.contains(&node) {
                            lossy.push(node);
                        }
                        let loss = if loss_rng.chance(500) {
                            SignerLoss::Lost
                        } else {
                            SignerLoss::Rewound { back: loss_rng.range(1, SIGNER_HISTORY_MAX as u64) as usize }
                        };
                        faults.push((start, Fault::LoseSigner { node, loss }));
                        // Half of them come back quickly, while the network may still be at the crash height:
                        // the dangerous case.
                        if loss_rng.chance(500) {
                            faults.push((start, Fault::QuickRestart { node, down_ms: loss_rng.range(50, 1_500) }));
                        }
                    }
                }
                // A majority ring-ish view: every node cut from one random other (one way).
                _ => {
                    for a in 0..n {
                        let b = (a + 1 + r.index(n - 1)) % n;
                        faults.push((start, Fault::Cut { id, from: vec![a], to: vec![b] }));
                    }
                    faults.push((end, Fault::Heal { id }));
                }
            }
        }
        // Every run with Byzantine power below 1/3 must be live after the heal, double voters included: the
        // keeper counts an equivocator once per value it voted for and honest nodes relay the votes behind
        // their locks (this once stalled seeds 273 and 276). Only a forking coalition (>= 1/3) is exempt.
        let check_liveness = !byzantine.iter().any(|(_, b)| matches!(b, Behaviour::ForkCoalition));
        SimConfig {
            seed,
            validators: n,
            spares: 0,
            gov: Vec::new(),
            set_hook: None,
            byzantine,
            leak_equivocations: r.chance(700),
            chaos_link,
            healed_link,
            faults,
            chaos_ms,
            healed_heights: 2,
            first_height_bound_ms: first_height_bound_ms(n),
            height_bound_ms: 10_000,
            check_liveness,
            flush: FlushPolicy::PerContract,
            gossip_ms: r.range(400, 1_200),
            core_hook: None,
            check_hook: None,
            signer_guard: true,
        }
    }

    /// Every node: the genesis validators and the spares.
    pub fn nodes(&self) -> usize {
        self.validators + self.spares
    }

    pub fn is_byzantine(&self, node: usize) -> bool {
        self.byzantine.iter().any(|(i, _)| *i == node)
    }

    pub fn behaviour(&self, node: usize) -> Option<Behaviour> {
        self.byzantine.iter().find(|(i, _)| *i == node).map(|(_, b)| *b)
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.chaos_link;
        writeln!(
            f,
            "seed={} validators={} spares={} byzantine={:?} leak={} flush={:?} core_hook={} check_hook={} \
             set_hook={:?} check_liveness={} signer_guard={}",
            self.seed,
            self.validators,
            self.spares,
            self.byzantine,
            self.leak_equivocations,
            self.flush,
            self.core_hook.is_some(),
            self.check_hook.is_some(),
            self.set_hook.map(|(node, _)| node),
            self.check_liveness,
            self.signer_guard
        )?;
        writeln!(
            f,
            "chaos_ms={} links: latency {}-{} ms jitter {} ms tail {}/1000 loss {}/1000 dup {}/1000 replay {}/1000 \
             gossip_ms={}",
            self.chaos_ms,
            l.latency_min_ms,
            l.latency_max_ms,
            l.jitter_ms,
            l.tail_per_mille,
            l.loss_per_mille,
            l.duplicate_per_mille,
            l.replay_per_mille,
            self.gossip_ms
        )?;
        let mut faults = self.faults.clone();
        faults.sort_by_key(|(t, _)| *t);
        for (t, fault) in faults {
            writeln!(f, "  t={t}ms {fault:?}")?;
        }
        let mut gov = self.gov.clone();
        gov.sort_by_key(|(t, _)| *t);
        for (t, change) in gov {
            writeln!(f, "  t={t}ms governance {change:?}")?;
        }
        Ok(())
    }
}

/// Share of random crashes whose restart loses or rewinds the signer state (within the fault budget).
pub const SIGNER_LOSS_PER_MILLE: u32 = 400;

/// Signer states the simulated disk keeps besides the last one (for [`SignerLoss::Rewound`]).
pub const SIGNER_HISTORY_MAX: usize = 8;

/// How long a (re)started validator watches, in virtual time counted only while it is connected (a live
/// peer reachable both ways) and caught up, before the shell feeds `EndWatch`: two full rounds of round-0
/// timeouts (2 x (1000 + 400 + 400) = 3.6 s with the default parameters). Every peer re-gossips its own
/// messages and relays the votes of its current, locked and valid rounds every `gossip_ms` (400-1200 ms,
/// +-25%), so the watch spans at least two such relays from each peer: this validator's own votes from
/// before a restart, if the network still holds them, reach it before it signs. The node's default
/// (6 s) is the same idea for its gossip periods (3 s, then every 2 s).
pub fn watch_ms(params: &ledger_core::ConsensusParams) -> u64 {
    2 * (params.timeout_propose_ms + params.timeout_prevote_ms + params.timeout_precommit_ms)
}

/// Liveness bound for the first height after the heal: enough rounds for every validator to propose twice
/// (n + 2 rounds) with every timeout of those rounds firing, and never below 30 s (RELIABILITY.md I6). With f
/// Byzantine validators and exactly 2f+1 honest ones, the one honest node able to release a lock may have to
/// wait a whole proposer rotation with growing timeouts: seed 107681 (n=10, 3 Byzantine, a power-loss restart)
/// decided in round 11, 44 s after the heal. That is Tendermint working as designed, not a stall.
pub fn first_height_bound_ms(n: usize) -> u64 {
    let p = ledger_core::ConsensusParams::default();
    let rounds = n as u64 + 2;
    let per_round = p.timeout_propose_ms + p.timeout_prevote_ms + p.timeout_precommit_ms;
    let growth = 3 * p.timeout_delta_ms;
    (rounds * per_round + growth * rounds * (rounds - 1) / 2).max(30_000)
}
