//! Test harnesses: the deterministic consensus simulator (`sim`) and real multi-process localnets
//! (`harness`), and the load generator the `bench` tool drives against them (`load`).

pub mod chaos;
pub mod harness;
pub mod load;
pub mod sim;
