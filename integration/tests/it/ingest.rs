//! A fleet with every fault kind against a node; exact accepted and rejected counts.

use anyhow::Result;
use groundtruth_firmware_sim::Expect;
use groundtruth_integration::{Broker, FleetSpec, TestNet};
use std::time::Duration;

fn fault_fleet(seed: u64) -> FleetSpec {
    FleetSpec {
        seed,
        energy: 40,
        gpu: 6,
        storage: 6,
        unknown: 2,
        faults: "all".into(),
        intervals: 60,
    }
}

fn assert_exact_outcome(broker: Broker, seed: u64) -> Result<()> {
    let mut net = TestNet::builder()
        .broker(broker)
        .fleet(fault_fleet(seed))
        .build()?;
    let manifest = net.run_fleet(&[])?;
    // Every fault kind is present, so each reason is exercised.
    for label in Expect::ALL.map(Expect::label) {
        assert!(
            manifest.expected.get(label).copied().unwrap_or(0) > 0,
            "fleet produced no {label}: {:?}",
            manifest.expected
        );
    }
    let node = net.node_mut(0);
    let metrics = node.wait_received(manifest.messages, Duration::from_secs(60))?;
    assert_eq!(
        metrics.outcomes(),
        manifest.expected,
        "node outcome counts differ from the fleet's manifest"
    );
    let stored = node.stop_and_list_accepted()?;
    assert_eq!(stored.len(), manifest.accepted.len());
    assert_eq!(
        stored, manifest.accepted,
        "stored readings differ from the valid published ones"
    );
    Ok(())
}

#[test]
fn every_fault_kind_gets_its_exact_outcome_with_the_embedded_broker() -> Result<()> {
    assert_exact_outcome(Broker::EmbeddedIn(0), 7)
}

#[test]
fn every_fault_kind_gets_its_exact_outcome_through_mosquitto() -> Result<()> {
    assert_exact_outcome(Broker::Mosquitto, 11)
}
