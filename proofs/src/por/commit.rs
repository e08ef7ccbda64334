//! Streaming commitment builder: reads a file or a directory once, chunk by chunk, keeping only
//! one Merkle node per tree level (memory O(depth), constant in the data size). The same pass,
//! given a challenge, collects the openings (memory O(k · depth)).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::{
    empty_digests, leaf_digest, merge, Challenge, ChunkOpening, Response, CHUNK_SIZE, MAX_DEPTH,
};
use crate::error::{ProofError, Result};
use crate::field::{digest_from_bytes, digest_to_bytes, Digest4};

/// A provider's data commitment (what it registers on the ledger).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataCommitment {
    /// Merkle root (canonical bytes of a Rescue digest).
    pub root: [u8; 32],
    /// Tree depth.
    pub depth: u8,
    /// Number of chunks.
    pub num_chunks: u64,
    /// Data length in bytes.
    pub data_len: u64,
}

/// Merkle tree built left to right over a stream of leaves.
struct StreamingTree {
    depth: u8,
    empty: Vec<Digest4>,
    /// (level, position, digest), levels strictly decreasing from bottom to top.
    stack: Vec<(u8, u64, Digest4)>,
    leaves: u64,
    wanted: BTreeSet<(u8, u64)>,
    found: BTreeMap<(u8, u64), Digest4>,
}

impl StreamingTree {
    fn new(depth: u8, wanted: BTreeSet<(u8, u64)>) -> Result<Self> {
        if depth == 0 || depth > MAX_DEPTH {
            return Err(ProofError::InvalidInput("depth out of range"));
        }
        Ok(Self {
            depth,
            empty: empty_digests(depth),
            stack: Vec::new(),
            leaves: 0,
            wanted,
            found: BTreeMap::new(),
        })
    }

    fn record(&mut self, level: u8, pos: u64, d: Digest4) {
        if self.wanted.contains(&(level, pos)) {
            self.found.insert((level, pos), d);
        }
    }

    fn push_node(&mut self, mut level: u8, mut pos: u64, mut d: Digest4) {
        self.record(level, pos, d);
        while let Some(&(l, p, left)) = self.stack.last() {
            if l != level {
                break;
            }
            self.stack.pop();
            d = merge(&left, &d);
            level += 1;
            pos = p / 2;
            self.record(level, pos, d);
        }
        self.stack.push((level, pos, d));
    }

    fn push_leaf(&mut self, d: Digest4) -> Result<()> {
        if self.leaves >= 1u64 << self.depth {
            return Err(ProofError::InvalidInput("data does not fit the tree depth"));
        }
        let pos = self.leaves;
        self.leaves += 1;
        self.push_node(0, pos, d);
        Ok(())
    }

    /// Completes the tree with empty subtrees and returns the root.
    fn finish(&mut self) -> Digest4 {
        loop {
            match self.stack.last() {
                None => {
                    let d = self.empty[self.depth as usize];
                    self.record(self.depth, 0, d);
                    return d;
                }
                Some(&(l, _, d)) if l == self.depth => return d,
                Some(&(l, p, _)) => {
                    // The top node is a left child: its right sibling is empty.
                    let e = self.empty[l as usize];
                    self.push_node(l, p + 1, e);
                }
            }
        }
    }
}

/// The regular files under `path` (or `path` itself when it is a file) in commitment order
/// (sorted path order, depth first), each with its length: the data [`commit_path`] and
/// [`respond_path`] read, and what a provider maps chunk offsets onto.
pub fn files_of(path: &Path) -> Result<Vec<(PathBuf, u64)>> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, u64)>) -> Result<()> {
        let meta = std::fs::metadata(p)?;
        if meta.is_file() {
            out.push((p.to_path_buf(), meta.len()));
        } else if meta.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
                .map(|e| e.map(|e| e.path()))
                .collect::<std::io::Result<_>>()?;
            entries.sort();
            for e in entries {
                walk(&e, out)?;
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(path, &mut out)?;
    Ok(out)
}

/// [`files_of`] as paths, and their total size.
fn files_and_total(path: &Path) -> Result<(Vec<PathBuf>, u64)> {
    let files = files_of(path)?;
    let total = files
        .iter()
        .fold(0u64, |acc, (_, len)| acc.saturating_add(*len));
    Ok((files.into_iter().map(|(f, _)| f).collect(), total))
}

/// Reads `reader` to the end in chunks, calling `on_chunk(index, bytes)` for each full or final
/// partial chunk and `progress(bytes_so_far)` after each.
fn for_each_chunk<R: Read>(
    reader: &mut R,
    carry: &mut Vec<u8>,
    bytes: &mut u64,
    progress: Option<&dyn Fn(u64)>,
    on_chunk: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut buf = vec![0u8; 64 * CHUNK_SIZE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        *bytes = bytes.saturating_add(n as u64);
        let mut data = &buf[..n];
        if !carry.is_empty() {
            let need = CHUNK_SIZE - carry.len();
            let take = need.min(data.len());
            carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if carry.len() == CHUNK_SIZE {
                on_chunk(carry)?;
                carry.clear();
            }
        }
        let mut it = data.chunks_exact(CHUNK_SIZE);
        for c in &mut it {
            on_chunk(c)?;
        }
        carry.extend_from_slice(it.remainder());
        if let Some(p) = progress {
            p(*bytes);
        }
    }
}

struct Pass {
    root: Digest4,
    num_chunks: u64,
    data_len: u64,
    found: BTreeMap<(u8, u64), Digest4>,
    chunks: BTreeMap<u64, Vec<u8>>,
}

type ReaderIter<'a> = dyn Iterator<Item = Result<Box<dyn Read + 'a>>> + 'a;

fn run_pass(
    readers: &mut ReaderIter<'_>,
    depth: u8,
    wanted_nodes: BTreeSet<(u8, u64)>,
    wanted_chunks: &BTreeSet<u64>,
    progress: Option<&dyn Fn(u64)>,
) -> Result<Pass> {
    let mut tree = StreamingTree::new(depth, wanted_nodes)?;
    let mut chunks = BTreeMap::new();
    let mut carry = Vec::with_capacity(CHUNK_SIZE);
    let mut bytes = 0u64;
    let mut on_chunk = |c: &[u8]| -> Result<()> {
        let idx = tree.leaves;
        if wanted_chunks.contains(&idx) {
            let mut full = c.to_vec();
            full.resize(CHUNK_SIZE, 0);
            chunks.insert(idx, full);
        }
        tree.push_leaf(leaf_digest(c))
    };
    for r in readers {
        let mut r = r?;
        for_each_chunk(&mut r, &mut carry, &mut bytes, progress, &mut on_chunk)?;
    }
    if !carry.is_empty() {
        on_chunk(&carry)?;
    }
    let num_chunks = tree.leaves;
    let root = tree.finish();
    Ok(Pass {
        root,
        num_chunks,
        data_len: bytes,
        found: tree.found,
        chunks,
    })
}

fn file_readers(files: Vec<PathBuf>) -> Box<ReaderIter<'static>> {
    Box::new(
        files
            .into_iter()
            .map(|f| -> Result<Box<dyn Read>> { Ok(Box::new(File::open(f)?)) }),
    )
}

fn commitment_of(pass: &Pass, depth: u8) -> DataCommitment {
    DataCommitment {
        root: digest_to_bytes(&pass.root),
        depth,
        num_chunks: pass.num_chunks,
        data_len: pass.data_len,
    }
}

/// Commits to everything `reader` yields (constant memory). `progress` gets bytes read so far.
pub fn commit_reader<R: Read>(
    reader: R,
    depth: u8,
    progress: Option<&dyn Fn(u64)>,
) -> Result<DataCommitment> {
    let mut one = std::iter::once(Ok(Box::new(reader) as Box<dyn Read>));
    let pass = run_pass(&mut one, depth, BTreeSet::new(), &BTreeSet::new(), progress)?;
    Ok(commitment_of(&pass, depth))
}

/// Commits to a file, or to a directory's regular files concatenated in sorted path order
/// (file names are not committed). `progress` gets `(bytes_so_far, total_bytes)`.
pub fn commit_path(
    path: &Path,
    depth: u8,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<DataCommitment> {
    let (files, total) = files_and_total(path)?;
    let cb = progress.map(|p| move |b: u64| p(b, total));
    let cb_ref = cb.as_ref().map(|c| c as &dyn Fn(u64));
    let pass = run_pass(
        &mut *file_readers(files),
        depth,
        BTreeSet::new(),
        &BTreeSet::new(),
        cb_ref,
    )?;
    Ok(commitment_of(&pass, depth))
}

fn respond_with(
    readers: &mut ReaderIter<'_>,
    challenge: &Challenge,
    progress: Option<&dyn Fn(u64)>,
) -> Result<Response> {
    let indices = challenge.indices()?;
    let mut wanted = BTreeSet::new();
    for &i in &indices {
        for level in 0..challenge.depth {
            wanted.insert((level, (i >> level) ^ 1));
        }
    }
    let wanted_chunks: BTreeSet<u64> = indices.iter().copied().collect();
    let pass = run_pass(readers, challenge.depth, wanted, &wanted_chunks, progress)?;
    if digest_from_bytes(&challenge.root) != Some(pass.root)
        || pass.num_chunks != challenge.num_chunks
    {
        return Err(ProofError::InvalidInput(
            "data does not match the committed root",
        ));
    }
    let mut openings = Vec::with_capacity(indices.len());
    for &i in &indices {
        let chunk = pass
            .chunks
            .get(&i)
            .cloned()
            .ok_or(ProofError::InvalidInput("chunk missing"))?;
        let mut path = Vec::with_capacity(challenge.depth as usize);
        for level in 0..challenge.depth {
            let d = pass
                .found
                .get(&(level, (i >> level) ^ 1))
                .ok_or(ProofError::InvalidInput("sibling missing"))?;
            path.push(digest_to_bytes(d));
        }
        openings.push(ChunkOpening {
            index: i,
            chunk,
            path,
        });
    }
    Ok(Response { openings })
}

/// Answers a challenge over the data `reader` yields, in one streaming pass.
pub fn respond_reader<R: Read>(
    reader: R,
    challenge: &Challenge,
    progress: Option<&dyn Fn(u64)>,
) -> Result<Response> {
    let mut one = std::iter::once(Ok(Box::new(reader) as Box<dyn Read>));
    respond_with(&mut one, challenge, progress)
}

/// Answers a challenge over a file or directory (same data order as [`commit_path`]).
pub fn respond_path(
    path: &Path,
    challenge: &Challenge,
    progress: Option<&dyn Fn(u64, u64)>,
) -> Result<Response> {
    let (files, total) = files_and_total(path)?;
    let cb = progress.map(|p| move |b: u64| p(b, total));
    let cb_ref = cb.as_ref().map(|c| c as &dyn Fn(u64));
    respond_with(&mut *file_readers(files), challenge, cb_ref)
}

/// An indicatif progress bar over `total` bytes, for [`commit_path`] / [`respond_path`]:
/// `let bar = progress_bar(); commit_path(p, 30, Some(&|done, total| { bar.set_length(total); bar.set_position(done) }))`.
#[cfg(feature = "prover")]
pub fn progress_bar() -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Reference: the whole tree in memory.
    fn naive_root(data: &[u8], depth: u8) -> Digest4 {
        let empty = empty_digests(depth);
        let mut level: Vec<Digest4> = data.chunks(CHUNK_SIZE).map(leaf_digest).collect();
        for l in 0..depth as usize {
            if level.len() % 2 == 1 {
                level.push(empty[l]);
            }
            if level.is_empty() {
                level.push(empty[l + 1]);
                continue;
            }
            level = level.chunks(2).map(|p| merge(&p[0], &p[1])).collect();
        }
        level.first().copied().unwrap_or(empty[depth as usize])
    }

    #[test]
    fn streaming_root_matches_naive_tree() {
        for len in [
            0usize,
            1,
            1023,
            1024,
            1025,
            5 * 1024 + 17,
            64 * 1024 + 3,
            70 * 1024,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let c = commit_reader(&data[..], 8, None).unwrap();
            assert_eq!(
                digest_from_bytes(&c.root),
                Some(naive_root(&data, 8)),
                "len {len}"
            );
            assert_eq!(c.num_chunks, len.div_ceil(CHUNK_SIZE) as u64);
            assert_eq!(c.data_len, len as u64);
        }
    }

    #[test]
    fn responses_check_natively_and_directory_equals_concatenation() {
        let dir = tempfile::tempdir().unwrap();
        let a: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let b: Vec<u8> = (0..5000u32).map(|i| (i / 3) as u8).collect();
        std::fs::write(dir.path().join("a.bin"), &a).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b.bin"), &b).unwrap();
        let seen = std::cell::Cell::new(0u64);
        let c = commit_path(dir.path(), 12, Some(&|done, _total| seen.set(done))).unwrap();
        assert_eq!(seen.get(), 8000);
        let concat: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        assert_eq!(c, commit_reader(&concat[..], 12, None).unwrap());
        let ch = Challenge {
            root: c.root,
            depth: 12,
            num_chunks: c.num_chunks,
            seed: [7; 32],
            k: 3,
        };
        let resp = respond_path(dir.path(), &ch, None).unwrap();
        assert_eq!(resp.openings.len(), 4);
        ch.check_response(&resp).unwrap();
        let mut bad = resp.clone();
        bad.openings[1].chunk[5] ^= 1;
        assert!(matches!(
            ch.check_response(&bad),
            Err(ProofError::OpeningMismatch { sample: 1, .. })
        ));
    }

    #[test]
    fn files_of_lists_files_depth_first_in_sorted_order_with_lengths() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("m")).unwrap();
        std::fs::write(dir.path().join("z.bin"), [1u8; 3]).unwrap();
        std::fs::write(dir.path().join("m/b.bin"), [2u8; 5]).unwrap();
        std::fs::write(dir.path().join("a.bin"), [3u8; 7]).unwrap();
        let files = files_of(dir.path()).unwrap();
        let names: Vec<(String, u64)> = files
            .iter()
            .map(|(p, len)| {
                let rel = p.strip_prefix(dir.path()).unwrap();
                (rel.to_string_lossy().into_owned(), *len)
            })
            .collect();
        assert_eq!(
            names,
            [("a.bin", 7), ("m/b.bin", 5), ("z.bin", 3)].map(|(n, l)| (n.to_string(), l))
        );
        // A file is its own list; a missing path is an error.
        let one = dir.path().join("a.bin");
        assert_eq!(files_of(&one).unwrap(), vec![(one.clone(), 7)]);
        assert!(files_of(&dir.path().join("missing")).is_err());
    }
}
