//! Keys, signatures and the checksummed address text form.
//!
//! Verification is ZIP 215's rule everywhere ([`crate::zip215`], by [`verify_with`] alone or [`verify_batch`]
//! for many, with the same verdict) and weak (small-order) keys are refused wherever a key enters, so every
//! node applies one rule to every signature however it checks it. Every signed message is
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
/// a node that sees the same accounts over and over keeps them. Implementations must only return the
/// [`CheckedKey`] that [`PublicKey::checked_key`] returned for the same bytes (the type guarantees the key
/// passed the check; that it is the key asked for is the implementation's duty). [`NoKeyCache`] decompresses
/// every time.
pub trait KeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Result<CheckedKey, CryptoError>;
}

/// A [`KeyCache`] that keeps nothing.
pub struct NoKeyCache;

impl KeyCache for NoKeyCache {
    fn verifying_key(&self, key: &PublicKey) -> Result<CheckedKey, CryptoError> {
        key.checked_key()
    }
}

/// A key that passed [`PublicKey::verifying_key`]: a curve point, not of small order. Only
/// [`PublicKey::checked_key`] makes one, so code holding one needs no second weak-key check (three point
/// doublings a transaction, ~2 % of a validator's CPU under load).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckedKey {
    key: VerifyingKey,
}

impl CheckedKey {
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
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

    /// [`PublicKey::verifying_key`], as the proof that the check passed.
    pub fn checked_key(&self) -> Result<CheckedKey, CryptoError> {
        let key = self.verifying_key()?;
        Ok(CheckedKey { key })
    }

    /// Verify `signature` over (`domain`, `chain_id`, `payload`) by the chain's rule ([`verify_with`]).
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
        s.push_str(&crate::base16::encode(self.0));
        s.push_str(&crate::base16::encode(self.checksum()));
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
        crate::base16::decode_to_slice(body, &mut raw).map_err(|_| AddressError::BadHex)?;
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

/// Verify with an already decompressed key (validator sets and the node's key cache keep theirs).
///
/// The chain's rule is ZIP 215's (see [`crate::zip215`]: cofactored equation, `s` canonical, non-canonical
/// point encodings accepted) on a key that is not weak; [`verify_batch`] gives the same verdict for many.
pub fn verify_with(
    key: &VerifyingKey,
    domain: Domain,
    chain_id: &str,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    if key.is_weak() {
        return Err(CryptoError::BadSignature);
    }
    verify_point(&key.to_edwards(), key.as_bytes(), domain, chain_id, payload, signature)
}

/// [`verify_with`] for a key already known not to be weak.
pub fn verify_checked(
    key: &CheckedKey,
    domain: Domain,
    chain_id: &str,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    verify_point(&key.key.to_edwards(), key.key.as_bytes(), domain, chain_id, payload, signature)
}

fn verify_point(
    point: &curve25519_dalek::EdwardsPoint,
    key_bytes: &[u8; 32],
    domain: Domain,
    chain_id: &str,
    payload: &[u8],
    signature: &Signature,
) -> Result<(), CryptoError> {
    let msg = signing_message(domain, chain_id, payload);
    let item = crate::zip215::Item { key: point, key_bytes, signature: &signature.0, message: msg.as_bytes() };
    if crate::zip215::verify(&item) { Ok(()) } else { Err(CryptoError::BadSignature) }
}

/// One signature of a [`verify_batch`]: key, domain, chain id, payload and signature as [`verify_checked`]
/// takes them.
pub struct BatchItem<'a> {
    pub key: &'a CheckedKey,
    pub domain: Domain,
    pub chain_id: &'a str,
    pub payload: &'a [u8],
    pub signature: &'a Signature,
}

/// [`verify_checked`] for every item, in one multi-scalar multiplication when they all pass (measured: less
/// than half the cost of checking them one by one in batches of 64, under a third from 256 up); when the
/// batch fails, each is checked alone so the verdicts say which. Same verdict per item as [`verify_checked`].
pub fn verify_batch(items: &[BatchItem<'_>]) -> Vec<Result<(), CryptoError>> {
    with_zip215_items(items, |batch| {
        let all_pass = crate::zip215::verify_batch(batch);
        batch
            .iter()
            .map(|item| if all_pass || crate::zip215::verify(item) { Ok(()) } else { Err(CryptoError::BadSignature) })
            .collect()
    })
}

/// Whether [`verify_checked`] passes for every item: one multi-scalar multiplication and, unlike
/// [`verify_batch`], nothing more when it fails (for callers that then check smaller groups).
pub fn verify_batch_all(items: &[BatchItem<'_>]) -> bool {
    with_zip215_items(items, crate::zip215::verify_batch)
}

/// `f` over the ZIP 215 items of `items` (their keys are checked, so no weak key is among them).
fn with_zip215_items<R>(items: &[BatchItem<'_>], f: impl FnOnce(&[crate::zip215::Item<'_>]) -> R) -> R {
    let messages: Vec<Hash> = items.iter().map(|i| signing_message(i.domain, i.chain_id, i.payload)).collect();
    let points: Vec<_> = items.iter().map(|i| i.key.key.to_edwards()).collect();
    let checks: Vec<crate::zip215::Item<'_>> = items
        .iter()
        .zip(&messages)
        .zip(&points)
        .map(|((i, m), point)| crate::zip215::Item {
            key: point,
            key_bytes: i.key.key.as_bytes(),
            signature: &i.signature.0,
            message: m.as_bytes(),
        })
        .collect();
    f(&checks)
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
        crate::base16::encode(self.0)
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
        crate::base16::decode_to_slice(s.as_bytes(), &mut out)
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

    /// A signature whose `R` is the identity: `s = k·a`, so `[s]B - [k]A` is the identity. Only the key's
    /// owner can make one. `verify_strict` (the chain's rule before ZIP 215) refuses it; ZIP 215 accepts it,
    /// alone and in a batch.
    fn identity_r_signature(seed: [u8; 32], msg: &[u8]) -> ([u8; 64], VerifyingKey) {
        use curve25519_dalek::scalar::{Scalar, clamp_integer};
        use sha2::Digest;
        let signing = SigningKey::from_bytes(&seed);
        let vk = signing.verifying_key();
        let h = sha2::Sha512::digest(seed);
        let mut lower = [0u8; 32];
        lower.copy_from_slice(&h[..32]);
        let a = Scalar::from_bytes_mod_order(clamp_integer(lower));
        let mut r = [0u8; 32];
        r[0] = 1; // the identity's encoding
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
    fn chain_rule_single_and_batch_agree() {
        let strict = |vk: &VerifyingKey, domain, chain: &str, payload: &[u8], sig: &Signature| {
            let msg = signing_message(domain, chain, payload);
            vk.verify_strict(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&sig.0)).is_ok()
        };
        let keys: Vec<(Keypair, CheckedKey)> = (0..8u8)
            .map(|i| {
                let k = kp(i + 1);
                let vk = k.public().checked_key().unwrap();
                (k, vk)
            })
            .collect();
        let mut sigs = Vec::new();
        for (i, (k, vk)) in keys.iter().enumerate() {
            let payload = [i as u8; 40];
            let sig = k.sign(Domain::TxSignature, "c", &payload);
            assert!(verify_with(vk.verifying_key(), Domain::TxSignature, "c", &payload, &sig).is_ok());
            assert!(verify_checked(vk, Domain::TxSignature, "c", &payload, &sig).is_ok());
            // Honest keys and single-bit changes: ZIP 215 and verify_strict agree, with or without the
            // weak-key check.
            for bit in (0..512).step_by(7) {
                let mut bad = sig;
                bad.0[bit / 8] ^= 1 << (bit % 8);
                let ours = verify_with(vk.verifying_key(), Domain::TxSignature, "c", &payload, &bad).is_ok();
                assert_eq!(ours, strict(vk.verifying_key(), Domain::TxSignature, "c", &payload, &bad), "bit {bit}");
                assert_eq!(ours, verify_checked(vk, Domain::TxSignature, "c", &payload, &bad).is_ok(), "bit {bit}");
            }
            sigs.push((payload, sig));
        }
        let batch = |sigs: &[([u8; 40], Signature)]| {
            let items: Vec<BatchItem<'_>> = sigs
                .iter()
                .zip(&keys)
                .map(|((payload, sig), (_, vk))| BatchItem {
                    key: vk,
                    domain: Domain::TxSignature,
                    chain_id: "c",
                    payload,
                    signature: sig,
                })
                .collect();
            let verdicts = verify_batch(&items);
            // The batch alone, without the search: true exactly when every verdict is.
            assert_eq!(verify_batch_all(&items), verdicts.iter().all(Result::is_ok));
            verdicts
        };
        assert!(batch(&sigs).iter().all(Result::is_ok));
        // One bad signature: the batch names it, and only it.
        sigs[5].1.0[40] ^= 4;
        let verdicts = batch(&sigs);
        let bad: Vec<usize> = verdicts.iter().enumerate().filter(|(_, v)| v.is_err()).map(|(i, _)| i).collect();
        assert_eq!(bad, vec![5]);
        // The case that tells the rules apart: verify_strict refuses, ZIP 215 accepts (alone and batched).
        let msg = signing_message(Domain::TxSignature, "c", b"x");
        let (raw, vk) = identity_r_signature([42; 32], msg.as_bytes());
        assert!(vk.verify_strict(msg.as_bytes(), &ed25519_dalek::Signature::from_bytes(&raw)).is_err());
        assert_eq!(verify_with(&vk, Domain::TxSignature, "c", b"x", &Signature(raw)), Ok(()));
        let checked = PublicKey(vk.to_bytes()).checked_key().unwrap();
        assert_eq!(verify_checked(&checked, Domain::TxSignature, "c", b"x", &Signature(raw)), Ok(()));
        let item = BatchItem {
            key: &checked,
            domain: Domain::TxSignature,
            chain_id: "c",
            payload: b"x",
            signature: &Signature(raw),
        };
        assert!(verify_batch_all(std::slice::from_ref(&item)));
        assert_eq!(verify_batch(&[item]), vec![Ok(())]);
        // A weak key is refused without a check by `verify_with`, and never becomes a `CheckedKey`, the only
        // key `verify_checked` and the batch take.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak_vk = VerifyingKey::from_bytes(&identity).expect("the identity point decodes");
        assert!(weak_vk.is_weak());
        assert_eq!(
            verify_with(&weak_vk, Domain::TxSignature, "c", b"x", &Signature(raw)),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(PublicKey(identity).checked_key(), Err(CryptoError::WeakKey));
        assert_eq!(NoKeyCache.verifying_key(&PublicKey(identity)), Err(CryptoError::WeakKey));
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
