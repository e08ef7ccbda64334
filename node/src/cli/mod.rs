//! Command-line interface of the `groundtruth` binary. Each subcommand lives in its own file.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod proofs;

/// groundtruth: a verification network for physical infrastructure.
#[derive(Debug, Parser)]
#[command(name = "groundtruth", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a STARK proof file for a statement (metered output or retrievability).
    Prove(proofs::ProveArgs),
    /// Check a proof file without trusting anyone; exits non-zero with the reason if it fails.
    Verify(proofs::VerifyArgs),
}

/// Entry point: parse arguments, set up logging, run the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Prove(args) => proofs::prove(args),
        Command::Verify(args) => proofs::verify(args),
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
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
