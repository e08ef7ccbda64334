//! Retention benchmark: bytes on disk per reading over a long simulated run, without and with
//! pruning, against the raw signed frame bytes of the same run.
//!
//! Writes `epochs` epochs of one signed 60-second energy reading per device for `devices`
//! devices through the node's real ingest store (group commits of 1024, as ingest flushes)
//! and production read model, twice in fresh directories:
//! 1. no retention: every reading kept;
//! 2. retention as the node runs it: after each epoch, one pass prunes what is older than
//!    `keep` epochs ([`groundtruth_node::retention::prune_pass`]).
//!
//! Then run 1's store gets one pass after the fact too (the space sled gives back at once).
//!
//! ```sh
//! cargo run -p groundtruth-integration --bin retention_bench -- [devices] [epochs] [keep]
//! ```

use anyhow::{Context, Result};
use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody};
use groundtruth_node::ingest::store::{Status, Store};
use groundtruth_node::production::Production;
use groundtruth_node::retention::{prune_pass, Horizon, Limits, RetentionMetrics};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// 2024-05-01T00:00:00Z: epoch 0's window starts here.
const T0: u64 = 1_714_521_600;
/// Epoch length and reading interval, seconds (the devnet's).
const EPOCH_S: u64 = 60;
/// Readings per store flush (the ingest committer's group commit).
const FLUSH_EVERY: usize = 1024;

/// Apparent and allocated bytes of every file under `dir`.
fn dir_bytes(dir: &Path) -> Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0u64;
    let mut allocated = 0u64;
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = dir_bytes(&entry.path())?;
            apparent += a;
            allocated += b;
        } else {
            apparent += meta.len();
            allocated += meta.blocks() * 512;
        }
    }
    Ok((apparent, allocated))
}

struct Run {
    written: u64,
    raw_bytes: u64,
    retained: u64,
    pruned: u64,
    prune_time: Duration,
    write_time: Duration,
}

fn write_run(
    dir: &Path,
    keys: &[DeviceKey],
    epochs: u64,
    keep: Option<u64>,
    bar: &ProgressBar,
) -> Result<Run> {
    let store = Store::open(&dir.join("store"))?;
    let production = Production::open(&dir.join("production"), Arc::new(|_| None))?;
    let metrics = RetentionMetrics::default();
    let limits = Limits {
        batch: 1024,
        pause: Duration::ZERO,
    };
    let mut run = Run {
        written: 0,
        raw_bytes: 0,
        retained: 0,
        pruned: 0,
        prune_time: Duration::ZERO,
        write_time: Duration::ZERO,
    };
    let mut pending = Vec::with_capacity(FLUSH_EVERY);
    for epoch in 0..epochs {
        let started = Instant::now();
        for (i, k) in keys.iter().enumerate() {
            let reading = Reading {
                device: k.device_id(),
                seq: epoch,
                timestamp_ms: (T0 + (epoch + 1) * EPOCH_S) * 1000,
                body: ReadingBody::Energy(EnergyReading {
                    interval_start_s: T0 + epoch * EPOCH_S,
                    interval_len_s: EPOCH_S as u32,
                    energy_wh: 10 + (i as u64 % 7),
                    register_wh: (epoch + 1) * 20,
                }),
            };
            let frame = k.sign(reading).to_frame();
            run.raw_bytes += frame.len() as u64;
            store.put(&reading.device, reading.seq, Status::Accepted, &frame)?;
            pending.push(reading);
            if pending.len() >= FLUSH_EVERY {
                store.flush()?;
                production.record(&pending)?;
                pending.clear();
            }
            run.written += 1;
        }
        bar.inc(keys.len() as u64);
        run.write_time += started.elapsed();
        let Some(keep) = keep else { continue };
        let Some(prunable) = epoch.checked_sub(keep) else {
            continue;
        };
        store.flush()?;
        production.record(&pending)?;
        pending.clear();
        let started = Instant::now();
        let out = prune_pass(
            &store,
            Some(&production),
            &Horizon {
                epoch: prunable,
                end_s: T0 + (prunable + 1) * EPOCH_S,
                protected: Default::default(),
            },
            limits,
            &metrics,
        )?;
        run.pruned += out.readings;
        run.prune_time += started.elapsed();
    }
    store.flush()?;
    production.record(&pending)?;
    production.flush()?;
    run.retained = store.readings().count() as u64;
    Ok(run)
}

fn per(bytes: u64, n: u64) -> f64 {
    bytes as f64 / n.max(1) as f64
}

fn report(label: &str, dir: &Path, run: &Run) -> Result<()> {
    let raw = per(run.raw_bytes, run.written);
    let (store_a, store_b) = dir_bytes(&dir.join("store"))?;
    let (prod_a, prod_b) = dir_bytes(&dir.join("production"))?;
    println!("{label}");
    println!(
        "  readings written {}, kept {}, pruned {}; writing {:.1} s, pruning {:.1} s",
        run.written,
        run.retained,
        run.pruned,
        run.write_time.as_secs_f64(),
        run.prune_time.as_secs_f64()
    );
    println!(
        "  ingest store   {:>8.1} MB on disk ({:>8.1} MB apparent)",
        store_b as f64 / 1e6,
        store_a as f64 / 1e6
    );
    println!(
        "  read model     {:>8.1} MB on disk ({:>8.1} MB apparent)",
        prod_b as f64 / 1e6,
        prod_a as f64 / 1e6
    );
    let total = store_b + prod_b;
    println!(
        "  per reading written: {:>7.1} B on disk = {:>5.2}× the raw {raw:.0} B frame (store alone {:>7.1} B, {:.2}×)",
        per(total, run.written),
        per(total, run.written) / raw,
        per(store_b, run.written),
        per(store_b, run.written) / raw,
    );
    if run.retained < run.written {
        println!(
            "  per reading kept:    {:>7.1} B in the store = {:>5.2}× raw",
            per(store_b, run.retained),
            per(store_b, run.retained) / raw
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let arg = |n: usize, default: u64| -> Result<u64> {
        Ok(std::env::args()
            .nth(n)
            .map(|s| s.parse())
            .transpose()?
            .unwrap_or(default))
    };
    let devices = arg(1, 1000)?;
    let epochs = arg(2, 480)?;
    let keep = arg(3, 48)?;
    println!(
        "retention benchmark: {devices} devices × {epochs} epochs of {EPOCH_S} s ({} readings per run), keep {keep} epochs\n",
        devices * epochs
    );
    let keys: Vec<DeviceKey> = (0..devices)
        .map(|i| {
            let mut seed = [7u8; 32];
            seed[..8].copy_from_slice(&i.to_be_bytes());
            DeviceKey::from_seed(&seed)
        })
        .collect();
    let bar = ProgressBar::new(2 * devices * epochs);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} readings {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let tmp = tempfile::tempdir()?;
    let plain_dir = tmp.path().join("no-retention");
    let kept_dir = tmp.path().join("retention");
    let plain = write_run(&plain_dir, &keys, epochs, None, &bar)?;
    let kept = write_run(&kept_dir, &keys, epochs, Some(keep), &bar)?;
    bar.finish_and_clear();
    report("1. no retention", &plain_dir, &plain)?;
    report(
        &format!("2. retention, a pass after every epoch, keep {keep}"),
        &kept_dir,
        &kept,
    )?;

    // Run 1's store pruned once, after the fact, to the same horizon.
    let mut once = plain;
    {
        let store = Store::open(&plain_dir.join("store"))?;
        let production = Production::open(&plain_dir.join("production"), Arc::new(|_| None))?;
        let prunable = epochs.saturating_sub(1).saturating_sub(keep);
        let started = Instant::now();
        let out = prune_pass(
            &store,
            Some(&production),
            &Horizon {
                epoch: prunable,
                end_s: T0 + (prunable + 1) * EPOCH_S,
                protected: Default::default(),
            },
            Limits {
                batch: 1024,
                pause: Duration::ZERO,
            },
            &RetentionMetrics::default(),
        )?;
        once.prune_time = started.elapsed();
        once.pruned = out.readings;
        once.retained = store.readings().count() as u64;
        store.flush()?;
        production.flush()?;
    }
    report(
        "3. run 1 pruned once at the end (same horizon)",
        &plain_dir,
        &once,
    )?;
    Ok(())
}
