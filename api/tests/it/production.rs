//! The `/v1` market routes, the OpenAPI document and docs page, and the HTTP conventions (rate
//! limit, CORS, compression, SSE) through the router, over an in-memory read model.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, Method, Request, Response, StatusCode};
use bytes::Bytes;
use groundtruth_api::{
    router, router_with, ApiConfig, ApiCounters, BucketStatusView, DeviceProductionSummaryView,
    DevicesPage, DevicesPageView, Hex32, Problem, ProductionEventView, ProductionSeriesView,
    ReadError, ReadModel, SeriesPage, SeriesPoint, SeriesRequest,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::model::Model;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DAY: u64 = 1_714_521_600; // 2024-05-01T00:00:00Z
const DEVICE: Hex32 = Hex32([0xaa; 32]);

/// A production read model in memory: points per device (already at the asked step), devices
/// in id order, a bounded event channel.
struct Market {
    base: Model,
    points: BTreeMap<u64, u64>,
    devices: Vec<Hex32>,
    events: tokio::sync::broadcast::Sender<ProductionEventView>,
}

impl Market {
    fn new(event_capacity: usize) -> Self {
        // One point per hour of the day, value = hour + 1.
        let points = (0..24u64).map(|h| (DAY + h * 3600, h + 1)).collect();
        let devices = (1..=5u8).map(|n| Hex32([n; 32])).collect();
        Self {
            base: Model::new(),
            points,
            devices,
            events: tokio::sync::broadcast::channel(event_capacity).0,
        }
    }
}

impl ReadModel for Market {
    fn status(&self) -> Result<groundtruth_api::StatusView, ReadError> {
        self.base.status()
    }
    fn account(&self, a: &Hex32) -> Result<groundtruth_api::AccountView, ReadError> {
        self.base.account(a)
    }
    fn device(&self, id: &Hex32) -> Result<Option<groundtruth_api::DeviceView>, ReadError> {
        self.base.device(id)
    }
    fn validators(&self) -> Result<groundtruth_api::ValidatorsView, ReadError> {
        self.base.validators()
    }
    fn tx(&self, h: &Hex32) -> Result<Option<groundtruth_api::TxOutcomeView>, ReadError> {
        self.base.tx(h)
    }
    fn block(&self, h: u64) -> Result<Option<groundtruth_api::BlockView>, ReadError> {
        self.base.block(h)
    }
    fn submit_tx(
        &self,
        raw: Bytes,
        origin: groundtruth_api::Origin,
    ) -> Result<groundtruth_api::Submitted, groundtruth_api::Rejection> {
        self.base.submit_tx(raw, origin)
    }
    fn health(&self) -> groundtruth_api::HealthView {
        self.base.health()
    }
    fn readiness(&self) -> groundtruth_api::HealthView {
        self.base.readiness()
    }

    fn device_production(
        &self,
        id: &Hex32,
        r: &SeriesRequest,
    ) -> Result<Option<SeriesPage>, ReadError> {
        if *id != DEVICE {
            return Ok(None);
        }
        let mut page = SeriesPage::default();
        for (start, wh) in self.points.range(r.from..r.to) {
            if start % r.step_s != 0 {
                continue;
            }
            if page.points.len() == r.limit {
                page.next = Some(*start);
                break;
            }
            page.points.push(SeriesPoint {
                start: *start,
                energy_wh: *wh,
                gpu_ms: 0,
                readings: 12,
                status: BucketStatusView::Reported,
                evidence: Vec::new(),
            });
        }
        Ok(Some(page))
    }

    fn region_production(&self, region: &str, r: &SeriesRequest) -> Result<SeriesPage, ReadError> {
        match region {
            "DE-BY" => Ok(self.device_production(&DEVICE, r)?.unwrap_or_default()),
            _ => Ok(SeriesPage::default()),
        }
    }

    fn production_devices(
        &self,
        after: Option<&Hex32>,
        limit: usize,
    ) -> Result<DevicesPage, ReadError> {
        let rest: Vec<&Hex32> = self
            .devices
            .iter()
            .filter(|d| after.is_none_or(|a| *d > a))
            .collect();
        Ok(DevicesPage {
            devices: rest
                .iter()
                .take(limit)
                .map(|id| DeviceProductionSummaryView {
                    id: **id,
                    kind: "energy".into(),
                    region: "DE-BY".into(),
                    energy_wh: 1,
                    gpu_ms: 0,
                    readings: 1,
                    first_interval: "2024-05-01T00:00:00Z".into(),
                    last_interval: "2024-05-01T00:00:00Z".into(),
                })
                .collect(),
            more: rest.len() > limit,
        })
    }

    fn production_events(&self) -> Option<tokio::sync::broadcast::Receiver<ProductionEventView>> {
        Some(self.events.subscribe())
    }
}

fn open_config() -> ApiConfig {
    ApiConfig {
        rate_limit_per_s: 0,
        ..ApiConfig::default()
    }
}

fn app(m: &Arc<Market>, config: ApiConfig) -> axum::Router {
    router(m.clone(), config)
}

fn get(path: &str) -> Result<Request<Body>, axum::http::Error> {
    Request::builder().uri(path).body(Body::empty())
}

async fn body_of(resp: Response<Body>) -> Result<Bytes, axum::Error> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

async fn call(
    app: &axum::Router,
    req: Request<Body>,
) -> Result<Response<Body>, Box<dyn std::error::Error>> {
    Ok(app.clone().oneshot(req).await?)
}

/// Asserts a problem+json answer with `status` and `reason`; returns it.
async fn problem(
    app: &axum::Router,
    path: &str,
    status: StatusCode,
    reason: &str,
) -> Result<Problem, Box<dyn std::error::Error>> {
    let resp = call(app, get(path)?).await?;
    assert_eq!(resp.status(), status, "{path}");
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..]),
        "{path}"
    );
    let p: Problem = serde_json::from_slice(&body_of(resp).await?)?;
    assert_eq!(p.reason, reason, "{path}: {}", p.detail);
    assert_eq!(p.status, status.as_u16());
    Ok(p)
}

fn device_path(query: &str) -> String {
    format!("/v1/production/devices/{DEVICE}?{query}")
}

#[tokio::test]
async fn a_day_of_a_device_pages_through_with_cursors() -> TestResult {
    let m = Arc::new(Market::new(16));
    let app = app(&m, open_config());
    let mut path =
        device_path("from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&granularity=1h&limit=10");
    let mut all = Vec::new();
    let mut pages = 0;
    loop {
        let resp = call(&app, get(&path)?).await?;
        assert_eq!(resp.status(), StatusCode::OK);
        let v: ProductionSeriesView = serde_json::from_slice(&body_of(resp).await?)?;
        assert_eq!(
            (v.subject.as_str(), v.from.as_str()),
            ("device", "2024-05-01T00:00:00Z")
        );
        assert!(v.points.len() <= 10);
        all.extend(v.points);
        pages += 1;
        match v.next_cursor {
            Some(c) => {
                path = device_path(&format!(
                    "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&granularity=1h&limit=10&cursor={c}"
                ))
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(all.len(), 24);
    assert_eq!(all[0].start, "2024-05-01T00:00:00Z");
    assert_eq!(all[0].end, "2024-05-01T01:00:00Z");
    assert_eq!(all[23].start, "2024-05-01T23:00:00Z");
    assert_eq!(
        all.iter().map(|p| p.energy_wh).sum::<u64>(),
        (1..=24).sum::<u64>()
    );
    assert!(all.iter().all(|p| p.status == BucketStatusView::Reported));
    // The same cursor with another query is refused.
    let first = call(
        &app,
        get(&device_path(
            "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&limit=10",
        ))?,
    )
    .await?;
    let v: ProductionSeriesView = serde_json::from_slice(&body_of(first).await?)?;
    let c = v.next_cursor.ok_or("cursor")?;
    let p = problem(
        &app,
        &device_path(&format!(
            "from=2024-05-01T00:00:00Z&to=2024-05-03T00:00:00Z&cursor={c}"
        )),
        StatusCode::BAD_REQUEST,
        "bad_cursor",
    )
    .await?;
    assert_eq!(
        p.extensions.get("parameter"),
        Some(&serde_json::json!("cursor"))
    );
    // Region series, and a region without data.
    let resp = call(
        &app,
        get("/v1/production/regions/DE-BY?from=2024-05-01T00:00:00Z&to=2024-05-01T02:00:00Z")?,
    )
    .await?;
    let v: ProductionSeriesView = serde_json::from_slice(&body_of(resp).await?)?;
    assert_eq!((v.subject.as_str(), v.points.len()), ("region", 2));
    let resp = call(
        &app,
        get("/v1/production/regions/FR%2DIDF?from=2024-05-01T00:00:00Z&to=2024-05-01T02:00:00Z")?,
    )
    .await?;
    assert_eq!(resp.status(), StatusCode::OK);
    // An unknown device.
    problem(
        &app,
        &format!(
            "/v1/production/devices/{}?from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z",
            Hex32([1; 32])
        ),
        StatusCode::NOT_FOUND,
        "unknown_device",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn every_parameter_is_validated_with_a_named_problem() -> TestResult {
    let m = Arc::new(Market::new(16));
    let app = app(&m, open_config());
    let ok_range = "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            device_path("to=2024-05-02T00:00:00Z"),
            "missing_parameter",
            "from",
        ),
        (
            device_path("from=2024-05-01T00:00:00Z"),
            "missing_parameter",
            "to",
        ),
        (
            device_path("from=yesterday&to=2024-05-02T00:00:00Z"),
            "bad_time",
            "from",
        ),
        (
            device_path("from=2024-05-01T00:00:00%2B02:00&to=2024-05-02T00:00:00Z"),
            "bad_time",
            "from",
        ),
        (
            device_path("from=2024-02-30T00:00:00Z&to=2024-05-02T00:00:00Z"),
            "bad_time",
            "from",
        ),
        (
            device_path("from=2024-05-01T00:10:00Z&to=2024-05-02T00:00:00Z"),
            "misaligned_time",
            "from",
        ),
        (
            device_path("from=2024-05-01T00:00:00Z&to=2024-05-01T00:05:00Z&granularity=15m"),
            "misaligned_time",
            "to",
        ),
        (
            device_path("from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z"),
            "bad_range",
            "to",
        ),
        (
            device_path("from=2024-05-01T00:00:00Z&to=2024-05-01T00:00:00Z"),
            "bad_range",
            "to",
        ),
        (
            device_path("from=2020-01-01T00:00:00Z&to=2024-05-01T00:00:00Z"),
            "range_too_large",
            "to",
        ),
        (
            device_path(&format!("{ok_range}&granularity=2h")),
            "bad_granularity",
            "granularity",
        ),
        (
            device_path(&format!("{ok_range}&limit=0")),
            "bad_limit",
            "limit",
        ),
        (
            device_path(&format!("{ok_range}&limit=1001")),
            "bad_limit",
            "limit",
        ),
        (
            device_path(&format!("{ok_range}&limit=ten")),
            "bad_limit",
            "limit",
        ),
        (
            device_path(&format!("{ok_range}&cursor=00")),
            "bad_cursor",
            "cursor",
        ),
        (
            device_path(&format!("{ok_range}&page=2")),
            "unknown_parameter",
            "page",
        ),
        (
            device_path(&format!("{ok_range}&limit=1&limit=2")),
            "unknown_parameter",
            "limit",
        ),
        (
            format!("/v1/production/devices/xyz?{ok_range}"),
            "bad_key",
            "id",
        ),
        (
            format!("/v1/production/regions/{}?{ok_range}", "R".repeat(65)),
            "bad_region",
            "region",
        ),
        ("/v1/devices?limit=5000".to_string(), "bad_limit", "limit"),
        (
            "/v1/devices?cursor=nope".to_string(),
            "bad_cursor",
            "cursor",
        ),
    ];
    for (path, reason, parameter) in cases {
        let p = problem(&app, &path, StatusCode::BAD_REQUEST, reason).await?;
        assert_eq!(
            p.extensions.get("parameter"),
            Some(&serde_json::json!(parameter)),
            "{path}"
        );
        assert!(!p.detail.is_empty());
    }
    problem(
        &app,
        &device_path(&format!("{ok_range}&x=%ZZ")),
        StatusCode::BAD_REQUEST,
        "bad_query",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn devices_page_by_cursor_and_models_without_production_say_not_served() -> TestResult {
    let m = Arc::new(Market::new(16));
    let app = app(&m, open_config());
    let resp = call(&app, get("/v1/devices?limit=2")?).await?;
    let mut page: DevicesPageView = serde_json::from_slice(&body_of(resp).await?)?;
    let mut seen: Vec<Hex32> = page.devices.iter().map(|d| d.id).collect();
    while let Some(c) = page.next_cursor.clone() {
        let resp = call(&app, get(&format!("/v1/devices?limit=2&cursor={c}"))?).await?;
        page = serde_json::from_slice(&body_of(resp).await?)?;
        seen.extend(page.devices.iter().map(|d| d.id));
    }
    assert_eq!(seen, m.devices);

    let plain = router(Arc::new(Model::new()), open_config());
    for path in [
        "/v1/devices",
        "/v1/events",
        "/v1/production/regions/DE-BY?from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z",
    ] {
        problem(&plain, path, StatusCode::NOT_FOUND, "not_served").await?;
    }
    Ok(())
}

#[tokio::test]
async fn openapi_document_and_offline_docs_page() -> TestResult {
    let m = Arc::new(Market::new(16));
    let app = app(&m, open_config());
    let resp = call(&app, get("/openapi.json")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let doc: serde_json::Value = serde_json::from_slice(&body_of(resp).await?)?;
    assert!(doc["openapi"]
        .as_str()
        .is_some_and(|v| v.starts_with("3.1")));
    for path in [
        "/v1/production/devices/{id}",
        "/v1/production/regions/{region}",
        "/v1/devices",
        "/v1/events",
        "/healthz",
        "/readyz",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} documented");
    }
    let params = doc["paths"]["/v1/production/devices/{id}"]["get"]["parameters"]
        .as_array()
        .ok_or("parameters")?;
    let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "id",
            "from",
            "to",
            "granularity",
            "limit",
            "cursor",
            "If-None-Match"
        ]
    );
    let responses = &doc["paths"]["/v1/production/devices/{id}"]["get"]["responses"];
    assert!(responses["200"]["headers"]["ETag"].is_object());
    assert!(responses["304"].is_object(), "304 documented");
    for schema in [
        "ProductionSeriesView",
        "Problem",
        "Granularity",
        "BucketStatusView",
        "Hex32",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // Every $ref points at a schema the document defines.
    let text = doc.to_string();
    for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = r.split('"').next().unwrap_or_default();
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {name}"
        );
    }
    let resp = call(&app, get("/docs")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html")));
    let html = String::from_utf8(body_of(resp).await?.to_vec())?;
    assert!(html.contains("fetch(\"openapi.json\")"));
    for external in ["src=\"http", "href=\"http", "//cdn", "@import"] {
        assert!(!html.contains(external), "the page loads {external}");
    }
    Ok(())
}

fn from_ip(path: &str, ip: [u8; 4]) -> Result<Request<Body>, axum::http::Error> {
    let mut req = get(path)?;
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 40_000))));
    Ok(req)
}

#[tokio::test]
async fn each_client_ip_is_rate_limited_with_retry_after() -> TestResult {
    let m = Arc::new(Market::new(16));
    let counters = Arc::new(ApiCounters::default());
    let app = router_with(
        m.clone(),
        ApiConfig {
            rate_limit_per_s: 1,
            rate_limit_burst: 3,
            ..ApiConfig::default()
        },
        counters.clone(),
    );
    for _ in 0..3 {
        let resp = call(&app, from_ip("/v1/devices", [10, 0, 0, 1])?).await?;
        assert_eq!(resp.status(), StatusCode::OK);
    }
    let resp = call(&app, from_ip("/v1/devices", [10, 0, 0, 1])?).await?;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        resp.headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    let p: Problem = serde_json::from_slice(&body_of(resp).await?)?;
    assert_eq!(p.reason, "rate_limited");
    assert_eq!(counters.rate_limited.load(Ordering::Relaxed), 1);
    // Another client, and the operational routes, are not limited.
    assert_eq!(
        call(&app, from_ip("/v1/devices", [10, 0, 0, 2])?)
            .await?
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        call(&app, from_ip("/healthz", [10, 0, 0, 1])?)
            .await?
            .status(),
        StatusCode::OK
    );
    Ok(())
}

#[tokio::test]
async fn cors_follows_the_configured_origins_and_json_is_compressed() -> TestResult {
    let m = Arc::new(Market::new(16));
    let app = app(
        &m,
        ApiConfig {
            cors_origins: vec!["https://explorer.example".into()],
            ..open_config()
        },
    );
    let with_origin = |origin: &str| {
        Request::builder()
            .uri("/v1/devices")
            .header(header::ORIGIN, origin)
            .body(Body::empty())
    };
    let resp = call(&app, with_origin("https://explorer.example")?).await?;
    assert_eq!(
        resp.headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.as_bytes()),
        Some(&b"https://explorer.example"[..])
    );
    let resp = call(&app, with_origin("https://evil.example")?).await?;
    assert!(resp
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/devices")
        .header(header::ORIGIN, "https://explorer.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Body::empty())?;
    let resp = call(&app, preflight).await?;
    assert!(resp.status().is_success());
    assert!(resp
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_METHODS)
        .is_some());
    // Without configured origins: no CORS headers at all.
    let closed = router(m.clone(), open_config());
    let resp = call(&closed, with_origin("https://explorer.example")?).await?;
    assert!(resp
        .headers()
        .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        .is_none());

    let gz = Request::builder()
        .uri("/openapi.json")
        .header(header::ACCEPT_ENCODING, "gzip")
        .body(Body::empty())?;
    let resp = call(&app, gz).await?;
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_ENCODING)
            .map(|v| v.as_bytes()),
        Some(&b"gzip"[..])
    );
    let compressed = body_of(resp).await?;
    let plain = body_of(call(&app, get("/openapi.json")?).await?).await?;
    assert!(
        compressed.len() < plain.len() / 2,
        "{} vs {}",
        compressed.len(),
        plain.len()
    );
    Ok(())
}

fn event(seq: u64) -> ProductionEventView {
    ProductionEventView {
        device: DEVICE,
        seq,
        kind: "energy".into(),
        region: "DE-BY".into(),
        interval_start: "2024-05-01T00:00:00Z".into(),
        interval_len_s: 300,
        energy_wh: seq,
        gpu_ms: 0,
        status: BucketStatusView::Reported,
    }
}

/// Reads SSE frames until `n` `data:` lines arrived; returns (event name, data) pairs.
async fn sse_events(
    body: &mut Body,
    n: usize,
) -> Result<Vec<(String, String)>, Box<dyn std::error::Error>> {
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await?
            .ok_or("stream ended")??;
        if let Ok(data) = frame.into_data() {
            text.push_str(std::str::from_utf8(&data)?);
        }
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = Some(v.trim().to_string());
                }
            }
            if let Some(d) = data {
                out.push((name, d));
            }
        }
    }
    Ok(out)
}

#[tokio::test]
async fn events_stream_drops_for_slow_clients_and_streams_are_bounded() -> TestResult {
    let m = Arc::new(Market::new(4));
    let counters = Arc::new(ApiCounters::default());
    let app = router_with(
        m.clone(),
        ApiConfig {
            max_event_streams: 1,
            ..open_config()
        },
        counters.clone(),
    );
    let resp = call(&app, get("/v1/events")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream")));
    // A second stream is over the bound while the first is open.
    problem(
        &app,
        "/v1/events",
        StatusCode::SERVICE_UNAVAILABLE,
        "too_many_streams",
    )
    .await?;
    let mut body = resp.into_body();
    // 10 events before the client reads any: the channel holds 4, the client misses 6.
    for seq in 0..10 {
        m.events.send(event(seq))?;
    }
    let got = sse_events(&mut body, 5).await?;
    assert_eq!(
        got[0],
        ("lagged".to_string(), "{\"dropped\":6}".to_string())
    );
    let seqs: Vec<u64> = got[1..]
        .iter()
        .map(|(name, d)| {
            assert_eq!(name, "production");
            serde_json::from_str::<ProductionEventView>(d).map(|e| e.seq)
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(seqs, [6, 7, 8, 9]);
    assert_eq!(counters.events_dropped.load(Ordering::Relaxed), 6);
    assert_eq!(counters.events_sent.load(Ordering::Relaxed), 4);
    // Live: an event sent now arrives.
    m.events.send(event(42))?;
    let got = sse_events(&mut body, 1).await?;
    assert_eq!(
        serde_json::from_str::<ProductionEventView>(&got[0].1)?.seq,
        42
    );
    // Closing the first stream frees its slot.
    drop(body);
    let resp = call(&app, get("/v1/events")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    Ok(())
}
