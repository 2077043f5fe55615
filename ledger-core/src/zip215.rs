//! Ed25519 verification under the ZIP 215 rules, one signature at a time or in batches, with one verdict.
//!
//! The chain's rule for every signature (transactions, votes, proposals, certificates):
//! - the key `A` and the nonce point `R` are 32-byte encodings of curve points; non-canonical encodings are
//!   accepted (they decode as curve25519-dalek decodes them: `y` taken mod p, a sign bit on `x = 0` ignored);
//! - `s` is canonical (`s < ℓ`);
//! - with `k = SHA-512(R_bytes ‖ A_bytes ‖ M) mod ℓ` over the bytes as sent, the **cofactored** equation
//!   `[8]([s]B − R − [k]A) = 0` holds;
//! - and, on top of ZIP 215, `A` is not of small order: weak keys are refused where a key enters
//!   ([`crate::PublicKey::verifying_key`]), before either check runs.
//!
//! Why this rule: the cofactored equation is what a random linear combination of many equations checks, so
//! a batch accepts exactly when every member would be accepted alone (ZIP 215's argument; the cofactorless
//! `verify_strict` the chain used before cannot be batched without nodes disagreeing on crafted inputs, see
//! ENGINEERING-NOTES). Every node therefore reaches the same verdict on every input whether it checked it
//! in a batch of 1,000, alone, or not at all because an earlier batch vouched for it.
//!
//! Batch coefficients are 128-bit scalars derived from a blake3 hash of the whole batch (every `A`, `R`, `s`
//! and message), not from an RNG: `ledger-core` has no randomness, and a forger who must find a batch whose
//! own hash cancels its error term faces a 2^128 search, as with random coefficients that it cannot see.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use sha2::{Digest, Sha512};

/// One signature to check: the key (already decoded, and its bytes as signed), the signature, the message.
#[derive(Clone, Copy)]
pub struct Item<'a> {
    pub key: &'a EdwardsPoint,
    pub key_bytes: &'a [u8; 32],
    pub signature: &'a [u8; 64],
    pub message: &'a [u8],
}

/// The parts of an item that both checks need, or `None` when it fails before any curve arithmetic
/// (`s` not canonical, `R` not a point).
struct Prepared {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

fn prepare(item: &Item<'_>) -> Option<Prepared> {
    let mut r_bytes = [0u8; 32];
    r_bytes.copy_from_slice(&item.signature[..32]);
    let mut s_bytes = [0u8; 32];
    s_bytes.copy_from_slice(&item.signature[32..]);
    let s: Option<Scalar> = Scalar::from_canonical_bytes(s_bytes).into();
    let s = s?;
    let r = CompressedEdwardsY(r_bytes).decompress()?;
    let mut h = Sha512::new();
    h.update(r_bytes);
    h.update(item.key_bytes);
    h.update(item.message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    Some(Prepared { r, s, k: Scalar::from_bytes_mod_order_wide(&wide) })
}

/// Check one signature: `[8]([s]B − [k]A − R) = 0`.
pub fn verify(item: &Item<'_>) -> bool {
    let Some(p) = prepare(item) else {
        return false;
    };
    let sb_minus_ka = EdwardsPoint::vartime_double_scalar_mul_basepoint(&p.k, &-item.key, &p.s);
    (sb_minus_ka - p.r).mul_by_cofactor().is_identity()
}

/// Check every signature at once: `[8]([−Σ zᵢsᵢ]B + Σ [zᵢ]Rᵢ + Σ [zᵢkᵢ]Aᵢ) = 0` with coefficients `zᵢ` from
/// the batch's hash. True exactly when [`verify`] is true for every item (but for a 2^-128 chance, see the
/// module text); an empty batch is true. On false, check the items one by one to find the bad ones.
pub fn verify_batch(items: &[Item<'_>]) -> bool {
    match items {
        [] => return true,
        [one] => return verify(one),
        _ => {}
    }
    let mut prepared = Vec::with_capacity(items.len());
    let mut transcript = blake3::Hasher::new_derive_key("ledger zip215 batch coefficients v1");
    transcript.update(&(items.len() as u64).to_le_bytes());
    for item in items {
        let Some(p) = prepare(item) else {
            return false;
        };
        transcript.update(item.key_bytes);
        transcript.update(item.signature);
        transcript.update(&(item.message.len() as u64).to_le_bytes());
        transcript.update(item.message);
        prepared.push(p);
    }
    let mut coefficients = transcript.finalize_xof();
    let mut b_coefficient = Scalar::ZERO;
    let mut scalars = Vec::with_capacity(2 * items.len() + 1);
    let mut points = Vec::with_capacity(2 * items.len() + 1);
    scalars.push(Scalar::ZERO); // the basepoint's, filled in below
    points.push(ED25519_BASEPOINT_POINT);
    for (item, p) in items.iter().zip(&prepared) {
        let mut z = [0u8; 32];
        coefficients.fill(&mut z[..16]);
        let z = Scalar::from_bytes_mod_order(z);
        b_coefficient -= z * p.s;
        scalars.push(z);
        points.push(p.r);
        scalars.push(z * p.k);
        points.push(*item.key);
    }
    scalars[0] = b_coefficient;
    EdwardsPoint::vartime_multiscalar_mul(&scalars, &points).mul_by_cofactor().is_identity()
}

#[cfg(test)]
mod tests;
