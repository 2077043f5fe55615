//! The signer guard: the one place where this validator's consensus key signs.
//!
//! Invariant I7 (no honest double-sign) is enforced here, not in the round logic: the guard remembers the
//! last (height, round, step) it signed and refuses anything at or below it, except the very same payload,
//! which it answers with the stored signed message. The node persists [`SignerState`] (durably) before it
//! broadcasts the message it guards, and hands it back at construction after a restart.
//!
//! The state also carries the look-back floor: no height at or below it is ever signed. The shell raises it
//! from what it finds of this key elsewhere (certificates in its store or from sync, messages with this key
//! that this process did not sign), so a validator whose signer state was lost or rewound still never signs
//! at a height where its key already signed (I11). It only ever rises, and is persisted with the rest.
//!
//! The state also carries the lock (the paper's `lockedValue`/`lockedRound`), because forgetting a lock
//! across a restart would let the validator prevote against its own precommit: a safety fault as real as a
//! double sign. The lock only changes together with a precommit (L36-L41), so one persist covers both.

use borsh::{BorshDeserialize, BorshSerialize};

use crate::crypto::Keypair;
use crate::hash::Hash;
use crate::types::{Height, Round};
use crate::vote::{Proposal, SignedProposal, SignedVote, Vote, VoteKind};

/// The step of a signed message, in signing order within a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, BorshSerialize, BorshDeserialize)]
pub enum SignStep {
    Propose,
    Prevote,
    Precommit,
}

/// A message this validator signed.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub enum SignedMessage {
    Proposal(SignedProposal),
    Vote(SignedVote),
}

/// A lock (or a valid value): a block hash and the round whose polka justified it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Lock {
    pub round: Round,
    pub block_hash: Hash,
}

/// What the node persists for the signer. `Default` is the state of a validator that never signed.
#[derive(Clone, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SignerState {
    last: Option<SignedMessage>,
    /// The lock held at `lock_height`; meaningless at any other height.
    lock: Option<(Height, Lock)>,
    /// Nothing is signed at or below this height (0: no floor).
    floor: Height,
}

/// The answer of the guard to a request to sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Signing<T> {
    /// Signed for the first time: persist the state, then broadcast.
    Fresh(T),
    /// The same payload was signed before: here is the stored message, nothing new to persist.
    Repeat(T),
    /// Refused: it would conflict with what was signed at `last`.
    Refused,
}

impl SignedMessage {
    /// (height, round, step) of the message: the order the guard enforces.
    pub fn position(&self) -> (Height, Round, SignStep) {
        match self {
            SignedMessage::Proposal(p) => (p.proposal.height, p.proposal.round, SignStep::Propose),
            SignedMessage::Vote(v) => (v.vote.height, v.vote.round, vote_step(v.vote.kind)),
        }
    }
}

pub(crate) fn vote_step(kind: VoteKind) -> SignStep {
    match kind {
        VoteKind::Prevote => SignStep::Prevote,
        VoteKind::Precommit => SignStep::Precommit,
    }
}

impl SignerState {
    /// The last message signed, if any.
    pub fn last_signed(&self) -> Option<&SignedMessage> {
        self.last.as_ref()
    }

    /// (height, round, step) of the last message signed.
    pub fn position(&self) -> Option<(Height, Round, SignStep)> {
        self.last.as_ref().map(SignedMessage::position)
    }

    /// The lock held at `height`, if any.
    pub fn lock_at(&self, height: Height) -> Option<Lock> {
        self.lock.filter(|(h, _)| *h == height).map(|(_, l)| l)
    }

    /// The look-back floor: nothing at or below this height is signed.
    pub fn floor(&self) -> Height {
        self.floor
    }

    /// Raise the floor to `height` (never lowers it). True if it rose.
    pub fn raise_floor(&mut self, height: Height) -> bool {
        if height > self.floor {
            self.floor = height;
            true
        } else {
            false
        }
    }

    /// A state from its parts, as an older encoding without the floor held them (floor 0).
    pub fn from_parts(last: Option<SignedMessage>, lock: Option<(Height, Lock)>) -> SignerState {
        SignerState { last, lock, floor: Height::GENESIS }
    }

    /// A state that never signed, with `floor` as its look-back floor.
    pub fn with_floor(floor: Height) -> SignerState {
        SignerState { floor, ..SignerState::default() }
    }

    pub(crate) fn set_lock(&mut self, height: Height, lock: Lock) {
        self.lock = Some((height, lock));
    }

    /// Sign `vote` unless it conflicts with what was signed before.
    pub(crate) fn sign_vote(&mut self, chain_id: &str, key: &Keypair, vote: Vote) -> Signing<SignedVote> {
        let position = (vote.height, vote.round, vote_step(vote.kind));
        match self.check(position) {
            Check::Above => {
                let signed = vote.sign(chain_id, key);
                self.last = Some(SignedMessage::Vote(signed.clone()));
                Signing::Fresh(signed)
            }
            Check::Same => match &self.last {
                Some(SignedMessage::Vote(v)) if v.vote == vote => Signing::Repeat(v.clone()),
                _ => Signing::Refused,
            },
            Check::Below => Signing::Refused,
        }
    }

    /// Sign `proposal` unless it conflicts with what was signed before.
    pub(crate) fn sign_proposal(
        &mut self,
        chain_id: &str,
        key: &Keypair,
        proposal: Proposal,
    ) -> Signing<SignedProposal> {
        let position = (proposal.height, proposal.round, SignStep::Propose);
        match self.check(position) {
            Check::Above => {
                let signed = proposal.sign(chain_id, key);
                self.last = Some(SignedMessage::Proposal(signed.clone()));
                Signing::Fresh(signed)
            }
            Check::Same => match &self.last {
                Some(SignedMessage::Proposal(p)) if p.proposal == proposal => Signing::Repeat(p.clone()),
                _ => Signing::Refused,
            },
            Check::Below => Signing::Refused,
        }
    }

    fn check(&self, position: (Height, Round, SignStep)) -> Check {
        match self.position() {
            // The very message signed last may be sent again, whatever the floor says.
            Some(last) if position == last => Check::Same,
            Some(last) if position < last => Check::Below,
            _ if position.0 <= self.floor => Check::Below,
            _ => Check::Above,
        }
    }
}

enum Check {
    Above,
    Same,
    Below,
}
