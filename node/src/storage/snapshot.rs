//! State snapshots: what this node serves to peers that sync state instead of replaying every block, and
//! how a state-syncing node installs what it fetched.
//!
//! Every `interval` blocks (`[state_sync] snapshot_interval`) the committed state tree and governance
//! state are kept in memory as a snapshot (the tree shares its nodes with the live one, so a snapshot costs
//! at most one more tree's worth of nodes, and only the last [`SNAPSHOTS_KEPT`] are kept). Every honest node
//! takes them at the same heights, so a syncing node can fetch one snapshot's chunks from several peers.
//!
//! A node that installed a snapshot at height `H` has no blocks below `H` (`META_BASE` records `H`): its
//! history (blocks, transactions, account history) starts there, and it cannot serve block sync below it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use ledger_core::governance::GovState;
use ledger_core::light::{SnapshotMeta, Transition, Trusted};
use ledger_core::statetree::{Manifest, StateTree};
use ledger_core::{Account, Address, Genesis, Height, encoding};

use super::{
    META_GENESIS, META_GOV_STATE, META_HEIGHT, META_STATE_HEIGHT, Storage, StorageError, addrindex, corrupt, hash_key,
    height_key, prefix, put_account, seal,
};

/// Lowest stored block height after a state sync (absent: 1, every block from genesis is stored).
pub const META_BASE: &[u8] = b"mbase";
/// Snapshots kept in memory.
pub const SNAPSHOTS_KEPT: usize = 2;
/// Most accounts in one chunk: manifests cut the tree into parts of at most this many.
pub const CHUNK_ACCOUNTS_MAX: u64 = 1024;

/// The state after one block, as served to state-syncing peers.
pub struct Snapshot {
    pub height: Height,
    pub tree: StateTree,
    pub gov: GovState,
    manifest: OnceLock<Manifest>,
}

impl Snapshot {
    /// The tree cut into parts of at most [`CHUNK_ACCOUNTS_MAX`] accounts (computed once).
    pub fn manifest(&self) -> &Manifest {
        self.manifest.get_or_init(|| self.tree.manifest(CHUNK_ACCOUNTS_MAX))
    }
}

/// The snapshots a node holds, newest last.
#[derive(Default)]
pub struct Snapshots {
    /// Take one every this many blocks (0: never).
    interval: u64,
    kept: VecDeque<Arc<Snapshot>>,
}

impl Storage {
    fn snapshot_list(&self) -> std::sync::MutexGuard<'_, Snapshots> {
        self.snapshots.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Take a snapshot every `interval` committed blocks (0: never).
    pub fn set_snapshot_interval(&self, interval: u64) {
        self.snapshot_list().interval = interval;
    }

    /// After a commit: keep this state as a snapshot when the height is due.
    pub(super) fn maybe_snapshot(&self, height: Height, tree: &StateTree, gov: &GovState) {
        let mut list = self.snapshot_list();
        if list.interval == 0 || !height.0.is_multiple_of(list.interval) {
            return;
        }
        list.kept.push_back(Arc::new(Snapshot {
            height,
            tree: tree.clone(),
            gov: gov.clone(),
            manifest: OnceLock::new(),
        }));
        while list.kept.len() > SNAPSHOTS_KEPT {
            list.kept.pop_front();
        }
        tracing::debug!(%height, accounts = tree.len(), "state snapshot taken");
    }

    /// Whether the database holds a chain (a genesis or an installed snapshot).
    pub fn is_initialised(&self) -> Result<bool, StorageError> {
        Ok(self.get(META_GENESIS)?.is_some())
    }

    /// The hash of the genesis this database was initialised with (`None`: empty).
    pub fn stored_genesis(&self) -> Result<Option<ledger_core::Hash>, StorageError> {
        self.get_decoded(META_GENESIS, 32)
    }

    /// Heights of the snapshots held, oldest first.
    pub fn snapshot_heights(&self) -> Vec<Height> {
        self.snapshot_list().kept.iter().map(|s| s.height).collect()
    }

    /// The snapshot at `height`, if held.
    pub fn snapshot(&self, height: Height) -> Option<Arc<Snapshot>> {
        self.snapshot_list().kept.iter().find(|s| s.height == height).cloned()
    }

    /// Everything a syncing peer needs besides the chunks, for the snapshot at `height`.
    pub fn snapshot_meta(&self, height: Height) -> Result<Option<SnapshotMeta>, StorageError> {
        let Some(snapshot) = self.snapshot(height) else { return Ok(None) };
        let (Some(block), Some(certificate)) = (self.block(height)?, self.certificate(height)?) else {
            return Ok(None);
        };
        Ok(Some(SnapshotMeta {
            block,
            certificate,
            gov: snapshot.gov.clone(),
            transitions: self.transitions(height)?,
            manifest: snapshot.manifest().clone(),
        }))
    }

    /// Every validator-set change with a first height in 2..=`up_to`, each with the certified header
    /// before it. `None` for a change whose header this node does not hold (it synced state above it).
    pub fn transitions(&self, up_to: Height) -> Result<Vec<Transition>, StorageError> {
        let mut out = Vec::new();
        for (first_height, set) in self.validator_sets() {
            if first_height <= Height(1) || first_height > up_to {
                continue;
            }
            let at = Height(first_height.0 - 1);
            let (Some(header), Some(certificate)) = (self.header(at)?, self.certificate(at)?) else {
                return Err(StorageError::Corrupt {
                    what: format!("block {at}"),
                    detail: "the header before a validator-set change is not stored".into(),
                });
            };
            out.push(Transition { first_height, set: (*set).clone(), header, certificate });
        }
        Ok(out)
    }

    /// Lowest stored block height: 1, or the height of the snapshot this node's state was synced from.
    pub fn base_height(&self) -> Result<Height, StorageError> {
        Ok(self.get_decoded::<Height>(META_BASE, 8)?.unwrap_or(Height(1)))
    }

    /// Install a verified snapshot into an empty database: the accounts, the block and certificate of its
    /// height, the governance state, the sets reached (`reached`, from [`SnapshotMeta::verify`]) and those
    /// the governance state names for the next two heights, in one atomic batch. `accounts` must have
    /// been checked chunk by chunk against the verified manifest; their tree is checked against the
    /// header's state root once more here before anything is written.
    pub fn install_snapshot(
        &self,
        genesis: &Genesis,
        meta: &SnapshotMeta,
        reached: &[Trusted],
        accounts: Vec<(Address, Account)>,
    ) -> Result<(), StorageError> {
        if self.get(META_GENESIS)?.is_some() {
            return Err(corrupt(META_GENESIS, "a snapshot is installed only into an empty database"));
        }
        let height = meta.height();
        let tree = StateTree::from_accounts(accounts.iter().copied());
        if tree.root() != meta.block.header.state_root {
            return Err(corrupt(META_STATE_HEIGHT, "the snapshot's accounts do not hash to its state root"));
        }
        let mut batch = sled::Batch::default();
        for (address, account) in &accounts {
            put_account(&mut batch, address, account);
        }
        // The body is durable in its file before the batch that refers to it is applied.
        let body = self.write_body(&meta.block)?;
        let k = height_key(prefix::BLOCK_REF, height);
        batch.insert(&k[..], seal(&k, &encoding::encode(&body)));
        let k = height_key(prefix::CERT, height);
        batch.insert(&k[..], seal(&k, &encoding::encode(&meta.certificate)));
        let k = hash_key(prefix::HASH_TO_HEIGHT, &meta.block.hash().0);
        batch.insert(&k[..], seal(&k, &encoding::encode(&height)));
        let gov = &meta.gov;
        let mut sets: Vec<(Height, &ledger_core::ValidatorSet)> =
            reached.iter().map(|t| (t.first_height, &t.set)).collect();
        if gov.next.hash() != gov.current.hash() {
            sets.push((height.next(), &gov.next));
        }
        if gov.after_next.hash() != gov.next.hash() {
            sets.push((height.next().next(), &gov.after_next));
        }
        for (from, set) in sets {
            let k = height_key(prefix::VALSET, from);
            batch.insert(&k[..], seal(&k, &encoding::encode(set)));
        }
        // The certified headers that name each set change below the base, so this node serves the
        // transitions on (to light clients and to peers that sync from its snapshots).
        for t in meta.transitions.iter().filter(|t| t.header.height < height) {
            let k = height_key(prefix::HEADER, t.header.height);
            batch.insert(&k[..], seal(&k, &encoding::encode(&t.header)));
            let k = height_key(prefix::CERT, t.header.height);
            batch.insert(&k[..], seal(&k, &encoding::encode(&t.certificate)));
        }
        batch.insert(META_GOV_STATE, seal(META_GOV_STATE, &encoding::encode(gov)));
        batch.insert(META_HEIGHT, seal(META_HEIGHT, &encoding::encode(&height)));
        batch.insert(META_STATE_HEIGHT, seal(META_STATE_HEIGHT, &encoding::encode(&height)));
        batch.insert(META_BASE, seal(META_BASE, &encoding::encode(&height)));
        // The account-history index covers every stored block (none yet below the next).
        batch.insert(addrindex::META_ADDRINDEX, seal(addrindex::META_ADDRINDEX, &[]));
        batch.insert(addrindex::META_ADDR_FOLDED, seal(addrindex::META_ADDR_FOLDED, &encoding::encode(&height)));
        // Last, as in `init_genesis`: its presence means the installed state is complete.
        batch.insert(META_GENESIS, seal(META_GENESIS, &encoding::encode(&genesis.hash())));
        self.chain.apply_batch(batch)?;
        self.db.flush()?;
        {
            let mut cache = self.account_cache();
            cache.reset();
            cache.dirty.clear();
            cache.tree = Some((height, tree));
            cache.gov = Some(gov.clone());
            cache.tip_sets = None;
            cache.behind = 0;
        }
        self.load_sets()?;
        Ok(())
    }
}

/// A shared handle, created with the storage.
pub type SharedSnapshots = Arc<Mutex<Snapshots>>;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StorageOptions;
    use crate::storage::tests::{TestChain, open_when_released};

    fn open(dir: &std::path::Path) -> Storage {
        open_when_released(dir, StorageOptions { cache_capacity_bytes: 1 << 20, block_bytes_max: 4 << 20 })
    }

    /// A snapshot installed into an empty database: the chain starts at its height, every stored check
    /// passes, and the headers and certificates that name earlier set changes are kept, so the node serves
    /// the transitions on although it holds none of those blocks.
    #[test]
    fn an_installed_snapshot_is_a_chain_from_its_height_that_still_serves_the_transitions_below() {
        let chain = TestChain::new();
        let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = open(dir_a.path());
        a.init_genesis(&chain.genesis).unwrap();
        for nonce in 0..10 {
            chain.commit_next(&a, vec![chain.transfer_to(nonce, 5, 20 + nonce as u8)]);
        }
        let tip = Height(10);
        let set = chain.genesis.validator_set().unwrap();
        // A transition to a set in force from height 5, named by header 4 (the same members: what matters
        // here is what is stored, not the walk, which `SnapshotMeta::verify` tests).
        let transition = Transition {
            first_height: Height(5),
            set: set.clone(),
            header: a.header(Height(4)).unwrap().unwrap(),
            certificate: a.certificate(Height(4)).unwrap().unwrap(),
        };
        let tree = a.tree().unwrap();
        let meta = SnapshotMeta {
            block: a.block(tip).unwrap().unwrap(),
            certificate: a.certificate(tip).unwrap().unwrap(),
            gov: a.gov_state().unwrap(),
            transitions: vec![transition.clone()],
            manifest: tree.manifest(CHUNK_ACCOUNTS_MAX),
        };
        let reached = [
            Trusted { first_height: Height(1), set: set.clone() },
            Trusted { first_height: Height(5), set: set.clone() },
        ];
        let b = open(dir_b.path());
        assert!(!b.is_initialised().unwrap());
        // Accounts that do not hash to the state root are refused before anything is written.
        let mut wrong = tree.accounts();
        wrong[0].1.balance += 1;
        assert!(b.install_snapshot(&chain.genesis, &meta, &reached, wrong).is_err());
        assert!(!b.is_initialised().unwrap());
        b.install_snapshot(&chain.genesis, &meta, &reached, tree.accounts()).unwrap();
        assert_eq!(b.base_height().unwrap(), tip);
        assert_eq!(b.verify_tail(&chain.genesis, 100).unwrap(), tip);
        assert_eq!(b.tree().unwrap().root(), tree.root());
        assert!(b.block(Height(4)).unwrap().is_none());
        assert_eq!(b.header(Height(4)).unwrap(), Some(transition.header.clone()));
        assert_eq!(b.transitions(tip).unwrap(), vec![transition]);
        // A second install is refused; and the chain goes on from the snapshot.
        assert!(b.install_snapshot(&chain.genesis, &meta, &reached, tree.accounts()).is_err());
        chain.commit_next(&b, vec![chain.transfer_to(10, 5, 40)]);
        chain.commit_next(&a, vec![chain.transfer_to(10, 5, 40)]);
        assert_eq!(b.tree().unwrap().root(), a.tree().unwrap().root());
    }
}
