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
//! concurrent requests (503 `overloaded`), open connections (extra ones wait in the accept backlog), open
//! event streams (503 `too_many_subscribers`), page sizes, batch size, `wait=commit` duration, and blocks
//! scanned per account-history request. Every error, including those produced by axum and tower layers
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
mod handlers;
mod local;
mod metrics;
mod state;
mod views;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
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
    Rejection, SignerInfo, default_stall_after_ms,
};
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
        .routes(routes!(handlers::peers))
        .routes(routes!(handlers::mempool))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::blocks))
        .routes(routes!(handlers::block_by_height))
        .routes(routes!(handlers::block_by_hash))
        .routes(routes!(handlers::block_commit))
        .routes(routes!(handlers::submit_tx))
        .routes(routes!(handlers::submit_batch))
        .routes(routes!(handlers::get_tx))
        .routes(routes!(handlers::account))
        .routes(routes!(handlers::account_txs))
        .routes(routes!(events::events))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of every route, generated from the handlers.
pub fn openapi() -> utoipa::openapi::OpenApi {
    openapi_router().into_openapi()
}

#[utoipa::path(get, path = "/openapi.json", tag = "node",
    responses((status = 200, description = "This OpenAPI document", body = serde_json::Value)))]
async fn openapi_json() -> Response {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let doc = DOC.get_or_init(|| openapi().to_json().unwrap_or_else(|_| "{}".into()));
    ([(header::CONTENT_TYPE, "application/json")], doc.clone()).into_response()
}

/// The complete router with every layer, ready for `oneshot` in tests or for [`serve`].
pub fn router(state: ApiState) -> Router {
    let config = state.inner.config.clone();
    let (routes, _) = openapi_router().split_for_parts();
    routes
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(config.body_bytes_max))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal("handler panicked").into_response()))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, config.request_timeout))
        .layer(RequestBodyLimitLayer::new(config.body_bytes_max))
        .layer(middleware::from_fn_with_state(state.clone(), limit_concurrency))
        .layer(middleware::from_fn(json_errors))
        .with_state(state)
}

/// Serve `state` on `listener` until `shutdown` completes, then end event streams and drain requests.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let listener =
        LimitedListener { inner: listener, permits: Arc::new(Semaphore::new(state.inner.config.connections_max)) };
    let closer = state.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            closer.close_event_streams();
        })
        .await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!("no route for {} {}", req.method(), req.uri().path()))
}

/// The liveness probe is exempt: it costs nothing, and an orchestrator must not restart a node because it
/// is busy.
async fn limit_concurrency(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/livez" {
        return next.run(req).await;
    }
    let Ok(_permit) = s.inner.requests.clone().try_acquire_owned() else {
        return ApiError::unavailable("overloaded", "too many concurrent requests").into_response();
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

/// A listener that holds at most `permits` connections open; the next accept waits for one to close.
struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed; if it were, serve without a limit rather than stop.
        let permit = self.permits.clone().acquire_owned().await.ok();
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (LimitedStream { stream, _permit: permit }, addr)
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

struct LimitedStream {
    stream: TcpStream,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsyncRead for LimitedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
