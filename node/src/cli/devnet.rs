//! `groundtruth devnet`: a whole network on one machine with embedded defaults: a broker, a
//! validator and a simulated fleet, with live counts.

use super::sim::FleetArgs;
use crate::config::NodeConfig;
use crate::service::Telemetry;
use groundtruth_firmware_sim::{Fleet, PublishConfig, PublishStats, Publisher};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of `groundtruth devnet`.
#[derive(Debug, clap::Args)]
pub struct DevnetArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Working directory for the devnet's data and generated genesis.
    #[arg(long, default_value = ".devnet")]
    pub dir: PathBuf,
    /// Simulated seconds per real second (300 = one 5-minute interval per second).
    #[arg(long, default_value_t = 300.0)]
    pub speedup: f64,
    /// Embedded broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker_listen: std::net::SocketAddr,
    /// Metrics address.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: std::net::SocketAddr,
    /// Stop after this many intervals (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub intervals: u64,
}

/// Runs the devnet until Ctrl-C (or `--intervals`).
pub fn run(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)?;
    let mut fleet = Fleet::new(args.fleet.fleet_config()?);
    let genesis = args.dir.join("genesis.toml");
    std::fs::write(&genesis, fleet.genesis_toml())?;
    let mut config = NodeConfig::default();
    config.node.data_dir = args.dir.join("node0");
    config.node.genesis = genesis;
    config.mqtt.listen = args.broker_listen;
    config.mqtt.url = format!("mqtt://{}", args.broker_listen);
    config.metrics.listen = args.metrics_listen;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = Telemetry::default();
        let ingest = telemetry.ingest.clone();
        let node = tokio::spawn(crate::service::run(config, telemetry, std::future::pending()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = Arc::new(PublishStats::default());
        let publisher = Publisher::connect(
            &PublishConfig {
                broker: format!("mqtt://{}", args.broker_listen),
                connections: 2,
                inflight: 200,
                client_prefix: "gt-devnet-sim".into(),
            },
            stats.clone(),
        )?;
        println!(
            "devnet: broker mqtt://{}  metrics http://{}/metrics  fleet {} energy, {} gpu, {} storage, {} unregistered",
            args.broker_listen, args.metrics_listen, args.fleet.energy, args.fleet.gpu, args.fleet.storage, args.fleet.unknown
        );
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        let step_time = Duration::from_secs_f64(f64::from(args.fleet.interval_s) / args.speedup.max(0.001));
        let mut step = 0u64;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            if node.is_finished() {
                anyhow::bail!("the node stopped; see its log above");
            }
            if args.intervals > 0 && step >= args.intervals {
                break;
            }
            let tick = tokio::time::Instant::now();
            let msgs = fleet.step();
            publisher.publish(&msgs).await?;
            step += 1;
            let accepted: u64 = ["energy", "gpu", "storage"]
                .iter()
                .map(|k| ingest.accepted.get_or_create(&crate::metrics::KindLabel { kind: (*k).into() }).get())
                .sum();
            let rejected: Vec<String> = crate::ingest::Rejection::ALL
                .iter()
                .filter_map(|r| {
                    let n = ingest.rejected.get_or_create(&crate::metrics::ReasonLabel { reason: r.reason().into() }).get();
                    (n > 0).then(|| format!("{}={n}", r.reason()))
                })
                .collect();
            let line = format!(
                "interval {step}  published {}  accepted {accepted}  rejected [{}]",
                stats.sent.load(Ordering::Relaxed),
                rejected.join(" ")
            );
            if bar.is_hidden() {
                // Not a terminal: a plain line every 10 intervals.
                if step.is_multiple_of(10) {
                    println!("{line}");
                }
            } else {
                bar.set_message(line);
                bar.tick();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(tick + step_time) => {}
                _ = &mut ctrl_c => break,
            }
        }
        bar.finish();
        publisher.disconnect().await;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
