//! The validator set: who votes, with what power, and who proposes at each (height, round).

use borsh::{BorshDeserialize, BorshSerialize};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, PublicKey};
use crate::encoding;
use crate::hash::{Domain, Hash};
use crate::params::{MONIKER_BYTES_MAX, TOTAL_POWER_MAX, VALIDATORS_MAX};
use crate::types::{Height, Round};

/// One validator: its consensus key, voting power and a human-readable name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, BorshSerialize, BorshDeserialize)]
#[serde(deny_unknown_fields)]
pub struct Validator {
    #[serde(rename = "address")]
    pub public_key: PublicKey,
    pub power: u64,
    pub moniker: String,
}

/// Why a validator set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidatorSetError {
    #[error("validator set is empty")]
    Empty,
    #[error("validator set has {n} validators, limit is {max}")]
    TooMany { n: usize, max: usize },
    #[error("validator {key} appears more than once")]
    Duplicate { key: PublicKey },
    #[error("validator {key} has zero voting power")]
    ZeroPower { key: PublicKey },
    #[error("total voting power exceeds {max}")]
    PowerOverflow { max: u64 },
    #[error("validator key {key:?} is not usable: {error}")]
    BadKey { key: PublicKey, error: CryptoError },
    #[error("moniker of {key} is {len} bytes, limit is {max}")]
    MonikerTooLong { key: PublicKey, len: usize, max: usize },
}

/// Length of the precomputed proposer schedule when total power is larger than this.
const PROPOSER_SCHEDULE_MAX: u64 = 4096;

/// A checked validator set, with keys decompressed once and a precomputed proposer schedule.
#[derive(Clone, Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    keys: Vec<VerifyingKey>,
    total_power: u64,
    /// Validator indices in proposing order; `proposer(h, r)` is entry `(h + r) mod len`.
    schedule: Vec<u16>,
    hash: Hash,
}

impl ValidatorSet {
    /// Check and build a set. Order matters: it is the order of certificate indices.
    pub fn new(validators: Vec<Validator>) -> Result<ValidatorSet, ValidatorSetError> {
        if validators.is_empty() {
            return Err(ValidatorSetError::Empty);
        }
        if validators.len() > VALIDATORS_MAX {
            return Err(ValidatorSetError::TooMany { n: validators.len(), max: VALIDATORS_MAX });
        }
        let mut keys = Vec::with_capacity(validators.len());
        let mut total: u64 = 0;
        let mut seen = std::collections::BTreeSet::new();
        for v in &validators {
            if !seen.insert(v.public_key) {
                return Err(ValidatorSetError::Duplicate { key: v.public_key });
            }
            if v.power == 0 {
                return Err(ValidatorSetError::ZeroPower { key: v.public_key });
            }
            if v.moniker.len() > MONIKER_BYTES_MAX {
                return Err(ValidatorSetError::MonikerTooLong {
                    key: v.public_key,
                    len: v.moniker.len(),
                    max: MONIKER_BYTES_MAX,
                });
            }
            total = total
                .checked_add(v.power)
                .filter(|t| *t <= TOTAL_POWER_MAX)
                .ok_or(ValidatorSetError::PowerOverflow { max: TOTAL_POWER_MAX })?;
            keys.push(
                v.public_key.verifying_key().map_err(|error| ValidatorSetError::BadKey { key: v.public_key, error })?,
            );
        }
        let schedule = proposer_schedule(&validators, total);
        let hash = Hash::digest(Domain::ValidatorSet, &encoding::encode(&validators));
        Ok(ValidatorSet { validators, keys, total_power: total, schedule, hash })
    }

    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    pub fn len(&self) -> usize {
        self.validators.len()
    }

    pub fn is_empty(&self) -> bool {
        self.validators.is_empty()
    }

    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }

    pub fn verifying_key(&self, index: usize) -> Option<&VerifyingKey> {
        self.keys.get(index)
    }

    pub fn index_of(&self, key: &PublicKey) -> Option<usize> {
        // Sets are small (<= 256); a linear scan beats a map here and has no iteration-order hazards.
        self.validators.iter().position(|v| v.public_key == *key)
    }

    pub fn power_of(&self, key: &PublicKey) -> Option<u64> {
        self.index_of(key).map(|i| self.validators[i].power)
    }

    pub fn total_power(&self) -> u64 {
        self.total_power
    }

    /// Hash identifying this set (of its canonical encoding).
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// True when `power` is more than two thirds of the total ("2f+1" in the paper).
    pub fn is_quorum(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power) * 2
    }

    /// True when `power` is more than one third of the total ("f+1" in the paper).
    pub fn is_one_third(&self, power: u64) -> bool {
        u128::from(power) * 3 > u128::from(self.total_power)
    }

    /// The proposer of (`height`, `round`): deterministic, weighted by power, interleaved.
    pub fn proposer(&self, height: Height, round: Round) -> &Validator {
        let len = self.schedule.len() as u64;
        let slot = (height.0 % len + u64::from(round.0) % len) % len;
        &self.validators[self.schedule[slot as usize] as usize]
    }
}

impl PartialEq for ValidatorSet {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
    }
}
impl Eq for ValidatorSet {}

/// Encoded as its list of validators (the bytes its hash is of); decoding checks the set again.
impl BorshSerialize for ValidatorSet {
    fn serialize<W: std::io::Write>(&self, writer: &mut W) -> std::io::Result<()> {
        BorshSerialize::serialize(&self.validators, writer)
    }
}

impl BorshDeserialize for ValidatorSet {
    fn deserialize_reader<R: std::io::Read>(reader: &mut R) -> std::io::Result<Self> {
        let validators = Vec::<Validator>::deserialize_reader(reader)?;
        ValidatorSet::new(validators).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
    }
}

/// Smooth weighted round robin over one cycle: each validator appears in proportion to its power, spread
/// out rather than in runs, so one offline validator with much power does not stall many heights in a row.
fn proposer_schedule(validators: &[Validator], total: u64) -> Vec<u16> {
    // Scale powers down when the total is large, keeping every validator at least once.
    let scale = total.div_ceil(PROPOSER_SCHEDULE_MAX).max(1);
    let weights: Vec<i128> = validators.iter().map(|v| i128::from((v.power / scale).max(1))).collect();
    let cycle: i128 = weights.iter().sum();
    let mut current = vec![0i128; validators.len()];
    let mut schedule = Vec::with_capacity(cycle as usize);
    for _ in 0..cycle {
        let mut best = 0;
        for i in 0..validators.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= cycle;
        schedule.push(best as u16);
    }
    schedule
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Keypair;

    fn set(powers: &[u64]) -> ValidatorSet {
        ValidatorSet::new(
            powers
                .iter()
                .enumerate()
                .map(|(i, p)| Validator {
                    public_key: Keypair::from_seed(&[i as u8 + 1; 32]).public(),
                    power: *p,
                    moniker: format!("v{i}"),
                })
                .collect(),
        )
        .expect("valid set")
    }

    #[test]
    fn proposer_is_weighted_and_rotates() {
        let s = set(&[1, 1, 2]);
        let mut counts = [0u32; 3];
        for h in 0..400 {
            let p = s.proposer(Height(h), Round(0));
            counts[s.index_of(&p.public_key).expect("member")] += 1;
        }
        assert_eq!(counts, [100, 100, 200]);
        assert_ne!(s.proposer(Height(5), Round(0)), s.proposer(Height(5), Round(1)));
    }

    #[test]
    fn thresholds() {
        let s = set(&[1, 1, 1, 1]);
        assert!(!s.is_quorum(2));
        assert!(!s.is_quorum(2));
        assert!(s.is_quorum(3));
        assert!(!s.is_one_third(1));
        assert!(s.is_one_third(2));
    }

    #[test]
    fn refuses_bad_sets() {
        assert_eq!(ValidatorSet::new(vec![]).err(), Some(ValidatorSetError::Empty));
        let k = Keypair::from_seed(&[9; 32]).public();
        let v = Validator { public_key: k, power: 1, moniker: "a".into() };
        assert!(matches!(ValidatorSet::new(vec![v.clone(), v.clone()]), Err(ValidatorSetError::Duplicate { .. })));
        let zero = Validator { power: 0, ..v.clone() };
        assert!(matches!(ValidatorSet::new(vec![zero]), Err(ValidatorSetError::ZeroPower { .. })));
        let huge = Validator { power: u64::MAX, ..v };
        assert!(matches!(ValidatorSet::new(vec![huge]), Err(ValidatorSetError::PowerOverflow { .. })));
    }
}
