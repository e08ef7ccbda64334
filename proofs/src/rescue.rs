//! Rescue-Prime (winterfell's `Rp64_256`) inside an AIR: one round per trace row, so one
//! permutation takes an 8-row cycle (7 rounds, then one row where the AIR absorbs or resets).
//!
//! A round maps `s` to `MDS·(MDS·s^7 + ARK1)^(1/7) + ARK2`. The inverse S-box has a huge degree,
//! so the constraint is written the other way round and both sides have degree 7:
//! `(INV_MDS·(s' − ARK2))^7 = MDS·s^7 + ARK1`.

use winter_crypto::hashers::Rp64_256;
use winter_math::{fields::f64::BaseElement, FieldElement};

/// Field elements in the Rescue state.
pub const STATE_WIDTH: usize = 12;
/// Rounds in one permutation.
pub const NUM_ROUNDS: usize = 7;
/// Trace rows taken by one permutation.
pub const CYCLE: usize = 8;
/// Number of periodic columns returned by [`periodic_columns`]: round flag, ARK1, ARK2.
pub const NUM_PERIODIC: usize = 1 + 2 * STATE_WIDTH;

/// Periodic columns of length [`CYCLE`]: `[round_flag, ARK1[0..12], ARK2[0..12]]`. The flag is 1
/// on the 7 round rows and 0 on the eighth.
#[allow(clippy::needless_range_loop)]
pub fn periodic_columns() -> Vec<Vec<BaseElement>> {
    let mut cols = vec![vec![BaseElement::ZERO; CYCLE]; NUM_PERIODIC];
    for round in 0..NUM_ROUNDS {
        cols[0][round] = BaseElement::ONE;
        for lane in 0..STATE_WIDTH {
            cols[1 + lane][round] = Rp64_256::ARK1[round][lane];
            cols[1 + STATE_WIDTH + lane][round] = Rp64_256::ARK2[round][lane];
        }
    }
    cols
}

#[inline(always)]
fn pow7<E: FieldElement>(x: E) -> E {
    let x2 = x.square();
    let x4 = x2.square();
    x4 * x2 * x
}

/// Writes, for each lane, `(INV_MDS·(next − ark2))^7 − (MDS·current^7 + ark1)`: all zero exactly
/// when `next` is one Rescue round applied to `current` with these constants.
#[inline]
pub fn round_residual<E: FieldElement + From<BaseElement>>(
    current: &[E],
    next: &[E],
    ark1: &[E],
    ark2: &[E],
    out: &mut [E; STATE_WIDTH],
) {
    let mut cur7 = [E::ZERO; STATE_WIDTH];
    let mut nxt = [E::ZERO; STATE_WIDTH];
    for i in 0..STATE_WIDTH {
        cur7[i] = pow7(current[i]);
        nxt[i] = next[i] - ark2[i];
    }
    for i in 0..STATE_WIDTH {
        let mut forward = ark1[i];
        let mut backward = E::ZERO;
        for j in 0..STATE_WIDTH {
            forward += E::from(Rp64_256::MDS[i][j]) * cur7[j];
            backward += E::from(Rp64_256::INV_MDS[i][j]) * nxt[j];
        }
        out[i] = pow7(backward) - forward;
    }
}

/// Applies round `round` of the permutation to `state` (native, for trace building).
#[inline]
pub fn apply_round(state: &mut [BaseElement; STATE_WIDTH], round: usize) {
    Rp64_256::apply_round(state, round);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn residual_is_zero_on_honest_round_and_not_otherwise() {
        let mut state = [BaseElement::ZERO; STATE_WIDTH];
        for (i, s) in state.iter_mut().enumerate() {
            *s = BaseElement::new(i as u64 * 7 + 3);
        }
        let cols = periodic_columns();
        for round in 0..NUM_ROUNDS {
            let mut next = state;
            apply_round(&mut next, round);
            let ark1: Vec<_> = (0..STATE_WIDTH).map(|l| cols[1 + l][round]).collect();
            let ark2: Vec<_> = (0..STATE_WIDTH)
                .map(|l| cols[1 + STATE_WIDTH + l][round])
                .collect();
            let mut out = [BaseElement::ZERO; STATE_WIDTH];
            round_residual(&state, &next, &ark1, &ark2, &mut out);
            assert!(out.iter().all(|x| *x == BaseElement::ZERO));
            next[3] += BaseElement::ONE;
            round_residual(&state, &next, &ark1, &ark2, &mut out);
            assert!(out.iter().any(|x| *x != BaseElement::ZERO));
            state = next;
        }
    }
}
