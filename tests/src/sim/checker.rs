//! The invariants, checked as the run goes (after every step that could break one) and at the end.
//!
//! - I1 agreement: no two honest nodes commit different blocks at one height.
//! - I2/I3/I4 validity: every committed block extends its parent by hash, carries a verifying certificate
//!   of the parent, passes `check_against_parent` and `apply_block` on the parent state (which refuses
//!   double spends and overdrafts), and leaves the total supply unchanged.
//! - I5 durability: a restarted node's chain is not shorter than what it committed before.
//! - I7/I11 no honest double-sign: every message an honest validator ever sent, across restarts; two
//!   different payloads for one (height, round, step) is a violation. Messages are kept by validator, never
//!   by process or incarnation, and the checker's record is not on the node's disk: a restart that lost or
//!   rewound its signer state (the node forgot) cannot hide a double sign from it (the negative control
//!   `negative_control_signer_loss_without_guard_double_signs` shows it caught).
//! - I10 accountability: when an honest node's core accepted two different messages from one Byzantine
//!   validator for one slot (at the message's height, before deciding it), that node reported evidence.
//! - I2 with validator-set changes: the checker keeps its own model of the set of every height from the
//!   committed blocks (`governance::SetModel`, written from the rule rather than from the core's
//!   `GovState`); every certificate is verified against the model's set of its height, every header's
//!   `validators_hash` and `next_validators_hash` must name the model's sets, and the set every honest
//!   node hands its core at each height (`NewHeight`, or at a (re)start) must be the model's
//!   (`Violation::SetDisagreement`): all honest nodes agree on the set of every height.
//! - I6 liveness is checked by the world (it owns the clock).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ledger_core::consensus::{Evidence, SignStep, SignedMessage};
use ledger_core::state::apply_block;
use ledger_core::{Block, CommitCertificate, ConsensusParams, Hash, Height, MemStore, Parent, PublicKey, ValidatorSet};

use super::governance::SetModel;

/// A broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    Agreement {
        height: u64,
        first: (usize, Hash),
        second: (usize, Hash),
    },
    Validity {
        node: usize,
        height: u64,
        reason: String,
    },
    DoubleSign {
        validator: usize,
        height: u64,
        round: u32,
        step: SignStep,
    },
    MissingEvidence {
        node: usize,
        validator: usize,
        height: u64,
        round: u32,
        step: SignStep,
    },
    Durability {
        node: usize,
        reason: String,
    },
    Liveness {
        height: u64,
        waited_ms: u64,
        heights: Vec<u64>,
    },
    /// An honest node handed its core a set for `height` other than the one in force there.
    SetDisagreement {
        node: usize,
        height: u64,
        reason: String,
    },
    /// An honest node refused an honest peer's message as invalid (I14: honest behaviour is never penalised).
    HonestPenalised {
        node: usize,
        peer: usize,
        reason: String,
    },
}

impl Violation {
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::Agreement { .. } => "agreement",
            Violation::Validity { .. } => "validity",
            Violation::DoubleSign { .. } => "double-sign",
            Violation::MissingEvidence { .. } => "evidence",
            Violation::Durability { .. } => "durability",
            Violation::Liveness { .. } => "liveness",
            Violation::HonestPenalised { .. } => "honest-penalised",
            Violation::SetDisagreement { .. } => "validator-set",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.kind())?;
        match self {
            Violation::Agreement { height, first, second } => write!(
                f,
                "height {height}: node {} committed {}, node {} committed {}",
                first.0, first.1, second.0, second.1
            ),
            Violation::Validity { node, height, reason } => write!(f, "node {node} height {height}: {reason}"),
            Violation::DoubleSign { validator, height, round, step } => {
                write!(f, "honest validator {validator} signed two {step:?} messages at height {height} round {round}")
            }
            Violation::MissingEvidence { node, validator, height, round, step } => write!(
                f,
                "node {node} accepted two {step:?} messages of validator {validator} at height {height} round \
                 {round} but reported no evidence"
            ),
            Violation::Durability { node, reason } => write!(f, "node {node}: {reason}"),
            Violation::SetDisagreement { node, height, reason } => write!(f, "node {node} height {height}: {reason}"),
            Violation::HonestPenalised { node, peer, reason } => {
                write!(f, "node {node} refused a message from honest peer {peer} as invalid: {reason}")
            }
            Violation::Liveness { height, waited_ms, heights } => {
                write!(
                    f,
                    "height {height} not committed by every honest node after {waited_ms} ms; heights {heights:?}"
                )
            }
        }
    }
}

type Slot = (usize, u64, u32, SignStep);

pub struct Checker {
    chain_id: String,
    /// Which node holds each key (a rotated node holds two): messages are kept by node, whatever key.
    key_owner: BTreeMap<PublicKey, usize>,
    /// The set of every height, from the committed blocks.
    pub model: SetModel,
    /// Sets honest nodes handed their cores for heights the model did not know yet: (node, height, hash).
    unchecked_sets: Vec<(usize, u64, Hash)>,
    /// Heights whose set some honest node handed its core, checked against the model.
    pub sets_checked: u64,
    params: ConsensusParams,
    supply: u128,
    /// First commit seen per height: (node, block hash).
    committed: BTreeMap<u64, (usize, Hash)>,
    /// Blocks already checked for validity (a block hash pins its parent and so its parent state).
    valid_blocks: BTreeSet<Hash>,
    /// Certificates verified against the set in force at their height (every honest commit's is).
    verified_certs: BTreeSet<Hash>,
    /// Every message honest validators sent, by (validator, height, round, step).
    sent: BTreeMap<Slot, SignedMessage>,
    /// Distinct messages of Byzantine validators accepted by an honest core: (node, incarnation, slot).
    accepted: BTreeMap<(usize, u32, Slot), Vec<SignedMessage>>,
    /// Evidence reported by honest nodes: (node, validator slot).
    evidence: BTreeSet<(usize, Slot)>,
    pub violations: Vec<Violation>,
}

impl Checker {
    pub fn new(
        chain_id: &str,
        genesis_set: ValidatorSet,
        key_owner: BTreeMap<PublicKey, usize>,
        params: ConsensusParams,
        supply: u128,
    ) -> Checker {
        Checker {
            chain_id: chain_id.to_string(),
            key_owner,
            model: SetModel::new(genesis_set),
            unchecked_sets: Vec::new(),
            sets_checked: 0,
            params,
            supply,
            committed: BTreeMap::new(),
            valid_blocks: BTreeSet::new(),
            verified_certs: BTreeSet::new(),
            sent: BTreeMap::new(),
            accepted: BTreeMap::new(),
            evidence: BTreeSet::new(),
            violations: Vec::new(),
        }
    }

    /// The node holding `key`, if any.
    pub fn owner(&self, key: &PublicKey) -> Option<usize> {
        self.key_owner.get(key).copied()
    }

    fn index(&self, key: &PublicKey) -> usize {
        self.key_owner.get(key).copied().unwrap_or(usize::MAX)
    }

    fn slot(&self, m: &SignedMessage) -> Slot {
        let (h, r, s) = m.position();
        let signer = match m {
            SignedMessage::Proposal(p) => p.proposal.proposer,
            SignedMessage::Vote(v) => v.vote.validator,
        };
        (self.index(&signer), h.0, r.0, s)
    }

    /// An honest node committed `block` on top of `parent` whose state is `parent_state`. Returns the state
    /// after the block (checked), so the caller can compare with its own.
    pub fn on_commit(
        &mut self,
        node: usize,
        block: &Block,
        cert: &CommitCertificate,
        parent: &Parent<'_>,
        parent_state: &MemStore,
    ) {
        let height = block.height().0;
        let hash = block.hash();
        match self.committed.get(&height) {
            Some((first, h)) if *h != hash => {
                self.violations.push(Violation::Agreement { height, first: (*first, *h), second: (node, hash) });
            }
            Some(_) => {}
            None => {
                self.committed.insert(height, (node, hash));
            }
        }
        let fail = |reason: String| Violation::Validity { node, height, reason };
        if self.valid_blocks.contains(&hash) {
            // The block was checked; this node's certificate (its own set of precommits, or a synced one) is
            // checked here against the set in force at its height.
            if !self.verified_certs.contains(&cert.hash()) {
                let checked = self
                    .model
                    .set_at(block.height())
                    .map(|set| cert.verify_for(&self.chain_id, set, block.height(), hash));
                match checked {
                    Some(Ok(())) => {
                        self.verified_certs.insert(cert.hash());
                    }
                    Some(Err(e)) => self.violations.push(fail(format!("certificate against the set in force: {e}"))),
                    None => self.violations.push(fail("the model has no set for this height".into())),
                }
            }
            return;
        }
        if height != self.model.applied() + 1 {
            // A block above one that failed its checks: that failure is reported already.
            return;
        }
        let (Some(set), Some(next)) = (self.model.set_at(block.height()), self.model.set_at(block.height().next()))
        else {
            self.violations.push(fail("the model has no set for this height".into()));
            return;
        };
        if let Err(e) = cert.verify_for(&self.chain_id, set, block.height(), hash) {
            let v = fail(format!("certificate against the set in force: {e}"));
            self.violations.push(v);
            return;
        }
        self.verified_certs.insert(cert.hash());
        if block.header.validators_hash != set.hash() || block.header.next_validators_hash != next.hash() {
            let v = fail(format!(
                "header names sets {} / {}, in force {} / {}",
                block.header.validators_hash,
                block.header.next_validators_hash,
                set.hash(),
                next.hash()
            ));
            self.violations.push(v);
            return;
        }
        if block.header.prev_block_hash != parent.hash || block.height() != parent.height.next() {
            let v = fail("does not extend the parent".into());
            self.violations.push(v);
            return;
        }
        let Some(gov) = parent_state.gov() else {
            self.violations.push(fail("the parent state has no governance state".into()));
            return;
        };
        match apply_block(parent_state, parent_state.tree(), gov, block, parent, &self.params, &|_| false) {
            Ok(changes) => {
                let mut after = parent_state.clone();
                after.commit(&changes);
                if after.total_supply() != self.supply {
                    let v = fail(format!("supply {} != genesis supply {}", after.total_supply(), self.supply));
                    self.violations.push(v);
                    return;
                }
                self.valid_blocks.insert(hash);
                self.model.apply(block);
            }
            Err(e) => {
                let v = fail(format!("block does not apply: {e}"));
                self.violations.push(v);
            }
        }
    }

    /// An honest node hands its core `set` for `height` (at `NewHeight` or at a (re)start).
    pub fn on_set(&mut self, node: usize, height: Height, set: &ValidatorSet) {
        match self.model.set_at(height) {
            Some(expected) => self.compare_set(node, height.0, set.hash(), expected.hash()),
            None => self.unchecked_sets.push((node, height.0, set.hash())),
        }
    }

    fn compare_set(&mut self, node: usize, height: u64, got: Hash, expected: Hash) {
        self.sets_checked += 1;
        if got != expected {
            let reason = format!("core given set {got}, the set in force is {expected}");
            let v = Violation::SetDisagreement { node, height, reason };
            if !self.violations.contains(&v) {
                self.violations.push(v);
            }
        }
    }

    /// An honest validator is about to send `m` (fresh or re-sent).
    pub fn on_honest_send(&mut self, m: &SignedMessage) {
        let slot = self.slot(m);
        match self.sent.get(&slot) {
            Some(first) if first != m => {
                let (validator, height, round, step) = slot;
                let v = Violation::DoubleSign { validator, height, round, step };
                if !self.violations.contains(&v) {
                    self.violations.push(v);
                }
            }
            Some(_) => {}
            None => {
                self.sent.insert(slot, m.clone());
            }
        }
    }

    /// An honest node's core accepted `m` from a Byzantine validator at the message's height, undecided.
    pub fn on_byzantine_accepted(&mut self, node: usize, incarnation: u32, m: &SignedMessage) {
        let key = (node, incarnation, self.slot(m));
        let seen = self.accepted.entry(key).or_default();
        if !seen.contains(m) && seen.len() < 2 {
            seen.push(m.clone());
        }
    }

    pub fn on_evidence(&mut self, node: usize, e: &Evidence) {
        let m = match e {
            Evidence::DoubleVote { first, .. } => SignedMessage::Vote(first.clone()),
            Evidence::DoubleProposal { first, .. } => SignedMessage::Proposal(first.clone()),
        };
        let slot = self.slot(&m);
        self.evidence.insert((node, slot));
    }

    pub fn evidence_count(&self) -> usize {
        self.evidence.len()
    }

    pub fn committed_heights(&self) -> u64 {
        self.committed.keys().next_back().copied().unwrap_or(0)
    }

    pub fn first_commit(&self, height: u64) -> Option<Hash> {
        self.committed.get(&height).map(|(_, h)| *h)
    }

    /// End of run: every equivocation an honest core accepted became evidence at that node.
    pub fn finish(&mut self) {
        for (node, height, got) in std::mem::take(&mut self.unchecked_sets) {
            if let Some(expected) = self.model.set_at(Height(height)).map(ValidatorSet::hash) {
                self.compare_set(node, height, got, expected);
            }
        }
        for ((node, _, slot), msgs) in &self.accepted {
            if msgs.len() >= 2 && !self.evidence.contains(&(*node, *slot)) {
                let (validator, height, round, step) = *slot;
                self.violations.push(Violation::MissingEvidence { node: *node, validator, height, round, step });
            }
        }
    }

    pub fn height_of(h: Height) -> u64 {
        h.0
    }
}
