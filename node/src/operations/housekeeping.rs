//! The housekeeper: one background task that prunes what is below the retention window and watches the
//! disk, so that neither ever runs on the driver (a commit waits at most for one bounded index step).
//!
//! - Every [`DISK_EVERY`] it measures the data directory and its file system ([`crate::storage::disk`]),
//!   publishes the figures as metrics, and sets or clears the mempool's refusal (`disk_full`,
//!   `disk_budget`), with a WARN when refusals start and an INFO when they stop.
//! - With `storage.retain_blocks` > 0 it runs [`Storage::prune_step`] until nothing is left to do, a step at
//!   a time on the blocking pool, and looks again every [`PRUNE_IDLE`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::Shared;
use crate::storage::Storage;
use crate::storage::disk::{self, DiskLimits};

/// How often the disk is measured.
pub const DISK_EVERY: Duration = Duration::from_secs(2);
/// Wait when pruning has nothing to do.
pub const PRUNE_IDLE: Duration = Duration::from_millis(500);
/// Pause between prune steps that have more to do, so that the pruner takes a bounded share of the disk.
pub const PRUNE_PAUSE: Duration = Duration::from_millis(5);

/// What the housekeeper is told.
#[derive(Clone, Debug)]
pub struct HousekeepingOptions {
    pub data_dir: PathBuf,
    /// `storage.retain_blocks` (0: keep every block).
    pub retain_blocks: u64,
    pub limits: DiskLimits,
}

/// Run until aborted.
pub async fn run(shared: Arc<Shared>, opts: HousekeepingOptions) {
    let mut next_disk = tokio::time::Instant::now();
    let mut refusing = false;
    loop {
        let now = tokio::time::Instant::now();
        if now >= next_disk {
            next_disk = now + DISK_EVERY;
            refusing = check_disk(&shared, &opts, refusing).await;
        }
        let more = if opts.retain_blocks > 0 { prune_once(&shared, opts.retain_blocks).await } else { false };
        let pause = if more { PRUNE_PAUSE } else { PRUNE_IDLE.min(next_disk.saturating_duration_since(now)) };
        tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
    }
}

/// Measure, publish and judge; returns whether transactions are refused now.
async fn check_disk(shared: &Arc<Shared>, opts: &HousekeepingOptions, was_refusing: bool) -> bool {
    let dir = opts.data_dir.clone();
    let usage = match tokio::task::spawn_blocking(move || disk::measure(&dir)).await {
        Ok(Ok(u)) => u,
        Ok(Err(e)) => {
            tracing::warn!(dir = %opts.data_dir.display(), error = %e, "cannot measure the data directory's disk");
            return was_refusing;
        }
        Err(_) => return was_refusing,
    };
    let refusal = disk::judge(usage, opts.limits);
    let refusing = refusal.is_some();
    shared.metrics.set_disk(usage.data_bytes, usage.free_bytes, refusing);
    match (&refusal, was_refusing) {
        (Some(r), false) => tracing::warn!(code = r.code, "{}", r.message),
        (None, true) => tracing::info!(
            data_mib = usage.data_bytes >> 20,
            free_mib = usage.free_bytes >> 20,
            "disk back within its limits: transactions are admitted again"
        ),
        _ => {}
    }
    shared.set_disk_refusal(refusal);
    if let Ok(base) = shared.storage.base_height() {
        shared.metrics.on_pruned(base.0, 0);
    }
    refusing
}

/// One prune step on the blocking pool; whether more work waits.
async fn prune_once(shared: &Arc<Shared>, retain: u64) -> bool {
    let storage: Storage = shared.storage.clone();
    let step = tokio::task::spawn_blocking(move || {
        let target = storage.prune_target(retain)?;
        let step = storage.prune_step(target)?;
        Ok::<_, crate::storage::StorageError>((step, storage.base_height()?))
    })
    .await;
    match step {
        Ok(Ok((step, base))) => {
            if step.bodies > 0 || step.tx_runs > 0 || step.history_chunks > 0 {
                tracing::debug!(?step, %base, "pruned");
            }
            shared.metrics.on_pruned(base.0, step.bodies);
            step.more
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "pruning failed; it is retried, the chain is unaffected");
            false
        }
        Err(_) => false,
    }
}
