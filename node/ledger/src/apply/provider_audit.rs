//! Committee-decided provider audits: `RegisterGpuSpec` and `ReportProviderAudit` (see
//! [`crate::provider_audit`] for who triggers what, the committee and the outcomes).
//!
//! Cost bounds. Both are plain transactions (≤ 16 KiB). A report costs a committee draw
//! (O(committee × validators)), a scan of the round's reports (≤ 64) and, when it decides a
//! failure, one fault or one slash plan.

use crate::error::TxError;
use crate::evidence::SlashEvidence;
use crate::provider_audit::{
    check_model, lower_median, GpuSpec, ProviderAuditDecision, ProviderAuditKind,
    ProviderAuditReport, ProviderAuditRound,
};
use crate::storage::{StorageFault, StorageFaultKind, LEDGER_REPORTER};
use crate::tx::TxBody;
use crate::types::*;

use super::evidence::{plan_slash, SlashPlan};
use super::storage::{plan_fault, FaultPlan};
use super::*;

/// Checks a `RegisterGpuSpec` or `ReportProviderAudit`; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    match body {
        TxBody::RegisterGpuSpec {
            device,
            model,
            count,
            claimed_mac_per_s,
        } => register_spec(
            stage.state,
            signer,
            device,
            model,
            *count,
            *claimed_mac_per_s,
        ),
        TxBody::ReportProviderAudit {
            epoch,
            device,
            kind,
            passed,
            seed,
            response_digest,
            elapsed_ms,
            measured_per_s,
        } => {
            let report = ProviderAuditReport {
                validator: signer,
                passed: *passed,
                response_digest: *response_digest,
                elapsed_ms: *elapsed_ms,
                measured_per_s: *measured_per_s,
                height: ctx.height,
            };
            check_report(stage, *epoch, device, *kind, seed, report, ctx)
        }
        _ => Err(TxError::Malformed("not a provider audit transaction")),
    }
}

fn register_spec(
    st: &State,
    signer: Address,
    device: &DeviceId,
    model: &str,
    count: u32,
    claimed_mac_per_s: u64,
) -> core::result::Result<Commit, TxError> {
    let d = st.device_by_any_key(device).ok_or(TxError::UnknownDevice)?;
    if d.owner != Some(signer) {
        return Err(TxError::NotDeviceOwner);
    }
    if d.kind != DeviceKind::Gpu {
        return Err(TxError::WrongDeviceKind {
            expected: DeviceKind::Gpu,
            found: d.kind,
        });
    }
    match d.status {
        DeviceStatus::Active => {}
        DeviceStatus::Retired => return Err(TxError::DeviceRetired),
        DeviceStatus::Suspended => return Err(TxError::DeviceSuspended),
    }
    let model = check_model(model.to_owned())?;
    if count == 0 || claimed_mac_per_s == 0 {
        return Err(TxError::ZeroCapacity);
    }
    let key = st.gpu_spec_key_of(d).unwrap_or(d.id);
    let spec = GpuSpec {
        device: key,
        owner: signer,
        model,
        count,
        claimed_mac_per_s,
        since_epoch: st.epoch,
    };
    Ok(Box::new(move |st, ev| {
        ev.push(Event::GpuSpecRegistered {
            device: key,
            owner: signer,
            claimed_mac_per_s,
        });
        st.gpu_specs.insert(key, spec);
    }))
}

/// What a deciding failure does.
enum Consequence {
    None,
    Fault(Box<FaultPlan>),
    /// The slash, and the device (its current key) suspended with it: a GPU that returned a
    /// wrong product is no longer challenged (nor slashed again each epoch) until its owner
    /// registers it anew.
    SlashAndSuspend(Box<SlashPlan>, DeviceId),
}

fn check_report(
    stage: &mut Stage<'_>,
    epoch: Epoch,
    device: &DeviceId,
    kind: ProviderAuditKind,
    seed: &[u8; 32],
    report: ProviderAuditReport,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let signer = report.validator;
    super::staking::active_validator(st, &signer)?;
    let out_of_window = TxError::ProviderAuditEpoch {
        current: st.epoch,
        got: epoch,
    };
    let window_end = epoch.saturating_add(st.params.attestation_window_epochs);
    if epoch >= st.epoch || st.epoch > window_end {
        return Err(out_of_window);
    }
    let seal = st.seals.get(&epoch).ok_or(out_of_window)?;
    let d = st.device_by_any_key(device).ok_or(TxError::UnknownDevice)?;
    let device_id = d.id;
    if d.kind != kind.device_kind() {
        return Err(TxError::WrongDeviceKind {
            expected: kind.device_kind(),
            found: d.kind,
        });
    }
    // The record key, the owner, and (GPU) the claim and the deadline.
    let (key, owner, claim) = match kind {
        ProviderAuditKind::Retrieval => {
            let key = st.storage_key_of(d).ok_or(TxError::NoStorageCommitment)?;
            let rec = st.storage.get(&key).ok_or(TxError::NoStorageCommitment)?;
            if !rec.challenged(epoch) {
                return Err(TxError::NotChallenged);
            }
            (key, rec.owner, None)
        }
        ProviderAuditKind::GpuCapacity => {
            let key = st.gpu_spec_key_of(d).ok_or(TxError::NoGpuSpec)?;
            let spec = st.gpu_specs.get(&key).ok_or(TxError::NoGpuSpec)?;
            let ch = st
                .gpu_challenge(epoch, device)
                .ok_or(TxError::NotChallenged)?;
            if report.passed && report.elapsed_ms > ch.deadline_ms {
                return Err(TxError::ProviderAuditMismatch("a pass after the deadline"));
            }
            (key, spec.owner, Some(spec.claimed_mac_per_s))
        }
    };
    if st.provider_audit_seed(epoch, device, kind) != Some(*seed) {
        return Err(TxError::ProviderAuditMismatch("seed is not the ledger's"));
    }
    let committee = st.provider_audit_committee(epoch, device);
    if !committee.contains(&signer) {
        return Err(TxError::NotInCommittee);
    }
    let mut round = st
        .provider_audits
        .get(&(epoch, key, kind))
        .cloned()
        .unwrap_or(ProviderAuditRound {
            epoch,
            device: key,
            kind,
            owner,
            seed: *seed,
            reports: Vec::new(),
            decision: None,
        });
    if round.reports.iter().any(|r| r.validator == signer) {
        return Err(TxError::DuplicateReport);
    }
    // Bounded: one report per committee member, ≤ provider_committee_size ≤ 64.
    round.reports.push(report);

    let mut consequence = Consequence::None;
    let mut newly_decided = None;
    if round.decision.is_none() {
        let total: u128 = committee.iter().map(|a| u128::from(seal.power_of(a))).sum();
        let agreeing: Vec<ProviderAuditReport> = round
            .reports
            .iter()
            .filter(|r| r.passed == report.passed)
            .copied()
            .collect();
        let weight: u128 = agreeing
            .iter()
            .map(|r| u128::from(seal.power_of(&r.validator)))
            .sum();
        if reaches_two_thirds(weight, total) {
            let median = lower_median(agreeing.iter().map(|r| r.measured_per_s).collect());
            let below_spec = report.passed && claim.is_some_and(|c| median < c);
            let decision = ProviderAuditDecision {
                passed: report.passed,
                height: ctx.height,
                median_measured_per_s: median,
                below_spec,
            };
            round.decision = Some(decision);
            newly_decided = Some(decision);
            if !report.passed {
                consequence = match kind {
                    ProviderAuditKind::Retrieval => {
                        let fault = StorageFault {
                            epoch,
                            kind: StorageFaultKind::RetrievalFailed,
                        };
                        Consequence::Fault(Box::new(plan_fault(stage, key, fault, None, ctx)?))
                    }
                    ProviderAuditKind::GpuCapacity => Consequence::SlashAndSuspend(
                        Box::new(plan_slash(
                            stage,
                            Offender::Provider(owner),
                            SlashReason::FailedGpuChallenge,
                            st.params.slash_failed_gpu_bp,
                            LEDGER_REPORTER,
                            SlashEvidence::ProviderAudit {
                                epoch,
                                device: key,
                                kind,
                                seed: *seed,
                                reports: agreeing,
                            },
                            ctx,
                        )?),
                        device_id,
                    ),
                };
            }
        }
    }
    Ok(Box::new(move |st, ev| {
        ev.push(Event::ProviderAuditReported {
            epoch,
            device: key,
            kind,
            validator: signer,
            passed: report.passed,
        });
        st.provider_audits.insert((epoch, key, kind), round);
        if let Some(dec) = newly_decided {
            ev.push(Event::ProviderAuditDecided {
                epoch,
                device: key,
                kind,
                owner,
                passed: dec.passed,
                below_spec: dec.below_spec,
                median_measured_per_s: dec.median_measured_per_s,
            });
        }
        match consequence {
            Consequence::None => {}
            Consequence::Fault(plan) => plan.commit(st, ev),
            Consequence::SlashAndSuspend(plan, id) => {
                plan.commit(st, ev);
                if let Some(d) = st.devices.get_mut(&id) {
                    if d.status == DeviceStatus::Active {
                        d.status = DeviceStatus::Suspended;
                        ev.push(Event::DeviceSuspended { device: id });
                    }
                }
            }
        }
    }))
}
