//! Simulated storage and GPU providers: each is a real `groundtruth provider` agent (its own
//! keys, real data on disk) whose behaviour is chosen by its config's `[fault]` table. This
//! module writes those agents' directories (keys and `provider.toml`) for a fleet described by
//! a short spec; whoever runs the fleet (the devnet, a test) starts one
//! `groundtruth provider --config <dir>/provider.toml` per agent.
//!
//! Behaviours: `honest`, `delete:<fraction>@<epoch>` (loses that fraction of its chunks once the
//! ledger reaches the epoch), `slow-serve:<ms>`, `never-serve` (storage); `honest`,
//! `slow:<ms>`, `wrong`, `overstate:<factor>` (GPU: claims `factor` times the base throughput).

use std::path::{Path, PathBuf};

/// What one simulated provider does.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderBehaviour {
    /// Stores, proves, serves and computes correctly.
    Honest,
    /// Storage: loses `fraction` of its chunks at ledger epoch `from_epoch`.
    Delete {
        /// Fraction lost, in (0, 1].
        fraction: f64,
        /// Epoch of the loss.
        from_epoch: u64,
    },
    /// Storage: answers spot retrievals after this many milliseconds each.
    SlowServe(u64),
    /// Storage: never answers spot retrievals.
    NeverServe,
    /// GPU: answers challenges this many milliseconds late.
    Slow(u64),
    /// GPU: answers challenges with a wrong product.
    Wrong,
    /// GPU: claims this many times the base throughput.
    Overstate(u64),
}

/// A spec that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("provider behaviour {0:?}: expected honest, delete:<fraction>@<epoch>, slow-serve:<ms>, never-serve, slow:<ms>, wrong or overstate:<factor>")]
pub struct BadBehaviour(pub String);

impl std::str::FromStr for ProviderBehaviour {
    type Err = BadBehaviour;

    fn from_str(s: &str) -> Result<Self, BadBehaviour> {
        let bad = || BadBehaviour(s.to_string());
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        Ok(match name {
            "honest" => Self::Honest,
            "never-serve" => Self::NeverServe,
            "wrong" => Self::Wrong,
            "slow-serve" => Self::SlowServe(arg.parse().map_err(|_| bad())?),
            "slow" => Self::Slow(arg.parse().map_err(|_| bad())?),
            "overstate" => Self::Overstate(arg.parse().map_err(|_| bad())?),
            "delete" => {
                let (f, e) = arg.split_once('@').ok_or_else(bad)?;
                let fraction: f64 = f.parse().map_err(|_| bad())?;
                if !(fraction > 0.0 && fraction <= 1.0) {
                    return Err(bad());
                }
                Self::Delete {
                    fraction,
                    from_epoch: e.parse().map_err(|_| bad())?,
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl ProviderBehaviour {
    /// The agent config's `[fault]` table body.
    pub fn fault_toml(&self, seed: u64) -> String {
        match self {
            Self::Honest | Self::Overstate(_) => "kind = \"none\"\n".into(),
            Self::Delete {
                fraction,
                from_epoch,
            } => format!(
                "kind = \"delete_chunks\"\nfraction = {fraction}\nfrom_epoch = {from_epoch}\nseed = {seed}\n"
            ),
            Self::SlowServe(ms) => format!("kind = \"serve_slowly\"\ndelay = \"{ms}ms\"\n"),
            Self::NeverServe => "kind = \"never_serve\"\n".into(),
            Self::Slow(ms) => format!("kind = \"gpu_slow\"\ndelay = \"{ms}ms\"\n"),
            Self::Wrong => "kind = \"gpu_wrong_product\"\n".into(),
        }
    }

    /// Whether it is a GPU behaviour (`slow`, `wrong`, `overstate`).
    pub fn is_gpu(&self) -> bool {
        matches!(self, Self::Slow(_) | Self::Wrong | Self::Overstate(_))
    }
}

/// Where the agents connect and what they hold.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderFleetConfig {
    /// A validator's HTTP API, `http://host:port`.
    pub node: String,
    /// The chain's genesis file.
    pub genesis: PathBuf,
    /// The validators' provider-network multiaddrs.
    pub dial: Vec<String>,
    /// Chunks (1 KiB) of data per storage provider.
    pub chunks: u64,
    /// Base claimed GPU throughput, multiply-adds per second.
    pub claimed_mac_per_s: u64,
    /// Seed of the first owner and device keys (`[seed + 2i; 32]`, `[seed + 2i + 1; 32]`).
    pub key_seed: u8,
}

/// One written agent.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderAgentDir {
    /// `storage-<i>` or `gpu-<i>`.
    pub name: String,
    /// Its config file.
    pub config: PathBuf,
    /// Its owner key's seed.
    pub owner_seed: u8,
    /// Its device key's seed.
    pub device_seed: u8,
}

/// Writes the key of `seed` to `path`; a key already there is kept when it is that key (a
/// devnet started again on its directory resumes), and refused when it is another one.
fn write_key(path: &Path, seed: u8) -> std::io::Result<()> {
    let key = groundtruth_device_sdk::DeviceKey::from_seed(&[seed; 32]);
    if path.exists() {
        let held = groundtruth_device_sdk::keys::load(path).map_err(std::io::Error::other)?;
        if held.device_id() == key.device_id() {
            return Ok(());
        }
        return Err(std::io::Error::other(format!(
            "{} holds another key than the fleet's seed {seed}",
            path.display()
        )));
    }
    groundtruth_device_sdk::keys::save(&key, path).map_err(std::io::Error::other)
}

/// Writes one directory per behaviour under `dir` (`storage-<i>` for storage behaviours and
/// `honest` in `storage`, `gpu-<i>` for GPU ones and `honest` in `gpu`): owner and device keys,
/// `provider.toml`. Data files are created by the agents themselves (`create_bytes`).
pub fn write_provider_fleet(
    dir: &Path,
    config: &ProviderFleetConfig,
    storage: &[ProviderBehaviour],
    gpu: &[ProviderBehaviour],
) -> std::io::Result<Vec<ProviderAgentDir>> {
    let dial: Vec<String> = config.dial.iter().map(|a| format!("\"{a}\"")).collect();
    let mut out = Vec::new();
    let all = storage
        .iter()
        .map(|b| (false, b))
        .chain(gpu.iter().map(|b| (true, b)));
    for (i, (is_gpu, b)) in all.enumerate() {
        let k = u8::try_from(i).unwrap_or(u8::MAX).saturating_mul(2);
        let (owner_seed, device_seed) = (
            config.key_seed.saturating_add(k),
            config.key_seed.saturating_add(k).saturating_add(1),
        );
        let name = format!("{}-{i}", if is_gpu { "gpu" } else { "storage" });
        let adir = dir.join(&name);
        std::fs::create_dir_all(&adir)?;
        write_key(&adir.join("owner.key"), owner_seed)?;
        write_key(&adir.join("device.key"), device_seed)?;
        let kind = if is_gpu {
            let factor = match b {
                ProviderBehaviour::Overstate(f) => *f,
                _ => 1,
            };
            format!(
                "kind = \"gpu\"\n{common}[gpu]\nmodel = \"cpu-backend\"\ncount = 1\nclaimed_mac_per_s = {}\n",
                config.claimed_mac_per_s.saturating_mul(factor),
                common = "{common}",
            )
        } else {
            format!(
                "kind = \"storage\"\n{{common}}[storage]\ndata = \"data.bin\"\ncreate_bytes = {}\ncreate_seed = {device_seed}\n",
                config.chunks.saturating_mul(1024),
            )
        };
        let common = format!(
            "node = \"{}\"\nowner_key_file = \"owner.key\"\ndevice_key_file = \"device.key\"\ngenesis = \"{}\"\n\n",
            config.node,
            config.genesis.display()
        );
        let text = format!(
            "{}\n[net]\ndial = [{}]\n\n[fault]\n{}",
            kind.replace("{common}", &common),
            dial.join(", "),
            b.fault_toml(u64::from(device_seed))
        );
        let path = adir.join("provider.toml");
        std::fs::write(&path, text)?;
        out.push(ProviderAgentDir {
            name,
            config: path,
            owner_seed,
            device_seed,
        });
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn behaviours_parse_and_bad_ones_are_refused() {
        assert_eq!(
            "delete:0.1@3".parse::<ProviderBehaviour>().unwrap(),
            ProviderBehaviour::Delete {
                fraction: 0.1,
                from_epoch: 3
            }
        );
        assert_eq!(
            "slow:500".parse::<ProviderBehaviour>().unwrap(),
            ProviderBehaviour::Slow(500)
        );
        assert!("wrong".parse::<ProviderBehaviour>().unwrap().is_gpu());
        for bad in ["delete:2@3", "delete:0.1", "slow:x", "lie", "overstate:"] {
            assert!(bad.parse::<ProviderBehaviour>().is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_written_again_are_kept_when_equal_and_refused_when_not() {
        let dir = std::env::temp_dir().join(format!("gt-provider-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("owner.key");
        write_key(&path, 7).unwrap();
        let first = std::fs::read(&path).unwrap();
        // A devnet started again on its directory: the same key is kept as it is.
        write_key(&path, 7).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), first);
        // Another seed over it is refused, and the key on disk is unchanged.
        assert!(write_key(&path, 8).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fleet_writes_one_agent_directory_per_behaviour() {
        let dir = std::env::temp_dir().join(format!("gt-provider-fleet-{}", std::process::id()));
        let cfg = ProviderFleetConfig {
            node: "http://127.0.0.1:9464".into(),
            genesis: "/g.toml".into(),
            dial: vec!["/ip4/127.0.0.1/tcp/27200".into()],
            chunks: 256,
            claimed_mac_per_s: 1000,
            key_seed: 180,
        };
        let agents = write_provider_fleet(
            &dir,
            &cfg,
            &[ProviderBehaviour::Honest, ProviderBehaviour::NeverServe],
            &[ProviderBehaviour::Overstate(10)],
        )
        .unwrap();
        assert_eq!(agents.len(), 3);
        assert_eq!((agents[2].owner_seed, agents[2].device_seed), (184, 185));
        let never = std::fs::read_to_string(&agents[1].config).unwrap();
        assert!(never.starts_with("kind = \"storage\"\nnode = "));
        assert!(never.contains("create_bytes = 262144") && never.contains("never_serve"));
        let gpu = std::fs::read_to_string(&agents[2].config).unwrap();
        assert!(gpu.contains("claimed_mac_per_s = 10000") && gpu.contains("kind = \"none\""));
        assert!(dir.join("gpu-2/device.key").is_file());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
