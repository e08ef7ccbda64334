//! Ingest wired to the replicated ledger, end to end with four `groundtruth node` validators:
//! a device the ledger does not know is rejected; registered through `groundtruth tx
//! register-device`, its readings are accepted once the block is applied; two different signed
//! readings for one (device, seq) are caught at ingest and become a `SubmitEvidence` that
//! slashes the owner's provider stake on every validator. The same holds when the two readings
//! reach two different validators' brokers: readings replication brings each validator the
//! other's copy, and the equivocation is caught and slashed once. A transaction sent to one
//! validator reaches the others by gossip (HTTP forwarding off) and lands in a block.

use anyhow::{ensure, Context, Result};
use groundtruth_device_sdk::{topics, DeviceKey};
use groundtruth_integration::mqtt::{energy_frame, publish_all};
use groundtruth_integration::{groundtruth, write_key_file, Genesis, TestNet};
use std::collections::BTreeMap;
use std::time::Duration;

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

fn count(m: &BTreeMap<String, u64>, label: &str) -> u64 {
    m.get(label).copied().unwrap_or(0)
}

fn cli(args: &[String]) -> Result<String> {
    let out = groundtruth(args)?;
    ensure!(out.ok, "groundtruth {args:?} failed: {}", out.text);
    Ok(out.text)
}

#[test]
fn ingest_checks_the_ledger_registry_and_device_equivocation_slashes_the_owner() -> Result<()> {
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(Genesis::devnet()?.epoch_length(100))
        .build()?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    let dir = net.dir().to_path_buf();
    let ingest = net.node(INGEST);
    let broker = ingest.broker();

    // A device key that is in no genesis file.
    let device_key_file = dir.join("meter.key");
    write_key_file(&device_key_file, [77; 32])?;
    let key = DeviceKey::from_seed(&[77; 32]);
    let topic = topics::readings_topic(&key.device_id());
    let publish = |frames: &[Vec<u8>]| publish_all(broker, &topic, frames);
    let device = key.device_id().to_string();
    let (code, _) = ingest.api().get_json(&format!("/state/device/{device}"))?;
    ensure!(code == 404, "device unexpectedly known to the ledger");

    // 1. Unregistered: a valid reading is rejected as unknown_device (republished until the
    // node's subscription is up: the broker keeps nothing for a topic nobody subscribed to).
    let first = energy_frame(&key, 0, 100, 100);
    publish(std::slice::from_ref(&first))?;
    let m = ingest.wait_outcome("unknown_device", 1, Duration::from_secs(15), || {
        publish(std::slice::from_ref(&first))
    })?;
    ensure!(
        count(&m, "accepted") == 0,
        "accepted before registration: {m:?}"
    );

    // 2. `groundtruth tx register-device` (owner: provider seed 100) through another validator;
    // once the block is applied on the ingesting validator, readings are accepted.
    let provider_key = dir.join("provider.key");
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
        &net.node(1).api().url(),
    ]
    .map(String::from))?;
    net.wait_all(
        &ALL,
        &format!("/state/device/{device}"),
        Duration::from_secs(15),
        |v| v["status"] == "active" && v["owner"] == PROVIDER,
    )?;
    let seq0 = energy_frame(&key, 0, 120, 120);
    let seq1 = energy_frame(&key, 1, 300, 420);
    let registered = [seq0, seq1];
    publish(&registered)?;
    // Republished (harmless duplicates) in case the API showed the block a moment before the
    // ingest registry was swapped.
    let m = ingest.wait_outcome("accepted", 2, Duration::from_secs(10), || {
        publish(&registered)
    })?;
    ensure!(count(&m, "equivocation") == 0, "outcomes {m:?}");

    // 3. A second, different, validly signed reading for seq 1 is equivocation at ingest...
    let before = ingest.outcomes();
    let conflicting = energy_frame(&key, 1, 200, 320);
    publish(&[conflicting])?;
    let m = ingest.wait_outcome("equivocation", 1, Duration::from_secs(10), || Ok(()))?;
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
        let (_, acc) = net
            .node(i)
            .api()
            .get_json(&format!("/state/account/{PROVIDER}"))?;
        ensure!(
            acc["provider"]["stake"].as_u64() == Some(PROVIDER_STAKE - slashed),
            "validator {i}: provider stake not slashed by {EQUIVOCATION_BP} bp: {acc}"
        );
    }
    // The validators still agree on the state after the slash.
    let h = ingest.height();
    net.wait_height(&ALL, h, Duration::from_secs(10))?;
    net.agreed_root(&ALL, h)?;
    Ok(())
}

#[test]
fn an_equivocation_split_over_two_validators_brokers_is_caught_and_slashed_once() -> Result<()> {
    // Every validator embeds its own broker and reads only from it; readings reach the others
    // through the validators' swarm.
    let key = DeviceKey::from_seed(&[78; 32]);
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(
            Genesis::devnet()?
                .epoch_length(100)
                .energy_device(&key, CAPACITY),
        )
        .build()?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    let topic = topics::readings_topic(&key.device_id());
    // Two different, validly signed readings for seq 0: one to validator 0's broker, the other
    // to validator 1's. Neither broker alone ever sees a conflict.
    let a = energy_frame(&key, 0, 120, 120);
    let b = energy_frame(&key, 0, 200, 200);
    let (v0, v1) = (net.node(0), net.node(1));
    publish_all(v0.broker(), &topic, std::slice::from_ref(&a))?;
    publish_all(v1.broker(), &topic, std::slice::from_ref(&b))?;
    // Whichever copy a validator accepted first, the other reaches it through replication (or
    // its own broker) and is the conflict; the evidence goes to the ledger.
    // One slash of the owner on every validator, however many validators found it.
    let views = net.wait_all(&ALL, "/state/validators", Duration::from_secs(40), |v| {
        v["slashes"].as_array().is_some_and(|s| {
            s.iter().any(|r| {
                r["reason"] == "device_equivocation" && r["offender"]["provider"] == PROVIDER
            })
        })
    })?;
    let slashed = PROVIDER_STAKE * EQUIVOCATION_BP / 10_000;
    for (i, v) in views.iter().enumerate() {
        let n = net.node(i).api().device_equivocation_slashes(PROVIDER)?;
        ensure!(
            n == 1,
            "validator {i}: {n} device-equivocation slashes, want exactly 1: {}",
            v["slashes"]
        );
        let (_, acc) = net
            .node(i)
            .api()
            .get_json(&format!("/state/account/{PROVIDER}"))?;
        ensure!(
            acc["provider"]["stake"].as_u64() == Some(PROVIDER_STAKE - slashed),
            "validator {i}: provider stake not slashed once by {EQUIVOCATION_BP} bp: {acc}"
        );
    }
    let caught: u64 = [v0, v1]
        .iter()
        .map(|n| count(&n.outcomes(), "equivocation"))
        .sum();
    ensure!(
        caught >= 1,
        "neither receiving validator recorded the equivocation at ingest"
    );
    Ok(())
}

#[test]
fn a_transaction_sent_to_one_validator_is_gossiped_to_the_others_and_reaches_a_block() -> Result<()>
{
    use groundtruth_integration::{address_of, operator_key};
    use groundtruth_ledger::TxBody;
    // No HTTP forwarding: the validators' swarm is the only way a transaction travels.
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .configure(|_, cfg| cfg.consensus.http_peers.clear())
        .build()?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    let entry = net.node(3).api();
    let to = address_of(&operator_key(1));
    let h = entry.sign_and_submit(&operator_key(0), 1, TxBody::Transfer { to, amount: 7 })?;
    for i in ALL {
        let outcome = net.node(i).api().wait_tx(&h, Duration::from_secs(30))?;
        ensure!(
            outcome["ok"] == true,
            "validator {i}: transaction {h} failed: {outcome}"
        );
    }
    for i in 0..3 {
        let m = net.node(i).api().metrics()?;
        let gossiped: f64 = ["accept", "ignore"]
            .iter()
            .map(|v| {
                m.get(&format!(
                    "groundtruth_p2p_gossip_received_total{{topic=\"tx\",verdict=\"{v}\"}}"
                ))
            })
            .sum();
        ensure!(
            gossiped >= 1.0,
            "validator {i} received no transaction by gossip ({gossiped})"
        );
    }
    Ok(())
}
