//! Audit-loop benchmark: `groundtruth devnet` (4 validator processes, embedded broker, real-time
//! simulated meters, timed epochs closed by vote, attested, proven with STARKs and verified by
//! the ledger) watched through the API. Prints:
//!
//! - per committed epoch: readings verified, batches proven, when the commitment appeared;
//! - time from a reading's publication to its epoch's commitment, and to that commitment's L1 anchor
//!   (anvil, the devnet's oracle), p50 and p99 over readings;
//! - sustained audited readings/s across the validator set, and each validator's proving
//!   throughput (readings proven per second of proving, from its log) beside the raw batch-proof
//!   throughput of the same batch size measured in this process on one core, same run.
//!
//! ```text
//! cargo build --release --bin groundtruth --bin audit-bench
//! target/release/audit-bench [--meters 10000] [--epoch-s 60] [--interval-s 30] [--epochs 3]
//! ```

use anyhow::{bail, Context, Result};
use groundtruth_api::ApiClient;
use groundtruth_integration::groundtruth_bin;
use groundtruth_proofs::{prove_metered, DeviceSeries, Epoch, SecurityLevel};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Args {
    meters: u32,
    epoch_s: u64,
    interval_s: u32,
    epochs: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        meters: 10_000,
        epoch_s: 60,
        interval_s: 30,
        epochs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--meters" => a.meters = v.parse()?,
            "--epoch-s" => a.epoch_s = v.parse()?,
            "--interval-s" => a.interval_s = v.parse()?,
            "--epochs" => a.epochs = v.parse()?,
            _ => bail!("unknown argument {k}"),
        }
    }
    Ok(a)
}

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Raw single-core batch-proof throughput for `readings` readings over `devices` devices.
fn raw_proof_rate(devices: usize, readings: usize) -> Result<f64> {
    let per = (readings / devices.max(1)).max(1);
    let series: Vec<DeviceSeries> = (0..devices)
        .map(|d| {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&(d as u64).to_be_bytes());
            DeviceSeries {
                id,
                cap: 1_000,
                start_register: 0,
                first_seq: 0,
                first_interval_start: 0,
                interval_len: 30,
                values: (0..per)
                    .map(|j| (j as u64 * 7 + d as u64) % 1_000)
                    .collect(),
            }
        })
        .collect();
    let epoch = Epoch {
        number: 0,
        start_s: 0,
        end_s: 30 * per as u64,
    };
    let n = devices * per;
    // Warm-up, then the best of three (the machine is shared).
    prove_metered(&epoch, &series, SecurityLevel::Default100)?;
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        prove_metered(&epoch, &series, SecurityLevel::Default100)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(n as f64 / best)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `(readings, ms)` of every "batch proven" line in a node log.
fn proven_batches(log: &str) -> Vec<(u64, u64)> {
    let strip = |s: &str| {
        let mut out = String::with_capacity(s.len());
        let mut esc = false;
        for c in s.chars() {
            match (esc, c) {
                (false, '\u{1b}') => esc = true,
                (true, 'm') => esc = false,
                (true, _) => {}
                (false, c) => out.push(c),
            }
        }
        out
    };
    log.lines()
        .filter(|l| l.contains("batch proven"))
        .filter_map(|l| {
            let l = strip(l);
            let field = |name: &str| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            Some((field("readings=")?, field("ms=")?))
        })
        .collect()
}

/// Stops the devnet as Ctrl-C does (SIGINT), so that it stops its validators and anvil
/// (SIGKILL would leave them running); kills it if it has not exited within 40 s.
fn stop(devnet: &mut std::process::Child) {
    if groundtruth_integration::interrupt(devnet, Duration::from_secs(40)).is_none() {
        let _ = devnet.kill();
        let _ = devnet.wait();
    }
}

fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let base: u16 = 40_000 + (std::process::id() % 1000) as u16 * 8;
    let broker = format!("127.0.0.1:{}", base + 7);
    let api0 = format!("127.0.0.1:{base}");
    let intervals_per_epoch = a.epoch_s / u64::from(a.interval_s);
    let per_epoch = u64::from(a.meters) * intervals_per_epoch;
    println!(
        "audit benchmark: {} meters, {}s readings, {}s epochs ({} readings/epoch), 4 validators, {} epochs\n",
        a.meters, a.interval_s, a.epoch_s, per_epoch, a.epochs
    );

    // Baseline in this process: one validator's share of an epoch (4 auditors).
    let share = (per_epoch / 4).max(1) as usize;
    let devices = (a.meters / 4).max(1) as usize;
    let raw = raw_proof_rate(devices, share)?;
    println!(
        "raw batch proof, {share} readings over {devices} devices, 1 core: {raw:>10.0} readings/s"
    );

    let mut devnet = Command::new(groundtruth_bin()?)
        .args(["devnet", "--dir"])
        .arg(dir.path().join("devnet"))
        .args([
            "--energy",
            &a.meters.to_string(),
            "--gpu",
            "0",
            "--storage",
            "0",
            "--unknown",
            "0",
            "--faults",
            "none",
            "--epoch-s",
            &a.epoch_s.to_string(),
            "--reading-interval-s",
            &a.interval_s.to_string(),
            "--grace-s",
            "5",
            // Until interrupted: the bench stops it once it has seen the epochs it measures.
            "--intervals",
            "0",
            "--broker-listen",
            &broker,
            "--metrics-listen",
            &api0,
        ])
        .stdout(Stdio::from(std::fs::File::create(
            dir.path().join("devnet.out"),
        )?))
        .stderr(Stdio::from(std::fs::File::create(
            dir.path().join("devnet.err"),
        )?))
        .spawn()
        .context("starting groundtruth devnet")?;
    let started = now_s();
    let bar = ProgressBar::new(a.epochs);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed} epochs committed {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let client = ApiClient::new(&format!("http://{api0}"))?.with_timeout(Duration::from_secs(5));
    let mut committed_at: BTreeMap<u64, (f64, serde_json::Value)> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(a.epoch_s * (a.epochs + 3) + 120);
    while (committed_at.len() as u64) < a.epochs {
        if Instant::now() > deadline {
            stop(&mut devnet);
            bail!(
                "only {} epochs committed in time; logs in {}",
                committed_at.len(),
                dir.path().display()
            );
        }
        if let Ok(Some(status)) = devnet.try_wait() {
            let err = std::fs::read_to_string(dir.path().join("devnet.err")).unwrap_or_default();
            let tail: Vec<&str> = err.lines().rev().take(15).collect();
            bail!(
                "the devnet exited early ({status}):\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
        bar.tick();
        let Ok(list) = client.get_json("/v1/epochs") else {
            continue;
        };
        for e in list["committed"].as_array().into_iter().flatten() {
            let Some(e) = e.as_u64() else { continue };
            if committed_at.contains_key(&e) || (committed_at.len() as u64) >= a.epochs {
                continue;
            }
            let t = now_s();
            if let Ok(v) = client.get_json(&format!("/v1/epochs/{e}")) {
                committed_at.insert(e, (t, v));
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    // Then until each of those epochs is anchored on L1 (the devnet's anvil and oracle), or
    // three minutes more.
    let mut anchored_at: BTreeMap<u64, f64> = BTreeMap::new();
    let anchor_deadline = Instant::now() + Duration::from_secs(180);
    while anchored_at.len() < committed_at.len() && Instant::now() < anchor_deadline {
        for e in committed_at.keys() {
            if anchored_at.contains_key(e) {
                continue;
            }
            if let Ok(v) = client.get_json(&format!("/v1/epochs/{e}")) {
                if !v["l1"].is_null() {
                    anchored_at.insert(*e, now_s());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(&mut devnet);

    // Latency: a reading of interval [t, t+I) is published at t (real time).
    let mut latencies = Vec::new();
    let mut anchor_latencies = Vec::new();
    let mut verified_total = 0u64;
    println!("\nepoch  readings verified  batches  committed after window end");
    for (e, (t, v)) in &committed_at {
        let verified = v["commitment"]["verified_readings"].as_u64().unwrap_or(0);
        verified_total += verified;
        let start = v["window"]["start_s"].as_u64().unwrap_or(0);
        let end = v["window"]["end_s"].as_u64().unwrap_or(0);
        println!(
            "{e:>5}  {verified:>17}  {:>3}/{:<3}  {:>6.1}s",
            v["commitment"]["audited_batches"],
            v["commitment"]["batches"],
            t - end as f64
        );
        let k = (end - start) / u64::from(a.interval_s);
        let per_interval = verified / k.max(1);
        for j in 0..k {
            let published = (start + j * u64::from(a.interval_s)) as f64;
            for _ in 0..per_interval.min(2_000) {
                latencies.push(t - published);
                if let Some(a) = anchored_at.get(e) {
                    anchor_latencies.push(a - published);
                }
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    anchor_latencies.sort_by(f64::total_cmp);
    let first_window = committed_at
        .values()
        .next()
        .and_then(|(_, v)| v["window"]["start_s"].as_u64())
        .unwrap_or(started as u64) as f64;
    let last_commit = committed_at.values().last().map_or(started, |(t, _)| *t);
    println!(
        "\npublication → epoch commitment: p50 {:.1}s  p99 {:.1}s  (epoch {}s, grace 5s)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        a.epoch_s
    );
    println!(
        "publication → L1 anchor: p50 {:.1}s  p99 {:.1}s  ({} of {} epochs anchored)",
        percentile(&anchor_latencies, 0.5),
        percentile(&anchor_latencies, 0.99),
        anchored_at.len(),
        committed_at.len()
    );
    println!(
        "sustained audited readings across the validator set: {:.0}/s ({} readings, input rate {:.0}/s)",
        verified_total as f64 / (last_commit - first_window).max(1.0),
        verified_total,
        f64::from(a.meters) / f64::from(a.interval_s)
    );
    let mut capacity = 0.0;
    for i in 0..4 {
        let log = std::fs::read_to_string(dir.path().join(format!("devnet/v{i}/node.log")))
            .unwrap_or_default();
        let batches = proven_batches(&log);
        let (r, ms): (u64, u64) = batches
            .iter()
            .fold((0, 0), |(r, m), (br, bm)| (r + br, m + bm));
        let rate = r as f64 / (ms.max(1) as f64 / 1000.0);
        capacity += rate;
        println!(
            "v{i}: proved {} batches, {r} readings in {:.2}s of proving: {rate:>10.0} readings/s = {:.2}× the raw 1-core figure",
            batches.len(),
            ms as f64 / 1000.0,
            rate / raw
        );
    }
    println!(
        "audit capacity across the validator set (sum of proving rates): {capacity:.0} readings/s"
    );
    Ok(())
}
