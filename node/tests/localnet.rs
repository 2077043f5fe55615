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

/// The height a log line reports committed: `committed block height=H`, or the summary of empty blocks
/// `committed empty blocks ... to=H` (`log.idle_summary_interval_ms` is 0 here, so that is one per block).
fn committed_height(line: &str) -> Option<u64> {
    let (rest, field) = match line.split("committed block").nth(1) {
        Some(rest) => (rest, "height="),
        None => (line.split("committed empty blocks").nth(1)?, "to="),
    };
    let h = rest.split(field).nth(1)?;
    h.split_whitespace().next()?.parse().ok()
}

fn start_node(home: &std::path::Path, i: usize, tx: mpsc::Sender<(usize, u64)>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ledgerd"))
        .arg("start")
        .arg("--home")
        .arg(home)
        .env("LEDGERD_LOG", "info")
        .env("LEDGERD_LOG_IDLE_SUMMARY_INTERVAL_MS", "0")
        .env("NO_COLOR", "1")
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
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
    child
}

/// Collect reported heights until `done(heights)` or the deadline.
fn wait_until(rx: &mpsc::Receiver<(usize, u64)>, heights: &mut [u64; 4], what: &str, done: impl Fn(&[u64; 4]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while !done(heights) {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok((i, h)) => heights[i] = heights[i].max(h),
            Err(_) => panic!("{what}: heights {heights:?}"),
        }
    }
}

#[test]
fn n4_localnet_processes_commit_blocks_and_a_killed_node_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = genesis::LocalnetOptions::new(4, 2, dir.path());
    opts.base_port = free_base_port();
    let manifest = genesis::create_localnet(&opts).unwrap();
    let (tx, rx) = mpsc::channel::<(usize, u64)>();
    let mut procs = Procs(Vec::new());
    for (i, node) in manifest.nodes.iter().enumerate() {
        procs.0.push(start_node(&node.home, i, tx.clone()));
    }
    let mut heights = [0u64; 4];
    wait_until(&rx, &mut heights, "all nodes reach height 3", |h| h.iter().all(|h| *h >= 3));

    // kill -9 node 3 and restart it on the same data: it must come back and keep up (I5, I6).
    let victim = &mut procs.0[3];
    victim.kill().unwrap();
    victim.wait().unwrap();
    let at_kill = heights[3];
    heights[3] = 0;
    procs.0[3] = start_node(&manifest.nodes[3].home, 3, tx.clone());
    let target = heights.iter().copied().max().unwrap() + 3;
    wait_until(&rx, &mut heights, "restarted node catches up", |h| h[3] >= target && h[3] > at_kill);
}
