//! Follows L1 anchors into the read model: once the oracle service has seen an epoch anchored
//! on L1 (its own post or another validator's), the epoch's audited devices get their window's
//! buckets raised to `anchored` with the L1 transaction and block, and the hours it closes get
//! their certificates ([`super::certificates`]).
//!
//! The epochs are read from the committed ledger (window, audits with their proof digests) and
//! the anchors from the oracle service's view of L1; this task decides nothing itself.
//! Everything it does is idempotent, so after a restart it starts over from the first epoch not
//! recorded as anchored in the read model (asking the oracle to read older anchors back).

use std::sync::Arc;
use std::time::Duration;

use groundtruth_device_sdk::DeviceId;
use groundtruth_ledger::{AuditResult, AuditSubject, State};

use super::certificates::{AnchoredEpoch, EpochClock, L1Anchor};
use super::Production;

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
/// epochs are not timed).
pub fn anchored_epoch(st: &State, epoch: u64, anchor: L1Anchor) -> Option<AnchoredEpoch> {
    st.epoch_commitment(epoch)?;
    let p = st.params();
    if !p.timed_epochs() {
        return None;
    }
    let clock = EpochClock {
        genesis_s: p.genesis_time_s,
        duration_s: p.epoch_duration_s,
    };
    let audited = st
        .audits_for_epoch(epoch)
        .into_iter()
        .filter(|a| a.result == AuditResult::Pass)
        .filter_map(|a| match a.subject {
            AuditSubject::Device(id) => Some((DeviceId(id.0), a.proof_digest)),
            AuditSubject::Provider(_) => None,
        })
        .collect();
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
                if let Some(a) = ledger.with_state(|st| anchored_epoch(st, e, anchor)) {
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
                        Ok(o) => tracing::info!(target: "node::production", epoch = a.epoch, buckets = o.buckets, certificates = o.issued.len(), "anchored production recorded"),
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
