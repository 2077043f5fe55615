//! ledgerd: the validator and full-node binary. Networking, storage and the API arrive with the node issue;
//! for now it reports its version.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "ledgerd", version, about = "BFT ledger validator and full node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the version and protocol version.
    Version,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Version => {
            println!("ledgerd {} (protocol {})", env!("CARGO_PKG_VERSION"), ledger_core::PROTOCOL_VERSION);
        }
    }
    Ok(())
}
