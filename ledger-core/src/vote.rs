//! Votes and proposals: the signed consensus messages.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

use crate::crypto::{CryptoError, Keypair, PublicKey, Signature, verify_with};
use crate::encoding;
use crate::hash::{Domain, Hash};
use crate::types::{Height, Round};
use crate::validator::ValidatorSet;

/// Prevote or precommit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VoteKind {
    Prevote,
    Precommit,
}

/// A vote for a block hash, or for nothing (`None`, "nil") in a round.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Vote {
    pub kind: VoteKind,
    pub height: Height,
    pub round: Round,
    pub block_hash: Option<Hash>,
    pub validator: PublicKey,
}

/// A vote with its signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct SignedVote {
    pub vote: Vote,
    pub signature: Signature,
}

/// Why a consensus message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("signer {0:?} is not in the validator set")]
    NotAValidator(PublicKey),
    #[error("signature does not verify: {0}")]
    BadSignature(CryptoError),
}

impl Vote {
    pub fn sign(self, chain_id: &str, key: &Keypair) -> SignedVote {
        let signature = key.sign(Domain::VoteSignature, chain_id, &encoding::encode(&self));
        SignedVote { vote: self, signature }
    }
}

impl SignedVote {
    /// Check the signer is in `set` and the signature verifies for `chain_id`.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), MessageError> {
        let index = set.index_of(&self.vote.validator).ok_or(MessageError::NotAValidator(self.vote.validator))?;
        let key = set.verifying_key(index).ok_or(MessageError::NotAValidator(self.vote.validator))?;
        verify_with(key, Domain::VoteSignature, chain_id, &encoding::encode(&self.vote), &self.signature)
            .map_err(MessageError::BadSignature)
    }
}

/// A proposer's claim that `block_hash` is its proposal for (`height`, `round`). `pol_round` is the round
/// of the proof of lock (the paper's `validRound`), `None` for -1.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Proposal {
    pub height: Height,
    pub round: Round,
    pub pol_round: Option<Round>,
    pub block_hash: Hash,
    pub proposer: PublicKey,
}

/// A proposal with its signature.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct SignedProposal {
    pub proposal: Proposal,
    pub signature: Signature,
}

impl Proposal {
    pub fn sign(self, chain_id: &str, key: &Keypair) -> SignedProposal {
        let signature = key.sign(Domain::ProposalSignature, chain_id, &encoding::encode(&self));
        SignedProposal { proposal: self, signature }
    }
}

impl SignedProposal {
    /// Check the signer is in `set` and the signature verifies for `chain_id`. Whether the signer is the
    /// right proposer for the round is a consensus rule, checked there.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), MessageError> {
        let p = &self.proposal;
        let index = set.index_of(&p.proposer).ok_or(MessageError::NotAValidator(p.proposer))?;
        let key = set.verifying_key(index).ok_or(MessageError::NotAValidator(p.proposer))?;
        verify_with(key, Domain::ProposalSignature, chain_id, &encoding::encode(p), &self.signature)
            .map_err(MessageError::BadSignature)
    }
}
