//! Property tests for the core: encoding, signatures, state transition, state root, Merkle proofs.

use ledger_core::crypto::{CryptoError, Keypair, PublicKey, Signature};
use ledger_core::encoding::{self, DecodeError};
use ledger_core::hash::{Domain, Hash};
use ledger_core::merkle;
use ledger_core::state::{Account, ApplyError, MemStore, StateOverlay, TxContext};
use ledger_core::statetree::StateTree;
use ledger_core::{
    Block, BlockHeader, CommitCertificate, CommitSig, ConsensusParams, Height, Round, SignedTransaction, Transaction,
    TxError, Vote, VoteKind,
};
use proptest::prelude::*;

const CHAIN: &str = "prop-chain";

fn key(i: u8) -> Keypair {
    Keypair::from_seed(&[i.wrapping_add(1); 32])
}

fn transfer(from: &Keypair, to: PublicKey, amount: u64, fee: u64, nonce: u64, memo: &str) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN.into(),
        sender: from.public(),
        recipient: to,
        amount,
        fee,
        nonce,
        expiry_height: 1_000,
        memo: memo.into(),
    }
    .sign(from)
}

fn arb_tx() -> impl Strategy<Value = SignedTransaction> {
    (0u8..8, 0u8..8, 1u64.., 1u64..1000, any::<u64>(), "[a-z ]{0,40}")
        .prop_map(|(a, b, amount, fee, nonce, memo)| transfer(&key(a), key(b).public(), amount, fee, nonce, &memo))
}

fn arb_block() -> impl Strategy<Value = Block> {
    (proptest::collection::vec(arb_tx(), 0..6), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
        |(txs, height, ts, with_cert)| {
            let ids: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
            let last_commit = with_cert.then(|| CommitCertificate {
                height: Height(height.saturating_sub(1)),
                round: Round(3),
                block_hash: Hash::digest(Domain::BlockHeader, b"parent"),
                signatures: vec![CommitSig { validator_index: 0, signature: Signature([7; 64]) }],
            });
            Block {
                header: BlockHeader {
                    version: 1,
                    chain_id: CHAIN.into(),
                    height: Height(height),
                    prev_block_hash: Hash::digest(Domain::BlockHeader, b"prev"),
                    timestamp_ms: ts,
                    proposer: key(0).public(),
                    tx_count: txs.len() as u32,
                    tx_root: merkle::root(&ids),
                    state_root: Hash::ZERO,
                    last_commit_hash: last_commit.as_ref().map_or(Hash::ZERO, CommitCertificate::hash),
                    validators_hash: Hash::digest(Domain::ValidatorSet, b"set"),
                    next_validators_hash: Hash::digest(Domain::ValidatorSet, b"next"),
                    ops_hash: Hash::ZERO,
                    gov_root: Hash::digest(Domain::GovState, b"gov"),
                },
                txs,
                last_commit,
                approvals: Vec::new(),
                evidence: Vec::new(),
            }
        },
    )
}

fn params() -> ConsensusParams {
    ConsensusParams::default()
}

fn ctx(params: &ConsensusParams, height: u64) -> TxContext<'_> {
    TxContext { chain_id: CHAIN, params, height: Height(height), proposer: key(100).public() }
}

/// `s + L` where L is the order of the ed25519 group: the classic malleated signature.
fn malleate(sig: &Signature) -> Signature {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = sig.0;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(out[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = v as u8;
        carry = v >> 8;
    }
    Signature(out)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn tx_encoding_round_trips(tx in arb_tx()) {
        let bytes = tx.encode();
        let back = SignedTransaction::decode(&bytes, 4096).expect("decodes");
        prop_assert_eq!(&back, &tx);
        prop_assert_eq!(back.id(), tx.id());
        prop_assert_eq!(tx.id(), Hash::digest(Domain::TxId, &bytes));
    }

    #[test]
    fn block_encoding_round_trips(block in arb_block()) {
        let bytes = block.encode();
        let back = Block::decode(&bytes, 1 << 20).expect("decodes");
        prop_assert_eq!(back.hash(), block.hash());
        prop_assert_eq!(back, block);
    }

    #[test]
    fn trailing_bytes_rejected(tx in arb_tx(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = tx.encode();
        bytes.extend_from_slice(&extra);
        prop_assert!(matches!(SignedTransaction::decode(&bytes, 4096), Err(TxError::Malformed(_))));
    }

    #[test]
    fn truncated_bytes_rejected(tx in arb_tx(), cut in 1usize..50) {
        let bytes = tx.encode();
        let cut = cut.min(bytes.len());
        prop_assert!(SignedTransaction::decode(&bytes[..bytes.len() - cut], 4096).is_err());
    }

    #[test]
    fn oversized_input_rejected_before_parsing(tx in arb_tx()) {
        let bytes = tx.encode();
        let max = bytes.len() - 1;
        prop_assert_eq!(
            SignedTransaction::decode(&bytes, max),
            Err(TxError::TooLarge { len: bytes.len(), max })
        );
    }

    #[test]
    fn non_canonical_option_tag_rejected(block in arb_block(), tag in 2u8..=255) {
        // The last_commit option tag sits right after the txs; set it to a value borsh must refuse.
        let mut bytes = encoding::encode(&block.header);
        bytes.extend_from_slice(&encoding::encode(&block.txs));
        bytes.push(tag);
        prop_assert!(matches!(
            encoding::decode::<Block>(&bytes, 1 << 20),
            Err(DecodeError::Malformed(_) | DecodeError::NonCanonical)
        ));
    }

    #[test]
    fn signature_bound_to_chain_and_domain(tx in arb_tx(), other_chain in "[a-z]{1,10}") {
        prop_assume!(other_chain != CHAIN);
        prop_assert_eq!(tx.verify_signature(), Ok(()));
        let payload = encoding::encode(tx.tx());
        let sender = tx.tx().sender;
        prop_assert_eq!(
            sender.verify(Domain::TxSignature, &other_chain, &payload, tx.signature()),
            Err(CryptoError::BadSignature)
        );
        prop_assert_eq!(
            sender.verify(Domain::VoteSignature, CHAIN, &payload, tx.signature()),
            Err(CryptoError::BadSignature)
        );
        // The same fields re-labelled with another chain id do not carry the signature over.
        let mut moved = tx.tx().clone();
        moved.chain_id = other_chain;
        let forged = SignedTransaction::new(moved, *tx.signature());
        prop_assert_eq!(forged.verify_signature(), Err(TxError::BadSignature));
    }

    #[test]
    fn malleated_signature_rejected(tx in arb_tx()) {
        let forged = SignedTransaction::new(tx.tx().clone(), malleate(tx.signature()));
        prop_assert_ne!(forged.id(), tx.id());
        prop_assert_eq!(forged.verify_signature(), Err(TxError::BadSignature));
    }

    #[test]
    fn vote_signature_bound_to_fields(round in 0u32..100, height in 1u64..1000) {
        let k = key(1);
        let set = ledger_core::ValidatorSet::new(vec![ledger_core::Validator {
            public_key: k.public(), power: 1, moniker: "v".into(),
        }]).expect("set");
        let vote = Vote {
            kind: VoteKind::Prevote, height: Height(height), round: Round(round),
            block_hash: None, validator: k.public(),
        }.sign(CHAIN, &k);
        prop_assert!(vote.verify(CHAIN, &set).is_ok());
        let mut other = vote.clone();
        other.vote.kind = VoteKind::Precommit;
        prop_assert!(other.verify(CHAIN, &set).is_err());
        prop_assert!(vote.verify("another-chain", &set).is_err());
    }

    #[test]
    fn supply_conserved_over_random_sequences(
        ops in proptest::collection::vec((0u8..6, 0u8..6, 1u64..5_000, 1u64..20, 0u64..3), 1..60)
    ) {
        let params = params();
        let mut store = MemStore::new();
        for i in 0..6 {
            store.set_account(key(i).public(), Account { balance: 10_000, nonce: 0 });
        }
        let gov = ledger_core::governance::GovState::genesis(
            ledger_core::ValidatorSet::new(vec![ledger_core::Validator {
                public_key: key(0).public(),
                power: 1,
                moniker: "v".into(),
            }])
            .expect("set"),
        );
        let supply = store.total_supply();
        let mut nonces = [0u64; 6];
        for (height, chunk) in ops.chunks(7).enumerate() {
            let mut overlay = StateOverlay::new(&store);
            for &(from, to, amount, fee, nonce_skew) in chunk {
                // Mostly right nonces, sometimes wrong ones, which must be refused without effect.
                let nonce = nonces[from as usize] + nonce_skew % 2 * nonce_skew;
                let tx = transfer(&key(from), key(to).public(), amount, fee, nonce, "");
                match overlay.apply_tx(&ctx(&params, height as u64 + 1), &tx, false) {
                    Ok(()) => nonces[from as usize] += 1,
                    Err(ApplyError::Tx(
                        TxError::WrongNonce { .. } | TxError::InsufficientFunds { .. }
                    )) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            let changes = overlay.finish(store.tree(), gov.clone(), Default::default());
            store.commit(&changes);
            prop_assert_eq!(store.total_supply(), supply);
            // The incrementally maintained root equals a from-scratch recomputation.
            let fresh = StateTree::from_accounts(store.accounts().iter().map(|(a, acc)| (*a, *acc)));
            prop_assert_eq!(fresh.root(), store.state_root());
        }
    }

    #[test]
    fn state_root_independent_of_creation_order(
        balances in proptest::collection::vec((1u64..1_000_000, 0u64..100), 1..20),
        seed in any::<u64>()
    ) {
        let accounts: Vec<(PublicKey, Account)> = balances.iter().enumerate()
            .map(|(i, (b, n))| (key(i as u8).public(), Account { balance: *b, nonce: *n }))
            .collect();
        let mut forward = MemStore::new();
        for (a, acc) in &accounts { forward.set_account(*a, *acc); }
        let mut shuffled = accounts.clone();
        // Deterministic shuffle from the seed.
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut other = MemStore::new();
        for (a, acc) in &shuffled { other.set_account(*a, *acc); }
        prop_assert_eq!(forward.state_root(), other.state_root());

        // Any change of one balance or one nonce changes the root.
        let (a, acc) = accounts[seed as usize % accounts.len()];
        let mut b = forward.clone();
        b.set_account(a, Account { balance: acc.balance + 1, ..acc });
        prop_assert_ne!(b.state_root(), forward.state_root());
        let mut n = forward.clone();
        n.set_account(a, Account { nonce: acc.nonce + 1, ..acc });
        prop_assert_ne!(n.state_root(), forward.state_root());
    }

    #[test]
    fn tampered_merkle_proof_fails(n in 1usize..64, pick in any::<usize>(), flip in any::<usize>()) {
        let ids: Vec<Hash> = (0..n).map(|i| Hash::digest(Domain::TxId, &(i as u64).to_le_bytes())).collect();
        let root = merkle::root(&ids);
        let i = pick % n;
        let proof = merkle::prove(&ids, i).expect("in range");
        prop_assert!(proof.verify(&root, &ids[i]));
        if !proof.siblings.is_empty() {
            let mut bad = proof.clone();
            let s = flip % bad.siblings.len();
            bad.siblings[s].0[flip % 32] ^= 1;
            prop_assert!(!bad.verify(&root, &ids[i]));
        }
        let mut moved = proof.clone();
        moved.index = ((i + 1 + flip % n.max(2)) % n) as u32;
        if moved.index as usize != i {
            prop_assert!(!moved.verify(&root, &ids[i]));
        }
        // A path alone can fit two tree sizes (RFC 6962), so verifiers must also check `leaf_count`
        // against the header's `tx_count`; a proof claiming another index within the size must fail.
        let mut out_of_range = proof.clone();
        out_of_range.index = out_of_range.leaf_count;
        prop_assert!(!out_of_range.verify(&root, &ids[i]));
    }
}

#[test]
fn replayed_nonce_rejected() {
    let params = params();
    let mut store = MemStore::new();
    store.set_account(key(0).public(), Account { balance: 100, nonce: 0 });
    let tx = transfer(&key(0), key(1).public(), 10, 1, 0, "");
    let mut overlay = StateOverlay::new(&store);
    overlay.apply_tx(&ctx(&params, 1), &tx, false).expect("first apply");
    assert_eq!(
        overlay.apply_tx(&ctx(&params, 1), &tx, false),
        Err(ApplyError::Tx(TxError::WrongNonce { expected: 1, got: 0 }))
    );
}

#[test]
fn weak_keys_rejected_for_sender_and_recipient() {
    let params = params();
    let mut weak = [0u8; 32];
    weak[0] = 1; // the identity point, small order
    let weak = PublicKey(weak);
    let to_weak = transfer(&key(0), weak, 10, 1, 0, "");
    assert_eq!(to_weak.check_stateless(CHAIN, &params).map_err(|e| e.code()), Err("weak_key"));
    let from_weak = SignedTransaction::new(
        Transaction {
            chain_id: CHAIN.into(),
            sender: weak,
            recipient: key(1).public(),
            amount: 1,
            fee: 1,
            nonce: 0,
            expiry_height: 10,
            memo: String::new(),
        },
        Signature([0; 64]),
    );
    assert_eq!(from_weak.check_stateless(CHAIN, &params).map_err(|e| e.code()), Err("weak_key"));
}

#[test]
fn each_tx_error_has_its_own_reason() {
    let params = params();
    let mut store = MemStore::new();
    store.set_account(key(0).public(), Account { balance: 100, nonce: 0 });
    let c = ctx(&params, 5);
    let apply = |tx: &SignedTransaction| {
        StateOverlay::new(&store).apply_tx(&c, tx, false).map_err(|e| match e {
            ApplyError::Tx(t) => t,
            ApplyError::Store(s) => panic!("store error {s}"),
        })
    };
    let base = Transaction {
        chain_id: CHAIN.into(),
        sender: key(0).public(),
        recipient: key(1).public(),
        amount: 10,
        fee: 1,
        nonce: 0,
        expiry_height: 10,
        memo: String::new(),
    };
    let cases: Vec<(Transaction, &str)> = vec![
        (Transaction { chain_id: "other".into(), ..base.clone() }, "wrong_chain"),
        (Transaction { nonce: 1, ..base.clone() }, "nonce_gap"),
        (Transaction { amount: 100, ..base.clone() }, "insufficient_funds"),
        (Transaction { expiry_height: 4, ..base.clone() }, "expired"),
        (Transaction { fee: 0, ..base.clone() }, "fee_too_low"),
        (Transaction { amount: 0, ..base.clone() }, "zero_amount"),
        (Transaction { amount: u64::MAX, ..base.clone() }, "overflow"),
        (Transaction { memo: "x".repeat(257), ..base.clone() }, "memo_too_long"),
    ];
    for (tx, code) in cases {
        assert_eq!(apply(&tx.sign(&key(0))).map_err(|e| e.code()), Err(code));
    }
    let bad_sig = SignedTransaction::new(base.clone(), Signature([1; 64]));
    assert_eq!(apply(&bad_sig).map_err(|e| e.code()), Err("bad_signature"));
    assert_eq!(apply(&base.sign(&key(0))), Ok(()));
}

mod governance_props {
    use super::*;
    use ledger_core::governance::{Approval, ChangeAction, GovError, GovState, ValidatorChange, possession_proof};
    use ledger_core::{Validator, ValidatorSet};

    fn gov(powers: &[u64]) -> GovState {
        GovState::genesis(
            ValidatorSet::new(
                powers
                    .iter()
                    .enumerate()
                    .map(|(i, p)| Validator { public_key: key(i as u8).public(), power: *p, moniker: format!("v{i}") })
                    .collect(),
            )
            .expect("set"),
        )
    }

    /// `first_power` is validator 0's power now: the power change sets another one. Kind 3 rotates
    /// validator 1's key (which needs validator 1's own approval among the quorum).
    fn change(kind: u8, nonce: u64, first_power: u64) -> ValidatorChange {
        change_expiring(kind, nonce, first_power, 40)
    }

    fn change_expiring(kind: u8, nonce: u64, first_power: u64, expiry_height: u64) -> ValidatorChange {
        let new = key(200);
        let action = match kind % 4 {
            0 => ChangeAction::Add {
                validator: Validator { public_key: new.public(), power: 3, moniker: "n".into() },
                possession: possession_proof(CHAIN, &new),
            },
            1 => ChangeAction::SetPower { key: key(0).public(), power: first_power + 1 },
            2 => ChangeAction::Remove { key: key(1).public() },
            _ => {
                let rotated = key(201);
                ChangeAction::RotateKey {
                    old: key(1).public(),
                    new: rotated.public(),
                    possession: possession_proof(CHAIN, &rotated),
                }
            }
        };
        ValidatorChange { action, expiry_height, nonce }
    }

    /// The set of every height from 1 to the state's height + 2, as the state knows it after each block
    /// (`set_at` of the tip and the two heights after, recorded as the chain goes).
    fn record(history: &mut Vec<ledger_core::Hash>, s: &GovState) {
        for h in 1..=s.height.0 + 2 {
            let Some(set) = s.set_at(Height(h)) else { continue };
            match history.get(h as usize - 1) {
                Some(known) => assert_eq!(*known, set.hash(), "the set of height {h} changed after it was known"),
                None => history.push(set.hash()),
            }
        }
    }

    /// Approvals of up to four changes for a chain of 12 blocks: each validator approves each change in a
    /// block drawn from `plan`, or never. A proposer keeps those that apply (`select_ops`).
    fn chain_of(powers: &[u64], plan: &[u8], kinds: &[u8]) -> Vec<Vec<Approval>> {
        let blocks = 12;
        let mut out: Vec<Vec<Approval>> = vec![Vec::new(); blocks];
        for (n, kind) in kinds.iter().enumerate() {
            let c = change(*kind, n as u64, powers[0]);
            for i in 0..powers.len() {
                let slot = plan[(n * powers.len() + i) % plan.len()] as usize;
                if slot < blocks {
                    out[slot].push(c.approve(CHAIN, &key(i as u8)));
                }
            }
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Approvals holding at most 2/3 of the power never change the set, over many blocks; adding the
        /// missing power makes the change apply exactly two heights after the block that completes it.
        #[test]
        fn below_two_thirds_never_changes_the_set(
            powers in proptest::collection::vec(1u64..20, 2..8),
            kind in 0u8..4,
            order in proptest::collection::vec(any::<u8>(), 8),
            split in 1usize..4,
        ) {
            let g = gov(&powers);
            let c = change(kind, 0, powers[0]);
            let total: u64 = powers.iter().sum();
            // A random order of validators; take the longest prefix with power * 3 <= total * 2.
            let mut idx: Vec<usize> = (0..powers.len()).collect();
            for (i, o) in order.iter().enumerate().take(idx.len()) {
                let j = (*o as usize) % idx.len();
                idx.swap(i, j);
            }
            let mut below = Vec::new();
            let mut power = 0u64;
            for &i in &idx {
                if (power + powers[i]) * 3 > total * 2 { break; }
                power += powers[i];
                below.push(i);
            }
            let approvals: Vec<_> = below.iter().map(|&i| c.approve(CHAIN, &key(i as u8))).collect();
            let mut s = g.clone();
            for chunk in approvals.chunks(split) {
                let (next, ev) = s.apply_block(CHAIN, s.height.next(), chunk, &[]).expect("valid approvals");
                prop_assert!(ev.decided.is_empty());
                s = next;
            }
            for _ in 0..3 {
                s = s.apply_block(CHAIN, s.height.next(), &[], &[]).expect("empty").0;
            }
            prop_assert_eq!(&s.current, &g.current);
            prop_assert_eq!(&s.after_next, &g.after_next);
            // Now everyone else approves in one block: decided there, in force two heights later.
            let rest: Vec<_> = idx.iter().filter(|i| !below.contains(i)).map(|&i| c.approve(CHAIN, &key(i as u8))).collect();
            let at = s.height.next();
            let (after, ev) = s.apply_block(CHAIN, at, &rest, &[]).expect("valid approvals");
            prop_assert_eq!(ev.decided.len(), 1);
            if let Ok(from) = &ev.decided[0].1 {
                prop_assert_eq!(*from, Height(at.0 + 2));
                prop_assert_eq!(&after.next, &s.after_next, "the next height keeps its set");
                prop_assert_ne!(&after.after_next, &s.after_next);
            }
            // Replaying any approval of it is refused.
            let replay = c.approve(CHAIN, &key(idx[0] as u8));
            prop_assert!(after.apply_block(CHAIN, at.next(), &[replay], &[]).is_err());
        }

        /// The order of approvals inside a block does not change the resulting state, so every node that
        /// executes the same block computes the same root and the same activation height.
        #[test]
        fn approval_order_inside_a_block_does_not_matter(
            powers in proptest::collection::vec(1u64..20, 2..8),
            kinds in proptest::collection::vec(0u8..4, 1..4),
            seed in any::<u64>(),
        ) {
            let g = gov(&powers);
            let mut approvals = Vec::new();
            for (n, k) in kinds.iter().enumerate() {
                for i in 0..powers.len() {
                    if (seed >> ((n * 8 + i) % 64)) & 1 == 1 {
                        approvals.push(change(*k, n as u64, powers[0]).approve(CHAIN, &key(i as u8)));
                    }
                }
            }
            let a = g.apply_block(CHAIN, Height(1), &approvals, &[]);
            let mut reversed = approvals.clone();
            reversed.reverse();
            let b = g.apply_block(CHAIN, Height(1), &reversed, &[]);
            match (a, b) {
                (Ok((sa, ea)), Ok((sb, eb))) => {
                    prop_assert_eq!(sa.root(), sb.root());
                    prop_assert_eq!(ea, eb);
                }
                (Err(_), Err(_)) => {}
                _ => prop_assert!(false, "one order valid and the other not"),
            }
        }

        /// The same chain gives the same set at every height on every node: one that applies its blocks in
        /// order, one that gets each block's approvals in another order, and one that restarts from its
        /// encoded state halfway (a node restored from storage). Each node's view of a height's set never
        /// changes once known, and a decided change is in force exactly two heights after its block.
        #[test]
        fn every_node_computes_the_same_set_for_every_height(
            powers in proptest::collection::vec(1u64..10, 3..8),
            kinds in proptest::collection::vec(0u8..4, 1..5),
            plan in proptest::collection::vec(0u8..16, 8..40),
            seed in any::<u64>(),
            restart_at in 1usize..12,
        ) {
            let blocks = chain_of(&powers, &plan, &kinds);
            let g = gov(&powers);
            let (mut a, mut b, mut c) = (g.clone(), g.clone(), g.clone());
            let (mut ha, mut hb, mut hc) = (Vec::new(), Vec::new(), Vec::new());
            for (k, offered) in blocks.iter().enumerate() {
                let height = Height(k as u64 + 1);
                // What the proposer puts in the block: the approvals that apply (a removed or rotated
                // approver's, or an executed change's, do not).
                let (approvals, _, _) = a.select_ops(CHAIN, height, offered.clone(), Vec::new());
                let approvals = &approvals;
                // Another node's copy of the block, its approvals in another order.
                let mut shuffled = approvals.clone();
                let mut x = seed ^ k as u64;
                for i in (1..shuffled.len()).rev() {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    shuffled.swap(i, (x >> 33) as usize % (i + 1));
                }
                let ra = a.apply_block(CHAIN, height, approvals, &[]);
                let rb = b.apply_block(CHAIN, height, &shuffled, &[]);
                let rc = c.apply_block(CHAIN, height, approvals, &[]);
                let (Ok((na, ea)), Ok((nb, eb)), Ok((nc, _))) = (ra, rb, rc) else {
                    return Err(TestCaseError::fail(format!("a node refused block {}", height.0)));
                };
                for (id, outcome) in &ea.decided {
                    if let Ok(from) = outcome {
                        prop_assert_eq!(*from, Height(height.0 + 2), "change {} activates at {}", id, from.0);
                        // The height after keeps its set: the change is not in force one height early.
                        prop_assert_eq!(&na.next, &a.after_next);
                    }
                }
                prop_assert_eq!(&ea, &eb);
                a = na;
                b = nb;
                c = if k + 1 == restart_at {
                    let bytes = encoding::encode(&nc);
                    encoding::decode::<GovState>(&bytes, 1 << 20).expect("a stored state decodes")
                } else {
                    nc
                };
                record(&mut ha, &a);
                record(&mut hb, &b);
                record(&mut hc, &c);
                prop_assert_eq!(a.root(), b.root());
                prop_assert_eq!(a.root(), c.root());
            }
            prop_assert_eq!(&ha, &hb);
            prop_assert_eq!(&ha, &hc);
            prop_assert_eq!(ha.len() as u64, a.height.0 + 2);
        }

        /// Approvals of an expired change are refused (at any height past its expiry, whatever approvals
        /// came before); an executed change's approvals are refused as replays until it expires, from any
        /// approver and in any later block; the same action with a fresh nonce is a new change.
        #[test]
        fn replayed_and_expired_approvals_are_refused(
            powers in proptest::collection::vec(1u64..10, 2..8),
            kind in 0u8..4,
            expiry in 2u64..20,
            late in 1u64..30,
            replayer in any::<u8>(),
            wait in 0u64..25,
        ) {
            let g = gov(&powers);
            let c = change_expiring(kind, 0, powers[0], expiry);
            let n = powers.len();
            let all: Vec<Approval> = (0..n).map(|i| c.approve(CHAIN, &key(i as u8))).collect();
            // Expired: past `expiry`, a block carrying any approval of it is refused.
            let mut s = g.clone();
            while s.height.0 < expiry + late - 1 {
                s = s.apply_block(CHAIN, s.height.next(), &[], &[]).expect("empty block").0;
            }
            let one = &all[replayer as usize % n];
            let refused = s.apply_block(CHAIN, s.height.next(), std::slice::from_ref(one), &[]);
            prop_assert!(
                matches!(refused, Err((0, GovError::Expired { .. }))),
                "an approval of a change expired at {} was taken at height {}: {:?}", expiry, s.height.0 + 1,
                refused.map(|_| ())
            );
            // Executed in block 1 by everyone.
            let (mut s, ev) = g.apply_block(CHAIN, Height(1), &all, &[]).expect("valid approvals");
            prop_assert_eq!(ev.decided.len(), 1);
            for _ in 0..wait {
                s = s.apply_block(CHAIN, s.height.next(), &[], &[]).expect("empty block").0;
            }
            let next = s.height.next();
            let replay = s.apply_block(CHAIN, next, std::slice::from_ref(one), &[]);
            if next.0 <= expiry {
                prop_assert!(
                    matches!(replay, Err((0, GovError::AlreadyExecuted(_) | GovError::NotAValidator(_)))),
                    "replay at height {} taken: {:?}", next.0, replay.map(|_| ())
                );
            } else {
                let expired = matches!(replay, Err((0, GovError::Expired { .. })));
                prop_assert!(expired, "replay after expiry at height {} not refused as expired", next.0);
            }
            // The same action with a fresh nonce and expiry is another change: its approvals are taken.
            let fresh = change_expiring(kind, 1, powers[0], next.0 + 10);
            let approver = (0..n).map(|i| key(i as u8)).find(|k| s.next.index_of(&k.public()).is_some());
            if let Some(k) = approver {
                prop_assert!(s.apply_block(CHAIN, next, &[fresh.approve(CHAIN, &k)], &[]).is_ok());
            }
        }
    }
}
