//! The vote keeper: every prevote and precommit of one height, tallied by weighted power.
//!
//! One vote counts per (round, kind, validator): the first one that verifies. An identical copy is a
//! duplicate (no signature check, no effect). A different vote in the same slot is equivocation: it does not
//! count, and the first such pair is reported as evidence carrying both signed votes. Each threshold of a
//! (round, kind) is reported once, when the vote that crosses it is added; the driver can also query the
//! tallies at any time.
//!
//! It is not: a judge of round windows (the driver decides which rounds it accepts, see
//! [`super::ROUNDS_AHEAD_MAX`]), nor a store of proposals.

use std::collections::{BTreeMap, BTreeSet};

use crate::cert::{CommitCertificate, CommitSig};
use crate::hash::Hash;
use crate::types::{Height, Round};
use crate::validator::ValidatorSet;
use crate::vote::{MessageError, SignedVote, VoteKind};

/// A threshold crossed by the votes of one (round, kind). All are "more than 2/3 of the power".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Threshold {
    /// 2f+1 votes, whatever they are for (L34, L47).
    Any,
    /// 2f+1 votes for nil (L44).
    Nil,
    /// 2f+1 votes for this block (L28, L36, L49).
    Value(Hash),
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    #[error("vote is for height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error(transparent)]
    Message(#[from] MessageError),
}

/// What adding a vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    /// Counted; the thresholds it crossed for the first time, in a fixed order (Any, Nil, Value).
    Counted(Vec<Threshold>),
    /// An identical vote was already counted.
    Duplicate,
    /// A different vote from the same validator for the same (round, kind): not counted. `evidence` is the
    /// (first, second) pair the first time this slot is seen equivocating, `None` afterwards.
    Equivocation { evidence: Option<Box<(SignedVote, SignedVote)>> },
}

/// Votes of one (round, kind).
#[derive(Debug, Clone, Default)]
struct Tally {
    /// By validator index: one vote each.
    votes: BTreeMap<u16, SignedVote>,
    /// Power per voted value (`None` is nil).
    power: BTreeMap<Option<Hash>, u64>,
    total: u64,
}

/// All votes of one height.
#[derive(Debug, Clone)]
pub struct VoteKeeper {
    height: Height,
    tallies: BTreeMap<(Round, VoteKind), Tally>,
    /// Thresholds already reported, so each is reported once.
    reported: BTreeSet<(Round, VoteKind, Threshold)>,
    /// Slots already reported as equivocating, so each yields evidence once.
    equivocators: BTreeSet<(Round, VoteKind, u16)>,
}

impl VoteKeeper {
    pub fn new(height: Height) -> VoteKeeper {
        VoteKeeper { height, tallies: BTreeMap::new(), reported: BTreeSet::new(), equivocators: BTreeSet::new() }
    }

    pub fn height(&self) -> Height {
        self.height
    }

    /// Verify and add a vote. Memory per (round, kind) is bounded by the validator set size.
    pub fn add(&mut self, chain_id: &str, set: &ValidatorSet, vote: SignedVote) -> Result<AddOutcome, VoteError> {
        if vote.vote.height != self.height {
            return Err(VoteError::WrongHeight { expected: self.height, got: vote.vote.height });
        }
        let key = (vote.vote.round, vote.vote.kind);
        let index = set
            .index_of(&vote.vote.validator)
            .and_then(|i| u16::try_from(i).ok())
            .ok_or(MessageError::NotAValidator(vote.vote.validator))?;
        let existing = self.tallies.get(&key).and_then(|t| t.votes.get(&index));
        if existing == Some(&vote) {
            // Already verified when it was first counted.
            return Ok(AddOutcome::Duplicate);
        }
        vote.verify(chain_id, set)?;
        if let Some(first) = existing {
            let evidence = self.equivocators.insert((key.0, key.1, index)).then(|| Box::new((first.clone(), vote)));
            return Ok(AddOutcome::Equivocation { evidence });
        }
        let power = set.get(usize::from(index)).map_or(0, |v| v.power);
        let value = vote.vote.block_hash;
        let tally = self.tallies.entry(key).or_default();
        tally.votes.insert(index, vote);
        // Cannot overflow: total power is capped at TOTAL_POWER_MAX and each validator counts once.
        tally.total = tally.total.saturating_add(power);
        let for_value = tally.power.entry(value).or_insert(0);
        *for_value = for_value.saturating_add(power);
        let for_value = *for_value;
        let mut crossed = Vec::new();
        if set.is_quorum(tally.total) {
            crossed.push(Threshold::Any);
        }
        if set.is_quorum(for_value) {
            crossed.push(value.map_or(Threshold::Nil, Threshold::Value));
        }
        crossed.retain(|t| self.reported.insert((key.0, key.1, *t)));
        Ok(AddOutcome::Counted(crossed))
    }

    /// True when more than 2/3 of the power voted in (`round`, `kind`), for anything.
    pub fn has_any_quorum(&self, set: &ValidatorSet, round: Round, kind: VoteKind) -> bool {
        self.tallies.get(&(round, kind)).is_some_and(|t| set.is_quorum(t.total))
    }

    /// True when more than 2/3 of the power voted nil in (`round`, `kind`).
    pub fn has_nil_quorum(&self, set: &ValidatorSet, round: Round, kind: VoteKind) -> bool {
        self.power_for(round, kind, None).is_some_and(|p| set.is_quorum(p))
    }

    /// The block that more than 2/3 of the power voted for in (`round`, `kind`), if any. Unique: each
    /// validator counts once, so two values cannot both pass 2/3.
    pub fn quorum_value(&self, set: &ValidatorSet, round: Round, kind: VoteKind) -> Option<Hash> {
        let tally = self.tallies.get(&(round, kind))?;
        tally.power.iter().find_map(|(value, power)| if set.is_quorum(*power) { *value } else { None })
    }

    /// Every vote counted from validator `index` at this height, by (round, kind). For re-gossip: the
    /// shell re-sends its own votes so peers that lost them can still reach a threshold.
    pub fn votes_of(&self, index: u16) -> Vec<SignedVote> {
        self.tallies.values().filter_map(|t| t.votes.get(&index)).cloned().collect()
    }

    /// Rounds that hold precommits, ascending.
    pub fn precommit_rounds(&self) -> Vec<Round> {
        self.tallies.keys().filter(|(_, k)| *k == VoteKind::Precommit).map(|(r, _)| *r).collect()
    }

    /// Signatures of the precommits for `block_hash` in `round`, by increasing validator index.
    pub fn commit_signatures(&self, round: Round, block_hash: Hash) -> Vec<CommitSig> {
        self.tallies
            .get(&(round, VoteKind::Precommit))
            .map(|t| {
                t.votes
                    .iter()
                    .filter(|(_, v)| v.vote.block_hash == Some(block_hash))
                    .map(|(i, v)| CommitSig { validator_index: *i, signature: v.signature })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A certificate from the precommits for `block_hash` in `round`, if they are more than 2/3 of the power.
    pub fn commit_certificate(&self, set: &ValidatorSet, round: Round, block_hash: Hash) -> Option<CommitCertificate> {
        self.power_for(round, VoteKind::Precommit, Some(block_hash)).filter(|p| set.is_quorum(*p))?;
        Some(CommitCertificate {
            height: self.height,
            round,
            block_hash,
            signatures: self.commit_signatures(round, block_hash),
        })
    }

    fn power_for(&self, round: Round, kind: VoteKind, value: Option<Hash>) -> Option<u64> {
        self.tallies.get(&(round, kind)).and_then(|t| t.power.get(&value)).copied()
    }
}
