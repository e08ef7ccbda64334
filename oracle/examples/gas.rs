//! Gas of `submitEpoch` for 4, 7, 21 and 100 equal-weight validators (each signing with the
//! fewest signatures that reach two thirds), beside the baseline measured in the same run: one
//! transaction storing one 32-byte word in a fresh slot (`SstoreBaseline.store`).
//!
//! `cargo run -p groundtruth-oracle --example gas` (needs anvil: scripts/setup.sh).

use alloy::primitives::keccak256;
use groundtruth_oracle::anvil::{self, Anvil};
use groundtruth_oracle::bindings::SstoreBaseline;
use groundtruth_oracle::{
    sign_digest, Config, EpochCommitment, Oracle, PrivateKeySigner, Quorum, Submission,
    ValidatorSet,
};

const EPOCHS: u64 = 4;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let node = Anvil::spawn()?;
    let url = node.url();

    // Baseline: a fresh-slot 32-byte SSTORE in its own transaction.
    let provider = groundtruth_oracle::provider_for(&url, anvil::dev_key(1)?)?;
    let baseline = SstoreBaseline::deploy(provider).await?;
    let mut base_gas = Vec::new();
    for key in 1..=EPOCHS {
        let r = baseline
            .store(key, keccak256(key.to_be_bytes()))
            .send()
            .await?
            .get_receipt()
            .await?;
        base_gas.push(r.gas_used);
    }
    let sstore = mean(&base_gas);
    println!("baseline: one 32-byte SSTORE to a fresh slot, whole transaction: {sstore} gas");
    println!();
    println!("| validators | signatures | gas per submitEpoch | (gas − SSTORE tx) / signature | ratio to SSTORE tx |");
    println!("|---:|---:|---:|---:|---:|");

    let mut rows = Vec::new();
    for n in [4usize, 7, 21, 100] {
        let keys: Vec<PrivateKeySigner> = (0..n)
            .map(|i| PrivateKeySigner::from_bytes(&keccak256(format!("gas bench validator {i}"))))
            .collect::<Result<_, _>>()?;
        let set = ValidatorSet::new(1, keys.iter().map(|k| (k.address(), 1)).collect())?;
        let address = Oracle::deploy(&url, anvil::dev_key(2)?, 1, &set).await?;
        let mut config = Config::new(url.clone(), address);
        config.confirmations = 1;
        let oracle = Oracle::new(config, anvil::dev_key(0)?)?;
        let domain = oracle.domain().await?;
        let mut gas = Vec::new();
        let mut signatures = 0;
        for epoch in 1..=EPOCHS {
            let root = |tag: u8| keccak256([&epoch.to_be_bytes()[..], &[tag]].concat());
            let c = EpochCommitment {
                epoch,
                readings_root: root(1),
                verified_totals_root: root(2),
                proof_digests_root: root(3),
                ledger_state_root: root(4),
                set_nonce: 1,
            };
            let digest = c.signing_hash(&domain);
            let mut q = Quorum::new(&set, digest);
            for k in &keys {
                q.add(sign_digest(k, &digest)?);
            }
            let sigs = q.finish()?;
            signatures = sigs.len();
            match oracle.submit_epoch(&c, &sigs).await? {
                Submission::Anchored { gas_used, .. } => gas.push(gas_used),
                Submission::AlreadyAnchored => anyhow::bail!("epoch {epoch} was already anchored"),
            }
        }
        let g = mean(&gas);
        rows.push((n, signatures, g));
        println!(
            "| {n} | {signatures} | {g} | {} | {:.2} |",
            g.saturating_sub(sstore) / signatures.max(1) as u64,
            g as f64 / sstore as f64
        );
    }
    println!();
    if let Some((_, _, g7)) = rows.iter().find(|(n, _, _)| *n == 7) {
        println!(
            "target: <= 100000 gas with 7 validators: {}",
            if *g7 <= 100_000 { "met" } else { "MISSED" }
        );
    }
    Ok(())
}

fn mean(v: &[u64]) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.iter().sum::<u64>() / v.len() as u64
}
