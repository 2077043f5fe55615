//! Keys, signatures and the checksummed address text form.
//!
//! Verification is `verify_strict`'s rule everywhere (computed by [`verify_with`] with one decompression fewer)
//! and weak (small-order) keys are refused wherever a key enters,
//! so every node applies one rule to every signature (see ENGINEERING-NOTES: dalek's plain `verify` and
//! batch verification accept inputs that `verify_strict` refuses). Every signed message is
//! `blake3(domain context, len(chain_id) || chain_id || payload)`, so a signature made for one chain or one
//! kind of message never verifies as another.

use std::fmt;
use std::str::FromStr;

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::hash::{Domain, Hash};

/// A raw 32-byte ed25519 public key. Accounts are identified by their key, so this is also the address.
///
/// The bytes are not checked on construction or decoding; [`PublicKey::verifying_key`] checks them (a valid
/// point that is not of small order) wherever a key is about to be trusted.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, BorshSerialize, BorshDeserialize)]
pub struct PublicKey(pub [u8; 32]);

/// Accounts are addressed by their public key.
pub type Address = PublicKey;

/// A 64-byte ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Signature(pub [u8; 64]);

/// Why a key or a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("public key is not a valid ed25519 point")]
    InvalidKey,
    #[error("public key is weak (small order)")]
    WeakKey,
    #[error("signature does not verify")]
    BadSignature,
}

/// Why an address text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address must start with {ADDRESS_PREFIX:?}")]
    BadPrefix,
    #[error("address must be {expected} characters, got {got}")]
    BadLength { expected: usize, got: usize },
    #[error("address is not valid hex after the prefix")]
    BadHex,
    #[error("address checksum does not match (mistyped address?)")]
    BadChecksum,
    #[error("address is not a usable public key: {0}")]
    BadKey(CryptoError),
}

/// Where checked verifying keys are found again. Decompressing a key (a field square root) costs about
/// 3 µs, and a transaction check needs two (sender and recipient) on top of verifying the signature, so
/// a node that sees the same accounts over and over keeps them. Implementations must only return keys
/// that [`PublicKey::verifying_key`] returned for the same bytes. [`NoKeyCache`] decompresses every time.
pub trait KeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Result<VerifyingKey, CryptoError>;
}

/// A [`KeyCache`] that keeps nothing.
pub struct NoKeyCache;

impl KeyCache for NoKeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Result<VerifyingKey, CryptoError> {
        key.verifying_key()
    }
}

/// Text addresses are `ldg` + 64 hex digits of the key + 8 hex digits of checksum.
pub const ADDRESS_PREFIX: &str = "ldg";
const ADDRESS_CHECKSUM_BYTES: usize = 4;
/// Length of an address in text form.
pub const ADDRESS_TEXT_LEN: usize = ADDRESS_PREFIX.len() + 2 * (32 + ADDRESS_CHECKSUM_BYTES);

impl PublicKey {
    /// Decompress and check the key: a valid curve point that is not of small order.
    pub fn verifying_key(&self) -> Result<VerifyingKey, CryptoError> {
        let vk = VerifyingKey::from_bytes(&self.0).map_err(|_| CryptoError::InvalidKey)?;
        if vk.is_weak() {
            return Err(CryptoError::WeakKey);
        }
        Ok(vk)
    }

    /// Verify `signature` over (`domain`, `chain_id`, `payload`) with `verify_strict`.
    pub fn verify(
        &self,
        domain: Domain,
        chain_id: &str,
        payload: &[u8],
        signature: &Signature,
    ) -> Result<(), CryptoError> {
        verify_with(&self.verifying_key()?, domain, chain_id, payload, signature)
    }

    fn checksum(&self) -> [u8; ADDRESS_CHECKSUM_BYTES] {
        let h = Hash::digest(Domain::AddressChecksum, &self.0);
        let mut out = [0u8; ADDRESS_CHECKSUM_BYTES];
        out.copy_from_slice(&h.0[..ADDRESS_CHECKSUM_BYTES]);
        out
    }

    /// The checksummed text form, `ldg…`.
    pub fn to_address_string(&self) -> String {
        let mut s = String::with_capacity(ADDRESS_TEXT_LEN);
        s.push_str(ADDRESS_PREFIX);
        s.push_str(&hex::encode(self.0));
        s.push_str(&hex::encode(self.checksum()));
        s
    }

    /// Parse the text form, checking prefix, length, checksum and that the key is usable.
    /// Upper- and lower-case hex are both accepted.
    pub fn parse_address(s: &str) -> Result<PublicKey, AddressError> {
        let s = s.trim();
        if s.len() != ADDRESS_TEXT_LEN {
            return Err(AddressError::BadLength { expected: ADDRESS_TEXT_LEN, got: s.len() });
        }
        let Some(body) = s.strip_prefix(ADDRESS_PREFIX) else {
            return Err(AddressError::BadPrefix);
        };
        let mut raw = [0u8; 32 + ADDRESS_CHECKSUM_BYTES];
        hex::decode_to_slice(body, &mut raw).map_err(|_| AddressError::BadHex)?;
        let mut key = [0u8; 32];
        key.copy_from_slice(&raw[..32]);
        let pk = PublicKey(key);
        if pk.checksum()[..] != raw[32..] {
            return Err(AddressError::BadChecksum);
        }
        pk.verifying_key().map_err(AddressError::BadKey)?;
        Ok(pk)
    }
}

/// The canonical encodings of the eight points of small order (the torsion subgroup).
const SMALL_ORDER_ENCODINGS: [[u8; 32]; 8] = [
    hex_literal(b"0100000000000000000000000000000000000000000000000000000000000000"),
    hex_literal(b"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex_literal(b"0000000000000000000000000000000000000000000000000000000000000000"),
    hex_literal(b"0000000000000000000000000000000000000000000000000000000000000080"),
    hex_literal(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex_literal(b"26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex_literal(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex_literal(b"c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

const fn hex_literal(s: &[u8; 64]) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => 0xff,
        }
    }
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

/// Verify with an already decompressed key (validator sets cache theirs).
///
/// The rule is exactly `verify_strict`'s, computed with one decompression fewer. `verify_strict` = dalek's
/// plain check (s canonical, and `R` equal, byte for byte, to the canonical compression of
/// `[s]B - [k]A`) + `A` not of small order + `R` decompresses to a point not of small order. The last
/// condition is checked here on `R`'s bytes: an `R` that passes the plain check IS a canonical encoding of
/// a point (the output of `compress`), so the only such `R` of small order are the eight canonical
/// encodings in [`SMALL_ORDER_ENCODINGS`], and any other `R` (an invalid or non-canonical encoding) fails
/// both rules. Saves ~5 µs of a ~37 µs check; `strict_rule_is_unchanged` compares the two.
pub fn verify_with(
    key: &VerifyingKey,
    domain: Domain,
    chain_id: &str,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    use ed25519_dalek::Verifier;
    if key.is_weak() || SMALL_ORDER_ENCODINGS.iter().any(|e| signature.0[..32] == e[..]) {
        return Err(CryptoError::BadSignature);
    }
    let msg = signing_message(domain, chain_id, payload);
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify(msg.as_bytes(), &sig).map_err(|_| CryptoError::BadSignature)
}

/// The 32 bytes that are actually signed: a domain-separated digest of the chain id and the payload.
pub fn signing_message(domain: Domain, chain_id: &str, payload: &[u8]) -> Hash {
    let mut h = Hash::hasher(domain);
    // Length-prefix the chain id so (chain id, payload) pairs cannot run into each other.
    h.update(&(chain_id.len() as u64).to_le_bytes());
    h.update(chain_id.as_bytes());
    h.update(payload);
    Hash::from_hasher(&h)
}

/// A signing key. The 32-byte seed is the secret; it is zeroized on drop by dalek.
#[derive(Clone)]
pub struct Keypair {
    signing: SigningKey,
    public: PublicKey,
}

impl Keypair {
    /// Build a keypair from its secret seed. Fails only if the derived public key is weak, which for a
    /// properly hashed seed does not happen, but the check keeps the rule "no weak key enters" total.
    pub fn from_seed(seed: &[u8; 32]) -> Keypair {
        let signing = SigningKey::from_bytes(seed);
        let public = PublicKey(signing.verifying_key().to_bytes());
        Keypair { signing, public }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret seed, for writing a key file. Handle with care.
    pub fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// Sign (`domain`, `chain_id`, `payload`).
    pub fn sign(&self, domain: Domain, chain_id: &str, payload: &[u8]) -> Signature {
        let msg = signing_message(domain, chain_id, payload);
        Signature(self.signing.sign(msg.as_bytes()).to_bytes())
    }
}

impl fmt::Debug for Keypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "Keypair({})", self.public)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_address_string())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &hex::encode(self.0)[..8])
    }
}

impl FromStr for PublicKey {
    type Err = AddressError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::parse_address(s)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_address_string())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        PublicKey::parse_address(&s).map_err(serde::de::Error::custom)
    }
}

impl Signature {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sig({})", &hex::encode(self.0)[..8])
    }
}

impl serde::Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <String as serde::Deserialize>::deserialize(d)?;
        let mut out = [0u8; 64];
        hex::decode_to_slice(s.as_bytes(), &mut out)
            .map_err(|_| serde::de::Error::custom("signature must be 128 hex characters"))?;
        Ok(Signature(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kp(i: u8) -> Keypair {
        Keypair::from_seed(&[i; 32])
    }

    #[test]
    fn small_order_list_is_the_torsion_subgroup() {
        let mut torsion: Vec<[u8; 32]> =
            curve25519_dalek::constants::EIGHT_TORSION.iter().map(|p| p.compress().to_bytes()).collect();
        torsion.sort();
        let mut ours = SMALL_ORDER_ENCODINGS.to_vec();
        ours.sort();
        assert_eq!(torsion, ours);
    }

    /// A signature whose `R` is the identity and that dalek's plain `verify` accepts: `s = k·a`, so
    /// `[s]B - [k]A` is the identity. `verify_strict` refuses it, and so must we.
    fn identity_r_signature(seed: [u8; 32], msg: &[u8]) -> ([u8; 64], VerifyingKey) {
        use curve25519_dalek::scalar::{Scalar, clamp_integer};
        use sha2::Digest;
        let signing = SigningKey::from_bytes(&seed);
        let vk = signing.verifying_key();
        let h = sha2::Sha512::digest(seed);
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&h[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
        let r = SMALL_ORDER_ENCODINGS[0];
        let mut hk = sha2::Sha512::new();
        hk.update(r);
        hk.update(vk.as_bytes());
        hk.update(msg);
        let mut wide = [0u8; 64];
        wide.copy_from_slice(&hk.finalize());
        let k = Scalar::from_bytes_mod_order_wide(&wide);
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice((k * a).as_bytes());
        (sig, vk)
    }

    #[test]
    fn strict_rule_is_unchanged() {
        use ed25519_dalek::Verifier;
        let strict = |vk: &VerifyingKey, domain, chain: &str, payload: &[u8], sig: &Signature| {
            let msg = signing_message(domain, chain, payload);
            vk.verify_strict(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
        };
        // Valid signatures and every single-bit change of them: both rules agree.
        for i in 0..8u8 {
            let k = kp(i + 1);
            let vk = k.public().verifying_key().unwrap();
            let payload = [i; 40];
            let sig = k.sign(Domain::TxSignature, "c", &payload);
            assert!(verify_with(&vk, Domain::TxSignature, "c", &payload, &sig).is_ok());
            for bit in (0..512).step_by(7) {
                let mut bad = sig;
                bad.0[bit / 8] ^= 1 << (bit % 8);
                let ours = verify_with(&vk, Domain::TxSignature, "c", &payload, &bad).is_ok();
                assert_eq!(ours, strict(&vk, Domain::TxSignature, "c", &payload, &bad), "bit {bit}");
            }
            // Every small-order R with the valid s: refused by both.
            for r in SMALL_ORDER_ENCODINGS {
                let mut bad = sig;
                bad.0[..32].copy_from_slice(&r);
                assert!(verify_with(&vk, Domain::TxSignature, "c", &payload, &bad).is_err());
                assert!(!strict(&vk, Domain::TxSignature, "c", &payload, &bad));
            }
        }
        // The case that tells the rules apart: plain `verify` accepts, strict and ours refuse.
        let msg = signing_message(Domain::TxSignature, "c", b"x");
        let (raw, vk) = identity_r_signature([42; 32], msg.as_bytes());
        let dalek_sig = ed25519_dalek::Signature::from_bytes(&raw);
        assert!(vk.verify(msg.as_bytes(), &dalek_sig).is_ok(), "the crafted signature passes the plain check");
        assert!(vk.verify_strict(msg.as_bytes(), &dalek_sig).is_err());
        assert_eq!(verify_with(&vk, Domain::TxSignature, "c", b"x", &Signature(raw)), Err(CryptoError::BadSignature));
    }

    #[test]
    fn sign_verify_and_domain_and_chain_separation() {
        let k = kp(1);
        let sig = k.sign(Domain::TxSignature, "chain-a", b"payload");
        assert_eq!(k.public().verify(Domain::TxSignature, "chain-a", b"payload", &sig), Ok(()));
        assert_eq!(k.public().verify(Domain::TxSignature, "chain-b", b"payload", &sig), Err(CryptoError::BadSignature));
        assert_eq!(
            k.public().verify(Domain::VoteSignature, "chain-a", b"payload", &sig),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn address_round_trip_and_typo() {
        let pk = kp(7).public();
        let s = pk.to_address_string();
        assert_eq!(s.len(), ADDRESS_TEXT_LEN);
        assert_eq!(PublicKey::parse_address(&s), Ok(pk));
        assert_eq!(PublicKey::parse_address(&s.to_uppercase().replacen("LDG", "ldg", 1)), Ok(pk));
        // Change one hex digit of the key part: the checksum catches it.
        let mut typo: Vec<char> = s.chars().collect();
        typo[10] = if typo[10] == '0' { '1' } else { '0' };
        let typo: String = typo.into_iter().collect();
        assert_eq!(PublicKey::parse_address(&typo), Err(AddressError::BadChecksum));
        assert!(matches!(PublicKey::parse_address("ldg00"), Err(AddressError::BadLength { .. })));
        let wrong_prefix = format!("xyz{}", &s[3..]);
        assert_eq!(PublicKey::parse_address(&wrong_prefix), Err(AddressError::BadPrefix));
    }

    #[test]
    fn weak_key_refused() {
        // The identity point (y = 1) is of small order.
        let mut id = [0u8; 32];
        id[0] = 1;
        assert_eq!(PublicKey(id).verifying_key().err(), Some(CryptoError::WeakKey));
        let addr = PublicKey(id).to_address_string();
        assert_eq!(PublicKey::parse_address(&addr), Err(AddressError::BadKey(CryptoError::WeakKey)));
    }
}
