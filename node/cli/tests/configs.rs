//! Every file in `configs/` parses with the schema it is written for.

use groundtruth_node::config::NodeConfig;
use groundtruth_node::ingest::registry::Registry;
use std::path::{Path, PathBuf};

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs")
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
                let c = NodeConfig::load(Some(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
            }
            "mosquitto" => check_mosquitto(&path),
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
            "provider-storage.toml" | "provider-gpu.toml" => {
                let text = std::fs::read_to_string(&path).expect("readable");
                let c: groundtruth_provider::ProviderConfig =
                    toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
                c.validate().unwrap_or_else(|e| panic!("{name}: {e}"));
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

/// The Mosquitto profile: every ACL line is a directive Mosquitto knows, devices are confined
/// to their own topics by pattern, and the broker config refuses anonymous and retained use.
fn check_mosquitto(dir: &Path) {
    let acl = std::fs::read_to_string(dir.join("acl")).expect("acl readable");
    let mut patterns = Vec::new();
    for line in acl
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["user", name] => assert!(
                name.starts_with("validator:") || name.starts_with("gateway:"),
                "{line}"
            ),
            ["topic" | "pattern", "read" | "write", topic] => {
                assert!(topic.starts_with("gt/v1/"), "{line}");
                if words[0] == "pattern" {
                    patterns.push(line.to_string());
                }
            }
            _ => panic!("configs/mosquitto/acl: unknown line {line:?}"),
        }
    }
    assert!(patterns.contains(&"pattern write gt/v1/readings/+/%u".to_string()));
    assert!(patterns.contains(&"pattern read gt/v1/resend/%u".to_string()));
    let conf = std::fs::read_to_string(dir.join("mosquitto.conf")).expect("conf readable");
    for required in [
        "allow_anonymous false",
        "retain_available false",
        "acl_file configs/mosquitto/acl",
    ] {
        assert!(
            conf.lines().any(|l| l.trim() == required),
            "mosquitto.conf lacks {required:?}"
        );
    }
    assert!(dir.join("README.md").is_file());
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
