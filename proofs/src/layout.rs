//! Bounded pre-parse of winterfell 0.13 proof bytes, run before winterfell's own deserialiser.
//!
//! winterfell sizes allocations from length fields inside the proof (`Vec::with_capacity` of a
//! 64-bit length in `Vec<T>::read_from` and in batch Merkle proofs), so a crafted length can make
//! the process abort on allocation failure, which `catch_unwind` cannot stop. This module walks
//! the same layout with a reader that refuses any length larger than the bytes left (or than a
//! cap derived from the statement and its options), and checks every fixed part (trace shape,
//! field, options, Merkle depths) against what the statement implies. Only bytes that pass are
//! handed to winterfell, so its allocations are bounded by a small multiple of the input.
//!
//! Layout of `Proof` (winter-air 0.13.1 `Proof::read_from`):
//! ```text
//! context:      trace info (main u8, aux u8, aux rands u8, log2 length u8, meta u16 + bytes)
//!               | modulus (u8 + bytes) | options (10 bytes) | num_constraints vint
//! num_unique_queries u8 | commitments (u16 + bytes)
//! trace queries × segments, constraint queries: values (vint + bytes), paths (vint + bytes,
//!               a batch Merkle proof: depth u8 | vectors vint | vectors × (vint + digests))
//! ood frame:    trace states (u16 + bytes) | quotient states (u16 + bytes), each starting
//!               with the frame size, 2
//! fri proof:    layers u8 | layers × (values u32 + bytes | paths u32 + bytes, a batch Merkle
//!               proof) | remainder (u16 + bytes) | partitions u8
//! pow nonce u64
//! ```

use winter_math::{fields::f64::BaseElement, StarkField};
use winter_utils::Serializable;

use crate::codec::Reader;
use crate::envelope::Shape;
use crate::error::{ProofError, Result};
use crate::options::SecurityLevel;

/// Largest winterfell proof accepted (the largest proofs this crate makes are ~0.2 MB).
pub const MAX_PROOF_BYTES: usize = 1 << 20;
/// Digest size of the commitment hash (Blake3-256).
const DIGEST: usize = 32;
/// Upper bound on the number of constraints a context may state.
const MAX_CONSTRAINTS: u64 = 1 << 12;

/// Checks the layout of `bytes` against the statement's shape and level; see the module docs.
pub(crate) fn check(bytes: &[u8], level: SecurityLevel, shape: &Shape) -> Result<()> {
    if bytes.len() > MAX_PROOF_BYTES {
        return Err(ProofError::ProofDecode(format!(
            "proof is {} bytes, more than {MAX_PROOF_BYTES}",
            bytes.len()
        )));
    }
    walk(&mut Reader::new(bytes), level, shape).map_err(|e| match e {
        ProofError::Decode(what) => ProofError::ProofDecode(what.to_string()),
        other => other,
    })
}

fn walk(r: &mut Reader<'_>, level: SecurityLevel, shape: &Shape) -> Result<()> {
    let options = level.options_for(shape.length);
    // Trace info.
    let main = r.u8("trace info")?;
    let aux = r.u8("trace info")?;
    let rands = r.u8("trace info")?;
    let log_len = r.u8("trace info")?;
    if usize::from(main) != shape.main_width
        || usize::from(aux) != shape.aux_width
        || (shape.aux_width > 0 && usize::from(rands) != shape.aux_rands)
        || (shape.aux_width == 0 && rands != 0)
    {
        return Err(ProofError::TraceShape("trace width"));
    }
    if 1usize.checked_shl(u32::from(log_len)) != Some(shape.length) {
        return Err(ProofError::TraceShape("trace length"));
    }
    let meta = r.u16("trace meta")?;
    if meta != 0 {
        return Err(ProofError::TraceShape("unexpected trace metadata"));
    }
    // Field.
    let modulus = BaseElement::get_modulus_le_bytes();
    let m = r.u8("modulus")?;
    if r.take(usize::from(m), "modulus")? != modulus.as_slice() {
        return Err(ProofError::ProofDecode("field modulus".into()));
    }
    // Options: exactly the level's.
    let expected = options.to_bytes();
    if r.take(expected.len(), "options")? != expected.as_slice() {
        return Err(ProofError::OptionsMismatch);
    }
    if r.vint("constraint count")? > MAX_CONSTRAINTS {
        return Err(ProofError::ProofDecode("constraint count".into()));
    }

    let queries = options.num_queries();
    let unique = usize::from(r.u8("query count")?);
    if unique == 0 || unique > queries {
        return Err(ProofError::ProofDecode("query count".into()));
    }
    let segments = if shape.aux_width > 0 { 2 } else { 1 };
    let lde_log = shape.length.ilog2() + options.blowup_factor().ilog2();
    let fold_log = options.to_fri_options().folding_factor().ilog2();
    // One commitment per trace segment, one for the constraints, at most one per FRI layer.
    let max_layers = (lde_log / fold_log) as usize;
    let commitments = usize::from(r.u16("commitments")?);
    if commitments % DIGEST != 0 || commitments / DIGEST > segments + 1 + max_layers {
        return Err(ProofError::ProofDecode("commitments".into()));
    }
    r.take(commitments, "commitments")?;

    for _ in 0..segments + 1 {
        let values = r.vint_len(1, usize::MAX, "query values")?;
        r.take(values, "query values")?;
        let paths = r.vint_len(1, usize::MAX, "query paths")?;
        merkle_proof(r.take(paths, "query paths")?, lde_log, queries)?;
    }

    // Out-of-domain frame. Each part starts with its frame size, which winterfell 0.13 asserts
    // (panics) is 2 (current and next row) instead of returning an error.
    for what in ["ood trace states", "ood quotient states"] {
        let n = usize::from(r.u16(what)?);
        let states = r.take(n, what)?;
        if states.first() != Some(&2) {
            return Err(ProofError::ProofDecode(format!(
                "{what}: frame size is not 2"
            )));
        }
    }

    // FRI.
    let layers = usize::from(r.u8("fri layers")?);
    if layers > max_layers {
        return Err(ProofError::ProofDecode("fri layer count".into()));
    }
    for i in 0..layers {
        let values =
            usize::try_from(r.u32("fri values")?).map_err(|_| ProofError::Decode("fri values"))?;
        if values == 0 {
            return Err(ProofError::ProofDecode("empty fri layer".into()));
        }
        r.take(values, "fri values")?;
        let paths =
            usize::try_from(r.u32("fri paths")?).map_err(|_| ProofError::Decode("fri paths"))?;
        // Layer i commits to the domain folded i + 1 times.
        let depth = (i as u32 + 1)
            .checked_mul(fold_log)
            .and_then(|f| lde_log.checked_sub(f))
            .ok_or(ProofError::Decode("fri layer depth"))?;
        merkle_proof(r.take(paths, "fri paths")?, depth, queries)?;
    }
    let remainder = usize::from(r.u16("fri remainder")?);
    r.take(remainder, "fri remainder")?;
    r.u8("fri partitions")?;
    r.u64("proof-of-work nonce")?;
    r.finish("trailing bytes after the proof")
}

/// A batch Merkle proof (winter-crypto 0.13.1 `BatchMerkleProof::read_from`): depth u8, number
/// of node vectors (one per opened leaf), then each vector as a vint count of 32-byte digests.
/// The depth must be `depth`, the vectors at most `max_leaves`, each at most `depth` digests,
/// and the bytes fully consumed.
fn merkle_proof(bytes: &[u8], depth: u32, max_leaves: usize) -> Result<()> {
    let mut r = Reader::new(bytes);
    if u32::from(r.u8("merkle depth")?) != depth {
        return Err(ProofError::ProofDecode("merkle proof depth".into()));
    }
    let vectors = r.vint_len(1, max_leaves, "merkle node vectors")?;
    for _ in 0..vectors {
        let n = r.vint_len(DIGEST, depth as usize, "merkle nodes")?;
        r.take(n * DIGEST, "merkle nodes")?;
    }
    r.finish("trailing bytes in a merkle proof")
}
