//! Ingest wired to the replicated ledger, end to end with four `groundtruth node` validators:
//! a device the ledger does not know is rejected; registered through `groundtruth tx
//! register-device`, its readings are accepted once the block is applied; two different signed
//! readings for one (device, seq) are caught at ingest and become a `SubmitEvidence` that
//! slashes the owner's provider stake on every validator.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_device_sdk::{topics, DeviceKey, EnergyReading, Reading, ReadingBody};
use groundtruth_integration::ledger::{get_json, write_key_file, LedgerNet, NetOptions};
use groundtruth_integration::{groundtruth_bin, outcome_counts, scrape};
use rumqttc::{Client, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const ALL: [usize; 4] = [0, 1, 2, 3];
/// The validator whose embedded broker the device publishes to.
const INGEST: usize = 0;
/// Devnet provider (seed 100) that owns the device.
const PROVIDER: &str = "2bc2800b3316e009209ffd757dab19ccf0ae84bc7ae90654e1e81712d270f653";
/// Operator (seed 10) of validator 0, which signs the evidence its ingest found.
const INGEST_OPERATOR: &str = "43a72e714401762df66b68c26dfbdf2682aaec9f2474eca4613e424a0fbafd3c";
/// Its bonded stake in configs/genesis.toml.
const PROVIDER_STAKE: u64 = 1000;
/// `slash_device_equivocation_bp` in configs/genesis.toml.
const EQUIVOCATION_BP: u64 = 1000;
/// Registered capacity (W): at most 333 Wh per 300 s interval.
const CAPACITY: u64 = 4000;

/// A validly signed 5-minute energy reading.
fn reading(key: &DeviceKey, seq: u64, energy_wh: u64, register_wh: u64) -> Vec<u8> {
    let interval_start_s = 1_700_000_000 + seq * 300;
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: (interval_start_s + 300) * 1000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s,
            interval_len_s: 300,
            energy_wh,
            register_wh,
        }),
    })
    .to_frame()
}

/// Publishes `frames` on the device's readings topic (QoS 1) and waits for every PUBACK.
fn publish(broker: SocketAddr, key: &DeviceKey, frames: &[Vec<u8>]) -> Result<()> {
    static CONNECTIONS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut opts = MqttOptions::new(
        format!("ledger-ingest-device-{n}"),
        broker.ip().to_string(),
        broker.port(),
    );
    opts.set_keep_alive(Duration::from_secs(5));
    let (client, mut conn) = Client::new(opts, 16);
    let topic = topics::readings_topic(&key.device_id());
    for frame in frames {
        client.publish(topic.clone(), QoS::AtLeastOnce, false, frame.clone())?;
    }
    let until = Instant::now() + Duration::from_secs(10);
    let mut acked = 0;
    while acked < frames.len() {
        if Instant::now() > until {
            bail!(
                "{acked} of {} publishes acknowledged by {broker}",
                frames.len()
            );
        }
        match conn.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => bail!("MQTT connection to {broker}: {e}"),
        }
    }
    client.disconnect()?;
    // Drive the loop until the DISCONNECT is on the wire.
    while let Ok(Ok(event)) = conn.recv_timeout(Duration::from_millis(500)) {
        if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
            break;
        }
    }
    Ok(())
}

/// The ingest outcome counts of a validator (`accepted`, then one entry per rejection reason).
fn outcomes(net: &LedgerNet, i: usize) -> BTreeMap<String, u64> {
    scrape(net.validators[i].api)
        .map(|m| outcome_counts(&m))
        .unwrap_or_default()
}

fn count(m: &BTreeMap<String, u64>, label: &str) -> u64 {
    m.get(label).copied().unwrap_or(0)
}

/// Waits until `label` reaches `at_least` on validator `i`; `republish` (if any) runs every
/// couple of seconds meanwhile, for messages published before the node had subscribed.
fn wait_outcome(
    net: &LedgerNet,
    i: usize,
    label: &str,
    at_least: u64,
    timeout: Duration,
    mut republish: impl FnMut() -> Result<()>,
) -> Result<BTreeMap<String, u64>> {
    let until = Instant::now() + timeout;
    let mut last_publish = Instant::now();
    loop {
        let m = outcomes(net, i);
        if count(&m, label) >= at_least {
            return Ok(m);
        }
        if Instant::now() > until {
            bail!("validator {i}: {label} did not reach {at_least} within {timeout:?}; outcomes {m:?}");
        }
        if last_publish.elapsed() > Duration::from_secs(2) {
            republish()?;
            last_publish = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(args: &[String]) -> Result<String> {
    let out = Command::new(groundtruth_bin()?).args(args).output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(out.status.success(), "groundtruth {args:?} failed: {text}");
    Ok(text)
}

#[test]
fn ingest_checks_the_ledger_registry_and_device_equivocation_slashes_the_owner() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let genesis = groundtruth_integration::ledger::devnet_genesis(100)?;
    let net = LedgerNet::start(dir.path(), &genesis, 4, &NetOptions::default())?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    let broker = net.validators[INGEST].broker;

    // A device key that is in no genesis file.
    let device_key_file = dir.path().join("meter.key");
    write_key_file(&device_key_file, [77; 32])?;
    let key = DeviceKey::from_seed(&[77; 32]);
    let device = key.device_id().to_string();
    let (code, _) = get_json(
        net.validators[INGEST].api,
        &format!("/state/device/{device}"),
    )?;
    ensure!(code == 404, "device unexpectedly known to the ledger");

    // 1. Unregistered: a valid reading is rejected as unknown_device (republished until the
    // node's subscription is up: the broker keeps nothing for a topic nobody subscribed to).
    let first = reading(&key, 0, 100, 100);
    publish(broker, &key, std::slice::from_ref(&first))?;
    let m = wait_outcome(
        &net,
        INGEST,
        "unknown_device",
        1,
        Duration::from_secs(15),
        || publish(broker, &key, std::slice::from_ref(&first)),
    )?;
    ensure!(
        count(&m, "accepted") == 0,
        "accepted before registration: {m:?}"
    );

    // 2. `groundtruth tx register-device` (owner: provider seed 100) through another validator;
    // once the block is applied on the ingesting validator, readings are accepted.
    let provider_key = dir.path().join("provider.key");
    write_key_file(&provider_key, [100; 32])?;
    cli(&[
        "tx",
        "register-device",
        "--key",
        &provider_key.display().to_string(),
        "--device-key",
        &device_key_file.display().to_string(),
        "--kind",
        "energy",
        "--capacity",
        &CAPACITY.to_string(),
        "--region",
        "DE-BY",
        "--node",
        &format!("http://{}", net.validators[1].api),
    ]
    .map(String::from))?;
    net.wait_all(
        &ALL,
        &format!("/state/device/{device}"),
        Duration::from_secs(15),
        |v| v["status"] == "active" && v["owner"] == PROVIDER,
    )?;
    let seq0 = reading(&key, 0, 120, 120);
    let seq1 = reading(&key, 1, 300, 420);
    let registered = [seq0, seq1];
    publish(broker, &key, &registered)?;
    // Republished (harmless duplicates) in case the API showed the block a moment before the
    // ingest registry was swapped.
    let m = wait_outcome(&net, INGEST, "accepted", 2, Duration::from_secs(10), || {
        publish(broker, &key, &registered)
    })?;
    ensure!(count(&m, "equivocation") == 0, "outcomes {m:?}");

    // 3. A second, different, validly signed reading for seq 1 is equivocation at ingest...
    let before = outcomes(&net, INGEST);
    let conflicting = reading(&key, 1, 200, 320);
    publish(broker, &key, &[conflicting])?;
    let m = wait_outcome(
        &net,
        INGEST,
        "equivocation",
        1,
        Duration::from_secs(10),
        || Ok(()),
    )?;
    ensure!(
        count(&m, "accepted") == count(&before, "accepted"),
        "the conflicting reading was accepted: {m:?}"
    );

    // ...and on every validator's ledger, a device-equivocation slash of the owner, whose
    // provider stake dropped by slash_device_equivocation_bp.
    let slashed = PROVIDER_STAKE * EQUIVOCATION_BP / 10_000;
    let views = net.wait_all(&ALL, "/state/validators", Duration::from_secs(20), |v| {
        v["slashes"].as_array().is_some_and(|s| {
            s.iter().any(|r| {
                r["reason"] == "device_equivocation" && r["offender"]["provider"] == PROVIDER
            })
        })
    })?;
    for (i, v) in views.iter().enumerate() {
        let slashes: Vec<_> = v["slashes"]
            .as_array()
            .context("slashes")?
            .iter()
            .filter(|r| r["reason"] == "device_equivocation")
            .collect();
        ensure!(
            slashes.len() == 1,
            "validator {i}: expected one device-equivocation slash, got {slashes:?}"
        );
        ensure!(
            slashes[0]["amount"].as_u64() == Some(slashed),
            "validator {i}: slash amount {}",
            slashes[0]
        );
        ensure!(
            slashes[0]["explain"]
                .as_str()
                .is_some_and(|e| e.ends_with(&format!("reported by {INGEST_OPERATOR}"))),
            "validator {i}: evidence not submitted by the ingesting validator's operator: {}",
            slashes[0]
        );
    }
    for i in ALL {
        let (_, acc) = get_json(net.validators[i].api, &format!("/state/account/{PROVIDER}"))?;
        ensure!(
            acc["provider"]["stake"].as_u64() == Some(PROVIDER_STAKE - slashed),
            "validator {i}: provider stake not slashed by {EQUIVOCATION_BP} bp: {acc}"
        );
    }
    // The validators still agree on the state after the slash.
    let h = net.validators[INGEST].height();
    net.wait_height(&ALL, h, Duration::from_secs(10))?;
    net.agreed_root(&ALL, h)?;
    Ok(())
}
