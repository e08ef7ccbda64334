//! Genesis files for test networks: the devnet genesis (`configs/genesis.toml`) edited as a
//! TOML table, or any text.

use anyhow::{Context, Result};
use groundtruth_device_sdk::DeviceKey;
use std::path::{Path, PathBuf};

/// `configs/genesis.toml`: 4 validators (operator seeds 10..13, consensus keys 40..43),
/// providers seeds 100 and 101, a few devices.
pub fn devnet_genesis_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/genesis.toml")
}

/// The hex public key (= account address = device id) of the devnet seed `[n; 32]`.
pub fn seed_address(n: u8) -> String {
    DeviceKey::from_seed(&[n; 32]).device_id().to_string()
}

/// A genesis file to write for a network.
#[derive(Debug, Clone, PartialEq)]
pub struct Genesis {
    table: toml::Table,
}

impl Genesis {
    /// The devnet genesis, `configs/genesis.toml`.
    pub fn devnet() -> Result<Self> {
        let path = devnet_genesis_path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Self::from_toml(&text)
    }

    /// Any genesis text.
    pub fn from_toml(text: &str) -> Result<Self> {
        Ok(Self {
            table: text.parse().context("genesis is not TOML")?,
        })
    }

    /// The file's text.
    pub fn to_toml(&self) -> Result<String> {
        Ok(toml::to_string(&self.table)?)
    }

    /// Sets `[params] name = value`.
    pub fn param(mut self, name: &str, value: impl Into<toml::Value>) -> Self {
        let params = self
            .table
            .entry("params")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = params {
            t.insert(name.into(), value.into());
        }
        self
    }

    /// Sets `[params] epoch_length`.
    pub fn epoch_length(self, blocks: u64) -> Self {
        self.param("epoch_length", toml_int(blocks))
    }

    /// Timed epochs: epoch `e` covers readings whose intervals lie in
    /// `[genesis_time_s + e·epoch_s, genesis_time_s + (e+1)·epoch_s)` (`[params]
    /// epoch_duration_s`, `genesis_time_s`).
    pub fn timed(self, epoch_s: u64, genesis_time_s: u64) -> Self {
        self.param("epoch_duration_s", toml_int(epoch_s))
            .param("genesis_time_s", toml_int(genesis_time_s))
    }

    /// Adds the `[[devices]]` of a `groundtruth sim --write-genesis` file, owned by devnet
    /// provider seed 100 where the file names no owner.
    pub fn devices_from(mut self, fleet_genesis: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(fleet_genesis)
            .with_context(|| format!("reading {}", fleet_genesis.display()))?;
        let table: toml::Table = text.parse().context("fleet genesis is not TOML")?;
        let devices = match table.get("devices") {
            Some(toml::Value::Array(d)) => d.clone(),
            _ => Vec::new(),
        };
        for d in devices {
            if let toml::Value::Table(mut t) = d {
                let owned = t
                    .get("owner")
                    .and_then(|o| o.as_str())
                    .is_some_and(|o| !o.is_empty());
                if !owned {
                    t.insert("owner".into(), seed_address(100).into());
                }
                self = self.push("devices", t);
            }
        }
        Ok(self)
    }

    /// Keeps only the first `n` `[[validators]]` (so that `n` test validators hold all stake).
    pub fn first_validators(mut self, n: usize) -> Self {
        if let Some(toml::Value::Array(v)) = self.table.get_mut("validators") {
            v.truncate(n);
        }
        self
    }

    /// Number of `[[validators]]`.
    pub fn validator_count(&self) -> usize {
        match self.table.get("validators") {
            Some(toml::Value::Array(v)) => v.len(),
            _ => 0,
        }
    }

    fn push(mut self, array: &str, entry: toml::Table) -> Self {
        let a = self
            .table
            .entry(array)
            .or_insert_with(|| toml::Value::Array(Vec::new()));
        if let toml::Value::Array(a) = a {
            a.push(toml::Value::Table(entry));
        }
        self
    }

    /// Adds an account with a liquid balance.
    pub fn account(self, address: &str, balance: u64) -> Self {
        let mut t = toml::Table::new();
        t.insert("address".into(), address.into());
        t.insert("balance".into(), toml_int(balance));
        self.push("accounts", t)
    }

    /// Registers an energy meter (capacity in W) owned by devnet provider seed 100.
    pub fn energy_device(self, key: &DeviceKey, capacity_w: u64) -> Self {
        let mut t = toml::Table::new();
        t.insert("id".into(), key.device_id().to_string().into());
        t.insert("kind".into(), "energy".into());
        t.insert("capacity".into(), toml_int(capacity_w));
        t.insert("region".into(), "DE-BY".into());
        t.insert("owner".into(), seed_address(100).into());
        self.push("devices", t)
    }
}

fn toml_int(v: u64) -> toml::Value {
    toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}
