//! Peers: the libp2p swarm task with its peer guard, and the messages on the wire.

pub mod p2p;
pub mod statesync;
pub mod wire;
