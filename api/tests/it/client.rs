//! The typed blocking client against the router on a real loopback listener.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use groundtruth_api::{router, ApiClient, ApiConfig, BatchItem, ClientError, Hex32};

use crate::model::Model;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_calls_views_and_problem_reasons() -> TestResult {
    let model = Arc::new(Model::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = router(model.clone(), ApiConfig::default());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let m = model.clone();
    tokio::task::spawn_blocking(move || -> TestResult {
        let c = ApiClient::new(&format!("http://{addr}"))?.with_timeout(Duration::from_secs(5));
        let s = c.status()?;
        assert_eq!((s.chain_id.as_str(), s.height), ("test", 7));
        let a = c.account(&Hex32([4; 32]))?;
        assert_eq!((a.address, a.nonce), (Hex32([4; 32]), 3));
        assert_eq!(c.device(&Hex32([4; 32]))?, None);
        assert_eq!(c.tx(&Hex32([0; 32]))?, None);
        assert_eq!(c.tx(&Hex32([9; 32]))?.map(|t| t.height), Some(5));
        assert_eq!(c.block(1)?, None);
        let sub = c.submit_tx(&[1, 2, 3])?;
        assert_eq!(sub.hash, Hex32([3; 32]));
        match c.submit_tx(&[2]) {
            Err(e @ ClientError::Problem { .. }) => {
                assert_eq!((e.status(), e.reason()), (Some(400), Some("bad_nonce")));
            }
            other => return Err(format!("expected a problem, got {other:?}").into()),
        }
        let items = c.submit_txs(&[vec![1u8], vec![0u8]])?;
        assert!(matches!(
            &items[..],
            [BatchItem::Submitted(_), BatchItem::Rejected(_)]
        ));
        c.forward_txs(&[vec![1u8]])?;
        assert_eq!(m.forwarded.load(Ordering::SeqCst), 1);
        // Not served by this model: the reason travels.
        let e = c.validators().err().ok_or("validators should fail")?;
        assert_eq!(e.reason(), Some("not_served"));
        // The API router alone has no /metrics.
        let e = c.metrics_text().err().ok_or("metrics should 404")?;
        assert_eq!((e.status(), e.reason()), (Some(404), Some("not_found")));
        assert!(c.health()?.ok);
        if let Ok(mut alive) = m.alive.lock() {
            *alive = false;
        }
        let h = c.health()?;
        assert!(!h.ok && h.checks.iter().any(|c| c.name == "ingest" && !c.ok));
        assert!(c.readiness()?.ok);
        Ok(())
    })
    .await??;
    server.abort();
    Ok(())
}

#[test]
fn connection_refused_is_an_io_error() -> TestResult {
    // Bind then drop to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let c = ApiClient::new(&format!("127.0.0.1:{port}"))?.with_timeout(Duration::from_secs(2));
    assert!(matches!(c.status(), Err(ClientError::Io { .. })));
    Ok(())
}
