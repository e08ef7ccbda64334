//! The axum router: routes, write admission (caps, concurrency), problem+json errors.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::batch::{decode_batch, BatchError};
use crate::cache::{ProductionChanges, SeriesCache};
use crate::config::ApiConfig;
use crate::model::{Origin, ReadError, ReadModel, Rejection, RejectionKind};
use crate::problem::{method_not_allowed, not_found, reason, Problem};
use crate::ratelimit::RateLimiter;
use crate::views::{AccountView, BatchItem, HealthView, Hex32, RejectedView};
use crate::FORWARDED_HEADER;

pub(crate) struct Inner {
    pub(crate) model: Arc<dyn ReadModel>,
    pub(crate) config: ApiConfig,
    writes: Arc<Semaphore>,
    /// Open `GET /v1/events` streams.
    pub(crate) streams: Arc<Semaphore>,
    /// Proof verifications in progress.
    pub(crate) verifies: Arc<Semaphore>,
    pub(crate) counters: Arc<ApiCounters>,
    /// The production series cache and the change counters that validate it (`None`: the
    /// model has no counters or `series_cache_bytes` is 0).
    pub(crate) series: Option<(Arc<ProductionChanges>, SeriesCache)>,
}

pub(crate) type AppState = Arc<Inner>;

/// Counters the router keeps (the node exports them as metrics).
#[derive(Debug, Default)]
pub struct ApiCounters {
    /// Requests refused with `429` by the per-client rate limit.
    pub rate_limited: AtomicU64,
    /// Live events a slow `GET /v1/events` client missed (its stream said `lagged`).
    pub events_dropped: AtomicU64,
    /// Live events sent to clients.
    pub events_sent: AtomicU64,
}

/// The API's router (state included): every route of the crate docs, `404`/`405`
/// problem+json fallbacks. Serve it with [`crate::serve`] (the rate limit needs the client's
/// address), or merge it with other routes.
pub fn router(model: Arc<dyn ReadModel>, config: ApiConfig) -> Router {
    router_with(model, config, Arc::default())
}

/// [`router`] counting into `counters`.
pub fn router_with(
    model: Arc<dyn ReadModel>,
    config: ApiConfig,
    counters: Arc<ApiCounters>,
) -> Router {
    let writes = Arc::new(Semaphore::new(config.max_concurrent_writes.max(1)));
    let streams = Arc::new(Semaphore::new(config.max_event_streams.max(1)));
    let verifies = Arc::new(Semaphore::new(config.max_concurrent_verifies.max(1)));
    let limiter = Arc::new(RateLimiter::new(&config, counters.clone()));
    let cors = cors_layer(&config.cors_origins);
    let series = match (model.production_changes(), config.series_cache_bytes) {
        (Some(changes), bytes) if bytes > 0 => Some((changes, SeriesCache::new(bytes))),
        _ => None,
    };
    let state = Arc::new(Inner {
        model,
        config,
        writes,
        streams,
        verifies,
        counters,
        series,
    });
    let public = Router::new()
        .route(
            "/v1/production/devices/{id}",
            get(crate::v1::device_production),
        )
        .route(
            "/v1/production/regions/{region}",
            get(crate::v1::region_production),
        )
        .route("/v1/devices", get(crate::v1::devices))
        .route("/v1/events", get(crate::sse::events))
        .route("/v1/certificates", get(crate::market::certificates))
        .route("/v1/certificates/{id}", get(crate::market::certificate))
        .route("/v1/validators", get(crate::market::validators))
        .route("/v1/slashes", get(crate::market::slashes))
        .route("/v1/providers", get(crate::market::providers))
        .route("/v1/proofs/verify", post(crate::market::verify))
        .route("/", get(crate::explorer::page))
        .route("/explorer", get(crate::explorer::page))
        .route("/explorer/verifier.js", get(crate::explorer::verifier_js))
        .route(
            "/explorer/verifier.wasm",
            get(crate::explorer::verifier_wasm),
        )
        .route("/openapi.json", get(crate::openapi::openapi_json))
        .route("/docs", get(crate::openapi::docs))
        .route_layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        ));
    let app = Router::new()
        .route("/tx", post(post_tx))
        .route("/txs", post(post_txs))
        .route("/tx/{hash}", get(get_tx))
        .route("/block/{height}", get(get_block))
        .route("/status", get(status))
        .route("/state/account/{address}", get(account))
        .route("/state/device/{id}", get(device))
        .route("/state/validators", get(validators))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(public)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(CompressionLayer::new());
    match cors {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

/// CORS for the configured origins (`"*"`: any); `None` when none is configured. Origins
/// that are not valid header values are skipped with a warning.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let list: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| match HeaderValue::from_str(o) {
                Ok(v) => Some(v),
                Err(_) => {
                    tracing::warn!(target: "api", origin = %o, "CORS origin is not a valid header value; skipped");
                    None
                }
            })
            .collect();
        AllowOrigin::list(list)
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER]),
    )
}

pub(crate) fn internal() -> Problem {
    Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        reason::INTERNAL,
        "the request failed inside the node",
    )
}

fn too_large(what: &str, limit: usize) -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        reason::BODY_TOO_LARGE,
        format!("{what} is over {limit} bytes"),
    )
}

fn rejection(r: Rejection, retry_after: u32) -> Problem {
    match r.kind {
        RejectionKind::Invalid => Problem::new(StatusCode::BAD_REQUEST, r.reason, r.detail),
        RejectionKind::Overloaded => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, r.reason, r.detail)
                .retry_after(retry_after)
        }
        RejectionKind::Unavailable => {
            Problem::new(StatusCode::SERVICE_UNAVAILABLE, r.reason, r.detail)
        }
    }
}

pub(crate) fn read_error(e: ReadError, retry_after: u32) -> Problem {
    match e {
        ReadError::NotServed(_) => {
            Problem::new(StatusCode::NOT_FOUND, reason::NOT_SERVED, e.to_string())
        }
        ReadError::Unavailable(_) => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            reason::UNAVAILABLE,
            e.to_string(),
        )
        .retry_after(retry_after),
    }
}

/// Runs `f` on the blocking pool (the model takes locks and may verify signatures).
pub(crate) async fn blocking<T, F>(state: &AppState, f: F) -> Result<T, Problem>
where
    T: Send + 'static,
    F: FnOnce(&dyn ReadModel) -> T + Send + 'static,
{
    let model = state.model.clone();
    tokio::task::spawn_blocking(move || f(&*model))
        .await
        .map_err(|e| {
            tracing::error!(target: "api", error = %e, "read model call failed");
            internal()
        })
}

fn hex_key(p: Result<Path<String>, PathRejection>) -> Result<Hex32, Problem> {
    p.ok().and_then(|Path(s)| s.parse().ok()).ok_or_else(|| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            reason::BAD_KEY,
            "expected 64 hex characters",
        )
    })
}

/// The declared `Content-Length`, if any; an unreadable one is refused.
fn declared_len(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    match headers.get(header::CONTENT_LENGTH) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    reason::BAD_BODY,
                    "unreadable Content-Length",
                )
            }),
    }
}

/// A write's body, read under its cap while holding a write permit.
struct Admitted {
    body: Bytes,
    origin: Origin,
    _permit: OwnedSemaphorePermit,
}

/// Refuses on `Content-Length` before reading, takes a write permit (or `503`), then reads
/// at most `limit` bytes within the body timeout.
async fn admit(state: &Inner, req: Request, what: &str, limit: usize) -> Result<Admitted, Problem> {
    let (parts, body) = req.into_parts();
    let declared = declared_len(&parts.headers)?;
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(what, limit));
    }
    let permit = state.writes.clone().try_acquire_owned().map_err(|_| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            reason::BUSY,
            "too many transaction submissions in progress; retry later",
        )
        .retry_after(state.config.retry_after_secs)
    })?;
    let body = read_declared(state, body, declared, what, limit).await?;
    let origin = if parts.headers.contains_key(FORWARDED_HEADER) {
        Origin::Peer
    } else {
        Origin::Client
    };
    Ok(Admitted {
        body,
        origin,
        _permit: permit,
    })
}

/// Reads a body of at most `limit` bytes (refused on `Content-Length` first) within the body
/// timeout; the caller holds whatever permit bounds it.
pub(crate) async fn read_body(
    state: &Inner,
    req: Request,
    what: &str,
    limit: usize,
) -> Result<Bytes, Problem> {
    let (parts, body) = req.into_parts();
    let declared = declared_len(&parts.headers)?;
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(what, limit));
    }
    read_declared(state, body, declared, what, limit).await
}

/// Reads at most `limit` bytes of `body` (whose `Content-Length`, if any, is `declared` and
/// already checked against `limit`) within the body timeout.
async fn read_declared(
    state: &Inner,
    body: Body,
    declared: Option<u64>,
    what: &str,
    limit: usize,
) -> Result<Bytes, Problem> {
    let capacity = declared
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0)
        .min(limit);
    tokio::time::timeout(
        state.config.body_timeout,
        read_capped(body, what, limit, capacity),
    )
    .await
    .map_err(|_| {
        Problem::new(
            StatusCode::REQUEST_TIMEOUT,
            reason::BODY_TIMEOUT,
            "the body did not arrive in time",
        )
    })?
}

/// Reads a body, stopping with `413` as soon as it passes `limit` bytes.
async fn read_capped(
    mut body: Body,
    what: &str,
    limit: usize,
    capacity: usize,
) -> Result<Bytes, Problem> {
    let mut buf = BytesMut::with_capacity(capacity);
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|_| {
            Problem::new(
                StatusCode::BAD_REQUEST,
                reason::BAD_BODY,
                "the body could not be received",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len().saturating_add(data.len()) > limit {
                return Err(too_large(what, limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

async fn post_tx(State(state): State<AppState>, req: Request) -> Response {
    let limit = state.config.max_tx_bytes;
    let admitted = match admit(&state, req, "a transaction", limit).await {
        Ok(a) => a,
        Err(p) => return p.into_response(),
    };
    let (body, origin) = (admitted.body.clone(), admitted.origin);
    let result = blocking(&state, move |m| m.submit_tx(body, origin)).await;
    drop(admitted);
    match result {
        Ok(Ok(s)) => Json(s).into_response(),
        Ok(Err(r)) => rejection(r, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

fn batch_problem(e: BatchError) -> Problem {
    let (status, code) = match e {
        BatchError::TooManyEntries { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, reason::TOO_MANY_ENTRIES)
        }
        BatchError::EntryTooLarge { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, reason::ENTRY_TOO_LARGE)
        }
        BatchError::Truncated { .. } => (StatusCode::BAD_REQUEST, reason::MALFORMED_BATCH),
    };
    Problem::new(
        status,
        code,
        format!("not a valid (u32 len ‖ bytes)* batch: {e}"),
    )
}

async fn post_txs(State(state): State<AppState>, req: Request) -> Response {
    let cfg = &state.config;
    let admitted = match admit(&state, req, "a batch", cfg.max_batch_body).await {
        Ok(a) => a,
        Err(p) => return p.into_response(),
    };
    let txs = match decode_batch(&admitted.body, cfg.max_batch_entries, cfg.max_tx_bytes) {
        Ok(t) => t,
        Err(e) => return batch_problem(e).into_response(),
    };
    let origin = admitted.origin;
    let result = blocking(&state, move |m| {
        txs.into_iter()
            .map(|raw| match m.submit_tx(raw, origin) {
                Ok(s) => BatchItem::Submitted(s),
                Err(r) => BatchItem::Rejected(RejectedView {
                    reason: r.reason,
                    detail: r.detail,
                }),
            })
            .collect::<Vec<_>>()
    })
    .await;
    drop(admitted);
    match result {
        Ok(items) => Json(items).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn get_tx(State(state): State<AppState>, p: Result<Path<String>, PathRejection>) -> Response {
    let hash = match hex_key(p) {
        Ok(h) => h,
        Err(p) => return p.into_response(),
    };
    match blocking(&state, move |m| m.tx(&hash)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => Problem::new(
            StatusCode::NOT_FOUND,
            reason::UNKNOWN_TX,
            "not in a recent block",
        )
        .into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn get_block(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(height) = p.ok().and_then(|Path(s)| s.parse::<u64>().ok()) else {
        return Problem::new(
            StatusCode::BAD_REQUEST,
            reason::BAD_HEIGHT,
            "expected a decimal height",
        )
        .into_response();
    };
    match blocking(&state, move |m| m.block(height)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => Problem::new(
            StatusCode::NOT_FOUND,
            reason::UNKNOWN_BLOCK,
            "not a recent committed block",
        )
        .into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn status(State(state): State<AppState>) -> Response {
    match blocking(&state, |m| m.status()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// An account: balance, nonce, its validator and provider records, and the rewards the ledger
/// paid it (total and epochs paid since genesis, the latest 16 payouts among the last
/// `history_epochs` epochs the ledger keeps).
#[utoipa::path(
    get,
    path = "/state/account/{address}",
    tag = "network",
    params(("address" = String, Path, description = "Account address, 64 hex characters")),
    responses(
        (status = 200, description = "The account (an unknown one reads as zero)", body = AccountView),
        (status = 400, description = "bad_key: the address is not 32 hex bytes", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served (no ledger)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn account(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Response {
    let address = match hex_key(p) {
        Ok(h) => h,
        Err(p) => return p.into_response(),
    };
    match blocking(&state, move |m| m.account(&address)).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn device(State(state): State<AppState>, p: Result<Path<String>, PathRejection>) -> Response {
    let id = match hex_key(p) {
        Ok(h) => h,
        Err(p) => return p.into_response(),
    };
    match blocking(&state, move |m| m.device(&id)).await {
        Ok(Ok(Some(v))) => Json(v).into_response(),
        Ok(Ok(None)) => Problem::new(
            StatusCode::NOT_FOUND,
            reason::UNKNOWN_DEVICE,
            "no device with this key",
        )
        .into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

async fn validators(State(state): State<AppState>) -> Response {
    match blocking(&state, |m| m.validators()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// `200` with the view, or `503` problem+json carrying the same `ok` and `checks` members.
fn health_response(view: HealthView, code: &str, what: &str) -> Response {
    if view.ok {
        return Json(view).into_response();
    }
    let failed: Vec<&str> = view
        .checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    let detail = format!("{what}: failed {}", failed.join(", "));
    let checks = serde_json::to_value(&view.checks).unwrap_or_default();
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, code, detail)
        .with("ok", serde_json::Value::Bool(false))
        .with("checks", checks)
        .into_response()
}

/// Liveness: is the process alive and making progress?
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Every check passed", body = HealthView),
        (status = 503, description = "unhealthy: a check failed (same ok and checks members)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn healthz(State(state): State<AppState>) -> Response {
    match blocking(&state, |m| m.health()).await {
        Ok(v) => health_response(v, reason::UNHEALTHY, "not alive"),
        Err(p) => p.into_response(),
    }
}

/// Readiness: should the node get traffic?
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every check passed", body = HealthView),
        (status = 503, description = "not_ready: a check failed", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match blocking(&state, |m| m.readiness()).await {
        Ok(v) => health_response(v, reason::NOT_READY, "not ready"),
        Err(p) => p.into_response(),
    }
}
