//! Prometheus metrics (prometheus-client 0.25), all prefixed `ledger_`. The driver calls the `set_*` and
//! `on_*` methods; `GET /metrics` encodes the registry.
//!
//! | name | type | meaning |
//! |---|---|---|
//! | `ledger_consensus_height` | gauge | height consensus is deciding |
//! | `ledger_consensus_round` | gauge | round at that height |
//! | `ledger_committed_height` | gauge | latest committed block |
//! | `ledger_peers` | gauge | connected peers |
//! | `ledger_mempool_txs` / `ledger_mempool_bytes` | gauge | mempool size |
//! | `ledger_txs_committed_total` | counter | transactions in committed blocks |
//! | `ledger_blocks_committed_total` | counter | blocks committed by this process |
//! | `ledger_block_interval_seconds` | histogram | header timestamp difference between consecutive blocks |
//! | `ledger_commit_latency_seconds` | histogram | admission of a transaction to this node's mempool to its commit |
//! | `ledger_catching_up` | gauge | 1 while syncing blocks from peers |
//! | `ledger_sync_target_height` | gauge | height the peers have committed, as last seen while catching up |
//! | `ledger_data_dir_bytes` | gauge | bytes of the files under the data directory (measured every few seconds) |
//! | `ledger_disk_free_bytes` | gauge | bytes free on the data directory's file system |
//! | `ledger_disk_refusing` | gauge | 1 while transactions are refused for the disk (`disk_full` or `disk_budget`) |
//! | `ledger_base_height` | gauge | lowest height whose block body is stored (raised by pruning and state sync) |
//! | `ledger_pruned_blocks_total` | counter | block bodies pruned by this process |
//! | `ledger_consensus_messages_resent_total` | counter | consensus messages re-gossiped after a stall |
//! | `ledger_driver_busy_seconds_total` | counter | time the consensus driver spent handling events (its own work and the writes it waits for), not waiting for one; a rate near 1 means the driver, which is serial, sets the pace |
//! | `ledger_consensus_stall_rounds_total` | counter | re-gossip rounds run because no block committed (one every 2 s of a stall, after the first 3 s) |
//! | `ledger_signer_halted` | gauge | 1 once this validator saw another process sign with its key and stopped signing |
//! | `ledger_signer_active` | gauge | 1 while the double-sign guard lets this validator sign |
//! | `ledger_sign_floor_height` | gauge | the guard signs nothing at or below this height |
//! | `ledger_own_key_foreign_messages_total` | counter | messages signed with this validator's key that this process did not sign |
//! | `ledger_build_info{version,protocol_version}` | gauge (info) | always 1 |
//! | `ledger_api_requests_total{route,status}` | counter | API requests answered, by route template (`unmatched` for unknown paths) and status class (`2xx`, `4xx`, `5xx`) |
//! | `ledger_api_request_duration_seconds{route}` | histogram | time to answer (to the response head for `/events`), by route |
//! | `ledger_api_open_connections` | gauge | open API connections |
//! | `ledger_api_open_event_streams` | gauge | open `/events` streams |
//! | `ledger_api_commit_waits` | gauge | `POST /txs?wait=commit` requests waiting |
//! | `ledger_api_refused_total{reason}` | counter | connections and requests refused or cut off, by reason (see `api::guard::Refusal`) |
//! | `ledger_peer_penalties_total{reason}` | counter | peer faults scored: `invalid` (forged, undecodable, misaddressed), `over_budget` (gossip beyond its budget), `sync_abuse` (sync requests beyond its budget) |
//! | `ledger_peer_bans_total` | counter | peers banned (disconnected, reconnections refused for a while) |
//! | `ledger_peers_banned` | gauge | peers banned now |
//! | `ledger_gossip_dropped_total{reason}` | counter | gossip dropped without blame, by reason (see `ledger_core::gossip::DropReason`) |
//!
//! `GET /metrics` answers the Prometheus text format 0.0.4 (what `promtool check metrics` reads) unless
//! the client asks for OpenMetrics in `Accept`, which prometheus-client writes natively.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// The node's metrics and the registry that holds them (shareable with libp2p's metrics).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    consensus_height: Gauge,
    consensus_round: Gauge,
    committed_height: Gauge,
    peers: Gauge,
    mempool_txs: Gauge,
    mempool_bytes: Gauge,
    txs_committed: Counter,
    blocks_committed: Counter,
    block_interval: Histogram,
    commit_latency: Histogram,
    catching_up: Gauge,
    sync_target: Gauge,
    data_dir_bytes: Gauge,
    disk_free_bytes: Gauge,
    disk_refusing: Gauge,
    base_height: Gauge,
    pruned_blocks: Counter,
    consensus_resent: Counter,
    stall_rounds: Counter,
    driver_busy: Counter<f64, std::sync::atomic::AtomicU64>,
    signer_halted: Gauge,
    signer_active: Gauge,
    sign_floor: Gauge,
    foreign_own: Counter,
    api_requests: Family<Labels, Counter>,
    api_request_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    api_connections: Gauge,
    api_event_streams: Gauge,
    api_commit_waits: Gauge,
    api_refused: Family<Labels, Counter>,
    peer_penalties: Family<Labels, Counter>,
    peer_bans: Counter,
    peers_banned: Gauge,
    gossip_dropped: Family<Labels, Counter>,
    /// Header timestamp of the last committed block, for the interval histogram (0 = none yet).
    last_block_time_ms: AtomicU64,
}

type Labels = Vec<(&'static str, String)>;

fn request_seconds_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Metrics in a fresh registry prefixed `ledger`.
    pub fn new() -> Metrics {
        Metrics::with_registry(Registry::with_prefix("ledger"))
    }

    /// Register into `registry` (create it with `Registry::with_prefix("ledger")`; register other
    /// subsystems, such as libp2p metrics, before wrapping the result in an `Arc`).
    pub fn with_registry(mut registry: Registry) -> Metrics {
        let m = Metrics {
            registry: Registry::default(),
            consensus_height: Gauge::default(),
            consensus_round: Gauge::default(),
            committed_height: Gauge::default(),
            peers: Gauge::default(),
            mempool_txs: Gauge::default(),
            mempool_bytes: Gauge::default(),
            txs_committed: Counter::default(),
            blocks_committed: Counter::default(),
            block_interval: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            commit_latency: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            catching_up: Gauge::default(),
            sync_target: Gauge::default(),
            data_dir_bytes: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            disk_refusing: Gauge::default(),
            base_height: Gauge::default(),
            pruned_blocks: Counter::default(),
            consensus_resent: Counter::default(),
            stall_rounds: Counter::default(),
            driver_busy: Counter::default(),
            signer_halted: Gauge::default(),
            signer_active: Gauge::default(),
            sign_floor: Gauge::default(),
            foreign_own: Counter::default(),
            api_requests: Family::default(),
            api_request_seconds: Family::new_with_constructor(request_seconds_histogram),
            api_connections: Gauge::default(),
            api_event_streams: Gauge::default(),
            api_commit_waits: Gauge::default(),
            api_refused: Family::default(),
            peer_penalties: Family::default(),
            peer_bans: Counter::default(),
            peers_banned: Gauge::default(),
            gossip_dropped: Family::default(),
            last_block_time_ms: AtomicU64::new(0),
        };
        registry.register("consensus_height", "Height consensus is deciding", m.consensus_height.clone());
        registry.register("consensus_round", "Consensus round at the current height", m.consensus_round.clone());
        registry.register("committed_height", "Height of the latest committed block", m.committed_height.clone());
        registry.register("peers", "Connected peers", m.peers.clone());
        registry.register("mempool_txs", "Transactions in the mempool", m.mempool_txs.clone());
        registry.register("mempool_bytes", "Encoded bytes of the transactions in the mempool", m.mempool_bytes.clone());
        registry.register("txs_committed", "Transactions in committed blocks", m.txs_committed.clone());
        registry.register("blocks_committed", "Blocks committed by this process", m.blocks_committed.clone());
        registry.register(
            "block_interval_seconds",
            "Header timestamp difference between consecutive committed blocks",
            m.block_interval.clone(),
        );
        registry.register(
            "commit_latency_seconds",
            "Time from a transaction's admission to this node's mempool to its commit",
            m.commit_latency.clone(),
        );
        registry.register("catching_up", "1 while the node syncs blocks from peers", m.catching_up.clone());
        registry.register(
            "sync_target_height",
            "Height the peers have committed, as last seen while catching up",
            m.sync_target.clone(),
        );
        registry.register("data_dir_bytes", "Bytes of the files under the data directory", m.data_dir_bytes.clone());
        registry.register(
            "disk_free_bytes",
            "Bytes free on the data directory's file system",
            m.disk_free_bytes.clone(),
        );
        registry.register(
            "disk_refusing",
            "1 while transactions are refused because of the disk's free-space floor or the data directory's budget",
            m.disk_refusing.clone(),
        );
        registry.register("base_height", "Lowest height whose block body is stored", m.base_height.clone());
        registry.register("pruned_blocks", "Block bodies pruned by this process", m.pruned_blocks.clone());
        registry.register(
            "consensus_messages_resent",
            "Consensus messages re-gossiped because a height stalled",
            m.consensus_resent.clone(),
        );
        registry.register_with_unit(
            "driver_busy",
            "Time the consensus driver spent handling events (its work and the writes it waits for), not waiting for one",
            prometheus_client::registry::Unit::Seconds,
            m.driver_busy.clone(),
        );
        registry.register(
            "consensus_stall_rounds",
            "Re-gossip rounds run because no block committed for a while",
            m.stall_rounds.clone(),
        );
        registry.register(
            "signer_halted",
            "1 once another process was seen signing with this validator's key (this one stopped signing)",
            m.signer_halted.clone(),
        );
        registry.register(
            "signer_active",
            "1 while the double-sign guard lets this validator sign",
            m.signer_active.clone(),
        );
        registry.register("sign_floor_height", "The guard signs nothing at or below this height", m.sign_floor.clone());
        registry.register(
            "own_key_foreign_messages",
            "Messages signed with this validator's key that this process did not sign",
            m.foreign_own.clone(),
        );
        registry.register(
            "api_requests",
            "API requests answered, by route template and status class",
            m.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Time to answer an API request (to the response head for event streams), by route template",
            m.api_request_seconds.clone(),
        );
        registry.register("api_open_connections", "Open API connections", m.api_connections.clone());
        registry.register("api_open_event_streams", "Open /events streams", m.api_event_streams.clone());
        registry.register("api_commit_waits", "POST /txs?wait=commit requests waiting", m.api_commit_waits.clone());
        registry.register(
            "api_refused",
            "API connections and requests refused or cut off, by reason",
            m.api_refused.clone(),
        );
        for reason in super::guard::Refusal::ALL {
            // Every reason is present from the start (at 0), so a rate over it is defined.
            let _ = m.api_refused.get_or_create(&vec![("reason", reason.label().to_string())]);
        }
        registry.register("peer_penalties", "Peer faults scored, by reason", m.peer_penalties.clone());
        for o in ledger_core::gossip::Offence::ALL {
            let _ = m.peer_penalties.get_or_create(&vec![("reason", o.label().to_string())]);
        }
        registry.register("peer_bans", "Peers banned (disconnected, reconnections refused)", m.peer_bans.clone());
        registry.register("peers_banned", "Peers banned now", m.peers_banned.clone());
        registry.register("gossip_dropped", "Gossip dropped without blame, by reason", m.gossip_dropped.clone());
        for r in ledger_core::gossip::DropReason::ALL {
            let _ = m.gossip_dropped.get_or_create(&vec![("reason", r.label().to_string())]);
        }
        registry.register(
            "build",
            "Build information",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("protocol_version".to_string(), ledger_core::PROTOCOL_VERSION.to_string()),
            ]),
        );
        Metrics { registry, ..m }
    }

    /// Copy the network's peer-guard counters (they only grow) into the registry.
    pub fn sync_peer_stats(&self, stats: &crate::p2p::PeerStats) {
        let catch_up = |c: &Counter, now: u64| c.inc_by(now.saturating_sub(c.get()));
        for (o, n) in stats.penalties() {
            catch_up(&self.peer_penalties.get_or_create(&vec![("reason", o.label().to_string())]), n);
        }
        for (r, n) in stats.dropped() {
            catch_up(&self.gossip_dropped.get_or_create(&vec![("reason", r.label().to_string())]), n);
        }
        catch_up(&self.peer_bans, stats.bans());
        self.peers_banned.set(gauge_value(stats.banned_now()));
    }

    pub fn set_consensus(&self, height: u64, round: u32) {
        self.consensus_height.set(gauge_value(height));
        self.consensus_round.set(i64::from(round));
    }

    pub fn set_peers(&self, n: usize) {
        self.peers.set(gauge_value(n as u64));
    }

    pub fn set_mempool(&self, count: usize, bytes: usize) {
        self.mempool_txs.set(gauge_value(count as u64));
        self.mempool_bytes.set(gauge_value(bytes as u64));
    }

    pub fn set_catching_up(&self, catching_up: bool) {
        self.catching_up.set(i64::from(catching_up));
    }

    /// A disk measurement and whether transactions are refused for it.
    pub fn set_disk(&self, data_bytes: u64, free_bytes: u64, refusing: bool) {
        self.data_dir_bytes.set(gauge_value(data_bytes));
        self.disk_free_bytes.set(gauge_value(free_bytes));
        self.disk_refusing.set(i64::from(refusing));
    }

    /// The lowest stored body's height, and bodies just pruned.
    pub fn on_pruned(&self, base: u64, bodies: u64) {
        self.base_height.set(gauge_value(base));
        self.pruned_blocks.inc_by(bodies);
    }

    /// The height the peers have committed, as last seen while catching up.
    pub fn set_sync_target(&self, height: u64) {
        self.sync_target.set(i64::try_from(height).unwrap_or(i64::MAX));
    }

    /// After a block is durably committed: height, counters, and the interval since the previous block's
    /// header timestamp (the first block seen by this process records no interval).
    pub fn on_block_committed(&self, height: u64, n_txs: usize, timestamp_ms: u64) {
        self.committed_height.set(gauge_value(height));
        self.blocks_committed.inc();
        self.txs_committed.inc_by(n_txs as u64);
        let previous = self.last_block_time_ms.swap(timestamp_ms, Ordering::Relaxed);
        if previous != 0 && timestamp_ms >= previous {
            self.block_interval.observe((timestamp_ms - previous) as f64 / 1000.0);
        }
    }

    /// The double-sign guard's state.
    pub fn set_signer(&self, active: bool, halted: bool, sign_floor: u64) {
        self.signer_active.set(i64::from(active));
        self.signer_halted.set(i64::from(halted));
        self.sign_floor.set(gauge_value(sign_floor));
    }

    /// A message signed with this validator's key that this process did not sign was seen.
    pub fn on_foreign_own_signature(&self) {
        self.foreign_own.inc();
    }

    /// A re-gossip round ran and `n` consensus messages went out in it.
    pub fn on_consensus_resent(&self, n: u64) {
        self.stall_rounds.inc();
        self.consensus_resent.inc_by(n);
    }

    /// The driver handled one event in `busy`.
    pub fn add_driver_busy(&self, busy: Duration) {
        self.driver_busy.inc_by(busy.as_secs_f64());
    }

    pub fn observe_commit_latency(&self, latency: Duration) {
        self.commit_latency.observe(latency.as_secs_f64());
    }

    /// An API request was answered with `status` after `elapsed`; `route` is its route template.
    pub fn on_api_request(&self, route: &str, status: u16, elapsed: Duration) {
        let class = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.api_requests.get_or_create(&vec![("route", route.to_string()), ("status", class.to_string())]).inc();
        self.api_request_seconds.get_or_create(&vec![("route", route.to_string())]).observe(elapsed.as_secs_f64());
    }

    /// A connection or request was refused or cut off for `reason`.
    pub fn on_api_refused(&self, reason: &str) {
        self.api_refused.get_or_create(&vec![("reason", reason.to_string())]).inc();
    }

    /// Open API connections (+1 / -1).
    pub fn add_api_connections(&self, delta: i64) {
        self.api_connections.inc_by(delta);
    }

    /// Open event streams (+1 / -1).
    pub fn add_api_event_streams(&self, delta: i64) {
        self.api_event_streams.inc_by(delta);
    }

    /// Waiting `wait=commit` requests (+1 / -1).
    pub fn add_api_commit_waits(&self, delta: i64) {
        self.api_commit_waits.inc_by(delta);
    }

    /// OpenMetrics text, as prometheus-client writes it.
    pub fn encode_openmetrics(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Prometheus text format 0.0.4: the OpenMetrics text with counter families named by their `_total`
    /// samples, `info` families as gauges named `*_info`, and no `# UNIT` / `# EOF` lines.
    pub fn encode_prometheus(&self) -> Result<String, std::fmt::Error> {
        Ok(openmetrics_to_prometheus(&self.encode_openmetrics()?))
    }
}

fn openmetrics_to_prometheus(text: &str) -> String {
    use std::collections::BTreeMap;
    // Family name -> (new name, new type) for the families whose names change.
    let mut renamed: BTreeMap<&str, (String, &str)> = BTreeMap::new();
    for line in text.lines() {
        let mut words = line.split(' ');
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    renamed.insert(name, (format!("{name}_total"), "counter"));
                }
                "info" => {
                    renamed.insert(name, (format!("{name}_info"), "gauge"));
                }
                _ => {}
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let mut words = line.splitn(4, ' ');
        if let (Some("#"), Some(kw @ ("HELP" | "TYPE")), Some(name)) = (words.next(), words.next(), words.next())
            && let Some((new_name, new_type)) = renamed.get(name)
        {
            let rest = words.next().unwrap_or("");
            let rest = if kw == "TYPE" { new_type } else { rest };
            out.push_str(&format!("# {kw} {new_name} {rest}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}
