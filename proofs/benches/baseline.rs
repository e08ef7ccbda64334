//! Baseline: a Rescue-Prime hash chain, the shape of winterfell's own `examples/src/rescue`
//! (one round per row, a flag-gated copy between permutations), written here over the same
//! `Rp64_256` permutation, field, blowup and options as our AIRs. Its prove time at a given trace
//! length is the library's best case that our statements are measured against.

use groundtruth_proofs::rescue::{self, CYCLE, STATE_WIDTH};
use winter_air::{
    Air, AirContext, Assertion, EvaluationFrame, ProofOptions, TraceInfo,
    TransitionConstraintDegree,
};
use winter_math::{fields::f64::BaseElement, FieldElement, ToElements};
use winter_prover::{matrix::ColMatrix, Prover, Trace, TraceTable};

/// Seed and result of the chain (lanes 4 and 5).
#[derive(Clone)]
pub struct ChainInputs {
    seed: [BaseElement; 2],
    result: [BaseElement; 2],
}

impl ToElements<BaseElement> for ChainInputs {
    fn to_elements(&self) -> Vec<BaseElement> {
        vec![self.seed[0], self.seed[1], self.result[0], self.result[1]]
    }
}

/// The chain AIR: rounds on rows 0..7 of each cycle; on row 7 the digest half of the rate is
/// kept and every other lane is reset to zero (hash of the previous digest).
pub struct ChainAir {
    context: AirContext<BaseElement>,
    inputs: ChainInputs,
}

impl Air for ChainAir {
    type BaseField = BaseElement;
    type PublicInputs = ChainInputs;

    fn new(info: TraceInfo, inputs: ChainInputs, options: ProofOptions) -> Self {
        let degrees = (0..STATE_WIDTH)
            .map(|_| TransitionConstraintDegree::with_cycles(7, vec![CYCLE]))
            .collect();
        Self {
            context: AirContext::new(info, degrees, 4, options),
            inputs,
        }
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
        let (cur, nxt) = (frame.current(), frame.next());
        let flag = periodic[0];
        let mut res = [E::ZERO; STATE_WIDTH];
        rescue::round_residual(
            cur,
            nxt,
            &periodic[1..1 + STATE_WIDTH],
            &periodic[1 + STATE_WIDTH..],
            &mut res,
        );
        for k in 0..STATE_WIDTH {
            let copy = if (4..8).contains(&k) {
                nxt[k] - cur[k]
            } else {
                nxt[k]
            };
            result[k] = flag * res[k] + (E::ONE - flag) * copy;
        }
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let last = self.trace_length() - 1;
        vec![
            Assertion::single(4, 0, self.inputs.seed[0]),
            Assertion::single(5, 0, self.inputs.seed[1]),
            Assertion::single(4, last, self.inputs.result[0]),
            Assertion::single(5, last, self.inputs.result[1]),
        ]
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        rescue::periodic_columns()
    }
}

/// Builds the chain trace of `len` rows.
pub fn chain_trace(len: usize) -> (TraceTable<BaseElement>, ChainInputs) {
    let seed = [BaseElement::new(42), BaseElement::new(43)];
    let mut trace = TraceTable::new(STATE_WIDTH, len);
    trace.fill(
        |s| {
            s.fill(BaseElement::ZERO);
            s[4] = seed[0];
            s[5] = seed[1];
        },
        |step, s| {
            let pos = step % CYCLE;
            if pos < rescue::NUM_ROUNDS {
                let mut st = [BaseElement::ZERO; STATE_WIDTH];
                st.copy_from_slice(s);
                rescue::apply_round(&mut st, pos);
                s.copy_from_slice(&st);
            } else {
                for (k, v) in s.iter_mut().enumerate() {
                    if !(4..8).contains(&k) {
                        *v = BaseElement::ZERO;
                    }
                }
            }
        },
    );
    let result = [trace.get(4, len - 1), trace.get(5, len - 1)];
    (trace, ChainInputs { seed, result })
}

/// Prover of the chain.
pub struct ChainProver {
    options: ProofOptions,
}

impl ChainProver {
    /// With these options.
    pub fn new(options: ProofOptions) -> Self {
        Self { options }
    }
}

impl Prover for ChainProver {
    type BaseField = BaseElement;
    type Air = ChainAir;
    type Trace = TraceTable<BaseElement>;
    type HashFn = groundtruth_proofs::options::CommitmentHasher;
    type VC = winter_crypto::MerkleTree<Self::HashFn>;
    type RandomCoin = winter_crypto::DefaultRandomCoin<Self::HashFn>;
    type TraceLde<E: FieldElement<BaseField = BaseElement>> =
        winter_prover::DefaultTraceLde<E, Self::HashFn, Self::VC>;
    type ConstraintCommitment<E: FieldElement<BaseField = BaseElement>> =
        winter_prover::DefaultConstraintCommitment<E, Self::HashFn, Self::VC>;
    type ConstraintEvaluator<'a, E: FieldElement<BaseField = BaseElement>> =
        winter_prover::DefaultConstraintEvaluator<'a, ChainAir, E>;

    fn get_pub_inputs(&self, trace: &Self::Trace) -> ChainInputs {
        let last = trace.length() - 1;
        ChainInputs {
            seed: [trace.get(4, 0), trace.get(5, 0)],
            result: [trace.get(4, last), trace.get(5, last)],
        }
    }

    fn options(&self) -> &ProofOptions {
        &self.options
    }

    fn new_trace_lde<E: FieldElement<BaseField = BaseElement>>(
        &self,
        info: &TraceInfo,
        main: &ColMatrix<BaseElement>,
        domain: &winter_prover::StarkDomain<BaseElement>,
        partition: winter_air::PartitionOptions,
    ) -> (Self::TraceLde<E>, winter_prover::TracePolyTable<E>) {
        winter_prover::DefaultTraceLde::new(info, main, domain, partition)
    }

    fn new_evaluator<'a, E: FieldElement<BaseField = BaseElement>>(
        &self,
        air: &'a ChainAir,
        aux: Option<winter_air::AuxRandElements<E>>,
        coeffs: winter_air::ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, E> {
        winter_prover::DefaultConstraintEvaluator::new(air, aux, coeffs)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace: winter_prover::CompositionPolyTrace<E>,
        columns: usize,
        domain: &winter_prover::StarkDomain<BaseElement>,
        partition: winter_air::PartitionOptions,
    ) -> (
        Self::ConstraintCommitment<E>,
        winter_prover::CompositionPoly<E>,
    ) {
        winter_prover::DefaultConstraintCommitment::new(trace, columns, domain, partition)
    }
}

/// Proves a chain of `len` rows; returns the proof size in bytes.
pub fn prove_chain(len: usize, options: ProofOptions) -> usize {
    let (trace, _) = chain_trace(len);
    match ChainProver::new(options).prove(trace) {
        Ok(p) => p.to_bytes().len(),
        Err(e) => panic!("baseline chain failed to prove: {e}"),
    }
}
