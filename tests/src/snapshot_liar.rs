//! A peer that lies to state-syncing nodes: it fetches a real validator's newest snapshot (metadata and
//! every chunk, over the node's own snapshot protocol) and serves it on, with every chunk altered (one
//! balance raised by one). The metadata it serves is the honest one, so a syncing node verifies it and
//! then meets the lie at the first chunk it asks this peer for.
//!
//! Built on the node's networking code (`node::p2p`) with a [`BlockProvider`] of its own; runs on a thread
//! with a current-thread runtime until stopped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ledger_core::light::SnapshotMeta;
use ledger_core::{Account, Address, Block, CommitCertificate, Height};
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, identity};
use node::p2p::{self, BlockProvider, GossipValidator, NetworkConfig, NetworkEvent, Validation};
use node::wire::{GossipMessage, SnapshotRequest, SnapshotResponse};

use crate::byzantine::{ChainInfo, Target, loopback};

/// A chunk: the position it was asked for (depth, prefix) and its accounts.
type Chunk = ((u16, ledger_core::Hash), Vec<(Address, Account)>);

/// The newest snapshot fetched from the honest node, its chunks by position.
struct Held {
    height: Height,
    meta: SnapshotMeta,
    chunks: Vec<Chunk>,
}

/// What the liar serves, and counts.
#[derive(Default)]
struct Liar {
    held: Mutex<Option<Held>>,
    chunks_served: AtomicU64,
    metas_served: AtomicU64,
}

impl BlockProvider for Liar {
    fn blocks_from(&self, _: Height, _: usize, _: usize) -> Vec<(Block, CommitCertificate)> {
        Vec::new()
    }

    fn snapshot(&self, request: &SnapshotRequest) -> SnapshotResponse {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let Some(h) = held.as_ref() else { return SnapshotResponse::Unavailable };
        match *request {
            SnapshotRequest::Offers => SnapshotResponse::Offers(vec![h.height]),
            SnapshotRequest::Meta { height } if height == h.height => {
                self.metas_served.fetch_add(1, Ordering::Relaxed);
                SnapshotResponse::Meta(Box::new(h.meta.clone()))
            }
            SnapshotRequest::Chunk { height, depth, position } if height == h.height => {
                match h.chunks.iter().find(|(at, _)| *at == (depth, position)).map(|(_, c)| c) {
                    Some(chunk) => {
                        let mut bad = chunk.clone();
                        if let Some((_, account)) = bad.first_mut() {
                            account.balance = account.balance.wrapping_add(1);
                        }
                        self.chunks_served.fetch_add(1, Ordering::Relaxed);
                        SnapshotResponse::Chunk(bad)
                    }
                    None => SnapshotResponse::Unavailable,
                }
            }
            _ => SnapshotResponse::Unavailable,
        }
    }
}

struct NoGossip;

impl GossipValidator for NoGossip {
    fn validate(&self, _: &PeerId, _: &GossipMessage) -> Validation {
        Validation::Ignore("snapshot liar".into())
    }
}

/// A running liar.
pub struct SnapshotLiar {
    /// Its address, `/ip4/127.0.0.1/tcp/…/p2p/<peer id>`, for a syncing node's bootstrap peers.
    pub addr: Multiaddr,
    pub peer_id: PeerId,
    liar: Arc<Liar>,
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<Result<()>>>,
}

impl SnapshotLiar {
    /// The height of the snapshot it holds (none until it fetched one).
    pub fn height(&self) -> Option<Height> {
        self.liar.held.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.height)
    }

    /// Altered chunks it has served.
    pub fn chunks_served(&self) -> u64 {
        self.liar.chunks_served.load(Ordering::Relaxed)
    }

    pub fn metas_served(&self) -> u64 {
        self.liar.metas_served.load(Ordering::Relaxed)
    }

    /// Stop it and report how its thread ended.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take() {
            Some(j) => j.join().map_err(|_| anyhow!("snapshot liar thread panicked"))?,
            None => Ok(()),
        }
    }
}

/// Start a liar that follows `honest`'s newest snapshot (re-fetched whenever a newer one is offered).
pub fn spawn_snapshot_liar(chain: &ChainInfo, honest: Target) -> Result<SnapshotLiar> {
    let keypair = identity::Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let liar = Arc::new(Liar::default());
    let stop = Arc::new(AtomicBool::new(false));
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (chain_id, block_bytes_max) = (chain.chain_id.clone(), chain.block_bytes_max);
    let (l, s) = (liar.clone(), stop.clone());
    let join = std::thread::Builder::new().name("snapshot-liar".into()).spawn(move || -> Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("liar runtime")?;
        rt.block_on(async move {
            let mut cfg = NetworkConfig::new(&chain_id, keypair, loopback(), block_bytes_max);
            cfg.bootstrap_peers = vec![honest.addr.clone()];
            let (handle, mut events, task) =
                p2p::spawn(cfg, Arc::new(NoGossip), l.clone()).map_err(|e| anyhow!("liar swarm: {e}"))?;
            let mut sent_addr = false;
            let mut next_fetch = tokio::time::Instant::now();
            while !s.load(Ordering::Relaxed) {
                tokio::select! {
                    ev = events.recv() => match ev {
                        Some(NetworkEvent::Listening(a)) if !sent_addr => {
                            sent_addr = true;
                            let _ = addr_tx.send(a);
                        }
                        Some(_) => {}
                        None => break,
                    },
                    _ = tokio::time::sleep_until(next_fetch) => {
                        next_fetch = tokio::time::Instant::now() + Duration::from_millis(200);
                        if let Err(e) = refresh(&handle, honest.peer_id, &l).await {
                            tracing::debug!(error = %e, "liar: fetching the honest snapshot failed");
                        }
                    }
                }
            }
            handle.shutdown().await;
            let _ = task.await;
            Ok(())
        })
    })?;
    let listen = addr_rx.recv_timeout(Duration::from_secs(30)).context("the liar did not start listening")?;
    Ok(SnapshotLiar { addr: listen.with(Protocol::P2p(peer_id)), peer_id, liar, stop, join: Some(join) })
}

/// Fetch the honest node's newest snapshot if it is newer than the one held.
async fn refresh(handle: &node::p2p::NetworkHandle, honest: PeerId, liar: &Liar) -> Result<()> {
    let SnapshotResponse::Offers(heights) = handle.request_snapshot(honest, SnapshotRequest::Offers).await? else {
        return Ok(());
    };
    let Some(&height) = heights.iter().max() else { return Ok(()) };
    let held = liar.held.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|h| h.height);
    if held.is_some_and(|h| h >= height) {
        return Ok(());
    }
    let SnapshotResponse::Meta(meta) = handle.request_snapshot(honest, SnapshotRequest::Meta { height }).await? else {
        return Ok(());
    };
    let mut chunks = Vec::new();
    for part in &meta.manifest.parts {
        let request = SnapshotRequest::Chunk { height, depth: part.depth, position: part.position };
        match handle.request_snapshot(honest, request).await? {
            SnapshotResponse::Chunk(c) => chunks.push(((part.depth, part.position), c)),
            _ => return Ok(()),
        }
    }
    *liar.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(Held { height, meta: *meta, chunks });
    Ok(())
}
