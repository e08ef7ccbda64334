//! The storage and GPU provider agent behind `groundtruth provider`.
//!
//! A provider runs this agent beside its disks or GPUs. It
//! 1. registers with the ledger through a validator's HTTP API, signed with the provider
//!    account's key: the provider stake, the device (its own ed25519 key, with a proof of
//!    possession), and either the Merkle root of its data (`CommitStorage`, built by the
//!    streaming commitment builder behind a progress bar) or its GPU claim (`RegisterGpuSpec`:
//!    model, count, multiply-adds per second);
//! 2. joins the **provider network** (`groundtruth_p2p::provider`): it dials every validator's
//!    provider address with its device key as libp2p identity and answers the validator set's
//!    `FetchChunk` (chunk + Merkle path) and `GpuChallenge` (the product of two seeded matrices)
//!    requests; it is not a validator and cannot reach the validators' own swarm;
//! 3. storage: for every ended epoch, derives the ledger's challenge from the epoch's sealed
//!    beacon (`groundtruth_ledger::storage_seed`, `storage_challenge_k` from the genesis),
//!    proves retrievability of the challenged chunks itself and submits `SubmitStorageProof`
//!    before `storage_deadline_epochs` pass;
//! 4. publishes signed heartbeats over MQTT when `[heartbeat]` is configured.
//!
//! `[fault]` selects a deliberate misbehaviour for simulations and tests (lose a fraction of
//! the data at an epoch, serve slowly or never, a slow GPU, a wrong product).
//!
//! What it must not do: hold validator keys, or trust anything it reads from the node beyond
//! what it can check (a wrong beacon only makes its own proof fail).

mod agent;
mod config;
mod error;
mod ledger;
mod store;

pub use agent::{create_data, gpu_product, lost_chunks, run, ChainParams};
pub use config::{
    Fault, GpuSection, HeartbeatSection, ProviderConfig, ProviderKind, StorageSection,
};
pub use error::{ProviderError, Result};
pub use ledger::Ledger;
pub use store::{depth_for, verify_opening, ChunkStore, MAX_CACHED_CHUNKS};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_configs_parse_and_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        for (name, kind) in [
            ("provider-storage.toml", ProviderKind::Storage),
            ("provider-gpu.toml", ProviderKind::Gpu),
        ] {
            let text = std::fs::read_to_string(dir.join(name)).unwrap();
            let c: ProviderConfig = toml::from_str(&text).unwrap();
            assert_eq!(c.kind, kind, "{name}");
            c.validate().unwrap();
        }
    }

    #[test]
    fn faults_parse_and_a_bad_fraction_is_refused() {
        let base = r#"
            kind = "storage"
            node = "http://127.0.0.1:1"
            owner_key_file = "o"
            device_key_file = "d"
            genesis = "g"
            [storage]
            data = "x"
        "#;
        let with = |f: &str| -> ProviderConfig {
            toml::from_str(&format!("{base}\n[fault]\n{f}")).unwrap()
        };
        assert_eq!(
            with("kind = \"serve_slowly\"\ndelay = \"2s\"").fault,
            Fault::ServeSlowly {
                delay: std::time::Duration::from_secs(2)
            }
        );
        assert!(
            with("kind = \"delete_chunks\"\nfraction = 0.1\nfrom_epoch = 3")
                .validate()
                .is_ok()
        );
        assert!(
            with("kind = \"delete_chunks\"\nfraction = 1.5\nfrom_epoch = 3")
                .validate()
                .is_err()
        );
        assert!(
            toml::from_str::<ProviderConfig>(&format!("{base}\n[fault]\nkind = \"lie\"")).is_err()
        );
    }

    #[test]
    fn a_lost_fraction_is_exact_and_the_wrong_product_fails_freivalds() {
        let lost = lost_chunks(256, 0.1, 7);
        assert_eq!(lost.len(), 26);
        assert!(lost.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(lost, lost_chunks(256, 0.1, 7));

        use groundtruth_proofs::freivalds::{challenge_matrices, check, Matrix};
        let seed = [3; 32];
        let (a, b) = challenge_matrices(&seed, 16);
        let good = Matrix::decode(&gpu_product(&seed, 16, false).unwrap()).unwrap();
        let bad = Matrix::decode(&gpu_product(&seed, 16, true).unwrap()).unwrap();
        assert!(check(&a, &b, &good, 8, &[1; 32]));
        assert!(!check(&a, &b, &bad, 8, &[1; 32]));
    }
}
