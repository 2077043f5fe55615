//! The `wallet` binary, run as a user would, without a node: keys, offline signing, errors and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ledger_core::{Keypair, SignedTransaction};
use tempfile::TempDir;

const EXIT_USAGE: i32 = 2;
const EXIT_UNREACHABLE: i32 = 3;
const EXIT_KEY: i32 = 6;

fn wallet(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wallet"));
    cmd.args(args).env_remove("WALLET_PASSWORD").env_remove("LEDGER_NODE").stdin(std::process::Stdio::null());
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run wallet")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure must be exactly one `error: …` line on stderr with the expected exit code.
fn assert_fails(o: &Output, code: i32, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn keygen_encrypted(dir: &TempDir, name: &str, password: &str) -> (PathBuf, String) {
    let path = dir.path().join(name);
    let o = run(wallet(&["keygen", "--out", path_str(&path)]).env("WALLET_PASSWORD", password));
    assert!(o.status.success(), "keygen failed: {}", stderr(&o));
    let address =
        stdout(&o).lines().find_map(|l| l.strip_prefix("address: ")).expect("keygen prints the address").to_string();
    (path, address)
}

/// A plaintext key file as `genesis localnet` writes for dev accounts.
fn dev_key_file(dir: &TempDir, seed: u8) -> (PathBuf, Keypair) {
    let key = Keypair::from_seed(&[seed; 32]);
    let path = dir.path().join(format!("account{seed}.json"));
    std::fs::write(&path, ledger_core::keyfile::to_plaintext_json(&key, Some("dev key"))).expect("write");
    (path, key)
}

/// A local port with nothing listening: bound, then closed.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

fn mistype(address: &str) -> String {
    let mut chars: Vec<char> = address.chars().collect();
    chars[10] = if chars[10] == '0' { '1' } else { '0' };
    chars.into_iter().collect()
}

/// `wallet sign` of 1 unit from `key` (a command that needs the key's password), writing `out`.
fn sign_args<'a>(key: &'a Path, out: &'a Path) -> Vec<&'a str> {
    vec![
        "sign",
        "--key",
        path_str(key),
        "--to",
        RECIPIENT,
        "--amount",
        "1",
        "--fee",
        "1",
        "--nonce",
        "0",
        "--chain-id",
        "c",
        "--expiry-height",
        "10",
        "--out",
        path_str(out),
    ]
}

/// Address of `Keypair::from_seed(&[8; 32])`, checked in `recipient_constant_is_the_seed_8_address`.
const RECIPIENT: &str = "ldg1398f62c6d1a457c51ba6a4b5f3dbd2f69fca93216218dc8997e416bd17d93caeda9b057";

#[test]
fn keygen_then_sign_with_right_and_wrong_password_and_address_needs_none() {
    let dir = TempDir::new().expect("tempdir");
    let (path, address) = keygen_encrypted(&dir, "key.json", "correct horse");
    assert!(address.starts_with("ldg"));
    let out = dir.path().join("tx.hex");

    // The address is in the file: no password, no terminal needed (stdin is null here).
    let o = run(&mut wallet(&["address", "--key", path_str(&path)]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), address);

    let o = run(wallet(&sign_args(&path, &out)).env("WALLET_PASSWORD", "correct horse"));
    assert!(o.status.success(), "{}", stderr(&o));

    let o = run(wallet(&sign_args(&path, &dir.path().join("tx2.hex"))).env("WALLET_PASSWORD", "wrong horse"));
    assert_fails(&o, EXIT_KEY, "wrong password");
    assert!(stdout(&o).is_empty());
}

#[test]
fn keystore_is_encrypted_json_with_kdf_params_and_never_holds_the_seed_in_clear() {
    let dir = TempDir::new().expect("tempdir");
    let (path, address) = keygen_encrypted(&dir, "key.json", "correct horse");
    let text = std::fs::read_to_string(&path).expect("read");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(doc["kind"], "ed25519-encrypted");
    assert_eq!(doc["address"], address.as_str());
    assert_eq!(doc["kdf"]["name"], "argon2id");
    assert_eq!(doc["kdf"]["salt"].as_str().map(str::len), Some(32));
    assert_eq!(doc["cipher"]["name"], "xchacha20poly1305");
    assert_eq!(doc["cipher"]["nonce"].as_str().map(str::len), Some(48));
    assert!(ledger_core::keyfile::from_plaintext_json(&text).is_err(), "not a plaintext key file");
}

#[test]
fn password_file_works_and_its_trailing_newline_is_ignored() {
    let dir = TempDir::new().expect("tempdir");
    let pw = dir.path().join("pw.txt");
    std::fs::write(&pw, "s3cret-pass\n").expect("write");
    let key = dir.path().join("key.json");
    let o = run(&mut wallet(&["keygen", "--out", path_str(&key), "--password-file", path_str(&pw)]));
    assert!(o.status.success(), "{}", stderr(&o));
    // The same password from the environment, without the newline, unlocks it.
    let out = dir.path().join("tx.hex");
    let o = run(wallet(&sign_args(&key, &out)).env("WALLET_PASSWORD", "s3cret-pass"));
    assert!(o.status.success(), "{}", stderr(&o));
    // The password file wins over the environment.
    let out2 = dir.path().join("tx2.hex");
    let mut args = sign_args(&key, &out2);
    args.extend(["--password-file", path_str(&pw)]);
    let o = run(wallet(&args).env("WALLET_PASSWORD", "other"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn empty_password_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let key = dir.path().join("key.json");
    let o = run(wallet(&["keygen", "--out", path_str(&key)]).env("WALLET_PASSWORD", ""));
    assert_fails(&o, EXIT_USAGE, "password is empty");
    assert!(!key.exists());
}

#[test]
fn insecure_plaintext_writes_a_ledger_core_key_file_with_a_warning() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("plain.json");
    let o = run(&mut wallet(&["keygen", "--out", path_str(&path), "--insecure-plaintext"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("UNENCRYPTED"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).expect("read");
    let key = ledger_core::keyfile::from_plaintext_json(&text).expect("ledger-core parses it");
    assert!(stdout(&o).contains(&key.public().to_address_string()));
    // Readable without any password.
    let o = run(&mut wallet(&["address", "--key", path_str(&path)]));
    assert_eq!(stdout(&o).trim(), key.public().to_address_string());
}

#[cfg(unix)]
#[test]
fn key_files_are_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().expect("tempdir");
    let (encrypted, _) = keygen_encrypted(&dir, "enc.json", "correct horse");
    let plain = dir.path().join("plain.json");
    assert!(run(&mut wallet(&["keygen", "--out", path_str(&plain), "--insecure-plaintext"])).status.success());
    for p in [encrypted, plain] {
        let mode = std::fs::metadata(&p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
}

#[test]
fn keygen_refuses_to_overwrite() {
    let dir = TempDir::new().expect("tempdir");
    let (path, _) = keygen_encrypted(&dir, "key.json", "correct horse");
    let before = std::fs::read(&path).expect("read");
    let o = run(wallet(&["keygen", "--out", path_str(&path)]).env("WALLET_PASSWORD", "correct horse"));
    assert_fails(&o, EXIT_USAGE, "already exists");
    let o = run(&mut wallet(&["keygen", "--out", path_str(&path), "--insecure-plaintext"]));
    assert_fails(&o, EXIT_USAGE, "refusing to overwrite");
    assert_eq!(std::fs::read(&path).expect("read"), before, "file untouched");
}

#[test]
fn offline_sign_writes_hex_that_ledger_core_decodes_and_verifies() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, key) = dev_key_file(&dir, 7);
    let to = Keypair::from_seed(&[8; 32]).public().to_address_string();
    let out = dir.path().join("tx.hex");
    let o = run(&mut wallet(&[
        "--node",
        "http://127.0.0.1:1", // never contacted: signing is offline
        "sign",
        "--key",
        path_str(&key_path),
        "--to",
        &to,
        "--amount",
        "25",
        "--fee",
        "2",
        "--nonce",
        "3",
        "--chain-id",
        "localnet-1",
        "--expiry-height",
        "500",
        "--memo",
        "rent",
        "--out",
        path_str(&out),
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let hex_text = std::fs::read_to_string(&out).expect("read");
    let bytes = hex::decode(hex_text.trim()).expect("hex");
    let stx = SignedTransaction::decode(&bytes, 64 * 1024).expect("canonical decode");
    stx.verify_signature().expect("signature verifies");
    let tx = stx.tx();
    assert_eq!(tx.chain_id, "localnet-1");
    assert_eq!(tx.sender, key.public());
    assert_eq!(tx.recipient.to_address_string(), to);
    assert_eq!((tx.amount, tx.fee, tx.nonce, tx.expiry_height), (25, 2, 3, 500));
    assert_eq!(tx.memo, "rent");
    assert!(stdout(&o).contains(&stx.id().to_hex()), "prints the id: {}", stdout(&o));
}

#[test]
fn offline_sign_with_an_encrypted_keystore() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, address) = keygen_encrypted(&dir, "key.json", "correct horse");
    let to = Keypair::from_seed(&[8; 32]).public().to_address_string();
    let out = dir.path().join("tx.hex");
    let o = run(wallet(&[
        "--output",
        "json",
        "sign",
        "--key",
        path_str(&key_path),
        "--to",
        &to,
        "--amount",
        "1",
        "--fee",
        "1",
        "--nonce",
        "0",
        "--chain-id",
        "c",
        "--expiry-height",
        "10",
        "--out",
        path_str(&out),
    ])
    .env("WALLET_PASSWORD", "correct horse"));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    let bytes = hex::decode(std::fs::read_to_string(&out).expect("read").trim()).expect("hex");
    let stx = SignedTransaction::decode(&bytes, 64 * 1024).expect("decode");
    assert_eq!(doc["id"], stx.id().to_hex().as_str());
    assert_eq!(stx.tx().sender.to_address_string(), address);
}

#[test]
fn mistyped_address_is_a_checksum_error() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, _) = dev_key_file(&dir, 7);
    let typo = mistype(&Keypair::from_seed(&[8; 32]).public().to_address_string());
    let out = dir.path().join("tx.hex");
    let o = run(&mut wallet(&[
        "sign",
        "--key",
        path_str(&key_path),
        "--to",
        &typo,
        "--amount",
        "1",
        "--fee",
        "1",
        "--nonce",
        "0",
        "--chain-id",
        "c",
        "--expiry-height",
        "10",
        "--out",
        path_str(&out),
    ]));
    assert_fails(&o, EXIT_USAGE, "checksum");
    assert!(!out.exists());

    // Caught before any network call too.
    let o = run(&mut wallet(&["--node", &closed_port_url(), "balance", &typo]));
    assert_fails(&o, EXIT_USAGE, "checksum");
    let o = run(&mut wallet(&[
        "--node",
        &closed_port_url(),
        "transfer",
        "--key",
        path_str(&key_path),
        "--to",
        &typo,
        "--amount",
        "1",
    ]));
    assert_fails(&o, EXIT_USAGE, "checksum");
}

#[test]
fn missing_or_unusable_key_file() {
    let dir = TempDir::new().expect("tempdir");
    let missing = dir.path().join("nope.json");
    let o = run(&mut wallet(&["address", "--key", path_str(&missing)]));
    assert_fails(&o, EXIT_KEY, "does not exist");
    assert!(stderr(&o).contains("wallet keygen"), "says what to do: {}", stderr(&o));

    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "{not json").expect("write");
    let o = run(&mut wallet(&["address", "--key", path_str(&garbage)]));
    assert_fails(&o, EXIT_KEY, "not usable");

    let huge = dir.path().join("huge.json");
    std::fs::write(&huge, vec![b' '; 200 * 1024]).expect("write");
    let o = run(&mut wallet(&["address", "--key", path_str(&huge)]));
    assert_fails(&o, EXIT_KEY, "limit");
}

#[test]
fn encrypted_key_without_any_password_source_fails_cleanly() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, _) = keygen_encrypted(&dir, "key.json", "correct horse");
    let missing_pw = dir.path().join("missing-pw.txt");
    let out = dir.path().join("tx.hex");
    let mut args = sign_args(&key_path, &out);
    args.extend(["--password-file", path_str(&missing_pw)]);
    let o = run(&mut wallet(&args));
    assert_fails(&o, EXIT_KEY, "password file");
    // No password source and no terminal: a clear usage error, not a hang.
    let o = run(&mut wallet(&sign_args(&key_path, &out)));
    assert_fails(&o, EXIT_USAGE, "WALLET_PASSWORD");
}

#[test]
fn recipient_constant_is_the_seed_8_address() {
    assert_eq!(RECIPIENT, Keypair::from_seed(&[8; 32]).public().to_address_string());
}

#[test]
fn a_short_keystore_password_is_refused() {
    let dir = TempDir::new().expect("tempdir");
    let key = dir.path().join("key.json");
    let o = run(wallet(&["keygen", "--out", path_str(&key)]).env("WALLET_PASSWORD", "x"));
    assert_fails(&o, EXIT_USAGE, "at least 8");
    assert!(!key.exists());
    let o = run(wallet(&["keygen", "--out", path_str(&key)]).env("WALLET_PASSWORD", "12345678"));
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn import_encrypts_a_dev_key_or_a_seed_and_keys_lists_them_without_passwords() {
    let dir = TempDir::new().expect("tempdir");
    let (dev, dev_key) = dev_key_file(&dir, 7);
    let vault = dir.path().join("vault");
    std::fs::create_dir(&vault).expect("mkdir");
    let imported = vault.join("imported.json");
    let o = run(wallet(&["import", "--from", path_str(&dev), "--out", path_str(&imported)])
        .env("WALLET_PASSWORD", "correct horse"));
    assert!(o.status.success(), "{}", stderr(&o));
    let dev_address = dev_key.public().to_address_string();
    assert!(stdout(&o).contains(&dev_address), "{}", stdout(&o));
    // The keystore signs as the dev key.
    let out = dir.path().join("tx.hex");
    let o = run(wallet(&sign_args(&imported, &out)).env("WALLET_PASSWORD", "correct horse"));
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = hex::decode(std::fs::read_to_string(&out).expect("read").trim()).expect("hex");
    let stx = SignedTransaction::decode(&bytes, 64 * 1024).expect("decode");
    assert_eq!(stx.tx().sender.to_address_string(), dev_address);

    // A raw seed, as 64 hex characters.
    let seed_file = dir.path().join("seed.txt");
    std::fs::write(&seed_file, format!("{}\n", "09".repeat(32))).expect("write");
    let from_seed = vault.join("seed.json");
    let o = run(wallet(&["import", "--from", path_str(&seed_file), "--out", path_str(&from_seed)])
        .env("WALLET_PASSWORD", "correct horse"));
    assert!(o.status.success(), "{}", stderr(&o));
    let seed_address = Keypair::from_seed(&[9; 32]).public().to_address_string();
    assert!(stdout(&o).contains(&seed_address), "{}", stdout(&o));

    // Refusals: an existing --out, an encrypted keystore as --from, a file that is neither.
    let o = run(wallet(&["import", "--from", path_str(&dev), "--out", path_str(&imported)])
        .env("WALLET_PASSWORD", "correct horse"));
    assert_fails(&o, EXIT_USAGE, "already exists");
    let o = run(wallet(&["import", "--from", path_str(&imported), "--out", path_str(&vault.join("x.json"))])
        .env("WALLET_PASSWORD", "correct horse"));
    assert_fails(&o, EXIT_USAGE, "already an encrypted keystore");
    std::fs::write(vault.join("notes.json"), "{\"hello\": 1}").expect("write");
    let o = run(wallet(&[
        "import",
        "--from",
        path_str(&vault.join("notes.json")),
        "--out",
        path_str(&vault.join("y.json")),
    ])
    .env("WALLET_PASSWORD", "correct horse"));
    assert_fails(&o, EXIT_KEY, "neither a plaintext key file nor");

    // `keys` lists the two keystores (and skips the other JSON file), without asking for a password.
    let o = run(&mut wallet(&["--output", "json", "keys", path_str(&vault)]));
    assert!(o.status.success(), "{}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("one JSON document");
    let keys = doc["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{doc}");
    let addresses: Vec<&str> = keys.iter().filter_map(|k| k["address"].as_str()).collect();
    assert!(addresses.contains(&dev_address.as_str()) && addresses.contains(&seed_address.as_str()), "{doc}");
    assert!(keys.iter().all(|k| k["kind"] == "encrypted"), "{doc}");
    let o = run(&mut wallet(&["keys", path_str(&dir.path().join("missing"))]));
    assert_fails(&o, EXIT_USAGE, "does not exist");
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, needle) in [("bash", "complete -F"), ("zsh", "#compdef wallet"), ("fish", "complete -c wallet")] {
        let o = run(&mut wallet(&["completions", shell]));
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(script.contains(needle), "{shell}: {needle:?} missing");
        assert!(script.contains("transfer") && script.contains("expiry-height"), "{shell}");
    }
    let o = run(&mut wallet(&["completions", "cmd"]));
    assert_eq!(o.status.code(), Some(EXIT_USAGE));
}

/// Commands that talk to a node take `--node` before or after the command; after it, it wins (here a
/// closed port after a well-formed but wrong URL before: the answer is "unreachable", not "https refused").
#[test]
fn node_flag_is_accepted_after_online_commands_and_wins() {
    let closed = closed_port_url();
    let o = run(&mut wallet(&["status", "--node", &closed]));
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE), "{}", stderr(&o));
    let o = run(&mut wallet(&["--node", "https://example.org", "status", "--node", &closed, "--timeout", "5"]));
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE), "the node after the command is used: {}", stderr(&o));
    let o = run(&mut wallet(&["tx", &"ab".repeat(32), "--node", &closed]));
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE), "{}", stderr(&o));
    // Offline commands still refuse it (usage error), so their help stays free of node flags.
    let o = run(&mut wallet(&["keys", ".", "--node", &closed]));
    assert_eq!(o.status.code(), Some(EXIT_USAGE));
}

/// Offline commands do not show node flags; every flag of `sign` has a help text.
#[test]
fn offline_help_shows_no_node_flags_and_every_flag_is_explained() {
    for cmd in ["sign", "keygen", "address", "import", "keys"] {
        let o = run(&mut wallet(&[cmd, "--help"]));
        assert!(o.status.success());
        let help = stdout(&o);
        assert!(!help.contains("--node") && !help.contains("--timeout <SECS>"), "{cmd} --help: {help}");
    }
    let o = run(&mut wallet(&["sign", "--help"]));
    let help = stdout(&o);
    for flag in ["--key <KEY>", "--to <TO>", "--amount <AMOUNT>", "--fee <FEE>", "--nonce <NONCE>"] {
        let line = help.lines().find(|l| l.trim_start().starts_with(flag)).unwrap_or_default();
        let explained = line.trim().len() > flag.len() + 5
            || help.lines().skip_while(|l| !l.contains(flag)).nth(1).is_some_and(|l| !l.trim().starts_with('-'));
        assert!(explained, "{flag} has no help text in: {help}");
    }
}

#[test]
fn node_unreachable_has_its_own_message_and_exit_code() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, key) = dev_key_file(&dir, 7);
    let url = closed_port_url();
    let address = key.public().to_address_string();
    let to = Keypair::from_seed(&[8; 32]).public().to_address_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["balance", &address],
        vec!["transfer", "--key", path_str(&key_path), "--to", &to, "--amount", "1"],
        vec!["tx", "00000000000000000000000000000000000000000000000000000000000000ab"],
        vec!["block", "latest"],
    ];
    for args in cases {
        let o = run(wallet(&args).env("LEDGER_NODE", &url));
        assert_fails(&o, EXIT_UNREACHABLE, "cannot reach the node");
        assert!(stderr(&o).contains(&url), "names the URL: {}", stderr(&o));
    }
}

#[test]
fn json_output_is_exactly_one_document_on_success_and_failure() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, key) = dev_key_file(&dir, 7);

    let o = run(&mut wallet(&["--output", "json", "address", "--key", path_str(&key_path)]));
    assert!(o.status.success());
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("exactly one JSON document");
    assert_eq!(doc["address"], key.public().to_address_string().as_str());

    let o = run(&mut wallet(&["--output", "json", "--node", &closed_port_url(), "status"]));
    assert_eq!(o.status.code(), Some(EXIT_UNREACHABLE));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("exactly one JSON document");
    assert_eq!(doc["error"]["kind"], "node_unreachable");
    assert_eq!(doc["error"]["exit_code"], EXIT_UNREACHABLE);
    assert_eq!(stderr(&o).lines().count(), 1);

    let o = run(&mut wallet(&["--output", "json", "address", "--key", "/nonexistent/key.json"]));
    let doc: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("exactly one JSON document");
    assert_eq!(doc["error"]["exit_code"], EXIT_KEY);
}

#[test]
fn send_refuses_a_file_that_is_not_a_signed_transaction() {
    let dir = TempDir::new().expect("tempdir");
    let bad = dir.path().join("tx.hex");
    std::fs::write(&bad, "deadbeef\n").expect("write");
    let o = run(&mut wallet(&["--node", &closed_port_url(), "send", path_str(&bad)]));
    assert_fails(&o, EXIT_USAGE, "valid transaction");
}

#[test]
fn zero_amount_and_bad_node_url_are_usage_errors() {
    let dir = TempDir::new().expect("tempdir");
    let (key_path, _) = dev_key_file(&dir, 7);
    let to = Keypair::from_seed(&[8; 32]).public().to_address_string();
    let o = run(&mut wallet(&["transfer", "--key", path_str(&key_path), "--to", &to, "--amount", "0"]));
    assert_fails(&o, EXIT_USAGE, "greater than zero");
    let o = run(&mut wallet(&["--node", "https://example.org", "status"]));
    assert_fails(&o, EXIT_USAGE, "https");
    let o = run(&mut wallet(&["tx", "not-an-id"]));
    assert_fails(&o, EXIT_USAGE, "64 hex");
}

#[test]
fn help_documents_the_exit_codes() {
    let o = run(&mut wallet(&["--help"]));
    assert!(o.status.success());
    let help = stdout(&o);
    for line in [
        "Exit codes",
        "3  node unreachable",
        "5  verification failed",
        "6  key file",
        "Environment",
        "LEDGER_NODE",
        "WALLET_PASSWORD",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help");
    }
}
