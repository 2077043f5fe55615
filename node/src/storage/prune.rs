//! Retention: pruning block bodies (and what indexes them) below a window of recent blocks.
//!
//! What is kept and what goes, for a window of `retain` blocks (`storage.retain_blocks`):
//! - **Bodies** (the transactions) of heights below the window are removed. The header of each pruned height
//!   moves to a header-only key (`H`) in the archive database ([`super::ARCHIVE_DIR`]) with its certificate
//!   and block-hash index entry, so headers and **commit certificates stay for every height**: they are
//!   ~0.3 KiB + ~70 B per validator a block, light clients and the wallet walk them, and
//!   `/blocks/{h}/commit` keeps answering. The archive is written and flushed before the batch that removes
//!   them from the main database.
//! - The **base** (`META_BASE`, the lowest height with a body, as after a state sync) rises with each step,
//!   in the same atomic batch that removes the bodies: a crash mid-prune leaves a consistent database.
//! - The **transaction index** loses whole runs once every entry of a run is below the base (so a
//!   transaction stays findable for up to one run, 65,536 transactions, beyond the window, answered
//!   `pruned`); the **account-history index** loses the chunks that only hold positions below the base;
//!   committed **evidence** markers go with their bodies.
//! - Never pruned: the blocks from the oldest state snapshot held on (peers fetch its block with it and then
//!   block-sync from the next height), validator sets,
//!   the headers and certificates named by set transitions, accounts (the state is not history).
//!
//! Work is done in bounded steps ([`Storage::prune_step`]) by a background thread, never by the driver:
//! a step removes at most [`PRUNE_BATCH_BLOCKS`] bodies, or one index run, or examines at most
//! [`INDEX_SCAN_KEYS`] account-history keys. Index steps hold the lock of the background work that rewrites the
//! same keys (the merge lock for index runs, the fold lock for account history), then the storage's writer
//! lock, which `commit_block` also holds; body steps need neither.

use std::sync::MutexGuard;

use ledger_core::{Height, encoding};

use super::snapshot::META_BASE;
use super::{
    Storage, StorageError, addrindex, corrupt, evidence_key, hash_key, height_key, prefix, seal, txindex, unseal,
};

/// Heights whose bodies one step removes (one atomic batch).
pub const PRUNE_BATCH_BLOCKS: u64 = 64;
/// Account-history keys one step examines.
pub const INDEX_SCAN_KEYS: usize = 2048;
/// Heights the base rises between two passes over the account-history index.
pub const HISTORY_PASS_EVERY: u64 = 256;
/// Smallest `retain_blocks` accepted: the start-up check reads the last 100 blocks, and blocks above the
/// state checkpoint (fewer than [`super::CHECKPOINT_BLOCKS`]) are re-executed at start.
pub const RETAIN_BLOCKS_MIN: u64 = 256;
// Pruning must never take a body that a restart re-executes.
const _: () = assert!(RETAIN_BLOCKS_MIN > super::CHECKPOINT_BLOCKS);

/// What the pruner remembers between steps (in memory; a restart starts over, which is only repeated reads).
#[derive(Default)]
pub struct PruneState {
    /// The oldest transaction-index run and its highest height, once read (runs never change; one is only
    /// removed whole).
    oldest_run: Option<(u64, u64)>,
    /// Where the account-history pass resumes (`None`: at the start).
    index_cursor: Option<Vec<u8>>,
    /// The base the last finished account-history pass pruned below (`None`: none ran yet).
    index_pass_base: Option<Height>,
}

/// What one [`Storage::prune_step`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PruneStep {
    /// Bodies removed.
    pub bodies: u64,
    /// Transaction-index runs removed.
    pub tx_runs: u64,
    /// Account-history chunks removed.
    pub history_chunks: u64,
    /// More work waits: call again soon.
    pub more: bool,
}

impl Storage {
    fn prune_state(&self) -> MutexGuard<'_, PruneState> {
        self.prune.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The lowest height whose body a window of `retain` blocks keeps: `tip + 1 - retain`, but never above
    /// the oldest snapshot held. Its block is served with it, and a node that installs it block-syncs from
    /// the height after: capping at the newest one instead would, the moment a new snapshot is taken, prune
    /// the blocks a node that just installed the previous one still needs, and it would stall for good.
    /// 0 (`retain` = 0) keeps everything.
    pub fn prune_target(&self, retain: u64) -> Result<Height, StorageError> {
        if retain == 0 {
            return Ok(Height(1));
        }
        let tip = self.latest_height()?;
        let mut target = tip.0.saturating_add(1).saturating_sub(retain).max(1);
        if let Some(oldest) = self.snapshot_heights().first() {
            target = target.min(oldest.0.max(1));
        }
        // The blocks above the account-history index's last fold are where its pending entries come from at
        // open ([`super::addrindex`]).
        if let Some(folded) = self.folded_height()? {
            target = target.min(folded.0.saturating_add(1));
        }
        Ok(Height(target))
    }

    /// One bounded step towards a base of `target`: bodies first, then the transaction index, then the
    /// account-history index.
    pub fn prune_step(&self, target: Height) -> Result<PruneStep, StorageError> {
        let base = self.base_height()?;
        if target > base {
            let to = Height(target.0.min(base.0.saturating_add(PRUNE_BATCH_BLOCKS)));
            let bodies = self.prune_bodies(base, to)?;
            return Ok(PruneStep { bodies, more: true, ..PruneStep::default() });
        }
        if base <= Height(1) {
            return Ok(PruneStep::default());
        }
        let tx_runs = self.prune_tx_run(base)?;
        if tx_runs > 0 {
            return Ok(PruneStep { tx_runs, more: true, ..PruneStep::default() });
        }
        let (history_chunks, more) = self.prune_history(base)?;
        Ok(PruneStep { history_chunks, more, ..PruneStep::default() })
    }

    /// Remove the bodies of `from..to` and raise the base to `to`, in one batch; their headers, certificates
    /// and block-hash index entries move to the archive first (written and flushed before the batch, so a
    /// crash in between leaves copies in both places, which readers and the next step take as they are).
    fn prune_bodies(&self, from: Height, to: Height) -> Result<u64, StorageError> {
        let mut batch = sled::Batch::default();
        let mut archived = sled::Batch::default();
        let mut n = 0;
        for h in from.0..to.0 {
            let k = height_key(prefix::BLOCK_REF, Height(h));
            let Some(header) = self.block_ref(Height(h))?.map(|r| r.header) else { continue };
            let hk = height_key(prefix::HEADER, Height(h));
            archived.insert(&hk[..], seal(&hk, &encoding::encode(&header)));
            // Written in the same batch as the body: missing beside it is damage, not something to prune.
            let ck = height_key(prefix::CERT, Height(h));
            let cert =
                self.chain.get(ck)?.ok_or_else(|| corrupt(&ck, "the certificate of a stored block is missing"))?;
            unseal(&ck, &cert)?;
            archived.insert(&ck[..], cert);
            batch.remove(&ck[..]);
            let ik = hash_key(prefix::HASH_TO_HEIGHT, &header.hash().0);
            let index =
                self.chain.get(ik)?.ok_or_else(|| corrupt(&ik, "the hash index of a stored block is missing"))?;
            unseal(&ik, &index)?;
            archived.insert(&ik[..], index);
            batch.remove(&ik[..]);
            batch.remove(&k[..]);
            n += 1;
        }
        for item in self.chain.range(evidence_key(from, 0)..evidence_key(to, 0)).keys() {
            batch.remove(item?);
        }
        self.archive.apply_batch(archived)?;
        self.archive_db.flush()?;
        batch.insert(META_BASE, seal(META_BASE, &encoding::encode(&to)));
        self.chain.apply_batch(batch)?;
        // A block file goes once the references into it are durably gone.
        if self.blocks.any_below(to.0) {
            self.db.flush()?;
            self.blocks.remove_below(to.0)?;
        }
        Ok(n)
    }

    /// Remove the oldest transaction-index run if all of it is below `base`; the number removed (0 or 1).
    fn prune_tx_run(&self, base: Height) -> Result<u64, StorageError> {
        // The merger removes runs too: one at a time.
        let _merge = self.merge_lock();
        let Some(first) = self.tx_runs.read().unwrap_or_else(std::sync::PoisonError::into_inner).runs.first().copied()
        else {
            return Ok(0);
        };
        let known = self.prune_state().oldest_run.filter(|(id, _)| *id == first.id).map(|(_, max)| max);
        let max = match known {
            Some(max) => max,
            None => {
                // Read without the writer lock (a run is up to 2.9 MB): commits only append runs, and the
                // merger, the only other writer that removes them, waits for the merge lock held here. A run
                // that is not first any more is not damage, only nothing to prune (kept as a defence).
                let entries = match self.read_run(first) {
                    Ok((entries, _)) => entries,
                    Err(e) => {
                        let runs = self.tx_runs.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                        if runs.runs.first() != Some(&first) {
                            return Ok(0);
                        }
                        return Err(e);
                    }
                };
                let max = entries.iter().map(|e| e.loc.height.0).max().unwrap_or(0);
                self.prune_state().oldest_run = Some((first.id, max));
                max
            }
        };
        if max >= base.0 {
            return Ok(0);
        }
        let _writer = self.writer();
        let mut list = self.tx_runs.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        // Look again under the writer lock (nothing should have removed it: see above).
        if list.runs.first() != Some(&first) || list.runs.len() < 2 {
            return Ok(0);
        }
        list.runs.remove(0);
        let mut batch = sled::Batch::default();
        for k in self.chain.range(&txindex::run_start(first.id)[..]..&txindex::run_start(first.id + 1)[..]).keys() {
            batch.remove(k?);
        }
        batch.insert(super::META_TXINDEX, seal(super::META_TXINDEX, &encoding::encode(&list)));
        let mut runs = self.tx_runs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.chain.apply_batch(batch)?;
        *runs = list;
        drop(runs);
        self.prune_state().oldest_run = None;
        Ok(1)
    }

    /// Examine up to [`INDEX_SCAN_KEYS`] account-history chunks from the pass's cursor and remove those that
    /// only hold positions below `base`. Returns the chunks removed and whether the pass goes on.
    fn prune_history(&self, base: Height) -> Result<(u64, bool), StorageError> {
        // A fold reads an address's last chunk and rewrites it: not while this removes chunks.
        let _fold = self.fold_lock();
        let _writer = self.writer();
        let mut state = self.prune_state();
        // A pass examines every account-history chunk: start one only once the base has risen by
        // [`HISTORY_PASS_EVERY`] heights since the last, not at every block.
        if state.index_cursor.is_none()
            && state.index_pass_base.is_some_and(|last| base.0 < last.0.saturating_add(HISTORY_PASS_EVERY))
        {
            return Ok((0, false));
        }
        let start = state.index_cursor.clone().unwrap_or_else(|| vec![addrindex::CHUNK_PREFIX]);
        let end = [addrindex::CHUNK_PREFIX + 1];
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        let mut prev: Option<sled::IVec> = None;
        let mut examined = 0;
        let mut resume = None;
        for item in self.chain.range(&start[..]..&end[..]) {
            let (k, raw) = item?;
            if k.len() != 45 {
                return Err(corrupt(&k, "account-history key of the wrong length"));
            }
            if let Some(p) = prev.take() {
                if p[1..33] == k[1..33] {
                    // `p` holds positions below `k`'s first: all below the base when that is.
                    if super::be_u64(&k[33..41]) < base.0 {
                        batch.remove(p);
                        removed += 1;
                    }
                } else if self.history_chunk_is_old(&p, base)? {
                    batch.remove(p);
                    removed += 1;
                }
            }
            examined += 1;
            if examined > INDEX_SCAN_KEYS {
                resume = Some(k.to_vec());
                break;
            }
            let _ = raw;
            prev = Some(k);
        }
        if resume.is_none()
            && let Some(p) = prev
            && self.history_chunk_is_old(&p, base)?
        {
            batch.remove(p);
            removed += 1;
        }
        if removed > 0 {
            self.chain.apply_batch(batch)?;
        }
        let more = resume.is_some();
        state.index_cursor = resume;
        if !more {
            state.index_pass_base = Some(base);
        }
        Ok((removed, more))
    }

    /// Whether an address's last chunk holds only positions below `base`.
    fn history_chunk_is_old(&self, key: &[u8], base: Height) -> Result<bool, StorageError> {
        let Some(raw) = self.chain.get(key)? else { return Ok(false) };
        let entries = addrindex::decode_chunk(unseal(key, &raw)?).map_err(|d| corrupt(key, d))?;
        Ok(entries.last().is_some_and(|(h, _)| *h < base.0))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::storage::StorageOptions;
    use crate::storage::tests::{TestChain, open_when_released};
    use ledger_core::AccountStore;

    fn open(dir: &std::path::Path) -> Storage {
        open_when_released(dir, StorageOptions { cache_capacity_bytes: 4 << 20, block_bytes_max: 4 << 20 })
    }

    fn prune_all(store: &Storage, target: Height) -> PruneStep {
        let mut total = PruneStep::default();
        for _ in 0..100_000 {
            let s = store.prune_step(target).unwrap();
            total.bodies += s.bodies;
            total.tx_runs += s.tx_runs;
            total.history_chunks += s.history_chunks;
            if !s.more {
                return total;
            }
        }
        panic!("pruning did not finish");
    }

    /// Bodies below the target go, with their index entries; headers, certificates, hashes and accounts
    /// stay; the start-up check passes before and after a reopen; history and lookups answer from the base.
    #[test]
    fn pruning_keeps_headers_certificates_and_state_and_drops_old_bodies_and_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let chain = TestChain::new();
        let store = open(dir.path());
        store.init_genesis(&chain.genesis).unwrap();
        let mut ids = Vec::new();
        let mut hashes = Vec::new();
        // Enough transactions that the index holds several runs (runs stop merging at 2^16 entries).
        let mut nonce = 0;
        for _ in 0..300u64 {
            let txs: Vec<_> = (0..400).map(|i| chain.transfer_to(nonce + i, 1, (i % 7) as u8 + 1)).collect();
            nonce += 400;
            ids.push(txs[0].id());
            let b = chain.commit_next(&store, txs);
            hashes.push(b.hash());
        }
        let tip = store.latest_height().unwrap();
        assert_eq!(tip, Height(300));
        let runs_before = store.tx_runs.read().unwrap().runs.len();
        let sender = chain.account.public();
        let nonce_before = store.account(&sender).unwrap().nonce;

        let target = Height(201);
        let done = prune_all(&store, target);
        assert_eq!(done.bodies, 200);
        assert!(done.tx_runs >= 1, "an index run wholly below the base goes: {done:?} ({runs_before} runs)");
        assert!(done.history_chunks >= 1, "{done:?}");
        assert_eq!(store.base_height().unwrap(), target);
        for h in [1, 100, 200] {
            assert!(store.block(Height(h)).unwrap().is_none(), "body {h} pruned");
            let header = store.header(Height(h)).unwrap().expect("header kept");
            assert_eq!(header.hash(), hashes[h as usize - 1]);
            assert!(store.certificate(Height(h)).unwrap().is_some(), "certificate {h} kept");
            assert_eq!(store.height_of(&hashes[h as usize - 1]).unwrap(), Some(Height(h)));
        }
        assert!(store.block(target).unwrap().is_some());
        // What a pruned height keeps lives in the archive, not in the main database (where sled would not
        // reclaim the space around it); the window's certificates stay in the main one.
        for h in [1u64, 200] {
            let ck = height_key(prefix::CERT, Height(h));
            let ik = hash_key(prefix::HASH_TO_HEIGHT, &hashes[h as usize - 1].0);
            let hk = height_key(prefix::HEADER, Height(h));
            for k in [&ck[..], &ik[..], &hk[..]] {
                assert!(store.chain.get(k).unwrap().is_none(), "height {h}: {k:?} left in the main database");
                assert!(store.archive.get(k).unwrap().is_some(), "height {h}: {k:?} not in the archive");
            }
        }
        assert!(store.chain.get(height_key(prefix::CERT, target)).unwrap().is_some());
        assert!(store.archive.get(height_key(prefix::CERT, target)).unwrap().is_none());
        // Transactions in the window are found; below it, at most one run's worth lingers.
        for (i, id) in ids.iter().enumerate().skip(200) {
            assert_eq!(store.tx_location(id).unwrap().unwrap().height, Height(i as u64 + 1));
        }
        assert!(store.tx_location(&ids[0]).unwrap().is_none(), "the oldest run is gone");
        // History answers from the base only.
        let history = store.account_history(&sender, (u64::MAX, 0), tip, 100_000).unwrap();
        assert!(history.iter().all(|(h, _)| *h >= target.0), "{:?}", history.last());
        assert_eq!(history.len(), 100 * 400, "every transaction of the window");
        assert!(store.blocks_from(Height(5), 10, usize::MAX).unwrap().is_empty(), "no sync below the base");
        assert_eq!(store.blocks_from(target, 3, usize::MAX).unwrap().len(), 3);
        // The state is untouched and the start-up check passes, also after a reopen.
        assert_eq!(store.account(&sender).unwrap().nonce, nonce_before);
        store.verify_tail(&chain.genesis, 100).unwrap();
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.verify_tail(&chain.genesis, 100_000).unwrap(), tip);
        assert_eq!(store.base_height().unwrap(), target);
        for h in [1u64, 200] {
            assert_eq!(store.header(Height(h)).unwrap().unwrap().hash(), hashes[h as usize - 1], "after reopen");
            assert!(store.certificate(Height(h)).unwrap().is_some());
            assert_eq!(store.height_of(&hashes[h as usize - 1]).unwrap(), Some(Height(h)));
        }
        // Commits go on after pruning.
        chain.commit_next(&store, vec![chain.transfer_to(nonce, 1, 2)]);
        assert_eq!(prune_all(&store, Height(250)).bodies, 49);
    }

    /// A crash between steps: each step is one atomic batch, so a reopened database is consistent at
    /// whatever base the last applied step left, and pruning resumes from there.
    #[test]
    fn a_reopen_mid_prune_resumes_from_the_base_it_left() {
        let dir = tempfile::tempdir().unwrap();
        let chain = TestChain::new();
        let store = open(dir.path());
        store.init_genesis(&chain.genesis).unwrap();
        for n in 0..200u64 {
            chain.commit_next(&store, vec![chain.transfer(n, 1)]);
        }
        let step = store.prune_step(Height(150)).unwrap();
        assert_eq!((step.bodies, step.more), (PRUNE_BATCH_BLOCKS, true));
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.base_height().unwrap(), Height(1 + PRUNE_BATCH_BLOCKS));
        store.verify_tail(&chain.genesis, 100).unwrap();
        let done = prune_all(&store, Height(150));
        assert_eq!(done.bodies, 149 - PRUNE_BATCH_BLOCKS);
        assert_eq!(store.base_height().unwrap(), Height(150));
    }

    #[test]
    fn the_target_keeps_the_window_and_the_oldest_snapshot_held() {
        let dir = tempfile::tempdir().unwrap();
        let chain = TestChain::new();
        let store = open(dir.path());
        store.init_genesis(&chain.genesis).unwrap();
        store.set_snapshot_interval(50);
        for n in 0..120u64 {
            chain.commit_next(&store, vec![chain.transfer(n, 1)]);
        }
        assert_eq!(store.prune_target(0).unwrap(), Height(1), "0 keeps everything");
        assert_eq!(store.prune_target(1_000).unwrap(), Height(1));
        // Snapshots at 50 and 100: a node that installs the one at 50 block-syncs from 51.
        assert_eq!(store.prune_target(10).unwrap(), Height(50), "capped at the oldest snapshot held");
        assert_eq!(store.prune_target(100).unwrap(), Height(21));
        for n in 120..160u64 {
            chain.commit_next(&store, vec![chain.transfer(n, 1)]);
        }
        assert_eq!(store.snapshot_heights(), vec![Height(100), Height(150)]);
        assert_eq!(store.prune_target(10).unwrap(), Height(100));
    }
}
