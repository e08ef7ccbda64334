//! Public-API soundness tests: honest proofs verify; each tampering fails for the right reason.
#![allow(clippy::unwrap_used)]

use groundtruth_proofs::{
    commitment_from_readings, metered::readings_commitment, por, series_from_readings, verify,
    verify_bytes, verify_metered, verify_retrievability, Challenge, DeviceSeries, Epoch,
    ProofEnvelope, ProofError, ReadingFields, SecurityLevel, Statement, StatementKind,
};
use proptest::prelude::*;
use winter_verifier::VerifierError;

fn device(id: u8, cap: u64, start: u64, values: Vec<u64>) -> DeviceSeries {
    DeviceSeries {
        id: [id; 32],
        cap,
        start_register: start,
        first_seq: 100 * u64::from(id),
        first_interval_start: 1_700_000_000 + 7 * u64::from(id),
        interval_len: 300,
        values,
    }
}

fn metered_env() -> ProofEnvelope {
    let series = vec![
        device(1, 1000, 5_000, vec![10, 20, 30, 1000, 0, 7, 8, 9, 10, 11]),
        device(2, 50, 0, vec![50, 49, 1]),
    ];
    groundtruth_proofs::prove_metered(
        &Epoch::covering(1, &series),
        &series,
        SecurityLevel::Default100,
    )
    .unwrap()
}

fn metered_statement(env: &mut ProofEnvelope) -> &mut groundtruth_proofs::MeteredStatement {
    match &mut env.statement {
        Statement::MeteredOutput(s) => s,
        _ => unreachable!(),
    }
}

fn is_verification_failure(r: &Result<impl std::fmt::Debug, ProofError>) -> bool {
    matches!(r, Err(ProofError::Verification(_)))
}

#[test]
fn metered_honest_proof_verifies_through_bytes() {
    let env = metered_env();
    let bytes = env.to_bytes().unwrap();
    let (decoded, statement) = verify_bytes(&bytes).unwrap();
    assert_eq!(decoded, env);
    let Statement::MeteredOutput(s) = statement else {
        panic!("kind")
    };
    assert_eq!(s.devices[0].total, 1105);
    assert_eq!(s.devices[0].end_register(), 6105);
    assert_eq!(s.devices[1].total, 100);
    assert_eq!(s.num_readings, 13);
    assert!(bytes.len() < 100_000, "proof is {} bytes", bytes.len());
    assert_eq!(env.digest().unwrap(), *blake3::hash(&bytes).as_bytes());
}

#[test]
fn metered_changed_total_fails() {
    let mut env = metered_env();
    metered_statement(&mut env).devices[0].total += 1;
    let r = verify_metered(&env);
    assert!(is_verification_failure(&r), "{r:?}");
}

#[test]
fn metered_changed_cap_or_start_register_fails() {
    let mut env = metered_env();
    metered_statement(&mut env).devices[1].cap = 49;
    assert!(is_verification_failure(&verify_metered(&env)));
    let mut env = metered_env();
    metered_statement(&mut env).devices[1].start_register = 1;
    assert!(is_verification_failure(&verify_metered(&env)));
}

#[test]
fn metered_changed_commitment_fails() {
    let mut env = metered_env();
    metered_statement(&mut env).commitment[0] ^= 1;
    let r = verify_metered(&env);
    assert!(is_verification_failure(&r), "{r:?}");
}

#[test]
fn metered_swapped_device_ids_fail() {
    let mut env = metered_env();
    metered_statement(&mut env).devices[0].id = [9; 32];
    assert!(is_verification_failure(&verify_metered(&env)));
}

#[test]
fn metered_reading_over_cap_is_refused_by_the_prover() {
    let series = vec![device(1, 100, 0, vec![5, 101])];
    assert_eq!(
        groundtruth_proofs::prove_metered(
            &Epoch::covering(1, &series),
            &series,
            SecurityLevel::Default100
        )
        .unwrap_err(),
        ProofError::ReadingOverCap {
            device: 0,
            index: 1,
            value: 101,
            cap: 100
        }
    );
    assert!(readings_commitment(&Epoch::covering(1, &series), &series).is_err());
}

#[test]
fn altered_proof_bytes_fail() {
    let env = metered_env();
    let mut failures = 0;
    for pos in [40usize, env.proof.len() / 2, env.proof.len() - 20] {
        let mut bad = env.clone();
        bad.proof[pos] ^= 0x55;
        match verify(&bad) {
            Err(ProofError::Verification(_)) | Err(ProofError::ProofDecode(_)) => failures += 1,
            other => panic!("altered byte {pos} gave {other:?}"),
        }
    }
    assert_eq!(failures, 3);
    let mut truncated = env.clone();
    truncated.proof.truncate(env.proof.len() - 1);
    assert!(verify(&truncated).is_err());
}

#[test]
fn envelope_claiming_a_different_statement_fails() {
    let env = metered_env();
    // Asking for the wrong kind.
    assert_eq!(
        verify_retrievability(&env).unwrap_err(),
        ProofError::WrongStatement {
            expected: StatementKind::Retrievability,
            found: StatementKind::MeteredOutput
        }
    );
    // Relabelling the metered proof as a retrievability statement.
    let relabelled = ProofEnvelope {
        statement: Statement::Retrievability(groundtruth_proofs::RetrievabilityStatement {
            chunk_size: por::CHUNK_SIZE as u32,
            depth: 10,
            root: [0; 32],
            seed: [0; 32],
            k: 1,
            num_chunks: 1,
        }),
        ..env.clone()
    };
    assert!(matches!(
        verify(&relabelled),
        Err(ProofError::TraceShape(_))
    ));
    // Flipping the kind byte in the encoding.
    let mut bytes = env.to_bytes().unwrap();
    bytes[6] = 2;
    assert!(matches!(
        ProofEnvelope::from_bytes(&bytes),
        Err(ProofError::Decode(_)) | Err(ProofError::UnsupportedParameters(_))
    ));
    // Claiming a higher security level than the proof has.
    let mut stronger = env.clone();
    stronger.security = SecurityLevel::High128;
    assert_eq!(verify(&stronger).unwrap_err(), ProofError::OptionsMismatch);
}

#[test]
fn envelope_decoding_rejects_garbage_without_panicking() {
    let bytes = metered_env().to_bytes().unwrap();
    for cut in [0, 3, 4, 6, 7, 9, 12, 40, bytes.len() - 1] {
        assert!(
            ProofEnvelope::from_bytes(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert_eq!(
        ProofEnvelope::from_bytes(&long).unwrap_err(),
        ProofError::Decode("trailing bytes after proof")
    );
    let mut v1 = bytes.clone();
    v1[4] = 1; // version 1 had no epoch nor seq/interval fields
    assert_eq!(
        ProofEnvelope::from_bytes(&v1).unwrap_err(),
        ProofError::UnsupportedVersion(1)
    );
}

// ---------------------------------------------------------------------------------------------
// Retrievability

fn por_setup(k: u32) -> (Vec<u8>, Challenge, por::Response) {
    let data: Vec<u8> = (0..9_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let c = por::commit_reader(&data[..], 12, None).unwrap();
    let ch = Challenge {
        root: c.root,
        depth: 12,
        num_chunks: c.num_chunks,
        seed: [3; 32],
        k,
    };
    let resp = por::respond_reader(&data[..], &ch, None).unwrap();
    (data, ch, resp)
}

fn por_env() -> ProofEnvelope {
    let (_, ch, resp) = por_setup(2);
    groundtruth_proofs::prove_retrievability(&ch, &resp, SecurityLevel::Default100).unwrap()
}

fn por_statement(env: &mut ProofEnvelope) -> &mut groundtruth_proofs::RetrievabilityStatement {
    match &mut env.statement {
        Statement::Retrievability(s) => s,
        _ => unreachable!(),
    }
}

#[test]
fn retrievability_honest_proof_verifies_through_bytes() {
    let env = por_env();
    let bytes = env.to_bytes().unwrap();
    let (_, st) = verify_bytes(&bytes).unwrap();
    assert!(matches!(st, Statement::Retrievability(s) if s.k == 2 && s.depth == 12));
    assert!(bytes.len() < 100_000);
}

#[test]
fn retrievability_different_seed_fails() {
    let mut env = por_env();
    por_statement(&mut env).seed[0] ^= 1;
    let r = verify_retrievability(&env);
    assert!(is_verification_failure(&r), "{r:?}");
}

#[test]
fn retrievability_different_root_fails() {
    let mut env = por_env();
    por_statement(&mut env).root[1] ^= 1;
    assert!(is_verification_failure(&verify_retrievability(&env)));
}

#[test]
fn retrievability_wrong_chunk_or_path_is_refused_before_proving() {
    let (_, ch, resp) = por_setup(2);
    let mut bad = resp.clone();
    bad.openings[0].chunk[100] ^= 1;
    assert!(matches!(
        groundtruth_proofs::prove_retrievability(&ch, &bad, SecurityLevel::Default100),
        Err(ProofError::OpeningMismatch { sample: 0, .. })
    ));
    let mut bad = resp.clone();
    bad.openings[1].path[3][0] ^= 1;
    assert!(matches!(
        groundtruth_proofs::prove_retrievability(&ch, &bad, SecurityLevel::Default100),
        Err(ProofError::OpeningMismatch { sample: 1, .. })
    ));
    let mut bad = resp;
    bad.openings.swap(0, 1);
    if bad.openings[0].index != bad.openings[1].index {
        assert!(matches!(
            groundtruth_proofs::prove_retrievability(&ch, &bad, SecurityLevel::Default100),
            Err(ProofError::ResponseShape(_))
        ));
    }
}

#[test]
fn retrievability_altered_proof_bytes_fail() {
    let env = por_env();
    let mut bad = env.clone();
    let mid = bad.proof.len() / 2;
    bad.proof[mid] ^= 1;
    assert!(verify(&bad).is_err());
}

#[test]
fn high_security_level_round_trips() {
    let series = vec![device(7, 10, 0, vec![1, 2, 3])];
    let env = groundtruth_proofs::prove_metered(
        &Epoch::covering(1, &series),
        &series,
        SecurityLevel::High128,
    )
    .unwrap();
    assert_eq!(env.security.conjectured_bits(), 128);
    verify(&ProofEnvelope::from_bytes(&env.to_bytes().unwrap()).unwrap()).unwrap();
    let mut weaker = env;
    weaker.security = SecurityLevel::Default100;
    assert_eq!(verify(&weaker).unwrap_err(), ProofError::OptionsMismatch);
}

#[test]
fn verifier_error_type_is_comparable() {
    // Errors derive PartialEq so callers (and tests) match exact variants.
    let e = ProofError::Verification(VerifierError::InconsistentOodConstraintEvaluations);
    assert_eq!(e.clone(), e);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_batches_prove_and_a_changed_total_fails(
        caps in proptest::collection::vec(1u64..=u32::MAX as u64, 1..4),
        lens in proptest::collection::vec(1usize..12, 4),
        seed in any::<u64>(),
    ) {
        let mut x = seed | 1;
        let series: Vec<DeviceSeries> = caps.iter().enumerate().map(|(i, &cap)| {
            let values = (0..lens[i]).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x % (cap + 1) }).collect();
            device(i as u8, cap, x % 1_000_000, values)
        }).collect();
        let env = groundtruth_proofs::prove_metered(&Epoch::covering(1, &series), &series, SecurityLevel::Default100).unwrap();
        let bytes = env.to_bytes().unwrap();
        prop_assert!(verify_bytes(&bytes).is_ok());
        let mut bad = env.clone();
        let last = metered_statement(&mut bad).devices.len() - 1;
        metered_statement(&mut bad).devices[last].total ^= 1;
        prop_assert!(is_verification_failure(&verify_metered(&bad)));
    }

    #[test]
    fn envelope_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = ProofEnvelope::from_bytes(&bytes);
        let mut framed = b"GTPF\x02\x00\x01\x01".to_vec();
        framed.extend_from_slice(&bytes);
        let _ = verify_bytes(&framed);
    }
}

#[test]
fn retrievability_with_repeated_indices_proves() {
    // One chunk: every sample opens chunk 0, so all segments hash the same data.
    let data = [7u8; 100];
    let c = por::commit_reader(&data[..], 5, None).unwrap();
    let ch = Challenge {
        root: c.root,
        depth: 5,
        num_chunks: 1,
        seed: [1; 32],
        k: 4,
    };
    let resp = por::respond_reader(&data[..], &ch, None).unwrap();
    let env =
        groundtruth_proofs::prove_retrievability(&ch, &resp, SecurityLevel::Default100).unwrap();
    verify(&env).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Binding to the signed readings: each bound field, changed in the statement or in the frames,
// is refused.

const EPOCH: Epoch = Epoch {
    number: 42,
    start_s: 1_699_999_000,
    end_s: 1_700_100_000,
};

/// Signed reading fields of two devices (device 1: 5 readings, device 2: 3 readings).
fn frames() -> Vec<ReadingFields> {
    let mut out = vec![];
    for (id, first_seq, start, len, register, values) in [
        (
            1u8,
            17u64,
            1_700_000_000u64,
            300u32,
            5_000u64,
            vec![10u64, 0, 30, 20, 7],
        ),
        (2, 0, 1_700_000_060, 60, 0, vec![3, 4, 5]),
    ] {
        let mut reg = register;
        for (j, v) in values.into_iter().enumerate() {
            reg += v;
            out.push(ReadingFields {
                device: [id; 32],
                seq: first_seq + j as u64,
                interval_start_s: start + j as u64 * u64::from(len),
                interval_len_s: len,
                value: v,
                register: reg,
            });
        }
    }
    out
}

fn bound_env() -> ProofEnvelope {
    let series = series_from_readings(&frames(), |_| 100).unwrap();
    groundtruth_proofs::prove_metered(&EPOCH, &series, SecurityLevel::Default100).unwrap()
}

#[test]
fn commitment_recomputed_from_signed_frames_matches_the_proof() {
    let env = bound_env();
    let s = verify_metered(&env).unwrap();
    assert_eq!(
        commitment_from_readings(&EPOCH, &frames()).unwrap(),
        s.commitment
    );
    assert_eq!(s.epoch, EPOCH);
    let d = &s.devices[0];
    assert_eq!((d.first_seq, d.last_seq), (17, 21));
    assert_eq!(
        (d.first_interval_start, d.interval_len),
        (1_700_000_000, 300)
    );
    assert_eq!((d.start_register, d.end_register()), (5_000, 5_067));
    assert_eq!(d.interval_end(), Some(1_700_001_500));
}

#[test]
fn frames_with_a_seq_gap_interval_gap_overlap_or_register_mismatch_are_refused() {
    let mismatch = |f: Vec<ReadingFields>| commitment_from_readings(&EPOCH, &f).unwrap_err();
    let mut f = frames();
    f[2].seq += 1;
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 2, .. }
    ));
    let mut f = frames();
    f[3].interval_start_s += 1; // gap
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 3, .. }
    ));
    let mut f = frames();
    f[3].interval_start_s -= 1; // overlap
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 3, .. }
    ));
    let mut f = frames();
    f[1].interval_len_s = 301;
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 1, .. }
    ));
    let mut f = frames();
    f[4].register += 1;
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 4, .. }
    ));
    let mut f = frames();
    f[6].value = 1 << 32;
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 6, .. }
    ));
    // A device that comes back after another is not one contiguous run.
    let mut f = frames();
    let first = f[0];
    f.push(first);
    assert!(matches!(
        mismatch(f),
        ProofError::ReadingMismatch { index: 8, .. }
    ));
    // Frames outside the epoch window cannot be committed for that epoch.
    let narrow = Epoch {
        end_s: 1_700_001_000,
        ..EPOCH
    };
    assert!(commitment_from_readings(&narrow, &frames()).is_err());
}

#[test]
fn changing_any_bound_field_changes_the_commitment() {
    let honest = commitment_from_readings(&EPOCH, &frames()).unwrap();
    // A consistent re-labelling of the frames (all seqs shifted, all intervals shifted, all
    // registers shifted, a different epoch) gives another commitment.
    let shifted = |g: &dyn Fn(&mut ReadingFields)| {
        let mut f = frames();
        f.iter_mut().for_each(g);
        commitment_from_readings(&EPOCH, &f).unwrap()
    };
    assert_ne!(shifted(&|r| r.seq += 1), honest);
    assert_ne!(shifted(&|r| r.interval_start_s += 300), honest);
    assert_ne!(shifted(&|r| r.register += 1), honest);
    let other_epoch = Epoch {
        number: 43,
        ..EPOCH
    };
    assert_ne!(
        commitment_from_readings(&other_epoch, &frames()).unwrap(),
        honest
    );
}

#[test]
fn statement_with_wrong_first_or_last_seq_fails() {
    let mut env = bound_env();
    let d = &mut metered_statement(&mut env).devices[0];
    d.first_seq += 1;
    d.last_seq += 1;
    assert!(is_verification_failure(&verify_metered(&env)));
    // One more reading claimed than proved (hiding a gap): the count no longer matches.
    let mut env = bound_env();
    metered_statement(&mut env).devices[0].last_seq += 1;
    assert!(matches!(
        verify_metered(&env),
        Err(ProofError::InvalidPublicInputs(_))
    ));
    metered_statement(&mut env).num_readings += 1;
    assert!(verify_metered(&env).is_err());
    // Moving one reading from device 0 to device 1 keeps the total count.
    let mut env = bound_env();
    metered_statement(&mut env).devices[0].last_seq -= 1;
    metered_statement(&mut env).devices[1].last_seq += 1;
    assert!(is_verification_failure(&verify_metered(&env)));
}

#[test]
fn statement_with_wrong_intervals_fails() {
    let mut env = bound_env();
    metered_statement(&mut env).devices[1].first_interval_start += 60;
    assert!(is_verification_failure(&verify_metered(&env)));
    let mut env = bound_env();
    metered_statement(&mut env).devices[0].interval_len = 600;
    assert!(is_verification_failure(&verify_metered(&env)));
}

#[test]
fn statement_with_wrong_epoch_or_window_fails() {
    let mut env = bound_env();
    metered_statement(&mut env).epoch.number += 1;
    assert!(is_verification_failure(&verify_metered(&env)));
    let mut env = bound_env();
    metered_statement(&mut env).epoch.start_s -= 1;
    assert!(is_verification_failure(&verify_metered(&env)));
    // A window that does not hold the intervals is refused before the STARK runs.
    let mut env = bound_env();
    metered_statement(&mut env).epoch.end_s = 1_700_001_000;
    assert!(matches!(
        verify_metered(&env),
        Err(ProofError::InvalidPublicInputs(_))
    ));
}

#[test]
fn statement_with_wrong_register_fails() {
    let mut env = bound_env();
    metered_statement(&mut env).devices[0].start_register += 1;
    assert!(is_verification_failure(&verify_metered(&env)));
}
