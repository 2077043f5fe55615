//! End-to-end tests of the `genesis` binary: localnet layout, the draft workflow and every bad input.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use ledger_core::{Genesis, Keypair, PublicKey, keyfile};
use serde_json::Value;

fn genesis_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_genesis")).args(args).output().expect("run genesis binary")
}

fn ok(args: &[&str]) -> String {
    let out = genesis_cmd(args);
    assert!(out.status.success(), "genesis {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run, expect a non-zero exit, one line of error on stderr (no panic), containing `needle`.
fn fails(args: &[&str], needle: &str) -> String {
    let out = genesis_cmd(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "genesis {args:?} should fail, stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_ne!(out.status.code(), Some(101), "genesis {args:?} panicked: {stderr}");
    assert!(!stderr.contains("panicked"), "genesis {args:?} panicked: {stderr}");
    assert!(stderr.contains(needle), "genesis {args:?}: expected {needle:?} in stderr: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "error should be one line: {stderr}");
    stderr
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("json")
}

fn keys_of(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

fn set(keys: &[&str]) -> BTreeSet<String> {
    keys.iter().map(|k| k.to_string()).collect()
}

fn addr(i: u8) -> String {
    Keypair::from_seed(&[i; 32]).public().to_address_string()
}

#[cfg(unix)]
fn assert_mode_0600(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{}", path.display());
}

#[cfg(not(unix))]
fn assert_mode_0600(_: &Path) {}

#[test]
fn localnet_n4_k100_writes_every_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    ok(&["localnet", "--validators", "4", "--accounts", "100", "--out", s(&dir), "--base-port", "30000"]);

    // Genesis: 4 validators of power 10, 100 accounts, and `validate` accepts it.
    let genesis =
        Genesis::from_json(&std::fs::read_to_string(dir.join("genesis.json")).expect("read")).expect("valid genesis");
    assert_eq!(genesis.chain_id, "localnet");
    assert_eq!(genesis.validators.len(), 4);
    assert!(genesis.validators.iter().all(|v| v.power == 10));
    assert_eq!(genesis.accounts.len(), 100);
    let out = ok(&["validate", s(&dir.join("genesis.json"))]);
    assert!(out.contains(&genesis.hash().to_hex()), "{out}");

    // Manifest: exactly the keys of docs/home-layout.md.
    let manifest = read_json(&dir.join("localnet.json"));
    assert_eq!(keys_of(&manifest), set(&["chain_id", "genesis_hash", "nodes", "accounts"]));
    assert_eq!(manifest["chain_id"], "localnet");
    assert_eq!(manifest["genesis_hash"], genesis.hash().to_hex());
    let nodes = manifest["nodes"].as_array().expect("nodes");
    let accounts = manifest["accounts"].as_array().expect("accounts");
    assert_eq!(nodes.len(), 4);
    assert_eq!(accounts.len(), 100);
    let canonical = std::fs::canonicalize(&dir).expect("canonical");

    let p2p_addrs: Vec<String> = nodes.iter().map(|n| n["p2p_addr"].as_str().expect("p2p_addr").to_string()).collect();
    for (i, node) in nodes.iter().enumerate() {
        assert_eq!(keys_of(node), set(&["name", "home", "api_url", "p2p_addr", "validator"]));
        assert_eq!(node["name"], format!("node{i}"));
        let home = canonical.join(format!("node{i}"));
        assert_eq!(node["home"], s(&home), "home is absolute");
        let api_port = 30000 + 2 * i;
        let p2p_port = api_port + 1;
        assert_eq!(node["api_url"], format!("http://127.0.0.1:{api_port}"));

        // Validator key: plaintext key file, 0600, in the genesis and the manifest.
        let vkey_path = home.join("validator_key.json");
        assert_mode_0600(&vkey_path);
        let vkey = keyfile::from_plaintext_json(&std::fs::read_to_string(&vkey_path).expect("read"))
            .expect("validator key parses");
        assert_eq!(genesis.validators[i].public_key, vkey.public());
        assert_eq!(genesis.validators[i].moniker, format!("node{i}"));
        assert_eq!(node["validator"], vkey.public().to_address_string());

        // p2p key: 0600, its peer id is the one in the manifest's multiaddr.
        let pkey_path = home.join("p2p_key.json");
        assert_mode_0600(&pkey_path);
        let pkey_json = read_json(&pkey_path);
        assert_eq!(keys_of(&pkey_json), set(&["version", "kind", "secret_key", "peer_id"]));
        let (_, peer_id) =
            genesis::parse_p2p_key_json(&std::fs::read_to_string(&pkey_path).expect("read")).expect("p2p key");
        assert!(peer_id.starts_with("12D3KooW"), "{peer_id}");
        assert_eq!(p2p_addrs[i], format!("/ip4/127.0.0.1/tcp/{p2p_port}/p2p/{peer_id}"));

        // config.toml: the contract's keys, ports and bootstrap peers = every other node.
        let config: toml::Table =
            std::fs::read_to_string(home.join("config.toml")).expect("read").parse().expect("toml");
        assert_eq!(config["moniker"].as_str(), Some(format!("node{i}").as_str()));
        assert_eq!(config["genesis_file"].as_str(), Some("../genesis.json"));
        assert_eq!(config["validator_key_file"].as_str(), Some("validator_key.json"));
        assert_eq!(config["p2p_key_file"].as_str(), Some("p2p_key.json"));
        let p2p = config["p2p"].as_table().expect("[p2p]");
        assert_eq!(p2p["listen_addr"].as_str(), Some(format!("/ip4/127.0.0.1/tcp/{p2p_port}").as_str()));
        let peers: Vec<&str> =
            p2p["bootstrap_peers"].as_array().expect("peers").iter().map(|p| p.as_str().expect("str")).collect();
        let others: Vec<&str> =
            p2p_addrs.iter().enumerate().filter(|(k, _)| *k != i).map(|(_, a)| a.as_str()).collect();
        assert_eq!(peers, others);
        assert_eq!(config["api"]["listen_addr"].as_str(), Some(format!("127.0.0.1:{api_port}").as_str()));
    }
    let peer_ids: BTreeSet<&str> = p2p_addrs.iter().map(|a| a.rsplit('/').next().expect("peer id")).collect();
    assert_eq!(peer_ids.len(), 4, "peer ids are distinct");

    // Accounts: 100 key files that parse, match the allocations and warn that they are unsafe.
    for (j, account) in accounts.iter().enumerate() {
        assert_eq!(keys_of(account), set(&["address", "key_file"]));
        let key_file = canonical.join("accounts").join(format!("account{j}.json"));
        assert_eq!(account["key_file"], s(&key_file));
        assert_mode_0600(&key_file);
        let text = std::fs::read_to_string(&key_file).expect("read");
        assert!(text.contains("UNSAFE"), "{text}");
        let key = keyfile::from_plaintext_json(&text).expect("account key parses");
        assert_eq!(account["address"], key.public().to_address_string());
        assert_eq!(genesis.accounts[j].address, key.public());
        assert!(genesis.accounts[j].balance > 0);
    }
    assert_eq!(std::fs::read_dir(dir.join("accounts")).expect("accounts dir").count(), 100);

    // The library reads back what the binary wrote.
    let read = genesis::read_manifest(&dir).expect("manifest");
    assert_eq!(read.genesis_hash, genesis.hash());
    assert_eq!(read.nodes.len(), 4);
}

fn localnet_hash(seed: &str) -> String {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    ok(&["localnet", "--validators", "2", "--accounts", "3", "--out", s(&dir), "--seed", seed]);
    read_json(&dir.join("localnet.json"))["genesis_hash"].as_str().expect("hash").to_string()
}

#[test]
fn localnet_is_deterministic_in_the_seed() {
    assert_eq!(localnet_hash("7"), localnet_hash("7"));
    assert_ne!(localnet_hash("7"), localnet_hash("8"));
}

#[test]
fn localnet_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("net");
    let d = s(&dir);
    ok(&["localnet", "--validators", "3", "--accounts", "2", "--out", d]);
    std::fs::write(dir.join("keep.txt"), "mine").expect("write");
    std::fs::create_dir_all(dir.join("node2").join("data")).expect("data dir");
    fails(&["localnet", "--validators", "1", "--accounts", "1", "--out", d], "pass --force");

    ok(&["localnet", "--validators", "1", "--accounts", "1", "--out", d, "--force"]);
    let manifest = genesis::read_manifest(&dir).expect("manifest");
    assert_eq!(manifest.nodes.len(), 1);
    assert!(!dir.join("node2").exists(), "old node homes are removed on reset");
    assert!(!dir.join("accounts").join("account1.json").exists());
    assert_eq!(std::fs::read_to_string(dir.join("keep.txt")).expect("kept"), "mine");
}

#[test]
fn localnet_bad_arguments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path().join("net");
    let d = s(&d);
    fails(&["localnet", "--validators", "0", "--out", d], "--validators must be between 1 and 256");
    fails(&["localnet", "--validators", "257", "--out", d], "--validators must be between 1 and 256");
    fails(&["localnet", "--accounts", "100001", "--out", d], "--accounts must be at most 100000");
    fails(&["localnet", "--chain-id", "Bad Id", "--out", d], "chain id \"Bad Id\" is invalid");
    fails(&["localnet", "--validators", "4", "--base-port", "65530", "--out", d], "needs ports up to 65537");
    assert!(!tmp.path().join("net").exists(), "nothing written on bad arguments");
}

#[test]
fn draft_workflow_new_add_validate_show() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("genesis.json");
    let f = s(&file);
    ok(&["new", "--chain-id", "testnet-1", "--out", f, "--genesis-time-ms", "1000", "--min-fee", "2"]);
    fails(&["validate", f], "validator set is empty");
    fails(&["new", "--chain-id", "testnet-1", "--out", f], "already exists");

    ok(&["add-validator", f, "--address", &addr(1), "--power", "5", "--moniker", "alice"]);
    let key_file = tmp.path().join("bob.json");
    std::fs::write(&key_file, keyfile::to_plaintext_json(&Keypair::from_seed(&[2; 32]), None)).expect("write");
    ok(&["add-validator", f, "--key-file", s(&key_file), "--power", "7", "--moniker", "bob"]);
    ok(&["add-account", f, &addr(3), "1000"]);
    ok(&["add-account", f, &addr(4), "234"]);
    ok(&["validate", f]);

    let shown = ok(&["show", f]);
    let genesis = Genesis::from_json(&std::fs::read_to_string(&file).expect("read")).expect("valid");
    assert_eq!(genesis.params.min_fee, 2);
    assert_eq!(genesis.genesis_time_ms, 1000);
    for needle in [
        "testnet-1".to_string(),
        genesis.hash().to_hex(),
        "total power 12".to_string(),
        addr(1),
        "alice".to_string(),
        addr(2),
        "accounts:       2".to_string(),
        "total supply:   1234".to_string(),
        "genesis time:   1970-01-01T00:00:01.000Z (1000 ms)".to_string(),
    ] {
        assert!(shown.contains(&needle), "show lacks {needle:?}: {shown}");
    }
}

/// A draft with one validator and one account, for the bad-input cases.
fn draft(dir: &Path) -> String {
    let file = dir.join("genesis.json");
    let f = s(&file).to_string();
    ok(&["new", "--chain-id", "bad-input", "--out", &f]);
    ok(&["add-validator", &f, "--address", &addr(1), "--power", "5", "--moniker", "alice"]);
    ok(&["add-account", &f, &addr(2), "10"]);
    f
}

#[test]
fn rejects_duplicate_validator() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    fails(
        &["add-validator", &f, "--address", &addr(1), "--power", "5", "--moniker", "again"],
        "is already in the genesis",
    );
    // A hand-edited file with the validator twice is refused by validate too.
    let mut g: Value = read_json(Path::new(&f));
    let v = g["validators"][0].clone();
    g["validators"].as_array_mut().expect("array").push(v);
    std::fs::write(&f, g.to_string()).expect("write");
    fails(&["validate", &f], "appears more than once");
}

#[test]
fn rejects_zero_power() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    fails(&["add-validator", &f, "--address", &addr(9), "--power", "0", "--moniker", "zero"], "zero voting power");
}

#[test]
fn rejects_malformed_address() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    let mut typo: Vec<char> = addr(9).chars().collect();
    typo[10] = if typo[10] == '0' { '1' } else { '0' };
    let typo: String = typo.into_iter().collect();
    fails(&["add-account", &f, &typo, "5"], "checksum does not match");
    fails(&["add-validator", &f, "--address", &typo, "--power", "1", "--moniker", "x"], "checksum does not match");
    fails(&["add-account", &f, "ldg1234", "5"], "address must be 75 characters");
}

#[test]
fn rejects_weak_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    // The identity point (y = 1) is of small order; its address has a correct checksum.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = PublicKey(identity).to_address_string();
    fails(&["add-validator", &f, "--address", &weak, "--power", "1", "--moniker", "weak"], "weak");
    fails(&["add-account", &f, &weak, "1"], "weak");
}

#[test]
fn rejects_supply_overflow() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    let max = u64::MAX.to_string();
    fails(&["add-account", &f, &addr(9), &max], "total supply overflows u64");
}

#[test]
fn rejects_unknown_json_field() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = draft(tmp.path());
    let mut g: Value = read_json(Path::new(&f));
    g["surprise"] = Value::from(1);
    std::fs::write(&f, g.to_string()).expect("write");
    fails(&["validate", &f], "unknown field `surprise`");
    fails(&["show", &f], "unknown field `surprise`");
    fails(&["add-account", &f, &addr(9), "1"], "unknown field `surprise`");
}

#[test]
fn rejects_missing_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let missing = tmp.path().join("nope.json");
    fails(&["validate", s(&missing)], "cannot read");
    fails(&["show", s(&missing)], "cannot read");
    fails(&["add-account", s(&missing), &addr(9), "1"], "cannot read");
    fails(&["add-validator", s(&missing), "--key-file", s(&missing), "--power", "1", "--moniker", "x"], "cannot read");
}

#[test]
fn rejects_invalid_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("genesis.json");
    std::fs::write(&file, "{ not json").expect("write");
    fails(&["validate", s(&file)], "genesis JSON is invalid");
    fails(&["show", s(&file)], "genesis JSON is invalid");
    let key_file = tmp.path().join("key.json");
    std::fs::write(&key_file, "[]").expect("write");
    let sub = tmp.path().join("draft");
    std::fs::create_dir(&sub).expect("mkdir");
    let f = draft(&sub);
    fails(
        &["add-validator", &f, "--key-file", s(&key_file), "--power", "1", "--moniker", "x"],
        "key file is not valid JSON",
    );
}

#[test]
fn rejects_bad_chain_id() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("genesis.json");
    fails(&["new", "--chain-id", "My Chain!", "--out", s(&file)], "chain id \"My Chain!\" is invalid");
    assert!(!file.exists());
    // A hand-edited chain id is caught on read as well.
    let f = draft(tmp.path());
    let text = std::fs::read_to_string(&f).expect("read").replace("bad-input", "BAD");
    std::fs::write(&f, text).expect("write");
    fails(&["validate", &f], "chain id \"BAD\" is invalid");
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [("bash", "complete -F"), ("zsh", "#compdef genesis"), ("fish", "complete -c genesis")] {
        let script = ok(&["completions", shell]);
        assert!(script.contains(needle) && script.contains("add-validator"), "{shell}");
    }
    let o = genesis_cmd(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2));
}
