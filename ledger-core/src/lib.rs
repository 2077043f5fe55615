//! The deterministic heart of the ledger: types, canonical encoding, hashing, signatures, the state
//! transition and (in `consensus`) the BFT state machine.
//!
//! This crate is pure: no I/O, no clock, no randomness, no async runtime. Everything that decides state is
//! a function of its inputs, so every node computes the same bytes. The node crate is the shell that owns
//! the network, the disk, timers and keys.

#![forbid(unsafe_code)]

pub mod base16;
pub mod block;
pub mod cert;
pub mod consensus;
pub mod crypto;
pub mod encoding;
pub mod genesis;
pub mod gossip;
pub mod governance;
pub mod hash;
pub mod keyfile;
pub mod light;
pub mod merkle;
pub mod params;
pub mod shell;
pub mod state;
pub mod statetree;
pub mod time;
pub mod tx;
pub mod types;
pub mod validator;
pub mod vote;
pub mod zip215;

pub use block::{Block, BlockError, BlockHeader, PROTOCOL_VERSION, Parent};
pub use cert::{CertError, CommitCertificate, CommitSig};
pub use crypto::{Address, Keypair, PublicKey, Signature};
pub use genesis::{Genesis, GenesisAccount, GenesisError};
pub use hash::{Domain, Hash};
pub use params::ConsensusParams;
pub use state::{Account, AccountStore, MemStore, StateChanges, StateOverlay};
pub use statetree::{StateProof, StateTree};
pub use tx::{SignedTransaction, Transaction, TxError, TxId};
pub use types::{Height, Round};
pub use validator::{Validator, ValidatorSet};
pub use vote::{Proposal, SignedProposal, SignedVote, Vote, VoteKind};
