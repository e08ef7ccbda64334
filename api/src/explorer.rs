//! The explorer page at `GET /` and `GET /explorer`: one checked-in HTML file
//! (`api/explorer/index.html`) with its script and style inline, reading only this node's API
//! (same origin; nothing from a CDN). It shows the epochs with their commitments and L1
//! anchors, the validators, recent slashes, the live event stream, certificates, a device's
//! verified production chart drawn in SVG, and a value's trail (device → interval → epoch →
//! proof) with a button that verifies the proof in the browser.
//!
//! The in-browser verifier:
//! * `GET /explorer/verifier.js`: the checked-in glue (`api/explorer/verifier.js`), embedded;
//! * `GET /explorer/verifier.wasm`: the `verifier-wasm` crate built for `wasm32-unknown-unknown`
//!   by `scripts/setup.sh`, read from disk at each request so a rebuild needs no node restart:
//!   `$GROUNDTRUTH_VERIFIER_WASM` when set (a deployment places the file there), else
//!   `api/explorer/pkg/verifier.wasm` of the checkout this binary was built from. When it is
//!   missing the answer is a `404` problem with reason `verifier_not_built` (the page then says
//!   "verifier not built, run scripts/setup.sh"); `cargo build` never needs it.

use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::problem::Problem;

/// The page.
pub const EXPLORER_HTML: &str = include_str!("../explorer/index.html");

/// The verifier's glue script.
pub const VERIFIER_JS: &str = include_str!("../explorer/verifier.js");

/// Environment variable naming the verifier module's path (overrides the checkout's).
pub const VERIFIER_WASM_ENV: &str = "GROUNDTRUTH_VERIFIER_WASM";

/// Largest verifier module served (bytes).
pub const MAX_VERIFIER_WASM: u64 = 32 << 20;

/// Reason of the `404` when the module was not built.
pub const NOT_BUILT: &str = "verifier_not_built";

/// The Content-Security-Policy the page is served with: its inline script and style, this
/// origin's verifier glue, WebAssembly compilation (`wasm-unsafe-eval`, which allows
/// compiling modules, not `eval`), requests to this origin only.
pub const EXPLORER_CSP: &str = "default-src 'none'; script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn with_headers(mut resp: Response, content_type: &'static str) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// `GET /` and `GET /explorer`.
pub async fn page() -> Response {
    let mut resp = with_headers(EXPLORER_HTML.into_response(), "text/html; charset=utf-8");
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(EXPLORER_CSP),
    );
    resp
}

/// `GET /explorer/verifier.js`.
pub async fn verifier_js() -> Response {
    with_headers(
        VERIFIER_JS.into_response(),
        "text/javascript; charset=utf-8",
    )
}

/// Where the verifier module is read from.
pub fn verifier_wasm_path() -> PathBuf {
    std::env::var_os(VERIFIER_WASM_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/explorer/pkg/verifier.wasm"
            ))
        })
}

fn not_built() -> Response {
    Problem::new(
        StatusCode::NOT_FOUND,
        NOT_BUILT,
        "verifier not built, run scripts/setup.sh",
    )
    .into_response()
}

/// Reads the module; `None` when it is missing, unreadable, over the limit or not wasm.
fn read_wasm(path: PathBuf) -> Option<Vec<u8>> {
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() || meta.len() > MAX_VERIFIER_WASM {
        return None;
    }
    let bytes = std::fs::read(&path).ok()?;
    bytes.starts_with(b"\0asm").then_some(bytes)
}

/// `GET /explorer/verifier.wasm`.
pub async fn verifier_wasm() -> Response {
    let path = verifier_wasm_path();
    let shown = path.display().to_string();
    match tokio::task::spawn_blocking(move || read_wasm(path)).await {
        Ok(Some(bytes)) => {
            let mut resp = with_headers(bytes.into_response(), "application/wasm");
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
            resp
        }
        Ok(None) => {
            tracing::debug!(target: "api::explorer", path = %shown, "verifier module not found");
            not_built()
        }
        Err(e) => {
            tracing::warn!(target: "api::explorer", error = %e, "reading the verifier module failed");
            not_built()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_foreign_module_is_not_served() {
        let dir = std::env::temp_dir().join(format!("gt-explorer-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        assert_eq!(read_wasm(dir.join("absent.wasm")), None);
        let text = dir.join("text.wasm");
        let _ = std::fs::write(&text, b"not wasm");
        assert_eq!(read_wasm(text), None);
        let wasm = dir.join("ok.wasm");
        let _ = std::fs::write(&wasm, b"\0asm\x01\0\0\0");
        assert_eq!(read_wasm(wasm), Some(b"\0asm\x01\0\0\0".to_vec()));
        assert_eq!(read_wasm(dir.clone()), None);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_missing_module_is_a_404_problem_that_says_how_to_build_it() {
        // Only this test sets the variable; nothing else in the crate serves the module.
        std::env::set_var(VERIFIER_WASM_ENV, "/nonexistent/groundtruth/verifier.wasm");
        let resp = verifier_wasm().await;
        std::env::remove_var(VERIFIER_WASM_ENV);
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains(NOT_BUILT), "{text}");
        assert!(text.contains("run scripts/setup.sh"), "{text}");
    }

    #[tokio::test]
    async fn the_page_may_load_its_glue_and_compile_wasm_and_nothing_else() {
        let resp = page().await;
        let csp = resp
            .headers()
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(csp.contains("script-src 'self' 'unsafe-inline' 'wasm-unsafe-eval';"));
        assert!(csp.contains("connect-src 'self';") && csp.starts_with("default-src 'none';"));
        assert!(EXPLORER_HTML.contains("<script src=\"/explorer/verifier.js\"></script>"));
        let js = verifier_js().await;
        assert_eq!(
            js.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("text/javascript; charset=utf-8"))
        );
    }
}
