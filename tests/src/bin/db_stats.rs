//! Keys and bytes per key prefix in a node's database (stop the node first: sled holds a lock).
//!
//! `cargo run --release -p tests --bin db_stats -- HOME/data/db`

use std::collections::BTreeMap;

fn main() -> anyhow::Result<()> {
    const USAGE: &str = "usage: db_stats DB_DIR (a node's HOME/data/db, with the node stopped)";
    let path = match std::env::args().nth(1) {
        Some(p) if p == "-h" || p == "--help" => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(p) => p,
        None => anyhow::bail!(USAGE),
    };
    // sled would create an empty database at any path it is given: read only an existing one.
    anyhow::ensure!(
        std::path::Path::new(&path).join("conf").is_file(),
        "{path} is not a sled database (no conf file in it); {USAGE}"
    );
    // sled refuses a segment size other than the one the database was made with.
    let segment = node::storage::segment_size_of(std::path::Path::new(&path))?;
    let db = sled::Config::new().path(&path).segment_size(segment).open()?;
    let chain = db.open_tree("chain")?;
    let mut by: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for item in chain.iter() {
        let (k, v) = item?;
        let p = match k.first() {
            Some(b'm') => String::from_utf8_lossy(&k).into_owned(),
            Some(b) => (*b as char).to_string(),
            None => "(empty)".into(),
        };
        let e = by.entry(p).or_default();
        e.0 += 1;
        e.1 += (k.len() + v.len()) as u64;
    }
    let total: u64 = by.values().map(|e| e.1).sum();
    for (p, (n, bytes)) in &by {
        println!("{p:>16} {n:>10} keys {:>12} bytes", bytes);
    }
    println!(
        "{:>16} {:>10}      {total:>12} bytes live; size on disk {} bytes",
        "total",
        by.values().map(|e| e.0).sum::<u64>(),
        db.size_on_disk()?
    );
    Ok(())
}
