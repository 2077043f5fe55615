//! Route handlers: parse, read storage or ask the [`NodeHandle`](super::NodeHandle), shape the answer.
//! Each is annotated with `#[utoipa::path]`, from which `/openapi.json` is generated.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, MissingJsonContentType, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger_core::{Address, Hash, Height, SignedTransaction, TxId, merkle};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::{ApiError, ErrorBody, ErrorView};
use super::guard::{ClientAddr, Held, Refusal};
use super::state::{ApiState, NodeStatus, unix_time_ms};
use super::views::*;
use crate::mempool::TxOutcome;

pub(crate) type ApiResult<T> = Result<Json<T>, ApiError>;

// ---- parsing helpers -------------------------------------------------------------------------------

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t).map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
}

pub(crate) fn json_body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(t)| t).map_err(json_error)
}

fn json_error(e: JsonRejection) -> ApiError {
    let status = e.status();
    ApiError::new(status, super::error::code_for_status(status), e.body_text())
}

/// The `Content-Type` test of axum's `Json` extractor: `application/json` or `application/<x>+json`, for the
/// handlers that read the body before they parse it.
fn json_content_type(headers: &HeaderMap) -> bool {
    let Some(mime) =
        headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<mime::Mime>().ok())
    else {
        return false;
    };
    mime.type_() == "application" && (mime.subtype() == "json" || mime.suffix().is_some_and(|n| n == "json"))
}

/// The OpenAPI patterns of path parameters; the parsers below accept exactly these.
pub(crate) const HASH_PATTERN: &str = "^[0-9a-fA-F]{64}$";
pub(crate) const ADDRESS_PATTERN: &str = "^ldg[0-9a-fA-F]{72}$";
pub(crate) const HEIGHT_PATTERN: &str = "^(latest|0|[1-9][0-9]{0,18})$";
/// Heights, `before` and `from_height` are at most this (they are `int64` in the OpenAPI document).
pub(crate) const HEIGHT_PARAM_MAX: u64 = i64::MAX as u64;

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn parse_hash(s: &str) -> Result<Hash, ApiError> {
    if s.len() != 64 || !is_hex(s) {
        return Err(ApiError::bad_request(
            "bad_hash",
            format!("a hash is 64 hex characters ({HASH_PATTERN}), got {} characters", s.chars().count()),
        ));
    }
    Hash::from_hex(s).map_err(|e| ApiError::bad_request("bad_hash", e.to_string()))
}

fn parse_address(s: &str) -> Result<Address, ApiError> {
    let well_formed = s.strip_prefix(ledger_core::crypto::ADDRESS_PREFIX).is_some_and(is_hex)
        && s.len() == ledger_core::crypto::ADDRESS_TEXT_LEN;
    if !well_formed {
        return Err(ApiError::bad_request(
            "bad_address",
            format!("expected `ldg` and 72 hex characters ({ADDRESS_PATTERN})"),
        ));
    }
    Address::parse_address(s).map_err(|e| ApiError::bad_request("bad_address", e.to_string()))
}

/// A height path segment: `latest`, or a decimal integer without sign or leading zero, at most 2^63 - 1
/// ([`HEIGHT_PATTERN`]; `+1` and `01` are refused).
fn parse_height(s: &str, tip: Height) -> Result<Height, ApiError> {
    if s == "latest" {
        return Ok(tip);
    }
    let canonical =
        !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    match s.parse::<u64>() {
        Ok(h) if canonical && h <= HEIGHT_PARAM_MAX => Ok(Height(h)),
        _ => Err(ApiError::bad_request(
            "bad_height",
            format!(
                "height must be `latest` or a decimal integer without sign or leading zero ({HEIGHT_PATTERN}), got {s:?}"
            ),
        )),
    }
}

/// A height-like query parameter (`before`, `from_height`): at most 2^63 - 1.
fn height_param(name: &str, v: Option<u64>) -> Result<Option<u64>, ApiError> {
    match v {
        Some(h) if h > HEIGHT_PARAM_MAX => {
            Err(ApiError::bad_request("bad_query", format!("{name} must be at most {HEIGHT_PARAM_MAX}")))
        }
        v => Ok(v),
    }
}

pub(crate) fn page_limit(state: &ApiState, limit: Option<usize>) -> Result<usize, ApiError> {
    let c = &state.inner.config;
    match limit {
        None => Ok(c.page_limit_default),
        Some(0) => Err(ApiError::bad_request("bad_query", "limit must be at least 1")),
        Some(n) if n > c.page_limit_max => {
            Err(ApiError::bad_request("bad_query", format!("limit {n} is above the maximum {}", c.page_limit_max)))
        }
        Some(n) => Ok(n),
    }
}

// ---- node ------------------------------------------------------------------------------------------

/// Codes of [`HealthReason`], stable: monitoring matches on them.
pub mod health_code {
    /// No connected peer while the validator set has more than one validator.
    pub const NO_PEERS: &str = "no_peers";
    /// No block committed for the stall window.
    pub const STALLED: &str = "stalled";
    /// The double-sign guard saw another process sign with this validator's key and stopped signing.
    pub const SIGNER_HALTED: &str = "signer_halted";
    /// Storage could not be read.
    pub const STORAGE_UNREADABLE: &str = "storage_unreadable";
}

/// Why `node` is unhealthy at `now_ms`, in a fixed order (empty when healthy). Pure, for tests.
pub fn health_reasons(node: &NodeStatus, n_validators: usize, now_ms: u64, stall_after_ms: u64) -> Vec<HealthReason> {
    let reason = |code: &str, message: String| HealthReason { code: code.into(), message };
    let mut reasons = Vec::new();
    if node.signer.mode() == "halted" {
        let detail = node.signer.detail.as_deref().unwrap_or("another process signs with this validator's key");
        reasons.push(reason(health_code::SIGNER_HALTED, format!("the double-sign guard halted signing: {detail}")));
    }
    if node.n_peers == 0 && n_validators > 1 {
        reasons.push(reason(
            health_code::NO_PEERS,
            format!("no connected peers while the validator set has {n_validators} validators"),
        ));
    }
    let since_ms = now_ms.saturating_sub(node.last_commit_local_ms);
    if since_ms > stall_after_ms {
        reasons.push(reason(
            health_code::STALLED,
            format!(
                "no block committed for {} ms (stall window {stall_after_ms} ms); consensus is at height {} round {}",
                since_ms, node.consensus_height.0, node.round.0
            ),
        ));
    }
    reasons
}

#[utoipa::path(get, path = "/health", tag = "node",
    responses((status = 200, description = "Healthy: status `ok`", body = HealthView),
              (status = 503, description = "Unhealthy: status `unhealthy` with reasons whose codes are no_peers, stalled, signer_halted, storage_unreadable (under overload the error body with code `overloaded` instead)", body = HealthView)))]
pub async fn health(State(s): State<ApiState>) -> Response {
    let node = s.inner.node.status().await;
    let mut reasons = Vec::new();
    // The storage error itself is logged by `ApiError`; the answer does not carry it.
    if s.read(|st| st.latest_height()).await.is_err() {
        reasons.push(HealthReason {
            code: health_code::STORAGE_UNREADABLE.into(),
            message: "storage is not readable (details in the node's log)".into(),
        });
    }
    reasons.extend(health_reasons(&node, s.inner.current_validators().len(), unix_time_ms(), s.inner.stall_after_ms));
    if reasons.is_empty() {
        return Json(HealthView { status: "ok".into(), reasons }).into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(HealthView { status: "unhealthy".into(), reasons })).into_response()
}

#[utoipa::path(get, path = "/livez", tag = "node",
    responses((status = 200, description = "The process serves HTTP (reads neither storage nor node state)", body = LivezView)))]
pub async fn livez() -> Json<LivezView> {
    Json(LivezView { status: "up".into() })
}

#[utoipa::path(get, path = "/status", tag = "node",
    responses((status = 200, description = "Chain and node status", body = StatusView)))]
pub async fn status(State(s): State<ApiState>) -> ApiResult<StatusView> {
    let node = s.inner.node.status().await;
    let (height, latest) = s
        .read(|st| {
            let h = st.latest_height()?;
            let b = if h == Height::GENESIS { None } else { st.block(h)? };
            Ok((h, b.map(|b| (b.hash(), b.header.timestamp_ms))))
        })
        .await?;
    let g = &s.inner.genesis;
    Ok(Json(StatusView {
        chain_id: g.chain_id.clone(),
        genesis_hash: s.inner.genesis_hash.to_hex(),
        node_id: node.node_id,
        height: height.0,
        latest_block_hash: latest.map(|(h, _)| h.to_hex()),
        latest_block_time: latest.map_or(g.genesis_time_ms, |(_, t)| t),
        latest_block_time_utc: rfc3339_ms(latest.map_or(g.genesis_time_ms, |(_, t)| t)),
        catching_up: node.catching_up,
        n_peers: node.n_peers,
        validator: node.validator.map(|v| v.to_address_string()),
        validator_reason: node.validator_reason,
        signer: SignerView {
            mode: node.signer.mode().into(),
            sign_floor: node.signer.sign_floor,
            detail: node.signer.detail,
        },
        consensus_height: node.consensus_height.0,
        consensus_round: node.round.0,
        protocol_version: ledger_core::PROTOCOL_VERSION,
        sync: node.sync.map(|p| SyncView {
            target_height: p.target_height,
            blocks_per_second: p.blocks_per_sec_x100 as f64 / 100.0,
            eta_seconds: p.eta_secs,
        }),
    }))
}

#[utoipa::path(get, path = "/genesis", tag = "node",
    responses((status = 200, description = "The genesis document, as in genesis.json", body = serde_json::Value)))]
pub async fn genesis(State(s): State<ApiState>) -> Response {
    let json = s.inner.genesis_json.get_or_init(|| s.inner.genesis.to_json());
    ([(header::CONTENT_TYPE, "application/json")], json.clone()).into_response()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ValidatorsQuery {
    /// Last height of the window (default: the latest height whose certificate is on chain; a higher value
    /// is lowered to it). Every node answers the same for the same `to_height`.
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub to_height: Option<u64>,
}

#[utoipa::path(get, path = "/validators", tag = "node", params(ValidatorsQuery),
    responses((status = 200, description = "Validator set with proposal and signature counters over a window of the most recent certified heights, counted from the certificates carried on chain (see counted_from_height)", body = ValidatorsView),
              (status = 400, description = "Bad query", body = ErrorView)))]
pub async fn validators(
    State(s): State<ApiState>,
    q: Result<Query<ValidatorsQuery>, QueryRejection>,
) -> ApiResult<ValidatorsView> {
    let q = query(q)?;
    height_param("to_height", q.to_height)?;
    let state = s.clone();
    let window = s.inner.config.validator_stats_window.max(1);
    let (heights, tip, gov) = s
        .read(move |st| {
            let inner = &state.inner;
            let tip = st.latest_height()?;
            let gov = st.gov_state()?;
            // Height h's certificate is on chain once block h + 1 (its `last_commit`) is committed.
            let certified = tip.0.saturating_sub(1);
            let to = q.to_height.map_or(certified, |t| t.min(certified));
            let from = to.saturating_sub(window - 1).max(1);
            if to == certified {
                // The usual request: slide the shared window forward, reading only the new blocks.
                let mut stats = inner.validator_stats.lock().unwrap_or_else(|e| e.into_inner());
                let cached_to = stats.heights.back().map_or(0, |(h, _)| h.0);
                if cached_to > to {
                    stats.heights.clear();
                }
                let cached_to = stats.heights.back().map_or(0, |(h, _)| h.0);
                let mut h = cached_to.max(from - 1) + 1;
                while h <= to {
                    let Some(x) = height_stats(st, &inner.validators_at(Height(h)), Height(h))? else { break };
                    stats.heights.push_back((Height(h), x));
                    h += 1;
                }
                while stats.heights.front().is_some_and(|(h, _)| h.0 < from) {
                    stats.heights.pop_front();
                }
                return Ok((stats.heights.iter().cloned().collect::<Vec<_>>(), tip, gov));
            }
            let mut out = Vec::new();
            for h in from..=to {
                let Some(x) = height_stats(st, &inner.validators_at(Height(h)), Height(h))? else { break };
                out.push((Height(h), x));
            }
            Ok((out, tip, gov))
        })
        .await?;
    let set = &gov.next;
    let mut proposed: std::collections::BTreeMap<ledger_core::PublicKey, u64> = Default::default();
    let mut missed: std::collections::BTreeMap<ledger_core::PublicKey, u64> = Default::default();
    for (_, x) in &heights {
        *proposed.entry(x.proposer).or_default() += 1;
        for (v, signed) in x.set.validators().iter().zip(&x.signed) {
            if !signed {
                *missed.entry(v.public_key).or_default() += 1;
            }
        }
    }
    let members = |next: &ledger_core::ValidatorSet| -> Vec<SetMemberView> {
        next.validators()
            .iter()
            .map(|v| SetMemberView {
                address: v.public_key.to_address_string(),
                voting_power: v.power,
                share_bps: share_bps(v.power, next.total_power()),
                status: match set.power_of(&v.public_key) {
                    None => "joining",
                    Some(p) if p != v.power => "power_change",
                    Some(_) => "staying",
                }
                .into(),
                moniker: v.moniker.clone(),
            })
            .collect()
    };
    let pending_changes = gov
        .pending
        .iter()
        .map(|(id, p)| PendingChangeView {
            id: id.to_hex(),
            change: serde_json::to_value(&p.change).unwrap_or_default(),
            change_hex: hex::encode(ledger_core::encoding::encode(&p.change)),
            approvers: p.approvers.iter().map(|k| k.to_address_string()).collect(),
            approved_power: p.approvers.iter().filter_map(|k| set.power_of(k)).sum(),
            total_power: set.total_power(),
            first_seen_height: p.first_seen.0,
        })
        .collect();
    Ok(Json(ValidatorsView {
        validators: set
            .validators()
            .iter()
            .enumerate()
            .map(|(i, v)| ValidatorView {
                index: i,
                address: v.public_key.to_address_string(),
                voting_power: v.power,
                share_bps: share_bps(v.power, set.total_power()),
                moniker: v.moniker.clone(),
                blocks_proposed: proposed.get(&v.public_key).copied().unwrap_or(0),
                blocks_missed: missed.get(&v.public_key).copied().unwrap_or(0),
                status: if gov.jailed.contains(&v.public_key) {
                    "jailed"
                } else if gov.after_next.index_of(&v.public_key).is_some() {
                    "active"
                } else {
                    "leaving"
                }
                .into(),
                jailed: gov.jailed.contains(&v.public_key),
            })
            .collect(),
        total_voting_power: set.total_power(),
        counted_from_height: heights.first().map_or(0, |(h, _)| h.0),
        counted_to_height: heights.last().map_or(0, |(h, _)| h.0),
        window_blocks: window,
        height: tip.next().0,
        next_validators: members(&gov.after_next),
        next_validators_hash: gov.after_next.hash().to_hex(),
        pending_changes,
        jailed: gov.jailed.iter().map(|k| k.to_address_string()).collect(),
    }))
}

/// `power` as a share of `total` in basis points (1/100 of a percent), rounded down; integers only, so
/// every node prints the same.
pub(crate) fn share_bps(power: u64, total: u64) -> u64 {
    if total == 0 {
        return 0;
    }
    u64::try_from(u128::from(power) * 10_000 / u128::from(total)).unwrap_or(10_000)
}

/// Height `h`'s proposer and the signers of its certificate as carried on chain in block `h + 1`
/// (`last_commit`), the same bytes on every node; `None` if either block is missing.
fn height_stats(
    st: &crate::storage::Storage,
    set: &std::sync::Arc<ledger_core::ValidatorSet>,
    h: Height,
) -> Result<Option<super::state::HeightStats>, crate::storage::StorageError> {
    let (Some(block), Some(next)) = (st.block(h)?, st.block(h.next())?) else { return Ok(None) };
    let mut signed = vec![false; set.len()];
    if let Some(cert) = next.last_commit.as_ref().filter(|c| c.height == h) {
        for sig in &cert.signatures {
            if let Some(x) = signed.get_mut(usize::from(sig.validator_index)) {
                *x = true;
            }
        }
    }
    Ok(Some(super::state::HeightStats { proposer: block.header.proposer, set: set.clone(), signed }))
}

#[utoipa::path(get, path = "/peers", tag = "node",
    responses((status = 200, description = "Connected peers", body = PeersView)))]
pub async fn peers(State(s): State<ApiState>) -> ApiResult<PeersView> {
    let peers = s.inner.node.peers().await;
    Ok(Json(PeersView {
        n_peers: peers.len(),
        peers: peers.into_iter().map(|p| PeerView { peer_id: p.peer_id, address: p.address }).collect(),
    }))
}

#[utoipa::path(get, path = "/mempool", tag = "node",
    responses((status = 200, description = "Mempool size", body = MempoolView)))]
pub async fn mempool(State(s): State<ApiState>) -> ApiResult<MempoolView> {
    let m = s.inner.node.mempool_stats().await;
    Ok(Json(MempoolView { count: m.count, bytes: m.bytes }))
}

#[utoipa::path(get, path = "/metrics", tag = "node",
    responses((status = 200, description = "Prometheus text format 0.0.4 (OpenMetrics when asked for in Accept)", body = String, content_type = "text/plain")))]
pub async fn metrics(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    let m = &s.inner.metrics;
    let (body, content_type) = if openmetrics {
        (m.encode_openmetrics(), "application/openmetrics-text; version=1.0.0; charset=utf-8")
    } else {
        (m.encode_prometheus(), "text/plain; version=0.0.4; charset=utf-8")
    };
    let body = body.map_err(|e| ApiError::internal(format!("encoding metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, content_type)], body).into_response())
}

// ---- blocks ----------------------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BlocksQuery {
    /// Only blocks strictly below this height (default: all).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub before: Option<u64>,
    /// Page size (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/blocks", tag = "blocks", params(BlocksQuery),
    responses((status = 200, description = "Blocks, newest first", body = BlocksPage),
              (status = 400, description = "Bad query", body = ErrorView)))]
pub async fn blocks(State(s): State<ApiState>, q: Result<Query<BlocksQuery>, QueryRejection>) -> ApiResult<BlocksPage> {
    let q = query(q)?;
    let limit = page_limit(&s, q.limit)?;
    height_param("before", q.before)?;
    let page = s
        .read(move |st| {
            let tip = st.latest_height()?;
            let top = match q.before {
                Some(b) => b.saturating_sub(1).min(tip.0),
                None => tip.0,
            };
            let mut blocks = Vec::new();
            let mut h = top;
            while h >= 1 && blocks.len() < limit {
                match st.block_summary(Height(h))? {
                    Some((header, tx_count)) => blocks.push(summary_of(&header, tx_count)),
                    None => break,
                }
                h -= 1;
            }
            // The list ends at the base: below it the bodies are pruned (or were never stored).
            let base = st.base_height()?.0;
            let next = blocks.last().map(|b| b.height).filter(|&lowest| lowest > base.max(1));
            Ok(BlocksPage { blocks, next })
        })
        .await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/blocks/{height}", tag = "blocks",
    params(("height" = String, Path, description = "Block height, or `latest`", pattern = "^(latest|0|[1-9][0-9]{0,18})$")),
    responses((status = 200, description = "The block with its certificate's signers", body = BlockView),
              (status = 400, description = "Malformed height", body = ErrorView),
              (status = 404, description = "No such block", body = ErrorView),
              (status = 410, description = "pruned: the block is below this node's retention window (its header and certificate are still served)", body = ErrorView)))]
pub async fn block_by_height(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult<BlockView> {
    let state = s.clone();
    let view = s
        .read(move |st| {
            let h = match parse_height(&height, st.latest_height()?) {
                Ok(h) => h,
                Err(e) => return Ok(Err(e)),
            };
            let set = state.inner.validators_at(h);
            Ok(match (st.block(h)?, st.certificate(h)?) {
                (Some(b), cert) => Ok(block_view(&b, cert.as_ref(), &set)),
                (None, _) if h >= Height(1) && h < st.base_height()? => Err(pruned(h, st)?),
                (None, _) => Err(ApiError::not_found(format!("no block at height {height}"))),
            })
        })
        .await??;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/blocks/by-hash/{hash}", tag = "blocks",
    params(("hash" = String, Path, description = "Block hash, 64 hex characters", pattern = "^[0-9a-fA-F]{64}$")),
    responses((status = 200, description = "The block with its certificate's signers", body = BlockView),
              (status = 400, description = "Malformed hash", body = ErrorView),
              (status = 404, description = "No such block", body = ErrorView),
              (status = 410, description = "pruned: the block is below this node's retention window", body = ErrorView)))]
pub async fn block_by_hash(State(s): State<ApiState>, Path(hash): Path<String>) -> ApiResult<BlockView> {
    let hash = parse_hash(&hash)?;
    let state = s.clone();
    let view = s
        .read(move |st| {
            let Some(h) = st.height_of(&hash)? else { return Ok(None) };
            let Some(b) = st.block(h)? else {
                return Ok(if h < st.base_height()? { Some(Err(pruned(h, st)?)) } else { None });
            };
            let set = state.inner.validators_at(h);
            Ok(Some(Ok(block_view(&b, st.certificate(h)?.as_ref(), &set))))
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no block with hash {hash}")))??;
    Ok(Json(view))
}

#[utoipa::path(get, path = "/blocks/{height}/commit", tag = "blocks",
    params(("height" = String, Path, description = "Block height, or `latest`", pattern = "^(latest|0|[1-9][0-9]{0,18})$")),
    responses((status = 200, description = "The certificate that committed the block", body = CommitView),
              (status = 400, description = "Malformed height", body = ErrorView),
              (status = 404, description = "No such block", body = ErrorView)))]
pub async fn block_commit(State(s): State<ApiState>, Path(height): Path<String>) -> ApiResult<CommitView> {
    let state = s.clone();
    let view = s
        .read(move |st| {
            let h = match parse_height(&height, st.latest_height()?) {
                Ok(h) => h,
                Err(e) => return Ok(Err(e)),
            };
            let set = state.inner.validators_at(h);
            Ok(st
                .certificate(h)?
                .map(|c| commit_view(&c, &set))
                .ok_or_else(|| ApiError::not_found(format!("no certificate at height {height}"))))
        })
        .await??;
    Ok(Json(view))
}

/// 410 `pruned` for a height below the base: the body is gone, the header and certificate are not.
fn pruned(h: Height, st: &crate::storage::Storage) -> Result<ApiError, crate::storage::StorageError> {
    let base = st.base_height()?;
    Ok(ApiError::new(
        axum::http::StatusCode::GONE,
        "pruned",
        format!(
            "block {h} is below this node's retention window (bodies are kept from height {base}); its header and certificate are at /blocks/{h}/commit, and an archive node (storage.retain_blocks = 0) has the block"
        ),
    ))
}

// ---- transactions ----------------------------------------------------------------------------------

/// Status of `id` from storage (committed, with proof) or else from the mempool's outcomes.
pub(crate) async fn tx_status(s: &ApiState, id: TxId) -> Result<TxStatusView, ApiError> {
    let committed = s
        .read(move |st| Ok(st.committed_tx(&id)?.map(|(loc, block)| block.map(|b| (loc, b)).ok_or(loc.height))))
        .await?;
    let committed = match committed {
        Some(Err(h)) => {
            return Err(ApiError::new(
                axum::http::StatusCode::GONE,
                "pruned",
                format!(
                    "transaction {id} was committed at height {h}, below this node's retention window: the block's body is pruned here (an archive node has it)"
                ),
            ));
        }
        Some(Ok(found)) => Some(found),
        None => None,
    };
    if let Some((loc, block)) = committed {
        let ids = block.tx_ids();
        let tx = block.txs.get(loc.index as usize);
        return Ok(TxStatusView {
            id: id.to_hex(),
            status: "committed".into(),
            height: Some(loc.height.0),
            index: Some(loc.index),
            block_hash: Some(block.hash().to_hex()),
            proof: merkle::prove(&ids, loc.index as usize).map(|p| ProofView::of(&p)),
            tx: tx.map(TxView::of),
            tx_hex: tx.map(|t| hex::encode(t.encode())),
            ..Default::default()
        });
    }
    let base = TxStatusView { id: id.to_hex(), ..Default::default() };
    Ok(match s.inner.node.tx_outcome(id).await {
        Some(TxOutcome::Pending) => TxStatusView { status: "pending".into(), ..base },
        Some(TxOutcome::Rejected { code, message }) => {
            TxStatusView { status: "rejected".into(), reason: Some(ErrorBody { code: code.into(), message }), ..base }
        }
        Some(TxOutcome::Evicted { code, message }) => {
            TxStatusView { status: "evicted".into(), reason: Some(ErrorBody { code: code.into(), message }), ..base }
        }
        // Committed per the mempool but not (yet) readable here: report what storage says.
        Some(TxOutcome::Committed { .. }) | None => TxStatusView { status: "unknown".into(), ..base },
    })
}

#[utoipa::path(get, path = "/txs/{id}", tag = "txs",
    params(("id" = String, Path, description = "Transaction id, 64 hex characters", pattern = "^[0-9a-fA-F]{64}$")),
    responses((status = 200, description = "Status; with location, Merkle proof and bytes when committed", body = TxStatusView),
              (status = 400, description = "Malformed id", body = ErrorView),
              (status = 410, description = "pruned: committed below this node's retention window (the message names the height)", body = ErrorView)))]
pub async fn get_tx(State(s): State<ApiState>, Path(id): Path<String>) -> ApiResult<TxStatusView> {
    let id = parse_hash(&id)?;
    Ok(Json(tx_status(&s, id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// `commit`: wait until the transaction is committed or rejected (bounded); `none` (the default): answer
    /// once admitted.
    #[param(pattern = "^(commit|none)$")]
    pub wait: Option<String>,
    /// Longest wait in milliseconds (default 10000, at most 25000).
    #[param(minimum = 0, maximum = 25000)]
    pub timeout_ms: Option<u64>,
}

fn decode_hex_tx(s: &str) -> Result<Vec<u8>, ErrorBody> {
    // `base16`: the `hex` crate's errors at a table look-up a character (its match per character was ~5 % of
    // a lone validator's CPU).
    ledger_core::base16::decode(s.trim())
        .map_err(|e| ErrorBody { code: "malformed".into(), message: format!("tx is not hex: {e}") })
}

/// `POST /governance/approvals`: a validator's signed approval of a validator-set change.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
pub struct ApprovalRequest {
    /// Canonical (borsh) bytes of the `Approval`, as hex (`wallet validator approve --print` makes them).
    pub approval: String,
}

/// The answer to an accepted approval.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ApprovalAccepted {
    /// Id of the change approved (what every approval of the same change shares).
    pub change_id: String,
    /// False when this node already held this approval.
    pub queued: bool,
}

#[utoipa::path(post, path = "/governance/approvals", tag = "governance", request_body = ApprovalRequest,
    responses((status = 202, description = "Queued for the blocks this node proposes", body = ApprovalAccepted),
              (status = 400, description = "Refused: malformed, bad_signature, bad_possession, not_a_validator, expired, expiry_too_far, already_executed, duplicate_approval, too_many_pending, weak_key, bad_key, zero_power, moniker_too_long, rotate_to_same_key", body = ErrorView),
              (status = 413, description = "Request body above the limit", body = ErrorView),
              (status = 503, description = "pool_full, unavailable, not_supported", body = ErrorView)))]
pub async fn submit_approval(
    State(s): State<ApiState>,
    body: Result<Json<ApprovalRequest>, JsonRejection>,
) -> Result<(axum::http::StatusCode, Json<ApprovalAccepted>), ApiError> {
    let body = json_body(body)?;
    let bytes = hex::decode(body.approval.trim())
        .map_err(|e| ApiError::bad_request("malformed", format!("approval is not hex: {e}")))?;
    let change_id =
        ledger_core::encoding::decode::<ledger_core::governance::Approval>(&bytes, crate::handle::APPROVAL_BYTES_MAX)
            .map_err(|e| ApiError::bad_request("malformed", format!("approval does not decode: {e}")))?
            .change
            .id();
    match s.inner.node.submit_approval(bytes) {
        Ok(queued) => {
            Ok((axum::http::StatusCode::ACCEPTED, Json(ApprovalAccepted { change_id: change_id.to_hex(), queued })))
        }
        Err((code, message)) => {
            let status = match code.as_str() {
                "pool_full" | "unavailable" | "not_supported" => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                _ => axum::http::StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(status, code, message))
        }
    }
}

#[utoipa::path(post, path = "/txs", tag = "txs", params(SubmitQuery), request_body = SubmitRequest,
    responses((status = 200, description = "Admitted (status pending), or with wait=commit the final or timed-out status", body = TxStatusView),
              (status = 400, description = "Rejected: bad_signature, wrong_chain, nonce_too_low, nonce_too_far_ahead, insufficient_funds, expired, fee_too_low, too_large, malformed, zero_amount, memo_too_long, weak_key, bad_key, overflow", body = ErrorView),
              (status = 409, description = "duplicate", body = ErrorView),
              (status = 413, description = "Request body above the limit", body = ErrorView),
              (status = 429, description = "mempool_full, sender_limit, nonce_gap_under_load (Retry-After says when)", body = ErrorView),
              (status = 503, description = "disk_full (below the free-space floor storage.min_free_mb) or disk_budget (data directory above storage.max_data_mb): no transaction is admitted until space is freed", body = ErrorView)))]
pub async fn submit_tx(
    State(s): State<ApiState>,
    client: Option<Extension<ClientAddr>>,
    q: Result<Query<SubmitQuery>, QueryRejection>,
    body: Result<Json<SubmitRequest>, JsonRejection>,
) -> ApiResult<TxStatusView> {
    let ip = client.map(|Extension(c)| c.0.ip());
    // A general slot for the admission only; the wait below holds a commit-wait slot instead.
    let general = s.general_slot(ip)?;
    let q = query(q)?;
    let wait = match q.wait.as_deref() {
        None | Some("none") => None,
        Some("commit") => {
            let c = &s.inner.config;
            let t = q.timeout_ms.map_or(c.commit_wait_default, Duration::from_millis);
            if t > c.commit_wait_max {
                return Err(ApiError::bad_request(
                    "bad_query",
                    format!("timeout_ms must be at most {}", c.commit_wait_max.as_millis()),
                ));
            }
            Some(t)
        }
        Some(other) => return Err(ApiError::bad_request("bad_query", format!("wait must be `commit`, got {other:?}"))),
    };
    let body = json_body(body)?;
    admission_open(&s)?;
    let bytes = decode_hex_tx(&body.tx).map_err(|e| ApiError::bad_request(&e.code, e.message))?;
    // Subscribe before submitting so a commit cannot slip between the two.
    let events = wait.map(|_| s.inner.node.subscribe_blocks());
    let result = s.inner.node.submit_txs(vec![bytes]).await.into_iter().next();
    let id = match result {
        Some(Ok(id)) => id,
        Some(Err(r)) => return Err(ApiError::rejection(&r.code, r.message)),
        None => return Err(ApiError::internal("node returned no result for a submitted transaction")),
    };
    drop(general);
    let pending = || Json(TxStatusView { id: id.to_hex(), status: "pending".into(), ..Default::default() });
    let (Some(timeout), Some(events)) = (wait, events) else {
        return Ok(pending());
    };
    // Waits have their own bounded pool (and a per-client share): when it is full the answer is
    // `pending` at once, which the contract allows, and the client polls `GET /txs/{id}`.
    let Some(client_hold) = s.inner.clients.hold(ip, Held::CommitWait) else {
        s.inner.clients.refused(Refusal::CommitWaits, ip);
        return Ok(pending());
    };
    let Ok(permit) = s.inner.commit_waits.clone().try_acquire_owned() else {
        s.inner.clients.refused(Refusal::CommitWaits, ip);
        return Ok(pending());
    };
    let _waiting = WaitGauge::new(&s);
    let result = wait_for_commit(&s, id, timeout, events).await;
    drop((permit, client_hold));
    Ok(Json(result?))
}

/// One waiting request in `ledger_api_commit_waits` (also when the client goes away mid-wait).
struct WaitGauge(ApiState);

impl WaitGauge {
    fn new(s: &ApiState) -> WaitGauge {
        s.inner.metrics.add_api_commit_waits(1);
        WaitGauge(s.clone())
    }
}

impl Drop for WaitGauge {
    fn drop(&mut self) {
        self.0.inner.metrics.add_api_commit_waits(-1);
    }
}

/// Wait until `id` is committed, rejected or evicted, or `timeout` passes (then `pending`).
async fn wait_for_commit(
    s: &ApiState,
    id: TxId,
    timeout: Duration,
    mut events: tokio::sync::broadcast::Receiver<super::state::BlockEvent>,
) -> Result<TxStatusView, ApiError> {
    use tokio::sync::broadcast::error::RecvError;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut status = tx_status(s, id).await?;
        match status.status.as_str() {
            "committed" => {
                // The wait answer is the short form of the contract; GET /txs/{id} has the proof.
                status.proof = None;
                status.tx = None;
                status.tx_hex = None;
                return Ok(status);
            }
            "rejected" | "evicted" => return Ok(status),
            _ => {}
        }
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) | Ok(Err(RecvError::Closed)) => {
                return Ok(TxStatusView { id: id.to_hex(), status: "pending".into(), ..Default::default() });
            }
            // A new block (or missed ones): check again.
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {}
        }
    }
}

/// Under overload the excess is refused at the door, whole and before any decoding or signature check, with
/// 429 `mempool_full` and `Retry-After`: a refusal costs the node a lookup, and the client backs off.
fn admission_open(s: &ApiState) -> Result<(), ApiError> {
    if let Some((code, message)) = s.inner.node.disk_refusal() {
        return Err(ApiError::unavailable(code, message));
    }
    if s.inner.node.admission_open() {
        return Ok(());
    }
    Err(ApiError::rejection(
        "mempool_full",
        "the mempool holds what the network commits in the next moments; retry after the Retry-After delay",
    ))
}

#[utoipa::path(post, path = "/txs/batch", tag = "txs", request_body = BatchRequest,
    responses((status = 200, description = "One result per transaction, in order: {id} or {error}", body = BatchResponse),
              (status = 400, description = "Too many transactions or malformed body", body = ErrorView),
              (status = 413, description = "Request body above the limit", body = ErrorView),
              (status = 429, description = "mempool_full: the pool holds all it takes now, the batch is refused whole (Retry-After says when)", body = ErrorView),
              (status = 503, description = "disk_full or disk_budget: the node's disk is past its limits, the batch is refused whole", body = ErrorView)))]
pub async fn submit_batch(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<BatchResponse> {
    // The body is read (within the size limit) but parsed only once the door is open: under overload most
    // batches are refused whole, and parsing each (tens of kilobytes of JSON) cost the node more than the
    // refusal itself. The order is therefore 415, 413, then 429 or 503, then 400.
    if !json_content_type(&headers) {
        return Err(json_error(MissingJsonContentType::default().into()));
    }
    let bytes = body.map_err(|e| json_error(e.into()))?;
    admission_open(&s)?;
    let body: BatchRequest = json_body(Json::from_bytes(&bytes))?;
    let max = s.inner.config.batch_txs_max;
    if body.txs.len() > max {
        return Err(ApiError::bad_request(
            "too_many_txs",
            format!("batch has {} transactions, limit is {max}", body.txs.len()),
        ));
    }
    // Decode hex first; only well-formed hex goes to the node, and results are put back in order.
    let decoded: Vec<Result<Vec<u8>, ErrorBody>> = body.txs.iter().map(|t| decode_hex_tx(t)).collect();
    let to_submit: Vec<Vec<u8>> = decoded.iter().filter_map(|d| d.as_ref().ok().cloned()).collect();
    let mut submitted = s.inner.node.submit_txs(to_submit).await.into_iter();
    let mut results = Vec::with_capacity(decoded.len());
    for d in decoded {
        results.push(match d {
            Err(e) => BatchResult { id: None, error: Some(e) },
            Ok(_) => match submitted.next() {
                Some(Ok(id)) => BatchResult { id: Some(id.to_hex()), error: None },
                Some(Err(r)) => BatchResult { id: None, error: Some(ErrorBody { code: r.code, message: r.message }) },
                None => return Err(ApiError::internal("node returned fewer results than transactions")),
            },
        });
    }
    Ok(Json(BatchResponse { results }))
}

// ---- accounts --------------------------------------------------------------------------------------

#[utoipa::path(get, path = "/accounts/{address}", tag = "accounts",
    params(("address" = String, Path, description = "Account address: `ldg`, then the key and a checksum in hex", pattern = "^ldg[0-9a-fA-F]{72}$")),
    responses((status = 200, description = "Balance and nonces (unknown accounts are zero)", body = AccountView),
              (status = 400, description = "bad_address", body = ErrorView)))]
pub async fn account(State(s): State<ApiState>, Path(address): Path<String>) -> ApiResult<AccountView> {
    use ledger_core::AccountStore;
    let address = parse_address(&address)?;
    let account = s.read(move |st| Ok(st.account(&address))).await?.map_err(|e| ApiError::internal(e.0))?;
    let next_nonce = s.inner.node.next_nonce(address, account.nonce).await;
    Ok(Json(AccountView {
        address: address.to_address_string(),
        balance: account.balance,
        nonce: account.nonce,
        next_nonce: next_nonce.max(account.nonce),
    }))
}

/// Code of `GET /accounts/{address}/proof` at height 0: no block, so no header to prove against.
pub const NO_CERTIFIED_HEADER_YET: &str = "no_certified_header_yet";

#[utoipa::path(get, path = "/accounts/{address}/proof", tag = "accounts",
    params(("address" = String, Path, description = "Account address: `ldg`, then the key and a checksum in hex", pattern = "^ldg[0-9a-fA-F]{72}$")),
    responses((status = 200, description = "The account (or its absence) in the latest committed state, with a sparse-Merkle proof against the state_root of the header at that height; the header's certificate is GET /blocks/{height}/commit", body = AccountProofView),
              (status = 400, description = "bad_address", body = ErrorView),
              (status = 409, description = "no_certified_header_yet: the chain is at genesis (height 0), there is no header to prove against; the genesis file itself gives the initial balances", body = ErrorView)))]
pub async fn account_proof(State(s): State<ApiState>, Path(address): Path<String>) -> ApiResult<AccountProofView> {
    let address = parse_address(&address)?;
    // The tree and its height are read together, then the header of that height (blocks are never removed,
    // so it is there whatever commits meanwhile).
    let found = s
        .read(move |st| {
            let (height, tree) = st.tree_with_height()?;
            if height == Height::GENESIS {
                return Ok(None);
            }
            let block = st.block(height)?.ok_or_else(|| crate::storage::StorageError::Corrupt {
                what: format!("block {height}"),
                detail: "the state is at this height but its block is missing".into(),
            })?;
            if block.header.state_root != tree.root() {
                return Err(crate::storage::StorageError::Corrupt {
                    what: format!("state tree at height {height}"),
                    detail: format!("root {} is not the header's state_root {}", tree.root(), block.header.state_root),
                });
            }
            let (account, proof) = tree.prove(&address);
            Ok(Some((height, block.header, account, proof)))
        })
        .await?;
    let Some((height, header, account, proof)) = found else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            NO_CERTIFIED_HEADER_YET,
            "the chain is at genesis (height 0): no block header to prove against yet; the genesis file gives the initial balances",
        ));
    };
    Ok(Json(AccountProofView {
        address: address.to_address_string(),
        present: account.is_some(),
        account: account.map(|a| ProvenAccountView { balance: a.balance, nonce: a.nonce }),
        height: height.0,
        block_hash: header.hash().to_hex(),
        state_root: header.state_root.to_hex(),
        header_hex: hex::encode(ledger_core::encoding::encode(&header)),
        proof_hex: hex::encode(ledger_core::encoding::encode(&proof)),
        proof: StateProofView::of(&proof),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountTxsQuery {
    /// Start below this height (default: the tip, inclusive).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub before: Option<u64>,
    /// With `before`: also include transactions at height `before` with an index below this.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 4294967295_i64)]
    pub before_index: Option<u32>,
    /// Page size (default 20, at most 100).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/accounts/{address}/txs", tag = "accounts",
    params(("address" = String, Path, description = "Account address: `ldg`, then the key and a checksum in hex", pattern = "^ldg[0-9a-fA-F]{72}$"), AccountTxsQuery),
    responses((status = 200, description = "Committed transactions sent or received, newest first, from the account-history index (any depth, in time independent of the chain's length); follow `next` to continue", body = AccountTxsPage),
              (status = 400, description = "bad_address or bad query", body = ErrorView)))]
pub async fn account_txs(
    State(s): State<ApiState>,
    Path(address): Path<String>,
    q: Result<Query<AccountTxsQuery>, QueryRejection>,
) -> ApiResult<AccountTxsPage> {
    let address = parse_address(&address)?;
    let q = query(q)?;
    let limit = page_limit(&s, q.limit)?;
    height_param("before", q.before)?;
    let page = s
        .read(move |st| {
            let tip = st.latest_height()?;
            // Exclusive bound: below `before` (all of it without `before_index`), at most the tip.
            let bound = match q.before {
                None => (tip.0, u32::MAX),
                Some(b) => (b, q.before_index.unwrap_or(0)),
            };
            let bound = bound.min((tip.0, u32::MAX));
            let mut found = st.account_history(&address, bound, tip, limit + 1)?;
            let more = found.len() > limit;
            found.truncate(limit);
            let mut txs = Vec::with_capacity(found.len());
            let mut block: Option<ledger_core::Block> = None;
            let mut kept = found.len();
            for (n, (h, i)) in found.iter().enumerate() {
                if block.as_ref().is_none_or(|b| b.height().0 != *h) {
                    match st.block(Height(*h))? {
                        Some(b) => block = Some(b),
                        // Pruned since the index was read: the page ends here, as the history does.
                        None if Height(*h) < st.base_height()? => {
                            kept = n;
                            break;
                        }
                        None => {
                            return Err(crate::storage::StorageError::Corrupt {
                                what: format!("block {h}"),
                                detail: "indexed but missing".into(),
                            });
                        }
                    }
                }
                let Some(tx) = block.as_ref().and_then(|b| b.txs.get(*i as usize)) else {
                    return Err(crate::storage::StorageError::Corrupt {
                        what: format!("account-history index at {h}/{i}"),
                        detail: "no such transaction in the block".into(),
                    });
                };
                let t = tx.tx();
                txs.push(AccountTxView {
                    height: *h,
                    index: *i,
                    direction: if t.sender == address { "sent" } else { "received" }.into(),
                    tx: TxView::of(tx),
                });
            }
            let more = more && kept == found.len();
            found.truncate(kept);
            let next = match (more, found.last()) {
                (true, Some(&(h, i))) => Some(AccountTxsCursor { before: h, before_index: Some(i) }),
                _ => None,
            };
            // The heights this page covers: from the bound down to its last entry, or to the base (height 1
            // unless pruned or state-synced) when the history ends here.
            let from = if bound.1 == 0 { bound.0.saturating_sub(1) } else { bound.0 };
            let base = st.base_height()?.0.max(1);
            let (scanned_from, scanned_to) = match (from, &next) {
                (0, _) => (None, None),
                (f, _) if f < base => (None, None),
                (f, Some(c)) => (Some(f), Some(c.before)),
                (f, None) => (Some(f), Some(base)),
            };
            Ok(AccountTxsPage {
                address: address.to_address_string(),
                txs,
                scanned_from_height: scanned_from,
                scanned_to_height: scanned_to,
                next,
            })
        })
        .await?;
    Ok(Json(page))
}

/// A submitted transaction's bytes must decode; used by tests and docs to build requests.
pub fn tx_hex(tx: &SignedTransaction) -> String {
    ledger_core::base16::encode(tx.encode())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn shares_are_whole_basis_points_rounded_down() {
        assert_eq!(share_bps(1, 4), 2500);
        assert_eq!(share_bps(1, 3), 3333);
        assert_eq!(share_bps(10, 10), 10_000);
        assert_eq!(share_bps(0, 10), 0);
        assert_eq!(share_bps(5, 0), 0);
        assert_eq!(share_bps(u64::MAX, u64::MAX), 10_000);
    }

    /// Hex transaction bodies decode as `hex::decode` would, with the same errors.
    #[test]
    fn hex_transactions_decode_like_hex_decode() {
        for s in ["", "00ff", " 0aB1 ", "abc", "zz", "0g", "a"] {
            let ours = decode_hex_tx(s).map_err(|e| e.message);
            let theirs = hex::decode(s.trim()).map_err(|e| format!("tx is not hex: {e}"));
            assert_eq!(ours, theirs, "{s:?}");
        }
        assert_eq!(decode_hex_tx(" 0aB1 ").unwrap(), vec![0x0a, 0xb1]);
        assert_eq!(decode_hex_tx("abc").unwrap_err().code, "malformed");
    }

    /// The patterns in the `#[utoipa::path]` attributes (which must be literals) are the parsers' ones.
    #[test]
    fn openapi_patterns_are_the_parsers() {
        let doc = serde_json::to_value(super::super::openapi()).unwrap();
        let pattern = |path: &str, name: &str| {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"]["pattern"].as_str().unwrap().to_string())
                .unwrap()
        };
        assert_eq!(pattern("/blocks/{height}", "height"), HEIGHT_PATTERN);
        assert_eq!(pattern("/blocks/{height}/commit", "height"), HEIGHT_PATTERN);
        assert_eq!(pattern("/blocks/by-hash/{hash}", "hash"), HASH_PATTERN);
        assert_eq!(pattern("/txs/{id}", "id"), HASH_PATTERN);
        assert_eq!(pattern("/accounts/{address}", "address"), ADDRESS_PATTERN);
        assert_eq!(pattern("/accounts/{address}/txs", "address"), ADDRESS_PATTERN);
        assert_eq!(pattern("/accounts/{address}/proof", "address"), ADDRESS_PATTERN);
        for (s, ok) in [("latest", true), ("0", true), ("1", true), ("9223372036854775807", true), ("+1", false)] {
            assert_eq!(parse_height(s, Height(5)).is_ok(), ok, "{s}");
        }
        for s in ["01", "", " 1", "9223372036854775808", "99999999999999999999"] {
            assert!(parse_height(s, Height(5)).is_err(), "{s}");
        }
    }
}
