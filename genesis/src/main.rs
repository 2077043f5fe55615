//! `genesis`: create, edit and check genesis files, and lay out local networks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Args, CommandFactory, Parser, Subcommand};
use genesis::LocalnetOptions;
use genesis::localnet::{DEFAULT_ACCOUNT_BALANCE, DEFAULT_BASE_PORT, DEFAULT_GENESIS_TIME_MS};
use ledger_core::{Genesis, GenesisAccount, Validator};

const ABOUT: &str = "Create, edit and check chain genesis files, and lay out local networks";

const LONG_ABOUT: &str = "\
Create, edit and check chain genesis files, and lay out local networks.

Building a genesis by hand is a series of edits to one draft file, then a final check:

  genesis new --chain-id mychain --out genesis.json
  genesis add-validator genesis.json --address ldg... --power 10 --moniker alice
  genesis add-account genesis.json ldg... 1000000
  genesis validate genesis.json
  genesis show genesis.json

`new` writes a draft with no validators (not yet loadable by a node). Every edit re-checks the whole
file, so a draft is never broken in any way except possibly lacking validators; `validate` is the final
check, the same one a node applies, and requires at least one validator.

`genesis localnet` writes a complete local network in one step (see docs/home-layout.md).";

#[derive(Parser)]
#[command(name = "genesis", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new draft genesis with no validators and no accounts
    New(NewArgs),
    /// Add a validator to a draft (by address, or by a plaintext key file)
    AddValidator(AddValidatorArgs),
    /// Add an initial account balance to a draft
    AddAccount(AddAccountArgs),
    /// Final check: the file is a genesis a node will load (at least one validator)
    Validate {
        /// Genesis file
        file: PathBuf,
    },
    /// Print chain id, genesis hash, validators, number of accounts and total supply (drafts too)
    Show {
        /// Genesis file
        file: PathBuf,
    },
    /// Write a complete local network: genesis, node homes, dev account keys and localnet.json
    Localnet(LocalnetArgs),
    /// Print a shell completion script: `genesis completions bash > /etc/bash_completion.d/genesis`
    Completions {
        /// The shell to complete for
        shell: clap_complete::Shell,
    },
}

#[derive(Args)]
struct NewArgs {
    /// Chain id: 1-64 characters of a-z, 0-9, '-' and '_'
    #[arg(long)]
    chain_id: String,
    /// Where to write the draft
    #[arg(long)]
    out: PathBuf,
    /// Genesis time in milliseconds since the Unix epoch [default: now]
    #[arg(long)]
    genesis_time_ms: Option<u64>,
    /// Smallest fee a transaction may pay
    #[arg(long, default_value_t = ledger_core::ConsensusParams::default().min_fee)]
    min_fee: u64,
    /// Overwrite an existing file
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct AddValidatorArgs {
    /// Draft genesis file, edited in place
    file: PathBuf,
    /// Validator address (checksummed ldg... text)
    #[arg(long, required_unless_present = "key_file", conflicts_with = "key_file")]
    address: Option<String>,
    /// Take the address from a plaintext key file instead
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// Voting power, at least 1
    #[arg(long)]
    power: u64,
    /// Human-readable name, at most 64 bytes
    #[arg(long)]
    moniker: String,
}

#[derive(Args)]
struct AddAccountArgs {
    /// Draft genesis file, edited in place
    file: PathBuf,
    /// Account address (checksummed ldg... text)
    address: String,
    /// Initial balance
    amount: u64,
}

#[derive(Args)]
struct LocalnetArgs {
    /// Number of validator nodes
    #[arg(long, default_value_t = 4)]
    validators: usize,
    /// Number of funded dev accounts
    #[arg(long, default_value_t = 10)]
    accounts: usize,
    /// Output directory (created if missing)
    #[arg(long)]
    out: PathBuf,
    /// Seed for every key: the same seed gives the same keys and genesis hash
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Node i serves its API on base-port + 2i and p2p on base-port + 2i + 1
    #[arg(long, default_value_t = DEFAULT_BASE_PORT)]
    base_port: u16,
    /// Chain id
    #[arg(long, default_value = "localnet")]
    chain_id: String,
    /// Genesis time in ms since the Unix epoch (fixed by default so runs are reproducible)
    #[arg(long, default_value_t = DEFAULT_GENESIS_TIME_MS)]
    genesis_time_ms: u64,
    /// Balance of each dev account
    #[arg(long, default_value_t = DEFAULT_ACCOUNT_BALANCE)]
    account_balance: u64,
    /// Smallest fee a transaction may pay
    #[arg(long, default_value_t = ledger_core::ConsensusParams::default().min_fee)]
    min_fee: u64,
    /// Reset an existing localnet in --out: removes its genesis.json, localnet.json, accounts/ and node*/
    #[arg(long)]
    force: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line. Library errors already quote their source in their message, so a
/// cause whose text the line already holds is skipped rather than repeated.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "genesis", &mut std::io::stdout());
            Ok(())
        }
        Command::New(args) => new(args),
        Command::AddValidator(args) => add_validator(args),
        Command::AddAccount(args) => add_account(args),
        Command::Validate { file } => {
            let genesis = genesis::read_final(&file)?;
            println!(
                "ok: {} is a valid genesis for chain {} (hash {}, {} validators, {} accounts)",
                file.display(),
                genesis.chain_id,
                genesis.hash(),
                genesis.validators.len(),
                genesis.accounts.len()
            );
            Ok(())
        }
        Command::Show { file } => {
            print!("{}", describe(&genesis::read_draft(&file)?));
            Ok(())
        }
        Command::Localnet(args) => localnet(args),
    }
}

fn new(args: NewArgs) -> Result<()> {
    if !args.force && args.out.exists() {
        anyhow::bail!("{} already exists; pass --force to overwrite it", args.out.display());
    }
    let genesis_time_ms = match args.genesis_time_ms {
        Some(t) => t,
        None => {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).context("system clock is before 1970")?;
            u64::try_from(now.as_millis()).context("system clock is out of range")?
        }
    };
    let draft = genesis::new_draft(&args.chain_id, genesis_time_ms, args.min_fee)?;
    genesis::write_genesis(&args.out, &draft)?;
    println!(
        "wrote draft {} (chain {}); next: add-validator, add-account, validate",
        args.out.display(),
        args.chain_id
    );
    Ok(())
}

fn add_validator(args: AddValidatorArgs) -> Result<()> {
    let public_key = match (&args.address, &args.key_file) {
        (Some(address), _) => genesis::parse_address(address)?,
        (None, Some(path)) => genesis::read_plaintext_key(path)?.public(),
        (None, None) => anyhow::bail!("give --address or --key-file"),
    };
    let mut draft = genesis::read_draft(&args.file)?;
    let validator = Validator { public_key, power: args.power, moniker: args.moniker };
    genesis::add_validator(&mut draft, validator)?;
    genesis::write_genesis(&args.file, &draft)?;
    println!("added validator {public_key} with power {} to {}", args.power, args.file.display());
    Ok(())
}

fn add_account(args: AddAccountArgs) -> Result<()> {
    let address = genesis::parse_address(&args.address)?;
    let mut draft = genesis::read_draft(&args.file)?;
    genesis::add_account(&mut draft, GenesisAccount { address, balance: args.amount })?;
    genesis::write_genesis(&args.file, &draft)?;
    println!("added account {address} with balance {} to {}", args.amount, args.file.display());
    Ok(())
}

fn localnet(args: LocalnetArgs) -> Result<()> {
    let opts = LocalnetOptions {
        validators: args.validators,
        accounts: args.accounts,
        out: args.out,
        seed: args.seed,
        base_port: args.base_port,
        chain_id: args.chain_id,
        genesis_time_ms: args.genesis_time_ms,
        account_balance: args.account_balance,
        min_fee: args.min_fee,
        force: args.force,
    };
    let manifest = genesis::create_localnet(&opts)?;
    println!(
        "wrote localnet {} in {}: {} nodes, {} dev accounts (UNSAFE dev keys), genesis hash {}",
        manifest.chain_id,
        opts.out.display(),
        manifest.nodes.len(),
        manifest.accounts.len(),
        manifest.genesis_hash
    );
    for node in &manifest.nodes {
        println!("  {}  api {}  p2p {}", node.name, node.api_url, node.p2p_addr);
    }
    Ok(())
}

fn describe(genesis: &Genesis) -> String {
    let mut out = String::new();
    let total_power: u128 = genesis.validators.iter().map(|v| u128::from(v.power)).sum();
    out.push_str(&format!("chain id:       {}\n", genesis.chain_id));
    out.push_str(&format!("genesis hash:   {}\n", genesis.hash()));
    out.push_str(&format!(
        "genesis time:   {} ({} ms)\n",
        ledger_core::time::rfc3339_ms(genesis.genesis_time_ms),
        genesis.genesis_time_ms
    ));
    if genesis.validators.is_empty() {
        out.push_str("validators:     0 (draft: add at least one before `validate`)\n");
    } else {
        out.push_str(&format!("validators:     {} (total power {total_power})\n", genesis.validators.len()));
    }
    for v in &genesis.validators {
        out.push_str(&format!("  {}  power {:>6}  {}\n", v.public_key, v.power, v.moniker));
    }
    out.push_str(&format!("accounts:       {}\n", genesis.accounts.len()));
    out.push_str(&format!("total supply:   {}\n", genesis.total_supply()));
    out.push_str(&format!("min fee:        {}\n", genesis.params.min_fee));
    out
}
