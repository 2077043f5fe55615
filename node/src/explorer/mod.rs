//! The explorer: a web page served by every `ledgerd` at `/explorer/`, for people who would rather look
//! than curl. Its assets (plain ES modules, one stylesheet, one HTML page) are compiled into the binary
//! with `include_str!`, so a node and a browser are all a user needs: no build step, no other server.
//!
//! The page reads the same JSON API as every other client (`/status`, `/blocks`, `/txs/{id}`,
//! `/accounts/{a}/txs`, `/validators`, `/peers`, `/events`, `/genesis`) and checks a committed
//! transaction's Merkle proof and commit certificate itself (`verify.js`, `blake3.js`).
//!
//! **Invariant:** the explorer makes no request to any host but the node that served it. The
//! `Content-Security-Policy` sent with every asset (`default-src 'self'`, no inline script) makes the browser
//! enforce it.
//!
//! Routes: `GET /explorer/` (the page), `GET /explorer/{file}` (an asset), `GET /explorer` (redirect). `GET /`
//! redirects a browser (`Accept` with `text/html`) here, see [`crate::api`]. The routes are not in the
//! OpenAPI document, which describes the JSON API.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::api::{ApiError, ApiState};

/// Where the explorer lives.
pub const BASE: &str = "/explorer/";

/// The policy sent with every explorer answer: everything from this node only.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One compiled-in asset.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_str!("assets/index.html") },
    Asset { name: "style.css", content_type: "text/css; charset=utf-8", body: include_str!("assets/style.css") },
    Asset { name: "app.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/app.js") },
    Asset { name: "pages.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/pages.js") },
    Asset { name: "util.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/util.js") },
    Asset { name: "blake3.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/blake3.js") },
    Asset { name: "verify.js", content_type: "text/javascript; charset=utf-8", body: include_str!("assets/verify.js") },
    Asset {
        name: "blake3_vectors.json",
        content_type: "application/json",
        body: include_str!("assets/blake3_vectors.json"),
    },
    Asset { name: "favicon.svg", content_type: "image/svg+xml", body: include_str!("assets/favicon.svg") },
];

/// The explorer's routes, to merge into the API router (they go through the same limits).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/explorer", get(|| async { Redirect::permanent(BASE) }))
        .route("/explorer/", get(|| async { asset("index.html") }))
        .route("/explorer/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
        .route("/explorer/lookup/{query}", get(lookup))
}

/// Where the search box sends a query: `{"kind": "block" | "tx" | "account" | "none", "target": "#/...",
/// "message"}`, always 200 for a query that fits (so a miss is not a failed request in the browser's console).
/// A 64-hex query is a committed transaction, else a block hash, else a transaction id the transaction page
/// asks `/txs/{id}` about (pending, rejected, evicted or unknown).
async fn lookup(State(s): State<ApiState>, Path(query): Path<String>) -> Response {
    let q = query.trim().to_string();
    if q.len() > QUERY_BYTES_MAX {
        return ApiError::bad_request("bad_query", format!("a search is at most {QUERY_BYTES_MAX} bytes"))
            .into_response();
    }
    let found = |kind: &str, target: String| Json(serde_json::json!({"kind": kind, "target": target}));
    if !q.is_empty() && q.len() <= 19 && q.bytes().all(|b| b.is_ascii_digit()) {
        let Ok(h) = q.parse::<u64>() else { return none(&q) };
        return match s.read(|st| st.latest_height()).await {
            Ok(tip) if h >= 1 && h <= tip.0 => found("block", format!("#/block/{h}")).into_response(),
            Ok(tip) => none(&format!("no block at height {h} (the chain is at {})", tip.0)),
            Err(e) => e.into_response(),
        };
    }
    if ledger_core::PublicKey::parse_address(&q).is_ok() {
        return found("account", format!("#/account/{q}")).into_response();
    }
    let Ok(hash) = ledger_core::Hash::from_hex(&q) else {
        return none(&format!("{:?} is not a height, a block hash, a transaction id or an address", truncate(&q)));
    };
    let lookup = s
        .read(move |st| {
            if st.tx_location(&hash)?.is_some() {
                return Ok("tx");
            }
            Ok(if st.height_of(&hash)?.is_some() { "block" } else { "maybe_tx" })
        })
        .await;
    let lower = q.to_ascii_lowercase();
    match lookup {
        Ok("block") => found("block", format!("#/block/{lower}")).into_response(),
        Ok(_) => found("tx", format!("#/tx/{lower}")).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Longest search query accepted.
pub const QUERY_BYTES_MAX: usize = 256;

fn none(message: &str) -> Response {
    Json(serde_json::json!({"kind": "none", "target": null, "message": message})).into_response()
}

/// Whether a request with this `Accept` header comes from a browser that wants a page rather than JSON:
/// it names `text/html` and does not put `application/json` first.
pub fn wants_html(accept: Option<&HeaderValue>) -> bool {
    let Some(accept) = accept.and_then(|v| v.to_str().ok()) else { return false };
    let first = accept.split(',').next().unwrap_or_default().trim();
    accept.contains("text/html") && !first.starts_with("application/json")
}

fn asset(name: &str) -> Response {
    let Some(a) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::not_found(format!("no explorer asset {:?}", truncate(name))).into_response();
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        a.body,
    )
        .into_response()
}

fn truncate(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn browsers_get_the_page_clients_get_json() {
        let h = |s: &'static str| Some(HeaderValue::from_static(s));
        assert!(wants_html(h("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8").as_ref()));
        assert!(!wants_html(h("application/json").as_ref()));
        assert!(!wants_html(h("application/json, text/html").as_ref()));
        assert!(!wants_html(h("*/*").as_ref()));
        assert!(!wants_html(None));
    }

    #[test]
    fn every_asset_is_served_and_unknown_names_are_404() {
        for a in ASSETS {
            assert_eq!(asset(a.name).status(), StatusCode::OK, "{}", a.name);
            assert!(!a.body.is_empty());
        }
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("nope.js").status(), StatusCode::NOT_FOUND);
    }

    /// The page loads nothing from another host: no absolute URL in any asset's references.
    #[test]
    fn assets_reference_no_other_host() {
        for a in ASSETS {
            // The SVG namespace is a name, not a request.
            let body = a.body.replace("http://www.w3.org/2000/svg", "");
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!body.contains(needle), "{} contains {needle}", a.name);
            }
        }
    }
}

/// The BLAKE3 vectors shared with the explorer's JavaScript implementation (`assets/blake3.js`): generated
/// here from the Rust `blake3` crate and `ledger_core`'s domains, checked in as `assets/blake3_vectors.json`,
/// and checked by both sides (this test; `tests/explorer/unit.mjs`, run by `tests/tests/explorer.rs`).
/// `UPDATE_VECTORS=1 cargo test -p node --lib explorer` rewrites the file.
#[cfg(test)]
mod vectors {
    use ledger_core::hash::{Domain, Hash};

    const LENGTHS: &[usize] = &[
        0, 1, 2, 63, 64, 65, 127, 128, 1023, 1024, 1025, 2048, 2049, 3072, 3073, 4096, 4097, 8192, 8193, 31744, 102400,
    ];
    const KEY: &[u8; 32] = b"whats the Elvish word for friend";
    const DOMAINS: &[Domain] = &[
        Domain::TxId,
        Domain::BlockHeader,
        Domain::MerkleLeaf,
        Domain::MerkleNode,
        Domain::AddressChecksum,
        Domain::TxSignature,
        Domain::VoteSignature,
    ];

    fn input(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    fn generate() -> serde_json::Value {
        let cases: Vec<serde_json::Value> = LENGTHS
            .iter()
            .map(|&n| {
                let data = input(n);
                serde_json::json!({
                    "input_len": n,
                    "hash": hex::encode(blake3::hash(&data).as_bytes()),
                    "keyed_hash": hex::encode(blake3::keyed_hash(KEY, &data).as_bytes()),
                    "derive_key": hex::encode(blake3::derive_key("ledger v1 explorer test vector", &data)),
                })
            })
            .collect();
        let domains: Vec<serde_json::Value> = DOMAINS
            .iter()
            .flat_map(|&d| {
                [0usize, 32, 200].map(move |n| {
                    serde_json::json!({"context": d.context(), "input_len": n, "digest": Hash::digest(d, &input(n)).to_hex()})
                })
            })
            .collect();
        // Merkle trees of several sizes (ids: digests of the index), every leaf's proof; and a vote's
        // signing message (what a certificate's signatures sign), as `verify.js` rebuilds them.
        let merkle: Vec<serde_json::Value> = [1usize, 2, 3, 4, 5, 7, 8, 13]
            .iter()
            .map(|&n| {
                let ids: Vec<Hash> = (0..n as u64).map(|i| Hash::digest(Domain::TxId, &i.to_le_bytes())).collect();
                let proofs: Vec<serde_json::Value> = (0..n)
                    .map(|i| {
                        let p = ledger_core::merkle::prove(&ids, i).expect("index in range");
                        serde_json::json!({"index": p.index, "leaf_count": p.leaf_count,
                            "siblings": p.siblings.iter().map(Hash::to_hex).collect::<Vec<_>>()})
                    })
                    .collect();
                serde_json::json!({"ids": ids.iter().map(Hash::to_hex).collect::<Vec<_>>(),
                    "root": ledger_core::merkle::root(&ids).to_hex(), "proofs": proofs})
            })
            .collect();
        let key = ledger_core::PublicKey([7; 32]);
        let vote = ledger_core::Vote {
            kind: ledger_core::VoteKind::Precommit,
            height: ledger_core::Height(123_456_789_012),
            round: ledger_core::Round(3),
            block_hash: Some(Hash::digest(Domain::BlockHeader, b"block")),
            validator: key,
        };
        let vote_bytes = ledger_core::encoding::encode(&vote);
        let vote_vector = serde_json::json!({
            "chain_id": "localnet",
            "height": 123_456_789_012u64,
            "round": 3,
            "block_hash": Hash::digest(Domain::BlockHeader, b"block").to_hex(),
            "validator": hex::encode(key.0),
            "vote_bytes": hex::encode(&vote_bytes),
            "signing_message": ledger_core::crypto::signing_message(Domain::VoteSignature, "localnet", &vote_bytes).to_hex(),
        });
        serde_json::json!({
            "comment": "generated by node/src/explorer/mod.rs (vectors test); input i is the bytes (0..input_len).map(|i| i % 251)",
            "transitions": transitions(),
            "merkle": merkle,
            "vote": vote_vector,
            "key": String::from_utf8_lossy(KEY),
            "derive_key_context": "ledger v1 explorer test vector",
            "cases": cases,
            "domains": domains,
        })
    }

    /// Two validator-set changes as `GET /validators/transitions` gives them, signed by real keys (Ed25519
    /// signatures are deterministic, so the vectors are stable): genesis set A (seeds 1-4) → B from height 5
    /// (adds seed 5) → C from height 9 (drops seed 1), for `verify.js`'s `followTransitions`.
    fn transitions() -> serde_json::Value {
        use ledger_core::{BlockHeader, CommitCertificate, CommitSig, Keypair, Round, Validator, ValidatorSet};
        const CHAIN: &str = "localnet";
        let keys: Vec<Keypair> = (1..=5u8).map(|i| Keypair::from_seed(&[i; 32])).collect();
        let set = |ks: &[Keypair]| {
            ValidatorSet::new(
                ks.iter()
                    .enumerate()
                    .map(|(i, k)| Validator { public_key: k.public(), power: 10, moniker: format!("v{i}") })
                    .collect(),
            )
            .expect("valid set")
        };
        let (ka, kb, kc) = (&keys[..4], &keys[..5], &keys[1..5]);
        let (a, b, c) = (set(ka), set(kb), set(kc));
        let transition = |first: u64, before: &ValidatorSet, signers: &[Keypair], new: &ValidatorSet| {
            let header = BlockHeader {
                version: ledger_core::PROTOCOL_VERSION,
                chain_id: CHAIN.into(),
                height: ledger_core::Height(first - 1),
                prev_block_hash: Hash::digest(Domain::BlockHeader, &first.to_le_bytes()),
                timestamp_ms: 1_700_000_000_000 + first,
                proposer: signers[0].public(),
                tx_count: 0,
                tx_root: Hash::ZERO,
                state_root: Hash::ZERO,
                last_commit_hash: Hash::ZERO,
                validators_hash: before.hash(),
                next_validators_hash: new.hash(),
                ops_hash: Hash::ZERO,
                gov_root: Hash::ZERO,
            };
            let signatures = signers
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    let vote = ledger_core::Vote {
                        kind: ledger_core::VoteKind::Precommit,
                        height: header.height,
                        round: Round(0),
                        block_hash: Some(header.hash()),
                        validator: k.public(),
                    };
                    CommitSig { validator_index: i as u16, signature: vote.sign(CHAIN, k).signature }
                })
                .collect();
            let cert =
                CommitCertificate { height: header.height, round: Round(0), block_hash: header.hash(), signatures };
            cert.verify(CHAIN, before).expect("the set before certifies it");
            serde_json::json!({
                "first_height": first,
                "validators_hex": hex::encode(ledger_core::encoding::encode(new)),
                "header_hex": hex::encode(ledger_core::encoding::encode(&header)),
                "certificate_hex": hex::encode(ledger_core::encoding::encode(&cert)),
            })
        };
        serde_json::json!({
            "chain_id": CHAIN,
            "genesis_validators": a.validators(),
            "transitions": [transition(5, &a, &ka[..3], &b), transition(9, &b, &kb[..4], &c)],
            "reached_first_height": 9,
            "reached_hash": c.hash().to_hex(),
        })
    }

    #[test]
    fn checked_in_vectors_are_the_rust_implementations_answers() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/explorer/assets/blake3_vectors.json");
        let want = generate();
        if std::env::var_os("UPDATE_VECTORS").is_some() {
            let text = serde_json::to_string_pretty(&want).expect("json") + "\n";
            std::fs::write(&path, text).expect("write vectors");
        }
        let have: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read vectors")).expect("vectors are JSON");
        assert_eq!(have, want, "rerun with UPDATE_VECTORS=1 to regenerate {}", path.display());
    }
}
