//! Fuzz targets: one function per decoder of untrusted input, shared by the coverage-guided campaigns
//! (`fuzz/`, cargo-fuzz on nightly) and the stable smoke test (`tests/tests/fuzz_smoke.rs`).
//!
//! Each target takes arbitrary bytes and panics only when a property of the decoder fails, never because
//! the input is bad: refusal must be an error value. Beyond "no panic" each asserts what must hold for
//! what it accepts: a canonical (borsh) decoder's output re-encodes to exactly its input, a value it
//! accepts respects the size limit it was given (one byte less of limit refuses it, one trailing byte more
//! refuses it), and the counts checked after decoding (batch sizes, blocks per sync response) hold. Text
//! formats (genesis JSON, config TOML, key files, API bodies) are checked for their bounds and for a
//! render-and-parse round trip of what they accept. See docs/fuzzing.md.

use std::fmt::Debug;
use std::path::Path;
use std::sync::OnceLock;

use borsh::{BorshDeserialize, BorshSerialize};
use ledger_core::block::Parent;
use ledger_core::cert::CommitSig;
use ledger_core::encoding::{self, DecodeError};
use ledger_core::genesis::{GENESIS_ACCOUNTS_MAX, validate_chain_id};
use ledger_core::keyfile;
use ledger_core::params::{BLOCK_BYTES_MAX_CEILING, MONIKER_BYTES_MAX, TX_BYTES_MAX_CEILING, VALIDATORS_MAX};
use ledger_core::{
    Block, BlockError, BlockHeader, CommitCertificate, ConsensusParams, Genesis, GenesisAccount, Hash, Height, Keypair,
    Proposal, Round, SignedProposal, SignedTransaction, SignedVote, Transaction, TxError, Validator, ValidatorSet,
    Vote, VoteKind,
};
use node::api::{BatchRequest, SubmitRequest};
use node::wire::{
    self, GossipMessage, ProposalMessage, SYNC_BLOCKS_MAX, SYNC_REQUEST_BYTES_MAX, SyncRequest, SyncResponse,
    TX_BATCH_MAX, TopicKind, WireError,
};
use wallet_cli::keystore::{self, KeyFile};

/// A target: its name (the corpus directory and the cargo-fuzz target name) and its body.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, in the order docs/fuzzing.md lists them.
pub const TARGETS: &[Target] = &[
    ("wire_gossip", wire_gossip),
    ("wire_sync_request", wire_sync_request),
    ("wire_sync_response", wire_sync_response),
    ("tx", tx),
    ("block", block),
    ("vote", vote),
    ("cert", cert),
    ("genesis_json", genesis_json),
    ("config_toml", config_toml),
    ("keystore", keystore),
    ("api_submit", api_submit),
    ("api_batch", api_batch),
];

/// The body of the target called `name`.
pub fn target(name: &str) -> Option<fn(&[u8])> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, f)| *f)
}

// ---- fixture: a small chain the seeds are built from and blocks are checked against -----------------

/// Chain id of the fixture genesis.
pub const CHAIN_ID: &str = "fuzz-chain";

/// A genesis with four validators, its first two blocks and the certificate of the first.
pub struct Fixture {
    pub keys: Vec<Keypair>,
    pub genesis: Genesis,
    pub set: ValidatorSet,
    /// The governance state before block 1 and after it.
    pub gov0: ledger_core::governance::GovState,
    pub gov1: ledger_core::governance::GovState,
    pub block1: Block,
    pub cert1: CommitCertificate,
    pub block2: Block,
    pub cert2: CommitCertificate,
}

fn transfer(from: &Keypair, to: &Keypair, nonce: u64, memo: &str) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID.into(),
        sender: from.public(),
        recipient: to.public(),
        amount: 10 + nonce,
        fee: 1,
        nonce,
        expiry_height: 1000,
        memo: memo.into(),
    }
    .sign(from)
}

fn block_at(
    height: u64,
    prev: Hash,
    proposer: &Keypair,
    txs: Vec<SignedTransaction>,
    last_commit: Option<CommitCertificate>,
    set_hash: Hash,
) -> Block {
    let ids: Vec<Hash> = txs.iter().map(SignedTransaction::id).collect();
    Block {
        header: BlockHeader {
            version: ledger_core::PROTOCOL_VERSION,
            chain_id: CHAIN_ID.into(),
            height: Height(height),
            prev_block_hash: prev,
            timestamp_ms: 1_700_000_000_000 + height,
            proposer: proposer.public(),
            tx_count: txs.len() as u32,
            tx_root: ledger_core::merkle::root(&ids),
            state_root: Hash::ZERO,
            last_commit_hash: last_commit.as_ref().map_or(Hash::ZERO, CommitCertificate::hash),
            validators_hash: set_hash,
            next_validators_hash: set_hash,
            ops_hash: Hash::ZERO,
            gov_root: Hash::ZERO,
        },
        txs,
        last_commit,
        approvals: Vec::new(),
        evidence: Vec::new(),
    }
}

fn certify(keys: &[Keypair], block: &Block, signers: &[u16]) -> CommitCertificate {
    let signatures = signers
        .iter()
        .map(|&i| {
            let vote = Vote {
                kind: VoteKind::Precommit,
                height: block.height(),
                round: Round(0),
                block_hash: Some(block.hash()),
                validator: keys[usize::from(i)].public(),
            }
            .sign(CHAIN_ID, &keys[usize::from(i)]);
            CommitSig { validator_index: i, signature: vote.signature }
        })
        .collect();
    CommitCertificate { height: block.height(), round: Round(0), block_hash: block.hash(), signatures }
}

/// The fixture, built once.
pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys: Vec<Keypair> = (1..=6u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let validators: Vec<Validator> = keys[..4]
            .iter()
            .enumerate()
            .map(|(i, k)| Validator { public_key: k.public(), power: 1 + i as u64, moniker: format!("v{i}") })
            .collect();
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            genesis_time_ms: 1_700_000_000_000,
            protocol_version: ledger_core::PROTOCOL_VERSION,
            validators,
            accounts: keys[4..].iter().map(|k| GenesisAccount { address: k.public(), balance: 1_000_000 }).collect(),
            params: ConsensusParams::default(),
        };
        let set = genesis.validator_set().expect("fixture validator set");
        let block1 = block_at(
            1,
            genesis.hash(),
            &keys[0],
            vec![transfer(&keys[4], &keys[5], 0, ""), transfer(&keys[5], &keys[4], 0, "rent")],
            None,
            set.hash(),
        );
        let cert1 = certify(&keys, &block1, &[1, 2, 3]);
        let block2 = block_at(
            2,
            block1.hash(),
            &keys[1],
            vec![transfer(&keys[4], &keys[5], 1, "x")],
            Some(cert1.clone()),
            set.hash(),
        );
        let cert2 = certify(&keys, &block2, &[0, 1, 2, 3]);
        let gov0 = ledger_core::governance::GovState::genesis(set.clone());
        let gov1 = gov0.apply_block(CHAIN_ID, Height(1), &[], &[]).expect("an empty block applies").0;
        Fixture { keys, genesis, set, gov0, gov1, block1, cert1, block2, cert2 }
    })
}

// ---- shared properties of canonical decoders ---------------------------------------------------------

/// The canonical rule for a value `decode` accepted from `data` under limit `max`: it re-encodes to exactly
/// `data`, a limit one byte smaller refuses it, and a trailing byte is refused.
pub fn assert_canonical<T, E: Debug>(
    what: &str,
    data: &[u8],
    max: usize,
    value: &T,
    encode: impl Fn(&T) -> Vec<u8>,
    decode: impl Fn(&[u8], usize) -> Result<T, E>,
) {
    assert!(data.len() <= max, "{what}: accepted {} bytes under a limit of {max}", data.len());
    assert_eq!(encode(value), data, "{what}: the decoded value does not re-encode to its input");
    if !data.is_empty() {
        assert!(
            decode(data, data.len() - 1).is_err(),
            "{what}: accepted {} bytes under a limit one smaller",
            data.len()
        );
    }
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(decode(&longer, max.saturating_add(1)).is_err(), "{what}: accepted a trailing byte");
}

/// `encoding::decode` under `max`, with the canonical rule checked on success and the size rule on input
/// above the limit.
fn canonical<T: BorshSerialize + BorshDeserialize>(what: &str, data: &[u8], max: usize) -> Option<T> {
    let result = encoding::decode::<T>(data, max);
    if data.len() > max {
        assert!(
            matches!(result, Err(DecodeError::TooLarge { .. })),
            "{what}: input above the limit not refused as too large"
        );
    }
    let value = result.ok()?;
    assert_canonical(what, data, max, &value, |v| encoding::encode(v), |d, m| encoding::decode::<T>(d, m));
    Some(value)
}

// ---- wire (node::wire) -----------------------------------------------------------------------------

/// A gossip message under the largest transmit size of the default parameters, on both topics: at most one
/// topic accepts it, the one it belongs on; an accepted transaction batch holds 1..=TX_BATCH_MAX; what is
/// accepted is canonical.
pub fn wire_gossip(data: &[u8]) {
    let max = wire::max_transmit_size(ConsensusParams::default().block_bytes_max as usize);
    let mut accepted = 0;
    for topic in [TopicKind::Txs, TopicKind::Consensus] {
        let result = GossipMessage::decode(data, topic, max);
        if data.len() > max {
            assert!(matches!(result, Err(WireError::Decode(DecodeError::TooLarge { .. }))));
        }
        let Ok(msg) = result else { continue };
        accepted += 1;
        assert_eq!(msg.topic(), topic, "gossip: accepted a message on the wrong topic");
        assert_canonical("gossip", data, max, &msg, GossipMessage::encode, |d, m| GossipMessage::decode(d, topic, m));
        match &msg {
            GossipMessage::TxBatch(txs) => {
                assert!(!txs.is_empty() && txs.len() <= TX_BATCH_MAX, "gossip: batch of {} accepted", txs.len());
                for t in txs {
                    assert_eq!(t.encode().len(), t.encoded_len());
                }
            }
            GossipMessage::Proposal(p) => {
                let _ = p.block.hash();
                let _ = p.proposal.verify(CHAIN_ID, &fixture().set);
            }
            GossipMessage::Vote { vote, .. } => {
                let _ = vote.verify(CHAIN_ID, &fixture().set);
            }
        }
    }
    assert!(accepted <= 1, "gossip: one message accepted on both topics");
}

/// A sync request: at most `SYNC_REQUEST_BYTES_MAX` bytes, canonical.
pub fn wire_sync_request(data: &[u8]) {
    let result = SyncRequest::decode(data);
    if data.len() > SYNC_REQUEST_BYTES_MAX {
        assert!(result.is_err(), "sync request above its limit accepted");
    }
    if let Ok(r) = result {
        assert!(data.len() <= SYNC_REQUEST_BYTES_MAX);
        assert_eq!(r.encode(), data, "sync request: not canonical");
        let mut longer = data.to_vec();
        longer.push(0);
        assert!(SyncRequest::decode(&longer).is_err(), "sync request: accepted a trailing byte");
    }
}

/// A sync response under the largest frame of the default parameters: at most `SYNC_BLOCKS_MAX` blocks,
/// canonical; the certificates are checked as a syncing node would (no panic, the result is a value).
pub fn wire_sync_response(data: &[u8]) {
    let max = wire::sync_response_bytes_max(ConsensusParams::default().block_bytes_max as usize);
    let result = SyncResponse::decode(data, max);
    if data.len() > max {
        assert!(result.is_err());
    }
    let Ok(r) = result else { return };
    assert!(r.blocks.len() <= SYNC_BLOCKS_MAX as usize, "sync response: {} blocks accepted", r.blocks.len());
    assert_canonical("sync response", data, max, &r, SyncResponse::encode, SyncResponse::decode);
    let f = fixture();
    for (b, c) in &r.blocks {
        let _ = c.verify_for(CHAIN_ID, &f.set, b.height(), b.hash());
    }
}

// ---- ledger-core ------------------------------------------------------------------------------------

/// A signed transaction under the ceiling of `tx_bytes_max` and under the default limit: canonical, its
/// `encoded_len` is its length, its id is recomputed from its parts, and the stateless checks return.
pub fn tx(data: &[u8]) {
    let ceiling = TX_BYTES_MAX_CEILING as usize;
    let default_max = ConsensusParams::default().tx_bytes_max as usize;
    let result = SignedTransaction::decode(data, ceiling);
    if data.len() > ceiling {
        assert!(matches!(result, Err(TxError::TooLarge { .. })), "tx above the ceiling not refused as too large");
    }
    let under_default = SignedTransaction::decode(data, default_max);
    assert_eq!(
        under_default.is_ok(),
        result.is_ok() && data.len() <= default_max,
        "tx: the limit decides alone between two limits"
    );
    let Ok(t) = result else {
        assert!(matches!(result, Err(TxError::TooLarge { .. } | TxError::Malformed(_))));
        return;
    };
    assert_canonical("tx", data, ceiling, &t, SignedTransaction::encode, SignedTransaction::decode);
    assert_eq!(t.encoded_len(), data.len(), "tx: encoded_len differs from the encoding");
    let rebuilt = SignedTransaction::new(t.tx().clone(), *t.signature());
    assert_eq!(rebuilt.id(), t.id(), "tx: id differs from the id of its parts");
    let params = ConsensusParams::default();
    let stateless = t.check_stateless(CHAIN_ID, &params);
    if stateless.is_ok() {
        assert!(t.encoded_len() <= default_max && t.tx().memo.len() <= params.memo_bytes_max as usize);
        assert!(t.verify_signature().is_ok());
    }
}

/// A block under the ceiling of `block_bytes_max`: canonical, and checked against the fixture chain (its
/// parent is genesis at height 1, the fixture's first block otherwise); the fixture's blocks pass.
pub fn block(data: &[u8]) {
    let max = BLOCK_BYTES_MAX_CEILING as usize;
    let result = Block::decode(data, max);
    let Ok(b) = result else {
        assert!(matches!(result, Err(BlockError::Malformed(_))), "block decode refused with a non-decode error");
        return;
    };
    assert_canonical("block", data, max, &b, Block::encode, Block::decode);
    assert_eq!(b.tx_ids().len(), b.txs.len());
    let f = fixture();
    let parent = if b.height() == Height(1) {
        f.genesis.parent_of_first_block()
    } else {
        Parent {
            height: Height(1),
            hash: f.block1.hash(),
            timestamp_ms: f.block1.header.timestamp_ms,
            chain_id: &f.genesis.chain_id,
        }
    };
    let gov = if b.height() == Height(1) { &f.gov0 } else { &f.gov1 };
    let verdict = b.check_against_parent(&parent, gov, &f.genesis.params);
    if b == f.block1 || b == f.block2 {
        assert_eq!(verdict, Ok(()), "block: a fixture block is refused");
    }
    if verdict.is_ok() {
        assert_eq!(b.header.tx_count as usize, b.txs.len());
        assert!(b.txs.len() <= f.genesis.params.txs_per_block_max as usize);
        assert!(data.len() <= f.genesis.params.block_bytes_max as usize);
    }
}

/// Largest vote or proposal considered (both are under 200 bytes).
const VOTE_BYTES_MAX: usize = 1024;

/// A signed vote and a signed proposal: canonical; verification against the fixture set returns, and only
/// a fixture validator's message can verify.
pub fn vote(data: &[u8]) {
    let set = &fixture().set;
    if let Some(v) = canonical::<SignedVote>("vote", data, VOTE_BYTES_MAX)
        && v.verify(CHAIN_ID, set).is_ok()
    {
        assert!(set.index_of(&v.vote.validator).is_some());
    }
    if let Some(p) = canonical::<SignedProposal>("proposal", data, VOTE_BYTES_MAX)
        && p.verify(CHAIN_ID, set).is_ok()
    {
        assert!(set.index_of(&p.proposal.proposer).is_some());
    }
}

/// A commit certificate under the ceiling of `block_bytes_max`: canonical; verification against the fixture
/// set returns, and a certificate that verifies has strictly increasing known signers with a quorum.
pub fn cert(data: &[u8]) {
    let set = &fixture().set;
    let Some(c) = canonical::<CommitCertificate>("cert", data, BLOCK_BYTES_MAX_CEILING as usize) else { return };
    let _ = c.hash();
    if c.verify(CHAIN_ID, set).is_ok() {
        let idx: Vec<u16> = c.signatures.iter().map(|s| s.validator_index).collect();
        assert!(idx.windows(2).all(|w| w[0] < w[1]), "cert: verified with unsorted signers");
        assert!(idx.iter().all(|&i| usize::from(i) < set.len()), "cert: verified with an unknown signer");
        let power: u64 = idx.iter().filter_map(|&i| set.get(usize::from(i))).map(|v| v.power).sum();
        assert!(set.is_quorum(power), "cert: verified without a quorum");
    }
}

// ---- text formats -------------------------------------------------------------------------------------

/// The genesis JSON: what `Genesis::from_json` accepts is valid within every limit, renders to JSON that
/// parses back to the same document (same hash), and its borsh bytes decode back to it.
pub fn genesis_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(g) = Genesis::from_json(text) else { return };
    assert_eq!(g.validate(), Ok(()));
    assert!(validate_chain_id(&g.chain_id).is_ok());
    assert!(!g.validators.is_empty() && g.validators.len() <= VALIDATORS_MAX);
    assert!(g.validators.iter().all(|v| v.moniker.len() <= MONIKER_BYTES_MAX));
    assert!(g.accounts.len() <= GENESIS_ACCOUNTS_MAX);
    assert!(g.total_supply() <= u128::from(u64::MAX), "genesis: supply above u64 accepted");
    assert!(g.params.tx_bytes_max <= TX_BYTES_MAX_CEILING && g.params.block_bytes_max <= BLOCK_BYTES_MAX_CEILING);
    let again = Genesis::from_json(&g.to_json()).expect("genesis: its own JSON is refused");
    assert_eq!(again, g, "genesis: JSON round trip changed the document");
    assert_eq!(again.hash(), g.hash());
    let bytes = encoding::encode(&g);
    assert_eq!(encoding::decode::<Genesis>(&bytes, usize::MAX).as_ref(), Ok(&g), "genesis: borsh round trip");
    assert!(g.validator_set().is_ok());
}

/// The node's config.toml, parsed from a string: what is accepted respects every key's bounds, and
/// parsing is deterministic.
pub fn config_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let home = Path::new("/fuzz-home");
    let path = home.join("config.toml");
    let result = node::config::from_str(home, &path, text, &[], &[]);
    if text.len() > node::config::CONFIG_BYTES_MAX {
        assert!(matches!(result, Err(node::config::ConfigError::TooLarge { .. })));
    }
    let Ok(c) = result else { return };
    assert!(c.moniker.len() <= MONIKER_BYTES_MAX, "config: moniker of {} bytes", c.moniker.len());
    assert!(c.bootstrap_peers.len() <= node::config::BOOTSTRAP_PEERS_MAX);
    assert!((1..=10_000).contains(&c.max_peers));
    assert!(c.genesis_file != home && c.genesis_file.starts_with(home) || c.genesis_file.is_absolute());
    assert!((1..=10_000_000).contains(&c.mempool_max_txs));
    assert!(c.api.body_buffer_bytes_max >= 1 << 20);
    let again = node::config::from_str(home, &path, text, &[], &[]).expect("config: accepted once, refused twice");
    assert_eq!(format!("{again:?}"), format!("{c:?}"), "config: parsing is not deterministic");
}

/// A key file the wallet reads: at most `KEY_FILE_BYTES_MAX` bytes; a plaintext key agrees with
/// `ledger_core::keyfile` and its re-rendering; an encrypted keystore is only parsed (no password, no KDF).
pub fn keystore(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = keystore::parse_key_file(text);
    let plain = keyfile::from_plaintext_json(text);
    if text.len() > keyfile::KEY_FILE_BYTES_MAX {
        assert!(parsed.is_err() && plain.is_err(), "key file above the limit accepted");
    }
    match parsed {
        Ok(KeyFile::Plaintext(k)) => {
            let from_core = plain.expect("keystore: plaintext accepted by the wallet, refused by ledger-core");
            assert_eq!(from_core.public(), k.public());
            let rendered = keyfile::to_plaintext_json(&k, None);
            match keystore::parse_key_file(&rendered) {
                Ok(KeyFile::Plaintext(again)) => assert_eq!(again.public(), k.public()),
                _ => panic!("keystore: a re-rendered plaintext key is refused"),
            }
        }
        Ok(KeyFile::Encrypted(e)) => {
            let _ = e.stated_address().to_address_string();
            assert!(plain.is_err(), "keystore: one file is both encrypted and plaintext");
        }
        Err(_) => {}
    }
}

/// What `POST /txs` does with its body before the mempool: axum's `Json` extractor (as the handler uses it),
/// then the hex of the transaction, then `SignedTransaction::decode` under the default `tx_bytes_max`.
pub fn api_submit(data: &[u8]) {
    let Ok(axum::Json(req)) = axum::Json::<SubmitRequest>::from_bytes(data) else { return };
    let rendered = serde_json::to_vec(&req).expect("render SubmitRequest");
    let axum::Json(again) = axum::Json::<SubmitRequest>::from_bytes(&rendered).expect("submit body: own JSON refused");
    assert_eq!(again.tx, req.tx);
    submitted_tx(&req.tx);
}

/// What `POST /txs/batch` does with its body: the `Json` extractor, then each transaction as in
/// [`api_submit`].
pub fn api_batch(data: &[u8]) {
    let Ok(axum::Json(req)) = axum::Json::<BatchRequest>::from_bytes(data) else { return };
    assert!(req.txs.len() <= data.len(), "batch: more entries than body bytes");
    for t in &req.txs {
        submitted_tx(t);
    }
}

/// The handler's hex step (`decode_hex_tx`: trimmed, either case) and the mempool's decode.
fn submitted_tx(text: &str) {
    let Ok(bytes) = hex::decode(text.trim()) else { return };
    let max = ConsensusParams::default().tx_bytes_max as usize;
    if let Ok(t) = SignedTransaction::decode(&bytes, max) {
        assert_eq!(t.encode(), bytes, "api: accepted a non-canonical transaction");
        assert!(bytes.len() <= max);
    }
}

// ---- seeds ------------------------------------------------------------------------------------------

/// A few valid inputs per target, built from the fixture: the committed corpora start from these
/// (`cargo run --release -p tests --bin fuzz_seeds`), and the smoke test mutates them.
pub fn seeds(name: &str) -> Vec<Vec<u8>> {
    let f = fixture();
    let k = &f.keys;
    let tx1 = transfer(&k[4], &k[5], 0, "");
    let tx2 = transfer(&k[5], &k[4], 3, "memo with text");
    let vote = Vote {
        kind: VoteKind::Prevote,
        height: Height(2),
        round: Round(1),
        block_hash: Some(f.block2.hash()),
        validator: k[1].public(),
    }
    .sign(CHAIN_ID, &k[1]);
    let nil = Vote {
        kind: VoteKind::Precommit,
        height: Height(2),
        round: Round(0),
        block_hash: None,
        validator: k[0].public(),
    }
    .sign(CHAIN_ID, &k[0]);
    let proposal = Proposal {
        height: Height(2),
        round: Round(0),
        pol_round: None,
        block_hash: f.block2.hash(),
        proposer: k[1].public(),
    }
    .sign(CHAIN_ID, &k[1]);
    let reproposal =
        Proposal { round: Round(3), pol_round: Some(Round(1)), ..proposal.proposal.clone() }.sign(CHAIN_ID, &k[2]);
    match name {
        "wire_gossip" => vec![
            GossipMessage::TxBatch(vec![tx1.clone()]).encode(),
            GossipMessage::TxBatch(vec![tx1.clone(), tx2.clone()]).encode(),
            GossipMessage::Vote { vote: vote.clone(), resend: 0 }.encode(),
            GossipMessage::Vote { vote: nil.clone(), resend: 7 }.encode(),
            GossipMessage::Proposal(Box::new(ProposalMessage {
                proposal: proposal.clone(),
                block: f.block2.clone(),
                resend: 0,
            }))
            .encode(),
        ],
        "wire_sync_request" => vec![
            SyncRequest { from_height: Height(1), max_count: 64 }.encode(),
            SyncRequest { from_height: Height(u64::MAX), max_count: u32::MAX }.encode(),
        ],
        "wire_sync_response" => vec![
            SyncResponse { blocks: vec![] }.encode(),
            SyncResponse { blocks: vec![(f.block1.clone(), f.cert1.clone())] }.encode(),
            SyncResponse { blocks: vec![(f.block1.clone(), f.cert1.clone()), (f.block2.clone(), f.cert2.clone())] }
                .encode(),
        ],
        "tx" => vec![tx1.encode(), tx2.encode()],
        "block" => vec![f.block1.encode(), f.block2.encode()],
        "vote" => vec![
            encoding::encode(&vote),
            encoding::encode(&nil),
            encoding::encode(&proposal),
            encoding::encode(&reproposal),
        ],
        "cert" => vec![encoding::encode(&f.cert1), encoding::encode(&f.cert2)],
        "genesis_json" => vec![f.genesis.to_json().into_bytes()],
        "config_toml" => vec![
            node::config::template("fuzz-node").into_bytes(),
            b"genesis_file = \"g.json\"\n[p2p]\nbootstrap_peers = [\"/ip4/127.0.0.1/tcp/26601/p2p/12D3KooWD3eckifWpRn9wQpMG9R9hX3sD158z7EqHWmweQAJU5SA\"]\nmax_peers = 3\n[api]\nunlimited_clients = [\"::1\"]\n[consensus]\nmin_block_interval_ms = 40\n".to_vec(),
        ],
        "keystore" => {
            let mut out = vec![keyfile::to_plaintext_json(&k[4], Some("dev key")).into_bytes()];
            // A cheap KDF so seeding is fast; the target never runs the KDF, it parses.
            let cost = keystore::KdfCost { m_cost_kib: 8 * 1024, t_cost: 1, p_cost: 1 };
            if let Ok(text) = keystore::encrypt(&k[5], b"pw", cost) {
                out.push(text.into_bytes());
            }
            out
        }
        "api_submit" => vec![
            serde_json::to_vec(&SubmitRequest { tx: hex::encode(tx1.encode()) }).expect("json"),
            format!("{{\"tx\": \" {} \"}}", hex::encode_upper(tx2.encode())).into_bytes(),
        ],
        "api_batch" => vec![
            serde_json::to_vec(&BatchRequest { txs: vec![hex::encode(tx1.encode()), hex::encode(tx2.encode())] })
                .expect("json"),
            serde_json::to_vec(&BatchRequest { txs: vec!["zz".into(), String::new(), hex::encode(tx2.encode())] })
                .expect("json"),
        ],
        _ => Vec::new(),
    }
}
