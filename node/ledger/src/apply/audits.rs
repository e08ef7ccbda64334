//! Audit records; failed retrievability and GPU audits slash the owning provider.

use crate::error::TxError;
use crate::evidence::SlashEvidence;
use crate::tx::TxBody;
use crate::types::*;

use super::evidence::plan_slash;
use super::*;

/// Checks a audit transaction; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    match body {
        TxBody::SubmitAudit {
            epoch,
            subject,
            kind,
            result,
            proof_digest,
            work_units,
        } => {
            active_validator(st, &signer)?;
            if !(*epoch == st.epoch || epoch.checked_add(1) == Some(st.epoch)) {
                return Err(TxError::AuditEpoch {
                    current: st.epoch,
                    got: *epoch,
                });
            }
            let owner = match subject {
                AuditSubject::Device(id) => {
                    let d = st.devices.get(id).ok_or(TxError::UnknownDevice)?;
                    if !kind.fits_device(d.kind) {
                        return Err(TxError::AuditSubjectMismatch);
                    }
                    d.owner
                }
                AuditSubject::Provider(a) => {
                    if !st.providers.contains_key(a) {
                        return Err(TxError::UnknownProvider);
                    }
                    if *kind != AuditKind::StorageRetrievability {
                        return Err(TxError::AuditSubjectMismatch);
                    }
                    Some(*a)
                }
            };
            if st.audit(*epoch, subject, *kind).is_some() {
                return Err(TxError::DuplicateAudit);
            }
            let record = AuditRecord {
                epoch: *epoch,
                validator: signer,
                subject: *subject,
                kind: *kind,
                result: *result,
                proof_digest: *proof_digest,
                work_units: *work_units,
                height: ctx.height,
                recorded_in_epoch: st.epoch,
            };
            let slash_reason = match (result, kind) {
                (AuditResult::Fail, AuditKind::StorageRetrievability) => Some((
                    SlashReason::FailedRetrievability,
                    p.slash_failed_retrievability_bp,
                )),
                (AuditResult::Fail, AuditKind::GpuCapacity) => {
                    Some((SlashReason::FailedGpuChallenge, p.slash_failed_gpu_bp))
                }
                _ => None,
            };
            let slash = match (slash_reason, owner) {
                (Some((reason, bp)), Some(owner)) => Some(plan_slash(
                    stage,
                    Offender::Provider(owner),
                    reason,
                    bp,
                    signer,
                    SlashEvidence::FailedAudit(record),
                    ctx,
                )?),
                _ => None,
            };
            Ok(Box::new(move |st, ev| {
                ev.push(Event::AuditRecorded {
                    epoch: record.epoch,
                    subject: record.subject,
                    kind: record.kind,
                    result: record.result,
                });
                st.audits
                    .entry(record.epoch)
                    .or_default()
                    .insert((record.subject, record.kind), record);
                if let Some(s) = slash {
                    s.commit(st, ev);
                }
            }))
        }
        _ => Err(TxError::Malformed("not an audit transaction")),
    }
}
