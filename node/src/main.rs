//! ledgerd: the validator and full-node binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use std::io::IsTerminal;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use node::config::{self, Override};
use node::keys;

#[derive(Parser)]
#[command(name = "ledgerd", version, about = "BFT ledger validator and full node", after_help = AFTER_HELP)]
struct Cli {
    /// Log line format on stderr (filter with LEDGERD_LOG, default `info`).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `ledgerd --help`'s epilogue: exit codes and environment variables.
const AFTER_HELP: &str = "Exit codes:
  0  success (a node or localnet stopped by Ctrl-C or SIGTERM exits 0 after a clean shutdown)
  1  any error: one line `error: what: why` on stderr (bad config, home in use, refused database, ...)
  2  usage: unknown command or flag, bad flag value
  10-18  `ledgerd doctor`: the first check that failed (`ledgerd doctor --help` lists them)

Environment:
  LEDGERD_HOME               --home of the commands that take one
  LEDGERD_LOG                log filter (default `info`; e.g. `debug`, `node=debug,libp2p=warn`)
  LEDGERD_<SECTION>_<KEY>    any config.toml key, e.g. LEDGERD_API_LISTEN_ADDR, LEDGERD_MEMPOOL_MAX_TXS
                             (flags win over the environment, the environment over config.toml)
  NO_COLOR                   no colours in log lines (they are off anyway when stderr is not a terminal)
  MALLOC_ARENA_MAX           glibc malloc arenas (default here: the number of cores)
  MALLOC_MMAP_THRESHOLD_     glibc: allocations of this many bytes and more are mapped (default here: 32 MiB)
  MALLOC_TRIM_THRESHOLD_     glibc: free bytes the main heap keeps at its top (default here: 128 MiB)";

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Args)]
struct HomeArg {
    /// Node home directory (config.toml, keys, data).
    #[arg(long, env = "LEDGERD_HOME")]
    home: PathBuf,
}

#[derive(Args)]
struct StartArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Overrides `genesis_file`.
    #[arg(long)]
    genesis_file: Option<String>,
    /// Overrides `moniker`.
    #[arg(long)]
    moniker: Option<String>,
    /// Overrides `data_dir`.
    #[arg(long)]
    data_dir: Option<String>,
    /// Overrides `p2p.listen_addr` (a multiaddr).
    #[arg(long)]
    p2p_listen_addr: Option<String>,
    /// Overrides `p2p.bootstrap_peers` (repeat for several).
    #[arg(long)]
    bootstrap_peer: Vec<String>,
    /// Overrides `api.listen_addr` (IP:port).
    #[arg(long)]
    api_listen_addr: Option<String>,
    /// Overrides any config key: `--set mempool.max_txs=1000`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Start although the database is below the height this node had committed (its high-water mark):
    /// the missing blocks are synced again. Without it a validator refuses to start on a rewound database.
    #[arg(long)]
    accept_rewind: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create a home directory: p2p key, validator key and a commented config.toml.
    Init {
        #[command(flatten)]
        home: HomeArg,
        /// Human-readable node name.
        #[arg(long, default_value = "node")]
        moniker: String,
    },
    /// Run the node (a full node when there is no validator key).
    Start(StartArgs),
    /// Print this node's libp2p peer id.
    ShowNodeId(HomeArg),
    /// Print this node's validator address (error if it has no validator key).
    ShowValidator(HomeArg),
    /// Create the key a key rotation switches to (next_validator_key_file) and print its address. Then
    /// propose the rotation with `wallet validator propose-rotate --new-key` on that file: once it takes
    /// effect, the running node signs with the new key from the activation height on, without a restart.
    NextKey(HomeArg),
    /// Run a local test network: every validator in this one process (creates the files on first use).
    Localnet(LocalnetCmd),
    /// Print the version and protocol version.
    Version,
    /// Delete the chain database (data/db) so the node resyncs from peers. Keeps the keys, the config, the
    /// signer state and the high-water mark, so a validator keeps its double-sign guard.
    ResetData(HomeArg),
    /// Move a validator's signing history between machines (stop the node first).
    #[command(subcommand)]
    Signer(SignerCmd),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Check this home and its running node (config, genesis, keys, signer state, disk, peers, node,
    /// clock, sync): one line per check with what to do, exit code 0 only when none fails. Read-only.
    #[command(after_help = node::doctor::HELP)]
    Doctor(DoctorArgs),
    /// Print a shell completion script: `ledgerd completions bash > /etc/bash_completion.d/ledgerd`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum SignerCmd {
    /// Print the signer state (last signed message, lock, look-back floor) as a checked JSON document.
    Export(HomeArg),
    /// Import a document written by `export`: for this home's key and chain only, and only ever raising
    /// the guard (the state that signed further wins; floors take the higher).
    Import {
        /// The exported document.
        file: PathBuf,
        #[command(flatten)]
        home: HomeArg,
    },
}

#[derive(Args)]
struct DoctorArgs {
    #[command(flatten)]
    home: HomeArg,
    /// Overrides any config key for the checks, as `ledgerd start --set` does.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Deadline of each network step in ms: every API request, and the probe of all bootstrap peers.
    #[arg(long, value_name = "MS", default_value_t = 5000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    timeout_ms: u64,
    /// `clock` fails when this clock and the latest block's time differ by more than this (warns beyond half).
    /// The default is how far ahead of a validator's clock a proposal may be before it is refused.
    #[arg(long, value_name = "MS", default_value_t = node::doctor::DEFAULT_MAX_CLOCK_SKEW_MS)]
    max_clock_skew_ms: u64,
    /// `sync` fails when a bootstrap peer has a block this many heights above the node's.
    #[arg(long, value_name = "BLOCKS", default_value_t = node::doctor::DEFAULT_MAX_SYNC_LAG_BLOCKS,
        value_parser = clap::value_parser!(u64).range(1..))]
    max_sync_lag_blocks: u64,
    /// Pretend this machine's clock is off by this many ms (negative: behind). For tests of the clock check.
    #[arg(long, value_name = "MS", hide = true, allow_negative_numbers = true, default_value_t = 0)]
    clock_offset_ms: i64,
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Print every effective setting: key, value, default and origin (default, file, environment variable
    /// or flag), after config.toml, LEDGERD_<SECTION>_<KEY> variables and --set flags. A config that
    /// `ledgerd start` would refuse is refused with the same error (exit 1).
    Explain {
        #[command(flatten)]
        home: HomeArg,
        /// Overrides any config key, as `ledgerd start --set` does: `--set mempool.max_txs=1000`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// A JSON array of {key, value, default, origin} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct LocalnetCmd {
    /// Number of validators when creating [default: 4; with --reset: as the existing localnet].
    #[arg(long)]
    validators: Option<usize>,
    /// Number of funded dev accounts when creating [default: 10; with --reset: as the existing localnet].
    #[arg(long)]
    accounts: Option<usize>,
    /// Localnet directory: genesis.json, localnet.json, node{i}/, accounts/.
    #[arg(long, default_value = "./localnet")]
    home: PathBuf,
    /// Node i serves its API on P + 2i and p2p on P + 2i + 1 [default: 26600; on resume and with --reset:
    /// the existing localnet's].
    #[arg(long, value_name = "P")]
    base_port: Option<u16>,
    /// Delete the existing localnet in --home (keys, genesis and chain data) and create a new one, with the
    /// existing one's validators, accounts and ports unless given.
    #[arg(long)]
    reset: bool,
    /// Pace of the chain, in ms: a block at most every MS under load and an empty block about every MS when
    /// idle (consensus.min_block_interval_ms and consensus.empty_block_interval_ms; default: the config's,
    /// 40 and 1000). Not stored: give it at every start.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    block_time: Option<u64>,
}

/// glibc malloc settings, each unless the operator set it (`MALLOC_*` variables, or `GLIBC_TUNABLES` for the
/// thresholds). Best effort: glibc refuses a value it cannot take and keeps its own.
///
/// Arenas are capped at the number of cores (glibc's default is 8 per core). Measured: a validator at 20,000
/// tx/s peaked at 321 MiB RSS with the default and 247 MiB with 2 arenas, at the same throughput; the rest was
/// freed memory spread over idle arenas.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
        let arenas = libc::c_int::try_from(cores.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets an allocator parameter; it is called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
    // Fixed mmap and trim thresholds (setting either also stops glibc from moving them). A proposal of 4,096
    // transactions is ~700 KiB, and libp2p copies each message it sends or receives a few times. With the
    // 256 KiB mmap threshold set here before, each such buffer was a fresh mapping: every copy faulted its
    // pages in, zeroed and unmapped them, ~5 % of a validator's CPU at full speed, in the kernel (session 25's
    // profile). From the heap they reuse memory already resident. 32 MiB is the largest threshold glibc takes
    // on 64-bit. The trim threshold, 128 MiB, is the free memory the main heap keeps at its top before giving
    // it back; it exceeds a thread arena's whole heap (64 MiB at most), so those keep theirs. Measured, 4
    // validators at full speed, three runs each, alternated: 131-134 µs of CPU a transaction against 132-165,
    // peak RSS 145-169 MiB a node against 112-139.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() && !tunables.contains("glibc.malloc.mmap_threshold") {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
            }
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() && !tunables.contains("glibc.malloc.trim_threshold") {
            // SAFETY: as above.
            unsafe {
                libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024 * 1024);
            }
        }
    }
}

/// Errors print as one line with their causes (`error: what: why`), never with a backtrace, and exit 1.
fn main() -> std::process::ExitCode {
    match run_cli() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The exit code on success is 0, except for `doctor`, whose code says which check failed.
fn run_cli() -> anyhow::Result<std::process::ExitCode> {
    tune_malloc();
    let cli = Cli::parse();
    let log_format = cli.log_format;
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ledgerd", &mut std::io::stdout());
        }
        Command::Version => {
            println!("ledgerd {} (protocol {})", env!("CARGO_PKG_VERSION"), ledger_core::PROTOCOL_VERSION);
        }
        Command::Init { home, moniker } => init(&home.home, &moniker)?,
        Command::ShowNodeId(home) => {
            let cfg = load_config(&home.home, &[])?;
            let kp = keys::load_p2p_key(&cfg.p2p_key_file)?;
            println!("{}", keys::peer_id(&kp));
        }
        Command::ShowValidator(home) => {
            let cfg = load_config(&home.home, &[])?;
            match keys::load_validator_key(&cfg.validator_key_file)? {
                Some(k) => println!("{}", k.public().to_address_string()),
                None => bail!("no validator key at {}: this is a full node", cfg.validator_key_file.display()),
            }
        }
        Command::NextKey(home) => next_key(&home.home)?,
        Command::Start(args) => {
            let overrides = start_overrides(&args)?;
            let cfg = load_config(&args.home.home, &overrides)?;
            init_tracing(log_format);
            node::run::run(cfg, args.accept_rewind)?;
        }
        Command::ResetData(home) => reset_data(&home.home)?,
        Command::Config(ConfigCmd::Explain { home, set, json }) => config_explain(&home.home, &set, json)?,
        Command::Doctor(args) => return doctor(&args),
        Command::Signer(SignerCmd::Export(home)) => signer_export(&home.home)?,
        Command::Signer(SignerCmd::Import { file, home }) => signer_import(&home.home, &file)?,
        Command::Localnet(a) => {
            // The banner comes first, then the log lines: tracing starts once the banner is printed.
            node::localnet::run(
                node::localnet::LocalnetArgs {
                    validators: a.validators,
                    accounts: a.accounts,
                    home: a.home,
                    base_port: a.base_port,
                    reset: a.reset,
                    block_time_ms: a.block_time,
                },
                || init_tracing(log_format),
            )?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn start_overrides(args: &StartArgs) -> anyhow::Result<Vec<Override>> {
    let mut o = Vec::new();
    let mut opt = |key: &str, v: &Option<String>, flag: &str| {
        if let Some(v) = v {
            o.push(Override::new(key, v.clone(), flag));
        }
    };
    opt("genesis_file", &args.genesis_file, "--genesis-file");
    opt("moniker", &args.moniker, "--moniker");
    opt("data_dir", &args.data_dir, "--data-dir");
    opt("p2p.listen_addr", &args.p2p_listen_addr, "--p2p-listen-addr");
    opt("api.listen_addr", &args.api_listen_addr, "--api-listen-addr");
    if !args.bootstrap_peer.is_empty() {
        o.push(Override::new("p2p.bootstrap_peers", args.bootstrap_peer.join(","), "--bootstrap-peer"));
    }
    o.extend(set_overrides(&args.set)?);
    Ok(o)
}

/// The process environment as text pairs (variables that are not UTF-8 cannot be config values).
fn env_pairs() -> Vec<(String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))).collect()
}

fn load_config(home: &Path, overrides: &[Override]) -> anyhow::Result<config::Config> {
    Ok(config::load(home, &env_pairs(), overrides)?)
}

fn set_overrides(set: &[String]) -> anyhow::Result<Vec<Override>> {
    set.iter().map(|s| Override::parse_set(s).map_err(anyhow::Error::msg)).collect()
}

/// `ledgerd config explain`: the settings as a table with aligned columns, or as JSON.
fn config_explain(home: &Path, set: &[String], json: bool) -> anyhow::Result<()> {
    let (_, settings) = config::explain(home, &env_pairs(), &set_overrides(set)?)?;
    if json {
        return print_out(&format!("{}\n", serde_json::to_string_pretty(&settings)?));
    }
    let header =
        config::Setting { key: "KEY", value: "VALUE".into(), default: "DEFAULT".into(), origin: "ORIGIN".into() };
    let rows: Vec<&config::Setting> = std::iter::once(&header).chain(&settings).collect();
    // A column is as wide as its widest cell up to COLUMN_MAX; a longer cell (a list of bootstrap peers)
    // runs over on its own row rather than widening every row.
    const COLUMN_MAX: usize = 40;
    let width =
        |f: fn(&config::Setting) -> &str| rows.iter().map(|s| f(s).chars().count()).max().unwrap_or(0).min(COLUMN_MAX);
    let (wk, wv, wd) = (width(|s| s.key), width(|s| &s.value), width(|s| &s.default));
    let mut out = String::new();
    for s in rows {
        out.push_str(&format!("{:wk$}  {:wv$}  {:wd$}  {}\n", s.key, s.value, s.default, s.origin));
    }
    print_out(&out)
}

/// `ledgerd doctor`: every finding printed as it is made; the exit code of the first failing check. A
/// config that does not load is the `config` check's failure, not an error of the command.
fn doctor(args: &DoctorArgs) -> anyhow::Result<std::process::ExitCode> {
    let config = config::load(&args.home.home, &env_pairs(), &set_overrides(&args.set)?);
    let opts = node::doctor::Options {
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        max_clock_skew_ms: args.max_clock_skew_ms,
        max_sync_lag_blocks: args.max_sync_lag_blocks,
        clock_offset_ms: args.clock_offset_ms,
    };
    let mut write_error = None;
    let findings = node::doctor::run(config, &opts, &mut |f| {
        if write_error.is_none()
            && let Err(e) = print_out(&format!("{f}\n"))
        {
            write_error = Some(e);
        }
    });
    if let Some(e) = write_error {
        return Err(e);
    }
    Ok(std::process::ExitCode::from(node::doctor::exit_code(&findings)))
}

/// Write `text` to stdout; a closed pipe (`| head`) ends the output quietly instead of panicking as
/// `println!` does.
fn print_out(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(anyhow::Error::new(e).context("writing to stdout")),
        _ => Ok(()),
    }
}

fn next_key(home: &Path) -> anyhow::Result<()> {
    let cfg = load_config(home, &[])?;
    let current = keys::load_validator_key(&cfg.validator_key_file)?;
    let path = &cfg.next_validator_key_file;
    if let Some(existing) = keys::load_validator_key(path)? {
        bail!(
            "{} already holds the next key {}: refusing to overwrite it (a rotation to it may be pending). Move it aside first if it is not needed",
            path.display(),
            existing.public().to_address_string()
        );
    }
    let key = ledger_core::Keypair::from_seed(&keys::random_seed());
    let text =
        ledger_core::keyfile::to_plaintext_json(&key, Some("plaintext next validator key: keep this file secret"));
    keys::write_new_file(path, &format!("{text}\n"), true)?;
    println!("next key:  {}", key.public().to_address_string());
    println!("written:   {}", path.display());
    if let Some(k) = current {
        println!(
            "next: wallet validator propose-rotate --old {} --new-key {} --node http://THIS_NODES_API, then the approvals; the node switches keys by itself at the activation height",
            k.public().to_address_string(),
            path.display()
        );
    }
    Ok(())
}

fn init(home: &Path, moniker: &str) -> anyhow::Result<()> {
    if moniker.len() > ledger_core::params::MONIKER_BYTES_MAX {
        bail!("moniker is longer than {} bytes", ledger_core::params::MONIKER_BYTES_MAX);
    }
    std::fs::create_dir_all(home).with_context(|| format!("cannot create {}", home.display()))?;
    let config_path = home.join("config.toml");
    if config_path.exists() {
        bail!("{} already exists; refusing to overwrite an initialised home", config_path.display());
    }
    let p2p_seed = keys::random_seed();
    keys::write_new_file(&home.join("p2p_key.json"), &format!("{}\n", genesis::p2p_key_json(&p2p_seed)), true)?;
    let validator = ledger_core::Keypair::from_seed(&keys::random_seed());
    let text =
        ledger_core::keyfile::to_plaintext_json(&validator, Some("plaintext validator key: keep this file secret"));
    keys::write_new_file(&home.join("validator_key.json"), &format!("{text}\n"), true)?;
    keys::write_new_file(&config_path, &config::template(moniker), false)?;
    println!("initialised {}", home.display());
    println!("node id:   {}", genesis::p2p_key::peer_id_from_seed(&p2p_seed));
    println!("validator: {}", validator.public().to_address_string());
    println!(
        "next: put the chain's genesis file at {} (or set genesis_file), then `ledgerd start --home {}`",
        home.join("genesis.json").display(),
        home.display()
    );
    Ok(())
}

fn reset_data(home: &Path) -> anyhow::Result<()> {
    let cfg = load_config(home, &[])?;
    let _lock = node::safety::lock_data_dir(&cfg.data_dir)?;
    let db = cfg.data_dir.join("db");
    if !db.exists() {
        println!("nothing to delete: {} does not exist", db.display());
        return Ok(());
    }
    std::fs::remove_dir_all(&db).with_context(|| format!("cannot delete {}", db.display()))?;
    println!("deleted the chain database {}", db.display());
    println!(
        "kept: keys, config.toml, {} and {} (a validator keeps its double-sign guard)",
        cfg.data_dir.join(node::safety::signer::FILE_NAME).display(),
        cfg.data_dir.join(node::safety::high_water::FILE_NAME).display()
    );
    println!("next: `ledgerd start --home {} --accept-rewind` syncs the chain again from peers", home.display());
    Ok(())
}

/// Genesis chain id and validator key of a home, for the signer commands.
fn signer_of_home(home: &Path) -> anyhow::Result<(config::Config, String, ledger_core::PublicKey)> {
    let cfg = load_config(home, &[])?;
    let setup_genesis = std::fs::read_to_string(&cfg.genesis_file)
        .with_context(|| format!("cannot read genesis file {}", cfg.genesis_file.display()))?;
    if setup_genesis.len() > ledger_core::genesis::GENESIS_BYTES_MAX {
        bail!(
            "genesis file {} is larger than {} bytes",
            cfg.genesis_file.display(),
            ledger_core::genesis::GENESIS_BYTES_MAX
        );
    }
    let genesis = ledger_core::Genesis::from_json(&setup_genesis)
        .with_context(|| format!("genesis file {} is invalid", cfg.genesis_file.display()))?;
    let Some(key) = keys::load_validator_key(&cfg.validator_key_file)? else {
        bail!("no validator key at {}: only a validator has a signer state", cfg.validator_key_file.display());
    };
    Ok((cfg, genesis.chain_id, key.public()))
}

fn signer_export(home: &Path) -> anyhow::Result<()> {
    use node::safety::signer::{SignerDocument, SignerFile};
    let (cfg, chain_id, key) = signer_of_home(home)?;
    let _lock = node::safety::lock_data_dir(&cfg.data_dir)?;
    let file = SignerFile::new(&cfg.data_dir, &chain_id, key);
    let Some(state) = file.load()? else {
        bail!("no signer state at {}: this validator has not signed yet on this home", file.path().display());
    };
    print!("{}", SignerDocument::new(&chain_id, &key, &state).to_json());
    Ok(())
}

fn signer_import(home: &Path, path: &Path) -> anyhow::Result<()> {
    use node::safety::signer::{self, SignerDocument, SignerFile};
    let (cfg, chain_id, key) = signer_of_home(home)?;
    let _lock = node::safety::lock_data_dir(&cfg.data_dir)?;
    let text = match node::safety::read_bounded(path, signer::FILE_BYTES_MAX)? {
        Some(t) => t,
        None => bail!("{} does not exist", path.display()),
    };
    let incoming = SignerDocument::parse(&text, path, &chain_id, &key)?;
    let file = SignerFile::new(&cfg.data_dir, &chain_id, key);
    let current = file.load()?;
    let merged = signer::merge(current.clone(), incoming);
    if current.as_ref() == Some(&merged) {
        println!("{} already covers {}: nothing changed", file.path().display(), path.display());
        return Ok(());
    }
    file.store(&merged)?;
    println!(
        "imported into {}: last signed {:?}, look-back floor {}",
        file.path().display(),
        merged.position().map(|(h, r, s)| format!("height {h} round {} {s:?}", r.0)),
        merged.floor()
    );
    Ok(())
}

/// libp2p's request-response handler warns once per inbound stream it drops when a connection has
/// [`node::p2p::SYNC_STREAMS_PER_CONNECTION`] open: a peer flooding sync requests would write tens of
/// thousands of those lines, so that target is kept to errors unless `LEDGERD_LOG` names it; the node's own
/// rate-limited WARN, `ledger_peer_penalties_total{reason="sync_abuse"}` and the ban report the abuse.
const QUIET_TARGET: &str = "libp2p_request_response::handler";

fn init_tracing(format: LogFormat) {
    let spec = std::env::var("LEDGERD_LOG").unwrap_or_else(|_| "info".to_string());
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&spec).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !spec.contains("libp2p_request_response")
        && let Ok(d) = format!("{QUIET_TARGET}=error").parse()
    {
        filter = filter.add_directive(d);
    }
    // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org): a log file or a pipe
    // gets plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).with_span_list(false).try_init(),
    };
}
