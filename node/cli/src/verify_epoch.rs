//! `groundtruth verify --frames F --proof P` and `groundtruth verify --epoch N --api URL`:
//! recheck an audit from the device signatures up, trusting no node.
//!
//! For each batch: every frame's ed25519 signature under its device id (the id is the public
//! key), the readings grouped into runs and the commitment recomputed exactly as validators
//! build it, the STARK verified, the commitment and reading count compared with the proof's
//! statement, and (with `--api`) each device's cap compared with its registered capacity, the
//! statement's totals with the ledger's verified totals, and the epoch commitment's roots and
//! digest recomputed from what was checked.
//!
//! The per-batch checks are `groundtruth_verifier_wasm::verify_batch`, the function the
//! explorer runs in the browser as WebAssembly: the CLI and the page apply one rule.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use groundtruth_api::ApiClient;
use groundtruth_ledger::{
    proofs_root, totals_root, Address, AuditKind, DeviceKind, EpochCommitment,
};
use groundtruth_proofs::MeteredStatement;

/// What `verify` checks in the audit modes.
#[derive(Debug, Clone, clap::Args)]
pub struct AuditCheckArgs {
    /// Signed frames of one batch, `(u32 BE length ‖ frame)*` (as `GET
    /// /v1/epochs/{n}/frames/{auditor}` serves them); with `--proof`.
    #[arg(long, requires = "proof")]
    pub frames: Option<PathBuf>,
    /// The batch's audit proof envelope; with `--frames`.
    #[arg(long, requires = "frames")]
    pub proof: Option<PathBuf>,
    /// Epoch to recheck from a node's API (every audited batch, then the commitment).
    #[arg(long, requires = "api")]
    pub epoch: Option<u64>,
    /// A node's API, e.g. `http://127.0.0.1:9464` (only a source of bytes: everything is
    /// rechecked here).
    #[arg(long)]
    pub api: Option<String>,
    /// An L1 JSON-RPC endpoint: with `--epoch` and `--contract`, also read the epoch's anchored
    /// commitment from the contract and compare it with the one rechecked from the API.
    #[arg(long, requires_all = ["epoch", "contract"])]
    pub l1: Option<String>,
    /// Address of the `GroundtruthOracle` contract on `--l1`.
    #[arg(long, requires = "l1")]
    pub contract: Option<String>,
}

/// One batch rechecked with the explorer's verifier (`groundtruth_verifier_wasm::verify_batch`,
/// the function the page runs compiled to WebAssembly), so the CLI and the browser apply one
/// rule: every signature, the recomputed commitment and reading count, the STARK. Returns the
/// proof's digest and statement once everything held.
fn check_batch(frames: &[u8], proof: &[u8]) -> anyhow::Result<([u8; 32], MeteredStatement)> {
    let verdict = groundtruth_verifier_wasm::verify_batch(proof, frames, None)
        .map_err(|e| anyhow::anyhow!("{} check failed: {e}", e.check()))?;
    Ok((verdict.proof_digest, verdict.statement))
}

fn print_statement(s: &MeteredStatement) {
    println!(
        "  epoch {} [{}, {}): {} readings, {} runs, commitment {}",
        s.epoch.number,
        s.epoch.start_s,
        s.epoch.end_s,
        s.num_readings,
        s.devices.len(),
        hex::encode(s.commitment)
    );
}

/// Sums a statement's runs per device.
fn device_totals(s: &MeteredStatement) -> BTreeMap<[u8; 32], u64> {
    let mut out = BTreeMap::new();
    for d in &s.devices {
        *out.entry(d.id).or_insert(0u64) += d.total;
    }
    out
}

/// Runs the audit modes; `None` when no audit flag was given.
pub fn run(args: &AuditCheckArgs) -> anyhow::Result<Option<ExitCode>> {
    if let (Some(frames), Some(proof)) = (&args.frames, &args.proof) {
        let frames =
            std::fs::read(frames).with_context(|| format!("reading {}", frames.display()))?;
        let proof = std::fs::read(proof).with_context(|| format!("reading {}", proof.display()))?;
        let (_, s) = check_batch(&frames, &proof)?;
        println!("VALID batch: every signature, the recomputed commitment and the proof hold");
        print_statement(&s);
        for (id, total) in device_totals(&s) {
            println!("    {}  total {total}", hex::encode(id));
        }
        return Ok(Some(ExitCode::SUCCESS));
    }
    let (Some(epoch), Some(api)) = (args.epoch, &args.api) else {
        return Ok(None);
    };
    let code = check_epoch(epoch, api)?;
    if let (Some(l1), Some(contract)) = (&args.l1, &args.contract) {
        check_l1(epoch, api, l1, contract)?;
    }
    Ok(Some(code))
}

/// Reads the epoch's anchored commitment from the contract on `l1` and compares it, root by
/// root and by its EIP-712 struct hash, with the commitment `check_epoch` just rechecked (the
/// API's roots, each recomputed or covered by the recomputed digest).
fn check_l1(epoch: u64, api: &str, l1: &str, contract: &str) -> anyhow::Result<()> {
    use groundtruth_oracle::{Address, Oracle, PrivateKeySigner, B256};
    let contract: Address = contract
        .parse()
        .with_context(|| format!("--contract {contract:?} is not an address"))?;
    let client = ApiClient::new(api)?;
    let view = client.get_json(&format!("/v1/epochs/{epoch}"))?;
    let cm = &view["commitment"];
    let roots = [
        hex32(&view["readings"]["root"], "readings root")?,
        hex32(&cm["totals_root"], "totals root")?,
        hex32(&cm["proofs_root"], "proofs root")?,
        hex32(&cm["state_root"], "state root")?,
    ];
    // A read-only client: this key never sends anything.
    let reader = PrivateKeySigner::from_bytes(&B256::repeat_byte(1))?;
    let oracle = Oracle::new(groundtruth_oracle::Config::new(l1, contract), reader)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (anchored, anchor) = runtime.block_on(async {
        let c = oracle.anchored_commitment(epoch).await?;
        let a = oracle.anchor_of(epoch).await?;
        Ok::<_, groundtruth_oracle::Error>((c, a))
    })?;
    let (Some(on_l1), Some(anchor)) = (anchored, anchor) else {
        bail!("epoch {epoch} is not anchored on L1 at {contract}");
    };
    let l1_roots = [
        on_l1.readings_root,
        on_l1.verified_totals_root,
        on_l1.proof_digests_root,
        on_l1.ledger_state_root,
    ];
    for (name, (ours, theirs)) in ["readings root", "totals root", "proofs root", "state root"]
        .iter()
        .zip(roots.iter().zip(l1_roots.iter()))
    {
        ensure!(
            B256::from(*ours) == *theirs,
            "the {name} anchored on L1 ({theirs}) is not the rechecked one ({})",
            hex::encode(ours)
        );
    }
    ensure!(
        on_l1.struct_hash() == anchor.commitment_hash,
        "the commitment read from L1's event does not hash to what the contract stores"
    );
    println!(
        "VALID on L1: epoch {epoch} anchored at block {} tx {} (set nonce {}), commitment hash {} = the rechecked roots",
        anchor.block, anchor.tx, on_l1.set_nonce, anchor.commitment_hash
    );
    Ok(())
}

fn get_bytes(client: &ApiClient, path: &str) -> anyhow::Result<Vec<u8>> {
    let r = client.request("GET", path, &[], &[])?;
    if r.status != 200 {
        bail!(
            "GET {path}: HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    Ok(r.body)
}

fn hex32(v: &serde_json::Value, what: &str) -> anyhow::Result<[u8; 32]> {
    let s = v.as_str().with_context(|| format!("{what} missing"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).with_context(|| format!("{what} is not 32 hex bytes"))?;
    Ok(out)
}

fn check_epoch(epoch: u64, api: &str) -> anyhow::Result<ExitCode> {
    let client = ApiClient::new(api)?;
    let chain_id = client.status()?.chain_id;
    let view = client.get_json(&format!("/v1/epochs/{epoch}"))?;
    let readings = &view["readings"];
    ensure!(
        !readings.is_null(),
        "epoch {epoch} has no agreed readings yet"
    );
    let commitment = &view["commitment"];
    ensure!(!commitment.is_null(), "epoch {epoch} is not committed yet");
    ensure!(
        !view["audits_pruned"].as_bool().unwrap_or(false),
        "epoch {epoch} is older than the ledger's history window (history_epochs): its per-device verified totals were pruned, so its totals root cannot be recomputed here (its commitment stays on the ledger and on L1)"
    );
    let mut verified_by_ledger: BTreeMap<[u8; 32], (AuditKind, u64)> = BTreeMap::new();
    for v in view["verified"].as_array().into_iter().flatten() {
        let kind = v["kind"]
            .as_str()
            .and_then(AuditKind::from_name)
            .context("verified kind")?;
        let total = v["total"].as_u64().context("verified total")?;
        verified_by_ledger.insert(hex32(&v["device"], "device")?, (kind, total));
    }
    let mut rechecked: BTreeMap<[u8; 32], u64> = BTreeMap::new();
    let mut proofs: Vec<(Address, [u8; 32])> = Vec::new();
    let (mut batches, mut audited, mut verified_readings) = (0u32, 0u32, 0u64);
    let mut registered: BTreeMap<[u8; 32], (DeviceKind, u64)> = BTreeMap::new();
    for b in readings["batches"].as_array().into_iter().flatten() {
        batches += 1;
        let auditor = Address(hex32(&b["auditor"], "auditor")?);
        if b["audit"].is_null() {
            println!("batch {auditor}: not audited (no verified proof)");
            continue;
        }
        let digest = hex32(&b["audit"]["proof_digest"], "proof digest")?;
        let proof = get_bytes(&client, &format!("/v1/epochs/{epoch}/proofs/{auditor}"))?;
        let frames = get_bytes(&client, &format!("/v1/epochs/{epoch}/frames/{auditor}"))?;
        let (served, s) =
            check_batch(&frames, &proof).with_context(|| format!("batch {auditor}"))?;
        ensure!(
            served == digest,
            "batch {auditor}: the served proof is not the one the ledger verified"
        );
        ensure!(
            s.commitment == hex32(&b["commitment"], "batch commitment")?,
            "batch {auditor}: the proof is of another commitment than the agreed one"
        );
        for d in &s.devices {
            let (kind, capacity) = match registered.get(&d.id) {
                Some(x) => *x,
                None => {
                    let dv = client.get_json(&format!("/state/device/{}", hex::encode(d.id)))?;
                    let kind: DeviceKind =
                        serde_json::from_value(dv["kind"].clone()).context("device kind")?;
                    let capacity = dv["capacity"].as_u64().context("device capacity")?;
                    registered.insert(d.id, (kind, capacity));
                    (kind, capacity)
                }
            };
            ensure!(
                kind.metered_cap(capacity, d.interval_len) == Some(d.cap),
                "device {}: the proof's cap {} is not its registered capacity's",
                hex::encode(d.id),
                d.cap
            );
        }
        println!("batch {auditor}: VALID ({} readings)", s.num_readings);
        audited += 1;
        verified_readings += s.num_readings;
        proofs.push((auditor, digest));
        for (id, t) in device_totals(&s) {
            // With redundancy the first verified batch counts; totals agree by construction.
            rechecked.entry(id).or_insert(t);
        }
    }
    for (id, (_, total)) in &verified_by_ledger {
        let mine = rechecked.get(id).copied();
        ensure!(
            mine.is_some_and(|m| m >= *total),
            "device {}: the ledger's verified total {total} is not backed by the proofs ({mine:?})",
            hex::encode(id)
        );
    }
    let ours = EpochCommitment {
        epoch,
        readings_root: hex32(&readings["root"], "readings root")?,
        totals_root: totals_root(
            epoch,
            verified_by_ledger.iter().map(|(id, (k, t))| (id, *k, *t)),
        ),
        proofs_root: proofs_root(epoch, proofs.iter().map(|(a, d)| (a, d))),
        state_root: hex32(&commitment["state_root"], "state root")?,
        batches,
        audited_batches: audited,
        verified_readings,
        height: 0,
    };
    let digest = ours.digest(&chain_id);
    ensure!(
        ours.totals_root == hex32(&commitment["totals_root"], "totals root")?,
        "the totals root does not recompute"
    );
    ensure!(
        ours.proofs_root == hex32(&commitment["proofs_root"], "proofs root")?,
        "the proofs root does not recompute"
    );
    ensure!(
        digest == hex32(&commitment["digest"], "digest")?,
        "the commitment digest does not recompute"
    );
    println!(
        "VALID epoch {epoch}: {audited}/{batches} batches proven, {} devices, commitment {}",
        verified_by_ledger.len(),
        hex::encode(digest)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody, SignedReading};
    use groundtruth_proofs::{prove_metered, runs_from_readings, Epoch, SecurityLevel};

    use super::*;

    const START: u64 = 1_714_521_600;
    const LEN: u32 = 300;

    /// One meter's four signed readings (10, 11, 12, 13 Wh).
    fn signed_readings() -> Vec<SignedReading> {
        let key = DeviceKey::from_seed(&[9; 32]);
        let mut register = 5_000;
        (0..4u64)
            .map(|seq| {
                let wh = 10 + seq;
                register += wh;
                let start = START + seq * u64::from(LEN);
                key.sign(Reading {
                    device: key.device_id(),
                    seq,
                    timestamp_ms: start * 1000,
                    body: ReadingBody::Energy(EnergyReading {
                        interval_start_s: start,
                        interval_len_s: LEN,
                        energy_wh: wh,
                        register_wh: register,
                    }),
                })
            })
            .collect()
    }

    /// `(u32 BE len ‖ frame)*`, as the API serves a batch's frames.
    fn frames_of(readings: &[SignedReading]) -> Vec<u8> {
        let mut frames = Vec::new();
        for r in readings {
            let mut buf = vec![0u8; r.frame_len()];
            let n = r.encode_frame(&mut buf).unwrap();
            frames.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
            frames.extend_from_slice(&buf[..n]);
        }
        frames
    }

    fn prove(readings: &[SignedReading]) -> Vec<u8> {
        let fields = groundtruth_verifier_wasm::reading_fields(readings);
        let series = runs_from_readings(&fields, |_, _| 1_000).unwrap();
        let epoch = Epoch {
            number: 3,
            start_s: START,
            end_s: START + 86_400,
        };
        prove_metered(&epoch, &series, SecurityLevel::Default100)
            .unwrap()
            .to_bytes()
            .unwrap()
    }

    #[test]
    fn a_signed_proven_batch_verifies_with_the_explorers_rule() {
        let readings = signed_readings();
        let (frames, proof) = (frames_of(&readings), prove(&readings));
        let (digest, s) = check_batch(&frames, &proof).unwrap();
        assert_eq!(digest, *blake3::hash(&proof).as_bytes());
        assert_eq!(s.num_readings, 4);
        let totals: Vec<u64> = device_totals(&s).into_values().collect();
        assert_eq!(totals, vec![10 + 11 + 12 + 13]);

        // The same through the command's file mode.
        let dir = tempfile::tempdir().unwrap();
        let (fp, pp) = (dir.path().join("frames.bin"), dir.path().join("proof.bin"));
        std::fs::write(&fp, &frames).unwrap();
        std::fs::write(&pp, &proof).unwrap();
        let args = AuditCheckArgs {
            frames: Some(fp),
            proof: Some(pp),
            epoch: None,
            api: None,
            l1: None,
            contract: None,
        };
        assert_eq!(run(&args).unwrap(), Some(ExitCode::SUCCESS));
    }

    #[test]
    fn a_forged_signature_or_a_missing_frame_is_refused() {
        let readings = signed_readings();
        let (frames, proof) = (frames_of(&readings), prove(&readings));

        // Flip the last byte of the first frame (inside its signature).
        let mut forged = frames.clone();
        let first = usize::try_from(u32::from_be_bytes(forged[..4].try_into().unwrap())).unwrap();
        forged[4 + first - 1] ^= 1;
        let err = check_batch(&forged, &proof).unwrap_err().to_string();
        assert!(err.starts_with("signature check failed"), "{err}");

        // Drop the last frame: the frames no longer recompute the proof's commitment.
        let short = frames_of(&readings[..3]);
        let err = check_batch(&short, &proof).unwrap_err().to_string();
        assert!(err.starts_with("commitment check failed"), "{err}");
    }
}
