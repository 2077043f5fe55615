//! Test harnesses: the deterministic consensus simulator (`sim`) and real multi-process localnets
//! (`harness`).

pub mod chaos;
pub mod harness;
pub mod load;
pub mod sim;
