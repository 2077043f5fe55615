//! What a shell around the consensus core decides about blocks, kept here so that the node's driver and the
//! simulator run one implementation (as [`crate::gossip`] does for admission).
//!
//! - [`Candidates`]: the blocks of the current height a shell holds for its core: built here, or carried by
//!   a proposal (fresh or a re-proposal of an earlier round's valid block, whose `header.proposer` is the
//!   validator that built it). The core asks to validate a block, re-broadcasts a proposal, or decides a
//!   block; this table answers from what it holds, remembers what it was asked for and does not hold yet,
//!   and says what to do when that block arrives. Validation checks the timestamp against the shell's
//!   clock and executes a block once; the state changes are kept for the commit.
//! - [`check_synced`]: whether a committed block with its certificate, from a peer's sync answer, may be
//!   applied at a given height, and whether this node's key signed it (the look-back that raises the signer's
//!   floor).
//!
//! Pure: no clock (the caller passes its time), no I/O (the caller executes blocks through a closure).

use std::borrow::Borrow;
use std::collections::BTreeMap;

use crate::cert::{CertError, CommitCertificate};
use crate::{Block, Hash, Height, Round, StateChanges, ValidatorSet};

/// How far ahead of the shell's clock a proposed block's timestamp may be.
pub const TIMESTAMP_DRIFT_MAX_MS: u64 = 10_000;

/// What a shell does with a block that has just arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// Kept; nothing waited for it.
    Stored,
    /// Kept, and the core asked to validate it in `round`: validate now.
    Validate { round: Round },
    /// Kept, and it is the block the core decided without having it: commit now.
    CommitDecided,
    /// Not kept: another height, already held, or the table is full.
    Ignored,
}

/// The verdict on a candidate block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validity {
    Valid,
    Invalid(String),
}

struct Entry<B> {
    block: B,
    /// The block's effect on the parent state, once executed.
    changes: Option<StateChanges>,
}

/// Candidate blocks of one height; see the module documentation. `B` is how the shell holds a block
/// (`Block`, or a shared pointer to one).
pub struct Candidates<B> {
    height: Height,
    max: usize,
    blocks: BTreeMap<Hash, Entry<B>>,
    /// Blocks the core asked to validate before they arrived, with the round it asked for.
    awaiting: BTreeMap<Hash, Round>,
    decided_without_block: Option<Hash>,
}

impl<B: Borrow<Block>> Candidates<B> {
    /// An empty table for `height` holding at most `max` blocks from peers (built blocks always fit).
    pub fn new(height: Height, max: usize) -> Self {
        Candidates { height, max, blocks: BTreeMap::new(), awaiting: BTreeMap::new(), decided_without_block: None }
    }

    pub fn height(&self) -> Height {
        self.height
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    pub fn get(&self, hash: &Hash) -> Option<&B> {
        self.blocks.get(hash).map(|e| &e.block)
    }

    pub fn contains(&self, hash: &Hash) -> bool {
        self.blocks.contains_key(hash)
    }

    /// The decided block this shell lacks (to be fetched from peers), if any.
    pub fn decided_without_block(&self) -> Option<Hash> {
        self.decided_without_block
    }

    /// A block from a peer. Kept when it is of this height, new, and there is room; the answer says whether
    /// the core is waiting for it.
    pub fn on_block(&mut self, block: B) -> Arrival {
        let hash = block.borrow().hash();
        if block.borrow().height() != self.height || self.blocks.contains_key(&hash) || self.blocks.len() >= self.max {
            return Arrival::Ignored;
        }
        self.blocks.insert(hash, Entry { block, changes: None });
        if self.decided_without_block == Some(hash) {
            self.decided_without_block = None;
            return Arrival::CommitDecided;
        }
        match self.awaiting.remove(&hash) {
            Some(round) => Arrival::Validate { round },
            None => Arrival::Stored,
        }
    }

    /// A block this shell built, with its state changes (so it is never executed again).
    pub fn insert_built(&mut self, block: B, changes: StateChanges) -> Hash {
        let hash = block.borrow().hash();
        self.blocks.insert(hash, Entry { block, changes: Some(changes) });
        hash
    }

    /// The core asks to validate `hash` in `round`: true when the block is here (validate it now); else it
    /// is awaited and [`Candidates::on_block`] answers `Validate` when it comes.
    pub fn request_validation(&mut self, round: Round, hash: Hash) -> bool {
        if self.blocks.contains_key(&hash) {
            return true;
        }
        self.awaiting.insert(hash, round);
        false
    }

    /// The core decided `hash`: true when the block is here (commit it now); else it is remembered and
    /// [`Candidates::on_block`] answers `CommitDecided` when it comes.
    pub fn on_decided(&mut self, hash: Hash) -> bool {
        if self.blocks.contains_key(&hash) {
            return true;
        }
        self.decided_without_block = Some(hash);
        false
    }

    /// Judge the block `hash` for the core: refused when its timestamp is more than
    /// [`TIMESTAMP_DRIFT_MAX_MS`] ahead of `now_ms`; else executed by `execute` (outer error: the shell's
    /// own failure, e.g. storage; inner: the block is invalid) unless it already was. `None` when the block
    /// is not here.
    pub fn validate<E>(
        &mut self,
        hash: &Hash,
        now_ms: u64,
        execute: impl FnOnce(&Block) -> Result<Result<StateChanges, String>, E>,
    ) -> Result<Option<Validity>, E> {
        let Some(entry) = self.blocks.get_mut(hash) else { return Ok(None) };
        if entry.changes.is_some() {
            return Ok(Some(Validity::Valid));
        }
        let block = entry.block.borrow();
        let drift_max = now_ms.saturating_add(TIMESTAMP_DRIFT_MAX_MS);
        if block.header.timestamp_ms > drift_max {
            return Ok(Some(Validity::Invalid(format!(
                "timestamp {} ms is more than {TIMESTAMP_DRIFT_MAX_MS} ms ahead of this node's clock ({now_ms} ms)",
                block.header.timestamp_ms
            ))));
        }
        Ok(Some(match execute(block)? {
            Ok(changes) => {
                entry.changes = Some(changes);
                Validity::Valid
            }
            Err(reason) => Validity::Invalid(reason),
        }))
    }

    /// Take the decided block `hash` out with its state changes, executing it if it never was (a block
    /// validated by the core's quorum but not yet here when the core asked). `None` when it is not here.
    pub fn take_decided<E>(
        &mut self,
        hash: &Hash,
        execute: impl FnOnce(&Block) -> Result<Result<StateChanges, String>, E>,
    ) -> Result<Option<(B, Result<StateChanges, String>)>, E> {
        let Some(entry) = self.blocks.remove(hash) else { return Ok(None) };
        let changes = match entry.changes {
            Some(c) => Ok(c),
            None => execute(entry.block.borrow())?,
        };
        Ok(Some((entry.block, changes)))
    }

    /// Forget everything and hold blocks of `height` from now on.
    pub fn start_height(&mut self, height: Height) {
        self.height = height;
        self.blocks.clear();
        self.awaiting.clear();
        self.decided_without_block = None;
    }
}

/// What a shell does with one block of a peer's sync answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncedBlock {
    /// Below the expected height (committed meanwhile): skip it.
    Stale,
    /// Above the expected height: the answer does not continue this chain; stop.
    Gap,
    /// The certificate does not commit this block at this height: the peer is wrong; stop.
    BadCertificate(CertError),
    /// Apply it (after executing it). `signed_by_me`: this node's key is in the certificate, so it signed
    /// at this height, here or in a life it forgot; the signer's floor must be raised above it first.
    Apply { signed_by_me: bool },
}

/// Judge `block` with `cert` from a sync answer, for a shell whose next height is `expected`. `me` is this
/// node's index in `validators`, if it is one.
pub fn check_synced(
    chain_id: &str,
    validators: &ValidatorSet,
    expected: Height,
    block: &Block,
    cert: &CommitCertificate,
    me: Option<usize>,
) -> SyncedBlock {
    let height = block.height();
    if height < expected {
        return SyncedBlock::Stale;
    }
    if height > expected {
        return SyncedBlock::Gap;
    }
    if let Err(e) = cert.verify_for(chain_id, validators, height, block.hash()) {
        return SyncedBlock::BadCertificate(e);
    }
    let signed_by_me = me.is_some_and(|me| cert.signatures.iter().any(|s| usize::from(s.validator_index) == me));
    SyncedBlock::Apply { signed_by_me }
}

#[cfg(test)]
mod tests;
