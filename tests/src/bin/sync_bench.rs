//! Block sync rate over a long history, with real `ledgerd` processes: how fast a new full node without
//! state sync replays `--blocks` blocks of `--txs` transfers each from a validator, and how long that
//! validator takes to start on such a history.
//!
//! `cargo run --release -p tests --bin sync_bench -- [--blocks 100000] [--txs 20] [--dir DIR]
//! [--out FILE.json]` (the harness builds `ledgerd` first unless `LEDGERD_BIN` names the binary)
//!
//! 1. A one-validator localnet (the harness), with `--txs + 1` dev accounts.
//! 2. Before the validator's first start, its own database (`data_dir/db` of its home, as `ledgerd start`
//!    opens it) is filled with `--blocks` real certified blocks (`DirectChain`, certificates signed with the
//!    validator's key from its home), each holding one transfer from each of `--txs` distinct dev accounts.
//!    The chain is built before the node ever ran, so the home has no signer state and no high-water mark
//!    yet: the node starts on it as on a restored database of its own, with the look-back guard set from
//!    the stored certificates.
//! 3. The validator starts (`ledgerd start`): time to its API answering, with the start-up check passed
//!    (it verifies the stored tail) and height >= `--blocks`; then it must commit a block of its own.
//! 4. A full node (no `state_sync.enable`) starts with the validator as its only peer: time from its start
//!    to height `--blocks`, sampled from its `/status` (height and sync progress) every `--sample-s`, with
//!    its CPU time and the machine's load average beside each sample (on a shared machine, other
//!    processes change the rate: the samples show when).
//! 5. The validator is stopped and started again: its restart time with the long history.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use clap::Parser;
use ledger_core::{Keypair, PublicKey};
use node::storage::{Storage, StorageOptions};
use serde_json::{Value, json};
use tests::direct_chain::DirectChain;
use tests::harness::{Localnet, wait_for};

#[derive(Parser)]
struct Args {
    /// Blocks built into the validator's database before it starts.
    #[arg(long, default_value_t = 100_000)]
    blocks: u64,
    /// Transfers per block, one from each of this many distinct dev accounts.
    #[arg(long, default_value_t = 20)]
    txs: usize,
    /// Create the localnet in this directory and keep it (it must not hold a localnet already); default: a
    /// temporary directory, removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the report here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seconds between progress samples of the syncing full node.
    #[arg(long, default_value_t = 5)]
    sample_s: u64,
    /// Give up on the full node's sync after this many seconds.
    #[arg(long, default_value_t = 7_200)]
    sync_timeout_s: u64,
}

/// Deadline of each start-up (opening and verifying a long history included).
const START: Duration = Duration::from_secs(600);
/// Deadline for the validator's first block of its own after a start.
const FIRST_BLOCK: Duration = Duration::from_secs(120);
/// Polling interval while the full node syncs (the end of the sync is known to this precision).
const POLL: Duration = Duration::from_millis(200);

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.blocks >= 1, "--blocks must be at least 1");
    ensure!(
        (1..genesis::LOCALNET_ACCOUNTS_MAX).contains(&args.txs),
        "--txs must be between 1 and {} (one dev account per transfer, plus one)",
        genesis::LOCALNET_ACCOUNTS_MAX - 1
    );
    ensure!(args.sample_s >= 1, "--sample-s must be at least 1");
    let accounts = args.txs + 1;
    let mut net = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            Localnet::create_in(dir, 1, accounts)
                .with_context(|| format!("creating a localnet in {}", dir.display()))?
        }
        None => Localnet::create(1, accounts).context("creating a localnet")?,
    };
    eprintln!("localnet in {} (1 validator, {accounts} dev accounts)", net.dir.display());

    // 2. Build the history into the validator's database.
    let home = net.nodes[0].home.clone();
    let built = build_history(&net, &home, args.blocks, args.txs)?;
    let data_dir_bytes = node::storage::disk::dir_bytes(&built.data_dir)?;
    eprintln!(
        "built {} blocks ({} txs) in {:.1} s ({:.0} blocks/s); validator data dir {:.1} MiB",
        args.blocks,
        built.txs,
        built.seconds,
        args.blocks as f64 / built.seconds,
        mib(data_dir_bytes)
    );

    // 3. First start of the validator on the history.
    let first_start = start_validator(&mut net, args.blocks)?;
    eprintln!(
        "validator: API answered {:.2} s after start at height {}; first block of its own after {:.2} s",
        first_start.api_s, first_start.height, first_start.own_block_s
    );
    let signer_log: Vec<String> = net.nodes[0]
        .log_text()
        .lines()
        .filter(|l| l.contains("signer state") || l.contains("look-back"))
        .map(str::to_string)
        .collect();

    // 4. A full node syncs every block from genesis.
    let full = net.add_full_node()?;
    let validator_cpu = net.nodes[0].pid().and_then(cpu_seconds);
    let started = Instant::now();
    net.start(full)?;
    let sync = follow_sync(&net, full, args.blocks, started, &args)?;
    let sync_s = sync.at_target_s;
    // CPU time over the sync (to the end of catching up), as a share of one core: what bounds the rate.
    let full_cpu_s = net.nodes[full].pid().and_then(cpu_seconds);
    let validator_cpu_s =
        net.nodes[0].pid().and_then(cpu_seconds).zip(validator_cpu).map(|(after, before)| after - before);
    eprintln!(
        "CPU over {:.1} s of sync: full node {}, validator {}",
        sync.caught_up_s,
        full_cpu_s.map_or("unknown".into(), |c| format!("{c:.1} s")),
        validator_cpu_s.map_or("unknown".into(), |c| format!("{c:.1} s"))
    );
    let txs_synced = built.txs;
    eprintln!(
        "full node: height {} after {sync_s:.1} s: {:.0} blocks/s, {:.0} tx/s; caught up (not catching_up) after {:.1} s",
        args.blocks,
        args.blocks as f64 / sync_s,
        txs_synced as f64 / sync_s,
        sync.caught_up_s
    );
    let (v, f) = (net.nodes[0].api.block_hash(args.blocks)?, net.nodes[full].api.block_hash(args.blocks)?);
    ensure!(v.is_some() && v == f, "block {} differs: validator {v:?}, full node {f:?}", args.blocks);
    let full_data_bytes = node::storage::disk::dir_bytes(&net.nodes[full].home.join("data"))?;

    // 5. Restart the validator with the long history.
    net.stop(full, START)?;
    net.stop(0, START)?;
    let restart = start_validator(&mut net, args.blocks)?;
    eprintln!(
        "validator restart: API answered {:.2} s after start at height {}; first block of its own after {:.2} s",
        restart.api_s, restart.height, restart.own_block_s
    );
    net.stop(0, START)?;
    let validator_data_end = node::storage::disk::dir_bytes(&built.data_dir)?;

    let report = json!({
        "blocks": args.blocks,
        "txs_per_block": args.txs,
        "txs": built.txs,
        "machine_cores": std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
        "build": {
            "seconds": built.seconds,
            "blocks_per_s": args.blocks as f64 / built.seconds,
            "validator_data_dir_bytes": data_dir_bytes,
            "samples": built.samples,
        },
        "validator_first_start": first_start.json(),
        "validator_restart": restart.json(),
        "validator_data_dir_bytes_at_end": validator_data_end,
        "validator_first_start_signer_log": signer_log,
        "full_node_sync": {
            "state_sync": false,
            "seconds_to_target": sync_s,
            "blocks_per_s": args.blocks as f64 / sync_s,
            "txs_per_s": txs_synced as f64 / sync_s,
            "caught_up_after_s": sync.caught_up_s,
            "tip_when_caught_up": sync.caught_up_height,
            "full_node_data_dir_bytes": full_data_bytes,
            "full_node_cpu_s": full_cpu_s,
            "validator_cpu_s": validator_cpu_s,
            "samples": sync.samples,
        },
        "log_warnings": {
            "validator": warn_lines(&net, 0),
            "full_node": warn_lines(&net, full),
        },
        "localnet_dir": args.dir.as_ref().map(|_| net.dir.display().to_string()),
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(out) = &args.out {
        std::fs::write(out, text + "\n").with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

struct Built {
    data_dir: PathBuf,
    txs: u64,
    seconds: f64,
    samples: Vec<Value>,
}

/// Append `blocks` blocks of `txs` transfers to the database of the validator in `home`, which has never
/// run: its genesis, key and data directory are those `ledgerd start` would use.
fn build_history(net: &Localnet, home: &Path, blocks: u64, txs: usize) -> Result<Built> {
    let cfg =
        node::config::load(home, &[], &[]).with_context(|| format!("loading the config of {}", home.display()))?;
    let genesis = node::run::read_genesis(&cfg.genesis_file)?;
    let key = node::keys::load_validator_key(&cfg.validator_key_file)?
        .ok_or_else(|| anyhow!("{} has no validator key", home.display()))?;
    ensure!(
        genesis.validators.len() == 1 && genesis.validators[0].public_key == key.public(),
        "the genesis must have this home's key as its only validator (DirectChain certifies alone)"
    );
    let data_dir = cfg.data_dir.clone();
    // The chain is built before the node's first start: no signer state or high-water mark may exist, or
    // the history below would contradict what the node recorded itself.
    for name in [node::safety::signer::FILE_NAME, node::safety::high_water::FILE_NAME] {
        let path = data_dir.join(name);
        ensure!(!path.exists(), "{} exists: the validator has run already; build on a fresh localnet", path.display());
    }
    let lock = node::safety::lock_data_dir(&data_dir)?;
    let db_dir = data_dir.join("db");
    let store = Storage::open(
        &db_dir,
        StorageOptions {
            cache_capacity_bytes: cfg.cache_capacity_mb * 1024 * 1024,
            block_bytes_max: genesis.params.block_bytes_max as usize,
        },
    )
    .with_context(|| format!("opening {}", db_dir.display()))?;
    store.init_genesis(&genesis)?;
    ensure!(store.latest_height()?.0 == 0, "{} already holds blocks", db_dir.display());

    let senders: Vec<Keypair> = (0..txs).map(|j| net.account_key(j)).collect::<Result<_>>()?;
    let recipients: Vec<PublicKey> = (0..txs).map(|j| net.manifest.accounts[j + 1].address).collect();
    let fee = genesis.params.min_fee.max(1);
    let mut chain = DirectChain::new(genesis.clone(), key);
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut committed = 0u64;
    let mut last_print = Instant::now();
    for h in 1..=blocks {
        let block_txs = senders.iter().zip(&recipients).map(|(k, to)| chain.transfer(k, *to, fee, h - 1)).collect();
        // The signatures are real (the syncing node checks them); the builder skips checking its own.
        let block = chain.commit_next(&store, block_txs, true)?;
        committed += block.txs.len() as u64;
        if last_print.elapsed() >= Duration::from_secs(10) || h == blocks {
            last_print = Instant::now();
            let s = started.elapsed().as_secs_f64();
            let sample = json!({ "height": h, "seconds": s, "blocks_per_s": h as f64 / s });
            eprintln!("build: {sample}");
            samples.push(sample);
        }
    }
    store.flush()?;
    drop(store);
    drop(lock);
    Ok(Built { data_dir, txs: committed, seconds: started.elapsed().as_secs_f64(), samples })
}

struct Started {
    /// From `ledgerd start` to `/status` answering.
    api_s: f64,
    /// The height it answered with.
    height: u64,
    /// From `ledgerd start` to a block above the built history committed by the validator itself.
    own_block_s: f64,
    /// `signer` of `/status` once it committed that block.
    signer: Value,
}

impl Started {
    fn json(&self) -> Value {
        json!({ "api_answering_s": self.api_s, "height": self.height, "own_block_after_s": self.own_block_s, "signer": self.signer })
    }
}

/// Start the validator (node 0) and time its start-up on the history of `blocks` blocks.
fn start_validator(net: &mut Localnet, blocks: u64) -> Result<Started> {
    let started = Instant::now();
    net.start(0)?;
    let api = net.nodes[0].api.clone();
    let status = {
        let node = &mut net.nodes[0];
        wait_for("the validator's API", START, || {
            if let Some(exit) = node.exit_status() {
                bail!("ledgerd exited with {exit} during start-up:\n{}", node.log_tail(30));
            }
            Ok(api.status().ok())
        })?
    };
    let api_s = started.elapsed().as_secs_f64();
    let height = status["height"].as_u64().ok_or_else(|| anyhow!("status has no height: {status}"))?;
    ensure!(height >= blocks, "the validator answered at height {height}, below the {blocks} built");
    let verified = net.nodes[0].log_lines("storage verified");
    ensure!(!verified.is_empty(), "no 'storage verified' line in the validator's log");
    net.wait_height(0, height + 1, FIRST_BLOCK).context("the validator committed no block of its own")?;
    let own_block_s = started.elapsed().as_secs_f64();
    let signer = net.nodes[0].api.status()?["signer"].clone();
    Ok(Started { api_s, height, own_block_s, signer })
}

struct Synced {
    at_target_s: f64,
    caught_up_s: f64,
    caught_up_height: u64,
    samples: Vec<Value>,
}

/// Follow node `i`'s sync to `target` from `/status`, sampling it every `--sample-s`; then wait until it
/// no longer reports catching up.
fn follow_sync(net: &Localnet, i: usize, target: u64, started: Instant, args: &Args) -> Result<Synced> {
    let api = &net.nodes[i].api;
    let deadline = started + Duration::from_secs(args.sync_timeout_s);
    let every = Duration::from_secs(args.sample_s);
    let mut samples = Vec::new();
    let mut next_sample = started;
    let mut last_err = String::new();
    let at_target_s = loop {
        let now = Instant::now();
        let status = api.status();
        let height = status.as_ref().ok().and_then(|s| s["height"].as_u64());
        if now >= next_sample || height.is_some_and(|h| h >= target) {
            next_sample += every;
            let t = started.elapsed().as_secs_f64();
            // The node's CPU time so far and the machine's load: whether a slow stretch is the node's own
            // work or other processes on the machine.
            let cpu_s = net.nodes[i].pid().and_then(cpu_seconds);
            let load_1m = load_average();
            let sample = match &status {
                Ok(s) => json!({
                    "t_s": t,
                    "height": s["height"],
                    "catching_up": s["catching_up"],
                    "n_peers": s["n_peers"],
                    "sync": s["sync"],
                    "cpu_s": cpu_s,
                    "load_1m": load_1m,
                }),
                Err(e) => json!({ "t_s": t, "error": format!("{e:#}"), "cpu_s": cpu_s, "load_1m": load_1m }),
            };
            eprintln!("sync: {sample}");
            samples.push(sample);
        }
        if let Err(e) = &status {
            last_err = format!("{e:#}");
        }
        if height.is_some_and(|h| h >= target) {
            break started.elapsed().as_secs_f64();
        }
        if now >= deadline {
            bail!(
                "the full node did not reach height {target} within {} s (last: {:?} {last_err}):\n{}",
                args.sync_timeout_s,
                height,
                net.nodes[i].log_tail(30)
            );
        }
        std::thread::sleep(POLL);
    };
    let caught_up_height = wait_for("the full node to stop catching up", START, || {
        let s = api.status()?;
        Ok((s["catching_up"] == Value::Bool(false)).then(|| s["height"].as_u64()).flatten())
    })?;
    Ok(Synced { at_target_s, caught_up_s: started.elapsed().as_secs_f64(), caught_up_height, samples })
}

/// How many WARN and ERROR lines node `i`'s log has, and the first 20 of them.
fn warn_lines(net: &Localnet, i: usize) -> Value {
    let text = net.nodes[i].log_text();
    let lines: Vec<&str> = text.lines().filter(|l| l.contains(" WARN ") || l.contains(" ERROR ")).collect();
    json!({ "count": lines.len(), "first": lines.iter().take(20).collect::<Vec<_>>() })
}

/// User and system CPU time of process `pid` so far, from `/proc/PID/stat` (Linux; `None` elsewhere).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold spaces): state is the first,
    // utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / clock_ticks_per_second())
}

/// The machine's one-minute load average, from `/proc/loadavg` (Linux; `None` elsewhere).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}
