//! The production series cache through the router: answers are reused while the model's change
//! counters for the days they cover are unchanged, and read again after a change; gzip and
//! `ETag`/`If-None-Match` on the cached path.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use bytes::Bytes;
use groundtruth_api::{
    router, ApiConfig, BucketStatusView, Hex32, ProductionChanges, ProductionSeriesView, ReadError,
    ReadModel, SeriesPage, SeriesPoint, SeriesRequest,
};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::model::Model;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DAY: u64 = 1_714_521_600; // 2024-05-01T00:00:00Z
const DEVICE: Hex32 = Hex32([0xbb; 32]);

/// Points per 5-minute start (device and its region `DE-BY` alike), a read counter, and the
/// change counters it bumps when told.
struct Series {
    base: Model,
    points: Mutex<BTreeMap<u64, u64>>,
    reads: AtomicUsize,
    changes: Option<Arc<ProductionChanges>>,
}

impl Series {
    fn new(with_changes: bool) -> Self {
        Self {
            base: Model::new(),
            points: Mutex::new((0..288u64).map(|i| (DAY + i * 300, i)).collect()),
            reads: AtomicUsize::new(0),
            changes: with_changes.then(Arc::default),
        }
    }

    /// Changes the value at `start`; `touch`: and says so, as the node does after committing.
    fn set(&self, start: u64, wh: u64, touch: bool) {
        if let Ok(mut p) = self.points.lock() {
            p.insert(start, wh);
        }
        if let (true, Some(c)) = (touch, &self.changes) {
            c.touch_device(&DEVICE.0, start);
            c.touch_region("DE-BY", start);
        }
    }

    fn page(&self, r: &SeriesRequest) -> SeriesPage {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let points = self.points.lock().map(|p| p.clone()).unwrap_or_default();
        let mut page = SeriesPage::default();
        for (start, wh) in points.range(r.from..r.to) {
            if page.points.len() == r.limit {
                page.next = Some(*start);
                break;
            }
            page.points.push(SeriesPoint {
                start: *start,
                energy_wh: *wh,
                gpu_ms: 0,
                readings: 1,
                status: BucketStatusView::Reported,
                evidence: Vec::new(),
            });
        }
        page
    }
}

impl ReadModel for Series {
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
        Ok((*id == DEVICE).then(|| self.page(r)))
    }
    fn region_production(&self, region: &str, r: &SeriesRequest) -> Result<SeriesPage, ReadError> {
        Ok(if region == "DE-BY" {
            self.page(r)
        } else {
            self.reads.fetch_add(1, Ordering::SeqCst);
            SeriesPage::default()
        })
    }
    fn production_changes(&self) -> Option<Arc<ProductionChanges>> {
        self.changes.clone()
    }
}

fn config(cache_bytes: usize) -> ApiConfig {
    ApiConfig {
        rate_limit_per_s: 0,
        series_cache_bytes: cache_bytes,
        ..ApiConfig::default()
    }
}

const DAY_QUERY: &str = "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&granularity=5m";

fn device_path() -> String {
    format!("/v1/production/devices/{DEVICE}?{DAY_QUERY}")
}

struct Answer {
    status: StatusCode,
    etag: Option<String>,
    gzip: bool,
    body: Bytes,
}

impl Answer {
    fn series(&self) -> Result<ProductionSeriesView, Box<dyn std::error::Error>> {
        let json = if self.gzip {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&self.body[..]).read_to_end(&mut out)?;
            out
        } else {
            self.body.to_vec()
        };
        Ok(serde_json::from_slice(&json)?)
    }
}

async fn fetch(
    app: &axum::Router,
    path: &str,
    headers: &[(header::HeaderName, &str)],
) -> Result<Answer, Box<dyn std::error::Error>> {
    let mut req = Request::builder().uri(path);
    for (k, v) in headers {
        req = req.header(k, *v);
    }
    let resp = app.clone().oneshot(req.body(Body::empty())?).await?;
    let h = resp.headers().clone();
    Ok(Answer {
        status: resp.status(),
        etag: h
            .get(header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        gzip: h.get(header::CONTENT_ENCODING).map(|v| v.as_bytes()) == Some(&b"gzip"[..]),
        body: resp.into_body().collect().await?.to_bytes(),
    })
}

fn energy_at(s: &ProductionSeriesView, i: usize) -> Option<u64> {
    s.points.get(i).map(|p| p.energy_wh)
}

#[tokio::test]
async fn a_series_is_reused_until_its_day_changes() -> TestResult {
    let m = Arc::new(Series::new(true));
    let app = router(m.clone(), config(1 << 20));
    let path = device_path();

    let first = fetch(&app, &path, &[]).await?;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(m.reads.load(Ordering::SeqCst), 1);
    let tag = first.etag.clone().ok_or("no ETag")?;
    let s = first.series()?;
    assert_eq!(s.points.len(), 288);

    // The same query again: from the cache, byte for byte.
    let again = fetch(&app, &path, &[]).await?;
    assert_eq!(m.reads.load(Ordering::SeqCst), 1, "served from the cache");
    assert_eq!(again.body, first.body);
    assert_eq!(again.etag.as_deref(), Some(tag.as_str()));

    // Pre-compressed for a client that accepts gzip; the same JSON inside.
    let gz = fetch(&app, &path, &[(header::ACCEPT_ENCODING, "gzip, br")]).await?;
    assert!(gz.gzip);
    assert!(gz.body.len() < first.body.len() / 2);
    assert_eq!(gz.series()?, s);
    let refused = fetch(&app, &path, &[(header::ACCEPT_ENCODING, "gzip;q=0")]).await?;
    assert!(!refused.gzip);
    assert_eq!(refused.body, first.body);

    // Conditional: 304 without a body while the tag is current.
    let nm = fetch(&app, &path, &[(header::IF_NONE_MATCH, tag.as_str())]).await?;
    assert_eq!(nm.status, StatusCode::NOT_MODIFIED);
    assert!(nm.body.is_empty());
    let other = fetch(&app, &path, &[(header::IF_NONE_MATCH, "\"other\"")]).await?;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(m.reads.load(Ordering::SeqCst), 1);

    // A change the model committed and announced on another day: still cached.
    m.set(DAY + 86_400 + 300, 9, true);
    assert_eq!(fetch(&app, &path, &[]).await?.body, first.body);
    assert_eq!(m.reads.load(Ordering::SeqCst), 1);

    // A change to this day: read again, new value, new tag; the old tag is no longer 304.
    m.set(DAY + 600, 4242, true);
    let after = fetch(&app, &path, &[(header::IF_NONE_MATCH, tag.as_str())]).await?;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(m.reads.load(Ordering::SeqCst), 2);
    assert_eq!(energy_at(&after.series()?, 2), Some(4242));
    assert_ne!(after.etag.as_deref(), Some(tag.as_str()));
    let cached_again = fetch(&app, &path, &[]).await?;
    assert_eq!(cached_again.body, after.body);
    assert_eq!(m.reads.load(Ordering::SeqCst), 2);

    // Another page of the same day is its own entry.
    let page = format!("{path}&limit=10");
    let p = fetch(&app, &page, &[]).await?;
    assert_eq!(p.series()?.points.len(), 10);
    assert_eq!(m.reads.load(Ordering::SeqCst), 3);
    Ok(())
}

#[tokio::test]
async fn regions_are_invalidated_by_their_own_counters_and_empty_answers_are_not_kept() -> TestResult
{
    let m = Arc::new(Series::new(true));
    let app = router(m.clone(), config(1 << 20));
    let path = format!("/v1/production/regions/DE-BY?{DAY_QUERY}");
    let first = fetch(&app, &path, &[]).await?;
    fetch(&app, &path, &[]).await?;
    assert_eq!(m.reads.load(Ordering::SeqCst), 1);
    m.set(DAY, 77, true);
    let after = fetch(&app, &path, &[]).await?;
    assert_eq!(m.reads.load(Ordering::SeqCst), 2);
    assert_ne!(after.body, first.body);
    assert_eq!(energy_at(&after.series()?, 0), Some(77));

    // An unknown region has no points: read every time (it may get some).
    let empty = format!("/v1/production/regions/XX?{DAY_QUERY}");
    fetch(&app, &empty, &[]).await?;
    fetch(&app, &empty, &[]).await?;
    assert_eq!(m.reads.load(Ordering::SeqCst), 4);
    // An unknown device is a 404, never cached.
    let unknown = format!("/v1/production/devices/{}?{DAY_QUERY}", Hex32([1; 32]));
    assert_eq!(
        fetch(&app, &unknown, &[]).await?.status,
        StatusCode::NOT_FOUND
    );
    Ok(())
}

#[tokio::test]
async fn without_counters_or_budget_every_request_reads_the_model() -> TestResult {
    for (with_changes, bytes) in [(false, 1 << 20), (true, 0)] {
        let m = Arc::new(Series::new(with_changes));
        let app = router(m.clone(), config(bytes));
        let a = fetch(&app, &device_path(), &[]).await?;
        // A change nobody announced is still seen: nothing was cached.
        m.set(DAY, 5, false);
        let b = fetch(&app, &device_path(), &[]).await?;
        assert_eq!(m.reads.load(Ordering::SeqCst), 2);
        assert!(a.etag.is_none());
        assert_eq!(energy_at(&b.series()?, 0), Some(5));
        // The router still compresses for clients that accept it.
        let gz = fetch(&app, &device_path(), &[(header::ACCEPT_ENCODING, "gzip")]).await?;
        assert!(gz.gzip);
        assert_eq!(gz.series()?, b.series()?);
    }
    Ok(())
}
