//! `wallet`: the users' CLI. Keys (encrypted keystore or plaintext dev keys), balances, transfers, offline
//! signing, and trust-minimised verification that a transaction is committed or that an account holds a
//! balance (`balance --verify`).
//!
//! Output: in `--output text` (default) results go to stdout as `key: value` lines; in `--output json`
//! stdout carries exactly one JSON document, a result or `{"error": {"kind", "message", "exit_code"}}`.
//! Prompts, warnings and errors go to stderr; an error is one line `error: …` saying what happened and
//! what to do. Exit codes are listed in [`wallet_cli::error::ErrorKind`] and in `wallet --help`.

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use ledger_core::genesis::{GENESIS_BYTES_MAX, validate_chain_id};
use ledger_core::params::{MEMO_BYTES_MAX_CEILING, TX_BYTES_MAX_CEILING};
use ledger_core::{Genesis, Hash, PublicKey, SignedTransaction, Transaction};
use serde_json::{Value, json};
use wallet_cli::client::{NodeClient, Reason, TxStatus};
use wallet_cli::error::{EXIT_CODES_HELP, ErrorKind, WalletError};
use wallet_cli::files::{self, PasswordSource};
use wallet_cli::keystore::{self, KDF_DEFAULT, KeyFile};
use wallet_cli::{trusted, verify};

const DEFAULT_NODE: &str = "http://127.0.0.1:26600";
const PLAINTEXT_WARNING: &str =
    "UNENCRYPTED key: anyone who can read this file can spend its funds. For development only.";
/// How often `--wait` asks the node about a pending transaction.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// Shortest password accepted for a new keystore, in characters.
const PASSWORD_CHARS_MIN: usize = 8;
/// A fee above this many times the chain's minimum fee needs a confirmation (or `--yes`).
const LARGE_FEE_FACTOR: u64 = 100;
/// Environment variables the wallet reads, for `--help`.
const ENV_HELP: &str = "Environment:
  LEDGER_NODE      node API base URL (instead of --node)
  LEDGER_TIMEOUT   request deadline in seconds (instead of --timeout)
  WALLET_PASSWORD  keystore password (--password-file wins; otherwise a hidden prompt)";

#[derive(Parser)]
#[command(name = "wallet", version, about = "Ledger wallet: keys, transfers and trust-minimised confirmation")]
#[command(after_help = const_format_help())]
struct Cli {
    /// Node API base URL (plain http), for the commands that talk to a node (also accepted after them).
    #[arg(long, env = "LEDGER_NODE", default_value = DEFAULT_NODE)]
    node: String,
    /// Output format: text lines, or exactly one JSON document on stdout.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Overall deadline of each request to the node, in seconds (connect, answer and its whole body); a
    /// node that does not complete its answer in time is a node error (exit 7).
    #[arg(long, env = "LEDGER_TIMEOUT", default_value_t = 30, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

/// `--help`'s epilogue: exit codes, then environment variables.
fn const_format_help() -> String {
    format!("{EXIT_CODES_HELP}\n\n{ENV_HELP}")
}

/// Where a keystore password comes from, for the commands that read or write one.
#[derive(Args, Clone)]
struct PasswordArgs {
    /// Read the keystore password from this file (otherwise WALLET_PASSWORD, otherwise a hidden prompt).
    #[arg(long)]
    password_file: Option<PathBuf>,
}

impl PasswordArgs {
    fn source(&self) -> PasswordSource<'_> {
        PasswordSource { file: self.password_file.as_deref() }
    }
}

/// `--node` and `--timeout` after a command that talks to a node (`wallet balance ADDR --node URL`): they win
/// over the ones given before the command and over the environment. Offline commands do not have them.
#[derive(Args, Clone, Default)]
struct NodeArgs {
    /// Node API base URL (plain http); the same as --node before the command, and wins over it.
    #[arg(long = "node", value_name = "URL")]
    node: Option<String>,
    /// Overall deadline of each request to the node, in seconds; the same as --timeout before the command.
    #[arg(long = "timeout", value_name = "SECS")]
    timeout: Option<u64>,
}

/// `--yes` for the commands that ask before doing something unusual.
#[derive(Args, Clone, Copy)]
struct ConfirmArgs {
    /// Do not ask for confirmation of an unusual transfer (a fee above 100 times the chain's minimum, a
    /// transfer to the sender itself). Without a terminal such a transfer is refused unless --yes is given.
    #[arg(long, short = 'y')]
    yes: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new key in an encrypted keystore (Argon2id + XChaCha20-Poly1305, mode 0600).
    Keygen {
        /// Where to write the key file; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        /// Write an unencrypted plaintext key file instead (development only).
        #[arg(long)]
        insecure_plaintext: bool,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Print the address of a key file (read from the file: no password needed).
    Address {
        /// Key file (encrypted keystore or plaintext dev key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Import an existing key into a new encrypted keystore: from a plaintext key file (such as a localnet
    /// dev account) or from a file holding the 32-byte seed as 64 hex characters.
    Import {
        /// The plaintext key file or seed file to import.
        #[arg(long)]
        from: PathBuf,
        /// Where to write the new keystore; an existing file is never overwritten.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List the key files in a directory (address, kind, file) without asking for any password.
    Keys {
        /// Directory to list.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Print a shell completion script: `wallet completions bash > /etc/bash_completion.d/wallet`.
    Completions {
        /// The shell to complete for.
        shell: clap_complete::Shell,
    },
    /// Show an account's balance, nonce and number of pending transactions; with --verify, the balance and
    /// nonce proven against a certified block header instead (no pending count: it is not on chain).
    Balance {
        /// Address to look up (or use --key).
        #[arg(required_unless_present = "key", conflicts_with = "key")]
        address: Option<String>,
        /// Key file whose (stated) address to look up; no password needed.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Check the balance locally instead of trusting the node: a state proof against the state root of
        /// a block header certified by the validator set followed from the genesis file (as `wallet verify`).
        #[arg(long, requires = "genesis")]
        verify: bool,
        /// With --verify: the chain's genesis.json (chain id and the validator set the checks start from).
        #[arg(long, requires = "verify")]
        genesis: Option<PathBuf>,
        /// With --verify: where to keep the last validator set verified (as `wallet verify`).
        #[arg(long, value_name = "FILE", requires = "verify")]
        trusted_state: Option<PathBuf>,
        /// With --verify: neither read nor write a trusted-state file.
        #[arg(long, conflicts_with = "trusted_state", requires = "verify")]
        no_trusted_state: bool,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Sign and submit a transfer, reading chain id, nonce and balance from the node.
    Transfer(TransferArgs),
    /// Sign a transfer offline (no network) and write its hex to a file.
    Sign(SignArgs),
    /// Broadcast a transaction signed with `wallet sign`.
    Send {
        /// File holding the signed transaction's hex.
        tx_file: PathBuf,
        #[command(flatten)]
        wait: WaitArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Show a transaction's status.
    Tx {
        /// Transaction id (64 hex characters).
        id: String,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Show a block.
    Block {
        /// Height, or `latest`.
        #[arg(default_value = "latest")]
        height: String,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Show the node's status.
    Status {
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Validator-set changes: propose one, approve one with a validator key, show what is pending.
    #[command(subcommand)]
    Validator(ValidatorCmd),
    /// Check locally, from canonical bytes, that a transaction is committed on the chain of a genesis file.
    Verify {
        /// Transaction id (64 hex characters).
        id: String,
        /// The chain's genesis.json: chain id and the validator set the checks start from.
        #[arg(long)]
        genesis: PathBuf,
        /// Where to keep the last validator set verified, so the next run starts from it (default:
        /// $XDG_STATE_HOME/ledger-wallet/trusted-CHAIN-GENESIS.json, else under ~/.local/state).
        #[arg(long, value_name = "FILE")]
        trusted_state: Option<PathBuf>,
        /// Neither read nor write a trusted-state file: start from the genesis file alone.
        #[arg(long, conflicts_with = "trusted_state")]
        no_trusted_state: bool,
        #[command(flatten)]
        net: NodeArgs,
    },
}

impl Command {
    /// The node flags given after the command, for the commands that talk to a node.
    fn node_args(&self) -> Option<&NodeArgs> {
        match self {
            Command::Balance { net, .. }
            | Command::Send { net, .. }
            | Command::Tx { net, .. }
            | Command::Block { net, .. }
            | Command::Status { net }
            | Command::Verify { net, .. } => Some(net),
            Command::Transfer(t) => Some(&t.net),
            Command::Validator(v) => Some(v.net()),
            _ => None,
        }
    }
}

#[derive(Subcommand)]
enum ValidatorCmd {
    /// Propose adding a validator. Run by the operator of the new key: it signs the key's proof of possession.
    ProposeAdd {
        /// Key file of the new validator's consensus key (its node's validator key file).
        #[arg(long)]
        new_key: PathBuf,
        /// Voting power of the new validator.
        #[arg(long)]
        power: u64,
        /// Human-readable name (at most 64 bytes).
        #[arg(long, default_value = "")]
        moniker: String,
        #[command(flatten)]
        common: ProposeArgs,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Propose removing a validator.
    ProposeRemove {
        /// Address of the validator to remove.
        #[arg(long)]
        validator: String,
        #[command(flatten)]
        common: ProposeArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Propose changing a validator's voting power.
    ProposePower {
        /// Address of the validator.
        #[arg(long)]
        validator: String,
        /// Its new voting power.
        #[arg(long)]
        power: u64,
        #[command(flatten)]
        common: ProposeArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Propose replacing a validator's consensus key. Run by its operator, who holds the new key; the change
    /// needs the old key's own approval too.
    ProposeRotate {
        /// Address (current key) of the validator.
        #[arg(long)]
        old: String,
        /// Key file of the new consensus key.
        #[arg(long)]
        new_key: PathBuf,
        #[command(flatten)]
        common: ProposeArgs,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Approve a change with a validator's consensus key and submit the approval to the node.
    Approve {
        /// The change_hex printed by a propose command.
        change: String,
        /// The validator's key file (its node's validator key).
        #[arg(long)]
        key: PathBuf,
        #[command(flatten)]
        password: PasswordArgs,
        #[command(flatten)]
        net: NodeArgs,
    },
    /// Show the current and next validator sets, pending changes and jailed validators.
    Show {
        #[command(flatten)]
        net: NodeArgs,
    },
}

impl ValidatorCmd {
    fn net(&self) -> &NodeArgs {
        match self {
            ValidatorCmd::ProposeAdd { net, .. }
            | ValidatorCmd::ProposeRemove { net, .. }
            | ValidatorCmd::ProposePower { net, .. }
            | ValidatorCmd::ProposeRotate { net, .. }
            | ValidatorCmd::Approve { net, .. }
            | ValidatorCmd::Show { net } => net,
        }
    }
}

#[derive(Args, Clone, Copy)]
struct ProposeArgs {
    /// The change may be approved for this many blocks after the node's current height.
    #[arg(long, default_value_t = 1000)]
    expires_in: u64,
    /// Distinguishes this change from an earlier one with the same action (re-adding a removed validator).
    #[arg(long, default_value_t = 0)]
    nonce: u64,
}

#[derive(Args)]
struct TransferArgs {
    /// Key file of the sender (encrypted keystore or plaintext dev key).
    #[arg(long)]
    key: PathBuf,
    /// Recipient address (ldg…, checksummed).
    #[arg(long)]
    to: String,
    /// Amount to send, in the chain's smallest unit.
    #[arg(long)]
    amount: u64,
    /// Fee; default is the chain's minimum fee (from GET /genesis), or 1 if the node does not say.
    #[arg(long)]
    fee: Option<u64>,
    /// Free text stored with the transaction (at most 256 bytes on any chain).
    #[arg(long, default_value = "")]
    memo: String,
    /// Nonce; default is the account's next nonce, counting pending transactions.
    #[arg(long)]
    nonce: Option<u64>,
    /// The transaction expires this many blocks after the current height.
    #[arg(long, default_value_t = 1000)]
    expiry_blocks: u64,
    #[command(flatten)]
    wait: WaitArgs,
    #[command(flatten)]
    confirm: ConfirmArgs,
    #[command(flatten)]
    password: PasswordArgs,
    #[command(flatten)]
    net: NodeArgs,
}

#[derive(Args)]
struct SignArgs {
    /// Key file of the sender (encrypted keystore or plaintext dev key).
    #[arg(long)]
    key: PathBuf,
    /// Recipient address (ldg…, checksummed).
    #[arg(long)]
    to: String,
    /// Amount to send, in the chain's smallest unit.
    #[arg(long)]
    amount: u64,
    /// Fee (at least the chain's minimum fee, `params.min_fee` of its genesis).
    #[arg(long)]
    fee: u64,
    /// The sender's next nonce (`next_nonce` of `wallet balance`); offline, the wallet cannot look it up.
    #[arg(long)]
    nonce: u64,
    /// The chain's id (`chain_id` of `wallet status` or of its genesis).
    #[arg(long)]
    chain_id: String,
    /// Last height the transaction may be included at: pick it above the chain's current height (`height`
    /// of `wallet status`).
    #[arg(long)]
    expiry_height: u64,
    /// Free text stored with the transaction (at most 256 bytes on any chain).
    #[arg(long, default_value = "")]
    memo: String,
    /// Where to write the signed transaction's hex.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    password: PasswordArgs,
}

#[derive(Args, Clone, Copy)]
struct WaitArgs {
    /// Wait until the transaction is committed or rejected.
    #[arg(long)]
    wait: bool,
    /// How long --wait waits before giving up (exit code 8).
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
}

/// A command's result: one JSON document and its text rendering.
struct Outcome {
    json: Value,
    text: String,
}

/// A failure, with the result document to print anyway when there is one (a rejected transfer, a failed
/// verification).
struct Failure {
    error: WalletError,
    json: Option<Value>,
    text: Option<String>,
}

impl From<WalletError> for Box<Failure> {
    fn from(error: WalletError) -> Box<Failure> {
        Box::new(Failure { error, json: None, text: None })
    }
}

type CmdResult = Result<Outcome, Box<Failure>>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // Help and version exit 0; usage errors print clap's explanation and exit 2.
        Err(e) => e.exit(),
    };
    let output = cli.output;
    match run(cli) {
        Ok(outcome) => {
            match output {
                Output::Json => println!("{}", outcome.json),
                Output::Text => print!("{}", outcome.text),
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            let code = failure.error.kind.exit_code();
            match output {
                Output::Json => {
                    let doc = failure.json.unwrap_or_else(|| {
                        let mut error = json!({
                            "kind": failure.error.kind.name(),
                            "message": failure.error.message,
                            "exit_code": code,
                        });
                        if let Some(c) = &failure.error.node_code {
                            error["code"] = json!(c);
                        }
                        json!({ "error": error })
                    });
                    println!("{doc}");
                }
                Output::Text => {
                    if let Some(text) = failure.text {
                        print!("{text}");
                    }
                }
            }
            eprintln!("error: {}", failure.error.message);
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> CmdResult {
    let after = cli.command.node_args();
    let node = after.and_then(|n| n.node.clone()).unwrap_or(cli.node);
    let request_timeout = Duration::from_secs(after.and_then(|n| n.timeout).unwrap_or(cli.timeout));
    let client = || NodeClient::with_timeout(&node, request_timeout);
    match cli.command {
        Command::Keygen { out, insecure_plaintext, password } => keygen(&out, insecure_plaintext, &password.source()),
        Command::Address { key } => {
            let address = key_address(&key)?.to_address_string();
            Ok(Outcome { text: format!("{address}\n"), json: json!({ "address": address }) })
        }
        Command::Import { from, out, password } => import(&from, &out, &password.source()),
        Command::Keys { dir } => list_keys(&dir),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "wallet", &mut script);
            let text = String::from_utf8_lossy(&script).into_owned();
            Ok(Outcome { json: json!({ "shell": shell.to_string(), "script": text }), text })
        }
        Command::Balance { address, key, verify: false, .. } => balance(&client()?, address.as_deref(), key.as_deref()),
        Command::Balance { address, key, genesis, trusted_state, no_trusted_state, verify: true, .. } => {
            let state = if no_trusted_state { StateFile::None } else { StateFile::from_flag(trusted_state) };
            let genesis = genesis.ok_or_else(|| WalletError::usage("--verify needs --genesis FILE"))?;
            balance_verified(&client()?, address.as_deref(), key.as_deref(), &genesis, state)
        }
        Command::Transfer(args) => transfer(&client()?, &args, &args.password.source()),
        Command::Sign(args) => sign_offline(&args, &args.password.source()),
        Command::Send { tx_file, wait, .. } => send(&client()?, &tx_file, wait),
        Command::Tx { id, .. } => tx_cmd(&client()?, &id),
        Command::Block { height, .. } => block(&client()?, &height),
        Command::Status { .. } => {
            let doc = client()?.get_json("/status", wallet_cli::client::SMALL_BODY_BYTES_MAX)?;
            Ok(Outcome { text: render_text(&doc), json: doc })
        }
        Command::Verify { id, genesis, trusted_state, no_trusted_state, .. } => {
            let state = if no_trusted_state { StateFile::None } else { StateFile::from_flag(trusted_state) };
            verify_cmd(&client()?, &id, &genesis, state)
        }
        Command::Validator(cmd) => validator_cmd(&client()?, cmd),
    }
}

fn parse_validator(text: &str) -> Result<PublicKey, WalletError> {
    PublicKey::parse_address(text.trim())
        .map_err(|e| WalletError::usage(format!("{text:?} is not a validator address: {e}")))
}

fn validator_cmd(client: &NodeClient, cmd: ValidatorCmd) -> CmdResult {
    use wallet_cli::governance::{Proposal, approve, build_change, chain_and_height, change_doc, parse_change};
    let propose = |proposal: Proposal<'_>, common: ProposeArgs, chain_id: &str, height: u64| -> CmdResult {
        let change = build_change(chain_id, proposal, height.saturating_add(common.expires_in), common.nonce);
        change.check_stateless(chain_id).map_err(|e| WalletError::usage(format!("this change is not valid: {e}")))?;
        let doc = change_doc(&change);
        let text = format!(
            "change {}\nexpires at height {}\n\nEvery validator's operator approves it with:\n  wallet validator approve {} --key <validator key file> --node <that validator's API>\nIt applies two blocks after validators holding more than 2/3 of the power have approved it{}.\n",
            change.id(),
            change.expiry_height,
            doc["change_hex"].as_str().unwrap_or_default(),
            if matches!(change.action, ledger_core::governance::ChangeAction::RotateKey { .. }) {
                ", the old key's own approval among them"
            } else {
                ""
            }
        );
        Ok(Outcome { json: doc, text })
    };
    match cmd {
        ValidatorCmd::ProposeAdd { new_key, power, moniker, common, password, .. } => {
            let key = files::load_key(&new_key, &password.source())?;
            let (chain_id, height) = chain_and_height(client)?;
            propose(Proposal::Add { key: &key, power, moniker }, common, &chain_id, height)
        }
        ValidatorCmd::ProposeRemove { validator, common, .. } => {
            let validator = parse_validator(&validator)?;
            let (chain_id, height) = chain_and_height(client)?;
            propose(Proposal::Remove { validator }, common, &chain_id, height)
        }
        ValidatorCmd::ProposePower { validator, power, common, .. } => {
            let validator = parse_validator(&validator)?;
            let (chain_id, height) = chain_and_height(client)?;
            propose(Proposal::SetPower { validator, power }, common, &chain_id, height)
        }
        ValidatorCmd::ProposeRotate { old, new_key, common, password, .. } => {
            let old = parse_validator(&old)?;
            let key = files::load_key(&new_key, &password.source())?;
            let (chain_id, height) = chain_and_height(client)?;
            propose(Proposal::Rotate { old, new: &key }, common, &chain_id, height)
        }
        ValidatorCmd::Approve { change, key, password, .. } => {
            let change = parse_change(&change)?;
            let key = files::load_key(&key, &password.source())?;
            let (chain_id, _) = chain_and_height(client)?;
            let (approval, answer) = approve(client, &chain_id, &change, &key)?;
            let doc = json!({
                "change_id": change.id().to_hex(),
                "approver": approval.approver.to_address_string(),
                "node": answer,
            });
            let text = format!(
                "approval of change {} by {} {} at {}\n",
                change.id(),
                approval.approver.to_address_string(),
                if answer["queued"].as_bool() == Some(false) { "was already queued" } else { "queued" },
                client.base()
            );
            Ok(Outcome { json: doc, text })
        }
        ValidatorCmd::Show { .. } => {
            let doc = client.get_json("/validators", wallet_cli::client::SMALL_BODY_BYTES_MAX * 16)?;
            Ok(Outcome { text: render_text(&doc), json: doc })
        }
    }
}

fn keygen(out: &Path, insecure_plaintext: bool, passwords: &PasswordSource<'_>) -> CmdResult {
    // Fail before asking for a password when the file exists; create_new below still guards the race.
    if out.exists() {
        return Err(WalletError::usage(format!(
            "{} already exists; refusing to overwrite a key file: choose another --out path",
            out.display()
        ))
        .into());
    }
    let contents = if insecure_plaintext {
        let key = keystore::generate_keypair().map_err(|e| WalletError::generic(e.to_string()))?;
        eprintln!(
            "warning: writing an UNENCRYPTED key to {}: anyone who can read it can spend its funds",
            out.display()
        );
        (key.public(), zeroize::Zeroizing::new(ledger_core::keyfile::to_plaintext_json(&key, Some(PLAINTEXT_WARNING))))
    } else {
        let key = keystore::generate_keypair().map_err(|e| WalletError::generic(e.to_string()))?;
        (key.public(), encrypt_new(&key, passwords)?)
    };
    let (address, text) = contents;
    files::write_private_new(out, text.as_bytes())?;
    let address = address.to_address_string();
    Ok(Outcome {
        text: format!("address: {address}\nkey file: {}\n", out.display()),
        json: json!({ "address": address, "file": out.display().to_string(), "encrypted": !insecure_plaintext }),
    })
}

/// Ask for a new password (checked: not empty, at least [`PASSWORD_CHARS_MIN`] characters) and encrypt `key`.
fn encrypt_new(
    key: &ledger_core::Keypair,
    passwords: &PasswordSource<'_>,
) -> Result<zeroize::Zeroizing<String>, WalletError> {
    let password = passwords.new_password()?;
    let chars = password.chars().count();
    if chars > 0 && chars < PASSWORD_CHARS_MIN {
        return Err(WalletError::usage(format!(
            "the password is {chars} character(s); a keystore password needs at least {PASSWORD_CHARS_MIN} \
             (or use --insecure-plaintext for a throwaway key)"
        )));
    }
    let text = keystore::encrypt(key, password.as_bytes(), KDF_DEFAULT).map_err(|e| match e {
        keystore::KeystoreError::EmptyPassword => WalletError::usage(e.to_string()),
        other => WalletError::generic(format!("cannot encrypt the key: {other}")),
    })?;
    Ok(zeroize::Zeroizing::new(text))
}

/// The address of a key file without decrypting it: a plaintext key's, or the address an encrypted keystore
/// states (bound to its ciphertext: a file whose address was edited never decrypts).
fn key_address(path: &Path) -> Result<PublicKey, WalletError> {
    Ok(match files::open_key_file(path)? {
        KeyFile::Plaintext(k) => k.public(),
        KeyFile::Encrypted(e) => e.stated_address(),
    })
}

fn import(from: &Path, out: &Path, passwords: &PasswordSource<'_>) -> CmdResult {
    if out.exists() {
        return Err(WalletError::usage(format!(
            "{} already exists; refusing to overwrite a key file: choose another --out path",
            out.display()
        ))
        .into());
    }
    let text = files::read_text(from, ledger_core::keyfile::KEY_FILE_BYTES_MAX, "key file", ErrorKind::Key)?;
    let trimmed = text.trim();
    let key = if trimmed.len() == 64 && trimmed.bytes().all(|b| b.is_ascii_hexdigit()) {
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(trimmed, &mut seed[..])
            .map_err(|_| WalletError::key(format!("{} does not hold a 64-hex-character seed", from.display())))?;
        ledger_core::Keypair::from_seed(&seed)
    } else {
        match keystore::parse_key_file(&text) {
            Ok(KeyFile::Plaintext(k)) => k,
            Ok(KeyFile::Encrypted(_)) => {
                return Err(WalletError::usage(format!(
                    "{} is already an encrypted keystore: use it as it is (or copy it)",
                    from.display()
                ))
                .into());
            }
            Err(e) => {
                return Err(WalletError::key(format!(
                    "{} is neither a plaintext key file nor a 64-hex-character seed: {e}",
                    from.display()
                ))
                .into());
            }
        }
    };
    let text = encrypt_new(&key, passwords)?;
    files::write_private_new(out, text.as_bytes())?;
    let address = key.public().to_address_string();
    Ok(Outcome {
        text: format!("address: {address}\nkey file: {}\n", out.display()),
        json: json!({ "address": address, "file": out.display().to_string(), "encrypted": true }),
    })
}

/// Most directory entries `wallet keys` looks at.
const KEYS_LISTED_MAX: usize = 10_000;

fn list_keys(dir: &Path) -> CmdResult {
    let entries = std::fs::read_dir(dir).map_err(|e| files::io_error(ErrorKind::Usage, "directory", dir, &e))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json") && p.is_file())
        .take(KEYS_LISTED_MAX)
        .collect();
    paths.sort();
    let mut keys = Vec::new();
    let mut text = String::new();
    for path in paths {
        // Files that are not key files (genesis.json, manifests) are skipped, not errors.
        let Ok(bytes) = files::read_bounded(&path, ledger_core::keyfile::KEY_FILE_BYTES_MAX) else { continue };
        let Ok(body) = std::str::from_utf8(&bytes) else { continue };
        let (address, kind) = match keystore::parse_key_file(body) {
            Ok(KeyFile::Plaintext(k)) => (k.public(), "plaintext"),
            Ok(KeyFile::Encrypted(e)) => (e.stated_address(), "encrypted"),
            Err(_) => continue,
        };
        let address = address.to_address_string();
        text.push_str(&format!("{address}  {kind:<9}  {}\n", path.display()));
        keys.push(json!({ "address": address, "kind": kind, "file": path.display().to_string() }));
    }
    if keys.is_empty() {
        text = format!("no key files in {}\n", dir.display());
    }
    Ok(Outcome { json: json!({ "dir": dir.display().to_string(), "keys": keys }), text })
}

fn tx_cmd(client: &NodeClient, id: &str) -> CmdResult {
    let id = parse_tx_id(id)?;
    let doc = client.get_json(&format!("/txs/{id}"), wallet_cli::client::SMALL_BODY_BYTES_MAX)?;
    if doc.get("status").and_then(Value::as_str) == Some("unknown") {
        return Err(Box::new(Failure {
            error: WalletError::new(
                ErrorKind::NodeError,
                format!(
                    "transaction {id} is unknown to this node: never seen, or forgotten after it expired; \
                     check the id, or ask the node it was sent to"
                ),
            )
            .with_node_code("unknown"),
            text: Some(render_text(&doc)),
            json: Some(doc),
        }));
    }
    Ok(Outcome { text: render_text(&doc), json: doc })
}

/// Ask on the terminal whether to go on with something unusual; without a terminal, refuse (exit 2)
/// unless `--yes` was given.
fn confirm(question: &str, confirm: ConfirmArgs) -> Result<(), WalletError> {
    if confirm.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(WalletError::usage(format!(
            "{question}: refused without a terminal to confirm on; pass --yes to send anyway"
        )));
    }
    eprint!("{question}. Send anyway? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .take(64)
        .read_line(&mut answer)
        .map_err(|e| WalletError::usage(format!("cannot read the answer: {e}")))?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(WalletError::usage("not sent: the transfer was not confirmed"))
    }
}

/// The address of `wallet balance`: given, or a key file's.
fn balance_address(address: Option<&str>, key: Option<&Path>) -> Result<PublicKey, WalletError> {
    Ok(match (address, key) {
        (Some(a), _) => parse_address(a, "address")?,
        (None, Some(path)) => match files::open_key_file(path)? {
            KeyFile::Plaintext(k) => k.public(),
            // The stated address is enough to look up a balance; no password needed.
            KeyFile::Encrypted(e) => e.stated_address(),
        },
        (None, None) => return Err(WalletError::usage("give an ADDRESS or --key FILE")),
    })
}

fn balance(client: &NodeClient, address: Option<&str>, key: Option<&Path>) -> CmdResult {
    let address = balance_address(address, key)?;
    let addr = address.to_address_string();
    let account = client.account(&addr)?;
    let pending = account.next_nonce.saturating_sub(account.nonce);
    Ok(Outcome {
        text: format!("address: {addr}\nbalance: {}\nnonce: {}\npending: {pending}\n", account.balance, account.nonce),
        json: json!({
            "address": addr,
            "balance": account.balance,
            "nonce": account.nonce,
            "next_nonce": account.next_nonce,
            "pending": pending,
        }),
    })
}

fn transfer(client: &NodeClient, args: &TransferArgs, passwords: &PasswordSource<'_>) -> CmdResult {
    // Check everything local first, so a typo costs neither a password prompt nor a network call.
    let recipient = parse_address(&args.to, "--to address")?;
    check_amount_and_memo(args.amount, &args.memo)?;
    let key = files::load_key(&args.key, passwords)?;
    let status = client.status()?;
    let min_fee = client.min_fee()?;
    let fee = match (args.fee, min_fee) {
        (Some(f), _) => f,
        (None, Some(m)) => m,
        (None, None) => {
            eprintln!("note: the node does not report the chain's minimum fee; using fee 1 (set --fee to choose)");
            1
        }
    };
    let min_fee = min_fee.unwrap_or(1).max(1);
    if fee > min_fee.saturating_mul(LARGE_FEE_FACTOR) {
        confirm(
            &format!(
                "the fee {fee} is {} times the chain's minimum fee {min_fee} (the amount is {})",
                fee / min_fee,
                args.amount
            ),
            args.confirm,
        )?;
    }
    if recipient == key.public() {
        confirm(
            &format!(
                "--to is the sender's own address {}: only the fee would move (to the block's proposer)",
                recipient.to_address_string()
            ),
            args.confirm,
        )?;
    }
    let sender = key.public().to_address_string();
    let account = client.account(&sender)?;
    let needed = u128::from(args.amount) + u128::from(fee);
    if needed > u128::from(account.balance) {
        return Err(WalletError::new(
            ErrorKind::Rejected,
            format!(
                "insufficient funds: {sender} has {} but amount {} + fee {fee} = {needed}; lower --amount or fund the account",
                account.balance, args.amount
            ),
        )
        .into());
    }
    let nonce = args.nonce.unwrap_or(account.next_nonce);
    let expiry_height = status.height.checked_add(args.expiry_blocks).ok_or_else(|| {
        WalletError::usage(format!("--expiry-blocks {} overflows the block height", args.expiry_blocks))
    })?;
    let tx = Transaction {
        chain_id: status.chain_id.clone(),
        sender: key.public(),
        recipient,
        amount: args.amount,
        fee,
        nonce,
        expiry_height,
        memo: args.memo.clone(),
    }
    .sign(&key);
    if args.wait.wait {
        eprintln!("submitted {}; waiting for it to be committed…", tx.id());
    }
    submit_and_report(client, &tx, args.wait, HintContext::Transfer { nonce_given: args.nonce.is_some() })
}

fn sign_offline(args: &SignArgs, passwords: &PasswordSource<'_>) -> CmdResult {
    let recipient = parse_address(&args.to, "--to address")?;
    check_amount_and_memo(args.amount, &args.memo)?;
    validate_chain_id(&args.chain_id).map_err(|e| WalletError::usage(e.to_string()))?;
    let key = files::load_key(&args.key, passwords)?;
    let tx = Transaction {
        chain_id: args.chain_id.clone(),
        sender: key.public(),
        recipient,
        amount: args.amount,
        fee: args.fee,
        nonce: args.nonce,
        expiry_height: args.expiry_height,
        memo: args.memo.clone(),
    }
    .sign(&key);
    let hex = hex::encode(tx.encode());
    std::fs::write(&args.out, format!("{hex}\n"))
        .map_err(|e| WalletError::generic(format!("cannot write {}: {e}", args.out.display())))?;
    let id = tx.id().to_hex();
    Ok(Outcome {
        text: format!("id: {id}\nfile: {}\n", args.out.display()),
        json: json!({ "id": id, "file": args.out.display().to_string(), "tx_hex": hex }),
    })
}

fn send(client: &NodeClient, path: &Path, wait: WaitArgs) -> CmdResult {
    let max = 2 * TX_BYTES_MAX_CEILING as usize + 2;
    let text = files::read_text(path, max, "transaction file", ErrorKind::Usage)?;
    let bytes = hex::decode(text.trim()).map_err(|_| {
        WalletError::usage(format!(
            "{} does not hold a transaction in hex (as written by `wallet sign`)",
            path.display()
        ))
    })?;
    let tx = SignedTransaction::decode(&bytes, TX_BYTES_MAX_CEILING as usize)
        .map_err(|e| WalletError::usage(format!("{} does not hold a valid transaction: {e}", path.display())))?;
    tx.verify_signature().map_err(|e| {
        WalletError::usage(format!("the transaction in {} is not validly signed ({e}); sign it again", path.display()))
    })?;
    submit_and_report(client, &tx, wait, HintContext::Send)
}

/// Which command a rejection happened in, so that its hint names flags the command has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HintContext {
    /// `wallet transfer`; `nonce_given` when `--nonce` was on the command line.
    Transfer { nonce_given: bool },
    /// `wallet send` of a file written by `wallet sign` (its fields are fixed: sign again to change them).
    Send,
}

/// Submit, then report pending, or with `--wait` the final outcome.
fn submit_and_report(client: &NodeClient, tx: &SignedTransaction, wait: WaitArgs, hints: HintContext) -> CmdResult {
    let id = tx.id().to_hex();
    let timeout = Duration::from_secs(wait.timeout_secs);
    let answer = client
        .submit(&hex::encode(tx.encode()), wait.wait.then_some(timeout))
        .map_err(|e| admission_failure(&id, e, hints))?;
    if answer.id != id {
        return Err(WalletError::generic(format!(
            "the node answered with transaction id {} but the transaction's id is {id}; the node is misbehaving",
            answer.id.chars().take(64).collect::<String>()
        ))
        .into());
    }
    if !wait.wait {
        return Ok(tx_outcome(&answer));
    }
    wait_for_commit(client, &id, answer, Instant::now() + timeout, wait.timeout_secs, hints)
}

fn wait_for_commit(
    client: &NodeClient,
    id: &str,
    first: TxStatus,
    deadline: Instant,
    timeout_secs: u64,
    hints: HintContext,
) -> CmdResult {
    let mut current = first;
    loop {
        match current.status.as_str() {
            "committed" => return Ok(tx_outcome(&current)),
            "rejected" | "evicted" => {
                let reason =
                    current.reason.clone().unwrap_or(Reason { code: "unknown".into(), message: String::new() });
                let outcome = tx_outcome(&current);
                return Err(Box::new(Failure {
                    error: WalletError::new(
                        ErrorKind::Rejected,
                        format!(
                            "transaction {id} was {}: {}: {}{}",
                            current.status,
                            reason.code,
                            reason.message,
                            rejection_hint(&reason.code, hints)
                        ),
                    )
                    .with_node_code(reason.code),
                    json: Some(outcome.json),
                    text: Some(outcome.text),
                }));
            }
            "pending" | "unknown" => {}
            other => {
                return Err(WalletError::generic(format!(
                    "the node reports an unknown status {:?} for {id}",
                    other.chars().take(32).collect::<String>()
                ))
                .into());
            }
        }
        let now = Instant::now();
        if now >= deadline {
            let outcome = tx_outcome(&current);
            return Err(Box::new(Failure {
                error: WalletError::new(
                    ErrorKind::WaitTimeout,
                    format!(
                        "transaction {id} is still {} after {timeout_secs} s; check later with `wallet tx {id}` \
                         or wait longer with --timeout-secs",
                        current.status
                    ),
                ),
                json: Some(outcome.json),
                text: Some(outcome.text),
            }));
        }
        thread::sleep(POLL_INTERVAL.min(deadline - now));
        current = client.tx(id)?;
    }
}

/// A refusal of `POST /txs`: a 4xx with a code is the node rejecting the transaction (exit 4).
fn admission_failure(id: &str, e: WalletError, hints: HintContext) -> Box<Failure> {
    let is_client_error = e.node_status.is_some_and(|s| (400..500).contains(&s));
    let (ErrorKind::NodeError, true, Some(code)) = (e.kind, is_client_error, e.node_code.clone()) else {
        return e.into();
    };
    let message = e.node_message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| e.message.clone());
    Box::new(Failure {
        error: WalletError::new(
            ErrorKind::Rejected,
            format!("the node rejected transaction {id}: {code}: {message}{}", rejection_hint(&code, hints)),
        )
        .with_node_code(code.clone()),
        json: Some(json!({ "id": id, "status": "rejected", "reason": { "code": code, "message": message } })),
        text: None,
    })
}

/// What to do about a rejection, phrased with the flags of the command that met it.
fn rejection_hint(code: &str, hints: HintContext) -> &'static str {
    use HintContext::{Send, Transfer};
    match (code, hints) {
        ("nonce_too_low", Transfer { nonce_given: true }) => "; that nonce is used already: retry without --nonce",
        ("nonce_too_low", Transfer { nonce_given: false }) => {
            "; another transaction of this account took that nonce first: run the transfer again"
        }
        ("nonce_too_low", Send) => {
            "; that nonce is used already: sign again with --nonce set to the account's next_nonce (`wallet balance`)"
        }
        ("nonce_too_far_ahead" | "nonce_gap", Transfer { nonce_given: true }) => {
            "; use the account's next nonce (omit --nonce)"
        }
        ("nonce_too_far_ahead" | "nonce_gap", Transfer { nonce_given: false }) => {
            "; earlier transactions of this account are still pending: wait for them and retry"
        }
        ("nonce_too_far_ahead" | "nonce_gap", Send) => {
            "; send the account's earlier nonces first, or sign again with --nonce set to its next_nonce (`wallet balance`)"
        }
        ("insufficient_funds", _) => "; check `wallet balance`",
        ("fee_too_low", Transfer { .. }) => "; raise --fee",
        ("fee_too_low", Send) => "; sign again with a higher --fee",
        ("expired", Transfer { .. }) => "; raise --expiry-blocks",
        ("expired", Send) => "; sign again with an --expiry-height above the chain's height (`wallet status`)",
        ("wrong_chain", Transfer { .. }) => "; the transaction is for another chain than this node's",
        ("wrong_chain", Send) => "; sign again with this node's --chain-id (`wallet status`)",
        ("mempool_full", _) => "; the node is busy: retry later",
        ("duplicate", _) => "; it was submitted already: see `wallet tx ID`",
        ("memo_too_long", Transfer { .. }) => "; shorten --memo",
        ("memo_too_long", Send) => "; sign again with a shorter --memo",
        _ => "",
    }
}

fn tx_outcome(s: &TxStatus) -> Outcome {
    let mut doc = json!({ "id": s.id, "status": s.status });
    let mut text = format!("id: {}\nstatus: {}\n", s.id, s.status);
    if let Some(h) = s.height {
        doc["height"] = json!(h);
        text.push_str(&format!("height: {h}\n"));
    }
    if let Some(i) = s.index {
        doc["index"] = json!(i);
    }
    if let Some(b) = &s.block_hash {
        doc["block_hash"] = json!(b);
        text.push_str(&format!("block_hash: {b}\n"));
    }
    if let Some(r) = &s.reason {
        doc["reason"] = json!({ "code": r.code, "message": r.message });
        text.push_str(&format!("reason: {}: {}\n", r.code, r.message));
    }
    Outcome { json: doc, text }
}

fn block(client: &NodeClient, height: &str) -> CmdResult {
    let height = height.trim();
    if height != "latest" && height.parse::<u64>().is_err() {
        return Err(WalletError::usage(format!("block height {height:?} is not a number or `latest`")).into());
    }
    let doc = client.get_json(&format!("/blocks/{height}"), wallet_cli::client::BLOCK_BODY_BYTES_MAX)?;
    Ok(Outcome { text: render_text(&doc), json: doc })
}

/// Which trusted-state file `verify` reads and writes.
enum StateFile {
    /// `--no-trusted-state`.
    None,
    /// `--trusted-state FILE`.
    Given(PathBuf),
    /// The default path of the chain (found once the genesis file is read).
    Default,
}

impl StateFile {
    fn from_flag(flag: Option<PathBuf>) -> StateFile {
        flag.map_or(StateFile::Default, StateFile::Given)
    }
}

fn trusted_state_error(e: trusted::TrustedStateError) -> Box<Failure> {
    let kind = match e {
        trusted::TrustedStateError::ForeignChain { .. } => ErrorKind::Usage,
        _ => ErrorKind::Generic,
    };
    WalletError::new(kind, e.to_string()).into()
}

/// The genesis file and the trusted-state file `verify` and `balance --verify` start from.
struct Trust {
    genesis: Genesis,
    genesis_hash: Hash,
    validators: ledger_core::ValidatorSet,
    state_path: Option<PathBuf>,
    stored: Option<trusted::TrustedState>,
}

fn load_trust(genesis_path: &Path, state_file: StateFile) -> Result<Trust, Box<Failure>> {
    let genesis_text = files::read_text(genesis_path, GENESIS_BYTES_MAX, "genesis file", ErrorKind::Usage)?;
    let genesis = Genesis::from_json(&genesis_text)
        .map_err(|e| WalletError::usage(format!("genesis file {}: {e}", genesis_path.display())))?;
    let validators = genesis.validator_set().map_err(|e| WalletError::usage(format!("genesis validators: {e}")))?;
    let genesis_hash = genesis.hash();
    let state_path = match state_file {
        StateFile::None => None,
        StateFile::Given(p) => Some(p),
        StateFile::Default => trusted::default_path(&genesis.chain_id, &genesis_hash),
    };
    let stored = match &state_path {
        Some(p) => trusted::load(p, &genesis.chain_id, &genesis_hash).map_err(trusted_state_error)?,
        None => None,
    };
    Ok(Trust { genesis, genesis_hash, validators, state_path, stored })
}

impl Trust {
    /// Start from the stored set when it is in force at or below `height`; a block older than it is checked
    /// from the genesis set (the file stays as it is).
    fn start(&self, height: u64) -> verify::TrustedSet {
        match &self.stored {
            Some(s) if s.trusted.first_height.0 <= height => s.trusted.clone(),
            _ => verify::TrustedSet::genesis(self.validators.clone()),
        }
    }

    /// Keep what `walk` verified, whatever the checks after it said: each set in it was certified by the one
    /// before, from the genesis file. The `trusted_state` document and its text line.
    fn keep(&self, walk: &verify::Walk) -> (Value, String) {
        let advanced = walk.error.is_none()
            && self.stored.as_ref().is_none_or(|s| walk.reached.first_height > s.trusted.first_height);
        let mut state_doc = json!({
            "path": self.state_path.as_ref().map(|p| p.display().to_string()),
            "started_from": if walk.start.source == verify::TrustSource::TrustedState { "trusted_state" } else { "genesis" },
            "start_height": walk.start.first_height.0,
            "updated": false,
        });
        let mut state_line = match &self.state_path {
            None => "trusted state: not kept (--no-trusted-state, or no HOME to keep it under)\n".to_string(),
            Some(p) => format!("trusted state: {} (unchanged)\n", p.display()),
        };
        if let (Some(path), true) = (&self.state_path, advanced) {
            let state = trusted::TrustedState {
                chain_id: self.genesis.chain_id.clone(),
                genesis_hash: self.genesis_hash,
                trusted: walk.reached.clone(),
            };
            match trusted::save(path, &state) {
                Ok(()) => {
                    state_doc["updated"] = json!(true);
                    state_line = format!(
                        "trusted state: {} (now the set in force from height {})\n",
                        path.display(),
                        walk.reached.first_height
                    );
                }
                // The verification stands; only the shortcut for the next run is lost.
                Err(e) => {
                    eprintln!("warning: {e}");
                    state_doc["error"] = json!(e.to_string());
                    state_line = format!("trusted state: not updated: {e}\n");
                }
            }
        }
        (state_doc, state_line)
    }
}

/// The check list of a report and the walk's line, as `verify` and `balance --verify` print them.
fn checks_text(report: &verify::Report, walk: &verify::Walk) -> String {
    let mut text = String::new();
    for c in &report.checks {
        text.push_str(&format!("{} {}: {}\n", if c.ok { "ok  " } else { "FAIL" }, c.name, c.detail));
    }
    text.push_str(&format!(
        "transitions followed: {} (from {} at height {})\n",
        walk.followed,
        if walk.start.source == verify::TrustSource::TrustedState { "the trusted state" } else { "genesis" },
        walk.start.first_height
    ));
    text
}

fn verification_failed(message: String) -> Box<Failure> {
    WalletError::new(ErrorKind::VerificationFailed, message).into()
}

fn verify_cmd(client: &NodeClient, id: &str, genesis_path: &Path, state_file: StateFile) -> CmdResult {
    let id_hash = Hash::from_hex(&id.trim().to_ascii_lowercase())
        .map_err(|e| WalletError::usage(format!("transaction id: {e}")))?;
    let id = id_hash.to_hex();
    let trust = load_trust(genesis_path, state_file)?;
    let genesis = &trust.genesis;

    let failed = verification_failed;
    let status = client.tx(&id)?;
    if status.status != "committed" {
        return Err(failed(format!(
            "transaction {id} is {} on the node, not committed: there is nothing to verify yet",
            status.status.chars().take(32).collect::<String>()
        )));
    }
    let (Some(height), Some(proof), Some(tx_hex)) = (status.height, status.proof.clone(), status.tx_hex.as_deref())
    else {
        return Err(failed(format!(
            "the node says {id} is committed but does not send height, proof and tx_hex: cannot verify"
        )));
    };

    let walk = follow_from_node(client, &genesis.chain_id, trust.start(height), height)?;

    let header = client.block_header_hex(height)?;
    let commit = client.commit(height)?;
    let evidence = verify::decode_evidence(
        tx_hex,
        height,
        proof,
        &header.header_hex,
        &commit.certificate_hex,
        genesis.params.tx_bytes_max as usize,
    )
    .map_err(|e| failed(format!("verification failed: {e}; do not trust this node's claim")))?;
    let report = verify::verify_evidence(&id_hash, &genesis.chain_id, &walk, &evidence);

    let (state_doc, state_line) = trust.keep(&walk);
    let mut text = checks_text(&report, &walk);
    text.push_str(&state_line);
    let doc = json!({
        "id": id,
        "verified": report.ok(),
        "height": height,
        "block_hash": evidence.header.hash().to_hex(),
        "chain_id": genesis.chain_id,
        "transitions_followed": walk.followed,
        "validator_set_hash": walk.reached.set.hash().to_hex(),
        "validator_set_first_height": walk.reached.first_height.0,
        "trusted_state": state_doc,
        "checks": report.checks,
    });
    if report.ok() {
        text.push_str(&format!(
            "verified: {id} is committed at height {height} ({} validator-set transition{} followed)\n",
            walk.followed,
            if walk.followed == 1 { "" } else { "s" }
        ));
        Ok(Outcome { json: doc, text })
    } else {
        Err(Box::new(Failure {
            error: WalletError::new(
                ErrorKind::VerificationFailed,
                format!(
                    "verification failed: check {} did not pass; do not trust this node's claim",
                    report.failed().join(", ")
                ),
            ),
            json: Some(doc),
            text: Some(text),
        }))
    }
}

/// `wallet balance --verify`: the node's claimed account (or its absence) at its latest height, checked from
/// canonical bytes against a header certified by the set followed from the genesis file
/// ([`wallet_cli::balance`]).
fn balance_verified(
    client: &NodeClient,
    address: Option<&str>,
    key: Option<&Path>,
    genesis_path: &Path,
    state_file: StateFile,
) -> CmdResult {
    let address = balance_address(address, key)?;
    let addr = address.to_address_string();
    let trust = load_trust(genesis_path, state_file)?;
    let chain_id = trust.genesis.chain_id.clone();

    let answer = client.account_proof(&addr)?;
    let height = answer.height;
    let claimed = answer.account.as_ref().map(|a| ledger_core::Account { balance: a.balance, nonce: a.nonce });
    let walk = follow_from_node(client, &chain_id, trust.start(height), height)?;
    let commit = client.commit(height)?;
    let evidence = wallet_cli::balance::decode_balance_evidence(
        height,
        answer.present,
        claimed,
        &answer.header_hex,
        &commit.certificate_hex,
        &answer.proof_hex,
    )
    .map_err(|e| verification_failed(format!("verification failed: {e}; do not trust this node's claim")))?;
    let report = wallet_cli::balance::verify_balance(&address, &chain_id, &walk, &evidence);

    let (state_doc, state_line) = trust.keep(&walk);
    let mut text = checks_text(&report, &walk);
    text.push_str(&state_line);
    let account = claimed.unwrap_or_default();
    let doc = json!({
        "address": addr,
        "verified": report.ok(),
        "present": claimed.is_some(),
        "balance": account.balance,
        "nonce": account.nonce,
        "height": height,
        "block_hash": evidence.header.hash().to_hex(),
        "state_root": evidence.header.state_root.to_hex(),
        "chain_id": chain_id,
        "transitions_followed": walk.followed,
        "validator_set_hash": walk.reached.set.hash().to_hex(),
        "validator_set_first_height": walk.reached.first_height.0,
        "trusted_state": state_doc,
        "checks": report.checks,
    });
    if !report.ok() {
        return Err(Box::new(Failure {
            error: WalletError::new(
                ErrorKind::VerificationFailed,
                format!(
                    "verification failed: check {} did not pass; do not trust this node's balance",
                    report.failed().join(", ")
                ),
            ),
            json: Some(doc),
            text: Some(text),
        }));
    }
    text.push_str(&format!(
        "address: {addr}\nbalance: {}\nnonce: {}\nheight: {height}\n",
        account.balance, account.nonce
    ));
    text.push_str(&format!(
        "verified: {addr} {} at height {height}, certified by the validator set ({} validator-set transition{} followed)\n",
        if claimed.is_some() {
            format!("holds balance {} (nonce {})", account.balance, account.nonce)
        } else {
            "holds no account (balance 0)".to_string()
        },
        walk.followed,
        if walk.followed == 1 { "" } else { "s" }
    ));
    Ok(Outcome { json: doc, text })
}

/// Follow the node's validator-set transitions from `start` up to `height`, page by page (each page is
/// dropped once followed). The node's paging is checked: a page must hold a transition to name a next one,
/// and the next must start above it, so a node cannot keep the wallet asking for ever.
fn follow_from_node(
    client: &NodeClient,
    chain_id: &str,
    start: verify::TrustedSet,
    height: u64,
) -> Result<verify::Walk, Box<Failure>> {
    let mut walk = verify::Walk::new(start);
    let mut from = walk.start.first_height.0.saturating_add(1);
    while from <= height {
        let page = client.transitions(from)?;
        for t in &page.transitions {
            if t.first_height > height || walk.follow(chain_id, t).is_err() {
                return Ok(walk);
            }
        }
        match (page.next_from_height, page.transitions.last()) {
            (Some(next), Some(last)) if next > last.first_height => from = next,
            (Some(next), _) => {
                return Err(WalletError::new(
                    ErrorKind::NodeError,
                    format!(
                        "the node's /validators/transitions page from height {from} names {next} as the next page, which does not move past it"
                    ),
                )
                .into());
            }
            (None, _) => break,
        }
    }
    Ok(walk)
}

fn parse_address(text: &str, what: &str) -> Result<PublicKey, WalletError> {
    PublicKey::parse_address(text).map_err(|e| {
        let shown: String = text.trim().chars().take(80).collect();
        WalletError::usage(format!("invalid {what} {shown:?}: {e}; check the address and try again"))
    })
}

fn parse_tx_id(text: &str) -> Result<String, WalletError> {
    Hash::from_hex(&text.trim().to_ascii_lowercase())
        .map(|h| h.to_hex())
        .map_err(|e| WalletError::usage(format!("transaction id: {e}")))
}

fn check_amount_and_memo(amount: u64, memo: &str) -> Result<(), WalletError> {
    if amount == 0 {
        return Err(WalletError::usage("--amount must be greater than zero"));
    }
    if memo.len() > MEMO_BYTES_MAX_CEILING as usize {
        return Err(WalletError::usage(format!(
            "--memo is {} bytes, the most any chain allows is {MEMO_BYTES_MAX_CEILING}",
            memo.len()
        )));
    }
    Ok(())
}

/// `key: value` lines for a JSON document: nested objects as dotted keys, arrays of objects by their
/// `id` (or `hash`) when they have one.
fn render_text(doc: &Value) -> String {
    fn walk(prefix: &str, v: &Value, out: &mut String) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            Value::Array(items) if items.iter().any(Value::is_object) => {
                out.push_str(&format!("{prefix}: {} item(s)\n", items.len()));
                for item in items {
                    if let Some(id) = item.get("id").or_else(|| item.get("hash")).and_then(Value::as_str) {
                        out.push_str(&format!("  {id}\n"));
                    }
                }
            }
            Value::Array(items) => {
                let parts: Vec<String> = items.iter().map(scalar).collect();
                out.push_str(&format!("{prefix}: [{}]\n", parts.join(", ")));
            }
            other => out.push_str(&format!("{prefix}: {}\n", scalar(other))),
        }
    }
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
    let mut out = String::new();
    walk("", doc, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_error(status: u16, code: &str, message: &str) -> WalletError {
        WalletError::new(ErrorKind::NodeError, format!("node error {code} ({status}): {message}"))
            .with_node_code(code)
            .with_node_reply(status, message)
    }

    #[test]
    fn a_4xx_answer_to_a_submission_is_a_rejection_with_the_nodes_own_message() {
        let f = admission_failure(
            "ab",
            node_error(400, "fee_too_low", "fee 1 is below the minimum 2"),
            HintContext::Transfer { nonce_given: false },
        );
        assert_eq!(f.error.kind, ErrorKind::Rejected);
        assert_eq!(
            f.error.message,
            "the node rejected transaction ab: fee_too_low: fee 1 is below the minimum 2; raise --fee"
        );
        let doc = f.json.expect("result document");
        assert_eq!(doc["status"], "rejected");
        assert_eq!(doc["reason"]["message"], "fee 1 is below the minimum 2");
    }

    #[test]
    fn a_5xx_or_a_transport_failure_is_not_a_rejection() {
        let f = admission_failure("ab", node_error(500, "internal", "storage failed"), HintContext::Send);
        assert_eq!(f.error.kind, ErrorKind::NodeError);
        let f = admission_failure("ab", WalletError::new(ErrorKind::Unreachable, "cannot reach"), HintContext::Send);
        assert_eq!(f.error.kind, ErrorKind::Unreachable);
    }

    /// A hint only names flags the command has: `send` has no --nonce, --fee or --expiry-blocks, and
    /// `transfer` without --nonce must not say "omit --nonce".
    #[test]
    fn hints_name_only_flags_of_the_command() {
        let codes = ["nonce_too_low", "nonce_too_far_ahead", "nonce_gap", "fee_too_low", "expired", "memo_too_long"];
        for code in codes {
            let send = rejection_hint(code, HintContext::Send);
            assert!(send.contains("sign again") || send.contains("send the account"), "{code}: {send}");
            assert!(!send.contains("without --nonce") && !send.contains("omit --nonce"), "{code}: {send}");
            assert!(!send.contains("--expiry-blocks") && !send.contains("raise --fee"), "{code}: {send}");
            let plain = rejection_hint(code, HintContext::Transfer { nonce_given: false });
            assert!(!plain.contains("--nonce") && !plain.contains("sign again"), "{code}: {plain}");
        }
        let explicit = rejection_hint("nonce_too_low", HintContext::Transfer { nonce_given: true });
        assert!(explicit.contains("without --nonce"), "{explicit}");
        assert_eq!(rejection_hint("insufficient_funds", HintContext::Send), "; check `wallet balance`");
    }

    #[test]
    fn text_rendering_flattens_nested_fields() {
        let doc = json!({"height": 3, "header": {"chain_id": "c"}, "txs": [{"id": "aa"}], "signers": ["x", "y"]});
        assert_eq!(render_text(&doc), "header.chain_id: c\nheight: 3\nsigners: [x, y]\ntxs: 1 item(s)\n  aa\n");
    }
}
