//! Retention of raw readings: a reading is kept until its epoch has been committed on the
//! ledger and `keep_epochs` more epochs have been committed after it, then pruned from the
//! ingest store. What stays: the production read model's aggregates, audit proofs, epoch
//! commitments and seals (ledger), equivocation evidence and the batch keys each attestation
//! recorded (ingest store).
//!
//! ```text
//! every `poll`: committed-through epoch C (every epoch ≤ C has its commitment on the ledger)
//!   cutoff = C − keep (keep ≥ the ledger's evidence_max_age_epochs + 1)
//!   cutoff > last pass's ─► blocking thread, device after device:
//!     prefix of the device's readings from its floor, in seq order, while each one
//!       · is the next seq (a hole stops it: a gap may still be filled),
//!       · ends no later than the cutoff epoch's window end,
//!       · is below any seq recorded in the batch keys of an epoch after the cutoff,
//!       · is not the device's newest reading (ingest checks continuity against it),
//!     in chunks of `batch`: count in the read model (no-op if counted) + flush,
//!       raise the floor (durable) ─► remove the chunk (one sled batch) ─► flush,
//!       drop the read model's per-reading markers below the floor, pause
//!   then record "pruned through cutoff" (durable)
//! ```
//!
//! **Replays.** The floor is the per-device high-water mark of what was pruned: every seq
//! below it was stored, so ingest's sequence tracker has it settled; at start ingest settles
//! everything below each floor too ([`Store::pruned_floors`]). A replayed pruned reading is
//! therefore settled but absent, and ingest refuses it as a duplicate. (It can no longer be
//! told apart from an equivocation: the original frame is gone, which is why `keep_epochs` is
//! at least the ledger's evidence age.)
//!
//! **Kill safety.** Every step is idempotent and ordered so that a kill leaves nothing
//! inconsistent: a floor is durable before the readings below it go, readings left below a
//! floor are removed by the next pass, the read model counts a reading at most once, and a pass
//! that did not finish is simply run again. No step holds a lock beyond one sled batch of at
//! most `batch` removals.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use groundtruth_device_sdk::{DeviceId, Reading, SignedReading};
use groundtruth_ledger::State;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};

use crate::ingest::policy::reading_end_s;
use crate::ingest::store::{Status, Store, StoreError, StoredReading};
use crate::production::{Production, ProductionError};

/// `[retention]`: how long raw readings are kept (only with consensus and timed epochs: the
/// ledger says which epochs are committed).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionSection {
    /// Prune at all.
    pub enabled: bool,
    /// Committed epochs a reading is kept after its own epoch is committed (raised to the
    /// ledger's `evidence_max_age_epochs + 1` if lower, so equivocation can still be proven).
    pub keep_epochs: u64,
    /// Readings removed per sled batch (and per read-model flush).
    pub batch: usize,
    /// Pause between two batches, so ingest keeps the disk.
    #[serde(with = "humantime_serde")]
    pub pause: Duration,
    /// How often the ledger is looked at for newly committed epochs.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
}

/// Default `keep_epochs`: a day of the devnet's 60-second epochs.
pub const DEFAULT_KEEP_EPOCHS: u64 = 1440;

impl Default for RetentionSection {
    fn default() -> Self {
        Self {
            enabled: true,
            keep_epochs: DEFAULT_KEEP_EPOCHS,
            batch: 1024,
            pause: Duration::from_millis(5),
            poll: Duration::from_secs(30),
        }
    }
}

impl RetentionSection {
    /// Checks the ranges (`key` names the section in messages).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=65_536).contains(&self.batch) {
            return Err(("retention.batch", "must be between 1 and 65536".into()));
        }
        if self.poll.is_zero() {
            return Err(("retention.poll", "must be positive".into()));
        }
        Ok(())
    }
}

/// Why a retention pass stopped.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    /// The ingest store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The production read model failed.
    #[error("production read model: {0}")]
    Production(#[from] ProductionError),
}

/// Retention counters, under `groundtruth_retention_*`.
#[derive(Clone, Debug, Default)]
pub struct RetentionMetrics {
    /// Completed passes.
    pub passes: Counter,
    /// Raw readings removed from the store.
    pub pruned_readings: Counter,
    /// Their key and value bytes.
    pub pruned_bytes: Counter,
    /// Read-model per-reading markers removed.
    pub forgotten_markers: Counter,
    /// Readings the read model had not counted yet, counted just before they were pruned.
    pub counted_before_prune: Counter,
    /// Last epoch a completed pass pruned through (−1: none yet).
    pub pruned_through_epoch: Gauge,
}

impl RetentionMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        m.pruned_through_epoch.set(-1);
        let sub = registry.sub_registry_with_prefix("groundtruth_retention");
        sub.register("passes", "Completed retention passes", m.passes.clone());
        sub.register(
            "pruned_readings",
            "Raw readings pruned from the ingest store",
            m.pruned_readings.clone(),
        );
        sub.register(
            "pruned_bytes",
            "Key and value bytes of the pruned readings",
            m.pruned_bytes.clone(),
        );
        sub.register(
            "forgotten_markers",
            "Production read-model per-reading markers removed after their readings were pruned",
            m.forgotten_markers.clone(),
        );
        sub.register(
            "counted_before_prune",
            "Readings the production read model had missed, counted just before pruning",
            m.counted_before_prune.clone(),
        );
        sub.register(
            "pruned_through_epoch",
            "Last epoch whose readings a completed retention pass pruned (-1: none)",
            m.pruned_through_epoch.clone(),
        );
        m
    }
}

/// What a pass may prune.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Horizon {
    /// The last prunable epoch.
    pub epoch: u64,
    /// Its window's end (Unix seconds): a reading is prunable once its interval (a heartbeat:
    /// its timestamp) ends no later than this.
    pub end_s: u64,
    /// Per device, the lowest seq recorded in the batch keys of an epoch after `epoch`: that
    /// reading and every later one stay.
    pub protected: HashMap<DeviceId, u64>,
}

impl Horizon {
    /// Fills [`Horizon::protected`] from the batch keys recorded for epochs after `epoch`.
    pub fn protect_attested(&mut self, store: &Store) -> Result<(), StoreError> {
        let Some(first) = self.epoch.checked_add(1) else {
            return Ok(());
        };
        for item in store.batch_keys_from(first) {
            for (device, seq) in item? {
                let min = self.protected.entry(device).or_insert(seq);
                *min = (*min).min(seq);
            }
        }
        Ok(())
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassOutcome {
    /// Devices with at least one reading pruned.
    pub devices: u64,
    /// Readings pruned.
    pub readings: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Read-model markers removed.
    pub markers: u64,
}

/// Limits of a pass.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Readings per sled batch.
    pub batch: usize,
    /// Pause between batches.
    pub pause: Duration,
}

impl From<&RetentionSection> for Limits {
    fn from(s: &RetentionSection) -> Self {
        Self {
            batch: s.batch.max(1),
            pause: s.pause,
        }
    }
}

/// Whether a stored reading lies entirely before `end_s` (undecodable: never prunable).
fn ends_by(r: &StoredReading, end_s: u64) -> Option<SignedReading> {
    let signed = SignedReading::decode_frame(&r.frame).ok()?;
    (reading_end_s(&signed.reading.body, signed.reading.timestamp_ms) <= end_s).then_some(signed)
}

/// One pass over every device of the store (blocking: run it on its own thread). Work is
/// gathered across devices into batches of at most `limits.batch` readings, each committed
/// with three flushes (read model, floors, removals) whatever the number of devices in it.
pub fn prune_pass(
    store: &Store,
    production: Option<&Production>,
    horizon: &Horizon,
    limits: Limits,
    metrics: &RetentionMetrics,
) -> Result<PassOutcome, RetentionError> {
    let mut out = PassOutcome::default();
    let mut pending = Pending::default();
    let mut next = store.next_device(None)?;
    while let Some(device) = next {
        prune_device(
            store,
            production,
            horizon,
            limits,
            metrics,
            &device,
            &mut pending,
            &mut out,
        )?;
        next = store.next_device(Some(&device))?;
    }
    commit(store, production, &mut pending, limits, metrics, &mut out)?;
    Ok(out)
}

/// Readings chosen for pruning, not yet pruned.
#[derive(Default)]
struct Pending {
    /// New floor per device.
    floors: Vec<(DeviceId, u64)>,
    /// The accepted ones, for the read model.
    accepted: Vec<Reading>,
    /// How many readings (accepted or not).
    readings: usize,
}

fn account(metrics: &RetentionMetrics, out: &mut PassOutcome, readings: u64, bytes: u64) {
    out.readings = out.readings.saturating_add(readings);
    out.bytes = out.bytes.saturating_add(bytes);
    metrics.pruned_readings.inc_by(readings);
    metrics.pruned_bytes.inc_by(bytes);
}

fn forget(
    production: Option<&Production>,
    device: &DeviceId,
    below: u64,
    limits: Limits,
    metrics: &RetentionMetrics,
    out: &mut PassOutcome,
) -> Result<(), RetentionError> {
    let Some(p) = production else {
        return Ok(());
    };
    loop {
        let n = p.forget_counted_below(device, below, limits.batch)?;
        out.markers = out.markers.saturating_add(n);
        metrics.forgotten_markers.inc_by(n);
        if n < limits.batch as u64 {
            return Ok(());
        }
    }
}

/// Prunes what `pending` holds: counted in the read model (flushed), floors raised (durable),
/// readings removed (flushed), markers dropped; then pauses.
fn commit(
    store: &Store,
    production: Option<&Production>,
    pending: &mut Pending,
    limits: Limits,
    metrics: &RetentionMetrics,
    out: &mut PassOutcome,
) -> Result<(), RetentionError> {
    if pending.floors.is_empty() {
        return Ok(());
    }
    if let Some(p) = production {
        let n = p.record(&pending.accepted)?;
        metrics.counted_before_prune.inc_by(n as u64);
        p.flush()?;
    }
    let pruned = store.prune_floors(&pending.floors)?;
    account(metrics, out, pruned.readings, pruned.bytes);
    for (device, below) in &pending.floors {
        forget(production, device, *below, limits, metrics, out)?;
    }
    tracing::debug!(target: "node::retention", devices = pending.floors.len(), readings = pruned.readings, "pruned a batch");
    *pending = Pending::default();
    if !limits.pause.is_zero() {
        std::thread::sleep(limits.pause);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn prune_device(
    store: &Store,
    production: Option<&Production>,
    horizon: &Horizon,
    limits: Limits,
    metrics: &RetentionMetrics,
    device: &DeviceId,
    pending: &mut Pending,
    out: &mut PassOutcome,
) -> Result<(), RetentionError> {
    let mut floor = store.pruned_below(device)?;
    // What a killed pass left below a durable floor (normally nothing: one seek each).
    loop {
        let p = store.prune_below(device, floor, limits.batch)?;
        account(metrics, out, p.readings, p.bytes);
        if p.readings < limits.batch as u64 {
            break;
        }
    }
    forget(production, device, floor, limits, metrics, out)?;
    let limit = horizon.protected.get(device).copied().unwrap_or(u64::MAX);
    let start = floor;
    loop {
        if pending.readings >= limits.batch {
            commit(store, production, pending, limits, metrics, out)?;
        }
        let room = limits.batch.saturating_sub(pending.readings);
        // (reading, accepted): only accepted readings count in the read model.
        let mut chunk: Vec<(Reading, bool)> = Vec::with_capacity(room.min(1024));
        let mut expected = floor;
        let mut more = false;
        let mut stop = false;
        for item in store.device_readings_from(device, floor) {
            let r = item?;
            if r.seq != expected || r.seq >= limit {
                more = true;
                stop = true;
                break;
            }
            let Some(signed) = ends_by(&r, horizon.end_s) else {
                more = true;
                stop = true;
                break;
            };
            if chunk.len() >= room {
                more = true;
                break;
            }
            chunk.push((signed.reading, r.status == Status::Accepted));
            let Some(e) = expected.checked_add(1) else {
                stop = true;
                break;
            };
            expected = e;
        }
        if !more {
            // The device's newest reading stays: ingest checks the next one against it.
            chunk.pop();
            stop = true;
        }
        let Some(below) = chunk.last().and_then(|(r, _)| r.seq.checked_add(1)) else {
            return Ok(());
        };
        if floor == start {
            out.devices = out.devices.saturating_add(1);
        }
        pending.readings = pending.readings.saturating_add(chunk.len());
        pending.floors.push((*device, below));
        pending
            .accepted
            .extend(chunk.iter().filter(|(_, a)| *a).map(|(r, _)| *r));
        floor = below;
        if stop {
            return Ok(());
        }
    }
}

/// The last epoch `C` such that every epoch from `next` to `C` has its commitment on the
/// ledger, advancing `next` past it (at most `max_steps` lookups, so the ledger lock is held
/// briefly). `None` while no epoch is committed.
pub fn advance_committed(st: &State, next: &mut u64, max_steps: u64) -> Option<u64> {
    let mut steps = 0u64;
    while steps < max_steps && *next < st.epoch() && st.epoch_commitment(*next).is_some() {
        *next = next.checked_add(1)?;
        steps += 1;
    }
    next.checked_sub(1)
}

/// The horizon (without protected seqs) once epochs through `committed` are committed:
/// `keep` epochs back, `keep` raised to the ledger's evidence age + 1. `None` when epochs are
/// not timed or not enough have been committed.
pub fn horizon_at(st: &State, committed: u64, keep: u64) -> Option<Horizon> {
    let p = st.params();
    if !p.timed_epochs() {
        return None;
    }
    let keep = keep.max(p.evidence_max_age_epochs.saturating_add(1));
    let epoch = committed.checked_sub(keep)?;
    let (_, end_s) = p.epoch_window(epoch)?;
    Some(Horizon {
        epoch,
        end_s,
        protected: HashMap::new(),
    })
}

/// Epoch lookups per poll while catching up with the ledger.
const MAX_EPOCH_STEPS: u64 = 100_000;

/// Spawns the retention task on tokio: every `poll`, when the horizon moved past the last
/// completed pass, one [`prune_pass`] on the blocking pool, logged. Waits for `after` first
/// (the read model's catch-up, which must not race the removal of its markers).
pub fn spawn<L: crate::audit::LedgerView>(
    ledger: Arc<L>,
    store: Store,
    production: Option<Production>,
    section: RetentionSection,
    metrics: RetentionMetrics,
    after: Option<std::thread::JoinHandle<()>>,
) {
    tokio::spawn(async move {
        if let Some(h) = after {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        let done = match store.pruned_through_epoch() {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(target: "node::retention", error = %e, "reading the retention state failed; retention is off");
                return;
            }
        };
        if let Some(d) = done {
            metrics
                .pruned_through_epoch
                .set(i64::try_from(d).unwrap_or(i64::MAX));
        }
        let mut done = done;
        let mut next = done.map_or(0, |d| d.saturating_add(1));
        let mut tick = tokio::time::interval(section.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tracing::info!(target: "node::retention", keep_epochs = section.keep_epochs, pruned_through = ?done, "retention of raw readings on");
        loop {
            tick.tick().await;
            let horizon = ledger.with_state(|st| {
                let committed = advance_committed(st, &mut next, MAX_EPOCH_STEPS)?;
                horizon_at(st, committed, section.keep_epochs)
            });
            let Some(mut horizon) = horizon else {
                continue;
            };
            if done.is_some_and(|d| d >= horizon.epoch) {
                continue;
            }
            let (store2, production2, metrics2) =
                (store.clone(), production.clone(), metrics.clone());
            let limits = Limits::from(&section);
            let started = Instant::now();
            let pass = tokio::task::spawn_blocking(move || {
                horizon.protect_attested(&store2)?;
                let out = prune_pass(&store2, production2.as_ref(), &horizon, limits, &metrics2)?;
                store2.set_pruned_through_epoch(horizon.epoch)?;
                Ok::<_, RetentionError>((horizon.epoch, out))
            })
            .await;
            match pass {
                Ok(Ok((epoch, out))) => {
                    done = Some(epoch);
                    metrics.passes.inc();
                    metrics
                        .pruned_through_epoch
                        .set(i64::try_from(epoch).unwrap_or(i64::MAX));
                    tracing::info!(target: "node::retention", through_epoch = epoch, devices = out.devices, readings = out.readings, bytes = out.bytes, markers = out.markers, took_ms = started.elapsed().as_millis() as u64, "pruned raw readings");
                }
                Ok(Err(e)) => {
                    tracing::error!(target: "node::retention", error = %e, "retention pass failed; retried at the next poll");
                }
                Err(e) => {
                    tracing::error!(target: "node::retention", error = %e, "retention task failed; retried at the next poll");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::registry::{Registry, SharedRegistry};
    use crate::ingest::{Inbound, IngestContext};
    use crate::metrics::{IngestMetrics, ReasonLabel};
    use groundtruth_device_sdk::{topics, DeviceKey, EnergyReading, ReadingBody};
    use std::sync::atomic::AtomicU64;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// 2024-05-01T00:00:00Z: long past, so no reading is refused as from the future.
    const T0: u64 = 1_714_521_600;
    const LEN: u64 = 300;

    fn key(n: u8) -> DeviceKey {
        DeviceKey::from_seed(&[n; 32])
    }

    /// Energy reading `seq` of `k`: interval `[T0 + seq·300, +300)`, 10 Wh, continuous register.
    fn frame(k: &DeviceKey, seq: u64, wh: u64) -> Vec<u8> {
        k.sign(Reading {
            device: k.device_id(),
            seq,
            timestamp_ms: (T0 + (seq + 1) * LEN) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: T0 + seq * LEN,
                interval_len_s: LEN as u32,
                energy_wh: wh,
                register_wh: (seq + 1) * 10,
            }),
        })
        .to_frame()
    }

    fn horizon(end_s: u64) -> Horizon {
        Horizon {
            epoch: 0,
            end_s,
            protected: HashMap::new(),
        }
    }

    fn limits(batch: usize) -> Limits {
        Limits {
            batch,
            pause: Duration::ZERO,
        }
    }

    fn seqs(store: &Store, d: &DeviceId) -> Vec<u64> {
        store
            .device_readings_from(d, 0)
            .filter_map(|r| r.ok().map(|r| r.seq))
            .collect()
    }

    /// Fills a store and a read model with `n` readings of devices 1 and 2 (device 2 has a hole
    /// at seq 5 and a rejected reading at 2).
    fn filled(
        dir: &std::path::Path,
        n: u64,
    ) -> Result<(Store, Production), Box<dyn std::error::Error>> {
        let store = Store::open(&dir.join("store"))?;
        let production = Production::open(&dir.join("production"), Arc::new(|_: &DeviceId| None))?;
        for dev in [1u8, 2] {
            let k = key(dev);
            let mut accepted = Vec::new();
            for seq in 0..n {
                if dev == 2 && seq == 5 {
                    continue;
                }
                let f = frame(&k, seq, 10);
                let status = if dev == 2 && seq == 2 {
                    Status::Rejected
                } else {
                    Status::Accepted
                };
                store.put(&k.device_id(), seq, status, &f)?;
                if status == Status::Accepted {
                    accepted.push(
                        SignedReading::decode_frame(&f)
                            .map_err(|e| format!("{e:?}"))?
                            .reading,
                    );
                }
            }
            production.record(&accepted)?;
        }
        store.flush()?;
        Ok((store, production))
    }

    #[test]
    fn prunes_the_old_contiguous_prefix_and_keeps_aggregates() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, production) = filled(dir.path(), 20)?;
        let (d1, d2) = (key(1).device_id(), key(2).device_id());
        let before = production.device(&d1)?.ok_or("d1 counted")?;
        let m = RetentionMetrics::default();
        // Readings 0..=9 end by T0 + 3000.
        let out = prune_pass(
            &store,
            Some(&production),
            &horizon(T0 + 10 * LEN),
            limits(3),
            &m,
        )?;
        assert_eq!(seqs(&store, &d1), (10..20).collect::<Vec<_>>());
        // Device 2 stops at its hole (seq 5 may still arrive); its rejected reading 2 went too.
        assert_eq!(seqs(&store, &d2), (6..20).collect::<Vec<_>>());
        assert_eq!(
            (store.pruned_below(&d1)?, store.pruned_below(&d2)?),
            (10, 5)
        );
        assert_eq!(out.readings, 15);
        assert_eq!(out.devices, 2);
        assert_eq!(m.pruned_readings.get(), 15);
        // The read model's totals stay; its markers of the 14 accepted pruned readings went.
        assert_eq!(production.device(&d1)?.as_ref(), Some(&before));
        assert_eq!(out.markers, 14);
        // Evidence is untouched by retention.
        store.put_evidence(&d1, 19, &frame(&key(1), 19, 10), &frame(&key(1), 19, 11))?;
        // Idempotent: a second pass at the same horizon prunes nothing.
        let again = prune_pass(
            &store,
            Some(&production),
            &horizon(T0 + 10 * LEN),
            limits(3),
            &m,
        )?;
        assert_eq!(again, PassOutcome::default());
        // Far horizon: everything but each device's newest reading (and d2's hole) goes.
        prune_pass(
            &store,
            Some(&production),
            &horizon(u64::MAX),
            limits(1024),
            &m,
        )?;
        assert_eq!(seqs(&store, &d1), vec![19]);
        assert_eq!(seqs(&store, &d2), (6..20).collect::<Vec<_>>());
        assert_eq!(store.evidence().count(), 1);
        assert_eq!(production.device(&d1)?.as_ref(), Some(&before));
        Ok(())
    }

    #[test]
    fn batch_keys_after_the_horizon_protect_their_readings() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, production) = filled(dir.path(), 20)?;
        let d1 = key(1).device_id();
        // Epoch 7's batch (after the horizon's epoch 3) names reading 4 of device 1.
        store.put_batch_keys(7, &[9u8; 32], &[(d1, 4), (d1, 12)])?;
        store.put_batch_keys(2, &[9u8; 32], &[(d1, 1)])?;
        let mut h = horizon(T0 + 10 * LEN);
        h.epoch = 3;
        h.protect_attested(&store)?;
        assert_eq!(h.protected.get(&d1), Some(&4));
        prune_pass(
            &store,
            Some(&production),
            &h,
            limits(1024),
            &RetentionMetrics::default(),
        )?;
        assert_eq!(seqs(&store, &d1), (4..20).collect::<Vec<_>>());
        Ok(())
    }

    #[test]
    fn a_pass_killed_after_raising_a_floor_is_finished_by_the_next() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (store, production) = filled(dir.path(), 20)?;
        let d1 = key(1).device_id();
        // The floor is durable, nothing removed yet (as if killed right after it).
        assert_eq!(store.prune_below(&d1, 8, 0)?.readings, 0);
        drop((store, production));
        let store = Store::open(&dir.path().join("store"))?;
        let production = Production::open(
            &dir.path().join("production"),
            Arc::new(|_: &DeviceId| None),
        )?;
        assert_eq!(store.pruned_below(&d1)?, 8);
        // Even with a horizon before them, readings below the durable floor go.
        let out = prune_pass(
            &store,
            Some(&production),
            &horizon(T0),
            limits(3),
            &RetentionMetrics::default(),
        )?;
        assert_eq!(out.readings, 8);
        assert_eq!(out.markers, 8);
        assert_eq!(seqs(&store, &d1), (8..20).collect::<Vec<_>>());
        Ok(())
    }

    fn rejected(m: &IngestMetrics, reason: &str) -> u64 {
        m.rejected
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .get()
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) -> TestResult {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !cond() {
            if Instant::now() > deadline {
                return Err(format!("timed out waiting for {what}").into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(())
    }

    /// Real ingest threads over `store`; returns the sender and the joinable threads.
    fn start_ingest(
        store: &Store,
        registry: &SharedRegistry,
        metrics: &IngestMetrics,
    ) -> Result<
        (
            tokio::sync::mpsc::Sender<Inbound>,
            crate::ingest::IngestThreads,
        ),
        Box<dyn std::error::Error>,
    > {
        let (client, _eventloop) =
            rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 64);
        let ctx = IngestContext {
            config: crate::config::IngestSection::default(),
            max_payload: 1024,
            registry: registry.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            clients: vec![client],
            generations: vec![Arc::new(AtomicU64::new(0))],
            evidence: None,
            replicate: None,
            gap_fill: None,
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        Ok((tx, crate::ingest::spawn(ctx, rx)?))
    }

    fn send(tx: &tokio::sync::mpsc::Sender<Inbound>, k: &DeviceKey, f: Vec<u8>) -> TestResult {
        let publish = rumqttc::Publish::new(
            topics::readings_topic(&k.device_id()),
            rumqttc::QoS::AtMostOnce,
            f,
        );
        tx.blocking_send(Inbound {
            publish,
            connection: 0,
            generation: 0,
        })?;
        Ok(())
    }

    fn stop(tx: tokio::sync::mpsc::Sender<Inbound>, threads: crate::ingest::IngestThreads) {
        drop(tx);
        for t in threads.threads {
            let _ = t.join();
        }
    }

    #[test]
    fn a_replayed_pruned_reading_is_refused_before_and_after_a_restart() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let k = key(1);
        let d = k.device_id();
        let registry = SharedRegistry::new(Registry::one_energy_meter(&d, 1_000_000));
        let metrics =
            IngestMetrics::register(&mut prometheus_client::registry::Registry::default());
        let (tx, threads) = start_ingest(&store, &registry, &metrics)?;
        for seq in 0..10 {
            send(&tx, &k, frame(&k, seq, 10))?;
        }
        wait_for("10 accepted readings", || {
            metrics.stored_accepted.get() == 10
        })?;
        let out = prune_pass(
            &store,
            None,
            &horizon(u64::MAX),
            limits(4),
            &RetentionMetrics::default(),
        )?;
        assert_eq!(out.readings, 9);
        assert!(store.get(&d, 3)?.is_none());

        // While running: the same reading, and a different one at the pruned seq.
        send(&tx, &k, frame(&k, 3, 10))?;
        send(&tx, &k, frame(&k, 3, 11))?;
        wait_for("two duplicates", || rejected(&metrics, "duplicate") == 2)?;
        assert!(store.get(&d, 3)?.is_none());
        assert_eq!(store.evidence().count(), 0);
        stop(tx, threads);

        // After a restart the sequence tracker is rebuilt from the store and the floor.
        let (tx, threads) = start_ingest(&store, &registry, &metrics)?;
        send(&tx, &k, frame(&k, 3, 10))?;
        send(&tx, &k, frame(&k, 0, 10))?;
        send(&tx, &k, frame(&k, 10, 10))?;
        wait_for("two more duplicates and seq 10", || {
            rejected(&metrics, "duplicate") == 4 && metrics.stored_accepted.get() == 2
        })?;
        // The next reading was checked against the kept newest one and accepted; no gap opened.
        assert!(store.get(&d, 10)?.is_some());
        assert!(store.get(&d, 0)?.is_none() && store.get(&d, 3)?.is_none());
        assert_eq!(metrics.open_gaps.get(), 0);
        assert_eq!(rejected(&metrics, "seq_gap_too_far"), 0);
        stop(tx, threads);
        Ok(())
    }
}
