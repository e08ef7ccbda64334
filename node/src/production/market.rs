//! The node's answers to the market routes of [`groundtruth_api::market`]: certificates from
//! the read model (linked to the proofs the ledger verified), validators, slashes and providers
//! copied out of the committed state, and proof verification with the same checks as
//! `groundtruth verify --frames F --proof P`.
//!
//! What it must not do: hold the ledger lock while verifying (the proof is verified first, the
//! ledger is read briefly afterwards), or trust anything in a submitted proof or frame.

use std::collections::BTreeMap;

use bytes::Bytes;
use groundtruth_api::market::{
    CertificateEvidenceView, CertificateStatusView, CertificateView, LedgerMatchView,
    NetworkValidatorView, NetworkValidatorsView, ProviderSummaryView, ProvidersPage,
    SlashEventView, SlashEvidenceView, SlashesPage, VerdictRunView, VerdictView, VerifyError,
};
use groundtruth_api::time::format_rfc3339;
use groundtruth_api::Hex32;
use groundtruth_device_sdk::{SignedReading, MAX_FRAME_LEN};
use groundtruth_ledger::{
    Address, DeviceKind, Evidence as LedgerEvidence, Offender, SlashEvidence, State,
    ValidatorStatus,
};
use groundtruth_proofs::{metered::readings_commitment, runs_from_readings, MeteredStatement};

use super::Certificate;

/// The batch (auditor) whose verified audit in `epoch` has proof `digest`, with its height.
fn batch_of(st: &State, epoch: u64, digest: &[u8; 32]) -> Option<(Address, u64)> {
    st.fixed_readings_root(epoch)?
        .batches
        .iter()
        .find_map(|(b, a)| {
            a.filter(|a| a.proof_digest == *digest)
                .map(|a| (b.auditor, a.height))
        })
}

/// The API view of a certificate; with the ledger, each epoch's evidence links to its proof
/// and frames.
pub fn certificate_view(c: &Certificate, st: Option<&State>) -> CertificateView {
    CertificateView {
        id: Hex32(c.id),
        device_id: Hex32(c.device.0),
        production_starting_interval: format_rfc3339(c.start),
        production_ending_interval: format_rfc3339(c.end),
        face_value: c.wh,
        energy_carrier: "electricity".into(),
        energy_source: "unspecified".into(),
        device_technology_type: "unspecified".into(),
        device_location: c.region.clone(),
        certificate_bundle_status: CertificateStatusView::Active,
        issuance_datestamp: format_rfc3339(c.issued_at),
        readings: c.readings,
        unanchored_wh: c.unanchored_wh,
        evidence: c
            .evidence
            .iter()
            .map(|e| {
                let proof = e.proof.unwrap_or_default();
                let batch = st.and_then(|st| batch_of(st, e.epoch, &proof));
                CertificateEvidenceView {
                    epoch: e.epoch,
                    proof_digest: Hex32(proof),
                    l1_tx: Hex32(e.l1_tx.unwrap_or_default()),
                    l1_block: e.l1_block.unwrap_or_default(),
                    proof_url: batch.map(|(a, _)| {
                        format!("/v1/epochs/{}/proofs/{}", e.epoch, hex::encode(a.0))
                    }),
                    frames_url: batch.map(|(a, _)| {
                        format!("/v1/epochs/{}/frames/{}", e.epoch, hex::encode(a.0))
                    }),
                }
            })
            .collect(),
    }
}

/// `GET /v1/validators` from the committed state.
pub fn network_validators(st: &State) -> NetworkValidatorsView {
    let power: BTreeMap<[u8; 32], u64> = st
        .validator_set()
        .into_iter()
        .map(|(k, p)| (k.0, p))
        .collect();
    NetworkValidatorsView {
        height: st.height(),
        epoch: st.epoch(),
        total_power: st.total_voting_power(),
        validators: st
            .validators()
            .map(|v| {
                let (status, until) = match v.status {
                    ValidatorStatus::Active => ("active", None),
                    ValidatorStatus::Jailed { until_epoch } => ("jailed", Some(until_epoch)),
                    ValidatorStatus::Removed => ("removed", None),
                };
                NetworkValidatorView {
                    operator: Hex32(v.operator.0),
                    consensus_key: Hex32(v.consensus_key.0),
                    stake: v.stake,
                    delegated: st.delegated_to(&v.operator),
                    power: power.get(&v.consensus_key.0).copied().unwrap_or(0),
                    status: status.into(),
                    jailed_until_epoch: until,
                    jail_count: v.jail_count,
                    l1_address: v.l1_address.map(|a| a.to_string()),
                }
            })
            .collect(),
    }
}

fn frame_hex(r: &SignedReading) -> String {
    let mut buf = [0u8; MAX_FRAME_LEN];
    match r.encode_frame(&mut buf) {
        Ok(n) => hex::encode(buf.get(..n).unwrap_or(&[])),
        Err(_) => String::new(),
    }
}

fn evidence_view(e: &SlashEvidence) -> SlashEvidenceView {
    let mut v = SlashEvidenceView {
        kind: String::new(),
        frames: Vec::new(),
        validator_key: None,
        epoch: None,
        batch: None,
        proof_digest: None,
        verifier_said: None,
    };
    match e {
        SlashEvidence::Submitted(LedgerEvidence::DeviceEquivocation { a, b }) => {
            v.kind = "device_equivocation".into();
            v.frames = vec![frame_hex(a), frame_hex(b)];
        }
        SlashEvidence::Submitted(LedgerEvidence::DoubleSign(d)) => {
            v.kind = "double_sign".into();
            v.validator_key = Some(Hex32(d.validator_key.0));
        }
        SlashEvidence::BadAuditProof {
            epoch,
            batch,
            proof_digest,
            reason,
        } => {
            v.kind = "bad_audit_proof".into();
            v.epoch = Some(*epoch);
            v.batch = Some(Hex32(batch.0));
            v.proof_digest = Some(Hex32(*proof_digest));
            v.verifier_said = Some(reason.clone());
        }
        SlashEvidence::StorageFaults { faults, .. } => {
            v.kind = "storage_faults".into();
            // The latest challenged epoch; each fault's epoch is on the ledger.
            v.epoch = faults.iter().map(|f| f.epoch).max();
        }
        SlashEvidence::ProviderAudit { epoch, .. } => {
            v.kind = "provider_audit".into();
            v.epoch = Some(*epoch);
        }
    }
    v
}

/// `GET /v1/slashes`: newest first, ids below `before`.
pub fn slashes(st: &State, before: Option<u64>, limit: usize) -> SlashesPage {
    let mut out = Vec::with_capacity(limit.min(512));
    let mut more = false;
    for s in st
        .slashes()
        .iter()
        .rev()
        .filter(|s| before.is_none_or(|b| s.id < b))
    {
        if out.len() >= limit {
            more = true;
            break;
        }
        let (offender, role) = match s.offender {
            Offender::Validator(a) => (a, "validator"),
            Offender::Provider(a) => (a, "provider"),
        };
        out.push(SlashEventView {
            id: s.id,
            height: s.height,
            epoch: s.epoch,
            offender: Hex32(offender.0),
            role: role.into(),
            reason: s.reason.code().into(),
            amount: s.amount,
            reporter: Hex32(s.reporter.0),
            jailed: s.jailed,
            removed: s.removed,
            explain: s.explain(),
            evidence: evidence_view(&s.evidence),
        });
    }
    SlashesPage { slashes: out, more }
}

fn kind_name(k: DeviceKind) -> String {
    k.name().to_string()
}

/// `GET /v1/providers`: by address after `after`, with their devices per kind.
pub fn providers(st: &State, after: Option<&Hex32>, limit: usize) -> ProvidersPage {
    let mut owned: BTreeMap<[u8; 32], BTreeMap<String, u64>> = BTreeMap::new();
    let mut unowned: BTreeMap<String, u64> = BTreeMap::new();
    for d in st.devices() {
        let per = match d.owner {
            Some(o) => owned.entry(o.0).or_default(),
            None => &mut unowned,
        };
        let n = per.entry(kind_name(d.kind)).or_insert(0);
        *n = n.saturating_add(1);
    }
    let mut out = Vec::with_capacity(limit.min(512));
    let mut more = false;
    for p in st
        .providers()
        .filter(|p| after.is_none_or(|a| p.address.0 > a.0))
    {
        if out.len() >= limit {
            more = true;
            break;
        }
        out.push(ProviderSummaryView {
            address: Hex32(p.address.0),
            stake: p.stake,
            data_root: Hex32(p.data_root),
            registered_at: p.registered_at,
            devices: owned.remove(&p.address.0).unwrap_or_default(),
        });
    }
    ProvidersPage {
        providers: out,
        unowned_devices: unowned,
        more,
    }
}

/// What verifying a proof (and its frames) found.
#[derive(Debug)]
pub struct Checked {
    /// The verdict, without the ledger match.
    pub verdict: VerdictView,
    /// The statement's epoch, when it verified (to look the digest up on the ledger).
    pub epoch: Option<u64>,
}

/// Verifies `proof` and, when given, the signed `frames` behind it, like
/// `groundtruth verify --frames F --proof P`: every frame's signature, the runs rebuilt and the
/// commitment recomputed with the proof's caps, compared with the proof's commitment and
/// reading count. Undecodable input is an error; a proof or frames that fail are a verdict.
pub fn check_proof(
    proof: &[u8],
    frames: Option<&[Bytes]>,
    max_proof_bytes: usize,
) -> Result<Checked, VerifyError> {
    if proof.len() > max_proof_bytes {
        return Err(VerifyError::TooLarge(max_proof_bytes));
    }
    let digest = Hex32(*blake3::hash(proof).as_bytes());
    let envelope = groundtruth_proofs::ProofEnvelope::from_bytes(proof)
        .map_err(|e| VerifyError::Undecodable(format!("proof envelope: {e}")))?;
    let readings: Option<Vec<SignedReading>> = match frames {
        None => None,
        Some(fs) => Some(
            fs.iter()
                .enumerate()
                .map(|(i, f)| {
                    SignedReading::decode_frame(f)
                        .map_err(|e| VerifyError::Undecodable(format!("frame {i}: {e:?}")))
                })
                .collect::<Result<_, _>>()?,
        ),
    };
    let fail = |failure: String, s: Option<&MeteredStatement>| Checked {
        verdict: verdict(digest, s, Some(failure), None),
        epoch: None,
    };
    let statement = match groundtruth_proofs::verify_metered(&envelope) {
        Ok(s) => s,
        Err(e) => return Ok(fail(format!("the proof does not verify: {e}"), None)),
    };
    let Some(readings) = readings else {
        return Ok(Checked {
            verdict: verdict(digest, Some(&statement), None, None),
            epoch: Some(statement.epoch.number),
        });
    };
    for (i, r) in readings.iter().enumerate() {
        if let Err(e) = r.verify() {
            return Ok(fail(
                format!(
                    "frame {i} (device {} seq {}): signature does not verify: {e:?}",
                    r.reading.device, r.reading.seq
                ),
                Some(&statement),
            ));
        }
    }
    let caps: BTreeMap<([u8; 32], u32), u64> = statement
        .devices
        .iter()
        .map(|d| ((d.id, d.interval_len), d.cap))
        .collect();
    let fields = crate::audit::reading_fields(&readings);
    let series = match runs_from_readings(&fields, |id, len| {
        caps.get(&(*id, len)).copied().unwrap_or(0)
    }) {
        Ok(s) => s,
        Err(e) => {
            return Ok(fail(
                format!("the frames do not form the batch: {e}"),
                Some(&statement),
            ))
        }
    };
    match readings_commitment(&statement.epoch, &series) {
        Ok(c) if c == statement.commitment => {}
        Ok(c) => {
            return Ok(fail(
                format!(
                    "the frames' commitment {} is not the proof's {}",
                    hex::encode(c),
                    hex::encode(statement.commitment)
                ),
                Some(&statement),
            ))
        }
        Err(e) => {
            return Ok(fail(
                format!("the frames' commitment cannot be computed: {e}"),
                Some(&statement),
            ))
        }
    }
    if fields.len() as u64 != statement.num_readings {
        return Ok(fail(
            format!(
                "{} frames, the proof covers {} readings",
                fields.len(),
                statement.num_readings
            ),
            Some(&statement),
        ));
    }
    Ok(Checked {
        verdict: verdict(digest, Some(&statement), None, Some(readings.len() as u64)),
        epoch: Some(statement.epoch.number),
    })
}

fn verdict(
    digest: Hex32,
    s: Option<&MeteredStatement>,
    failure: Option<String>,
    frames_checked: Option<u64>,
) -> VerdictView {
    VerdictView {
        valid: failure.is_none(),
        failure,
        proof_digest: digest,
        epoch: s.map(|s| s.epoch.number),
        window_start: s.map(|s| format_rfc3339(s.epoch.start_s)),
        window_end: s.map(|s| format_rfc3339(s.epoch.end_s)),
        commitment: s.map(|s| Hex32(s.commitment)),
        readings: s.map(|s| s.num_readings),
        runs: s
            .map(|s| {
                s.devices
                    .iter()
                    .map(|d| VerdictRunView {
                        device: Hex32(d.id),
                        total: d.total,
                        cap: d.cap,
                        first_seq: d.first_seq,
                        last_seq: d.last_seq,
                        interval_len_s: d.interval_len,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        frames_checked,
        ledger: None,
    }
}

/// The ledger's verified audit with `digest` in `epoch`, if any.
pub fn ledger_match(st: &State, epoch: u64, digest: &Hex32) -> Option<LedgerMatchView> {
    batch_of(st, epoch, &digest.0).map(|(batch, height)| LedgerMatchView {
        epoch,
        batch: Hex32(batch.0),
        height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody};
    use groundtruth_proofs::{Epoch, SecurityLevel};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    const START: u64 = 1_714_521_600;

    /// Eight contiguous 5-minute readings of one meter, signed, register advancing.
    fn frames(k: &DeviceKey) -> Vec<SignedReading> {
        let mut register = 1_000u64;
        (0..8u64)
            .map(|i| {
                let wh = 5 + i;
                register += wh;
                k.sign(Reading {
                    device: k.device_id(),
                    seq: 10 + i,
                    timestamp_ms: (START + i * 300 + 300) * 1000,
                    body: ReadingBody::Energy(EnergyReading {
                        interval_start_s: START + i * 300,
                        interval_len_s: 300,
                        energy_wh: wh,
                        register_wh: register,
                    }),
                })
            })
            .collect()
    }

    fn encoded(rs: &[SignedReading]) -> Vec<Bytes> {
        rs.iter()
            .map(|r| {
                let mut buf = [0u8; MAX_FRAME_LEN];
                let n = r.encode_frame(&mut buf).unwrap_or(0);
                Bytes::copy_from_slice(buf.get(..n).unwrap_or(&[]))
            })
            .collect()
    }

    /// A real proof verifies alone and with its frames; a frame from another batch, a forged
    /// signature or a corrupted proof give a `valid: false` verdict saying why; bytes that are
    /// not an envelope, or over the cap, are refused.
    #[test]
    fn proofs_are_checked_like_groundtruth_verify() -> TestResult {
        let k = DeviceKey::from_seed(&[4; 32]);
        let rs = frames(&k);
        let epoch = Epoch {
            number: 3,
            start_s: START,
            end_s: START + 3600,
        };
        let fields = crate::audit::reading_fields(&rs);
        let series = runs_from_readings(&fields, |_, _| 1_000)?;
        let proof = groundtruth_proofs::prove_metered(&epoch, &series, SecurityLevel::Default100)?
            .to_bytes()?;

        let alone = check_proof(&proof, None, 1 << 20)?;
        assert!(alone.verdict.valid, "{:?}", alone.verdict.failure);
        assert_eq!(alone.epoch, Some(3));
        assert_eq!(alone.verdict.readings, Some(8));
        assert_eq!(alone.verdict.frames_checked, None);
        assert_eq!(
            alone.verdict.runs.iter().map(|r| r.total).sum::<u64>(),
            (5..13).sum::<u64>()
        );
        assert_eq!(
            alone.verdict.proof_digest.0,
            *blake3::hash(&proof).as_bytes()
        );

        let with = check_proof(&proof, Some(&encoded(&rs)), 1 << 20)?;
        assert!(with.verdict.valid, "{:?}", with.verdict.failure);
        assert_eq!(with.verdict.frames_checked, Some(8));

        // One reading's value changed and re-signed by the device: signatures hold, the
        // commitment does not.
        let mut other = rs.clone();
        if let Some(r) = other.get_mut(3) {
            let mut reading = r.reading;
            if let ReadingBody::Energy(e) = &mut reading.body {
                e.energy_wh += 1;
                e.register_wh += 1;
            }
            *r = k.sign(reading);
        }
        let v = check_proof(&proof, Some(&encoded(&other)), 1 << 20)?.verdict;
        assert!(!v.valid);
        assert!(
            v.failure
                .as_deref()
                .is_some_and(|f| f.contains("commitment") || f.contains("batch")),
            "{:?}",
            v.failure
        );

        // A forged signature.
        let mut forged = rs.clone();
        if let Some(r) = forged.get_mut(0) {
            r.signature[0] ^= 1;
        }
        let v = check_proof(&proof, Some(&encoded(&forged)), 1 << 20)?.verdict;
        assert!(!v.valid);
        assert!(
            v.failure
                .as_deref()
                .is_some_and(|f| f.contains("signature")),
            "{:?}",
            v.failure
        );

        // Fewer frames than the proof covers.
        let v = check_proof(&proof, Some(&encoded(&rs[..7])), 1 << 20)?.verdict;
        assert!(!v.valid);

        // A corrupted proof body: either undecodable or not verifying, never valid.
        let mut bad = proof.clone();
        let at = bad.len() - 40;
        if let Some(b) = bad.get_mut(at) {
            *b ^= 0x55;
        }
        match check_proof(&bad, None, 1 << 20) {
            Ok(c) => assert!(!c.verdict.valid),
            Err(e) => assert!(matches!(e, VerifyError::Undecodable(_))),
        }
        assert!(matches!(
            check_proof(b"not an envelope", None, 1 << 20),
            Err(VerifyError::Undecodable(_))
        ));
        assert!(matches!(
            check_proof(&proof, None, 100),
            Err(VerifyError::TooLarge(100))
        ));
        assert!(matches!(
            check_proof(&proof, Some(&[Bytes::from_static(b"xx")]), 1 << 20),
            Err(VerifyError::Undecodable(_))
        ));
        Ok(())
    }
}
