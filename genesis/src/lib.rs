//! Library side of the genesis tool (used by `ledgerd localnet` too).
