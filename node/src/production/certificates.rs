//! Hourly granular certificates for anchored production, and the L1 anchors behind them.
//!
//! ```text
//! anchor_epoch(epoch, window, audited devices, L1 anchor) ──▶
//!     anchors      epoch                 → L1 tx ‖ block ‖ commitment hash
//!     buckets      (the devices' window) → raised to anchored with the epoch, proof, tx, block
//!     pending      device ‖ hour         → ()      hours touched, not issued yet
//!   then, for every pending hour whose epochs are all anchored (the hour is closed):
//!     certs        id                    → Certificate   (id = blake3(domain ‖ device ‖ hour))
//!     by_device    device ‖ hour         → id
//!     by_time      hour ‖ device         → id
//! ```
//!
//! * **Once per device-hour.** The id is derived from (device, hour) alone, and the certificate
//!   is written in the same transaction that checks the id is absent: a replayed commit or
//!   anchor, a restart that scans the epochs again, or a second epoch touching the same hour
//!   never issues a second certificate nor changes the first.
//! * **Closed hours only.** An hour is issued once every epoch whose reading window meets it is
//!   anchored; an hour spanning two epochs waits for the second and then carries both epochs'
//!   evidence. Its energy is the sum of the device's buckets of that hour that are `anchored`
//!   (exact Wh of the readings the proofs cover); energy in buckets that are not (a late
//!   reading made one fall back to `reported`) is reported beside it as `unanchored_wh` and is
//!   never certified later (its epoch's audits are final).
//! * **Energy only.** GPU time is not an energy attribute; GPU agents get no certificates.

use groundtruth_device_sdk::DeviceId;
use sled::transaction::ConflictableTransactionError;
use sled::Transactional;

use super::{
    arr32_at, device_key, flatten, u64_at, Bucket, Evidence, Production, ProductionError, Result,
    Status, StatusUpgrade,
};

/// Length of a certificate's production interval, seconds.
pub const HOUR_S: u64 = 3600;
/// Domain separation of certificate ids.
const ID_DOMAIN: &[u8] = b"groundtruth/granular-certificate/v1";
/// Most evidence entries a certificate carries (an hour spans at most this many epochs;
/// epochs shorter than 1 h / 64 make certificates refer to the first 64).
pub const MAX_CERT_EVIDENCE: usize = 64;

/// The trees of certificates and anchors (inside the production database).
#[derive(Clone)]
pub(crate) struct Trees {
    anchors: sled::Tree,
    certs: sled::Tree,
    by_device: sled::Tree,
    by_time: sled::Tree,
    pending: sled::Tree,
}

impl Trees {
    pub(crate) fn open(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            anchors: db.open_tree("production_l1_anchors")?,
            certs: db.open_tree("production_certs")?,
            by_device: db.open_tree("production_certs_by_device")?,
            by_time: db.open_tree("production_certs_by_time")?,
            pending: db.open_tree("production_certs_pending")?,
        })
    }
}

/// Where an epoch is anchored on L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L1Anchor {
    /// The anchoring transaction.
    pub tx: [u8; 32],
    /// The block holding it.
    pub block: u64,
    /// The commitment's EIP-712 struct hash the contract stores.
    pub commitment_hash: [u8; 32],
}

impl L1Anchor {
    fn encode(&self) -> [u8; 72] {
        let mut out = [0u8; 72];
        out[..32].copy_from_slice(&self.tx);
        out[32..40].copy_from_slice(&self.block.to_be_bytes());
        out[40..].copy_from_slice(&self.commitment_hash);
        out
    }

    fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != 72 {
            return None;
        }
        Some(Self {
            tx: arr32_at(v, 0)?,
            block: u64_at(v, 32)?,
            commitment_hash: arr32_at(v, 40)?,
        })
    }
}

/// Timed epochs: epoch `n` covers readings in `[genesis_s + n·duration_s, … + duration_s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochClock {
    /// Start of epoch 0's window, Unix seconds.
    pub genesis_s: u64,
    /// Window length, seconds (> 0).
    pub duration_s: u64,
}

impl EpochClock {
    /// The epoch whose window holds `t` (`None` before genesis or with a zero duration).
    pub fn epoch_of(&self, t: u64) -> Option<u64> {
        t.checked_sub(self.genesis_s)?.checked_div(self.duration_s)
    }

    /// Epoch `n`'s window.
    pub fn window(&self, n: u64) -> Option<(u64, u64)> {
        let start = n
            .checked_mul(self.duration_s)?
            .checked_add(self.genesis_s)?;
        Some((start, start.checked_add(self.duration_s)?))
    }
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    /// Unique id: blake3 of a domain tag, the device id and the hour start.
    pub id: [u8; 32],
    /// The producing device.
    pub device: DeviceId,
    /// Start of the production hour, Unix seconds (inclusive).
    pub start: u64,
    /// End of the production hour (exclusive).
    pub end: u64,
    /// Certified energy, Wh: the device's anchored buckets of the hour.
    pub wh: u64,
    /// Readings behind it.
    pub readings: u64,
    /// Energy of the hour this node holds that is not anchored (not certified), Wh.
    pub unanchored_wh: u64,
    /// The device's region label (grid area; may be empty).
    pub region: String,
    /// When this node issued it, Unix seconds.
    pub issued_at: u64,
    /// The epochs, proof digests and L1 anchors behind it, by epoch.
    pub evidence: Vec<Evidence>,
}

impl Certificate {
    /// The deterministic id of `device`'s certificate for the hour starting at `hour`.
    pub fn id_of(device: &DeviceId, hour: u64) -> [u8; 32] {
        let mut h = blake3::Hasher::new();
        h.update(ID_DOMAIN);
        h.update(&device.0);
        h.update(&hour.to_be_bytes());
        *h.finalize().as_bytes()
    }

    fn encode(&self) -> Vec<u8> {
        let region = self.region.as_bytes();
        let mut out = Vec::with_capacity(
            32 + 32 + 8 * 6 + 2 + self.evidence.len() * EVIDENCE_LEN + region.len(),
        );
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.device.0);
        for n in [
            self.start,
            self.end,
            self.wh,
            self.readings,
            self.unanchored_wh,
            self.issued_at,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let n = u16::try_from(self.evidence.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&n.to_be_bytes());
        for e in self.evidence.iter().take(usize::from(n)) {
            out.extend_from_slice(&e.epoch.to_be_bytes());
            out.extend_from_slice(&e.proof.unwrap_or_default());
            out.extend_from_slice(&e.l1_tx.unwrap_or_default());
            out.extend_from_slice(&e.l1_block.unwrap_or_default().to_be_bytes());
        }
        out.extend_from_slice(region);
        out
    }

    fn decode(v: &[u8]) -> Option<Self> {
        let n = usize::from(u16::from_be_bytes(v.get(112..114)?.try_into().ok()?));
        let mut evidence = Vec::with_capacity(n.min(MAX_CERT_EVIDENCE));
        let mut at = 114usize;
        for _ in 0..n {
            evidence.push(Evidence {
                epoch: u64_at(v, at)?,
                proof: Some(arr32_at(v, at + 8)?),
                l1_tx: Some(arr32_at(v, at + 40)?),
                l1_block: Some(u64_at(v, at + 72)?),
            });
            at = at.checked_add(EVIDENCE_LEN)?;
        }
        Some(Self {
            id: arr32_at(v, 0)?,
            device: DeviceId(arr32_at(v, 32)?),
            start: u64_at(v, 64)?,
            end: u64_at(v, 72)?,
            wh: u64_at(v, 80)?,
            readings: u64_at(v, 88)?,
            unanchored_wh: u64_at(v, 96)?,
            issued_at: u64_at(v, 104)?,
            evidence,
            region: String::from_utf8(v.get(at..)?.to_vec()).ok()?,
        })
    }
}

const EVIDENCE_LEN: usize = 8 + 32 + 32 + 8;

/// An anchored epoch as the ledger and L1 know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnchoredEpoch {
    /// The epoch.
    pub epoch: u64,
    /// The ledger's epoch clock (the epoch's window and its neighbours').
    pub clock: EpochClock,
    /// Devices the epoch's audits verified, with the proof digest of each.
    pub audited: Vec<(DeviceId, [u8; 32])>,
    /// Where L1 holds it.
    pub anchor: L1Anchor,
}

/// What anchoring an epoch changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnchorOutcome {
    /// Buckets raised to `anchored`.
    pub buckets: usize,
    /// Certificates issued now (ids).
    pub issued: Vec<[u8; 32]>,
}

/// A certificate listing: `[from, to)` hour starts, optionally one device, after a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertificateQuery {
    /// One device only.
    pub device: Option<DeviceId>,
    /// First hour start.
    pub from: u64,
    /// End (exclusive).
    pub to: u64,
    /// Resume after this (hour, device).
    pub after: Option<(u64, [u8; 32])>,
    /// Most certificates.
    pub limit: usize,
}

fn hour_of(t: u64) -> u64 {
    t - t % HOUR_S
}

fn pair_key(a: &[u8; 32], n: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(a);
    k[32..].copy_from_slice(&n.to_be_bytes());
    k
}

fn time_key(n: u64, a: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&n.to_be_bytes());
    k[8..].copy_from_slice(a);
    k
}

impl Production {
    /// Where `epoch` is anchored, as recorded by [`Production::anchor_epoch`].
    pub fn l1_anchor(&self, epoch: u64) -> Result<Option<L1Anchor>> {
        match self.certs.anchors.get(epoch.to_be_bytes())? {
            None => Ok(None),
            Some(v) => L1Anchor::decode(&v)
                .map(Some)
                .ok_or_else(|| ProductionError::Corrupt(format!("anchor of epoch {epoch}"))),
        }
    }

    /// Records that `a.epoch` is anchored on L1: raises its audited devices' buckets of the
    /// epoch's window to `anchored` (with the proof digest, L1 transaction and block), then
    /// issues the certificates of every closed hour (see the module docs). Idempotent:
    /// replaying it changes nothing and issues nothing. `now_s` stamps new certificates.
    pub fn anchor_epoch(&self, a: &AnchoredEpoch, now_s: u64) -> Result<AnchorOutcome> {
        let window = a
            .clock
            .window(a.epoch)
            .ok_or_else(|| ProductionError::Corrupt(format!("window of epoch {}", a.epoch)))?;
        let mut out = AnchorOutcome::default();
        for (device, proof) in &a.audited {
            out.buckets = out.buckets.saturating_add(self.upgrade(
                device,
                window,
                StatusUpgrade::Anchored {
                    epoch: a.epoch,
                    proof: *proof,
                    l1_tx: a.anchor.tx,
                    l1_block: a.anchor.block,
                },
            )?);
            let mut hour = hour_of(window.0);
            while hour < window.1 {
                self.certs
                    .pending
                    .insert(pair_key(&device.0, hour), &[][..])?;
                hour = hour.saturating_add(HOUR_S);
            }
        }
        // The anchor is recorded after the buckets: a crash in between replays the epoch.
        self.certs
            .anchors
            .insert(a.epoch.to_be_bytes(), &a.anchor.encode()[..])?;
        out.issued = self.issue_closed(&a.clock, now_s)?;
        Ok(out)
    }

    /// Whether every epoch meeting `[hour, hour + 1 h)` is anchored.
    fn hour_closed(&self, clock: &EpochClock, hour: u64) -> Result<bool> {
        let Some(last) = clock.epoch_of(hour.saturating_add(HOUR_S - 1)) else {
            // Wholly before genesis: no epoch covers it.
            return Ok(true);
        };
        let first = clock.epoch_of(hour.max(clock.genesis_s)).unwrap_or(0);
        self.epochs_anchored(first, last)
    }

    fn epochs_anchored(&self, first: u64, last: u64) -> Result<bool> {
        for e in first..=last {
            if !self.certs.anchors.contains_key(e.to_be_bytes())? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Issues the pending hours that are closed; returns the new certificates' ids.
    fn issue_closed(&self, clock: &EpochClock, now_s: u64) -> Result<Vec<[u8; 32]>> {
        let mut issued = Vec::new();
        let pending: Vec<sled::IVec> = self
            .certs
            .pending
            .iter()
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        for k in pending {
            let (Some(device), Some(hour)) = (arr32_at(&k, 0), u64_at(&k, 32)) else {
                self.certs.pending.remove(&k)?;
                continue;
            };
            if !self.hour_closed(clock, hour)? {
                continue;
            }
            let device = DeviceId(device);
            if let Some(id) = self.issue(&device, hour, now_s)? {
                issued.push(id);
            }
        }
        Ok(issued)
    }

    /// Issues `device`'s certificate for `hour` unless it exists or has no anchored energy;
    /// clears the pending mark either way.
    fn issue(&self, device: &DeviceId, hour: u64, now_s: u64) -> Result<Option<[u8; 32]>> {
        let id = Certificate::id_of(device, hour);
        let end = hour.saturating_add(HOUR_S);
        let mut wh = 0u64;
        let mut readings = 0u64;
        let mut unanchored_wh = 0u64;
        let mut evidence: Vec<Evidence> = Vec::new();
        for item in self
            .buckets
            .range(device_key(device, hour)..device_key(device, end))
        {
            let (k, v) = item?;
            let b = Bucket::decode(&v).ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
            let anchored = b.status == Status::Anchored
                && b.evidence
                    .is_some_and(|e| e.proof.is_some() && e.l1_tx.is_some());
            if !anchored {
                unanchored_wh = unanchored_wh.saturating_add(b.wh);
                continue;
            }
            let overflow = || ProductionError::Overflow(device.to_string());
            wh = wh.checked_add(b.wh).ok_or_else(overflow)?;
            readings = readings.checked_add(b.readings).ok_or_else(overflow)?;
            if let Some(e) = b.evidence {
                if !evidence.contains(&e) && evidence.len() < MAX_CERT_EVIDENCE {
                    evidence.push(e);
                }
            }
        }
        evidence.sort_by_key(|e| e.epoch);
        let region = self.device(device)?.map(|e| e.region).unwrap_or_default();
        let cert = (wh > 0).then_some(Certificate {
            id,
            device: *device,
            start: hour,
            end,
            wh,
            readings,
            unanchored_wh,
            region,
            issued_at: now_s,
            evidence,
        });
        let pk = pair_key(&device.0, hour);
        let tk = time_key(hour, &device.0);
        let t = &self.certs;
        (&t.certs, &t.by_device, &t.by_time, &t.pending)
            .transaction(|(certs, by_device, by_time, pending)| {
                pending.remove(&pk[..])?;
                let Some(c) = &cert else { return Ok(None) };
                if certs.get(id)?.is_some() {
                    return Ok(None);
                }
                certs.insert(&id[..], c.encode())?;
                by_device.insert(&pk[..], &id[..])?;
                by_time.insert(&tk[..], &id[..])?;
                Ok::<_, ConflictableTransactionError<ProductionError>>(Some(id))
            })
            .map_err(flatten)
    }

    /// One certificate by id.
    pub fn certificate(&self, id: &[u8; 32]) -> Result<Option<Certificate>> {
        match self.certs.certs.get(id)? {
            None => Ok(None),
            Some(v) => Certificate::decode(&v)
                .map(Some)
                .ok_or_else(|| ProductionError::Corrupt(hex::encode(id))),
        }
    }

    /// Certificates of production hours in `[from, to)`, by hour then device (or by hour for
    /// one device), at most `limit`, and the (hour, device) to resume after when more follow.
    #[allow(clippy::type_complexity)]
    pub fn certificates(
        &self,
        q: &CertificateQuery,
    ) -> Result<(Vec<Certificate>, Option<(u64, [u8; 32])>)> {
        use std::ops::Bound::{Excluded, Included};
        let (tree, lo, hi): (&sled::Tree, Vec<u8>, Vec<u8>) = match &q.device {
            Some(d) => (
                &self.certs.by_device,
                match q.after {
                    Some((h, _)) => pair_key(&d.0, h).to_vec(),
                    None => pair_key(&d.0, q.from).to_vec(),
                },
                pair_key(&d.0, q.to).to_vec(),
            ),
            None => (
                &self.certs.by_time,
                match q.after {
                    Some((h, dev)) => time_key(h, &dev).to_vec(),
                    None => time_key(q.from, &[0; 32]).to_vec(),
                },
                time_key(q.to, &[0; 32]).to_vec(),
            ),
        };
        let lower = if q.after.is_some() {
            Excluded(lo)
        } else {
            Included(lo)
        };
        let mut out = Vec::with_capacity(q.limit.min(1024));
        for item in tree.range::<Vec<u8>, _>((lower, Excluded(hi))) {
            let (k, id) = item?;
            if out.len() >= q.limit {
                let next = out.last().map(|c: &Certificate| (c.start, c.device.0));
                return Ok((out, next));
            }
            let id: [u8; 32] = id
                .as_ref()
                .try_into()
                .map_err(|_| ProductionError::Corrupt(hex::encode(&k)))?;
            match self.certificate(&id)? {
                Some(c) => out.push(c),
                None => return Err(ProductionError::Corrupt(hex::encode(id))),
            }
        }
        Ok((out, None))
    }

    /// Certificates issued, all devices.
    pub fn certificate_count(&self) -> usize {
        self.certs.certs.len()
    }
}
