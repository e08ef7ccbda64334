//! Provider audits on the validator's side: spot retrieval of storage chunks and GPU capacity
//! challenges, over the provider network (`groundtruth_p2p::provider`).
//!
//! ```text
//! epoch e sealed ─► for every storage device with a commitment and every GPU device with a
//!   spec, if this validator is in State::provider_audit_committee(e, device):
//!     storage: State::retrieval_challenge(e, device) chunk indices ─► FetchChunk each from the
//!              provider (PeerId = its device key), check chunk + path against the committed
//!              root, all within [audit.providers] retrieval_deadline
//!     GPU:     State::gpu_challenge(e, device) = { seed, n, deadline_ms } ─► GpuChallenge;
//!              time it, check the product with Freivalds (gpu_rounds rounds, a private seed),
//!              measured = n³·1000 / elapsed_ms multiply-adds per second
//!   ─► ReportProviderAudit { epoch, device, kind, passed, seed, response_digest, elapsed_ms,
//!                            measured_per_s }   (signed by the operator key, like every audit tx)
//! ```
//!
//! The ledger decides a round when ≥ 2/3 of the committee's weight agree; this validator's
//! report is one vote. Outcomes the ledger records (storage proofs, decided rounds) are counted
//! in metrics as they leave their windows, with the device (16 hex characters) as a label.
//!
//! A provider not connected to this validator's provider port within the deadline is not
//! served: a failing report.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use groundtruth_ledger::provider_audit::ProviderAuditKind;
use groundtruth_ledger::storage::StorageOutcome;
use groundtruth_ledger::{Address, DeviceId, DeviceKind, Epoch, State, TxBody};
use groundtruth_p2p::{
    peer_id_of, ProviderNet, ProviderNetConfig, ProviderNetHandle, ProviderRequest,
    ProviderResponse,
};
use groundtruth_proofs::freivalds;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::LedgerView;

const TARGET: &str = "node::audit::providers";
/// Spot-retrieval requests in flight at once per audit.
const FETCH_PARALLEL: usize = 4;

/// `[audit.providers]`: auditing storage and GPU providers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderAuditSection {
    /// Run provider audits (and listen for providers).
    pub enabled: bool,
    /// Where providers dial this validator (multiaddr).
    pub listen: String,
    /// Time a provider has to serve all the spot-retrieval chunks of one audit.
    #[serde(with = "humantime_serde")]
    pub retrieval_deadline: Duration,
    /// Freivalds rounds per GPU check (false accept ≤ (1/p)^rounds).
    pub gpu_rounds: u32,
    /// Largest GPU challenge dimension this validator asks (the ledger's `gpu_challenge_n`
    /// must not exceed it).
    pub max_gpu_n: u32,
    /// Longest wait for a GPU product (a product later than the ledger's deadline fails
    /// anyway).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often the loop looks at the ledger.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// Fault injection for tests only: report every audit as failed (a validator that tries
    /// to fail honest providers; the committee's 2/3 rule must outvote it).
    pub always_fail: bool,
}

impl Default for ProviderAuditSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "/ip4/0.0.0.0/tcp/27200".into(),
            retrieval_deadline: Duration::from_secs(5),
            gpu_rounds: 8,
            max_gpu_n: freivalds::MAX_N,
            request_timeout: Duration::from_secs(60),
            poll: Duration::from_secs(1),
            always_fail: false,
        }
    }
}

/// Provider audit metrics.
#[derive(Debug, Clone, Default)]
pub struct ProviderMetrics {
    /// This validator's audits, by `kind` (`retrieval`, `gpu_capacity`) and `outcome`
    /// (`pass`, `fail`).
    pub audits: Family<Vec<(String, String)>, Counter>,
    /// Outcomes the ledger recorded, by `device` (16 hex), `kind` (`storage_proof`,
    /// `retrieval`, `gpu_capacity`) and `outcome` (`passed`, `failed`, `missed`,
    /// `below_spec`, `undecided`), counted once each epoch's window closes.
    pub ledger: Family<Vec<(String, String)>, Counter>,
}

impl ProviderMetrics {
    /// Registers under `groundtruth_provider_*`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "groundtruth_provider_audits",
            "Provider audits this validator performed, by kind and outcome",
            m.audits.clone(),
        );
        registry.register(
            "groundtruth_provider_ledger_outcomes",
            "Provider audit outcomes the ledger recorded, by device, kind and outcome",
            m.ledger.clone(),
        );
        m
    }

    fn audit(&self, kind: ProviderAuditKind, passed: bool) {
        self.audits
            .get_or_create(&vec![
                ("kind".into(), kind.name().into()),
                (
                    "outcome".into(),
                    if passed { "pass" } else { "fail" }.into(),
                ),
            ])
            .inc();
    }

    fn ledger(&self, device: &DeviceId, kind: &str, outcome: &str) {
        let d = hex::encode(device.0);
        self.ledger
            .get_or_create(&vec![
                ("device".into(), d.get(..16).unwrap_or(&d).into()),
                ("kind".into(), kind.into()),
                ("outcome".into(), outcome.into()),
            ])
            .inc();
    }
}

/// One audit to run.
#[derive(Debug, Clone)]
enum Work {
    Retrieval {
        epoch: Epoch,
        device: DeviceId,
        seed: [u8; 32],
        root: [u8; 32],
        indices: Vec<u64>,
    },
    Gpu {
        epoch: Epoch,
        device: DeviceId,
        seed: [u8; 32],
        n: u32,
        deadline_ms: u32,
    },
}

impl Work {
    fn key(&self) -> (Epoch, DeviceId) {
        match self {
            Work::Retrieval { epoch, device, .. } | Work::Gpu { epoch, device, .. } => {
                (*epoch, *device)
            }
        }
    }
}

/// The audits `me` owes: ended epochs still in their report window, devices whose committee
/// holds `me`, no report of `me` recorded yet.
fn plan(st: &State, me: &Address) -> Vec<Work> {
    let current = st.epoch();
    let window = st.params().attestation_window_epochs;
    let mut out = Vec::new();
    for epoch in current.saturating_sub(window)..current {
        for d in st.devices() {
            let kind = match d.kind {
                DeviceKind::Storage => ProviderAuditKind::Retrieval,
                DeviceKind::Gpu => ProviderAuditKind::GpuCapacity,
                DeviceKind::Energy => continue,
            };
            let Some(seed) = st.provider_audit_seed(epoch, &d.id, kind) else {
                continue;
            };
            if !st.provider_audit_committee(epoch, &d.id).contains(me) {
                continue;
            }
            let reported = st
                .provider_audit(epoch, &d.id, kind)
                .is_some_and(|r| r.reports.iter().any(|r| r.validator == *me));
            if reported {
                continue;
            }
            match kind {
                ProviderAuditKind::Retrieval => {
                    let Some(c) = st.storage_commitment(&d.id) else {
                        continue;
                    };
                    out.push(Work::Retrieval {
                        epoch,
                        device: d.id,
                        seed,
                        root: c.root,
                        indices: st.retrieval_challenge(epoch, &d.id),
                    });
                }
                ProviderAuditKind::GpuCapacity => {
                    let Some(ch) = st.gpu_challenge(epoch, &d.id) else {
                        continue;
                    };
                    out.push(Work::Gpu {
                        epoch,
                        device: d.id,
                        seed,
                        n: ch.n,
                        deadline_ms: ch.deadline_ms,
                    });
                }
            }
        }
    }
    out
}

/// Whether `data` with sibling `path` (leaf level first) is chunk `index` of the tree with
/// `root` (the retrievability AIR's leaf hash and merge).
fn verify_opening(root: &[u8; 32], index: u64, data: &[u8], path: &[[u8; 32]]) -> bool {
    use groundtruth_proofs::field::digest_from_bytes;
    use groundtruth_proofs::por::{leaf_digest, merge, CHUNK_SIZE};
    let Some(root) = digest_from_bytes(root) else {
        return false;
    };
    if data.len() != CHUNK_SIZE || path.len() > 64 {
        return false;
    }
    let mut node = leaf_digest(data);
    for (level, sib) in path.iter().enumerate() {
        let Some(sib) = digest_from_bytes(sib) else {
            return false;
        };
        node = if (index >> level) & 1 == 0 {
            merge(&node, &sib)
        } else {
            merge(&sib, &node)
        };
    }
    node == root
}

fn ms(d: Duration) -> u32 {
    u32::try_from(d.as_millis()).unwrap_or(u32::MAX)
}

/// Waits until `peer` is connected, at most `wait`.
async fn connected(net: &ProviderNetHandle, peer: groundtruth_p2p::PeerId, wait: Duration) -> bool {
    let until = Instant::now() + wait;
    loop {
        if net.connected_peers().await.is_ok_and(|p| p.contains(&peer)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs one audit; the report to send.
async fn audit(net: ProviderNetHandle, work: Work, config: ProviderAuditSection) -> TxBody {
    match work {
        Work::Retrieval {
            epoch,
            device,
            seed,
            root,
            indices,
        } => {
            let deadline = config.retrieval_deadline;
            let mut passed = false;
            let mut bytes = 0u64;
            let mut digest = blake3::Hasher::new();
            let mut why = String::new();
            let mut elapsed = deadline;
            match peer_id_of(device.0) {
                Err(e) => why = e.to_string(),
                Ok(peer) => {
                    if !connected(&net, peer, deadline).await {
                        why = "provider not connected".into();
                    } else {
                        let started = Instant::now();
                        // Up to FETCH_PARALLEL requests in flight; every chunk must open to
                        // the root.
                        let fetch = async {
                            for batch in indices.chunks(FETCH_PARALLEL) {
                                let mut set = tokio::task::JoinSet::new();
                                for &index in batch {
                                    let net = net.clone();
                                    set.spawn(async move {
                                        (
                                            index,
                                            net.request(
                                                peer,
                                                ProviderRequest::FetchChunk { index },
                                            )
                                            .await,
                                        )
                                    });
                                }
                                let mut answers = Vec::with_capacity(batch.len());
                                while let Some(r) = set.join_next().await {
                                    answers.push(r.map_err(|e| e.to_string())?);
                                }
                                answers.sort_by_key(|(i, _)| *i);
                                for (index, answer) in answers {
                                    match answer {
                                        Ok(ProviderResponse::Chunk { data, path }) => {
                                            if !verify_opening(&root, index, &data.0, &path) {
                                                return Err(format!(
                                                    "chunk {index} does not open to the root"
                                                ));
                                            }
                                            digest.update(&data.0);
                                            bytes = bytes.saturating_add(data.0.len() as u64);
                                        }
                                        Ok(other) => {
                                            return Err(format!("chunk {index}: {other:?}"))
                                        }
                                        Err(e) => return Err(format!("chunk {index}: {e}")),
                                    }
                                }
                            }
                            Ok::<(), String>(())
                        };
                        match tokio::time::timeout(deadline, fetch).await {
                            Ok(Ok(())) => {
                                elapsed = started.elapsed();
                                passed = true;
                            }
                            Ok(Err(e)) => {
                                elapsed = started.elapsed();
                                why = e;
                            }
                            Err(_) => why = format!("not served within {deadline:?}"),
                        }
                    }
                }
            }
            let elapsed_ms = ms(elapsed).max(1);
            let measured = bytes.saturating_mul(1000) / u64::from(elapsed_ms);
            if passed {
                tracing::info!(target: TARGET, epoch, %device, chunks = indices.len(), elapsed_ms, "spot retrieval passed");
            } else {
                tracing::warn!(target: TARGET, epoch, %device, reason = %why, "spot retrieval failed");
            }
            TxBody::ReportProviderAudit {
                epoch,
                device,
                kind: ProviderAuditKind::Retrieval,
                passed: passed && !config.always_fail,
                seed,
                response_digest: if bytes > 0 {
                    *digest.finalize().as_bytes()
                } else {
                    [0; 32]
                },
                elapsed_ms,
                measured_per_s: measured,
            }
        }
        Work::Gpu {
            epoch,
            device,
            seed,
            n,
            deadline_ms,
        } => {
            let wait = Duration::from_millis(u64::from(deadline_ms)).min(config.request_timeout);
            let mut passed = false;
            let mut digest = [0u8; 32];
            let mut elapsed = wait;
            let mut why = String::new();
            match peer_id_of(device.0) {
                Err(e) => why = e.to_string(),
                Ok(peer) => {
                    if !connected(&net, peer, Duration::from_secs(5)).await {
                        why = "provider not connected".into();
                    } else {
                        // A fresh nonce of ours: the product cannot be computed before we ask.
                        let mut nonce = [0u8; 32];
                        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
                        let started = Instant::now();
                        let answer = tokio::time::timeout(
                            config.request_timeout,
                            net.request(
                                peer,
                                ProviderRequest::GpuChallenge {
                                    epoch,
                                    seed,
                                    nonce,
                                    n,
                                },
                            ),
                        )
                        .await;
                        elapsed = started.elapsed();
                        match answer {
                            Ok(Ok(ProviderResponse::Product { matrix })) => {
                                // Freivalds runs off the async threads: O(rounds · n²).
                                let rounds = config.gpu_rounds;
                                let checked = tokio::task::spawn_blocking(move || {
                                    let c = freivalds::Matrix::decode(&matrix.0)
                                        .map_err(|e| format!("product does not decode: {e}"))?;
                                    if c.n() != n {
                                        return Err(format!("product is {}×{0}, asked {n}", c.n()));
                                    }
                                    let (a, b) = freivalds::challenge_matrices(
                                        &freivalds::member_seed(&seed, &nonce),
                                        n,
                                    );
                                    let mut private = [0u8; 32];
                                    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut private);
                                    let ok = freivalds::check(&a, &b, &c, rounds, &private);
                                    Ok((ok, c.digest()))
                                })
                                .await
                                .map_err(|e| e.to_string())
                                .and_then(|r| r);
                                match checked {
                                    Ok((true, d)) => {
                                        digest = d;
                                        if ms(elapsed) <= deadline_ms {
                                            passed = true;
                                        } else {
                                            why = format!("product after the deadline ({} ms > {deadline_ms} ms)", ms(elapsed));
                                        }
                                    }
                                    Ok((false, d)) => {
                                        digest = d;
                                        why = "wrong product (Freivalds)".into();
                                    }
                                    Err(e) => why = e,
                                }
                            }
                            Ok(Ok(other)) => why = format!("answer {other:?}"),
                            Ok(Err(e)) => why = e.to_string(),
                            Err(_) => {
                                why = format!("no product within {:?}", config.request_timeout)
                            }
                        }
                    }
                }
            }
            let elapsed_ms = ms(elapsed).max(1);
            let n3 = u64::from(n).pow(3);
            let measured = n3.saturating_mul(1000) / u64::from(elapsed_ms);
            if passed {
                tracing::info!(target: TARGET, epoch, %device, n, elapsed_ms, measured_mac_per_s = measured, "GPU challenge passed");
            } else {
                tracing::warn!(target: TARGET, epoch, %device, n, elapsed_ms, reason = %why, "GPU challenge failed");
            }
            TxBody::ReportProviderAudit {
                epoch,
                device,
                kind: ProviderAuditKind::GpuCapacity,
                passed: passed && !config.always_fail,
                seed,
                response_digest: digest,
                elapsed_ms,
                measured_per_s: measured,
            }
        }
    }
}

/// Counts what the ledger recorded for epochs whose windows have closed (`next..`), returns
/// the next epoch to count.
fn count_outcomes(st: &State, mut next: Epoch, metrics: &ProviderMetrics) -> Epoch {
    let p = st.params();
    let settle = p
        .storage_deadline_epochs
        .max(p.attestation_window_epochs)
        .saturating_add(1);
    while next.saturating_add(settle) <= st.epoch() {
        for d in st.devices() {
            match d.kind {
                DeviceKind::Storage => {
                    let Some(c) = st.storage_commitment(&d.id) else {
                        continue;
                    };
                    if next < c.since_epoch {
                        continue;
                    }
                    if let Some(a) = st.storage_audit(next, &d.id) {
                        let o = match a.outcome {
                            StorageOutcome::Passed => "passed",
                            StorageOutcome::Failed { .. } => "failed",
                            StorageOutcome::Missed => "missed",
                        };
                        metrics.ledger(&c.device, "storage_proof", o);
                    }
                    if let Some(r) = st.provider_audit(next, &d.id, ProviderAuditKind::Retrieval) {
                        let o = match r.decision {
                            Some(dec) if dec.passed => "passed",
                            Some(_) => "failed",
                            None => "undecided",
                        };
                        metrics.ledger(&c.device, "retrieval", o);
                    }
                }
                DeviceKind::Gpu => {
                    let Some(spec) = st.gpu_spec(&d.id) else {
                        continue;
                    };
                    if let Some(r) = st.provider_audit(next, &d.id, ProviderAuditKind::GpuCapacity)
                    {
                        let o = match r.decision {
                            Some(dec) if dec.passed && dec.below_spec => "below_spec",
                            Some(dec) if dec.passed => "passed",
                            Some(_) => "failed",
                            None => "undecided",
                        };
                        metrics.ledger(&spec.device, "gpu_capacity", o);
                    }
                }
                DeviceKind::Energy => {}
            }
        }
        next = next.saturating_add(1);
    }
    next
}

/// Starts the provider network listener and the audit loop (when `[audit.providers]
/// enabled`), on the current tokio runtime. `secret` is the consensus secret (this
/// validator's identity on the provider network); `txs` the operator's signing queue.
pub fn start<L: LedgerView>(
    ledger: Arc<L>,
    me: Address,
    secret: [u8; 32],
    config: ProviderAuditSection,
    txs: mpsc::Sender<TxBody>,
    metrics: ProviderMetrics,
) {
    if !config.enabled {
        return;
    }
    tokio::spawn(async move {
        let listen = match config.listen.parse() {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(target: TARGET, listen = %config.listen, error = %e, "bad [audit.providers] listen address; provider audits off");
                return;
            }
        };
        let net_config = ProviderNetConfig {
            listen: Some(listen),
            max_gpu_n: config.max_gpu_n,
            max_response_bytes: groundtruth_p2p::provider::product_bytes(config.max_gpu_n)
                .saturating_add(64 * 1024),
            request_timeout: config.request_timeout,
            ..ProviderNetConfig::default()
        };
        let net = match ProviderNet::auditor(net_config, secret).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(target: TARGET, error = %e, "provider network did not start; provider audits off");
                return;
            }
        };
        tracing::info!(target: TARGET, addrs = ?net.listen_addrs(), operator = %me, "provider audits started");
        run(ledger, me, net, config, txs, metrics).await;
    });
}

async fn run<L: LedgerView>(
    ledger: Arc<L>,
    me: Address,
    net: ProviderNetHandle,
    config: ProviderAuditSection,
    txs: mpsc::Sender<TxBody>,
    metrics: ProviderMetrics,
) {
    let (done_tx, mut done_rx) = mpsc::channel::<((Epoch, DeviceId), TxBody)>(64);
    let mut in_flight: HashSet<(Epoch, DeviceId)> = HashSet::new();
    let mut sent: HashMap<(Epoch, DeviceId), Instant> = HashMap::new();
    let mut next_count: Epoch = 0;
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some((key, body)) = done_rx.recv() => {
                in_flight.remove(&key);
                if let TxBody::ReportProviderAudit { kind, passed, .. } = &body {
                    metrics.audit(*kind, *passed);
                }
                sent.insert(key, Instant::now());
                if txs.send(body).await.is_err() {
                    return;
                }
                continue;
            }
        }
        let (work, counted) =
            ledger.with_state(|st| (plan(st, &me), count_outcomes(st, next_count, &metrics)));
        next_count = counted;
        // A report the ledger has not shown within a while is sent again (the audit reruns).
        sent.retain(|_, t| t.elapsed() < Duration::from_secs(30));
        for w in work {
            let key = w.key();
            if in_flight.contains(&key) || sent.contains_key(&key) {
                continue;
            }
            in_flight.insert(key);
            let (net, cfg, done) = (net.clone(), config.clone(), done_tx.clone());
            tokio::spawn(async move {
                let body = audit(net, w, cfg).await;
                let _ = done.send((key, body)).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_section_defaults_off_and_parses() -> Result<(), toml::de::Error> {
        let d = ProviderAuditSection::default();
        assert!(!d.enabled && !d.always_fail);
        let s: ProviderAuditSection = toml::from_str(
            "enabled = true\nlisten = \"/ip4/127.0.0.1/tcp/0\"\nretrieval_deadline = \"2s\"",
        )?;
        assert!(s.enabled);
        assert_eq!(s.retrieval_deadline, Duration::from_secs(2));
        assert!(toml::from_str::<ProviderAuditSection>("bogus = 1").is_err());
        Ok(())
    }
}
