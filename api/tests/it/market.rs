//! The certificate, network-state and proof-verification routes' validation, their OpenAPI
//! entries, and the explorer page, through the router over the in-memory model (which serves
//! none of them: every answer here is decided by the router itself or is `not_served`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, Response, StatusCode};
use bytes::Bytes;
use groundtruth_api::{router, ApiConfig, Problem};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::model::Model;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn app(config: ApiConfig) -> axum::Router {
    router(Arc::new(Model::new()), config)
}

fn open() -> axum::Router {
    app(ApiConfig {
        rate_limit_per_s: 0,
        ..ApiConfig::default()
    })
}

async fn body_of(resp: Response<Body>) -> Result<Bytes, axum::Error> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

async fn send(
    app: &axum::Router,
    req: Request<Body>,
    status: StatusCode,
    reason: &str,
) -> Result<Problem, Box<dyn std::error::Error>> {
    let what = req.uri().to_string();
    let resp = app.clone().oneshot(req).await?;
    assert_eq!(resp.status(), status, "{what}");
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/problem+json"[..]),
        "{what}"
    );
    let p: Problem = serde_json::from_slice(&body_of(resp).await?)?;
    assert_eq!(p.reason, reason, "{what}: {}", p.detail);
    Ok(p)
}

fn get(path: &str) -> Result<Request<Body>, axum::http::Error> {
    Request::builder().uri(path).body(Body::empty())
}

fn post(path: &str, content_type: &str, body: Vec<u8>) -> Result<Request<Body>, axum::http::Error> {
    Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
}

const DEV: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn certificate_parameters_are_validated_before_the_model() -> TestResult {
    let app = open();
    let day = "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z";
    for (query, status, reason, parameter) in [
        ("to=2024-05-02T00:00:00Z", 400, "missing_parameter", "from"),
        (
            "from=2024-05-01T00:30:00Z&to=2024-05-02T00:00:00Z",
            400,
            "misaligned_time",
            "from",
        ),
        (
            "from=yesterday&to=2024-05-02T00:00:00Z",
            400,
            "bad_time",
            "from",
        ),
        (
            "from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z",
            400,
            "bad_range",
            "to",
        ),
        (
            "from=2020-05-01T00:00:00Z&to=2024-05-02T00:00:00Z",
            400,
            "range_too_large",
            "to",
        ),
        (&format!("{day}&device=xyz")[..], 400, "bad_key", "device"),
        (&format!("{day}&limit=0")[..], 400, "bad_limit", "limit"),
        (&format!("{day}&limit=501")[..], 400, "bad_limit", "limit"),
        (
            &format!("{day}&cursor=00ff")[..],
            400,
            "bad_cursor",
            "cursor",
        ),
        (
            &format!("{day}&page=2")[..],
            400,
            "unknown_parameter",
            "page",
        ),
    ] {
        let p = send(
            &app,
            get(&format!("/v1/certificates?{query}"))?,
            StatusCode::from_u16(status)?,
            reason,
        )
        .await?;
        assert_eq!(
            p.extensions.get("parameter").and_then(|v| v.as_str()),
            Some(parameter),
            "{query}"
        );
    }
    // Valid queries reach the model, which serves no certificates.
    send(
        &app,
        get(&format!("/v1/certificates?{day}&device={DEV}&limit=5"))?,
        StatusCode::NOT_FOUND,
        "not_served",
    )
    .await?;
    send(
        &app,
        get(&format!("/v1/certificates/{DEV}"))?,
        StatusCode::NOT_FOUND,
        "not_served",
    )
    .await?;
    send(
        &app,
        get("/v1/certificates/12")?,
        StatusCode::BAD_REQUEST,
        "bad_key",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn network_routes_validate_and_say_not_served_without_a_ledger() -> TestResult {
    let app = open();
    for path in ["/v1/validators", "/v1/slashes?limit=3", "/v1/providers"] {
        send(&app, get(path)?, StatusCode::NOT_FOUND, "not_served").await?;
    }
    send(
        &app,
        get("/v1/validators?x=1")?,
        StatusCode::BAD_REQUEST,
        "unknown_parameter",
    )
    .await?;
    send(
        &app,
        get("/v1/slashes?limit=1000")?,
        StatusCode::BAD_REQUEST,
        "bad_limit",
    )
    .await?;
    send(
        &app,
        get("/v1/slashes?cursor=zz")?,
        StatusCode::BAD_REQUEST,
        "bad_cursor",
    )
    .await?;
    send(
        &app,
        get("/v1/providers?cursor=0101")?,
        StatusCode::BAD_REQUEST,
        "bad_cursor",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn proof_verification_bounds_its_input() -> TestResult {
    let app = app(ApiConfig {
        rate_limit_per_s: 0,
        max_proof_bytes: 1000,
        max_verify_body: 4000,
        ..ApiConfig::default()
    });
    let path = "/v1/proofs/verify";
    send(
        &app,
        post(path, "text/plain", vec![1; 10])?,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "bad_content_type",
    )
    .await?;
    send(
        &app,
        post(path, "application/octet-stream", vec![1; 1001])?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await?;
    let bundle = groundtruth_api::market::PROOF_BUNDLE_TYPE;
    send(
        &app,
        post(path, bundle, vec![1; 4001])?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await?;
    // A bundle whose envelope is over the proof limit, inside the body limit.
    let big = groundtruth_api::encode_batch(&[vec![0u8; 1500]]);
    send(
        &app,
        post(path, bundle, big)?,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await?;
    send(
        &app,
        post(path, bundle, vec![0, 0, 0, 9, 1])?,
        StatusCode::BAD_REQUEST,
        "malformed_batch",
    )
    .await?;
    send(
        &app,
        post(path, bundle, Vec::new())?,
        StatusCode::BAD_REQUEST,
        "bad_body",
    )
    .await?;
    // Well-formed input reaches the model, which has no verifier.
    send(
        &app,
        post(path, "application/octet-stream", vec![1; 100])?,
        StatusCode::NOT_FOUND,
        "not_served",
    )
    .await?;
    let ok = groundtruth_api::encode_batch(&[vec![1u8; 100], vec![2u8; 100]]);
    send(
        &app,
        post(path, bundle, ok)?,
        StatusCode::NOT_FOUND,
        "not_served",
    )
    .await?;
    send(
        &app,
        get(path)?,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn market_routes_are_in_the_openapi_document() -> TestResult {
    let resp = open().oneshot(get("/openapi.json")?).await?;
    let doc: serde_json::Value = serde_json::from_slice(&body_of(resp).await?)?;
    for (path, method) in [
        ("/v1/certificates", "get"),
        ("/v1/certificates/{id}", "get"),
        ("/v1/validators", "get"),
        ("/v1/slashes", "get"),
        ("/v1/providers", "get"),
        ("/v1/proofs/verify", "post"),
        ("/state/account/{address}", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} documented"
        );
    }
    for schema in [
        "CertificateView",
        "VerdictView",
        "SlashEventView",
        "NetworkValidatorsView",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    // An account shows the rewards the ledger paid it: total, epochs, latest payouts.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["AccountView"]["properties"]["rewards"]["$ref"],
        "#/components/schemas/AccountRewardsView"
    );
    let rewards = &schemas["AccountRewardsView"]["properties"];
    for field in ["total", "epochs", "recent"] {
        assert!(rewards[field].is_object(), "AccountRewardsView.{field}");
    }
    assert_eq!(
        rewards["recent"]["items"]["$ref"],
        "#/components/schemas/EpochRewardView"
    );
    let names: Vec<&str> = doc["paths"]["/v1/certificates"]["get"]["parameters"]
        .as_array()
        .ok_or("parameters")?
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["device", "from", "to", "limit", "cursor"]);
    Ok(())
}

/// The string literals that directly follow `marker` (e.g. `fetch("/x"` gives `/x`).
fn quoted_after<'a>(html: &'a str, marker: &str) -> Vec<&'a str> {
    html.split(marker)
        .skip(1)
        .filter_map(|s| s.strip_prefix('"'))
        .filter_map(|s| s.split('"').next())
        .collect()
}

#[tokio::test]
async fn explorer_page_is_served_and_loads_only_from_its_own_origin() -> TestResult {
    let app = open();
    for path in ["/", "/explorer"] {
        let resp = app.clone().oneshot(get(path)?).await?;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/html")));
        let csp = resp
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("connect-src 'self'"),
            "{csp}"
        );
        let html = String::from_utf8(body_of(resp).await?.to_vec())?;
        assert!(html.contains("<title>groundtruth explorer</title>"));
        // No external script, style, image or font; every URL it fetches or links is a path on
        // this origin. (The SVG namespace is a name, never fetched.)
        for tag in ["<img", "@import", "url("] {
            assert!(!html.contains(tag), "the page loads {tag}");
        }
        // The only link is the empty data-URL icon, which keeps browsers from fetching one.
        assert_eq!(
            html.matches("<link").count(),
            html.matches("<link rel=\"icon\" href=\"data:,\">").count(),
            "the page links something else"
        );
        // Scripts it loads (the verifier's glue) are paths on this origin.
        for src in quoted_after(&html, "<script src=") {
            assert!(
                src.starts_with('/') && !src.starts_with("//"),
                "script from {src}"
            );
        }
        let without_ns = html.replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(!without_ns.contains("http://") && !without_ns.contains("https://"));
        assert!(!without_ns.contains("\"//") && !without_ns.contains("'//"));
        let mut urls = quoted_after(&html, "fetch(");
        urls.extend(quoted_after(&html, "EventSource("));
        urls.extend(quoted_after(&html, "getJson("));
        urls.extend(quoted_after(&html, "href="));
        let urls: Vec<&str> = urls
            .into_iter()
            .filter(|u| !u.is_empty() && *u != "data:,")
            .collect();
        assert!(urls.contains(&"/docs"), "hrefs are checked: {urls:?}");
        assert!(urls.len() >= 8, "{urls:?}");
        for u in &urls {
            assert!(
                u.starts_with('/') && !u.starts_with("//"),
                "{u} is not same-origin"
            );
        }
        for route in [
            "/v1/epochs",
            "/v1/validators",
            "/v1/slashes",
            "/v1/events",
            "/v1/production/devices/",
            "/v1/certificates",
        ] {
            assert!(html.contains(route), "the page reads {route}");
        }
    }
    Ok(())
}
