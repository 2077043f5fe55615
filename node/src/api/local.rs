//! [`LocalNode`]: a [`NodeHandle`] over a real [`Storage`] and a real [`Mempool`] behind a mutex. Tests use
//! it; the driver can use it too (call [`LocalNode::commit_block`] instead of `Storage::commit_block`, and
//! the `set_*` methods as consensus and the swarm progress), or implement [`NodeHandle`] over its own
//! channels.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::future::{BoxFuture, FutureExt};
use ledger_core::{Address, Block, CommitCertificate, SignedTransaction, StateChanges, TxError, TxId};
use tokio::sync::broadcast;

use super::metrics::Metrics;
use super::state::{BlockEvent, MempoolStats, NodeHandle, NodeStatus, PeerInfo, Rejection, unix_time_ms};
use crate::mempool::{Mempool, TxOutcome};
use crate::storage::{Storage, StorageError};

struct Pool {
    mempool: Mempool,
}

/// Storage + mempool + status, shared by the API and whoever drives consensus.
pub struct LocalNode {
    storage: Arc<Storage>,
    pool: Mutex<Pool>,
    status: Mutex<NodeStatus>,
    peers: Mutex<Vec<PeerInfo>>,
    blocks: broadcast::Sender<BlockEvent>,
    metrics: Arc<Metrics>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl LocalNode {
    /// `events_buffer` is the capacity of the committed-block channel: how many blocks a slow `/events`
    /// subscriber may fall behind before it is dropped. A `status.last_commit_local_ms` of 0 is taken as
    /// now (the start).
    pub fn new(
        storage: Arc<Storage>,
        mempool: Mempool,
        mut status: NodeStatus,
        metrics: Arc<Metrics>,
        events_buffer: usize,
    ) -> LocalNode {
        let (blocks, _) = broadcast::channel(events_buffer.max(1));
        if status.last_commit_local_ms == 0 {
            status.last_commit_local_ms = unix_time_ms();
        }
        LocalNode {
            storage,
            pool: Mutex::new(Pool { mempool }),
            status: Mutex::new(status),
            peers: Mutex::new(Vec::new()),
            blocks,
            metrics,
        }
    }

    pub fn set_status(&self, f: impl FnOnce(&mut NodeStatus)) {
        let mut s = lock(&self.status);
        f(&mut s);
        self.metrics.set_consensus(s.consensus_height.0, s.round.0);
        self.metrics.set_catching_up(s.catching_up);
        self.metrics.set_peers(s.n_peers);
    }

    pub fn set_peers(&self, peers: Vec<PeerInfo>) {
        let n = peers.len();
        *lock(&self.peers) = peers;
        self.set_status(|s| s.n_peers = n);
    }

    /// Candidates for the next block (see [`Mempool::take_for_block`]).
    pub fn take_for_block(&self, limit: usize) -> Vec<SignedTransaction> {
        lock(&self.pool).mempool.take_for_block(limit)
    }

    pub fn on_build_rejections(&self, rejected: &[(TxId, TxError)]) {
        let mut pool = lock(&self.pool);
        pool.mempool.on_build_rejections(rejected);
        self.update_mempool_metrics(&pool);
    }

    /// Commit a block durably, then tell the mempool, the metrics and the event subscribers, in that order.
    pub fn commit_block(
        &self,
        block: &Block,
        certificate: &CommitCertificate,
        changes: &StateChanges,
    ) -> Result<(), StorageError> {
        self.storage.commit_block(block, certificate, changes)?;
        let height = block.height();
        {
            let mut pool = lock(&self.pool);
            pool.mempool.on_block_committed(height, block.header.timestamp_ms, &block.txs, self.storage.as_ref());
            self.update_mempool_metrics(&pool);
        }
        self.metrics.on_block_committed(height.0, block.txs.len(), block.header.timestamp_ms);
        self.set_status(|s| {
            s.last_commit_local_ms = unix_time_ms();
            if s.consensus_height <= height {
                s.consensus_height = height.next();
                s.round = ledger_core::Round(0);
            }
        });
        // No subscribers is fine.
        let _ =
            self.blocks.send(BlockEvent { block: Arc::new(block.clone()), certificate: Arc::new(certificate.clone()) });
        Ok(())
    }

    fn update_mempool_metrics(&self, pool: &Pool) {
        self.metrics.set_mempool(pool.mempool.len(), pool.mempool.bytes());
    }

    fn submit_one(&self, pool: &mut Pool, bytes: &[u8]) -> Result<TxId, Rejection> {
        let height = self
            .storage
            .latest_height()
            .map_err(|e| Rejection { code: crate::mempool::code::STORAGE.to_string(), message: e.to_string() })?;
        pool.mempool
            .add_bytes(bytes, self.storage.as_ref(), height)
            .map_err(|e| Rejection { code: e.code().to_string(), message: e.to_string() })
    }
}

impl NodeHandle for LocalNode {
    fn submit_txs(&self, txs: Vec<Vec<u8>>) -> BoxFuture<'_, Vec<Result<TxId, Rejection>>> {
        let mut pool = lock(&self.pool);
        let results = txs.iter().map(|bytes| self.submit_one(&mut pool, bytes)).collect();
        self.update_mempool_metrics(&pool);
        futures::future::ready(results).boxed()
    }

    fn tx_outcome(&self, id: TxId) -> BoxFuture<'_, Option<TxOutcome>> {
        let outcome = lock(&self.pool).mempool.outcome(&id);
        futures::future::ready(outcome).boxed()
    }

    fn next_nonce(&self, address: Address, committed_nonce: u64) -> BoxFuture<'_, u64> {
        let next = lock(&self.pool).mempool.next_nonce(&address, committed_nonce);
        futures::future::ready(next).boxed()
    }

    fn mempool_stats(&self) -> BoxFuture<'_, MempoolStats> {
        let pool = lock(&self.pool);
        let stats = MempoolStats { count: pool.mempool.len(), bytes: pool.mempool.bytes() };
        futures::future::ready(stats).boxed()
    }

    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        futures::future::ready(lock(&self.status).clone()).boxed()
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>> {
        futures::future::ready(lock(&self.peers).clone()).boxed()
    }

    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockEvent> {
        self.blocks.subscribe()
    }
}
