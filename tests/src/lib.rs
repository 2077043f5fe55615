//! Test harnesses: the deterministic consensus simulator and multi-process network tests.

pub mod sim;
