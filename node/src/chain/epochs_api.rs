//! Epoch routes, merged into the node's API router: what the ledger decided about each epoch
//! (seal, attestations, agreed batches, verified totals, commitment, slashes) and the evidence
//! behind it (the audit proofs from committed blocks, the signed frames behind a batch), so
//! `groundtruth verify` and anyone else can recheck an epoch without trusting this node.
//!
//! | route | answer |
//! |---|---|
//! | `GET /v1/epochs` | `{current, committed: [last 64 committed epochs]}` |
//! | `GET /v1/epochs/{n}` | [`EpochView`] |
//! | `GET /v1/epochs/{n}/proofs/{auditor}` | the verified proof envelope of that batch (bytes) |
//! | `GET /v1/epochs/{n}/frames/{auditor}` | the batch's signed frames, `(u32 BE len ‖ frame)*` |
//! | `GET /v1/epochs/{n}/l1-signature` | this validator's L1 signatures for anchoring epoch `n` ([`crate::oracle::L1SignatureView`]) |

use std::sync::Arc;

use axum::extract::{Path, State as AxumState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use groundtruth_api::Problem;
use groundtruth_ledger::{Address, AuditSubject, Epoch, Offender, State};
use serde::Serialize;

use super::Core;

/// Committed epochs `/v1/epochs` lists (the most recent).
const LISTED_COMMITTED: usize = 64;

/// Store scans (a batch's frames, late readings) running at once; more are refused with 503
/// (frames) or answered without the late count, so no client can keep the store busy.
static STORE_SCANS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// `GET /v1/epochs`.
#[derive(Debug, Serialize)]
pub struct EpochsView {
    /// The ledger's current epoch.
    pub current: Epoch,
    /// The most recent committed epochs, ascending.
    pub committed: Vec<Epoch>,
}

/// An epoch's reading-time window.
#[derive(Debug, Serialize)]
pub struct WindowView {
    /// First second.
    pub start_s: u64,
    /// First second after.
    pub end_s: u64,
}

/// A committee member.
#[derive(Debug, Serialize)]
pub struct MemberView {
    /// Operator.
    pub operator: String,
    /// Voting power.
    pub power: u64,
}

/// An attestation held (within its window).
#[derive(Debug, Serialize)]
pub struct AttestationView {
    /// Operator.
    pub validator: String,
    /// Root attested.
    pub readings_root: String,
    /// Readings under it.
    pub readings: u64,
}

/// A verified audit of a batch.
#[derive(Debug, Serialize)]
pub struct BatchAuditView {
    /// Operator that submitted the proof.
    pub prover: String,
    /// blake3 of the envelope.
    pub proof_digest: String,
    /// Height of the block that verified it.
    pub height: u64,
}

/// An agreed batch.
#[derive(Debug, Serialize)]
pub struct BatchView {
    /// Assigned auditor.
    pub auditor: String,
    /// Readings commitment.
    pub commitment: String,
    /// Readings in it.
    pub readings: u64,
    /// Its verified audit, once there is one.
    pub audit: Option<BatchAuditView>,
}

/// The agreed readings of an epoch.
#[derive(Debug, Serialize)]
pub struct ReadingsView {
    /// Readings root.
    pub root: String,
    /// Readings under it.
    pub readings: u64,
    /// Height of the block that fixed it.
    pub fixed_at_height: u64,
    /// Batches in auditor order.
    pub batches: Vec<BatchView>,
}

/// One device's verified total.
#[derive(Debug, Serialize)]
pub struct VerifiedView {
    /// Device id.
    pub device: String,
    /// `energy_output` (Wh) or `gpu_hours` (GPU-ms).
    pub kind: &'static str,
    /// Verified total.
    pub total: u64,
    /// Operator whose proof verified it.
    pub auditor: String,
    /// Digest of that proof.
    pub proof_digest: String,
}

/// The epoch commitment.
#[derive(Debug, Serialize)]
pub struct CommitmentView {
    /// What L1 anchors (`EpochCommitment::digest`).
    pub digest: String,
    /// Agreed readings root.
    pub readings_root: String,
    /// Root over verified totals.
    pub totals_root: String,
    /// Root over audit proof digests.
    pub proofs_root: String,
    /// Sealed state root.
    pub state_root: String,
    /// Batches agreed.
    pub batches: u32,
    /// Batches verified.
    pub audited_batches: u32,
    /// Readings under verified proofs.
    pub verified_readings: u64,
    /// Height that recorded it.
    pub height: u64,
}

/// A slash recorded during the epoch.
#[derive(Debug, Serialize)]
pub struct EpochSlashView {
    /// Slash id.
    pub id: u64,
    /// Offender address.
    pub offender: String,
    /// `validator` or `provider`.
    pub role: &'static str,
    /// Reason code.
    pub reason: &'static str,
    /// Amount burned.
    pub amount: u64,
    /// Height.
    pub height: u64,
    /// One-line explanation.
    pub explain: String,
}

/// `GET /v1/epochs/{n}`.
#[derive(Debug, Serialize)]
pub struct EpochView {
    /// The epoch.
    pub epoch: Epoch,
    /// Its window (timed epochs).
    pub window: Option<WindowView>,
    /// Whether it ended.
    pub sealed: bool,
    /// Height of the block that closed it.
    pub closed_at_height: Option<u64>,
    /// Sampling beacon.
    pub beacon: Option<String>,
    /// Committee that served in it.
    pub committee: Vec<MemberView>,
    /// Close votes so far (current epoch only).
    pub close_votes: Vec<String>,
    /// Attestations held.
    pub attestations: Vec<AttestationView>,
    /// Validators whose attestation differs from the agreed root.
    pub flagged: Vec<String>,
    /// Agreed readings, once fixed.
    pub readings: Option<ReadingsView>,
    /// Verified totals, while the ledger holds the epoch's audit records (the last
    /// `history_epochs` epochs); empty once they are pruned (see `audits_pruned`).
    pub verified: Vec<VerifiedView>,
    /// The ledger pruned this epoch's audit records (older than its `history_epochs` window):
    /// `verified` is empty whatever the epoch verified. Its commitment (`totals_root`,
    /// `proofs_root`) and the batches' proof digests stay, and the devices' production status
    /// (`/v1/production/…`) keeps what the node marked from them.
    pub audits_pruned: bool,
    /// Commitment, once recorded.
    pub commitment: Option<CommitmentView>,
    /// Slashes recorded in this epoch.
    pub slashes: Vec<EpochSlashView>,
    /// This node's view: readings of the window it received after it attested the epoch
    /// (late: kept in its store, not in the epoch's batches); `None` if it did not attest.
    pub late_readings: Option<u64>,
    /// Where the epoch is anchored on L1 (`null` until it is, or without the oracle service).
    pub l1: Option<crate::oracle::L1AnchorView>,
}

fn h(b: &[u8; 32]) -> String {
    hex::encode(b)
}

/// The view of `epoch` from `st`.
pub fn epoch_view(st: &State, epoch: Epoch) -> EpochView {
    let seal = st.epoch_seal(epoch);
    let readings = st.fixed_readings_root(epoch).map(|f| ReadingsView {
        root: h(&f.root),
        readings: f.readings,
        fixed_at_height: f.fixed_at_height,
        batches: f
            .batches
            .iter()
            .map(|(b, a)| BatchView {
                auditor: h(&b.auditor.0),
                commitment: h(&b.commitment),
                readings: b.readings,
                audit: a.map(|a| BatchAuditView {
                    prover: h(&a.prover.0),
                    proof_digest: h(&a.proof_digest),
                    height: a.height,
                }),
            })
            .collect(),
    });
    let verified = st
        .audits_for_epoch(epoch)
        .into_iter()
        .filter_map(|a| match a.subject {
            AuditSubject::Device(id) => Some(VerifiedView {
                device: h(&id.0),
                kind: a.kind.name(),
                total: a.work_units,
                auditor: h(&a.validator.0),
                proof_digest: h(&a.proof_digest),
            }),
            AuditSubject::Provider(_) => None,
        })
        .collect();
    let audits_pruned = st.history_pruned(epoch);
    let commitment = st.epoch_commitment(epoch).map(|c| CommitmentView {
        digest: h(&c.digest(st.chain_id())),
        readings_root: h(&c.readings_root),
        totals_root: h(&c.totals_root),
        proofs_root: h(&c.proofs_root),
        state_root: h(&c.state_root),
        batches: c.batches,
        audited_batches: c.audited_batches,
        verified_readings: c.verified_readings,
        height: c.height,
    });
    let slashes = st
        .slashes()
        .iter()
        .filter(|s| s.epoch == epoch)
        .map(|s| {
            let (offender, role) = match s.offender {
                Offender::Validator(a) => (a, "validator"),
                Offender::Provider(a) => (a, "provider"),
            };
            EpochSlashView {
                id: s.id,
                offender: h(&offender.0),
                role,
                reason: s.reason.code(),
                amount: s.amount,
                height: s.height,
                explain: s.explain(),
            }
        })
        .collect();
    EpochView {
        epoch,
        window: st
            .params()
            .epoch_window(epoch)
            .map(|(start_s, end_s)| WindowView { start_s, end_s }),
        sealed: seal.is_some(),
        closed_at_height: seal.map(|s| s.closed_at_height),
        beacon: seal.map(|s| h(&s.beacon)),
        committee: seal
            .map(|s| {
                s.committee
                    .iter()
                    .map(|(a, p)| MemberView {
                        operator: h(&a.0),
                        power: *p,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        close_votes: if epoch == st.epoch() {
            st.close_votes().map(|a| h(&a.0)).collect()
        } else {
            Vec::new()
        },
        attestations: st
            .attestations(epoch)
            .into_iter()
            .map(|a| AttestationView {
                validator: h(&a.validator.0),
                readings_root: h(&a.readings_root),
                readings: a.readings,
            })
            .collect(),
        flagged: st
            .flagged(epoch)
            .into_iter()
            .map(|a| h(&a.validator.0))
            .collect(),
        readings,
        verified,
        audits_pruned,
        commitment,
        slashes,
        late_readings: None,
        l1: None,
    }
}

/// The epoch routes over `core`.
pub(crate) fn routes(core: Arc<Core>) -> Router {
    Router::new()
        .route("/v1/epochs", get(list))
        .route("/v1/epochs/{n}", get(one))
        .route("/v1/epochs/{n}/proofs/{auditor}", get(proof))
        .route("/v1/epochs/{n}/frames/{auditor}", get(frames))
        .route("/v1/epochs/{n}/l1-signature", get(l1_signature))
        .with_state(core)
}

fn bad(reason: &str, detail: String) -> Response {
    Problem::new(StatusCode::BAD_REQUEST, reason, detail).into_response()
}

fn not_found(reason: &str, detail: String) -> Response {
    Problem::new(StatusCode::NOT_FOUND, reason, detail).into_response()
}

fn parse_epoch(n: &str) -> Result<Epoch, Box<Response>> {
    n.parse().map_err(|_| {
        Box::new(bad(
            "invalid_epoch",
            format!("{n:?} is not an epoch number"),
        ))
    })
}

fn parse_address(a: &str) -> Result<Address, Box<Response>> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(a, &mut out)
        .map(|()| Address(out))
        .map_err(|_| Box::new(bad("invalid_address", "expected 64 hex characters".into())))
}

async fn list(AxumState(core): AxumState<Arc<Core>>) -> Response {
    let l = core.shared.read();
    let st = &l.state;
    let current = st.epoch();
    let mut committed: Vec<Epoch> = (0..current)
        .rev()
        .filter(|e| st.epoch_commitment(*e).is_some())
        .take(LISTED_COMMITTED)
        .collect();
    committed.reverse();
    Json(EpochsView { current, committed }).into_response()
}

async fn one(AxumState(core): AxumState<Arc<Core>>, Path(n): Path<String>) -> Response {
    let epoch = match parse_epoch(&n) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    let view = {
        let l = core.shared.read();
        if epoch > l.state.epoch() {
            return not_found(
                "unknown_epoch",
                format!(
                    "epoch {epoch} has not started (current {})",
                    l.state.epoch()
                ),
            );
        }
        epoch_view(&l.state, epoch)
    };
    let mut view = view;
    view.l1 = core.shared.oracle.get().and_then(|o| o.anchor(epoch));
    if view.sealed {
        let permit = STORE_SCANS.try_acquire();
        if let (Some(store), Ok(_permit)) = (core.shared.ingest.get().cloned(), permit) {
            let c = core.clone();
            view.late_readings = tokio::task::spawn_blocking(move || {
                let l = c.shared.read();
                crate::audit::late_readings(&l.state, &store, epoch)
                    .ok()
                    .flatten()
            })
            .await
            .ok()
            .flatten();
        }
    }
    Json(view).into_response()
}

async fn l1_signature(AxumState(core): AxumState<Arc<Core>>, Path(n): Path<String>) -> Response {
    let epoch = match parse_epoch(&n) {
        Ok(e) => e,
        Err(r) => return *r,
    };
    match core.shared.oracle.get().and_then(|o| o.signature(epoch)) {
        Some(v) => Json(v).into_response(),
        None => not_found(
            "no_l1_signature",
            format!("this node has not signed epoch {epoch} for L1 (not committed, already anchored, or no oracle service)"),
        ),
    }
}

async fn proof(
    AxumState(core): AxumState<Arc<Core>>,
    Path((n, auditor)): Path<(String, String)>,
) -> Response {
    let (epoch, batch) = match (parse_epoch(&n), parse_address(&auditor)) {
        (Ok(e), Ok(a)) => (e, a),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let digest = {
        let l = core.shared.read();
        l.state.fixed_readings_root(epoch).and_then(|f| {
            f.batches
                .iter()
                .find(|(b, _)| b.auditor == batch)
                .and_then(|(_, a)| a.map(|a| a.proof_digest))
        })
    };
    let Some(digest) = digest else {
        return not_found(
            "no_verified_proof",
            format!("no verified proof of batch {auditor} in epoch {epoch}"),
        );
    };
    match core
        .shared
        .proofs
        .get(super::proof_key(epoch, &batch, &digest))
    {
        Ok(Some(bytes)) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            bytes.to_vec(),
        )
            .into_response(),
        Ok(None) => not_found(
            "proof_not_kept",
            "this node did not keep the proof (it joined after the block); ask another".into(),
        ),
        Err(e) => {
            tracing::warn!(target: "node::api", error = %e, "reading an audit proof failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "storage error",
            )
            .into_response()
        }
    }
}

async fn frames(
    AxumState(core): AxumState<Arc<Core>>,
    Path((n, auditor)): Path<(String, String)>,
) -> Response {
    let (epoch, batch) = match (parse_epoch(&n), parse_address(&auditor)) {
        (Ok(e), Ok(a)) => (e, a),
        (Err(r), _) | (_, Err(r)) => return *r,
    };
    let Some(store) = core.shared.ingest.get().cloned() else {
        return not_found("not_served", "this node keeps no readings".into());
    };
    if let Ok(Some(through)) = store.pruned_through_epoch() {
        if epoch <= through {
            return Problem::new(
                StatusCode::GONE,
                "pruned",
                format!("the raw readings of epoch {epoch} were pruned (retention keeps epochs after {through}); its commitment and proofs are kept"),
            )
            .into_response();
        }
    }
    let Ok(_permit) = STORE_SCANS.try_acquire() else {
        return Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "too many batch reads at once; retry shortly",
        )
        .retry_after(1)
        .into_response();
    };
    let core2 = core.clone();
    let built = tokio::task::spawn_blocking(move || {
        let l = core2.shared.read();
        let agreed = l
            .state
            .fixed_readings_root(epoch)
            .is_some_and(|f| f.batches.iter().any(|(b, _)| b.auditor == batch));
        agreed.then(|| crate::audit::batch_frames(&l.state, &store, epoch, &batch))
    })
    .await;
    match built {
        Ok(Some(Ok(frames))) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            groundtruth_api::encode_batch(&frames),
        )
            .into_response(),
        Ok(None) => not_found(
            "unknown_batch",
            format!("no agreed batch {auditor} in epoch {epoch}"),
        ),
        Ok(Some(Err(e))) => {
            tracing::warn!(target: "node::api", error = %e, "building a batch's frames failed");
            Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "storage error",
            )
            .into_response()
        }
        Err(_) => Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "task failed")
            .into_response(),
    }
}
