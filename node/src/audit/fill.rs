//! Filling missing readings from peers before a validator settles an epoch.
//!
//! A validator whose broker was down, or whose devices reached another validator's broker
//! while it was not listening to gossip, holds fewer readings of a window than its peers. Left
//! alone it would attest another readings root than the others (and be flagged), and could not
//! prove its batch. Before attesting, the audit loop asks up to [`MAX_PEERS`] connected
//! validators for their inventory of the window (`/groundtruth/readings/2`: per device, count
//! and sequence bounds), fetches every device's range where a peer holds more, and hands the
//! frames to ingest exactly like replicated gossip: the signature, registry, replay and
//! equivocation checks run as for a broker's message, so a peer can add only readings that
//! devices signed, and a conflicting frame becomes equivocation evidence.
//!
//! ```text
//! window [start, end) ─► inventory pages from peer ─► compare with this store's entries
//!     ─► for devices where the peer holds more: fetch first..=last ─► ingest (checked, stored)
//!     ─► wait (bounded) until the store holds every fetched frame ─► build batches, attest
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use groundtruth_device_sdk::{topics::readings_topic, SignedReading};
use groundtruth_ledger::{DeviceId, State};
use groundtruth_p2p::{Inventory, InventoryEntry, InventoryRequest, P2pHandle, ReadingsRequest};
use tokio::sync::mpsc;

use super::{device_window, AuditError};
use crate::ingest::store::Store;
use crate::ingest::{Inbound, REPLICATED_GENERATION};

/// Peers asked for their inventory before an epoch is settled.
pub const MAX_PEERS: usize = 3;
/// Inventory pages read from one peer (pages hold up to 8,192 devices by default).
const MAX_PAGES: usize = 64;
/// Widest sequence range fetched for one device beyond the readings a peer says it holds
/// (holes left by rejected readings): a peer claiming `0..=u64::MAX` gets no fetch at all.
const MAX_SEQ_SLACK: u64 = 4096;
/// How long fetched frames may take to reach the store through ingest.
const STORE_WAIT: Duration = Duration::from_secs(5);

/// What a validator needs to fill from peers: its swarm, and ingest's input.
#[derive(Clone, Debug)]
pub struct PeerFill {
    /// The validators' swarm.
    pub p2p: P2pHandle,
    /// Ingest's input (fetched frames enter it as replicated readings).
    pub ingest: mpsc::Sender<Inbound>,
}

/// What one fill did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FillReport {
    /// Peers whose inventory was read.
    pub peers: usize,
    /// Devices where a peer held readings this store lacked.
    pub devices: usize,
    /// Frames fetched and handed to ingest.
    pub frames: u64,
    /// Of those, frames the store did not hold within the wait (rejected by ingest, or slow).
    pub missing_after_wait: u64,
}

/// This store's inventory entry for `device` over `[start, end)`: its accepted readings whose
/// interval lies in the window (storage heartbeats have none and are not counted).
pub fn window_entry(
    store: &Store,
    device: &DeviceId,
    start: u64,
    end: u64,
) -> Result<Option<InventoryEntry>, AuditError> {
    let readings = device_window(store, device, start, end)?;
    let (Some((first, _)), Some((last, _))) = (readings.first(), readings.last()) else {
        return Ok(None);
    };
    Ok(Some(InventoryEntry {
        device: device.0,
        count: u32::try_from(readings.len()).unwrap_or(u32::MAX),
        first_seq: first.reading.seq,
        last_seq: last.reading.seq,
    }))
}

/// The metered devices the ledger knows, in ascending order (what an inventory covers).
pub fn metered_devices(state: &State) -> Vec<DeviceId> {
    let mut out: Vec<DeviceId> = state
        .devices()
        .filter(|d| d.kind.metered_cap(d.capacity, 1).is_some())
        .map(|d| d.id)
        .collect();
    out.sort();
    out
}

/// One page of this store's inventory over `[start, end)` for `devices` (ascending), starting
/// after `after`, at most `max_entries` entries.
pub fn inventory_page(
    store: &Store,
    devices: &[DeviceId],
    start: u64,
    end: u64,
    after: Option<[u8; 32]>,
    max_entries: usize,
) -> Result<Inventory, AuditError> {
    let from = match after {
        Some(a) => devices.partition_point(|d| d.0 <= a),
        None => 0,
    };
    let mut inv = Inventory::default();
    for d in devices.iter().skip(from) {
        if let Some(e) = window_entry(store, d, start, end)? {
            if inv.entries.len() == max_entries {
                inv.more = true;
                break;
            }
            inv.entries.push(e);
        }
    }
    Ok(inv)
}

/// Whether an inventory entry's range is plausible for its count (at most [`MAX_SEQ_SLACK`]
/// sequence numbers of holes), so fetching it costs a bounded number of requests.
fn plausible(e: &InventoryEntry) -> bool {
    e.last_seq.saturating_sub(e.first_seq) < u64::from(e.count).saturating_add(MAX_SEQ_SLACK)
}

/// Whether `theirs` holds readings that `ours` lacks for sure: more of them, or a sequence
/// number outside our bounds.
fn lacks(ours: Option<&InventoryEntry>, theirs: &InventoryEntry) -> bool {
    match ours {
        None => true,
        Some(o) => {
            o.count < theirs.count || o.first_seq > theirs.first_seq || o.last_seq < theirs.last_seq
        }
    }
}

impl PeerFill {
    /// Fills this store's readings of `[start, end)` from up to [`MAX_PEERS`] connected peers,
    /// for the `known` devices only, and waits (bounded) until the store holds what was fetched.
    /// Never fails: a peer that errs or answers badly is skipped (and logged).
    pub async fn fill(
        &self,
        store: &Store,
        known: &BTreeSet<DeviceId>,
        start: u64,
        end: u64,
    ) -> FillReport {
        let mut report = FillReport::default();
        let peers = match self.p2p.connected_peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(target: "node::audit", error = %e, "cannot list peers to fill from");
                return report;
            }
        };
        let mut fetched: HashSet<(DeviceId, u64)> = HashSet::new();
        let mut holds: BTreeMap<DeviceId, Option<InventoryEntry>> = BTreeMap::new();
        for peer in peers.into_iter().take(MAX_PEERS) {
            let mut after = None;
            let mut ok = true;
            for _ in 0..MAX_PAGES {
                let page = match self
                    .p2p
                    .inventory(
                        peer,
                        InventoryRequest {
                            start_s: start,
                            end_s: end,
                            after,
                        },
                    )
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::warn!(target: "node::audit", %peer, error = %e, "inventory request failed");
                        ok = false;
                        break;
                    }
                };
                after = page.entries.last().map(|e| e.device);
                for theirs in &page.entries {
                    let device = DeviceId(theirs.device);
                    if !known.contains(&device) {
                        continue;
                    }
                    let ours = match holds.get(&device) {
                        Some(o) => *o,
                        None => {
                            let o = window_entry(store, &device, start, end).unwrap_or_else(|e| {
                                tracing::warn!(target: "node::audit", error = %e, "store read failed while filling");
                                None
                            });
                            holds.insert(device, o);
                            o
                        }
                    };
                    if !lacks(ours.as_ref(), theirs) {
                        continue;
                    }
                    if !plausible(theirs) {
                        tracing::warn!(target: "node::audit", %peer, %device, count = theirs.count, first = theirs.first_seq, last = theirs.last_seq, "implausible inventory entry; not fetching it");
                        continue;
                    }
                    report.devices += 1;
                    let got = self.fetch_device(peer, theirs, &mut fetched).await;
                    report.frames = report.frames.saturating_add(got);
                    if got > 0 {
                        // What we hold is about to change; read it again if asked.
                        holds.remove(&device);
                    }
                }
                if !page.more {
                    break;
                }
            }
            if ok {
                report.peers += 1;
            }
        }
        report.missing_after_wait = wait_stored(store, &fetched).await;
        report
    }

    /// Fetches one device's sequence gap `from..=to` (at most [`MAX_SEQ_SLACK`] seqs; ingest
    /// asks again for the rest) from up to [`MAX_PEERS`] connected peers in turn, until they
    /// have served the whole range, and hands the frames to ingest (checked there like
    /// replicated gossip). Ingest asks for this whenever it asks a device to resend
    /// ([`crate::ingest::GapFill`]): with several brokers the device may be on another
    /// validator's broker, so only the peers hold what this node missed (while it was down, or
    /// when gossip dropped it). Returns how many frames it handed on; never fails.
    pub async fn fill_gap(&self, device: DeviceId, from: u64, to: u64) -> u64 {
        if to < from {
            return 0;
        }
        let to = to.min(from.saturating_add(MAX_SEQ_SLACK - 1));
        let want = to - from + 1;
        let peers = match self.p2p.connected_peers().await {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(target: "node::ingest", error = %e, "cannot list peers to fill a gap from");
                return 0;
            }
        };
        let entry = InventoryEntry {
            device: device.0,
            count: 0,
            first_seq: from,
            last_seq: to,
        };
        let mut fetched: HashSet<(DeviceId, u64)> = HashSet::new();
        let mut handed = 0u64;
        for peer in peers.into_iter().take(MAX_PEERS) {
            handed = handed.saturating_add(self.fetch_device(peer, &entry, &mut fetched).await);
            if u64::try_from(fetched.len()).unwrap_or(u64::MAX) >= want {
                break;
            }
        }
        handed
    }

    /// Fetches `entry.first_seq..=entry.last_seq` of its device from `peer` (in pages) and hands
    /// every frame that is the asked device's, in the asked range, to ingest. Returns how many.
    async fn fetch_device(
        &self,
        peer: groundtruth_p2p::PeerId,
        entry: &InventoryEntry,
        fetched: &mut HashSet<(DeviceId, u64)>,
    ) -> u64 {
        let device = DeviceId(entry.device);
        let mut from = entry.first_seq;
        let mut handed = 0u64;
        while from <= entry.last_seq {
            let to = entry.last_seq.min(from.saturating_add(4095));
            let frames = match self
                .p2p
                .fetch_readings(
                    peer,
                    ReadingsRequest {
                        device: entry.device,
                        from_seq: from,
                        to_seq: to,
                    },
                )
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(target: "node::audit", %peer, %device, error = %e, "readings fetch failed");
                    return handed;
                }
            };
            let mut last = None;
            for frame in frames {
                let Ok(r) = SignedReading::decode_frame(&frame) else {
                    tracing::warn!(target: "node::audit", %peer, %device, "peer served an undecodable frame; skipping the peer's answer");
                    return handed;
                };
                let seq = r.reading.seq;
                if r.reading.device != device || seq < from || seq > to {
                    tracing::warn!(target: "node::audit", %peer, %device, seq, "peer served a frame outside the request; skipping the peer's answer");
                    return handed;
                }
                last = Some(seq);
                if !fetched.insert((device, seq)) {
                    continue;
                }
                let inbound = Inbound {
                    publish: rumqttc::Publish::new(
                        readings_topic(&device),
                        rumqttc::QoS::AtMostOnce,
                        frame,
                    ),
                    connection: 0,
                    generation: REPLICATED_GENERATION,
                };
                if self.ingest.send(inbound).await.is_err() {
                    return handed;
                }
                handed += 1;
            }
            match last {
                // Cut short by the response limit: go on after the last frame.
                Some(l) if l < to => from = l.saturating_add(1),
                _ => from = to.saturating_add(1),
            }
            if to == u64::MAX {
                break;
            }
        }
        handed
    }
}

/// Waits up to [`STORE_WAIT`] until the store holds every fetched frame (with any status:
/// ingest may also reject one, e.g. a duplicate of what arrived meanwhile). Returns how many
/// it still lacks.
async fn wait_stored(store: &Store, fetched: &HashSet<(DeviceId, u64)>) -> u64 {
    let deadline = tokio::time::Instant::now() + STORE_WAIT;
    let mut left: Vec<(DeviceId, u64)> = fetched.iter().copied().collect();
    loop {
        left.retain(|(d, s)| !matches!(store.get(d, *s), Ok(Some(_))));
        if left.is_empty() || tokio::time::Instant::now() >= deadline {
            return u64::try_from(left.len()).unwrap_or(u64::MAX);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ingest::store::Status;

    fn e(count: u32, first_seq: u64, last_seq: u64) -> InventoryEntry {
        InventoryEntry {
            device: [1; 32],
            count,
            first_seq,
            last_seq,
        }
    }

    fn frame(key: &groundtruth_device_sdk::DeviceKey, seq: u64) -> Vec<u8> {
        use groundtruth_device_sdk::{EnergyReading, Reading, ReadingBody};
        let interval_start_s = 1_000 + seq * 10;
        key.sign(Reading {
            device: key.device_id(),
            seq,
            timestamp_ms: (interval_start_s + 10) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s,
                interval_len_s: 10,
                energy_wh: 1,
                register_wh: seq + 1,
            }),
        })
        .to_frame()
    }

    #[test]
    fn inventory_counts_accepted_readings_inside_the_window_and_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let keys: Vec<_> = (1u8..=3)
            .map(|n| groundtruth_device_sdk::DeviceKey::from_seed(&[n; 32]))
            .collect();
        // Interval of seq s: [1000 + 10 s, 1010 + 10 s).
        for (i, k) in keys.iter().enumerate() {
            for seq in 0..10u64 {
                let status = if i == 1 && seq == 4 {
                    Status::Rejected
                } else {
                    Status::Accepted
                };
                store
                    .put(&k.device_id(), seq, status, &frame(k, seq))
                    .unwrap();
            }
        }
        let mut devices: Vec<DeviceId> = keys.iter().map(|k| k.device_id()).collect();
        devices.sort();
        // Window [1020, 1065): seqs 2..=5 end inside it (seq 5 ends at 1060; seq 6 at 1070).
        let entry = |d: &DeviceId| window_entry(&store, d, 1020, 1065).unwrap();
        for d in &devices {
            let want_rejected = *d == keys[1].device_id();
            let e = entry(d).unwrap();
            assert_eq!(
                (e.count, e.first_seq, e.last_seq),
                if want_rejected { (3, 2, 5) } else { (4, 2, 5) }
            );
        }
        // Nothing before any reading.
        assert_eq!(window_entry(&store, &devices[0], 0, 1000).unwrap(), None);
        let page = inventory_page(&store, &devices, 1020, 1065, None, 2).unwrap();
        assert_eq!(page.entries.len(), 2);
        assert!(page.more);
        let rest = inventory_page(
            &store,
            &devices,
            1020,
            1065,
            page.entries.last().map(|e| e.device),
            2,
        )
        .unwrap();
        assert_eq!(rest.entries.len(), 1);
        assert!(!rest.more);
        assert_eq!(rest.entries[0].device, devices[2].0);
    }

    #[test]
    fn a_peer_holding_more_or_wider_is_fetched_from() {
        let theirs = e(5, 10, 14);
        assert!(lacks(None, &theirs));
        assert!(lacks(Some(&e(4, 10, 14)), &theirs));
        assert!(lacks(Some(&e(5, 11, 15)), &theirs));
        assert!(lacks(Some(&e(5, 9, 13)), &theirs));
        assert!(!lacks(Some(&e(5, 10, 14)), &theirs));
        // We hold more than the peer: nothing to fetch from it.
        assert!(!lacks(Some(&e(6, 9, 14)), &theirs));
    }

    #[test]
    fn an_implausibly_wide_range_is_not_fetched() {
        assert!(plausible(&e(5, 10, 14)));
        assert!(plausible(&e(5, 10, 14 + MAX_SEQ_SLACK)));
        assert!(!plausible(&e(5, 10, 15 + MAX_SEQ_SLACK)));
        assert!(!plausible(&e(1, 0, u64::MAX)));
    }
}
