//! `groundtruth tx`: sign ledger transactions with a key file and send them to a node's API,
//! or query the node's ledger state.
//!
//! ```text
//! groundtruth tx bond --key op.key --amount 5000 --node http://127.0.0.1:9464
//! groundtruth tx register-device --key provider.key --device-key meter.key --kind energy --capacity 5000
//! groundtruth tx query device <hex> --node http://127.0.0.1:9464
//! ```
//! The nonce and chain id come from the node. By default the command waits until the
//! transaction is in a committed block and exits non-zero if the ledger rejected it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ed25519_dalek::{Signer, SigningKey};
use groundtruth_api::{ApiClient, ClientError, Hex32};
use groundtruth_ledger::{possession_sign_bytes, Address, DeviceId, DeviceKind, Tx, TxBody};
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
