//! The HTTP/1.1 server loop: hyper with a timer (so the header-read timeout runs), admission of each
//! connection against the global and per-client caps, and a write timeout on every connection.
//!
//! `axum::serve` installs no hyper timer: an idle or slowloris connection was held for ever. Here every
//! connection is served by `hyper::server::conn::http1` with [`TokioTimer`], so a client that does not send
//! complete request headers within `header_read_timeout` (from the connection's start, or from the end of
//! its previous response) is disconnected; a write that makes no progress for `write_timeout` closes the
//! connection too (a client that does not read, e.g. an event stream nobody reads). HTTP/2 is not served.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Sleep;
use tower::ServiceExt;

use super::guard::{ClientAddr, Held, Refusal};
use super::state::ApiState;

/// Largest request head (request line and headers) read, in bytes (hyper's minimum is 8 KiB).
const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Most headers in one request.
const HEADERS_MAX: usize = 100;
/// Pause after a failed accept (out of file descriptors, …) before the next, so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// Serve `app` on `listener` until `shutdown` completes, then stop accepting, let open connections finish
/// their current request (event streams end), and return once all are closed.
pub(super) async fn serve(
    listener: TcpListener,
    state: ApiState,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let config = state.inner.config.clone();
    let clients = state.inner.clients.clone();
    let metrics = state.inner.metrics.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, addr) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        let ip = Some(addr.ip());
        if conns.len() >= config.connections_max {
            clients.refused(Refusal::ConnectionsTotal, ip);
            refuse(stream, "too_many_connections", "the node holds too many API connections");
            continue;
        }
        let Some(hold) = clients.hold(ip, Held::Connection) else {
            clients.refused(Refusal::ConnectionsPerClient, ip);
            refuse(stream, "too_many_connections", "this client holds too many API connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        if config.send_buffer_bytes > 0 {
            // A fixed send buffer instead of the kernel's autotuning (up to 4 MiB per connection): bounds
            // the kernel memory a client that does not read can pin, and lets the write timeout see it.
            let _ = socket2::SockRef::from(&stream).set_send_buffer_size(config.send_buffer_bytes);
        }
        let app = app.clone();
        let state = state.clone();
        let mut stop = stop_rx.clone();
        metrics.add_api_connections(1);
        conns.spawn(async move {
            let write_timed_out = Arc::new(AtomicBool::new(false));
            let io = GuardedIo {
                stream,
                write_timeout: state.inner.config.write_timeout,
                stalled: None,
                timed_out: write_timed_out.clone(),
            };
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ClientAddr(addr));
                app.clone().oneshot(req.map(Body::new))
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(state.inner.config.header_read_timeout)
                .max_buf_size(HEAD_BYTES_MAX)
                .max_headers(HEADERS_MAX);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            let clients = &state.inner.clients;
            if write_timed_out.load(Ordering::Relaxed) {
                clients.refused(Refusal::WriteTimeout, Some(addr.ip()));
            } else if let Err(e) = result {
                if e.is_timeout() {
                    clients.refused(Refusal::HeaderTimeout, Some(addr.ip()));
                } else {
                    tracing::debug!(client = %addr, error = %e, "API connection ended with an error");
                }
            }
            state.inner.metrics.add_api_connections(-1);
            drop(hold);
        });
    }
    stop_tx.send_replace(true);
    while conns.join_next().await.is_some() {}
    Ok(())
}

/// Best effort: tell a refused client why in one write that never waits, then close.
fn refuse(stream: TcpStream, code: &str, message: &str) {
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n",
        body.len()
    );
    let _ = stream.try_write(format!("{head}{body}").as_bytes());
}

/// A connection's socket with a write timeout: a write still pending after `write_timeout` fails with
/// `TimedOut`, which ends the connection.
struct GuardedIo {
    stream: TcpStream,
    write_timeout: Duration,
    /// Running while a write is pending.
    stalled: Option<Pin<Box<Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

impl GuardedIo {
    fn check_stall<T>(&mut self, cx: &mut Context<'_>, r: Poll<std::io::Result<T>>) -> Poll<std::io::Result<T>> {
        match r {
            Poll::Pending => {
                let timeout = self.write_timeout;
                let sleep = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                if sleep.as_mut().poll(cx).is_ready() {
                    self.timed_out.store(true, Ordering::Relaxed);
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the client read nothing for the write timeout",
                    )));
                }
                Poll::Pending
            }
            ready => {
                self.stalled = None;
                ready
            }
        }
    }
}

impl AsyncRead for GuardedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GuardedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.check_stall(cx, r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let r = Pin::new(&mut self.stream).poll_flush(cx);
        self.check_stall(cx, r)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.check_stall(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
