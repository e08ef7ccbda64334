//! [`TestNet`]: validators, a broker and a fleet as real processes, built with
//! [`TestNet::builder`]. Each validator's config is a serialised
//! [`groundtruth_node::config::NodeConfig`].
//!
//! ```no_run
//! # use groundtruth_integration::{TestNet, Broker, Genesis};
//! # fn main() -> anyhow::Result<()> {
//! let net = TestNet::builder()
//!     .validators(4)
//!     .consensus(true)
//!     .genesis(Genesis::devnet()?.epoch_length(10))
//!     .broker(Broker::EmbeddedInEach)
//!     .build()?;
//! net.wait_height(&[0, 1, 2, 3], 3, std::time::Duration::from_secs(40))?;
//! # Ok(()) }
//! ```

use anyhow::{bail, ensure, Context, Result};
use groundtruth_node::config::NodeConfig;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::api::{Api, Metrics};
use crate::fleet::{FleetSpec, Manifest};
use crate::genesis::Genesis;
use crate::l1::L1;
use crate::netns::Netns;
use crate::proc::Proc;
use crate::{free_addr, free_addrs, groundtruth, groundtruth_bin, wait_listening, write_key_file};

/// How long a process may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where devices publish and validators read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    /// Validator `k` embeds rumqttd; every validator subscribes to it.
    EmbeddedIn(usize),
    /// Every validator embeds its own broker and reads only from it.
    EmbeddedInEach,
    /// An external Mosquitto (installed by `scripts/setup.sh`); every validator subscribes.
    Mosquitto,
    /// A standalone `groundtruth broker` (rumqttd) process; every validator subscribes.
    Standalone,
}

type Configure = Box<dyn Fn(usize, &mut NodeConfig)>;

/// Options of a [`TestNet`]; see [`TestNet::builder`].
pub struct TestNetBuilder {
    validators: usize,
    consensus: bool,
    broker: Broker,
    genesis: Option<Genesis>,
    fleet: Option<FleetSpec>,
    block_time: Duration,
    mempool_max_txs: usize,
    env: Vec<(String, String)>,
    run_as: Option<(u32, u32)>,
    node_env: Vec<(usize, String, String)>,
    netns: bool,
    configure: Vec<Configure>,
    l1: bool,
}

impl std::fmt::Debug for TestNetBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNetBuilder")
            .field("validators", &self.validators)
            .field("consensus", &self.consensus)
            .field("broker", &self.broker)
            .field("fleet", &self.fleet)
            .finish_non_exhaustive()
    }
}

impl Default for TestNetBuilder {
    fn default() -> Self {
        Self {
            validators: 1,
            consensus: false,
            broker: Broker::EmbeddedInEach,
            genesis: None,
            fleet: None,
            block_time: Duration::from_millis(300),
            mempool_max_txs: 50_000,
            env: Vec::new(),
            run_as: None,
            node_env: Vec::new(),
            netns: false,
            configure: Vec::new(),
            l1: false,
        }
    }
}

impl TestNetBuilder {
    /// Number of validators (default 1). With consensus and the devnet genesis, at most 4
    /// (devnet keys: consensus seed 40+i, operator seed 10+i).
    pub fn validators(mut self, n: usize) -> Self {
        self.validators = n;
        self
    }

    /// Run the replicated ledger (default off: ingest against the genesis registry only).
    pub fn consensus(mut self, on: bool) -> Self {
        self.consensus = on;
        self
    }

    /// Broker layout (default [`Broker::EmbeddedInEach`]).
    pub fn broker(mut self, broker: Broker) -> Self {
        self.broker = broker;
        self
    }

    /// Genesis. Default: the fleet's (`groundtruth sim --write-genesis`) when a fleet is set,
    /// else the devnet genesis. With consensus, only the first `validators` of its
    /// `[[validators]]` are kept, so the started validators hold all the stake.
    pub fn genesis(mut self, genesis: Genesis) -> Self {
        self.genesis = Some(genesis);
        self
    }

    /// The simulated fleet ([`TestNet::run_fleet`], [`TestNet::spawn_fleet`]).
    pub fn fleet(mut self, spec: FleetSpec) -> Self {
        self.fleet = Some(spec);
        self
    }

    /// Minimum block interval (default 300 ms).
    pub fn block_time(mut self, t: Duration) -> Self {
        self.block_time = t;
        self
    }

    /// Mempool capacity per validator (default 50,000).
    pub fn mempool_max_txs(mut self, n: usize) -> Self {
        self.mempool_max_txs = n;
        self
    }

    /// An extra environment variable for every validator process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// An extra environment variable for validator `i` only (e.g. `GROUNDTRUTH_BYZANTINE`).
    pub fn node_env(mut self, i: usize, key: &str, value: &str) -> Self {
        self.node_env.push((i, key.into(), value.into()));
        self
    }

    /// Runs the validators as this user and group (through `setpriv`, so the harness must be
    /// root): for tests that need file modes to bind, which they do not for root. Their
    /// directories are handed to that user.
    pub fn run_as(mut self, uid: u32, gid: u32) -> Self {
        self.run_as = Some((uid, gid));
        self
    }

    /// Runs each validator in its own network namespace with its own address, joined by a
    /// bridge ([`Netns`]), so that [`TestNet::isolate`] can partition one off. Needs root and
    /// iproute2 (check [`Netns::unavailable`] first); only with embedded brokers.
    pub fn netns(mut self, on: bool) -> Self {
        self.netns = on;
        self
    }

    /// Runs a real L1 ([`crate::L1`]): anvil with the oracle contract deployed for the
    /// validators' devnet L1 keys (written into the genesis), and every validator's `[oracle]`
    /// service enabled with short polls and failover (needs consensus and anvil, see
    /// [`crate::l1_unavailable`]; not with `netns` or `run_as`).
    pub fn l1(mut self, on: bool) -> Self {
        self.l1 = on;
        self
    }

    /// Edits validator `i`'s config after the builder filled it in.
    pub fn configure(mut self, f: impl Fn(usize, &mut NodeConfig) + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Writes genesis, keys and configs in a fresh temporary directory, starts the broker and
    /// every validator, and waits until each serves its API and its MQTT connections are up.
    pub fn build(self) -> Result<TestNet> {
        ensure!(self.validators > 0, "a network needs a validator");
        if let Broker::EmbeddedIn(k) = self.broker {
            ensure!(k < self.validators, "no validator {k} to embed the broker");
        }
        let dir = tempfile::Builder::new()
            .prefix("groundtruth-it-")
            .tempdir()?;
        let root = dir.path().to_path_buf();
        let prefix: Vec<String> = match self.run_as {
            Some((uid, gid)) => {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))?;
                vec![
                    "setpriv".into(),
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                ]
            }
            None => Vec::new(),
        };

        let genesis_path = root.join("genesis.toml");
        match (&self.genesis, &self.fleet) {
            (Some(g), _) => {
                let mut g = g.clone();
                if self.consensus {
                    ensure!(
                        g.validator_count() >= self.validators,
                        "genesis has {} validators, {} requested",
                        g.validator_count(),
                        self.validators
                    );
                    g = g.first_validators(self.validators);
                }
                std::fs::write(&genesis_path, g.to_toml()?)?;
            }
            (None, Some(fleet)) => fleet.write_genesis(&genesis_path)?,
            (None, None) => {
                let g = Genesis::devnet()?.first_validators(self.validators);
                std::fs::write(&genesis_path, g.to_toml()?)?;
            }
        }

        // The L1 (before any validator starts: they read its contract from their config).
        let l1 = if self.l1 {
            ensure!(
                self.consensus && self.run_as.is_none() && !self.netns,
                "an L1 needs consensus, and neither run_as nor netns"
            );
            let dirs: Vec<PathBuf> = (0..self.validators)
                .map(|i| root.join(format!("v{i}")))
                .collect();
            for d in &dirs {
                std::fs::create_dir_all(d)?;
            }
            Some(L1::start(&genesis_path, &dirs)?)
        } else {
            None
        };

        let (external, broker_proc) = match self.broker {
            Broker::Mosquitto => {
                let (p, a) = start_mosquitto(&root)?;
                (Some(a), Some(p))
            }
            Broker::Standalone => {
                let (p, a) = start_standalone_broker(&root)?;
                (Some(a), Some(p))
            }
            Broker::EmbeddedIn(_) | Broker::EmbeddedInEach => (None, None),
        };

        let n = self.validators;
        let netns = if self.netns {
            ensure!(
                matches!(self.broker, Broker::EmbeddedIn(_) | Broker::EmbeddedInEach),
                "validators in namespaces need an embedded broker"
            );
            ensure!(self.run_as.is_none(), "run_as and netns do not combine");
            Some(Netns::create(n)?)
        } else {
            None
        };
        // Validator i's address: loopback, or its namespace's.
        let host = |i: usize| {
            netns
                .as_ref()
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |ns| ns.addr(i))
        };
        // All ports at once, so that no two are the same.
        let ports = free_addrs(4 * n);
        ensure!(ports.len() == 4 * n, "could not find {} free ports", 4 * n);
        let on_host = |k: usize| -> Vec<SocketAddr> {
            (0..n)
                .map(|i| SocketAddr::new(host(i), ports[k * n + i].port()))
                .collect()
        };
        let apis: Vec<SocketAddr> = on_host(0);
        let p2p: Vec<SocketAddr> = on_host(1);
        // Embedded brokers stay on loopback (inside each namespace with netns: the node refuses
        // an unauthenticated broker beyond loopback), so with netns a fleet in the test's
        // namespace cannot reach them.
        let embedded: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), ports[2 * n + i].port()))
            .collect();
        // The validators' own swarm (transaction gossip, readings replication and fetch).
        let swarm: Vec<SocketAddr> = on_host(3);
        let multiaddr = |a: &SocketAddr| format!("/ip4/{}/tcp/{}", a.ip(), a.port());
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let vdir = root.join(format!("v{i}"));
            std::fs::create_dir_all(&vdir)?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&vdir, Some(uid), Some(gid))?;
            }
            let (embeds, reads_from) = match self.broker {
                Broker::EmbeddedIn(k) => (i == k, embedded[k]),
                Broker::EmbeddedInEach => (true, embedded[i]),
                Broker::Mosquitto | Broker::Standalone => {
                    (false, external.context("external broker")?)
                }
            };
            let mut cfg = NodeConfig::default();
            cfg.node.name = format!("v{i}");
            cfg.node.data_dir = vdir.join("data");
            cfg.node.genesis = genesis_path.clone();
            // Tests run the devnet chain id and keys.
            cfg.node.devnet = true;
            cfg.mqtt.embedded = embeds;
            cfg.mqtt.listen = embedded[i];
            cfg.mqtt.url = format!("mqtt://{reads_from}");
            cfg.metrics.listen = apis[i];
            // Tests want sequence gaps refilled quickly.
            cfg.ingest.resend_interval = Duration::from_millis(300);
            if self.consensus {
                let seed = u8::try_from(i)
                    .ok()
                    .filter(|s| *s < 30)
                    .context("too many validators")?;
                let ckey = vdir.join("consensus.key");
                let okey = vdir.join("operator.key");
                write_key_file(&ckey, [40 + seed; 32])?;
                write_key_file(&okey, [10 + seed; 32])?;
                let others = |v: &[SocketAddr], f: &dyn Fn(&SocketAddr) -> String| {
                    v.iter()
                        .enumerate()
                        .filter(|(j, _)| *j != i)
                        .map(|(_, a)| f(a))
                        .collect::<Vec<_>>()
                };
                let c = &mut cfg.consensus;
                c.enabled = true;
                c.listen = multiaddr(&p2p[i]);
                c.peers = others(&p2p, &multiaddr);
                c.http_peers = others(&apis, &|a| a.to_string());
                c.key_file = ckey;
                c.operator_key_file = Some(okey);
                c.block_time = self.block_time;
                c.mempool_max_txs = self.mempool_max_txs;
                cfg.p2p.listen = multiaddr(&swarm[i]);
                cfg.p2p.bootstrap = others(&swarm, &multiaddr);
                if let Some(l1) = &l1 {
                    cfg.oracle = l1.oracle_section(&vdir, others(&apis, &|a| a.to_string()));
                }
            }
            for f in &self.configure {
                f(i, &mut cfg);
            }
            let config_path = vdir.join("node.toml");
            std::fs::write(&config_path, toml::to_string(&cfg)?)?;
            let mut node = Node {
                index: i,
                proc: None,
                api: Api { addr: apis[i] },
                broker: reads_from,
                embeds,
                dir: vdir,
                config: cfg,
                config_path,
                env: self
                    .env
                    .iter()
                    .cloned()
                    .chain(
                        self.node_env
                            .iter()
                            .filter(|(j, _, _)| *j == i)
                            .map(|(_, k, v)| (k.clone(), v.clone())),
                    )
                    .collect(),
                prefix: netns
                    .as_ref()
                    .map_or_else(|| prefix.clone(), |ns| ns.exec_prefix(i)),
                in_netns: netns.is_some(),
                starts: 0,
            };
            node.spawn()?;
            nodes.push(node);
        }
        let net = TestNet {
            nodes,
            broker: broker_proc,
            broker_addr: external.unwrap_or(match self.broker {
                Broker::EmbeddedIn(k) => embedded[k],
                _ => embedded[0],
            }),
            genesis: genesis_path,
            fleet: self.fleet,
            dir: Some(dir),
            netns,
            l1,
        };
        for node in &net.nodes {
            node.wait_ready()?;
        }
        Ok(net)
    }
}

/// A running network; every process is killed and the directory removed on drop (kept when
/// a test panics or `GROUNDTRUTH_KEEP_TEST_DIRS` is set, with its path printed).
pub struct TestNet {
    nodes: Vec<Node>,
    broker: Option<Proc>,
    broker_addr: SocketAddr,
    genesis: PathBuf,
    fleet: Option<FleetSpec>,
    dir: Option<tempfile::TempDir>,
    // Dropped after the validators (cleared first in `drop`): a namespace outlives its
    // processes.
    netns: Option<Netns>,
    // Stopped after the validators.
    l1: Option<L1>,
}

impl std::fmt::Debug for TestNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNet")
            .field("nodes", &self.nodes)
            .field("broker_addr", &self.broker_addr)
            .field("dir", &self.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        self.nodes.clear();
        self.broker = None;
        if std::thread::panicking() || std::env::var_os("GROUNDTRUTH_KEEP_TEST_DIRS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("test network kept in {}", d.keep().display());
            }
        }
    }
}

impl TestNet {
    /// A builder with defaults: one validator, no consensus, its own embedded broker.
    pub fn builder() -> TestNetBuilder {
        TestNetBuilder::default()
    }

    /// The network's directory (genesis, `v<i>/` per validator, broker and fleet logs).
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map_or(Path::new("/nonexistent"), |d| d.path())
    }

    /// The genesis file every validator reads.
    pub fn genesis_path(&self) -> &Path {
        &self.genesis
    }

    /// Cuts validator `i` off the network (built with [`TestNetBuilder::netns`]).
    pub fn isolate(&self, i: usize) -> Result<()> {
        self.netns
            .as_ref()
            .context("not built with netns(true)")?
            .isolate(i)
    }

    /// Reconnects validator `i` after [`TestNet::isolate`].
    pub fn heal(&self, i: usize) -> Result<()> {
        self.netns
            .as_ref()
            .context("not built with netns(true)")?
            .heal(i)
    }

    /// The L1 (built with [`TestNetBuilder::l1`]).
    pub fn l1(&self) -> Result<&L1> {
        self.l1.as_ref().context("not built with l1(true)")
    }

    /// Validator `i`.
    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }

    /// Validator `i`, to kill or restart.
    pub fn node_mut(&mut self, i: usize) -> &mut Node {
        &mut self.nodes[i]
    }

    /// Every validator.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Where devices and fleets publish: the external broker, the embedding validator's
    /// broker, or validator 0's with [`Broker::EmbeddedInEach`].
    pub fn broker_addr(&self) -> SocketAddr {
        self.broker_addr
    }

    /// The external broker process, if any.
    pub fn broker_proc(&mut self) -> Option<&mut Proc> {
        self.broker.as_mut()
    }

    fn fleet_spec(&self) -> Result<&FleetSpec> {
        self.fleet.as_ref().context("the network has no fleet")
    }

    /// Starts the fleet publishing to [`TestNet::broker_addr`] with extra `groundtruth sim`
    /// flags; its manifest will be at the returned path once it exits.
    pub fn spawn_fleet(&self, extra: &[&str]) -> Result<(Proc, PathBuf)> {
        let manifest = self.dir().join("manifest.json");
        let p = self.fleet_spec()?.spawn(
            self.broker_addr,
            &manifest,
            extra,
            &self.dir().join("sim.log"),
        )?;
        Ok((p, manifest))
    }

    /// Runs the fleet to completion and returns its manifest.
    pub fn run_fleet(&self, extra: &[&str]) -> Result<Manifest> {
        self.fleet_spec()?.run(self.broker_addr, self.dir(), extra)
    }

    /// Waits until every validator in `which` has committed `height`.
    pub fn wait_height(&self, which: &[usize], height: u64, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            let heights: Vec<u64> = which.iter().map(|i| self.nodes[*i].height()).collect();
            if heights.iter().all(|h| *h >= height) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("validators {which:?} at heights {heights:?}, wanted {height} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every validator in `which` has committed `blocks` more than the highest of
    /// them has now: with a quorum among them, they keep finalizing.
    pub fn wait_advance(&self, which: &[usize], blocks: u64, timeout: Duration) -> Result<()> {
        let top = which
            .iter()
            .map(|i| self.nodes[*i].height())
            .max()
            .unwrap_or(0);
        self.wait_height(which, top + blocks, timeout)
    }

    /// Waits until `check` holds on `GET path` of every validator in `which`; their answers.
    pub fn wait_all(
        &self,
        which: &[usize],
        path: &str,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>> {
        let until = Instant::now() + timeout;
        loop {
            let got: Vec<Option<Value>> = which
                .iter()
                .map(|i| self.nodes[*i].api.get_json(path).ok().map(|(_, v)| v))
                .collect();
            if got.iter().all(|v| v.as_ref().is_some_and(&check)) {
                return Ok(got.into_iter().flatten().collect());
            }
            if Instant::now() > until {
                bail!("{path} on {which:?} did not reach the expected value within {timeout:?}; last: {got:?}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until every validator in `which` serves epoch `n` (`GET /v1/epochs/{n}`) with
    /// `check` holding; their answers, in `which` order.
    pub fn wait_epoch(
        &self,
        which: &[usize],
        n: u64,
        timeout: Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Result<Vec<Value>> {
        self.wait_all(which, &format!("/v1/epochs/{n}"), timeout, check)
    }

    /// Waits until every validator in `which` has recorded epoch `n`'s commitment, and checks
    /// that they agree on its digest; their views of the epoch.
    pub fn wait_epoch_committed(
        &self,
        which: &[usize],
        n: u64,
        timeout: Duration,
    ) -> Result<Vec<Value>> {
        let views = self.wait_epoch(which, n, timeout, |v| v["commitment"].is_object())?;
        let digests: Vec<&Value> = views.iter().map(|v| &v["commitment"]["digest"]).collect();
        ensure!(
            digests.windows(2).all(|w| w[0] == w[1]),
            "validators {which:?} disagree on epoch {n}'s commitment: {digests:?}"
        );
        Ok(views)
    }

    /// The state root every validator in `which` reports for block `height` (they must agree).
    pub fn agreed_root(&self, which: &[usize], height: u64) -> Result<String> {
        let mut roots = Vec::new();
        for i in which {
            let (code, b) = self.nodes[*i].api.get_json(&format!("/block/{height}"))?;
            ensure!(code == 200, "validator {i} has no block {height}: {b}");
            roots.push(b["state_root"].as_str().unwrap_or_default().to_string());
        }
        if roots.windows(2).any(|w| w[0] != w[1]) {
            bail!("validators {which:?} disagree on the root at height {height}: {roots:?}");
        }
        Ok(roots.pop().unwrap_or_default())
    }
}

/// One validator process and what a test needs to poke at it.
pub struct Node {
    index: usize,
    proc: Option<Proc>,
    api: Api,
    broker: SocketAddr,
    embeds: bool,
    dir: PathBuf,
    config: NodeConfig,
    config_path: PathBuf,
    env: Vec<(String, String)>,
    prefix: Vec<String>,
    // Runs in its own network namespace (its embedded broker is not reachable from here).
    in_netns: bool,
    starts: u32,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("index", &self.index)
            .field("api", &self.api.addr)
            .field("broker", &self.broker)
            .field("proc", &self.proc)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Its HTTP API (ledger routes, `/metrics`).
    pub fn api(&self) -> Api {
        self.api
    }

    /// The broker it reads from: its embedded one, or the shared one.
    pub fn broker(&self) -> SocketAddr {
        self.broker
    }

    /// Its directory (config, keys, logs); the data directory is [`Node::data_dir`].
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its sled data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.node.data_dir
    }

    /// The config it runs with (as written to its `node.toml`).
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The running (or exited) process.
    pub fn proc(&self) -> Result<&Proc> {
        self.proc.as_ref().context("validator not started")
    }

    /// The process, to wait on it.
    pub fn proc_mut(&mut self) -> Result<&mut Proc> {
        self.proc.as_mut().context("validator not started")
    }

    /// Log file of its latest start.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("node-{}.log", self.starts))
    }

    /// SIGKILL (a power cut for the process).
    pub fn kill9(&mut self) {
        if let Some(p) = &mut self.proc {
            p.kill9();
        }
    }

    fn spawn(&mut self) -> Result<()> {
        self.kill9();
        self.starts += 1;
        let bin = groundtruth_bin()?;
        let mut args: Vec<String> = self.prefix.iter().skip(1).cloned().collect();
        let program = match self.prefix.first() {
            Some(p) => {
                args.push(bin.display().to_string());
                PathBuf::from(p)
            }
            None => bin,
        };
        args.extend([
            "node".to_string(),
            "--config".into(),
            self.config_path.display().to_string(),
        ]);
        self.proc = Some(Proc::spawn(
            &format!("validator {}", self.index),
            &program,
            &args,
            &self.env,
            &self.log_path(),
        )?);
        Ok(())
    }

    /// (Re)starts the process on the same data directory without waiting for it.
    pub fn restart_no_wait(&mut self) -> Result<()> {
        self.spawn()
    }

    /// (Re)starts the process on the same data directory and waits until it is ready.
    pub fn restart(&mut self) -> Result<()> {
        self.spawn()?;
        self.wait_ready()
    }

    fn not_ready(&self, what: &str) -> anyhow::Error {
        let tail = self
            .proc
            .as_ref()
            .map(|p| p.log_tail(15))
            .unwrap_or_default();
        anyhow::anyhow!("validator {}: {what}; log tail:\n{tail}", self.index)
    }

    /// Waits until its API listens, its embedded broker (if any) listens and every MQTT
    /// connection of its ingest is up.
    fn wait_ready(&self) -> Result<()> {
        wait_listening(self.api.addr, READY_TIMEOUT)
            .map_err(|e| self.not_ready(&format!("API not listening: {e}")))?;
        if self.embeds && !self.in_netns {
            wait_listening(self.config.mqtt.listen, READY_TIMEOUT)
                .map_err(|e| self.not_ready(&format!("embedded broker not listening: {e}")))?;
        }
        self.wait_connected(READY_TIMEOUT)
    }

    /// Waits until every MQTT connection of this start is up (its log says so).
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        let want = usize::from(self.config.mqtt.connections.clamp(1, 16));
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
            if log.matches("connected to broker").count() >= want {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(self.not_ready("MQTT connections not up"))
    }

    /// Current metrics.
    pub fn metrics(&self) -> Result<Metrics> {
        self.api.metrics()
    }

    /// Ingest outcome counts (empty when unreachable).
    pub fn outcomes(&self) -> std::collections::BTreeMap<String, u64> {
        self.metrics().map(|m| m.outcomes()).unwrap_or_default()
    }

    /// `GET /status`.
    pub fn status(&self) -> Result<Value> {
        self.api.status()
    }

    /// Accepted readings the node holds, from its metrics (0 when unreachable).
    pub fn stored_accepted(&self) -> u64 {
        self.metrics()
            .map(|m| m.get("groundtruth_ingest_stored_accepted") as u64)
            .unwrap_or(0)
    }

    /// Committed height (0 when unreachable).
    pub fn height(&self) -> u64 {
        self.api.height()
    }

    /// Polls metrics until `done` holds; then lets the committer finish its batch and
    /// returns a fresh scrape.
    pub fn wait_metrics(
        &self,
        timeout: Duration,
        done: impl Fn(&Metrics) -> bool,
    ) -> Result<Metrics> {
        let until = Instant::now() + timeout;
        let mut last = Metrics::default();
        while Instant::now() < until {
            if let Ok(m) = self.metrics() {
                if done(&m) {
                    std::thread::sleep(Duration::from_millis(300));
                    return self.metrics();
                }
                last = m;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(self.not_ready(&format!(
            "timed out after {timeout:?}; last outcomes: {:?}",
            last.outcomes()
        )))
    }

    /// Waits until it has processed `messages` messages since its last start.
    pub fn wait_received(&self, messages: u64, timeout: Duration) -> Result<Metrics> {
        self.wait_metrics(timeout, |m| {
            m.get("groundtruth_ingest_received_total") as u64 >= messages
        })
    }

    /// Waits until its store holds `n` accepted readings.
    pub fn wait_stored(&self, n: u64, timeout: Duration) -> Result<Metrics> {
        self.wait_metrics(timeout, |m| {
            m.get("groundtruth_ingest_stored_accepted") as u64 >= n
        })
    }

    /// Waits until outcome `label` reaches `at_least`; `republish` runs every 2 s meanwhile
    /// (for messages published before a subscription existed).
    pub fn wait_outcome(
        &self,
        label: &str,
        at_least: u64,
        timeout: Duration,
        mut republish: impl FnMut() -> Result<()>,
    ) -> Result<std::collections::BTreeMap<String, u64>> {
        let until = Instant::now() + timeout;
        let mut last_publish = Instant::now();
        loop {
            let m = self.outcomes();
            if m.get(label).copied().unwrap_or(0) >= at_least {
                return Ok(m);
            }
            if Instant::now() > until {
                return Err(self.not_ready(&format!(
                    "{label} did not reach {at_least} within {timeout:?}; outcomes {m:?}"
                )));
            }
            if last_publish.elapsed() > Duration::from_secs(2) {
                republish()?;
                last_publish = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills it and lists `device:seq` of every accepted reading in its store, sorted.
    pub fn stop_and_list_accepted(&mut self) -> Result<Vec<String>> {
        self.kill9();
        let out = groundtruth(&[
            "store".into(),
            "accepted".into(),
            "--data-dir".into(),
            self.data_dir().display().to_string(),
        ])?;
        ensure!(out.ok, "groundtruth store accepted failed: {}", out.stderr);
        let mut v: Vec<String> = out.stdout.lines().map(str::to_string).collect();
        v.sort();
        Ok(v)
    }
}

/// Starts Mosquitto on a free port with settings that never drop QoS 1 messages queued for
/// a persistent subscriber (Mosquitto drops beyond 1000 by default).
fn start_mosquitto(dir: &Path) -> Result<(Proc, SocketAddr)> {
    let bin = [
        "/usr/sbin/mosquitto",
        "/usr/bin/mosquitto",
        "/usr/local/sbin/mosquitto",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
    .context("mosquitto is not installed: run scripts/setup.sh")?;
    let addr = free_addr();
    let conf = dir.join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nmax_inflight_messages 1000\nmessage_size_limit 1024\npersistence false\n",
            addr.port()
        ),
    )?;
    let p = Proc::spawn(
        "mosquitto",
        &bin,
        &["-c".into(), conf.display().to_string()],
        &[],
        &dir.join("mosquitto.log"),
    )?;
    wait_listening(addr, Duration::from_secs(10))?;
    Ok((p, addr))
}

/// Starts a standalone `groundtruth broker` (rumqttd).
fn start_standalone_broker(dir: &Path) -> Result<(Proc, SocketAddr)> {
    let addr = free_addr();
    let p = Proc::spawn(
        "broker",
        &groundtruth_bin()?,
        &["broker".into(), "--listen".into(), addr.to_string()],
        &[],
        &dir.join("broker.log"),
    )?;
    wait_listening(addr, Duration::from_secs(10))?;
    Ok((p, addr))
}
