//! Limits of the HTTP API.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits applied before anything sized by a request is allocated. Every field has a default
/// (see [`ApiConfig::default`]); a node sets `max_tx_bytes` to the ledger's transaction limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Largest `POST /tx` body and largest entry of a `POST /txs` batch, bytes.
    /// Default 16 KiB (the ledger's `MAX_TX_LEN`).
    pub max_tx_bytes: usize,
    /// Largest `POST /txs` body, bytes. Default 1 MiB.
    pub max_batch_body: usize,
    /// Most entries in one `POST /txs` batch. Default 4096.
    pub max_batch_entries: usize,
    /// Most `POST /tx` and `POST /txs` requests handled at once (body read included); more
    /// are answered `503` with `Retry-After`. Default 64; 0 is taken as 1.
    pub max_concurrent_writes: usize,
    /// `Retry-After` sent with `503`, whole seconds. Default 1.
    pub retry_after_secs: u32,
    /// Longest time to receive a write's body once admitted; slower clients get `408`.
    /// Default 10 s.
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    /// Origins allowed to call the API from a browser (CORS), e.g. `https://explorer.example`;
    /// `"*"` allows any. Empty (the default): no CORS headers, browsers allow same-origin only.
    pub cors_origins: Vec<String>,
    /// Requests per second each client IP may make to the public read routes (`/v1/…`,
    /// `/openapi.json`, `/docs`), refilled continuously; more get `429` with `Retry-After`.
    /// 0 disables the limit. Default 50. Needs the client address: serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()` (see [`crate::serve`]).
    pub rate_limit_per_s: u32,
    /// Requests a client may burst above the rate. Default 100.
    pub rate_limit_burst: u32,
    /// Bytes of encoded production series answers kept for reuse (JSON and gzip, see
    /// `cache`); an answer is served from it while the device-days or region-days it covers
    /// are unchanged. Default 32 MiB; 0 disables it.
    pub series_cache_bytes: usize,
    /// Most client IPs tracked at once; past it the least recently seen is forgotten (it
    /// starts again with a full bucket). Default 10 000.
    pub rate_limit_clients: usize,
    /// Most `GET /v1/events` streams open at once; more get `503`. Default 64.
    pub max_event_streams: usize,
    /// Largest proof envelope `POST /v1/proofs/verify` takes, bytes. Default 768 KiB (the
    /// ledger's default `max_audit_proof_bytes`; the node sets the ledger's value).
    pub max_proof_bytes: usize,
    /// Largest proof bundle (envelope and signed frames) `POST /v1/proofs/verify` takes,
    /// bytes. Default 16 MiB.
    pub max_verify_body: usize,
    /// Proof verifications run at once (each on the blocking pool); more get `503`.
    /// Default 2; 0 is taken as 1.
    pub max_concurrent_verifies: usize,
}

/// Default for [`ApiConfig::max_tx_bytes`].
pub const DEFAULT_MAX_TX_BYTES: usize = 16 * 1024;
/// Default for [`ApiConfig::max_batch_body`].
pub const DEFAULT_MAX_BATCH_BODY: usize = 1 << 20;
/// Default for [`ApiConfig::max_batch_entries`].
pub const DEFAULT_MAX_BATCH_ENTRIES: usize = 4096;
/// Default for [`ApiConfig::max_concurrent_writes`].
pub const DEFAULT_MAX_CONCURRENT_WRITES: usize = 64;

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_tx_bytes: DEFAULT_MAX_TX_BYTES,
            max_batch_body: DEFAULT_MAX_BATCH_BODY,
            max_batch_entries: DEFAULT_MAX_BATCH_ENTRIES,
            max_concurrent_writes: DEFAULT_MAX_CONCURRENT_WRITES,
            retry_after_secs: 1,
            body_timeout: Duration::from_secs(10),
            cors_origins: Vec::new(),
            rate_limit_per_s: 50,
            rate_limit_burst: 100,
            series_cache_bytes: 32 << 20,
            rate_limit_clients: 10_000,
            max_event_streams: 64,
            max_proof_bytes: 768 * 1024,
            max_verify_body: 16 << 20,
            max_concurrent_verifies: 2,
        }
    }
}
