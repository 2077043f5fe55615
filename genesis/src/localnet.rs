//! A local test network on one machine: shared genesis, one home per validator, dev account keys and a
//! manifest, laid out as `docs/home-layout.md` says.
//!
//! ```text
//! OUT/genesis.json              shared genesis
//! OUT/localnet.json             manifest (absolute paths)
//! OUT/node{i}/config.toml       genesis_file = "../genesis.json", ports from the base port
//! OUT/node{i}/validator_key.json  plaintext dev key, 0600
//! OUT/node{i}/p2p_key.json      libp2p identity, 0600
//! OUT/accounts/account{j}.json  plaintext dev key, 0600
//! ```
//!
//! Everything is a function of the options: keys come from `blake3::derive_key` over (seed, role, index),
//! and the genesis time is an option with a fixed default, so the same options give byte-identical files
//! and the same genesis hash. These keys are public knowledge to anyone with the seed: dev use only.

use std::fs;
use std::path::{Path, PathBuf};

use ledger_core::params::VALIDATORS_MAX;
use ledger_core::{Address, Genesis, GenesisAccount, Hash, Keypair, Validator, keyfile};
use serde::{Deserialize, Serialize};

use crate::{Error, draft, files, p2p_key};

/// Most dev accounts a localnet may have.
pub const LOCALNET_ACCOUNTS_MAX: usize = 100_000;
/// blake3 `derive_key` context for every localnet key.
pub const DEV_KEY_CONTEXT: &str = "ledger localnet dev key v1";
/// Default genesis time: 2026-01-01T00:00:00Z. Fixed (not "now") so the same seed gives the same genesis.
pub const DEFAULT_GENESIS_TIME_MS: u64 = 1_767_225_600_000;
/// Default first port: node 0 serves its API on 26600 and p2p on 26601.
pub const DEFAULT_BASE_PORT: u16 = 26600;
/// Default balance of each dev account.
pub const DEFAULT_ACCOUNT_BALANCE: u64 = 1_000_000_000_000;
/// Voting power of each localnet validator.
pub const VALIDATOR_POWER: u64 = 10;
/// Largest localnet manifest accepted, in bytes.
pub const MANIFEST_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Written into every dev key file.
pub const DEV_KEY_WARNING: &str =
    "UNSAFE dev key: generated deterministically from a public localnet seed. Never hold real funds with it.";

const MANIFEST_FILE: &str = "localnet.json";
const GENESIS_FILE: &str = "genesis.json";
const ACCOUNTS_DIR: &str = "accounts";

/// What to build. [`LocalnetOptions::new`] fills in the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalnetOptions {
    /// Number of validator nodes, 1..=`VALIDATORS_MAX`.
    pub validators: usize,
    /// Number of funded dev accounts, 0..=`LOCALNET_ACCOUNTS_MAX`.
    pub accounts: usize,
    /// Output directory, created if missing.
    pub out: PathBuf,
    /// Seed for every key.
    pub seed: u64,
    /// Node `i` serves its API on `base_port + 2i` and p2p on `base_port + 2i + 1`.
    pub base_port: u16,
    pub chain_id: String,
    pub genesis_time_ms: u64,
    /// Balance of each dev account.
    pub account_balance: u64,
    pub min_fee: u64,
    /// Reset an existing localnet in `out` (see [`create_localnet`]).
    pub force: bool,
}

impl LocalnetOptions {
    /// Options with defaults: seed 0, base port 26600, chain id "localnet", fixed genesis time, no force.
    pub fn new(validators: usize, accounts: usize, out: impl Into<PathBuf>) -> LocalnetOptions {
        LocalnetOptions {
            validators,
            accounts,
            out: out.into(),
            seed: 0,
            base_port: DEFAULT_BASE_PORT,
            chain_id: "localnet".to_string(),
            genesis_time_ms: DEFAULT_GENESIS_TIME_MS,
            account_balance: DEFAULT_ACCOUNT_BALANCE,
            min_fee: ledger_core::ConsensusParams::default().min_fee,
            force: false,
        }
    }
}

/// `OUT/localnet.json`. `home` and `key_file` are absolute paths (the output directory is canonicalised), so
/// the manifest stays usable from any working directory.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalnetManifest {
    pub chain_id: String,
    pub genesis_hash: Hash,
    pub nodes: Vec<ManifestNode>,
    pub accounts: Vec<ManifestAccount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestNode {
    pub name: String,
    pub home: PathBuf,
    /// `http://127.0.0.1:<api port>`.
    pub api_url: String,
    /// `/ip4/127.0.0.1/tcp/<p2p port>/p2p/<peer id>`.
    pub p2p_addr: String,
    /// The validator key's address.
    pub validator: Address,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestAccount {
    pub address: Address,
    pub key_file: PathBuf,
}

/// The role a derived key plays; part of the derivation input so roles never share a key.
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum KeyRole {
    Validator = 1,
    P2p = 2,
    Account = 3,
}

/// The 32-byte secret seed of key `index` of `role` in the localnet with `seed`:
/// `blake3::derive_key(DEV_KEY_CONTEXT, seed_le64 || role_u8 || index_le64)` (fixed-width, so unambiguous).
pub fn derive_dev_seed(seed: u64, role: KeyRole, index: u64) -> [u8; 32] {
    let mut material = [0u8; 17];
    material[..8].copy_from_slice(&seed.to_le_bytes());
    material[8] = role as u8;
    material[9..].copy_from_slice(&index.to_le_bytes());
    blake3::derive_key(DEV_KEY_CONTEXT, &material)
}

/// Build the localnet described by `opts` and return its manifest (also written to `OUT/localnet.json`).
///
/// Refuses an `out` that already holds a non-empty `genesis.json` unless `force` is set. With `force`, the
/// entries a previous localnet wrote are removed first: `genesis.json`, `localnet.json`, `accounts/` and
/// every `node<N>/` directory (including its node `data/`); anything else in `out` is left alone.
pub fn create_localnet(opts: &LocalnetOptions) -> Result<LocalnetManifest, Error> {
    check_options(opts)?;
    // Build the genesis before touching the disk, so a bad option leaves `out` as it was.
    let nodes = node_keys(opts);
    let account_keys: Vec<Keypair> = (0..opts.accounts)
        .map(|j| Keypair::from_seed(&derive_dev_seed(opts.seed, KeyRole::Account, j as u64)))
        .collect();
    let genesis = build_genesis(opts, &nodes, &account_keys)?;

    prepare_out_dir(&opts.out, opts.force)?;
    let out = fs::canonicalize(&opts.out).map_err(|source| Error::Read { path: opts.out.clone(), source })?;

    draft::write_genesis(&out.join(GENESIS_FILE), &genesis)?;

    let mut manifest_nodes = Vec::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        let home = out.join(format!("node{i}"));
        files::create_dir(&home)?;
        let peers: Vec<String> =
            nodes.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, n)| n.p2p_multiaddr()).collect();
        files::write_public(&home.join("config.toml"), &config_toml(i, node, &peers))?;
        files::write_secret(
            &home.join("validator_key.json"),
            &with_newline(keyfile::to_plaintext_json(&node.validator, Some(DEV_KEY_WARNING))),
        )?;
        files::write_secret(&home.join("p2p_key.json"), &with_newline(p2p_key::p2p_key_json(&node.p2p_seed)))?;
        manifest_nodes.push(ManifestNode {
            name: format!("node{i}"),
            home,
            api_url: format!("http://127.0.0.1:{}", node.api_port),
            p2p_addr: node.p2p_multiaddr(),
            validator: node.validator.public(),
        });
    }

    let accounts_dir = out.join(ACCOUNTS_DIR);
    files::create_dir(&accounts_dir)?;
    let mut manifest_accounts = Vec::with_capacity(account_keys.len());
    for (j, key) in account_keys.iter().enumerate() {
        let key_file = accounts_dir.join(format!("account{j}.json"));
        files::write_secret(&key_file, &with_newline(keyfile::to_plaintext_json(key, Some(DEV_KEY_WARNING))))?;
        manifest_accounts.push(ManifestAccount { address: key.public(), key_file });
    }

    let manifest = LocalnetManifest {
        chain_id: genesis.chain_id.clone(),
        genesis_hash: genesis.hash(),
        nodes: manifest_nodes,
        accounts: manifest_accounts,
    };
    let mut text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::InvalidArgument(format!("cannot render manifest: {e}")))?;
    text.push('\n');
    files::write_public(&out.join(MANIFEST_FILE), &text)?;
    Ok(manifest)
}

/// Load `DIR/localnet.json` written by [`create_localnet`].
pub fn read_manifest(dir: &Path) -> Result<LocalnetManifest, Error> {
    let path = dir.join(MANIFEST_FILE);
    let text = files::read_text(&path, MANIFEST_BYTES_MAX)?;
    serde_json::from_str(&text).map_err(|e| Error::BadManifest { path, message: e.to_string() })
}

/// Keys and ports of one node.
struct NodeKeys {
    validator: Keypair,
    p2p_seed: [u8; 32],
    peer_id: String,
    api_port: u16,
    p2p_port: u16,
}

impl NodeKeys {
    fn p2p_multiaddr(&self) -> String {
        format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", self.p2p_port, self.peer_id)
    }
}

fn check_options(opts: &LocalnetOptions) -> Result<(), Error> {
    if opts.validators == 0 || opts.validators > VALIDATORS_MAX {
        return Err(Error::InvalidArgument(format!(
            "--validators must be between 1 and {VALIDATORS_MAX}, got {}",
            opts.validators
        )));
    }
    if opts.accounts > LOCALNET_ACCOUNTS_MAX {
        return Err(Error::InvalidArgument(format!(
            "--accounts must be at most {LOCALNET_ACCOUNTS_MAX}, got {}",
            opts.accounts
        )));
    }
    ledger_core::genesis::validate_chain_id(&opts.chain_id)?;
    // The last node's p2p port is base + 2(n-1) + 1; every port must be a real, non-zero u16.
    let last_port = u64::from(opts.base_port) + 2 * opts.validators as u64 - 1;
    if opts.base_port == 0 || last_port > u64::from(u16::MAX) {
        return Err(Error::InvalidArgument(format!(
            "--base-port {} with {} validators needs ports up to {last_port}; use a base port between 1 and {}",
            opts.base_port,
            opts.validators,
            u64::from(u16::MAX) + 1 - 2 * opts.validators as u64,
        )));
    }
    if opts.account_balance == 0 && opts.accounts > 0 {
        return Err(Error::InvalidArgument("dev account balance must be at least 1".to_string()));
    }
    if u128::from(opts.account_balance) * opts.accounts as u128 > u128::from(u64::MAX) {
        return Err(Error::SupplyOverflow {
            supply: u128::from(opts.account_balance) * (opts.accounts as u128 - 1),
            amount: opts.account_balance,
        });
    }
    Ok(())
}

fn node_keys(opts: &LocalnetOptions) -> Vec<NodeKeys> {
    (0..opts.validators)
        .map(|i| {
            let p2p_seed = derive_dev_seed(opts.seed, KeyRole::P2p, i as u64);
            // check_options bounded every port to u16.
            let api_port = opts.base_port.saturating_add((2 * i) as u16);
            NodeKeys {
                validator: Keypair::from_seed(&derive_dev_seed(opts.seed, KeyRole::Validator, i as u64)),
                peer_id: p2p_key::peer_id_from_seed(&p2p_seed),
                p2p_seed,
                api_port,
                p2p_port: api_port.saturating_add(1),
            }
        })
        .collect()
}

fn build_genesis(opts: &LocalnetOptions, nodes: &[NodeKeys], accounts: &[Keypair]) -> Result<Genesis, Error> {
    let mut genesis = draft::new_draft(&opts.chain_id, opts.genesis_time_ms, opts.min_fee)?;
    genesis.validators = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| Validator {
            public_key: n.validator.public(),
            power: VALIDATOR_POWER,
            moniker: format!("node{i}"),
        })
        .collect();
    genesis.accounts =
        accounts.iter().map(|k| GenesisAccount { address: k.public(), balance: opts.account_balance }).collect();
    genesis.validate()?;
    Ok(genesis)
}

/// Create `out`, refusing (or with `force`, clearing) a previous localnet in it.
fn prepare_out_dir(out: &Path, force: bool) -> Result<(), Error> {
    let genesis_path = out.join(GENESIS_FILE);
    let has_genesis = fs::metadata(&genesis_path).map(|m| m.len() > 0).unwrap_or(false);
    if has_genesis && !force {
        return Err(Error::AlreadyExists { dir: out.to_path_buf() });
    }
    if force && out.is_dir() {
        let entries = fs::read_dir(out).map_err(|source| Error::Read { path: out.to_path_buf(), source })?;
        for entry in entries {
            let entry = entry.map_err(|source| Error::Read { path: out.to_path_buf(), source })?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let remove = match name.as_ref() {
                GENESIS_FILE | MANIFEST_FILE => fs::remove_file(&path),
                ACCOUNTS_DIR => fs::remove_dir_all(&path),
                other if is_node_dir_name(other) && path.is_dir() => fs::remove_dir_all(&path),
                _ => Ok(()),
            };
            remove.map_err(|source| Error::Write { path, source })?;
        }
    }
    files::create_dir(out)
}

fn with_newline(mut text: String) -> String {
    text.push('\n');
    text
}

fn is_node_dir_name(name: &str) -> bool {
    name.strip_prefix("node").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// `node{i}/config.toml`: the template of `docs/home-layout.md`, with comments, since `toml` writes none.
fn config_toml(i: usize, node: &NodeKeys, bootstrap_peers: &[String]) -> String {
    let peers = bootstrap_peers.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
    format!(
        r#"# Node configuration written by `genesis localnet` (see docs/home-layout.md).
# Paths are relative to this home directory unless absolute. Unknown keys are an error.

moniker = "node{i}"
# Shared by every node of the localnet.
genesis_file = "../genesis.json"
# UNSAFE dev key derived from the localnet seed: never use it for real funds.
validator_key_file = "validator_key.json"
# libp2p identity, separate from the validator key. Peer id {peer_id}.
p2p_key_file = "p2p_key.json"
# Database and signer state, created by the node.
data_dir = "data"

[p2p]
# Node i listens for p2p on base port + 2i + 1.
listen_addr = "/ip4/127.0.0.1/tcp/{p2p_port}"
# The other nodes of the localnet.
bootstrap_peers = [{peers}]
max_peers = 50

[api]
# Node i serves the API on base port + 2i.
listen_addr = "127.0.0.1:{api_port}"

[storage]
# Kept small: several nodes share this machine.
cache_capacity_mb = 64

[consensus]
empty_block_interval_ms = 1000

[mempool]
max_txs = 50000
max_bytes = 33554432
max_per_sender = 1024
max_nonce_gap = 64
"#,
        peer_id = node.peer_id,
        p2p_port = node.p2p_port,
        api_port = node.api_port,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_seeds_differ_by_seed_role_and_index() {
        let a = derive_dev_seed(1, KeyRole::Validator, 0);
        assert_eq!(a, derive_dev_seed(1, KeyRole::Validator, 0));
        assert_ne!(a, derive_dev_seed(2, KeyRole::Validator, 0));
        assert_ne!(a, derive_dev_seed(1, KeyRole::P2p, 0));
        assert_ne!(a, derive_dev_seed(1, KeyRole::Validator, 1));
    }

    #[test]
    fn options_are_checked() {
        let ok = LocalnetOptions::new(4, 10, "unused");
        assert!(check_options(&ok).is_ok());
        for bad in [
            LocalnetOptions { validators: 0, ..ok.clone() },
            LocalnetOptions { validators: VALIDATORS_MAX + 1, ..ok.clone() },
            LocalnetOptions { accounts: LOCALNET_ACCOUNTS_MAX + 1, ..ok.clone() },
            LocalnetOptions { chain_id: "No Caps".into(), ..ok.clone() },
            LocalnetOptions { base_port: 0, ..ok.clone() },
            LocalnetOptions { base_port: 65530, ..ok.clone() },
            LocalnetOptions { account_balance: u64::MAX, ..ok.clone() },
        ] {
            assert!(check_options(&bad).is_err(), "{bad:?}");
        }
        // The highest base port that still fits 4 nodes: 65528 .. 65535.
        assert!(check_options(&LocalnetOptions { base_port: 65528, ..ok }).is_ok());
    }

    #[test]
    fn node_dir_names() {
        assert!(is_node_dir_name("node0"));
        assert!(is_node_dir_name("node12"));
        assert!(!is_node_dir_name("node"));
        assert!(!is_node_dir_name("nodes"));
        assert!(!is_node_dir_name("my-node1"));
    }
}
