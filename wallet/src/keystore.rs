//! Key files: the wallet's encrypted keystore, and reading any key file the wallet accepts.
//!
//! Encrypted keystore (`kind: "ed25519-encrypted"`), one JSON document:
//!
//! ```json
//! {"version": 1, "kind": "ed25519-encrypted", "address": "ldg…",
//!  "kdf": {"name": "argon2id", "version": 19, "m_cost_kib": 65536, "t_cost": 3, "p_cost": 1,
//!          "salt": "<32 hex: 16 random bytes>"},
//!  "cipher": {"name": "xchacha20poly1305", "nonce": "<48 hex: 24 random bytes>",
//!             "ciphertext": "<96 hex: 32-byte seed + 16-byte tag>"}}
//! ```
//!
//! The 32-byte encryption key is Argon2id(password, salt) with the stored parameters; the plaintext is the
//! ed25519 seed; the associated data is `kind`, `version` and `address`, so a file whose address was edited
//! fails to decrypt instead of signing for someone else. After decrypting, the seed's public key must equal
//! the stated address. KDF parameters read from a file are bounded, so a hostile file cannot make the wallet
//! allocate gigabytes.
//!
//! Plaintext key files (`kind: "ed25519-plaintext"`, written by `genesis localnet` and by `keygen
//! --insecure-plaintext`) are parsed by `ledger_core::keyfile` so every tool accepts the same files.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};
use ledger_core::keyfile::{self, KEY_FILE_BYTES_MAX, PLAINTEXT_KIND};
use ledger_core::{Address, Keypair};
use rand::TryRng;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// The `kind` of an encrypted keystore.
pub const ENCRYPTED_KIND: &str = "ed25519-encrypted";
const KEYSTORE_VERSION: u32 = 1;
const KDF_NAME: &str = "argon2id";
const CIPHER_NAME: &str = "xchacha20poly1305";
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;
const SEED_BYTES: usize = 32;
const TAG_BYTES: usize = 16;

/// Argon2id cost used for new keystores: 64 MiB, 3 passes, 1 lane (RFC 9106's second recommended
/// option, with one lane because the wallet runs on shared machines).
pub const KDF_DEFAULT: KdfCost = KdfCost { m_cost_kib: 64 * 1024, t_cost: 3, p_cost: 1 };
/// Upper bounds accepted when reading a keystore: beyond these a file is refused, not obeyed.
const M_COST_KIB_MAX: u32 = 1024 * 1024;
const T_COST_MAX: u32 = 16;
const P_COST_MAX: u32 = 16;
/// Lower bounds: a keystore with a weaker KDF than this is refused as tampered or unsafe.
const M_COST_KIB_MIN: u32 = 8 * 1024;

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfCost {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeystoreFile {
    version: u32,
    kind: String,
    address: Address,
    kdf: KdfSection,
    cipher: CipherSection,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KdfSection {
    name: String,
    version: u32,
    m_cost_kib: u32,
    t_cost: u32,
    p_cost: u32,
    salt: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CipherSection {
    name: String,
    nonce: String,
    ciphertext: String,
}

/// Why a key file could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeystoreError {
    #[error("key file is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("key file is not a wallet key file: {0}")]
    Malformed(String),
    #[error("key file kind {0:?} is not supported (expected {ENCRYPTED_KIND:?} or {PLAINTEXT_KIND:?})")]
    UnknownKind(String),
    #[error("wrong password (or the key file was modified)")]
    WrongPassword,
    #[error("decrypted key belongs to {derived}, but the file says {stated}")]
    AddressMismatch { stated: Address, derived: Address },
    #[error("password is empty: choose a non-empty password, or use --insecure-plaintext for a throwaway key")]
    EmptyPassword,
    #[error("system random number generator failed: {0}")]
    Random(String),
    #[error("key derivation failed: {0}")]
    Kdf(String),
}

/// A key file, before any password is asked for.
pub enum KeyFile {
    Plaintext(Keypair),
    /// Needs a password: call [`EncryptedKey::decrypt`].
    Encrypted(EncryptedKey),
}

/// A parsed, not yet decrypted, keystore.
pub struct EncryptedKey {
    file: KeystoreFile,
}

impl EncryptedKey {
    /// The address the file states (not proven until decrypted).
    pub fn stated_address(&self) -> Address {
        self.file.address
    }

    /// Derive the key from `password` and decrypt the seed.
    pub fn decrypt(&self, password: &[u8]) -> Result<Keypair, KeystoreError> {
        let f = &self.file;
        let salt = decode_hex_exact::<SALT_BYTES>(&f.kdf.salt, "kdf.salt")?;
        let nonce = decode_hex_exact::<NONCE_BYTES>(&f.cipher.nonce, "cipher.nonce")?;
        let ciphertext =
            Zeroizing::new(decode_hex_exact::<{ SEED_BYTES + TAG_BYTES }>(&f.cipher.ciphertext, "cipher.ciphertext")?);
        let cost = KdfCost { m_cost_kib: f.kdf.m_cost_kib, t_cost: f.kdf.t_cost, p_cost: f.kdf.p_cost };
        let key = derive_key(password, &salt, cost)?;
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let aad = associated_data(&f.address);
        let seed = Zeroizing::new(
            cipher
                .decrypt(&XNonce::from(nonce), Payload { msg: &ciphertext[..], aad: &aad })
                .map_err(|_| KeystoreError::WrongPassword)?,
        );
        let seed: Zeroizing<[u8; SEED_BYTES]> = Zeroizing::new(
            seed.as_slice().try_into().map_err(|_| KeystoreError::Malformed("seed has the wrong length".into()))?,
        );
        let keypair = Keypair::from_seed(&seed);
        if keypair.public() != f.address {
            return Err(KeystoreError::AddressMismatch { stated: f.address, derived: keypair.public() });
        }
        Ok(keypair)
    }
}

/// Parse the text of a key file of either kind. Plaintext files are fully checked here.
pub fn parse_key_file(text: &str) -> Result<KeyFile, KeystoreError> {
    if text.len() > KEY_FILE_BYTES_MAX {
        return Err(KeystoreError::TooLarge { len: text.len(), max: KEY_FILE_BYTES_MAX });
    }
    #[derive(Deserialize)]
    struct KindOnly {
        kind: String,
    }
    let probe: KindOnly = serde_json::from_str(text).map_err(|e| KeystoreError::Malformed(e.to_string()))?;
    match probe.kind.as_str() {
        PLAINTEXT_KIND => keyfile::from_plaintext_json(text)
            .map(KeyFile::Plaintext)
            .map_err(|e| KeystoreError::Malformed(e.to_string())),
        ENCRYPTED_KIND => {
            let file: KeystoreFile = serde_json::from_str(text).map_err(|e| KeystoreError::Malformed(e.to_string()))?;
            check_header(&file)?;
            Ok(KeyFile::Encrypted(EncryptedKey { file }))
        }
        other => Err(KeystoreError::UnknownKind(other.chars().take(40).collect())),
    }
}

/// Encrypt `key` under `password` into keystore JSON, with a fresh random salt and nonce.
pub fn encrypt(key: &Keypair, password: &[u8], cost: KdfCost) -> Result<String, KeystoreError> {
    if password.is_empty() {
        return Err(KeystoreError::EmptyPassword);
    }
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; NONCE_BYTES];
    fill_random(&mut salt)?;
    fill_random(&mut nonce)?;
    let derived = derive_key(password, &salt, cost)?;
    let cipher = XChaCha20Poly1305::new(&(*derived).into());
    let address = key.public();
    let aad = associated_data(&address);
    let seed = Zeroizing::new(key.seed());
    let ciphertext = cipher
        .encrypt(&XNonce::from(nonce), Payload { msg: &seed[..], aad: &aad })
        .map_err(|_| KeystoreError::Kdf("encryption failed".into()))?;
    let file = KeystoreFile {
        version: KEYSTORE_VERSION,
        kind: ENCRYPTED_KIND.to_string(),
        address,
        kdf: KdfSection {
            name: KDF_NAME.to_string(),
            version: 0x13,
            m_cost_kib: cost.m_cost_kib,
            t_cost: cost.t_cost,
            p_cost: cost.p_cost,
            salt: hex::encode(salt),
        },
        cipher: CipherSection {
            name: CIPHER_NAME.to_string(),
            nonce: hex::encode(nonce),
            ciphertext: hex::encode(&ciphertext),
        },
    };
    serde_json::to_string_pretty(&file).map(|t| t + "\n").map_err(|e| KeystoreError::Malformed(e.to_string()))
}

/// A new keypair from the operating system's random source.
pub fn generate_keypair() -> Result<Keypair, KeystoreError> {
    let mut seed = Zeroizing::new([0u8; SEED_BYTES]);
    fill_random(&mut seed[..])?;
    Ok(Keypair::from_seed(&seed))
}

fn fill_random(buf: &mut [u8]) -> Result<(), KeystoreError> {
    rand::rngs::SysRng.try_fill_bytes(buf).map_err(|e| KeystoreError::Random(e.to_string()))
}

fn check_header(f: &KeystoreFile) -> Result<(), KeystoreError> {
    let bad = |what: String| Err(KeystoreError::Malformed(what));
    if f.version != KEYSTORE_VERSION {
        return bad(format!("keystore version {} is not supported", f.version));
    }
    if f.kdf.name != KDF_NAME || f.kdf.version != 0x13 {
        return bad(format!(
            "kdf must be argon2id version 19, got {:?}",
            f.kdf.name.chars().take(20).collect::<String>()
        ));
    }
    if f.cipher.name != CIPHER_NAME {
        return bad("cipher must be xchacha20poly1305".to_string());
    }
    let k = &f.kdf;
    if !(M_COST_KIB_MIN..=M_COST_KIB_MAX).contains(&k.m_cost_kib)
        || !(1..=T_COST_MAX).contains(&k.t_cost)
        || !(1..=P_COST_MAX).contains(&k.p_cost)
    {
        return bad(format!(
            "kdf cost m={} KiB t={} p={} is outside the accepted range (m {M_COST_KIB_MIN}..={M_COST_KIB_MAX} KiB, \
             t 1..={T_COST_MAX}, p 1..={P_COST_MAX})",
            k.m_cost_kib, k.t_cost, k.p_cost
        ));
    }
    Ok(())
}

fn derive_key(password: &[u8], salt: &[u8], cost: KdfCost) -> Result<Zeroizing<[u8; 32]>, KeystoreError> {
    let params = Params::new(cost.m_cost_kib, cost.t_cost, cost.p_cost, Some(32))
        .map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon.hash_password_into(password, salt, &mut out[..]).map_err(|e| KeystoreError::Kdf(e.to_string()))?;
    Ok(out)
}

fn associated_data(address: &Address) -> Vec<u8> {
    format!("{ENCRYPTED_KIND} v{KEYSTORE_VERSION} {address}").into_bytes()
}

fn decode_hex_exact<const N: usize>(text: &str, field: &str) -> Result<[u8; N], KeystoreError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out)
        .map_err(|_| KeystoreError::Malformed(format!("{field} must be {} hex characters", 2 * N)))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap KDF for unit tests; files written with it are refused on read (below M_COST_KIB_MIN) except
    /// through `decrypt` on a parsed value, so tests build the value directly.
    const TEST_COST: KdfCost = KdfCost { m_cost_kib: M_COST_KIB_MIN, t_cost: 1, p_cost: 1 };

    fn encrypted(text: &str) -> EncryptedKey {
        match parse_key_file(text) {
            Ok(KeyFile::Encrypted(e)) => e,
            _ => panic!("expected an encrypted keystore"),
        }
    }

    #[test]
    fn round_trip_wrong_password_and_tamper() {
        let key = Keypair::from_seed(&[7; 32]);
        let text = encrypt(&key, b"hunter2", TEST_COST).expect("encrypt");
        assert!(!text.contains(&hex::encode(key.seed())), "seed must not appear in the file");
        let e = encrypted(&text);
        assert_eq!(e.stated_address(), key.public());
        assert_eq!(e.decrypt(b"hunter2").map(|k| k.public()), Ok(key.public()));
        assert!(matches!(e.decrypt(b"hunter3"), Err(KeystoreError::WrongPassword)));

        // Another address in the file: the associated data no longer matches.
        let other = Keypair::from_seed(&[8; 32]).public().to_address_string();
        let forged = text.replace(&key.public().to_address_string(), &other);
        assert!(matches!(encrypted(&forged).decrypt(b"hunter2"), Err(KeystoreError::WrongPassword)));
    }

    #[test]
    fn two_encryptions_differ() {
        let key = Keypair::from_seed(&[7; 32]);
        let a = encrypt(&key, b"pw", TEST_COST).expect("encrypt");
        let b = encrypt(&key, b"pw", TEST_COST).expect("encrypt");
        assert_ne!(a, b, "salt and nonce must be fresh");
    }

    #[test]
    fn refuses_empty_password_hostile_cost_and_unknown_kind() {
        let key = Keypair::from_seed(&[7; 32]);
        assert_eq!(encrypt(&key, b"", TEST_COST).err(), Some(KeystoreError::EmptyPassword));
        let text = encrypt(&key, b"pw", TEST_COST).expect("encrypt");
        let hostile = text.replace(&format!("\"m_cost_kib\": {}", M_COST_KIB_MIN), "\"m_cost_kib\": 4000000000");
        assert_ne!(hostile, text);
        assert!(matches!(parse_key_file(&hostile), Err(KeystoreError::Malformed(_))));
        assert!(matches!(parse_key_file(r#"{"kind": "something-else"}"#), Err(KeystoreError::UnknownKind(_))));
        assert!(matches!(parse_key_file("not json"), Err(KeystoreError::Malformed(_))));
    }

    #[test]
    fn reads_plaintext_key_files() {
        let key = Keypair::from_seed(&[9; 32]);
        let text = keyfile::to_plaintext_json(&key, Some("dev key"));
        match parse_key_file(&text) {
            Ok(KeyFile::Plaintext(k)) => assert_eq!(k.public(), key.public()),
            _ => panic!("expected a plaintext key"),
        }
    }
}
