//! The running chain: the driver that owns consensus, the mempool and its doors, the key cache that
//! transaction checks share, and the API's handle on it all.

pub mod admission;
pub mod driver;
pub mod handle;
pub mod keycache;
pub mod mempool;
pub mod ops;
pub mod signer_writes;
