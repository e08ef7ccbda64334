//! `groundtruth store`: inspect a node's database (the node must be stopped).

use groundtruth_node::ingest::store::{Status, Store};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `groundtruth store`.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// What to show.
    #[command(subcommand)]
    pub what: StoreCommand,
}

/// Store subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StoreCommand {
    /// Print `device_hex:seq` of every accepted reading, one per line, sorted.
    Accepted {
        /// Node data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Print counts of stored readings and evidence.
    Stats {
        /// Node data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
}

/// Runs `groundtruth store`.
pub fn run(args: StoreArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        StoreCommand::Accepted { data_dir } => {
            let store = Store::open(&data_dir)?;
            let mut out = String::new();
            for r in store.readings() {
                let r = r?;
                if r.status == Status::Accepted {
                    out.push_str(&format!("{}:{}\n", r.device, r.seq));
                }
            }
            print!("{out}");
        }
        StoreCommand::Stats { data_dir } => {
            let store = Store::open(&data_dir)?;
            let (mut accepted, mut rejected) = (0u64, 0u64);
            for r in store.readings() {
                match r?.status {
                    Status::Accepted => accepted += 1,
                    Status::Rejected => rejected += 1,
                }
            }
            let evidence = store.evidence().count();
            println!("accepted {accepted}\nrejected_on_record {rejected}\nequivocation_evidence {evidence}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
