//! Follows L1 anchors into the read model: once the oracle service has seen an epoch anchored
//! on L1 (its own post or another validator's), the epoch's audited devices get their window's
//! buckets raised to `anchored` with the L1 transaction and block, and the hours it closes get
//! their certificates ([`super::certificates`]).
//!
//! The epochs are read from the committed ledger (window, commitment) and the anchors from the
//! oracle service's view of L1; this task decides nothing itself. An epoch's audited devices
//! and proof digests come from the model's own record ([`Production::record_epoch_audits`],
//! written by the verified follower, [`Production::mark_verified_epoch`], when the epoch
//! committed), or from the ledger while it still holds the epoch's audits: the ledger keeps
//! them only `history_epochs` (see `groundtruth_ledger::State::history_floor`), and L1 may lag
//! far behind. A record is dropped once its epoch is anchored, and records older than
//! [`EPOCH_AUDITS_KEPT`] epochs go too, so the copy stays bounded.
//! Everything it does is idempotent, so after a restart it starts over from the first epoch not
//! recorded as anchored in the read model (asking the oracle to read older anchors back).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use groundtruth_device_sdk::DeviceId;
use std::collections::BTreeMap;

use groundtruth_ledger::{Address, AuditResult, AuditSubject, EpochReadings, State};
use groundtruth_proofs::{ProofEnvelope, Statement};

use super::certificates::{AnchoredEpoch, EpochClock, L1Anchor};
use super::{Production, ProductionError, Result, StatusUpgrade};

/// Epochs of verified devices the model keeps for anchoring, behind the newest recorded: a day
/// of 60-second epochs (as the raw readings' default retention), 64 bytes per audited device
/// and epoch. An epoch still not anchored after that is anchored without its devices.
pub const EPOCH_AUDITS_KEPT: u64 = crate::retention::DEFAULT_KEEP_EPOCHS;

/// One audited device of an epoch and the digest of the proof that verified it.
pub type EpochAudit = (DeviceId, [u8; 32]);

/// The devices `epoch`'s audits verified (passed), with their proof digests, as the ledger
/// holds them; `None` once the ledger pruned the epoch's audits (see
/// `groundtruth_ledger::State::history_pruned`), since an empty list would then say nothing.
pub fn ledger_epoch_audits(st: &State, epoch: u64) -> Option<Vec<EpochAudit>> {
    if st.history_pruned(epoch) {
        return None;
    }
    Some(
        st.audits_for_epoch(epoch)
            .into_iter()
            .filter(|a| a.result == AuditResult::Pass)
            .filter_map(|a| match a.subject {
                AuditSubject::Device(id) => Some((DeviceId(id.0), a.proof_digest)),
                AuditSubject::Provider(_) => None,
            })
            .collect(),
    )
}

/// The devices an epoch's verified batches proved, with their proof digests, read from the
/// proof envelopes themselves: `proof_of(batch auditor, digest)` gives the bytes the ledger
/// verified (the node keeps them from every committed block). What [`ledger_epoch_audits`]
/// gave before the ledger pruned the epoch, for an epoch the verified follower did not reach
/// in time (a node catching up applies blocks faster than it polls). A device in several
/// batches (redundancy) keeps the digest of the batch verified first, as the ledger does.
/// A batch whose proof is not kept, or does not match its digest, is skipped.
pub fn audits_from_proofs(
    fixed: &EpochReadings,
    mut proof_of: impl FnMut(&Address, &[u8; 32]) -> Option<Vec<u8>>,
) -> Vec<EpochAudit> {
    let mut verified: Vec<(u64, usize, Address, [u8; 32])> = fixed
        .batches
        .iter()
        .enumerate()
        .filter_map(|(i, (b, a))| a.map(|a| (a.height, i, b.auditor, a.proof_digest)))
        .collect();
    verified.sort();
    let mut out: BTreeMap<DeviceId, [u8; 32]> = BTreeMap::new();
    for (_, _, auditor, digest) in verified {
        let Some(bytes) = proof_of(&auditor, &digest) else {
            continue;
        };
        if *blake3::hash(&bytes).as_bytes() != digest {
            continue;
        }
        let Ok(ProofEnvelope {
            statement: Statement::MeteredOutput(s),
            ..
        }) = ProofEnvelope::from_bytes(&bytes)
        else {
            continue;
        };
        for d in &s.devices {
            out.entry(DeviceId(d.id)).or_insert(digest);
        }
    }
    out.into_iter().collect()
}

impl Production {
    /// From now on, record each committed epoch's verified devices until it is anchored
    /// ([`spawn`] calls it: without an anchored follower nothing would read them).
    pub fn keep_epoch_audits(&self) {
        self.keep_epoch_audits.store(true, Ordering::Release);
    }

    /// Raises `audited`'s buckets of `epoch`'s `window` to `verified` and, while an anchored
    /// follower runs and the epoch is not anchored yet, records the list for it
    /// ([`Production::record_epoch_audits`]). Idempotent.
    pub fn mark_verified_epoch(
        &self,
        epoch: u64,
        window: (u64, u64),
        audited: &[EpochAudit],
    ) -> Result<()> {
        for (device, proof) in audited {
            self.upgrade(
                device,
                window,
                StatusUpgrade::Verified {
                    epoch,
                    proof: *proof,
                },
            )?;
        }
        if self.keep_epoch_audits.load(Ordering::Acquire) && self.l1_anchor(epoch)?.is_none() {
            self.record_epoch_audits(epoch, audited)?;
        }
        Ok(())
    }

    /// Records `epoch`'s verified devices (`device ‖ proof digest`, 64 bytes each) and drops
    /// the records of epochs more than [`EPOCH_AUDITS_KEPT`] older.
    pub fn record_epoch_audits(&self, epoch: u64, audited: &[EpochAudit]) -> Result<()> {
        let mut v = Vec::with_capacity(audited.len().saturating_mul(64));
        for (device, proof) in audited {
            v.extend_from_slice(&device.0);
            v.extend_from_slice(proof);
        }
        self.epoch_audits.insert(epoch.to_be_bytes(), v)?;
        if let Some(below) = epoch.checked_sub(EPOCH_AUDITS_KEPT) {
            let old: Vec<sled::IVec> = self
                .epoch_audits
                .range(..below.to_be_bytes())
                .keys()
                .collect::<std::result::Result<_, _>>()?;
            for k in old {
                self.epoch_audits.remove(k)?;
            }
        }
        Ok(())
    }

    /// `epoch`'s verified devices as recorded by [`Production::record_epoch_audits`].
    pub fn epoch_audits(&self, epoch: u64) -> Result<Option<Vec<EpochAudit>>> {
        let Some(v) = self.epoch_audits.get(epoch.to_be_bytes())? else {
            return Ok(None);
        };
        let corrupt = || ProductionError::Corrupt(format!("verified devices of epoch {epoch}"));
        if v.len() % 64 != 0 {
            return Err(corrupt());
        }
        v.chunks_exact(64)
            .map(|c| {
                let device: [u8; 32] = c
                    .get(..32)
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(corrupt)?;
                let proof: [u8; 32] = c
                    .get(32..)
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(corrupt)?;
                Ok((DeviceId(device), proof))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// Drops `epoch`'s record (it is anchored).
    pub fn forget_epoch_audits(&self, epoch: u64) -> Result<()> {
        self.epoch_audits.remove(epoch.to_be_bytes())?;
        Ok(())
    }

    /// How many epochs' verified devices are recorded.
    pub fn epoch_audits_held(&self) -> usize {
        self.epoch_audits.len()
    }
}

/// Epochs looked at per poll past the first one not anchored in the model.
const SCAN_AHEAD: u64 = 256;
/// How often the ledger and the oracle's anchors are read.
const POLL: Duration = Duration::from_secs(2);

/// Where the anchors come from (the oracle service's view of L1).
pub trait AnchorSource: Send + Sync + 'static {
    /// Where `epoch` is anchored, if the oracle has read it.
    fn anchor(&self, epoch: u64) -> Option<L1Anchor>;
    /// Asks the oracle to read anchors back from `epoch` on (a restart's catch-up).
    fn want_from(&self, epoch: u64);
}

/// The epoch as the ledger committed it (`None` until its commitment is recorded, or when
/// epochs are not timed), with its audited devices from `recorded` (the model's own record,
/// [`Production::epoch_audits`]) or else from the ledger ([`ledger_epoch_audits`]). When
/// neither holds them (the ledger pruned them before this node recorded them) the epoch is
/// anchored without devices, and that is logged.
pub fn anchored_epoch(
    st: &State,
    epoch: u64,
    anchor: L1Anchor,
    recorded: Option<Vec<EpochAudit>>,
) -> Option<AnchoredEpoch> {
    st.epoch_commitment(epoch)?;
    let p = st.params();
    if !p.timed_epochs() {
        return None;
    }
    let clock = EpochClock {
        genesis_s: p.genesis_time_s,
        duration_s: p.epoch_duration_s,
    };
    let audited = match recorded.or_else(|| ledger_epoch_audits(st, epoch)) {
        Some(a) => a,
        None => {
            tracing::warn!(target: "node::production", epoch, floor = st.history_floor(), "the ledger pruned the epoch's audits before the read model recorded them: anchored without its devices");
            Vec::new()
        }
    };
    Some(AnchoredEpoch {
        epoch,
        clock,
        audited,
        anchor,
    })
}

fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Spawns the follower on tokio: every [`POLL`], each committed epoch from the first one the
/// model has not recorded as anchored (at most [`SCAN_AHEAD`] ahead) whose anchor the oracle
/// knows is recorded with [`Production::anchor_epoch`] on the blocking pool.
pub fn spawn<L, A>(ledger: Arc<L>, anchors: Arc<A>, production: Production)
where
    L: crate::audit::LedgerView,
    A: AnchorSource,
{
    production.keep_epoch_audits();
    tokio::spawn(async move {
        let mut first: u64 = 0;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut asked: Option<u64> = None;
        loop {
            tick.tick().await;
            // Skip what the model already holds.
            loop {
                match production.l1_anchor(first) {
                    Ok(Some(_)) => first = first.saturating_add(1),
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(target: "node::production", error = %e, "reading recorded anchors failed");
                        break;
                    }
                }
            }
            let current = ledger.with_state(State::epoch);
            if first >= current {
                continue;
            }
            if asked != Some(first) {
                anchors.want_from(first);
                asked = Some(first);
            }
            let end = current.min(first.saturating_add(SCAN_AHEAD));
            let mut work = Vec::new();
            for e in first..end {
                if matches!(production.l1_anchor(e), Ok(Some(_))) {
                    continue;
                }
                let Some(anchor) = anchors.anchor(e) else {
                    continue;
                };
                let recorded = production.epoch_audits(e).unwrap_or_else(|err| {
                    tracing::warn!(target: "node::production", epoch = e, error = %err, "reading the recorded audits failed");
                    None
                });
                if let Some(a) = ledger.with_state(|st| anchored_epoch(st, e, anchor, recorded)) {
                    work.push(a);
                }
            }
            if work.is_empty() {
                continue;
            }
            let p = production.clone();
            let done = tokio::task::spawn_blocking(move || {
                for a in work {
                    match p.anchor_epoch(&a, now_s()) {
                        Ok(o) => {
                            tracing::info!(target: "node::production", epoch = a.epoch, buckets = o.buckets, certificates = o.issued.len(), "anchored production recorded");
                            if let Err(e) = p.forget_epoch_audits(a.epoch) {
                                tracing::warn!(target: "node::production", epoch = a.epoch, error = %e, "dropping the recorded audits failed");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(target: "node::production", epoch = a.epoch, error = %e, "recording anchored production failed");
                            return;
                        }
                    }
                }
            })
            .await;
            if done.is_err() {
                tracing::warn!(target: "node::production", "anchored-production task failed");
            }
        }
    });
}

impl AnchorSource for crate::oracle::OracleShared {
    fn anchor(&self, epoch: u64) -> Option<L1Anchor> {
        crate::oracle::OracleShared::anchor(self, epoch).map(|a| L1Anchor {
            tx: a.tx.0,
            block: a.block,
            commitment_hash: a.commitment_hash.0,
        })
    }

    fn want_from(&self, epoch: u64) {
        self.want_anchors_from(epoch);
    }
}

#[cfg(test)]
// The ledger's test network is driven as in the read model's tests: a failed step is a bug.
#[allow(clippy::unwrap_used)]
mod tests {
    use groundtruth_device_sdk::{EnergyReading, Reading, ReadingBody};
    use groundtruth_ledger::testkit::*;
    use groundtruth_ledger::{SignedTx, TxBody};
    use groundtruth_proofs::{prove_metered, SecurityLevel};

    use super::*;
    use crate::production::Status;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn block(n: &TestNet, st: &mut State, tx: SignedTx) {
        let o = n.block(st, vec![tx]).unwrap();
        assert!(o
            .results
            .iter()
            .all(|r| matches!(r, Ok(r) if r.failed.is_none())));
    }

    /// A timed ledger in epoch 1 whose epoch 0 was audited (two energy meters and a GPU,
    /// real proofs) and committed, with a history window of `2·audit_deadline_epochs + 2`.
    fn audited_epoch0() -> (TestNet, State, Vec<EpochAudit>, Vec<Vec<u8>>) {
        let mut n = TestNet::new_timed(4, 4);
        n.genesis.params.history_epochs = 2 * n.genesis.params.audit_deadline_epochs + 2;
        let mut st = n.state().unwrap();
        n.close_epoch(&mut st).unwrap();
        let series: Vec<_> = [
            (ENERGY_DEVICE, &[100u64, 200][..]),
            (GPU_DEVICE, &[7_000, 9_000][..]),
            (ENERGY_DEVICE_2, &[300][..]),
        ]
        .iter()
        .map(|(seed, v)| metered_series(&st, &device_id(&key(*seed)), 0, v).unwrap())
        .collect();
        let batches = audit_batches(&st, 0, &series).unwrap();
        let commitments: Vec<_> = batches.iter().map(|(b, _)| *b).collect();
        for op in &n.operators[..3] {
            let body = TxBody::AttestReadings {
                epoch: 0,
                batches: commitments.clone(),
            };
            let tx = sign_tx(&st, op, 0, body);
            block(&n, &mut st, tx);
        }
        let window = proof_epoch(st.params(), 0).unwrap();
        let mut proofs = Vec::new();
        for (b, devs) in &batches {
            let proof = prove_metered(&window, devs, SecurityLevel::Default100)
                .unwrap()
                .to_bytes()
                .unwrap();
            let auditor = n
                .operators
                .iter()
                .find(|k| address(k) == b.auditor)
                .unwrap();
            proofs.push(proof.clone());
            let body = TxBody::SubmitAuditProof {
                epoch: 0,
                batch: b.auditor,
                proof,
            };
            let tx = sign_tx(&st, auditor, 0, body);
            block(&n, &mut st, tx);
        }
        assert!(st.epoch_commitment(0).is_some());
        let audited = ledger_epoch_audits(&st, 0).unwrap();
        assert_eq!(audited.len(), 3);
        (n, st, audited, proofs)
    }

    /// The node records an epoch's verified devices when it marks them verified; once the
    /// ledger pruned the epoch's audits (L1 lagged past `history_epochs`), the epoch is still
    /// anchored with its devices from that record, and the record goes with the anchor. The
    /// ledger alone no longer knows them.
    #[test]
    fn an_epoch_pruned_from_the_ledger_is_still_anchored_with_its_devices() -> TestResult {
        let (n, mut st, audited, proofs) = audited_epoch0();
        let dir = tempfile::tempdir()?;
        let p = Production::open(dir.path(), Arc::new(|_: &DeviceId| None))?;
        // A reading of the first meter inside epoch 0's window.
        let meter = DeviceId(device_id(&key(ENERGY_DEVICE)).0);
        let window = st.params().epoch_window(0).unwrap();
        let bucket = super::super::bucket_of(window.0) + 600;
        let reading = Reading {
            device: meter,
            seq: 0,
            timestamp_ms: (bucket + 60) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: bucket,
                interval_len_s: 60,
                energy_wh: 40,
                register_wh: 0,
            }),
        };
        assert_eq!(p.record(&[reading])?, 1);
        p.keep_epoch_audits();
        p.mark_verified_epoch(0, window, &audited)?;
        let status = |p: &Production| -> Result<Status> {
            Ok(p.device_series(&meter, bucket, bucket + 300, 300, 1)?
                .points[0]
                .status)
        };
        assert_eq!(status(&p)?, Status::Verified);
        assert_eq!(p.epoch_audits(0)?, Some(audited.clone()));
        let view = crate::chain::epochs_api::epoch_view(&st, 0);
        assert!(!view.audits_pruned);
        assert_eq!(view.verified.len(), audited.len());

        // The ledger moves on past its history window: epoch 0's audits are gone.
        while !st.history_pruned(0) {
            n.close_epoch(&mut st).unwrap();
        }
        assert!(st.audits_for_epoch(0).is_empty());
        assert_eq!(ledger_epoch_audits(&st, 0), None);
        // The epoch view says so rather than listing nothing as if nothing was verified.
        let view = crate::chain::epochs_api::epoch_view(&st, 0);
        assert!(view.audits_pruned && view.verified.is_empty());
        assert!(view.commitment.is_some());
        let anchor = L1Anchor {
            tx: [0xa0; 32],
            block: 77,
            commitment_hash: [7; 32],
        };
        let without = anchored_epoch(&st, 0, anchor, None).unwrap();
        assert!(without.audited.is_empty(), "the ledger alone lost them");

        // The proofs the node kept from the blocks give the same list back (the fallback for
        // an epoch the verified follower did not reach before the ledger pruned it); a proof
        // missing or not matching its digest is skipped.
        let fixed = st.fixed_readings_root(0).unwrap();
        let by_digest = |_: &Address, d: &[u8; 32]| {
            proofs
                .iter()
                .find(|p| blake3::hash(p).as_bytes() == d)
                .cloned()
        };
        assert_eq!(audits_from_proofs(fixed, by_digest), audited);
        assert!(audits_from_proofs(fixed, |_, _| None).is_empty());
        let tampered = audits_from_proofs(fixed, |a, d| {
            by_digest(a, d).map(|mut p| {
                p.push(0);
                p
            })
        });
        assert!(tampered.is_empty());

        let a = anchored_epoch(&st, 0, anchor, p.epoch_audits(0)?).unwrap();
        assert_eq!(a.audited, audited);
        let o = p.anchor_epoch(&a, 1)?;
        assert!(o.buckets > 0);
        assert_eq!(status(&p)?, Status::Anchored);
        p.forget_epoch_audits(0)?;
        assert_eq!(p.epoch_audits(0)?, None);
        assert_eq!(p.epoch_audits_held(), 0);
        Ok(())
    }

    /// Records stay bounded: each new one drops those more than [`EPOCH_AUDITS_KEPT`] epochs
    /// older, and an epoch already anchored is not recorded again.
    #[test]
    fn recorded_epoch_audits_are_bounded() -> TestResult {
        let dir = tempfile::tempdir()?;
        let p = Production::open(dir.path(), Arc::new(|_: &DeviceId| None))?;
        let one = [(DeviceId([1; 32]), [2; 32])];
        p.record_epoch_audits(0, &one)?;
        p.record_epoch_audits(5, &one)?;
        p.record_epoch_audits(EPOCH_AUDITS_KEPT + 5, &one)?;
        assert_eq!(p.epoch_audits(0)?, None);
        assert_eq!(p.epoch_audits(5)?, Some(one.to_vec()));
        assert_eq!(p.epoch_audits_held(), 2);
        // Nothing is recorded unless an anchored follower asked for it.
        p.mark_verified_epoch(9, (0, 300), &one)?;
        assert_eq!(p.epoch_audits(9)?, None);
        p.keep_epoch_audits();
        p.mark_verified_epoch(9, (0, 300), &one)?;
        assert_eq!(p.epoch_audits(9)?, Some(one.to_vec()));
        Ok(())
    }
}
