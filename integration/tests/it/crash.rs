//! `kill -9` the node while a fleet publishes; after restarts the store holds exactly the
//! valid published readings: none lost, none duplicated.

use anyhow::Result;
use groundtruth_integration::{start_rumqttd, BrokerMode, FleetSpec, Mosquitto, NodeProc, Proc};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

fn crash_while_publishing(dir: &Path, broker: BrokerMode, seed: u64) -> Result<()> {
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
    let genesis = dir.join("genesis.toml");
    spec.write_genesis(&genesis)?;
    let mut node = NodeProc::start(dir, &genesis, broker)?;
    let broker: SocketAddr = broker.addr();
    let manifest_path = dir.join("manifest.json");
    let mut sim: Proc = spec.spawn(
        broker,
        &manifest_path,
        &["--speedup", "6000", "--linger-s", "12"],
        &dir.join("sim.log"),
    )?;
    let mut kills = 0;
    let started = Instant::now();
    while sim.is_running() {
        std::thread::sleep(Duration::from_millis(50));
        // Kill at about 1 s, 2.5 s and 4 s into the run, then restart at once.
        let due = [1000u128, 2500, 4000]
            .get(kills)
            .is_some_and(|t| started.elapsed().as_millis() >= *t);
        if due {
            node.proc.kill9();
            kills += 1;
            node.restart()?;
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
    let manifest = groundtruth_integration::Manifest::read(&manifest_path)?;
    node.wait_stored(manifest.accepted.len() as u64, Duration::from_secs(60))?;
    let mut stored = node.stop_and_list_accepted()?;
    stored.sort();
    let mut expected = manifest.accepted;
    expected.sort();
    assert_eq!(
        stored.len(),
        expected.len(),
        "stored {} readings, published {} valid ones",
        stored.len(),
        expected.len()
    );
    assert_eq!(stored, expected);
    Ok(())
}

#[test]
fn node_killed_mid_stream_loses_and_duplicates_nothing_rumqttd() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (_broker, addr) = start_rumqttd(dir.path())?;
    crash_while_publishing(dir.path(), BrokerMode::External(addr), 21)
}

#[test]
fn node_killed_mid_stream_loses_and_duplicates_nothing_mosquitto() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(dir.path())?;
    crash_while_publishing(dir.path(), BrokerMode::External(mosquitto.addr), 22)
}

/// With the embedded broker the broker dies with the node, taking readings it had already
/// acknowledged to devices. Devices keep recent readings; the node sees the sequence gaps and
/// asks for them again (PROTOCOL.md, "Resend"), so nothing is lost here either.
#[test]
fn node_with_embedded_broker_killed_mid_stream_refills_gaps_by_resend() -> Result<()> {
    let dir = tempfile::tempdir()?;
    crash_while_publishing(
        dir.path(),
        BrokerMode::Embedded(groundtruth_integration::free_addr()),
        23,
    )
}

/// A backlog far larger than every queue in the node (Mosquitto keeps it for the node's
/// persistent session and sends it without waiting for acks): the node must drain it all
/// without stalling. Before the ingest queue slot was taken ahead of each read, the MQTT loop
/// and the committer could wait on each other here.
#[test]
fn node_drains_a_backlog_larger_than_its_queues() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mosquitto = Mosquitto::start(dir.path())?;
    let spec = FleetSpec {
        seed: 24,
        energy: 500,
        gpu: 0,
        storage: 0,
        unknown: 0,
        faults: "none".into(),
        intervals: 60,
    };
    let genesis = dir.path().join("genesis.toml");
    spec.write_genesis(&genesis)?;
    let mut node = NodeProc::start(dir.path(), &genesis, BrokerMode::External(mosquitto.addr))?;
    // Let the node create its persistent session, then take it away while the fleet publishes.
    node.wait_for_connected(Duration::from_secs(10))?;
    node.proc.kill9();
    let manifest = spec.run(mosquitto.addr, dir.path(), &["--presign"])?;
    assert_eq!(manifest.accepted.len(), 30_000);
    node.restart()?;
    node.wait_stored(30_000, Duration::from_secs(120))?;
    let stored = node.stop_and_list_accepted()?;
    assert_eq!(stored.len(), 30_000);
    Ok(())
}
