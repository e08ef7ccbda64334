//! Four `groundtruth node` validators with consensus on loopback replicate one ledger:
//! same blocks and roots, liveness with one killed, catch-up after restart, a device
//! registered through `groundtruth tx` visible everywhere, a bond changing the next epoch's
//! set, and double-sign evidence slashing and jailing a validator on every node.

use anyhow::{ensure, Context, Result};
use ed25519_dalek::SigningKey;
use groundtruth_integration::{groundtruth, write_key_file, Genesis, TestNet};
use groundtruth_ledger::testkit;
use groundtruth_ledger::{Address, DoubleSignEvidence, Evidence, Tx, TxBody, VoteKind};
use serde_json::Value;
use std::time::Duration;

const ALL: [usize; 4] = [0, 1, 2, 3];

fn cli(args: &[String]) -> Result<(bool, String)> {
    let out = groundtruth(args)?;
    Ok((out.ok, out.text))
}

fn power_of(v: &Value, key: &str) -> Option<u64> {
    v["set"]
        .as_array()?
        .iter()
        .find(|e| e["consensus_key"] == key)
        .and_then(|e| e["power"].as_u64())
}

#[test]
fn four_validators_replicate_the_ledger() -> Result<()> {
    let mut net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(Genesis::devnet()?.epoch_length(10))
        .build()?;
    let dir = net.dir().to_path_buf();
    let api = |i: usize| net.node(i).api().url();

    // 1. All decide the same blocks and state roots.
    net.wait_height(&ALL, 3, Duration::from_secs(40))?;
    for h in 1..=3 {
        net.agreed_root(&ALL, h)?;
    }

    // 2. `groundtruth tx register-device` on validator 0 → visible on every validator.
    let provider_key = dir.join("provider.key");
    write_key_file(&provider_key, [100; 32])?;
    let device_key = dir.join("meter.key");
    let (ok, out) = cli(&[
        "keygen".into(),
        "--out".into(),
        device_key.display().to_string(),
    ])?;
    ensure!(ok, "keygen failed: {out}");
    let device = out.trim().to_string();
    let (ok, out) = cli(&[
        "tx",
        "register-device",
        "--key",
        &provider_key.display().to_string(),
        "--device-key",
        &device_key.display().to_string(),
        "--kind",
        "energy",
        "--capacity",
        "4000",
        "--region",
        "DE-BY",
        "--node",
        &api(0),
    ]
    .map(String::from))?;
    ensure!(ok, "register-device failed: {out}");
    // Validators one block behind may not have it yet.
    net.wait_all(
        &ALL,
        &format!("/state/device/{device}"),
        Duration::from_secs(10),
        |v| v["status"] == "active",
    )?;
    for i in ALL {
        let (ok, out) =
            cli(&["tx", "query", "device", &device, "--node", &api(i)].map(String::from))?;
        ensure!(ok, "query on validator {i} failed: {out}");
        let v: Value =
            serde_json::from_str(&out).with_context(|| format!("query output: {out}"))?;
        ensure!(
            v["owner"] == "2bc2800b3316e009209ffd757dab19ccf0ae84bc7ae90654e1e81712d270f653"
                && v["kind"] == "energy"
                && v["capacity"] == 4000,
            "validator {i} shows {v}"
        );
    }

    // 3. A bond by operator 0 raises its power from the next epoch (epochs are 10 blocks).
    let op0 = dir.join("op0.key");
    write_key_file(&op0, [10; 32])?;
    let (ok, out) = cli(&[
        "tx",
        "bond",
        "--key",
        &op0.display().to_string(),
        "--amount",
        "5000",
        "--node",
        &api(1),
    ]
    .map(String::from))?;
    ensure!(ok, "bond failed: {out}");
    let key40 = Address(testkit::key(40).verifying_key().to_bytes()).to_string();
    let before = net.node(1).api().get_json("/state/validators")?.1;
    ensure!(
        power_of(&before, &key40) == Some(10_000),
        "power changed before the epoch ended: {before}"
    );
    net.wait_all(&ALL, "/state/validators", Duration::from_secs(30), |v| {
        power_of(v, &key40) == Some(15_000)
    })?;

    // 4. With validator 2 killed the others keep finalizing; restarted, it catches up.
    net.node_mut(2).kill9();
    let h = net.node(0).height();
    net.wait_height(&[0, 1, 3], h + 5, Duration::from_secs(30))?;
    net.node_mut(2).restart()?;
    let target = net.node(0).height() + 2;
    net.wait_height(&ALL, target, Duration::from_secs(40))?;
    net.agreed_root(&ALL, target)?;

    // 5. Double-sign evidence against validator 3 (two precommits for one height and round,
    // built with the ledger testkit: a real Malachite double vote needs its `byzantine`
    // feature) is submitted through POST /tx; every validator slashes and jails it.
    let offender = testkit::key(43);
    let reporter: SigningKey = testkit::key(101);
    let reporter_addr = Address(reporter.verifying_key().to_bytes());
    let status = net.node(0).status()?;
    let chain_id = status["chain_id"].as_str().context("chain id")?.to_string();
    let nonce = net
        .node(0)
        .api()
        .get_json(&format!("/state/account/{reporter_addr}"))?
        .1["nonce"]
        .as_u64()
        .context("nonce")?;
    let evidence = DoubleSignEvidence {
        validator_key: Address(offender.verifying_key().to_bytes()),
        vote_a: testkit::vote(&offender, VoteKind::Precommit, 5, 0, [1; 32]),
        vote_b: testkit::vote(&offender, VoteKind::Precommit, 5, 0, [2; 32]),
    };
    let tx = Tx {
        signer: reporter_addr,
        nonce,
        fee: 1,
        body: TxBody::SubmitEvidence(Evidence::DoubleSign(evidence)),
    }
    .sign(&chain_id, &reporter);
    let r = net.node(0).api().post("/tx", &tx.encode())?;
    ensure!(r.status == 200, "evidence rejected: {}", r.text());
    // Garbage is refused with a reason.
    let r = net.node(0).api().post("/tx", b"not a transaction")?;
    ensure!(r.status == 400, "garbage admitted");
    let v = r.json()?;
    ensure!(v["reason"] == "malformed", "unexpected rejection {v}");

    let op3 = Address(testkit::key(13).verifying_key().to_bytes()).to_string();
    let key43 = Address(offender.verifying_key().to_bytes()).to_string();
    let views = net.wait_all(&ALL, "/state/validators", Duration::from_secs(30), |v| {
        v["slashes"].as_array().is_some_and(|s| {
            s.iter().any(|r| {
                r["reason"] == "double_sign"
                    && r["offender"]["validator"] == op3.as_str()
                    && r["jailed"] == true
            })
        })
    })?;
    for v in &views {
        ensure!(
            power_of(v, &key43).is_none(),
            "jailed validator still in the set: {v}"
        );
        let rec = v["validators"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["operator"] == op3.as_str()))
            .context("validator 3 listed")?;
        ensure!(
            rec["status"]["jailed_until_epoch"].is_u64(),
            "not jailed: {rec}"
        );
        ensure!(
            rec["stake"].as_u64() == Some(9_500),
            "5% not slashed: {rec}"
        );
    }
    // The three remaining validators keep finalizing and agree.
    let h = net.node(0).height();
    net.wait_height(&ALL, h + 3, Duration::from_secs(30))?;
    net.agreed_root(&ALL, h + 3)?;
    Ok(())
}
