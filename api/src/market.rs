//! Certificates, network state and proof verification: the views, the model's request types
//! and the handlers of
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/certificates` | [`CertificatesPageView`]: hourly granular certificates, cursor-paginated |
//! | `GET /v1/certificates/{id}` | [`CertificateView`] |
//! | `GET /v1/validators` | [`NetworkValidatorsView`]: stake, power, jail state, L1 address |
//! | `GET /v1/slashes` | [`SlashesPageView`]: newest first, with reason codes and evidence |
//! | `GET /v1/providers` | [`ProvidersPageView`]: registered providers, cursor-paginated |
//! | `POST /v1/proofs/verify` | [`VerdictView`] of a proof envelope (and optionally its frames) |
//!
//! Every parameter is checked before the model is asked; refusals are problem+json naming the
//! parameter.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::model::ReadError;
use crate::problem::{reason, Problem};
use crate::server::{blocking, read_error, AppState};
use crate::time::{format_rfc3339, parse_rfc3339};
use crate::v1::{bad_request, param, parse_limit, query_params};
use crate::views::Hex32;

/// Default `limit` of the listing routes.
pub const DEFAULT_PAGE_LIMIT: usize = 100;
/// Largest `limit` of the listing routes.
pub const MAX_PAGE_LIMIT: usize = 500;
/// Longest certificate range one query may cover: 366 days.
pub const MAX_CERT_RANGE_S: u64 = 366 * 86_400;
/// Media type of a proof with its frames (`(u32 BE len ‖ bytes)*`: the envelope, then each
/// signed frame).
pub const PROOF_BUNDLE_TYPE: &str = "application/vnd.groundtruth.proof-bundle";

const CURSOR_VERSION: u8 = 1;
const CURSOR_CERTS: u8 = 4;
const CURSOR_SLASHES: u8 = 5;
const CURSOR_PROVIDERS: u8 = 6;

// ---------------------------------------------------------------------------------------------
// Views

/// Issuance status of a certificate (EnergyTag: `certificate_bundle_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateStatusView {
    /// Issued for anchored production and not withdrawn.
    Active,
}

/// One epoch's evidence behind a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateEvidenceView {
    /// Epoch whose commitment covers part of the hour.
    pub epoch: u64,
    /// blake3 digest of the audit proof the ledger verified.
    pub proof_digest: Hex32,
    /// L1 transaction that anchored the epoch commitment.
    pub l1_tx: Hex32,
    /// L1 block holding it.
    pub l1_block: u64,
    /// Where to download the proof envelope (when this node knows which batch it proves).
    pub proof_url: Option<String>,
    /// Where to download the signed frames behind it.
    pub frames_url: Option<String>,
}

/// An hourly energy attribute certificate, with the fields of an EnergyTag granular
/// certificate bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificateView {
    /// Unique certificate id: blake3("groundtruth/granular-certificate/v1" ‖ device ‖ hour
    /// start, u64 BE); the same on every node.
    pub id: Hex32,
    /// Production device id.
    pub device_id: Hex32,
    /// Start of the production interval, RFC 3339 UTC (inclusive).
    pub production_starting_interval: String,
    /// End of the production interval, RFC 3339 UTC (exclusive).
    pub production_ending_interval: String,
    /// Certified energy, Wh.
    pub face_value: u64,
    /// Energy carrier (`electricity`).
    pub energy_carrier: String,
    /// Energy source as registered (`unspecified` while the ledger registers none).
    pub energy_source: String,
    /// Technology type of the device as registered (`unspecified` while the ledger registers
    /// none).
    pub device_technology_type: String,
    /// Location: the device's region label (grid area or bidding zone; may be empty).
    pub device_location: String,
    /// Issuance status.
    pub certificate_bundle_status: CertificateStatusView,
    /// When this node issued it, RFC 3339 UTC.
    pub issuance_datestamp: String,
    /// Signed readings behind it.
    pub readings: u64,
    /// Energy of the hour this node holds that is not anchored and so not certified, Wh.
    pub unanchored_wh: u64,
    /// Epochs, proofs and L1 anchors behind it, by epoch.
    pub evidence: Vec<CertificateEvidenceView>,
}

/// `GET /v1/certificates`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CertificatesPageView {
    /// Certificates by production hour (then device).
    pub certificates: Vec<CertificateView>,
    /// Cursor of the next page (same query), when more follow.
    pub next_cursor: Option<String>,
}

/// A validator's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkValidatorView {
    /// Operator account.
    pub operator: Hex32,
    /// Consensus key.
    pub consensus_key: Hex32,
    /// Bonded self-stake.
    pub stake: u64,
    /// Stake delegated to it.
    pub delegated: u64,
    /// Voting power in the current set (0 when jailed or removed).
    pub power: u64,
    /// `active`, `jailed` or `removed`.
    pub status: String,
    /// Jailed until this epoch (when jailed).
    pub jailed_until_epoch: Option<u64>,
    /// Times jailed.
    pub jail_count: u32,
    /// Ethereum address of its L1 signing key (`0x…`), once registered.
    pub l1_address: Option<String>,
}

/// `GET /v1/validators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NetworkValidatorsView {
    /// Committed height read.
    pub height: u64,
    /// Current epoch.
    pub epoch: u64,
    /// Total voting power of the current set.
    pub total_power: u64,
    /// Every validator (active, jailed, removed), by operator.
    pub validators: Vec<NetworkValidatorView>,
}

/// The evidence a slash was decided on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlashEvidenceView {
    /// `device_equivocation`, `double_sign` or `bad_audit_proof`.
    pub kind: String,
    /// Device equivocation: the two signed frames (hex), anyone can recheck both signatures.
    pub frames: Vec<String>,
    /// Double sign: the validator's consensus key.
    pub validator_key: Option<Hex32>,
    /// Bad audit proof: the epoch of the batch.
    pub epoch: Option<u64>,
    /// Bad audit proof: the batch (its auditor).
    pub batch: Option<Hex32>,
    /// Bad audit proof: blake3 of the proof as submitted.
    pub proof_digest: Option<Hex32>,
    /// Bad audit proof: what the verifier said.
    pub verifier_said: Option<String>,
}

/// One slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlashEventView {
    /// Slash id (0, 1, 2, …).
    pub id: u64,
    /// Height of the block that applied it.
    pub height: u64,
    /// Epoch of that block.
    pub epoch: u64,
    /// Offender address.
    pub offender: Hex32,
    /// `validator` or `provider`.
    pub role: String,
    /// Stable reason code (`device_equivocation`, `failed_retrievability`,
    /// `failed_gpu_challenge`, `double_sign`, `invalid_proof`).
    pub reason: String,
    /// Amount burned.
    pub amount: u64,
    /// Account that submitted the evidence.
    pub reporter: Hex32,
    /// Whether the validator was jailed by it.
    pub jailed: bool,
    /// Whether the validator was removed by it.
    pub removed: bool,
    /// One-line explanation.
    pub explain: String,
    /// The evidence.
    pub evidence: SlashEvidenceView,
}

/// `GET /v1/slashes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SlashesPageView {
    /// Slashes, newest first.
    pub slashes: Vec<SlashEventView>,
    /// Cursor of the next (older) page, when more follow.
    pub next_cursor: Option<String>,
}

/// A registered provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderSummaryView {
    /// Provider account.
    pub address: Hex32,
    /// Bonded stake.
    pub stake: u64,
    /// Merkle root of the data it committed to (zero if none).
    pub data_root: Hex32,
    /// Height of registration (0: genesis).
    pub registered_at: u64,
    /// Devices it owns, per kind (`energy`, `gpu`, `storage`).
    pub devices: std::collections::BTreeMap<String, u64>,
}

/// `GET /v1/providers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProvidersPageView {
    /// Providers by address.
    pub providers: Vec<ProviderSummaryView>,
    /// Devices registered without an owner, per kind.
    pub unowned_devices: std::collections::BTreeMap<String, u64>,
    /// Cursor of the next page, when more follow.
    pub next_cursor: Option<String>,
}

/// One device's run in a verified statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictRunView {
    /// Device id.
    pub device: Hex32,
    /// Total of the run (Wh or GPU-ms).
    pub total: u64,
    /// Per-reading cap the proof enforces.
    pub cap: u64,
    /// First sequence number.
    pub first_seq: u64,
    /// Last sequence number.
    pub last_seq: u64,
    /// Interval length of its readings, seconds.
    pub interval_len_s: u32,
}

/// Where the ledger recorded this proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LedgerMatchView {
    /// The epoch.
    pub epoch: u64,
    /// The batch (its assigned auditor) whose verified audit has this proof's digest.
    pub batch: Hex32,
    /// Height of the block that verified it.
    pub height: u64,
}

/// `POST /v1/proofs/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VerdictView {
    /// Whether everything checked holds.
    pub valid: bool,
    /// What failed (absent when valid).
    pub failure: Option<String>,
    /// blake3 of the envelope (the ledger's proof digest).
    pub proof_digest: Hex32,
    /// The statement's epoch (when the proof verified).
    pub epoch: Option<u64>,
    /// Its window start, RFC 3339 UTC.
    pub window_start: Option<String>,
    /// Its window end, RFC 3339 UTC.
    pub window_end: Option<String>,
    /// Readings commitment the proof is about.
    pub commitment: Option<Hex32>,
    /// Readings it covers.
    pub readings: Option<u64>,
    /// Runs in batch order.
    pub runs: Vec<VerdictRunView>,
    /// Frames checked (signatures, recomputed commitment, count): `null` without frames.
    pub frames_checked: Option<u64>,
    /// The ledger's verified audit with this digest, if this node's ledger holds one.
    pub ledger: Option<LedgerMatchView>,
}

// ---------------------------------------------------------------------------------------------
// Model requests

/// A validated certificate listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificatesRequest {
    /// One device only.
    pub device: Option<Hex32>,
    /// First production hour start, Unix seconds.
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Resume after this (hour start, device).
    pub after: Option<(u64, Hex32)>,
    /// Most certificates.
    pub limit: usize,
}

/// A page of certificates from the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertificatesPage {
    /// At most the request's limit.
    pub certificates: Vec<CertificateView>,
    /// (hour start, device) of the last one, when more follow.
    pub next: Option<(u64, Hex32)>,
}

/// A page of slashes from the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlashesPage {
    /// Newest first.
    pub slashes: Vec<SlashEventView>,
    /// Whether older ones follow the last.
    pub more: bool,
}

/// A page of providers from the model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProvidersPage {
    /// By address.
    pub providers: Vec<ProviderSummaryView>,
    /// Devices without an owner, per kind.
    pub unowned_devices: std::collections::BTreeMap<String, u64>,
    /// Whether more follow the last.
    pub more: bool,
}

/// Why a proof could not be judged (a proof that does not verify is a verdict, not this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The envelope or the frames cannot be decoded: `422`, reason `bad_proof`.
    #[error("{0}")]
    Undecodable(String),
    /// Over the ledger's proof size limit: `413`.
    #[error("the proof is over the ledger's limit of {0} bytes")]
    TooLarge(usize),
    /// Not served or not now.
    #[error(transparent)]
    Read(#[from] ReadError),
}

// ---------------------------------------------------------------------------------------------
// Cursors

fn encode_cursor(kind: u8, parts: &[&[u8]]) -> String {
    let mut b = vec![CURSOR_VERSION, kind];
    for p in parts {
        b.extend_from_slice(p);
    }
    hex::encode(b)
}

fn decode_cursor(s: &str, kind: u8, len: usize) -> Option<Vec<u8>> {
    if s.len() > 256 {
        return None;
    }
    let b = hex::decode(s).ok()?;
    (b.len() == 2 + len && b.first() == Some(&CURSOR_VERSION) && b.get(1) == Some(&kind))
        .then(|| b.get(2..).map(<[u8]>::to_vec))
        .flatten()
}

fn u64_of(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

/// Certificate cursor: the (hour, device) of the last one and the query's (device?, from, to).
fn encode_cert_cursor(next: (u64, Hex32), q: &CertificatesRequest) -> String {
    let dev = q.device.map_or([0u8; 32], |d| d.0);
    encode_cursor(
        CURSOR_CERTS,
        &[
            &next.0.to_be_bytes(),
            &next.1 .0,
            &[u8::from(q.device.is_some())],
            &dev,
            &q.from.to_be_bytes(),
            &q.to.to_be_bytes(),
        ],
    )
}

fn decode_cert_cursor(s: &str, q: &CertificatesRequest) -> Option<(u64, Hex32)> {
    let b = decode_cursor(s, CURSOR_CERTS, 8 + 32 + 1 + 32 + 8 + 8)?;
    let hour = u64_of(&b)?;
    let device = Hex32(b.get(8..40)?.try_into().ok()?);
    let has = *b.get(40)? == 1;
    let dev = Hex32(b.get(41..73)?.try_into().ok()?);
    let from = u64_of(b.get(73..)?)?;
    let to = u64_of(b.get(81..)?)?;
    let same_device = match q.device {
        Some(d) => has && d == dev,
        None => !has,
    };
    (same_device && from == q.from && to == q.to && hour >= from && hour < to)
        .then_some((hour, device))
}

// ---------------------------------------------------------------------------------------------
// Handlers

fn hex32_param(params: &[(&str, String)], name: &str) -> Result<Option<Hex32>, Problem> {
    match param(params, name) {
        None => Ok(None),
        Some(s) => s.parse::<Hex32>().map(Some).map_err(|_| {
            bad_request(
                reason::BAD_KEY,
                name,
                format!("{name} must be 64 hex characters"),
            )
        }),
    }
}

fn hour_param(params: &[(&str, String)], name: &str) -> Result<u64, Problem> {
    let s = param(params, name).ok_or_else(|| {
        bad_request(
            reason::MISSING_PARAMETER,
            name,
            format!("{name} is required (RFC 3339 UTC on an hour, e.g. 2024-05-01T00:00:00Z)"),
        )
    })?;
    let t = parse_rfc3339(s)
        .map_err(|e| bad_request(reason::BAD_TIME, name, format!("{name}: {e}")))?;
    if t % 3600 != 0 {
        return Err(bad_request(
            reason::MISALIGNED_TIME,
            name,
            format!(
                "{name} must be on an hour (UTC), e.g. {}",
                format_rfc3339(t - t % 3600)
            ),
        ));
    }
    Ok(t)
}

fn certificates_request(uri: &Uri) -> Result<CertificatesRequest, Problem> {
    let params = query_params(uri, &["device", "from", "to", "limit", "cursor"])?;
    let device = hex32_param(&params, "device")?;
    let from = hour_param(&params, "from")?;
    let to = hour_param(&params, "to")?;
    if to <= from {
        return Err(bad_request(
            reason::BAD_RANGE,
            "to",
            "to must be after from",
        ));
    }
    if to - from > MAX_CERT_RANGE_S {
        return Err(bad_request(
            reason::RANGE_TOO_LARGE,
            "to",
            format!("a query covers at most {} days", MAX_CERT_RANGE_S / 86_400),
        ));
    }
    let limit = parse_limit(&params, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT)?;
    let mut q = CertificatesRequest {
        device,
        from,
        to,
        after: None,
        limit,
    };
    if let Some(c) = param(&params, "cursor") {
        q.after = Some(decode_cert_cursor(c, &q).ok_or_else(|| {
            bad_request(
                reason::BAD_CURSOR,
                "cursor",
                "cursor was not issued for this query (pass it with the same device, from and to)",
            )
        })?);
    }
    Ok(q)
}

/// Hourly granular certificates of anchored production.
#[utoipa::path(
    get,
    path = "/v1/certificates",
    tag = "certificates",
    params(
        ("device" = Option<Hex32>, Query, description = "Only this device's certificates (64 hex characters)"),
        ("from" = String, Query, description = "First production hour, RFC 3339 UTC on an hour", example = "2024-05-01T00:00:00Z"),
        ("to" = String, Query, description = "End of the range (exclusive), RFC 3339 UTC on an hour; at most 366 days after from", example = "2024-05-02T00:00:00Z"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Certificates per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page (same query)"),
    ),
    responses(
        (status = 200, description = "One page, by production hour then device", body = CertificatesPageView),
        (status = 400, description = "A parameter is invalid (reason and parameter say which)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served by this node", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "unavailable (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn certificates(State(state): State<AppState>, uri: Uri) -> Response {
    let q = match certificates_request(&uri) {
        Ok(q) => q,
        Err(p) => return p.into_response(),
    };
    match blocking(&state, move |m| m.certificates(&q)).await {
        Ok(Ok(mut page)) => {
            page.certificates.truncate(q.limit);
            Json(CertificatesPageView {
                next_cursor: page.next.map(|n| encode_cert_cursor(n, &q)),
                certificates: page.certificates,
            })
            .into_response()
        }
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// One certificate by id.
#[utoipa::path(
    get,
    path = "/v1/certificates/{id}",
    tag = "certificates",
    params(("id" = Hex32, Path, description = "Certificate id (64 hex characters)")),
    responses(
        (status = 200, description = "The certificate", body = CertificateView),
        (status = 400, description = "bad_key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "unknown_certificate, or not_served", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn certificate(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(id) = p.ok().and_then(|Path(s)| s.parse::<Hex32>().ok()) else {
        return bad_request(
            reason::BAD_KEY,
            "id",
            "certificate id must be 64 hex characters",
        )
        .into_response();
    };
    match blocking(&state, move |m| m.certificate(&id)).await {
        Ok(Ok(Some(c))) => Json(c).into_response(),
        Ok(Ok(None)) => Problem::new(
            StatusCode::NOT_FOUND,
            reason::UNKNOWN_CERTIFICATE,
            "no certificate with this id was issued by this node",
        )
        .into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Validators with stake, voting power, jail state and L1 address.
#[utoipa::path(
    get,
    path = "/v1/validators",
    tag = "network",
    responses(
        (status = 200, description = "Every validator", body = NetworkValidatorsView),
        (status = 400, description = "A parameter was given (this route takes none)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served (no ledger)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn validators(State(state): State<AppState>, uri: Uri) -> Response {
    if let Err(p) = query_params(&uri, &[]) {
        return p.into_response();
    }
    match blocking(&state, |m| m.network_validators()).await {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Slashing events, newest first, with reason codes and evidence.
#[utoipa::path(
    get,
    path = "/v1/slashes",
    tag = "network",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Slashes per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page, newest first", body = SlashesPageView),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served (no ledger)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn slashes(State(state): State<AppState>, uri: Uri) -> Response {
    let params = match query_params(&uri, &["limit", "cursor"]) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let limit = match parse_limit(&params, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let before = match param(&params, "cursor") {
        None => None,
        Some(c) => match decode_cursor(c, CURSOR_SLASHES, 8)
            .as_deref()
            .and_then(u64_of)
        {
            Some(id) => Some(id),
            None => {
                return bad_request(
                    reason::BAD_CURSOR,
                    "cursor",
                    "cursor was not issued by GET /v1/slashes",
                )
                .into_response()
            }
        },
    };
    match blocking(&state, move |m| m.slashes(before, limit)).await {
        Ok(Ok(mut page)) => {
            page.slashes.truncate(limit);
            let next_cursor = if page.more {
                page.slashes
                    .last()
                    .map(|s| encode_cursor(CURSOR_SLASHES, &[&s.id.to_be_bytes()]))
            } else {
                None
            };
            Json(SlashesPageView {
                slashes: page.slashes,
                next_cursor,
            })
            .into_response()
        }
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Registered providers with their stake and devices per kind.
#[utoipa::path(
    get,
    path = "/v1/providers",
    tag = "network",
    params(
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 500, description = "Providers per page, 1 to 500 (default 100)"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "One page, by address", body = ProvidersPageView),
        (status = 400, description = "A parameter is invalid", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served (no ledger)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn providers(State(state): State<AppState>, uri: Uri) -> Response {
    let params = match query_params(&uri, &["limit", "cursor"]) {
        Ok(p) => p,
        Err(p) => return p.into_response(),
    };
    let limit = match parse_limit(&params, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT) {
        Ok(l) => l,
        Err(p) => return p.into_response(),
    };
    let after = match param(&params, "cursor") {
        None => None,
        Some(c) => match decode_cursor(c, CURSOR_PROVIDERS, 32)
            .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        {
            Some(a) => Some(Hex32(a)),
            None => {
                return bad_request(
                    reason::BAD_CURSOR,
                    "cursor",
                    "cursor was not issued by GET /v1/providers",
                )
                .into_response()
            }
        },
    };
    match blocking(&state, move |m| m.providers(after.as_ref(), limit)).await {
        Ok(Ok(mut page)) => {
            page.providers.truncate(limit);
            let next_cursor = if page.more {
                page.providers
                    .last()
                    .map(|p| encode_cursor(CURSOR_PROVIDERS, &[&p.address.0]))
            } else {
                None
            };
            Json(ProvidersPageView {
                providers: page.providers,
                unowned_devices: page.unowned_devices,
                next_cursor,
            })
            .into_response()
        }
        Ok(Err(e)) => read_error(e, state.config.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

/// Verifies an audit proof envelope (and, with a bundle, the signed frames behind it).
///
/// `application/octet-stream`: the envelope alone: the STARK is verified and its statement
/// returned. `application/vnd.groundtruth.proof-bundle`: `(u32 BE len ‖ bytes)*`, the envelope
/// first, then each signed frame (as `GET /v1/epochs/{n}/frames/{auditor}` serves them): every
/// signature is checked and the commitment recomputed from the frames and compared with the
/// proof's. A proof that does not verify is a `200` verdict with `valid: false`.
#[utoipa::path(
    post,
    path = "/v1/proofs/verify",
    tag = "evidence",
    request_body(content = Vec<u8>, description = "The proof envelope, or a proof bundle", content_type = "application/octet-stream"),
    responses(
        (status = 200, description = "The verdict", body = VerdictView),
        (status = 400, description = "bad_body or bad_content_type", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "not_served", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "body_too_large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "bad_proof: the envelope or a frame cannot be decoded", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate_limited (Retry-After)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "busy: too many verifications at once (Retry-After)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub(crate) async fn verify(State(state): State<AppState>, req: Request) -> Response {
    let bundle = match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .as_deref()
    {
        Some("application/octet-stream") | None => false,
        Some(PROOF_BUNDLE_TYPE) => true,
        Some(_) => {
            return Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                reason::BAD_CONTENT_TYPE,
                format!("send application/octet-stream (the envelope) or {PROOF_BUNDLE_TYPE}"),
            )
            .into_response()
        }
    };
    let cfg = &state.config;
    let limit = if bundle {
        cfg.max_verify_body.max(cfg.max_proof_bytes)
    } else {
        cfg.max_proof_bytes
    };
    let Ok(permit) = state.verifies.clone().try_acquire_owned() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            reason::BUSY,
            "too many proof verifications in progress; retry later",
        )
        .retry_after(cfg.retry_after_secs)
        .into_response();
    };
    let body = match crate::server::read_body(&state, req, "the proof", limit).await {
        Ok(b) => b,
        Err(p) => return p.into_response(),
    };
    let (proof, frames) = if bundle {
        // A signed frame is well over 64 bytes: this bounds the list of entries, not the data.
        match crate::batch::decode_batch(&body, limit / 64 + 1, limit) {
            Ok(mut parts) if !parts.is_empty() => {
                let proof = parts.remove(0);
                (proof, Some(parts))
            }
            Ok(_) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    reason::BAD_BODY,
                    "the bundle is empty: the envelope comes first",
                )
                .into_response()
            }
            Err(e) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    reason::MALFORMED_BATCH,
                    format!("not a (u32 len ‖ bytes)* bundle: {e}"),
                )
                .into_response()
            }
        }
    } else {
        (body, None)
    };
    if proof.len() > cfg.max_proof_bytes {
        return Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            reason::BODY_TOO_LARGE,
            format!("the proof envelope is over {} bytes", cfg.max_proof_bytes),
        )
        .into_response();
    }
    let result = blocking(&state, move |m| m.verify_proof(proof, frames)).await;
    drop(permit);
    match result {
        Ok(Ok(v)) => Json(v).into_response(),
        Ok(Err(VerifyError::Undecodable(d))) => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, reason::BAD_PROOF, d).into_response()
        }
        Ok(Err(e @ VerifyError::TooLarge(_))) => Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            reason::BODY_TOO_LARGE,
            e.to_string(),
        )
        .into_response(),
        Ok(Err(VerifyError::Read(e))) => read_error(e, cfg.retry_after_secs).into_response(),
        Err(p) => p.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_cursors_only_fit_their_query() {
        let q = CertificatesRequest {
            device: None,
            from: 3600,
            to: 7 * 3600,
            after: None,
            limit: 10,
        };
        let c = encode_cert_cursor((7200, Hex32([3; 32])), &q);
        assert_eq!(decode_cert_cursor(&c, &q), Some((7200, Hex32([3; 32]))));
        let other_range = CertificatesRequest { to: 8 * 3600, ..q };
        assert_eq!(decode_cert_cursor(&c, &other_range), None);
        let one_device = CertificatesRequest {
            device: Some(Hex32([3; 32])),
            ..q
        };
        assert_eq!(decode_cert_cursor(&c, &one_device), None);
        assert_eq!(decode_cert_cursor("00", &q), None);
        let s = encode_cursor(CURSOR_SLASHES, &[&9u64.to_be_bytes()]);
        assert_eq!(
            decode_cursor(&s, CURSOR_SLASHES, 8)
                .as_deref()
                .and_then(u64_of),
            Some(9)
        );
        assert_eq!(decode_cursor(&s, CURSOR_PROVIDERS, 8), None);
    }
}
