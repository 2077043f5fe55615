//! What the API needs from the node: [`ApiState`] (shared, cheap to clone) and the [`NodeHandle`] trait the
//! driver loop implements.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use ledger_core::validator::ValidatorSetError;
use ledger_core::{Address, Block, CommitCertificate, Genesis, Hash, Height, Round, TxId, ValidatorSet};
use tokio::sync::{Semaphore, broadcast, watch};

use super::error::ApiError;
use super::guard::Clients;
use super::metrics::Metrics;
use crate::mempool::TxOutcome;
use crate::storage::{Storage, StorageError};

/// Why the node refused a submitted transaction: a stable code (a `TxError::code`, a `MempoolError::code`,
/// or `unavailable` when the node cannot take transactions now) and a human message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub code: String,
    pub message: String,
}

/// Mempool size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MempoolStats {
    pub count: usize,
    pub bytes: usize,
}

/// What only the running node knows (the committed height comes from storage, not from here).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    /// Height consensus is deciding now (committed height + 1 in the steady state).
    pub consensus_height: Height,
    pub round: Round,
    pub n_peers: usize,
    pub catching_up: bool,
    /// The libp2p peer id of this node.
    pub node_id: String,
    /// This node's validator key, if it is a validator.
    pub validator: Option<Address>,
    /// Why `validator` is `None` although a validator key is configured (e.g. the key is not in the set).
    pub validator_reason: Option<String>,
    /// The double-sign guard.
    pub signer: SignerInfo,
    /// Local wall-clock time (ms since the Unix epoch) of the last commit, or of the start if none yet.
    /// `/health` reports `stalled` when it is older than [`ApiConfig::health_stall_after_ms`].
    pub last_commit_local_ms: u64,
    /// While catching up: the peers' committed height, blocks per second (times 100), seconds left.
    pub sync: Option<SyncInfo>,
}

/// A catch-up's progress as the API reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncInfo {
    pub target_height: u64,
    pub blocks_per_sec_x100: u64,
    pub eta_secs: Option<u64>,
}

/// What the double-sign guard is doing (the driver's `SignerStatus`, as the API reports it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SignerInfo {
    /// `full_node`, `watching`, `suspect`, `active` or `halted`. Empty while the driver has not reported
    /// one: read as `full_node`.
    pub mode: &'static str,
    /// The guard signs nothing at or below this height.
    pub sign_floor: u64,
    /// Why the guard is in this mode, for an operator.
    pub detail: Option<String>,
}

impl SignerInfo {
    /// The mode, with the not-yet-reported empty mode read as `full_node`.
    pub fn mode(&self) -> &'static str {
        if self.mode.is_empty() { "full_node" } else { self.mode }
    }
}

/// One connected peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub peer_id: String,
    /// Remote multiaddr, when known.
    pub address: Option<String>,
}

/// Published by the node after a block is durably committed ([`Storage::commit_block`] returned `Ok`).
#[derive(Clone, Debug)]
pub struct BlockEvent {
    pub block: Arc<Block>,
    pub certificate: Arc<CommitCertificate>,
}

/// The API's only way to talk to the running node. Every method must answer promptly (the driver may queue
/// the request on a channel and reply through a oneshot); none may block the driver on the API.
///
/// **Architecture invariant:** handlers never touch consensus state; they read [`Storage`] and call this.
pub trait NodeHandle: Send + Sync + 'static {
    /// Admit raw canonical transaction bytes to the mempool, one result per input, in order.
    fn submit_txs(&self, txs: Vec<Vec<u8>>) -> BoxFuture<'_, Vec<Result<TxId, Rejection>>>;
    /// What the mempool remembers about `id` (pending, rejected, evicted, committed), if anything.
    fn tx_outcome(&self, id: TxId) -> BoxFuture<'_, Option<TxOutcome>>;
    /// The nonce the next transaction of `address` should use: `committed_nonce` plus the number of
    /// consecutive pending transactions from it.
    fn next_nonce(&self, address: Address, committed_nonce: u64) -> BoxFuture<'_, u64>;
    fn mempool_stats(&self) -> BoxFuture<'_, MempoolStats>;
    fn status(&self) -> BoxFuture<'_, NodeStatus>;
    fn peers(&self) -> BoxFuture<'_, Vec<PeerInfo>>;
    /// A receiver of committed-block events. Its channel's capacity is each subscriber's buffer: a
    /// subscriber that falls that many blocks behind is dropped (the sender never waits).
    fn subscribe_blocks(&self) -> broadcast::Receiver<BlockEvent>;
    /// False while the mempool holds all it takes from clients (it holds what the network commits in the
    /// pace window): submissions are then refused whole with 429 `mempool_full` before any decoding.
    fn admission_open(&self) -> bool {
        true
    }
    /// Set while the disk is past its free-space floor or the data directory past its budget: submissions
    /// are refused with 503 and this code (`disk_full`, `disk_budget`) and message.
    fn disk_refusal(&self) -> Option<(&'static str, String)> {
        None
    }
    /// Queue a validator's approval of a validator-set change (canonical bytes) for the next blocks this
    /// node proposes. `Ok(true)`: queued; `Ok(false)`: already queued; `Err((code, message))`: refused.
    fn submit_approval(&self, _bytes: Vec<u8>) -> Result<bool, (String, String)> {
        Err(("not_supported".into(), "this node does not take approvals".into()))
    }
}

/// Limits and knobs of the HTTP server. Every inbound quantity has one.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest request body, in bytes (413 above).
    pub body_bytes_max: usize,
    /// Time to produce a response (headers); SSE bodies are not bounded by it.
    pub request_timeout: Duration,
    /// Requests handled at once; more are answered 503 `overloaded`.
    pub concurrent_requests_max: usize,
    /// Open TCP connections; a connection above it is closed at once.
    pub connections_max: usize,
    /// Open TCP connections from one client (IP address, or IPv6 /64); above it closed at once.
    pub connections_per_client_max: usize,
    /// Time a client has to send complete request headers, from the connection's start or from the end
    /// of its previous response: idle and slowloris connections are closed after it.
    pub header_read_timeout: Duration,
    /// Time a client has to send a complete request body (408 `body_timeout` after it). Bodies are read
    /// before any shared slot is taken.
    pub body_read_timeout: Duration,
    /// A response write that makes no progress for this long closes the connection (event streams that
    /// are not read, clients that stop reading).
    pub write_timeout: Duration,
    /// SO_SNDBUF of each API connection (0: the kernel's autotuning, which grows to 4 MiB): bounds the
    /// kernel memory one connection pins when its client does not read.
    pub send_buffer_bytes: usize,
    /// Sustained requests per second from one client (0: no limit) and the burst above it. A client over
    /// its rate is delayed, up to `request_delay_max`; beyond that answered 429 `rate_limited`.
    pub requests_per_client_per_sec: u32,
    pub request_burst_per_client: u32,
    pub request_delay_max: Duration,
    /// Request-body bytes buffered at once, in total and per client (503 `overloaded` above).
    pub body_buffer_bytes_max: usize,
    pub body_buffer_bytes_per_client_max: usize,
    /// `POST /txs?wait=commit` requests waiting at once, in total and per client; above it the request is
    /// answered `pending` at once (the client polls `GET /txs/{id}`). They never take a general slot.
    pub commit_waits_max: usize,
    pub commit_waits_per_client_max: usize,
    /// Open `/events` streams, in total and per client; more are answered 503 `too_many_subscribers`.
    /// They never take a general slot.
    pub event_streams_max: usize,
    pub event_streams_per_client_max: usize,
    /// Client addresses exempt from the per-client limits (the global ones still apply). Empty by
    /// default: loopback is limited like any other address.
    pub unlimited_clients: Vec<std::net::IpAddr>,
    /// Default and largest wait of `POST /txs?wait=commit`.
    pub commit_wait_default: Duration,
    pub commit_wait_max: Duration,
    /// Transactions in one `POST /txs/batch`.
    pub batch_txs_max: usize,
    /// Default and largest `limit` of paginated lists.
    pub page_limit_default: usize,
    pub page_limit_max: usize,
    /// Certified heights counted by `GET /validators` (the most recent ones whose certificate is on chain).
    pub validator_stats_window: u64,
    /// `GET /health` answers 503 `stalled` when no block was committed for this long. `None`: derived
    /// from the genesis timeouts by [`default_stall_after_ms`].
    pub health_stall_after_ms: Option<u64>,
}

/// Shortest stall window `/health` uses by default, in ms.
pub const HEALTH_STALL_AFTER_MS_MIN: u64 = 30_000;

/// The default stall window of `/health`: ten rounds of round-0 timeouts, and at least
/// [`HEALTH_STALL_AFTER_MS_MIN`], so a few slow rounds do not page anyone but a stuck chain does.
pub fn default_stall_after_ms(params: &ledger_core::ConsensusParams) -> u64 {
    let round_ms =
        params.timeout_propose_ms.saturating_add(params.timeout_prevote_ms).saturating_add(params.timeout_precommit_ms);
    round_ms.saturating_mul(10).max(HEALTH_STALL_AFTER_MS_MIN)
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            body_bytes_max: 10 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            concurrent_requests_max: 512,
            connections_max: 1024,
            connections_per_client_max: 64,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            send_buffer_bytes: 256 * 1024,
            requests_per_client_per_sec: 500,
            request_burst_per_client: 1000,
            request_delay_max: Duration::from_secs(1),
            body_buffer_bytes_max: 64 * 1024 * 1024,
            body_buffer_bytes_per_client_max: 16 * 1024 * 1024,
            commit_waits_max: 256,
            commit_waits_per_client_max: 32,
            event_streams_max: 256,
            event_streams_per_client_max: 8,
            unlimited_clients: Vec::new(),
            commit_wait_default: Duration::from_secs(10),
            commit_wait_max: Duration::from_secs(25),
            batch_txs_max: 1000,
            page_limit_default: 20,
            page_limit_max: 100,
            validator_stats_window: 100,
            health_stall_after_ms: None,
        }
    }
}

/// Local wall-clock time in ms since the Unix epoch (0 if the clock is before it).
pub(crate) fn unix_time_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Everything handlers share. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct ApiState {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub storage: Arc<Storage>,
    pub genesis: Arc<Genesis>,
    pub genesis_hash: Hash,
    pub node: Arc<dyn NodeHandle>,
    pub metrics: Arc<Metrics>,
    pub config: ApiConfig,
    /// The stall window of `/health` in effect (the configured one, or the genesis-derived default).
    pub stall_after_ms: u64,
    pub requests: Arc<Semaphore>,
    pub event_streams: Arc<Semaphore>,
    pub commit_waits: Arc<Semaphore>,
    /// Request-body bytes buffered at once (one permit per byte).
    pub body_budget: Arc<Semaphore>,
    pub clients: Arc<Clients>,
    pub validator_stats: Mutex<ValidatorStats>,
    /// Set to `true` when the server shuts down, so open event streams end.
    pub shutdown: watch::Sender<bool>,
    pub genesis_json: OnceLock<String>,
}

/// What each certified height of the `GET /validators` window contributed, oldest first: the proposer's
/// index and who signed the height's certificate as it is carried on chain (in the next block's
/// `last_commit`). Slid forward as the chain grows, so a request reads only the new blocks.
#[derive(Clone, Debug, Default)]
pub(crate) struct ValidatorStats {
    pub heights: std::collections::VecDeque<(Height, HeightStats)>,
}

/// One height's contribution to the validator counters: by key, since the set may change between heights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct HeightStats {
    pub proposer: ledger_core::PublicKey,
    /// The set of that height, and which of its members signed.
    pub set: Arc<ValidatorSet>,
    pub signed: Vec<bool>,
}

impl Inner {
    /// The validator set of `height` (known up to the tip + 2).
    pub fn validators_at(&self, height: Height) -> Arc<ValidatorSet> {
        self.storage.validator_set_at(height).unwrap_or_else(|| {
            // Only a store without genesis has none; the genesis set was checked at construction.
            Arc::new(self.genesis.validator_set().unwrap_or_else(|_| unreachable!("checked in ApiState::new")))
        })
    }

    /// Who votes at the height after the tip.
    pub fn current_validators(&self) -> Arc<ValidatorSet> {
        let tip = self.storage.latest_height().unwrap_or(Height::GENESIS);
        self.validators_at(tip.next())
    }
}

impl ApiState {
    pub fn new(
        storage: Arc<Storage>,
        genesis: Genesis,
        node: Arc<dyn NodeHandle>,
        metrics: Arc<Metrics>,
        config: ApiConfig,
    ) -> Result<ApiState, ValidatorSetError> {
        genesis.validator_set()?;
        let (shutdown, _) = watch::channel(false);
        let stall_after_ms = config.health_stall_after_ms.unwrap_or_else(|| default_stall_after_ms(&genesis.params));
        let clients = Arc::new(Clients::new(config.clone(), metrics.clone()));
        Ok(ApiState {
            inner: Arc::new(Inner {
                storage,
                genesis_hash: genesis.hash(),
                genesis: Arc::new(genesis),
                node,
                metrics,
                requests: Arc::new(Semaphore::new(config.concurrent_requests_max)),
                event_streams: Arc::new(Semaphore::new(config.event_streams_max)),
                commit_waits: Arc::new(Semaphore::new(config.commit_waits_max)),
                body_budget: Arc::new(Semaphore::new(config.body_buffer_bytes_max.min(Semaphore::MAX_PERMITS))),
                clients,
                config,
                stall_after_ms,
                validator_stats: Mutex::new(ValidatorStats::default()),
                shutdown,
                genesis_json: OnceLock::new(),
            }),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub fn storage(&self) -> &Arc<Storage> {
        &self.inner.storage
    }

    /// End every open event stream (also done by [`super::serve`] when its shutdown future fires).
    pub fn close_event_streams(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// A general request slot, or 503 `overloaded` (counted and logged).
    pub(crate) fn general_slot(
        &self,
        ip: Option<std::net::IpAddr>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.inner.requests.clone().try_acquire_owned().map_err(|_| {
            self.inner.clients.refused(super::guard::Refusal::Overloaded, ip);
            ApiError::unavailable("overloaded", "too many concurrent requests")
        })
    }

    /// Run a storage read on the blocking pool (block decoding can take milliseconds).
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Storage) -> Result<T, StorageError> + Send + 'static,
    {
        let storage = self.inner.storage.clone();
        match tokio::task::spawn_blocking(move || f(&storage)).await {
            Ok(r) => r.map_err(ApiError::from),
            Err(e) => Err(ApiError::internal(format!("storage task failed: {e}"))),
        }
    }
}
