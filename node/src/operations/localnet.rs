//! `ledgerd localnet`: every validator of a local test network in ONE process.
//!
//! The files are those of `genesis localnet` ([`genesis::localnet::create_localnet`], laid out as
//! `docs/home-layout.md` says): created when `HOME/localnet.json` is absent or with `--reset`, otherwise
//! the existing localnet resumes on its data. Each node gets its own driver, swarm, API, ports, data
//! directory and sled database (with a small cache), exactly as `ledgerd start --home HOME/node{i}` would
//! run it; its log lines carry `node{node=node<i>}`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use genesis::localnet::{LocalnetManifest, LocalnetOptions, create_localnet, read_manifest};

use crate::config::{self, Override};
use crate::run::{self, RunningNode};

/// sled cache per node of a localnet, in MiB.
pub const LOCALNET_CACHE_MB: u64 = 16;
/// Dev account key files listed by name in the banner.
const BANNER_ACCOUNTS: usize = 3;

/// `ledgerd localnet` options.
#[derive(Clone, Debug)]
pub struct LocalnetArgs {
    pub validators: usize,
    pub accounts: usize,
    pub home: PathBuf,
    /// Node `i` serves its API on `base_port + 2i` and p2p on `+1`. On resume, a different base port moves
    /// every node (the files keep their ports; flags override them).
    pub base_port: Option<u16>,
    /// Recreate the localnet (deleting its chain data) even if one exists.
    pub reset: bool,
}

/// Create or load the localnet's files. Says whether it was created.
pub fn prepare(args: &LocalnetArgs) -> anyhow::Result<(LocalnetManifest, bool)> {
    let exists = args.home.join("localnet.json").is_file();
    if exists && !args.reset {
        let manifest = read_manifest(&args.home)
            .with_context(|| format!("cannot resume the localnet in {}", args.home.display()))?;
        if manifest.nodes.len() != args.validators || manifest.accounts.len() != args.accounts {
            tracing::info!(
                validators = manifest.nodes.len(),
                accounts = manifest.accounts.len(),
                "resuming the existing localnet as it is (--reset recreates it with the requested sizes)"
            );
        }
        return Ok((manifest, false));
    }
    let mut opts = LocalnetOptions::new(args.validators, args.accounts, &args.home);
    if let Some(p) = args.base_port {
        opts.base_port = p;
    }
    opts.force = args.reset;
    let manifest =
        create_localnet(&opts).with_context(|| format!("cannot create a localnet in {}", args.home.display()))?;
    Ok((manifest, true))
}

fn port_of(url_or_addr: &str) -> Option<u16> {
    url_or_addr.rsplit(':').next()?.parse().ok()
}

fn peer_id_of(p2p_addr: &str) -> Option<&str> {
    p2p_addr.rsplit("/p2p/").next().filter(|s| !s.is_empty() && !s.contains('/'))
}

/// Config overrides for node `i`: a small cache, and the ports of `base_port` when it differs from the
/// files'.
fn overrides(manifest: &LocalnetManifest, i: usize, base_port: Option<u16>) -> anyhow::Result<Vec<Override>> {
    let mut o = vec![Override::new("storage.cache_capacity_mb", LOCALNET_CACHE_MB.to_string(), "ledgerd localnet")];
    let current = manifest.nodes.first().and_then(|n| port_of(&n.api_url));
    let Some(base) = base_port.filter(|b| Some(*b) != current) else { return Ok(o) };
    let n = manifest.nodes.len();
    let last = u64::from(base) + 2 * n as u64 - 1;
    anyhow::ensure!(last <= u64::from(u16::MAX), "--base-port {base} leaves no room for {n} nodes");
    let api = |k: usize| base + 2 * k as u16;
    let mut peers = Vec::new();
    for (k, node) in manifest.nodes.iter().enumerate() {
        if k == i {
            continue;
        }
        let id = peer_id_of(&node.p2p_addr)
            .with_context(|| format!("manifest p2p address {} has no peer id", node.p2p_addr))?;
        peers.push(format!("/ip4/127.0.0.1/tcp/{}/p2p/{id}", api(k) + 1));
    }
    let flag = "--base-port";
    o.push(Override::new("api.listen_addr", format!("127.0.0.1:{}", api(i)), flag));
    o.push(Override::new("p2p.listen_addr", format!("/ip4/127.0.0.1/tcp/{}", api(i) + 1), flag));
    o.push(Override::new("p2p.bootstrap_peers", peers.join(","), flag));
    Ok(o)
}

fn banner(manifest: &LocalnetManifest, home: &Path, created: bool, nodes: &[RunningNode]) -> String {
    let mut b = String::new();
    let verb = if created { "created" } else { "resumed" };
    let _ = writeln!(b, "localnet {verb}: {}", home.display());
    let _ = writeln!(b, "  chain id:     {}", manifest.chain_id);
    let _ = writeln!(b, "  genesis hash: {}", manifest.genesis_hash.to_hex());
    let _ = writeln!(b, "  height:       {}", nodes.first().map_or(0, |n| n.status.borrow().height.0));
    for (m, node) in manifest.nodes.iter().zip(nodes) {
        let api = node.api_addr.map_or_else(|| "-".to_string(), |a| format!("http://{a}"));
        let _ = writeln!(b, "  {:<6} api {api}  validator {}", m.name, m.validator.to_address_string());
    }
    let n = manifest.accounts.len();
    let _ = writeln!(b, "  dev accounts: {n} (UNSAFE plaintext keys, dev only)");
    for a in manifest.accounts.iter().take(BANNER_ACCOUNTS) {
        let _ = writeln!(b, "    {}  {}", a.address.to_address_string(), a.key_file.display());
    }
    if n > BANNER_ACCOUNTS {
        let dir = manifest.accounts[0].key_file.parent().map_or_else(|| home.join("accounts"), Path::to_path_buf);
        let _ = writeln!(b, "    ... and {} more in {}", n - BANNER_ACCOUNTS, dir.display());
    }
    let _ = writeln!(b, "  manifest:     {}", home.join("localnet.json").display());
    let _ = write!(b, "Ctrl-C or SIGTERM stops every node.");
    b
}

/// Run the localnet until Ctrl-C, SIGTERM or a node's fatal error.
pub fn run(args: LocalnetArgs) -> anyhow::Result<()> {
    let (manifest, created) = prepare(&args)?;
    let home = std::fs::canonicalize(&args.home).unwrap_or_else(|_| args.home.clone());
    let mut setups = Vec::with_capacity(manifest.nodes.len());
    for (i, node) in manifest.nodes.iter().enumerate() {
        let cfg = config::load(&node.home, &[], &overrides(&manifest, i, args.base_port)?)
            .with_context(|| format!("configuration of {}", node.name))?;
        let mut setup = run::node_setup(&cfg).with_context(|| format!("cannot set up {}", node.name))?;
        setup.log_name = node.name.clone();
        setups.push(setup);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let mut nodes = Vec::with_capacity(setups.len());
        for (setup, m) in setups.into_iter().zip(&manifest.nodes) {
            match run::start(setup).await {
                Ok(n) => nodes.push(n),
                Err(e) => {
                    shutdown_all(nodes).await;
                    return Err(e.context(format!("cannot start {}", m.name)));
                }
            }
        }
        println!("{}", banner(&manifest, &home, created, &nodes));
        let failure = {
            let stopped = futures::future::select_all(nodes.iter_mut().map(|n| Box::pin(n.driver_stopped())));
            tokio::select! {
                (e, i, _) = stopped => Some((i, e)),
                signal = run::shutdown_signal() => {
                    tracing::info!(%signal, "shutting down the localnet");
                    None
                }
            }
        };
        let ok = shutdown_all(nodes).await;
        match failure {
            Some((i, e)) => Err(e.context(format!("{} stopped", manifest.nodes[i].name))),
            None if ok => {
                tracing::info!("localnet stopped");
                Ok(())
            }
            None => Err(anyhow::anyhow!("a node did not shut down cleanly")),
        }
    })
}

/// Shut every node down at once; false if one failed (each failure is logged).
async fn shutdown_all(nodes: Vec<RunningNode>) -> bool {
    let results = futures::future::join_all(nodes.into_iter().map(RunningNode::shutdown)).await;
    let mut ok = true;
    for e in results.into_iter().filter_map(Result::err) {
        tracing::error!(error = %format!("{e:#}"), "shutdown failed");
        ok = false;
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_base_port_moves_every_port() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let args = LocalnetArgs {
            validators: 3,
            accounts: 2,
            home: dir.path().join("ln"),
            base_port: Some(30_000),
            reset: false,
        };
        let (m, created) = prepare(&args).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(created);
        let (again, created) = prepare(&args).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!created);
        assert_eq!(again, m, "resume reads the same manifest");
        assert_eq!(overrides(&m, 1, Some(30_000)).unwrap_or_else(|e| panic!("{e:#}")).len(), 1);
        let o = overrides(&m, 1, Some(40_000)).unwrap_or_else(|e| panic!("{e:#}"));
        let cfg = config::load(&m.nodes[1].home, &[], &o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.api_listen_addr.port(), 40_002);
        assert_eq!(cfg.p2p_listen_addr.to_string(), "/ip4/127.0.0.1/tcp/40003");
        assert_eq!(cfg.cache_capacity_mb, LOCALNET_CACHE_MB);
        let peers: Vec<String> = cfg.bootstrap_peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].starts_with("/ip4/127.0.0.1/tcp/40001/p2p/12D3KooW"), "{peers:?}");
        assert!(peers[1].starts_with("/ip4/127.0.0.1/tcp/40005/p2p/12D3KooW"), "{peers:?}");
    }
}
