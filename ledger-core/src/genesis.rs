//! Genesis: the chain's identity, first validators, initial balances and consensus parameters.
//!
//! Genesis is read from JSON (unknown fields refused) but identified by the hash of its canonical borsh
//! bytes, never of the JSON text, so whitespace or key order in the file cannot change the chain id.

use std::collections::BTreeSet;

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

use crate::block::Parent;
use crate::crypto::{Address, CryptoError};
use crate::encoding;
use crate::hash::{Domain, Hash};
use crate::params::{CHAIN_ID_BYTES_MAX, ConsensusParams, ParamsError};
use crate::state::{Account, MemStore};
use crate::types::Height;
use crate::validator::{Validator, ValidatorSet, ValidatorSetError};

/// Largest genesis file accepted, in bytes.
pub const GENESIS_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most initial accounts.
pub const GENESIS_ACCOUNTS_MAX: usize = 1_000_000;

/// An initial balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    pub address: Address,
    pub balance: u64,
}

/// The genesis document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Genesis {
    pub chain_id: String,
    /// Milliseconds since the Unix epoch; the first block's timestamp may not be earlier.
    pub genesis_time_ms: u64,
    pub protocol_version: u32,
    pub validators: Vec<Validator>,
    pub accounts: Vec<GenesisAccount>,
    pub params: ConsensusParams,
}

/// Why a genesis document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis file is {len} bytes, limit is {max}")]
    TooLarge { len: usize, max: usize },
    #[error("genesis JSON is invalid: {0}")]
    Json(String),
    #[error("chain id {0:?} is invalid: use 1-64 characters of a-z, 0-9, '-' and '_'")]
    BadChainId(String),
    #[error("protocol version {got} is not supported (this build supports {supported})")]
    UnsupportedVersion { got: u32, supported: u32 },
    #[error(transparent)]
    Validators(#[from] ValidatorSetError),
    #[error("account {address} appears more than once")]
    DuplicateAccount { address: Address },
    #[error("account {address} key is not usable: {error}")]
    BadAccountKey { address: Address, error: CryptoError },
    #[error("genesis has {n} accounts, limit is {max}")]
    TooManyAccounts { n: usize, max: usize },
    #[error("total supply overflows u64")]
    SupplyOverflow,
    #[error("invalid consensus parameters: {0}")]
    Params(#[from] ParamsError),
}

impl Genesis {
    /// Parse and validate a genesis JSON document.
    pub fn from_json(text: &str) -> Result<Genesis, GenesisError> {
        if text.len() > GENESIS_BYTES_MAX {
            return Err(GenesisError::TooLarge { len: text.len(), max: GENESIS_BYTES_MAX });
        }
        let genesis: Genesis = serde_json::from_str(text).map_err(|e| GenesisError::Json(e.to_string()))?;
        genesis.validate()?;
        Ok(genesis)
    }

    /// Pretty JSON, as written to `genesis.json`.
    pub fn to_json(&self) -> String {
        // Serialising plain structs with string keys cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Check everything: chain id, version, validator set, accounts, supply, parameters.
    pub fn validate(&self) -> Result<(), GenesisError> {
        validate_chain_id(&self.chain_id)?;
        if self.protocol_version != crate::block::PROTOCOL_VERSION {
            return Err(GenesisError::UnsupportedVersion {
                got: self.protocol_version,
                supported: crate::block::PROTOCOL_VERSION,
            });
        }
        ValidatorSet::new(self.validators.clone())?;
        if self.accounts.len() > GENESIS_ACCOUNTS_MAX {
            return Err(GenesisError::TooManyAccounts { n: self.accounts.len(), max: GENESIS_ACCOUNTS_MAX });
        }
        let mut seen = BTreeSet::new();
        let mut supply: u64 = 0;
        for a in &self.accounts {
            if !seen.insert(a.address) {
                return Err(GenesisError::DuplicateAccount { address: a.address });
            }
            a.address.verifying_key().map_err(|error| GenesisError::BadAccountKey { address: a.address, error })?;
            supply = supply.checked_add(a.balance).ok_or(GenesisError::SupplyOverflow)?;
        }
        self.params.validate()?;
        Ok(())
    }

    /// The hash that identifies the chain: of the canonical bytes, domain `Genesis`.
    pub fn hash(&self) -> Hash {
        Hash::digest(Domain::Genesis, &encoding::encode(self))
    }

    /// The validator set. Call on a validated genesis; errors are those of [`Genesis::validate`].
    pub fn validator_set(&self) -> Result<ValidatorSet, ValidatorSetError> {
        ValidatorSet::new(self.validators.clone())
    }

    /// Total supply (sum of initial balances); fits a u64 in a validated genesis.
    pub fn total_supply(&self) -> u128 {
        self.accounts.iter().map(|a| u128::from(a.balance)).sum()
    }

    /// The state before block 1.
    pub fn initial_state(&self) -> MemStore {
        let mut store = MemStore::new();
        store.set_accounts(self.accounts.iter().map(|a| (a.address, Account { balance: a.balance, nonce: 0 })));
        if let Ok(gov) = self.initial_gov() {
            store.set_gov(gov);
        }
        store
    }

    /// The governance state before block 1: the genesis set for heights 1 and 2, nothing pending.
    pub fn initial_gov(&self) -> Result<crate::governance::GovState, ValidatorSetError> {
        Ok(crate::governance::GovState::genesis(self.validator_set()?))
    }

    /// What block 1 extends.
    pub fn parent_of_first_block(&self) -> Parent<'_> {
        Parent {
            height: Height::GENESIS,
            hash: self.hash(),
            timestamp_ms: self.genesis_time_ms,
            chain_id: &self.chain_id,
        }
    }
}

/// Chain ids are short, lowercase and safe to put in file names and logs.
pub fn validate_chain_id(chain_id: &str) -> Result<(), GenesisError> {
    let ok = !chain_id.is_empty()
        && chain_id.len() <= CHAIN_ID_BYTES_MAX
        && chain_id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok { Ok(()) } else { Err(GenesisError::BadChainId(chain_id.chars().take(80).collect())) }
}
