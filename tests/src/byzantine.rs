//! A Byzantine libp2p peer: the node's own networking code (`node::p2p`, `node::wire`) driven by an attacker
//! that joins a real localnet as a peer of its validators and floods them.
//!
//! Five floods, each a function with a rate and a duration ([`run_flood`] dispatches on [`Flood`]):
//! - [`Flood::ForgedTxs`]: transaction batches whose signatures are invalid, in the name of the genesis
//!   accounts (public in the genesis file) with nonces in their admission window, so that everything but
//!   the signature would admit them and the receiver must get as far as the signature check;
//! - [`Flood::UnfundedTxs`]: [`UNFUNDED_POOL`] transfers signed once, from fresh keys that own nothing, then
//!   republished as batches that are each a new selection and order, so every message is new to gossipsub's
//!   duplicate cache and each batch costs the receiver signature checks;
//! - [`Flood::ReplayVotes`]: real votes captured from the validators' gossip, replayed once their height is
//!   committed, each copy with a fresh `resend` number so that gossipsub does not drop it as a duplicate;
//! - [`Flood::SyncFlood`]: [`SYNC_PARALLEL`] block-sync requests in flight per target, each for the largest
//!   range (from height 1, as many blocks as the server will give), renewed as soon as one is answered;
//! - [`Flood::Churn`]: connections opened to every target and closed again, by one identity that comes back
//!   again and again and by fresh identities.
//!
//! The attacker runs on a current-thread tokio runtime on the calling thread, so it costs at most one core
//! and every socket it opens belongs to that thread's network namespace (the chaos tool runs it in the
//! bridge namespace of its topology). It reports what it attempted and what it saw ([`FloodReport`]): the
//! node side of the outcome (penalties, bans, drops) is read from the nodes' `/metrics` by the caller, see
//! [`DefenceCounters`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::{Block, CommitCertificate, Height, Keypair, Signature, SignedTransaction, SignedVote, Transaction};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, identity};
use node::p2p::{
    self, BlockProvider, GossipValidator, NetError, NetworkConfig, NetworkEvent, NetworkHandle, Validation,
};
use node::wire::{GossipMessage, SyncRequest, TopicKind};
use tokio::sync::mpsc;

use crate::chaos::rng::Rng;
use crate::harness::ApiClient;

/// How many unfunded transfers [`Flood::UnfundedTxs`] signs (once) and reshuffles into batches.
pub const UNFUNDED_POOL: usize = 1024;
/// Transactions per batch of the transaction floods.
pub const TX_FLOOD_BATCH: usize = 64;
/// Block-sync requests kept in flight per target by [`Flood::SyncFlood`].
pub const SYNC_PARALLEL: usize = 128;
/// Concurrent connection cycles of [`Flood::Churn`] (lane 0 always uses the same identity).
pub const CHURN_LANES: usize = 8;
/// Longest wait for the attacker to be connected to, and subscribed by, every target before a flood.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(30);
/// Votes kept for replay.
const VOTES_KEPT: usize = 4096;

/// The kinds of flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flood {
    ForgedTxs,
    UnfundedTxs,
    ReplayVotes,
    SyncFlood,
    Churn,
}

impl Flood {
    pub const ALL: [Flood; 5] =
        [Flood::ForgedTxs, Flood::UnfundedTxs, Flood::ReplayVotes, Flood::SyncFlood, Flood::Churn];

    pub fn name(self) -> &'static str {
        match self {
            Flood::ForgedTxs => "forged-txs",
            Flood::UnfundedTxs => "unfunded-txs",
            Flood::ReplayVotes => "replay-votes",
            Flood::SyncFlood => "sync-flood",
            Flood::Churn => "churn",
        }
    }

    pub fn parse(name: &str) -> Option<Flood> {
        Flood::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The rate each flood attempts by default, in its own unit ([`Flood::unit`]).
    pub fn default_rate(self) -> f64 {
        match self {
            // 1,000 batches of 64: 64k signature checks a second asked of each target.
            Flood::ForgedTxs => 1_000.0,
            Flood::UnfundedTxs => 1_000.0,
            // The figure: about 20k replayed votes a second attempted.
            Flood::ReplayVotes => 20_000.0,
            // Requests a second, at most SYNC_PARALLEL in flight per target.
            Flood::SyncFlood => 5_000.0,
            // Connection cycles (connect to every target, then disconnect) a second.
            Flood::Churn => 20.0,
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Flood::ForgedTxs | Flood::UnfundedTxs => "batches",
            Flood::ReplayVotes => "votes",
            Flood::SyncFlood => "sync requests",
            Flood::Churn => "connection cycles",
        }
    }

    /// Whether the flood publishes gossip (and so needs the targets subscribed to it).
    fn topic(self) -> Option<TopicKind> {
        match self {
            Flood::ForgedTxs | Flood::UnfundedTxs => Some(TopicKind::Txs),
            Flood::ReplayVotes => Some(TopicKind::Consensus),
            Flood::SyncFlood | Flood::Churn => None,
        }
    }
}

impl std::fmt::Display for Flood {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A validator the attacker aims at: its libp2p address ending in `/p2p/<peer id>`.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub peer_id: PeerId,
    pub addr: Multiaddr,
}

impl Target {
    /// From an address `/ip4/…/tcp/…/p2p/<peer id>` (the localnet manifest's `p2p_addr`).
    pub fn parse(name: &str, addr: &str) -> Result<Target> {
        let addr: Multiaddr = addr.parse().with_context(|| format!("p2p address of {name}: {addr:?}"))?;
        let peer_id = addr
            .iter()
            .find_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None })
            .ok_or_else(|| anyhow!("p2p address of {name} has no /p2p/<peer id>: {addr}"))?;
        Ok(Target { name: name.to_string(), peer_id, addr })
    }
}

/// The targets `which` of a localnet, from its manifest.
pub fn targets(manifest: &genesis::LocalnetManifest, which: &[usize]) -> Result<Vec<Target>> {
    which
        .iter()
        .map(|&i| {
            let n = manifest.nodes.get(i).ok_or_else(|| anyhow!("no node {i} in the manifest"))?;
            Target::parse(&n.name, &n.p2p_addr)
        })
        .collect()
}

/// What the attacker needs to know about the chain.
#[derive(Clone, Debug)]
pub struct ChainInfo {
    pub chain_id: String,
    pub block_bytes_max: usize,
    pub min_fee: u64,
    /// Expiry height written into the transactions the floods sign (far enough ahead to stay admissible).
    pub expiry_height: u64,
    /// Funded accounts (the genesis accounts): the senders the forged transactions claim to be.
    pub funded: Vec<ledger_core::PublicKey>,
}

impl ChainInfo {
    /// From the genesis and the chain's current height (transactions expire 100,000 heights later).
    pub fn new(genesis: &ledger_core::Genesis, height: u64) -> ChainInfo {
        ChainInfo {
            chain_id: genesis.chain_id.clone(),
            block_bytes_max: genesis.params.block_bytes_max as usize,
            min_fee: genesis.params.min_fee,
            expiry_height: height + 100_000,
            funded: genesis.accounts.iter().map(|a| a.address).collect(),
        }
    }
}

/// One flood to run.
#[derive(Clone, Debug)]
pub struct FloodSpec {
    pub flood: Flood,
    /// Attempts a second, in [`Flood::unit`].
    pub rate: f64,
    pub duration: Duration,
    /// Address the attacker listens on (`/ip4/127.0.0.1/tcp/0` on loopback).
    pub listen: Multiaddr,
    /// Seed of the attacker's choices (batch contents, resend numbers).
    pub seed: u64,
}

impl FloodSpec {
    pub fn new(flood: Flood, duration: Duration) -> FloodSpec {
        FloodSpec { flood, rate: flood.default_rate(), duration, listen: loopback(), seed: 0x6279_7a61_6e74_696e }
    }
}

/// `/ip4/127.0.0.1/tcp/0`.
pub fn loopback() -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST)).with(Protocol::Tcp(0))
}

/// What the attacker did and saw.
#[derive(Clone, Debug, Default)]
pub struct FloodReport {
    pub flood: Option<Flood>,
    /// How long the flood ran (joining the targets not included).
    pub ran_for: Duration,
    /// Attempts (messages, requests, connection cycles).
    pub attempted: u64,
    /// Attempts the attacker's own swarm took: publishes it sent, sync responses received, cycles that
    /// reached at least one target.
    pub sent: u64,
    /// Failed attempts by kind (`no_peers`, `duplicate`, `publish`, `sync`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// Per target name: connections the attacker saw established and closed during the flood (every
    /// `PeerDisconnected` is the target's doing except in churn, where the attacker closes them).
    pub connects: BTreeMap<String, u64>,
    pub disconnects: BTreeMap<String, u64>,
    /// Targets the attacker was still connected to when the flood ended (gossip and sync floods).
    pub connected_at_end: Vec<String>,
    /// Every peer id the attacker used.
    pub identities: Vec<PeerId>,
    /// Votes captured for replay, and the range of their heights.
    pub votes_captured: usize,
    pub vote_heights: Option<(u64, u64)>,
    /// Blocks received in sync responses.
    pub sync_blocks: u64,
}

impl FloodReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// One line for logs.
    pub fn summary(&self) -> String {
        let flood = self.flood.map_or("?", Flood::name);
        let rate = self.attempted as f64 / self.ran_for.as_secs_f64().max(1e-3);
        let mut s = format!(
            "{flood}: {:.1}s, attempted {} ({rate:.0}/s), sent {}, errors {:?}, connects {:?}, disconnects {:?}, connected at end {:?}, identities {}",
            self.ran_for.as_secs_f64(),
            self.attempted,
            self.sent,
            self.errors,
            self.connects,
            self.disconnects,
            self.connected_at_end,
            self.identities.len()
        );
        if self.flood == Some(Flood::ReplayVotes) {
            s.push_str(&format!(", votes captured {} heights {:?}", self.votes_captured, self.vote_heights));
        }
        if self.flood == Some(Flood::SyncFlood) {
            s.push_str(&format!(", blocks received {}", self.sync_blocks));
        }
        s
    }
}

/// Run `spec` against `targets` on this thread (a current-thread tokio runtime), with a fresh identity.
/// `stop` ends it early when set.
pub fn run_flood(chain: &ChainInfo, targets: &[Target], spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    if targets.is_empty() {
        bail!("no targets");
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("attacker runtime")?;
    let mut report = rt.block_on(async {
        match spec.flood {
            Flood::ForgedTxs => forged_txs(chain, targets, spec, stop).await,
            Flood::UnfundedTxs => unfunded_txs(chain, targets, spec, stop).await,
            Flood::ReplayVotes => replay_votes(chain, targets, spec, stop).await,
            Flood::SyncFlood => sync_flood(chain, targets, spec, stop).await,
            Flood::Churn => churn(chain, targets, spec, stop).await,
        }
    })?;
    report.flood = Some(spec.flood);
    // Dropping the runtime cancels the swarm tasks: every connection of the attacker closes.
    drop(rt);
    tracing::info!("{}", report.summary());
    Ok(report)
}

/// Run `spec` on a thread of its own (entering network namespace `netns`, a path under /var/run/netns,
/// first when given). Set the returned flag to stop it early.
pub fn spawn_flood(
    chain: ChainInfo,
    targets: Vec<Target>,
    spec: FloodSpec,
    netns: Option<String>,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Result<FloodReport>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let join = std::thread::Builder::new()
        .name(format!("byzantine-{}", spec.flood))
        .spawn(move || {
            if let Some(path) = netns {
                crate::chaos::netns::enter(&path)?;
            }
            run_flood(&chain, &targets, &spec, &flag)
        })
        .unwrap_or_else(|e| {
            let msg = format!("cannot spawn the attacker thread: {e}");
            std::thread::spawn(move || Err(anyhow!(msg)))
        });
    (stop, join)
}

/// Sees every gossip message the targets send and keeps votes; relays and delivers nothing.
#[derive(Default)]
struct Capture {
    votes: Mutex<Vec<SignedVote>>,
}

impl GossipValidator for Capture {
    fn validate(&self, _source: &PeerId, message: &GossipMessage) -> Validation {
        if let GossipMessage::Vote { vote, .. } = message {
            let mut votes = self.votes.lock().unwrap_or_else(|e| e.into_inner());
            if votes.len() < VOTES_KEPT && !votes.contains(vote) {
                votes.push(vote.clone());
            }
        }
        // Ignore: not forwarded, not delivered, and no blame for the sender.
        Validation::Ignore("byzantine peer relays nothing".into())
    }
}

struct NoBlocks;

impl BlockProvider for NoBlocks {
    fn blocks_from(&self, _: Height, _: usize, _: usize) -> Vec<(Block, CommitCertificate)> {
        Vec::new()
    }
}

/// Connections and subscriptions the attacker's swarm reported.
#[derive(Default)]
struct PeerLog {
    connected: BTreeSet<PeerId>,
    subscribed: BTreeSet<(PeerId, bool)>,
    connects: BTreeMap<PeerId, u64>,
    disconnects: BTreeMap<PeerId, u64>,
}

/// One attacker swarm, its events drained by a task into a [`PeerLog`].
struct Peer {
    handle: NetworkHandle,
    log: Arc<Mutex<PeerLog>>,
    capture: Arc<Capture>,
    task: tokio::task::JoinHandle<()>,
    drain: tokio::task::JoinHandle<()>,
}

impl Peer {
    fn start(chain: &ChainInfo, targets: &[Target], keypair: identity::Keypair, listen: &Multiaddr) -> Result<Peer> {
        let mut cfg = NetworkConfig::new(&chain.chain_id, keypair, listen.clone(), chain.block_bytes_max);
        cfg.bootstrap_peers = targets.iter().map(|t| t.addr.clone()).collect();
        let capture = Arc::new(Capture::default());
        let (handle, events, task) =
            p2p::spawn(cfg, capture.clone(), Arc::new(NoBlocks)).map_err(|e| anyhow!("attacker swarm: {e}"))?;
        let log = Arc::new(Mutex::new(PeerLog::default()));
        let drain = tokio::spawn(drain_events(events, log.clone()));
        Ok(Peer { handle, log, capture, task, drain })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PeerLog> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait (event-driven, with a deadline) until every target is connected and, for gossip floods,
    /// subscribed to `topic`.
    async fn join(&self, targets: &[Target], topic: Option<TopicKind>) -> Result<()> {
        let deadline = Instant::now() + JOIN_DEADLINE;
        loop {
            let missing: Vec<&str> = {
                let log = self.lock();
                targets
                    .iter()
                    .filter(|t| {
                        !log.connected.contains(&t.peer_id)
                            || topic.is_some_and(|k| !log.subscribed.contains(&(t.peer_id, k == TopicKind::Txs)))
                    })
                    .map(|t| t.name.as_str())
                    .collect()
            };
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("attacker not connected to / subscribed by {missing:?} within {JOIN_DEADLINE:?}");
            }
            // Re-check interval of an observation loop: the events are recorded by the drain task.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Connection counters of the flood so far, by target name; the targets still connected.
    fn fill_report(&self, targets: &[Target], report: &mut FloodReport) {
        let log = self.lock();
        for t in targets {
            report.connects.insert(t.name.clone(), log.connects.get(&t.peer_id).copied().unwrap_or(0));
            report.disconnects.insert(t.name.clone(), log.disconnects.get(&t.peer_id).copied().unwrap_or(0));
            if log.connected.contains(&t.peer_id) {
                report.connected_at_end.push(t.name.clone());
            }
        }
        report.identities.push(self.handle.local_peer_id());
    }

    /// Forget the connection counts of the join phase, so the report covers the flood only.
    fn reset_counts(&self) {
        let mut log = self.lock();
        log.connects.clear();
        log.disconnects.clear();
    }

    async fn stop(self) {
        self.handle.shutdown().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
        self.drain.abort();
    }
}

async fn drain_events(mut events: mpsc::Receiver<NetworkEvent>, log: Arc<Mutex<PeerLog>>) {
    while let Some(e) = events.recv().await {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        match e {
            NetworkEvent::PeerConnected(p) => {
                log.connected.insert(p);
                *log.connects.entry(p).or_default() += 1;
            }
            NetworkEvent::PeerDisconnected(p) => {
                log.connected.remove(&p);
                log.subscribed.retain(|(q, _)| *q != p);
                *log.disconnects.entry(p).or_default() += 1;
            }
            NetworkEvent::PeerSubscribed { peer, topic } => {
                log.subscribed.insert((peer, topic == TopicKind::Txs));
            }
            NetworkEvent::Listening(_) | NetworkEvent::Gossip { .. } => {}
        }
    }
}

fn count_error(report: &mut FloodReport, e: &NetError) {
    let kind = match e {
        NetError::NoPeers => "no_peers",
        NetError::Duplicate => "duplicate",
        NetError::Publish(_) => "publish",
        NetError::Sync(_) => "sync",
        NetError::Dial(_) => "dial",
        NetError::Stopped => "stopped",
        NetError::Setup(_) => "setup",
    };
    *report.errors.entry(kind.to_string()).or_default() += 1;
}

/// Paces attempts at `rate` a second over `duration`: `due()` is how many should have been made by now.
struct Pacer {
    start: Instant,
    rate: f64,
    duration: Duration,
}

impl Pacer {
    fn new(rate: f64, duration: Duration) -> Pacer {
        Pacer { start: Instant::now(), rate, duration }
    }

    fn over(&self, stop: &AtomicBool) -> bool {
        self.start.elapsed() >= self.duration || stop.load(Ordering::Relaxed)
    }

    fn due(&self) -> u64 {
        (self.start.elapsed().as_secs_f64() * self.rate) as u64
    }

    /// Yield until the next attempt is due (the attacker's own rate limit, not a synchronisation).
    async fn wait_turn(&self, done: u64) {
        while done >= self.due() && self.start.elapsed() < self.duration {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Publishes awaiting the swarm's answer at once: the attacker does not wait for one publish to be
/// answered before it asks for the next.
const PUBLISH_IN_FLIGHT: usize = 256;

/// Publish `make(n)` for n = 0, 1, … at the spec's rate (up to [`PUBLISH_IN_FLIGHT`] unanswered); shared by
/// the gossip floods.
async fn publish_paced(
    peer: &Peer,
    spec: &FloodSpec,
    stop: &AtomicBool,
    report: &mut FloodReport,
    mut make: impl FnMut(u64) -> GossipMessage,
) {
    let pacer = Pacer::new(spec.rate, spec.duration);
    let mut in_flight: tokio::task::JoinSet<Result<(), NetError>> = tokio::task::JoinSet::new();
    let mut n = 0u64;
    let settle =
        |report: &mut FloodReport, done: Option<Result<Result<(), NetError>, tokio::task::JoinError>>| match done {
            Some(Ok(Ok(()))) => report.sent += 1,
            Some(Ok(Err(e))) => count_error(report, &e),
            Some(Err(_)) | None => {}
        };
    while !pacer.over(stop) {
        while in_flight.len() >= PUBLISH_IN_FLIGHT {
            let done = in_flight.join_next().await;
            settle(report, done);
        }
        while let Some(done) = in_flight.try_join_next() {
            settle(report, Some(done));
        }
        pacer.wait_turn(n).await;
        let message = make(n);
        n += 1;
        report.attempted += 1;
        let handle = peer.handle.clone();
        in_flight.spawn(async move { handle.publish(message).await });
    }
    report.ran_for = pacer.start.elapsed();
    while let Some(done) = in_flight.join_next().await {
        settle(report, Some(done));
    }
}

/// Start a swarm with a fresh identity and wait until every target has it connected and subscribed.
async fn join_fresh(chain: &ChainInfo, targets: &[Target], spec: &FloodSpec) -> Result<Peer> {
    let peer = Peer::start(chain, targets, identity::Keypair::generate_ed25519(), &spec.listen)?;
    peer.join(targets, spec.flood.topic()).await?;
    peer.reset_counts();
    tracing::info!(peer = %peer.handle.local_peer_id(), flood = %spec.flood, "attacker joined every target");
    Ok(peer)
}

fn fresh_key(rng: &mut Rng) -> Keypair {
    let mut seed = [0u8; 32];
    for chunk in seed.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    Keypair::from_seed(&seed)
}

/// Nonces of the forged transactions: within the mempool's default window ahead of an account's nonce
/// (`mempool.max_nonce_gap` = 64), so an account that has not sent much admits them but for the signature.
const FORGED_NONCES: u64 = 64;

/// Flood 1: batches of [`TX_FLOOD_BATCH`] transfers claiming to come from the funded genesis accounts,
/// with nonces in their admission window and random signature bytes: every one is different and every
/// one is admissible but for its signature.
pub async fn forged_txs(
    chain: &ChainInfo,
    targets: &[Target],
    spec: &FloodSpec,
    stop: &AtomicBool,
) -> Result<FloodReport> {
    let peer = join_fresh(chain, targets, spec).await?;
    let mut rng = Rng::new(spec.seed ^ 0x666f_7267_6564);
    let senders: Vec<ledger_core::PublicKey> = if chain.funded.is_empty() {
        (0..16).map(|_| fresh_key(&mut rng).public()).collect()
    } else {
        chain.funded.clone()
    };
    let recipient = fresh_key(&mut rng).public();
    let mut report = FloodReport::default();
    publish_paced(&peer, spec, stop, &mut report, |n| {
        let txs = (0..TX_FLOOD_BATCH as u64)
            .map(|i| {
                let k = (n * TX_FLOOD_BATCH as u64 + i) as usize;
                let tx = Transaction {
                    chain_id: chain.chain_id.clone(),
                    sender: senders[k % senders.len()],
                    recipient,
                    amount: 1,
                    fee: chain.min_fee,
                    nonce: rng.next_u64() % FORGED_NONCES,
                    expiry_height: chain.expiry_height,
                    memo: String::new(),
                };
                let mut sig = [0u8; 64];
                for chunk in sig.chunks_mut(8) {
                    chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
                }
                SignedTransaction::new(tx, Signature(sig))
            })
            .collect();
        GossipMessage::TxBatch(txs)
    })
    .await;
    peer.fill_report(targets, &mut report);
    peer.stop().await;
    Ok(report)
}

/// [`UNFUNDED_POOL`] transfers, validly signed once, from fresh keys that hold nothing.
pub fn unfunded_pool(chain: &ChainInfo, seed: u64) -> Vec<SignedTransaction> {
    let mut rng = Rng::new(seed ^ 0x756e_6675_6e64);
    let recipient = fresh_key(&mut rng).public();
    (0..UNFUNDED_POOL)
        .map(|_| {
            let key = fresh_key(&mut rng);
            Transaction {
                chain_id: chain.chain_id.clone(),
                sender: key.public(),
                recipient,
                amount: 1,
                fee: chain.min_fee,
                nonce: 0,
                expiry_height: chain.expiry_height,
                memo: String::new(),
            }
            .sign(&key)
        })
        .collect()
}

/// Flood 2: batches drawn from the [`unfunded_pool`], each a fresh selection in a fresh order, so every
/// message is new to gossipsub and each transaction in it has a valid signature the receiver must check
/// before it learns that the sender owns nothing.
pub async fn unfunded_txs(
    chain: &ChainInfo,
    targets: &[Target],
    spec: &FloodSpec,
    stop: &AtomicBool,
) -> Result<FloodReport> {
    let pool = unfunded_pool(chain, spec.seed);
    let peer = join_fresh(chain, targets, spec).await?;
    let mut rng = Rng::new(spec.seed ^ 0x7368_7566_666c_65);
    let mut order: Vec<usize> = (0..pool.len()).collect();
    let mut report = FloodReport::default();
    publish_paced(&peer, spec, stop, &mut report, |_| {
        // A partial Fisher-Yates: the first TX_FLOOD_BATCH positions become a fresh random selection.
        for i in 0..TX_FLOOD_BATCH.min(order.len()) {
            let j = i + rng.below(order.len() - i);
            order.swap(i, j);
        }
        GossipMessage::TxBatch(order[..TX_FLOOD_BATCH.min(order.len())].iter().map(|&i| pool[i].clone()).collect())
    })
    .await;
    peer.fill_report(targets, &mut report);
    peer.stop().await;
    Ok(report)
}

/// Flood 3: capture real votes from the validators' gossip, wait until their heights are committed
/// (two heights above the oldest captured), then replay them round robin at the spec's rate, every copy
/// with a fresh `resend` number.
pub async fn replay_votes(
    chain: &ChainInfo,
    targets: &[Target],
    spec: &FloodSpec,
    stop: &AtomicBool,
) -> Result<FloodReport> {
    let peer = join_fresh(chain, targets, spec).await?;
    let deadline = Instant::now() + JOIN_DEADLINE;
    let votes: Vec<SignedVote> = loop {
        let captured = peer.capture.votes.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let newest = captured.iter().map(|v| v.vote.height.0).max().unwrap_or(0);
        let old: Vec<SignedVote> = captured.into_iter().filter(|v| v.vote.height.0 + 2 <= newest).collect();
        if old.len() >= 8 {
            break old;
        }
        if Instant::now() >= deadline {
            bail!("captured only {} old votes within {JOIN_DEADLINE:?} (newest height seen {newest})", old.len());
        }
        // Observation interval: the votes are collected by the swarm task as they arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut report = FloodReport {
        votes_captured: votes.len(),
        vote_heights: Some((
            votes.iter().map(|v| v.vote.height.0).min().unwrap_or(0),
            votes.iter().map(|v| v.vote.height.0).max().unwrap_or(0),
        )),
        ..FloodReport::default()
    };
    peer.reset_counts();
    // Resend numbers far above what an honest node reaches, different on every copy.
    let base = (Rng::new(spec.seed).next_u64() as u32) | 0x8000_0000;
    publish_paced(&peer, spec, stop, &mut report, |n| GossipMessage::Vote {
        vote: votes[(n % votes.len() as u64) as usize].clone(),
        resend: base.wrapping_add(n as u32),
    })
    .await;
    peer.fill_report(targets, &mut report);
    peer.stop().await;
    Ok(report)
}

/// Flood 4: [`SYNC_PARALLEL`] requests in flight per target for the largest range (height 1, as many
/// blocks as the server allows), each renewed as soon as it is answered, at most `rate` a second in all.
pub async fn sync_flood(
    chain: &ChainInfo,
    targets: &[Target],
    spec: &FloodSpec,
    stop: &AtomicBool,
) -> Result<FloodReport> {
    let peer = join_fresh(chain, targets, spec).await?;
    let pacer = Pacer::new(spec.rate, spec.duration);
    let mut report = FloodReport::default();
    let mut in_flight: tokio::task::JoinSet<(usize, Result<usize, NetError>)> = tokio::task::JoinSet::new();
    let mut per_target = vec![0usize; targets.len()];
    let request = SyncRequest { from_height: Height(1), max_count: u32::MAX };
    let mut next = 0usize;
    while !pacer.over(stop) {
        // Top up every target to SYNC_PARALLEL requests, as far as the rate allows.
        let mut issued = false;
        for _ in 0..targets.len() {
            let t = next % targets.len();
            next += 1;
            if per_target[t] >= SYNC_PARALLEL || report.attempted >= pacer.due() {
                continue;
            }
            let handle = peer.handle.clone();
            let target = targets[t].peer_id;
            in_flight.spawn(async move { (t, handle.request_blocks(target, request).await.map(|r| r.blocks.len())) });
            per_target[t] += 1;
            report.attempted += 1;
            issued = true;
        }
        if issued {
            continue;
        }
        // Nothing to issue: wait for an answer or for the rate to allow more.
        tokio::select! {
            done = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Some(Ok((t, result))) = done {
                    per_target[t] -= 1;
                    match result {
                        Ok(blocks) => {
                            report.sent += 1;
                            report.sync_blocks += blocks as u64;
                        }
                        Err(e) => count_error(&mut report, &e),
                    }
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(1)) => {}
        }
    }
    report.ran_for = pacer.start.elapsed();
    let unanswered = in_flight.len() as u64;
    if unanswered > 0 {
        report.errors.insert("unanswered_at_end".into(), unanswered);
    }
    in_flight.abort_all();
    peer.fill_report(targets, &mut report);
    peer.stop().await;
    Ok(report)
}

/// Flood 5: connection cycles (a swarm dials every target, waits until the connections are up, at most
/// 3 s, then shuts down) at `rate` a second on [`CHURN_LANES`] lanes: lane 0 always comes back with the
/// same identity, the other lanes with a fresh one each time.
pub async fn churn(chain: &ChainInfo, targets: &[Target], spec: &FloodSpec, stop: &AtomicBool) -> Result<FloodReport> {
    let returning = identity::Keypair::generate_ed25519();
    let pacer = Pacer::new(spec.rate, spec.duration);
    let mut report = FloodReport { identities: vec![returning.public().to_peer_id()], ..FloodReport::default() };
    let connects = Arc::new(Mutex::new(BTreeMap::<PeerId, u64>::new()));
    let failures = Arc::new(AtomicU64::new(0));
    let mut lanes: tokio::task::JoinSet<usize> = tokio::task::JoinSet::new();
    let mut busy = [false; CHURN_LANES];
    while !pacer.over(stop) {
        // Lanes in turn (lane 0, the returning identity, gets one cycle in CHURN_LANES), or any free one.
        let turn = report.attempted as usize % CHURN_LANES;
        let free = if busy[turn] { busy.iter().position(|b| !b) } else { Some(turn) };
        match free {
            Some(lane) if report.attempted < pacer.due() => {
                let keypair = if lane == 0 { returning.clone() } else { identity::Keypair::generate_ed25519() };
                if lane != 0 {
                    report.identities.push(keypair.public().to_peer_id());
                }
                busy[lane] = true;
                report.attempted += 1;
                let (chain, targets, listen) = (chain.clone(), targets.to_vec(), spec.listen.clone());
                let (connects, failures) = (connects.clone(), failures.clone());
                lanes.spawn(async move {
                    match churn_cycle(&chain, &targets, keypair, &listen).await {
                        Ok(reached) => {
                            let mut c = connects.lock().unwrap_or_else(|e| e.into_inner());
                            for p in reached {
                                *c.entry(p).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "churn cycle failed");
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    lane
                });
            }
            _ => {
                tokio::select! {
                    done = lanes.join_next(), if !lanes.is_empty() => {
                        if let Some(Ok(lane)) = done {
                            busy[lane] = false;
                        }
                    }
                    _ = tokio::time::sleep(Duration::from_millis(1)) => {}
                }
            }
        }
    }
    while let Some(done) = lanes.join_next().await {
        if let Ok(lane) = done {
            busy[lane] = false;
        }
    }
    report.ran_for = pacer.start.elapsed();
    let connects = connects.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for t in targets {
        let n = connects.get(&t.peer_id).copied().unwrap_or(0);
        report.connects.insert(t.name.clone(), n);
        report.disconnects.insert(t.name.clone(), n);
    }
    report.sent = report.attempted - failures.load(Ordering::Relaxed);
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        report.errors.insert("cycle_reached_no_target".into(), failed);
    }
    Ok(report)
}

/// One churn cycle: connect to every target (or as many as answer within 3 s), then close everything.
/// Returns the targets reached.
async fn churn_cycle(
    chain: &ChainInfo,
    targets: &[Target],
    keypair: identity::Keypair,
    listen: &Multiaddr,
) -> Result<Vec<PeerId>> {
    let peer = Peer::start(chain, targets, keypair, listen)?;
    let deadline = Instant::now() + Duration::from_secs(3);
    let reached = loop {
        let reached: Vec<PeerId> =
            targets.iter().map(|t| t.peer_id).filter(|p| peer.lock().connected.contains(p)).collect();
        if reached.len() == targets.len() || Instant::now() >= deadline {
            break reached;
        }
        // Observation interval while the dials complete.
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    peer.stop().await;
    if reached.is_empty() {
        bail!("no target reached within 3 s");
    }
    Ok(reached)
}

/// The defence counters of one node's `/metrics` (0 for a family the node does not export yet, and then
/// `present` is false): penalties by reason, bans, peers banned now, gossip dropped by reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DefenceCounters {
    pub present: bool,
    pub penalties: BTreeMap<String, f64>,
    pub bans: f64,
    pub banned_now: f64,
    pub dropped: BTreeMap<String, f64>,
}

impl DefenceCounters {
    pub fn read(api: &ApiClient) -> Result<DefenceCounters> {
        let text = api.get_text("/metrics")?;
        Ok(DefenceCounters::parse(&text))
    }

    /// From Prometheus text.
    pub fn parse(text: &str) -> DefenceCounters {
        let penalties = samples_by_label(text, "ledger_peer_penalties_total", "reason");
        let dropped = samples_by_label(text, "ledger_gossip_dropped_total", "reason");
        let bans = sample(text, "ledger_peer_bans_total");
        let banned_now = sample(text, "ledger_peers_banned");
        DefenceCounters {
            present: bans.is_some() || !penalties.is_empty(),
            penalties,
            bans: bans.unwrap_or(0.0),
            banned_now: banned_now.unwrap_or(0.0),
            dropped,
        }
    }

    /// What grew from `before` to `self`.
    pub fn since(&self, before: &DefenceCounters) -> DefenceCounters {
        let diff = |a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>| {
            a.iter().map(|(k, v)| (k.clone(), v - b.get(k).copied().unwrap_or(0.0))).filter(|(_, v)| *v > 0.0).collect()
        };
        DefenceCounters {
            present: self.present,
            penalties: diff(&self.penalties, &before.penalties),
            bans: self.bans - before.bans,
            banned_now: self.banned_now,
            dropped: diff(&self.dropped, &before.dropped),
        }
    }

    pub fn penalties_total(&self) -> f64 {
        self.penalties.values().sum()
    }

    pub fn penalty(&self, reason: &str) -> f64 {
        self.penalties.get(reason).copied().unwrap_or(0.0)
    }

    pub fn dropped_total(&self) -> f64 {
        self.dropped.values().sum()
    }

    pub fn drop(&self, reason: &str) -> f64 {
        self.dropped.get(reason).copied().unwrap_or(0.0)
    }
}

/// A sample without labels (`name value`), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Every sample of family `name`, summed by the value of `label` (samples without it count under "").
fn samples_by_label(text: &str, name: &str, label: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else { continue };
        let (labels, value) = if let Some(rest) = rest.strip_prefix('{') {
            match rest.split_once('}') {
                Some((labels, value)) => (labels, value),
                None => continue,
            }
        } else if rest.starts_with(' ') {
            ("", rest)
        } else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else { continue };
        let key = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| k.trim() == label)
            .map(|(_, v)| v.trim().trim_matches('"').to_string())
            .unwrap_or_default();
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defence_counters_parse_labelled_samples() {
        let text = "# HELP ledger_peer_penalties_total Penalties.\n\
                    # TYPE ledger_peer_penalties_total counter\n\
                    ledger_peer_penalties_total{reason=\"invalid\"} 3\n\
                    ledger_peer_penalties_total{reason=\"over_budget\"} 2\n\
                    ledger_peer_bans_total 1\n\
                    ledger_peers_banned 1\n\
                    ledger_gossip_dropped_total{reason=\"old_height\",topic=\"consensus\"} 10\n\
                    ledger_gossip_dropped_total{topic=\"txs\",reason=\"old_height\"} 5\n\
                    ledger_peers 3\n";
        let c = DefenceCounters::parse(text);
        assert!(c.present);
        assert_eq!(c.penalty("invalid"), 3.0);
        assert_eq!(c.penalties_total(), 5.0);
        assert_eq!(c.bans, 1.0);
        assert_eq!(c.drop("old_height"), 15.0);
        let before = DefenceCounters::parse("ledger_peer_penalties_total{reason=\"invalid\"} 1\n");
        let d = c.since(&before);
        assert_eq!(d.penalty("invalid"), 2.0);
        assert_eq!(d.penalty("over_budget"), 2.0);
        assert!(!DefenceCounters::parse("ledger_peers 3\n").present);
    }

    #[test]
    fn floods_have_names_and_targets_parse() {
        for f in Flood::ALL {
            assert_eq!(Flood::parse(f.name()), Some(f));
        }
        let id = identity::Keypair::generate_ed25519().public().to_peer_id();
        let t = Target::parse("node0", &format!("/ip4/127.0.0.1/tcp/4001/p2p/{id}")).expect("parses");
        assert_eq!(t.peer_id, id);
        assert!(Target::parse("node0", "/ip4/127.0.0.1/tcp/4001").is_err());
    }
}

/// What [`spawn_equivocator`] did.
#[derive(Clone, Debug, Default)]
pub struct EquivocationReport {
    /// Conflicting pairs published (each a prevote for nil and one for a made-up block, same slot).
    pub pairs: u64,
    /// Publishes the swarm refused.
    pub errors: u64,
    /// The heights it equivocated at (lowest, highest).
    pub heights: Option<(u64, u64)>,
}

/// A second process with a validator's key that equivocates: it joins `targets` as a peer, and at every
/// new height it sees in their votes it publishes two prevotes signed with `key` for the slot (height,
/// round) of that vote: one for nil and one for a block hash it made up. Honest nodes that receive both in
/// the height hold equivocation evidence. Runs on a thread of its own until the returned flag is set.
pub fn spawn_equivocator(
    chain: ChainInfo,
    targets: Vec<Target>,
    key: Keypair,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<Result<EquivocationReport>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let join = std::thread::Builder::new()
        .name("byzantine-equivocator".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("attacker runtime")?;
            rt.block_on(equivocate(&chain, &targets, &key, &flag))
        })
        .unwrap_or_else(|e| {
            let msg = format!("cannot spawn the equivocator thread: {e}");
            std::thread::spawn(move || Err(anyhow!(msg)))
        });
    (stop, join)
}

async fn equivocate(
    chain: &ChainInfo,
    targets: &[Target],
    key: &Keypair,
    stop: &AtomicBool,
) -> Result<EquivocationReport> {
    let peer = Peer::start(chain, targets, identity::Keypair::generate_ed25519(), &loopback())?;
    peer.join(targets, Some(TopicKind::Consensus)).await?;
    let mut report = EquivocationReport::default();
    let mut last_height = 0u64;
    let mut made_up = 0u8;
    while !stop.load(Ordering::Relaxed) {
        let newest = {
            let votes = peer.capture.votes.lock().unwrap_or_else(|e| e.into_inner());
            votes
                .iter()
                .filter(|v| v.vote.validator != key.public())
                .max_by_key(|v| (v.vote.height, v.vote.round))
                .cloned()
        };
        if let Some(seen) = newest.filter(|v| v.vote.height.0 > last_height) {
            last_height = seen.vote.height.0;
            made_up = made_up.wrapping_add(1);
            let slot = |block_hash| ledger_core::Vote {
                kind: ledger_core::VoteKind::Prevote,
                height: seen.vote.height,
                round: seen.vote.round,
                block_hash,
                validator: key.public(),
            };
            for vote in [slot(None), slot(Some(ledger_core::Hash([made_up; 32])))] {
                let message = GossipMessage::Vote { vote: vote.sign(&chain.chain_id, key), resend: 0 };
                match peer.handle.publish(message).await {
                    Ok(()) => {}
                    Err(_) => report.errors += 1,
                }
            }
            report.pairs += 1;
            let (lo, _) = report.heights.unwrap_or((last_height, last_height));
            report.heights = Some((lo, last_height));
        }
        // Observation interval: votes are captured by the swarm task as they arrive.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    peer.stop().await;
    Ok(report)
}
