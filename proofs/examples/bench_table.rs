//! Prints the benchmark table of `PROOFS.md`: each figure next to the baseline (a Rescue-Prime
//! hash chain at the same trace length, with the level's large-trace options), their ratio,
//! verification time, STARK proof size, envelope size (proof plus public inputs) and the peak RSS of the process that ran it (each workload runs in its own process).
//!
//! ```text
//! cargo run --release -p groundtruth-proofs --features concurrent --example bench_table
//! cargo run --release -p groundtruth-proofs --features concurrent --example bench_table -- day
//! ```

#[path = "../benches/baseline.rs"]
mod baseline;

use std::time::{Duration, Instant};

use groundtruth_proofs::{
    metered, por, prove_metered, prove_retrievability, verify, Challenge, DeviceSeries, Epoch,
    ProofEnvelope, SecurityLevel,
};

const WORKLOADS: [&str; 5] = [
    "day-1core",
    "day",
    "batch100k",
    "batch100k-128",
    "por-k100-d30",
];

fn series(readings: usize, per_device: usize) -> Vec<DeviceSeries> {
    let mut x = 0x1234_5678_9abc_def1u64;
    let mut out = Vec::new();
    let mut left = readings;
    let mut id = 0u32;
    while left > 0 {
        let n = left.min(per_device);
        left -= n;
        let mut dev = [0u8; 32];
        dev[..4].copy_from_slice(&id.to_le_bytes());
        id += 1;
        let cap = 5_000;
        let values = (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % (cap + 1)
            })
            .collect();
        out.push(DeviceSeries {
            id: dev,
            cap,
            start_register: 1_000_000,
            first_seq: 7,
            first_interval_start: 1_700_000_000,
            interval_len: 300,
            values,
        });
    }
    out
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn time<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, Duration) {
    let (mut out, mut best) = time(&mut f);
    for _ in 1..runs {
        let (o, d) = time(&mut f);
        if d < best {
            best = d;
            out = o;
        }
    }
    (out, best)
}

fn verify_time(env: &ProofEnvelope) -> Duration {
    let runs = 20;
    let t = Instant::now();
    for _ in 0..runs {
        if let Err(e) = verify(env) {
            panic!("verification failed: {e}");
        }
    }
    t.elapsed() / runs
}

fn run(workload: &str) {
    let threads = if workload == "day-1core" { 1 } else { 2 };
    let pool = winter_utils::rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap_or_else(|e| panic!("thread pool: {e}"));
    pool.install(|| {
        let (runs, level) = match workload {
            "day-1core" | "day" => (5, SecurityLevel::Default100),
            "batch100k-128" => (1, SecurityLevel::High128),
            _ => (1, SecurityLevel::Default100),
        };
        let (env, rows, prove) = match workload {
            "day-1core" | "day" | "batch100k" | "batch100k-128" => {
                let n = if workload.starts_with("day") { 288 } else { 100_000 };
                let s = series(n, 288);
                let epoch = Epoch::covering(1, &s);
                let (env, d) = best_of(runs, || prove_metered(&epoch, &s, level));
                (env, metered::trace_length(n), d)
            }
            "por-k100-d30" => {
                let data: Vec<u8> = (0..256 * 1024u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
                let c = por::commit_reader(&data[..], 30, None).unwrap_or_else(|e| panic!("{e}"));
                let ch = Challenge { root: c.root, depth: 30, num_chunks: c.num_chunks, seed: [9; 32], k: 100 };
                let resp = por::respond_reader(&data[..], &ch, None).unwrap_or_else(|e| panic!("{e}"));
                let (env, d) = best_of(runs, || prove_retrievability(&ch, &resp, level));
                (env, ch.sample_count() * 512, d)
            }
            other => panic!("unknown workload {other}"),
        };
        let env = env.unwrap_or_else(|e| panic!("prove failed: {e}"));
        let size = env.to_bytes().map(|b| b.len()).unwrap_or(0);
        let stark = env.proof.len();
        let verify = verify_time(&env);
        let (_, base) = best_of(runs, || baseline::prove_chain(rows, level.options()));
        println!(
            "| {workload} | {threads} | 2^{} | {:.1} ms | {:.1} ms | {:.2}x | {:.2} ms | {:.1} KB | {:.1} KB | {:.0} MB |",
            rows.ilog2(),
            prove.as_secs_f64() * 1e3,
            base.as_secs_f64() * 1e3,
            prove.as_secs_f64() / base.as_secs_f64(),
            verify.as_secs_f64() * 1e3,
            stark as f64 / 1000.0,
            size as f64 / 1000.0,
            peak_rss_mb(),
        );
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(w) = args.first() {
        run(w);
        return;
    }
    println!("| workload | threads | rows | prove | baseline chain, same rows | ratio | verify | STARK proof | envelope (with public inputs) | peak RSS |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    for w in WORKLOADS {
        let out = std::process::Command::new(&exe)
            .arg(w)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        print!("{}", String::from_utf8_lossy(&out.stdout));
        if !out.status.success() {
            eprintln!("{w} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
}
