//! Authenticated state against a real localnet of `ledgerd` processes: after transfers made with the real
//! `wallet` binary, `wallet balance ADDRESS --verify --genesis G` proves a present account's balance and
//! nonce (what the transfers imply) and an absent account's absence, from the genesis file alone and from a
//! trusted-state file; through a proxy that lies it fails with exit code 5 naming the failed check: an
//! altered balance, altered proof bytes, or the header of another height.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::Genesis;
use serde_json::Value;
use tests::harness::{Localnet, tampering_proxy, wallet_bin};

/// Run the wallet with `--output json` against `node`: its exit code, its one JSON document and stderr.
fn wallet<S: AsRef<std::ffi::OsStr>>(node: &str, args: &[S]) -> Result<(i32, Value, String)> {
    let out = Command::new(wallet_bin()?)
        .args(["--output", "json", "--node", node])
        .args(args)
        .output()
        .context("running wallet")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let doc: Value =
        serde_json::from_str(&stdout).with_context(|| format!("stdout is not one JSON document: {stdout:?}"))?;
    Ok((out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).to_string()))
}

fn ok<S: AsRef<std::ffi::OsStr> + std::fmt::Debug>(node: &str, args: &[S]) -> Result<Value> {
    let (code, doc, err) = wallet(node, args)?;
    if code != 0 {
        bail!("wallet {args:?} exited {code}: {doc} {err}");
    }
    Ok(doc)
}

/// The names of the checks that failed in a result document.
fn failed_checks(doc: &Value) -> Vec<String> {
    doc["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["ok"] == false).filter_map(|c| c["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// The header of another height than the proof's, for the proxy that swaps it in.
static OTHER_HEADER: OnceLock<String> = OnceLock::new();

fn is_proof(path: &str) -> bool {
    path.starts_with("/accounts/") && path.ends_with("/proof")
}

#[test]
fn verified_balances_on_a_real_localnet() -> Result<()> {
    let mut net = Localnet::create(4, 2)?;
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, Duration::from_secs(60))?;
    let node = net.nodes[0].api.base.clone();
    let genesis_path = net.dir.join("genesis.json");
    let genesis_file = genesis_path.display().to_string();
    let genesis = Genesis::from_json(&std::fs::read_to_string(&genesis_path)?)?;
    let fee = genesis.params.min_fee.max(1);

    // Two transfers from dev account 0 to a fresh address, each waited for.
    let dev = &net.manifest.accounts[0];
    let dev_key = dev.key_file.display().to_string();
    let dev_addr = dev.address.to_address_string();
    let dev_start = genesis
        .accounts
        .iter()
        .find(|a| a.address == dev.address)
        .map(|a| a.balance)
        .ok_or_else(|| anyhow!("dev account 0 is not in the genesis file"))?;
    let fresh = ledger_core::Keypair::from_seed(&[0x5a; 32]).public().to_address_string();
    let fee_arg = fee.to_string();
    for amount in ["1200", "34"] {
        let sent = ok(
            &node,
            &["transfer", "--key", &dev_key, "--to", &fresh, "--amount", amount, "--fee", &fee_arg, "--wait"],
        )?;
        assert_eq!(sent["status"], "committed", "{sent}");
    }
    let absent = ledger_core::Keypair::from_seed(&[0xa5; 32]).public().to_address_string();

    // Verified from the genesis file alone: the balances the transfers imply, and an absence.
    let verify = |address: &str| -> Vec<String> {
        ["balance", address, "--verify", "--genesis", genesis_file.as_str(), "--no-trusted-state"]
            .map(String::from)
            .to_vec()
    };
    let v = ok(&node, &verify(&fresh))?;
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!((v["present"].as_bool(), v["balance"].as_u64(), v["nonce"].as_u64()), (Some(true), Some(1234), Some(0)));
    assert!(failed_checks(&v).is_empty(), "{v}");
    let names: Vec<&str> = v["checks"].as_array().into_iter().flatten().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        ["header_chain", "header_height", "set_transitions", "validator_set", "certificate", "state_proof"]
    );
    let v = ok(&node, &verify(&dev_addr))?;
    assert_eq!(
        (v["verified"].as_bool(), v["balance"].as_u64(), v["nonce"].as_u64()),
        (Some(true), Some(dev_start - 1234 - 2 * fee), Some(2)),
        "{v}"
    );
    let v = ok(&node, &verify(&absent))?;
    assert_eq!(
        (v["verified"].as_bool(), v["present"].as_bool(), v["balance"].as_u64()),
        (Some(true), Some(false), Some(0)),
        "{v}"
    );
    // The unverified balance is unchanged, and agrees.
    let plain = ok(&node, &["balance", &fresh])?;
    assert_eq!((plain["balance"].as_u64(), plain.get("verified")), (Some(1234), None), "{plain}");

    // With a trusted-state file: the first run writes it, the next starts from it.
    let tmp = tempfile::tempdir()?;
    let state = tmp.path().join("trusted.json").display().to_string();
    let with_state =
        ["balance", fresh.as_str(), "--verify", "--genesis", genesis_file.as_str(), "--trusted-state", state.as_str()];
    let first = ok(&node, &with_state)?;
    assert_eq!(
        (first["verified"].as_bool(), first["trusted_state"]["updated"].as_bool()),
        (Some(true), Some(true)),
        "{first}"
    );
    let second = ok(&node, &with_state)?;
    assert_eq!(second["trusted_state"]["started_from"], "trusted_state", "{second}");
    assert_eq!(second["verified"], true, "{second}");

    // Lying nodes. The header of height 1 stands in for the proof's (the tip is past it by now).
    let height = v["height"].as_u64().unwrap_or(0);
    assert!(height >= 2, "{v}");
    let block1 = net.nodes[0].api.get("/blocks/1")?;
    let header1 = block1.body["header_hex"].as_str().ok_or_else(|| anyhow!("no header_hex: {}", block1.body))?;
    OTHER_HEADER.set(header1.to_string()).map_err(|_| anyhow!("set twice"))?;
    let more_balance = tampering_proxy(node.clone(), |path, body| {
        if is_proof(path)
            && let Some(b) = body["account"]["balance"].as_u64()
        {
            body["account"]["balance"] = Value::from(b + 1);
        }
    })?;
    let flipped_proof = tampering_proxy(node.clone(), |path, body| {
        if !is_proof(path) {
            return;
        }
        // The first sibling's first byte, after the 4-byte length.
        let mut bytes = hex::decode(body["proof_hex"].as_str().unwrap_or_default()).unwrap_or_default();
        if let Some(b) = bytes.get_mut(4) {
            *b ^= 0x01;
        }
        body["proof_hex"] = Value::String(hex::encode(bytes));
    })?;
    let old_header = tampering_proxy(node.clone(), |path, body| {
        if is_proof(path) {
            body["header_hex"] = Value::String(OTHER_HEADER.get().cloned().unwrap_or_default());
        }
    })?;
    for (liar, what, expected) in [
        (&more_balance, "balance + 1", vec!["state_proof"]),
        (&flipped_proof, "a proof byte flipped", vec!["state_proof"]),
        (&old_header, "height 1's header", vec!["header_height", "certificate"]),
    ] {
        let (code, doc, err) = wallet(liar, &verify(&fresh))?;
        assert_eq!((code, &doc["verified"]), (5, &Value::Bool(false)), "{what}: {doc} {err}");
        let failed = failed_checks(&doc);
        for name in &expected {
            assert!(failed.iter().any(|f| f == name), "{what}: {name} should fail: {doc}");
            assert!(err.contains(name), "{what}: stderr names {name}: {err}");
        }
    }
    // The honest node still verifies.
    assert_eq!(ok(&node, &verify(&fresh))?["verified"], true);
    Ok(())
}
