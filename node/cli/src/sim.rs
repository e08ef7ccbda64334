//! `groundtruth sim`: run a simulated fleet against a broker, or write its genesis.

use anyhow::Context;
use groundtruth_firmware_sim::{
    expected_counts, FaultKind, Fleet, FleetConfig, Message, PublishConfig, PublishStats, Publisher,
};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Which devices the fleet holds and how they misbehave.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Seed for keys, weather and faults (the same seed gives the same fleet).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Solar meters.
    #[arg(long, default_value_t = 100)]
    pub energy: u32,
    /// GPU agents.
    #[arg(long, default_value_t = 10)]
    pub gpu: u32,
    /// Storage providers.
    #[arg(long, default_value_t = 10)]
    pub storage: u32,
    /// Devices missing from genesis (their readings must be rejected).
    #[arg(long, default_value_t = 2)]
    pub unknown: u32,
    /// Faults to inject: a comma-separated list of inflate, replay, equivocate, garbage,
    /// offline, forge; or `all`; or `none`.
    #[arg(long, default_value = "all")]
    pub faults: String,
    /// Fraction of registered devices that are faulty.
    #[arg(long, default_value_t = 0.2)]
    pub faulty_fraction: f64,
    /// Probability per interval that a faulty device misbehaves.
    #[arg(long, default_value_t = 0.1)]
    pub fault_rate: f64,
    /// Interval length in seconds.
    #[arg(long, default_value_t = 300)]
    pub interval_s: u32,
    /// Start of the first interval, Unix seconds (default 2026-06-21T00:00:00Z). With
    /// `--speedup 1` the fleet runs in real time: each interval is published when it ends by
    /// this machine's clock (an interval already over is published at once).
    #[arg(long)]
    pub start_unix_s: Option<u64>,
}

impl FleetArgs {
    /// The fleet configuration.
    pub fn fleet_config(&self) -> anyhow::Result<FleetConfig> {
        let faults = match self.faults.as_str() {
            "all" => FaultKind::ALL.to_vec(),
            "none" | "" => Vec::new(),
            list => list
                .split(',')
                .map(|f| match f.trim() {
                    "inflate" => Ok(FaultKind::Inflate),
                    "replay" => Ok(FaultKind::Replay),
                    "equivocate" => Ok(FaultKind::Equivocate),
                    "garbage" => Ok(FaultKind::Garbage),
                    "offline" => Ok(FaultKind::Offline),
                    "forge" => Ok(FaultKind::Forge),
                    other => Err(anyhow::anyhow!("unknown fault {other:?}")),
                })
                .collect::<anyhow::Result<_>>()?,
        };
        Ok(FleetConfig {
            seed: self.seed,
            energy_devices: self.energy,
            gpu_devices: self.gpu,
            storage_devices: self.storage,
            unknown_devices: self.unknown,
            interval_s: self.interval_s,
            faulty_fraction: if faults.is_empty() {
                0.0
            } else {
                self.faulty_fraction
            },
            fault_rate: self.fault_rate,
            faults,
            start_unix_s: self
                .start_unix_s
                .unwrap_or(FleetConfig::default().start_unix_s),
        })
    }
}

/// Arguments of `groundtruth sim`.
#[derive(Debug, clap::Args)]
pub struct SimArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Broker to publish to.
    #[arg(long, default_value = "mqtt://127.0.0.1:1883")]
    pub broker: String,
    /// Intervals to simulate per device; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 288)]
    pub intervals: u64,
    /// Simulated seconds per real second; 0 publishes as fast as the broker takes it.
    #[arg(long, default_value_t = 0.0)]
    pub speedup: f64,
    /// MQTT connections to spread the devices over.
    #[arg(long, default_value_t = 4)]
    pub connections: u32,
    /// Sign every reading before publishing starts (measures the network path, not signing).
    #[arg(long)]
    pub presign: bool,
    /// Write the expected outcome (counts by reason and the accepted (device, seq) keys) here.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// After the last reading, stay connected this many seconds to answer resend requests.
    #[arg(long, default_value_t = 0.0)]
    pub linger_s: f64,
    /// Write the fleet's genesis `[[devices]]` to this file and exit.
    #[arg(long)]
    pub write_genesis: Option<PathBuf>,
    /// Log in to the broker as fleet gateway `gateway:<NAME>` (brokers that require logins).
    #[arg(long, requires = "gateway_secret_file")]
    pub gateway: Option<String>,
    /// File holding the gateway's secret.
    #[arg(long)]
    pub gateway_secret_file: Option<PathBuf>,
}

/// What a validator should end up with after a simulation run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Messages published.
    pub messages: u64,
    /// Expected outcomes by label (`accepted` or a rejection reason).
    pub expected: BTreeMap<String, u64>,
    /// `device_hex:seq` of every reading that must be accepted, sorted.
    pub accepted: Vec<String>,
    /// Per metered device (hex id): the total of its accepted readings, what an audit must
    /// verify.
    pub totals: BTreeMap<String, DeviceTotal>,
}

/// One metered device's output in a run.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct DeviceTotal {
    /// `energy` (Wh) or `gpu` (GPU-milliseconds).
    pub kind: String,
    /// Sum of the readings a validator must accept (inflated, implausible ones excluded).
    pub total: u64,
    /// Sum of every reading the device signed and published, accepted or not.
    pub claimed: u64,
}

fn manifest_of(messages: &[Message]) -> Manifest {
    let mut accepted: Vec<String> = messages
        .iter()
        .filter(|m| m.expect == groundtruth_firmware_sim::Expect::Accepted)
        .filter_map(|m| m.key.map(|(d, s)| format!("{d}:{s}")))
        .collect();
    accepted.sort();
    Manifest {
        messages: messages.len() as u64,
        expected: expected_counts(messages)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        accepted,
        totals: groundtruth_firmware_sim::metered_totals(messages)
            .into_iter()
            .map(|(id, t)| {
                (
                    id.to_string(),
                    DeviceTotal {
                        kind: t.kind.name().to_string(),
                        total: t.accepted,
                        claimed: t.claimed,
                    },
                )
            })
            .collect(),
    }
}

/// Runs `groundtruth sim`.
pub fn run(args: SimArgs) -> anyhow::Result<ExitCode> {
    let mut fleet = Fleet::new(args.fleet.fleet_config()?);
    if let Some(path) = &args.write_genesis {
        std::fs::write(path, fleet.genesis_toml())?;
        println!(
            "wrote {} devices to {}",
            fleet.genesis_devices().len(),
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stats = Arc::new(PublishStats::default());
        let publisher = Publisher::connect(
            &PublishConfig {
                broker: args.broker.clone(),
                connections: args.connections,
                inflight: 500,
                client_prefix: match &args.gateway {
                    Some(name) => {
                        format!("gateway:{name}:{}-{}", args.fleet.seed, std::process::id())
                    }
                    None => format!("gt-sim-{}-{}", args.fleet.seed, std::process::id()),
                },
                credentials: match (&args.gateway, &args.gateway_secret_file) {
                    (Some(name), Some(file)) => Some((
                        format!("gateway:{name}"),
                        std::fs::read_to_string(file)
                            .with_context(|| format!("reading {}", file.display()))?
                            .trim()
                            .to_string(),
                    )),
                    _ => None,
                },
            },
            stats.clone(),
        )?;
        let mut all: Vec<Message> = Vec::new();
        let bar = if args.intervals > 0 {
            ProgressBar::new(args.intervals)
        } else {
            ProgressBar::new_spinner()
        };
        bar.set_style(
            ProgressStyle::with_template("{spinner} {bar:30} {pos}/{len} intervals {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        // Real time: interval k is due when it ends by the wall clock.
        let real_time = args.fleet.start_unix_s.filter(|_| args.speedup == 1.0);
        let step_time = if args.speedup > 0.0 {
            Some(Duration::from_secs_f64(
                f64::from(args.fleet.interval_s) / args.speedup,
            ))
        } else {
            None
        };
        if args.presign {
            bar.set_message("signing");
            let mut steps = Vec::new();
            for _ in 0..args.intervals {
                steps.push(fleet.step());
                bar.inc(1);
            }
            steps.push(fleet.release_held());
            bar.reset();
            bar.set_message("publishing");
            let started = std::time::Instant::now();
            for step in steps {
                publisher.publish(&step).await?;
                all.extend(step);
                bar.inc(1);
            }
            publisher
                .wait_acked(Duration::from_secs(3), Duration::from_secs(120))
                .await?;
            let secs = started.elapsed().as_secs_f64();
            bar.finish_and_clear();
            println!(
                "published {} messages in {secs:.2} s ({:.0}/s, all acknowledged by the broker)",
                all.len(),
                all.len() as f64 / secs
            );
        } else {
            let mut i = 0u64;
            loop {
                if args.intervals > 0 && i >= args.intervals {
                    break;
                }
                if let Some(start) = real_time {
                    let end = start.saturating_add(
                        (i.saturating_add(1)).saturating_mul(u64::from(args.fleet.interval_s)),
                    );
                    sleep_until_unix(end).await;
                }
                let tick = tokio::time::Instant::now();
                let step = fleet.step();
                publisher.publish(&step).await?;
                if args.manifest.is_some() {
                    all.extend(step);
                }
                i += 1;
                bar.inc(1);
                bar.set_message(format!(
                    "sent {} acked {}",
                    stats.sent.load(Ordering::Relaxed),
                    stats.acked.load(Ordering::Relaxed)
                ));
                if let (Some(t), None) = (step_time, real_time) {
                    tokio::time::sleep_until(tick + t).await;
                }
            }
            let held = fleet.release_held();
            publisher.publish(&held).await?;
            all.extend(held);
            publisher
                .wait_acked(Duration::from_secs(3), Duration::from_secs(120))
                .await?;
            bar.finish_and_clear();
            println!(
                "published {} messages, all acknowledged by the broker",
                stats.sent.load(Ordering::Relaxed)
            );
        }
        if args.linger_s > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.linger_s)).await;
        }
        let resent = stats.resent.load(Ordering::Relaxed);
        if resent > 0 {
            println!("re-sent {resent} readings on validators' requests");
        }
        publisher.disconnect().await;
        if let Some(path) = &args.manifest {
            std::fs::write(path, serde_json::to_vec_pretty(&manifest_of(&all))?)?;
        }
        Ok::<_, anyhow::Error>(ExitCode::SUCCESS)
    })
}

/// Sleeps until the wall clock reads `unix_s` (at once if it already passed).
async fn sleep_until_unix(unix_s: u64) {
    let target = std::time::UNIX_EPOCH + Duration::from_secs(unix_s);
    if let Ok(wait) = target.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(wait).await;
    }
}
