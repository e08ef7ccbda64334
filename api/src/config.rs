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
        }
    }
}
