//! `high_water.json`: the highest committed height and its block hash, written after each flushed commit,
//! outside sled. At start a database below its mark was rewound (sled reopened at an older prefix after
//! damage, or a backup was restored): [`check`] says so with both heights.

use std::path::{Path, PathBuf};

use ledger_core::{Hash, Height};
use serde::{Deserialize, Serialize};

use super::{SafetyError, atomic, checksum, read_bounded};

pub const FILE_NAME: &str = "high_water.json";
const FILE_BYTES_MAX: u64 = 4096;
const KIND: &str = "ledger-high-water";
const VERSION: u32 = 1;
const CHECKSUM_CONTEXT: &str = "ledger v1 high-water mark checksum";

/// The highest height this node committed, and the hash of that block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mark {
    pub height: Height,
    pub block_hash: Hash,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    version: u32,
    kind: String,
    chain_id: String,
    height: u64,
    block_hash: String,
    checksum: String,
}

fn sum(chain_id: &str, height: u64, hash: &Hash) -> String {
    checksum(CHECKSUM_CONTEXT, &[chain_id.as_bytes(), &height.to_le_bytes(), &hash.0])
}

/// The mark file of one node on one chain. Only ever raised.
#[derive(Debug)]
pub struct HighWater {
    path: PathBuf,
    chain_id: String,
    current: Option<Mark>,
}

impl HighWater {
    /// Read the mark in `data_dir` (none if there is no file).
    pub fn open(data_dir: &Path, chain_id: &str) -> Result<HighWater, SafetyError> {
        let path = data_dir.join(FILE_NAME);
        let current = match read_bounded(&path, FILE_BYTES_MAX)? {
            None => None,
            Some(text) => Some(parse(&text, &path, chain_id)?),
        };
        Ok(HighWater { path, chain_id: chain_id.into(), current })
    }

    pub fn mark(&self) -> Option<Mark> {
        self.current
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Record a flushed commit; a height at or below the mark changes nothing (a rewound node catching
    /// up never lowers it).
    pub fn raise(&mut self, mark: Mark) -> Result<(), SafetyError> {
        if self.current.is_some_and(|c| c.height >= mark.height) {
            return Ok(());
        }
        let doc = Document {
            version: VERSION,
            kind: KIND.into(),
            chain_id: self.chain_id.clone(),
            height: mark.height.0,
            block_hash: mark.block_hash.to_hex(),
            checksum: sum(&self.chain_id, mark.height.0, &mark.block_hash),
        };
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        atomic::write(&self.path, text.as_bytes())?;
        self.current = Some(mark);
        Ok(())
    }
}

/// [`HighWater`] raised on a thread of its own, so that the commit path does not wait for the file's two
/// fsyncs: the mark of one commit is written while the driver goes on to the next height.
///
/// The mark still trails the database by at most one block, as when it was written inline (a crash between
/// a flushed commit and its mark leaves the mark one block behind): [`MarkWriter::settle`], called before
/// each commit, waits until the previous commit's mark is durable, so the database never gets two blocks
/// ahead of its mark. A failed write stops the driver at that next commit.
#[derive(Debug)]
pub struct MarkWriter {
    marks: Option<std::sync::mpsc::SyncSender<Mark>>,
    // In a mutex only so that the driver's future is `Send` (a receiver is not `Sync`); never contended.
    written: std::sync::Mutex<std::sync::mpsc::Receiver<Result<(), SafetyError>>>,
    in_flight: bool,
    path: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MarkWriter {
    /// Move `high_water` to a new thread named `high-water`.
    pub fn start(mut high_water: HighWater) -> Result<MarkWriter, SafetyError> {
        let path = high_water.path.clone();
        let (marks, inbox) = std::sync::mpsc::sync_channel::<Mark>(1);
        let (done, written) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("high-water".into())
            .spawn(move || {
                for mark in inbox {
                    if done.send(high_water.raise(mark)).is_err() {
                        return;
                    }
                }
            })
            .map_err(|source| SafetyError::Io { action: "start the writer thread of", path: path.clone(), source })?;
        Ok(MarkWriter {
            marks: Some(marks),
            written: std::sync::Mutex::new(written),
            in_flight: false,
            path,
            thread: Some(thread),
        })
    }

    /// Wait until the last mark handed over is durable; its error if writing it failed.
    pub fn settle(&mut self) -> Result<(), SafetyError> {
        if !self.in_flight {
            return Ok(());
        }
        self.in_flight = false;
        let written = self.written.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
        match written.recv() {
            Ok(result) => result,
            Err(_) => Err(self.stopped()),
        }
    }

    /// Hand `mark` over (after the previous one is durable); returns without waiting for the write.
    pub fn raise(&mut self, mark: Mark) -> Result<(), SafetyError> {
        self.settle()?;
        match self.marks.as_ref().map(|m| m.send(mark)) {
            Some(Ok(())) => {
                self.in_flight = true;
                Ok(())
            }
            _ => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> SafetyError {
        SafetyError::Io {
            action: "write",
            path: self.path.clone(),
            source: std::io::Error::other("the high-water writer thread stopped"),
        }
    }
}

impl Drop for MarkWriter {
    /// The last mark is written before the writer goes (a stopping driver leaves its mark up to date).
    fn drop(&mut self) {
        if let Err(e) = self.settle() {
            tracing::error!(error = %e, "the last high-water mark was not written");
        }
        self.marks = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn parse(text: &str, path: &Path, chain_id: &str) -> Result<Mark, SafetyError> {
    let damaged = |detail: String| SafetyError::Damaged { path: path.to_path_buf(), detail };
    let doc: Document = serde_json::from_str(text).map_err(|e| damaged(format!("not a high-water mark: {e}")))?;
    if doc.kind != KIND || doc.version != VERSION {
        return Err(damaged(format!(
            "kind {:?} version {}, expected {KIND:?} version {VERSION}",
            doc.kind, doc.version
        )));
    }
    let block_hash = Hash::from_hex(&doc.block_hash).map_err(|e| damaged(format!("block_hash: {e}")))?;
    if sum(&doc.chain_id, doc.height, &block_hash) != doc.checksum {
        return Err(damaged("checksum does not match the contents".into()));
    }
    if doc.chain_id != chain_id {
        return Err(SafetyError::OtherChain { path: path.to_path_buf(), found: doc.chain_id, ours: chain_id.into() });
    }
    Ok(Mark { height: Height(doc.height), block_hash })
}

/// How the stored chain compares with the mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No mark, or the store holds the marked block.
    Consistent,
    /// The store's tip is below the mark: data was lost.
    Rewound { tip: Height, mark: Mark },
    /// The store holds another block at the marked height.
    Diverged { mark: Mark, stored: Hash },
}

/// Compare the store (`tip`, and `hash_at(mark.height)`) with `mark`.
pub fn check(mark: Option<Mark>, tip: Height, hash_at: impl FnOnce(Height) -> Option<Hash>) -> Verdict {
    let Some(mark) = mark else { return Verdict::Consistent };
    if tip < mark.height {
        return Verdict::Rewound { tip, mark };
    }
    match hash_at(mark.height) {
        Some(h) if h != mark.block_hash => Verdict::Diverged { mark, stored: h },
        _ => Verdict::Consistent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mark_round_trips_only_rises_and_detects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut hw = HighWater::open(dir.path(), "c").unwrap();
        assert_eq!(hw.mark(), None);
        let m = Mark { height: Height(7), block_hash: Hash([7; 32]) };
        hw.raise(m).unwrap();
        hw.raise(Mark { height: Height(3), block_hash: Hash([3; 32]) }).unwrap();
        assert_eq!(HighWater::open(dir.path(), "c").unwrap().mark(), Some(m));
        assert!(matches!(HighWater::open(dir.path(), "other"), Err(SafetyError::OtherChain { .. })));
        let path = dir.path().join(FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap().replace("\"height\": 7", "\"height\": 8");
        std::fs::write(&path, text).unwrap();
        assert!(matches!(HighWater::open(dir.path(), "c"), Err(SafetyError::Damaged { .. })));
    }

    #[test]
    fn the_writer_thread_keeps_the_mark_one_commit_behind_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = MarkWriter::start(HighWater::open(dir.path(), "c").unwrap()).unwrap();
        for h in 1..=20u64 {
            w.settle().unwrap();
            // Before commit `h`, the mark of `h - 1` is on disk.
            let on_disk = HighWater::open(dir.path(), "c").unwrap().mark().map(|m| m.height.0);
            assert_eq!(on_disk, (h > 1).then_some(h - 1));
            w.raise(Mark { height: Height(h), block_hash: Hash([h as u8; 32]) }).unwrap();
        }
        drop(w);
        let last = HighWater::open(dir.path(), "c").unwrap().mark();
        assert_eq!(last, Some(Mark { height: Height(20), block_hash: Hash([20; 32]) }));
    }

    #[test]
    fn a_failed_write_is_reported_at_the_next_commit() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let mut w = MarkWriter::start(HighWater::open(&data, "c").unwrap()).unwrap();
        // The directory goes away: the temp file cannot be created.
        std::fs::remove_dir(&data).unwrap();
        w.raise(Mark { height: Height(1), block_hash: Hash([1; 32]) }).unwrap();
        assert!(matches!(w.settle(), Err(SafetyError::Io { .. })));
    }

    #[test]
    fn verdicts() {
        let m = Mark { height: Height(10), block_hash: Hash([1; 32]) };
        assert_eq!(check(None, Height(0), |_| None), Verdict::Consistent);
        assert_eq!(check(Some(m), Height(4), |_| None), Verdict::Rewound { tip: Height(4), mark: m });
        assert_eq!(check(Some(m), Height(12), |_| Some(Hash([1; 32]))), Verdict::Consistent);
        assert_eq!(
            check(Some(m), Height(10), |_| Some(Hash([2; 32]))),
            Verdict::Diverged { mark: m, stored: Hash([2; 32]) }
        );
    }
}
