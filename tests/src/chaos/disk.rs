//! Disk faults on a stopped node's data directory, and the way back an operator would take.
//!
//! A home's `data/` holds `db/` (sled: the log file `db`, `conf`, snapshots `snap.*`, `blobs/`),
//! `signer_state.json`, `high_water.json` and `LOCK`. The faults here damage the sled log (inverted bytes
//! at a chosen offset, a cut tail, a file cut in half, with or without its snapshots), delete the signer
//! state, or delete the database with `ledgerd reset-data`.
//!
//! What a node may do when it is started on damaged data (docs/reliability.md, I9, I11, I12):
//! - refuse with a clear error: a non-zero exit that is not a panic (exit code 101, "panicked at"), and
//!   its reason in its log (`database corrupt: ...`, or the rewind refusal naming its high-water mark);
//! - start at a height at or above its high-water mark (the damage hit nothing it needed);
//! - never start below its high-water mark without saying so: a validator refuses until its operator
//!   passes `--accept-rewind`, and then an ERROR line names both heights.
//!
//! [`restart_and_recover`] starts the node, holds what it did against those rules, and when it refused,
//! recovers it as an operator would: `--accept-rewind` alone for a rewound database, `ledgerd reset-data`
//! then `--accept-rewind` for a corrupt one (or when asked to prefer it), and waits until it has caught up.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use super::Cluster;
use super::checker::{Violation, violation};
use super::rng::Rng;
use crate::harness::{ledgerd_bin, wait_for};

/// Bytes inverted per flip, spread over a window of [`FLIP_WINDOW`] bytes.
const FLIP_BYTES: usize = 64;
const FLIP_WINDOW: u64 = 4096;
/// Bytes a tail cut removes.
const TAIL_BYTES: u64 = 4096;
/// How long a start on damaged data may take to either refuse or answer (sled recovery of a long log
/// without its snapshot reads the whole file).
const FIRST_ANSWER: Duration = Duration::from_secs(60);
/// How long a node resyncing from an empty or rewound database may take to reach the others.
pub const RESYNC: Duration = Duration::from_secs(120);

/// Damage to the sled log file `data/db/db`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbDamage {
    /// Invert 64 bytes spread over the 4 KiB window that starts at `at_permille`/1000 of the file (1000:
    /// the last 4 KiB), as silent media corruption would.
    Flip { at_permille: u16 },
    /// Cut the last 4 KiB off, as a torn write at the end of the log would.
    TruncateTail,
    /// Cut the file to half its length.
    TruncateHalf,
}

impl fmt::Display for DbDamage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbDamage::Flip { at_permille: 1000 } => write!(f, "flip tail"),
            DbDamage::Flip { at_permille } => write!(f, "flip at {:.1}%", f64::from(*at_permille) / 10.0),
            DbDamage::TruncateTail => write!(f, "cut tail"),
            DbDamage::TruncateHalf => write!(f, "cut in half"),
        }
    }
}

/// What a disk fault does to a stopped node's data directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// Damage the sled log; with `drop_snapshots`, also delete its `snap.*` files (sled then recovers
    /// from the whole log).
    Db { damage: DbDamage, drop_snapshots: bool },
    /// Delete `signer_state.json`: the look-back guard and the start-up watch must protect the validator.
    DeleteSignerState,
    /// `ledgerd reset-data`: the database is deleted, the signer state and high-water mark are kept.
    ResetData,
    /// `ledgerd reset-data` and `signer_state.json` deleted: only the keys and the high-water mark remain.
    ResetDataAndSignerState,
}

impl fmt::Display for DiskFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskFault::Db { damage, drop_snapshots: false } => write!(f, "{damage}"),
            DiskFault::Db { damage, drop_snapshots: true } => write!(f, "{damage}, snapshots deleted"),
            DiskFault::DeleteSignerState => write!(f, "signer_state.json deleted"),
            DiskFault::ResetData => write!(f, "reset-data"),
            DiskFault::ResetDataAndSignerState => write!(f, "reset-data and signer_state.json deleted"),
        }
    }
}

impl DiskFault {
    /// A seeded choice among every disk fault (flip offsets anywhere in the file).
    pub fn random(rng: &mut Rng) -> DiskFault {
        let drop_snapshots = rng.below(2) == 0;
        match rng.below(8) {
            0 | 1 => {
                DiskFault::Db { damage: DbDamage::Flip { at_permille: rng.range(0, 1000) as u16 }, drop_snapshots }
            }
            2 => DiskFault::Db { damage: DbDamage::TruncateTail, drop_snapshots },
            3 => DiskFault::Db { damage: DbDamage::TruncateHalf, drop_snapshots },
            4 | 5 => DiskFault::DeleteSignerState,
            6 => DiskFault::ResetData,
            _ => DiskFault::ResetDataAndSignerState,
        }
    }
}

fn data_dir(home: &Path) -> PathBuf {
    home.join("data")
}

/// The height in `data/high_water.json`, if there is one.
pub fn high_water(home: &Path) -> Result<Option<u64>> {
    let path = data_dir(home).join("high_water.json");
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    v["height"].as_u64().map(Some).ok_or_else(|| anyhow!("{} has no height: {text}", path.display()))
}

/// Apply `fault` to the data directory of the stopped node at `home`; says what was done.
pub fn apply(home: &Path, fault: DiskFault, seed: u64) -> Result<String> {
    let data = data_dir(home);
    match fault {
        DiskFault::Db { damage, drop_snapshots } => {
            let mut what = damage_log(&data.join("db").join("db"), damage, seed)?;
            if drop_snapshots {
                let gone = delete_snapshots(&data.join("db"))?;
                what.push_str(&format!(", {gone} snapshot file(s) deleted"));
            }
            Ok(what)
        }
        DiskFault::DeleteSignerState => delete_signer_state(&data),
        DiskFault::ResetData => reset_data(home),
        DiskFault::ResetDataAndSignerState => Ok(format!("{}; {}", reset_data(home)?, delete_signer_state(&data)?)),
    }
}

fn delete_signer_state(data: &Path) -> Result<String> {
    let path = data.join("signer_state.json");
    match fs::remove_file(&path) {
        Ok(()) => Ok(format!("deleted {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(format!("{} was absent", path.display())),
        Err(e) => Err(e).with_context(|| format!("deleting {}", path.display())),
    }
}

fn delete_snapshots(db: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(db).with_context(|| format!("reading {}", db.display()))? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with("snap.") {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}

fn damage_log(file: &Path, damage: DbDamage, seed: u64) -> Result<String> {
    let len = fs::metadata(file).with_context(|| format!("{}", file.display()))?.len();
    if len < 2 * FLIP_WINDOW {
        bail!("{} is only {len} bytes", file.display());
    }
    match damage {
        DbDamage::TruncateTail => {
            fs::OpenOptions::new().write(true).open(file)?.set_len(len - TAIL_BYTES)?;
            Ok(format!("log cut from {len} to {} bytes", len - TAIL_BYTES))
        }
        DbDamage::TruncateHalf => {
            fs::OpenOptions::new().write(true).open(file)?.set_len(len / 2)?;
            Ok(format!("log cut from {len} to {} bytes", len / 2))
        }
        DbDamage::Flip { at_permille } => {
            let mut bytes = fs::read(file)?;
            let start = (len * u64::from(at_permille.min(1000)) / 1000).min(len - FLIP_WINDOW);
            let mut rng = Rng::new(seed);
            for _ in 0..FLIP_BYTES {
                let at = start + rng.below(FLIP_WINDOW as usize) as u64;
                bytes[at as usize] ^= 0xFF;
            }
            fs::write(file, &bytes)?;
            Ok(format!("inverted {FLIP_BYTES} bytes in [{start}, {}) of the {len}-byte log", start + FLIP_WINDOW))
        }
    }
}

/// `ledgerd reset-data --home HOME`, as an operator runs it (the node must be stopped).
pub fn reset_data(home: &Path) -> Result<String> {
    let out = Command::new(ledgerd_bin()?)
        .arg("reset-data")
        .arg("--home")
        .arg(home)
        // ledgerd refuses unknown LEDGERD_* variables; this one only tells the harness where the binary is.
        .env_remove("LEDGERD_BIN")
        .output()
        .context("running ledgerd reset-data")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!("ledgerd reset-data --home {} failed ({}): {}", home.display(), out.status, text.trim());
    }
    let first = text.lines().next().unwrap_or("").trim().to_string();
    Ok(format!("ledgerd reset-data: {first}"))
}

/// Why a node refused to start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// `database corrupt: ...` (sled panicked, or a value or the tail failed its checks).
    Corrupt,
    /// Below its high-water mark: the validator waits for `--accept-rewind`.
    Rewound,
    /// Any other clear error.
    Other,
}

/// What one start did.
#[derive(Clone, Debug)]
pub enum Start {
    /// It answered `/status`; `tip` is the height its storage verified at open.
    Answered { tip: u64 },
    /// It exited.
    Refused { status: ExitStatus, why: Refusal, message: String },
}

impl fmt::Display for Start {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Start::Answered { tip } => write!(f, "started at height {tip}"),
            Start::Refused { status, why, message } => {
                let short: String = message.chars().take(160).collect();
                write!(f, "refused ({why:?}, {status}): {short}")
            }
        }
    }
}

/// What [`restart_and_recover`] saw and did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The high-water mark before the start.
    pub mark: Option<u64>,
    /// The first start, as configured (no operator flag).
    pub first: Start,
    /// Operator steps taken after a refusal, and what each start did.
    pub steps: Vec<String>,
    /// Height reached and how long after the first start the node had caught up (None: it did not).
    pub caught_up: Option<(u64, Duration)>,
}

impl Outcome {
    /// One line for the summary.
    pub fn describe(&self) -> String {
        let mark = self.mark.map_or("none".to_string(), |m| m.to_string());
        let mut s = format!("mark {mark}; {}", self.first);
        for step in &self.steps {
            s.push_str(&format!(" -> {step}"));
        }
        match self.caught_up {
            Some((h, d)) => s.push_str(&format!(" -> caught up at {h} in {:.1}s", d.as_secs_f64())),
            None => s.push_str(" -> did not catch up"),
        }
        s
    }

    pub fn refused(&self) -> bool {
        matches!(self.first, Start::Refused { .. })
    }
}

/// The lines node `i` logged since `offset` bytes into its log, without terminal colour codes.
fn log_since(cluster: &Cluster, i: usize, offset: u64) -> String {
    let bytes = fs::read(cluster.net.nodes[i].log_path()).unwrap_or_default();
    strip_ansi(&String::from_utf8_lossy(bytes.get(offset as usize..).unwrap_or_default()))
}

/// `text` without ANSI escape sequences (the log's colours: `ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn log_len(cluster: &Cluster, i: usize) -> u64 {
    fs::metadata(cluster.net.nodes[i].log_path()).map_or(0, |m| m.len())
}

/// The height in the `storage verified ... height=N` line of `log`.
fn verified_tip(log: &str) -> Option<u64> {
    let line = log.lines().find(|l| l.contains("storage verified"))?;
    let rest = &line[line.find("height=")? + "height=".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// Lines reporting a panic (the default hook's "panicked at").
pub fn panic_lines(log: &str) -> Vec<String> {
    log.lines().filter(|l| l.contains("panicked at")).map(str::to_string).collect()
}

/// Start node `i` with `extra` arguments and wait until it answers `/status` or exits; checks that an
/// exit is a clear, non-panicking refusal.
fn start_once(
    cluster: &mut Cluster,
    i: usize,
    extra: &[&str],
    violations: &mut Vec<Violation>,
) -> Result<(Start, String)> {
    let offset = log_len(cluster, i);
    cluster.start_node(i, extra)?;
    let api = cluster.api(i);
    enum Seen {
        Exited(ExitStatus),
        Answered(u64),
    }
    let seen = {
        let net = &mut cluster.net;
        wait_for(&format!("node{i} to answer or exit"), FIRST_ANSWER, || {
            if let Some(status) = net.nodes[i].exit_status() {
                return Ok(Some(Seen::Exited(status)));
            }
            Ok(api.height().ok().map(Seen::Answered))
        })?
    };
    let log = log_since(cluster, i, offset);
    for line in panic_lines(&log) {
        violations.push(violation("I9", format!("node{i} panicked on damaged data: {line}")));
    }
    let start = match seen {
        Seen::Answered(h) => Start::Answered { tip: verified_tip(&log).unwrap_or(h) },
        Seen::Exited(status) => {
            if status.code() == Some(101) {
                violations.push(violation("I9", format!("node{i} exited with the panic code 101: {}", tail(&log, 10))));
            }
            if status.success() {
                violations.push(violation("I12", format!("node{i} exited 0 on damaged data: {}", tail(&log, 10))));
            }
            let message = log.lines().rev().find(|l| l.starts_with("error:")).map(str::to_string).unwrap_or_default();
            if message.is_empty() {
                violations.push(violation(
                    "I12",
                    format!("node{i} exited ({status}) without an error line: {}", tail(&log, 10)),
                ));
            }
            let why = if message.contains("database corrupt") {
                Refusal::Corrupt
            } else if message.contains("--accept-rewind") && message.contains("below the height") {
                Refusal::Rewound
            } else {
                Refusal::Other
            };
            Start::Refused { status, why, message }
        }
    };
    Ok((start, log))
}

fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// An ERROR line of this start naming both heights of a rewind (`stored=` and `committed=`).
fn rewind_error_logged(log: &str, tip: u64, mark: u64) -> bool {
    log.lines().any(|l| {
        l.contains("ERROR") && l.contains(&format!("stored={tip}")) && l.contains(&format!("committed={mark}"))
    })
}

/// Start node `i` after a disk fault, hold its behaviour against I9 and I12, recover it as an operator
/// would when it refuses (`prefer_reset`: recover a rewind with `reset-data` too, not `--accept-rewind`
/// alone), and wait until it has caught up with the others. Violations go to `violations`; an `Err` is a
/// harness failure.
pub fn restart_and_recover(
    cluster: &mut Cluster,
    i: usize,
    prefer_reset: bool,
    violations: &mut Vec<Violation>,
) -> Result<Outcome> {
    let home = cluster.net.nodes[i].home.clone();
    let mark = high_water(&home)?;
    let t0 = Instant::now();
    let (first, log) = start_once(cluster, i, &[], violations)?;
    let mut steps = Vec::new();
    match &first {
        Start::Answered { tip } => {
            // Every node of these clusters is a validator: below its mark it must not have started at all.
            if let Some(m) = mark.filter(|m| tip < m) {
                let loud = rewind_error_logged(&log, *tip, m);
                violations.push(violation(
                    "I12",
                    format!(
                        "validator node{i} started at height {tip}, below its high-water mark {m}, without --accept-rewind (rewind ERROR logged: {loud})"
                    ),
                ));
            }
        }
        Start::Refused { why, message, .. } => {
            if *why == Refusal::Rewound {
                match mark {
                    Some(m) if message.contains(&format!("below the height {m}")) => {}
                    _ => violations.push(violation(
                        "I12",
                        format!("node{i} refused a rewind without naming its mark {mark:?}: {message}"),
                    )),
                }
            }
            let mut reset = *why != Refusal::Rewound || prefer_reset;
            loop {
                if reset {
                    steps.push(reset_data(&home)?);
                }
                let (start, log) = start_once(cluster, i, &["--accept-rewind"], violations)?;
                steps.push(format!("start --accept-rewind: {start}"));
                match start {
                    Start::Answered { tip } => {
                        if let Some(m) = mark.filter(|m| tip < *m)
                            && !rewind_error_logged(&log, tip, m)
                        {
                            violations.push(violation(
                                "I12",
                                format!(
                                    "node{i} started with --accept-rewind at height {tip} below its mark {m} without an ERROR naming both heights"
                                ),
                            ));
                        }
                        break;
                    }
                    Start::Refused { message, .. } if !reset => {
                        // --accept-rewind alone was not enough (the rewound data is damaged too): delete it.
                        cluster.say(format!("node{i}: --accept-rewind alone refused ({message}); reset-data"));
                        reset = true;
                    }
                    Start::Refused { status, message, .. } => {
                        violations.push(violation(
                            "recovery",
                            format!(
                                "node{i} refuses to start after reset-data with --accept-rewind ({status}): {message}"
                            ),
                        ));
                        return Ok(Outcome { mark, first, steps, caught_up: None });
                    }
                }
            }
        }
    }
    // Catch up with the others.
    let others: Vec<usize> = (0..cluster.n()).filter(|&j| j != i).collect();
    let target = others.iter().filter_map(|&j| cluster.api(j).height().ok()).max().unwrap_or(0);
    let caught_up = match cluster.wait_heights(&[i], target, RESYNC) {
        Ok(_) => Some((cluster.api(i).height().unwrap_or(target), t0.elapsed())),
        Err(e) => {
            violations.push(violation("I6", format!("node{i} did not catch up to {target} within {RESYNC:?}: {e:#}")));
            None
        }
    };
    Ok(Outcome { mark, first, steps, caught_up })
}

/// The signer mode node `i` reports in `/status` (`watching`, `suspect`, `active`, `halted`, `full_node`).
pub fn signer_mode(cluster: &Cluster, i: usize) -> Result<String> {
    let status = cluster.api(i).status()?;
    status["signer"]["mode"].as_str().map(str::to_string).ok_or_else(|| anyhow!("no signer.mode in {status}"))
}

/// Wait until node `i` signs again (mode `active`); how long it took.
pub fn wait_active(cluster: &Cluster, i: usize, timeout: Duration) -> Result<Duration> {
    let t0 = Instant::now();
    wait_for(&format!("node{i} to sign again (signer.mode active)"), timeout, || {
        let mode = signer_mode(cluster, i)?;
        match mode.as_str() {
            "active" => Ok(Some(())),
            "halted" => bail!("node{i} halted its signer: {}", cluster.api(i).status()?["signer"]),
            _ => Ok(None),
        }
    })?;
    Ok(t0.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flips_and_cuts_hit_the_right_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("db");
        let len = 64 * 1024u64;
        fs::write(&file, vec![0u8; len as usize]).expect("write");
        damage_log(&file, DbDamage::Flip { at_permille: 500 }, 1).expect("flip");
        let bytes = fs::read(&file).expect("read");
        let changed: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i] != 0).collect();
        assert!(!changed.is_empty() && changed.len() <= FLIP_BYTES);
        assert!(changed.iter().all(|&i| (len / 2..len / 2 + FLIP_WINDOW).contains(&(i as u64))), "{changed:?}");
        damage_log(&file, DbDamage::Flip { at_permille: 1000 }, 2).expect("flip tail");
        let bytes = fs::read(&file).expect("read");
        assert!((len - FLIP_WINDOW..len).any(|i| bytes[i as usize] != 0));
        damage_log(&file, DbDamage::TruncateTail, 0).expect("cut");
        assert_eq!(fs::metadata(&file).expect("meta").len(), len - TAIL_BYTES);
        damage_log(&file, DbDamage::TruncateHalf, 0).expect("half");
        assert_eq!(fs::metadata(&file).expect("meta").len(), (len - TAIL_BYTES) / 2);
        assert_eq!(verified_tip("x INFO node::run: storage verified chain_id=c height=42\n"), Some(42));
        let coloured = "\u{1b}[31mERROR\u{1b}[0m x \u{1b}[3mstored\u{1b}[0m\u{1b}[2m=\u{1b}[0m5 \u{1b}[3mcommitted\u{1b}[0m\u{1b}[2m=\u{1b}[0m9";
        assert!(rewind_error_logged(&strip_ansi(coloured), 5, 9));
    }
}
