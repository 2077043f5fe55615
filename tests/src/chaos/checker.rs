//! The checker: pull every node's full chain over the API and verify it from genesis, then hold the
//! client history against it.
//!
//! Nothing here trusts the node's decoded JSON for anything that is hashed or signed: the header comes
//! from `header_hex` and is hashed here; transactions are rebuilt from their fields, re-encoded and
//! re-hashed to their ids; the carried certificate is rebuilt and must hash to the header's
//! `last_commit_hash`; each height's own certificate comes from `certificate_hex`. Then every block is
//! re-executed with `ledger_core::state::apply_block` on a `MemStore` from the genesis state, which checks
//! links, certificates, signatures, nonces, balances and the state root.
//!
//! Invariants are named by their ids in docs/reliability.md.
//!
//! | check | invariant |
//! |---|---|
//! | same block hash at every height held by two nodes | I1 |
//! | hash links, >2/3 certificates of the genesis set, tx signatures, chain id, state root | I2 |
//! | no (sender, nonce) twice; balances never short (apply fails) | I3 |
//! | sum of balances equals the genesis supply after every height | I4 |
//! | a tx id at most once per chain | I8 |
//! | every ok tx in every chain exactly once; every failed tx in none | history |
//!
//! Beside the chains, `chaos::safety_violations` reads every node's log: an evidence line means an
//! honest validator double-signed (I7, I11), a "panicked at" line a panic (I9).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use ledger_core::state::apply_block;
use ledger_core::{
    Block, BlockHeader, CommitCertificate, CommitSig, Genesis, Hash, Height, Parent, PublicKey, Round, Signature,
    SignedTransaction, Transaction, encoding,
};
use serde_json::Value;

use super::workload::{Outcome, TxRecord};
use crate::harness::ApiClient;

/// Longest `header_hex` / `certificate_hex` accepted, in bytes after hex decoding.
const OBJECT_BYTES_MAX: usize = 1 << 20;

/// A broken invariant, named by its id in docs/reliability.md.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

pub fn violation(invariant: &'static str, detail: impl Into<String>) -> Violation {
    Violation { invariant, detail: detail.into() }
}

/// One node's chain as fetched: blocks rebuilt from the API answers, and each height's certificate.
pub struct FetchedChain {
    pub node: String,
    pub blocks: Vec<Block>,
    pub certificates: Vec<CommitCertificate>,
    /// Anything that could not be parsed or did not match its own hash, per height (I2).
    pub problems: Vec<Violation>,
}

impl FetchedChain {
    pub fn height(&self) -> u64 {
        self.blocks.len() as u64
    }

    pub fn hash_at(&self, height: u64) -> Option<Hash> {
        height.checked_sub(1).and_then(|i| self.blocks.get(i as usize)).map(Block::hash)
    }
}

/// Fetch heights 1..=`up_to` from `api` (`GET /blocks/{h}` and `GET /blocks/{h}/commit`).
pub fn fetch_chain(node: &str, api: &ApiClient, up_to: u64) -> Result<FetchedChain> {
    let mut chain =
        FetchedChain { node: node.to_string(), blocks: Vec::new(), certificates: Vec::new(), problems: Vec::new() };
    for h in 1..=up_to {
        let block = api.get(&format!("/blocks/{h}")).with_context(|| format!("{node}: GET /blocks/{h}"))?;
        if block.status != 200 {
            bail!("{node}: GET /blocks/{h} answered {}: {}", block.status, block.body);
        }
        let commit =
            api.get(&format!("/blocks/{h}/commit")).with_context(|| format!("{node}: GET /blocks/{h}/commit"))?;
        if commit.status != 200 {
            bail!("{node}: GET /blocks/{h}/commit answered {}: {}", commit.status, commit.body);
        }
        match rebuild_block(&block.body) {
            Ok(b) => chain.blocks.push(b),
            Err(e) => {
                chain.problems.push(violation("I2", format!("{node} height {h}: block does not rebuild: {e:#}")));
                return Ok(chain);
            }
        }
        match hex_object::<CommitCertificate>(&commit.body["certificate_hex"]) {
            Ok(c) => chain.certificates.push(c),
            Err(e) => {
                chain.problems.push(violation("I2", format!("{node} height {h}: certificate_hex: {e:#}")));
                return Ok(chain);
            }
        }
    }
    Ok(chain)
}

fn hex_object<T: borsh::BorshSerialize + borsh::BorshDeserialize>(v: &Value) -> Result<T> {
    let text = v.as_str().ok_or_else(|| anyhow!("missing"))?;
    let bytes = hex::decode(text)?;
    encoding::decode(&bytes, OBJECT_BYTES_MAX).map_err(|e| anyhow!("{e}"))
}

fn field_str<'a>(v: &'a Value, name: &str) -> Result<&'a str> {
    v[name].as_str().ok_or_else(|| anyhow!("field {name} missing in {v}"))
}

fn field_u64(v: &Value, name: &str) -> Result<u64> {
    v[name].as_u64().ok_or_else(|| anyhow!("field {name} missing in {v}"))
}

fn signature(text: &str) -> Result<Signature> {
    let mut raw = [0u8; 64];
    hex::decode_to_slice(text, &mut raw).map_err(|e| anyhow!("signature hex: {e}"))?;
    Ok(Signature(raw))
}

fn address(text: &str) -> Result<PublicKey> {
    PublicKey::parse_address(text).map_err(|e| anyhow!("address {text}: {e}"))
}

/// Rebuild a block from `GET /blocks/{h}`: header from its bytes (its hash must be the answer's `hash`),
/// transactions from their fields (each must hash to its stated id), the carried certificate from its
/// fields.
fn rebuild_block(v: &Value) -> Result<Block> {
    let header: BlockHeader = hex_object(&v["header_hex"]).context("header_hex")?;
    let stated = Hash::from_hex(field_str(v, "hash")?).map_err(|e| anyhow!("hash: {e}"))?;
    if header.hash() != stated {
        bail!("header_hex hashes to {} but the node states {}", header.hash(), stated);
    }
    if field_u64(v, "height")? != header.height.0 {
        bail!("answer height {} but header height {}", v["height"], header.height);
    }
    let mut txs = Vec::new();
    for t in v["txs"].as_array().ok_or_else(|| anyhow!("txs missing"))? {
        let tx = Transaction {
            chain_id: field_str(t, "chain_id")?.to_string(),
            sender: address(field_str(t, "sender")?)?,
            recipient: address(field_str(t, "recipient")?)?,
            amount: field_u64(t, "amount")?,
            fee: field_u64(t, "fee")?,
            nonce: field_u64(t, "nonce")?,
            expiry_height: field_u64(t, "expiry_height")?,
            memo: field_str(t, "memo")?.to_string(),
        };
        let stx = SignedTransaction::new(tx, signature(field_str(t, "signature")?)?);
        // Through the canonical bytes and back: the id is of exactly what would be on the wire.
        let stx: SignedTransaction = encoding::decode(&stx.encode(), OBJECT_BYTES_MAX).map_err(|e| anyhow!("{e}"))?;
        if stx.id().to_hex() != field_str(t, "id")? {
            bail!("tx re-encodes to id {} but the node states {}", stx.id(), t["id"]);
        }
        txs.push(stx);
    }
    let last_commit = match &v["last_commit"] {
        Value::Null => None,
        c => Some(rebuild_certificate(c).context("last_commit")?),
    };
    let mut approvals = Vec::new();
    for a in v["approvals_hex"].as_array().map(Vec::as_slice).unwrap_or_default() {
        approvals.push(hex_object(a).context("approvals_hex")?);
    }
    let mut evidence = Vec::new();
    for e in v["evidence_hex"].as_array().map(Vec::as_slice).unwrap_or_default() {
        evidence.push(hex_object(e).context("evidence_hex")?);
    }
    Ok(Block { header, txs, last_commit, approvals, evidence })
}

fn rebuild_certificate(c: &Value) -> Result<CommitCertificate> {
    let mut signatures = Vec::new();
    for s in c["signatures"].as_array().ok_or_else(|| anyhow!("signatures missing"))? {
        let index = u16::try_from(field_u64(s, "validator_index")?)?;
        signatures.push(CommitSig { validator_index: index, signature: signature(field_str(s, "signature")?)? });
    }
    Ok(CommitCertificate {
        height: Height(field_u64(c, "height")?),
        round: Round(u32::try_from(field_u64(c, "round")?)?),
        block_hash: Hash::from_hex(field_str(c, "block_hash")?).map_err(|e| anyhow!("block_hash: {e}"))?,
        signatures,
    })
}

/// Verify one chain from genesis (I2, I3, I4, I8). Returns the violations found; stops at the first block
/// that does not apply, since nothing above it can be checked.
pub fn verify_chain(genesis: &Genesis, chain: &FetchedChain) -> Vec<Violation> {
    let mut out = chain.problems.clone();
    if let Err(e) = genesis.validator_set() {
        return vec![violation("I2", format!("genesis validator set: {e}"))];
    }
    let supply = genesis.total_supply();
    let mut store = genesis.initial_state();
    let mut parent: Parent<'_> = genesis.parent_of_first_block();
    let mut nonces_seen: BTreeSet<(PublicKey, u64)> = BTreeSet::new();
    let mut ids_seen: BTreeSet<Hash> = BTreeSet::new();
    let node = &chain.node;
    for (block, cert) in chain.blocks.iter().zip(&chain.certificates) {
        let h = block.height();
        let hash = block.hash();
        // The set of height h: the next set of the state after h - 1.
        let Some(gov) = store.gov().cloned() else {
            out.push(violation("I2", format!("{node} height {h}: no governance state to check against")));
            return out;
        };
        if let Err(e) = cert.verify_for(&genesis.chain_id, &gov.next, h, hash) {
            out.push(violation("I2", format!("{node} height {h}: its commit certificate does not verify: {e}")));
        }
        for tx in &block.txs {
            if !ids_seen.insert(tx.id()) {
                out.push(violation("I8", format!("{node} height {h}: tx {} appears a second time", tx.id())));
            }
            if !nonces_seen.insert((tx.tx().sender, tx.tx().nonce)) {
                out.push(violation(
                    "I3",
                    format!("{node} height {h}: (sender {}, nonce {}) used twice", tx.tx().sender, tx.tx().nonce),
                ));
            }
        }
        match apply_block(&store, store.tree(), &gov, block, &parent, &genesis.params, &|_| false) {
            Ok(changes) => store.commit(&changes),
            Err(e) => {
                out.push(violation("I2", format!("{node} height {h}: block {hash} does not apply: {e}")));
                return out;
            }
        }
        let total: u128 = store.accounts().values().map(|a| u128::from(a.balance)).sum();
        if total != supply {
            out.push(violation("I4", format!("{node} height {h}: supply {total}, genesis supply {supply}")));
        }
        parent = Parent { height: h, hash, timestamp_ms: block.header.timestamp_ms, chain_id: &genesis.chain_id };
    }
    out
}

/// I1 across nodes: the same hash at every height two nodes both hold. A fork with a valid certificate
/// on each side also names the validators that signed both (double signers).
pub fn compare_chains(chains: &[FetchedChain]) -> Vec<Violation> {
    let mut out = Vec::new();
    let top = chains.iter().map(FetchedChain::height).max().unwrap_or(0);
    for h in 1..=top {
        let mut by_hash: BTreeMap<Hash, Vec<usize>> = BTreeMap::new();
        for (i, c) in chains.iter().enumerate() {
            if let Some(hash) = c.hash_at(h) {
                by_hash.entry(hash).or_default().push(i);
            }
        }
        if by_hash.len() > 1 {
            let sides: Vec<String> = by_hash
                .iter()
                .map(|(hash, nodes)| {
                    let names: Vec<&str> = nodes.iter().map(|&i| chains[i].node.as_str()).collect();
                    format!("{hash:?} on {}", names.join(","))
                })
                .collect();
            let certs: Vec<&CommitCertificate> =
                by_hash.values().filter_map(|nodes| chains[nodes[0]].certificates.get(h as usize - 1)).collect();
            let double: BTreeSet<u16> = match certs.as_slice() {
                [a, b, ..] => {
                    let sa: BTreeSet<u16> = a.signatures.iter().map(|s| s.validator_index).collect();
                    b.signatures.iter().map(|s| s.validator_index).filter(|i| sa.contains(i)).collect()
                }
                _ => BTreeSet::new(),
            };
            out.push(violation(
                "I1",
                format!("fork at height {h}: {}; validators signing both commits: {double:?}", sides.join(" vs ")),
            ));
            // One report per fork: everything above diverges too.
            break;
        }
    }
    out
}

/// Hold the history against every chain: ok txs exactly once, failed txs nowhere.
pub fn check_history(history: &[TxRecord], chains: &[FetchedChain]) -> Vec<Violation> {
    let mut out = Vec::new();
    for c in chains {
        let mut count: BTreeMap<Hash, usize> = BTreeMap::new();
        for b in &c.blocks {
            for tx in &b.txs {
                *count.entry(tx.id()).or_default() += 1;
            }
        }
        for r in history {
            let n = Hash::from_hex(&r.id).ok().and_then(|id| count.get(&id).copied()).unwrap_or(0);
            match &r.outcome {
                Outcome::Ok { height } if n != 1 => out.push(violation(
                    "I5",
                    format!("{}: tx {} acknowledged committed at height {height} appears {n} times", c.node, r.id),
                )),
                Outcome::Failed { code } if n != 0 => out.push(violation(
                    "history",
                    format!("{}: tx {} failed ({code}) yet appears {n} times", c.node, r.id),
                )),
                _ => {}
            }
        }
    }
    out
}

/// Everything about the final chains: fetch heights 1..=`up_to` from each node, verify each, compare
/// them, hold the history against them.
pub fn check_all(
    genesis: &Genesis,
    nodes: &[(String, ApiClient)],
    up_to: u64,
    history: &[TxRecord],
) -> Result<(Vec<FetchedChain>, Vec<Violation>)> {
    let mut chains = Vec::new();
    for (name, api) in nodes {
        chains.push(fetch_chain(name, api, up_to)?);
    }
    let mut violations = Vec::new();
    for c in &chains {
        violations.extend(verify_chain(genesis, c));
    }
    violations.extend(compare_chains(&chains));
    violations.extend(check_history(history, &chains));
    Ok((chains, violations))
}
