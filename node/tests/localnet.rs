//! End to end: `genesis` writes a 4-validator localnet, four `ledgerd start` processes run it on loopback,
//! and every node commits blocks. Heights are read from the nodes' logs (the HTTP API is not in this crate
//! yet).

#![allow(clippy::unwrap_used, clippy::panic)] // a test file: failing loudly is the point

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Kills the processes this test started, also when it fails.
struct Procs(Vec<Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A base port with the next eight ports free (best effort: probe each).
fn free_base_port() -> u16 {
    for _ in 0..50 {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if base > 60_000 {
            continue;
        }
        if (0..8).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

fn committed_height(line: &str) -> Option<u64> {
    let rest = line.split("committed block").nth(1)?;
    let h = rest.split("height=").nth(1)?;
    h.split_whitespace().next()?.parse().ok()
}

#[test]
fn n4_localnet_processes_commit_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = genesis::LocalnetOptions::new(4, 2, dir.path());
    opts.base_port = free_base_port();
    let manifest = genesis::create_localnet(&opts).unwrap();
    let (tx, rx) = mpsc::channel::<(usize, u64)>();
    let mut procs = Procs(Vec::new());
    for (i, node) in manifest.nodes.iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledgerd"))
            .arg("start")
            .arg("--home")
            .arg(&node.home)
            .env("LEDGERD_LOG", "info")
            .env("NO_COLOR", "1")
            .env_remove("RUST_BACKTRACE")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(h) = committed_height(&line) {
                    let _ = tx.send((i, h));
                }
                if line.contains("ERROR") || line.contains("Error:") {
                    eprintln!("node{i}: {line}");
                }
            }
        });
        procs.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut heights = [0u64; 4];
    while heights.iter().any(|h| *h < 3) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, h)) => heights[i] = heights[i].max(h),
            Err(_) => panic!("nodes did not all reach height 3: {heights:?}"),
        }
    }
}
