//! Node configuration: `config.toml` (docs/home-layout.md), overridden by environment variables
//! (`LEDGERD_<SECTION>_<KEY>`, e.g. `LEDGERD_P2P_MAX_PEERS`, `LEDGERD_GENESIS_FILE`) and by command-line
//! flags, in that order of precedence (flag over environment over file over default).
//!
//! Every key is declared once in [`KEYS`]. Unknown keys (in the file or as `LEDGERD_*` variables) and
//! invalid values are refused at start with a message that names the key and where the value came from.
//!
//! Each key's default is written once, where [`from_str`] reads it. The reads go through [`Layers`], which
//! records every key read with its value, default and source: that record is what `ledgerd config
//! explain` prints ([`explain`]), so the explanation cannot disagree with what the node runs with, and a
//! unit test checks that every key in [`KEYS`] is read (and so explained).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Largest config file accepted, in bytes.
pub const CONFIG_BYTES_MAX: usize = 1024 * 1024;
/// Most bootstrap peers.
pub const BOOTSTRAP_PEERS_MAX: usize = 256;
/// Default free-space floor (`storage.min_free_mb`).
pub const DEFAULT_MIN_FREE_MB: u64 = 256;
/// Environment variables with the `LEDGERD_` prefix that are not config keys.
pub const NON_CONFIG_ENV: &[&str] = &["LEDGERD_HOME", "LEDGERD_LOG"];

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
    Flag(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => write!(f, "default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "environment variable {v}"),
            Source::Flag(v) => write!(f, "flag {v}"),
        }
    }
}

/// One effective setting, as `ledgerd config explain` prints it. Values are as written (paths relative to
/// the home directory); a key that is not set shows its default as value and `default` as origin.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Setting {
    pub key: &'static str,
    pub value: String,
    /// The default, or how it is derived when it depends on something else.
    pub default: String,
    /// `default`, `file PATH`, `environment variable NAME` or `flag NAME`.
    pub origin: String,
}

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path} is {len} bytes, limit is {max}")]
    TooLarge { path: PathBuf, len: u64, max: usize },
    #[error("config file {path} is not valid TOML: {error}")]
    Parse { path: PathBuf, error: String },
    #[error("unknown config key `{key}` (from {origin}); known keys: {known}")]
    UnknownKey { key: String, origin: Source, known: String },
    #[error("invalid value for `{key}` (from {origin}): {reason}")]
    Invalid { key: String, origin: Source, reason: String },
    #[error("`genesis_file` is required: set it in {path}, with LEDGERD_GENESIS_FILE or with --genesis-file")]
    MissingGenesis { path: PathBuf },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Str,
    U64 { min: u64, max: u64 },
    StrList,
}

/// One configuration key: dotted name (`section.key` or `key`) and type.
struct KeySpec {
    name: &'static str,
    kind: Kind,
}

const fn key(name: &'static str, kind: Kind) -> KeySpec {
    KeySpec { name, kind }
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::U64 { min, max }
}

/// Every key the node accepts.
const KEYS: &[KeySpec] = &[
    key("moniker", Kind::Str),
    key("genesis_file", Kind::Str),
    key("validator_key_file", Kind::Str),
    key("next_validator_key_file", Kind::Str),
    key("p2p_key_file", Kind::Str),
    key("data_dir", Kind::Str),
    key("p2p.listen_addr", Kind::Str),
    key("p2p.bootstrap_peers", Kind::StrList),
    key("p2p.max_peers", int(1, 10_000)),
    key("api.listen_addr", Kind::Str),
    key("api.connections_max", int(1, 1_000_000)),
    key("api.connections_per_client_max", int(1, 1_000_000)),
    key("api.header_read_timeout_ms", int(100, 600_000)),
    key("api.body_read_timeout_ms", int(100, 600_000)),
    key("api.write_timeout_ms", int(100, 3_600_000)),
    key("api.request_timeout_ms", int(100, 600_000)),
    key("api.send_buffer_bytes", int(0, 1 << 30)),
    key("api.requests_per_client_per_sec", int(0, 1_000_000)),
    key("api.request_burst_per_client", int(1, 10_000_000)),
    key("api.concurrent_requests_max", int(1, 1_000_000)),
    key("api.commit_waits_max", int(0, 1_000_000)),
    key("api.commit_waits_per_client_max", int(0, 1_000_000)),
    key("api.event_streams_max", int(0, 1_000_000)),
    key("api.event_streams_per_client_max", int(0, 1_000_000)),
    key("api.body_buffer_bytes_max", int(1 << 20, 1 << 34)),
    key("api.body_buffer_bytes_per_client_max", int(1 << 20, 1 << 34)),
    key("api.unlimited_clients", Kind::StrList),
    key("storage.cache_capacity_mb", int(1, 1 << 20)),
    key("storage.retain_blocks", int(0, 1 << 40)),
    key("storage.max_data_mb", int(0, 1 << 30)),
    key("storage.min_free_mb", int(0, 1 << 30)),
    key("log.idle_summary_interval_ms", int(0, 86_400_000)),
    key("consensus.empty_block_interval_ms", int(1, 3_600_000)),
    key("consensus.min_block_interval_ms", int(0, 3_600_000)),
    key("consensus.double_sign_watch_ms", int(0, 600_000)),
    key("consensus.build_txs_max", int(1, 1_000_000)),
    key("mempool.max_txs", int(1, 10_000_000)),
    key("mempool.max_bytes", int(1024, 1 << 34)),
    key("mempool.max_per_sender", int(1, 1_000_000)),
    key("mempool.max_nonce_gap", int(0, 1_000_000)),
    key("mempool.gapped_below_fill_percent", int(1, 100)),
    key("mempool.drain_target_ms", int(0, 600_000)),
    key("mempool.drain_floor_txs", int(1, 10_000_000)),
    key("state_sync.enable", int(0, 1)),
    key("state_sync.snapshot_interval", int(0, 1_000_000_000)),
    key("state_sync.discovery_timeout_ms", int(100, 3_600_000)),
];

/// The environment variable of a key: `p2p.max_peers` -> `LEDGERD_P2P_MAX_PEERS`.
pub fn env_name(key: &str) -> String {
    format!("LEDGERD_{}", key.replace('.', "_").to_uppercase())
}

fn known_keys() -> String {
    KEYS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

/// The loaded configuration, with paths resolved against the home directory.
#[derive(Clone, Debug)]
pub struct Config {
    pub home: PathBuf,
    pub moniker: String,
    pub genesis_file: PathBuf,
    pub validator_key_file: PathBuf,
    /// `validator_key_file` was set by the config file, an environment variable or a flag, not defaulted.
    /// An explicitly named key file that is missing stops the node (it never quietly runs as a full node);
    /// a missing default one makes a full node.
    pub validator_key_file_explicit: bool,
    /// The key a governance key rotation switches to (`ledgerd next-key` writes it); read when the
    /// rotation takes effect, so the node signs on with it without a restart. Optional.
    pub next_validator_key_file: PathBuf,
    pub p2p_key_file: PathBuf,
    pub data_dir: PathBuf,
    pub p2p_listen_addr: Multiaddr,
    pub bootstrap_peers: Vec<Multiaddr>,
    pub max_peers: usize,
    pub api_listen_addr: SocketAddr,
    /// The `[api]` limits (everything but `listen_addr`).
    pub api: crate::api::ApiConfig,
    pub cache_capacity_mb: u64,
    /// Keep the bodies of the last this many blocks (headers and certificates are kept); 0: keep all.
    pub retain_blocks: u64,
    /// Byte budget of the data directory (0: none): above it the node refuses transactions (503).
    pub max_data_bytes: u64,
    /// Free-space floor of the data directory's file system (0: none): below it the node refuses
    /// transactions (503).
    pub min_free_bytes: u64,
    /// Empty blocks are logged as one INFO summary line per this interval instead of a line each; 0: a line
    /// per block.
    pub idle_summary_interval_ms: u64,
    pub empty_block_interval_ms: u64,
    /// `None`: [`crate::driver::DEFAULT_MIN_BLOCK_INTERVAL_MS`] with more than one validator, 0 with one.
    pub min_block_interval_ms: Option<u64>,
    /// How long a restarted validator watches the network (connected, caught up) before it signs; 0: never.
    pub double_sign_watch_ms: u64,
    /// Most transactions in a block this node proposes (the chain's `txs_per_block_max` still bounds it).
    pub build_txs_max: usize,
    pub mempool_max_txs: usize,
    pub mempool_max_bytes: usize,
    pub mempool_max_per_sender: usize,
    pub mempool_max_nonce_gap: u64,
    pub mempool_gapped_below_fill_percent: u8,
    pub mempool_drain_target_ms: u64,
    pub mempool_drain_floor_txs: usize,
    /// `[state_sync]`: fetch a snapshot from peers when the database is empty, and serve snapshots.
    pub state_sync: crate::statesync::StateSyncOptions,
}

impl Config {
    pub fn mempool_limits(&self) -> crate::mempool::MempoolLimits {
        crate::mempool::MempoolLimits {
            max_txs: self.mempool_max_txs,
            max_bytes: self.mempool_max_bytes,
            max_per_sender: self.mempool_max_per_sender,
            max_nonce_gap: self.mempool_max_nonce_gap,
            gapped_below_fill_percent: self.mempool_gapped_below_fill_percent,
            drain_target_ms: self.mempool_drain_target_ms,
            drain_floor_txs: self.mempool_drain_floor_txs,
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug)]
enum Value {
    Str(String),
    U64(u64),
    List(Vec<String>),
}

/// Values by key, with where each came from, and a record of every key [`from_str`] read.
struct Layers {
    values: BTreeMap<&'static str, (Value, Source)>,
    /// Every key read so far: value as text, default as text, source. Interior mutability so that the
    /// readers keep taking `&self` (closures in [`api_config`] share it).
    reads: std::cell::RefCell<BTreeMap<&'static str, Setting>>,
}

fn spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.name == name)
}

fn invalid(key: &str, source: &Source, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_string(), origin: source.clone(), reason: reason.into() }
}

fn from_toml(spec: &KeySpec, v: &toml::Value, source: &Source) -> Result<Value, ConfigError> {
    let bad = |expected: &str| invalid(spec.name, source, format!("expected {expected}, got {}", v.type_str()));
    match spec.kind {
        Kind::Str => v.as_str().map(|s| Value::Str(s.to_string())).ok_or_else(|| bad("a string")),
        Kind::U64 { .. } => {
            let i = v.as_integer().ok_or_else(|| bad("an integer"))?;
            u64::try_from(i).map(Value::U64).map_err(|_| invalid(spec.name, source, format!("{i} is negative")))
        }
        Kind::StrList => {
            let arr = v.as_array().ok_or_else(|| bad("an array of strings"))?;
            if arr.len() > BOOTSTRAP_PEERS_MAX {
                return Err(invalid(
                    spec.name,
                    source,
                    format!("{} entries, limit is {BOOTSTRAP_PEERS_MAX}", arr.len()),
                ));
            }
            arr.iter()
                .map(|e| e.as_str().map(str::to_string).ok_or_else(|| bad("an array of strings")))
                .collect::<Result<_, _>>()
                .map(Value::List)
        }
    }
}

fn from_text(spec: &KeySpec, text: &str, source: &Source) -> Result<Value, ConfigError> {
    match spec.kind {
        Kind::Str => Ok(Value::Str(text.to_string())),
        Kind::U64 { .. } => text.trim().parse::<u64>().map(Value::U64).map_err(|_| {
            invalid(spec.name, source, format!("expected an unsigned integer, got {:?}", truncate(text, 40)))
        }),
        Kind::StrList => {
            let items: Vec<String> =
                text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect();
            if items.len() > BOOTSTRAP_PEERS_MAX {
                return Err(invalid(
                    spec.name,
                    source,
                    format!("{} entries, limit is {BOOTSTRAP_PEERS_MAX}", items.len()),
                ));
            }
            Ok(Value::List(items))
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

impl Layers {
    fn set(&mut self, spec: &'static KeySpec, value: Value, source: Source) {
        self.values.insert(spec.name, (value, source));
    }

    fn file(&mut self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse { path: path.to_path_buf(), error: e.to_string() })?;
        let source = Source::File(path.to_path_buf());
        let unknown = |key: String| ConfigError::UnknownKey { key, origin: source.clone(), known: known_keys() };
        for (k, v) in &table {
            if let Some(s) = spec(k) {
                self.set(s, from_toml(s, v, &source)?, source.clone());
            } else if let Some(section) = v.as_table() {
                if !KEYS.iter().any(|s| s.name.starts_with(&format!("{k}."))) {
                    return Err(unknown(format!("[{}]", truncate(k, 40))));
                }
                for (ik, iv) in section {
                    let name = format!("{k}.{ik}");
                    let s = spec(&name).ok_or_else(|| unknown(truncate(&name, 80)))?;
                    self.set(s, from_toml(s, iv, &source)?, source.clone());
                }
            } else {
                return Err(unknown(truncate(k, 80)));
            }
        }
        Ok(())
    }

    fn env(&mut self, env: &[(String, String)]) -> Result<(), ConfigError> {
        for (name, value) in env {
            if !name.starts_with("LEDGERD_") || NON_CONFIG_ENV.contains(&name.as_str()) {
                continue;
            }
            let source = Source::Env(name.clone());
            let s = KEYS.iter().find(|k| env_name(k.name) == *name).ok_or_else(|| ConfigError::UnknownKey {
                key: truncate(name, 80),
                origin: source.clone(),
                known: KEYS.iter().map(|k| env_name(k.name)).collect::<Vec<_>>().join(", "),
            })?;
            self.set(s, from_text(s, value, &source)?, source);
        }
        Ok(())
    }

    fn flags(&mut self, flags: &[Override]) -> Result<(), ConfigError> {
        for o in flags {
            let source = Source::Flag(o.flag.clone());
            let s = spec(&o.key).ok_or_else(|| ConfigError::UnknownKey {
                key: truncate(&o.key, 80),
                origin: source.clone(),
                known: known_keys(),
            })?;
            self.set(s, from_text(s, &o.value, &source)?, source);
        }
        Ok(())
    }

    /// Record that `name` was read, giving `value` (as text) with this default and source.
    fn record(&self, name: &str, value: String, default: String, source: &Source) {
        // Every name read is a declared key; an undeclared one would be a typo in `from_str`.
        debug_assert!(spec(name).is_some(), "{name} is not in KEYS");
        if let Some(s) = spec(name) {
            let setting = Setting { key: s.name, value, default, origin: source.to_string() };
            self.reads.borrow_mut().insert(s.name, setting);
        }
    }

    fn str_or(&self, name: &str, default: &str) -> (String, Source) {
        let (v, src) = match self.values.get(name) {
            Some((Value::Str(s), src)) => (s.clone(), src.clone()),
            _ => (default.to_string(), Source::Default),
        };
        let shown_default = if default.is_empty() { "(none)".to_string() } else { default.to_string() };
        self.record(name, v.clone(), shown_default, &src);
        (v, src)
    }

    /// A list key (empty by default) with its source.
    fn list(&self, name: &str) -> (Vec<String>, Source) {
        let (items, src) = match self.values.get(name) {
            Some((Value::List(items), src)) => (items.clone(), src.clone()),
            _ => (Vec::new(), Source::Default),
        };
        self.record(name, format!("[{}]", items.join(", ")), "[]".into(), &src);
        (items, src)
    }

    /// An integer key whose default is not a number but depends on something known later (`derived`
    /// says how, for `config explain`): `None` when unset.
    fn u64_opt(&self, name: &str, derived: &str) -> Result<Option<u64>, ConfigError> {
        match self.values.get(name) {
            Some((Value::U64(_), _)) => self.u64_or(name, 0).map(|v| {
                if let Some(s) = self.reads.borrow_mut().get_mut(name) {
                    s.default = derived.to_string();
                }
                Some(v)
            }),
            _ => {
                self.record(name, "unset".into(), derived.to_string(), &Source::Default);
                Ok(None)
            }
        }
    }

    fn u64_or(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        let (v, src) = match self.values.get(name) {
            Some((Value::U64(v), src)) => (*v, src.clone()),
            _ => (default, Source::Default),
        };
        if let Some(KeySpec { kind: Kind::U64 { min, max }, .. }) = spec(name)
            && (v < *min || v > *max)
        {
            return Err(invalid(name, &src, format!("{v} is outside {min}..={max}")));
        }
        self.record(name, v.to_string(), default.to_string(), &src);
        Ok(v)
    }

    /// Every key in [`KEYS`] order with what was read for it. A key `from_str` never read (a bug the unit
    /// tests catch) still shows, with its raw layer value and origin `not read by the node`.
    fn explanation(&self) -> Vec<Setting> {
        let reads = self.reads.borrow();
        KEYS.iter()
            .map(|k| {
                reads.get(k.name).cloned().unwrap_or_else(|| Setting {
                    key: k.name,
                    value: self.values.get(k.name).map_or_else(String::new, |(v, _)| format!("{v:?}")),
                    default: String::new(),
                    origin: NOT_READ.to_string(),
                })
            })
            .collect()
    }
}

/// The origin of a key [`from_str`] did not read (never, if the unit tests pass).
const NOT_READ: &str = "not read by the node";

/// A value given on the command line: the config key, the value text and the flag that carried it.
#[derive(Clone, Debug)]
pub struct Override {
    pub key: String,
    pub value: String,
    pub flag: String,
}

impl Override {
    pub fn new(key: &str, value: impl Into<String>, flag: &str) -> Override {
        Override { key: key.to_string(), value: value.into(), flag: flag.to_string() }
    }

    /// Parse `KEY=VALUE` from `--set`.
    pub fn parse_set(text: &str) -> Result<Override, String> {
        let (k, v) = text.split_once('=').ok_or_else(|| format!("expected KEY=VALUE, got {:?}", truncate(text, 80)))?;
        Ok(Override::new(k.trim(), v, &format!("--set {}", truncate(k.trim(), 80))))
    }
}

fn resolve(home: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() { p.to_path_buf() } else { home.join(p) }
}

/// Load `HOME/config.toml`, then apply `env` (all process variables; non-`LEDGERD_` ones are skipped) and
/// `flags`.
pub fn load(home: &Path, env: &[(String, String)], flags: &[Override]) -> Result<Config, ConfigError> {
    explain(home, env, flags).map(|(config, _)| config)
}

/// [`load`], and every key's effective value with its default and origin, in [`KEYS`] order (`ledgerd
/// config explain`). Refuses exactly what [`load`] refuses, with the same errors.
pub fn explain(
    home: &Path,
    env: &[(String, String)],
    flags: &[Override],
) -> Result<(Config, Vec<Setting>), ConfigError> {
    let path = home.join("config.toml");
    let len = std::fs::metadata(&path).map_err(|error| ConfigError::Read { path: path.clone(), error })?.len();
    if len > CONFIG_BYTES_MAX as u64 {
        return Err(ConfigError::TooLarge { path, len, max: CONFIG_BYTES_MAX });
    }
    let text = std::fs::read_to_string(&path).map_err(|error| ConfigError::Read { path: path.clone(), error })?;
    explain_str(home, &path, &text, env, flags)
}

/// [`load`] with the text of the config file given: `path` only names it in errors. Refuses more than
/// [`CONFIG_BYTES_MAX`] bytes before parsing. Reads nothing from disk.
pub fn from_str(
    home: &Path,
    path: &Path,
    text: &str,
    env: &[(String, String)],
    flags: &[Override],
) -> Result<Config, ConfigError> {
    explain_str(home, path, text, env, flags).map(|(config, _)| config)
}

/// [`from_str`] and the explanation of every key ([`explain`]).
pub fn explain_str(
    home: &Path,
    path: &Path,
    text: &str,
    env: &[(String, String)],
    flags: &[Override],
) -> Result<(Config, Vec<Setting>), ConfigError> {
    let path = path.to_path_buf();
    if text.len() > CONFIG_BYTES_MAX {
        return Err(ConfigError::TooLarge { path, len: text.len() as u64, max: CONFIG_BYTES_MAX });
    }
    let mut layers = Layers { values: BTreeMap::new(), reads: Default::default() };
    layers.file(&path, text)?;
    layers.env(env)?;
    layers.flags(flags)?;
    let config = read_config(home, path, &layers)?;
    Ok((config, layers.explanation()))
}

/// The configuration from its layers: every key's default is here (or in the defaults of the types it
/// fills), read through [`Layers`] so that it is recorded for [`explain`].
fn read_config(home: &Path, path: PathBuf, layers: &Layers) -> Result<Config, ConfigError> {
    let (genesis_file, genesis_src) = layers.str_or("genesis_file", "");
    if genesis_file.is_empty() {
        return Err(if genesis_src == Source::Default {
            ConfigError::MissingGenesis { path }
        } else {
            invalid("genesis_file", &genesis_src, "must not be empty")
        });
    }
    let (moniker, moniker_src) = layers.str_or("moniker", "node");
    if moniker.len() > ledger_core::params::MONIKER_BYTES_MAX {
        return Err(invalid(
            "moniker",
            &moniker_src,
            format!("longer than {} bytes", ledger_core::params::MONIKER_BYTES_MAX),
        ));
    }
    let (listen, listen_src) = layers.str_or("p2p.listen_addr", "/ip4/0.0.0.0/tcp/26601");
    let p2p_listen_addr: Multiaddr =
        listen.parse().map_err(|e| invalid("p2p.listen_addr", &listen_src, format!("not a multiaddr: {e}")))?;
    let (peers, peers_src) = layers.list("p2p.bootstrap_peers");
    let bootstrap_peers = peers
        .iter()
        .map(|s| {
            let addr: Multiaddr = s.parse().map_err(|e| {
                invalid("p2p.bootstrap_peers", &peers_src, format!("{:?} is not a multiaddr: {e}", truncate(s, 120)))
            })?;
            if !addr.iter().any(|p| matches!(p, Protocol::P2p(_))) {
                return Err(invalid(
                    "p2p.bootstrap_peers",
                    &peers_src,
                    format!("{:?} does not end in /p2p/<peer id>", truncate(s, 120)),
                ));
            }
            Ok(addr)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (validator_key_file, validator_key_src) = layers.str_or("validator_key_file", "validator_key.json");
    let (api, api_src) = layers.str_or("api.listen_addr", "127.0.0.1:26600");
    let api_listen_addr: SocketAddr =
        api.parse().map_err(|e| invalid("api.listen_addr", &api_src, format!("not an IP:port address: {e}")))?;

    Ok(Config {
        home: home.to_path_buf(),
        moniker,
        genesis_file: resolve(home, &genesis_file),
        validator_key_file: resolve(home, &validator_key_file),
        validator_key_file_explicit: validator_key_src != Source::Default,
        next_validator_key_file: resolve(home, &layers.str_or("next_validator_key_file", "next_validator_key.json").0),
        p2p_key_file: resolve(home, &layers.str_or("p2p_key_file", "p2p_key.json").0),
        data_dir: resolve(home, &layers.str_or("data_dir", "data").0),
        p2p_listen_addr,
        bootstrap_peers,
        max_peers: layers.u64_or("p2p.max_peers", 50)? as usize,
        api_listen_addr,
        api: api_config(layers)?,
        cache_capacity_mb: layers.u64_or("storage.cache_capacity_mb", 32)?,
        retain_blocks: retain_blocks(&layers)?,
        max_data_bytes: layers.u64_or("storage.max_data_mb", 0)?.saturating_mul(1 << 20),
        min_free_bytes: layers.u64_or("storage.min_free_mb", DEFAULT_MIN_FREE_MB)?.saturating_mul(1 << 20),
        idle_summary_interval_ms: layers.u64_or("log.idle_summary_interval_ms", 60_000)?,
        empty_block_interval_ms: layers.u64_or("consensus.empty_block_interval_ms", 1000)?,
        min_block_interval_ms: layers.u64_opt(
            "consensus.min_block_interval_ms",
            &format!("{} with >1 validator in the current set, else 0", crate::driver::DEFAULT_MIN_BLOCK_INTERVAL_MS),
        )?,
        double_sign_watch_ms: layers
            .u64_or("consensus.double_sign_watch_ms", crate::driver::DEFAULT_DOUBLE_SIGN_WATCH_MS)?,
        build_txs_max: layers.u64_or("consensus.build_txs_max", crate::driver::DEFAULT_BUILD_TXS_MAX as u64)? as usize,
        mempool_max_txs: layers.u64_or("mempool.max_txs", 50_000)? as usize,
        mempool_max_bytes: layers.u64_or("mempool.max_bytes", 32 * 1024 * 1024)? as usize,
        mempool_max_per_sender: layers.u64_or("mempool.max_per_sender", 1024)? as usize,
        mempool_max_nonce_gap: layers.u64_or("mempool.max_nonce_gap", 64)?,
        // Bounded to 1..=100 by the key's kind.
        mempool_gapped_below_fill_percent: layers.u64_or("mempool.gapped_below_fill_percent", 50)?.min(100) as u8,
        mempool_drain_target_ms: layers.u64_or("mempool.drain_target_ms", 600)?,
        mempool_drain_floor_txs: layers.u64_or("mempool.drain_floor_txs", 4096)? as usize,
        state_sync: crate::statesync::StateSyncOptions {
            enable: layers.u64_or("state_sync.enable", 0)? == 1,
            snapshot_interval: layers.u64_or("state_sync.snapshot_interval", 1000)?,
            discovery_timeout: std::time::Duration::from_millis(
                layers.u64_or("state_sync.discovery_timeout_ms", 10_000)?,
            ),
        },
    })
}

/// `storage.retain_blocks`: 0 (keep all) or at least [`crate::storage::prune::RETAIN_BLOCKS_MIN`].
fn retain_blocks(layers: &Layers) -> Result<u64, ConfigError> {
    let n = layers.u64_or("storage.retain_blocks", 0)?;
    let min = crate::storage::prune::RETAIN_BLOCKS_MIN;
    if n != 0 && n < min {
        let src = layers.values.get("storage.retain_blocks").map_or(Source::Default, |(_, s)| s.clone());
        return Err(invalid(
            "storage.retain_blocks",
            &src,
            format!(
                "{n} is below {min} (the start-up check and crash recovery read the last blocks); 0 keeps every block"
            ),
        ));
    }
    Ok(n)
}

/// The `[api]` limits from the layers, defaults from [`crate::api::ApiConfig::default`].
fn api_config(layers: &Layers) -> Result<crate::api::ApiConfig, ConfigError> {
    use std::time::Duration;
    let d = crate::api::ApiConfig::default();
    let ms = |key: &str, default: Duration| -> Result<Duration, ConfigError> {
        Ok(Duration::from_millis(layers.u64_or(key, default.as_millis() as u64)?))
    };
    let n = |key: &str, default: usize| -> Result<usize, ConfigError> {
        Ok(usize::try_from(layers.u64_or(key, default as u64)?).unwrap_or(usize::MAX))
    };
    let rate = |key: &str, default: u32| -> Result<u32, ConfigError> {
        Ok(u32::try_from(layers.u64_or(key, u64::from(default))?).unwrap_or(u32::MAX))
    };
    let (clients, clients_src) = layers.list("api.unlimited_clients");
    let unlimited_clients = clients
        .iter()
        .map(|s| {
            s.trim().parse::<std::net::IpAddr>().map_err(|e| {
                invalid(
                    "api.unlimited_clients",
                    &clients_src,
                    format!("{:?} is not an IP address: {e}", truncate(s, 120)),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(crate::api::ApiConfig {
        connections_max: n("api.connections_max", d.connections_max)?,
        connections_per_client_max: n("api.connections_per_client_max", d.connections_per_client_max)?,
        header_read_timeout: ms("api.header_read_timeout_ms", d.header_read_timeout)?,
        body_read_timeout: ms("api.body_read_timeout_ms", d.body_read_timeout)?,
        write_timeout: ms("api.write_timeout_ms", d.write_timeout)?,
        request_timeout: ms("api.request_timeout_ms", d.request_timeout)?,
        send_buffer_bytes: n("api.send_buffer_bytes", d.send_buffer_bytes)?,
        requests_per_client_per_sec: rate("api.requests_per_client_per_sec", d.requests_per_client_per_sec)?,
        request_burst_per_client: rate("api.request_burst_per_client", d.request_burst_per_client)?,
        concurrent_requests_max: n("api.concurrent_requests_max", d.concurrent_requests_max)?,
        commit_waits_max: n("api.commit_waits_max", d.commit_waits_max)?,
        commit_waits_per_client_max: n("api.commit_waits_per_client_max", d.commit_waits_per_client_max)?,
        event_streams_max: n("api.event_streams_max", d.event_streams_max)?,
        event_streams_per_client_max: n("api.event_streams_per_client_max", d.event_streams_per_client_max)?,
        body_buffer_bytes_max: n("api.body_buffer_bytes_max", d.body_buffer_bytes_max)?,
        body_buffer_bytes_per_client_max: n(
            "api.body_buffer_bytes_per_client_max",
            d.body_buffer_bytes_per_client_max,
        )?,
        unlimited_clients,
        ..d
    })
}

/// The commented `config.toml` that `ledgerd init` writes (`toml` writes no comments).
pub fn template(moniker: &str) -> String {
    format!(
        r#"# ledgerd node configuration (see docs/home-layout.md).
# Paths are relative to this home directory unless absolute. Unknown keys are an error.
# Every key can be overridden by an environment variable LEDGERD_<SECTION>_<KEY>
# (e.g. LEDGERD_P2P_MAX_PEERS=20, LEDGERD_GENESIS_FILE=/path/genesis.json) and some by flags of
# `ledgerd start` (--genesis-file, --p2p-listen-addr, --api-listen-addr, --bootstrap-peer, --set KEY=VALUE).

moniker = {moniker:?}
# REQUIRED: the chain's genesis file (from `genesis` or your network's operators). The node refuses to
# start without it, and refuses a data directory created for another genesis.
genesis_file = "genesis.json"
# Validator signing key (plaintext). Unset, it is validator_key.json in this home, and without that file
# the node runs as a full node. Set here (or by LEDGERD_VALIDATOR_KEY_FILE or a flag), the file must exist:
# a missing one stops the node instead of starting it as a full node.
# validator_key_file = "validator_key.json"
# The key a key rotation switches to (`ledgerd next-key` writes it). When the rotation takes effect the node
# signs with it from that height on, without a restart; its signer state is data/next_signer_state.json.
# next_validator_key_file = "next_validator_key.json"
# libp2p identity, separate from the validator key.
p2p_key_file = "p2p_key.json"
# Database and signer state, created by the node.
data_dir = "data"

[p2p]
listen_addr = "/ip4/0.0.0.0/tcp/26601"
# Peers to dial at start and redial when they drop: "/ip4/HOST/tcp/PORT/p2p/PEER_ID".
bootstrap_peers = []
max_peers = 50

[api]
listen_addr = "127.0.0.1:26600"
# Limits that keep one client from taking the API away from the others. A client is an IP address (an
# IPv6 /64); loopback is a client like any other unless listed in unlimited_clients.
# connections_max = 1024                  # open connections in all; more are closed at once
# connections_per_client_max = 64         # open connections from one client
# header_read_timeout_ms = 10000          # complete request headers within this (idle/slowloris closed)
# body_read_timeout_ms = 10000            # complete request body within this (408 body_timeout)
# write_timeout_ms = 30000                # a response write stalled this long closes the connection
# request_timeout_ms = 30000              # time to answer (408 timeout)
# send_buffer_bytes = 262144              # SO_SNDBUF per connection (0: kernel autotuning, up to 4 MiB)
# requests_per_client_per_sec = 500       # then delayed up to 1 s, then 429 rate_limited (0: no limit)
# request_burst_per_client = 1000
# concurrent_requests_max = 512           # requests in handlers at once (503 overloaded)
# commit_waits_max = 256                  # POST /txs?wait=commit waiting at once; beyond: answered pending
# commit_waits_per_client_max = 32
# event_streams_max = 256                 # open /events streams (503 too_many_subscribers)
# event_streams_per_client_max = 8
# body_buffer_bytes_max = 67108864        # request-body bytes buffered at once (503 overloaded)
# body_buffer_bytes_per_client_max = 16777216
# unlimited_clients = []                  # IP addresses exempt from the per-client limits

[storage]
# sled page cache in MiB (sled's own default is 1 GiB). Measured on one validator at 45,000 tx/s for 30 s:
# 349 MiB peak RSS with 64, 302 with 32, same throughput (longer runs at full load still peak higher).
cache_capacity_mb = 32
# Keep the bodies (transactions) of the last N blocks; older ones are pruned in the background and answered
# 410 `pruned`. Headers and commit certificates are always kept (light clients and the wallet need them).
# 0 = keep every block.
# retain_blocks = 0
# Byte budget of data_dir in MiB (0 = none): above it the node refuses transactions (503 disk_budget).
# max_data_mb = 0
# Free-space floor of data_dir's file system in MiB (0 = none): below it the node refuses transactions
# (503 disk_full) instead of filling the disk.
# min_free_mb = 256

[log]
# Empty blocks are logged as one INFO summary line per interval instead of a line per block (0 = a line per
# block). Blocks with transactions are always logged.
# idle_summary_interval_ms = 60000

[consensus]
# With an empty mempool, propose an empty block at most this often.
empty_block_interval_ms = 1000
# Under load, wait this long after a commit before proposing, so blocks grow instead of multiplying
# (fewer blocks per second, less work per transaction). 0 = propose at once. Unset: 40 with more than
# one validator (amortises each height's votes and fsyncs), 0 with one.
# min_block_interval_ms = 40
# Most transactions in a block this node proposes (the chain's txs_per_block_max still bounds it): a block
# every validator can receive, execute and vote on well within the round's timeouts, also under overload.
build_txs_max = 4096
# A validator (re)started watches the network this long, connected and caught up, before it signs, so that
# another process running its key, or its own votes from before a restart, show up first (0: no watch).
# double_sign_watch_ms = 6000

[mempool]
max_txs = 50000
max_bytes = 33554432
max_per_sender = 1024
# How far ahead of the account nonce a pending transaction may be.
max_nonce_gap = 64
# Above this fill (percent of what the pool takes from clients, see drain_target_ms, or of max_bytes) only
# a sender's next executable nonce is admitted (429 nonce_gap_under_load otherwise): a full pool never fills
# with transactions behind a gap. 100: off.
gapped_below_fill_percent = 50
# Admit at most what the network committed in this many ms at the pace of its last 16 blocks (never fewer
# than drain_floor_txs): admitted transactions wait about that long, the excess gets 429 mempool_full. 0: off.
drain_target_ms = 600
drain_floor_txs = 4096
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home_with(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), text).unwrap();
        dir
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn template_loads_with_defaults_and_resolved_paths() {
        let dir = home_with(&template("alice"));
        let c = load(dir.path(), &[], &[]).unwrap();
        assert_eq!(c.moniker, "alice");
        assert_eq!(c.genesis_file, dir.path().join("genesis.json"));
        assert_eq!(c.max_peers, 50);
        assert_eq!(c.mempool_max_nonce_gap, 64);
        assert!(c.bootstrap_peers.is_empty());
    }

    #[test]
    fn home_layout_example_loads() {
        let text = r#"
moniker = "node0"
genesis_file = "/abs/genesis.json"
[p2p]
listen_addr = "/ip4/127.0.0.1/tcp/26601"
bootstrap_peers = ["/ip4/127.0.0.1/tcp/26603/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
max_peers = 7
[storage]
cache_capacity_mb = 16
"#;
        let dir = home_with(text);
        let c = load(dir.path(), &[], &[]).unwrap();
        assert_eq!(c.genesis_file, PathBuf::from("/abs/genesis.json"));
        assert_eq!(c.bootstrap_peers.len(), 1);
        assert_eq!(c.max_peers, 7);
        assert_eq!(c.cache_capacity_mb, 16);
    }

    #[test]
    fn precedence_flag_over_env_over_file() {
        let dir = home_with("genesis_file = \"g.json\"\n[p2p]\nmax_peers = 5\n");
        let c = load(dir.path(), &env(&[("LEDGERD_P2P_MAX_PEERS", "6"), ("PATH", "/bin")]), &[]).unwrap();
        assert_eq!(c.max_peers, 6);
        let flags = [Override::parse_set("p2p.max_peers=7").unwrap()];
        let c = load(dir.path(), &env(&[("LEDGERD_P2P_MAX_PEERS", "6")]), &flags).unwrap();
        assert_eq!(c.max_peers, 7);
        let c = load(dir.path(), &env(&[("LEDGERD_P2P_BOOTSTRAP_PEERS", "/ip4/1.2.3.4/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN, /ip4/1.2.3.5/tcp/1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN")]), &[]).unwrap();
        assert_eq!(c.bootstrap_peers.len(), 2);
    }

    #[test]
    fn unknown_keys_are_refused_naming_key_and_source() {
        let dir = home_with("genesis_file = \"g\"\nbogus = 1\n");
        let e = load(dir.path(), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("`bogus`") && e.contains("config.toml"), "{e}");

        let dir = home_with("genesis_file = \"g\"\n[p2p]\nlisten_adr = \"x\"\n");
        let e = load(dir.path(), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("p2p.listen_adr"), "{e}");

        let dir = home_with("genesis_file = \"g\"\n[nosuch]\nx = 1\n");
        assert!(load(dir.path(), &[], &[]).unwrap_err().to_string().contains("[nosuch]"));

        let dir = home_with("genesis_file = \"g\"\n");
        let e = load(dir.path(), &env(&[("LEDGERD_P2P_MAXPEERS", "3")]), &[]).unwrap_err().to_string();
        assert!(e.contains("LEDGERD_P2P_MAXPEERS") && e.contains("environment variable"), "{e}");
        assert!(load(dir.path(), &env(&[("LEDGERD_HOME", "/x"), ("LEDGERD_LOG", "debug")]), &[]).is_ok());

        let e = load(dir.path(), &[], &[Override::parse_set("nope=1").unwrap()]).unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("flag --set nope"), "{e}");
    }

    #[test]
    fn invalid_values_are_refused_naming_key_and_source() {
        let dir = home_with("genesis_file = \"g\"\n[p2p]\nmax_peers = \"many\"\n");
        let e = load(dir.path(), &[], &[]).unwrap_err().to_string();
        assert!(e.contains("p2p.max_peers") && e.contains("expected an integer") && e.contains("file"), "{e}");

        let dir = home_with("genesis_file = \"g\"\n");
        let e = load(dir.path(), &env(&[("LEDGERD_MEMPOOL_MAX_TXS", "-1")]), &[]).unwrap_err().to_string();
        assert!(e.contains("mempool.max_txs") && e.contains("LEDGERD_MEMPOOL_MAX_TXS"), "{e}");
        let e = load(dir.path(), &env(&[("LEDGERD_MEMPOOL_MAX_TXS", "0")]), &[]).unwrap_err().to_string();
        assert!(e.contains("outside"), "{e}");

        let flags = [Override::new("p2p.listen_addr", "not-an-addr", "--p2p-listen-addr")];
        let e = load(dir.path(), &[], &flags).unwrap_err().to_string();
        assert!(e.contains("p2p.listen_addr") && e.contains("flag --p2p-listen-addr"), "{e}");

        let flags = [Override::new("p2p.bootstrap_peers", "/ip4/1.2.3.4/tcp/5", "--bootstrap-peer")];
        let e = load(dir.path(), &[], &flags).unwrap_err().to_string();
        assert!(e.contains("/p2p/"), "{e}");

        let flags = [Override::new("api.listen_addr", "localhost", "--api-listen-addr")];
        assert!(load(dir.path(), &[], &flags).is_err());

        let dir = home_with("[p2p\n");
        assert!(matches!(load(dir.path(), &[], &[]), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn genesis_file_is_required() {
        let dir = home_with("moniker = \"x\"\n");
        let e = load(dir.path(), &[], &[]).unwrap_err();
        assert!(matches!(e, ConfigError::MissingGenesis { .. }), "{e}");
        let c = load(dir.path(), &env(&[("LEDGERD_GENESIS_FILE", "/g.json")]), &[]).unwrap();
        assert_eq!(c.genesis_file, PathBuf::from("/g.json"));
    }

    #[test]
    fn validator_key_file_explicit_only_when_set() {
        let dir = home_with(&template("alice"));
        let c = load(dir.path(), &[], &[]).unwrap();
        assert!(!c.validator_key_file_explicit, "the template leaves the key file to its default");
        assert_eq!(c.validator_key_file, dir.path().join("validator_key.json"));

        // The default value, written out, is still explicit: the operator named the file.
        let dir = home_with("genesis_file = \"g\"\nvalidator_key_file = \"validator_key.json\"\n");
        let c = load(dir.path(), &[], &[]).unwrap();
        assert!(c.validator_key_file_explicit);
        assert_eq!(c.validator_key_file, dir.path().join("validator_key.json"));

        let dir = home_with("genesis_file = \"g\"\n");
        let c = load(dir.path(), &env(&[("LEDGERD_VALIDATOR_KEY_FILE", "/keys/v.json")]), &[]).unwrap();
        assert!(c.validator_key_file_explicit);
        assert_eq!(c.validator_key_file, PathBuf::from("/keys/v.json"));

        let flags = [Override::parse_set("validator_key_file=k.json").unwrap()];
        let c = load(dir.path(), &[], &flags).unwrap();
        assert!(c.validator_key_file_explicit);
        assert_eq!(c.validator_key_file, dir.path().join("k.json"));

        // Unrelated keys do not make it explicit.
        let c = load(dir.path(), &env(&[("LEDGERD_P2P_KEY_FILE", "p.json")]), &[]).unwrap();
        assert!(!c.validator_key_file_explicit);
    }

    #[test]
    fn api_limits_load_with_defaults_and_overrides() {
        let dir = home_with(&template("alice"));
        let c = load(dir.path(), &[], &[]).unwrap();
        let d = crate::api::ApiConfig::default();
        assert_eq!(c.api.connections_per_client_max, d.connections_per_client_max);
        assert_eq!(c.api.header_read_timeout, d.header_read_timeout);
        let flags = [
            Override::parse_set("api.connections_per_client_max=3").unwrap(),
            Override::parse_set("api.header_read_timeout_ms=1500").unwrap(),
        ];
        let env = env(&[("LEDGERD_API_UNLIMITED_CLIENTS", "127.0.0.1, ::1")]);
        let c = load(dir.path(), &env, &flags).unwrap();
        assert_eq!(c.api.connections_per_client_max, 3);
        assert_eq!(c.api.header_read_timeout, std::time::Duration::from_millis(1500));
        assert_eq!(c.api.unlimited_clients.len(), 2);
        let bad = env_pairs("LEDGERD_API_UNLIMITED_CLIENTS", "localhost");
        let e = load(dir.path(), &bad, &[]).unwrap_err().to_string();
        assert!(e.contains("api.unlimited_clients") && e.contains("not an IP address"), "{e}");
    }

    fn env_pairs(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), v.to_string())]
    }

    /// `config explain` cannot forget a key: every key in KEYS is read by `from_str` (so it has a recorded
    /// value, default and origin), and setting any key by a flag shows that flag as its origin.
    #[test]
    fn explain_covers_every_key_with_its_origin() {
        let dir = home_with("genesis_file = \"g.json\"\n");
        let (_, settings) = explain(dir.path(), &[], &[]).unwrap();
        assert_eq!(settings.len(), KEYS.len());
        for (spec, s) in KEYS.iter().zip(&settings) {
            assert_eq!(spec.name, s.key);
            assert_ne!(s.origin, NOT_READ, "{} is declared in KEYS but from_str never reads it", s.key);
            let expected = if s.key == "genesis_file" { "file" } else { "default" };
            assert!(s.origin.starts_with(expected), "{}: {}", s.key, s.origin);
        }
        for s in &settings {
            // The default's own value, given by a flag: valid for every kind of key.
            let value = match s.key {
                "consensus.min_block_interval_ms" => "40".to_string(),
                _ => s.value.trim_start_matches('[').trim_end_matches(']').to_string(),
            };
            let flags = [Override::new(s.key, value.clone(), "--x")];
            let (_, again) = explain(dir.path(), &[], &flags).unwrap_or_else(|e| panic!("{}={value}: {e}", s.key));
            let got = again.iter().find(|a| a.key == s.key).unwrap();
            assert_eq!(got.origin, "flag --x", "{}", s.key);
        }
    }

    #[test]
    fn explain_names_file_env_flag_and_default() {
        let dir = home_with("genesis_file = \"g.json\"\nmoniker = \"alice\"\n[p2p]\nmax_peers = 5\n");
        let env = env(&[("LEDGERD_MEMPOOL_MAX_TXS", "77"), ("LEDGERD_P2P_MAX_PEERS", "6")]);
        let flags = [Override::parse_set("storage.retain_blocks=900").unwrap()];
        let (c, settings) = explain(dir.path(), &env, &flags).unwrap();
        let get = |k: &str| settings.iter().find(|s| s.key == k).unwrap().clone();
        let file = dir.path().join("config.toml");
        assert_eq!(get("moniker").origin, format!("file {}", file.display()));
        assert_eq!((get("moniker").value.as_str(), get("moniker").default.as_str()), ("alice", "node"));
        assert_eq!(get("p2p.max_peers").origin, "environment variable LEDGERD_P2P_MAX_PEERS");
        assert_eq!((get("p2p.max_peers").value.as_str(), c.max_peers), ("6", 6));
        assert_eq!(get("mempool.max_txs").value, "77");
        assert_eq!(get("storage.retain_blocks").origin, "flag --set storage.retain_blocks");
        let floor = get("storage.min_free_mb");
        assert_eq!((floor.value, floor.default, floor.origin), ("256".into(), "256".into(), "default".into()));
        let d = crate::api::ApiConfig::default();
        assert_eq!(get("api.connections_max").default, d.connections_max.to_string());
        let derived = get("consensus.min_block_interval_ms");
        assert_eq!(derived.value, "unset");
        assert!(derived.default.starts_with("40 with >1 validator"), "{derived:?}");
        assert_eq!(get("p2p.bootstrap_peers").value, "[]");
        assert_eq!(get("genesis_file").default, "(none)");
    }

    #[test]
    fn explain_refuses_what_load_refuses() {
        let dir = home_with("genesis_file = \"g\"\n[p2p]\nmax_peers = 0\n");
        let a = load(dir.path(), &[], &[]).unwrap_err().to_string();
        let b = explain(dir.path(), &[], &[]).unwrap_err().to_string();
        assert_eq!(a, b);
        assert!(a.contains("p2p.max_peers"), "{a}");
    }

    #[test]
    fn oversized_file_is_refused() {
        let dir = home_with(&"#".repeat(CONFIG_BYTES_MAX + 1));
        assert!(matches!(load(dir.path(), &[], &[]), Err(ConfigError::TooLarge { .. })));
    }
}
