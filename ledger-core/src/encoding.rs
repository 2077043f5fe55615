//! Canonical binary encoding (borsh).
//!
//! The contract: an id is the hash of the canonical bytes; [`decode`] refuses input longer than the caller's
//! limit before looking at it, refuses trailing bytes, and refuses anything that would not re-encode to the
//! very same bytes. Borsh already rejects trailing bytes, non-0/1 bools and option tags and invalid UTF-8;
//! the re-encode comparison makes the rule hold for every type, whatever its derive does.

/// The canonical encoding's traits, for bounds in crates that decode through [`decode`].
pub use borsh::{BorshDeserialize, BorshSerialize};

/// Why bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("input is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("input is not in canonical form")]
    NonCanonical,
}

/// Encode a value to its canonical bytes.
pub fn encode<T: BorshSerialize + ?Sized>(value: &T) -> Vec<u8> {
    encode_sized(value, 0)
}

/// [`encode`] into a buffer of `capacity` bytes to start with: a good guess saves the buffer's regrowths (a
/// 650 KB block grown from empty is copied about 20 times over, and a transaction's ~150 bytes 4 times).
pub fn encode_sized<T: BorshSerialize + ?Sized>(value: &T, capacity: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    // Writing into a Vec cannot fail; the io::Result is an artefact of borsh's writer trait.
    let _ = value.serialize(&mut out);
    out
}

/// Decode canonical bytes of at most `max_len` bytes.
pub fn decode<T: BorshSerialize + BorshDeserialize>(bytes: &[u8], max_len: usize) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge { len: bytes.len(), max: max_len });
    }
    let value: T = borsh::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if encode(&value) != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}
