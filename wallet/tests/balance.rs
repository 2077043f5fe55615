//! The pure verification of `wallet balance --verify`, on a real chain of blocks built with
//! `ledger_core::state::build_block`, real certificates signed by validator keys and real state proofs,
//! honest and tampered.

use ledger_core::block::PROTOCOL_VERSION;
use ledger_core::state::{BlockTemplate, MemStore, build_block};
use ledger_core::{
    Account, Address, Block, CommitCertificate, CommitSig, ConsensusParams, Genesis, GenesisAccount, Hash, Height,
    Keypair, Parent, Round, StateTree, Transaction, Validator, ValidatorSet, Vote, VoteKind, encoding,
};
use wallet_cli::balance::{BalanceEvidence, decode_balance_evidence, verify_balance};
use wallet_cli::verify::{EvidenceError, Report, TrustedSet, Walk};

const CHAIN: &str = "wallet-test";
const START: u64 = 1_000_000;

fn validator_keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
}

fn sender() -> Keypair {
    Keypair::from_seed(&[50; 32])
}

fn recipient() -> Address {
    Keypair::from_seed(&[60; 32]).public()
}

fn stranger() -> Address {
    Keypair::from_seed(&[70; 32]).public()
}

fn genesis(chain_id: &str) -> Genesis {
    let g = Genesis {
        chain_id: chain_id.to_string(),
        genesis_time_ms: 1_700_000_000_000,
        protocol_version: PROTOCOL_VERSION,
        validators: validator_keys()
            .iter()
            .enumerate()
            .map(|(i, k)| Validator { public_key: k.public(), power: 10, moniker: format!("v{i}") })
            .collect(),
        accounts: vec![GenesisAccount { address: sender().public(), balance: START }],
        params: ConsensusParams::default(),
    };
    g.validate().expect("valid genesis");
    g
}

/// One committed height: the block, its certificate and the state tree after it.
struct Committed {
    block: Block,
    cert: CommitCertificate,
    tree: StateTree,
}

fn certificate(chain_id: &str, height: Height, block_hash: Hash) -> CommitCertificate {
    let signatures = validator_keys()
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let vote = Vote {
                kind: VoteKind::Precommit,
                height,
                round: Round(0),
                block_hash: Some(block_hash),
                validator: key.public(),
            };
            CommitSig { validator_index: i as u16, signature: vote.sign(chain_id, key).signature }
        })
        .collect();
    CommitCertificate { height, round: Round(0), block_hash, signatures }
}

/// Heights 1 and 2 of `chain_id`: three transfers to `recipient()` in block 1 (nonces 0..3), two in block 2.
fn chain(chain_id: &str) -> Vec<Committed> {
    let g = genesis(chain_id);
    let mut store: MemStore = g.initial_state();
    let mut out: Vec<Committed> = Vec::new();
    for (height, nonces) in [(1u64, 0..3u64), (2, 3..5)] {
        let txs: Vec<ledger_core::SignedTransaction> = nonces
            .map(|nonce| {
                Transaction {
                    chain_id: chain_id.to_string(),
                    sender: sender().public(),
                    recipient: recipient(),
                    amount: 10 + nonce,
                    fee: 1,
                    nonce,
                    expiry_height: 100,
                    memo: String::new(),
                }
                .sign(&sender())
            })
            .collect();
        let parent = match out.last() {
            None => g.parent_of_first_block(),
            Some(p) => Parent {
                height: p.block.height(),
                hash: p.block.hash(),
                timestamp_ms: p.block.header.timestamp_ms,
                chain_id,
            },
        };
        let template = BlockTemplate {
            parent,
            proposer: validator_keys()[0].public(),
            timestamp_ms: g.genesis_time_ms + 1000 * height,
            last_commit: out.last().map(|p| p.cert.clone()),
            approvals: Vec::new(),
            evidence: Vec::new(),
        };
        let gov = store.gov().expect("governance state").clone();
        let built = build_block(&store, store.tree(), &gov, template, &g.params, txs, &|_| false).expect("build");
        assert!(built.rejected.is_empty(), "{:?}", built.rejected);
        assert_eq!(built.block.height(), Height(height));
        store.commit(&built.changes);
        let cert = certificate(chain_id, built.block.height(), built.block.hash());
        out.push(Committed { block: built.block, cert, tree: built.changes.tree });
    }
    out
}

/// What the node sends for `address` at `at`, as hex.
struct Sent {
    height: u64,
    present: bool,
    account: Option<Account>,
    header_hex: String,
    cert_hex: String,
    proof_hex: String,
}

impl Sent {
    fn of(at: &Committed, address: &Address) -> Sent {
        let (account, proof) = at.tree.prove(address);
        Sent {
            height: at.block.height().0,
            present: account.is_some(),
            account,
            header_hex: hex::encode(encoding::encode(&at.block.header)),
            cert_hex: hex::encode(encoding::encode(&at.cert)),
            proof_hex: hex::encode(encoding::encode(&proof)),
        }
    }

    fn decode(&self) -> Result<BalanceEvidence, EvidenceError> {
        decode_balance_evidence(
            self.height,
            self.present,
            self.account,
            &self.header_hex,
            &self.cert_hex,
            &self.proof_hex,
        )
    }
}

fn check(address: &Address, sent: &Sent) -> Report {
    let set: ValidatorSet = genesis(CHAIN).validator_set().expect("set");
    verify_balance(address, CHAIN, &Walk::new(TrustedSet::genesis(set)), &sent.decode().expect("decodes"))
}

#[test]
fn present_and_absent_accounts_verify_at_every_height() {
    let chain = chain(CHAIN);
    let tip = &chain[1];
    let sent = Sent::of(tip, &sender().public());
    // Five transfers of 10..=14 with fee 1 each.
    assert_eq!(sent.account, Some(Account { balance: START - (10 + 11 + 12 + 13 + 14) - 5, nonce: 5 }));
    let report = check(&sender().public(), &sent);
    assert!(report.ok(), "{report:?}");
    let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
    assert_eq!(
        names,
        ["header_chain", "header_height", "set_transitions", "validator_set", "certificate", "state_proof"]
    );
    assert!(report.check("state_proof").expect("present").detail.contains("nonce 5"));

    for at in &chain {
        for address in [sender().public(), recipient(), validator_keys()[0].public(), stranger()] {
            let sent = Sent::of(at, &address);
            assert_eq!(sent.present, address != stranger(), "{address}");
            let report = check(&address, &sent);
            assert!(report.ok(), "height {} {address}: {report:?}", at.block.height());
        }
    }
    let absent = check(&stranger(), &Sent::of(tip, &stranger()));
    assert!(absent.check("state_proof").expect("present").detail.contains("holds no account"), "{absent:?}");
}

#[test]
fn an_altered_account_fails_the_state_proof() {
    let chain = chain(CHAIN);
    let address = sender().public();
    let honest = Sent::of(&chain[1], &address);
    let real = honest.account.expect("present");
    for lie in [
        Account { balance: real.balance + 1, ..real },
        Account { nonce: real.nonce - 1, ..real },
        Account { balance: START, nonce: 0 },
    ] {
        let sent = Sent { account: Some(lie), ..Sent::of(&chain[1], &address) };
        assert_eq!(check(&address, &sent).failed(), ["state_proof"], "{lie:?}");
    }
    // Hiding an account that exists, or inventing one that does not.
    let hidden = Sent { present: false, account: None, ..Sent::of(&chain[1], &address) };
    assert_eq!(check(&address, &hidden).failed(), ["state_proof"]);
    let invented =
        Sent { present: true, account: Some(Account { balance: 5, nonce: 0 }), ..Sent::of(&chain[1], &stranger()) };
    assert_eq!(check(&stranger(), &invented).failed(), ["state_proof"]);
    // Another address's true account and proof, shown for this one.
    let other = Sent::of(&chain[1], &recipient());
    assert_eq!(check(&address, &other).failed(), ["state_proof"]);
}

#[test]
fn altered_proof_bytes_fail_the_state_proof_or_do_not_decode() {
    let chain = chain(CHAIN);
    let address = sender().public();
    let honest = Sent::of(&chain[1], &address);
    let bytes = hex::decode(&honest.proof_hex).expect("hex");
    // The first sibling's first byte (after the 4-byte length), then the leaf's value's last byte.
    for at in [4, bytes.len() - 1] {
        let mut tampered = bytes.clone();
        tampered[at] ^= 0x01;
        let sent = Sent { proof_hex: hex::encode(&tampered), ..Sent::of(&chain[1], &address) };
        assert_eq!(check(&address, &sent).failed(), ["state_proof"], "byte {at}");
    }
    // A sibling cut off, and a length that does not match the bytes: not canonical, refused at decoding.
    let mut proof: ledger_core::StateProof =
        encoding::decode(&bytes, ledger_core::StateProof::ENCODED_MAX).expect("decodes");
    proof.siblings.pop();
    let sent = Sent { proof_hex: hex::encode(encoding::encode(&proof)), ..Sent::of(&chain[1], &address) };
    assert_eq!(check(&address, &sent).failed(), ["state_proof"]);
    let mut tampered = bytes.clone();
    tampered[0] ^= 0x01;
    let sent = Sent { proof_hex: hex::encode(&tampered), ..Sent::of(&chain[1], &address) };
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "proof_hex", .. })));
    // Longer than any proof: refused before decoding.
    let sent =
        Sent { proof_hex: "00".repeat(ledger_core::StateProof::ENCODED_MAX + 1), ..Sent::of(&chain[1], &address) };
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "proof_hex", .. })));
    let sent = Sent { proof_hex: "zz".into(), ..Sent::of(&chain[1], &address) };
    assert!(matches!(sent.decode(), Err(EvidenceError::BadHex { field: "proof_hex" })));
}

#[test]
fn a_proof_against_another_heights_header_fails() {
    let chain = chain(CHAIN);
    let address = sender().public();
    let (one, two) = (&chain[0], &chain[1]);
    assert_ne!(one.block.header.state_root, two.block.header.state_root);
    // Height 2's account and proof with height 1's header (the node still says height 2, and sends
    // height 2's certificate): the header is at the wrong height, the certificate is not for it, and the
    // proof is not under its state root.
    let sent = Sent { header_hex: Sent::of(one, &address).header_hex, ..Sent::of(two, &address) };
    assert_eq!(check(&address, &sent).failed(), ["header_height", "certificate", "state_proof"]);
    // Consistently height 1 (its header, its certificate), with height 2's account and proof: only the
    // proof fails.
    let sent = Sent {
        account: Sent::of(two, &address).account,
        proof_hex: Sent::of(two, &address).proof_hex,
        ..Sent::of(one, &address)
    };
    assert_eq!(check(&address, &sent).failed(), ["state_proof"]);
    // Height 1's true answer verifies: an older state is still a certified state.
    assert!(check(&address, &Sent::of(one, &address)).ok());
}

#[test]
fn a_header_of_another_chain_fails() {
    let other = chain("other-chain");
    let address = sender().public();
    let report = check(&address, &Sent::of(&other[1], &address));
    // Same keys, same transfers: the state (and so the proof) is the same, but the header is not of this
    // chain and its votes were signed for the other chain id.
    assert_eq!(report.failed(), ["header_chain", "certificate"], "{report:?}");
    // Re-signed for this chain (which would need the validators' keys), the chain id still shows.
    let mut sent = Sent::of(&other[1], &address);
    let header = &other[1].block.header;
    sent.cert_hex = hex::encode(encoding::encode(&certificate(CHAIN, header.height, header.hash())));
    assert_eq!(check(&address, &sent).failed(), ["header_chain"]);
}

#[test]
fn a_certificate_with_too_little_power_fails() {
    let chain = chain(CHAIN);
    let address = sender().public();
    let mut cert = chain[1].cert.clone();
    cert.signatures.truncate(2);
    let sent = Sent { cert_hex: hex::encode(encoding::encode(&cert)), ..Sent::of(&chain[1], &address) };
    assert_eq!(check(&address, &sent).failed(), ["certificate"]);
}

#[test]
fn an_answer_that_contradicts_itself_is_refused() {
    let chain = chain(CHAIN);
    let sent = Sent { present: false, ..Sent::of(&chain[1], &sender().public()) };
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "present", .. })));
    let sent = Sent { present: true, ..Sent::of(&chain[1], &stranger()) };
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "present", .. })));
}
