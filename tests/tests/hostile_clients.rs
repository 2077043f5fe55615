//! Hostile API clients against real `ledgerd` processes: one test per attack, each on its own 4-validator
//! localnet. The attacker connects from 127.0.0.1 to node 0's API; a legitimate client binds its socket to
//! 127.0.0.2 (another loopback address, so another client for the node's per-client limits). While the attack
//! runs, the legitimate client's `GET /status` and `POST /txs` must each be answered within
//! [`ANSWER_WITHIN`], node 0 must keep committing blocks, and its resident memory (VmRSS) must stay under
//! [`RSS_MAX_KB`]. Every test also checks that the node saw the attack: its refusal counter in `/metrics`
//! and its rate-limited WARN naming the client and the limit.
//!
//! Node 0 runs with shorter timeouts than the defaults (header/body read 2 s, write 2 s), so that what the
//! defaults do in 10-30 s happens within the test's time; every other limit is the default.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::{SignedTransaction, Transaction};
use tests::harness::{ApiClient, Localnet, wait_for};

/// Each answer to the legitimate client, under attack.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// Node 0's resident memory bound under attack (it idles around 40-60 MiB).
const RSS_MAX_KB: u64 = 300 * 1024;
/// Blocks node 0 must commit while the attack runs.
const BLOCKS_UNDER_ATTACK: u64 = 3;
/// One round of the legitimate client at most this often.
const PROBE_EVERY: Duration = Duration::from_millis(300);
/// The legitimate client's source address.
const LEGIT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// Dev accounts: the attacker signs with 0..=5, the legitimate client with 7.
const ACCOUNTS: usize = 8;
const LEGIT_ACCOUNT: usize = 7;

struct Net {
    lnet: Localnet,
    /// Node 0 through the legitimate client.
    legit: ApiClient,
    addr: SocketAddr,
    pid: u32,
    legit_nonce: u64,
}

fn start(extra: &[&str]) -> Result<Net> {
    let mut lnet = Localnet::create(4, ACCOUNTS)?;
    let args: Vec<String> = [
        "api.header_read_timeout_ms=2000",
        "api.body_read_timeout_ms=2000",
        "api.write_timeout_ms=2000",
        "storage.cache_capacity_mb=16",
    ]
    .iter()
    .chain(extra)
    .flat_map(|kv| ["--set".to_string(), kv.to_string()])
    .collect();
    lnet.add_start_args(0, &args);
    // No start-up watch of the double-sign guard: these tests are about the API, and the watch would add
    // its 6 s to every start.
    for i in 0..4 {
        lnet.add_start_args(i, &["--set".to_string(), "consensus.double_sign_watch_ms=0".to_string()]);
    }
    let t = Instant::now();
    lnet.start_all()?;
    lnet.wait_height(0, 1, Duration::from_secs(60))?;
    println!("localnet of 4 up and committing in {:?}", t.elapsed());
    let http = reqwest::blocking::Client::builder().local_address(LEGIT_IP).timeout(Duration::from_secs(10)).build()?;
    let base = lnet.manifest.nodes[0].api_url.clone();
    let legit = ApiClient::with_http(&base, http);
    let addr: SocketAddr = base.trim_start_matches("http://").parse()?;
    let pid = lnet.nodes[0].pid().ok_or_else(|| anyhow!("node 0 has no pid"))?;
    let key = lnet.account_key(LEGIT_ACCOUNT)?;
    let account = legit.get(&format!("/accounts/{}", key.public()))?;
    let legit_nonce = account.body["next_nonce"].as_u64().ok_or_else(|| anyhow!("{}", account.body))?;
    Ok(Net { lnet, legit, addr, pid, legit_nonce })
}

impl Net {
    fn tx(&self, from: usize, nonce: u64) -> Result<SignedTransaction> {
        let key = self.lnet.account_key(from)?;
        Ok(Transaction {
            chain_id: self.lnet.manifest.chain_id.clone(),
            sender: key.public(),
            recipient: self.lnet.manifest.accounts[(from + 1) % ACCOUNTS].address,
            amount: 1,
            fee: 1,
            nonce,
            expiry_height: 100_000,
            memo: String::new(),
        }
        .sign(&key))
    }

    fn height(&self) -> Result<u64> {
        self.legit.height()
    }

    /// One round of the legitimate client: `GET /status` and `POST /txs`, each timed.
    fn probe(&mut self, record: &mut Probes) -> Result<()> {
        let t = Instant::now();
        let status = self.legit.get("/status")?;
        record.status.push(t.elapsed());
        if status.status != 200 {
            bail!("GET /status answered {}: {}", status.status, status.body);
        }
        let tx = self.tx(LEGIT_ACCOUNT, self.legit_nonce)?;
        let t = Instant::now();
        let answer = self.legit.submit(&tx.encode())?;
        record.submit.push(t.elapsed());
        if answer.status != 200 {
            bail!("POST /txs answered {}: {}", answer.status, answer.body);
        }
        self.legit_nonce += 1;
        Ok(())
    }

    /// Probe until node 0 has committed [`BLOCKS_UNDER_ATTACK`] more blocks, checking every answer time
    /// and the RSS on the way.
    fn legit_under_attack(&mut self, attack: &str) -> Result<Probes> {
        let mut record = Probes::default();
        let from = self.height()?;
        let deadline = Duration::from_secs(45);
        let started = Instant::now();
        loop {
            let round = Instant::now();
            self.probe(&mut record).with_context(|| format!("legitimate client during {attack}"))?;
            record.rss_max_kb = record.rss_max_kb.max(rss_kb(self.pid)?);
            let h = self.height()?;
            if h >= from + BLOCKS_UNDER_ATTACK && record.status.len() >= 5 {
                record.blocks = h - from;
                break;
            }
            if started.elapsed() > deadline {
                bail!("node 0 committed {} blocks in {deadline:?} under {attack}", h - from);
            }
            // Pacing of the legitimate client (a few requests a second, as a user), not synchronisation.
            if let Some(rest) = PROBE_EVERY.checked_sub(round.elapsed()) {
                std::thread::sleep(rest);
            }
        }
        record.check(attack)?;
        Ok(record)
    }

    fn metric(&self, sample: &str) -> Result<f64> {
        let text = self.legit.get_text("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(sample).and_then(|r| r.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| anyhow!("{sample} not in /metrics"))
    }

    fn refused(&self, reason: &str) -> Result<f64> {
        self.metric(&format!("ledger_api_refused_total{{reason=\"{reason}\"}}"))
    }

    /// The node's WARN about `reason` names the attacker's address.
    fn warned(&self, reason: &str) -> Result<String> {
        wait_for(&format!("a WARN about {reason}"), Duration::from_secs(10), || {
            Ok(self.lnet.nodes[0]
                .log_lines("API refused a client")
                .into_iter()
                .find(|l| l.contains("WARN") && l.contains(reason) && l.contains("127.0.0.1") && l.contains("limit")))
        })
        .with_context(|| format!("node 0 log tail:\n{}", self.lnet.nodes[0].log_tail(10)))
    }
}

#[derive(Default, Debug)]
struct Probes {
    status: Vec<Duration>,
    submit: Vec<Duration>,
    rss_max_kb: u64,
    blocks: u64,
}

impl Probes {
    fn max(v: &[Duration]) -> Duration {
        v.iter().copied().max().unwrap_or_default()
    }

    fn check(&self, attack: &str) -> Result<()> {
        let (s, p) = (Self::max(&self.status), Self::max(&self.submit));
        if s > ANSWER_WITHIN || p > ANSWER_WITHIN {
            bail!("under {attack}: GET /status took up to {s:?}, POST /txs up to {p:?} (bound {ANSWER_WITHIN:?})");
        }
        if self.rss_max_kb > RSS_MAX_KB {
            bail!("under {attack}: node 0 RSS reached {} KiB (bound {RSS_MAX_KB} KiB)", self.rss_max_kb);
        }
        Ok(())
    }

    fn report(&self, attack: &str, extra: &str) {
        println!(
            "[{attack}] {} probes; GET /status max {:?}; POST /txs max {:?}; {} blocks committed under attack; node 0 RSS max {} MiB; {extra}",
            self.status.len(),
            Self::max(&self.status),
            Self::max(&self.submit),
            self.blocks,
            self.rss_max_kb / 1024,
        );
    }
}

fn rss_kb(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

/// An attack running on threads until dropped.
struct Attack {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Connections the attacker opened (including those the node closed at once).
    pub connects: Arc<AtomicU64>,
}

impl Attack {
    fn new() -> Attack {
        Attack { stop: Arc::new(AtomicBool::new(false)), threads: Vec::new(), connects: Arc::new(AtomicU64::new(0)) }
    }

    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>, Arc<AtomicU64>) + Send + 'static) {
        let (stop, connects) = (self.stop.clone(), self.connects.clone());
        self.threads.push(std::thread::spawn(move || f(stop, connects)));
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn connect(addr: SocketAddr, connects: &AtomicU64) -> Option<TcpStream> {
    connects.fetch_add(1, Ordering::Relaxed);
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_nodelay(true);
    Some(s)
}

/// Whether the node closed `s` (EOF or an error on a non-blocking peek).
fn closed_by_peer(s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    closed
}

/// Keep `n` sockets open; each round, `feed` every open one (e.g. drip a byte) and replace the ones the
/// node closed (at most `reconnects` per round, so the attacker does not only spin on connect).
fn hold_sockets(
    addr: SocketAddr,
    n: usize,
    stop: &AtomicBool,
    connects: &AtomicU64,
    round: Duration,
    mut open: impl FnMut(&mut TcpStream) -> bool,
    mut feed: impl FnMut(&mut TcpStream) -> bool,
) {
    let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    while !stop.load(Ordering::Relaxed) {
        let round_start = Instant::now();
        let mut reconnects = 0;
        for slot in socks.iter_mut() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let alive = match slot.as_mut() {
                Some(s) => !closed_by_peer(s) && feed(s),
                None => false,
            };
            if !alive && reconnects < 200 {
                reconnects += 1;
                *slot = connect(addr, connects).and_then(|mut s| open(&mut s).then_some(s));
            }
        }
        // Attack pacing (not synchronisation): one round per `round`.
        if let Some(rest) = round.checked_sub(round_start.elapsed()) {
            std::thread::sleep(rest);
        }
    }
}

#[test]
fn idle_connections() -> Result<()> {
    let mut net = start(&[])?;
    let mut attack = Attack::new();
    let addr = net.addr;
    attack.spawn(move |stop, connects| {
        hold_sockets(addr, 1100, &stop, &connects, Duration::from_millis(500), |_| true, |_| true)
    });
    wait_for("the node to refuse the attacker's extra connections", Duration::from_secs(20), || {
        Ok((net.refused("connections_per_client")? >= 100.0).then_some(()))
    })?;
    let probes = net.legit_under_attack("1100 idle connections")?;
    let timeouts = wait_for("idle connections closed by the header-read timeout", Duration::from_secs(20), || {
        let n = net.refused("header_timeout")?;
        Ok((n >= 64.0).then_some(n))
    })?;
    let open = net.metric("ledger_api_open_connections")?;
    assert!(open <= 64.0 + 4.0, "open connections {open}: the per-client cap holds");
    let warn = net.warned("connections_per_client")?;
    assert!(warn.contains("api.connections_per_client_max = 64"), "{warn}");
    net.warned("header_timeout")?;
    probes.report(
        "idle connections",
        &format!(
            "{} connects by the attacker; {} refused over the per-client cap; {timeouts} closed by the header-read timeout",
            attack.connects.load(Ordering::Relaxed),
            net.refused("connections_per_client")?
        ),
    );
    Ok(())
}

#[test]
fn slowloris_headers() -> Result<()> {
    let mut net = start(&[])?;
    let mut attack = Attack::new();
    let addr = net.addr;
    attack.spawn(move |stop, connects| {
        hold_sockets(
            addr,
            2000,
            &stop,
            &connects,
            Duration::from_millis(300),
            |s| s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Drip: ").is_ok(),
            |s| s.write_all(b"a").is_ok(),
        )
    });
    wait_for("slowloris connections closed by the header-read timeout", Duration::from_secs(20), || {
        Ok((net.refused("header_timeout")? >= 64.0).then_some(()))
    })?;
    let probes = net.legit_under_attack("2000 slowloris connections")?;
    let warn = net.warned("header_timeout")?;
    assert!(warn.contains("api.header_read_timeout_ms = 2000"), "{warn}");
    probes.report(
        "slowloris headers",
        &format!(
            "{} connects; {} closed by the header-read timeout; {} refused over the per-client cap",
            attack.connects.load(Ordering::Relaxed),
            net.refused("header_timeout")?,
            net.refused("connections_per_client")?
        ),
    );
    Ok(())
}

#[test]
fn slow_bodies() -> Result<()> {
    let mut net = start(&[])?;
    let mut attack = Attack::new();
    let addr = net.addr;
    let head = format!(
        "POST /txs HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n{{\"tx\":\""
    );
    attack.spawn(move |stop, connects| {
        hold_sockets(
            addr,
            520,
            &stop,
            &connects,
            Duration::from_millis(300),
            |s| s.write_all(head.as_bytes()).is_ok(),
            |s| s.write_all(b"00").is_ok(),
        )
    });
    wait_for("slow bodies cut off by the body-read timeout", Duration::from_secs(20), || {
        Ok((net.refused("body_timeout")? >= 32.0).then_some(()))
    })?;
    let probes = net.legit_under_attack("520 slow bodies")?;
    let overloaded = net.refused("overloaded")?;
    assert_eq!(overloaded, 0.0, "a slow body never holds a general request slot");
    let warn = net.warned("body_timeout")?;
    assert!(warn.contains("api.body_read_timeout_ms = 2000"), "{warn}");
    probes.report(
        "slow bodies",
        &format!(
            "{} connects; {} bodies cut off at the body-read timeout; 0 requests refused as overloaded",
            attack.connects.load(Ordering::Relaxed),
            net.refused("body_timeout")?
        ),
    );
    Ok(())
}

#[test]
fn wait_commit_flood() -> Result<()> {
    let mut net = start(&[])?;
    // Transactions that can never commit: each sender's nonce leaves a gap.
    let mut requests = Vec::new();
    for from in 0..6 {
        for gap in 2..=60 {
            let tx = net.tx(from, gap)?;
            let body = format!("{{\"tx\":\"{}\"}}", hex::encode(tx.encode()));
            requests.push(format!(
                "POST /txs?wait=commit&timeout_ms=25000 HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            ));
        }
    }
    let n_requests = requests.len();
    let mut attack = Attack::new();
    let addr = net.addr;
    let mut next = 0usize;
    attack.spawn(move |stop, connects| {
        hold_sockets(
            addr,
            1000,
            &stop,
            &connects,
            Duration::from_millis(200),
            |s| {
                next += 1;
                s.write_all(requests[next % requests.len()].as_bytes()).is_ok()
            },
            |_| true,
        )
    });
    wait_for("the commit-wait pool to refuse the flood", Duration::from_secs(20), || {
        Ok((net.refused("commit_waits")? >= 10.0).then_some(()))
    })?;
    let waiting = net.metric("ledger_api_commit_waits")?;
    assert!(waiting <= 32.0, "{waiting} waits held: the per-client share is 32");
    let probes = net.legit_under_attack("wait=commit flood")?;
    // A legitimate wait=commit still waits and commits.
    let tx = net.tx(LEGIT_ACCOUNT, net.legit_nonce)?;
    let t = Instant::now();
    let a = net.legit.post("/txs?wait=commit", &serde_json::json!({ "tx": hex::encode(tx.encode()) }))?;
    assert_eq!((a.status, a.body["status"].as_str()), (200, Some("committed")), "{}", a.body);
    let legit_wait = t.elapsed();
    net.legit_nonce += 1;
    assert_eq!(net.refused("overloaded")?, 0.0, "waits never hold general request slots");
    let warn = net.warned("commit_waits")?;
    assert!(warn.contains("api.commit_waits_per_client_max = 32"), "{warn}");
    probes.report(
        "wait=commit flood",
        &format!(
            "{n_requests} distinct gap transactions over {} connects; at most {waiting} waits held; {} waits refused (answered pending); a legitimate wait=commit committed in {legit_wait:?}",
            attack.connects.load(Ordering::Relaxed),
            net.refused("commit_waits")?
        ),
    );
    Ok(())
}

/// A socket whose receive buffer is as small as the kernel allows, so a stream nobody reads stalls the
/// node's writes quickly.
fn small_window_connect(addr: SocketAddr) -> Option<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, connect, setsockopt, socket, sockopt};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).ok()?;
    setsockopt(&fd, sockopt::RcvBuf, &1).ok()?;
    let SocketAddr::V4(v4) = addr else { return None };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(v4)).ok()?;
    Some(TcpStream::from(fd))
}

#[test]
fn non_reading_event_streams() -> Result<()> {
    // A small send buffer, so the node's writes to a client that reads nothing stall after ~64 KiB.
    let mut net = start(&["api.send_buffer_bytes=32768"])?;
    // History worth replaying: a few hundred transactions, so a replay from height 1 fills the window of a
    // client that reads nothing.
    let mut body = Vec::new();
    let via = &net.lnet.nodes[1].api;
    for from in 0..6 {
        let key = net.lnet.account_key(from)?;
        let nonce = via.get(&format!("/accounts/{}", key.public()))?.body["next_nonce"].as_u64().unwrap_or(0);
        for k in 0..60 {
            body.push(hex::encode(net.tx(from, nonce + k)?.encode()));
        }
    }
    let a = via.post("/txs/batch", &serde_json::json!({ "txs": body }))?;
    assert_eq!(a.status, 200, "{}", a.body);
    let last = net.tx(5, 0)?; // only for its sender: wait until the batch is committed
    let sender = last.tx().sender;
    wait_for("the batch committed", Duration::from_secs(60), || {
        let acc = via.get(&format!("/accounts/{sender}"))?;
        Ok((acc.body["nonce"].as_u64() >= Some(60)).then_some(()))
    })?;

    let mut attack = Attack::new();
    let addr = net.addr;
    attack.spawn(move |stop, connects| {
        let request = b"GET /events?from_height=1 HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut socks: Vec<TcpStream> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // Up to 300 streams open (the node lets 8 through and answers the rest 503), never read.
            socks.retain(|s| !closed_by_peer(s));
            while socks.len() < 300 && !stop.load(Ordering::Relaxed) {
                connects.fetch_add(1, Ordering::Relaxed);
                let Some(mut s) = small_window_connect(addr) else { break };
                if s.write_all(request).is_ok() {
                    socks.push(s);
                }
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    wait_for("extra streams refused per client", Duration::from_secs(20), || {
        Ok((net.refused("event_streams_per_client")? >= 50.0).then_some(()))
    })?;
    let open = net.metric("ledger_api_open_event_streams")?;
    assert!(open <= 8.0, "{open} streams open: the per-client cap is 8");
    // A legitimate client still gets a stream.
    let mut legit_stream = bind_connect(LEGIT_IP, net.addr)?;
    legit_stream.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")?;
    legit_stream.set_read_timeout(Some(ANSWER_WITHIN))?;
    let mut head = [0u8; 12];
    legit_stream.read_exact(&mut head)?;
    assert_eq!(&head, b"HTTP/1.1 200", "a legitimate event stream opens");
    let probes = net.legit_under_attack("300 non-reading event streams")?;
    let dropped = wait_for("non-reading streams dropped by the write timeout", Duration::from_secs(30), || {
        let n = net.refused("write_timeout")?;
        Ok((n >= 4.0).then_some(n))
    })?;
    let warn = net.warned("event_streams_per_client")?;
    assert!(warn.contains("api.event_streams_per_client_max = 8"), "{warn}");
    probes.report(
        "non-reading event streams",
        &format!(
            "{} stream requests; at most 8 open at once ({} refused 503 per client); {dropped} dropped by the write timeout",
            attack.connects.load(Ordering::Relaxed),
            net.refused("event_streams_per_client")?
        ),
    );
    Ok(())
}

/// A TCP connection from `local`.
fn bind_connect(local: IpAddr, to: SocketAddr) -> Result<TcpStream> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, SockaddrIn, bind, connect, socket};
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None)?;
    let (IpAddr::V4(l), SocketAddr::V4(t)) = (local, to) else { bail!("IPv4 only") };
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(std::net::SocketAddrV4::new(l, 0)))?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(t))?;
    Ok(TcpStream::from(fd))
}

#[test]
fn connection_flood_from_one_address() -> Result<()> {
    let mut net = start(&[])?;
    let mut attack = Attack::new();
    let addr = net.addr;
    let requests = Arc::new(AtomicU64::new(0));
    for _ in 0..3 {
        let requests = requests.clone();
        attack.spawn(move |stop, connects| {
            // Connect as fast as possible, keep up to 400 sockets, and send requests back to back on each.
            let mut socks: std::collections::VecDeque<TcpStream> = Default::default();
            let req = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n".repeat(20);
            while !stop.load(Ordering::Relaxed) {
                if let Some(mut s) = connect(addr, &connects) {
                    let _ = s.set_nonblocking(true);
                    if s.write(&req).is_ok() {
                        requests.fetch_add(20, Ordering::Relaxed);
                    }
                    socks.push_back(s);
                }
                if socks.len() > 400 {
                    socks.pop_front();
                }
                // Drain what the node answered so the request stream keeps going.
                let mut buf = [0u8; 16 * 1024];
                for s in socks.iter_mut().take(16) {
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                }
            }
        });
    }
    wait_for("the flood refused over the per-client cap", Duration::from_secs(20), || {
        Ok((net.refused("connections_per_client")? >= 1000.0).then_some(()))
    })?;
    let probes = net.legit_under_attack("connection flood from 127.0.0.1")?;
    let open = net.metric("ledger_api_open_connections")?;
    assert!(open <= 64.0 + 4.0, "open connections {open}");
    let warn = net.warned("connections_per_client")?;
    assert!(warn.contains("suppressed"), "{warn}");
    probes.report(
        "connection flood",
        &format!(
            "{} connects and {} requests sent by the attacker; {} connections refused over the per-client cap; {} requests rate-limited",
            attack.connects.load(Ordering::Relaxed),
            requests.load(Ordering::Relaxed),
            net.refused("connections_per_client")?,
            net.refused("rate_limited")?
        ),
    );
    Ok(())
}
