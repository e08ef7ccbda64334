//! What one `SubmitStorageProof` costs the ledger: `check_tx` (everything `apply_tx` checks,
//! including the STARK verification) on an honest proof, on a proof that fails verification (a
//! fault) and on one for another seed (refused before the verifier runs), against the
//! baseline of a signed transfer's `check_tx` (one ed25519 verification) measured in the same
//! run. Also the provider's side: the streaming response and the proof.
//!
//! `cargo bench -p groundtruth-ledger --bench storage -- [k] [depth]` (default 100 30).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use groundtruth_ledger::testkit::{address, device_id, key, sign_tx, TestNet, STORAGE_DEVICE};
use groundtruth_ledger::{apply_block, check_tx, Block, BlockContext, SignedTx, State, TxBody};
use groundtruth_proofs::por::{commit_reader, respond_reader};
use groundtruth_proofs::{prove_retrievability, Challenge, SecurityLevel};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn time(n: usize, mut f: impl FnMut()) -> Duration {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        v.push(t.elapsed());
    }
    median(v)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let k = args.first().copied().unwrap_or(100) as u32;
    let depth = args.get(1).copied().unwrap_or(30) as u8;

    let mut n = TestNet::new(4, 4);
    n.genesis.params.storage_challenge_k = k;
    let mut st = n.state().unwrap();
    let owner = &n.users[0];
    let dev = device_id(&key(STORAGE_DEVICE));
    // 1 MiB of data in a tree of the given depth (the streaming builder pads with empty
    // subtrees, so a depth-30 tree costs what its data costs; the proof costs what depth 30
    // costs).
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let c = commit_reader(&data[..], depth, None).unwrap();
    let commit = sign_tx(
        &st,
        owner,
        0,
        TxBody::CommitStorage {
            device: dev,
            root: c.root,
            depth,
            num_chunks: c.num_chunks,
        },
    );
    let mut height = st.height();
    let mut next = |st: &mut State, txs: Vec<SignedTx>| {
        height += 1;
        let out = apply_block(
            st,
            &Block {
                height,
                proposer: None,
                txs,
            },
        )
        .unwrap();
        assert!(out
            .results
            .iter()
            .all(|r| matches!(r, Ok(t) if t.failed.is_none())));
    };
    next(&mut st, vec![commit]);
    while st.epoch() < 1 {
        next(&mut st, vec![]);
    }
    let ch = st.storage_challenge(0, &dev).unwrap();

    let t = Instant::now();
    let response = respond_reader(&data[..], &ch, None).unwrap();
    let respond = t.elapsed();
    let t = Instant::now();
    let proof = prove_retrievability(&ch, &response, SecurityLevel::Default100)
        .unwrap()
        .to_bytes()
        .unwrap();
    let prove = t.elapsed();

    let tx = |proof: Vec<u8>| {
        sign_tx(
            &st,
            owner,
            0,
            TxBody::SubmitStorageProof {
                epoch: 0,
                device: dev,
                proof,
            },
        )
    };
    let honest = tx(proof.clone());
    let mut bad = proof.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x55;
    let failing = tx(bad);
    let other_seed = Challenge {
        seed: [7; 32],
        ..ch.clone()
    };
    let other = respond_reader(&data[..], &other_seed, None).unwrap();
    let wrong_seed = tx(
        prove_retrievability(&other_seed, &other, SecurityLevel::Default100)
            .unwrap()
            .to_bytes()
            .unwrap(),
    );
    let transfer = sign_tx(
        &st,
        owner,
        0,
        TxBody::Transfer {
            to: address(&n.users[1]),
            amount: 1,
        },
    );
    let ctx = BlockContext {
        height: st.height() + 1,
        proposer: None,
    };
    assert!(check_tx(&st, &honest, &ctx).is_ok());
    assert!(
        check_tx(&st, &failing, &ctx).is_ok(),
        "a failing proof is a fault, applied"
    );
    assert!(check_tx(&st, &wrong_seed, &ctx).is_err());

    const RUNS: usize = 51;
    let base = time(RUNS * 4, || check_tx(&st, &transfer, &ctx).unwrap());
    let ok = time(RUNS, || check_tx(&st, &honest, &ctx).unwrap());
    let fault = time(RUNS, || check_tx(&st, &failing, &ctx).unwrap());
    let refused = time(RUNS, || {
        let _ = check_tx(&st, &wrong_seed, &ctx);
    });
    let ratio = |d: Duration| d.as_secs_f64() / base.as_secs_f64();

    println!(
        "storage proof, k = {k} ({} samples), depth {depth}, {} chunks",
        ch.sample_count(),
        c.num_chunks
    );
    println!(
        "provider: respond (one pass over 1 MiB) {:.1} ms, prove {:.1} ms",
        ms(respond),
        ms(prove)
    );
    println!(
        "proof envelope {} B, transaction {} B",
        proof.len(),
        honest.encode().len()
    );
    println!(
        "ledger check_tx, median of {RUNS} (baseline: a transfer, median of {}):",
        RUNS * 4
    );
    println!("  transfer (baseline)        {:8.3} ms   1.00x", ms(base));
    println!(
        "  honest proof (verified)    {:8.3} ms {:6.1}x",
        ms(ok),
        ratio(ok)
    );
    println!(
        "  failing proof (fault)      {:8.3} ms {:6.1}x",
        ms(fault),
        ratio(fault)
    );
    println!(
        "  other seed (refused)       {:8.3} ms {:6.1}x",
        ms(refused),
        ratio(refused)
    );
}
