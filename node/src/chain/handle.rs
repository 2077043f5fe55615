//! [`NodeApi`]: the running node's [`NodeHandle`] for the HTTP API, over the driver's [`Shared`] state (storage,
//! mempool mutex), its status watch, the network handle and the transaction gossip batcher.
//!
//! Submitted transactions go through the same mempool admission as gossiped ones; the admitted ones are
//! handed to [`tx_gossip`], which publishes them on the `txs` topic in batches (one gossip message per
//! batch, like the batches peers send), so a burst of single-transaction requests does not cost one gossip
//! message (and one validation per peer) each.

use std::sync::Arc;
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt};
use ledger_core::{Address, SignedTransaction, TxError, TxId};
use tokio::sync::{broadcast, mpsc, watch};

use crate::api::{BlockEvent, MempoolStats, NodeHandle, NodeStatus, PeerInfo, Rejection, SignerInfo, unix_time_ms};
use crate::driver::{Shared, Status};
use crate::mempool::{MempoolError, Plan, TxOutcome};
use crate::p2p::{NetError, NetworkHandle};
use crate::wire::{GossipMessage, TX_BATCH_MAX};

/// Admitted local transactions waiting to be gossiped. Submitters wait when it is full.
pub const TX_GOSSIP_QUEUE: usize = 16 * 1024;
/// How long the batcher waits for more transactions after the first of a batch.
const TX_BATCH_WAIT: Duration = Duration::from_millis(2);
/// How long the API waits for the swarm task to list peers.
const PEERS_TIMEOUT: Duration = Duration::from_secs(2);

/// The node side of the API.
pub struct NodeApi {
    shared: Arc<Shared>,
    status: watch::Receiver<Status>,
    network: NetworkHandle,
    gossip: mpsc::Sender<SignedTransaction>,
    node_id: String,
    validator: Option<Address>,
    /// Why `validator` is `None` although a validator key is configured (key not in the set).
    validator_reason: Option<String>,
    /// Wall-clock ms when this handle was made: the floor of `last_commit_local_ms`, so a driver that has
    /// not reported a commit or its start yet (0) does not read as stalled since 1970.
    started_ms: u64,
    /// The door's last answer to `admission_open`, given again while the mempool is held. The door only
    /// refuses early and cheaply: admission checks the pool again under its lock, so an answer a moment old
    /// is safe either way, and a request never waits on an async worker for the lock the driver holds while
    /// it commits.
    door_open: std::sync::atomic::AtomicBool,
}

impl NodeApi {
    pub fn new(
        shared: Arc<Shared>,
        status: watch::Receiver<Status>,
        network: NetworkHandle,
        gossip: mpsc::Sender<SignedTransaction>,
        validator: Option<Address>,
        validator_reason: Option<String>,
    ) -> NodeApi {
        let node_id = network.local_peer_id().to_string();
        let started_ms = unix_time_ms();
        let door_open = std::sync::atomic::AtomicBool::new(true);
        NodeApi { shared, status, network, gossip, node_id, validator, validator_reason, started_ms, door_open }
    }

    /// Admit decoded transactions to the mempool and queue the admitted ones for gossip.
    pub async fn submit(&self, txs: Vec<SignedTransaction>) -> Vec<Result<TxId, MempoolError>> {
        let (results, admitted) = self.check_and_admit(txs.into_iter().map(Ok).collect()).await;
        self.queue_gossip(admitted).await;
        results
    }

    /// Admission on a blocking thread: [`precheck`] (keys and signatures, as one batch, without the mempool
    /// lock), then [`admit`] under the lock. Neither the verification nor a wait for the lock (which the
    /// driver holds while it builds and commits) ties up one of the async runtime's workers, which serve
    /// the API, the network and the driver.
    async fn check_and_admit(
        &self,
        txs: Vec<Result<SignedTransaction, MempoolError>>,
    ) -> (Vec<Result<TxId, MempoolError>>, Vec<SignedTransaction>) {
        let shared = self.shared.clone();
        let n = txs.len();
        let work = move || {
            let checked = precheck(&shared, txs);
            admit(&shared, checked)
        };
        match tokio::task::spawn_blocking(work).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, "admission task failed");
                refuse_all(n, format!("admission task failed: {e}"))
            }
        }
    }

    async fn queue_gossip(&self, admitted: Vec<SignedTransaction>) {
        for tx in admitted {
            if self.gossip.send(tx).await.is_err() {
                // The batcher stopped (shutting down): the transactions stay in the local mempool.
                break;
            }
        }
    }
}

/// The expensive part of admission: keys and signatures, verified as one batch without the mempool lock, so
/// a large batch does not stall the driver, which needs the lock to build blocks. Transactions the mempool
/// already holds are not checked again, neither are those every other admission check refuses (full
/// pool, nonce, funds...), nor more than the pool has room for ([`Mempool::plan_client_checks`]): under
/// overload the excess costs a lookup, not a verification.
///
/// [`Mempool::plan_client_checks`]: crate::mempool::Mempool::plan_client_checks
fn precheck(shared: &Shared, txs: Vec<Result<SignedTransaction, MempoolError>>) -> Vec<Prechecked> {
    let tip = shared.storage.latest_height().ok();
    let plan: Vec<Plan> = shared.mempool().plan_client_checks(&txs, &shared.storage, tip);
    // The transactions to verify, as one batch (same verdicts as one by one, less than half the cost).
    let to_verify: Vec<&SignedTransaction> = txs
        .iter()
        .zip(&plan)
        .filter_map(|(t, plan)| match (t, plan) {
            (Ok(tx), Plan::Verify) => Some(tx),
            _ => None,
        })
        .collect();
    let mut verdicts = SignedTransaction::check_keys_and_signatures(&to_verify, &shared.keys).into_iter();
    txs.into_iter()
        .zip(plan)
        .map(|(t, plan)| {
            t.map(|tx| {
                let check = match plan {
                    Plan::Known => Some(Ok(())),
                    // Admission refuses it again and records why; if the state moved meanwhile and it
                    // now passes, admission checks the signature itself.
                    Plan::Refused => None,
                    Plan::Verify => verdicts.next(),
                };
                (tx, check)
            })
        })
        .collect()
}

/// Admit each prechecked input (a decoded transaction with its keys-and-signature result, or the error
/// that decoding it gave) in order.
fn admit(s: &Shared, txs: Vec<Prechecked>) -> (Vec<Result<TxId, MempoolError>>, Vec<SignedTransaction>) {
    let height = match s.storage.latest_height() {
        Ok(h) => h,
        Err(e) => return refuse_all(txs.len(), e.to_string()),
    };
    let mut admitted = Vec::new();
    let mut mempool = s.mempool();
    let results = txs
        .into_iter()
        .map(|t| {
            let (tx, check) = t?;
            let r = match check {
                Some(check) => mempool.add_prechecked(tx.clone(), check, &s.storage, height),
                None => mempool.add(tx.clone(), &s.storage, height),
            };
            if r.is_ok() {
                admitted.push(tx);
            }
            r
        })
        .collect();
    s.metrics.set_mempool(mempool.len(), mempool.bytes());
    (results, admitted)
}

/// Every one of `n` inputs refused with one storage-side error; nothing admitted.
fn refuse_all(n: usize, message: String) -> (Vec<Result<TxId, MempoolError>>, Vec<SignedTransaction>) {
    ((0..n).map(|_| Err(MempoolError::Storage(message.clone()))).collect(), Vec::new())
}

/// A decoded transaction with the result of its keys-and-signature check (`None`: not checked, because the
/// cheap checks refused it), or why it could not be decoded.
type Prechecked = Result<(SignedTransaction, Option<Result<(), TxError>>), MempoolError>;

fn rejection(e: &MempoolError) -> Rejection {
    Rejection { code: e.code().to_string(), message: e.to_string() }
}

/// Largest encoded approval taken from a client.
pub const APPROVAL_BYTES_MAX: usize = 16 * 1024;

impl NodeHandle for NodeApi {
    fn submit_approval(&self, bytes: Vec<u8>) -> Result<bool, (String, String)> {
        let s = &self.shared;
        let approval: ledger_core::governance::Approval = ledger_core::encoding::decode(&bytes, APPROVAL_BYTES_MAX)
            .map_err(|e| ("malformed".to_string(), e.to_string()))?;
        let unavailable = |e: crate::storage::StorageError| ("unavailable".to_string(), e.to_string());
        let tip = s.storage.latest_height().map_err(unavailable)?;
        let gov = s.storage.gov_state().map_err(unavailable)?;
        s.ops()
            .add_approval(&gov, s.chain_id(), tip.next(), approval)
            .map_err(|e| (e.code().to_string(), e.to_string()))
    }

    fn submit_txs(&self, txs: Vec<Vec<u8>>) -> BoxFuture<'_, Vec<Result<TxId, Rejection>>> {
        async move {
            let max = self.shared.params().tx_bytes_max as usize;
            let decoded =
                txs.iter().map(|bytes| SignedTransaction::decode(bytes, max).map_err(MempoolError::from)).collect();
            let (results, admitted) = self.check_and_admit(decoded).await;
            self.queue_gossip(admitted).await;
            results.into_iter().map(|r| r.map_err(|e| rejection(&e))).collect()
        }
        .boxed()
    }

    fn tx_outcome(&self, id: TxId) -> BoxFuture<'_, Option<TxOutcome>> {
        let outcome = self.shared.mempool().outcome(&id);
        futures::future::ready(outcome).boxed()
    }

    fn next_nonce(&self, address: Address, committed_nonce: u64) -> BoxFuture<'_, u64> {
        let next = self.shared.mempool().next_nonce(&address, committed_nonce);
        futures::future::ready(next).boxed()
    }

    fn mempool_stats(&self) -> BoxFuture<'_, MempoolStats> {
        let stats = {
            let m = self.shared.mempool();
            MempoolStats { count: m.len(), bytes: m.bytes() }
        };
        futures::future::ready(stats).boxed()
    }

    fn status(&self) -> BoxFuture<'_, NodeStatus> {
        let s = self.status.borrow().clone();
        let status = NodeStatus {
            consensus_height: s.consensus_height,
            round: s.round,
            n_peers: s.n_peers,
            catching_up: s.catching_up,
            node_id: self.node_id.clone(),
            // The key in the set now (a rotation or a set change moves it); before the first report, the
            // key found at start.
            validator: s.signer.validator.or(self.validator),
            validator_reason: if s.signer.validator.is_some() { None } else { self.validator_reason.clone() },
            signer: SignerInfo { mode: s.signer.mode, sign_floor: s.signer.sign_floor, detail: s.signer.detail },
            last_commit_local_ms: s.last_commit_local_ms.max(self.started_ms),
            sync: s.sync.map(|p| crate::api::SyncInfo {
                target_height: p.target_height.0,
                blocks_per_sec_x100: p.blocks_per_sec_x100,
                eta_secs: p.eta_secs,
            }),
        };
        futures::future::ready(status).boxed()
    }

    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>> {
        async move {
            match tokio::time::timeout(PEERS_TIMEOUT, self.network.peers()).await {
                Ok(Ok(peers)) => peers
                    .into_iter()
                    .map(|(id, addr)| PeerInfo { peer_id: id.to_string(), address: addr.map(|a| a.to_string()) })
                    .collect(),
                Ok(Err(_)) | Err(_) => Vec::new(),
            }
        }
        .boxed()
    }

    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockEvent> {
        self.shared.blocks.subscribe()
    }

    fn admission_open(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self.shared.try_mempool() {
            Some(m) => {
                let open = m.admission_open();
                self.door_open.store(open, Ordering::Relaxed);
                open
            }
            None => self.door_open.load(Ordering::Relaxed),
        }
    }

    fn disk_refusal(&self) -> Option<(&'static str, String)> {
        self.shared.disk_refusal()
    }
}

/// Publish admitted local transactions on the `txs` topic in batches of at most [`TX_BATCH_MAX`]
/// transactions and `bytes_max` encoded bytes. Ends when every sender is dropped.
pub async fn tx_gossip(mut rx: mpsc::Receiver<SignedTransaction>, network: NetworkHandle, bytes_max: usize) {
    let mut carry: Option<SignedTransaction> = None;
    loop {
        let first = match carry.take() {
            Some(tx) => tx,
            None => match rx.recv().await {
                Some(tx) => tx,
                None => return,
            },
        };
        let mut bytes = first.encoded_len();
        let mut batch = vec![first];
        let mut waited = false;
        loop {
            if batch.len() >= TX_BATCH_MAX {
                break;
            }
            match rx.try_recv() {
                Ok(tx) => {
                    let len = tx.encoded_len();
                    if bytes + len > bytes_max {
                        carry = Some(tx);
                        break;
                    }
                    bytes += len;
                    batch.push(tx);
                }
                Err(mpsc::error::TryRecvError::Empty) if !waited => {
                    waited = true;
                    tokio::time::sleep(TX_BATCH_WAIT).await;
                }
                Err(_) => break,
            }
        }
        tracing::trace!(n = batch.len(), bytes, "gossiping local transactions");
        match network.publish(GossipMessage::TxBatch(batch)).await {
            Ok(()) | Err(NetError::NoPeers | NetError::Duplicate) => {}
            Err(NetError::Stopped) => return,
            Err(e) => tracing::warn!(error = %e, "cannot gossip transactions"),
        }
    }
}
