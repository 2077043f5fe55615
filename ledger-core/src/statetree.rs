//! The state commitment: a sparse Merkle tree over accounts that yields proofs of presence and of absence,
//! and splits into parts that a syncing node checks one at a time.
//!
//! # Shape
//!
//! Every non-empty account sits at a 256-bit key, `key = H_key(address)`, and the tree is the binary trie of
//! those keys (bit 0 is the most significant bit of byte 0), compressed: a subtree holding exactly one
//! account is that account's leaf, placed as high as it goes, and a subtree holding none is empty. So the
//! tree is a function of the set of accounts alone, whatever order they were inserted or updated in.
//!
//! # Hashes
//!
//! Each is blake3 in keyed mode under a key derived once from a domain string
//! (`blake3::derive_key("ledger v1 state …", [])`), so no hash of one kind can be taken for another:
//!
//! - `key = H_key(address)` ("ledger v1 state key");
//! - `value = H_value(address ‖ balance_le64 ‖ nonce_le64)` ("ledger v1 state value");
//! - `leaf = H_leaf(key ‖ value)` ("ledger v1 state leaf node");
//! - `branch = H_branch(left ‖ right)` ("ledger v1 state branch");
//! - the empty subtree hashes to 32 zero bytes, and the state root is the root node's hash.
//!
//! # Proofs
//!
//! A [`StateProof`] for an address is the sibling hashes on the way down the address's key path (root
//! first) to where the path ends, and the leaf found there, if any. The verifier hashes back up from that
//! end: the address's own leaf proves presence; an empty end or another key's leaf whose key shares the
//! path so far proves absence. A proof is at most 256 siblings (in practice about log2 of the accounts).
//!
//! # Parts, for state sync
//!
//! A [`Manifest`] cuts the key space into [`Part`]s (positions in the tree, in key order), each with the
//! hash and kind of the subtree there. [`Manifest::verify`] folds the parts back up to the state root; a
//! chunk (the accounts of one part) is then checked alone by [`Part::verify_chunk`], which rebuilds that
//! subtree. A peer that lies about one chunk is caught at that chunk.
//!
//! # Costs
//!
//! Nodes are immutable and shared (`Arc`): an update copies only the paths it changes, so the tree of a
//! height is kept for readers by cloning its root, O(1), while the next block builds the next one. Updates
//! come in sorted batches ([`StateTree::apply`]), so the upper levels a block's accounts share are hashed
//! once per block, not once per account. Nothing is stored on disk: the tree is rebuilt from the accounts
//! when a node opens its database.

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use borsh::{BorshDeserialize, BorshSerialize};

use crate::crypto::Address;
use crate::hash::Hash;
use crate::state::Account;

/// Bits in a key: the depth of the uncompressed tree.
pub const KEY_BITS: usize = 256;

/// The most parts a manifest may have (bounds what a syncing node accepts before allocating).
pub const MANIFEST_PARTS_MAX: usize = 1 << 16;

struct Keys {
    key: [u8; 32],
    value: [u8; 32],
    leaf: [u8; 32],
    branch: [u8; 32],
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        key: blake3::derive_key("ledger v1 state key", &[]),
        value: blake3::derive_key("ledger v1 state value", &[]),
        leaf: blake3::derive_key("ledger v1 state leaf node", &[]),
        branch: blake3::derive_key("ledger v1 state branch", &[]),
    })
}

fn keyed(key: &[u8; 32], parts: &[&[u8]]) -> Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    for p in parts {
        h.update(p);
    }
    Hash(*h.finalize().as_bytes())
}

/// The key of an address in the tree.
pub fn key_of(address: &Address) -> Hash {
    keyed(&keys().key, &[&address.0])
}

/// The hash of an account's value at an address.
pub fn value_hash(address: &Address, account: &Account) -> Hash {
    keyed(&keys().value, &[&address.0, &account.balance.to_le_bytes(), &account.nonce.to_le_bytes()])
}

/// The hash of a leaf.
pub fn leaf_hash(key: &Hash, value: &Hash) -> Hash {
    keyed(&keys().leaf, &[&key.0, &value.0])
}

/// The hash of a branch.
pub fn branch_hash(left: &Hash, right: &Hash) -> Hash {
    keyed(&keys().branch, &[&left.0, &right.0])
}

/// Bit `i` of a key (0 is the most significant bit of the first byte).
pub fn bit(key: &Hash, i: usize) -> bool {
    (key.0[i / 8] >> (7 - i % 8)) & 1 == 1
}

/// Whether `a` and `b` agree on their first `depth` bits.
fn same_prefix(a: &Hash, b: &Hash, depth: usize) -> bool {
    let full = depth / 8;
    if a.0[..full] != b.0[..full] {
        return false;
    }
    let rest = depth % 8;
    rest == 0 || (a.0[full] ^ b.0[full]) >> (8 - rest) == 0
}

/// `key` with every bit from `depth` on cleared: the position of depth `depth` on its path.
fn prefix(key: &Hash, depth: usize) -> Hash {
    let mut out = Hash::ZERO;
    let full = depth / 8;
    out.0[..full].copy_from_slice(&key.0[..full]);
    let rest = depth % 8;
    if rest != 0 {
        out.0[full] = key.0[full] & (0xffu8 << (8 - rest));
    }
    out
}

/// `position` with bit `i` set.
fn with_bit(position: &Hash, i: usize) -> Hash {
    let mut out = *position;
    out.0[i / 8] |= 1 << (7 - i % 8);
    out
}

struct Leaf {
    key: Hash,
    address: Address,
    account: Account,
    hash: Hash,
}

struct Branch {
    left: Node,
    right: Node,
    hash: Hash,
    leaves: u64,
}

#[derive(Clone)]
enum Node {
    Empty,
    Leaf(Arc<Leaf>),
    Branch(Arc<Branch>),
}

/// What a subtree is: nothing, one account's leaf, or a branch over two or more accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    Empty,
    Leaf,
    Branch,
}

impl Node {
    fn leaf(address: Address, account: Account) -> Node {
        let key = key_of(&address);
        let hash = leaf_hash(&key, &value_hash(&address, &account));
        Node::Leaf(Arc::new(Leaf { key, address, account, hash }))
    }

    fn hash(&self) -> Hash {
        match self {
            Node::Empty => Hash::ZERO,
            Node::Leaf(l) => l.hash,
            Node::Branch(b) => b.hash,
        }
    }

    fn leaves(&self) -> u64 {
        match self {
            Node::Empty => 0,
            Node::Leaf(_) => 1,
            Node::Branch(b) => b.leaves,
        }
    }

    fn kind(&self) -> NodeKind {
        match self {
            Node::Empty => NodeKind::Empty,
            Node::Leaf(_) => NodeKind::Leaf,
            Node::Branch(_) => NodeKind::Branch,
        }
    }

    /// The node over two subtrees, compressed: one account alone moves up.
    fn join(left: Node, right: Node) -> Node {
        match (&left, &right) {
            (Node::Empty, Node::Empty) => Node::Empty,
            (Node::Leaf(_), Node::Empty) => left,
            (Node::Empty, Node::Leaf(_)) => right,
            _ => {
                let hash = branch_hash(&left.hash(), &right.hash());
                let leaves = left.leaves() + right.leaves();
                Node::Branch(Arc::new(Branch { left, right, hash, leaves }))
            }
        }
    }

    /// This subtree (at `depth`, every key in `changes` on its path) with `changes` applied: sorted by
    /// key, distinct, `None` removing the account.
    fn update(&self, depth: usize, changes: &[Change]) -> Node {
        if changes.is_empty() {
            return self.clone();
        }
        if let [c] = changes {
            match self {
                Node::Empty => return c.node(),
                Node::Leaf(l) if l.key == c.key => return c.node(),
                _ => {}
            }
        }
        if depth >= KEY_BITS {
            // Distinct keys always part before depth 256; only equal keys get here. Keep the last change.
            return changes.last().map_or(Node::Empty, Change::node);
        }
        let split = changes.partition_point(|c| !bit(&c.key, depth));
        let (lo, hi) = changes.split_at(split);
        let (left, right) = match self {
            Node::Empty => (Node::Empty, Node::Empty),
            Node::Leaf(l) if bit(&l.key, depth) => (Node::Empty, self.clone()),
            Node::Leaf(_) => (self.clone(), Node::Empty),
            Node::Branch(b) => (b.left.clone(), b.right.clone()),
        };
        Node::join(left.update(depth + 1, lo), right.update(depth + 1, hi))
    }

    fn collect(&self, out: &mut Vec<(Address, Account)>) {
        match self {
            Node::Empty => {}
            Node::Leaf(l) => out.push((l.address, l.account)),
            Node::Branch(b) => {
                b.left.collect(out);
                b.right.collect(out);
            }
        }
    }
}

struct Change {
    key: Hash,
    address: Address,
    account: Account,
}

impl Change {
    fn node(&self) -> Node {
        if self.account.is_empty() { Node::Empty } else { Node::leaf(self.address, self.account) }
    }
}

fn sorted_changes(changes: impl IntoIterator<Item = (Address, Account)>) -> Vec<Change> {
    let mut v: Vec<Change> =
        changes.into_iter().map(|(address, account)| Change { key: key_of(&address), address, account }).collect();
    // Stable: of two changes to one address the later wins (dedup keeps the first of a run, so reverse).
    v.reverse();
    v.sort_by_key(|c| c.key);
    v.dedup_by(|later, earlier| later.key == earlier.key);
    v
}

/// The tree of all accounts at one height. Cloning is O(1) and shares every node.
#[derive(Clone)]
pub struct StateTree {
    root: Node,
}

impl Default for StateTree {
    fn default() -> Self {
        StateTree { root: Node::Empty }
    }
}

impl std::fmt::Debug for StateTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateTree({:?}, {} accounts)", self.root(), self.len())
    }
}

impl PartialEq for StateTree {
    fn eq(&self, other: &Self) -> bool {
        self.root() == other.root()
    }
}

impl Eq for StateTree {}

impl StateTree {
    /// The tree of these accounts (empty ones are left out; of two for one address the later counts).
    pub fn from_accounts(accounts: impl IntoIterator<Item = (Address, Account)>) -> StateTree {
        StateTree::default().apply(accounts)
    }

    /// The tree with these accounts set to these values (an empty account is removed). Order does not
    /// matter except between two values for one address, where the later wins.
    pub fn apply(&self, changes: impl IntoIterator<Item = (Address, Account)>) -> StateTree {
        let changes = sorted_changes(changes);
        StateTree { root: self.root.update(0, &changes) }
    }

    /// The state root.
    pub fn root(&self) -> Hash {
        self.root.hash()
    }

    /// Number of accounts.
    pub fn len(&self) -> u64 {
        self.root.leaves()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The account at `address` (the empty account if there is none).
    pub fn get(&self, address: &Address) -> Account {
        let key = key_of(address);
        let mut node = &self.root;
        let mut depth = 0;
        loop {
            match node {
                Node::Empty => return Account::default(),
                Node::Leaf(l) => return if l.key == key { l.account } else { Account::default() },
                Node::Branch(b) => {
                    node = if bit(&key, depth) { &b.right } else { &b.left };
                    depth += 1;
                }
            }
        }
    }

    /// The account at `address` (`None` when absent) and the proof of it against [`Self::root`].
    pub fn prove(&self, address: &Address) -> (Option<Account>, StateProof) {
        let key = key_of(address);
        let mut siblings = Vec::new();
        let mut node = &self.root;
        loop {
            match node {
                Node::Empty => return (None, StateProof { siblings, leaf: None }),
                Node::Leaf(l) => {
                    let leaf = Some(ProofLeaf { key: l.key, value: value_hash(&l.address, &l.account) });
                    let account = (l.key == key).then_some(l.account);
                    return (account, StateProof { siblings, leaf });
                }
                Node::Branch(b) => {
                    let right = bit(&key, siblings.len());
                    let (next, other) = if right { (&b.right, &b.left) } else { (&b.left, &b.right) };
                    siblings.push(other.hash());
                    node = next;
                }
            }
        }
    }

    /// Every account in key order.
    pub fn accounts(&self) -> Vec<(Address, Account)> {
        let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        self.root.collect(&mut out);
        out
    }

    /// Cut the tree into parts of at most `max_leaves` accounts each where the tree allows (a branch is
    /// split until its halves fit; a part never splits one account), in key order.
    pub fn manifest(&self, max_leaves: u64) -> Manifest {
        fn walk(node: &Node, depth: usize, position: Hash, max: u64, out: &mut Vec<Part>) {
            match node {
                Node::Branch(b) if b.leaves > max && depth < KEY_BITS => {
                    walk(&b.left, depth + 1, position, max, out);
                    walk(&b.right, depth + 1, with_bit(&position, depth), max, out);
                }
                _ => out.push(Part {
                    depth: depth as u16,
                    position,
                    hash: node.hash(),
                    kind: node.kind(),
                    leaves: node.leaves(),
                }),
            }
        }
        let mut parts = Vec::new();
        walk(&self.root, 0, Hash::ZERO, max_leaves.max(1), &mut parts);
        Manifest { parts }
    }

    /// The accounts of one part, in key order (what [`Part::verify_chunk`] checks).
    pub fn chunk(&self, part: &Part) -> Vec<(Address, Account)> {
        self.chunk_at(part.depth, &part.position, u64::MAX).unwrap_or_default()
    }

    /// The accounts whose keys start with the first `depth` bits of `position`, in key order, or `None`
    /// when there are more than `max` (a position deeper than 256 bits holds nothing).
    pub fn chunk_at(&self, depth: u16, position: &Hash, max: u64) -> Option<Vec<(Address, Account)>> {
        let depth = usize::from(depth);
        if depth > KEY_BITS {
            return Some(Vec::new());
        }
        let mut node = &self.root;
        let mut d = 0;
        while d < depth {
            match node {
                Node::Branch(b) => {
                    node = if bit(position, d) { &b.right } else { &b.left };
                    d += 1;
                }
                Node::Leaf(l) => {
                    return Some(if same_prefix(&l.key, position, depth) {
                        vec![(l.address, l.account)]
                    } else {
                        Vec::new()
                    });
                }
                Node::Empty => return Some(Vec::new()),
            }
        }
        if node.leaves() > max {
            return None;
        }
        let mut out = Vec::with_capacity(usize::try_from(node.leaves()).unwrap_or(0));
        node.collect(&mut out);
        Some(out)
    }
}

/// The leaf where a proof's path ends.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct ProofLeaf {
    pub key: Hash,
    /// [`value_hash`] of that leaf's account.
    pub value: Hash,
}

/// A proof that an address holds an account, or holds none, under a state root.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct StateProof {
    /// Sibling hashes from the root down.
    pub siblings: Vec<Hash>,
    /// The leaf at the end of the path; `None` when the path ends in an empty subtree.
    pub leaf: Option<ProofLeaf>,
}

/// Why a proof does not show what was claimed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("proof has {0} siblings, more than the 256 a key has bits")]
    TooDeep(usize),
    #[error("the account claimed present is empty (an empty account is absent)")]
    EmptyAccount,
    #[error("the proof ends at no leaf of this address, so it cannot show the account present")]
    NotThisLeaf,
    #[error("the proof's leaf does not hold the account claimed")]
    WrongValue,
    #[error("the proof ends at this address's own leaf, so it cannot show the address absent")]
    PresentNotAbsent,
    #[error("the proof's leaf is not on this address's key path")]
    OffPath,
    #[error("the proof hashes to {computed}, not the state root {root}")]
    RootMismatch { computed: Hash, root: Hash },
}

impl StateProof {
    /// The largest canonical encoding of a proof (256 siblings and a leaf), for decoding limits.
    pub const ENCODED_MAX: usize = 4 + 32 * KEY_BITS + 1 + 64;

    /// Check that under `root`, `address` holds `account` (`None`: holds nothing).
    pub fn verify(&self, root: &Hash, address: &Address, account: Option<&Account>) -> Result<(), ProofError> {
        let depth = self.siblings.len();
        if depth > KEY_BITS {
            return Err(ProofError::TooDeep(depth));
        }
        let key = key_of(address);
        let mut h = match (account, &self.leaf) {
            (Some(a), _) if a.is_empty() => return Err(ProofError::EmptyAccount),
            (Some(a), Some(leaf)) => {
                if leaf.key != key {
                    return Err(ProofError::NotThisLeaf);
                }
                if leaf.value != value_hash(address, a) {
                    return Err(ProofError::WrongValue);
                }
                leaf_hash(&leaf.key, &leaf.value)
            }
            (Some(_), None) => return Err(ProofError::NotThisLeaf),
            (None, None) => Hash::ZERO,
            (None, Some(leaf)) => {
                if leaf.key == key {
                    return Err(ProofError::PresentNotAbsent);
                }
                if !same_prefix(&leaf.key, &key, depth) {
                    return Err(ProofError::OffPath);
                }
                leaf_hash(&leaf.key, &leaf.value)
            }
        };
        for (i, sibling) in self.siblings.iter().enumerate().rev() {
            h = if bit(&key, i) { branch_hash(sibling, &h) } else { branch_hash(&h, sibling) };
        }
        if h != *root {
            return Err(ProofError::RootMismatch { computed: h, root: *root });
        }
        Ok(())
    }
}

/// One position of the tree and the subtree there.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize)]
pub struct Part {
    /// How many leading bits of `position` name the position.
    pub depth: u16,
    /// The position's key prefix, every bit from `depth` on zero.
    pub position: Hash,
    pub hash: Hash,
    pub kind: NodeKind,
    /// Accounts in the part as the manifest's sender claims: not covered by any hash, so a hint (for
    /// progress and size limits), never a check.
    pub leaves: u64,
}

/// Why a manifest or a chunk was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartError {
    #[error("manifest has {0} parts, more than {MANIFEST_PARTS_MAX}")]
    TooManyParts(usize),
    #[error("part {index} is not where the parts before it end (depth {depth})")]
    Misplaced { index: usize, depth: u16 },
    #[error("part {index}: a {kind:?} part with {leaves} accounts and hash {hash} is not a subtree of that kind")]
    BadKind { index: usize, kind: NodeKind, leaves: u64, hash: Hash },
    #[error("the manifest does not cover the key space (it ends after {parts} parts)")]
    Incomplete { parts: usize },
    #[error("the manifest folds to {computed}, not the state root {root}")]
    RootMismatch { computed: Hash, root: Hash },
    #[error("chunk account {index} is not in its part or not in key order")]
    OutOfPart { index: usize },
    #[error("chunk account {index} is empty (empty accounts are absent)")]
    EmptyAccount { index: usize },
    #[error("chunk hashes to {computed} ({kind:?}), its part to {expected}")]
    ChunkMismatch { computed: Hash, kind: NodeKind, expected: Hash },
}

/// The parts a tree is cut into for state sync, in key order.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize, serde::Serialize)]
pub struct Manifest {
    pub parts: Vec<Part>,
}

impl Manifest {
    /// Check that the parts cover the key space in order and fold up to `root`. After this each part's
    /// chunk can be checked alone.
    pub fn verify(&self, root: &Hash) -> Result<(), PartError> {
        if self.parts.len() > MANIFEST_PARTS_MAX {
            return Err(PartError::TooManyParts(self.parts.len()));
        }
        for (index, p) in self.parts.iter().enumerate() {
            let consistent = match p.kind {
                NodeKind::Empty => p.leaves == 0 && p.hash == Hash::ZERO,
                NodeKind::Leaf => p.leaves == 1 && p.hash != Hash::ZERO,
                NodeKind::Branch => p.leaves >= 2 && p.hash != Hash::ZERO,
            };
            if !consistent {
                return Err(PartError::BadKind { index, kind: p.kind, leaves: p.leaves, hash: p.hash });
            }
        }
        let mut next = 0;
        let (computed, _) = fold(&self.parts, &mut next, 0, Hash::ZERO)?;
        if next != self.parts.len() {
            return Err(PartError::Misplaced { index: next, depth: self.parts[next].depth });
        }
        if computed != *root {
            return Err(PartError::RootMismatch { computed, root: *root });
        }
        Ok(())
    }
}

/// Hash and kind of the position (`depth`, `position`) from the parts starting at `*next`.
fn fold(parts: &[Part], next: &mut usize, depth: usize, position: Hash) -> Result<(Hash, NodeKind), PartError> {
    let index = *next;
    let part = parts.get(index).ok_or(PartError::Incomplete { parts: parts.len() })?;
    let part_depth = usize::from(part.depth);
    if part_depth > KEY_BITS || part_depth < depth || !same_prefix(&part.position, &position, depth) {
        return Err(PartError::Misplaced { index, depth: part.depth });
    }
    if part_depth == depth {
        if part.position != position {
            return Err(PartError::Misplaced { index, depth: part.depth });
        }
        *next += 1;
        return Ok((part.hash, part.kind));
    }
    let left = fold(parts, next, depth + 1, position)?;
    let right = fold(parts, next, depth + 1, with_bit(&position, depth))?;
    Ok(match (left.1, right.1) {
        (NodeKind::Empty, NodeKind::Empty) => (Hash::ZERO, NodeKind::Empty),
        (NodeKind::Leaf, NodeKind::Empty) => left,
        (NodeKind::Empty, NodeKind::Leaf) => right,
        _ => (branch_hash(&left.0, &right.0), NodeKind::Branch),
    })
}

impl Part {
    /// Check a chunk (the accounts of this part, in key order) against the part's hash: the accounts
    /// must be exactly the part's (the hash decides; the part's `leaves` is not consulted).
    pub fn verify_chunk(&self, accounts: &[(Address, Account)]) -> Result<(), PartError> {
        let depth = usize::from(self.depth).min(KEY_BITS);
        let mut changes = Vec::with_capacity(accounts.len());
        for (index, (address, account)) in accounts.iter().enumerate() {
            if account.is_empty() {
                return Err(PartError::EmptyAccount { index });
            }
            let key = key_of(address);
            let ordered = changes.last().is_none_or(|c: &Change| c.key.cmp(&key) == Ordering::Less);
            if !ordered || !same_prefix(&key, &self.position, depth) {
                return Err(PartError::OutOfPart { index });
            }
            changes.push(Change { key, address: *address, account: *account });
        }
        let node = Node::Empty.update(depth, &changes);
        if node.hash() != self.hash || node.kind() != self.kind {
            return Err(PartError::ChunkMismatch { computed: node.hash(), kind: node.kind(), expected: self.hash });
        }
        Ok(())
    }

    /// Whether the key of `address` falls in this part.
    pub fn contains(&self, address: &Address) -> bool {
        same_prefix(&key_of(address), &self.position, usize::from(self.depth).min(KEY_BITS))
    }
}

/// Prefix of `key` at `depth` (for callers naming positions).
pub fn position_of(key: &Hash, depth: usize) -> Hash {
    prefix(key, depth.min(KEY_BITS))
}

#[cfg(test)]
mod tests;
