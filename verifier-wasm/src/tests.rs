//! Native tests: a real batch signed by real device keys, proven by the real prover, then each
//! kind of tampering the page must refuse.

use groundtruth_device_sdk::{
    DeviceId, DeviceKey, EnergyReading, GpuReading, Reading, ReadingBody, SignedReading,
};
use groundtruth_proofs::{
    metered::readings_commitment, prove_metered, runs_from_readings, Epoch, ProofEnvelope,
    SecurityLevel, Statement,
};

use super::*;

const START: u64 = 1_714_521_600; // 2024-05-01T00:00:00Z
const LEN: u32 = 300;
const CAP: u64 = 1_000_000;

fn energy(key: &DeviceKey, seq: u64, register: &mut u64, wh: u64) -> SignedReading {
    *register += wh;
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: (START + seq * u64::from(LEN)) * 1000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: START + seq * u64::from(LEN),
            interval_len_s: LEN,
            energy_wh: wh,
            register_wh: *register,
        }),
    })
}

fn gpu(key: &DeviceKey, seq: u64, ms: u64) -> SignedReading {
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: (START + seq * u64::from(LEN)) * 1000,
        body: ReadingBody::Gpu(GpuReading {
            interval_start_s: START + seq * u64::from(LEN),
            interval_len_s: LEN,
            gpu_ms: ms,
            utilisation_bp: 5000,
            energy_wh: 7,
        }),
    })
}

/// Two meters and a GPU agent, device after device in seq order, with `bump` added to the
/// second meter's third value (a different but validly signed batch).
fn readings(bump: u64) -> Vec<SignedReading> {
    let a = DeviceKey::from_seed(&[1; 32]);
    let b = DeviceKey::from_seed(&[2; 32]);
    let g = DeviceKey::from_seed(&[3; 32]);
    let mut out = Vec::new();
    let mut reg = 1_000;
    for seq in 0..6 {
        out.push(energy(&a, seq, &mut reg, 100 + seq));
    }
    let mut reg = 0;
    for seq in 10..14 {
        let extra = if seq == 12 { bump } else { 0 };
        out.push(energy(&b, seq, &mut reg, 40 + extra));
    }
    for seq in 0..3 {
        out.push(gpu(&g, seq, 250_000));
    }
    out
}

fn frames_of(readings: &[SignedReading]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in readings {
        let mut buf = vec![0u8; r.frame_len()];
        let n = r.encode_frame(&mut buf).unwrap_or(0);
        out.extend_from_slice(&u32::try_from(n).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    out
}

fn epoch() -> Epoch {
    Epoch {
        number: 7,
        start_s: START,
        end_s: START + 86_400,
    }
}

/// The batch's proof envelope bytes, proven from the fields of `readings`.
fn prove(readings: &[SignedReading]) -> Vec<u8> {
    let fields = reading_fields(readings);
    let series = runs_from_readings(&fields, |_, _| CAP).expect("runs");
    prove_metered(&epoch(), &series, SecurityLevel::Default100)
        .expect("prove")
        .to_bytes()
        .expect("encode")
}

struct Fixture {
    readings: Vec<SignedReading>,
    frames: Vec<u8>,
    proof: Vec<u8>,
}

fn fixture() -> Fixture {
    let readings = readings(0);
    let frames = frames_of(&readings);
    let proof = prove(&readings);
    Fixture {
        readings,
        frames,
        proof,
    }
}

fn device(seed: u8) -> [u8; 32] {
    DeviceKey::from_seed(&[seed; 32]).device_id().0
}

#[test]
fn a_valid_batch_verifies_and_ties_a_claim_to_its_frames() {
    let f = fixture();
    let claim = Claim {
        device: device(1),
        from_s: START + 300,
        to_s: START + 900,
    };
    let v = verify_batch(&f.proof, &f.frames, Some(&claim)).expect("a valid batch verifies");
    assert_eq!(v.proof_digest, *blake3::hash(&f.proof).as_bytes());
    assert_eq!(v.frames, 13);
    assert_eq!(v.statement.num_readings, 13);
    assert_eq!(v.statement.epoch, epoch());
    let totals: Vec<u64> = v.statement.devices.iter().map(|d| d.total).collect();
    assert_eq!(totals, vec![615, 160, 750_000]);
    // seqs 1 and 2: 101 + 102 Wh.
    assert_eq!(
        v.claim,
        Some(ClaimResult {
            claim,
            value: 203,
            readings: 2,
            in_statement: true
        })
    );
    let other = Claim {
        device: [9; 32],
        ..claim
    };
    let v = verify_batch(&f.proof, &f.frames, Some(&other)).expect("verifies");
    assert_eq!(v.claim.map(|c| (c.value, c.in_statement)), Some((0, false)));
}

#[test]
fn a_tampered_proof_is_refused() {
    let f = fixture();
    // A byte in the middle of the winterfell proof (the envelope's tail).
    let mut bad = f.proof.clone();
    let at = bad.len() - bad.len() / 3;
    bad[at] ^= 0x01;
    let e = verify_batch(&bad, &f.frames, None).expect_err("a flipped proof byte is refused");
    assert!(
        matches!(e, VerifyError::Proof(_) | VerifyError::Envelope(_)),
        "{e:?}"
    );
    // Every byte of a short stretch: none may slip through.
    for at in (f.proof.len() - 200..f.proof.len()).step_by(7) {
        let mut bad = f.proof.clone();
        bad[at] ^= 0x80;
        assert!(
            verify_batch(&bad, &f.frames, None).is_err(),
            "flipping byte {at} went unnoticed"
        );
    }
}

#[test]
fn a_statement_with_another_total_is_refused_by_the_stark() {
    let f = fixture();
    let mut env = ProofEnvelope::from_bytes(&f.proof).expect("decode");
    if let Statement::MeteredOutput(s) = &mut env.statement {
        s.devices[0].total += 1;
    }
    let bad = env.to_bytes().expect("encode");
    let e = verify_batch(&bad, &f.frames, None).expect_err("an inflated total is refused");
    assert!(matches!(e, VerifyError::Proof(_)), "{e:?}");
}

#[test]
fn a_tampered_frame_is_refused_by_its_signature() {
    let f = fixture();
    // Re-encode one reading with a larger value, keeping its signature.
    let mut readings = f.readings.clone();
    if let ReadingBody::Energy(e) = &mut readings[3].reading.body {
        e.energy_wh += 1;
    }
    let bad = frames_of(&readings);
    let e = verify_batch(&f.proof, &bad, None).expect_err("a tampered frame is refused");
    assert_eq!(
        e,
        VerifyError::Signature {
            index: 3,
            device: DeviceId(device(1)).to_string(),
            seq: 3
        }
    );
    // A flipped byte anywhere in the frames bytes is refused too (decode or signature).
    let mut flipped = f.frames.clone();
    flipped[f.frames.len() / 2] ^= 0x04;
    assert!(verify_batch(&f.proof, &flipped, None).is_err());
}

#[test]
fn validly_signed_frames_of_another_batch_are_refused_by_the_commitment() {
    let f = fixture();
    let other = frames_of(&readings(5));
    let e = verify_batch(&f.proof, &other, None).expect_err("another batch is refused");
    let series = runs_from_readings(&reading_fields(&readings(5)), |_, _| CAP).expect("runs");
    let theirs = readings_commitment(&epoch(), &series).expect("commitment");
    assert!(
        matches!(&e, VerifyError::CommitmentMismatch { frames, .. } if *frames == json::hex(&theirs)),
        "{e:?}"
    );
    // A batch with one reading fewer (the last, so the rest still forms runs).
    let mut fewer = f.readings.clone();
    fewer.pop();
    let e = verify_batch(&f.proof, &frames_of(&fewer), None).expect_err("a short batch");
    assert_eq!(e.check(), "commitment");
    // Frames in another order do not form the batch.
    let mut shuffled = f.readings.clone();
    shuffled.swap(0, 7);
    let e = verify_batch(&f.proof, &frames_of(&shuffled), None).expect_err("reordered");
    assert!(matches!(e.check(), "batch" | "commitment"), "{e:?}");
}

#[test]
fn malformed_inputs_are_refused_without_panicking() {
    let f = fixture();
    assert_eq!(
        verify_batch(&f.proof, &f.frames[..f.frames.len() - 1], None).map_err(|e| e.check()),
        Err("frames")
    );
    assert_eq!(
        verify_batch(&f.proof[..40], &f.frames, None).map_err(|e| e.check()),
        Err("envelope")
    );
    assert_eq!(
        verify_batch(b"", &f.frames, None).map_err(|e| e.check()),
        Err("envelope")
    );
    assert_eq!(
        verify_batch(&f.proof, &[0, 0, 0, 9, 1], None).map_err(|e| e.check()),
        Err("frames")
    );
}

#[test]
fn the_export_surface_reports_codes_and_json() {
    let f = fixture();
    let claim = Claim {
        device: device(2),
        from_s: START,
        to_s: START + 86_400,
    }
    .to_bytes();
    let (code, msg) = ffi::run(&f.proof, &f.frames, &claim);
    assert_eq!(code, ffi::VALID, "{msg}");
    assert!(msg.starts_with("{\"valid\":true,"), "{msg}");
    assert!(
        msg.contains("\"value\":160,\"readings\":4,\"in_statement\":true"),
        "{msg}"
    );
    let mut bad = f.proof.clone();
    let at = bad.len() - 100;
    bad[at] ^= 1;
    let (code, msg) = ffi::run(&bad, &f.frames, &[]);
    assert_eq!(code, ffi::REFUSED, "{msg}");
    assert!(msg.starts_with("{\"valid\":false,\"check\":\""), "{msg}");
    assert_eq!(ffi::run(&[], &f.frames, &[]).0, ffi::MISUSE);
    assert_eq!(ffi::run(&f.proof, &f.frames, &[1, 2]).0, ffi::MISUSE);

    // Through the exports, as the glue drives them (slots written through the returned
    // pointers' safe counterparts is not possible natively; sizes and limits are).
    assert!(ffi::gt_alloc(9, 1).is_null());
    assert!(ffi::gt_alloc(ffi::SLOT_CLAIM, 49).is_null());
    assert!(!ffi::gt_alloc(ffi::SLOT_CLAIM, 48).is_null());
    assert_eq!(ffi::gt_verify(), ffi::MISUSE);
    assert!(ffi::gt_output_len() > 0);
    ffi::gt_free();
    assert_eq!(ffi::gt_output_len(), 0);
    assert_eq!(ffi::gt_abi_version(), ffi::ABI_VERSION);
}

#[test]
fn json_strings_are_escaped() {
    assert_eq!(json::string("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
}
