//! `groundtruth tx`: sign ledger transactions with a key file and send them to a node's API,
//! or query the node's ledger state.
//!
//! ```text
//! groundtruth tx bond --key op.key --amount 5000 --node http://127.0.0.1:9464
//! groundtruth tx register-device --key provider.key --device-key meter.key --kind energy --capacity 5000
//! groundtruth tx query device <hex> --node http://127.0.0.1:9464
//! groundtruth tx commit-storage --key provider.key --device <hex> --root <hex> --depth 30 --num-chunks 1073741824
//! groundtruth tx submit-storage-proof --key provider.key --device <hex> --epoch 7 --proof proof.bin
//! groundtruth tx register-gpu-spec --key provider.key --device <hex> --model H200 --count 1 --claimed-mac-per-s 2000000000
//! groundtruth tx report-provider-audit --key op.key --device <hex> --epoch 7 --kind gpu_capacity \
//!     --verdict pass --seed <hex> --response-digest <hex> --elapsed-ms 830 --measured-per-s 20213000
//! ```
//! The nonce and chain id come from the node. By default the command waits until the
//! transaction is in a committed block and exits non-zero if the ledger rejected it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::{Signer, SigningKey};
use groundtruth_api::{ApiClient, ClientError, Hex32};
use groundtruth_ledger::{
    possession_sign_bytes, Address, DeviceId, DeviceKind, ProviderAuditKind, Tx, TxBody,
};
use serde::Serialize;

/// Arguments of `groundtruth tx`.
#[derive(Debug, clap::Args)]
pub struct TxArgs {
    #[command(subcommand)]
    command: TxCommand,
}

#[derive(Debug, clap::Args)]
struct Send {
    /// Key file of the signer (`groundtruth keygen` format).
    #[arg(long)]
    key: PathBuf,
    /// The node's HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:9464")]
    node: String,
    /// Fee paid to the proposer.
    #[arg(long, default_value_t = 1)]
    fee: u64,
    /// Return once the node admitted the transaction instead of waiting for a block.
    #[arg(long)]
    no_wait: bool,
    /// How long to wait for the block.
    #[arg(long, default_value = "30s", value_parser = humantime_serde::re::humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, clap::Subcommand)]
enum TxCommand {
    /// Bond more self-stake to the signer's validator.
    Bond {
        #[command(flatten)]
        send: Send,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Start unbonding self-stake.
    Unbond {
        #[command(flatten)]
        send: Send,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Make the signer a provider.
    RegisterProvider {
        #[command(flatten)]
        send: Send,
        /// Stake bonded.
        #[arg(long)]
        stake: u64,
        /// Data root of a storage provider (64 hex characters; zero if absent).
        #[arg(long)]
        data_root: Option<String>,
    },
    /// Register a device owned by the signer (a provider), with the device key's proof of
    /// possession.
    RegisterDevice {
        #[command(flatten)]
        send: Send,
        /// The device's key file (from `groundtruth keygen`).
        #[arg(long)]
        device_key: PathBuf,
        /// energy, gpu or storage.
        #[arg(long)]
        kind: String,
        /// Capacity in the kind's unit (W, GPUs, bytes).
        #[arg(long)]
        capacity: u64,
        /// Region label.
        #[arg(long, default_value = "")]
        region: String,
    },
    /// Move liquid balance.
    Transfer {
        #[command(flatten)]
        send: Send,
        /// Recipient address (64 hex characters).
        #[arg(long)]
        to: String,
        /// Amount.
        #[arg(long)]
        amount: u64,
    },
    /// Commit a storage device's data: the Merkle root of its 1 KiB chunks (as
    /// `groundtruth_proofs::por::commit_path` builds it). Once per device.
    CommitStorage {
        #[command(flatten)]
        send: Send,
        /// The storage device (64 hex characters).
        #[arg(long)]
        device: String,
        /// Merkle root (64 hex characters).
        #[arg(long)]
        root: String,
        /// Tree depth (1..=44).
        #[arg(long)]
        depth: u8,
        /// Number of chunks (1..=2^depth).
        #[arg(long)]
        num_chunks: u64,
    },
    /// Answer a storage device's challenge for an ended epoch with a retrievability proof.
    SubmitStorageProof {
        #[command(flatten)]
        send: Send,
        /// The storage device (64 hex characters).
        #[arg(long)]
        device: String,
        /// The challenged epoch.
        #[arg(long)]
        epoch: u64,
        /// File holding the proof envelope's bytes (`groundtruth-proofs` encoding).
        #[arg(long)]
        proof: PathBuf,
    },
    /// Register (or replace) a GPU device's claimed spec.
    RegisterGpuSpec {
        #[command(flatten)]
        send: Send,
        /// The GPU device (64 hex characters).
        #[arg(long)]
        device: String,
        /// Model label (at most 64 bytes).
        #[arg(long)]
        model: String,
        /// Number of GPUs.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Claimed exact field multiply-adds per second on the capacity challenge.
        #[arg(long)]
        claimed_mac_per_s: u64,
    },
    /// Report a provider audit verdict as a member of the device's committee (signer: a
    /// validator operator).
    ReportProviderAudit {
        #[command(flatten)]
        send: Send,
        /// The audited device (64 hex characters).
        #[arg(long)]
        device: String,
        /// The audited epoch.
        #[arg(long)]
        epoch: u64,
        /// retrieval or gpu_capacity.
        #[arg(long)]
        kind: String,
        /// pass or fail.
        #[arg(long)]
        verdict: String,
        /// The ledger's challenge seed (64 hex characters).
        #[arg(long)]
        seed: String,
        /// Blake3 of the provider's response (64 hex characters; zeros if none came).
        #[arg(long)]
        response_digest: String,
        /// Request to complete response, ms.
        #[arg(long)]
        elapsed_ms: u32,
        /// Measured throughput (GPU: multiply-adds per second; retrieval: bytes per second).
        #[arg(long, default_value_t = 0)]
        measured_per_s: u64,
    },
    /// Query the node's ledger state (prints JSON).
    Query {
        /// What to show.
        #[command(subcommand)]
        what: Query,
        /// The node's HTTP API.
        #[arg(long, global = true, default_value = "http://127.0.0.1:9464")]
        node: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum Query {
    /// A device by key.
    Device {
        /// Device id (64 hex characters).
        id: String,
    },
    /// An account by address.
    Account {
        /// Address (64 hex characters).
        address: String,
    },
    /// The validator set, every validator and every slash.
    Validators,
    /// Height, state root, chain id.
    Status,
}

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn client(node: &str) -> anyhow::Result<ApiClient> {
    Ok(ApiClient::new(node)?.with_timeout(HTTP_TIMEOUT))
}

fn load_signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    let k = groundtruth_device_sdk::keys::load(path)?;
    Ok(SigningKey::from_bytes(&k.seed()))
}

fn hex32(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .with_context(|| format!("{what} is not 64 hex characters"))?;
    Ok(out)
}

/// Largest proof file read (the ledger's cap on any transaction).
const MAX_PROOF_FILE: u64 = groundtruth_ledger::tx::MAX_TX_LEN as u64;

/// Reads a proof envelope file, refusing one larger than a transaction can carry.
fn read_proof(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("--proof {}", path.display()))?
        .len();
    if len > MAX_PROOF_FILE {
        bail!(
            "--proof {}: {len} bytes, more than a transaction carries ({MAX_PROOF_FILE})",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("--proof {}", path.display()))
}

fn commit_storage_body(
    device: &str,
    root: &str,
    depth: u8,
    num_chunks: u64,
) -> anyhow::Result<TxBody> {
    Ok(TxBody::CommitStorage {
        device: DeviceId(hex32(device, "--device")?),
        root: hex32(root, "--root")?,
        depth,
        num_chunks,
    })
}

/// The arguments of `report-provider-audit`.
struct Report<'a> {
    device: &'a str,
    epoch: u64,
    kind: &'a str,
    verdict: &'a str,
    seed: &'a str,
    response_digest: &'a str,
    elapsed_ms: u32,
    measured_per_s: u64,
}

fn report_body(r: &Report<'_>) -> anyhow::Result<TxBody> {
    let Some(kind) = ProviderAuditKind::from_name(r.kind) else {
        bail!("--kind {:?}: expected retrieval or gpu_capacity", r.kind);
    };
    let passed = match r.verdict {
        "pass" => true,
        "fail" => false,
        other => bail!("--verdict {other:?}: expected pass or fail"),
    };
    Ok(TxBody::ReportProviderAudit {
        epoch: r.epoch,
        device: DeviceId(hex32(r.device, "--device")?),
        kind,
        passed,
        seed: hex32(r.seed, "--seed")?,
        response_digest: hex32(r.response_digest, "--response-digest")?,
        elapsed_ms: r.elapsed_ms,
        measured_per_s: r.measured_per_s,
    })
}

/// Builds a transaction body from the chain id and the signer's address.
type BuildBody = Box<dyn FnOnce(&str, &Address) -> anyhow::Result<TxBody>>;

/// Runs `groundtruth tx …`.
pub fn run(args: TxArgs) -> anyhow::Result<ExitCode> {
    let (send, build): (Send, BuildBody) = match args.command {
        TxCommand::Query { what, node } => return query(&node, what),
        TxCommand::Bond { send, amount } => {
            (send, Box::new(move |_, _| Ok(TxBody::Bond { amount })))
        }
        TxCommand::Unbond { send, amount } => {
            (send, Box::new(move |_, _| Ok(TxBody::Unbond { amount })))
        }
        TxCommand::RegisterProvider {
            send,
            stake,
            data_root,
        } => (
            send,
            Box::new(move |_, _| {
                let data_root = match data_root {
                    Some(h) => hex32(&h, "--data-root")?,
                    None => [0; 32],
                };
                Ok(TxBody::RegisterProvider { stake, data_root })
            }),
        ),
        TxCommand::RegisterDevice {
            send,
            device_key,
            kind,
            capacity,
            region,
        } => (
            send,
            Box::new(move |chain_id, owner| {
                let kind = match kind.as_str() {
                    "energy" => DeviceKind::Energy,
                    "gpu" => DeviceKind::Gpu,
                    "storage" => DeviceKind::Storage,
                    other => bail!("--kind {other:?}: expected energy, gpu or storage"),
                };
                let dk = load_signing_key(&device_key)?;
                let device = DeviceId(dk.verifying_key().to_bytes());
                let possession = dk
                    .sign(&possession_sign_bytes(chain_id, owner, &device))
                    .to_bytes();
                Ok(TxBody::RegisterDevice {
                    device,
                    kind,
                    capacity,
                    region,
                    possession,
                })
            }),
        ),
        TxCommand::CommitStorage {
            send,
            device,
            root,
            depth,
            num_chunks,
        } => (
            send,
            Box::new(move |_, _| commit_storage_body(&device, &root, depth, num_chunks)),
        ),
        TxCommand::SubmitStorageProof {
            send,
            device,
            epoch,
            proof,
        } => (
            send,
            Box::new(move |_, _| {
                let bytes = read_proof(&proof)?;
                Ok(TxBody::SubmitStorageProof {
                    epoch,
                    device: DeviceId(hex32(&device, "--device")?),
                    proof: bytes,
                })
            }),
        ),
        TxCommand::RegisterGpuSpec {
            send,
            device,
            model,
            count,
            claimed_mac_per_s,
        } => (
            send,
            Box::new(move |_, _| {
                Ok(TxBody::RegisterGpuSpec {
                    device: DeviceId(hex32(&device, "--device")?),
                    model,
                    count,
                    claimed_mac_per_s,
                })
            }),
        ),
        TxCommand::ReportProviderAudit {
            send,
            device,
            epoch,
            kind,
            verdict,
            seed,
            response_digest,
            elapsed_ms,
            measured_per_s,
        } => (
            send,
            Box::new(move |_, _| {
                report_body(&Report {
                    device: &device,
                    epoch,
                    kind: &kind,
                    verdict: &verdict,
                    seed: &seed,
                    response_digest: &response_digest,
                    elapsed_ms,
                    measured_per_s,
                })
            }),
        ),
        TxCommand::Transfer { send, to, amount } => (
            send,
            Box::new(move |_, _| {
                Ok(TxBody::Transfer {
                    to: Address(hex32(&to, "--to")?),
                    amount,
                })
            }),
        ),
    };
    let key = load_signing_key(&send.key)?;
    let signer = Address(key.verifying_key().to_bytes());
    let api = client(&send.node)?;
    let chain_id = api
        .status()
        .with_context(|| format!("status of {}", send.node))?
        .chain_id;
    let nonce = api.account(&Hex32(signer.0))?.nonce;
    let body = build(&chain_id, &signer)?;
    let kind = body.name();
    let stx = Tx {
        signer,
        nonce,
        fee: send.fee,
        body,
    }
    .sign(&chain_id, &key);
    let hash = match api.submit_tx(&stx.encode()) {
        Ok(s) => s.hash,
        Err(ClientError::Problem { problem, .. }) => {
            eprintln!("rejected: {} ({})", problem.reason, problem.detail);
            return Ok(ExitCode::FAILURE);
        }
        Err(e) => return Err(e).context("POST /tx"),
    };
    if send.no_wait {
        println!(
            "{}",
            serde_json::json!({"hash": hash, "tx": kind, "nonce": nonce, "admitted": true})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let until = Instant::now() + send.timeout;
    loop {
        if let Some(out) = api.tx(&hash)? {
            println!("{}", serde_json::to_string(&out)?);
            return Ok(if out.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        if Instant::now() > until {
            bail!("transaction {hash} not committed within {:?}", send.timeout);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints a view (or the server's problem details) as pretty JSON; fails unless a view came.
fn show<T: Serialize>(result: Result<Option<T>, ClientError>) -> anyhow::Result<ExitCode> {
    match result {
        Ok(Some(v)) => {
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        Ok(None) => {
            eprintln!("not found");
            Ok(ExitCode::FAILURE)
        }
        Err(ClientError::Problem { problem, .. }) => {
            println!("{}", serde_json::to_string_pretty(&problem)?);
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

fn query(node: &str, what: Query) -> anyhow::Result<ExitCode> {
    let api = client(node)?;
    match &what {
        Query::Device { id } => show(api.device(&Hex32(hex32(id, "device id")?))),
        Query::Account { address } => {
            show(api.account(&Hex32(hex32(address, "address")?)).map(Some))
        }
        Query::Validators => show(api.validators().map(Some)),
        Query::Status => show(api.status().map(Some)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_arguments_build_the_body_or_explain() {
        let hex = "ab".repeat(32);
        let mut r = Report {
            device: &hex,
            epoch: 7,
            kind: "gpu_capacity",
            verdict: "fail",
            seed: &hex,
            response_digest: &hex,
            elapsed_ms: 830,
            measured_per_s: 5,
        };
        let body = report_body(&r).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            TxBody::ReportProviderAudit {
                epoch: 7,
                device: DeviceId([0xab; 32]),
                kind: ProviderAuditKind::GpuCapacity,
                passed: false,
                seed: [0xab; 32],
                response_digest: [0xab; 32],
                elapsed_ms: 830,
                measured_per_s: 5,
            }
        );
        r.kind = "gpu";
        assert!(report_body(&r).is_err());
        r.kind = "retrieval";
        r.verdict = "ok";
        assert!(report_body(&r).is_err());
        r.verdict = "pass";
        r.seed = "zz";
        assert!(report_body(&r).is_err());
    }

    #[test]
    fn storage_bodies_and_proof_files() {
        let hex = "01".repeat(32);
        let body = commit_storage_body(&hex, &hex, 30, 1 << 30).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            body,
            TxBody::CommitStorage {
                device: DeviceId([1; 32]),
                root: [1; 32],
                depth: 30,
                num_chunks: 1 << 30,
            }
        );
        assert!(commit_storage_body("01", &hex, 30, 1).is_err());
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("proof.bin");
        std::fs::write(&path, [1u8, 2, 3]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            read_proof(&path).unwrap_or_else(|e| panic!("{e}")),
            vec![1, 2, 3]
        );
        assert!(read_proof(&dir.path().join("missing")).is_err());
    }
}
