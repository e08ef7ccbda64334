//! Trace-level soundness tests for the retrievability AIR.

use winter_air::{Air, TraceInfo};
use winter_math::{fields::f64::BaseElement, FieldElement};

use super::air::{PorAir, PorPublic, A, B, H, SEGMENT, WIDTH};
use super::prover::{build_trace, prove_trace, Sample};
use super::*;
use crate::options::SecurityLevel;
use crate::trace::{failing_constraints, prove_dishonest, AirTrace, Dishonest};

fn setup() -> (RetrievabilityStatement, PorPublic, Vec<Sample>) {
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + i / 1000) as u8).collect();
    let c = commit_reader(&data[..], 6, None).unwrap();
    let ch = Challenge {
        root: c.root,
        depth: 6,
        num_chunks: c.num_chunks,
        seed: [5; 32],
        k: 2,
    };
    let resp = respond_reader(&data[..], &ch, None).unwrap();
    let st = RetrievabilityStatement::from(&ch);
    let pubs = st.air_inputs().unwrap();
    let samples = resp
        .openings
        .iter()
        .map(|o| Sample {
            index: o.index,
            chunk: o.chunk.clone(),
            path: o
                .path
                .iter()
                .map(|p| digest_from_bytes(p).unwrap())
                .collect(),
        })
        .collect();
    (st, pubs, samples)
}

fn air(pubs: &PorPublic) -> PorAir {
    let info = TraceInfo::new(WIDTH, pubs.indices.len() * SEGMENT);
    PorAir::new(info, pubs.clone(), SecurityLevel::Default100.options())
}

fn assert_rejected(trace: AirTrace, st: &RetrievabilityStatement, pubs: &PorPublic) {
    let (pubs2, st2) = (pubs.clone(), st.clone());
    let outcome = prove_dishonest(
        std::panic::AssertUnwindSafe(move || {
            prove_trace(trace, pubs2, SecurityLevel::Default100.options())
        }),
        move |proof| {
            let env = crate::ProofEnvelope {
                statement: crate::Statement::Retrievability(st2),
                security: SecurityLevel::Default100,
                proof,
            };
            crate::verify_retrievability(&env).map(|_| ())
        },
    );
    match outcome {
        Dishonest::RefusedByProver => {}
        Dishonest::Verified(r) => assert!(r.is_err(), "dishonest proof verified"),
    }
}

#[test]
fn honest_trace_satisfies_constraints_and_reaches_the_root() {
    let (_, pubs, samples) = setup();
    let trace = build_trace(&samples, 6);
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    for s in 0..samples.len() {
        let row = s * SEGMENT + PorAir::root_row(6);
        let got: Vec<_> = (0..4).map(|k| trace.get(H + 4 + k, row)).collect();
        assert_eq!(got, pubs.root.to_vec());
        assert_eq!(trace.get(A, s * SEGMENT + SEGMENT - 1), pubs.indices[s]);
    }
}

#[test]
fn wrong_chunk_does_not_reach_the_root() {
    let (st, pubs, mut samples) = setup();
    samples[1].chunk[10] ^= 0x80;
    let trace = build_trace(&samples, 6);
    // Every transition holds (it is an honest hash of other data) but the root assertion fails.
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    assert_ne!(
        trace.get(H + 4, SEGMENT + PorAir::root_row(6)),
        pubs.root[0]
    );
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn wrong_path_does_not_reach_the_root() {
    let (st, pubs, mut samples) = setup();
    samples[0].path[2][1] += BaseElement::ONE;
    let trace = build_trace(&samples, 6);
    assert_ne!(trace.get(H + 4, PorAir::root_row(6)), pubs.root[0]);
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn mirrored_direction_bit_fails() {
    // Same chunk, same siblings, one direction bit flipped: the accumulated index no longer
    // matches the seed-derived one, and the merge ordering breaks.
    let (st, pubs, samples) = setup();
    let row = PorAir::root_row(6) - 8 * 6; // first merge row of segment 0
    let mut trace = build_trace(&samples, 6);
    let b = trace.get(B, row);
    trace.set(B, row, BaseElement::ONE - b);
    assert!(!failing_constraints(&air(&pubs), &trace).is_empty());
    assert_rejected(trace, &st, &pubs);
}
