//! Fault injection against real `groundtruth node` processes (issue 12, point 2). Each scenario
//! asserts what was preserved, not only that nothing crashed:
//!
//! * a validator whose data directory fills up while it runs (a small tmpfs, so root only)
//!   stops with a clear storage error instead of running without persisting, does not panic,
//!   keeps refusing to run while the disk stays full, and once space is back still holds every
//!   reading it had counted as accepted and catches up with the chain the others kept building.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_device_sdk::{topics, DeviceKey};
use groundtruth_integration::mqtt::{energy_frames, publish_all};
use groundtruth_integration::{Broker, Genesis, Node, TestNet};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ALL: [usize; 4] = [0, 1, 2, 3];
/// Registered capacity (W) of the test devices: 100 Wh per 300 s interval fits.
const CAPACITY: u64 = 5000;

/// Whether this process runs as root (mounts and network namespaces need it).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next().map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// A tmpfs of a fixed size mounted for one test, unmounted (lazily) on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `size_mib` tmpfs on a fresh directory (root only).
    fn mount(size_mib: u64) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m,mode=0755")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .context("running mount")?;
        ensure!(
            out.status.success(),
            "mount -t tmpfs failed as root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system: writes `filler` until the kernel says there is no space left.
    fn fill(&self) -> Result<PathBuf> {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0xA5u8; 1 << 20];
        loop {
            if let Err(e) = f.write_all(&chunk).and_then(|()| f.sync_all()) {
                ensure!(
                    e.raw_os_error() == Some(28),
                    "filling the tmpfs failed with {e}, not ENOSPC"
                );
                return Ok(path);
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The log of a node's latest start.
fn log_of(node: &Node) -> String {
    std::fs::read_to_string(node.log_path()).unwrap_or_default()
}

/// Every `device:seq` of `key`'s readings `0..n`, as `groundtruth store accepted` prints them.
fn expected_set(key: &DeviceKey, n: u64) -> BTreeSet<String> {
    (0..n).map(|s| format!("{}:{s}", key.device_id())).collect()
}

/// Waits up to `timeout` for the node's process to exit; its log, or an error if it still runs.
fn wait_exit_nonzero(node: &mut Node, timeout: Duration, what: &str) -> Result<String> {
    let status = node
        .proc_mut()?
        .wait_exit(timeout)
        .with_context(|| format!("{what}: the node kept running on a full data directory"))?;
    let log = log_of(node);
    ensure!(
        !status.success(),
        "{what}: the node exited 0 on a full data directory; log:\n{log}"
    );
    ensure!(
        !log.contains("panicked"),
        "{what}: the node panicked instead of stopping with an error; log:\n{log}"
    );
    Ok(log)
}

/// A validator whose data directory (a small tmpfs) fills up while a device publishes to its
/// broker and the ledger runs: it stops with a storage error (non-zero exit, no panic), refuses
/// to run again while the disk is still full, and after space is freed it restarts holding
/// every reading it had counted as accepted, takes the rest again from the device, and catches
/// up with the three validators that kept finalizing meanwhile.
///
/// Needs root (it mounts a tmpfs); elsewhere it says so and returns. File modes cannot stand
/// in: a running node keeps its sled files open, and a directory made read-only does not stop
/// writes to open files (a read-only directory at start-up is covered by the acceptance test).
#[test]
fn a_full_data_directory_stops_the_validator_and_loses_nothing_it_accepted() -> Result<()> {
    const FULL: usize = 3;
    const FIRST: u64 = 40;
    const TOTAL: u64 = 400;
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root (CI runs as root)");
        return Ok(());
    }
    let key = DeviceKey::from_seed(&[90; 32]);
    // Large enough for the node's four sled databases to start, small enough to fill at once.
    let fs = Tmpfs::mount(96)?;
    let data = fs.path().join("data");
    let mut net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .broker(Broker::EmbeddedInEach)
        .genesis(
            Genesis::devnet()?
                .epoch_length(1000)
                .energy_device(&key, CAPACITY),
        )
        .configure(move |i, cfg| {
            if i == FULL {
                cfg.node.data_dir = data.clone();
            }
        })
        .build()?;
    net.wait_height(&ALL, 2, Duration::from_secs(40))?;
    let topic = topics::readings_topic(&key.device_id());
    let frames = energy_frames(&key, 0, TOTAL);
    let broker = net.node(FULL).broker();
    publish_all(broker, &topic, &frames[..FIRST as usize])?;
    net.node(FULL).wait_stored(FIRST, Duration::from_secs(20))?;

    // The disk fills up; the device keeps publishing. Every reading the node counts as
    // accepted from here on must survive too: the highest count it showed is the promise.
    let filler = fs.fill()?;
    let majority_before = net.node(0).height();
    let mut promised = FIRST;
    let mut next = FIRST as usize;
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(m) = net.node(FULL).metrics() {
            promised = promised.max(m.get("groundtruth_ingest_stored_accepted") as u64);
        }
        if net.node_mut(FULL).proc_mut()?.try_exit().is_some() {
            break;
        }
        if Instant::now() > until {
            bail!(
                "the validator kept running on a full disk for 60 s; log tail:\n{}",
                net.node(FULL).proc()?.log_tail(20)
            );
        }
        if next < TOTAL as usize {
            let end = (next + 20).min(TOTAL as usize);
            // The broker dies with the node: publishes may fail, which is what a device sees.
            let _ = publish_all(broker, &topic, &frames[next..end]);
            next = end;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = wait_exit_nonzero(net.node_mut(FULL), Duration::from_secs(1), "while running")?;
    ensure!(
        log.contains("storage failed") || log.contains("No space left on device"),
        "the validator stopped without saying its storage failed; log:\n{log}"
    );
    eprintln!("validator {FULL} stopped on the full disk having accepted {promised} readings");

    // A supervisor restarting it while the disk is still full gets the same clean stop.
    net.node_mut(FULL).restart_no_wait()?;
    wait_exit_nonzero(
        net.node_mut(FULL),
        Duration::from_secs(60),
        "restart on a full disk",
    )?;

    // Meanwhile the other three (3/4 of the stake) kept finalizing.
    net.wait_height(&[0, 1, 2], majority_before + 3, Duration::from_secs(30))?;

    // Space comes back. Before the node runs again, its store (read offline) holds every
    // reading it had counted as accepted: one device publishing in order, so seqs 0..promised.
    std::fs::remove_file(&filler)?;
    let held: BTreeSet<String> = net
        .node_mut(FULL)
        .stop_and_list_accepted()?
        .into_iter()
        .collect();
    let lost: Vec<String> = expected_set(&key, promised)
        .difference(&held)
        .cloned()
        .collect();
    ensure!(
        lost.is_empty(),
        "the validator had accepted {promised} readings before its disk filled; lost after it: {lost:?}"
    );
    net.node_mut(FULL).restart()?;
    // The device's durable queue delivers the rest (here: everything again; duplicates).
    publish_all(broker, &topic, &frames)?;
    net.node(FULL).wait_stored(TOTAL, Duration::from_secs(30))?;

    // It catches up with the chain and agrees with the others on the state.
    let h = net.node(0).height();
    net.wait_height(&ALL, h, Duration::from_secs(60))?;
    net.agreed_root(&ALL, h)?;

    let listed: BTreeSet<String> = net
        .node_mut(FULL)
        .stop_and_list_accepted()?
        .into_iter()
        .collect();
    ensure!(
        listed == expected_set(&key, TOTAL),
        "the store holds {} accepted readings, want exactly seqs 0..{TOTAL} of the device",
        listed.len()
    );
    Ok(())
}
