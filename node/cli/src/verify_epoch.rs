//! `groundtruth verify --frames F --proof P` and `groundtruth verify --epoch N --api URL`:
//! recheck an audit from the device signatures up, trusting no node.
//!
//! For each batch: every frame's ed25519 signature under its device id (the id is the public
//! key), the readings grouped into runs and the commitment recomputed exactly as validators
//! build it, the STARK verified, the commitment and reading count compared with the proof's
//! statement, and (with `--api`) each device's cap compared with its registered capacity, the
//! statement's totals with the ledger's verified totals, and the epoch commitment's roots and
//! digest recomputed from what was checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, ensure, Context};
use groundtruth_api::ApiClient;
use groundtruth_device_sdk::SignedReading;
use groundtruth_ledger::{
    proofs_root, totals_root, Address, AuditKind, DeviceKind, EpochCommitment,
};
use groundtruth_node::audit::reading_fields;
use groundtruth_proofs::{metered::readings_commitment, runs_from_readings, MeteredStatement};

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

/// Splits `(u32 BE len ‖ frame)*`.
fn split_frames(bytes: &[u8]) -> anyhow::Result<Vec<SignedReading>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        ensure!(rest.len() >= 4, "truncated frame length");
        let (len, tail) = rest.split_at(4);
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        ensure!(tail.len() >= len, "truncated frame");
        let (frame, tail) = tail.split_at(len);
        let r = SignedReading::decode_frame(frame)
            .map_err(|e| anyhow::anyhow!("frame {}: {e:?}", out.len()))?;
        out.push(r);
        rest = tail;
    }
    Ok(out)
}

/// One batch rechecked: the proof's statement once everything held.
fn check_batch(frames: &[u8], proof: &[u8]) -> anyhow::Result<MeteredStatement> {
    let readings = split_frames(frames)?;
    for (i, r) in readings.iter().enumerate() {
        r.verify().map_err(|e| {
            anyhow::anyhow!(
                "frame {i} (device {} seq {}): signature does not verify: {e:?}",
                r.reading.device,
                r.reading.seq
            )
        })?;
    }
    let envelope = groundtruth_proofs::ProofEnvelope::from_bytes(proof)
        .map_err(|e| anyhow::anyhow!("proof envelope: {e}"))?;
    let statement = groundtruth_proofs::verify_metered(&envelope)
        .map_err(|e| anyhow::anyhow!("proof does not verify: {e}"))?;
    let caps: BTreeMap<([u8; 32], u32), u64> = statement
        .devices
        .iter()
        .map(|d| ((d.id, d.interval_len), d.cap))
        .collect();
    let fields = reading_fields(&readings);
    let series = runs_from_readings(&fields, |id, len| {
        caps.get(&(*id, len)).copied().unwrap_or(0)
    })
    .map_err(|e| anyhow::anyhow!("frames do not form the batch: {e}"))?;
    let commitment = readings_commitment(&statement.epoch, &series)
        .map_err(|e| anyhow::anyhow!("recomputing the commitment: {e}"))?;
    ensure!(
        commitment == statement.commitment,
        "the frames' commitment {} is not the proof's {}",
        hex::encode(commitment),
        hex::encode(statement.commitment)
    );
    ensure!(
        fields.len() as u64 == statement.num_readings,
        "{} frames, the proof covers {} readings",
        fields.len(),
        statement.num_readings
    );
    Ok(statement)
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
        let s = check_batch(&frames, &proof)?;
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
        ensure!(
            *blake3::hash(&proof).as_bytes() == digest,
            "batch {auditor}: the served proof is not the one the ledger verified"
        );
        let frames = get_bytes(&client, &format!("/v1/epochs/{epoch}/frames/{auditor}"))?;
        let s = check_batch(&frames, &proof).with_context(|| format!("batch {auditor}"))?;
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
