//! Edge cases of the ZIP 215 rule, and single and batch verification agreeing on each of them.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::VartimeMultiscalarMul;
use proptest::prelude::*;
use sha2::{Digest, Sha512};

use super::{Item, verify, verify_batch};

/// An owned test case: key bytes, signature, message, and the verdict the rule gives.
#[derive(Clone, Debug)]
struct Case {
    key: [u8; 32],
    signature: [u8; 64],
    message: Vec<u8>,
}

impl Case {
    /// The decoded key, as the node has it (or `None`: not a point, refused before any check).
    fn point(&self) -> Option<EdwardsPoint> {
        CompressedEdwardsY(self.key).decompress()
    }
}

fn hex32(s: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).expect("32 hex bytes");
    out
}

fn hex64(s: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    hex::decode_to_slice(s, &mut out).expect("64 hex bytes");
    out
}

/// Verify owned cases one by one and as one batch; both verdicts per case.
fn single(cases: &[Case]) -> Vec<bool> {
    cases
        .iter()
        .map(|c| {
            let Some(a) = c.point() else { return false };
            verify(&Item { key: &a, key_bytes: &c.key, signature: &c.signature, message: &c.message })
        })
        .collect()
}

fn batch(cases: &[Case]) -> bool {
    let points: Vec<EdwardsPoint> = match cases.iter().map(Case::point).collect::<Option<Vec<_>>>() {
        Some(p) => p,
        None => return false,
    };
    let items: Vec<Item<'_>> = cases
        .iter()
        .zip(&points)
        .map(|(c, a)| Item { key: a, key_bytes: &c.key, signature: &c.signature, message: &c.message })
        .collect();
    verify_batch(&items)
}

/// The twelve cases of "Taming the many EdDSAs" (Chalkias, Garillot, Nikolaenko, 2020; published as
/// `cases.txt` of novifinancial/ed25519-speccheck): message, key, signature. They cover small-order and
/// mixed-order keys and R, s at and above ℓ, and non-canonical encodings of R and A.
const SPECCHECK: [(&str, &str, &str); 12] = [
    (
        "8c93255d71dcab10e8f379c26200f3c7bd5f09d9bc3068d3ef4edeb4853022b6",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a0000000000000000000000000000000000000000000000000000000000000000",
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43a5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    (
        "aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
    ),
    (
        "9bd9f44f4dcc75bd531b56b2cd280b0bb38fc1cd6d1230e14861d861de092e79",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "9046a64750444938de19f227bb80485e92b83fdb4b6506c160484c016cc1852f87909e14428a7a1d62e9f22f3d3ad7802db02eb2e688b6c52fcd6648a98bd009",
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "160a1cb0dc9c0258cd0a7d23e94d8fa878bcb1925f2c64246b2dee1796bed5125ec6bc982a269b723e0668e540911a9a6a58921d6925e434ab10aa7940551a09",
    ),
    (
        "e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec4011eaccd55b53f56c",
        "cdb267ce40c5cd45306fa5d2f29731459387dbf9eb933b7bd5aed9a765b88d4d",
        "21122a84e0b5fca4052f5b1235c80a537878b38f3142356b2c2384ebad4668b7e40bc836dac0f71076f9abe3a53f9c03c1ceeeddb658d0030494ace586687405",
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "e96f66be976d82e60150baecff9906684aebb1ef181f67a7189ac78ea23b6c0e547f7690a0e2ddcd04d87dbc3490dc19b3b3052f7ff0538cb68afb369ba3a514",
    ),
    (
        "85e241a07d148b41e47d62c63f830dc7a6851a0b1f33ae4bb2f507fb6cffec40",
        "442aad9f089ad9e14647b1ef9099a1ff4798d78589e66f28eca69c11f582a623",
        "8ce5b96c8f26d0ab6c47958c9e68b937104cd36e13c33566acd2fe8d38aa19427e71f98a473474f2f13f06f97c20d58cc3f54b8bd0d272f42b695dd7e89a8c22",
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff03be9678ac102edcd92b0210bb34d7428d12ffc5df5f37e359941266a4e35f0f",
    ),
    (
        "9bedc267423725d473888631ebf45988bad3db83851ee85c85e241a07d148b41",
        "f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffca8c5b64cd208982aa38d4936621a4775aa233aa0505711d8fdcfdaa943d4908",
    ),
    (
        "e96b7021eb39c1a163b6da4e3093dcd3f21387da4cc4572be588fafae23c155b",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
    (
        "39a591f5321bbe07fd5a23dc2f39d025d74526615746727ceefd6e82ae65c06f",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "a9d55260f765261eb9b84e106f665e00b867287a761990d7135963ee0a7d59dca5bb704786be79fc476f91d3f3f89b03984d8068dcf1bb7dfc6637b45450ac04",
    ),
];

/// ZIP 215's verdicts on those cases, as the paper's table gives them for Zebra (ed25519-zebra implements
/// ZIP 215): cofactored, non-canonical A and R accepted, s ≥ ℓ refused.
const SPECCHECK_ZIP215: [bool; 12] = [true, true, true, true, true, true, false, false, false, true, true, true];

fn speccheck_cases() -> Vec<Case> {
    SPECCHECK
        .iter()
        .map(|(m, k, s)| Case { key: hex32(k), signature: hex64(s), message: hex::decode(m).expect("hex message") })
        .collect()
}

#[test]
fn speccheck_vectors_get_zip215_verdicts_single_and_batched() {
    let cases = speccheck_cases();
    assert_eq!(single(&cases), SPECCHECK_ZIP215);
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(batch(std::slice::from_ref(c)), SPECCHECK_ZIP215[i], "case {i} alone");
        // Within a batch of valid signatures: the batch's verdict is the case's.
        let mut with_honest = honest(3, i as u8);
        with_honest.insert(1, c.clone());
        assert_eq!(batch(&with_honest), SPECCHECK_ZIP215[i], "case {i} among valid signatures");
    }
    let valid: Vec<Case> = cases.iter().zip(SPECCHECK_ZIP215).filter(|(_, ok)| *ok).map(|(c, _)| c.clone()).collect();
    assert!(batch(&valid), "every accepted case in one batch");
    assert!(!batch(&cases), "every case in one batch: some are refused");
}

/// Every encoding that decodes to a point of small order: the eight canonical ones and six non-canonical
/// ones (`y + p` for y = 0 and 1, and a sign bit on `x = 0`), as ZIP 215 enumerates them.
fn small_order_encodings() -> Vec<[u8; 32]> {
    // p = 2^255 - 19, little-endian.
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    let mut out: Vec<[u8; 32]> = Vec::new();
    for t in EIGHT_TORSION {
        let canonical = t.compress().to_bytes();
        let mut candidates = vec![canonical, {
            let mut b = canonical;
            b[31] ^= 0x80;
            b
        }];
        let y_small = canonical[1..31].iter().all(|&b| b == 0) && (canonical[31] & 0x7f) == 0 && canonical[0] < 19;
        if y_small {
            for sign in [0u8, 0x80] {
                // y + p: add the small y to p's bytes (no carry: p's low byte is 0xed, y < 19).
                let mut b = p;
                b[0] += canonical[0];
                b[31] |= sign;
                candidates.push(b);
            }
        }
        for c in candidates {
            let decoded = CompressedEdwardsY(c).decompress();
            if decoded.is_some_and(|d| d.is_small_order() && d == t) && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out
}

#[test]
fn every_small_order_key_and_r_pair_with_s_zero_is_valid_in_both() {
    let encodings = small_order_encodings();
    assert_eq!(encodings.len(), 14, "8 canonical + 6 non-canonical encodings");
    let mut cases = Vec::new();
    for a in &encodings {
        for r in &encodings {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(r);
            cases.push(Case { key: *a, signature, message: b"Zcash".to_vec() });
        }
    }
    assert_eq!(cases.len(), 196);
    assert!(single(&cases).into_iter().all(|ok| ok), "ZIP 215 accepts all 196");
    assert!(batch(&cases));
    for chunk in cases.chunks(7) {
        assert!(batch(chunk));
    }
}

/// `n` valid signatures by keys derived from `seed`.
fn honest(n: usize, seed: u8) -> Vec<Case> {
    (0..n)
        .map(|i| {
            let derive = |what: &str| {
                Scalar::from_bytes_mod_order(*blake3::hash(format!("{what} {seed} {i}").as_bytes()).as_bytes())
            };
            let (secret, nonce) = (derive("secret"), derive("nonce"));
            let message = format!("message {seed} {i}").into_bytes();
            sign_raw(&(ED25519_BASEPOINT_POINT * secret), secret, nonce, &EdwardsPoint::default(), &message)
        })
        .collect()
}

/// A signature by `secret` on `message` for the key `public` (which may carry a torsion component the
/// secret does not know about), with the nonce point `[nonce]B + r_torsion`.
fn sign_raw(public: &EdwardsPoint, secret: Scalar, nonce: Scalar, r_torsion: &EdwardsPoint, message: &[u8]) -> Case {
    let key = public.compress().to_bytes();
    let r = (ED25519_BASEPOINT_POINT * nonce + r_torsion).compress().to_bytes();
    let mut h = Sha512::new();
    h.update(r);
    h.update(key);
    h.update(message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let s = nonce + k * secret;
    let mut signature = [0u8; 64];
    signature[..32].copy_from_slice(&r);
    signature[32..].copy_from_slice(s.as_bytes());
    Case { key, signature, message: message.to_vec() }
}

#[test]
fn mixed_order_keys_and_r_pass_the_cofactored_equation_in_both() {
    // A = [a]B + T and R = [r]B + T' for 8-torsion T, T': the cofactorless equation fails for most k, the
    // cofactored one always holds. A batch that forgot the cofactor would refuse these.
    let mut cases = Vec::new();
    for (i, t) in EIGHT_TORSION.iter().enumerate() {
        let secret = Scalar::from_bytes_mod_order([i as u8 + 3; 32]);
        let public = ED25519_BASEPOINT_POINT * secret + t;
        let case = sign_raw(
            &public,
            secret,
            Scalar::from_bytes_mod_order([i as u8 + 40; 32]),
            &EIGHT_TORSION[(i + 3) % 8],
            b"mixed",
        );
        cases.push(case);
    }
    assert!(single(&cases).into_iter().all(|ok| ok));
    assert!(batch(&cases));
    // ed25519-dalek's `verify_strict` (the chain's former rule) refuses the ones with torsion.
    let strict_refuses = cases
        .iter()
        .filter(|c| {
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&c.key);
            vk.map_or(true, |vk| {
                vk.verify_strict(&c.message, &ed25519_dalek::Signature::from_bytes(&c.signature)).is_err()
            })
        })
        .count();
    assert!(strict_refuses >= 7, "only the torsion-free case passes verify_strict ({strict_refuses} refused)");
}

#[test]
fn honest_signatures_agree_with_ed25519_dalek() {
    use ed25519_dalek::{Signer, SigningKey};
    for i in 0..16u8 {
        let sk = SigningKey::from_bytes(&[i; 32]);
        let message = [i; 40];
        let sig = sk.sign(&message).to_bytes();
        let case = Case { key: sk.verifying_key().to_bytes(), signature: sig, message: message.to_vec() };
        assert_eq!(single(std::slice::from_ref(&case)), vec![true]);
        // Every single-bit change of a valid signature or message: refused by both rules.
        for bit in (0..512).step_by(5) {
            let mut bad = case.clone();
            bad.signature[bit / 8] ^= 1 << (bit % 8);
            let dalek =
                sk.verifying_key().verify_strict(&bad.message, &ed25519_dalek::Signature::from_bytes(&bad.signature));
            assert_eq!(single(std::slice::from_ref(&bad)), vec![dalek.is_ok()], "bit {bit}");
            assert!(!batch(&[case.clone(), bad]), "bit {bit} in a batch");
        }
    }
}

#[test]
fn one_bad_signature_among_a_thousand_fails_the_batch_and_is_found_alone() {
    let mut cases = honest(1000, 9);
    assert!(batch(&cases));
    cases[613].message[0] ^= 1;
    assert!(!batch(&cases));
    let verdicts = single(&cases);
    let bad: Vec<usize> = verdicts.iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
    assert_eq!(bad, vec![613]);
}

/// The pool of inputs the property draws from: valid, ZIP 215 edge cases, and broken ones.
fn pool() -> Vec<Case> {
    let mut all = speccheck_cases();
    all.extend(honest(6, 77));
    let encodings = small_order_encodings();
    for (i, a) in encodings.iter().enumerate().take(4) {
        let mut signature = [0u8; 64];
        signature[..32].copy_from_slice(&encodings[(i * 5) % encodings.len()]);
        all.push(Case { key: *a, signature, message: vec![i as u8] });
        // s = 1 with small-order A and R: [8]([1]B) is not the identity: refused.
        signature[32] = 1;
        all.push(Case { key: *a, signature, message: vec![i as u8] });
    }
    let mut broken = honest(2, 5);
    broken[0].signature[63] |= 0xf0; // s far above ℓ
    broken[1].signature[0] ^= 0x55; // R changed (maybe not a point at all)
    all.extend(broken);
    all
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever the mix of edge cases, a batch is accepted exactly when every member is accepted alone.
    #[test]
    fn batch_verdict_is_the_conjunction_of_single_verdicts(picks in proptest::collection::vec(0usize..1000, 1..12)) {
        let pool = pool();
        let cases: Vec<Case> = picks.iter().map(|p| pool[p % pool.len()].clone()).collect();
        let all_single = single(&cases).into_iter().all(|ok| ok);
        prop_assert_eq!(batch(&cases), all_single);
    }
}

// The vector backends (AVX2, AVX-512 IFMA, picked at run time) against the portable arithmetic. Validators on
// different CPUs run different code for the same equation (`.cargo/config.toml`); a backend that computed a
// different point would split the chain. Point addition, doubling and decompression in curve25519-dalek are
// portable code on every CPU, while scalar multiplication (`verify`'s double-base product, `verify_batch`'s
// multi-scalar product) goes through the backend picked here. So a double-and-add built from additions is
// an independent reference.

/// `[scalar]point` by double-and-add over the scalar's bits: additions only, no backend dispatch.
fn portable_mul(scalar: &Scalar, point: &EdwardsPoint) -> EdwardsPoint {
    let bytes = scalar.to_bytes();
    let mut acc = EdwardsPoint::default();
    for bit in (0..256).rev() {
        acc = acc + acc;
        if (bytes[bit / 8] >> (bit % 8)) & 1 == 1 {
            acc += point;
        }
    }
    acc
}

/// The ZIP 215 verdict computed with [`portable_mul`] only.
fn portable_verdict(c: &Case) -> bool {
    let (Some(a), Some(r)) = (c.point(), CompressedEdwardsY(c.signature[..32].try_into().expect("32")).decompress())
    else {
        return false;
    };
    let s_bytes: [u8; 32] = c.signature[32..].try_into().expect("32");
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else { return false };
    let mut h = Sha512::new();
    h.update(&c.signature[..32]);
    h.update(c.key);
    h.update(&c.message);
    let mut wide = [0u8; 64];
    wide.copy_from_slice(&h.finalize());
    let k = Scalar::from_bytes_mod_order_wide(&wide);
    let lhs = portable_mul(&s, &ED25519_BASEPOINT_POINT) - r - portable_mul(&k, &a);
    lhs.mul_by_cofactor() == EdwardsPoint::default()
}

fn derived_scalar(what: &str, i: usize) -> Scalar {
    Scalar::from_bytes_mod_order(*blake3::hash(format!("{what} {i}").as_bytes()).as_bytes())
}

#[test]
fn verdicts_match_the_portable_arithmetic_on_every_edge_case() {
    let mut cases = speccheck_cases();
    cases.extend(pool());
    let encodings = small_order_encodings();
    for a in &encodings {
        for r in &encodings {
            let mut signature = [0u8; 64];
            signature[..32].copy_from_slice(r);
            cases.push(Case { key: *a, signature, message: b"Zcash".to_vec() });
        }
    }
    for c in honest(4, 31) {
        for bit in (0..512).step_by(37) {
            let mut bad = c.clone();
            bad.signature[bit / 8] ^= 1 << (bit % 8);
            cases.push(bad);
        }
        cases.push(c);
    }
    let reference: Vec<bool> = cases.iter().map(portable_verdict).collect();
    assert_eq!(single(&cases), reference);
    assert!(reference.iter().any(|ok| *ok) && reference.iter().any(|ok| !*ok), "both verdicts are exercised");
    assert_eq!(&reference[..SPECCHECK_ZIP215.len()], &SPECCHECK_ZIP215[..], "the reference itself is ZIP 215");
}

#[test]
fn scalar_products_match_the_portable_arithmetic() {
    // Points with torsion components, as crafted keys and R values can have.
    let points: Vec<EdwardsPoint> = (0..300)
        .map(|i| portable_mul(&derived_scalar("point", i), &ED25519_BASEPOINT_POINT) + EIGHT_TORSION[i % 8])
        .collect();
    // Full-width scalars and the 128-bit ones `verify_batch` draws as coefficients.
    let scalars: Vec<Scalar> = (0..300)
        .map(|i| {
            let s = derived_scalar("scalar", i);
            if i % 2 == 0 {
                s
            } else {
                let mut half = s.to_bytes();
                half[16..].fill(0);
                Scalar::from_bytes_mod_order(half)
            }
        })
        .collect();
    for i in 0..8 {
        let (a, b) = (&scalars[i], &scalars[i + 8]);
        assert_eq!(points[i] * a, portable_mul(a, &points[i]), "variable base {i}");
        assert_eq!(
            EdwardsPoint::vartime_double_scalar_mul_basepoint(a, &points[i], b),
            portable_mul(a, &points[i]) + portable_mul(b, &ED25519_BASEPOINT_POINT),
            "double base {i}"
        );
    }
    // Straus below 190 terms, Pippenger from 190: both sides of the switch.
    for n in [1, 2, 16, 64, 189, 190, 300] {
        let want =
            scalars[..n].iter().zip(&points[..n]).fold(EdwardsPoint::default(), |acc, (s, p)| acc + portable_mul(s, p));
        assert_eq!(EdwardsPoint::vartime_multiscalar_mul(&scalars[..n], &points[..n]), want, "{n} terms");
    }
}

/// Signatures by few keys, each key several times in a batch (a client's request, a gossip batch): honest ones
/// pass, one bad signature among those of the same key fails the batch, and keys with a torsion component
/// (whose terms only cancel under the cofactor) behave as alone.
#[test]
fn batches_with_repeated_keys_give_the_same_verdicts() {
    let mut cases = Vec::new();
    for (i, t) in EIGHT_TORSION.iter().enumerate().take(4) {
        let secret = Scalar::from_bytes_mod_order([i as u8 + 11; 32]);
        let public = ED25519_BASEPOINT_POINT * secret + t;
        for j in 0..6u8 {
            let nonce = Scalar::from_bytes_mod_order([i as u8 * 16 + j + 1; 32]);
            let message = [i as u8, j, 7];
            cases.push(sign_raw(&public, secret, nonce, &EIGHT_TORSION[(i + j as usize) % 8], &message));
        }
    }
    assert!(single(&cases).into_iter().all(|ok| ok));
    assert!(batch(&cases));
    // Interleaved rather than grouped: the same.
    let mut interleaved: Vec<Case> =
        (0..6).flat_map(|j| (0..4).map(move |i| i * 6 + j)).map(|k| cases[k].clone()).collect();
    assert!(batch(&interleaved));
    // One bad signature of a repeated key, anywhere in the batch: refused, and found alone.
    for bad_at in [0, 5, 13, 23] {
        let mut broken = interleaved.clone();
        broken[bad_at].message[2] ^= 1;
        assert!(!batch(&broken), "bad at {bad_at}");
        let bad: Vec<usize> = single(&broken).iter().enumerate().filter(|(_, ok)| !**ok).map(|(i, _)| i).collect();
        assert_eq!(bad, vec![bad_at]);
    }
    // The same signature twice is two terms of one key: still valid.
    interleaved.push(interleaved[0].clone());
    assert!(batch(&interleaved));
    // Two signatures by one key whose errors cancel in a plain sum: s + d on one and s - d on the other. Each
    // is refused alone; the batch refuses too because each equation gets its own coefficient.
    let mut pair = vec![cases[0].clone(), cases[1].clone()];
    let d = Scalar::from_bytes_mod_order([3; 32]);
    let s0 = Scalar::from_canonical_bytes(pair[0].signature[32..].try_into().unwrap()).unwrap() + d;
    let s1 = Scalar::from_canonical_bytes(pair[1].signature[32..].try_into().unwrap()).unwrap() - d;
    pair[0].signature[32..].copy_from_slice(s0.as_bytes());
    pair[1].signature[32..].copy_from_slice(s1.as_bytes());
    assert_eq!(single(&pair), vec![false, false]);
    assert!(!batch(&pair));
}

/// No encoding of a small-order point, canonical or not, becomes a key that the checks without a weak-key
/// test take (`crypto::CheckedKey`): each is refused as weak where it enters.
#[test]
fn every_small_order_encoding_is_refused_as_a_checked_key() {
    let encodings = small_order_encodings();
    assert_eq!(encodings.len(), 14);
    for e in encodings {
        let key = crate::PublicKey(e);
        assert_eq!(key.checked_key(), Err(crate::crypto::CryptoError::WeakKey), "{}", hex::encode(e));
        assert_eq!(
            crate::crypto::KeyCache::verifying_key(&crate::crypto::NoKeyCache, &key),
            Err(crate::crypto::CryptoError::WeakKey)
        );
    }
}
