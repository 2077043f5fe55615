//! Storage work that runs on a thread of its own behind the commits (the account-history fold, the
//! transaction-index merges): one thread at a time per kind, a lock that serialises it with the other writers
//! of what it rewrites, and a bound past which a commit waits for it.
//!
//! A failure on the thread is not lost: the next start or join sees it. Below the bound it is logged and the
//! work is tried again on a new thread; past the bound (when the commit must wait anyway) the work is retried
//! on the commit path and a second failure is the commit's error, so a database that keeps failing stops the
//! node instead of letting the backlog grow.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use super::StorageError;

/// One kind of background work.
#[derive(Default)]
pub(super) struct Background {
    /// Held by the work and by every other writer of what it rewrites.
    lock: Mutex<()>,
    running: Mutex<Option<JoinHandle<Result<(), StorageError>>>>,
}

impl Background {
    /// The lock the work holds while it runs. Taken before the storage writer lock, never after it.
    pub(super) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start `work` on a thread named `name`, unless one runs and the backlog is within its bound
    /// (`!over_bound`): then it is left to finish, and the work due now waits for the next start. Past the
    /// bound, wait for the one running first.
    pub(super) fn start<F>(&self, name: &'static str, over_bound: bool, work: F) -> Result<(), StorageError>
    where
        F: Fn() -> Result<(), StorageError> + Clone + Send + 'static,
    {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(handle) = running.take() {
            if !handle.is_finished() && !over_bound {
                *running = Some(handle);
                return Ok(());
            }
            if let Err(e) = outcome(name, handle) {
                if over_bound {
                    tracing::warn!(thread = name, error = %e, "background storage work failed; retrying on the commit path");
                    drop(running);
                    return work();
                }
                tracing::warn!(thread = name, error = %e, "background storage work failed; it runs again");
            }
        }
        let on_thread = work.clone();
        match std::thread::Builder::new().name(name.into()).spawn(on_thread) {
            Ok(handle) => *running = Some(handle),
            Err(e) => {
                tracing::warn!(thread = name, error = %e, "cannot start a thread; doing the work on the commit path");
                drop(running);
                // The block that made it due is durable already: past the bound a failure stops the commits,
                // below it the next start tries again.
                if let Err(e) = work() {
                    if over_bound {
                        return Err(e);
                    }
                    tracing::warn!(thread = name, error = %e, "background storage work failed");
                }
            }
        }
        Ok(())
    }

    /// Wait for the thread, if one runs, and return what it returned.
    pub(super) fn join(&self, name: &'static str) -> Result<(), StorageError> {
        let handle = self.running.lock().unwrap_or_else(PoisonError::into_inner).take();
        match handle {
            Some(handle) => outcome(name, handle),
            None => Ok(()),
        }
    }
}

fn outcome(name: &'static str, handle: JoinHandle<Result<(), StorageError>>) -> Result<(), StorageError> {
    handle.join().unwrap_or(Err(StorageError::BackgroundPanicked { thread: name }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn failing(runs: &Arc<AtomicUsize>) -> impl Fn() -> Result<(), StorageError> + Clone + Send + 'static {
        let runs = runs.clone();
        move || {
            runs.fetch_add(1, Ordering::SeqCst);
            Err(StorageError::Corrupt { what: "test".into(), detail: "it fails".into() })
        }
    }

    #[test]
    fn a_failure_on_the_thread_is_seen_by_the_join() {
        let bg = Background::default();
        let runs = Arc::new(AtomicUsize::new(0));
        bg.start("test-bg", false, failing(&runs)).unwrap();
        assert!(matches!(bg.join("test-bg"), Err(StorageError::Corrupt { .. })));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        // Nothing runs any more: a second join has nothing to report.
        bg.join("test-bg").unwrap();
    }

    #[test]
    fn below_the_bound_a_failure_is_retried_on_a_thread_and_past_it_stops_the_caller() {
        let bg = Background::default();
        let runs = Arc::new(AtomicUsize::new(0));
        bg.start("test-bg", false, failing(&runs)).unwrap();
        // Below the bound: the caller goes on, whether the first run ended or not.
        bg.start("test-bg", false, failing(&runs)).unwrap();
        // Past it: the caller waits for the thread, sees its failure, retries at once and returns that error.
        assert!(matches!(bg.start("test-bg", true, failing(&runs)), Err(StorageError::Corrupt { .. })));
        let after = runs.load(Ordering::SeqCst);
        assert!((2..=3).contains(&after), "{after} runs");
        bg.join("test-bg").unwrap();
    }

    #[test]
    fn a_panic_on_the_thread_is_an_error_not_a_crash() {
        let bg = Background::default();
        bg.start("test-bg", false, || panic!("boom")).unwrap();
        assert!(matches!(bg.join("test-bg"), Err(StorageError::BackgroundPanicked { thread: "test-bg" })));
    }

    #[test]
    fn work_that_succeeds_leaves_nothing_to_report() {
        let bg = Background::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        let work = move || {
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        };
        bg.start("test-bg", false, work.clone()).unwrap();
        bg.start("test-bg", true, work).unwrap();
        bg.join("test-bg").unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }
}
