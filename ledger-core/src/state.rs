//! Account state and the state transition.
//!
//! State is a map from address to [`Account`]. Its root is the root of a compressed sparse Merkle tree
//! ([`crate::statetree`]): a block's changed accounts are applied to the parent's tree in one sorted batch,
//! and any account's presence or absence can be proven against a header's `state_root`.
//!
//! Storage is the [`AccountStore`] trait: the node backs it with sled, tests with [`MemStore`].

use std::collections::BTreeMap;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::block::{Block, BlockError, BlockHeader, PROTOCOL_VERSION, Parent};
use crate::cert::CommitCertificate;
use crate::crypto::Address;
use crate::governance::{Approval, Evidence, GovEvents, GovState};
use crate::hash::Hash;
use crate::merkle;
use crate::params::ConsensusParams;
use crate::statetree::StateTree;
use crate::tx::{SignedTransaction, TxError, TxId};
use crate::types::Height;

/// An account: its balance and the nonce its next transaction must carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, BorshSerialize, BorshDeserialize, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

impl Account {
    /// An account with no balance and no transactions is the same as no account.
    pub fn is_empty(&self) -> bool {
        self.balance == 0 && self.nonce == 0
    }
}

/// A storage failure, reported by an [`AccountStore`] implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("storage failure: {0}")]
pub struct StoreError(pub String);

/// Read access to committed account state.
pub trait AccountStore {
    /// The account at `address`, or the empty account.
    fn account(&self, address: &Address) -> Result<Account, StoreError>;
}

/// Everything a transaction is applied in: which chain, which limits, which block.
#[derive(Clone, Copy, Debug)]
pub struct TxContext<'a> {
    pub chain_id: &'a str,
    pub params: &'a ConsensusParams,
    pub height: Height,
    /// Receives the fees.
    pub proposer: Address,
}

/// Why applying a transaction failed: the transaction is invalid, or storage failed under it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Tx(#[from] TxError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Uncommitted changes on top of an [`AccountStore`]: what a block (or a mempool check) has done so far.
pub struct StateOverlay<'s, S: AccountStore + ?Sized> {
    base: &'s S,
    /// For each touched account: its committed value and its current value.
    touched: BTreeMap<Address, (Account, Account)>,
}

impl<'s, S: AccountStore + ?Sized> StateOverlay<'s, S> {
    pub fn new(base: &'s S) -> Self {
        StateOverlay { base, touched: BTreeMap::new() }
    }

    /// Current value of `address`, counting changes made so far.
    pub fn account(&mut self, address: &Address) -> Result<Account, StoreError> {
        if let Some((_, now)) = self.touched.get(address) {
            return Ok(*now);
        }
        let committed = self.base.account(address)?;
        self.touched.insert(*address, (committed, committed));
        Ok(committed)
    }

    fn set(&mut self, address: Address, account: Account) {
        if let Some(entry) = self.touched.get_mut(&address) {
            entry.1 = account;
        }
    }

    /// Apply one transaction: every check, then the transfer, or nothing at all.
    /// `signature_verified` says this exact transaction (by id) already passed
    /// [`SignedTransaction::check_stateless`] (keys and signature; the mempool remembers this), so those
    /// checks are not repeated.
    pub fn apply_tx(
        &mut self,
        ctx: &TxContext<'_>,
        stx: &SignedTransaction,
        signature_verified: bool,
    ) -> Result<(), ApplyError> {
        if signature_verified {
            stx.check_without_signature(ctx.chain_id, ctx.params)?;
        } else {
            stx.check_stateless(ctx.chain_id, ctx.params)?;
        }
        let tx = stx.tx();
        if ctx.height.0 > tx.expiry_height {
            return Err(TxError::Expired { expiry_height: tx.expiry_height, height: ctx.height.0 }.into());
        }
        let mut sender = self.account(&tx.sender)?;
        if tx.nonce != sender.nonce {
            return Err(TxError::WrongNonce { expected: sender.nonce, got: tx.nonce }.into());
        }
        let needed = u128::from(tx.amount) + u128::from(tx.fee);
        if u128::from(sender.balance) < needed {
            return Err(TxError::InsufficientFunds { balance: sender.balance, needed }.into());
        }
        // Compute every new value before writing any, so a failure leaves no partial change. Sender,
        // recipient and proposer may be the same account: apply in sequence on local copies.
        let mut local: Vec<(Address, Account)> = Vec::with_capacity(3);
        sender.balance -= needed as u64; // needed <= balance, checked above
        sender.nonce = sender.nonce.checked_add(1).ok_or(TxError::Overflow)?;
        local.push((tx.sender, sender));
        for (address, credit) in [(tx.recipient, tx.amount), (ctx.proposer, tx.fee)] {
            let current = match local.iter().find(|(a, _)| *a == address) {
                Some((_, acc)) => *acc,
                None => self.account(&address)?,
            };
            let updated = Account {
                balance: current.balance.checked_add(credit).ok_or(TxError::Overflow)?,
                nonce: current.nonce,
            };
            match local.iter_mut().find(|(a, _)| *a == address) {
                Some(slot) => slot.1 = updated,
                None => local.push((address, updated)),
            }
        }
        for (address, account) in local {
            self.set(address, account);
        }
        Ok(())
    }

    /// Finish: the changed accounts (sorted by address) and the new state tree, from `tree`, the tree of
    /// the base state, with the governance state after the block. Cost is proportional to the accounts
    /// touched (times the tree's depth).
    pub fn finish(self, tree: &StateTree, gov: GovState, gov_events: GovEvents) -> StateChanges {
        let accounts: Vec<(Address, Account)> = self
            .touched
            .into_iter()
            .filter(|(_, (before, after))| before != after)
            .map(|(address, (_, after))| (address, after))
            .collect();
        let tree = tree.apply(accounts.iter().copied());
        let state_root = tree.root();
        StateChanges { accounts, tree, state_root, gov, gov_events }
    }
}

/// The result of executing transactions: what to write, and the new state commitment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateChanges {
    /// Changed accounts with their new values, sorted by address.
    pub accounts: Vec<(Address, Account)>,
    /// The state tree after the block (shares every unchanged node with the one before).
    pub tree: StateTree,
    pub state_root: Hash,
    /// The governance state after the block (validator sets, pending changes, jailed validators).
    pub gov: GovState,
    /// What the block decided in governance.
    pub gov_events: GovEvents,
}

/// Execute a block on `store` (whose state tree is `tree`) and `gov` (the governance state after the
/// parent), after the stateless block checks, and compare the resulting state root, next validators hash and
/// governance root with the header's. `verified(id)` tells which tx signatures are already known to be valid.
pub fn apply_block<S: AccountStore + ?Sized>(
    store: &S,
    tree: &StateTree,
    gov: &GovState,
    block: &Block,
    parent: &Parent<'_>,
    params: &ConsensusParams,
    verified: &dyn Fn(&TxId) -> bool,
) -> Result<StateChanges, ApplyBlockError> {
    block.check_against_parent(parent, gov, params)?;
    let ctx = TxContext { chain_id: parent.chain_id, params, height: block.height(), proposer: block.header.proposer };
    let mut overlay = StateOverlay::new(store);
    for (index, tx) in block.txs.iter().enumerate() {
        match overlay.apply_tx(&ctx, tx, verified(&tx.id())) {
            Ok(()) => {}
            Err(ApplyError::Tx(error)) => return Err(BlockError::BadTx { index, error }.into()),
            Err(ApplyError::Store(e)) => return Err(ApplyBlockError::Store(e)),
        }
    }
    let (gov, events) = gov
        .apply_block(parent.chain_id, block.height(), &block.approvals, &block.evidence)
        .map_err(|(index, error)| BlockError::BadOp { index, error })?;
    let h = &block.header;
    if h.next_validators_hash != gov.next.hash() {
        return Err(
            BlockError::NextValidatorsHashMismatch { expected: gov.next.hash(), got: h.next_validators_hash }.into()
        );
    }
    let gov_root = gov.root();
    if h.gov_root != gov_root {
        return Err(BlockError::GovRootMismatch { expected: gov_root, got: h.gov_root }.into());
    }
    let changes = overlay.finish(tree, gov, events);
    if changes.state_root != block.header.state_root {
        return Err(BlockError::StateRootMismatch { expected: changes.state_root, got: block.header.state_root }.into());
    }
    Ok(changes)
}

/// Why [`apply_block`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyBlockError {
    #[error(transparent)]
    Invalid(#[from] BlockError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a proposer puts in a block besides transactions.
#[derive(Clone, Debug)]
pub struct BlockTemplate<'a> {
    pub parent: Parent<'a>,
    pub proposer: Address,
    pub timestamp_ms: u64,
    pub last_commit: Option<CommitCertificate>,
    /// Candidate approvals and evidence (those that do not apply are left out).
    pub approvals: Vec<Approval>,
    pub evidence: Vec<Evidence>,
}

/// A block built by [`build_block`], with the state changes it makes and the candidates left out.
#[derive(Debug)]
pub struct BuiltBlock {
    pub block: Block,
    pub changes: StateChanges,
    /// Candidates that failed to apply, with why (the mempool evicts or keeps them by reason).
    pub rejected: Vec<(TxId, TxError)>,
}

/// Build a block from `candidates`, in order, keeping those that apply and fit the limits. Candidates after
/// the block is full are neither included nor rejected.
pub fn build_block<S: AccountStore + ?Sized>(
    store: &S,
    tree: &StateTree,
    gov: &GovState,
    template: BlockTemplate<'_>,
    params: &ConsensusParams,
    candidates: impl IntoIterator<Item = SignedTransaction>,
    verified: &dyn Fn(&TxId) -> bool,
) -> Result<BuiltBlock, StoreError> {
    let BlockTemplate { parent, proposer, timestamp_ms, last_commit, approvals, evidence } = template;
    let height = parent.height.next();
    let (approvals, evidence, _) = gov.select_ops(parent.chain_id, height, approvals, evidence);
    let ops_bytes = crate::encoding::encode(&approvals).len() + crate::encoding::encode(&evidence).len();
    let ctx = TxContext { chain_id: parent.chain_id, params, height, proposer };
    let mut overlay = StateOverlay::new(store);
    let mut txs = Vec::new();
    let mut rejected = Vec::new();
    // Room for the header and certificate: a generous fixed allowance below block_bytes_max.
    let cert_bytes = last_commit.as_ref().map_or(0, |c| 64 + c.signatures.len() * 66);
    let mut bytes_left = (params.block_bytes_max as usize).saturating_sub(1024 + cert_bytes + ops_bytes);
    let mut seen = std::collections::BTreeSet::new();
    for tx in candidates {
        if txs.len() >= params.txs_per_block_max as usize {
            break;
        }
        let len = tx.encoded_len();
        if len > bytes_left {
            break;
        }
        if !seen.insert(tx.id()) {
            continue;
        }
        match overlay.apply_tx(&ctx, &tx, verified(&tx.id())) {
            Ok(()) => {
                bytes_left -= len;
                txs.push(tx);
            }
            Err(ApplyError::Tx(e)) => rejected.push((tx.id(), e)),
            Err(ApplyError::Store(e)) => return Err(e),
        }
    }
    // The operations were selected against `gov`, so applying them cannot fail; if it did, the block
    // carries none rather than be invalid.
    let (approvals, evidence, (gov_after, events)) =
        match gov.apply_block(parent.chain_id, height, &approvals, &evidence) {
            Ok(r) => (approvals, evidence, r),
            Err(_) => {
                let r =
                    gov.apply_block(parent.chain_id, height, &[], &[]).map_err(|(_, e)| StoreError(e.to_string()))?;
                (Vec::new(), Vec::new(), r)
            }
        };
    let validators_hash = gov.next.hash();
    let next_validators_hash = gov_after.next.hash();
    let gov_root = gov_after.root();
    let ops_hash = crate::governance::ops_hash(&approvals, &evidence);
    let changes = overlay.finish(tree, gov_after, events);
    let ids: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
    let header = BlockHeader {
        version: PROTOCOL_VERSION,
        chain_id: parent.chain_id.to_string(),
        height,
        prev_block_hash: parent.hash,
        timestamp_ms: timestamp_ms.max(parent.timestamp_ms),
        proposer,
        tx_count: txs.len() as u32,
        tx_root: merkle::root(&ids),
        state_root: changes.state_root,
        last_commit_hash: last_commit.as_ref().map_or(Hash::ZERO, CommitCertificate::hash),
        validators_hash,
        next_validators_hash,
        ops_hash,
        gov_root,
    };
    Ok(BuiltBlock { block: Block { header, txs, last_commit, approvals, evidence }, changes, rejected })
}

/// Account state in memory, for tests, the simulator and tools.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    accounts: BTreeMap<Address, Account>,
    tree: StateTree,
    /// The governance state beside the accounts (`None` for a store not made from a genesis).
    gov: Option<GovState>,
}

impl MemStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn tree(&self) -> &StateTree {
        &self.tree
    }

    pub fn state_root(&self) -> Hash {
        self.tree.root()
    }

    /// The governance state after the last committed block (from genesis: the genesis set).
    pub fn gov(&self) -> Option<&GovState> {
        self.gov.as_ref()
    }

    pub fn set_gov(&mut self, gov: GovState) {
        self.gov = Some(gov);
    }

    /// Write changes produced on top of this store.
    pub fn commit(&mut self, changes: &StateChanges) {
        self.gov = Some(changes.gov.clone());
        for (address, account) in &changes.accounts {
            if account.is_empty() {
                self.accounts.remove(address);
            } else {
                self.accounts.insert(*address, *account);
            }
        }
        self.tree = changes.tree.clone();
    }

    /// Set an account directly (genesis allocation), keeping the state tree in step.
    pub fn set_account(&mut self, address: Address, account: Account) {
        self.tree = self.tree.apply([(address, account)]);
        if account.is_empty() {
            self.accounts.remove(&address);
        } else {
            self.accounts.insert(address, account);
        }
    }

    /// Set many accounts directly, as one batch (a genesis allocation).
    pub fn set_accounts(&mut self, accounts: impl IntoIterator<Item = (Address, Account)>) {
        let accounts: Vec<(Address, Account)> = accounts.into_iter().collect();
        self.tree = self.tree.apply(accounts.iter().copied());
        for (address, account) in accounts {
            if account.is_empty() {
                self.accounts.remove(&address);
            } else {
                self.accounts.insert(address, account);
            }
        }
    }

    pub fn accounts(&self) -> &BTreeMap<Address, Account> {
        &self.accounts
    }

    /// Sum of all balances, as u128 so it cannot overflow.
    pub fn total_supply(&self) -> u128 {
        self.accounts.values().map(|a| u128::from(a.balance)).sum()
    }
}

impl AccountStore for MemStore {
    fn account(&self, address: &Address) -> Result<Account, StoreError> {
        Ok(self.accounts.get(address).copied().unwrap_or_default())
    }
}
