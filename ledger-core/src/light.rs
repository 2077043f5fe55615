//! Following validator-set changes from a trusted set, as a light client does: the rule a state-syncing
//! node applies to learn which set certifies the snapshot it is offered.
//!
//! A change decided in block `H` applies at `H + 2`, and header `a - 1` names the set of height `a` in
//! `next_validators_hash` while it is certified by the set of `a - 1`. So from a trusted set `T` in force
//! from height `f`, a [`Transition`] to the set `S` first in force at `a > f` is accepted when the header
//! is at `a - 1` and of this chain, it names `T` as its `validators_hash`, more than 2/3 of `T`'s power
//! certified it, and `S` hashes to its `next_validators_hash`. The walk is sequential from genesis (the
//! wallet's `verify` module says why it does not skip).

use borsh::{BorshDeserialize, BorshSerialize};

use crate::block::BlockHeader;
use crate::cert::{CertError, CommitCertificate};
use crate::hash::Hash;
use crate::types::Height;
use crate::validator::ValidatorSet;

/// One change of the validator set with the certified header that names it.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct Transition {
    /// The first height the new set is in force at.
    pub first_height: Height,
    pub set: ValidatorSet,
    /// The header at `first_height - 1` and its certificate.
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
}

/// A set trusted to be in force from a height on (until the next transition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trusted {
    pub first_height: Height,
    pub set: ValidatorSet,
}

/// Why a transition was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("transition to height {first_height} is not after the trusted set's first height {trusted_from}")]
    NotAfter { first_height: Height, trusted_from: Height },
    #[error("transition to height {first_height}: its header is at height {header_height}, not at the height before")]
    HeaderHeight { first_height: Height, header_height: Height },
    #[error("transition to height {first_height}: its header is for another chain")]
    HeaderChain { first_height: Height },
    #[error(
        "transition to height {first_height}: its header names validator set {named}, not the trusted set {trusted}"
    )]
    TrustedSetNotNamed { first_height: Height, trusted: Hash, named: Hash },
    #[error("transition to height {first_height}: the certificate does not verify with the trusted set: {error}")]
    Certificate { first_height: Height, error: CertError },
    #[error("transition to height {first_height}: the set hashes to {set_hash}, the header names {named}")]
    SetNotNamed { first_height: Height, set_hash: Hash, named: Hash },
}

impl Trusted {
    /// Follow one transition: the new trusted set, or why the transition does not verify.
    pub fn follow(&self, chain_id: &str, t: &Transition) -> Result<Trusted, TransitionError> {
        let first_height = t.first_height;
        if first_height <= self.first_height {
            return Err(TransitionError::NotAfter { first_height, trusted_from: self.first_height });
        }
        if t.header.height.0.checked_add(1) != Some(first_height.0) {
            return Err(TransitionError::HeaderHeight { first_height, header_height: t.header.height });
        }
        if t.header.chain_id != chain_id {
            return Err(TransitionError::HeaderChain { first_height });
        }
        if t.header.validators_hash != self.set.hash() {
            return Err(TransitionError::TrustedSetNotNamed {
                first_height,
                trusted: self.set.hash(),
                named: t.header.validators_hash,
            });
        }
        t.certificate
            .verify_for(chain_id, &self.set, t.header.height, t.header.hash())
            .map_err(|error| TransitionError::Certificate { first_height, error })?;
        if t.set.hash() != t.header.next_validators_hash {
            return Err(TransitionError::SetNotNamed {
                first_height,
                set_hash: t.set.hash(),
                named: t.header.next_validators_hash,
            });
        }
        Ok(Trusted { first_height, set: t.set.clone() })
    }

    /// Follow, in order, every transition whose set starts at or below `up_to`; the set in force at `up_to`
    /// and every set reached on the way (with its first height), or the first transition that fails.
    pub fn follow_all(
        self,
        chain_id: &str,
        transitions: &[Transition],
        up_to: Height,
    ) -> Result<Vec<Trusted>, TransitionError> {
        let mut reached = vec![self];
        for t in transitions.iter().take_while(|t| t.first_height <= up_to) {
            let next = reached.last().map(|r| r.follow(chain_id, t)).transpose()?;
            reached.extend(next);
        }
        Ok(reached)
    }
}

/// What a state-syncing node needs besides the accounts: the block at the snapshot's height with its
/// certificate, the governance state after it, every validator-set change up to it (to learn, from the
/// genesis set, which set certifies it) and the manifest of the state tree's parts.
#[derive(Clone, Debug, PartialEq, Eq, BorshSerialize, BorshDeserialize)]
pub struct SnapshotMeta {
    pub block: crate::block::Block,
    pub certificate: CommitCertificate,
    pub gov: crate::governance::GovState,
    pub transitions: Vec<Transition>,
    pub manifest: crate::statetree::Manifest,
}

/// Why a snapshot's metadata was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("validator-set transitions: {0}")]
    Transition(#[from] TransitionError),
    #[error("the genesis validator set is invalid: {0}")]
    GenesisSet(String),
    #[error("the block is for another chain or at another height than its certificate ({height})")]
    WrongBlock { height: Height },
    #[error("the block names validator set {named}, the transitions lead to {reached}")]
    WrongSet { named: Hash, reached: Hash },
    #[error("the certificate does not verify: {0}")]
    Certificate(CertError),
    #[error("the block's body does not match its header ({0})")]
    Body(&'static str),
    #[error("the governance state is not the one the header commits to ({0})")]
    Gov(&'static str),
    #[error("the manifest: {0}")]
    Manifest(#[from] crate::statetree::PartError),
    #[error("manifest part {index} holds {leaves} accounts, more than the {max} a chunk may carry")]
    PartTooLarge { index: usize, leaves: u64, max: u64 },
}

impl SnapshotMeta {
    /// The snapshot's height.
    pub fn height(&self) -> Height {
        self.block.header.height
    }

    /// Check everything from the genesis alone: the transitions from the genesis set, the certificate of
    /// the block with the set they reach, the body against the header, the governance state against the
    /// header's `gov_root`, and the manifest against its `state_root` (each part at most `chunk_max`
    /// accounts). Returns every set reached, with its first height. After this each chunk is checked alone
    /// against its part ([`crate::statetree::Part::verify_chunk`]).
    pub fn verify(&self, genesis: &crate::genesis::Genesis, chunk_max: u64) -> Result<Vec<Trusted>, SnapshotError> {
        let chain_id = genesis.chain_id.as_str();
        let set = genesis.validator_set().map_err(|e| SnapshotError::GenesisSet(e.to_string()))?;
        let height = self.certificate.height;
        let h = &self.block.header;
        if h.chain_id != chain_id || h.height != height || height == Height::GENESIS {
            return Err(SnapshotError::WrongBlock { height });
        }
        let reached = Trusted { first_height: Height(1), set }.follow_all(chain_id, &self.transitions, height)?;
        let trusted = reached.last().map(|t| &t.set).ok_or(SnapshotError::WrongBlock { height })?;
        if h.validators_hash != trusted.hash() {
            return Err(SnapshotError::WrongSet { named: h.validators_hash, reached: trusted.hash() });
        }
        self.certificate.verify_for(chain_id, trusted, height, h.hash()).map_err(SnapshotError::Certificate)?;
        let b = &self.block;
        if usize::try_from(h.tx_count).ok() != Some(b.txs.len()) || h.tx_root != crate::merkle::root(&b.tx_ids()) {
            return Err(SnapshotError::Body("transactions"));
        }
        if h.ops_hash != crate::governance::ops_hash(&b.approvals, &b.evidence) {
            return Err(SnapshotError::Body("operations"));
        }
        if h.last_commit_hash != b.last_commit.as_ref().map_or(Hash::ZERO, CommitCertificate::hash) {
            return Err(SnapshotError::Body("last commit"));
        }
        if self.gov.height != height {
            return Err(SnapshotError::Gov("height"));
        }
        if self.gov.root() != h.gov_root {
            return Err(SnapshotError::Gov("root"));
        }
        if self.gov.next.hash() != h.next_validators_hash {
            return Err(SnapshotError::Gov("next validators"));
        }
        self.manifest.verify(&h.state_root)?;
        if let Some((index, p)) = self.manifest.parts.iter().enumerate().find(|(_, p)| p.leaves > chunk_max) {
            return Err(SnapshotError::PartTooLarge { index, leaves: p.leaves, max: chunk_max });
        }
        Ok(reached)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::block::{Block, PROTOCOL_VERSION};
    use crate::cert::CommitSig;
    use crate::crypto::Keypair;
    use crate::genesis::Genesis;
    use crate::governance::GovState;
    use crate::hash::Domain;
    use crate::statetree::StateTree;
    use crate::types::Round;
    use crate::validator::Validator;
    use crate::vote::{Vote, VoteKind};

    const CHAIN: &str = "light-test";

    fn keys() -> Vec<Keypair> {
        (1..=5u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
    }

    fn set(ks: &[Keypair]) -> ValidatorSet {
        ValidatorSet::new(
            ks.iter().map(|k| Validator { public_key: k.public(), power: 10, moniker: "v".into() }).collect(),
        )
        .unwrap()
    }

    fn header(height: u64, validators: &ValidatorSet, next: &ValidatorSet) -> BlockHeader {
        BlockHeader {
            version: PROTOCOL_VERSION,
            chain_id: CHAIN.into(),
            height: Height(height),
            prev_block_hash: Hash::digest(Domain::BlockHeader, &height.to_le_bytes()),
            timestamp_ms: 1_000 + height,
            proposer: keys()[0].public(),
            tx_count: 0,
            tx_root: crate::merkle::root(&[]),
            state_root: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
            validators_hash: validators.hash(),
            next_validators_hash: next.hash(),
            ops_hash: crate::governance::ops_hash(&[], &[]),
            gov_root: Hash::ZERO,
        }
    }

    /// A certificate of `header` signed by `signers` (indices into `of`).
    fn certify(header: &BlockHeader, of: &[Keypair], signers: &[usize]) -> CommitCertificate {
        let signatures = signers
            .iter()
            .map(|&i| {
                let vote = Vote {
                    kind: VoteKind::Precommit,
                    height: header.height,
                    round: Round(0),
                    block_hash: Some(header.hash()),
                    validator: of[i].public(),
                };
                CommitSig { validator_index: i as u16, signature: vote.sign(CHAIN, &of[i]).signature }
            })
            .collect();
        CommitCertificate { height: header.height, round: Round(0), block_hash: header.hash(), signatures }
    }

    /// Genesis set A = keys 0..4; from height 5 set B = keys 0..5 (header 4, certified by A).
    fn transition() -> (Trusted, Transition, ValidatorSet) {
        let ks = keys();
        let (a, b) = (set(&ks[..4]), set(&ks[..5]));
        let h = header(4, &a, &b);
        let certificate = certify(&h, &ks[..4], &[0, 1, 2]);
        (
            Trusted { first_height: Height(1), set: a },
            Transition { first_height: Height(5), set: b.clone(), header: h, certificate },
            b,
        )
    }

    #[test]
    fn a_certified_transition_is_followed_and_each_tampering_is_named() {
        let (trusted, t, b) = transition();
        assert_eq!(trusted.follow(CHAIN, &t).unwrap(), Trusted { first_height: Height(5), set: b });
        let mut other = t.clone();
        other.first_height = Height(6);
        assert!(matches!(trusted.follow(CHAIN, &other), Err(TransitionError::HeaderHeight { .. })));
        assert!(matches!(trusted.follow("other", &t), Err(TransitionError::HeaderChain { .. })));
        let mut weak = t.clone();
        weak.certificate = certify(&t.header, &keys()[..4], &[0, 1]);
        assert!(matches!(trusted.follow(CHAIN, &weak), Err(TransitionError::Certificate { .. })));
        let mut swapped = t.clone();
        swapped.set = set(&keys()[1..5]);
        assert!(matches!(trusted.follow(CHAIN, &swapped), Err(TransitionError::SetNotNamed { .. })));
        let later = Trusted { first_height: Height(5), set: trusted.set.clone() };
        assert!(matches!(later.follow(CHAIN, &t), Err(TransitionError::NotAfter { .. })));
        let stranger = Trusted { first_height: Height(1), set: set(&keys()[1..5]) };
        assert!(matches!(stranger.follow(CHAIN, &t), Err(TransitionError::TrustedSetNotNamed { .. })));
    }

    /// A snapshot at height 8 of a chain whose set changed at 5: verified from the genesis alone, and each
    /// part that does not match its header refused.
    #[test]
    fn snapshot_metadata_verifies_from_the_genesis_and_every_mismatch_is_refused() {
        let (_, t, b) = transition();
        let ks = keys();
        let genesis = Genesis {
            chain_id: CHAIN.into(),
            genesis_time_ms: 1_000,
            protocol_version: PROTOCOL_VERSION,
            validators: set(&ks[..4]).validators().to_vec(),
            accounts: vec![],
            params: Default::default(),
        };
        let tree = StateTree::from_accounts((0..50u8).map(|i| {
            (Keypair::from_seed(&[100 + i; 32]).public(), crate::state::Account { balance: 1 + u64::from(i), nonce: 0 })
        }));
        let mut gov = GovState::genesis(b.clone());
        gov.height = Height(8);
        let mut h = header(8, &b, &b);
        h.state_root = tree.root();
        h.gov_root = gov.root();
        let block = Block { header: h.clone(), txs: vec![], last_commit: None, approvals: vec![], evidence: vec![] };
        let meta = SnapshotMeta {
            certificate: certify(&h, &ks[..5], &[0, 1, 2, 3]),
            block,
            gov,
            transitions: vec![t],
            manifest: tree.manifest(8),
        };
        let reached = meta.verify(&genesis, 1024).unwrap();
        assert_eq!(reached.last().map(|r| (r.first_height, r.set.hash())), Some((Height(5), b.hash())));

        let mut no_transition = meta.clone();
        no_transition.transitions.clear();
        assert!(matches!(no_transition.verify(&genesis, 1024), Err(SnapshotError::WrongSet { .. })));
        let mut weak = meta.clone();
        weak.certificate = certify(&h, &ks[..5], &[0, 1, 2]);
        assert!(matches!(weak.verify(&genesis, 1024), Err(SnapshotError::Certificate(_))));
        let mut gov = meta.clone();
        gov.gov.jailed.insert(ks[4].public());
        assert!(matches!(gov.verify(&genesis, 1024), Err(SnapshotError::Gov("root"))));
        let mut manifest = meta.clone();
        manifest.manifest = tree.apply([(ks[0].public(), crate::state::Account { balance: 9, nonce: 9 })]).manifest(8);
        assert!(matches!(manifest.verify(&genesis, 1024), Err(SnapshotError::Manifest(_))));
        assert!(matches!(meta.verify(&genesis, 4), Err(SnapshotError::PartTooLarge { .. })));
        let mut body = meta.clone();
        body.block.evidence = meta.block.evidence.clone();
        body.block.last_commit = Some(meta.certificate.clone());
        assert!(matches!(body.verify(&genesis, 1024), Err(SnapshotError::Body("last commit"))));
        let mut chain = genesis.clone();
        chain.chain_id = "another".into();
        assert!(matches!(meta.verify(&chain, 1024), Err(SnapshotError::WrongBlock { .. })));
    }
}
