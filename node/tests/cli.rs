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
