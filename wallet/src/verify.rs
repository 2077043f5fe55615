//! Trust-minimised confirmation that a transaction is committed, checked locally from canonical bytes.
//!
//! The node sends the transaction, the block header and the commit certificate as canonical borsh bytes
//! (`tx_hex`, `header_hex`, `certificate_hex`) plus a Merkle proof. Nothing in the node's decoded JSON is
//! trusted: [`decode_evidence`] decodes the bytes with `ledger-core`'s canonical decoding (size-limited,
//! re-encode must match), and [`verify_evidence`] recomputes every hash and checks:
//!
//! 1. `tx_id`: the transaction's canonical bytes hash to the id asked about;
//! 2. `tx_chain` and `tx_signature`: the transaction is for this chain and its signature verifies;
//! 3. `header_chain`: the header is for the genesis chain id;
//! 4. `header_height`: the header is at the height the node claimed;
//! 5. `proof_leaf_count`: the proof's tree size equals the header's `tx_count` (a Merkle path alone can fit
//!    two tree sizes);
//! 6. `merkle_proof`: the proof places the id under the header's `tx_root`;
//! 7. `validator_set`: the header names the genesis validator set as the one that certifies it;
//! 8. `certificate`: more than 2/3 of the genesis validator set's power signed precommits for this
//!    header's hash at this height, on this chain.
//!
//! The validator set is the genesis one. The chain can change its set (governance; the header commits to
//! the set of its height and of the next one), and following those changes from the genesis file is not
//! implemented here yet: a block certified by a later set fails `validator_set` with that said, rather
//! than pass or be called tampered. Both functions are pure (no I/O) so the tests build real
//! blocks and certificates and tamper with them.

use ledger_core::block::BlockHeader;
use ledger_core::cert::CommitCertificate;
use ledger_core::encoding;
use ledger_core::merkle::MerkleProof;
use ledger_core::params::{TX_BYTES_MAX_CEILING, VALIDATORS_MAX};
use ledger_core::{Hash, Height, SignedTransaction, TxId, ValidatorSet};
use serde::Serialize;

/// Largest header accepted: fixed-size fields plus a chain id of at most 64 bytes, with room to spare.
pub const HEADER_BYTES_MAX: usize = 1024;
/// Largest certificate accepted: one signature per validator plus the fixed fields.
pub const CERTIFICATE_BYTES_MAX: usize = 64 + VALIDATORS_MAX * (2 + 64);

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

    fn push(&mut self, name: &'static str, ok: bool, detail: String) {
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
    let header_bytes = decode_hex_bounded(header_hex, "header_hex", HEADER_BYTES_MAX)?;
    let header: BlockHeader = encoding::decode(&header_bytes, HEADER_BYTES_MAX)
        .map_err(|e| EvidenceError::Decode { field: "header_hex", error: e.to_string() })?;
    let cert_bytes = decode_hex_bounded(certificate_hex, "certificate_hex", CERTIFICATE_BYTES_MAX)?;
    let certificate: CommitCertificate = encoding::decode(&cert_bytes, CERTIFICATE_BYTES_MAX)
        .map_err(|e| EvidenceError::Decode { field: "certificate_hex", error: e.to_string() })?;
    Ok(Evidence { tx, height: Height(height), proof, header, certificate })
}

/// Check `evidence` for transaction `id` against the chain identified by `chain_id` and `validators`.
/// Every check runs, so the report lists all that failed, not just the first.
pub fn verify_evidence(id: &TxId, chain_id: &str, validators: &ValidatorSet, evidence: &Evidence) -> Report {
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

    let height_ok = header.height == *height;
    report.push(
        "header_height",
        height_ok,
        if height_ok {
            format!("block header is at height {height}")
        } else {
            format!("block header is at height {}, the node said {height}", header.height)
        },
    );

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

    let set_ok = header.validators_hash == validators.hash();
    report.push(
        "validator_set",
        set_ok,
        if set_ok {
            format!("the block names the genesis validator set ({})", validators.hash())
        } else {
            format!(
                "the block names validator set {}, not the genesis set {}: the set changed at or before height {}, and this wallet does not follow validator-set changes yet, so it cannot verify this block",
                header.validators_hash,
                validators.hash(),
                header.height
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
    report
}

fn decode_hex_bounded(text: &str, field: &'static str, max_bytes: usize) -> Result<Vec<u8>, EvidenceError> {
    let text = text.trim();
    if text.len() > 2 * max_bytes {
        return Err(EvidenceError::Decode {
            field,
            error: format!("{} bytes, more than the limit of {max_bytes}", text.len() / 2),
        });
    }
    hex::decode(text).map_err(|_| EvidenceError::BadHex { field })
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
