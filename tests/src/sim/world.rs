//! The world: a virtual clock, one event queue, the links between nodes, and each node's shell around a
//! real [`Consensus`] core with the real state transition. Single-threaded; every random choice comes from
//! the run's seed, so the same seed gives the same run (checked by hashing every delivered event).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::rc::Rc;
use std::sync::{Mutex, PoisonError};

use ledger_core::consensus::{Action, Config, Consensus, Event, SignedMessage, timeout_duration_ms};
use ledger_core::gossip::{
    Change, DropReason, MessageCheck, Offence, PeerBook, PeerLimits, RecentSet, Resource, Standing, Verdict,
};
use ledger_core::shell::{Arrival, Candidates, SyncedBlock, Validity, check_synced};
use ledger_core::state::{BlockTemplate, StateChanges};
use ledger_core::{
    Block, CommitCertificate, ConsensusParams, Genesis, GenesisAccount, Hash, Height, Keypair, MemStore,
    PROTOCOL_VERSION, Parent, Round, SignedProposal, SignedTransaction, SignedVote, Transaction, Validator,
};

use ledger_core::crypto::NoKeyCache;
use node::admission::{TxGate, build_from_pool, execute_with_pool};
use node::driver::CANDIDATE_BLOCKS_MAX;
use node::mempool::{Mempool, MempoolLimits};
use node::ops::OpsPool;

use super::checker::{Checker, Violation};
use super::config::{Behaviour, CrashKind, Fault, FlushPolicy, LinkProfile, SignerLoss, SimConfig, watch_ms};
use super::disk::{Disk, Write};
use super::rng::{Rng, mix};

mod byzantine;
mod gov_shell;

/// Funded genesis accounts the proposers draw transfers from.
const ACCOUNTS: usize = 8;
const GENESIS_TIME_MS: u64 = 1_700_000_000_000;
/// Messages for the next height kept until `NewHeight` (more are dropped; re-gossip brings them back).
const FUTURE_MESSAGES_MAX: usize = 512;
/// Proposals kept per height to answer `RequestProposal` from peers.
const PROPOSALS_MAX: usize = 64;
/// Blocks per sync answer.
const SYNC_BATCH_MAX: usize = 8;
/// A node asks a peer for committed blocks when it has been at its height this long and hears of a
/// higher one, at most once per `SYNC_RETRY_MS`.
const SYNC_AFTER_MS: u64 = 1_500;
const SYNC_RETRY_MS: u64 = 500;
/// Forged messages a flooding Byzantine node sends each peer per gossip round.
pub(super) const FLOOD_PER_ROUND: usize = 60;
/// Verified vote digests an honest shell remembers (as the node's gossip validator does).
const VERIFIED_VOTES_MAX: usize = 4_096;
/// Messages a replaying Byzantine node remembers.
const REPLAY_LOG_MAX: usize = 1_024;
/// How often a watching node counts down its watch (virtual time).
const WATCH_TICK_MS: u64 = 100;
/// Double votes a shell keeps until its pool takes them.
const FOUND_EVIDENCE_MAX: usize = 64;
/// A guard against a run that never ends (a livelock in the shell or the core).
const EVENTS_MAX: u64 = 5_000_000;

/// What travels between nodes.
#[derive(Clone, Debug)]
pub enum Msg {
    /// A proposal with its block when the sender has it.
    Proposal(SignedProposal, Option<Rc<Block>>),
    Vote(SignedVote),
    ProposalRequest {
        height: Height,
        round: Round,
        block_hash: Hash,
    },
    SyncRequest {
        from: Height,
    },
    SyncResponse(Vec<(Rc<Block>, CommitCertificate)>),
    /// Gossiped transactions (the node's `TxBatch`).
    Txs(Rc<Vec<SignedTransaction>>),
}

impl Msg {
    fn height(&self) -> Option<Height> {
        match self {
            Msg::Proposal(p, _) => Some(p.proposal.height),
            Msg::Vote(v) => Some(v.vote.height),
            _ => None,
        }
    }

    fn digest(&self) -> u64 {
        let sig8 = |s: &[u8; 64]| u64::from_le_bytes([s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]]);
        let hash8 = |h: &Hash| u64::from_le_bytes([h.0[0], h.0[1], h.0[2], h.0[3], h.0[4], h.0[5], h.0[6], h.0[7]]);
        match self {
            Msg::Proposal(p, b) => mix(sig8(&p.signature.0) ^ u64::from(b.is_some())),
            Msg::Vote(v) => mix(sig8(&v.signature.0) ^ 1),
            Msg::ProposalRequest { height, round, block_hash } => {
                mix(height.0 ^ mix(u64::from(round.0)) ^ hash8(block_hash) ^ 2)
            }
            Msg::SyncRequest { from } => mix(from.0 ^ 3),
            Msg::SyncResponse(list) => {
                list.iter().fold(mix(list.len() as u64 ^ 4), |acc, (b, _)| mix(acc ^ hash8(&b.hash())))
            }
            Msg::Txs(txs) => txs.iter().fold(mix(txs.len() as u64 ^ 5), |acc, tx| mix(acc ^ hash8(&tx.id()))),
        }
    }
}

enum Ev {
    Deliver {
        from: usize,
        to: usize,
        msg: Msg,
    },
    Local {
        node: usize,
        incarnation: u32,
        event: Event,
    },
    Gossip {
        node: usize,
    },
    /// Count down the start-up watch of `node` (this incarnation).
    WatchTick {
        node: usize,
        incarnation: u32,
    },
    Fault(Fault),
    /// The operators approve planned change `k` (`SimConfig::gov`).
    Gov(usize),
    Heal,
}

struct Queued {
    time: u64,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    /// Reversed: `BinaryHeap` is a max-heap and the earliest (time, seq) must come out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// What one node's shell processes, in order.
enum Input {
    Core(Event),
    Net(usize, Msg),
    /// Feed the buffered messages of the (new) current height.
    Drain,
    /// Start this height after a commit (`World::advance`).
    Advance(Height),
}

/// Volatile state of a running node: lost on a crash.
struct Live {
    core: Consensus,
    /// The key the core signs with (the one in the set of the current height).
    key: ledger_core::PublicKey,
    /// Approvals (and equivocation evidence) waiting for a block this node builds: the node's pool.
    ops: OpsPool,
    /// Double votes the core reported, until the pool takes them (see `World::offer_approvals`).
    found_evidence: Vec<ledger_core::governance::Evidence>,
    state: MemStore,
    chain: Vec<(Rc<Block>, CommitCertificate)>,
    /// Blocks of the current height, what the core waits for, a decided block still missing (the core
    /// re-proposed its lock after a restart without asking for the block: fetched from peers, then
    /// committed): `ledger_core::shell`, as the node's driver keeps them.
    candidates: Candidates<Rc<Block>>,
    /// The certificate of the decision whose block is missing.
    decided_cert: Option<CommitCertificate>,
    /// Proposals of the current height (to answer peers' requests).
    proposals: Vec<SignedProposal>,
    future: Vec<(usize, Msg)>,
    /// The node's mempool, fed by this node's clients and by gossip through the node's gate
    /// (`node::admission`); blocks are built from it and executed with its verified set.
    mempool: Mutex<Mempool>,
    tx_gate: TxGate,
    height_started_ms: u64,
    last_sync_ms: Option<u64>,
    /// Watch time still to run (while connected and caught up) before `EndWatch`; `None` once over.
    watch_left_ms: Option<u64>,
    watch_last_ms: u64,
    /// Highest height of a consensus message heard: above the core's height, this node is behind.
    heard_height: Height,
    /// Turn of the next peer asked for blocks.
    sync_next: usize,
    /// Scores and budgets of the peers, as the node's network task keeps them.
    peers: PeerBook<usize>,
    /// Digests of votes verified recently (replays are not checked again).
    verified: RecentSet<Hash>,
}

struct Node {
    /// Its first key, and the one it rotates to if the plan rotates it.
    keys: Vec<Keypair>,
    behaviour: Option<Behaviour>,
    disk: Disk,
    incarnation: u32,
    live: Option<Live>,
    crash_after_persist: Option<CrashKind>,
    /// Scheduled by [`Fault::LoseSigner`]: applied to the disk at the next restart.
    signer_damage: Option<SignerLoss>,
    /// Scheduled by [`Fault::QuickRestart`]: the next crash restarts this much later.
    quick_restart: Option<u64>,
    /// Highest height this node ever committed: a restart below it breaks durability (I5).
    committed_max: u64,
    /// What a replaying Byzantine node has seen.
    log: Vec<Msg>,
}

/// Figures of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub seed: u64,
    pub validators: usize,
    pub violations: Vec<Violation>,
    /// Hash of every delivered message, fired local event and applied fault, in order.
    pub trace_hash: u64,
    /// Highest height committed by an honest node.
    pub heights: u64,
    /// Lowest height of an honest node at the end.
    pub min_height: u64,
    pub faults: u64,
    pub crashes: u64,
    pub restarts: u64,
    /// Restarts where the core resumed mid-height from its persisted signer state.
    pub resumes_mid_height: u64,
    pub lost_writes: u64,
    /// Restarts from a lost signer state (`SignerState::default()`) and from a rewound one.
    pub signer_lost: u64,
    pub signer_rewound: u64,
    /// Of those, restarts at a height the network had not decided yet (the dangerous case).
    pub signer_damaged_undecided: u64,
    /// Honest (re)starts that watched before signing, and watches that ended (`EndWatch` fed).
    pub watches: u64,
    pub watches_ended: u64,
    /// Honest starts with a look-back floor above 0 from the chain's certificates.
    pub floors_from_chain: u64,
    /// `RaiseSignFloor` fed for synced certificates with the node's key.
    pub floor_raises: u64,
    /// `ForeignSignature` actions of honest cores, and those that halted the core.
    pub foreign_signatures: u64,
    pub halts: u64,
    pub evidence: usize,
    pub delivered: u64,
    pub dropped: u64,
    pub refused: u64,
    /// Gossip refused as invalid by honest shells (forged, misaddressed), peers banned, and messages
    /// dropped unread from ignored or banned peers or over budget.
    pub gossip_rejected: u64,
    pub peer_bans: u64,
    pub gossip_dropped: u64,
    /// Transactions in the committed chain (submitted by clients to a node's mempool, gossiped, built into
    /// blocks by whichever node proposes).
    pub txs_committed: u64,
    pub syncs: u64,
    pub sim_ms: u64,
    /// Validator-set changes: approved by the operators, activated (their height committed) by kind, and of
    /// those, activated with a partition or a crash in force around the activation height.
    pub gov_submitted: u64,
    pub adds: u64,
    pub removes: u64,
    pub power_changes: u64,
    pub rotations: u64,
    pub jailings: u64,
    pub activated_in_partition: u64,
    pub activated_in_crash: u64,
    /// Cores rebuilt for a rotated key; messages sent by nodes that started outside the set; messages
    /// signed with a rotated key.
    pub key_switches: u64,
    pub spare_messages: u64,
    pub rotated_key_messages: u64,
    /// Messages from honest peers for heights above the receiver's tip + 2 dropped without blame
    /// (`DropReason::FarHeight`: a signer or proposer of a set changed since the newest one it knows).
    pub far_height_refusals: u64,
    /// Honest peers banned by honest nodes (over budget, or by far-height refusals).
    pub honest_peer_bans: u64,
    /// (node, height) sets handed to cores and checked against the checker's model.
    pub sets_checked: u64,
    /// [`World::describe`] at the end of a run that broke an invariant (empty otherwise).
    pub final_state: String,
}

/// One simulated network.
pub struct World {
    cfg: SimConfig,
    genesis: Genesis,
    /// Approvals the operators signed (`gov_shell`).
    desk: Vec<ledger_core::governance::Approval>,
    /// Faults in force at the first commit of each height: (partition, honest node down).
    faults_at_commit: BTreeMap<u64, (bool, bool)>,
    params: ConsensusParams,
    accounts: Vec<Keypair>,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Queued>,
    net_rng: Rng,
    node_rng: Rng,
    byz_rng: Rng,
    chaos_latency: Vec<Vec<u64>>,
    healed_latency: Vec<Vec<u64>>,
    cuts: Vec<(u32, Vec<usize>, Vec<usize>)>,
    healed: bool,
    done: bool,
    nodes: Vec<Node>,
    /// Honest nodes in the second half (Byzantine equivocators send them the other version).
    half_b: Vec<bool>,
    /// (height, round) -> (block sent to half A, block sent to half B), by equivocating proposers.
    coalition: BTreeMap<(u64, u32), (Hash, Hash)>,
    /// (height, round) -> hash of the invalid block an invalid voter proposed.
    invalid: BTreeMap<(u64, u32), Hash>,
    checker: Checker,
    trace: u64,
    report: Report,
    events: u64,
    /// Liveness bookkeeping for the healed phase.
    heal_base: u64,
    progress_height: u64,
    progress_ms: u64,
}

fn parent_of<'a>(genesis: &'a Genesis, chain: &[(Rc<Block>, CommitCertificate)]) -> Parent<'a> {
    match chain.last() {
        None => genesis.parent_of_first_block(),
        Some((b, _)) => Parent {
            height: b.height(),
            hash: b.hash(),
            timestamp_ms: b.header.timestamp_ms,
            chain_id: &genesis.chain_id,
        },
    }
}

fn signed_message(msg: &Msg) -> Option<SignedMessage> {
    match msg {
        Msg::Proposal(p, _) => Some(SignedMessage::Proposal(p.clone())),
        Msg::Vote(v) => Some(SignedMessage::Vote(v.clone())),
        _ => None,
    }
}

fn signer_of(m: &SignedMessage) -> ledger_core::PublicKey {
    match m {
        SignedMessage::Proposal(p) => p.proposal.proposer,
        SignedMessage::Vote(v) => v.vote.validator,
    }
}

fn random_hash(rng: &mut Rng) -> Hash {
    let mut h = [0u8; 32];
    for chunk in h.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Hash(h)
}

/// A few random transfers among the funded accounts, nonces following `state` and what `mempool` holds;
/// about one in twenty is given a nonce gap, which the pool keeps waiting and `build_block` leaves out.
fn random_txs(
    rng: &mut Rng,
    accounts: &[Keypair],
    chain_id: &str,
    state: &MemStore,
    mempool: &Mempool,
    height: Height,
) -> Vec<SignedTransaction> {
    let mut used = vec![0u64; accounts.len()];
    let mut txs = Vec::new();
    for _ in 0..rng.range(0, 4) {
        let s = rng.index(accounts.len());
        let to = (s + 1 + rng.index(accounts.len() - 1)) % accounts.len();
        let sender = accounts[s].public();
        let committed = state.accounts().get(&sender).map_or(0, |a| a.nonce);
        let nonce = mempool.next_nonce(&sender, committed) + used[s];
        let bad_nonce = rng.chance(50);
        if !bad_nonce {
            used[s] += 1;
        }
        let tx = Transaction {
            chain_id: chain_id.to_string(),
            sender: accounts[s].public(),
            recipient: accounts[to].public(),
            amount: rng.range(1, 1_000),
            fee: rng.range(1, 5),
            nonce: if bad_nonce { nonce + 5 } else { nonce },
            expiry_height: height.0 + 100,
            memo: String::new(),
        };
        txs.push(tx.sign(&accounts[s]));
    }
    txs
}

impl World {
    pub fn new(cfg: SimConfig) -> World {
        let mut rng = Rng::new(cfg.seed ^ 0x5157_5157);
        let n = cfg.nodes();
        let rotated = |i: usize| cfg.gov.iter().any(|(_, a)| *a == super::governance::GovAction::Rotate { node: i });
        let keys: Vec<Vec<Keypair>> = (0..n).map(|i| gov_shell::keys_of(i, rotated(i))).collect();
        let accounts: Vec<Keypair> = (0..ACCOUNTS).map(|i| Keypair::from_seed(&[i as u8 + 101; 32])).collect();
        let params =
            ConsensusParams { block_bytes_max: 256 * 1024, txs_per_block_max: 64, ..ConsensusParams::default() };
        let genesis = Genesis {
            chain_id: "sim".into(),
            genesis_time_ms: GENESIS_TIME_MS,
            protocol_version: PROTOCOL_VERSION,
            validators: keys[..cfg.validators]
                .iter()
                .enumerate()
                .map(|(i, k)| Validator { public_key: k[0].public(), power: 1, moniker: format!("v{i}") })
                .collect(),
            accounts: accounts.iter().map(|k| GenesisAccount { address: k.public(), balance: 1_000_000 }).collect(),
            params: params.clone(),
        };
        let validators = genesis.validator_set().expect("simulated validator set is valid");
        let key_owner = keys.iter().enumerate().flat_map(|(i, ks)| ks.iter().map(move |k| (k.public(), i))).collect();
        let checker =
            Checker::new(&genesis.chain_id, validators.clone(), key_owner, params.clone(), genesis.total_supply());
        let mut net_rng = rng.fork();
        let node_rng = rng.fork();
        let byz_rng = rng.fork();
        let matrix = |rng: &mut Rng, l: &LinkProfile| -> Vec<Vec<u64>> {
            (0..n).map(|_| (0..n).map(|_| rng.range(l.latency_min_ms, l.latency_max_ms)).collect()).collect()
        };
        let chaos_latency = matrix(&mut net_rng, &cfg.chaos_link);
        let healed_latency = matrix(&mut net_rng, &cfg.healed_link);
        let mut honest: Vec<usize> = (0..n).filter(|i| !cfg.is_byzantine(*i)).collect();
        rng.shuffle(&mut honest);
        let mut half_b = vec![false; n];
        for i in &honest[honest.len() / 2..] {
            half_b[*i] = true;
        }
        let nodes = keys
            .into_iter()
            .enumerate()
            .map(|(i, keys)| Node {
                keys,
                behaviour: cfg.behaviour(i),
                disk: Disk::new(genesis.initial_state()),
                incarnation: 0,
                live: None,
                crash_after_persist: None,
                signer_damage: None,
                quick_restart: None,
                committed_max: 0,
                log: Vec::new(),
            })
            .collect();
        let report = Report { seed: cfg.seed, validators: cfg.validators, ..Report::default() };
        let mut w = World {
            cfg,
            genesis,
            desk: Vec::new(),
            faults_at_commit: BTreeMap::new(),
            params,
            accounts,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            net_rng,
            node_rng,
            byz_rng,
            chaos_latency,
            healed_latency,
            cuts: Vec::new(),
            healed: false,
            done: false,
            nodes,
            half_b,
            coalition: BTreeMap::new(),
            invalid: BTreeMap::new(),
            checker,
            trace: 0,
            report,
            events: 0,
            heal_base: 0,
            progress_height: 0,
            progress_ms: 0,
        };
        for (t, f) in w.cfg.faults.clone() {
            if t < w.cfg.chaos_ms {
                w.push(t, Ev::Fault(f));
            }
        }
        w.schedule_changes();
        let chaos_ms = w.cfg.chaos_ms;
        w.push(chaos_ms, Ev::Heal);
        for i in 0..n {
            let t = w.node_rng.range(0, w.cfg.gossip_ms);
            w.push(t, Ev::Gossip { node: i });
        }
        for i in 0..n {
            w.start_node(i);
        }
        w
    }

    fn push(&mut self, time: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Queued { time, seq: self.seq, ev });
    }

    fn fold(&mut self, words: &[u64]) {
        for w in words {
            self.trace = mix(self.trace ^ *w).wrapping_add(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn honest(&self, i: usize) -> bool {
        self.nodes[i].behaviour.is_none()
    }

    /// Committed heights of the honest nodes (a crashed node counts with its durable chain).
    pub fn honest_heights(&self) -> Vec<u64> {
        (0..self.nodes.len())
            .filter(|i| self.honest(*i))
            .map(|i| {
                let n = &self.nodes[i];
                n.live.as_ref().map_or(n.disk.durable.chain.len(), |l| l.chain.len()) as u64
            })
            .collect()
    }

    /// One line per node: height, round, step, lock and valid value, buffered messages. For diagnosis.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let line = match &n.live {
                None => format!("node {i} {:?}: down, durable height {}\n", n.behaviour, n.disk.durable.chain.len()),
                Some(l) => format!(
                    "node {i} {:?}: height {} round {} step {:?} guard {:?} floor {} watch_left {:?} heard {} \
                     signed {:?} locked {:?} valid {:?} decided {:?} future {} proposals {} blocks {} decided_without_block {}\n",
                    n.behaviour,
                    l.core.height().0,
                    l.core.round().0,
                    l.core.step(),
                    l.core.guard(),
                    l.core.sign_floor().0,
                    l.watch_left_ms,
                    l.heard_height.0,
                    l.core.signer_state().position(),
                    l.core.locked(),
                    l.core.valid(),
                    l.core.decision(),
                    l.future.len(),
                    l.proposals.len(),
                    l.candidates.len(),
                    l.candidates.decided_without_block().is_some()
                ),
            };
            out.push_str(&line);
        }
        out
    }

    pub fn now_ms(&self) -> u64 {
        self.now
    }

    pub fn violations(&self) -> &[Violation] {
        &self.checker.violations
    }

    /// Run until the queue's next event is after `t_ms` (or the run is over).
    pub fn run_until(&mut self, t_ms: u64) {
        while !self.done {
            match self.queue.peek() {
                Some(q) if q.time <= t_ms => {}
                _ => break,
            }
            let Some(q) = self.queue.pop() else { break };
            self.now = q.time;
            self.step(q.ev);
            self.check_liveness();
            self.events += 1;
            if self.events > EVENTS_MAX {
                let heights = self.honest_heights();
                let height = heights.iter().min().copied().unwrap_or(0) + 1;
                self.checker.violations.push(Violation::Liveness { height, waited_ms: self.now, heights });
                self.done = true;
            }
        }
    }

    /// Run to the end: the heal, then (with liveness checked) until every honest node has committed
    /// `healed_heights` more heights, or a bound is missed.
    pub fn run(mut self) -> Report {
        self.run_until(u64::MAX);
        self.finish()
    }

    fn finish(mut self) -> Report {
        self.checker.finish();
        self.gov_coverage();
        let final_state = if self.checker.violations.is_empty() { String::new() } else { self.describe() };
        let heights = self.honest_heights();
        let mut r = self.report;
        r.heights = self.checker.committed_heights();
        r.evidence = self.checker.evidence_count();
        r.violations = self.checker.violations;
        r.trace_hash = self.trace;
        r.min_height = heights.iter().min().copied().unwrap_or(0);
        r.sim_ms = self.now;
        r.final_state = final_state;
        r
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver { from, to, msg } => {
                if self.nodes[to].live.is_none() {
                    return;
                }
                self.report.delivered += 1;
                let digest = msg.digest();
                self.fold(&[1, self.now, from as u64, to as u64, digest]);
                match self.nodes[to].behaviour {
                    Some(Behaviour::Silent) => return,
                    Some(Behaviour::Replayer) if msg.height().is_some() => {
                        let log = &mut self.nodes[to].log;
                        if log.len() < REPLAY_LOG_MAX {
                            log.push(msg.clone());
                        } else {
                            let k = self.byz_rng.index(REPLAY_LOG_MAX);
                            log[k] = msg.clone();
                        }
                    }
                    _ => {}
                }
                self.process(to, Input::Net(from, msg));
            }
            Ev::Local { node, incarnation, event } => {
                if self.nodes[node].incarnation != incarnation || self.nodes[node].live.is_none() {
                    return;
                }
                let digest = match &event {
                    Event::TimeoutFired(t) => mix(t.height.0 ^ mix(u64::from(t.round.0)) ^ t.kind as u64),
                    Event::BlockValidity { block_hash, valid, .. } => {
                        mix(u64::from(block_hash.0[0]) ^ u64::from(*valid))
                    }
                    Event::ProposalValue { block_hash, .. } => mix(u64::from(block_hash.0[1]) ^ 7),
                    _ => 0,
                };
                self.fold(&[2, self.now, node as u64, digest]);
                self.process(node, Input::Core(event));
            }
            Ev::Gossip { node } => {
                let jitter = self.cfg.gossip_ms / 4;
                let next = self.now + self.cfg.gossip_ms - jitter + self.node_rng.range(0, 2 * jitter);
                self.push(next, Ev::Gossip { node });
                if self.cfg.flush == FlushPolicy::Lazy {
                    self.nodes[node].disk.flush();
                }
                self.gossip(node);
            }
            Ev::WatchTick { node, incarnation } => {
                if self.nodes[node].incarnation == incarnation && self.nodes[node].live.is_some() {
                    self.advance_watch(node);
                }
            }
            Ev::Fault(f) => {
                self.fold(&[3, self.now, mix(format!("{f:?}").len() as u64)]);
                self.apply_fault(f);
            }
            Ev::Gov(k) => self.submit_change(k),
            Ev::Heal => self.heal(),
        }
    }

    fn apply_fault(&mut self, f: Fault) {
        if f.counts() {
            self.report.faults += 1;
        }
        match f {
            Fault::Cut { id, from, to } => self.cuts.push((id, from, to)),
            Fault::Heal { id } => self.cuts.retain(|c| c.0 != id),
            Fault::Crash { node, kind } => self.crash(node, kind),
            Fault::CrashAfterNextPersist { node, kind } => {
                if self.honest(node) && self.nodes[node].live.is_some() {
                    self.nodes[node].crash_after_persist = Some(kind);
                }
            }
            Fault::Restart { node } => {
                if self.nodes[node].live.is_none() {
                    self.start_node(node);
                }
            }
            Fault::LoseSigner { node, loss } => {
                if self.honest(node) {
                    self.nodes[node].signer_damage = Some(loss);
                }
            }
            Fault::QuickRestart { node, down_ms } => {
                if self.honest(node) {
                    self.nodes[node].quick_restart = Some(down_ms);
                }
            }
        }
    }

    fn crash(&mut self, i: usize, kind: CrashKind) {
        let node = &mut self.nodes[i];
        if node.behaviour.is_some() || node.live.is_none() {
            return;
        }
        node.live = None;
        node.incarnation += 1;
        node.crash_after_persist = None;
        let quick = node.quick_restart.take();
        self.report.crashes += 1;
        self.report.lost_writes += node.disk.crash(kind) as u64;
        if let Some(down_ms) = quick {
            self.push(self.now + down_ms, Ev::Fault(Fault::Restart { node: i }));
        }
    }

    /// Faults off: links healed, crashed nodes restarted. The liveness clock starts.
    fn heal(&mut self) {
        self.healed = true;
        self.cuts.clear();
        for i in 0..self.nodes.len() {
            self.nodes[i].crash_after_persist = None;
            self.nodes[i].quick_restart = None;
            // A node down at the heal restarts now, with the signer damage scheduled for its restart.
            if self.nodes[i].live.is_none() {
                self.start_node(i);
            }
            self.nodes[i].signer_damage = None;
        }
        if !self.cfg.check_liveness {
            self.done = true;
            return;
        }
        self.heal_base = self.honest_heights().into_iter().max().unwrap_or(0);
        self.progress_height = self.honest_heights().into_iter().min().unwrap_or(0);
        self.progress_ms = self.now;
    }

    fn check_liveness(&mut self) {
        if !self.healed || self.done || !self.cfg.check_liveness {
            return;
        }
        let heights = self.honest_heights();
        let min = heights.iter().min().copied().unwrap_or(0);
        if min >= self.heal_base + self.cfg.healed_heights {
            self.done = true;
            return;
        }
        if min > self.progress_height {
            self.progress_height = min;
            self.progress_ms = self.now;
        }
        let bound = if min <= self.heal_base { self.cfg.first_height_bound_ms } else { self.cfg.height_bound_ms };
        let waited_ms = self.now - self.progress_ms;
        if waited_ms > bound {
            self.checker.violations.push(Violation::Liveness { height: min + 1, waited_ms, heights });
            self.done = true;
        }
    }

    /// Build the node's volatile state from its disk and start its core.
    fn start_node(&mut self, i: usize) {
        let honest = self.honest(i);
        let node = &mut self.nodes[i];
        if node.incarnation > 0
            && let Some(loss) = node.signer_damage.take()
        {
            let height = node.disk.durable.chain.len() as u64 + 1;
            let applied = node.disk.damage_signer(loss);
            match applied {
                Some(SignerLoss::Lost) => self.report.signer_lost += 1,
                Some(SignerLoss::Rewound { .. }) => self.report.signer_rewound += 1,
                None => {}
            }
            if applied.is_some() && self.checker.first_commit(height).is_none() {
                self.report.signer_damaged_undecided += 1;
            }
        }
        // The set of the start height from this node's own governance state, and its key in it.
        let height = Height(self.nodes[i].disk.durable.chain.len() as u64 + 1);
        let set = self.core_set(i, &self.nodes[i].disk.durable.state, height);
        let key = self.key_for(i, &set);
        if honest {
            self.checker.on_set(i, height, &set);
        }
        let node = &mut self.nodes[i];
        let d = &node.disk.durable;
        if honest && (d.chain.len() as u64) < node.committed_max {
            self.checker.violations.push(Violation::Durability {
                node: i,
                reason: format!("restarted at height {} after committing {}", d.chain.len(), node.committed_max),
            });
        }
        let resumes = d.signer.position().is_some_and(|(h, _, _)| h == height);
        // The guard at start, as the node's `load_signer` sets it up: the look-back floor is the highest
        // height whose stored certificate holds this key, and a validator watches before signing at every
        // start but the very first one of a fresh chain (no block, no signed message, never run before):
        // there is no earlier life to find and the simulator runs no twins, so that watch would only delay.
        // The node cannot tell a first start from a restart that lost its state before the first commit,
        // so it watches at every start; a rule on "empty chain and empty signer state" alone let a
        // validator that lost its state at height 1 sign again unwatched.
        // Each certificate is read against the set of its height (any of this node's keys in it); the
        // governance state knows the sets of the last `EVIDENCE_AGE_MAX` heights, and the scan stops below
        // them (the node's storage keeps every set; the simulated runs are shorter than that window).
        let guard = self.cfg.signer_guard;
        let gov = gov_of(&d.state);
        let mine = |h: Height, c: &CommitCertificate| {
            gov.set_at(h).is_some_and(|set| {
                node.keys
                    .iter()
                    .filter_map(|k| set.index_of(&k.public()))
                    .any(|me| c.signatures.iter().any(|s| usize::from(s.validator_index) == me))
            })
        };
        let sign_floor = if guard {
            d.chain
                .iter()
                .rev()
                .take_while(|(b, _)| gov.set_at(b.height()).is_some())
                .find(|(b, c)| mine(b.height(), c))
                .map_or(Height(0), |(b, _)| b.height())
        } else {
            Height(0)
        };
        let fresh_chain = node.incarnation == 0 && d.chain.is_empty() && d.signer.position().is_none();
        let watch = guard && !fresh_chain && set.len() > 1;
        let key_public = key.public();
        let config = Config {
            chain_id: self.genesis.chain_id.clone(),
            validators: set,
            params: self.params.clone(),
            key: Some(key),
            signer: d.signer.clone(),
            height,
            sign_floor,
            watch,
        };
        let mut core = match Consensus::new(config) {
            Ok(c) => c,
            Err(e) => {
                self.checker.violations.push(Violation::Durability { node: i, reason: format!("cannot restart: {e}") });
                return;
            }
        };
        if honest && let Some(hook) = self.cfg.core_hook {
            hook(&mut core);
        }
        if node.incarnation > 0 {
            self.report.restarts += 1;
            if resumes {
                self.report.resumes_mid_height += 1;
            }
        }
        if honest {
            self.report.watches += u64::from(watch);
            self.report.floors_from_chain += u64::from(sign_floor > Height(0));
        }
        // Blocks this node built before a crash, for re-broadcasting its proposal (executed when needed).
        let mut candidates = Candidates::new(height, CANDIDATE_BLOCKS_MAX);
        for b in d.built.values().filter(|b| b.height() == height) {
            candidates.on_block(b.clone());
        }
        node.live = Some(Live {
            core,
            key: key_public,
            ops: OpsPool::default(),
            found_evidence: Vec::new(),
            state: d.state.clone(),
            chain: d.chain.clone(),
            candidates,
            decided_cert: None,
            proposals: Vec::new(),
            future: Vec::new(),
            mempool: Mutex::new(Mempool::new(&self.genesis.chain_id, self.params.clone(), MempoolLimits::default())),
            tx_gate: TxGate::default(),
            height_started_ms: self.now,
            last_sync_ms: None,
            watch_left_ms: watch.then(|| watch_ms(&self.params)),
            watch_last_ms: self.now,
            heard_height: height,
            sync_next: 0,
            peers: PeerBook::new(PeerLimits::default()),
            verified: RecentSet::new(VERIFIED_VOTES_MAX),
        });
        let wal: Vec<SignedMessage> = d.wal.iter().filter(|m| m.position().0 == height).cloned().collect();
        if watch {
            let incarnation = node.incarnation;
            self.push(self.now + WATCH_TICK_MS, Ev::WatchTick { node: i, incarnation });
        }
        self.offer_approvals(i);
        self.process(i, Input::Core(Event::Start));
        // Replay the WAL: the votes behind a persisted lock are needed to re-prove it (L28).
        for m in wal {
            let input = match m {
                SignedMessage::Proposal(p) => Input::Net(i, Msg::Proposal(p, None)),
                SignedMessage::Vote(v) => Input::Core(Event::Vote(v)),
            };
            self.process(i, input);
        }
    }

    /// Some live peer is reachable both ways (the node's "connected to a peer").
    fn connected(&self, i: usize) -> bool {
        let cut = |a: usize, b: usize| self.cuts.iter().any(|(_, from, to)| from.contains(&a) && to.contains(&b));
        (0..self.nodes.len()).any(|j| j != i && self.nodes[j].live.is_some() && !cut(i, j) && !cut(j, i))
    }

    /// Count down the watch while connected and caught up (as the node's `advance_watch`); feed `EndWatch`
    /// when it has run. The interval since the last tick counts if the node is connected and caught up now.
    fn advance_watch(&mut self, i: usize) {
        let now = self.now;
        let connected = self.connected(i);
        let live = self.live(i);
        let elapsed = now.saturating_sub(live.watch_last_ms);
        live.watch_last_ms = now;
        let Some(left) = live.watch_left_ms else { return };
        let behind = live.heard_height > live.core.height() || live.candidates.decided_without_block().is_some();
        let left = if connected && !behind { left.saturating_sub(elapsed) } else { left };
        if left > 0 {
            live.watch_left_ms = Some(left);
            let incarnation = self.nodes[i].incarnation;
            self.push(now + WATCH_TICK_MS, Ev::WatchTick { node: i, incarnation });
            return;
        }
        live.watch_left_ms = None;
        self.report.watches_ended += 1;
        self.fold(&[4, now, i as u64]);
        self.process(i, Input::Core(Event::EndWatch));
    }

    fn live(&mut self, i: usize) -> &mut Live {
        self.nodes[i].live.as_mut().expect("node is live")
    }

    fn schedule_local(&mut self, i: usize, delay_ms: u64, event: Event) {
        let incarnation = self.nodes[i].incarnation;
        self.push(self.now + delay_ms, Ev::Local { node: i, incarnation, event });
    }

    /// Run one input and everything it causes at this node, in order: the actions of one core call are
    /// executed before the next event is fed (contract rule 1).
    fn process(&mut self, i: usize, first: Input) {
        let mut pending = VecDeque::from([first]);
        while let Some(input) = pending.pop_front() {
            if self.nodes[i].live.is_none() {
                return;
            }
            match input {
                Input::Core(event) => self.feed(i, event, &mut pending),
                Input::Net(from, msg) => self.on_msg(i, from, msg, &mut pending),
                Input::Advance(height) => self.advance(i, height, &mut pending),
                Input::Drain => {
                    let live = self.live(i);
                    let height = live.core.height();
                    let future = std::mem::take(&mut live.future);
                    let (now, later): (Vec<_>, Vec<_>) = future
                        .into_iter()
                        .filter(|(_, m)| m.height() >= Some(height))
                        .partition(|(_, m)| m.height() == Some(height));
                    live.future = later;
                    for (from, m) in now.into_iter().rev() {
                        pending.push_front(Input::Net(from, m));
                    }
                }
            }
        }
    }

    fn feed(&mut self, i: usize, event: Event, pending: &mut VecDeque<Input>) {
        let wal = match &event {
            Event::Proposal(p) => Some(SignedMessage::Proposal(p.clone())),
            Event::Vote(v) => Some(SignedMessage::Vote(v.clone())),
            _ => None,
        };
        let tracked = wal
            .clone()
            .filter(|m| self.honest(i) && self.checker.owner(&signer_of(m)).is_some_and(|k| !self.honest(k)));
        let incarnation = self.nodes[i].incarnation;
        let live = self.live(i);
        let (height, undecided) = (live.core.height(), live.core.decision().is_none());
        let actions = match live.core.handle(event) {
            Ok(a) => a,
            Err(_) => {
                self.report.refused += 1;
                return;
            }
        };
        if let Some(m) = &wal
            && m.position().0 == height
        {
            self.nodes[i].disk.write(Write::Wal(m.clone()));
        }
        if let Some(m) = tracked
            && m.position().0 == height
            && undecided
        {
            self.checker.on_byzantine_accepted(i, incarnation, &m);
        }
        for a in actions {
            if !self.execute(i, a, pending) {
                return;
            }
        }
    }

    /// Execute one action. False when the node crashed doing it (the rest of the call is lost).
    fn execute(&mut self, i: usize, action: Action, pending: &mut VecDeque<Input>) -> bool {
        let honest = self.honest(i);
        match action {
            Action::PersistSignerState(s) => {
                let node = &mut self.nodes[i];
                node.disk.write(Write::Signer(s));
                if self.cfg.flush == FlushPolicy::PerContract {
                    node.disk.flush();
                }
                if let Some(kind) = node.crash_after_persist.take() {
                    self.crash(i, kind);
                    return false;
                }
            }
            Action::BroadcastProposal(p) => {
                self.nodes[i].disk.write(Write::Wal(SignedMessage::Proposal(p.clone())));
                let live = self.live(i);
                let block = live.candidates.get(&p.proposal.block_hash).cloned();
                if block.is_none() {
                    let (height, round, block_hash) = (p.proposal.height, p.proposal.round, p.proposal.block_hash);
                    self.broadcast_plain(i, Msg::ProposalRequest { height, round, block_hash });
                }
                let live = self.live(i);
                if !live.proposals.contains(&p) && live.proposals.len() < PROPOSALS_MAX {
                    live.proposals.push(p.clone());
                }
                self.broadcast(i, Msg::Proposal(p, block));
            }
            Action::BroadcastVote(v) => {
                self.nodes[i].disk.write(Write::Wal(SignedMessage::Vote(v.clone())));
                self.broadcast(i, Msg::Vote(v));
            }
            Action::ScheduleTimeout(t) => {
                let d = timeout_duration_ms(&self.params, &t);
                self.schedule_local(i, d, Event::TimeoutFired(t));
            }
            Action::BuildBlock { height, round } => {
                let block = self.build(i, height);
                let block_hash = block.hash();
                self.nodes[i].disk.write(Write::Built(block));
                let delay = self.node_rng.range(1, 15);
                self.schedule_local(i, delay, Event::ProposalValue { height, round, block_hash });
            }
            Action::ValidateBlock { height, round, block_hash } => {
                if self.live(i).candidates.request_validation(round, block_hash) {
                    self.validate_later(i, block_hash, round);
                } else {
                    self.broadcast_plain(i, Msg::ProposalRequest { height, round, block_hash });
                }
            }
            Action::RequestProposal { height, round, block_hash } => {
                self.broadcast_plain(i, Msg::ProposalRequest { height, round, block_hash });
            }
            Action::Decide { height, block_hash, certificate, .. } => {
                let live = self.live(i);
                if !live.candidates.on_decided(block_hash) {
                    let round = live.core.decision().map_or(Round(0), |d| d.0);
                    live.decided_cert = Some(certificate);
                    self.broadcast_plain(i, Msg::ProposalRequest { height, round, block_hash });
                    return true;
                }
                if !self.commit_decided(i, block_hash, certificate) {
                    return true;
                }
                // Contract rule 4: commit durably, then NewHeight; then the buffered next-height messages.
                pending.push_front(Input::Drain);
                pending.push_front(Input::Advance(height.next()));
            }
            Action::ForeignSignature { halted, .. } => {
                // The node logs it loudly and reports it in its status; here it is counted.
                if honest {
                    self.report.foreign_signatures += 1;
                    self.report.halts += u64::from(halted);
                }
            }
            Action::Evidence(e) => {
                if honest {
                    self.checker.on_evidence(i, &e);
                    // As the node's driver: a double vote goes to the operations pool, for the blocks this node
                    // builds (on chain it jails the validator), once its height is committed.
                    if let ledger_core::consensus::Evidence::DoubleVote { first, second } = &e {
                        let live = self.live(i);
                        if live.found_evidence.len() < FOUND_EVIDENCE_MAX {
                            live.found_evidence
                                .push(ledger_core::governance::Evidence::new(first.clone(), second.clone()));
                        }
                        self.offer_approvals(i);
                    }
                }
            }
        }
        true
    }

    fn build(&mut self, i: usize, height: Height) -> Rc<Block> {
        self.submit_client_txs(i, height);
        let live = self.nodes[i].live.as_mut().expect("node is live");
        let key = live.key;
        let parent = parent_of(&self.genesis, &live.chain);
        let last_commit = match live.chain.last() {
            None => None,
            Some((b, c)) => live.core.commit_certificate(b.height()).or_else(|| Some(c.clone())),
        };
        // The operations pool's approvals and evidence: `build_block` keeps what applies.
        let (approvals, evidence) = live.ops.candidates();
        let template = BlockTemplate {
            parent,
            proposer: key,
            timestamp_ms: GENESIS_TIME_MS + self.now,
            last_commit,
            approvals,
            evidence,
        };
        let limit = node::driver::DEFAULT_BUILD_TXS_MAX;
        let gov = gov_of(&live.state);
        let built = build_from_pool(&live.mempool, &live.state, live.state.tree(), gov, template, &self.params, limit)
            .expect("the in-memory store cannot fail");
        let block = Rc::new(built.block);
        live.candidates.insert_built(block.clone(), built.changes);
        block
    }

    /// This node's clients submit a few transfers (through the node's admission, as the API does) and the
    /// node gossips what it admitted.
    fn submit_client_txs(&mut self, i: usize, height: Height) {
        let live = self.nodes[i].live.as_mut().expect("node is live");
        let tip = Height(live.chain.len() as u64);
        let mut mempool = live.mempool.lock().unwrap_or_else(PoisonError::into_inner);
        let txs = random_txs(&mut self.node_rng, &self.accounts, &self.genesis.chain_id, &live.state, &mempool, height);
        let admitted: Vec<SignedTransaction> =
            txs.into_iter().filter(|tx| mempool.add(tx.clone(), &live.state, tip).is_ok()).collect();
        drop(mempool);
        if !admitted.is_empty() {
            self.broadcast_plain(i, Msg::Txs(Rc::new(admitted)));
        }
    }

    /// Judge the candidate `hash` as the node's driver does (`Candidates::validate`, executed with the
    /// mempool's verified set); answer the core a little later.
    fn validate_later(&mut self, i: usize, hash: Hash, round: Round) {
        let now_ms = GENESIS_TIME_MS + self.now;
        let live = self.nodes[i].live.as_mut().expect("node is live");
        let parent = parent_of(&self.genesis, &live.chain);
        let Live { candidates, state, mempool, core, .. } = live;
        let params = &self.params;
        let verdict = candidates
            .validate(&hash, now_ms, |b| {
                execute_with_pool(mempool, state, state.tree(), gov_of(state), b, &parent, params, &NoKeyCache)
            })
            .expect("the in-memory store cannot fail");
        let Some(verdict) = verdict else { return };
        let valid = verdict == Validity::Valid;
        let height = core.height();
        let delay = self.node_rng.range(1, 20);
        self.schedule_local(i, delay, Event::BlockValidity { height, round, block_hash: hash, valid });
    }

    /// Commit the decided block `block_hash`, which is among the candidates (executed now if it never was).
    fn commit_decided(&mut self, i: usize, block_hash: Hash, cert: CommitCertificate) -> bool {
        let live = self.nodes[i].live.as_mut().expect("node is live");
        let height = live.core.height().0;
        let parent = parent_of(&self.genesis, &live.chain);
        let Live { candidates, state, mempool, .. } = live;
        let params = &self.params;
        let taken = candidates
            .take_decided(&block_hash, |b| {
                execute_with_pool(mempool, state, state.tree(), gov_of(state), b, &parent, params, &NoKeyCache)
            })
            .expect("the in-memory store cannot fail");
        let Some((block, changes)) = taken else { return false };
        match changes {
            Ok(changes) => {
                self.commit_block(i, block, cert, &changes);
                true
            }
            Err(e) => {
                self.checker.violations.push(Violation::Validity {
                    node: i,
                    height,
                    reason: format!("decided block does not apply: {e}"),
                });
                false
            }
        }
    }

    /// Commit `block` (checked by the checker first), write it, flush per the policy.
    fn commit_block(&mut self, i: usize, block: Rc<Block>, cert: CommitCertificate, changes: &StateChanges) {
        let honest = self.honest(i);
        let node = &mut self.nodes[i];
        let live = node.live.as_mut().expect("node is live");
        let first = honest && self.checker.first_commit(block.height().0).is_none();
        if honest {
            if first {
                self.report.txs_committed += block.txs.len() as u64;
            }
            let parent = parent_of(&self.genesis, &live.chain);
            self.checker.on_commit(i, &block, &cert, &parent, &live.state);
        }
        live.state.commit(changes);
        // As the node's driver after a commit: drop the operations the next block can no longer carry.
        live.ops.prune(gov_of(&live.state), block.height().next());
        live.mempool.lock().unwrap_or_else(PoisonError::into_inner).on_block_committed(
            block.height(),
            block.header.timestamp_ms,
            &block.txs,
            &live.state,
        );
        live.chain.push((block.clone(), cert.clone()));
        live.candidates.start_height(block.height().next());
        live.decided_cert = None;
        live.proposals.clear();
        live.height_started_ms = self.now;
        node.committed_max = node.committed_max.max(live.chain.len() as u64);
        let height = block.height().0;
        node.disk.write(Write::Commit { block, cert, state: live.state.clone() });
        if self.cfg.flush == FlushPolicy::PerContract {
            node.disk.flush();
        }
        if first {
            self.note_faults_at_commit(height);
        }
    }

    fn on_msg(&mut self, i: usize, from: usize, msg: Msg, pending: &mut VecDeque<Input>) {
        let now = self.now;
        // A Byzantine node knows what it signed: its own key's messages coming back (relayed, or the other
        // half of its own equivocation) are not fed to its core, whose guard would otherwise take them for a
        // twin and halt it, turning every behaviour into silence.
        if self.nodes[i].behaviour.is_some()
            && let Some(m) = signed_message(&msg)
            && self.nodes[i].keys.iter().any(|k| k.public() == signer_of(&m))
        {
            return;
        }
        if from != i && !self.admit(i, from, &msg) {
            return;
        }
        let live = self.live(i);
        let height = live.core.height();
        if let Some(h) = msg.height()
            && h > height
        {
            live.heard_height = live.heard_height.max(h);
            // Refused by the core before NewHeight: keep the next height's messages, ask for blocks
            // when stuck here while a peer is ahead.
            if h == height.next() && live.future.len() < FUTURE_MESSAGES_MAX {
                live.future.push((from, msg));
            }
            let stuck = now.saturating_sub(live.height_started_ms) >= SYNC_AFTER_MS || h > height.next();
            if stuck && live.last_sync_ms.is_none_or(|t| now.saturating_sub(t) >= SYNC_RETRY_MS) {
                live.last_sync_ms = Some(now);
                self.report.syncs += 1;
                self.send(i, from, Msg::SyncRequest { from: height });
            }
            return;
        }
        match msg {
            Msg::Proposal(p, block) => {
                if p.proposal.height < height {
                    return;
                }
                let hash = p.proposal.block_hash;
                if !live.proposals.contains(&p) && live.proposals.len() < PROPOSALS_MAX {
                    live.proposals.push(p.clone());
                }
                let arrival = match block {
                    Some(b) if b.hash() == hash => live.candidates.on_block(b),
                    _ => Arrival::Ignored,
                };
                match arrival {
                    Arrival::Validate { round } => self.validate_later(i, hash, round),
                    Arrival::CommitDecided => {
                        let live = self.live(i);
                        let Some(cert) = live.decided_cert.take() else { return };
                        let next = live.core.height().next();
                        if self.commit_decided(i, hash, cert) {
                            pending.push_front(Input::Drain);
                            pending.push_front(Input::Advance(next));
                        }
                        return;
                    }
                    Arrival::Stored | Arrival::Ignored => {}
                }
                self.feed(i, Event::Proposal(p), pending);
            }
            Msg::Vote(v) => {
                if v.vote.height.0 + 1 < height.0 {
                    return;
                }
                self.feed(i, Event::Vote(v), pending);
            }
            Msg::ProposalRequest { height: h, round, block_hash } => {
                if h != height {
                    return;
                }
                let mut found: Vec<&SignedProposal> =
                    live.proposals.iter().filter(|p| p.proposal.block_hash == block_hash).collect();
                found.sort_by_key(|p| p.proposal.round != round);
                if let (Some(p), Some(b)) = (found.first(), live.candidates.get(&block_hash)) {
                    let reply = Msg::Proposal((*p).clone(), Some(b.clone()));
                    self.send(i, from, reply);
                }
            }
            Msg::SyncRequest { from: h } => {
                let start = h.0.saturating_sub(1) as usize;
                // Nothing above is an answer too (as the node's): the asker forgets the hint it had.
                let end = (start + SYNC_BATCH_MAX).min(live.chain.len());
                let batch = live.chain.get(start..end).map(<[_]>::to_vec).unwrap_or_default();
                self.send(i, from, Msg::SyncResponse(batch));
            }
            // Admitted to the mempool by the gate (`admit`): nothing more to do.
            Msg::Txs(_) => {}
            Msg::SyncResponse(batch) if batch.is_empty() => {
                // The peer has nothing above our tip (as the node's driver, which then forgets the hint): a
                // height heard from a peer that can no longer be reached (banned) does not keep this node
                // "behind", and so watching, for ever.
                live.heard_height = live.heard_height.min(live.core.height());
            }
            Msg::SyncResponse(batch) => {
                for (block, cert) in batch {
                    let Some(live) = self.nodes[i].live.as_ref() else { return };
                    let expected = Height(live.chain.len() as u64 + 1);
                    // Judged against the set of its height from this node's own governance state.
                    let set = gov_of(&live.state).next.clone();
                    let me = self.key_for(i, &set).public();
                    let me = set.index_of(&me);
                    let live = self.nodes[i].live.as_mut().expect("node is live");
                    // A peer's word is not trusted: the certificate and the block are checked, as the node does.
                    let signed_by_me = match check_synced(&self.genesis.chain_id, &set, expected, &block, &cert, me) {
                        SyncedBlock::Stale => continue,
                        SyncedBlock::Gap | SyncedBlock::BadCertificate(_) => break,
                        SyncedBlock::Apply { signed_by_me } => signed_by_me,
                    };
                    let parent = parent_of(&self.genesis, &live.chain);
                    let Ok(Ok(changes)) = execute_with_pool(
                        &live.mempool,
                        &live.state,
                        live.state.tree(),
                        gov_of(&live.state),
                        &block,
                        &parent,
                        &self.params,
                        &NoKeyCache,
                    ) else {
                        break;
                    };
                    let next = block.height().next();
                    let floor = live.core.sign_floor();
                    // Look-back, as the node's sync does: this key signed at this height (here or in a life
                    // this node forgot).
                    if self.cfg.signer_guard && signed_by_me && block.height() > floor {
                        self.report.floor_raises += 1;
                        self.feed(i, Event::RaiseSignFloor(block.height()), pending);
                        if self.nodes[i].live.is_none() {
                            return;
                        }
                    }
                    self.commit_block(i, block, cert, &changes);
                    self.advance(i, next, pending);
                    if self.nodes[i].live.is_none() {
                        return;
                    }
                }
                pending.push_front(Input::Drain);
            }
        }
    }

    /// The node's gossip admission, with the same rules (`ledger_core::gossip`, as `node::p2p` and the
    /// node's gossip validator apply them): the peer's standing, its message budget, then the checks of
    /// a vote or a proposal with its block, cheapest first, signature checks from the budget. A refusal as
    /// invalid costs the peer score; enough of them ban it. Returns whether the message goes on to the
    /// shell. An honest node refusing an honest peer's message as invalid breaks I14.
    fn admit(&mut self, i: usize, from: usize, msg: &Msg) -> bool {
        if !matches!(msg, Msg::Proposal(..) | Msg::Vote(_) | Msg::Txs(_)) {
            return true;
        }
        let now = self.now;
        let honest_receiver = self.honest(i);
        let honest_sender = self.honest(from);
        let hook = if honest_receiver { self.cfg.check_hook } else { None };
        let Some(live) = self.nodes[i].live.as_mut() else { return false };
        let tip = Height(live.chain.len() as u64);
        // Each height judged against its own set: the tip's, the next and the one after (the node's rule).
        let gov = gov_of(&live.state);
        let mut check =
            MessageCheck::with_sets(&self.genesis.chain_id, [&gov.current, &gov.next, &gov.after_next], tip);
        if let Some(h) = hook {
            check = h(check);
        }
        let peers = &mut live.peers;
        let standing = peers.standing(&from, now);
        let verdict = if standing == Standing::Ignored {
            // An ignored peer's budget is zero: what it keeps sending brings it closer to a ban.
            Verdict::Ignore(DropReason::OverBudget)
        } else if standing != Standing::Good {
            self.report.gossip_dropped += 1;
            return false;
        } else if peers.try_spend(&from, Resource::Messages, 1, now) {
            let mut spend = |r: Resource, n: u64| peers.try_spend(&from, r, n, now);
            match msg {
                Msg::Proposal(p, block) => check.check_proposal(p, block.as_deref(), &mut spend),
                Msg::Vote(v) => check.check_vote(v, &mut live.verified, &mut spend),
                Msg::Txs(txs) => {
                    let check_signature = |txs: &[&SignedTransaction]| {
                        SignedTransaction::check_keys_and_signatures(txs, &ledger_core::crypto::NoKeyCache)
                    };
                    live.tx_gate.admit_batch(txs, &live.mempool, &live.state, tip, &check_signature, &mut spend)
                }
                _ => Verdict::Accept,
            }
        } else {
            Verdict::Ignore(DropReason::OverBudget)
        };
        let offence = match &verdict {
            Verdict::Accept => return true,
            Verdict::Ignore(DropReason::OverBudget) => Some(Offence::OverBudget),
            Verdict::Ignore(DropReason::FarHeight) => {
                // Above tip + 2 the node judges a message against the newest set it knows: a validator added
                // since is dropped there without blame until this node catches up.
                self.report.far_height_refusals += 1;
                None
            }
            Verdict::Ignore(_) => None,
            Verdict::Reject(reason) => {
                self.report.gossip_rejected += 1;
                if honest_receiver && honest_sender {
                    self.checker.violations.push(Violation::HonestPenalised {
                        node: i,
                        peer: from,
                        reason: reason.clone(),
                    });
                }
                Some(Offence::Invalid)
            }
        };
        self.report.gossip_dropped += u64::from(offence != Some(Offence::Invalid));
        if let Some(o) = offence
            && let Some(live) = self.nodes[i].live.as_mut()
            && matches!(live.peers.penalise(&from, o, now), Change::NowBanned { .. })
        {
            self.report.peer_bans += 1;
            self.report.honest_peer_bans += u64::from(honest_receiver && honest_sender);
        }
        false
    }

    /// Whether `a` or `b` has banned the other (the node disconnects a banned peer: nothing flows).
    fn banned_link(&mut self, a: usize, b: usize) -> bool {
        let now = self.now;
        let mut banned = |x: usize, y: usize| {
            self.nodes[x].live.as_mut().is_some_and(|l| matches!(l.peers.standing(&y, now), Standing::Banned { .. }))
        };
        banned(a, b) || banned(b, a)
    }

    /// Behind (a peer spoke of a higher height) and stuck: ask the next peer in turn for blocks, as the
    /// node's driver does on its tick (any peer, not only the one that spoke, which may be gone or banned).
    fn maybe_sync(&mut self, i: usize) {
        let now = self.now;
        let n = self.nodes.len();
        if n < 2 {
            return;
        }
        let Some(live) = self.nodes[i].live.as_mut() else { return };
        let height = live.core.height();
        let behind = live.heard_height > height;
        let stuck = now.saturating_sub(live.height_started_ms) >= SYNC_AFTER_MS;
        if !behind || !stuck || live.last_sync_ms.is_some_and(|t| now.saturating_sub(t) < SYNC_RETRY_MS) {
            return;
        }
        live.last_sync_ms = Some(now);
        live.sync_next = live.sync_next.wrapping_add(1);
        let to = (i + 1 + live.sync_next % (n - 1)) % n;
        self.report.syncs += 1;
        self.send(i, to, Msg::SyncRequest { from: height });
    }

    /// Re-send this node's own signed messages of the current height.
    fn gossip(&mut self, i: usize) {
        self.maybe_sync(i);
        self.offer_approvals(i);
        let Some(live) = self.nodes[i].live.as_ref() else { return };
        if let (Some(block_hash), Some(cert)) = (live.candidates.decided_without_block(), &live.decided_cert) {
            let req = Msg::ProposalRequest { height: cert.height, round: cert.round, block_hash };
            self.broadcast_plain(i, req);
        }
        let Some(live) = self.nodes[i].live.as_ref() else { return };
        let own = live.core.own_messages();
        let msgs: Vec<Msg> = own
            .into_iter()
            .map(|m| match m {
                SignedMessage::Proposal(p) => {
                    let b = live.candidates.get(&p.proposal.block_hash).cloned();
                    Msg::Proposal(p, b)
                }
                SignedMessage::Vote(v) => Msg::Vote(v),
            })
            .collect();
        // Honest nodes also relay the other validators' votes that matter (as gossipsub does in the node),
        // so a double voter's two halves reach everyone. Sent plain: these are not this node's messages.
        let relayed: Vec<Msg> = if self.nodes[i].behaviour.is_none() {
            live.core.relay_votes().into_iter().map(Msg::Vote).collect()
        } else {
            Vec::new()
        };
        for m in msgs {
            self.broadcast(i, m);
        }
        for m in relayed {
            self.broadcast_plain(i, m);
        }
        match self.nodes[i].behaviour {
            Some(Behaviour::Replayer) => self.replay_old(i),
            Some(Behaviour::RoundSkipper) => self.skip_rounds(i),
            Some(Behaviour::Flooder) => self.flood(i),
            _ => {}
        }
    }

    /// Send to every other node, through this node's behaviour if it is Byzantine.
    fn broadcast(&mut self, i: usize, msg: Msg) {
        match self.nodes[i].behaviour {
            None => {
                if let Some(m) = signed_message(&msg) {
                    self.checker.on_honest_send(&m);
                    self.report.spare_messages += u64::from(i >= self.cfg.validators);
                    let rotated = self.nodes[i].keys.get(1).is_some_and(|k| k.public() == signer_of(&m));
                    self.report.rotated_key_messages += u64::from(rotated);
                }
                self.broadcast_plain(i, msg);
            }
            Some(b) => self.byzantine_send(i, b, msg),
        }
    }

    fn broadcast_plain(&mut self, i: usize, msg: Msg) {
        if self.nodes[i].behaviour == Some(Behaviour::Silent) {
            return;
        }
        for j in 0..self.nodes.len() {
            if j != i {
                self.send(i, j, msg.clone());
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.nodes[from].behaviour == Some(Behaviour::Silent) {
            return;
        }
        let (link, latency) = if self.healed {
            (self.cfg.healed_link, self.healed_latency[from][to])
        } else {
            (self.cfg.chaos_link, self.chaos_latency[from][to])
        };
        let cut = self.cuts.iter().any(|(_, a, b)| a.contains(&from) && b.contains(&to));
        if cut || self.banned_link(from, to) || self.net_rng.chance(link.loss_per_mille) {
            self.report.dropped += 1;
            return;
        }
        let rng = &mut self.net_rng;
        let mut delay = || {
            let d = latency + rng.range(0, link.jitter_ms);
            if rng.chance(link.tail_per_mille) { d * 5 } else { d }
        };
        let first = delay();
        let dup = if self.net_rng.chance(link.duplicate_per_mille) {
            let rng = &mut self.net_rng;
            Some(latency + rng.range(0, link.jitter_ms.max(1) * 2))
        } else {
            None
        };
        let replay = self.net_rng.chance(link.replay_per_mille).then(|| self.net_rng.range(1_000, 10_000));
        for d in [Some(first), dup, replay].into_iter().flatten() {
            self.push(self.now + d, Ev::Deliver { from, to, msg: msg.clone() });
        }
    }
}

/// Run one configuration to the end.
pub fn run(cfg: &SimConfig) -> Report {
    World::new(cfg.clone()).run()
}

/// The governance state of a simulated node's store (made from the genesis, so it always has one).
fn gov_of(state: &MemStore) -> &ledger_core::governance::GovState {
    state.gov().expect("a store made from the genesis has a governance state")
}
