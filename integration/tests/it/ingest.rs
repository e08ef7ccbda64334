//! A fleet with every fault kind against a node; exact accepted and rejected counts.

use anyhow::Result;
use groundtruth_firmware_sim::Expect;
use groundtruth_integration::{
    free_addr, outcome_counts, BrokerMode, FleetSpec, Mosquitto, NodeProc,
};
use std::path::Path;
use std::time::Duration;

fn fault_fleet() -> FleetSpec {
    FleetSpec {
        seed: 7,
        energy: 40,
        gpu: 6,
        storage: 6,
        unknown: 2,
        faults: "all".into(),
        intervals: 60,
    }
}

fn assert_exact_outcome(
    dir: &Path,
    node: &mut NodeProc,
    broker: std::net::SocketAddr,
    spec: &FleetSpec,
) -> Result<()> {
    let manifest = spec.run(broker, dir, &[])?;
    // Every fault kind is present, so each reason is exercised.
    for label in Expect::ALL.map(Expect::label) {
        assert!(
            manifest.expected.get(label).copied().unwrap_or(0) > 0,
            "fleet produced no {label}: {:?}",
            manifest.expected
        );
    }
    let metrics = node.wait_received(manifest.messages, Duration::from_secs(60))?;
    assert_eq!(
        outcome_counts(&metrics),
        manifest.expected,
        "node outcome counts differ from the fleet's manifest"
    );
    let mut stored = node.stop_and_list_accepted()?;
    stored.sort();
    let mut expected = manifest.accepted.clone();
    expected.sort();
    assert_eq!(stored.len(), expected.len());
    assert_eq!(
        stored, expected,
        "stored readings differ from the valid published ones"
    );
    Ok(())
}

#[test]
fn every_fault_kind_gets_its_exact_outcome_with_the_embedded_broker() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let spec = fault_fleet();
    let genesis = dir.path().join("genesis.toml");
    spec.write_genesis(&genesis)?;
    let broker = free_addr();
    let mut node = NodeProc::start(dir.path(), &genesis, BrokerMode::Embedded(broker))?;
    assert_exact_outcome(dir.path(), &mut node, broker, &spec)
}

#[test]
fn every_fault_kind_gets_its_exact_outcome_through_mosquitto() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(dir.path())?;
    let spec = FleetSpec {
        seed: 11,
        ..fault_fleet()
    };
    let genesis = dir.path().join("genesis.toml");
    spec.write_genesis(&genesis)?;
    let mut node = NodeProc::start(dir.path(), &genesis, BrokerMode::External(mosquitto.addr))?;
    assert_exact_outcome(dir.path(), &mut node, mosquitto.addr, &spec)
}
