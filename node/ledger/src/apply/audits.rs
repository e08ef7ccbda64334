//! Audit proofs: the ledger verifies each agreed batch's metered-output proof itself.
//!
//! A `SubmitAuditProof` names an epoch and a batch (its assigned auditor). The ledger decodes
//! and verifies the STARK (deterministic; size bounded by `max_audit_proof_bytes`). A proof
//! that does not decode or does not verify is the evidence against its signer: the signer is
//! slashed `slash_invalid_proof_bp` and the batch stays open. A proof that verifies must match
//! the agreed batch exactly (commitment, reading count, epoch window) and describe only devices
//! the batch's auditor was drawn for, with each device's registered cap; then the ledger
//! records one verified [`AuditRecord`] per device (the verified total, capped by capacity
//! over the epoch) and marks the batch audited. When every batch of the epoch is audited, the
//! epoch commitment is recorded ([`record_commitment`]).

use std::collections::BTreeMap;

use groundtruth_device_sdk::DeviceId;
use groundtruth_proofs::{verify_metered, MeteredStatement, ProofEnvelope};

use crate::attestation::{proofs_root, totals_root, BatchAudit, EpochCommitment};
use crate::error::TxError;
use crate::evidence::{SlashEvidence, MAX_REASON_LEN};
use crate::sampling::Pool;
use crate::tx::TxBody;
use crate::types::*;

use super::evidence::plan_slash;
use super::*;

/// Checks a `SubmitAuditProof`; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    let TxBody::SubmitAuditProof {
        epoch,
        batch,
        proof,
    } = body
    else {
        return Err(TxError::Malformed("not an audit transaction"));
    };
    let (epoch, batch) = (*epoch, *batch);
    active_validator(st, &signer)?;
    if !p.timed_epochs() {
        return Err(TxError::UntimedEpochs);
    }
    let deadline = p.audit_deadline_epochs;
    let reassign_from = epoch.saturating_add(deadline).saturating_add(1);
    let last = epoch.saturating_add(deadline.saturating_mul(2));
    let out_of_window = TxError::AuditEpoch {
        current: st.epoch,
        got: epoch,
    };
    if epoch >= st.epoch || st.epoch > last {
        return Err(out_of_window);
    }
    let (start_s, end_s) = p.epoch_window(epoch).ok_or(out_of_window)?;
    let fixed = st.fixed_readings.get(&epoch).ok_or(TxError::UnknownBatch)?;
    let seal = st.seals.get(&epoch).ok_or(TxError::UnknownBatch)?;
    if seal.commitment.is_some() {
        return Err(TxError::DuplicateAudit);
    }
    let (index, agreed) = fixed
        .batches
        .iter()
        .enumerate()
        .find(|(_, (b, _))| b.auditor == batch)
        .map(|(i, (b, a))| (i, (*b, *a)))
        .ok_or(TxError::UnknownBatch)?;
    if agreed.1.is_some() {
        return Err(TxError::DuplicateAudit);
    }
    if signer != batch {
        if st.epoch < reassign_from {
            return Err(TxError::NotAssigned);
        }
        if seal.power_of(&signer) == 0 {
            return Err(TxError::NotInCommittee);
        }
    }
    let max = p.max_audit_proof_bytes;
    if proof.len() > usize::try_from(max).unwrap_or(usize::MAX) {
        return Err(TxError::ProofTooLarge {
            max,
            got: proof.len(),
        });
    }
    let proof_digest = *blake3::hash(proof).as_bytes();
    let verdict = ProofEnvelope::from_bytes(proof).and_then(|env| verify_metered(&env));
    let statement = match verdict {
        Ok(s) => s,
        Err(e) => {
            // The proof is the evidence: anyone re-running the verifier on this transaction's
            // bytes gets the same failure.
            let mut reason = e.to_string();
            truncate_at_char(&mut reason, MAX_REASON_LEN);
            let plan = plan_slash(
                stage,
                Offender::Validator(signer),
                SlashReason::InvalidProof,
                p.slash_invalid_proof_bp,
                signer,
                SlashEvidence::BadAuditProof {
                    epoch,
                    batch,
                    proof_digest,
                    reason: reason.clone(),
                },
                ctx,
            )?;
            return Ok(Box::new(move |st, ev| {
                ev.push(Event::AuditProofRejected {
                    epoch,
                    batch,
                    prover: signer,
                    reason,
                });
                plan.commit(st, ev);
            }));
        }
    };
    let (agreed_batch, _) = agreed;
    if statement.epoch.number != epoch
        || statement.epoch.start_s != start_s
        || statement.epoch.end_s != end_s
    {
        return Err(TxError::AuditMismatch("epoch window"));
    }
    if statement.commitment != agreed_batch.commitment {
        return Err(TxError::AuditMismatch("readings commitment"));
    }
    if statement.num_readings != agreed_batch.readings {
        return Err(TxError::AuditMismatch("reading count"));
    }
    let totals = device_totals(st, &statement, &batch, seal)?;

    let recorded_in_epoch = st.epoch;
    let height = ctx.height;
    let records: Vec<AuditRecord> = totals
        .into_iter()
        .filter(|(id, t)| {
            // With redundancy another batch may have verified the device already: counted once.
            st.audit(epoch, &AuditSubject::Device(*id), t.kind)
                .is_none()
        })
        .map(|(id, t)| AuditRecord {
            epoch,
            validator: signer,
            subject: AuditSubject::Device(id),
            kind: t.kind,
            result: AuditResult::Pass,
            proof_digest,
            work_units: t.total,
            height,
            recorded_in_epoch,
        })
        .collect();
    let readings = agreed_batch.readings;
    Ok(Box::new(move |st, ev| {
        let devices = records.len();
        for r in records {
            st.audits
                .entry(r.epoch)
                .or_default()
                .insert((r.subject, r.kind), r);
        }
        if let Some(mut f) = st.fixed_readings.get(&epoch).cloned() {
            if let Some(slot) = f.batches.get_mut(index) {
                slot.1 = Some(BatchAudit {
                    prover: signer,
                    proof_digest,
                    height,
                });
            }
            let done = f.fully_audited();
            st.fixed_readings.insert(epoch, f);
            ev.push(Event::AuditVerified {
                epoch,
                batch,
                prover: signer,
                devices: u64::try_from(devices).unwrap_or(u64::MAX),
                readings,
            });
            if done {
                record_commitment(st, epoch, height, ev);
            }
        }
    }))
}

/// What one device's runs in a statement add up to.
struct DeviceTotal {
    kind: AuditKind,
    total: u64,
}

/// Checks every device of a verified statement against the ledger (registered, metered kind,
/// the registered cap, drawn for `batch`, runs of one device adjacent, ascending and not
/// overlapping) and sums each device's runs, capped by its capacity over the epoch.
fn device_totals(
    st: &State,
    statement: &MeteredStatement,
    batch: &Address,
    seal: &crate::attestation::EpochSeal,
) -> core::result::Result<BTreeMap<DeviceId, DeviceTotal>, TxError> {
    let pool = Pool::new(&seal.committee);
    let mut out: BTreeMap<DeviceId, DeviceTotal> = BTreeMap::new();
    let mut previous: Option<&groundtruth_proofs::DeviceTotal> = None;
    for run in &statement.devices {
        let id = DeviceId(run.id);
        let device = st.devices.get(&id).ok_or(TxError::UnknownDevice)?;
        let kind = match device.kind {
            DeviceKind::Energy => AuditKind::EnergyOutput,
            DeviceKind::Gpu => AuditKind::GpuHours,
            DeviceKind::Storage => return Err(TxError::AuditMismatch("storage is not metered")),
        };
        let cap = device
            .kind
            .metered_cap(device.capacity, run.interval_len)
            .ok_or(TxError::AuditMismatch("capacity does not give a cap"))?;
        if run.cap != cap {
            return Err(TxError::AuditMismatch(
                "cap is not the registered capacity's",
            ));
        }
        match previous {
            Some(prev) if prev.id == run.id => {
                let prev_end = prev.interval_end().ok_or(TxError::Overflow)?;
                if run.first_seq <= prev.last_seq || run.first_interval_start < prev_end {
                    return Err(TxError::AuditMismatch("runs of a device overlap"));
                }
            }
            _ => {
                if out.contains_key(&id) {
                    return Err(TxError::AuditMismatch("a device's runs are not adjacent"));
                }
                let drawn = pool.draw(&seal.beacon, seal.epoch, &id, st.params.audit_redundancy);
                if !drawn.contains(batch) {
                    return Err(TxError::AuditMismatch("device not drawn for this batch"));
                }
            }
        }
        let entry = out.entry(id).or_insert(DeviceTotal { kind, total: 0 });
        entry.total = entry
            .total
            .checked_add(run.total)
            .ok_or(TxError::Overflow)?;
        // Capacity over the epoch: at most one full interval per interval of the window.
        let intervals = st.params.epoch_duration_s / u64::from(run.interval_len.max(1));
        entry.total = entry.total.min(cap.saturating_mul(intervals));
        previous = Some(run);
    }
    Ok(out)
}

pub(super) fn truncate_at_char(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut cut = max;
    while cut > 0 && !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
}

/// Records the commitment of `epoch` from what the state holds now: the fixed readings root
/// (zero if none), the verified totals and the audited batches' proof digests, the sealed state
/// root. Called when the last batch is verified, or at the boundary after the reassignment
/// window closed. Idempotent: an epoch is committed once.
pub(super) fn record_commitment(st: &mut State, epoch: Epoch, height: Height, ev: &mut Vec<Event>) {
    let Some(mut seal) = st.seals.get(&epoch).cloned() else {
        return;
    };
    if seal.commitment.is_some() {
        return;
    }
    let fixed = st.fixed_readings.get(&epoch);
    let (mut batches, mut audited, mut verified_readings) = (0u32, 0u32, 0u64);
    let mut proofs = Vec::new();
    if let Some(f) = fixed {
        for (b, a) in &f.batches {
            batches = batches.saturating_add(1);
            if let Some(a) = a {
                audited = audited.saturating_add(1);
                verified_readings = verified_readings.saturating_add(b.readings);
                proofs.push((b.auditor, a.proof_digest));
            }
        }
    }
    let totals: Vec<([u8; 32], AuditKind, u64)> = st
        .audits
        .get(&epoch)
        .into_iter()
        .flat_map(BTreeMap::values)
        .filter_map(|r| match r.subject {
            AuditSubject::Device(id) => Some((id.0, r.kind, r.work_units)),
            AuditSubject::Provider(_) => None,
        })
        .collect();
    let commitment = EpochCommitment {
        epoch,
        readings_root: fixed.map_or([0; 32], |f| f.root),
        totals_root: totals_root(epoch, totals.iter().map(|(id, k, t)| (id, *k, *t))),
        proofs_root: proofs_root(epoch, proofs.iter().map(|(a, d)| (a, d))),
        state_root: seal.state_root,
        batches,
        audited_batches: audited,
        verified_readings,
        height,
    };
    seal.commitment = Some(commitment);
    st.seals.insert(epoch, seal);
    ev.push(Event::EpochCommitted {
        epoch,
        digest: commitment.digest(&st.chain_id),
        audited_batches: audited,
        batches,
    });
}
