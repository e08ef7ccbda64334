//! The ledger's HTTP API, served beside `/metrics`:
//!
//! | route | |
//! |---|---|
//! | `POST /tx` | one signed transaction (raw bytes); `200 {"hash","new"}` or `400 {"reason","detail"}` |
//! | `POST /txs` | a batch, `(u32 len ‖ bytes)*`; `200 [{"hash","new"} or {"reason","detail"}]` |
//! | `GET /tx/<hash>` | outcome of a recently committed transaction; 404 until committed |
//! | `GET /block/<height>` | a recent block: state root and each transaction's outcome |
//! | `GET /status` | chain id, height, state root, epoch, mempool size |
//! | `GET /state/account/<hex>` | balance, nonce, validator and provider records |
//! | `GET /state/device/<hex>` | a device (by current or previous key) |
//! | `GET /state/validators` | the set, every validator, every slash |
//!
//! Errors are JSON with a stable `reason` code; internals are not shown.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use groundtruth_ledger::{
    tx::MAX_TX_LEN, Address, DeviceId, DeviceStatus, Offender, ValidatorStatus,
};
use serde_json::{json, Value};

use super::client::{decode_batch, FORWARDED_HEADER};
use super::{Core, Rejected};

/// Largest `POST /txs` body.
const MAX_BATCH_BODY: usize = 8 << 20;

pub(crate) fn router(core: Arc<Core>) -> Router {
    Router::new()
        .route(
            "/tx",
            post(post_tx).layer(DefaultBodyLimit::max(MAX_TX_LEN)),
        )
        .route(
            "/txs",
            post(post_txs).layer(DefaultBodyLimit::max(MAX_BATCH_BODY)),
        )
        .route("/tx/{hash}", get(get_tx))
        .route("/block/{height}", get(get_block))
        .route("/status", get(status))
        .route("/state/account/{address}", get(account))
        .route("/state/device/{id}", get(device))
        .route("/state/validators", get(validators))
        .with_state(core)
}

fn problem(status: StatusCode, reason: &str, detail: impl Into<String>) -> Response {
    (
        status,
        [("content-type", "application/problem+json")],
        Json(json!({
            "status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or("error"),
            "reason": reason,
            "detail": detail.into(),
        })),
    )
        .into_response()
}

fn rejected(r: Rejected) -> Response {
    let status = if r.reason == "mempool_full" || r.reason == "stopped" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::BAD_REQUEST
    };
    problem(status, r.reason, r.detail)
}

fn hex32(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).ok().map(|()| out)
}

fn bad_key() -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "bad_key",
        "expected 64 hex characters",
    )
}

fn forwarded(headers: &HeaderMap) -> bool {
    headers.contains_key(FORWARDED_HEADER)
}

async fn post_tx(State(core): State<Arc<Core>>, headers: HeaderMap, body: Bytes) -> Response {
    let forward = !forwarded(&headers);
    match tokio::task::spawn_blocking(move || core.submit(body, forward)).await {
        Ok(Ok((hash, new))) => Json(json!({"hash": hex::encode(hash), "new": new})).into_response(),
        Ok(Err(r)) => rejected(r),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "admission failed",
        ),
    }
}

async fn post_txs(State(core): State<Arc<Core>>, headers: HeaderMap, body: Bytes) -> Response {
    let forward = !forwarded(&headers);
    let work = move || {
        let txs = decode_batch(&body)?;
        Some(
            txs.into_iter()
                .map(|t| match core.submit(body.slice_ref(t), forward) {
                    Ok((hash, new)) => json!({"hash": hex::encode(hash), "new": new}),
                    Err(r) => json!({"reason": r.reason, "detail": r.detail}),
                })
                .collect::<Vec<Value>>(),
        )
    };
    match tokio::task::spawn_blocking(work).await {
        Ok(Some(results)) => Json(Value::Array(results)).into_response(),
        Ok(None) => problem(
            StatusCode::BAD_REQUEST,
            "malformed",
            "not a (u32 len, bytes)* batch",
        ),
        Err(_) => problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "admission failed",
        ),
    }
}

async fn get_tx(State(core): State<Arc<Core>>, Path(hash): Path<String>) -> Response {
    let Some(h) = hex32(&hash) else {
        return bad_key();
    };
    match core.shared.tx_outcome(&h) {
        Some((height, outcome)) => Json(json!({
            "hash": hash,
            "height": height,
            "ok": outcome.is_none(),
            "reason": outcome,
        }))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, "unknown_tx", "not in a recent block"),
    }
}

async fn get_block(State(core): State<Arc<Core>>, Path(height): Path<u64>) -> Response {
    match core.shared.block(height) {
        Some(b) => Json(json!({
            "height": b.height,
            "state_root": hex::encode(b.state_root),
            "txs": b.txs.iter().map(|(h, r)| json!({"hash": hex::encode(h), "ok": r.is_none(), "reason": r})).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => problem(StatusCode::NOT_FOUND, "unknown_block", "not a recent committed block"),
    }
}

async fn status(State(core): State<Arc<Core>>) -> Response {
    let l = core.shared.read();
    Json(json!({
        "chain_id": l.state.chain_id(),
        "height": l.state.height(),
        "epoch": l.state.epoch(),
        "state_root": hex::encode(l.root),
        "mempool": core.handle.mempool_len(),
        "validator": hex::encode(core.handle.address()),
    }))
    .into_response()
}

fn validator_status(s: ValidatorStatus) -> Value {
    match s {
        ValidatorStatus::Active => json!("active"),
        ValidatorStatus::Jailed { until_epoch } => json!({"jailed_until_epoch": until_epoch}),
        ValidatorStatus::Removed => json!("removed"),
    }
}

async fn account(State(core): State<Arc<Core>>, Path(address): Path<String>) -> Response {
    let Some(a) = hex32(&address) else {
        return bad_key();
    };
    let a = Address(a);
    let l = core.shared.read();
    let acc = l.state.account(&a);
    let validator = l.state.validator(&a).map(|v| {
        json!({
            "consensus_key": v.consensus_key.to_string(),
            "stake": v.stake,
            "status": validator_status(v.status),
            "jail_count": v.jail_count,
        })
    });
    let provider = l
        .state
        .provider(&a)
        .map(|p| json!({"stake": p.stake, "data_root": hex::encode(p.data_root)}));
    Json(json!({
        "address": a.to_string(),
        "balance": acc.balance,
        "nonce": acc.nonce,
        "validator": validator,
        "provider": provider,
    }))
    .into_response()
}

async fn device(State(core): State<Arc<Core>>, Path(id): Path<String>) -> Response {
    let Some(id) = hex32(&id) else {
        return bad_key();
    };
    let id = DeviceId(id);
    let l = core.shared.read();
    let Some(d) = l
        .state
        .device(&id)
        .or_else(|| l.state.device_by_any_key(&id))
    else {
        return problem(
            StatusCode::NOT_FOUND,
            "unknown_device",
            "no device with this key",
        );
    };
    Json(json!({
        "id": d.id.to_string(),
        "owner": d.owner.map(|o| o.to_string()),
        "kind": d.kind.name(),
        "capacity": d.capacity,
        "region": d.region,
        "status": match d.status { DeviceStatus::Active => "active", DeviceStatus::Retired => "retired" },
        "registered_at": d.registered_at,
        "previous_keys": d.previous_keys.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "height": l.state.height(),
    }))
    .into_response()
}

async fn validators(State(core): State<Arc<Core>>) -> Response {
    let l = core.shared.read();
    let set: Vec<Value> = l
        .state
        .validator_set()
        .into_iter()
        .map(|(k, p)| json!({"consensus_key": k.to_string(), "power": p}))
        .collect();
    let all: Vec<Value> = l
        .state
        .validators()
        .map(|v| {
            json!({
                "operator": v.operator.to_string(),
                "consensus_key": v.consensus_key.to_string(),
                "stake": v.stake,
                "delegated": l.state.delegated_to(&v.operator),
                "status": validator_status(v.status),
                "jail_count": v.jail_count,
            })
        })
        .collect();
    let slashes: Vec<Value> = l
        .state
        .slashes()
        .iter()
        .map(|s| {
            let offender = match s.offender {
                Offender::Validator(a) => json!({"validator": a.to_string()}),
                Offender::Provider(a) => json!({"provider": a.to_string()}),
            };
            json!({
                "id": s.id,
                "height": s.height,
                "offender": offender,
                "reason": s.reason.code(),
                "amount": s.amount,
                "jailed": s.jailed,
                "removed": s.removed,
                "explain": s.explain(),
            })
        })
        .collect();
    Json(json!({
        "height": l.state.height(),
        "epoch": l.state.epoch(),
        "set": set,
        "validators": all,
        "slashes": slashes,
    }))
    .into_response()
}
