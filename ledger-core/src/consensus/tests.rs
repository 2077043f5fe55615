//! Table-driven tests: one table per rule of Algorithm 1, plus the guard, the keeper and certificates.
//!
//! Four validators of power 1 at height 1: a quorum (2f+1) is 3 votes, f+1 is 2. "Others" are the three
//! validators that are not the node under test; inputs from them are signed with their keys.

use super::*;
use crate::cert::CommitCertificate;
use crate::crypto::Keypair;
use crate::hash::Hash;
use crate::params::ConsensusParams;
use crate::types::{Height, Round};
use crate::validator::{Validator, ValidatorSet};
use crate::vote::{MessageError, Proposal, SignedProposal, SignedVote, Vote, VoteKind};

const CHAIN: &str = "test-chain";
const H: Height = Height(1);

fn keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
}

fn set() -> ValidatorSet {
    ValidatorSet::new(
        keys()
            .iter()
            .enumerate()
            .map(|(i, k)| Validator { public_key: k.public(), power: 1, moniker: format!("v{i}") })
            .collect(),
    )
    .unwrap()
}

fn block(n: u8) -> Hash {
    Hash([n; 32])
}

fn proposer_of(round: u32) -> usize {
    let s = set();
    s.index_of(&s.proposer(H, Round(round)).public_key).unwrap()
}

/// A validator that is not the proposer of any of `rounds`.
fn non_proposer(rounds: &[u32]) -> usize {
    (0..4).find(|i| rounds.iter().all(|r| proposer_of(*r) != *i)).unwrap()
}

fn others(me: usize) -> Vec<usize> {
    (0..4).filter(|i| *i != me).collect()
}

fn node(me: Option<usize>, signer: SignerState) -> Consensus {
    Consensus::new(Config {
        chain_id: CHAIN.into(),
        validators: set(),
        params: ConsensusParams::default(),
        key: me.map(|i| keys()[i].clone()),
        signer,
        height: H,
        sign_floor: Height(0),
        watch: false,
    })
    .unwrap()
}

fn vote(from: usize, kind: VoteKind, round: u32, hash: Option<u8>) -> SignedVote {
    let k = &keys()[from];
    Vote { kind, height: H, round: Round(round), block_hash: hash.map(block), validator: k.public() }.sign(CHAIN, k)
}

fn proposal(round: u32, hash: u8, pol: Option<u32>) -> SignedProposal {
    let k = &keys()[proposer_of(round)];
    Proposal {
        height: H,
        round: Round(round),
        pol_round: pol.map(Round),
        block_hash: block(hash),
        proposer: k.public(),
    }
    .sign(CHAIN, k)
}

/// Test inputs. `Prevotes`/`Precommits` come from the first `n` others, in order.
#[derive(Clone, Debug)]
enum In {
    Start,
    Prop(u32, u8, Option<u32>),
    Valid(u8, bool),
    Value(u32, u8),
    Prevote(usize, u32, Option<u8>),
    Precommit(usize, u32, Option<u8>),
    Prevotes(usize, u32, Option<u8>),
    Precommits(usize, u32, Option<u8>),
    Fire(TimeoutKind, u32),
}

/// Actions, summarised. Our own broadcast votes show as `Prevote`/`Precommit`; `PersistSignerState` is
/// left out here and checked separately (it must precede each fresh broadcast).
#[derive(Clone, Debug, PartialEq, Eq)]
enum Out {
    Propose(u32, u8, Option<u32>),
    Prevote(u32, Option<u8>),
    Precommit(u32, Option<u8>),
    Timeout(TimeoutKind, u32),
    Build(u32),
    Validate(u8),
    Request(u32, u8),
    Decide(u32, u8),
    Evidence,
    Rejected,
}

fn events(me: usize, input: &In) -> Vec<Event> {
    let from_others = |n: usize, kind, round, hash| -> Vec<Event> {
        others(me).into_iter().take(n).map(|o| Event::Vote(vote(o, kind, round, hash))).collect()
    };
    match input.clone() {
        In::Start => vec![Event::Start],
        In::Prop(r, v, pol) => vec![Event::Proposal(proposal(r, v, pol))],
        In::Valid(v, valid) => {
            vec![Event::BlockValidity { height: H, round: Round(0), block_hash: block(v), valid }]
        }
        In::Value(r, v) => vec![Event::ProposalValue { height: H, round: Round(r), block_hash: block(v) }],
        In::Prevote(o, r, v) => vec![Event::Vote(vote(others(me)[o], VoteKind::Prevote, r, v))],
        In::Precommit(o, r, v) => vec![Event::Vote(vote(others(me)[o], VoteKind::Precommit, r, v))],
        In::Prevotes(n, r, v) => from_others(n, VoteKind::Prevote, r, v),
        In::Precommits(n, r, v) => from_others(n, VoteKind::Precommit, r, v),
        In::Fire(kind, r) => vec![Event::TimeoutFired(Timeout { height: H, round: Round(r), kind })],
    }
}

fn summarise(actions: &[Action]) -> Vec<Out> {
    let byte = |h: &Hash| h.0[0];
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PersistSignerState(_) => None,
            Action::BroadcastProposal(p) => {
                let p = &p.proposal;
                Some(Out::Propose(p.round.0, byte(&p.block_hash), p.pol_round.map(|r| r.0)))
            }
            Action::BroadcastVote(v) => {
                let v = &v.vote;
                let hash = v.block_hash.as_ref().map(byte);
                Some(match v.kind {
                    VoteKind::Prevote => Out::Prevote(v.round.0, hash),
                    VoteKind::Precommit => Out::Precommit(v.round.0, hash),
                })
            }
            Action::ScheduleTimeout(t) => Some(Out::Timeout(t.kind, t.round.0)),
            Action::BuildBlock { round, .. } => Some(Out::Build(round.0)),
            Action::ValidateBlock { block_hash, .. } => Some(Out::Validate(byte(block_hash))),
            Action::RequestProposal { round, block_hash, .. } => Some(Out::Request(round.0, byte(block_hash))),
            Action::Decide { round, block_hash, .. } => Some(Out::Decide(round.0, byte(block_hash))),
            Action::Evidence(_) => Some(Out::Evidence),
            Action::ForeignSignature { .. } => None,
        })
        .collect()
}

/// Every persist is immediately followed by the broadcast of the message it covers, and every broadcast
/// (outside a restart) is immediately preceded by the persist that covers it.
fn check_persist_before_broadcast(actions: &[Action]) {
    for (i, a) in actions.iter().enumerate() {
        let sent = match a {
            Action::BroadcastVote(v) => SignedMessage::Vote(v.clone()),
            Action::BroadcastProposal(p) => SignedMessage::Proposal(p.clone()),
            _ => continue,
        };
        let before = i.checked_sub(1).and_then(|j| actions.get(j));
        match before {
            Some(Action::PersistSignerState(s)) => assert_eq!(s.last_signed(), Some(&sent)),
            other => panic!("broadcast {sent:?} not preceded by a persist but by {other:?}"),
        }
    }
}

struct Case {
    name: &'static str,
    me: usize,
    broken_lock: bool,
    steps: Vec<(In, Vec<Out>)>,
    /// (round, block) expected locked and valid at the end; `None` = do not check.
    locked: Option<Option<(u32, u8)>>,
    valid: Option<Option<(u32, u8)>>,
}

fn case(name: &'static str, me: usize, steps: Vec<(In, Vec<Out>)>) -> Case {
    Case { name, me, broken_lock: false, steps, locked: None, valid: None }
}

fn run(cases: Vec<Case>) {
    for c in cases {
        let mut n = node(Some(c.me), SignerState::default());
        n.set_broken_lock(c.broken_lock);
        for (i, (input, expected)) in c.steps.iter().enumerate() {
            let mut got = Vec::new();
            for e in events(c.me, input) {
                match n.handle(e) {
                    Ok(actions) => {
                        check_persist_before_broadcast(&actions);
                        got.extend(summarise(&actions));
                    }
                    Err(_) => got.push(Out::Rejected),
                }
            }
            assert_eq!(&got, expected, "case {:?}, step {i} ({input:?})", c.name);
        }
        let as_pair = |l: Option<Lock>| l.map(|l| (l.round.0, l.block_hash.0[0]));
        if let Some(locked) = c.locked {
            assert_eq!(as_pair(n.locked()), locked, "case {:?}: locked", c.name);
        }
        if let Some(valid) = c.valid {
            assert_eq!(as_pair(n.valid()), valid, "case {:?}: valid", c.name);
        }
    }
}

use In::*;
use Out as O;
use TimeoutKind::{Precommit as TPrecommit, Prevote as TPrevote, Propose as TPropose};

/// Steps that lock `me` on block 1 in round 0 (me prevotes and precommits 1) and move to round 1.
fn locked_on_1_then_round_1() -> Vec<(In, Vec<Out>)> {
    vec![
        (Start, vec![O::Timeout(TPropose, 0)]),
        (Prop(0, 1, None), vec![O::Validate(1)]),
        (Valid(1, true), vec![O::Prevote(0, Some(1))]),
        (Prevotes(2, 0, Some(1)), vec![O::Timeout(TPrevote, 0), O::Precommit(0, Some(1))]),
        (Precommits(2, 0, None), vec![O::Timeout(TPrecommit, 0)]),
        (Fire(TPrecommit, 0), vec![O::Timeout(TPropose, 1)]),
    ]
}

#[test]
fn proposer_schedule_of_the_fixture() {
    // The tables below rely on distinct proposers in rounds 0..3.
    let p: Vec<usize> = (0..4).map(proposer_of).collect();
    let mut sorted = p.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 4, "{p:?}");
}

#[test]
fn l11_l21_start_round_and_proposer_path() {
    let p0 = proposer_of(0);
    let p1 = proposer_of(1);
    let mut relock = locked_on_1_then_round_1();
    // As proposer of round 1 with validValue = 1 from round 0: re-propose it with validRound 0 (L15-L16,
    // L19), then prevote it through L28 (the polka of round 0 is known).
    relock.pop();
    relock
        .push((Fire(TPrecommit, 0), vec![O::Propose(1, 1, Some(0)), O::Timeout(TPropose, 1), O::Prevote(1, Some(1))]));
    run(vec![
        case(
            "non-proposer schedules the propose timeout (L21)",
            non_proposer(&[0]),
            vec![(Start, vec![O::Timeout(TPropose, 0)])],
        ),
        case(
            "proposer without validValue asks for a block, proposes it, prevotes it (L18-L19, L22)",
            p0,
            vec![
                (Start, vec![O::Build(0), O::Timeout(TPropose, 0)]),
                (Value(0, 7), vec![O::Propose(0, 7, None), O::Prevote(0, Some(7))]),
                (Value(0, 8), vec![O::Rejected]),
            ],
        ),
        case(
            "a value for a round we do not propose in is refused",
            non_proposer(&[0]),
            vec![(Start, vec![O::Timeout(TPropose, 0)]), (Value(0, 7), vec![O::Rejected])],
        ),
        Case {
            locked: Some(Some((0, 1))),
            valid: Some(Some((0, 1))),
            ..case("proposer re-proposes validValue (L15-L16)", p1, relock)
        },
    ]);
}

#[test]
fn l22_l27_prevote_on_proposal() {
    let me = non_proposer(&[0, 1]);
    let mut locked_other = locked_on_1_then_round_1();
    locked_other.push((Prop(1, 2, None), vec![O::Validate(2)]));
    locked_other.push((Valid(2, true), vec![O::Prevote(1, None)]));
    let mut broken = locked_other.clone();
    broken.pop();
    broken.push((Valid(2, true), vec![O::Prevote(1, Some(2))]));
    run(vec![
        case(
            "valid proposal, not locked: prevote it",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, true), vec![O::Prevote(0, Some(1))]),
            ],
        ),
        case(
            "invalid proposal: prevote nil",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, false), vec![O::Prevote(0, None)]),
            ],
        ),
        case(
            "no prevote before the verdict; proposal from the wrong round's proposer is refused",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Prop(0, 1, None), vec![]),
            ],
        ),
        Case { locked: Some(Some((0, 1))), ..case("locked on another value: prevote nil (L23)", me, locked_other) },
        Case { broken_lock: true, ..case("broken-lock ignores the lock (negative control)", me, broken) },
    ]);
}

#[test]
fn l28_l33_proposal_with_pol() {
    let me = non_proposer(&[0, 1, 2]);
    // me locked on 1 at round 0; round 1 has a polka for 2 (without me); round 2 re-proposes 2 with vr = 1.
    let mut unlock = locked_on_1_then_round_1();
    unlock.extend([
        (Prevotes(3, 1, Some(2)), vec![O::Request(1, 2)]),
        (Fire(TPropose, 1), vec![O::Prevote(1, None), O::Timeout(TPrevote, 1)]),
        (Precommits(3, 1, None), vec![O::Timeout(TPrecommit, 1)]),
        (Fire(TPrecommit, 1), vec![O::Timeout(TPropose, 2)]),
        (Prop(2, 2, Some(1)), vec![O::Validate(2)]),
        (Valid(2, true), vec![O::Prevote(2, Some(2))]),
    ]);
    run(vec![
        case(
            "proposal with a POL we hold: prevote it (L28-L30)",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Fire(TPropose, 0), vec![O::Prevote(0, None)]),
                (Prevotes(3, 0, Some(2)), vec![O::Timeout(TPrevote, 0), O::Request(0, 2)]),
                (Fire(TPrevote, 0), vec![O::Precommit(0, None)]),
                (Precommits(3, 0, None), vec![O::Timeout(TPrecommit, 0)]),
                (Fire(TPrecommit, 0), vec![O::Timeout(TPropose, 1)]),
                (Prop(1, 2, Some(0)), vec![O::Validate(2)]),
                (Valid(2, true), vec![O::Prevote(1, Some(2))]),
            ],
        ),
        case(
            "proposal with a POL we do not hold: wait (no prevote)",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Fire(TPropose, 0), vec![O::Prevote(0, None)]),
                (Precommits(3, 0, None), vec![O::Timeout(TPrecommit, 0)]),
                (Fire(TPrecommit, 0), vec![O::Timeout(TPropose, 1)]),
                (Prop(1, 2, Some(0)), vec![O::Validate(2)]),
                (Valid(2, true), vec![]),
                (Fire(TPropose, 1), vec![O::Prevote(1, None)]),
            ],
        ),
        Case {
            locked: Some(Some((0, 1))),
            ..case("locked at round 0, POL at round 1 unlocks (L29 lockedRound <= vr)", me, unlock)
        },
        case(
            "POL round not below the round is refused",
            me,
            vec![(Start, vec![O::Timeout(TPropose, 0)]), (Prop(1, 2, Some(1)), vec![O::Rejected])],
        ),
    ]);
}

#[test]
fn l34_l48_prevote_and_precommit_thresholds() {
    let me = non_proposer(&[0]);
    let start = || {
        vec![
            (Start, vec![O::Timeout(TPropose, 0)]),
            (Prop(0, 1, None), vec![O::Validate(1)]),
            (Valid(1, true), vec![O::Prevote(0, Some(1))]),
        ]
    };
    let with = |extra: Vec<(In, Vec<Out>)>| {
        let mut s = start();
        s.extend(extra);
        s
    };
    run(vec![
        case(
            "L34: 2f+1 prevotes for anything schedule the prevote timeout, once",
            me,
            with(vec![
                (Prevote(0, 0, None), vec![]),
                (Prevote(1, 0, Some(2)), vec![O::Timeout(TPrevote, 0)]),
                (Prevote(2, 0, Some(3)), vec![]),
            ]),
        ),
        Case {
            locked: Some(Some((0, 1))),
            valid: Some(Some((0, 1))),
            ..case(
                "L36: polka for the proposal: lock and precommit it",
                me,
                with(vec![(Prevotes(2, 0, Some(1)), vec![O::Timeout(TPrevote, 0), O::Precommit(0, Some(1))])]),
            )
        },
        Case {
            locked: Some(None),
            valid: Some(Some((0, 1))),
            ..case(
                "L36 after precommitting nil: validValue set, no lock, no precommit (L42-L43)",
                me,
                vec![
                    (Start, vec![O::Timeout(TPropose, 0)]),
                    (Fire(TPropose, 0), vec![O::Prevote(0, None)]),
                    (Prevotes(2, 0, Some(1)), vec![O::Timeout(TPrevote, 0)]),
                    (Fire(TPrevote, 0), vec![O::Precommit(0, None)]),
                    (Prop(0, 1, None), vec![O::Validate(1)]),
                    (Valid(1, true), vec![]),
                    (Prevote(2, 0, Some(1)), vec![]),
                ],
            )
        },
        case(
            "L44: nil polka: precommit nil",
            me,
            with(vec![(Prevotes(3, 0, None), vec![O::Timeout(TPrevote, 0), O::Precommit(0, None)])]),
        ),
        case(
            "L47: 2f+1 precommits for anything schedule the precommit timeout, once",
            me,
            with(vec![
                (Precommit(0, 0, None), vec![]),
                (Precommit(1, 0, Some(2)), vec![]),
                (Precommit(2, 0, Some(3)), vec![O::Timeout(TPrecommit, 0)]),
            ]),
        ),
    ]);
}

#[test]
fn l49_l54_decide() {
    let me = non_proposer(&[0]);
    run(vec![
        case(
            "2f+1 precommits for a valid proposal: decide",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, true), vec![O::Prevote(0, Some(1))]),
                (Precommits(3, 0, Some(1)), vec![O::Decide(0, 1)]),
                (Fire(TPropose, 0), vec![]),
                (Prop(1, 2, None), vec![]),
            ],
        ),
        case(
            "precommits first: request the proposal, decide once it is validated",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Precommits(3, 0, Some(1)), vec![O::Timeout(TPrecommit, 0), O::Request(0, 1)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, true), vec![O::Decide(0, 1)]),
            ],
        ),
        case(
            "2f+1 precommits for an invalid block: no decision",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, false), vec![O::Prevote(0, None)]),
                (Precommits(3, 0, Some(1)), vec![O::Timeout(TPrecommit, 0)]),
            ],
        ),
        case(
            "decide on precommits of an earlier round",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(0, 1, None), vec![O::Validate(1)]),
                (Valid(1, true), vec![O::Prevote(0, Some(1))]),
                (Prevotes(2, 1, None), vec![O::Timeout(TPropose, 1)]),
                (Precommits(3, 0, Some(1)), vec![O::Decide(0, 1)]),
            ],
        ),
    ]);
}

#[test]
fn l55_round_skip() {
    let me = non_proposer(&[0, 2, 3]);
    run(vec![
        case(
            "f+1 validators in higher rounds: jump to the highest round they vouch for",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prevote(0, 3, None), vec![]),
                (Precommit(1, 2, None), vec![O::Timeout(TPropose, 2)]),
                (Prevote(2, 3, None), vec![O::Timeout(TPropose, 3)]),
            ],
        ),
        case(
            "a proposal counts as a message of its round",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Prop(2, 5, None), vec![O::Validate(5)]),
                (Prevote(0, 2, None), vec![O::Timeout(TPropose, 2)]),
                (Valid(5, true), vec![O::Prevote(2, Some(5))]),
            ],
        ),
        case(
            "messages too far ahead are refused",
            me,
            vec![(Start, vec![O::Timeout(TPropose, 0)]), (Prevote(0, ROUNDS_AHEAD_MAX + 1, None), vec![O::Rejected])],
        ),
    ]);
}

#[test]
fn l57_l67_timeouts() {
    let me = non_proposer(&[0, 1]);
    run(vec![
        case(
            "timeouts in order: prevote nil, precommit nil, next round",
            me,
            vec![
                (Start, vec![O::Timeout(TPropose, 0)]),
                (Fire(TPropose, 0), vec![O::Prevote(0, None)]),
                (Fire(TPropose, 0), vec![]),
                (Fire(TPrevote, 0), vec![O::Precommit(0, None)]),
                (Fire(TPrevote, 0), vec![]),
                (Fire(TPrecommit, 0), vec![O::Timeout(TPropose, 1)]),
            ],
        ),
        case(
            "stale timeouts (other round or step) do nothing",
            me,
            vec![(Start, vec![O::Timeout(TPropose, 0)]), (Fire(TPropose, 1), vec![]), (Fire(TPrevote, 0), vec![])],
        ),
    ]);
}

#[test]
fn timeouts_grow_with_the_round() {
    let p = ConsensusParams::default();
    let t = |kind, r| timeout_duration_ms(&p, &Timeout { height: H, round: Round(r), kind });
    assert_eq!(t(TPropose, 0), p.timeout_propose_ms);
    assert_eq!(t(TPrevote, 2), p.timeout_prevote_ms + 2 * p.timeout_delta_ms);
    assert_eq!(t(TPrecommit, 3), p.timeout_precommit_ms + 3 * p.timeout_delta_ms);
    assert_eq!(t(TPropose, u32::MAX), p.timeout_propose_ms + u64::from(u32::MAX) * p.timeout_delta_ms);
}

/// Feed events, return all actions (panics on refusal).
fn feed(n: &mut Consensus, events: Vec<Event>) -> Vec<Action> {
    let mut out = Vec::new();
    for e in events {
        out.extend(n.handle(e).unwrap());
    }
    out
}

fn last_persisted(actions: &[Action]) -> SignerState {
    actions
        .iter()
        .rev()
        .find_map(|a| if let Action::PersistSignerState(s) = a { Some(s.clone()) } else { None })
        .unwrap()
}

#[test]
fn signer_guard_refuses_conflicts_after_restart() {
    let me = non_proposer(&[0]);
    let mut n = node(Some(me), SignerState::default());
    let actions = feed(
        &mut n,
        vec![
            Event::Start,
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
        ],
    );
    let persisted = last_persisted(&actions);
    let my_prevote = vote(me, VoteKind::Prevote, 0, Some(1));
    assert_eq!(persisted.last_signed(), Some(&SignedMessage::Vote(my_prevote.clone())));

    // Survives encoding, as the node stores it.
    let bytes = crate::encoding::encode(&persisted);
    let restored: SignerState = crate::encoding::decode(&bytes, 1024).unwrap();
    assert_eq!(restored, persisted);

    // Restart: resume in round 0 at the prevote step and re-send the same prevote without a new persist.
    let mut n = node(Some(me), restored.clone());
    let actions = n.handle(Event::Start).unwrap();
    assert_eq!(actions, vec![Action::BroadcastVote(my_prevote.clone())]);
    assert_eq!((n.round(), n.step()), (Round(0), Step::Prevote));
    // The propose timeout of round 0 would prevote nil: the machine is past that step, nothing is signed.
    assert_eq!(n.handle(Event::TimeoutFired(Timeout { height: H, round: Round(0), kind: TPropose })).unwrap(), vec![]);

    // The guard itself: a different prevote in the same slot, or anything below it, is refused; the same
    // payload gets the stored message back.
    let key = &keys()[me];
    let mut guard = restored;
    let other = Vote { block_hash: Some(block(2)), ..my_prevote.vote.clone() };
    assert_eq!(guard.sign_vote(CHAIN, key, other), signer::Signing::Refused);
    assert_eq!(guard.sign_vote(CHAIN, key, my_prevote.vote.clone()), signer::Signing::Repeat(my_prevote.clone()));
    let p = Proposal { height: H, round: Round(0), pol_round: None, block_hash: block(2), proposer: key.public() };
    assert_eq!(guard.sign_proposal(CHAIN, key, p), signer::Signing::Refused);
    let precommit = Vote { kind: VoteKind::Precommit, ..my_prevote.vote.clone() };
    assert!(matches!(guard.sign_vote(CHAIN, key, precommit), signer::Signing::Fresh(_)));

    // A signer state from a later height means storage went back: refuse to start.
    let later = Consensus::new(Config {
        chain_id: CHAIN.into(),
        validators: set(),
        params: ConsensusParams::default(),
        key: Some(key.clone()),
        signer: guard,
        height: Height::GENESIS,
        sign_floor: Height(0),
        watch: false,
    });
    assert!(matches!(later, Err(ConsensusError::SignerAhead { .. })));
}

#[test]
fn lock_survives_restart() {
    let me = non_proposer(&[0, 1]);
    let mut n = node(Some(me), SignerState::default());
    let mut events = vec![
        Event::Start,
        Event::Proposal(proposal(0, 1, None)),
        Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
    ];
    events.extend(others(me).into_iter().take(2).map(|o| Event::Vote(vote(o, VoteKind::Prevote, 0, Some(1)))));
    let actions = feed(&mut n, events);
    let persisted = last_persisted(&actions);
    assert_eq!(persisted.lock_at(H), Some(Lock { round: Round(0), block_hash: block(1) }));

    // After a restart the node is still locked: a new proposal for another block in round 1 gets nil.
    let mut n = node(Some(me), persisted);
    let mut events = vec![Event::Start];
    events.extend(others(me).into_iter().take(2).map(|o| Event::Vote(vote(o, VoteKind::Prevote, 1, None))));
    events.push(Event::Proposal(proposal(1, 2, None)));
    events.push(Event::BlockValidity { height: H, round: Round(1), block_hash: block(2), valid: true });
    let actions = feed(&mut n, events);
    let prevotes: Vec<_> = summarise(&actions).into_iter().filter(|o| matches!(o, O::Prevote(1, _))).collect();
    assert_eq!(prevotes, vec![O::Prevote(1, None)]);
}

#[test]
fn equivocation_yields_evidence_with_both_votes_once() {
    let me = non_proposer(&[0]);
    let cheater = others(me)[0];
    let mut n = node(Some(me), SignerState::default());
    n.handle(Event::Start).unwrap();
    let a = vote(cheater, VoteKind::Prevote, 0, Some(1));
    let b = vote(cheater, VoteKind::Prevote, 0, Some(2));
    let c = vote(cheater, VoteKind::Prevote, 0, None);
    assert_eq!(n.handle(Event::Vote(a.clone())).unwrap(), vec![]);
    assert_eq!(n.handle(Event::Vote(a.clone())).unwrap(), vec![], "duplicate");
    assert_eq!(
        n.handle(Event::Vote(b.clone())).unwrap(),
        vec![Action::Evidence(Evidence::DoubleVote { first: a.clone(), second: b })]
    );
    assert_eq!(n.handle(Event::Vote(c)).unwrap(), vec![], "evidence once per slot");
    // A precommit in the same round is another slot: no evidence.
    assert_eq!(n.handle(Event::Vote(vote(cheater, VoteKind::Precommit, 0, Some(2)))).unwrap(), vec![]);

    // Equivocating proposer.
    let p = proposer_of(0);
    let first = proposal(0, 1, None);
    let k = &keys()[p];
    let second = Proposal { block_hash: block(2), ..first.proposal.clone() }.sign(CHAIN, k);
    assert_eq!(summarise(&n.handle(Event::Proposal(first.clone())).unwrap()), vec![O::Validate(1)]);
    assert_eq!(
        n.handle(Event::Proposal(second.clone())).unwrap(),
        vec![Action::Evidence(Evidence::DoubleProposal { first, second })]
    );
}

#[test]
fn bad_messages_are_refused() {
    let me = non_proposer(&[0]);
    let mut n = node(Some(me), SignerState::default());
    assert_eq!(n.handle(Event::Vote(vote(0, VoteKind::Prevote, 0, None))).unwrap_err(), ConsensusError::NotStarted);
    n.handle(Event::Start).unwrap();
    assert_eq!(n.handle(Event::Start).unwrap_err(), ConsensusError::AlreadyStarted);

    let outsider = Keypair::from_seed(&[99; 32]);
    let v =
        Vote { kind: VoteKind::Prevote, height: H, round: Round(0), block_hash: None, validator: outsider.public() }
            .sign(CHAIN, &outsider);
    assert_eq!(
        n.handle(Event::Vote(v)).unwrap_err(),
        ConsensusError::Message(MessageError::NotAValidator(outsider.public()))
    );

    let k = &keys()[others(me)[0]];
    let wrong_height =
        Vote { kind: VoteKind::Prevote, height: Height(2), round: Round(0), block_hash: None, validator: k.public() }
            .sign(CHAIN, k);
    assert_eq!(
        n.handle(Event::Vote(wrong_height)).unwrap_err(),
        ConsensusError::WrongHeight { expected: H, got: Height(2) }
    );

    let mut bad_sig = vote(others(me)[0], VoteKind::Prevote, 0, None);
    bad_sig.signature.0[0] ^= 1;
    assert!(matches!(n.handle(Event::Vote(bad_sig)), Err(ConsensusError::Message(MessageError::BadSignature(_)))));
    let other_chain =
        Vote { kind: VoteKind::Prevote, height: H, round: Round(0), block_hash: None, validator: k.public() }
            .sign("other-chain", k);
    assert!(matches!(n.handle(Event::Vote(other_chain)), Err(ConsensusError::Message(MessageError::BadSignature(_)))));

    // A proposal signed by a validator that is not the round's proposer.
    let not_proposer = (0..4).find(|i| *i != proposer_of(0)).unwrap();
    let kp = &keys()[not_proposer];
    let p = Proposal { height: H, round: Round(0), pol_round: None, block_hash: block(1), proposer: kp.public() }
        .sign(CHAIN, kp);
    assert!(matches!(n.handle(Event::Proposal(p)), Err(ConsensusError::WrongProposer { .. })));

    // A proposal with a forged signature.
    let mut forged = proposal(0, 1, None);
    forged.signature.0[5] ^= 1;
    assert!(matches!(n.handle(Event::Proposal(forged)), Err(ConsensusError::Message(_))));

    // Verdicts and values nobody asked for.
    let verdict = Event::BlockValidity { height: H, round: Round(0), block_hash: block(9), valid: true };
    assert!(matches!(n.handle(verdict), Err(ConsensusError::Unsolicited { .. })));

    // None of that moved the machine.
    assert_eq!((n.round(), n.step()), (Round(0), Step::Propose));
}

#[test]
fn certificate_at_decision_verifies_and_late_precommits_complete_it() {
    let me = non_proposer(&[0]);
    let o = others(me);
    let mut n = node(Some(me), SignerState::default());
    let mut events = vec![
        Event::Start,
        Event::Proposal(proposal(0, 1, None)),
        Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
    ];
    events.extend(o.iter().take(2).map(|i| Event::Vote(vote(*i, VoteKind::Prevote, 0, Some(1)))));
    events.extend(o.iter().take(2).map(|i| Event::Vote(vote(*i, VoteKind::Precommit, 0, Some(1)))));
    let actions = feed(&mut n, events);
    let cert: CommitCertificate = actions
        .iter()
        .find_map(|a| if let Action::Decide { certificate, .. } = a { Some(certificate.clone()) } else { None })
        .unwrap();
    cert.verify_for(CHAIN, &set(), H, block(1)).unwrap();
    assert_eq!(cert.signatures.len(), 3);
    assert!(cert.signatures.windows(2).all(|w| w[0].validator_index < w[1].validator_index));

    // A late precommit at the decided height is collected.
    n.handle(Event::Vote(vote(o[2], VoteKind::Precommit, 0, Some(1)))).unwrap();
    assert_eq!(n.commit_certificate(H).unwrap().signatures.len(), 4);

    // And after the next height starts, for the previous height, with the set of that height.
    let mut n2 = node(Some(me), SignerState::default());
    feed(&mut n2, {
        let mut e = vec![
            Event::Start,
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
        ];
        e.extend(o.iter().take(2).map(|i| Event::Vote(vote(*i, VoteKind::Prevote, 0, Some(1)))));
        e.extend(o.iter().take(2).map(|i| Event::Vote(vote(*i, VoteKind::Precommit, 0, Some(1)))));
        e
    });
    n2.handle(Event::NewHeight { height: H.next(), validators: set() }).unwrap();
    assert_eq!(n2.height(), Height(2));
    n2.handle(Event::Vote(vote(o[2], VoteKind::Precommit, 0, Some(1)))).unwrap();
    let full = n2.commit_certificate(H).unwrap();
    full.verify_for(CHAIN, &set(), H, block(1)).unwrap();
    assert_eq!(full.signatures.len(), 4);
    assert!(n2.handle(Event::NewHeight { height: H, validators: set() }).is_err());
}

#[test]
fn full_node_decides_without_signing() {
    let mut n = node(None, SignerState::default());
    let mut events = vec![
        Event::Start,
        Event::Proposal(proposal(0, 1, None)),
        Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
    ];
    events.extend((0..3).map(|i| Event::Vote(vote(i, VoteKind::Precommit, 0, Some(1)))));
    let actions = feed(&mut n, events);
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::BroadcastVote(_) | Action::BroadcastProposal(_) | Action::PersistSignerState(_)
        ))
    );
    assert_eq!(n.decision(), Some((Round(0), block(1))));
}

#[test]
fn keeper_reports_each_threshold_once() {
    let s = set();
    let mut k = VoteKeeper::new(H);
    let add = |k: &mut VoteKeeper, from, hash| k.add(CHAIN, &s, vote(from, VoteKind::Prevote, 0, hash)).unwrap();
    assert_eq!(add(&mut k, 0, Some(1)), AddOutcome::Counted(vec![]));
    assert_eq!(add(&mut k, 1, Some(1)), AddOutcome::Counted(vec![]));
    assert_eq!(add(&mut k, 2, Some(1)), AddOutcome::Counted(vec![Threshold::Any, Threshold::Value(block(1))]));
    assert_eq!(add(&mut k, 3, None), AddOutcome::Counted(vec![]));
    assert_eq!(add(&mut k, 3, None), AddOutcome::Duplicate);
    assert_eq!(k.quorum_value(&s, Round(0), VoteKind::Prevote), Some(block(1)));
    assert!(!k.has_nil_quorum(&s, Round(0), VoteKind::Prevote));
}

#[test]
fn same_events_same_actions() {
    let me = non_proposer(&[0]);
    let script = || {
        let mut e = vec![Event::Start, Event::Proposal(proposal(0, 1, None))];
        e.push(Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true });
        e.extend(others(me).into_iter().map(|o| Event::Vote(vote(o, VoteKind::Precommit, 0, Some(1)))));
        e
    };
    let a = feed(&mut node(Some(me), SignerState::default()), script());
    let b = feed(&mut node(Some(me), SignerState::default()), script());
    assert_eq!(a, b);
}

#[test]
fn own_messages_are_what_this_validator_signed_at_the_height() {
    let sent = |actions: &[Action]| -> Vec<SignedMessage> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::BroadcastProposal(p) => Some(SignedMessage::Proposal(p.clone())),
                Action::BroadcastVote(v) => Some(SignedMessage::Vote(v.clone())),
                _ => None,
            })
            .collect()
    };
    // The proposer of round 0: its proposal, then its prevote, then (after a nil polka) its precommit.
    let me = proposer_of(0);
    let mut n = node(Some(me), SignerState::default());
    let mut actions =
        feed(&mut n, vec![Event::Start, Event::ProposalValue { height: H, round: Round(0), block_hash: block(1) }]);
    actions.extend(feed(
        &mut n,
        others(me).into_iter().map(|o| Event::Vote(vote(o, VoteKind::Prevote, 0, None))).collect(),
    ));
    // Others' votes are not ours.
    let own = n.own_messages();
    assert_eq!(own, sent(&actions));
    assert_eq!(own.len(), 3);
    // A full node has none; the next height starts empty.
    assert!(node(None, SignerState::default()).own_messages().is_empty());
    feed(&mut n, vec![Event::NewHeight { height: Height(2), validators: set() }]);
    assert!(n.own_messages().iter().all(|m| m.position().0 == Height(2)));
}

/// A double voter counts once per value it voted for, never twice towards "2f+1 of anything", and at most
/// VALUES_PER_VOTER_MAX values; a polka formed with its second vote is seen, so it cannot stall us.
#[test]
fn equivocator_counts_once_per_value_and_never_twice_for_any() {
    use super::{VALUES_PER_VOTER_MAX, VoteKeeper};
    let s = set();
    let mut k = VoteKeeper::new(H);
    let (cheater, h1, h2) = (0, 1, 2);
    // The cheater's first vote is for block 1; two honest validators vote for block 2.
    k.add(CHAIN, &s, vote(cheater, VoteKind::Prevote, 0, Some(h1))).unwrap();
    k.add(CHAIN, &s, vote(1, VoteKind::Prevote, 0, Some(h2))).unwrap();
    k.add(CHAIN, &s, vote(2, VoteKind::Prevote, 0, Some(h2))).unwrap();
    assert!(k.has_any_quorum(&s, Round(0), VoteKind::Prevote), "3 distinct voters of 4");
    assert_eq!(k.quorum_value(&s, Round(0), VoteKind::Prevote), None, "2 of 4 for block 2");
    // Its conflicting vote for block 2 completes the polka for block 2 (as it did at some other node).
    let out = k.add(CHAIN, &s, vote(cheater, VoteKind::Prevote, 0, Some(h2))).unwrap();
    assert!(matches!(out, super::AddOutcome::Equivocation { evidence: Some(_), .. }));
    assert_eq!(k.quorum_value(&s, Round(0), VoteKind::Prevote), Some(block(h2)));
    // "Anything" still counts the cheater once: precommits from 0 (twice) and 1 are 2 voters, not 3.
    k.add(CHAIN, &s, vote(cheater, VoteKind::Precommit, 0, Some(h1))).unwrap();
    k.add(CHAIN, &s, vote(cheater, VoteKind::Precommit, 0, None)).unwrap();
    k.add(CHAIN, &s, vote(1, VoteKind::Precommit, 0, None)).unwrap();
    assert!(!k.has_any_quorum(&s, Round(0), VoteKind::Precommit));
    // The value budget per voter is bounded: past it, further values are not stored or counted.
    for v in 10..(10 + VALUES_PER_VOTER_MAX as u8) {
        k.add(CHAIN, &s, vote(cheater, VoteKind::Precommit, 0, Some(v))).unwrap();
    }
    let counted = k.votes_in(Round(0)).iter().filter(|v| v.vote.validator == keys()[cheater].public()).count();
    assert_eq!(counted, 2 + VALUES_PER_VOTER_MAX, "prevotes for 2 values + precommits up to the budget");
}

// ---- the double-sign guard at start: look-back floor, watch, suspect, halt ----------------------------

fn node_guarded(me: usize, signer: SignerState, floor: Height, watch: bool) -> Consensus {
    Consensus::new(Config {
        chain_id: CHAIN.into(),
        validators: set(),
        params: ConsensusParams::default(),
        key: Some(keys()[me].clone()),
        signer,
        height: H,
        sign_floor: floor,
        watch,
    })
    .unwrap()
}

fn vote_at(from: usize, height: u64, kind: VoteKind, round: u32, hash: Option<u8>) -> SignedVote {
    let k = &keys()[from];
    Vote { kind, height: Height(height), round: Round(round), block_hash: hash.map(block), validator: k.public() }
        .sign(CHAIN, k)
}

fn signed_anything(actions: &[Action]) -> bool {
    actions.iter().any(|a| matches!(a, Action::BroadcastVote(_) | Action::BroadcastProposal(_)))
}

fn foreign(actions: &[Action]) -> Vec<(u64, bool)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ForeignSignature { height, halted, .. } => Some((height.0, *halted)),
            _ => None,
        })
        .collect()
}

#[test]
fn look_back_floor_blocks_signing_at_and_below_it() {
    let me = non_proposer(&[0]);
    let mut n = node_guarded(me, SignerState::default(), H, false);
    assert_eq!(n.sign_floor(), H);
    let actions = feed(
        &mut n,
        vec![
            Event::Start,
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
            Event::TimeoutFired(Timeout { height: H, round: Round(0), kind: TPropose }),
        ],
    );
    assert!(!signed_anything(&actions), "signed at the floor: {actions:?}");

    // Raised by an event: persisted (alone), and it only rises.
    let mut n = node_guarded(me, SignerState::default(), Height(0), false);
    n.handle(Event::Start).unwrap();
    let actions = n.handle(Event::RaiseSignFloor(H)).unwrap();
    assert_eq!(last_persisted(&actions).floor(), H);
    assert!(n.handle(Event::RaiseSignFloor(Height(0))).unwrap().is_empty());
    let actions = feed(
        &mut n,
        vec![
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
        ],
    );
    assert!(!signed_anything(&actions));
    // The floor survives encoding with the rest of the state.
    let state = n.signer_state().clone();
    let restored: SignerState = crate::encoding::decode(&crate::encoding::encode(&state), 1024).unwrap();
    assert_eq!(restored.floor(), H);
}

#[test]
fn watching_validator_signs_only_after_the_watch() {
    let me = non_proposer(&[0, 1]);
    let mut n = node_guarded(me, SignerState::default(), Height(0), true);
    assert_eq!(n.guard(), GuardMode::Watching);
    let actions = feed(
        &mut n,
        vec![
            Event::Start,
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
        ],
    );
    assert!(!signed_anything(&actions), "signed while watching: {actions:?}");
    assert_eq!(n.step(), Step::Prevote, "the step still advances");
    // The watch ends: it steps back to the vote it did not cast and casts it in the same round (the round
    // may need its vote: the others wait in it).
    let actions = n.handle(Event::EndWatch).unwrap();
    assert_eq!(n.guard(), GuardMode::Active);
    assert_eq!((n.round(), n.step()), (Round(0), Step::Prevote));
    check_persist_before_broadcast(&actions);
    assert!(actions.contains(&Action::BroadcastVote(vote(me, VoteKind::Prevote, 0, Some(1)))), "{actions:?}");

    // Past the prevote step too: it steps back and precommits on the polka it saw.
    let mut n = node_guarded(me, SignerState::default(), Height(0), true);
    let mut events = vec![
        Event::Start,
        Event::Proposal(proposal(0, 1, None)),
        Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
    ];
    events.extend(others(me).into_iter().map(|i| Event::Vote(vote(i, VoteKind::Prevote, 0, Some(1)))));
    assert!(!signed_anything(&feed(&mut n, events)));
    assert_eq!(n.step(), Step::Precommit, "the polka moved it on without a precommit");
    let actions = n.handle(Event::EndWatch).unwrap();
    check_persist_before_broadcast(&actions);
    assert!(actions.contains(&Action::BroadcastVote(vote(me, VoteKind::Precommit, 0, Some(1)))), "{actions:?}");
    assert_eq!(n.locked().map(|l| (l.round, l.block_hash)), Some((Round(0), block(1))));
}

#[test]
fn own_key_seen_while_watching_suspects_then_clears_after_a_quiet_height() {
    let me = non_proposer(&[0]);
    let mut n = node_guarded(me, SignerState::default(), Height(0), true);
    n.handle(Event::Start).unwrap();
    // A prevote with this key that this process did not sign (its life before a restart, or a twin).
    let actions = n.handle(Event::Vote(vote(me, VoteKind::Prevote, 0, Some(1)))).unwrap();
    assert_eq!(foreign(&actions), vec![(1, false)]);
    assert_eq!(last_persisted(&actions).floor(), H);
    assert_eq!(n.guard(), GuardMode::Suspect { since: H, quiet_heights: 0 });
    n.handle(Event::EndWatch).unwrap();
    assert_eq!(n.guard(), GuardMode::Suspect { since: H, quiet_heights: 0 }, "the watch's end does not clear it");
    // Heights synced past (not decided here, their votes unseen) do not count.
    n.handle(Event::NewHeight { height: Height(2), validators: set() }).unwrap();
    n.handle(Event::NewHeight { height: Height(3), validators: set() }).unwrap();
    assert_eq!(n.guard(), GuardMode::Suspect { since: H, quiet_heights: 0 });
    // Two heights decided here without another message with this key: it signs again. (Heights where it
    // is not the proposer: the fixture's proposal would carry its key.)
    let mut h = 3u64;
    for _ in 0..SUSPECT_QUIET_HEIGHTS {
        while set().proposer(Height(h), Round(0)).public_key == keys()[me].public() {
            h += 1;
            n.handle(Event::NewHeight { height: Height(h), validators: set() }).unwrap();
        }
        decide_here(&mut n, me, h);
        h += 1;
        n.handle(Event::NewHeight { height: Height(h), validators: set() }).unwrap();
    }
    assert_eq!(n.guard(), GuardMode::Active);
}

/// Decide height `h` at round 0 with the precommits of the three validators other than `me`.
fn decide_here(n: &mut Consensus, me: usize, h: u64) {
    let set = set();
    let proposer = &keys()[set.index_of(&set.proposer(Height(h), Round(0)).public_key).unwrap()];
    let value = block(h as u8);
    let p = Proposal {
        height: Height(h),
        round: Round(0),
        pol_round: None,
        block_hash: value,
        proposer: proposer.public(),
    }
    .sign(CHAIN, proposer);
    n.handle(Event::Proposal(p)).unwrap();
    n.handle(Event::BlockValidity { height: Height(h), round: Round(0), block_hash: value, valid: true }).unwrap();
    for i in others(me) {
        n.handle(Event::Vote(vote_at(i, h, VoteKind::Precommit, 0, Some(h as u8)))).unwrap();
    }
    assert!(n.decision().is_some(), "height {h} decided");
}

#[test]
fn own_key_at_a_later_height_means_a_twin_and_halts_signing() {
    let me = non_proposer(&[0]);
    let mut n = node_guarded(me, SignerState::default(), Height(0), true);
    n.handle(Event::Start).unwrap();
    n.handle(Event::Vote(vote(me, VoteKind::Prevote, 0, Some(1)))).unwrap();
    n.handle(Event::NewHeight { height: Height(2), validators: set() }).unwrap();
    let actions = n.handle(Event::Vote(vote_at(me, 2, VoteKind::Prevote, 0, Some(3)))).unwrap();
    assert_eq!(foreign(&actions), vec![(2, true)]);
    assert_eq!(n.guard(), GuardMode::Halted);
    // Halted for good: later heights sign nothing and report nothing more.
    n.handle(Event::NewHeight { height: Height(5), validators: set() }).unwrap();
    let p = {
        let proposer = &keys()[set().index_of(&set().proposer(Height(5), Round(0)).public_key).unwrap()];
        Proposal {
            height: Height(5),
            round: Round(0),
            pol_round: None,
            block_hash: block(7),
            proposer: proposer.public(),
        }
        .sign(CHAIN, proposer)
    };
    let actions = feed(
        &mut n,
        vec![
            Event::Proposal(p),
            Event::BlockValidity { height: Height(5), round: Round(0), block_hash: block(7), valid: true },
            Event::Vote(vote_at(me, 5, VoteKind::Prevote, 0, Some(7))),
        ],
    );
    assert!(!signed_anything(&actions) && foreign(&actions).is_empty(), "{actions:?}");
}

#[test]
fn active_validator_halts_on_a_conflicting_or_newer_message_with_its_key() {
    let me = non_proposer(&[0]);
    let start = |n: &mut Consensus| {
        feed(
            n,
            vec![
                Event::Start,
                Event::Proposal(proposal(0, 1, None)),
                Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
            ],
        )
    };
    // Its own prevote echoed back changes nothing.
    let mut n = node_guarded(me, SignerState::default(), Height(0), false);
    assert!(start(&mut n).contains(&Action::BroadcastVote(vote(me, VoteKind::Prevote, 0, Some(1)))));
    assert!(foreign(&n.handle(Event::Vote(vote(me, VoteKind::Prevote, 0, Some(1)))).unwrap()).is_empty());
    // A different prevote in the same slot: a twin.
    let actions = n.handle(Event::Vote(vote(me, VoteKind::Prevote, 0, None))).unwrap();
    assert_eq!(foreign(&actions), vec![(1, true)]);
    assert_eq!(n.guard(), GuardMode::Halted);

    // A message above what this process signed, not signed by it: a twin too.
    let mut n = node_guarded(me, SignerState::default(), Height(0), false);
    start(&mut n);
    let actions = n.handle(Event::Vote(vote(me, VoteKind::Precommit, 2, None))).unwrap();
    assert_eq!(foreign(&actions), vec![(1, true)]);
}

#[test]
fn messages_from_before_a_restart_are_not_foreign() {
    let me = non_proposer(&[0]);
    let mut first = node_guarded(me, SignerState::default(), Height(0), false);
    let actions = feed(
        &mut first,
        vec![
            Event::Start,
            Event::Proposal(proposal(0, 1, None)),
            Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
        ],
    );
    let persisted = last_persisted(&actions);
    let mut n = node_guarded(me, persisted, Height(0), true);
    n.handle(Event::Start).unwrap();
    // Its persisted prevote, relayed back by a peer: covered by the state handed over.
    let actions = n.handle(Event::Vote(vote(me, VoteKind::Prevote, 0, Some(1)))).unwrap();
    assert!(foreign(&actions).is_empty(), "{actions:?}");
    assert_eq!(n.guard(), GuardMode::Watching);
}

/// A key rotation: the node decides height 1 with its old key, is handed the new key between heights, and
/// signs height 2 with the new key only; the new key's state cannot sign at or below height 1.
#[test]
fn replaced_key_signs_the_next_height_and_nothing_below_it() {
    let new_key = Keypair::from_seed(&[9; 32]);
    let rotated_set = |me: usize| {
        let mut vs: Vec<Validator> = set().validators().to_vec();
        vs[me].public_key = new_key.public();
        ValidatorSet::new(vs).unwrap()
    };
    let h2 = Height(2);
    // A validator that is not the proposer of round 0 at height 2 after the rotation.
    let me = (0..4).find(|&m| rotated_set(m).proposer(h2, Round(0)).public_key != new_key.public()).unwrap();
    let mut n = node(Some(me), SignerState::default());
    let mut events = vec![
        Event::Start,
        Event::Proposal(proposal(0, 1, None)),
        Event::BlockValidity { height: H, round: Round(0), block_hash: block(1), valid: true },
    ];
    events.extend(others(me).into_iter().map(|i| Event::Vote(vote(i, VoteKind::Precommit, 0, Some(1)))));
    let actions = feed(&mut n, events);
    assert_eq!(n.decision(), Some((Round(0), block(1))));
    let old_signed: Vec<_> = actions
        .iter()
        .filter_map(|a| if let Action::BroadcastVote(v) = a { Some(v.vote.validator) } else { None })
        .collect();
    assert!(!old_signed.is_empty() && old_signed.iter().all(|k| *k == keys()[me].public()));

    // A state for the new key claiming a signature above the current height is refused, nothing changes.
    let vote3 = Vote {
        kind: VoteKind::Prevote,
        height: Height(3),
        round: Round(0),
        block_hash: None,
        validator: new_key.public(),
    }
    .sign(CHAIN, &new_key);
    let ahead_msg = SignerState::from_parts(Some(SignedMessage::Vote(vote3)), None);
    assert!(matches!(
        n.handle(Event::ReplaceKey { key: new_key.clone(), signer: ahead_msg }),
        Err(ConsensusError::SignerAhead { .. })
    ));

    let actions = feed(&mut n, vec![Event::ReplaceKey { key: new_key.clone(), signer: SignerState::default() }]);
    assert_eq!(last_persisted(&actions).floor(), H, "the new key never signs at or below the height it joined after");
    let actions = feed(
        &mut n,
        vec![
            Event::NewHeight { height: h2, validators: rotated_set(me) },
            Event::TimeoutFired(Timeout { height: h2, round: Round(0), kind: TimeoutKind::Propose }),
        ],
    );
    check_persist_before_broadcast(&actions);
    let signed: Vec<_> =
        actions.iter().filter_map(|a| if let Action::BroadcastVote(v) = a { Some(v.clone()) } else { None }).collect();
    assert_eq!(signed.len(), 1, "one prevote at height 2: {actions:?}");
    assert_eq!(signed[0].vote.validator, new_key.public());
    assert_eq!(signed[0].vote.height, h2);
    assert!(signed[0].verify(CHAIN, &rotated_set(me)).is_ok());
}
