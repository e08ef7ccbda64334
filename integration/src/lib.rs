//! Multi-process test harness and benchmark harness: one builder, [`TestNet::builder`], starts
//! real `groundtruth` processes (validators with or without consensus, an embedded rumqttd,
//! Mosquitto or a standalone broker, simulated fleets), writes each validator's config by
//! serialising the node's typed [`groundtruth_node::config::NodeConfig`], and hands out
//! handles to kill, restart and inspect them (API, metrics, data directory, `/proc`).
//!
//! Tests find the `groundtruth` binary next to their own executable (`target/<profile>/`), or
//! at `$GROUNDTRUTH_BIN`; build it first (`cargo build --bin groundtruth`), as `scripts/test.sh`
//! does. This crate must not be a dependency of anything but its own tests and benches.

mod api;
mod fleet;
mod genesis;
mod l1;
mod ledger_tx;
pub mod mqtt;
mod net;
mod netns;
mod proc;
mod providers;

pub use api::{Api, Metrics, Response};
pub use fleet::{DeviceTotal, FleetSpec, Manifest, MeteredKind};
pub use genesis::{devnet_genesis_path, seed_address, Genesis};
pub use l1::{l1_unavailable, AnchoredLog, L1};
pub use ledger_tx::{address_of, operator_key};
pub use net::{Broker, Node, TestNet, TestNetBuilder};
pub use netns::Netns;
pub use proc::{interrupt, Proc};
pub use providers::{
    provider_listen_addrs, spawn_provider, ProviderAgent, ProviderKindSpec, ProviderSpec,
};

use anyhow::{bail, Context, Result};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Path of the `groundtruth` binary.
pub fn groundtruth_bin() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("GROUNDTRUTH_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // Tests live in target/<profile>/deps/, binaries such as the benches in target/<profile>/.
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

/// What a `groundtruth` command printed.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Both, for messages.
    pub text: String,
}

/// Runs `groundtruth args` to completion.
pub fn groundtruth(args: &[String]) -> Result<CliOutput> {
    let out = std::process::Command::new(groundtruth_bin()?)
        .args(args)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Ok(CliOutput {
        ok: out.status.success(),
        text: format!("{stdout}{stderr}"),
        stdout,
        stderr,
    })
}

/// A loopback address with a port that was free a moment ago.
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// `n` distinct loopback addresses with ports that were free a moment ago. The listeners are
/// held until all `n` are taken: ports taken one at a time and released at once can come back
/// twice (two validators were once handed the same port for a broker and a p2p listener).
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> = (0..n)
        .filter_map(|_| TcpListener::bind("127.0.0.1:0").ok())
        .collect();
    listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect()
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

/// The seed of a randomised scenario: `GROUNDTRUTH_FAULT_SEED`, else the clock; printed.
pub fn fault_seed(what: &str) -> u64 {
    let seed = std::env::var("GROUNDTRUTH_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("{what}: seed {seed} (GROUNDTRUTH_FAULT_SEED={seed} replays it)");
    seed
}

/// Writes a `groundtruth keygen`-format key file for the seed, owner-only.
pub fn write_key_file(path: &Path, seed: [u8; 32]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let key = groundtruth_device_sdk::DeviceKey::from_seed(&seed);
    std::fs::write(path, groundtruth_device_sdk::keys::encode_key_file(&key))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}
