//! Durable reading storage in sled.
//!
//! Tree `readings`: key `device (32) ‖ seq (8, big-endian)`, value `status (1) ‖ frame`, where
//! status 0 = accepted and 1 = authentic but rejected (e.g. implausible; kept so the sequence
//! has no hole and the lie is on record). Tree `evidence`: key `device ‖ seq ‖ first 8 bytes of
//! the second signature`, value `len(first) (2, BE) ‖ first frame ‖ second frame`.
//!
//! Tree `retention` (see [`crate::retention`]): key `device (32)` → the seq below which that
//! device's readings were pruned (8, BE; every seq below it was stored, hence settled, before it
//! was pruned), and key [`PRUNED_THROUGH_KEY`] → the last epoch whose readings a completed
//! retention pass pruned. Evidence and the `attested` batch keys are never pruned.
//!
//! Nothing is acknowledged to the broker before [`Store::flush`] returns.

use groundtruth_device_sdk::DeviceId;

/// Storage errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not have the expected layout (corruption or a foreign database).
    #[error("corrupt entry under key {0}")]
    Corrupt(String),
}

/// Result with [`StoreError`].
pub type Result<T> = std::result::Result<T, StoreError>;

/// Status byte of a stored reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Accepted: counts as verified input.
    Accepted = 0,
    /// Authentic but rejected (implausible); kept on record.
    Rejected = 1,
}

/// A stored reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredReading {
    /// Device.
    pub device: DeviceId,
    /// Sequence number.
    pub seq: u64,
    /// Accepted or rejected.
    pub status: Status,
    /// The frame as received.
    pub frame: Vec<u8>,
}

/// The node's sled database.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    readings: sled::Tree,
    evidence: sled::Tree,
    attested: sled::Tree,
    retention: sled::Tree,
}

/// Key of the last fully pruned epoch in the `retention` tree (not 32 bytes long, so it never
/// collides with a device key).
pub const PRUNED_THROUGH_KEY: &[u8] = b"pruned_through";

/// What [`Store::prune_below`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Readings removed.
    pub readings: u64,
    /// Their key and value bytes.
    pub bytes: u64,
}

fn key(device: &DeviceId, seq: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&device.0);
    k[32..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// One entry of the `readings` tree as a [`StoredReading`].
fn stored_reading(k: &[u8], v: &[u8]) -> Result<StoredReading> {
    let (device, seq) = parse_key(k).ok_or_else(|| StoreError::Corrupt(hex::encode(k)))?;
    let status = match v.first() {
        Some(0) => Status::Accepted,
        Some(1) => Status::Rejected,
        _ => return Err(StoreError::Corrupt(format!("{device}/{seq}"))),
    };
    Ok(StoredReading {
        device,
        seq,
        status,
        frame: v.get(1..).unwrap_or_default().to_vec(),
    })
}

fn batch_key(epoch: u64, auditor: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&epoch.to_be_bytes());
    k[8..].copy_from_slice(auditor);
    k
}

fn parse_key(k: &[u8]) -> Option<(DeviceId, u64)> {
    let device: [u8; 32] = k.get(..32)?.try_into().ok()?;
    let seq: [u8; 8] = k.get(32..40)?.try_into().ok()?;
    Some((DeviceId(device), u64::from_be_bytes(seq)))
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .open()?;
        let readings = db.open_tree("readings")?;
        let evidence = db.open_tree("evidence")?;
        let attested = db.open_tree("attested")?;
        let retention = db.open_tree("retention")?;
        Ok(Self {
            db,
            readings,
            evidence,
            attested,
            retention,
        })
    }

    /// What is stored at (device, seq): status and frame.
    pub fn get(&self, device: &DeviceId, seq: u64) -> Result<Option<(Status, sled::IVec)>> {
        let Some(v) = self.readings.get(key(device, seq))? else {
            return Ok(None);
        };
        let status = match v.first() {
            Some(0) => Status::Accepted,
            Some(1) => Status::Rejected,
            _ => return Err(StoreError::Corrupt(format!("{device}/{seq}"))),
        };
        Ok(Some((status, v.subslice(1, v.len() - 1))))
    }

    /// Stores a reading (not yet durable: call [`Store::flush`]).
    pub fn put(&self, device: &DeviceId, seq: u64, status: Status, frame: &[u8]) -> Result<()> {
        let mut v = Vec::with_capacity(frame.len() + 1);
        v.push(status as u8);
        v.extend_from_slice(frame);
        self.readings.insert(key(device, seq), v)?;
        Ok(())
    }

    /// Stores equivocation evidence: two different signed frames for one (device, seq).
    /// Returns whether it is new (the same pair arriving again, by replication or a resend, is
    /// not evidence to submit again).
    pub fn put_evidence(
        &self,
        device: &DeviceId,
        seq: u64,
        first: &[u8],
        second: &[u8],
    ) -> Result<bool> {
        let mut k = Vec::with_capacity(48);
        k.extend_from_slice(&key(device, seq));
        let tail = second.len().saturating_sub(64);
        k.extend_from_slice(second.get(tail..tail + 8).unwrap_or_default());
        let first_len = u16::try_from(first.len())
            .map_err(|_| StoreError::Corrupt("evidence too long".into()))?;
        let mut v = Vec::with_capacity(2 + first.len() + second.len());
        v.extend_from_slice(&first_len.to_be_bytes());
        v.extend_from_slice(first);
        v.extend_from_slice(second);
        Ok(self.evidence.insert(k, v)?.is_none())
    }

    /// Makes everything written so far durable (fsync). Returns bytes flushed.
    pub fn flush(&self) -> Result<usize> {
        Ok(self.db.flush()?)
    }

    /// Every stored reading, in key order (device, then seq).
    pub fn readings(&self) -> impl Iterator<Item = Result<StoredReading>> + '_ {
        self.readings.iter().map(|item| {
            let (k, v) = item?;
            stored_reading(&k, &v)
        })
    }

    /// Records which readings this validator put in `auditor`'s batch of `epoch` when it
    /// attested (tree `attested`, key `epoch (8, BE) ‖ auditor (32)`, value the readings' keys
    /// `device ‖ seq` back to back), so it proves and serves exactly that batch even after late
    /// readings of the window arrive. Durable with the next flush.
    pub fn put_batch_keys(
        &self,
        epoch: u64,
        auditor: &[u8; 32],
        keys: &[(DeviceId, u64)],
    ) -> Result<()> {
        let mut v = Vec::with_capacity(keys.len() * 40);
        for (d, s) in keys {
            v.extend_from_slice(&key(d, *s));
        }
        self.attested.insert(batch_key(epoch, auditor), v)?;
        Ok(())
    }

    /// The readings recorded by [`Store::put_batch_keys`], in batch order.
    pub fn batch_keys(
        &self,
        epoch: u64,
        auditor: &[u8; 32],
    ) -> Result<Option<Vec<(DeviceId, u64)>>> {
        let Some(v) = self.attested.get(batch_key(epoch, auditor))? else {
            return Ok(None);
        };
        v.chunks(40)
            .map(|k| parse_key(k).ok_or_else(|| StoreError::Corrupt("batch keys".into())))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// The readings recorded by [`Store::put_batch_keys`] for every epoch from `epoch` on, batch
    /// after batch (read only: retention keeps what they name).
    pub fn batch_keys_from(
        &self,
        epoch: u64,
    ) -> impl Iterator<Item = Result<Vec<(DeviceId, u64)>>> + '_ {
        self.attested
            .range(batch_key(epoch, &[0u8; 32])..)
            .map(|item| {
                let (_, v) = item?;
                v.chunks(40)
                    .map(|k| parse_key(k).ok_or_else(|| StoreError::Corrupt("batch keys".into())))
                    .collect()
            })
    }

    /// One device's stored readings, newest (highest seq) first: the audit loop reads an
    /// epoch window from the tail without scanning the device's older history.
    pub fn device_readings_rev(
        &self,
        device: &DeviceId,
    ) -> impl Iterator<Item = Result<StoredReading>> + '_ {
        self.readings.scan_prefix(device.0).rev().map(|item| {
            let (k, v) = item?;
            stored_reading(&k, &v)
        })
    }

    /// Every stored (device, seq) key, without values (for rebuilding in-memory indexes).
    pub fn keys(&self) -> impl Iterator<Item = Result<(DeviceId, u64)>> + '_ {
        self.readings.iter().keys().map(|k| {
            let k = k?;
            parse_key(&k).ok_or_else(|| StoreError::Corrupt(hex::encode(&k)))
        })
    }

    /// The seq below which `device`'s readings were pruned (0: none were).
    pub fn pruned_below(&self, device: &DeviceId) -> Result<u64> {
        let Some(v) = self.retention.get(device.0)? else {
            return Ok(0);
        };
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt(format!("retention floor of {device}")))?;
        Ok(u64::from_be_bytes(b))
    }

    /// Every device with pruned readings and the seq below which they were pruned: ingest
    /// settles these seqs at start, so a replay of a pruned reading is still a duplicate.
    pub fn pruned_floors(&self) -> impl Iterator<Item = Result<(DeviceId, u64)>> + '_ {
        self.retention.iter().filter_map(|item| {
            let (k, v) = match item {
                Ok(kv) => kv,
                Err(e) => return Some(Err(e.into())),
            };
            let device: [u8; 32] = k.as_ref().try_into().ok()?;
            let floor: Option<[u8; 8]> = v.as_ref().try_into().ok();
            Some(
                floor
                    .map(|f| (DeviceId(device), u64::from_be_bytes(f)))
                    .ok_or_else(|| StoreError::Corrupt(hex::encode(&k))),
            )
        })
    }

    /// The last epoch a completed retention pass pruned through, if any.
    pub fn pruned_through_epoch(&self) -> Result<Option<u64>> {
        let Some(v) = self.retention.get(PRUNED_THROUGH_KEY)? else {
            return Ok(None);
        };
        let b: [u8; 8] = v
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Corrupt("retention epoch".into()))?;
        Ok(Some(u64::from_be_bytes(b)))
    }

    /// Records (durably) that a retention pass pruned every device through `epoch`.
    pub fn set_pruned_through_epoch(&self, epoch: u64) -> Result<()> {
        self.retention
            .insert(PRUNED_THROUGH_KEY, &epoch.to_be_bytes()[..])?;
        self.db.flush()?;
        Ok(())
    }

    /// The first device (in id order) with stored readings after `after` (from the start when
    /// `None`): one seek per device, no scan.
    pub fn next_device(&self, after: Option<&DeviceId>) -> Result<Option<DeviceId>> {
        let from = match after {
            None => [0u8; 40],
            Some(d) => key(d, u64::MAX),
        };
        let found = match after {
            None => self.readings.range(from..).next(),
            Some(_) => self
                .readings
                .range((std::ops::Bound::Excluded(from), std::ops::Bound::Unbounded))
                .next(),
        };
        match found {
            None => Ok(None),
            Some(item) => {
                let (k, _) = item?;
                let (device, _) =
                    parse_key(&k).ok_or_else(|| StoreError::Corrupt(hex::encode(&k)))?;
                Ok(Some(device))
            }
        }
    }

    /// One device's stored readings from `from_seq` on, in sequence order.
    pub fn device_readings_from(
        &self,
        device: &DeviceId,
        from_seq: u64,
    ) -> impl Iterator<Item = Result<StoredReading>> + '_ {
        self.readings
            .range(key(device, from_seq)..=key(device, u64::MAX))
            .map(|item| {
                let (k, v) = item?;
                stored_reading(&k, &v)
            })
    }

    /// Prunes `device`'s readings below `below`: first raises its floor ([`Store::pruned_below`])
    /// to `below` and makes that durable, then removes at most `max` of the readings below the
    /// floor (oldest first) and flushes. Idempotent and safe to kill at any point: readings left
    /// below a durable floor are removed by the next call. The floor never goes down. The caller
    /// guarantees that every seq below `below` was stored (settled) and may be pruned.
    pub fn prune_below(&self, device: &DeviceId, below: u64, max: usize) -> Result<Pruned> {
        let floor = self.pruned_below(device)?;
        if below > floor {
            self.retention.insert(device.0, &below.to_be_bytes()[..])?;
            self.db.flush()?;
        }
        let floor = floor.max(below);
        let mut out = Pruned::default();
        let mut batch = sled::Batch::default();
        for item in self
            .readings
            .range(key(device, 0)..key(device, floor))
            .take(max)
        {
            let (k, v) = item?;
            out.readings += 1;
            out.bytes = out
                .bytes
                .saturating_add(u64::try_from(k.len() + v.len()).unwrap_or(u64::MAX));
            batch.remove(k);
        }
        if out.readings > 0 {
            self.readings.apply_batch(batch)?;
            self.db.flush()?;
        }
        Ok(out)
    }

    /// [`Store::prune_below`] for many devices at once, with two flushes in all: every floor
    /// raised (durable), then every reading below each floor removed in one sled batch. The
    /// caller bounds the work (readings below the new floors).
    pub fn prune_floors(&self, floors: &[(DeviceId, u64)]) -> Result<Pruned> {
        let mut raise = sled::Batch::default();
        let mut targets = Vec::with_capacity(floors.len());
        for (device, below) in floors {
            let floor = self.pruned_below(device)?;
            if *below > floor {
                raise.insert(&device.0[..], &below.to_be_bytes()[..]);
            }
            targets.push((device, floor.max(*below)));
        }
        self.retention.apply_batch(raise)?;
        self.db.flush()?;
        let mut out = Pruned::default();
        let mut remove = sled::Batch::default();
        for (device, floor) in targets {
            for item in self.readings.range(key(device, 0)..key(device, floor)) {
                let (k, v) = item?;
                out.readings += 1;
                out.bytes = out
                    .bytes
                    .saturating_add(u64::try_from(k.len() + v.len()).unwrap_or(u64::MAX));
                remove.remove(k);
            }
        }
        if out.readings > 0 {
            self.readings.apply_batch(remove)?;
            self.db.flush()?;
        }
        Ok(out)
    }

    /// Every piece of equivocation evidence: (device, seq, first frame, second frame).
    pub fn evidence(&self) -> impl Iterator<Item = Result<(DeviceId, u64, Vec<u8>, Vec<u8>)>> + '_ {
        self.evidence.iter().map(|item| {
            let (k, v) = item?;
            let corrupt = || StoreError::Corrupt(hex::encode(&k));
            let (device, seq) = parse_key(&k).ok_or_else(corrupt)?;
            let len_bytes: [u8; 2] = v
                .get(..2)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(corrupt)?;
            let len = usize::from(u16::from_be_bytes(len_bytes));
            let first = v.get(2..2 + len).ok_or_else(corrupt)?.to_vec();
            let second = v.get(2 + len..).ok_or_else(corrupt)?.to_vec();
            Ok((device, seq, first, second))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_evidence_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let d = DeviceId([1u8; 32]);
        store.put(&d, 7, Status::Accepted, b"frame-a").expect("put");
        store.put(&d, 8, Status::Rejected, b"frame-b").expect("put");
        let second =
            b"frame-c-with-a-long-enough-tail-for-a-signature-slice-of-eight-bytes-0123456789";
        assert!(store
            .put_evidence(&d, 7, b"frame-a", second)
            .expect("evidence"));
        assert!(
            !store
                .put_evidence(&d, 7, b"frame-a", second)
                .expect("evidence"),
            "the same pair again is not new"
        );
        store.flush().expect("flush");
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let (status, frame) = store.get(&d, 7).expect("get").expect("present");
        assert_eq!(
            (status, frame.as_ref()),
            (Status::Accepted, &b"frame-a"[..])
        );
        assert_eq!(
            store.get(&d, 8).expect("get").map(|(s, _)| s),
            Some(Status::Rejected)
        );
        assert!(store.get(&d, 9).expect("get").is_none());
        let all: Vec<_> = store.readings().collect::<Result<_>>().expect("iterate");
        assert_eq!(all.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![7, 8]);
        let ev: Vec<_> = store.evidence().collect::<Result<_>>().expect("evidence");
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].2, b"frame-a");
    }
}
