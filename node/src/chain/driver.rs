//! The consensus driver: ONE tokio task that owns the consensus state machine and executes its actions.
//!
//! Inputs: gossip from the network task (proposals with blocks, votes; transactions are admitted to the
//! mempool by the gossip validator before they get here), fired timers, block-sync responses and a periodic
//! tick. Outputs: the [`Action`]s of `ledger_core::consensus`, executed strictly in the order returned:
//!
//! - `PersistSignerState` is written and flushed before the next action runs, so the vote or proposal it
//!   guards is never sent unless it survives a crash. A failure to persist stops the driver: a validator
//!   that cannot persist must not sign. A signed proposal's block is persisted in the same batch, so after a
//!   restart the re-broadcast proposal comes with its block. Several writes of one batch separated only by
//!   broadcasts and timers become one write of the last state, in the place of the first
//!   ([`signer_writes`]).
//! - `BuildBlock` builds from the mempool with [`build_block`] as soon as transactions wait. In round 0 with
//!   an empty mempool it waits for transactions or `empty_block_interval_ms` since the last commit; with
//!   only transactions that cannot apply yet (nonce gaps), or in a later round, it waits at most half the
//!   propose timeout. Under load it first waits `min_block_interval_ms` since the last commit (same cap), so
//!   that blocks grow instead of multiplying; the driver wakes when that interval ends, and re-checks the
//!   other waits on its 20 ms tick.
//! - The round-0 propose timeout is *idle-aware* so that validators do not time out on an idle proposer:
//!   when it fires while this node has seen no transaction during the height, it is held back until
//!   `timeout_propose + empty_block_interval_ms` after the height began, or `timeout_propose` after the
//!   first transaction shows up in the mempool, whichever comes first (see [`IdleHold`]). A proposer that is
//!   down therefore costs an idle chain one interval more; under load nothing changes.
//! - `ValidateBlock` runs [`apply_block`] on the committed state, trusting signatures the mempool verified.
//! - `Decide` commits the block with its certificate in one atomic, flushed write, then updates the
//!   mempool, then reports the new height, then starts the next height. The high-water mark of the commit
//!   is written on its own thread meanwhile; the next commit waits for it first.
//! - When a peer shows a higher height, or a decided block is missing, the driver syncs: it asks one peer
//!   at a time for blocks, verifies each certificate against the validator set and executes each block
//!   before committing it. No peer is trusted.
//!
//! **Invariant:** nothing but this task touches the consensus state; other tasks read storage (which is
//! only written here) and the mempool (behind a mutex).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ledger_core::consensus::{
    self, Action, Consensus, ConsensusError, Event, Evidence, GuardMode, SignedMessage, SignerState, Timeout,
};
use ledger_core::state::{BlockTemplate, StoreError};
use ledger_core::{
    Block, CommitCertificate, ConsensusParams, Genesis, Hash, Height, Keypair, Parent, Round, StateChanges,
    ValidatorSet,
};
use libp2p::PeerId;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;

use crate::admission::{TxGate, build_from_pool, execute_with_pool};
use crate::api::{BlockEvent, Metrics};
use crate::chain::signer_writes::{self, Step};
use crate::mempool::Mempool;
use crate::p2p::{DeferredCheck, GossipValidator, Judged, NetError, NetworkEvent, NetworkHandle, Validation};
use crate::safety::SafetyError;
use crate::safety::high_water::{self, HighWater, MarkWriter};
use crate::safety::signer::SignerFile;
use crate::storage::{Storage, StorageError};
use crate::wire::{GossipMessage, ProposalMessage, SYNC_BLOCKS_MAX, SyncRequest, SyncResponse};
use ledger_core::gossip::{DropReason, MessageCheck, RecentSet, Resource, Verdict};
use ledger_core::shell::{Arrival, Candidates, SyncedBlock, Validity, check_synced};

/// Candidate blocks kept for the current height (own and proposed).
pub const CANDIDATE_BLOCKS_MAX: usize = 64;
/// Evidence kept in memory for the API.
pub const EVIDENCE_MAX: usize = 1024;
/// A proposed block may be at most this far ahead of the local clock to get our prevote. Like Tendermint's
/// proposer-based timestamps, this is a local judgement for voting only; committed blocks (and blocks
/// synced with a certificate) are never judged by the local clock.
pub use ledger_core::shell::TIMESTAMP_DRIFT_MAX_MS;
/// After this long without a commit, the driver re-gossips its own signed messages and the votes it relays
/// (links lose messages, and one lost during a partition is otherwise never sent again), then again every
/// [`REGOSSIP_EVERY`] while no block commits. Each re-send carries a fresh `resend` number, so gossipsub's
/// content-hash duplicate cache does not drop it.
const REGOSSIP_AFTER: Duration = Duration::from_secs(3);
const REGOSSIP_EVERY: Duration = Duration::from_secs(2);
/// How often the driver checks deferred work (building, syncing).
const TICK: Duration = Duration::from_millis(20);
/// Reported as catching up when one block behind for this long (see `maybe_sync`).
const CATCHING_UP_AFTER: Duration = Duration::from_millis(500);
/// While catching up, a progress line this often.
const SYNC_PROGRESS_LOG_EVERY: Duration = Duration::from_secs(5);
/// How long to wait for a sync response before asking another peer.
const SYNC_RETRY: Duration = Duration::from_secs(2);
/// Inside a long drain, the driver's busy time is added to its metric at least this often.
const BUSY_COUNT_EVERY: Duration = Duration::from_millis(100);
/// At most one warning this often that peers ahead serve no block after the tip (they pruned it).
const PRUNED_WARN_EVERY: Duration = Duration::from_secs(60);

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("storage failure")]
    Storage(#[from] StorageError),
    #[error("state store failure")]
    Store(#[from] StoreError),
    #[error("consensus refused its own input")]
    Consensus(#[from] ConsensusError),
    #[error(transparent)]
    Safety(#[from] SafetyError),
    #[error("block {height} was decided but cannot be applied: {reason}")]
    DecidedBlockInvalid { height: Height, reason: String },
    #[error("network task stopped")]
    NetworkStopped,
}

/// What the rest of the node sees of the driver.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Latest committed height.
    pub height: Height,
    pub latest_block_hash: Option<Hash>,
    pub latest_block_time_ms: u64,
    /// True while syncing from peers.
    pub catching_up: bool,
    /// Height and round consensus is deciding.
    pub consensus_height: Height,
    pub round: Round,
    /// Connected peers.
    pub n_peers: usize,
    /// The double-sign guard of this validator (mode `full_node` on a node without a key in the set).
    pub signer: SignerStatus,
    /// Local wall-clock time (ms since the epoch) of the last commit, or of the start if none yet.
    pub last_commit_local_ms: u64,
    /// How far a catch-up has to go, while `catching_up`.
    pub sync: Option<SyncProgress>,
}

/// A catch-up's progress: the height the peers have committed, the rate since it began and the time left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    pub target_height: Height,
    /// Blocks committed per second since the catch-up began, times 100.
    pub blocks_per_sec_x100: u64,
    /// Seconds left at that rate (`None` until a rate is known).
    pub eta_secs: Option<u64>,
}

impl SyncProgress {
    /// Progress of a catch-up that began at `from` (committed height) `elapsed` ago and is at `committed`,
    /// with the peers at `target`. The rate needs at least a second of history.
    pub fn compute(from: Height, committed: Height, target: Height, elapsed: Duration) -> SyncProgress {
        let target_height = target.max(committed);
        let secs = elapsed.as_secs_f64();
        let done = committed.0.saturating_sub(from.0) as f64;
        let rate = if secs >= 1.0 { done / secs } else { 0.0 };
        let left = target_height.0 - committed.0;
        let eta_secs = (rate > 0.0).then(|| (left as f64 / rate).ceil() as u64);
        SyncProgress { target_height, blocks_per_sec_x100: (rate * 100.0) as u64, eta_secs }
    }
}

/// What the double-sign guard is doing, for `/status`, `/health` and the metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignerStatus {
    /// `full_node` (no key in the validator set), `watching` (just started: observes the network before it
    /// signs), `suspect` (saw its own key in a message it did not sign: signs nothing until a whole height
    /// passes without that), `active` (signs) or `halted` (another process signs with this key: this one
    /// never signs again until restarted).
    pub mode: &'static str,
    /// The guard never signs at or below this height (look-back: the highest height at which this key
    /// was found in a certificate or a vote this process did not make).
    pub sign_floor: u64,
    /// Why the guard is in this mode, for an operator.
    pub detail: Option<String>,
    /// The key this node signs with, when it is in the current validator set (it changes with a rotation).
    pub validator: Option<ledger_core::PublicKey>,
}

/// Shared between the driver, the gossip validator and the API.
pub struct Shared {
    pub genesis: Genesis,
    pub storage: Storage,
    pub mempool: Mutex<Mempool>,
    pub evidence: Mutex<Vec<Evidence>>,
    /// Approvals and equivocation evidence waiting for a block.
    pub ops: Mutex<crate::ops::OpsPool>,
    pub metrics: Arc<Metrics>,
    /// Checked keys of the accounts seen, for transaction checks.
    pub keys: crate::keycache::SharedKeyCache,
    /// Sent to after every durable commit (nobody listening is fine; slow receivers lag, the driver never
    /// waits).
    pub blocks: broadcast::Sender<BlockEvent>,
    /// Counters of the network's peer guard (penalties, bans, dropped gossip), for `/metrics`.
    pub peer_stats: Arc<crate::p2p::PeerStats>,
    /// The mempool's disk refusal, also kept here for the API's door, which reads it without waiting for
    /// the mempool lock. Set both with [`Shared::set_disk_refusal`].
    pub disk_refusal: Mutex<Option<crate::storage::disk::DiskRefusal>>,
}

impl Shared {
    /// The validator set of `height` (heights up to the tip + 2 are known; the genesis set if the store has
    /// none, which only a store that failed to open would).
    pub fn validators_at(&self, height: Height) -> Arc<ValidatorSet> {
        self.storage.validator_set_at(height).unwrap_or_else(|| {
            Arc::new(self.genesis.validator_set().unwrap_or_else(|_| unreachable_set(&self.genesis)))
        })
    }

    /// The set of the height after the tip: who votes now.
    pub fn current_validators(&self) -> Arc<ValidatorSet> {
        let tip = self.storage.latest_height().unwrap_or(Height::GENESIS);
        self.validators_at(tip.next())
    }

    /// The operations pool, even if a thread panicked while holding it.
    pub fn ops(&self) -> std::sync::MutexGuard<'_, crate::ops::OpsPool> {
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
    /// The mempool, even if a thread panicked while holding it (its invariants hold between calls).
    pub fn mempool(&self) -> MutexGuard<'_, Mempool> {
        self.mempool.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuse (or admit again) every transaction because of the disk: the mempool's refusal and the door's.
    pub fn set_disk_refusal(&self, refusal: Option<crate::storage::disk::DiskRefusal>) {
        *self.disk_refusal.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = refusal.clone();
        self.mempool().set_disk_refusal(refusal);
    }

    /// The disk refusal in force, without the mempool lock: `(code, message)`.
    pub fn disk_refusal(&self) -> Option<(&'static str, String)> {
        let refusal = self.disk_refusal.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        refusal.as_ref().map(|d| (d.code, d.message.clone()))
    }

    /// The mempool if no one holds it now (`None`: it is held; never waits).
    pub fn try_mempool(&self) -> Option<MutexGuard<'_, Mempool>> {
        match self.mempool.try_lock() {
            Ok(m) => Some(m),
            Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    pub fn chain_id(&self) -> &str {
        &self.genesis.chain_id
    }

    pub fn params(&self) -> &ConsensusParams {
        &self.genesis.params
    }

    /// Keys and signatures of gossiped transactions, as one batch, with the node's decompressed-key cache.
    fn check_signatures(&self, txs: &[&ledger_core::SignedTransaction]) -> Vec<Result<(), ledger_core::TxError>> {
        ledger_core::SignedTransaction::check_keys_and_signatures(txs, &self.keys)
    }
}

/// Validates gossip for the node: transactions are admitted to the mempool right here (signature verified
/// once); consensus messages go through `ledger_core::gossip`'s rules (shared with the simulator). Every
/// check that needs no signature comes first; signature checks are paid from the sending peer's budget.
pub struct NodeGossipValidator {
    pub shared: Arc<Shared>,
    /// Digests of votes verified recently: a replay of the same bytes needs no second check.
    verified_votes: Mutex<RecentSet<Hash>>,
    /// Transaction batches (`admission::TxGate`, shared with the simulator).
    txs: Arc<TxGate>,
}

/// Vote digests remembered as verified.
pub const VERIFIED_VOTES_MAX: usize = 16_384;

impl NodeGossipValidator {
    pub fn new(shared: Arc<Shared>) -> Self {
        NodeGossipValidator {
            shared,
            verified_votes: Mutex::new(RecentSet::new(VERIFIED_VOTES_MAX)),
            txs: Arc::new(TxGate::default()),
        }
    }

    /// For each of `txs`, whether the mempool knows it good (pooled, committed, or checked in a proposed
    /// block); and those it does not.
    fn split_known<'a>(
        &self,
        txs: &[&'a ledger_core::SignedTransaction],
    ) -> (Vec<bool>, Vec<&'a ledger_core::SignedTransaction>) {
        let known: Vec<bool> = {
            let mempool = self.shared.mempool();
            txs.iter().map(|tx| mempool.known_good(&tx.id())).collect()
        };
        let unknown = txs.iter().zip(&known).filter(|(_, known)| !**known).map(|(tx, _)| *tx).collect();
        (known, unknown)
    }
}

/// What woke the driver's loop.
enum Next {
    Network(NetworkEvent),
    Timeout(Timeout),
    Sync(PeerId, Result<SyncResponse, NetError>),
    Tick,
    Build,
}

fn validation_of(verdict: Verdict) -> Validation {
    match verdict {
        Verdict::Accept => Validation::Accept,
        Verdict::Ignore(reason) => Validation::Drop(reason),
        Verdict::Reject(reason) => Validation::Reject(reason),
    }
}

impl GossipValidator for NodeGossipValidator {
    fn validate(&self, source: &PeerId, message: &GossipMessage) -> Validation {
        self.validate_metered(source, message, &mut |_, _| true)
    }

    /// With the node's cache of decompressed keys, and not again for transactions known good since their
    /// batch was prepared (under load, proposed blocks often carry transactions whose gossip batch is still
    /// waiting here: the block's validation checked them first).
    fn check_signatures(&self, txs: &[&ledger_core::SignedTransaction]) -> Vec<Result<(), ledger_core::TxError>> {
        let (known, unknown) = self.split_known(txs);
        let mut verdicts = self.shared.check_signatures(&unknown).into_iter();
        known
            .iter()
            .map(
                |&known| {
                    if known { Ok(()) } else { verdicts.next().unwrap_or(Err(ledger_core::TxError::BadSignature)) }
                },
            )
            .collect()
    }

    /// As [`NodeGossipValidator::check_signatures`], in one batch and nothing more.
    fn signatures_all_valid(&self, txs: &[&ledger_core::SignedTransaction]) -> bool {
        let (_, unknown) = self.split_known(txs);
        ledger_core::SignedTransaction::keys_and_signatures_all_valid(&unknown, &self.shared.keys)
    }

    /// A transaction batch's signatures are checked on the network's verification thread (a batch of 1,024
    /// takes tens of milliseconds, during which proposals and votes would wait behind it); everything
    /// else, and the budget for those checks, here.
    fn validate_split(
        &self,
        source: &PeerId,
        message: &GossipMessage,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Judged {
        let GossipMessage::TxBatch(txs) = message else {
            return Judged::Now(self.validate_metered(source, message, spend));
        };
        let s = &self.shared;
        let Ok(tip) = s.storage.latest_height() else { return Judged::Now(Validation::Drop(DropReason::Unavailable)) };
        match self.txs.prepare_batch(txs, &s.mempool, &s.storage, tip, spend) {
            Err(verdict) => Judged::Now(validation_of(verdict)),
            Ok(prepared) => {
                let shared = Arc::clone(&self.shared);
                let gate = Arc::clone(&self.txs);
                Judged::Later(DeferredCheck {
                    signatures: prepared.indices().to_vec(),
                    finish: Box::new(move |message, verdicts| {
                        let GossipMessage::TxBatch(txs) = message else {
                            return Validation::Drop(DropReason::Unavailable);
                        };
                        let s = &shared;
                        let Ok(tip) = s.storage.latest_height() else {
                            return Validation::Drop(DropReason::Unavailable);
                        };
                        // `finish_batch` asks for the prepared transactions, the ones `verdicts` are for; anything
                        // else (never expected) is checked here.
                        let check = |txs: &[&ledger_core::SignedTransaction]| {
                            if txs.len() == verdicts.len() { verdicts.to_vec() } else { s.check_signatures(txs) }
                        };
                        validation_of(gate.finish_batch(&prepared, txs, &s.mempool, &s.storage, tip, &check))
                    }),
                })
            }
        }
    }

    fn validate_metered(
        &self,
        _source: &PeerId,
        message: &GossipMessage,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Validation {
        let s = &self.shared;
        let Ok(tip_sets) = s.storage.tip_sets() else { return Validation::Drop(DropReason::Unavailable) };
        let tip = tip_sets.tip;
        let [a, b, c] = &tip_sets.sets;
        let check = MessageCheck::with_sets(s.chain_id(), [a.as_ref(), b.as_ref(), c.as_ref()], tip);
        let verdict = match message {
            GossipMessage::TxBatch(txs) => {
                self.txs.admit_batch(txs, &s.mempool, &s.storage, tip, &|txs| s.check_signatures(txs), spend)
            }
            GossipMessage::Vote { vote, .. } => {
                let mut verified = self.verified_votes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                check.check_vote(vote, &mut verified, spend)
            }
            GossipMessage::Proposal(p) => check.check_proposal(&p.proposal, Some(&p.block), spend),
        };
        validation_of(verdict)
    }
}

/// Default wait after a commit before a loaded proposer builds, with more than one validator. Measured with 4
/// validators at 5,000 tx/s: p99 330-417 ms and 330-351 µs CPU per tx, against 390-1,801 ms and 363-377 µs
/// without it.
pub const DEFAULT_MIN_BLOCK_INTERVAL_MS: u64 = 40;

/// Default of [`DriverOptions::build_txs_max`].
pub const DEFAULT_BUILD_TXS_MAX: usize = 4096;

/// The round-0 propose timeout of an idle height. An idle proposer waits `empty_block_interval_ms` before
/// it proposes an empty block; the other validators must not prevote nil meanwhile. So when the timeout
/// fires and this node has seen no transaction since the height began, it is held until `timeout_propose +
/// interval` after the start, or `timeout_propose` after the first transaction (the proposer, which gets it
/// by gossip too, then proposes within its `min_block_interval_ms`), whichever is first. Timeouts are local
/// judgements; the core's rules are unchanged, and a held timeout that is no longer current is ignored by
/// the core as any late timeout is.
#[derive(Default)]
struct IdleHold {
    /// The height whose round-0 propose timer runs, and when it was scheduled.
    started: Option<(Height, Instant)>,
    /// When a transaction was first seen in the mempool during that height.
    first_tx: Option<Instant>,
    /// The fired timeout being held.
    held: Option<Timeout>,
}

impl IdleHold {
    fn start(height: Height, now: Instant, busy: bool) -> IdleHold {
        IdleHold { started: Some((height, now)), first_tx: busy.then_some(now), held: None }
    }

    /// Whether a fired round-0 propose timeout of `height` may be held.
    fn holds(&self, height: Height) -> bool {
        self.started.is_some_and(|(h, _)| h == height)
    }

    fn deadline(&self, propose: Duration, interval: Duration) -> Instant {
        let Some((_, start)) = self.started else { return Instant::now() };
        let idle = start + propose + interval;
        match self.first_tx {
            Some(t) => idle.min(t + propose),
            None => idle,
        }
    }
}

/// One INFO line per interval for empty blocks, instead of one per block.
struct EmptyBlockLog {
    /// When the last summary was written; `None` before the first, which is written at once.
    since: Option<Instant>,
    pending: Option<EmptySummary>,
}

/// Empty blocks committed since the last summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EmptySummary {
    blocks: u64,
    first: Height,
    last: Height,
    /// Of these, how many were decided in a round above 0 (a sign of timeouts or a validator down).
    late_rounds: u64,
    elapsed: Duration,
}

impl EmptyBlockLog {
    fn new() -> EmptyBlockLog {
        EmptyBlockLog { since: None, pending: None }
    }

    /// Count an empty block; the summary to log when `every` has passed since the last one.
    fn on_empty(&mut self, height: Height, round: Round, now: Instant, every: Duration) -> Option<EmptySummary> {
        let late = u64::from(round.0 > 0);
        let s = self.pending.get_or_insert(EmptySummary {
            blocks: 0,
            first: height,
            last: height,
            late_rounds: 0,
            elapsed: Duration::ZERO,
        });
        s.blocks += 1;
        s.last = height;
        s.late_rounds += late;
        let since = self.since.unwrap_or(now);
        if self.since.is_some() && now.saturating_duration_since(since) < every {
            return None;
        }
        let mut out = self.pending.take()?;
        out.elapsed = now.saturating_duration_since(since);
        self.since = Some(now);
        Some(out)
    }
}

/// Options of the driver.
#[derive(Clone, Debug)]
pub struct DriverOptions {
    pub empty_block_interval_ms: u64,
    /// A proposer with transactions waits this long after the last commit before building (capped at half
    /// the propose timeout), so that under load blocks carry more transactions and per-block work is shared.
    /// `None`: [`DEFAULT_MIN_BLOCK_INTERVAL_MS`] with more than one validator, 0 with one (no vote round
    /// trips to amortise there; measured, it only added latency and memory).
    pub min_block_interval_ms: Option<u64>,
    /// Blocks checked at start by [`Storage::verify_tail`].
    pub verify_tail_blocks: u64,
    /// How long a (re)started validator watches the network, connected and caught up, before it signs
    /// (see [`GuardMode::Watching`]); 0 disables the watch.
    pub double_sign_watch_ms: u64,
    /// Most transactions this node puts in a block it proposes (at most the chain's `txs_per_block_max`).
    /// Every validator must receive, execute and vote on a block within the round's timeouts; a proposer
    /// that fills blocks from a saturated pool to the chain maximum makes rounds fail, and failed rounds
    /// make the backlog and the next block larger still (the overload collapse).
    pub build_txs_max: usize,
    /// Empty blocks are logged as one INFO summary per this many ms instead of a line each; 0: a line each.
    pub idle_summary_interval_ms: u64,
}

/// Default watch: longer than a stalled network takes to re-gossip what it holds (3 s, then every 2 s),
/// so this validator's own messages from before a restart, or another process's, reach it first.
pub const DEFAULT_DOUBLE_SIGN_WATCH_MS: u64 = 6_000;

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            empty_block_interval_ms: 1000,
            min_block_interval_ms: None,
            verify_tail_blocks: 100,
            double_sign_watch_ms: DEFAULT_DOUBLE_SIGN_WATCH_MS,
            build_txs_max: DEFAULT_BUILD_TXS_MAX,
            idle_summary_interval_ms: 60_000,
        }
    }
}

/// A validator's signer, as found at start by [`crate::run`].
pub struct SignerSetup {
    pub key: Keypair,
    /// Where the signer state is persisted (before every signed message leaves the node).
    pub file: SignerFile,
    /// As loaded (or migrated); `SignerState::default()` when there was none.
    pub state: SignerState,
    /// Look-back floor found in the stored certificates.
    pub sign_floor: Height,
    /// Watch the network before signing (see [`DriverOptions::double_sign_watch_ms`]).
    pub watch: bool,
    /// Where the key of a pending rotation may be found (`next_validator_key_file`): read when a height's
    /// set no longer holds `key` and may hold that one instead.
    pub next_key_file: Option<std::path::PathBuf>,
    /// The data directory, for the signer state of the next key.
    pub data_dir: std::path::PathBuf,
}

/// Everything the driver owns.
pub struct Driver {
    shared: Arc<Shared>,
    consensus: Consensus,
    /// Where the signer state goes (validators only).
    signer_file: Option<SignerFile>,
    high_water: MarkWriter,
    /// Watch time still to run (while connected and caught up) before `EndWatch`; `None` once over.
    watch_left: Option<Duration>,
    watch_last: Instant,
    /// Why the guard is where it is, for `/status`.
    guard_detail: Option<String>,
    /// This validator's consensus key, if it has one in the set.
    key_public: Option<ledger_core::PublicKey>,
    /// The key a rotation may switch to, and the data directory for its signer state.
    next_key: Option<(std::path::PathBuf, std::path::PathBuf)>,
    network: NetworkHandle,
    opts: DriverOptions,
    status: watch::Sender<Status>,
    /// Blocks of the current height, what the core waits for, and a decided block still missing
    /// (`ledger_core::shell`, shared with the simulator).
    candidates: Candidates<Block>,
    /// A BuildBlock that waits for transactions or the empty-block interval.
    pending_build: Option<(Height, Round, Instant)>,
    /// When the pending build may go ahead under `min_block_interval_ms`: the driver wakes then rather than
    /// on the next tick, so the interval is not stretched by up to a tick.
    build_wake: Option<Instant>,
    /// The round-0 propose timeout of the current height, held back while the chain is idle.
    idle: IdleHold,
    /// Empty blocks committed since the last summary line, and when that line was written.
    empty_blocks: EmptyBlockLog,
    /// Events the driver itself produced (built block, verdict, new height), fed after the current batch of
    /// actions has run, in order.
    queue: std::collections::VecDeque<Event>,
    /// Start of the busy time not yet added to `ledger_driver_busy_seconds_total` (see [`Driver::count_busy`]).
    busy_since: Instant,
    last_commit_at: Instant,
    /// Last re-gossip of our own messages.
    last_regossip_at: Instant,
    /// `resend` number of the last re-gossip round (see [`resend_start`]).
    resend: u32,
    /// Re-sent consensus messages, for the debug log.
    resent_total: u64,
    /// When the last warning that a peer ahead served no block (pruned) was logged.
    pruned_warned: Option<Instant>,
    /// Sync answers in a row with no block while peers said they were ahead.
    empty_answers: usize,
    /// Connected peers (from the network's events).
    connected: BTreeSet<PeerId>,
    /// Since when the node has been behind its peers, if it is.
    behind_since: Option<Instant>,
    /// While catching up: when it began, the committed height then, and when progress was last logged.
    catch_up: Option<(Instant, Height, Instant)>,
    timers_tx: mpsc::Sender<Timeout>,
    timers_rx: mpsc::Receiver<Timeout>,
    sync: SyncState,
    sync_tx: mpsc::Sender<(PeerId, Result<SyncResponse, NetError>)>,
    sync_rx: mpsc::Receiver<(PeerId, Result<SyncResponse, NetError>)>,
}

#[derive(Default)]
struct SyncState {
    /// Highest height a peer has shown us (through consensus messages).
    target: Height,
    peers: Vec<PeerId>,
    next_peer: usize,
    in_flight: Option<Instant>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Driver {
    /// Build the driver at the height after the stored tip, with the signer found at start (`None`: a full
    /// node, or a key outside the validator set).
    pub fn new(
        shared: Arc<Shared>,
        signer: Option<SignerSetup>,
        high_water: HighWater,
        network: NetworkHandle,
        opts: DriverOptions,
    ) -> Result<(Driver, watch::Receiver<Status>), DriverError> {
        let tip = shared.storage.latest_height()?;
        let key_public = signer.as_ref().map(|s| s.key.public());
        let watch = signer.as_ref().is_some_and(|s| s.watch) && opts.double_sign_watch_ms > 0;
        let (key, state, sign_floor, signer_file, next_key) = match signer {
            Some(s) => {
                let next = s.next_key_file.map(|f| (f, s.data_dir));
                (Some(s.key), s.state, s.sign_floor, Some(s.file), next)
            }
            None => (None, SignerState::default(), Height::GENESIS, None, None),
        };
        let consensus = Consensus::new(consensus::Config {
            chain_id: shared.genesis.chain_id.clone(),
            validators: (*shared.validators_at(tip.next())).clone(),
            params: shared.genesis.params.clone(),
            key,
            signer: state,
            height: tip.next(),
            sign_floor,
            watch,
        })?;
        let guard_detail = watch.then(|| {
            format!(
                "watching the network for {} ms (connected and caught up) before signing",
                opts.double_sign_watch_ms
            )
        });
        let watch_left = watch.then(|| Duration::from_millis(opts.double_sign_watch_ms));
        let resend = resend_start(now_ms(), &network.local_peer_id());
        let mut status =
            Status { height: tip, consensus_height: tip.next(), last_commit_local_ms: now_ms(), ..Status::default() };
        if let Some(b) = shared.storage.block(tip)? {
            status.latest_block_hash = Some(b.hash());
            status.latest_block_time_ms = b.header.timestamp_ms;
        }
        // The block of a proposal signed before a restart, so that re-broadcasting the proposal is useful.
        let mut candidates = Candidates::new(tip.next(), CANDIDATE_BLOCKS_MAX);
        if let Some(block) = shared.storage.proposed_block()? {
            candidates.on_block(block);
        }
        let (status_tx, status_rx) = watch::channel(status);
        let (timers_tx, timers_rx) = mpsc::channel(1024);
        let (sync_tx, sync_rx) = mpsc::channel(4);
        let driver = Driver {
            shared,
            consensus,
            signer_file,
            high_water: MarkWriter::start(high_water)?,
            watch_left,
            watch_last: Instant::now(),
            guard_detail,
            key_public,
            next_key,
            network,
            opts,
            status: status_tx,
            candidates,
            pending_build: None,
            build_wake: None,
            idle: IdleHold::default(),
            empty_blocks: EmptyBlockLog::new(),
            queue: std::collections::VecDeque::new(),
            busy_since: Instant::now(),
            last_commit_at: Instant::now(),
            last_regossip_at: Instant::now(),
            resend,
            resent_total: 0,
            pruned_warned: None,
            empty_answers: 0,
            connected: BTreeSet::new(),
            behind_since: None,
            catch_up: None,
            timers_tx,
            timers_rx,
            sync: SyncState::default(),
            sync_tx,
            sync_rx,
        };
        Ok((driver, status_rx))
    }

    /// Run until the network stops or a fatal error.
    pub async fn run(mut self, mut events: mpsc::Receiver<NetworkEvent>) -> Result<(), DriverError> {
        // Busy from here, not from construction (the time before `run` is the node's start-up, not the driver's).
        self.busy_since = Instant::now();
        let actions = self.consensus.handle(Event::Start)?;
        self.execute(actions).await?;
        self.drain().await?;
        let mut tick = tokio::time::interval(TICK);
        loop {
            let build_wake = self.build_wake;
            let build_due = async move {
                match build_wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => Next::Network(ev),
                    None => return Err(DriverError::NetworkStopped),
                },
                Some(t) = self.timers_rx.recv() => Next::Timeout(t),
                Some((peer, resp)) = self.sync_rx.recv() => Next::Sync(peer, resp),
                _ = tick.tick() => Next::Tick,
                () = build_due => Next::Build,
            };
            // From here to the next wait the driver is busy (`ledger_driver_busy_seconds_total`).
            self.busy_since = Instant::now();
            match next {
                Next::Network(ev) => self.on_network(ev).await?,
                Next::Timeout(t) => self.on_timeout(t).await?,
                Next::Sync(peer, resp) => self.on_sync_response(peer, resp).await?,
                Next::Tick => self.on_tick().await?,
                Next::Build => {
                    self.build_wake = None;
                    self.try_build()?;
                    self.drain().await?;
                }
            }
            self.report();
            self.count_busy(Duration::ZERO);
        }
    }

    /// Publish consensus height/round and peers to the status watch and the metrics (cheap; after every
    /// event).
    fn report(&mut self) {
        let (height, round, n_peers) = (self.consensus.height(), self.consensus.round(), self.connected.len());
        let signer = self.signer_status();
        self.status.send_if_modified(|s| {
            let changed =
                s.consensus_height != height || s.round != round || s.n_peers != n_peers || s.signer != signer;
            s.consensus_height = height;
            s.round = round;
            s.n_peers = n_peers;
            s.signer = signer.clone();
            changed
        });
        let m = &self.shared.metrics;
        m.set_consensus(height.0, round.0);
        m.set_peers(n_peers);
        m.set_signer(signer.mode == "active", signer.mode == "halted", signer.sign_floor);
    }

    fn signer_status(&self) -> SignerStatus {
        let sign_floor = self.consensus.sign_floor().0;
        let validator = self.key_public.filter(|k| self.consensus.validators().index_of(k).is_some());
        if self.signer_file.is_none() {
            return SignerStatus { mode: "full_node", sign_floor, detail: None, validator };
        }
        let mode = match self.consensus.guard() {
            GuardMode::Watching => "watching",
            GuardMode::Suspect { .. } => "suspect",
            GuardMode::Active => "active",
            GuardMode::Halted => "halted",
        };
        let detail = if mode == "active" { None } else { self.guard_detail.clone() };
        SignerStatus { mode, sign_floor, detail, validator }
    }

    /// Count down the start-up watch while connected and caught up; end it when it has run.
    fn advance_watch(&mut self) {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.watch_last);
        self.watch_last = now;
        let Some(left) = self.watch_left else { return };
        if self.connected.is_empty() || self.behind() {
            return;
        }
        let left = left.saturating_sub(elapsed);
        if !left.is_zero() {
            self.watch_left = Some(left);
            return;
        }
        self.watch_left = None;
        if self.consensus.guard() == GuardMode::Watching {
            tracing::info!(
                height = %self.consensus.height(),
                sign_floor = %self.consensus.sign_floor(),
                "double-sign watch over: no other process signs with this key; signing"
            );
            self.guard_detail = None;
        }
        self.queue.push_back(Event::EndWatch);
    }

    /// A message with this validator's key that this process did not sign: make it loud.
    fn on_foreign_signature(&mut self, height: Height, round: Round, step: consensus::SignStep, halted: bool) {
        self.shared.metrics.on_foreign_own_signature();
        let key = self.key_public.map(|k| k.to_address_string()).unwrap_or_default();
        if halted {
            let detail = format!(
                "another process signs with this validator's key {key}: it signed {step:?} at height {height} round {} that this process did not sign. This node stopped signing and only follows the chain; stop one of the two (then restart this one)",
                round.0
            );
            tracing::error!(%height, round = round.0, ?step, validator = %key, "{detail}");
            self.guard_detail = Some(detail);
        } else {
            let detail = format!(
                "a {step:?} at height {height} round {} signed with this validator's key was seen that this process did not sign (its own from before a restart that lost the signer state, or another process): not signing at or below height {height}, and not at all until a whole height passes without another",
                round.0
            );
            tracing::warn!(%height, round = round.0, ?step, validator = %key, "{detail}");
            self.guard_detail = Some(detail);
        }
    }

    fn parent(&self) -> Result<(Height, Hash, u64), DriverError> {
        parent_of(&self.shared)
    }

    /// Feed an event, then every event the resulting actions produce, in order. What the core refuses is
    /// dropped quietly: a bad or stale peer message is an outcome, not an error.
    async fn feed(&mut self, event: Event) -> Result<(), DriverError> {
        self.queue.push_back(event);
        self.drain().await
    }

    async fn drain(&mut self) -> Result<(), DriverError> {
        while let Some(event) = self.queue.pop_front() {
            match self.consensus.handle(event) {
                Ok(actions) => self.execute(actions).await?,
                Err(e) => tracing::debug!(error = %e, "consensus refused an event"),
            }
            // A lone validator under load goes from height to height in one drain, for seconds at a time:
            // its busy time is counted as it goes, not only when the drain ends.
            self.count_busy(BUSY_COUNT_EVERY);
        }
        Ok(())
    }

    /// Add the busy time since `busy_since` to `ledger_driver_busy_seconds_total` if it is at least `min`.
    fn count_busy(&mut self, min: Duration) {
        let now = Instant::now();
        let busy = now.saturating_duration_since(self.busy_since);
        if busy >= min {
            self.shared.metrics.add_driver_busy(busy);
            self.busy_since = now;
        }
    }

    async fn on_network(&mut self, ev: NetworkEvent) -> Result<(), DriverError> {
        match ev {
            NetworkEvent::PeerConnected(p) => {
                self.connected.insert(p);
                if !self.sync.peers.contains(&p) {
                    self.sync.peers.push(p);
                }
            }
            NetworkEvent::PeerDisconnected(p) => {
                self.connected.remove(&p);
                self.sync.peers.retain(|q| *q != p);
            }
            NetworkEvent::Gossip { source, message } => match message {
                GossipMessage::TxBatch(_) => {} // admitted by the validator; a pending build sees it on tick
                GossipMessage::Vote { vote: v, .. } => {
                    self.note_height(source, v.vote.height);
                    self.feed(Event::Vote(v)).await?;
                }
                GossipMessage::Proposal(p) => {
                    let ProposalMessage { proposal, block, .. } = *p;
                    let h = proposal.proposal.height;
                    self.note_height(source, h);
                    let hash = proposal.proposal.block_hash;
                    tracing::debug!(height = %h, round = ?proposal.proposal.round, %hash, n_txs = block.txs.len(), "proposal arrived");
                    match self.candidates.on_block(block) {
                        Arrival::Validate { round } => self.validate(h, round, hash)?,
                        Arrival::CommitDecided => self.commit_decided()?,
                        Arrival::Stored | Arrival::Ignored => {}
                    }
                    self.feed(Event::Proposal(proposal)).await?;
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// A message for a height above ours means the network has committed blocks we lack.
    fn note_height(&mut self, peer: PeerId, height: Height) {
        if height > self.consensus.height() {
            // Heights only count as evidence of being behind if this peer can serve them.
            self.sync.target = self.sync.target.max(Height(height.0 - 1));
            if !self.sync.peers.contains(&peer) {
                self.sync.peers.push(peer);
            }
        }
    }

    async fn on_tick(&mut self) -> Result<(), DriverError> {
        {
            let (len, bytes) = {
                let m = self.shared.mempool();
                (m.len(), m.bytes())
            };
            self.shared.metrics.set_mempool(len, bytes);
        }
        self.shared.metrics.sync_peer_stats(&self.shared.peer_stats);
        self.try_build()?;
        self.release_idle_hold().await?;
        self.maybe_regossip().await;
        self.maybe_sync();
        self.advance_watch();
        self.drain().await
    }

    /// Stuck at a height: send our own signed messages again (all were persisted before the first send),
    /// and the other validators' votes that can still matter ([`Consensus::relay_votes`]), each under a
    /// fresh `resend` number so that gossipsub forwards it instead of dropping it as a duplicate.
    async fn maybe_regossip(&mut self) {
        let now = Instant::now();
        if now < self.last_commit_at + REGOSSIP_AFTER || now < self.last_regossip_at + REGOSSIP_EVERY {
            return;
        }
        self.last_regossip_at = now;
        self.resend = self.resend.wrapping_add(1).max(1);
        let resend = self.resend;
        let own = self.consensus.own_messages();
        let relay = self.consensus.relay_votes();
        let attempted = own.len() + relay.len();
        let mut sent = 0u64;
        for m in own {
            match m {
                SignedMessage::Vote(vote) => {
                    sent += u64::from(self.publish(GossipMessage::Vote { vote, resend }).await);
                }
                SignedMessage::Proposal(proposal) => {
                    if let Some(block) = self.candidates.get(&proposal.proposal.block_hash) {
                        let msg = ProposalMessage { proposal, block: block.clone(), resend };
                        sent += u64::from(self.publish(GossipMessage::Proposal(Box::new(msg))).await);
                    }
                }
            }
        }
        let n_relay = relay.len();
        for vote in relay {
            sent += u64::from(self.publish(GossipMessage::Vote { vote, resend }).await);
        }
        self.resent_total += sent;
        self.shared.metrics.on_consensus_resent(sent);
        if sent == 0 && attempted > 0 && !self.connected.is_empty() {
            // Peers are connected but none took a message: worth an operator's attention (scores, topics).
            tracing::warn!(
                height = %self.consensus.height(),
                round = self.consensus.round().0,
                peers = self.connected.len(),
                "stalled and no consensus message could be re-sent to any peer"
            );
        }
        tracing::debug!(
            height = %self.consensus.height(),
            round = self.consensus.round().0,
            resend,
            relayed = n_relay,
            sent,
            resent_total = self.resent_total,
            "re-gossiped consensus messages"
        );
    }

    /// The catch-up's progress (`None` when not catching up), logged every few seconds while it lasts.
    fn sync_progress(&mut self, catching_up: bool, now: Instant) -> Option<SyncProgress> {
        if !catching_up {
            if let Some((since, from, _)) = self.catch_up.take()
                && self.consensus.height().0.saturating_sub(1) > from.0
            {
                let committed = Height(self.consensus.height().0.saturating_sub(1));
                tracing::info!(
                    height = %committed,
                    blocks = committed.0.saturating_sub(from.0),
                    secs = since.elapsed().as_secs(),
                    "caught up"
                );
            }
            return None;
        }
        let committed = Height(self.consensus.height().0.saturating_sub(1));
        // Peers deciding height `t` have committed `t - 1`.
        let target = Height(self.sync.target.0.saturating_sub(1));
        let (since, from, logged) = *self.catch_up.get_or_insert((now, committed, now));
        let progress = SyncProgress::compute(from, committed, target, now.duration_since(since));
        self.shared.metrics.set_sync_target(progress.target_height.0);
        if now.duration_since(logged) >= SYNC_PROGRESS_LOG_EVERY {
            self.catch_up = Some((since, from, now));
            tracing::info!(
                height = %committed,
                target = %progress.target_height,
                blocks_per_sec = progress.blocks_per_sec_x100 as f64 / 100.0,
                eta_secs = progress.eta_secs,
                "catching up"
            );
        }
        Some(progress)
    }

    fn behind(&self) -> bool {
        self.sync.target >= self.consensus.height() || self.candidates.decided_without_block().is_some()
    }

    fn maybe_sync(&mut self) {
        let behind = self.behind();
        let now = Instant::now();
        self.behind_since = if behind { Some(self.behind_since.unwrap_or(now)) } else { None };
        // One block behind for a moment is the normal race with the fastest peer (it committed first);
        // report catching up when two or more blocks behind, when a decided block is missing, or when
        // behind for longer than that race takes.
        let catching_up = behind
            && (self.sync.target > self.consensus.height()
                || self.candidates.decided_without_block().is_some()
                || self.behind_since.is_some_and(|t| now >= t + CATCHING_UP_AFTER));
        self.shared.metrics.set_catching_up(catching_up);
        let progress = self.sync_progress(catching_up, now);
        self.status.send_if_modified(|s| {
            let changed = s.catching_up != catching_up || s.sync != progress;
            s.catching_up = catching_up;
            s.sync = progress;
            changed
        });
        if !behind || self.sync.peers.is_empty() {
            return;
        }
        if self.sync.in_flight.is_some_and(|t| t.elapsed() < SYNC_RETRY) {
            return;
        }
        let peer = self.sync.peers[self.sync.next_peer % self.sync.peers.len()];
        self.sync.next_peer = self.sync.next_peer.wrapping_add(1);
        self.sync.in_flight = Some(Instant::now());
        let request = SyncRequest { from_height: self.consensus.height(), max_count: SYNC_BLOCKS_MAX };
        let (network, tx) = (self.network.clone(), self.sync_tx.clone());
        tracing::debug!(%peer, from = %request.from_height, "requesting blocks");
        tokio::spawn(async move {
            let resp = network.request_blocks(peer, request).await;
            let _ = tx.send((peer, resp)).await;
        });
    }

    async fn on_sync_response(
        &mut self,
        peer: PeerId,
        resp: Result<SyncResponse, NetError>,
    ) -> Result<(), DriverError> {
        self.sync.in_flight = None;
        let blocks = match resp {
            Ok(r) => r.blocks,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "sync request failed");
                return Ok(());
            }
        };
        if blocks.is_empty() {
            let tip = self.shared.storage.latest_height()?;
            // Peers said they are ahead by more than the race with the fastest one, and this one has no block
            // after our tip: it pruned it. Block sync cannot help if every peer did.
            // A peer that is merely behind answers empty too: only when every peer did, in a row.
            if self.sync.target > tip.next() {
                self.empty_answers = self.empty_answers.saturating_add(1);
            }
            if self.empty_answers >= self.sync.peers.len().max(1)
                && self.pruned_warned.is_none_or(|t| t.elapsed() >= PRUNED_WARN_EVERY)
            {
                self.pruned_warned = Some(Instant::now());
                tracing::warn!(
                    %peer, from = %tip.next(), peers_at = %self.sync.target,
                    "no peer serves the block after this node's tip although peers are ahead: they have likely pruned it (storage.retain_blocks); restart with state_sync.enable = 1 (the node then installs a snapshot) or add a peer that keeps every block"
                );
            }
            // The peer has nothing above our tip: forget the hint it gave.
            self.sync.target = self.sync.target.min(tip);
        } else {
            self.empty_answers = 0;
        }
        for (block, cert) in blocks {
            let height = self.consensus.height();
            let s = &self.shared;
            let set = s.validators_at(height);
            let me = self.key_public.and_then(|k| set.index_of(&k));
            match check_synced(s.chain_id(), &set, height, &block, &cert, me) {
                SyncedBlock::Stale => continue,
                SyncedBlock::Gap => break,
                SyncedBlock::BadCertificate(e) => {
                    tracing::warn!(%peer, %height, error = %e, "peer sent a block with a bad certificate");
                    break;
                }
                SyncedBlock::Apply { signed_by_me } => {
                    // Look-back: this key signed at this height (here or in a life this node forgot).
                    if signed_by_me && height > self.consensus.sign_floor() {
                        self.queue.push_back(Event::RaiseSignFloor(height));
                    }
                }
            }
            let changes = match self.execute_block(&block)? {
                Ok(c) => c,
                Err(reason) => {
                    tracing::warn!(%peer, %height, %reason, "peer sent a certified block that does not apply");
                    break;
                }
            };
            self.commit(&block, &cert, &changes, true)?;
            self.start_next_height(height);
            // NewHeight runs before the next block, so the core's height follows the store's.
            self.drain().await?;
        }
        Ok(())
    }

    /// Execute `block` on committed state. Outer error: storage; inner: the block is invalid.
    fn execute_block(&self, block: &Block) -> Result<Result<StateChanges, String>, DriverError> {
        execute_on(&self.shared, block)
    }

    /// Durable before the broadcasts that follow; a failure stops the validator. The blocks of the signed
    /// proposals it stands for are kept in the database, so a restart can re-broadcast them.
    fn persist_signer(&mut self, state: &SignerState, proposed: &[Hash]) -> Result<(), DriverError> {
        for hash in proposed {
            if let Some(block) = self.candidates.get(hash) {
                self.shared.storage.persist_proposed_block(block)?;
            }
        }
        match &self.signer_file {
            Some(file) => file.store(state)?,
            None => tracing::error!("signer state to persist but no signer file: not a validator"),
        }
        Ok(())
    }

    async fn execute(&mut self, actions: Vec<Action>) -> Result<(), DriverError> {
        // One write for each run of signed messages (`signer_writes`): each still leaves after its state.
        for step in signer_writes::fold(actions) {
            let action = match step {
                Step::Persist { state, proposed } => {
                    self.persist_signer(&state, &proposed)?;
                    continue;
                }
                Step::Act(action) => action,
            };
            match action {
                // `fold` turns every write into a `Step::Persist`; kept so that the match stays total.
                Action::PersistSignerState(state) => {
                    let proposed: Vec<Hash> = signer_writes::proposed_block(&state).into_iter().collect();
                    self.persist_signer(&state, &proposed)?;
                }
                Action::BroadcastProposal(proposal) => {
                    let hash = proposal.proposal.block_hash;
                    match self.candidates.get(&hash) {
                        Some(block) => {
                            let msg = ProposalMessage { proposal, block: block.clone(), resend: 0 };
                            self.publish(GossipMessage::Proposal(Box::new(msg))).await;
                        }
                        // After a restart the block of a re-broadcast proposal is gone; peers will time out
                        // on this round and move on.
                        None => tracing::warn!(%hash, "cannot re-broadcast a proposal without its block"),
                    }
                }
                Action::BroadcastVote(vote) => {
                    tracing::debug!(height = %vote.vote.height, round = ?vote.vote.round, step = ?vote.vote.kind, "voting");
                    self.publish(GossipMessage::Vote { vote, resend: 0 }).await;
                }
                Action::ScheduleTimeout(t) => {
                    let ms = consensus::timeout_duration_ms(self.shared.params(), &t);
                    if t.kind == consensus::TimeoutKind::Propose && t.round == Round(0) {
                        let busy = !self.shared.mempool().is_empty();
                        self.idle = IdleHold::start(t.height, Instant::now(), busy);
                    }
                    let tx = self.timers_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        let _ = tx.send(t).await;
                    });
                }
                Action::BuildBlock { height, round } => {
                    // Built now if transactions wait, else on a later tick; the answer is queued, not fed here.
                    self.pending_build = Some((height, round, Instant::now()));
                    self.try_build()?;
                }
                Action::ValidateBlock { height, round, block_hash } => {
                    // Else validated when a proposal brings it (`Arrival::Validate`).
                    if self.candidates.request_validation(round, block_hash) {
                        self.validate(height, round, block_hash)?;
                    }
                }
                Action::RequestProposal { height, round, block_hash } => {
                    // No fetch protocol for single proposals: a decided block we lack is synced instead.
                    tracing::debug!(%height, ?round, %block_hash, "proposal missing");
                }
                Action::Decide { height, round, block_hash, certificate } => {
                    tracing::debug!(%height, ?round, %block_hash, "decided");
                    let _ = certificate;
                    if self.candidates.on_decided(block_hash) {
                        self.commit_decided()?;
                    } else {
                        tracing::info!(%height, %block_hash, "decided block is missing, syncing it");
                    }
                }
                Action::ForeignSignature { height, round, step, halted } => {
                    self.on_foreign_signature(height, round, step, halted);
                }
                Action::Evidence(e) => {
                    tracing::warn!(evidence = ?e, "evidence: validator misbehaviour detected");
                    if let Evidence::DoubleVote { first, second } = &e {
                        self.offer_evidence(ledger_core::governance::Evidence::new(first.clone(), second.clone()));
                    }
                    let mut ev = self.shared.evidence.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    if ev.len() < EVIDENCE_MAX {
                        ev.push(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// Publish; true if the message went out.
    async fn publish(&self, msg: GossipMessage) -> bool {
        match self.network.publish(msg).await {
            Ok(()) => true,
            Err(NetError::NoPeers | NetError::Duplicate) => false,
            Err(e) => {
                tracing::warn!(error = %e, "publish failed");
                false
            }
        }
    }

    /// A fired timer: fed to the core, except a round-0 propose timeout held back while idle ([`IdleHold`]).
    async fn on_timeout(&mut self, t: Timeout) -> Result<(), DriverError> {
        if t.kind == consensus::TimeoutKind::Propose && t.round == Round(0) && self.idle.holds(t.height) {
            let interval = Duration::from_millis(self.opts.empty_block_interval_ms);
            let propose = Duration::from_millis(consensus::timeout_duration_ms(self.shared.params(), &t));
            if Instant::now() < self.idle.deadline(propose, interval) {
                self.idle.held = Some(t);
                return Ok(());
            }
        }
        self.feed(Event::TimeoutFired(t)).await
    }

    /// On tick: note the first transaction of the height, and feed a held propose timeout once due.
    async fn release_idle_hold(&mut self) -> Result<(), DriverError> {
        if self.idle.first_tx.is_none() && !self.shared.mempool().is_empty() {
            self.idle.first_tx = Some(Instant::now());
        }
        let Some(t) = self.idle.held else { return Ok(()) };
        if t.height != self.consensus.height() {
            self.idle.held = None;
            return Ok(());
        }
        let interval = Duration::from_millis(self.opts.empty_block_interval_ms);
        let propose = Duration::from_millis(consensus::timeout_duration_ms(self.shared.params(), &t));
        if Instant::now() >= self.idle.deadline(propose, interval) {
            self.idle.held = None;
            self.feed(Event::TimeoutFired(t)).await?;
        }
        Ok(())
    }

    /// Answer a pending BuildBlock: with transactions as soon as some apply; with an empty block once the
    /// empty-block interval since the last commit has passed, or half the propose timeout since asked.
    fn try_build(&mut self) -> Result<(), DriverError> {
        let Some((height, round, since)) = self.pending_build else { return Ok(()) };
        if height != self.consensus.height() {
            self.pending_build = None;
            return Ok(());
        }
        let params = self.shared.params();
        let propose_ms =
            params.timeout_propose_ms.saturating_add(u64::from(round.0).saturating_mul(params.timeout_delta_ms));
        let now = Instant::now();
        let waited_enough = now >= since + Duration::from_millis(propose_ms / 2);
        // Idle in round 0: the others hold their propose timeout back for the interval (`IdleHold`), so the
        // proposer waits the whole interval. With transactions that cannot apply yet, or in a later round,
        // the others' timeouts run as usual: propose within half of it.
        // A node that refuses transactions for its disk has an empty pool while the others may not: it is
        // not idle in their eyes, so it proposes as in a later round.
        let idle_round0 = {
            let pool = self.shared.mempool();
            round == Round(0) && pool.is_empty() && pool.disk_refusal().is_none()
        };
        let empty_due = now >= self.last_commit_at + Duration::from_millis(self.opts.empty_block_interval_ms)
            || (waited_enough && !idle_round0);
        let min_interval = self.opts.min_block_interval_ms.unwrap_or(if self.shared.current_validators().len() > 1 {
            DEFAULT_MIN_BLOCK_INTERVAL_MS
        } else {
            0
        });
        let interval_over = self.last_commit_at + Duration::from_millis(min_interval);
        if !waited_enough && now < interval_over {
            self.build_wake = Some(interval_over);
            return Ok(());
        }
        if !empty_due && self.shared.mempool().is_empty() {
            return Ok(());
        }
        let Some(built) = self.build(height)? else {
            self.pending_build = None;
            return Ok(());
        };
        // Only transactions that cannot apply yet (nonce gaps) wait: no reason to propose before the interval.
        if built.block.txs.is_empty() && !empty_due {
            return Ok(());
        }
        self.pending_build = None;
        let n_txs = built.block.txs.len();
        let hash = self.candidates.insert_built(built.block, built.changes);
        tracing::debug!(%height, ?round, %hash, n_txs, "built block");
        self.queue.push_back(Event::ProposalValue { height, round, block_hash: hash });
        Ok(())
    }

    fn build(&mut self, height: Height) -> Result<Option<ledger_core::state::BuiltBlock>, DriverError> {
        let (ph, phash, pts) = self.parent()?;
        let last_commit = if ph == Height::GENESIS {
            None
        } else {
            self.consensus.commit_certificate(ph).or(self.shared.storage.certificate(ph)?)
        };
        let Some(proposer) = self.key_public else { return Ok(None) };
        let (approvals, evidence) = self.shared.ops().candidates();
        let template = BlockTemplate {
            parent: Parent { height: ph, hash: phash, timestamp_ms: pts, chain_id: self.shared.chain_id() },
            proposer,
            timestamp_ms: now_ms(),
            last_commit,
            approvals,
            evidence,
        };
        let tree = self.shared.storage.tree()?;
        let gov = self.shared.storage.gov_state()?;
        let s = &self.shared;
        let limit = self.opts.build_txs_max.min(s.params().txs_per_block_max as usize);
        let built = build_from_pool(&s.mempool, &s.storage, &tree, &gov, template, s.params(), limit)?;
        debug_assert_eq!(built.block.height(), height);
        Ok(Some(built))
    }

    /// Judge a candidate for the core (`Candidates::validate`: not from the future, executes once).
    fn validate(&mut self, height: Height, round: Round, hash: Hash) -> Result<(), DriverError> {
        let shared = &self.shared;
        let started = std::time::Instant::now();
        let Some(verdict) = self.candidates.validate(&hash, now_ms(), |b| execute_on(shared, b))? else {
            return Ok(());
        };
        tracing::debug!(%height, ?round, %hash, elapsed_ms = started.elapsed().as_millis() as u64, "validated block");
        let valid = match verdict {
            Validity::Valid => true,
            Validity::Invalid(reason) => {
                tracing::info!(%height, ?round, %hash, %reason, "proposed block is invalid");
                false
            }
        };
        self.queue.push_back(Event::BlockValidity { height, round, block_hash: hash, valid });
        Ok(())
    }

    /// Commit the decided block of the current height (its block is among the candidates).
    fn commit_decided(&mut self) -> Result<(), DriverError> {
        let height = self.consensus.height();
        let Some((_, hash)) = self.consensus.decision() else { return Ok(()) };
        let Some(cert) = self.consensus.commit_certificate(height) else { return Ok(()) };
        // Taken out: the table is cleared for the next height anyway, and an error here stops the driver.
        let shared = &self.shared;
        let Some((block, changes)) = self.candidates.take_decided(&hash, |b| execute_on(shared, b))? else {
            return Ok(());
        };
        let changes = changes.map_err(|reason| DriverError::DecidedBlockInvalid { height, reason })?;
        self.commit(&block, &cert, &changes, false)?;
        self.start_next_height(height);
        Ok(())
    }

    /// Durable commit, then mempool, then metrics, then status, then the block event.
    fn commit(
        &mut self,
        block: &Block,
        cert: &CommitCertificate,
        changes: &StateChanges,
        synced: bool,
    ) -> Result<(), DriverError> {
        let height = block.height();
        let hash = block.hash();
        let started = std::time::Instant::now();
        // The previous commit's mark is durable before this block is (the mark trails by one block at most).
        self.high_water.settle()?;
        self.shared.storage.commit_block(block, cert, changes)?;
        tracing::debug!(height = height.0, elapsed_ms = started.elapsed().as_millis() as u64, "stored block");
        self.high_water.raise(high_water::Mark { height, block_hash: hash })?;
        let ids = block.tx_ids();
        let now = std::time::Instant::now();
        let (latencies, pool_len, pool_bytes) = {
            let mut mempool = self.shared.mempool();
            // Admission-to-commit latency of the transactions this node admitted (cheap: one lookup each).
            let latencies: Vec<Duration> =
                ids.iter().filter_map(|id| mempool.admitted_at(id)).map(|t| now.saturating_duration_since(t)).collect();
            mempool.on_block_committed(height, block.header.timestamp_ms, &block.txs, &self.shared.storage);
            (latencies, mempool.len(), mempool.bytes())
        };
        let metrics = &self.shared.metrics;
        metrics.set_mempool(pool_len, pool_bytes);
        metrics.on_block_committed(height.0, ids.len(), block.header.timestamp_ms);
        for l in latencies {
            metrics.observe_commit_latency(l);
        }
        self.last_commit_at = Instant::now();
        let hash_hex = hash.to_hex();
        let short = hash_hex.get(..12).unwrap_or(&hash_hex);
        let summarise = ids.is_empty() && self.opts.idle_summary_interval_ms > 0;
        if summarise {
            let every = Duration::from_millis(self.opts.idle_summary_interval_ms);
            if let Some(s) = self.empty_blocks.on_empty(height, cert.round, self.last_commit_at, every) {
                tracing::info!(
                    blocks = s.blocks,
                    from = s.first.0,
                    to = s.last.0,
                    seconds = s.elapsed.as_secs(),
                    rounds_above_0 = s.late_rounds,
                    "committed empty blocks"
                );
            }
        } else if synced {
            // A catch-up commits hundreds of blocks a second; its progress line (every few seconds) says how
            // it goes.
            tracing::debug!(
                height = height.0,
                hash = short,
                txs = ids.len(),
                round = cert.round.0,
                via = "sync",
                "committed block"
            );
        } else {
            tracing::info!(
                height = height.0,
                hash = short,
                txs = ids.len(),
                round = cert.round.0,
                via = "consensus",
                "committed block"
            );
        }
        let next = height.next();
        let local_ms = now_ms();
        self.status.send_modify(|s| {
            s.last_commit_local_ms = local_ms;
            s.height = height;
            s.latest_block_hash = Some(hash);
            s.latest_block_time_ms = block.header.timestamp_ms;
            if s.consensus_height <= height {
                s.consensus_height = next;
                s.round = Round(0);
            }
        });
        let _ =
            self.shared.blocks.send(BlockEvent { block: Arc::new(block.clone()), certificate: Arc::new(cert.clone()) });
        Ok(())
    }

    /// Queue the next height; stale internal events of the old height are refused by the core.
    fn start_next_height(&mut self, committed: Height) {
        self.candidates.start_height(committed.next());
        self.pending_build = None;
        let validators = (*self.shared.validators_at(committed.next())).clone();
        self.maybe_rotate(committed.next(), &validators);
        self.queue.push_back(Event::NewHeight { height: committed.next(), validators });
        if let Ok(gov) = self.shared.storage.gov_state() {
            self.shared.ops().prune(&gov, committed.next());
        }
    }

    /// A key rotation that takes effect at `height`: the set no longer holds this node's key and holds the
    /// key in `next_validator_key_file`. Queue [`Event::ReplaceKey`] (before `NewHeight`) with that key's
    /// own signer state, so the node signs `height` with the new key, without a restart or a gap. The old
    /// key's signer state stays in its file (a database rewound below `height` meets it again).
    fn maybe_rotate(&mut self, height: Height, validators: &ValidatorSet) {
        let Some((key_file, data_dir)) = self.next_key.clone() else { return };
        if self.key_public.is_some_and(|k| validators.index_of(&k).is_some()) {
            return;
        }
        let key = match crate::keys::load_validator_key(&key_file) {
            Ok(Some(k)) => k,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(path = %key_file.display(), error = %e, "cannot read next_validator_key_file");
                return;
            }
        };
        let new = key.public();
        if Some(new) == self.key_public || validators.index_of(&new).is_none() {
            return;
        }
        let file = SignerFile::for_next_key(&data_dir, self.shared.chain_id(), new);
        let state = match file.load() {
            Ok(s) => s.unwrap_or_default(),
            Err(e) => {
                tracing::error!(error = %e, "the next key is in the set from height {height}, but its signer state cannot be used: not signing with it");
                return;
            }
        };
        let old = self.key_public.map(|k| k.to_address_string()).unwrap_or_default();
        tracing::warn!(
            %height,
            old = %old,
            new = %new.to_address_string(),
            signer_state = %file.path().display(),
            "key rotation: from height {height} this node signs with the key in {}; the old key's signer state is kept",
            key_file.display()
        );
        self.signer_file = Some(file);
        self.key_public = Some(new);
        self.queue.push_back(Event::ReplaceKey { key, signer: state });
    }

    /// Keep equivocation evidence for this node's next proposals (and the API).
    fn offer_evidence(&self, e: ledger_core::governance::Evidence) {
        let s = &self.shared;
        let Ok(tip) = s.storage.latest_height() else { return };
        let Ok(gov) = s.storage.gov_state() else { return };
        let height = crate::ops::OpsPool::evidence_height(tip.next(), &e);
        match s.ops().add_evidence(&gov, s.chain_id(), height, e) {
            Ok(true) => tracing::warn!("equivocation evidence queued for the next block this node proposes"),
            Ok(false) => {}
            Err(err) => tracing::info!(error = %err, "equivocation evidence not kept"),
        }
    }
}

/// The parent of the next block: the committed tip (or the genesis), as (height, hash, timestamp).
fn parent_of(shared: &Shared) -> Result<(Height, Hash, u64), DriverError> {
    let tip = shared.storage.latest_height()?;
    if tip == Height::GENESIS {
        return Ok((tip, shared.genesis.hash(), shared.genesis.genesis_time_ms));
    }
    // The header alone: decoding the tip's transactions (and their ids) only to hash its header cost ~2.5 %
    // of a validator's CPU under load.
    let h = shared.storage.header(tip)?.ok_or_else(|| StorageError::Corrupt {
        what: format!("block {tip}"),
        detail: "the tip block is missing".into(),
    })?;
    Ok((tip, h.hash(), h.timestamp_ms))
}

/// The first `resend` number of a run: the clock in seconds, so that a restarted node does not repeat the
/// numbers of its previous run, with a byte of this node's peer id on top, so that validators restarted in
/// the same second do not re-gossip in lockstep. With equal numbers, a vote one node relays and the copy its
/// author re-sends are the same bytes, and a peer that ignored the first (its height was not there yet)
/// drops every later one as a duplicate: four validators restarted at once once stalled that way.
fn resend_start(now_ms: u64, peer: &PeerId) -> u32 {
    let tag = peer.to_bytes().last().copied().unwrap_or(0);
    (((now_ms / 1000) as u32) & 0x00FF_FFFF) | (u32::from(tag) << 24)
}

/// Execute `block` on committed state. Outer error: storage; inner: the block is invalid.
fn execute_on(shared: &Shared, block: &Block) -> Result<Result<StateChanges, String>, DriverError> {
    let (ph, phash, pts) = parent_of(shared)?;
    let parent = Parent { height: ph, hash: phash, timestamp_ms: pts, chain_id: shared.chain_id() };
    let tree = shared.storage.tree()?;
    let gov = shared.storage.gov_state()?;
    let s = shared;
    Ok(execute_with_pool(&s.mempool, &s.storage, &tree, &gov, block, &parent, s.params(), &s.keys)?)
}

/// A validated genesis always has a valid set; this is for the type checker only.
#[cold]
fn unreachable_set(genesis: &Genesis) -> ValidatorSet {
    tracing::error!(chain_id = %genesis.chain_id, "the genesis validator set does not validate");
    std::process::abort()
}

#[cfg(test)]
mod sync_progress_tests {
    use super::*;

    #[test]
    fn progress_has_a_rate_and_a_time_left_once_a_second_has_passed() {
        let p = SyncProgress::compute(Height(100), Height(100), Height(1_000), Duration::from_millis(300));
        assert_eq!((p.target_height, p.blocks_per_sec_x100, p.eta_secs), (Height(1_000), 0, None));
        // 300 blocks in 2 s: 150 blocks/s, 600 left: 4 s.
        let p = SyncProgress::compute(Height(100), Height(400), Height(1_000), Duration::from_secs(2));
        assert_eq!((p.blocks_per_sec_x100, p.eta_secs), (15_000, Some(4)));
        // Peers seen below the committed height (a stale view): nothing left.
        let p = SyncProgress::compute(Height(100), Height(400), Height(300), Duration::from_secs(2));
        assert_eq!((p.target_height, p.eta_secs), (Height(400), Some(0)));
    }
}

#[cfg(test)]
mod idle_tests {
    use super::*;

    const PROPOSE: Duration = Duration::from_millis(1_000);
    const INTERVAL: Duration = Duration::from_millis(3_000);

    #[test]
    fn an_idle_height_holds_the_propose_timeout_for_the_interval() {
        let t0 = Instant::now();
        let idle = IdleHold::start(Height(7), t0, false);
        assert!(idle.holds(Height(7)));
        assert!(!idle.holds(Height(8)), "another height's timeout is never held");
        assert_eq!(idle.deadline(PROPOSE, INTERVAL), t0 + PROPOSE + INTERVAL);
    }

    #[test]
    fn a_transaction_gives_the_proposer_one_propose_timeout_from_then() {
        let t0 = Instant::now();
        let mut idle = IdleHold::start(Height(7), t0, false);
        idle.first_tx = Some(t0 + Duration::from_millis(500));
        assert_eq!(idle.deadline(PROPOSE, INTERVAL), t0 + Duration::from_millis(1_500));
        // Late in the interval: the idle deadline comes first.
        idle.first_tx = Some(t0 + Duration::from_millis(3_900));
        assert_eq!(idle.deadline(PROPOSE, INTERVAL), t0 + PROPOSE + INTERVAL);
        // Busy from the start: the usual propose timeout, nothing is held.
        let busy = IdleHold::start(Height(7), t0, true);
        assert_eq!(busy.deadline(PROPOSE, INTERVAL), t0 + PROPOSE);
    }

    #[test]
    fn empty_blocks_are_summarised_once_per_interval() {
        let every = Duration::from_secs(60);
        let t0 = Instant::now();
        let mut log = EmptyBlockLog::new();
        let first = log.on_empty(Height(1), Round(1), t0, every).expect("the first empty block is logged at once");
        assert_eq!((first.blocks, first.first, first.last, first.late_rounds), (1, Height(1), Height(1), 1));
        for h in 2..=60u64 {
            let at = t0 + Duration::from_secs(h - 1);
            assert_eq!(log.on_empty(Height(h), Round(0), at, every), None, "height {h}");
        }
        let s = log.on_empty(Height(61), Round(0), t0 + every, every).expect("a summary after the interval");
        assert_eq!((s.blocks, s.first, s.last, s.late_rounds, s.elapsed), (60, Height(2), Height(61), 0, every));
        assert_eq!(log.on_empty(Height(62), Round(0), t0 + every + Duration::from_secs(1), every), None);
    }
}
