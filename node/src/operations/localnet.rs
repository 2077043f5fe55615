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
/// Dev accounts listed one by one in the banner (the rest are counted).
pub const BANNER_ACCOUNTS: usize = 10;
/// Validators and dev accounts of a new localnet when not given.
pub const DEFAULT_VALIDATORS: usize = 4;
pub const DEFAULT_ACCOUNTS: usize = 10;

/// `ledgerd localnet` options.
#[derive(Clone, Debug, Default)]
pub struct LocalnetArgs {
    /// Validators and accounts when creating; `None`: the existing localnet's with `--reset`, else the
    /// defaults.
    pub validators: Option<usize>,
    pub accounts: Option<usize>,
    pub home: PathBuf,
    /// Node `i` serves its API on `base_port + 2i` and p2p on `+1`. On resume, a different base port moves
    /// every node (the files keep their ports; flags override them). `None` with `--reset`: the existing
    /// localnet's.
    pub base_port: Option<u16>,
    /// Recreate the localnet (deleting its chain data) even if one exists.
    pub reset: bool,
    /// `--block-time`: sets `consensus.min_block_interval_ms` and `consensus.empty_block_interval_ms`.
    pub block_time_ms: Option<u64>,
}

/// Create or load the localnet's files. Says whether it was created.
pub fn prepare(args: &LocalnetArgs) -> anyhow::Result<(LocalnetManifest, bool)> {
    let exists = args.home.join("localnet.json").is_file();
    let existing = if exists {
        Some(
            read_manifest(&args.home)
                .with_context(|| format!("cannot resume the localnet in {}", args.home.display()))?,
        )
    } else {
        None
    };
    if let (Some(manifest), false) = (&existing, args.reset) {
        let differs = args.validators.is_some_and(|v| v != manifest.nodes.len())
            || args.accounts.is_some_and(|a| a != manifest.accounts.len());
        if differs {
            eprintln!(
                "note: resuming the existing localnet as it is ({} validators, {} accounts); --reset recreates it \
                 with the requested sizes",
                manifest.nodes.len(),
                manifest.accounts.len()
            );
        }
        return Ok((manifest.clone(), false));
    }
    // A reset keeps what the flags do not change: the existing localnet's sizes and ports.
    let validators = args.validators.or(existing.as_ref().map(|m| m.nodes.len())).unwrap_or(DEFAULT_VALIDATORS);
    let accounts = args.accounts.or(existing.as_ref().map(|m| m.accounts.len())).unwrap_or(DEFAULT_ACCOUNTS);
    let base_port =
        args.base_port.or_else(|| existing.as_ref().and_then(|m| m.nodes.first()).and_then(|n| port_of(&n.api_url)));
    let mut opts = LocalnetOptions::new(validators, accounts, &args.home);
    if let Some(p) = base_port {
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

/// Config overrides for node `i`: a small cache, the block time, and the ports of `base_port` when it
/// differs from the files'.
fn overrides(
    manifest: &LocalnetManifest,
    i: usize,
    base_port: Option<u16>,
    block_time_ms: Option<u64>,
) -> anyhow::Result<Vec<Override>> {
    let mut o = vec![Override::new("storage.cache_capacity_mb", LOCALNET_CACHE_MB.to_string(), "ledgerd localnet")];
    if let Some(ms) = block_time_ms {
        o.push(Override::new("consensus.min_block_interval_ms", ms.to_string(), "--block-time"));
        o.push(Override::new("consensus.empty_block_interval_ms", ms.to_string(), "--block-time"));
    }
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

/// What the banner shows of one node.
pub struct BannerNode {
    pub name: String,
    pub api_url: String,
    pub validator: String,
}

/// The banner printed before any log line: where everything is and what to type next (the shape of
/// anvil's): every node's API, every dev account (the first [`BANNER_ACCOUNTS`]) with balance and key file,
/// and a ready-to-paste `wallet transfer`.
pub fn banner(
    manifest: &LocalnetManifest,
    home: &Path,
    created: bool,
    nodes: &[BannerNode],
    balances: &dyn Fn(&ledger_core::Address) -> Option<u64>,
) -> String {
    let mut b = String::new();
    let verb = if created { "created" } else { "resumed" };
    let _ = writeln!(b, "localnet {verb}: {} ({} validators)", home.display(), manifest.nodes.len());
    let _ = writeln!(b, "  chain id:     {}", manifest.chain_id);
    let _ = writeln!(b, "  genesis hash: {}", manifest.genesis_hash.to_hex());
    let _ = writeln!(b, "  genesis:      {}", home.join("genesis.json").display());
    let _ = writeln!(b, "  manifest:     {}", home.join("localnet.json").display());
    let _ = writeln!(b);
    let _ = writeln!(b, "Nodes (GET <api>/ lists the routes, <api>/openapi.json describes them):");
    for n in nodes {
        let _ = writeln!(b, "  {:<6} api {}  validator {}", n.name, n.api_url, n.validator);
    }
    let _ = writeln!(b);
    let n = manifest.accounts.len();
    let _ = writeln!(b, "Dev accounts: {n} (UNSAFE plaintext keys, anyone can spend them: dev only)");
    for (j, a) in manifest.accounts.iter().take(BANNER_ACCOUNTS).enumerate() {
        let balance = balances(&a.address).map_or_else(|| "?".to_string(), |v| v.to_string());
        let _ = writeln!(b, "  ({j}) {}  balance {balance}", a.address.to_address_string());
        let _ = writeln!(b, "      key {}", a.key_file.display());
    }
    if n > BANNER_ACCOUNTS {
        let dir = manifest.accounts[0].key_file.parent().map_or_else(|| home.join("accounts"), Path::to_path_buf);
        let _ = writeln!(b, "  ... and {} more in {} (all listed in the manifest)", n - BANNER_ACCOUNTS, dir.display());
    }
    let _ = writeln!(b);
    let node = nodes.first().map_or("http://127.0.0.1:26600", |n| n.api_url.as_str());
    if let (Some(from), Some(to)) = (manifest.accounts.first(), manifest.accounts.get(1)) {
        let _ = writeln!(b, "Try:");
        let _ = writeln!(
            b,
            "  wallet --node {node} transfer --key {} --to {} --amount 1000 --wait",
            from.key_file.display(),
            to.address.to_address_string()
        );
        let _ = writeln!(b, "  wallet --node {node} balance {}", to.address.to_address_string());
        let _ = writeln!(b, "  curl -s {node}/status");
        let _ = writeln!(b);
    }
    let _ = write!(b, "Ctrl-C or SIGTERM stops every node. Logs follow.");
    b
}

/// Is `e` (or a cause) a bind failure because the address is taken?
fn is_addr_in_use(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse))
}

/// Run the localnet until Ctrl-C, SIGTERM or a node's fatal error. `init_logs` starts logging; it is
/// called once the banner is printed, so the banner comes before any log line.
pub fn run(args: LocalnetArgs, init_logs: impl FnOnce()) -> anyhow::Result<()> {
    let (manifest, created) = prepare(&args)?;
    let home = std::fs::canonicalize(&args.home).unwrap_or_else(|_| args.home.clone());
    let mut configs = Vec::with_capacity(manifest.nodes.len());
    for (i, node) in manifest.nodes.iter().enumerate() {
        let cfg = config::load(&node.home, &[], &overrides(&manifest, i, args.base_port, args.block_time_ms)?)
            .with_context(|| format!("configuration of {}", node.name))?;
        configs.push(cfg);
    }
    let genesis_text = std::fs::read_to_string(home.join("genesis.json"))
        .with_context(|| format!("cannot read {}", home.join("genesis.json").display()))?;
    let genesis = ledger_core::Genesis::from_json(&genesis_text).context("the localnet's genesis.json")?;
    let balances: std::collections::HashMap<ledger_core::Address, u64> =
        genesis.accounts.iter().map(|a| (a.address, a.balance)).collect();
    let banner_nodes: Vec<BannerNode> = manifest
        .nodes
        .iter()
        .zip(&configs)
        .map(|(m, c)| BannerNode {
            name: m.name.clone(),
            api_url: format!("http://{}", c.api_listen_addr),
            validator: m.validator.to_address_string(),
        })
        .collect();
    let text = banner(&manifest, &home, created, &banner_nodes, &|a| balances.get(a).copied());
    println!("{text}");
    println!();
    init_logs();
    let mut setups = Vec::with_capacity(configs.len());
    for (cfg, node) in configs.iter().zip(&manifest.nodes) {
        let mut setup = run::node_setup(cfg).with_context(|| format!("cannot set up {}", node.name))?;
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
                    let e = e.context(format!("cannot start {}", m.name));
                    if is_addr_in_use(&e) {
                        return Err(e.context(format!(
                            "a port of this localnet is taken (another localnet or program?): stop it, or move \
                             every node with --base-port P (node i uses P + 2i and P + 2i + 1; now {})",
                            configs.first().map_or(0, |c| c.api_listen_addr.port())
                        )));
                    }
                    return Err(e);
                }
            }
        }
        tracing::info!(chain_id = %manifest.chain_id, nodes = nodes.len(), "localnet running");
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
            validators: Some(3),
            accounts: Some(2),
            home: dir.path().join("ln"),
            base_port: Some(30_000),
            ..LocalnetArgs::default()
        };
        let (m, created) = prepare(&args).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(created);
        let (again, created) = prepare(&args).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!created);
        assert_eq!(again, m, "resume reads the same manifest");
        assert_eq!(overrides(&m, 1, Some(30_000), None).unwrap_or_else(|e| panic!("{e:#}")).len(), 1);
        let o = overrides(&m, 1, Some(40_000), Some(250)).unwrap_or_else(|e| panic!("{e:#}"));
        let cfg = config::load(&m.nodes[1].home, &[], &o).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.api_listen_addr.port(), 40_002);
        assert_eq!(cfg.p2p_listen_addr.to_string(), "/ip4/127.0.0.1/tcp/40003");
        assert_eq!(cfg.cache_capacity_mb, LOCALNET_CACHE_MB);
        assert_eq!(cfg.empty_block_interval_ms, 250, "--block-time");
        assert_eq!(cfg.min_block_interval_ms, Some(250), "--block-time");
        let peers: Vec<String> = cfg.bootstrap_peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers.len(), 2);
        assert!(peers[0].starts_with("/ip4/127.0.0.1/tcp/40001/p2p/12D3KooW"), "{peers:?}");
        assert!(peers[1].starts_with("/ip4/127.0.0.1/tcp/40005/p2p/12D3KooW"), "{peers:?}");
    }

    /// `--reset` without sizes or ports recreates the localnet as it was, not with the defaults.
    #[test]
    fn reset_keeps_the_existing_sizes_and_ports_unless_given() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let home = dir.path().join("ln");
        let first = LocalnetArgs {
            validators: Some(1),
            accounts: Some(3),
            home: home.clone(),
            base_port: Some(29_200),
            ..LocalnetArgs::default()
        };
        let (m, _) = prepare(&first).unwrap_or_else(|e| panic!("{e:#}"));
        let reset = LocalnetArgs { home: home.clone(), reset: true, ..LocalnetArgs::default() };
        let (again, created) = prepare(&reset).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(created);
        assert_eq!((again.nodes.len(), again.accounts.len()), (1, 3));
        assert_eq!(again.nodes[0].api_url, m.nodes[0].api_url);
        assert_eq!(again.nodes[0].api_url, "http://127.0.0.1:29200");
        let bigger = LocalnetArgs { validators: Some(2), ..reset };
        let (m2, _) = prepare(&bigger).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!((m2.nodes.len(), m2.accounts.len()), (2, 3));
        assert_eq!(m2.nodes[1].api_url, "http://127.0.0.1:29202");
    }

    #[test]
    fn banner_lists_every_account_up_to_ten_with_balance_key_and_a_command() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let args = LocalnetArgs {
            validators: Some(2),
            accounts: Some(12),
            home: dir.path().join("ln"),
            ..LocalnetArgs::default()
        };
        let (m, created) = prepare(&args).unwrap_or_else(|e| panic!("{e:#}"));
        let nodes: Vec<BannerNode> = m
            .nodes
            .iter()
            .map(|n| BannerNode {
                name: n.name.clone(),
                api_url: n.api_url.clone(),
                validator: n.validator.to_address_string(),
            })
            .collect();
        let text = banner(&m, &args.home, created, &nodes, &|_| Some(1_000_000));
        for a in &m.accounts[..BANNER_ACCOUNTS] {
            assert!(text.contains(&a.address.to_address_string()), "{text}");
            assert!(text.contains(&a.key_file.display().to_string()), "{text}");
        }
        assert!(!text.contains(&m.accounts[10].address.to_address_string()), "{text}");
        assert!(text.contains("... and 2 more"), "{text}");
        assert_eq!(text.matches("balance 1000000").count(), BANNER_ACCOUNTS, "{text}");
        assert!(text.contains("http://127.0.0.1:26600") && text.contains("http://127.0.0.1:26602"), "{text}");
        let transfer = format!(
            "wallet --node http://127.0.0.1:26600 transfer --key {} --to {} --amount 1000 --wait",
            m.accounts[0].key_file.display(),
            m.accounts[1].address.to_address_string()
        );
        assert!(text.contains(&transfer), "{text}");
    }
}
