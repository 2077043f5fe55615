//! `ledgerd doctor` as an operator runs it: every check broken on purpose in a home of its own, each
//! failing with its own line and exit code; and real `ledgerd start` processes (a validator, a full node)
//! that the doctor passes, then fails on a clock behind, a lagging node, and peers or an API of another
//! genesis. Ports: the nodes listen on port 0 and the test reads the ports they got from their log; the
//! addresses that must not answer are ports bound and closed.

#![allow(clippy::unwrap_used, clippy::panic)] // a test file: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger_core::consensus::SignerState;
use ledger_core::{Hash, Height, Keypair};
use node::safety::high_water::{HighWater, Mark};
use node::safety::signer::SignerFile;

const DEADLINE: Duration = Duration::from_secs(60);

/// A port that nothing listens on: bound, then closed.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A chain's files: `genesis.json` and one validator home `node0/` (keys), in a temporary directory.
struct Chain {
    dir: tempfile::TempDir,
    chain_id: String,
}

impl Chain {
    fn new(seed: u64, chain_id: &str) -> Chain {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = genesis::LocalnetOptions::new(1, 0, dir.path());
        opts.seed = seed;
        opts.chain_id = chain_id.into();
        let manifest = genesis::create_localnet(&opts).unwrap();
        let chain = Chain { dir, chain_id: manifest.chain_id };
        chain.configure(&chain.validator(), &Ports::closed(), &[]);
        chain
    }

    fn genesis(&self) -> PathBuf {
        self.dir.path().join("genesis.json")
    }

    fn validator(&self) -> PathBuf {
        self.dir.path().join("node0")
    }

    /// A full node's home on this chain: a p2p key, no validator key.
    fn full_node(&self, name: &str) -> PathBuf {
        let home = self.dir.path().join(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(home.join("p2p_key.json"), genesis::p2p_key_json(&node::keys::random_seed())).unwrap();
        self.configure(&home, &Ports::closed(), &[]);
        home
    }

    /// Write `home`'s config.toml: this chain's genesis, these ports and peers, a brisk idle chain.
    fn configure(&self, home: &Path, ports: &Ports, peers: &[&str]) {
        let peers: Vec<String> = peers.iter().map(|p| format!("{p:?}")).collect();
        let text = format!(
            "moniker = \"t\"\ngenesis_file = {:?}\n[p2p]\nlisten_addr = \"/ip4/127.0.0.1/tcp/{}\"\nbootstrap_peers = [{}]\n[api]\nlisten_addr = \"127.0.0.1:{}\"\n[consensus]\nempty_block_interval_ms = 200\ndouble_sign_watch_ms = 0\n",
            self.genesis().display().to_string(),
            ports.p2p,
            peers.join(", "),
            ports.api
        );
        std::fs::write(home.join("config.toml"), text).unwrap();
    }
}

struct Ports {
    api: u16,
    p2p: u16,
}

impl Ports {
    fn closed() -> Ports {
        Ports { api: closed_port(), p2p: closed_port() }
    }
}

fn peer_id(home: &Path) -> String {
    node::keys::peer_id(&node::keys::load_p2p_key(&home.join("p2p_key.json")).unwrap()).to_string()
}

/// `ledgerd doctor --home H ARGS`, with no LEDGERD_* variable of the test's environment.
fn doctor(home: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerd"));
    cmd.arg("doctor").arg("--home").arg(home).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEDGERD_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().unwrap()
}

/// The doctor's exit code and the line of `check`, after checking that every check printed one line.
fn line_of(o: &Output, check: &str) -> (Option<i32>, String) {
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let names = ["config", "genesis", "validator_key", "signer_state", "disk", "peers", "node", "clock", "sync"];
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), names.len(), "one line per check:\n{out}\nstderr: {}", String::from_utf8_lossy(&o.stderr));
    for (line, name) in lines.iter().zip(names) {
        assert_eq!(line.split_whitespace().nth(1), Some(name), "{out}");
    }
    let line = lines.iter().find(|l| l.split_whitespace().nth(1) == Some(check)).unwrap();
    (o.status.code(), line.to_string())
}

fn assert_fails(o: &Output, check: &str, code: i32, needle: &str) {
    let (got, line) = line_of(o, check);
    let all = String::from_utf8_lossy(&o.stdout);
    assert!(line.starts_with("FAIL") && line.contains(needle), "{check}: {needle:?} expected in {line:?}\n{all}");
    assert_eq!(got, Some(code), "{check}: exit code\n{all}");
}

/// One offline home per case, each with one thing broken: the check's own line and exit code. The
/// homes' nodes are not running, so `node` fails too, but after these (its code is 16).
#[test]
fn each_check_fails_with_its_own_line_and_exit_code() {
    let huge_floor = format!("storage.min_free_mb={}", 1u64 << 30);
    let other = Keypair::from_seed(&[9; 32]);
    type Break = Box<dyn Fn(&Chain, &Path) -> Vec<String>>;
    let cases: Vec<(&str, i32, &str, Break)> = vec![
        (
            "config",
            10,
            "unknown config key `bogus`",
            Box::new(|_, home| {
                let text = std::fs::read_to_string(home.join("config.toml")).unwrap();
                std::fs::write(home.join("config.toml"), format!("bogus = 1\n{text}")).unwrap();
                vec![]
            }),
        ),
        (
            "genesis",
            11,
            "cannot read genesis file",
            Box::new(|c, _| {
                std::fs::remove_file(c.genesis()).unwrap();
                vec![]
            }),
        ),
        (
            "genesis",
            11,
            "is invalid",
            Box::new(|c, _| {
                std::fs::write(c.genesis(), "{\"chain_id\": ").unwrap();
                vec![]
            }),
        ),
        ("validator_key", 12, "is not in the genesis validator set", {
            let other = other.clone();
            Box::new(move |_, home| {
                let text = ledger_core::keyfile::to_plaintext_json(&other, None);
                std::fs::write(home.join("validator_key.json"), text).unwrap();
                vec![]
            })
        }),
        ("signer_state", 13, "was written for validator", {
            let other = other.clone();
            Box::new(move |c, home| {
                std::fs::create_dir_all(home.join("data")).unwrap();
                SignerFile::new(&home.join("data"), &c.chain_id, other.public())
                    .store(&SignerState::default())
                    .unwrap();
                vec![]
            })
        }),
        (
            "signer_state",
            13,
            "was written for chain otherchain",
            Box::new(|_, home| {
                let key = node::keys::load_validator_key(&home.join("validator_key.json")).unwrap().unwrap();
                std::fs::create_dir_all(home.join("data")).unwrap();
                let file = SignerFile::new(&home.join("data"), "otherchain", key.public());
                file.store(&SignerState::default()).unwrap();
                vec![]
            }),
        ),
        (
            "signer_state",
            13,
            "is damaged",
            Box::new(|_, home| {
                std::fs::create_dir_all(home.join("data")).unwrap();
                std::fs::write(home.join("data/signer_state.json"), "{\"version\": 1").unwrap();
                vec![]
            }),
        ),
        (
            "signer_state",
            13,
            "is ahead of the chain",
            Box::new(|c, home| {
                let key = node::keys::load_validator_key(&home.join("validator_key.json")).unwrap().unwrap();
                let data = home.join("data");
                std::fs::create_dir_all(&data).unwrap();
                let file = SignerFile::new(&data, &c.chain_id, key.public());
                file.store(&SignerState::with_floor(Height(1000))).unwrap();
                let mut mark = HighWater::open(&data, &c.chain_id).unwrap();
                mark.raise(Mark { height: Height(5), block_hash: Hash::ZERO }).unwrap();
                vec![]
            }),
        ),
        ("disk", 14, "below storage.min_free_mb", Box::new(move |_, _| vec!["--set".into(), huge_floor.clone()])),
        (
            "peers",
            15,
            "Connection refused",
            Box::new(|_, home| {
                let addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", closed_port(), peer_id(home));
                vec!["--set".into(), format!("p2p.bootstrap_peers={addr}")]
            }),
        ),
        ("node", 16, "not running", Box::new(|_, _| vec![])),
    ];
    for (check, code, needle, break_it) in cases {
        let chain = Chain::new(0, "localnet");
        let home = chain.validator();
        let args = break_it(&chain, &home);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&doctor(&home, &args), check, code, needle);
    }
}

/// A bootstrap address where something accepts TCP but never speaks libp2p: the handshake's deadline.
#[test]
fn a_silent_bootstrap_peer_fails_peers_after_the_timeout() {
    let chain = Chain::new(0, "localnet");
    let home = chain.validator();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", silent.local_addr().unwrap().port(), peer_id(&home));
    let started = Instant::now();
    let o = doctor(&home, &["--timeout-ms", "500", "--set", &format!("p2p.bootstrap_peers={addr}")]);
    assert_fails(&o, "peers", 15, "TCP connects, but no libp2p handshake within 500 ms");
    assert!(started.elapsed() < Duration::from_secs(20), "bounded by the timeout");
    drop(silent);
}

/// A running `ledgerd start`, killed when dropped.
struct Node {
    child: Child,
    api: SocketAddr,
    p2p_port: u16,
    log: Arc<Mutex<String>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Node {
    /// Start `home` (configured with port 0 for both listeners) and wait for the ports it got.
    fn start(home: &Path) -> Node {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerd"));
        cmd.arg("start").arg("--home").arg(home);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("LEDGERD_") {
                cmd.env_remove(k);
            }
        }
        let mut child = cmd
            .env("LEDGERD_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut l = sink.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let field = |text: &str, key: &str| {
            text.lines()
                .find_map(|l| l.split(key).nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        };
        let (api, p2p) = wait_for("the node's listeners in its log", &log, || {
            let text = log.lock().unwrap().clone();
            let api: SocketAddr = field(&text, "API listening addr=")?.parse().ok()?;
            let p2p = field(&text, " listening address=")?;
            let port = p2p.rsplit('/').next()?.parse::<u16>().ok()?;
            Some((api, port))
        });
        Node { child, api, p2p_port: p2p, log }
    }

    fn status(&self) -> Option<serde_json::Value> {
        let r = node::doctor::http::get(self.api, "/status", Duration::from_secs(2)).ok()?;
        serde_json::from_slice(&r.body).ok()
    }

    fn height(&self) -> u64 {
        self.status().and_then(|s| s["height"].as_u64()).unwrap_or(0)
    }

    fn ports(&self) -> Ports {
        Ports { api: self.api.port(), p2p: self.p2p_port }
    }
}

/// Poll `f` until it gives a value, or fail after [`DEADLINE`].
fn wait_for<T>(what: &str, log: &Mutex<String>, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; the node's log:\n{}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_all_pass(o: &Output, what: &str) {
    let out = String::from_utf8_lossy(&o.stdout);
    line_of(o, "config");
    assert!(!out.contains("FAIL") && !out.contains("skip"), "{what}: every check passes:\n{out}");
    assert_eq!(o.status.code(), Some(0), "{what}:\n{out}");
}

/// A single-validator chain run by `ledgerd start`, and a full node of it: the doctor passes both, and
/// fails on a clock behind, on the full node while it lags (cut off from the validator), and on homes
/// whose peers or API belong to another genesis or chain.
#[test]
fn running_nodes_pass_and_each_live_check_fails_on_its_fault() {
    let chain = Chain::new(0, "localnet");
    let v_home = chain.validator();
    chain.configure(&v_home, &Ports { api: 0, p2p: 0 }, &[]);
    let v = Node::start(&v_home);
    // The config now names the ports the node got, as an operator's would.
    chain.configure(&v_home, &v.ports(), &[]);
    let v_addr = format!("/ip4/127.0.0.1/tcp/{}/p2p/{}", v.p2p_port, peer_id(&v_home));
    wait_for("the validator commits block 3", &v.log, || (v.height() >= 3).then_some(()));

    let o = doctor(&v_home, &[]);
    assert_all_pass(&o, "the running validator");
    let (_, line) = line_of(&o, "validator_key");
    assert!(line.contains("is in the current validator set (from the node's API)"), "{line}");
    let (_, line) = line_of(&o, "signer_state");
    assert!(line.contains("last signed at height"), "{line}");

    // This clock 60 s behind the chain's.
    let o = doctor(&v_home, &["--clock-offset-ms=-60000"]);
    assert_fails(&o, "clock", 17, "this clock is behind the validators'");

    // A full node cut off from the validator stays at height 0: the validator, asked by the doctor, has
    // blocks 2 heights above it.
    let f_home = chain.full_node("full");
    chain.configure(&f_home, &Ports { api: 0, p2p: 0 }, &[]);
    let f = Node::start(&f_home);
    chain.configure(&f_home, &f.ports(), &[v_addr.as_str()]);
    let o = doctor(&f_home, &["--max-sync-lag-blocks", "2"]);
    let (_, peers) = line_of(&o, "peers");
    assert!(peers.starts_with("ok") && peers.contains("genesis hash equal"), "{peers}");
    assert_fails(&o, "sync", 18, "has block 2: this node (height 0) is at least 2 blocks behind");
    drop(f);

    // The same full node started with the validator as its peer catches up and passes.
    chain.configure(&f_home, &Ports { api: 0, p2p: 0 }, &[v_addr.as_str()]);
    let f = Node::start(&f_home);
    chain.configure(&f_home, &f.ports(), &[v_addr.as_str()]);
    let target = v.height();
    wait_for("the full node catches up", &f.log, || {
        let s = f.status()?;
        (s["height"].as_u64()? >= target && s["catching_up"] == false && s["n_peers"].as_u64()? >= 1).then_some(())
    });
    let o = doctor(&f_home, &[]);
    assert_all_pass(&o, "the synced full node");
    let (_, line) = line_of(&o, "validator_key");
    assert!(line.contains("a full node"), "{line}");

    // Another genesis with the same chain id: the peer's block 1 names another genesis hash.
    let twin = Chain::new(1, "localnet");
    twin.configure(&twin.validator(), &Ports::closed(), &[v_addr.as_str()]);
    assert_fails(&doctor(&twin.validator(), &[]), "peers", 15, "has genesis hash");
    // Another chain id: identify names the peer's chain.
    let other = Chain::new(0, "otherchain");
    other.configure(&other.validator(), &Ports::closed(), &[v_addr.as_str()]);
    assert_fails(&doctor(&other.validator(), &[]), "peers", 15, "serves chain localnet, not otherchain");
    // A home whose api.listen_addr is another chain's node.
    twin.configure(&twin.validator(), &Ports { api: v.api.port(), p2p: closed_port() }, &[]);
    assert_fails(&doctor(&twin.validator(), &[]), "node", 16, "runs chain localnet (genesis hash");
}
