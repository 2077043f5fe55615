//! The trusted-state file of `wallet verify`: the last validator set it reached by following certified
//! set transitions from a genesis file, so that the next run starts from there instead of from genesis.
//!
//! What it holds (JSON, one object): the format name, the chain id and genesis hash it belongs to, the first
//! height the set certifies, the set's hash and its canonical bytes (hex). What it is not: a cache of the
//! node's answers. Only a set the wallet verified itself is written ([`crate::verify::Walk`]), and reading
//! it checks everything again: chain id and genesis hash against the genesis file given (another chain's
//! file is [`TrustedStateError::ForeignChain`], never used), the set's canonical decoding and its hash.
//! A damaged file is an error that says what to do (delete it: the next run starts from the genesis file),
//! never a panic and never silently ignored.
//!
//! Written atomically (temporary file in the same directory, fsync, rename, fsync of the directory), so a
//! crash leaves the old file or the new one. Parsing and rendering are pure ([`TrustedState::parse`],
//! [`TrustedState::render`]); [`load`] and [`save`] do the I/O.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ledger_core::{Hash, Height, ValidatorSet, encoding};
use serde::{Deserialize, Serialize};

use crate::verify::{TrustSource, TrustedSet, VALIDATOR_SET_BYTES_MAX};

/// The `format` field: names the layout, so another file given by mistake is recognised as such.
pub const FORMAT: &str = "ledger-wallet trusted validator set v1";
/// Largest trusted-state file read: the largest set in hex plus the other fields.
pub const TRUSTED_STATE_BYTES_MAX: usize = 2 * VALIDATOR_SET_BYTES_MAX + 4096;
/// Directory under the state directory (`$XDG_STATE_HOME`, else `~/.local/state`) holding the default files.
pub const STATE_DIR_NAME: &str = "ledger-wallet";

/// The verified state of one chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedState {
    pub chain_id: String,
    pub genesis_hash: Hash,
    /// The set, and the first height it certifies.
    pub trusted: TrustedSet,
}

/// Why a trusted-state file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustedStateError {
    #[error("cannot read the trusted-state file {path}: {error}")]
    Read { path: PathBuf, error: String },
    #[error("cannot write the trusted-state file {path}: {error}")]
    Write { path: PathBuf, error: String },
    #[error(
        "the trusted-state file {path} is damaged ({reason}); delete it, and the next verify starts from the genesis file"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "the trusted-state file {path} belongs to chain {file_chain:?} with genesis {file_genesis}, not to chain {chain:?} with genesis {genesis}: point --trusted-state at this chain's file, or at a new path"
    )]
    ForeignChain { path: PathBuf, file_chain: String, file_genesis: String, chain: String, genesis: String },
}

/// The file's JSON layout.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    format: String,
    chain_id: String,
    genesis_hash: String,
    /// The first height the set certifies.
    first_height: u64,
    validators_hash: String,
    validators_hex: String,
}

impl TrustedState {
    /// Parse `text` (the contents of `path`) for the chain of `chain_id` and `genesis_hash`.
    pub fn parse(
        text: &str,
        path: &Path,
        chain_id: &str,
        genesis_hash: &Hash,
    ) -> Result<TrustedState, TrustedStateError> {
        let corrupt = |reason: String| TrustedStateError::Corrupt { path: path.to_path_buf(), reason };
        if text.len() > TRUSTED_STATE_BYTES_MAX {
            return Err(corrupt(format!("{} bytes, more than the limit of {TRUSTED_STATE_BYTES_MAX}", text.len())));
        }
        let doc: FileDoc =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not a trusted-state document: {e}")))?;
        if doc.format != FORMAT {
            return Err(corrupt(format!(
                "format {:?}, expected {FORMAT:?}",
                doc.format.chars().take(64).collect::<String>()
            )));
        }
        if doc.chain_id != chain_id || doc.genesis_hash != genesis_hash.to_hex() {
            return Err(TrustedStateError::ForeignChain {
                path: path.to_path_buf(),
                file_chain: doc.chain_id.chars().take(64).collect(),
                file_genesis: doc.genesis_hash.chars().take(64).collect(),
                chain: chain_id.to_string(),
                genesis: genesis_hash.to_hex(),
            });
        }
        if doc.first_height < 1 {
            return Err(corrupt("first_height is 0".into()));
        }
        if doc.validators_hex.len() > 2 * VALIDATOR_SET_BYTES_MAX {
            return Err(corrupt("validators_hex is longer than any validator set".into()));
        }
        let bytes = hex::decode(&doc.validators_hex).map_err(|_| corrupt("validators_hex is not hex".into()))?;
        let set: ValidatorSet = encoding::decode(&bytes, VALIDATOR_SET_BYTES_MAX)
            .map_err(|e| corrupt(format!("validators_hex is not a canonical validator set: {e}")))?;
        if set.hash().to_hex() != doc.validators_hash {
            return Err(corrupt(format!(
                "the set's bytes hash to {}, the file says {}",
                set.hash(),
                doc.validators_hash.chars().take(64).collect::<String>()
            )));
        }
        Ok(TrustedState {
            chain_id: doc.chain_id,
            genesis_hash: *genesis_hash,
            trusted: TrustedSet { first_height: Height(doc.first_height), set, source: TrustSource::TrustedState },
        })
    }

    /// The file's contents.
    pub fn render(&self) -> String {
        let doc = FileDoc {
            format: FORMAT.to_string(),
            chain_id: self.chain_id.clone(),
            genesis_hash: self.genesis_hash.to_hex(),
            first_height: self.trusted.first_height.0,
            validators_hash: self.trusted.set.hash().to_hex(),
            validators_hex: hex::encode(encoding::encode(&self.trusted.set)),
        };
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The default file of a chain: `$XDG_STATE_HOME/ledger-wallet/trusted-<chain id>-<first 16 hex digits of
/// the genesis hash>.json`, else under `$HOME/.local/state`; `None` when neither variable is set. One file
/// per genesis, so two chains never share one.
pub fn default_path(chain_id: &str, genesis_hash: &Hash) -> Option<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let base = non_empty("XDG_STATE_HOME").or_else(|| non_empty("HOME").map(|h| h.join(".local").join("state")))?;
    let genesis = genesis_hash.to_hex();
    Some(base.join(STATE_DIR_NAME).join(format!("trusted-{chain_id}-{}.json", &genesis[..16])))
}

/// Read the file at `path`: `None` if it does not exist.
pub fn load(path: &Path, chain_id: &str, genesis_hash: &Hash) -> Result<Option<TrustedState>, TrustedStateError> {
    let bytes = match crate::files::read_bounded(path, TRUSTED_STATE_BYTES_MAX) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(TrustedStateError::Read { path: path.to_path_buf(), error: e.to_string() }),
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| TrustedStateError::Corrupt { path: path.to_path_buf(), reason: "not UTF-8 text".into() })?;
    TrustedState::parse(text, path, chain_id, genesis_hash).map(Some)
}

/// Replace the file at `path` with `state`, atomically; creates the directory if it is missing.
pub fn save(path: &Path, state: &TrustedState) -> Result<(), TrustedStateError> {
    let err = |e: io::Error| TrustedStateError::Write { path: path.to_path_buf(), error: e.to_string() };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&dir).map_err(err)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(state.render().as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is.
        File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map_err(err)
}
