//! `groundtruth prove` and `groundtruth verify`: write and check STARK proof files.
//!
//! ```text
//! groundtruth prove metered --readings readings.json --out day.proof [--security 128]
//! groundtruth prove commit --data ./dataset --depth 30
//! groundtruth prove retrievability --data ./dataset --depth 30 --seed HEX --k 100 --out por.proof
//! groundtruth verify day.proof
//! ```
//! `readings.json`: `{"epoch": {"number": 7, "start_s": 0, "end_s": 86400}, "devices":
//! [{"id": "<64 hex>", "cap": 500, "start_register": 0, "first_seq": 0,
//! "first_interval_start": 0, "interval_len": 300, "values": [1, 2, 3]}]}` (`epoch` defaults to
//! epoch 0 over the readings' span, `interval_len` to 300, the others to 0).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use groundtruth_proofs::{por, Challenge, DeviceSeries, ProofEnvelope, SecurityLevel, Statement};

/// Arguments of `groundtruth prove`.
#[derive(Debug, clap::Args)]
pub struct ProveArgs {
    #[command(subcommand)]
    what: ProveCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ProveCommand {
    /// Prove metered output (one device or an epoch batch) from a readings JSON file.
    Metered {
        /// JSON file: {"devices": [{"id", "cap", "start_register", "values"}]}.
        #[arg(long)]
        readings: PathBuf,
        /// Where to write the proof envelope.
        #[arg(long)]
        out: PathBuf,
        /// Security level in bits: 100 (default) or 128.
        #[arg(long, default_value_t = 100)]
        security: u32,
    },
    /// Print the retrievability commitment (Merkle root) of a file or directory.
    Commit {
        /// File or directory (its regular files in sorted path order).
        #[arg(long)]
        data: PathBuf,
        /// Tree depth (2^depth chunks of 1 KiB).
        #[arg(long, default_value_t = 30)]
        depth: u8,
    },
    /// Prove retrievability of a file or directory for a seed-derived challenge.
    Retrievability {
        /// File or directory committed with `prove commit`.
        #[arg(long)]
        data: PathBuf,
        /// Tree depth used at commitment time.
        #[arg(long, default_value_t = 30)]
        depth: u8,
        /// Challenge seed, 64 hex characters.
        #[arg(long)]
        seed: String,
        /// Number of challenged chunks.
        #[arg(long, default_value_t = 100)]
        k: u32,
        /// Where to write the proof envelope.
        #[arg(long)]
        out: PathBuf,
        /// Security level in bits: 100 (default) or 128.
        #[arg(long, default_value_t = 100)]
        security: u32,
    },
}

/// Arguments of `groundtruth verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Proof file written by `groundtruth prove` (or use the audit modes below).
    #[arg(required_unless_present_any = ["frames", "epoch"])]
    pub file: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub audit: crate::verify_epoch::AuditCheckArgs,
}

#[derive(serde::Deserialize)]
struct ReadingsFile {
    /// Epoch number and window `[start_s, end_s)`; by default epoch 0 and the window covering
    /// the readings.
    #[serde(default)]
    epoch: Option<groundtruth_proofs::Epoch>,
    devices: Vec<DeviceJson>,
}

#[derive(serde::Deserialize)]
struct DeviceJson {
    id: String,
    cap: u64,
    #[serde(default)]
    start_register: u64,
    #[serde(default)]
    first_seq: u64,
    #[serde(default)]
    first_interval_start: u64,
    #[serde(default = "default_interval_len")]
    interval_len: u32,
    values: Vec<u64>,
}

fn default_interval_len() -> u32 {
    300
}

fn level(bits: u32) -> anyhow::Result<SecurityLevel> {
    match bits {
        100 => Ok(SecurityLevel::Default100),
        128 => Ok(SecurityLevel::High128),
        other => bail!("--security must be 100 or 128, not {other}"),
    }
}

fn hex32(s: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    let v = hex::decode(s.trim()).with_context(|| format!("{what} is not hex"))?;
    v.try_into()
        .map_err(|_| anyhow::anyhow!("{what} must be 32 bytes (64 hex characters)"))
}

fn write_envelope(env: &ProofEnvelope, out: &PathBuf) -> anyhow::Result<()> {
    let bytes = env.to_bytes()?;
    std::fs::write(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} ({} bytes, digest {}, {})",
        out.display(),
        bytes.len(),
        hex::encode(env.digest()?),
        env.security
    );
    Ok(())
}

fn bar_callback(bar: &indicatif::ProgressBar) -> impl Fn(u64, u64) + '_ {
    move |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

/// Runs `groundtruth prove`.
pub fn prove(args: ProveArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        ProveCommand::Metered {
            readings,
            out,
            security,
        } => {
            let text = std::fs::read_to_string(&readings)
                .with_context(|| format!("reading {}", readings.display()))?;
            let file: ReadingsFile =
                serde_json::from_str(&text).context("parsing readings JSON")?;
            let series = file
                .devices
                .into_iter()
                .map(|d| {
                    Ok(DeviceSeries {
                        id: hex32(&d.id, "device id")?,
                        cap: d.cap,
                        start_register: d.start_register,
                        first_seq: d.first_seq,
                        first_interval_start: d.first_interval_start,
                        interval_len: d.interval_len,
                        values: d.values,
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let started = std::time::Instant::now();
            let epoch = file
                .epoch
                .unwrap_or_else(|| groundtruth_proofs::Epoch::covering(0, &series));
            let env = groundtruth_proofs::prove_metered(&epoch, &series, level(security)?)?;
            eprintln!("proved in {:.2?}", started.elapsed());
            write_envelope(&env, &out)?;
        }
        ProveCommand::Commit { data, depth } => {
            let bar = por::progress_bar();
            let c = por::commit_path(&data, depth, Some(&bar_callback(&bar)))?;
            bar.finish_and_clear();
            println!("{}", serde_json::to_string_pretty(&c)?);
        }
        ProveCommand::Retrievability {
            data,
            depth,
            seed,
            k,
            out,
            security,
        } => {
            let bar = por::progress_bar();
            let c = por::commit_path(&data, depth, Some(&bar_callback(&bar)))?;
            bar.finish_and_clear();
            let challenge = Challenge {
                root: c.root,
                depth,
                num_chunks: c.num_chunks,
                seed: hex32(&seed, "seed")?,
                k,
            };
            let bar = por::progress_bar();
            let response = por::respond_path(&data, &challenge, Some(&bar_callback(&bar)))?;
            bar.finish_and_clear();
            let started = std::time::Instant::now();
            let env =
                groundtruth_proofs::prove_retrievability(&challenge, &response, level(security)?)?;
            eprintln!("proved in {:.2?}", started.elapsed());
            write_envelope(&env, &out)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `groundtruth verify`.
pub fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    if let Some(code) = crate::verify_epoch::run(&args.audit)? {
        return Ok(code);
    }
    let Some(file) = &args.file else {
        anyhow::bail!("give a proof file, --frames and --proof, or --epoch and --api");
    };
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let started = std::time::Instant::now();
    let (env, statement) = groundtruth_proofs::verify_bytes(&bytes)
        .map_err(|e| anyhow::anyhow!("proof rejected: {e}"))?;
    let took = started.elapsed();
    println!("VALID {} proof", statement.kind());
    println!("  digest:   {}", hex::encode(env.digest()?));
    println!("  security: {}", env.security);
    match statement {
        Statement::MeteredOutput(s) => {
            println!(
                "  epoch:        {} [{}, {})",
                s.epoch.number, s.epoch.start_s, s.epoch.end_s
            );
            println!("  commitment:   {}", hex::encode(s.commitment));
            println!("  readings:     {}", s.num_readings);
            println!("  devices:      {}", s.devices.len());
            for d in &s.devices {
                println!(
                    "    {}  cap {}  register {} -> {}  total {}  seq {}..={}  intervals {} + k*{}s",
                    hex::encode(d.id),
                    d.cap,
                    d.start_register,
                    d.end_register(),
                    d.total,
                    d.first_seq,
                    d.last_seq,
                    d.first_interval_start,
                    d.interval_len
                );
            }
        }
        Statement::Retrievability(s) => {
            println!("  root:       {}", hex::encode(s.root));
            println!("  depth:      {}", s.depth);
            println!("  chunks:     {} of {} bytes", s.num_chunks, s.chunk_size);
            println!("  seed:       {}", hex::encode(s.seed));
            println!(
                "  k:          {} (proved {} samples)",
                s.k,
                s.challenge().sample_count()
            );
        }
    }
    println!("  verified in {took:.2?}");
    Ok(ExitCode::SUCCESS)
}
