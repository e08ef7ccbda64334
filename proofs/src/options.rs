//! Proof parameters. Only two parameter sets exist and the verifier accepts exactly these two,
//! so a proof can never be accepted at a weaker setting than its envelope states.

use winter_air::{BatchingMethod, FieldExtension, ProofOptions};
use winter_crypto::{hashers::Blake3_256, Hasher};
use winter_math::fields::f64::BaseElement;

/// The hash winterfell uses for its own commitments (trace/constraint Merkle trees, FRI,
/// Fiat–Shamir). Rescue is used only inside the AIRs.
pub type CommitmentHasher = Blake3_256<BaseElement>;

/// Blowup factor: the AIRs have degree-8 constraints (base-8 digits) and degree-7 Rescue rounds.
pub const BLOWUP: usize = 8;
const FRI_FOLDING: usize = 8;
const FRI_REMAINDER_MAX_DEGREE: usize = 127;
const GRINDING_BITS: u32 = 20;
/// Traces up to this many rows use more queries and little grinding: at that size grinding
/// (2^20 Blake3 calls, tens of ms on one core) would dominate proving time.
pub const SMALL_TRACE_MAX: usize = 1 << 12;

const SMALL_GRINDING_BITS: u32 = 6;

fn bits(o: &ProofOptions) -> u32 {
    let field_bits = 64 * o.field_extension().degree();
    let query_bits = o.blowup_factor().ilog2() * o.num_queries() as u32 + o.grinding_factor();
    field_bits
        .min(query_bits)
        .saturating_sub(1)
        .min(CommitmentHasher::COLLISION_RESISTANCE)
}

/// A named security level; the envelope carries it and the verifier enforces its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SecurityLevel {
    /// ≥ 100 bits conjectured: 27 queries × 3 bits (blowup 8) + 20 bits grinding, quadratic
    /// extension of the 64-bit field.
    #[default]
    Default100,
    /// 128 bits conjectured: 37 queries + 20 bits grinding, cubic extension (the quadratic one
    /// caps out at 127 bits), capped by Blake3-256's 128-bit collision resistance.
    High128,
}

impl SecurityLevel {
    /// Both levels, in code order.
    pub const ALL: [SecurityLevel; 2] = [SecurityLevel::Default100, SecurityLevel::High128];

    /// The winterfell options of this level for traces longer than [`SMALL_TRACE_MAX`] rows.
    pub fn options(self) -> ProofOptions {
        self.options_for(usize::MAX)
    }

    /// The winterfell options of this level for a trace of `trace_length` rows: the verifier
    /// accepts exactly these for that length. Both sets keep the level's conjectured security.
    pub fn options_for(self, trace_length: usize) -> ProofOptions {
        let small = trace_length <= SMALL_TRACE_MAX;
        let (queries, grinding, ext) = match (self, small) {
            (SecurityLevel::Default100, false) => (27, GRINDING_BITS, FieldExtension::Quadratic),
            (SecurityLevel::Default100, true) => {
                (32, SMALL_GRINDING_BITS, FieldExtension::Quadratic)
            }
            (SecurityLevel::High128, false) => (37, GRINDING_BITS, FieldExtension::Cubic),
            (SecurityLevel::High128, true) => (42, SMALL_GRINDING_BITS, FieldExtension::Cubic),
        };
        ProofOptions::new(
            queries,
            BLOWUP,
            grinding,
            ext,
            FRI_FOLDING,
            FRI_REMAINDER_MAX_DEGREE,
            BatchingMethod::Linear,
            BatchingMethod::Linear,
        )
    }

    /// Conjectured security in bits of this level (winterfell's formula, Blake3-256
    /// commitments): the smaller of its two option sets.
    pub fn conjectured_bits(self) -> u32 {
        bits(&self.options()).min(bits(&self.options_for(1)))
    }

    /// Wire code of the level.
    pub fn code(self) -> u8 {
        match self {
            SecurityLevel::Default100 => 1,
            SecurityLevel::High128 => 2,
        }
    }

    /// Level from its wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(SecurityLevel::Default100),
            2 => Some(SecurityLevel::High128),
            _ => None,
        }
    }
}

impl core::fmt::Display for SecurityLevel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let o = self.options();
        let s = self.options_for(1);
        write!(
            f,
            "{} bits conjectured (queries {}, blowup {}, grinding {}; up to {SMALL_TRACE_MAX} rows: \
             queries {}, grinding {}; {:?} extension, Blake3-256)",
            self.conjectured_bits(),
            o.num_queries(),
            o.blowup_factor(),
            o.grinding_factor(),
            s.num_queries(),
            s.grinding_factor(),
            o.field_extension()
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn levels_meet_their_names() {
        assert!(SecurityLevel::Default100.conjectured_bits() >= 100);
        assert_eq!(SecurityLevel::High128.conjectured_bits(), 128);
        for l in SecurityLevel::ALL {
            for len in [8, SMALL_TRACE_MAX, SMALL_TRACE_MAX * 2, 1 << 24] {
                assert!(bits(&l.options_for(len)) >= l.conjectured_bits());
            }
        }
        for l in SecurityLevel::ALL {
            assert_eq!(SecurityLevel::from_code(l.code()), Some(l));
        }
    }
}
