//! `ledgerd` as an operator meets it without a running node: help, completions, and how errors look.

use std::process::{Command, Output};

fn ledgerd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ledgerd")).args(args).output().expect("run ledgerd")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn help_lists_exit_codes_and_environment_variables() {
    let o = ledgerd(&["--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for needle in [
        "Exit codes:",
        "1  any error",
        "2  usage",
        "Environment:",
        "LEDGERD_LOG",
        "LEDGERD_HOME",
        "LEDGERD_<SECTION>_<KEY>",
        "completions",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from ledgerd --help:\n{help}");
    }
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [("bash", "complete -F"), ("zsh", "#compdef ledgerd"), ("fish", "complete -c ledgerd")] {
        let o = ledgerd(&["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", text(&o.stderr));
        let script = text(&o.stdout);
        assert!(script.contains(needle) && script.contains("localnet") && script.contains("base-port"), "{shell}");
    }
    assert_eq!(ledgerd(&["completions", "tcsh"]).status.code(), Some(2));
}

/// An operator error is one line, also with RUST_BACKTRACE=1 set: no stack backtrace, no panic.
#[test]
fn operator_errors_are_one_line_without_backtraces() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-home");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["start".into(), "--home".into(), missing.display().to_string()], "config.toml"),
        (vec!["show-node-id".into(), "--home".into(), missing.display().to_string()], "config.toml"),
        (
            vec!["start".into(), "--home".into(), missing.display().to_string(), "--set".into(), "nonsense".into()],
            "nonsense",
        ),
    ];
    for (args, needle) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_ledgerd"))
            .args(&args)
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LIB_BACKTRACE", "1")
            .output()
            .expect("run ledgerd");
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line expected:\n{err}");
        assert!(err.starts_with("error: ") && err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("backtrace") && !err.contains("panicked"), "{args:?}: {err}");
    }
}

/// A home with this config.toml (and nothing else: `config explain` reads no other file).
fn home_with_config(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("config.toml"), text).expect("write config.toml");
    dir
}

fn explain(home: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledgerd"));
    cmd.args(["config", "explain", "--home"]).arg(home).args(extra);
    // The test's own environment must not leak config keys in.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("LEDGERD_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().expect("run ledgerd")
}

#[test]
fn config_explain_names_each_origin() {
    let dir = home_with_config("genesis_file = \"g.json\"\nmoniker = \"alice\"\n");
    let o = explain(dir.path(), &["--json", "--set", "mempool.max_txs=7"], &[("LEDGERD_P2P_MAX_PEERS", "9")]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let settings: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).expect("--json is a JSON array");
    let get = |key: &str| {
        let s = settings.iter().find(|s| s["key"] == key).unwrap_or_else(|| panic!("{key} missing"));
        (s["value"].as_str().unwrap_or_default().to_string(), s["origin"].as_str().unwrap_or_default().to_string())
    };
    let file = format!("file {}", dir.path().join("config.toml").display());
    assert_eq!(get("moniker"), ("alice".into(), file));
    assert_eq!(get("p2p.max_peers"), ("9".into(), "environment variable LEDGERD_P2P_MAX_PEERS".into()));
    assert_eq!(get("mempool.max_txs"), ("7".into(), "flag --set mempool.max_txs".into()));
    assert_eq!(get("mempool.max_bytes"), ("33554432".into(), "default".into()));
    let derived = settings.iter().find(|s| s["key"] == "consensus.min_block_interval_ms").expect("listed");
    assert_eq!(derived["value"], "unset");
    assert!(derived["default"].as_str().unwrap_or_default().contains("validator"), "{derived}");
    for s in &settings {
        for field in ["key", "value", "default", "origin"] {
            assert!(s[field].is_string(), "{field} of {s}");
        }
    }

    // The table: a header, one line per key, the origin column aligned.
    let o = explain(dir.path(), &[], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let table = text(&o.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), settings.len() + 1, "{table}");
    let column = lines[0].find("ORIGIN").expect("header");
    assert!(lines[0].starts_with("KEY"), "{table}");
    let moniker = lines.iter().find(|l| l.starts_with("moniker ")).expect("moniker row");
    assert_eq!(moniker.find("file "), Some(column), "{table}");
    assert!(lines.iter().any(|l| l.starts_with("p2p.max_peers") && l.ends_with("default")), "{table}");
}

#[test]
fn config_explain_refuses_a_bad_config_like_start() {
    let dir = home_with_config("genesis_file = \"g.json\"\n[mempool]\nmax_txs = \"lots\"\n");
    for extra in [&[][..], &["--json"][..]] {
        let o = explain(dir.path(), extra, &[]);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(o.stdout.is_empty(), "nothing on stdout: {}", text(&o.stdout));
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: invalid value for `mempool.max_txs`"), "{err}");
    }
    let start = ledgerd(&["start", "--home", &dir.path().display().to_string()]);
    assert_eq!(text(&start.stderr), text(&explain(dir.path(), &[], &[]).stderr), "the same error as start");
    let good = home_with_config("genesis_file = \"g.json\"\n");
    let o = explain(good.path(), &["--set", "nope=1"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("unknown config key `nope`"), "{}", text(&o.stderr));
}

#[test]
fn doctor_help_lists_its_checks_and_exit_codes() {
    let o = ledgerd(&["doctor", "--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    for needle in ["Exit codes:", "10  config", "16  node", "18  sync", "Read-only", "--max-clock-skew-ms"] {
        assert!(help.contains(needle), "{needle:?} missing from ledgerd doctor --help:\n{help}");
    }
    assert!(!help.contains("clock-offset"), "the test-only flag is hidden:\n{help}");
}
