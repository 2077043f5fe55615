//! Golden byte vectors: the encoding and every hash domain are a contract between nodes. If one of these
//! changes, the change is a hard fork; update the vector only on purpose.

use ledger_core::hash::{Domain, Hash};
use ledger_core::{
    BlockHeader, CommitCertificate, CommitSig, Height, Keypair, Round, Transaction, Vote, VoteKind, merkle,
};

fn tx() -> ledger_core::SignedTransaction {
    Transaction {
        chain_id: "golden".into(),
        sender: Keypair::from_seed(&[1; 32]).public(),
        recipient: Keypair::from_seed(&[2; 32]).public(),
        amount: 1_000,
        fee: 2,
        nonce: 7,
        expiry_height: 99,
        memo: "hi".into(),
    }
    .sign(&Keypair::from_seed(&[1; 32]))
}

#[test]
fn signed_transaction_bytes_and_id() {
    let tx = tx();
    assert_eq!(
        hex::encode(tx.encode()),
        concat!(
            "06000000676f6c64656e",                                             // chain id "golden"
            "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c", // sender
            "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394", // recipient
            "e803000000000000",                                                 // amount
            "0200000000000000",                                                 // fee
            "0700000000000000",                                                 // nonce
            "6300000000000000",                                                 // expiry
            "020000006869",                                                     // memo "hi"
            "30248938e1828a26190f29156ad030ecd917ff5cf24dcde73275e40b1e228167c57e65f0a3e4ff735952bb32c708b6ad40b3aa3a363cdbab395525b6a17b5c0a"
        )
    );
    assert_eq!(tx.id().to_hex(), "1f474d2027e676ff098fe87623fe5fa1691e6402ec3a65e5f2a8733795aa47d9");
}

#[test]
fn domains_and_structures() {
    let d = |domain| Hash::digest(domain, b"").to_hex()[..16].to_string();
    let all = [
        d(Domain::TxId),
        d(Domain::BlockHeader),
        d(Domain::Commit),
        d(Domain::MerkleLeaf),
        d(Domain::MerkleNode),
        d(Domain::StateLeaf),
        d(Domain::StateRoot),
        d(Domain::Genesis),
        d(Domain::ValidatorSet),
        d(Domain::AddressChecksum),
        d(Domain::TxSignature),
        d(Domain::VoteSignature),
        d(Domain::ProposalSignature),
        d(Domain::ValidatorChange),
        d(Domain::ApprovalSignature),
        d(Domain::ApprovalId),
        d(Domain::KeyPossession),
        d(Domain::EvidenceId),
        d(Domain::GovState),
        d(Domain::BlockOps),
    ];
    assert_eq!(
        all.join(","),
        "8459b4736caa0c39,fe3513654c58e2af,489e4e4c07947a59,c38fcffe651efb7c,356be8b3562bae67,da8c37e77e011cad,f46e5690aae829ad,68150fa6573f0d06,49b4cf1238f3e5a1,80e9518389aa4b03,527cd4d2e7e66150,06e71fda4775bb57,fb108ac8226e5598,bf9c5827cec8a6ae,b27a60f76c842af2,79dbbdc4f5173616,7d0824cb345bec7b,708fd588e638f12d,46199171f5995cce,aa19a3b418f9354b"
    );

    let k = Keypair::from_seed(&[3; 32]);
    let vote = Vote {
        kind: VoteKind::Precommit,
        height: Height(5),
        round: Round(1),
        block_hash: Some(Hash([9; 32])),
        validator: k.public(),
    }
    .sign("golden", &k);
    assert_eq!(
        hex::encode(ledger_core::encoding::encode(&vote)),
        "01050000000000000001000000010909090909090909090909090909090909090909090909090909090909090909ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1ec717925baac1ce08ac38085e47cbaeceec1ef71da46a62479ae7853159e47a5dc36332266a322c527e6cd351d8880b268f4541f9643158309ebfaac4c956209"
    );

    let cert = CommitCertificate {
        height: Height(5),
        round: Round(1),
        block_hash: Hash([9; 32]),
        signatures: vec![CommitSig { validator_index: 0, signature: vote.signature }],
    };
    let header = BlockHeader {
        version: 1,
        chain_id: "golden".into(),
        height: Height(6),
        prev_block_hash: Hash([9; 32]),
        timestamp_ms: 1_700_000_000_000,
        proposer: k.public(),
        tx_count: 1,
        tx_root: merkle::root(&[tx().id()]),
        state_root: Hash([4; 32]),
        last_commit_hash: cert.hash(),
        validators_hash: Hash([5; 32]),
        next_validators_hash: Hash([6; 32]),
        ops_hash: Hash::ZERO,
        gov_root: Hash([7; 32]),
    };
    assert_eq!(header.hash().to_hex(), "2d7f2e93edbce672c70303ac573188d1780c3303ed88c7eba013ae25548d11a2");
    assert_eq!(
        k.public().to_address_string(),
        "ldged4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1405839fe"
    );
}

#[test]
fn governance_vectors() {
    use ledger_core::governance::{ChangeAction, GovState, ValidatorChange, possession_proof};
    use ledger_core::{Validator, ValidatorSet};
    let k = Keypair::from_seed(&[3; 32]);
    let new = Keypair::from_seed(&[4; 32]);
    let change = ValidatorChange {
        action: ChangeAction::Add {
            validator: Validator { public_key: new.public(), power: 5, moniker: "new".into() },
            possession: possession_proof("golden", &new),
        },
        expiry_height: 1_000,
        nonce: 7,
    };
    let approval = change.approve("golden", &k);
    let set =
        ValidatorSet::new(vec![Validator { public_key: k.public(), power: 10, moniker: "v0".into() }]).expect("set");
    let gov = GovState::genesis(set.clone());
    let (after, _) = gov.apply_block("golden", Height(1), std::slice::from_ref(&approval), &[]).expect("applies");
    let got = [
        change.id().to_hex(),
        approval.id().to_hex(),
        set.hash().to_hex(),
        gov.root().to_hex(),
        after.root().to_hex(),
        after.after_next.hash().to_hex(),
    ];
    assert_eq!(
        got.join(","),
        concat!(
            "00c6e833726baa3e6855d76d50ae41f7b0a2f0d8431cb8d27551a2f3563ec01e,",
            "0f1a2bee1b26dcea84f5a633f1004fb1884d925cd3822235afefd41ef136dbd7,",
            "01b105d500ddbdbed77fc7f1ff80ef09f84fe4c4ada057e071f5e13e2f684dd2,",
            "c7da2f71feddcacbe34ca91a127d499ab205b7ab481047e2ceb9b2f5d68d4c9a,",
            "c85cf234a25b775d2fcfff4466198c444915bd74393ae283e7e5fb6286a20945,",
            "a5f40089792ef3aef5a3b72c5dbf1d9c147a9273239f0526b8412842dbd8156b"
        )
    );
}
