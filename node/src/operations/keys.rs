//! Key files in the home directory (docs/home-layout.md): the libp2p identity and the validator key.
//!
//! Parsing is shared with the `genesis` crate (p2p key) and `ledger_core::keyfile` (validator key) so that
//! every tool accepts exactly the same files. The node re-derives the peer id with libp2p itself and
//! refuses a file whose stated peer id differs.

use std::io::Write;
use std::path::{Path, PathBuf};

use ledger_core::Keypair;
use ledger_core::keyfile::{self, KEY_FILE_BYTES_MAX};
use libp2p::{PeerId, identity};

/// Why a key file was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: PathBuf, error: std::io::Error },
    #[error("{path} is {len} bytes, limit is {max}")]
    TooLarge { path: PathBuf, len: u64, max: usize },
    #[error("{path} already exists; refusing to overwrite a key")]
    Exists { path: PathBuf },
    #[error("p2p key file {path} is invalid: {error}")]
    P2p { path: PathBuf, error: String },
    #[error("validator key file {path} is invalid: {error}")]
    Validator { path: PathBuf, error: keyfile::KeyFileError },
}

fn read_bounded(path: &Path) -> Result<String, KeyError> {
    let len = std::fs::metadata(path).map_err(|error| KeyError::Read { path: path.to_path_buf(), error })?.len();
    if len > KEY_FILE_BYTES_MAX as u64 {
        return Err(KeyError::TooLarge { path: path.to_path_buf(), len, max: KEY_FILE_BYTES_MAX });
    }
    std::fs::read_to_string(path).map_err(|error| KeyError::Read { path: path.to_path_buf(), error })
}

/// The libp2p identity for a 32-byte ed25519 seed.
pub fn p2p_keypair_from_seed(seed: [u8; 32]) -> Result<identity::Keypair, String> {
    let mut bytes = seed;
    identity::Keypair::ed25519_from_bytes(&mut bytes).map_err(|e| e.to_string())
}

/// Read `p2p_key.json`, checking the stated peer id against the key.
pub fn load_p2p_key(path: &Path) -> Result<identity::Keypair, KeyError> {
    let text = read_bounded(path)?;
    let p2p = |error: String| KeyError::P2p { path: path.to_path_buf(), error };
    let (seed, stated) = genesis::parse_p2p_key_json(&text).map_err(|e| p2p(e.to_string()))?;
    let keypair = p2p_keypair_from_seed(seed).map_err(p2p)?;
    let derived = keypair.public().to_peer_id().to_string();
    if derived != stated {
        return Err(p2p(format!("peer_id {stated} does not match the key's {derived}")));
    }
    Ok(keypair)
}

/// Read the validator key; `Ok(None)` if the file does not exist (a full node).
pub fn load_validator_key(path: &Path) -> Result<Option<Keypair>, KeyError> {
    if !path.exists() {
        return Ok(None);
    }
    let text = read_bounded(path)?;
    keyfile::from_plaintext_json(&text)
        .map(Some)
        .map_err(|error| KeyError::Validator { path: path.to_path_buf(), error })
}

/// Create `path` with `contents`, readable by the owner only, refusing to overwrite.
pub fn write_new_file(path: &Path, contents: &str, secret: bool) -> Result<(), KeyError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if secret { 0o600 } else { 0o644 });
    }
    let mut f = opts.open(path).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            KeyError::Exists { path: path.to_path_buf() }
        } else {
            KeyError::Write { path: path.to_path_buf(), error }
        }
    })?;
    f.write_all(contents.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|error| KeyError::Write { path: path.to_path_buf(), error })
}

/// A fresh random 32-byte seed.
pub fn random_seed() -> [u8; 32] {
    let mut seed = [0u8; 32];
    rand::fill(&mut seed);
    seed
}

/// Peer id for display.
pub fn peer_id(keypair: &identity::Keypair) -> PeerId {
    keypair.public().to_peer_id()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p2p_key_round_trip_and_peer_id_agrees_with_genesis_crate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p_key.json");
        let seed = [7u8; 32];
        write_new_file(&path, &genesis::p2p_key_json(&seed), true).unwrap();
        let kp = load_p2p_key(&path).unwrap();
        assert_eq!(kp.public().to_peer_id().to_string(), genesis::p2p_key::peer_id_from_seed(&seed));
        assert!(matches!(write_new_file(&path, "x", true), Err(KeyError::Exists { .. })));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn tampered_p2p_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p2p_key.json");
        let text = genesis::p2p_key_json(&[7u8; 32]).replace(&hex::encode([7u8; 32]), &hex::encode([8u8; 32]));
        std::fs::write(&path, text).unwrap();
        assert!(matches!(load_p2p_key(&path), Err(KeyError::P2p { .. })));
    }

    #[test]
    fn validator_key_absent_is_full_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator_key.json");
        assert!(load_validator_key(&path).unwrap().is_none());
        let k = Keypair::from_seed(&[3; 32]);
        std::fs::write(&path, keyfile::to_plaintext_json(&k, None)).unwrap();
        assert_eq!(load_validator_key(&path).unwrap().map(|k| k.public()), Some(k.public()));
        std::fs::write(&path, "{}").unwrap();
        assert!(load_validator_key(&path).is_err());
    }
}
