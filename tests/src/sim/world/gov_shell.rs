//! The shell's side of validator-set changes: which set and which key each node hands its core at each
//! height (from its own governance state), the operators' approvals (signed by the simulator with the
//! validators' keys and handed to every honest node's operations pool, which offers them to the blocks it
//! builds, as `node::ops` does), and the coverage figures.
//!
//! Key rotation: a node holds its old and new keypairs and hands its core the one in the set of each
//! height. The core takes its key at construction, so when the key changes at a new height the shell
//! builds a new core for that height with the signer state so far (its positions are all below the new
//! height, and its floor carries over) instead of feeding `NewHeight`. What that loses: the previous
//! height's late precommits (the stored certificate is used for `last_commit`), and a `Suspect` guard
//! mode, which was about the old key (a watch still running carries over).

use std::collections::VecDeque;

use ledger_core::consensus::{Config, Consensus, Event};
use ledger_core::governance::GovError;
use ledger_core::{Height, Keypair, MemStore, ValidatorSet};
use node::ops::OpsError;

use super::super::checker::Violation;
use super::super::governance::{ChangeKind, node_key};
use super::{Ev, Input, World, gov_of};

impl World {
    /// The set in force at `height` as node `i`'s own governance state knows it (up to its tip + 2).
    pub(super) fn set_for(&self, i: usize, height: Height) -> Option<ValidatorSet> {
        let live = self.nodes[i].live.as_ref()?;
        gov_of(&live.state).set_at(height).cloned()
    }

    /// The set node `i` hands its core for `height` (the height after the tip of `state`): the one in force
    /// per its governance state, or what the negative control's hook picks.
    pub(super) fn core_set(&self, i: usize, state: &MemStore, height: Height) -> ValidatorSet {
        let gov = gov_of(state);
        let hooked =
            self.cfg.set_hook.filter(|(node, _)| *node == i && self.honest(i)).and_then(|(_, h)| h(gov, height));
        hooked.or_else(|| gov.set_at(height).cloned()).unwrap_or_else(|| gov.next.clone())
    }

    /// The key node `i` signs with under `set`: the one of its keys in the set, else its newest.
    pub(super) fn key_for(&self, i: usize, set: &ValidatorSet) -> Keypair {
        let keys = &self.nodes[i].keys;
        keys.iter().find(|k| set.index_of(&k.public()).is_some()).unwrap_or(&keys[keys.len() - 1]).clone()
    }

    /// Start `height` at node `i` after a commit: `NewHeight` with the set in force there, or a new core
    /// when the key changes (see the module doc).
    pub(super) fn advance(&mut self, i: usize, height: Height, pending: &mut VecDeque<Input>) {
        let Some(live) = self.nodes[i].live.as_ref() else { return };
        let set = self.core_set(i, &live.state, height);
        let key = self.key_for(i, &set);
        if self.honest(i) {
            self.checker.on_set(i, height, &set);
        }
        if key.public() == live.key {
            self.feed(i, Event::NewHeight { height, validators: set }, pending);
            return;
        }
        let config = Config {
            chain_id: self.genesis.chain_id.clone(),
            validators: set,
            params: self.params.clone(),
            key: Some(key.clone()),
            signer: live.core.signer_state().clone(),
            height,
            sign_floor: Height(0),
            watch: live.watch_left_ms.is_some(),
        };
        let mut core = match Consensus::new(config) {
            Ok(c) => c,
            Err(e) => {
                let reason = format!("cannot switch to the rotated key: {e}");
                self.checker.violations.push(Violation::Durability { node: i, reason });
                return;
            }
        };
        if self.honest(i)
            && let Some(hook) = self.cfg.core_hook
        {
            hook(&mut core);
        }
        let live = self.live(i);
        live.core = core;
        live.key = key.public();
        self.report.key_switches += 1;
        self.feed(i, Event::Start, pending);
    }

    /// The operators sign their approvals of planned change `k` (every key of every honest node: those
    /// outside the set are refused until they are in it) and hand them to every honest node.
    pub(super) fn submit_change(&mut self, k: usize) {
        let change = self.cfg.gov[k].1.change(&self.genesis.chain_id, k as u64);
        self.report.gov_submitted += 1;
        for j in 0..self.nodes.len() {
            if self.honest(j) {
                for key in &self.nodes[j].keys {
                    self.desk.push(change.approve(&self.genesis.chain_id, key));
                }
            }
        }
        self.fold(&[5, self.now, k as u64]);
        for j in 0..self.nodes.len() {
            self.offer_approvals(j);
        }
    }

    /// Hand honest node `i`'s pool the approvals its state takes now (an operator's client retries after a
    /// restart and while an approver is not yet in the set), and the double votes its core reported once a
    /// block can carry them. The node's driver offers evidence once, for the block after its tip, which
    /// refuses a double vote of the current height as from the future: the simulator keeps it until its
    /// height is committed, so that jailing runs.
    pub(super) fn offer_approvals(&mut self, i: usize) {
        if !self.honest(i) {
            return;
        }
        let chain_id = &self.genesis.chain_id;
        let Some(live) = self.nodes[i].live.as_mut() else { return };
        let gov = gov_of(&live.state);
        let next = Height(live.chain.len() as u64).next();
        for a in &self.desk {
            if gov.approval_applies(next, a).is_ok() {
                let _ = live.ops.add_approval(gov, chain_id, next, a.clone());
            }
        }
        live.found_evidence.retain(|e| match live.ops.add_evidence(gov, chain_id, next, e.clone()) {
            Err(OpsError::Invalid(GovError::EvidenceFromFuture { .. })) => true,
            Ok(_) | Err(_) => false,
        });
    }

    /// Note the faults in force when height `height` is first committed (for the coverage figures).
    pub(super) fn note_faults_at_commit(&mut self, height: u64) {
        let partition = !self.cuts.is_empty();
        let crash = (0..self.nodes.len()).any(|j| self.honest(j) && self.nodes[j].live.is_none());
        self.faults_at_commit.insert(height, (partition, crash));
    }

    /// Coverage of the changes that activated (their height committed): by kind, and those with a
    /// partition or a crash in force when the height before it or it was first committed.
    pub(super) fn gov_coverage(&mut self) {
        let top = self.checker.committed_heights();
        let activations = self.checker.model.activations.clone();
        for a in activations.iter().filter(|a| a.active_from <= top) {
            let r = &mut self.report;
            match a.kind {
                ChangeKind::Add => r.adds += 1,
                ChangeKind::Remove => r.removes += 1,
                ChangeKind::SetPower => r.power_changes += 1,
                ChangeKind::Rotate => r.rotations += 1,
                ChangeKind::Jail => r.jailings += 1,
            }
            let around = [a.active_from - 1, a.active_from].map(|h| self.faults_at_commit.get(&h).copied());
            r.activated_in_partition += u64::from(around.iter().flatten().any(|(p, _)| *p));
            r.activated_in_crash += u64::from(around.iter().flatten().any(|(_, c)| *c));
        }
        self.report.sets_checked = self.checker.sets_checked;
    }

    /// Schedule the planned changes.
    pub(super) fn schedule_changes(&mut self) {
        for (k, (t, _)) in self.cfg.gov.clone().into_iter().enumerate() {
            if t < self.cfg.chaos_ms {
                self.push(t, Ev::Gov(k));
            }
        }
    }
}

/// The keys of node `i`: its first, and the one it rotates to if the plan rotates it.
pub(super) fn keys_of(i: usize, rotated: bool) -> Vec<Keypair> {
    if rotated { vec![node_key(i, 0), node_key(i, 1)] } else { vec![node_key(i, 0)] }
}
