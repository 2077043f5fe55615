//! `chaos`: a Jepsen-style fault run against a real localnet (see `tests::chaos`).
//!
//! ```text
//! cargo run --release -p tests --bin chaos -- --seed 7 --duration 60 [--validators 4] [--byzantine]
//! ```
//!
//! `--byzantine` (or `--faults …,byzantine`) adds the opt-in fault of a Byzantine libp2p peer flooding the
//! validators (`tests::byzantine`).
//!
//! Exits 0 only when every invariant held. The last line is always
//! `seed=S txs_ok=A txs_failed=B txs_indeterminate=C faults=F violations=V`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tests::chaos::nemesis::{self, FaultKind};
use tests::chaos::{self, Options};

#[derive(Parser)]
#[command(about = "Fault-injection run against a real localnet, then a full-chain check")]
struct Args {
    #[arg(long)]
    seed: u64,
    /// Length of the chaos phase in seconds.
    #[arg(long, default_value_t = 60)]
    duration: u64,
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Dev accounts the clients transfer among.
    #[arg(long, default_value_t = 8)]
    accounts: usize,
    /// Concurrent client threads.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Comma-separated fault kinds (kill9,pause,restart,disk,isolate,split,flap,lossy, and the opt-in
    /// byzantine); default all but the opt-in ones.
    #[arg(long, value_delimiter = ',')]
    faults: Vec<String>,
    /// Add the opt-in fault `byzantine` to the kinds: a Byzantine libp2p peer joins every validator and
    /// runs one of its floods (forged transactions, unfunded reshuffled transactions, replayed votes,
    /// block-sync requests, connection churn) for 10-20 s; the checker must still find no violation.
    #[arg(long)]
    byzantine: bool,
    /// Never use network namespaces, even as root.
    #[arg(long)]
    process_faults_only: bool,
    /// Keep the localnet (homes, logs, data) in this directory.
    #[arg(long)]
    keep_dir: Option<PathBuf>,
    /// Print the schedule of this seed (with every kind asked for, as on a machine with namespaces and
    /// lossy links) and exit without running anything.
    #[arg(long)]
    dry_run: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = Options::new(args.seed, Duration::from_secs(args.duration));
    opts.validators = args.validators;
    opts.accounts = args.accounts;
    opts.clients = args.clients.max(1);
    opts.process_faults_only = args.process_faults_only;
    opts.keep_dir = args.keep_dir;
    if !args.faults.is_empty() {
        let mut kinds = Vec::new();
        for name in &args.faults {
            match FaultKind::parse(name.trim()) {
                Some(k) => kinds.push(k),
                None => {
                    eprintln!("unknown fault kind {name:?}");
                    println!("seed={} txs_ok=0 txs_failed=0 txs_indeterminate=0 faults=0 violations=1", args.seed);
                    return ExitCode::from(2);
                }
            }
        }
        opts.kinds = kinds;
    }
    if args.byzantine && !opts.kinds.contains(&FaultKind::Byzantine) {
        opts.kinds.push(FaultKind::Byzantine);
    }
    if args.dry_run {
        let schedule = nemesis::schedule(opts.seed, opts.duration, opts.validators, &opts.kinds);
        println!("schedule of seed {} over {}s ({} faults):", opts.seed, args.duration, schedule.len());
        for s in &schedule {
            println!("  {s}");
        }
        return ExitCode::SUCCESS;
    }
    match chaos::run(&opts) {
        Ok(report) => {
            println!("{}", report.summary_line());
            if report.violations.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            // The run itself broke (not an invariant): still end with the summary line, counted as a violation.
            eprintln!("chaos run failed: {e:#}");
            println!("seed={} txs_ok=0 txs_failed=0 txs_indeterminate=0 faults=0 violations=1", args.seed);
            ExitCode::from(2)
        }
    }
}
