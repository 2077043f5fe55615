//! The wallet's library half: the pieces of the `wallet` binary that are worth testing on their own.
//!
//! - [`verify`]: pure, trust-minimised check that a transaction is committed (canonical bytes in, a
//!   report of every check out), following the validator set's certified changes from the genesis set;
//! - [`balance`]: the same for an account's balance and nonce (or its absence), from a state proof
//!   against a certified header;
//! - [`trusted`]: the trusted-state file where `verify` keeps the last validator set it reached;
//! - [`keystore`]: the encrypted keystore format (Argon2id + XChaCha20-Poly1305) and reading any key file;
//! - [`client`]: the blocking HTTP client for the node's API (`docs/api.md`);
//! - [`files`]: bounded file reads, key loading with password sources, private file creation;
//! - [`error`]: the error type and the stable exit codes.
//!
//! What it is not: no key ever leaves this process except encrypted (or, on explicit request, in a
//! plaintext key file); nothing here prints secrets or derives `Debug` on them.

#![forbid(unsafe_code)]

pub mod balance;
pub mod client;
pub mod error;
pub mod files;
pub mod governance;
pub mod keystore;
pub mod trusted;
pub mod verify;

pub use error::{ErrorKind, WalletError};
