//! One durable signer-state write for the several messages one batch of the core's actions signs.
//!
//! The core asks for `PersistSignerState` before each message it signs, and the driver must not run a later
//! action before that state is durable. A proposer signs its proposal and its prevote in one batch; a lone
//! validator signs proposal, prevote and precommit in one. Each write costs a temp file, two fsyncs and a
//! rename, all on the consensus critical path.
//!
//! [`fold`] lets the *first* write of such a run store the *last* state of the run instead, and drops the
//! others. That only makes the guard stronger at every point of the batch: each action still runs after a
//! state at least as far as the one the core asked for is durable, and the signer state only moves forward
//! (a later state's last signed message is at a later or equal position, its floor is not lower, and its
//! lock is the core's latest). A crash after the folded write and before some broadcast leaves a signer
//! that refuses to sign again at every position up to the last one, which is what a crash just after the
//! last write of the unfolded batch leaves.
//!
//! The run ends at any action other than a broadcast or a timer: committing, building, validating or
//! switching keys may change what the next state belongs to, so writes are never moved across them. A
//! later state that does not cover the earlier one (never produced by the core) is written on its own.

use ledger_core::Hash;
use ledger_core::consensus::{Action, SignedMessage, SignerState};

/// One step of a batch after folding.
#[derive(Debug)]
pub enum Step {
    /// Write `state` durably, with the blocks of the proposals it stands for (`proposed`), before the next
    /// step runs.
    Persist { state: SignerState, proposed: Vec<Hash> },
    /// Any other action, unchanged and in the core's order.
    Act(Action),
}

/// The block a state's last signed message proposes, if it is a proposal.
pub fn proposed_block(state: &SignerState) -> Option<Hash> {
    match state.last_signed() {
        Some(SignedMessage::Proposal(p)) => Some(p.proposal.block_hash),
        _ => None,
    }
}

/// `later` guards at least everything `earlier` guards.
fn covers(later: &SignerState, earlier: &SignerState) -> bool {
    later.position() >= earlier.position() && later.floor() >= earlier.floor()
}

/// The core's actions with each run of signer-state writes, separated only by broadcasts and timers,
/// folded into its first write (see the module doc).
pub fn fold(actions: Vec<Action>) -> Vec<Step> {
    let mut out = Vec::with_capacity(actions.len());
    // Index in `out` of the write that a later write of the same run joins.
    let mut open: Option<usize> = None;
    for action in actions {
        match action {
            Action::PersistSignerState(state) => {
                let proposal = proposed_block(&state);
                if let Some(Step::Persist { state: held, proposed }) = open.and_then(|i| out.get_mut(i))
                    && covers(&state, held)
                {
                    *held = state;
                    proposed.extend(proposal);
                    continue;
                }
                out.push(Step::Persist { state, proposed: proposal.into_iter().collect() });
                open = Some(out.len() - 1);
            }
            Action::BroadcastProposal(_) | Action::BroadcastVote(_) | Action::ScheduleTimeout(_) => {
                out.push(Step::Act(action));
            }
            other => {
                open = None;
                out.push(Step::Act(other));
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ledger_core::consensus::{Config, Consensus, Event, SignStep};
    use ledger_core::{ConsensusParams, Height, Keypair, Round, Validator, ValidatorSet};

    /// A started core at height 1 of a set of `keys` (power 1 each), signing with `keys[me]`.
    pub(crate) fn started(keys: &[Keypair], me: usize) -> Consensus {
        let validators =
            keys.iter().map(|k| Validator { public_key: k.public(), power: 1, moniker: "v".into() }).collect();
        let mut c = Consensus::new(Config {
            chain_id: "c".into(),
            validators: ValidatorSet::new(validators).unwrap(),
            params: ConsensusParams::default(),
            key: Some(keys[me].clone()),
            signer: SignerState::default(),
            height: Height(1),
            sign_floor: Height(0),
            watch: false,
        })
        .unwrap();
        c.handle(Event::Start).unwrap();
        c
    }

    /// A write: the position its state reaches, and the proposals' blocks written with it.
    type Write = (Option<(Height, Round, SignStep)>, Vec<Hash>);

    fn persists(steps: &[Step]) -> Vec<Write> {
        steps
            .iter()
            .filter_map(|s| match s {
                Step::Persist { state, proposed } => Some((state.position(), proposed.clone())),
                Step::Act(Action::PersistSignerState(_)) => panic!("a write left unfolded"),
                Step::Act(_) => None,
            })
            .collect()
    }

    /// Every broadcast comes after a write whose state reaches at least the broadcast message.
    fn each_broadcast_is_guarded(steps: &[Step]) {
        let mut durable: Option<(Height, Round, SignStep)> = None;
        for s in steps {
            let sent = match s {
                Step::Persist { state, .. } => {
                    durable = durable.max(state.position());
                    continue;
                }
                Step::Act(Action::BroadcastProposal(p)) => SignedMessage::Proposal(p.clone()).position(),
                Step::Act(Action::BroadcastVote(v)) => SignedMessage::Vote(v.clone()).position(),
                Step::Act(_) => continue,
            };
            assert!(durable >= Some(sent), "{sent:?} sent with only {durable:?} durable");
        }
    }

    #[test]
    fn a_lone_validator_writes_once_per_height() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut c = started(std::slice::from_ref(&key), 0);
        let block = Hash([9; 32]);
        let actions = c.handle(Event::ProposalValue { height: Height(1), round: Round(0), block_hash: block }).unwrap();
        let asked = actions.iter().filter(|a| matches!(a, Action::PersistSignerState(_))).count();
        assert_eq!(asked, 3, "proposal, prevote and precommit: {actions:?}");
        let n_actions = actions.len();
        let steps = fold(actions);
        assert_eq!(steps.len(), n_actions - 2);
        let writes = persists(&steps);
        assert_eq!(writes, vec![(Some((Height(1), Round(0), SignStep::Precommit)), vec![block])]);
        // The write comes first, before the proposal leaves.
        assert!(matches!(steps[0], Step::Persist { .. }), "{steps:?}");
        each_broadcast_is_guarded(&steps);
    }

    #[test]
    fn a_proposer_of_four_writes_proposal_and_prevote_once() {
        let keys: Vec<Keypair> = (1..=4).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let set = ValidatorSet::new(
            keys.iter().map(|k| Validator { public_key: k.public(), power: 1, moniker: "v".into() }).collect(),
        )
        .unwrap();
        let proposer = set.proposer(Height(1), Round(0)).public_key;
        let me = keys.iter().position(|k| k.public() == proposer).unwrap();
        let mut c = started(&keys, me);
        let block = Hash([7; 32]);
        let actions = c.handle(Event::ProposalValue { height: Height(1), round: Round(0), block_hash: block }).unwrap();
        let steps = fold(actions);
        assert_eq!(persists(&steps), vec![(Some((Height(1), Round(0), SignStep::Prevote)), vec![block])]);
        each_broadcast_is_guarded(&steps);
    }

    #[test]
    fn runs_end_at_other_actions_and_at_a_state_that_does_not_cover() {
        let key = Keypair::from_seed(&[1; 32]);
        let mut c = started(std::slice::from_ref(&key), 0);
        let actions =
            c.handle(Event::ProposalValue { height: Height(1), round: Round(0), block_hash: Hash([9; 32]) }).unwrap();
        let states: Vec<SignerState> = actions
            .iter()
            .filter_map(|a| if let Action::PersistSignerState(s) = a { Some(s.clone()) } else { None })
            .collect();
        let (proposal, prevote) = (states[0].clone(), states[1].clone());
        let build = Action::BuildBlock { height: Height(2), round: Round(0) };

        // Another kind of action between two writes keeps both.
        let steps = fold(vec![
            Action::PersistSignerState(proposal.clone()),
            build.clone(),
            Action::PersistSignerState(prevote.clone()),
        ]);
        assert_eq!(persists(&steps).len(), 2);

        // An older state after a newer one is written again on its own, not dropped or merged.
        let steps =
            fold(vec![Action::PersistSignerState(prevote.clone()), Action::PersistSignerState(proposal.clone())]);
        let writes = persists(&steps);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[1].0, proposal.position());

        // A floor that rose is covered; one that fell is not.
        let mut raised = prevote.clone();
        raised.raise_floor(Height(5));
        let steps = fold(vec![Action::PersistSignerState(prevote.clone()), Action::PersistSignerState(raised)]);
        assert_eq!(persists(&steps).len(), 1);
        let mut high = prevote.clone();
        high.raise_floor(Height(5));
        let steps = fold(vec![Action::PersistSignerState(high), Action::PersistSignerState(prevote)]);
        assert_eq!(persists(&steps).len(), 2);
    }
}
