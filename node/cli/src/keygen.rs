//! `groundtruth keygen`: create a device key file.

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `groundtruth keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the key (created with owner-only permissions; never overwritten).
    #[arg(long, short)]
    pub out: PathBuf,
}

/// Writes a fresh key and prints its device id (the public key); the secret is never printed.
pub fn run(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    let key = groundtruth_device_sdk::keys::generate();
    groundtruth_device_sdk::keys::save(&key, &args.out)?;
    println!("{}", key.device_id());
    Ok(ExitCode::SUCCESS)
}
