//! Trace builder and winterfell prover for the retrievability AIR.

use winter_air::ProofOptions;
use winter_math::{fields::f64::BaseElement, FieldElement};
use winter_prover::Prover;

use super::air::{PorAir, PorPublic, A, B, H, SEGMENT, WIDTH};
use super::{chunk_elements, ELEMS_PER_CHUNK, LEAF_SLOTS};
use crate::error::{ProofError, Result};
use crate::field::{fe, Digest4};
use crate::rescue::{self, CYCLE, STATE_WIDTH};
use crate::trace::{default_prover_types, AirTrace};

/// What one segment proves: a chunk, its index and its path (sibling digests, leaf level first).
pub(crate) struct Sample {
    pub index: u64,
    pub chunk: Vec<u8>,
    pub path: Vec<Digest4>,
}

/// Builds the honest trace. Rows outside the constrained positions get filler values (random
/// bits in `b`), which keeps winterfell's debug-mode degree check exact.
pub(crate) fn build_trace(samples: &[Sample], depth: usize) -> AirTrace {
    let len = samples.len() * SEGMENT;
    let mut cols = vec![vec![BaseElement::ZERO; len]; WIDTH];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut a = 0u64;
    for (s, sample) in samples.iter().enumerate() {
        let elems = chunk_elements(&sample.chunk);
        let block = |j: usize, i: usize| elems.get(8 * j + i).copied().unwrap_or(BaseElement::ZERO);
        // Segment start: capacity [147, 0, 0, 0], rate = first block.
        let mut state = [BaseElement::ZERO; STATE_WIDTH];
        state[0] = fe(ELEMS_PER_CHUNK as u64);
        for i in 0..8 {
            state[4 + i] = block(0, i);
        }
        for q in 0..SEGMENT {
            let r = s * SEGMENT + q;
            for k in 0..STATE_WIDTH {
                cols[H + k][r] = state[k];
            }
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let (slot, pos) = (q / CYCLE, q % CYCLE);
            let mut b = rng & 1;
            let mut pow = 0u64;
            if pos < rescue::NUM_ROUNDS {
                rescue::apply_round(&mut state, pos);
            } else if slot + 1 < LEAF_SLOTS {
                for i in 0..8 {
                    state[4 + i] += block(slot + 1, i);
                }
            } else if slot + 1 < LEAF_SLOTS + depth {
                let level = slot + 1 - LEAF_SLOTS;
                b = (sample.index >> level) & 1;
                pow = 1 << level;
                let cur = [state[4], state[5], state[6], state[7]];
                let sib = sample.path[level];
                let (l, rgt) = if b == 0 { (cur, sib) } else { (sib, cur) };
                state = [BaseElement::ZERO; STATE_WIDTH];
                state[0] = fe(8);
                state[4..8].copy_from_slice(&l);
                state[8..12].copy_from_slice(&rgt);
            } else if slot + 1 == LEAF_SLOTS + depth {
                // First idle slot: random state, so that two samples of the same chunk do not
                // make the trace periodic (which lowers its degree and trips winterfell's
                // debug-mode degree check). Idle transitions are unconstrained.
                for v in state.iter_mut() {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    *v = fe(rng >> 1);
                }
            }
            cols[B][r] = fe(b);
            cols[A][r] = fe(a);
            a = if q == SEGMENT - 1 { 0 } else { a + pow * b };
        }
    }
    AirTrace::new(cols, 0, 0)
}

pub(crate) struct PorProver {
    pub(crate) options: ProofOptions,
    pub(crate) pubs: PorPublic,
}

impl Prover for PorProver {
    default_prover_types!(PorAir);

    fn get_pub_inputs(&self, _trace: &AirTrace) -> PorPublic {
        self.pubs.clone()
    }
}

/// Proves a (possibly hand-made) trace; returns winterfell proof bytes.
pub(crate) fn prove_trace(
    trace: AirTrace,
    pubs: PorPublic,
    options: ProofOptions,
) -> Result<Vec<u8>> {
    let prover = PorProver { options, pubs };
    let proof = prover
        .prove(trace)
        .map_err(|e| ProofError::Prover(e.to_string()))?;
    Ok(proof.to_bytes())
}
