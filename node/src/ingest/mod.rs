//! Ingest: MQTT messages in, durable verified readings out.
//!
//! ```text
//! MQTT event loop (tokio task) ──bounded──▶ verifier thread ──bounded──▶ committer thread
//!   Publish + connection generation          decode, topic, registry,      seq / duplicate /
//!                                            capacity, batch signatures    equivocation, sled,
//!                                                                          flush, then PUBACK
//! ```
//! A message is acknowledged to the broker only after the flush that made its outcome durable,
//! so a node killed at any moment loses nothing it acknowledged: the broker redelivers the rest
//! to the node's persistent session. Redeliveries of stored readings are counted as duplicates.

pub mod broker;
mod checks;
mod gaps;
pub mod mqtt;
pub mod policy;
pub mod ratelimit;
pub mod registry;
pub mod store;
pub mod tls;

pub use checks::{decide, precheck, register_continues, within_capacity, Rejection, StoreDecision};
pub use gaps::{GapAction, GapTracker, MAX_RESEND_ATTEMPTS, MAX_SEQ_AHEAD, MAX_SETTLED_ABOVE_GAP};
pub use policy::{judge, Known, PolicyConfig, Verdict};
pub use ratelimit::{DeviceRateLimiter, RateConfig};

use crate::config::IngestSection;
use crate::ingest::registry::SharedRegistry;
use crate::ingest::store::{Status, Store, StoreError};
use crate::metrics::{IngestMetrics, KindLabel};
use groundtruth_device_sdk::{verify_batch, DeviceId, ReadingBody, SignedReading};
use rumqttc::{AsyncClient, Publish, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A message from the broker with the connection generation it arrived on.
#[derive(Debug)]
pub struct Inbound {
    /// The MQTT publish (topic, payload, packet id).
    pub publish: Publish,
    /// Which of the node's MQTT connections it came on.
    pub connection: usize,
    /// Connection generation; acks for older generations are not sent (the broker redelivers).
    pub generation: u64,
}

struct Checked {
    inbound: Inbound,
    verdict: Result<SignedReading, Rejection>,
}

/// Shared pieces the ingest threads need.
#[derive(Clone)]
pub struct IngestContext {
    /// Sizes and intervals.
    pub config: IngestSection,
    /// Largest accepted payload.
    pub max_payload: usize,
    /// Registered devices (swapped by the ledger after each committed block).
    pub registry: SharedRegistry,
    /// Durable storage.
    pub store: Store,
    /// Metrics.
    pub metrics: IngestMetrics,
    /// One client per MQTT connection, to acknowledge what came on it; the first also sends
    /// resend requests. Never empty.
    pub clients: Vec<AsyncClient>,
    /// Current generation of each connection (bumped on every CONNACK).
    pub generations: Vec<Arc<AtomicU64>>,
    /// Where device equivocation evidence (first frame, second frame) goes to become a
    /// slashing transaction (`crate::chain`); `None` without consensus. Full: dropped (the
    /// evidence stays in the store).
    pub evidence: Option<tokio::sync::mpsc::Sender<(Vec<u8>, Vec<u8>)>>,
    /// Where frames accepted from this node's broker go to be replicated to the other
    /// validators (`crate::chain::swarm`); frames that came from peers are not sent back.
    /// Full: dropped (peers fill the gap later).
    pub replicate: Option<tokio::sync::mpsc::Sender<bytes::Bytes>>,
    /// Where sequence gaps go to be fetched from peer validators (`crate::chain::swarm`),
    /// besides the resend request to the device through this node's broker: with several
    /// brokers the device may be publishing to another validator's broker (its own died, or
    /// this node was down while it published), and then only the peers hold the missing
    /// readings. Asked as often as the resend request (backing off with it). Full: dropped
    /// (asked again at the next request).
    pub gap_fill: Option<tokio::sync::mpsc::Sender<GapFill>>,
}

/// A sequence gap to fill from peer validators: `device`'s readings `from_seq..=to_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GapFill {
    /// Device with a gap.
    pub device: DeviceId,
    /// First missing sequence number.
    pub from_seq: u64,
    /// Last missing sequence number of that gap.
    pub to_seq: u64,
}

/// Generation given to readings that arrived from a peer validator rather than from an MQTT
/// connection: never acknowledged (nothing to acknowledge), never replicated again.
pub const REPLICATED_GENERATION: u64 = u64::MAX;

/// The running ingest threads.
#[derive(Debug)]
pub struct IngestThreads {
    /// Verifier and committer.
    pub threads: Vec<std::thread::JoinHandle<()>>,
    /// Resolves with the error if storage fails: ingest has stopped (without acknowledging
    /// anything it did not make durable) and the node must stop with a non-zero exit.
    pub failed: tokio::sync::oneshot::Receiver<StoreError>,
}

/// Starts the verifier and committer threads. They stop when `inbound` closes.
pub fn spawn(
    ctx: IngestContext,
    inbound: tokio::sync::mpsc::Receiver<Inbound>,
) -> std::io::Result<IngestThreads> {
    spawn_with_production(ctx, inbound, None)
}

/// [`spawn`], also counting each durable accepted reading into the production read model
/// (after its PUBACKs are handed on; see [`crate::production`]).
pub fn spawn_with_production(
    ctx: IngestContext,
    inbound: tokio::sync::mpsc::Receiver<Inbound>,
    production: Option<crate::production::Production>,
) -> std::io::Result<IngestThreads> {
    let (failed_tx, failed) = tokio::sync::oneshot::channel();
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Checked>>(
        ctx.config.queue_capacity / ctx.config.verify_batch.max(1) + 1,
    );
    let verifier_ctx = ctx.clone();
    let verifier = std::thread::Builder::new()
        .name("ingest-verify".into())
        .spawn(move || verifier_loop(&verifier_ctx, inbound, tx))?;
    let committer = std::thread::Builder::new().name("ingest-commit".into()).spawn(move || {
        if let Err(e) = committer_loop(&ctx, rx, production.as_ref()) {
            tracing::error!(target: "node::ingest", error = %e, "storage failed; ingest stopped without acknowledging unstored readings");
            let _ = failed_tx.send(e);
        }
    })?;
    Ok(IngestThreads {
        threads: vec![verifier, committer],
        failed,
    })
}

fn verifier_loop(
    ctx: &IngestContext,
    mut inbound: tokio::sync::mpsc::Receiver<Inbound>,
    out: SyncSender<Vec<Checked>>,
) {
    let batch_size = ctx.config.verify_batch.max(1);
    let mut rng = rand::rngs::OsRng;
    let mut limiter = DeviceRateLimiter::new(RateConfig {
        burst: ctx.config.device_burst,
        per_second: ctx.config.device_rate_per_s,
    });
    // Highest sequence number charged to each device's allowance (registered devices only:
    // the precheck refuses unknown ones first, so this is bounded by the registry).
    let mut highest: HashMap<groundtruth_device_sdk::DeviceId, u64> = HashMap::new();
    while let Some(first) = inbound.blocking_recv() {
        let mut batch = Vec::with_capacity(batch_size);
        batch.push(first);
        while batch.len() < batch_size {
            match inbound.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        ctx.metrics.received.inc_by(batch.len() as u64);
        let registry = ctx.registry.load();
        let now = Instant::now();
        let mut checked: Vec<Checked> = batch
            .into_iter()
            .map(|inbound| {
                let verdict = precheck(
                    &inbound.publish.topic,
                    &inbound.publish.payload,
                    ctx.max_payload,
                    &registry,
                );
                Checked { inbound, verdict }
            })
            .collect();
        let to_verify: Vec<SignedReading> = checked
            .iter()
            .filter_map(|c| c.verdict.as_ref().ok().copied())
            .collect();
        let valid = verify_batch(&to_verify, &mut rng);
        let mut flags = valid.into_iter();
        for c in checked.iter_mut().filter(|c| c.verdict.is_ok()) {
            if !flags.next().unwrap_or(false) {
                c.verdict = Err(Rejection::BadSignature);
            }
        }
        // The rate limit charges only authentic readings that advance their device's sequence:
        // forged frames (which anyone can send on a topic when the broker does not check
        // logins) and replays of a device's own old frames (refused later as duplicates) cannot
        // use up an honest device's allowance. A device flooding new readings is still cut off.
        for c in &mut checked {
            let Ok(signed) = &c.verdict else {
                continue;
            };
            let (device, seq) = (signed.reading.device, signed.reading.seq);
            if highest.get(&device).is_some_and(|h| seq <= *h) {
                continue;
            }
            if limiter.allow(device, now) {
                highest.insert(device, seq);
            } else {
                c.verdict = Err(Rejection::RateLimited);
            }
        }
        if out.send(checked).is_err() {
            return;
        }
    }
}

/// Summarises rejections in the log every `every`, by reason; each rejection itself is logged
/// once, at debug level, so a flood of bad input cannot flood the log.
struct RejectionSummary {
    since: Instant,
    every: Duration,
    counts: HashMap<Rejection, u64>,
}

impl RejectionSummary {
    fn record(&mut self, reason: Rejection, now: Instant) {
        *self.counts.entry(reason).or_default() += 1;
        if now.duration_since(self.since) >= self.every {
            let mut parts: Vec<String> = self
                .counts
                .iter()
                .map(|(r, n)| format!("{r}={n}"))
                .collect();
            parts.sort();
            tracing::info!(target: "node::ingest", rejected = %parts.join(" "), "rejections in the last {:?}", self.every);
            self.counts.clear();
            self.since = now;
        }
    }
}

struct Committer<'a> {
    ctx: &'a IngestContext,
    gaps: GapTracker,
    /// Last accepted energy reading per device, to check register continuity without a read.
    last_body: HashMap<DeviceId, (u64, ReadingBody)>,
    summary: RejectionSummary,
    kind_counters: HashMap<&'static str, prometheus_client::metrics::counter::Counter>,
    /// The policy's tunables.
    policy: PolicyConfig,
    /// Devices already warned about for jumping too far ahead (logged once each).
    flagged: std::collections::HashSet<DeviceId>,
    /// Durable messages whose PUBACK the client's request queue could not take yet, with the
    /// connection generation they arrived on. Never blocking on acks is what keeps the MQTT
    /// event loop, which drains that queue, from waiting on us while we wait on it.
    pending_acks: VecDeque<(usize, u64, Publish)>,
}

impl Committer<'_> {
    /// Hands pending PUBACKs to the MQTT client, oldest first, until its queue is full. Acks for
    /// an older connection are dropped: the broker redelivers those messages (as duplicates).
    fn send_acks(&mut self) {
        while let Some((connection, generation, publish)) = self.pending_acks.front() {
            let (Some(client), Some(current)) = (
                self.ctx.clients.get(*connection),
                self.ctx.generations.get(*connection),
            ) else {
                self.pending_acks.pop_front();
                continue;
            };
            if *generation == current.load(Ordering::Acquire) && client.try_ack(publish).is_err() {
                break;
            }
            self.pending_acks.pop_front();
        }
    }

    /// Gathers what the pure policy needs ([`policy::judge`]), then carries out its verdict;
    /// returns the rejection, if any.
    fn apply(&mut self, c: &Checked, now_unix_s: u64) -> Result<Option<Rejection>, StoreError> {
        let signed = match &c.verdict {
            Ok(s) => s,
            Err(r) => return Ok(Some(*r)),
        };
        let device = signed.reading.device;
        let seq = signed.reading.seq;
        let frame: &[u8] = &c.inbound.publish.payload;
        if !self.gaps.can_track(&device, seq) {
            if self.flagged.insert(device) {
                tracing::warn!(target: "node::ingest", %device, seq, "device jumped too far ahead of its first missing sequence number; its readings beyond the window are refused");
            }
            return Ok(Some(Rejection::SeqGapTooFar));
        }
        let Some(record) = self.ctx.registry.load().get(&device).copied() else {
            // Unregistered since the verifier looked: treat as unknown, store nothing.
            return Ok(Some(Rejection::UnknownDevice));
        };
        // The tracker knows every stored (device, seq), so a fresh reading costs no read.
        let settled = self.gaps.is_settled(&device, seq);
        let stored = if settled {
            self.ctx.store.get(&device, seq)?
        } else {
            None
        };
        if settled && stored.is_none() {
            // Settled but no longer stored: retention pruned it. A replay of an old reading.
            return Ok(Some(Rejection::Duplicate));
        }
        let previous = match seq.checked_sub(1) {
            Some(prev_seq) if stored.is_none() => self.previous_body(&device, prev_seq)?,
            _ => None,
        };
        let known = Known {
            existing: stored.as_ref().map(|(_, f)| f.as_ref()),
            previous: previous.as_ref(),
        };
        let verdict = judge(
            &signed.reading,
            frame,
            &record,
            known,
            now_unix_s,
            self.policy,
        );
        match verdict {
            Verdict::Duplicate | Verdict::Refuse(_) => {}
            Verdict::Equivocation => {
                if let Some((_, existing)) = &stored {
                    // Submitted once per pair: the same twin arriving again (replicated from a
                    // peer, resent) was already handed to the ledger.
                    let new = self.ctx.store.put_evidence(&device, seq, existing, frame)?;
                    if let (true, Some(evidence)) = (new, &self.ctx.evidence) {
                        let _ = evidence.try_send((existing.to_vec(), frame.to_vec()));
                    }
                }
            }
            Verdict::Accept => {
                self.ctx.store.put(&device, seq, Status::Accepted, frame)?;
                self.gaps.settle(device, seq);
                self.last_body.insert(device, (seq, signed.reading.body));
            }
            Verdict::Record(_) => {
                self.ctx.store.put(&device, seq, Status::Rejected, frame)?;
                self.gaps.settle(device, seq);
            }
        }
        Ok(verdict.rejection())
    }

    fn previous_body(
        &self,
        device: &DeviceId,
        prev_seq: u64,
    ) -> Result<Option<ReadingBody>, StoreError> {
        if let Some((s, body)) = self.last_body.get(device) {
            if *s == prev_seq {
                return Ok(Some(*body));
            }
        }
        Ok(match self.ctx.store.get(device, prev_seq)? {
            Some((Status::Accepted, frame)) => SignedReading::decode_frame(&frame)
                .ok()
                .map(|s| s.reading.body),
            _ => None,
        })
    }

    fn request_resends(&mut self, now: Instant) {
        for action in self.gaps.due(now, self.ctx.config.resend_interval) {
            match action {
                GapAction::Resend { device, from_seq } => {
                    if let (Some(fill), Some((from, to))) =
                        (&self.ctx.gap_fill, self.gaps.first_gap(&device))
                    {
                        let _ = fill.try_send(GapFill {
                            device,
                            from_seq: from,
                            to_seq: to,
                        });
                    }
                    let topic = groundtruth_device_sdk::topics::resend_topic(&device);
                    let Some(client) = self.ctx.clients.first() else {
                        continue;
                    };
                    if client
                        .try_publish(
                            topic,
                            QoS::AtLeastOnce,
                            false,
                            groundtruth_device_sdk::topics::encode_resend_request(from_seq)
                                .to_vec(),
                        )
                        .is_ok()
                    {
                        self.ctx.metrics.resend_requests.inc();
                    }
                }
                GapAction::Unfilled { device, from_seq } => {
                    self.ctx.metrics.unfilled_gaps.inc();
                    tracing::warn!(target: "node::ingest", %device, from_seq, "sequence gap not filled after {MAX_RESEND_ATTEMPTS} resend requests");
                }
            }
        }
        self.ctx.metrics.open_gaps.set(self.gaps.open_gaps() as i64);
    }
}

fn committer_loop(
    ctx: &IngestContext,
    rx: Receiver<Vec<Checked>>,
    production: Option<&crate::production::Production>,
) -> Result<(), StoreError> {
    let mut committer = Committer {
        ctx,
        gaps: GapTracker::default(),
        last_body: HashMap::new(),
        summary: RejectionSummary {
            since: Instant::now(),
            every: Duration::from_secs(10),
            counts: HashMap::new(),
        },
        kind_counters: ["energy", "gpu", "storage"]
            .into_iter()
            .map(|k| {
                (
                    k,
                    ctx.metrics
                        .accepted
                        .get_or_create(&KindLabel { kind: k.into() })
                        .clone(),
                )
            })
            .collect(),
        pending_acks: VecDeque::new(),
        policy: PolicyConfig {
            max_clock_skew_s: ctx.config.max_clock_skew.as_secs(),
        },
        flagged: std::collections::HashSet::new(),
    };
    let mut stored_accepted = 0i64;
    for r in ctx.store.readings() {
        ctx.metrics.heartbeat.beat();
        let r = r?;
        committer.gaps.settle(r.device, r.seq);
        if r.status == Status::Accepted {
            stored_accepted += 1;
        }
    }
    // Seqs retention pruned stay settled: a replay of one is a duplicate, not a new reading.
    for floor in ctx.store.pruned_floors() {
        let (device, below) = floor?;
        committer.gaps.settle_below(device, below);
    }
    ctx.metrics.stored_accepted.set(stored_accepted);
    let mut last_gap_check = Instant::now();
    let max_commit = ctx.config.commit_batch.max(1);
    loop {
        ctx.metrics.heartbeat.beat_serving();
        committer.send_acks();
        let wait = if committer.pending_acks.is_empty() {
            500
        } else {
            2
        };
        let first = match rx.recv_timeout(Duration::from_millis(wait)) {
            Ok(b) => b,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                committer.request_resends(Instant::now());
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Ok(()),
        };
        let mut batches = vec![first];
        let mut n: usize = batches[0].len();
        while n < max_commit {
            match rx.try_recv() {
                Ok(b) => {
                    n += b.len();
                    batches.push(b);
                }
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        let mut outcomes = Vec::with_capacity(n);
        let now_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for c in batches.iter().flatten() {
            outcomes.push(committer.apply(c, now_unix_s)?);
        }
        let started = Instant::now();
        ctx.store.flush()?;
        ctx.metrics
            .flush_seconds
            .observe(started.elapsed().as_secs_f64());
        ctx.metrics.commit_batch.observe(n as f64);
        // Durable: count, log and acknowledge.
        let accepted: Vec<groundtruth_device_sdk::Reading> = match production {
            Some(_) => batches
                .iter()
                .flatten()
                .zip(&outcomes)
                .filter_map(|(c, o)| match (o, &c.verdict) {
                    (None, Ok(s)) => Some(s.reading),
                    _ => None,
                })
                .collect(),
            None => Vec::new(),
        };
        let now = Instant::now();
        for (c, outcome) in batches.into_iter().flatten().zip(outcomes) {
            match outcome {
                None => {
                    if let Ok(s) = &c.verdict {
                        if let Some(counter) =
                            committer.kind_counters.get(s.reading.body.kind().name())
                        {
                            counter.inc();
                        }
                        ctx.metrics.stored_accepted.inc();
                        if c.inbound.generation != REPLICATED_GENERATION {
                            if let Some(r) = &ctx.replicate {
                                // Best effort: a full queue drops; peers fill from this store.
                                let _ = r.try_send(c.inbound.publish.payload.clone());
                            }
                        }
                    }
                }
                // A peer's copy of a reading this node already holds is expected, not a
                // rejection (every validator replicates what its broker delivered).
                Some(Rejection::Duplicate) if c.inbound.generation == REPLICATED_GENERATION => {
                    ctx.metrics.replicated_duplicates.inc();
                }
                Some(reason) => {
                    ctx.metrics.reject(reason);
                    committer.summary.record(reason, now);
                    match &c.verdict {
                        Ok(s) => {
                            tracing::debug!(target: "node::ingest", %reason, device = %s.reading.device, seq = s.reading.seq, "reading rejected")
                        }
                        Err(_) => {
                            tracing::debug!(target: "node::ingest", %reason, topic = %c.inbound.publish.topic, "message rejected")
                        }
                    }
                }
            }
            if c.inbound.publish.qos != QoS::AtMostOnce {
                committer.pending_acks.push_back((
                    c.inbound.connection,
                    c.inbound.generation,
                    c.inbound.publish,
                ));
            }
        }
        committer.send_acks();
        // The production read model's hook: once per (device, seq), after the acks.
        if let Some(p) = production {
            p.record_logged(&accepted);
        }
        if now.duration_since(last_gap_check) >= Duration::from_secs(1) {
            committer.request_resends(now);
            last_gap_check = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::registry::Registry;
    use groundtruth_device_sdk::{topics, DeviceKey, EnergyReading, Reading};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Energy reading `seq` of `k` (2024, long past), 10 Wh, continuous register.
    fn frame(k: &DeviceKey, seq: u64) -> Vec<u8> {
        const T0: u64 = 1_714_521_600;
        k.sign(Reading {
            device: k.device_id(),
            seq,
            timestamp_ms: (T0 + (seq + 1) * 300) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: T0 + seq * 300,
                interval_len_s: 300,
                energy_wh: 10,
                register_wh: (seq + 1) * 10,
            }),
        })
        .to_frame()
    }

    /// A gap in what a peer replicated (the device is on the peer's broker, not this node's)
    /// is handed to the swarm to fetch from peers, with its exact range, as well as asked of
    /// the device; once filled it is asked no more.
    #[test]
    fn a_gap_is_handed_to_the_peer_fill_with_its_range() -> TestResult {
        let dir = tempfile::tempdir()?;
        let store = Store::open(dir.path())?;
        let k = DeviceKey::from_seed(&[3; 32]);
        let device = k.device_id();
        let registry = SharedRegistry::new(Registry::one_energy_meter(&device, 1_000_000));
        let metrics =
            IngestMetrics::register(&mut prometheus_client::registry::Registry::default());
        let (client, _eventloop) =
            rumqttc::AsyncClient::new(rumqttc::MqttOptions::new("t", "127.0.0.1", 1), 64);
        let (fill_tx, mut fill_rx) = tokio::sync::mpsc::channel(16);
        let ctx = IngestContext {
            config: crate::config::IngestSection {
                resend_interval: Duration::from_millis(50),
                ..Default::default()
            },
            max_payload: 1024,
            registry,
            store: store.clone(),
            metrics,
            clients: vec![client],
            generations: vec![Arc::new(AtomicU64::new(0))],
            evidence: None,
            replicate: None,
            gap_fill: Some(fill_tx),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let threads = spawn(ctx, rx)?;
        let send = |seq: u64| {
            tx.blocking_send(Inbound {
                publish: Publish::new(
                    topics::readings_topic(&device),
                    QoS::AtMostOnce,
                    frame(&k, seq),
                ),
                connection: 0,
                generation: REPLICATED_GENERATION,
            })
        };
        // Replicated by a peer: 0, 1, then 4 (2 and 3 are missing).
        for seq in [0, 1, 4] {
            send(seq)?;
        }
        let until = Instant::now() + Duration::from_secs(20);
        let got = loop {
            if let Ok(g) = fill_rx.try_recv() {
                break g;
            }
            if Instant::now() > until {
                return Err("no gap handed to the peer fill".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(
            got,
            GapFill {
                device,
                from_seq: 2,
                to_seq: 3
            }
        );
        // The peers' copies arrive; the gap closes and is not asked again.
        send(2)?;
        send(3)?;
        let until = Instant::now() + Duration::from_secs(20);
        while !matches!(store.get(&device, 3), Ok(Some(_))) {
            if Instant::now() > until {
                return Err("the filled readings were not stored".into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while fill_rx.try_recv().is_ok() {}
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            fill_rx.try_recv().is_err(),
            "a filled gap was handed to the peer fill again"
        );
        drop(tx);
        for t in threads.threads {
            let _ = t.join();
        }
        Ok(())
    }
}
