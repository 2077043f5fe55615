//! Block bodies in append-only files beside sled (`blocks/` in the database's directory).
//!
//! Why not in sled: sled 0.34 keeps up to 16 keys in a leaf and rewrites a whole leaf every 10 updates to it
//! and at every split. A leaf of 16 bodies of ~700 KB (4,096 transactions) is ~11 MB; sled writes such a
//! leaf to a blob file of its own, charges it to its page cache at the size of a pointer (so the cache bound
//! does not hold it), and measured here wrote each body two to three times over. Here a body is written
//! once, with one `fdatasync`, and sled keeps a small reference to it ([`Location`], with the header and
//! transaction count, so reading a header does not touch the file).
//!
//! Files are named by the height of the first record written to them (`00000000000000000042.blk`), and a new
//! file starts once the current one reaches [`FILE_BYTES`]. Records are appended in height order, so a file
//! holds heights below the first height of the next file; pruning deletes a whole file once the next one
//! starts at or below the base. A new file starts only above the highest height already in the current one
//! (a validator's own proposal and then the block of that height go to the same file). A record is
//! `payload || checksum`, the checksum a keyed blake3 of the height and the payload, so a flipped bit, a cut
//! record or a record read for another height is refused.
//!
//! Crash safety: a record is written and synced before the sled batch that refers to it is applied, so sled
//! never durably points at bytes that are not on disk. A crash between the two leaves bytes no reference
//! names at the end of the newest file: new records go after them, and pruning removes them with their file.
//! Files that start above the next height to commit hold nothing referenced (a rewound database), and are
//! deleted at open.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// The directory of the block files, inside the database's directory.
pub const DIR: &str = "blocks";
/// A new file starts once the current one holds this many bytes.
pub const FILE_BYTES: u64 = 64 * 1024 * 1024;
const SUFFIX: &str = ".blk";
const CHECKSUM_BYTES: usize = 16;
const CHECKSUM_CONTEXT: &str = "ledger v1 node block file record checksum";

/// Where a record is: its file (named by the file's first height), offset and length (checksum included).
#[derive(Clone, Copy, Debug, PartialEq, Eq, borsh::BorshSerialize, borsh::BorshDeserialize)]
pub struct Location {
    pub file: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    /// The length of the record's payload (the block's encoding), without its checksum.
    pub fn payload_len(&self) -> usize {
        (self.len as usize).saturating_sub(CHECKSUM_BYTES)
    }
}

/// Why a record could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("block file {0} is missing")]
    FileMissing(String),
    #[error("block file {file}: {detail}")]
    Damaged { file: String, detail: String },
    #[error("block file {file}: {source}")]
    Io { file: String, source: std::io::Error },
}

/// The open block files. Shared by every clone of a `Storage`.
pub struct BlockFiles {
    dir: PathBuf,
    /// Every file by its first height.
    files: RwLock<BTreeMap<u64, Arc<File>>>,
    /// The file appended to, its length (the offset of the next record), and the highest height it may hold
    /// (a new file starts only above it, so every file holds heights below the next file's first).
    writer: Mutex<Option<Writer>>,
    /// A new file starts once the current one holds this many bytes ([`FILE_BYTES`]).
    file_bytes: u64,
}

#[derive(Clone, Copy)]
struct Writer {
    first: u64,
    end: u64,
    top: u64,
}

fn file_name(first: u64) -> String {
    format!("{first:020}{SUFFIX}")
}

fn checksum(height: u64, payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut h = blake3::Hasher::new_derive_key(CHECKSUM_CONTEXT);
    h.update(&height.to_le_bytes());
    h.update(payload);
    let mut out = [0u8; CHECKSUM_BYTES];
    out.copy_from_slice(&h.finalize().as_bytes()[..CHECKSUM_BYTES]);
    out
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlockFiles {
    /// Open the files in `dir` (created if missing). Other names in it are left alone.
    pub fn open(dir: &Path) -> std::io::Result<BlockFiles> {
        BlockFiles::open_with(dir, FILE_BYTES)
    }

    /// [`BlockFiles::open`] with another file size (tests).
    pub fn open_with(dir: &Path, file_bytes: u64) -> std::io::Result<BlockFiles> {
        std::fs::create_dir_all(dir)?;
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(first) = name
                .to_str()
                .and_then(|n| n.strip_suffix(SUFFIX))
                .filter(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let file = OpenOptions::new().read(true).write(true).open(entry.path())?;
            files.insert(first, Arc::new(file));
        }
        let writer = match files.last_key_value() {
            Some((first, file)) => Some(Writer { first: *first, end: file.metadata()?.len(), top: *first }),
            None => None,
        };
        Ok(BlockFiles { dir: dir.to_path_buf(), files: RwLock::new(files), writer: Mutex::new(writer), file_bytes })
    }

    fn files(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<File>>> {
        self.files.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn files_mut(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Arc<File>>> {
        self.files.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Delete the files that start above `next` (the next height to commit): nothing refers to them; and take
    /// the newest file as holding heights up to `next` (a proposal of that height may be in it). Returns how
    /// many were deleted.
    pub fn drop_above(&self, next: u64) -> std::io::Result<usize> {
        let mut writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut files = self.files_mut();
        let gone: Vec<u64> = files.range(next.saturating_add(1)..).map(|(k, _)| *k).collect();
        for first in &gone {
            files.remove(first);
            std::fs::remove_file(self.dir.join(file_name(*first)))?;
        }
        if !gone.is_empty() {
            sync_dir(&self.dir)?;
        }
        *writer = match files.last_key_value() {
            Some((first, file)) => Some(Writer { first: *first, end: file.metadata()?.len(), top: next.max(*first) }),
            None => None,
        };
        Ok(gone.len())
    }

    /// Append the record of `payload` at `height` and sync it; once this returns, the record is durable.
    pub fn append(&self, height: u64, payload: &[u8]) -> std::io::Result<Location> {
        let len = payload
            .len()
            .checked_add(CHECKSUM_BYTES)
            .and_then(|l| u32::try_from(l).ok())
            .ok_or_else(|| std::io::Error::other("record larger than 4 GiB"))?;
        let mut writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (first, offset, top) = match *writer {
            // A height not above the current file's highest (a proposal, then the block of its height) starts
            // no file: the next file's first height must be above every height in this one.
            Some(w) if w.end < self.file_bytes || height <= w.top => (w.first, w.end, w.top.max(height)),
            _ => {
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(self.dir.join(file_name(height)))?;
                let end = file.metadata()?.len();
                sync_dir(&self.dir)?;
                self.files_mut().insert(height, Arc::new(file));
                (height, end, height)
            }
        };
        let file =
            self.files().get(&first).cloned().ok_or_else(|| std::io::Error::other("the current block file is gone"))?;
        file.write_all_at(payload, offset)?;
        file.write_all_at(&checksum(height, payload), offset + payload.len() as u64)?;
        file.sync_data()?;
        *writer = Some(Writer { first, end: offset + u64::from(len), top });
        Ok(Location { file: first, offset, len })
    }

    /// The payload of the record at `at`, written for `height`, checked; `max` bounds its length.
    pub fn read(&self, height: u64, at: Location, max: usize) -> Result<Vec<u8>, ReadError> {
        let name = || self.dir.join(file_name(at.file)).display().to_string();
        let Some(file) = self.files().get(&at.file).cloned() else {
            return Err(ReadError::FileMissing(name()));
        };
        let len = at.len as usize;
        if len < CHECKSUM_BYTES || len - CHECKSUM_BYTES > max {
            return Err(ReadError::Damaged {
                file: name(),
                detail: format!("a record of {len} bytes is named (at most {max} bytes and a checksum)"),
            });
        }
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, at.offset).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ReadError::Damaged {
                file: name(),
                detail: format!("the record at {} ({len} bytes) goes past the end of the file", at.offset),
            },
            _ => ReadError::Io { file: name(), source: e },
        })?;
        let sum = bytes.split_off(len - CHECKSUM_BYTES);
        if checksum(height, &bytes) != sum[..] {
            return Err(ReadError::Damaged {
                file: name(),
                detail: format!("checksum mismatch in the record of height {height} at {}", at.offset),
            });
        }
        Ok(bytes)
    }

    /// Delete the files whose records are all below `base` (the next file starts at or below it); never the
    /// file appended to. Returns how many were deleted.
    pub fn remove_below(&self, base: u64) -> std::io::Result<usize> {
        let writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = writer.map(|w| w.first);
        let mut files = self.files_mut();
        let firsts: Vec<u64> = files.keys().copied().collect();
        let gone: Vec<u64> =
            firsts.windows(2).filter(|w| w[1] <= base && Some(w[0]) != current).map(|w| w[0]).collect();
        for first in &gone {
            files.remove(first);
            std::fs::remove_file(self.dir.join(file_name(*first)))?;
        }
        if !gone.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(gone.len())
    }

    /// Whether some file holds only records below `base`.
    pub fn any_below(&self, base: u64) -> bool {
        self.files().keys().nth(1).is_some_and(|second| *second <= base)
    }

    /// Whether the file that starts at `first` is there.
    pub fn has_file(&self, first: u64) -> bool {
        self.files().contains_key(&first)
    }

    /// How many files there are.
    pub fn count(&self) -> usize {
        self.files().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_damage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        let a = files.append(1, b"first block").unwrap();
        let b = files.append(2, &vec![7u8; 1000]).unwrap();
        assert_eq!(files.read(1, a, 100).unwrap(), b"first block");
        assert_eq!(files.read(2, b, 1000).unwrap(), vec![7u8; 1000]);
        // Read for another height, or longer than allowed: refused.
        assert!(matches!(files.read(2, a, 100), Err(ReadError::Damaged { .. })));
        assert!(matches!(files.read(2, b, 999), Err(ReadError::Damaged { .. })));
        // A flipped bit in the file.
        let path = dir.path().join(file_name(1));
        let mut raw = std::fs::read(&path).unwrap();
        raw[3] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        let err = files.read(1, a, 100).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        // A record past the end (a cut file).
        let past = Location { offset: raw.len() as u64 - 10, ..b };
        assert!(files.read(2, past, 1000).unwrap_err().to_string().contains("past the end"));
        assert!(matches!(files.read(1, Location { file: 9, ..a }, 100), Err(ReadError::FileMissing(_))));
    }

    #[test]
    fn appends_after_a_reopen_and_after_bytes_nothing_refers_to() {
        let dir = tempfile::tempdir().unwrap();
        let a = {
            let files = BlockFiles::open(dir.path()).unwrap();
            files.append(5, b"five").unwrap()
        };
        // A crash mid-append left bytes no reference names.
        let path = dir.path().join(file_name(5));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        std::io::Write::write_all(&mut f, b"half a record").unwrap();
        let files = BlockFiles::open(dir.path()).unwrap();
        let b = files.append(6, b"six").unwrap();
        assert_eq!(b.file, 5);
        assert!(b.offset > a.offset + u64::from(a.len));
        assert_eq!(files.read(5, a, 10).unwrap(), b"five");
        assert_eq!(files.read(6, b, 10).unwrap(), b"six");
    }

    #[test]
    fn files_roll_over_and_old_ones_are_removed_below_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let files = BlockFiles::open_with(dir.path(), 2000).unwrap();
        let big = vec![1u8; 1000];
        let mut at = Vec::new();
        for h in 1..=5u64 {
            at.push(files.append(h, &big).unwrap());
        }
        // Two records a file: files start at 1, 3 and 5.
        assert_eq!(at.iter().map(|l| l.file).collect::<Vec<_>>(), vec![1, 1, 3, 3, 5]);
        assert!(!files.any_below(2));
        assert_eq!(files.remove_below(2).unwrap(), 0);
        assert!(files.any_below(3));
        assert_eq!(files.remove_below(4).unwrap(), 1);
        assert!(matches!(files.read(1, at[0], big.len()), Err(ReadError::FileMissing(_))));
        assert_eq!(files.read(3, at[2], big.len()).unwrap().len(), big.len());
        // The file appended to stays, whatever the base.
        assert_eq!(files.remove_below(100).unwrap(), 1);
        assert_eq!(files.count(), 1);
        assert_eq!(files.read(5, at[4], big.len()).unwrap().len(), big.len());
        // Foreign names are left alone, and a sign is not a digit.
        std::fs::write(dir.path().join("+0000000000000000042.blk"), b"not ours").unwrap();
        // A height not above the current file's highest goes into it even when it is full: a file named by it
        // would start below heights stored before it.
        assert_eq!(files.append(5, &big).unwrap().file, 5);
        assert_eq!(files.append(6, &big).unwrap().file, 6);
        // Files above the next height hold nothing referenced.
        files.append(9, b"nine").unwrap();
        assert_eq!(files.count(), 2);
        drop(files);
        std::fs::write(dir.path().join(file_name(12)), b"stray").unwrap();
        let files = BlockFiles::open_with(dir.path(), 2000).unwrap();
        assert_eq!(files.count(), 3);
        assert_eq!(files.drop_above(10).unwrap(), 1);
        assert_eq!(files.count(), 2);
        assert_eq!(files.append(10, b"ten").unwrap().file, 6);
        assert!(dir.path().join("+0000000000000000042.blk").exists());
    }
}
