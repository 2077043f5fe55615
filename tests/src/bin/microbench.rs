//! Micro-benchmark of the core's per-operation costs. Not part of the test run.
//!
//! `cargo run --release -p tests --bin microbench -- [--out FILE.json] [--iters N]`
//!
//! Prints one line per operation (mean ns over N iterations after a warm-up) and writes the same figures as
//! JSON, to compare with the costs in ENGINEERING-NOTES.md.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use ledger_core::state::{Account, BlockTemplate, MemStore, StateOverlay, TxContext, apply_block, build_block};
use ledger_core::statetree::StateTree;
use ledger_core::{
    ConsensusParams, Domain, Genesis, Hash, Height, Keypair, PublicKey, SignedTransaction, Transaction, Validator,
    ValidatorSet, merkle,
};

#[derive(Parser)]
struct Args {
    /// Write the figures here as JSON.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Iterations of each single operation.
    #[arg(long, default_value_t = 20_000)]
    iters: u32,
}

struct Report {
    rows: Vec<(String, f64, String)>,
}

impl Report {
    fn time<T>(&mut self, name: &str, iters: u32, unit: &str, mut f: impl FnMut(u32) -> T) -> f64 {
        for i in 0..(iters / 10).max(1) {
            black_box(f(i));
        }
        let start = Instant::now();
        for i in 0..iters {
            black_box(f(i));
        }
        let ns = start.elapsed().as_nanos() as f64 / f64::from(iters);
        println!("{name:<44} {:>12.0} ns {unit}", ns);
        self.rows.push((name.to_string(), ns, unit.to_string()));
        ns
    }
}

fn transfer(from: &Keypair, to: PublicKey, nonce: u64) -> SignedTransaction {
    Transaction {
        chain_id: "bench".into(),
        sender: from.public(),
        recipient: to,
        amount: 10,
        fee: 1,
        nonce,
        expiry_height: 1_000_000,
        memo: String::new(),
    }
    .sign(from)
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut r = Report { rows: Vec::new() };
    let n = args.iters;
    let k = Keypair::from_seed(&[1; 32]);
    let to = Keypair::from_seed(&[2; 32]).public();
    let tx = transfer(&k, to, 0);
    let bytes = tx.encode();
    let payload = ledger_core::encoding::encode(tx.tx());
    println!("signed transaction: {} bytes", bytes.len());

    r.time("ed25519 sign (tx)", n, "per tx", |i| {
        let mut t = tx.tx().clone();
        t.nonce = u64::from(i);
        t.sign(&k)
    });
    let vk = k.public().verifying_key()?;
    r.time("verify, chain rule (ZIP 215, key decompressed)", n, "per tx", |_| {
        ledger_core::crypto::verify_with(&vk, Domain::TxSignature, "bench", &payload, tx.signature())
    });
    let msg = ledger_core::crypto::signing_message(Domain::TxSignature, "bench", &payload);
    let dalek_sig = ed25519_dalek::Signature::from_bytes(&tx.signature().0);
    r.time("ed25519-dalek verify_strict (for comparison)", n, "per tx", |_| {
        vk.verify_strict(msg.as_bytes(), &dalek_sig)
    });
    let a = vk.to_edwards();
    let item = ledger_core::zip215::Item {
        key: &a,
        key_bytes: vk.as_bytes(),
        signature: &tx.signature().0,
        message: msg.as_bytes(),
    };
    r.time("zip215::verify alone", n, "per tx", |_| ledger_core::zip215::verify(&item));
    for size in [64usize, 256, 1024] {
        let items = vec![item; size];
        let per_batch =
            r.time(&format!("zip215::verify_batch of {size}"), (n / size as u32).max(2), "per batch", |_| {
                ledger_core::zip215::verify_batch(&items)
            });
        r.rows.push((format!("  = zip215 batch of {size} per signature"), per_batch / size as f64, "per tx".into()));
    }
    r.time("verify_signature (decompress + verify)", n, "per tx", |_| tx.verify_signature());
    r.time("encode signed tx", n * 10, "per tx", |_| tx.encode());
    r.time("decode signed tx (canonical, with id)", n * 10, "per tx", |_| SignedTransaction::decode(&bytes, 1024));
    r.time("blake3 tx id of encoded tx", n * 10, "per tx", |_| Hash::digest(Domain::TxId, &bytes));
    r.time("  same, deriving the domain key each time", n * 10, "per tx", |_| {
        let mut h = blake3::Hasher::new_derive_key(Domain::TxId.context());
        h.update(&bytes);
        *h.finalize().as_bytes()
    });
    let text = ledger_core::base16::encode(&bytes);
    r.time("hex decode of a signed tx (base16)", n * 10, "per tx", |_| ledger_core::base16::decode(&text));
    r.time("  same with the hex crate", n * 10, "per tx", |_| hex::decode(&text));
    r.time("hex encode of a tx id (base16)", n * 10, "per id", |_| tx.id().to_hex());
    r.time("  same with the hex crate", n * 10, "per id", |_| hex::encode(tx.id().0));

    // State transition: 1000 transfers among 2000 accounts, signatures pre-verified (as the node does).
    let senders: Vec<Keypair> = (0..1000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[31] = 7;
            Keypair::from_seed(&seed)
        })
        .collect();
    let recipients: Vec<PublicKey> = (0..1000u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            seed[31] = 9;
            Keypair::from_seed(&seed).public()
        })
        .collect();
    let mut store = MemStore::new();
    for s in &senders {
        store.set_account(s.public(), Account { balance: 1_000_000, nonce: 0 });
    }
    let txs: Vec<SignedTransaction> = senders.iter().zip(&recipients).map(|(s, to)| transfer(s, *to, 0)).collect();
    let params = ConsensusParams::default();
    let proposer = senders[0].public();
    let genesis = Genesis {
        chain_id: "bench".into(),
        genesis_time_ms: 0,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        validators: vec![Validator { public_key: proposer, power: 1, moniker: "v".into() }],
        accounts: vec![],
        params: params.clone(),
    };
    let set = ValidatorSet::new(genesis.validators.clone())?;
    let gov = ledger_core::governance::GovState::genesis(set);
    let parent = genesis.parent_of_first_block();
    let template = BlockTemplate {
        parent,
        proposer,
        timestamp_ms: 1,
        last_commit: None,
        approvals: Vec::new(),
        evidence: Vec::new(),
    };
    let built = build_block(&store, store.tree(), &gov, template, &params, txs.clone(), &|_| true)?;
    assert_eq!(built.block.txs.len(), 1000, "every transfer applies");
    let block_iters = (n / 200).max(20);
    let per_block = r.time("apply_block, 1000 transfers, sigs pre-verified", block_iters, "per block", |_| {
        apply_block(&store, store.tree(), &gov, &built.block, &parent, &params, &|_| true)
    });
    r.rows.push(("apply_block per tx (pre-verified)".into(), per_block / 1000.0, "per tx".into()));
    println!("{:<44} {:>12.0} ns per tx", "  = apply_block per tx (pre-verified)", per_block / 1000.0);
    let per_block_v = r.time("apply_block, 1000 transfers, verifying sigs", block_iters / 4 + 1, "per block", |_| {
        apply_block(&store, store.tree(), &gov, &built.block, &parent, &params, &|_| false)
    });
    r.rows.push(("apply_block per tx (verifying)".into(), per_block_v / 1000.0, "per tx".into()));

    // State-root update alone: 2000 touched accounts (remove old, insert new), then the root.
    let ctx = TxContext { chain_id: "bench", params: &params, height: Height(1), proposer };
    r.time("state-root update, block touching 2001 accounts", block_iters, "per block", |_| {
        let mut overlay = StateOverlay::new(&store);
        for t in &txs {
            let _ = overlay.apply_tx(&ctx, t, true);
        }
        overlay.finish(store.tree(), gov.clone(), Default::default()).state_root
    });
    // The state tree at larger states: a block's 2001 changed accounts applied in one batch, a proof and its
    // check, and the rebuild a node does at open.
    let changed: Vec<(PublicKey, Account)> = txs
        .iter()
        .enumerate()
        .flat_map(|(i, t)| {
            let v = i as u64;
            [(t.tx().sender, Account { balance: v, nonce: 1 }), (t.tx().recipient, Account { balance: v, nonce: 0 })]
        })
        .chain([(proposer, Account { balance: 1, nonce: 1 })])
        .collect();
    for size in [100_000u32, 1_000_000] {
        let filler = (0..size).map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[31] = 3;
            (PublicKey(b), Account { balance: 1, nonce: 0 })
        });
        let t0 = std::time::Instant::now();
        let tree = StateTree::from_accounts(filler);
        let build = t0.elapsed().as_secs_f64() * 1e9;
        r.rows.push((format!("state tree: build from {size} accounts"), build, "per build".into()));
        println!("{:<44} {:>12.0} ns per build", format!("state tree: build from {size} accounts"), build);
        let per_block = r.time(&format!("state tree ({size}): apply 2001 accounts"), block_iters, "per block", |_| {
            tree.apply(changed.iter().copied()).root()
        });
        let label = format!("  = state tree ({size}) per touched account");
        r.rows.push((label.clone(), per_block / changed.len() as f64, "per account".into()));
        println!("{label:<44} {:>12.0} ns per account", per_block / changed.len() as f64);
        let probe = PublicKey([0x11; 32]);
        r.time(&format!("state tree ({size}): prove one account"), n, "per proof", |_| tree.prove(&probe));
        let (got, proof) = tree.prove(&probe);
        let root = tree.root();
        r.time(&format!("state tree ({size}): verify one proof"), n, "per proof", |_| {
            proof.verify(&root, &probe, got.as_ref())
        });
    }
    let ids: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
    r.time("merkle root of 1000 tx ids", block_iters, "per block", |_| merkle::root(&ids));
    r.time("block encode (1000 txs)", block_iters, "per block", |_| built.block.encode());
    let block_bytes = built.block.encode();
    r.time("block decode (1000 txs, canonical, ids)", block_iters, "per block", |_| {
        ledger_core::Block::decode(&block_bytes, 8 << 20)
    });

    if let Some(path) = args.out {
        let json = serde_json::json!({
            "benchmark": "ledger-core microbench",
            "iterations": n,
            "tx_bytes": bytes.len(),
            "results": r.rows.iter().map(|(name, ns, unit)| serde_json::json!({
                "op": name, "ns": ns.round(), "unit": unit,
            })).collect::<Vec<_>>(),
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
