//! The one error type of the API: every failure becomes `{"error": {"code", "message"}}` with a 4xx/5xx
//! status. Client errors carry a stable code and a human message; internal errors are logged here and
//! answered as 500 `internal` without details.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::storage::StorageError;

/// An error answer. Build it with the constructors so codes stay consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// JSON shape of an error answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorView {
    pub error: ErrorBody,
}

/// A stable machine-readable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError { status, code: code.into(), message: message.into() }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
    }

    /// Log `detail` and answer 500 `internal` without it.
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "api internal error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    /// A transaction rejection by its stable code. Status: 409 for a duplicate, 429 when the pool (or the
    /// sender's share of it) is full, 503 when the node cannot take transactions, 500 for storage failures,
    /// 400 for everything else (the transaction itself is wrong for the current state).
    pub fn rejection(code: &str, message: impl Into<String>) -> ApiError {
        let status = rejection_status(code);
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            return ApiError::internal(message.into());
        }
        ApiError::new(status, code, message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody { code: self.code.clone(), message: self.message.clone() }
    }
}

/// HTTP status of a transaction rejection code (see [`ApiError::rejection`]).
pub fn rejection_status(code: &str) -> StatusCode {
    match code {
        "duplicate" => StatusCode::CONFLICT,
        "mempool_full" | "sender_limit" | "nonce_gap_under_load" => StatusCode::TOO_MANY_REQUESTS,
        "unavailable" | "disk_full" | "disk_budget" => StatusCode::SERVICE_UNAVAILABLE,
        "storage_error" | "internal" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> ApiError {
        ApiError::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorView { error: ErrorBody { code: self.code, message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        // Every 429 is worth retrying (a full pool, a sender's share, a gap while under load): say when.
        if self.status == StatusCode::TOO_MANY_REQUESTS && !response.headers().contains_key(header::RETRY_AFTER) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Default code for an error status produced outside our handlers (axum rejections, tower layers).
pub(crate) fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::REQUEST_TIMEOUT => "timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal",
        _ => "bad_request",
    }
}
