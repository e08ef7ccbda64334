//! Prometheus metrics: one registry, one struct per subsystem, served over HTTP beside the
//! API (`groundtruth-api`), and the ingest heartbeat the API's `/healthz` reads.

use crate::ingest::Rejection;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Liveness of a loop: when it last went round, and whether it reached its main loop. Cheap
/// to beat (two relaxed atomic stores), read by `/healthz` and `/readyz`.
#[derive(Clone, Debug)]
pub struct Heartbeat {
    inner: Arc<HeartbeatInner>,
}

#[derive(Debug)]
struct HeartbeatInner {
    base: Instant,
    /// Milliseconds since `base` of the last beat, plus one; 0: never.
    last: AtomicU64,
    serving: AtomicBool,
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}

impl Heartbeat {
    /// A heartbeat that never beat.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(HeartbeatInner {
                base: Instant::now(),
                last: AtomicU64::new(0),
                serving: AtomicBool::new(false),
            }),
        }
    }

    /// The loop is alive (e.g. still scanning the store at start-up).
    pub fn beat(&self) {
        let ms = u64::try_from(self.inner.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner
            .last
            .store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// The loop is alive and in its main loop (serving).
    pub fn beat_serving(&self) {
        self.beat();
        self.inner.serving.store(true, Ordering::Relaxed);
    }

    /// How long since the last beat; `None` if it never beat.
    pub fn since_last(&self) -> Option<Duration> {
        let last = self.inner.last.load(Ordering::Relaxed).checked_sub(1)?;
        let now = u64::try_from(self.inner.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        Some(Duration::from_millis(now.saturating_sub(last)))
    }

    /// Whether it reached its main loop.
    pub fn serving(&self) -> bool {
        self.inner.serving.load(Ordering::Relaxed)
    }
}

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
    /// Readings a peer validator replicated that this node already held.
    pub replicated_duplicates: Counter,
    /// Beaten by the committer thread on every loop (not exported; read by `/healthz`).
    pub heartbeat: Heartbeat,
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
            replicated_duplicates: Counter::default(),
            heartbeat: Heartbeat::new(),
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
        sub.register(
            "replicated_duplicates",
            "Readings replicated by a peer validator that were already stored",
            m.replicated_duplicates.clone(),
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

/// `GET /metrics`: the registry in the Prometheus text format.
pub fn router(registry: Arc<Registry>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
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
}

/// Serves `/metrics` and the routes of `api` (the node's API router, with `/healthz` and
/// `/readyz`: `crate::chain::read_model::api_router`) on one listener until the task is
/// dropped. Unknown routes and wrong methods answer problem+json.
pub async fn serve_with(
    listen: std::net::SocketAddr,
    registry: Arc<Registry>,
    api: axum::Router,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    // With each connection's address: the API's per-client rate limit reads it.
    groundtruth_api::serve(listener, app(registry, api)).await
}

/// `/metrics` merged into the API router; wrong methods on any route answer problem+json.
pub fn app(registry: Arc<Registry>, api: axum::Router) -> axum::Router {
    api.merge(router(registry))
        .method_not_allowed_fallback(groundtruth_api::problem::method_not_allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The node's listener as served: the API without a ledger, `/metrics`, problem+json
    /// fallbacks, read with the API's client.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_and_api_share_one_listener(
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use crate::chain::read_model::{api_config, HealthBounds, NodeReadModel};
        use crate::ingest::registry::{Registry as Devices, SharedRegistry};
        let mut registry = Registry::default();
        let ingest = IngestMetrics::register(&mut registry);
        ingest.received.inc();
        let model = NodeReadModel::new(
            None,
            SharedRegistry::new(Devices::from_records(std::iter::empty())),
            ingest.heartbeat.clone(),
            HealthBounds::for_block_time(Duration::from_millis(500)),
        );
        let api = groundtruth_api::router(Arc::new(model), api_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server =
            tokio::spawn(async move { axum::serve(listener, app(Arc::new(registry), api)).await });
        ingest.heartbeat.beat_serving();
        tokio::task::spawn_blocking(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let c = groundtruth_api::ApiClient::new(&addr.to_string())?;
                assert!(c
                    .metrics_text()?
                    .contains("groundtruth_ingest_received_total 1"));
                let h = c.health()?;
                assert!(h.ok, "{h:?}");
                assert!(c.readiness()?.ok);
                assert_eq!(
                    c.status()
                        .err()
                        .and_then(|e| e.reason().map(str::to_string)),
                    Some("not_served".into())
                );
                let r = c.request("POST", "/metrics", &[], &[])?;
                assert_eq!(r.status, 405);
                assert_eq!(r.content_type.as_deref(), Some("application/problem+json"));
                let r = c.request("GET", "/nope", &[], &[])?;
                assert_eq!(
                    (r.status, r.content_type.as_deref()),
                    (404, Some("application/problem+json"))
                );
                Ok(())
            },
        )
        .await??;
        server.abort();
        Ok(())
    }

    #[test]
    fn heartbeat_records_beats_and_serving() {
        let h = Heartbeat::new();
        assert_eq!(h.since_last(), None);
        assert!(!h.serving());
        h.beat();
        assert!(h.since_last().is_some_and(|d| d < Duration::from_secs(5)));
        assert!(!h.serving());
        h.clone().beat_serving();
        assert!(h.serving());
    }
}
