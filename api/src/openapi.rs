//! The OpenAPI 3.1 document, generated from the handlers' annotations and the views' types
//! (`utoipa`), at `GET /openapi.json`, and an offline docs page at `GET /docs` that renders it
//! with plain JavaScript (`api/docs/index.html`, checked in; nothing loaded from elsewhere).

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::problem::Problem;
use crate::views::{
    BucketStatusView, CheckView, DeviceProductionSummaryView, DevicesPageView, EvidenceRefView,
    Granularity, HealthView, Hex32, LaggedView, ProductionEventView, ProductionPointView,
    ProductionSeriesView,
};

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "groundtruth API",
        description = "Verified production of energy meters and GPU agents, per device and per region, at 5 min to 1 day granularity, with the status of each value (reported, attested, verified, anchored). Times are RFC 3339 UTC, energy in Wh. Errors are RFC 9457 application/problem+json with a stable `reason`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    paths(
        crate::v1::device_production,
        crate::v1::region_production,
        crate::v1::devices,
        crate::sse::events,
        crate::market::certificates,
        crate::market::certificate,
        crate::market::validators,
        crate::market::slashes,
        crate::market::providers,
        crate::market::verify,
        crate::server::account,
        crate::server::healthz,
        crate::server::readyz,
    ),
    components(schemas(
        Problem,
        Hex32,
        Granularity,
        BucketStatusView,
        EvidenceRefView,
        ProductionPointView,
        ProductionSeriesView,
        DeviceProductionSummaryView,
        DevicesPageView,
        ProductionEventView,
        LaggedView,
        HealthView,
        CheckView,
        crate::market::CertificateStatusView,
        crate::market::CertificateEvidenceView,
        crate::market::CertificateView,
        crate::market::CertificatesPageView,
        crate::market::NetworkValidatorView,
        crate::market::NetworkValidatorsView,
        crate::market::SlashEvidenceView,
        crate::market::SlashEventView,
        crate::market::SlashesPageView,
        crate::market::ProviderSummaryView,
        crate::market::ProvidersPageView,
        crate::market::VerdictRunView,
        crate::market::LedgerMatchView,
        crate::market::VerdictView,
        crate::views::AccountView,
        crate::views::AccountValidatorView,
        crate::views::ValidatorStatusView,
        crate::views::ProviderView,
        crate::views::AccountRewardsView,
        crate::views::EpochRewardView,
    )),
    tags(
        (name = "production", description = "Verified production"),
        (name = "live", description = "Server-Sent Events"),
        (name = "certificates", description = "Hourly granular certificates of anchored production"),
        (name = "network", description = "Validators, slashes and providers from the committed ledger"),
        (name = "evidence", description = "Proof verification"),
        (name = "operations", description = "Liveness and readiness"),
    )
)]
pub struct ApiDoc;

/// The document as JSON text.
pub fn openapi_text() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> Response {
    let mut resp = openapi_text().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The docs page (checked in as `api/docs/index.html`).
pub const DOCS_HTML: &str = include_str!("../docs/index.html");

/// `GET /docs`.
pub async fn docs() -> Response {
    let mut resp = DOCS_HTML.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
        ),
    );
    resp
}
