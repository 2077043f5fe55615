//! A small blocking client for the node's HTTP API (`docs/api.md`): plain HTTP, JSON, bounded bodies.
//!
//! Every failure becomes a [`WalletError`] of the right kind: the node cannot be reached
//! ([`ErrorKind::Unreachable`]), or it answered with `{"error": {"code", "message"}}`
//! ([`ErrorKind::NodeError`], code kept in `node_code`). Response types list only the fields the wallet
//! uses, so the node may add fields without breaking it.

use std::io::Read;
use std::time::Duration;

use ledger_core::merkle::MerkleProof;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, WalletError, one_line};

/// Largest response body read for small documents (status, account, tx).
pub const SMALL_BODY_BYTES_MAX: u64 = 1024 * 1024;
/// Largest response body read for a block with its decoded transactions.
pub const BLOCK_BODY_BYTES_MAX: u64 = 96 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default timeout of one request (the `?wait=commit` submission sets its own).
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

#[derive(Deserialize)]
struct ErrorBody {
    error: Reason,
}

/// The node at one base URL.
pub struct NodeClient {
    base: String,
    http: reqwest::blocking::Client,
}

impl NodeClient {
    /// `base` must be `http://host:port` (no TLS in this build; the node API is meant for localhost).
    pub fn new(base: &str) -> Result<NodeClient, WalletError> {
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
        let http = reqwest::blocking::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| WalletError::generic(format!("cannot start the HTTP client: {e}")))?;
        Ok(NodeClient { base, http })
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

    pub fn tx(&self, id: &str) -> Result<TxStatus, WalletError> {
        self.get_as(&format!("/txs/{id}"), SMALL_BODY_BYTES_MAX)
    }

    pub fn block_header_hex(&self, height: u64) -> Result<BlockInfo, WalletError> {
        self.get_as(&format!("/blocks/{height}"), BLOCK_BODY_BYTES_MAX)
    }

    pub fn commit(&self, height: u64) -> Result<CommitInfo, WalletError> {
        self.get_as(&format!("/blocks/{height}/commit"), SMALL_BODY_BYTES_MAX)
    }

    /// The chain's minimum fee from `GET /genesis`, or `None` if the node does not serve it in a shape
    /// the wallet understands (the route is outside the wallet's part of the contract).
    pub fn min_fee(&self) -> Result<Option<u64>, WalletError> {
        let doc = match self.get_json("/genesis", 64 * 1024 * 1024) {
            Ok(doc) => doc,
            Err(e) if e.kind == ErrorKind::NodeError => return Ok(None),
            Err(e) => return Err(e),
        };
        let params = doc.get("params").or_else(|| doc.get("genesis").and_then(|g| g.get("params")));
        Ok(params.and_then(|p| p.get("min_fee")).and_then(serde_json::Value::as_u64))
    }

    /// `POST /txs` with the signed transaction's hex; with `wait` the node holds the answer until commit
    /// (bounded by `wait_timeout`).
    pub fn submit(&self, tx_hex: &str, wait: Option<Duration>) -> Result<TxStatus, WalletError> {
        let body = serde_json::json!({ "tx": tx_hex }).to_string();
        let (path, timeout) = match wait {
            Some(t) => ("/txs?wait=commit", t + Duration::from_secs(5)),
            None => ("/txs", REQUEST_TIMEOUT),
        };
        let request =
            self.http.post(self.url(path)).header("content-type", "application/json").timeout(timeout).body(body);
        let value = self.send(request, path, SMALL_BODY_BYTES_MAX)?;
        from_value(value, path)
    }

    /// `GET path` as raw JSON.
    pub fn get_json(&self, path: &str, body_max: u64) -> Result<serde_json::Value, WalletError> {
        self.send(self.http.get(self.url(path)), path, body_max)
    }

    fn get_as<T: DeserializeOwned>(&self, path: &str, body_max: u64) -> Result<T, WalletError> {
        from_value(self.get_json(path, body_max)?, path)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn send(
        &self,
        request: reqwest::blocking::RequestBuilder,
        path: &str,
        body_max: u64,
    ) -> Result<serde_json::Value, WalletError> {
        let response = request.send().map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        let mut body = Vec::new();
        response.take(body_max + 1).read_to_end(&mut body).map_err(|e| {
            WalletError::new(
                ErrorKind::Unreachable,
                format!("lost the connection to the node at {} while reading {path}: {e}", self.base),
            )
        })?;
        if body.len() as u64 > body_max {
            return Err(WalletError::generic(format!(
                "the node's answer to {path} is larger than {body_max} bytes; refusing to read it"
            )));
        }
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
        serde_json::from_slice(&body).map_err(|e| {
            WalletError::generic(format!(
                "the node's answer to {path} is not valid JSON ({e}); is {} a ledger node?",
                self.base
            ))
        })
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
