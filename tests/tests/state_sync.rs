//! State sync on real `ledgerd` processes, with a peer that lies.
//!
//! Four validators with 5,000 genesis accounts keep a snapshot every 20 blocks. A liar (the test's own
//! libp2p peer, `tests::snapshot_liar`) fetches each new snapshot from validator 0 and serves it on with
//! every chunk altered. A fresh full node with `state_sync.enable = 1` and the liar among its peers must:
//! verify the snapshot's metadata from the genesis file, catch the liar at the first chunk it asks it for
//! (one altered chunk served, no more), fetch that chunk from an honest validator, install the snapshot
//! (no block below its height), block-sync the rest, and then answer with the same balances as the
//! validators.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tests::byzantine::{ChainInfo, targets};
use tests::harness::{Localnet, wait_for};
use tests::snapshot_liar::spawn_snapshot_liar;

const STEP: Duration = Duration::from_secs(90);
const ACCOUNTS: usize = 5_000;
const INTERVAL: u64 = 20;

#[test]
fn a_new_node_syncs_state_from_peers_and_a_lying_peer_is_caught_at_its_first_chunk() -> Result<()> {
    let mut net = Localnet::create(4, ACCOUNTS)?;
    for i in 0..4 {
        net.add_start_args(i, &["--set".into(), format!("state_sync.snapshot_interval={INTERVAL}")]);
    }
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, STEP)?;
    // Some state beyond genesis: transfers from a few accounts to others (new and old).
    let mut ids = Vec::new();
    for k in 0..5 {
        let tx = net.transfer(0, k, ACCOUNTS - 1 - k, 1_000 + k as u64)?;
        let answer = net.nodes[0].api.submit(&tx.encode())?;
        anyhow::ensure!((200..300).contains(&answer.status), "submit: {}", answer.body);
        ids.push(tx.id().to_hex());
    }
    for id in &ids {
        net.wait_committed(0, id, STEP)?;
    }

    let genesis_text = std::fs::read_to_string(net.dir.join("genesis.json"))?;
    let genesis = ledger_core::Genesis::from_json(&genesis_text).map_err(|e| anyhow!("genesis: {e}"))?;
    let chain = ChainInfo::new(&genesis, net.nodes[0].api.height()?);
    let honest = targets(&net.manifest, &[0])?.remove(0);
    let liar = spawn_snapshot_liar(&chain, honest)?;
    // Start the new node just after the liar took a new snapshot, so both offer the same newest height.
    let first = wait_for("the liar to hold a snapshot", STEP, || Ok(liar.height()))?;
    let held = wait_for("the liar to hold a newer snapshot", STEP, || Ok(liar.height().filter(|h| *h > first)))?;
    eprintln!("liar holds the snapshot at height {held}");

    let full = net.add_full_node()?;
    net.add_start_args(
        full,
        &[
            "--set".into(),
            "state_sync.enable=1".into(),
            "--set".into(),
            format!("state_sync.snapshot_interval={INTERVAL}"),
            "--bootstrap-peer".into(),
            liar.addr.to_string(),
        ],
    );
    let started = Instant::now();
    net.start(full)?;
    let installed = wait_for("the new node to install a snapshot", STEP, || {
        Ok(net.nodes[full].log_lines("state synced from a snapshot").into_iter().next())
    })
    .with_context(|| net.nodes[full].log_tail(40))?;
    let join_time = started.elapsed();
    eprintln!("{installed}");
    let tip = net.nodes[0].api.height()?;
    net.wait_height(full, tip, STEP).with_context(|| net.nodes[full].log_tail(40))?;
    eprintln!("state sync and catch-up to height {tip}: {:.1} s", started.elapsed().as_secs_f64());
    let liar_id = liar.peer_id.to_string();
    let (chunks, metas) = (liar.chunks_served(), liar.metas_served());
    liar.stop()?;

    // Caught at its first altered chunk, and asked for nothing more.
    let caught = net.nodes[full].log_lines("snapshot chunk failed its check");
    assert_eq!(caught.len(), 1, "one bad chunk reported: {caught:#?}");
    assert!(caught[0].contains(&liar_id), "the report names the liar {liar_id}: {}", caught[0]);
    assert_eq!(chunks, 1, "the liar served one altered chunk (metadata {metas} times)");
    assert!(installed.contains("bad_chunks=1"), "{installed}");

    // The snapshot's height, and no block below it.
    let base = log_field(&installed, "height")?;
    assert!(base >= held.0 && base.is_multiple_of(INTERVAL), "installed at {base}, the liar held {held}");
    let below = net.nodes[full].api.get("/blocks/1")?;
    assert_eq!(
        (below.status, &below.body["error"]["code"]),
        (410, &serde_json::json!("pruned")),
        "no block below the snapshot: {}",
        below.body
    );
    assert_eq!(net.nodes[full].api.block_hash(base)?, net.nodes[0].api.block_hash(base)?);
    for h in base..=tip {
        assert_eq!(net.nodes[full].api.block_hash(h)?, net.nodes[0].api.block_hash(h)?, "block {h}");
    }

    // The same balances as the validators, for the accounts that moved and some that did not.
    for j in (0..5).chain(ACCOUNTS - 5..ACCOUNTS).chain([100, 2_500]) {
        let path = format!("/accounts/{}", net.manifest.accounts[j].address.to_address_string());
        let (a, b) = (net.nodes[0].api.get(&path)?.body, net.nodes[full].api.get(&path)?.body);
        assert_eq!((&a["balance"], &a["nonce"]), (&b["balance"], &b["nonce"]), "account {j}: {a} vs {b}");
    }
    eprintln!("join time (start to snapshot installed): {:.1} s", join_time.as_secs_f64());
    Ok(())
}

/// A node that fell behind every peer's retention window. One validator keeps 256 blocks and a snapshot
/// every 100 (at ~30 blocks a second, so a snapshot is held for seconds, long enough to be fetched); a full node with `state_sync.enable = 1` follows it, stops, and is restarted once the
/// validator has pruned the block after the full node's tip. Block sync cannot bring it back; at start it
/// must find that out, state-sync into a fresh database, swap it in (keeping the old one beside it), and
/// catch up to the same chain and balances. Without state sync it stays where it is and says why. A
/// restart while block sync can go on changes nothing.
#[test]
fn a_node_behind_every_peers_window_state_syncs_at_start_and_keeps_its_old_database() -> Result<()> {
    let mut net = Localnet::create(1, 1_000)?;
    let fast = [
        "--set".to_string(),
        "consensus.empty_block_interval_ms=5".into(),
        "--set".into(),
        "storage.retain_blocks=256".into(),
        "--set".into(),
        "state_sync.snapshot_interval=100".into(),
    ];
    net.add_start_args(0, &fast);
    net.start(0)?;
    net.wait_height(0, 2, STEP)?;
    let full = net.add_full_node()?;
    net.add_start_args(
        full,
        &["--set".into(), "state_sync.enable=1".into(), "--set".into(), "state_sync.discovery_timeout_ms=3000".into()],
    );
    net.start(full)?;
    net.wait_height(full, net.nodes[0].api.height()?, STEP).with_context(|| net.nodes[full].log_tail(30))?;

    // A restart inside the window: block sync goes on, the database stays.
    net.stop(full, STEP)?;
    net.start(full)?;
    wait_for("the restarted node to decide about state sync", STEP, || {
        Ok(net.nodes[full].log_lines("state sync not needed").into_iter().next())
    })
    .with_context(|| net.nodes[full].log_tail(30))?;
    net.wait_height(full, net.nodes[0].api.height()?, STEP)?;
    let data = net.nodes[full].home.join("data");
    let replaced = |d: &std::path::Path| -> Result<Vec<String>> {
        Ok(std::fs::read_dir(d)?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("db.replaced-"))
            .collect())
    };
    assert!(replaced(&data)?.is_empty(), "nothing replaced inside the window");

    // Fall behind the window: stop, and wait until the validator serves no block after our tip.
    let seen = net.nodes[full].api.height()?;
    net.stop(full, STEP)?;
    let behind = net.nodes[0].api.height()?;
    let pruned_past = wait_for("the validator to prune past the stopped node", STEP, || {
        let base = net.nodes[0].api.metric("ledger_base_height")?;
        Ok((base as u64 > behind + 1).then_some(base as u64))
    })?;
    eprintln!("full node stopped at {behind}; the validator's base is now {pruned_past}");
    // Without state sync it cannot catch up, and says why.
    net.start_once(full, &["--set".into(), "state_sync.enable=0".into()])?;
    let warned = wait_for("the node to say its peers pruned what it needs", STEP, || {
        Ok(net.nodes[full].log_lines("have likely pruned it").into_iter().next())
    })
    .with_context(|| net.nodes[full].log_tail(30))?;
    assert!(warned.contains("state_sync.enable = 1"), "{warned}");
    assert!(net.nodes[full].api.height()? <= behind, "no block sync past a pruned window");
    net.stop(full, STEP)?;
    net.start(full)?;
    let line = wait_for("the node to replace its database", STEP, || {
        Ok(net.nodes[full].log_lines("behind every peer's retention window").into_iter().next())
    })
    .with_context(|| net.nodes[full].log_lines("state sync").join("\n"))?;
    eprintln!("{line}");
    let old_tip = log_field(&line, "tip")?;
    assert!((seen..=behind).contains(&old_tip), "the old tip {old_tip} is where the node stopped ({seen}..={behind})");
    let tip = net.nodes[0].api.height()?;
    net.wait_height(full, tip, STEP).with_context(|| net.nodes[full].log_tail(40))?;
    for h in [pruned_past + 1, tip] {
        assert_eq!(net.nodes[full].api.block_hash(h)?, net.nodes[0].api.block_hash(h)?, "block {h}");
    }
    // The old database is kept beside the new one, with its blocks.
    assert_eq!(replaced(&data)?, vec![format!("db.replaced-{old_tip}")]);
    assert!(!data.join("db.incoming").exists());
    for j in [0, 1, 999] {
        let path = format!("/accounts/{}", net.manifest.accounts[j].address.to_address_string());
        let (a, b) = (net.nodes[0].api.get(&path)?.body, net.nodes[full].api.get(&path)?.body);
        assert_eq!((&a["balance"], &a["nonce"]), (&b["balance"], &b["nonce"]), "account {j}: {a} vs {b}");
    }
    Ok(())
}

/// The number logged as `name=N` in a log line.
fn log_field(line: &str, name: &str) -> Result<u64> {
    line.split(&format!("{name}="))
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no {name} in {line}"))
}
