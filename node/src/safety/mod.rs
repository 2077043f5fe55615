//! What keeps a validator from double-signing and a node from silently running on lost data, kept
//! beside the chain database and never inside it.
//!
//! sled can come back from damage at an older consistent prefix (measured: a flipped bit or a cut tail in
//! its log reopened 13 to 4,000 blocks lower, logging nothing), so anything that guards safety lives in
//! small files of its own in the data directory, each replaced atomically ([`atomic::write`]: temp file,
//! fsync, rename, fsync of the directory) and checksummed:
//!
//! - [`signer`]: `signer_state.json`, the consensus signer state (last signed message, lock, look-back
//!   floor) bound to the validator key and chain it was written for. A file for another key or chain is
//!   refused, never replayed. Export and import move it between machines, import only raising it.
//! - [`high_water`]: `high_water.json`, the last committed height and block hash, written after every
//!   flushed commit (on a thread of its own, [`high_water::MarkWriter`]: at most one block behind the
//!   database). A database found below it at start was rewound: loud, and a validator stops there until its
//!   operator decides (`--accept-rewind`).
//!
//! `ledgerd reset-data` deletes the database (`db/`) and keeps these files, so a resynced validator keeps
//! its guard.

pub mod atomic;
pub mod high_water;
pub mod signer;

use std::path::PathBuf;

/// Why a safety file cannot be used. Every message names the file and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SafetyError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is damaged ({detail}); it guards this validator against double-signing, so the node will not guess: restore it from a backup or from `ledgerd signer export` of the previous machine, or move it aside to start without it (the look-back guard then protects what it can)"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} was written for validator {found}, but this node's key is {ours}: another validator's signer state is never used. If this home belongs to {ours}, move that file aside; if the key is wrong, fix validator_key_file"
    )]
    OtherKey { path: PathBuf, found: String, ours: String },
    #[error(
        "{path} was written for chain {found}, but the genesis is for chain {ours}: point data_dir at this chain's data or use the right genesis file"
    )]
    OtherChain { path: PathBuf, found: String, ours: String },
    #[error("{path} is {len} bytes, limit is {max}")]
    TooLarge { path: PathBuf, len: u64, max: u64 },
    #[error(
        "{path} is locked: this home is already in use by {holder} (a node runs on this data directory: stop it first)"
    )]
    InUse { path: PathBuf, holder: String },
}

/// Lock file inside the data directory, held by a running node (and by the commands that change its
/// files), so that two processes never use one data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Take the data directory's lock (creating the directory); held until the returned file is dropped. The
/// holder writes its process id into the file, so that a second process can say who holds it.
pub fn lock_data_dir(data_dir: &std::path::Path) -> Result<std::fs::File, SafetyError> {
    use std::io::{Seek, Write};
    let path = data_dir.join(LOCK_FILE);
    let io = |action, source| SafetyError::Io { action, path: path.clone(), source };
    std::fs::create_dir_all(data_dir).map_err(|e| io("create the directory of", e))?;
    let mut file =
        std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| io("open", e))?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| writeln!(file, "{}", std::process::id()))
                .map_err(|e| io("write", e))?;
            Ok(file)
        }
        Err(std::fs::TryLockError::WouldBlock) => Err(SafetyError::InUse { holder: lock_holder(&path), path }),
        Err(std::fs::TryLockError::Error(e)) => Err(io("lock", e)),
    }
}

/// Who holds the data directory's lock (`PID n` or `another process`), or `None` when nobody does (or there
/// is no lock file). For read-only callers such as `ledgerd doctor`: it writes nothing and creates
/// nothing; it takes a shared lock on the file for an instant to learn whether the exclusive one is held
/// (a `ledgerd start` in that very instant is refused as if the home were in use, and can be run again).
pub fn lock_held_by(data_dir: &std::path::Path) -> Option<String> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::File::open(&path).ok()?;
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            None
        }
        Err(std::fs::TryLockError::WouldBlock) => Some(lock_holder(&path)),
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// `PID n` from a held lock file, or `another process` when it holds no readable process id.
fn lock_holder(path: &std::path::Path) -> String {
    let pid = read_bounded(path, 64).ok().flatten().and_then(|t| t.trim().parse::<u32>().ok());
    pid.map_or_else(|| "another process".to_string(), |p| format!("PID {p}"))
}

/// Read a small file whole, refusing anything larger than `max` before reading it.
pub fn read_bounded(path: &std::path::Path, max: u64) -> Result<Option<String>, SafetyError> {
    let io = |action, source| SafetyError::Io { action, path: path.to_path_buf(), source };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", e)),
    };
    if meta.len() > max {
        return Err(SafetyError::TooLarge { path: path.to_path_buf(), len: meta.len(), max });
    }
    let bytes = std::fs::read(path).map_err(|e| io("read", e))?;
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| SafetyError::Damaged { path: path.to_path_buf(), detail: "not UTF-8 text".into() })
}

/// First 16 bytes of a keyed blake3 over length-prefixed fields, as hex.
pub(crate) fn checksum(context: &str, fields: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new_derive_key(context);
    for f in fields {
        h.update(&(f.len() as u64).to_le_bytes());
        h.update(f);
    }
    hex::encode(&h.finalize().as_bytes()[..16])
}
