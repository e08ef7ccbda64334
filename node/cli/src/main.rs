//! The `groundtruth` binary: one file per subcommand; the validator itself is the
//! `groundtruth-node` library, the wallet talks to it over HTTP.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod broker;
mod devnet;
mod devnet_l1;
mod keygen;
mod node;
mod proofs;
mod provider;
mod sim;
mod store;
mod tx;
mod verify_epoch;

/// groundtruth: a verification network for physical infrastructure.
#[derive(Debug, Parser)]
#[command(name = "groundtruth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a whole devnet on this machine: broker, validator, simulated fleet, live counts.
    Devnet(devnet::DevnetArgs),
    /// Run a validator node.
    Node(node::NodeArgs),
    /// Run a simulated fleet against a broker (or write its genesis).
    Sim(sim::SimArgs),
    /// Create a device key file.
    Keygen(keygen::KeygenArgs),
    /// Run a standalone MQTT broker.
    Broker(broker::BrokerArgs),
    /// Inspect a stopped node's database.
    Store(store::StoreArgs),
    /// Write a STARK proof file for a statement (metered output or retrievability).
    Prove(proofs::ProveArgs),
    /// Check a proof file, an audit batch (signed frames + proof) or a whole epoch from a node's
    /// API, trusting no one; exits non-zero with the reason if anything fails.
    Verify(proofs::VerifyArgs),
    /// Sign and send ledger transactions to a node, or query its ledger state.
    Tx(tx::TxArgs),
    /// Run a storage or GPU provider agent (registers, proves, answers validators' audits).
    Provider(provider::ProviderArgs),
}

/// Entry point: parse arguments, set up logging, run the subcommand.
fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Devnet(args) => devnet::run(args),
        Command::Node(args) => node::run(args),
        Command::Sim(args) => sim::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Broker(args) => broker::run(args),
        Command::Store(args) => store::run(args),
        Command::Prove(args) => proofs::prove(args),
        Command::Verify(args) => proofs::verify(args),
        Command::Tx(args) => tx::run(args),
        Command::Provider(args) => provider::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rumqttd=off,rumqttc=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
