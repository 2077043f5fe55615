//! Admission of consensus gossip from untrusted peers, and what each peer may spend of this node.
//!
//! Every message a peer sends costs the receiver: decoding, hashing and, above all, signature checks
//! (~45 µs each on this project's machines, against ~1 µs for everything else a vote needs). The rules
//! here put the cheap checks first, so a message that is stale, misaddressed or inconsistent is dropped
//! before its signature is looked at, and meter what is left per peer, so one peer cannot buy unbounded
//! verification. Both the node (`node::p2p`, `node::driver`) and the simulator call these functions: the
//! rules that decide what reaches the consensus core exist once.
//!
//! Pure like the rest of the crate: the caller passes the time (milliseconds on any monotonic clock) and
//! chooses the peer identifier type.
//!
//! A verdict is one of three: [`Verdict::Accept`] (forward and deliver), [`Verdict::Ignore`] (drop, no
//! blame: stale, duplicate, or over budget, which the caller blames separately) and [`Verdict::Reject`]
//! (only a faulty or malicious sender can have sent it; the sender is penalised). Honest behaviour must
//! never be rejected: a re-proposal of an earlier round's valid value carries a block another validator
//! built, and a late vote for the height just committed is not a fault.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::block::Block;
use crate::hash::Hash;
use crate::types::Height;
use crate::validator::ValidatorSet;
use crate::vote::{SignedProposal, SignedVote};

/// Why a message was dropped without blame. The labels are stable (metrics use them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DropReason {
    /// For a height already committed here (a late vote for the tip itself is still accepted).
    OldHeight,
    /// The sending peer is ignored or banned for earlier faults.
    PeerIgnored,
    /// The sending peer spent its budget of messages or signature checks.
    OverBudget,
    /// Verified (or refused) recently: the same bytes again.
    Duplicate,
    /// A transaction this node refused recently.
    RefusedRecently,
    /// Transactions that cannot apply (unfunded sender, stale or far nonce, full pool, expired).
    NotAdmissible,
    /// The node could not read what it needed to judge (storage error).
    Unavailable,
    /// For a height more than two above the tip, from a signer outside the newest set known here (whose
    /// set signs there is not known yet: not the sender's fault).
    FarHeight,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::OldHeight,
        DropReason::PeerIgnored,
        DropReason::OverBudget,
        DropReason::Duplicate,
        DropReason::RefusedRecently,
        DropReason::NotAdmissible,
        DropReason::Unavailable,
        DropReason::FarHeight,
    ];

    pub fn label(self) -> &'static str {
        match self {
            DropReason::OldHeight => "old_height",
            DropReason::PeerIgnored => "peer_ignored",
            DropReason::OverBudget => "over_budget",
            DropReason::Duplicate => "duplicate",
            DropReason::RefusedRecently => "refused_recently",
            DropReason::NotAdmissible => "not_admissible",
            DropReason::Unavailable => "unavailable",
            DropReason::FarHeight => "far_height",
        }
    }
}

/// What to do with one gossip message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Ignore(DropReason),
    /// Only a faulty or malicious sender sends this; the reason is for logs.
    Reject(String),
}

/// What a peer spends when this node handles its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    /// Gossip messages of any kind (decoding, hashing, bookkeeping).
    Messages,
    /// Signature checks of votes and proposals.
    ConsensusSignatures,
    /// Signature checks of transactions.
    TxSignatures,
    /// Block-sync requests served.
    SyncRequests,
    /// Bytes of block-sync responses served.
    SyncBytes,
}

const RESOURCES: usize = 5;

impl Resource {
    fn index(self) -> usize {
        match self {
            Resource::Messages => 0,
            Resource::ConsensusSignatures => 1,
            Resource::TxSignatures => 2,
            Resource::SyncRequests => 3,
            Resource::SyncBytes => 4,
        }
    }
}

/// A peer's fault, with its weight in score points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offence {
    /// A message only a faulty or malicious peer sends (forged signature, undecodable bytes, a proposal
    /// from the wrong proposer).
    Invalid,
    /// One message (or request) beyond its budget.
    OverBudget,
    /// A block-sync request beyond its budget.
    SyncAbuse,
}

impl Offence {
    pub const ALL: [Offence; 3] = [Offence::Invalid, Offence::OverBudget, Offence::SyncAbuse];

    pub fn label(self) -> &'static str {
        match self {
            Offence::Invalid => "invalid",
            Offence::OverBudget => "over_budget",
            Offence::SyncAbuse => "sync_abuse",
        }
    }
}

/// A rate and a burst: `burst` may be spent at once, and it refills at `per_sec`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub per_sec: u64,
    pub burst: u64,
}

/// Per-peer budgets and the score rules. The defaults leave an honest peer of a loaded network an order
/// of magnitude of headroom (see each field) and bring a flooding one to "ignored" within a second and to
/// "banned" within a few.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLimits {
    /// Gossip messages. An honest peer relays every consensus message of the network (4 validators at 10
    /// heights a second: ~100 a second) and transaction batches of up to 1,024 transactions.
    pub messages: Rate,
    /// Vote and proposal signature checks (the same ~100 a second, more across round changes).
    pub consensus_signatures: Rate,
    /// Transaction signature checks: above the network's whole throughput, since one peer may relay all of it.
    pub tx_signatures: Rate,
    /// Block-sync requests: a node catching up asks one at a time.
    pub sync_requests: Rate,
    /// Bytes of block-sync responses served to one peer.
    pub sync_bytes: Rate,
    /// Points each offence costs.
    pub invalid_penalty: i64,
    pub over_budget_penalty: i64,
    pub sync_abuse_penalty: i64,
    /// At or below this score a peer's messages are dropped unread.
    pub ignore_at: i64,
    /// At or below this score a peer is banned: disconnected and refused for `ban_ms`.
    pub ban_at: i64,
    pub ban_ms: u64,
    /// Points a peer regains per second, up to 0.
    pub recovery_per_sec: i64,
    /// The score never falls below this, so a peer that stops can come back.
    pub score_min: i64,
    /// Peers tracked at once; the least recently seen of those not banned are forgotten first.
    pub peers_max: usize,
}

impl Default for PeerLimits {
    fn default() -> Self {
        PeerLimits {
            messages: Rate { per_sec: 2_000, burst: 4_000 },
            consensus_signatures: Rate { per_sec: 1_000, burst: 2_000 },
            tx_signatures: Rate { per_sec: 25_000, burst: 50_000 },
            sync_requests: Rate { per_sec: 50, burst: 100 },
            sync_bytes: Rate { per_sec: 64 << 20, burst: 128 << 20 },
            invalid_penalty: 100,
            over_budget_penalty: 5,
            sync_abuse_penalty: 50,
            ignore_at: -500,
            ban_at: -1_000,
            ban_ms: 60_000,
            recovery_per_sec: 20,
            score_min: -2_000,
            peers_max: 4_096,
        }
    }
}

impl PeerLimits {
    fn rate(&self, r: Resource) -> Rate {
        match r {
            Resource::Messages => self.messages,
            Resource::ConsensusSignatures => self.consensus_signatures,
            Resource::TxSignatures => self.tx_signatures,
            Resource::SyncRequests => self.sync_requests,
            Resource::SyncBytes => self.sync_bytes,
        }
    }

    fn penalty(&self, o: Offence) -> i64 {
        match o {
            Offence::Invalid => self.invalid_penalty,
            Offence::OverBudget => self.over_budget_penalty,
            Offence::SyncAbuse => self.sync_abuse_penalty,
        }
    }
}

/// How this node treats a peer now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    Good,
    /// Its messages are dropped unread until its score recovers; callers count each one as over budget
    /// (an ignored peer's budget is zero), so one that keeps sending ends banned.
    Ignored,
    /// Disconnected and refused until `until_ms`.
    Banned {
        until_ms: u64,
    },
}

#[derive(Clone, Debug)]
struct PeerEntry {
    /// Score in thousandths of a point (recovery accrues per millisecond).
    score_milli: i64,
    /// Tokens per resource, in thousandths.
    tokens_milli: [u64; RESOURCES],
    updated_ms: u64,
    banned_until_ms: Option<u64>,
}

/// What a peer just did to its standing, for the caller to act on (disconnect, log once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    NowIgnored,
    NowBanned { until_ms: u64 },
}

/// Scores and budgets of peers, keyed by the caller's peer identifier. Bounded by
/// [`PeerLimits::peers_max`].
#[derive(Clone, Debug)]
pub struct PeerBook<P: Ord + Clone> {
    limits: PeerLimits,
    peers: BTreeMap<P, PeerEntry>,
}

impl<P: Ord + Clone> PeerBook<P> {
    pub fn new(limits: PeerLimits) -> Self {
        PeerBook { limits, peers: BTreeMap::new() }
    }

    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Peers banned at `now_ms`.
    pub fn banned(&self, now_ms: u64) -> usize {
        self.peers.values().filter(|e| e.banned_until_ms.is_some_and(|u| u > now_ms)).count()
    }

    fn entry(&mut self, peer: &P, now_ms: u64) -> &mut PeerEntry {
        if !self.peers.contains_key(peer) && self.peers.len() >= self.limits.peers_max.max(1) {
            self.evict(now_ms);
        }
        let limits = &self.limits;
        let e = self.peers.entry(peer.clone()).or_insert_with(|| {
            let full = |r: Rate| r.burst.saturating_mul(1000);
            let tokens = [
                full(limits.messages),
                full(limits.consensus_signatures),
                full(limits.tx_signatures),
                full(limits.sync_requests),
                full(limits.sync_bytes),
            ];
            PeerEntry { score_milli: 0, tokens_milli: tokens, updated_ms: now_ms, banned_until_ms: None }
        });
        refresh(limits, e, now_ms);
        e
    }

    /// Forget the least recently updated peer that is not banned (or, if all are, the one whose ban ends
    /// first).
    fn evict(&mut self, now_ms: u64) {
        let victim = self
            .peers
            .iter()
            .min_by_key(|(_, e)| (e.banned_until_ms.is_some_and(|u| u > now_ms), e.banned_until_ms, e.updated_ms))
            .map(|(p, _)| p.clone());
        if let Some(p) = victim {
            self.peers.remove(&p);
        }
    }

    /// The peer's standing at `now_ms` (a peer never seen is good).
    pub fn standing(&mut self, peer: &P, now_ms: u64) -> Standing {
        let Some(e) = self.peers.get_mut(peer) else { return Standing::Good };
        refresh(&self.limits, e, now_ms);
        standing_of(&self.limits, e, now_ms)
    }

    /// Spend `amount` of `resource` for `peer`. Returns false, and spends nothing, if the peer's budget
    /// does not cover it (the caller drops the message and usually calls [`PeerBook::penalise`]).
    pub fn try_spend(&mut self, peer: &P, resource: Resource, amount: u64, now_ms: u64) -> bool {
        let e = self.entry(peer, now_ms);
        let need = amount.saturating_mul(1000);
        let t = &mut e.tokens_milli[resource.index()];
        if *t >= need {
            *t -= need;
            true
        } else {
            false
        }
    }

    /// Record an offence. Returns how the peer's standing changed.
    pub fn penalise(&mut self, peer: &P, offence: Offence, now_ms: u64) -> Change {
        let limits = self.limits.clone();
        let e = self.entry(peer, now_ms);
        let before = standing_of(&limits, e, now_ms);
        e.score_milli = e
            .score_milli
            .saturating_sub(limits.penalty(offence).saturating_mul(1000))
            .max(limits.score_min.saturating_mul(1000));
        if e.score_milli <= limits.ban_at.saturating_mul(1000) && !matches!(before, Standing::Banned { .. }) {
            let until_ms = now_ms.saturating_add(limits.ban_ms);
            e.banned_until_ms = Some(until_ms);
            return Change::NowBanned { until_ms };
        }
        match (before, standing_of(&limits, e, now_ms)) {
            (Standing::Good, Standing::Ignored) => Change::NowIgnored,
            _ => Change::None,
        }
    }

    /// The peer's score in points (0 is clean; negative after offences).
    pub fn score(&mut self, peer: &P, now_ms: u64) -> i64 {
        match self.peers.get_mut(peer) {
            Some(e) => {
                refresh(&self.limits, e, now_ms);
                e.score_milli / 1000
            }
            None => 0,
        }
    }

    /// Forget a disconnected peer unless it is banned or in debt (its record must outlive a reconnection).
    pub fn forget_if_clean(&mut self, peer: &P, now_ms: u64) {
        if let Some(e) = self.peers.get_mut(peer) {
            refresh(&self.limits, e, now_ms);
            if e.score_milli >= 0 && e.banned_until_ms.is_none() {
                self.peers.remove(peer);
            }
        }
    }
}

fn refresh(limits: &PeerLimits, e: &mut PeerEntry, now_ms: u64) {
    let elapsed = now_ms.saturating_sub(e.updated_ms);
    if elapsed == 0 {
        return;
    }
    e.updated_ms = now_ms;
    for r in [
        Resource::Messages,
        Resource::ConsensusSignatures,
        Resource::TxSignatures,
        Resource::SyncRequests,
        Resource::SyncBytes,
    ] {
        let rate = limits.rate(r);
        let t = &mut e.tokens_milli[r.index()];
        // per_sec tokens a second = per_sec thousandths a millisecond.
        *t = t.saturating_add(elapsed.saturating_mul(rate.per_sec)).min(rate.burst.saturating_mul(1000));
    }
    let regained = i64::try_from(elapsed).unwrap_or(i64::MAX).saturating_mul(limits.recovery_per_sec);
    e.score_milli = e.score_milli.saturating_add(regained).min(0);
    if e.banned_until_ms.is_some_and(|u| u <= now_ms) {
        e.banned_until_ms = None;
    }
}

fn standing_of(limits: &PeerLimits, e: &PeerEntry, now_ms: u64) -> Standing {
    match e.banned_until_ms {
        Some(until_ms) if until_ms > now_ms => Standing::Banned { until_ms },
        _ if e.score_milli <= limits.ignore_at.saturating_mul(1000) => Standing::Ignored,
        _ => Standing::Good,
    }
}

/// A bounded set of recently seen keys: the oldest are forgotten first. Deterministic (no hashing order).
#[derive(Clone, Debug)]
pub struct RecentSet<K: Ord + Copy> {
    set: BTreeSet<K>,
    order: VecDeque<K>,
    max: usize,
}

impl<K: Ord + Copy> RecentSet<K> {
    pub fn new(max: usize) -> Self {
        RecentSet { set: BTreeSet::new(), order: VecDeque::new(), max: max.max(1) }
    }

    pub fn contains(&self, k: &K) -> bool {
        self.set.contains(k)
    }

    pub fn insert(&mut self, k: K) {
        if self.set.insert(k) {
            self.order.push_back(k);
            while self.order.len() > self.max {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

/// Digest of a signed consensus message (its signed bytes and signature), for [`RecentSet`] of messages
/// already verified: a replay of the same bytes needs no second signature check.
pub fn vote_digest(v: &SignedVote) -> Hash {
    let mut h = blake3::Hasher::new_derive_key("ledger v1 verified vote");
    h.update(&crate::encoding::encode(&v.vote));
    h.update(&v.signature.0);
    Hash(*h.finalize().as_bytes())
}

/// What a node knows when it judges consensus gossip: the chain, the validator sets of the heights it can
/// judge (its committed tip, the next one and the one after, fixed by governance two heights ahead) and
/// its committed tip.
#[derive(Clone, Copy, Debug)]
pub struct MessageCheck<'a> {
    pub chain_id: &'a str,
    /// The sets of `tip`, `tip + 1` and `tip + 2`.
    pub sets: [&'a ValidatorSet; 3],
    /// The latest committed height here.
    pub tip: Height,
    #[cfg(feature = "broken-reproposal")]
    broken_reproposal: bool,
}

impl<'a> MessageCheck<'a> {
    /// With one set for every height (a chain whose set does not change near `tip`).
    pub fn new(chain_id: &'a str, validators: &'a ValidatorSet, tip: Height) -> Self {
        Self::with_sets(chain_id, [validators; 3], tip)
    }

    /// With the sets of `tip`, `tip + 1` and `tip + 2`.
    pub fn with_sets(chain_id: &'a str, sets: [&'a ValidatorSet; 3], tip: Height) -> Self {
        MessageCheck {
            chain_id,
            sets,
            tip,
            #[cfg(feature = "broken-reproposal")]
            broken_reproposal: false,
        }
    }

    /// The set of `height` (`Some(set, true)` when it is known for sure: the tip and the two heights after);
    /// above that, the newest set known, which a change decided since may not match. Messages for those
    /// heights from its members are judged against it (what lets a node far behind learn that it is and
    /// sync); a signer outside it, or a proposer off its schedule, is dropped without blame
    /// ([`DropReason::FarHeight`]): it may be a validator added since.
    pub fn set_at(&self, height: Height) -> Option<(&'a ValidatorSet, bool)> {
        let ahead = height.0.checked_sub(self.tip.0)?;
        match self.sets.get(usize::try_from(ahead).ok()?) {
            Some(set) => Some((*set, true)),
            None => Some((self.sets[2], false)),
        }
    }

    /// Negative control for the simulator: put back the rule that refused re-proposals (a proposal's block
    /// had to be built by its signer, whatever its `pol_round`), which stalled rounds on real networks.
    #[cfg(feature = "broken-reproposal")]
    pub fn with_broken_reproposal(mut self, broken: bool) -> Self {
        self.broken_reproposal = broken;
        self
    }

    /// Judge a vote. In order of cost: a vote for a height below the tip is dropped (a late precommit for
    /// the tip itself still completes certificates); the signer must be a validator; `verified` (a recent
    /// set of [`vote_digest`]s, added to here) spares a second check of the same bytes; then `spend` must grant one
    /// signature check before the signature is verified.
    pub fn check_vote(
        &self,
        v: &SignedVote,
        verified: &mut RecentSet<Hash>,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Verdict {
        if v.vote.height < self.tip {
            return Verdict::Ignore(DropReason::OldHeight);
        }
        let Some((set, known)) = self.set_at(v.vote.height) else { return Verdict::Ignore(DropReason::OldHeight) };
        if set.index_of(&v.vote.validator).is_none() {
            // Far ahead, a validator added (or a key rotated) since the newest set known here: not the
            // sender's fault. Dropped before any signature check, so it costs a flooder's target nothing.
            if !known {
                return Verdict::Ignore(DropReason::FarHeight);
            }
            return Verdict::Reject(format!("vote signer {} is not a validator", v.vote.validator));
        }
        let digest = vote_digest(v);
        if verified.contains(&digest) {
            return Verdict::Accept;
        }
        if !spend(Resource::ConsensusSignatures, 1) {
            return Verdict::Ignore(DropReason::OverBudget);
        }
        match v.verify(self.chain_id, set) {
            Ok(()) => {
                verified.insert(digest);
                Verdict::Accept
            }
            Err(e) => Verdict::Reject(e.to_string()),
        }
    }

    /// Judge a proposal and the block it carries. In order of cost: a proposal for a committed height is
    /// dropped; its signer must be the scheduled proposer of (height, round); the block must be for that
    /// height and hash to the proposal's value; a fresh proposal (`pol_round` none) carries a block its
    /// signer built, while a re-proposal of an earlier round's valid value (L15-L16) carries the block
    /// whoever proposed it then built, and is accepted; then one signature check from `spend`. The block's
    /// validity is judged later, by executing it. The node always passes the block (its wire message
    /// carries one); the simulator's restarted nodes re-send a persisted proposal without it, judged by
    /// the same rules minus the block's.
    pub fn check_proposal(
        &self,
        p: &SignedProposal,
        block: Option<&Block>,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Verdict {
        let prop = &p.proposal;
        if prop.height <= self.tip {
            return Verdict::Ignore(DropReason::OldHeight);
        }
        let Some((set, known)) = self.set_at(prop.height) else { return Verdict::Ignore(DropReason::OldHeight) };
        if set.proposer(prop.height, prop.round).public_key != prop.proposer {
            // Far ahead, the proposer schedule of a set changed since may differ: no blame.
            if !known {
                return Verdict::Ignore(DropReason::FarHeight);
            }
            return Verdict::Reject(format!(
                "{} is not the proposer of height {} round {}",
                prop.proposer, prop.height, prop.round.0
            ));
        }
        if let Some(block) = block {
            if block.height() != prop.height {
                return Verdict::Reject("block height differs from the proposal's".into());
            }
            if block.hash() != prop.block_hash {
                return Verdict::Reject("block does not match the proposal's hash".into());
            }
            if prop.pol_round.is_none() && block.header.proposer != prop.proposer {
                return Verdict::Reject("a fresh proposal's block was built by another validator".into());
            }
            #[cfg(feature = "broken-reproposal")]
            if self.broken_reproposal && block.header.proposer != prop.proposer {
                return Verdict::Reject("block proposer or height differs from the proposal's".into());
            }
        }
        if !spend(Resource::ConsensusSignatures, 1) {
            return Verdict::Ignore(DropReason::OverBudget);
        }
        match p.verify(self.chain_id, set) {
            Ok(()) => Verdict::Accept,
            Err(e) => Verdict::Reject(e.to_string()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
