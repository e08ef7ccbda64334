//! A local Ethereum node: the `anvil` binary that `scripts/setup.sh` installs from the npm
//! registry (`@foundry-rs/anvil`), started on a free loopback port and killed when dropped.
//!
//! The binary is `$GROUNDTRUTH_ANVIL` when set, else `<workspace>/.tools/bin/anvil`.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use alloy::primitives::B256;
use alloy::signers::local::PrivateKeySigner;

use crate::error::{Error, Result};

/// Environment variable naming the anvil binary.
pub const ANVIL_ENV: &str = "GROUNDTRUTH_ANVIL";

/// Private keys of anvil's first funded development accounts (its default mnemonic). Public
/// knowledge: use them only on a local node.
const DEV_KEYS: [&str; 3] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];

/// The chain id the local node runs with.
pub const CHAIN_ID: u64 = 31337;

/// Where the anvil binary is expected: `$GROUNDTRUTH_ANVIL`, else the project-local path that
/// `scripts/setup.sh` links.
pub fn binary_path() -> PathBuf {
    match std::env::var_os(ANVIL_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(".tools")
            .join("bin")
            .join("anvil"),
    }
}

/// Whether the anvil binary is where [`binary_path`] says.
pub fn is_installed() -> bool {
    binary_path().is_file()
}

/// One funded development key of the local node (`index` < 3).
pub fn dev_key(index: usize) -> Result<PrivateKeySigner> {
    let hex = DEV_KEYS
        .get(index)
        .ok_or_else(|| Error::Anvil(format!("no dev key {index}")))?;
    let bytes: B256 = hex
        .parse()
        .map_err(|e| Error::Anvil(format!("dev key: {e}")))?;
    PrivateKeySigner::from_bytes(&bytes).map_err(|e| Error::Anvil(format!("dev key: {e}")))
}

/// A free loopback TCP port (free when asked; another process may take it before it is used).
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::Anvil(format!("free port: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Anvil(format!("free port: {e}")))
}

/// Sends `wei` from anvil's first funded development account to `to` and waits for the
/// receipt (devnet and tests: fund validators' L1 keys so they can post).
pub async fn fund(rpc_url: &str, to: alloy::primitives::Address, wei: u128) -> Result<()> {
    use alloy::network::TransactionBuilder;
    use alloy::providers::Provider;
    let provider = crate::client::provider_for(rpc_url, dev_key(0)?)?;
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_to(to)
        .with_value(alloy::primitives::U256::from(wei));
    provider
        .send_transaction(tx)
        .await
        .map_err(|e| Error::Anvil(format!("funding {to}: {e}")))?
        .get_receipt()
        .await
        .map_err(|e| Error::Anvil(format!("funding {to}: {e}")))?;
    Ok(())
}

/// A running anvil process, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    port: u16,
    /// Stopped with SIGINT (so it writes its state file) before it is killed.
    keeps_state: bool,
}

impl Anvil {
    /// Starts anvil on a free port (instant mining) and waits until it accepts connections.
    pub fn spawn() -> Result<Self> {
        // Another process may grab the port between the probe and anvil's bind: try a few.
        let mut last = Error::Anvil("not started".into());
        for _ in 0..3 {
            match Self::spawn_on(free_port()?) {
                Ok(a) => return Ok(a),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Starts anvil on `port` and waits until it accepts connections.
    pub fn spawn_on(port: u16) -> Result<Self> {
        Self::spawn_with(port, &[])
    }

    /// Starts anvil on `port` with `extra` arguments (e.g. `["--block-time", "1"]`, so blocks
    /// keep coming and confirmations accrue) and waits until it accepts connections.
    pub fn spawn_with(port: u16, extra: &[&str]) -> Result<Self> {
        Self::start(port, extra, false)
    }

    /// Starts anvil on `port` with its chain kept in `state_file`: loaded from it when it
    /// exists, written to it every 2 s and when it stops (dropping it stops it with SIGINT and
    /// waits up to 10 s for the last write). A devnet restarted on the same file finds its
    /// contract and anchors again.
    pub fn spawn_with_state(port: u16, state_file: &Path, extra: &[&str]) -> Result<Self> {
        let state = state_file.display().to_string();
        let mut args = vec!["--state", state.as_str(), "--state-interval", "2"];
        args.extend_from_slice(extra);
        Self::start(port, &args, true)
    }

    fn start(port: u16, extra: &[&str], keeps_state: bool) -> Result<Self> {
        let bin = binary_path();
        if !bin.is_file() {
            return Err(Error::Anvil(format!(
                "{} not found: run scripts/setup.sh or set {ANVIL_ENV}",
                bin.display()
            )));
        }
        let child = Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--chain-id",
                &CHAIN_ID.to_string(),
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Anvil(format!("starting {}: {e}", bin.display())))?;
        let mut anvil = Anvil {
            child,
            port,
            keeps_state,
        };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                tracing::debug!(target: "oracle::anvil", port, "anvil ready");
                return Ok(anvil);
            }
            if let Ok(Some(status)) = anvil.child.try_wait() {
                return Err(Error::Anvil(format!(
                    "exited before listening on {port}: {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Anvil(format!("not listening on {port} after 20 s")));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its JSON-RPC URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        if self.keeps_state && matches!(self.child.try_wait(), Ok(None)) {
            // SIGINT makes anvil write its state file and exit.
            let interrupted = Command::new("kill")
                .args(["-s", "INT", &self.child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            let deadline = Instant::now() + Duration::from_secs(10);
            while interrupted && Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
