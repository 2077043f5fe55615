//! Scripted chaos runs: damage to a stopped node's storage, and the twins negative control.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};

use super::checker::{self, Violation, violation};
use super::disk::{self, DiskFault};
use super::rng::Rng;
use super::workload::{self, Workload};
use super::{Cluster, LIVENESS};
use crate::harness::{ApiClient, Localnet, wait_for};

/// Height the chain grows to before the first damage case, and how long that may take.
const GROWN: u64 = 150;
const GROW: Duration = Duration::from_secs(60);

/// One case of the storage-damage matrix and what came of it.
#[derive(Debug)]
pub struct CaseOutcome {
    pub case: DiskFault,
    pub node: usize,
    /// Height the node reported before it was stopped.
    pub before: u64,
    /// What was done to its data directory (file sizes, snapshots deleted).
    pub done: String,
    pub outcome: disk::Outcome,
    /// How long after catching up it signed again (mode `active`), if it did.
    pub signing_again: Option<Duration>,
}

impl CaseOutcome {
    pub fn line(&self) -> String {
        let signing = self
            .signing_again
            .map_or("not signing".to_string(), |d| format!("signing again after {:.1}s", d.as_secs_f64()));
        format!(
            "node{} {} (height {} before; {}): {}; {signing}",
            self.node,
            self.case,
            self.before,
            self.done,
            self.outcome.describe()
        )
    }
}

/// What a storage-damage run found.
#[derive(Debug)]
pub struct DamageReport {
    pub cases: Vec<CaseOutcome>,
    pub violations: Vec<Violation>,
}

/// The storage-damage matrix on one cluster: 4 validators under a workload; for each case in turn, stop
/// one validator cleanly (node3, node0, node1, ... in turn), apply the case to its data directory, let
/// the others go on, and start it again with [`disk::restart_and_recover`]: it must refuse with a clear
/// error or start at or above its high-water mark (a rewind is an ERROR naming both heights and, for a
/// validator, a refusal until `--accept-rewind`); never panic. A refusal is recovered as an operator
/// would (`reset-data` and/or `--accept-rewind`), and the node must catch up and sign again before the
/// next case. At the end: no evidence and no panic on any node (I7, I9, I11), and the checker over every
/// node's chain (I1-I5, I8).
pub fn storage_damage(cases: &[DiskFault], seed: u64) -> Result<DamageReport> {
    let mut cluster = Cluster::launch(4, 5, false, None)?;
    let n = cluster.n();
    let all: Vec<usize> = (0..n).collect();
    let accounts = cluster.accounts(cluster.genesis.params.min_fee)?;
    let workload = Workload::start(cluster.targets(), accounts, 2, &Rng::new(seed));
    // A log over more than one of sled's segments (512 KiB), so that the offsets of the cases are apart.
    if wait_for(&format!("height {GROWN}"), GROW, || Ok((cluster.max_height() >= GROWN).then_some(()))).is_err() {
        cluster.say(format!("note: height {GROWN} not reached within {GROW:?}; the cases run on a shorter log"));
    }
    // sled writes its snapshot (`snap.*`) when it opens a database: restart every node once, so that every
    // case has a snapshot to keep or to delete.
    for &i in &all {
        cluster.net.stop(i, Duration::from_secs(20))?;
    }
    cluster.net.start_all()?;
    // Every node answers (its storage is open), and none signs before its watch ends: this is the height
    // the network restarted at.
    let up = wait_for("every node to answer after the restart", LIVENESS, || {
        let heights: Option<Vec<u64>> = cluster.heights().into_iter().collect();
        Ok(heights.map(|h| h.into_iter().max().unwrap_or(0)))
    })?;
    if let Err(e) = cluster.wait_heights(&all, up + 2, LIVENESS) {
        let why = disk::strip_ansi(&cluster.net.diagnostics(&all));
        return Err(e.context(format!("the chain after every node restarted at once; every node:\n{why}")));
    }
    for &i in &all {
        disk::wait_active(&cluster, i, LIVENESS).context("every validator signing after the restart")?;
    }
    cluster.say(format!("every node restarted once (sled snapshots written); heights {:?}", cluster.heights()));
    let mut violations = Vec::new();
    let mut outcomes = Vec::new();
    for (k, case) in cases.iter().enumerate() {
        let victim = (n - 1 + k) % n;
        let others: Vec<usize> = all.iter().copied().filter(|&j| j != victim).collect();
        // Three validators must sign while the victim is down: the last one restarted may still watch.
        for &j in &others {
            disk::wait_active(&cluster, j, LIVENESS).context("every other validator signing before the next case")?;
        }
        let before = cluster.api(victim).height()?;
        cluster.net.stop(victim, Duration::from_secs(20))?;
        let home = cluster.net.nodes[victim].home.clone();
        let done = disk::apply(&home, *case, seed.wrapping_add(k as u64))?;
        cluster.say(format!(
            "case {k}: node{victim} stopped at height {before}, mark {:?}; {done}",
            disk::high_water(&home)?
        ));
        // The others go on without it for a while, so a recovering node has something to sync.
        let top = cluster.max_height();
        cluster.wait_heights(&others, top + 3, LIVENESS)?;
        let outcome = disk::restart_and_recover(&mut cluster, victim, k % 2 == 1, &mut violations)?;
        let signing_again = match outcome.caught_up {
            Some(_) => match disk::wait_active(&cluster, victim, LIVENESS) {
                Ok(d) => Some(d),
                Err(e) => {
                    violations.push(violation("I6", format!("node{victim} does not sign again after {case}: {e:#}")));
                    None
                }
            },
            None => None,
        };
        let result = CaseOutcome { case: *case, node: victim, before, done, outcome, signing_again };
        cluster.say(format!("case {k}: {}", result.line()));
        let stop = result.signing_again.is_none();
        outcomes.push(result);
        if stop {
            // With this node out, stopping another would halt the chain: the rest of the matrix cannot run.
            violations
                .push(violation("storage", format!("matrix stopped after case {k}: node{victim} did not recover")));
            break;
        }
    }

    let mut history = workload.stop();
    // A node that did not come back is already a violation; the others are checked.
    let up: Vec<usize> = all.iter().copied().filter(|&i| cluster.api(i).height().is_ok()).collect();
    let top = cluster.max_height();
    if let Err(e) = cluster.wait_heights(&up, top, LIVENESS) {
        violations.push(violation("I6", format!("{e:#}")));
    }
    let targets: Vec<workload::Target> = up.iter().map(|&i| cluster.targets()[i].clone()).collect();
    workload::resolve(&mut history, &targets);
    let apis: Vec<(String, ApiClient)> = up.iter().map(|&i| cluster.named_apis()[i].clone()).collect();
    let common = apis.iter().filter_map(|(_, a)| a.height().ok()).min().unwrap_or(0);
    let (_, found) = checker::check_all(&cluster.genesis, &apis, common, &history)?;
    violations.extend(found);
    violations.extend(super::safety_violations(&cluster));
    let (ok, failed, indeterminate) = workload::tally(&history);
    println!("storage damage summary (seed {seed}; chains checked up to height {common}):");
    for (k, c) in outcomes.iter().enumerate() {
        println!("  case {k:>2}: {}", c.line());
    }
    println!("  txs ok {ok} failed {failed} indeterminate {indeterminate}; violations {}", violations.len());
    for v in &violations {
        println!("  {v}");
    }
    Ok(DamageReport { cases: outcomes, violations })
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
    if let Err(e) = net.wait_all(&all, 3, Duration::from_secs(90)) {
        let why = disk::strip_ansi(&net.diagnostics(&all));
        return Err(e.context(format!("both sides of the split committing; every node:\n{why}")));
    }
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
