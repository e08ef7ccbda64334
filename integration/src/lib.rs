//! Multi-process test builder and benchmark harness: starts real `groundtruth` processes
//! (validators, brokers, fleets), Mosquitto, and reads their metrics over HTTP.
//!
//! Tests find the `groundtruth` binary next to their own executable (`target/<profile>/`), or
//! at `$GROUNDTRUTH_BIN`; build it first (`cargo build --bin groundtruth`), as `scripts/test.sh`
//! does.

pub mod ledger;

use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Path of the `groundtruth` binary.
pub fn groundtruth_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("GROUNDTRUTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // Tests live in target/<profile>/deps/, binaries such as the bench in target/<profile>/.
    let dir = exe.parent().context("executable has no directory")?;
    let candidates = [
        dir.join("groundtruth"),
        dir.parent()
            .map(|p| p.join("groundtruth"))
            .unwrap_or_default(),
    ];
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .with_context(|| format!("groundtruth binary not found near {}: run `cargo build --bin groundtruth` first (scripts/test.sh does)", dir.display()))
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// A child process killed (SIGKILL) when dropped.
pub struct Proc {
    /// What it is, for messages.
    pub name: String,
    child: Child,
}

impl Proc {
    /// Spawns `program args`, logging to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], log: &Path) -> Result<Self> {
        Self::spawn_with_env(name, program, args, &[], log)
    }

    /// Spawns with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info,rumqttd=off".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {}", program.display()))?;
        Ok(Self {
            name: name.into(),
            child,
        })
    }

    /// SIGKILL, like a power cut for the process (the page cache survives).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time (user + system) the process has used so far, from `/proc` (Linux).
    pub fn cpu_time(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses and may contain spaces.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        // Linux reports clock ticks; USER_HZ is 100 on every mainstream configuration.
        Some(Duration::from_millis((utime + stime) * 10))
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits until `addr` accepts TCP connections.
pub fn wait_listening(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if TcpStream::connect(addr).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nothing listening on {addr} after {timeout:?}")
}

/// Fetches a Prometheus text endpoint and returns `name{labels}` → value.
pub fn scrape(addr: SocketAddr) -> Result<BTreeMap<String, f64>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let mut out = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ') {
            if let Ok(v) = value.parse::<f64>() {
                out.insert(name.to_string(), v);
            }
        }
    }
    Ok(out)
}

/// Value of a metric, 0 when absent.
pub fn metric(m: &BTreeMap<String, f64>, name: &str) -> f64 {
    m.get(name).copied().unwrap_or(0.0)
}

/// A node's outcome counts by label: `accepted` (all kinds) and each rejection reason.
pub fn outcome_counts(m: &BTreeMap<String, f64>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (k, v) in m {
        let label = if k.starts_with("groundtruth_ingest_accepted_total{") {
            "accepted".to_string()
        } else if let Some(rest) = k.strip_prefix("groundtruth_ingest_rejected_total{reason=\"") {
            rest.trim_end_matches("\"}").to_string()
        } else {
            continue;
        };
        if *v > 0.0 {
            *out.entry(label).or_insert(0) += *v as u64;
        }
    }
    out
}

/// Where a node gets its readings.
#[derive(Debug, Clone, Copy)]
pub enum BrokerMode {
    /// The node embeds rumqttd on this address.
    Embedded(SocketAddr),
    /// The node subscribes to an external broker at this address.
    External(SocketAddr),
}

impl BrokerMode {
    /// The broker address devices publish to.
    pub fn addr(&self) -> SocketAddr {
        match self {
            Self::Embedded(a) | Self::External(a) => *a,
        }
    }
}

/// A validator node process.
pub struct NodeProc {
    /// The process.
    pub proc: Proc,
    /// Metrics endpoint.
    pub metrics: SocketAddr,
    /// Data directory.
    pub data_dir: PathBuf,
    genesis: PathBuf,
    broker: BrokerMode,
    log_dir: PathBuf,
    starts: u32,
}

impl NodeProc {
    /// Starts a node and waits for its metrics endpoint.
    pub fn start(dir: &Path, genesis: &Path, broker: BrokerMode) -> Result<Self> {
        let mut node = Self {
            proc: Proc::spawn(
                "placeholder",
                Path::new("/bin/true"),
                &[],
                &dir.join("placeholder.log"),
            )?,
            metrics: free_addr(),
            data_dir: dir.join("node-data"),
            genesis: genesis.to_path_buf(),
            broker,
            log_dir: dir.to_path_buf(),
            starts: 0,
        };
        node.restart()?;
        Ok(node)
    }

    /// (Re)starts the process on the same data directory.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill9();
        self.starts += 1;
        let mut args: Vec<String> = vec![
            "node".into(),
            "--data-dir".into(),
            self.data_dir.display().to_string(),
            "--genesis".into(),
            self.genesis.display().to_string(),
            "--metrics-listen".into(),
            self.metrics.to_string(),
        ];
        match self.broker {
            BrokerMode::Embedded(a) => args.extend(["--broker-listen".into(), a.to_string()]),
            BrokerMode::External(a) => args.extend([
                "--no-embedded-broker".into(),
                "--mqtt-url".into(),
                format!("mqtt://{a}"),
            ]),
        }
        let log = self.log_dir.join(format!("node-{}.log", self.starts));
        // Tests want gaps refilled quickly.
        let env = [("GROUNDTRUTH__INGEST__RESEND_INTERVAL", "300ms")];
        self.proc = Proc::spawn_with_env("node", &groundtruth_bin()?, &args, &env, &log)?;
        wait_listening(self.metrics, Duration::from_secs(20))
            .with_context(|| format!("node did not start; see {}", log.display()))?;
        if let BrokerMode::Embedded(a) = self.broker {
            wait_listening(a, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// Current metrics.
    pub fn scrape(&self) -> Result<BTreeMap<String, f64>> {
        scrape(self.metrics)
    }

    /// Waits until the node has processed `messages` messages since its last start.
    pub fn wait_received(&self, messages: u64, timeout: Duration) -> Result<BTreeMap<String, f64>> {
        self.wait_for(timeout, |m| {
            metric(m, "groundtruth_ingest_received_total") as u64 >= messages
        })
    }

    /// Waits until the node's MQTT session is up (its log says so).
    pub fn wait_for_connected(&self, timeout: Duration) -> Result<()> {
        let log = self.log_dir.join(format!("node-{}.log", self.starts));
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if std::fs::read_to_string(&log).is_ok_and(|t| t.contains("connected to broker")) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("node did not connect to its broker; see {}", log.display())
    }

    /// Waits until the store holds `n` accepted readings.
    pub fn wait_stored(&self, n: u64, timeout: Duration) -> Result<BTreeMap<String, f64>> {
        self.wait_for(timeout, |m| {
            metric(m, "groundtruth_ingest_stored_accepted") as u64 >= n
        })
    }

    fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&BTreeMap<String, f64>) -> bool,
    ) -> Result<BTreeMap<String, f64>> {
        let until = Instant::now() + timeout;
        let mut last = BTreeMap::new();
        while Instant::now() < until {
            if let Ok(m) = self.scrape() {
                if done(&m) {
                    // Let the committer finish the batch in flight, then read once more.
                    std::thread::sleep(Duration::from_millis(300));
                    return self.scrape();
                }
                last = m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "timed out after {timeout:?}; last metrics: {:?}",
            outcome_counts(&last)
        )
    }

    /// Stops the node and lists `device:seq` of every accepted reading in its store.
    pub fn stop_and_list_accepted(&mut self) -> Result<Vec<String>> {
        self.proc.kill9();
        let out = Command::new(groundtruth_bin()?)
            .args(["store", "accepted", "--data-dir"])
            .arg(&self.data_dir)
            .output()?;
        if !out.status.success() {
            bail!(
                "groundtruth store failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// A simulated fleet's parameters for `groundtruth sim`.
#[derive(Debug, Clone)]
pub struct FleetSpec {
    /// Seed.
    pub seed: u64,
    /// Solar meters.
    pub energy: u32,
    /// GPU agents.
    pub gpu: u32,
    /// Storage providers.
    pub storage: u32,
    /// Unregistered devices.
    pub unknown: u32,
    /// Faults (`all`, `none` or a list).
    pub faults: String,
    /// Intervals per device.
    pub intervals: u64,
}

impl FleetSpec {
    fn fleet_args(&self) -> Vec<String> {
        vec![
            "--seed".into(),
            self.seed.to_string(),
            "--energy".into(),
            self.energy.to_string(),
            "--gpu".into(),
            self.gpu.to_string(),
            "--storage".into(),
            self.storage.to_string(),
            "--unknown".into(),
            self.unknown.to_string(),
            "--faults".into(),
            self.faults.clone(),
            "--faulty-fraction".into(),
            "0.3".into(),
            "--fault-rate".into(),
            "0.2".into(),
        ]
    }

    /// Writes the fleet's genesis file.
    pub fn write_genesis(&self, path: &Path) -> Result<()> {
        let mut args = vec!["sim".to_string()];
        args.extend(self.fleet_args());
        args.extend(["--write-genesis".into(), path.display().to_string()]);
        let status = Command::new(groundtruth_bin()?)
            .args(&args)
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("groundtruth sim --write-genesis failed");
        }
        Ok(())
    }

    /// Starts the fleet publishing to `broker`; the manifest lands at `manifest` when it ends.
    pub fn spawn(
        &self,
        broker: SocketAddr,
        manifest: &Path,
        extra: &[&str],
        log: &Path,
    ) -> Result<Proc> {
        let mut args = vec!["sim".to_string()];
        args.extend(self.fleet_args());
        args.extend([
            "--broker".into(),
            format!("mqtt://{broker}"),
            "--intervals".into(),
            self.intervals.to_string(),
            "--manifest".into(),
            manifest.display().to_string(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn("sim", &groundtruth_bin()?, &args, log)
    }

    /// Runs the fleet to completion and returns its manifest.
    pub fn run(&self, broker: SocketAddr, dir: &Path, extra: &[&str]) -> Result<Manifest> {
        let manifest = dir.join("manifest.json");
        let log = dir.join("sim.log");
        let mut p = self.spawn(broker, &manifest, extra, &log)?;
        let until = Instant::now() + Duration::from_secs(300);
        while p.is_running() {
            if Instant::now() > until {
                bail!("sim did not finish; see {}", log.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Manifest::read(&manifest).with_context(|| format!("sim failed; see {}", log.display()))
    }
}

/// What the simulator says a validator must end up with.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Messages published.
    pub messages: u64,
    /// Expected outcome counts by label.
    pub expected: BTreeMap<String, u64>,
    /// Sorted `device:seq` of the readings that must be accepted.
    pub accepted: Vec<String>,
}

impl Manifest {
    /// Reads `groundtruth sim --manifest` output.
    pub fn read(path: &Path) -> Result<Self> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let messages = v["messages"].as_u64().context("messages")?;
        let expected = v["expected"]
            .as_object()
            .context("expected")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
            .collect();
        let accepted = v["accepted"]
            .as_array()
            .context("accepted")?
            .iter()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        Ok(Self {
            messages,
            expected,
            accepted,
        })
    }
}

/// A Mosquitto broker process (installed by `scripts/setup.sh`).
pub struct Mosquitto {
    /// The process.
    pub proc: Proc,
    /// Its address.
    pub addr: SocketAddr,
}

impl Mosquitto {
    /// Path of the mosquitto binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        [
            "/usr/sbin/mosquitto",
            "/usr/bin/mosquitto",
            "/usr/local/sbin/mosquitto",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    }

    /// Starts Mosquitto on a free port with settings that never drop QoS 1 messages queued
    /// for a persistent subscriber (Mosquitto drops beyond 1000 by default).
    pub fn start(dir: &Path) -> Result<Self> {
        let bin = Self::binary().context("mosquitto is not installed: run scripts/setup.sh")?;
        let addr = free_addr();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 1000\nmessage_size_limit 1024\npersistence false\n",
                addr.port()
            ),
        )?;
        let proc = Proc::spawn(
            "mosquitto",
            &bin,
            &["-c".into(), conf.display().to_string()],
            &dir.join("mosquitto.log"),
        )?;
        wait_listening(addr, Duration::from_secs(10))?;
        Ok(Self { proc, addr })
    }
}

/// A standalone `groundtruth broker` (rumqttd) process.
pub fn start_rumqttd(dir: &Path) -> Result<(Proc, SocketAddr)> {
    let addr = free_addr();
    let p = Proc::spawn(
        "broker",
        &groundtruth_bin()?,
        &["broker".into(), "--listen".into(), addr.to_string()],
        &dir.join("broker.log"),
    )?;
    wait_listening(addr, Duration::from_secs(10))?;
    Ok((p, addr))
}
