//! Storage and GPU provider agents as real `groundtruth provider` processes beside a
//! [`TestNet`](crate::TestNet): a config file per agent (its own owner and device keys, data on
//! disk, a `[fault]`), and the validators' provider-network addresses it dials.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::proc::Proc;
use crate::{groundtruth_bin, write_key_file};

/// What one provider agent is.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    /// Name (directory and log).
    pub name: String,
    /// Seed of the owner account key (`[seed; 32]`); give it a balance in the genesis.
    pub owner_seed: u8,
    /// Seed of the device key (`[seed; 32]`).
    pub device_seed: u8,
    /// `Storage { chunks }` or `Gpu { claimed_mac_per_s }`.
    pub kind: ProviderKindSpec,
    /// The `[fault]` table's body (TOML), e.g. `kind = "never_serve"`; empty for honest.
    pub fault: String,
    /// Publish signed heartbeats every second to this MQTT broker.
    pub heartbeat: Option<SocketAddr>,
}

/// Storage or GPU, with its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKindSpec {
    /// This many 1 KiB chunks of seeded random data.
    Storage {
        /// Chunk count.
        chunks: u64,
    },
    /// One GPU claiming this many multiply-adds per second.
    Gpu {
        /// Claimed throughput.
        claimed_mac_per_s: u64,
    },
}

impl ProviderSpec {
    /// The device id (hex).
    pub fn device(&self) -> String {
        crate::seed_address(self.device_seed)
    }

    /// The owner address (hex).
    pub fn owner(&self) -> String {
        crate::seed_address(self.owner_seed)
    }
}

/// A running agent; killed on drop.
#[derive(Debug)]
pub struct ProviderAgent {
    /// The spec it runs.
    pub spec: ProviderSpec,
    /// Its process.
    pub proc: Proc,
    /// Its directory (config, keys, data).
    pub dir: PathBuf,
}

impl ProviderAgent {
    /// Its data file (storage).
    pub fn data_path(&self) -> PathBuf {
        self.dir.join("data.bin")
    }
}

/// The provider-network addresses of `n` validators (loopback ports that were free a moment
/// ago), to set as `[audit.providers] listen` and hand to agents.
pub fn provider_listen_addrs(n: usize) -> Vec<SocketAddr> {
    crate::free_addrs(n)
}

/// Writes the agent's keys and config under `root/<name>/` and starts `groundtruth provider`
/// against the node API `node`, dialling `validators`.
pub fn spawn_provider(
    root: &Path,
    genesis: &Path,
    node: &str,
    validators: &[SocketAddr],
    spec: &ProviderSpec,
) -> Result<ProviderAgent> {
    let dir = root.join(&spec.name);
    std::fs::create_dir_all(&dir)?;
    write_key_file(&dir.join("owner.key"), [spec.owner_seed; 32])?;
    write_key_file(&dir.join("device.key"), [spec.device_seed; 32])?;
    let dial: Vec<String> = validators
        .iter()
        .map(|a| format!("\"/ip4/{}/tcp/{}\"", a.ip(), a.port()))
        .collect();
    let kind = match spec.kind {
        ProviderKindSpec::Storage { chunks } => format!(
            "kind = \"storage\"\n[storage]\ndata = \"data.bin\"\ncreate_bytes = {}\ncreate_seed = {}\n",
            chunks * 1024,
            spec.device_seed
        ),
        ProviderKindSpec::Gpu { claimed_mac_per_s } => format!(
            "kind = \"gpu\"\n[gpu]\nmodel = \"cpu-test\"\ncount = 1\nclaimed_mac_per_s = {claimed_mac_per_s}\n"
        ),
    };
    // Top-level keys first, then the tables.
    let (top, tables) = kind.split_once('\n').context("kind line")?;
    let text = format!(
        "{top}\nnode = \"{node}\"\nowner_key_file = \"owner.key\"\ndevice_key_file = \"device.key\"\ngenesis = \"{}\"\nstake = 1000\npoll = \"300ms\"\n{tables}\n[net]\ndial = [{}]\nredial_interval = \"300ms\"\nrequest_timeout = \"20s\"\nmax_gpu_n = 256\nmax_response_bytes = 600000\n\n[fault]\n{}\n",
        genesis.display(),
        dial.join(", "),
        if spec.fault.is_empty() {
            "kind = \"none\""
        } else {
            &spec.fault
        },
    );
    let text = match spec.heartbeat {
        Some(b) => format!(
            "{text}\n[heartbeat]\nbroker = \"{b}\"\ninterval = \"1s\"\nqueue_dir = \"queue\"\n"
        ),
        None => text,
    };
    let config = dir.join("provider.toml");
    std::fs::write(&config, text)?;
    let proc = Proc::spawn(
        &spec.name,
        &groundtruth_bin()?,
        &[
            "provider".to_string(),
            "--config".to_string(),
            config.display().to_string(),
        ],
        &[],
        &dir.join("provider.log"),
    )?;
    Ok(ProviderAgent {
        spec: spec.clone(),
        proc,
        dir,
    })
}
