//! Draft genesis files: create, edit one validator or account at a time, and read back.
//!
//! A draft is an ordinary `genesis.json` that may have no validators yet (`Genesis::from_json` refuses
//! those, so drafts are parsed here with the same strict serde rules and checked by [`check_draft`]). Each
//! edit is checked before it is written, so a draft on disk only ever lacks validators, nothing else.

use std::path::Path;

use ledger_core::genesis::{GENESIS_BYTES_MAX, validate_chain_id};
use ledger_core::{ConsensusParams, Genesis, GenesisAccount, GenesisError, Keypair, Validator};

use crate::{Error, files};

/// A fresh draft: no validators, no accounts, default consensus parameters with `min_fee`.
pub fn new_draft(chain_id: &str, genesis_time_ms: u64, min_fee: u64) -> Result<Genesis, Error> {
    validate_chain_id(chain_id)?;
    let draft = Genesis {
        chain_id: chain_id.to_string(),
        genesis_time_ms,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        validators: Vec::new(),
        accounts: Vec::new(),
        params: ConsensusParams { min_fee, ..ConsensusParams::default() },
    };
    check_draft(&draft)?;
    Ok(draft)
}

/// Check everything `Genesis::validate` checks except that there is at least one validator.
pub fn check_draft(draft: &Genesis) -> Result<(), GenesisError> {
    if !draft.validators.is_empty() {
        return draft.validate();
    }
    // Run the real rules (not a copy of them, which could drift) on the draft plus one stand-in validator:
    // with the set otherwise empty, the stand-in cannot itself cause an error.
    let mut probe = draft.clone();
    probe.validators.push(Validator {
        public_key: Keypair::from_seed(&[1; 32]).public(),
        power: 1,
        moniker: String::new(),
    });
    probe.validate()
}

/// Add a validator to a draft. Refuses a key already present and zero power with their own messages, then
/// re-checks the whole draft (too many validators, power overflow, moniker length).
pub fn add_validator(draft: &mut Genesis, validator: Validator) -> Result<(), Error> {
    if draft.validators.iter().any(|v| v.public_key == validator.public_key) {
        return Err(Error::DuplicateValidator { key: validator.public_key });
    }
    if validator.power == 0 {
        return Err(Error::ZeroPower { key: validator.public_key });
    }
    draft.validators.push(validator);
    if let Err(e) = check_draft(draft) {
        draft.validators.pop();
        return Err(e.into());
    }
    Ok(())
}

/// Add an initial balance to a draft. Refuses an address already present and a total supply past u64.
pub fn add_account(draft: &mut Genesis, account: GenesisAccount) -> Result<(), Error> {
    if draft.accounts.iter().any(|a| a.address == account.address) {
        return Err(Error::DuplicateAccount { address: account.address });
    }
    let supply = draft.total_supply();
    if supply + u128::from(account.balance) > u128::from(u64::MAX) {
        return Err(Error::SupplyOverflow { supply, amount: account.balance });
    }
    draft.accounts.push(account);
    if let Err(e) = check_draft(draft) {
        draft.accounts.pop();
        return Err(e.into());
    }
    Ok(())
}

/// Read a draft: strict JSON (unknown fields refused, addresses checksummed) and [`check_draft`].
pub fn read_draft(path: &Path) -> Result<Genesis, Error> {
    let text = files::read_text(path, GENESIS_BYTES_MAX)?;
    let invalid = |source| Error::InvalidGenesis { path: path.to_path_buf(), source };
    let draft: Genesis = serde_json::from_str(&text).map_err(|e| invalid(GenesisError::Json(e.to_string())))?;
    check_draft(&draft).map_err(invalid)?;
    Ok(draft)
}

/// Read a final genesis, exactly as a node does (`Genesis::from_json`): at least one validator required.
pub fn read_final(path: &Path) -> Result<Genesis, Error> {
    let text = files::read_text(path, GENESIS_BYTES_MAX)?;
    Genesis::from_json(&text).map_err(|source| Error::InvalidGenesis { path: path.to_path_buf(), source })
}

/// Write a genesis or draft as pretty JSON.
pub fn write_genesis(path: &Path, genesis: &Genesis) -> Result<(), Error> {
    let mut text = genesis.to_json();
    text.push('\n');
    files::write_public(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> ledger_core::PublicKey {
        Keypair::from_seed(&[i; 32]).public()
    }

    #[test]
    fn draft_composes_into_a_valid_genesis() {
        let mut g = new_draft("test-1", 0, 1).expect("draft");
        assert!(g.validate().is_err(), "a draft without validators is not final");
        add_validator(&mut g, Validator { public_key: key(1), power: 5, moniker: "a".into() }).expect("add");
        add_account(&mut g, GenesisAccount { address: key(2), balance: 7 }).expect("add");
        assert_eq!(g.validate(), Ok(()));
        assert_eq!(g.total_supply(), 7);
    }

    #[test]
    fn draft_edits_refuse_bad_input_and_leave_the_draft_unchanged() {
        let mut g = new_draft("test-1", 0, 1).expect("draft");
        let v = Validator { public_key: key(1), power: 5, moniker: "a".into() };
        add_validator(&mut g, v.clone()).expect("add");
        assert!(matches!(add_validator(&mut g, v.clone()), Err(Error::DuplicateValidator { .. })));
        let zero = Validator { public_key: key(3), power: 0, moniker: "z".into() };
        assert!(matches!(add_validator(&mut g, zero), Err(Error::ZeroPower { .. })));
        let long = Validator { public_key: key(4), power: 1, moniker: "m".repeat(65) };
        assert!(matches!(add_validator(&mut g, long), Err(Error::Genesis(_))));
        assert_eq!(g.validators, vec![v]);

        add_account(&mut g, GenesisAccount { address: key(2), balance: u64::MAX }).expect("add");
        let more = GenesisAccount { address: key(5), balance: 1 };
        assert!(matches!(add_account(&mut g, more), Err(Error::SupplyOverflow { .. })));
        let dup = GenesisAccount { address: key(2), balance: 1 };
        assert!(matches!(add_account(&mut g, dup), Err(Error::DuplicateAccount { .. })));
        assert_eq!(g.accounts.len(), 1);
    }

    #[test]
    fn bad_chain_id_refused() {
        assert!(matches!(new_draft("Bad Chain!", 0, 1), Err(Error::Genesis(GenesisError::BadChainId(_)))));
        assert!(matches!(new_draft("", 0, 1), Err(Error::Genesis(GenesisError::BadChainId(_)))));
    }
}
