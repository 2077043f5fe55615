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
