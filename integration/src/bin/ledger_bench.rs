//! Ledger benchmark: four `groundtruth node` validators on this machine; signed transfers are
//! submitted through `POST /txs` as fast as the mempools take them (each account always to the
//! same validator, so its nonces stay in order); finality is observed through `/block/<h>`.
//!
//! Prints sustained finalized tx/s, median and p90 time from submission to a committed block,
//! and a baseline measured in the same run: `apply_raw_block` of the pure ledger on one core.
//!
//! ```text
//! cargo build --release --bin groundtruth --bin ledger-bench
//! target/release/ledger-bench [--seconds 20] [--accounts 400] [--block-time 200ms] [--in-flight 24000]
//! ```
//! `--in-flight` caps submitted-but-not-final transactions (the client's queue): higher gives
//! more throughput and more time to finality.
//! ```text
//! ```

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use groundtruth_integration::{Genesis, TestNet};
use groundtruth_ledger::{apply_raw_block, Address, Genesis as LedgerGenesis, State, Tx, TxBody};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn account_key(i: usize) -> SigningKey {
    SigningKey::from_bytes(&blake3::derive_key(
        "groundtruth ledger-bench account",
        &i.to_be_bytes(),
    ))
}

fn addr(k: &SigningKey) -> Address {
    Address(k.verifying_key().to_bytes())
}

fn transfer(chain_id: &str, k: &SigningKey, nonce: u64, to: Address) -> Vec<u8> {
    Tx {
        signer: addr(k),
        nonce,
        fee: 1,
        body: TxBody::Transfer { to, amount: 1 },
    }
    .sign(chain_id, k)
    .encode()
}

fn encode_batch(txs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in txs {
        out.extend_from_slice(&(t.len() as u32).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// `apply_raw_block` throughput of the pure ledger, one thread, blocks of `block` transfers.
fn baseline(genesis: &str, keys: &[SigningKey], total: usize, block: usize) -> Result<f64> {
    let g = LedgerGenesis::from_toml(genesis)?;
    let mut state = State::from_genesis(&g)?;
    let chain_id = state.chain_id().to_string();
    let sink = addr(&keys[0]);
    let mut nonces = vec![0u64; keys.len()];
    let txs: Vec<Vec<u8>> = (0..total)
        .map(|j| {
            let i = j % keys.len();
            nonces[i] += 1;
            transfer(&chain_id, &keys[i], nonces[i] - 1, sink)
        })
        .collect();
    let started = Instant::now();
    for chunk in txs.chunks(block) {
        let h = state.height() + 1;
        let out = apply_raw_block(&mut state, h, None, chunk)?;
        if let Some(e) = out.results.iter().find_map(|r| r.as_ref().err()) {
            bail!("baseline transaction rejected: {e}");
        }
    }
    Ok(total as f64 / started.elapsed().as_secs_f64())
}

/// `200ms`, `1s` or `1.5s`.
fn parse_duration(s: &str) -> Result<Duration> {
    if let Some(ms) = s.strip_suffix("ms") {
        return Ok(Duration::from_millis(ms.parse()?));
    }
    if let Some(secs) = s.strip_suffix('s') {
        return Ok(Duration::from_secs_f64(secs.parse()?));
    }
    bail!("{s}: expected a duration such as 200ms or 1s")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> Result<()> {
    let mut seconds = 20u64;
    let mut accounts = 400usize;
    let mut block_time = "200ms".to_string();
    let mut max_in_flight = 24_000usize;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let v = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--seconds" => seconds = v.parse()?,
            "--accounts" => accounts = v.parse()?,
            "--block-time" => block_time = v,
            "--in-flight" => max_in_flight = v.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let keys: Vec<SigningKey> = (0..accounts).map(account_key).collect();
    let mut genesis = Genesis::devnet()?.epoch_length(100);
    for k in &keys {
        genesis = genesis.account(&addr(k).to_string(), 1_000_000_000);
    }
    let genesis_text = genesis.to_toml()?;

    let base = baseline(&genesis_text, &keys, 20_000, 2_000)?;
    println!(
        "baseline: pure ledger apply_raw_block, 1 thread, blocks of 2000 transfers: {base:.0} tx/s"
    );

    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(genesis)
        .block_time(parse_duration(&block_time)?)
        .mempool_max_txs(200_000)
        .build()?;
    net.wait_height(&[0, 1, 2, 3], 2, Duration::from_secs(60))?;
    let chain_id = net.node(0).status()?["chain_id"]
        .as_str()
        .context("chain id")?
        .to_string();
    let apis: Vec<_> = net.nodes().iter().map(|v| v.api()).collect();

    let pending: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<(Instant, f64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let rejected = Arc::new(AtomicU64::new(0));
    let in_block_rejected = Arc::new(AtomicU64::new(0));
    let submitted = Arc::new(AtomicU64::new(0));

    // Observer: follows validator 0's blocks.
    let observer = {
        let (pending, latencies, stop, bad) = (
            pending.clone(),
            latencies.clone(),
            stop.clone(),
            in_block_rejected.clone(),
        );
        let api = apis[0];
        let mut next = net.node(0).height() + 1;
        std::thread::spawn(move || {
            let deadline_after_stop = Duration::from_secs(15);
            let mut stopped_at: Option<Instant> = None;
            loop {
                if stop.load(Ordering::Relaxed) {
                    let s = *stopped_at.get_or_insert_with(Instant::now);
                    if s.elapsed() > deadline_after_stop
                        || pending.lock().map(|p| p.is_empty()).unwrap_or(true)
                    {
                        return;
                    }
                }
                match api.get_json(&format!("/block/{next}")) {
                    Ok((200, b)) => {
                        let now = Instant::now();
                        let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                        let mut l = latencies.lock().unwrap_or_else(|e| e.into_inner());
                        for t in b["txs"].as_array().into_iter().flatten() {
                            let Some(h) = t["hash"].as_str() else {
                                continue;
                            };
                            if let Some(at) = p.remove(h) {
                                if t["ok"] == true {
                                    l.push((now, now.duration_since(at).as_secs_f64()));
                                } else {
                                    bad.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        next += 1;
                    }
                    _ => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
    };

    // Senders: one per validator, each owning the accounts i ≡ k (mod 4).
    let started = Instant::now();
    let mut senders = Vec::new();
    for (k, api) in apis.iter().copied().enumerate() {
        let mine: Vec<SigningKey> = keys.iter().skip(k).step_by(4).cloned().collect();
        let (pending, stop, rejected, submitted, chain_id) = (
            pending.clone(),
            stop.clone(),
            rejected.clone(),
            submitted.clone(),
            chain_id.clone(),
        );
        let sink = addr(&keys[0]);
        senders.push(std::thread::spawn(move || -> Result<()> {
            let mut nonces = vec![0u64; mine.len()];
            while !stop.load(Ordering::Relaxed) {
                if pending.lock().map(|p| p.len()).unwrap_or(0) >= max_in_flight {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                let txs: Vec<Vec<u8>> = mine
                    .iter()
                    .zip(nonces.iter())
                    .map(|(key, n)| transfer(&chain_id, key, *n, sink))
                    .collect();
                let at = Instant::now();
                let r = api.post("/txs", &encode_batch(&txs))?;
                if r.status != 200 {
                    bail!("POST /txs: {} {}", r.status, r.text());
                }
                let results = r.json()?;
                let mut p = pending.lock().unwrap_or_else(|e| e.into_inner());
                for (i, r) in results.as_array().into_iter().flatten().enumerate() {
                    match r["hash"].as_str() {
                        Some(h) => {
                            p.insert(h.to_string(), at);
                            nonces[i] += 1;
                            submitted.fetch_add(1, Ordering::Relaxed);
                        }
                        None => {
                            rejected.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            Ok(())
        }));
    }
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let window_end = Instant::now();
    for s in senders {
        s.join().map_err(|_| anyhow::anyhow!("sender panicked"))??;
    }
    let _ = observer.join();

    let lat = latencies.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // Sustained rate: finalized in the window after a 3 s warm-up.
    let warm = started + Duration::from_secs(3);
    let in_window = lat
        .iter()
        .filter(|(t, _)| *t >= warm && *t <= window_end)
        .count();
    let window = window_end.duration_since(warm).as_secs_f64();
    let rate = in_window as f64 / window;
    let mut l: Vec<f64> = lat.iter().map(|(_, d)| *d).collect();
    l.sort_by(|a, b| a.total_cmp(b));
    let heights: Vec<u64> = net.nodes().iter().map(|v| v.height()).collect();
    println!(
        "4 validators, {accounts} accounts, block time {block_time}, at most {max_in_flight} in flight, {seconds} s of load on {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "submitted {} (refused at admission {}), finalized {} (rejected in block {}), heights {heights:?}",
        submitted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        lat.len(),
        in_block_rejected.load(Ordering::Relaxed),
    );
    println!("sustained finalized: {rate:.0} tx/s (target >= 2000)");
    println!(
        "submission to finality: median {:.3} s, p90 {:.3} s (target median <= 1 s)",
        percentile(&l, 0.5),
        percentile(&l, 0.9)
    );
    println!("ratio to the one-core ledger baseline: {:.2}", rate / base);
    Ok(())
}
