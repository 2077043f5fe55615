use std::rc::Rc;

use super::*;
use crate::cert::CommitSig;
use crate::gossip::tests::{CHAIN, block_by, keys, set};
use crate::vote::{Vote, VoteKind};
use crate::{Domain, MemStore};

/// A block of `height` told apart by `tag` (in its timestamp).
fn block(height: u64, tag: u64) -> Block {
    let mut b = block_by(keys()[0].public(), Height(height));
    b.header.timestamp_ms = tag;
    b
}

fn changes(tag: u8) -> StateChanges {
    StateChanges {
        accounts: Vec::new(),
        tree: MemStore::new().tree().clone(),
        state_root: Hash::digest(Domain::TxId, &[tag]),
        gov: crate::governance::GovState::genesis(set()),
        gov_events: Default::default(),
    }
}

/// An executor that counts its calls and answers `answer`.
fn executor(
    calls: &mut u32,
    answer: Result<StateChanges, String>,
) -> impl FnOnce(&Block) -> Result<Result<StateChanges, String>, ()> + '_ {
    move |_| {
        *calls += 1;
        Ok(answer)
    }
}

#[test]
fn a_block_the_core_waits_for_is_validated_when_it_arrives() {
    let mut c: Candidates<Block> = Candidates::new(Height(5), 8);
    let b = block(5, 1);
    let hash = b.hash();
    assert!(!c.request_validation(Round(2), hash), "not here yet");
    assert_eq!(c.on_block(b.clone()), Arrival::Validate { round: Round(2) });
    // A second copy (gossip duplicates) changes nothing.
    assert_eq!(c.on_block(b), Arrival::Ignored);
    assert!(c.request_validation(Round(3), hash), "here now");
}

/// A re-proposal: the core of the next round re-proposes a block an earlier round's proposer built; the
/// shell that holds it answers from the table (for the broadcast and for validation), once executed.
#[test]
fn a_re_proposed_block_is_served_and_validated_once() {
    let mut c: Candidates<Rc<Block>> = Candidates::new(Height(5), 8);
    let b = Rc::new(block(5, 1));
    let hash = b.hash();
    assert_eq!(c.on_block(b.clone()), Arrival::Stored);
    let mut calls = 0;
    assert_eq!(c.validate(&hash, 10, executor(&mut calls, Ok(changes(1)))), Ok(Some(Validity::Valid)));
    // Round 1: the re-proposal names the same block; it is here for the broadcast and valid without a second run.
    assert!(Rc::ptr_eq(c.get(&hash).expect("held"), &b));
    assert_eq!(c.validate(&hash, 10, executor(&mut calls, Err("not run".into()))), Ok(Some(Validity::Valid)));
    assert_eq!(calls, 1);
    let (taken, ch) =
        c.take_decided(&hash, executor(&mut calls, Err("not run".into()))).expect("no error").expect("held");
    assert!(Rc::ptr_eq(&taken, &b));
    assert_eq!(ch, Ok(changes(1)));
    assert_eq!(calls, 1);
}

#[test]
fn a_decided_block_that_arrives_late_is_committed_then() {
    let mut c: Candidates<Block> = Candidates::new(Height(5), 8);
    let b = block(5, 1);
    let hash = b.hash();
    assert!(!c.on_decided(hash));
    assert_eq!(c.decided_without_block(), Some(hash));
    // Another block of the height is only stored.
    assert_eq!(c.on_block(block(5, 2)), Arrival::Stored);
    assert_eq!(c.on_block(b), Arrival::CommitDecided);
    assert_eq!(c.decided_without_block(), None);
    let mut calls = 0;
    let (_, ch) = c.take_decided(&hash, executor(&mut calls, Ok(changes(7)))).expect("no error").expect("held");
    assert_eq!((ch, calls), (Ok(changes(7)), 1), "executed at the commit, having never been validated");
}

#[test]
fn blocks_of_other_heights_and_beyond_the_bound_are_not_kept() {
    let mut c: Candidates<Block> = Candidates::new(Height(5), 2);
    assert_eq!(c.on_block(block(4, 1)), Arrival::Ignored);
    assert_eq!(c.on_block(block(6, 1)), Arrival::Ignored);
    assert_eq!(c.on_block(block(5, 1)), Arrival::Stored);
    assert_eq!(c.on_block(block(5, 2)), Arrival::Stored);
    assert_eq!(c.on_block(block(5, 3)), Arrival::Ignored, "full");
    // A built block always fits (the shell's own proposal must be kept).
    let built = block(5, 4);
    let hash = c.insert_built(built, changes(4));
    assert_eq!(c.len(), 3);
    let mut calls = 0;
    assert_eq!(c.validate(&hash, 0, executor(&mut calls, Err("not run".into()))), Ok(Some(Validity::Valid)));
    assert_eq!(calls, 0, "a built block is never executed again");
    c.start_height(Height(6));
    assert!(c.is_empty());
    assert_eq!(c.on_block(block(6, 1)), Arrival::Stored);
}

#[test]
fn a_block_from_the_future_is_invalid_without_being_executed() {
    let mut c: Candidates<Block> = Candidates::new(Height(5), 8);
    let b = block(5, 50_000);
    let hash = b.hash();
    c.on_block(b);
    let mut calls = 0;
    let verdict = c.validate(&hash, 50_000 - TIMESTAMP_DRIFT_MAX_MS - 1, executor(&mut calls, Ok(changes(1))));
    assert!(matches!(verdict, Ok(Some(Validity::Invalid(r))) if r.contains("ahead")));
    assert_eq!(calls, 0);
    // At the limit it is judged by execution; an invalid one stays unexecuted for later asks.
    let verdict = c.validate(&hash, 50_000 - TIMESTAMP_DRIFT_MAX_MS, executor(&mut calls, Err("bad root".into())));
    assert_eq!(verdict, Ok(Some(Validity::Invalid("bad root".into()))));
    assert_eq!(c.validate(&Hash::ZERO, 0, executor(&mut calls, Ok(changes(1)))), Ok(None), "not here");
    assert_eq!(calls, 1);
}

#[test]
fn a_storage_failure_while_executing_is_passed_up() {
    let mut c: Candidates<Block> = Candidates::new(Height(5), 8);
    let b = block(5, 1);
    let hash = b.hash();
    c.on_block(b);
    let failing = |_: &Block| -> Result<Result<StateChanges, String>, &'static str> { Err("disk") };
    assert_eq!(c.validate(&hash, 10, failing), Err("disk"));
    assert!(c.contains(&hash), "still held for a later try");
}

fn certificate(block: &Block, signers: &[usize]) -> CommitCertificate {
    let keys = keys();
    let set = set();
    let hash = block.hash();
    let mut signatures: Vec<CommitSig> = signers
        .iter()
        .map(|&k| {
            let key = &keys[k];
            let index = set.index_of(&key.public()).expect("in the set");
            let vote = Vote {
                kind: VoteKind::Precommit,
                height: block.height(),
                round: Round(0),
                block_hash: Some(hash),
                validator: key.public(),
            }
            .sign(CHAIN, key);
            CommitSig { validator_index: index as u16, signature: vote.signature }
        })
        .collect();
    signatures.sort_by_key(|s| s.validator_index);
    CommitCertificate { height: block.height(), round: Round(0), block_hash: hash, signatures }
}

#[test]
fn synced_blocks_are_checked_in_order_with_the_look_back() {
    let set = set();
    let b = block(7, 1);
    let cert = certificate(&b, &[0, 1, 2]);
    let me_in = set.index_of(&keys()[1].public());
    let me_out = set.index_of(&keys()[3].public());
    assert_eq!(check_synced(CHAIN, &set, Height(8), &b, &cert, me_in), SyncedBlock::Stale);
    assert_eq!(check_synced(CHAIN, &set, Height(6), &b, &cert, me_in), SyncedBlock::Gap);
    assert_eq!(check_synced(CHAIN, &set, Height(7), &b, &cert, me_in), SyncedBlock::Apply { signed_by_me: true });
    assert_eq!(check_synced(CHAIN, &set, Height(7), &b, &cert, me_out), SyncedBlock::Apply { signed_by_me: false });
    assert_eq!(check_synced(CHAIN, &set, Height(7), &b, &cert, None), SyncedBlock::Apply { signed_by_me: false });
    // Another block under this certificate, or too few signers: refused.
    let other = block(7, 2);
    assert!(matches!(check_synced(CHAIN, &set, Height(7), &other, &cert, None), SyncedBlock::BadCertificate(_)));
    let thin = certificate(&b, &[0, 1]);
    assert!(matches!(check_synced(CHAIN, &set, Height(7), &b, &thin, None), SyncedBlock::BadCertificate(_)));
}
