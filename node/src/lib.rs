//! ledgerd as a library, used by the `ledgerd` binary and by tests.
//!
//! # Code map
//! - [`config`]: `config.toml` + `LEDGERD_*` environment + flags, validated with the key and source named.
//! - [`keycache`]: decompressed ed25519 keys shared by every thread that checks transactions.
//! - [`keys`]: p2p and validator key files (docs/home-layout.md).
//! - [`storage`]: sled, one tree, one atomic flushed batch per block, checksummed values, tail check at start.
//! - [`mempool`]: admission (signature verified once), bounds, fair deterministic candidates, outcomes.
//! - [`wire`]: versioned borsh gossip and sync messages with bounded decoding.
//! - [`p2p`]: the libp2p swarm task (gossipsub, identify, Kademlia, block sync) behind bounded channels.
//! - [`driver`]: the one task that owns consensus and executes its actions in order.
//! - [`handle`]: the API's [`api::NodeHandle`] over the driver's shared state; local txs gossiped in batches.
//! - [`api`]: the HTTP API (axum): JSON routes over storage and a `NodeHandle` to the driver, SSE, metrics.
//! - [`safety`]: files beside the database that guard the validator: the signer state bound to its key,
//!   the high-water mark of what was committed, the data directory's lock; all replaced atomically.
//! - [`run`]: assembles a node from a configuration (`ledgerd start`).
//! - [`localnet`]: `ledgerd localnet`, every validator of a local network in one process.
//!
//! **Architecture Invariant:** only the driver task writes storage and touches consensus state; the swarm
//! task and the API read storage and use the mempool through its mutex.
//!
//! **Architecture Invariant:** a signed consensus message is broadcast only after the signer state that
//! covers it has been written and flushed.

#![forbid(unsafe_code)]

pub mod admission;
pub mod api;
pub mod config;
pub mod driver;
pub mod handle;
pub mod keycache;
pub mod keys;
pub mod localnet;
pub mod mempool;
pub mod p2p;
pub mod run;
pub mod safety;
pub mod storage;
pub mod txindex;
pub mod wire;
