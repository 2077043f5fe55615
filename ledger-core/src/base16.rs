//! Lowercase hex for the hot paths: transaction bodies submitted over HTTP, hashes and addresses in every
//! answer. One table look-up a character instead of the `hex` crate's match per character, which cost a
//! lone validator ~5 % of its CPU in `POST /txs/batch` alone (session 29 profile). The errors and their
//! messages are the `hex` crate's, so callers that switch keep the answers they gave.

/// Why hex was refused (the same cases and messages as `hex::FromHexError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("Invalid character {c:?} at position {index}")]
    InvalidHexCharacter { c: char, index: usize },
    #[error("Odd number of digits")]
    OddLength,
    #[error("Invalid string length")]
    InvalidStringLength,
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The value of each byte as a hex digit, or `INVALID`.
const INVALID: u8 = 0xFF;
const VALUES: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// `bytes` as lowercase hex.
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    let bytes = bytes.as_ref();
    let mut s = String::with_capacity(bytes.len().saturating_mul(2));
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0F)]));
    }
    s
}

/// Decode `hex` (either case) into `out`, which must be exactly half its length.
pub fn decode_to_slice(hex: impl AsRef<[u8]>, out: &mut [u8]) -> Result<(), HexError> {
    let hex = hex.as_ref();
    if !hex.len().is_multiple_of(2) {
        return Err(HexError::OddLength);
    }
    if hex.len() / 2 != out.len() {
        return Err(HexError::InvalidStringLength);
    }
    for (i, (pair, byte)) in hex.chunks_exact(2).zip(out.iter_mut()).enumerate() {
        let hi = VALUES[usize::from(pair[0])];
        let lo = VALUES[usize::from(pair[1])];
        // Digits are below 16; `INVALID` is not.
        if (hi | lo) & 0xF0 != 0 {
            let (index, c) = if hi == INVALID { (2 * i, pair[0]) } else { (2 * i + 1, pair[1]) };
            return Err(invalid(index, c));
        }
        *byte = (hi << 4) | lo;
    }
    Ok(())
}

/// Decode `hex` into a new buffer.
pub fn decode(hex: impl AsRef<[u8]>) -> Result<Vec<u8>, HexError> {
    let hex = hex.as_ref();
    let mut out = vec![0u8; hex.len() / 2];
    decode_to_slice(hex, &mut out)?;
    Ok(out)
}

/// The error for the byte at `index`, reported as the `hex` crate does: the byte as a `char` (a byte of a
/// multi-byte UTF-8 character shows as its Latin-1 value, as there).
#[cold]
fn invalid(index: usize, byte: u8) -> HexError {
    HexError::InvalidHexCharacter { c: char::from(byte), index }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_decodes_like_the_hex_crate() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        assert_eq!(encode(&bytes), hex::encode(&bytes));
        let mut out = vec![0u8; 256];
        decode_to_slice(hex::encode_upper(&bytes), &mut out).unwrap();
        assert_eq!(out, bytes);
        assert_eq!(decode(encode(&bytes)).unwrap(), bytes);
    }

    #[test]
    fn refuses_what_the_hex_crate_refuses_with_its_messages() {
        let cases = ["0", "abc", "zz", "0g", "g0", "00 1", "é0", "0é", "ÿÿ", "00\u{0}0", "12345x", "", "  "];
        for s in cases {
            let ours = decode(s).map_err(|e| e.to_string());
            let theirs = hex::decode(s).map_err(|e| e.to_string());
            assert_eq!(ours, theirs, "input {s:?}");
        }
        let mut two = [0u8; 2];
        assert_eq!(decode_to_slice("00", &mut two), Err(HexError::InvalidStringLength));
        assert_eq!(
            decode_to_slice("0000", &mut two).map_err(|e| e.to_string()),
            hex::decode_to_slice("0000", &mut two).map_err(|e| e.to_string())
        );
        assert_eq!(decode_to_slice("000", &mut two), Err(HexError::OddLength));
    }

    #[test]
    fn every_byte_pair_decodes_as_the_hex_crate_decodes_it() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let input = [a, b];
                let (mut ours, mut theirs) = ([0u8; 1], [0u8; 1]);
                let r1 = decode_to_slice(input, &mut ours);
                let r2 = hex::decode_to_slice(input, &mut theirs);
                assert_eq!(r1.map_err(|e| e.to_string()), r2.map_err(|e| e.to_string()), "{input:?}");
                assert_eq!(ours, theirs);
            }
        }
    }
}
