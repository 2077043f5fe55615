//! What the benchmarks read of a process and of a directory: CPU time and bytes written (`/proc`), and the
//! allocated size of a directory's files. Linux only, as the benchmarks are.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// Clock ticks per second, the unit of `/proc/<pid>/stat`'s CPU times.
pub fn clock_ticks() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output().context("running getconf CLK_TCK")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>().unwrap_or(100.0))
}

/// utime + stime of `pid` (every thread) in seconds.
pub fn cpu_seconds(pid: u32, ticks_per_s: f64) -> Result<f64> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at field 3; utime is 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / ticks_per_s)
}

/// Bytes `pid` caused to be written to storage since it started (`write_bytes` of `/proc/<pid>/io`).
pub fn io_write_bytes(pid: u32) -> Result<u64> {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).with_context(|| format!("reading /proc/{pid}/io"))?;
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no write_bytes in /proc/<pid>/io")
}

/// Allocated bytes (blocks on disk, not file lengths) of every file under `dir`; 0 if it does not exist.
pub fn allocated_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    if !dir.exists() {
        return Ok(0);
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() { allocated_bytes(&entry.path())? } else { meta.blocks() * 512 };
    }
    Ok(total)
}
