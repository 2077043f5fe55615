//! Scripted chaos runs: damage to a stopped node's storage, and the twins negative control.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::checker::{self, Violation, violation};
use super::rng::Rng;
use super::workload::{self, Workload};
use super::{Cluster, LIVENESS};
use crate::harness::{ApiClient, Localnet, wait_for};

/// Bytes at the end of the data file that the damage cases touch.
const TAIL_BYTES: u64 = 4096;

/// What is done to the stopped node's sled data (its largest file, the log `db`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// Cut the last 4 KiB off, as a torn write at the end of the log would.
    TruncateTail,
    /// Invert 64 bytes spread over the last 4 KiB, as silent media corruption would.
    FlipTail,
}

/// How a damaged node behaved.
#[derive(Debug)]
pub struct DamageOutcome {
    /// It started, caught up and holds the same verified chain as the others.
    pub recovered: bool,
    /// What happened, for the report: the refusal message or the recovery figures.
    pub description: String,
    pub violations: Vec<Violation>,
}

/// Start 4 validators under a workload, stop node 3 cleanly, damage its data, start it again. Passes when
/// it either refuses to start with a clear message (non-zero exit, the reason in its log) or recovers and
/// then holds the same verified chain as the others; never serving bad data, never signing conflicting
/// votes (no evidence anywhere).
pub fn storage_damage(damage: Damage, seed: u64) -> Result<DamageOutcome> {
    let mut cluster = Cluster::launch(4, 5, false, None)?;
    let victim = 3;
    let accounts = cluster.accounts(cluster.genesis.params.min_fee)?;
    let workload = Workload::start(cluster.targets(), accounts, 2, &Rng::new(seed));
    let up = cluster.max_height();
    cluster.wait_heights(&[0, 1, 2, 3], up + 5, LIVENESS)?;
    let before = cluster.api(victim).height()?;
    cluster.net.stop(victim, Duration::from_secs(20))?;
    let file = largest_file(&cluster.net.nodes[victim].home.join("data"))?;
    let what = apply_damage(&file, damage, seed)?;
    cluster.say(format!("node{victim} stopped at height {before}; {what}"));
    // The others go on without it for a while, so a recovering node has something to sync.
    let others = cluster.max_height();
    cluster.wait_heights(&[0, 1, 2], others + 3, LIVENESS)?;
    cluster.net.start(victim)?;

    let mut violations = Vec::new();
    let api = cluster.api(victim);
    let t0 = Instant::now();
    let target = cluster.max_height();
    enum Seen {
        Exited(std::process::ExitStatus),
        CaughtUp(u64),
    }
    let seen = {
        let net = &mut cluster.net;
        wait_for(&format!("node{victim} to refuse or to catch up to {target}"), Duration::from_secs(90), || {
            if let Some(status) = net.nodes[victim].exit_status() {
                return Ok(Some(Seen::Exited(status)));
            }
            Ok(api.height().ok().filter(|h| *h >= target).map(Seen::CaughtUp))
        })
    };
    let log_tail = cluster.net.nodes[victim].log_tail(15);
    let (recovered, description) = match seen {
        Ok(Seen::Exited(status)) => {
            let message = log_tail
                .lines()
                .rev()
                .find(|l| l.contains("corrupt") || l.contains("Error") || l.contains("error"))
                .unwrap_or("")
                .to_string();
            if status.success() {
                violations.push(violation("storage", format!("node{victim} exited 0 on damaged data: {log_tail}")));
            }
            if message.is_empty() {
                violations.push(violation("storage", format!("node{victim} exited ({status}) without a message")));
            }
            (false, format!("refused to start ({status}) after {:.1}s: {message}", t0.elapsed().as_secs_f64()))
        }
        Ok(Seen::CaughtUp(h)) => {
            (true, format!("recovered: height {before} before, {h} after {:.1}s", t0.elapsed().as_secs_f64()))
        }
        Err(e) => {
            violations.push(violation("storage", format!("node{victim} neither refused nor recovered: {e:#}")));
            (false, "stalled".to_string())
        }
    };
    cluster.say(format!("node{victim}: {description}"));

    let mut history = workload.stop();
    let checked: Vec<usize> = if recovered { vec![0, 1, 2, 3] } else { vec![0, 1, 2] };
    let top = cluster.max_height();
    if let Err(e) = cluster.wait_heights(&checked, top, LIVENESS) {
        violations.push(violation("I6", format!("{e:#}")));
    }
    let targets: Vec<workload::Target> = checked.iter().map(|&i| cluster.targets()[i].clone()).collect();
    workload::resolve(&mut history, &targets);
    let apis: Vec<(String, ApiClient)> = checked.iter().map(|&i| cluster.named_apis()[i].clone()).collect();
    let common = apis.iter().filter_map(|(_, a)| a.height().ok()).min().unwrap_or(0);
    let (_, found) = checker::check_all(&cluster.genesis, &apis, common, &history)?;
    violations.extend(found);
    for line in cluster.net.evidence_lines() {
        violations.push(violation("I7", format!("evidence after storage damage: {line}")));
    }
    let (ok, failed, indeterminate) = workload::tally(&history);
    cluster.say(format!(
        "damage {damage:?}: {description}; txs ok {ok} failed {failed} indeterminate {indeterminate}; violations {}",
        violations.len()
    ));
    for v in &violations {
        cluster.say(format!("  {v}"));
    }
    Ok(DamageOutcome { recovered, description, violations })
}

fn largest_file(dir: &Path) -> Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).with_context(|| format!("reading {}", d.display()))? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if best.as_ref().is_none_or(|(len, _)| meta.len() > *len) {
                best = Some((meta.len(), entry.path()));
            }
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| anyhow!("no file under {}", dir.display()))
}

fn apply_damage(file: &Path, damage: Damage, seed: u64) -> Result<String> {
    let len = fs::metadata(file)?.len();
    if len < 2 * TAIL_BYTES {
        bail!("{} is only {len} bytes", file.display());
    }
    match damage {
        Damage::TruncateTail => {
            fs::OpenOptions::new().write(true).open(file)?.set_len(len - TAIL_BYTES)?;
            Ok(format!("truncated {} from {len} to {} bytes", file.display(), len - TAIL_BYTES))
        }
        Damage::FlipTail => {
            let mut bytes = fs::read(file)?;
            let mut rng = Rng::new(seed);
            let start = bytes.len() - TAIL_BYTES as usize;
            for _ in 0..64 {
                let at = start + rng.below(TAIL_BYTES as usize);
                bytes[at] ^= 0xFF;
            }
            fs::write(file, &bytes)?;
            Ok(format!("inverted 64 bytes in the last {TAIL_BYTES} of {} ({len} bytes)", file.display()))
        }
    }
}

/// What the twins run found.
#[derive(Debug)]
pub struct TwinsOutcome {
    /// The checker reported a fork, or some node recorded evidence.
    pub detected: bool,
    pub violations: Vec<Violation>,
    pub evidence: Vec<String>,
}

/// Negative control: validators 0 and 1 each run as two processes with the same key ("twins"), one on
/// each side of a split network: {v0, v1, v2} and {v0', v1', v3}. Each side holds 3 of 4 signatures
/// (Byzantine power 1/2 > 1/3), so both sides commit, and the checker must see the fork and name the
/// double signers. The split is made by the peer lists: the sides are never told of each other.
pub fn twins() -> Result<TwinsOutcome> {
    let mut net = Localnet::create(4, 2)?;
    let twin0 = net.add_full_node()?;
    let twin1 = net.add_full_node()?;
    let mut addr = Vec::new();
    for (i, n) in net.manifest.nodes.iter().enumerate() {
        addr.push((i, n.p2p_addr.clone()));
    }
    let twin_addr = |t: usize, of: usize| -> Result<String> {
        let home = net.nodes[t].home.clone();
        fs::copy(net.nodes[of].home.join("validator_key.json"), home.join("validator_key.json"))?;
        let text = fs::read_to_string(home.join("p2p_key.json"))?;
        let (_, peer_id) = genesis::parse_p2p_key_json(&text).map_err(|e| anyhow!("{e}"))?;
        let api_port: u16 = net.nodes[t].api.base.rsplit(':').next().unwrap_or("").parse()?;
        Ok(format!("/ip4/127.0.0.1/tcp/{}/p2p/{peer_id}", api_port + 1))
    };
    let t0_addr = twin_addr(twin0, 0)?;
    let t1_addr = twin_addr(twin1, 1)?;
    let side_a = [0usize, 1, 2];
    for &i in &side_a {
        let mut args = Vec::new();
        for &(j, ref a) in &addr {
            if j != i && side_a.contains(&j) {
                args.extend(["--bootstrap-peer".to_string(), a.clone()]);
            }
        }
        let api = net.nodes[i].api.clone();
        net.set_launch(i, Vec::new(), args, api);
    }
    let v3 = addr[3].1.clone();
    let api3 = net.nodes[3].api.clone();
    net.set_launch(
        3,
        Vec::new(),
        vec!["--bootstrap-peer".into(), t0_addr.clone(), "--bootstrap-peer".into(), t1_addr.clone()],
        api3,
    );
    for (t, peer) in [(twin0, &t1_addr), (twin1, &t0_addr)] {
        let port: u16 = net.nodes[t].api.base.rsplit(':').next().unwrap_or("").parse()?;
        let args = vec![
            "--genesis-file".to_string(),
            net.dir.join("genesis.json").display().to_string(),
            "--p2p-listen-addr".to_string(),
            format!("/ip4/127.0.0.1/tcp/{}", port + 1),
            "--api-listen-addr".to_string(),
            format!("127.0.0.1:{port}"),
            "--set".to_string(),
            "storage.cache_capacity_mb=32".to_string(),
            "--bootstrap-peer".to_string(),
            v3.clone(),
            "--bootstrap-peer".to_string(),
            peer.clone(),
        ];
        let api = net.nodes[t].api.clone();
        net.set_launch(t, Vec::new(), args, api);
    }
    net.start_all()?;
    let all: Vec<usize> = (0..net.nodes.len()).collect();
    net.wait_all(&all, 3, Duration::from_secs(90)).context("both sides of the split committing")?;
    let genesis_text = fs::read_to_string(net.dir.join("genesis.json"))?;
    let genesis = ledger_core::Genesis::from_json(&genesis_text).map_err(|e| anyhow!("{e}"))?;
    let apis: Vec<(String, ApiClient)> = net.nodes.iter().map(|n| (n.name.clone(), n.api.clone())).collect();
    let common = apis.iter().filter_map(|(_, a)| a.height().ok()).min().unwrap_or(0);
    let (_, violations) = checker::check_all(&genesis, &apis, common, &[])?;
    let evidence = net.evidence_lines();
    let fork = violations.iter().any(|v| v.invariant == "I1");
    println!("twins: fork reported by the checker: {fork}; evidence lines: {}", evidence.len());
    for v in &violations {
        println!("  {v}");
    }
    Ok(TwinsOutcome { detected: fork || !evidence.is_empty(), violations, evidence })
}
