//! RFC 9457 problem details: every error the API answers, as `application/problem+json`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Media type of every error response.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Prefix of every problem `type` (followed by the reason code).
pub const TYPE_PREFIX: &str = "urn:groundtruth:problem:";

/// The stable reason codes the API itself produces (transaction rejections add the ledger's
/// codes, e.g. `bad_nonce`, and the node's `mempool_full`, `stopped`).
pub mod reason {
    /// No such route.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists with other methods.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// A path segment is not 64 hex characters.
    pub const BAD_KEY: &str = "bad_key";
    /// A height is not a decimal `u64`.
    pub const BAD_HEIGHT: &str = "bad_height";
    /// A body (declared or received) is over the limit.
    pub const BODY_TOO_LARGE: &str = "body_too_large";
    /// The body could not be received.
    pub const BAD_BODY: &str = "bad_body";
    /// The body did not arrive within the body timeout.
    pub const BODY_TIMEOUT: &str = "body_timeout";
    /// A batch has more entries than allowed.
    pub const TOO_MANY_ENTRIES: &str = "too_many_entries";
    /// A batch entry is longer than a transaction may be.
    pub const ENTRY_TOO_LARGE: &str = "entry_too_large";
    /// A batch ends inside an entry.
    pub const MALFORMED_BATCH: &str = "malformed_batch";
    /// Too many writes in progress.
    pub const BUSY: &str = "busy";
    /// `GET /tx/<hash>`: not in a recent block.
    pub const UNKNOWN_TX: &str = "unknown_tx";
    /// `GET /block/<h>`: not a recent block.
    pub const UNKNOWN_BLOCK: &str = "unknown_block";
    /// `GET /state/device/<id>`: no such device.
    pub const UNKNOWN_DEVICE: &str = "unknown_device";
    /// This node does not serve the resource (e.g. no ledger).
    pub const NOT_SERVED: &str = "not_served";
    /// Temporarily unavailable.
    pub const UNAVAILABLE: &str = "unavailable";
    /// `/healthz` failed.
    pub const UNHEALTHY: &str = "unhealthy";
    /// `/readyz` failed.
    pub const NOT_READY: &str = "not_ready";
    /// Something failed inside the node (details are logged, not shown).
    pub const INTERNAL: &str = "internal";
    /// A required query parameter is absent (`parameter` names it).
    pub const MISSING_PARAMETER: &str = "missing_parameter";
    /// A query parameter this route does not take, or given twice (`parameter` names it).
    pub const UNKNOWN_PARAMETER: &str = "unknown_parameter";
    /// The query string is not valid percent-encoding.
    pub const BAD_QUERY: &str = "bad_query";
    /// `from` or `to` is not an RFC 3339 UTC time.
    pub const BAD_TIME: &str = "bad_time";
    /// `from` or `to` is not on an interval boundary of the granularity.
    pub const MISALIGNED_TIME: &str = "misaligned_time";
    /// `to` is not after `from`.
    pub const BAD_RANGE: &str = "bad_range";
    /// `to - from` is longer than served.
    pub const RANGE_TOO_LARGE: &str = "range_too_large";
    /// `granularity` is not `5m`, `15m`, `1h` or `1d`.
    pub const BAD_GRANULARITY: &str = "bad_granularity";
    /// `limit` is not a whole number in the served range.
    pub const BAD_LIMIT: &str = "bad_limit";
    /// `cursor` was not issued for this query.
    pub const BAD_CURSOR: &str = "bad_cursor";
    /// A region label is empty or too long.
    pub const BAD_REGION: &str = "bad_region";
    /// The client exceeded its request rate (`Retry-After` says when to retry).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// `GET /v1/certificates/{id}`: no such certificate.
    pub const UNKNOWN_CERTIFICATE: &str = "unknown_certificate";
    /// `POST /v1/proofs/verify`: a media type other than the envelope's or a bundle's.
    pub const BAD_CONTENT_TYPE: &str = "bad_content_type";
    /// `POST /v1/proofs/verify`: the envelope or a frame cannot be decoded.
    pub const BAD_PROOF: &str = "bad_proof";
    /// Too many event streams are open.
    pub const TOO_MANY_STREAMS: &str = "too_many_streams";
}

/// A problem details object (RFC 9457) with our `reason` member. Parameter errors add
/// `parameter` (the query or path parameter at fault).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:groundtruth:problem:<reason>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The HTTP status phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// For humans.
    pub detail: String,
    /// Stable reason code for programs.
    pub reason: String,
    /// Extension members (e.g. `checks` of `/healthz`).
    #[serde(flatten)]
    #[schema(ignore)]
    pub extensions: Box<serde_json::Map<String, serde_json::Value>>,
    /// `Retry-After` seconds to send (not part of the body).
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem with `status`, `reason` and `detail`.
    pub fn new(status: StatusCode, reason: impl Into<String>, detail: impl Into<String>) -> Self {
        let reason = reason.into();
        Self {
            type_: format!("{TYPE_PREFIX}{reason}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            reason,
            extensions: Box::default(),
            retry_after: None,
        }
    }

    /// Adds a `Retry-After` header.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds an extension member.
    pub fn with(mut self, key: &str, value: serde_json::Value) -> Self {
        self.extensions.insert(key.to_string(), value);
        self
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// `404` for unknown routes (the router's fallback).
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, reason::NOT_FOUND, "no such route")
}

/// `405` for a known route with another method (the router's method fallback). Routers
/// merged into ours after [`crate::router`] should set it again with
/// `axum::Router::method_not_allowed_fallback`.
pub async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        reason::METHOD_NOT_ALLOWED,
        "method not allowed on this route",
    )
}
