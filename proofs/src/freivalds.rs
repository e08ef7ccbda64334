//! GPU capacity challenges: seeded random matrices over the Goldilocks field, the exact product
//! (the CPU reference backend) and Freivalds' check of a claimed product.
//!
//! A validator derives two `n × n` matrices `A`, `B` from a seed with [`challenge_matrices`]; the
//! provider returns `C` (claimed `A·B`, computed on its GPU or with [`multiply`]); the validator
//! accepts `C` when [`check`] holds. Arithmetic is exact in the prime field
//! `p = 2^64 − 2^32 + 1` (Goldilocks), so every honest backend returns bit-identical products and a
//! product's [`Matrix::digest`] can be compared across validators.
//!
//! # Soundness of the check
//! Each round draws `r` uniformly from `F_p^n` and compares `A(B r)` with `C r`. If `C ≠ A·B`,
//! some row `d` of `D = A·B − C` is non-zero and `d · r = 0` holds for at most a `1/p` fraction
//! of the vectors `r` (Schwartz–Zippel on a non-zero linear form), so a wrong product is accepted
//! with probability at most `(1/p)^rounds ≈ 2^(−64·rounds)`. This bound holds only if `r` is
//! unknown to the prover when it commits to `C`: the checker must pick `rng_seed` privately
//! (e.g. from its own randomness, or from a value revealed after the response arrived). A check
//! costs `3·n²` multiply-adds per round against `n³` for the product.
//!
//! Everything here is pure (no I/O, no clock), allocation is bounded by [`MAX_N`], and nothing
//! panics on untrusted input: [`Matrix::decode`] rejects malformed bytes with a [`FreivaldsError`].

/// The Goldilocks prime `2^64 − 2^32 + 1`.
pub const P: u64 = 0xFFFF_FFFF_0000_0001;

/// Largest matrix dimension accepted anywhere (a 2048 × 2048 matrix encodes to 32 MiB).
pub const MAX_N: u32 = 2048;

/// Most Freivalds rounds one [`check`] runs (`rounds` above it is clamped; 2 already gives
/// a false-accept bound below 2^-127).
pub const MAX_ROUNDS: u32 = 64;

/// `2^64 mod p = 2^32 − 1`.
const EPSILON: u64 = 0xFFFF_FFFF;

const MATRIX_DOMAIN: &str = "groundtruth gpu-challenge matrix digest v1";
const CHALLENGE_DOMAIN: &str = "groundtruth gpu-challenge matrices v1";
const ROUND_DOMAIN: &str = "groundtruth gpu-challenge freivalds vector v1";

/// Why a matrix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FreivaldsError {
    /// A matrix of dimension 0.
    #[error("matrix dimension is 0")]
    ZeroDimension,
    /// A matrix larger than [`MAX_N`].
    #[error("matrix dimension {n} exceeds the maximum {max}")]
    TooLarge {
        /// The dimension found.
        n: u32,
        /// [`MAX_N`].
        max: u32,
    },
    /// The element count (or byte length) is not the one the dimension implies.
    #[error("matrix has {found} bytes or elements, expected {expected}")]
    Length {
        /// Expected count.
        expected: usize,
        /// Count found.
        found: usize,
    },
    /// An element is not in canonical form (≥ p).
    #[error("element {index} is not a canonical field element")]
    NonCanonical {
        /// Row-major index of the element.
        index: usize,
    },
    /// Two matrices of different dimensions were combined.
    #[error("dimension mismatch: {left} × {left} against {right} × {right}")]
    DimensionMismatch {
        /// Left operand's dimension.
        left: u32,
        /// Right operand's dimension.
        right: u32,
    },
}

/// Reduces a 128-bit value modulo p to a value below 2^64 (not necessarily canonical).
///
/// With `x = lo + 2^64·(hl + 2^32·hh)`: `2^64 ≡ 2^32 − 1` and `2^96 ≡ −1`, so
/// `x ≡ lo − hh + hl·(2^32 − 1)`.
#[inline(always)]
fn reduce128(x: u128) -> u64 {
    let lo = x as u64;
    let hi = (x >> 64) as u64;
    let hh = hi >> 32;
    let hl = hi & EPSILON;
    let (mut t0, borrow) = lo.overflowing_sub(hh);
    if borrow {
        // t0 = lo − hh + 2^64 ≥ 2^64 − 2^32 + 1 > EPSILON: no second borrow.
        t0 -= EPSILON;
    }
    let t1 = hl * EPSILON; // ≤ (2^32 − 1)^2 < 2^64
    let (t2, carry) = t0.overflowing_add(t1);
    if carry {
        // t2 < t1 ≤ 2^64 − 2^33 + 1: adding EPSILON cannot wrap.
        t2 + EPSILON
    } else {
        t2
    }
}

#[inline(always)]
fn canonical(x: u64) -> u64 {
    if x >= P {
        x - P
    } else {
        x
    }
}

/// `a · b mod p`, canonical.
#[inline(always)]
pub fn mul(a: u64, b: u64) -> u64 {
    canonical(reduce128(u128::from(a) * u128::from(b)))
}

/// `a + b mod p` for canonical inputs, canonical.
#[inline(always)]
pub fn add(a: u64, b: u64) -> u64 {
    let (s, carry) = a.overflowing_add(b);
    // a + b < 2p < 2^65: on carry the true sum is s + 2^64 ≡ s + EPSILON (< p, no wrap).
    if carry {
        s + EPSILON
    } else {
        canonical(s)
    }
}

/// Dot product of two equal-length slices of canonical elements, canonical.
fn dot(a: &[u64], b: &[u64]) -> u64 {
    // Each reduced product is < 2^64; at most MAX_N of them sum below 2^75.
    let acc: u128 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| u128::from(reduce128(u128::from(x) * u128::from(y))))
        .sum();
    canonical(reduce128(acc))
}

/// A square matrix over F_p, row-major, every element canonical, `1 ≤ n ≤ MAX_N`.
#[derive(Clone, PartialEq, Eq)]
pub struct Matrix {
    n: u32,
    data: Vec<u64>,
}

impl core::fmt::Debug for Matrix {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "Matrix({n}×{n}, {})",
            hex::encode(self.digest()),
            n = self.n
        )
    }
}

fn check_dimension(n: u32) -> Result<usize, FreivaldsError> {
    if n == 0 {
        return Err(FreivaldsError::ZeroDimension);
    }
    if n > MAX_N {
        return Err(FreivaldsError::TooLarge { n, max: MAX_N });
    }
    Ok(n as usize)
}

impl Matrix {
    /// Builds a matrix from row-major canonical elements.
    pub fn new(n: u32, data: Vec<u64>) -> Result<Self, FreivaldsError> {
        let side = check_dimension(n)?;
        let expected = side * side;
        if data.len() != expected {
            return Err(FreivaldsError::Length {
                expected,
                found: data.len(),
            });
        }
        if let Some(index) = data.iter().position(|&x| x >= P) {
            return Err(FreivaldsError::NonCanonical { index });
        }
        Ok(Self { n, data })
    }

    /// The dimension.
    pub fn n(&self) -> u32 {
        self.n
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// Element at row `i`, column `j`, or `None` outside the matrix.
    pub fn get(&self, i: u32, j: u32) -> Option<u64> {
        if i >= self.n || j >= self.n {
            return None;
        }
        let idx = (i as usize) * (self.n as usize) + j as usize;
        self.data.get(idx).copied()
    }

    /// Length of [`Matrix::encode`]'s output for dimension `n`: `4 + 8·n²`.
    pub fn encoded_len(n: u32) -> usize {
        let n = n as usize;
        4 + 8 * n * n
    }

    /// Canonical encoding: `n` (u32 little-endian) then the `n²` elements, row-major, each u64
    /// little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::encoded_len(self.n));
        out.extend_from_slice(&self.n.to_le_bytes());
        for x in &self.data {
            out.extend_from_slice(&x.to_le_bytes());
        }
        out
    }

    /// Decodes [`Matrix::encode`]'s output; rejects n = 0, n > [`MAX_N`], a wrong length and
    /// non-canonical elements. Reads the header before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Self, FreivaldsError> {
        let Some((head, body)) = bytes.split_first_chunk::<4>() else {
            return Err(FreivaldsError::Length {
                expected: 4,
                found: bytes.len(),
            });
        };
        let n = u32::from_le_bytes(*head);
        let side = check_dimension(n)?;
        let expected = side * side * 8;
        if body.len() != expected {
            return Err(FreivaldsError::Length {
                expected: expected + 4,
                found: bytes.len(),
            });
        }
        let mut data = Vec::with_capacity(side * side);
        for (index, chunk) in body.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            let x = u64::from_le_bytes(b);
            if x >= P {
                return Err(FreivaldsError::NonCanonical { index });
            }
            data.push(x);
        }
        Ok(Self { n, data })
    }

    /// Blake3 (derive-key mode, domain `groundtruth gpu-challenge matrix digest v1`) of
    /// [`Matrix::encode`]'s output, computed without materialising the encoding.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(MATRIX_DOMAIN);
        h.update(&self.n.to_le_bytes());
        let mut buf = [0u8; 8 * 256];
        for block in self.data.chunks(256) {
            let mut len = 0;
            for (dst, x) in buf.chunks_exact_mut(8).zip(block) {
                dst.copy_from_slice(&x.to_le_bytes());
                len += 8;
            }
            h.update(buf.get(..len).unwrap_or(&[]));
        }
        *h.finalize().as_bytes()
    }

    /// `self · v` for a vector of length n.
    fn mul_vec(&self, v: &[u64]) -> Vec<u64> {
        self.data
            .chunks_exact(self.n as usize)
            .map(|row| dot(row, v))
            .collect()
    }
}

/// Uniform field elements from a Blake3 XOF stream (rejection sampling of values ≥ p, which
/// happens with probability 2^-32 per draw).
struct FieldStream {
    reader: blake3::OutputReader,
    buf: [u8; 8 * 64],
    pos: usize,
}

impl FieldStream {
    fn new(domain: &str, parts: &[&[u8]]) -> Self {
        let mut h = blake3::Hasher::new_derive_key(domain);
        for p in parts {
            h.update(p);
        }
        let mut s = Self {
            reader: h.finalize_xof(),
            buf: [0u8; 8 * 64],
            pos: 0,
        };
        s.reader.fill(&mut s.buf);
        s
    }

    fn next(&mut self) -> u64 {
        loop {
            if self.pos >= self.buf.len() {
                self.reader.fill(&mut self.buf);
                self.pos = 0;
            }
            let mut b = [0u8; 8];
            if let Some(src) = self.buf.get(self.pos..self.pos + 8) {
                b.copy_from_slice(src);
            }
            self.pos += 8;
            let x = u64::from_le_bytes(b);
            if x < P {
                return x;
            }
        }
    }

    fn take(&mut self, count: usize) -> Vec<u64> {
        (0..count).map(|_| self.next()).collect()
    }
}

/// The seed a committee member's challenge matrices derive from: `blake3::derive_key`
/// (domain `groundtruth gpu-challenge member v1`) over `ledger_seed ‖ nonce`, where `nonce` is
/// the member's own, drawn when it sends the challenge. The ledger's seed is public from the
/// end of the epoch; without the nonce a provider could compute the product before it is
/// asked (or have it computed elsewhere) and look faster than it is.
pub fn member_seed(ledger_seed: &[u8; 32], nonce: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("groundtruth gpu-challenge member v1");
    h.update(ledger_seed);
    h.update(nonce);
    *h.finalize().as_bytes()
}

/// The challenge matrices `(A, B)` for a seed and dimension: deterministic, uniform over F_p,
/// from a Blake3 XOF in derive-key mode (domain `groundtruth gpu-challenge matrices v1`) over
/// `seed ‖ n (u32 LE)`; A takes the first n² elements of the stream and B the next n².
/// `n` is clamped to `1..=MAX_N` (the ledger never issues a challenge outside it).
pub fn challenge_matrices(seed: &[u8; 32], n: u32) -> (Matrix, Matrix) {
    let n = n.clamp(1, MAX_N);
    let side = n as usize;
    let mut s = FieldStream::new(CHALLENGE_DOMAIN, &[seed, &n.to_le_bytes()]);
    let a = Matrix {
        n,
        data: s.take(side * side),
    };
    let b = Matrix {
        n,
        data: s.take(side * side),
    };
    (a, b)
}

/// The exact product `A·B` over F_p: the CPU reference backend (i-k-j loop). Each row keeps
/// two 128-bit accumulators per column, one for the low and one for the high 64 bits of the
/// products, and reduces once per element (`hi·2^64 + lo` mod p). Refuses operands of
/// different dimensions.
pub fn multiply(a: &Matrix, b: &Matrix) -> Result<Matrix, FreivaldsError> {
    if a.n != b.n {
        return Err(FreivaldsError::DimensionMismatch {
            left: a.n,
            right: b.n,
        });
    }
    let side = a.n as usize;
    let mut out = Vec::with_capacity(side * side);
    // Per element: at most MAX_N = 2^11 halves below 2^64 each sum below 2^75.
    let mut lo = vec![0u128; side];
    let mut hi = vec![0u128; side];
    for a_row in a.data.chunks_exact(side) {
        lo.iter_mut().for_each(|x| *x = 0);
        hi.iter_mut().for_each(|x| *x = 0);
        for (&aik, b_row) in a_row.iter().zip(b.data.chunks_exact(side)) {
            if aik == 0 {
                continue;
            }
            let aik = u128::from(aik);
            for ((l, h), &bkj) in lo.iter_mut().zip(hi.iter_mut()).zip(b_row) {
                let p = aik * u128::from(bkj);
                *l += u128::from(p as u64);
                *h += p >> 64;
            }
        }
        out.extend(lo.iter().zip(&hi).map(|(&l, &h)| {
            // h·2^64 + l ≡ (h mod p)·2^64 + l; (h mod p)·2^64 < 2^128.
            let h = canonical(reduce128(h));
            add(
                canonical(reduce128(u128::from(h) << 64)),
                canonical(reduce128(l)),
            )
        }));
    }
    Ok(Matrix { n: a.n, data: out })
}

/// Freivalds' check that `c = a·b`: `rounds` (clamped to `1..=MAX_ROUNDS`) random vectors `r`
/// from a Blake3 XOF over `rng_seed` (domain `groundtruth gpu-challenge freivalds vector v1`),
/// each compared as `A(B r) = C r`; `3·n²` multiply-adds per round. False for operands of
/// different dimensions. A wrong `c` passes with probability at most `(1/p)^rounds`, provided
/// `rng_seed` was unknown to whoever produced `c` (see the module docs).
pub fn check(a: &Matrix, b: &Matrix, c: &Matrix, rounds: u32, rng_seed: &[u8; 32]) -> bool {
    if a.n != b.n || a.n != c.n {
        return false;
    }
    let side = a.n as usize;
    let rounds = rounds.clamp(1, MAX_ROUNDS);
    let mut s = FieldStream::new(ROUND_DOMAIN, &[rng_seed, &a.n.to_le_bytes()]);
    for _ in 0..rounds {
        let r = s.take(side);
        let br = b.mul_vec(&r);
        let abr = a.mul_vec(&br);
        let cr = c.mul_vec(&r);
        if abr != cr {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &Matrix, b: &Matrix) -> Matrix {
        let n = a.n;
        let mut data = Vec::new();
        for i in 0..n {
            for j in 0..n {
                let mut s = 0u64;
                for k in 0..n {
                    let x = mul(a.get(i, k).unwrap_or(0), b.get(k, j).unwrap_or(0));
                    s = add(s, x);
                }
                data.push(s);
            }
        }
        Matrix { n, data }
    }

    #[test]
    fn field_arithmetic_matches_u128_modulo() {
        let samples = [
            0u64,
            1,
            2,
            EPSILON,
            P - 1,
            P - 2,
            1 << 63,
            (1 << 32) + 7,
            0x1234_5678_9abc_def0,
        ];
        for &a in &samples {
            for &b in &samples {
                let a = a % P;
                let b = b % P;
                let want = ((u128::from(a) * u128::from(b)) % u128::from(P)) as u64;
                assert_eq!(mul(a, b), want, "{a} * {b}");
                let want = ((u128::from(a) + u128::from(b)) % u128::from(P)) as u64;
                assert_eq!(add(a, b), want, "{a} + {b}");
            }
        }
        // Large 128-bit accumulations reduce correctly.
        for x in [
            u128::MAX,
            u128::MAX - 12345,
            (u128::from(P) << 64) + 5,
            1u128 << 96,
        ] {
            assert_eq!(
                u128::from(canonical(reduce128(x))),
                x % u128::from(P),
                "{x}"
            );
        }
    }

    #[test]
    fn honest_product_passes_and_matches_naive() {
        let (a, b) = challenge_matrices(&[7; 32], 24);
        let c = multiply(&a, &b).expect("same dimension");
        assert_eq!(c, naive(&a, &b));
        assert!(check(&a, &b, &c, 2, &[9; 32]));
    }

    #[test]
    fn largest_elements_do_not_overflow_the_accumulators() {
        // Every element p − 1: each product is (p − 1)^2 ≡ 1, so every entry is n.
        let n = 64;
        let m = Matrix::new(n, vec![P - 1; (n * n) as usize]).expect("canonical");
        let c = multiply(&m, &m).expect("same dimension");
        assert!(c.data().iter().all(|&x| x == u64::from(n)));
        assert_eq!(c, naive(&m, &m));
        assert!(check(&m, &m, &c, 1, &[0; 32]));
    }

    #[test]
    fn one_changed_element_fails() {
        let (a, b) = challenge_matrices(&[1; 32], 32);
        let c = multiply(&a, &b).expect("same dimension");
        for idx in [0usize, 17, 32 * 32 - 1] {
            let mut data = c.data.clone();
            data[idx] = add(data[idx], 1);
            let bad = Matrix::new(32, data).expect("canonical");
            assert!(!check(&a, &b, &bad, 1, &[3; 32]), "element {idx}");
            assert_ne!(bad.digest(), c.digest());
        }
        // Operands of other dimensions are refused.
        let (a2, _) = challenge_matrices(&[1; 32], 31);
        assert!(!check(&a2, &b, &c, 1, &[3; 32]));
        assert_eq!(
            multiply(&a2, &b),
            Err(FreivaldsError::DimensionMismatch {
                left: 31,
                right: 32
            })
        );
    }

    #[test]
    fn challenge_matrices_are_deterministic_and_seed_dependent() {
        let (a1, b1) = challenge_matrices(&[5; 32], 16);
        let (a2, b2) = challenge_matrices(&[5; 32], 16);
        assert_eq!((&a1, &b1), (&a2, &b2));
        assert_ne!(a1, b1);
        let (a3, _) = challenge_matrices(&[6; 32], 16);
        assert_ne!(a1, a3);
        let (a4, _) = challenge_matrices(&[5; 32], 17);
        assert_eq!(a4.n(), 17);
        assert!(a1.data().iter().all(|&x| x < P));
        assert_eq!(challenge_matrices(&[5; 32], 0).0.n(), 1);
        assert_eq!(challenge_matrices(&[5; 32], MAX_N + 1).0.n(), MAX_N);
    }

    #[test]
    fn encode_decode_round_trip_and_digest() {
        let (a, _) = challenge_matrices(&[2; 32], 9);
        let bytes = a.encode();
        assert_eq!(bytes.len(), Matrix::encoded_len(9));
        assert_eq!(Matrix::decode(&bytes), Ok(a.clone()));
        let mut h = blake3::Hasher::new_derive_key(MATRIX_DOMAIN);
        h.update(&bytes);
        assert_eq!(a.digest(), *h.finalize().as_bytes());
        // A different matrix, a different digest.
        let (b, _) = challenge_matrices(&[3; 32], 9);
        assert_ne!(a.digest(), b.digest());
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics_and_accepts_only_canonical_encodings(
            n in 0u32..4,
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
        ) {
            // Headers with a small n and bodies around the right length, and raw bytes.
            let mut bytes = n.to_le_bytes().to_vec();
            bytes.extend_from_slice(&body);
            for input in [bytes, tail] {
                if let Ok(m) = Matrix::decode(&input) {
                    proptest::prop_assert_eq!(m.encode(), input);
                }
            }
        }

        #[test]
        fn encode_decode_round_trips(n in 1u32..8, seed in proptest::prelude::any::<[u8; 32]>()) {
            let (a, _) = challenge_matrices(&seed, n);
            proptest::prop_assert_eq!(Matrix::decode(&a.encode()), Ok(a));
        }
    }

    #[test]
    fn decode_rejects_malformed_input() {
        assert!(matches!(
            Matrix::decode(&[1, 0]),
            Err(FreivaldsError::Length { .. })
        ));
        assert_eq!(
            Matrix::decode(&0u32.to_le_bytes()),
            Err(FreivaldsError::ZeroDimension)
        );
        // A huge n is refused before anything is allocated.
        assert_eq!(
            Matrix::decode(&u32::MAX.to_le_bytes()),
            Err(FreivaldsError::TooLarge {
                n: u32::MAX,
                max: MAX_N
            })
        );
        let (a, _) = challenge_matrices(&[2; 32], 3);
        let bytes = a.encode();
        assert!(matches!(
            Matrix::decode(&bytes[..bytes.len() - 1]),
            Err(FreivaldsError::Length { .. })
        ));
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Matrix::decode(&long),
            Err(FreivaldsError::Length { .. })
        ));
        let mut bad = bytes.clone();
        bad[4 + 8 * 4..4 + 8 * 5].copy_from_slice(&P.to_le_bytes());
        assert_eq!(
            Matrix::decode(&bad),
            Err(FreivaldsError::NonCanonical { index: 4 })
        );
        assert_eq!(
            Matrix::new(2, vec![0, 1, 2]),
            Err(FreivaldsError::Length {
                expected: 4,
                found: 3
            })
        );
        assert_eq!(
            Matrix::new(1, vec![u64::MAX]),
            Err(FreivaldsError::NonCanonical { index: 0 })
        );
    }
}
