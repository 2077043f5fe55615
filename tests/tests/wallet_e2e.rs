//! The wallet end to end against a real localnet of `ledgerd` processes: keygen, funding from a dev account
//! with `--wait`, a transfer back, exact balances and nonces, offline sign + send, `verify` passing on the
//! honest node and failing through a tampering proxy, and the error exits that need a live node.

use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tests::harness::{Localnet, tampering_proxy, wallet_bin};

/// Run the wallet with `--output json` against `node`; returns (exit code, the one JSON document, stderr).
fn wallet(node: &str, args: &[&str]) -> Result<(i32, Value, String)> {
    let out: Output = Command::new(wallet_bin()?)
        .args(["--output", "json", "--node", node])
        .args(args)
        .env("WALLET_PASSWORD", "correct horse battery staple")
        .output()
        .context("running wallet")?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let doc: Value =
        serde_json::from_str(&stdout).with_context(|| format!("stdout is not one JSON document: {stdout:?}"))?;
    Ok((out.status.code().unwrap_or(-1), doc, String::from_utf8_lossy(&out.stderr).to_string()))
}

fn ok(node: &str, args: &[&str]) -> Result<Value> {
    let (code, doc, err) = wallet(node, args)?;
    if code != 0 {
        bail!("wallet {args:?} exited {code}: {doc} {err}");
    }
    Ok(doc)
}

#[test]
fn wallet_end_to_end_on_a_real_localnet() -> Result<()> {
    let mut net = Localnet::create(4, 2)?;
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, Duration::from_secs(60))?;
    let node = net.nodes[0].api.base.clone();
    let tmp = tempfile::tempdir()?;
    let p = |name: &str| tmp.path().join(name).display().to_string();
    let dev = net.manifest.accounts[0].key_file.display().to_string();
    let genesis = net.dir.join("genesis.json").display().to_string();

    // keygen, then fund the new key from a dev account and wait for the commit.
    let me = ok(&node, &["keygen", "--out", &p("me.json")])?["address"].as_str().unwrap_or_default().to_string();
    let dev_before = ok(&node, &["balance", "--key", &dev])?["balance"].as_u64().unwrap_or(0);
    let fund = ok(&node, &["transfer", "--key", &dev, "--to", &me, "--amount", "5000", "--wait"])?;
    assert_eq!(fund["status"], "committed", "{fund}");
    assert!(fund["height"].as_u64().is_some());
    let mine = ok(&node, &["balance", &me])?;
    assert_eq!((mine["balance"].as_u64(), mine["nonce"].as_u64()), (Some(5000), Some(0)));
    let dev_after = ok(&node, &["balance", "--key", &dev])?;
    // Fee 1 is the chain's minimum; it goes to the proposer, not back to the sender.
    assert_eq!(dev_after["balance"].as_u64(), Some(dev_before - 5000 - 1));
    assert_eq!(dev_after["nonce"].as_u64(), Some(1));

    // Transfer back from the encrypted keystore.
    let dev_addr = net.manifest.accounts[0].address.to_address_string();
    let back = ok(&node, &["transfer", "--key", &p("me.json"), "--to", &dev_addr, "--amount", "1000", "--wait"])?;
    assert_eq!(back["status"], "committed", "{back}");
    let mine = ok(&node, &["balance", &me])?;
    assert_eq!((mine["balance"].as_u64(), mine["nonce"].as_u64()), (Some(3999), Some(1)));

    // Offline sign (no --node needed: point it nowhere), then send from elsewhere.
    let height = net.nodes[0].api.height()?;
    let expiry = (height + 500).to_string();
    let signed = ok(
        "http://127.0.0.1:9",
        &[
            "sign",
            "--key",
            &p("me.json"),
            "--to",
            &dev_addr,
            "--amount",
            "500",
            "--fee",
            "2",
            "--nonce",
            "1",
            "--chain-id",
            &net.manifest.chain_id,
            "--expiry-height",
            &expiry,
            "--out",
            &p("tx.hex"),
        ],
    )?;
    let id = signed["id"].as_str().unwrap_or_default().to_string();
    let sent = ok(&net.nodes[2].api.base, &["send", &p("tx.hex"), "--wait"])?;
    assert_eq!(sent["status"], "committed", "{sent}");
    let mine = ok(&node, &["balance", &me])?;
    assert_eq!((mine["balance"].as_u64(), mine["nonce"].as_u64()), (Some(3999 - 502), Some(2)));

    // verify: passes against an honest node, for a tx sent to another node.
    let v = ok(&node, &["verify", &id, "--genesis", &genesis, "--trusted-state", &p("trusted.json")])?;
    assert_eq!(v["verified"], true, "{v}");

    // ... and fails when the node lies: altered tx bytes, or a certificate missing signatures.
    let lie_tx = tampering_proxy(node.clone(), |path, body| {
        if path.starts_with("/txs/")
            && let Some(hex) = body["tx_hex"].as_str()
        {
            let mut bytes = hex.as_bytes().to_vec();
            let i = bytes.len() / 2;
            bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
            body["tx_hex"] = Value::String(String::from_utf8_lossy(&bytes).into_owned());
        }
    })?;
    let (code, doc, _) =
        wallet(&lie_tx, &["verify", &id, "--genesis", &genesis, "--trusted-state", &p("trusted.json")])?;
    assert_eq!((code, &doc["verified"]), (5, &Value::Bool(false)), "{doc}");
    let lie_cert = tampering_proxy(node.clone(), |path, body| {
        if path.ends_with("/commit") {
            let hex = body["certificate_hex"].as_str().unwrap_or_default();
            if let Ok(bytes) = hex::decode(hex)
                && let Ok(mut cert) = ledger_core::encoding::decode::<ledger_core::CommitCertificate>(&bytes, 1 << 20)
            {
                cert.signatures.truncate(1);
                body["certificate_hex"] = Value::String(hex::encode(ledger_core::encoding::encode(&cert)));
            }
        }
    })?;
    let (code, doc, _) =
        wallet(&lie_cert, &["verify", &id, "--genesis", &genesis, "--trusted-state", &p("trusted.json")])?;
    assert_eq!(code, 5, "{doc}");

    // Error exits that need a live node: a replayed transaction is refused (4), so is overspending (4).
    let (code, doc, err) = wallet(&node, &["send", &p("tx.hex")])?;
    assert_eq!(code, 4, "{doc} {err}");
    let (code, doc, err) =
        wallet(&node, &["transfer", "--key", &p("me.json"), "--to", &dev_addr, "--amount", "999999"])?;
    assert_eq!(code, 4, "{doc} {err}");
    assert!(err.contains("insufficient") || doc.to_string().contains("insufficient"), "{doc} {err}");

    // An id the node never saw is not a success (7, node error "unknown"), with the status document.
    let (code, doc, err) = wallet(&node, &["tx", &"ab".repeat(32)])?;
    assert_eq!((code, &doc["status"]), (7, &Value::String("unknown".into())), "{doc} {err}");
    assert!(err.contains("unknown to this node"), "{err}");

    // Unusual transfers need a confirmation: without a terminal (stdin is not one here) they are refused
    // (2) unless --yes is given. A fee over 100 times the minimum fee, and a transfer to oneself.
    let before = ok(&node, &["balance", &me])?;
    let (code, doc, err) =
        wallet(&node, &["transfer", "--key", &p("me.json"), "--to", &dev_addr, "--amount", "1", "--fee", "500"])?;
    assert_eq!(code, 2, "{doc} {err}");
    assert!(err.contains("500 times the chain's minimum fee") && err.contains("--yes"), "{err}");
    let (code, doc, err) = wallet(&node, &["transfer", "--key", &p("me.json"), "--to", &me, "--amount", "1"])?;
    assert_eq!(code, 2, "{doc} {err}");
    assert!(err.contains("sender's own address") && err.contains("--yes"), "{err}");
    let unchanged = ok(&node, &["balance", &me])?;
    assert_eq!(unchanged["next_nonce"], before["next_nonce"], "a refused transfer was sent");
    let yes = ok(&node, &["transfer", "--key", &p("me.json"), "--to", &me, "--amount", "1", "--yes", "--wait"])?;
    assert_eq!(yes["status"], "committed", "{yes}");
    let after = ok(&node, &["balance", &me])?;
    assert_eq!(after["balance"].as_u64(), before["balance"].as_u64().map(|b| b - 1), "only the fee moved");
    Ok(())
}
