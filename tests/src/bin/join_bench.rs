//! How long a new node takes to join a chain whose peers have pruned, by state sync, against block sync
//! alone from an archive peer. Real `ledgerd` processes throughout.
//!
//! `cargo run --release -p tests --bin join_bench -- [--accounts 100000] [--retain 256] [--interval 100]
//! [--min-height 1500] [--out FILE.json]`
//!
//! Four validators with `--accounts` genesis accounts and a snapshot every `--interval` blocks; validators
//! 0-2 keep `--retain` blocks (`storage.retain_blocks`), validator 3 keeps every block (an archive). Once the
//! chain passed `--min-height` and validator 0 answers `pruned` for block 1:
//! 1. full node A starts with `state_sync.enable = 1`: time to the snapshot installed and to the tip;
//!    then its balances are compared with validator 0's for a sample of accounts;
//! 2. full node B starts without state sync: it can only replay every block from genesis, which only the
//!    archive serves; time to the tip and the rate.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, ensure};
use clap::Parser;
use serde_json::json;
use tests::harness::{Localnet, wait_for};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 100_000)]
    accounts: usize,
    #[arg(long, default_value_t = 256)]
    retain: u64,
    #[arg(long, default_value_t = 100)]
    interval: u64,
    /// Build at least this many blocks before the new nodes start.
    #[arg(long, default_value_t = 1_500)]
    min_height: u64,
    /// Empty-block interval of the validators, in ms (fast, to build history quickly).
    #[arg(long, default_value_t = 30)]
    block_ms: u64,
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

const STEP: Duration = Duration::from_secs(1_200);

fn main() -> Result<()> {
    let args = Args::parse();
    let t0 = Instant::now();
    let mut net = Localnet::create(4, args.accounts)?;
    eprintln!("localnet with {} accounts created in {:.1} s", args.accounts, t0.elapsed().as_secs_f64());
    for i in 0..4 {
        let retain = if i == 3 { 0 } else { args.retain };
        let set = [
            format!("state_sync.snapshot_interval={}", args.interval),
            format!("storage.retain_blocks={retain}"),
            format!("consensus.empty_block_interval_ms={}", args.block_ms),
        ];
        let flags: Vec<String> = set.iter().flat_map(|s| ["--set".to_string(), s.clone()]).collect();
        net.add_start_args(i, &flags);
    }
    net.start_all()?;
    net.wait_all(&[0, 1, 2, 3], 2, STEP)?;
    // Some state beyond genesis.
    for k in 0..10 {
        let tx = net.transfer(0, k, args.accounts - 1 - k, 1_000 + k as u64)?;
        let answer = net.nodes[0].api.submit(&tx.encode())?;
        ensure!((200..300).contains(&answer.status), "submit: {}", answer.body);
    }
    net.wait_height(0, args.min_height, STEP)?;
    wait_for("validator 0 to prune block 1", STEP, || {
        Ok((net.nodes[0].api.get("/blocks/1")?.status == 410).then_some(()))
    })?;
    let tip = net.nodes[0].api.height()?;
    let base = net.nodes[0].api.metric("ledger_base_height")?;
    eprintln!("chain at height {tip}; validators 0-2 keep bodies from {base}, validator 3 all");

    // A: state sync.
    let a = net.add_full_node()?;
    net.add_start_args(
        a,
        &[
            "--set".into(),
            "state_sync.enable=1".into(),
            "--set".into(),
            format!("state_sync.snapshot_interval={}", args.interval),
        ],
    );
    let started = Instant::now();
    net.start(a)?;
    let installed = wait_for("A to install a snapshot", STEP, || {
        Ok(net.nodes[a].log_lines("state synced from a snapshot").into_iter().next())
    })
    .with_context(|| net.nodes[a].log_tail(40))?;
    let install_s = started.elapsed().as_secs_f64();
    let target = net.nodes[0].api.height()?;
    net.wait_height(a, target, STEP).with_context(|| net.nodes[a].log_tail(40))?;
    let join_s = started.elapsed().as_secs_f64();
    eprintln!("A: {installed}\nA: installed after {install_s:.1} s, at the tip {target} after {join_s:.1} s");
    let mut checked = 0;
    for j in (0..10).chain(args.accounts - 10..args.accounts).chain((0..args.accounts).step_by(args.accounts / 50 + 1))
    {
        let path = format!("/accounts/{}", net.manifest.accounts[j].address.to_address_string());
        let (x, y) = (net.nodes[0].api.get(&path)?.body, net.nodes[a].api.get(&path)?.body);
        ensure!((&x["balance"], &x["nonce"]) == (&y["balance"], &y["nonce"]), "account {j}: {x} vs {y}");
        checked += 1;
    }
    eprintln!("A: {checked} balances equal validator 0's");
    let accounts_in_snapshot: u64 = installed
        .split("accounts=")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no account count in {installed}"))?;

    // B: block sync alone, from genesis (only the archive has the old blocks).
    let b = net.add_full_node()?;
    let started = Instant::now();
    net.start(b)?;
    let target_b = net.nodes[0].api.height()?;
    net.wait_height(b, target_b, STEP).with_context(|| net.nodes[b].log_tail(40))?;
    let block_sync_s = started.elapsed().as_secs_f64();
    eprintln!(
        "B: block sync from genesis to {target_b} in {block_sync_s:.1} s ({:.0} blocks/s)",
        target_b as f64 / block_sync_s
    );

    let report = json!({
        "accounts_in_genesis": args.accounts,
        "accounts_in_snapshot": accounts_in_snapshot,
        "retain_blocks": args.retain,
        "snapshot_interval": args.interval,
        "tip_when_joining": tip,
        "validator0_base_height": base,
        "state_sync": { "installed_after_s": install_s, "at_tip_after_s": join_s, "tip": target, "balances_checked": checked, "log": installed },
        "block_sync_from_genesis": { "at_tip_after_s": block_sync_s, "tip": target_b, "blocks_per_s": target_b as f64 / block_sync_s },
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}
