//! The transaction index (tx id → height and position) as a small log-structured merge of sorted runs.
//!
//! Why not one sled key per transaction: measured on this machine, sled 0.34 keeps about 230 bytes of heap per
//! cached key and an insert costs 10-15 µs once the tree holds a million keys; a smaller cache makes the
//! resident size worse, not better (1.7 GB for a million keys with an 8 MiB cache). At 20,000 tx/s that is a
//! fifth of a core and hundreds of MiB per minute. Here a committed block adds ONE sorted run (a chunk or
//! a few, each one sled value), and runs are merged in tiers of [`MERGE_FANOUT`] so that few stay small,
//! up to [`RUN_MERGE_MAX`] entries; beyond that they stay as they are, and a lookup reads one chunk per run.
//! Merges run on a thread of their own behind the commits ([`next_merge`], `Storage::maybe_merge_runs`).
//!
//! Layout (inside the `chain` tree; a block's run is written in the same atomic batch as the block, a merge
//! replaces runs by one in a batch of its own):
//! - `x ‖ run id (u64 BE) ‖ first key of the chunk (8 bytes) ‖ chunk ordinal (u32 BE)` → up to
//!   [`CHUNK_ENTRIES`] entries sorted by key then location, each `key (8) ‖ height (u64 LE) ‖ index (u32 LE)`,
//!   sealed with the storage checksum. An entry's key is the first [`KEY_BYTES`] bytes of the transaction id,
//!   not all 32: 20 bytes an entry instead of 44, which with sled's rewrites of merged runs was a third of the
//!   database's bytes per transaction. Two transactions can share a key (an attacker can make a pair in
//!   ~2^32 hashes), so a lookup takes every entry with the key and `Storage::committed_tx` keeps the one whose
//!   block holds the transaction at that position (its full id compared).
//! - the run list (oldest first: id and entry count) under one meta key.
//!
//! The index is derived data: if its run list is absent (a database from before it existed, or from before
//! entries were shortened), `Storage::open` removes what is left of an older index and rebuilds it from the
//! blocks.
//!
//! **Invariant:** a run's chunks cover increasing key ranges (two neighbours may share their boundary key), and
//! a chunk's storage key holds its first entry's key, so the entries with a key are in the last chunk whose
//! storage key is at most `x ‖ run ‖ key ‖ u32::MAX` and, while a chunk starts with that key, the one before.

use ledger_core::{Height, TxId};

/// Bytes of a transaction id an entry keeps.
pub const KEY_BYTES: usize = 8;
/// Bytes of one entry: key, height, index.
pub const ENTRY_BYTES: usize = KEY_BYTES + 8 + 4;
/// Most entries in one chunk (one sled value of ~20 KiB, well under sled's 128 KiB threshold for blob files).
pub const CHUNK_ENTRIES: usize = 1024;
/// Runs are not merged into one larger than this (~1.3 MB), so a commit never rewrites more; a chain of N
/// transactions keeps between N / 2^16 and N / 2^15 full runs (a lookup reads one chunk of each).
pub const RUN_MERGE_MAX: u64 = 1 << 16;
/// Key prefix of index chunks.
pub const CHUNK_PREFIX: u8 = b'x';
/// Bytes of a chunk's storage key.
pub const CHUNK_KEY_BYTES: usize = 1 + 8 + KEY_BYTES + 4;

/// The index key of a transaction id: its first [`KEY_BYTES`] bytes.
pub fn key_of(id: &TxId) -> [u8; KEY_BYTES] {
    let mut k = [0u8; KEY_BYTES];
    k.copy_from_slice(&id.0[..KEY_BYTES]);
    k
}

/// Where a committed transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct TxLocation {
    pub height: Height,
    pub index: u32,
}

/// One index entry. Entries order by key, then location (unique on a valid chain: one transaction a position).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub key: [u8; KEY_BYTES],
    pub loc: TxLocation,
}

/// A run in the run list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct RunMeta {
    pub id: u64,
    pub len: u64,
}

/// The run list, stored under one meta key.
#[derive(Clone, Debug, Default, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct RunList {
    /// Oldest first.
    pub runs: Vec<RunMeta>,
    pub next_id: u64,
}

/// Most runs a stored run list may name (full runs hold 2^15..2^16 entries, so 2^40 transactions need at most
/// 2^25 runs; this only bounds what a damaged value can make us decode).
pub const RUNS_MAX: usize = 1 << 25;

/// The entries of one block's transactions, sorted.
pub fn block_entries(height: Height, ids: impl Iterator<Item = TxId>) -> Vec<Entry> {
    let mut v: Vec<Entry> = ids
        .enumerate()
        .map(|(i, id)| Entry { key: key_of(&id), loc: TxLocation { height, index: i as u32 } })
        .collect();
    v.sort_unstable();
    v
}

/// Merge two sorted runs (an entry in both is kept once, which cannot happen on a valid chain: a position
/// holds one transaction and runs cover disjoint heights).
pub fn merge(older: &[Entry], newer: &[Entry]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(older.len() + newer.len());
    let (mut i, mut j) = (0, 0);
    while i < older.len() && j < newer.len() {
        match older[i].cmp(&newer[j]) {
            std::cmp::Ordering::Less => {
                out.push(older[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(newer[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(newer[j]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&older[i..]);
    out.extend_from_slice(&newer[j..]);
    out
}

/// Runs are merged in tiers of this many: a run's tier is `floor(log2(len) / 3)` (so a tier spans a factor of
/// 8 = `MERGE_FANOUT` in size), and once the newest runs of the new run's tier or below number
/// `MERGE_FANOUT - 1`, they and the new run become one run of the tier above (and that may complete the
/// next tier: the merger repeats until nothing merges). An entry is rewritten about
/// once per tier it climbs (2-3 times from a block's run to a full run), where merging two runs at a time
/// (what this replaced) rewrote it 6-9 times: measured with `storage_write_bench` (300 blocks of 1,000
/// transactions), the index alone made sled write 1,994 bytes per transaction that way.
pub const MERGE_FANOUT: usize = 8;

fn tier(len: u64) -> u32 {
    len.max(1).ilog2() / 3
}

/// How many of the newest stored runs (`lens`, oldest first) a new run of `new_len` entries should absorb: the
/// newest runs of its tier or below, taken while the total stays within [`RUN_MERGE_MAX`], if they are at
/// least `MERGE_FANOUT - 1` or make a full run (half the maximum or more) with it; otherwise none. So the runs
/// after the newest full one number at most `MERGE_FANOUT - 1` per tier, and a lookup reads one chunk of each.
/// A run can still be left behind for good when the runs after it outgrow the maximum before they absorb it:
/// with blocks of tens of thousands of transactions, about one such run per full run (merging two at a time,
/// as before, had the same limit).
pub fn runs_to_merge(lens: &[u64], new_len: u64) -> usize {
    let t = tier(new_len);
    let mut total = new_len;
    let mut n = 0;
    for &len in lens.iter().rev() {
        if tier(len) > t || total.saturating_add(len) > RUN_MERGE_MAX {
            break;
        }
        total += len;
        n += 1;
    }
    // Runs that the maximum keeps from reaching the fanout still merge once together they make a full run
    // (at least half the maximum), or runs of the tier below it would pile up, each small.
    if n + 1 >= MERGE_FANOUT || (n > 0 && total >= RUN_MERGE_MAX / 2) { n } else { 0 }
}

/// The next merge a list of runs (`lens`, oldest first) is due, as the inclusive range of runs to make one:
/// the oldest run that [`runs_to_merge`] would have merged with the runs before it had it just been added,
/// and those. Commits add one run each and a merger thread applies this until it returns `None`, which
/// leaves the runs as merging each at its commit would (the merge follows the commits instead of holding
/// them up).
pub fn next_merge(lens: &[u64]) -> Option<(usize, usize)> {
    (1..lens.len()).find_map(|j| match runs_to_merge(&lens[..j], lens[j]) {
        0 => None,
        n => Some((j - n, j)),
    })
}

/// Runs added since the newest full one (at least half of [`RUN_MERGE_MAX`]) beyond which a commit waits for
/// the merger: lookups read a chunk of every run, so they must not pile up when commits outpace merges.
pub const UNMERGED_RUNS_MAX: usize = 8 * MERGE_FANOUT;

/// How many runs come after the newest full one.
pub fn runs_after_full(lens: &[u64]) -> usize {
    lens.iter().rev().take_while(|&&l| l < RUN_MERGE_MAX / 2).count()
}

/// Key of the chunk number `ordinal` of run `run`, whose first entry has key `first`.
pub fn chunk_key(run: u64, first: &[u8; KEY_BYTES], ordinal: u32) -> [u8; CHUNK_KEY_BYTES] {
    let mut k = [0u8; CHUNK_KEY_BYTES];
    k[0] = CHUNK_PREFIX;
    k[1..9].copy_from_slice(&run.to_be_bytes());
    k[9..9 + KEY_BYTES].copy_from_slice(first);
    k[9 + KEY_BYTES..].copy_from_slice(&ordinal.to_be_bytes());
    k
}

/// The first possible chunk key of run `run` (and, for `run + 1`, the end of run `run`).
pub fn run_start(run: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = CHUNK_PREFIX;
    k[1..9].copy_from_slice(&run.to_be_bytes());
    k
}

/// The chunks of a sorted run, each with its storage key.
pub fn chunks_of(run: u64, entries: &[Entry]) -> impl Iterator<Item = ([u8; CHUNK_KEY_BYTES], Vec<u8>)> + '_ {
    entries.chunks(CHUNK_ENTRIES).enumerate().map(move |(n, chunk)| {
        // A run holds at most RUN_MERGE_MAX entries (or one block's: < 2^32), so its chunks number < 2^32.
        let ordinal = u32::try_from(n).unwrap_or(u32::MAX);
        (chunk_key(run, &chunk[0].key, ordinal), encode_chunk(chunk))
    })
}

pub fn encode_chunk(entries: &[Entry]) -> Vec<u8> {
    let mut v = Vec::with_capacity(entries.len() * ENTRY_BYTES);
    for e in entries {
        v.extend_from_slice(&e.key);
        v.extend_from_slice(&e.loc.height.0.to_le_bytes());
        v.extend_from_slice(&e.loc.index.to_le_bytes());
    }
    v
}

/// A chunk's payload as its fixed-size entries, if its length is 1..=[`CHUNK_ENTRIES`] entries.
fn entries_of(bytes: &[u8]) -> Result<&[[u8; ENTRY_BYTES]], String> {
    let (entries, rest) = bytes.as_chunks::<ENTRY_BYTES>();
    if !rest.is_empty() || entries.is_empty() || entries.len() > CHUNK_ENTRIES {
        return Err(format!("index chunk of {} bytes is not 1..={CHUNK_ENTRIES} entries", bytes.len()));
    }
    Ok(entries)
}

fn parse_entry(e: &[u8; ENTRY_BYTES]) -> Entry {
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&e[..KEY_BYTES]);
    let mut height = [0u8; 8];
    height.copy_from_slice(&e[KEY_BYTES..KEY_BYTES + 8]);
    let mut index = [0u8; 4];
    index.copy_from_slice(&e[KEY_BYTES + 8..]);
    Entry { key, loc: TxLocation { height: Height(u64::from_le_bytes(height)), index: u32::from_le_bytes(index) } }
}

/// Decode a chunk's payload; `Err` says what is wrong with it.
pub fn decode_chunk(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let out: Vec<Entry> = entries_of(bytes)?.iter().map(parse_entry).collect();
    if out.windows(2).any(|w| w[0] >= w[1]) {
        return Err("index chunk entries are not sorted".into());
    }
    Ok(out)
}

/// The locations of the entries with `key` in a chunk's payload, without decoding the rest (a binary search
/// over the fixed-size entries), and whether the chunk's first entry has that key (then the chunk before
/// may hold more of them).
pub fn find_raw(bytes: &[u8], key: &[u8; KEY_BYTES]) -> Result<(Vec<TxLocation>, bool), String> {
    let entries = entries_of(bytes)?;
    let from = entries.partition_point(|e| e[..KEY_BYTES] < key[..]);
    let found: Vec<TxLocation> =
        entries[from..].iter().take_while(|e| e[..KEY_BYTES] == key[..]).map(|e| parse_entry(e).loc).collect();
    Ok((found, entries[0][..KEY_BYTES] == key[..]))
}

impl super::Storage {
    fn run_lens(&self) -> Vec<u64> {
        self.tx_runs.read().unwrap_or_else(std::sync::PoisonError::into_inner).runs.iter().map(|r| r.len).collect()
    }

    /// After a commit is durable (and the storage writer lock released): start the merger thread if a merge
    /// is due and none runs. Merging a tier rewrites up to 2.9 MB (35-80 ms on the commit path when it was
    /// done there). Past [`UNMERGED_RUNS_MAX`] runs after the newest full one the commit waits for the
    /// running merger, so lookups never read more than that many small runs.
    pub(super) fn maybe_merge_runs(&self) -> Result<(), super::StorageError> {
        let lens = self.run_lens();
        if next_merge(&lens).is_none() {
            return Ok(());
        }
        let store = self.clone();
        let over_bound = runs_after_full(&lens) > UNMERGED_RUNS_MAX;
        self.merger.start("txindex-merge", over_bound, move || store.merge_due_runs())
    }

    /// Wait for the merger thread, if one runs, then merge what is still due (runs that became due while it
    /// was finishing).
    pub(super) fn finish_merges(&self) -> Result<(), super::StorageError> {
        self.merger.join("txindex-merge")?;
        self.merge_due_runs()
    }

    /// The lock held by every writer that removes runs (the merger and pruning; commits only add runs).
    /// Taken before the storage writer lock.
    pub(super) fn merge_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.merger.lock()
    }

    /// Merge runs as [`next_merge`] says until none is due. Each merge reads and merges its runs without the
    /// storage writer lock (commits go on adding runs after them), then, under it, replaces them in the run
    /// list by one run that keeps the newest one's id (ids grow along the list): old chunks out, new chunks
    /// and the list in, one atomic batch.
    pub(super) fn merge_due_runs(&self) -> Result<(), super::StorageError> {
        use super::{META_TXINDEX, corrupt, seal};
        let _merge = self.merge_lock();
        loop {
            let list = self.tx_runs.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let lens: Vec<u64> = list.runs.iter().map(|r| r.len).collect();
            let Some((a, b)) = next_merge(&lens) else { return Ok(()) };
            let absorbed = &list.runs[a..=b];
            let mut merged: Vec<Entry> = Vec::new();
            let mut batch = sled::Batch::default();
            for run in absorbed {
                let (entries, keys) = self.read_run(*run)?;
                for k in keys {
                    batch.remove(k);
                }
                merged = if merged.is_empty() { entries } else { merge(&merged, &entries) };
            }
            let id = list.runs[b].id;
            // Later writes to a key win in a sled batch: a new chunk under an old chunk's key replaces it.
            for (k, chunk) in chunks_of(id, &merged) {
                batch.insert(&k[..], seal(&k, &chunk));
            }
            let _writer = self.writer();
            let mut runs = self.tx_runs.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Commits only appended meanwhile, and pruning waits for this lock: the runs are where they were.
            if runs.runs.get(a..=b) != Some(absorbed) {
                return Err(corrupt(META_TXINDEX, "the index run list changed under a merge"));
            }
            let mut new = runs.clone();
            new.runs.splice(a..=b, [RunMeta { id, len: merged.len() as u64 }]);
            batch.insert(META_TXINDEX, seal(META_TXINDEX, &ledger_core::encoding::encode(&new)));
            self.chain.apply_batch(batch)?;
            *runs = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::Hash;

    fn id(n: u64) -> TxId {
        Hash(*blake3::hash(&n.to_le_bytes()).as_bytes())
    }

    #[test]
    fn chunks_round_trip_and_damage_is_refused() {
        let e = block_entries(Height(7), (0..100).map(id));
        let bytes = encode_chunk(&e);
        assert_eq!(bytes.len(), 100 * ENTRY_BYTES);
        assert_eq!(decode_chunk(&bytes).unwrap(), e);
        assert!(decode_chunk(&bytes[..bytes.len() - 1]).is_err());
        assert!(decode_chunk(&[]).is_err());
        let mut unsorted = e.clone();
        unsorted.swap(0, 1);
        assert!(decode_chunk(&encode_chunk(&unsorted)).is_err());
        let mut twice = e.clone();
        twice[1] = twice[0];
        assert!(decode_chunk(&encode_chunk(&twice)).is_err(), "an entry twice");
        for (i, n) in (0..100).enumerate() {
            let want = TxLocation { height: Height(7), index: i as u32 };
            let (found, _) = find_raw(&bytes, &key_of(&id(n))).unwrap();
            assert_eq!(found, vec![want]);
        }
        assert_eq!(find_raw(&bytes, &key_of(&id(1000))).unwrap().0, vec![]);
        assert!(find_raw(&bytes[1..], &key_of(&id(0))).is_err());
    }

    /// Ids that share their first [`KEY_BYTES`] bytes are all found, in one chunk or across a chunk boundary.
    #[test]
    fn entries_sharing_a_key_are_all_found() {
        let shared = |n: u8| {
            let mut h = id(u64::from(n));
            h.0[..KEY_BYTES].copy_from_slice(&[0xAB; KEY_BYTES]);
            h
        };
        let mut ids: Vec<TxId> = (0..3000).map(id).collect();
        for n in 0..5u8 {
            ids.insert(1500 + usize::from(n) * 7, shared(n));
        }
        let run = block_entries(Height(3), ids.iter().copied());
        let chunks: Vec<_> = chunks_of(9, &run).collect();
        assert_eq!(chunks.len(), 3);
        // Force the shared key across the boundary of the first two chunks: cut where they start.
        let at = run.iter().position(|e| e.key == [0xAB; KEY_BYTES]).unwrap();
        let (a, b) = (&run[at - 100..at + 2], &run[at + 2..at + 200]);
        let (found_a, first_a) = find_raw(&encode_chunk(a), &[0xAB; KEY_BYTES]).unwrap();
        let (found_b, first_b) = find_raw(&encode_chunk(b), &[0xAB; KEY_BYTES]).unwrap();
        assert_eq!((found_a.len(), found_b.len()), (2, 3));
        assert!(first_b && !first_a, "the later chunk starts with the key, so the one before is read too");
        let mut all: Vec<u32> = found_a.iter().chain(&found_b).map(|l| l.index).collect();
        all.sort_unstable();
        let want: Vec<u32> = ids
            .iter()
            .enumerate()
            .filter(|(_, i)| i.0[..KEY_BYTES] == [0xAB; KEY_BYTES])
            .map(|(n, _)| n as u32)
            .collect();
        assert_eq!(all, want);
        // Chunk keys stay unique and ordered even when chunks start with the same key.
        let k1 = chunk_key(9, &[0xAB; KEY_BYTES], 1);
        let k2 = chunk_key(9, &[0xAB; KEY_BYTES], 2);
        assert!(k1 < k2 && k2 < chunk_key(9, &[0xAB; KEY_BYTES], u32::MAX));
        assert!(
            chunk_key(9, &[0xFF; KEY_BYTES], u32::MAX)[..] < run_start(10)[..],
            "a run's chunks sort before the next run"
        );
    }

    #[test]
    fn merge_keeps_order_and_everything() {
        let a = block_entries(Height(1), (0..50).map(id));
        let b = block_entries(Height(2), (50..80).map(id));
        let m = merge(&a, &b);
        assert_eq!(m.len(), 80);
        let bytes = encode_chunk(&m);
        assert_eq!(decode_chunk(&bytes).unwrap(), m, "sorted, or decoding would refuse it");
        for n in 0..80 {
            let want = if n < 50 { Height(1) } else { Height(2) };
            assert_eq!(find_raw(&bytes, &key_of(&id(n))).unwrap().0[0].height, want);
        }
    }

    /// Runs as `index_block` keeps them, for blocks of the given sizes; returns the run lengths and how many
    /// entries were written in all (each new or merged run writes all its entries).
    fn simulate(blocks: impl Iterator<Item = u64>) -> (Vec<u64>, u64) {
        let mut runs: Vec<u64> = Vec::new();
        let mut written = 0;
        for mut new in blocks {
            written += new;
            loop {
                let n = runs_to_merge(&runs, new);
                if n == 0 {
                    break;
                }
                new += runs.drain(runs.len() - n..).sum::<u64>();
                written += new;
            }
            runs.push(new);
        }
        (runs, written)
    }

    /// Merging after the fact (several commits' runs added, then [`next_merge`] until none is due) ends where
    /// merging at each commit does, whatever the lag.
    #[test]
    fn merging_behind_the_commits_ends_where_merging_at_each_commit_does() {
        let mut x = 7u64;
        let sizes: Vec<u64> = (0..3_000)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                1 + (x >> 33) % 5000
            })
            .collect();
        let (want, _) = simulate(sizes.iter().copied());
        for lag in [1usize, 2, 5, 17, 100] {
            let mut runs: Vec<u64> = Vec::new();
            for (i, &len) in sizes.iter().enumerate() {
                runs.push(len);
                if (i + 1) % lag == 0 || i + 1 == sizes.len() {
                    while let Some((a, b)) = next_merge(&runs) {
                        let merged: u64 = runs.drain(a..=b).sum();
                        runs.insert(a, merged);
                    }
                }
            }
            assert_eq!(runs, want, "lag {lag}");
        }
        assert_eq!(next_merge(&[]), None);
        assert_eq!(next_merge(&[5; 7]), None);
        assert_eq!(next_merge(&[5; 8]), Some((0, 7)));
        assert_eq!(runs_after_full(&[RUN_MERGE_MAX, 5, 6]), 2);
    }

    #[test]
    fn merge_policy_keeps_runs_few_and_rewrites_little() {
        for block in [100u64, 1000, 4096] {
            let (runs, written) = simulate(std::iter::repeat_n(block, 1_000_000 / block as usize));
            let total: u64 = runs.iter().sum();
            assert_eq!(total, block * (1_000_000 / block));
            assert!(runs.iter().all(|&r| r <= RUN_MERGE_MAX));
            // Below the full runs (those that can no longer merge: at least an eighth of the maximum), at most
            // MERGE_FANOUT - 1 runs per tier.
            let small = runs.iter().filter(|&&r| r < RUN_MERGE_MAX / 8).count();
            assert!(small <= (MERGE_FANOUT - 1) * 6, "{block}: {runs:?}");
            assert!(runs.len() <= total as usize / (RUN_MERGE_MAX as usize / 8) + small, "{block}: {runs:?}");
            // Each entry written at most 4 times (a block's run and up to three merges).
            assert!(written <= 4 * total, "{block}: {written} written for {total}");
        }
        // Blocks of mixed sizes, smaller ones among larger ones: the small runs are absorbed, not stranded.
        let mut x = 1u64;
        let sizes = (0..20_000).map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            1 + (x >> 33) % 3000
        });
        let (runs, written) = simulate(sizes);
        let total: u64 = runs.iter().sum();
        let small = runs.iter().filter(|&&r| r < RUN_MERGE_MAX / 8).count();
        assert!(small <= (MERGE_FANOUT - 1) * 6, "{runs:?}");
        assert!(written <= 5 * total, "{written} written for {total}");
    }
}
