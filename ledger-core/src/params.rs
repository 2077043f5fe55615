//! Chain-wide limits and timeouts, fixed in genesis so every node applies the same ones.

use borsh::{BorshDeserialize, BorshSerialize};
use serde::{Deserialize, Serialize};

/// Largest chain id, in bytes.
pub const CHAIN_ID_BYTES_MAX: usize = 64;
/// Largest validator set.
pub const VALIDATORS_MAX: usize = 256;
/// Largest moniker, in bytes.
pub const MONIKER_BYTES_MAX: usize = 64;
/// Total voting power is capped so that `3 * power` and sums never overflow a u64.
pub const TOTAL_POWER_MAX: u64 = u64::MAX / 8;
/// Hard ceilings on the genesis-chosen limits, so a hostile genesis cannot ask for unbounded buffers.
pub const TX_BYTES_MAX_CEILING: u32 = 64 * 1024;
pub const BLOCK_BYTES_MAX_CEILING: u32 = 32 * 1024 * 1024;
pub const TXS_PER_BLOCK_MAX_CEILING: u32 = 100_000;
pub const MEMO_BYTES_MAX_CEILING: u32 = 1024;

/// Consensus parameters, part of genesis and so of the genesis hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsensusParams {
    /// Smallest fee a transaction may pay.
    pub min_fee: u64,
    /// Largest encoded signed transaction.
    pub tx_bytes_max: u32,
    /// Largest encoded block (header, transactions and certificate).
    pub block_bytes_max: u32,
    /// Most transactions in one block.
    pub txs_per_block_max: u32,
    /// Largest memo, in bytes.
    pub memo_bytes_max: u32,
    /// Propose timeout of round 0; each later round adds `timeout_delta_ms`.
    pub timeout_propose_ms: u64,
    pub timeout_prevote_ms: u64,
    pub timeout_precommit_ms: u64,
    pub timeout_delta_ms: u64,
}

impl Default for ConsensusParams {
    fn default() -> Self {
        ConsensusParams {
            min_fee: 1,
            tx_bytes_max: 1024,
            block_bytes_max: 4 * 1024 * 1024,
            txs_per_block_max: 16_384,
            memo_bytes_max: 256,
            timeout_propose_ms: 1000,
            timeout_prevote_ms: 400,
            timeout_precommit_ms: 400,
            timeout_delta_ms: 250,
        }
    }
}

/// Why a parameter set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("{name} is {value}, must be between {min} and {max}")]
    OutOfRange { name: &'static str, value: u64, min: u64, max: u64 },
}

impl ConsensusParams {
    pub fn validate(&self) -> Result<(), ParamsError> {
        let check = |name: &'static str, value: u64, min: u64, max: u64| {
            if value < min || value > max { Err(ParamsError::OutOfRange { name, value, min, max }) } else { Ok(()) }
        };
        check("tx_bytes_max", self.tx_bytes_max.into(), 256, TX_BYTES_MAX_CEILING.into())?;
        check(
            "block_bytes_max",
            self.block_bytes_max.into(),
            u64::from(self.tx_bytes_max) + 4096,
            BLOCK_BYTES_MAX_CEILING.into(),
        )?;
        check("txs_per_block_max", self.txs_per_block_max.into(), 1, TXS_PER_BLOCK_MAX_CEILING.into())?;
        check("memo_bytes_max", self.memo_bytes_max.into(), 0, MEMO_BYTES_MAX_CEILING.into())?;
        let hour_ms = 3_600_000;
        check("timeout_propose_ms", self.timeout_propose_ms, 1, hour_ms)?;
        check("timeout_prevote_ms", self.timeout_prevote_ms, 1, hour_ms)?;
        check("timeout_precommit_ms", self.timeout_precommit_ms, 1, hour_ms)?;
        check("timeout_delta_ms", self.timeout_delta_ms, 0, hour_ms)?;
        Ok(())
    }
}
