//! The explorer end to end in real headless Chromium against a real localnet of `ledgerd` processes.
//!
//! The nodes come from the harness (ports per test); a transfer is made with the wallet binary; then
//! `node tests/explorer/e2e.mjs` drives Chromium through Playwright (`playwright-core`, installed by
//! `npm ci` in `tests/explorer/`, which `.ci/run` does) and checks: the home page shows a new block within
//! 3 s of its header time; search by height, hash, tx id and address; the transfer on both account pages
//! with the right amounts; "verified by your browser" for the real transaction and the failed check named
//! when a proxy (Playwright's request interception) tampers with the Merkle proof; not-found pages; no
//! console error and no request to another host on any page; every page at desktop and phone width,
//! screenshots under `target/explorer-screenshots/`. `unit.mjs` first checks the JavaScript BLAKE3 against
//! the vectors the Rust implementation generated.
//!
//! Chromium is required: without it the test fails and says how to install it (never a silent skip).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tests::harness::{Localnet, wallet_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map(Path::to_path_buf).unwrap_or_default()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo().join("target"))
}

/// The Chromium to drive: `$CHROMIUM`, else `chromium` on the PATH.
fn chromium() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|d| d.join("chromium")).find(|p| p.is_file()))
        .unwrap_or_default();
    found.ok_or_else(|| {
        let ci = if std::env::var_os("CI").is_some() { " (CI is set: .ci/run should have installed it)" } else { "" };
        anyhow!(
            "chromium not found{ci}: the explorer's end-to-end test needs it. Install it with `apt-get install -y chromium` (or set CHROMIUM=/path/to/chromium), then `npm ci --prefix tests/explorer`"
        )
    })
}

/// `npm ci` in tests/explorer when playwright-core is not installed yet.
fn playwright() -> Result<()> {
    let dir = repo().join("tests/explorer");
    if dir.join("node_modules/playwright-core/package.json").is_file() {
        return Ok(());
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .output()
        .context("running npm ci in tests/explorer (Node.js and npm are needed)")?;
    if !out.status.success() {
        bail!("npm ci in tests/explorer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn node_script(args: &[&str]) -> Result<(bool, String)> {
    let out = Command::new("node").args(args).current_dir(repo()).output().context("running node (Node.js 20+)")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

#[test]
fn javascript_blake3_matches_the_rust_vectors() -> Result<()> {
    let (ok, out) = node_script(&["tests/explorer/unit.mjs"])?;
    println!("{out}");
    assert!(ok && out.contains("BLAKE3 OK"), "{out}");
    Ok(())
}

#[test]
fn explorer_in_headless_chromium_against_a_localnet() -> Result<()> {
    let chromium = chromium()?;
    playwright()?;
    let mut net = Localnet::create(4, 4)?;
    net.start_all()?;
    net.wait_height(0, 2, Duration::from_secs(60)).map_err(|e| anyhow!("{e}\n{}", net.diagnostics(&[0, 1, 2, 3])))?;
    let api = net.manifest.nodes[0].api_url.clone();
    let from = net.manifest.accounts[0].address.to_address_string();
    let to = net.manifest.accounts[1].address.to_address_string();
    let key = net.manifest.accounts[0].key_file.display().to_string();
    let amount = "4242";
    let out = Command::new(wallet_bin()?)
        .args([
            "--output", "json", "--node", &api, "transfer", "--key", &key, "--to", &to, "--amount", amount, "--wait",
        ])
        .output()
        .context("running wallet")?;
    let doc: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("wallet output: {}", String::from_utf8_lossy(&out.stdout)))?;
    assert!(out.status.success() && doc["status"] == "committed", "{doc} {}", String::from_utf8_lossy(&out.stderr));
    let id = doc["id"].as_str().context("no id")?.to_string();
    // A history longer than the page's 25 rows: 30 transfers from dev account 2 to 3 (not the parties above).
    let paged = net.manifest.accounts[2].address.to_address_string();
    let paged_count = 30;
    let mut last = String::new();
    for _ in 0..paged_count {
        let tx = net.transfer(0, 2, 3, 7)?;
        let a = net.nodes[0].api.submit(&tx.encode())?;
        assert!((200..300).contains(&a.status), "{} {}", a.status, a.body);
        last = tx.id().to_hex();
    }
    net.wait_committed(0, &last, Duration::from_secs(60))?;
    let shots = target_dir().join("explorer-screenshots");
    let (ok, text) = node_script(&[
        "tests/explorer/e2e.mjs",
        "--api",
        &api,
        "--tx",
        &id,
        "--from",
        &from,
        "--to",
        &to,
        "--amount",
        amount,
        "--screenshots",
        &shots.display().to_string(),
        "--paged",
        &paged,
        "--paged-count",
        &paged_count.to_string(),
        "--chromium",
        &chromium.display().to_string(),
    ])?;
    println!("{text}");
    assert!(ok && text.contains("E2E OK"), "explorer e2e failed:\n{text}\n{}", net.diagnostics(&[0]));
    for name in ["home-desktop.png", "home-phone.png", "tx-desktop.png", "account-phone.png"] {
        assert!(shots.join(name).is_file(), "no screenshot {name}");
    }
    Ok(())
}
