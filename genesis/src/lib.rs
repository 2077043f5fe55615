//! Library side of the `genesis` tool: build and check genesis files, and lay out a local network.
//!
//! The `genesis` binary is a thin clap shell over this crate, and `ledgerd localnet` calls
//! [`create_localnet`] directly, so both write exactly the files described in `docs/home-layout.md`.
//!
//! Two kinds of genesis file are handled:
//! - a **draft** ([`draft`]): a genesis document that may still have no validators. `genesis new` writes one,
//!   `add-validator` and `add-account` edit it, and every edit re-checks everything except "at least one
//!   validator", so a draft is never left in a state that a later edit could not fix;
//! - a **final** genesis: a draft that passes [`ledger_core::Genesis::validate`] (checked by
//!   [`draft::read_final`] and `genesis validate`), which is what nodes load.
//!
//! This crate does file I/O; it holds no consensus rules of its own. Every rule about what a genesis may
//! contain is `ledger_core`'s, so the tool and the node can never disagree about a file.

#![forbid(unsafe_code)]

pub mod draft;
mod files;
pub mod localnet;
pub mod p2p_key;

use std::path::PathBuf;

use ledger_core::crypto::AddressError;
use ledger_core::genesis::GenesisError;
use ledger_core::keyfile::KeyFileError;
use ledger_core::{Address, PublicKey};

pub use draft::{add_account, add_validator, check_draft, new_draft, read_draft, read_final, write_genesis};
pub use localnet::{
    LOCALNET_ACCOUNTS_MAX, LocalnetManifest, LocalnetOptions, ManifestAccount, ManifestNode, create_localnet,
    read_manifest,
};
pub use p2p_key::{P2pKeyError, p2p_key_json, parse_p2p_key_json, peer_id_from_public_key};

/// Everything that can go wrong in this crate. Messages are one line, lowercase, and name the file or the
/// value at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{} is larger than {max} bytes", path.display())]
    FileTooLarge { path: PathBuf, max: usize },
    #[error("{}: {source}", path.display())]
    InvalidGenesis { path: PathBuf, source: GenesisError },
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error("address {input:?} is invalid: {source}")]
    BadAddress { input: String, source: AddressError },
    #[error("{}: {source}", path.display())]
    BadKeyFile { path: PathBuf, source: KeyFileError },
    #[error("validator {key} is already in the genesis")]
    DuplicateValidator { key: PublicKey },
    #[error("voting power must be at least 1 (validator {key} has zero voting power)")]
    ZeroPower { key: PublicKey },
    #[error("account {address} is already in the genesis")]
    DuplicateAccount { address: Address },
    #[error("total supply overflows u64: current supply {supply} plus {amount} is more than {}", u64::MAX)]
    SupplyOverflow { supply: u128, amount: u64 },
    #[error("{} already holds a non-empty genesis.json; pass --force to reset the localnet", dir.display())]
    AlreadyExists { dir: PathBuf },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{}: localnet manifest is invalid: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
}

/// Shorten user input before echoing it in an error, so a pasted file does not flood the terminal.
pub(crate) fn clip(input: &str) -> String {
    const ECHO_CHARS_MAX: usize = 80;
    let mut out: String = input.chars().take(ECHO_CHARS_MAX).collect();
    if input.chars().count() > ECHO_CHARS_MAX {
        out.push('…');
    }
    out
}

/// Parse a checksummed `ldg…` address with an error that quotes the input.
pub fn parse_address(input: &str) -> Result<Address, Error> {
    PublicKey::parse_address(input).map_err(|source| Error::BadAddress { input: clip(input), source })
}

/// Read a plaintext key file (`ledger_core::keyfile`), bounded to `KEY_FILE_BYTES_MAX`.
pub fn read_plaintext_key(path: &std::path::Path) -> Result<ledger_core::Keypair, Error> {
    let text = files::read_text(path, ledger_core::keyfile::KEY_FILE_BYTES_MAX)?;
    ledger_core::keyfile::from_plaintext_json(&text)
        .map_err(|source| Error::BadKeyFile { path: path.to_path_buf(), source })
}
