//! Run the consensus simulator over a range of seeds.
//!
//! `cargo run --release -p tests --bin sim -- --seeds N [--first-seed S] [--validators V] [--byzantine B]
//! [--no-signer-guard] [--governance]`
//!
//! Each seed is one deterministic run (see `tests::sim`). Prints every failing seed with its configuration
//! and violations; exits 1 if any run broke an invariant. The next-to-last line counts the signer faults and
//! what the guard did (with `--governance`, a line before it counts the validator-set changes: approved, activated
//! by kind, activated during a partition or a crash); the last line is always the summary:
//! `seeds=N violations=V heights=H faults=F elapsed_s=T`.

use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use tests::sim::{Report, SimConfig, run};

#[derive(Parser)]
#[command(about = "Deterministic consensus simulator")]
struct Args {
    /// Number of seeds (runs).
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// First seed; runs use first-seed .. first-seed + seeds.
    #[arg(long, default_value_t = 0)]
    first_seed: u64,
    /// Validators per run (default: 4, 7 or 10, drawn from the seed).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    validators: Option<u64>,
    /// Byzantine validators per run (default: 0..=f, drawn from the seed). More than f is allowed and
    /// is expected to produce violations.
    #[arg(long)]
    byzantine: Option<u64>,
    /// Worker threads; each run is single-threaded, results are reported in seed order.
    #[arg(long)]
    jobs: Option<usize>,
    /// Also check liveness in runs with a forking coalition (Byzantine power >= 1/3), which may legitimately stall.
    #[arg(long)]
    strict_liveness: bool,
    /// Run without the double-sign guard at start (no watch, no look-back floor): the negative control.
    /// Restarts that lost or rewound the signer state may then sign twice.
    #[arg(long)]
    no_signer_guard: bool,
    /// Mix validator-set changes into every run (`SimConfig::random_with_governance`): spare nodes added,
    /// validators removed, powers changed, keys rotated, also around partitions and crashes.
    #[arg(long)]
    governance: bool,
    /// Print one line per run.
    #[arg(long)]
    verbose: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let config = |seed: u64| {
        let (v, b) = (args.validators.map(|v| v as usize), args.byzantine.map(|b| b as usize));
        let mut c =
            if args.governance { SimConfig::random_with_governance(seed, v, b) } else { SimConfig::random(seed, v, b) };
        c.check_liveness |= args.strict_liveness;
        c.signer_guard = !args.no_signer_guard;
        c
    };
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Report)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= args.seeds {
                        break;
                    }
                    let seed = args.first_seed + k;
                    let report = run(&config(seed));
                    results.lock().expect("no worker panicked").push((seed, report));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("no worker panicked");
    results.sort_by_key(|(seed, _)| *seed);
    let (mut violations, mut heights, mut faults) = (0usize, 0u64, 0u64);
    let sum = |f: fn(&Report) -> u64| results.iter().map(|(_, r)| f(r)).sum::<u64>();
    let signer_line = format!(
        "signer faults: lost={} rewound={} at_undecided_height={} | guard={} watches={} watches_ended={} \
         floors_from_chain={} floor_raises={} foreign_signatures={} halts={}",
        sum(|r| r.signer_lost),
        sum(|r| r.signer_rewound),
        sum(|r| r.signer_damaged_undecided),
        if args.no_signer_guard { "off" } else { "on" },
        sum(|r| r.watches),
        sum(|r| r.watches_ended),
        sum(|r| r.floors_from_chain),
        sum(|r| r.floor_raises),
        sum(|r| r.foreign_signatures),
        sum(|r| r.halts)
    );
    for (seed, r) in &results {
        heights += r.heights;
        faults += r.faults;
        if args.verbose {
            println!(
                "seed={seed} n={} heights={} min_height={} faults={} crashes={} restarts={} signer_lost={} \
                 signer_rewound={} foreign={} halts={} evidence={} delivered={} sim_ms={} trace={:016x}",
                r.validators,
                r.heights,
                r.min_height,
                r.faults,
                r.crashes,
                r.restarts,
                r.signer_lost,
                r.signer_rewound,
                r.foreign_signatures,
                r.halts,
                r.evidence,
                r.delivered,
                r.sim_ms,
                r.trace_hash
            );
        }
        if !r.violations.is_empty() {
            violations += r.violations.len();
            println!("FAILED seed={seed}");
            print!("{}", config(*seed));
            for v in &r.violations {
                println!("  violation {v}");
            }
            if args.verbose {
                for line in r.final_state.lines() {
                    println!("  at the end: {line}");
                }
            }
            println!(
                "  reproduce: cargo run --release -p tests --bin sim -- --seeds 1 --first-seed {seed}{}{}{}{}",
                args.validators.map(|v| format!(" --validators {v}")).unwrap_or_default(),
                args.byzantine.map(|b| format!(" --byzantine {b}")).unwrap_or_default(),
                if args.no_signer_guard { " --no-signer-guard" } else { "" },
                if args.governance { " --governance" } else { "" }
            );
            if args.strict_liveness {
                println!("  (with --strict-liveness)");
            }
        }
    }
    println!(
        "validator sets: changes approved={} activated: adds={} removes={} power_changes={} rotations={} \
         jailings={} | in a partition={} in a crash={} | key_switches={} spare_messages={} rotated_key_messages={} \
         sets_checked={} far_height_refusals={} honest_peer_bans={}",
        sum(|r| r.gov_submitted),
        sum(|r| r.adds),
        sum(|r| r.removes),
        sum(|r| r.power_changes),
        sum(|r| r.rotations),
        sum(|r| r.jailings),
        sum(|r| r.activated_in_partition),
        sum(|r| r.activated_in_crash),
        sum(|r| r.key_switches),
        sum(|r| r.spare_messages),
        sum(|r| r.rotated_key_messages),
        sum(|r| r.sets_checked),
        sum(|r| r.far_height_refusals),
        sum(|r| r.honest_peer_bans)
    );
    println!("{signer_line}");
    println!(
        "gossip: txs_committed={} rejected={} dropped={} peer_bans={}",
        sum(|r| r.txs_committed),
        sum(|r| r.gossip_rejected),
        sum(|r| r.gossip_dropped),
        sum(|r| r.peer_bans)
    );
    println!(
        "seeds={} violations={violations} heights={heights} faults={faults} elapsed_s={:.1}",
        args.seeds,
        started.elapsed().as_secs_f64()
    );
    if violations == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
