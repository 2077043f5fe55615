//! The plaintext key file: one JSON document holding an ed25519 secret seed and its address.
//!
//! Written by `genesis localnet` for dev accounts and validator keys (and by `wallet keygen
//! --insecure-plaintext`), read by the node and the wallet. Parsing is here so every tool accepts exactly
//! the same files; reading and writing the file (and its permissions) is the caller's job. Encrypted
//! keystores are the wallet's own format.

use serde::{Deserialize, Serialize};

use crate::crypto::{Address, Keypair};

/// The `kind` of a plaintext key file.
pub const PLAINTEXT_KIND: &str = "ed25519-plaintext";
/// Largest key file accepted, in bytes.
pub const KEY_FILE_BYTES_MAX: usize = 64 * 1024;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaintextKeyFile {
    version: u32,
    kind: String,
    address: Address,
    secret_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    warning: Option<String>,
}

/// Why a key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("key file is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("key file kind {0:?} is not {PLAINTEXT_KIND:?}")]
    WrongKind(String),
    #[error("key file version {0} is not supported")]
    WrongVersion(u32),
    #[error("secret_key must be 64 hex characters")]
    BadSecret,
    #[error("secret key belongs to {derived}, but the file says {stated}")]
    AddressMismatch { stated: Address, derived: Address },
}

/// Render a plaintext key file. `warning` is shown to anyone who opens it (dev keys say they are unsafe).
pub fn to_plaintext_json(key: &Keypair, warning: Option<&str>) -> String {
    let file = PlaintextKeyFile {
        version: 1,
        kind: PLAINTEXT_KIND.to_string(),
        address: key.public(),
        secret_key: hex::encode(key.seed()),
        warning: warning.map(str::to_string),
    };
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// Parse a plaintext key file, checking the secret matches the stated address.
pub fn from_plaintext_json(text: &str) -> Result<Keypair, KeyFileError> {
    if text.len() > KEY_FILE_BYTES_MAX {
        return Err(KeyFileError::TooLarge { len: text.len(), max: KEY_FILE_BYTES_MAX });
    }
    let file: PlaintextKeyFile = serde_json::from_str(text).map_err(|e| KeyFileError::Json(e.to_string()))?;
    if file.kind != PLAINTEXT_KIND {
        return Err(KeyFileError::WrongKind(file.kind.chars().take(40).collect()));
    }
    if file.version != 1 {
        return Err(KeyFileError::WrongVersion(file.version));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(file.secret_key.as_bytes(), &mut seed).map_err(|_| KeyFileError::BadSecret)?;
    let key = Keypair::from_seed(&seed);
    if key.public() != file.address {
        return Err(KeyFileError::AddressMismatch { stated: file.address, derived: key.public() });
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let k = Keypair::from_seed(&[5; 32]);
        let text = to_plaintext_json(&k, Some("unsafe"));
        assert_eq!(from_plaintext_json(&text).map(|k| k.public()), Ok(k.public()));
        let other = Keypair::from_seed(&[6; 32]).public().to_address_string();
        let forged = text.replace(&k.public().to_address_string(), &other);
        assert!(matches!(from_plaintext_json(&forged), Err(KeyFileError::AddressMismatch { .. })));
        assert!(matches!(from_plaintext_json("{}"), Err(KeyFileError::Json(_))));
    }
}
