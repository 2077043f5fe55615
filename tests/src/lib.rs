//! Test harnesses: the deterministic consensus simulator (`sim`) and real multi-process localnets
//! (`harness`), the load generator the `bench` tool drives against them (`load`), and a Byzantine libp2p
//! peer that floods them (`byzantine`).

pub mod byzantine;
pub mod chaos;
pub mod direct_chain;
pub mod fuzz;
pub mod harness;
pub mod load;
pub mod procfs;
pub mod sim;
pub mod snapshot_liar;
