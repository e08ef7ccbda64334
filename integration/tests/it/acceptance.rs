//! Acceptance tests of issue 7 that need real processes: fee-less spam, oversized bodies,
//! per-device flooding, one slash per equivocation incident, a read-only data directory, and
//! MQTT topic and session protection.

use anyhow::{ensure, Context, Result};
use ed25519_dalek::{Signer, SigningKey};
use groundtruth_device_sdk::{topics, DeviceKey};
use groundtruth_integration::mqtt::{
    energy_frame, energy_frames, publish_all, Connect, MqttClient,
};
use groundtruth_integration::{seed_address, Genesis, TestNet};
use groundtruth_ledger::{Address, Tx, TxBody};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Devnet provider (seed 100), owner of the test devices.
const PROVIDER_SEED: u8 = 100;

fn signing_key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn address(k: &SigningKey) -> Address {
    Address(k.verifying_key().to_bytes())
}

fn chain_id(net: &TestNet) -> Result<String> {
    Ok(net.node(0).status()?["chain_id"]
        .as_str()
        .context("chain id")?
        .to_string())
}

/// (a) With a minimum fee, a key holding nothing cannot get a transaction into a block: it
/// is refused at admission (alone or in a batch) and never committed, while a funded key's
/// identical transaction is.
#[test]
fn a_zero_balance_key_cannot_get_a_tx_into_a_block() -> Result<()> {
    const MIN_FEE: u64 = 10;
    let net = TestNet::builder()
        .consensus(true)
        .genesis(Genesis::devnet()?.param("min_fee", 10))
        .build()?;
    net.wait_height(&[0], 1, Duration::from_secs(30))?;
    let api = net.node(0).api();
    let chain = chain_id(&net)?;
    let broke = signing_key(150);
    let funded = signing_key(101);
    let to = address(&signing_key(PROVIDER_SEED));
    let transfer = |k: &SigningKey, fee: u64| {
        Tx {
            signer: address(k),
            nonce: 0,
            fee,
            body: TxBody::Transfer { to, amount: 1 },
        }
        .sign(&chain, k)
        .encode()
    };
    let (code, acc) = api.get_json(&format!("/state/account/{}", address(&broke)))?;
    ensure!(
        code == 404 || acc["balance"].as_u64().unwrap_or(0) == 0,
        "the test key has funds: {acc}"
    );

    let spam = transfer(&broke, MIN_FEE);
    let hash = blake3::hash(&spam).to_hex().to_string();
    let r = api.post("/tx", &spam)?;
    ensure!(
        r.status == 400,
        "zero-balance tx admitted: {} {}",
        r.status,
        r.text()
    );
    ensure!(
        r.json()?["reason"] == "insufficient_funds",
        "refused for another reason: {}",
        r.text()
    );
    // Also without a fee (below the minimum), and inside a batch.
    let r = api.post("/tx", &transfer(&broke, 0))?;
    ensure!(r.status == 400, "fee-less tx admitted: {}", r.text());
    let mut batch = Vec::new();
    batch.extend_from_slice(&(spam.len() as u32).to_be_bytes());
    batch.extend_from_slice(&spam);
    let r = api.post("/txs", &batch)?;
    let items = r.json()?;
    ensure!(
        items[0]["hash"].is_null() && items[0]["reason"].is_string(),
        "zero-balance tx admitted in a batch: {items}"
    );

    // The control: a funded key's transaction gets in.
    let ok = transfer(&funded, MIN_FEE);
    let ok_hash = blake3::hash(&ok).to_hex().to_string();
    let r = api.post("/tx", &ok)?;
    ensure!(r.status == 200, "funded tx refused: {}", r.text());
    net.wait_all(
        &[0],
        &format!("/tx/{ok_hash}"),
        Duration::from_secs(20),
        |v| v["height"].is_u64(),
    )?;
    // A few blocks later the zero-balance one is still in no block and its nonce unused.
    let h = net.node(0).height();
    net.wait_height(&[0], h + 3, Duration::from_secs(20))?;
    let (code, v) = api.get_json(&format!("/tx/{hash}"))?;
    ensure!(code == 404, "zero-balance tx committed: {v}");
    let (_, acc) = api.get_json(&format!("/state/account/{}", address(&broke)))?;
    ensure!(
        acc["nonce"].as_u64().unwrap_or(0) == 0,
        "zero-balance key's nonce moved: {acc}"
    );
    Ok(())
}

/// (b) An 8 MiB `POST /txs` body is refused (413) without the node's resident memory growing
/// by more than a few MiB, even at its peak.
#[test]
fn an_8_mib_batch_is_refused_without_growing_memory() -> Result<()> {
    let net = TestNet::builder().consensus(true).build()?;
    net.wait_height(&[0], 1, Duration::from_secs(30))?;
    let node = net.node(0);
    // A well-formed batch: entries of 1000 bytes, so only its size can refuse it.
    let mut body = Vec::with_capacity(8 << 20);
    while body.len() + 1004 <= 8 << 20 {
        body.extend_from_slice(&1000u32.to_be_bytes());
        body.extend_from_slice(&[7u8; 1000]);
    }
    body.resize(8 << 20, 0);
    let proc = node.proc()?;
    proc.reset_peak_rss()?;
    let before = proc.rss_kib().context("VmRSS")?;
    let r = node.api().post("/txs", &body)?;
    let peak = proc.peak_rss_kib().context("VmHWM")?;
    ensure!(
        r.status == 413,
        "8 MiB body not refused: {} {}",
        r.status,
        r.text()
    );
    let grew = peak.saturating_sub(before);
    ensure!(
        grew < 4 * 1024,
        "resident memory peaked {grew} KiB above {before} KiB while refusing the body"
    );
    Ok(())
}

/// (c) One device flooding far above its rate is limited (`rate_limited`) while four other
/// devices' readings are all accepted.
#[test]
fn a_flooding_device_leaves_other_devices_flowing() -> Result<()> {
    const FLOOD: u64 = 2000;
    const EACH: u64 = 30;
    let flooder = DeviceKey::from_seed(&[60; 32]);
    let others: Vec<DeviceKey> = (61..65).map(|s| DeviceKey::from_seed(&[s; 32])).collect();
    let mut genesis = Genesis::devnet()?.energy_device(&flooder, 5000);
    for k in &others {
        genesis = genesis.energy_device(k, 5000);
    }
    let mut net = TestNet::builder()
        .genesis(genesis)
        .env("GROUNDTRUTH__INGEST__DEVICE_BURST", "50")
        .env("GROUNDTRUTH__INGEST__DEVICE_RATE_PER_S", "5")
        .build()?;
    let broker = net.broker_addr();
    let flood = std::thread::spawn({
        let frames = energy_frames(&flooder, 0, FLOOD);
        let topic = topics::readings_topic(&flooder.device_id());
        move || publish_all(broker, &topic, &frames)
    });
    for k in &others {
        publish_all(
            broker,
            &topics::readings_topic(&k.device_id()),
            &energy_frames(k, 0, EACH),
        )?;
    }
    flood
        .join()
        .map_err(|_| anyhow::anyhow!("flood thread panicked"))??;
    let node = net.node_mut(0);
    let m = node.wait_received(FLOOD + 4 * EACH, Duration::from_secs(60))?;
    ensure!(
        m.outcome("rate_limited") > 0,
        "the flood was not limited: {:?}",
        m.outcomes()
    );
    let stored = node.stop_and_list_accepted()?;
    for k in &others {
        let id = k.device_id().to_string();
        let n = stored.iter().filter(|s| s.starts_with(&id)).count() as u64;
        ensure!(
            n == EACH,
            "device {id}: {n} of {EACH} readings accepted during the flood"
        );
    }
    let flooded = stored
        .iter()
        .filter(|s| s.starts_with(&flooder.device_id().to_string()))
        .count() as u64;
    ensure!(flooded < FLOOD, "every flooded reading was accepted");
    Ok(())
}

/// (d) One equivocation incident (one device signing several seqs twice) slashes its owner
/// once, not once per conflicting seq.
#[test]
fn one_equivocation_incident_slashes_once() -> Result<()> {
    const STAKE: u64 = 1000;
    const BP: u64 = 1000;
    let device = DeviceKey::from_seed(&[66; 32]);
    let net = TestNet::builder()
        .consensus(true)
        .genesis(Genesis::devnet()?.energy_device(&device, 5000))
        .build()?;
    net.wait_height(&[0], 1, Duration::from_secs(30))?;
    let node = net.node(0);
    let topic = topics::readings_topic(&device.device_id());
    let honest = energy_frames(&device, 0, 6);
    publish_all(node.broker(), &topic, &honest)?;
    node.wait_outcome("accepted", 6, Duration::from_secs(15), || Ok(()))?;
    // Seqs 1..=4 signed again with other values.
    let conflicting: Vec<Vec<u8>> = (1..=4)
        .map(|s| energy_frame(&device, s, 50, 60 + s))
        .collect();
    publish_all(node.broker(), &topic, &conflicting)?;
    node.wait_outcome("equivocation", 4, Duration::from_secs(15), || Ok(()))?;
    let provider = seed_address(PROVIDER_SEED);
    let is_ours = |r: &serde_json::Value| {
        r["reason"] == "device_equivocation" && r["offender"]["provider"] == provider.as_str()
    };
    net.wait_all(&[0], "/state/validators", Duration::from_secs(20), |v| {
        v["slashes"]
            .as_array()
            .is_some_and(|s| s.iter().any(is_ours))
    })?;
    // Every evidence transaction has had blocks to land in.
    let h = node.height();
    net.wait_height(&[0], h + 5, Duration::from_secs(20))?;
    let (_, v) = node.api().get_json("/state/validators")?;
    let n = v["slashes"]
        .as_array()
        .map_or(0, |s| s.iter().filter(|r| is_ours(r)).count());
    ensure!(n == 1, "{n} slashes for one incident: {}", v["slashes"]);
    let (_, acc) = node.api().get_json(&format!("/state/account/{provider}"))?;
    ensure!(
        acc["provider"]["stake"].as_u64() == Some(STAKE - STAKE * BP / 10_000),
        "provider stake after one incident: {acc}"
    );
    Ok(())
}

/// Whether file modes bind this process (they do not for root).
fn modes_bind() -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir()?;
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o500))?;
    let writable = std::fs::write(d.path().join("probe"), b"x").is_ok();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700))?;
    Ok(!writable)
}

fn chmod_tree(path: &std::path::Path, dir_mode: u32, file_mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        if p.is_dir() {
            chmod_tree(&p, dir_mode, file_mode)?;
        } else {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(file_mode))?;
        }
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(dir_mode))?;
    Ok(())
}

/// (e) A node whose data directory has become read-only exits non-zero instead of running
/// without persisting; made writable again, it still holds every reading it had accepted.
/// As root (which file modes do not bind) the node runs as `nobody` through `setpriv`.
#[test]
fn a_read_only_data_directory_stops_the_node_and_loses_nothing() -> Result<()> {
    let device = DeviceKey::from_seed(&[67; 32]);
    let mut builder = TestNet::builder().genesis(Genesis::devnet()?.energy_device(&device, 5000));
    if !modes_bind()? {
        builder = builder.run_as(65534, 65534);
    }
    let mut net = builder.build()?;
    let topic = topics::readings_topic(&device.device_id());
    let frames = energy_frames(&device, 0, 20);
    publish_all(net.broker_addr(), &topic, &frames)?;
    net.node(0).wait_stored(20, Duration::from_secs(20))?;

    let node = net.node_mut(0);
    node.kill9();
    let data = node.data_dir().to_path_buf();
    chmod_tree(&data, 0o555, 0o444)?;
    node.restart_no_wait()?;
    let status = node
        .proc_mut()?
        .wait_exit(Duration::from_secs(30))
        .context("the node kept running on a read-only data directory")?;
    ensure!(
        !status.success(),
        "the node exited 0 on a read-only data directory"
    );

    chmod_tree(&data, 0o755, 0o644)?;
    node.restart()?;
    let stored = node.stop_and_list_accepted()?;
    ensure!(
        stored.len() == 20,
        "{} of 20 accepted readings left: {stored:?}",
        stored.len()
    );
    Ok(())
}

/// A login token (PROTOCOL.md, "MQTT session") computed here from the protocol text, so that
/// the test checks the broker against the specification rather than against the SDK.
fn login_password(seed: u8, client_id: &str) -> Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let mut msg = b"groundtruth/v1/mqtt-login\0".to_vec();
    msg.extend_from_slice(client_id.as_bytes());
    msg.extend_from_slice(&now.to_be_bytes());
    let sig = signing_key(seed).sign(&msg);
    let mut token = now.to_be_bytes().to_vec();
    token.extend_from_slice(&sig.to_bytes());
    let mut hex = String::with_capacity(2 * token.len());
    for byte in token {
        use std::fmt::Write;
        write!(hex, "{byte:02x}")?;
    }
    Ok(hex)
}

/// (f) On the embedded broker a device may publish only to its own topic, and nobody can
/// take over a device's session with a guessed client id.
#[test]
fn mqtt_refuses_foreign_topics_and_session_takeover() -> Result<()> {
    let (a_seed, b_seed) = (68u8, 69u8);
    let a = DeviceKey::from_seed(&[a_seed; 32]);
    let b = DeviceKey::from_seed(&[b_seed; 32]);
    let net = TestNet::builder()
        .genesis(
            Genesis::devnet()?
                .energy_device(&a, 5000)
                .energy_device(&b, 5000),
        )
        // Logins on: the node's own ingest connection uses a secret it generates for its
        // embedded broker; devices log in with tokens signed by their keys.
        .configure(|_, c| c.mqtt.auth = true)
        .build()?;
    let node = net.node(0);
    let broker = net.broker_addr();
    let (a_id, b_id) = (a.device_id().to_string(), b.device_id().to_string());

    // B is connected with its own login.
    let b_pass = login_password(b_seed, &b_id)?;
    let mut b_conn = MqttClient::connect_ok(broker, &b_id, Some((&b_id, &b_pass)))?;

    // A, logged in as itself, publishes a reading to B's topic: refused by the broker (the
    // node never receives it), then its own reading to its own topic: accepted.
    let a_pass = login_password(a_seed, &a_id)?;
    let mut a_conn = MqttClient::connect_ok(broker, &a_id, Some((&a_id, &a_pass)))?;
    let b_topic = topics::readings_topic(&b.device_id());
    a_conn.publish(
        &b_topic,
        &[energy_frame(&a, 0, 100, 100)],
        Duration::from_secs(2),
    )?;
    let mut a_conn = MqttClient::connect_ok(broker, &a_id, Some((&a_id, &a_pass)))?;
    let a_topic = topics::readings_topic(&a.device_id());
    let acked = a_conn.publish(
        &a_topic,
        &[energy_frame(&a, 0, 100, 100)],
        Duration::from_secs(5),
    )?;
    ensure!(acked == 1, "A's own reading not acknowledged");
    let m = node.wait_received(1, Duration::from_secs(10))?;
    ensure!(
        m.get("groundtruth_ingest_received_total") as u64 == 1 && m.outcome("accepted") == 1,
        "the node received A's publish to B's topic: {:?}",
        m.outcomes()
    );

    // Taking over B's session: B's client id with A's valid token, with no password, with a
    // guessed token: every one refused, and B's session survives.
    let zeros = "0".repeat(144);
    let guesses: [Option<(&str, &str)>; 3] = [
        Some((b_id.as_str(), a_pass.as_str())),
        None,
        Some((b_id.as_str(), zeros.as_str())),
    ];
    for login in guesses {
        match MqttClient::connect(broker, &b_id, login)? {
            Connect::Refused(_) => {}
            Connect::Accepted(c) => {
                c.disconnect();
                anyhow::bail!("session takeover with {login:?} accepted");
            }
        }
    }
    ensure!(
        b_conn.is_alive(Duration::from_secs(1)),
        "B's session was taken over"
    );
    let acked = b_conn.publish(
        &b_topic,
        &[energy_frame(&b, 0, 100, 100)],
        Duration::from_secs(5),
    )?;
    ensure!(acked == 1, "B can no longer publish");
    node.wait_outcome("accepted", 2, Duration::from_secs(10), || Ok(()))?;
    Ok(())
}
