//! Trace builder and winterfell prover for the metered-output AIR.

use winter_air::{AuxRandElements, ProofOptions};
use winter_math::{fields::f64::BaseElement, FieldElement};
use winter_prover::{matrix::ColMatrix, Prover, Trace};

use super::air::{
    self, MeteredAir, MeteredPublic, ACC, AUX_RANDS, AUX_WIDTH, BUF, BUF_LEN, CNT, DD, DEV, H, REG,
    V, WIDTH,
};
use super::{encode, trace_length, DeviceSeries, DIGITS};
use crate::error::{ProofError, Result};
use crate::field::fe;
use crate::rescue::{self, CYCLE, STATE_WIDTH};
use crate::trace::{default_prover_types, AirTrace};

/// Cap of the padding device: any 33-bit value fits, so padding rows can carry filler values.
const PAD_CAP: u64 = (1 << 33) - 1;

fn write_digits(cols: &mut [Vec<BaseElement>], start: usize, row: usize, mut v: u64) {
    for i in 0..DIGITS {
        cols[start + i][row] = fe(v & 7);
        v >>= 3;
    }
}

/// Builds the honest execution trace for a validated batch.
pub(crate) fn build_trace(series: &[DeviceSeries], pubs: &MeteredPublic) -> AirTrace {
    let n = pubs.num_readings;
    let len = trace_length(n);
    let num_dev = series.len() as u64;
    let hashed_rows = n.div_ceil(CYCLE) * CYCLE;
    let mut cols = vec![vec![BaseElement::ZERO; len]; WIDTH];

    // Per-row (device, value, cap − value); padding rows belong to device `num_dev`.
    let mut dev = Vec::with_capacity(len);
    let mut val = Vec::with_capacity(len);
    let mut slack = Vec::with_capacity(len);
    let mut start = Vec::with_capacity(len);
    for (d, s) in series.iter().enumerate() {
        for &v in &s.values {
            dev.push(d as u64);
            val.push(v);
            slack.push(s.cap - v);
            start.push(s.start_register);
        }
    }
    // Filler values after the hashed rows make every digit column non-constant, which keeps
    // winterfell's debug-mode degree check exact; they are never hashed nor counted.
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ n as u64;
    for r in n..len {
        let v = if r < hashed_rows {
            0
        } else {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng & PAD_CAP
        };
        dev.push(num_dev);
        val.push(v);
        slack.push(PAD_CAP - v);
        start.push(0);
    }

    let mut elems = Vec::with_capacity(len);
    let (mut reg, mut acc, mut cnt) = (start[0], 0u64, 0u64);
    for r in 0..len {
        if r > 0 && dev[r] != dev[r - 1] {
            reg = start[r];
            acc = 0;
            cnt = dev[r] * air::CNT_BASE;
        }
        cols[DEV][r] = fe(dev[r]);
        cols[REG][r] = fe(reg);
        cols[ACC][r] = fe(acc);
        cols[CNT][r] = fe(cnt);
        cols[V][r] = fe(val[r]);
        write_digits(&mut cols, DD, r, slack[r]);
        elems.push(encode(dev[r], val[r]));
        reg = reg.wrapping_add(val[r]);
        acc = acc.wrapping_add(val[r]);
        cnt += 1;
    }
    for r in 1..len {
        cols[BUF][r] = elems[r - 1];
        for i in 1..BUF_LEN {
            cols[BUF + i][r] = cols[BUF + i - 1][r - 1];
        }
    }
    let mut state = [BaseElement::ZERO; STATE_WIDTH];
    state[..4].copy_from_slice(&pubs.iv);
    for r in 0..len {
        for k in 0..STATE_WIDTH {
            cols[H + k][r] = state[k];
        }
        let pos = r % CYCLE;
        if pos < rescue::NUM_ROUNDS {
            rescue::apply_round(&mut state, pos);
        } else {
            for i in 0..8 {
                state[4 + i] += elems[r + 1 - CYCLE + i];
            }
        }
    }
    AirTrace::new(cols, AUX_WIDTH, AUX_RANDS)
}

pub(crate) struct MeteredProver {
    pub(crate) options: ProofOptions,
    pub(crate) pubs: MeteredPublic,
}

impl Prover for MeteredProver {
    default_prover_types!(MeteredAir);

    fn get_pub_inputs(&self, _trace: &AirTrace) -> MeteredPublic {
        self.pubs.clone()
    }

    fn build_aux_trace<E: FieldElement<BaseField = BaseElement>>(
        &self,
        trace: &AirTrace,
        rands: &AuxRandElements<E>,
    ) -> ColMatrix<E> {
        let r = rands.rand_elements();
        let main = trace.main_segment();
        let len = trace.length();
        let mut p = vec![E::ZERO; len];
        p[0] = E::ONE;
        let mut row = vec![BaseElement::ZERO; WIDTH];
        for i in 0..len - 1 {
            let f = main.get(DEV, i + 1) - main.get(DEV, i);
            p[i + 1] = if f == BaseElement::ZERO {
                p[i]
            } else {
                main.read_row_into(i, &mut row);
                let t = air::tuple::<BaseElement, E>(&row, r);
                p[i] * (E::ONE + E::from(f) * (r[0] - t - E::ONE))
            };
        }
        ColMatrix::new(vec![p])
    }
}

/// Proves a (possibly hand-made) trace; returns winterfell proof bytes.
pub(crate) fn prove_trace(
    trace: AirTrace,
    pubs: MeteredPublic,
    options: ProofOptions,
) -> Result<Vec<u8>> {
    let prover = MeteredProver { options, pubs };
    let proof = prover
        .prove(trace)
        .map_err(|e| ProofError::Prover(e.to_string()))?;
    Ok(proof.to_bytes())
}
