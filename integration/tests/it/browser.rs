//! The explorer in a real headless Chromium: four `groundtruth node` validators with timed
//! epochs and a small fleet publishing one epoch of readings in real time (the setup of the
//! audit scenarios); once epoch 0 is committed with every batch proven,
//! `integration/browser/verify.mjs` (playwright-core driving the system's Chromium) loads the
//! page from validator 0, checks the devnet's devices are listed, follows one verified value's
//! trail (device → interval → epoch → proof), clicks "Verify in this browser" and expects the
//! WebAssembly verifier to accept it, then expects a proof with a flipped byte and frames with
//! a flipped byte to be refused. Screenshots and `result.json` are kept in
//! `target/browser-artifacts/`.
//!
//! The same proof and frames are then checked natively (the node's `POST /v1/proofs/verify`
//! check, in process) and both timings are printed, measured in the same run.
//!
//! Needs Chromium, node, `integration/browser/node_modules` and the built verifier
//! (`scripts/setup.sh` installs and builds them). Without them the test prints why and passes
//! without running, except under `CI=true`, where that is a failure.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_integration::{Broker, FleetSpec, Genesis, TestNet};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Epoch window, seconds.
const EPOCH_S: u64 = 20;
/// Reading interval, seconds.
const INTERVAL_S: u64 = 2;
/// Seconds from now to the genesis time, enough to start four validators.
const LEAD_S: u64 = 6;
/// Native verifications timed (the fastest is reported).
const NATIVE_RUNS: usize = 5;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A genesis time `LEAD_S` from now. The fleet publishes only epoch 0's readings, so every
/// 5-minute bucket holding them is covered by epoch 0's window alone and is raised to
/// `verified` once epoch 0's proofs are verified, wherever the window falls in the bucket.
fn genesis_time() -> u64 {
    unix_now() + LEAD_S
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn chromium() -> PathBuf {
    std::env::var_os("GROUNDTRUTH_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

/// What is missing to run the browser test, if anything.
fn missing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !chromium().is_file() {
        out.push(format!("no Chromium at {}", chromium().display()));
    }
    if Command::new("node").arg("--version").output().is_err() {
        out.push("no node in PATH".into());
    }
    let pw = root.join("integration/browser/node_modules/playwright-core/package.json");
    if !pw.is_file() {
        out.push(format!("no {}", pw.display()));
    }
    let wasm = groundtruth_api::explorer::verifier_wasm_path();
    if !wasm.is_file() {
        out.push(format!("no verifier module at {}", wasm.display()));
    }
    out
}

/// `Some(reason)` when the test cannot run here and may be skipped; an error when it cannot
/// run but must (CI).
fn skip_reason(root: &Path) -> Result<Option<String>> {
    let m = missing(root);
    if m.is_empty() {
        return Ok(None);
    }
    let why = format!("{} (scripts/setup.sh installs them)", m.join("; "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("the browser test must run under CI=true: {why}");
    }
    Ok(Some(why))
}

/// Splits `(u32 BE len ‖ frame)*` as the node serves a batch's frames.
fn split_frames(bytes: &[u8]) -> Result<Vec<axum::body::Bytes>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .context("truncated frame length")?;
        let len = u32::from_be_bytes(*len) as usize;
        ensure!(tail.len() >= len, "truncated frame");
        let (frame, tail) = tail.split_at(len);
        out.push(axum::body::Bytes::copy_from_slice(frame));
        rest = tail;
    }
    Ok(out)
}

#[test]
fn explorer_follows_a_values_trail_and_verifies_its_proof_in_headless_chromium() -> Result<()> {
    let root = repo_root();
    if let Some(why) = skip_reason(&root)? {
        eprintln!("skipped: {why}");
        return Ok(());
    }
    let genesis_time = genesis_time();
    let spec = FleetSpec {
        seed: 77,
        energy: 3,
        gpu: 2,
        storage: 0,
        unknown: 0,
        faults: "none".into(),
        intervals: EPOCH_S / INTERVAL_S,
    };
    let genesis = spec.add_devices_to(
        Genesis::devnet()?
            .timed(EPOCH_S, genesis_time)
            .param("audit_deadline_epochs", 1),
    )?;
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .broker(Broker::EmbeddedIn(0))
        .genesis(genesis)
        .fleet(spec)
        .configure(|_, cfg| {
            cfg.audit.enabled = true;
            cfg.audit.grace = Duration::from_secs(3);
            cfg.audit.poll = Duration::from_millis(300);
            cfg.audit.resend_after = Duration::from_secs(10);
        })
        .build()?;
    let (mut sim, manifest) = net.spawn_fleet(&[
        "--speedup",
        "1",
        "--interval-s",
        &INTERVAL_S.to_string(),
        "--start-unix-s",
        &genesis_time.to_string(),
    ])?;
    let left = (genesis_time + EPOCH_S).saturating_sub(unix_now());
    if sim.wait_exit(Duration::from_secs(left + 30)).is_none() {
        bail!("the fleet did not finish: {}", sim.log_tail(20));
    }
    let m = groundtruth_integration::Manifest::read(&manifest)
        .with_context(|| format!("no manifest; sim log:\n{}", sim.log_tail(20)))?;
    ensure!(
        m.totals.len() == 5,
        "the fleet has {} devices",
        m.totals.len()
    );
    let views = net.wait_epoch_committed(&[0, 1, 2, 3], 0, Duration::from_secs(60))?;
    let c = &views[0]["commitment"];
    ensure!(
        c["audited_batches"] == c["batches"] && c["batches"].as_u64() > Some(0),
        "not every batch of epoch 0 was proven: {c}"
    );

    let api = net.node(0).api();
    let wasm = api.request("GET", "/explorer/verifier.wasm", &[])?;
    ensure!(
        wasm.status == 200 && wasm.body.starts_with(b"\0asm"),
        "the node does not serve the verifier: {} {}",
        wasm.status,
        String::from_utf8_lossy(wasm.body.get(..200).unwrap_or_default())
    );

    let out = root.join("target/browser-artifacts");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let devices: Vec<&str> = m.totals.keys().map(String::as_str).collect();
    let started = Instant::now();
    let run = Command::new("node")
        .arg(root.join("integration/browser/verify.mjs"))
        .arg(api.url())
        .arg(&out)
        .env("GROUNDTRUTH_CHROMIUM", chromium())
        .env("GROUNDTRUTH_EXPECT_DEVICES", devices.join(","))
        .env("GROUNDTRUTH_BROWSER_TIMEOUT_S", "120")
        .output()
        .context("running node integration/browser/verify.mjs")?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    println!("{stdout}");
    ensure!(
        run.status.success(),
        "the browser run failed ({:?}, screenshots in {}):\n{stdout}\n{stderr}",
        run.status,
        out.display()
    );
    let result: Value = serde_json::from_slice(&std::fs::read(out.join("result.json"))?)?;
    ensure!(
        result["ok"] == true && result["valid"]["state"] == "valid",
        "{result}"
    );
    ensure!(
        result["tampered_proof"]["state"] == "refused"
            && result["tampered_frame"]["state"] == "refused",
        "{result}"
    );
    for shot in [
        "01-explorer.png",
        "02-trail.png",
        "03-verified-in-browser.png",
        "04-tampered-proof-refused.png",
    ] {
        ensure!(out.join(shot).is_file(), "no screenshot {shot}");
    }

    // The same proof and frames, checked natively as POST /v1/proofs/verify does.
    let proof = api.get_bytes(result["proof_url"].as_str().context("proof_url")?)?;
    let frames_bytes = api.get_bytes(result["frames_url"].as_str().context("frames_url")?)?;
    // Kept beside the screenshots: `groundtruth verify --proof proof.bin --frames frames.bin`
    // rechecks them anywhere.
    std::fs::write(out.join("proof.bin"), &proof)?;
    std::fs::write(out.join("frames.bin"), &frames_bytes)?;
    let frames = split_frames(&frames_bytes)?;
    let digest = hex(blake3::hash(&proof).as_bytes());
    ensure!(
        result["valid"]["digest"] == digest.as_str(),
        "the page verified another proof ({}) than the one served ({digest})",
        result["valid"]["digest"]
    );
    let mut native = Vec::new();
    for _ in 0..NATIVE_RUNS {
        let t = Instant::now();
        let checked =
            groundtruth_node::production::market::check_proof(&proof, Some(&frames), 1 << 24)
                .map_err(|e| anyhow::anyhow!("native check: {e}"))?;
        native.push(t.elapsed().as_secs_f64() * 1e3);
        ensure!(checked.verdict.valid, "native check: {:?}", checked.verdict);
    }
    let native_ms = native.iter().copied().fold(f64::INFINITY, f64::min);
    let browser_ms: Vec<f64> = result["verify_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let best = browser_ms.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "verify of proof {} ({} B, {} frames): in Chromium (wasm) {browser_ms:?} ms, best {best:.2} ms; native (check_proof, this process) best of {NATIVE_RUNS} {native_ms:.2} ms; ratio {:.2}x; browser run {:.1} s; artifacts in {}",
        &digest[..16],
        proof.len(),
        frames.len(),
        best / native_ms,
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
