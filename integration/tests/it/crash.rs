//! `kill -9` the node while a fleet publishes; after restarts the store holds exactly the
//! valid published readings: none lost, none duplicated.

use anyhow::Result;
use groundtruth_integration::{Broker, FleetSpec, Manifest, TestNet};
use std::time::{Duration, Instant};

fn crash_while_publishing(broker: Broker, seed: u64) -> Result<()> {
    // 150 devices × 120 intervals = 18,000 readings over about 6 s of simulated-time pacing.
    let spec = FleetSpec {
        seed,
        energy: 130,
        gpu: 10,
        storage: 10,
        unknown: 0,
        faults: "none".into(),
        intervals: 120,
    };
    let mut net = TestNet::builder().broker(broker).fleet(spec).build()?;
    let (mut sim, manifest_path) = net.spawn_fleet(&["--speedup", "6000", "--linger-s", "12"])?;
    let mut kills = 0;
    let started = Instant::now();
    while sim.is_running() {
        std::thread::sleep(Duration::from_millis(50));
        // Kill at about 1 s, 2.5 s and 4 s into the run, then restart at once.
        let due = [1000u128, 2500, 4000]
            .get(kills)
            .is_some_and(|t| started.elapsed().as_millis() >= *t);
        if due {
            net.node_mut(0).kill9();
            kills += 1;
            net.node_mut(0).restart()?;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "sim did not finish"
        );
    }
    assert!(
        kills >= 2,
        "the node was killed only {kills} times before the fleet finished; slow the fleet down"
    );
    let manifest = Manifest::read(&manifest_path)?;
    let node = net.node_mut(0);
    node.wait_stored(manifest.accepted.len() as u64, Duration::from_secs(60))?;
    let stored = node.stop_and_list_accepted()?;
    assert_eq!(
        stored.len(),
        manifest.accepted.len(),
        "stored {} readings, published {} valid ones",
        stored.len(),
        manifest.accepted.len()
    );
    assert_eq!(stored, manifest.accepted);
    Ok(())
}

#[test]
fn node_killed_mid_stream_loses_and_duplicates_nothing_rumqttd() -> Result<()> {
    crash_while_publishing(Broker::Standalone, 21)
}

#[test]
fn node_killed_mid_stream_loses_and_duplicates_nothing_mosquitto() -> Result<()> {
    crash_while_publishing(Broker::Mosquitto, 22)
}

/// With the embedded broker the broker dies with the node, taking readings it had already
/// acknowledged to devices. Devices keep recent readings; the node sees the sequence gaps and
/// asks for them again (PROTOCOL.md, "Resend"), so nothing is lost here either.
#[test]
fn node_with_embedded_broker_killed_mid_stream_refills_gaps_by_resend() -> Result<()> {
    crash_while_publishing(Broker::EmbeddedIn(0), 23)
}

/// A backlog far larger than every queue in the node (Mosquitto keeps it for the node's
/// persistent session and sends it without waiting for acks): the node must drain it all
/// without stalling. Before the ingest queue slot was taken ahead of each read, the MQTT loop
/// and the committer could wait on each other here.
#[test]
fn node_drains_a_backlog_larger_than_its_queues() -> Result<()> {
    let spec = FleetSpec {
        seed: 24,
        energy: 500,
        gpu: 0,
        storage: 0,
        unknown: 0,
        faults: "none".into(),
        intervals: 60,
    };
    // The builder waits until the node's persistent sessions exist; take the node away
    // while the fleet publishes.
    let mut net = TestNet::builder()
        .broker(Broker::Mosquitto)
        .fleet(spec)
        .build()?;
    net.node_mut(0).kill9();
    let manifest = net.run_fleet(&["--presign"])?;
    assert_eq!(manifest.accepted.len(), 30_000);
    let node = net.node_mut(0);
    node.restart()?;
    node.wait_stored(30_000, Duration::from_secs(120))?;
    let stored = node.stop_and_list_accepted()?;
    assert_eq!(stored.len(), 30_000);
    Ok(())
}
