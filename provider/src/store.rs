//! A storage provider's data as the retrievability proof sees it: the files of a path
//! concatenated in sorted order (the order `groundtruth_proofs::por::commit_path` commits), cut
//! into 1 KiB chunks, with the Merkle tree's digests kept in memory so that any chunk's
//! opening (bytes + sibling path) costs one read.
//!
//! The tree is built from the data once, at start, and checked against the streaming
//! commitment. The digests are what a provider keeps to answer; the chunk bytes are always
//! read from disk, so a provider that lost chunks cannot open them (its proof and its spot
//! retrievals fail exactly for the chunks it lost).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use groundtruth_proofs::field::{digest_from_bytes, digest_to_bytes, Digest4};
use groundtruth_proofs::por::{self, CHUNK_SIZE};
use groundtruth_proofs::{Challenge, ChunkOpening, DataCommitment, Response};

use crate::error::{ProviderError, Result};

/// Largest number of chunks whose tree is kept in memory (64 B of digests a chunk, two
/// levels' worth on average: 2^24 chunks = 16 GiB of data ≈ 1 GiB of digests).
pub const MAX_CACHED_CHUNKS: u64 = 1 << 24;

/// The data and its tree.
#[derive(Debug)]
pub struct ChunkStore {
    files: Vec<(PathBuf, u64)>,
    data_len: u64,
    commitment: DataCommitment,
    /// `levels[0]` are the leaves (one per chunk), `levels[depth]` the root; each level
    /// holds only the nodes over data (missing right siblings are the empty digests).
    levels: Vec<Vec<Digest4>>,
    empty: Vec<Digest4>,
}

/// Smallest tree depth (at least 1) whose leaves hold `num_chunks`.
pub fn depth_for(num_chunks: u64) -> u8 {
    let mut d = 1u8;
    while d < por::MAX_DEPTH && (1u64 << d) < num_chunks {
        d += 1;
    }
    d
}

impl ChunkStore {
    /// Commits to `path` with the streaming builder (`progress(done, total)` bytes), then
    /// builds the in-memory tree and checks it gives the same root. `depth`: the tree depth,
    /// or the smallest that fits.
    pub fn open(
        path: &Path,
        depth: Option<u8>,
        progress: Option<&dyn Fn(u64, u64)>,
    ) -> Result<Self> {
        let files = por::files_of(path)?;
        let data_len = files
            .iter()
            .try_fold(0u64, |a, (_, l)| a.checked_add(*l))
            .ok_or(ProviderError::Data("data length overflows".into()))?;
        if data_len == 0 {
            return Err(ProviderError::Data(format!(
                "{} holds no data",
                path.display()
            )));
        }
        let num_chunks = data_len.div_ceil(CHUNK_SIZE as u64);
        if num_chunks > MAX_CACHED_CHUNKS {
            return Err(ProviderError::Data(format!(
                "{num_chunks} chunks: more than this agent keeps a tree for ({MAX_CACHED_CHUNKS})"
            )));
        }
        let depth = depth.unwrap_or_else(|| depth_for(num_chunks));
        let commitment = por::commit_path(path, depth, progress)?;
        let mut empty = vec![[groundtruth_proofs::field::fe(0); 4]];
        for l in 0..usize::from(depth) {
            let e = empty[l];
            empty.push(por::merge(&e, &e));
        }
        let mut store = Self {
            files,
            data_len,
            commitment,
            levels: Vec::new(),
            empty,
        };
        let mut leaves = Vec::with_capacity(usize::try_from(num_chunks).unwrap_or(0));
        for i in 0..num_chunks {
            leaves.push(por::leaf_digest(&store.chunk(i)?));
        }
        let mut levels = vec![leaves];
        for l in 0..usize::from(depth) {
            let below = &levels[l];
            let mut up = Vec::with_capacity(below.len().div_ceil(2));
            for pair in below.chunks(2) {
                let right = pair.get(1).copied().unwrap_or(store.empty[l]);
                up.push(por::merge(&pair[0], &right));
            }
            levels.push(up);
        }
        let root = levels
            .last()
            .and_then(|l| l.first())
            .map(digest_to_bytes)
            .ok_or(ProviderError::Data("empty tree".into()))?;
        if root != store.commitment.root {
            return Err(ProviderError::Data(
                "in-memory tree disagrees with the streaming commitment".into(),
            ));
        }
        store.levels = levels;
        Ok(store)
    }

    /// What the provider registers.
    pub fn commitment(&self) -> &DataCommitment {
        &self.commitment
    }

    /// Number of chunks.
    pub fn num_chunks(&self) -> u64 {
        self.commitment.num_chunks
    }

    /// Reads chunk `index` from disk (the last one zero-padded to [`CHUNK_SIZE`]).
    pub fn chunk(&self, index: u64) -> Result<Vec<u8>> {
        let start = index
            .checked_mul(CHUNK_SIZE as u64)
            .filter(|s| *s < self.data_len)
            .ok_or(ProviderError::NoSuchChunk(index))?;
        let mut out = vec![0u8; CHUNK_SIZE];
        let mut filled = 0usize;
        let mut offset = 0u64;
        for (path, len) in &self.files {
            let file_end = offset.saturating_add(*len);
            let pos = start.saturating_add(filled as u64);
            if filled < CHUNK_SIZE && pos < file_end && pos >= offset {
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(pos - offset))?;
                let want = (CHUNK_SIZE - filled).min(usize::try_from(file_end - pos).unwrap_or(0));
                let buf = out
                    .get_mut(filled..filled + want)
                    .ok_or(ProviderError::Data("chunk bounds".into()))?;
                // A file shorter than when it was committed reads short: the tail stays zero.
                let mut got = 0;
                while got < want {
                    match f.read(&mut buf[got..])? {
                        0 => break,
                        n => got += n,
                    }
                }
                filled += want;
            }
            offset = file_end;
        }
        Ok(out)
    }

    /// Sibling digests of chunk `index`, leaf level first (from the in-memory tree).
    pub fn path(&self, index: u64) -> Result<Vec<[u8; 32]>> {
        if index >= self.num_chunks() {
            return Err(ProviderError::NoSuchChunk(index));
        }
        let mut out = Vec::with_capacity(usize::from(self.commitment.depth));
        for l in 0..usize::from(self.commitment.depth) {
            let sib = usize::try_from((index >> l) ^ 1).unwrap_or(usize::MAX);
            let d = self.levels[l].get(sib).copied().unwrap_or(self.empty[l]);
            out.push(digest_to_bytes(&d));
        }
        Ok(out)
    }

    /// Chunk `index` read from disk, with its path.
    pub fn opening(&self, index: u64) -> Result<ChunkOpening> {
        Ok(ChunkOpening {
            index,
            chunk: self.chunk(index)?,
            path: self.path(index)?,
        })
    }

    /// The openings a challenge asks for (not checked: a chunk that changed on disk gives an
    /// opening that does not reach the root, which the prover refuses).
    pub fn respond(&self, challenge: &Challenge) -> Result<Response> {
        let openings = challenge
            .indices()?
            .into_iter()
            .map(|i| self.opening(i))
            .collect::<Result<Vec<_>>>()?;
        Ok(Response { openings })
    }
}

/// Whether `data` with sibling `path` is chunk `index` of the tree with `root` (the check a
/// validator makes on a spot retrieval).
pub fn verify_opening(root: &[u8; 32], index: u64, data: &[u8], path: &[[u8; 32]]) -> bool {
    let Some(root) = digest_from_bytes(root) else {
        return false;
    };
    if data.len() != CHUNK_SIZE || path.len() > 64 {
        return false;
    }
    let mut node = por::leaf_digest(data);
    for (level, sib) in path.iter().enumerate() {
        let Some(sib) = digest_from_bytes(sib) else {
            return false;
        };
        node = if (index >> level) & 1 == 0 {
            por::merge(&node, &sib)
        } else {
            por::merge(&sib, &node)
        };
    }
    node == root
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn data(n: usize) -> Vec<u8> {
        // No two chunks alike (a periodic pattern would make sibling chunks equal).
        (0..n)
            .map(|i| blake3::hash(&(i as u64).to_le_bytes()).as_bytes()[0])
            .collect()
    }

    #[test]
    fn openings_reach_the_streamed_root_and_a_changed_chunk_does_not() {
        let dir = tempfile::tempdir().unwrap();
        // Two files, the first not a whole number of chunks: chunks straddle them.
        std::fs::write(dir.path().join("a"), data(3000)).unwrap();
        std::fs::write(dir.path().join("b"), data(5000)).unwrap();
        let store = ChunkStore::open(dir.path(), None, None).unwrap();
        let c = store.commitment().clone();
        assert_eq!(c.num_chunks, 8);
        assert_eq!(c.depth, 3);
        for i in 0..8 {
            let o = store.opening(i).unwrap();
            assert!(verify_opening(&c.root, i, &o.chunk, &o.path), "chunk {i}");
            assert!(!verify_opening(&c.root, i ^ 1, &o.chunk, &o.path));
        }
        let challenge = Challenge {
            root: c.root,
            depth: c.depth,
            num_chunks: c.num_chunks,
            seed: [9; 32],
            k: 4,
        };
        challenge
            .check_response(&store.respond(&challenge).unwrap())
            .unwrap();
        assert!(store.chunk(8).is_err());

        // Overwrite chunk 5 (bytes 5120..6144, inside b): its opening no longer verifies.
        let mut b = data(5000);
        for x in &mut b[5120 - 3000..6144 - 3000] {
            *x = 0;
        }
        std::fs::write(dir.path().join("b"), b).unwrap();
        let o = store.opening(5).unwrap();
        assert!(!verify_opening(&c.root, 5, &o.chunk, &o.path));
        let o = store.opening(4).unwrap();
        assert!(verify_opening(&c.root, 4, &o.chunk, &o.path));
    }

    #[test]
    fn an_explicit_depth_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("d");
        std::fs::write(&f, data(4096)).unwrap();
        let store = ChunkStore::open(&f, Some(10), None).unwrap();
        assert_eq!(store.commitment().depth, 10);
        let o = store.opening(3).unwrap();
        assert_eq!(o.path.len(), 10);
        assert!(verify_opening(
            &store.commitment().root,
            3,
            &o.chunk,
            &o.path
        ));
    }
}
