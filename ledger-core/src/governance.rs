//! Validator-set governance and equivocation evidence: who runs the chain, and how that changes.
//!
//! The chain is permissioned: the validators themselves change the set. A [`ValidatorChange`] (add a
//! validator, remove one, change a power, rotate a consensus key) takes effect once validators holding more
//! than 2/3 of the voting power of the height that counts them have each signed an [`Approval`] of the same
//! change, carried in blocks. A change that reaches that quorum in block `H` shapes the set of height `H + 2`
//! (CometBFT's rule): the header of `H + 1` already commits to that set (`next_validators_hash`), so a node
//! one height behind, or a light client holding the header of `H + 1`, knows who signs `H + 2` before it
//! starts. Equivocation [`Evidence`] (two signed votes of one validator for one slot) committed in block `H`
//! jails the validator: it leaves the set of `H + 2` and comes back only through a governance `Add`.
//!
//! Everything here is part of [`GovState`], whose hash is the header's `gov_root`, so every node agrees on
//! pending changes, their approvals, the schedule of sets and who is jailed.
//!
//! Replay: a change carries an expiry height and a nonce, and its id is the hash of both with the action; an
//! executed change's id is remembered until it expires, so its approvals cannot be replayed to run it twice,
//! and a later change with the same action needs a fresh nonce. Approvals of expired changes are refused.

use std::collections::{BTreeMap, BTreeSet};

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

use crate::crypto::{CryptoError, Keypair, PublicKey, Signature, verify_with};
use crate::encoding;
use crate::hash::{Domain, Hash};
use crate::params::{MONIKER_BYTES_MAX, VALIDATORS_MAX};
use crate::types::{Height, Round};
use crate::validator::{Validator, ValidatorSet, ValidatorSetError};
use crate::vote::{SignedVote, VoteKind};

/// A change may be approved for at most this many heights after it is first seen (its expiry is at most
/// this far above the block that carries an approval).
pub const CHANGE_EXPIRY_MAX: u64 = 100_000;
/// Most changes waiting for approvals at once.
pub const PENDING_CHANGES_MAX: usize = 64;
/// Most approvals in one block.
pub const APPROVALS_PER_BLOCK_MAX: usize = 256;
/// Most pieces of evidence in one block.
pub const EVIDENCE_PER_BLOCK_MAX: usize = 16;
/// Evidence about votes more than this many heights below the block that carries it is stale.
pub const EVIDENCE_AGE_MAX: u64 = 100;

/// What a change does to the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChangeAction {
    /// Add a validator. `possession` is its key's signature of itself ([`possession_proof`]): the operator
    /// of the new key asked for it.
    Add {
        validator: Validator,
        possession: Signature,
    },
    Remove {
        key: PublicKey,
    },
    SetPower {
        key: PublicKey,
        power: u64,
    },
    /// Replace `old` by `new` at the same place in the set, keeping its power and name. Needs `old`'s own
    /// approval among the quorum (the operator asks for it) and `new`'s proof of possession.
    RotateKey {
        old: PublicKey,
        new: PublicKey,
        possession: Signature,
    },
}

/// A proposed change of the validator set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct ValidatorChange {
    pub action: ChangeAction,
    /// Last height at which an approval of this change may be included.
    pub expiry_height: u64,
    /// Distinguishes two changes with the same action (adding back a validator removed earlier).
    pub nonce: u64,
}

impl ValidatorChange {
    /// The change's id: what approvals of the same change share.
    pub fn id(&self) -> Hash {
        Hash::digest(Domain::ValidatorChange, &encoding::encode(self))
    }

    /// Checks that need no chain state: keys valid and not weak, proofs of possession, power, name.
    pub fn check_stateless(&self, chain_id: &str) -> Result<(), GovError> {
        let key_ok =
            |key: &PublicKey| key.verifying_key().map(|_| ()).map_err(|error| GovError::BadKey { key: *key, error });
        match &self.action {
            ChangeAction::Add { validator, possession } => {
                key_ok(&validator.public_key)?;
                if validator.power == 0 {
                    return Err(GovError::ZeroPower);
                }
                if validator.moniker.len() > MONIKER_BYTES_MAX {
                    return Err(GovError::MonikerTooLong { len: validator.moniker.len(), max: MONIKER_BYTES_MAX });
                }
                check_possession(chain_id, &validator.public_key, possession)
            }
            ChangeAction::Remove { key } => key_ok(key),
            ChangeAction::SetPower { key, power } => {
                key_ok(key)?;
                if *power == 0 { Err(GovError::ZeroPower) } else { Ok(()) }
            }
            ChangeAction::RotateKey { old, new, possession } => {
                key_ok(old)?;
                key_ok(new)?;
                if old == new {
                    return Err(GovError::RotateToSameKey);
                }
                check_possession(chain_id, new, possession)
            }
        }
    }

    /// Sign an approval of this change with `key` (a validator's consensus key).
    pub fn approve(&self, chain_id: &str, key: &Keypair) -> Approval {
        let signature = key.sign(Domain::ApprovalSignature, chain_id, &encoding::encode(self));
        Approval { change: self.clone(), approver: key.public(), signature }
    }

    /// Apply to `set`: the new list of validators, or why the change cannot apply to it.
    pub fn apply_to(&self, set: &ValidatorSet) -> Result<Vec<Validator>, GovError> {
        let mut v = set.validators().to_vec();
        match &self.action {
            ChangeAction::Add { validator, .. } => {
                if set.index_of(&validator.public_key).is_some() {
                    return Err(GovError::AlreadyAValidator(validator.public_key));
                }
                if v.len() >= VALIDATORS_MAX {
                    return Err(GovError::SetFull { max: VALIDATORS_MAX });
                }
                v.push(validator.clone());
            }
            ChangeAction::Remove { key } => {
                let i = set.index_of(key).ok_or(GovError::NotAValidator(*key))?;
                if v.len() == 1 {
                    return Err(GovError::LastValidator);
                }
                v.remove(i);
            }
            ChangeAction::SetPower { key, power } => {
                let i = set.index_of(key).ok_or(GovError::NotAValidator(*key))?;
                v[i].power = *power;
            }
            ChangeAction::RotateKey { old, new, .. } => {
                let i = set.index_of(old).ok_or(GovError::NotAValidator(*old))?;
                if set.index_of(new).is_some() {
                    return Err(GovError::AlreadyAValidator(*new));
                }
                v[i].public_key = *new;
            }
        }
        ValidatorSet::new(v.clone()).map_err(GovError::BadSet)?;
        Ok(v)
    }
}

/// The message a key signs to prove its holder asked to become (or replace) a validator on `chain_id`.
pub fn possession_proof(chain_id: &str, key: &Keypair) -> Signature {
    key.sign(Domain::KeyPossession, chain_id, &key.public().0)
}

fn check_possession(chain_id: &str, key: &PublicKey, possession: &Signature) -> Result<(), GovError> {
    let vk = key.verifying_key().map_err(|error| GovError::BadKey { key: *key, error })?;
    verify_with(&vk, Domain::KeyPossession, chain_id, &key.0, possession).map_err(|_| GovError::BadPossession(*key))
}

/// One validator's signed approval of a change.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Approval {
    pub change: ValidatorChange,
    pub approver: PublicKey,
    pub signature: Signature,
}

impl Approval {
    /// Id of this approval (for pools and gossip).
    pub fn id(&self) -> Hash {
        Hash::digest(Domain::ApprovalId, &encoding::encode(self))
    }

    /// The change is well formed and the signature is `approver`'s. Membership is checked against state.
    pub fn check_stateless(&self, chain_id: &str) -> Result<(), GovError> {
        self.change.check_stateless(chain_id)?;
        let vk = self.approver.verifying_key().map_err(|error| GovError::BadKey { key: self.approver, error })?;
        verify_with(&vk, Domain::ApprovalSignature, chain_id, &encoding::encode(&self.change), &self.signature)
            .map_err(|_| GovError::BadSignature)
    }
}

/// Proof that a validator signed two different votes for one (height, round, kind).
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Evidence {
    /// The two votes, in increasing order of their encodings, so one equivocation has one encoding.
    pub first: SignedVote,
    pub second: SignedVote,
}

/// What identifies one equivocation: who, and which slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize, Serialize)]
pub struct EvidenceKey {
    pub height: Height,
    pub validator: PublicKey,
    pub round: Round,
    pub kind: VoteKind,
}

impl Evidence {
    /// Evidence from two conflicting votes, in canonical order.
    pub fn new(a: SignedVote, b: SignedVote) -> Evidence {
        if encoding::encode(&a) <= encoding::encode(&b) {
            Evidence { first: a, second: b }
        } else {
            Evidence { first: b, second: a }
        }
    }

    pub fn key(&self) -> EvidenceKey {
        let v = &self.first.vote;
        EvidenceKey { height: v.height, validator: v.validator, round: v.round, kind: v.kind }
    }

    pub fn id(&self) -> Hash {
        Hash::digest(Domain::EvidenceId, &encoding::encode(self))
    }

    /// The two votes are of one validator for one slot, differ in value, are in canonical order and both
    /// signatures verify. Whether the validator was in the set at that height is checked against state.
    pub fn check_stateless(&self, chain_id: &str) -> Result<(), GovError> {
        let (a, b) = (&self.first.vote, &self.second.vote);
        if a.validator != b.validator || a.height != b.height || a.round != b.round || a.kind != b.kind {
            return Err(GovError::EvidenceNotConflicting);
        }
        if a.block_hash == b.block_hash {
            return Err(GovError::EvidenceNotConflicting);
        }
        if encoding::encode(&self.first) >= encoding::encode(&self.second) {
            return Err(GovError::EvidenceNotCanonical);
        }
        let vk = a.validator.verifying_key().map_err(|error| GovError::BadKey { key: a.validator, error })?;
        for v in [&self.first, &self.second] {
            verify_with(&vk, Domain::VoteSignature, chain_id, &encoding::encode(&v.vote), &v.signature)
                .map_err(|_| GovError::BadSignature)?;
        }
        Ok(())
    }
}

/// Why an approval, a piece of evidence or a change was refused. [`GovError::code`] is the stable
/// machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GovError {
    #[error("key {key} is not usable: {error}")]
    BadKey { key: PublicKey, error: CryptoError },
    #[error("signature does not verify")]
    BadSignature,
    #[error("proof of possession of {0} does not verify")]
    BadPossession(PublicKey),
    #[error("voting power must be greater than zero")]
    ZeroPower,
    #[error("moniker is {len} bytes, limit is {max}")]
    MonikerTooLong { len: usize, max: usize },
    #[error("a key cannot be rotated to itself")]
    RotateToSameKey,
    #[error("{0} is not a validator")]
    NotAValidator(PublicKey),
    #[error("{0} is already a validator")]
    AlreadyAValidator(PublicKey),
    #[error("the validator set is full ({max})")]
    SetFull { max: usize },
    #[error("the last validator cannot be removed")]
    LastValidator,
    #[error("the resulting set is invalid: {0}")]
    BadSet(ValidatorSetError),
    #[error("change expired at height {expiry_height}, block height is {height}")]
    Expired { expiry_height: u64, height: u64 },
    #[error("change expires at {expiry_height}, more than {max} heights after {height}")]
    ExpiryTooFar { expiry_height: u64, height: u64, max: u64 },
    #[error("change {0} was already executed")]
    AlreadyExecuted(Hash),
    #[error("{approver} already approved change {change}")]
    DuplicateApproval { change: Hash, approver: PublicKey },
    #[error("{max} changes are already pending")]
    TooManyPending { max: usize },
    #[error("block carries {n} approvals, limit is {max}")]
    TooManyApprovals { n: usize, max: usize },
    #[error("block carries {n} pieces of evidence, limit is {max}")]
    TooManyEvidence { n: usize, max: usize },
    #[error("the two votes do not conflict (not one validator, one slot, two values)")]
    EvidenceNotConflicting,
    #[error("the two votes are not in canonical order")]
    EvidenceNotCanonical,
    #[error("evidence is about height {evidence_height}, the block is at {height} (limit {max} heights back)")]
    EvidenceStale { evidence_height: Height, height: Height, max: u64 },
    #[error("evidence about height {evidence_height} is not below the block's height {height}")]
    EvidenceFromFuture { evidence_height: Height, height: Height },
    #[error("this equivocation is already committed")]
    DuplicateEvidence,
    #[error("{0} was not a validator at the evidence's height")]
    EvidenceNotAValidator(PublicKey),
}

impl GovError {
    pub fn code(&self) -> &'static str {
        match self {
            GovError::BadKey { error: CryptoError::WeakKey, .. } => "weak_key",
            GovError::BadKey { .. } => "bad_key",
            GovError::BadSignature => "bad_signature",
            GovError::BadPossession(_) => "bad_possession",
            GovError::ZeroPower => "zero_power",
            GovError::MonikerTooLong { .. } => "moniker_too_long",
            GovError::RotateToSameKey => "rotate_to_same_key",
            GovError::NotAValidator(_) => "not_a_validator",
            GovError::AlreadyAValidator(_) => "already_a_validator",
            GovError::SetFull { .. } => "set_full",
            GovError::LastValidator => "last_validator",
            GovError::BadSet(_) => "bad_set",
            GovError::Expired { .. } => "expired",
            GovError::ExpiryTooFar { .. } => "expiry_too_far",
            GovError::AlreadyExecuted(_) => "already_executed",
            GovError::DuplicateApproval { .. } => "duplicate_approval",
            GovError::TooManyPending { .. } => "too_many_pending",
            GovError::TooManyApprovals { .. } => "too_many_approvals",
            GovError::TooManyEvidence { .. } => "too_many_evidence",
            GovError::EvidenceNotConflicting => "evidence_not_conflicting",
            GovError::EvidenceNotCanonical => "evidence_not_canonical",
            GovError::EvidenceStale { .. } => "evidence_stale",
            GovError::EvidenceFromFuture { .. } => "evidence_from_future",
            GovError::DuplicateEvidence => "duplicate_evidence",
            GovError::EvidenceNotAValidator(_) => "evidence_not_a_validator",
        }
    }
}

/// A change waiting for approvals.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct PendingChange {
    pub change: ValidatorChange,
    /// Who approved it so far (only those in the current set count towards the quorum).
    pub approvers: BTreeSet<PublicKey>,
    /// Height of the block that carried its first approval.
    pub first_seen: Height,
}

/// How an executed change ended.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Executed {
    pub expiry_height: u64,
    /// Height of the block in which it reached its quorum.
    pub decided_at: Height,
    /// The height from which it applies; `None` when it could not apply to the set (the reason is in
    /// `failure`).
    pub active_from: Option<Height>,
    pub failure: Option<String>,
}

/// The governance state after a block `h`: the sets of `h`, `h + 1` and `h + 2`, what is pending, what was
/// executed (until it expires), which equivocations were punished (while they can still be reported), who is
/// jailed, and the sets of recent heights (for checking evidence).
#[derive(Clone, Debug, BorshSerialize, BorshDeserialize)]
pub struct GovState {
    /// Height of the block this is the state after (0 at genesis).
    pub height: Height,
    /// The set that certifies block `height` (at genesis: the genesis set).
    pub current: ValidatorSet,
    /// The set of `height + 1`.
    pub next: ValidatorSet,
    /// The set of `height + 2`, with every change decided so far.
    pub after_next: ValidatorSet,
    pub pending: BTreeMap<Hash, PendingChange>,
    pub executed: BTreeMap<Hash, Executed>,
    pub evidence_seen: BTreeSet<EvidenceKey>,
    pub jailed: BTreeSet<PublicKey>,
    /// Sets in force over the last [`EVIDENCE_AGE_MAX`] heights: (first height, set), oldest first.
    pub recent_sets: Vec<(Height, ValidatorSet)>,
}

impl PartialEq for GovState {
    fn eq(&self, other: &Self) -> bool {
        encoding::encode(self) == encoding::encode(other)
    }
}
impl Eq for GovState {}

/// What a block did to governance, for logs and the API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GovEvents {
    /// Changes that reached their quorum in this block, with where they apply from (or why they failed).
    pub decided: Vec<(Hash, Result<Height, String>)>,
    /// Validators jailed by evidence in this block.
    pub jailed: Vec<PublicKey>,
    /// Pending changes dropped because they expired.
    pub expired: Vec<Hash>,
}

impl GovState {
    /// The state before block 1.
    pub fn genesis(set: ValidatorSet) -> GovState {
        GovState {
            height: Height::GENESIS,
            current: set.clone(),
            next: set.clone(),
            after_next: set.clone(),
            pending: BTreeMap::new(),
            executed: BTreeMap::new(),
            evidence_seen: BTreeSet::new(),
            jailed: BTreeSet::new(),
            recent_sets: vec![(Height(1), set)],
        }
    }

    /// The header's `gov_root`.
    pub fn root(&self) -> Hash {
        Hash::digest(Domain::GovState, &encoding::encode(self))
    }

    /// The set in force at `height`, if this state still knows it (the last [`EVIDENCE_AGE_MAX`] heights
    /// and the next two).
    pub fn set_at(&self, height: Height) -> Option<&ValidatorSet> {
        if height == self.height.next() {
            return Some(&self.next);
        }
        if height == self.height.next().next() {
            return Some(&self.after_next);
        }
        if height > self.height {
            return None;
        }
        self.recent_sets.iter().rev().find(|(from, _)| *from <= height).map(|(_, s)| s)
    }

    /// Check one approval for inclusion in block `height` (whose set is `self.next`), given what the block
    /// has approved so far (`self` already updated for earlier approvals in the block).
    pub fn check_approval(&self, chain_id: &str, height: Height, a: &Approval) -> Result<(), GovError> {
        self.approval_applies(height, a)?;
        a.check_stateless(chain_id)
    }

    /// The part of [`GovState::check_approval`] that depends on this state (expiry, membership, replay,
    /// room): what can change between blocks for an approval whose signatures were checked once.
    pub fn approval_applies(&self, height: Height, a: &Approval) -> Result<(), GovError> {
        let c = &a.change;
        if c.expiry_height < height.0 {
            return Err(GovError::Expired { expiry_height: c.expiry_height, height: height.0 });
        }
        if c.expiry_height > height.0.saturating_add(CHANGE_EXPIRY_MAX) {
            return Err(GovError::ExpiryTooFar {
                expiry_height: c.expiry_height,
                height: height.0,
                max: CHANGE_EXPIRY_MAX,
            });
        }
        if self.next.index_of(&a.approver).is_none() {
            return Err(GovError::NotAValidator(a.approver));
        }
        let id = c.id();
        if self.executed.contains_key(&id) {
            return Err(GovError::AlreadyExecuted(id));
        }
        match self.pending.get(&id) {
            Some(p) if p.approvers.contains(&a.approver) => {
                return Err(GovError::DuplicateApproval { change: id, approver: a.approver });
            }
            Some(_) => {}
            None if self.pending.len() >= PENDING_CHANGES_MAX => {
                return Err(GovError::TooManyPending { max: PENDING_CHANGES_MAX });
            }
            None => {}
        }
        Ok(())
    }

    /// Check one piece of evidence for inclusion in block `height`.
    pub fn check_evidence(&self, chain_id: &str, height: Height, e: &Evidence) -> Result<(), GovError> {
        self.evidence_applies(height, e)?;
        e.check_stateless(chain_id)
    }

    /// The part of [`GovState::check_evidence`] that depends on this state (age, duplicates, membership).
    pub fn evidence_applies(&self, height: Height, e: &Evidence) -> Result<(), GovError> {
        let key = e.key();
        if key.height >= height {
            return Err(GovError::EvidenceFromFuture { evidence_height: key.height, height });
        }
        if height.0 - key.height.0 > EVIDENCE_AGE_MAX {
            return Err(GovError::EvidenceStale { evidence_height: key.height, height, max: EVIDENCE_AGE_MAX });
        }
        if self.evidence_seen.contains(&key) {
            return Err(GovError::DuplicateEvidence);
        }
        let set = self.set_at(key.height).ok_or(GovError::EvidenceStale {
            evidence_height: key.height,
            height,
            max: EVIDENCE_AGE_MAX,
        })?;
        if set.index_of(&key.validator).is_none() {
            return Err(GovError::EvidenceNotAValidator(key.validator));
        }
        Ok(())
    }

    /// Record one approval carried by block `height` (checked first).
    pub fn add_approval(&mut self, chain_id: &str, height: Height, a: &Approval) -> Result<(), GovError> {
        self.check_approval(chain_id, height, a)?;
        self.pending
            .entry(a.change.id())
            .or_insert_with(|| PendingChange {
                change: a.change.clone(),
                approvers: BTreeSet::new(),
                first_seen: height,
            })
            .approvers
            .insert(a.approver);
        Ok(())
    }

    /// Record one piece of evidence carried by block `height` (checked first); its validator is jailed when
    /// the block is finished.
    pub fn add_evidence(&mut self, chain_id: &str, height: Height, e: &Evidence) -> Result<(), GovError> {
        self.check_evidence(chain_id, height, e)?;
        self.evidence_seen.insert(e.key());
        Ok(())
    }

    /// The approvals and evidence among candidates that block `height` may carry, in order, within the
    /// per-block limits; the others with why.
    pub fn select_ops(
        &self,
        chain_id: &str,
        height: Height,
        approvals: impl IntoIterator<Item = Approval>,
        evidence: impl IntoIterator<Item = Evidence>,
    ) -> (Vec<Approval>, Vec<Evidence>, Vec<(Hash, GovError)>) {
        let mut scratch = self.clone();
        let (mut a_out, mut e_out, mut refused) = (Vec::new(), Vec::new(), Vec::new());
        for a in approvals {
            if a_out.len() >= APPROVALS_PER_BLOCK_MAX {
                break;
            }
            match scratch.add_approval(chain_id, height, &a) {
                Ok(()) => a_out.push(a),
                Err(e) => refused.push((a.id(), e)),
            }
        }
        for e in evidence {
            if e_out.len() >= EVIDENCE_PER_BLOCK_MAX {
                break;
            }
            match scratch.add_evidence(chain_id, height, &e) {
                Ok(()) => e_out.push(e),
                Err(err) => refused.push((e.id(), err)),
            }
        }
        (a_out, e_out, refused)
    }

    /// Apply block `height`'s approvals and evidence (each checked; the first failure refuses the block, with
    /// its index in approvals followed by evidence), then decide the changes whose approvers hold more than
    /// 2/3 of the power of `height`'s set, and move the schedule one height on. `self` must be the state
    /// after `height - 1`.
    pub fn apply_block(
        &self,
        chain_id: &str,
        height: Height,
        approvals: &[Approval],
        evidence: &[Evidence],
    ) -> Result<(GovState, GovEvents), (usize, GovError)> {
        if approvals.len() > APPROVALS_PER_BLOCK_MAX {
            return Err((0, GovError::TooManyApprovals { n: approvals.len(), max: APPROVALS_PER_BLOCK_MAX }));
        }
        if evidence.len() > EVIDENCE_PER_BLOCK_MAX {
            return Err((0, GovError::TooManyEvidence { n: evidence.len(), max: EVIDENCE_PER_BLOCK_MAX }));
        }
        let mut s = self.clone();
        let mut events = GovEvents::default();
        for (i, a) in approvals.iter().enumerate() {
            s.add_approval(chain_id, height, a).map_err(|e| (i, e))?;
        }
        let mut jail = Vec::new();
        for (i, e) in evidence.iter().enumerate() {
            s.add_evidence(chain_id, height, e).map_err(|err| (approvals.len() + i, err))?;
            jail.push(e.key().validator);
        }
        // Decide: in id order, each quorum change applied to the set of height + 2 as it stands.
        let set = s.next.clone();
        let mut after = s.after_next.clone();
        let ids: Vec<Hash> = s.pending.keys().copied().collect();
        for id in ids {
            let Some(p) = s.pending.get(&id) else { continue };
            let power: u64 = p.approvers.iter().filter_map(|k| set.power_of(k)).sum();
            let operator_ok = match &p.change.action {
                ChangeAction::RotateKey { old, .. } => p.approvers.contains(old),
                _ => true,
            };
            if !set.is_quorum(power) || !operator_ok {
                continue;
            }
            let Some(p) = s.pending.remove(&id) else { continue };
            let outcome = p.change.apply_to(&after).and_then(|v| ValidatorSet::new(v).map_err(GovError::BadSet));
            let active_from = Height(height.0.saturating_add(2));
            let (active, failure) = match outcome {
                Ok(new_set) => {
                    if let ChangeAction::Add { validator, .. } = &p.change.action {
                        s.jailed.remove(&validator.public_key);
                    }
                    after = new_set;
                    events.decided.push((id, Ok(active_from)));
                    (Some(active_from), None)
                }
                Err(e) => {
                    events.decided.push((id, Err(e.to_string())));
                    (None, Some(e.to_string()))
                }
            };
            s.executed.insert(
                id,
                Executed { expiry_height: p.change.expiry_height, decided_at: height, active_from: active, failure },
            );
        }
        // Jail after the changes of the same block, so that an approved re-add in the same block does not
        // undo a jailing carried beside it. Never empty the set.
        for key in jail {
            s.jailed.insert(key);
            if let Some(i) = after.index_of(&key)
                && after.len() > 1
            {
                let mut v = after.validators().to_vec();
                v.remove(i);
                if let Ok(new_set) = ValidatorSet::new(v) {
                    after = new_set;
                }
            }
            events.jailed.push(key);
        }
        // Expiry and pruning: what can no longer be included or reported.
        let next_height = height.0.saturating_add(1);
        s.pending.retain(|id, p| {
            let keep = p.change.expiry_height >= next_height;
            if !keep {
                events.expired.push(*id);
            }
            keep
        });
        s.executed.retain(|_, e| e.expiry_height >= next_height);
        let floor = Height(next_height.saturating_sub(EVIDENCE_AGE_MAX));
        s.evidence_seen.retain(|k| k.height >= floor);
        // Move the schedule: height's set becomes current, and so on.
        s.height = height;
        s.current = set;
        s.next = std::mem::replace(&mut s.after_next, after);
        if s.next.hash() != s.current.hash() {
            s.recent_sets.push((height.next(), s.next.clone()));
        }
        // Keep the sets that cover [floor, height + 1]: the last one starting at or below the floor and all later.
        if let Some(keep_from) = s.recent_sets.iter().rposition(|(from, _)| *from <= floor) {
            s.recent_sets.drain(..keep_from);
        }
        Ok((s, events))
    }
}

/// Hash of a block's approvals and evidence, which the header commits to.
pub fn ops_hash(approvals: &[Approval], evidence: &[Evidence]) -> Hash {
    if approvals.is_empty() && evidence.is_empty() {
        return Hash::ZERO;
    }
    let mut h = Hash::hasher(Domain::BlockOps);
    h.update(&encoding::encode(approvals));
    h.update(&encoding::encode(evidence));
    Hash::from_hasher(&h)
}

#[cfg(test)]
mod tests;
