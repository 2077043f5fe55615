//! What committing blocks costs the disk: bytes written (`write_bytes` of `/proc/self/io`) and bytes kept per
//! committed transaction, and time and CPU per commit, for blocks committed straight into a `Storage` (real blocks,
//! certificates and commits, one validator; no consensus, no network). Not part of the test run.
//!
//! `cargo run --release -p tests --bin storage_write_bench -- [--blocks 300] [--txs 1000] [--proposals 4]`
//!
//! Every block holds `--txs` transfers from `--accounts` senders in turn. With `--proposals N`, every N-th
//! block is also kept as this validator's proposal first (`persist_proposed_block`), as one validator of N
//! does. The chain is built in a temp dir on the real disk (`--dir` to choose), not in memory, and one JSON
//! line is printed.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use ledger_core::{Genesis, GenesisAccount, Keypair, SignedTransaction, Validator};
use node::storage::{Storage, StorageOptions};
use tests::procfs::{allocated_bytes, clock_ticks, cpu_seconds, io_write_bytes};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 300)]
    blocks: u64,
    /// Transactions per block.
    #[arg(long, default_value_t = 1000)]
    txs: usize,
    #[arg(long, default_value_t = 2000)]
    accounts: usize,
    /// Every this many blocks, keep the block as a proposal before committing it (0: never).
    #[arg(long, default_value_t = 4)]
    proposals: u64,
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Write the JSON line here too.
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.accounts > 0 && args.txs > 0, "--accounts and --txs must be positive");
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let validator = Keypair::from_seed(&[1; 32]);
    let senders: Vec<Keypair> = (0..args.accounts)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
            Keypair::from_seed(&seed)
        })
        .collect();
    let genesis = Genesis {
        chain_id: "storage-write-bench".into(),
        genesis_time_ms: 1_000,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        validators: vec![Validator { public_key: validator.public(), power: 10, moniker: "v0".into() }],
        accounts: senders
            .iter()
            .map(|k| GenesisAccount { address: k.public(), balance: u64::MAX / (4 * args.accounts as u64) })
            .collect(),
        params: ledger_core::ConsensusParams::default(),
    };
    genesis.validate().context("genesis")?;
    let store = Storage::open(tmp.path(), StorageOptions::default())?;
    store.init_genesis(&genesis)?;
    let mut chain = tests::direct_chain::DirectChain::new(genesis.clone(), validator);

    // Sign every block's transactions before anything is measured.
    let mut nonces = vec![0u64; args.accounts];
    let mut next_sender = 0usize;
    let blocks: Vec<Vec<SignedTransaction>> = (0..args.blocks)
        .map(|_| {
            (0..args.txs)
                .map(|_| {
                    let s = next_sender;
                    next_sender = (next_sender + 1) % args.accounts;
                    let to = senders[(s + 1) % args.accounts].public();
                    nonces[s] += 1;
                    chain.transfer(&senders[s], to, 1, nonces[s] - 1)
                })
                .collect()
        })
        .collect();

    let (me, ticks) = (std::process::id(), clock_ticks()?);
    let written0 = io_write_bytes(me)?;
    let cpu0 = cpu_seconds(me, ticks)?;
    let started = Instant::now();
    let mut commit_us = Vec::with_capacity(blocks.len());
    for (i, txs) in blocks.into_iter().enumerate() {
        let t = Instant::now();
        if args.proposals > 0 && (i as u64).is_multiple_of(args.proposals) {
            // Keep what the commit will store: the same transactions in a block on the same tip.
            let block = chain.build_next(&store, txs.clone())?;
            store.persist_proposed_block(&block)?;
        }
        chain.commit_next(&store, txs, true)?;
        commit_us.push(t.elapsed().as_secs_f64() * 1e6);
    }
    // The folds and merges still running or due behind the commits are part of what the commits cost.
    store.flush()?;
    let elapsed = started.elapsed().as_secs_f64();
    let written = io_write_bytes(me)? - written0;
    let cpu = cpu_seconds(me, ticks)? - cpu0;
    drop(store);
    let kept = allocated_bytes(tmp.path())?;
    let n_tx = args.blocks * args.txs as u64;
    // Where the kept bytes are: each top-level part of the data directory (sled's database, the block files,
    // the archive), per transaction.
    let mut by_part = serde_json::Map::new();
    for entry in std::fs::read_dir(tmp.path())? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let bytes = if meta.is_dir() {
            allocated_bytes(&entry.path())?
        } else {
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512
        };
        by_part.insert(entry.file_name().to_string_lossy().into_owned(), (bytes as f64 / n_tx as f64).round().into());
    }
    commit_us.sort_by(f64::total_cmp);
    let report = serde_json::json!({
        "blocks": args.blocks,
        "txs_per_block": args.txs,
        "accounts": args.accounts,
        "proposal_every": args.proposals,
        "written_bytes_per_tx": (written as f64 / n_tx as f64).round(),
        "disk_bytes_per_tx": (kept as f64 / n_tx as f64).round(),
        "disk_bytes_per_tx_by_part": by_part,
        "commit_us_median": commit_us[commit_us.len() / 2].round(),
        "commit_us_p99": commit_us[commit_us.len() * 99 / 100].round(),
        "commit_us_per_tx": (elapsed * 1e6 / n_tx as f64 * 100.0).round() / 100.0,
        "cpu_us_per_tx": (cpu * 1e6 / n_tx as f64 * 100.0).round() / 100.0,
    });
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{report}\n"))?;
    }
    Ok(())
}
