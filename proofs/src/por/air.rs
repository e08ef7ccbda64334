//! The retrievability AIR. One 512-row segment (64 Rescue permutations) per challenged chunk:
//! slots 0..19 hash the chunk (147 elements, `Rp64_256::hash_elements`), slots 19..19+depth
//! merge up the Merkle path (`Rp64_256::merge`), the rest idle.
//!
//! Columns: `h[0..12]` Rescue state, `b` path direction bit, `a` index accumulator.

use winter_air::{
    Air, AirContext, Assertion, EvaluationFrame, ProofOptions, TraceInfo,
    TransitionConstraintDegree,
};
use winter_math::{fields::f64::BaseElement, FieldElement, ToElements};

use super::{ELEMS_PER_CHUNK, LEAF_SLOTS};
use crate::field::{fe, Digest4};
use crate::rescue::{self, CYCLE, STATE_WIDTH};

pub(crate) const H: usize = 0;
pub(crate) const B: usize = 12;
pub(crate) const A: usize = 13;
pub(crate) const WIDTH: usize = 14;
/// Rows per challenged chunk.
pub(crate) const SEGMENT: usize = 512;
/// Permutation slots per segment.
pub(crate) const SLOTS: usize = SEGMENT / CYCLE;

#[derive(Debug, Clone)]
pub(crate) struct PorPublic {
    pub root: Digest4,
    pub depth: usize,
    /// Chunk index of every sample (a power-of-two count).
    pub indices: Vec<BaseElement>,
}

impl ToElements<BaseElement> for PorPublic {
    fn to_elements(&self) -> Vec<BaseElement> {
        let mut out = self.root.to_vec();
        out.push(fe(self.depth as u64));
        out.extend_from_slice(&self.indices);
        out
    }
}

pub(crate) struct PorAir {
    context: AirContext<BaseElement>,
    pubs: PorPublic,
}

impl PorAir {
    /// Row (within a segment) holding the root after the last merge.
    pub(crate) fn root_row(depth: usize) -> usize {
        (LEAF_SLOTS + depth) * CYCLE - 1
    }
}

impl Air for PorAir {
    type BaseField = BaseElement;
    type PublicInputs = PorPublic;

    fn new(trace_info: TraceInfo, pubs: PorPublic, options: ProofOptions) -> Self {
        let mut degrees: Vec<_> = (0..STATE_WIDTH)
            .map(|_| TransitionConstraintDegree::with_cycles(7, vec![CYCLE]))
            .collect();
        degrees.push(TransitionConstraintDegree::with_cycles(2, vec![SEGMENT]));
        degrees.push(TransitionConstraintDegree::with_cycles(1, vec![SEGMENT]));
        let context = AirContext::new(trace_info, degrees, 10, options);
        Self { context, pubs }
    }

    fn context(&self) -> &AirContext<BaseElement> {
        &self.context
    }

    fn evaluate_transition<E: FieldElement + From<BaseElement>>(
        &self,
        frame: &EvaluationFrame<E>,
        periodic: &[E],
        result: &mut [E],
    ) {
        let cur = frame.current();
        let nxt = frame.next();
        let flag = periodic[0];
        let ark1 = &periodic[1..1 + STATE_WIDTH];
        let ark2 = &periodic[1 + STATE_WIDTH..1 + 2 * STATE_WIDTH];
        let base = rescue::NUM_PERIODIC;
        let (carry, merge, pow, reset) = (
            periodic[base],
            periodic[base + 1],
            periodic[base + 2],
            periodic[base + 3],
        );
        let b = cur[B];

        let mut res = [E::ZERO; STATE_WIDTH];
        rescue::round_residual(
            &cur[H..H + STATE_WIDTH],
            &nxt[H..H + STATE_WIDTH],
            ark1,
            ark2,
            &mut res,
        );
        // Capacity: carried while absorbing chunk blocks, set to [8, 0, 0, 0] when a merge starts.
        for k in 0..4 {
            let merge_init = if k == 0 { E::from(fe(8)) } else { E::ZERO };
            result[k] = flag * res[k]
                + carry * (nxt[H + k] - cur[H + k])
                + merge * (nxt[H + k] - merge_init);
        }
        // Rate on a merge: the current digest goes left (b = 0) or right (b = 1); the sibling is
        // free. While absorbing chunk blocks the rate is free (the prover's chunk data).
        for k in 4..8 {
            result[k] = flag * res[k] + merge * (E::ONE - b) * (nxt[H + k] - cur[H + k]);
        }
        for k in 8..12 {
            result[k] = flag * res[k] + merge * b * (nxt[H + k] - cur[H + k - 4]);
        }
        result[12] = merge * b * (b - E::ONE);
        // a accumulates Σ b_j·2^j over the merges and restarts at each segment.
        result[13] = nxt[A] - (E::ONE - reset) * cur[A] - pow * b;
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let segments = self.pubs.indices.len();
        let at = |col: usize, step: usize, v: BaseElement| {
            if segments == 1 {
                Assertion::single(col, step, v)
            } else {
                Assertion::periodic(col, step, SEGMENT, v)
            }
        };
        let mut out = Vec::with_capacity(10);
        out.push(at(H, 0, fe(ELEMS_PER_CHUNK as u64)));
        for k in 1..4 {
            out.push(at(H + k, 0, BaseElement::ZERO));
        }
        let root_row = PorAir::root_row(self.pubs.depth);
        for k in 0..4 {
            out.push(at(H + 4 + k, root_row, self.pubs.root[k]));
        }
        out.push(Assertion::single(A, 0, BaseElement::ZERO));
        out.push(Assertion::sequence(
            A,
            SEGMENT - 1,
            SEGMENT,
            self.pubs.indices.clone(),
        ));
        out
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        let mut cols = rescue::periodic_columns();
        let mut carry = vec![BaseElement::ZERO; SEGMENT];
        let mut merge = vec![BaseElement::ZERO; SEGMENT];
        let mut pow = vec![BaseElement::ZERO; SEGMENT];
        let mut reset = vec![BaseElement::ZERO; SEGMENT];
        for slot in 0..SLOTS {
            let row = slot * CYCLE + CYCLE - 1;
            if slot + 1 < LEAF_SLOTS {
                carry[row] = BaseElement::ONE;
            } else if slot + 1 >= LEAF_SLOTS && slot + 1 < LEAF_SLOTS + self.pubs.depth {
                merge[row] = BaseElement::ONE;
                pow[row] = fe(1u64 << (slot + 1 - LEAF_SLOTS));
            }
        }
        reset[SEGMENT - 1] = BaseElement::ONE;
        cols.extend([carry, merge, pow, reset]);
        cols
    }
}
