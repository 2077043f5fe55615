//! One Linux network namespace per node, so that partitions drop real packets between real processes.
//!
//! Layout (everything lives in namespaces this module creates; the root namespace gets no interface, no
//! address and no route):
//!
//! ```text
//!  ns PREFIX-n0: eth0 10.77.0.10/24 ─┐
//!  ns PREFIX-n1: eth0 10.77.0.11/24 ─┼─ ns PREFIX-br: bridge br0 10.77.0.1/24 (veths v0, v1, …)
//!  …                                 ┘
//! ```
//!
//! The harness reaches the nodes' APIs from a thread that joined `PREFIX-br` (`setns`) before building its
//! HTTP client: sockets belong to the namespace they were created in, so the client's connections go over
//! the bridge while the rest of the process stays in the root namespace. Because every namespace is
//! private, every run uses the same subnet without colliding with another run or with the machine's own
//! networks.
//!
//! Faults: a partition between nodes `a` and `b` is a pair of blackhole routes (`a` drops what it sends
//! to `b`, `b` what it sends to `a`); a lossy link is `tc netem` (delay, jitter and loss on what a node
//! sends) when the kernel has netem, else iptables' `statistic` match dropping a random share of the
//! packets a node sends and receives (loss only; TCP turns it into retransmission delays). [`Topology`] deletes its namespaces on drop (also when a test panics), and
//! [`remove_stale`] deletes those of runs whose process is gone.

use std::collections::BTreeSet;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::harness::ApiClient;

/// Every namespace this module creates starts with this, followed by the creating process id.
pub const PREFIX: &str = "lchaos-";
/// First three octets of the private subnet inside the namespaces.
const SUBNET: &str = "10.77.0";
/// Node `i` is `SUBNET.(NODE_HOST_BASE + i)`.
const NODE_HOST_BASE: usize = 10;
/// Ports inside each node's namespace (each node has its own, so all can use the same ones).
pub const API_PORT: u16 = 26600;
pub const P2P_PORT: u16 = 26601;

/// A set of node namespaces on one bridge.
pub struct Topology {
    prefix: String,
    bridge_ns: String,
    nodes: Vec<String>,
    http: reqwest::blocking::Client,
    /// Directed pairs (from, to) currently dropped.
    blocked: BTreeSet<(usize, usize)>,
    lossy: BTreeSet<usize>,
    /// How lossy links are made here (probed at creation).
    pub loss: LossBackend,
}

/// What makes a link lossy on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossBackend {
    /// `tc qdisc … netem delay D J loss P%` on the node's `eth0`: delay, jitter and loss.
    Netem,
    /// `iptables -m statistic --mode random --probability P -j DROP` on the node's `eth0`, both directions:
    /// loss only (the kernel lacks netem).
    Iptables,
    /// Neither works: no lossy-link faults.
    None,
}

impl LossBackend {
    pub fn describe(self) -> &'static str {
        match self {
            LossBackend::Netem => "tc netem (delay, jitter and loss)",
            LossBackend::Iptables => "iptables statistic match (loss only; this kernel has no netem)",
            LossBackend::None => "NOT available (no tc netem, no iptables): no lossy-link faults",
        }
    }
}

/// Run `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("running ip (is iproute2 installed?)")?;
    if !out.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Why namespaces cannot be used here, or `None` when they can (root, iproute2, a kernel that allows it).
pub fn unavailable_reason() -> Option<String> {
    static PROBE: AtomicU32 = AtomicU32::new(0);
    // Unique per call: runs in parallel threads of one process probe at the same time.
    let probe = format!("{PREFIX}{}-probe{}", std::process::id(), PROBE.fetch_add(1, Ordering::SeqCst));
    match ip(&["netns", "add", &probe]) {
        Ok(()) => {
            let _ = ip(&["netns", "del", &probe]);
            None
        }
        Err(e) => Some(format!("{e:#}")),
    }
}

/// Delete namespaces of this module whose creating process no longer runs (left by a killed run).
pub fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else { continue };
        let pid = rest.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

impl Topology {
    /// Create `n` node namespaces on a bridge in a namespace of its own.
    pub fn create(n: usize) -> Result<Topology> {
        static RUN: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let prefix = format!("{PREFIX}{}-{}", std::process::id(), RUN.fetch_add(1, Ordering::SeqCst));
        let bridge_ns = format!("{prefix}-br");
        let nodes: Vec<String> = (0..n).map(|i| format!("{prefix}-n{i}")).collect();
        // From here on, Drop cleans up whatever was created, also on an early return.
        let mut topo = Topology {
            prefix,
            bridge_ns: bridge_ns.clone(),
            nodes: Vec::new(),
            http: reqwest::blocking::Client::new(),
            blocked: BTreeSet::new(),
            lossy: BTreeSet::new(),
            loss: LossBackend::None,
        };
        ip(&["netns", "add", &bridge_ns])?;
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &bridge_ns, "addr", "add", &format!("{SUBNET}.1/24"), "dev", "br0"])?;
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"])?;
        for (i, ns) in nodes.iter().enumerate() {
            ip(&["netns", "add", ns])?;
            topo.nodes.push(ns.clone());
            let peer = format!("v{i}");
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", &peer, "netns", &bridge_ns])?;
            ip(&["-n", ns, "addr", "add", &format!("{}/24", node_ip(i)), "dev", "eth0"])?;
            ip(&["-n", ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &bridge_ns, "link", "set", &peer, "master", "br0"])?;
            ip(&["-n", &bridge_ns, "link", "set", &peer, "up"])?;
        }
        topo.http = client_in_namespace(&bridge_ns)?;
        topo.loss = topo.probe_loss();
        Ok(topo)
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s address inside the namespaces.
    pub fn ip(&self, i: usize) -> String {
        node_ip(i)
    }

    /// The bridge namespace's file (for [`enter`]): a process there reaches every node over the bridge.
    pub fn bridge_netns_path(&self) -> String {
        format!("/var/run/netns/{}", self.bridge_ns)
    }

    /// The bridge's own address inside the namespaces (a peer in the bridge namespace listens there).
    pub fn bridge_ip(&self) -> String {
        format!("{SUBNET}.1")
    }

    /// The command prefix that runs a program in node `i`'s namespace.
    pub fn launcher(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.nodes[i]].iter().map(|s| s.to_string()).collect()
    }

    /// An API client for node `i`, connecting over the bridge.
    pub fn api_client(&self, i: usize) -> ApiClient {
        ApiClient::with_http(&format!("http://{}:{API_PORT}", node_ip(i)), self.http.clone())
    }

    /// The HTTP client whose sockets live in the bridge namespace.
    pub fn http(&self) -> reqwest::blocking::Client {
        self.http.clone()
    }

    /// Drop every packet between `a` and `b` (both directions).
    pub fn cut(&mut self, a: usize, b: usize) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            if self.blocked.insert((from, to)) {
                ip(&["-n", &self.nodes[from], "route", "add", "blackhole", &format!("{}/32", node_ip(to))])?;
            }
        }
        Ok(())
    }

    /// Undo [`Topology::cut`].
    pub fn mend(&mut self, a: usize, b: usize) -> Result<()> {
        for (from, to) in [(a, b), (b, a)] {
            if self.blocked.remove(&(from, to)) {
                ip(&["-n", &self.nodes[from], "route", "del", "blackhole", &format!("{}/32", node_ip(to))])?;
            }
        }
        Ok(())
    }

    /// Cut every link between a node of `side_a` and a node of `side_b`.
    pub fn split(&mut self, side_a: &[usize], side_b: &[usize]) -> Result<()> {
        for &a in side_a {
            for &b in side_b {
                self.cut(a, b)?;
            }
        }
        Ok(())
    }

    /// Delay (with jitter) and loss on everything node `i` sends (netem), or loss of `loss_pct` percent of
    /// what it sends and receives (iptables).
    pub fn set_lossy(&mut self, i: usize, delay_ms: u64, jitter_ms: u64, loss_pct: u64) -> Result<()> {
        let ns = &self.nodes[i];
        match self.loss {
            LossBackend::Netem => {
                let (delay, jitter, loss) = (format!("{delay_ms}ms"), format!("{jitter_ms}ms"), format!("{loss_pct}%"));
                tc(ns, &["qdisc", "replace", "dev", "eth0", "root", "netem", "delay", &delay, &jitter, "loss", &loss])?;
            }
            LossBackend::Iptables => {
                let p = format!("{:.4}", loss_pct.min(100) as f64 / 100.0);
                for (chain, dir) in [("OUTPUT", "-o"), ("INPUT", "-i")] {
                    let rule = [chain, dir, "eth0", "-m", "statistic", "--mode", "random", "--probability", &p];
                    iptables(ns, &[&["-A"], &rule[..], &["-j", "DROP"]].concat())?;
                }
            }
            LossBackend::None => bail!("no lossy links here: {}", self.loss.describe()),
        }
        self.lossy.insert(i);
        Ok(())
    }

    pub fn clear_lossy(&mut self, i: usize) -> Result<()> {
        if self.lossy.remove(&i) {
            let ns = &self.nodes[i];
            match self.loss {
                LossBackend::Netem => tc(ns, &["qdisc", "del", "dev", "eth0", "root"])?,
                LossBackend::Iptables => {
                    // The namespace is ours alone: these chains hold only the rules set above.
                    iptables(ns, &["-F", "OUTPUT"])?;
                    iptables(ns, &["-F", "INPUT"])?;
                }
                LossBackend::None => {}
            }
        }
        Ok(())
    }

    /// Counters of the iptables drop rules in node `i`'s namespace (packets dropped so far), if any.
    pub fn dropped_packets(&self, i: usize) -> Result<u64> {
        let text = iptables(&self.nodes[i], &["-L", "-n", "-v", "-x"])?;
        Ok(text
            .lines()
            .filter(|l| l.contains("DROP") && l.contains("statistic"))
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .sum())
    }

    /// Remove every partition and every lossy link.
    pub fn heal_all(&mut self) -> Result<()> {
        let blocked: Vec<(usize, usize)> = self.blocked.iter().copied().collect();
        for (a, b) in blocked {
            self.mend(a, b)?;
        }
        let lossy: Vec<usize> = self.lossy.iter().copied().collect();
        for i in lossy {
            self.clear_lossy(i)?;
        }
        Ok(())
    }

    /// Whether any link is cut or lossy.
    pub fn is_faulty(&self) -> bool {
        !self.blocked.is_empty() || !self.lossy.is_empty()
    }

    fn probe_loss(&self) -> LossBackend {
        let Some(ns) = self.nodes.first() else { return LossBackend::None };
        if tc(ns, &["qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"]).is_ok() {
            let _ = tc(ns, &["qdisc", "del", "dev", "eth0", "root"]);
            return LossBackend::Netem;
        }
        let rule =
            ["OUTPUT", "-o", "eth0", "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "DROP"];
        if iptables(ns, &[&["-A"], &rule[..]].concat()).is_ok() {
            let _ = iptables(ns, &["-F", "OUTPUT"]);
            return LossBackend::Iptables;
        }
        LossBackend::None
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.nodes.iter().chain(std::iter::once(&self.bridge_ns)) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn node_ip(i: usize) -> String {
    format!("{SUBNET}.{}", NODE_HOST_BASE + i)
}

fn tc(ns: &str, args: &[&str]) -> Result<()> {
    in_namespace(ns, "tc", args).map(drop)
}

fn iptables(ns: &str, args: &[&str]) -> Result<String> {
    in_namespace(ns, "iptables", args)
}

/// Run `program ARGS` inside namespace `ns`; its stdout, or an error with its stderr.
fn in_namespace(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, program])
        .args(args)
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!("{program} {} in {ns} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Move the calling thread into the network namespace whose file is `path` (`/var/run/netns/NAME`):
/// the sockets it opens from then on, and those of the threads it spawns, live in that namespace.
pub fn enter(path: &str) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).with_context(|| format!("setns into {path}"))
}

/// Build an HTTP client on a thread that joined namespace `ns`: the client's runtime thread is spawned
/// from there and inherits the namespace, so every connection it opens is made inside `ns`.
fn client_in_namespace(ns: &str) -> Result<reqwest::blocking::Client> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || -> Result<reqwest::blocking::Client> {
        enter(&path)?;
        Ok(reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build()?)
    })
    .join()
    .map_err(|_| anyhow!("namespace client thread panicked"))?
}
