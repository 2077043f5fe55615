//! Validator-set governance from the command line: build a change (`propose`), sign and submit a validator's
//! approval of it (`approve`), and show what is pending and the next set (`show`).
//!
//! A change is plain data (hex of its canonical bytes) passed from operator to operator: whoever proposes
//! it prints it, and every validator's operator approves the same bytes with their validator key. Adding a
//! validator or rotating to a new key needs that key's proof of possession, so the operator of the new key
//! runs `propose` with it.

use ledger_core::Keypair;
use ledger_core::governance::{Approval, ChangeAction, ValidatorChange, possession_proof};
use serde_json::{Value, json};

use crate::client::{NodeClient, SMALL_BODY_BYTES_MAX};
use crate::error::WalletError;

/// Largest change taken as hex from the command line.
pub const CHANGE_BYTES_MAX: usize = 4096;

/// The chain id and the height of the node's tip.
pub fn chain_and_height(client: &NodeClient) -> Result<(String, u64), WalletError> {
    let status = client.get_json("/status", SMALL_BODY_BYTES_MAX)?;
    let chain_id = status["chain_id"]
        .as_str()
        .ok_or_else(|| WalletError::generic("the node's /status has no chain_id"))?
        .to_string();
    let height = status["height"].as_u64().unwrap_or(0);
    Ok((chain_id, height))
}

/// What a proposed change does, before its proof of possession is added.
pub enum Proposal<'a> {
    Add { key: &'a Keypair, power: u64, moniker: String },
    Remove { validator: ledger_core::PublicKey },
    SetPower { validator: ledger_core::PublicKey, power: u64 },
    Rotate { old: ledger_core::PublicKey, new: &'a Keypair },
}

/// Build the change for `chain_id`, expiring at `expiry_height`, with `nonce`.
pub fn build_change(chain_id: &str, proposal: Proposal<'_>, expiry_height: u64, nonce: u64) -> ValidatorChange {
    let action = match proposal {
        Proposal::Add { key, power, moniker } => ChangeAction::Add {
            validator: ledger_core::Validator { public_key: key.public(), power, moniker },
            possession: possession_proof(chain_id, key),
        },
        Proposal::Remove { validator } => ChangeAction::Remove { key: validator },
        Proposal::SetPower { validator, power } => ChangeAction::SetPower { key: validator, power },
        Proposal::Rotate { old, new } => {
            ChangeAction::RotateKey { old, new: new.public(), possession: possession_proof(chain_id, new) }
        }
    };
    ValidatorChange { action, expiry_height, nonce }
}

/// The change as the documents print it.
pub fn change_doc(change: &ValidatorChange) -> Value {
    json!({
        "change_id": change.id().to_hex(),
        "change_hex": hex::encode(ledger_core::encoding::encode(change)),
        "change": serde_json::to_value(change).unwrap_or_default(),
    })
}

/// Decode a change given as hex.
pub fn parse_change(hex_text: &str) -> Result<ValidatorChange, WalletError> {
    let bytes = hex::decode(hex_text.trim()).map_err(|e| {
        WalletError::usage(format!("the change is not hex ({e}); pass the change_hex `propose` printed"))
    })?;
    ledger_core::encoding::decode(&bytes, CHANGE_BYTES_MAX).map_err(|e| {
        WalletError::usage(format!("the change does not decode ({e}); pass the change_hex `propose` printed"))
    })
}

/// Sign `change` with the validator key and submit the approval; the node's answer.
pub fn approve(
    client: &NodeClient,
    chain_id: &str,
    change: &ValidatorChange,
    key: &Keypair,
) -> Result<(Approval, Value), WalletError> {
    change
        .check_stateless(chain_id)
        .map_err(|e| WalletError::usage(format!("the change is not valid on {chain_id}: {e}")))?;
    let approval = change.approve(chain_id, key);
    let answer = client.submit_approval(&hex::encode(ledger_core::encoding::encode(&approval)))?;
    Ok((approval, answer))
}
