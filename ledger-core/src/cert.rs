//! Commit certificates: the proof that more than 2/3 of voting power precommitted a block.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

use crate::crypto::{CryptoError, Signature, verify_with};
use crate::encoding;
use crate::hash::{Domain, Hash};
use crate::types::{Height, Round};
use crate::validator::ValidatorSet;
use crate::vote::{Vote, VoteKind};

/// One precommit signature in a certificate, by validator index in the set.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct CommitSig {
    pub validator_index: u16,
    pub signature: Signature,
}

/// Precommits for `block_hash` at (`height`, `round`) from more than 2/3 of the voting power.
/// Signatures are sorted by strictly increasing validator index, so each signer appears once and the
/// encoding of a given set of signatures is unique.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct CommitCertificate {
    pub height: Height,
    pub round: Round,
    pub block_hash: Hash,
    pub signatures: Vec<CommitSig>,
}

/// Why a certificate was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("certificate is for height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("certificate is for block {got}, expected {expected}")]
    WrongBlock { expected: Hash, got: Hash },
    #[error("validator index {index} is out of range for a set of {n}")]
    UnknownValidator { index: u16, n: usize },
    #[error("signatures are not in strictly increasing validator order at index {index}")]
    NotSortedOrDuplicate { index: u16 },
    #[error("signature of validator {index} does not verify: {error}")]
    BadSignature { index: u16, error: CryptoError },
    #[error("signers hold {signed} of {total} voting power, not more than 2/3")]
    InsufficientPower { signed: u64, total: u64 },
}

impl CommitCertificate {
    /// Hash committed to by the next block's header.
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Commit, &encoding::encode(self))
    }

    /// The precommit that validator `index` signed, as reconstructed from this certificate.
    pub fn precommit_for(&self, set: &ValidatorSet, index: u16) -> Option<Vote> {
        set.get(index as usize).map(|v| Vote {
            kind: VoteKind::Precommit,
            height: self.height,
            round: self.round,
            block_hash: Some(self.block_hash),
            validator: v.public_key,
        })
    }

    /// Verify against `set`: distinct known signers in order, every signature valid (`verify_strict`) for
    /// a precommit of this (height, round, block) on `chain_id`, and more than 2/3 of the power.
    pub fn verify(&self, chain_id: &str, set: &ValidatorSet) -> Result<(), CertError> {
        let mut signed: u64 = 0;
        let mut previous: Option<u16> = None;
        for sig in &self.signatures {
            let index = sig.validator_index;
            if previous.is_some_and(|p| index <= p) {
                return Err(CertError::NotSortedOrDuplicate { index });
            }
            previous = Some(index);
            let (Some(vote), Some(key)) = (self.precommit_for(set, index), set.verifying_key(index as usize)) else {
                return Err(CertError::UnknownValidator { index, n: set.len() });
            };
            verify_with(key, Domain::VoteSignature, chain_id, &encoding::encode(&vote), &sig.signature)
                .map_err(|error| CertError::BadSignature { index, error })?;
            // Cannot overflow: total power is capped at TOTAL_POWER_MAX and each signer counts once.
            signed = signed.saturating_add(set.validators()[index as usize].power);
        }
        if !set.is_quorum(signed) {
            return Err(CertError::InsufficientPower { signed, total: set.total_power() });
        }
        Ok(())
    }

    /// Verify and also check it certifies `block_hash` at `height`.
    pub fn verify_for(
        &self,
        chain_id: &str,
        set: &ValidatorSet,
        height: Height,
        block_hash: Hash,
    ) -> Result<(), CertError> {
        if self.height != height {
            return Err(CertError::WrongHeight { expected: height, got: self.height });
        }
        if self.block_hash != block_hash {
            return Err(CertError::WrongBlock { expected: block_hash, got: self.block_hash });
        }
        self.verify(chain_id, set)
    }
}
