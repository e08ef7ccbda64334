//! `groundtruth devnet` stopped with Ctrl-C (SIGINT) and started again on its directory resumes:
//! the same ledger (heights continue, an epoch committed before keeps its commitment), the same
//! L1 chain and contract (anchors continue in later blocks), and the simulated meters continue
//! their sequence numbers and registers, so no validator refuses a reading as an equivocation,
//! a register discontinuity or a sequence gap. Skips with a message when anvil is not installed,
//! fails under `CI=true`.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_integration::{
    devnet_genesis_path, free_addr, groundtruth_bin, interrupt, l1_unavailable, Api, Metrics,
};
use serde_json::Value;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Rejections a resumed fleet must never cause (the fleet here has no faulty devices).
const RESUME_FAULTS: [&str; 5] = [
    "equivocation",
    "register_discontinuity",
    "seq_gap_too_far",
    "interval_not_advancing",
    "interval_overlap",
];

/// Energy meters in the fleet.
const METERS: u64 = 6;

/// The devnet process, in a process group of its own: killed with its validators and anvil if
/// the test fails before stopping it.
struct Devnet {
    child: Child,
    log: std::path::PathBuf,
}

impl Devnet {
    fn start(dir: &Path, broker: SocketAddr, api: SocketAddr, run: u32) -> Result<Self> {
        let log = dir.with_extension(format!("run{run}.log"));
        let out = std::fs::File::create(&log)?;
        let child = Command::new(groundtruth_bin()?)
            .arg("devnet")
            .arg("--dir")
            .arg(dir)
            .arg("--genesis")
            .arg(devnet_genesis_path())
            .args([
                "--energy",
                &METERS.to_string(),
                "--gpu",
                "1",
                "--storage",
                "1",
            ])
            .args(["--unknown", "0", "--faulty-fraction", "0", "--no-providers"])
            .args([
                "--reading-interval-s",
                "2",
                "--epoch-s",
                "6",
                "--grace-s",
                "2",
            ])
            .args(["--broker-listen", &broker.to_string()])
            .args(["--metrics-listen", &api.to_string()])
            .env("RUST_LOG", "info,rumqttd=off")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .process_group(0)
            .spawn()
            .context("starting groundtruth devnet")?;
        Ok(Self { child, log })
    }

    /// Ctrl-C, and waits for it to stop its children and exit.
    fn interrupt(&mut self) -> Result<()> {
        let Some(status) = interrupt(&mut self.child, Duration::from_secs(60)) else {
            bail!("devnet still running 60 s after SIGINT: {}", self.tail());
        };
        ensure!(
            status.success(),
            "devnet exited with {status}: {}",
            self.tail()
        );
        Ok(())
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let group = format!("-{}", self.child.id());
            let _ = Command::new("kill")
                .args(["-s", "KILL", "--", &group])
                .status();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 500 ms until it returns `Some`, or fails after `secs`.
fn wait_for<T>(
    secs: u64,
    what: &str,
    devnet: &Devnet,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > until {
            bail!("{what} not within {secs} s; devnet log:\n{}", devnet.tail());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The newest committed epoch anchored on L1, with its view.
fn newest_anchored(api: Api) -> Option<(u64, Value)> {
    let list = api.epochs().ok()?;
    let committed: Vec<u64> = list["committed"]
        .as_array()?
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    committed.iter().rev().find_map(|e| {
        let v = api.epoch(*e).ok()?;
        (!v["l1"].is_null()).then_some((*e, v))
    })
}

fn scrape(api: Api) -> Option<Metrics> {
    api.metrics().ok()
}

#[test]
fn devnet_stopped_with_ctrl_c_resumes_from_its_directory() -> Result<()> {
    if let Some(why) = l1_unavailable() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("the devnet resume test must run under CI=true: {why}");
        }
        eprintln!("SKIPPED devnet_stopped_with_ctrl_c_resumes_from_its_directory: {why}");
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let dir = work.path().join("devnet");
    let broker = free_addr();
    let first_api = free_addr();
    let apis: Vec<Api> = (0..4)
        .map(|i| Api {
            addr: SocketAddr::new(first_api.ip(), first_api.port() + i),
        })
        .collect();

    // First run: readings stored on every validator and an epoch anchored.
    let mut devnet = Devnet::start(&dir, broker, first_api, 1)?;
    let (anchored, before) = wait_for(240, "an epoch anchored on L1", &devnet, || {
        newest_anchored(apis[0])
    })?;
    wait_for(60, "readings on every validator", &devnet, || {
        apis.iter()
            .all(|a| scrape(*a).is_some_and(|m| m.outcome("accepted") >= 2 * METERS))
            .then_some(())
    })?;
    let contract = std::fs::read_to_string(dir.join("l1").join("contract"))?;
    let height_before = apis.iter().map(|a| a.height()).max().unwrap_or(0);
    devnet.interrupt()?;
    ensure!(
        apis.iter().all(|a| a.height() == 0),
        "validators still answering after the devnet stopped"
    );
    let progress: Value = serde_json::from_slice(&std::fs::read(dir.join("fleet-progress.json"))?)?;
    let published = progress["next_step"].as_u64().context("progress")?;
    ensure!(
        published >= 2,
        "the first run published {published} intervals"
    );

    // Second run on the same directory.
    let mut devnet = Devnet::start(&dir, broker, first_api, 2)?;
    let log = wait_for(60, "the resume line", &devnet, || {
        let text = std::fs::read_to_string(&devnet.log).ok()?;
        text.contains("resuming the devnet").then_some(text)
    })?;
    ensure!(
        log.contains(&format!("({published} published before)")),
        "{log}"
    );
    // The kept ledger: the epoch anchored before is still committed with the same commitment.
    let kept = wait_for(60, "the API after the restart", &devnet, || {
        apis[0].epoch(anchored).ok()
    })?;
    ensure!(
        kept["commitment"] == before["commitment"],
        "epoch {anchored} changed across the restart: {} vs {}",
        kept["commitment"],
        before["commitment"]
    );
    // Every validator takes the resumed meters' readings: two more intervals of every meter.
    let accepted = wait_for(90, "resumed readings on every validator", &devnet, || {
        let m: Vec<Metrics> = apis.iter().filter_map(|a| scrape(*a)).collect();
        (m.len() == 4 && m.iter().all(|m| m.outcome("accepted") >= 2 * (METERS + 2))).then_some(m)
    })?;
    for (i, m) in accepted.iter().enumerate() {
        for reason in RESUME_FAULTS {
            ensure!(
                m.outcome(reason) == 0,
                "validator {i} refused {} resumed readings as {reason}: {:?}",
                m.outcome(reason),
                m.outcomes()
            );
        }
    }
    // The ledger continues on every validator.
    wait_for(60, "heights past the first run's", &devnet, || {
        apis.iter()
            .all(|a| a.height() > height_before)
            .then_some(())
    })?;
    // A later epoch anchored on the same contract, in a later L1 block (the chain was kept).
    let (later, after) = wait_for(180, "a later epoch anchored", &devnet, || {
        newest_anchored(apis[0]).filter(|(e, _)| *e > anchored)
    })?;
    let block = |v: &Value| v["l1"]["block"].as_u64().unwrap_or(0);
    ensure!(
        block(&after) > block(&before),
        "epoch {later} anchored in L1 block {} before epoch {anchored}'s {}",
        block(&after),
        block(&before)
    );
    ensure!(
        std::fs::read_to_string(dir.join("l1").join("contract"))? == contract,
        "the contract changed across the restart"
    );
    ensure!(
        after["slashes"].as_array().is_some_and(Vec::is_empty),
        "slashes after the restart: {}",
        after["slashes"]
    );
    devnet.interrupt()?;
    Ok(())
}
