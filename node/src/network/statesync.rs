//! State sync: a node with an empty database fetches a recent snapshot of the state from its peers instead
//! of replaying every block from genesis, then block-syncs the rest as usual.
//!
//! Nothing a peer says is trusted. The snapshot's metadata (the block at its height with its certificate,
//! the governance state, every validator-set change since genesis, the manifest of the state tree's parts)
//! is checked from the genesis file alone ([`SnapshotMeta::verify`]): the set changes are followed from the
//! genesis set, the certificate must verify with the set they reach, and the manifest must fold up to the
//! certified header's state root. Each chunk (the accounts of one part) is then checked alone against its
//! part as it arrives, so a peer that lies is caught at its first bad chunk: that chunk is fetched from
//! another peer and the liar is asked for nothing more. The accounts are written only once every chunk
//! checked, in one batch, after one last check of the whole tree against the state root.
//!
//! The sync runs on a network instance of its own that forwards no gossip; it is shut down before the node
//! starts its real one on the same address. When no peer offers a snapshot within the discovery timeout,
//! or no offered snapshot can be fetched, the node falls back to block sync from genesis.
//!
//! A node that has a chain but has fallen behind every peer's retention window (its peers hold snapshots
//! above its tip and serve no block after it) cannot catch up by block sync. [`run_if_pruned_past`] finds
//! that out at start and installs the newest snapshot into a fresh database, which the caller swaps in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_core::light::SnapshotMeta;
use ledger_core::{Account, Address, Genesis, Height};
use libp2p::PeerId;

use crate::p2p::{self, GossipValidator, NetworkConfig, NetworkHandle, Validation};
use crate::storage::Storage;
use crate::storage::snapshot::CHUNK_ACCOUNTS_MAX;
use crate::wire::{GossipMessage, SnapshotRequest, SnapshotResponse, SyncRequest};

/// `[state_sync]` settings.
#[derive(Clone, Debug)]
pub struct StateSyncOptions {
    /// Fetch a snapshot when the database is empty (`state_sync.enable = 1`).
    pub enable: bool,
    /// Keep a snapshot every this many blocks for peers (0: serve none).
    pub snapshot_interval: u64,
    /// How long to wait for a first offer before falling back to block sync.
    pub discovery_timeout: Duration,
}

impl Default for StateSyncOptions {
    fn default() -> Self {
        StateSyncOptions { enable: false, snapshot_interval: 1000, discovery_timeout: Duration::from_secs(10) }
    }
}

/// Wait for more offers this long after the first one.
const OFFER_GRACE: Duration = Duration::from_secs(1);
/// Rounds of asking for offers before falling back to block sync.
const ATTEMPTS: u32 = 5;
/// One request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// How a state sync ended.
#[derive(Debug)]
pub enum Outcome {
    /// The snapshot at `height` is installed.
    Installed { height: Height, accounts: usize, chunks: usize, bad_chunks: usize, elapsed: Duration },
    /// No usable snapshot: block-sync from genesis.
    NoSnapshot(String),
}

/// What a start with a chain found out about its peers' windows ([`run_if_pruned_past`]).
#[derive(Debug)]
pub enum Behind {
    /// Block sync can go on from the tip (why, for the log).
    No(String),
    /// Every peer that answered has pruned the block after the tip; the newest snapshot was installed into
    /// the fresh database given.
    Installed { tip: Height, height: Height, accounts: usize, elapsed: Duration },
    /// Every peer that answered has pruned the block after the tip, and no snapshot could be installed.
    Failed { tip: Height, why: String },
}

/// For a node whose database holds a chain: ask every connected peer for the block after the tip. When none
/// serves it and some peer holds a snapshot above the tip whose metadata verifies, every peer ahead has pruned
/// that block: state-sync from a snapshot above the tip into a fresh database opened at `incoming_dir` (and
/// closed again before this returns); otherwise leave everything as it is. `storage` serves the peers
/// meanwhile.
pub async fn run_if_pruned_past(
    genesis: &Genesis,
    storage: &Storage,
    incoming_dir: &std::path::Path,
    incoming_opts: crate::storage::StorageOptions,
    net: NetworkConfig,
    opts: &StateSyncOptions,
) -> Behind {
    let tip = match storage.latest_height() {
        Ok(t) => t,
        Err(e) => return Behind::No(format!("cannot read the tip: {e}")),
    };
    let (handle, mut events, task) = match p2p::spawn(net, Arc::new(NoGossip), Arc::new(storage.clone())) {
        Ok(n) => n,
        Err(e) => return Behind::No(format!("cannot start the network to ask peers: {e}")),
    };
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let outcome = match pruned_past(&handle, tip, opts).await {
        Ok(None) => match Storage::open(incoming_dir, incoming_opts) {
            Ok(incoming) => {
                let outcome = match sync(genesis, &incoming, &handle, opts, tip).await {
                    Ok(Outcome::Installed { height, accounts, elapsed, .. }) if height > tip => {
                        Behind::Installed { tip, height, accounts, elapsed }
                    }
                    Ok(Outcome::Installed { height, .. }) => {
                        Behind::Failed { tip, why: format!("installed a snapshot at {height}, not above the tip") }
                    }
                    Ok(Outcome::NoSnapshot(why)) => Behind::Failed { tip, why },
                    Err(e) => Behind::Failed { tip, why: format!("{e:#}") },
                };
                drop(incoming);
                outcome
            }
            Err(e) => Behind::Failed { tip, why: format!("cannot create {}: {e}", incoming_dir.display()) },
        },
        Ok(Some(why)) => Behind::No(why),
        Err(e) => Behind::No(format!("{e:#}")),
    };
    handle.shutdown().await;
    let _ = task.await;
    drain.abort();
    outcome
}

/// `None` when no connected peer serves the block after `tip`, at least one answered that it has none, and
/// some peer offers a snapshot above `tip` (its metadata is verified by [`sync`] before anything is
/// installed); otherwise why block sync can go on.
async fn pruned_past(net: &NetworkHandle, tip: Height, opts: &StateSyncOptions) -> anyhow::Result<Option<String>> {
    let deadline = Instant::now() + opts.discovery_timeout;
    let mut first: Option<Instant> = None;
    let peers = loop {
        let peers = net.connected_peers().await?;
        let now = Instant::now();
        if !peers.is_empty() {
            first.get_or_insert(now);
        }
        if now >= deadline || first.is_some_and(|t| now >= t + OFFER_GRACE) {
            break peers;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if peers.is_empty() {
        return Ok(Some("no peer connected within the discovery timeout".into()));
    }
    let request = SyncRequest { from_height: tip.next(), max_count: 1 };
    // All at once, under one deadline: a peer that does not answer delays nothing beyond it.
    let answers = futures::future::join_all(
        peers.iter().map(|p| tokio::time::timeout(REQUEST_TIMEOUT, net.request_blocks(*p, request))),
    )
    .await;
    let mut refused = 0;
    for (peer, answer) in peers.iter().zip(answers) {
        match answer {
            Ok(Ok(r)) if r.blocks.first().is_some_and(|(b, _)| b.height() == tip.next()) => {
                return Ok(Some(format!("peer {peer} serves block {}", tip.next())));
            }
            Ok(Ok(r)) if r.blocks.is_empty() => refused += 1,
            Ok(Ok(_)) => tracing::debug!(%peer, "peer answered for the block after the tip with another block"),
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "asking a peer for the block after the tip failed"),
            Err(_) => tracing::debug!(%peer, "asking a peer for the block after the tip timed out"),
        }
    }
    if refused == 0 {
        return Ok(Some("no peer answered for the block after the tip".into()));
    }
    // Peers at our height have no block after it either: only a snapshot above the tip shows a peer ahead.
    let offers = offers(net, opts.discovery_timeout, &BTreeSet::new()).await?;
    if !offers.values().flatten().any(|h| *h > tip) {
        return Ok(Some(format!("no peer serves a block or holds a snapshot above height {tip}")));
    }
    tracing::info!(
        %tip, peers = refused,
        "no peer serves the block after this node's tip: looking for a snapshot above it (peers ahead of it have pruned that block)"
    );
    Ok(None)
}

/// Gossip is not for a node that has no state yet: everything is dropped without blame.
struct NoGossip;

impl GossipValidator for NoGossip {
    fn validate(&self, _: &PeerId, _: &GossipMessage) -> Validation {
        Validation::Ignore("state sync in progress".into())
    }
}

/// Run a state sync into `storage` (empty) over a network of its own built from `net`.
pub async fn run(genesis: &Genesis, storage: &Storage, net: NetworkConfig, opts: &StateSyncOptions) -> Outcome {
    let (handle, mut events, task) = match p2p::spawn(net, Arc::new(NoGossip), Arc::new(storage.clone())) {
        Ok(n) => n,
        Err(e) => return Outcome::NoSnapshot(format!("cannot start the network for state sync: {e}")),
    };
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    let outcome = match sync(genesis, storage, &handle, opts, Height::GENESIS).await {
        Ok(o) => o,
        Err(e) => Outcome::NoSnapshot(format!("{e:#}")),
    };
    handle.shutdown().await;
    let _ = task.await;
    drain.abort();
    outcome
}

async fn ask(net: &NetworkHandle, peer: PeerId, request: SnapshotRequest) -> anyhow::Result<SnapshotResponse> {
    match tokio::time::timeout(REQUEST_TIMEOUT, net.request_snapshot(peer, request)).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("no answer within {} s", REQUEST_TIMEOUT.as_secs()),
    }
}

/// Snapshot heights offered, by peer, gathered until the discovery timeout or shortly after a first offer.
async fn offers(
    net: &NetworkHandle,
    timeout: Duration,
    bad: &BTreeSet<PeerId>,
) -> anyhow::Result<BTreeMap<PeerId, Vec<Height>>> {
    let deadline = Instant::now() + timeout;
    let mut asked = BTreeSet::new();
    let mut offers: BTreeMap<PeerId, Vec<Height>> = BTreeMap::new();
    let mut first_offer: Option<Instant> = None;
    loop {
        for peer in net.connected_peers().await? {
            if bad.contains(&peer) || !asked.insert(peer) {
                continue;
            }
            match ask(net, peer, SnapshotRequest::Offers).await {
                Ok(SnapshotResponse::Offers(heights)) if !heights.is_empty() => {
                    tracing::info!(%peer, ?heights, "peer offers state snapshots");
                    first_offer.get_or_insert_with(Instant::now);
                    offers.insert(peer, heights);
                }
                Ok(_) => tracing::debug!(%peer, "peer offers no snapshot"),
                Err(e) => tracing::debug!(%peer, error = %e, "asking a peer for snapshots failed"),
            }
        }
        let now = Instant::now();
        if now >= deadline || first_offer.is_some_and(|t| now >= t + OFFER_GRACE) {
            return Ok(offers);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fetch, verify and install the newest snapshot offered above height `above` (genesis for an empty node).
async fn sync(
    genesis: &Genesis,
    storage: &Storage,
    net: &NetworkHandle,
    opts: &StateSyncOptions,
    above: Height,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let mut peers = Standing::default();
    let mut last_error = format!("no peer offered a snapshot above height {above}");
    // A snapshot may be dropped by its holders while it is fetched (they keep the last two): then the
    // offers are asked for again, a bounded number of times.
    for attempt in 1..=ATTEMPTS {
        tracing::info!(
            attempt,
            timeout_ms = opts.discovery_timeout.as_millis() as u64,
            "state sync: looking for snapshots"
        );
        let offers = offers(net, opts.discovery_timeout, &peers.bad).await?;
        let mut heights: Vec<Height> =
            offers.values().flatten().copied().filter(|h| *h > above).collect::<BTreeSet<_>>().into_iter().collect();
        heights.reverse();
        if heights.is_empty() {
            break;
        }
        for height in heights {
            let holders: Vec<PeerId> = offers.iter().filter(|(_, h)| h.contains(&height)).map(|(p, _)| *p).collect();
            match sync_height(genesis, storage, net, height, &holders, &mut peers, started).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) => {
                    tracing::warn!(%height, error = %format!("{e:#}"), "state sync at this height failed");
                    last_error = format!("{e:#}");
                }
            }
        }
    }
    Ok(Outcome::NoSnapshot(last_error))
}

/// What the sync has learnt about its peers.
#[derive(Default)]
struct Standing {
    /// Caught serving data that does not verify: asked for nothing more.
    bad: BTreeSet<PeerId>,
    /// Sent metadata whose parts no peer would serve (its manifest may cut the tree where no honest holder
    /// answers, or the snapshot aged out meanwhile): asked for metadata after the others.
    suspect: BTreeSet<PeerId>,
}

/// Fetch and verify the snapshot at `height` from `holders` (skipping, and adding to `peers.bad`, the
/// peers caught lying), then install it.
async fn sync_height(
    genesis: &Genesis,
    storage: &Storage,
    net: &NetworkHandle,
    height: Height,
    holders: &[PeerId],
    peers: &mut Standing,
    started: Instant,
) -> anyhow::Result<Outcome> {
    let bad = &mut peers.bad;
    let mut verified: Option<(PeerId, SnapshotMeta, Vec<ledger_core::light::Trusted>)> = None;
    let mut order: Vec<PeerId> = holders.iter().filter(|p| !bad.contains(p)).copied().collect();
    order.sort_by_key(|p| peers.suspect.contains(p));
    for peer in order {
        match ask(net, peer, SnapshotRequest::Meta { height }).await {
            Ok(SnapshotResponse::Meta(meta)) => match meta.verify(genesis, CHUNK_ACCOUNTS_MAX) {
                Ok(reached) if meta.height() == height => {
                    verified = Some((peer, *meta, reached));
                    break;
                }
                Ok(_) => {
                    tracing::warn!(%peer, %height, "peer sent the metadata of another height; not asking it again");
                    bad.insert(peer);
                }
                Err(e) => {
                    tracing::warn!(%peer, %height, error = %e, "snapshot metadata does not verify; not asking this peer again");
                    bad.insert(peer);
                }
            },
            Ok(_) => tracing::debug!(%peer, %height, "peer no longer holds the snapshot"),
            Err(e) => tracing::debug!(%peer, %height, error = %e, "asking for snapshot metadata failed"),
        }
    }
    let (meta_from, meta, reached) = verified.context("no peer sent metadata that verifies")?;
    let parts = &meta.manifest.parts;
    let total: u64 = parts.iter().map(|p| p.leaves).sum();
    tracing::info!(
        %height,
        block = %meta.block.hash(),
        parts = parts.len(),
        accounts = total,
        transitions = meta.transitions.len(),
        "state sync: snapshot metadata verified from the genesis file; fetching chunks"
    );
    // `total` is the sender's claim (no hash covers the counts): reported, never trusted for allocation.
    let mut accounts: Vec<(Address, Account)> = Vec::new();
    let mut bad_chunks = 0;
    let mut last_progress = Instant::now();
    for (index, part) in parts.iter().enumerate() {
        let live: Vec<PeerId> = holders.iter().filter(|p| !bad.contains(p)).copied().collect();
        anyhow::ensure!(!live.is_empty(), "every peer offering height {height} was caught serving bad data");
        let mut got = None;
        // Spread the chunks over the peers: chunk i starts at peer i mod n and moves on when refused.
        for k in 0..live.len() {
            let peer = live[(index + k) % live.len()];
            let request = SnapshotRequest::Chunk { height, depth: part.depth, position: part.position };
            match ask(net, peer, request).await {
                Ok(SnapshotResponse::Chunk(chunk)) => match part.verify_chunk(&chunk) {
                    Ok(()) => {
                        got = Some(chunk);
                        break;
                    }
                    Err(e) => {
                        bad_chunks += 1;
                        bad.insert(peer);
                        tracing::warn!(
                            %peer, %height, chunk = index, error = %e,
                            "snapshot chunk failed its check against the certified state root; fetching it from another peer and asking this one for nothing more"
                        );
                    }
                },
                Ok(_) => tracing::debug!(%peer, chunk = index, "peer does not serve this chunk"),
                Err(e) => tracing::debug!(%peer, chunk = index, error = %e, "asking for a chunk failed"),
            }
        }
        let Some(chunk) = got else {
            peers.suspect.insert(meta_from);
            anyhow::bail!("no peer served part {index} of height {height} (metadata from {meta_from})");
        };
        accounts.extend(chunk);
        if last_progress.elapsed() >= Duration::from_secs(3) {
            last_progress = Instant::now();
            tracing::info!(%height, chunks = index + 1, of = parts.len(), accounts = accounts.len(), "state sync progress");
        }
    }
    let n = accounts.len();
    storage.install_snapshot(genesis, &meta, &reached, accounts).context("installing the snapshot")?;
    let elapsed = started.elapsed();
    tracing::info!(
        %height, accounts = n, chunks = parts.len(), bad_chunks, elapsed_ms = elapsed.as_millis() as u64,
        "state sync: snapshot installed; block sync continues from the next height"
    );
    Ok(Outcome::Installed { height, accounts: n, chunks: parts.len(), bad_chunks, elapsed })
}
