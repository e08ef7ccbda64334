//! API benchmark: requests/s and p99 latency of the market's production query (one device,
//! one day, 5-minute granularity: 288 values) under `wrk`, beside a trivial axum handler
//! measured in the same run on the same runtime settings (tokio, 2 worker threads).
//!
//! The store is filled by a real ingest run: `groundtruth sim` publishes a day of 5-minute
//! readings from a few solar meters through an embedded broker into a `groundtruth node`.
//!
//! The node is configured with `[api] rate_limit_per_s` and `rate_limit_burst` at 10,000,000:
//! `wrk` comes from one loopback IP, and the limiter still runs on every request (its cost is
//! measured) without refusing any. The bench measures
//! 1. the production query against the running `groundtruth node` process, as served (series
//!    cache on: after the first request the answer comes from the cache, pre-compressed),
//!    alternating twice with the trivial handler (in this process, 2 workers); the best run of
//!    each is kept and the ratio taken from them;
//! 2. after stopping the node, the same store opened in this process and served by the node's
//!    own read model and the API's router with the series cache off (`series_cache_bytes = 0`):
//!    what every request cost before the cache.
//!
//! ```sh
//! cargo build --release -p groundtruth-cli --bin groundtruth
//! cargo build --release -p groundtruth-integration --bin api-bench
//! target/release/api-bench [--duration 10] [--connections 64] [--threads 2] [--no-gzip]
//! target/release/api-bench --serve-only   # fill a node, print its address, serve until stdin closes
//! ```

use anyhow::{bail, ensure, Context, Result};
use groundtruth_integration::{Broker, FleetSpec, TestNet};
use groundtruth_node::chain::read_model::{
    api_config_for, production_regions, HealthBounds, NodeReadModel,
};
use groundtruth_node::ingest::registry::{Registry, SharedRegistry};
use groundtruth_node::metrics::Heartbeat;
use groundtruth_node::production::Production;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// Solar meters in the fleet.
const DEVICES: u32 = 4;
/// One day of 5-minute intervals.
const INTERVALS: u64 = 288;
/// First interval of the simulated day, 2026-06-21T00:00:00Z (`groundtruth sim --start-unix-s`).
const START_UNIX_S: &str = "1782000000";
/// The node's per-IP rate limit in this bench (never reached by one load generator).
const BENCH_RATE_LIMIT: u32 = 10_000_000;
/// That day.
const DAY: &str = "from=2026-06-21T00:00:00Z&to=2026-06-22T00:00:00Z&granularity=5m";

struct Args {
    duration_s: u64,
    connections: u32,
    threads: u32,
    serve_only: bool,
    gzip: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        duration_s: 10,
        connections: 64,
        threads: 2,
        serve_only: false,
        gzip: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value =
            || -> Result<String> { it.next().with_context(|| format!("{flag} needs a value")) };
        match flag.as_str() {
            "--duration" => a.duration_s = value()?.parse()?,
            "--connections" => a.connections = value()?.parse()?,
            "--threads" => a.threads = value()?.parse()?,
            "--serve-only" => a.serve_only = true,
            "--no-gzip" => a.gzip = false,
            other => bail!("unknown argument {other:?} (--duration S, --connections N, --threads N, --no-gzip, --serve-only)"),
        }
    }
    ensure!(
        a.duration_s > 0 && a.connections > 0 && a.threads > 0,
        "values must be positive"
    );
    Ok(a)
}

fn main() -> Result<()> {
    let args = args()?;
    // 1. A node with a store filled by a real ingest run.
    let spec = FleetSpec {
        seed: 7,
        energy: DEVICES,
        gpu: 0,
        storage: 0,
        unknown: 0,
        faults: "none".into(),
        intervals: INTERVALS,
    };
    let mut net = TestNet::builder()
        .broker(Broker::EmbeddedIn(0))
        .fleet(spec)
        .configure(|_, c| {
            c.api.rate_limit_per_s = BENCH_RATE_LIMIT;
            c.api.rate_limit_burst = BENCH_RATE_LIMIT;
        })
        .build()?;
    let manifest = net.run_fleet(&["--presign", "--start-unix-s", START_UNIX_S])?;
    let total = manifest.accepted.len() as u64;
    ensure!(
        total == u64::from(DEVICES) * INTERVALS,
        "fleet published {total} valid readings"
    );
    net.node(0).wait_stored(total, Duration::from_secs(120))?;
    let device = manifest
        .totals
        .keys()
        .next()
        .context("no metered device in the manifest")?
        .clone();
    let path = format!("/v1/production/devices/{device}?{DAY}");
    let node_addr = net.node(0).api().addr;
    let points = wait_points(node_addr, &path)?;
    println!(
        "filled: {total} readings from {DEVICES} solar meters over one day; the query returns {points} values"
    );
    println!("query: GET {path}");

    if args.serve_only {
        println!("serving: http://{node_addr} (groundtruth node; /openapi.json; rate limit {BENCH_RATE_LIMIT}/s per IP)");
        println!("data: {}", net.dir().display());
        println!("(serving until standard input closes)");
        // Until stdin reaches its end; the network (node, broker, directory) is torn down on
        // drop. A script holds a pipe open and closes it to stop.
        std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink())?;
        drop(net);
        return Ok(());
    }

    let wrk = |addr: SocketAddr, path: &str| wrk(&format!("http://{addr}{path}"), &args);
    println!(
        "\nwrk: {} threads, {} connections, {} s per target, {} (machine shared with other work: compare ratios)\n",
        args.threads,
        args.connections,
        args.duration_s,
        if args.gzip { "Accept-Encoding: gzip" } else { "uncompressed" }
    );

    // The trivial handler, on a 2-worker runtime like the node's.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let trivial_addr = runtime.block_on(async {
        let trivial = axum::Router::new().route("/", axum::routing::get(|| async { "ok\n" }));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let a = l.local_addr()?;
        tokio::spawn(groundtruth_api::serve(l, trivial));
        anyhow::Ok(a)
    })?;

    // 1. The node process as served, alternating with the trivial handler so that load from
    // other work on the machine hits both.
    let mut prod = Vec::new();
    let mut triv = Vec::new();
    for _ in 0..2 {
        triv.push(wrk(trivial_addr, "/")?);
        prod.push(wrk(node_addr, &path)?);
    }
    for r in prod.iter().chain(&triv) {
        ensure!(r.non_2xx == 0, "{} non-2xx answers under load", r.non_2xx);
    }
    let best = |v: &[Wrk]| {
        v.iter().cloned().fold(None::<Wrk>, |acc, r| match acc {
            Some(a) if a.rps >= r.rps => Some(a),
            _ => Some(r),
        })
    };
    let (p, t) = (
        best(&prod).context("no run")?,
        best(&triv).context("no run")?,
    );

    // 2. The same store in this process, the node's read model, series cache off.
    let config = net.node(0).config().clone();
    let data_dir = net.node(0).data_dir().to_path_buf();
    // Let sled's periodic flush land, then stop the node (its store lock goes with it).
    std::thread::sleep(Duration::from_secs(2));
    net.node_mut(0).kill9();
    let uncached_addr = runtime.block_on(async {
        let production = Production::open(
            &data_dir.join("production"),
            production_regions(&config, None),
        )?;
        let model = NodeReadModel::new(
            None,
            SharedRegistry::new(Registry::from_records(std::iter::empty())),
            Heartbeat::new(),
            HealthBounds::for_block_time(config.consensus.block_time),
        )
        .with_production(Some(production));
        let mut api = api_config_for(&config);
        api.series_cache_bytes = 0;
        let router = groundtruth_api::router(Arc::new(model), api);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let a = l.local_addr()?;
        tokio::spawn(groundtruth_api::serve(l, router));
        anyhow::Ok(a)
    })?;
    let served = wait_points(uncached_addr, &path)?;
    ensure!(
        served == points,
        "the reopened store answers {served} values, the node answered {points}"
    );
    let u = wrk(uncached_addr, &path)?;
    ensure!(u.non_2xx == 0, "{} non-2xx answers under load", u.non_2xx);

    println!(
        "production query, groundtruth node as served (cache on, limiter on):  {:>8.0} req/s, p99 {:>7.2} ms, {:.1} KiB/response",
        p.rps, p.p99_ms, p.bytes_per_req / 1024.0
    );
    println!(
        "trivial axum handler (\"ok\\n\"), 2 workers:                          {:>8.0} req/s, p99 {:>7.2} ms",
        t.rps, t.p99_ms
    );
    println!(
        "(best of 2 alternating runs each; all runs: production {:?} req/s, trivial {:?} req/s)",
        prod.iter().map(|r| r.rps.round()).collect::<Vec<_>>(),
        triv.iter().map(|r| r.rps.round()).collect::<Vec<_>>()
    );
    println!(
        "production query, same store, node read model, series cache off:       {:>8.0} req/s, p99 {:>7.2} ms, {:.1} KiB/response",
        u.rps, u.p99_ms, u.bytes_per_req / 1024.0
    );
    println!();
    let ratio = p.rps / t.rps.max(1e-9);
    println!(
        "ratio production / trivial: {ratio:.2} (uncached: {:.2})",
        u.rps / t.rps.max(1e-9)
    );
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "targets: >= 20000 req/s: {}; p99 <= 10 ms: {}; >= 0.5 x trivial: {}",
        verdict(p.rps >= 20_000.0),
        verdict(p.p99_ms <= 10.0),
        verdict(ratio >= 0.5)
    );
    drop(runtime);
    Ok(())
}

/// Polls `path` until it answers 200 with points; returns how many.
fn wait_points(addr: SocketAddr, path: &str) -> Result<usize> {
    let api = groundtruth_integration::Api { addr };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = api.get_json(path)?;
        let n = v["points"].as_array().map(|p| p.len()).unwrap_or(0);
        if code == 200 && n as u64 == INTERVALS {
            return Ok(n);
        }
        if std::time::Instant::now() >= deadline {
            let devices = api
                .get_json("/v1/devices")
                .map(|(_, d)| d)
                .unwrap_or_default();
            bail!("{path}: {code} with {n} points after 60 s: {v}; /v1/devices: {devices}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One `wrk` run's figures.
#[derive(Debug, Clone)]
struct Wrk {
    rps: f64,
    p99_ms: f64,
    non_2xx: u64,
    bytes_per_req: f64,
}

fn wrk(url: &str, args: &Args) -> Result<Wrk> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "--latency",
        "-t",
        &args.threads.to_string(),
        "-c",
        &args.connections.to_string(),
        "-d",
        &format!("{}s", args.duration_s),
    ]);
    if args.gzip {
        // Like a market client: compressed responses.
        cmd.args(["-H", "Accept-Encoding: gzip"]);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("wrk is not installed: run scripts/setup.sh")?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix).map(str::trim))
    };
    let rps: f64 = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p99_ms = parse_ms(field("99%").context("no 99% latency")?)?;
    let non_2xx = field("Non-2xx or 3xx responses:")
        .map(str::parse)
        .transpose()?
        .unwrap_or(0);
    let bytes = field("Transfer/sec:")
        .map(parse_bytes)
        .transpose()?
        .unwrap_or(0.0);
    Ok(Wrk {
        rps,
        p99_ms,
        non_2xx,
        bytes_per_req: if rps > 0.0 { bytes / rps } else { 0.0 },
    })
}

/// `812.00us`, `1.23ms`, `2.00s` as milliseconds.
fn parse_ms(s: &str) -> Result<f64> {
    let (n, unit) = split_unit(s);
    let n: f64 = n.parse().with_context(|| format!("latency {s:?}"))?;
    Ok(match unit {
        "us" => n / 1e3,
        "ms" => n,
        "s" => n * 1e3,
        "m" => n * 60e3,
        other => bail!("latency unit {other:?}"),
    })
}

/// `1.20MB` as bytes.
fn parse_bytes(s: &str) -> Result<f64> {
    let (n, unit) = split_unit(s);
    let n: f64 = n.parse().with_context(|| format!("size {s:?}"))?;
    Ok(n * match unit {
        "B" => 1.0,
        "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        other => bail!("size unit {other:?}"),
    })
}

fn split_unit(s: &str) -> (&str, &str) {
    let i = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    s.split_at(i)
}
