//! Domain-separated blake3 hashes.
//!
//! Every hashed kind has its own [`Domain`], mapped to a blake3 `derive_key` context, so a tx id can never
//! collide with a block hash or a Merkle node even if the bytes are equal. Changing a context string is a
//! hard fork: the golden vectors in `tests/golden.rs` pin them.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};

/// A 32-byte blake3 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, BorshSerialize, BorshDeserialize)]
pub struct Hash(pub [u8; 32]);

/// What a hash is of. Each variant has its own blake3 key-derivation context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    TxId,
    BlockHeader,
    Commit,
    MerkleLeaf,
    MerkleNode,
    StateLeaf,
    StateRoot,
    Genesis,
    ValidatorSet,
    AddressChecksum,
    TxSignature,
    VoteSignature,
    ProposalSignature,
    ValidatorChange,
    ApprovalSignature,
    ApprovalId,
    KeyPossession,
    EvidenceId,
    GovState,
    BlockOps,
}

impl Domain {
    /// Every domain, in declaration order (`Domain::X as usize` is its index).
    pub const ALL: [Domain; 20] = [
        Domain::TxId,
        Domain::BlockHeader,
        Domain::Commit,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::StateLeaf,
        Domain::StateRoot,
        Domain::Genesis,
        Domain::ValidatorSet,
        Domain::AddressChecksum,
        Domain::TxSignature,
        Domain::VoteSignature,
        Domain::ProposalSignature,
        Domain::ValidatorChange,
        Domain::ApprovalSignature,
        Domain::ApprovalId,
        Domain::KeyPossession,
        Domain::EvidenceId,
        Domain::GovState,
        Domain::BlockOps,
    ];

    /// The blake3 `derive_key` context string of this domain.
    pub const fn context(self) -> &'static str {
        match self {
            Domain::TxId => "ledger v1 tx id",
            Domain::BlockHeader => "ledger v1 block header",
            Domain::Commit => "ledger v1 commit certificate",
            Domain::MerkleLeaf => "ledger v1 merkle leaf",
            Domain::MerkleNode => "ledger v1 merkle node",
            Domain::StateLeaf => "ledger v1 state leaf",
            Domain::StateRoot => "ledger v1 state root",
            Domain::Genesis => "ledger v1 genesis",
            Domain::ValidatorSet => "ledger v1 validator set",
            Domain::AddressChecksum => "ledger v1 address checksum",
            Domain::TxSignature => "ledger v1 tx signature",
            Domain::VoteSignature => "ledger v1 vote signature",
            Domain::ProposalSignature => "ledger v1 proposal signature",
            Domain::ValidatorChange => "ledger v1 validator change",
            Domain::ApprovalSignature => "ledger v1 approval signature",
            Domain::ApprovalId => "ledger v1 approval id",
            Domain::KeyPossession => "ledger v1 key possession",
            Domain::EvidenceId => "ledger v1 evidence id",
            Domain::GovState => "ledger v1 governance state",
            Domain::BlockOps => "ledger v1 block operations",
        }
    }
}

/// Failure to parse a hash from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    #[error("hash must be 64 hex characters, got {got}")]
    BadLength { got: usize },
    #[error("hash is not valid hex")]
    BadHex,
}

impl Hash {
    pub const ZERO: Hash = Hash([0; 32]);

    /// Hash `bytes` in `domain`.
    pub fn digest(domain: Domain, bytes: &[u8]) -> Hash {
        let mut h = Self::hasher(domain);
        h.update(bytes);
        Hash(*h.finalize().as_bytes())
    }

    /// An incremental hasher for `domain`, for inputs made of several parts.
    ///
    /// A copy of the domain's hasher as `new_derive_key` leaves it, made once per process: deriving the key
    /// from the context string again is one more blake3 compression per hash (a transaction's id, its signing
    /// message, each state-tree and Merkle node), the same output either way.
    pub fn hasher(domain: Domain) -> blake3::Hasher {
        static HASHERS: std::sync::LazyLock<Vec<blake3::Hasher>> = std::sync::LazyLock::new(|| {
            Domain::ALL.iter().map(|d| blake3::Hasher::new_derive_key(d.context())).collect()
        });
        match HASHERS.get(domain as usize) {
            Some(h) => h.clone(),
            None => blake3::Hasher::new_derive_key(domain.context()),
        }
    }

    pub fn from_hasher(h: &blake3::Hasher) -> Hash {
        Hash(*h.finalize().as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        crate::base16::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<Hash, HashParseError> {
        if s.len() != 64 {
            return Err(HashParseError::BadLength { got: s.len() });
        }
        let mut out = [0u8; 32];
        crate::base16::decode_to_slice(s, &mut out).map_err(|_| HashParseError::BadHex)?;
        Ok(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Short form keeps traces readable; Display gives the full value.
        write!(f, "{}", &self.to_hex()[..12])
    }
}

impl FromStr for Hash {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Hash::from_hex(s)
    }
}

impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        Hash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kept_hashers_hash_as_a_fresh_derive_key() {
        for (i, d) in Domain::ALL.iter().enumerate() {
            assert_eq!(*d as usize, i, "{d:?} out of place in Domain::ALL");
            for input in [&b""[..], b"x", &[7u8; 200], &[9u8; 5000]] {
                let mut fresh = blake3::Hasher::new_derive_key(d.context());
                fresh.update(input);
                assert_eq!(Hash::digest(*d, input).0, *fresh.finalize().as_bytes(), "{d:?}");
            }
        }
    }

    #[test]
    fn domains_separate_equal_bytes() {
        let a = Hash::digest(Domain::TxId, b"x");
        let b = Hash::digest(Domain::BlockHeader, b"x");
        assert_ne!(a, b);
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Hash::digest(Domain::TxId, b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()), Ok(h));
        assert_eq!(Hash::from_hex("ab"), Err(HashParseError::BadLength { got: 2 }));
        assert_eq!(Hash::from_hex(&"zz".repeat(32)), Err(HashParseError::BadHex));
    }
}
