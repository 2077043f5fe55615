//! ledgerd as a library, used by the `ledgerd` binary and by tests.
//!
//! # Code map
//! The crate is grouped by part; each module is also re-exported at the root under its short name
//! (`node::driver`, `node::p2p`, ...).
//! - [`chain`]: the running chain.
//!   - [`driver`]: the one task that owns consensus and executes its actions in order.
//!   - [`mempool`]: admission (signature verified once), bounds, fair deterministic candidates, outcomes.
//!   - [`admission`]: the mempool's doors (gossip batches, building and executing blocks with the pool),
//!     shared with the simulator.
//!   - [`keycache`]: decompressed ed25519 keys shared by every thread that checks transactions.
//!   - [`chain::signer_writes`]: one durable signer-state write for the messages one batch of actions signs.
//!   - [`handle`]: the API's [`api::NodeHandle`] over the driver's shared state; local txs gossiped in
//!     batches.
//! - [`network`]: peers.
//!   - [`p2p`]: the libp2p swarm task (gossipsub, identify, Kademlia, block sync) behind bounded channels,
//!     with per-peer budgets, scores and bans.
//!   - [`wire`]: versioned borsh gossip and sync messages with bounded decoding.
//! - [`storage`]: sled, one tree, one atomic flushed batch per block, checksummed values, tail check at start;
//!   [`txindex`]: transaction id to block position as sorted runs.
//! - [`api`]: the HTTP API (axum): JSON routes over storage and a `NodeHandle` to the driver, SSE, metrics.
//! - [`safety`]: files beside the database that guard the validator: the signer state bound to its key,
//!   the high-water mark of what was committed, the data directory's lock; all replaced atomically.
//! - [`operations`]: what an operator runs and configures.
//!   - [`config`]: `config.toml` + `LEDGERD_*` environment + flags, validated with the key and source named.
//!   - [`keys`]: p2p and validator key files (docs/home-layout.md).
//!   - [`run`]: assembles a node from a configuration (`ledgerd start`).
//!   - [`localnet`]: `ledgerd localnet`, every validator of a local network in one process.
//!   - [`doctor`]: `ledgerd doctor`, read-only checks of a home and its running node, one line each.
//!
//! **Architecture Invariant:** only the driver task writes storage and touches consensus state; the swarm
//! task and the API read storage and use the mempool through its mutex.
//!
//! **Architecture Invariant:** a signed consensus message is broadcast only after the signer state that
//! covers it has been written and flushed.

#![forbid(unsafe_code)]

pub mod api;
pub mod chain;
pub mod explorer;
pub mod network;
pub mod operations;
pub mod safety;
pub mod storage;

pub use chain::{admission, driver, handle, keycache, mempool, ops};
pub use network::{p2p, statesync, wire};
pub use operations::{config, doctor, keys, localnet, run};
pub use storage::txindex;
