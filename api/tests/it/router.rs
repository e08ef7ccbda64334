//! Hostile and ordinary requests through the router, without a socket.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use bytes::Bytes;
use groundtruth_api::{encode_batch, router, ApiConfig, BatchItem, Problem, FORWARDED_HEADER};
use http_body::Frame;
use tower::ServiceExt;

use crate::model::Model;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn config() -> ApiConfig {
    ApiConfig {
        max_tx_bytes: 64,
        max_batch_body: 1024,
        max_batch_entries: 4,
        max_concurrent_writes: 2,
        ..ApiConfig::default()
    }
}

fn app(model: &Arc<Model>) -> axum::Router {
    router(model.clone(), config())
}

fn post(path: &str, body: impl Into<Body>) -> Result<Request<Body>, axum::http::Error> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .body(body.into())
}

fn get(path: &str) -> Result<Request<Body>, axum::http::Error> {
    Request::builder().uri(path).body(Body::empty())
}

async fn body_of(resp: Response<Body>) -> Result<Bytes, axum::Error> {
    axum::body::to_bytes(resp.into_body(), 1 << 20).await
}

/// Asserts a problem+json answer with `status` and `reason`; returns it.
async fn problem(
    resp: Response<Body>,
    status: StatusCode,
    reason: &str,
) -> Result<Problem, Box<dyn std::error::Error>> {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let p: Problem = serde_json::from_slice(&body_of(resp).await?)?;
    assert_eq!(p.reason, reason);
    assert_eq!(p.status, status.as_u16());
    assert_eq!(p.type_, format!("urn:groundtruth:problem:{reason}"));
    assert!(!p.title.is_empty() && !p.detail.is_empty());
    Ok(p)
}

/// A body that records whether it was ever polled and how much it yielded; yields `chunks`
/// chunks of `chunk` bytes (endless when `None`).
struct Probe {
    polled: Arc<AtomicBool>,
    yielded: Arc<AtomicUsize>,
    chunk: usize,
    chunks: Option<usize>,
}

impl http_body::Body for Probe {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        self.polled.store(true, Ordering::SeqCst);
        if let Some(n) = self.chunks.as_mut() {
            if *n == 0 {
                return Poll::Ready(None);
            }
            *n -= 1;
        }
        self.yielded.fetch_add(self.chunk, Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![0u8; self.chunk])))))
    }
}

#[tokio::test]
async fn oversize_single_tx_is_refused() -> TestResult {
    let model = Arc::new(Model::new());
    let resp = app(&model).oneshot(post("/tx", vec![1u8; 65])?).await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await?;
    assert_eq!(model.submits.load(Ordering::SeqCst), 0);
    // At the limit it reaches the model.
    let resp = app(&model).oneshot(post("/tx", vec![1u8; 64])?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(model.submits.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn a_declared_8_mib_batch_is_refused_without_reading_it() -> TestResult {
    let model = Arc::new(Model::new());
    let polled = Arc::new(AtomicBool::new(false));
    let probe = Probe {
        polled: polled.clone(),
        yielded: Arc::new(AtomicUsize::new(0)),
        chunk: 8 << 20,
        chunks: Some(1),
    };
    let req = Request::builder()
        .method(Method::POST)
        .uri("/txs")
        .header(header::CONTENT_LENGTH, 8 << 20)
        .body(Body::new(probe))?;
    // Default limits here: the 1 MiB batch cap.
    let resp = router(model.clone(), ApiConfig::default())
        .oneshot(req)
        .await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await?;
    assert!(!polled.load(Ordering::SeqCst), "the body was read");
    assert_eq!(
        model.submits.load(Ordering::SeqCst),
        0,
        "the model was called"
    );
    Ok(())
}

#[tokio::test]
async fn an_undeclared_endless_body_is_cut_at_the_cap() -> TestResult {
    let model = Arc::new(Model::new());
    let yielded = Arc::new(AtomicUsize::new(0));
    let probe = Probe {
        polled: Arc::new(AtomicBool::new(false)),
        yielded: yielded.clone(),
        chunk: 100,
        chunks: None,
    };
    let resp = app(&model).oneshot(post("/txs", Body::new(probe))?).await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await?;
    // Reading stopped with the first chunk past 1024 bytes.
    assert_eq!(yielded.load(Ordering::SeqCst), 1100);
    assert_eq!(model.submits.load(Ordering::SeqCst), 0);
    Ok(())
}

#[tokio::test]
async fn batch_limits_and_framing() -> TestResult {
    let model = Arc::new(Model::new());
    let too_many = encode_batch(&vec![vec![1u8]; 5]);
    let resp = app(&model).oneshot(post("/txs", too_many)?).await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "too_many_entries").await?;

    let big_entry = encode_batch(&[vec![1u8; 2], vec![1u8; 65]]);
    let resp = app(&model).oneshot(post("/txs", big_entry)?).await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "entry_too_large").await?;

    // An entry claiming 4 GiB in a 10-byte body.
    let liar = vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6];
    let resp = app(&model).oneshot(post("/txs", liar)?).await?;
    problem(resp, StatusCode::PAYLOAD_TOO_LARGE, "entry_too_large").await?;

    let mut truncated = encode_batch(&[vec![1u8; 3], vec![1u8; 3]]);
    truncated.pop();
    let resp = app(&model).oneshot(post("/txs", truncated)?).await?;
    problem(resp, StatusCode::BAD_REQUEST, "malformed_batch").await?;
    assert_eq!(
        model.submits.load(Ordering::SeqCst),
        0,
        "nothing of a refused batch is submitted"
    );

    let ok = encode_batch(&[vec![1u8; 3], vec![2u8; 3]]);
    let resp = app(&model).oneshot(post("/txs", ok)?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let items: Vec<BatchItem> = serde_json::from_slice(&body_of(resp).await?)?;
    assert!(
        matches!(&items[..], [BatchItem::Submitted(s), BatchItem::Rejected(r)]
        if s.new && r.reason == "bad_nonce")
    );
    Ok(())
}

#[tokio::test]
async fn writes_past_the_concurrency_limit_get_503_with_retry_after() -> TestResult {
    let model = Arc::new(Model::new());
    if let Ok(mut h) = model.hold.lock() {
        *h = true;
    }
    let app = app(&model);
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(tokio::spawn(
            app.clone().oneshot(post("/tx", vec![1u8; 3])?),
        ));
    }
    // Wait until both are inside the model (holding their permits).
    let mut waited = 0;
    while model.inside.load(Ordering::SeqCst) < 2 {
        assert!(
            waited < 1000,
            "the first two writes never reached the model"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        waited += 1;
    }
    let resp = app
        .clone()
        .oneshot(post("/txs", encode_batch(&[[1u8]]))?)
        .await?;
    assert_eq!(
        resp.headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    problem(resp, StatusCode::SERVICE_UNAVAILABLE, "busy").await?;
    assert_eq!(model.submits.load(Ordering::SeqCst), 2);
    model.release();
    for h in held {
        assert_eq!(h.await??.status(), StatusCode::OK);
    }
    // Permits are back.
    let resp = app.oneshot(post("/tx", vec![1u8; 3])?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    Ok(())
}

#[tokio::test]
async fn unknown_routes_methods_and_keys_are_problems() -> TestResult {
    let model = Arc::new(Model::new());
    problem(
        app(&model).oneshot(get("/nope")?).await?,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await?;
    problem(
        app(&model).oneshot(get("/tx")?).await?,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await?;
    problem(
        app(&model).oneshot(post("/status", Body::empty())?).await?,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await?;
    problem(
        app(&model).oneshot(get("/tx/abc")?).await?,
        StatusCode::BAD_REQUEST,
        "bad_key",
    )
    .await?;
    problem(
        app(&model).oneshot(get("/block/x")?).await?,
        StatusCode::BAD_REQUEST,
        "bad_height",
    )
    .await?;
    problem(
        app(&model).oneshot(get("/block/3")?).await?,
        StatusCode::NOT_FOUND,
        "unknown_block",
    )
    .await?;
    let zeros = "00".repeat(32);
    problem(
        app(&model).oneshot(get(&format!("/tx/{zeros}"))?).await?,
        StatusCode::NOT_FOUND,
        "unknown_tx",
    )
    .await?;
    problem(
        app(&model)
            .oneshot(get(&format!("/state/device/{zeros}"))?)
            .await?,
        StatusCode::NOT_FOUND,
        "unknown_device",
    )
    .await?;
    problem(
        app(&model).oneshot(get("/state/validators")?).await?,
        StatusCode::NOT_FOUND,
        "not_served",
    )
    .await?;
    // A refused transaction: 400 with the model's reason.
    problem(
        app(&model).oneshot(post("/tx", vec![2u8])?).await?,
        StatusCode::BAD_REQUEST,
        "bad_nonce",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn forwarded_batches_reach_the_model_as_peer_origin() -> TestResult {
    let model = Arc::new(Model::new());
    let req = Request::builder()
        .method(Method::POST)
        .uri("/txs")
        .header(FORWARDED_HEADER, "1")
        .body(Body::from(encode_batch(&[[1u8]])))?;
    assert_eq!(app(&model).oneshot(req).await?.status(), StatusCode::OK);
    assert_eq!(model.forwarded.load(Ordering::SeqCst), 1);
    assert_eq!(
        app(&model).oneshot(post("/tx", vec![1u8])?).await?.status(),
        StatusCode::OK
    );
    assert_eq!(model.forwarded.load(Ordering::SeqCst), 1);
    Ok(())
}

#[tokio::test]
async fn health_and_readiness() -> TestResult {
    let model = Arc::new(Model::new());
    let resp = app(&model).oneshot(get("/healthz")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = app(&model).oneshot(get("/readyz")?).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    if let Ok(mut a) = model.alive.lock() {
        *a = false;
    }
    let resp = app(&model).oneshot(get("/healthz")?).await?;
    let p = problem(resp, StatusCode::SERVICE_UNAVAILABLE, "unhealthy").await?;
    assert_eq!(
        p.extensions.get("ok"),
        Some(&serde_json::Value::Bool(false))
    );
    assert!(p.detail.contains("ingest"));
    Ok(())
}
