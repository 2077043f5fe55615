//! The mempool: transactions waiting for a block.
//!
//! Admission runs the cheap checks first and the signature check (~35 µs) last, once per transaction: every
//! pooled transaction is verified, so block validation passes `verified = |id| mempool.known_good(id)`
//! and does not verify again. The pool is bounded in count, bytes and per sender; pending transactions are
//! ordered per sender by nonce and all together by arrival. [`Mempool::take_for_block`] takes the oldest
//! first (a transaction whose lower nonce arrived later follows it), so a transaction waits for the ones
//! admitted before it and no longer: under a full block the wait is bounded by the pool's depth in blocks.
//! No sender can starve the others (each sender's share of a block is its share of admissions, which the
//! per-sender limit bounds), and every node with the same pool picks the same candidates.
//!
//! Every rejection and eviction is recorded with a stable reason code (a [`TxError::code`] or one of the
//! `mempool_*` codes below) in a bounded map of recent refusals, for the API to report later. Ids that left
//! the pool in a block, or were checked in a proposed block, are remembered apart (without a message) so
//! that their late gossip copies cost a lookup instead of a signature check (the API asks storage first for a
//! transaction's status; this pool answers `Committed` only for recent ones).
//!
//! **Invariant:** nothing here iterates a hash map; all collections that decide order are `BTreeMap`s. The
//! maps keyed by transaction id or sender (`by_id`, `by_sender`, `refusals`, `recent`) are hash maps with a
//! per-process random seed and are only ever looked up. Where any client can add keys for free (`by_sender`'s
//! addresses, `refusals`' ids of refused transactions, whose bytes need not carry a valid signature) the
//! hash is std's SipHash; where each key costs a transaction that passed its signature check (`by_id`, the
//! pool; `recent`, committed or checked in a block) it is foldhash, which is faster and resists collisions
//! only while its seed is unknown ([`IdMap`]).
//!
//! Costs: every pooled transaction passes through here about ten times (admission, block validation,
//! commit), so the structures are chosen for lookups that touch little memory: a pending transaction's
//! outcome is its presence in `by_id` (not a second map entry), a sender's pending nonces carry what each
//! spends (a commit re-checks a sender without looking up its transactions), and the expiry index is keyed
//! by admission number, not by id.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use ledger_core::{Account, AccountStore, Address, ConsensusParams, Height, SignedTransaction, TxError, TxId};

/// Mempool rejection codes that are not transaction errors.
pub mod code {
    pub const MEMPOOL_FULL: &str = "mempool_full";
    pub const DUPLICATE: &str = "duplicate";
    pub const NONCE_TOO_FAR_AHEAD: &str = "nonce_too_far_ahead";
    pub const NONCE_GAP_UNDER_LOAD: &str = "nonce_gap_under_load";
    pub const SENDER_LIMIT: &str = "sender_limit";
    pub const STORAGE: &str = "storage_error";
}

/// Ids per generation of the ids known good without being pooled (committed here, or checked in a proposed
/// block: [`Mempool::note_checked`]); between one and two generations are remembered. 7/8 of 2^16, so a
/// generation's table is exactly 2^16 buckets (~3 MiB).
pub const RECENT_IDS_GENERATION: usize = 57_344;

/// Limits, from the `[mempool]` config section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MempoolLimits {
    pub max_txs: usize,
    pub max_bytes: usize,
    pub max_per_sender: usize,
    pub max_nonce_gap: u64,
    /// How many recent refusals (rejections and evictions, with their reasons) are remembered: between half of
    /// this and all of it, as two generations of `max_outcomes / 2` (at least 1) of which the older is
    /// forgotten at once.
    pub max_outcomes: usize,
    /// Above this fill (percent of what the pool takes from clients, [`Mempool::admit_max_txs`], or of
    /// `max_bytes`), only a transaction that can go into the next
    /// block (its nonce follows the account's and the sender's pending ones without a gap) is admitted.
    /// When a full pool refuses a sender's transaction, the sender's later ones would otherwise be admitted
    /// behind the gap and hold room that executable ones need until they expire; refused instead, the
    /// client resends them in order. 100 turns the rule off.
    pub gapped_below_fill_percent: u8,
    /// The pool takes in at most what the network commits in this many milliseconds at its recent pace
    /// (header timestamps and sizes of the last [`PACE_BLOCKS`] blocks), never less than
    /// `drain_floor_txs` nor more than `max_txs`: an admitted transaction waits about this long for a block,
    /// and under overload the excess is refused at the door (429 `mempool_full`, retry later) instead of
    /// queueing for tens of seconds. 0 turns the pace limit off (only `max_txs` applies).
    pub drain_target_ms: u64,
    /// The least the pace limit allows (a block's worth, so a quiet network still takes a burst).
    pub drain_floor_txs: usize,
}

/// What a client batch's precheck does with one input ([`Mempool::plan_client_checks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Known good: no check.
    Known,
    /// Refused by a cheap check or beyond the pool's room: not verified; admission decides (and verifies it
    /// itself if the pool changed meanwhile and it now passes).
    Refused,
    /// Verified (in one batch with the others).
    Verify,
}

/// Where a transaction comes from: a client of this node (API), or a peer relaying one a client of
/// another node was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Client,
    Peer,
}

/// How many recent blocks set the pace of [`MempoolLimits::drain_target_ms`].
pub const PACE_BLOCKS: usize = 16;

impl Default for MempoolLimits {
    fn default() -> Self {
        MempoolLimits {
            max_txs: 50_000,
            max_bytes: 32 * 1024 * 1024,
            max_per_sender: 1024,
            max_nonce_gap: 64,
            max_outcomes: 100_000,
            gapped_below_fill_percent: 50,
            drain_target_ms: 600,
            drain_floor_txs: 4096,
        }
    }
}

/// Why a transaction was refused or dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MempoolError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error("mempool is full ({what})")]
    Full { what: &'static str },
    #[error("transaction is already known")]
    Duplicate,
    #[error("sender already has a pending transaction with nonce {nonce}")]
    NonceTaken { nonce: u64 },
    #[error("nonce {got} is more than {max_gap} ahead of the account nonce {account}")]
    NonceTooFarAhead { account: u64, got: u64, max_gap: u64 },
    #[error(
        "the pool is under load: only nonce {next} of this sender can be admitted now (got {got}); resend in order"
    )]
    NonceGapUnderLoad { next: u64, got: u64 },
    #[error("sender has {pending} pending transactions, limit is {max}")]
    SenderLimit { pending: usize, max: usize },
    #[error("storage failure: {0}")]
    Storage(String),
    /// Past the disk's free-space floor or the data directory's byte budget ([`crate::storage::disk`]).
    #[error("{message}")]
    Disk { code: &'static str, message: String },
}

impl MempoolError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            MempoolError::Tx(e) => e.code(),
            MempoolError::Full { .. } => code::MEMPOOL_FULL,
            MempoolError::Duplicate | MempoolError::NonceTaken { .. } => code::DUPLICATE,
            MempoolError::NonceTooFarAhead { .. } => code::NONCE_TOO_FAR_AHEAD,
            MempoolError::NonceGapUnderLoad { .. } => code::NONCE_GAP_UNDER_LOAD,
            MempoolError::SenderLimit { .. } => code::SENDER_LIMIT,
            MempoolError::Storage(_) => code::STORAGE,
            MempoolError::Disk { code, .. } => code,
        }
    }
}

/// What happened to a transaction the mempool has seen recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    Pending,
    Rejected { code: &'static str, message: String },
    Evicted { code: &'static str, message: String },
    Committed { height: Height },
}

struct Entry {
    tx: SignedTransaction,
    bytes: usize,
    /// When it was admitted (for the commit-latency metric only; never decides anything).
    admitted_at: std::time::Instant,
    /// Admission order: its key in `by_arrival`.
    seq: u64,
}

/// The mempool. Owned by one task (the driver); not internally synchronised.
pub struct Mempool {
    chain_id: String,
    params: ConsensusParams,
    limits: MempoolLimits,
    by_id: IdMap<Entry>,
    /// Pending ids per sender, by nonce, with what they spend.
    by_sender: HashMap<Address, Pending>,
    /// Pending admissions (`Entry::seq`) by expiry height, so a commit finds the expired ones without
    /// scanning the pool.
    by_expiry: BTreeSet<(u64, u64)>,
    bytes: usize,
    /// Refusals (`Rejected`, `Evicted`) of transactions that left the pool or never entered it (a pooled
    /// one's outcome is `Pending`, from `by_id`; a committed one's is in `recent`, and here too when it was
    /// refused before).
    refusals: Generations<TxOutcome, std::hash::RandomState>,
    /// Ids known good without being pooled: committed here, or noted by [`Mempool::note_checked`].
    recent: Generations<Recent, foldhash::fast::RandomState>,
    /// Pending ids in admission order (`Entry::seq`), oldest first: the order blocks take them in.
    by_arrival: BTreeMap<u64, TxId>,
    next_seq: u64,
    /// (header timestamp ms, transactions) of the last [`PACE_BLOCKS`] committed blocks, oldest first.
    pace: VecDeque<(u64, u64)>,
    /// Set while the disk is past a limit: every admission is refused with it.
    disk: Option<crate::storage::disk::DiskRefusal>,
}

impl Mempool {
    pub fn new(chain_id: &str, params: ConsensusParams, limits: MempoolLimits) -> Mempool {
        let refusal_generation = (limits.max_outcomes / 2).max(1);
        Mempool {
            chain_id: chain_id.to_string(),
            params,
            limits,
            by_id: IdMap::default(),
            by_sender: HashMap::new(),
            by_expiry: BTreeSet::new(),
            bytes: 0,
            refusals: Generations::new(refusal_generation),
            recent: Generations::new(RECENT_IDS_GENERATION),
            by_arrival: BTreeMap::new(),
            next_seq: 0,
            pace: VecDeque::with_capacity(PACE_BLOCKS + 1),
            disk: None,
        }
    }

    /// Refuse every admission with `refusal` while it is set (the housekeeper sets it from the disk's
    /// measurements). A running node sets it through `Shared::set_disk_refusal`, which also tells the API's
    /// door.
    pub fn set_disk_refusal(&mut self, refusal: Option<crate::storage::disk::DiskRefusal>) {
        self.disk = refusal;
    }

    pub fn disk_refusal(&self) -> Option<&crate::storage::disk::DiskRefusal> {
        self.disk.as_ref()
    }

    /// Room for a client's transaction: below [`Mempool::admit_max_txs`].
    pub fn admission_open(&self) -> bool {
        self.by_id.len() < self.admit_max_txs()
    }

    /// How many more client transactions the pool takes now (count only; the byte limit and the per-sender
    /// checks still apply to each): what a batch's precheck spends signature checks on at most.
    pub fn client_room(&self) -> usize {
        self.admit_max_txs().saturating_sub(self.by_id.len())
    }

    /// Record a committed block's header timestamp and size: the pace [`Mempool::admit_max_txs`] follows.
    fn on_block_pace(&mut self, timestamp_ms: u64, txs: usize) {
        self.pace.push_back((timestamp_ms, txs as u64));
        while self.pace.len() > PACE_BLOCKS {
            self.pace.pop_front();
        }
    }

    /// The most transactions the pool admits from clients now: `max_txs`, or with the pace limit on, what
    /// the last blocks committed per `drain_target_ms` (at least `drain_floor_txs`, which is also the limit
    /// until four blocks have set a pace).
    pub fn admit_max_txs(&self) -> usize {
        let max = self.limits.max_txs;
        if self.limits.drain_target_ms == 0 {
            return max;
        }
        if self.pace.len() < 4 {
            // No pace yet (a node that just started): a block's worth, not a backlog of unknown length.
            return self.limits.drain_floor_txs.min(max);
        }
        let (Some(&(first, _)), Some(&(last, _))) = (self.pace.front(), self.pace.back()) else { return max };
        let span_ms = last.saturating_sub(first).max(1);
        // The first block's transactions were committed before the span began.
        let txs: u64 = self.pace.iter().skip(1).map(|&(_, n)| n).sum();
        let paced = u128::from(txs) * u128::from(self.limits.drain_target_ms) / u128::from(span_ms);
        let paced = usize::try_from(paced).unwrap_or(usize::MAX);
        paced.max(self.limits.drain_floor_txs).min(max)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn contains(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id)
    }

    /// Whether `id`'s keys and signature are known good without checking: it is pooled (checked on
    /// admission), recently committed (checked before its block was accepted) or noted by
    /// [`Mempool::note_checked`]. The id covers the
    /// signature, so the same id means the same bytes. Transactions that arrive again by gossip after
    /// their commit (common under load) then cost a lookup instead of a signature check.
    pub fn known_good(&self, id: &TxId) -> bool {
        self.by_id.contains_key(id) || self.recent.get(id).is_some()
    }

    /// Remember ids whose keys and signatures were checked outside the pool (in a proposed block that
    /// executed), so their gossip copies are not checked again. Bounded: the oldest are forgotten first.
    pub fn note_checked(&mut self, ids: impl IntoIterator<Item = TxId>) {
        for id in ids {
            // A committed id stays committed.
            if self.recent.get(&id).is_none() {
                self.recent.insert(id, Recent::Checked);
            }
        }
    }

    /// What happened to `id`, as far as this pool knows (a committed transaction's status comes from
    /// storage; this answers `Committed` only for a recent one).
    pub fn outcome(&self, id: &TxId) -> Option<TxOutcome> {
        if self.by_id.contains_key(id) {
            return Some(TxOutcome::Pending);
        }
        match self.recent.get(id) {
            Some(&Recent::Committed(height)) => Some(TxOutcome::Committed { height }),
            _ => self.refusals.get(id).cloned(),
        }
    }

    /// When the pending transaction `id` was admitted here.
    pub fn admitted_at(&self, id: &TxId) -> Option<std::time::Instant> {
        self.by_id.get(id).map(|e| e.admitted_at)
    }

    /// The nonces of `sender`'s pending transactions, ascending.
    pub fn pending_nonces(&self, sender: &Address) -> Vec<u64> {
        self.by_sender.get(sender).map(|p| p.nonces.keys().copied().collect()).unwrap_or_default()
    }

    /// The nonce `sender`'s next transaction should use: `committed_nonce` plus the number of consecutive
    /// pending nonces from it (a gap ends the run).
    pub fn next_nonce(&self, sender: &Address, committed_nonce: u64) -> u64 {
        let mut next = committed_nonce;
        if let Some(p) = self.by_sender.get(sender) {
            for nonce in p.nonces.range(committed_nonce..).map(|(n, _)| *n) {
                if nonce != next {
                    break;
                }
                next = next.saturating_add(1);
            }
        }
        next
    }

    /// Decode and admit raw bytes (from the API or a gossip batch).
    pub fn add_bytes<S: AccountStore + ?Sized>(
        &mut self,
        bytes: &[u8],
        store: &S,
        committed_height: Height,
    ) -> Result<TxId, MempoolError> {
        let tx = SignedTransaction::decode(bytes, self.params.tx_bytes_max as usize)?;
        self.add(tx, store, committed_height)
    }

    /// Admit a transaction against committed state at `committed_height` (it must fit the next block).
    pub fn add<S: AccountStore + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        store: &S,
        committed_height: Height,
    ) -> Result<TxId, MempoolError> {
        self.add_inner(tx, None, store, committed_height, Source::Client)
    }

    /// [`Mempool::add`] for a transaction whose keys and signature the caller already checked with
    /// [`SignedTransaction::check_keys_and_signature`] (the ~45 µs part of admission), without holding
    /// the mempool lock; `keys_and_signature` is that check's result. Everything else is checked here, in
    /// the same order as `add`, so the reason recorded for a rejection is the same.
    pub fn add_prechecked<S: AccountStore + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        keys_and_signature: Result<(), TxError>,
        store: &S,
        committed_height: Height,
    ) -> Result<TxId, MempoolError> {
        self.add_inner(tx, Some(keys_and_signature), store, committed_height, Source::Client)
    }

    /// [`Mempool::add_prechecked`] for a transaction a peer relayed: the pace limit
    /// ([`MempoolLimits::drain_target_ms`]) does not apply, only `max_txs` and `max_bytes`. What a client
    /// of any node was admitted reaches every pool, so any proposer can include it; the pace is kept at the
    /// doors where clients come in.
    pub fn add_relayed_prechecked<S: AccountStore + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        keys_and_signature: Result<(), TxError>,
        store: &S,
        committed_height: Height,
    ) -> Result<TxId, MempoolError> {
        self.add_inner(tx, Some(keys_and_signature), store, committed_height, Source::Peer)
    }

    fn add_inner<S: AccountStore + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        precheck: Option<Result<(), TxError>>,
        store: &S,
        committed_height: Height,
        source: Source,
    ) -> Result<TxId, MempoolError> {
        let id = tx.id();
        if let Some(d) = &self.disk {
            return Err(MempoolError::Disk { code: d.code, message: d.message.clone() });
        }
        let result = self.admit(tx, precheck, store, committed_height, source);
        match &result {
            // Pending while it is pooled: `outcome` answers from `by_id`.
            Ok(()) => {}
            // A duplicate says nothing new about the first copy: keep its outcome.
            Err(MempoolError::Duplicate) => {}
            Err(e) => self.record(id, TxOutcome::Rejected { code: e.code(), message: e.to_string() }),
        }
        result.map(|()| id)
    }

    /// Record that `id` was refused for `error` without offering it to the pool (a forged transaction in a
    /// gossip batch that is refused whole).
    pub fn record_refused(&mut self, id: TxId, error: &TxError) {
        self.record(id, TxOutcome::Rejected { code: error.code(), message: error.to_string() });
    }

    fn admit<S: AccountStore + ?Sized>(
        &mut self,
        tx: SignedTransaction,
        precheck: Option<Result<(), TxError>>,
        store: &S,
        committed_height: Height,
        source: Source,
    ) -> Result<(), MempoolError> {
        let id = tx.id();
        self.precheck_from(&tx, store, committed_height, source)?;
        // Last and once: the expensive check (both keys valid and not weak, signature verifies), unless the
        // caller did it outside the lock.
        match precheck {
            Some(result) => result?,
            None => tx.check_keys_and_signature()?,
        }
        let t = tx.tx();
        let bytes = tx.encoded_len();
        let seq = self.next_seq;
        self.next_seq += 1;
        let cost = u128::from(t.amount) + u128::from(t.fee);
        let pending = self.by_sender.entry(t.sender).or_default();
        pending.nonces.insert(t.nonce, Slot { id, cost });
        pending.spend += cost;
        self.by_expiry.insert((t.expiry_height, seq));
        self.bytes += bytes;
        self.by_arrival.insert(seq, id);
        self.by_id.insert(id, Entry { tx, bytes, admitted_at: std::time::Instant::now(), seq });
        Ok(())
    }

    /// Every admission check except the signature, cheapest first, without changing the pool: what a
    /// gossip batch is judged by before any signature check is spent on it (an unfunded sender, a stale or
    /// far nonce, a full pool cost a map lookup and an account read, not a verification).
    pub fn precheck<S: AccountStore + ?Sized>(
        &self,
        tx: &SignedTransaction,
        store: &S,
        committed_height: Height,
    ) -> Result<(), MempoolError> {
        self.precheck_from(tx, store, committed_height, Source::Client)
    }

    /// [`Mempool::precheck`] for a transaction from `source` (a peer's is not held to the pace limit).
    pub fn precheck_from<S: AccountStore + ?Sized>(
        &self,
        tx: &SignedTransaction,
        store: &S,
        committed_height: Height,
        source: Source,
    ) -> Result<(), MempoolError> {
        let id = tx.id();
        if self.by_id.contains_key(&id) {
            return Err(MempoolError::Duplicate);
        }
        tx.check_without_signature(&self.chain_id, &self.params)?;
        let t = tx.tx();
        let next_height = committed_height.next();
        if next_height.0 > t.expiry_height {
            return Err(TxError::Expired { expiry_height: t.expiry_height, height: next_height.0 }.into());
        }
        let account = store.account(&t.sender).map_err(|e| MempoolError::Storage(e.0))?;
        if t.nonce < account.nonce {
            return Err(TxError::WrongNonce { expected: account.nonce, got: t.nonce }.into());
        }
        if t.nonce - account.nonce > self.limits.max_nonce_gap {
            return Err(MempoolError::NonceTooFarAhead {
                account: account.nonce,
                got: t.nonce,
                max_gap: self.limits.max_nonce_gap,
            });
        }
        let pending = self.by_sender.get(&t.sender);
        if pending.is_some_and(|p| p.nonces.contains_key(&t.nonce)) {
            return Err(MempoolError::NonceTaken { nonce: t.nonce });
        }
        let n_pending = pending.map_or(0, |p| p.nonces.len());
        if n_pending >= self.limits.max_per_sender {
            return Err(MempoolError::SenderLimit { pending: n_pending, max: self.limits.max_per_sender });
        }
        let bytes = tx.encoded_len();
        if self.by_id.len() >= self.limits.max_txs {
            return Err(MempoolError::Full { what: "transaction count" });
        }
        if source == Source::Client && self.by_id.len() >= self.admit_max_txs() {
            return Err(MempoolError::Full { what: "what the network commits in the pace window" });
        }
        if self.bytes + bytes > self.limits.max_bytes {
            return Err(MempoolError::Full { what: "bytes" });
        }
        if self.under_load() {
            let next = pending.map_or(account.nonce, |p| ready_next(&p.nonces, account.nonce));
            if t.nonce != next {
                return Err(MempoolError::NonceGapUnderLoad { next, got: t.nonce });
            }
        }
        let needed = self.pending_spend(&t.sender) + u128::from(t.amount) + u128::from(t.fee);
        if u128::from(account.balance) < needed {
            return Err(TxError::InsufficientFunds { balance: account.balance, needed }.into());
        }
        Ok(())
    }

    /// What a client batch's precheck does with each input (read only, the pool is not changed): inputs the
    /// pool knows good (pooled, committed, checked in a proposal) need no check; those a cheap check refuses
    /// need none either (admission refuses them again and records why); the others are verified, but no
    /// more of them than the pool has room for
    /// ([`Mempool::client_room`]). Under overload the door opens for a few transactions at a time, and
    /// without that budget every batch that got through paid a signature check for each of its
    /// transactions, most of which admission then refused as `mempool_full`. Inputs that could not be
    /// decoded are `Verify` (they carry their error; nothing is checked).
    pub fn plan_client_checks<S: AccountStore + ?Sized>(
        &self,
        txs: &[Result<SignedTransaction, MempoolError>],
        store: &S,
        tip: Option<Height>,
    ) -> Vec<Plan> {
        let mut room = self.client_room();
        txs.iter()
            .map(|t| match (t, tip) {
                (Err(_), _) => Plan::Verify,
                (Ok(tx), _) if self.known_good(&tx.id()) => Plan::Known,
                (Ok(_), _) if room == 0 => Plan::Refused,
                (Ok(tx), Some(tip)) if self.precheck(tx, store, tip).is_err() => Plan::Refused,
                _ => {
                    room -= 1;
                    Plan::Verify
                }
            })
            .collect()
    }

    /// Filled beyond `gapped_below_fill_percent` of its count or byte limit.
    fn under_load(&self) -> bool {
        let pct = u128::from(self.limits.gapped_below_fill_percent.min(100));
        pct < 100
            && (self.by_id.len() as u128 * 100 >= self.admit_max_txs() as u128 * pct
                || self.bytes as u128 * 100 >= self.limits.max_bytes as u128 * pct)
    }

    /// Amount plus fee of every pending transaction of `sender` (kept up to date by `admit` and `remove`,
    /// not summed per admission).
    fn pending_spend(&self, sender: &Address) -> u128 {
        self.by_sender.get(sender).map_or(0, |p| p.spend)
    }

    /// Up to `limit` candidates for the next block, oldest admission first, each sender's transactions in
    /// nonce order (one whose lower nonce is pending but arrived later follows that one). Deterministic for
    /// a given sequence of admissions.
    pub fn take_for_block(&self, limit: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        // Last nonce taken per sender in this call.
        let mut last: BTreeMap<Address, u64> = BTreeMap::new();
        for (&seq, id) in &self.by_arrival {
            if out.len() >= limit {
                break;
            }
            let Some(e) = self.by_id.get(id) else { continue };
            let t = e.tx.tx();
            let Some(pending) = self.by_sender.get(&t.sender) else { continue };
            let in_order = match last.get(&t.sender) {
                Some(&l) => l.checked_add(1) == Some(t.nonce),
                // Its sender's lowest pending nonce (a lower one that arrived later comes first, then this).
                None => pending.nonces.keys().next() == Some(&t.nonce),
            };
            if !in_order {
                continue;
            }
            out.push(e.tx.clone());
            let mut nonce = t.nonce;
            // Successors that arrived before it were skipped above: they follow it now.
            while out.len() < limit
                && let Some(next) = nonce.checked_add(1)
                && let Some(e2) = pending.nonces.get(&next).and_then(|slot| self.by_id.get(&slot.id))
                && e2.seq < seq
            {
                out.push(e2.tx.clone());
                nonce = next;
            }
            last.insert(t.sender, nonce);
        }
        out
    }

    fn remove(&mut self, id: &TxId) -> Option<SignedTransaction> {
        let entry = self.by_id.remove(id)?;
        self.by_arrival.remove(&entry.seq);
        self.bytes -= entry.bytes;
        let t = entry.tx.tx();
        self.by_expiry.remove(&(t.expiry_height, entry.seq));
        if let Some(p) = self.by_sender.get_mut(&t.sender) {
            if let Some(slot) = p.nonces.remove(&t.nonce) {
                p.spend -= slot.cost;
            }
            if p.nonces.is_empty() {
                self.by_sender.remove(&t.sender);
            }
        }
        Some(entry.tx)
    }

    fn evict(&mut self, id: &TxId, error: &MempoolError) {
        if self.remove(id).is_some() {
            self.record(*id, TxOutcome::Evicted { code: error.code(), message: error.to_string() });
        }
    }

    /// A block builder refused these candidates. Evict those that cannot become valid by waiting; a nonce
    /// gap may close when the missing transaction arrives, so those stay.
    pub fn on_build_rejections(&mut self, rejected: &[(TxId, TxError)]) {
        for (id, error) in rejected {
            if error.code() != "nonce_gap" {
                self.evict(id, &MempoolError::Tx(error.clone()));
            }
        }
    }

    /// After committing block `height` with `committed` txs (on `store`, which now holds the new state):
    /// drop the committed ones, evict the expired, and re-check the pending transactions of the block's
    /// senders, evicting those whose nonce is used and those the sender can no longer pay for. The block's
    /// header `timestamp_ms` and size set the pace of [`Mempool::admit_max_txs`].
    pub fn on_block_committed<S: AccountStore + ?Sized>(
        &mut self,
        height: Height,
        timestamp_ms: u64,
        committed: &[SignedTransaction],
        store: &S,
    ) {
        self.on_block_pace(timestamp_ms, committed.len());
        // Only the senders of committed transactions have a lower balance or a higher nonce now (recipients
        // and the proposer only gain), so only their pending transactions need a new look; expiry is by
        // height, found through the expiry index. Cost: O(block + evicted), not O(pool).
        let mut senders = Vec::with_capacity(committed.len());
        for tx in committed {
            let id = tx.id();
            self.remove(&id);
            // Committed is final: the first commit seen stays. A refusal recorded before (refused, then sent
            // again and admitted) is overwritten too, so it cannot come back once `recent` forgets the id.
            if !matches!(self.recent.get(&id), Some(Recent::Committed(_))) {
                self.recent.insert(id, Recent::Committed(height));
                if self.refusals.get(&id).is_some() {
                    self.refusals.insert(id, TxOutcome::Committed { height });
                }
            }
            senders.push(tx.tx().sender);
        }
        senders.sort_unstable();
        senders.dedup();
        let next_height = height.next().0;
        while let Some(&(expiry, seq)) = self.by_expiry.first() {
            if expiry >= next_height {
                break;
            }
            // `evict` removes it from the index; a stale entry (no longer pooled) is dropped all the same.
            self.by_expiry.remove(&(expiry, seq));
            if let Some(&id) = self.by_arrival.get(&seq) {
                let error: MempoolError = TxError::Expired { expiry_height: expiry, height: next_height }.into();
                self.evict(&id, &error);
            }
        }
        let mut evictions: Vec<(TxId, MempoolError)> = Vec::new();
        for sender in senders {
            let Some(pending) = self.by_sender.get(&sender) else { continue };
            let account = match store.account(&sender) {
                Ok(a) => a,
                // Cannot re-check without state: keep them; building a block checks them against the state.
                Err(_) => continue,
            };
            // Nothing to evict when no nonce is used and the balance covers every pending one (the common
            // case: the sender's next transactions, funded).
            let stale = pending.nonces.first_key_value().is_some_and(|(&n, _)| n < account.nonce);
            if !stale && u128::from(account.balance) >= pending.spend {
                continue;
            }
            let mut spend: u128 = 0;
            for (&nonce, slot) in &pending.nonces {
                let error: Option<MempoolError> = if nonce < account.nonce {
                    Some(TxError::WrongNonce { expected: account.nonce, got: nonce }.into())
                } else {
                    spend += slot.cost;
                    balance_short(&account, spend)
                };
                if let Some(error) = error {
                    evictions.push((slot.id, error));
                }
            }
            for (id, error) in evictions.drain(..) {
                self.evict(&id, &error);
            }
        }
    }

    /// Record a refusal (`Rejected` or `Evicted`).
    fn record(&mut self, id: TxId, outcome: TxOutcome) {
        // Committed is final: a copy arriving later is refused (its nonce is used), which must not hide it.
        if matches!(self.recent.get(&id), Some(Recent::Committed(_)))
            || matches!(self.refusals.get(&id), Some(TxOutcome::Committed { .. }))
        {
            return;
        }
        self.refusals.insert(id, outcome);
    }
}

/// A map by the id of a transaction that passed its signature check, hashed with foldhash under a
/// per-process random seed rather than SipHash (~2 % of a validator's CPU went to SipHash at full speed). An
/// id is a blake3 output, so a sender steers it only by signing transaction after transaction, and the seed
/// is unknown to it. Maps any client fills for free stay on SipHash (`refusals`, `by_sender`, the key cache).
type IdMap<V> = HashMap<TxId, V, foldhash::fast::RandomState>;

/// What the pool remembers of a known-good id that is not pooled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Recent {
    /// Its keys and signature were checked in a proposed block that executed.
    Checked,
    /// It was committed at this height.
    Committed(Height),
}

/// A bounded map of the most recently inserted ids, in two generations: inserts go to the current one, and
/// a full current generation becomes the previous one (the previous one is dropped whole). It remembers at
/// least the last `generation` and at most the last `2 * generation` ids, every table after the first is
/// allocated once at its final size, and no id is ever removed from a table: a hash table that evicts one id
/// per insert fills with tombstones and doubles (measured: 262,144 buckets, 21 MB, for 100,000 outcomes).
struct Generations<V, S> {
    current: HashMap<TxId, V, S>,
    previous: HashMap<TxId, V, S>,
    generation: usize,
}

impl<V, S: std::hash::BuildHasher + Default> Generations<V, S> {
    fn new(generation: usize) -> Self {
        Generations { current: HashMap::default(), previous: HashMap::default(), generation }
    }

    fn get(&self, id: &TxId) -> Option<&V> {
        self.current.get(id).or_else(|| self.previous.get(id))
    }

    fn insert(&mut self, id: TxId, value: V) {
        if self.current.len() >= self.generation && !self.current.contains_key(&id) {
            self.previous =
                std::mem::replace(&mut self.current, HashMap::with_capacity_and_hasher(self.generation, S::default()));
        }
        self.current.insert(id, value);
    }
}

/// A sender's pending transactions.
#[derive(Default)]
struct Pending {
    /// Ids by nonce, with what each spends.
    nonces: BTreeMap<u64, Slot>,
    /// Amount plus fee of all of them.
    spend: u128,
}

/// One pending transaction of a sender.
struct Slot {
    id: TxId,
    /// Amount plus fee.
    cost: u128,
}

/// The first nonce from `account_nonce` on that `pending` does not hold: the next one a block could take
/// after the sender's pending transactions.
fn ready_next(pending: &BTreeMap<u64, Slot>, account_nonce: u64) -> u64 {
    let mut next = account_nonce;
    for &nonce in pending.range(account_nonce..).map(|(n, _)| n) {
        if nonce != next {
            break;
        }
        next += 1;
    }
    next
}

fn balance_short(account: &Account, spend: u128) -> Option<MempoolError> {
    (u128::from(account.balance) < spend)
        .then_some(MempoolError::Tx(TxError::InsufficientFunds { balance: account.balance, needed: spend }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::{Keypair, MemStore, Signature, Transaction};

    const CHAIN: &str = "test-chain";

    fn key(i: u8) -> Keypair {
        Keypair::from_seed(&[i; 32])
    }

    fn store(balances: &[(u8, u64)]) -> MemStore {
        let mut s = MemStore::new();
        for (i, b) in balances {
            s.set_account(key(*i).public(), Account { balance: *b, nonce: 0 });
        }
        s
    }

    fn tx(from: u8, nonce: u64, amount: u64) -> SignedTransaction {
        tx_with(from, nonce, amount, 100)
    }

    fn tx_with(from: u8, nonce: u64, amount: u64, expiry_height: u64) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN.into(),
            sender: key(from).public(),
            recipient: key(200).public(),
            amount,
            fee: 1,
            nonce,
            expiry_height,
            memo: String::new(),
        }
        .sign(&key(from))
    }

    fn pool(limits: MempoolLimits) -> Mempool {
        Mempool::new(CHAIN, ConsensusParams::default(), limits)
    }

    fn code_of(r: Result<TxId, MempoolError>) -> &'static str {
        r.err().map_or("ok", |e| e.code())
    }

    #[test]
    fn admits_and_verifies_once() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let t = tx(1, 0, 10);
        let id = m.add(t.clone(), &s, Height(0)).unwrap();
        assert!(m.known_good(&id));
        assert_eq!(m.outcome(&id), Some(TxOutcome::Pending));
        assert_eq!(m.len(), 1);
        assert_eq!(m.bytes(), t.encoded_len());
    }

    #[test]
    fn next_nonce_counts_consecutive_pending_nonces() {
        let s = store(&[(1, 1000), (2, 1000)]);
        let mut m = pool(MempoolLimits::default());
        assert_eq!(m.next_nonce(&key(1).public(), 0), 0);
        for n in [0, 1, 3] {
            m.add(tx(1, n, 10), &s, Height(0)).unwrap();
        }
        assert_eq!(m.pending_nonces(&key(1).public()), vec![0, 1, 3]);
        assert_eq!(m.next_nonce(&key(1).public(), 0), 2, "the gap at 2 ends the run");
        assert_eq!(m.next_nonce(&key(1).public(), 3), 4);
        assert_eq!(m.next_nonce(&key(2).public(), 5), 5);
        assert!(m.admitted_at(&tx(1, 0, 10).id()).is_some());
        assert!(m.admitted_at(&tx(2, 0, 10).id()).is_none());
    }

    #[test]
    fn rejects_duplicates() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        m.add(tx(1, 0, 10), &s, Height(0)).unwrap();
        assert_eq!(code_of(m.add(tx(1, 0, 10), &s, Height(0))), "duplicate");
        // Same sender and nonce, different transaction.
        assert_eq!(code_of(m.add(tx(1, 0, 11), &s, Height(0))), "duplicate");
    }

    #[test]
    fn rejects_bad_signature_and_records_why() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let good = tx(1, 0, 10);
        let forged = SignedTransaction::new(good.tx().clone(), Signature([7; 64]));
        let id = forged.id();
        assert_eq!(code_of(m.add(forged, &s, Height(0))), "bad_signature");
        assert!(matches!(m.outcome(&id), Some(TxOutcome::Rejected { code: "bad_signature", .. })));
        assert!(!m.known_good(&id));
    }

    #[test]
    fn prechecked_admission_records_the_same_reasons_in_the_same_order() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let good = tx(1, 0, 10);
        let forged = SignedTransaction::new(good.tx().clone(), Signature([7; 64]));
        let (id, check) = (forged.id(), forged.check_keys_and_signature());
        // A failed precheck is the rejection, recorded with its reason.
        assert_eq!(code_of(m.add_prechecked(forged, check, &s, Height(0))), "bad_signature");
        assert!(matches!(m.outcome(&id), Some(TxOutcome::Rejected { code: "bad_signature", .. })));
        // A cheap failure still comes first, as with `add`.
        let poor = tx(1, 0, 5000);
        let check = Err(TxError::BadSignature);
        assert_eq!(code_of(m.add_prechecked(poor, check, &s, Height(0))), "insufficient_funds");
        // A passed precheck admits without verifying again.
        let check = good.check_keys_and_signature();
        assert_eq!(m.add_prechecked(good.clone(), check, &s, Height(0)), Ok(good.id()));
        assert!(m.known_good(&good.id()));
    }

    #[test]
    fn rejects_wrong_chain_expired_and_malformed() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let mut t = tx(1, 0, 10).tx().clone();
        t.chain_id = "other".into();
        assert_eq!(code_of(m.add(t.sign(&key(1)), &s, Height(0))), "wrong_chain");
        assert_eq!(code_of(m.add(tx_with(1, 0, 10, 5), &s, Height(5))), "expired");
        assert_eq!(code_of(m.add_bytes(&[1, 2, 3], &s, Height(0))), "malformed");
        assert_eq!(code_of(m.add_bytes(&[0; 5000], &s, Height(0))), "too_large");
    }

    #[test]
    fn nonce_window() {
        let mut s = store(&[(1, 1000)]);
        s.set_account(key(1).public(), Account { balance: 1000, nonce: 5 });
        let limits = MempoolLimits { max_nonce_gap: 3, ..Default::default() };
        let mut m = pool(limits);
        assert_eq!(code_of(m.add(tx(1, 4, 1), &s, Height(0))), "nonce_too_low");
        assert_eq!(code_of(m.add(tx(1, 9, 1), &s, Height(0))), "nonce_too_far_ahead");
        assert_eq!(code_of(m.add(tx(1, 8, 1), &s, Height(0))), "ok");
        assert_eq!(code_of(m.add(tx(1, 5, 1), &s, Height(0))), "ok");
    }

    #[test]
    fn balance_counts_pending_txs() {
        let s = store(&[(1, 25)]);
        let mut m = pool(MempoolLimits::default());
        assert_eq!(code_of(m.add(tx(1, 0, 10), &s, Height(0))), "ok"); // 11
        assert_eq!(code_of(m.add(tx(1, 1, 10), &s, Height(0))), "ok"); // 22
        assert_eq!(code_of(m.add(tx(1, 2, 10), &s, Height(0))), "insufficient_funds");
        assert_eq!(code_of(m.add(tx(1, 2, 2), &s, Height(0))), "ok"); // 25
        // What a removed transaction spent is released: without it, 25 + 6 would be refused.
        m.on_build_rejections(&[(tx(1, 1, 10).id(), TxError::ZeroAmount)]); // 14
        assert_eq!(code_of(m.add(tx(1, 1, 5), &s, Height(0))), "ok"); // 20
        assert_eq!(code_of(m.add(tx(1, 3, 4), &s, Height(0))), "ok"); // 25
        assert_eq!(code_of(m.add(tx(1, 4, 1), &s, Height(0))), "insufficient_funds");
    }

    #[test]
    fn bounded_by_count_bytes_and_sender() {
        let s = store(&[(1, 1000), (2, 1000), (3, 1000)]);
        let mut m = pool(MempoolLimits { max_txs: 2, ..Default::default() });
        m.add(tx(1, 0, 1), &s, Height(0)).unwrap();
        m.add(tx(2, 0, 1), &s, Height(0)).unwrap();
        assert_eq!(code_of(m.add(tx(3, 0, 1), &s, Height(0))), "mempool_full");

        let one = tx(1, 0, 1).encoded_len();
        let mut m = pool(MempoolLimits { max_bytes: one * 2, ..Default::default() });
        m.add(tx(1, 0, 1), &s, Height(0)).unwrap();
        m.add(tx(2, 0, 1), &s, Height(0)).unwrap();
        assert_eq!(code_of(m.add(tx(3, 0, 1), &s, Height(0))), "mempool_full");

        let mut m = pool(MempoolLimits { max_per_sender: 2, ..Default::default() });
        m.add(tx(1, 0, 1), &s, Height(0)).unwrap();
        m.add(tx(1, 1, 1), &s, Height(0)).unwrap();
        assert_eq!(code_of(m.add(tx(1, 2, 1), &s, Height(0))), "sender_limit");
        assert_eq!(code_of(m.add(tx(2, 0, 1), &s, Height(0))), "ok");
    }

    /// Over half full, a transaction behind a nonce gap waits outside (the overload collapse: a full pool
    /// refuses one transaction of a sender and would then fill with that sender's later ones, which no
    /// block can take); the one that closes the gap is admitted.
    #[test]
    fn the_pool_admits_what_the_network_commits_in_the_drain_target() {
        let s = store(&[(1, 1_000_000), (2, 1_000_000), (3, 1_000_000)]);
        let limits = MempoolLimits {
            max_txs: 100,
            drain_target_ms: 1000,
            drain_floor_txs: 5,
            gapped_below_fill_percent: 100,
            max_nonce_gap: 1000,
            ..Default::default()
        };
        let mut m = pool(limits);
        assert_eq!(m.admit_max_txs(), 5, "no pace known yet: the floor");
        // Four blocks, 500 ms apart, 4 transactions each: 12 committed over 1.5 s = 8 per second.
        for i in 0..4u64 {
            m.on_block_pace(10_000 + 500 * i, 4);
        }
        assert_eq!(m.admit_max_txs(), 8);
        for n in 0..8 {
            assert_eq!(code_of(m.add(tx(1, n, 1), &s, Height(0))), "ok", "tx {n}");
        }
        assert_eq!(code_of(m.add(tx(2, 0, 1), &s, Height(0))), "mempool_full", "the ninth waits for room");
        // A quiet network (empty blocks): the floor still takes a burst.
        for i in 0..PACE_BLOCKS as u64 {
            m.on_block_pace(20_000 + 1000 * i, 0);
        }
        assert_eq!(m.admit_max_txs(), 5);
        // A fast one: capped by max_txs.
        for i in 0..PACE_BLOCKS as u64 {
            m.on_block_pace(40_000 + 100 * i, 1000);
        }
        assert_eq!(m.admit_max_txs(), 100);
        // Off: max_txs only.
        let mut off = pool(MempoolLimits { max_txs: 100, drain_target_ms: 0, ..Default::default() });
        for i in 0..4u64 {
            off.on_block_pace(500 * i, 1);
        }
        assert_eq!(off.admit_max_txs(), 100);
    }

    /// A client batch larger than the pool's room gets that many signature checks, not one per input; what
    /// a cheap check refuses and what the pool knows good cost none, and admission's verdicts are the same
    /// as without the budget.
    #[test]
    fn a_client_batch_is_verified_only_up_to_the_pools_room() {
        let s = store(&[(1, 1_000_000), (2, 1_000_000), (3, 1_000_000), (4, 1_000_000), (5, 1_000_000)]);
        let limits =
            MempoolLimits { max_txs: 4, drain_target_ms: 0, gapped_below_fill_percent: 100, ..Default::default() };
        let mut m = pool(limits);
        m.add(tx(1, 0, 1), &s, Height(0)).unwrap();
        assert_eq!(m.client_room(), 3);
        let pooled = tx(1, 0, 1);
        let batch: Vec<Result<SignedTransaction, MempoolError>> = vec![
            Ok(tx(2, 0, 1)),
            Err(MempoolError::Storage("could not be decoded".into())),
            Ok(tx(6, 0, 1)),    // unfunded: refused by the cheap checks, takes no room
            Ok(pooled.clone()), // already pooled: known good, no check (admission refuses the duplicate)
            Ok(tx(3, 0, 1)),
            Ok(tx(4, 0, 1)),
            Ok(tx(5, 0, 1)), // beyond the room: not verified
            Ok(tx(5, 1, 1)),
        ];
        let plan = m.plan_client_checks(&batch, &s, Some(Height(0)));
        use Plan::*;
        assert_eq!(plan, [Verify, Verify, Refused, Known, Verify, Verify, Refused, Refused]);
        // A full pool verifies nothing.
        let mut full = pool(MempoolLimits { max_txs: 1, drain_target_ms: 0, ..Default::default() });
        full.add(tx(1, 0, 1), &s, Height(0)).unwrap();
        assert_eq!(full.plan_client_checks(&batch[..1], &s, Some(Height(0))), [Refused]);
        // Admission gives the same verdicts as without the budget: the three with room are taken, the rest
        // is refused as full, the unfunded one for its funds.
        let codes: Vec<&str> =
            batch.iter().filter_map(|t| t.as_ref().ok()).map(|t| code_of(m.add(t.clone(), &s, Height(0)))).collect();
        assert_eq!(codes, ["ok", "insufficient_funds", "duplicate", "ok", "ok", "mempool_full", "mempool_full"]);
    }

    #[test]
    fn under_load_only_transactions_a_block_could_take_are_admitted() {
        let s = store(&[(1, 1000), (2, 1000)]);
        let mut m = pool(MempoolLimits { max_txs: 4, ..Default::default() });
        assert_eq!(code_of(m.add(tx(1, 0, 1), &s, Height(0))), "ok");
        assert_eq!(code_of(m.add(tx(1, 2, 1), &s, Height(0))), "ok", "a quarter full: a gap is fine");
        // Half full from here on.
        assert_eq!(code_of(m.add(tx(1, 3, 1), &s, Height(0))), "nonce_gap_under_load");
        assert_eq!(code_of(m.add(tx(2, 1, 1), &s, Height(0))), "nonce_gap_under_load");
        match m.add(tx(2, 1, 1), &s, Height(0)) {
            Err(MempoolError::NonceGapUnderLoad { next: 0, got: 1 }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(code_of(m.add(tx(1, 1, 1), &s, Height(0))), "ok", "closes the gap");
        assert_eq!(code_of(m.add(tx(1, 3, 1), &s, Height(0))), "ok", "follows 0, 1, 2");
        assert_eq!(code_of(m.add(tx(2, 0, 1), &s, Height(0))), "mempool_full");

        let mut m = pool(MempoolLimits { max_txs: 4, gapped_below_fill_percent: 100, ..Default::default() });
        for nonce in [0, 2, 3] {
            assert_eq!(code_of(m.add(tx(1, nonce, 1), &s, Height(0))), "ok", "rule off");
        }
    }

    #[test]
    fn take_for_block_takes_oldest_first_in_nonce_order_and_deterministically() {
        let s = store(&[(1, 1000), (2, 1000), (3, 1000)]);
        let build = || {
            let mut m = pool(MempoolLimits::default());
            // Admitted in a scrambled order: (2, 1) and (1, 2) before their lower nonces.
            for (from, nonce) in [(2, 1), (1, 2), (3, 0), (1, 0), (2, 0), (1, 1)] {
                m.add(tx(from, nonce, 1), &s, Height(0)).unwrap();
            }
            m
        };
        let a = build();
        let ta = a.take_for_block(100);
        assert_eq!(ta, build().take_for_block(100), "same admissions, same candidates");
        let order: Vec<(u8, u64)> =
            ta.iter().map(|t| ((1..=3).find(|&k| key(k).public() == t.tx().sender).unwrap(), t.tx().nonce)).collect();
        // Oldest first; a transaction that arrived before its lower nonce follows that nonce.
        assert_eq!(order, vec![(3, 0), (1, 0), (2, 0), (2, 1), (1, 1), (1, 2)]);
        // A limit cuts the same order, also in the middle of a sender's run.
        let first4: Vec<_> = a.take_for_block(4);
        assert_eq!(first4[..], ta[..4]);
        assert_eq!(a.take_for_block(0), Vec::new());
    }

    /// Under a full block, what was admitted first goes first: a sender with many pending transactions
    /// does not push a later sender's single one out, and the later one does not jump ahead either.
    #[test]
    fn take_for_block_is_first_come_first_served() {
        let s = store(&[(1, 1000), (2, 1000)]);
        let mut m = pool(MempoolLimits::default());
        for nonce in 0..5 {
            m.add(tx(1, nonce, 1), &s, Height(0)).unwrap();
        }
        m.add(tx(2, 0, 1), &s, Height(0)).unwrap();
        let t = m.take_for_block(5);
        assert!(t.iter().all(|t| t.tx().sender == key(1).public()), "the five older ones fill the block");
        let t = m.take_for_block(6);
        assert_eq!(t[5].tx().sender, key(2).public());
    }

    /// Skipping the signature check is only for ids whose bytes were checked: pooled, committed, or noted
    /// from an executed block; never for one that was refused.
    #[test]
    fn known_good_covers_checked_ids_only() {
        let mut s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let pooled = tx(1, 0, 10);
        m.add(pooled.clone(), &s, Height(0)).unwrap();
        assert!(m.known_good(&pooled.id()));
        let mut forged = tx(1, 1, 10);
        forged = SignedTransaction::new(forged.tx().clone(), Signature([7; 64]));
        assert!(m.add(forged.clone(), &s, Height(0)).is_err());
        assert!(!m.known_good(&forged.id()), "a refused transaction must be checked again");
        s.set_account(key(1).public(), Account { balance: 1000 - 11, nonce: 1 });
        m.on_block_committed(Height(1), 0, &[pooled.clone()], &s);
        assert!(!m.contains(&pooled.id()));
        assert!(m.known_good(&pooled.id()), "committed");
        // A copy arriving after the commit is refused, and the outcome stays committed.
        assert!(m.add(pooled.clone(), &s, Height(1)).is_err());
        assert!(m.known_good(&pooled.id()), "still committed after a late copy");
        assert_eq!(m.outcome(&pooled.id()), Some(TxOutcome::Committed { height: Height(1) }));
        let elsewhere = tx(1, 2, 10);
        assert!(!m.known_good(&elsewhere.id()));
        m.note_checked([elsewhere.id()]);
        assert!(m.known_good(&elsewhere.id()));
        let template = tx(1, 3, 10).tx().clone();
        m.note_checked((0..2 * RECENT_IDS_GENERATION as u64).map(|n| {
            let t = Transaction { amount: n + 1, ..template.clone() };
            SignedTransaction::new(t, Signature([0; 64])).id()
        }));
        assert!(!m.known_good(&elsewhere.id()), "the oldest noted ids are forgotten");
    }

    #[test]
    fn after_block_committed_removes_rechecks_and_evicts() {
        let mut s = store(&[(1, 1000), (2, 30), (3, 100)]);
        let mut m = pool(MempoolLimits::default());
        let committed = tx(1, 0, 10);
        let stale = tx(1, 1, 10);
        let expiring = tx_with(1, 2, 10, 1);
        let unpaid = tx(2, 1, 20);
        let bystander = tx(3, 0, 10);
        for t in [&committed, &stale, &expiring, &unpaid, &bystander] {
            m.add(t.clone(), &s, Height(0)).unwrap();
        }
        // Block 1 commits `committed` and, as if via another node, nonce 1 of sender 1 and nonce 0 of sender 2,
        // a spend that leaves too little for `unpaid`. Sender 3 sent nothing: it keeps its transaction.
        let other_1 = tx(1, 1, 30);
        let other_2 = tx(2, 0, 24);
        s.set_account(key(1).public(), Account { balance: 900, nonce: 2 });
        s.set_account(key(2).public(), Account { balance: 5, nonce: 1 });
        m.on_block_committed(Height(1), 0, &[committed.clone(), other_1, other_2], &s);
        assert_eq!(m.len(), 1, "only the bystander stays");
        assert!(m.contains(&bystander.id()));
        m.on_block_committed(Height(2), 0, &[bystander.clone()], &s);
        assert!(m.is_empty(), "{} left", m.len());
        assert_eq!(m.outcome(&committed.id()), Some(TxOutcome::Committed { height: Height(1) }));
        assert!(matches!(m.outcome(&stale.id()), Some(TxOutcome::Evicted { code: "nonce_too_low", .. })));
        assert!(matches!(m.outcome(&expiring.id()), Some(TxOutcome::Evicted { code: "expired", .. })));
        assert!(matches!(m.outcome(&unpaid.id()), Some(TxOutcome::Evicted { code: "insufficient_funds", .. })));
        assert_eq!(m.bytes(), 0);
    }

    #[test]
    fn a_committed_sender_keeps_its_funded_next_transactions_and_outcomes_follow_the_pool() {
        let mut s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let first = tx(1, 0, 10);
        let next = tx(1, 1, 10);
        let gap = tx(1, 3, 10);
        m.add(first.clone(), &s, Height(0)).unwrap();
        m.add(next.clone(), &s, Height(0)).unwrap();
        // Refused while it cannot be paid for, then admitted once it can: its outcome is the pool's.
        let late = tx(1, 2, 2000);
        assert_eq!(code_of(m.add(late.clone(), &s, Height(0))), "insufficient_funds");
        assert!(matches!(m.outcome(&late.id()), Some(TxOutcome::Rejected { code: "insufficient_funds", .. })));
        m.add(gap.clone(), &s, Height(0)).unwrap();
        assert_eq!(m.outcome(&gap.id()), Some(TxOutcome::Pending));
        s.set_account(key(1).public(), Account { balance: 989, nonce: 1 });
        m.on_block_committed(Height(1), 0, std::slice::from_ref(&first), &s);
        assert_eq!(m.outcome(&first.id()), Some(TxOutcome::Committed { height: Height(1) }));
        assert!(m.contains(&next.id()) && m.contains(&gap.id()), "funded, unused nonces stay");
        assert_eq!(m.outcome(&next.id()), Some(TxOutcome::Pending));
        // The sender's balance drops below what its pending ones need: the ones past it go, in nonce order.
        s.set_account(key(1).public(), Account { balance: 15, nonce: 1 });
        m.on_block_committed(Height(2), 0, std::slice::from_ref(&first), &s);
        assert!(m.contains(&next.id()), "11 of 15 is covered");
        assert!(matches!(m.outcome(&gap.id()), Some(TxOutcome::Evicted { code: "insufficient_funds", .. })));
        assert_eq!(m.outcome(&first.id()), Some(TxOutcome::Committed { height: Height(1) }), "committed is final");
    }

    #[test]
    fn build_rejections_keep_nonce_gaps() {
        let s = store(&[(1, 1000)]);
        let mut m = pool(MempoolLimits::default());
        let gap = tx(1, 3, 1);
        let bad = tx(1, 0, 1);
        m.add(gap.clone(), &s, Height(0)).unwrap();
        m.add(bad.clone(), &s, Height(0)).unwrap();
        m.on_build_rejections(&[
            (gap.id(), TxError::WrongNonce { expected: 0, got: 3 }),
            (bad.id(), TxError::InsufficientFunds { balance: 0, needed: 2 }),
        ]);
        assert!(m.contains(&gap.id()));
        assert!(!m.contains(&bad.id()));
    }

    /// The recent-id maps keep between one and two generations of the latest ids, and their tables never grow
    /// past one generation's size (a map that evicts one id per insert doubled on tombstones).
    #[test]
    fn generations_remember_the_latest_ids_in_tables_of_fixed_size() {
        let id = |n: u64| ledger_core::Hash(*blake3::hash(&n.to_be_bytes()).as_bytes());
        let mut g: Generations<u64, std::hash::RandomState> = Generations::new(1000);
        for n in 0..10_000u64 {
            g.insert(id(n), n);
            assert!(g.current.capacity() < 2 * 1000 && g.previous.capacity() < 2 * 1000, "at {n}");
        }
        assert!((9_000..10_000).all(|n| g.get(&id(n)) == Some(&n)), "the last generation is kept");
        assert!((0..8_000).all(|n| g.get(&id(n)).is_none()), "older generations are forgotten");
        // Inserting a known id again does not start a generation.
        let before = g.current.len();
        g.insert(id(9_999), 0);
        assert_eq!((g.current.len(), g.get(&id(9_999))), (before, Some(&0)));
    }

    /// A transaction refused, sent again, admitted and committed reports `Committed`, also once the recent
    /// ids have forgotten it: the earlier refusal does not come back.
    #[test]
    fn a_refused_then_committed_transaction_stays_committed() {
        let mut s = store(&[(1, 5)]);
        let mut m = pool(MempoolLimits::default());
        let t = tx(1, 0, 10);
        assert_eq!(code_of(m.add(t.clone(), &s, Height(0))), "insufficient_funds");
        s.set_account(key(1).public(), Account { balance: 1000, nonce: 0 });
        m.add(t.clone(), &s, Height(0)).unwrap();
        s.set_account(key(1).public(), Account { balance: 1000 - 11, nonce: 1 });
        m.on_block_committed(Height(1), 0, std::slice::from_ref(&t), &s);
        let template = tx(1, 5, 10).tx().clone();
        m.note_checked((0..2 * RECENT_IDS_GENERATION as u64).map(|n| {
            let other = Transaction { amount: n + 1, ..template.clone() };
            SignedTransaction::new(other, Signature([0; 64])).id()
        }));
        assert!(!m.known_good(&t.id()), "the recent ids forgot it");
        assert_eq!(m.outcome(&t.id()), Some(TxOutcome::Committed { height: Height(1) }));
        assert!(m.add(t.clone(), &s, Height(1)).is_err(), "a late copy is refused");
        assert_eq!(m.outcome(&t.id()), Some(TxOutcome::Committed { height: Height(1) }), "and does not hide it");
    }

    #[test]
    fn outcomes_are_bounded() {
        let s = store(&[]);
        let mut m = pool(MempoolLimits { max_outcomes: 3, ..Default::default() });
        let ids: Vec<TxId> = (0..5)
            .map(|n| {
                let t = tx(1, n, 1);
                let id = t.id();
                let _ = m.add(t, &s, Height(0));
                id
            })
            .collect();
        assert!(m.outcome(&ids[0]).is_none());
        assert!(matches!(m.outcome(&ids[4]), Some(TxOutcome::Rejected { code: "insufficient_funds", .. })));
    }
}
