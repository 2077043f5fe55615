//! `ledgerd localnet` as a process: it creates a 4-validator localnet, every node commits and serves its API,
//! the nodes agree, SIGTERM stops it cleanly (exit status 0), and a second run resumes where it stopped.

#![allow(clippy::unwrap_used, clippy::panic)] // a test file: failing loudly is the point

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(90);
const EXIT_DEADLINE: Duration = Duration::from_secs(20);
const N: usize = 4;

/// Kills the process if the test fails before it stopped it.
struct Proc {
    child: Child,
    banner: Arc<Mutex<String>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A base port with the next `2 * N` ports free (best effort: probe each).
fn free_base_port() -> u16 {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > 60_000 {
            continue;
        }
        if (0..2 * N as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

fn start(home: &Path, base_port: u16, log: &Path) -> Proc {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledgerd"))
        .args(["localnet", "--validators", "4", "--accounts", "10", "--home"])
        .arg(home)
        .arg("--base-port")
        .arg(base_port.to_string())
        .env("LEDGERD_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let banner = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().unwrap();
    let b = banner.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let mut b = b.lock().unwrap();
            b.push_str(&line);
            b.push('\n');
        }
    });
    Proc { child, banner }
}

/// `GET path` on 127.0.0.1:port with a bare HTTP/1.1 client; the JSON body of a 200, else None.
fn get(port: u16, path: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

fn heights(base: u16) -> Vec<Option<u64>> {
    (0..N).map(|i| get(base + 2 * i as u16, "/status").and_then(|s| s["height"].as_u64())).collect()
}

/// Poll every node's `/status` until `done(heights)`.
fn wait_heights(base: u16, what: &str, log: &Path, done: impl Fn(&[u64]) -> bool) -> Vec<u64> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let hs = heights(base);
        if let Some(hs) = hs.iter().copied().collect::<Option<Vec<u64>>>()
            && done(&hs)
        {
            return hs;
        }
        if Instant::now() > deadline {
            panic!("{what}: heights {hs:?}\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn sigterm_and_wait(p: &mut Proc, log: &Path) -> ExitStatus {
    let pid = p.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success(), "kill -TERM {pid}");
    let deadline = Instant::now() + EXIT_DEADLINE;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            panic!("no exit within {EXIT_DEADLINE:?} of SIGTERM\n{}", tail(log));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn localnet_command_runs_four_validators_stops_on_sigterm_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("localnet");
    let log = dir.path().join("ledgerd.log");
    let base = free_base_port();

    let mut p = start(&home, base, &log);
    wait_heights(base, "every node reaches height 3", &log, |h| h.iter().all(|h| *h >= 3));
    let hashes: Vec<String> = (0..N)
        .map(|i| {
            let b = get(base + 2 * i as u16, "/blocks/2").unwrap_or_else(|| panic!("GET /blocks/2 on node{i}"));
            b["hash"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]), "nodes disagree at height 2: {hashes:?}");
    let status = get(base, "/status").unwrap();
    assert!(status["node_id"].as_str().unwrap().starts_with("12D3KooW"), "{status}");
    assert!(status["validator"].as_str().unwrap().starts_with("ldg"), "{status}");
    assert_eq!(status["n_peers"].as_u64(), Some(3), "{status}");
    let seen = heights(base).into_iter().flatten().max().unwrap();
    let exit = sigterm_and_wait(&mut p, &log);
    assert!(exit.success(), "exit status {exit:?}\n{}", tail(&log));
    let banner = p.banner.lock().unwrap().clone();
    assert!(banner.contains("localnet created"), "{banner}");
    assert!(banner.contains(&format!("http://127.0.0.1:{}", base + 6)), "{banner}");
    assert!(banner.contains("account0.json"), "{banner}");
    // Every dev account with its balance and key file, and a command to paste.
    for j in 0..10 {
        assert!(banner.contains(&format!("account{j}.json")), "account{j}: {banner}");
    }
    assert_eq!(banner.matches("balance 1000000000000").count(), 10, "{banner}");
    assert!(banner.contains(&format!("wallet --node http://127.0.0.1:{base} transfer --key")), "{banner}");
    // Logs go to a file here: plain text, no colour codes.
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("INFO"), "{log_text}");
    assert!(!log_text.contains('\u{1b}'), "ANSI escape codes in a log file");
    drop(p);
    assert!(home.join("localnet.json").is_file());

    // Resume: the same files, the chain continues from where it was, never back (I5).
    let mut p = start(&home, base, &log);
    let first = wait_heights(base, "the resumed nodes serve their API", &log, |_| true);
    assert!(first.iter().all(|h| *h >= seen), "height went back after resume: {first:?} < {seen}");
    wait_heights(base, "the resumed chain advances", &log, |h| h.iter().all(|h| *h >= seen + 2));
    assert_eq!(
        get(base + 2, "/blocks/2").unwrap()["hash"].as_str().unwrap(),
        hashes[0],
        "block 2 changed across the restart"
    );
    let exit = sigterm_and_wait(&mut p, &log);
    assert!(exit.success(), "exit status {exit:?}\n{}", tail(&log));
    assert!(p.banner.lock().unwrap().contains("localnet resumed"));
}
