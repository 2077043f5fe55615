//! Multi-process harness: a localnet of real `ledgerd` processes, each with its own home, ports and sled
//! data, driven over its real HTTP API.
//!
//! Nothing here sleeps to synchronise: every wait polls an observable condition (an HTTP answer, a height)
//! until a deadline, and fails with what it last saw. Ports are allocated per harness from a range derived
//! from the process id and a counter, and each one is checked free by binding it before use, so parallel
//! tests and parallel test binaries do not collide.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

/// Where the `ledgerd` binary is. Built once per test process with the same profile as the tests.
pub fn ledgerd_bin() -> Result<PathBuf> {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| build_ledgerd().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow!(e))
}

fn build_ledgerd() -> Result<PathBuf> {
    if let Ok(path) = std::env::var("LEDGERD_BIN") {
        return Ok(PathBuf::from(path));
    }
    let release = !cfg!(debug_assertions);
    let mut cmd = cargo_command();
    cmd.args(["build", "-q", "-p", "node", "--bin", "ledgerd"]);
    if release {
        cmd.arg("--release");
    }
    let status = cmd.status().context("running cargo build for ledgerd")?;
    if !status.success() {
        bail!("cargo build of ledgerd failed");
    }
    // target/<profile>/deps/<test binary> -> target/<profile>/ledgerd
    let exe = std::env::current_exe()?;
    let profile_dir = exe
        .parent()
        .and_then(|deps| if deps.ends_with("deps") { deps.parent() } else { Some(deps) })
        .ok_or_else(|| anyhow!("cannot locate the target directory from {}", exe.display()))?;
    let bin = profile_dir.join("ledgerd");
    if !bin.exists() {
        bail!("ledgerd not found at {}", bin.display());
    }
    Ok(bin)
}

/// `cargo`, without the package variables cargo sets for a running test (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, ...). Build scripts watch some of them (ring's `rerun-if-env-changed=CARGO_PKG_NAME`),
/// so a build started from a test with them set reran ring's and rebuilt libp2p and node (3-4 min) every
/// time a test build and a shell build alternated.
pub fn cargo_command() -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let set_for_the_test = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_BIN_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_for_the_test {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Allocate `count` consecutive free ports, distinct across harnesses in this process and unlikely to
/// collide across processes (the range starts at an offset derived from the pid). The ports lie outside
/// the kernel's ephemeral range (`ip_local_port_range`): a node that is stopped and started again keeps
/// its ports, and while it is down an outgoing connection of any process could otherwise be given one of
/// them as its local port ("Address already in use" at the restart).
pub fn allocate_ports(count: u16) -> Result<u16> {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let (lo, span) = port_window();
    if span <= count {
        bail!("no port window outside the ephemeral range for {count} ports");
    }
    let pid_offset = (std::process::id() % 97) as u16 * 97;
    for _ in 0..200 {
        let slot = NEXT.fetch_add(count, Ordering::SeqCst) % (span - count);
        let base = lo + (pid_offset + slot) % (span - count);
        let free = (base..base + count).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return Ok(base);
        }
    }
    bail!("no free port range of {count} found")
}

/// The widest window of ports (start, length) at or above 10,000 that the kernel never hands out as
/// ephemeral local ports.
fn port_window() -> (u16, u16) {
    let (eph_lo, eph_hi) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999));
    let below = eph_lo.saturating_sub(10_000).min(u32::from(u16::MAX));
    let above = 65_535u32.saturating_sub(eph_hi.max(10_000));
    if below >= above { (10_000, below as u16) } else { ((eph_hi.max(10_000) + 1) as u16, above as u16) }
}

/// A JSON-over-HTTP client for one node.
#[derive(Clone)]
pub struct ApiClient {
    pub base: String,
    http: reqwest::blocking::Client,
}

/// An HTTP answer: status code and JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl ApiClient {
    pub fn new(base: &str) -> ApiClient {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_else(|_| reqwest::blocking::Client::new());
        ApiClient { base: base.trim_end_matches('/').to_string(), http }
    }

    /// A client that sends through `http` (e.g. one built inside another network namespace).
    pub fn with_http(base: &str, http: reqwest::blocking::Client) -> ApiClient {
        ApiClient { base: base.trim_end_matches('/').to_string(), http }
    }

    pub fn get(&self, path: &str) -> Result<Answer> {
        let resp = self.http.get(format!("{}{}", self.base, path)).send()?;
        let status = resp.status().as_u16();
        let body = serde_json::from_str(&resp.text()?).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Answer> {
        let resp = self
            .http
            .post(format!("{}{}", self.base, path))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()?;
        let status = resp.status().as_u16();
        let body = serde_json::from_str(&resp.text()?).unwrap_or(Value::Null);
        Ok(Answer { status, body })
    }

    /// A plain-text GET (for `/metrics`).
    pub fn get_text(&self, path: &str) -> Result<String> {
        Ok(self.http.get(format!("{}{}", self.base, path)).send()?.error_for_status()?.text()?)
    }

    /// The value of a Prometheus sample without labels, from `/metrics`.
    pub fn metric(&self, name: &str) -> Result<f64> {
        let text = self.get_text("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("metric {name} not found"))
    }

    /// `GET /status`, or an error when the node does not answer.
    pub fn status(&self) -> Result<Value> {
        let a = self.get("/status")?;
        if a.status != 200 {
            bail!("status answered {}: {}", a.status, a.body);
        }
        Ok(a.body)
    }

    pub fn height(&self) -> Result<u64> {
        self.status()?["height"].as_u64().ok_or_else(|| anyhow!("status has no height"))
    }

    /// Submit a signed transaction's canonical bytes.
    pub fn submit(&self, tx_bytes: &[u8]) -> Result<Answer> {
        self.post("/txs", &serde_json::json!({ "tx": hex::encode(tx_bytes) }))
    }

    /// The hash of the block at `height`, if the node has it.
    pub fn block_hash(&self, height: u64) -> Result<Option<String>> {
        let a = self.get(&format!("/blocks/{height}"))?;
        match a.status {
            200 => Ok(a.body["hash"].as_str().map(str::to_string)),
            404 | 410 => Ok(None),
            s => bail!("GET /blocks/{height} answered {s}: {}", a.body),
        }
    }
}

/// The `wallet` binary, built once per test process (release when the tests are).
pub fn wallet_bin() -> Result<PathBuf> {
    static BIN: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        let mut cmd = cargo_command();
        cmd.args(["build", "-q", "-p", "wallet", "--bin", "wallet"]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let ok = cmd.status().map_err(|e| e.to_string())?.success();
        if !ok {
            return Err("cargo build of wallet failed".into());
        }
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let dir = exe.parent().and_then(Path::parent).ok_or("no target dir")?;
        Ok(dir.join("wallet"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Poll `check` until it returns `Some`, or fail after `timeout` with the last observation.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<Option<T>>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match check() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => last = "condition not met".to_string(),
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}: {last}");
        }
        // Polling interval of an observation loop, not a synchronisation sleep: the condition is re-checked.
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `ledgerd` process of a localnet.
pub struct NodeProc {
    pub name: String,
    pub home: PathBuf,
    pub api: ApiClient,
    child: Option<Child>,
    log: PathBuf,
    extra_args: Vec<String>,
    /// Command prefix `ledgerd` runs under (e.g. `ip netns exec NS`); empty runs it directly.
    launcher: Vec<String>,
}

impl NodeProc {
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (it stays recorded until the next start).
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Path of this node's log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// This node's whole log (every start appends to it), with terminal colour codes removed.
    pub fn log_text(&self) -> String {
        strip_ansi(&fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The lines of this node's log that contain `needle` (colour codes removed).
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log_text().lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }

    /// The last lines of this node's log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// A localnet created with the `genesis` library and run as separate processes.
pub struct Localnet {
    pub dir: PathBuf,
    pub manifest: genesis::LocalnetManifest,
    pub nodes: Vec<NodeProc>,
    _tmp: Option<tempfile::TempDir>,
}

impl Localnet {
    /// Create the files for `validators` validators and `accounts` dev accounts in a fresh temp dir.
    pub fn create(validators: usize, accounts: usize) -> Result<Localnet> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().to_path_buf();
        let mut lnet = Self::create_in(&dir, validators, accounts)?;
        lnet._tmp = Some(tmp);
        Ok(lnet)
    }

    /// Create the files in `dir` (kept after the run).
    pub fn create_in(dir: &Path, validators: usize, accounts: usize) -> Result<Localnet> {
        let ports = allocate_ports(2 * validators as u16)?;
        let mut opts = genesis::LocalnetOptions::new(validators, accounts, dir.to_path_buf());
        opts.base_port = ports;
        let manifest = genesis::create_localnet(&opts)?;
        let nodes = manifest
            .nodes
            .iter()
            .map(|n| NodeProc {
                name: n.name.clone(),
                home: PathBuf::from(&n.home),
                api: ApiClient::new(&n.api_url),
                child: None,
                log: PathBuf::from(&n.home).join("ledgerd.log"),
                extra_args: Vec::new(),
                launcher: Vec::new(),
            })
            .collect();
        Ok(Localnet { dir: dir.to_path_buf(), manifest, nodes, _tmp: None })
    }

    /// Start node `i` (`ledgerd start --home HOME`), logging to HOME/ledgerd.log (appended).
    pub fn start(&mut self, i: usize) -> Result<()> {
        let bin = ledgerd_bin()?;
        let node = &mut self.nodes[i];
        let log = fs::OpenOptions::new().create(true).append(true).open(&node.log)?;
        let mut cmd = match node.launcher.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("start")
            .arg("--home")
            .arg(&node.home)
            .args(&node.extra_args)
            .env("LEDGERD_LOG", std::env::var("LEDGER_TEST_LOG").unwrap_or_else(|_| "info".into()))
            // ledgerd refuses unknown LEDGERD_* variables; this one only tells the harness where the binary is.
            .env_remove("LEDGERD_BIN")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning ledgerd for {}", node.name))?;
        node.child = Some(child);
        Ok(())
    }

    /// Start node `i` once with `args` added to its command line (e.g. `--accept-rewind`); later starts
    /// do not repeat them.
    pub fn start_once(&mut self, i: usize, args: &[String]) -> Result<()> {
        let kept = self.nodes[i].extra_args.len();
        self.nodes[i].extra_args.extend_from_slice(args);
        let started = self.start(i);
        self.nodes[i].extra_args.truncate(kept);
        started
    }

    /// Wait until node `i`'s process exits by itself (failing after `timeout`, the process left running).
    pub fn wait_exit(&mut self, i: usize, timeout: Duration) -> Result<std::process::ExitStatus> {
        let name = self.nodes[i].name.clone();
        let node = &mut self.nodes[i];
        wait_for(&format!("{name} to exit"), timeout, || match node.child.as_mut() {
            Some(c) => Ok(c.try_wait()?),
            None => bail!("{name} was not started"),
        })
    }

    pub fn start_all(&mut self) -> Result<()> {
        for i in 0..self.nodes.len() {
            self.start(i)?;
        }
        Ok(())
    }

    /// kill -9.
    pub fn kill(&mut self, i: usize) -> Result<()> {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM and wait for a clean exit (up to `timeout`, then kill -9 and fail).
    pub fn stop(&mut self, i: usize, timeout: Duration) -> Result<()> {
        let Some(mut child) = self.nodes[i].child.take() else { return Ok(()) };
        signal(child.id(), "TERM")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM:\n{}", self.nodes[i].name, self.nodes[i].log_tail(20));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.nodes[i].name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGSTOP / SIGCONT.
    pub fn pause(&mut self, i: usize) -> Result<()> {
        self.nodes[i].pid().map_or(Ok(()), |pid| signal(pid, "STOP"))
    }

    pub fn resume(&mut self, i: usize) -> Result<()> {
        self.nodes[i].pid().map_or(Ok(()), |pid| signal(pid, "CONT"))
    }

    /// Wait until node `i` answers and reports at least `height`.
    pub fn wait_height(&self, i: usize, height: u64, timeout: Duration) -> Result<u64> {
        let api = self.nodes[i].api.clone();
        wait_for(&format!("{} to reach height {height}", self.nodes[i].name), timeout, || {
            let h = api.height()?;
            Ok((h >= height).then_some(h))
        })
        .with_context(|| format!("log tail of {}:\n{}", self.nodes[i].name, self.nodes[i].log_tail(30)))
    }

    /// Wait until every listed node reports at least `height`.
    pub fn wait_all(&self, which: &[usize], height: u64, timeout: Duration) -> Result<()> {
        for &i in which {
            self.wait_height(i, height, timeout)?;
        }
        Ok(())
    }

    /// Add a full node (no validator key) that follows the localnet: `ledgerd init`, drop the validator key,
    /// and start with flags for the shared genesis, its own ports and the validators as bootstrap peers.
    /// Returns its index; it is not started.
    /// Add a node like [`Localnet::add_full_node`] but keeping the validator key `ledgerd init` made for it
    /// (in no validator set yet): a validator that a governance change can add.
    pub fn add_node_keeping_key(&mut self) -> Result<usize> {
        self.add_node(true)
    }

    pub fn add_full_node(&mut self) -> Result<usize> {
        self.add_node(false)
    }

    fn add_node(&mut self, keep_key: bool) -> Result<usize> {
        let index = self.nodes.len();
        let name = format!("full{index}");
        let home = self.dir.join(&name);
        let status = Command::new(ledgerd_bin()?)
            .args(["init", "--moniker", &name, "--home"])
            .arg(&home)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("ledgerd init failed for {name}");
        }
        if !keep_key {
            fs::remove_file(home.join("validator_key.json")).context("removing the validator key of the full node")?;
        }
        let ports = allocate_ports(2)?;
        let mut extra_args = vec![
            "--genesis-file".to_string(),
            self.dir.join("genesis.json").display().to_string(),
            "--p2p-listen-addr".to_string(),
            format!("/ip4/127.0.0.1/tcp/{}", ports + 1),
            "--api-listen-addr".to_string(),
            format!("127.0.0.1:{ports}"),
            "--set".to_string(),
            "storage.cache_capacity_mb=32".to_string(),
        ];
        for n in &self.manifest.nodes {
            extra_args.push("--bootstrap-peer".to_string());
            extra_args.push(n.p2p_addr.clone());
        }
        self.nodes.push(NodeProc {
            name,
            home: home.clone(),
            api: ApiClient::new(&format!("http://127.0.0.1:{ports}")),
            child: None,
            log: home.join("ledgerd.log"),
            extra_args,
            launcher: Vec::new(),
        });
        Ok(index)
    }

    /// Add `args` to the `ledgerd start` command line of node `i` (e.g. `--set mempool.max_txs=200000`); they
    /// take effect at its next start.
    pub fn add_start_args(&mut self, i: usize, args: &[String]) {
        self.nodes[i].extra_args.extend_from_slice(args);
    }

    /// Run node `i` as `LAUNCHER… ledgerd start --home HOME EXTRA_ARGS…` from its next start on, reached
    /// through `api` (for a node placed in its own network namespace, with its own addresses).
    pub fn set_launch(&mut self, i: usize, launcher: Vec<String>, extra_args: Vec<String>, api: ApiClient) {
        let node = &mut self.nodes[i];
        node.launcher = launcher;
        node.extra_args = extra_args;
        node.api = api;
    }

    /// For failure messages: each listed node's status, consensus metrics and log tail.
    pub fn diagnostics(&self, which: &[usize]) -> String {
        let mut out = String::new();
        for &i in which {
            let n = &self.nodes[i];
            let status = n.api.status().map_or_else(|e| format!("status unavailable: {e:#}"), |s| s.to_string());
            let metrics: Vec<String> = n
                .api
                .get_text("/metrics")
                .map(|t| {
                    t.lines()
                        .filter(|l| l.starts_with("ledger_consensus") || l.starts_with("ledger_peers"))
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            out.push_str(&format!("--- {}: {status}\n{}\nlog tail:\n{}\n", n.name, metrics.join("\n"), n.log_tail(40)));
        }
        out
    }

    /// Lines of every node's log that report validator misbehaviour (evidence).
    pub fn evidence_lines(&self) -> Vec<String> {
        self.nodes
            .iter()
            .flat_map(|n| {
                fs::read_to_string(&n.log)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("misbehaviour"))
                    .map(|l| format!("{}: {l}", n.name))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// A signed transfer of `amount` from dev account `from` to dev account `to`, with the sender's next nonce
    /// as node `via` reports it.
    pub fn transfer(&self, via: usize, from: usize, to: usize, amount: u64) -> Result<ledger_core::SignedTransaction> {
        let key = self.account_key(from)?;
        let api = &self.nodes[via].api;
        let account = api.get(&format!("/accounts/{}", key.public()))?;
        let nonce = account.body["next_nonce"].as_u64().ok_or_else(|| anyhow!("no next_nonce: {}", account.body))?;
        let height = api.height()?;
        Ok(ledger_core::Transaction {
            chain_id: self.manifest.chain_id.clone(),
            sender: key.public(),
            recipient: self.manifest.accounts[to].address,
            amount,
            fee: 1,
            nonce,
            expiry_height: height + 1_000,
            memo: String::new(),
        }
        .sign(&key))
    }

    /// Wait until node `i` reports transaction `id` committed; returns its height.
    pub fn wait_committed(&self, i: usize, id: &str, timeout: Duration) -> Result<u64> {
        let api = self.nodes[i].api.clone();
        wait_for(&format!("tx {id} committed on {}", self.nodes[i].name), timeout, || {
            let a = api.get(&format!("/txs/{id}"))?;
            match a.body["status"].as_str() {
                Some("committed") => Ok(a.body["height"].as_u64()),
                Some("rejected" | "evicted") => bail!("tx {id} was {}", a.body),
                _ => Ok(None),
            }
        })
    }

    /// Check that nodes `which` hold the same block hash at every height from 1 to `up_to`.
    pub fn assert_same_chain(&self, which: &[usize], up_to: u64) -> Result<()> {
        for h in 1..=up_to {
            let mut hashes = Vec::new();
            for &i in which {
                let hash = self.nodes[i]
                    .api
                    .block_hash(h)?
                    .ok_or_else(|| anyhow!("{} lacks block {h}", self.nodes[i].name))?;
                hashes.push(hash);
            }
            if hashes.windows(2).any(|w| w[0] != w[1]) {
                bail!("nodes disagree at height {h}: {hashes:?}");
            }
        }
        Ok(())
    }

    /// The private key file of dev account `j`.
    pub fn account_key(&self, j: usize) -> Result<ledger_core::Keypair> {
        let text = fs::read_to_string(&self.manifest.accounts[j].key_file)?;
        Ok(ledger_core::keyfile::from_plaintext_json(&text)?)
    }
}

impl Drop for Localnet {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = Command::new("kill").arg(format!("-{sig}")).arg(pid.to_string()).status()?;
    if !status.success() {
        bail!("kill -{sig} {pid} failed");
    }
    Ok(())
}

/// What a one-shot `ledgerd` command did.
#[derive(Debug)]
pub struct CmdOutput {
    /// Exit code; `None` when it was killed (by a signal, or at the deadline).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// It was still running at the deadline and was killed.
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit code {:?}{}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            if self.timed_out { " (killed at the deadline)" } else { "" },
            self.stdout,
            self.stderr
        )
    }
}

/// Run `ledgerd ARGS…` once with the extra environment `env`, capturing its output; a process still
/// running after `timeout` is killed (and reported as `timed_out`).
pub fn run_ledgerd<S: AsRef<std::ffi::OsStr>>(
    args: &[S],
    env: &[(&str, &str)],
    timeout: Duration,
) -> Result<CmdOutput> {
    let mut cmd = Command::new(ledgerd_bin()?);
    cmd.args(args)
        .env("LEDGERD_LOG", std::env::var("LEDGER_TEST_LOG").unwrap_or_else(|_| "info".into()))
        // ledgerd refuses unknown LEDGERD_* variables; this one only tells the harness where the binary is.
        .env_remove("LEDGERD_BIN")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().context("spawning ledgerd")?;
    let read = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_string(&mut text);
            }
            text
        })
    };
    let out = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let err = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait()?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().map_err(|_| anyhow!("stdout reader panicked"))?;
    let stderr = err.join().map_err(|_| anyhow!("stderr reader panicked"))?;
    Ok(CmdOutput { code: status.code(), stdout: strip_ansi(&stdout), stderr: strip_ansi(&stderr), timed_out })
}

/// `text` without terminal escape sequences (`ESC [ … letter`), as the text log writes colours.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A proxy in front of `upstream` that alters one kind of answer, as a lying node would: `tamper` gets each
/// request's path and the upstream's JSON answer to alter. Serves GETs, one connection at a time, until the
/// test process exits; the proxy's base URL.
pub fn tampering_proxy(upstream: String, tamper: fn(&str, &mut Value)) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = format!("http://{}", listener.local_addr()?);
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::new();
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => continue,
            });
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            // Skip the headers; the wallet only sends GETs to the paths we alter.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = match http.get(format!("{upstream}{path}")).send() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let mut body: Value =
                        resp.text().ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or(Value::Null);
                    tamper(&path, &mut body);
                    (status, body.to_string())
                }
                Err(_) => (502, "{}".to_string()),
            };
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(addr)
}
