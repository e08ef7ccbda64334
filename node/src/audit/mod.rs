//! The audit loop of a validator, on timed epochs (genesis `epoch_duration_s > 0`):
//!
//! ```text
//! clock ≥ window end + grace ─► CloseEpoch{E}            (≥ 2/3 of power ends epoch E; its seal
//!                                                         fixes the beacon → who audits whom)
//! epoch e sealed, in committee ─► build batches from the store (one per auditor: its devices'
//!                                 accepted readings in e's window, as runs) ─► AttestReadings
//! root fixed, my batch open     ─► prove my batch (STARK) ─► SubmitAuditProof
//! deadline passed, batch open   ─► the committee member after its auditor proves it instead
//! ```
//!
//! Everything it sends is an ordinary signed transaction from the operator key; the ledger
//! checks all of it (2/3 for closing and for the readings root, the proof itself for audits).
//! The batches are a pure function of the ledger state (seal, devices) and the store, so every
//! validator holding the same readings builds the same roots ([`epoch_batches`]).
//!
//! Before attesting, and again when its store's batch differs from the agreed one, the loop
//! fills missing readings from peers ([`fill`]): a validator whose broker delivered nothing
//! still attests the agreed root.

pub mod fill;
pub mod providers;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use groundtruth_device_sdk::{ReadingBody, SignedReading};
use groundtruth_ledger::{Address, BatchCommitment, DeviceId, Epoch, State, TxBody};
use groundtruth_proofs::{
    metered::readings_commitment, runs_from_readings, DeviceSeries, SecurityLevel,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::ingest::store::{Status, Store, StoreError};

/// `[audit]`: the validator's audit loop (runs only with consensus, an operator key and a
/// genesis with timed epochs).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuditSection {
    /// Run the loop.
    pub enabled: bool,
    /// How long after an epoch window's end this validator votes to close it: readings of the
    /// window still in flight (device buffers, broker queues, the ingest pipeline) land first.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How often the loop looks at the ledger.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// A transaction the ledger has not shown within this long is sent again.
    #[serde(with = "humantime_serde")]
    pub resend_after: Duration,
    /// `[audit.providers]`: storage and GPU provider audits.
    pub providers: providers::ProviderAuditSection,
}

impl Default for AuditSection {
    fn default() -> Self {
        Self {
            enabled: true,
            grace: Duration::from_secs(10),
            poll: Duration::from_secs(1),
            resend_after: Duration::from_secs(30),
            providers: providers::ProviderAuditSection::default(),
        }
    }
}

/// Why a batch could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The epoch is not sealed, or epochs are not timed.
    #[error("epoch {0} is not sealed or has no time window")]
    NotSealed(Epoch),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The proofs library refused the readings (a stored reading the ingest checks should have
    /// kept out) or failed to prove.
    #[error("proofs: {0}")]
    Proof(#[from] groundtruth_proofs::ProofError),
}

/// One auditor's batch as this validator's store sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The assigned auditor (operator).
    pub auditor: Address,
    /// Its devices' readings as runs, device after device in id order.
    pub series: Vec<DeviceSeries>,
    /// What the batch attests.
    pub commitment: BatchCommitment,
    /// The readings in it, in batch order.
    pub keys: Vec<(DeviceId, u64)>,
    /// Their signed frames, in batch order.
    pub frames: Vec<Vec<u8>>,
}

/// Builds `auditor`'s batch from its readings (device after device, each in sequence order).
fn batch_of(
    state: &State,
    window: &groundtruth_proofs::Epoch,
    auditor: Address,
    readings: Vec<(SignedReading, Vec<u8>)>,
) -> Result<Batch, AuditError> {
    let signed: Vec<SignedReading> = readings.iter().map(|(r, _)| *r).collect();
    let fields = reading_fields(&signed);
    let series = runs_from_readings(&fields, |id, len| {
        state
            .device(&DeviceId(*id))
            .and_then(|d| d.kind.metered_cap(d.capacity, len))
            .unwrap_or(0)
    })?;
    let commitment = readings_commitment(window, &series)?;
    Ok(Batch {
        auditor,
        series,
        commitment: BatchCommitment {
            auditor,
            commitment,
            readings: u64::try_from(fields.len()).unwrap_or(u64::MAX),
        },
        keys: signed
            .iter()
            .map(|r| (r.reading.device, r.reading.seq))
            .collect(),
        frames: readings.into_iter().map(|(_, f)| f).collect(),
    })
}

/// The proof epoch of ledger epoch `epoch` (`None` when epochs are not timed).
pub fn proof_epoch(state: &State, epoch: Epoch) -> Option<groundtruth_proofs::Epoch> {
    let (start_s, end_s) = state.params().epoch_window(epoch)?;
    Some(groundtruth_proofs::Epoch {
        number: epoch,
        start_s,
        end_s,
    })
}

/// The metered fields of signed readings given device after device (each in sequence order),
/// as the audit batches bind them: energy readings their signed register, GPU readings the
/// running total of the device's readings in the list; storage heartbeats are skipped. One
/// rule for the validators and the in-browser verifier, which runs this same function.
pub use groundtruth_verifier_wasm::reading_fields;

/// A device's accepted readings whose interval lies in `[start, end)`, in sequence order, each
/// with its frame as stored.
pub fn device_window(
    store: &Store,
    device: &DeviceId,
    start: u64,
    end: u64,
) -> Result<Vec<(SignedReading, Vec<u8>)>, AuditError> {
    let mut out = Vec::new();
    for item in store.device_readings_rev(device) {
        let stored = item?;
        let Ok(r) = SignedReading::decode_frame(&stored.frame) else {
            continue;
        };
        let Some((s, len)) = interval(&r.reading.body) else {
            continue;
        };
        if s < start {
            break;
        }
        if stored.status != Status::Accepted {
            continue;
        }
        if s.checked_add(u64::from(len)).is_some_and(|e| e <= end) {
            out.push((r, stored.frame));
        }
    }
    out.reverse();
    Ok(out)
}

fn interval(body: &ReadingBody) -> Option<(u64, u32)> {
    match body {
        ReadingBody::Energy(e) => Some((e.interval_start_s, e.interval_len_s)),
        ReadingBody::Gpu(g) => Some((g.interval_start_s, g.interval_len_s)),
        ReadingBody::Storage(_) => None,
    }
}

/// Every auditor's batch of a sealed epoch from this validator's store: the epoch's
/// assignment (beacon, committee, redundancy) maps each metered device to its auditors; each
/// auditor's batch holds its devices' accepted readings in the window, as runs, with the
/// registered caps. Auditors without readings have no batch. Pure given the state and store.
pub fn epoch_batches(state: &State, store: &Store, epoch: Epoch) -> Result<Vec<Batch>, AuditError> {
    let window = proof_epoch(state, epoch).ok_or(AuditError::NotSealed(epoch))?;
    let assignment = state
        .audit_assignment(epoch)
        .ok_or(AuditError::NotSealed(epoch))?;
    let mut per_auditor: BTreeMap<Address, Vec<(SignedReading, Vec<u8>)>> = BTreeMap::new();
    for (device, auditors) in &assignment {
        let Some(d) = state.device(device) else {
            continue;
        };
        if d.kind.metered_cap(d.capacity, 1).is_none() {
            continue;
        }
        let readings: Vec<(SignedReading, Vec<u8>)> =
            device_window(store, device, window.start_s, window.end_s)?
                .into_iter()
                .filter(|(r, _)| !matches!(r.reading.body, ReadingBody::Storage(_)))
                .collect();
        if readings.is_empty() {
            continue;
        }
        for a in auditors {
            per_auditor
                .entry(*a)
                .or_default()
                .extend(readings.iter().cloned());
        }
    }
    per_auditor
        .into_iter()
        .map(|(auditor, readings)| batch_of(state, &window, auditor, readings))
        .collect()
}

/// `auditor`'s batch of `epoch` as this validator attested it (the readings recorded then,
/// see [`Store::put_batch_keys`]), or, if it did not attest, as its store holds it now.
pub fn attested_batch(
    state: &State,
    store: &Store,
    epoch: Epoch,
    auditor: &Address,
) -> Result<Option<Batch>, AuditError> {
    let window = proof_epoch(state, epoch).ok_or(AuditError::NotSealed(epoch))?;
    let Some(keys) = store.batch_keys(epoch, &auditor.0)? else {
        return Ok(epoch_batches(state, store, epoch)?
            .into_iter()
            .find(|b| b.auditor == *auditor));
    };
    let mut readings = Vec::with_capacity(keys.len());
    for (device, seq) in keys {
        let Some((_, frame)) = store.get(&device, seq)? else {
            return Err(AuditError::Store(StoreError::Corrupt(format!(
                "attested reading {device}/{seq} is missing"
            ))));
        };
        let r = SignedReading::decode_frame(&frame)
            .map_err(|_| AuditError::Store(StoreError::Corrupt(format!("{device}/{seq}"))))?;
        readings.push((r, frame.to_vec()));
    }
    batch_of(state, &window, *auditor, readings).map(Some)
}

/// Readings of `epoch`'s window this validator holds now beyond those it attested (they
/// arrived after it settled the epoch: late). `None` if it did not attest the epoch.
pub fn late_readings(
    state: &State,
    store: &Store,
    epoch: Epoch,
) -> Result<Option<u64>, AuditError> {
    let Some(seal) = state.epoch_seal(epoch) else {
        return Ok(None);
    };
    let mut recorded: Option<u64> = None;
    for (auditor, _) in &seal.committee {
        if let Some(keys) = store.batch_keys(epoch, &auditor.0)? {
            let n = u64::try_from(keys.len()).unwrap_or(u64::MAX);
            recorded = Some(recorded.unwrap_or(0).saturating_add(n));
        }
    }
    let Some(recorded) = recorded else {
        return Ok(None);
    };
    let now: u64 = epoch_batches(state, store, epoch)?
        .iter()
        .map(|b| b.commitment.readings)
        .sum();
    Ok(Some(now.saturating_sub(recorded)))
}

/// Records the readings of every batch this validator attests.
fn record_batches(store: &Store, epoch: Epoch, batches: &[Batch]) -> Result<(), AuditError> {
    for b in batches {
        store.put_batch_keys(epoch, &b.auditor.0, &b.keys)?;
    }
    store.flush()?;
    Ok(())
}

/// The signed frames behind `auditor`'s batch of `epoch` as this validator attested it, in
/// batch order (device after device in id order, each in sequence order): what anyone needs to
/// recheck the batch's signatures and recompute its commitment.
pub fn batch_frames(
    state: &State,
    store: &Store,
    epoch: Epoch,
    auditor: &Address,
) -> Result<Vec<Vec<u8>>, AuditError> {
    Ok(attested_batch(state, store, epoch, auditor)?
        .map(|b| b.frames)
        .unwrap_or_default())
}

/// Audit loop counters.
#[derive(Clone, Debug, Default)]
pub struct AuditMetrics {
    /// Transactions sent, by type (`close_epoch`, `attest_readings`, `submit_audit_proof`).
    pub sent: Family<Vec<(String, String)>, Counter>,
    /// Batches proven by this validator.
    pub proofs: Counter,
    /// Batches this validator could not build or prove (store differs from the agreed root, a
    /// proving error).
    pub failures: Counter,
    /// Readings fetched from peers (and handed to ingest) before settling an epoch.
    pub filled: Counter,
}

impl AuditMetrics {
    /// Registers under `groundtruth_audit_*`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "groundtruth_audit_txs_sent",
            "Audit loop transactions sent, by type",
            m.sent.clone(),
        );
        registry.register(
            "groundtruth_audit_proofs",
            "Audit batches proven by this validator",
            m.proofs.clone(),
        );
        registry.register(
            "groundtruth_audit_failures",
            "Audit batches this validator could not build or prove",
            m.failures.clone(),
        );
        registry.register(
            "groundtruth_audit_filled_readings",
            "Readings fetched from peers before settling an epoch",
            m.filled.clone(),
        );
        m
    }

    fn sent(&self, body: &TxBody) {
        self.sent
            .get_or_create(&vec![("type".to_string(), body.name().to_string())])
            .inc();
    }
}

/// What the loop needs from the chain: the committed state, read briefly.
pub trait LedgerView: Send + Sync + 'static {
    /// Runs `f` on the committed state.
    fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R;

    /// Fetching readings from peers, once the validators' swarm runs.
    fn peer_fill(&self) -> Option<fill::PeerFill> {
        None
    }
}

/// Fills `epoch`'s window from peers when the swarm runs; logs and counts what it fetched.
async fn fill_epoch<L: LedgerView>(
    ledger: &L,
    store: &Store,
    epoch: Epoch,
    metrics: &AuditMetrics,
) {
    let Some(peers) = ledger.peer_fill() else {
        return;
    };
    let (known, window) = ledger.with_state(|st| {
        (
            fill::metered_devices(st)
                .into_iter()
                .collect::<BTreeSet<_>>(),
            proof_epoch(st, epoch),
        )
    });
    let Some(window) = window else {
        return;
    };
    let started = Instant::now();
    let r = peers
        .fill(store, &known, window.start_s, window.end_s)
        .await;
    metrics.filled.inc_by(r.frames);
    if r.frames > 0 || r.missing_after_wait > 0 {
        tracing::info!(target: "node::audit", epoch, peers = r.peers, devices = r.devices, frames = r.frames, missing = r.missing_after_wait, ms = started.elapsed().as_millis() as u64, "filled readings from peers");
    } else {
        tracing::debug!(target: "node::audit", epoch, peers = r.peers, "nothing to fill from peers");
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The loop: runs until the transaction channel closes.
pub async fn run<L: LedgerView>(
    ledger: std::sync::Arc<L>,
    store: Store,
    me: Address,
    config: AuditSection,
    txs: mpsc::Sender<TxBody>,
    metrics: AuditMetrics,
) {
    let mut sent: HashMap<(u8, Epoch, Address), Instant> = HashMap::new();
    let mut proving: Option<tokio::task::JoinHandle<Option<TxBody>>> = None;
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Some(h) = &proving {
            if h.is_finished() {
                if let Some(h) = proving.take() {
                    match h.await {
                        Ok(Some(body)) => {
                            metrics.proofs.inc();
                            metrics.sent(&body);
                            if txs.send(body).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {
                            metrics.failures.inc();
                        }
                        Err(e) => {
                            metrics.failures.inc();
                            tracing::error!(target: "node::audit", error = %e, "prover task failed");
                        }
                    }
                }
            }
        }
        let resend = config.resend_after;
        let due = |sent: &HashMap<(u8, Epoch, Address), Instant>, k: (u8, Epoch, Address)| {
            sent.get(&k).is_none_or(|t| t.elapsed() >= resend)
        };
        let plan = ledger.with_state(|st| plan(st, &me, now_s(), config.grace));
        for step in plan {
            match step {
                Step::Close(epoch) => {
                    let k = (0, epoch, me);
                    if due(&sent, k) {
                        sent.insert(k, Instant::now());
                        let body = TxBody::CloseEpoch { epoch };
                        tracing::info!(target: "node::audit", epoch, "voting to close the epoch");
                        metrics.sent(&body);
                        if txs.send(body).await.is_err() {
                            return;
                        }
                    }
                }
                Step::Attest(epoch) => {
                    let k = (1, epoch, me);
                    if !due(&sent, k) {
                        continue;
                    }
                    sent.insert(k, Instant::now());
                    fill_epoch(ledger.as_ref(), &store, epoch, &metrics).await;
                    let built = ledger.with_state(|st| epoch_batches(st, &store, epoch));
                    match built {
                        Ok(batches) => {
                            if let Err(e) = record_batches(&store, epoch, &batches) {
                                metrics.failures.inc();
                                tracing::warn!(target: "node::audit", epoch, error = %e, "cannot record the attested batches");
                                continue;
                            }
                            let readings: u64 = batches.iter().map(|b| b.commitment.readings).sum();
                            tracing::info!(target: "node::audit", epoch, batches = batches.len(), readings, "attesting the epoch's readings");
                            let body = TxBody::AttestReadings {
                                epoch,
                                batches: batches.iter().map(|b| b.commitment).collect(),
                            };
                            metrics.sent(&body);
                            if txs.send(body).await.is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            metrics.failures.inc();
                            tracing::warn!(target: "node::audit", epoch, error = %e, "cannot build the epoch's batches");
                        }
                    }
                }
                Step::Prove { epoch, batch } => {
                    let k = (2, epoch, batch);
                    if proving.is_some() || !due(&sent, k) {
                        continue;
                    }
                    sent.insert(k, Instant::now());
                    let built = ledger.with_state(|st| {
                        let agreed = st
                            .fixed_readings_root(epoch)
                            .and_then(|f| f.batches.iter().find(|(b, _)| b.auditor == batch))
                            .map(|(b, _)| *b);
                        attested_batch(st, &store, epoch, &batch)
                            .map(|b| (b, agreed, proof_epoch(st, epoch)))
                    });
                    let (mine, agreed, window) = match built {
                        Ok(x) => x,
                        Err(e) => {
                            metrics.failures.inc();
                            tracing::warn!(target: "node::audit", epoch, error = %e, "cannot build the batch to prove");
                            continue;
                        }
                    };
                    let (Some(agreed), Some(window)) = (agreed, window) else {
                        continue;
                    };
                    let mine = match mine {
                        Some(m) if m.commitment == agreed => m,
                        _ => {
                            // What this validator attested (or holds) is not the agreed batch:
                            // fill from peers and rebuild from the store.
                            fill_epoch(ledger.as_ref(), &store, epoch, &metrics).await;
                            let rebuilt = ledger.with_state(|st| epoch_batches(st, &store, epoch));
                            match rebuilt.map(|bs| bs.into_iter().find(|b| b.auditor == batch)) {
                                Ok(Some(m)) if m.commitment == agreed => m,
                                _ => {
                                    metrics.failures.inc();
                                    tracing::warn!(target: "node::audit", epoch, batch = %batch, "this store's batch differs from the agreed one, even after filling from peers; not proving it");
                                    continue;
                                }
                            }
                        }
                    };
                    proving = Some(tokio::task::spawn_blocking(move || {
                        let started = Instant::now();
                        match groundtruth_proofs::prove_metered(
                            &window,
                            &mine.series,
                            SecurityLevel::Default100,
                        )
                        .and_then(|env| env.to_bytes())
                        {
                            Ok(proof) => {
                                tracing::info!(target: "node::audit", epoch, batch = %batch, readings = mine.commitment.readings, bytes = proof.len(), ms = started.elapsed().as_millis() as u64, "batch proven");
                                Some(TxBody::SubmitAuditProof {
                                    epoch,
                                    batch,
                                    proof,
                                })
                            }
                            Err(e) => {
                                tracing::error!(target: "node::audit", epoch, batch = %batch, error = %e, "proving failed");
                                None
                            }
                        }
                    }));
                }
            }
        }
        sent.retain(|_, t| t.elapsed() < Duration::from_secs(3600));
    }
}

/// One thing the loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Vote to close the current epoch.
    Close(Epoch),
    /// Attest the readings of an ended epoch.
    Attest(Epoch),
    /// Prove a batch.
    Prove {
        /// Epoch.
        epoch: Epoch,
        /// The batch (its assigned auditor).
        batch: Address,
    },
}

/// What validator `me` should do now, from the committed state and the wall clock (pure).
pub fn plan(st: &State, me: &Address, now_s: u64, grace: Duration) -> Vec<Step> {
    let p = st.params();
    let mut out = Vec::new();
    if !p.timed_epochs() || !st.is_active_operator(me) {
        return out;
    }
    let current = st.epoch();
    if let Some((_, end)) = p.epoch_window(current) {
        let voted = st.close_votes().any(|a| a == me);
        if !voted && now_s >= end.saturating_add(grace.as_secs()) {
            out.push(Step::Close(current));
        }
    }
    let oldest = current.saturating_sub(
        p.attestation_window_epochs
            .max(p.audit_deadline_epochs.saturating_mul(2)),
    );
    for e in oldest..current {
        let Some(seal) = st.epoch_seal(e) else {
            continue;
        };
        if seal.power_of(me) == 0 || seal.commitment.is_some() {
            continue;
        }
        let attested = st.attestations(e).iter().any(|a| a.validator == *me)
            || st.flagged(e).iter().any(|a| a.validator == *me);
        let fixed = st.fixed_readings_root(e);
        if !attested && fixed.is_none() && e.saturating_add(p.attestation_window_epochs) >= current
        {
            out.push(Step::Attest(e));
        }
        let Some(fixed) = fixed else {
            continue;
        };
        let reassigned = current > e.saturating_add(p.audit_deadline_epochs);
        for (b, audit) in &fixed.batches {
            if audit.is_some() {
                continue;
            }
            let responsible = if reassigned {
                next_in_committee(&seal.committee, &b.auditor) == Some(*me)
            } else {
                b.auditor == *me
            };
            if responsible {
                out.push(Step::Prove {
                    epoch: e,
                    batch: b.auditor,
                });
            }
        }
    }
    out
}

/// The committee member after `auditor` in operator order (wrapping), who takes over a batch
/// whose auditor missed the deadline.
fn next_in_committee(committee: &[(Address, u64)], auditor: &Address) -> Option<Address> {
    let i = committee.iter().position(|(a, _)| a == auditor)?;
    let next = committee.get(i + 1).or_else(|| committee.first())?;
    (next.0 != *auditor).then_some(next.0)
}
