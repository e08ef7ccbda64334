//! A typed blocking client for the API: one HTTP/1.1 request per connection
//! (`Connection: close`), std only, usable from any thread (inside tokio, call it from
//! `spawn_blocking`). Enough for our own routes; not a general HTTP client (no TLS, no
//! redirects, no keep-alive).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::batch::encode_batch;
use crate::problem::{Problem, PROBLEM_JSON};
use crate::views::{
    AccountView, BatchItem, BlockView, DeviceView, HealthView, Hex32, StatusView, Submitted,
    TxOutcomeView, ValidatorsView,
};
use crate::FORWARDED_HEADER;

/// Default timeout for connecting and for each read or write.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default largest response read, bytes.
pub const DEFAULT_MAX_RESPONSE: usize = 64 << 20;
/// Largest response head read, bytes.
const MAX_HEAD: usize = 64 << 10;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The base URL is not `http://host:port` (or `host:port`).
    #[error("base URL {0:?}: expected http://host:port")]
    Url(String),
    /// Connecting, sending or receiving failed (includes timeouts).
    #[error("{method} {path}: {source}")]
    Io {
        /// Request method.
        method: &'static str,
        /// Request path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The response is not HTTP/1.1 we understand, or is over the size limit.
    #[error("{path}: malformed response: {message}")]
    Protocol {
        /// Request path.
        path: String,
        /// What is wrong.
        message: &'static str,
    },
    /// The server answered with a problem+json error.
    #[error("{path}: {status} {}: {}", problem.reason, problem.detail)]
    Problem {
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The problem details (with the stable `reason`).
        problem: Box<Problem>,
    },
    /// The server answered with an unexpected status and no problem details.
    #[error("{path}: unexpected status {status}: {body}")]
    Status {
        /// Request path.
        path: String,
        /// HTTP status.
        status: u16,
        /// The start of the body, lossily decoded.
        body: String,
    },
    /// A success response whose body is not the expected JSON.
    #[error("{path}: unexpected response body: {source}")]
    Decode {
        /// Request path.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl ClientError {
    /// The server's stable reason code, when it gave one.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Problem { problem, .. } => Some(&problem.reason),
            _ => None,
        }
    }

    /// The HTTP status, when a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Problem { status, .. } | Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The problem details, when the server gave some.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Problem { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// Result of a client call.
pub type Result<T> = std::result::Result<T, ClientError>;

/// A raw response: status, `Content-Type` and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// The `Content-Type` header, if any.
    pub content_type: Option<String>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

/// A client for one node's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    authority: String,
    timeout: Duration,
    max_response: usize,
}

impl ApiClient {
    /// A client for `http://host:port` (a bare `host:port` is accepted; a trailing `/` too).
    pub fn new(base_url: &str) -> Result<Self> {
        let rest = base_url.strip_prefix("http://").unwrap_or(base_url);
        let authority = rest.trim_end_matches('/');
        if authority.is_empty()
            || authority.contains('/')
            || authority.contains("://")
            || !authority.contains(':')
        {
            return Err(ClientError::Url(base_url.to_string()));
        }
        Ok(Self {
            authority: authority.to_string(),
            timeout: DEFAULT_TIMEOUT,
            max_response: DEFAULT_MAX_RESPONSE,
        })
    }

    /// Sets the connect and per-read/write timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the largest response read.
    pub fn with_max_response(mut self, bytes: usize) -> Self {
        self.max_response = bytes;
        self
    }

    /// `host:port` of the node.
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `GET /status`.
    pub fn status(&self) -> Result<StatusView> {
        self.get("/status")
    }

    /// `GET /state/account/<hex>`.
    pub fn account(&self, address: &Hex32) -> Result<AccountView> {
        self.get(&format!("/state/account/{address}"))
    }

    /// `GET /state/device/<hex>`; `None` if there is no such device.
    pub fn device(&self, id: &Hex32) -> Result<Option<DeviceView>> {
        self.get_optional(&format!("/state/device/{id}"), "unknown_device")
    }

    /// `GET /state/validators`.
    pub fn validators(&self) -> Result<ValidatorsView> {
        self.get("/state/validators")
    }

    /// `GET /tx/<hash>`; `None` until the transaction is in a (recent) committed block.
    pub fn tx(&self, hash: &Hex32) -> Result<Option<TxOutcomeView>> {
        self.get_optional(&format!("/tx/{hash}"), "unknown_tx")
    }

    /// `GET /block/<height>`; `None` if it is not a recent committed block.
    pub fn block(&self, height: u64) -> Result<Option<BlockView>> {
        self.get_optional(&format!("/block/{height}"), "unknown_block")
    }

    /// `POST /tx`: one raw signed transaction. A refusal is [`ClientError::Problem`] with the
    /// ledger's reason code.
    pub fn submit_tx(&self, raw: &[u8]) -> Result<Submitted> {
        let r = self.request("POST", "/tx", raw, &[])?;
        expect_json("/tx", r)
    }

    /// `POST /txs`: a batch; one outcome per transaction, in order.
    pub fn submit_txs<T: AsRef<[u8]>>(&self, txs: &[T]) -> Result<Vec<BatchItem>> {
        let r = self.request("POST", "/txs", &encode_batch(txs), &[])?;
        expect_json("/txs", r)
    }

    /// `POST /txs` marked as forwarded by a validator (the receiver does not forward it again).
    pub fn forward_txs<T: AsRef<[u8]>>(&self, txs: &[T]) -> Result<Vec<BatchItem>> {
        let r = self.request(
            "POST",
            "/txs",
            &encode_batch(txs),
            &[(FORWARDED_HEADER, "1")],
        )?;
        expect_json("/txs", r)
    }

    /// `GET /metrics`: the Prometheus text.
    pub fn metrics_text(&self) -> Result<String> {
        let r = self.request("GET", "/metrics", &[], &[])?;
        if r.status != 200 {
            return Err(error_of("/metrics", r));
        }
        Ok(String::from_utf8_lossy(&r.body).into_owned())
    }

    /// `GET /healthz`: the checks, whether they passed (`200`) or not (`503`).
    pub fn health(&self) -> Result<HealthView> {
        self.health_at("/healthz")
    }

    /// `GET /readyz`: the checks, whether they passed (`200`) or not (`503`).
    pub fn readiness(&self) -> Result<HealthView> {
        self.health_at("/readyz")
    }

    fn health_at(&self, path: &str) -> Result<HealthView> {
        let r = self.request("GET", path, &[], &[])?;
        if r.status == 200 || r.status == 503 {
            if let Ok(v) = serde_json::from_slice::<HealthView>(&r.body) {
                return Ok(v);
            }
        }
        Err(error_of(path, r))
    }

    /// `GET` a path and decode its JSON (for routes without a typed method).
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        self.get(path)
    }

    fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let r = self.request("GET", path, &[], &[])?;
        expect_json(path, r)
    }

    fn get_optional<T: DeserializeOwned>(&self, path: &str, missing: &str) -> Result<Option<T>> {
        match self.get(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) && e.reason() == Some(missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends one request and returns the raw response, whatever its status.
    pub fn request(
        &self,
        method: &'static str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<RawResponse> {
        let io = |source| ClientError::Io {
            method,
            path: path.to_string(),
            source,
        };
        let raw = self.exchange(method, path, body, headers).map_err(io)?;
        parse_response(&raw).map_err(|message| ClientError::Protocol {
            path: path.to_string(),
            message,
        })
    }

    fn exchange(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> std::io::Result<Vec<u8>> {
        let mut last = None;
        let mut stream = None;
        for addr in self.authority.to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, self.timeout) {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let mut s = match stream {
            Some(s) => s,
            None => {
                return Err(last.unwrap_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::NotFound, "no address")
                }))
            }
        };
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        s.set_nodelay(true)?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nContent-Length: {}\r\n",
            self.authority,
            body.len()
        );
        if !body.is_empty() {
            head.push_str("Content-Type: application/octet-stream\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        let cap = u64::try_from(self.max_response.saturating_add(MAX_HEAD)).unwrap_or(u64::MAX);
        s.take(cap.saturating_add(1)).read_to_end(&mut raw)?;
        if raw.len() as u64 > cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "response over the size limit",
            ));
        }
        Ok(raw)
    }
}

fn expect_json<T: DeserializeOwned>(path: &str, r: RawResponse) -> Result<T> {
    if r.status != 200 {
        return Err(error_of(path, r));
    }
    serde_json::from_slice(&r.body).map_err(|source| ClientError::Decode {
        path: path.to_string(),
        source,
    })
}

/// A non-success response as an error: its problem details if it has them.
fn error_of(path: &str, r: RawResponse) -> ClientError {
    let is_problem = r
        .content_type
        .as_deref()
        .is_some_and(|c| c.starts_with(PROBLEM_JSON));
    if is_problem {
        if let Ok(problem) = serde_json::from_slice::<Problem>(&r.body) {
            return ClientError::Problem {
                path: path.to_string(),
                status: r.status,
                problem: Box::new(problem),
            };
        }
    }
    let end = r.body.len().min(512);
    ClientError::Status {
        path: path.to_string(),
        status: r.status,
        body: String::from_utf8_lossy(r.body.get(..end).unwrap_or_default()).into_owned(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Splits a raw `Connection: close` response into status, content type and body (handles
/// `Content-Length` and `Transfer-Encoding: chunked`).
pub fn parse_response(raw: &[u8]) -> std::result::Result<RawResponse, &'static str> {
    let split = find(
        raw.get(..raw.len().min(MAX_HEAD)).unwrap_or_default(),
        b"\r\n\r\n",
    )
    .ok_or("no end of headers")?;
    let head = std::str::from_utf8(raw.get(..split).unwrap_or_default())
        .map_err(|_| "headers are not UTF-8")?;
    let body = raw.get(split.saturating_add(4)..).unwrap_or_default();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .filter(|l| l.starts_with("HTTP/1."))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or("no status line")?;
    let (mut content_type, mut content_length, mut chunked) = (None, None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = Some(value.to_string()),
            "content-length" => {
                content_length = Some(value.parse::<usize>().map_err(|_| "bad content-length")?)
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            _ => {}
        }
    }
    let body = if chunked {
        dechunk(body)?
    } else if let Some(n) = content_length {
        body.get(..n)
            .ok_or("body shorter than content-length")?
            .to_vec()
    } else {
        body.to_vec()
    };
    Ok(RawResponse {
        status,
        content_type,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> std::result::Result<Vec<u8>, &'static str> {
    let mut out = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("truncated chunk")?;
        let size_text = std::str::from_utf8(rest.get(..line_end).unwrap_or_default())
            .map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        let start = line_end.checked_add(2).ok_or("truncated chunk")?;
        let end = start.checked_add(size).ok_or("truncated chunk")?;
        out.extend_from_slice(rest.get(start..end).ok_or("truncated chunk")?);
        rest = rest
            .get(end.checked_add(2).ok_or("truncated chunk")?..)
            .unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_sized_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
        let r = parse_response(plain);
        assert_eq!(
            r,
            Ok(RawResponse {
                status: 200,
                content_type: Some("text/plain".into()),
                body: b"ok".to_vec()
            })
        );
        let chunked = b"HTTP/1.1 400 Bad\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(
            parse_response(chunked).map(|r| r.body),
            Ok(b"abcde".to_vec())
        );
        assert!(parse_response(b"garbage").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nok").is_err());
        let huge = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\nab";
        assert!(parse_response(huge).is_err());
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            ApiClient::new("http://127.0.0.1:9/")
                .map(|c| c.authority().to_string())
                .ok(),
            Some("127.0.0.1:9".to_string())
        );
        assert!(ApiClient::new("127.0.0.1:9").is_ok());
        assert!(ApiClient::new("https://127.0.0.1:9").is_err());
        assert!(ApiClient::new("http://127.0.0.1:9/x").is_err());
        assert!(ApiClient::new("").is_err());
    }
}
