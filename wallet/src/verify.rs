//! Trust-minimised confirmation that a transaction is committed, checked locally from canonical bytes.
//!
//! The node sends the transaction, the block header and the commit certificate as canonical borsh bytes
//! (`tx_hex`, `header_hex`, `certificate_hex`) plus a Merkle proof, and the changes of the validator set
//! since the set the wallet trusts (`GET /validators/transitions`: each new set's bytes, the header before
//! its first height and that header's certificate). Nothing in the node's decoded JSON is trusted:
//! [`decode_evidence`] and [`Walk::follow`] decode the bytes with `ledger-core`'s canonical decoding
//! (size-limited, re-encode must match), and [`verify_evidence`] recomputes every hash and checks:
//!
//! 1. `tx_id`: the transaction's canonical bytes hash to the id asked about;
//! 2. `tx_chain` and `tx_signature`: the transaction is for this chain and its signature verifies;
//! 3. `header_chain`: the header is for the genesis chain id;
//! 4. `header_height`: the header is at the height the node claimed;
//! 5. `proof_leaf_count`: the proof's tree size equals the header's `tx_count` (a Merkle path alone can fit
//!    two tree sizes);
//! 6. `merkle_proof`: the proof places the id under the header's `tx_root`;
//! 7. `set_transitions`: every validator-set change up to the block's height, followed from the trusted set
//!    (the genesis set, or the one a previous run stored in the trusted-state file), verified;
//! 8. `validator_set`: the header names the set those transitions lead to as the one that certifies it;
//! 9. `certificate`: more than 2/3 of that set's power signed precommits for this header's hash at this
//!    height, on this chain.
//!
//! # Following validator-set changes
//!
//! A change decided in block `H` applies at `H + 2`, and header `a - 1` names the set of height `a` in
//! `next_validators_hash` while it is certified by the set of `a - 1`. So from a trusted set `T` (in force
//! from height `f`), a transition to the set `S` first in force at `a > f` is accepted when, all from
//! canonical bytes: the header is at `a - 1` and of this chain, it names `T` (`validators_hash`), more than
//! 2/3 of `T`'s power certified it, and `S`'s bytes hash to its `next_validators_hash`. `S` becomes the
//! trusted set. The walk is sequential: every transition up to the block's height, in order, each from the
//! one before ([`Walk`]).
//!
//! Why sequential and not skipping (Tendermint's light client may jump from a trusted header to a much later
//! one when validators holding more than 1/3 of the trusted set's power signed it, since then at least one
//! honest trusted validator vouches for it): skipping is only sound while the trusted set is still bound to
//! behave, which Tendermint ties to a trusting period shorter than the unbonding period, checked against a
//! clock. This chain has neither unbonding nor a clock a wallet could trust, and a set changes only by
//! governance, so transitions are few: the walk costs one certificate check per set change, not per block,
//! and it needs only the rule every node applies (more than 2/3 of the set of that height). What it trusts:
//! that no set ever had more than 1/3 of its power faulty while it was in force *and afterwards* (keys of
//! validators that left could sign a fork of their old heights; a sequential walk from genesis, like any
//! light client without a trusting period, would accept it). The trusted-state file ([`crate::trusted`])
//! keeps the last set reached, so a later run starts from there and such old keys no longer matter to it.
//!
//! A node that leaves out a transition cannot make a block pass: the block's header then names a set the
//! walk did not reach, and `validator_set` fails. A transition that does not verify stops the walk, fails
//! `set_transitions`, and the checks after it run against the last set reached. All functions here are pure
//! (no I/O) so the tests build real blocks, sets and certificates and tamper with them.

use ledger_core::block::BlockHeader;
use ledger_core::cert::{CertError, CommitCertificate};
use ledger_core::encoding;
use ledger_core::merkle::MerkleProof;
use ledger_core::params::{MONIKER_BYTES_MAX, TX_BYTES_MAX_CEILING, VALIDATORS_MAX};
use ledger_core::{Hash, Height, SignedTransaction, TxId, ValidatorSet};
use serde::{Deserialize, Serialize};

/// Largest header accepted: fixed-size fields plus a chain id of at most 64 bytes, with room to spare.
pub const HEADER_BYTES_MAX: usize = 1024;
/// Largest certificate accepted: one signature per validator plus the fixed fields.
pub const CERTIFICATE_BYTES_MAX: usize = 64 + VALIDATORS_MAX * (2 + 64);
/// Largest validator set accepted: a length and, per validator, a key, a power and a moniker with its length.
pub const VALIDATOR_SET_BYTES_MAX: usize = 4 + VALIDATORS_MAX * (32 + 8 + 4 + MONIKER_BYTES_MAX);

/// The node's evidence for a transaction, decoded from canonical bytes.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub tx: SignedTransaction,
    /// The height the node says the transaction is at.
    pub height: Height,
    pub proof: MerkleProof,
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
}

/// One check and its outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// Every check made, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    pub fn ok(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// Names of the checks that failed.
    pub fn failed(&self) -> Vec<&'static str> {
        self.checks.iter().filter(|c| !c.ok).map(|c| c.name).collect()
    }

    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    pub(crate) fn push(&mut self, name: &'static str, ok: bool, detail: String) {
        self.checks.push(Check { name, ok, detail });
    }
}

/// Why evidence could not even be decoded (this is itself a failed verification).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    #[error("{field} is not valid hex")]
    BadHex { field: &'static str },
    #[error("{field} does not decode canonically: {error}")]
    Decode { field: &'static str, error: String },
}

/// Decode the hex fields the node sent. `tx_bytes_max` is the chain's limit (genesis params).
pub fn decode_evidence(
    tx_hex: &str,
    height: u64,
    proof: MerkleProof,
    header_hex: &str,
    certificate_hex: &str,
    tx_bytes_max: usize,
) -> Result<Evidence, EvidenceError> {
    let tx_bytes = decode_hex_bounded(tx_hex, "tx_hex", tx_bytes_max.min(TX_BYTES_MAX_CEILING as usize))?;
    let tx = SignedTransaction::decode(&tx_bytes, tx_bytes_max)
        .map_err(|e| EvidenceError::Decode { field: "tx_hex", error: e.to_string() })?;
    let header: BlockHeader = decode_hex_canonical(header_hex, "header_hex", HEADER_BYTES_MAX)?;
    let certificate: CommitCertificate =
        decode_hex_canonical(certificate_hex, "certificate_hex", CERTIFICATE_BYTES_MAX)?;
    Ok(Evidence { tx, height: Height(height), proof, header, certificate })
}

/// A validator set the wallet trusts, and the first height it certifies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustedSet {
    /// The first height this set certifies: 1 for the genesis set.
    pub first_height: Height,
    pub set: ValidatorSet,
    /// Where the trust comes from: the genesis file or a trusted-state file.
    pub source: TrustSource,
}

/// Where a [`TrustedSet`] comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustSource {
    Genesis,
    /// A trusted-state file written by an earlier run (which followed the transitions up to it).
    TrustedState,
    /// A transition followed in this run.
    Followed,
}

impl TrustedSet {
    /// The genesis set, in force from height 1.
    pub fn genesis(set: ValidatorSet) -> TrustedSet {
        TrustedSet { first_height: Height(1), set, source: TrustSource::Genesis }
    }

    fn origin(&self) -> &'static str {
        match self.source {
            TrustSource::Genesis => "the genesis set",
            TrustSource::TrustedState => "from the trusted-state file",
            TrustSource::Followed => "reached through certified transitions",
        }
    }
}

/// One change of the validator set as the node sends it (`GET /validators/transitions`): canonical bytes in
/// hex, and the height the node says the new set starts at (checked against the header).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct TransitionHex {
    pub first_height: u64,
    /// The new set's canonical bytes.
    pub validators_hex: String,
    /// The header at `first_height - 1`.
    pub header_hex: String,
    /// That header's certificate.
    pub certificate_hex: String,
}

/// Why a transition was not followed. Each names the height the new set would start at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("transition to height {first_height}: {field} does not decode canonically: {error}")]
    Decode { first_height: u64, field: &'static str, error: String },
    #[error("transition to height {first_height} is not after the trusted set's first height {trusted_from}")]
    NotAfter { first_height: u64, trusted_from: Height },
    #[error("transition to height {first_height}: its header is at height {header_height}, not at the height before")]
    HeaderHeight { first_height: u64, header_height: Height },
    #[error("transition to height {first_height}: its header is for chain {got:?}, not {expected:?}")]
    HeaderChain { first_height: u64, expected: String, got: String },
    #[error(
        "transition to height {first_height}: its header names validator set {named}, not the trusted set {trusted} (a change of the set is missing before it)"
    )]
    TrustedSetNotNamed { first_height: u64, trusted: Hash, named: Hash },
    #[error(
        "transition to height {first_height}: the certificate of its header does not verify with the trusted set: {error}"
    )]
    Certificate { first_height: u64, error: CertError },
    #[error(
        "transition to height {first_height}: the set's bytes hash to {set_hash}, but the certified header names {next_validators_hash} as the next set"
    )]
    SetNotNamed { first_height: u64, set_hash: Hash, next_validators_hash: Hash },
}

/// A sequential walk through validator-set transitions from a trusted set (module doc, "Following
/// validator-set changes"). Fed one transition at a time, so a long history is never all in memory.
#[derive(Clone, Debug)]
pub struct Walk {
    /// Where the walk started.
    pub start: TrustedSet,
    /// The last set reached (the start until a transition is followed).
    pub reached: TrustedSet,
    /// How many transitions were followed.
    pub followed: usize,
    /// The first transition that did not verify; the walk stops there.
    pub error: Option<TransitionError>,
}

impl Walk {
    pub fn new(start: TrustedSet) -> Walk {
        Walk { reached: start.clone(), start, followed: 0, error: None }
    }

    /// Follow one transition from the set reached. After a failure the walk stays failed: later calls
    /// return the first error and change nothing.
    pub fn follow(&mut self, chain_id: &str, t: &TransitionHex) -> Result<(), TransitionError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.step(chain_id, t) {
            Ok(next) => {
                self.reached = next;
                self.followed += 1;
                Ok(())
            }
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn step(&self, chain_id: &str, t: &TransitionHex) -> Result<TrustedSet, TransitionError> {
        let first_height = t.first_height;
        let trusted = &self.reached;
        if first_height <= trusted.first_height.0 {
            return Err(TransitionError::NotAfter { first_height, trusted_from: trusted.first_height });
        }
        let decode_err = |field: &'static str, error: String| TransitionError::Decode { first_height, field, error };
        let hex_bytes = |text: &str, field: &'static str, max: usize| {
            decode_hex_bounded(text, field, max).map_err(|e| decode_err(field, e.to_string()))
        };
        let set_bytes = hex_bytes(&t.validators_hex, "validators_hex", VALIDATOR_SET_BYTES_MAX)?;
        let set: ValidatorSet = encoding::decode(&set_bytes, VALIDATOR_SET_BYTES_MAX)
            .map_err(|e| decode_err("validators_hex", e.to_string()))?;
        let header_bytes = hex_bytes(&t.header_hex, "header_hex", HEADER_BYTES_MAX)?;
        let header: BlockHeader =
            encoding::decode(&header_bytes, HEADER_BYTES_MAX).map_err(|e| decode_err("header_hex", e.to_string()))?;
        let cert_bytes = hex_bytes(&t.certificate_hex, "certificate_hex", CERTIFICATE_BYTES_MAX)?;
        let certificate: CommitCertificate = encoding::decode(&cert_bytes, CERTIFICATE_BYTES_MAX)
            .map_err(|e| decode_err("certificate_hex", e.to_string()))?;

        if header.height.0.checked_add(1) != Some(first_height) {
            return Err(TransitionError::HeaderHeight { first_height, header_height: header.height });
        }
        if header.chain_id != chain_id {
            return Err(TransitionError::HeaderChain {
                first_height,
                expected: chain_id.to_string(),
                got: truncate(&header.chain_id),
            });
        }
        if header.validators_hash != trusted.set.hash() {
            return Err(TransitionError::TrustedSetNotNamed {
                first_height,
                trusted: trusted.set.hash(),
                named: header.validators_hash,
            });
        }
        certificate
            .verify_for(chain_id, &trusted.set, header.height, header.hash())
            .map_err(|error| TransitionError::Certificate { first_height, error })?;
        if set.hash() != header.next_validators_hash {
            return Err(TransitionError::SetNotNamed {
                first_height,
                set_hash: set.hash(),
                next_validators_hash: header.next_validators_hash,
            });
        }
        Ok(TrustedSet { first_height: Height(first_height), set, source: TrustSource::Followed })
    }

    /// One line for the `set_transitions` check.
    pub fn describe(&self) -> String {
        let from = match self.start.source {
            TrustSource::TrustedState => {
                format!("the trusted-state file's set (in force from height {})", self.start.first_height)
            }
            _ => "the genesis set".to_string(),
        };
        let plural = if self.followed == 1 { "" } else { "s" };
        match &self.error {
            None if self.followed == 0 => format!("followed 0 validator-set transitions: {from} is still in force"),
            None => format!(
                "followed {} certified validator-set transition{plural} from {from} to the set {} in force from height {}",
                self.followed,
                self.reached.set.hash(),
                self.reached.first_height
            ),
            Some(e) => format!("followed {} transition{plural} from {from}, then: {e}", self.followed),
        }
    }
}

/// Follow, in order, the transitions whose new set starts at or below `up_to` (the block's height); later
/// ones are not needed for a block at `up_to` and are left out. Stops at the first that does not verify.
pub fn follow_transitions(chain_id: &str, start: TrustedSet, transitions: &[TransitionHex], up_to: Height) -> Walk {
    let mut walk = Walk::new(start);
    for t in transitions.iter().take_while(|t| t.first_height <= up_to.0) {
        if walk.follow(chain_id, t).is_err() {
            break;
        }
    }
    walk
}

/// Check `evidence` for transaction `id` against the chain identified by `chain_id`, with the validator set
/// `walk` reached (the walk must have been given every transition up to the block's height and no later
/// one: [`follow_transitions`]). Every check runs, so the report lists all that failed, not just the first.
pub fn verify_evidence(id: &TxId, chain_id: &str, walk: &Walk, evidence: &Evidence) -> Report {
    let mut report = Report { checks: Vec::new() };
    let Evidence { tx, height, proof, header, certificate } = evidence;

    let tx_id = tx.id();
    report.push(
        "tx_id",
        tx_id == *id,
        if tx_id == *id {
            format!("transaction bytes hash to {id}")
        } else {
            format!("transaction bytes hash to {tx_id}, not to the requested {id}")
        },
    );

    let tx_chain_ok = tx.tx().chain_id == chain_id;
    report.push(
        "tx_chain",
        tx_chain_ok,
        if tx_chain_ok {
            format!("transaction is for chain {chain_id:?}")
        } else {
            format!("transaction is for chain {:?}, genesis says {chain_id:?}", truncate(&tx.tx().chain_id))
        },
    );

    let sig = tx.verify_signature();
    report.push(
        "tx_signature",
        sig.is_ok(),
        match sig {
            Ok(()) => format!("signed by the sender {}", tx.tx().sender),
            Err(e) => format!("sender signature: {e}"),
        },
    );

    push_header_checks(&mut report, chain_id, *height, header);

    let count_ok = proof.leaf_count == header.tx_count;
    report.push(
        "proof_leaf_count",
        count_ok,
        if count_ok {
            format!("proof is for a tree of {} transactions, as the header says", header.tx_count)
        } else {
            format!(
                "proof is for a tree of {} leaves, the header has {} transactions",
                proof.leaf_count, header.tx_count
            )
        },
    );

    let merkle_ok = proof.verify(&header.tx_root, id);
    report.push(
        "merkle_proof",
        merkle_ok,
        if merkle_ok {
            format!("transaction is leaf {} of {} under tx root {}", proof.index, proof.leaf_count, header.tx_root)
        } else {
            format!("Merkle proof does not place {id} under the header's tx root {}", header.tx_root)
        },
    );

    push_certification_checks(&mut report, chain_id, walk, header, certificate);
    report
}

/// `header_chain` and `header_height`: the header is of the genesis chain, at the height the node claimed.
pub(crate) fn push_header_checks(report: &mut Report, chain_id: &str, height: Height, header: &BlockHeader) {
    let header_chain_ok = header.chain_id == chain_id;
    report.push(
        "header_chain",
        header_chain_ok,
        if header_chain_ok {
            format!("block header is for chain {chain_id:?}")
        } else {
            format!("block header is for chain {:?}, genesis says {chain_id:?}", truncate(&header.chain_id))
        },
    );

    let height_ok = header.height == height;
    report.push(
        "header_height",
        height_ok,
        if height_ok {
            format!("block header is at height {height}")
        } else {
            format!("block header is at height {}, the node said {height}", header.height)
        },
    );
}

/// `set_transitions`, `validator_set` and `certificate`: the walk from the trusted set verified, the header
/// names the set it reached, and more than 2/3 of that set's power certified the header.
pub(crate) fn push_certification_checks(
    report: &mut Report,
    chain_id: &str,
    walk: &Walk,
    header: &BlockHeader,
    certificate: &CommitCertificate,
) {
    report.push("set_transitions", walk.error.is_none(), walk.describe());

    let validators = &walk.reached.set;
    let in_force = header.height >= walk.reached.first_height;
    let set_ok = in_force && header.validators_hash == validators.hash();
    report.push(
        "validator_set",
        set_ok,
        if set_ok {
            format!(
                "the block names the validator set {} in force from height {} ({})",
                validators.hash(),
                walk.reached.first_height,
                walk.reached.origin()
            )
        } else if !in_force {
            format!(
                "the block is at height {}, below height {} where the set reached starts: it cannot be checked against it",
                header.height, walk.reached.first_height
            )
        } else if walk.error.is_some() {
            format!(
                "the block names validator set {}, not {}, the last set reached before a transition failed to verify",
                header.validators_hash,
                validators.hash()
            )
        } else {
            format!(
                "the block names validator set {}, not the set {} in force from height {} that the certified transitions lead to: the node left out a change of the set, or the block is not of this chain",
                header.validators_hash,
                validators.hash(),
                walk.reached.first_height
            )
        },
    );

    let block_hash: Hash = header.hash();
    let cert = certificate.verify_for(chain_id, validators, header.height, block_hash);
    report.push(
        "certificate",
        cert.is_ok(),
        match cert {
            Ok(()) => format!(
                "{} of {} validators precommitted block {block_hash} at height {} (round {})",
                certificate.signatures.len(),
                validators.len(),
                header.height,
                certificate.round
            ),
            Err(e) => format!("commit certificate: {e}"),
        },
    );
}

/// Hex of canonical bytes, at most `max_bytes` of them, decoded ([`decode_hex_bounded`], then canonical
/// decoding under the same limit); an error names `field`.
pub(crate) fn decode_hex_canonical<T: encoding::BorshSerialize + encoding::BorshDeserialize>(
    text: &str,
    field: &'static str,
    max_bytes: usize,
) -> Result<T, EvidenceError> {
    let bytes = decode_hex_bounded(text, field, max_bytes)?;
    encoding::decode(&bytes, max_bytes).map_err(|e| EvidenceError::Decode { field, error: e.to_string() })
}

pub(crate) fn decode_hex_bounded(text: &str, field: &'static str, max_bytes: usize) -> Result<Vec<u8>, EvidenceError> {
    let text = text.trim();
    if text.len() > 2 * max_bytes {
        return Err(EvidenceError::Decode {
            field,
            error: format!("{} bytes, more than the limit of {max_bytes}", text.len() / 2),
        });
    }
    hex::decode(text).map_err(|_| EvidenceError::BadHex { field })
}

pub(crate) fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
