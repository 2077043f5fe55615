//! The data directory's disk: its size against the byte budget (`storage.max_data_mb`) and the free space
//! of its file system against the floor (`storage.min_free_mb`). Past either limit the node refuses new
//! transactions (503 with a code, from the API and from gossip alike) instead of filling the disk; it keeps
//! committing blocks, which is what frees space again once pruning or the operator makes room.

use std::path::Path;

/// Code of the refusal below the free-space floor.
pub const DISK_FULL: &str = "disk_full";
/// Code of the refusal above the byte budget.
pub const DISK_BUDGET: &str = "disk_budget";

/// The limits, in bytes (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskLimits {
    pub min_free_bytes: u64,
    pub max_data_bytes: u64,
}

/// What was measured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes of the files under the data directory.
    pub data_bytes: u64,
    /// Bytes available to this process on the data directory's file system.
    pub free_bytes: u64,
}

/// Why the node refuses transactions now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskRefusal {
    pub code: &'static str,
    pub message: String,
}

/// Measure `data_dir`: the sum of its files' sizes and the free space of its file system.
pub fn measure(data_dir: &Path) -> std::io::Result<DiskUsage> {
    Ok(DiskUsage { data_bytes: dir_bytes(data_dir)?, free_bytes: free_bytes(data_dir)? })
}

/// Judge a measurement against the limits: the floor first (a full disk stops everything), then the budget.
pub fn judge(usage: DiskUsage, limits: DiskLimits) -> Option<DiskRefusal> {
    const MIB: u64 = 1 << 20;
    if limits.min_free_bytes > 0 && usage.free_bytes < limits.min_free_bytes {
        return Some(DiskRefusal {
            code: DISK_FULL,
            message: format!(
                "the node's disk has {} MiB free, below its floor storage.min_free_mb = {}: it refuses transactions until space is freed",
                usage.free_bytes / MIB,
                limits.min_free_bytes / MIB
            ),
        });
    }
    if limits.max_data_bytes > 0 && usage.data_bytes > limits.max_data_bytes {
        return Some(DiskRefusal {
            code: DISK_BUDGET,
            message: format!(
                "the node's data directory holds {} MiB, above its budget storage.max_data_mb = {}: it refuses transactions until pruning (storage.retain_blocks) brings it under",
                usage.data_bytes / MIB,
                limits.max_data_bytes / MIB
            ),
        });
    }
    None
}

/// Sum of the sizes of the regular files under `dir` (sled's files: a handful, plus blobs). Depth is
/// bounded; symlinks are not followed.
pub fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    fn walk(dir: &Path, depth: u32, total: &mut u64) -> std::io::Result<()> {
        if depth > 8 {
            return Ok(());
        }
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            // sled removes blob files while the node runs: one gone since the listing counts as 0.
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                walk(&entry.path(), depth + 1, total)?;
            } else if meta.is_file() {
                *total = total.saturating_add(meta.len());
            }
        }
        Ok(())
    }
    let mut total = 0;
    walk(dir, 0, &mut total)?;
    Ok(total)
}

/// Bytes available to an unprivileged process on the file system holding `path` (statvfs).
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    fs2::available_space(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_floor_comes_before_the_budget_and_zero_is_no_limit() {
        let usage = DiskUsage { data_bytes: 10 << 20, free_bytes: 100 << 20 };
        assert_eq!(judge(usage, DiskLimits::default()), None);
        assert_eq!(judge(usage, DiskLimits { min_free_bytes: 100 << 20, max_data_bytes: 10 << 20 }), None);
        let full = judge(usage, DiskLimits { min_free_bytes: 101 << 20, max_data_bytes: 1 }).unwrap();
        assert_eq!(full.code, DISK_FULL);
        assert!(
            full.message.contains("100 MiB free") && full.message.contains("min_free_mb = 101"),
            "{}",
            full.message
        );
        let over = judge(usage, DiskLimits { min_free_bytes: 0, max_data_bytes: 9 << 20 }).unwrap();
        assert_eq!(over.code, DISK_BUDGET);
        assert!(over.message.contains("10 MiB") && over.message.contains("max_data_mb = 9"), "{}", over.message);
    }

    #[test]
    fn measures_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("db/a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("b"), vec![0u8; 24]).unwrap();
        let u = measure(dir.path()).unwrap();
        assert_eq!(u.data_bytes, 1024);
        assert!(u.free_bytes > 0);
        assert!(measure(&dir.path().join("missing")).is_err());
    }
}
