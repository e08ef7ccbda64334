//! groundtruth's HTTP API: the axum [`router`], the JSON [`views`] it serves, the
//! [`ReadModel`] trait the node implements, and a typed blocking [`client::ApiClient`].
//!
//! | route | answer |
//! |---|---|
//! | `POST /tx` | one raw signed transaction → [`Submitted`] |
//! | `POST /txs` | a batch `(u32 BE len ‖ bytes)*` → `[`[`BatchItem`]`]` in order |
//! | `GET /tx/{hash}` | [`TxOutcomeView`]; `404 unknown_tx` until committed |
//! | `GET /block/{height}` | [`BlockView`] of a recent block; `404 unknown_block` |
//! | `GET /status` | [`StatusView`] |
//! | `GET /state/account/{hex}` | [`AccountView`] |
//! | `GET /state/device/{hex}` | [`DeviceView`]; `404 unknown_device` |
//! | `GET /state/validators` | [`ValidatorsView`] |
//! | `GET /healthz` | liveness: [`HealthView`], `503 unhealthy` if a check failed |
//! | `GET /readyz` | readiness: [`HealthView`], `503 not_ready` if a check failed |
//! | `GET /v1/production/devices/{id}` | [`ProductionSeriesView`] of one device ([`v1`]) |
//! | `GET /v1/production/regions/{region}` | [`ProductionSeriesView`] of a region |
//! | `GET /v1/devices` | [`DevicesPageView`]: devices with production, cursor-paginated |
//! | `GET /v1/events` | Server-Sent Events of newly accepted production |
//! | `GET /v1/certificates`, `GET /v1/certificates/{id}` | hourly granular certificates ([`market`]) |
//! | `GET /v1/validators`, `/v1/slashes`, `/v1/providers` | network state ([`market`]) |
//! | `POST /v1/proofs/verify` | a proof's [`market::VerdictView`] |
//! | `GET /`, `GET /explorer` | the explorer page ([`explorer`]) |
//! | `GET /openapi.json` | the OpenAPI 3.1 document ([`openapi`]) |
//! | `GET /docs` | an offline page rendering it |
//!
//! The `/v1`, `/openapi.json` and `/docs` routes are rate limited per client IP ([`ratelimit`]);
//! production series answers are kept encoded and pre-compressed while the data behind them is
//! unchanged, with an `ETag` ([`cache`]);
//! responses are gzip-compressed when the client accepts it; CORS follows
//! [`ApiConfig::cors_origins`].
//!
//! Every error is RFC 9457 `application/problem+json` ([`Problem`]) with a stable `reason`
//! code, unknown routes and wrong methods included; internals are logged, never shown.
//! Writes are capped before anything sized by the request is allocated ([`ApiConfig`]).
//!
//! This crate must not depend on the node, the ledger or consensus: views are plain data and
//! the node converts its state into them.

pub mod batch;
pub mod cache;
pub mod client;
mod config;
pub mod explorer;
pub mod market;
mod model;
pub mod openapi;
pub mod problem;
pub mod ratelimit;
mod server;
mod sse;
pub mod time;
pub mod v1;
pub mod views;

pub use batch::{decode_batch, encode_batch, BatchError};
pub use cache::ProductionChanges;
pub use client::{ApiClient, ClientError};
pub use config::{
    ApiConfig, DEFAULT_MAX_BATCH_BODY, DEFAULT_MAX_BATCH_ENTRIES, DEFAULT_MAX_CONCURRENT_WRITES,
    DEFAULT_MAX_TX_BYTES,
};
pub use model::{
    DevicesPage, Origin, ReadError, ReadModel, Rejection, RejectionKind, SeriesPage, SeriesPoint,
    SeriesRequest,
};
pub use problem::Problem;
pub use server::{router, router_with, ApiCounters};

/// Serves `router` on `listener` with each connection's peer address (the per-client rate
/// limit reads it; without it nothing is rate limited).
pub async fn serve(listener: tokio::net::TcpListener, router: axum::Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .await
}
pub use views::*;

/// Header marking a transaction batch forwarded by another validator (never re-forwarded).
pub const FORWARDED_HEADER: &str = "x-groundtruth-forwarded";
