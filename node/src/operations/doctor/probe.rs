//! The doctor's peer probe: dial each bootstrap peer from a short-lived libp2p instance of its own and
//! record what the connection tells, for [`super::judge_peers`] and the sync check to judge.
//!
//! The instance has a fresh identity (never the node's p2p key: the running node may be connected to the
//! same peers under its own id) and only two behaviours, identify and the block-sync protocol, so it
//! serves nothing and subscribes to nothing. Per peer it learns, in order:
//! - TCP: a plain connect with the deadline, for a clear "connection refused" before any libp2p detail;
//! - the peer id: the noise handshake proves it, and a peer that answers with another id is named;
//! - the chain: identify's protocol version is `/ledger/<chain_id>/1.0.0` on every ledgerd node, and every
//!   protocol and topic name is scoped to the chain id the same way (that scoping is the whole chain check
//!   the p2p layer makes at connection time: two chains never share a protocol);
//! - the genesis hash: block 1's `prev_block_hash` is the genesis hash, asked with one sync request
//!   (a peer at height 0, or state-synced above block 1, has none to give);
//! - optionally whether the peer holds the block at a given height (one more request): how the sync check
//!   learns that this node is behind.
//!
//! What peers answer is reported, not verified (no certificate is checked): it is a diagnosis, and a peer
//! that lies about its genesis only makes the doctor report it as a wrong peer.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use ledger_core::{Hash, Height};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundFailure, OutboundRequestId, ProtocolSupport};
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, identify, identity, noise, tcp, yamux};
use tokio::time::Instant;

use crate::p2p::FramedCodec;
use crate::wire::{self, SYNC_REQUEST_BYTES_MAX, SyncRequest, SyncResponse};

/// What to probe.
#[derive(Clone, Debug)]
pub struct ProbeRequest {
    pub chain_id: String,
    /// The chain's `block_bytes_max` (bounds the sync answers read).
    pub block_bytes_max: usize,
    pub peers: Vec<Multiaddr>,
    /// Also ask each peer for the block at this height.
    pub lag_probe: Option<Height>,
    /// For everything, all peers together.
    pub timeout: Duration,
}

/// What one peer told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerReport {
    pub addr: String,
    /// Why it could not be reached (TCP, handshake, peer id, deadline); `None` once connected.
    pub unreachable: Option<String>,
    /// identify's protocol version; `None` when it sent none in time.
    pub protocol_version: Option<String>,
    /// Block 1's `prev_block_hash` (the genesis hash): `Some(None)` when the peer has no block 1.
    pub genesis_hash: Option<Option<Hash>>,
    /// Why the block-1 request failed.
    pub genesis_error: Option<String>,
    /// Whether it holds the block at the lag-probe height.
    pub has_lag_block: Option<bool>,
    pub lag_error: Option<String>,
}

impl PeerReport {
    /// The chain id in a ledgerd protocol version (`/ledger/<chain_id>/1.0.0`), or `None` for another one.
    pub fn chain_id(&self) -> Option<&str> {
        self.protocol_version.as_deref()?.strip_prefix("/ledger/")?.strip_suffix("/1.0.0")
    }
}

#[derive(NetworkBehaviour)]
struct Probe {
    identify: identify::Behaviour,
    sync: request_response::Behaviour<FramedCodec<SyncRequest, SyncResponse>>,
}

/// Which question a request asked.
#[derive(Clone, Copy)]
enum Asked {
    Genesis,
    Lag,
}

/// Probe every peer; one report per peer, in order. Runs its own single-threaded runtime.
pub fn probe(req: &ProbeRequest) -> Vec<PeerReport> {
    let mut reports: Vec<PeerReport> =
        req.peers.iter().map(|a| PeerReport { addr: a.to_string(), ..Default::default() }).collect();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            for r in &mut reports {
                r.unreachable = Some(format!("cannot start the probe's runtime: {e}"));
            }
            return reports;
        }
    };
    runtime.block_on(probe_all(req, &mut reports));
    reports
}

async fn probe_all(req: &ProbeRequest, reports: &mut [PeerReport]) {
    let deadline = Instant::now() + req.timeout;
    let tcp = futures::future::join_all(req.peers.iter().map(|a| tcp_connect(a, deadline))).await;
    for (r, t) in reports.iter_mut().zip(tcp) {
        if let Err(e) = t {
            r.unreachable = Some(e);
        }
    }
    if reports.iter().all(|r| r.unreachable.is_some()) {
        return;
    }
    let mut swarm = match build_swarm(req) {
        Ok(s) => s,
        Err(e) => {
            for r in reports.iter_mut().filter(|r| r.unreachable.is_none()) {
                r.unreachable = Some(format!("cannot start the probe's network: {e}"));
            }
            return;
        }
    };
    // Peer id -> report index; the config requires /p2p/<id> on every bootstrap address.
    let mut index: HashMap<PeerId, usize> = HashMap::new();
    for (i, addr) in req.peers.iter().enumerate() {
        if reports[i].unreachable.is_some() {
            continue;
        }
        let Some(peer) = addr.iter().find_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None }) else {
            reports[i].unreachable = Some("the address has no /p2p/<peer id>".into());
            continue;
        };
        if let Err(e) = swarm.dial(addr.clone()) {
            reports[i].unreachable = Some(describe_dial_error(&e));
            continue;
        }
        index.insert(peer, i);
    }
    let mut connected = vec![false; reports.len()];
    let mut identified = vec![false; reports.len()];
    let mut asked: HashMap<OutboundRequestId, (usize, Asked)> = HashMap::new();
    // Done with a peer: unreachable, or identified with every request answered (or failed).
    let done = |reports: &[PeerReport], identified: &[bool], asked: &HashMap<OutboundRequestId, (usize, Asked)>| {
        index.values().all(|&i| {
            let r = &reports[i];
            let answered = r.genesis_hash.is_some() || r.genesis_error.is_some();
            r.unreachable.is_some() || (identified[i] && answered && !asked.values().any(|(j, _)| *j == i))
        })
    };
    while !done(reports, &identified, &asked) {
        let Ok(Some(event)) = tokio::time::timeout_at(deadline, swarm.next()).await else { break };
        match event {
            SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                let Some(&i) = index.get(&peer_id) else { continue };
                if std::mem::replace(&mut connected[i], true) {
                    continue;
                }
                let sync = &mut swarm.behaviour_mut().sync;
                let id = sync.send_request(&peer_id, SyncRequest { from_height: Height(1), max_count: 1 });
                asked.insert(id, (i, Asked::Genesis));
                if let Some(h) = req.lag_probe {
                    let id = sync.send_request(&peer_id, SyncRequest { from_height: h, max_count: 1 });
                    asked.insert(id, (i, Asked::Lag));
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id: Some(peer), error, .. } => {
                if let Some(&i) = index.get(&peer)
                    && !connected[i]
                {
                    reports[i].unreachable = Some(describe_dial_error(&error));
                }
            }
            SwarmEvent::Behaviour(ProbeEvent::Identify(identify::Event::Received { peer_id, info, .. })) => {
                if let Some(&i) = index.get(&peer_id) {
                    reports[i].protocol_version = Some(info.protocol_version.chars().take(200).collect());
                    identified[i] = true;
                }
            }
            SwarmEvent::Behaviour(ProbeEvent::Identify(identify::Event::Error { peer_id, .. })) => {
                if let Some(&i) = index.get(&peer_id) {
                    identified[i] = true;
                }
            }
            SwarmEvent::Behaviour(ProbeEvent::Sync(request_response::Event::Message {
                message: request_response::Message::Response { request_id, response },
                ..
            })) => {
                if let Some((i, what)) = asked.remove(&request_id) {
                    let first = response.blocks.first().map(|(b, _)| b);
                    match what {
                        Asked::Genesis => {
                            reports[i].genesis_hash =
                                Some(first.filter(|b| b.height() == Height(1)).map(|b| b.header.prev_block_hash))
                        }
                        Asked::Lag => reports[i].has_lag_block = Some(first.is_some()),
                    }
                }
            }
            SwarmEvent::Behaviour(ProbeEvent::Sync(request_response::Event::OutboundFailure {
                request_id,
                error,
                ..
            })) => {
                if let Some((i, what)) = asked.remove(&request_id) {
                    let why = match error {
                        OutboundFailure::UnsupportedProtocols => {
                            format!("it does not serve chain {}'s block sync", req.chain_id)
                        }
                        e => e.to_string(),
                    };
                    match what {
                        Asked::Genesis => reports[i].genesis_error = Some(why),
                        Asked::Lag => reports[i].lag_error = Some(why),
                    }
                }
            }
            _ => {}
        }
    }
    let ms = req.timeout.as_millis();
    for &i in index.values() {
        let r = &mut reports[i];
        if r.unreachable.is_none() && !connected[i] {
            r.unreachable = Some(format!(
                "TCP connects, but no libp2p handshake within {ms} ms (is this a ledgerd node's p2p port?)"
            ));
        }
        if connected[i] && r.genesis_hash.is_none() && r.genesis_error.is_none() {
            r.genesis_error = Some(format!("no answer within {ms} ms"));
        }
        if connected[i] && req.lag_probe.is_some() && r.has_lag_block.is_none() && r.lag_error.is_none() {
            r.lag_error = Some(format!("no answer within {ms} ms"));
        }
    }
}

fn build_swarm(req: &ProbeRequest) -> Result<libp2p::Swarm<Probe>, String> {
    let keypair = identity::Keypair::generate_ed25519();
    let protocol =
        StreamProtocol::try_from_owned(format!("/ledger/{}/sync/1", req.chain_id)).map_err(|e| e.to_string())?;
    let identify =
        identify::Behaviour::new(identify::Config::new(format!("/ledger/{}/1.0.0", req.chain_id), keypair.public()));
    let sync = request_response::Behaviour::with_codec(
        FramedCodec::new(SYNC_REQUEST_BYTES_MAX, wire::sync_response_bytes_max(req.block_bytes_max)),
        [(protocol, ProtocolSupport::Outbound)],
        request_response::Config::default().with_request_timeout(req.timeout),
    );
    let behaviour = Probe { identify, sync };
    Ok(libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .map_err(|e| e.to_string())?
        .with_behaviour(|_| behaviour)
        .map_err(|e| e.to_string())?
        .with_swarm_config(|c| c.with_idle_connection_timeout(req.timeout))
        .build())
}

/// A dial failure in a line: the wrong peer id named, transport errors without libp2p's nesting.
fn describe_dial_error(e: &DialError) -> String {
    match e {
        DialError::WrongPeerId { obtained, .. } => {
            format!("it answers as peer {obtained}, not the /p2p/ id of the address (fix the address)")
        }
        DialError::Transport(errors) => {
            let why: Vec<String> = errors.iter().map(|(_, e)| e.to_string()).collect();
            format!("handshake failed: {}", why.join("; "))
        }
        e => format!("dial failed: {e}"),
    }
}

/// A TCP connection to the address's host and port before the deadline (then closed).
async fn tcp_connect(addr: &Multiaddr, deadline: Instant) -> Result<(), String> {
    let mut host = None;
    let mut port = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) => host = Some(ip.to_string()),
            Protocol::Ip6(ip) => host = Some(ip.to_string()),
            Protocol::Dns(h) | Protocol::Dns4(h) | Protocol::Dns6(h) => host = Some(h.to_string()),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    let (Some(host), Some(port)) = (host, port) else {
        return Err("the address names no host and TCP port".into());
    };
    match tokio::time::timeout_at(deadline, tokio::net::TcpStream::connect((host.as_str(), port))).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("TCP connect to {host}:{port}: {e}")),
        Err(_) => Err(format!("TCP connect to {host}:{port}: no answer in time")),
    }
}
