//! The audit loop end to end, with four `groundtruth node` validators (consensus on, the broker
//! embedded in validator 0, every validator subscribed to it) and a simulated fleet publishing
//! in real time (`--speedup 1 --interval-s 2 --start-unix-s <genesis time>`) exactly one epoch
//! of readings: validators close the timed epoch by vote after their grace, attest the batches
//! built from their stores, prove their assigned batch, and the ledger verifies every proof.
//!
//! * honest fleet: epoch 0 is committed on every validator with one digest, and every device's
//!   verified total equals the simulator's total of its accepted readings, exactly;
//! * inflating meters: inflated readings never reach a verified total;
//! * a proof that fails verification slashes its submitter (`invalid_proof`) on every validator,
//!   and the batch is proven again by reassignment;
//! * an attestation of a different readings root is flagged and does not fix the root;
//! * a validator killed during the epoch does not stop the epoch from committing;
//! * a validator whose broker delivers nothing, and which was down while the readings were
//!   gossiped, fills them from peers by request and attests the agreed root.
//!
//! The tests run one at a time (a lock): each runs four validators and a fleet on the wall
//! clock, and the epoch closes at a fixed time whether or not the machine kept up.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_integration::{
    address_of, operator_key, Broker, FleetSpec, Genesis, Manifest, Proc, TestNet,
};
use groundtruth_ledger::{BatchCommitment, TxBody};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ALL: [usize; 4] = [0, 1, 2, 3];
/// Epoch window, seconds.
const EPOCH_S: u64 = 20;
/// Reading interval, seconds.
const INTERVAL_S: u64 = 2;
/// Validators vote to close an epoch this long after its window ended.
const GRACE: Duration = Duration::from_secs(3);
/// Seconds from now to the genesis time, enough to start four validators.
const LEAD_S: u64 = 6;
/// `audit_deadline_epochs`: an unproven batch is reassigned once epoch 1 has ended too.
const DEADLINE_EPOCHS: u64 = 1;
/// `min_fee` of the devnet genesis.
const FEE: u64 = 1;
/// `slash_invalid_proof_bp` of the devnet genesis.
const INVALID_PROOF_BP: u64 = 1000;

/// One test at a time: timing is the wall clock's.
static SERIAL: Mutex<()> = Mutex::new(());

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A network with timed epochs and a fleet publishing epoch 0 in real time.
struct Run {
    net: TestNet,
    sim: Proc,
    manifest: PathBuf,
    /// Start of epoch 0's window, Unix seconds.
    genesis_time: u64,
}

impl Run {
    /// Four validators; `audit_off` runs without its audit loop; the fleet: `gpu` GPU agents
    /// and 4 solar meters with `faults`.
    fn start(seed: u64, faults: &str, audit_off: Option<usize>) -> Result<Self> {
        Self::start_with(seed, faults, audit_off, |_, _| {})
    }

    /// [`Run::start`] with a further change to each validator's configuration.
    fn start_with(
        seed: u64,
        faults: &str,
        audit_off: Option<usize>,
        extra: impl Fn(usize, &mut groundtruth_node::config::NodeConfig) + 'static,
    ) -> Result<Self> {
        let genesis_time = (unix_now() + LEAD_S).div_ceil(INTERVAL_S) * INTERVAL_S;
        let spec = FleetSpec {
            seed,
            energy: 4,
            gpu: 24,
            storage: 0,
            unknown: 0,
            faults: faults.into(),
            intervals: EPOCH_S / INTERVAL_S,
        };
        let genesis = spec.add_devices_to(
            Genesis::devnet()?
                .timed(EPOCH_S, genesis_time)
                .param("audit_deadline_epochs", DEADLINE_EPOCHS as i64),
        )?;
        let net = TestNet::builder()
            .validators(4)
            .consensus(true)
            .broker(Broker::EmbeddedIn(0))
            .genesis(genesis)
            .fleet(spec)
            .configure(move |i, cfg| {
                cfg.audit.enabled = Some(i) != audit_off;
                cfg.audit.grace = GRACE;
                cfg.audit.poll = Duration::from_millis(300);
                cfg.audit.resend_after = Duration::from_secs(10);
            })
            .configure(extra)
            .build()?;
        let start = genesis_time.to_string();
        let interval = INTERVAL_S.to_string();
        let (sim, manifest) = net.spawn_fleet(&[
            "--speedup",
            "1",
            "--interval-s",
            &interval,
            "--start-unix-s",
            &start,
        ])?;
        Ok(Self {
            net,
            sim,
            manifest,
            genesis_time,
        })
    }

    /// Waits for the fleet to finish (its last interval ends with epoch 0's window) and reads
    /// its manifest.
    fn manifest(&mut self) -> Result<Manifest> {
        let left = (self.genesis_time + EPOCH_S).saturating_sub(unix_now());
        if self.sim.wait_exit(Duration::from_secs(left + 30)).is_none() {
            bail!("the fleet did not finish: {}", self.sim.log_tail(20));
        }
        Manifest::read(&self.manifest)
            .with_context(|| format!("no manifest; sim log:\n{}", self.sim.log_tail(20)))
    }

    /// Sleeps until `genesis_time + s`.
    fn sleep_until(&self, s: u64) {
        let at = self.genesis_time + s;
        let now = unix_now();
        if at > now {
            std::thread::sleep(Duration::from_secs(at - now));
        }
    }

    /// What every validator's log says, for failure messages.
    fn logs(&self, lines: usize) -> String {
        self.net
            .nodes()
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let text = std::fs::read_to_string(n.log_path()).unwrap_or_default();
                let tail: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("audit") || l.contains("ERROR") || l.contains("WARN"))
                    .collect();
                format!(
                    "--- validator {i} ---\n{}",
                    tail[tail.len().saturating_sub(lines)..].join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn op(i: usize) -> String {
    address_of(&operator_key(i)).to_string()
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `verified[]` of an epoch view: device → (kind, total).
fn verified(view: &Value) -> BTreeMap<String, (String, u64)> {
    arr(&view["verified"])
        .iter()
        .map(|v| {
            (
                v["device"].as_str().unwrap_or_default().to_string(),
                (
                    v["kind"].as_str().unwrap_or_default().to_string(),
                    v["total"].as_u64().unwrap_or(u64::MAX),
                ),
            )
        })
        .collect()
}

/// The manifest's totals in the shape of [`verified`].
fn expected(m: &Manifest) -> BTreeMap<String, (String, u64)> {
    m.totals
        .iter()
        .map(|(d, t)| (d.clone(), (t.kind.audit_kind().to_string(), t.total)))
        .collect()
}

/// The agreed batch of `auditor` in an epoch view.
fn batch<'a>(view: &'a Value, auditor: &str) -> Option<&'a Value> {
    arr(&view["readings"]["batches"])
        .iter()
        .find(|b| b["auditor"] == auditor)
}

/// Checks an epoch view's verified totals against the manifest: every device the simulator
/// had readings for, each with exactly the total of its accepted readings.
fn check_totals(i: usize, view: &Value, m: &Manifest) -> Result<()> {
    let got = verified(view);
    let want = expected(m);
    if got != want {
        let diff: Vec<String> = want
            .keys()
            .chain(got.keys())
            .filter(|d| got.get(*d) != want.get(*d))
            .map(|d| {
                format!(
                    "{d}: verified {:?}, simulator {:?}",
                    got.get(d),
                    want.get(d)
                )
            })
            .collect();
        bail!(
            "validator {i}: verified totals differ from the simulator's:\n{}",
            diff.join("\n")
        );
    }
    Ok(())
}

/// Checks that each audited batch's proof served by the node is the one the ledger verified
/// (blake3 digest) and that its signed frames are as many as the batch's readings.
fn check_evidence(run: &Run, i: usize, view: &Value) -> Result<()> {
    let api = run.net.node(i).api();
    for b in arr(&view["readings"]["batches"]) {
        let auditor = b["auditor"].as_str().context("auditor")?;
        let Some(digest) = b["audit"]["proof_digest"].as_str() else {
            continue;
        };
        let proof = api.get_bytes(&format!("/v1/epochs/0/proofs/{auditor}"))?;
        ensure!(
            hex(blake3::hash(&proof).as_bytes()) == digest,
            "validator {i}: the proof served for batch {auditor} is not the verified one"
        );
        let frames = api.get_bytes(&format!("/v1/epochs/0/frames/{auditor}"))?;
        let mut rest = frames.as_slice();
        let mut n = 0u64;
        while !rest.is_empty() {
            let len = rest
                .get(..4)
                .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
                .context("truncated frame length")?;
            rest = rest.get(4 + len..).context("truncated frame")?;
            n += 1;
        }
        ensure!(
            Some(n) == b["readings"].as_u64(),
            "validator {i}: batch {auditor} has {} readings, {n} frames served",
            b["readings"]
        );
    }
    Ok(())
}

#[test]
fn honest_fleet_epoch_commits_everywhere_with_the_simulators_totals() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(41, "none", None)?;
    let m = run.manifest()?;
    ensure!(
        m.totals.len() == 28 && m.totals.values().any(|t| t.total > 0),
        "the fleet produced nothing to audit: {:?}",
        m.totals
    );
    let views = run
        .net
        .wait_epoch_committed(&ALL, 0, Duration::from_secs(60))
        .with_context(|| run.logs(15))?;
    for (i, v) in views.iter().enumerate() {
        check_totals(i, v, &m)?;
        let c = &v["commitment"];
        ensure!(
            c["audited_batches"] == c["batches"] && c["batches"].as_u64() > Some(0),
            "validator {i}: not every batch audited: {c}"
        );
        ensure!(
            c["verified_readings"].as_u64() == Some(m.accepted.len() as u64)
                && v["readings"]["readings"].as_u64() == Some(m.accepted.len() as u64),
            "validator {i}: {} readings published and accepted, commitment {c}",
            m.accepted.len()
        );
        ensure!(
            arr(&v["flagged"]).is_empty() && arr(&v["slashes"]).is_empty(),
            "validator {i}: flags or slashes in an honest epoch: {v}"
        );
        check_evidence(&run, i, v)?;
    }
    // Every committee member attested the same root, the fixed one.
    let root = &views[0]["readings"]["root"];
    let attested: Vec<&Value> = arr(&views[0]["attestations"])
        .iter()
        .map(|a| &a["readings_root"])
        .collect();
    ensure!(
        attested.len() == 4 && attested.iter().all(|r| *r == root),
        "attestations {attested:?}, fixed root {root}"
    );
    Ok(())
}

#[test]
fn inflated_readings_never_reach_a_verified_total() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(42, "inflate", None)?;
    let m = run.manifest()?;
    let inflated: Vec<&String> = m
        .totals
        .iter()
        .filter(|(_, t)| t.claimed > t.total)
        .map(|(d, _)| d)
        .collect();
    ensure!(
        !inflated.is_empty() && m.expected.get("implausible").copied().unwrap_or(0) > 0,
        "no device inflated a reading (seed 42): {:?}",
        m.expected
    );
    let views = run
        .net
        .wait_epoch_committed(&ALL, 0, Duration::from_secs(60))
        .with_context(|| run.logs(15))?;
    for (i, v) in views.iter().enumerate() {
        check_totals(i, v, &m)?;
        let got = verified(v);
        for d in &inflated {
            let claimed = m.totals[*d].claimed;
            let total = got.get(*d).map_or(0, |t| t.1);
            ensure!(
                total < claimed,
                "validator {i}: device {d} verified {total}, it claimed {claimed}"
            );
        }
        ensure!(
            v["commitment"]["audited_batches"] == v["commitment"]["batches"],
            "validator {i}: {}",
            v["commitment"]
        );
    }
    // The ingest refused exactly the inflated readings as implausible.
    let refused = run.net.node(0).outcomes();
    ensure!(
        refused.get("implausible") == m.expected.get("implausible"),
        "implausible at ingest {refused:?}, simulator {:?}",
        m.expected
    );
    Ok(())
}

#[test]
fn a_failing_proof_slashes_its_submitter_on_every_validator() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const CHEAT: usize = 3;
    let cheat = op(CHEAT);
    let mut run = Run::start(43, "none", Some(CHEAT))?;
    let m = run.manifest()?;
    // Readings fixed, the cheat has a batch, and another batch's proof is verified.
    let view = run
        .net
        .wait_epoch(&[0], 0, Duration::from_secs(60), |v| {
            batch(v, &cheat).is_some()
                && arr(&v["readings"]["batches"])
                    .iter()
                    .any(|b| b["audit"].is_object())
        })
        .with_context(|| run.logs(15))?
        .remove(0);
    let honest = arr(&view["readings"]["batches"])
        .iter()
        .find(|b| b["audit"].is_object())
        .and_then(|b| b["auditor"].as_str())
        .context("an audited batch")?
        .to_string();
    // From the validator whose view showed the audit.
    let api = run.net.node(0).api();
    let mut proof = api.get_bytes(&format!("/v1/epochs/0/proofs/{honest}"))?;
    // A valid-looking envelope that is not a proof of anything: bytes flipped in its middle.
    let mid = proof.len() / 2;
    for b in proof.iter_mut().skip(mid).take(32) {
        *b ^= 0x5a;
    }
    let key = operator_key(CHEAT);
    let stake_before = validator_stake(&run.net, 0, &cheat)?;
    let hash = api.sign_and_submit(
        &key,
        FEE,
        TxBody::SubmitAuditProof {
            epoch: 0,
            batch: address_of(&key),
            proof,
        },
    )?;
    let outcome = api.wait_tx(&hash, Duration::from_secs(20))?;
    ensure!(
        outcome["ok"] == true,
        "the failing proof was refused instead of applied as evidence: {outcome}"
    );

    // The slash, on every validator: the submitter, invalid_proof, slash_invalid_proof_bp.
    let slashed = stake_before * INVALID_PROOF_BP / 10_000;
    let views = run
        .net
        .wait_all(&ALL, "/state/validators", Duration::from_secs(20), |v| {
            arr(&v["slashes"])
                .iter()
                .any(|s| s["reason"] == "invalid_proof")
        })?;
    for (i, v) in views.iter().enumerate() {
        let s: Vec<&Value> = arr(&v["slashes"])
            .iter()
            .filter(|s| s["reason"] == "invalid_proof")
            .collect();
        ensure!(
            s.len() == 1 && s[0]["offender"]["validator"] == cheat.as_str(),
            "validator {i}: invalid-proof slashes {s:?}"
        );
        ensure!(
            s[0]["amount"].as_u64() == Some(slashed) && slashed > 0,
            "validator {i}: slashed {} of {stake_before}, expected {slashed}",
            s[0]["amount"]
        );
        ensure!(
            validator_stake(&run.net, i, &cheat)? == stake_before - slashed,
            "validator {i}: the submitter's stake did not drop by {slashed}"
        );
    }
    // The batch stayed open, and is proven once the deadline reassigns it (or the epoch is
    // committed at the end of the reassignment window with what was verified).
    let views = run
        .net
        .wait_epoch_committed(&ALL, 0, Duration::from_secs(75))
        .with_context(|| run.logs(15))?;
    for (i, v) in views.iter().enumerate() {
        let b = batch(v, &cheat).context("the cheat's batch")?;
        match b["audit"]["prover"].as_str() {
            Some(prover) => {
                ensure!(
                    prover != cheat,
                    "validator {i}: the cheat's batch is credited to the cheat: {b}"
                );
                check_totals(i, v, &m)?;
                if i == 0 {
                    eprintln!("the cheat's batch was proven by {prover} after reassignment");
                }
            }
            None => {
                if i == 0 {
                    eprintln!("epoch 0 committed at the deadline without the cheat's batch");
                }
                let c = &v["commitment"];
                ensure!(
                    c["audited_batches"].as_u64() < c["batches"].as_u64(),
                    "validator {i}: {c}"
                );
            }
        }
    }
    Ok(())
}

fn validator_stake(net: &TestNet, node: usize, operator: &str) -> Result<u64> {
    let (_, v) = net.node(node).api().get_json("/state/validators")?;
    arr(&v["validators"])
        .iter()
        .find(|x| x["operator"] == operator)
        .and_then(|x| x["stake"].as_u64())
        .with_context(|| format!("no validator {operator} in {v}"))
}

#[test]
fn a_differing_attestation_is_flagged_and_does_not_fix_the_root() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const LIAR: usize = 3;
    let liar = op(LIAR);
    let mut run = Run::start(44, "none", Some(LIAR))?;
    // As soon as epoch 0 is sealed (before or while the others attest), the liar attests
    // batches of its own making, through validator 2: wait for that validator's own view too
    // (a lagging one still in epoch 0 refuses the attestation as out of its window).
    run.net
        .wait_epoch(&[0, 2], 0, Duration::from_secs(45), |v| v["sealed"] == true)
        .with_context(|| run.logs(15))?;
    let key = operator_key(LIAR);
    let bogus = vec![BatchCommitment {
        auditor: address_of(&key),
        commitment: [0xab; 32],
        readings: 7,
    }];
    let bogus_root = hex(&groundtruth_ledger::readings_root(0, &bogus));
    let api = run.net.node(2).api();
    let hash = api.sign_and_submit(
        &key,
        FEE,
        TxBody::AttestReadings {
            epoch: 0,
            batches: bogus,
        },
    )?;
    let outcome = api.wait_tx(&hash, Duration::from_secs(20))?;
    ensure!(
        outcome["ok"] == true,
        "the attestation was refused: {outcome}"
    );
    let m = run.manifest()?;

    let views = run
        .net
        .wait_epoch(&ALL, 0, Duration::from_secs(40), |v| {
            v["readings"].is_object() && arr(&v["flagged"]).iter().any(|f| f == liar.as_str())
        })
        .with_context(|| run.logs(15))?;
    let root = views[0]["readings"]["root"].clone();
    for (i, v) in views.iter().enumerate() {
        ensure!(
            v["readings"]["root"] == root,
            "validator {i}: fixed root differs"
        );
        ensure!(
            root != bogus_root.as_str(),
            "validator {i}: the liar's root was fixed"
        );
        // The fixed root is the one the three honest validators attested.
        for h in 0..3 {
            let a = arr(&v["attestations"])
                .iter()
                .find(|a| a["validator"] == op(h).as_str())
                .with_context(|| format!("validator {i}: no attestation from {h}: {v}"))?;
            ensure!(
                a["readings_root"] == root,
                "validator {i}: validator {h} attested {}, fixed {root}",
                a["readings_root"]
            );
        }
        ensure!(
            arr(&v["flagged"]).len() == 1,
            "validator {i}: flagged {}",
            v["flagged"]
        );
        ensure!(
            v["readings"]["readings"].as_u64() == Some(m.accepted.len() as u64),
            "validator {i}: fixed {} readings, {} accepted",
            v["readings"]["readings"],
            m.accepted.len()
        );
    }
    // The honest batches are audited against the fixed root with the simulator's totals.
    let views = run
        .net
        .wait_epoch(&ALL, 0, Duration::from_secs(30), |v| {
            arr(&v["readings"]["batches"])
                .iter()
                .all(|b| b["auditor"] == liar.as_str() || b["audit"].is_object())
        })
        .with_context(|| run.logs(15))?;
    for (i, v) in views.iter().enumerate() {
        let got = verified(v);
        let want = expected(&m);
        for (d, t) in &got {
            ensure!(
                want.get(d) == Some(t),
                "validator {i}: device {d} verified {t:?}, simulator {:?}",
                want.get(d)
            );
        }
    }
    Ok(())
}

#[test]
fn a_validator_killed_during_the_epoch_does_not_stop_it_committing() -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const KILLED: usize = 3;
    let mut run = Run::start(45, "none", None)?;
    // Mid-window, once it has stored readings.
    run.sleep_until(EPOCH_S / 2);
    run.net
        .node(KILLED)
        .wait_stored(1, Duration::from_secs(10))?;
    run.net.node_mut(KILLED).kill9();
    let m = run.manifest()?;
    let live = [0, 1, 2];
    let started = Instant::now();
    let views = run
        .net
        .wait_epoch_committed(&live, 0, Duration::from_secs(75))
        .with_context(|| run.logs(15))?;
    eprintln!(
        "epoch 0 committed without validator {KILLED} {:?} after the fleet finished",
        started.elapsed()
    );
    for (i, v) in views.iter().enumerate() {
        check_totals(i, v, &m)?;
        let c = &v["commitment"];
        ensure!(
            c["audited_batches"] == c["batches"],
            "validator {i}: a batch is missing: {c}"
        );
    }
    if let Some(b) = batch(&views[0], &op(KILLED)) {
        eprintln!(
            "the killed validator's batch was proven by {}",
            b["audit"]["prover"]
        );
    }
    // Back up, it catches up on the same commitment.
    let digest = views[0]["commitment"]["digest"].clone();
    run.net.node_mut(KILLED).restart()?;
    let back = run
        .net
        .wait_epoch_committed(&[KILLED], 0, Duration::from_secs(30))?;
    ensure!(
        back[0]["commitment"]["digest"] == digest,
        "the restarted validator has another commitment: {}",
        back[0]["commitment"]
    );
    Ok(())
}

#[test]
fn a_validator_whose_broker_delivers_nothing_fills_from_peers_and_attests_the_agreed_root(
) -> Result<()> {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Validator 3 reads only its own embedded broker, where no device publishes. Validator 2
    // runs no audit loop, so the epoch can neither close nor fix a readings root without
    // validator 3's vote and attestation (3 of 4 equal stakes are needed).
    const DEAF: usize = 3;
    const IDLE: usize = 2;
    let mut run = Run::start_with(46, "none", Some(IDLE), |i, cfg| {
        if i == DEAF {
            cfg.mqtt.embedded = true;
            cfg.mqtt.url = format!("mqtt://{}", cfg.mqtt.listen);
        }
    })?;
    // Down while the fleet publishes, so it misses the replication gossip as well.
    run.net.node_mut(DEAF).kill9();
    let m = run.manifest()?;
    ensure!(!m.accepted.is_empty(), "the fleet produced nothing");
    run.net.node_mut(DEAF).restart()?;
    let voters = [0, 1, DEAF];
    let views = run
        .net
        .wait_epoch_committed(&voters, 0, Duration::from_secs(100))
        .with_context(|| run.logs(15))?;
    for (i, v) in voters.iter().zip(&views) {
        check_totals(*i, v, &m)?;
        ensure!(
            arr(&v["flagged"]).is_empty(),
            "validator {i}: an attestation was flagged: {}",
            v["flagged"]
        );
    }
    let root = &views[0]["readings"]["root"];
    let deaf = op(DEAF);
    let its = arr(&views[0]["attestations"])
        .iter()
        .find(|a| a["validator"] == deaf.as_str())
        .with_context(|| format!("no attestation by validator {DEAF}: {}", views[0]))?;
    ensure!(
        &its["readings_root"] == root,
        "validator {DEAF} attested {} but the fixed root is {root}",
        its["readings_root"]
    );
    let metrics = run.net.node(DEAF).api().metrics()?;
    let filled = metrics.get("groundtruth_audit_filled_readings_total") as usize;
    ensure!(
        filled >= m.accepted.len(),
        "validator {DEAF} filled {filled} readings from peers, the fleet had {} accepted",
        m.accepted.len()
    );
    Ok(())
}
