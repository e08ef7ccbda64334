//! `groundtruth provider --config configs/provider-storage.toml`: runs the storage or GPU
//! provider agent ([`groundtruth_provider`]) until Ctrl-C.
//!
//! The config file's relative paths are resolved against its directory; the genesis file it
//! names supplies `storage_challenge_k` and `storage_deadline_epochs`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use groundtruth_provider::{ChainParams, ProviderConfig};

/// Arguments of `groundtruth provider`.
#[derive(Debug, clap::Args)]
pub struct ProviderArgs {
    /// The agent's config (`configs/provider-storage.toml`, `configs/provider-gpu.toml`).
    #[arg(long)]
    config: PathBuf,
    /// Override `node` (a validator's HTTP API).
    #[arg(long)]
    node: Option<String>,
}

fn resolve(base: &Path, p: &mut PathBuf) {
    if p.is_relative() {
        *p = base.join(&*p);
    }
}

/// Reads the config file, resolving relative paths against its directory.
pub fn load_config(path: &Path) -> anyhow::Result<ProviderConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut c: ProviderConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    resolve(base, &mut c.owner_key_file);
    resolve(base, &mut c.device_key_file);
    resolve(base, &mut c.genesis);
    if let Some(s) = c.storage.as_mut() {
        resolve(base, &mut s.data);
    }
    if let Some(h) = c.heartbeat.as_mut() {
        resolve(base, &mut h.queue_dir);
    }
    Ok(c)
}

/// Runs `groundtruth provider`.
pub fn run(args: ProviderArgs) -> anyhow::Result<ExitCode> {
    let mut config = load_config(&args.config)?;
    if let Some(n) = args.node {
        config.node = n;
    }
    config.validate()?;
    let genesis_text = std::fs::read_to_string(&config.genesis)
        .with_context(|| format!("reading genesis {}", config.genesis.display()))?;
    let genesis = groundtruth_ledger::Genesis::from_toml(&genesis_text)?;
    let params = ChainParams {
        storage_challenge_k: genesis.params.storage_challenge_k,
        storage_deadline_epochs: genesis.params.storage_deadline_epochs,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            let _ = stop_tx.send(true);
        });
        groundtruth_provider::run(config, params, stop_rx).await
    })?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_follow_the_config_file() -> anyhow::Result<()> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/provider-storage.toml");
        let c = load_config(&path)?;
        let base = path.parent().context("no dir")?;
        assert_eq!(c.genesis, base.join("../.devnet/genesis.toml"));
        assert_eq!(
            c.storage.context("no [storage]")?.data,
            base.join("../.devnet/provider-storage/data.bin")
        );
        Ok(())
    }

    #[test]
    fn the_devnet_validator_config_names_the_provider_port() -> anyhow::Result<()> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/devnet.toml");
        let c: groundtruth_node::config::NodeConfig =
            toml::from_str(&std::fs::read_to_string(path)?)?;
        assert!(!c.audit.providers.enabled);
        assert_eq!(c.audit.providers.listen, "/ip4/127.0.0.1/tcp/27200");
        Ok(())
    }

    #[test]
    fn every_simulated_provider_behaviour_writes_a_config_the_agent_accepts() -> anyhow::Result<()>
    {
        use groundtruth_firmware_sim::providers::{write_provider_fleet, ProviderFleetConfig};
        let dir = tempfile::tempdir()?;
        let cfg = ProviderFleetConfig {
            node: "http://127.0.0.1:9464".into(),
            genesis: "/nonexistent/genesis.toml".into(),
            dial: vec!["/ip4/127.0.0.1/tcp/27200".into()],
            chunks: 256,
            claimed_mac_per_s: 1_000_000,
            key_seed: 180,
        };
        let storage = ["honest", "delete:0.1@3", "slow-serve:500", "never-serve"];
        let gpu = ["honest", "slow:500", "wrong", "overstate:100"];
        let parse = |v: &[&str]| v.iter().map(|b| b.parse()).collect::<Result<Vec<_>, _>>();
        let agents = write_provider_fleet(dir.path(), &cfg, &parse(&storage)?, &parse(&gpu)?)?;
        assert_eq!(agents.len(), 8);
        for a in &agents {
            let c = load_config(&a.config)?;
            c.validate()?;
            assert_eq!(
                c.kind == groundtruth_provider::ProviderKind::Gpu,
                a.name.starts_with("gpu"),
                "{}",
                a.name
            );
        }
        Ok(())
    }
}
