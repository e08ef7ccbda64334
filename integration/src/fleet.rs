//! Simulated fleets (`groundtruth sim`) and the manifest of what they published.

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::proc::Proc;
use crate::{groundtruth, groundtruth_bin};

/// A simulated fleet's parameters for `groundtruth sim`.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Seed.
    pub seed: u64,
    /// Solar meters.
    pub energy: u32,
    /// GPU agents.
    pub gpu: u32,
    /// Storage providers.
    pub storage: u32,
    /// Unregistered devices.
    pub unknown: u32,
    /// Faults (`all`, `none` or a list).
    pub faults: String,
    /// Intervals per device.
    pub intervals: u64,
}

impl Default for FleetSpec {
    fn default() -> Self {
        Self {
            seed: 1,
            energy: 10,
            gpu: 0,
            storage: 0,
            unknown: 0,
            faults: "none".into(),
            intervals: 10,
        }
    }
}

impl FleetSpec {
    fn fleet_args(&self) -> Vec<String> {
        [
            "--seed",
            &self.seed.to_string(),
            "--energy",
            &self.energy.to_string(),
            "--gpu",
            &self.gpu.to_string(),
            "--storage",
            &self.storage.to_string(),
            "--unknown",
            &self.unknown.to_string(),
            "--faults",
            &self.faults,
            "--faulty-fraction",
            "0.3",
            "--fault-rate",
            "0.2",
        ]
        .map(String::from)
        .to_vec()
    }

    /// Writes the fleet's genesis file (its devices registered).
    pub fn write_genesis(&self, path: &Path) -> Result<()> {
        let mut args = vec!["sim".to_string()];
        args.extend(self.fleet_args());
        args.extend(["--write-genesis".into(), path.display().to_string()]);
        let out = groundtruth(&args)?;
        if !out.ok {
            bail!("groundtruth sim --write-genesis failed: {}", out.text);
        }
        Ok(())
    }

    /// `base` with this fleet's devices added (owned by devnet provider seed 100): a devnet
    /// genesis whose validators can audit the fleet.
    pub fn add_devices_to(&self, base: crate::Genesis) -> Result<crate::Genesis> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("fleet-genesis.toml");
        self.write_genesis(&path)?;
        base.devices_from(&path)
    }

    /// Starts the fleet publishing to `broker`; the manifest lands at `manifest` when it ends.
    pub fn spawn(
        &self,
        broker: SocketAddr,
        manifest: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Result<Proc> {
        let mut args = vec!["sim".to_string()];
        args.extend(self.fleet_args());
        args.extend([
            "--broker".into(),
            format!("mqtt://{broker}"),
            "--intervals".into(),
            self.intervals.to_string(),
            "--manifest".into(),
            manifest.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn("sim", &groundtruth_bin()?, &args, &[], log)
    }

    /// Runs the fleet to completion (at most 5 minutes) and returns its manifest.
    pub fn run(&self, broker: SocketAddr, dir: &Path, extra: &[&str]) -> Result<Manifest> {
        let manifest = dir.join("manifest.json");
        let log = dir.join("sim.log");
        let mut p = self.spawn(broker, &manifest, extra, &log)?;
        if p.wait_exit(Duration::from_secs(300)).is_none() {
            bail!("sim did not finish; see {}", log.display());
        }
        Manifest::read(&manifest).with_context(|| format!("sim failed; see {}", log.display()))
    }
}

/// What the simulator says a validator must end up with.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Messages published.
    pub messages: u64,
    /// Expected outcome counts by label.
    pub expected: BTreeMap<String, u64>,
    /// Sorted `device:seq` of the readings that must be accepted.
    pub accepted: Vec<String>,
    /// Per metered device (hex id): its output in the run.
    pub totals: BTreeMap<String, DeviceTotal>,
}

/// One metered device's output in a simulator run (`totals` in the manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceTotal {
    /// Energy (Wh) or GPU (GPU-milliseconds).
    pub kind: MeteredKind,
    /// Sum of the readings a validator must accept: what an audit must verify.
    pub total: u64,
    /// Sum of every reading the device signed, inflated ones included.
    pub claimed: u64,
}

/// Kind of a metered device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeteredKind {
    /// Solar meter, Wh.
    Energy,
    /// GPU agent, GPU-milliseconds.
    Gpu,
}

impl MeteredKind {
    /// The ledger's audit kind name (`/v1/epochs/{n}` `verified[].kind`).
    pub fn audit_kind(self) -> &'static str {
        match self {
            Self::Energy => "energy_output",
            Self::Gpu => "gpu_hours",
        }
    }
}

impl Manifest {
    /// Reads `groundtruth sim --manifest` output.
    pub fn read(path: &Path) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let messages = v["messages"].as_u64().context("messages")?;
        let expected = v["expected"]
            .as_object()
            .context("expected")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        let mut accepted: Vec<String> = v["accepted"]
            .as_array()
            .context("accepted")?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        accepted.sort();
        let mut totals = BTreeMap::new();
        if let Some(t) = v.get("totals").and_then(|t| t.as_object()) {
            for (device, entry) in t {
                let kind = match entry["kind"].as_str() {
                    Some("energy") => MeteredKind::Energy,
                    Some("gpu") => MeteredKind::Gpu,
                    other => bail!("device {device}: unknown kind {other:?}"),
                };
                let total = entry["total"]
                    .as_u64()
                    .with_context(|| format!("device {device}: total"))?;
                let claimed = entry["claimed"].as_u64().unwrap_or(total);
                totals.insert(
                    device.clone(),
                    DeviceTotal {
                        kind,
                        total,
                        claimed,
                    },
                );
            }
        }
        Ok(Self {
            messages,
            expected,
            accepted,
            totals,
        })
    }
}
