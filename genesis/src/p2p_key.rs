//! The p2p identity key file (`p2p_key.json`) and libp2p peer ids, computed without depending on libp2p.
//!
//! A libp2p ed25519 peer id is the base58btc text of the identity multihash (`0x00`, length `0x24`) of the
//! protobuf-encoded public key (`0x08 0x01` = key type Ed25519, `0x12 0x20` = 32 bytes of data, then the
//! key). The 36-byte protobuf is short enough (<= 42) that libp2p embeds it rather than hashing it, so every
//! ed25519 peer id has the same first bytes and its text starts with `12D3KooW`.
//!
//! The secret is the 32-byte ed25519 seed, the same form libp2p's `Keypair::ed25519_from_bytes` takes, so
//! the node can rebuild the identity from the file and compare its peer id with the one written here.

use ledger_core::Keypair;
use serde::{Deserialize, Serialize};

/// The `kind` of a p2p key file.
pub const P2P_KEY_KIND: &str = "libp2p-ed25519";
/// Every ed25519 peer id starts with this text.
pub const ED25519_PEER_ID_PREFIX: &str = "12D3KooW";
/// Largest p2p key file accepted, in bytes.
pub const P2P_KEY_FILE_BYTES_MAX: usize = 64 * 1024;

/// Identity multihash header and protobuf header in front of the 32 key bytes.
const PEER_ID_HEADER: [u8; 6] = [0x00, 0x24, 0x08, 0x01, 0x12, 0x20];

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct P2pKeyFile {
    version: u32,
    kind: String,
    secret_key: String,
    peer_id: String,
}

/// Why a p2p key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pKeyError {
    #[error("p2p key file is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("p2p key file is not valid JSON of the expected shape: {0}")]
    Json(String),
    #[error("p2p key file kind {0:?} is not {P2P_KEY_KIND:?}")]
    WrongKind(String),
    #[error("p2p key file version {0} is not supported")]
    WrongVersion(u32),
    #[error("p2p secret_key must be 64 hex characters")]
    BadSecret,
    #[error("p2p secret key belongs to peer {derived}, but the file says {stated}")]
    PeerIdMismatch { stated: String, derived: String },
}

/// The libp2p peer id (base58btc text) of an ed25519 public key.
pub fn peer_id_from_public_key(public_key: &[u8; 32]) -> String {
    let mut multihash = [0u8; PEER_ID_HEADER.len() + 32];
    multihash[..PEER_ID_HEADER.len()].copy_from_slice(&PEER_ID_HEADER);
    multihash[PEER_ID_HEADER.len()..].copy_from_slice(public_key);
    bs58::encode(multihash).into_string()
}

/// The peer id of the identity whose secret seed is `seed`.
pub fn peer_id_from_seed(seed: &[u8; 32]) -> String {
    peer_id_from_public_key(&Keypair::from_seed(seed).public().0)
}

/// Render `p2p_key.json` for the identity with secret `seed`.
pub fn p2p_key_json(seed: &[u8; 32]) -> String {
    let file = P2pKeyFile {
        version: 1,
        kind: P2P_KEY_KIND.to_string(),
        secret_key: hex::encode(seed),
        peer_id: peer_id_from_seed(seed),
    };
    // Serialising a plain struct of strings cannot fail.
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

/// Parse `p2p_key.json`, checking that the stated peer id is the secret's. Returns the seed and peer id.
pub fn parse_p2p_key_json(text: &str) -> Result<([u8; 32], String), P2pKeyError> {
    if text.len() > P2P_KEY_FILE_BYTES_MAX {
        return Err(P2pKeyError::TooLarge { len: text.len(), max: P2P_KEY_FILE_BYTES_MAX });
    }
    let file: P2pKeyFile = serde_json::from_str(text).map_err(|e| P2pKeyError::Json(e.to_string()))?;
    if file.kind != P2P_KEY_KIND {
        return Err(P2pKeyError::WrongKind(file.kind.chars().take(40).collect()));
    }
    if file.version != 1 {
        return Err(P2pKeyError::WrongVersion(file.version));
    }
    let mut seed = [0u8; 32];
    hex::decode_to_slice(file.secret_key.as_bytes(), &mut seed).map_err(|_| P2pKeyError::BadSecret)?;
    let derived = peer_id_from_seed(&seed);
    if derived != file.peer_id {
        return Err(P2pKeyError::PeerIdMismatch { stated: file.peer_id.chars().take(80).collect(), derived });
    }
    Ok((seed, derived))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ed25519 vector of the libp2p peer-id spec (`peer-ids/peer-ids.md`, "Test vectors"): the private key
    /// protobuf `08011240 || seed || public`, the public key protobuf `08011220 || public`. The peer id is the
    /// one several independent libp2p implementations derive from that key.
    const SPEC_SEED_HEX: &str = "7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d";
    const SPEC_PUBLIC_HEX: &str = "1ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e";
    const SPEC_PEER_ID: &str = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq";

    fn decode32(s: &str) -> [u8; 32] {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).expect("hex");
        out
    }

    #[test]
    fn spec_vector_public_key_to_peer_id() {
        assert_eq!(peer_id_from_public_key(&decode32(SPEC_PUBLIC_HEX)), SPEC_PEER_ID);
    }

    #[test]
    fn spec_vector_seed_to_public_key_and_peer_id() {
        let seed = decode32(SPEC_SEED_HEX);
        assert_eq!(Keypair::from_seed(&seed).public().0, decode32(SPEC_PUBLIC_HEX));
        assert_eq!(peer_id_from_seed(&seed), SPEC_PEER_ID);
    }

    #[test]
    fn every_peer_id_has_the_ed25519_prefix_and_length() {
        for i in 0..=255u8 {
            let id = peer_id_from_seed(&[i; 32]);
            assert!(id.starts_with(ED25519_PEER_ID_PREFIX), "{id}");
            assert_eq!(id.len(), 52, "{id}");
            let raw = bs58::decode(&id).into_vec().expect("base58");
            assert_eq!(&raw[..6], &PEER_ID_HEADER);
        }
    }

    #[test]
    fn key_file_round_trip_and_mismatch() {
        let seed = [3u8; 32];
        let text = p2p_key_json(&seed);
        assert_eq!(parse_p2p_key_json(&text), Ok((seed, peer_id_from_seed(&seed))));
        let forged = text.replace(&peer_id_from_seed(&seed), &peer_id_from_seed(&[4u8; 32]));
        assert!(matches!(parse_p2p_key_json(&forged), Err(P2pKeyError::PeerIdMismatch { .. })));
        let wrong_kind = text.replace(P2P_KEY_KIND, "rsa");
        assert!(matches!(parse_p2p_key_json(&wrong_kind), Err(P2pKeyError::WrongKind(_))));
        assert!(matches!(parse_p2p_key_json("{}"), Err(P2pKeyError::Json(_))));
    }
}
