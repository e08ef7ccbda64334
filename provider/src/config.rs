//! Typed configuration of the agent (`configs/provider-*.toml`). Only the binary reads files;
//! this crate takes the parsed struct. Paths are used as given (the CLI resolves relative ones
//! against the config file's directory).

use std::path::PathBuf;
use std::time::Duration;

use groundtruth_p2p::ProviderNetConfig;
use serde::{Deserialize, Serialize};

/// Storage or GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// Holds data, proves retrievability each epoch, serves chunks.
    Storage,
    /// Offers GPUs, answers matrix-product challenges.
    Gpu,
}

/// The whole agent configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// Storage or GPU.
    pub kind: ProviderKind,
    /// A validator's HTTP API (`http://host:port`): ledger state, epochs, transactions.
    pub node: String,
    /// The provider account's key file (`groundtruth keygen` format): it pays fees, bonds the
    /// provider stake, owns the device.
    pub owner_key_file: PathBuf,
    /// The device's key file, created if missing. It is also the agent's libp2p identity on
    /// the provider network.
    pub device_key_file: PathBuf,
    /// The chain's genesis file (public): the agent reads `storage_challenge_k` and
    /// `storage_deadline_epochs` from it.
    pub genesis: PathBuf,
    /// Provider stake bonded if the owner is not a provider yet.
    #[serde(default = "default_stake")]
    pub stake: u64,
    /// Region label of the device.
    #[serde(default)]
    pub region: String,
    /// Fee paid per transaction.
    #[serde(default = "default_fee")]
    pub fee: u64,
    /// How often the agent looks at the ledger.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// `[storage]`, required for `kind = "storage"`.
    #[serde(default)]
    pub storage: Option<StorageSection>,
    /// `[gpu]`, required for `kind = "gpu"`.
    #[serde(default)]
    pub gpu: Option<GpuSection>,
    /// `[net]`: the provider network (`dial` lists the validators' provider addresses).
    #[serde(default)]
    pub net: ProviderNetConfig,
    /// `[heartbeat]`: signed heartbeats over MQTT (off when absent).
    #[serde(default)]
    pub heartbeat: Option<HeartbeatSection>,
    /// `[fault]`: a deliberate misbehaviour, for simulations and tests (none by default).
    #[serde(default)]
    pub fault: Fault,
}

fn default_stake() -> u64 {
    1_000
}
fn default_fee() -> u64 {
    1
}
fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// `[storage]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The data: a file, or a directory whose files are committed concatenated in sorted path
    /// order.
    pub data: PathBuf,
    /// Merkle tree depth (default: the smallest that holds the data).
    #[serde(default)]
    pub depth: Option<u8>,
    /// If `data` does not exist, create a file of this many seeded pseudo-random bytes (for
    /// simulations).
    #[serde(default)]
    pub create_bytes: Option<u64>,
    /// Seed of the created data.
    #[serde(default)]
    pub create_seed: u64,
}

/// `[gpu]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    /// Model label registered on the ledger.
    pub model: String,
    /// Number of GPUs (the device's registered capacity).
    pub count: u32,
    /// Claimed throughput, multiply-adds per second, registered on the ledger (the challenge
    /// deadline follows from it).
    pub claimed_mac_per_s: u64,
}

/// `[heartbeat]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSection {
    /// MQTT broker `host:port`.
    pub broker: String,
    /// Interval between heartbeats.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub interval: Duration,
    /// Directory of the publisher's durable queue.
    pub queue_dir: PathBuf,
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(10)
}

/// A deliberate misbehaviour (`[fault] kind = "…"`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Honest.
    #[default]
    None,
    /// Storage: zero out a `fraction` of the chunks (chosen with `seed`) once the ledger
    /// reaches `from_epoch`; the agent keeps running and answering what it still can.
    DeleteChunks {
        /// Fraction of chunks lost, in (0, 1].
        fraction: f64,
        /// Ledger epoch at which the data is lost.
        from_epoch: u64,
        /// Which chunks.
        #[serde(default)]
        seed: u64,
    },
    /// Storage: serve spot retrievals only after this delay (proofs are still submitted).
    ServeSlowly {
        /// Delay per request.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// Storage: never answer spot retrievals (proofs are still submitted).
    NeverServe,
    /// GPU: answer challenges correctly, after this extra delay.
    GpuSlow {
        /// Extra delay per challenge.
        #[serde(with = "humantime_serde")]
        delay: Duration,
    },
    /// GPU: answer challenges with a wrong product (one element off).
    GpuWrongProduct,
}

impl ProviderConfig {
    /// Checks the combinations serde cannot.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |m: &str| Err(crate::ProviderError::Config(m.to_string()));
        match self.kind {
            ProviderKind::Storage if self.storage.is_none() => {
                return bad("kind = \"storage\" needs a [storage] section")
            }
            ProviderKind::Gpu => match &self.gpu {
                None => return bad("kind = \"gpu\" needs a [gpu] section"),
                Some(g) if g.count == 0 || g.claimed_mac_per_s == 0 => {
                    return bad("[gpu] count and claimed_mac_per_s must be positive")
                }
                _ => {}
            },
            _ => {}
        }
        if let Fault::DeleteChunks { fraction, .. } = self.fault {
            if !(fraction > 0.0 && fraction <= 1.0) {
                return bad("[fault] fraction must be in (0, 1]");
            }
        }
        self.net
            .validate()
            .map_err(|e| crate::ProviderError::Config(e.to_string()))
    }
}
