//! Provider audits in one run: the storage provider's retrievability proof for a 1 TB-equivalent
//! tree (depth 30, k = 100) against the ledger's verification of it, and the GPU challenge's
//! Freivalds check (n = 1024, 2 rounds) against the CPU reference multiply of the same matrices.
//! Criterion drives every measurement; the table printed at the end holds the medians it
//! measured and the two ratios (check/multiply, verify/prove).
//!
//! `cargo bench -p groundtruth-proofs --features prover --bench provider`
//!
//! The tree: 256 KiB of data committed at depth 30 (the streaming builder pads with empty
//! subtrees, so the paths are depth-30 paths and the proof costs what a full 2^30-chunk tree's
//! proof costs; only the commitment is cheaper). The prover runs single-threaded unless the
//! `concurrent` feature is on.
#![allow(missing_docs)]

use std::cell::RefCell;
use std::time::{Duration, Instant};

use criterion::Criterion;
use groundtruth_proofs::freivalds::{challenge_matrices, check, multiply};
use groundtruth_proofs::por::{commit_reader, respond_reader};
use groundtruth_proofs::{prove_retrievability, verify_retrievability, Challenge, SecurityLevel};

const DEPTH: u8 = 30;
const K: u32 = 100;
const N: u32 = 1024;
const ROUNDS: u32 = 2;

/// Runs `f` under criterion and returns the median of the per-iteration times it measured.
fn measure(c: &mut Criterion, name: &str, mut f: impl FnMut()) -> Duration {
    let samples = RefCell::new(Vec::new());
    c.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let d = t.elapsed();
            let per = d / u32::try_from(iters.max(1)).unwrap_or(u32::MAX);
            samples.borrow_mut().push(per);
            d
        })
    });
    let mut v = samples.into_inner();
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();

    // Storage: the provider proves, the ledger verifies.
    let data: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let commitment = commit_reader(&data[..], DEPTH, None).unwrap_or_else(|e| panic!("{e}"));
    let challenge = Challenge {
        root: commitment.root,
        depth: DEPTH,
        num_chunks: commitment.num_chunks,
        seed: [9; 32],
        k: K,
    };
    let response = respond_reader(&data[..], &challenge, None).unwrap_or_else(|e| panic!("{e}"));
    let level = SecurityLevel::Default100;
    let env = prove_retrievability(&challenge, &response, level).unwrap_or_else(|e| panic!("{e}"));
    let proof_bytes = env.to_bytes().map(|b| b.len()).unwrap_or(0);
    let prove = measure(&mut c, "por prove (depth 30, k 100)", || {
        let e = prove_retrievability(&challenge, &response, level);
        assert!(e.is_ok());
    });
    let verify = measure(&mut c, "por verify (depth 30, k 100)", || {
        assert!(verify_retrievability(&env).is_ok());
    });

    // GPU: the validator's check against the agent's multiply.
    let (a, b) = challenge_matrices(&[5; 32], N);
    let product = multiply(&a, &b).unwrap_or_else(|e| panic!("{e}"));
    let mul = measure(&mut c, "freivalds multiply (n 1024)", || {
        assert!(multiply(&a, &b).is_ok());
    });
    let chk = measure(&mut c, "freivalds check (n 1024, 2 rounds)", || {
        assert!(check(&a, &b, &product, ROUNDS, &[7; 32]));
    });

    println!();
    println!("| measurement | median | ratio |");
    println!("|---|---|---|");
    println!(
        "| PoR prove, depth {DEPTH}, k = {K} ({} samples, envelope {:.1} KB) | {:.1} ms | |",
        challenge.sample_count(),
        proof_bytes as f64 / 1000.0,
        ms(prove)
    );
    println!(
        "| PoR verify (the ledger's cost per proof) | {:.2} ms | verify/prove = {:.5} |",
        ms(verify),
        verify.as_secs_f64() / prove.as_secs_f64()
    );
    println!(
        "| Freivalds multiply (CPU reference), n = {N} | {:.1} ms | |",
        ms(mul)
    );
    println!(
        "| Freivalds check, n = {N}, {ROUNDS} rounds | {:.2} ms | check/multiply = {:.5} |",
        ms(chk),
        chk.as_secs_f64() / mul.as_secs_f64()
    );
}
