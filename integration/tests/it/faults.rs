//! Fault injection against real `groundtruth node` processes (issue 12, point 2). Each scenario
//! asserts what was preserved, not only that nothing crashed:
//!
//! * a validator whose data directory fills up while it runs (a small tmpfs, so root only)
//!   stops with a clear storage error instead of running without persisting, does not panic,
//!   keeps refusing to run while the disk stays full, and once space is back still holds every
//!   reading it had counted as accepted and catches up with the chain the others kept building;
//! * hostile MQTT and HTTP input at rate against one validator while an honest device
//!   publishes: the node stays up with bounded memory, every message that reached ingest is
//!   counted under its exact reason, every honest reading is accepted, and every hostile
//!   request gets a 4xx problem+json answer;
//! * `kill -9` of the broker-embedding validator or of a random one at random (seeded) moments
//!   while the ledger runs: the others keep finalizing, no accepted reading and no committed
//!   block is lost, and in the end every validator holds exactly the device's readings and all
//!   agree on the state root.
//!
//! Randomised scenarios print their seed; `GROUNDTRUTH_FAULT_SEED=<seed>` replays one.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_device_sdk::{topics, DeviceKey};
use groundtruth_integration::mqtt::{energy_frames, publish_all};
use groundtruth_integration::{fault_seed, Broker, Genesis, Node, TestNet};
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

/// Sends raw bytes to an HTTP listener and reads the answer: status (0 when the server closed
/// without one), the head (lower-cased) and the body. For requests no client would send.
fn raw_http(addr: std::net::SocketAddr, request: &[u8]) -> Result<(u16, String, Vec<u8>)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(20)))?;
    // The server may answer and close before reading everything (e.g. 413): read anyway.
    let _ = s.write_all(request);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok((0, String::new(), raw));
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, head, raw[split + 4..].to_vec()))
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n").into_bytes()
}

fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: node\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Hostile HTTP requests, each well-formed HTTP so the answer is the API's: malformed JSON and
/// binary bodies, a body far over any limit, bad paths, bad parameters, wrong methods.
fn hostile_requests(rng: &mut impl rand::Rng) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let junk: Vec<u8> = (0..2000).map(|_| rng.gen()).collect();
    for (path, ct, body) in [
        ("/tx", "application/json", b"{\"not\": json".to_vec()),
        ("/tx", "application/octet-stream", junk.clone()),
        (
            "/tx",
            "application/json",
            b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".to_vec(),
        ),
        ("/txs", "application/octet-stream", junk.clone()),
        ("/txs", "application/octet-stream", vec![0xff; 4]),
        (
            "/v1/proofs/verify",
            "application/json",
            b"{\"envelope\": 12}".to_vec(),
        ),
        ("/v1/proofs/verify", "application/json", junk.clone()),
        (
            "/v1/proofs/verify",
            "application/json",
            b"\"\\ud800\"".to_vec(),
        ),
        ("/status", "application/json", b"{}".to_vec()),
        ("/nope", "application/json", b"{}".to_vec()),
    ] {
        out.push((
            format!("POST {path} ({} bytes)", body.len()),
            post(path, ct, &body),
        ));
    }
    // Far over every body limit (the acceptance test checks memory on 8 MiB /txs; here 6 MiB
    // to each write route).
    let huge = vec![b'{'; 6 << 20];
    for path in ["/tx", "/txs", "/v1/proofs/verify"] {
        out.push((
            format!("POST {path} (6 MiB)"),
            post(path, "application/json", &huge),
        ));
    }
    let long = "a".repeat(6000);
    for path in [
        "/block/abc".to_string(),
        "/block/-1".into(),
        "/block/99999999999999999999999".into(),
        "/block/18446744073709551615".into(),
        "/tx/zz".into(),
        format!("/tx/{}", "0".repeat(65)),
        "/state/account/not-hex".into(),
        format!("/state/device/{long}"),
        "/state/device/%00%ff".into(),
        "/v1/devices?limit=-1".into(),
        "/v1/devices?limit=abc&after=zz".into(),
        "/v1/devices?limit=18446744073709551616".into(),
        "/v1/production/devices/xyz".into(),
        "/v1/production/regions/%2e%2e%2f%2e%2e".into(),
        "/v1/production/devices/00?from=abc&to=-5".into(),
        "/v1/certificates/not-an-id".into(),
        "/v1/certificates?device=zz&limit=1000000000".into(),
        "/v1/slashes?offset=-3".into(),
        "/v1/epochs/abc".into(),
        "/v1/epochs/-1".into(),
        "/../../etc/passwd".into(),
        "/metrics/../status".into(),
        format!("/{long}"),
    ] {
        out.push((format!("GET {}", &path[..path.len().min(60)]), get(&path)));
    }
    out
}

/// Hostile input at rate against one validator's embedded broker and API while an honest
/// device keeps publishing to the same broker:
///
/// * random bytes, truncated frames and frames too long to be readings (`malformed`);
/// * frames with forged signatures (`bad_signature`), frames of a device nobody registered
///   (`unknown_device`), another device's frame on the honest device's topic
///   (`topic_mismatch`), and a replay storm of one of the honest device's own frames
///   (`duplicate`, never `rate_limited`);
/// * payloads over `mqtt.max_payload_bytes`: a little over reach ingest (`oversize`); over the
///   broker's packet limit (`ingest::broker::packet_limit`), the broker closes the connection
///   and counts each in `groundtruth_broker_oversized_packets_total`; and raw non-MQTT bytes on
///   the broker port (those whose header announces a packet over the limit are counted too);
/// * hostile HTTP: malformed JSON, 6 MiB bodies, bad paths and parameters, and 2,000 requests
///   from 8 threads.
///
/// The node stays up; every message that reached ingest has exactly the outcome it should,
/// counted by reason; every honest reading is accepted; no request gets a 5xx, and every API
/// refusal is problem+json; resident memory stays under a bound (see `RSS_BOUND_MIB`).
///
/// Forged frames and the replay storm claim the honest device itself: the per-device rate
/// limit charges only authentic readings that advance a device's sequence, so neither uses up
/// its allowance (before that fix, 1,500 forged frames on its topic left 23 of its 300
/// readings accepted and 2,778 `rate_limited`).
#[test]
fn hostile_input_leaves_the_node_up_bounded_and_honest_readings_flowing() -> Result<()> {
    use groundtruth_integration::mqtt::{energy_frame, fresh_client_id, MqttClient};
    use rand::{Rng, SeedableRng};
    /// Growth of resident memory allowed over the node's size before the attack: sled's page
    /// cache (64 MiB cap, `ingest::store`) can fill with what the attack makes it read and
    /// write, the ingest queues hold at most 8,192 messages of ≤ 1.25 KiB (the broker's packet
    /// limit, 10 MiB), and the broker's log for this attack's few MB; 128 MiB leaves room for
    /// allocator slack and still fails on anything that keeps a copy per hostile message or
    /// request.
    const RSS_BOUND_MIB: u64 = 128;
    const HONEST: u64 = 300;
    const RANDOM: usize = 1500;
    const TRUNCATED: usize = 500;
    const LONG: usize = 300;
    const FORGED: usize = 1500;
    const UNKNOWN: usize = 500;
    const MISMATCH: usize = 200;
    const STORM: usize = 3000;
    const OVERSIZE: usize = 20;
    const NEAR_LIMIT: usize = 20;
    const JUNK_CONNECTIONS: usize = 50;
    let seed = fault_seed("hostile input");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let honest = DeviceKey::from_seed(&[91; 32]);
    let other = DeviceKey::from_seed(&[92; 32]);
    let stranger = DeviceKey::from_seed(&[94; 32]);
    let net = TestNet::builder()
        .consensus(true)
        .genesis(
            Genesis::devnet()?
                .energy_device(&honest, CAPACITY)
                .energy_device(&other, CAPACITY),
        )
        .build()?;
    net.wait_height(&[0], 1, Duration::from_secs(30))?;
    let node = net.node(0);
    let broker = node.broker();
    let api = node.api();
    let proc = node.proc()?;
    let pid = proc.pid();
    std::thread::sleep(Duration::from_secs(1));
    let rss_before = proc.rss_kib().context("VmRSS")?;
    proc.reset_peak_rss()?;

    let honest_topic = topics::readings_topic(&honest.device_id());
    let honest_frames = energy_frames(&honest, 0, HONEST);
    let valid_other = energy_frame(&other, 0, 100, 100);
    let mut hostile: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    let random: Vec<Vec<u8>> = (0..RANDOM)
        .map(|_| {
            let n = rng.gen_range(0..=154);
            (0..n).map(|_| rng.gen()).collect()
        })
        .collect();
    hostile.push((honest_topic.clone(), random));
    let truncated: Vec<Vec<u8>> = (0..TRUNCATED)
        .map(|i| {
            let f = energy_frame(&honest, 10_000 + i as u64, 100, 100);
            let cut = rng.gen_range(0..f.len());
            f[..cut].to_vec()
        })
        .collect();
    hostile.push((honest_topic.clone(), truncated));
    // Longer than any frame, shorter than the broker's limit: only ingest can refuse them.
    let long: Vec<Vec<u8>> = (0..LONG)
        .map(|_| (0..rng.gen_range(200..900)).map(|_| rng.gen()).collect())
        .collect();
    hostile.push((honest_topic.clone(), long));
    // Over the node's payload limit but within the broker's packet limit: ingest refuses them.
    let max_payload = groundtruth_node::config::MqttSection::default().max_payload_bytes;
    let packet_limit = groundtruth_node::ingest::broker::packet_limit(max_payload);
    hostile.push((
        honest_topic.clone(),
        vec![vec![5u8; max_payload + 100]; NEAR_LIMIT],
    ));
    let forged_frames: Vec<Vec<u8>> = (0..FORGED)
        .map(|i| {
            let mut f = energy_frame(&honest, 20_000 + i as u64, 100, (i as u64 + 1) * 100);
            let last = f.len() - 1 - rng.gen_range(0..64);
            f[last] ^= 1 << rng.gen_range(0..8);
            f
        })
        .collect();
    hostile.push((honest_topic.clone(), forged_frames));
    hostile.push((
        topics::readings_topic(&stranger.device_id()),
        energy_frames(&stranger, 0, UNKNOWN as u64),
    ));
    hostile.push((honest_topic.clone(), vec![valid_other; MISMATCH]));
    // The honest device's own first reading, byte for byte (signatures are deterministic).
    hostile.push((
        honest_topic.clone(),
        vec![energy_frame(&honest, 0, 100, 100); STORM],
    ));
    let reaching_ingest = HONEST as usize
        + RANDOM
        + TRUNCATED
        + LONG
        + NEAR_LIMIT
        + FORGED
        + UNKNOWN
        + MISMATCH
        + STORM;

    // The honest device publishes in small batches throughout the attack.
    let honest_thread = std::thread::spawn({
        let frames = honest_frames.clone();
        let topic = honest_topic.clone();
        move || -> Result<()> {
            for chunk in frames.chunks(10) {
                publish_all(broker, &topic, chunk)?;
                std::thread::sleep(Duration::from_millis(30));
            }
            Ok(())
        }
    });
    let mqtt_threads: Vec<_> = hostile
        .into_iter()
        .map(|(topic, frames)| {
            std::thread::spawn(move || -> Result<()> {
                let mut c = MqttClient::connect_ok(broker, &fresh_client_id(), None)?;
                let acked = c.publish(&topic, &frames, Duration::from_secs(60))?;
                ensure!(
                    acked == frames.len(),
                    "{acked} of {} hostile publishes on {topic} acknowledged",
                    frames.len()
                );
                c.disconnect();
                Ok(())
            })
        })
        .collect();
    // Over the broker's packet limit: the broker drops the connection; nothing reaches ingest,
    // and the broker counts each one.
    let oversize_thread = std::thread::spawn({
        let topic = honest_topic.clone();
        move || -> Result<usize> {
            let mut refused = 0;
            for i in 0..OVERSIZE {
                let mut c = MqttClient::connect_ok(broker, &fresh_client_id(), None)?;
                let acked = c.publish(&topic, &[vec![i as u8; 4096]], Duration::from_secs(5))?;
                // No PUBACK: the broker closed the connection on the packet (the client's
                // event loop would reconnect, so the connection's state says nothing).
                if acked == 0 {
                    refused += 1;
                }
            }
            Ok(refused)
        }
    });
    let junk: Vec<Vec<u8>> = (0..JUNK_CONNECTIONS)
        .map(|_| (0..4096).map(|_| rng.gen()).collect())
        .collect();
    // Junk whose fixed header (remaining length: a 1-4 byte varint after the first byte)
    // announces more than the limit is refused, and counted, as an oversized packet.
    let oversized_junk = junk
        .iter()
        .filter(|j| {
            let mut len = 0usize;
            for (i, b) in j.iter().skip(1).take(4).enumerate() {
                len += usize::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    return len > packet_limit;
                }
            }
            false
        })
        .count();
    let junk_thread = std::thread::spawn({
        move || {
            for j in junk {
                if let Ok(mut s) = std::net::TcpStream::connect(broker) {
                    let _ = s.write_all(&j);
                }
            }
        }
    });
    // Hostile HTTP, each request once, then many requests from 8 threads.
    let requests = hostile_requests(&mut rng);
    let mut bad = Vec::new();
    for (what, req) in &requests {
        let (status, head, body) = raw_http(api.addr, req)?;
        let problem = head.contains("content-type: application/problem+json")
            && serde_json::from_slice::<serde_json::Value>(&body)
                .is_ok_and(|v| v["status"].as_u64() == Some(u64::from(status)));
        if !(400..500).contains(&status) || !problem {
            bad.push(format!(
                "{what}: {status} {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ));
        }
    }
    let http_threads: Vec<_> = (0..8)
        .map(|t| {
            let requests = requests.clone();
            std::thread::spawn(move || -> Vec<String> {
                let mut bad = Vec::new();
                for i in 0..250 {
                    let (what, req) = &requests[(t * 250 + i) % requests.len()];
                    match raw_http(api.addr, req) {
                        Ok((status, _, _)) if (400..500).contains(&status) => {}
                        Ok((status, _, _)) => bad.push(format!("{what}: {status}")),
                        Err(e) => bad.push(format!("{what}: {e}")),
                    }
                }
                bad
            })
        })
        .collect();
    for t in http_threads {
        bad.extend(
            t.join()
                .map_err(|_| anyhow::anyhow!("http thread panicked"))?,
        );
    }
    for t in mqtt_threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("publisher thread panicked"))??;
    }
    let refused_oversize = oversize_thread
        .join()
        .map_err(|_| anyhow::anyhow!("oversize thread panicked"))??;
    junk_thread
        .join()
        .map_err(|_| anyhow::anyhow!("junk thread panicked"))?;
    honest_thread
        .join()
        .map_err(|_| anyhow::anyhow!("honest thread panicked"))??;

    ensure!(
        bad.is_empty(),
        "{} hostile requests were not answered 4xx problem+json: {bad:#?}",
        bad.len()
    );
    ensure!(
        refused_oversize == OVERSIZE,
        "{refused_oversize} of {OVERSIZE} oversized publishes were refused by the broker"
    );
    let m = node.wait_received(reaching_ingest as u64, Duration::from_secs(60))?;
    let oversized_series = "groundtruth_broker_oversized_packets_total";
    let broker_oversized = node
        .wait_metrics(Duration::from_secs(10), |m| {
            m.get(oversized_series) as usize >= OVERSIZE + oversized_junk
        })
        .or_else(|_| node.metrics())?
        .get(oversized_series) as usize;
    eprintln!(
        "broker: {broker_oversized} oversized packets refused ({OVERSIZE} publishes, \
         {oversized_junk} junk headers)"
    );
    ensure!(
        broker_oversized == OVERSIZE + oversized_junk,
        "the broker counted {broker_oversized} oversized packets; {OVERSIZE} publishes and \
         {oversized_junk} junk headers were over its limit"
    );
    let peak = net.node(0).proc()?.peak_rss_kib().context("VmHWM")?;
    let rss_after = net.node(0).proc()?.rss_kib().context("VmRSS")?;
    eprintln!(
        "node {pid}: RSS {rss_before} KiB before, peak {peak} KiB, {rss_after} KiB after the attack"
    );
    let received = m.get("groundtruth_ingest_received_total") as usize;
    ensure!(
        received == reaching_ingest,
        "ingest received {received} messages, {reaching_ingest} were published to it"
    );
    let outcomes = m.outcomes();
    let count = |label: &str| outcomes.get(label).copied().unwrap_or(0) as usize;
    let want = [
        ("accepted", HONEST as usize),
        ("duplicate", STORM),
        ("rate_limited", 0),
        ("malformed", RANDOM + TRUNCATED + LONG),
        ("oversize", NEAR_LIMIT),
        ("bad_signature", FORGED),
        ("unknown_device", UNKNOWN),
        ("topic_mismatch", MISMATCH),
    ];
    for (label, n) in want {
        ensure!(
            count(label) == n,
            "{label}: {} counted, want {n}; outcomes {outcomes:?}",
            count(label)
        );
    }
    let counted: usize = outcomes.values().map(|v| *v as usize).sum();
    ensure!(
        counted == reaching_ingest,
        "{counted} outcomes counted for {reaching_ingest} messages: {outcomes:?}"
    );
    ensure!(
        peak.saturating_sub(rss_before) < RSS_BOUND_MIB * 1024,
        "resident memory peaked at {peak} KiB, {} KiB over {rss_before} KiB before the attack",
        peak.saturating_sub(rss_before)
    );
    // Still serving: the API answers and the ledger moves on.
    let h = net.node(0).height();
    net.wait_height(&[0], h + 2, Duration::from_secs(20))?;
    let mut net = net;
    let node = net.node_mut(0);
    ensure!(node.proc_mut()?.is_running(), "the node exited");
    let stored = node.stop_and_list_accepted()?;
    let id = honest.device_id().to_string();
    let honest_stored: BTreeSet<String> = stored
        .iter()
        .filter(|s| s.starts_with(&id))
        .cloned()
        .collect();
    ensure!(
        honest_stored == expected_set(&honest, HONEST),
        "{} of the honest device's {HONEST} readings stored",
        honest_stored.len()
    );
    Ok(())
}

/// `kill -9` of the broker-embedding validator or of a random one, at random moments (seeded),
/// four times, while a device publishes to the embedded broker and the ledger runs. After each
/// kill the other three keep finalizing; the restarted validator still holds every reading it
/// had counted as accepted (read offline from its store before it restarts) and the block it
/// had committed last, with the same state root. At the end, once the device has delivered
/// its queue again (the embedded broker loses what it held when its validator dies: devices
/// keep readings until validators have them, PROTOCOL.md "Resend"), every validator holds
/// exactly the device's readings and all agree on the state root.
#[test]
fn validators_killed_at_random_keep_finalizing_and_lose_nothing() -> Result<()> {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    const TOTAL: u64 = 600;
    const ROUNDS: usize = 4;
    const BROKER: usize = 0;
    let mut rng = rand::rngs::StdRng::seed_from_u64(fault_seed("random kill -9"));
    let key = DeviceKey::from_seed(&[95; 32]);
    let mut net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .broker(Broker::EmbeddedIn(BROKER))
        .genesis(
            Genesis::devnet()?
                .epoch_length(1000)
                .energy_device(&key, CAPACITY),
        )
        .build()?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    let topic = topics::readings_topic(&key.device_id());
    let frames = energy_frames(&key, 0, TOTAL);
    let broker = net.broker_addr();

    // The device: chunks of 10, each retried until the broker acknowledges it.
    let done = Arc::new(AtomicBool::new(false));
    let device = std::thread::spawn({
        let (frames, topic, done) = (frames.clone(), topic.clone(), done.clone());
        move || {
            for chunk in frames.chunks(10) {
                while publish_all(broker, &topic, chunk).is_err() {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            done.store(true, Ordering::Release);
        }
    });

    for round in 0..ROUNDS {
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..1500)));
        let victim = if rng.gen_bool(0.5) {
            BROKER
        } else {
            rng.gen_range(0..4)
        };
        let others: Vec<usize> = ALL.into_iter().filter(|i| *i != victim).collect();
        let promised = net.node(victim).stored_accepted();
        let status = net.node(victim).status()?;
        let h = status["height"].as_u64().context("height")?;
        let root = status["state_root"]
            .as_str()
            .context("state_root")?
            .to_string();
        net.node_mut(victim).kill9();
        eprintln!(
            "round {round}: killed validator {victim} at height {h} holding {promised} readings"
        );

        // The other three hold 3/4 of the stake: they keep finalizing.
        net.wait_advance(&others, 2, Duration::from_secs(30))?;

        // Nothing it had counted as accepted is gone from its store.
        let held = net.node_mut(victim).stop_and_list_accepted()?.len() as u64;
        ensure!(
            held >= promised,
            "round {round}: validator {victim} had {promised} accepted readings and holds {held} after kill -9"
        );
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1000)));
        // What it had committed is what the others committed at that height.
        let agreed = net.agreed_root(&others, h)?;
        ensure!(
            agreed == root,
            "round {round}: validator {victim} had committed root {root} at height {h}, the others {agreed}"
        );
        net.node_mut(victim).restart()?;
        // It comes back at (at least) the height it had committed, on the same state.
        let status = net.node(victim).status()?;
        let back = status["height"].as_u64().unwrap_or(0);
        ensure!(
            back >= h,
            "round {round}: validator {victim} had committed height {h}, is at {back} after kill -9"
        );
        if back == h {
            ensure!(
                status["state_root"].as_str() == Some(root.as_str()),
                "round {round}: validator {victim}'s root at height {h} was {root}, is {} after kill -9",
                status["state_root"]
            );
        }
    }
    let until = Instant::now() + Duration::from_secs(60);
    while !done.load(Ordering::Acquire) {
        ensure!(
            Instant::now() < until,
            "the device could not deliver its readings"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    device
        .join()
        .map_err(|_| anyhow::anyhow!("device thread panicked"))?;
    // The device delivers its queue again; every validator ends with exactly its readings.
    publish_all(broker, &topic, &frames)?;
    for i in ALL {
        net.node(i).wait_stored(TOTAL, Duration::from_secs(60))?;
    }
    let h = ALL.iter().map(|i| net.node(*i).height()).max().unwrap_or(0);
    net.wait_height(&ALL, h, Duration::from_secs(60))?;
    net.agreed_root(&ALL, h)?;
    for i in ALL {
        let listed: BTreeSet<String> = net
            .node_mut(i)
            .stop_and_list_accepted()?
            .into_iter()
            .collect();
        ensure!(
            listed == expected_set(&key, TOTAL),
            "validator {i} holds {} accepted readings, want exactly seqs 0..{TOTAL} of the device",
            listed.len()
        );
    }
    Ok(())
}
