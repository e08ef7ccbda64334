//! Small conversions between bytes and elements of winterfell's 64-bit prime field.

use winter_math::{fields::f64::BaseElement, FieldElement, StarkField};

/// A 4-element Rescue digest.
pub type Digest4 = [BaseElement; 4];

/// Field element from a u64 that is known to be below the modulus (reduces otherwise).
#[inline]
pub fn fe(v: u64) -> BaseElement {
    BaseElement::new(v)
}

/// Canonical little-endian bytes of a digest (4 × u64).
pub fn digest_to_bytes(d: &Digest4) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (chunk, e) in out.chunks_exact_mut(8).zip(d.iter()) {
        chunk.copy_from_slice(&e.as_int().to_le_bytes());
    }
    out
}

/// Digest from its canonical bytes; `None` if any limb is not below the field modulus.
pub fn digest_from_bytes(b: &[u8; 32]) -> Option<Digest4> {
    let mut out = [BaseElement::ZERO; 4];
    for (o, chunk) in out.iter_mut().zip(b.chunks_exact(8)) {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(chunk);
        let v = u64::from_le_bytes(limb);
        if v >= BaseElement::MODULUS {
            return None;
        }
        *o = BaseElement::new(v);
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_bytes_round_trip_and_reject_non_canonical() {
        let d = [fe(1), fe(2), fe(BaseElement::MODULUS - 1), fe(0)];
        assert_eq!(digest_from_bytes(&digest_to_bytes(&d)), Some(d));
        assert_eq!(digest_from_bytes(&[0xff; 32]), None);
    }
}
