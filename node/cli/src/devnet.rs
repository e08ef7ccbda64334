//! `groundtruth devnet`: a whole network on one machine with embedded defaults: four
//! validators replicating the ledger over Malachite (each a `groundtruth node` process), an
//! MQTT broker embedded in the first, every validator ingesting the fleet's readings, and a
//! simulated fleet, with live counts. `--validators 1` runs a single node in-process without
//! consensus.

mod resume;

use crate::sim::FleetArgs;
use groundtruth_firmware_sim::{PublishStats, Publisher};
use groundtruth_node::config::NodeConfig;
use groundtruth_node::node::Telemetry;
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
    /// Simulated seconds per real second. 1 (the default) publishes in real time, which
    /// timed epochs need: an epoch closes by the validators' clocks.
    #[arg(long, default_value_t = 1.0)]
    pub speedup: f64,
    /// Reading interval of the devnet fleet, seconds (overrides `--interval-s`).
    #[arg(long, default_value_t = 10)]
    pub reading_interval_s: u32,
    /// Epoch length in seconds of reading time (multi-validator devnet): each epoch is closed
    /// by the validators' votes, attested, audited with STARK proofs the ledger verifies, and
    /// committed. 0 counts epochs in blocks without audits.
    #[arg(long, default_value_t = 60)]
    pub epoch_s: u64,
    /// How long after an epoch's end validators wait for late readings before closing it.
    #[arg(long, default_value_t = 5)]
    pub grace_s: u64,
    /// Embedded broker address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub broker_listen: std::net::SocketAddr,
    /// Metrics address.
    #[arg(long, default_value = "127.0.0.1:9464")]
    pub metrics_listen: std::net::SocketAddr,
    /// Stop after this many intervals (0 = until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub intervals: u64,
    /// Validators: 4 (the genesis validator set, consensus on) or 1 (one node, no consensus).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub validators: u8,
    /// Ledger genesis (accounts, validators, stakes); the fleet's devices are added to it.
    #[arg(long, default_value = "configs/genesis.toml")]
    pub genesis: PathBuf,
    /// Do not start the provider agents.
    #[arg(long)]
    pub no_providers: bool,
    /// Storage provider agents of the multi-validator devnet (256 KiB of data each), by
    /// behaviour, comma-separated: honest, delete:<fraction>@<epoch>, slow-serve:<ms>,
    /// never-serve (`groundtruth_firmware_sim::providers`).
    #[arg(long, default_value = "honest")]
    pub provider_storage: String,
    /// GPU provider agents, by behaviour: honest, slow:<ms>, wrong, overstate:<factor>.
    #[arg(long, default_value = "honest")]
    pub provider_gpu: String,
}

/// The devnet fleet: real-time readings of `--reading-interval-s`, the first interval starting
/// at `start` (aligned to the interval).
fn fleet_config(
    args: &DevnetArgs,
    start: u64,
) -> anyhow::Result<groundtruth_firmware_sim::FleetConfig> {
    let mut c = args.fleet.fleet_config()?;
    c.interval_s = args.reading_interval_s.max(1);
    c.start_unix_s = start;
    Ok(c)
}

/// Now, Unix seconds.
fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Now, Unix seconds, rounded down to a multiple of `step`.
fn aligned_now(step: u64) -> u64 {
    let now = now_s();
    now - now % step.max(1)
}

/// How far ahead of its launch the multi-validator devnet starts epoch 0 (anvil, the contract and
/// four validators start meanwhile).
const STARTUP_SLACK_S: u64 = 20;

/// Runs the devnet until Ctrl-C (or `--intervals`).
pub fn run(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    if args.validators > 1 {
        return network::run(args);
    }
    run_single(args)
}

/// One node in this process, no consensus: the registry comes from the generated genesis.
fn run_single(args: DevnetArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.dir)?;
    let interval = u64::from(args.reading_interval_s.max(1));
    let resume::FleetStart {
        mut fleet,
        mut progress,
        resumed,
        recent,
    } = resume::open(
        &args.dir,
        fleet_config(&args, aligned_now(interval))?,
        args.speedup == 1.0,
        now_s(),
    )?;
    let genesis = args.dir.join("genesis.toml");
    resume::keep_genesis(&genesis, &fleet.genesis_toml(), resumed)?;
    if resumed {
        println!(
            "devnet: resuming the devnet in {} at interval {} ({} published before)",
            args.dir.display(),
            fleet.next_interval(),
            fleet.steps_taken()
        );
    }
    let mut config = NodeConfig::default();
    config.node.data_dir = args.dir.join("node0");
    config.node.genesis = genesis;
    config.node.devnet = true;
    config.mqtt.listen = args.broker_listen;
    config.mqtt.url = format!("mqtt://{}", args.broker_listen);
    config.metrics.listen = args.metrics_listen;
    // Logins on: the node's own login is generated in memory; the simulator is a gateway.
    let gateway_secret = broker_auth::secret(&args.dir.join("gateway.secret"))?;
    config.mqtt.auth = true;
    config.mqtt.credentials_file = Some(broker_auth::credentials(
        &args.dir,
        &[("gateway:sim".to_string(), gateway_secret.clone())],
    )?);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let telemetry = Telemetry::default();
        let ingest = telemetry.ingest.clone();
        let node = tokio::spawn(groundtruth_node::node::run(config, telemetry, std::future::pending()));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let stats = Arc::new(PublishStats::default());
        let publisher = Publisher::connect(
            &broker_auth::simulator(args.broker_listen, gateway_secret),
            stats.clone(),
        )?;
        publisher.remember(&recent);
        println!(
            "devnet: broker mqtt://{}  metrics http://{}/metrics  fleet {} energy, {} gpu, {} storage, {} unregistered",
            args.broker_listen, args.metrics_listen, args.fleet.energy, args.fleet.gpu, args.fleet.storage, args.fleet.unknown
        );
        let bar = ProgressBar::new_spinner();
        bar.set_style(ProgressStyle::with_template("{spinner} {elapsed} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
        let step_time = Duration::from_secs_f64(f64::from(args.reading_interval_s.max(1)) / args.speedup.max(0.001));
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
            progress.published(&fleet, &args.dir)?;
            step += 1;
            let accepted: u64 = ["energy", "gpu", "storage"]
                .iter()
                .map(|k| ingest.accepted.get_or_create(&groundtruth_node::metrics::KindLabel { kind: (*k).into() }).get())
                .sum();
            let rejected: Vec<String> = groundtruth_node::ingest::Rejection::ALL
                .iter()
                .filter_map(|r| {
                    let n = ingest.rejected.get_or_create(&groundtruth_node::metrics::ReasonLabel { reason: r.reason().into() }).get();
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

/// Generated broker logins for the devnet.
mod broker_auth {
    use std::path::{Path, PathBuf};

    /// The secret stored at `path`, created (owner-only) with 32 random bytes if absent.
    pub(super) fn secret(path: &Path) -> anyhow::Result<String> {
        if let Ok(text) = std::fs::read_to_string(path) {
            if !text.trim().is_empty() {
                return Ok(text.trim().to_string());
            }
        }
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        let secret = hex::encode(bytes);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        write_private(path, &secret)?;
        Ok(secret)
    }

    /// How the devnet's simulated fleet publishes: as gateway `gateway:sim` over two connections.
    pub(super) fn simulator(
        broker: std::net::SocketAddr,
        secret: String,
    ) -> groundtruth_firmware_sim::PublishConfig {
        groundtruth_firmware_sim::PublishConfig {
            broker: format!("mqtt://{broker}"),
            connections: 2,
            inflight: 200,
            client_prefix: "gateway:sim:devnet".into(),
            credentials: Some(("gateway:sim".into(), secret)),
        }
    }

    /// Writes the broker's credentials file (`<username> <blake3 hex>` lines) for `logins`.
    pub(super) fn credentials(dir: &Path, logins: &[(String, String)]) -> anyhow::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("broker-credentials");
        let mut text =
            String::from("# generated by groundtruth devnet: <username> <blake3 hex of secret>\n");
        for (user, secret) in logins {
            let hash = groundtruth_node::ingest::broker::secret_hash(secret);
            text.push_str(&format!("{user} {}\n", hex::encode(hash)));
        }
        write_private(&path, &text)?;
        Ok(path)
    }

    fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
        use std::io::Write;
        #[cfg(unix)]
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        options.mode(0o600);
        options.open(path)?.write_all(text.as_bytes())?;
        Ok(())
    }
}

/// The multi-validator devnet: child processes, one per validator.
mod network {
    use super::DevnetArgs;
    use groundtruth_api::ApiClient;
    use groundtruth_device_sdk::{keys, DeviceKey};
    use groundtruth_firmware_sim::{PublishStats, Publisher};
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitCode, Stdio};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Children killed when the devnet stops.
    struct Children(Vec<Child>);

    impl Drop for Children {
        fn drop(&mut self) {
            for c in &mut self.0 {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    fn write_key(path: &Path, seed: u8) -> anyhow::Result<()> {
        if !path.exists() {
            keys::save(&DeviceKey::from_seed(&[seed; 32]), path)?;
        }
        Ok(())
    }

    fn client(api: &str) -> Option<ApiClient> {
        ApiClient::new(api)
            .ok()
            .map(|c| c.with_timeout(Duration::from_secs(2)))
    }

    fn scrape(api: &str, name: &str) -> Vec<(String, f64)> {
        let Some(text) = client(api).and_then(|c| c.metrics_text().ok()) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| {
                l.rsplit_once(' ')
                    .and_then(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            })
            .collect()
    }

    fn height(api: &str) -> Option<u64> {
        client(api)?.status().ok().map(|s| s.height)
    }

    pub(super) fn run(args: DevnetArgs) -> anyhow::Result<ExitCode> {
        let n = usize::from(args.validators);
        anyhow::ensure!(n == 4, "the devnet genesis has 4 validators: use --validators 4 (or 1 for a single node without consensus)");
        std::fs::create_dir_all(&args.dir)?;
        let interval = u64::from(args.reading_interval_s.max(1));
        let epoch_s = if args.epoch_s == 0 {
            0
        } else {
            // Whole intervals per epoch, so no reading straddles two epochs.
            args.epoch_s.div_ceil(interval) * interval
        };
        // Epoch 0 starts where the fleet's first interval does, a little ahead so that anvil
        // and the validators are up before it; each interval is published when it ends.
        // A devnet kept in the directory continues from where it stopped, on its genesis.
        let super::resume::FleetStart {
            mut fleet,
            mut progress,
            resumed,
            recent,
        } = super::resume::open(
            &args.dir,
            super::fleet_config(
                &args,
                super::aligned_now(interval) + super::STARTUP_SLACK_S.div_ceil(interval) * interval,
            )?,
            args.speedup == 1.0,
            super::now_s(),
        )?;
        let start = fleet.config.start_unix_s;
        let ledger_genesis = std::fs::read_to_string(&args.genesis).map_err(|e| {
            anyhow::anyhow!(
                "reading {}: {e} (run from the repository root)",
                args.genesis.display()
            )
        })?;
        let timed = format!(
            "[params]\nepoch_duration_s = {epoch_s}                # devnet: timed epochs, audited\ngenesis_time_s = {start}\n"
        );
        // Provider agents of a debug build prove 16 samples within an epoch (the default 100
        // takes longer than a 20 s epoch there), with two epochs to land the proof.
        let timed = if args.no_providers {
            timed
        } else {
            format!("{timed}storage_challenge_k = 16\nstorage_deadline_epochs = 2\n")
        };
        let ledger_genesis = ledger_genesis.replacen("[params]\n", &timed, 1);
        let genesis = args.dir.join("genesis.toml");
        // The validators' L1 addresses go into the genesis (devnet L1 keys are well-known seeds).
        let mut parsed = groundtruth_ledger::Genesis::from_toml(&format!(
            "{ledger_genesis}\n{}",
            fleet.genesis_toml()
        ))?;
        let l1_set = crate::devnet_l1::add_l1_addresses(&mut parsed, n)?;
        super::resume::keep_genesis(&genesis, &toml::to_string(&parsed)?, resumed)?;
        if resumed {
            println!(
                "devnet: resuming the devnet in {} (its ledger, readings and L1 chain) at interval {} ({} published before)",
                args.dir.display(),
                fleet.next_interval(),
                fleet.steps_taken()
            );
        }

        // Devnet provider keys (seeds 100 and 101 own the genesis providers), for `groundtruth tx`.
        let keys_dir = args.dir.join("keys");
        std::fs::create_dir_all(&keys_dir)?;
        write_key(&keys_dir.join("provider-0.key"), 100)?;
        write_key(&keys_dir.join("provider-1.key"), 101)?;
        write_key(&keys_dir.join("operator-0.key"), 10)?;
        let exe = std::env::current_exe()?;
        let apis: Vec<String> = (0..n)
            .map(|i| format!("127.0.0.1:{}", args.metrics_listen.port() + i as u16))
            .collect();
        let p2p: Vec<u16> = (0..n).map(|i| 27_000 + i as u16).collect();
        // The validators' own swarm (transaction gossip, readings replication).
        let swarm: Vec<String> = (0..n)
            .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 27_100 + i))
            .collect();
        // Broker logins: v0 embeds the broker and logs in to it with a secret of its own; v1..
        // and the simulator (a gateway) get generated secrets listed in v0's credentials.
        let gateway_secret = super::broker_auth::secret(&args.dir.join("gateway.secret"))?;
        let mut logins = vec![("gateway:sim".to_string(), gateway_secret.clone())];
        for i in 1..n {
            let vdir = args.dir.join(format!("v{i}"));
            std::fs::create_dir_all(&vdir)?;
            logins.push((
                format!("validator:v{i}"),
                super::broker_auth::secret(&vdir.join("mqtt.secret"))?,
            ));
        }
        let credentials = super::broker_auth::credentials(&args.dir, &logins)?;
        let vdirs: Vec<PathBuf> = (0..n)
            .map(|i| abs(&args.dir.join(format!("v{i}"))))
            .collect::<anyhow::Result<_>>()?;
        for d in &vdirs {
            std::fs::create_dir_all(d)?;
        }
        let l1 =
            crate::devnet_l1::DevnetL1::start_in(&l1_set, &vdirs, &abs(&args.dir.join("l1"))?)?;
        let mut children = Children(Vec::new());
        for i in 0..n {
            let vdir = args.dir.join(format!("v{i}"));
            std::fs::create_dir_all(&vdir)?;
            // Devnet keys: consensus seeds 40+i and operators 10+i, as in configs/genesis.toml.
            write_key(&vdir.join("consensus.key"), 40 + i as u8)?;
            write_key(&vdir.join("operator.key"), 10 + i as u8)?;
            let others = |v: &[String]| {
                v.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let peers: Vec<String> = p2p
                .iter()
                .map(|p| format!("/ip4/127.0.0.1/tcp/{p}"))
                .collect();
            // The first validator embeds the broker; the others subscribe to it, so every
            // validator ingests every reading.
            let mqtt = if i == 0 {
                format!(
                    "embedded = true\nlisten = \"{b}\"\nurl = \"mqtt://{b}\"\nauth = true\ncredentials_file = \"{c}\"",
                    b = args.broker_listen,
                    c = abs(&credentials)?.display()
                )
            } else {
                format!(
                    "embedded = false\nurl = \"mqtt://{}\"\npassword_file = \"{}\"",
                    args.broker_listen,
                    abs(&vdir.join("mqtt.secret"))?.display()
                )
            };
            let config = format!(
                "[node]\nname = \"v{i}\"\ndevnet = true\ndata_dir = \"{data}\"\ngenesis = \"{genesis}\"\n\n[mqtt]\n{mqtt}\n\n[metrics]\nlisten = \"{api}\"\n\n\
                 [consensus]\nenabled = true\nlisten = \"{listen}\"\npeers = [{peers}]\nkey_file = \"{ckey}\"\noperator_key_file = \"{okey}\"\n\n\
                 [audit]\ngrace = \"{grace}s\"\n\n\
                 [audit.providers]\nenabled = true\nlisten = \"/ip4/127.0.0.1/tcp/{provider_port}\"\n\n\
                 [p2p]\nlisten = \"{swarm}\"\nbootstrap = [{swarm_peers}]\n",
                data = abs(&vdir.join("data"))?.display(),
                genesis = abs(&genesis)?.display(),
                api = apis[i],
                listen = peers[i],
                peers = others(&peers),
                ckey = abs(&vdir.join("consensus.key"))?.display(),
                okey = abs(&vdir.join("operator.key"))?.display(),
                grace = args.grace_s,
                swarm = swarm[i],
                swarm_peers = others(&swarm),
                provider_port = 27_200 + i,
            );
            let config = format!("{config}{}", l1.oracle_section(i, &vdirs[i], &apis));
            let config_path = vdir.join("node.toml");
            std::fs::write(&config_path, config)?;
            let log = append_log(&vdir.join("node.log"))?;
            children.0.push(
                Command::new(&exe)
                    .args(["node", "--config"])
                    .arg(&config_path)
                    .envs(malloc_arenas())
                    .stdout(Stdio::from(log.try_clone()?))
                    .stderr(Stdio::from(log))
                    .spawn()?,
            );
            if i == 0 {
                wait_listening(&args.broker_listen.to_string(), Duration::from_secs(30))?;
            }
        }
        for api in &apis {
            wait_listening(api, Duration::from_secs(30))?;
        }
        if !args.no_providers {
            for (name, child) in start_providers(&args, &genesis, &apis, n, !resumed)? {
                println!(
                    "  provider agent {name} (log {}/providers/{name}/provider.log)",
                    args.dir.display()
                );
                children.0.push(child);
            }
        }
        println!(
            "devnet: {n} validators (logs in {}/v*/node.log)",
            args.dir.display()
        );
        for (i, api) in apis.iter().enumerate() {
            println!("  v{i}: API and metrics http://{api}  (groundtruth tx query status --node http://{api})");
        }
        println!("  broker mqtt://{} (embedded in v0)", args.broker_listen);
        println!(
            "  L1: anvil {} with GroundtruthOracle at {} (groundtruth verify --epoch N --api http://{} --l1 {} --contract {})",
            l1.url, l1.contract, apis[0], l1.url, l1.contract
        );
        println!(
            "  keys: {k}/provider-0.key (a provider), {k}/operator-0.key (validator v0's operator)",
            k = keys_dir.display()
        );
        println!(
            "  fleet: {} energy, {} gpu, {} storage, {} unregistered; faults: {}",
            args.fleet.energy,
            args.fleet.gpu,
            args.fleet.storage,
            args.fleet.unknown,
            args.fleet.faults
        );

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let dir = args.dir.clone();
        runtime.block_on(async move {
            let stats = Arc::new(PublishStats::default());
            let publisher = Publisher::connect(
                &super::broker_auth::simulator(args.broker_listen, gateway_secret),
                stats.clone(),
            )?;
            publisher.remember(&recent);
            let step_time = Duration::from_secs_f64(
                f64::from(args.reading_interval_s.max(1)) / args.speedup.max(0.001),
            );
            // Real time: interval k ([start + k·I, start + (k+1)·I)) is published when it ends.
            if args.speedup == 1.0 {
                let first_end = start + (fleet.next_interval() + 1) * interval;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                let wait = (first_end as f64 - now).max(0.0);
                println!("  first readings at the end of the first interval, in {wait:.0}s");
                tokio::time::sleep(Duration::from_secs_f64(wait)).await;
            }
            let mut step = 0u64;
            let mut reported: Option<u64> = None;
            let mut last_print = Instant::now() - Duration::from_secs(10);
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                if args.intervals > 0 && step >= args.intervals {
                    break;
                }
                let tick = tokio::time::Instant::now();
                publisher.publish(&fleet.step()).await?;
                progress.published(&fleet, &dir)?;
                step += 1;
                if last_print.elapsed() >= Duration::from_secs(2) {
                    last_print = Instant::now();
                    let apis = apis.clone();
                    let published = stats.sent.load(Ordering::Relaxed);
                    let seen = reported;
                    let (line, epochs, newest) = tokio::task::spawn_blocking(move || {
                        let (epochs, newest) = epoch_lines(&apis[0], seen);
                        (status_line(&apis), epochs, newest)
                    })
                    .await
                    .unwrap_or_default();
                    reported = newest.or(reported);
                    let interval_no = fleet.next_interval();
                    println!("interval {interval_no:>5}  published {published:>7}  {line}");
                    for l in epochs {
                        println!("{l}");
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(tick + step_time) => {}
                    _ = &mut ctrl_c => break,
                }
            }
            publisher.disconnect().await;
            Ok::<_, anyhow::Error>(())
        })?;
        drop(children);
        drop(l1);
        println!(
            "devnet stopped; its data is kept in {} (the same command resumes it; delete it to start over)",
            args.dir.display()
        );
        Ok(ExitCode::SUCCESS)
    }

    /// One summary line per epoch committed after `seen` (from validator `api`), and the newest
    /// committed epoch: devices audited, proofs verified, readings, slashes with reasons, the
    /// commitment digest.
    fn epoch_lines(api: &str, seen: Option<u64>) -> (Vec<String>, Option<u64>) {
        let Some(c) = client(api) else {
            return (Vec::new(), None);
        };
        let Ok(list) = c.get_json("/v1/epochs") else {
            return (Vec::new(), None);
        };
        let committed: Vec<u64> = list["committed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_u64)
            .filter(|e| seen.is_none_or(|s| *e > s))
            .collect();
        // The first report of a resumed devnet: its last few epochs, not its whole history.
        let committed = match seen {
            None => committed[committed.len().saturating_sub(3)..].to_vec(),
            Some(_) => committed,
        };
        let mut lines = Vec::new();
        let mut newest = None;
        for e in committed {
            let Ok(v) = c.get_json(&format!("/v1/epochs/{e}")) else {
                break;
            };
            // Reported once anchored on L1 (in order: the next ones wait for it).
            let l1 = &v["l1"];
            if l1.is_null() {
                break;
            }
            newest = Some(e);
            let cm = &v["commitment"];
            let devices = v["verified"].as_array().map_or(0, Vec::len);
            let flagged = v["flagged"].as_array().map_or(0, Vec::len);
            let slashes: Vec<String> = v["slashes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{} {}",
                        s["role"].as_str().unwrap_or("?"),
                        s["reason"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let digest = cm["digest"].as_str().unwrap_or("");
            let tx = l1["tx"].as_str().unwrap_or("");
            lines.push(format!(
                "epoch {e} committed: {devices} devices audited, proofs {}/{} verified, {} readings verified, {flagged} attestations flagged, {} late readings (v0), slashes: {}, commitment {}…, L1 block {} tx {}",
                cm["audited_batches"],
                cm["batches"],
                cm["verified_readings"],
                v["late_readings"].as_u64().map_or_else(|| "?".to_string(), |n| n.to_string()),
                if slashes.is_empty() { "none".to_string() } else { slashes.join(", ") },
                digest.get(..16).unwrap_or(digest),
                l1["block"],
                tx,
            ));
            if let Some(p) = provider_line(api) {
                lines.push(p);
            }
        }
        (lines, newest)
    }

    /// The provider agents' device ids (hex), once started.
    static PROVIDER_DEVICES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

    /// Provider audit outcomes the ledger recorded so far (settled epochs, from `api`'s
    /// metrics), and the provider devices suspended or slashed.
    fn provider_line(api: &str) -> Option<String> {
        let rows = scrape(api, "groundtruth_provider_ledger_outcomes_total");
        if rows.is_empty() {
            return None;
        }
        let mut sums: std::collections::BTreeMap<(String, String), u64> = Default::default();
        for (k, v) in rows {
            let label = |name: &str| {
                k.split(['{', ',', '}'])
                    .find_map(|p| p.strip_prefix(&format!("{name}=\"")))
                    .map(|x| x.trim_end_matches('"').to_string())
                    .unwrap_or_default()
            };
            *sums.entry((label("kind"), label("outcome"))).or_default() += v as u64;
        }
        let kind = |k: &str| {
            let parts: Vec<String> = sums
                .iter()
                .filter(|((kk, _), _)| kk == k)
                .map(|((_, o), n)| format!("{n} {o}"))
                .collect();
            if parts.is_empty() {
                "none".to_string()
            } else {
                parts.join(", ")
            }
        };
        let c = client(api)?;
        let slashes = c
            .validators()
            .map(|v| {
                v.slashes
                    .iter()
                    .filter(|s| {
                        s.reason.contains("storage")
                            || s.reason.contains("gpu")
                            || s.reason.contains("retriev")
                    })
                    .count()
            })
            .unwrap_or(0);
        let devices = PROVIDER_DEVICES
            .get()
            .map(Vec::as_slice)
            .unwrap_or_default();
        let suspended = devices
            .iter()
            .filter(|d| {
                d.parse::<groundtruth_api::Hex32>()
                    .ok()
                    .and_then(|h| c.device(&h).ok().flatten())
                    .is_some_and(|v| v.status == groundtruth_api::DeviceStatusView::Suspended)
            })
            .count();
        Some(format!(
            "  providers (settled epochs): storage proofs {}; spot retrievals {}; GPU capacity {}; suspended {suspended} of {} agents; provider slashes {slashes}",
            kind("storage_proof"),
            kind("retrieval"),
            kind("gpu_capacity"),
            devices.len(),
        ))
    }

    /// Writes the devnet's provider agents (`--provider-storage`, `--provider-gpu`) under
    /// `dir/providers/` with the fleet simulator's writer and starts them. Their owners are fresh
    /// keys (seeds 180..), funded by a transfer from provider seed 100.
    fn start_providers(
        args: &DevnetArgs,
        genesis: &Path,
        apis: &[String],
        n: usize,
        fund_owners: bool,
    ) -> anyhow::Result<Vec<(String, Child)>> {
        use groundtruth_firmware_sim::providers::{
            write_provider_fleet, ProviderBehaviour, ProviderFleetConfig,
        };
        let parse = |list: &str| -> anyhow::Result<Vec<ProviderBehaviour>> {
            list.split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| Ok(s.trim().parse()?))
                .collect()
        };
        let (storage, gpu) = (parse(&args.provider_storage)?, parse(&args.provider_gpu)?);
        let config = ProviderFleetConfig {
            node: format!("http://{}", apis[0]),
            genesis: abs(genesis)?,
            dial: (0..n)
                .map(|i| format!("/ip4/127.0.0.1/tcp/{}", 27_200 + i))
                .collect(),
            chunks: 256,
            claimed_mac_per_s: 1_000_000,
            key_seed: 180,
        };
        let dir = abs(&args.dir.join("providers"))?;
        let agents = write_provider_fleet(&dir, &config, &storage, &gpu)?;
        // Fund each owner from the devnet provider seed 100 (stake + fees).
        let funder = keys::load(&dir.join("..").join("keys").join("provider-0.key"))
            .map(|k| ed25519_dalek::SigningKey::from_bytes(&k.seed()));
        let _ = PROVIDER_DEVICES.set(
            agents
                .iter()
                .map(|a| {
                    DeviceKey::from_seed(&[a.device_seed; 32])
                        .device_id()
                        .to_string()
                })
                .collect(),
        );
        let exe = std::env::current_exe()?;
        let mut out = Vec::new();
        for a in agents {
            // A resumed devnet funded them when it was new.
            if let (true, Ok(f), Some(c)) = (fund_owners, &funder, client(&apis[0])) {
                let to = DeviceKey::from_seed(&[a.owner_seed; 32]).device_id();
                if let Err(e) = fund(&c, f, to.0, 5_000) {
                    eprintln!("  funding {}'s owner failed: {e}", a.name);
                }
            }
            let log = append_log(&dir.join(&a.name).join("provider.log"))?;
            let child = Command::new(&exe)
                .args(["provider", "--config"])
                .arg(&a.config)
                .stdout(Stdio::from(log.try_clone()?))
                .stderr(Stdio::from(log))
                .spawn()?;
            out.push((a.name, child));
        }
        Ok(out)
    }

    /// A transfer of `amount` from `from` to `to`, waited for (a few seconds at most).
    fn fund(
        c: &ApiClient,
        from: &ed25519_dalek::SigningKey,
        to: [u8; 32],
        amount: u64,
    ) -> anyhow::Result<()> {
        let signer = groundtruth_ledger::Address(from.verifying_key().to_bytes());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = (|| -> anyhow::Result<()> {
                let status = c.status()?;
                let nonce = c.account(&groundtruth_api::Hex32(signer.0))?.nonce;
                let tx = groundtruth_ledger::Tx {
                    signer,
                    nonce,
                    fee: 1,
                    body: groundtruth_ledger::TxBody::Transfer {
                        to: groundtruth_ledger::Address(to),
                        amount,
                    },
                }
                .sign(&status.chain_id, from);
                let sub = c.submit_tx(&tx.encode())?;
                while Instant::now() < deadline {
                    if c.tx(&sub.hash)?.is_some() {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                anyhow::bail!("transfer not in a block")
            })();
            match attempt {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    /// `accepted/rejected` per validator and the ledger height.
    fn status_line(apis: &[String]) -> String {
        let mut parts = Vec::new();
        for (i, api) in apis.iter().enumerate() {
            let accepted: f64 = scrape(api, "groundtruth_ingest_accepted_total")
                .iter()
                .map(|(_, v)| v)
                .sum();
            let rejected: f64 = scrape(api, "groundtruth_ingest_rejected_total")
                .iter()
                .map(|(_, v)| v)
                .sum();
            let h = height(api).map_or_else(|| "-".into(), |h| h.to_string());
            parts.push(format!("v{i}: {accepted:.0}✓ {rejected:.0}✗ h{h}"));
        }
        parts.join("  ")
    }

    /// glibc's malloc arenas capped at 2 for the validators unless the environment says
    /// otherwise: about 30 % less resident memory in the 10,000-meter soak, drain no slower
    /// (`docs/benchmarks.md`).
    fn malloc_arenas() -> Option<(&'static str, &'static str)> {
        std::env::var_os("MALLOC_ARENA_MAX")
            .is_none()
            .then_some(("MALLOC_ARENA_MAX", "2"))
    }

    /// A child's log file, appended to (a resumed devnet keeps the earlier runs' lines).
    fn append_log(path: &Path) -> anyhow::Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?)
    }

    fn abs(p: &Path) -> anyhow::Result<PathBuf> {
        Ok(if p.is_absolute() {
            p.to_path_buf()
        } else {
            std::env::current_dir()?.join(p)
        })
    }

    fn wait_listening(addr: &str, timeout: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if std::net::TcpStream::connect(addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("nothing listening on {addr} after {timeout:?}; see the node logs")
    }
}
