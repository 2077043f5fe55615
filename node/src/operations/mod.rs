//! What an operator runs and configures: the configuration, key files, `ledgerd start` and
//! `ledgerd localnet`.

pub mod config;
pub mod housekeeping;
pub mod keys;
pub mod localnet;
pub mod run;
