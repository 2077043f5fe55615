//! What an operator runs and configures: the configuration, key files, `ledgerd start`, `ledgerd
//! localnet` and `ledgerd doctor`.

pub mod config;
pub mod doctor;
pub mod housekeeping;
pub mod keys;
pub mod localnet;
pub mod run;
