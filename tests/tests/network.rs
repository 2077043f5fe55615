//! Real-process network scenarios (issue: node): four `ledgerd` validators on loopback, each its own
//! process with its own sled data, driven over HTTP. Named by topology. Every wait has a deadline and
//! polls an observable condition; nothing sleeps to synchronise.

use std::time::Duration;

use anyhow::{Context, Result};
use tests::harness::{Localnet, wait_for};

const START: Duration = Duration::from_secs(60);
const PROGRESS: Duration = Duration::from_secs(45);

fn started(validators: usize, accounts: usize) -> Result<Localnet> {
    let mut net = Localnet::create(validators, accounts)?;
    net.start_all()?;
    Ok(net)
}

#[test]
fn n4_commits_and_a_tx_sent_to_one_node_is_everywhere() -> Result<()> {
    let mut net = started(4, 4)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let tx = net.transfer(0, 0, 1, 1_000)?;
    let answer = net.nodes[0].api.submit(&tx.encode())?;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["id"].as_str(), Some(tx.id().to_hex().as_str()));
    // Committed, at the same place, on every node; and every node holds the same chain.
    let height = net.wait_committed(3, &tx.id().to_hex(), PROGRESS)?;
    for i in 0..4 {
        assert_eq!(net.wait_committed(i, &tx.id().to_hex(), PROGRESS)?, height);
    }
    let top = net.nodes.iter().map(|n| n.api.height()).collect::<Result<Vec<_>>>()?;
    net.assert_same_chain(&[0, 1, 2, 3], top.into_iter().min().unwrap_or(1))?;
    for i in 0..4 {
        net.stop(i, Duration::from_secs(20))?;
    }
    Ok(())
}

#[test]
fn n4_one_stopped_three_continue_and_it_catches_up_and_votes_again() -> Result<()> {
    let mut net = started(4, 2)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    net.stop(3, Duration::from_secs(20))?;
    let h = net.nodes[0].api.height()?;
    net.wait_all(&[0, 1, 2], h + 5, PROGRESS)?;
    net.start(3)?;
    let target = net.nodes[0].api.height()?;
    net.wait_height(3, target, PROGRESS)?;
    // It votes again: its address signs the certificate of some later block.
    let me = net.manifest.nodes[3].validator.to_address_string();
    let api = net.nodes[0].api.clone();
    wait_for("node3 to sign a certificate after its restart", PROGRESS, || {
        let top = api.height()?;
        let block = api.get(&format!("/blocks/{top}"))?;
        let signed = block.body["signers"].as_array().is_some_and(|s| s.iter().any(|a| a.as_str() == Some(&me)));
        Ok(signed.then_some(()))
    })?;
    net.assert_same_chain(&[0, 1, 2, 3], target)?;
    assert!(net.evidence_lines().is_empty(), "{:?}", net.evidence_lines());
    Ok(())
}

#[test]
fn n4_two_stopped_no_block_commits_then_one_back_resumes() -> Result<()> {
    let mut net = started(4, 2)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    net.stop(2, Duration::from_secs(20))?;
    net.stop(3, Duration::from_secs(20))?;
    // Let in-flight heights settle: a height may still complete with votes already sent.
    let api = net.nodes[0].api.clone();
    let halted = wait_for("the two survivors to reach the same height", PROGRESS, || {
        let (a, b) = (api.height()?, net.nodes[1].api.height()?);
        Ok((a == b).then_some(a))
    })?;
    // With half the power no prevote quorum forms, so the round does not even advance; what is observable is
    // the stalled node's re-gossip rounds (every 2 s after 3 s without a commit). Several rounds with an
    // unchanged height are the proof of "halted".
    let rounds = |api: &tests::harness::ApiClient| api.metric("ledger_consensus_stall_rounds_total");
    let rounds0 = rounds(&api)?;
    wait_for("the survivors to stall and re-gossip several times", PROGRESS, || {
        Ok((rounds(&api)? >= rounds0 + 4.0).then_some(()))
    })
    .with_context(|| net.diagnostics(&[0, 1]))?;
    assert_eq!(api.height()?, halted, "a block committed with half the voting power");
    assert_eq!(net.nodes[1].api.height()?, halted);
    net.start(2)?;
    net.wait_all(&[0, 1, 2], halted + 2, PROGRESS)?;
    net.assert_same_chain(&[0, 1, 2], halted + 2)?;
    Ok(())
}

#[test]
fn n4_kill_9_during_load_ten_times() -> Result<()> {
    let mut net = started(4, 8)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    let mut sent = Vec::new();
    for round in 0..10 {
        // Load: a few transfers through a node that stays up, then kill -9 a validator mid-stream.
        for k in 0..3 {
            let from = (round * 3 + k) % 8;
            let tx = net.transfer(0, from, (from + 1) % 8, 10)?;
            let a = net.nodes[0].api.submit(&tx.encode())?;
            if a.status == 200 {
                sent.push(tx.id().to_hex());
            }
        }
        let victim = 1 + round % 3;
        net.kill(victim)?;
        let h = net.nodes[0].api.height()?;
        net.start(victim)?;
        // It reopens its data, passes the start-up check and catches up past the height at its death.
        net.wait_height(victim, h + 1, PROGRESS)?;
    }
    for id in &sent {
        net.wait_committed(0, id, PROGRESS)?;
    }
    let top = net.nodes.iter().map(|n| n.api.height()).collect::<Result<Vec<_>>>()?;
    net.assert_same_chain(&[0, 1, 2, 3], top.into_iter().min().unwrap_or(1))?;
    // No conflicting votes were ever signed: no node recorded evidence.
    assert!(net.evidence_lines().is_empty(), "{:?}", net.evidence_lines());
    assert!(!sent.is_empty());
    Ok(())
}

#[test]
fn full_node_started_later_syncs_from_genesis_and_serves_the_same_blocks() -> Result<()> {
    let mut net = started(4, 2)?;
    net.wait_all(&[0, 1, 2, 3], 10, START)?;
    let full = net.add_full_node()?;
    net.start(full)?;
    let target = net.nodes[0].api.height()?;
    net.wait_height(full, target, PROGRESS)?;
    net.assert_same_chain(&[0, full], target)?;
    let status = net.nodes[full].api.status()?;
    assert!(status["validator"].is_null(), "a full node has no validator: {status}");
    Ok(())
}

/// `GET /validators` counts from the certificates carried on chain (each block's `last_commit`), so every
/// node gives the same numbers for the same window, including for a validator that was down for a while
/// (before, each node counted its own certificates: node1 251, node2 251, node3 229 missed of 731).
#[test]
fn n4_validator_stats_are_the_same_on_every_node() -> Result<()> {
    let mut net = started(4, 1)?;
    net.wait_all(&[0, 1, 2, 3], 2, START)?;
    net.stop(3, Duration::from_secs(20))?;
    let h = net.nodes[0].api.height()?;
    net.wait_all(&[0, 1, 2], h + 4, PROGRESS)?;
    net.start(3)?;
    let target = net.nodes[0].api.height()? + 2;
    net.wait_all(&[0, 1, 2, 3], target, PROGRESS)?;
    // The window ends at the same height everywhere: below every node's latest certified height.
    let tops = net.nodes.iter().map(|n| n.api.height()).collect::<Result<Vec<_>>>()?;
    let to = tops.iter().min().copied().unwrap_or(1) - 1;
    let answers = (0..4)
        .map(|i| {
            let a = net.nodes[i].api.get(&format!("/validators?to_height={to}"))?;
            anyhow::ensure!(a.status == 200, "node{i}: {}", a.body);
            Ok(a.body)
        })
        .collect::<Result<Vec<_>>>()?;
    let first = &answers[0];
    assert_eq!(first["counted_to_height"].as_u64(), Some(to), "{first}");
    assert_eq!(first["window_blocks"].as_u64(), Some(100), "{first}");
    let from = first["counted_from_height"].as_u64().context("counted_from_height")?;
    let vals = first["validators"].as_array().context("validators")?;
    let proposed: u64 = vals.iter().filter_map(|v| v["blocks_proposed"].as_u64()).sum();
    assert_eq!(proposed, to - from + 1, "one proposer per counted height: {first}");
    let me = net.manifest.nodes[3].validator.to_address_string();
    let down = vals.iter().find(|v| v["address"] == me.as_str()).context("node3 in the set")?;
    assert!(down["blocks_missed"].as_u64().unwrap_or(0) >= 3, "node3 was down for 4 heights: {first}");
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, first, "node{i} counts differently from node0");
    }
    for i in 0..4 {
        net.stop(i, Duration::from_secs(20))?;
    }
    Ok(())
}
