//! Replacing the database with one state-synced beside it (a node fallen behind every peer's retention
//! window, see `statesync::run_if_pruned_past`).
//!
//! The snapshot is installed into `data/db.incoming`, an empty database, while `data/db` stays as it was.
//! Only once the install is complete (its batch is atomic and ends with the genesis marker) are the
//! directories renamed: `db` to `db.replaced-<tip>` (kept: the operator deletes it when its blocks are not
//! wanted), then `db.incoming` to `db`, and the data directory is synced. A crash anywhere leaves a state
//! that [`recover`] finishes or undoes at the next start: an `incoming` beside a `db` was never swapped in
//! (removed, the node starts on its old database); an `incoming` without a `db` was complete and half
//! swapped (renamed to `db`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Storage, StorageError, StorageOptions};

/// Where the snapshot is installed before it replaces the database.
pub const INCOMING_DIR: &str = "db.incoming";
/// The database's directory in the data directory.
pub const DB_DIR: &str = "db";

/// Finish or undo a replacement that a crash interrupted; what was done, for the log.
pub fn recover(data_dir: &Path) -> std::io::Result<Option<String>> {
    let (db, incoming) = (data_dir.join(DB_DIR), data_dir.join(INCOMING_DIR));
    if !incoming.exists() {
        return Ok(None);
    }
    if db.exists() {
        std::fs::remove_dir_all(&incoming)?;
        sync_dir(data_dir)?;
        return Ok(Some(format!("removed {}: a state sync that was not swapped in", incoming.display())));
    }
    std::fs::rename(&incoming, &db)?;
    sync_dir(data_dir)?;
    Ok(Some(format!("renamed {} to {}: a state sync that was half swapped in", incoming.display(), db.display())))
}

/// Swap the (complete, closed) incoming database in for the current one (closed), which is kept under
/// `db.replaced-<tip>` (or `db.replaced-<tip>-<n>` if that exists). Returns where it was kept.
pub fn swap_in(data_dir: &Path, tip: u64) -> std::io::Result<PathBuf> {
    let mut kept = data_dir.join(format!("{DB_DIR}.replaced-{tip}"));
    let mut n = 1;
    while kept.exists() {
        kept = data_dir.join(format!("{DB_DIR}.replaced-{tip}-{n}"));
        n += 1;
    }
    std::fs::rename(data_dir.join(DB_DIR), &kept)?;
    std::fs::rename(data_dir.join(INCOMING_DIR), data_dir.join(DB_DIR))?;
    sync_dir(data_dir)?;
    Ok(kept)
}

/// Open a database whose previous handle in this process was just dropped: sled lets go of its file lock
/// from a background thread shortly after, so a lock refusal is retried until `within` has passed.
pub fn open_released(dir: &Path, opts: StorageOptions, within: Duration) -> Result<Storage, StorageError> {
    let deadline = Instant::now() + within;
    loop {
        match Storage::open(dir, opts.clone()) {
            Err(e) if e.to_string().contains("could not acquire lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Wait until no sled handle holds the database in `dir` (sled locks its `db` file exclusively while open and
/// lets go from a background thread shortly after the last handle is dropped; that thread may still write
/// into the directory until then, so nothing renames or removes it before).
pub fn wait_released(dir: &Path, within: Duration) -> std::io::Result<()> {
    let deadline = Instant::now() + within;
    wait_file_released(&dir.join("db"), deadline)?;
    // The archive is a sled database of its own, with its own threads.
    wait_file_released(&dir.join(super::ARCHIVE_DIR).join("db"), deadline)
}

fn wait_file_released(path: &Path, deadline: Instant) -> std::io::Result<()> {
    use fs2::FileExt;
    let file = match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    loop {
        match file.try_lock_exclusive() {
            Ok(()) => return FileExt::unlock(&file),
            Err(e) if Instant::now() >= deadline => {
                return Err(std::io::Error::other(format!("{} is still in use: {e}", path.display())));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn mark(dir: &Path, name: &str) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("mark"), name).unwrap();
    }

    fn read_mark(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("mark")).unwrap()
    }

    #[test]
    fn a_swap_keeps_the_old_database_and_an_interrupted_one_is_finished_or_undone() {
        let data = tempfile::tempdir().unwrap();
        let d = data.path();
        assert_eq!(recover(d).unwrap(), None, "nothing to do");
        mark(&d.join(DB_DIR), "old");
        mark(&d.join(INCOMING_DIR), "new");
        let kept = swap_in(d, 42).unwrap();
        assert_eq!(kept, d.join("db.replaced-42"));
        assert_eq!((read_mark(&d.join(DB_DIR)), read_mark(&kept)), ("new".to_string(), "old".to_string()));
        assert!(!d.join(INCOMING_DIR).exists());
        // A second replacement at the same tip does not overwrite the first one kept.
        mark(&d.join(INCOMING_DIR), "newer");
        assert_eq!(swap_in(d, 42).unwrap(), d.join("db.replaced-42-1"));
        assert_eq!(read_mark(&d.join("db.replaced-42")), "old");

        // Crash before the swap began: the incoming database goes, the current one stays.
        mark(&d.join(INCOMING_DIR), "unswapped");
        assert!(recover(d).unwrap().unwrap().contains("not swapped in"));
        assert_eq!(read_mark(&d.join(DB_DIR)), "newer");
        assert!(!d.join(INCOMING_DIR).exists());
        // Crash between the two renames: the incoming database was complete; it becomes the database.
        std::fs::rename(d.join(DB_DIR), d.join("db.replaced-50")).unwrap();
        mark(&d.join(INCOMING_DIR), "half");
        assert!(recover(d).unwrap().unwrap().contains("half swapped"));
        assert_eq!(read_mark(&d.join(DB_DIR)), "half");
    }
}
