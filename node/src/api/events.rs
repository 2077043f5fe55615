//! `GET /events`: server-sent events for committed blocks and their transactions.
//!
//! Per block, one `tx` event per transaction (in block order) and then one `block` event whose SSE `id` is
//! the height, so a client that reconnects with `Last-Event-ID: H` (or `?from_height=H+1`) misses nothing.
//! With `from_height`, stored blocks from that height are replayed first, read lazily in small chunks;
//! the live feed is subscribed to before the replay starts, and heights already sent are skipped, so there
//! is neither a gap nor a duplicate at the switch.
//!
//! Each client's buffer is its receiver of the node's broadcast channel (capacity = the channel's). A client
//! that falls that far behind gets an `error` event with code `lagged` and is disconnected; it resumes with
//! `from_height`. The node never waits for a client.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use ledger_core::{Block, Height};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{OwnedSemaphorePermit, broadcast, watch};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody, ErrorView};
use super::guard::{ClientAddr, ClientHold, Held, Refusal};
use super::handlers::query;
use super::state::{ApiState, BlockEvent};

/// Blocks read from storage per replay step.
const REPLAY_CHUNK_BLOCKS: usize = 16;
const REPLAY_CHUNK_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Replay stored blocks from this height before following new ones (default: only new blocks).
    #[param(minimum = 0, maximum = 9223372036854775807_i64)]
    pub from_height: Option<u64>,
}

/// Data of a `block` event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BlockEventView {
    pub height: u64,
    pub hash: String,
    /// Header timestamp, ms since the Unix epoch.
    pub time: u64,
    /// The same instant in RFC 3339, UTC, with milliseconds.
    pub time_utc: String,
    pub proposer: String,
    pub tx_count: usize,
}

/// Data of a `tx` event.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TxEventView {
    pub id: String,
    pub height: u64,
    pub index: u32,
    pub block_hash: String,
    pub sender: String,
    pub recipient: String,
    pub amount: u64,
    pub fee: u64,
    pub nonce: u64,
}

#[utoipa::path(get, path = "/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "text/event-stream of `tx` events (data: TxEventView) then a `block` event (data: BlockEventView, id: height) per committed block; `error` event (data: {code, message}) before a lagging client is dropped", body = String, content_type = "text/event-stream"),
              (status = 400, description = "Bad query", body = ErrorView),
              (status = 410, description = "pruned: the replay would start below this node's retention window", body = ErrorView),
              (status = 503, description = "too_many_subscribers", body = ErrorView)))]
pub async fn events(
    State(s): State<ApiState>,
    client: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let ip = client.map(|Extension(c)| c.0.ip());
    let q = query(q)?;
    if q.from_height.is_some_and(|h| h > super::handlers::HEIGHT_PARAM_MAX) {
        return Err(ApiError::bad_request("bad_query", "from_height must be at most 9223372036854775807"));
    }
    let last_event_id = match headers.get("last-event-id") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| ApiError::bad_request("bad_query", "Last-Event-ID must be a block height"))?,
        ),
    };
    let Some(client_hold) = s.inner.clients.hold(ip, Held::EventStream) else {
        s.inner.clients.refused(Refusal::EventStreamsPerClient, ip);
        return Err(ApiError::unavailable("too_many_subscribers", "this client holds too many open event streams"));
    };
    let Ok(permit) = s.inner.event_streams.clone().try_acquire_owned() else {
        s.inner.clients.refused(Refusal::EventStreams, ip);
        return Err(ApiError::unavailable("too_many_subscribers", "too many open event streams"));
    };
    let slot = StreamSlot::new(&s, permit, client_hold);
    // Subscribe first, then read the tip: every block above the tip arrives on `live`.
    let live = s.inner.node.subscribe_blocks();
    let (tip, base) = s.read(|st| Ok((st.latest_height()?, st.base_height()?))).await?;
    let from = q.from_height.or(last_event_id.map(|h| h.saturating_add(1)));
    let next_height = from.map_or(tip.0 + 1, |f| f.max(1));
    if next_height < base.0 && next_height <= tip.0 {
        return Err(ApiError::new(
            axum::http::StatusCode::GONE,
            "pruned",
            format!(
                "this node keeps blocks from height {base}: a replay from {next_height} would skip the ones before; start at {base} or later, or use an archive node"
            ),
        ));
    }
    let stream = EventStream {
        state: s.clone(),
        live,
        shutdown: s.inner.shutdown.subscribe(),
        next_height,
        replay_until: tip.0,
        queue: VecDeque::new(),
        done: false,
        _slot: slot,
    };
    Ok(Sse::new(futures::stream::unfold(stream, |mut st| async move {
        let ev = st.next_event().await?;
        Some((Ok(ev), st))
    }))
    .keep_alive(KeepAlive::default()))
}

struct EventStream {
    state: ApiState,
    live: broadcast::Receiver<BlockEvent>,
    shutdown: watch::Receiver<bool>,
    /// Next height to send.
    next_height: u64,
    /// Heights up to this are read from storage.
    replay_until: u64,
    queue: VecDeque<Event>,
    /// Set after the final event is queued.
    done: bool,
    _slot: StreamSlot,
}

/// What an open stream holds: a global slot, the client's share, and its place in the open-streams gauge.
struct StreamSlot {
    state: ApiState,
    _permit: OwnedSemaphorePermit,
    _client: ClientHold,
}

impl StreamSlot {
    fn new(state: &ApiState, permit: OwnedSemaphorePermit, client: ClientHold) -> StreamSlot {
        state.inner.metrics.add_api_event_streams(1);
        StreamSlot { state: state.clone(), _permit: permit, _client: client }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.state.inner.metrics.add_api_event_streams(-1);
    }
}

impl EventStream {
    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(ev) = self.queue.pop_front() {
                return Some(ev);
            }
            if self.done || *self.shutdown.borrow() {
                return None;
            }
            if self.next_height <= self.replay_until {
                let from = Height(self.next_height);
                let chunk = match self
                    .state
                    .read(move |st| st.blocks_from(from, REPLAY_CHUNK_BLOCKS, REPLAY_CHUNK_BYTES))
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        self.fail("internal", &e.message);
                        continue;
                    }
                };
                if chunk.is_empty() {
                    // Committed heights up to `replay_until` are stored unless pruned meanwhile (the client
                    // replayed slower than the retention window moved): say so rather than skip them.
                    let message = format!(
                        "block {} was pruned before this stream replayed it; reconnect from a height this node keeps",
                        self.next_height
                    );
                    self.fail("pruned", &message);
                    continue;
                }
                for (block, _) in chunk {
                    if block.height().0 > self.replay_until {
                        break;
                    }
                    self.push_block(&block);
                }
                continue;
            }
            tokio::select! {
                _ = self.shutdown.changed() => return None,
                r = self.live.recv() => match r {
                    Ok(ev) => {
                        let h = ev.block.height().0;
                        if h < self.next_height {
                            continue;
                        }
                        if h > self.next_height {
                            // Committed before we subscribed but after the tip we read: it is in storage.
                            self.replay_until = h;
                            continue;
                        }
                        self.push_block(&ev.block);
                    }
                    Err(RecvError::Lagged(n)) => {
                        self.fail("lagged", &format!("client fell {n} blocks behind; reconnect with from_height={}", self.next_height));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    }

    fn push_block(&mut self, block: &Block) {
        let height = block.height().0;
        let hash = block.hash().to_hex();
        for (i, tx) in block.txs.iter().enumerate() {
            let t = tx.tx();
            let data = TxEventView {
                id: tx.id().to_hex(),
                height,
                index: i as u32,
                block_hash: hash.clone(),
                sender: t.sender.to_address_string(),
                recipient: t.recipient.to_address_string(),
                amount: t.amount,
                fee: t.fee,
                nonce: t.nonce,
            };
            self.queue.push_back(json_event("tx", &data));
        }
        let data = BlockEventView {
            height,
            hash,
            time: block.header.timestamp_ms,
            time_utc: super::views::rfc3339_ms(block.header.timestamp_ms),
            proposer: block.header.proposer.to_address_string(),
            tx_count: block.txs.len(),
        };
        self.queue.push_back(json_event("block", &data).id(height.to_string()));
        self.next_height = height + 1;
    }

    fn fail(&mut self, code: &str, message: &str) {
        let body = ErrorBody { code: code.into(), message: message.into() };
        self.queue.push_back(json_event("error", &body));
        self.done = true;
    }
}

fn json_event<T: Serialize>(kind: &str, data: &T) -> Event {
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    Event::default().event(kind).data(json)
}
