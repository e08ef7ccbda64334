//! End-to-end ingest benchmark: readings/s from the simulator through an MQTT broker into a
//! validator, verified and durable in sled, printed beside the raw ed25519 batch-verification
//! rate measured in the same run on the same machine.
//!
//! ```sh
//! cargo build --release --bin groundtruth
//! cargo run --release -p groundtruth-integration --bin ingest-bench -- [readings]
//! ```

use anyhow::{Context, Result};
use groundtruth_device_sdk::{
    verify_batch, DeviceKey, EnergyReading, Reading, ReadingBody, SignedReading,
};
use groundtruth_integration::{Broker, FleetSpec, Node, TestNet};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};

const DEVICES: u32 = 1000;

fn main() -> Result<()> {
    let readings: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100_000);
    let intervals = (readings / u64::from(DEVICES)).max(1);
    let total = intervals * u64::from(DEVICES);
    println!(
        "ingest benchmark: {total} readings from {DEVICES} devices ({intervals} intervals each)\n"
    );

    let (raw1, raw2) = raw_verification_rates(64 * 1024)?;
    println!("raw ed25519 batch verification (ZIP-215, batches of 256): {raw1:>9.0}/s on 1 thread, {raw2:>9.0}/s on 2 threads");

    let spec = FleetSpec {
        seed: 99,
        energy: DEVICES,
        gpu: 0,
        storage: 0,
        unknown: 0,
        faults: "none".into(),
        intervals,
    };

    // 1. End to end: simulator, embedded broker and node share the cores.
    let net = TestNet::builder()
        .broker(Broker::EmbeddedIn(0))
        .fleet(spec.clone())
        .build()?;
    let (mut sim, _) = net.spawn_fleet(&["--presign", "--connections", "2"])?;
    let e2e = measure_drain(net.node(0), total, "end to end")?;
    sim.wait_exit(Duration::from_secs(600));
    drop(net);
    println!("end to end (sim + embedded broker + node on the same cores): {e2e:>9.0}/s");

    // 2. The node's own ingest path: the broker holds a backlog for the node's persistent
    // session; the node drains it with the simulator idle.
    // `ingest-bench N mosquitto` drains from Mosquitto (in-flight window 1000) instead of
    // rumqttd (whose window to a subscriber is fixed at 100).
    let broker = if std::env::args().nth(2).as_deref() == Some("mosquitto") {
        Broker::Mosquitto
    } else {
        Broker::Standalone
    };
    // The builder returns once the node's persistent sessions exist.
    let mut net = TestNet::builder().broker(broker).fleet(spec).build()?;
    net.node_mut(0).kill9();
    let sim = net.run_fleet(&["--presign", "--connections", "2"])?;
    anyhow::ensure!(
        sim.accepted.len() as u64 == total,
        "fleet published {} valid readings, expected {total}",
        sim.accepted.len()
    );
    let node = net.node_mut(0);
    node.restart()?;
    let cpu_before = node.proc()?.cpu_time().unwrap_or_default();
    let drain = measure_drain(node, total, "node only")?;
    let cpu = node
        .proc()?
        .cpu_time()
        .unwrap_or_default()
        .saturating_sub(cpu_before);
    let m = node.metrics()?;
    println!("node ingest path alone (backlog drained from a broker):   {drain:>9.0}/s");
    println!(
        "  node CPU {:.1} µs per reading ({:.0}% of one core while draining); raw verification costs {:.1} µs",
        cpu.as_secs_f64() * 1e6 / total as f64,
        cpu.as_secs_f64() * drain / total as f64 * 100.0,
        1e6 / raw1
    );
    let flushes = m.get("groundtruth_ingest_flush_seconds_count");
    println!(
        "  group commits: {flushes:.0}, mean {:.0} readings and {:.2} ms per flush",
        m.get("groundtruth_ingest_commit_batch_sum") / flushes.max(1.0),
        m.get("groundtruth_ingest_flush_seconds_sum") * 1e3 / flushes.max(1.0)
    );
    println!();
    println!(
        "ratio end to end / raw 1-thread verification: {:.2}",
        e2e / raw1
    );
    println!(
        "ratio node alone / raw 1-thread verification: {:.2}",
        drain / raw1
    );
    println!(
        "ratio node alone / raw 2-thread verification: {:.2}",
        drain / raw2
    );
    Ok(())
}

/// Waits for `total` stored readings and returns readings/s from the first to the last.
fn measure_drain(node: &Node, total: u64, label: &str) -> Result<f64> {
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(&format!(
        "{label}: {{bar:40}} {{pos}}/{{len}} {{per_sec}}"
    ))?);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let stored = node.metrics()?.get("groundtruth_ingest_stored_accepted") as u64;
        let now = Instant::now();
        bar.set_position(stored);
        if stored > 0 && first.is_none() {
            first = Some((now, stored));
        }
        if stored >= total {
            bar.finish_and_clear();
            let (t0, n0) = first.context("nothing stored")?;
            let secs = now.duration_since(t0).as_secs_f64().max(1e-3);
            return Ok((stored - n0) as f64 / secs);
        }
        anyhow::ensure!(
            now < deadline,
            "{label}: only {stored} of {total} stored after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Batch verification rate over distinct keys, on one and on two threads.
fn raw_verification_rates(n: usize) -> Result<(f64, f64)> {
    let keys: Vec<DeviceKey> = (0..1024u32)
        .map(|i| {
            let mut seed = [0u8; 32];
            seed[..4].copy_from_slice(&i.to_le_bytes());
            DeviceKey::from_seed(&seed)
        })
        .collect();
    let signed: Vec<SignedReading> = (0..n)
        .map(|i| {
            let key = &keys[i % keys.len()];
            key.sign(Reading {
                device: key.device_id(),
                seq: i as u64,
                timestamp_ms: 1_781_913_600_000,
                body: ReadingBody::Energy(EnergyReading {
                    interval_start_s: 1_781_913_600,
                    interval_len_s: 300,
                    energy_wh: 100,
                    register_wh: 1000 + i as u64,
                }),
            })
        })
        .collect();
    let run = |chunk: &[SignedReading]| -> bool {
        chunk
            .chunks(256)
            .all(|b| verify_batch(b, rand::rngs::OsRng).iter().all(|v| *v))
    };
    let t = Instant::now();
    anyhow::ensure!(run(&signed), "baseline signatures failed");
    let one = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (a, b) = signed.split_at(n / 2);
    let ok = std::thread::scope(|s| {
        let h = s.spawn(|| run(a));
        let r = run(b);
        r && h.join().unwrap_or(false)
    });
    anyhow::ensure!(ok, "baseline signatures failed");
    let two = n as f64 / t.elapsed().as_secs_f64();
    Ok((one, two))
}
