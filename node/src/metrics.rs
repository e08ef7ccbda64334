//! Prometheus metrics: one registry, one struct per subsystem, served over HTTP.

use crate::ingest::Rejection;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Arc;

/// Label naming why a reading was rejected.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// One of [`Rejection::reason`].
    pub reason: String,
}

/// Label naming a reading kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `energy`, `gpu` or `storage`.
    pub kind: String,
}

/// Ingest metrics.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Messages taken from the broker.
    pub received: Counter,
    /// Readings durable and accepted, by kind.
    pub accepted: Family<KindLabel, Counter>,
    /// Rejections by reason.
    pub rejected: Family<ReasonLabel, Counter>,
    rejected_by: Arc<HashMap<Rejection, Counter>>,
    /// Seconds per sled flush (group commit).
    pub flush_seconds: Histogram,
    /// Readings per group commit.
    pub commit_batch: Histogram,
    /// Resend requests sent to devices with sequence gaps.
    pub resend_requests: Counter,
    /// Devices with an open sequence gap.
    pub open_gaps: Gauge,
    /// Gaps abandoned after the maximum number of resend requests.
    pub unfilled_gaps: Counter,
    /// MQTT connection errors.
    pub mqtt_errors: Counter,
    /// Accepted readings in the store (survives restarts: counted from disk at start-up).
    pub stored_accepted: Gauge,
}

impl IngestMetrics {
    /// Creates the metrics and registers them under `groundtruth_ingest_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let sub = registry.sub_registry_with_prefix("groundtruth_ingest");
        let rejected = Family::<ReasonLabel, Counter>::default();
        let rejected_by = Rejection::ALL
            .iter()
            .map(|r| {
                (
                    *r,
                    rejected
                        .get_or_create(&ReasonLabel {
                            reason: r.reason().into(),
                        })
                        .clone(),
                )
            })
            .collect();
        let m = Self {
            received: Counter::default(),
            accepted: Family::default(),
            rejected,
            rejected_by: Arc::new(rejected_by),
            flush_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 14)),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            resend_requests: Counter::default(),
            open_gaps: Gauge::default(),
            unfilled_gaps: Counter::default(),
            mqtt_errors: Counter::default(),
            stored_accepted: Gauge::default(),
        };
        sub.register(
            "received",
            "Messages taken from the broker",
            m.received.clone(),
        );
        sub.register(
            "accepted",
            "Readings accepted and durable, by kind",
            m.accepted.clone(),
        );
        sub.register(
            "rejected",
            "Messages rejected, by reason",
            m.rejected.clone(),
        );
        sub.register(
            "flush_seconds",
            "Duration of one group-commit flush",
            m.flush_seconds.clone(),
        );
        sub.register(
            "commit_batch",
            "Readings per group commit",
            m.commit_batch.clone(),
        );
        sub.register(
            "resend_requests",
            "Resend requests sent for sequence gaps",
            m.resend_requests.clone(),
        );
        sub.register(
            "open_gaps",
            "Devices with an open sequence gap",
            m.open_gaps.clone(),
        );
        sub.register(
            "unfilled_gaps",
            "Gaps given up after the last resend request",
            m.unfilled_gaps.clone(),
        );
        sub.register(
            "mqtt_errors",
            "MQTT connection errors",
            m.mqtt_errors.clone(),
        );
        sub.register(
            "stored_accepted",
            "Accepted readings in the store",
            m.stored_accepted.clone(),
        );
        m
    }

    /// Counts one rejection.
    pub fn reject(&self, reason: Rejection) {
        if let Some(c) = self.rejected_by.get(&reason) {
            c.inc();
        }
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

/// Serves `/metrics` and `/healthz` until the task is dropped.
pub async fn serve(listen: std::net::SocketAddr, registry: Arc<Registry>) -> std::io::Result<()> {
    serve_with(listen, registry, axum::Router::new()).await
}

/// Serves `/metrics`, `/healthz` and the routes of `extra` (e.g. the ledger API) until the
/// task is dropped.
pub async fn serve_with(
    listen: std::net::SocketAddr,
    registry: Arc<Registry>,
    extra: axum::Router,
) -> std::io::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                async move {
                    (
                        [(
                            "content-type",
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        render(&registry),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .merge(extra);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, app).await
}
