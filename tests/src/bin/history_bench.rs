//! Time of an account-history page (`Storage::account_history` plus reading the blocks the page names, what
//! `GET /accounts/{a}/txs` does) on chains of different lengths. Not part of the test run.
//!
//! `cargo run --release -p tests --bin history_bench -- [--blocks 10000,100000] [--every 10] [--dir DIR]`
//!
//! Builds each chain directly into a `Storage` in a temp dir (real blocks, certificates and commits, one
//! validator): the tracked account sends one transfer every `--every` blocks, the other blocks are empty.
//! Then times the newest page and a page from the middle of the history (limit 20), the median of
//! `--queries` runs each, and prints one JSON line per chain length.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use ledger_core::{Genesis, GenesisAccount, Height, Keypair, Validator};
use node::storage::{Storage, StorageOptions};

#[derive(Parser)]
struct Args {
    /// Chain lengths to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    blocks: Vec<u64>,
    /// The tracked account transacts every this many blocks.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Where to build the chains (default: a temp dir under /dev/shm when it exists).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Timed runs per figure (the median is reported).
    #[arg(long, default_value_t = 200)]
    queries: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let base = args.dir.clone().unwrap_or_else(|| {
        let shm = PathBuf::from("/dev/shm");
        if shm.is_dir() { shm } else { std::env::temp_dir() }
    });
    for &n in &args.blocks {
        let tmp = tempfile::tempdir_in(&base)?;
        let report = measure(tmp.path(), n, args.every, args.queries)?;
        println!("{report}");
    }
    Ok(())
}

fn measure(dir: &std::path::Path, blocks: u64, every: u64, queries: usize) -> Result<serde_json::Value> {
    let validator = Keypair::from_seed(&[1; 32]);
    let account = Keypair::from_seed(&[2; 32]);
    let recipient = Keypair::from_seed(&[9; 32]).public();
    let genesis = Genesis {
        chain_id: "history-bench".into(),
        genesis_time_ms: 1_000,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        validators: vec![Validator { public_key: validator.public(), power: 10, moniker: "v0".into() }],
        accounts: vec![GenesisAccount { address: account.public(), balance: u64::MAX / 4 }],
        params: ledger_core::ConsensusParams::default(),
    };
    genesis.validate().context("genesis")?;
    let store = Storage::open(dir, StorageOptions::default())?;
    store.init_genesis(&genesis)?;
    let started = Instant::now();
    let mut nonce = 0;
    let mut chain = tests::direct_chain::DirectChain::new(genesis.clone(), validator);
    for h in 1..=blocks {
        let txs = if h % every == 0 {
            nonce += 1;
            vec![chain.transfer(&account, recipient, 1, nonce - 1)]
        } else {
            Vec::new()
        };
        chain.commit_next(&store, txs, false)?;
    }
    let build_s = started.elapsed().as_secs_f64();
    let tip = store.latest_height()?;
    let address = account.public();
    // One page as the API handler makes it: the index, then each named block.
    let page = |before: (u64, u32)| -> Result<usize> {
        let found = store.account_history(&address, before, tip, 21)?;
        let mut n = 0;
        for (h, i) in found.iter().take(20) {
            let b = store.block(Height(*h))?.context("block")?;
            n += usize::from(b.txs.get(*i as usize).is_some());
        }
        Ok(n)
    };
    let time = |before: (u64, u32)| -> Result<(f64, usize)> {
        let mut t = Vec::with_capacity(queries);
        let mut n = 0;
        for _ in 0..queries {
            let s = Instant::now();
            n = page(before)?;
            t.push(s.elapsed().as_secs_f64() * 1e6);
        }
        t.sort_by(f64::total_cmp);
        Ok((t[t.len() / 2], n))
    };
    let (newest_us, newest_n) = time((u64::MAX, u32::MAX))?;
    let (middle_us, middle_n) = time((blocks / 2, 0))?;
    let (oldest_us, oldest_n) = time((every * 25, 0))?;
    let history = store.account_history(&address, (u64::MAX, u32::MAX), tip, usize::MAX)?.len();
    Ok(serde_json::json!({
        "blocks": blocks,
        "history_entries": history,
        "build_seconds": (build_s * 10.0).round() / 10.0,
        "newest_page_median_us": newest_us.round(),
        "middle_page_median_us": middle_us.round(),
        "oldest_page_median_us": oldest_us.round(),
        "page_sizes": [newest_n, middle_n, oldest_n],
        "queries": queries,
    }))
}
