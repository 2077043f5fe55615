//! Equivocation evidence on real `ledgerd` processes: a second process holding validator 3's key (the
//! test's own libp2p peer, `tests::byzantine::spawn_equivocator`) signs two different prevotes for one slot.
//! The honest validators catch it, a proposer commits the evidence, every node serves it at `/evidence`
//! (the same on each, with both signed votes as canonical bytes), and validator 3 is out of the set two
//! blocks later (jailed): its signatures stop appearing in certificates and the chain goes on.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ledger_core::governance::Evidence;
use serde_json::Value;
use tests::byzantine::{ChainInfo, spawn_equivocator, targets};
use tests::harness::{Localnet, wait_for};

const STEP: Duration = Duration::from_secs(90);

fn current_set(net: &Localnet, i: usize) -> Result<Vec<String>> {
    let v = net.nodes[i].api.get("/validators")?.body;
    let list = v["validators"].as_array().ok_or_else(|| anyhow!("no validators in {v}"))?;
    Ok(list.iter().filter_map(|x| x["address"].as_str().map(str::to_string)).collect())
}

#[test]
fn an_equivocating_validator_has_its_evidence_committed_and_is_jailed() -> Result<()> {
    let mut net = Localnet::create(4, 2)?;
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, STEP)?;
    let genesis_text = std::fs::read_to_string(net.dir.join("genesis.json"))?;
    let genesis = ledger_core::Genesis::from_json(&genesis_text).map_err(|e| anyhow!("genesis: {e}"))?;
    let set = genesis.validator_set().map_err(|e| anyhow!("{e}"))?;
    let key_text = std::fs::read_to_string(net.nodes[3].home.join("validator_key.json"))?;
    let key3 = ledger_core::keyfile::from_plaintext_json(&key_text)?;
    let pub3 = key3.public();
    let addr3 = pub3.to_address_string();

    let chain = ChainInfo::new(&genesis, net.nodes[0].api.height()?);
    let (stop, attacker) = spawn_equivocator(chain, targets(&net.manifest, &[0, 1, 2])?, key3);
    let found = wait_for("evidence at /evidence on node 0", STEP, || {
        let page = net.nodes[0].api.get("/evidence")?.body;
        Ok(page["evidence"].as_array().filter(|a| !a.is_empty()).map(|a| a[0].clone()))
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = attacker.join().map_err(|_| anyhow!("equivocator thread panicked"))??;
    let first = found.with_context(|| {
        let lines: Vec<String> = (0..4).flat_map(|i| net.nodes[i].log_lines("evidence")).take(20).collect();
        format!("equivocator: {report:?}\nlog lines on evidence: {lines:#?}\n{}", net.diagnostics(&[0, 1]))
    })?;
    eprintln!("equivocator: {report:?}; committed evidence: {first}");

    // The evidence names validator 3, and its bytes are two valid, conflicting votes of validator 3.
    assert_eq!(first["validator"].as_str(), Some(addr3.as_str()), "{first}");
    let bytes = hex::decode(first["evidence_hex"].as_str().unwrap_or_default())?;
    let evidence: Evidence = ledger_core::encoding::decode(&bytes, 4096).map_err(|e| anyhow!("decode: {e}"))?;
    assert_eq!(evidence.first.vote.validator, pub3);
    assert_ne!(evidence.first.vote.block_hash, evidence.second.vote.block_hash);
    assert_eq!(
        (evidence.first.vote.height, evidence.first.vote.round),
        (evidence.second.vote.height, evidence.second.vote.round)
    );
    evidence.first.verify(&genesis.chain_id, &set).map_err(|e| anyhow!("first vote: {e}"))?;
    evidence.second.verify(&genesis.chain_id, &set).map_err(|e| anyhow!("second vote: {e}"))?;
    let carried = first["block_height"].as_u64().ok_or_else(|| anyhow!("no block_height: {first}"))?;
    let block = net.nodes[0].api.get(&format!("/blocks/{carried}"))?.body;
    assert!(
        block["evidence_hex"].as_array().is_some_and(|a| a.iter().any(|e| e == &first["evidence_hex"])),
        "the block view carries it: {block}"
    );

    // Jailed two blocks after the block that carries it, on every honest node.
    let activation = carried + 2;
    net.wait_all(&[0, 1, 2], activation + 1, STEP)?;
    for i in 0..3 {
        let v = net.nodes[i].api.get("/validators")?.body;
        assert!(v["jailed"].as_array().is_some_and(|j| j.iter().any(|a| a.as_str() == Some(addr3.as_str()))), "{v}");
        assert!(!current_set(&net, i)?.contains(&addr3), "node {i} still has validator 3 in its set");
    }
    // Every node serves the same evidence (the equivocator may have been caught at more than one height
    // before it stopped), the first one found among it.
    let ids = |i: usize| -> Result<Vec<Value>> {
        let page = net.nodes[i].api.get("/evidence?limit=100")?.body;
        Ok(page["evidence"].as_array().map(|a| a.iter().map(|e| e["id"].clone()).collect()).unwrap_or_default())
    };
    let on_0 = ids(0)?;
    assert!(on_0.contains(&first["id"]), "{on_0:?}");
    for i in 1..3 {
        assert_eq!(ids(i)?, on_0, "node {i} serves other evidence than node 0");
    }
    let hash_at = |h: u64| -> Result<Value> {
        Ok(net.nodes[0].api.get(&format!("/blocks/{h}"))?.body["header"]["validators_hash"].clone())
    };
    assert_ne!(hash_at(activation - 1)?, hash_at(activation)?, "the set changes at height {activation}");
    let tip = net.nodes[0].api.height()?;
    for h in activation..tip {
        let c = net.nodes[0].api.get(&format!("/blocks/{h}/commit"))?.body;
        assert!(!c.to_string().contains(&addr3), "validator 3 signed at {h}, after it was jailed: {c}");
    }

    // The chain goes on without it.
    let tx = net.transfer(0, 0, 1, 7)?;
    net.nodes[0].api.submit(&tx.encode())?;
    net.wait_committed(0, &tx.id().to_hex(), STEP).with_context(|| net.diagnostics(&[0, 1, 2]))?;

    // Paging and bad cursors.
    let all = net.nodes[0].api.get("/evidence?limit=100")?.body;
    let n = all["evidence"].as_array().map_or(0, Vec::len);
    let one = net.nodes[0].api.get("/evidence?limit=1")?.body;
    assert_eq!(one["evidence"].as_array().map(Vec::len), Some(1));
    assert_eq!(one["next"].is_string(), n > 1, "{one}");
    if let Some(next) = one["next"].as_str() {
        let rest = net.nodes[0].api.get(&format!("/evidence?limit=100&before={next}"))?.body;
        assert_eq!(rest["evidence"].as_array().map(Vec::len), Some(n - 1), "{rest}");
    }
    for bad in ["before=abc", "before=1", "limit=0", "before=1:999999"] {
        let answer = net.nodes[0].api.get(&format!("/evidence?{bad}"))?;
        assert_eq!(answer.status, 400, "{bad}: {:?}", answer.body);
        assert_eq!(answer.body["error"]["code"].as_str(), Some("bad_query"), "{bad}: {:?}", answer.body);
    }
    Ok(())
}
