//! Peer-to-peer networking on libp2p 0.57: TCP + noise + yamux, identify, Kademlia, gossipsub and a
//! request-response block-sync protocol.
//!
//! The swarm runs in its own tokio task ([`spawn`]). The rest of the node talks to it through bounded
//! channels: [`NetworkHandle`] sends commands in, a `Receiver<NetworkEvent>` carries events out. When the
//! event channel is full the swarm task waits, so a slow consumer slows the network instead of growing a
//! queue without bound.
//!
//! Gossip: topics `ledger/<chain_id>/txs` (batches of signed transactions) and `ledger/<chain_id>/consensus`
//! (proposals with their blocks, votes). Message ids are a blake3 content hash, authenticity is anonymous
//! (every payload carries its own signatures, so a libp2p signature per message would only cost time), and
//! `validate_messages` is on: every received message is decoded (bounded) and passed to the application's
//! [`GossipValidator`], and the result is reported to gossipsub as Accept, Reject or Ignore. Only accepted
//! messages are forwarded to peers and delivered to the application; rejected ones cost their sender score.
//!
//! Sync: `/ledger/<chain_id>/sync/1`, a request (from height, max count) answered from a [`BlockProvider`]
//! with blocks and their certificates, bounded in count and bytes. Responses are data to verify, not truth.
//!
//! Peers pay for what they make this node do ([`guard`]): each gossip message and sync request, each
//! signature check and each byte of sync response comes out of the sending peer's budget, and what a peer
//! sends beyond it is dropped unread and costs it score, like invalid messages do. A peer whose score falls
//! low enough is ignored, then banned: disconnected, and its reconnections closed until the ban ends.

mod guard;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::gossipsub::{self, IdentTopic, MessageAcceptance, MessageAuthenticity, MessageId, ValidationMode};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, identify, identity, kad, noise, tcp, yamux};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::storage::snapshot::CHUNK_ACCOUNTS_MAX;
use crate::wire::{
    self, GossipMessage, SNAPSHOT_REQUEST_BYTES_MAX, SNAPSHOT_RESPONSE_BYTES_MAX, SYNC_BLOCKS_MAX,
    SYNC_REQUEST_BYTES_MAX, SnapshotRequest, SnapshotResponse, SyncRequest, SyncResponse, TopicKind, WireMessage,
};
use guard::Guard;
pub use guard::PeerStats;
use ledger_core::gossip::{DropReason, Offence, PeerLimits, Resource, Standing};
use ledger_core::{Block, CommitCertificate, Height, SignedTransaction, TxError};

/// Inbound sync streams at once per connection (libp2p's default is 100): an honest node asks one
/// request at a time. Streams beyond it are dropped by libp2p unseen, so this is kept above the request
/// burst of a peer's budget: a flooder's excess reaches the budget check, costs it score and gets it banned.
pub const SYNC_STREAMS_PER_CONNECTION: usize = 32;

/// Sync responses being written to one peer at once. An honest node has one request in flight (a few
/// when it retries after a timeout); a request beyond this is refused and costs the peer score, so a
/// peer that keeps many requests open at once is banned within seconds.
pub const SYNC_IN_FLIGHT_PER_PEER: usize = 8;

/// Network settings.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub chain_id: String,
    pub keypair: identity::Keypair,
    pub listen_addr: Multiaddr,
    /// Peers to dial at start and redial when they drop; each must end in `/p2p/<peer id>`.
    pub bootstrap_peers: Vec<Multiaddr>,
    pub max_peers: usize,
    /// The chain's `block_bytes_max`; sets gossip and sync size limits (equal on every node).
    pub block_bytes_max: usize,
    pub idle_connection_timeout: Duration,
    /// Capacity of the command and event channels.
    pub channel_capacity: usize,
    pub sync_request_timeout: Duration,
    /// What each peer may spend here, and how faults are scored.
    pub peer_limits: PeerLimits,
    /// Counters of the peer guard (shared with `/metrics`).
    pub peer_stats: Arc<PeerStats>,
}

impl NetworkConfig {
    pub fn new(chain_id: &str, keypair: identity::Keypair, listen_addr: Multiaddr, block_bytes_max: usize) -> Self {
        NetworkConfig {
            chain_id: chain_id.to_string(),
            keypair,
            listen_addr,
            bootstrap_peers: Vec::new(),
            max_peers: 50,
            block_bytes_max,
            idle_connection_timeout: Duration::from_secs(3600),
            channel_capacity: 1024,
            sync_request_timeout: Duration::from_secs(10),
            peer_limits: PeerLimits::default(),
            peer_stats: Arc::new(PeerStats::default()),
        }
    }
}

/// The application's verdict on a gossip message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Validation {
    /// Valid: deliver and forward.
    Accept,
    /// Invalid: drop and penalise the peer that sent it.
    Reject(String),
    /// Not useful (stale, duplicate) but not malicious: drop without penalty.
    Ignore(String),
    /// Dropped for a counted reason; [`DropReason::OverBudget`] costs the sender score.
    Drop(DropReason),
}

/// The expensive rest of a gossip message's validation, split from it ([`Judged::Later`]) and run on the
/// network's verification thread.
pub struct DeferredCheck {
    /// Transactions of the message's batch (indices) whose keys and signatures the rest needs checked. The
    /// thread checks them together with those of the other checks waiting for it ([`verify_waiting`]): one
    /// batch of 1,024 costs about two thirds of what sixteen batches of 64 cost.
    pub signatures: Vec<u32>,
    /// The rest, given the message and the verdicts for `signatures`, one each, in the same order.
    pub finish: FinishCheck,
}

/// See [`DeferredCheck::finish`].
pub type FinishCheck = Box<dyn FnOnce(&GossipMessage, &[Result<(), TxError>]) -> Validation + Send>;

impl DeferredCheck {
    /// A check that needs no signature checked first.
    pub fn plain(finish: impl FnOnce(&GossipMessage) -> Validation + Send + 'static) -> Self {
        DeferredCheck { signatures: Vec::new(), finish: Box::new(move |message, _| finish(message)) }
    }
}

/// A validation done now, or split: the cheap part (budget included) done, the rest to run elsewhere.
pub enum Judged {
    Now(Validation),
    Later(DeferredCheck),
}

/// Deferred checks waiting for the verification thread; beyond this a message is dropped (not the
/// sender's fault: its budget was already paid) and gossipsub's resend brings it again if still useful.
pub const DEFERRED_CHECKS_MAX: usize = 64;

/// Deferred checks of one peer at once: a peer sending faster than this node verifies has its excess
/// dropped unjudged (no penalty, nothing spent), so one peer cannot fill the queue that honest peers'
/// batches need.
pub const DEFERRED_CHECKS_PER_PEER: usize = 16;

/// Checks gossip messages before they are forwarded. Runs on the swarm task: keep it quick.
pub trait GossipValidator: Send + Sync + 'static {
    fn validate(&self, source: &PeerId, message: &GossipMessage) -> Validation;

    /// [`GossipValidator::validate`] with the sender's budget: `spend(resource, amount)` must grant each
    /// signature check before it is made (false: the sender spent its budget; drop the message with
    /// [`DropReason::OverBudget`]). The default spends nothing.
    fn validate_metered(
        &self,
        source: &PeerId,
        message: &GossipMessage,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Validation {
        let _ = spend;
        self.validate(source, message)
    }

    /// [`GossipValidator::validate_metered`], possibly split: the part that spends the sender's budget
    /// must run here (on the swarm task, where the budget lives); a [`Judged::Later`] check runs on the
    /// network's verification thread, finished in arrival order (signatures checked with those of the
    /// other checks waiting there), and its verdict is reported to gossipsub when it ends. The default does
    /// everything now.
    fn validate_split(
        &self,
        source: &PeerId,
        message: &GossipMessage,
        spend: &mut dyn FnMut(Resource, u64) -> bool,
    ) -> Judged {
        Judged::Now(self.validate_metered(source, message, spend))
    }

    /// Keys and signatures of transactions, one verdict each, in order: the same verdicts as checking them
    /// one by one (ZIP 215 batches). The verification thread checks [`DeferredCheck::signatures`] with it.
    fn check_signatures(&self, txs: &[&SignedTransaction]) -> Vec<Result<(), TxError>> {
        SignedTransaction::check_keys_and_signatures(txs, &ledger_core::crypto::NoKeyCache)
    }

    /// Whether [`GossipValidator::check_signatures`] would pass every one of `txs`, in one batch and nothing
    /// more (the verification thread then checks smaller groups to find the bad one).
    fn signatures_all_valid(&self, txs: &[&SignedTransaction]) -> bool {
        SignedTransaction::keys_and_signatures_all_valid(txs, &ledger_core::crypto::NoKeyCache)
    }
}

/// What the swarm task does with a gossip message after [`SwarmTask::judge`].
enum Judgement {
    Done(MessageAcceptance, Option<GossipMessage>),
    Deferred(GossipMessage, DeferredCheck),
}

/// A deferred check for the verification thread.
struct DeferredJob {
    message_id: MessageId,
    source: PeerId,
    message: GossipMessage,
    check: DeferredCheck,
}

/// A deferred check's verdict, back on the swarm task.
struct DeferredDone {
    message_id: MessageId,
    source: PeerId,
    message: GossipMessage,
    validation: Validation,
}

/// Signatures the verification thread checks as one batch at most: the waiting checks are taken until
/// their signatures reach this (a batch of 1,024 costs ~12 us a signature here, against ~18 us in batches
/// of 64; beyond it the gain is small and the checks taken wait longer).
pub const VERIFY_TOGETHER_MAX: usize = 1024;

/// Peers remembered by the verification thread as proven (a batch of theirs accepted) or as forgers (one
/// refused).
const VERIFY_PEERS_REMEMBERED: usize = 1024;

/// The verification thread: takes the deferred checks waiting (in arrival order), checks their
/// signatures together ([`verify_waiting`]), finishes each in order and sends its verdict back, until the
/// swarm task drops its sender.
fn spawn_verifier(
    validator: Arc<dyn GossipValidator>,
    done: mpsc::Sender<DeferredDone>,
) -> Result<std::sync::mpsc::SyncSender<DeferredJob>, NetError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<DeferredJob>(DEFERRED_CHECKS_MAX);
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("gossip-verify".into())
        .spawn(move || {
            let _entered = span.enter();
            let mut peers = VerifyPeers::default();
            while let Ok(first) = rx.recv() {
                let mut jobs = vec![first];
                let mut signatures = jobs[0].check.signatures.len();
                while signatures < VERIFY_TOGETHER_MAX {
                    match rx.try_recv() {
                        Ok(job) => {
                            signatures += job.check.signatures.len();
                            jobs.push(job);
                        }
                        Err(_) => break,
                    }
                }
                let verdicts = verify_waiting(&*validator, &jobs, &peers);
                for (job, verdicts) in jobs.into_iter().zip(verdicts) {
                    let DeferredJob { message_id, source, message, check } = job;
                    let validation = (check.finish)(&message, &verdicts);
                    peers.learn(source, &validation);
                    if done.blocking_send(DeferredDone { message_id, source, message, validation }).is_err() {
                        return;
                    }
                }
            }
        })
        .map_err(|e| NetError::Setup(format!("cannot start the gossip verification thread: {e}")))?;
    Ok(tx)
}

/// What the verification thread knows of the peers whose checks it ran.
struct VerifyPeers {
    /// A batch of theirs was accepted and none refused since: their checks may share a batch.
    proven: ledger_core::gossip::RecentSet<PeerId>,
    /// A batch of theirs was refused: their checks run alone from then on.
    forgers: ledger_core::gossip::RecentSet<PeerId>,
}

impl Default for VerifyPeers {
    fn default() -> Self {
        VerifyPeers {
            proven: ledger_core::gossip::RecentSet::new(VERIFY_PEERS_REMEMBERED),
            forgers: ledger_core::gossip::RecentSet::new(VERIFY_PEERS_REMEMBERED),
        }
    }
}

impl VerifyPeers {
    fn may_share(&self, peer: &PeerId) -> bool {
        self.proven.contains(peer) && !self.forgers.contains(peer)
    }

    fn learn(&mut self, peer: PeerId, validation: &Validation) {
        match validation {
            Validation::Accept => self.proven.insert(peer),
            Validation::Reject(_) => self.forgers.insert(peer),
            Validation::Ignore(_) | Validation::Drop(_) => {}
        }
    }
}

/// The verdicts for each job's [`DeferredCheck::signatures`], in order.
///
/// The checks of proven peers ([`VerifyPeers::may_share`]) share one batch; the others are checked alone.
/// Sharing is what makes batches big under load. One forged signature fails the shared batch; then each of
/// its checks is verified alone, as its own batch, and one by one only inside the batch that fails again:
/// an honest check next to a forgery pays its own batch on top of its share of the failed one (~12 + ~18
/// µs a signature, against ~18 alone), never the one-by-one cost (~32). A peer shares only after a batch
/// of its own was accepted, and after one refusal it is checked alone (its score pays for the forgery).
fn verify_waiting(
    validator: &dyn GossipValidator,
    jobs: &[DeferredJob],
    peers: &VerifyPeers,
) -> Vec<Vec<Result<(), TxError>>> {
    let wanted: Vec<Vec<&SignedTransaction>> = jobs
        .iter()
        .map(|job| match &job.message {
            GossipMessage::TxBatch(txs) => job.check.signatures.iter().filter_map(|&i| txs.get(i as usize)).collect(),
            _ => Vec::new(),
        })
        .collect();
    let shared: Vec<usize> =
        (0..jobs.len()).filter(|&i| !wanted[i].is_empty() && peers.may_share(&jobs[i].source)).collect();
    let mut out: Vec<Option<Vec<Result<(), TxError>>>> = vec![None; jobs.len()];
    if shared.len() > 1 {
        let together: Vec<&SignedTransaction> = shared.iter().flat_map(|&i| wanted[i].iter().copied()).collect();
        if validator.signatures_all_valid(&together) {
            for &i in &shared {
                out[i] = Some(vec![Ok(()); wanted[i].len()]);
            }
        }
    }
    out.into_iter()
        .zip(&wanted)
        .map(|(done, txs)| match done {
            Some(verdicts) => verdicts,
            None if txs.is_empty() => Vec::new(),
            None => validator.check_signatures(txs),
        })
        .collect()
}

/// Serves block-sync requests from committed storage.
pub trait BlockProvider: Send + Sync + 'static {
    /// Blocks from `from`, at most `max_count` and about `max_bytes` (always at least one if any exists).
    fn blocks_from(&self, from: Height, max_count: usize, max_bytes: usize) -> Vec<(Block, CommitCertificate)>;

    /// Answer a state-sync request (default: no snapshots).
    fn snapshot(&self, _request: &SnapshotRequest) -> SnapshotResponse {
        SnapshotResponse::Unavailable
    }
}

impl BlockProvider for crate::storage::Storage {
    fn blocks_from(&self, from: Height, max_count: usize, max_bytes: usize) -> Vec<(Block, CommitCertificate)> {
        match crate::storage::Storage::blocks_from(self, from, max_count, max_bytes) {
            Ok(blocks) => blocks,
            Err(e) => {
                tracing::error!(error = %e, "cannot serve sync request");
                Vec::new()
            }
        }
    }

    fn snapshot(&self, request: &SnapshotRequest) -> SnapshotResponse {
        match *request {
            SnapshotRequest::Offers => {
                let mut heights = self.snapshot_heights();
                heights.truncate(wire::SNAPSHOT_OFFERS_MAX);
                SnapshotResponse::Offers(heights)
            }
            SnapshotRequest::Meta { height } => match self.snapshot_meta(height) {
                Ok(Some(meta)) => SnapshotResponse::Meta(Box::new(meta)),
                Ok(None) => SnapshotResponse::Unavailable,
                Err(e) => {
                    tracing::error!(error = %e, "cannot serve a snapshot's metadata");
                    SnapshotResponse::Unavailable
                }
            },
            SnapshotRequest::Chunk { height, depth, position } => {
                match self.snapshot(height).and_then(|s| s.tree.chunk_at(depth, &position, CHUNK_ACCOUNTS_MAX)) {
                    Some(accounts) => SnapshotResponse::Chunk(accounts),
                    None => SnapshotResponse::Unavailable,
                }
            }
        }
    }
}

/// What the network tells the application.
#[derive(Clone, Debug)]
pub enum NetworkEvent {
    Listening(Multiaddr),
    PeerConnected(PeerId),
    PeerDisconnected(PeerId),
    /// A peer subscribed to one of our topics (publishing to it can now succeed).
    PeerSubscribed {
        peer: PeerId,
        topic: TopicKind,
    },
    /// A gossip message that decoded and that the validator accepted.
    Gossip {
        source: PeerId,
        message: GossipMessage,
    },
}

/// Network failures reported to callers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("network setup failed: {0}")]
    Setup(String),
    #[error("network task has stopped")]
    Stopped,
    #[error("no peer is subscribed to the topic")]
    NoPeers,
    #[error("the same message was published recently")]
    Duplicate,
    #[error("publish failed: {0}")]
    Publish(String),
    #[error("sync request failed: {0}")]
    Sync(String),
    #[error("dial failed: {0}")]
    Dial(String),
}

enum Command {
    Publish(GossipMessage, oneshot::Sender<Result<(), NetError>>),
    RequestBlocks(PeerId, SyncRequest, oneshot::Sender<Result<SyncResponse, NetError>>),
    RequestSnapshot(PeerId, SnapshotRequest, oneshot::Sender<Result<SnapshotResponse, NetError>>),
    Dial(Multiaddr, oneshot::Sender<Result<(), NetError>>),
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    ListenAddrs(oneshot::Sender<Vec<Multiaddr>>),
    PublishRaw(TopicKind, Vec<u8>, oneshot::Sender<Result<(), NetError>>),
    PeerScore(PeerId, oneshot::Sender<Option<f64>>),
    Peers(oneshot::Sender<Vec<(PeerId, Option<Multiaddr>)>>),
    BlockGossipFrom(Vec<PeerId>, oneshot::Sender<()>),
    SetIsolated(bool, oneshot::Sender<()>),
    Shutdown,
}

/// Talks to the swarm task. Cheap to clone.
#[derive(Clone)]
pub struct NetworkHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
}

impl NetworkHandle {
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, NetError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)
    }

    /// Publish to the message's topic. [`NetError::NoPeers`] is normal on a single node.
    pub async fn publish(&self, message: GossipMessage) -> Result<(), NetError> {
        self.ask(|tx| Command::Publish(message, tx)).await?
    }

    /// Ask `peer` for blocks. The response is unverified.
    pub async fn request_blocks(&self, peer: PeerId, request: SyncRequest) -> Result<SyncResponse, NetError> {
        self.ask(|tx| Command::RequestBlocks(peer, request, tx)).await?
    }

    /// Ask `peer` about its state snapshots. The response is unverified.
    pub async fn request_snapshot(&self, peer: PeerId, request: SnapshotRequest) -> Result<SnapshotResponse, NetError> {
        self.ask(|tx| Command::RequestSnapshot(peer, request, tx)).await?
    }

    /// Publish arbitrary bytes on a topic, bypassing encoding: for tests of hostile input only.
    #[doc(hidden)]
    pub async fn publish_raw(&self, topic: TopicKind, bytes: Vec<u8>) -> Result<(), NetError> {
        self.ask(|tx| Command::PublishRaw(topic, bytes, tx)).await?
    }

    /// Stop the swarm task (it closes every connection and drops its listeners).
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
    }

    /// Our gossip score of `peer` (negative after it sent invalid messages).
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>, NetError> {
        self.ask(|tx| Command::PeerScore(peer, tx)).await
    }

    pub async fn dial(&self, addr: Multiaddr) -> Result<(), NetError> {
        self.ask(|tx| Command::Dial(addr, tx)).await?
    }

    pub async fn connected_peers(&self) -> Result<Vec<PeerId>, NetError> {
        self.ask(Command::ConnectedPeers).await
    }

    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.ask(Command::ListenAddrs).await
    }

    /// Connected peers with the remote address of one connection each.
    pub async fn peers(&self) -> Result<Vec<(PeerId, Option<Multiaddr>)>, NetError> {
        self.ask(Command::Peers).await
    }

    /// Drop every gossip message these peers send us (replacing the previous set; empty heals): the
    /// messages arrive, are reported Ignore and are not delivered or forwarded, so gossipsub remembers them
    /// as seen. A lossy partition with the connections up, for fault tests.
    #[doc(hidden)]
    pub async fn block_gossip_from(&self, peers: Vec<PeerId>) -> Result<(), NetError> {
        self.ask(|tx| Command::BlockGossipFrom(peers, tx)).await
    }

    /// Cut this node off (close every connection, refuse new ones, stop redialing) or reconnect it
    /// (redial the bootstrap peers now): a partition at the libp2p layer, for fault tests.
    #[doc(hidden)]
    pub async fn set_isolated(&self, isolated: bool) -> Result<(), NetError> {
        self.ask(|tx| Command::SetIsolated(isolated, tx)).await
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    /// First, so a banned peer's connection is denied as soon as its identity is known, before any other
    /// behaviour sets up for it (no identify, no gossip subscriptions, no sync streams).
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    gossipsub: gossipsub::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    sync: request_response::Behaviour<FramedCodec<SyncRequest, SyncResponse>>,
    snapshot: request_response::Behaviour<FramedCodec<SnapshotRequest, SnapshotResponse>>,
}

/// Length-prefixed (u32 big-endian) frames of one request-response protocol, with the length checked
/// against a limit before reading.
pub struct FramedCodec<Req, Resp> {
    request_bytes_max: usize,
    response_bytes_max: usize,
    _messages: std::marker::PhantomData<fn() -> (Req, Resp)>,
}

impl<Req, Resp> FramedCodec<Req, Resp> {
    pub fn new(request_bytes_max: usize, response_bytes_max: usize) -> Self {
        FramedCodec { request_bytes_max, response_bytes_max, _messages: std::marker::PhantomData }
    }
}

impl<Req, Resp> Clone for FramedCodec<Req, Resp> {
    fn clone(&self) -> Self {
        FramedCodec::new(self.request_bytes_max, self.response_bytes_max)
    }
}

async fn read_frame<T: AsyncRead + Unpin + Send>(io: &mut T, max: usize) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes, limit {max}")));
    }
    let mut buf = vec![0u8; len];
    io.read_exact(&mut buf).await?;
    Ok(buf)
}

async fn write_frame<T: AsyncWrite + Unpin + Send>(io: &mut T, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    io.write_all(&len.to_be_bytes()).await?;
    io.write_all(bytes).await?;
    io.flush().await
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

impl<Req: WireMessage, Resp: WireMessage> request_response::Codec for FramedCodec<Req, Resp> {
    type Protocol = StreamProtocol;
    type Request = Req;
    type Response = Resp;

    async fn read_request<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Req> {
        let bytes = read_frame(io, self.request_bytes_max).await?;
        Req::from_frame(&bytes, self.request_bytes_max).map_err(invalid)
    }

    async fn read_response<T: AsyncRead + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> std::io::Result<Resp> {
        let bytes = read_frame(io, self.response_bytes_max).await?;
        Resp::from_frame(&bytes, self.response_bytes_max).map_err(invalid)
    }

    async fn write_request<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Req,
    ) -> std::io::Result<()> {
        write_frame(io, &req.to_frame()).await
    }

    async fn write_response<T: AsyncWrite + Unpin + Send>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        res: Resp,
    ) -> std::io::Result<()> {
        write_frame(io, &res.to_frame()).await
    }
}

/// Protocol and topic names, all scoped to the chain so two chains never mix.
struct Names {
    txs: IdentTopic,
    consensus: IdentTopic,
    kad: StreamProtocol,
    sync: StreamProtocol,
    snapshot: StreamProtocol,
    identify: String,
}

impl Names {
    fn new(chain_id: &str) -> Result<Names, NetError> {
        let proto = |s: String| StreamProtocol::try_from_owned(s).map_err(|e| NetError::Setup(e.to_string()));
        Ok(Names {
            txs: IdentTopic::new(format!("ledger/{chain_id}/txs")),
            consensus: IdentTopic::new(format!("ledger/{chain_id}/consensus")),
            kad: proto(format!("/ledger/{chain_id}/kad/1.0.0"))?,
            sync: proto(format!("/ledger/{chain_id}/sync/1"))?,
            snapshot: proto(format!("/ledger/{chain_id}/snapshot/1"))?,
            identify: format!("/ledger/{chain_id}/1.0.0"),
        })
    }
}

/// Gossip peer scoring: the point is P4, the penalty for invalid messages (squared, so a few get a peer
/// graylisted). Mesh-delivery penalties (P3) are off because a quiet chain delivers nothing for long
/// stretches, and IP colocation is off because localnets share 127.0.0.1.
fn score_params(names: &Names) -> gossipsub::PeerScoreParams {
    let mut params = gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() };
    for topic in [&names.txs, &names.consensus] {
        let t = gossipsub::TopicScoreParams {
            topic_weight: 1.0,
            time_in_mesh_weight: 0.01,
            time_in_mesh_quantum: Duration::from_secs(1),
            time_in_mesh_cap: 3600.0,
            first_message_deliveries_weight: 1.0,
            first_message_deliveries_decay: 0.5,
            first_message_deliveries_cap: 20.0,
            mesh_message_deliveries_weight: 0.0,
            mesh_failure_penalty_weight: 0.0,
            invalid_message_deliveries_weight: -10.0,
            invalid_message_deliveries_decay: 0.3,
            ..Default::default()
        };
        params.topics.insert(topic.hash(), t);
    }
    params
}

/// How long gossipsub remembers a message id (and drops copies of it, also copies that were received but
/// lost or ignored). Re-sent consensus messages carry a fresh `resend` number, so they never wait for it.
pub const GOSSIP_DUPLICATE_CACHE: Duration = Duration::from_secs(30);

const REDIAL_BACKOFF_MIN: Duration = Duration::from_millis(500);
const REDIAL_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A failed dial to a bootstrap peer is a WARN at most this often per peer (every failure is a DEBUG): an
/// operator must see a wrong address or peer id, but a peer that is down for an hour must not flood the log.
const BOOTSTRAP_WARN_INTERVAL: Duration = Duration::from_secs(60);

/// Banned peers denied at connection time at once (more are still closed when they connect).
const BLOCKED_PEERS_MAX: usize = 4096;

/// Sync requests refused for a peer's budget are a WARN at most this often (all peers together).
const SYNC_ABUSE_WARN_INTERVAL: Duration = Duration::from_secs(10);

struct Redial {
    addr: Multiaddr,
    backoff: Duration,
    /// `None` while connected or a dial is in flight.
    next_attempt: Option<Instant>,
    warn: WarnLimiter,
}

/// Rate limit of one repeated warning: the first occurrence warns, then at most one per `interval`; the
/// occurrences in between are counted and reported with the next warning.
#[derive(Debug)]
struct WarnLimiter {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl WarnLimiter {
    fn new(interval: Duration) -> WarnLimiter {
        WarnLimiter { interval, last: None, suppressed: 0 }
    }

    /// Whether an occurrence at `now` should warn: `Some(n)` with the `n` occurrences suppressed since the
    /// last warning, or `None` (counted as suppressed).
    fn check(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// About what `block` and `cert` take on the wire (header, transactions, signatures), without encoding.
fn approx_bytes(block: &Block, cert: &CommitCertificate) -> u64 {
    let txs: usize = block.txs.iter().map(|t| t.encoded_len()).sum();
    (512 + txs + 80 * cert.signatures.len()) as u64
}

fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None })
}

/// Start the swarm task. Returns a handle for commands, the event receiver and the task.
pub fn spawn(
    cfg: NetworkConfig,
    validator: Arc<dyn GossipValidator>,
    provider: Arc<dyn BlockProvider>,
) -> Result<(NetworkHandle, mpsc::Receiver<NetworkEvent>, tokio::task::JoinHandle<()>), NetError> {
    let names = Names::new(&cfg.chain_id)?;
    let setup = |e: &dyn std::fmt::Display| NetError::Setup(e.to_string());
    let max_transmit = wire::max_transmit_size(cfg.block_bytes_max);
    let response_bytes_max = wire::sync_response_bytes_max(cfg.block_bytes_max);
    let local_peer_id = cfg.keypair.public().to_peer_id();

    let gossip_config = gossipsub::ConfigBuilder::default()
        .max_transmit_size(max_transmit)
        .validate_messages()
        .validation_mode(ValidationMode::Anonymous)
        .heartbeat_interval(Duration::from_millis(500))
        // Content-addressed ids make a re-sent identical message a duplicate until this expires; the driver's
        // re-gossip changes the message's `resend` number instead.
        .duplicate_cache_time(GOSSIP_DUPLICATE_CACHE)
        .message_id_fn(|m: &gossipsub::Message| {
            let mut h = blake3::Hasher::new_derive_key("ledger v1 gossip message id");
            h.update(m.topic.as_str().as_bytes());
            h.update(&[0]);
            h.update(&m.data);
            MessageId::from(h.finalize().as_bytes().to_vec())
        })
        .build()
        .map_err(|e| setup(&e))?;
    let mut gossip = gossipsub::Behaviour::new(MessageAuthenticity::Anonymous, gossip_config).map_err(|e| setup(&e))?;
    gossip.with_peer_score(score_params(&names), gossipsub::PeerScoreThresholds::default()).map_err(|e| setup(&e))?;
    gossip.subscribe(&names.txs).map_err(|e| setup(&e))?;
    gossip.subscribe(&names.consensus).map_err(|e| setup(&e))?;

    let mut kad_config = kad::Config::new(names.kad.clone());
    kad_config.set_query_timeout(Duration::from_secs(30));
    let mut kad = kad::Behaviour::with_config(local_peer_id, kad::store::MemoryStore::new(local_peer_id), kad_config);
    kad.set_mode(Some(kad::Mode::Server));

    let identify = identify::Behaviour::new(identify::Config::new(names.identify.clone(), cfg.keypair.public()));
    let sync = request_response::Behaviour::with_codec(
        FramedCodec::new(SYNC_REQUEST_BYTES_MAX, response_bytes_max),
        [(names.sync.clone(), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.sync_request_timeout)
            .with_max_concurrent_streams(SYNC_STREAMS_PER_CONNECTION),
    );
    let snapshot = request_response::Behaviour::with_codec(
        FramedCodec::new(SNAPSHOT_REQUEST_BYTES_MAX, SNAPSHOT_RESPONSE_BYTES_MAX),
        [(names.snapshot.clone(), ProtocolSupport::Full)],
        request_response::Config::default()
            .with_request_timeout(cfg.sync_request_timeout)
            .with_max_concurrent_streams(SYNC_STREAMS_PER_CONNECTION),
    );
    let behaviour =
        Behaviour { blocked: allow_block_list::Behaviour::default(), gossipsub: gossip, identify, kad, sync, snapshot };

    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(cfg.keypair.clone())
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| setup(&e))?
        .with_behaviour(|_| behaviour)
        .map_err(|e| setup(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(cfg.idle_connection_timeout))
        .build();
    swarm.listen_on(cfg.listen_addr.clone()).map_err(|e| setup(&e))?;

    let mut redials = HashMap::new();
    for addr in &cfg.bootstrap_peers {
        let peer =
            peer_id_of(addr).ok_or_else(|| NetError::Setup(format!("bootstrap peer {addr} has no /p2p/<peer id>")))?;
        if peer == local_peer_id {
            continue;
        }
        swarm.behaviour_mut().kad.add_address(&peer, addr.clone());
        redials.insert(
            peer,
            Redial {
                addr: addr.clone(),
                backoff: REDIAL_BACKOFF_MIN,
                next_attempt: Some(Instant::now()),
                warn: WarnLimiter::new(BOOTSTRAP_WARN_INTERVAL),
            },
        );
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(cfg.channel_capacity);
    let (ev_tx, ev_rx) = mpsc::channel(cfg.channel_capacity);
    let (done_tx, done_rx) = mpsc::channel(DEFERRED_CHECKS_MAX);
    let verifier = spawn_verifier(Arc::clone(&validator), done_tx)?;
    let task = SwarmTask {
        swarm,
        names,
        validator,
        provider,
        events: ev_tx,
        commands: cmd_rx,
        shutdown: false,
        pending_sync: HashMap::new(),
        pending_snapshot: HashMap::new(),
        redials,
        max_peers: cfg.max_peers,
        max_transmit,
        remote_addrs: HashMap::new(),
        isolated: false,
        gossip_blocked: Vec::new(),
        guard: Guard::new(cfg.peer_limits.clone(), cfg.peer_stats.clone()),
        sync_abuse_warn: WarnLimiter::new(SYNC_ABUSE_WARN_INTERVAL),
        sync_serving: HashMap::new(),
        sync_serving_per_peer: HashMap::new(),
        blocked_until: BTreeMap::new(),
        verifier,
        verified: done_rx,
        deferred_per_peer: HashMap::new(),
    };
    // The task logs inside the caller's span (a localnet names each node's).
    let join = tokio::spawn(tracing::Instrument::in_current_span(task.run()));
    Ok((NetworkHandle { commands: cmd_tx, local_peer_id }, ev_rx, join))
}

struct SwarmTask {
    swarm: Swarm<Behaviour>,
    names: Names,
    validator: Arc<dyn GossipValidator>,
    provider: Arc<dyn BlockProvider>,
    events: mpsc::Sender<NetworkEvent>,
    /// Commands from [`NetworkHandle`]s; also served while an event waits for room in `events`, so a caller
    /// that awaits a reply while not reading events (the driver publishing) cannot deadlock with this task.
    commands: mpsc::Receiver<Command>,
    /// A shutdown command (or every handle dropped) arrived while an event was waiting.
    shutdown: bool,
    pending_sync: HashMap<OutboundRequestId, oneshot::Sender<Result<SyncResponse, NetError>>>,
    pending_snapshot: HashMap<OutboundRequestId, oneshot::Sender<Result<SnapshotResponse, NetError>>>,
    redials: HashMap<PeerId, Redial>,
    max_peers: usize,
    max_transmit: usize,
    /// Remote address of one connection per connected peer.
    remote_addrs: HashMap<PeerId, Multiaddr>,
    /// Set by [`NetworkHandle::set_isolated`].
    isolated: bool,
    /// Set by [`NetworkHandle::block_gossip_from`].
    gossip_blocked: Vec<PeerId>,
    guard: Guard,
    sync_abuse_warn: WarnLimiter,
    /// Sync responses handed to libp2p and not yet sent or failed, by request and by peer.
    sync_serving: HashMap<request_response::InboundRequestId, PeerId>,
    sync_serving_per_peer: HashMap<PeerId, usize>,
    /// Banned peers whose connections the `blocked` behaviour denies, with when their ban ends.
    blocked_until: BTreeMap<PeerId, u64>,
    /// Deferred checks to the verification thread ([`Judged::Later`]), and their verdicts back.
    verifier: std::sync::mpsc::SyncSender<DeferredJob>,
    verified: mpsc::Receiver<DeferredDone>,
    /// Deferred checks in flight per peer (entries removed at zero).
    deferred_per_peer: HashMap<PeerId, usize>,
}

impl SwarmTask {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut kad_bootstrapped = false;
        while !self.shutdown {
            tokio::select! {
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown) | None => break,
                    Some(cmd) => self.handle_command(cmd),
                },
                event = self.swarm.select_next_some() => {
                    if self.handle_swarm_event(event).await.is_err() {
                        break;
                    }
                }
                Some(done) = self.verified.recv() => {
                    if self.finish_deferred(done).await.is_err() {
                        break;
                    }
                }
                _ = tick.tick() => {
                    self.redial_due();
                    self.guard.refresh_banned();
                    self.unblock_expired();
                    if !kad_bootstrapped && self.swarm.connected_peers().next().is_some() {
                        kad_bootstrapped = self.swarm.behaviour_mut().kad.bootstrap().is_ok();
                    }
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    fn topic(&self, kind: TopicKind) -> &IdentTopic {
        match kind {
            TopicKind::Txs => &self.names.txs,
            TopicKind::Consensus => &self.names.consensus,
        }
    }

    fn publish(&mut self, kind: TopicKind, bytes: Vec<u8>) -> Result<(), NetError> {
        let topic = self.topic(kind).clone();
        if bytes.len() > self.max_transmit {
            Err(NetError::Publish(format!("message of {} bytes exceeds {}", bytes.len(), self.max_transmit)))
        } else {
            self.swarm.behaviour_mut().gossipsub.publish(topic, bytes).map(|_| ()).map_err(|e| match e {
                gossipsub::PublishError::NoPeersSubscribedToTopic => NetError::NoPeers,
                gossipsub::PublishError::Duplicate => NetError::Duplicate,
                other => NetError::Publish(other.to_string()),
            })
        }
    }

    fn handle_command(&mut self, cmd: Command) {
        match cmd {
            Command::Publish(message, reply) => {
                let _ = reply.send(self.publish(message.topic(), message.encode()));
            }
            Command::PublishRaw(topic, bytes, reply) => {
                let _ = reply.send(self.publish(topic, bytes));
            }
            Command::Shutdown => {}
            Command::PeerScore(peer, reply) => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::RequestBlocks(peer, request, reply) => {
                let id = self.swarm.behaviour_mut().sync.send_request(&peer, request);
                self.pending_sync.insert(id, reply);
            }
            Command::RequestSnapshot(peer, request, reply) => {
                let id = self.swarm.behaviour_mut().snapshot.send_request(&peer, request);
                self.pending_snapshot.insert(id, reply);
            }
            Command::Dial(addr, reply) => {
                let _ = reply.send(self.swarm.dial(addr).map_err(|e| NetError::Dial(e.to_string())));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::ListenAddrs(reply) => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::Peers(reply) => {
                let peers = self.swarm.connected_peers().map(|p| (*p, self.remote_addrs.get(p).cloned())).collect();
                let _ = reply.send(peers);
            }
            Command::BlockGossipFrom(peers, reply) => {
                tracing::info!(n = peers.len(), "dropping gossip from peers");
                self.gossip_blocked = peers;
                let _ = reply.send(());
            }
            Command::SetIsolated(isolated, reply) => {
                self.isolated = isolated;
                if isolated {
                    let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                    for peer in peers {
                        let _ = self.swarm.disconnect_peer_id(peer);
                    }
                } else {
                    let now = Instant::now();
                    for r in self.redials.values_mut() {
                        r.backoff = REDIAL_BACKOFF_MIN;
                        r.next_attempt = Some(now);
                    }
                }
                tracing::info!(isolated, "network isolation changed");
                let _ = reply.send(());
            }
        }
    }

    fn redial_due(&mut self) {
        if self.isolated {
            return;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        for (peer, r) in self.redials.iter_mut() {
            if r.next_attempt.is_some_and(|t| t <= now) {
                r.next_attempt = None;
                due.push((*peer, r.addr.clone()));
            }
        }
        for (peer, addr) in due {
            if self.swarm.is_connected(&peer) {
                continue;
            }
            tracing::debug!(%peer, %addr, "dialing bootstrap peer");
            if let Err(e) = self.swarm.dial(addr) {
                tracing::debug!(%peer, error = %e, "dial failed");
                self.warn_bootstrap_failure(&peer, &e);
                self.schedule_redial(&peer, true);
            }
        }
    }

    /// A dial to `peer` failed: if it is a bootstrap peer, say so at WARN (rate limited per peer), naming the
    /// configured address and the error. Dials that were only cancelled or skipped are not failures.
    fn warn_bootstrap_failure(&mut self, peer: &PeerId, error: &DialError) {
        if matches!(error, DialError::Aborted | DialError::DialPeerConditionFalse(_)) || self.swarm.is_connected(peer) {
            return;
        }
        let Some(r) = self.redials.get_mut(peer) else { return };
        let Some(suppressed) = r.warn.check(Instant::now()) else { return };
        let addr = &r.addr;
        match error {
            DialError::WrongPeerId { obtained, address } => tracing::warn!(
                bootstrap_peer = %addr,
                %obtained,
                %address,
                suppressed,
                "bootstrap peer {addr} answered with peer id {obtained}: check the /p2p/ part of \
                 p2p.bootstrap_peers"
            ),
            _ => tracing::warn!(
                bootstrap_peer = %addr,
                %error,
                suppressed,
                "cannot connect to bootstrap peer {addr}: {error}"
            ),
        }
    }

    fn schedule_redial(&mut self, peer: &PeerId, failed: bool) {
        if let Some(r) = self.redials.get_mut(peer) {
            if failed {
                r.backoff = (r.backoff * 2).min(REDIAL_BACKOFF_MAX);
            }
            r.next_attempt = Some(Instant::now() + r.backoff);
        }
    }

    /// Hand an event to the application, serving commands while the channel is full. Err means the
    /// application dropped the event receiver or asked to shut down.
    async fn emit(&mut self, event: NetworkEvent) -> Result<(), ()> {
        loop {
            let cmd = tokio::select! {
                biased;
                permit = self.events.reserve() => {
                    let permit = permit.map_err(|_| ())?;
                    permit.send(event);
                    return Ok(());
                }
                cmd = self.commands.recv() => cmd,
            };
            match cmd {
                Some(Command::Shutdown) | None => {
                    self.shutdown = true;
                    return Err(());
                }
                Some(cmd) => self.handle_command(cmd),
            }
        }
    }

    async fn handle_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> Result<(), ()> {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.emit(NetworkEvent::Listening(address)).await?;
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.isolated => {
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionEstablished { peer_id, .. } if self.guard.is_banned(&peer_id) => {
                tracing::debug!(%peer_id, "closing a banned peer's connection");
                let _ = self.swarm.disconnect_peer_id(peer_id);
                if let Standing::Banned { until_ms } = self.guard.standing(&peer_id)
                    && let Some(r) = self.redials.get_mut(&peer_id)
                {
                    let wait = Duration::from_millis(until_ms.saturating_sub(self.guard.now_ms()));
                    r.next_attempt = Some(Instant::now() + wait);
                }
            }
            SwarmEvent::ConnectionEstablished { peer_id, num_established, endpoint, .. } => {
                self.remote_addrs.insert(peer_id, endpoint.get_remote_address().clone());
                if let Some(r) = self.redials.get_mut(&peer_id) {
                    r.backoff = REDIAL_BACKOFF_MIN;
                    r.next_attempt = None;
                }
                let n_peers = self.swarm.connected_peers().count();
                if n_peers > self.max_peers && !self.redials.contains_key(&peer_id) {
                    tracing::debug!(%peer_id, n_peers, "too many peers, disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                } else if num_established.get() == 1 {
                    self.emit(NetworkEvent::PeerConnected(peer_id)).await?;
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.remote_addrs.remove(&peer_id);
                self.guard.on_disconnected(&peer_id);
                self.schedule_redial(&peer_id, false);
                self.emit(NetworkEvent::PeerDisconnected(peer_id)).await?;
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                tracing::debug!(%peer, %error, "outgoing connection failed");
                self.warn_bootstrap_failure(&peer, &error);
                if !self.swarm.is_connected(&peer) {
                    self.schedule_redial(&peer, true);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.handle_gossip(e).await?,
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }))
                if info.protocols.contains(&self.names.kad) =>
            {
                for addr in info.listen_addrs.into_iter().take(16) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.handle_sync(e),
            SwarmEvent::Behaviour(BehaviourEvent::Snapshot(e)) => self.handle_snapshot(e),
            _ => {}
        }
        Ok(())
    }

    async fn handle_gossip(&mut self, event: gossipsub::Event) -> Result<(), ()> {
        match event {
            gossipsub::Event::Message { propagation_source, message_id, message } => {
                let kind = if message.topic == self.names.txs.hash() {
                    Some(TopicKind::Txs)
                } else if message.topic == self.names.consensus.hash() {
                    Some(TopicKind::Consensus)
                } else {
                    None
                };
                let source = propagation_source;
                let busy = self.deferred_per_peer.get(&source).is_some_and(|&n| n >= DEFERRED_CHECKS_PER_PEER);
                let (acceptance, deliver) = if self.gossip_blocked.contains(&source) {
                    (MessageAcceptance::Ignore, None)
                } else if busy && kind == Some(TopicKind::Txs) {
                    self.guard.stats.count_drop(DropReason::Unavailable);
                    (MessageAcceptance::Ignore, None)
                } else {
                    match self.judge(source, kind, &message.data) {
                        Judgement::Done(acceptance, deliver) => (acceptance, deliver),
                        Judgement::Deferred(message, check) => {
                            let job = DeferredJob { message_id: message_id.clone(), source, message, check };
                            match self.verifier.try_send(job) {
                                // Reported when the verdict comes back.
                                Ok(()) => {
                                    *self.deferred_per_peer.entry(source).or_insert(0) += 1;
                                    return Ok(());
                                }
                                Err(_) => {
                                    self.guard.stats.count_drop(DropReason::Unavailable);
                                    (MessageAcceptance::Ignore, None)
                                }
                            }
                        }
                    }
                };
                self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &source, acceptance);
                if let Some(message) = deliver {
                    self.emit(NetworkEvent::Gossip { source, message }).await?;
                }
            }
            gossipsub::Event::Subscribed { peer_id, topic } => {
                let kind = if topic == self.names.txs.hash() {
                    Some(TopicKind::Txs)
                } else if topic == self.names.consensus.hash() {
                    Some(TopicKind::Consensus)
                } else {
                    None
                };
                if let Some(topic) = kind {
                    self.emit(NetworkEvent::PeerSubscribed { peer: peer_id, topic }).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A deferred check's verdict: report it to gossipsub (forwarded only if accepted), score the sender,
    /// deliver the message.
    async fn finish_deferred(&mut self, done: DeferredDone) -> Result<(), ()> {
        let DeferredDone { message_id, source, message, validation } = done;
        if let std::collections::hash_map::Entry::Occupied(mut e) = self.deferred_per_peer.entry(source) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        let (acceptance, deliver) = self.settle(source, validation, message);
        self.swarm.behaviour_mut().gossipsub.report_message_validation_result(&message_id, &source, acceptance);
        if let Some(message) = deliver {
            self.emit(NetworkEvent::Gossip { source, message }).await?;
        }
        Ok(())
    }

    /// Judge one gossip message from `source`, in order of cost: the peer's standing, its message budget,
    /// decoding, then the application's checks (which spend signature checks from the same budget; their
    /// expensive part may be deferred to the verification thread).
    fn judge(&mut self, source: PeerId, kind: Option<TopicKind>, data: &[u8]) -> Judgement {
        let stats = self.guard.stats.clone();
        match self.guard.standing(&source) {
            Standing::Good => {}
            Standing::Ignored => {
                // An ignored peer's budget is zero: what it keeps sending brings it closer to a ban.
                stats.count_drop(DropReason::PeerIgnored);
                self.offence(source, Offence::OverBudget, "gossip while ignored");
                return Judgement::Done(MessageAcceptance::Ignore, None);
            }
            Standing::Banned { .. } => {
                stats.count_drop(DropReason::PeerIgnored);
                let _ = self.swarm.disconnect_peer_id(source);
                return Judgement::Done(MessageAcceptance::Ignore, None);
            }
        }
        if !self.guard.try_spend(&source, Resource::Messages, 1) {
            stats.count_drop(DropReason::OverBudget);
            self.offence(source, Offence::OverBudget, "gossip messages beyond its budget");
            return Judgement::Done(MessageAcceptance::Ignore, None);
        }
        let decoded = match kind {
            Some(kind) => GossipMessage::decode(data, kind, self.max_transmit).map_err(|e| e.to_string()),
            None => Err("unknown topic".to_string()),
        };
        let msg = match decoded {
            Ok(msg) => msg,
            Err(reason) => {
                tracing::debug!(peer = %source, %reason, "rejecting undecodable gossip");
                self.offence(source, Offence::Invalid, "undecodable gossip");
                return Judgement::Done(MessageAcceptance::Reject, None);
            }
        };
        let guard = &mut self.guard;
        match self.validator.validate_split(&source, &msg, &mut |r, n| guard.try_spend(&source, r, n)) {
            Judged::Now(validation) => {
                let (acceptance, deliver) = self.settle(source, validation, msg);
                Judgement::Done(acceptance, deliver)
            }
            Judged::Later(check) => Judgement::Deferred(msg, check),
        }
    }

    /// What a validation means for gossipsub, the sender's score and the application.
    fn settle(
        &mut self,
        source: PeerId,
        validation: Validation,
        msg: GossipMessage,
    ) -> (MessageAcceptance, Option<GossipMessage>) {
        let stats = self.guard.stats.clone();
        match validation {
            Validation::Accept => (MessageAcceptance::Accept, Some(msg)),
            Validation::Reject(reason) => {
                tracing::debug!(peer = %source, %reason, "rejecting invalid gossip");
                self.offence(source, Offence::Invalid, "invalid gossip");
                (MessageAcceptance::Reject, None)
            }
            Validation::Ignore(reason) => {
                tracing::trace!(peer = %source, %reason, "ignoring gossip");
                (MessageAcceptance::Ignore, None)
            }
            Validation::Drop(reason) => {
                stats.count_drop(reason);
                if reason == DropReason::OverBudget {
                    self.offence(source, Offence::OverBudget, "signature checks beyond its budget");
                }
                (MessageAcceptance::Ignore, None)
            }
        }
    }

    /// Score an offence of `peer`; a ban disconnects it.
    fn offence(&mut self, peer: PeerId, offence: Offence, why: &str) {
        if self.guard.penalise(&peer, offence, why) {
            let _ = self.swarm.disconnect_peer_id(peer);
            // Its reconnections are denied right after the handshake until the ban ends (bounded: a peer
            // beyond the bound is still closed on connect, only later).
            if let Standing::Banned { until_ms } = self.guard.standing(&peer)
                && self.blocked_until.len() < BLOCKED_PEERS_MAX
            {
                self.blocked_until.insert(peer, until_ms);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
        }
    }

    /// Let peers whose ban has ended connect again.
    fn unblock_expired(&mut self) {
        let now = self.guard.now_ms();
        let expired: Vec<PeerId> =
            self.blocked_until.iter().filter(|(_, until)| **until <= now).map(|(p, _)| *p).collect();
        for peer in expired {
            self.blocked_until.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
        }
    }

    /// Whether a block-sync or snapshot request from `peer` may be served: good standing, fewer than
    /// [`SYNC_IN_FLIGHT_PER_PEER`] responses in flight, and one request of its budget (spent here).
    fn admit_sync(&mut self, peer: PeerId) -> bool {
        match self.guard.standing(&peer) {
            Standing::Good => {}
            // An ignored peer's budget is zero: asking on brings it closer to a ban.
            Standing::Ignored => {
                self.sync_abuse(peer, "sync request while ignored");
                return false;
            }
            Standing::Banned { .. } => return false,
        }
        if self.sync_serving_per_peer.get(&peer).copied().unwrap_or(0) >= SYNC_IN_FLIGHT_PER_PEER {
            self.sync_abuse(peer, "too many sync requests at once");
            return false;
        }
        if !self.guard.try_spend(&peer, Resource::SyncRequests, 1) {
            self.sync_abuse(peer, "sync requests beyond its budget");
            return false;
        }
        true
    }

    /// Charge a response's bytes to the peer's sync budget; false (and an offence) when it cannot pay.
    fn charge_sync_bytes(&mut self, peer: PeerId, bytes: u64) -> bool {
        let paid = self.guard.try_spend(&peer, Resource::SyncBytes, bytes);
        if !paid {
            self.sync_abuse(peer, "sync bytes beyond its budget");
        }
        paid
    }

    /// Blocks for an admitted sync request, if the peer's budget covers their bytes.
    fn serve_sync(&mut self, peer: PeerId, request: SyncRequest) -> Option<SyncResponse> {
        let max_count = request.max_count.min(SYNC_BLOCKS_MAX) as usize;
        let budget = wire::SYNC_RESPONSE_BUDGET_BYTES;
        let blocks = self.provider.blocks_from(request.from_height, max_count, budget);
        let bytes: u64 = blocks.iter().map(|(b, c)| approx_bytes(b, c)).sum();
        if !self.charge_sync_bytes(peer, bytes) {
            return None;
        }
        tracing::debug!(%peer, from = %request.from_height, n = blocks.len(), bytes, "serving sync request");
        Some(SyncResponse { blocks })
    }

    /// The answer to an admitted snapshot request, if the peer's budget covers its bytes.
    fn serve_snapshot(&mut self, peer: PeerId, request: SnapshotRequest) -> Option<SnapshotResponse> {
        let response = self.provider.snapshot(&request);
        let bytes = match &response {
            // 32-byte address, 16-byte account.
            SnapshotResponse::Chunk(a) => a.len() as u64 * 48,
            SnapshotResponse::Meta(m) => ledger_core::encoding::encode(m.as_ref()).len() as u64,
            _ => 16,
        };
        if !self.charge_sync_bytes(peer, bytes) {
            return None;
        }
        tracing::debug!(%peer, ?request, bytes, "serving snapshot request");
        Some(response)
    }

    /// A response this task handed to libp2p was sent or failed.
    fn sync_served(&mut self, request_id: request_response::InboundRequestId) {
        let Some(peer) = self.sync_serving.remove(&request_id) else { return };
        if let Some(n) = self.sync_serving_per_peer.get_mut(&peer) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.sync_serving_per_peer.remove(&peer);
            }
        }
    }

    fn sync_abuse(&mut self, peer: PeerId, why: &str) {
        if let Some(suppressed) = self.sync_abuse_warn.check(Instant::now()) {
            tracing::warn!(%peer, why, suppressed, "refusing a peer's sync request: {why}");
        }
        self.offence(peer, Offence::SyncAbuse, why);
    }

    fn handle_sync(&mut self, event: request_response::Event<SyncRequest, SyncResponse>) {
        self.handle_request_response(
            event,
            SyncProtocol::<SyncRequest, SyncResponse> {
                pending: |t| &mut t.pending_sync,
                serve: Self::serve_sync,
                respond: |t, channel, response| t.swarm.behaviour_mut().sync.send_response(channel, response),
            },
        );
    }

    fn handle_snapshot(&mut self, event: request_response::Event<SnapshotRequest, SnapshotResponse>) {
        self.handle_request_response(
            event,
            SyncProtocol::<SnapshotRequest, SnapshotResponse> {
                pending: |t| &mut t.pending_snapshot,
                serve: Self::serve_snapshot,
                respond: |t, channel, response| t.swarm.behaviour_mut().snapshot.send_response(channel, response),
            },
        );
    }

    /// One request-response protocol of the sync family (blocks, snapshots): inbound requests admitted by
    /// [`Self::admit_sync`] (shared budget and in-flight limit) and answered by `serve` (a refusal drops the
    /// channel and the peer's request fails), outbound answers handed to the waiting caller.
    fn handle_request_response<Req, Resp>(
        &mut self,
        event: request_response::Event<Req, Resp>,
        p: SyncProtocol<Req, Resp>,
    ) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request { request, channel, request_id } => {
                    if self.admit_sync(peer)
                        && let Some(response) = (p.serve)(self, peer, request)
                        && (p.respond)(self, channel, response).is_ok()
                    {
                        self.sync_serving.insert(request_id, peer);
                        *self.sync_serving_per_peer.entry(peer).or_insert(0) += 1;
                    }
                }
                request_response::Message::Response { request_id, response } => {
                    if let Some(reply) = (p.pending)(self).remove(&request_id) {
                        let _ = reply.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure { request_id, error, .. } => {
                if let Some(reply) = (p.pending)(self).remove(&request_id) {
                    let _ = reply.send(Err(NetError::Sync(error.to_string())));
                }
            }
            request_response::Event::InboundFailure { peer, error, request_id, .. } => {
                tracing::debug!(%peer, %error, "inbound sync request failed");
                self.sync_served(request_id);
            }
            request_response::Event::ResponseSent { request_id, .. } => self.sync_served(request_id),
        }
    }
}

/// What differs between the sync family's protocols: where outbound requests wait, how a request is
/// served, and which behaviour sends the response.
struct SyncProtocol<Req, Resp> {
    pending: fn(&mut SwarmTask) -> &mut HashMap<OutboundRequestId, oneshot::Sender<Result<Resp, NetError>>>,
    serve: fn(&mut SwarmTask, PeerId, Req) -> Option<Resp>,
    respond: fn(&mut SwarmTask, request_response::ResponseChannel<Resp>, Resp) -> Result<(), Resp>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::tests::TestChain;
    use crate::storage::{Storage, StorageOptions};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// Accepts everything except transactions with amount 13, which it calls invalid.
    struct TestValidator;

    impl GossipValidator for TestValidator {
        fn validate(&self, _: &PeerId, message: &GossipMessage) -> Validation {
            match message {
                GossipMessage::TxBatch(txs) if txs.iter().any(|t| t.tx().amount == 13) => {
                    Validation::Reject("amount 13".into())
                }
                _ => Validation::Accept,
            }
        }
    }

    struct NoBlocks;

    impl BlockProvider for NoBlocks {
        fn blocks_from(&self, _: Height, _: usize, _: usize) -> Vec<(Block, CommitCertificate)> {
            Vec::new()
        }
    }

    struct Node {
        handle: NetworkHandle,
        events: mpsc::Receiver<NetworkEvent>,
        addr: Multiaddr,
        subscribed: Vec<(PeerId, TopicKind)>,
    }

    impl Node {
        /// Wait for the first event matching `pick`, failing the test at the deadline. Subscriptions seen on
        /// the way are remembered.
        async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(NetworkEvent) -> Option<T>) -> T {
            let deadline = Instant::now() + DEADLINE;
            loop {
                match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(e)) => {
                        if let NetworkEvent::PeerSubscribed { peer, topic } = &e {
                            self.subscribed.push((*peer, *topic));
                        }
                        if let Some(t) = pick(e) {
                            return t;
                        }
                    }
                    Ok(None) => panic!("network stopped while waiting for {what}"),
                    Err(_) => panic!("timed out waiting for {what}"),
                }
            }
        }
    }

    async fn start(bootstrap: Vec<Multiaddr>, provider: Arc<dyn BlockProvider>) -> Node {
        let keypair = identity::Keypair::generate_ed25519();
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let mut cfg = NetworkConfig::new("test-chain", keypair, listen, 1 << 20);
        cfg.bootstrap_peers = bootstrap;
        let (handle, events, _task) = spawn(cfg, Arc::new(TestValidator), provider).unwrap();
        let mut node = Node { handle, events, addr: Multiaddr::empty(), subscribed: Vec::new() };
        let listen = node
            .wait_for("listen address", |e| match e {
                NetworkEvent::Listening(a) => Some(a),
                _ => None,
            })
            .await;
        node.addr = listen.with(Protocol::P2p(node.handle.local_peer_id()));
        node
    }

    fn batch(chain: &TestChain, amounts: &[u64]) -> Vec<SignedTransaction> {
        amounts.iter().enumerate().map(|(n, a)| chain.transfer(n as u64, *a)).collect()
    }

    async fn wait_subscribed(node: &mut Node, peers: &[PeerId], topic: TopicKind) {
        let mut missing: Vec<PeerId> = peers.to_vec();
        missing.retain(|m| !node.subscribed.contains(&(*m, topic)));
        while !missing.is_empty() {
            let p = node
                .wait_for("subscriptions", |e| match e {
                    NetworkEvent::PeerSubscribed { peer, topic: t } if t == topic => Some(peer),
                    _ => None,
                })
                .await;
            missing.retain(|m| *m != p);
        }
    }

    async fn wait_gossip(node: &mut Node) -> (PeerId, GossipMessage) {
        node.wait_for("gossip", |e| match e {
            NetworkEvent::Gossip { source, message } => Some((source, message)),
            _ => None,
        })
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tx_batch_reaches_every_peer_and_invalid_is_not_delivered() {
        let chain = TestChain::new();
        let mut a = start(vec![], Arc::new(NoBlocks)).await;
        let mut b = start(vec![a.addr.clone()], Arc::new(NoBlocks)).await;
        let mut c = start(vec![a.addr.clone()], Arc::new(NoBlocks)).await;
        let (bp, cp) = (b.handle.local_peer_id(), c.handle.local_peer_id());
        wait_subscribed(&mut a, &[bp, cp], TopicKind::Txs).await;

        let good = GossipMessage::TxBatch(batch(&chain, &[1, 2, 3]));
        a.handle.publish(good.clone()).await.unwrap();
        for node in [&mut b, &mut c] {
            let (_, got) = wait_gossip(node).await;
            assert_eq!(got, good);
        }

        // A forged batch (rejected by the validator) and garbage bytes, then a valid batch: the receivers see
        // only the valid one.
        let bad = GossipMessage::TxBatch(batch(&chain, &[13]));
        a.handle.publish(bad).await.unwrap();
        a.handle.publish_raw(TopicKind::Txs, vec![wire::WIRE_VERSION, 0, 255, 255, 255, 255]).await.unwrap();
        a.handle.publish_raw(TopicKind::Consensus, vec![42; 100]).await.unwrap();
        let good2 = GossipMessage::TxBatch(batch(&chain, &[4]));
        a.handle.publish(good2.clone()).await.unwrap();
        for node in [&mut b, &mut c] {
            let (source, got) = wait_gossip(node).await;
            assert_eq!(got, good2, "an invalid message was delivered");
            assert_eq!(source, a.handle.local_peer_id());
            let score = node.handle.peer_score(source).await.unwrap().unwrap();
            assert!(score < 0.0, "sender of invalid messages keeps score {score}");
        }

        // And gossip from a leaf reaches the other leaf through the hub.
        wait_subscribed(&mut b, &[a.handle.local_peer_id()], TopicKind::Txs).await;
        let from_b = GossipMessage::TxBatch(batch(&chain, &[5, 6]));
        b.handle.publish(from_b.clone()).await.unwrap();
        let (_, got) = wait_gossip(&mut c).await;
        assert_eq!(got, from_b);
        let (_, got) = wait_gossip(&mut a).await;
        assert_eq!(got, from_b);
    }

    /// Defers every transaction batch's check to the verification thread, where each check waits for
    /// `open` before accepting.
    struct DeferringValidator {
        started: Arc<std::sync::atomic::AtomicUsize>,
        open: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    }

    impl GossipValidator for DeferringValidator {
        fn validate(&self, _: &PeerId, _: &GossipMessage) -> Validation {
            Validation::Accept
        }

        fn validate_split(
            &self,
            _: &PeerId,
            message: &GossipMessage,
            _: &mut dyn FnMut(Resource, u64) -> bool,
        ) -> Judged {
            if !matches!(message, GossipMessage::TxBatch(_)) {
                return Judged::Now(Validation::Accept);
            }
            let (started, open) = (Arc::clone(&self.started), Arc::clone(&self.open));
            Judged::Later(DeferredCheck::plain(move |_| {
                started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (lock, cvar) = &*open;
                let mut is_open = lock.lock().unwrap();
                while !*is_open {
                    is_open = cvar.wait(is_open).unwrap();
                }
                Validation::Accept
            }))
        }
    }

    /// Counts the batches it checks signatures in.
    #[derive(Default)]
    struct CountingChecker {
        batches: std::sync::Mutex<Vec<usize>>,
    }

    impl GossipValidator for CountingChecker {
        fn validate(&self, _: &PeerId, _: &GossipMessage) -> Validation {
            Validation::Accept
        }

        fn check_signatures(&self, txs: &[&SignedTransaction]) -> Vec<Result<(), TxError>> {
            self.batches.lock().unwrap().push(txs.len());
            SignedTransaction::check_keys_and_signatures(txs, &ledger_core::crypto::NoKeyCache)
        }

        fn signatures_all_valid(&self, txs: &[&SignedTransaction]) -> bool {
            self.batches.lock().unwrap().push(txs.len());
            SignedTransaction::keys_and_signatures_all_valid(txs, &ledger_core::crypto::NoKeyCache)
        }
    }

    fn job(source: PeerId, txs: Vec<SignedTransaction>, signatures: Vec<u32>) -> DeferredJob {
        DeferredJob {
            message_id: MessageId::from(vec![0]),
            source,
            message: GossipMessage::TxBatch(txs),
            check: DeferredCheck { signatures, finish: Box::new(|_, _| Validation::Accept) },
        }
    }

    /// Waiting checks of proven peers are verified as one batch and each gets exactly its own verdicts,
    /// in order; when the shared batch fails, each of its checks is verified alone, so a forged signature
    /// lands on its own transaction and its neighbours' verdicts stand; a peer not yet proven, or a
    /// forger, is checked alone.
    #[test]
    fn waiting_checks_of_proven_peers_share_one_batch_and_get_their_own_verdicts() {
        let chain = TestChain::new();
        let (a, b, c, d) = (PeerId::random(), PeerId::random(), PeerId::random(), PeerId::random());
        let good: Vec<SignedTransaction> = (0..8).map(|n| chain.transfer(n, 1)).collect();
        let forged = SignedTransaction::new(chain.transfer(9, 1).tx().clone(), ledger_core::Signature([9; 64]));
        let mut peers = VerifyPeers::default();
        for peer in [a, b, d] {
            peers.learn(peer, &Validation::Accept);
        }

        // All valid: a and d share one batch (2 + 2), c (not proven) alone.
        let honest = vec![
            job(a, good[0..3].to_vec(), vec![0, 2]),
            job(c, good[3..5].to_vec(), vec![0, 1]),
            job(d, good[6..8].to_vec(), vec![1, 0]),
        ];
        let checker = CountingChecker::default();
        let verdicts = verify_waiting(&checker, &honest, &peers);
        assert_eq!(*checker.batches.lock().unwrap(), vec![4, 2]);
        assert!(verdicts.iter().all(|v| v.len() == 2 && v.iter().all(Result::is_ok)), "{verdicts:?}");

        // b's forgery fails the shared batch (2 + 2): then a and b are each checked alone (2, 2), c alone.
        let jobs = vec![
            job(a, good[0..3].to_vec(), vec![0, 2]),
            job(c, good[3..5].to_vec(), vec![0, 1]),
            job(b, vec![good[5].clone(), forged.clone()], vec![1, 0]),
        ];
        let checker = CountingChecker::default();
        let verdicts = verify_waiting(&checker, &jobs, &peers);
        assert_eq!(*checker.batches.lock().unwrap(), vec![4, 2, 2, 2]);
        assert_eq!(verdicts[0], vec![Ok(()), Ok(())]);
        assert_eq!(verdicts[1], vec![Ok(()), Ok(())]);
        assert_eq!(verdicts[2], vec![Err(TxError::BadSignature), Ok(())]);

        // b's batch was refused: from then on it is checked alone, and a (alone now) too.
        peers.learn(b, &Validation::Reject("forged".into()));
        let checker = CountingChecker::default();
        let verdicts = verify_waiting(&checker, &jobs, &peers);
        assert_eq!(*checker.batches.lock().unwrap(), vec![2, 2, 2]);
        assert_eq!(verdicts[2], vec![Err(TxError::BadSignature), Ok(())]);
    }

    /// A peer whose batches arrive faster than this node verifies them has at most
    /// `DEFERRED_CHECKS_PER_PEER` in the verification queue; the rest are dropped unjudged (counted, no
    /// penalty), and the queued ones are judged and delivered in order once verification goes on, while the
    /// swarm task stays responsive.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deferred_checks_are_bounded_per_peer_and_delivered_in_order() {
        let chain = TestChain::new();
        let mut a = start(vec![], Arc::new(NoBlocks)).await;
        let started = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let validator = DeferringValidator { started: Arc::clone(&started), open: Arc::clone(&open) };
        let mut cfg = NetworkConfig::new(
            "test-chain",
            identity::Keypair::generate_ed25519(),
            "/ip4/127.0.0.1/tcp/0".parse().unwrap(),
            1 << 20,
        );
        cfg.bootstrap_peers = vec![a.addr.clone()];
        let stats = Arc::clone(&cfg.peer_stats);
        let (handle, events, _task) = spawn(cfg, Arc::new(validator), Arc::new(NoBlocks)).unwrap();
        let mut b = Node { handle, events, addr: Multiaddr::empty(), subscribed: Vec::new() };
        wait_subscribed(&mut a, &[b.handle.local_peer_id()], TopicKind::Txs).await;

        let total = DEFERRED_CHECKS_PER_PEER + 4;
        let sent: Vec<GossipMessage> =
            (0..total).map(|i| GossipMessage::TxBatch(batch(&chain, &[100 + i as u64]))).collect();
        for m in &sent {
            a.handle.publish(m.clone()).await.unwrap();
        }
        let unavailable =
            || stats.dropped().into_iter().find(|(r, _)| *r == DropReason::Unavailable).map_or(0, |(_, n)| n);
        let deadline = Instant::now() + DEADLINE;
        while unavailable() < 4 {
            assert!(Instant::now() < deadline, "excess batches not dropped: {} dropped", unavailable());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The swarm task still answers while the checks wait.
        assert!(b.handle.peer_score(a.handle.local_peer_id()).await.unwrap().is_some());
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), 1, "one check runs at a time");

        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        for expected in &sent[..DEFERRED_CHECKS_PER_PEER] {
            let (_, got) = wait_gossip(&mut b).await;
            assert_eq!(&got, expected, "delivered in arrival order");
        }
        assert_eq!(started.load(std::sync::atomic::Ordering::SeqCst), DEFERRED_CHECKS_PER_PEER);
        assert_eq!(unavailable(), 4);
    }

    /// The driver awaits publish replies without reading events; the swarm task must keep answering commands
    /// while its event channel is full, or the two wait on each other forever.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commands_are_answered_while_events_back_up() {
        let chain = TestChain::new();
        let mut a = start(vec![], Arc::new(NoBlocks)).await;
        let keypair = identity::Keypair::generate_ed25519();
        let listen: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().unwrap();
        let mut cfg = NetworkConfig::new("test-chain", keypair, listen, 1 << 20);
        cfg.bootstrap_peers = vec![a.addr.clone()];
        cfg.channel_capacity = 2;
        // `b` never reads its events after this point.
        let (b, b_events, _task) = spawn(cfg, Arc::new(TestValidator), Arc::new(NoBlocks)).unwrap();
        wait_subscribed(&mut a, &[b.local_peer_id()], TopicKind::Txs).await;
        for n in 0..20u64 {
            a.handle.publish(GossipMessage::TxBatch(vec![chain.transfer(n, 1)])).await.unwrap();
        }
        // Far more events than the channel holds are now pending at `b`; its commands still get answers.
        let deadline = Instant::now() + DEADLINE;
        let mut seen_full = false;
        while !seen_full {
            assert!(Instant::now() < deadline, "b's event channel never filled");
            seen_full = b_events.capacity() == 0;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..5 {
            let peers = tokio::time::timeout(Duration::from_secs(5), b.connected_peers()).await;
            assert!(matches!(peers, Ok(Ok(ref p)) if p.contains(&a.handle.local_peer_id())), "{peers:?}");
            let r = tokio::time::timeout(
                Duration::from_secs(5),
                b.publish(GossipMessage::TxBatch(vec![chain.transfer(99, 2)])),
            );
            assert!(r.await.is_ok(), "publish got no reply while events were backed up");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn publish_alone_reports_no_peers() {
        let a = start(vec![], Arc::new(NoBlocks)).await;
        let chain = TestChain::new();
        let r = a.handle.publish(GossipMessage::TxBatch(batch(&chain, &[1]))).await;
        assert_eq!(r, Err(NetError::NoPeers));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sync_returns_stored_blocks_bounded() {
        let chain = TestChain::new();
        let dir = tempfile::tempdir().unwrap();
        let store =
            Storage::open(dir.path(), StorageOptions { cache_capacity_bytes: 1 << 20, block_bytes_max: 1 << 20 })
                .unwrap();
        store.init_genesis(&chain.genesis).unwrap();
        let mut blocks = Vec::new();
        for n in 0..5 {
            blocks.push(chain.commit_next(&store, vec![chain.transfer(n, 10)]));
        }
        let mut server = start(vec![], Arc::new(store.clone())).await;
        let mut client = start(vec![server.addr.clone()], Arc::new(NoBlocks)).await;
        let server_id = server.handle.local_peer_id();
        client
            .wait_for("connection", |e| match e {
                NetworkEvent::PeerConnected(p) if p == server_id => Some(()),
                _ => None,
            })
            .await;
        let _ = &mut server.events;

        let resp = client
            .handle
            .request_blocks(server_id, SyncRequest { from_height: Height(2), max_count: 2 })
            .await
            .unwrap();
        let got: Vec<Block> = resp.blocks.iter().map(|(b, _)| b.clone()).collect();
        assert_eq!(got, blocks[1..3].to_vec());
        let set = chain.genesis.validator_set().unwrap();
        for (block, cert) in &resp.blocks {
            cert.verify_for(&chain.genesis.chain_id, &set, block.height(), block.hash()).unwrap();
        }
        // Asking for far too many is capped by the server; asking beyond the tip returns nothing.
        let resp = client
            .handle
            .request_blocks(server_id, SyncRequest { from_height: Height(1), max_count: u32::MAX })
            .await
            .unwrap();
        assert_eq!(resp.blocks.len(), 5);
        let resp = client
            .handle
            .request_blocks(server_id, SyncRequest { from_height: Height(9), max_count: 10 })
            .await
            .unwrap();
        assert!(resp.blocks.is_empty());
    }

    #[test]
    fn bootstrap_warnings_are_rate_limited() {
        let t0 = Instant::now();
        let mut w = WarnLimiter::new(Duration::from_secs(60));
        assert_eq!(w.check(t0), Some(0), "the first failure warns");
        assert_eq!(w.check(t0 + Duration::from_secs(1)), None);
        assert_eq!(w.check(t0 + Duration::from_secs(59)), None);
        assert_eq!(w.check(t0 + Duration::from_secs(60)), Some(2), "a minute later, with the count in between");
        assert_eq!(w.check(t0 + Duration::from_secs(61)), None);
        assert_eq!(w.check(t0 + Duration::from_secs(200)), Some(1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bootstrap_peer_is_redialed_after_it_restarts() {
        // Fixed key and port for the hub so it can come back at the same address.
        let key = identity::Keypair::generate_ed25519();
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let listen: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let hub_id = key.public().to_peer_id();
        let hub_addr = listen.clone().with(Protocol::P2p(hub_id));
        let start_hub = || {
            let cfg = NetworkConfig::new("test-chain", key.clone(), listen.clone(), 1 << 20);
            spawn(cfg, Arc::new(TestValidator), Arc::new(NoBlocks)).unwrap()
        };
        let (hub, hub_events, hub_task) = start_hub();
        let mut leaf = start(vec![hub_addr], Arc::new(NoBlocks)).await;
        let connected = |e| match e {
            NetworkEvent::PeerConnected(p) if p == hub_id => Some(()),
            _ => None,
        };
        leaf.wait_for("first connection", connected).await;
        drop((hub, hub_events));
        hub_task.await.unwrap();
        leaf.wait_for("disconnection", |e| match e {
            NetworkEvent::PeerDisconnected(p) if p == hub_id => Some(()),
            _ => None,
        })
        .await;
        let (_hub, _hub_events, _task) = start_hub();
        leaf.wait_for("reconnection", connected).await;
    }
}
