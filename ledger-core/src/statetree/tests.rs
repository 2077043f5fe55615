use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::crypto::PublicKey;

fn addr(i: u32) -> Address {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b[31] = 0x5a;
    PublicKey(b)
}

fn acct(balance: u64, nonce: u64) -> Account {
    Account { balance, nonce }
}

/// The root computed the slow way: the compressed trie of a map, recursively, with no sharing.
fn reference_root(accounts: &BTreeMap<Address, Account>) -> Hash {
    fn go(leaves: &[(Hash, Hash)], depth: usize) -> Hash {
        match leaves {
            [] => Hash::ZERO,
            [(k, v)] => leaf_hash(k, v),
            _ => {
                let split = leaves.partition_point(|(k, _)| !bit(k, depth));
                branch_hash(&go(&leaves[..split], depth + 1), &go(&leaves[split..], depth + 1))
            }
        }
    }
    let mut leaves: Vec<(Hash, Hash)> = accounts
        .iter()
        .filter(|(_, a)| !a.is_empty())
        .map(|(address, a)| (key_of(address), value_hash(address, a)))
        .collect();
    leaves.sort();
    go(&leaves, 0)
}

#[test]
fn empty_tree_has_the_zero_root_and_proves_absence() {
    let t = StateTree::default();
    assert_eq!(t.root(), Hash::ZERO);
    let (a, proof) = t.prove(&addr(1));
    assert_eq!(a, None);
    assert!(proof.siblings.is_empty());
    proof.verify(&t.root(), &addr(1), None).unwrap();
    assert_eq!(proof.verify(&t.root(), &addr(1), Some(&acct(1, 0))), Err(ProofError::NotThisLeaf));
}

#[test]
fn one_account_is_its_leaf_at_the_root() {
    let t = StateTree::from_accounts([(addr(1), acct(10, 0))]);
    assert_eq!(t.root(), leaf_hash(&key_of(&addr(1)), &value_hash(&addr(1), &acct(10, 0))));
    let (a, proof) = t.prove(&addr(1));
    assert_eq!(a, Some(acct(10, 0)));
    proof.verify(&t.root(), &addr(1), Some(&acct(10, 0))).unwrap();
    // Another address ends at that leaf: absent.
    let (b, proof) = t.prove(&addr(2));
    assert_eq!(b, None);
    proof.verify(&t.root(), &addr(2), None).unwrap();
    assert_eq!(proof.verify(&t.root(), &addr(1), None), Err(ProofError::PresentNotAbsent));
}

#[test]
fn removing_every_account_gives_the_empty_root_back() {
    let t = StateTree::from_accounts((0..50).map(|i| (addr(i), acct(u64::from(i) + 1, 0))));
    assert_eq!(t.len(), 50);
    let t = t.apply((0..50).map(|i| (addr(i), Account::default())));
    assert_eq!(t.root(), Hash::ZERO);
    assert!(t.is_empty());
}

#[test]
fn golden_roots_and_proof() {
    // Fixed vectors: a change to the hashing or the tree's shape changes these, which changes every state
    // root on every chain. Update only with a protocol version change.
    let t = StateTree::from_accounts((0..4).map(|i| (addr(i), acct(1000 * u64::from(i + 1), u64::from(i)))));
    assert_eq!(t.root().to_hex(), "ef9026863f6b6f3eaffdfc2b7772b464ddf6c511507808cc810b9e9426384f38");
    let (_, proof) = t.prove(&addr(2));
    assert_eq!(
        hex::encode(crate::encoding::encode(&proof)),
        concat!(
            "03000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            "6deedc08bacef54c586cea3fb008aa3c2ab915fe3ddb7d5916d010ebc0f28779",
            "f775f2e3c215eab693c57d2ee7c6d13e8da470118c4816cb2e91e0ff3b23b8e8",
            "0115ba7f19c650dc30bee9b406840336d34be9a297b8175fe956f4be315fd87b",
            "1146f1e75bb6e43da2259ed08d5be3b5eca1fb05bbe3d56a6083a370bf24cacf",
            "b3",
        )
    );
}

#[test]
fn parts_rebuild_the_root_and_each_chunk_checks_alone() {
    let t = StateTree::from_accounts((0..1000).map(|i| (addr(i), acct(u64::from(i) + 1, 3))));
    for max in [1, 7, 64, 1000, 5000] {
        let m = t.manifest(max);
        m.verify(&t.root()).unwrap();
        let mut all = Vec::new();
        for p in &m.parts {
            let chunk = t.chunk(p);
            p.verify_chunk(&chunk).unwrap();
            assert!(chunk.len() as u64 <= max.max(1) || p.kind == NodeKind::Leaf);
            all.extend(chunk);
        }
        assert_eq!(all, t.accounts());
    }
}

#[test]
fn a_bad_chunk_is_caught_at_its_part() {
    let t = StateTree::from_accounts((0..500).map(|i| (addr(i), acct(u64::from(i) + 1, 0))));
    let m = t.manifest(50);
    m.verify(&t.root()).unwrap();
    let p = m.parts.iter().find(|p| p.leaves >= 2).unwrap();
    let good = t.chunk(p);
    // One balance changed.
    let mut bad = good.clone();
    bad[0].1.balance += 1;
    assert!(matches!(p.verify_chunk(&bad), Err(PartError::ChunkMismatch { .. })));
    // One account left out, or one added from another part.
    assert!(matches!(p.verify_chunk(&good[1..]), Err(PartError::ChunkMismatch { .. })));
    // The part's claimed count is a hint: a wrong one changes nothing.
    let mut miscounted = p.clone();
    miscounted.leaves += 7;
    miscounted.verify_chunk(&good).unwrap();
    // A bounded read refuses a position holding more than asked for.
    assert_eq!(t.chunk_at(0, &Hash::ZERO, 499), None);
    assert_eq!(t.chunk_at(0, &Hash::ZERO, 500).map(|c| c.len()), Some(500));
    let other = m.parts.iter().find(|q| q.position != p.position && q.leaves >= 1).unwrap();
    let mut swapped = good.clone();
    swapped[0] = t.chunk(other)[0];
    assert!(p.verify_chunk(&swapped).is_err());
    // Out of order.
    let mut reordered = good.clone();
    reordered.swap(0, 1);
    assert!(matches!(p.verify_chunk(&reordered), Err(PartError::OutOfPart { .. })));
}

#[test]
fn a_bad_manifest_is_refused() {
    let t = StateTree::from_accounts((0..300).map(|i| (addr(i), acct(u64::from(i) + 1, 0))));
    let m = t.manifest(20);
    let mut wrong_hash = m.clone();
    wrong_hash.parts[1].hash.0[0] ^= 1;
    assert!(wrong_hash.verify(&t.root()).is_err());
    let mut missing = m.clone();
    missing.parts.pop();
    assert!(matches!(missing.verify(&t.root()), Err(PartError::Incomplete { .. })));
    let mut extra = m.clone();
    extra.parts.push(m.parts[0].clone());
    assert!(matches!(extra.verify(&t.root()), Err(PartError::Misplaced { .. })));
    let mut kind = m.clone();
    kind.parts[0].kind = NodeKind::Empty;
    assert!(matches!(kind.verify(&t.root()), Err(PartError::BadKind { .. })));
    // A manifest of another state does not fold to this root.
    let other = t.apply([(addr(1), acct(7, 7))]).manifest(20);
    assert!(matches!(other.verify(&t.root()), Err(PartError::RootMismatch { .. })));
    // Deeper than a key has bits.
    let deep = Manifest {
        parts: vec![Part { depth: 300, position: Hash::ZERO, hash: Hash::ZERO, kind: NodeKind::Empty, leaves: 0 }],
    };
    assert!(deep.verify(&Hash::ZERO).is_err());
}

fn arb_ops() -> impl Strategy<Value = Vec<Vec<(u32, u64, u64)>>> {
    // Blocks of (account index in a small space so updates collide, balance, nonce); balance 0 and nonce 0
    // removes the account.
    proptest::collection::vec(proptest::collection::vec((0u32..64, 0u64..4, 0u64..3), 0..20), 1..12)
}

proptest! {
    #[test]
    fn incremental_root_equals_the_root_from_scratch(blocks in arb_ops()) {
        let mut tree = StateTree::default();
        let mut map = BTreeMap::new();
        for block in blocks {
            let changes: Vec<(Address, Account)> =
                block.iter().map(|&(i, b, n)| (addr(i), acct(b, n))).collect();
            tree = tree.apply(changes.clone());
            for (a, acc) in changes {
                map.insert(a, acc);
            }
            prop_assert_eq!(tree.root(), reference_root(&map));
            let scratch = StateTree::from_accounts(map.iter().map(|(a, b)| (*a, *b)));
            prop_assert_eq!(tree.root(), scratch.root());
            prop_assert_eq!(tree.len(), map.values().filter(|a| !a.is_empty()).count() as u64);
        }
    }

    #[test]
    fn root_does_not_depend_on_insertion_order(mut accounts in proptest::collection::vec((0u32..1000, 1u64..100), 0..60), seed in any::<u64>()) {
        accounts.sort();
        accounts.dedup_by_key(|(i, _)| *i);
        let a = StateTree::from_accounts(accounts.iter().map(|&(i, b)| (addr(i), acct(b, 0))));
        // One at a time, in a shuffled order.
        let mut order = accounts.clone();
        let mut s = seed;
        for i in (1..order.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            order.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut b = StateTree::default();
        for (i, bal) in order {
            b = b.apply([(addr(i), acct(bal, 0))]);
        }
        prop_assert_eq!(a.root(), b.root());
    }

    #[test]
    fn proofs_verify_for_present_and_absent_and_fail_when_changed(
        present in proptest::collection::btree_map(0u32..500, 1u64..1000, 0..80),
        probe in 0u32..600,
        flip in 0usize..10_000,
    ) {
        let tree = StateTree::from_accounts(present.iter().map(|(i, b)| (addr(*i), acct(*b, 1))));
        let root = tree.root();
        let who = addr(probe);
        let (got, proof) = tree.prove(&who);
        let expected = present.get(&probe).map(|b| acct(*b, 1));
        prop_assert_eq!(got, expected);
        prop_assert!(proof.verify(&root, &who, got.as_ref()).is_ok());
        // The other claim fails.
        match got {
            Some(a) => {
                prop_assert!(proof.verify(&root, &who, None).is_err());
                prop_assert!(proof.verify(&root, &who, Some(&acct(a.balance + 1, 1))).is_err());
            }
            None => prop_assert!(proof.verify(&root, &who, Some(&acct(1, 1))).is_err()),
        }
        // Another root fails.
        let mut other = root;
        other.0[flip % 32] ^= 1 << (flip % 8);
        prop_assert!(proof.verify(&other, &who, got.as_ref()).is_err());
        // Any bit of the proof's encoding flipped: it fails to decode or fails to verify.
        let bytes = crate::encoding::encode(&proof);
        if !bytes.is_empty() {
            let mut b = bytes.clone();
            let at = flip % b.len();
            b[at] ^= 1 << (flip % 8);
            if let Ok(p) = crate::encoding::decode::<StateProof>(&b, StateProof::ENCODED_MAX) {
                prop_assert!(p.verify(&root, &who, got.as_ref()).is_err());
            }
        }
        // A sibling dropped or added fails.
        let mut shorter = proof.clone();
        if shorter.siblings.pop().is_some() {
            prop_assert!(shorter.verify(&root, &who, got.as_ref()).is_err());
        }
        let mut longer = proof.clone();
        longer.siblings.push(Hash::ZERO);
        prop_assert!(longer.verify(&root, &who, got.as_ref()).is_err());
    }
}
