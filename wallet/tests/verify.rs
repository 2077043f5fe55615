//! The pure verification of `wallet verify`, on real blocks built with `ledger_core::state::build_block`
//! and real certificates signed by validator keys, honest and tampered.

use ledger_core::block::PROTOCOL_VERSION;
use ledger_core::merkle::{self, MerkleProof};
use ledger_core::state::{BlockTemplate, build_block};
use ledger_core::{
    Block, CommitCertificate, CommitSig, ConsensusParams, Genesis, GenesisAccount, Hash, Height, Keypair, Round,
    SignedTransaction, Transaction, Validator, ValidatorSet, Vote, VoteKind,
};
use wallet_cli::trusted::{self, TrustedState, TrustedStateError};
use wallet_cli::verify::{
    Evidence, EvidenceError, Report, TransitionError, TransitionHex, TrustSource, TrustedSet, Walk, decode_evidence,
    follow_transitions, verify_evidence,
};

const CHAIN: &str = "wallet-test";
const N_TXS: u64 = 5;

fn validator_keys() -> Vec<Keypair> {
    (1..=4u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
}

fn outsider_keys() -> Vec<Keypair> {
    (101..=104u8).map(|i| Keypair::from_seed(&[i; 32])).collect()
}

fn sender() -> Keypair {
    Keypair::from_seed(&[50; 32])
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
        accounts: vec![GenesisAccount { address: sender().public(), balance: 1_000_000 }],
        params: ConsensusParams::default(),
    };
    g.validate().expect("valid genesis");
    g
}

/// A committed block 1 of `chain_id` holding `N_TXS` transfers, and its certificate signed by `signers`
/// (validator indices into the genesis set, keys given by `keys`).
struct Committed {
    block: Block,
    cert: CommitCertificate,
}

fn committed(chain_id: &str, keys: &[Keypair], signers: &[u16]) -> Committed {
    let g = genesis(chain_id);
    let store = g.initial_state();
    let recipient = Keypair::from_seed(&[60; 32]).public();
    let txs: Vec<SignedTransaction> = (0..N_TXS)
        .map(|nonce| {
            Transaction {
                chain_id: chain_id.to_string(),
                sender: sender().public(),
                recipient,
                amount: 10 + nonce,
                fee: 1,
                nonce,
                expiry_height: 100,
                memo: format!("payment {nonce}"),
            }
            .sign(&sender())
        })
        .collect();
    let template = BlockTemplate {
        parent: g.parent_of_first_block(),
        proposer: validator_keys()[0].public(),
        timestamp_ms: g.genesis_time_ms + 1000,
        last_commit: None,
        approvals: Vec::new(),
        evidence: Vec::new(),
    };
    let gov = store.gov().expect("genesis governance state").clone();
    let built = build_block(&store, store.tree(), &gov, template, &g.params, txs, &|_| false).expect("build");
    assert!(built.rejected.is_empty(), "every tx applies: {:?}", built.rejected);
    assert_eq!(built.block.txs.len() as u64, N_TXS);
    let cert = certificate(chain_id, keys, signers, built.block.height(), built.block.hash());
    Committed { block: built.block, cert }
}

fn certificate(
    chain_id: &str,
    keys: &[Keypair],
    signers: &[u16],
    height: Height,
    block_hash: Hash,
) -> CommitCertificate {
    let signatures = signers
        .iter()
        .map(|&i| {
            let key = &keys[i as usize];
            let vote = Vote {
                kind: VoteKind::Precommit,
                height,
                round: Round(0),
                block_hash: Some(block_hash),
                validator: key.public(),
            };
            CommitSig { validator_index: i, signature: vote.sign(chain_id, key).signature }
        })
        .collect();
    CommitCertificate { height, round: Round(0), block_hash, signatures }
}

/// What the node would send for tx `index`, as hex, decoded back through `decode_evidence`.
struct Sent {
    tx_hex: String,
    height: u64,
    proof: MerkleProof,
    header_hex: String,
    cert_hex: String,
}

impl Sent {
    fn of(c: &Committed, index: usize) -> Sent {
        Sent {
            tx_hex: hex::encode(c.block.txs[index].encode()),
            height: c.block.height().0,
            proof: merkle::prove(&c.block.tx_ids(), index).expect("in range"),
            header_hex: hex::encode(ledger_core::encoding::encode(&c.block.header)),
            cert_hex: hex::encode(ledger_core::encoding::encode(&c.cert)),
        }
    }

    fn decode(&self) -> Result<Evidence, EvidenceError> {
        decode_evidence(
            &self.tx_hex,
            self.height,
            self.proof.clone(),
            &self.header_hex,
            &self.cert_hex,
            ConsensusParams::default().tx_bytes_max as usize,
        )
    }
}

fn check_against_chain(id: &Hash, evidence: &Evidence) -> Report {
    let set: ValidatorSet = genesis(CHAIN).validator_set().expect("set");
    verify_evidence(id, CHAIN, &Walk::new(TrustedSet::genesis(set)), evidence)
}

fn honest() -> Committed {
    committed(CHAIN, &validator_keys(), &[0, 1, 2, 3])
}

fn failed(report: &Report) -> Vec<&'static str> {
    report.failed()
}

#[test]
fn every_transaction_of_an_honest_block_verifies() {
    let c = honest();
    for (i, tx) in c.block.txs.iter().enumerate() {
        let evidence = Sent::of(&c, i).decode().expect("decodes");
        let report = check_against_chain(&tx.id(), &evidence);
        assert!(report.ok(), "tx {i}: {report:?}");
        let names: Vec<_> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(
            names,
            [
                "tx_id",
                "tx_chain",
                "tx_signature",
                "header_chain",
                "header_height",
                "proof_leaf_count",
                "merkle_proof",
                "set_transitions",
                "validator_set",
                "certificate"
            ]
        );
    }
}

#[test]
fn three_of_four_equal_validators_is_enough() {
    let c = committed(CHAIN, &validator_keys(), &[0, 2, 3]);
    let id = c.block.txs[1].id();
    assert!(check_against_chain(&id, &Sent::of(&c, 1).decode().expect("decodes")).ok());
}

#[test]
fn altered_tx_bytes_fail_the_id_check() {
    let c = honest();
    let id = c.block.txs[2].id();
    let mut sent = Sent::of(&c, 2);
    let mut bytes = hex::decode(&sent.tx_hex).expect("hex");
    // The amount's low byte: 4-byte length + chain id + two 32-byte keys.
    let amount_at = 4 + CHAIN.len() + 64;
    bytes[amount_at] ^= 0x01;
    sent.tx_hex = hex::encode(&bytes);
    let report = check_against_chain(&id, &sent.decode().expect("still canonical"));
    assert!(!report.ok());
    assert_eq!(failed(&report), ["tx_id", "tx_signature"]);
}

#[test]
fn another_transaction_of_the_same_block_fails_the_id_check() {
    let c = honest();
    let id = c.block.txs[2].id();
    let mut sent = Sent::of(&c, 2);
    sent.tx_hex = hex::encode(c.block.txs[3].encode());
    let report = check_against_chain(&id, &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["tx_id"]);
}

#[test]
fn flipped_proof_sibling_fails_the_merkle_check() {
    let c = honest();
    let id = c.block.txs[1].id();
    let mut sent = Sent::of(&c, 1);
    assert!(!sent.proof.siblings.is_empty());
    sent.proof.siblings[0].0[0] ^= 0x80;
    let report = check_against_chain(&id, &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["merkle_proof"]);
}

#[test]
fn proof_for_another_position_fails_the_merkle_check() {
    let c = honest();
    let id = c.block.txs[1].id();
    let mut sent = Sent::of(&c, 1);
    sent.proof = merkle::prove(&c.block.tx_ids(), 0).expect("in range");
    let report = check_against_chain(&id, &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["merkle_proof"]);
}

#[test]
fn wrong_leaf_count_fails_even_when_the_path_fits() {
    // Leaf 0 of a 5-leaf tree has three right-hand siblings, exactly like leaf 0 of a 6-, 7- or 8-leaf
    // tree: the path alone verifies for the wrong size. That is why the leaf count is checked against the
    // header's tx_count.
    let c = honest();
    let ids = c.block.tx_ids();
    let root = merkle::root(&ids);
    let id = ids[0];
    let mut sent = Sent::of(&c, 0);
    sent.proof.leaf_count = N_TXS as u32 + 1;
    assert!(sent.proof.verify(&root, &id), "the path alone fits 6 leaves too");
    let report = check_against_chain(&id, &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["proof_leaf_count"]);

    // A size the path does not fit fails both checks.
    let mut sent = Sent::of(&c, 4);
    sent.proof.leaf_count = N_TXS as u32 + 1;
    let report = check_against_chain(&ids[4], &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["proof_leaf_count", "merkle_proof"]);
}

#[test]
fn header_from_another_chain_fails() {
    // Same validators and sender keys, another chain id: a complete, internally valid block and certificate.
    let other = committed("other-chain", &validator_keys(), &[0, 1, 2, 3]);
    let id = other.block.txs[0].id();
    let report = check_against_chain(&id, &Sent::of(&other, 0).decode().expect("decodes"));
    let f = failed(&report);
    assert!(f.contains(&"header_chain"), "{report:?}");
    assert!(f.contains(&"tx_chain"), "{report:?}");
    // Votes are signed for a chain id, so the other chain's certificate does not verify for this one.
    assert!(f.contains(&"certificate"), "{report:?}");
}

#[test]
fn header_of_another_chain_with_a_certificate_for_this_chain_still_fails() {
    // A node that re-signs (it would need the validators' keys) still cannot hide the header's chain id.
    let other = committed("other-chain", &validator_keys(), &[0, 1, 2, 3]);
    let cert = certificate(CHAIN, &validator_keys(), &[0, 1, 2, 3], other.block.height(), other.block.hash());
    let c = Committed { block: other.block, cert };
    let id = c.block.txs[0].id();
    let report = check_against_chain(&id, &Sent::of(&c, 0).decode().expect("decodes"));
    assert_eq!(failed(&report), ["tx_chain", "header_chain"]);
}

#[test]
fn certificate_signed_by_non_validators_fails() {
    let c = committed(CHAIN, &outsider_keys(), &[0, 1, 2, 3]);
    let id = c.block.txs[0].id();
    let report = check_against_chain(&id, &Sent::of(&c, 0).decode().expect("decodes"));
    assert_eq!(failed(&report), ["certificate"]);
    let detail = &report.check("certificate").expect("present").detail;
    assert!(detail.contains("does not verify"), "{detail}");
}

#[test]
fn certificate_with_too_little_power_fails() {
    let c = committed(CHAIN, &validator_keys(), &[1, 3]);
    let id = c.block.txs[0].id();
    let report = check_against_chain(&id, &Sent::of(&c, 0).decode().expect("decodes"));
    assert_eq!(failed(&report), ["certificate"]);
    let detail = &report.check("certificate").expect("present").detail;
    assert!(detail.contains("20 of 40"), "{detail}");
}

#[test]
fn certificate_for_another_block_fails() {
    let c = honest();
    let other = Hash::digest(ledger_core::Domain::BlockHeader, b"another block");
    let cert = certificate(CHAIN, &validator_keys(), &[0, 1, 2, 3], c.block.height(), other);
    let c = Committed { block: c.block, cert };
    let id = c.block.txs[0].id();
    let report = check_against_chain(&id, &Sent::of(&c, 0).decode().expect("decodes"));
    assert_eq!(failed(&report), ["certificate"]);
}

#[test]
fn header_at_another_height_than_claimed_fails() {
    let c = honest();
    let id = c.block.txs[0].id();
    let mut sent = Sent::of(&c, 0);
    sent.height = 2;
    let report = check_against_chain(&id, &sent.decode().expect("decodes"));
    assert_eq!(failed(&report), ["header_height"]);
}

#[test]
fn undecodable_evidence_is_refused() {
    let c = honest();
    let mut sent = Sent::of(&c, 0);
    sent.header_hex.push_str("00");
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "header_hex", .. })));

    let mut sent = Sent::of(&c, 0);
    sent.cert_hex = "zz".into();
    assert!(matches!(sent.decode(), Err(EvidenceError::BadHex { field: "certificate_hex" })));

    let mut sent = Sent::of(&c, 0);
    sent.tx_hex = "00".repeat(5000);
    assert!(matches!(sent.decode(), Err(EvidenceError::Decode { field: "tx_hex", .. })));
}

#[test]
fn an_empty_report_is_not_ok() {
    assert!(!Report { checks: Vec::new() }.ok());
}

// ---------------------------------------------------------------------------------------------------------
// `wallet verify` end to end against a canned node: a real HTTP server on 127.0.0.1 port 0 whose answers
// are built from the real block and certificate above (tampered where the test says so).

mod canned_node {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    /// Serve `routes` (path → (HTTP status, JSON body)) until the test process exits; returns the base URL.
    pub fn serve(routes: HashMap<String, (u16, String)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
                // Skip the headers; the wallet's GETs have no body.
                let mut line = String::new();
                while reader.read_line(&mut line).map(|n| n > 2).unwrap_or(false) {
                    line.clear();
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_string();
                let (status, body) = routes
                    .get(&path)
                    .cloned()
                    .unwrap_or((404, r#"{"error": {"code": "not_found", "message": "no such route"}}"#.to_string()));
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        url
    }
}

/// Routes a node would serve for tx `index` of `c`, with `sent` as the evidence.
fn routes_for(c: &Committed, index: usize, sent: &Sent) -> std::collections::HashMap<String, (u16, String)> {
    let tx = &c.block.txs[index];
    let id = tx.id().to_hex();
    let hash = c.block.hash().to_hex();
    let mut routes = std::collections::HashMap::new();
    let tx_doc = serde_json::json!({
        "id": id, "status": "committed", "height": sent.height, "index": index, "block_hash": hash,
        "proof": sent.proof, "tx": tx.tx(), "tx_hex": sent.tx_hex,
    });
    routes.insert(format!("/txs/{id}"), (200, tx_doc.to_string()));
    let block_doc = serde_json::json!({
        "height": sent.height, "hash": hash, "header": c.block.header, "header_hex": sent.header_hex,
        "txs": [], "signers": [], "last_commit": null,
    });
    routes.insert(format!("/blocks/{}", sent.height), (200, block_doc.to_string()));
    let commit_doc = serde_json::json!({
        "height": sent.height, "round": 0, "block_hash": hash, "signatures": c.cert.signatures,
        "certificate_hex": sent.cert_hex,
    });
    routes.insert(format!("/blocks/{}/commit", sent.height), (200, commit_doc.to_string()));
    // No change of the set since genesis.
    routes.insert(
        transitions_path(2),
        (200, serde_json::json!({"transitions": [], "next_from_height": null}).to_string()),
    );
    routes
}

fn transitions_path(from_height: u64) -> String {
    format!("/validators/transitions?from_height={from_height}&limit=16")
}

fn run_verify(url: &str, id: &str, json: bool) -> std::process::Output {
    let dir = tempfile::TempDir::new().expect("tempdir");
    run_verify_in(url, id, json, dir.path())
}

/// `wallet verify` with `state_home` as `XDG_STATE_HOME` (where the default trusted-state file goes).
fn run_verify_in(url: &str, id: &str, json: bool, state_home: &std::path::Path) -> std::process::Output {
    let genesis_path = state_home.join("genesis.json");
    std::fs::write(&genesis_path, genesis(CHAIN).to_json()).expect("write genesis");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wallet"));
    cmd.env_remove("LEDGER_NODE").env("XDG_STATE_HOME", state_home).args(["--node", url]);
    if json {
        cmd.args(["--output", "json"]);
    }
    cmd.args(["verify", id, "--genesis"]).arg(&genesis_path);
    cmd.output().expect("run wallet")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn cli_verify_passes_for_honest_evidence_and_prints_each_check() {
    let c = honest();
    let sent = Sent::of(&c, 3);
    let url = canned_node::serve(routes_for(&c, 3, &sent));
    let id = c.block.txs[3].id().to_hex();

    let o = run_verify(&url, &id, false);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", text(&o.stderr));
    let out = text(&o.stdout);
    for check in ["tx_id", "header_chain", "proof_leaf_count", "merkle_proof", "certificate"] {
        assert!(out.lines().any(|l| l.starts_with("ok") && l.contains(check)), "{check} missing: {out}");
    }

    let o = run_verify(&url, &id, true);
    assert_eq!(o.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_str(&text(&o.stdout)).expect("one JSON document");
    assert_eq!(doc["verified"], true);
    assert_eq!(doc["block_hash"], c.block.hash().to_hex().as_str());
}

#[test]
fn cli_verify_fails_with_exit_5_and_names_the_check() {
    let c = honest();
    let id = c.block.txs[1].id().to_hex();
    let mut sent = Sent::of(&c, 1);
    sent.proof.siblings[0].0[5] ^= 0x01;
    let url = canned_node::serve(routes_for(&c, 1, &sent));
    let o = run_verify(&url, &id, false);
    assert_eq!(o.status.code(), Some(5), "stderr: {}", text(&o.stderr));
    assert!(text(&o.stdout).contains("FAIL merkle_proof"), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("merkle_proof") && err.contains("do not trust"), "{err}");

    let weak = committed(CHAIN, &validator_keys(), &[0, 1]);
    let id = weak.block.txs[0].id().to_hex();
    let url = canned_node::serve(routes_for(&weak, 0, &Sent::of(&weak, 0)));
    let o = run_verify(&url, &id, true);
    assert_eq!(o.status.code(), Some(5));
    let doc: serde_json::Value = serde_json::from_str(&text(&o.stdout)).expect("one JSON document");
    assert_eq!(doc["verified"], false);
    assert!(text(&o.stderr).contains("certificate"), "{}", text(&o.stderr));
}

#[test]
fn cli_verify_of_a_pending_tx_or_a_missing_block() {
    let c = honest();
    let id = c.block.txs[0].id().to_hex();
    let mut routes = routes_for(&c, 0, &Sent::of(&c, 0));
    routes.insert(format!("/txs/{id}"), (200, serde_json::json!({"id": id, "status": "pending"}).to_string()));
    let o = run_verify(&canned_node::serve(routes), &id, false);
    assert_eq!(o.status.code(), Some(5));
    assert!(text(&o.stderr).contains("not committed"), "{}", text(&o.stderr));

    // The node's own error shape comes through with its code and message (exit 7).
    let mut routes = routes_for(&c, 0, &Sent::of(&c, 0));
    routes.remove("/blocks/1");
    let o = run_verify(&canned_node::serve(routes), &id, false);
    assert_eq!(o.status.code(), Some(7), "{}", text(&o.stderr));
    let err = text(&o.stderr);
    assert!(err.contains("not_found") && err.contains("no such route"), "{err}");
}

// ---------------------------------------------------------------------------------------------------------
// Validator-set changes: genesis set A (keys 1-4) → B from height 5 (adds key 5) → C from height 9 (drops
// key 1). Each transition is the header at the height before, naming the old set and the new one, certified
// by the old set's keys; the transaction's block is at height 12, certified by C.

fn key_five() -> Keypair {
    Keypair::from_seed(&[5; 32])
}

fn set_of(keys: &[Keypair]) -> ValidatorSet {
    ValidatorSet::new(
        keys.iter()
            .enumerate()
            .map(|(i, k)| Validator { public_key: k.public(), power: 10, moniker: format!("v{i}") })
            .collect(),
    )
    .expect("valid set")
}

struct SetChain {
    keys_a: Vec<Keypair>,
    keys_b: Vec<Keypair>,
    keys_c: Vec<Keypair>,
    a: ValidatorSet,
    b: ValidatorSet,
    c: ValidatorSet,
}

fn set_chain() -> SetChain {
    let keys_a = validator_keys();
    let mut keys_b = validator_keys();
    keys_b.push(key_five());
    let keys_c: Vec<Keypair> = keys_b[1..].to_vec();
    let (a, b, c) = (set_of(&keys_a), set_of(&keys_b), set_of(&keys_c));
    assert_eq!(a, genesis(CHAIN).validator_set().expect("set"), "A is the genesis set");
    SetChain { keys_a, keys_b, keys_c, a, b, c }
}

/// A header at `height` naming `validators` and `next` (the other fields are a real block's).
fn header_at(height: u64, validators: &ValidatorSet, next: &ValidatorSet) -> ledger_core::BlockHeader {
    let mut header = honest().block.header;
    header.height = Height(height);
    header.validators_hash = validators.hash();
    header.next_validators_hash = next.hash();
    header
}

fn transition_of(
    first_height: u64,
    header: &ledger_core::BlockHeader,
    cert: &CommitCertificate,
    set: &ValidatorSet,
) -> TransitionHex {
    TransitionHex {
        first_height,
        validators_hex: hex::encode(ledger_core::encoding::encode(set)),
        header_hex: hex::encode(ledger_core::encoding::encode(header)),
        certificate_hex: hex::encode(ledger_core::encoding::encode(cert)),
    }
}

/// The honest transition to `new` at `first_height`, certified by `signers` of the set before.
fn transition(
    first_height: u64,
    before: (&[Keypair], &ValidatorSet),
    signers: &[u16],
    new: &ValidatorSet,
) -> TransitionHex {
    let header = header_at(first_height - 1, before.1, new);
    let cert = certificate(CHAIN, before.0, signers, header.height, header.hash());
    transition_of(first_height, &header, &cert, new)
}

fn honest_transitions(ch: &SetChain) -> Vec<TransitionHex> {
    vec![
        transition(5, (&ch.keys_a, &ch.a), &[0, 1, 2], &ch.b),
        transition(9, (&ch.keys_b, &ch.b), &[0, 1, 2, 3], &ch.c),
    ]
}

/// The honest block's transactions, moved to `height` and certified by every key of `set`.
fn block_certified_by(height: u64, keys: &[Keypair], set: &ValidatorSet) -> Committed {
    let mut c = honest();
    c.block.header.height = Height(height);
    c.block.header.validators_hash = set.hash();
    c.block.header.next_validators_hash = set.hash();
    let signers: Vec<u16> = (0..keys.len() as u16).collect();
    c.cert = certificate(CHAIN, keys, &signers, c.block.height(), c.block.hash());
    c
}

fn verify_with(walk: &Walk, c: &Committed) -> Report {
    verify_evidence(&c.block.txs[0].id(), CHAIN, walk, &Sent::of(c, 0).decode().expect("decodes"))
}

fn genesis_start(ch: &SetChain) -> TrustedSet {
    TrustedSet::genesis(ch.a.clone())
}

#[test]
fn a_block_after_two_set_changes_verifies_by_following_them() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &honest_transitions(&ch), Height(12));
    assert_eq!((walk.followed, walk.error.clone()), (2, None));
    assert_eq!((walk.reached.first_height, &walk.reached.set), (Height(9), &ch.c));
    let report = verify_with(&walk, &block);
    assert!(report.ok(), "{report:?}");
    let detail = &report.check("set_transitions").expect("present").detail;
    assert!(detail.contains("followed 2 certified validator-set transitions"), "{detail}");

    // Without the transitions, the genesis set does not certify it: named as such, not passed.
    let report = verify_with(&Walk::new(genesis_start(&ch)), &block);
    assert_eq!(failed(&report), ["validator_set", "certificate"]);
}

#[test]
fn transitions_after_the_block_are_not_followed() {
    let ch = set_chain();
    let block = block_certified_by(6, &ch.keys_b, &ch.b);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &honest_transitions(&ch), Height(6));
    assert_eq!((walk.followed, walk.reached.first_height), (1, Height(5)));
    assert!(verify_with(&walk, &block).ok());
    // A walk that went past the block (given a later transition) cannot vouch for it.
    let past = follow_transitions(CHAIN, genesis_start(&ch), &honest_transitions(&ch), Height(12));
    let report = verify_with(&past, &block);
    assert_eq!(failed(&report), ["validator_set", "certificate"]);
    assert!(report.check("validator_set").expect("present").detail.contains("below height 9"), "{report:?}");
}

#[test]
fn tampered_set_bytes_fail_set_transitions() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    // Key 5 swapped for an outsider's: valid set bytes, certified header, but not the set it names.
    let mut swapped_keys = ch.keys_b.clone();
    swapped_keys[4] = outsider_keys()[0].clone();
    let mut ts = honest_transitions(&ch);
    ts[0].validators_hex = hex::encode(ledger_core::encoding::encode(&set_of(&swapped_keys)));
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert!(matches!(walk.error, Some(TransitionError::SetNotNamed { first_height: 5, .. })), "{:?}", walk.error);
    assert_eq!(walk.followed, 0);
    let report = verify_with(&walk, &block);
    assert_eq!(failed(&report), ["set_transitions", "validator_set", "certificate"]);
    let detail = &report.check("set_transitions").expect("present").detail;
    assert!(detail.contains("transition to height 5") && detail.contains("next set"), "{detail}");

    // A byte flipped inside a key: not even a set (or not the named one); either way the same check fails.
    let mut ts = honest_transitions(&ch);
    let mut bytes = hex::decode(&ts[1].validators_hex).expect("hex");
    bytes[4 + 3] ^= 0x40;
    ts[1].validators_hex = hex::encode(&bytes);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert_eq!(walk.followed, 1);
    assert!(
        matches!(
            walk.error,
            Some(TransitionError::Decode { first_height: 9, field: "validators_hex", .. })
                | Some(TransitionError::SetNotNamed { first_height: 9, .. })
        ),
        "{:?}",
        walk.error
    );
    assert_eq!(failed(&verify_with(&walk, &block)), ["set_transitions", "validator_set", "certificate"]);
}

#[test]
fn a_transition_certified_by_too_little_power_fails() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    let mut ts = honest_transitions(&ch);
    // 3 of B's 5 validators: 30 of 50, not more than 2/3.
    ts[1] = transition(9, (&ch.keys_b, &ch.b), &[0, 1, 4], &ch.c);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert!(
        matches!(
            &walk.error,
            Some(TransitionError::Certificate {
                first_height: 9,
                error: ledger_core::CertError::InsufficientPower { signed: 30, total: 50 }
            })
        ),
        "{:?}",
        walk.error
    );
    assert_eq!((walk.followed, &walk.reached.set), (1, &ch.b));
    assert_eq!(failed(&verify_with(&walk, &block)), ["set_transitions", "validator_set", "certificate"]);

    // Signed by keys outside the trusted set: the same check.
    let mut ts = honest_transitions(&ch);
    let header = header_at(4, &ch.a, &ch.b);
    let cert = certificate(CHAIN, &outsider_keys(), &[0, 1, 2, 3], header.height, header.hash());
    ts[0] = transition_of(5, &header, &cert, &ch.b);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert!(matches!(walk.error, Some(TransitionError::Certificate { first_height: 5, .. })), "{:?}", walk.error);
}

#[test]
fn a_wrong_next_validators_hash_fails() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    // A header certified by A that names C (not B) as the next set, sent with B's bytes.
    let header = header_at(4, &ch.a, &ch.c);
    let cert = certificate(CHAIN, &ch.keys_a, &[0, 1, 2, 3], header.height, header.hash());
    let mut ts = honest_transitions(&ch);
    ts[0] = transition_of(5, &header, &cert, &ch.b);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert_eq!(
        walk.error,
        Some(TransitionError::SetNotNamed {
            first_height: 5,
            set_hash: ch.b.hash(),
            next_validators_hash: ch.c.hash()
        })
    );
    assert_eq!(failed(&verify_with(&walk, &block)), ["set_transitions", "validator_set", "certificate"]);

    // The header of another height than the one before the new set's first.
    let mut ts = honest_transitions(&ch);
    ts[0].first_height = 6;
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts, Height(12));
    assert!(matches!(walk.error, Some(TransitionError::HeaderHeight { first_height: 6, .. })), "{:?}", walk.error);
}

#[test]
fn a_left_out_transition_fails() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    // The first change left out: the second's header names B, which the wallet never reached.
    let ts = honest_transitions(&ch);
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts[1..], Height(12));
    assert!(
        matches!(walk.error, Some(TransitionError::TrustedSetNotNamed { first_height: 9, .. })),
        "{:?}",
        walk.error
    );
    assert_eq!(failed(&verify_with(&walk, &block)), ["set_transitions", "validator_set", "certificate"]);
    // The last change left out: every transition given verifies, but the block names a set not reached.
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &ts[..1], Height(12));
    assert_eq!(walk.error, None);
    let report = verify_with(&walk, &block);
    assert_eq!(failed(&report), ["validator_set", "certificate"]);
    assert!(report.check("validator_set").expect("present").detail.contains("left out a change"), "{report:?}");
    // Out of order, or at or below the trusted set's start: refused.
    let mut backwards = ts.clone();
    backwards.reverse();
    let walk = follow_transitions(CHAIN, genesis_start(&ch), &backwards, Height(12));
    assert!(
        matches!(walk.error, Some(TransitionError::TrustedSetNotNamed { first_height: 9, .. })),
        "{:?}",
        walk.error
    );
}

#[test]
fn a_walk_from_a_trusted_state_needs_only_the_later_transitions() {
    let ch = set_chain();
    let block = block_certified_by(12, &ch.keys_c, &ch.c);
    let start = TrustedSet { first_height: Height(5), set: ch.b.clone(), source: TrustSource::TrustedState };
    let ts = honest_transitions(&ch);
    let walk = follow_transitions(CHAIN, start.clone(), &ts[1..], Height(12));
    assert_eq!((walk.followed, walk.error.clone()), (1, None));
    let report = verify_with(&walk, &block);
    assert!(report.ok(), "{report:?}");
    assert!(report.check("set_transitions").expect("present").detail.contains("trusted-state file"), "{report:?}");
    // A transition at or below where the trusted set starts is not followed.
    let walk = follow_transitions(CHAIN, start, &ts, Height(12));
    assert!(
        matches!(walk.error, Some(TransitionError::NotAfter { first_height: 5, trusted_from: Height(5) })),
        "{:?}",
        walk.error
    );
}

#[test]
fn trusted_state_round_trips_and_refuses_foreign_or_damaged_files() {
    let ch = set_chain();
    let g = genesis(CHAIN);
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("sub").join("trusted.json");
    assert_eq!(trusted::load(&path, CHAIN, &g.hash()), Ok(None), "a missing file is no state");
    let state = TrustedState {
        chain_id: CHAIN.into(),
        genesis_hash: g.hash(),
        trusted: TrustedSet { first_height: Height(9), set: ch.c.clone(), source: TrustSource::Followed },
    };
    trusted::save(&path, &state).expect("saved");
    let loaded = trusted::load(&path, CHAIN, &g.hash()).expect("loads").expect("present");
    assert_eq!((loaded.trusted.first_height, &loaded.trusted.set), (Height(9), &ch.c));
    assert_eq!(loaded.trusted.source, TrustSource::TrustedState);
    let names: Vec<_> =
        std::fs::read_dir(path.parent().expect("dir")).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert_eq!(names.len(), 1, "no temporary file left behind: {names:?}");

    // Another chain's file (another id, or the same id with another genesis) is refused, not used.
    let other = genesis("other-chain");
    assert!(matches!(trusted::load(&path, "other-chain", &other.hash()), Err(TrustedStateError::ForeignChain { .. })));
    assert!(matches!(trusted::load(&path, CHAIN, &other.hash()), Err(TrustedStateError::ForeignChain { .. })));

    // Damage: a flipped hex digit in the set, a wrong hash, not JSON, an unknown format, a huge file.
    let text = std::fs::read_to_string(&path).expect("read");
    let set_hex = hex::encode(ledger_core::encoding::encode(&ch.c));
    let flipped = {
        let mut b = set_hex.clone().into_bytes();
        b[20] = if b[20] == b'0' { b'1' } else { b'0' };
        String::from_utf8(b).expect("ascii")
    };
    let parse = |t: &str| TrustedState::parse(t, &path, CHAIN, &g.hash());
    for bad in [
        text.replace(&set_hex, &flipped),
        text.replace(&ch.c.hash().to_hex(), &ch.b.hash().to_hex()),
        text[..text.len() / 2].to_string(),
        text.replace(trusted::FORMAT, "something else"),
        "x".repeat(trusted::TRUSTED_STATE_BYTES_MAX + 1),
    ] {
        assert!(matches!(parse(&bad), Err(TrustedStateError::Corrupt { .. })), "{:?}", parse(&bad));
    }
    std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
    let err = trusted::load(&path, CHAIN, &g.hash()).expect_err("binary garbage");
    assert!(matches!(err, TrustedStateError::Corrupt { .. }) && err.to_string().contains("delete it"), "{err}");
}

#[test]
fn cli_verify_follows_transitions_and_then_starts_from_its_trusted_state() {
    let ch = set_chain();
    let c = block_certified_by(12, &ch.keys_c, &ch.c);
    let sent = Sent::of(&c, 2);
    let page =
        |ts: &[TransitionHex]| (200, serde_json::json!({"transitions": ts, "next_from_height": null}).to_string());
    let mut routes = routes_for(&c, 2, &sent);
    let ts = honest_transitions(&ch);
    // Two pages: the first names the second.
    routes.insert(
        transitions_path(2),
        (200, serde_json::json!({"transitions": [&ts[0]], "next_from_height": 6}).to_string()),
    );
    routes.insert(transitions_path(6), page(&ts[1..]));
    routes.insert(transitions_path(10), page(&[]));
    let url = canned_node::serve(routes);
    let id = c.block.txs[2].id().to_hex();
    let home = tempfile::TempDir::new().expect("tempdir");

    let o = run_verify_in(&url, &id, false, home.path());
    assert_eq!(o.status.code(), Some(0), "stdout: {} stderr: {}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("transitions followed: 2 (from genesis at height 1)"), "{out}");
    assert!(out.contains("ok   set_transitions"), "{out}");
    let stored_path = default_state_file(home.path());
    let stored = trusted::load(&stored_path, CHAIN, &genesis(CHAIN).hash()).expect("loads").expect("written");
    assert_eq!((stored.trusted.first_height, &stored.trusted.set), (Height(9), &ch.c));

    // The second run asks only for changes after height 9 and follows none.
    let o = run_verify_in(&url, &id, true, home.path());
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stderr));
    let doc: serde_json::Value = serde_json::from_str(&text(&o.stdout)).expect("one JSON document");
    assert_eq!(doc["transitions_followed"], 0, "{doc}");
    assert_eq!(doc["trusted_state"]["started_from"], "trusted_state", "{doc}");
    assert_eq!(doc["validator_set_first_height"], 9, "{doc}");

    // A foreign file given with --trusted-state is a usage error naming it, not a verification.
    let foreign = home.path().join("foreign.json");
    let other = genesis("other-chain");
    let state = TrustedState {
        chain_id: "other-chain".into(),
        genesis_hash: other.hash(),
        trusted: TrustedSet::genesis(other.validator_set().expect("set")),
    };
    trusted::save(&foreign, &state).expect("saved");
    let genesis_path = home.path().join("genesis.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_wallet"))
        .env_remove("LEDGER_NODE")
        .args(["--node", &url, "verify", &id, "--genesis"])
        .arg(&genesis_path)
        .arg("--trusted-state")
        .arg(&foreign)
        .output()
        .expect("run wallet");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("belongs to chain \"other-chain\""), "{}", text(&o.stderr));
}

#[test]
fn cli_verify_of_a_tampered_transition_fails_with_exit_5_naming_the_check() {
    let ch = set_chain();
    let c = block_certified_by(12, &ch.keys_c, &ch.c);
    let sent = Sent::of(&c, 0);
    let mut routes = routes_for(&c, 0, &sent);
    let mut ts = honest_transitions(&ch);
    ts[1] = transition(9, (&ch.keys_b, &ch.b), &[0, 1], &ch.c);
    routes.insert(
        transitions_path(2),
        (200, serde_json::json!({"transitions": ts, "next_from_height": null}).to_string()),
    );
    let url = canned_node::serve(routes);
    let home = tempfile::TempDir::new().expect("tempdir");
    let o = run_verify_in(&url, &c.block.txs[0].id().to_hex(), false, home.path());
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    assert!(text(&o.stdout).contains("FAIL set_transitions"), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("set_transitions"), "{}", text(&o.stderr));
    assert!(!default_state_file(home.path()).exists(), "a walk that stopped at a bad transition writes nothing");
}

/// Where `wallet verify` keeps this chain's trusted state under `XDG_STATE_HOME=state_home`.
fn default_state_file(state_home: &std::path::Path) -> std::path::PathBuf {
    state_home.join("ledger-wallet").join(format!("trusted-{CHAIN}-{}.json", &genesis(CHAIN).hash().to_hex()[..16]))
}
