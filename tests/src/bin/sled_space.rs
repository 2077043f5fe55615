//! Does sled 0.34 give back the space of removed keys? Measures a database's size on disk under one of a few
//! key patterns, each committed one batch per "block" with a flush (as the node commits), so a reader can see
//! which workloads plateau and which grow without bound.
//!
//! Patterns (letters combine; each adds its keys to every block's batch):
//! - `b`: a 55 kB body under an increasing key, removed `--keep` blocks later (retention);
//! - `H`: a 300-byte header and a 140-byte certificate under increasing keys, kept for ever;
//! - `Y`: a 13 kB delta under an increasing key, all removed every 16 blocks (the history index's deltas as they were folded then);
//! - `R`: a 13 kB value rewritten in a ring of 16 fixed keys;
//! - `a`: every 16 blocks, 300 100-byte accounts rewritten in place;
//! - `S`: the `b` bodies go to a second database instead.
//!
//! Measured on 2026-12-02 (6,000 blocks, keep 256): `b` alone plateaus at 26-27 MB; `H` alone grows with its
//! live data (6 MB); `Y` alone stays at 3 MB; but `HY` reaches 27 MB at 3,000 blocks and 55 MB at 6,000, and
//! `bH` 82 then 140 MB: sled does not reclaim removed keys' space once its log also holds data that only
//! grows. `bHS` (bodies in their own database) keeps both flat: 6 MB and 26 MB.
//!
//! `cargo run --release -p tests --bin sled_space -- --pattern bH [--blocks 6000] [--keep 256]`

use std::path::Path;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long)]
    pattern: String,
    #[arg(long, default_value_t = 6_000)]
    blocks: u64,
    #[arg(long, default_value_t = 256)]
    keep: u64,
    #[arg(long, default_value_t = 1_000)]
    sample: u64,
}

const BODY_BYTES: usize = 55_000;
const DELTA_BYTES: usize = 13_000;

fn key(prefix: u8, n: u64) -> Vec<u8> {
    let mut k = vec![prefix];
    k.extend_from_slice(&n.to_be_bytes());
    k
}

/// A deterministic, incompressible filler (xorshift).
struct Filler(u64);

impl Filler {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let p = |c: char| args.pattern.contains(c);
    let dir = tempfile::tempdir()?;
    let open = |name: &str| sled::Config::new().path(dir.path().join(name)).cache_capacity(64 << 20).open();
    let main_db = open("main")?;
    let side_db = open("side")?;
    let (main, side) = (main_db.open_tree("chain")?, side_db.open_tree("chain")?);
    let mut fill = Filler(0x1234_5678);
    for h in 0..=args.blocks {
        let mut batch = sled::Batch::default();
        let mut side_batch = sled::Batch::default();
        let bodies = if p('S') { &mut side_batch } else { &mut batch };
        if p('b') {
            bodies.insert(key(b'b', h), fill.bytes(BODY_BYTES));
            if h >= args.keep {
                bodies.remove(key(b'b', h - args.keep));
            }
        }
        if p('H') {
            batch.insert(key(b'H', h), fill.bytes(300));
            batch.insert(key(b'c', h), fill.bytes(140));
        }
        if p('Y') {
            batch.insert(key(b'Y', h), fill.bytes(DELTA_BYTES));
            if h % 16 == 15 {
                for d in h - 15..=h {
                    batch.remove(key(b'Y', d));
                }
            }
        }
        if p('R') {
            batch.insert(key(b'R', h % 16), fill.bytes(DELTA_BYTES));
        }
        if p('a') && h % 16 == 0 {
            for i in 0..300u64 {
                batch.insert(key(b'a', i), fill.bytes(100));
            }
        }
        if p('S') {
            side.apply_batch(side_batch)?;
            side_db.flush()?;
        }
        main.apply_batch(batch)?;
        main_db.flush()?;
        if h % args.sample == 0 {
            let (m, s) = (mb(&dir.path().join("main")), mb(&dir.path().join("side")));
            println!("{{\"block\":{h},\"main_mb\":{m:.1},\"side_mb\":{s:.1}}}");
        }
    }
    Ok(())
}

fn mb(dir: &Path) -> f64 {
    node::storage::disk::dir_bytes(dir).unwrap_or(0) as f64 / 1e6
}
