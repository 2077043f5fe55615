//! Validator-set changes on real `ledgerd` processes: a 4-validator localnet adds a fifth validator (its node
//! runs from the start as a follower with a key outside the set, and signs once the change applies), then
//! removes one of the original four (its votes stop counting, the chain goes on), then rotates another's key
//! while its node runs (it signs with the new key from the activation height, without a restart), while
//! transfers keep committing; every node holds the same chain, and a full node started afterwards syncs all
//! of it. `wallet verify` of a transfer committed after the three changes passes from the genesis file alone
//! by following the three certified set transitions, a second run starts from its trusted-state file, and a
//! node that alters a transition (a key swapped in the set's bytes, a certificate cut short) is caught.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tests::harness::{Localnet, run_ledgerd, tampering_proxy, wait_for, wallet_bin};

const STEP: Duration = Duration::from_secs(90);

fn run_wallet(node: &str, args: &[&str]) -> Result<(Option<i32>, String, String)> {
    let out = Command::new(wallet_bin()?)
        .args(["--output", "json", "--node", node])
        .args(args)
        .output()
        .context("running wallet")?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    Ok((out.status.code(), text(&out.stdout), text(&out.stderr)))
}

fn json(stdout: &str) -> Result<Value> {
    serde_json::from_str(stdout).with_context(|| format!("stdout is not one JSON document: {stdout:?}"))
}

/// Run the wallet with `--output json` against `node`: its exit code, its one JSON document and stderr.
fn wallet_exit(node: &str, args: &[&str]) -> Result<(i32, Value, String)> {
    let (code, stdout, stderr) = run_wallet(node, args)?;
    Ok((code.unwrap_or(-1), json(&stdout)?, stderr))
}

/// Run the wallet with `--output json` against `node`; the JSON document, or why it failed.
fn wallet(node: &str, args: &[&str]) -> Result<Value> {
    let (code, stdout, stderr) = run_wallet(node, args)?;
    if code != Some(0) {
        bail!("wallet {args:?} exited {code:?}: {stdout} {stderr}");
    }
    json(&stdout)
}

fn key_file(net: &Localnet, i: usize) -> PathBuf {
    net.nodes[i].home.join("validator_key.json")
}

/// The addresses of node `i`'s current validator set (`GET /validators`).
fn current_set(net: &Localnet, i: usize) -> Result<Vec<String>> {
    let v = net.nodes[i].api.get("/validators")?.body;
    let list = v["validators"].as_array().ok_or_else(|| anyhow!("no validators in {v}"))?;
    Ok(list.iter().filter_map(|x| x["address"].as_str().map(str::to_string)).collect())
}

/// Wait until node `i` holds a certificate (at a height from `from`) that `address` signed. A certificate
/// closes at more than 2/3 of the power, so another node's may leave out a late precommit; `i` is the signer's
/// own node, whose certificates carry its precommit whenever it arrived in time to count.
fn wait_signed(net: &Localnet, i: usize, address: &str, from: u64) -> Result<u64> {
    let api = net.nodes[i].api.clone();
    wait_for(&format!("a certificate signed by {address}"), STEP, || {
        let tip = api.height()?;
        for h in from..tip {
            let c = api.get(&format!("/blocks/{h}/commit"))?.body;
            let signed =
                c["signatures"].as_array().is_some_and(|s| s.iter().any(|x| x["validator"].as_str() == Some(address)));
            if signed {
                return Ok(Some(h));
            }
        }
        Ok(None)
    })
}

/// Propose a change through node 0 (`args` after `wallet validator`), approve it with the keys of
/// `approvers`, each through its own node; the change id.
fn change(net: &Localnet, propose: &[&str], approvers: &[usize]) -> Result<String> {
    let api0 = net.nodes[0].api.base.clone();
    let mut args = vec!["validator"];
    args.extend_from_slice(propose);
    let doc = wallet(&api0, &args)?;
    let hex = doc["change_hex"].as_str().ok_or_else(|| anyhow!("no change_hex: {doc}"))?.to_string();
    for &i in approvers {
        let key = key_file(net, i).display().to_string();
        let answer = wallet(net.nodes[i].api.base.as_str(), &["validator", "approve", &hex, "--key", &key])?;
        if answer["change_id"] != doc["change_id"] {
            bail!("approval answered for another change: {answer}");
        }
    }
    Ok(doc["change_id"].as_str().unwrap_or_default().to_string())
}

#[test]
fn n4_adds_a_fifth_validator_then_removes_one_while_transfers_commit() -> Result<()> {
    let mut net = Localnet::create(4, 2)?;
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, STEP)?;
    // The fifth node: a fresh home with its own validator key, which no set holds yet.
    let fifth = net.add_node_keeping_key()?;
    net.start(fifth)?;
    let new_address =
        wallet(net.nodes[0].api.base.as_str(), &["address", "--key", &key_file(&net, fifth).display().to_string()])
            .ok()
            .and_then(|d| d["address"].as_str().map(str::to_string))
            .ok_or_else(|| anyhow!("no address for the fifth key"))?;
    let status = net.nodes[fifth].api.status()?;
    assert!(
        status["validator_reason"].as_str().is_some_and(|r| r.contains("not in the current validator set")),
        "{status}"
    );

    // Approvals from two of four (half the power) change nothing.
    let key5 = key_file(&net, fifth).display().to_string();
    let add = ["propose-add", "--new-key", key5.as_str(), "--power", "10", "--moniker", "fifth"];
    let id = change(&net, &add, &[0, 1])?;
    let h = net.nodes[0].api.height()?;
    net.wait_all(&[0, 1, 2, 3], h + 4, STEP)?;
    assert_eq!(current_set(&net, 0)?.len(), 4, "two of four approvals must not change the set");
    let pending = net.nodes[0].api.get("/validators")?.body;
    assert!(pending["pending_changes"].to_string().contains(&id), "the change is pending: {pending}");

    // The third approval makes the quorum; the set of every node grows to five, and the fifth signs.
    let tx = net.transfer(0, 0, 1, 5)?;
    net.nodes[0].api.submit(&tx.encode())?;
    let doc = wallet(net.nodes[2].api.base.as_str(), &["validator", "show"])?;
    assert!(doc["pending_changes"][0]["approvers"].as_array().is_some_and(|a| a.len() == 2), "{doc}");
    approve_pending(&net, 2)?;
    wait_for("five validators on every node", STEP, || {
        let all = (0..=fifth).map(|i| current_set(&net, i).map(|s| s.len())).collect::<Result<Vec<_>>>()?;
        Ok(all.iter().all(|n| *n == 5).then_some(()))
    })
    .with_context(|| net.diagnostics(&[0, fifth]))?;
    let from = net.nodes[0].api.height()?;
    wait_signed(&net, fifth, &new_address, from).with_context(|| net.diagnostics(&[fifth]))?;
    net.wait_committed(0, &tx.id().to_hex(), STEP)?;

    // Remove node 3: four approvals of five (more than 2/3 of the power).
    let removed = net.manifest.nodes[3].validator.to_address_string();
    change(&net, &["validator", "propose-remove", "--validator", &removed][1..], &[0, 1, 2, fifth])?;
    wait_for("node 3 out of the set", STEP, || Ok((!current_set(&net, 0)?.contains(&removed)).then_some(())))
        .with_context(|| net.diagnostics(&[0]))?;
    // The chain goes on without it: stop node 3 and commit a transfer.
    net.stop(3, Duration::from_secs(20))?;
    let tx = net.transfer(0, 1, 0, 3)?;
    net.nodes[0].api.submit(&tx.encode())?;
    net.wait_committed(0, &tx.id().to_hex(), STEP).with_context(|| net.diagnostics(&[0, 1, 2, fifth]))?;

    // Rotate node 1's key while it runs: `ledgerd next-key` writes the new key beside the old one, the old key
    // approves among the others, and the node switches keys by itself at the activation height.
    let home1 = net.nodes[1].home.clone();
    let made = run_ledgerd(&["next-key", "--home", &home1.display().to_string()], &[], Duration::from_secs(30))?;
    assert!(made.success(), "ledgerd next-key: {made:?}");
    let new1 = made
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("next key:").map(|a| a.trim().to_string()))
        .ok_or_else(|| anyhow!("no next key printed: {made:?}"))?;
    let again = run_ledgerd(&["next-key", "--home", &home1.display().to_string()], &[], Duration::from_secs(30))?;
    assert!(!again.success() && again.stderr.contains("refusing to overwrite"), "a second next-key: {again:?}");
    let old1 = net.manifest.nodes[1].validator.to_address_string();
    let next_file = home1.join("next_validator_key.json").display().to_string();
    change(&net, &["propose-rotate", "--old", &old1, "--new-key", &next_file], &[0, 1, 2, fifth])?;
    wait_for("node 1's new key in the set", STEP, || {
        let set = current_set(&net, 0)?;
        Ok((set.contains(&new1) && !set.contains(&old1)).then_some(()))
    })
    .with_context(|| net.diagnostics(&[0, 1]))?;
    // The switch happened between two heights: the new key's signer state (its own file) starts with a floor
    // at the last height of the old key, and the old key's file last signed at that height.
    let signer_doc = |name: &str| -> Result<Value> {
        let text = std::fs::read_to_string(home1.join("data").join(name)).with_context(|| format!("reading {name}"))?;
        Ok(serde_json::from_str(&text)?)
    };
    // Node 1 may still be a height or two behind node 0.
    let next_state = wait_for("node 1 signing with the new key", STEP, || {
        Ok(signer_doc("next_signer_state.json").ok().filter(|d| d["last_signed"].is_object()))
    })
    .with_context(|| net.diagnostics(&[1]))?;
    assert_eq!(next_state["validator"].as_str(), Some(new1.as_str()), "{next_state}");
    let last_old = next_state["sign_floor"].as_u64().ok_or_else(|| anyhow!("no floor: {next_state}"))?;
    let activation = last_old + 1;
    let old_state = signer_doc("signer_state.json")?;
    assert_eq!(old_state["validator"].as_str(), Some(old1.as_str()));
    assert!(
        old_state["last_signed"]["height"].as_u64().is_some_and(|h| h <= last_old),
        "the old key signed nothing after height {last_old}: {old_state}"
    );
    net.wait_height(0, activation, STEP)?;
    let set_hash = |h: u64| -> Result<String> {
        let b = net.nodes[0].api.get(&format!("/blocks/{h}"))?.body;
        b["header"]["validators_hash"].as_str().map(str::to_string).ok_or_else(|| anyhow!("no validators_hash: {b}"))
    };
    assert_ne!(set_hash(last_old)?, set_hash(activation)?, "the set changes at height {activation}");
    // The new key signs from the activation height on (node 1's own certificates), the old key never after.
    let signed_new = wait_signed(&net, 1, &new1, activation).with_context(|| net.diagnostics(&[1]))?;
    assert!(signed_new <= activation + 2, "the new key first signed at {signed_new}, activation {activation}");
    eprintln!("rotation: activation at height {activation}; the new key's first certificate on its node: {signed_new}");
    let tip = net.nodes[1].api.height()?;
    for h in activation..tip {
        let c = net.nodes[1].api.get(&format!("/blocks/{h}/commit"))?.body;
        assert!(!c.to_string().contains(&old1), "the old key signed at {h}, after the rotation: {c}");
    }
    let status = net.nodes[1].api.status()?;
    assert_eq!(status["validator"].as_str(), Some(new1.as_str()), "{status}");
    let tx = net.transfer(0, 0, 1, 2)?;
    net.nodes[1].api.submit(&tx.encode())?;
    net.wait_committed(1, &tx.id().to_hex(), STEP).with_context(|| net.diagnostics(&[0, 1, 2, fifth]))?;
    verify_across_the_changes(&net, &tx.id().to_hex())?;
    assert!(net.evidence_lines().is_empty(), "no double-sign anywhere: {:?}", net.evidence_lines());

    // Every running node holds the same chain, and a full node from genesis syncs across all three changes.
    let tip = net.nodes[0].api.height()?;
    net.wait_all(&[0, 1, 2, fifth], tip, STEP)?;
    net.assert_same_chain(&[0, 1, 2, fifth], tip)?;
    let full = net.add_full_node()?;
    net.start(full)?;
    net.wait_height(full, tip, STEP).with_context(|| net.diagnostics(&[full]))?;
    net.assert_same_chain(&[0, full], tip)?;
    assert_eq!(current_set(&net, full)?.len(), 4);
    Ok(())
}

/// Approve every change pending on node 0 with node `i`'s key, through node `i`.
fn approve_pending(net: &Localnet, i: usize) -> Result<()> {
    let doc = net.nodes[0].api.get("/validators")?.body;
    let hexes: Vec<String> = doc["pending_changes"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["change_hex"].as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    if hexes.is_empty() {
        bail!("no pending change with its bytes: {doc}");
    }
    let key = key_file(net, i).display().to_string();
    for hex in hexes {
        wallet(net.nodes[i].api.base.as_str(), &["validator", "approve", &hex, "--key", &key])?;
    }
    Ok(())
}

/// `wallet verify` of `id`, committed after both set changes, from the genesis file: it follows the two
/// transitions (add, then remove), keeps the set reached, and starts from it the next time; through a node
/// that alters a transition it fails with exit 5 naming `set_transitions`.
fn verify_across_the_changes(net: &Localnet, id: &str) -> Result<()> {
    let node = net.nodes[0].api.base.clone();
    let genesis = net.dir.join("genesis.json").display().to_string();
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("trusted.json").display().to_string();
    let verify = ["verify", id, "--genesis", genesis.as_str(), "--trusted-state", state.as_str()];

    let first = wallet(&node, &verify)?;
    assert_eq!(first["verified"], true, "{first}");
    assert_eq!(first["transitions_followed"], 3, "the add, the remove and the rotation: {first}");
    assert_eq!(first["trusted_state"]["started_from"], "genesis", "{first}");
    assert_eq!(first["trusted_state"]["updated"], true, "{first}");
    let checks = first["checks"].as_array().ok_or_else(|| anyhow!("no checks: {first}"))?;
    assert!(checks.iter().any(|c| c["name"] == "set_transitions" && c["ok"] == true), "{first}");
    let set_from = first["validator_set_first_height"].as_u64().unwrap_or(0);
    assert!(set_from > 1 && set_from <= first["height"].as_u64().unwrap_or(0), "{first}");

    let second = wallet(&node, &verify)?;
    assert_eq!(second["verified"], true, "{second}");
    assert_eq!(second["transitions_followed"], 0, "{second}");
    assert_eq!(second["trusted_state"]["started_from"], "trusted_state", "{second}");
    assert_eq!(second["trusted_state"]["start_height"], set_from, "{second}");

    // Lying nodes, checked from the genesis file alone (a trusted state past the changes would not ask for
    // the altered transitions at all).
    let from_genesis = ["verify", id, "--genesis", genesis.as_str(), "--no-trusted-state"];
    let swapped_key = tampering_proxy(node.clone(), |path, body| {
        if !path.starts_with("/validators/transitions") {
            return;
        }
        let Some(t) = body["transitions"].get_mut(0) else { return };
        let bytes = hex::decode(t["validators_hex"].as_str().unwrap_or_default()).unwrap_or_default();
        if let Ok(mut members) = ledger_core::encoding::decode::<Vec<ledger_core::Validator>>(&bytes, 1 << 20) {
            members[0].public_key = ledger_core::Keypair::from_seed(&[0xee; 32]).public();
            t["validators_hex"] = Value::String(hex::encode(ledger_core::encoding::encode(&members)));
        }
    })?;
    let cut_certificate = tampering_proxy(node.clone(), |path, body| {
        if !path.starts_with("/validators/transitions") {
            return;
        }
        let Some(t) = body["transitions"].get_mut(1) else { return };
        let bytes = hex::decode(t["certificate_hex"].as_str().unwrap_or_default()).unwrap_or_default();
        if let Ok(mut cert) = ledger_core::encoding::decode::<ledger_core::CommitCertificate>(&bytes, 1 << 20) {
            cert.signatures.truncate(1);
            t["certificate_hex"] = Value::String(hex::encode(ledger_core::encoding::encode(&cert)));
        }
    })?;
    for (liar, what) in [(swapped_key, "a key swapped in the first new set"), (cut_certificate, "one signature")] {
        let (code, doc, err) = wallet_exit(&liar, &from_genesis)?;
        assert_eq!((code, &doc["verified"]), (5, &Value::Bool(false)), "{what}: {doc} {err}");
        assert!(err.contains("set_transitions"), "{what}: {err}");
        let check = doc["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "set_transitions"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(check["ok"], false, "{what}: {doc}");
    }
    // The honest node still verifies from genesis alone, without a state file.
    let honest = wallet(&node, &from_genesis)?;
    assert_eq!(
        (honest["verified"].clone(), honest["transitions_followed"].clone()),
        (Value::Bool(true), Value::from(3))
    );
    Ok(())
}
