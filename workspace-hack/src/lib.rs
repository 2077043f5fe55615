//! Empty: this crate exists for its `Cargo.toml`, which gives the dependencies the workspace's packages
//! share one feature set (see there).
