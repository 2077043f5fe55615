//! The judgements, each driven to every verdict; the checks themselves against real homes and nodes are
//! in `node/tests/doctor.rs`.

use super::*;

#[test]
fn help_lists_every_check_with_its_exit_code() {
    let codes: Vec<u8> = Check::ALL.iter().map(|c| c.exit_code()).collect();
    assert_eq!(codes, (10..19).collect::<Vec<u8>>());
    for c in Check::ALL {
        assert!(HELP.contains(&format!("\n  {:<13}  ", c.name())), "{} not described in HELP", c.name());
        assert!(HELP.contains(&format!("{}  {}", c.exit_code(), c.name())), "{}'s code not in HELP", c.name());
    }
}

#[test]
fn exit_code_is_the_first_failing_check() {
    let f = |check, verdict| Finding { check, verdict, message: String::new() };
    assert_eq!(exit_code(&[f(Check::Config, Verdict::Ok), f(Check::Disk, Verdict::Warn)]), 0);
    assert_eq!(exit_code(&[f(Check::Genesis, Verdict::Skip), f(Check::Node, Verdict::Fail)]), 16);
    let findings =
        [f(Check::SignerState, Verdict::Fail), f(Check::Peers, Verdict::Fail), f(Check::Sync, Verdict::Fail)];
    assert_eq!(exit_code(&findings), 13);
    assert_eq!(f(Check::ValidatorKey, Verdict::Fail).to_string(), "FAIL  validator_key  ");
}

#[test]
fn clock_behind_fails_ahead_or_stalled_warns() {
    let (max, idle) = (10_000, 1_000);
    let now = 1_000_000;
    assert_eq!(judge_clock(now, now - 400, idle, max).0, Verdict::Ok);
    assert_eq!(judge_clock(now, now + 3_000, idle, max).0, Verdict::Ok);
    assert_eq!(judge_clock(now, now + 6_000, idle, max).0, Verdict::Warn);
    let (v, m) = judge_clock(now, now + 10_001, idle, max);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("this clock is behind") && m.contains("NTP"), "{m}");
    // An idle chain's block may be the empty-block interval old, plus the allowed skew.
    assert_eq!(judge_clock(now, now - idle - max, idle, max).0, Verdict::Ok);
    let (v, m) = judge_clock(now, now - idle - max - 1, idle, max);
    assert_eq!(v, Verdict::Warn);
    assert!(m.contains("this clock is ahead, or the chain stalled"), "{m}");
}

#[test]
fn disk_floor_and_budget() {
    let dir = Path::new("/data");
    let mb = 1u64 << 20;
    assert_eq!(judge_disk(dir, 1000 * mb, 256 * mb, None, 0).0, Verdict::Ok);
    assert_eq!(judge_disk(dir, 1000 * mb, 0, None, 0).0, Verdict::Ok);
    assert_eq!(judge_disk(dir, 300 * mb, 256 * mb, None, 0).0, Verdict::Warn);
    let (v, m) = judge_disk(dir, 100 * mb, 256 * mb, None, 0);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("below storage.min_free_mb = 256") && m.contains("disk_full"), "{m}");
    let (v, m) = judge_disk(dir, 1000 * mb, 256 * mb, Some(11 * mb), 10 * mb);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("above storage.max_data_mb = 10"), "{m}");
    assert_eq!(judge_disk(dir, 1000 * mb, 256 * mb, Some(95 * mb), 100 * mb).0, Verdict::Warn);
    assert_eq!(judge_disk(dir, 1000 * mb, 256 * mb, Some(50 * mb), 100 * mb).0, Verdict::Ok);
}

#[test]
fn signer_state_ahead_of_the_chain_fails() {
    let p = Path::new("signer_state.json");
    // Signing the height after the last committed one is normal.
    assert_eq!(judge_signer(p, Some(11), 0, Some(10)).0, Verdict::Ok);
    assert_eq!(judge_signer(p, None, 0, None).0, Verdict::Ok);
    let (v, m) = judge_signer(p, Some(12), 0, Some(10));
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("ahead of the chain") && m.contains("at height 10"), "{m}");
    // The floor counts as much as the last signature.
    assert_eq!(judge_signer(p, None, 500, Some(10)).0, Verdict::Fail);
    let (v, m) = judge_signer(p, Some(900), 0, None);
    assert_eq!(v, Verdict::Ok);
    assert!(m.contains("height is unknown"), "{m}");
}

fn peer(addr: &str) -> PeerReport {
    PeerReport { addr: addr.into(), ..Default::default() }
}

fn good(addr: &str, genesis: Hash) -> PeerReport {
    PeerReport { protocol_version: Some("/ledger/c/1.0.0".into()), genesis_hash: Some(Some(genesis)), ..peer(addr) }
}

#[test]
fn peers_of_another_chain_or_genesis_fail_unreachable_ones_fail_only_when_all_are() {
    let ours = Hash::digest(ledger_core::hash::Domain::Genesis, b"ours");
    let theirs = Hash::digest(ledger_core::hash::Domain::Genesis, b"theirs");
    assert_eq!(judge_peers(&[], "c", &ours, 1).0, Verdict::Ok);
    assert_eq!(judge_peers(&[], "c", &ours, 4).0, Verdict::Warn);

    let (v, m) = judge_peers(&[good("a", ours), good("b", ours)], "c", &ours, 4);
    assert_eq!(v, Verdict::Ok, "{m}");
    assert!(m.starts_with("2 of 2 bootstrap peers reachable") && m.contains("a: genesis hash equal"), "{m}");

    let (v, m) = judge_peers(&[good("a", theirs)], "c", &ours, 4);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains(&format!("a has genesis hash {}, ours is {}", theirs.to_hex(), ours.to_hex())), "{m}");

    let other_chain = PeerReport { protocol_version: Some("/ledger/d/1.0.0".into()), ..peer("a") };
    let (v, m) = judge_peers(&[other_chain], "c", &ours, 4);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("a serves chain d, not c"), "{m}");
    let ipfs = PeerReport { protocol_version: Some("ipfs/0.1.0".into()), ..peer("a") };
    assert!(judge_peers(&[ipfs], "c", &ours, 4).1.contains("not a ledgerd node"));

    let down = PeerReport { unreachable: Some("TCP connect to x: refused".into()), ..peer("b") };
    let (v, m) = judge_peers(&[good("a", ours), down.clone()], "c", &ours, 4);
    assert_eq!(v, Verdict::Warn, "{m}");
    assert!(m.starts_with("1 of 2 bootstrap peers reachable") && m.contains("b unreachable: TCP connect"), "{m}");
    assert_eq!(judge_peers(&[down], "c", &ours, 4).0, Verdict::Fail);

    // No block 1 (height 0, state-synced): the chain id from identify is all there is to compare.
    let no_block = PeerReport { genesis_hash: Some(None), ..good("a", ours) };
    let (v, m) = judge_peers(&[no_block], "c", &ours, 4);
    assert_eq!(v, Verdict::Ok);
    assert!(m.contains("no block 1"), "{m}");
    let silent = PeerReport { genesis_error: Some("no answer within 5000 ms".into()), ..peer("a") };
    assert_eq!(judge_peers(&[silent], "c", &ours, 4).0, Verdict::Fail);
}

fn status(height: u64, catching_up: bool, n_peers: usize) -> StatusView {
    serde_json::from_value(serde_json::json!({
        "chain_id": "c", "genesis_hash": "00", "node_id": "n", "height": height, "latest_block_hash": null,
        "latest_block_time": 0, "latest_block_time_utc": "", "catching_up": catching_up, "n_peers": n_peers,
        "validator": null, "validator_reason": null,
        "signer": {"mode": "full_node", "sign_floor": 0, "detail": null},
        "consensus_height": height + 1, "consensus_round": 0, "protocol_version": 3,
        "sync": if catching_up { serde_json::json!({"target_height": 500, "blocks_per_second": 50.0, "eta_seconds": 8}) } else { serde_json::Value::Null },
    }))
    .unwrap()
}

#[test]
fn sync_fails_when_catching_up_behind_a_peer_stalled_or_alone() {
    assert_eq!(judge_sync(&status(100, false, 3), None, 4, &[], 50).0, Verdict::Ok);
    let (v, m) = judge_sync(&status(100, true, 3), None, 4, &[], 50);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("catching up: height 100 of 500 (400 behind), about 8 s left"), "{m}");

    let ahead = PeerReport { has_lag_block: Some(true), ..peer("p") };
    let (v, m) = judge_sync(&status(100, false, 3), None, 4, &[ahead], 50);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("p has block 150") && m.contains("at least 50 blocks behind"), "{m}");
    let level = PeerReport { has_lag_block: Some(false), ..peer("p") };
    let (v, m) = judge_sync(&status(100, false, 3), None, 4, &[level], 50);
    assert_eq!(v, Verdict::Ok);
    assert!(m.contains("none of 1 bootstrap peers is 50 blocks ahead"), "{m}");

    let stalled = HealthView {
        status: "unhealthy".into(),
        reasons: vec![crate::api::HealthReason {
            code: "stalled".into(),
            message: "no block committed for 9000 ms".into(),
        }],
    };
    assert_eq!(judge_sync(&status(100, false, 3), Some(&stalled), 4, &[], 50).0, Verdict::Fail);
    let (v, m) = judge_sync(&status(100, false, 0), None, 4, &[], 50);
    assert_eq!(v, Verdict::Fail);
    assert!(m.contains("no connected peers"), "{m}");
    assert_eq!(judge_sync(&status(100, false, 0), None, 1, &[], 50).0, Verdict::Ok);
}

#[test]
fn unspecified_api_addresses_are_reached_on_loopback() {
    let a: SocketAddr = "0.0.0.0:26600".parse().unwrap();
    assert_eq!(local_address(a), "127.0.0.1:26600".parse().unwrap());
    let a: SocketAddr = "[::]:1".parse().unwrap();
    assert_eq!(local_address(a), "[::1]:1".parse().unwrap());
    let a: SocketAddr = "10.0.0.1:1".parse().unwrap();
    assert_eq!(local_address(a), a);
}
