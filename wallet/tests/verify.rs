//! The pure verification of `wallet verify`, on real blocks built with `ledger_core::state::build_block`
//! and real certificates signed by validator keys, honest and tampered.

use ledger_core::block::PROTOCOL_VERSION;
use ledger_core::merkle::{self, MerkleProof};
use ledger_core::state::{BlockTemplate, build_block};
use ledger_core::{
    Block, CommitCertificate, CommitSig, ConsensusParams, Genesis, GenesisAccount, Hash, Height, Keypair, Round,
    SignedTransaction, Transaction, Validator, ValidatorSet, Vote, VoteKind,
};
use wallet_cli::verify::{Evidence, EvidenceError, Report, decode_evidence, verify_evidence};

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
    let built = build_block(&store, store.lthash(), &gov, template, &g.params, txs, &|_| false).expect("build");
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
    verify_evidence(id, CHAIN, &set, evidence)
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
    routes
}

fn run_verify(url: &str, id: &str, json: bool) -> std::process::Output {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let genesis_path = dir.path().join("genesis.json");
    std::fs::write(&genesis_path, genesis(CHAIN).to_json()).expect("write genesis");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wallet"));
    cmd.env_remove("LEDGER_NODE").args(["--node", url]);
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
