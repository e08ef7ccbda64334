//! Storage audits: data commitments, retrievability proofs the ledger verifies itself, and
//! faults (failing proofs, missed deadlines) that suspend, then slash (see
//! [`crate::storage`] for the state machine).
//!
//! Cost bounds. `CommitStorage` is a plain transaction (≤ 16 KiB, a few map reads).
//! `SubmitStorageProof` carries at most `max_storage_proof_bytes`; before the STARK is looked
//! at, the ledger checks (cheaply) the signer owns the device, the epoch is inside its
//! window, no outcome is recorded yet for (epoch, device), and the statement is exactly the
//! ledger's challenge (root, depth, chunk count, seed, `k`). So the verifier only ever runs on
//! a trace of `next_pow2(storage_challenge_k) · 512` rows at the committed depth (≤ 44), and
//! at most once per (epoch, device): its result (pass or fault) is recorded and any further
//! proof for that pair is a cheap duplicate.

use groundtruth_device_sdk::DeviceId;
use groundtruth_proofs::{por::CHUNK_SIZE, verify_retrievability, ProofEnvelope, Statement};

use crate::error::TxError;
use crate::evidence::{SlashEvidence, MAX_REASON_LEN};
use crate::storage::{
    StorageAudit, StorageCommitment, StorageFault, StorageFaultKind, StorageOutcome,
    LEDGER_REPORTER,
};
use crate::tx::TxBody;
use crate::types::*;

use super::evidence::{plan_slash, SlashPlan};
use super::*;

/// Checks a `CommitStorage` or `SubmitStorageProof`; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    match body {
        TxBody::CommitStorage {
            device,
            root,
            depth,
            num_chunks,
        } => commit_storage(stage.state, signer, device, *root, *depth, *num_chunks, ctx),
        TxBody::SubmitStorageProof {
            epoch,
            device,
            proof,
        } => submit_proof(stage, signer, *epoch, device, proof, ctx),
        _ => Err(TxError::Malformed("not a storage transaction")),
    }
}

fn commit_storage(
    st: &State,
    signer: Address,
    device: &DeviceId,
    root: [u8; 32],
    depth: u8,
    num_chunks: u64,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let d = st.devices.get(device).ok_or(TxError::UnknownDevice)?;
    if d.owner != Some(signer) {
        return Err(TxError::NotDeviceOwner);
    }
    match d.status {
        DeviceStatus::Active => {}
        DeviceStatus::Retired => return Err(TxError::DeviceRetired),
        DeviceStatus::Suspended => return Err(TxError::DeviceSuspended),
    }
    if d.kind != DeviceKind::Storage {
        return Err(TxError::NotStorageDevice);
    }
    if st.storage_key_of(d).is_some() {
        return Err(TxError::StorageCommitted);
    }
    // The ranges the retrievability AIR supports (depth 1..=44, 1..=2^depth chunks, a
    // canonical root), checked by the proofs crate's own rule.
    let probe = groundtruth_proofs::Challenge {
        root,
        depth,
        num_chunks,
        seed: [0; 32],
        k: 1,
    };
    probe.validate().map_err(|e| match e {
        groundtruth_proofs::ProofError::InvalidPublicInputs(m) => {
            TxError::InvalidStorageCommitment(m)
        }
        _ => TxError::InvalidStorageCommitment("out of range"),
    })?;
    let rec = StorageCommitment {
        device: *device,
        owner: signer,
        root,
        depth,
        num_chunks,
        since_epoch: st.epoch,
        committed_at: ctx.height,
        closed_from: None,
        slashed: false,
        faults: Vec::new(),
    };
    Ok(Box::new(move |st, ev| {
        ev.push(Event::StorageCommitted {
            device: rec.device,
            owner: rec.owner,
            root: rec.root,
            num_chunks: rec.num_chunks,
        });
        st.storage.insert(rec.device, rec);
    }))
}

fn submit_proof(
    stage: &mut Stage<'_>,
    signer: Address,
    epoch: Epoch,
    device: &DeviceId,
    proof: &[u8],
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    let d = st.device_by_any_key(device).ok_or(TxError::UnknownDevice)?;
    if d.owner != Some(signer) {
        return Err(TxError::NotDeviceOwner);
    }
    let key = st.storage_key_of(d).ok_or(TxError::NoStorageCommitment)?;
    let rec = st.storage.get(&key).ok_or(TxError::NoStorageCommitment)?;
    let out_of_window = TxError::StorageEpoch {
        current: st.epoch,
        got: epoch,
    };
    if epoch >= st.epoch || st.epoch > epoch.saturating_add(p.storage_deadline_epochs) {
        return Err(out_of_window);
    }
    let seal = st.seals.get(&epoch).ok_or(out_of_window)?;
    if !rec.challenged(epoch) {
        return Err(TxError::NotChallenged);
    }
    if st.storage_audits.contains_key(&(epoch, key)) {
        return Err(TxError::DuplicateAudit);
    }
    let max = p.max_storage_proof_bytes;
    if proof.len() > usize::try_from(max).unwrap_or(usize::MAX) {
        return Err(TxError::ProofTooLarge {
            max,
            got: proof.len(),
        });
    }
    // Cheap checks first: the statement must be exactly the ledger's challenge.
    let env = ProofEnvelope::from_bytes(proof)
        .map_err(|_| TxError::StorageMismatch("envelope does not decode"))?;
    let Statement::Retrievability(s) = &env.statement else {
        return Err(TxError::StorageMismatch("not a retrievability proof"));
    };
    let challenge = rec.challenge(&seal.beacon, epoch, p.storage_challenge_k);
    let mismatch = if s.seed != challenge.seed {
        Some("seed is not the ledger's")
    } else if s.root != challenge.root {
        Some("root is not the committed one")
    } else if s.depth != challenge.depth {
        Some("depth is not the committed one")
    } else if s.num_chunks != challenge.num_chunks {
        Some("chunk count is not the committed one")
    } else if s.k != challenge.k {
        Some("k is not storage_challenge_k")
    } else if usize::try_from(s.chunk_size).ok() != Some(CHUNK_SIZE) {
        Some("chunk size")
    } else {
        None
    };
    if let Some(m) = mismatch {
        return Err(TxError::StorageMismatch(m));
    }
    let proof_digest = *blake3::hash(proof).as_bytes();
    let height = ctx.height;
    match verify_retrievability(&env) {
        Ok(_) => {
            let audit = StorageAudit {
                epoch,
                device: key,
                outcome: StorageOutcome::Passed,
                proof_digest,
                height,
            };
            Ok(Box::new(move |st, ev| {
                st.storage_audits.insert((epoch, key), audit);
                ev.push(Event::StorageProofVerified {
                    epoch,
                    device: key,
                    owner: signer,
                });
            }))
        }
        Err(e) => {
            // The proof answers the ledger's challenge but does not verify: a fault. Anyone
            // re-running the verifier on this transaction's bytes gets the same failure.
            let mut reason = e.to_string();
            super::audits::truncate_at_char(&mut reason, MAX_REASON_LEN);
            let audit = StorageAudit {
                epoch,
                device: key,
                outcome: StorageOutcome::Failed { reason },
                proof_digest,
                height,
            };
            let fault = StorageFault {
                epoch,
                kind: StorageFaultKind::BadProof { proof_digest },
            };
            let plan = plan_fault(stage, key, fault, Some(audit), ctx)?;
            Ok(Box::new(move |st, ev| plan.commit(st, ev)))
        }
    }
}

/// A fault, computed in the check phase: the outcome recorded, the commitment with the fault
/// appended, the device to suspend, and the slash when the count reached the threshold.
pub(super) struct FaultPlan {
    key: DeviceId,
    fault: StorageFault,
    audit: Option<StorageAudit>,
    record: StorageCommitment,
    suspend: Option<DeviceId>,
    slash: Option<SlashPlan>,
}

/// Plans one fault against the commitment kept under `key` (with the epoch's challenge outcome
/// to record, for a proof's fault; `None` for a fault that is not the proof's, e.g. a failed
/// spot retrieval): at `storage_faults_to_suspend`
/// faults the device (if still active) is suspended; at `storage_faults_to_slash` its owner's
/// provider stake is slashed `slash_storage_fault_bp` with the faults as the evidence
/// (reporter: [`LEDGER_REPORTER`]) and the commitment stops being challenged.
pub(super) fn plan_fault(
    stage: &mut Stage<'_>,
    key: DeviceId,
    fault: StorageFault,
    audit: Option<StorageAudit>,
    ctx: &BlockContext,
) -> core::result::Result<FaultPlan, TxError> {
    let st = stage.state;
    let p = &st.params;
    let mut record = st
        .storage
        .get(&key)
        .cloned()
        .ok_or(TxError::NoStorageCommitment)?;
    // Bounded: a commitment is slashed (and no longer challenged) at
    // `storage_faults_to_slash` ≤ 64 faults.
    record.faults.push(fault);
    let n = u32::try_from(record.faults.len()).map_err(|_| TxError::Overflow)?;
    let suspend = if n >= p.storage_faults_to_suspend {
        st.device_by_any_key(&key)
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| d.id)
    } else {
        None
    };
    let slash = if n >= p.storage_faults_to_slash {
        record.slashed = true;
        Some(plan_slash(
            stage,
            Offender::Provider(record.owner),
            SlashReason::FailedRetrievability,
            p.slash_storage_fault_bp,
            LEDGER_REPORTER,
            SlashEvidence::StorageFaults {
                device: key,
                root: record.root,
                faults: record.faults.clone(),
            },
            ctx,
        )?)
    } else {
        None
    };
    Ok(FaultPlan {
        key,
        fault,
        audit,
        record,
        suspend,
        slash,
    })
}

impl FaultPlan {
    pub(super) fn commit(self, st: &mut State, ev: &mut Vec<Event>) {
        let faults = u32::try_from(self.record.faults.len()).unwrap_or(u32::MAX);
        let owner = self.record.owner;
        if let Some(audit) = self.audit {
            st.storage_audits
                .insert((self.fault.epoch, self.key), audit);
        }
        st.storage.insert(self.key, self.record);
        ev.push(Event::StorageFault {
            epoch: self.fault.epoch,
            device: self.key,
            owner,
            kind: self.fault.kind,
            faults,
        });
        if let Some(id) = self.suspend {
            if let Some(d) = st.devices.get_mut(&id) {
                d.status = DeviceStatus::Suspended;
            }
            ev.push(Event::DeviceSuspended { device: id });
        }
        if let Some(plan) = self.slash {
            plan.commit(st, ev);
        }
    }
}

/// At the end of epoch `X`: every commitment challenged for epoch `X − storage_deadline_epochs`
/// with no recorded outcome for it gets a missed-deadline fault (in commitment-key order, so
/// two devices of one provider are slashed one after the other, each on the stake the first
/// left). Cannot fail: a fault whose slash cannot be planned (an overflow, impossible while the
/// supply fits in `u64`) is skipped.
pub(super) fn missed_deadlines(state: &mut State, events: &mut Vec<Event>) {
    let Some(due) = state
        .epoch
        .checked_sub(state.params.storage_deadline_epochs)
    else {
        return;
    };
    let missed: Vec<DeviceId> = state
        .storage
        .iter()
        .filter(|(k, c)| c.challenged(due) && !state.storage_audits.contains_key(&(due, **k)))
        .map(|(k, _)| *k)
        .collect();
    let height = state.height;
    let ctx = BlockContext {
        height,
        proposer: None,
    };
    for key in missed {
        let audit = StorageAudit {
            epoch: due,
            device: key,
            outcome: StorageOutcome::Missed,
            proof_digest: [0; 32],
            height,
        };
        let fault = StorageFault {
            epoch: due,
            kind: StorageFaultKind::Missed,
        };
        let planned = {
            let mut stage = Stage::new(state);
            plan_fault(&mut stage, key, fault, Some(audit), &ctx)
                .map(|plan| (plan, stage.balances, stage.burned))
        };
        let Ok((plan, balances, burned)) = planned else {
            continue;
        };
        for (a, b) in balances {
            state.accounts.entry(a).or_default().balance = b;
        }
        state.supply.burned = state.supply.burned.saturating_add(burned);
        plan.commit(state, events);
    }
}
