//! Every file in `configs/` parses with the schema it is written for.

use groundtruth_node::config::NodeConfig;
use groundtruth_node::ingest::registry::Registry;
use std::path::{Path, PathBuf};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

#[test]
fn every_config_file_parses() {
    let mut seen = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(configs_dir())
        .expect("configs/ exists")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        match name.as_str() {
            "validator.toml" | "devnet.toml" => {
                NodeConfig::load(Some(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "genesis.toml" => {
                let registry = Registry::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(!registry.is_empty(), "genesis registers no device");
            }
            "fleet.toml" => {
                let text = std::fs::read_to_string(&path).expect("readable");
                let fleet: groundtruth_firmware_sim::FleetConfig =
                    toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(fleet.faults.len(), 6);
            }
            other => panic!("configs/{other} has no parser test: add one here"),
        }
        seen.push(name);
    }
    assert!(
        seen.len() >= 4,
        "expected the devnet, validator, fleet and genesis files, saw {seen:?}"
    );
}

#[test]
fn validator_config_values_are_read() {
    let c = NodeConfig::load(Some(&configs_dir().join("validator.toml"))).expect("parses");
    assert!(!c.mqtt.embedded);
    assert_eq!(c.mqtt.keep_alive, std::time::Duration::from_secs(30));
    assert_eq!(c.node.name, "validator-1");
    assert!(c.consensus.enabled);
    assert_eq!(c.consensus.peers.len(), 3);
}
