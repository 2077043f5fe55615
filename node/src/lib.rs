//! ledgerd as a library: configuration, keys, storage, mempool, networking and the consensus driver, used
//! by the `ledgerd` binary and by tests.

#![forbid(unsafe_code)]

pub mod config;
pub mod driver;
pub mod keys;
pub mod mempool;
pub mod p2p;
pub mod run;
pub mod storage;
pub mod wire;
