//! The account-history index (address → the heights and positions of the transactions it sent or received),
//! so that `/accounts/{a}/txs` answers any depth of history in time independent of the chain's length,
//! without one sled key per transaction (see [`super::txindex`] for why that matters here).
//!
//! Layout (inside the `chain` tree):
//! - **chunks**: `y ‖ address (32) ‖ first height (u64 BE) ‖ first index (u32 BE)` → up to [`CHUNK_ENTRIES`]
//!   positions of that address in increasing order, delta-coded ([`encode_chunk`]: ~3 bytes a position
//!   where a fixed `height ‖ index` took 12, which sled rewrote with every fold of a partial chunk). An address's
//!   chunks cover increasing, disjoint ranges and a chunk's key holds its first entry, so the chunk holding
//!   the newest entry before a cursor is the last key at most `y ‖ address ‖ cursor`: one seek.
//! - **deltas**: the entries of one block not folded into chunks yet, sorted by address then index, kept in
//!   memory only ([`PendingDeltas`]): they are derived from the block, whose body is on disk, so they are
//!   derived again from the blocks above the last fold at open (`maddrfolded` records that height). Every
//!   [`FOLD_BLOCKS`] blocks (or sooner, once the pending entries pass [`PENDING_ENTRIES_MAX`]), once that
//!   block is durable, a thread of its own folds the deltas at or below it into the chunks (read the
//!   address's last chunk, append, rewrite) and records the fold height, in one batch
//!   ([`Storage::maybe_fold`]): the commit path does not wait for it. An address that trades in every block
//!   is rewritten once per fold, not once per block. Databases from before kept each delta in sled under `Y ‖ height (u64 BE)` (~290 KB for a
//!   block of 4,096 transactions, rewritten with its sled leaf); they are dropped at open. Pruning keeps
//!   the bodies above the last fold.
//! - `maddrindex`: present once the index covers every stored block (written with genesis, or after a
//!   rebuild). The index is derived data: `Storage::open` rebuilds it from the blocks when it is absent.
//!
//! A query searches the pending deltas newest first, then the address's chunks from the cursor backwards; a
//! fold between the two reads can only repeat entries (dropped: the output is strictly decreasing), never
//! lose one, as a fold writes the chunks and the fold height in one atomic batch and the folded deltas leave
//! memory only after it applied.

use std::collections::BTreeMap;

use ledger_core::{Address, Block, Height};

use super::{Storage, StorageError, corrupt, seal, unseal};

/// Key prefix of chunks.
pub const CHUNK_PREFIX: u8 = b'y';
/// Key prefix of per-block deltas.
pub const DELTA_PREFIX: u8 = b'Y';
/// Presence means the index is complete (and its chunks delta-coded).
pub const META_ADDRINDEX: &[u8] = b"maddrindex2";
/// What marked a complete index when chunks held fixed 12-byte positions: such an index is rebuilt at open.
pub const META_ADDRINDEX_FIXED: &[u8] = b"maddrindex";
/// The height of the last fold: the entries of every block at or below it are in the chunks.
pub const META_ADDR_FOLDED: &[u8] = b"maddrfolded";
/// Entries in a full chunk (3 KiB values).
pub const CHUNK_ENTRIES: usize = 256;
/// Deltas are folded into chunks at heights that are multiples of this, or sooner (see
/// [`PENDING_ENTRIES_MAX`]). A fold costs a read and a rewrite per address it touches, whatever its number
/// of entries: with 2,000 active addresses and blocks of 1,000 transactions, folding every 64 blocks instead
/// of every 16 took commits from 14.0 to 11.6 µs of CPU per transaction (`storage_write_bench`, median of 5).
pub const FOLD_BLOCKS: u64 = 64;
/// A block whose entries would take the pending deltas above this many entries (~4.7 MB in memory, see
/// [`PendingDeltas`]) is a fold height too: blocks of 4,096 transfers fold every 17 blocks. While a fold
/// runs the deltas may reach twice this; past that a commit waits for the fold.
pub const PENDING_ENTRIES_MAX: usize = 1 << 17;
/// Bytes of a delta entry as databases from before `maddrfolded` stored it.
pub const DELTA_ENTRY_BYTES: usize = 36;

/// The entries of the blocks above the last fold, by height (blocks without transactions have none).
///
/// **Invariant:** it holds exactly the entries of the stored blocks above `maddrfolded`, apart from a commit
/// in progress: its delta is added before its batch applies (dropped again if the batch fails; a query never
/// looks above the tip it was given, so an entry above the stored tip is never answered), and the deltas a
/// fold takes in stay until its batch has applied (a query then meets their entries twice, in memory and in
/// the chunks, and drops the repeat).
pub(super) type PendingDeltas = BTreeMap<u64, std::sync::Arc<Vec<(Address, u32)>>>;

/// What a block adds to [`PendingDeltas`].
pub(super) enum DeltaChange {
    None,
    /// A delta at this height.
    Added(u64, std::sync::Arc<Vec<(Address, u32)>>),
}

/// Whether the block at `height`, with `new` entries, folds the `pending` ones (and its own) into chunks.
pub fn is_fold_height(height: u64, pending: usize, new: usize) -> bool {
    height.is_multiple_of(FOLD_BLOCKS) || pending.saturating_add(new) > PENDING_ENTRIES_MAX
}

/// A position in the chain: (height, index in the block). Ordered as the chain is.
pub type Pos = (u64, u32);

pub fn chunk_key(address: &Address, first: Pos) -> [u8; 45] {
    let mut k = [0u8; 45];
    k[0] = CHUNK_PREFIX;
    k[1..33].copy_from_slice(&address.0);
    k[33..41].copy_from_slice(&first.0.to_be_bytes());
    k[41..].copy_from_slice(&first.1.to_be_bytes());
    k
}

fn address_prefix(address: &Address) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = CHUNK_PREFIX;
    k[1..].copy_from_slice(&address.0);
    k
}

pub fn delta_key(height: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = DELTA_PREFIX;
    k[1..].copy_from_slice(&height.to_be_bytes());
    k
}

/// The (address, index) pairs of a block's transactions: the sender, and the recipient when it differs;
/// sorted by address then index.
pub fn block_entries(block: &Block) -> Vec<(Address, u32)> {
    let mut v = Vec::with_capacity(block.txs.len() * 2);
    for (i, tx) in block.txs.iter().enumerate() {
        let t = tx.tx();
        v.push((t.sender, i as u32));
        if t.recipient != t.sender {
            v.push((t.recipient, i as u32));
        }
    }
    v.sort_unstable();
    v
}

/// A delta as databases from before `maddrfolded` stored it (tests of their conversion).
#[cfg(test)]
fn encode_delta(entries: &[(Address, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * DELTA_ENTRY_BYTES);
    for (a, i) in entries {
        out.extend_from_slice(&a.0);
        out.extend_from_slice(&i.to_le_bytes());
    }
    out
}

/// A chunk's positions, which must be strictly increasing, as LEB128 numbers: the first as `height, index`;
/// each next one as `height − previous height` and then, in the same block (difference 0),
/// `index − previous index − 1`, else its index. Positions of an active address are mostly a block or a few
/// apart with indexes below 2^14: 3 bytes each.
pub fn encode_chunk(entries: &[Pos]) -> Vec<u8> {
    debug_assert!(entries.windows(2).all(|w| w[0] < w[1]), "positions must increase");
    let mut out = Vec::with_capacity(entries.len() * 4);
    let mut prev: Option<Pos> = None;
    for &(h, i) in entries {
        match prev {
            None => {
                put_varint(&mut out, h);
                put_varint(&mut out, u64::from(i));
            }
            Some((ph, pi)) if ph == h => {
                put_varint(&mut out, 0);
                put_varint(&mut out, u64::from(i.wrapping_sub(pi).wrapping_sub(1)));
            }
            Some((ph, _)) => {
                put_varint(&mut out, h.wrapping_sub(ph));
                put_varint(&mut out, u64::from(i));
            }
        }
        prev = Some((h, i));
    }
    out
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One LEB128 number from the front of `bytes`: at most 10 bytes, no bits beyond 64, no needless trailing
/// zero byte (one encoding per number).
fn take_varint(bytes: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for n in 0..10 {
        let Some((&b, rest)) = bytes.split_first() else {
            return Err("address index chunk ends inside a number".into());
        };
        *bytes = rest;
        let bits = u64::from(b & 0x7f);
        if n == 9 && b > 1 {
            return Err("address index chunk holds a number beyond 64 bits".into());
        }
        v |= bits << (7 * n);
        if b & 0x80 == 0 {
            if b == 0 && n > 0 {
                return Err("address index chunk holds an overlong number".into());
            }
            return Ok(v);
        }
    }
    Err("address index chunk holds a number longer than 10 bytes".into())
}

/// Decode a chunk's payload (see [`encode_chunk`]): 1..=[`CHUNK_ENTRIES`] strictly increasing positions, every
/// byte used; `Err` says what is wrong with it.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<Pos>, String> {
    let mut rest = bytes;
    let mut v: Vec<Pos> = Vec::with_capacity((bytes.len() / 2).min(CHUNK_ENTRIES));
    while !rest.is_empty() {
        if v.len() == CHUNK_ENTRIES {
            return Err(format!(
                "address index chunk of {} bytes holds more than {CHUNK_ENTRIES} positions",
                bytes.len()
            ));
        }
        let a = take_varint(&mut rest)?;
        let b = take_varint(&mut rest)?;
        let index =
            |x: u64| u32::try_from(x).map_err(|_| "address index chunk holds an index beyond 32 bits".to_string());
        let pos = match v.last() {
            None => (a, index(b)?),
            Some(&(ph, pi)) if a == 0 => {
                let i =
                    (u64::from(pi) + 1).checked_add(b).ok_or("address index chunk holds an index beyond 64 bits")?;
                (ph, index(i)?)
            }
            Some(&(ph, _)) => {
                let h = ph.checked_add(a).ok_or("address index chunk holds a height beyond 64 bits")?;
                (h, index(b)?)
            }
        };
        v.push(pos);
    }
    if v.is_empty() {
        return Err("address index chunk is empty".into());
    }
    Ok(v)
}

impl Storage {
    /// `block`'s entries as a delta, to stage in the pending deltas before the block's batch applies
    /// ([`Storage::stage_delta_change`]); chunks are written by folds ([`Storage::maybe_fold`]), not here.
    pub(super) fn index_addresses(&self, block: &Block) -> DeltaChange {
        let mut entries = block_entries(block);
        if entries.is_empty() {
            return DeltaChange::None;
        }
        // Sized for two entries a transaction; a self-transfer has one.
        entries.shrink_to_fit();
        DeltaChange::Added(block.height().0, std::sync::Arc::new(entries))
    }

    /// Entries in the pending deltas.
    fn pending_entries(&self) -> usize {
        self.pending_deltas().values().map(|d| d.len()).sum()
    }

    /// After the block at `height` committed (durably): at a fold height, start folding the pending deltas
    /// at or below it into the chunks on a thread of its own, so that the commit path does not wait for the
    /// reads and rewrites (150-250 ms with 2,000 active addresses). One fold runs at a time; while it runs
    /// the deltas keep growing, and past twice [`PENDING_ENTRIES_MAX`] the commit waits for it (memory
    /// stays bounded).
    pub(super) fn maybe_fold(&self, height: Height) -> Result<(), StorageError> {
        let pending = self.pending_entries();
        if !is_fold_height(height.0, pending, 0) {
            return Ok(());
        }
        let store = self.clone();
        let over_bound = pending > PENDING_ENTRIES_MAX.saturating_mul(2);
        self.folder.start("addr-fold", over_bound, move || store.fold_addresses(height))
    }

    /// Wait for a fold in progress, then fold what is due and was left to it (a fold height met while a fold
    /// ran): before a flush that must leave nothing due, and in tests.
    pub(super) fn finish_folds(&self) -> Result<(), StorageError> {
        self.folder.join("addr-fold")?;
        let tip = self.latest_height()?.0;
        let upto = if self.pending_entries() > PENDING_ENTRIES_MAX { tip } else { tip - tip % FOLD_BLOCKS };
        if self.pending_deltas().range(..=upto).next().is_some() {
            self.fold_addresses(Height(upto))?;
        }
        Ok(())
    }

    /// Fold every pending delta at or below `upto` (all of committed blocks) into the addresses' chunks, in
    /// one batch with the fold height; then drop them from memory. Holds the fold lock, which every other
    /// writer of chunks holds too.
    pub(super) fn fold_addresses(&self, upto: Height) -> Result<(), StorageError> {
        let _fold = self.fold_lock();
        if self.folded_height()?.is_some_and(|f| f >= upto) {
            return Ok(());
        }
        let deltas: PendingDeltas = self.pending_deltas().range(..=upto.0).map(|(h, d)| (*h, d.clone())).collect();
        let mut by_address: BTreeMap<Address, Vec<Pos>> = BTreeMap::new();
        for (h, delta) in &deltas {
            for &(a, i) in delta.iter() {
                by_address.entry(a).or_default().push((*h, i));
            }
        }
        let mut batch = sled::Batch::default();
        batch.insert(META_ADDR_FOLDED, seal(META_ADDR_FOLDED, &ledger_core::encoding::encode(&upto)));
        for (address, mut new) in by_address {
            // Deltas are read in height order and a block's entries in index order: `new` is increasing.
            new.sort_unstable();
            let last = self.chain.scan_prefix(address_prefix(&address)).next_back().transpose()?;
            let mut all = Vec::new();
            if let Some((k, raw)) = last {
                let old = decode_chunk(unseal(&k, &raw)?).map_err(|d| corrupt(&k, d))?;
                if old.len() < CHUNK_ENTRIES {
                    all = old;
                }
            }
            all.extend(new);
            for chunk in all.chunks(CHUNK_ENTRIES) {
                let k = chunk_key(&address, chunk[0]);
                batch.insert(&k[..], seal(&k, &encode_chunk(chunk)));
            }
        }
        self.chain.apply_batch(batch)?;
        // Durable before the deltas go: pruning reads the fold height to know which history it may drop.
        self.db.flush()?;
        self.addr_pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|&h, _| h > upto.0);
        Ok(())
    }

    /// The lock every writer of account-history chunks holds (a fold, pruning, a rebuild). Taken before the
    /// storage writer lock, never after it.
    pub(super) fn fold_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.folder.lock()
    }

    fn pending_deltas(&self) -> std::sync::RwLockReadGuard<'_, PendingDeltas> {
        self.addr_pending.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Before a batch with `change` applies: add its delta to the pending ones.
    pub(super) fn stage_delta_change(&self, change: &DeltaChange) {
        if let DeltaChange::Added(h, entries) = change {
            self.addr_pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(*h, entries.clone());
        }
    }

    /// After the batch with `change` applied (`applied`) or failed: drop the folded deltas, or the staged one.
    pub(super) fn follow_delta_change(&self, change: &DeltaChange, applied: bool) {
        if let (DeltaChange::Added(h, _), false) = (change, applied) {
            self.addr_pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(h);
        }
    }

    /// The height of the last fold (`None` for a database from before it was recorded).
    pub(super) fn folded_height(&self) -> Result<Option<Height>, StorageError> {
        self.get_decoded::<Height>(META_ADDR_FOLDED, 8)
    }

    /// Derive the pending deltas from the blocks above the last fold (at open).
    fn load_pending_deltas(&self) -> Result<(), StorageError> {
        let tip = self.latest_height()?;
        let folded = match self.folded_height()? {
            Some(h) => h,
            None => self.drop_stored_deltas(tip)?,
        };
        let mut loaded = PendingDeltas::new();
        for h in folded.0.saturating_add(1)..=tip.0 {
            let block = self.block(Height(h))?.ok_or_else(|| {
                corrupt(
                    &super::height_key(super::prefix::BLOCK_REF, Height(h)),
                    "block above the account-history index's last fold is missing",
                )
            })?;
            let entries = block_entries(&block);
            if !entries.is_empty() {
                loaded.insert(h, std::sync::Arc::new(entries));
            }
        }
        *self.addr_pending.write().unwrap_or_else(std::sync::PoisonError::into_inner) = loaded;
        Ok(())
    }

    /// A database from before `maddrfolded` kept the deltas above the last fold under `Y` keys; the lowest
    /// one is the first block with transactions above that fold. Drop them and record the height below it (or
    /// the tip, without any) as the fold height: the same entries are derived from the blocks.
    fn drop_stored_deltas(&self, tip: Height) -> Result<Height, StorageError> {
        let mut batch = sled::Batch::default();
        let mut lowest = None;
        for k in self.chain.scan_prefix([DELTA_PREFIX]).keys() {
            let k = k?;
            if k.len() != 9 {
                return Err(corrupt(&k, "account-history delta key is not 9 bytes"));
            }
            lowest.get_or_insert(super::be_u64(&k[1..]));
            batch.remove(k);
        }
        let folded = lowest.map_or(tip, |h| Height(h.saturating_sub(1)));
        batch.insert(META_ADDR_FOLDED, seal(META_ADDR_FOLDED, &ledger_core::encoding::encode(&folded)));
        self.chain.apply_batch(batch)?;
        self.db.flush()?;
        Ok(folded)
    }

    /// Positions of the transactions `address` sent or received, strictly before `before`, at or below
    /// `tip`, newest first, at most `limit`. Searches the pending deltas (in memory: the blocks since the
    /// last fold, [`FOLD_BLOCKS`] to twice that while a fold runs, at most twice [`PENDING_ENTRIES_MAX`] entries)
    /// and reads the chunks that hold the answer: the time does not depend on the chain's length.
    pub fn account_history(
        &self,
        address: &Address,
        before: Pos,
        tip: Height,
        limit: usize,
    ) -> Result<Vec<Pos>, StorageError> {
        let bound = before.min((tip.0, u32::MAX));
        let mut out: Vec<Pos> = Vec::new();
        // Below the base the blocks are pruned: the index's entries there (pruned in the background, a
        // chunk at a time) are not answered.
        let floor = self.base_height()?.0;
        let below = |p: Pos, out: &Vec<Pos>| p < bound && p.0 >= floor && out.last().is_none_or(|l| p < *l);
        for (&h, delta) in self.pending_deltas().range(..=bound.0).rev() {
            if out.len() >= limit {
                return Ok(out);
            }
            let start = delta.partition_point(|(a, _)| a < address);
            let end = start + delta[start..].iter().take_while(|(a, _)| a == address).count();
            for &(_, i) in delta[start..end].iter().rev() {
                if out.len() < limit && below((h, i), &out) {
                    out.push((h, i));
                }
            }
        }
        let prefix = address_prefix(address);
        let end = chunk_key(address, bound);
        for item in self.chain.range(&prefix[..]..=&end[..]).rev() {
            if out.len() >= limit {
                break;
            }
            let (k, raw) = item?;
            for p in decode_chunk(unseal(&k, &raw)?).map_err(|d| corrupt(&k, d))?.into_iter().rev() {
                if out.len() < limit && below(p, &out) {
                    out.push(p);
                }
            }
            if k.len() == 45 && super::be_u64(&k[33..41]) < floor {
                // Older chunks hold only pruned positions.
                break;
            }
        }
        Ok(out)
    }

    /// Build the index from the stored blocks if it is absent (a database from before it existed, or a
    /// rebuild cut short: anything left of it is removed first).
    pub(super) fn open_addr_index(&self) -> Result<(), StorageError> {
        if self.chain.get(META_ADDRINDEX)?.is_some() {
            return self.load_pending_deltas();
        }
        // An index of fixed-size positions (or none): rebuilt below, its chunks removed first.
        self.chain.remove(META_ADDRINDEX_FIXED)?;
        let tip = match self.latest_height() {
            Ok(tip) => tip,
            Err(StorageError::NotInitialised) => return Ok(()),
            Err(e) => return Err(e),
        };
        tracing::info!(%tip, "building the account-history index from the stored blocks");
        for p in [CHUNK_PREFIX, DELTA_PREFIX] {
            loop {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for k in self.chain.scan_prefix([p]).keys().take(10_000) {
                    batch.remove(k?);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                self.chain.apply_batch(batch)?;
            }
        }
        let base = self.base_height()?;
        let folded = Height(base.0.saturating_sub(1));
        self.chain.insert(META_ADDR_FOLDED, seal(META_ADDR_FOLDED, &ledger_core::encoding::encode(&folded)))?;
        self.addr_pending.write().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
        for h in base.0..=tip.0 {
            let block = self.block(Height(h))?.ok_or_else(|| {
                corrupt(&super::height_key(super::prefix::BLOCK_REF, Height(h)), "block below the tip is missing")
            })?;
            self.stage_delta_change(&self.index_addresses(&block));
            if is_fold_height(h, self.pending_entries(), 0) {
                self.fold_addresses(Height(h))?;
            }
        }
        self.chain.insert(META_ADDRINDEX, seal(META_ADDRINDEX, &[]))?;
        self.db.flush()?;
        tracing::info!(%tip, "account-history index built");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StorageOptions;
    use crate::storage::tests::{TestChain, open_when_released};

    fn open(dir: &std::path::Path) -> Storage {
        open_when_released(dir, StorageOptions { cache_capacity_bytes: 8 << 20, block_bytes_max: 4 << 20 })
    }

    /// Every page of `address`'s history, newest first, following the cursor as the API does.
    fn all_pages(store: &Storage, address: &Address, page: usize) -> (Vec<Pos>, usize) {
        all_pages_at(store, address, store.latest_height().unwrap(), page)
    }

    fn all_pages_at(store: &Storage, address: &Address, tip: Height, page: usize) -> (Vec<Pos>, usize) {
        let (mut out, mut pages, mut before) = (Vec::new(), 0, (u64::MAX, u32::MAX));
        loop {
            let got = store.account_history(address, before, tip, page).unwrap();
            pages += 1;
            out.extend(&got);
            match got.last() {
                Some(&last) if got.len() == page => before = last,
                _ => return (out, pages),
            }
        }
    }

    /// An account whose transactions are spread over more than 5,000 blocks: its whole history comes back in
    /// pages, newest first, exactly the positions committed, before and after a reopen, and after the index
    /// is dropped and rebuilt from the blocks.
    #[test]
    fn history_over_more_than_5000_blocks_comes_back_whole_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let chain = TestChain::new();
        let sender = chain.account.public();
        let recipient = ledger_core::Keypair::from_seed(&[9; 32]).public();
        let mut want: Vec<Pos> = Vec::new();
        {
            let store = open(dir.path());
            store.init_genesis(&chain.genesis).unwrap();
            let mut nonce = 0;
            for h in 1..=5_205u64 {
                // A transaction every 7 blocks (two in some), none in the others.
                let n = if h % 7 == 0 { 1 + (h % 2) } else { 0 };
                let txs: Vec<_> = (0..n)
                    .map(|i| {
                        ledger_core::Transaction {
                            chain_id: chain.genesis.chain_id.clone(),
                            sender,
                            recipient,
                            amount: 1,
                            fee: 1,
                            nonce: nonce + i,
                            expiry_height: u64::MAX,
                            memo: String::new(),
                        }
                        .sign(&chain.account)
                    })
                    .collect();
                nonce += n;
                let block = chain.commit_next(&store, txs);
                want.extend((0..block.txs.len() as u32).map(|i| (h, i)));
            }
            want.reverse();
            let (got, pages) = all_pages(&store, &sender, 100);
            assert_eq!(got.len(), want.len());
            assert_eq!(got, want, "sender's history");
            assert!(pages > 10);
            assert_eq!(all_pages(&store, &recipient, 37).0, want, "recipient's history");
            // A cursor inside a block with two transactions, and a bound at the tip.
            let two = want.iter().position(|p| p.1 == 1).unwrap();
            let at = want[two];
            assert_eq!(store.account_history(&sender, at, store.latest_height().unwrap(), 1).unwrap(), vec![(at.0, 0)]);
            assert!(store.account_history(&sender, (0, 0), Height(5_205), 10).unwrap().is_empty());
            // Deltas pending above the last fold are found too (5,205 is not a multiple of 64).
            assert!(!store.pending_deltas().is_empty());
            let other = ledger_core::Keypair::from_seed(&[3; 32]).public();
            assert!(store.account_history(&other, (u64::MAX, 0), Height(5_205), 10).unwrap().is_empty());
        }
        let store = open(dir.path());
        assert_eq!(all_pages(&store, &sender, 100).0, want, "after a reopen");
        // An index of fixed 12-byte positions (before chunks were delta-coded), marked complete by the old
        // key: open removes it and rebuilds the index from the blocks.
        let chunks: Vec<_> = store.chain.scan_prefix([CHUNK_PREFIX]).map(|r| r.unwrap()).collect();
        assert!(!chunks.is_empty());
        for (k, raw) in chunks {
            let fixed: Vec<u8> = decode_chunk(unseal(&k, &raw).unwrap())
                .unwrap()
                .iter()
                .flat_map(|(h, i)| h.to_le_bytes().into_iter().chain(i.to_le_bytes()))
                .collect();
            store.chain.insert(&k, seal(&k, &fixed)).unwrap();
        }
        store.chain.remove(META_ADDRINDEX).unwrap();
        store.chain.insert(META_ADDRINDEX_FIXED, seal(META_ADDRINDEX_FIXED, &[])).unwrap();
        store.flush().unwrap();
        drop(store);
        let store = open(dir.path());
        assert_eq!(all_pages(&store, &sender, 64).0, want, "after a rebuild");
        assert!(!store.chain.contains_key(META_ADDRINDEX_FIXED).unwrap());
        // A damaged chunk is an error, not a wrong answer.
        let (k, v) = store.chain.scan_prefix([CHUNK_PREFIX]).next().unwrap().unwrap();
        let mut bad = v.to_vec();
        bad[3] ^= 1;
        store.chain.insert(&k, bad).unwrap();
        let err = store.account_history(&sender, (1_000, 0), Height(5_205), 500);
        assert!(matches!(err, Err(StorageError::Corrupt { .. })), "{err:?}");
        store.chain.insert(&k, v).unwrap();
        // A database from before the fold height was recorded kept the pending deltas under `Y` keys: they
        // are dropped at open and the same entries derived from the blocks.
        let folded = store.folded_height().unwrap().unwrap();
        assert!(folded < Height(5_205));
        for (h, delta) in store.pending_deltas().iter() {
            let k = delta_key(*h);
            store.chain.insert(k, seal(&k, &encode_delta(delta))).unwrap();
        }
        store.chain.remove(META_ADDR_FOLDED).unwrap();
        store.flush().unwrap();
        drop(store);
        let opts = StorageOptions { cache_capacity_bytes: 8 << 20, block_bytes_max: 4 << 20 };
        let store =
            crate::storage::replace::open_released(dir.path(), opts.clone(), std::time::Duration::from_secs(20))
                .unwrap();
        assert_eq!(all_pages(&store, &sender, 100).0, want, "after dropping the stored deltas");
        assert_eq!(store.chain.scan_prefix([DELTA_PREFIX]).count(), 0);
        let dropped_at = store.folded_height().unwrap().unwrap();
        assert!(dropped_at >= folded && dropped_at < Height(5_205), "{dropped_at}");
        // The pending entries come from the blocks above the fold: a damaged one stops the open.
        let files = std::fs::read_dir(dir.path().join(crate::storage::blockfile::DIR)).unwrap();
        let last = files.map(|e| e.unwrap().path()).max().unwrap();
        let mut raw = std::fs::read(&last).unwrap();
        let at = raw.len() - 40;
        raw[at] ^= 1;
        std::fs::write(&last, raw).unwrap();
        drop(store);
        // Waits for sled's threads to let go of the lock, so the error is the block's, not the lock's.
        let reopened = crate::storage::replace::open_released(dir.path(), opts, std::time::Duration::from_secs(20));
        assert!(matches!(reopened, Err(StorageError::Corrupt { .. })), "a damaged pending block must stop the open");
    }

    /// Folds run beside the commits: a reader that asks for an account's whole history while blocks commit
    /// and folds come and go always gets exactly the positions at or below the tip it asked at, and once the
    /// store is flushed the last fold is recorded and only the deltas above it stay in memory.
    #[test]
    fn history_stays_whole_while_folds_run_beside_the_commits() {
        let dir = tempfile::tempdir().unwrap();
        let chain = TestChain::new();
        let store = open(dir.path());
        store.init_genesis(&chain.genesis).unwrap();
        let sender = chain.account.public();
        let blocks = FOLD_BLOCKS * 3 + 9;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut checks = 0u64;
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let tip = store.latest_height().unwrap();
                    let (got, _) = all_pages_at(&store, &sender, tip, 50);
                    let want: Vec<Pos> = (1..=tip.0).rev().map(|h| (h, 0)).collect();
                    assert_eq!(got, want, "history at tip {tip}");
                    checks += 1;
                }
                checks
            })
        };
        for nonce in 0..blocks {
            let tx = ledger_core::Transaction {
                chain_id: chain.genesis.chain_id.clone(),
                sender,
                recipient: ledger_core::Keypair::from_seed(&[(nonce % 200) as u8 + 1; 32]).public(),
                amount: 1,
                fee: 1,
                nonce,
                expiry_height: u64::MAX,
                memo: String::new(),
            }
            .sign(&chain.account);
            chain.commit_next(&store, vec![tx]);
        }
        done.store(true, std::sync::atomic::Ordering::Release);
        assert!(reader.join().unwrap() > 0, "the reader ran");
        store.flush().unwrap();
        assert_eq!(store.folded_height().unwrap(), Some(Height(FOLD_BLOCKS * 3)));
        assert_eq!(
            store.pending_deltas().keys().copied().collect::<Vec<_>>(),
            (FOLD_BLOCKS * 3 + 1..=blocks).collect::<Vec<_>>()
        );
        let (got, _) = all_pages(&store, &sender, 64);
        assert_eq!(got, (1..=blocks).rev().map(|h| (h, 0)).collect::<Vec<_>>());
    }

    fn addr(n: u8) -> Address {
        ledger_core::PublicKey([n; 32])
    }

    #[test]
    fn folds_every_fold_blocks_or_when_pending_entries_would_pass_the_bound() {
        assert!(is_fold_height(FOLD_BLOCKS, 0, 1));
        assert!(is_fold_height(3 * FOLD_BLOCKS, 10, 10));
        assert!(!is_fold_height(FOLD_BLOCKS + 1, 0, 8_192));
        assert!(!is_fold_height(5, PENDING_ENTRIES_MAX - 8_192, 8_192));
        assert!(is_fold_height(5, PENDING_ENTRIES_MAX - 8_191, 8_192));
        assert!(is_fold_height(5, usize::MAX, 1), "no overflow");
        // Blocks of 4,096 transfers (8,192 entries) fold every 17 blocks; of 1,000, every 64.
        let every = |entries: usize| {
            let (mut pending, mut last, mut gaps) = (0usize, 0u64, Vec::new());
            for h in 1..=1_000u64 {
                if is_fold_height(h, pending, entries) {
                    gaps.push(h - last);
                    (pending, last) = (0, h);
                } else {
                    pending += entries;
                }
            }
            gaps.iter().max().copied().unwrap_or(0)
        };
        assert_eq!(every(8_192), 17);
        assert_eq!(every(2_000), FOLD_BLOCKS);
    }

    #[test]
    fn chunks_round_trip_and_damage_is_refused() {
        let chunk =
            vec![(1, 0), (1, 3), (7, 0), (7, 1), (7, 4095), (300, 70_000), (u64::MAX - 1, u32::MAX), (u64::MAX, 0)];
        assert_eq!(decode_chunk(&encode_chunk(&chunk)).unwrap(), chunk);
        // An active address: a few positions a block, indexes below 4,096: at most 3 bytes each.
        let busy: Vec<Pos> = (0..CHUNK_ENTRIES as u64)
            .map(|n| (1000 + n / 3, (n * 1237 % 4096) as u32 + (n % 3) as u32 * 4096))
            .collect();
        let mut busy = busy;
        busy.sort_unstable();
        busy.dedup();
        let bytes = encode_chunk(&busy);
        assert_eq!(decode_chunk(&bytes).unwrap(), busy);
        assert!(bytes.len() <= 3 * busy.len() + 4, "{} bytes for {} positions", bytes.len(), busy.len());
        assert!(decode_chunk(&[]).is_err());
        assert!(decode_chunk(&bytes[..bytes.len() - 1]).is_err(), "cut inside a number or a position");
        let full: Vec<Pos> = (0..CHUNK_ENTRIES as u64).map(|h| (h, 0)).collect();
        assert_eq!(decode_chunk(&encode_chunk(&full)).unwrap().len(), CHUNK_ENTRIES);
        let too_many: Vec<Pos> = (0..=CHUNK_ENTRIES as u64).map(|h| (h, 0)).collect();
        assert!(decode_chunk(&encode_chunk(&too_many)).is_err());
        // Numbers too long, beyond 64 bits, overlong; an index beyond 32 bits; a height that overflows.
        assert!(decode_chunk(&[0xff; 11]).is_err());
        assert!(decode_chunk(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0]).is_err());
        assert!(decode_chunk(&[0x80, 0x00, 0]).is_err());
        assert!(decode_chunk(&[1, 0x80, 0x80, 0x80, 0x80, 0x10]).is_err());
        assert!(
            decode_chunk(&[1, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0, 1]).is_err(),
            "index u32::MAX then one more in the block"
        );
        // An index step in the block so large that adding it to the previous index passes 64 bits.
        let mut huge_step = vec![1, 5, 0];
        huge_step.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(decode_chunk(&huge_step).is_err(), "index 5 + 1 + (2^64 - 1)");
        let mut at_top = encode_chunk(&[(u64::MAX, 0)]);
        at_top.extend_from_slice(&[1, 0]);
        assert!(decode_chunk(&at_top).is_err(), "height beyond u64::MAX");
    }

    /// Arbitrary bytes never panic the decoder, and whatever decodes is strictly increasing and re-encodes to
    /// the same bytes (one encoding per chunk).
    #[test]
    fn any_bytes_decode_to_an_increasing_chunk_or_an_error() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let len = (x >> 58) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|n| {
                    let y = x.rotate_left(n as u32 * 7) ^ (n as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
                    if y & 3 == 0 { 0 } else { (y >> 8) as u8 }
                })
                .collect();
            if let Ok(v) = decode_chunk(&bytes) {
                assert!(v.windows(2).all(|w| w[0] < w[1]), "{bytes:?}");
                assert_eq!(encode_chunk(&v), bytes);
            }
        }
    }

    #[test]
    fn chunk_keys_sort_as_positions() {
        let a = addr(4);
        assert!(chunk_key(&a, (1, u32::MAX)) < chunk_key(&a, (2, 0)));
        assert!(chunk_key(&a, (256, 0)) > chunk_key(&a, (255, 7)));
        assert!(chunk_key(&addr(3), (u64::MAX, 0)) < chunk_key(&a, (0, 0)));
    }
}
