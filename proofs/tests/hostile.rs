//! Hostile proof files: crafted length fields inside the winterfell proof and the envelope must
//! give a clean error, never a panic, an abort or an allocation sized by the crafted length.
//! The crafted files are also decoded in a child process whose address space is limited to
//! 256 MiB, where any allocation sized by a crafted length (2^31 bytes and up) would abort it.
#![allow(clippy::unwrap_used)]

use groundtruth_proofs::{
    envelope::MAX_PROOF_BYTES, prove_metered, prove_retrievability, verify, verify_bytes,
    Challenge, DeviceSeries, Epoch, ProofEnvelope, ProofError, SecurityLevel,
};

fn check(bytes: &[u8]) -> Result<(), ProofError> {
    verify_bytes(bytes).map(|_| ())
}

fn metered() -> ProofEnvelope {
    let series = vec![
        DeviceSeries {
            id: [1; 32],
            cap: 1000,
            start_register: 5,
            first_seq: 0,
            first_interval_start: 0,
            interval_len: 300,
            values: (0..290).map(|i| i % 1000).collect(),
        },
        DeviceSeries {
            id: [2; 32],
            cap: 10,
            start_register: 0,
            first_seq: 0,
            first_interval_start: 0,
            interval_len: 300,
            values: vec![10, 0, 3],
        },
    ];
    prove_metered(
        &Epoch::covering(1, &series),
        &series,
        SecurityLevel::Default100,
    )
    .unwrap()
}

/// A winterfell `usize` in its vint64 encoding.
fn vint(v: u64) -> Vec<u8> {
    let bits = 64 - v.leading_zeros().min(63);
    let len = bits.div_ceil(7).max(1) as usize;
    if len > 8 {
        let mut out = vec![0];
        out.extend_from_slice(&v.to_le_bytes());
        return out;
    }
    let enc = ((v << 1) | 1) << (len - 1);
    enc.to_le_bytes()[..len].to_vec()
}

fn read_vint(b: &[u8], at: usize) -> (u64, usize) {
    let len = b[at].trailing_zeros() as usize + 1;
    if len == 9 {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(&b[at + 1..at + 9]);
        return (u64::from_le_bytes(limb), 9);
    }
    let mut limb = [0u8; 8];
    limb[..len].copy_from_slice(&b[at..at + len]);
    (u64::from_le_bytes(limb) >> len, len)
}

/// Offsets of the fields a crafted file rewrites, found by walking an honest proof.
#[derive(Debug)]
struct Fields {
    log_len: usize,
    num_constraints: usize,
    unique_queries: usize,
    commitments: usize,
    /// (offset of the values vint, offset of the paths vint, offset of the paths bytes, paths length)
    trace_values: usize,
    trace_paths: usize,
    trace_paths_body: usize,
    trace_paths_len: usize,
    fri_layers: usize,
    fri_first_paths: usize,
}

fn fields(p: &[u8]) -> Fields {
    let log_len = 3;
    let meta = 4;
    let mut at = meta + 2 + 1 + 8 + 10; // trace info, modulus, options
    let num_constraints = at;
    at += read_vint(p, at).1;
    let unique_queries = at;
    at += 1;
    let commitments = at;
    at += 2 + u16::from_le_bytes([p[at], p[at + 1]]) as usize;
    let trace_values = at;
    let (n, l) = read_vint(p, at);
    at += l + n as usize;
    let trace_paths = at;
    let (n, l) = read_vint(p, at);
    let trace_paths_body = at + l;
    let trace_paths_len = n as usize;
    at += l + n as usize;
    // second trace segment and constraint queries
    for _ in 0..2 {
        for _ in 0..2 {
            let (n, l) = read_vint(p, at);
            at += l + n as usize;
        }
    }
    for _ in 0..2 {
        at += 2 + u16::from_le_bytes([p[at], p[at + 1]]) as usize;
    }
    let fri_layers = at;
    at += 1;
    at += 4 + u32::from_le_bytes(p[at..at + 4].try_into().unwrap()) as usize;
    Fields {
        log_len,
        num_constraints,
        unique_queries,
        commitments,
        trace_values,
        trace_paths,
        trace_paths_body,
        trace_paths_len,
        fri_layers,
        fri_first_paths: at,
    }
}

/// Replaces `len` bytes at `at` with `with`.
fn splice(p: &[u8], at: usize, len: usize, with: &[u8]) -> Vec<u8> {
    let mut out = p[..at].to_vec();
    out.extend_from_slice(with);
    out.extend_from_slice(&p[at + len..]);
    out
}

fn crafted_cases(env: &ProofEnvelope) -> Vec<(&'static str, Vec<u8>)> {
    let p = &env.proof;
    let f = fields(p);
    let vint_len = |at: usize| read_vint(p, at).1;
    let huge = 1u64 << 60;
    let mut cases = vec![];
    for (name, len) in [
        ("query values 2^31", 1u64 << 31),
        ("query values 2^40", 1 << 40),
    ] {
        cases.push((
            name,
            splice(p, f.trace_values, vint_len(f.trace_values), &vint(len)),
        ));
    }
    cases.push(("trace length 2^63", splice(p, f.log_len, 1, &[63])));
    cases.push((
        "constraint count 2^60",
        splice(
            p,
            f.num_constraints,
            vint_len(f.num_constraints),
            &vint(huge),
        ),
    ));
    cases.push(("255 unique queries", splice(p, f.unique_queries, 1, &[255])));
    cases.push((
        "commitments 65535 bytes",
        splice(p, f.commitments, 2, &[0xff, 0xff]),
    ));
    cases.push((
        "query values 2^60",
        splice(p, f.trace_values, vint_len(f.trace_values), &vint(huge)),
    ));
    cases.push((
        "query values u64::MAX",
        splice(p, f.trace_values, vint_len(f.trace_values), &vint(u64::MAX)),
    ));
    cases.push((
        "query paths 2^60",
        splice(p, f.trace_paths, vint_len(f.trace_paths), &vint(huge)),
    ));
    // Nested: inside the trace paths (a batch Merkle proof), the number of node vectors and the
    // length of the first vector, with the outer length kept consistent.
    let body = &p[f.trace_paths_body..f.trace_paths_body + f.trace_paths_len];
    let nested = |inner: Vec<u8>| {
        let mut blob = vint(inner.len() as u64);
        blob.extend_from_slice(&inner);
        splice(
            p,
            f.trace_paths,
            f.trace_paths_body + f.trace_paths_len - f.trace_paths,
            &blob,
        )
    };
    let (_, vl) = read_vint(body, 1);
    cases.push((
        "merkle node vectors 2^60",
        nested(splice(body, 1, vl, &vint(huge))),
    ));
    let first = 1 + vl;
    let (_, fl) = read_vint(body, first);
    cases.push((
        "merkle digests 2^60",
        nested(splice(body, first, fl, &vint(huge))),
    ));
    cases.push(("merkle depth 255", nested(splice(body, 0, 1, &[255]))));
    cases.push(("fri layers 255", splice(p, f.fri_layers, 1, &[255])));
    cases.push((
        "fri paths u32::MAX",
        splice(p, f.fri_first_paths, 4, &u32::MAX.to_le_bytes()),
    ));
    cases
        .into_iter()
        .map(|(name, proof)| {
            let e = ProofEnvelope {
                proof,
                ..env.clone()
            };
            (name, e.to_bytes().unwrap())
        })
        .collect()
}

#[test]
fn the_offsets_walker_matches_the_honest_proof() {
    // Guards the test itself: the fields found are where the honest values are.
    let env = metered();
    let f = fields(&env.proof);
    assert_eq!(env.proof[f.log_len], 9); // 293 readings: 38 permutations → 2^9 rows
    let queries = SecurityLevel::Default100.options_for(512).num_queries();
    assert!((1..=queries).contains(&(env.proof[f.unique_queries] as usize)));
    assert!((1..=3).contains(&env.proof[f.fri_layers]));
    assert!(f.trace_values < f.trace_paths);
}

#[test]
fn crafted_length_fields_give_clean_errors() {
    let env = metered();
    check(&env.to_bytes().unwrap()).unwrap();
    let cases = crafted_cases(&env);
    assert!(cases.len() >= 14);
    for (name, bytes) in cases {
        let r = check(&bytes);
        assert!(
            matches!(
                r,
                Err(ProofError::ProofDecode(_))
                    | Err(ProofError::TraceShape(_))
                    | Err(ProofError::Decode(_))
            ),
            "{name}: {r:?}"
        );
    }
}

#[test]
fn crafted_files_decode_within_a_256_mib_address_space() {
    // Re-runs the crafted cases in a child process under `ulimit -v`: an allocation sized by a
    // crafted length would abort the child (allocation failure is not a catchable panic).
    if std::env::var_os("GT_HOSTILE_CHILD").is_some() {
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 262144 && exec \"$0\" --exact crafted_length_fields_give_clean_errors envelope_length_fields_are_bounded --test-threads=1 --quiet")
        .arg(&exe)
        .env("GT_HOSTILE_CHILD", "1")
        // Keep the child's own address space small whatever the machine: one rayon worker (if
        // the `concurrent` feature is on) and at most two malloc arenas (64 MiB reserved each).
        .env("RAYON_NUM_THREADS", "1")
        .env("MALLOC_ARENA_MAX", "2")
        .status()
        .unwrap();
    assert!(
        status.success(),
        "child under the memory limit failed: {status:?}"
    );
}

#[test]
fn crafted_retrievability_proof_lengths_fail_cleanly() {
    let data = [5u8; 3000];
    let c = groundtruth_proofs::por::commit_reader(&data[..], 6, None).unwrap();
    let ch = Challenge {
        root: c.root,
        depth: 6,
        num_chunks: c.num_chunks,
        seed: [2; 32],
        k: 1,
    };
    let resp = groundtruth_proofs::por::respond_reader(&data[..], &ch, None).unwrap();
    let env = prove_retrievability(&ch, &resp, SecurityLevel::Default100).unwrap();
    verify(&env).unwrap();
    // One trace segment only: rewrite the first query values length.
    let p = &env.proof;
    let at = 6 + 9 + 10;
    let at = at + read_vint(p, at).1 + 1;
    let at = at + 2 + u16::from_le_bytes([p[at], p[at + 1]]) as usize;
    let (_, l) = read_vint(p, at);
    let bad = ProofEnvelope {
        proof: splice(p, at, l, &vint(1 << 60)),
        ..env
    };
    let r = check(&bad.to_bytes().unwrap());
    assert!(matches!(r, Err(ProofError::ProofDecode(_))), "{r:?}");
}

#[test]
fn envelope_length_fields_are_bounded() {
    let env = metered();
    let bytes = env.to_bytes().unwrap();
    // The proof blob's u32 length claims 4 GiB − 1.
    let proof_len_at = bytes.len() - env.proof.len() - 4;
    let mut bad = bytes.clone();
    bad[proof_len_at..proof_len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = check(&bad);
    assert!(matches!(r, Err(ProofError::Decode(_))), "{r:?}");
    // The public-input blob's length claims 4 GiB − 1.
    let mut bad = bytes.clone();
    bad[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(check(&bad), Err(ProofError::Decode(_))));
    // A device count of 2^32 − 1.
    let mut bad = bytes.clone();
    let count_at = 14 + 1 + 24 + 32 + 8;
    bad[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let r = check(&bad);
    assert!(matches!(r, Err(ProofError::Decode(_))), "{r:?}");
    // A proof over the cap is refused before it is parsed.
    let big = ProofEnvelope {
        proof: vec![0; MAX_PROOF_BYTES + 1],
        ..env
    };
    assert!(matches!(
        ProofEnvelope::from_bytes(&big.to_bytes().unwrap()),
        Err(ProofError::Decode(_))
    ));
    assert!(matches!(verify(&big), Err(ProofError::ProofDecode(_))));
}
