//! Blocks: a header that commits to everything, the transactions, and the previous block's certificate.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::Serialize;

use crate::cert::{CertError, CommitCertificate};
use crate::crypto::PublicKey;
use crate::encoding::{self, DecodeError};
use crate::governance::{Approval, Evidence, GovError, GovState};
use crate::hash::{Domain, Hash};
use crate::merkle;
use crate::params::ConsensusParams;
use crate::tx::SignedTransaction;
use crate::types::Height;

/// Version of the block format and state-transition rules (3: the state root is a sparse Merkle tree root).
pub const PROTOCOL_VERSION: u32 = 3;

/// The header. Its hash is the block hash, so it commits to the txs (Merkle root), the state after the
/// block, and the certificate of the previous block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct BlockHeader {
    pub version: u32,
    pub chain_id: String,
    pub height: Height,
    /// Hash of the previous block; for height 1, the genesis hash.
    pub prev_block_hash: Hash,
    /// Proposer's wall clock in milliseconds since the Unix epoch; never below the parent's.
    pub timestamp_ms: u64,
    pub proposer: PublicKey,
    pub tx_count: u32,
    pub tx_root: Hash,
    /// State root after applying this block's transactions.
    pub state_root: Hash,
    /// Hash of `Block::last_commit`; [`Hash::ZERO`] at height 1, which has none.
    pub last_commit_hash: Hash,
    /// Hash of the validator set that certifies this block (the set of this height).
    pub validators_hash: Hash,
    /// Hash of the set of the next height. Changes decided in this block apply from the height after
    /// next, so this set was fixed by the previous block: a client that trusts this header knows who
    /// certifies the next one.
    pub next_validators_hash: Hash,
    /// Hash of the block's approvals and evidence ([`crate::governance::ops_hash`]); zero when none.
    pub ops_hash: Hash,
    /// Hash of the governance state after this block ([`crate::governance::GovState::root`]).
    pub gov_root: Hash,
}

impl BlockHeader {
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::BlockHeader, &encoding::encode(self))
    }
}

/// A block.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize)]
pub struct Block {
    pub header: BlockHeader,
    pub txs: Vec<SignedTransaction>,
    /// Certificate that committed the previous block (`None` only at height 1).
    pub last_commit: Option<CommitCertificate>,
    /// Validators' approvals of validator-set changes.
    pub approvals: Vec<Approval>,
    /// Equivocation evidence.
    pub evidence: Vec<Evidence>,
}

/// Why a block was refused before or besides executing it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("malformed block: {0}")]
    Malformed(DecodeError),
    #[error("block has version {got}, expected {expected}")]
    WrongVersion { expected: u32, got: u32 },
    #[error("block is for chain {got:?}, expected {expected:?}")]
    WrongChain { expected: String, got: String },
    #[error("block is at height {got}, expected {expected}")]
    WrongHeight { expected: Height, got: Height },
    #[error("block's previous hash is {got}, expected {expected}")]
    WrongPrevHash { expected: Hash, got: Hash },
    #[error("block timestamp {got} is before its parent's {parent}")]
    TimestampBeforeParent { parent: u64, got: u64 },
    #[error("block has {n} transactions, limit is {max}")]
    TooManyTxs { n: usize, max: u32 },
    #[error("block is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: u32 },
    #[error("header tx count {header} does not match the {actual} transactions")]
    TxCountMismatch { header: u32, actual: usize },
    #[error("tx root {got} does not match the transactions' {expected}")]
    TxRootMismatch { expected: Hash, got: Hash },
    #[error("last commit hash does not match the certificate carried")]
    LastCommitHashMismatch,
    #[error("missing certificate of the previous block")]
    MissingLastCommit,
    #[error("unexpected certificate in the first block")]
    UnexpectedLastCommit,
    #[error("certificate of the previous block is invalid: {0}")]
    BadLastCommit(CertError),
    #[error("proposer {0:?} is not a validator")]
    UnknownProposer(PublicKey),
    #[error("transaction {index} appears twice in the block")]
    DuplicateTx { index: usize },
    #[error("transaction {index} is invalid: {error}")]
    BadTx { index: usize, error: crate::tx::TxError },
    #[error("state root {got} does not match the computed {expected}")]
    StateRootMismatch { expected: Hash, got: Hash },
    #[error("validators hash {got} is not the hash {expected} of this height's set")]
    ValidatorsHashMismatch { expected: Hash, got: Hash },
    #[error("next validators hash {got} is not the hash {expected} of the next height's set")]
    NextValidatorsHashMismatch { expected: Hash, got: Hash },
    #[error("operations hash does not match the approvals and evidence carried")]
    OpsHashMismatch,
    #[error("governance root {got} does not match the computed {expected}")]
    GovRootMismatch { expected: Hash, got: Hash },
    #[error("operation {index} is invalid: {error}")]
    BadOp { index: usize, error: GovError },
    #[error("the governance state is for height {got}, the parent is at {expected}")]
    GovStateHeight { expected: Height, got: Height },
}

/// What a block is checked against: the block it extends (or genesis for height 1).
#[derive(Clone, Copy, Debug)]
pub struct Parent<'a> {
    pub height: Height,
    pub hash: Hash,
    pub timestamp_ms: u64,
    /// The chain id every block must carry.
    pub chain_id: &'a str,
}

impl Block {
    pub fn hash(&self) -> Hash {
        self.header.hash()
    }

    pub fn height(&self) -> Height {
        self.header.height
    }

    /// Decode canonical bytes, refusing more than `block_bytes_max` before parsing.
    pub fn decode(bytes: &[u8], block_bytes_max: usize) -> Result<Block, BlockError> {
        encoding::decode(bytes, block_bytes_max).map_err(BlockError::Malformed)
    }

    pub fn encode(&self) -> Vec<u8> {
        // The transactions are nearly all of it; the rest grows the buffer once at most.
        encoding::encode_sized(self, SignedTransaction::total_encoded_len(&self.txs).saturating_add(4096))
    }

    pub fn tx_ids(&self) -> Vec<Hash> {
        self.txs.iter().map(SignedTransaction::id).collect()
    }

    /// Checks that need no account state: format, limits, links to the parent, the previous
    /// certificate (verified against the parent's set, `gov.current`), the proposer and the validators hash
    /// (this height's set, `gov.next`), tx root, operations hash, no duplicate tx. `gov` is the governance
    /// state after the parent.
    pub fn check_against_parent(
        &self,
        parent: &Parent<'_>,
        gov: &GovState,
        params: &ConsensusParams,
    ) -> Result<(), BlockError> {
        let h = &self.header;
        if gov.height != parent.height {
            return Err(BlockError::GovStateHeight { expected: parent.height, got: gov.height });
        }
        let validators = &gov.next;
        if h.validators_hash != validators.hash() {
            return Err(BlockError::ValidatorsHashMismatch { expected: validators.hash(), got: h.validators_hash });
        }
        if h.ops_hash != crate::governance::ops_hash(&self.approvals, &self.evidence) {
            return Err(BlockError::OpsHashMismatch);
        }
        if h.version != PROTOCOL_VERSION {
            return Err(BlockError::WrongVersion { expected: PROTOCOL_VERSION, got: h.version });
        }
        if h.chain_id != parent.chain_id {
            return Err(BlockError::WrongChain { expected: parent.chain_id.to_string(), got: h.chain_id.clone() });
        }
        let expected_height = parent.height.next();
        if h.height != expected_height {
            return Err(BlockError::WrongHeight { expected: expected_height, got: h.height });
        }
        if h.prev_block_hash != parent.hash {
            return Err(BlockError::WrongPrevHash { expected: parent.hash, got: h.prev_block_hash });
        }
        if h.timestamp_ms < parent.timestamp_ms {
            return Err(BlockError::TimestampBeforeParent { parent: parent.timestamp_ms, got: h.timestamp_ms });
        }
        if validators.index_of(&h.proposer).is_none() {
            return Err(BlockError::UnknownProposer(h.proposer));
        }
        if self.txs.len() > params.txs_per_block_max as usize {
            return Err(BlockError::TooManyTxs { n: self.txs.len(), max: params.txs_per_block_max });
        }
        if h.tx_count as usize != self.txs.len() {
            return Err(BlockError::TxCountMismatch { header: h.tx_count, actual: self.txs.len() });
        }
        let len = self.encode().len();
        if len > params.block_bytes_max as usize {
            return Err(BlockError::TooLarge { len, max: params.block_bytes_max });
        }
        let ids = self.tx_ids();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            let index = ids.iter().position(|id| *id == w[0]).unwrap_or(0);
            return Err(BlockError::DuplicateTx { index });
        }
        let tx_root = merkle::root(&ids);
        if tx_root != h.tx_root {
            return Err(BlockError::TxRootMismatch { expected: tx_root, got: h.tx_root });
        }
        match (&self.last_commit, parent.height) {
            (None, Height::GENESIS) => {
                if h.last_commit_hash != Hash::ZERO {
                    return Err(BlockError::LastCommitHashMismatch);
                }
            }
            (Some(_), Height::GENESIS) => return Err(BlockError::UnexpectedLastCommit),
            (None, _) => return Err(BlockError::MissingLastCommit),
            (Some(cert), _) => {
                if cert.hash() != h.last_commit_hash {
                    return Err(BlockError::LastCommitHashMismatch);
                }
                cert.verify_for(parent.chain_id, &gov.current, parent.height, parent.hash)
                    .map_err(BlockError::BadLastCommit)?;
            }
        }
        Ok(())
    }
}
