//! `ledgerd doctor`: check a node's home and the running node, one line per check with a verdict and
//! the next step (the shape of `brew doctor`).
//!
//! The checks run in a fixed order ([`Check::ALL`]) and each failing check has an exit code of its own
//! ([`Check::exit_code`]). The doctor exits with the code of the first check that failed in that order,
//! so the code names the most basic problem (a config that does not load explains everything after it);
//! every check still prints. Warnings do not change the exit code.
//!
//! **Read-only, and never the data directory's lock.** The doctor writes nothing. The files it reads
//! beside the database (`signer_state.json`, `high_water.json`) are replaced atomically by the node
//! (temp file, rename), so reading them while the node runs sees a whole file, never a torn one; taking
//! the lock would make the doctor useless on a running node, which is the node it is for. It does not
//! open the database (sled admits one process): what only the running node knows (its height, the current
//! validator set, its peers, the latest block's time, whether it catches up) comes from the node's API at
//! `api.listen_addr`. The lock is only looked at ([`crate::safety::lock_held_by`]) to tell "not running"
//! from "running but not answering on that address".
//!
//! **Node not running** is the `node` check's failure. The checks that need the running node (`clock`,
//! `sync`) then print `skip`; the offline checks (config, genesis, keys, signer state, disk, peers) run all
//! the same, with what the files say (the genesis validator set instead of the current one, the
//! high-water mark instead of the node's height).

pub mod http;
pub mod probe;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use ledger_core::{Genesis, Hash, Height, PublicKey};
use serde::de::DeserializeOwned;

use crate::api::{HealthView, StatusView, ValidatorsView, health_code};
use crate::config::{Config, ConfigError};
use crate::safety::high_water::HighWater;
use crate::safety::signer::{self, SignerFile};
use probe::{PeerReport, ProbeRequest};

/// The checks, in the order they run and print.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Config,
    Genesis,
    ValidatorKey,
    SignerState,
    Disk,
    Peers,
    Node,
    Clock,
    Sync,
}

impl Check {
    pub const ALL: [Check; 9] = [
        Check::Config,
        Check::Genesis,
        Check::ValidatorKey,
        Check::SignerState,
        Check::Disk,
        Check::Peers,
        Check::Node,
        Check::Clock,
        Check::Sync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Config => "config",
            Check::Genesis => "genesis",
            Check::ValidatorKey => "validator_key",
            Check::SignerState => "signer_state",
            Check::Disk => "disk",
            Check::Peers => "peers",
            Check::Node => "node",
            Check::Clock => "clock",
            Check::Sync => "sync",
        }
    }

    /// The exit code when this check fails: 10 and up in [`Check::ALL`] order (1 and 2 are every
    /// command's error and usage codes).
    pub fn exit_code(self) -> u8 {
        10 + Check::ALL.iter().position(|c| *c == self).unwrap_or(0) as u8
    }
}

/// `ledgerd doctor --help`'s epilogue. A unit test keeps it equal to [`Check::ALL`] and the exit codes.
pub const HELP: &str =
    "Checks, in order (one line each: ok, warn, FAIL or skip, the check, what it found and what to do):
  config         config.toml, LEDGERD_* variables and --set load as `ledgerd start` loads them
  genesis        the genesis file reads and validates: chain id, genesis hash
  validator_key  the validator key (if any) is in the validator set (the node's current set when it
                 runs, else the genesis set); no key: a full node, fine
  signer_state   data/signer_state.json loads, belongs to this key and chain, and is not ahead of the
                 chain's height (the node's, else data/high_water.json)
  disk           free space of data_dir's file system above storage.min_free_mb; data_dir below
                 storage.max_data_mb when set
  peers          every p2p.bootstrap_peers entry: TCP, libp2p handshake with its peer id, same chain
                 (identify) and same genesis hash (its block 1)
  node           the node answers at api.listen_addr, with this genesis
  clock          this clock against the latest block's time (FAIL beyond --max-clock-skew-ms)
  sync           the node is not catching up, not stalled, has peers when it needs them, and no
                 bootstrap peer is --max-sync-lag-blocks ahead of it

Exit codes:
  0   every check passed (warnings allowed)
  1   the doctor itself could not run; 2: usage
  10  config         11  genesis        12  validator_key  13  signer_state   14  disk
  15  peers          16  node (not running, or another chain at its API address)
  17  clock          18  sync
  With several failures: the code of the first failing check in this order.

Read-only: the doctor writes nothing and does not take the data directory's lock, so it runs beside a
running node; what only the node knows it asks the node's API.";

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Works, but look at it; does not change the exit code.
    Warn,
    Fail,
    /// Could not be checked because an earlier check failed (that one says why).
    Skip,
}

impl Verdict {
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        }
    }
}

/// One printed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: Check,
    pub verdict: Verdict,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {:<13}  {}", self.verdict.label(), self.check.name(), self.message)
    }
}

/// How strict the doctor is, and how long it waits.
#[derive(Clone, Debug)]
pub struct Options {
    /// Deadline of each network step: every API request, and the whole peer probe.
    pub timeout: Duration,
    /// `clock` fails beyond this skew and warns beyond half of it.
    pub max_clock_skew_ms: u64,
    /// `sync` fails when a bootstrap peer holds a block this many heights above the node's.
    pub max_sync_lag_blocks: u64,
    /// Added to this machine's clock before it is compared (tests: a clock that is off).
    pub clock_offset_ms: i64,
}

/// Beyond this skew a validator refuses the other validators' proposals as from the future (or they
/// refuse its own): [`ledger_core::shell::TIMESTAMP_DRIFT_MAX_MS`].
pub const DEFAULT_MAX_CLOCK_SKEW_MS: u64 = ledger_core::shell::TIMESTAMP_DRIFT_MAX_MS;
/// A node this far behind is catching up, not following: at the fastest pace (40 ms blocks) about 2 s of
/// blocks, more than the time between the doctor reading the node's height and asking the peers.
pub const DEFAULT_MAX_SYNC_LAG_BLOCKS: u64 = 50;

impl Default for Options {
    fn default() -> Self {
        Options {
            timeout: Duration::from_secs(5),
            max_clock_skew_ms: DEFAULT_MAX_CLOCK_SKEW_MS,
            max_sync_lag_blocks: DEFAULT_MAX_SYNC_LAG_BLOCKS,
            clock_offset_ms: 0,
        }
    }
}

/// The exit code of a run: 0 unless a check failed, else the first failing check's code.
pub fn exit_code(findings: &[Finding]) -> u8 {
    findings.iter().find(|f| f.verdict == Verdict::Fail).map_or(0, |f| f.check.exit_code())
}

/// Run every check on the home whose configuration loaded as `config` (or did not: then only the
/// `config` line says why and the others are skipped). `report` sees each finding as it is made.
pub fn run(config: Result<Config, ConfigError>, opts: &Options, report: &mut dyn FnMut(&Finding)) -> Vec<Finding> {
    let mut out = Out { findings: Vec::new(), report };
    let cfg = match config {
        Ok(cfg) => {
            out.emit(
                Check::Config,
                Verdict::Ok,
                format!(
                    "{} loads (every setting and its origin: `ledgerd config explain --home {}`)",
                    cfg.home.join("config.toml").display(),
                    cfg.home.display()
                ),
            );
            cfg
        }
        Err(e) => {
            out.emit(Check::Config, Verdict::Fail, format!("{e} (`ledgerd start` refuses it the same way)"));
            for c in &Check::ALL[1..] {
                out.emit(*c, Verdict::Skip, "needs a configuration that loads".into());
            }
            return out.findings;
        }
    };
    let genesis = match crate::run::read_genesis(&cfg.genesis_file) {
        Ok(g) => {
            let n = g.validators.len();
            out.emit(
                Check::Genesis,
                Verdict::Ok,
                format!(
                    "{}: chain {}, genesis hash {}, {n} validator{}",
                    cfg.genesis_file.display(),
                    g.chain_id,
                    g.hash().to_hex(),
                    if n == 1 { "" } else { "s" }
                ),
            );
            Some(g)
        }
        Err(e) => {
            out.emit(
                Check::Genesis,
                Verdict::Fail,
                format!("{e:#}: put the chain's genesis file there, or point genesis_file at it"),
            );
            None
        }
    };
    // Asked first, printed in its place: the key and signer checks use what the node says.
    let node = NodeView::fetch(&cfg, opts.timeout);
    let ours = genesis.as_ref().map(Genesis::hash);
    let live =
        node.status.as_ref().ok().filter(|s| Some(s.genesis_hash.as_str()) == ours.map(|h| h.to_hex()).as_deref());
    let needs_genesis = "needs the genesis file (see genesis)";

    let signing = match &genesis {
        Some(g) => {
            let (verdict, message, signing) = check_validator_key(&cfg, g, live.and(node.validators.as_ref()));
            out.emit(Check::ValidatorKey, verdict, message);
            signing
        }
        None => {
            out.emit(Check::ValidatorKey, Verdict::Skip, needs_genesis.into());
            None
        }
    };
    match &genesis {
        Some(g) => {
            let (verdict, message) = check_signer_state(&cfg, &g.chain_id, signing.as_ref(), live);
            out.emit(Check::SignerState, verdict, message);
        }
        None => out.emit(Check::SignerState, Verdict::Skip, needs_genesis.into()),
    }
    let (verdict, message) = check_disk(&cfg);
    out.emit(Check::Disk, verdict, message);

    let n_validators = match (live.and(node.validators.as_ref()), &genesis) {
        (Some(v), _) => v.validators.len(),
        (None, Some(g)) => g.validators.len(),
        (None, None) => 0,
    };
    let peers = match &genesis {
        Some(g) => {
            let reports = if cfg.bootstrap_peers.is_empty() {
                Vec::new()
            } else {
                probe::probe(&ProbeRequest {
                    chain_id: g.chain_id.clone(),
                    block_bytes_max: g.params.block_bytes_max as usize,
                    peers: cfg.bootstrap_peers.clone(),
                    lag_probe: live.map(|s| Height(s.height.saturating_add(opts.max_sync_lag_blocks.max(1)))),
                    timeout: opts.timeout,
                })
            };
            let (verdict, message) = judge_peers(&reports, &g.chain_id, &g.hash(), n_validators);
            out.emit(Check::Peers, verdict, message);
            Some(reports)
        }
        None => {
            out.emit(Check::Peers, Verdict::Skip, needs_genesis.into());
            None
        }
    };

    let (verdict, message) =
        judge_node(&node, genesis.as_ref(), crate::safety::lock_held_by(&cfg.data_dir).as_deref(), &cfg.home);
    out.emit(Check::Node, verdict, message);

    let not_running = "needs the running node (see node)";
    match live {
        Some(status) => {
            let now = now_ms().saturating_add_signed(opts.clock_offset_ms);
            let (verdict, message) = if status.catching_up {
                (Verdict::Skip, "the node is catching up: its latest block is old by design (see sync)".into())
            } else if status.height == 0 {
                (Verdict::Skip, "no block committed yet: nothing to compare the clock with".into())
            } else {
                judge_clock(now, status.latest_block_time, cfg.empty_block_interval_ms, opts.max_clock_skew_ms)
            };
            out.emit(Check::Clock, verdict, message);
            let (verdict, message) = judge_sync(
                status,
                node.health.as_ref(),
                n_validators,
                peers.as_deref().unwrap_or_default(),
                opts.max_sync_lag_blocks,
            );
            out.emit(Check::Sync, verdict, message);
        }
        None => {
            out.emit(Check::Clock, Verdict::Skip, not_running.into());
            out.emit(Check::Sync, Verdict::Skip, not_running.into());
        }
    }
    out.findings
}

struct Out<'a> {
    findings: Vec<Finding>,
    report: &'a mut dyn FnMut(&Finding),
}

impl Out<'_> {
    fn emit(&mut self, check: Check, verdict: Verdict, message: String) {
        let f = Finding { check, verdict, message };
        (self.report)(&f);
        self.findings.push(f);
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// What the node's API said (or why it said nothing).
struct NodeView {
    api: SocketAddr,
    status: Result<StatusView, String>,
    health: Option<HealthView>,
    validators: Option<ValidatorsView>,
}

impl NodeView {
    fn fetch(cfg: &Config, timeout: Duration) -> NodeView {
        let api = local_address(cfg.api_listen_addr);
        let status = get_json::<StatusView>(api, "/status", timeout);
        let (health, validators) = match &status {
            Ok(_) => (get_json(api, "/health", timeout).ok(), get_json(api, "/validators", timeout).ok()),
            Err(_) => (None, None),
        };
        NodeView { api, status, health, validators }
    }
}

/// Where to reach a listener bound to `addr`: loopback for an unspecified address (`0.0.0.0`, `[::]`).
fn local_address(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port()),
        _ => addr,
    }
}

/// The JSON body of an answer (`/health` answers its body with 503 too).
fn get_json<T: DeserializeOwned>(addr: SocketAddr, path: &str, timeout: Duration) -> Result<T, String> {
    let r = http::get(addr, path, timeout).map_err(|e| e.to_string())?;
    serde_json::from_slice(&r.body).map_err(|e| {
        format!("GET {path} at {addr} answered {} with a body that is not a ledgerd answer ({e})", r.status)
    })
}

/// Who signs for this node: the key, and whether it is the one in `next_validator_key_file` (a key
/// rotation took effect).
struct Signing {
    key: PublicKey,
    next: bool,
}

/// The validator key against the node's current set (`current`, from its API) or the genesis set.
fn check_validator_key(
    cfg: &Config,
    genesis: &Genesis,
    current: Option<&ValidatorsView>,
) -> (Verdict, String, Option<Signing>) {
    let key = match crate::keys::load_validator_key(&cfg.validator_key_file) {
        Ok(Some(k)) => k.public(),
        Ok(None) if cfg.validator_key_file_explicit => {
            return (
                Verdict::Fail,
                format!(
                    "validator_key_file is set to {}, but there is no such file: `ledgerd start` refuses to run (fix the path, or unset validator_key_file to run a full node)",
                    cfg.validator_key_file.display()
                ),
                None,
            );
        }
        Ok(None) => {
            return (
                Verdict::Ok,
                format!(
                    "no validator key at {}: a full node (it follows the chain, never votes)",
                    cfg.validator_key_file.display()
                ),
                None,
            );
        }
        Err(e) => return (Verdict::Fail, format!("{e}: restore the key file"), None),
    };
    let (members, joining, which): (Vec<String>, Vec<String>, &str) = match current {
        Some(v) => (
            v.validators.iter().map(|m| m.address.clone()).collect(),
            v.next_validators.iter().map(|m| m.address.clone()).collect(),
            "the current validator set (from the node's API)",
        ),
        None => (
            genesis.validators.iter().map(|m| m.public_key.to_address_string()).collect(),
            Vec::new(),
            "the genesis validator set (the node is not running: later set changes are not known here)",
        ),
    };
    let address = key.to_address_string();
    let n = members.len();
    if members.contains(&address) {
        return (
            Verdict::Ok,
            format!("validator {address} is in {which}, {n} in all"),
            Some(Signing { key, next: false }),
        );
    }
    if let Ok(Some(next)) = crate::keys::load_validator_key(&cfg.next_validator_key_file)
        && members.contains(&next.public().to_address_string())
    {
        return (
            Verdict::Ok,
            format!(
                "a key rotation took effect: the next key {} (next_validator_key_file) is in {which} and signs; the old key {address} is not",
                next.public().to_address_string()
            ),
            Some(Signing { key: next.public(), next: true }),
        );
    }
    if joining.contains(&address) {
        return (
            Verdict::Warn,
            format!("validator {address} is not in {which} yet but joins it at the next height"),
            Some(Signing { key, next: false }),
        );
    }
    (
        Verdict::Fail,
        format!(
            "validator key {address} ({}) is not in {which} of {n}: this node will not vote. Check validator_key_file, have the validators add it (`wallet validator propose-add`), or move the key away to run a full node",
            cfg.validator_key_file.display()
        ),
        Some(Signing { key, next: false }),
    )
}

/// The signer state: loads, this key's and chain's, not ahead of the chain.
fn check_signer_state(
    cfg: &Config,
    chain_id: &str,
    signing: Option<&Signing>,
    live: Option<&StatusView>,
) -> (Verdict, String) {
    let Some(signing) = signing else {
        return (Verdict::Ok, "no validator key: a full node keeps no signer state".into());
    };
    if let Some(s) = live
        && s.signer.mode == "halted"
    {
        return (
            Verdict::Fail,
            format!(
                "the running node's double-sign guard halted signing ({}): another process signs with this key. Stop the other one, then restart this node",
                s.signer.detail.as_deref().unwrap_or("no detail")
            ),
        );
    }
    let file = if signing.next {
        SignerFile::for_next_key(&cfg.data_dir, chain_id, signing.key)
    } else {
        SignerFile::new(&cfg.data_dir, chain_id, signing.key)
    };
    let state = match file.load() {
        Ok(Some(state)) => state,
        Ok(None) => {
            return (
                Verdict::Ok,
                format!("no signer state at {} yet: this key has not signed on this home", file.path().display()),
            );
        }
        Err(e) => return (Verdict::Fail, e.to_string()),
    };
    let mark = match HighWater::open(&cfg.data_dir, chain_id) {
        Ok(hw) => hw.mark().map(|m| m.height.0),
        Err(e) => return (Verdict::Fail, e.to_string()),
    };
    let chain_height = match (live.map(|s| s.height), mark) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    judge_signer(file.path(), signer::last_height(&state).map(|h| h.0), state.floor().0, chain_height)
}

/// The signer state's last signed height and floor against the chain's height. A validator signs at
/// most at the height after the last committed one; a state beyond that was written for another run of
/// a chain with this id (or the database was rewound), and the validator would sign nothing until the
/// chain passes it.
pub fn judge_signer(path: &Path, last_signed: Option<u64>, floor: u64, chain_height: Option<u64>) -> (Verdict, String) {
    let signed = last_signed.map_or_else(|| "never signed".to_string(), |h| format!("last signed at height {h}"));
    let top = last_signed.unwrap_or(0).max(floor);
    match chain_height {
        Some(h) if top > h.saturating_add(1) => (
            Verdict::Fail,
            format!(
                "{} is ahead of the chain: {signed}, look-back floor {floor}, but the chain is at height {h}. This validator signs nothing up to height {top}: the file belongs to an earlier chain with this chain id, or the database was rewound. Find out which before moving it aside (a wrong move risks double-signing)",
                path.display()
            ),
        ),
        Some(h) => (Verdict::Ok, format!("{}: {signed}, look-back floor {floor}, chain at height {h}", path.display())),
        None => (
            Verdict::Ok,
            format!(
                "{}: {signed}, look-back floor {floor} (the chain's height is unknown: node not running and no high_water.json)",
                path.display()
            ),
        ),
    }
}

/// Free space of the data directory's file system and its size, against the configured limits.
fn check_disk(cfg: &Config) -> (Verdict, String) {
    // A new home has no data directory yet: its file system is the nearest existing parent's.
    let Some(existing) = cfg.data_dir.ancestors().find(|p| p.exists()) else {
        return (Verdict::Fail, format!("no part of {} exists", cfg.data_dir.display()));
    };
    let free = match crate::storage::disk::free_bytes(existing) {
        Ok(free) => free,
        Err(e) => return (Verdict::Fail, format!("cannot read the free space of {}: {e}", existing.display())),
    };
    // The node's own measurement (`storage::disk`); a data directory that does not exist yet holds nothing.
    let used = (cfg.max_data_bytes > 0).then(|| crate::storage::disk::dir_bytes(&cfg.data_dir).unwrap_or(0));
    judge_disk(&cfg.data_dir, free, cfg.min_free_bytes, used, cfg.max_data_bytes)
}

fn mib(bytes: u64) -> u64 {
    bytes / (1 << 20)
}

/// The disk verdict from measured free space (`free`) and data size (`used`, when a budget is set).
pub fn judge_disk(data_dir: &Path, free: u64, min_free: u64, used: Option<u64>, max_data: u64) -> (Verdict, String) {
    let dir = data_dir.display();
    if min_free > 0 && free < min_free {
        return (
            Verdict::Fail,
            format!(
                "{} MiB free on the file system of {dir}, below storage.min_free_mb = {}: the node refuses transactions (503 disk_full). Free space, move data_dir, or lower the floor",
                mib(free),
                mib(min_free)
            ),
        );
    }
    if let Some(used) = used
        && max_data > 0
        && used > max_data
    {
        return (
            Verdict::Fail,
            format!(
                "{dir} holds {} MiB, above storage.max_data_mb = {}: the node refuses transactions (503 disk_budget). Prune (storage.retain_blocks) or raise the budget",
                mib(used),
                mib(max_data)
            ),
        );
    }
    let budget = match used {
        Some(used) => format!(", {dir} holds {} MiB of storage.max_data_mb = {}", mib(used), mib(max_data)),
        None => String::new(),
    };
    let floor = if min_free > 0 { format!("storage.min_free_mb = {}", mib(min_free)) } else { "no floor set".into() };
    if min_free > 0 && free < min_free.saturating_mul(2) {
        return (Verdict::Warn, format!("{} MiB free, less than twice {floor}{budget}: free space soon", mib(free)));
    }
    if let Some(used) = used
        && used > max_data / 10 * 9
    {
        return (Verdict::Warn, format!("{} MiB free ({floor}){budget}: over 90 % of the budget", mib(free)));
    }
    (Verdict::Ok, format!("{} MiB free on the file system of {dir} ({floor}){budget}", mib(free)))
}

/// The bootstrap peers' reports against this chain and genesis. A peer of another chain or genesis is
/// a failure (a wrong address in the config); unreachable peers fail when none is reachable and warn
/// otherwise (the node works with the others; a peer may be down for maintenance).
pub fn judge_peers(
    reports: &[PeerReport],
    chain_id: &str,
    genesis_hash: &Hash,
    n_validators: usize,
) -> (Verdict, String) {
    if reports.is_empty() {
        return if n_validators <= 1 {
            (Verdict::Ok, "no bootstrap peers: none needed by a single-validator chain".into())
        } else {
            (
                Verdict::Warn,
                format!(
                    "no bootstrap peers, with {n_validators} validators: this node only joins if peers dial it. Set p2p.bootstrap_peers"
                ),
            )
        };
    }
    let ours = genesis_hash.to_hex();
    let mut wrong = Vec::new();
    let mut down = Vec::new();
    let mut good = Vec::new();
    for r in reports {
        let addr = &r.addr;
        if let Some(why) = &r.unreachable {
            down.push(format!("{addr} unreachable: {why}"));
            continue;
        }
        match (r.protocol_version.as_deref(), r.chain_id()) {
            (Some(_), Some(c)) if c != chain_id => {
                wrong.push(format!("{addr} serves chain {c}, not {chain_id}"));
                continue;
            }
            (Some(pv), None) => {
                wrong.push(format!("{addr} is not a ledgerd node (its protocol is {pv:?})"));
                continue;
            }
            _ => {}
        }
        match (&r.genesis_hash, &r.genesis_error) {
            (Some(Some(h)), _) if *h != *genesis_hash => {
                wrong.push(format!("{addr} has genesis hash {}, ours is {ours}", h.to_hex()))
            }
            (Some(Some(_)), _) => good.push(format!("{addr}: genesis hash equal")),
            (Some(None), _) => good.push(format!("{addr}: same chain, no block 1 to compare genesis hashes with")),
            (None, Some(e)) if r.protocol_version.is_none() => {
                down.push(format!("{addr} connects but answers nothing: {e}"))
            }
            (None, e) => good.push(format!(
                "{addr}: same chain, genesis hash not compared ({})",
                e.as_deref().unwrap_or("no answer")
            )),
        }
    }
    let n = reports.len();
    let summary = format!("{} of {n} bootstrap peers reachable", n - down.len() - wrong.len());
    let details: Vec<String> = wrong.iter().chain(&down).chain(&good).cloned().collect();
    let details = details.join("; ");
    if !wrong.is_empty() {
        (
            Verdict::Fail,
            format!(
                "{summary}, {} on another chain or genesis: {details}. Remove or fix those p2p.bootstrap_peers entries, or check genesis_file",
                wrong.len()
            ),
        )
    } else if down.len() == n {
        (Verdict::Fail, format!("{summary}: {details}. Check the addresses and that those nodes run"))
    } else if !down.is_empty() {
        (Verdict::Warn, format!("{summary}: {details}"))
    } else {
        (Verdict::Ok, format!("{summary}, genesis hash equal where they have block 1: {details}"))
    }
}

/// Whether the node runs here, with this genesis.
fn judge_node(node: &NodeView, genesis: Option<&Genesis>, lock: Option<&str>, home: &Path) -> (Verdict, String) {
    let api = node.api;
    match &node.status {
        Ok(s) => {
            if let Some(g) = genesis
                && s.genesis_hash != g.hash().to_hex()
            {
                return (
                    Verdict::Fail,
                    format!(
                        "the node answering at {api} runs chain {} (genesis hash {}), not this home's {} ({}): api.listen_addr names another node's API",
                        s.chain_id,
                        s.genesis_hash,
                        g.chain_id,
                        g.hash().to_hex()
                    ),
                );
            }
            if let Some(h) = &node.health
                && let Some(r) = h.reasons.iter().find(|r| r.code == health_code::STORAGE_UNREADABLE)
            {
                return (Verdict::Fail, format!("the node at {api} runs but {}: see its log", r.message));
            }
            let role = match &s.validator {
                Some(v) => format!("validator {v}"),
                None => "not validating".to_string(),
            };
            (Verdict::Ok, format!("running at {api}: height {}, {} peers, {role}", s.height, s.n_peers))
        }
        Err(why) => match lock {
            Some(holder) => (
                Verdict::Fail,
                format!(
                    "{holder} holds this home's data directory, but the API at {api} does not answer ({why}): the node is starting or stuck, or it runs with another api.listen_addr"
                ),
            ),
            None => (
                Verdict::Fail,
                format!(
                    "not running: the API at {api} does not answer ({why}) and the data directory is not in use. Start it: `ledgerd start --home {}`",
                    home.display()
                ),
            ),
        },
    }
}

/// This clock (`now_ms`) against the latest block's time. A block from the future means this clock is
/// behind the validators' (beyond `max_skew_ms` they refuse its proposals, and it refuses theirs, as from
/// the future). A block older than `empty_block_interval_ms` (an idle chain still makes a block about
/// that often) plus `max_skew_ms` means this clock is ahead, or the chain stalled: a warning, since the
/// two cannot be told apart from here (`sync` reports a stall).
pub fn judge_clock(
    now_ms: u64,
    block_time_ms: u64,
    empty_block_interval_ms: u64,
    max_skew_ms: u64,
) -> (Verdict, String) {
    let secs = |ms: u64| format!("{:.1} s", ms as f64 / 1000.0);
    if block_time_ms > now_ms {
        let ahead = block_time_ms - now_ms;
        let text = format!("the latest block's time is {} ahead of this clock", secs(ahead));
        return if ahead > max_skew_ms {
            (
                Verdict::Fail,
                format!(
                    "{text}, more than {}: this clock is behind the validators'; past 10 s a validator refuses their proposals as from the future. Synchronise it (NTP)",
                    secs(max_skew_ms)
                ),
            )
        } else if ahead > max_skew_ms / 2 {
            (Verdict::Warn, format!("{text}: this clock may be behind; check NTP"))
        } else {
            (Verdict::Ok, format!("{text} (within {})", secs(max_skew_ms)))
        };
    }
    let age = now_ms - block_time_ms;
    let allowed = empty_block_interval_ms.saturating_add(max_skew_ms);
    if age > allowed {
        (
            Verdict::Warn,
            format!(
                "the latest block is {} old, more than consensus.empty_block_interval_ms ({}) plus {}: this clock is ahead, or the chain stalled (see sync)",
                secs(age),
                secs(empty_block_interval_ms),
                secs(max_skew_ms)
            ),
        )
    } else {
        (
            Verdict::Ok,
            format!(
                "the latest block is {} old (an idle chain makes one about every {})",
                secs(age),
                secs(empty_block_interval_ms)
            ),
        )
    }
}

/// Whether the running node follows the chain.
pub fn judge_sync(
    status: &StatusView,
    health: Option<&HealthView>,
    n_validators: usize,
    peers: &[PeerReport],
    max_lag: u64,
) -> (Verdict, String) {
    let h = status.height;
    if status.catching_up {
        let (target, eta) = status.sync.as_ref().map_or((None, None), |s| (Some(s.target_height), s.eta_seconds));
        return (
            Verdict::Fail,
            format!(
                "catching up: height {h} of {}{}; wait for it (it syncs by itself), or see its log if it does not move",
                target.map_or_else(|| "?".into(), |t| format!("{t} ({} behind)", t.saturating_sub(h))),
                eta.map_or_else(String::new, |s| format!(", about {s} s left"))
            ),
        );
    }
    if let Some(behind) = peers.iter().find(|p| p.has_lag_block == Some(true)) {
        return (
            Verdict::Fail,
            format!(
                "bootstrap peer {} has block {}: this node (height {h}) is at least {max_lag} blocks behind it and not catching up. Check its peers and log",
                behind.addr,
                h.saturating_add(max_lag)
            ),
        );
    }
    let reasons = health.map(|hv| hv.reasons.as_slice()).unwrap_or_default();
    if let Some(r) = reasons.iter().find(|r| r.code == health_code::STALLED) {
        return (Verdict::Fail, format!("{}: check peers and the validators' logs", r.message));
    }
    if status.n_peers == 0 && n_validators > 1 {
        return (
            Verdict::Fail,
            format!(
                "no connected peers while the validator set has {n_validators} validators: it cannot follow the chain. Check p2p.bootstrap_peers (see peers)"
            ),
        );
    }
    let compared = peers.iter().filter(|p| p.has_lag_block == Some(false)).count();
    let against = if compared > 0 {
        format!("; none of {compared} bootstrap peers is {max_lag} blocks ahead")
    } else {
        String::new()
    };
    (Verdict::Ok, format!("height {h}, not catching up, {} peers{against}", status.n_peers))
}

#[cfg(test)]
mod tests;
