//! The device registry ingest checks against: which keys may publish, of which kind, with
//! which capacity. Read from the genesis file on a single node without consensus; refreshed
//! from the replicated ledger after every committed block when consensus runs (`crate::chain`).

use groundtruth_device_sdk::{DeviceId, ReadingKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// Errors loading the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The genesis file could not be read.
    #[error("reading genesis {0}: {1}")]
    Read(String, std::io::Error),
    /// The genesis file is not valid.
    #[error("genesis {0}: {1}")]
    Invalid(String, String),
}

/// How a device appears in the genesis file (`[[devices]]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceEntry {
    /// ed25519 public key, 64 hex characters.
    pub id: String,
    /// `energy`, `gpu` or `storage`.
    pub kind: String,
    /// Registered capacity: peak watts (energy), number of GPUs (gpu), bytes (storage).
    pub capacity: u64,
    /// Free-form region code, e.g. `DE-BY`.
    #[serde(default)]
    pub region: String,
    /// Owner's account (hex public key), if any.
    #[serde(default)]
    pub owner: String,
}

/// The part of the genesis file ingest reads. Other sections (the ledger's) are ignored here.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct GenesisDevices {
    /// Registered devices.
    #[serde(default)]
    pub devices: Vec<DeviceEntry>,
}

/// A registered device as ingest sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Kind of readings it may publish.
    pub kind: ReadingKind,
    /// Capacity in the kind's unit (see [`DeviceEntry::capacity`]).
    pub capacity: u64,
}

/// Registered devices by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    devices: HashMap<DeviceId, DeviceRecord>,
}

impl Registry {
    /// Loads the `[[devices]]` of a genesis file.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let origin = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| RegistryError::Read(origin.clone(), e))?;
        let genesis: GenesisDevices = toml::from_str(&text)
            .map_err(|e| RegistryError::Invalid(origin.clone(), e.to_string()))?;
        Self::from_entries(&genesis.devices).map_err(|m| RegistryError::Invalid(origin, m))
    }

    /// A registry of one energy meter `device` with `capacity` (unit tests).
    #[cfg(test)]
    pub(crate) fn one_energy_meter(device: &DeviceId, capacity: u64) -> Self {
        Self::from_entries(&[DeviceEntry {
            id: device.to_string(),
            kind: "energy".into(),
            capacity,
            region: String::new(),
            owner: String::new(),
        }])
        .expect("a valid one-meter registry")
    }

    /// Builds the registry, rejecting malformed ids, weak keys, unknown kinds and duplicates.
    pub fn from_entries(entries: &[DeviceEntry]) -> Result<Self, String> {
        let mut devices = HashMap::with_capacity(entries.len());
        for e in entries {
            let mut id = [0u8; 32];
            hex::decode_to_slice(&e.id, &mut id)
                .map_err(|_| format!("device id {:?} is not 64 hex characters", e.id))?;
            let id = DeviceId(id);
            if id.is_weak() {
                return Err(format!("device {} has a weak (small-order) key", e.id));
            }
            let kind = match e.kind.as_str() {
                "energy" => ReadingKind::Energy,
                "gpu" => ReadingKind::Gpu,
                "storage" => ReadingKind::Storage,
                other => return Err(format!("device {}: unknown kind {other:?}", e.id)),
            };
            if devices
                .insert(
                    id,
                    DeviceRecord {
                        kind,
                        capacity: e.capacity,
                    },
                )
                .is_some()
            {
                return Err(format!("device {} registered twice", e.id));
            }
        }
        Ok(Self { devices })
    }

    /// Builds the registry from records the ledger already validated.
    pub fn from_records(records: impl IntoIterator<Item = (DeviceId, DeviceRecord)>) -> Self {
        Self {
            devices: records.into_iter().collect(),
        }
    }

    /// The record of a registered device.
    pub fn get(&self, id: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.get(id)
    }

    /// Number of registered devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True when no device is registered.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

/// A registry handle that the ledger swaps after each committed block while ingest reads it.
/// Readers take a cheap snapshot ([`SharedRegistry::load`]) and never block the writer long.
#[derive(Debug, Clone, Default)]
pub struct SharedRegistry(Arc<RwLock<Arc<Registry>>>);

impl SharedRegistry {
    /// A handle holding `registry`.
    pub fn new(registry: Registry) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(registry))))
    }

    /// The current registry.
    pub fn load(&self) -> Arc<Registry> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the registry.
    pub fn store(&self, registry: Registry) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(registry);
    }
}
