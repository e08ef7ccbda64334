//! The market routes: verified production per device and per region, and the devices with
//! production. Every parameter is checked here, before the read model is asked anything, and
//! each refusal names the parameter (`parameter` member of the problem).

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::cache::{accepts_gzip, not_modified, Encoded, SeriesKey, Subject};
use crate::model::{ReadError, ReadModel, SeriesPage, SeriesRequest};
use crate::problem::{reason, Problem};
use crate::server::{blocking, internal, read_error, AppState};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::views::{
    DevicesPageView, Granularity, Hex32, ProductionPointView, ProductionSeriesView,
};

/// Longest range one query may cover: 366 days.
pub const MAX_RANGE_S: u64 = 366 * 86_400;
/// Default and largest `limit` of a production series (intervals with readings per page).
pub const DEFAULT_SERIES_LIMIT: usize = 288;
/// Largest `limit` of a production series.
pub const MAX_SERIES_LIMIT: usize = 1000;
/// Default `limit` of `GET /v1/devices`.
pub const DEFAULT_DEVICES_LIMIT: usize = 100;
/// Largest `limit` of `GET /v1/devices`.
pub const MAX_DEVICES_LIMIT: usize = 1000;
/// Default granularity.
pub const DEFAULT_GRANULARITY: Granularity = Granularity::Hour;
/// Longest region label (bytes).
pub const MAX_REGION_LEN: usize = 64;
/// Longest query string read (bytes).
const MAX_QUERY_LEN: usize = 1024;

const CURSOR_VERSION: u8 = 1;
const CURSOR_DEVICE: u8 = 1;
const CURSOR_REGION: u8 = 2;
const CURSOR_DEVICES: u8 = 3;

fn bad(status: StatusCode, code: &str, parameter: &str, detail: impl Into<String>) -> Problem {
    Problem::new(status, code, detail).with("parameter", serde_json::Value::from(parameter))
}

pub(crate) fn bad_request(code: &str, parameter: &str, detail: impl Into<String>) -> Problem {
    bad(StatusCode::BAD_REQUEST, code, parameter, detail)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes one query component (`+` is kept: times are sent with `Z` or `%2B00:00`).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hi = hex_value(*b.get(i + 1)?)?;
            let lo = hex_value(*b.get(i + 2)?)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The query's parameters, each allowed once and only those named in `allowed`.
pub(crate) fn query_params<'a>(
    uri: &Uri,
    allowed: &[&'a str],
) -> Result<Vec<(&'a str, String)>, Problem> {
    let q = uri.query().unwrap_or("");
    if q.len() > MAX_QUERY_LEN {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            reason::BAD_QUERY,
            format!("the query string is over {MAX_QUERY_LEN} bytes"),
        ));
    }
    let mut out: Vec<(&'a str, String)> = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (Some(k), Some(v)) = (percent_decode(k), percent_decode(v)) else {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                reason::BAD_QUERY,
                "the query string is not valid percent-encoded UTF-8",
            ));
        };
        let Some(name) = allowed.iter().find(|a| **a == k) else {
            let shown: String = k.chars().take(32).collect();
            return Err(bad_request(
                reason::UNKNOWN_PARAMETER,
                &shown,
                format!(
                    "unknown parameter {shown:?}; this route takes {}",
                    allowed.join(", ")
                ),
            ));
        };
        if out.iter().any(|(n, _)| n == name) {
            return Err(bad_request(
                reason::UNKNOWN_PARAMETER,
                name,
                format!("parameter {name} is given more than once"),
            ));
        }
        out.push((name, v));
    }
    Ok(out)
}

pub(crate) fn param<'p>(params: &'p [(&str, String)], name: &str) -> Option<&'p str> {
    params
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn parse_limit(
    params: &[(&str, String)],
    default: usize,
    max: usize,
) -> Result<usize, Problem> {
    match param(params, "limit") {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                bad_request(
                    reason::BAD_LIMIT,
                    "limit",
                    format!("limit must be a whole number from 1 to {max}"),
                )
            }),
    }
}

fn parse_time(params: &[(&str, String)], name: &str, step: Granularity) -> Result<u64, Problem> {
    let s = param(params, name).ok_or_else(|| {
        bad_request(
            reason::MISSING_PARAMETER,
            name,
            format!("{name} is required (RFC 3339 UTC, e.g. 2024-05-01T00:00:00Z)"),
        )
    })?;
    let t = parse_rfc3339(s)
        .map_err(|e| bad_request(reason::BAD_TIME, name, format!("{name}: {e}")))?;
    if t % step.seconds() != 0 {
        let floor = t - t % step.seconds();
        return Err(bad_request(
            reason::MISALIGNED_TIME,
            name,
            format!(
                "{name} must be on a {} boundary (UTC), e.g. {}",
                step.as_str(),
                format_rfc3339(floor)
            ),
        ));
    }
    Ok(t)
}

/// A series cursor: `hex(version ‖ kind ‖ next ‖ from ‖ to ‖ step)`; only valid with the query
/// it was issued for.
fn encode_series_cursor(kind: u8, next: u64, from: u64, to: u64, step: u64) -> String {
    let mut b = Vec::with_capacity(34);
    b.push(CURSOR_VERSION);
    b.push(kind);
    for n in [next, from, to, step] {
        b.extend_from_slice(&n.to_be_bytes());
    }
    hex::encode(b)
}

fn decode_series_cursor(s: &str, kind: u8, from: u64, to: u64, step: u64) -> Option<u64> {
    let b = hex::decode(s).ok()?;
    if b.len() != 34 || b.first() != Some(&CURSOR_VERSION) || b.get(1) != Some(&kind) {
        return None;
    }
    let n = |i: usize| -> Option<u64> {
        let at = 2 + 8 * i;
        Some(u64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
    };
    let next = n(0)?;
    (n(1)? == from && n(2)? == to && n(3)? == step && next > from && next < to && next % step == 0)
        .then_some(next)
}

/// What a series route parsed: the request for the model, and what the answer echoes.
struct SeriesQuery {
    request: SeriesRequest,
    granularity: Granularity,
    from: u64,
    to: u64,
}

fn series_query(uri: &Uri, kind: u8) -> Result<SeriesQuery, Problem> {
    let params = query_params(uri, &["from", "to", "granularity", "limit", "cursor"])?;
    let granularity = match param(&params, "granularity") {
        None => DEFAULT_GRANULARITY,
        Some(s) => Granularity::parse(s).ok_or_else(|| {
            bad_request(
                reason::BAD_GRANULARITY,
                "granularity",
                "granularity must be one of 5m, 15m, 1h, 1d",
            )
        })?,
    };
    let step = granularity.seconds();
    let from = parse_time(&params, "from", granularity)?;
    let to = parse_time(&params, "to", granularity)?;
    if to <= from {
        return Err(bad_request(
            reason::BAD_RANGE,
            "to",
            "to must be after from",
        ));
    }
    if to - from > MAX_RANGE_S {
        return Err(bad_request(
            reason::RANGE_TOO_LARGE,
            "to",
            format!("a query covers at most {} days", MAX_RANGE_S / 86_400),
        ));
    }
    let limit = parse_limit(&params, DEFAULT_SERIES_LIMIT, MAX_SERIES_LIMIT)?;
    let start = match param(&params, "cursor") {
        None => from,
        Some(c) => decode_series_cursor(c, kind, from, to, step).ok_or_else(|| {
            bad_request(
                reason::BAD_CURSOR,
                "cursor",
                "cursor was not issued for this query (pass it with the same from, to and granularity)",
            )
        })?,
    };
    Ok(SeriesQuery {
        request: SeriesRequest {
            from: start,
            to,
            step_s: step,
            limit,
        },
        granularity,
        from,
        to,
    })
}

fn series_view(
    subject: &str,
    id: String,
    kind: u8,
    q: &SeriesQuery,
    page: SeriesPage,
) -> ProductionSeriesView {
    let step = q.request.step_s;
    ProductionSeriesView {
        subject: subject.to_string(),
        id,
        granularity: q.granularity,
        from: format_rfc3339(q.from),
        to: format_rfc3339(q.to),
        points: page
            .points
            .into_iter()
            .take(q.request.limit)
            .map(|p| ProductionPointView {
                start: format_rfc3339(p.start),
                end: format_rfc3339(p.start.saturating_add(step)),
                energy_wh: p.energy_wh,
                gpu_ms: p.gpu_ms,
                readings: p.readings,
                status: p.status,
                evidence: p.evidence,
            })
            .collect(),
        next_cursor: page
            .next
            .filter(|n| *n > q.request.from && *n < q.to && n % step == 0)
            .map(|n| encode_series_cursor(kind, n, q.from, q.to, step)),
    }
}

/// Verified production of one device.
#[utoipa::path(
    get,
    path = "/v1/production/devices/{id}",
    tag = "production",
    params(
        ("id" = Hex32, Path, description = "Device id (64 hex characters)"),
        ("from" = String, Query, description = "Range start, RFC 3339 UTC, on a granularity boundary", example = "2024-05-01T00:00:00Z"),
        ("to" = String, Query, description = "Range end (exclusive), RFC 3339 UTC, on a granularity boundary; at most 366 days after from", example = "2024-05-02T00:00:00Z"),
        ("granularity" = Option<Granularity>, Query, description = "Interval length: 5m, 15m, 1h (default) or 1d"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Intervals with readings per page, 1 to 1000 (default 288)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (same query)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of an answer already held: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "Intervals with readings", body = ProductionSeriesView, headers(("ETag" = String, description = "Entity tag of this answer (when the node caches series); send it back in If-None-Match"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag", headers(("ETag" = String, description = "The current entity tag"))),
        (status = 400, description = "A parameter is invalid (reason and parameter say which)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown_device, or not_served by this node", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn device_production(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let id: Hex32 = match p.ok().and_then(|Path(s)| s.parse().ok()) {
        Some(id) => id,
        None => {
            return bad_request(reason::BAD_KEY, "id", "device id must be 64 hex characters")
                .into_response()
        }
    };
    let q = match series_query(&uri, CURSOR_DEVICE) {
        Ok(q) => q,
        Err(p) => return p.into_response(),
    };
    let key = SeriesKey {
        subject: Subject::Device(id),
        from: q.from,
        start: q.request.from,
        to: q.to,
        step: q.request.step_s,
        limit: q.request.limit,
    };
    serve_series(state, &headers, key, q, move |m, request| {
        m.device_production(&id, request)
    })
    .await
}

/// A series answer built on the blocking pool.
enum Built {
    /// The cache is off: the view, for the router to serialise (and compress).
    Plain(Box<ProductionSeriesView>),
    /// Encoded once (JSON, gzip, tag); whether it has points (only those are kept).
    Encoded(serde_json::Result<Encoded>, bool),
}

/// Answers a series: from the cache while the days it covers are unchanged, else from the
/// model (encoding it once, JSON and gzip, and keeping it when it has points).
async fn serve_series<F>(
    state: AppState,
    headers: &HeaderMap,
    key: SeriesKey,
    q: SeriesQuery,
    read: F,
) -> Response
where
    F: FnOnce(&dyn ReadModel, &SeriesRequest) -> Result<Option<SeriesPage>, ReadError>
        + Send
        + 'static,
{
    let (subject, id, kind) = match &key.subject {
        Subject::Device(d) => ("device", d.to_string(), CURSOR_DEVICE),
        Subject::Region(r) => ("region", r.clone(), CURSOR_REGION),
    };
    // The stamp is read before the model is: a change committed after it moves it.
    let stamp = state.series.as_ref().map(|(changes, cache)| {
        let stamp = match &key.subject {
            Subject::Device(d) => changes.device_stamp(&d.0, key.start, key.to),
            Subject::Region(r) => changes.region_stamp(r, key.start, key.to),
        };
        (stamp, cache.get(&key, stamp))
    });
    if let Some((_, Some(hit))) = &stamp {
        return encoded_response(hit, headers);
    }
    let cached = stamp.is_some();
    let request = q.request;
    let answer = blocking(&state, move |m| {
        read(m, &request).map(|page| {
            page.map(|page| {
                let view = series_view(subject, id, kind, &q, page);
                if !cached {
                    return Built::Plain(Box::new(view));
                }
                let has_points = !view.points.is_empty();
                Built::Encoded(serde_json::to_vec(&view).map(Encoded::new), has_points)
            })
        })
    })
    .await;
    match answer {
        Ok(Ok(Some(Built::Plain(view)))) => Json(view).into_response(),
        Ok(Ok(Some(Built::Encoded(Ok(encoded), has_points)))) => {
            let encoded = Arc::new(encoded);
            if let (Some((_, cache)), Some((stamp, _)), true) = (&state.series, stamp, has_points) {
                cache.put(key, stamp, encoded.clone());
            }
            encoded_response(&encoded, headers)
        }
        Ok(Ok(Some(Built::Encoded(Err(e), _)))) => {
            tracing::error!(target: "api", error = %e, "encoding a production series failed");
            internal().into_response()
        }
        Ok(Ok(None)) => Problem::new(
            StatusCode::NOT_FOUND,
            reason::UNKNOWN_DEVICE,
            "no device with this id is registered or has production",
        )
        .into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// An encoded series: `304` when `If-None-Match` names its tag, gzip when accepted.
fn encoded_response(e: &Encoded, headers: &HeaderMap) -> Response {
    let common = [
        (header::ETAG, e.etag.clone()),
        (header::VARY, HeaderValue::from_static("accept-encoding")),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    if not_modified(headers.get(header::IF_NONE_MATCH), &e.etag) {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    let json = HeaderValue::from_static("application/json");
    match (&e.gzip, accepts_gzip(headers.get(header::ACCEPT_ENCODING))) {
        (Some(gz), true) => (
            common,
            [
                (header::CONTENT_TYPE, json),
                (header::CONTENT_ENCODING, HeaderValue::from_static("gzip")),
            ],
            gz.clone(),
        )
            .into_response(),
        _ => (common, [(header::CONTENT_TYPE, json)], e.json.clone()).into_response(),
    }
}

/// Verified production of a region: sums over its devices.
#[utoipa::path(
    get,
    path = "/v1/production/regions/{region}",
    tag = "production",
    params(
        ("region" = String, Path, description = "Region label, 1 to 64 bytes (e.g. DE-BY)"),
        ("from" = String, Query, description = "Range start, RFC 3339 UTC, on a granularity boundary", example = "2024-05-01T00:00:00Z"),
        ("to" = String, Query, description = "Range end (exclusive), RFC 3339 UTC, on a granularity boundary; at most 366 days after from", example = "2024-05-02T00:00:00Z"),
        ("granularity" = Option<Granularity>, Query, description = "Interval length: 5m, 15m, 1h (default) or 1d"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Intervals with readings per page, 1 to 1000 (default 288)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (same query)"),
        ("If-None-Match" = Option<String>, Header, description = "ETag of an answer already held: 304 while it is current"),
    ),
    responses(
        (status = 200, description = "Intervals with readings (none for an unknown region)", body = ProductionSeriesView, headers(("ETag" = String, description = "Entity tag of this answer (when the node caches series); send it back in If-None-Match"))),
        (status = 304, description = "Not modified: If-None-Match names the current ETag", headers(("ETag" = String, description = "The current entity tag"))),
        (status = 400, description = "A parameter is invalid (reason and parameter say which)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served by this node", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn region_production(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let region = match p {
        Ok(Path(r)) if !r.is_empty() && r.len() <= MAX_REGION_LEN => r,
        _ => {
            return bad_request(
                reason::BAD_REGION,
                "region",
                format!("region must be 1 to {MAX_REGION_LEN} bytes of UTF-8"),
            )
            .into_response()
        }
    };
    let q = match series_query(&uri, CURSOR_REGION) {
        Ok(q) => q,
        Err(p) => return p.into_response(),
    };
    let key = SeriesKey {
        subject: Subject::Region(region.clone()),
        from: q.from,
        start: q.request.from,
        to: q.to,
        step: q.request.step_s,
        limit: q.request.limit,
    };
    serve_series(state, &headers, key, q, move |m, request| {
        m.region_production(&region, request).map(Some)
    })
    .await
}

fn encode_devices_cursor(last: &Hex32) -> String {
    let mut b = Vec::with_capacity(34);
    b.push(CURSOR_VERSION);
    b.push(CURSOR_DEVICES);
    b.extend_from_slice(&last.0);
    hex::encode(b)
}

fn decode_devices_cursor(s: &str) -> Option<Hex32> {
    let b = hex::decode(s).ok()?;
    if b.len() != 34 || b.first() != Some(&CURSOR_VERSION) || b.get(1) != Some(&CURSOR_DEVICES) {
        return None;
    }
    Some(Hex32(b.get(2..)?.try_into().ok()?))
}

/// Devices with production, in id order.
#[utoipa::path(
    get,
    path = "/v1/devices",
    tag = "production",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000, description = "Devices per page, 1 to 1000 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of devices", body = DevicesPageView),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served by this node", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn devices(State(state): State<AppState>, uri: Uri) -> Response {
    let params = match query_params(&uri, &["limit", "cursor"]) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let limit = match parse_limit(&params, DEFAULT_DEVICES_LIMIT, MAX_DEVICES_LIMIT) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let after = match param(&params, "cursor") {
        None => None,
        Some(c) => match decode_devices_cursor(c) {
            Some(h) => Some(h),
            None => {
                return bad_request(
                    reason::BAD_CURSOR,
                    "cursor",
                    "cursor was not issued by GET /v1/devices",
                )
                .into_response()
            }
        },
    };
    match blocking(&state, move |m| m.production_devices(after.as_ref(), limit)).await {
        Ok(Ok(mut page)) => {
            page.devices.truncate(limit);
            let next_cursor = if page.more {
                page.devices.last().map(|d| encode_devices_cursor(&d.id))
            } else {
                None
            };
            Json(DevicesPageView {
                devices: page.devices,
                next_cursor,
            })
            .into_response()
        }
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_only_fit_their_query() {
        let c = encode_series_cursor(CURSOR_DEVICE, 3600, 0, 7200, 900);
        assert_eq!(
            decode_series_cursor(&c, CURSOR_DEVICE, 0, 7200, 900),
            Some(3600)
        );
        assert_eq!(decode_series_cursor(&c, CURSOR_REGION, 0, 7200, 900), None);
        assert_eq!(decode_series_cursor(&c, CURSOR_DEVICE, 0, 7200, 300), None);
        assert_eq!(
            decode_series_cursor(&c, CURSOR_DEVICE, 900, 7200, 900),
            None
        );
        assert_eq!(
            decode_series_cursor("zz", CURSOR_DEVICE, 0, 7200, 900),
            None
        );
        let d = encode_devices_cursor(&Hex32([7; 32]));
        assert_eq!(decode_devices_cursor(&d), Some(Hex32([7; 32])));
        assert_eq!(decode_devices_cursor(&c), None);
    }

    #[test]
    fn query_strings_are_checked() {
        let uri: Uri = "/x?from=2024-05-01T00%3A00%3A00Z&limit=5"
            .parse()
            .unwrap_or_default();
        let p = query_params(&uri, &["from", "limit"]).map_err(|p| p.reason);
        assert_eq!(
            p,
            Ok(vec![
                ("from", "2024-05-01T00:00:00Z".to_string()),
                ("limit", "5".to_string())
            ])
        );
        let dup: Uri = "/x?limit=1&limit=2".parse().unwrap_or_default();
        assert_eq!(
            query_params(&dup, &["limit"]).map_err(|p| p.reason),
            Err(reason::UNKNOWN_PARAMETER.to_string())
        );
        let bad: Uri = "/x?limit=%zz".parse().unwrap_or_default();
        assert_eq!(
            query_params(&bad, &["limit"]).map_err(|p| p.reason),
            Err(reason::BAD_QUERY.to_string())
        );
    }
}
