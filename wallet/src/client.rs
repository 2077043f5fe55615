//! A small client for the node's HTTP API (`docs/api.md`): plain HTTP, JSON, bounded bodies, and one
//! overall deadline per request.
//!
//! The client defends itself against a node that misbehaves: each request (connect, headers and the whole
//! body) must complete within its deadline (`--timeout`, default [`REQUEST_TIMEOUT`]; a node that drips
//! its answer a byte at a time is cut off there, not after each read), and every body is read in chunks
//! up to the largest legitimate answer of that route, refused beyond it before it is all in memory.
//!
//! Every failure becomes a [`WalletError`] of the right kind: the node cannot be reached
//! ([`ErrorKind::Unreachable`]: refused, or no connection within [`CONNECT_TIMEOUT`]), or it answered
//! with `{"error": {"code", "message"}}` or misbehaved (no complete answer within the deadline, an answer
//! too large) ([`ErrorKind::NodeError`], code kept in `node_code`). Response types list only the fields
//! the wallet uses, so the node may add fields without breaking it.

use std::time::Duration;

use ledger_core::merkle::MerkleProof;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, WalletError, one_line};

/// Largest response body read for small documents (status, account, tx).
pub const SMALL_BODY_BYTES_MAX: u64 = 1024 * 1024;
/// Largest response body read for a block with its decoded transactions.
pub const BLOCK_BODY_BYTES_MAX: u64 = 96 * 1024 * 1024;
/// Largest `GET /genesis` answer read: the largest genesis file any node accepts.
pub const GENESIS_BODY_BYTES_MAX: u64 = ledger_core::genesis::GENESIS_BYTES_MAX as u64;
/// Largest `GET /validators/transitions` page read: 16 transitions of at most ~140 kB each, with room.
pub const TRANSITIONS_BODY_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Transitions asked for per page (the node's maximum).
pub const TRANSITIONS_PAGE: usize = 16;
/// A node that accepts no connection within this is unreachable (exit 3).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default overall deadline of one request (`--timeout`; the `?wait=commit` submission adds its wait).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /status`.
#[derive(Clone, Debug, Deserialize)]
pub struct Status {
    pub chain_id: String,
    pub height: u64,
    #[serde(default)]
    pub latest_block_hash: Option<String>,
}

/// `GET /accounts/{address}`.
#[derive(Clone, Debug, Deserialize)]
pub struct AccountInfo {
    pub balance: u64,
    pub nonce: u64,
    pub next_nonce: u64,
}

/// The account of `GET /accounts/{address}/proof`.
#[derive(Clone, Debug, Deserialize)]
pub struct ProvenAccount {
    pub balance: u64,
    pub nonce: u64,
}

/// `GET /accounts/{address}/proof`: the claim and the canonical bytes (the decoded proof is not read).
#[derive(Clone, Debug, Deserialize)]
pub struct AccountProof {
    pub height: u64,
    pub present: bool,
    #[serde(default)]
    pub account: Option<ProvenAccount>,
    pub header_hex: String,
    pub proof_hex: String,
}

/// `{"code", "message"}` of an error or of a rejection reason.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Reason {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// `GET /txs/{id}` and the answer of `POST /txs`.
#[derive(Clone, Debug, Deserialize)]
pub struct TxStatus {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub reason: Option<Reason>,
    #[serde(default)]
    pub height: Option<u64>,
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default)]
    pub block_hash: Option<String>,
    #[serde(default)]
    pub proof: Option<MerkleProof>,
    #[serde(default)]
    pub tx_hex: Option<String>,
}

/// `GET /blocks/{height}` (only what `verify` needs; `wallet block` prints the raw document).
#[derive(Clone, Debug, Deserialize)]
pub struct BlockInfo {
    pub header_hex: String,
}

/// `GET /blocks/{height}/commit`.
#[derive(Clone, Debug, Deserialize)]
pub struct CommitInfo {
    pub certificate_hex: String,
}

/// `GET /validators/transitions`: the canonical bytes of each transition (decoded fields are not read).
#[derive(Clone, Debug, Deserialize)]
pub struct TransitionsPage {
    pub transitions: Vec<crate::verify::TransitionHex>,
    #[serde(default)]
    pub next_from_height: Option<u64>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Reason,
}

/// `GET /genesis`: only the minimum fee is read; every other field is skipped while parsing, so a large
/// genesis costs its bytes and nothing more.
#[derive(Deserialize)]
struct GenesisFee {
    params: Option<FeeParams>,
}

#[derive(Deserialize)]
struct FeeParams {
    min_fee: Option<u64>,
}

/// The node at one base URL.
pub struct NodeClient {
    base: String,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    timeout: Duration,
}

impl NodeClient {
    /// `base` must be `http://host:port` (no TLS in this build; the node API is meant for localhost).
    pub fn new(base: &str) -> Result<NodeClient, WalletError> {
        NodeClient::with_timeout(base, REQUEST_TIMEOUT)
    }

    /// A client whose every request must complete within `timeout` (connect, headers and body).
    pub fn with_timeout(base: &str, timeout: Duration) -> Result<NodeClient, WalletError> {
        if timeout.is_zero() {
            return Err(WalletError::usage("--timeout must be at least 1 second"));
        }
        let base = base.trim().trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            return Err(WalletError::usage(format!(
                "node URL {base} uses https, which this wallet does not support: use http:// to a local node"
            )));
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(WalletError::usage(format!(
                "node URL {base:?} is not an http:// URL: use --node http://HOST:PORT or set LEDGER_NODE"
            )));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| WalletError::generic(format!("cannot start the HTTP client: {e}")))?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WalletError::generic(format!("cannot start the HTTP client: {e}")))?;
        Ok(NodeClient { base, http, runtime, timeout })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn status(&self) -> Result<Status, WalletError> {
        self.get_as("/status", SMALL_BODY_BYTES_MAX)
    }

    pub fn account(&self, address: &str) -> Result<AccountInfo, WalletError> {
        self.get_as(&format!("/accounts/{address}"), SMALL_BODY_BYTES_MAX)
    }

    pub fn account_proof(&self, address: &str) -> Result<AccountProof, WalletError> {
        self.get_as(&format!("/accounts/{address}/proof"), SMALL_BODY_BYTES_MAX)
    }

    pub fn tx(&self, id: &str) -> Result<TxStatus, WalletError> {
        self.get_as(&format!("/txs/{id}"), SMALL_BODY_BYTES_MAX)
    }

    pub fn block_header_hex(&self, height: u64) -> Result<BlockInfo, WalletError> {
        self.get_as(&format!("/blocks/{height}"), BLOCK_BODY_BYTES_MAX)
    }

    pub fn commit(&self, height: u64) -> Result<CommitInfo, WalletError> {
        self.get_as(&format!("/blocks/{height}/commit"), SMALL_BODY_BYTES_MAX)
    }

    /// One page of validator-set transitions whose new set starts at `from_height` or later, oldest first.
    pub fn transitions(&self, from_height: u64) -> Result<TransitionsPage, WalletError> {
        self.get_as(
            &format!("/validators/transitions?from_height={from_height}&limit={TRANSITIONS_PAGE}"),
            TRANSITIONS_BODY_BYTES_MAX,
        )
    }

    /// The chain's minimum fee from `GET /genesis`, or `None` if the node does not serve it in a shape
    /// the wallet understands (the route is outside the wallet's part of the contract).
    pub fn min_fee(&self) -> Result<Option<u64>, WalletError> {
        let body =
            match self.fetch(self.http.get(self.url("/genesis")), "/genesis", GENESIS_BODY_BYTES_MAX, self.timeout) {
                Ok(body) => body,
                // An error answer: the route is not the wallet's part of the contract.
                Err(e) if e.kind == ErrorKind::NodeError && e.node_status.is_some() => return Ok(None),
                Err(e) => return Err(e),
            };
        Ok(serde_json::from_slice::<GenesisFee>(&body).ok().and_then(|g| g.params).and_then(|p| p.min_fee))
    }

    /// `POST /txs` with the signed transaction's hex; with `wait` the node holds the answer until commit
    /// (bounded by `wait_timeout`).
    pub fn submit(&self, tx_hex: &str, wait: Option<Duration>) -> Result<TxStatus, WalletError> {
        let body = serde_json::json!({ "tx": tx_hex }).to_string();
        let (path, timeout) = match wait {
            // The node holds the answer for up to the wait (at most 25 s), then answers `pending`.
            Some(t) => ("/txs?wait=commit", t.min(Duration::from_secs(25)) + self.timeout),
            None => ("/txs", self.timeout),
        };
        let request = self.http.post(self.url(path)).header("content-type", "application/json").body(body);
        let value = self.send(request, path, SMALL_BODY_BYTES_MAX, timeout)?;
        from_value(value, path)
    }

    /// `POST /governance/approvals` with an approval's hex; the node's answer.
    pub fn submit_approval(&self, approval_hex: &str) -> Result<serde_json::Value, WalletError> {
        let body = serde_json::json!({ "approval": approval_hex }).to_string();
        let path = "/governance/approvals";
        let request = self.http.post(self.url(path)).header("content-type", "application/json").body(body);
        self.send(request, path, SMALL_BODY_BYTES_MAX, self.timeout)
    }

    /// `GET path` as raw JSON.
    pub fn get_json(&self, path: &str, body_max: u64) -> Result<serde_json::Value, WalletError> {
        self.send(self.http.get(self.url(path)), path, body_max, self.timeout)
    }

    fn get_as<T: DeserializeOwned>(&self, path: &str, body_max: u64) -> Result<T, WalletError> {
        from_value(self.get_json(path, body_max)?, path)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
        body_max: u64,
        timeout: Duration,
    ) -> Result<serde_json::Value, WalletError> {
        let body = self.fetch(request, path, body_max, timeout)?;
        serde_json::from_slice(&body).map_err(|e| {
            WalletError::generic(format!(
                "the node's answer to {path} is not valid JSON ({e}); is {} a ledger node?",
                self.base
            ))
        })
    }

    /// Send `request` and read its whole body, all within `timeout`, at most `body_max` bytes. A non-2xx
    /// answer becomes a node error carrying the node's code.
    fn fetch(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
        body_max: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, WalletError> {
        let exchange = async {
            let mut response = request.send().await.map_err(|e| self.transport_error(&e))?;
            let status = response.status();
            let too_large = || {
                WalletError::new(
                    ErrorKind::NodeError,
                    format!("the node's answer to {path} is larger than {body_max} bytes; refusing to read it"),
                )
                .with_node_code("too_large")
            };
            if response.content_length().is_some_and(|n| n > body_max) {
                return Err(too_large());
            }
            let mut body = Vec::new();
            loop {
                let chunk = response.chunk().await.map_err(|e| {
                    WalletError::new(
                        ErrorKind::Unreachable,
                        format!(
                            "lost the connection to the node at {} while reading {path}: {}",
                            self.base,
                            root_cause(&e)
                        ),
                    )
                })?;
                let Some(chunk) = chunk else { break };
                if (body.len() + chunk.len()) as u64 > body_max {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok((status, body))
        };
        let (status, body) = match self.runtime.block_on(async { tokio::time::timeout(timeout, exchange).await }) {
            Ok(r) => r?,
            Err(_) => {
                return Err(WalletError::new(
                    ErrorKind::NodeError,
                    format!(
                        "the node at {} did not complete its answer to {path} within {} s; raise --timeout if it is only slow",
                        self.base,
                        timeout.as_secs_f64().ceil()
                    ),
                )
                .with_node_code("timeout"));
            }
        };
        if !status.is_success() {
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(ErrorBody { error }) => WalletError::new(
                    ErrorKind::NodeError,
                    format!("node error {} ({}): {}", error.code, status.as_u16(), error.message),
                )
                .with_node_code(error.code)
                .with_node_reply(status.as_u16(), &error.message),
                Err(_) => WalletError::new(
                    ErrorKind::NodeError,
                    format!(
                        "node answered {path} with HTTP {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    ),
                )
                .with_node_code(format!("http_{}", status.as_u16()))
                .with_node_reply(status.as_u16(), ""),
            });
        }
        Ok(body)
    }

    fn transport_error(&self, e: &reqwest::Error) -> WalletError {
        let what = if e.is_timeout() {
            "did not answer in time".to_string()
        } else if e.is_connect() {
            format!("refused or failed the connection ({})", root_cause(e))
        } else {
            root_cause(e)
        };
        WalletError::new(
            ErrorKind::Unreachable,
            format!(
                "cannot reach the node at {}: {what}; is ledgerd running? Point the wallet at it with --node URL or LEDGER_NODE",
                self.base
            ),
        )
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    one_line(&cause.to_string())
}

fn from_value<T: DeserializeOwned>(value: serde_json::Value, path: &str) -> Result<T, WalletError> {
    serde_json::from_value(value).map_err(|e| {
        WalletError::generic(format!("the node's answer to {path} does not have the expected fields: {e}"))
    })
}
