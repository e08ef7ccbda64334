//! Per-block commit cost: the old flat rehash of the whole state (`State::flat_root`, the
//! baseline) against the incremental Jellyfish Merkle tree (`State::commit`), measured in the
//! same run on the same states and blocks.
//!
//! `cargo bench -p groundtruth-ledger --bench commit -- [accounts…]` (default 10000 1000000).
//! Each block is `txs` signed transfers (2 000, then 100) from `SIGNERS` funded keys to
//! existing accounts (so up to `2 × txs` account entries and the header change); the
//! transactions are applied outside the timing, then each commitment is timed.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use groundtruth_ledger::{
    apply_tx, Address, BlockContext, Genesis, GenesisAccount, SignedTx, State, Tx, TxBody,
};

const SIGNERS: usize = 1_000;
/// Transfers per block: a full block and a light one.
const BLOCK_SIZES: [usize; 2] = [2_000, 100];
const BLOCKS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A state with the signers funded and `accounts` more accounts (synthetic addresses: the
/// commitment does not care whether they are curve points), built from entries.
fn build(accounts: usize, signers: &[SigningKey]) -> State {
    let g = Genesis {
        accounts: signers
            .iter()
            .map(|k| GenesisAccount {
                address: Address(k.verifying_key().to_bytes()),
                balance: 1_000_000_000,
            })
            .collect(),
        ..Genesis::from_toml("").unwrap()
    };
    let base = State::from_genesis(&g).unwrap();
    let mut entries = base.entries();
    let total = 1_000_000_000u64 * signers.len() as u64;
    // Add zero-balance accounts (the supply stays as it is).
    for i in 0..accounts {
        let a = blake3::hash(&(i as u64).to_be_bytes());
        let mut k = vec![1u8];
        k.extend_from_slice(a.as_bytes());
        let mut v = 0u64.to_be_bytes().to_vec();
        v.extend_from_slice(&0u64.to_be_bytes());
        entries.push((k, v));
    }
    let st = State::from_entries(entries).unwrap();
    assert_eq!(st.supply().genesis, total);
    st
}

fn block_txs(
    st: &State,
    signers: &[SigningKey],
    accounts: usize,
    round: usize,
    txs: usize,
) -> Vec<SignedTx> {
    (0..txs)
        .map(|i| {
            let k = &signers[i % SIGNERS];
            let from = Address(k.verifying_key().to_bytes());
            let j = (round * txs + i).wrapping_mul(7_919) % accounts.max(1);
            let to = Address(*blake3::hash(&(j as u64).to_be_bytes()).as_bytes());
            Tx {
                signer: from,
                nonce: st.account(&from).nonce + (i / SIGNERS) as u64,
                fee: 1,
                body: TxBody::Transfer { to, amount: 1 },
            }
            .sign(st.chain_id(), k)
        })
        .collect()
}

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![10_000, 1_000_000]
    } else {
        sizes
    };
    let signers: Vec<SigningKey> = (0..SIGNERS)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
            SigningKey::from_bytes(&seed)
        })
        .collect();
    println!(
        "{:>10} {:>6} {:>14} {:>14} {:>8}   (median of {BLOCKS} blocks)",
        "accounts", "txs", "flat rehash", "jmt commit", "ratio"
    );
    for n in sizes {
        let started = Instant::now();
        let mut st = build(n, &signers);
        let built = started.elapsed();
        for txs in BLOCK_SIZES {
            let (mut flat, mut jmt) = (Vec::new(), Vec::new());
            for round in 0..BLOCKS {
                let ctx = BlockContext {
                    height: st.height() + 1,
                    proposer: None,
                };
                for tx in block_txs(&st, &signers, n, round, txs) {
                    let r = apply_tx(&mut st, &tx, &ctx).unwrap();
                    assert!(r.failed.is_none());
                }
                let t = Instant::now();
                let flat_root = st.flat_root();
                flat.push(t.elapsed());
                let t = Instant::now();
                let (root, writes) = st.commit().unwrap();
                jmt.push(t.elapsed());
                assert_ne!(root, flat_root);
                assert!(writes.len() <= 2 * txs + 1);
            }
            let (f, j) = (median(flat), median(jmt));
            println!(
                "{n:>10} {txs:>6} {:>11.2} ms {:>11.2} ms {:>7.2}x   (flat / jmt; state built in {:.1} s)",
                f.as_secs_f64() * 1e3,
                j.as_secs_f64() * 1e3,
                f.as_secs_f64() / j.as_secs_f64(),
                built.as_secs_f64()
            );
        }
    }
}
