//! `groundtruth prove` and `groundtruth verify` (filled by the proofs work).

use std::process::ExitCode;

/// Arguments of `groundtruth prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {}

/// Arguments of `groundtruth verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Proof file written by `groundtruth prove`.
    pub file: std::path::PathBuf,
}

/// Runs `groundtruth prove`.
pub fn prove(_args: ProveArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}

/// Runs `groundtruth verify`.
pub fn verify(_args: VerifyArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("not implemented yet")
}
