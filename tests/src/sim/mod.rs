//! The deterministic consensus simulator: n validators, each a real [`ledger_core::consensus::Consensus`]
//! core inside a small shell that uses the real state transition, on a simulated network with a virtual
//! clock. Single-threaded, seeded, no wall clock and no hash-map iteration: one seed is one run, and a
//! failing seed replays exactly.
//!
//! A run has two phases. Chaos: lossy, duplicating, reordering links, partitions (symmetric, one-way,
//! flapping) that form and heal, crashes and restarts (process or power loss, also between a persist and
//! the broadcast it guards; some restarts lose or rewind the signer state), and up to f Byzantine
//! validators; only safety is checked. Healed: links
//! clean, crashed nodes back; every honest node must commit each further height within a bound of
//! simulated time, or the run fails with "liveness".
//!
//! The shell runs the double-sign guard at start as the node does (unless `SimConfig::signer_guard` is off):
//! a (re)started validator watches for [`watch_ms`] of connected, caught-up virtual time before it signs
//! (except the very first start of a fresh chain), its look-back floor is the highest height of its chain
//! whose certificate holds its key, and a synced certificate with its key raises it.
//!
//! It is not: a network stack, a mempool or a node. The shell here is the smallest one that follows the
//! action-ordering contract of the core; the node crate has its own.
//!
//! # Parts
//! - `config.rs`: [`SimConfig`] (what a run is) and [`SimConfig::random`] (a run from a seed).
//! - `world.rs`: [`World`]: clock, queue, links, node shells, Byzantine behaviours, faults.
//! - `world/byzantine.rs`: the Byzantine behaviours; `world/gov_shell.rs`: each node's set and key per
//!   height, the operators' approvals, key rotation, coverage of set changes.
//! - `governance.rs`: planned set changes ([`GovAction`]) and the checker's model of the set per height.
//! - `checker.rs`: [`Checker`]: the invariants and [`Violation`].
//! - `disk.rs`: a disk with durable and pending writes.
//! - `rng.rs`: splitmix64.

mod checker;
mod config;
mod disk;
mod governance;
mod rng;
mod world;

pub use checker::{Checker, Violation};
pub use config::{
    Behaviour, CoreHook, CrashKind, Fault, FlushPolicy, LinkProfile, SIGNER_HISTORY_MAX, SIGNER_LOSS_PER_MILLE,
    SetHook, SignerLoss, SimConfig, watch_ms,
};
pub use governance::{Activation, CHANGE_EXPIRY_HEIGHTS, ChangeKind, GovAction, SetModel, node_key};
pub use rng::Rng;
pub use world::{Msg, Report, World, run};
