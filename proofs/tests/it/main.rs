//! Public-API soundness tests: honest proofs verify; each tampering fails for the right reason.
#![allow(clippy::unwrap_used)]

use groundtruth_proofs::{
    metered::readings_commitment, por, verify, verify_bytes, verify_metered, verify_retrievability,
    Challenge, DeviceSeries, ProofEnvelope, ProofError, SecurityLevel, Statement, StatementKind,
};
use proptest::prelude::*;
use winter_verifier::VerifierError;

fn device(id: u8, cap: u64, start: u64, values: Vec<u64>) -> DeviceSeries {
    DeviceSeries {
        id: [id; 32],
        cap,
        start_register: start,
        values,
    }
}

fn metered_env() -> ProofEnvelope {
    let series = vec![
        device(1, 1000, 5_000, vec![10, 20, 30, 1000, 0, 7, 8, 9, 10, 11]),
        device(2, 50, 0, vec![50, 49, 1]),
    ];
    groundtruth_proofs::prove_metered(&series, SecurityLevel::Default100).unwrap()
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
        groundtruth_proofs::prove_metered(&series, SecurityLevel::Default100).unwrap_err(),
        ProofError::ReadingOverCap {
            device: 0,
            index: 1,
            value: 101,
            cap: 100
        }
    );
    assert!(readings_commitment(&series).is_err());
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
    let mut v2 = bytes.clone();
    v2[4] = 2;
    assert_eq!(
        ProofEnvelope::from_bytes(&v2).unwrap_err(),
        ProofError::UnsupportedVersion(2)
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
    let env = groundtruth_proofs::prove_metered(&series, SecurityLevel::High128).unwrap();
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
        let env = groundtruth_proofs::prove_metered(&series, SecurityLevel::Default100).unwrap();
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
        let mut framed = b"GTPF\x01\x00\x01\x01".to_vec();
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
