//! Trace-level soundness tests: dishonest traces the honest builder would never produce.

use winter_air::{Air, TraceInfo};
use winter_math::{fields::f64::BaseElement, FieldElement};

use super::air::{MeteredAir, MeteredPublic, ACC, BOOK, CNT, DD, DEV, H, REG, V};
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
            first_seq: 40,
            first_interval_start: 1_000_200,
            interval_len: 300,
            values: vec![5, 0, 500, 17, 42, 3, 9, 11, 250],
        },
        DeviceSeries {
            id: [2; 32],
            cap: 60,
            start_register: 7,
            first_seq: 0,
            first_interval_start: 1_000_000,
            interval_len: 60,
            values: vec![60, 1, 2, 3, 4, 5, 6],
        },
    ]
}

const EPOCH: Epoch = Epoch {
    number: 3,
    start_s: 1_000_000,
    end_s: 1_100_000,
};

fn setup() -> (MeteredStatement, MeteredPublic, AirTrace) {
    let series = batch();
    let st = MeteredStatement::for_readings(&EPOCH, &series).unwrap();
    let pubs = st.air_inputs().unwrap();
    let trace = build_trace(&series, &pubs);
    (st, pubs, trace)
}

fn air(pubs: &MeteredPublic) -> MeteredAir {
    let len = trace_length(pubs.num_readings);
    let info =
        TraceInfo::new_multi_segment(air::WIDTH, air::AUX_WIDTH, air::AUX_RANDS, len, vec![]);
    MeteredAir::new(
        info,
        pubs.clone(),
        SecurityLevel::Default100.options_for(len),
    )
}

/// Proving the dishonest trace is refused (debug) or yields a proof that fails verification.
fn assert_rejected(trace: AirTrace, st: &MeteredStatement, pubs: &MeteredPublic) {
    let pubs2 = pubs.clone();
    let st2 = st.clone();
    let outcome = prove_dishonest(
        std::panic::AssertUnwindSafe(move || {
            let len = trace_length(pubs2.num_readings);
            prove_trace(trace, pubs2, SecurityLevel::Default100.options_for(len))
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
fn reading_over_cap_cannot_meet_the_public_cap() {
    // The committed readings hold 61 on device 1 (cap 60); the commitment does not depend on
    // caps. An honest-looking trace built as if the cap were 61 satisfies every transition, but
    // its cap column (v + slack) is 61, so the multiset against the public cap 60 fails; a trace
    // with the public cap would need cap − value = −1, which has no base-8 digits.
    let (_, _, _) = setup();
    let mut over = batch();
    over[1].values[0] = 61;
    over[1].cap = 61;
    let trace_st = MeteredStatement::for_readings(&EPOCH, &over).unwrap();
    let trace = build_trace(&over, &trace_st.air_inputs().unwrap());
    let mut st = trace_st.clone();
    st.devices[1].cap = 60;
    let pubs = st.air_inputs().unwrap();
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn field_wraparound_value_is_not_a_digit() {
    let (st, pubs, mut trace) = setup();
    // Put cap − value = p − 1 (a "negative" slack) directly in one digit cell.
    trace.set(DD, 3, BaseElement::ZERO - BaseElement::ONE);
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(
        failing.contains(&(STATE_WIDTH + air::BUF_LEN + BOOK)),
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
fn a_seq_gap_in_the_trace_fails_the_position_constraint() {
    // Skipping a position (a missing seq) within device 0.
    let (st, pubs, mut trace) = setup();
    for row in 4..9 {
        let c = trace.get(CNT, row);
        trace.set(CNT, row, c + BaseElement::ONE);
    }
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(
        failing.contains(&(STATE_WIDTH + air::BUF_LEN + 4)),
        "{failing:?}"
    );
    assert_rejected(trace, &st, &pubs);
}

#[test]
fn a_changed_value_breaks_the_hash() {
    let (st, pubs, mut trace) = setup();
    let v = trace.get(V, 2);
    trace.set(V, 2, v - BaseElement::ONE);
    let failing = failing_constraints(&air(&pubs), &trace);
    assert!(failing.contains(&STATE_WIDTH), "{failing:?}");
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
    let other_st = MeteredStatement::for_readings(&EPOCH, &other).unwrap();
    let trace = build_trace(&other, &other_st.air_inputs().unwrap());
    assert!(failing_constraints(&air(&pubs), &trace).is_empty());
    assert_rejected(trace, &st, &pubs);
}
