//! Multi-validator ledger networks: `groundtruth node` processes with `[consensus]` enabled on
//! loopback, each with its own data directory, and a small blocking client for their API.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{free_addr, groundtruth_bin, wait_listening, Proc};

/// `configs/genesis.toml` (4 validators: operators seeds 10..13, consensus keys 40..43).
pub fn devnet_genesis_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/genesis.toml")
}

/// The devnet genesis with `epoch_length` replaced.
pub fn devnet_genesis(epoch_length: u64) -> Result<String> {
    let text = std::fs::read_to_string(devnet_genesis_path())?;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("epoch_length") {
            out.push_str(&format!("epoch_length = {epoch_length}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

/// Writes a `groundtruth keygen`-format key file for the seed, owner-only.
pub fn write_key_file(path: &Path, seed: [u8; 32]) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let key = groundtruth_device_sdk::DeviceKey::from_seed(&seed);
    std::fs::write(path, groundtruth_device_sdk::keys::encode_key_file(&key))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// One HTTP/1.1 request (`Connection: close`); returns status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let status = std::str::from_utf8(&raw[..split])?
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    if std::str::from_utf8(&raw[..split])?
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("chunked responses are not supported by this client");
    }
    Ok((status, raw[split + 4..].to_vec()))
}

/// GET returning JSON (any status).
pub fn get_json(addr: SocketAddr, path: &str) -> Result<(u16, Value)> {
    let (status, body) = http(addr, "GET", path, &[])?;
    Ok((status, serde_json::from_slice(&body)?))
}

/// A validator process.
pub struct Validator {
    /// The process.
    pub proc: Proc,
    /// HTTP API (and metrics) address.
    pub api: SocketAddr,
    /// Its embedded MQTT broker, which its ingest subscribes to.
    pub broker: SocketAddr,
    /// Its directory (config, keys, data, logs).
    pub dir: PathBuf,
    config: PathBuf,
    starts: u32,
}

impl Validator {
    /// (Re)starts the process on the same data directory and waits for its API.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.kill9();
        self.starts += 1;
        let log = self.dir.join(format!("node-{}.log", self.starts));
        let args = vec![
            "node".to_string(),
            "--config".into(),
            self.config.display().to_string(),
        ];
        self.proc = Proc::spawn("validator", &groundtruth_bin()?, &args, &log)?;
        wait_listening(self.api, Duration::from_secs(30))
            .with_context(|| format!("validator did not start; see {}", log.display()))
    }

    /// `GET /status`.
    pub fn status(&self) -> Result<Value> {
        Ok(get_json(self.api, "/status")?.1)
    }

    /// Committed height (0 when unreachable).
    pub fn height(&self) -> u64 {
        self.status()
            .ok()
            .and_then(|s| s["height"].as_u64())
            .unwrap_or(0)
    }
}

/// Tuning of a test network.
#[derive(Debug, Clone)]
pub struct NetOptions {
    /// Minimum block interval.
    pub block_time: &'static str,
    /// Mempool capacity per node.
    pub mempool_max_txs: usize,
}

impl Default for NetOptions {
    fn default() -> Self {
        Self {
            block_time: "300ms",
            mempool_max_txs: 50_000,
        }
    }
}

/// `n` validators (devnet keys: consensus seeds 40+i, operators 10+i) sharing `genesis`.
pub struct LedgerNet {
    /// The validators.
    pub validators: Vec<Validator>,
    /// The genesis file they share.
    pub genesis: PathBuf,
}

impl LedgerNet {
    /// Writes configs and keys under `dir` and starts every validator.
    pub fn start(dir: &Path, genesis_text: &str, n: usize, opts: &NetOptions) -> Result<Self> {
        let genesis = dir.join("genesis.toml");
        std::fs::write(&genesis, genesis_text)?;
        let consensus: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
        let apis: Vec<SocketAddr> = (0..n).map(|_| free_addr()).collect();
        let mut validators = Vec::new();
        for i in 0..n {
            let vdir = dir.join(format!("v{i}"));
            std::fs::create_dir_all(&vdir)?;
            let seed = u8::try_from(i).context("too many validators")?;
            write_key_file(&vdir.join("consensus.key"), [40 + seed; 32])?;
            write_key_file(&vdir.join("operator.key"), [10 + seed; 32])?;
            let broker = free_addr();
            let list = |v: &[SocketAddr]| {
                v.iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, a)| format!("\"{a}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let config = format!(
                r#"[node]
name = "v{i}"
data_dir = "{data}"
genesis = "{genesis}"

[mqtt]
embedded = true
listen = "{broker}"
url = "mqtt://{broker}"

[metrics]
listen = "{api}"

[consensus]
enabled = true
listen = "/ip4/127.0.0.1/tcp/{cport}"
peers = [{peers}]
http_peers = [{http_peers}]
key_file = "{ckey}"
operator_key_file = "{okey}"
block_time = "{block_time}"
mempool_max_txs = {mempool}
"#,
                data = vdir.join("data").display(),
                genesis = genesis.display(),
                api = apis[i],
                cport = consensus[i].port(),
                peers = list(&consensus),
                http_peers = list(&apis),
                ckey = vdir.join("consensus.key").display(),
                okey = vdir.join("operator.key").display(),
                block_time = opts.block_time,
                mempool = opts.mempool_max_txs,
            );
            let config_path = vdir.join("node.toml");
            std::fs::write(&config_path, config)?;
            let mut v = Validator {
                proc: Proc::spawn(
                    "placeholder",
                    Path::new("/bin/true"),
                    &[],
                    &vdir.join("placeholder.log"),
                )?,
                api: apis[i],
                broker,
                dir: vdir,
                config: config_path,
                starts: 0,
            };
            v.restart()?;
            validators.push(v);
        }
        Ok(Self {
            validators,
            genesis,
        })
    }

    /// Waits until every validator in `which` has committed `height`.
    pub fn wait_height(&self, which: &[usize], height: u64, timeout: Duration) -> Result<()> {
        let until = Instant::now() + timeout;
        loop {
            let heights: Vec<u64> = which.iter().map(|i| self.validators[*i].height()).collect();
            if heights.iter().all(|h| *h >= height) {
                return Ok(());
            }
            if Instant::now() > until {
                bail!("validators {which:?} at heights {heights:?}, wanted {height} within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until `check` holds on `GET path` of every validator in `which`.
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
                .map(|i| get_json(self.validators[*i].api, path).ok().map(|(_, v)| v))
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

    /// The state root every validator in `which` reports for block `height` (they must agree).
    pub fn agreed_root(&self, which: &[usize], height: u64) -> Result<String> {
        let mut roots = Vec::new();
        for i in which {
            let (code, b) = get_json(self.validators[*i].api, &format!("/block/{height}"))?;
            if code != 200 {
                bail!("validator {i} has no block {height}: {b}");
            }
            roots.push(b["state_root"].as_str().unwrap_or_default().to_string());
        }
        if roots.windows(2).any(|w| w[0] != w[1]) {
            bail!("validators {which:?} disagree on the root at height {height}: {roots:?}");
        }
        Ok(roots.pop().unwrap_or_default())
    }
}
