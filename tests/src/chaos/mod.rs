//! `chaos`: a Jepsen-style fault run against real `ledgerd` processes.
//!
//! A run starts a localnet (one network namespace per node when running as root, see [`netns`]), starts
//! the bank [`workload`], plays the seeded [`nemesis`] schedule (kill -9, SIGSTOP, clean restarts, disk
//! damage with the operator's recovery, partitions, flapping and lossy links), heals everything, checks
//! liveness (I6), resolves the clients' open outcomes, and ends with the [`checker`] over every node's
//! full chain and [`safety_violations`] over every node's log (no evidence: every validator here is
//! honest, I7/I11; no panic, I9). It is not a simulator: the timing of what happens between scheduled
//! faults is the machine's, so two runs of one seed share the schedule, not the interleaving.
//!
//! [`disk`] damages a stopped node's data directory and brings it back as an operator would.
//! [`scenarios`] holds the runs with a fixed script: the storage-damage matrix, and the twins negative
//! control. Invariant ids are those of docs/reliability.md.

pub mod checker;
pub mod disk;
pub mod nemesis;
pub mod netns;
pub mod rng;
pub mod scenarios;
pub mod workload;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use ledger_core::Genesis;

use self::checker::{Violation, violation};
use self::nemesis::{Fault, FaultKind, Step};
use self::netns::Topology;
use self::rng::Rng;
use self::workload::{Accounts, Target, TxRecord, Workload};
use crate::byzantine::{self, ChainInfo, DefenceCounters, FloodSpec};
use crate::harness::{ApiClient, Localnet, wait_for};

/// The I6 bound: after a heal, progress and pending valid transactions within this.
pub const LIVENESS: Duration = Duration::from_secs(30);
const START: Duration = Duration::from_secs(60);

/// What to run.
#[derive(Clone, Debug)]
pub struct Options {
    pub seed: u64,
    /// Length of the chaos phase (faults and workload).
    pub duration: Duration,
    pub validators: usize,
    /// Dev accounts used by the clients (one more is kept for liveness probes).
    pub accounts: usize,
    pub clients: usize,
    /// Fault kinds allowed; those needing namespaces are dropped when namespaces are unavailable.
    pub kinds: Vec<FaultKind>,
    /// Never use namespaces, even as root.
    pub process_faults_only: bool,
    /// Keep the localnet files here instead of a temporary directory.
    pub keep_dir: Option<PathBuf>,
}

impl Options {
    pub fn new(seed: u64, duration: Duration) -> Options {
        Options {
            seed,
            duration,
            validators: 4,
            accounts: 8,
            clients: 4,
            kinds: FaultKind::ALL.to_vec(),
            process_faults_only: false,
            keep_dir: None,
        }
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub schedule: Vec<Step>,
    pub txs_ok: usize,
    pub txs_failed: usize,
    pub txs_indeterminate: usize,
    pub faults: usize,
    pub violations: Vec<Violation>,
    /// (what was healed, how long until the nodes caught up and progressed).
    pub recoveries: Vec<(String, Duration)>,
    pub netns: bool,
}

impl Report {
    /// The last line the `chaos` command prints.
    pub fn summary_line(&self) -> String {
        format!(
            "seed={} txs_ok={} txs_failed={} txs_indeterminate={} faults={} violations={}",
            self.seed,
            self.txs_ok,
            self.txs_failed,
            self.txs_indeterminate,
            self.faults,
            self.violations.len()
        )
    }

    pub fn kinds_run(&self) -> BTreeSet<FaultKind> {
        nemesis::kinds_of(&self.schedule)
    }
}

/// A running localnet, with its namespaces when it has them, and a clock for the log lines.
pub struct Cluster {
    // Field order is drop order: processes are killed before their namespaces are deleted.
    pub net: Localnet,
    pub topo: Option<Topology>,
    pub genesis: Genesis,
    pub http: reqwest::blocking::Client,
    pub started: Instant,
    /// Each node's launcher and `ledgerd start` arguments as launched, so one start can add a flag
    /// (`--accept-rewind`) and the next goes back to these.
    launch: Vec<(Vec<String>, Vec<String>)>,
}

impl Cluster {
    /// Create and start `validators` nodes with `accounts` dev accounts; inside namespaces when `netns`.
    pub fn launch(validators: usize, accounts: usize, netns: bool, keep_dir: Option<&PathBuf>) -> Result<Cluster> {
        let mut net = match keep_dir {
            Some(dir) => Localnet::create_in(dir, validators, accounts)?,
            None => Localnet::create(validators, accounts)?,
        };
        let genesis_text = std::fs::read_to_string(net.dir.join("genesis.json"))?;
        let genesis = Genesis::from_json(&genesis_text).map_err(|e| anyhow!("genesis.json: {e}"))?;
        let mut http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let mut launch = vec![(Vec::new(), Vec::new()); validators];
        let topo = if netns {
            let topo = Topology::create(validators)?;
            for i in 0..validators {
                let mut args = vec![
                    "--p2p-listen-addr".to_string(),
                    format!("/ip4/{}/tcp/{}", topo.ip(i), netns::P2P_PORT),
                    "--api-listen-addr".to_string(),
                    format!("{}:{}", topo.ip(i), netns::API_PORT),
                    "--set".to_string(),
                    "storage.cache_capacity_mb=32".to_string(),
                ];
                for (j, peer) in net.manifest.nodes.iter().enumerate() {
                    if j == i {
                        continue;
                    }
                    let peer_id = peer.p2p_addr.rsplit("/p2p/").next().unwrap_or_default();
                    args.push("--bootstrap-peer".to_string());
                    args.push(format!("/ip4/{}/tcp/{}/p2p/{peer_id}", topo.ip(j), netns::P2P_PORT));
                }
                launch[i] = (topo.launcher(i), args.clone());
                net.set_launch(i, topo.launcher(i), args, topo.api_client(i));
            }
            http = topo.http();
            Some(topo)
        } else {
            None
        };
        let mut cluster = Cluster { net, topo, genesis, http, started: Instant::now(), launch };
        cluster.net.start_all()?;
        let all: Vec<usize> = (0..validators).collect();
        cluster.net.wait_all(&all, 2, START).context("localnet start")?;
        Ok(cluster)
    }

    pub fn n(&self) -> usize {
        self.net.nodes.len()
    }

    /// Start node `i` with `extra` arguments added to its `ledgerd start` command line for this start only.
    pub fn start_node(&mut self, i: usize, extra: &[&str]) -> Result<()> {
        let (launcher, args) = self.launch[i].clone();
        let api = self.api(i);
        let mut with = args.clone();
        with.extend(extra.iter().map(|s| s.to_string()));
        self.net.set_launch(i, launcher.clone(), with, api.clone());
        let started = self.net.start(i);
        self.net.set_launch(i, launcher, args, api);
        started
    }

    pub fn api(&self, i: usize) -> ApiClient {
        self.net.nodes[i].api.clone()
    }

    pub fn targets(&self) -> Vec<Target> {
        self.net.nodes.iter().map(|n| Target { base: n.api.base.clone(), http: self.http.clone() }).collect()
    }

    /// Print a line stamped with the time since launch.
    pub fn say(&self, msg: impl AsRef<str>) {
        println!("[{:>6.1}s] {}", self.started.elapsed().as_secs_f64(), msg.as_ref());
    }

    /// Heights of every node (None for a node that does not answer).
    pub fn heights(&self) -> Vec<Option<u64>> {
        self.net.nodes.iter().map(|n| n.api.height().ok()).collect()
    }

    pub fn max_height(&self) -> u64 {
        self.heights().into_iter().flatten().max().unwrap_or(0)
    }

    /// Wait until each of `which` reports at least `height`; how long it took.
    pub fn wait_heights(&self, which: &[usize], height: u64, timeout: Duration) -> Result<Duration> {
        let t0 = Instant::now();
        let apis: Vec<(String, ApiClient)> =
            which.iter().map(|&i| (self.net.nodes[i].name.clone(), self.api(i))).collect();
        wait_for(&format!("{which:?} to reach height {height}"), timeout, || {
            let mut behind = Vec::new();
            for (name, api) in &apis {
                match api.height() {
                    Ok(h) if h >= height => {}
                    Ok(h) => behind.push(format!("{name} at {h}")),
                    Err(_) => behind.push(format!("{name} not answering")),
                }
            }
            if behind.is_empty() { Ok(Some(())) } else { Err(anyhow!("behind: {}", behind.join(", "))) }
        })?;
        Ok(t0.elapsed())
    }

    /// The dev accounts' keys for the workload (all but the last, which is kept for probes).
    pub fn accounts(&self, fee: u64) -> Result<Accounts> {
        let k = self.net.manifest.accounts.len().saturating_sub(1);
        let keys = (0..k).map(|j| self.net.account_key(j).map(Arc::new)).collect::<Result<Vec<_>>>()?;
        Ok(Accounts { chain_id: self.genesis.chain_id.clone(), keys, fee })
    }

    /// Every validator as a libp2p target: its peer id from the manifest, at its address in the
    /// namespaces when there are some.
    pub fn p2p_targets(&self) -> Result<Vec<byzantine::Target>> {
        let mut targets = byzantine::targets(&self.net.manifest, &(0..self.n()).collect::<Vec<_>>())?;
        if let Some(topo) = &self.topo {
            for (i, t) in targets.iter_mut().enumerate() {
                let addr = format!("/ip4/{}/tcp/{}/p2p/{}", topo.ip(i), netns::P2P_PORT, t.peer_id);
                *t = byzantine::Target::parse(&t.name, &addr)?;
            }
        }
        Ok(targets)
    }

    /// Every node, named, with its API client (for the checker).
    pub fn named_apis(&self) -> Vec<(String, ApiClient)> {
        self.net.nodes.iter().map(|n| (n.name.clone(), n.api.clone())).collect()
    }
}

/// Run the whole thing: launch, workload + nemesis, heal, liveness, final check. Prints as it goes.
pub fn run(opts: &Options) -> Result<Report> {
    let unavailable = if opts.process_faults_only {
        Some("process faults only were asked for".to_string())
    } else {
        netns::unavailable_reason()
    };
    let netns_ok = unavailable.is_none();
    println!("chaos seed={} duration={}s validators={}", opts.seed, opts.duration.as_secs(), opts.validators);
    let mut cluster = Cluster::launch(opts.validators, opts.accounts + 1, netns_ok, opts.keep_dir.as_ref())?;
    let loss = cluster.topo.as_ref().map_or(netns::LossBackend::None, |t| t.loss);
    match (&unavailable, &cluster.topo) {
        (None, Some(topo)) => println!(
            "network namespaces: yes ({}-*): partitions and flapping links; lossy links: {}",
            topo.prefix(),
            loss.describe()
        ),
        (Some(why), _) => println!("network namespaces: NO ({why}); process faults only"),
        (None, None) => println!("network namespaces: NO; process faults only"),
    }
    let kinds: Vec<FaultKind> = opts
        .kinds
        .iter()
        .copied()
        .filter(|k| netns_ok || !k.needs_netns())
        .filter(|k| loss != netns::LossBackend::None || *k != FaultKind::Lossy)
        .collect();
    let schedule = nemesis::schedule(opts.seed, opts.duration, opts.validators, &kinds);
    println!("schedule ({} faults):", schedule.len());
    for s in &schedule {
        println!("  {s}");
    }
    cluster.say(format!("localnet up in {}: heights {:?}", cluster.net.dir.display(), cluster.heights()));
    let mut violations: Vec<Violation> = Vec::new();
    let mut recoveries: Vec<(String, Duration)> = Vec::new();

    let accounts = cluster.accounts(cluster.genesis.params.min_fee)?;
    let rng = Rng::new(opts.seed);
    let workload = Workload::start(cluster.targets(), accounts, opts.clients, &rng);

    // Chaos phase: only safety is checked while faults are active.
    let chaos_start = Instant::now();
    let mut faults = 0;
    let mut executed = Vec::new();
    for step in &schedule {
        nemesis::sleep_until(chaos_start, step.at);
        cluster.say(format!("fault: {}", step.fault));
        faults += 1;
        executed.push(step.clone());
        if let Err(e) = inject(&mut cluster, &step.fault, &mut violations, &mut recoveries) {
            // A harness failure (not a ledger one) still heals and ends with the check of what we have.
            cluster.say(format!("nemesis error: {e:#}"));
            violations.push(violation("nemesis", format!("{}: {e:#}", step.fault)));
            heal_everything(&mut cluster, &mut violations);
        }
    }
    nemesis::sleep_until(chaos_start, opts.duration);
    heal_everything(&mut cluster, &mut violations);
    cluster.say("chaos phase over: stopping clients");
    let mut history = workload.stop();

    // Healed phase: progress, probes, pending transactions.
    liveness(&mut cluster, &mut history, &mut violations, &mut recoveries)?;

    // Final check over every node's full chain.
    let top = cluster.max_height();
    let all: Vec<usize> = (0..cluster.n()).collect();
    if let Err(e) = cluster.wait_heights(&all, top, LIVENESS) {
        violations.push(violation("I6", format!("nodes did not converge on height {top}: {e:#}")));
    }
    let common = cluster.heights().into_iter().map(|h| h.unwrap_or(0)).min().unwrap_or(0);
    cluster.say(format!("checking chains up to height {common}"));
    let (_, found) = checker::check_all(&cluster.genesis, &cluster.named_apis(), common, &history)?;
    violations.extend(found);
    violations.extend(safety_violations(&cluster));

    let (txs_ok, txs_failed, txs_indeterminate) = workload::tally(&history);
    let report = Report {
        seed: opts.seed,
        schedule: executed,
        txs_ok,
        txs_failed,
        txs_indeterminate,
        faults,
        violations,
        recoveries,
        netns: netns_ok,
    };
    print_figures(&report, &history);
    Ok(report)
}

fn print_figures(report: &Report, history: &[TxRecord]) {
    println!("faults injected: {}", report.faults);
    for s in &report.schedule {
        println!("  {s}");
    }
    println!("recovery times:");
    for (what, d) in &report.recoveries {
        println!("  {:>6.1}s  {what}", d.as_secs_f64());
    }
    let mut failed_codes: std::collections::BTreeMap<String, usize> = Default::default();
    for r in history {
        if let workload::Outcome::Failed { code } = &r.outcome {
            *failed_codes.entry(code.clone()).or_default() += 1;
        }
    }
    println!(
        "txs: ok {} failed {} {:?} indeterminate {}",
        report.txs_ok, report.txs_failed, failed_codes, report.txs_indeterminate
    );
    if report.violations.is_empty() {
        println!("violations: none");
    } else {
        println!("violations:");
        for v in &report.violations {
            println!("  {v}");
        }
    }
}

/// Inject `fault`, hold it, heal it, and measure the recovery.
fn inject(
    cluster: &mut Cluster,
    fault: &Fault,
    violations: &mut Vec<Violation>,
    recoveries: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let n = cluster.n();
    let all: Vec<usize> = (0..n).collect();
    match fault {
        Fault::Kill9 { node, .. } | Fault::Restart { node } => {
            let before = cluster.api(*node).height().ok();
            if matches!(fault, Fault::Kill9 { .. }) {
                cluster.net.kill(*node)?;
                std::thread::sleep(fault.hold());
            } else if let Err(e) = cluster.net.stop(*node, Duration::from_secs(20)) {
                violations.push(violation("restart", format!("node{node} did not stop cleanly on SIGTERM: {e:#}")));
            }
            cluster.net.start(*node)?;
            check_not_backwards(cluster, *node, before, violations);
        }
        Fault::Disk { node, what, crash, prefer_reset, seed, .. } => {
            let before = cluster.api(*node).height().ok();
            if *crash {
                cluster.net.kill(*node)?;
            } else if let Err(e) = cluster.net.stop(*node, Duration::from_secs(20)) {
                violations.push(violation("restart", format!("node{node} did not stop cleanly on SIGTERM: {e:#}")));
            }
            let home = cluster.net.nodes[*node].home.clone();
            let done = disk::apply(&home, *what, *seed)?;
            cluster.say(format!(
                "node{node} stopped at height {}; mark {:?}; {done}",
                before.map_or("?".to_string(), |h| h.to_string()),
                disk::high_water(&home)?
            ));
            std::thread::sleep(fault.hold());
            let outcome = disk::restart_and_recover(cluster, *node, *prefer_reset, violations)?;
            cluster.say(format!("node{node} after {what}: {}", outcome.describe()));
        }
        Fault::Pause { node, .. } => {
            cluster.net.pause(*node)?;
            std::thread::sleep(fault.hold());
            cluster.net.resume(*node)?;
        }
        Fault::Isolate { node, .. } => {
            let topo = cluster.topo.as_mut().ok_or_else(|| anyhow!("isolate needs namespaces"))?;
            for j in (0..n).filter(|j| j != node) {
                topo.cut(*node, j)?;
            }
            std::thread::sleep(fault.hold());
            topo.heal_all()?;
        }
        Fault::Split { side_a, side_b, .. } => {
            cluster.topo.as_mut().ok_or_else(|| anyhow!("split needs namespaces"))?.split(side_a, side_b)?;
            let at_split = cluster.max_height();
            std::thread::sleep(fault.hold());
            let at_heal = cluster.max_height();
            // A height whose precommits were already in flight may still complete: at most one.
            if at_heal > at_split + 1 {
                violations.push(violation(
                    "split-halt",
                    format!("heights went from {at_split} to {at_heal} during {fault}: a half committed blocks"),
                ));
            } else {
                cluster.say(format!("split held: max height {at_split} -> {at_heal}"));
            }
            cluster.topo.as_mut().ok_or_else(|| anyhow!("no namespaces"))?.heal_all()?;
        }
        Fault::Flap { period_ms, seed, .. } => {
            let mut rng = Rng::new(*seed);
            let deadline = Instant::now() + fault.hold();
            let mut toggles = 0;
            let topo = cluster.topo.as_mut().ok_or_else(|| anyhow!("flap needs namespaces"))?;
            let mut cut: BTreeSet<(usize, usize)> = BTreeSet::new();
            while Instant::now() < deadline {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(n - 1)) % n;
                let pair = (a.min(b), a.max(b));
                if cut.remove(&pair) {
                    topo.mend(pair.0, pair.1)?;
                } else {
                    cut.insert(pair);
                    topo.cut(pair.0, pair.1)?;
                }
                toggles += 1;
                std::thread::sleep(Duration::from_millis(*period_ms));
            }
            let mut order: Vec<(usize, usize)> = cut.into_iter().collect();
            rng.shuffle(&mut order);
            for (a, b) in &order {
                topo.mend(*a, *b)?;
            }
            cluster.say(format!("flapped {toggles} times; healed {order:?} in that order"));
        }
        Fault::Byzantine { flood, .. } => {
            let chain = ChainInfo::new(&cluster.genesis, cluster.max_height());
            let mut spec = FloodSpec::new(*flood, fault.hold());
            let netns = cluster.topo.as_ref().map(|topo| {
                spec.listen =
                    format!("/ip4/{}/tcp/0", topo.bridge_ip()).parse().unwrap_or_else(|_| byzantine::loopback());
                topo.bridge_netns_path()
            });
            let before: Vec<Option<DefenceCounters>> =
                (0..n).map(|i| DefenceCounters::read(&cluster.api(i)).ok()).collect();
            let (_stop, attacker) = byzantine::spawn_flood(chain, cluster.p2p_targets()?, spec, netns);
            let report = attacker.join().map_err(|_| anyhow!("attacker thread panicked"))??;
            cluster.say(format!("attacker: {}", report.summary()));
            for (i, b) in before.iter().enumerate() {
                if let (Some(b), Ok(after)) = (b, DefenceCounters::read(&cluster.api(i))) {
                    let d = after.since(b);
                    cluster.say(format!(
                        "node{i} defences: penalties {:?}, bans +{}, dropped {:?}",
                        d.penalties, d.bans, d.dropped
                    ));
                }
            }
        }
        Fault::Lossy { node, delay_ms, jitter_ms, loss_pct, .. } => {
            let topo = cluster.topo.as_mut().ok_or_else(|| anyhow!("lossy needs namespaces"))?;
            topo.set_lossy(*node, *delay_ms, *jitter_ms, *loss_pct)?;
            std::thread::sleep(fault.hold());
            let dropped =
                if topo.loss == netns::LossBackend::Iptables { Some(topo.dropped_packets(*node)?) } else { None };
            topo.clear_lossy(*node)?;
            if let Some(dropped) = dropped {
                cluster.say(format!("lossy link node{node}: {dropped} packets dropped by iptables (loss only: no netem here, so no added delay)"));
            }
        }
    }
    // Recovery: every node answers, reaches the height the network had at the heal, and one more.
    let target = cluster.max_height() + 1;
    match cluster.wait_heights(&all, target, LIVENESS) {
        Ok(d) => {
            cluster.say(format!("recovered in {:.1}s (all at >= {target})", d.as_secs_f64()));
            recoveries.push((fault.to_string(), d));
        }
        Err(e) => violations.push(violation("I6", format!("no recovery within {LIVENESS:?} after {fault}: {e:#}"))),
    }
    Ok(())
}

/// What every node's whole log must not hold: evidence (every validator here is honest, so evidence means
/// an honest double-sign: I7, I11) and panics (I9).
pub fn safety_violations(cluster: &Cluster) -> Vec<Violation> {
    let mut out = Vec::new();
    for line in cluster.net.evidence_lines() {
        out.push(violation("I7", format!("evidence against an honest validator: {line}")));
    }
    for n in &cluster.net.nodes {
        let log = disk::strip_ansi(&std::fs::read_to_string(n.log_path()).unwrap_or_default());
        for line in disk::panic_lines(&log) {
            out.push(violation("I9", format!("{} panicked: {line}", n.name)));
        }
    }
    out
}

/// I5: once a restarted node answers, its height is not below what it reported before the fault.
fn check_not_backwards(cluster: &Cluster, node: usize, before: Option<u64>, violations: &mut Vec<Violation>) {
    let Some(before) = before else { return };
    let api = cluster.api(node);
    match wait_for(&format!("node{node} to answer after restart"), LIVENESS, || Ok(api.height().ok())) {
        Ok(after) if after < before => violations.push(violation(
            "I5",
            format!("node{node} reported height {before} before the restart and {after} after it"),
        )),
        Ok(_) => {}
        Err(e) => violations.push(violation("I6", format!("node{node} does not answer after restart: {e:#}"))),
    }
}

/// Undo every fault: resume, start what is down, mend every link. A node found exited on its own (not
/// stopped by the nemesis) is a violation.
fn heal_everything(cluster: &mut Cluster, violations: &mut Vec<Violation>) {
    for i in 0..cluster.n() {
        let _ = cluster.net.resume(i);
        if !cluster.net.nodes[i].is_running() {
            if let Some(status) = cluster.net.nodes[i].exit_status() {
                violations.push(violation(
                    if status.code() == Some(101) { "I9" } else { "exited" },
                    format!("node{i} exited on its own ({status}):\n{}", cluster.net.nodes[i].log_tail(15)),
                ));
            }
            let _ = cluster.net.start(i);
        }
    }
    if let Some(topo) = cluster.topo.as_mut() {
        let _ = topo.heal_all();
    }
}

/// Healed phase (I6): heights advance, a probe through every node commits everywhere, and no valid
/// transaction stays pending; then resolve the clients' open outcomes.
fn liveness(
    cluster: &mut Cluster,
    history: &mut [TxRecord],
    violations: &mut Vec<Violation>,
    recoveries: &mut Vec<(String, Duration)>,
) -> Result<()> {
    let all: Vec<usize> = (0..cluster.n()).collect();
    let target = cluster.max_height() + 2;
    match cluster.wait_heights(&all, target, LIVENESS) {
        Ok(d) => recoveries.push(("final heal: all nodes +2 heights".to_string(), d)),
        Err(e) => violations.push(violation("I6", format!("no progress within {LIVENESS:?} of the heal: {e:#}"))),
    }
    let probe = cluster.net.manifest.accounts.len() - 1;
    for i in 0..cluster.n() {
        let t0 = Instant::now();
        let result = (|| -> Result<()> {
            let tx = cluster.net.transfer(i, probe, 0, 1)?;
            let answer = cluster.api(i).submit(&tx.encode())?;
            if answer.status != 200 {
                return Err(anyhow!("probe refused: {} {}", answer.status, answer.body));
            }
            for j in 0..cluster.n() {
                cluster.net.wait_committed(j, &tx.id().to_hex(), LIVENESS)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => recoveries.push((format!("probe tx via node{i} committed on all nodes"), t0.elapsed())),
            Err(e) => violations.push(violation("I6", format!("probe via node{i}: {e:#}"))),
        }
    }
    let targets = cluster.targets();
    let stuck = wait_for("no valid transaction left pending", LIVENESS, || {
        workload::resolve(history, &targets);
        let stuck = workload::stuck_valid(history, &targets);
        if stuck.is_empty() { Ok(Some(())) } else { Err(anyhow!("still pending: {stuck:?}")) }
    });
    if let Err(e) = stuck {
        violations.push(violation("I6", format!("{e:#}")));
    }
    workload::resolve(history, &targets);
    Ok(())
}
