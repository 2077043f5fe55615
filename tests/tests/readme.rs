//! The README test: every `sh` block of README.md's guides (Install, Two commands, Operator guide, Wallet
//! guide, API guide) runs verbatim, in order, in one bash (`set -euo pipefail`, so shell variables such as
//! `$ME` carry from one block to the next), with the built `ledgerd`, `wallet` and `genesis` first on
//! `PATH`, in a fresh directory next to a `ledgerd localnet` this test starts at `./localnet`. So the README
//! cannot drift from the code.
//!
//! Two deviations, both explicit: a block right after an HTML comment `<!-- readme-test: skip (why) -->` is
//! not run (the install line, commands that run until stopped, the test suite itself); and the README's
//! default API address `127.0.0.1:26600` is replaced by the port this test's localnet got from
//! `allocate_ports` (the README's localnet uses the default; a test must not), in the commands' text and
//! as the wallet's default node (`LEDGER_NODE`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tests::harness::{ApiClient, allocate_ports, ledgerd_bin, wait_for};

/// Sections of README.md whose `sh` blocks are guides a user runs.
const GUIDES: &[&str] = &["Install", "Two commands", "Operator guide", "Wallet guide", "API guide"];
const SKIP_MARKER: &str = "<!-- readme-test: skip";
const README_API: &str = "127.0.0.1:26600";
/// The whole script's deadline.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(100);

/// One fenced `sh` block: the section it is in and whether it is marked to be skipped.
#[derive(Debug)]
struct Block {
    section: String,
    skip: bool,
    text: String,
}

fn sh_blocks(readme: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut section = String::new();
    let mut previous = "";
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            section = h.trim().to_string();
        } else if line.trim() == "```sh" {
            let mut text = String::new();
            for l in lines.by_ref() {
                if l.trim() == "```" {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            blocks.push(Block { section: section.clone(), skip: previous.starts_with(SKIP_MARKER), text });
        }
        if !line.trim().is_empty() {
            previous = line.trim();
        }
    }
    blocks
}

/// Build `wallet` and `genesis` as `ledgerd` is (same profile, same target directory) and return the
/// directory that holds the three.
fn bin_dir() -> Result<PathBuf> {
    let ledgerd = ledgerd_bin()?;
    let dir = ledgerd.parent().context("ledgerd has a directory")?.to_path_buf();
    let mut cmd = tests::harness::cargo_command();
    cmd.args(["build", "-q", "-p", "wallet", "-p", "genesis"]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    if !cmd.status().context("cargo build of wallet and genesis")?.success() {
        bail!("cargo build of wallet and genesis failed");
    }
    for bin in ["ledgerd", "wallet", "genesis"] {
        anyhow::ensure!(dir.join(bin).is_file(), "{bin} not built in {}", dir.display());
    }
    Ok(dir)
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_localnet(bin: &Path, work: &Path, base_port: u16) -> Result<Killed> {
    let log = std::fs::File::create(work.join("localnet.log"))?;
    let child = Command::new(bin.join("ledgerd"))
        .args(["localnet", "--validators", "4", "--accounts", "10", "--home", "localnet", "--base-port"])
        .arg(base_port.to_string())
        .current_dir(work)
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .spawn()
        .context("starting ledgerd localnet")?;
    Ok(Killed(child))
}

#[test]
fn readme_guides_run_verbatim_against_a_localnet() -> Result<()> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))?;
    let blocks = sh_blocks(&readme);
    let guides: Vec<&Block> = blocks.iter().filter(|b| GUIDES.contains(&b.section.as_str())).collect();
    // The parser sees the guides, and the markers skip only what they must.
    let run: Vec<&&Block> = guides.iter().filter(|b| !b.skip).collect();
    assert!(run.len() >= 5, "too few README blocks to run: {guides:?}");
    for section in ["Operator guide", "Wallet guide", "API guide"] {
        assert!(run.iter().any(|b| b.section == section), "no block of {section} runs");
    }
    let skipped: Vec<&str> = guides.iter().filter(|b| b.skip).map(|b| b.text.trim()).collect();
    assert!(skipped.iter().any(|t| t.starts_with("ledgerd localnet")), "{skipped:?}");

    let bin = bin_dir()?;
    let work = tempfile::tempdir()?;
    let base = allocate_ports(8)?;
    let url = format!("http://127.0.0.1:{base}");
    let _localnet = start_localnet(&bin, work.path(), base)?;
    let api = ApiClient::new(&url);
    wait_for("the localnet to commit block 2", Duration::from_secs(60), || Ok(api.height().ok().filter(|h| *h >= 2)))
        .with_context(|| std::fs::read_to_string(work.path().join("localnet.log")).unwrap_or_default())?;

    let mut script = String::from("set -euo pipefail\nset -x\n");
    for b in &run {
        script.push_str(&format!("# --- README, {} ---\n", b.section));
        script.push_str(&b.text.replace(README_API, &format!("127.0.0.1:{base}")));
    }
    let path = std::env::var("PATH").unwrap_or_default();
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", format!("{}:{path}", bin.display()))
        .env_remove("WALLET_PASSWORD")
        // `wallet verify` keeps its trusted state under the state directory: this test's, not the user's.
        .env("XDG_STATE_HOME", work.path())
        // The wallet's default node is the README's localnet address: point it at this test's.
        .env("LEDGER_NODE", &url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let mut stderr = child.stderr.take().context("stderr")?;
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + SCRIPT_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out_reader.join().unwrap_or_default();
    let err = err_reader.join().unwrap_or_default();
    let report = format!("--- stdout\n{out}\n--- stderr (commands and errors)\n{err}");
    match status {
        None => bail!("the README's commands did not finish within {SCRIPT_DEADLINE:?}\n{report}"),
        Some(s) if !s.success() => bail!("a README command failed ({s})\n{report}"),
        Some(_) => {}
    }
    // What the guides promise, seen in their output.
    assert!(out.contains("verified: "), "wallet verify passed: {report}");
    assert!(out.contains("\"routes\""), "GET / lists the routes: {report}");
    assert!(out.contains("status: committed"), "transfers committed: {report}");
    Ok(())
}
