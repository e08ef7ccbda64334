//! Storage and GPU providers against four validators with timed epochs: real `groundtruth
//! provider` processes register, prove retrievability each epoch, and answer the validators'
//! spot retrievals and GPU challenges over the provider network.
//!
//! Storage detection bound. Each epoch a provider's chunks are challenged twice over: its own
//! retrievability proof samples `K = storage_challenge_k` chunks (uniform, with replacement),
//! and every committee member fetches the same `S = retrieval_spot_chunks` distinct chunks
//! (uniform, without replacement). A provider that lost a fraction `f = 0.1` of its chunks
//! escapes an epoch only if none of them is lost: `P(miss one epoch) ≤ (1 − f)^(K+S)`, and
//! `P(miss E epochs) ≤ (1 − f)^((K+S)·E)`. With `K = 4`, `S = 64` (`K + S = 68` challenged
//! chunks per epoch), `E = 2` gives `0.9^136 ≈ 6·10⁻⁷ < 10⁻⁶` (`E = 1`: `0.9^68 ≈ 8·10⁻⁴`, not
//! enough). So the test asserts that the provider is suspended (at its first fault) once the
//! `E` epochs after the loss and their report window have passed, and slashed (at its second
//! fault) once `2·E` epochs have, which fails with probability below `10⁻⁶` by the same
//! bound. `K` stays small because proving runs in the test's debug build; the spot checks carry
//! most of the detection.

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::Signer;
use ed25519_dalek::SigningKey;
use groundtruth_integration::{
    provider_listen_addrs, spawn_provider, Broker, Genesis, ProviderAgent, ProviderKindSpec,
    ProviderSpec, TestNet,
};
use groundtruth_ledger::TxBody;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch window, seconds.
const EPOCH_S: u64 = 4;
/// Chunks each retrievability proof samples.
const K: u32 = 4;
/// Chunks each committee member fetches per epoch.
const S: u32 = 64;
/// Epochs within which a 10% loss is caught with probability > 1 − 10⁻⁶ (module docs).
const E: u64 = 2;
/// `attestation_window_epochs` (the report window).
const WINDOW: u64 = 2;
/// `storage_deadline_epochs`.
const DEADLINE: u64 = 2;
/// Chunks each storage provider holds (256 KiB).
const CHUNKS: u64 = 256;
/// Epoch at which the deleting provider loses its data.
const LOSS_EPOCH: u64 = 2;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Four validators with provider audits on (validator 3 optionally reporting every audit as
/// failed), timed epochs, the providers' accounts funded.
fn network(specs: &[ProviderSpec], liar: bool) -> Result<(TestNet, Vec<SocketAddr>)> {
    let genesis_time = unix_now() + 4;
    let mut g = Genesis::devnet()?
        .timed(EPOCH_S, genesis_time)
        .param("storage_challenge_k", i64::from(K))
        .param("storage_deadline_epochs", DEADLINE as i64)
        .param("storage_faults_to_suspend", 1)
        .param("storage_faults_to_slash", 2)
        .param("gpu_challenge_n", 64)
        .param("retrieval_spot_chunks", i64::from(S));
    for s in specs {
        g = g.account(&s.owner(), 100_000);
    }
    // A provider the test drives by hand (no agent).
    g = g.account(&groundtruth_integration::seed_address(156), 100_000);
    let addrs = provider_listen_addrs(4);
    let listen = addrs.clone();
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .broker(Broker::EmbeddedIn(0))
        .genesis(g)
        .configure(move |i, cfg| {
            cfg.audit.enabled = true;
            cfg.audit.grace = Duration::from_millis(700);
            cfg.audit.poll = Duration::from_millis(300);
            cfg.audit.resend_after = Duration::from_secs(5);
            let p = &mut cfg.audit.providers;
            p.enabled = true;
            p.listen = format!("/ip4/127.0.0.1/tcp/{}", listen[i].port());
            p.retrieval_deadline = Duration::from_secs(6);
            p.poll = Duration::from_millis(300);
            p.always_fail = liar && i == 3;
        })
        .build()?;
    Ok((net, addrs))
}

fn spawn_all(
    net: &TestNet,
    addrs: &[SocketAddr],
    specs: &[ProviderSpec],
) -> Result<Vec<ProviderAgent>> {
    specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut s = s.clone();
            if s.name.ends_with("honest") {
                s.heartbeat = Some(net.broker_addr());
            }
            spawn_provider(
                net.dir(),
                net.genesis_path(),
                &net.node(i % 4).api().url(),
                addrs,
                &s,
            )
        })
        .collect()
}

fn epoch(net: &TestNet) -> u64 {
    net.node(0)
        .api()
        .status()
        .ok()
        .and_then(|s| s["epoch"].as_u64())
        .unwrap_or(0)
}

/// Waits until the ledger's epoch reaches `e`.
fn wait_epoch(net: &TestNet, e: u64, agents: &mut [ProviderAgent]) -> Result<()> {
    let until = Instant::now() + Duration::from_secs(EPOCH_S * (e + 4) + 30);
    while epoch(net) < e {
        for a in agents.iter_mut() {
            if !a.proc.is_running() {
                bail!("{} exited:\n{}", a.spec.name, a.proc.log_tail(40));
            }
        }
        if Instant::now() > until {
            bail!("epoch {e} not reached (at {})", epoch(net));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Ok(())
}

fn device_status(net: &TestNet, device: &str) -> Result<String> {
    let (code, v) = net
        .node(1)
        .api()
        .get_json(&format!("/state/device/{device}"))?;
    ensure!(code == 200, "device {device}: {code} {v}");
    Ok(v["status"].as_str().unwrap_or_default().to_string())
}

fn provider_slashes(net: &TestNet, owner: &str) -> Result<Vec<Value>> {
    let (_, v) = net.node(2).api().get_json("/state/validators")?;
    Ok(v["slashes"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s.to_string().contains(owner))
        .collect())
}

/// An account's liquid balance on validator 1.
fn balance(net: &TestNet, owner: &str) -> Result<u64> {
    let (_, v) = net
        .node(1)
        .api()
        .get_json(&format!("/state/account/{owner}"))?;
    v["balance"]
        .as_u64()
        .with_context(|| format!("no balance for {owner}: {v}"))
}

/// `groundtruth_provider_ledger_outcomes_total` for a device (16 hex) on validator `i`:
/// `(kind, outcome) → count`.
fn outcomes(net: &TestNet, i: usize, device: &str) -> Result<Vec<(String, String, u64)>> {
    let m = net.node(i).api().metrics()?;
    let short = &device[..16];
    let mut out = Vec::new();
    for (k, v) in &m.0 {
        if let Some(rest) = k.strip_prefix("groundtruth_provider_ledger_outcomes_total{") {
            if !rest.contains(short) {
                continue;
            }
            let label = |name: &str| {
                rest.split(',')
                    .find_map(|p| p.trim_end_matches('}').strip_prefix(&format!("{name}=\"")))
                    .map(|s| s.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            out.push((label("kind"), label("outcome"), *v as u64));
        }
    }
    Ok(out)
}

fn count(o: &[(String, String, u64)], kind: &str, outcome: &str) -> u64 {
    o.iter()
        .filter(|(k, x, _)| k == kind && x == outcome)
        .map(|(_, _, n)| n)
        .sum()
}

fn storage(name: &str, owner: u8, device: u8, fault: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        owner_seed: owner,
        device_seed: device,
        kind: ProviderKindSpec::Storage { chunks: CHUNKS },
        fault: fault.into(),
        heartbeat: None,
    }
}

fn gpu(name: &str, owner: u8, device: u8, claimed: u64, fault: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        owner_seed: owner,
        device_seed: device,
        kind: ProviderKindSpec::Gpu {
            claimed_mac_per_s: claimed,
        },
        fault: fault.into(),
        heartbeat: None,
    }
}

/// Storage: an honest provider passes every epoch (proofs and spot retrievals) although
/// validator 3 reports every audit as failed; one that loses 10% of its chunks at epoch
/// `LOSS_EPOCH` is caught within `E` epochs, suspended, then slashed; ones that store but never
/// serve, or serve too slowly, are caught by spot retrieval; a proof for a seed other than the beacon's is refused.
#[test]
fn storage_providers_are_proven_spot_checked_and_the_cheaters_suspended_then_slashed() -> Result<()>
{
    // The bound of the module docs, as numbers.
    let miss = |epochs: u64| 0.9f64.powf(f64::from(K + S) * epochs as f64);
    assert!(miss(E) < 1e-6 && miss(E - 1) >= 1e-6);
    let specs = [
        storage("honest", 150, 160, ""),
        storage(
            "deleter",
            151,
            161,
            &format!(
                "kind = \"delete_chunks\"\nfraction = 0.1\nfrom_epoch = {LOSS_EPOCH}\nseed = 5"
            ),
        ),
        storage("mute", 152, 162, "kind = \"never_serve\""),
        // 64 chunks, 4 at a time, 1 s each: 16 s, past the 6 s retrieval deadline.
        storage(
            "sluggish",
            157,
            167,
            "kind = \"serve_slowly\"\ndelay = \"1s\"",
        ),
    ];
    let (net, addrs) = network(&specs, true)?;
    let mut agents = spawn_all(&net, &addrs, &specs)?;
    let (honest, deleter, mute) = (specs[0].device(), specs[1].device(), specs[2].device());

    // The deleter is suspended by the time every fault among the first E epochs after the loss
    // is recorded (proof deadlines D later, retrievals within the report window).
    let suspended_by = LOSS_EPOCH + E + DEADLINE.max(WINDOW) + 1;
    wait_epoch(&net, suspended_by, &mut agents)?;
    let honest_balance = balance(&net, &specs[0].owner())?;
    ensure!(
        device_status(&net, &deleter)? == "suspended",
        "the deleter is {} at epoch {suspended_by}; outcomes {:?}\n{}",
        device_status(&net, &deleter)?,
        outcomes(&net, 0, &deleter)?,
        agents[1].proc.log_tail(30)
    );
    ensure!(
        device_status(&net, &mute)? == "suspended",
        "the provider that never serves is not suspended; outcomes {:?}",
        outcomes(&net, 0, &mute)?
    );
    let sluggish = specs[3].device();
    ensure!(
        device_status(&net, &sluggish)? == "suspended",
        "the provider that serves too slowly is not suspended; outcomes {:?}",
        outcomes(&net, 0, &sluggish)?
    );

    // A proof for another seed than the beacon's: refused by the ledger (fee only). A provider
    // of its own (owner seed 156, no agent) commits the honest provider's data, then sends a
    // proof that opens the right chunks of the right root, for a seed of its choosing.
    let store = groundtruth_provider::ChunkStore::open(&agents[0].data_path(), None, None)?;
    let c = store.commitment().clone();
    let owner = SigningKey::from_bytes(&[156; 32]);
    let dkey = SigningKey::from_bytes(&[166; 32]);
    let device = groundtruth_ledger::DeviceId(dkey.verifying_key().to_bytes());
    let api = net.node(0).api();
    let chain_id = api.chain_id()?;
    let possession = dkey
        .sign(&groundtruth_ledger::possession_sign_bytes(
            &chain_id,
            &groundtruth_integration::address_of(&owner),
            &device,
        ))
        .to_bytes();
    for body in [
        TxBody::RegisterProvider {
            stake: 1000,
            data_root: c.root,
        },
        TxBody::RegisterDevice {
            device,
            kind: groundtruth_ledger::DeviceKind::Storage,
            capacity: c.data_len,
            region: String::new(),
            possession,
        },
        TxBody::CommitStorage {
            device,
            root: c.root,
            depth: c.depth,
            num_chunks: c.num_chunks,
        },
    ] {
        let h = api.sign_and_submit(&owner, 1, body)?;
        let o = api.wait_tx(&h, Duration::from_secs(20))?;
        ensure!(o["ok"] == true, "setting up the foreign-seed provider: {o}");
    }
    let committed_in = epoch(&net);
    wait_epoch(&net, committed_in + 1, &mut agents)?;
    let challenge = groundtruth_proofs::Challenge {
        root: c.root,
        depth: c.depth,
        num_chunks: c.num_chunks,
        seed: [0x5e; 32],
        k: K,
    };
    let proof = groundtruth_proofs::prove_retrievability(
        &challenge,
        &store.respond(&challenge)?,
        groundtruth_proofs::SecurityLevel::default(),
    )?
    .to_bytes()?;
    // The ledger's check runs at admission (the node refuses it) and again in the block.
    let refused = match api.sign_and_submit(
        &owner,
        1,
        TxBody::SubmitStorageProof {
            epoch: committed_in,
            device,
            proof,
        },
    ) {
        Ok(h) => {
            let o = api.wait_tx(&h, Duration::from_secs(20))?;
            ensure!(
                o["ok"] == false,
                "a proof for a foreign seed was applied: {o}"
            );
            o["reason"].as_str().unwrap_or_default().to_string()
        }
        Err(e) => e.to_string(),
    };
    ensure!(
        refused.contains("storage_mismatch"),
        "a proof for a seed other than the beacon's: {refused}"
    );

    // The slash needs a second fault; 2·E epochs after the loss reach it (module docs).
    let slashed_by = LOSS_EPOCH + 2 * E + DEADLINE.max(WINDOW) + 1;
    wait_epoch(&net, slashed_by, &mut agents)?;
    let s = provider_slashes(&net, &specs[1].owner())?;
    ensure!(
        s.len() == 1,
        "the deleter's owner has {} slashes by epoch {slashed_by}: {s:?}",
        s.len()
    );

    // The honest provider: active, never slashed, every settled epoch passed, on every validator
    // (the liar's fail reports were outvoted).
    ensure!(device_status(&net, &honest)? == "active");
    ensure!(provider_slashes(&net, &specs[0].owner())?.is_empty());
    // It earns: its settled, passed epochs share the work pool (more than its proofs' fees).
    let later = balance(&net, &specs[0].owner())?;
    ensure!(
        later > honest_balance,
        "the honest provider's owner earned nothing: {honest_balance} then {later}"
    );
    for i in 0..4 {
        let o = outcomes(&net, i, &honest)?;
        let proofs = count(&o, "storage_proof", "passed");
        let spots = count(&o, "retrieval", "passed");
        ensure!(
            proofs >= 3 && spots >= 3,
            "validator {i}: honest outcomes {o:?}"
        );
        for bad in ["failed", "missed", "undecided"] {
            ensure!(
                count(&o, "storage_proof", bad) == 0 && count(&o, "retrieval", bad) == 0,
                "validator {i}: the honest provider has {bad} outcomes {o:?}"
            );
        }
    }
    // Its signed heartbeats (StorageHeartbeat readings over MQTT) were ingested.
    let accepted = net
        .node(0)
        .api()
        .metrics()?
        .get("groundtruth_ingest_accepted_total{kind=\"storage\"}");
    ensure!(accepted >= 3.0, "{accepted} storage heartbeats accepted");
    for (name, d) in [("mute", &mute), ("sluggish", &sluggish)] {
        let m = outcomes(&net, 0, d)?;
        ensure!(
            count(&m, "retrieval", "failed") >= 1 && count(&m, "storage_proof", "passed") >= 1,
            "the {name} provider proves possession but fails retrieval: {m:?}"
        );
    }
    drop(agents);
    Ok(())
}

/// GPU: an honest provider passes; one returning a wrong product is failed and slashed on its
/// first challenge; a slow one (overstating its throughput) is recorded below spec.
#[test]
fn gpu_providers_are_challenged_and_checked_with_freivalds() -> Result<()> {
    // n = 64: 262,144 multiply-adds. The deadline is 2 s plus twice the claimed time (honest:
    // 100,000/s claimed, 7.2 s; slow: claims 10¹² and takes over 600 ms, 2 s).
    let specs = [
        gpu("gpu-honest", 153, 163, 100_000, ""),
        gpu(
            "gpu-wrong",
            154,
            164,
            1_000_000,
            "kind = \"gpu_wrong_product\"",
        ),
        gpu(
            "gpu-slow",
            155,
            165,
            1_000_000_000_000,
            "kind = \"gpu_slow\"\ndelay = \"600ms\"",
        ),
    ];
    let (net, addrs) = network(&specs, false)?;
    let mut agents = spawn_all(&net, &addrs, &specs)?;
    let (honest, wrong, slow) = (specs[0].device(), specs[1].device(), specs[2].device());
    // Registered during epoch 0 or 1; challenged from the next sealed epoch; decided within the
    // report window; counted once settled.
    wait_epoch(&net, 7, &mut agents)?;
    let honest_balance = balance(&net, &specs[0].owner())?;
    // The wrong product's first round fails: its owner is slashed once and the device is
    // suspended (no longer challenged, so never slashed again for the same fault).
    let s = provider_slashes(&net, &specs[1].owner())?;
    ensure!(
        s.len() == 1 && s.iter().all(|s| s["reason"] == "failed_gpu_challenge"),
        "the wrong product's owner: {s:?}"
    );
    ensure!(
        device_status(&net, &wrong)? == "suspended",
        "the wrong product's device is {}",
        device_status(&net, &wrong)?
    );
    let w = outcomes(&net, 0, &wrong)?;
    ensure!(
        count(&w, "gpu_capacity", "failed") >= 1 && count(&w, "gpu_capacity", "passed") == 0,
        "wrong product outcomes {w:?}"
    );
    let h = outcomes(&net, 0, &honest)?;
    ensure!(
        count(&h, "gpu_capacity", "passed") >= 2
            && count(&h, "gpu_capacity", "failed") == 0
            && count(&h, "gpu_capacity", "below_spec") == 0,
        "honest outcomes {h:?}"
    );
    ensure!(provider_slashes(&net, &specs[0].owner())?.is_empty());
    let accepted = net
        .node(0)
        .api()
        .metrics()?
        .get("groundtruth_ingest_accepted_total{kind=\"gpu\"}");
    ensure!(accepted >= 3.0, "{accepted} GPU heartbeats accepted");
    let sl = outcomes(&net, 0, &slow)?;
    ensure!(
        count(&sl, "gpu_capacity", "below_spec") >= 1 && count(&sl, "gpu_capacity", "failed") == 0,
        "slow outcomes {sl:?}"
    );
    ensure!(provider_slashes(&net, &specs[2].owner())?.is_empty());
    ensure!(device_status(&net, &honest)? == "active");
    // The honest GPU's owner earns as its passed rounds settle.
    wait_epoch(&net, 9, &mut agents)?;
    let later = balance(&net, &specs[0].owner())?;
    ensure!(
        later > honest_balance,
        "the honest GPU's owner earned nothing: {honest_balance} then {later}"
    );
    drop(agents);
    Ok(())
}
