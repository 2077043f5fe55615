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
    let base: u64 = installed
        .split("height=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no height in {installed}"))?;
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
