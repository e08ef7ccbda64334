//! Proof of retrievability: data committed as a Merkle tree (Rescue-Prime `Rp64_256`) whose
//! leaves hash fixed-size chunks; a STARK shows that the chunks at indices derived from a public
//! seed hash, inside the proof, to leaves on paths that reach the public root.

pub(crate) mod air;
mod commit;
#[cfg(feature = "prover")]
pub(crate) mod prover;
#[cfg(all(test, feature = "prover"))]
#[allow(clippy::unwrap_used)]
mod tests;

#[cfg(feature = "prover")]
pub use commit::progress_bar;
pub use commit::{
    commit_path, commit_reader, files_of, respond_path, respond_reader, DataCommitment,
};

use serde::{Deserialize, Serialize};
use winter_crypto::{hashers::Rp64_256, ElementHasher, Hasher};
use winter_math::{fields::f64::BaseElement, FieldElement};

use crate::error::{ProofError, Result};
use crate::field::{digest_from_bytes, digest_to_bytes, fe, Digest4};

/// Chunk size in bytes (the last chunk of the data is zero-padded).
pub const CHUNK_SIZE: usize = 1024;
/// Bytes packed into one field element (7 bytes always fit below the 64-bit modulus).
pub const BYTES_PER_ELEM: usize = 7;
/// Field elements per chunk: ⌈1024 / 7⌉ = 147.
pub const ELEMS_PER_CHUNK: usize = CHUNK_SIZE.div_ceil(BYTES_PER_ELEM);
/// Rescue permutations needed to hash one chunk: ⌈147 / 8⌉ = 19.
pub const LEAF_SLOTS: usize = ELEMS_PER_CHUNK.div_ceil(8);
/// Deepest supported tree (the 64-slot segment holds 19 leaf slots, up to 44 merges and at least
/// one idle slot).
pub const MAX_DEPTH: u8 = 44;
/// Most challenges per proof.
pub const MAX_K: u32 = 4096;
/// Domain-separation tag of the index derivation.
pub const INDEX_TAG: &[u8] = b"groundtruth/por/index/v1";

/// Converts a chunk (≤ [`CHUNK_SIZE`] bytes, zero-padded) into its 147 field elements.
pub fn chunk_elements(chunk: &[u8]) -> Vec<BaseElement> {
    let mut padded = [0u8; ELEMS_PER_CHUNK * BYTES_PER_ELEM];
    let n = chunk.len().min(CHUNK_SIZE);
    padded[..n].copy_from_slice(&chunk[..n]);
    padded
        .chunks_exact(BYTES_PER_ELEM)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..BYTES_PER_ELEM].copy_from_slice(c);
            fe(u64::from_le_bytes(b))
        })
        .collect()
}

/// Leaf digest of a chunk: `Rp64_256::hash_elements` of its 147 elements.
pub fn leaf_digest(chunk: &[u8]) -> Digest4 {
    to4(&Rp64_256::hash_elements(&chunk_elements(chunk)))
}

/// Parent of two nodes: exactly `Rp64_256::merge` (capacity `[8, 0, 0, 0]`, rate = left ‖ right,
/// one permutation, digest = lanes 4..8).
pub fn merge(left: &Digest4, right: &Digest4) -> Digest4 {
    let mut state = [BaseElement::ZERO; crate::rescue::STATE_WIDTH];
    state[0] = fe(8);
    state[4..8].copy_from_slice(left);
    state[8..12].copy_from_slice(right);
    Rp64_256::apply_permutation(&mut state);
    [state[4], state[5], state[6], state[7]]
}

fn to4(d: &<Rp64_256 as Hasher>::Digest) -> Digest4 {
    let e = d.as_elements();
    [e[0], e[1], e[2], e[3]]
}

/// Digest of an empty subtree of the given height (height 0: the zero digest).
pub(crate) fn empty_digests(depth: u8) -> Vec<Digest4> {
    let mut out = vec![[BaseElement::ZERO; 4]];
    for l in 0..depth as usize {
        let e = out[l];
        out.push(merge(&e, &e));
    }
    out
}

/// A storage audit challenge: the provider's registered commitment plus a beacon seed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    /// Registered Merkle root.
    pub root: [u8; 32],
    /// Tree depth (2^depth leaves; unused leaves are empty).
    pub depth: u8,
    /// Number of data chunks (challenged indices are below it).
    pub num_chunks: u64,
    /// Public seed (from the epoch beacon).
    pub seed: [u8; 32],
    /// Number of chunks requested; the proof covers `k.next_power_of_two()` samples.
    pub k: u32,
}

/// One opened chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkOpening {
    /// Chunk index.
    pub index: u64,
    /// Chunk bytes, exactly [`CHUNK_SIZE`] (the last data chunk zero-padded).
    pub chunk: Vec<u8>,
    /// Sibling digests from the leaf level up (`depth` entries), canonical bytes.
    pub path: Vec<[u8; 32]>,
}

/// The provider's answer: one opening per sample, in sample order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// Openings.
    pub openings: Vec<ChunkOpening>,
}

/// The public statement of a retrievability proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrievabilityStatement {
    /// Chunk size the leaves hash (always [`CHUNK_SIZE`]).
    pub chunk_size: u32,
    /// Tree depth.
    pub depth: u8,
    /// Merkle root.
    pub root: [u8; 32],
    /// Seed the indices derive from.
    pub seed: [u8; 32],
    /// Requested number of chunks.
    pub k: u32,
    /// Number of data chunks.
    pub num_chunks: u64,
}

impl From<&Challenge> for RetrievabilityStatement {
    fn from(c: &Challenge) -> Self {
        Self {
            chunk_size: CHUNK_SIZE as u32,
            depth: c.depth,
            root: c.root,
            seed: c.seed,
            k: c.k,
            num_chunks: c.num_chunks,
        }
    }
}

impl Challenge {
    /// Samples the proof covers: `k` rounded up to a power of two.
    pub fn sample_count(&self) -> usize {
        (self.k.max(1) as usize).next_power_of_two()
    }

    /// Checks the ranges the AIR supports.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 || self.depth > MAX_DEPTH {
            return Err(ProofError::InvalidPublicInputs("depth out of range"));
        }
        if self.k == 0 || self.k > MAX_K {
            return Err(ProofError::InvalidPublicInputs("k out of range"));
        }
        if self.num_chunks == 0 || self.num_chunks > 1u64 << self.depth {
            return Err(ProofError::InvalidPublicInputs("chunk count out of range"));
        }
        if digest_from_bytes(&self.root).is_none() {
            return Err(ProofError::InvalidPublicInputs("root is not canonical"));
        }
        Ok(())
    }

    /// Challenged chunk indices: `u64_le(blake3(tag ‖ seed ‖ i)[..8]) mod num_chunks` for each
    /// sample `i`.
    pub fn indices(&self) -> Result<Vec<u64>> {
        self.validate()?;
        Ok((0..self.sample_count() as u32)
            .map(|i| {
                let mut h = blake3::Hasher::new();
                h.update(INDEX_TAG);
                h.update(&self.seed);
                h.update(&i.to_le_bytes());
                let mut b = [0u8; 8];
                b.copy_from_slice(&h.finalize().as_bytes()[..8]);
                u64::from_le_bytes(b) % self.num_chunks
            })
            .collect())
    }

    /// Checks a response natively (no STARK): every opening hashes to the root.
    pub fn check_response(&self, response: &Response) -> Result<()> {
        let root = digest_from_bytes(&self.root)
            .ok_or(ProofError::InvalidPublicInputs("root is not canonical"))?;
        let indices = self.indices()?;
        if response.openings.len() != indices.len() {
            return Err(ProofError::ResponseShape("wrong number of openings"));
        }
        for (sample, (o, &idx)) in response.openings.iter().zip(&indices).enumerate() {
            if o.index != idx {
                return Err(ProofError::ResponseShape("opening for the wrong index"));
            }
            if o.chunk.len() != CHUNK_SIZE {
                return Err(ProofError::ResponseShape("chunk length"));
            }
            if o.path.len() != self.depth as usize {
                return Err(ProofError::ResponseShape("path length"));
            }
            let mut node = leaf_digest(&o.chunk);
            for (level, sib) in o.path.iter().enumerate() {
                let sib = digest_from_bytes(sib)
                    .ok_or(ProofError::ResponseShape("non-canonical path digest"))?;
                node = if (idx >> level) & 1 == 0 {
                    merge(&node, &sib)
                } else {
                    merge(&sib, &node)
                };
            }
            if node != root {
                return Err(ProofError::OpeningMismatch { sample, index: idx });
            }
        }
        Ok(())
    }
}

impl RetrievabilityStatement {
    /// The challenge this statement answers.
    pub fn challenge(&self) -> Challenge {
        Challenge {
            root: self.root,
            depth: self.depth,
            num_chunks: self.num_chunks,
            seed: self.seed,
            k: self.k,
        }
    }

    pub(crate) fn air_inputs(&self) -> Result<air::PorPublic> {
        if self.chunk_size as usize != CHUNK_SIZE {
            return Err(ProofError::UnsupportedParameters("chunk size"));
        }
        let c = self.challenge();
        let indices = c.indices()?;
        Ok(air::PorPublic {
            root: digest_from_bytes(&self.root)
                .ok_or(ProofError::InvalidPublicInputs("root is not canonical"))?,
            depth: self.depth as usize,
            indices: indices.into_iter().map(fe).collect(),
        })
    }

    /// Trace length of the proof for this statement.
    pub(crate) fn trace_length(&self) -> usize {
        self.challenge().sample_count() * air::SEGMENT
    }
}

/// Canonical bytes of a digest (re-exported helper for paths).
pub fn digest_bytes(d: &Digest4) -> [u8; 32] {
    digest_to_bytes(d)
}
