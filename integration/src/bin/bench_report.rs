//! The benchmark report: runs every benchmark of the workspace with short settings and prints
//! one table, each figure beside the baseline its benchmark measured in the same run and their
//! ratio. `scripts/bench-report.sh` builds everything in release and runs this.
//!
//! | area | what runs | baseline (same run) |
//! |---|---|---|
//! | ingest | `ingest-bench` (sim → broker → node, then the node draining a backlog) | raw ed25519 batch verification, 1 thread |
//! | published → durable | in this process: one device, one QoS 1 reading at a time into a node with an embedded broker; a reading is durable when the node's `stored_accepted` counts it | the broker's PUBACK for the same publish |
//! | proving | `bench_table day` (device-day STARK) | Rescue-Prime hash chain, same trace length |
//! | PoR | `bench_table por-k100-d30` (retrievability STARK) and the ledger's `storage` bench (checking one `SubmitStorageProof`) | hash chain, same rows; a transfer's check |
//! | consensus | `ledger-bench` (4 validators, transfers to finality) | pure `apply_raw_block`, 1 thread |
//! | API | `api-bench` (the market's production query under wrk) | a trivial axum handler |
//! | end to end | `audit-bench` (devnet: readings → attested epoch commitment → STARK audit → L1 anchor on anvil) | the epoch length (the floor of the commitment latency) |
//!
//! A benchmark that fails is a row saying so; the report goes on.
//!
//! ```text
//! scripts/bench-report.sh            # short settings (about 6 minutes)
//! target/release/bench-report --list # the commands it runs
//! ```

use anyhow::{bail, Context, Result};
use groundtruth_device_sdk::DeviceKey;
use groundtruth_integration::mqtt::{energy_frame, fresh_client_id, MqttClient};
use groundtruth_integration::{Broker, Genesis, TestNet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One line of the table.
struct Row {
    area: &'static str,
    figure: String,
    value: String,
    baseline: String,
    baseline_value: String,
    ratio: String,
}

impl Row {
    fn new(area: &'static str, figure: &str, value: String) -> Self {
        Self {
            area,
            figure: figure.into(),
            value,
            baseline: String::new(),
            baseline_value: String::new(),
            ratio: String::new(),
        }
    }

    fn against(mut self, baseline: &str, value: String, ratio: Option<f64>) -> Self {
        self.baseline = baseline.into();
        self.baseline_value = value;
        self.ratio = ratio
            .filter(|r| r.is_finite())
            .map_or_else(|| "—".into(), |r| format!("{r:.2}x"));
        self
    }

    fn failed(area: &'static str, what: &str, e: &anyhow::Error) -> Self {
        let why = format!("{e:#}");
        let why = why.lines().next().unwrap_or_default().chars().take(120);
        Self::new(area, what, format!("FAILED: {}", why.collect::<String>()))
    }
}

/// The directory of this executable (`target/release/`), where the other benches are.
fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().context("no directory")?.to_path_buf())
}

/// Runs a command to completion (at most `timeout`), echoing its stdout; its stdout.
fn run(what: &str, program: &str, args: &[&str], timeout: Duration) -> Result<String> {
    eprintln!("\n=== {what}: {program} {}", args.join(" "));
    let out_path = std::env::temp_dir().join(format!(
        "bench-report-{}-{}.out",
        std::process::id(),
        what.replace(' ', "-")
    ));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::fs::File::create(&out_path)?))
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {program}"))?;
    let until = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait()? {
            break s;
        }
        if Instant::now() > until {
            // SIGINT first: the devnet and the benches stop their children on it.
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            std::thread::sleep(Duration::from_secs(20));
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    eprint!("{out}");
    if !status.success() {
        bail!("{what} exited with {status}");
    }
    Ok(out)
}

/// The first number after `key` on the first line that contains `key`.
fn num_after(text: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(key))?;
    let rest = &line[line.find(key)? + key.len()..];
    first_number(rest)
}

/// The first decimal number in `s`.
fn first_number(s: &str) -> Option<f64> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let tail = &s[start..];
    let end = tail
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(tail.len());
    tail[..end].trim_end_matches('.').parse().ok()
}

/// The cells of the markdown table row that starts with `| name |`.
fn table_row(text: &str, name: &str) -> Option<Vec<String>> {
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("| {name} |")))?;
    Some(
        line.trim_matches('|')
            .split('|')
            .map(|c| c.trim().to_string())
            .collect(),
    )
}

fn rate(v: f64) -> String {
    format!("{v:.0}/s")
}

fn ms(v: f64) -> String {
    format!("{v:.2} ms")
}

fn s(v: f64) -> String {
    format!("{v:.1} s")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// ingest-bench's baseline line, up to the figure (the text before it holds numbers too).
const RAW_VERIFY: &str = "raw ed25519 batch verification (ZIP-215, batches of 256):";

fn ingest(rows: &mut Vec<Row>, dir: &str) -> Result<()> {
    let bin = format!("{dir}/ingest-bench");
    let out = run("ingest", &bin, &["20000"], Duration::from_secs(600))?;
    let raw = num_after(&out, RAW_VERIFY).context("no raw rate")?;
    let e2e = num_after(
        &out,
        "end to end (sim + embedded broker + node on the same cores):",
    )
    .context("no end-to-end rate")?;
    let drain = num_after(
        &out,
        "node ingest path alone (backlog drained from a broker):",
    )
    .context("no drain rate")?;
    let base = "raw ed25519 batch verify, 1 thread";
    rows.push(
        Row::new("ingest", "readings/s, sim + broker + node", rate(e2e)).against(
            base,
            rate(raw),
            Some(e2e / raw),
        ),
    );
    rows.push(
        Row::new("ingest", "readings/s, node draining a backlog", rate(drain)).against(
            base,
            rate(raw),
            Some(drain / raw),
        ),
    );
    Ok(())
}

/// Published → durable, one reading at a time (closed loop, an idle node): the time from
/// handing a QoS 1 publish to the client to the node's `stored_accepted` counting it, beside
/// the time to the broker's PUBACK for the same publish.
fn durable_latency(rows: &mut Vec<Row>, readings: u64) -> Result<()> {
    eprintln!("\n=== published → durable: {readings} readings, one at a time");
    let key = DeviceKey::from_seed(&[77; 32]);
    let net = TestNet::builder()
        .broker(Broker::EmbeddedIn(0))
        .genesis(Genesis::devnet()?.energy_device(&key, 5_000))
        .build()?;
    let node = net.node(0);
    let topic = groundtruth_device_sdk::topics::readings_topic(&key.device_id());
    let mut client = MqttClient::connect_ok(node.broker(), &fresh_client_id(), None)?;
    let stored = |n: &groundtruth_integration::Node| {
        n.metrics()
            .map(|m| m.get("groundtruth_ingest_stored_accepted") as u64)
            .unwrap_or(0)
    };
    let mut durable = Vec::new();
    let mut acked = Vec::new();
    let before = stored(node);
    for seq in 0..readings {
        let frame = energy_frame(&key, seq, 100, (seq + 1) * 100);
        let t = Instant::now();
        let n = client.publish(&topic, &[frame], Duration::from_secs(10))?;
        let ack = t.elapsed();
        if n != 1 {
            bail!("reading {seq} not acknowledged by the broker");
        }
        let until = t + Duration::from_secs(10);
        loop {
            if stored(node) > before + seq {
                break;
            }
            if Instant::now() > until {
                bail!("reading {seq} not durable within 10 s");
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        durable.push(t.elapsed().as_secs_f64() * 1e3);
        acked.push(ack.as_secs_f64() * 1e3);
    }
    client.disconnect();
    durable.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    eprintln!(
        "durable p50 {:.2} ms p99 {:.2} ms; PUBACK p50 {:.2} ms p99 {:.2} ms",
        percentile(&durable, 0.5),
        percentile(&durable, 0.99),
        percentile(&acked, 0.5),
        percentile(&acked, 0.99)
    );
    for (p, name) in [(0.5, "p50"), (0.99, "p99")] {
        let (d, a) = (percentile(&durable, p), percentile(&acked, p));
        rows.push(
            Row::new(
                "published → durable",
                &format!("{name}, one reading at a time"),
                ms(d),
            )
            .against(&format!("broker PUBACK {name}"), ms(a), Some(d / a)),
        );
    }
    Ok(())
}

fn proving(rows: &mut Vec<Row>) -> Result<()> {
    for (workload, area, figure) in [
        (
            "day",
            "proving",
            "device-day STARK (288 readings), 2 threads",
        ),
        (
            "por-k100-d30",
            "PoR",
            "retrievability STARK, k=100, depth 30",
        ),
    ] {
        let out = match run(
            &format!("bench_table {workload}"),
            "cargo",
            &[
                "run",
                "--release",
                "-q",
                "-p",
                "groundtruth-proofs",
                "--features",
                "concurrent",
                "--example",
                "bench_table",
                "--",
                workload,
            ],
            Duration::from_secs(600),
        ) {
            Ok(o) => o,
            Err(e) => {
                rows.push(Row::failed(area, figure, &e));
                continue;
            }
        };
        let Some(cells) = table_row(&out, workload) else {
            rows.push(Row::new(area, figure, "FAILED: no table row".into()));
            continue;
        };
        // | workload | threads | rows | prove | baseline | ratio | verify | STARK | envelope | RSS |
        let cell = |i: usize| cells.get(i).and_then(|c| first_number(c));
        let (prove, base) = (cell(3), cell(4));
        rows.push(
            Row::new(
                area,
                &format!("{figure}: prove"),
                prove.map_or("?".into(), ms),
            )
            .against(
                &format!("Rescue chain, {} rows", cells.get(2).map_or("?", |c| c)),
                base.map_or("?".into(), ms),
                prove.zip(base).map(|(p, b)| p / b),
            ),
        );
        rows.push(Row::new(
            area,
            &format!("{figure}: verify / proof size"),
            format!(
                "{} / {}",
                cell(6).map_or("?".into(), ms),
                cells.get(7).map_or("?", |c| c)
            ),
        ));
    }
    match run(
        "ledger storage check",
        "cargo",
        &[
            "bench",
            "-q",
            "-p",
            "groundtruth-ledger",
            "--bench",
            "storage",
            "--",
            "100",
            "30",
        ],
        Duration::from_secs(600),
    ) {
        Ok(out) => {
            let base = num_after(&out, "transfer (baseline)");
            let ok = num_after(&out, "honest proof (verified)");
            rows.push(
                Row::new(
                    "PoR",
                    "ledger check of one SubmitStorageProof (k=100)",
                    ok.map_or("?".into(), ms),
                )
                .against(
                    "a transfer's check",
                    base.map_or("?".into(), ms),
                    ok.zip(base).map(|(o, b)| o / b),
                ),
            );
        }
        Err(e) => rows.push(Row::failed("PoR", "ledger storage check", &e)),
    }
    Ok(())
}

fn consensus(rows: &mut Vec<Row>, dir: &str, seconds: u64) -> Result<()> {
    let bin = format!("{dir}/ledger-bench");
    let secs = seconds.to_string();
    let out = run(
        "consensus",
        &bin,
        &["--seconds", &secs],
        Duration::from_secs(600),
    )?;
    let base = num_after(&out, "baseline: pure ledger apply_raw_block").map(|_| {
        // "…blocks of 2000 transfers: N tx/s": the figure is the last number on the line.
        out.lines()
            .find(|l| l.contains("baseline: pure ledger apply_raw_block"))
            .and_then(|l| l.rsplit(':').next())
            .and_then(first_number)
    });
    let base = base.flatten().context("no baseline")?;
    let tps = num_after(&out, "sustained finalized:").context("no finalized rate")?;
    let median = num_after(&out, "submission to finality: median");
    let p90 = num_after(&out, ", p90");
    rows.push(
        Row::new(
            "consensus",
            "finalized transfers/s, 4 validators",
            format!("{tps:.0} tx/s"),
        )
        .against(
            "apply_raw_block, 1 thread",
            format!("{base:.0} tx/s"),
            Some(tps / base),
        ),
    );
    rows.push(Row::new(
        "consensus",
        "submission → finality median / p90",
        format!(
            "{} / {}",
            median.map_or("?".into(), s),
            p90.map_or("?".into(), s)
        ),
    ));
    Ok(())
}

fn api(rows: &mut Vec<Row>, dir: &str, seconds: u64) -> Result<()> {
    let bin = format!("{dir}/api-bench");
    let secs = seconds.to_string();
    let out = run(
        "api",
        &bin,
        &["--duration", &secs],
        Duration::from_secs(600),
    )?;
    let prod = num_after(&out, "production query, groundtruth node as served")
        .context("no production figure")?;
    let prod_p99 = out
        .lines()
        .find(|l| l.contains("production query, groundtruth node as served"))
        .and_then(|l| l.split("p99").nth(1))
        .and_then(first_number);
    let triv = num_after(&out, "trivial axum handler (\"ok\\n\"), 2 workers:")
        .context("no trivial figure")?;
    let triv_p99 = out
        .lines()
        .find(|l| l.contains("trivial axum handler"))
        .and_then(|l| l.split("p99").nth(1))
        .and_then(first_number);
    rows.push(
        Row::new(
            "API",
            "production query (1 device, 1 day, 5 min), node as served",
            format!("{prod:.0} req/s"),
        )
        .against(
            "trivial axum handler",
            format!("{triv:.0} req/s"),
            Some(prod / triv),
        ),
    );
    if let (Some(p), Some(t)) = (prod_p99, triv_p99) {
        rows.push(Row::new("API", "production query p99", ms(p)).against(
            "trivial handler p99",
            ms(t),
            Some(p / t),
        ));
    }
    Ok(())
}

fn end_to_end(rows: &mut Vec<Row>, dir: &str, args: &[&str], epoch_s: f64) -> Result<()> {
    let bin = format!("{dir}/audit-bench");
    let out = run("end to end", &bin, args, Duration::from_secs(900))?;
    let line = |key: &str| -> Option<(f64, f64)> {
        let l = out.lines().find(|l| l.contains(key))?;
        let p50 = first_number(l.split("p50").nth(1)?)?;
        let p99 = first_number(l.split("p99").nth(1)?)?;
        Some((p50, p99))
    };
    let floor = format!("epoch length {epoch_s:.0} s");
    if let Some((p50, p99)) = line("publication → epoch commitment") {
        rows.push(
            Row::new("end to end", "reading → epoch commitment p50", s(p50)).against(
                &floor,
                s(epoch_s),
                Some(p50 / epoch_s),
            ),
        );
        rows.push(
            Row::new("end to end", "reading → epoch commitment p99", s(p99)).against(
                &floor,
                s(epoch_s),
                Some(p99 / epoch_s),
            ),
        );
    } else {
        rows.push(Row::new(
            "end to end",
            "reading → epoch commitment",
            "FAILED: no figure".into(),
        ));
    }
    match line("publication → L1 anchor") {
        Some((p50, p99)) if p50.is_finite() => {
            rows.push(
                Row::new("end to end", "reading → L1 anchor p50", s(p50)).against(
                    &floor,
                    s(epoch_s),
                    Some(p50 / epoch_s),
                ),
            );
            rows.push(
                Row::new("end to end", "reading → L1 anchor p99", s(p99)).against(
                    &floor,
                    s(epoch_s),
                    Some(p99 / epoch_s),
                ),
            );
        }
        _ => rows.push(Row::new(
            "end to end",
            "reading → L1 anchor",
            "no epoch anchored in time".into(),
        )),
    }
    let raw = out
        .lines()
        .find(|l| l.contains("raw batch proof"))
        .and_then(|l| l.rsplit(':').next())
        .and_then(first_number);
    let cap = num_after(
        &out,
        "audit capacity across the validator set (sum of proving rates):",
    );
    if let (Some(raw), Some(cap)) = (raw, cap) {
        rows.push(
            Row::new(
                "proving",
                "audit proving, 4 validators in the devnet (sum)",
                format!("{cap:.0} readings/s"),
            )
            .against(
                "raw batch proof, 1 core, same batch",
                format!("{raw:.0} readings/s"),
                Some(cap / raw),
            ),
        );
    }
    Ok(())
}

fn print_table(rows: &[Row]) {
    println!("\n## Benchmark report\n");
    println!("| area | figure | value | same-run baseline | baseline value | ratio |");
    println!("|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.area, r.figure, r.value, r.baseline, r.baseline_value, r.ratio
        );
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let long = args.iter().any(|a| a == "--long");
    let dir = bin_dir()?.display().to_string();
    let (bench_s, api_s) = if long { (20, 10) } else { (8, 3) };
    let epoch_s: u64 = if long { 60 } else { 20 };
    let (epoch, meters, epochs) = (
        epoch_s.to_string(),
        if long { "2000" } else { "200" },
        if long { "3" } else { "2" },
    );
    let audit_args = [
        "--meters",
        meters,
        "--epoch-s",
        &epoch,
        "--interval-s",
        "5",
        "--epochs",
        epochs,
    ];
    if args.iter().any(|a| a == "--list") {
        println!("{dir}/ingest-bench 20000");
        println!("(in process) published → durable, 300 readings one at a time");
        println!("cargo run --release -p groundtruth-proofs --features concurrent --example bench_table -- day");
        println!("cargo run --release -p groundtruth-proofs --features concurrent --example bench_table -- por-k100-d30");
        println!("cargo bench -p groundtruth-ledger --bench storage -- 100 30");
        println!("{dir}/ledger-bench --seconds {bench_s}");
        println!("{dir}/api-bench --duration {api_s}");
        println!("{dir}/audit-bench {}", audit_args.join(" "));
        return Ok(());
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    if let Err(e) = ingest(&mut rows, &dir) {
        rows.push(Row::failed("ingest", "ingest-bench", &e));
    }
    if let Err(e) = durable_latency(&mut rows, 300) {
        rows.push(Row::failed("published → durable", "latency", &e));
    }
    if let Err(e) = proving(&mut rows) {
        rows.push(Row::failed("proving", "bench_table", &e));
    }
    if let Err(e) = consensus(&mut rows, &dir, bench_s) {
        rows.push(Row::failed("consensus", "ledger-bench", &e));
    }
    if let Err(e) = api(&mut rows, &dir, api_s) {
        rows.push(Row::failed("API", "api-bench", &e));
    }
    if let Err(e) = end_to_end(&mut rows, &dir, &audit_args, epoch_s as f64) {
        rows.push(Row::failed("end to end", "audit-bench", &e));
    }
    print_table(&rows);
    println!(
        "\n{} cores, {:.0} s in all; ratio = figure / baseline (for latencies, higher is slower; for rates, higher is faster)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_read_from_the_benches_output() {
        let ingest = "raw ed25519 batch verification (ZIP-215, batches of 256):     61234/s on 1 thread, 100000/s on 2 threads\n\
                      end to end (sim + embedded broker + node on the same cores):     20500/s";
        assert_eq!(num_after(ingest, RAW_VERIFY), Some(61234.0));
        assert_eq!(
            num_after(
                ingest,
                "end to end (sim + embedded broker + node on the same cores):"
            ),
            Some(20500.0)
        );
        assert_eq!(num_after(ingest, "absent"), None);
        let table = "| workload | threads |\n| day | 2 | 2^9 | 181.3 ms | 120.0 ms | 1.51x | 2.10 ms | 60.1 KB | 62.0 KB | 40 MB |";
        let row = table_row(table, "day").unwrap_or_default();
        assert_eq!(row.get(3).and_then(|c| first_number(c)), Some(181.3));
        assert_eq!(row.get(2).map(String::as_str), Some("2^9"));
        assert!(table_row(table, "da").is_none());
        assert_eq!(first_number(" 12.5s  p99 30.0s"), Some(12.5));
        assert_eq!(first_number("no digits"), None);
    }
}
