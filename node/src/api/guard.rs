//! Per-client bookkeeping that lets the API shed one abusive host without refusing everyone else.
//!
//! A client is an IP address (IPv4, or the /64 prefix of an IPv6 address, since one host usually holds a
//! whole /64). [`Clients`] counts, per client, open connections, open event streams, `wait=commit`
//! requests and buffered request-body bytes, each against its own cap, and runs a token bucket of
//! requests per second. Addresses listed in [`ApiConfig::unlimited_clients`] skip the per-client caps (the
//! global ones still apply); loopback is an address like any other.
//!
//! Every refusal is counted in `ledger_api_refused_total{reason}` and logged as a rate-limited WARN that
//! names the client and the limit (at most one line per reason per [`WARN_EVERY`], with the number of
//! refusals it stands for).
//!
//! Memory: an entry is kept while the client holds anything; idle entries are dropped once the table
//! grows past a bound, so the table never holds more than a few entries per open connection.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::state::ApiConfig;

/// At most one WARN per refusal reason this often.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// The address of the peer of the connection a request came on (inserted by [`super::serve`]; absent
/// when the router is called directly, e.g. by `oneshot` in tests, which then skips per-client limits).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// Why a request or connection was refused; the `reason` label of `ledger_api_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// More open connections than `connections_max`.
    ConnectionsTotal,
    /// More open connections from this client than `connections_per_client_max`.
    ConnectionsPerClient,
    /// Request headers not complete within `header_read_timeout` (idle or slowloris connections).
    HeaderTimeout,
    /// Request body not complete within `body_read_timeout`.
    BodyTimeout,
    /// A response could not be written for `write_timeout` (a client that does not read).
    WriteTimeout,
    /// More requests per second from this client than its token bucket allows.
    RateLimited,
    /// Every general request slot is taken.
    Overloaded,
    /// Too many request-body bytes buffered (in total or by this client).
    BodyBudget,
    /// Every `wait=commit` slot (or this client's share) is taken: answered `pending` at once.
    CommitWaits,
    /// Every event stream slot is taken.
    EventStreams,
    /// This client holds `event_streams_per_client_max` streams.
    EventStreamsPerClient,
}

impl Refusal {
    pub const ALL: [Refusal; 11] = [
        Refusal::ConnectionsTotal,
        Refusal::ConnectionsPerClient,
        Refusal::HeaderTimeout,
        Refusal::BodyTimeout,
        Refusal::WriteTimeout,
        Refusal::RateLimited,
        Refusal::Overloaded,
        Refusal::BodyBudget,
        Refusal::CommitWaits,
        Refusal::EventStreams,
        Refusal::EventStreamsPerClient,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionsTotal => "connections_total",
            Refusal::ConnectionsPerClient => "connections_per_client",
            Refusal::HeaderTimeout => "header_timeout",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::WriteTimeout => "write_timeout",
            Refusal::RateLimited => "rate_limited",
            Refusal::Overloaded => "overloaded",
            Refusal::BodyBudget => "body_budget",
            Refusal::CommitWaits => "commit_waits",
            Refusal::EventStreams => "event_streams",
            Refusal::EventStreamsPerClient => "event_streams_per_client",
        }
    }

    /// The limit, as an operator finds it in `[api]` of config.toml.
    fn limit(self, c: &ApiConfig) -> String {
        match self {
            Refusal::ConnectionsTotal => format!("api.connections_max = {}", c.connections_max),
            Refusal::ConnectionsPerClient => {
                format!("api.connections_per_client_max = {}", c.connections_per_client_max)
            }
            Refusal::HeaderTimeout => {
                format!("api.header_read_timeout_ms = {}", c.header_read_timeout.as_millis())
            }
            Refusal::BodyTimeout => format!("api.body_read_timeout_ms = {}", c.body_read_timeout.as_millis()),
            Refusal::WriteTimeout => format!("api.write_timeout_ms = {}", c.write_timeout.as_millis()),
            Refusal::RateLimited => format!(
                "api.requests_per_client_per_sec = {} (burst api.request_burst_per_client = {})",
                c.requests_per_client_per_sec, c.request_burst_per_client
            ),
            Refusal::Overloaded => format!("api.concurrent_requests_max = {}", c.concurrent_requests_max),
            Refusal::BodyBudget => format!(
                "api.body_buffer_bytes_max = {} / api.body_buffer_bytes_per_client_max = {}",
                c.body_buffer_bytes_max, c.body_buffer_bytes_per_client_max
            ),
            Refusal::CommitWaits => format!(
                "api.commit_waits_max = {} / api.commit_waits_per_client_max = {}",
                c.commit_waits_max, c.commit_waits_per_client_max
            ),
            Refusal::EventStreams => format!("api.event_streams_max = {}", c.event_streams_max),
            Refusal::EventStreamsPerClient => {
                format!("api.event_streams_per_client_max = {}", c.event_streams_per_client_max)
            }
        }
    }
}

/// What a client holds, each with its own cap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Held {
    Connection,
    EventStream,
    CommitWait,
}

/// A client's key in the table: the IPv4 address, or the /64 of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientKey(IpAddr);

impl ClientKey {
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(IpAddr::V4(v4)),
                None => {
                    let s = v6.segments();
                    ClientKey(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
        }
    }
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => write!(f, "{v4}"),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

#[derive(Debug)]
struct Entry {
    connections: usize,
    streams: usize,
    waits: usize,
    body_bytes: usize,
    /// Token bucket; negative while requests are queued for a token (see [`Clients::admit_request`]).
    tokens: f64,
    refilled_at: Instant,
}

impl Entry {
    fn new(burst: f64, now: Instant) -> Entry {
        Entry { connections: 0, streams: 0, waits: 0, body_bytes: 0, tokens: burst, refilled_at: now }
    }

    fn holds_nothing(&self) -> bool {
        self.connections == 0 && self.streams == 0 && self.waits == 0 && self.body_bytes == 0
    }
}

struct Table {
    entries: HashMap<ClientKey, Entry>,
    /// Prune idle entries when the table grows past this.
    prune_at: usize,
}

struct WarnState {
    last: Option<Instant>,
    suppressed: u64,
}

/// The per-client table and the rate-limited refusal log. Shared by the server and the middleware.
pub struct Clients {
    config: ApiConfig,
    metrics: Arc<Metrics>,
    table: Mutex<Table>,
    warns: Mutex<HashMap<Refusal, WarnState>>,
    prune_floor: usize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Clients {
    pub fn new(config: ApiConfig, metrics: Arc<Metrics>) -> Clients {
        let prune_floor = config.connections_max.saturating_mul(2).max(1024);
        Clients {
            config,
            metrics,
            table: Mutex::new(Table { entries: HashMap::new(), prune_at: prune_floor }),
            warns: Mutex::new(HashMap::new()),
            prune_floor,
        }
    }

    fn limited(&self, key: ClientKey) -> bool {
        !self.config.unlimited_clients.iter().any(|ip| ClientKey::of(*ip) == key)
    }

    fn burst(&self) -> f64 {
        f64::from(self.config.request_burst_per_client.max(1))
    }

    fn with_entry<T>(&self, key: ClientKey, f: impl FnOnce(&mut Entry, Instant) -> T) -> T {
        let now = Instant::now();
        let burst = self.burst();
        let mut t = lock(&self.table);
        if t.entries.len() >= t.prune_at && !t.entries.contains_key(&key) {
            t.entries.retain(|_, e| !e.holds_nothing());
            t.prune_at = (t.entries.len() * 2).max(self.prune_floor);
        }
        let e = t.entries.entry(key).or_insert_with(|| Entry::new(burst, now));
        f(e, now)
    }

    fn cap(&self, what: Held) -> usize {
        match what {
            Held::Connection => self.config.connections_per_client_max,
            Held::EventStream => self.config.event_streams_per_client_max,
            Held::CommitWait => self.config.commit_waits_per_client_max,
        }
    }

    /// Take one `what` for the client at `ip`, or `None` when it holds its cap already.
    pub fn hold(self: &Arc<Self>, ip: Option<IpAddr>, what: Held) -> Option<ClientHold> {
        let Some(ip) = ip else {
            return Some(ClientHold { clients: self.clone(), key: None, what });
        };
        let key = ClientKey::of(ip);
        if !self.limited(key) {
            return Some(ClientHold { clients: self.clone(), key: None, what });
        }
        let cap = self.cap(what);
        let ok = self.with_entry(key, |e, _| {
            let n = match what {
                Held::Connection => &mut e.connections,
                Held::EventStream => &mut e.streams,
                Held::CommitWait => &mut e.waits,
            };
            if *n >= cap {
                return false;
            }
            *n += 1;
            true
        });
        ok.then(|| ClientHold { clients: self.clone(), key: Some(key), what })
    }

    fn release(&self, key: ClientKey, what: Held) {
        let mut t = lock(&self.table);
        if let Some(e) = t.entries.get_mut(&key) {
            let n = match what {
                Held::Connection => &mut e.connections,
                Held::EventStream => &mut e.streams,
                Held::CommitWait => &mut e.waits,
            };
            *n = n.saturating_sub(1);
        }
    }

    /// Account `bytes` more of buffered request body to the client, or `false` over its share.
    pub fn add_body_bytes(&self, ip: Option<IpAddr>, bytes: usize) -> bool {
        let Some(key) = ip.map(ClientKey::of).filter(|k| self.limited(*k)) else { return true };
        let cap = self.config.body_buffer_bytes_per_client_max;
        self.with_entry(key, |e, _| {
            if e.body_bytes.saturating_add(bytes) > cap {
                return false;
            }
            e.body_bytes += bytes;
            true
        })
    }

    pub fn sub_body_bytes(&self, ip: Option<IpAddr>, bytes: usize) {
        let Some(key) = ip.map(ClientKey::of).filter(|k| self.limited(*k)) else { return };
        if let Some(e) = lock(&self.table).entries.get_mut(&key) {
            e.body_bytes = e.body_bytes.saturating_sub(bytes);
        }
    }

    /// The request rate limit: `Ok(delay)` admits the request after `delay` (zero within the burst; a
    /// client slightly over its rate is slowed down rather than refused, up to `request_delay_max`),
    /// `Err(retry_after)` refuses it.
    pub fn admit_request(&self, ip: Option<IpAddr>) -> Result<Duration, Duration> {
        let rate = f64::from(self.config.requests_per_client_per_sec);
        let Some(key) = ip.map(ClientKey::of).filter(|k| self.limited(*k)) else { return Ok(Duration::ZERO) };
        if rate <= 0.0 {
            return Ok(Duration::ZERO);
        }
        let burst = self.burst();
        let delay_max = self.config.request_delay_max.as_secs_f64();
        self.with_entry(key, |e, now| {
            let elapsed = now.saturating_duration_since(e.refilled_at).as_secs_f64();
            e.tokens = (e.tokens + elapsed * rate).min(burst);
            e.refilled_at = now;
            // Waiting for a token: (1 - tokens) / rate seconds.
            let wait = ((1.0 - e.tokens) / rate).max(0.0);
            if wait > delay_max {
                return Err(Duration::from_secs_f64(wait - delay_max).max(Duration::from_secs(1)));
            }
            e.tokens -= 1.0;
            Ok(Duration::from_secs_f64(wait))
        })
    }

    /// Count a refusal and WARN about it (rate-limited per reason).
    pub fn refused(&self, why: Refusal, ip: Option<IpAddr>) {
        self.metrics.on_api_refused(why.label());
        let now = Instant::now();
        let suppressed = {
            let mut w = lock(&self.warns);
            let state = w.entry(why).or_insert(WarnState { last: None, suppressed: 0 });
            if state.last.is_some_and(|t| now.saturating_duration_since(t) < WARN_EVERY) {
                state.suppressed += 1;
                return;
            }
            state.last = Some(now);
            std::mem::take(&mut state.suppressed)
        };
        let client = ip.map_or_else(|| "unknown".to_string(), |ip| ClientKey::of(ip).to_string());
        tracing::warn!(
            client = %client,
            reason = why.label(),
            limit = %why.limit(&self.config),
            suppressed_since_last_warning = suppressed,
            "API refused a client: {} (limit {}); {} more refusals for this reason in the last {} s not logged",
            why.label(),
            why.limit(&self.config),
            suppressed,
            WARN_EVERY.as_secs()
        );
    }

    /// Entries in the table (for tests).
    pub fn len(&self) -> usize {
        lock(&self.table).entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One connection, event stream or commit wait held by a client; released when dropped.
pub struct ClientHold {
    clients: Arc<Clients>,
    key: Option<ClientKey>,
    what: Held,
}

impl Drop for ClientHold {
    fn drop(&mut self) {
        if let Some(key) = self.key {
            self.clients.release(key, self.what);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn clients(config: ApiConfig) -> Arc<Clients> {
        Arc::new(Clients::new(config, Arc::new(Metrics::new())))
    }

    #[test]
    fn caps_are_per_client_and_released_on_drop() {
        let c = clients(ApiConfig { connections_per_client_max: 2, ..ApiConfig::default() });
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let h1 = c.hold(Some(a), Held::Connection).unwrap();
        let _h2 = c.hold(Some(a), Held::Connection).unwrap();
        assert!(c.hold(Some(a), Held::Connection).is_none());
        assert!(c.hold(Some(b), Held::Connection).is_some(), "another client is not affected");
        drop(h1);
        assert!(c.hold(Some(a), Held::Connection).is_some());
        // Unknown clients (router called directly) are not limited.
        let held: Vec<_> = (0..10).map(|_| c.hold(None, Held::Connection).unwrap()).collect();
        assert_eq!(held.len(), 10);
    }

    #[test]
    fn unlimited_clients_and_ipv6_prefixes() {
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let c =
            clients(ApiConfig { connections_per_client_max: 1, unlimited_clients: vec![a], ..ApiConfig::default() });
        let _held: Vec<_> = (0..5).map(|_| c.hold(Some(a), Held::Connection).unwrap()).collect();
        let x: IpAddr = "2001:db8::1".parse().unwrap();
        let y: IpAddr = "2001:db8::2".parse().unwrap();
        let _hx = c.hold(Some(x), Held::Connection).unwrap();
        assert!(c.hold(Some(y), Held::Connection).is_none(), "one /64 is one client");
        assert_eq!(ClientKey::of("::ffff:10.0.0.1".parse().unwrap()).to_string(), "10.0.0.1");
    }

    #[test]
    fn token_bucket_slows_then_refuses() {
        let c = clients(ApiConfig {
            requests_per_client_per_sec: 10,
            request_burst_per_client: 5,
            request_delay_max: Duration::from_millis(500),
            ..ApiConfig::default()
        });
        let a: IpAddr = "10.1.1.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(c.admit_request(Some(a)), Ok(Duration::ZERO));
        }
        // Then queued for a token at 10/s, up to 0.5 s of delay: about 5 more, then refused.
        let mut delayed = 0;
        while let Ok(d) = c.admit_request(Some(a)) {
            assert!(d <= Duration::from_millis(500));
            delayed += 1;
            assert!(delayed < 10);
        }
        assert!((4..=6).contains(&delayed), "{delayed}");
        assert_eq!(c.admit_request(Some("10.1.1.2".parse().unwrap())), Ok(Duration::ZERO));
    }

    #[test]
    fn idle_entries_are_pruned() {
        let c = clients(ApiConfig { connections_max: 4, ..ApiConfig::default() });
        for i in 0..5000u32 {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            c.admit_request(Some(ip)).unwrap();
        }
        assert!(c.len() <= 2048, "{}", c.len());
    }
}
