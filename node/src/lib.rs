//! ledgerd as a library: configuration, keys, storage, mempool and networking, used by the `ledgerd`
//! binary and by integration tests.

#![forbid(unsafe_code)]

pub mod api;
pub mod mempool;
pub mod p2p;
pub mod storage;
pub mod wire;
