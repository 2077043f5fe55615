//! Binary Merkle tree over transaction ids, shaped as in RFC 6962 (an odd node is promoted, never
//! duplicated, so two different lists of ids cannot share a root), with inclusion proofs.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::hash::{Domain, Hash};

/// Longest proof accepted: trees hold at most 2^32 leaves.
const PROOF_SIBLINGS_MAX: usize = 32;

/// Proof that a leaf is at `index` in a tree of `leaf_count` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
pub struct MerkleProof {
    pub index: u32,
    pub leaf_count: u32,
    /// Sibling hashes from the leaf level upwards.
    pub siblings: Vec<Hash>,
}

fn leaf_hash(id: &Hash) -> Hash {
    Hash::digest(Domain::MerkleLeaf, &id.0)
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Hash::hasher(Domain::MerkleNode);
    h.update(&left.0);
    h.update(&right.0);
    Hash::from_hasher(&h)
}

/// Root over `ids`; the empty tree's root is [`Hash::ZERO`].
pub fn root(ids: &[Hash]) -> Hash {
    if ids.is_empty() {
        return Hash::ZERO;
    }
    let mut level: Vec<Hash> = ids.iter().map(leaf_hash).collect();
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [single] => *single,
            _ => unreachable_pair(),
        })
        .collect()
}

// `chunks(2)` yields one or two items; this keeps the match total without a panic path in release.
fn unreachable_pair() -> Hash {
    Hash::ZERO
}

/// Inclusion proof for leaf `index`, or `None` when out of range.
pub fn prove(ids: &[Hash], index: usize) -> Option<MerkleProof> {
    if index >= ids.len() || ids.len() > u32::MAX as usize {
        return None;
    }
    let mut siblings = Vec::new();
    let mut level: Vec<Hash> = ids.iter().map(leaf_hash).collect();
    let mut i = index;
    while level.len() > 1 {
        let sibling = i ^ 1;
        if sibling < level.len() {
            siblings.push(level[sibling]);
        }
        level = next_level(&level);
        i >>= 1;
    }
    Some(MerkleProof { index: index as u32, leaf_count: ids.len() as u32, siblings })
}

impl MerkleProof {
    /// True when this proof shows `id` at `self.index` under `root` (RFC 9162, section 2.1.3.2).
    pub fn verify(&self, root: &Hash, id: &Hash) -> bool {
        if self.index >= self.leaf_count || self.siblings.len() > PROOF_SIBLINGS_MAX {
            return false;
        }
        let mut f = u64::from(self.index);
        let mut s = u64::from(self.leaf_count) - 1;
        let mut r = leaf_hash(id);
        for p in &self.siblings {
            if s == 0 {
                return false;
            }
            if f & 1 == 1 || f == s {
                r = node_hash(p, &r);
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            } else {
                r = node_hash(&r, p);
            }
            f >>= 1;
            s >>= 1;
        }
        s == 0 && r == *root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Hash> {
        (0..n).map(|i| Hash::digest(Domain::TxId, &(i as u64).to_le_bytes())).collect()
    }

    #[test]
    fn every_leaf_proves_for_many_sizes() {
        for n in 1..40 {
            let ids = ids(n);
            let r = root(&ids);
            for (i, id) in ids.iter().enumerate() {
                let p = prove(&ids, i).expect("in range");
                assert!(p.verify(&r, id), "n={n} i={i}");
                // The same proof must not prove another id or position.
                assert!(!p.verify(&r, &Hash::digest(Domain::TxId, b"other")));
            }
        }
    }

    #[test]
    fn odd_leaf_not_duplicated() {
        let a = ids(3);
        let mut b = a.clone();
        b.push(a[2]);
        assert_ne!(root(&a), root(&b));
    }

    #[test]
    fn empty_and_out_of_range() {
        assert_eq!(root(&[]), Hash::ZERO);
        assert!(prove(&ids(3), 3).is_none());
    }
}
