//! The HTTP API of `ledgerd` (axum 0.8): JSON routes over the chain in [`Storage`](crate::storage::Storage)
//! and a small [`NodeHandle`] to the running node. The contract is `docs/api.md`; `GET /openapi.json`
//! is generated from the handlers' `#[utoipa::path]` annotations.
//!
//! This module is not consensus: handlers read storage and send requests through [`NodeHandle`]; they never
//! touch consensus state. **Architecture invariant:** nothing here can make the driver wait — submissions
//! are answered by the handle, and block events go through a bounded broadcast channel whose slow
//! receivers are dropped.
//!
//! # Wiring (what the node provides)
//! ```text
//! let metrics = Arc::new(api::Metrics::new());              // or Metrics::with_registry(shared registry)
//! let node: Arc<dyn api::NodeHandle> = ...;                 // api::LocalNode, or the driver's own handle
//! let state = api::ApiState::new(storage, genesis, node, metrics.clone(), api::ApiConfig::default())?;
//! let listener = tokio::net::TcpListener::bind(config.api_listen).await?;
//! tokio::spawn(api::serve(listener, state, shutdown_future));
//! ```
//! The handle (see [`NodeHandle`]) must: admit transaction bytes to the mempool and answer per transaction
//! an id or a rejection code; report mempool outcomes (pending/rejected/evicted) for ids not in storage;
//! count pending nonces per sender; report mempool size, consensus height/round, peers, catching-up, node
//! id, validator address (or why there is none), the double-sign guard's mode and the local time of the
//! last commit; and publish a [`BlockEvent`] on a `tokio::sync::broadcast` channel after each
//! `Storage::commit_block` returns. The driver also calls the [`Metrics`] setters. [`LocalNode`] does all
//! of that over a real `Storage` and a `Mutex<Mempool>`; a driver that owns its mempool can instead
//! implement [`NodeHandle`] by sending requests to its loop and awaiting oneshot replies.
//!
//! # Limits
//! All in [`ApiConfig`]: body size (10 MiB, 413 `body_too_large`), request timeout (30 s, 408 `timeout`),
//! concurrent requests (503 `overloaded`), page sizes, batch size, `wait=commit` duration, and the limits that keep one client from taking the API from the others
//! (per-client connections, request rate, event streams and commit waits; header, body and write timeouts;
//! body-byte budgets): see [`guard`] and [`server`], and `docs/api.md`. Every error, including those produced by axum and tower layers
//! (unknown route, wrong method, bad JSON, timeouts, panics), is answered as `{"error": {"code", "message"}}`.
//!
//! # Probes
//! `GET /livez` answers 200 whenever the server runs (no storage read, exempt from the concurrency limit).
//! `GET /health` answers 503 with every reason that applies (stable codes in [`health_code`]): storage not
//! readable, the double-sign guard halted, no peer while the validator set has more than one validator, or
//! no commit for [`ApiConfig::health_stall_after_ms`]: a node cut off from its peers (wrong bootstrap
//! peers), stuck, or whose guard stopped signing fails the probe instead of looking healthy.

mod error;
mod events;
mod evidence;
pub mod guard;
mod handlers;
mod local;
mod metrics;
mod server;
mod state;
mod transitions;
mod views;

use std::future::Future;
use std::net::IpAddr;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;

use guard::{ClientAddr, Refusal};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ErrorBody, ErrorView, rejection_status};
pub use events::{BlockEventView, TxEventView};
pub use handlers::{health_code, health_reasons, tx_hex};
pub use local::LocalNode;
pub use metrics::Metrics;
pub(crate) use state::unix_time_ms;
pub use state::{
    ApiConfig, ApiState, BlockEvent, HEALTH_STALL_AFTER_MS_MIN, MempoolStats, NodeHandle, NodeStatus, PeerInfo,
    Rejection, SignerInfo, SyncInfo, default_stall_after_ms,
};
pub use transitions::{SetTransitionView, SetTransitionsPage, TRANSITIONS_PAGE_MAX};
pub use views::*;

#[derive(OpenApi)]
#[openapi(
    info(title = "ledgerd HTTP API", description = "JSON API served by every ledgerd; contract in docs/api.md"),
    components(schemas(ErrorView, ErrorBody, BlockEventView, TxEventView))
)]
struct ApiDoc;

fn openapi_router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::livez))
        .routes(routes!(handlers::status))
        .routes(routes!(handlers::genesis))
        .routes(routes!(handlers::validators))
        .routes(routes!(transitions::validator_transitions))
        .routes(routes!(handlers::peers))
        .routes(routes!(handlers::mempool))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::blocks))
        .routes(routes!(handlers::block_by_height))
        .routes(routes!(handlers::block_by_hash))
        .routes(routes!(handlers::block_commit))
        .routes(routes!(handlers::submit_tx))
        .routes(routes!(handlers::submit_batch))
        .routes(routes!(handlers::submit_approval))
        .routes(routes!(evidence::evidence))
        .routes(routes!(handlers::get_tx))
        .routes(routes!(handlers::account))
        .routes(routes!(handlers::account_txs))
        .routes(routes!(handlers::account_proof))
        .routes(routes!(events::events))
        .routes(routes!(openapi_json))
        .routes(routes!(index))
}

#[utoipa::path(get, path = "/", tag = "node",
    responses((status = 200, description = "What this server is and a list of its routes", body = IndexView),
              (status = 303, description = "A browser (`Accept` naming `text/html`, not `application/json` first) is sent to the explorer at `/explorer/`")))]
async fn index(headers: axum::http::HeaderMap) -> Response {
    if crate::explorer::wants_html(headers.get(header::ACCEPT)) {
        return axum::response::Redirect::to(crate::explorer::BASE).into_response();
    }
    index_json().into_response()
}

fn index_json() -> axum::Json<IndexView> {
    static INDEX: std::sync::OnceLock<IndexView> = std::sync::OnceLock::new();
    let view = INDEX.get_or_init(|| IndexView {
        name: "ledgerd HTTP API".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        openapi: "/openapi.json".into(),
        routes: route_list(&serde_json::to_value(openapi()).unwrap_or_default()),
    });
    axum::Json(view.clone())
}

/// Every operation of an OpenAPI document as (method, path, description of its 200 answer), by path.
fn route_list(doc: &serde_json::Value) -> Vec<RouteView> {
    let mut out = Vec::new();
    let Some(paths) = doc.get("paths").and_then(serde_json::Value::as_object) else { return out };
    for (path, item) in paths {
        for method in ["get", "post"] {
            let Some(op) = item.get(method) else { continue };
            let description = op
                .pointer("/responses/200/description")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            out.push(RouteView { method: method.to_uppercase(), path: path.clone(), description });
        }
    }
    out
}

/// The OpenAPI document of every route, generated from the handlers, with the answers every route can
/// give declared on each (see [`declare_common_responses`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = openapi_router().into_openapi();
    declare_common_responses(&mut doc);
    doc
}

/// Declare on every operation the answers the layers can give whatever the route: 408 (request timeout,
/// or body not received in time), 429 `rate_limited`, 500 `internal`, 503 `overloaded`; on operations
/// with a JSON body also 413, 415 and 422. `/health`'s 503 is its health document or, under overload, the
/// error shape.
fn declare_common_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::schema::OneOfBuilder;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorView"))).build(),
                )
                .build(),
        )
    };
    let common = [
        (
            "408",
            "`timeout`: no answer within the request timeout; `body_timeout`: the request body was not received in time",
        ),
        ("429", "`rate_limited`: this client sent more requests per second than it may (see Retry-After)"),
        ("500", "`internal`: details only in the node's log"),
        ("503", "`overloaded`: every request slot, or the request-body byte budget, is taken; retry later"),
    ];
    let with_body = [
        ("413", "`body_too_large`: request body above the limit"),
        ("415", "`unsupported_media_type`: the body is not `Content-Type: application/json`"),
        ("422", "`bad_request`: JSON of the wrong shape"),
        ("400", "`bad_request`: the body is not JSON"),
    ];
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [item.get.as_mut(), item.post.as_mut()];
        for (i, op) in ops.into_iter().enumerate() {
            let Some(op) = op else { continue };
            let responses = &mut op.responses.responses;
            for (code, description) in common {
                responses.entry(code.to_string()).or_insert_with(|| error(description));
            }
            if i == 1 {
                for (code, description) in with_body {
                    responses.entry(code.to_string()).or_insert_with(|| error(description));
                }
            }
            if path == "/health" {
                let either = OneOfBuilder::new()
                    .item(Ref::from_schema_name("HealthView"))
                    .item(Ref::from_schema_name("ErrorView"))
                    .build();
                responses.insert(
                    "503".to_string(),
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Unhealthy: status `unhealthy` with reasons (codes no_peers, stalled, signer_halted, storage_unreadable); under overload the error shape with code `overloaded`")
                            .content("application/json", ContentBuilder::new().schema(Some(utoipa::openapi::schema::Schema::OneOf(either))).build())
                            .build(),
                    ),
                );
            }
        }
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "This OpenAPI document", body = serde_json::Value)))]
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_json().unwrap_or_else(|_| "{}".into()));
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// The complete router with every layer, ready for `oneshot` in tests or for [`serve`].
///
/// Per request, outermost first: metrics (route, status class, time); JSON error shape; the client's
/// request rate; the body, read whole under `body_read_timeout` and the body-byte budgets BEFORE any
/// shared slot is taken; a general request slot (not for `/livez`, `/events` and `POST /txs`, which
/// manage their own pools); the request timeout; the handler.
pub fn router(state: ApiState) -> Router {
    let config = state.inner.config.clone();
    let (routes, _) = openapi_router().split_for_parts();
    routes
        .merge(crate::explorer::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout))
        .layer(middleware::from_fn_with_state(state.clone(), limit_concurrency))
        .layer(middleware::from_fn_with_state(state.clone(), read_body))
        .layer(middleware::from_fn_with_state(state.clone(), limit_rate))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` completes, then end event streams and drain requests.
/// See [`server`] for the connection-level defences (header-read and write timeouts, connection caps).
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let closer = state.clone();
    server::serve(listener, state, app, async move {
        shutdown.await;
        closer.close_event_streams();
    })
    .await
}

fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ClientAddr>().map(|c| c.0.ip())
}

/// Count every answer by route template and status class, with its time.
async fn observe(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_string();
    let start = Instant::now();
    let res = next.run(req).await;
    s.inner.metrics.on_api_request(&route, res.status().as_u16(), start.elapsed());
    res
}

/// The client's request rate: within its burst at once, a little over its rate after a short delay,
/// beyond that 429 `rate_limited` with `Retry-After`. `/livez` is exempt.
async fn limit_rate(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/livez" {
        return next.run(req).await;
    }
    let ip = client_ip(&req);
    match s.inner.clients.admit_request(ip) {
        Ok(delay) => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            next.run(req).await
        }
        Err(retry_after) => {
            s.inner.clients.refused(Refusal::RateLimited, ip);
            let mut res = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} requests per second from this client; retry later",
                    s.inner.config.requests_per_client_per_sec
                ),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&retry_after.as_secs().max(1).to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
            res
        }
    }
}

/// Read the whole request body before anything shared is taken: within `body_read_timeout` (408
/// `body_timeout`), at most `body_bytes_max` (413), within the global and per-client byte budgets (503
/// `overloaded`). Only bytes actually received count against the budgets, so a client that announces a
/// large body and drips it holds no more than it sent.
async fn read_body(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let c = &s.inner.config;
    if req.body().size_hint().exact() == Some(0) {
        return next.run(req).await;
    }
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > c.body_bytes_max as u64) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request body above {} bytes", c.body_bytes_max),
        )
        .into_response();
    }
    let ip = client_ip(&req);
    let (parts, body) = req.into_parts();
    let mut stream = body.into_data_stream();
    let deadline = tokio::time::Instant::now() + c.body_read_timeout;
    let mut chunks = Vec::new();
    let mut len = 0usize;
    let mut budget = BodyBudget { state: s.clone(), ip, permit: None, bytes: 0 };
    loop {
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                s.inner.clients.refused(Refusal::BodyTimeout, ip);
                return ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("request body not received within {} ms", c.body_read_timeout.as_millis()),
                )
                .into_response();
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return ApiError::bad_request("bad_request", format!("cannot read the request body: {e}"))
                    .into_response();
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        len = len.saturating_add(chunk.len());
        if len > c.body_bytes_max {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("request body above {} bytes", c.body_bytes_max),
            )
            .into_response();
        }
        if !budget.take(chunk.len()) {
            s.inner.clients.refused(Refusal::BodyBudget, ip);
            return ApiError::unavailable("overloaded", "too many request bytes buffered; retry later").into_response();
        }
        chunks.push(chunk);
    }
    let body = match chunks.len() {
        0 => Body::empty(),
        1 => Body::from(chunks.swap_remove(0)),
        _ => Body::from(chunks.concat()),
    };
    let res = next.run(Request::from_parts(parts, body)).await;
    drop(budget);
    res
}

/// Body bytes held by one request: global permits and the client's share, returned when dropped.
struct BodyBudget {
    state: ApiState,
    ip: Option<IpAddr>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    bytes: usize,
}

impl BodyBudget {
    fn take(&mut self, n: usize) -> bool {
        let Ok(n32) = u32::try_from(n) else { return false };
        let Ok(p) = self.state.inner.body_budget.clone().try_acquire_many_owned(n32) else { return false };
        if !self.state.inner.clients.add_body_bytes(self.ip, n) {
            return false;
        }
        self.bytes += n;
        match &mut self.permit {
            Some(held) => held.merge(p),
            None => self.permit = Some(p),
        }
        true
    }
}

impl Drop for BodyBudget {
    fn drop(&mut self) {
        self.state.inner.clients.sub_body_bytes(self.ip, self.bytes);
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// A general request slot. The liveness probe is exempt (it costs nothing, and an orchestrator must not
/// restart a node because it is busy); `/events` and `POST /txs` take their own slots (see
/// [`ApiState::general_slot`]), so long waits never hold general ones.
async fn limit_concurrency(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/livez" || path == "/events" || (path == "/txs" && req.method() == Method::POST) {
        return next.run(req).await;
    }
    let ip = client_ip(&req);
    let _permit = match s.general_slot(ip) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    next.run(req).await
}

/// Give every error answer that is not already JSON (axum rejections, 404/405, layer errors) the JSON
/// error shape, keeping its status and its text as the message (except for 5xx, whose text is hidden).
async fn json_errors(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json =
        res.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let code = error::code_for_status(status);
    let message = if status.is_server_error() {
        if !text.is_empty() {
            tracing::error!(%status, body = %text, "api error from a layer");
        }
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_lowercase()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep headers such as `Allow` on 405.
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    out
}
