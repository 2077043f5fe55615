use super::*;
use crate::vote::Vote;

const CHAIN: &str = "gov-chain";

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i.wrapping_add(1); 32])
}

fn set(powers: &[u64]) -> ValidatorSet {
    ValidatorSet::new(
        powers
            .iter()
            .enumerate()
            .map(|(i, p)| Validator { public_key: key(i as u8).public(), power: *p, moniker: format!("v{i}") })
            .collect(),
    )
    .expect("set")
}

fn add(i: u8, power: u64, nonce: u64) -> ValidatorChange {
    let k = key(i);
    ValidatorChange {
        action: ChangeAction::Add {
            validator: Validator { public_key: k.public(), power, moniker: format!("v{i}") },
            possession: possession_proof(CHAIN, &k),
        },
        expiry_height: 50,
        nonce,
    }
}

/// Run empty blocks from the state's height + 1 through `to`.
fn run_to(mut s: GovState, to: u64) -> GovState {
    while s.height.0 < to {
        s = s.apply_block(CHAIN, s.height.next(), &[], &[]).expect("empty block").0;
    }
    s
}

fn block(
    s: &GovState,
    approvals: &[Approval],
    evidence: &[Evidence],
) -> Result<(GovState, GovEvents), (usize, GovError)> {
    s.apply_block(CHAIN, s.height.next(), approvals, evidence)
}

#[test]
fn a_change_applies_two_heights_after_its_quorum_and_not_before() {
    let g = GovState::genesis(set(&[1, 1, 1, 1]));
    let change = add(9, 1, 0);
    // Two of four approve: half the power, not more than 2/3.
    let (s1, ev) = block(&g, &[change.approve(CHAIN, &key(0)), change.approve(CHAIN, &key(1))], &[]).expect("ok");
    assert!(ev.decided.is_empty());
    assert_eq!(s1.pending.len(), 1);
    assert_eq!(s1.after_next, g.after_next);
    // The third approval reaches the quorum in block 2: the set of height 4 has five validators.
    let (s2, ev) = block(&s1, &[change.approve(CHAIN, &key(2))], &[]).expect("ok");
    assert_eq!(ev.decided, vec![(change.id(), Ok(Height(4)))]);
    assert_eq!(s2.next.len(), 4, "height 3 keeps the old set");
    assert_eq!(s2.after_next.len(), 5);
    assert!(s2.pending.is_empty());
    let s3 = run_to(s2, 3);
    assert_eq!(s3.next.len(), 5, "after block 3 the next height (4) has the new set");
    assert_eq!(s3.set_at(Height(3)).map(ValidatorSet::len), Some(4));
    assert_eq!(s3.set_at(Height(4)).map(ValidatorSet::len), Some(5));
    let s4 = run_to(s3, 4);
    assert_eq!(s4.current.len(), 5);
    assert_eq!(s4.set_at(Height(2)).map(ValidatorSet::len), Some(4));
}

#[test]
fn replayed_duplicate_and_expired_approvals_are_refused() {
    let g = GovState::genesis(set(&[1, 1, 1]));
    let change = add(9, 1, 0);
    let a0 = change.approve(CHAIN, &key(0));
    assert!(matches!(block(&g, &[a0.clone(), a0.clone()], &[]), Err((1, GovError::DuplicateApproval { .. }))));
    let (s1, _) =
        block(&g, &[a0.clone(), change.approve(CHAIN, &key(1)), change.approve(CHAIN, &key(2))], &[]).expect("quorum");
    // Executed: the same approvals cannot run it again.
    assert_eq!(block(&s1, &[a0.clone()], &[]).err().map(|(_, e)| e.code()), Some("already_executed"));
    // A non-validator's approval.
    assert_eq!(
        block(&s1, &[add(8, 1, 0).approve(CHAIN, &key(7))], &[]).err().map(|(_, e)| e.code()),
        Some("not_a_validator")
    );
    // Expired: past its expiry height.
    let late = run_to(g.clone(), 60);
    assert_eq!(block(&late, &[a0.clone()], &[]).err().map(|(_, e)| e.code()), Some("expired"));
    // A forged signature (approval of one change, signature of another).
    let mut forged = add(8, 1, 0).approve(CHAIN, &key(0));
    forged.signature = a0.signature;
    assert_eq!(block(&g, &[forged], &[]).err().map(|(_, e)| e.code()), Some("bad_signature"));
    // Wrong chain.
    assert_eq!(
        block(&g, &[change.approve("other-chain", &key(0))], &[]).err().map(|(_, e)| e.code()),
        Some("bad_signature")
    );
    // After expiry the executed id is forgotten, and the pending list never holds an expired change.
    let (half, _) = block(&g, &[add(8, 1, 0).approve(CHAIN, &key(0))], &[]).expect("ok");
    assert_eq!(half.pending.len(), 1);
    assert!(run_to(half, 51).pending.is_empty());
    assert!(run_to(s1, 51).executed.is_empty());
}

#[test]
fn rotation_needs_the_operator_and_proof_of_possession() {
    let g = GovState::genesis(set(&[1, 1, 1, 1]));
    let new = key(20);
    let rotate = ValidatorChange {
        action: ChangeAction::RotateKey {
            old: key(3).public(),
            new: new.public(),
            possession: possession_proof(CHAIN, &new),
        },
        expiry_height: 100,
        nonce: 0,
    };
    let others: Vec<Approval> = (0..3).map(|i| rotate.approve(CHAIN, &key(i))).collect();
    let (s, ev) = block(&g, &others, &[]).expect("ok");
    assert!(ev.decided.is_empty(), "3/4 without the operator: not decided");
    let (s, ev) = block(&s, &[rotate.approve(CHAIN, &key(3))], &[]).expect("ok");
    assert_eq!(ev.decided.len(), 1);
    assert_eq!(s.after_next.index_of(&new.public()), Some(3), "same place in the set");
    assert!(s.after_next.index_of(&key(3).public()).is_none());
    // A rotation whose new key did not sign its possession.
    let bad = ValidatorChange {
        action: ChangeAction::RotateKey {
            old: key(3).public(),
            new: new.public(),
            possession: possession_proof(CHAIN, &key(21)),
        },
        expiry_height: 100,
        nonce: 0,
    };
    assert_eq!(block(&g, &[bad.approve(CHAIN, &key(3))], &[]).err().map(|(_, e)| e.code()), Some("bad_possession"));
}

#[test]
fn the_set_never_empties_and_failed_changes_are_recorded() {
    let g = GovState::genesis(set(&[1]));
    let remove = ValidatorChange { action: ChangeAction::Remove { key: key(0).public() }, expiry_height: 10, nonce: 0 };
    let (s, ev) = block(&g, &[remove.approve(CHAIN, &key(0))], &[]).expect("ok");
    assert_eq!(ev.decided, vec![(remove.id(), Err(GovError::LastValidator.to_string()))]);
    assert_eq!(s.after_next.len(), 1);
    assert_eq!(s.executed.get(&remove.id()).and_then(|e| e.failure.clone()), Some(GovError::LastValidator.to_string()));
}

fn double_vote(i: u8, height: u64) -> Evidence {
    let k = key(i);
    let vote = |b: u8| {
        Vote {
            kind: VoteKind::Precommit,
            height: Height(height),
            round: Round(0),
            block_hash: Some(Hash([b; 32])),
            validator: k.public(),
        }
        .sign(CHAIN, &k)
    };
    Evidence::new(vote(1), vote(2))
}

#[test]
fn evidence_jails_once_and_is_refused_when_stale_duplicated_or_forged() {
    let g = run_to(GovState::genesis(set(&[1, 1, 1, 1])), 5);
    let e = double_vote(2, 4);
    let (s, ev) = block(&g, &[], std::slice::from_ref(&e)).expect("ok");
    assert_eq!(ev.jailed, vec![key(2).public()]);
    assert!(s.jailed.contains(&key(2).public()));
    assert!(s.after_next.index_of(&key(2).public()).is_none(), "out at the next activation");
    assert!(s.next.index_of(&key(2).public()).is_some(), "still in the set of the next height");
    assert_eq!(block(&s, &[], std::slice::from_ref(&e)).err().map(|(_, e)| e.code()), Some("duplicate_evidence"));
    assert_eq!(block(&g, &[], &[double_vote(2, 6)]).err().map(|(_, e)| e.code()), Some("evidence_from_future"));
    assert_eq!(block(&g, &[], &[double_vote(9, 4)]).err().map(|(_, e)| e.code()), Some("evidence_not_a_validator"));
    let old = run_to(g.clone(), 200);
    assert_eq!(block(&old, &[], &[double_vote(1, 4)]).err().map(|(_, e)| e.code()), Some("evidence_stale"));
    let same = Evidence { first: e.first.clone(), second: e.first.clone() };
    assert_eq!(block(&g, &[], &[same]).err().map(|(_, e)| e.code()), Some("evidence_not_conflicting"));
    let swapped = Evidence { first: e.second.clone(), second: e.first.clone() };
    assert_eq!(block(&g, &[], &[swapped]).err().map(|(_, e)| e.code()), Some("evidence_not_canonical"));
    // A jailed validator comes back only through an approved Add (with a fresh nonce).
    let s = run_to(s, 8);
    assert!(s.current.index_of(&key(2).public()).is_none());
    let back = add(2, 1, 1);
    let approvals: Vec<Approval> = [0, 1, 3].iter().map(|i| back.approve(CHAIN, &key(*i))).collect();
    let (s, ev) = block(&s, &approvals, &[]).expect("ok");
    assert_eq!(ev.decided.len(), 1);
    assert!(!s.jailed.contains(&key(2).public()));
    assert!(s.after_next.index_of(&key(2).public()).is_some());
}

#[test]
fn select_ops_keeps_what_applies_and_apply_agrees() {
    let g = GovState::genesis(set(&[1, 1, 1]));
    let c = add(9, 1, 0);
    let a0 = c.approve(CHAIN, &key(0));
    let candidates = vec![a0.clone(), a0.clone(), add(8, 1, 0).approve(CHAIN, &key(7)), c.approve(CHAIN, &key(1))];
    let (a, e, refused) = g.select_ops(CHAIN, Height(1), candidates, vec![double_vote(0, 5)]);
    assert_eq!(a.len(), 2);
    assert!(e.is_empty());
    assert_eq!(refused.len(), 3);
    assert!(block(&g, &a, &e).is_ok());
}

#[test]
fn state_round_trips_through_its_encoding_and_roots_differ_with_content() {
    let g = GovState::genesis(set(&[1, 2, 3]));
    let (s, _) = block(&g, &[add(9, 1, 0).approve(CHAIN, &key(0))], &[]).expect("ok");
    let bytes = encoding::encode(&s);
    let back: GovState = encoding::decode(&bytes, 1 << 20).expect("decodes");
    assert_eq!(back, s);
    assert_eq!(back.root(), s.root());
    assert_ne!(s.root(), run_to(g, 1).root());
}
