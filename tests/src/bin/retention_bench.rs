//! Disk size of a database under sustained commits with and without retention, without the network:
//! blocks are built and committed straight into a `Storage` (one validator, real blocks, certificates and
//! commits), and with `--retain N` the pruner's steps run after each commit until they are done, as the
//! node's housekeeper does. Every `--sample` blocks it prints the live bytes (every key and value) next to
//! the size sled keeps on disk, so a reader sees whether the space pruning frees is reused.
//!
//! `cargo run --release -p tests --bin retention_bench -- [--blocks 15000] [--txs 200] [--retain 1000]
//! [--dir DIR] [--out FILE.json]`

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use ledger_core::{Genesis, GenesisAccount, Keypair, Validator};
use node::storage::{Storage, StorageOptions};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 15_000)]
    blocks: u64,
    /// Transactions per block (one per sender).
    #[arg(long, default_value_t = 200)]
    txs: usize,
    /// `storage.retain_blocks` (0: keep all).
    #[arg(long, default_value_t = 1_000)]
    retain: u64,
    #[arg(long, default_value_t = 500)]
    sample: u64,
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let tmp = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir()?,
    };
    let validator = Keypair::from_seed(&[1; 32]);
    let senders: Vec<Keypair> = (0..args.txs).map(|i| Keypair::from_seed(&sender_seed(i))).collect();
    let recipient = Keypair::from_seed(&[9; 32]).public();
    let genesis = Genesis {
        chain_id: "retention-bench".into(),
        genesis_time_ms: 1_000,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        validators: vec![Validator { public_key: validator.public(), power: 10, moniker: "v0".into() }],
        accounts: senders.iter().map(|k| GenesisAccount { address: k.public(), balance: u64::MAX / 1024 }).collect(),
        params: ledger_core::ConsensusParams::default(),
    };
    genesis.validate().context("genesis")?;
    let store = Storage::open(tmp.path(), StorageOptions::default())?;
    store.init_genesis(&genesis)?;
    let started = Instant::now();
    let mut chain = tests::direct_chain::DirectChain::new(genesis.clone(), validator);
    let mut samples = Vec::new();
    let mut committed_txs = 0u64;
    for h in 1..=args.blocks {
        let txs: Vec<_> = senders.iter().map(|k| chain.transfer(k, recipient, 1, h - 1)).collect();
        // Signatures count as checked (the mempool would have): this measures storage, not ed25519.
        let block = chain.commit_next(&store, txs, true)?;
        committed_txs += block.txs.len() as u64;
        if args.retain > 0 {
            let target = store.prune_target(args.retain)?;
            while store.prune_step(target)?.more {}
        }
        if h % args.sample == 0 {
            let on_disk = node::storage::disk::dir_bytes(tmp.path())?;
            let archive = node::storage::disk::dir_bytes(&tmp.path().join(node::storage::ARCHIVE_DIR))?;
            let s = serde_json::json!({
                "height": h,
                "txs": committed_txs,
                "base": store.base_height()?.0,
                "disk_bytes": on_disk,
                "archive_bytes": archive,
                "seconds": started.elapsed().as_secs_f64(),
            });
            eprintln!("{s}");
            samples.push(s);
        }
    }
    let report = serde_json::json!({ "blocks": args.blocks, "txs_per_block": args.txs, "retain": args.retain, "samples": samples });
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
    }
    Ok(())
}

fn sender_seed(i: usize) -> [u8; 32] {
    let mut s = [7u8; 32];
    s[..8].copy_from_slice(&(i as u64).to_le_bytes());
    s
}
