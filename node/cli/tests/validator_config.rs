//! `configs/validator.toml` starts a node as shipped, with only its peers' hosts replaced by
//! loopback (and, through the documented `GROUNDTRUTH__SECTION__KEY` overrides, local paths and
//! ports); and a node refuses the devnet chain id and keys unless started with `--devnet`.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shipped file with its hosts pointed at loopback, plus local overrides.
fn start(dir: &Path, devnet: bool, api: SocketAddr) -> Child {
    let shipped = std::fs::read_to_string(repo().join("configs/validator.toml")).unwrap();
    let config = shipped
        .replace("validator-2.internal", "localhost")
        .replace("validator-3.internal", "localhost")
        .replace("validator-4.internal", "localhost")
        .replace("broker.internal", "127.0.0.1");
    let path = dir.join("validator.toml");
    std::fs::write(&path, config).unwrap();
    // Validator 1 of the devnet genesis: consensus seed 41, operator seed 11.
    for (file, seed) in [("consensus.key", 41u8), ("operator.key", 11u8)] {
        groundtruth_device_sdk::keys::save(
            &groundtruth_device_sdk::DeviceKey::from_seed(&[seed; 32]),
            &dir.join(file),
        )
        .unwrap();
    }
    let p2p = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_groundtruth"));
    cmd.current_dir(repo())
        .args(["node", "--config"])
        .arg(&path)
        .env("GROUNDTRUTH__NODE__DATA_DIR", dir.join("data"))
        .env("GROUNDTRUTH__METRICS__LISTEN", api.to_string())
        .env(
            "GROUNDTRUTH__CONSENSUS__LISTEN",
            format!("/ip4/127.0.0.1/tcp/{}", p2p.port()),
        )
        .env(
            "GROUNDTRUTH__CONSENSUS__KEY_FILE",
            dir.join("consensus.key"),
        )
        .env(
            "GROUNDTRUTH__CONSENSUS__OPERATOR_KEY_FILE",
            dir.join("operator.key"),
        )
        .env("GROUNDTRUTH__CONSENSUS__HOME", dir.join("consensus"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if devnet {
        cmd.arg("--devnet");
    }
    cmd.spawn().unwrap()
}

#[test]
fn the_shipped_validator_config_starts_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_addr();
    let mut node = Killed(start(dir.path(), true, api));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = node.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("the node exited ({status}) instead of starting:\n{err}");
        }
        if TcpStream::connect(api).is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the node never served its API on {api}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        node.0.try_wait().unwrap().is_none(),
        "the node stopped after starting"
    );
}

#[test]
fn devnet_identity_is_refused_without_the_devnet_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = Killed(start(dir.path(), false, free_addr()));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = node.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the node kept running with devnet keys"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success());
    let mut err = String::new();
    node.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("devnet"), "{err}");
}
