//! A column-major execution trace with an optional auxiliary segment (winterfell's
//! `TraceTable` has no auxiliary segment).

use winter_air::{EvaluationFrame, TraceInfo};
use winter_math::fields::f64::BaseElement;
use winter_prover::{matrix::ColMatrix, Trace};

/// Main trace columns plus the shape of the auxiliary segment.
pub(crate) struct AirTrace {
    info: TraceInfo,
    main: ColMatrix<BaseElement>,
}

impl AirTrace {
    pub(crate) fn new(columns: Vec<Vec<BaseElement>>, aux_width: usize, aux_rands: usize) -> Self {
        let width = columns.len();
        let length = columns.first().map_or(0, Vec::len);
        let info = if aux_width == 0 {
            TraceInfo::new(width, length)
        } else {
            TraceInfo::new_multi_segment(width, aux_width, aux_rands, length, Vec::new())
        };
        Self {
            info,
            main: ColMatrix::new(columns),
        }
    }

    /// Value at (column, row).
    #[cfg(test)]
    pub(crate) fn get(&self, col: usize, row: usize) -> BaseElement {
        self.main.get(col, row)
    }

    /// Overwrites one cell (tests build dishonest traces with it).
    #[cfg(test)]
    pub(crate) fn set(&mut self, col: usize, row: usize, value: BaseElement) {
        self.main.set(col, row, value)
    }
}

/// Indices of the main transition constraints that do not evaluate to zero on some row of
/// `trace` (the last row, whose transition wraps around, is exempt as in winterfell).
#[cfg(test)]
pub(crate) fn failing_constraints<A: winter_air::Air<BaseField = BaseElement>>(
    air: &A,
    trace: &AirTrace,
) -> std::collections::BTreeSet<usize> {
    use winter_math::FieldElement;
    let periodic = air.get_periodic_column_values();
    let n = air.context().num_main_transition_constraints();
    let width = trace.main.num_cols();
    let len = trace.info.length();
    let mut frame = EvaluationFrame::new(width);
    let mut out = vec![BaseElement::ZERO; n];
    let mut failing = std::collections::BTreeSet::new();
    for row in 0..len - 1 {
        trace.read_main_frame(row, &mut frame);
        let pv: Vec<BaseElement> = periodic.iter().map(|c| c[row % c.len()]).collect();
        air.evaluate_transition(&frame, &pv, &mut out);
        for (i, v) in out.iter().enumerate() {
            if *v != BaseElement::ZERO {
                failing.insert(i);
            }
        }
    }
    failing
}

/// Outcome of trying to prove a dishonest trace.
#[cfg(test)]
#[derive(Debug)]
pub(crate) enum Dishonest {
    /// winterfell's debug-mode trace validation refused it (panicked).
    RefusedByProver,
    /// A proof came out (release builds skip trace validation); here is its verification result.
    Verified(crate::error::Result<()>),
}

/// Tries to prove a dishonest trace. In debug builds winterfell validates the trace against the
/// AIR and panics; in release builds it emits a proof that must then fail verification.
#[cfg(test)]
pub(crate) fn prove_dishonest(
    prove: impl FnOnce() -> crate::error::Result<Vec<u8>> + std::panic::UnwindSafe,
    verify: impl FnOnce(Vec<u8>) -> crate::error::Result<()>,
) -> Dishonest {
    let r = std::panic::catch_unwind(prove);
    match r {
        Err(_) => Dishonest::RefusedByProver,
        Ok(Ok(bytes)) => Dishonest::Verified(verify(bytes)),
        Ok(Err(e)) => Dishonest::Verified(Err(e)),
    }
}

impl Trace for AirTrace {
    type BaseField = BaseElement;

    fn info(&self) -> &TraceInfo {
        &self.info
    }

    fn main_segment(&self) -> &ColMatrix<BaseElement> {
        &self.main
    }

    fn read_main_frame(&self, row: usize, frame: &mut EvaluationFrame<BaseElement>) {
        let next = (row + 1) % self.info.length();
        self.main.read_row_into(row, frame.current_mut());
        self.main.read_row_into(next, frame.next_mut());
    }
}

/// The boilerplate half of a winterfell `Prover` impl: Blake3-256 commitments, default LDE,
/// evaluator and constraint commitment.
macro_rules! default_prover_types {
    ($air:ty) => {
        type BaseField = winter_math::fields::f64::BaseElement;
        type Air = $air;
        type Trace = crate::trace::AirTrace;
        type HashFn = crate::options::CommitmentHasher;
        type VC = winter_crypto::MerkleTree<Self::HashFn>;
        type RandomCoin = winter_crypto::DefaultRandomCoin<Self::HashFn>;
        type TraceLde<E: winter_math::FieldElement<BaseField = Self::BaseField>> =
            winter_prover::DefaultTraceLde<E, Self::HashFn, Self::VC>;
        type ConstraintCommitment<E: winter_math::FieldElement<BaseField = Self::BaseField>> =
            winter_prover::DefaultConstraintCommitment<E, Self::HashFn, Self::VC>;
        type ConstraintEvaluator<'a, E: winter_math::FieldElement<BaseField = Self::BaseField>> =
            winter_prover::DefaultConstraintEvaluator<'a, Self::Air, E>;

        fn options(&self) -> &winter_air::ProofOptions {
            &self.options
        }

        fn new_trace_lde<E: winter_math::FieldElement<BaseField = Self::BaseField>>(
            &self,
            trace_info: &winter_air::TraceInfo,
            main_trace: &winter_prover::matrix::ColMatrix<Self::BaseField>,
            domain: &winter_prover::StarkDomain<Self::BaseField>,
            partition_option: winter_air::PartitionOptions,
        ) -> (Self::TraceLde<E>, winter_prover::TracePolyTable<E>) {
            winter_prover::DefaultTraceLde::new(trace_info, main_trace, domain, partition_option)
        }

        fn new_evaluator<'a, E: winter_math::FieldElement<BaseField = Self::BaseField>>(
            &self,
            air: &'a Self::Air,
            aux_rand_elements: Option<winter_air::AuxRandElements<E>>,
            composition_coefficients: winter_air::ConstraintCompositionCoefficients<E>,
        ) -> Self::ConstraintEvaluator<'a, E> {
            winter_prover::DefaultConstraintEvaluator::new(
                air,
                aux_rand_elements,
                composition_coefficients,
            )
        }

        fn build_constraint_commitment<
            E: winter_math::FieldElement<BaseField = Self::BaseField>,
        >(
            &self,
            composition_poly_trace: winter_prover::CompositionPolyTrace<E>,
            num_constraint_composition_columns: usize,
            domain: &winter_prover::StarkDomain<Self::BaseField>,
            partition_options: winter_air::PartitionOptions,
        ) -> (
            Self::ConstraintCommitment<E>,
            winter_prover::CompositionPoly<E>,
        ) {
            winter_prover::DefaultConstraintCommitment::new(
                composition_poly_trace,
                num_constraint_composition_columns,
                domain,
                partition_options,
            )
        }
    };
}
pub(crate) use default_prover_types;
