//! `GET /v1/events`: Server-Sent Events of newly accepted production.
//!
//! Each stream reads the node's bounded broadcast. A client slower than the node loses the
//! oldest events instead of holding memory: it receives an event `lagged` with the number it
//! missed (counted in [`crate::ApiCounters::events_dropped`]) and continues with the newest.
//! At most `max_event_streams` streams are open at once; more are refused with `503`.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::broadcast::Receiver;
use tokio::sync::OwnedSemaphorePermit;

use crate::model::ReadError;
use crate::problem::{reason, Problem};
use crate::server::{read_error, ApiCounters, AppState};
use crate::views::{LaggedView, ProductionEventView};

struct Stream {
    rx: Receiver<ProductionEventView>,
    counters: Arc<ApiCounters>,
    _permit: OwnedSemaphorePermit,
}

fn json_event(name: &str, value: &impl serde::Serialize) -> Event {
    let data = serde_json::to_string(value).unwrap_or_else(|_| "{}".to_string());
    Event::default().event(name).data(data)
}

/// Live production events.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "live",
    responses(
        (status = 200, description = "text/event-stream: events `production` (ProductionEventView) and `lagged` (LaggedView) when this client missed some", content_type = "text/event-stream", body = ProductionEventView),
        (status = 404, description = "not_served by this node", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "too_many_streams (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn events(State(state): State<AppState>) -> Response {
    let Some(rx) = state.model.production_events() else {
        return read_error(
            ReadError::NotServed("production events"),
            state.config.retry_after_secs,
        )
        .into_response();
    };
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            reason::TOO_MANY_STREAMS,
            "too many event streams are open; retry later",
        )
        .retry_after(state.config.retry_after_secs)
        .into_response();
    };
    let stream = Stream {
        rx,
        counters: state.counters.clone(),
        _permit: permit,
    };
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let event = match s.rx.recv().await {
            Ok(e) => {
                s.counters.events_sent.fetch_add(1, Ordering::Relaxed);
                json_event("production", &e)
            }
            Err(RecvError::Lagged(n)) => {
                s.counters.events_dropped.fetch_add(n, Ordering::Relaxed);
                json_event("lagged", &LaggedView { dropped: n })
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok::<_, Infallible>(event), s))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
