use super::*;
use crate::block::BlockHeader;
use crate::crypto::{Keypair, Signature};
use crate::types::Round;
use crate::validator::Validator;
use crate::vote::{Proposal, Vote, VoteKind};

/// Fixtures shared with the shell tests.
pub(crate) const CHAIN: &str = "c";

pub(crate) fn keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
}

pub(crate) fn set() -> ValidatorSet {
    let v = keys()
        .iter()
        .enumerate()
        .map(|(i, k)| Validator { public_key: k.public(), power: 1, moniker: format!("v{i}") })
        .collect();
    ValidatorSet::new(v).expect("set")
}

fn key_of(pk: &crate::PublicKey) -> Keypair {
    keys().into_iter().find(|k| k.public() == *pk).expect("a fixture key")
}

pub(crate) fn block_by(builder: crate::PublicKey, height: Height) -> Block {
    Block {
        header: BlockHeader {
            version: crate::PROTOCOL_VERSION,
            chain_id: CHAIN.into(),
            height,
            prev_block_hash: Hash::ZERO,
            timestamp_ms: 1,
            proposer: builder,
            tx_count: 0,
            tx_root: Hash::ZERO,
            state_root: Hash::ZERO,
            last_commit_hash: Hash::ZERO,
            validators_hash: Hash::ZERO,
            next_validators_hash: Hash::ZERO,
            ops_hash: Hash::ZERO,
            gov_root: Hash::ZERO,
        },
        txs: Vec::new(),
        last_commit: None,
        approvals: Vec::new(),
        evidence: Vec::new(),
    }
}

/// A spender that counts what it granted.
struct Meter {
    granted: u64,
    allow: bool,
}

impl Meter {
    fn open() -> Meter {
        Meter { granted: 0, allow: true }
    }
    fn closed() -> Meter {
        Meter { granted: 0, allow: false }
    }
    fn spend(&mut self) -> impl FnMut(Resource, u64) -> bool + '_ {
        |_, n| {
            if self.allow {
                self.granted += n;
            }
            self.allow
        }
    }
}

fn vote(key: &Keypair, height: u64) -> SignedVote {
    Vote { kind: VoteKind::Prevote, height: Height(height), round: Round(0), block_hash: None, validator: key.public() }
        .sign(CHAIN, key)
}

/// Regression (issue 20): a round ends with a polka and no commit; the next proposer re-proposes the valid
/// value, a block the first proposer built. It is accepted; the same block proposed fresh by someone who
/// did not build it is not.
#[test]
fn re_proposal_of_a_block_built_by_another_validator_is_accepted() {
    let set = set();
    let check = MessageCheck::new(CHAIN, &set, Height(4));
    let h = Height(5);
    let first = set.proposer(h, Round(0)).public_key;
    let next = set.proposer(h, Round(1)).public_key;
    assert_ne!(first, next, "the fixture needs two proposers");
    let block = block_by(first, h);
    let re =
        Proposal { height: h, round: Round(1), pol_round: Some(Round(0)), block_hash: block.hash(), proposer: next }
            .sign(CHAIN, &key_of(&next));
    let mut m = Meter::open();
    assert_eq!(check.check_proposal(&re, Some(&block), &mut m.spend()), Verdict::Accept);
    assert_eq!(m.granted, 1);
    let fresh = Proposal { pol_round: None, ..re.proposal.clone() }.sign(CHAIN, &key_of(&next));
    assert!(
        matches!(check.check_proposal(&fresh, Some(&block), &mut m.spend()), Verdict::Reject(r) if r.contains("built by another"))
    );
}

/// Everything a proposal can be refused for without its signature is refused before one is checked.
#[test]
fn proposals_are_judged_cheaply_first() {
    let set = set();
    let check = MessageCheck::new(CHAIN, &set, Height(4));
    let h = Height(5);
    let proposer = set.proposer(h, Round(0)).public_key;
    let other = set.proposer(h, Round(1)).public_key;
    let block = block_by(proposer, h);
    let good = Proposal { height: h, round: Round(0), pol_round: None, block_hash: block.hash(), proposer }
        .sign(CHAIN, &key_of(&proposer));
    let mut m = Meter::open();
    // Committed height: dropped, no blame.
    let old = MessageCheck::new(CHAIN, &set, Height(5));
    assert_eq!(old.check_proposal(&good, Some(&block), &mut m.spend()), Verdict::Ignore(DropReason::OldHeight));
    // Not the scheduled proposer.
    let wrong = Proposal { proposer: other, ..good.proposal.clone() }.sign(CHAIN, &key_of(&other));
    assert!(
        matches!(check.check_proposal(&wrong, Some(&block), &mut m.spend()), Verdict::Reject(r) if r.contains("not the proposer"))
    );
    // Another block, another height.
    let other_block = block_by(proposer, Height(6));
    assert!(
        matches!(check.check_proposal(&good, Some(&other_block), &mut m.spend()), Verdict::Reject(r) if r.contains("height"))
    );
    let mut changed = block.clone();
    changed.header.timestamp_ms = 2;
    assert!(
        matches!(check.check_proposal(&good, Some(&changed), &mut m.spend()), Verdict::Reject(r) if r.contains("hash"))
    );
    assert_eq!(m.granted, 0, "no signature was checked for any of these");
    // Out of budget: dropped unchecked.
    let mut closed = Meter::closed();
    assert_eq!(check.check_proposal(&good, Some(&block), &mut closed.spend()), Verdict::Ignore(DropReason::OverBudget));
    // A forged signature costs one check and is rejected.
    let forged = SignedProposal { proposal: good.proposal.clone(), signature: Signature([7; 64]) };
    assert!(matches!(check.check_proposal(&forged, Some(&block), &mut m.spend()), Verdict::Reject(_)));
    assert_eq!(m.granted, 1);
    assert_eq!(check.check_proposal(&good, Some(&block), &mut m.spend()), Verdict::Accept);
}

#[test]
fn votes_below_the_tip_and_replays_cost_no_signature_check() {
    let set = set();
    let keys = keys();
    let check = MessageCheck::new(CHAIN, &set, Height(10));
    let mut verified = RecentSet::new(16);
    let mut m = Meter::open();
    // Below the tip: dropped unchecked. At the tip (late precommits) and above: checked.
    assert_eq!(
        check.check_vote(&vote(&keys[0], 9), &mut verified, &mut m.spend()),
        Verdict::Ignore(DropReason::OldHeight)
    );
    assert_eq!(m.granted, 0);
    let v = vote(&keys[0], 10);
    assert_eq!(check.check_vote(&v, &mut verified, &mut m.spend()), Verdict::Accept);
    assert_eq!(m.granted, 1);
    // The same bytes again: accepted from the cache, no second check.
    assert_eq!(check.check_vote(&v, &mut verified, &mut m.spend()), Verdict::Accept);
    assert_eq!(m.granted, 1);
    // The same vote under another signature is not the same bytes: checked, and refused.
    let forged = SignedVote { vote: v.vote.clone(), signature: Signature([9; 64]) };
    assert!(matches!(check.check_vote(&forged, &mut verified, &mut m.spend()), Verdict::Reject(_)));
    assert_eq!(m.granted, 2);
    // A signer outside the set: refused before any check.
    let stranger = Keypair::from_seed(&[99; 32]);
    assert!(matches!(check.check_vote(&vote(&stranger, 11), &mut verified, &mut m.spend()), Verdict::Reject(_)));
    assert_eq!(m.granted, 2);
    // Over budget.
    let mut closed = Meter::closed();
    assert_eq!(
        check.check_vote(&vote(&keys[1], 11), &mut verified, &mut closed.spend()),
        Verdict::Ignore(DropReason::OverBudget)
    );
}

#[test]
fn budgets_refill_at_their_rate_and_never_beyond_the_burst() {
    let limits = PeerLimits { messages: Rate { per_sec: 10, burst: 20 }, ..PeerLimits::default() };
    let mut book = PeerBook::new(limits);
    let p = 1u32;
    assert!(book.try_spend(&p, Resource::Messages, 20, 0));
    assert!(!book.try_spend(&p, Resource::Messages, 1, 0), "burst spent");
    assert!(!book.try_spend(&p, Resource::Messages, 1, 99), "0.99 of a token after 99 ms");
    assert!(book.try_spend(&p, Resource::Messages, 1, 100));
    // A long pause refills to the burst, no more.
    assert!(book.try_spend(&p, Resource::Messages, 20, 1_000_000));
    assert!(!book.try_spend(&p, Resource::Messages, 1, 1_000_000));
    // Budgets are per peer and per resource.
    assert!(book.try_spend(&2, Resource::Messages, 20, 1_000_000));
    assert!(book.try_spend(&p, Resource::SyncRequests, 1, 1_000_000));
}

#[test]
fn offences_lead_to_ignored_then_banned_and_back() {
    let limits = PeerLimits::default();
    let mut book = PeerBook::new(limits.clone());
    let p = 7u32;
    assert_eq!(book.standing(&p, 0), Standing::Good);
    for _ in 0..4 {
        assert_eq!(book.penalise(&p, Offence::Invalid, 0), Change::None);
    }
    assert_eq!(book.penalise(&p, Offence::Invalid, 0), Change::NowIgnored, "five forgeries");
    assert_eq!(book.standing(&p, 0), Standing::Ignored);
    // It recovers at 20 points a second: -500 -> above -500 after a moment.
    assert_eq!(book.standing(&p, 100), Standing::Good);
    assert_eq!(book.score(&p, 100), -498);
    // A flood over budget bans it for a minute.
    let mut change = Change::None;
    for _ in 0..200 {
        change = book.penalise(&p, Offence::OverBudget, 200);
        if change != Change::None && change != Change::NowIgnored {
            break;
        }
    }
    assert_eq!(change, Change::NowBanned { until_ms: 200 + limits.ban_ms });
    assert_eq!(book.banned(200), 1);
    assert!(matches!(book.standing(&p, 30_000), Standing::Banned { .. }));
    // Banned once: further offences do not extend or repeat the ban report.
    assert_eq!(book.penalise(&p, Offence::Invalid, 30_000), Change::None);
    // After the ban it is judged by its score again, which recovered meanwhile.
    assert_eq!(book.standing(&p, 200 + limits.ban_ms), Standing::Good);
    assert_eq!(book.banned(200 + limits.ban_ms), 0);
    // The score never falls below the floor.
    for _ in 0..10_000 {
        book.penalise(&9, Offence::Invalid, 0);
    }
    assert_eq!(book.score(&9, 0), limits.score_min);
}

#[test]
fn the_book_is_bounded_and_keeps_its_banned_peers() {
    let limits = PeerLimits { peers_max: 3, ban_at: -100, ..PeerLimits::default() };
    let mut book = PeerBook::new(limits);
    assert!(matches!(book.penalise(&0u32, Offence::Invalid, 0), Change::NowBanned { .. }));
    for p in 1..10u32 {
        book.try_spend(&p, Resource::Messages, 1, u64::from(p));
    }
    assert_eq!(book.len(), 3);
    assert!(matches!(book.standing(&0, 10), Standing::Banned { .. }), "the banned peer was kept");
    // A clean peer is forgotten on disconnect; one in debt is not.
    book.forget_if_clean(&9, 10);
    assert_eq!(book.len(), 2);
    book.forget_if_clean(&0, 10);
    assert_eq!(book.len(), 2);
}

#[test]
fn recent_set_forgets_the_oldest() {
    let mut s = RecentSet::new(2);
    s.insert(1);
    s.insert(2);
    s.insert(1);
    s.insert(3);
    assert!(!s.contains(&1) && s.contains(&2) && s.contains(&3));
    assert_eq!(s.len(), 2);
}
