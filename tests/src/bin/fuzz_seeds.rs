//! Write the seed inputs of every fuzz target (`tests::fuzz::seeds`) into `fuzz/corpus/<target>/`, one
//! file per input (`seed-<n>`; the encrypted keystore seed has a fresh salt each time).
//! Usage: `cargo run --release -p tests --bin fuzz_seeds [-- <corpus dir>]` from the repository root.

use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let root = std::env::args().nth(1).map_or_else(|| PathBuf::from("fuzz/corpus"), PathBuf::from);
    for (name, _) in tests::fuzz::TARGETS {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let seeds = tests::fuzz::seeds(name);
        for (i, seed) in seeds.iter().enumerate() {
            let file = dir.join(format!("seed-{i}"));
            std::fs::write(&file, seed)?;
        }
        println!("{name}: {} seeds in {}", seeds.len(), dir.display());
    }
    Ok(())
}
