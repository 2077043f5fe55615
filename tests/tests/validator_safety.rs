//! Validator safety against operator mistakes (issue: validator safety), with real `ledgerd` processes:
//! another validator's key, a key outside the validator set, a missing key file, a lost signer file, a
//! second process with the same key (twins), `reset-data` with a resync, and `signer export/import`.
//!
//! Every wait has a deadline and polls an observable condition (HTTP answers, log lines, files, exit
//! codes); nothing sleeps to synchronise. A (re)started validator of a multi-validator net watches for
//! `consensus.double_sign_watch_ms` (6 s by default) before it signs, so the waits for signing are long.
//! At most five `ledgerd` processes run per test.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use tests::chaos::checker;
use tests::harness::{ApiClient, CmdOutput, Localnet, run_ledgerd, wait_for};

const START: Duration = Duration::from_secs(90);
const PROGRESS: Duration = Duration::from_secs(90);
const STOP: Duration = Duration::from_secs(20);
/// A one-shot command that should answer at once; a `start` that wrongly keeps running is killed then.
const ONE_SHOT: Duration = Duration::from_secs(30);

/// Prints a test's wall time when it ends (passed or not).
struct Timed(&'static str, std::time::Instant);

impl Timed {
    fn start(name: &'static str) -> Timed {
        Timed(name, std::time::Instant::now())
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        println!("{}: {:.1} s", self.0, self.1.elapsed().as_secs_f64());
    }
}

fn started(validators: usize, accounts: usize) -> Result<Localnet> {
    let mut net = Localnet::create(validators, accounts)?;
    net.start_all()?;
    Ok(net)
}

/// The validator address (`ldg…`) of localnet node `i`.
fn address(net: &Localnet, i: usize) -> String {
    net.manifest.nodes[i].validator.to_address_string()
}

fn home(net: &Localnet, i: usize) -> PathBuf {
    net.nodes[i].home.clone()
}

fn signer_file(home: &Path) -> PathBuf {
    home.join("data").join("signer_state.json")
}

fn high_water_file(home: &Path) -> PathBuf {
    home.join("data").join("high_water.json")
}

fn read_json(path: &Path) -> Result<Value> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON: {text}", path.display()))
}

fn arg(p: &Path) -> String {
    p.display().to_string()
}

/// `/status` `signer.mode`.
fn signer_mode(api: &ApiClient) -> Result<String> {
    let status = api.status()?;
    status["signer"]["mode"].as_str().map(str::to_string).ok_or_else(|| anyhow!("status has no signer.mode: {status}"))
}

fn sign_floor(api: &ApiClient) -> Result<u64> {
    let status = api.status()?;
    status["signer"]["sign_floor"].as_u64().ok_or_else(|| anyhow!("status has no signer.sign_floor: {status}"))
}

/// The first height above `above` whose certificate (as node `via` stores it) carries `who`'s signature.
fn wait_signed_above(net: &Localnet, via: usize, who: &str, above: u64, timeout: Duration) -> Result<u64> {
    let api = net.nodes[via].api.clone();
    let mut next = above + 1;
    wait_for(
        &format!("{who} to sign a certificate above height {above} (seen by {})", net.nodes[via].name),
        timeout,
        || {
            let top = api.height()?;
            while next <= top {
                let block = api.get(&format!("/blocks/{next}"))?;
                if block.status != 200 {
                    bail!("GET /blocks/{next} answered {}: {}", block.status, block.body);
                }
                let signers = block.body["signers"].as_array().ok_or_else(|| anyhow!("no signers: {}", block.body))?;
                if signers.iter().any(|s| s.as_str() == Some(who)) {
                    return Ok(Some(next));
                }
                next += 1;
            }
            Ok(None)
        },
    )
}

/// The index of validator `who` in the validator set (`GET /validators`).
fn validator_index(api: &ApiClient, who: &str) -> Result<u64> {
    let a = api.get("/validators")?;
    a.body["validators"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["address"].as_str() == Some(who)))
        .and_then(|v| v["index"].as_u64())
        .ok_or_else(|| anyhow!("{who} is not in /validators: {}", a.body))
}

/// Height -> signature (hex) of validator `index` in the commit certificates `from..=to` that `api` holds.
fn signatures_of(api: &ApiClient, index: u64, from: u64, to: u64) -> Result<BTreeMap<u64, String>> {
    let mut out = BTreeMap::new();
    for h in from..=to {
        let a = api.get(&format!("/blocks/{h}/commit"))?;
        if a.status != 200 {
            bail!("GET /blocks/{h}/commit answered {}: {}", a.status, a.body);
        }
        let sigs = a.body["signatures"].as_array().ok_or_else(|| anyhow!("no signatures at {h}: {}", a.body))?;
        if let Some(s) = sigs.iter().find(|s| s["validator_index"].as_u64() == Some(index)) {
            let sig = s["signature"].as_str().ok_or_else(|| anyhow!("signature is not a string: {s}"))?;
            out.insert(h, sig.to_string());
        }
    }
    Ok(out)
}

/// The lowest height the listed nodes report.
fn min_height(net: &Localnet, which: &[usize]) -> Result<u64> {
    which.iter().map(|&i| net.nodes[i].api.height()).collect::<Result<Vec<_>>>()?.into_iter().min().context("no nodes")
}

/// The value of `name=N` in a log line.
fn log_field(line: &str, name: &str) -> Result<u64> {
    let prefix = format!("{name}=");
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&prefix))
        .and_then(|v| v.trim_matches('"').parse().ok())
        .ok_or_else(|| anyhow!("no numeric {name}= in log line: {line}"))
}

/// The first line of node `i`'s log containing `needle`, waiting for it.
fn wait_log_line(net: &Localnet, i: usize, needle: &str, timeout: Duration) -> Result<String> {
    wait_for(&format!("{} to log {needle:?}", net.nodes[i].name), timeout, || {
        Ok(net.nodes[i].log_lines(needle).into_iter().next())
    })
    .with_context(|| format!("log tail of {}:\n{}", net.nodes[i].name, net.nodes[i].log_tail(40)))
}

/// Wait until node `i` reports at least `height`, failing at once (with its exit status and log) if its
/// process exits.
fn wait_height_alive(net: &mut Localnet, i: usize, height: u64, timeout: Duration) -> Result<u64> {
    let name = net.nodes[i].name.clone();
    // An exit ends the wait at once (`Some(Err)`); `wait_for` would retry an error until its deadline.
    let reached = wait_for(&format!("{name} to reach height {height}"), timeout, || {
        if let Some(status) = net.nodes[i].exit_status() {
            return Ok(Some(Err(anyhow!("{name} exited with {status}"))));
        }
        Ok(net.nodes[i].api.height().ok().filter(|&h| h >= height).map(Ok))
    })
    .and_then(|r| r);
    reached.with_context(|| format!("log tail of {name}:\n{}", net.nodes[i].log_tail(15)))
}

fn assert_no_evidence(net: &Localnet) {
    let evidence = net.evidence_lines();
    assert!(evidence.is_empty(), "evidence of double signing was logged: {evidence:#?}");
}

fn assert_refused(out: &CmdOutput, needles: &[&str]) {
    assert!(!out.timed_out, "the command kept running instead of refusing: {out}");
    assert!(out.code.is_some_and(|c| c != 0), "the command did not fail: {out}");
    for n in needles {
        assert!(out.stderr.contains(n), "stderr lacks {n:?}: {out}");
    }
}

/// Case 1: a home that ran as validator V, started with validator W's key, finds V's signer file and
/// refuses (non-zero exit, the file named with both keys); the file is untouched and the others go on.
#[test]
fn start_with_another_validators_key_is_refused_and_the_chain_goes_on() -> Result<()> {
    let _t = Timed::start("start_with_another_validators_key_is_refused_and_the_chain_goes_on");
    let mut net = started(4, 1)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let (mine, other) = (address(&net, 3), address(&net, 0));
    // node3 runs normally once: it signs, so its home holds its own signer file.
    wait_signed_above(&net, 0, &mine, 0, PROGRESS).with_context(|| net.diagnostics(&[3]))?;
    net.stop(3, STOP)?;
    let file = signer_file(&home(&net, 3));
    let before = fs::read(&file).context("node3 has a signer file after signing")?;
    assert_eq!(read_json(&file)?["validator"].as_str(), Some(mine.as_str()));

    let h0 = net.nodes[0].api.height()?;
    let other_key = home(&net, 0).join("validator_key.json");
    let out = run_ledgerd(
        &["start", "--home", &arg(&home(&net, 3)), "--set", &format!("validator_key_file={}", arg(&other_key))],
        &[],
        ONE_SHOT,
    )?;
    println!("refused start: {out}");
    assert_refused(&out, &["error: ", &format!("was written for validator {mine}, but this node's key is {other}")]);
    assert_eq!(fs::read(&file)?, before, "the refused start changed the signer file");

    // Three of four validators keep committing.
    net.wait_all(&[0, 1, 2], h0 + 3, PROGRESS).with_context(|| net.diagnostics(&[0, 1, 2]))?;
    assert_no_evidence(&net);
    Ok(())
}

/// Case 2: a validator key outside the genesis validator set: the node warns, follows the chain as a full
/// node, and says why on `/status`.
#[test]
fn key_outside_the_validator_set_warns_and_runs_as_a_full_node() -> Result<()> {
    let _t = Timed::start("key_outside_the_validator_set_warns_and_runs_as_a_full_node");
    let mut net = Localnet::create(4, 1)?;
    let outsider_home = net.dir.join("outsider");
    let out = run_ledgerd(&["init", "--moniker", "outsider", "--home", &arg(&outsider_home)], &[], ONE_SHOT)?;
    assert!(out.success(), "ledgerd init: {out}");
    let outsider_key = outsider_home.join("validator_key.json");
    let outsider = read_json(&outsider_key)?["address"].as_str().context("key file has an address")?.to_string();
    for i in 0..3 {
        net.start(i)?;
    }
    net.start_once(3, &["--set".into(), format!("validator_key_file={}", arg(&outsider_key))])?;

    let warn = wait_log_line(&net, 3, "is not in the current validator set", START)?;
    assert!(warn.contains("WARN"), "not a WARN line: {warn}");
    assert!(warn.contains(&outsider), "the line does not name the key: {warn}");
    let status = wait_for("node3 to answer /status", START, || Ok(net.nodes[3].api.status().ok()))?;
    assert!(status["validator"].is_null(), "validator should be null: {status}");
    let reason = status["validator_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("is not in the current validator set") && reason.contains(&outsider),
        "validator_reason: {status}"
    );
    // It keeps its signer guard (a governance change may add it while it runs) but signs nothing here.
    assert_ne!(status["signer"]["mode"].as_str(), Some("halted"), "{status}");

    // The three validators commit, and node3 follows them.
    net.wait_all(&[0, 1, 2], 3, START).with_context(|| net.diagnostics(&[0, 1, 2]))?;
    let target = net.nodes[0].api.height()?;
    net.wait_height(3, target, PROGRESS)?;
    net.assert_same_chain(&[0, 3], target)?;
    // No certificate carries its key: the set never held it.
    let commit = net.nodes[0].api.get(&format!("/blocks/{target}/commit"))?.body;
    assert!(!commit.to_string().contains(&outsider), "an outsider signed: {commit}");
    assert_no_evidence(&net);
    Ok(())
}

/// Case 3: `validator_key_file` set explicitly (flag, environment, config file) to a missing file:
/// refused, never started as a full node by mistake.
#[test]
fn explicit_missing_validator_key_file_is_refused() -> Result<()> {
    let _t = Timed::start("explicit_missing_validator_key_file_is_refused");
    let net = Localnet::create(4, 1)?;
    let h = home(&net, 0);
    let missing = net.dir.join("no-such-key.json");
    let needle = format!("validator_key_file is set to {}, but there is no such file", arg(&missing));

    let by_flag = run_ledgerd(
        &["start", "--home", &arg(&h), "--set", &format!("validator_key_file={}", arg(&missing))],
        &[],
        ONE_SHOT,
    )?;
    println!("by flag: {by_flag}");
    assert_refused(&by_flag, &["error: ", &needle]);

    let by_env =
        run_ledgerd(&["start", "--home", &arg(&h)], &[("LEDGERD_VALIDATOR_KEY_FILE", &arg(&missing))], ONE_SHOT)?;
    println!("by environment: {by_env}");
    assert_refused(&by_env, &["error: ", &needle]);

    // The localnet's config.toml names the key file explicitly; remove the file it names.
    let config = fs::read_to_string(h.join("config.toml"))?;
    assert!(config.lines().any(|l| l.trim_start().starts_with("validator_key_file")), "{config}");
    fs::remove_file(h.join("validator_key.json"))?;
    let by_config = run_ledgerd(&["start", "--home", &arg(&h)], &[], ONE_SHOT)?;
    println!("by config file: {by_config}");
    assert_refused(&by_config, &["error: ", "but there is no such file"]);
    Ok(())
}

/// Case 4: a validator restarted without its signer file (but with its chain) finds its last signature in
/// its stored certificates, never signs at or below it, changes no certificate there, and signs again.
#[test]
fn lost_signer_file_restart_looks_back_and_signs_only_above_the_floor() -> Result<()> {
    let _t = Timed::start("lost_signer_file_restart_looks_back_and_signs_only_above_the_floor");
    let mut net = started(4, 1)?;
    let v = 3;
    let me = address(&net, v);
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let first = wait_signed_above(&net, 0, &me, 0, PROGRESS).with_context(|| net.diagnostics(&[v]))?;
    wait_signed_above(&net, 0, &me, first, PROGRESS)?;
    net.stop(v, STOP)?;
    let h = home(&net, v);
    let old = read_json(&signer_file(&h))?;
    let last_signed = old["last_signed"]["height"].as_u64().with_context(|| format!("last_signed: {old}"))?;
    let stop_tip = read_json(&high_water_file(&h))?["height"].as_u64().context("high-water height")?;
    fs::remove_file(signer_file(&h))?;

    // The others go on without it; then its signatures in their certificates are recorded.
    net.wait_all(&[0, 1, 2], stop_tip.max(last_signed) + 2, PROGRESS)?;
    let index = validator_index(&net.nodes[0].api, &me)?;
    let snap_to = min_height(&net, &[0, 1, 2])?;
    let before: Vec<BTreeMap<u64, String>> =
        (0..3).map(|i| signatures_of(&net.nodes[i].api, index, 1, snap_to)).collect::<Result<_>>()?;
    let signed_before = before.iter().filter_map(|m| m.keys().max().copied()).max().unwrap_or(0);

    net.start(v)?;
    let warn = wait_log_line(&net, v, "no signer state although the chain has history", START)?;
    assert!(warn.contains("WARN"), "not a WARN line: {warn}");
    let look_back = wait_log_line(&net, v, "look-back: this key's last signature in a stored certificate", START)?;
    assert!(look_back.contains("INFO"), "not an INFO line: {look_back}");
    let floor_logged = log_field(&look_back, "height")?;
    // The look-back reads exactly its own stored certificates, which it held before the restart.
    wait_for("node3 to answer /status", START, || Ok(net.nodes[v].api.status().ok()))?;
    let own = signatures_of(&net.nodes[v].api, index, 1, stop_tip)?;
    let own_last = own.keys().max().copied().unwrap_or(0);
    assert_eq!(floor_logged, own_last, "look-back height vs its last signature in its own certificates {own:?}");
    assert!(floor_logged > 0, "it had signed before the stop");

    // It signs again, at a height committed after the restart.
    let resumed = wait_signed_above(&net, 0, &me, snap_to, PROGRESS).with_context(|| net.diagnostics(&[0, v]))?;
    let floor = sign_floor(&net.nodes[v].api)?;
    println!(
        "last_signed before stop {last_signed}, stored tip {stop_tip}, last certificate with its signature: \
         own {own_last}, anywhere {signed_before}; look-back {floor_logged}; sign_floor now {floor}; signs again at {resumed}"
    );
    assert!(floor >= floor_logged, "sign_floor {floor} below the look-back height {floor_logged}");
    assert!(resumed > floor_logged.max(last_signed).max(signed_before), "signed again at {resumed}");
    // No certificate at or below the floor holds a signature of it that was not there before the restart.
    for (i, old) in before.iter().enumerate() {
        let now = signatures_of(&net.nodes[i].api, index, 1, floor.max(snap_to))?;
        for (height, sig) in &now {
            if *height <= floor {
                assert_eq!(old.get(height), Some(sig), "{}: a new signature of {me} at {height}", net.nodes[i].name);
            }
        }
    }
    // Its new signer file records only signatures above the floor.
    let new = read_json(&signer_file(&h))?;
    assert_eq!(new["validator"].as_str(), Some(me.as_str()));
    let new_last = new["last_signed"]["height"].as_u64().with_context(|| format!("{new}"))?;
    assert!(new_last > floor_logged, "new signer state {new}");
    assert!(new["sign_floor"].as_u64().unwrap_or(0) >= floor_logged, "{new}");
    assert_no_evidence(&net);
    Ok(())
}

/// Case 5: a second process with a running validator's key (twins). One of the two stops signing
/// (halted) and says so loudly; nobody double-signs; the chain stays correct and keeps committing.
#[test]
fn twin_with_the_same_key_halts_without_double_signing() -> Result<()> {
    let _t = Timed::start("twin_with_the_same_key_halts_without_double_signing");
    let mut net = started(4, 1)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let me = address(&net, 0);
    wait_signed_above(&net, 1, &me, 0, PROGRESS).with_context(|| net.diagnostics(&[0]))?;
    let twin = net.add_full_node()?;
    fs::copy(home(&net, 0).join("validator_key.json"), home(&net, twin).join("validator_key.json"))?;
    net.start(twin)?;

    let pair = [0, twin];
    let halted = wait_for("node0 or its twin to halt", PROGRESS, || {
        for &i in &pair {
            if signer_mode(&net.nodes[i].api).ok().as_deref() == Some("halted") {
                return Ok(Some(i));
            }
        }
        Ok(None)
    })
    .with_context(|| net.diagnostics(&pair))?;
    println!("halted: {}", net.nodes[halted].name);
    let api = net.nodes[halted].api.clone();
    let error = wait_log_line(&net, halted, "another process signs with this validator's key", STOP)?;
    assert!(error.contains("ERROR"), "not an ERROR line: {error}");
    if halted == twin {
        // Still watching when it first saw the original's message: suspect (a WARN) before halted.
        let suspect =
            net.nodes[twin].log_lines("signed with this validator's key was seen that this process did not sign");
        assert!(
            suspect.first().is_some_and(|l| l.contains("WARN")),
            "no suspect WARN line before the halt: {suspect:?}"
        );
    }
    let survivor = if halted == twin { 0 } else { twin };
    println!("{} is {}", net.nodes[survivor].name, signer_mode(&net.nodes[survivor].api)?);
    assert_eq!(api.metric("ledger_signer_halted")?, 1.0);
    assert!(api.metric("ledger_own_key_foreign_messages_total")? >= 1.0);
    let health = api.get("/health")?;
    assert_eq!(health.status, 503, "{}", health.body);
    assert!(health.body.to_string().contains("signer_halted"), "{}", health.body);

    // The chain keeps committing, the halted one stays halted, and nobody signed twice.
    let h = min_height(&net, &[0, 1, 2, 3])?;
    net.wait_all(&[0, 1, 2, 3, twin], h + 5, PROGRESS).with_context(|| net.diagnostics(&[0, 1, 2, 3, twin]))?;
    assert_eq!(signer_mode(&api)?, "halted");
    assert_no_evidence(&net);
    let genesis = ledger_core::Genesis::from_json(&fs::read_to_string(net.dir.join("genesis.json"))?)
        .map_err(|e| anyhow!("{e}"))?;
    let apis: Vec<(String, ApiClient)> = net.nodes.iter().map(|n| (n.name.clone(), n.api.clone())).collect();
    let common = min_height(&net, &[0, 1, 2, 3, twin])?;
    let (_, violations) = checker::check_all(&genesis, &apis, common, &[])?;
    assert!(violations.is_empty(), "checker up to {common}: {violations:#?}");
    assert_no_evidence(&net);
    Ok(())
}

/// Case 6: `reset-data` deletes the database only (refused while the node runs); a plain start then
/// refuses the rewound database; `--accept-rewind` resyncs, and the validator signs again only above what
/// it signed before.
#[test]
fn reset_data_keeps_the_guard_and_the_resynced_validator_signs_only_above_it() -> Result<()> {
    let _t = Timed::start("reset_data_keeps_the_guard_and_the_resynced_validator_signs_only_above_it");
    let mut net = started(4, 1)?;
    let v = 3;
    let me = address(&net, v);
    let h = home(&net, v);
    let db = h.join("data").join("db");
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let first = wait_signed_above(&net, 0, &me, 0, PROGRESS).with_context(|| net.diagnostics(&[v]))?;

    let out = run_ledgerd(&["reset-data", "--home", &arg(&h)], &[], ONE_SHOT)?;
    println!("reset-data while running: {out}");
    let pid = net.nodes[v].pid().context("the node's pid")?;
    assert_refused(&out, &[&format!("is locked: this home is already in use by PID {pid}")]);
    // Starting a second node on the running home says the same, before it tries the API port.
    let out = run_ledgerd(&["start", "--home", &arg(&h)], &[], ONE_SHOT)?;
    assert_refused(&out, &[&format!("is locked: this home is already in use by PID {pid}")]);
    assert!(!out.stderr.contains("Address already in use") && !out.stderr.contains("WouldBlock"), "{out}");
    assert!(db.is_dir(), "reset-data deleted the database of a running node");
    let running_at = net.nodes[v].api.height()?;
    net.wait_height(v, running_at + 2, PROGRESS)?;
    wait_signed_above(&net, 0, &me, first, PROGRESS)?;

    net.stop(v, STOP)?;
    let signer_before = fs::read(signer_file(&h))?;
    let hw_before = fs::read(high_water_file(&h))?;
    let old = read_json(&signer_file(&h))?;
    let last_signed = old["last_signed"]["height"].as_u64().with_context(|| format!("last_signed: {old}"))?;
    let old_floor = old["sign_floor"].as_u64().context("sign_floor")?;
    let mark = read_json(&high_water_file(&h))?["height"].as_u64().context("high-water height")?;

    let out = run_ledgerd(&["reset-data", "--home", &arg(&h)], &[], ONE_SHOT)?;
    println!("reset-data: {out}");
    assert!(out.success(), "reset-data of a stopped node: {out}");
    assert!(out.stdout.contains("kept"), "{out}");
    assert!(out.stdout.contains("signer_state.json") && out.stdout.contains("high_water.json"), "{out}");
    assert!(!db.exists(), "the database is still there");
    assert_eq!(fs::read(signer_file(&h))?, signer_before, "reset-data changed the signer state");
    assert_eq!(fs::read(high_water_file(&h))?, hw_before, "reset-data changed the high-water mark");

    let out = run_ledgerd(&["start", "--home", &arg(&h)], &[], ONE_SHOT)?;
    println!("start after reset-data: {out}");
    assert_refused(&out, &["below the height", "--accept-rewind"]);
    assert_eq!(fs::read(signer_file(&h))?, signer_before, "the refused start changed the signer state");
    assert_eq!(fs::read(high_water_file(&h))?, hw_before, "the refused start changed the high-water mark");

    // The others go on; their certificates are recorded before the resync.
    net.wait_all(&[0, 1, 2], mark.max(last_signed) + 2, PROGRESS)?;
    let index = validator_index(&net.nodes[0].api, &me)?;
    let snap_to = min_height(&net, &[0, 1, 2])?;
    let before: Vec<BTreeMap<u64, String>> =
        (0..3).map(|i| signatures_of(&net.nodes[i].api, index, 1, snap_to)).collect::<Result<_>>()?;
    let signed_before = before.iter().filter_map(|m| m.keys().max().copied()).max().unwrap_or(0);

    net.start_once(v, &["--accept-rewind".to_string()])?;
    wait_height_alive(&mut net, v, snap_to, PROGRESS)?;
    let resumed = wait_signed_above(&net, 0, &me, snap_to, PROGRESS).with_context(|| net.diagnostics(&[0, v]))?;
    let floor = sign_floor(&net.nodes[v].api)?;
    println!(
        "last_signed before reset {last_signed} (floor {old_floor}), high-water {mark}, last certificate with its \
         signature {signed_before}; sign_floor now {floor}; signs again at {resumed}"
    );
    assert!(floor >= old_floor, "the guard was lowered: sign_floor {floor} < {old_floor}");
    assert!(resumed > last_signed.max(mark).max(signed_before), "signed again at {resumed}");
    for (i, old) in before.iter().enumerate() {
        let now = signatures_of(&net.nodes[i].api, index, 1, snap_to)?;
        assert_eq!(&now, old, "{}: its signatures in certificates up to {snap_to} changed", net.nodes[i].name);
    }
    let new = read_json(&signer_file(&h))?;
    assert!(new["last_signed"]["height"].as_u64().unwrap_or(0) > last_signed, "{new}");
    assert!(read_json(&high_water_file(&h))?["height"].as_u64().unwrap_or(0) >= mark);
    let top = min_height(&net, &[0, 1, 2, 3])?;
    net.assert_same_chain(&[0, 1, 2, 3], top)?;
    assert_no_evidence(&net);
    Ok(())
}

/// Copy the top-level files of a home (config, keys; no data, no log) into a new home beside it.
fn copy_home_files(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if entry.file_type()?.is_file() && name != "ledgerd.log" {
            fs::copy(entry.path(), to.join(&name))?;
        }
    }
    Ok(())
}

/// Case 7: `signer export` of a stopped validator (refused while it runs) and `signer import`: into a
/// copy of its home without a signer file it gives the same document; into its own home, which has
/// signed further since, it changes nothing; into another validator's home it is refused.
#[test]
fn signer_export_and_import_only_raise_the_guard_of_the_same_key() -> Result<()> {
    let _t = Timed::start("signer_export_and_import_only_raise_the_guard_of_the_same_key");
    let mut net = started(4, 1)?;
    let v = 1;
    let me = address(&net, v);
    let h = home(&net, v);
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    wait_signed_above(&net, 0, &me, 0, PROGRESS).with_context(|| net.diagnostics(&[v]))?;

    let out = run_ledgerd(&["signer", "export", "--home", &arg(&h)], &[], ONE_SHOT)?;
    assert_refused(&out, &["is locked: this home is already in use by PID"]);
    assert!(out.stdout.is_empty(), "export printed while refusing: {out}");

    net.stop(v, STOP)?;
    let out = run_ledgerd(&["signer", "export", "--home", &arg(&h)], &[], ONE_SHOT)?;
    assert!(out.success(), "export: {out}");
    let exported_text = out.stdout.clone();
    let exported: Value = serde_json::from_str(&exported_text).with_context(|| format!("export: {out}"))?;
    assert_eq!(exported, read_json(&signer_file(&h))?, "the export is not the signer file's document");
    assert_eq!(exported["validator"].as_str(), Some(me.as_str()));
    assert_eq!(exported["chain_id"].as_str(), Some(net.manifest.chain_id.as_str()));
    let exported_last = exported["last_signed"]["height"].as_u64().with_context(|| format!("{exported}"))?;
    let export_file = net.dir.join("node1-signer-export.json");
    fs::write(&export_file, &exported_text)?;

    // A copy of the home without a signer file takes it whole.
    let copy = net.dir.join("node1-copy");
    copy_home_files(&h, &copy)?;
    assert!(!signer_file(&copy).exists());
    let out = run_ledgerd(&["signer", "import", &arg(&export_file), "--home", &arg(&copy)], &[], ONE_SHOT)?;
    assert!(out.success(), "import into the copy: {out}");
    assert_eq!(read_json(&signer_file(&copy))?, exported);
    let out = run_ledgerd(&["signer", "export", "--home", &arg(&copy)], &[], ONE_SHOT)?;
    assert!(out.success(), "export of the copy: {out}");
    assert_eq!(out.stdout, exported_text, "the copy's export differs from the original's");

    // The home itself signs further; then the older document changes nothing there.
    net.start(v)?;
    let resume_from = net.nodes[0].api.height()?.max(exported_last);
    wait_signed_above(&net, 0, &me, resume_from, PROGRESS).with_context(|| net.diagnostics(&[0, v]))?;
    net.stop(v, STOP)?;
    let further = fs::read(signer_file(&h))?;
    let further_doc = read_json(&signer_file(&h))?;
    assert!(further_doc["last_signed"]["height"].as_u64().unwrap_or(0) > exported_last, "{further_doc}");
    let out = run_ledgerd(&["signer", "import", &arg(&export_file), "--home", &arg(&h)], &[], ONE_SHOT)?;
    println!("import of an older document: {out}");
    assert!(out.success(), "import of an older document: {out}");
    assert!(out.stdout.contains("nothing changed"), "{out}");
    assert_eq!(fs::read(signer_file(&h))?, further, "importing an older document changed the signer file");

    // Another validator's home refuses it, and keeps its own file.
    let other = 2;
    net.stop(other, STOP)?;
    let other_home = home(&net, other);
    let other_before = fs::read(signer_file(&other_home))?;
    let out = run_ledgerd(&["signer", "import", &arg(&export_file), "--home", &arg(&other_home)], &[], ONE_SHOT)?;
    println!("import into another validator's home: {out}");
    assert_refused(
        &out,
        &[&format!("was written for validator {me}, but this node's key is {}", address(&net, other))],
    );
    assert_eq!(fs::read(signer_file(&other_home))?, other_before, "the refused import changed the file");
    assert_no_evidence(&net);
    Ok(())
}
