//! Trace-level soundness tests: dishonest traces the honest builder would never produce.

use winter_air::{Air, TraceInfo};
use winter_math::{fields::f64::BaseElement, FieldElement};

use super::air::{MeteredAir, MeteredPublic, ACC, DD, DEV, DV, H, REG};
use super::prover::{build_trace, prove_trace};
use super::*;
use crate::options::SecurityLevel;
use crate::trace::{failing_constraints, prove_dishonest, AirTrace, Dishonest};

fn batch() -> Vec<DeviceSeries> {
    vec![
        DeviceSeries {
            id: [1; 32],
            cap: 500,
            start_register: 10_000,
            values: vec![5, 0, 500, 17, 42, 3, 9, 11, 250],
        },
        DeviceSeries {
            id: [2; 32],
            cap: 60,
            start_register: 7,
            values: vec![60, 1, 2, 3, 4, 5, 6],
        },
    ]
}

fn setup() -> (MeteredStatement, MeteredPublic, AirTrace) {
    let series = batch();
    let st = MeteredStatement::for_readings(&series).unwrap();
    let pubs = st.air_inputs().unwrap();
    let trace = build_trace(&series, &pubs);
    (st, pubs, trace)
}

fn air(pubs: &MeteredPublic) -> MeteredAir {
    let len = trace_length(pubs.num_readings);
    let info =
        TraceInfo::new_multi_segment(air::WIDTH, air::AUX_WIDTH, air::AUX_RANDS, len, vec![]);
    MeteredAir::new(info, pubs.clone(), SecurityLevel::Default100.options())
}

/// Proving the dishonest trace is refused (debug) or yields a proof that fails verification.
fn assert_rejected(trace: AirTrace, st: &MeteredStatement, pubs: &MeteredPublic) {
    let pubs2 = pubs.clone();
    let st2 = st.clone();
    let outcome = prove_dishonest(
        std::panic::AssertUnwindSafe(move || {
            prove_trace(trace, pubs2, SecurityLevel::Default100.options())
        }),
        move |proof| {
            let env = crate::ProofEnvelope {
                statement: crate::Statement::MeteredOutput(st2),
                security: SecurityLevel::Default100,
                proof,
            };
            crate::verify_metered(&env).map(|_| ())
        },
    );
    match outcome {
        Dishonest::RefusedByProver => {}
        Dishonest::Verified(r) => assert!(r.is_err(), "dishonest proof verified"),
    }
}

#[test]
fn honest_trace_satisfies_every_constraint_and_digest_matches_native_commitment() {
    let (st, pubs, trace) = setup();
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    let row = MeteredAir::digest_row(pubs.num_readings);
    let digest: Vec<u64> = (0..4).map(|k| trace.get(H + 4 + k, row).as_int()).collect();
    let native = crate::field::digest_from_bytes(&st.commitment).unwrap();
    assert_eq!(
        digest,
        native.iter().map(|e| e.as_int()).collect::<Vec<_>>()
    );
}

#[test]
fn reading_over_cap_breaks_the_range_check() {
    let (st, pubs, mut trace) = setup();
    // Device 1 (cap 60), first reading: claim value 61 — cap − value is −1, which has no
    // base-8 digits, so the prover must write some digits and the cap identity breaks.
    let row = 9;
    let v = 61u64;
    for i in 0..DIGITS {
        trace.set(DV + i, row, crate::field::fe((v >> (3 * i)) & 7));
        trace.set(DD + i, row, BaseElement::ZERO);
    }
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(!failing.is_empty());
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn field_wraparound_value_is_not_a_digit() {
    let (st, pubs, mut trace) = setup();
    // Put cap − value = p − 1 (a "negative" slack) directly in one digit cell.
    trace.set(DD, 3, BaseElement::ZERO - BaseElement::ONE);
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(
        failing.contains(&(STATE_WIDTH + air::BUF_LEN + 4 + DIGITS)),
        "{failing:?}"
    );
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn broken_register_fails_the_register_constraint() {
    let (st, pubs, mut trace) = setup();
    let r = trace.get(REG, 4);
    trace.set(REG, 4, r + BaseElement::ONE);
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(
        failing.contains(&(STATE_WIDTH + air::BUF_LEN + 2)),
        "{failing:?}"
    );
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn broken_accumulator_fails() {
    let (st, pubs, mut trace) = setup();
    let a = trace.get(ACC, 5);
    trace.set(ACC, 5, a + BaseElement::ONE);
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(
        failing.contains(&(STATE_WIDTH + air::BUF_LEN + 3)),
        "{failing:?}"
    );
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn moving_a_device_boundary_breaks_the_hash() {
    let (st, pubs, mut trace) = setup();
    // Reassign the last reading of device 0 to device 1: dev steps stay 0/1 but the hashed
    // element changes, so the buffer/hash constraints fail.
    trace.set(DEV, 8, BaseElement::ONE);
    assert!(!failing_constraints(&air(&pubs), &trace).is_empty());
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn a_trace_claiming_a_bigger_total_is_rejected_by_the_multiset_check() {
    // A self-consistent trace for other readings (device 0 reads 6 instead of 5) against the
    // original statement: every transition holds, but the commitment and the total differ.
    let (st, pubs, _) = setup();
    let mut other = batch();
    other[0].values[0] = 6;
    let other_st = MeteredStatement::for_readings(&other).unwrap();
    let trace = build_trace(&other, &other_st.air_inputs().unwrap());
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    assert_rejected(trace, &st, &pubs);
}
