//! Validator-set changes in the simulator: what a run plans ([`GovAction`], drawn by
//! [`SimConfig::add_governance`]), the keys of every node (a rotated node has two), and the checker's own
//! model of which set is in force at each height ([`SetModel`]).
//!
//! The model is written from the rule, not from `ledger_core::governance::GovState`: approvals carried by
//! block `H` from validators of `H`'s set are counted; a change whose approvers hold more than 2/3 of that
//! set's power (a key rotation also needs the old key's approval) is decided in `H`, in id order, and shapes
//! the set of `H + 2`; evidence in `H` removes its validator from the set of `H + 2`. The checker verifies
//! every certificate and header against it, and every honest node's `NewHeight` set.

use std::collections::{BTreeMap, BTreeSet};

use ledger_core::governance::{ChangeAction, ValidatorChange, possession_proof};
use ledger_core::params::VALIDATORS_MAX;
use ledger_core::{Block, Hash, Height, Keypair, PublicKey, Validator, ValidatorSet};

use super::config::{Fault, SimConfig};
use super::rng::Rng;

/// Heights a planned change may wait for its approvals (the runs are far shorter).
pub const CHANGE_EXPIRY_HEIGHTS: u64 = 10_000;

/// A planned change of the validator set. Every target is an honest node, and one run touches each node at
/// most once, so the changes of a run commute: whichever of them activate, in whatever order, the set is
/// the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum GovAction {
    /// Add the spare `node` with `power`.
    Add {
        node: usize,
        power: u64,
    },
    Remove {
        node: usize,
    },
    SetPower {
        node: usize,
        power: u64,
    },
    /// Replace `node`'s key by its second one ([`node_key`] generation 1).
    Rotate {
        node: usize,
    },
}

/// The kinds of change, for coverage figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    Add,
    Remove,
    SetPower,
    Rotate,
    /// Removed by evidence.
    Jail,
}

impl GovAction {
    pub fn node(self) -> usize {
        match self {
            GovAction::Add { node, .. }
            | GovAction::Remove { node }
            | GovAction::SetPower { node, .. }
            | GovAction::Rotate { node } => node,
        }
    }

    /// The change the operators approve; `nonce` is the plan's index (unique in a run).
    pub fn change(self, chain_id: &str, nonce: u64) -> ValidatorChange {
        let action = match self {
            GovAction::Add { node, power } => {
                let key = node_key(node, 0);
                ChangeAction::Add {
                    validator: Validator { public_key: key.public(), power, moniker: format!("v{node}") },
                    possession: possession_proof(chain_id, &key),
                }
            }
            GovAction::Remove { node } => ChangeAction::Remove { key: node_key(node, 0).public() },
            GovAction::SetPower { node, power } => ChangeAction::SetPower { key: node_key(node, 0).public(), power },
            GovAction::Rotate { node } => {
                let new = node_key(node, 1);
                ChangeAction::RotateKey {
                    old: node_key(node, 0).public(),
                    new: new.public(),
                    possession: possession_proof(chain_id, &new),
                }
            }
        };
        ValidatorChange { action, expiry_height: CHANGE_EXPIRY_HEIGHTS, nonce }
    }
}

/// Key of `node`, generation 0 (its first) or 1 (after a rotation).
pub fn node_key(node: usize, generation: u8) -> Keypair {
    let mut seed = [node as u8 + 1; 32];
    if generation > 0 {
        seed[31] = 0xA0 ^ generation;
        seed[0] = 0x5A;
    }
    Keypair::from_seed(&seed)
}

/// Kind of a change action.
pub fn kind_of(action: &ChangeAction) -> ChangeKind {
    match action {
        ChangeAction::Add { .. } => ChangeKind::Add,
        ChangeAction::Remove { .. } => ChangeKind::Remove,
        ChangeAction::SetPower { .. } => ChangeKind::SetPower,
        ChangeAction::RotateKey { .. } => ChangeKind::Rotate,
    }
}

/// Most changes planned per run.
const CHANGES_MAX: u64 = 4;

impl SimConfig {
    /// [`SimConfig::random`] with validator-set changes mixed in ([`SimConfig::add_governance`]): the same
    /// run as `random(seed, ..)` plus spares and changes drawn from a stream of their own.
    pub fn random_with_governance(seed: u64, validators: Option<usize>, byzantine: Option<usize>) -> SimConfig {
        let mut c = SimConfig::random(seed, validators, byzantine);
        c.add_governance();
        c
    }

    /// Draw one or two spare nodes and 1-4 changes (add a spare, remove, change the power of or rotate the
    /// key of an honest validator), each on a node of its own. More than half of the changes are timed a
    /// little before a fault of the schedule starts (a partition, a crash), so that their activation
    /// height falls inside it. A change is kept only if the faulty power stays below 1/3 in every set the
    /// run can reach (any subset of the changes activated): the Byzantine validators and those whose signer
    /// state a restart damages (such a validator abstains at the height it finds its own earlier
    /// signatures, so it spends fault budget, as `SimConfig::random` counts it).
    pub fn add_governance(&mut self) {
        let mut r = Rng::new(self.seed ^ 0x474f_5645_524e_414e);
        let n = self.validators;
        self.spares = r.range(1, 2) as usize;
        let mut faulty: Vec<usize> = self.byzantine.iter().map(|(i, _)| *i).collect();
        faulty.extend(self.faults.iter().filter_map(|(_, f)| match f {
            Fault::LoseSigner { node, .. } => Some(*node),
            _ => None,
        }));
        let mut free: Vec<usize> = (0..n).filter(|i| !self.is_byzantine(*i)).collect();
        r.shuffle(&mut free);
        let mut spares: Vec<usize> = (n..n + self.spares).collect();
        let fault_times: Vec<u64> = self.faults.iter().filter(|(_, f)| f.counts()).map(|(t, _)| *t).collect();
        let mut plan: Vec<GovAction> = Vec::new();
        for _ in 0..r.range(1, CHANGES_MAX) {
            let action = match r.below(4) {
                0 => match spares.pop() {
                    Some(node) => GovAction::Add { node, power: r.range(1, 2) },
                    None => continue,
                },
                k => match free.pop() {
                    Some(node) if k == 1 => GovAction::Remove { node },
                    Some(node) if k == 2 => GovAction::SetPower { node, power: r.range(2, 3) },
                    Some(node) => GovAction::Rotate { node },
                    None => continue,
                },
            };
            let mut with = plan.clone();
            with.push(action);
            if reachable_powers(n, self.spares, &faulty, &with).iter().all(|(total, bad)| bad * 3 < *total) {
                plan = with;
            } else if let GovAction::Add { node, .. } = action {
                spares.push(node);
            }
        }
        let latest = self.chaos_ms.saturating_sub(1_500).max(1);
        for (k, action) in plan.into_iter().enumerate() {
            let t = match fault_times.get(r.index(fault_times.len().max(1))) {
                Some(t) if r.chance(600) => t.saturating_sub(r.range(0, 2_000)),
                _ => r.below(latest),
            };
            self.gov.push((t.min(latest) + k as u64, action));
        }
        let plan: Vec<GovAction> = self.gov.iter().map(|(_, a)| *a).collect();
        let max_power =
            reachable_powers(n, self.spares, &faulty, &plan).into_iter().map(|(t, _)| t).max().unwrap_or(n as u64);
        self.first_height_bound_ms = super::config::first_height_bound_ms(max_power as usize);
    }
}

/// (total power, power of the `faulty` nodes) of every set reachable from `n` validators of power 1 (and
/// `spares` outside the set) by a subset of `plan`.
fn reachable_powers(n: usize, spares: usize, faulty: &[usize], plan: &[GovAction]) -> Vec<(u64, u64)> {
    (0..1u32 << plan.len())
        .map(|mask| {
            let mut power: Vec<u64> = (0..n + spares).map(|i| u64::from(i < n)).collect();
            for (_, a) in plan.iter().enumerate().filter(|(k, _)| mask & (1 << k) != 0) {
                match *a {
                    GovAction::Add { node, power: p } | GovAction::SetPower { node, power: p } => power[node] = p,
                    GovAction::Remove { node } => power[node] = 0,
                    GovAction::Rotate { .. } => {}
                }
            }
            let bad = power.iter().enumerate().filter(|(i, _)| faulty.contains(i)).map(|(_, p)| p).sum();
            (power.iter().sum(), bad)
        })
        .collect()
}

/// A change the model saw decided and applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Activation {
    pub kind: ChangeKind,
    pub decided_at: u64,
    pub active_from: u64,
}

/// The checker's model of the validator set of every height, from the committed blocks alone.
pub struct SetModel {
    /// `sets[h]`: the set in force at height `h` (index 0: the genesis set), known up to the last block
    /// applied + 2.
    sets: Vec<ValidatorSet>,
    pending: BTreeMap<Hash, (ValidatorChange, BTreeSet<PublicKey>)>,
    executed: BTreeSet<Hash>,
    pub activations: Vec<Activation>,
}

impl SetModel {
    pub fn new(genesis: ValidatorSet) -> SetModel {
        SetModel {
            sets: vec![genesis.clone(), genesis.clone(), genesis],
            pending: BTreeMap::new(),
            executed: BTreeSet::new(),
            activations: Vec::new(),
        }
    }

    /// Highest block applied.
    pub fn applied(&self) -> u64 {
        self.sets.len() as u64 - 3
    }

    pub fn set_at(&self, height: Height) -> Option<&ValidatorSet> {
        usize::try_from(height.0).ok().and_then(|h| self.sets.get(h))
    }

    /// Apply the next block (height `applied() + 1`, already checked against the model).
    pub fn apply(&mut self, block: &Block) {
        let h = block.height().0;
        debug_assert_eq!(h, self.applied() + 1);
        let set = self.sets[h as usize].clone();
        for a in &block.approvals {
            let id = a.change.id();
            if self.executed.contains(&id) || set.index_of(&a.approver).is_none() {
                continue;
            }
            self.pending.entry(id).or_insert_with(|| (a.change.clone(), BTreeSet::new())).1.insert(a.approver);
        }
        let mut after: Vec<Validator> = self.sets[h as usize + 1].validators().to_vec();
        let decided: Vec<Hash> = self
            .pending
            .iter()
            .filter(|(_, (change, approvers))| {
                let power: u128 = approvers.iter().filter_map(|k| set.power_of(k)).map(u128::from).sum();
                let operator = match &change.action {
                    ChangeAction::RotateKey { old, .. } => approvers.contains(old),
                    _ => true,
                };
                operator && power * 3 > u128::from(set.total_power()) * 2
            })
            .map(|(id, _)| *id)
            .collect();
        for id in decided {
            let Some((change, _)) = self.pending.remove(&id) else { continue };
            self.executed.insert(id);
            if edit(&mut after, &change.action) {
                self.activations.push(Activation { kind: kind_of(&change.action), decided_at: h, active_from: h + 2 });
            }
        }
        for e in &block.evidence {
            let key = e.first.vote.validator;
            if let Some(i) = after.iter().position(|v| v.public_key == key)
                && after.len() > 1
            {
                after.remove(i);
                self.activations.push(Activation { kind: ChangeKind::Jail, decided_at: h, active_from: h + 2 });
            }
        }
        self.pending.retain(|_, (change, _)| change.expiry_height > h);
        let next = ValidatorSet::new(after).unwrap_or_else(|_| self.sets[h as usize + 1].clone());
        self.sets.push(next);
    }
}

/// Apply `action` to the list of validators; false (and no change) when it cannot apply.
fn edit(v: &mut Vec<Validator>, action: &ChangeAction) -> bool {
    let find = |v: &[Validator], k: &PublicKey| v.iter().position(|x| x.public_key == *k);
    match action {
        ChangeAction::Add { validator, .. } => {
            if find(v, &validator.public_key).is_some() || v.len() >= VALIDATORS_MAX {
                return false;
            }
            v.push(validator.clone());
        }
        ChangeAction::Remove { key } => match find(v, key) {
            Some(i) if v.len() > 1 => {
                v.remove(i);
            }
            _ => return false,
        },
        ChangeAction::SetPower { key, power } => match find(v, key) {
            Some(i) => v[i].power = *power,
            None => return false,
        },
        ChangeAction::RotateKey { old, new, .. } => match (find(v, old), find(v, new)) {
            (Some(i), None) => v[i].public_key = *new,
            _ => return false,
        },
    }
    true
}
