//! wallet: the users' CLI. Key handling and transfers arrive with the wallet issue.

use clap::Parser;

#[derive(Parser)]
#[command(name = "wallet", version, about = "Ledger wallet")]
struct Cli {}

fn main() -> anyhow::Result<()> {
    let _ = Cli::parse();
    Ok(())
}
