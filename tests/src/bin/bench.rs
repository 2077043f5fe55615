//! End-to-end throughput and latency of a localnet of real `ledgerd` processes.
//!
//! `cargo run --release -p tests --bin bench -- --validators 4 --duration 60 [--rate R | --rates R1,R2 | --sweep |
//! --overload [--max-tps M]] [--accounts K]
//! [--set KEY=VALUE]… --out FILE.json`
//!
//! Order of a run: create a fresh localnet (`genesis::create_localnet`, K dev accounts) in a temp dir; pre-sign
//! every transaction (before any node runs, so signing does not compete with them); start the validators as
//! separate processes; submit through `POST /txs/batch` on every node ([`tests::load`]); measure over the
//! window that follows the warm-up; let the backlog drain; then read the full blocks to match transaction
//! ids and compute latencies (after the window, so the JSON of whole blocks is not on the measured path).
//!
//! Definitions (also in the JSON under `definitions`):
//! - `committed_tps`: transactions in blocks whose header timestamp lies in the window, divided by the window.
//! - commit time of a transaction: when the observer (polling node 0's `/status` every `--poll-ms`) first saw
//!   the height of the block that holds it; latency = commit time − time the batch request of its accepted
//!   attempt was sent (senders keep their nonces in order: a transaction refused as worth retrying, such as
//!   `mempool_full` or `nonce_gap_under_load`, is sent again at its sender's next turn). The
//!   poll interval bounds the error (+0..poll ms).
//! - CPU: utime+stime of each node from `/proc/<pid>/stat`, difference over the window; `cpu_us_per_tx` is the
//!   sum over nodes divided by the transactions committed in the window.
//! - `peak_rss_mib`: VmHWM of each node once the load has drained, before the read-back of every block;
//!   `peak_rss_mib_incl_readback` is VmHWM at the end (reading history through sled's cache adds to it).

#![recursion_limit = "256"]

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};
use tests::harness::Localnet;
use tests::load::{self, ChainObserver, LoadConfig, SubmitStatus, TxTemplate};
use tests::procfs::{allocated_bytes, clock_ticks, cpu_seconds, io_write_bytes};

#[derive(Parser, Clone)]
#[command(about = "Throughput and latency of a localnet of real ledgerd processes")]
struct Args {
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Measurement window in seconds (after the warm-up).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Warm-up in seconds: load runs but nothing is counted.
    #[arg(long, default_value_t = 5)]
    warmup: u64,
    /// Target rate in tx/s (open loop); without it, full speed bounded by --inflight-max.
    #[arg(long)]
    rate: Option<f64>,
    /// Dev accounts (senders); at least 1000.
    #[arg(long, default_value_t = 2000)]
    accounts: usize,
    /// Sender threads (default 2 per validator).
    #[arg(long)]
    threads: Option<usize>,
    /// Transactions per POST /txs/batch (default: about 20 requests per second per thread, 50..=1000).
    #[arg(long)]
    batch: Option<usize>,
    /// At full speed: most accepted-but-uncommitted transactions.
    #[arg(long, default_value_t = 30_000)]
    inflight_max: u64,
    /// At full speed: transactions to pre-sign (default 80,000/s for 1 validator, 20,000/s otherwise, over
    /// warm-up + duration).
    #[arg(long)]
    presign: Option<usize>,
    /// Config override for every `ledgerd start` (repeatable): `--set mempool.max_txs=200000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Observer poll interval.
    #[arg(long, default_value_t = 10)]
    poll_ms: u64,
    /// Keep the localnet here instead of a temp dir.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Record a `perf` profile of node N (from 0) over the window (`--perf-out`).
    #[arg(long)]
    perf_node: Option<usize>,
    #[arg(long, default_value = "perf.data")]
    perf_out: PathBuf,
    /// Samples per second of `--perf-node` (higher resolves short per-block work at low rates)
    #[arg(long, default_value_t = 499)]
    perf_freq: u32,
    /// Latency curve: a run at full speed gives the maximum (`committed_tps`), then one run each at 25, 50, 75
    /// and 100 % of it (fresh localnet each); `--rate` is ignored.
    #[arg(long, conflicts_with_all = ["rates", "overload"])]
    sweep: bool,
    /// Explicit rates, one fresh run each (comma-separated tx/s): `--rates 2000,4000,6000`.
    #[arg(long, value_delimiter = ',', conflicts_with = "overload")]
    rates: Vec<f64>,
    /// Overload: runs at 1.5x and 3x the maximum (from `--max-tps`, else from a run at full speed first),
    /// reporting what fraction of the maximum is still committed and how the excess was refused. Without
    /// `--batch`, the paced runs send batches as the full-speed run does (500 asked), so the comparison with
    /// the maximum holds the client's shape: smaller batches cost the nodes more a transaction (session 28).
    #[arg(long)]
    overload: bool,
    /// The maximum for `--overload` (tx/s), instead of measuring it.
    #[arg(long)]
    max_tps: Option<f64>,
    /// Also write each run's per-transaction send and commit times (microseconds from the load's start) here,
    /// as CSV `send_us,commit_us` (commit_us empty when not committed); one file per run, suffixed by its index.
    #[arg(long)]
    latency_csv: Option<PathBuf>,
    /// The `ledgerd` binary to run (default: `$LEDGERD_BIN`, else built with cargo by the harness).
    #[arg(long)]
    ledgerd: Option<PathBuf>,
    /// Write the results here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.accounts < 1000 {
        bail!("--accounts must be at least 1000 (spreads nonces over senders)");
    }
    if args.validators == 0 || args.duration == 0 {
        bail!("--validators and --duration must be positive");
    }
    if let Some(n) = args.perf_node
        && n >= args.validators
    {
        bail!(
            "--perf-node {n}: nodes are numbered from 0, so with {} validators it is at most {}",
            args.validators,
            args.validators - 1
        );
    }
    // Resolve the binary now, while the process is single-threaded, then drop LEDGERD_BIN from the environment:
    // `ledgerd` refuses unknown `LEDGERD_*` variables, and the nodes inherit this environment.
    if let Some(bin) = &args.ledgerd {
        // SAFETY: no other thread exists yet.
        unsafe { std::env::set_var("LEDGERD_BIN", bin) };
    }
    let bin = tests::harness::ledgerd_bin()?;
    // SAFETY: no other thread exists yet.
    unsafe { std::env::remove_var("LEDGERD_BIN") };
    eprintln!("ledgerd: {}", bin.display());

    let report = if args.sweep {
        let max = run_once(&args, None, 0)?;
        let max_tps = max["committed_tps"].as_f64().unwrap_or(0.0);
        if max_tps <= 0.0 {
            bail!("the full-speed run committed nothing: no maximum to sweep from");
        }
        let mut runs = vec![max];
        for (i, f) in [0.25, 0.5, 0.75, 1.0].into_iter().enumerate() {
            runs.push(run_once(&args, Some((max_tps * f).round()), i + 1)?);
        }
        let curve: Vec<Value> =
            runs[1..].iter().zip([25, 50, 75, 100]).map(|(r, pct)| curve_point(r, Some(pct))).collect();
        print_curve(&curve);
        json!({ "mode": "sweep", "max_tps": max_tps, "curve": curve, "runs": runs })
    } else if !args.rates.is_empty() {
        let mut runs = Vec::new();
        for (i, &r) in args.rates.iter().enumerate() {
            runs.push(run_once(&args, Some(r), i)?);
        }
        let curve: Vec<Value> = runs.iter().map(|r| curve_point(r, None)).collect();
        print_curve(&curve);
        json!({ "mode": "rates", "curve": curve, "runs": runs })
    } else if args.overload {
        let mut runs = Vec::new();
        let max_tps = match args.max_tps {
            Some(m) => m,
            None => {
                let max = run_once(&args, None, 0)?;
                let m = max["committed_tps"].as_f64().unwrap_or(0.0);
                runs.push(max);
                m
            }
        };
        if max_tps <= 0.0 {
            bail!("no maximum to overload from (give --max-tps or let the full-speed run commit)");
        }
        let mut points = Vec::new();
        let paced = Args { batch: Some(args.batch.unwrap_or(FULL_SPEED_BATCH)), ..args.clone() };
        for f in [1.5, 3.0] {
            let r = run_once(&paced, Some((max_tps * f).round()), runs.len())?;
            let committed = r["committed_tps"].as_f64().unwrap_or(0.0);
            points.push(json!({
                "offered_x_max": f,
                "rate_target_tps": r["rate_target_tps"],
                "offered_tps": r["offered_tps"],
                "committed_tps": committed,
                "kept_fraction_of_max": round3(committed / max_tps),
                "blocks_per_sec": r["blocks_per_sec"],
                "batch": r["batch_per_request_max"],
                "latency_ms_admitted": r["latency_ms"],
                "rejected_by_code": r["rejected_by_code"],
                "accepted_in_window_not_committed": r["accepted_in_window_not_committed"],
            }));
            runs.push(r);
        }
        for p in &points {
            eprintln!(
                "overload {}x: committed {} tx/s = {} of max {max_tps}, p99 admitted {} ms, blocks/s {}",
                p["offered_x_max"],
                p["committed_tps"],
                p["kept_fraction_of_max"],
                p["latency_ms_admitted"]["p99"],
                p["blocks_per_sec"]
            );
        }
        json!({ "mode": "overload", "max_tps": max_tps, "overload": points, "runs": runs })
    } else {
        run_once(&args, args.rate, 0)?
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(out) = &args.out {
        fs::write(out, format!("{text}\n")).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

/// One row of a latency curve from a run's report.
fn curve_point(r: &Value, pct_of_max: Option<u32>) -> Value {
    json!({
        "pct_of_max": pct_of_max,
        "rate_target_tps": r["rate_target_tps"],
        "committed_tps": r["committed_tps"],
        "p50_ms": r["latency_ms"]["p50"],
        "p99_ms": r["latency_ms"]["p99"],
        "cpu_us_per_tx": r["cpu_us_per_tx"],
        "blocks_per_sec": r["blocks_per_sec"],
    })
}

fn print_curve(curve: &[Value]) {
    eprintln!("| % of max | rate | committed tx/s | p50 ms | p99 ms | CPU us/tx |");
    for p in curve {
        eprintln!(
            "| {} | {} | {} | {} | {} | {} |",
            p["pct_of_max"], p["rate_target_tps"], p["committed_tps"], p["p50_ms"], p["p99_ms"], p["cpu_us_per_tx"]
        );
    }
}

/// Transactions asked per `POST /txs/batch` at full speed (a batch takes one transaction per sender, so with
/// 2,000 senders over 8 threads a batch holds 250).
const FULL_SPEED_BATCH: usize = 500;

/// One run on a fresh localnet at `rate` (None: full speed); returns its report.
fn run_once(args: &Args, rate: Option<f64>, index: usize) -> Result<Value> {
    eprintln!("--- run {index}: rate {}", rate.map_or("full speed".to_string(), |r| format!("{r} tx/s")));
    let load_before = loadavg();
    let threads = args.threads.unwrap_or(2 * args.validators).max(1);
    let total_s = args.warmup + args.duration;

    // Localnet files.
    let mut lnet = match &args.keep {
        Some(dir) => {
            let dir = dir.join(format!("run{index}"));
            fs::create_dir_all(&dir)?;
            Localnet::create_in(&dir, args.validators, args.accounts)?
        }
        None => Localnet::create(args.validators, args.accounts)?,
    };
    let start_args: Vec<String> = args.set.iter().flat_map(|s| ["--set".to_string(), s.clone()]).collect();
    for i in 0..args.validators {
        lnet.add_start_args(i, &start_args);
    }
    let keys = (0..args.accounts).map(|j| lnet.account_key(j)).collect::<Result<Vec<_>>>()?;

    // Pre-sign.
    let count = match (rate, args.presign) {
        (_, Some(n)) => n,
        (Some(r), None) => (r * total_s as f64 * 1.02) as usize + 1000,
        // Above what the node commits, so that the generator does not run dry and cap the figure (a run that
        // sends every pre-signed transaction says so: `presign_exhausted`).
        // One validator commits 52,000-65,000 tx/s on this machine (session 26): 60,000 ran dry in some runs.
        (None, None) => (if args.validators == 1 { 80_000 } else { 20_000 }) * total_s as usize,
    };
    let template = TxTemplate {
        chain_id: lnet.manifest.chain_id.clone(),
        amount: 1,
        fee: ledger_core::ConsensusParams::default().min_fee,
        expiry_height: 10_000_000,
    };
    let t = Instant::now();
    let work = load::presign(&keys, &template, count, std::thread::available_parallelism().map_or(2, |n| n.get()));
    eprintln!("pre-signed {count} txs over {} senders in {:.1}s", args.accounts, t.elapsed().as_secs_f64());
    let ceiling = verify_ceiling(&work.txs)?;
    eprintln!(
        "verification on one core: {:.1} us/tx alone, {:.1} us/tx in batches of 64, {:.1} in batches of 1024",
        ceiling.single_us, ceiling.batch64_us, ceiling.batch1024_us
    );
    let batch = args.batch.unwrap_or_else(|| match rate {
        Some(r) => ((r / threads as f64 / 20.0) as usize).clamp(50, load::BATCH_TXS_MAX),
        None => FULL_SPEED_BATCH,
    });

    // Start the nodes and wait until they commit.
    lnet.start_all()?;
    let all: Vec<usize> = (0..args.validators).collect();
    lnet.wait_all(&all, 2, Duration::from_secs(60))?;
    let pids: Vec<u32> = lnet.nodes.iter().map(|n| n.pid().unwrap_or(0)).collect();
    eprintln!(
        "nodes up (pids {pids:?}); load for {}s warm-up + {}s, batch {batch}, {threads} threads",
        args.warmup, args.duration
    );

    let epoch = Instant::now();
    let wall_epoch_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let accepted = AtomicU64::new(0);
    let committed = AtomicU64::new(0);
    let stop_load = AtomicBool::new(false);
    let stop_observer = AtomicBool::new(false);
    let observer = ChainObserver::new(&lnet.nodes[0].api.base, Duration::from_millis(args.poll_ms))?;
    let cfg = LoadConfig {
        endpoints: lnet.nodes.iter().map(|n| n.api.base.clone()).collect(),
        rate_tps: rate,
        threads,
        batch,
        duration: Duration::from_secs(total_s),
        inflight_max: args.inflight_max,
    };
    let tck = clock_ticks()?;
    let window_start_us = args.warmup * 1_000_000;
    let window_end_us = total_s * 1_000_000;

    let (result, observer, cpu0, cpu1, self0, self1, machine_busy, perf_ok, hwm_load) =
        std::thread::scope(|scope| -> Result<_> {
            let obs = scope.spawn(|| {
                let mut observer = observer;
                observer.run(epoch, &committed, &stop_observer);
                observer
            });
            let loader = scope.spawn(|| load::run(&work, &cfg, epoch, &accepted, &committed, &stop_load));
            sleep_until(epoch + Duration::from_micros(window_start_us));
            let cpu0 = pids.iter().map(|&p| cpu_seconds(p, tck)).collect::<Result<Vec<_>>>()?;
            let self0 = cpu_seconds(std::process::id(), tck)?;
            let machine0 = machine_busy_seconds(tck)?;
            let perf = match args.perf_node {
                Some(i) => Some(
                    Command::new("perf")
                        .args(["record", "-F", &args.perf_freq.to_string(), "--call-graph", "dwarf,16384", "-o"])
                        .arg(&args.perf_out)
                        .args(["-p", &pids[i].to_string(), "--", "sleep", &args.duration.to_string()])
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .spawn()
                        .context("spawning perf")?,
                ),
                None => None,
            };
            sleep_until(epoch + Duration::from_micros(window_end_us));
            let cpu1 = pids.iter().map(|&p| cpu_seconds(p, tck)).collect::<Result<Vec<_>>>()?;
            let self1 = cpu_seconds(std::process::id(), tck)?;
            let machine1 = machine_busy_seconds(tck)?;
            stop_load.store(true, Ordering::Relaxed);
            let result = loader.join().map_err(|_| anyhow::anyhow!("load thread panicked"))??;
            let perf_ok = match perf {
                Some(mut p) => p.wait()?.success(),
                None => false,
            };
            // Drain: let the accepted backlog commit (for latencies of the last transactions), bounded.
            let drain_deadline = Instant::now() + Duration::from_secs(30);
            let mut last = (committed.load(Ordering::Relaxed), Instant::now());
            while committed.load(Ordering::Relaxed) < accepted.load(Ordering::Relaxed)
                && Instant::now() < drain_deadline
            {
                let c = committed.load(Ordering::Relaxed);
                if c != last.0 {
                    last = (c, Instant::now());
                } else if last.1.elapsed() > Duration::from_secs(5) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            stop_observer.store(true, Ordering::Relaxed);
            let observer = obs.join().map_err(|_| anyhow::anyhow!("observer thread panicked"))?;
            // Peak RSS of the load (and drain), before the latency read-back below requests every block.
            let hwm_load = pids.iter().map(|&p| vm_hwm_kib(p)).collect::<Result<Vec<_>>>()?;
            Ok((result, observer, cpu0, cpu1, self0, self1, machine1 - machine0, perf_ok, hwm_load))
        })?;
    let load_after = loadavg();

    // Throughput from block headers over the window.
    let win_start_ms = wall_epoch_ms + window_start_us / 1000;
    let win_end_ms = wall_epoch_ms + window_end_us / 1000;
    let window_s = args.duration as f64;
    let in_window: Vec<_> =
        observer.blocks.iter().filter(|b| b.timestamp_ms >= win_start_ms && b.timestamp_ms < win_end_ms).collect();
    let committed_window: u64 = in_window.iter().map(|b| b.tx_count).sum();
    let committed_observed: u64 = observer
        .blocks
        .iter()
        .filter(|b| b.seen_us >= window_start_us && b.seen_us < window_end_us)
        .map(|b| b.tx_count)
        .sum();
    let committed_tps = committed_window as f64 / window_s;
    let blocks_per_sec = in_window.len() as f64 / window_s;
    let txs_per_block = if in_window.is_empty() { 0.0 } else { committed_window as f64 / in_window.len() as f64 };

    // Offered load and rejections.
    let in_win = |us: u64| us >= window_start_us && us < window_end_us;
    let sent_window = result.submit_us.iter().filter(|&&us| in_win(us)).count() as u64;
    let sent_total = result.status.iter().filter(|s| **s != SubmitStatus::NotSent).count() as u64;
    let accepted_total = result.status.iter().filter(|s| **s == SubmitStatus::Accepted).count() as u64;
    let rejected_total: u64 = result.rejected_by_code.values().sum();
    // Every pre-signed transaction admitted: at full speed the generator, not the network, set the pace.
    let presign_exhausted = accepted_total as usize == work.len();
    if presign_exhausted && rate.is_none() {
        eprintln!("WARNING: every pre-signed transaction was sent; raise --presign, the figure is a lower bound");
    }

    // Latency: match the ids of every observed block (full blocks, read now that the load is over).
    let t = Instant::now();
    let mut commit_us: std::collections::HashMap<[u8; 32], u64> = std::collections::HashMap::new();
    for b in &observer.blocks {
        if b.tx_count == 0 {
            continue;
        }
        for id in observer.block_tx_ids(b.height)? {
            commit_us.insert(id, b.seen_us);
        }
    }
    if let Some(path) = &args.latency_csv {
        let path = path.with_extension(format!("{index}.csv"));
        let mut csv = String::from("send_us,commit_us\n");
        for i in 0..work.len() {
            if result.status[i] == SubmitStatus::Accepted {
                let c = commit_us.get(&work.ids[i]).map_or(String::new(), |c| c.to_string());
                csv.push_str(&format!("{},{c}\n", result.submit_us[i]));
            }
        }
        fs::write(&path, csv).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut latencies_ms = Vec::new();
    let mut accepted_in_window = 0u64;
    let mut uncommitted_in_window = 0u64;
    for i in 0..work.len() {
        let sent = result.submit_us[i];
        if result.status[i] != SubmitStatus::Accepted || !in_win(sent) {
            continue;
        }
        accepted_in_window += 1;
        match commit_us.get(&work.ids[i]) {
            Some(&c) => latencies_ms.push(c.saturating_sub(sent) as f64 / 1000.0),
            None => uncommitted_in_window += 1,
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    eprintln!("matched {} committed txs in {:.1}s", commit_us.len(), t.elapsed().as_secs_f64());

    // Per-node resources.
    let mut nodes = Vec::new();
    let mut cpu_window_total = 0.0;
    let mut disk_total = 0u64;
    let mut written_total = 0u64;
    for (i, n) in lnet.nodes.iter().enumerate() {
        let cpu_window = cpu1[i] - cpu0[i];
        cpu_window_total += cpu_window;
        let disk = allocated_bytes(&n.home.join("data"))?;
        disk_total += disk;
        let written = io_write_bytes(pids[i])?;
        written_total += written;
        // What the node dropped or refused on its own (gossip drops by reason): a hint of where transactions
        // went that no proposer had.
        let gossip_dropped: serde_json::Map<String, Value> = n
            .api
            .get_text("/metrics")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix("ledger_gossip_dropped_total{reason=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter_map(|(reason, v)| Some((reason.to_string(), json!(v.trim().parse::<f64>().ok()? as u64))))
            .collect();
        nodes.push(json!({
            "name": n.name,
            "gossip_dropped": gossip_dropped,
            "pid": pids[i],
            "cpu_s_window": round3(cpu_window),
            "cpu_s_total": round3(cpu1[i]),
            "cpu_cores_window": round3(cpu_window / window_s),
            "peak_rss_mib": round3(hwm_load[i] as f64 / 1024.0),
            "peak_rss_mib_incl_readback": round3(vm_hwm_kib(pids[i])? as f64 / 1024.0),
            "disk_bytes": disk,
            "disk_written_bytes": written,
        }));
    }
    let committed_all: u64 = observer.blocks.iter().map(|b| b.tx_count).sum();
    let final_height = observer.blocks.last().map_or(0, |b| b.height);

    let report = json!({
        "validators": args.validators,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rate_target_tps": rate,
        "accounts": args.accounts,
        "threads": threads,
        "batch": batch,
        // The thread with the most senders (threads own senders round-robin).
        "batch_per_request_max": load::batch_held(batch, args.accounts.div_ceil(threads)),
        "overrides": args.set,
        "committed_tps": round1(committed_tps),
        "committed_tps_observed": round1(committed_observed as f64 / window_s),
        "offered_tps": round1(sent_window as f64 / window_s),
        "latency_ms": {
            "p50": round1(load::quantile(&latencies_ms, 0.50)),
            "p90": round1(load::quantile(&latencies_ms, 0.90)),
            "p99": round1(load::quantile(&latencies_ms, 0.99)),
            "max": round1(latencies_ms.last().copied().unwrap_or(f64::NAN)),
            "samples": latencies_ms.len(),
        },
        "sent": sent_total,
        "presigned": work.len(),
        "presign_exhausted": presign_exhausted,
        "accepted": accepted_total,
        "rejected": rejected_total,
        "rejected_by_code": result.rejected_by_code,
        "accepted_in_window_not_committed": uncommitted_in_window,
        "accepted_in_window": accepted_in_window,
        "batch_requests": result.requests,
        "batch_retries": result.retries,
        "resent_after_refusal": result.resent,
        "batch_request_ms_mean": round1(result.request_us_total as f64 / 1000.0 / result.requests.max(1) as f64),
        "blocks_per_sec": round3(blocks_per_sec),
        "txs_per_block": round1(txs_per_block),
        "final_height": final_height,
        "verify_ceiling": {
            "single_us_per_tx": round1(ceiling.single_us),
            "batch64_us_per_tx": round1(ceiling.batch64_us),
            "batch1024_us_per_tx": round1(ceiling.batch1024_us),
            "ceiling_tps": round1(ceiling.tps(args.validators)),
            "committed_fraction_of_ceiling": round3(committed_tps / ceiling.tps(args.validators)),
        },
        "cpu_us_per_tx": round1(cpu_window_total * 1e6 / committed_window.max(1) as f64),
        "cpu_cores_nodes_window": round3(cpu_window_total / window_s),
        "cpu_cores_loadgen_window": round3((self1 - self0) / window_s),
        "disk_bytes_per_tx": round1(disk_total as f64 / committed_all.max(1) as f64),
        "disk_written_bytes_per_tx": round1(written_total as f64 / committed_all.max(1) as f64),
        "committed_total": committed_all,
        "nodes": nodes,
        "perf_profile": if perf_ok { Value::from(args.perf_out.display().to_string()) } else { Value::Null },
        "machine": {
            "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
            "signature_backend": signature_backend(),
            "loadavg_before": load_before,
            "loadavg_after": load_after,
            "cpu_cores_busy_window": round3(machine_busy / window_s),
            "cpu_cores_other_processes_window":
                round3((machine_busy - cpu_window_total - (self1 - self0)) / window_s),
        },
        "definitions": {
            "committed_tps": "txs of blocks whose header timestamp is in the window / window seconds",
            "committed_tps_observed": "txs of blocks first seen by the observer during the window / window seconds",
            "latency": "first observation of the block's height on node 0 (/status polled every poll_ms) minus the send time of the HTTP attempt that got the tx admitted (a request refused whole with 429 is repeated after a short pause, and the latency starts at the repeat; a tx refused as worth retrying, e.g. mempool_full or nonce_gap_under_load, is sent again at its sender's next turn); txs sent in the window",
            "cpu": "utime+stime from /proc/<pid>/stat over the window; cpu_us_per_tx = sum over nodes / txs committed in the window",
            "verify_ceiling": "keys-and-signature check of pre-signed txs on one core of this machine, measured by the bench before the nodes start: alone, and in batches of 64 and 1024 (ZIP 215 batch verification); ceiling_tps = cores x 1e6 / (validators x batch64_us_per_tx): what the machine could commit if every node did nothing but verify each transaction once in batches of 64",
            "disk_written_bytes_per_tx": "bytes each node caused to be written to storage since it started (write_bytes of /proc/<pid>/io), summed over nodes / txs committed (all heights)",
            "disk_bytes_per_tx": "allocated bytes of every node's data dir at the end / txs committed (all heights), summed over nodes",
            "peak_rss_mib": "VmHWM of each node after warm-up, load and drain, before the latency read-back; peak_rss_mib_incl_readback: VmHWM at the very end, after the bench has read every block back through GET /blocks/{height}",
        },
    });
    for i in 0..args.validators {
        if let Err(e) = lnet.stop(i, Duration::from_secs(20)) {
            eprintln!("stopping node {i}: {e:#}");
        }
    }
    Ok(report)
}

/// Per-transaction cost of the keys-and-signature check on one core: the floor of what each validator
/// spends on every transaction it admits.
struct Ceiling {
    single_us: f64,
    batch64_us: f64,
    batch1024_us: f64,
    cores: f64,
}

impl Ceiling {
    fn tps(&self, validators: usize) -> f64 {
        self.cores * 1e6 / (validators as f64 * self.batch64_us)
    }
}

fn verify_ceiling(encoded: &[Vec<u8>]) -> Result<Ceiling> {
    use ledger_core::SignedTransaction;
    use ledger_core::crypto::NoKeyCache;
    let n = encoded.len().min(4096);
    if n < 1024 {
        bail!("need at least 1024 pre-signed transactions to measure verification, have {n}");
    }
    let txs = encoded[..n]
        .iter()
        .map(|b| SignedTransaction::decode(b, usize::MAX).map_err(|e| anyhow::anyhow!("pre-signed tx: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let timed = |chunk: usize| -> Result<f64> {
        let t = Instant::now();
        for c in txs.chunks(chunk) {
            let verdicts = SignedTransaction::check_keys_and_signatures(c, &NoKeyCache);
            if verdicts.iter().any(|v| v.is_err()) {
                bail!("a pre-signed transaction failed verification");
            }
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
    };
    let single_us = {
        let t = Instant::now();
        for tx in &txs[..1024] {
            tx.check_keys_and_signature().map_err(|e| anyhow::anyhow!("pre-signed tx: {e}"))?;
        }
        t.elapsed().as_secs_f64() * 1e6 / 1024.0
    };
    Ok(Ceiling {
        single_us,
        batch64_us: timed(64)?,
        batch1024_us: timed(1024)?,
        cores: std::thread::available_parallelism().map_or(1, |c| c.get()) as f64,
    })
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Busy CPU time of the whole machine (all CPUs, everything but idle and iowait) in seconds, from /proc/stat.
fn machine_busy_seconds(ticks_per_s: f64) -> Result<f64> {
    let stat = fs::read_to_string("/proc/stat")?;
    let line = stat.lines().find(|l| l.starts_with("cpu ")).context("no cpu line in /proc/stat")?;
    let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    let busy: f64 = v.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, x)| x).sum();
    Ok(busy / ticks_per_s)
}

/// Peak resident set size (VmHWM) of `pid` in KiB.
fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmHWM")
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg").unwrap_or_default().trim().to_string()
}

/// Which curve25519-dalek backend the signature checks run on here. The library picks at run time, by the CPU's
/// features, among the backends compiled in: AVX2 always on x86_64, AVX-512 IFMA only with the
/// `curve25519_dalek_backend="avx512"` cfg that `.cargo/config.toml` passes to every crate (a `RUSTFLAGS`
/// variable replaces it).
fn signature_backend() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if cfg!(curve25519_dalek_backend = "avx512")
            && std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return "avx512ifma";
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return "avx2";
        }
    }
    "portable"
}
