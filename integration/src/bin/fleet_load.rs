//! Long and growing loads on a 4-validator network (consensus, timed epochs, the audit loop on,
//! every validator reading the broker embedded in validator 0), fed by a real-time simulated
//! fleet of solar meters (`groundtruth sim --speedup 1`): every meter publishes one reading at
//! the end of each interval, so readings arrive in bursts of one per meter.
//!
//! The latency figure is the **burst drain time**: from an interval's end (when its readings
//! are published) until a validator's store holds all of them (`stored_accepted` reaches the
//! count of every interval so far), i.e. the published → durable latency of the burst's last
//! reading. A validator keeps up while each burst drains before the next one arrives.
//!
//! - `soak`: runs `--minutes`, samples every `--sample-s` each validator's resident memory, data
//!   directory size, height and stored readings, and the burst drain times; writes
//!   `soak.csv`, `bursts.csv` and `soak.png` (three panels, top to bottom: RSS MiB, disk MiB per
//!   validator, burst drain seconds; no text, see `docs/benchmarks.md`) to `--out`.
//! - `scale`: doubles the fleet from `--devices`, `--doublings` times, each size on a fresh
//!   network for `--intervals` intervals, and stops at the first size where a validator falls
//!   behind, saying why: a burst that took longer than an interval to drain, a burst not drained
//!   by the end, a validator whose height lags, or one that died.
//!
//! ```text
//! scripts/soak.sh    # fleet-load soak --devices 10000 --minutes 30
//! scripts/scale.sh   # fleet-load scale --devices 1000 --doublings 6
//! ```

use anyhow::{bail, Context, Result};
use groundtruth_integration::{Broker, FleetSpec, Genesis, Proc, TestNet};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const VALIDATORS: usize = 4;

struct Args {
    mode: String,
    devices: u32,
    minutes: f64,
    interval_s: u64,
    sample_s: f64,
    doublings: u32,
    intervals: u64,
    epoch_s: u64,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let mode = it
        .next()
        .context("usage: fleet-load soak|scale [--flag value]…")?;
    let mut a = Args {
        mode,
        devices: 10_000,
        minutes: 30.0,
        interval_s: 30,
        sample_s: 10.0,
        doublings: 6,
        intervals: 6,
        epoch_s: 60,
        out: PathBuf::from("target/soak"),
    };
    if a.mode == "scale" {
        a.devices = 1_000;
        a.interval_s = 10;
    }
    while let Some(k) = it.next() {
        let v = it.next().with_context(|| format!("{k} needs a value"))?;
        match k.as_str() {
            "--devices" => a.devices = v.parse()?,
            "--minutes" => a.minutes = v.parse()?,
            "--interval-s" => a.interval_s = v.parse()?,
            "--sample-s" => a.sample_s = v.parse()?,
            "--doublings" => a.doublings = v.parse()?,
            "--intervals" => a.intervals = v.parse()?,
            "--epoch-s" => a.epoch_s = v.parse()?,
            "--out" => a.out = PathBuf::from(v),
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.interval_s == 0 || a.devices == 0 {
        bail!("--interval-s and --devices must be positive");
    }
    Ok(a)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// A network and its fleet, started with the fleet's first interval ending `interval_s` from
/// now.
struct Run {
    net: TestNet,
    sim: Proc,
    devices: u64,
    first_end: u64,
    interval_s: u64,
    /// Per validator: burst k → seconds from its interval's end until it was durable.
    drained: Vec<BTreeMap<u64, f64>>,
}

impl Run {
    fn start(devices: u32, interval_s: u64, intervals: u64, epoch_s: u64) -> Result<Self> {
        let spec = FleetSpec {
            seed: 7,
            energy: devices,
            gpu: 0,
            storage: 0,
            unknown: 0,
            faults: "none".into(),
            intervals,
        };
        let now = unix_now();
        let genesis = spec.add_devices_to(Genesis::devnet()?.timed(epoch_s, now))?;
        eprintln!("starting 4 validators and {devices} meters ({interval_s} s intervals)…");
        // Validators run as `groundtruth devnet` runs them: glibc arenas capped at 2 unless
        // MALLOC_ARENA_MAX is set here (`MALLOC_ARENA_MAX=16` is glibc's default on 2 cores).
        let arenas = std::env::var("MALLOC_ARENA_MAX").unwrap_or_else(|_| "2".into());
        let net = TestNet::builder()
            .validators(VALIDATORS)
            .consensus(true)
            .broker(Broker::EmbeddedIn(0))
            .genesis(genesis)
            .fleet(spec)
            .env("MALLOC_ARENA_MAX", &arenas)
            .build()?;
        // The first interval starts now (after the network is up), so nothing is backdated.
        let start = unix_now() + 2;
        let (sim, _) = net.spawn_fleet(&[
            "--speedup",
            "1",
            "--interval-s",
            &interval_s.to_string(),
            "--start-unix-s",
            &start.to_string(),
            "--connections",
            "4",
        ])?;
        Ok(Self {
            net,
            sim,
            devices: u64::from(devices),
            first_end: start + interval_s,
            interval_s,
            drained: vec![BTreeMap::new(); VALIDATORS],
        })
    }

    /// Records bursts that became durable since the last call; the validators' stored counts.
    fn poll(&mut self) -> Vec<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut counts = Vec::new();
        for (i, drained) in self.drained.iter_mut().enumerate() {
            let stored = self
                .net
                .node(i)
                .metrics()
                .map(|m| m.get("groundtruth_ingest_stored_accepted") as u64)
                .unwrap_or(0);
            counts.push(stored);
            // Bursts wholly stored: the first `stored / devices`.
            let complete = stored / self.devices.max(1);
            for k in 0..complete {
                drained.entry(k).or_insert_with(|| {
                    let end = (self.first_end + k * self.interval_s) as f64;
                    (now - end).max(0.0)
                });
            }
        }
        counts
    }

    /// Bursts whose interval has ended by now.
    fn published_bursts(&self) -> u64 {
        let now = unix_now();
        if now < self.first_end {
            return 0;
        }
        (now - self.first_end) / self.interval_s + 1
    }
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    s[(((s.len() - 1) as f64) * p).round() as usize]
}

struct Sample {
    t: f64,
    rss_mib: Vec<f64>,
    disk_mib: Vec<f64>,
    height: Vec<u64>,
    stored: Vec<u64>,
}

fn soak(a: &Args) -> Result<()> {
    std::fs::create_dir_all(&a.out)?;
    let total = Duration::from_secs_f64(a.minutes * 60.0);
    let intervals = (total.as_secs() / a.interval_s) + 2;
    let mut run = Run::start(a.devices, a.interval_s, intervals, a.epoch_s)?;
    println!(
        "soak: {} meters, one reading each per {} s ({:.0} readings/s), 4 validators, {:.1} min",
        a.devices,
        a.interval_s,
        a.devices as f64 / a.interval_s as f64,
        a.minutes
    );
    let t0 = Instant::now();
    let t0_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let mut samples: Vec<Sample> = Vec::new();
    let mut next_sample = Instant::now();
    while t0.elapsed() < total {
        let stored = run.poll();
        if Instant::now() >= next_sample {
            next_sample += Duration::from_secs_f64(a.sample_s);
            let mut s = Sample {
                t: t0.elapsed().as_secs_f64(),
                rss_mib: Vec::new(),
                disk_mib: Vec::new(),
                height: Vec::new(),
                stored,
            };
            for i in 0..VALIDATORS {
                let n = run.net.node(i);
                let rss = n.proc().ok().and_then(|p| p.rss_kib()).unwrap_or(0);
                s.rss_mib.push(rss as f64 / 1024.0);
                s.disk_mib
                    .push(dir_bytes(n.data_dir()) as f64 / (1 << 20) as f64);
                s.height.push(n.height());
            }
            eprintln!(
                "t={:>6.0}s rss MiB {:?} disk MiB {:?} heights {:?} stored {:?} bursts published {}",
                s.t,
                s.rss_mib.iter().map(|v| v.round()).collect::<Vec<_>>(),
                s.disk_mib.iter().map(|v| v.round()).collect::<Vec<_>>(),
                s.height,
                s.stored,
                run.published_bursts()
            );
            samples.push(s);
        }
        if !run.sim.is_running() {
            bail!("the fleet exited early; see {}", run.sim.log().display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    write_csv(&a.out, &samples, &run)?;
    let ranges = plot(
        &a.out.join("soak.png"),
        &samples,
        &run,
        a.interval_s,
        t0_unix,
    )?;
    println!(
        "soak.png: x 0..{:.0} s; y from 0: RSS to {:.0} MiB, disk to {:.0} MiB, burst drain to {:.1} s",
        samples.last().map_or(0.0, |s| s.t),
        ranges[0],
        ranges[1],
        ranges[2]
    );
    let first = samples.first().context("no samples")?;
    let last = samples.last().context("no samples")?;
    let lat: Vec<f64> = run
        .drained
        .iter()
        .flat_map(|d| d.values().copied())
        .collect();
    println!(
        "rss MiB first → last per validator: {:?} → {:?}",
        first.rss_mib.iter().map(|v| v.round()).collect::<Vec<_>>(),
        last.rss_mib.iter().map(|v| v.round()).collect::<Vec<_>>()
    );
    println!(
        "disk MiB first → last per validator: {:?} → {:?} ({:.0} bytes per stored reading on v0)",
        first.disk_mib.iter().map(|v| v.round()).collect::<Vec<_>>(),
        last.disk_mib.iter().map(|v| v.round()).collect::<Vec<_>>(),
        last.disk_mib.first().copied().unwrap_or(0.0) * (1 << 20) as f64
            / last.stored.first().copied().unwrap_or(1).max(1) as f64
    );
    println!(
        "burst drain (published → durable, last reading of each interval), all validators: p50 {:.2} s, p99 {:.2} s, max {:.2} s over {} bursts (interval {} s)",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.iter().copied().fold(0.0, f64::max),
        lat.len(),
        a.interval_s
    );
    println!("heights at the end: {:?}", last.height);
    println!("wrote {}", a.out.display());
    Ok(())
}

fn write_csv(out: &Path, samples: &[Sample], run: &Run) -> Result<()> {
    let mut f = std::fs::File::create(out.join("soak.csv"))?;
    writeln!(f, "t_s,validator,rss_mib,disk_mib,height,stored_readings")?;
    for s in samples {
        for i in 0..VALIDATORS {
            writeln!(
                f,
                "{:.1},{i},{:.1},{:.2},{},{}",
                s.t, s.rss_mib[i], s.disk_mib[i], s.height[i], s.stored[i]
            )?;
        }
    }
    let mut f = std::fs::File::create(out.join("bursts.csv"))?;
    writeln!(f, "burst,validator,interval_end_unix_s,drain_s")?;
    for (i, d) in run.drained.iter().enumerate() {
        for (k, v) in d {
            writeln!(f, "{k},{i},{},{v:.2}", run.first_end + k * run.interval_s)?;
        }
    }
    Ok(())
}

/// Three stacked panels without text (plotters' text needs font libraries): RSS, disk, burst
/// drain time, one colour per validator (red, green, blue, black); the dashed grey line in
/// the bottom panel is the interval (the drain time a validator must stay under).
/// The top of each panel's y axis.
fn plot(
    path: &Path,
    samples: &[Sample],
    run: &Run,
    interval_s: u64,
    t0_unix: f64,
) -> Result<[f64; 3]> {
    use plotters::prelude::*;
    let colours = [RED, GREEN, BLUE, BLACK];
    let root = BitMapBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let panels = root.split_evenly((3, 1));
    let t_max = samples.last().map_or(1.0, |s| s.t).max(1.0);
    let series = |pick: &dyn Fn(&Sample) -> &Vec<f64>| -> Vec<Vec<(f64, f64)>> {
        (0..VALIDATORS)
            .map(|i| samples.iter().map(|s| (s.t, pick(s)[i])).collect())
            .collect()
    };
    let bursts: Vec<Vec<(f64, f64)>> = run
        .drained
        .iter()
        .map(|d| {
            d.iter()
                .map(|(k, v)| ((run.first_end + k * run.interval_s) as f64 - t0_unix, *v))
                .collect()
        })
        .collect();
    let data = [series(&|s| &s.rss_mib), series(&|s| &s.disk_mib), bursts];
    let mut ranges = [0.0; 3];
    for (k, (panel, lines)) in panels.iter().zip(data.iter()).enumerate() {
        let y_max = lines
            .iter()
            .flatten()
            .map(|p| p.1)
            .fold(if k == 2 { interval_s as f64 } else { 1.0 }, f64::max)
            * 1.1;
        ranges[k] = y_max;
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .build_cartesian_2d(0.0..t_max, 0.0..y_max)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_labels(10)
            .y_labels(5)
            .disable_x_axis()
            .disable_y_axis()
            .x_label_formatter(&|_| String::new())
            .y_label_formatter(&|_| String::new())
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (i, line) in lines.iter().enumerate() {
            chart
                .draw_series(LineSeries::new(
                    line.iter().copied(),
                    colours[i % 4].stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        if k == 2 {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, interval_s as f64), (t_max, interval_s as f64)],
                    8,
                    6,
                    RGBColor(128, 128, 128).stroke_width(2),
                ))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ranges)
}

fn scale(a: &Args) -> Result<()> {
    println!(
        "scale: 4 validators, meters doubling from {} ({} doublings), {} s intervals, {} intervals each",
        a.devices, a.doublings, a.interval_s, a.intervals
    );
    println!(
        "\n| meters | readings/s | burst drain p50 / max (s) | peak RSS MiB (max over validators) | heights | verdict |"
    );
    println!("|---|---|---|---|---|---|");
    let mut devices = a.devices;
    for _ in 0..=a.doublings {
        let (verdict, broke) = scale_step(devices, a)?;
        if broke {
            println!("\nbroke at {devices} meters: {verdict}");
            return Ok(());
        }
        devices = devices.saturating_mul(2);
    }
    println!("\nno validator fell behind up to {} meters", devices / 2);
    Ok(())
}

/// One fleet size; the verdict and whether it broke.
fn scale_step(devices: u32, a: &Args) -> Result<(String, bool)> {
    let mut run = Run::start(devices, a.interval_s, a.intervals, a.epoch_s)?;
    let end = run.first_end + (a.intervals - 1) * a.interval_s;
    // Until the last burst is published, then one interval (at most) for it to drain.
    let deadline = end + a.interval_s;
    let mut peak_rss = 0u64;
    let mut dead = None;
    while unix_now() <= deadline {
        run.poll();
        for i in 0..VALIDATORS {
            let n = run.net.node_mut(i);
            if let Ok(p) = n.proc_mut() {
                if !p.is_running() {
                    dead.get_or_insert(i);
                }
                peak_rss = peak_rss.max(p.rss_kib().unwrap_or(0));
            }
        }
        if dead.is_some() {
            break;
        }
        let all_done = run.drained.iter().all(|d| d.len() as u64 >= a.intervals);
        if all_done {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let heights: Vec<u64> = run.net.nodes().iter().map(|n| n.height()).collect();
    let lat: Vec<f64> = run
        .drained
        .iter()
        .flat_map(|d| d.values().copied())
        .collect();
    let worst = lat.iter().copied().fold(0.0, f64::max);
    let top = heights.iter().copied().max().unwrap_or(0);
    let interval = a.interval_s as f64;
    let mut why = Vec::new();
    if let Some(i) = dead {
        why.push(format!(
            "validator {i} died; log tail: {}",
            run.net
                .node(i)
                .proc()
                .map(|p| p.log_tail(3))
                .unwrap_or_default()
        ));
    }
    for (i, d) in run.drained.iter().enumerate() {
        if (d.len() as u64) < a.intervals {
            why.push(format!(
                "validator {i} had stored {} of {} bursts one interval after the last was published (ingest backlog)",
                d.len(),
                a.intervals
            ));
        }
        if let Some((k, v)) = d.iter().find(|(_, v)| **v > interval) {
            why.push(format!(
                "validator {i} took {v:.1} s to store burst {k}, longer than the {interval} s interval"
            ));
        }
    }
    for (i, h) in heights.iter().enumerate() {
        if h + 10 < top {
            why.push(format!("validator {i} at height {h}, {} behind", top - h));
        }
    }
    if !run.sim.is_running() && unix_now() < end {
        why.push(format!(
            "the fleet exited early (see {})",
            run.sim.log().display()
        ));
    }
    let broke = !why.is_empty();
    let verdict = if broke {
        why.join("; ")
    } else {
        "kept up".into()
    };
    println!(
        "| {devices} | {:.0} | {:.2} / {worst:.2} | {:.0} | {heights:?} | {} |",
        f64::from(devices) / interval,
        percentile(&lat, 0.5),
        peak_rss as f64 / 1024.0,
        if broke { "fell behind" } else { "kept up" }
    );
    Ok((verdict, broke))
}

fn main() -> Result<()> {
    let a = args()?;
    match a.mode.as_str() {
        "soak" => soak(&a),
        "scale" => scale(&a),
        m => bail!("unknown mode {m}: soak or scale"),
    }
}
