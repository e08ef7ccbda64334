//! The metered-output AIR. One reading per row; see the module docs of `metered` and PROOFS.md.
//!
//! Main columns: `h[0..12]` Rescue state, `buf[12..19]` the 7 previous hashed elements,
//! `dev` device index, `reg` register before the reading, `acc` device sum before the reading,
//! `cnt` position of the reading within its device, `v` the interval value, `dd[0..11]` base-8
//! digits of `cap − value`. The cap is not a column: `cap = v + Σ 8^i·dd_i`. One auxiliary
//! column `p` (extension field) is the running product of the multiset check that binds each
//! device's `(index, cap, start register, total, last position)` to the public table.

use winter_air::{
    Air, AirContext, Assertion, AuxRandElements, EvaluationFrame, ProofOptions, TraceInfo,
    TransitionConstraintDegree,
};
use winter_math::{fields::f64::BaseElement, ExtensionOf, FieldElement, ToElements};

use super::{DEV_SHIFT, DIGITS};
use crate::field::{fe, Digest4};
use crate::rescue::{self, CYCLE, STATE_WIDTH};

pub(crate) const H: usize = 0;
pub(crate) const BUF: usize = 12;
pub(crate) const BUF_LEN: usize = 7;
pub(crate) const DEV: usize = 19;
pub(crate) const REG: usize = 20;
pub(crate) const ACC: usize = 21;
pub(crate) const CNT: usize = 22;
pub(crate) const V: usize = 23;
/// Device `d`'s positions run from `CNT_BASE·d` (so `cnt` on its last row is `CNT_BASE·d +
/// count − 1`; `2^32·2^20 + 2^24` stays far below the modulus).
pub(crate) const CNT_BASE: u64 = 1 << 32;
pub(crate) const DD: usize = 24;
/// Main trace width.
pub(crate) const WIDTH: usize = DD + DIGITS;
/// Auxiliary columns and random elements they use (`α, β1, β2, β3, β4`).
pub(crate) const AUX_WIDTH: usize = 1;
pub(crate) const AUX_RANDS: usize = 5;
/// Bookkeeping constraints after the Rescue and buffer ones.
pub(crate) const BOOK: usize = 5;
const NUM_CONSTRAINTS: usize = STATE_WIDTH + BUF_LEN + BOOK + DIGITS;

/// Public inputs as field elements.
#[derive(Debug, Clone)]
pub(crate) struct MeteredPublic {
    pub commitment: Digest4,
    pub iv: Digest4,
    pub num_readings: usize,
    /// Per device: cap, start register, total, number of readings − 1 (`last_seq − first_seq`).
    pub devices: Vec<[BaseElement; 4]>,
}

impl ToElements<BaseElement> for MeteredPublic {
    fn to_elements(&self) -> Vec<BaseElement> {
        let mut out = Vec::with_capacity(10 + 4 * self.devices.len());
        out.extend_from_slice(&self.commitment);
        out.extend_from_slice(&self.iv);
        out.push(fe(self.num_readings as u64));
        out.push(fe(self.devices.len() as u64));
        for d in &self.devices {
            out.extend_from_slice(d);
        }
        out
    }
}

pub(crate) struct MeteredAir {
    context: AirContext<BaseElement>,
    pubs: MeteredPublic,
}

/// Value of `Σ 8^i·digit_i` for the digits starting at `col`.
#[inline(always)]
pub(crate) fn from_digits<E: FieldElement + From<BaseElement>>(row: &[E], col: usize) -> E {
    let eight = E::from(fe(8));
    let mut acc = E::ZERO;
    for i in (0..DIGITS).rev() {
        acc = acc * eight + row[col + i];
    }
    acc
}

/// `Π_{j=0}^{7} (x − j)`: zero exactly on base-8 digits.
#[inline(always)]
fn digit_check<E: FieldElement + From<BaseElement>>(x: E) -> E {
    let mut acc = x;
    for j in 1..8u64 {
        acc *= x - E::from(fe(j));
    }
    acc
}

/// Multiset tuple of a device-final row:
/// `dev + β1·cap + β2·(reg − acc) + β3·(acc + v) + β4·cnt`.
#[inline(always)]
pub(crate) fn tuple<F, E>(row: &[F], rands: &[E]) -> E
where
    F: FieldElement<BaseField = BaseElement>,
    E: FieldElement<BaseField = BaseElement> + ExtensionOf<F>,
{
    let v = row[V];
    let cap = v + from_digits(row, DD);
    let start = row[REG] - row[ACC];
    let total = row[ACC] + v;
    E::from(row[DEV])
        + rands[1].mul_base(cap)
        + rands[2].mul_base(start)
        + rands[3].mul_base(total)
        + rands[4].mul_base(row[CNT])
}

impl MeteredAir {
    /// Row at which the commitment digest sits (after the last absorbed block's permutation).
    pub(crate) fn digest_row(num_readings: usize) -> usize {
        (num_readings.div_ceil(CYCLE) + 1) * CYCLE - 1
    }
}

impl Air for MeteredAir {
    type BaseField = BaseElement;
    type PublicInputs = MeteredPublic;

    fn new(trace_info: TraceInfo, pubs: MeteredPublic, options: ProofOptions) -> Self {
        let mut degrees = Vec::with_capacity(NUM_CONSTRAINTS);
        degrees.extend(
            (0..STATE_WIDTH).map(|_| TransitionConstraintDegree::with_cycles(7, vec![CYCLE])),
        );
        degrees.extend((0..BUF_LEN).map(|_| TransitionConstraintDegree::new(1)));
        degrees.extend((0..BOOK).map(|_| TransitionConstraintDegree::new(2)));
        degrees.extend((0..DIGITS).map(|_| TransitionConstraintDegree::new(8)));
        let aux_degrees = vec![TransitionConstraintDegree::new(3)];
        let context =
            AirContext::new_multi_segment(trace_info, degrees, aux_degrees, 21, 2, options);
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
        let not_flag = E::ONE - flag;

        let v = cur[V];
        let cap = v + from_digits(cur, DD);
        let cap_next = nxt[V] + from_digits(nxt, DD);
        let e = v + E::from(fe(1u64 << DEV_SHIFT)) * cur[DEV];

        // Rescue rounds on rows 0..7 of each cycle; on row 7 absorb the 8 elements of the cycle
        // (7 buffered + this row's) into the rate, keep the capacity.
        let mut res = [E::ZERO; STATE_WIDTH];
        rescue::round_residual(
            &cur[H..H + STATE_WIDTH],
            &nxt[H..H + STATE_WIDTH],
            ark1,
            ark2,
            &mut res,
        );
        for k in 0..4 {
            result[k] = flag * res[k] + not_flag * (nxt[H + k] - cur[H + k]);
        }
        for k in 4..STATE_WIDTH {
            let block = if k == STATE_WIDTH - 1 {
                e
            } else {
                cur[BUF + (STATE_WIDTH - 2 - k)]
            };
            result[k] = flag * res[k] + not_flag * (nxt[H + k] - cur[H + k] - block);
        }
        // Shift register of hashed elements.
        result[STATE_WIDTH] = nxt[BUF] - e;
        for i in 1..BUF_LEN {
            result[STATE_WIDTH + i] = nxt[BUF + i] - cur[BUF + i - 1];
        }
        // Device bookkeeping: f = 1 exactly on a device's last row.
        let base = STATE_WIDTH + BUF_LEN;
        let f = nxt[DEV] - cur[DEV];
        let same = E::ONE - f;
        result[base] = f * (f - E::ONE);
        result[base + 1] = same * (cap_next - cap);
        result[base + 2] = same * (nxt[REG] - cur[REG] - v);
        result[base + 3] = nxt[ACC] - same * (cur[ACC] + v);
        // Positions restart at 2^32·d for device d (not at 0: a restart at 0 can make the column
        // periodic, which winterfell's debug-mode degree check reads as a wrong degree).
        result[base + 4] =
            nxt[CNT] - same * (cur[CNT] + E::ONE) - f * nxt[DEV] * E::from(fe(CNT_BASE));
        // Range check: cap − value is 11 base-8 digits. (The value itself is the committed one:
        // the hash binds `v + 2^33·dev`, `dev` is fixed by the multiset's positions, and the
        // commitment only admits values below 2^32.)
        for i in 0..DIGITS {
            result[base + BOOK + i] = digit_check(cur[DD + i]);
        }
    }

    fn evaluate_aux_transition<F, E>(
        &self,
        main: &EvaluationFrame<F>,
        aux: &EvaluationFrame<E>,
        _periodic: &[F],
        rands: &AuxRandElements<E>,
        result: &mut [E],
    ) where
        F: FieldElement<BaseField = BaseElement>,
        E: FieldElement<BaseField = BaseElement> + ExtensionOf<F>,
    {
        let r = rands.rand_elements();
        let cur = main.current();
        let f = E::from(main.next()[DEV] - cur[DEV]);
        let t = tuple(cur, r);
        // p' = p · (1 + f·(α − t − 1))
        result[0] = aux.next()[0] - aux.current()[0] * (E::ONE + f * (r[0] - t - E::ONE));
    }

    fn get_assertions(&self) -> Vec<Assertion<BaseElement>> {
        let n = self.pubs.num_readings;
        let last = self.trace_length() - 1;
        let d = fe(self.pubs.devices.len() as u64);
        let digest_row = Self::digest_row(n);
        let mut out = Vec::with_capacity(21);
        for k in 0..STATE_WIDTH {
            let v = if k < 4 {
                self.pubs.iv[k]
            } else {
                BaseElement::ZERO
            };
            out.push(Assertion::single(H + k, 0, v));
        }
        for k in 0..4 {
            out.push(Assertion::single(
                H + 4 + k,
                digest_row,
                self.pubs.commitment[k],
            ));
        }
        out.push(Assertion::single(DEV, 0, BaseElement::ZERO));
        out.push(Assertion::single(DEV, n, d));
        out.push(Assertion::single(DEV, last, d));
        out.push(Assertion::single(ACC, 0, BaseElement::ZERO));
        out.push(Assertion::single(CNT, 0, BaseElement::ZERO));
        out
    }

    fn get_aux_assertions<E: FieldElement<BaseField = BaseElement>>(
        &self,
        rands: &AuxRandElements<E>,
    ) -> Vec<Assertion<E>> {
        let r = rands.rand_elements();
        let mut product = E::ONE;
        for (i, [cap, start, total, last]) in self.pubs.devices.iter().enumerate() {
            let d = fe(i as u64);
            let t = E::from(d)
                + r[1].mul_base(*cap)
                + r[2].mul_base(*start)
                + r[3].mul_base(*total)
                + r[4].mul_base(*last + d * fe(CNT_BASE));
            product *= r[0] - t;
        }
        vec![
            Assertion::single(0, 0, E::ONE),
            Assertion::single(0, self.trace_length() - 1, product),
        ]
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<BaseElement>> {
        rescue::periodic_columns()
    }
}
