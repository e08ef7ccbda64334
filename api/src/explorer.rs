//! The explorer page at `GET /` and `GET /explorer`: one checked-in HTML file
//! (`api/explorer/index.html`) with its script and style inline, reading only this node's API
//! (same origin; nothing from a CDN, no build step). It shows the epochs with their commitments
//! and L1 anchors, the validators, recent slashes, the live event stream, certificates, and a
//! device's verified production chart drawn in SVG.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

/// The page.
pub const EXPLORER_HTML: &str = include_str!("../explorer/index.html");

/// The Content-Security-Policy it is served with: its inline script and style, requests to
/// this origin only.
pub const EXPLORER_CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /` and `GET /explorer`.
pub async fn page() -> Response {
    let mut resp = EXPLORER_HTML.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(EXPLORER_CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
