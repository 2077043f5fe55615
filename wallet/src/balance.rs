//! Trust-minimised balances (`wallet balance ADDRESS --verify`): an account, or its absence, checked locally
//! against a certified block header.
//!
//! The node answers `GET /accounts/{address}/proof` with the account it claims (`account`, or null for
//! none), the height of its latest committed state, the header of that height (`header_hex`) and a sparse
//! Merkle proof (`proof_hex`, a [`StateProof`]); the header's certificate comes from
//! `GET /blocks/{height}/commit`. Only canonical bytes are decoded ([`decode_balance_evidence`]: sizes
//! checked before decoding, re-encoding must match); the decoded JSON (`proof`, `state_root`, `block_hash`)
//! is never read. The claimed account is what is checked: [`verify_balance`] runs, in order,
//!
//! 1. `header_chain`: the header is for the genesis chain id;
//! 2. `header_height`: the header is at the height the node claimed;
//! 3. `set_transitions`, `validator_set`, `certificate`: exactly as `wallet verify` ([`crate::verify`]):
//!    the validator-set changes followed from the trusted set lead to the set the header names, and more
//!    than 2/3 of that set's power precommitted this header at this height on this chain;
//! 4. `state_proof`: the proof places the claimed account at the address under the header's `state_root`,
//!    or shows that the address holds nothing there.
//!
//! So a node can neither alter a balance or nonce, nor drop or invent an account, nor answer with the
//! state of another height or chain, without a failed check. Pure (no I/O): the tests build real blocks,
//! certificates and state trees and tamper with them.

use ledger_core::block::BlockHeader;
use ledger_core::cert::CommitCertificate;
use ledger_core::statetree::StateProof;
use ledger_core::{Account, Address, Height};

use crate::verify::{
    CERTIFICATE_BYTES_MAX, EvidenceError, HEADER_BYTES_MAX, Report, Walk, decode_hex_canonical,
    push_certification_checks, push_header_checks,
};

/// The node's evidence for an account, decoded from canonical bytes.
#[derive(Clone, Debug)]
pub struct BalanceEvidence {
    /// The height the node says the state is at.
    pub height: Height,
    /// The account the node claims (`None`: the address holds nothing).
    pub account: Option<Account>,
    pub header: BlockHeader,
    pub certificate: CommitCertificate,
    pub proof: StateProof,
}

/// Decode what the node sent. `present` must agree with `account` (a node that says both is
/// contradicting itself, and that is refused here).
pub fn decode_balance_evidence(
    height: u64,
    present: bool,
    account: Option<Account>,
    header_hex: &str,
    certificate_hex: &str,
    proof_hex: &str,
) -> Result<BalanceEvidence, EvidenceError> {
    if present != account.is_some() {
        return Err(EvidenceError::Decode {
            field: "present",
            error: format!(
                "the answer says present: {present} but {} an account",
                if account.is_some() { "holds" } else { "holds no" }
            ),
        });
    }
    let header: BlockHeader = decode_hex_canonical(header_hex, "header_hex", HEADER_BYTES_MAX)?;
    let certificate: CommitCertificate =
        decode_hex_canonical(certificate_hex, "certificate_hex", CERTIFICATE_BYTES_MAX)?;
    let proof: StateProof = decode_hex_canonical(proof_hex, "proof_hex", StateProof::ENCODED_MAX)?;
    Ok(BalanceEvidence { height: Height(height), account, header, certificate, proof })
}

/// Check `evidence` for `address` against the chain of `chain_id`, with the validator set `walk` reached
/// (every transition up to the header's height and no later one). Every check runs.
pub fn verify_balance(address: &Address, chain_id: &str, walk: &Walk, evidence: &BalanceEvidence) -> Report {
    let mut report = Report { checks: Vec::new() };
    let BalanceEvidence { height, account, header, certificate, proof } = evidence;
    push_header_checks(&mut report, chain_id, *height, header);
    push_certification_checks(&mut report, chain_id, walk, header, certificate);

    let root = header.state_root;
    let proven = proof.verify(&root, address, account.as_ref());
    report.push(
        "state_proof",
        proven.is_ok(),
        match (&proven, account) {
            (Ok(()), Some(a)) => format!(
                "the proof places {address} with balance {} and nonce {} under the header's state root {root}",
                a.balance, a.nonce
            ),
            (Ok(()), None) => {
                format!("the proof shows that {address} holds no account under the header's state root {root}")
            }
            (Err(e), Some(a)) => format!(
                "the proof does not show {address} with balance {} and nonce {} under the header's state root: {e}",
                a.balance, a.nonce
            ),
            (Err(e), None) => {
                format!("the proof does not show {address} absent under the header's state root: {e}")
            }
        },
    );
    report
}
