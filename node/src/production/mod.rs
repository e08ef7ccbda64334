//! Verified production read model: per device and per region, 5-minute buckets of accepted
//! readings (Wh for energy meters, GPU-milliseconds for GPU agents), kept up to date as ingest
//! commits readings, so the API answers a range query by reading buckets, never raw readings.
//!
//! ```text
//! ingest committer ──record(&[Reading])──▶ one sled transaction per batch:
//!     counted   device ‖ seq             → ()         a reading is counted once (redelivery, catch-up)
//!     buckets   device ‖ bucket start    → Bucket     sums, readings, status, evidence
//!     regions   len ‖ region ‖ start     → RegionBucket sums and readings per status
//!     devices   device                   → DeviceEntry kind, region, totals, first/last bucket
//!   then a ProductionEventView per new reading on a bounded broadcast (the SSE stream)
//! ```
//!
//! * **Buckets.** A reading counts whole in the 5-minute UTC bucket holding its interval start
//!   (readings are not split across buckets). Coarser granularities (15 min, 1 h, 1 day) sum
//!   buckets at query time, aligned to the Unix epoch, so days are UTC days.
//! * **Idempotence.** The `counted` marker and the sums change in one transaction; a reading
//!   seen again (broker redelivery, [`Production::catch_up`] after a restart) changes nothing.
//!   The trees are not flushed with the reading store: a crash loses a suffix of transactions,
//!   and `catch_up` over the store's accepted readings restores exactly those.
//! * **Status.** Every bucket starts `reported`. [`Production::upgrade`] is the seam through which
//!   the audit loop (attested: the epoch's readings commitment is fixed on the ledger; verified:
//!   the ledger verified the audit proof; anchored: the epoch commitment is on L1) reports an
//!   epoch's reading window `[start, end)` for a device, with the epoch, proof digest and L1
//!   transaction. Epoch windows need not line up with buckets (a 5-minute bucket may span
//!   several 60-second epochs, or straddle two hourly ones), so a bucket keeps, per status, the
//!   windows reported for it ([`Coverage`]) and the hull of its readings' intervals: it holds a
//!   status only once one window of that status (merged with its neighbours) contains every
//!   reading interval in it. A reading landing in a bucket after its window was reported is not
//!   in that epoch's commitment (a late reading): its interval is cut out of every window, so
//!   the bucket falls back to `reported` and stays there unless a later epoch covers it.
//! * **Regions** are the device's region label when its first reading is recorded (looked up
//!   through a [`RegionResolver`]). Devices with an empty region count in no region.
//!
//! What it must not do: decide whether a reading is valid (ingest does), block ingest on a
//! failure (the committer logs it; `catch_up` repairs), or hold unbounded memory per request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use groundtruth_api::time::format_rfc3339;
use groundtruth_api::{
    BucketStatusView, DeviceProductionSummaryView, EvidenceRefView, Hex32, ProductionEventView,
};
use groundtruth_device_sdk::{DeviceId, Reading, ReadingBody, SignedReading};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::ingest::store::{Status as StoredStatus, Store, StoreError};

pub mod anchored;
pub mod certificates;
pub mod market;
#[cfg(test)]
mod tests;

pub use certificates::{
    AnchorOutcome, AnchoredEpoch, Certificate, CertificateQuery, EpochClock, L1Anchor, HOUR_S,
};

/// Length of one bucket, seconds.
pub const BUCKET_S: u64 = 300;
/// Longest region label aggregated (bytes); longer labels count in no region.
pub const MAX_REGION_LEN: usize = 64;
/// Most buckets one page query reads; a page stops early (with a cursor) past it, so a
/// request costs at most this many sled reads whatever its granularity.
pub const MAX_BUCKETS_PER_PAGE: usize = 31 * 288;
/// Capacity of the live event channel; a slower subscriber loses the oldest events.
pub const EVENT_CAPACITY: usize = 4096;

/// Errors of the production read model.
#[derive(Debug, thiserror::Error)]
pub enum ProductionError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value does not have the expected layout.
    #[error("corrupt production entry under key {0}")]
    Corrupt(String),
    /// A sum would overflow `u64`.
    #[error("production sum overflows for device {0}")]
    Overflow(String),
    /// Reading the raw store during catch-up failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Result with [`ProductionError`].
pub type Result<T> = std::result::Result<T, ProductionError>;

/// How far a value is established, weakest first. Stored as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Status {
    /// Signed readings accepted by this node.
    #[default]
    Reported = 0,
    /// Covered by an epoch readings commitment fixed on the ledger by ≥ 2/3 of stake.
    Attested = 1,
    /// Covered by an audit proof the ledger verified.
    Verified = 2,
    /// The epoch commitment is anchored on L1.
    Anchored = 3,
}

impl Status {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            0 => Self::Reported,
            1 => Self::Attested,
            2 => Self::Verified,
            3 => Self::Anchored,
            _ => return None,
        })
    }

    /// The API's name for it.
    pub fn view(self) -> BucketStatusView {
        match self {
            Self::Reported => BucketStatusView::Reported,
            Self::Attested => BucketStatusView::Attested,
            Self::Verified => BucketStatusView::Verified,
            Self::Anchored => BucketStatusView::Anchored,
        }
    }
}

/// The evidence behind an upgraded bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Evidence {
    /// Epoch whose commitment covers the bucket.
    pub epoch: u64,
    /// Digest of the audit proof (verified and anchored).
    pub proof: Option<[u8; 32]>,
    /// L1 transaction hash of the anchor (anchored).
    pub l1_tx: Option<[u8; 32]>,
    /// L1 block holding that transaction (anchored).
    pub l1_block: Option<u64>,
}

/// What the audit loop learnt about an epoch window: the status to raise buckets to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusUpgrade {
    /// The epoch's readings commitment is fixed on the ledger.
    Attested {
        /// The epoch.
        epoch: u64,
    },
    /// The ledger verified the audit proof covering the window.
    Verified {
        /// The epoch.
        epoch: u64,
        /// Digest of the proof.
        proof: [u8; 32],
    },
    /// The epoch commitment is anchored on L1.
    Anchored {
        /// The epoch.
        epoch: u64,
        /// Digest of the proof.
        proof: [u8; 32],
        /// The L1 transaction hash.
        l1_tx: [u8; 32],
        /// The L1 block holding it.
        l1_block: u64,
    },
}

impl StatusUpgrade {
    fn status(self) -> Status {
        match self {
            Self::Attested { .. } => Status::Attested,
            Self::Verified { .. } => Status::Verified,
            Self::Anchored { .. } => Status::Anchored,
        }
    }

    fn evidence(self) -> Evidence {
        match self {
            Self::Attested { epoch } => Evidence {
                epoch,
                proof: None,
                l1_tx: None,
                l1_block: None,
            },
            Self::Verified { epoch, proof } => Evidence {
                epoch,
                proof: Some(proof),
                l1_tx: None,
                l1_block: None,
            },
            Self::Anchored {
                epoch,
                proof,
                l1_tx,
                l1_block,
            } => Evidence {
                epoch,
                proof: Some(proof),
                l1_tx: Some(l1_tx),
                l1_block: Some(l1_block),
            },
        }
    }
}

/// Most disjoint windows kept per status and bucket: with epochs as short as 60 s a 5-minute
/// bucket spans about six of them, and out-of-order upgrades leave gaps for a while. Past it
/// the windows farthest from the readings are dropped (the bucket can then only lose status).
const MAX_COVER_WINDOWS: usize = 8;

/// The epoch windows reported for a bucket at each status above `reported` (attested,
/// verified, anchored), each a sorted list of disjoint, non-adjacent `[start, end)` ranges,
/// and the hull of the bucket's reading intervals.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Coverage {
    /// `[first interval start, last interval end)` over the bucket's readings; `None` for a
    /// bucket stored before coverage was kept (its stored status stands until its next reading).
    pub extent: Option<(u64, u64)>,
    /// Windows per status: index 0 attested, 1 verified, 2 anchored.
    pub windows: [Vec<(u64, u64)>; 3],
}

impl Coverage {
    /// Adds `w` to the windows of `status` and every weaker status above `reported`.
    fn cover(&mut self, w: (u64, u64), status: Status) {
        if w.0 >= w.1 {
            return;
        }
        let top = (status as usize).min(3);
        for list in self.windows.iter_mut().take(top) {
            let mut merged = w;
            list.retain(|&(a, b)| {
                if b < merged.0 || a > merged.1 {
                    true
                } else {
                    merged = (merged.0.min(a), merged.1.max(b));
                    false
                }
            });
            let at = list.partition_point(|&(a, _)| a < merged.0);
            list.insert(at, merged);
            while list.len() > MAX_COVER_WINDOWS {
                // Drop the window farthest from the readings (or the oldest).
                let centre = self.extent.map_or(0, |(a, b)| a / 2 + b / 2);
                let far = list
                    .iter()
                    .enumerate()
                    .max_by_key(|(_, &(a, b))| (a / 2 + b / 2).abs_diff(centre))
                    .map_or(0, |(i, _)| i);
                list.remove(far);
            }
        }
    }

    /// Cuts `[s, e)` (a reading that was not in the windows' commitments) out of every window.
    fn cut(&mut self, s: u64, e: u64) {
        for list in &mut self.windows {
            let mut out = Vec::with_capacity(list.len() + 1);
            for &(a, b) in list.iter() {
                if b <= s || a >= e {
                    out.push((a, b));
                    continue;
                }
                if a < s {
                    out.push((a, s));
                }
                if e < b {
                    out.push((e, b));
                }
            }
            out.truncate(MAX_COVER_WINDOWS);
            *list = out;
        }
    }

    /// The strongest status one of whose windows contains the whole extent.
    fn status(&self) -> Option<Status> {
        let (lo, hi) = self.extent?;
        let mut best = Status::Reported;
        for (i, list) in self.windows.iter().enumerate() {
            if list.iter().any(|&(a, b)| a <= lo && hi <= b) {
                best = match i {
                    0 => Status::Attested,
                    1 => Status::Verified,
                    _ => Status::Anchored,
                };
            }
        }
        Some(best)
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let (lo, hi) = self.extent.unwrap_or_default();
        out.push(u8::from(self.extent.is_some()));
        out.extend_from_slice(&lo.to_be_bytes());
        out.extend_from_slice(&hi.to_be_bytes());
        for list in &self.windows {
            out.push(list.len().min(MAX_COVER_WINDOWS) as u8);
            for &(a, b) in list.iter().take(MAX_COVER_WINDOWS) {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&b.to_be_bytes());
            }
        }
    }

    fn decode(v: &[u8]) -> Option<Self> {
        let mut c = Coverage::default();
        if *v.first()? == 1 {
            c.extent = Some((u64_at(v, 1)?, u64_at(v, 9)?));
        }
        let mut at = 17;
        for list in &mut c.windows {
            let n = usize::from(*v.get(at)?);
            if n > MAX_COVER_WINDOWS {
                return None;
            }
            at += 1;
            for _ in 0..n {
                list.push((u64_at(v, at)?, u64_at(v, at + 8)?));
                at += 16;
            }
        }
        (at == v.len()).then_some(c)
    }
}

/// One device's 5-minute bucket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bucket {
    /// Energy, Wh (energy meters).
    pub wh: u64,
    /// GPU time, ms (GPU agents).
    pub gpu_ms: u64,
    /// Readings counted.
    pub readings: u64,
    /// How far it is established.
    pub status: Status,
    /// What established it beyond `reported`: the epoch window that completed its coverage.
    pub evidence: Option<Evidence>,
    /// The epoch windows reported for it and its readings' extent.
    pub coverage: Coverage,
}

/// A bucket as first stored (no L1 block); still read.
const BUCKET_LEN_V1: usize = 8 + 8 + 8 + 1 + 1 + 8 + 32 + 32;
/// A bucket with the anchor's L1 block.
const BUCKET_LEN: usize = BUCKET_LEN_V1 + 8;

impl Bucket {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![0u8; BUCKET_LEN];
        out[0..8].copy_from_slice(&self.wh.to_be_bytes());
        out[8..16].copy_from_slice(&self.gpu_ms.to_be_bytes());
        out[16..24].copy_from_slice(&self.readings.to_be_bytes());
        out[24] = self.status as u8;
        if let Some(e) = self.evidence {
            out[25] = 1
                | if e.proof.is_some() { 2 } else { 0 }
                | if e.l1_tx.is_some() { 4 } else { 0 }
                | if e.l1_block.is_some() { 8 } else { 0 };
            out[26..34].copy_from_slice(&e.epoch.to_be_bytes());
            out[34..66].copy_from_slice(&e.proof.unwrap_or_default());
            out[66..98].copy_from_slice(&e.l1_tx.unwrap_or_default());
            out[98..106].copy_from_slice(&e.l1_block.unwrap_or_default().to_be_bytes());
        }
        self.coverage.encode_into(&mut out);
        out
    }

    fn decode(v: &[u8]) -> Option<Self> {
        let coverage = match v.len() {
            BUCKET_LEN_V1 | BUCKET_LEN => Coverage::default(),
            n if n > BUCKET_LEN => Coverage::decode(v.get(BUCKET_LEN..)?)?,
            _ => return None,
        };
        let flags = *v.get(25)?;
        let evidence = if flags & 1 == 1 {
            Some(Evidence {
                epoch: u64_at(v, 26)?,
                proof: (flags & 2 == 2).then(|| arr32_at(v, 34)).flatten(),
                l1_tx: (flags & 4 == 4).then(|| arr32_at(v, 66)).flatten(),
                l1_block: (flags & 8 == 8).then(|| u64_at(v, 98)).flatten(),
            })
        } else {
            None
        };
        Some(Self {
            wh: u64_at(v, 0)?,
            gpu_ms: u64_at(v, 8)?,
            readings: u64_at(v, 16)?,
            status: Status::from_byte(*v.get(24)?)?,
            evidence,
            coverage,
        })
    }
}

/// One region's 5-minute bucket: sums over its devices and readings per status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionBucket {
    /// Energy, Wh.
    pub wh: u64,
    /// GPU time, ms.
    pub gpu_ms: u64,
    /// Readings per [`Status`] (index = status byte).
    pub by_status: [u64; 4],
}

const REGION_BUCKET_LEN: usize = 8 * 6;

impl RegionBucket {
    /// Readings counted.
    pub fn readings(&self) -> u64 {
        self.by_status
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }

    /// The weakest status any of its readings has (`reported` when empty).
    pub fn status(&self) -> Status {
        [
            Status::Reported,
            Status::Attested,
            Status::Verified,
            Status::Anchored,
        ]
        .into_iter()
        .zip(self.by_status)
        .find(|(_, n)| *n > 0)
        .map_or(Status::Reported, |(s, _)| s)
    }

    fn encode(&self) -> [u8; REGION_BUCKET_LEN] {
        let mut out = [0u8; REGION_BUCKET_LEN];
        out[0..8].copy_from_slice(&self.wh.to_be_bytes());
        out[8..16].copy_from_slice(&self.gpu_ms.to_be_bytes());
        for (i, n) in self.by_status.iter().enumerate() {
            let at = 16 + 8 * i;
            out[at..at + 8].copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    fn decode(v: &[u8]) -> Option<Self> {
        if v.len() != REGION_BUCKET_LEN {
            return None;
        }
        Some(Self {
            wh: u64_at(v, 0)?,
            gpu_ms: u64_at(v, 8)?,
            by_status: [
                u64_at(v, 16)?,
                u64_at(v, 24)?,
                u64_at(v, 32)?,
                u64_at(v, 40)?,
            ],
        })
    }
}

/// A device as the production model knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// `energy` or `gpu`.
    pub kind: &'static str,
    /// Region label at its first reading (may be empty).
    pub region: String,
    /// Energy, Wh, all time.
    pub wh: u64,
    /// GPU time, ms, all time.
    pub gpu_ms: u64,
    /// Readings counted.
    pub readings: u64,
    /// Start of its first bucket, Unix seconds.
    pub first_bucket: u64,
    /// Start of its last bucket, Unix seconds.
    pub last_bucket: u64,
}

impl DeviceEntry {
    fn encode(&self) -> Vec<u8> {
        let region = self.region.as_bytes();
        let mut out = Vec::with_capacity(42 + region.len());
        out.push(match self.kind {
            "gpu" => 1,
            _ => 0,
        });
        out.extend_from_slice(&self.wh.to_be_bytes());
        out.extend_from_slice(&self.gpu_ms.to_be_bytes());
        out.extend_from_slice(&self.readings.to_be_bytes());
        out.extend_from_slice(&self.first_bucket.to_be_bytes());
        out.extend_from_slice(&self.last_bucket.to_be_bytes());
        out.extend_from_slice(region);
        out
    }

    fn decode(v: &[u8]) -> Option<Self> {
        let kind = match v.first()? {
            0 => "energy",
            1 => "gpu",
            _ => return None,
        };
        Some(Self {
            kind,
            wh: u64_at(v, 1)?,
            gpu_ms: u64_at(v, 9)?,
            readings: u64_at(v, 17)?,
            first_bucket: u64_at(v, 25)?,
            last_bucket: u64_at(v, 33)?,
            region: String::from_utf8(v.get(41..)?.to_vec()).ok()?,
        })
    }

    /// The API view of this device.
    pub fn view(&self, id: &DeviceId) -> DeviceProductionSummaryView {
        DeviceProductionSummaryView {
            id: Hex32(id.0),
            kind: self.kind.to_string(),
            region: self.region.clone(),
            energy_wh: self.wh,
            gpu_ms: self.gpu_ms,
            readings: self.readings,
            first_interval: format_rfc3339(self.first_bucket),
            last_interval: format_rfc3339(self.last_bucket),
        }
    }
}

fn u64_at(v: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = v.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

fn arr32_at(v: &[u8], at: usize) -> Option<[u8; 32]> {
    v.get(at..at.checked_add(32)?)?.try_into().ok()
}

fn device_key(device: &DeviceId, n: u64) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..32].copy_from_slice(&device.0);
    k[32..].copy_from_slice(&n.to_be_bytes());
    k
}

fn region_prefix(region: &str) -> Option<Vec<u8>> {
    let r = region.as_bytes();
    if r.is_empty() || r.len() > MAX_REGION_LEN {
        return None;
    }
    let mut k = Vec::with_capacity(1 + r.len() + 8);
    k.push(u8::try_from(r.len()).ok()?);
    k.extend_from_slice(r);
    Some(k)
}

fn region_key(prefix: &[u8], bucket: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8);
    k.extend_from_slice(prefix);
    k.extend_from_slice(&bucket.to_be_bytes());
    k
}

/// Start of the 5-minute bucket holding `t` (Unix seconds).
pub fn bucket_of(t: u64) -> u64 {
    t - t % BUCKET_S
}

/// What a reading adds: (bucket start, Wh, GPU-ms, kind); `None` for kinds without production.
fn contribution(body: &ReadingBody) -> Option<(u64, u64, u64, &'static str)> {
    match body {
        ReadingBody::Energy(e) => Some((bucket_of(e.interval_start_s), e.energy_wh, 0, "energy")),
        ReadingBody::Gpu(g) => Some((bucket_of(g.interval_start_s), 0, g.gpu_ms, "gpu")),
        ReadingBody::Storage(_) => None,
    }
}

/// A reading's interval `[start, end)`, as the audit loop places it in an epoch window.
fn reading_interval(body: &ReadingBody) -> Option<(u64, u64)> {
    let (s, len) = match body {
        ReadingBody::Energy(e) => (e.interval_start_s, e.interval_len_s),
        ReadingBody::Gpu(g) => (g.interval_start_s, g.interval_len_s),
        ReadingBody::Storage(_) => return None,
    };
    Some((s, s.saturating_add(u64::from(len))))
}

/// Looks up a device's region label (the ledger's, or the genesis file's on a node without
/// consensus); `None` or empty: no region.
pub type RegionResolver = Arc<dyn Fn(&DeviceId) -> Option<String> + Send + Sync>;

/// One interval of a series: sums over its buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Point {
    /// Interval start, Unix seconds (a multiple of the step).
    pub start: u64,
    /// Energy, Wh.
    pub wh: u64,
    /// GPU time, ms.
    pub gpu_ms: u64,
    /// Readings counted.
    pub readings: u64,
    /// Weakest status of its buckets.
    pub status: Status,
    /// Distinct evidence of its buckets (device series only), in bucket order.
    pub evidence: Vec<Evidence>,
}

/// A page of a series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Intervals with readings, oldest first (intervals without readings are absent).
    pub points: Vec<Point>,
    /// Start of the next interval to ask for, if the range has more.
    pub next: Option<u64>,
}

/// Counters of the live stream (for metrics and tests).
#[derive(Debug, Default)]
pub struct ProductionCounters {
    /// Readings counted into buckets.
    pub recorded: AtomicU64,
    /// Readings seen again and not counted (redelivery, catch-up).
    pub already_counted: AtomicU64,
    /// Batches that failed to record (logged; repaired by `catch_up` at the next start).
    pub failed_batches: AtomicU64,
}

/// The production read model (cheap to clone: sled trees and `Arc`s).
#[derive(Clone)]
pub struct Production {
    db: sled::Db,
    counted: sled::Tree,
    buckets: sled::Tree,
    regions: sled::Tree,
    devices: sled::Tree,
    /// Certificates and the L1 anchors behind them ([`certificates`]).
    certs: certificates::Trees,
    /// Each committed epoch's verified devices and proof digests, kept until the epoch is
    /// anchored ([`anchored`]): the ledger keeps an epoch's audits only `history_epochs`.
    epoch_audits: sled::Tree,
    /// Whether an anchored follower runs (set by [`anchored::spawn`]): only then are
    /// `epoch_audits` recorded.
    keep_epoch_audits: Arc<AtomicBool>,
    resolver: RegionResolver,
    events: tokio::sync::broadcast::Sender<ProductionEventView>,
    counters: Arc<ProductionCounters>,
    /// Bumped after each committed change to a device-day or region-day (the API's series
    /// cache checks them).
    changes: Arc<groundtruth_api::ProductionChanges>,
}

impl std::fmt::Debug for Production {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Production")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

fn abort<T>(
    e: ProductionError,
) -> std::result::Result<T, ConflictableTransactionError<ProductionError>> {
    Err(ConflictableTransactionError::Abort(e))
}

fn flatten(e: TransactionError<ProductionError>) -> ProductionError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => ProductionError::Sled(e),
    }
}

impl Production {
    /// Opens (or creates) the model's own sled database in `dir` (e.g. `<data_dir>/production`;
    /// not the reading store's directory, which sled locks).
    pub fn open(dir: &std::path::Path, resolver: RegionResolver) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            .open()?;
        Self::with_db(db, resolver)
    }

    fn with_db(db: sled::Db, resolver: RegionResolver) -> Result<Self> {
        let (events, _) = tokio::sync::broadcast::channel(EVENT_CAPACITY);
        Ok(Self {
            counted: db.open_tree("production_counted")?,
            buckets: db.open_tree("production_buckets")?,
            regions: db.open_tree("production_regions")?,
            devices: db.open_tree("production_devices")?,
            certs: certificates::Trees::open(&db)?,
            epoch_audits: db.open_tree("production_epoch_audits")?,
            keep_epoch_audits: Arc::new(AtomicBool::new(false)),
            db,
            resolver,
            events,
            counters: Arc::new(ProductionCounters::default()),
            changes: Arc::default(),
        })
    }

    /// Live events: one per newly counted reading. Lagging receivers lose the oldest events
    /// (`RecvError::Lagged`), the channel never grows past [`EVENT_CAPACITY`].
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<ProductionEventView> {
        self.events.subscribe()
    }

    /// Counters.
    pub fn counters(&self) -> &ProductionCounters {
        &self.counters
    }

    /// The change counters bumped after every committed change (for the API's series cache).
    pub fn changes(&self) -> Arc<groundtruth_api::ProductionChanges> {
        self.changes.clone()
    }

    /// Makes the model durable now (it is otherwise flushed by sled in the background).
    pub fn flush(&self) -> Result<usize> {
        Ok(self.db.flush()?)
    }

    /// The ingest hook: counts accepted readings (once each) and publishes their events.
    /// Returns how many were new. Readings of kinds without production (storage) are ignored.
    pub fn record(&self, readings: &[Reading]) -> Result<usize> {
        if readings.is_empty() {
            return Ok(0);
        }
        // Regions of devices not seen before, resolved outside the transaction.
        let mut regions: Vec<(DeviceId, String)> = Vec::new();
        for r in readings {
            if contribution(&r.body).is_some()
                && !regions.iter().any(|(d, _)| *d == r.device)
                && !self.devices.contains_key(r.device.0)?
            {
                let region = (self.resolver)(&r.device).unwrap_or_default();
                regions.push((r.device, region));
            }
        }
        let new = (&self.counted, &self.buckets, &self.regions, &self.devices)
            .transaction(|(counted, buckets, region_tree, devices)| {
                let mut new = Vec::new();
                for r in readings {
                    let Some((bucket, wh, gpu_ms, kind)) = contribution(&r.body) else {
                        continue;
                    };
                    let ck = device_key(&r.device, r.seq);
                    if counted.get(ck)?.is_some() {
                        continue;
                    }
                    counted.insert(&ck[..], &[][..])?;
                    let region =
                        add_device(devices, &r.device, kind, wh, gpu_ms, bucket, &regions)?;
                    add_bucket(
                        buckets,
                        region_tree,
                        &r.device,
                        region.as_deref(),
                        reading_interval(&r.body).unwrap_or((bucket, bucket + BUCKET_S)),
                        wh,
                        gpu_ms,
                    )?;
                    new.push((r, region));
                }
                Ok(new)
            })
            .map_err(flatten)?;
        for (r, region) in &new {
            if let Some((bucket, ..)) = contribution(&r.body) {
                self.changes.touch_device(&r.device.0, bucket);
                if let Some(region) = region.as_deref().filter(|g| !g.is_empty()) {
                    self.changes.touch_region(region, bucket);
                }
            }
        }
        let new: Vec<_> = new
            .into_iter()
            .map(|(r, region)| event(r, region))
            .collect();
        let n = new.len();
        let seen = readings.len().saturating_sub(n);
        self.counters
            .recorded
            .fetch_add(n as u64, Ordering::Relaxed);
        self.counters
            .already_counted
            .fetch_add(seen as u64, Ordering::Relaxed);
        for e in new {
            // No subscriber is not an error.
            let _ = self.events.send(e);
        }
        Ok(n)
    }

    /// [`Production::record`] for the ingest committer: a failure is logged and counted, never
    /// returned (ingest must not stop for its read model; [`Production::catch_up`] at the next
    /// start counts what was missed).
    pub fn record_logged(&self, readings: &[Reading]) {
        if let Err(e) = self.record(readings) {
            let failed = self.counters.failed_batches.fetch_add(1, Ordering::Relaxed);
            if failed.is_power_of_two() || failed == 0 {
                tracing::error!(target: "node::production", error = %e, failed_batches = failed + 1, "recording production failed; the next start catches up from the store");
            }
        }
    }

    /// Runs [`Production::catch_up`] on its own thread (logging the outcome).
    pub fn spawn_catch_up(&self, store: Store) -> std::io::Result<std::thread::JoinHandle<()>> {
        let p = self.clone();
        std::thread::Builder::new()
            .name("production-catch-up".into())
            .spawn(move || match p.catch_up(&store) {
                Ok(n) => tracing::info!(target: "node::production", counted = n, "production read model caught up with the store"),
                Err(e) => tracing::error!(target: "node::production", error = %e, "production catch-up failed"),
            })
    }

    /// Counts every accepted reading of the store not counted yet (after a crash lost the tail
    /// of the model, or when the model is new). Reads the whole store: run it once at start, on
    /// its own thread; it may run while ingest records (each reading is counted once).
    pub fn catch_up(&self, store: &Store) -> Result<usize> {
        const CHUNK: usize = 512;
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut added = 0usize;
        for r in store.readings() {
            let r = r?;
            if r.status != StoredStatus::Accepted
                || self.counted.contains_key(device_key(&r.device, r.seq))?
            {
                continue;
            }
            let Ok(signed) = SignedReading::decode_frame(&r.frame) else {
                continue;
            };
            chunk.push(signed.reading);
            if chunk.len() >= CHUNK {
                added = added.saturating_add(self.record(&chunk)?);
                chunk.clear();
            }
        }
        added = added.saturating_add(self.record(&chunk)?);
        Ok(added)
    }

    /// Retention's hook, after `device`'s readings below `below` were pruned from the store
    /// (their floor durable there, so ingest refuses them as replays and `catch_up` no longer
    /// sees them): removes at most `max` of their `counted` markers, oldest first. The buckets
    /// and totals they were counted into stay. Returns how many were removed; idempotent.
    pub fn forget_counted_below(&self, device: &DeviceId, below: u64, max: usize) -> Result<u64> {
        let mut batch = sled::Batch::default();
        let mut n = 0u64;
        for k in self
            .counted
            .range(device_key(device, 0)..device_key(device, below))
            .keys()
            .take(max)
        {
            batch.remove(k?);
            n += 1;
        }
        if n > 0 {
            self.counted.apply_batch(batch)?;
        }
        Ok(n)
    }

    /// **The audit loop's seam.** Records that `device`'s readings with intervals inside
    /// `[window.0, window.1)` (Unix seconds: the epoch's reading window) reached the upgrade's
    /// status, with its evidence (epoch; proof digest; L1 transaction), in every bucket the
    /// window touches; a bucket whose readings are then all covered at a stronger status is
    /// raised to it (and the device's readings in its region's buckets move with it). Never
    /// lowers a status. Returns the buckets raised.
    pub fn upgrade(
        &self,
        device: &DeviceId,
        window: (u64, u64),
        upgrade: StatusUpgrade,
    ) -> Result<usize> {
        let target = upgrade.status();
        let evidence = upgrade.evidence();
        let region = match self.devices.get(device.0)? {
            Some(v) => {
                DeviceEntry::decode(&v)
                    .ok_or_else(|| ProductionError::Corrupt(device.to_string()))?
                    .region
            }
            None => return Ok(0),
        };
        let prefix = region_prefix(&region);
        let keys: Vec<sled::IVec> = self
            .buckets
            .range(device_key(device, bucket_of(window.0))..device_key(device, window.1))
            .keys()
            .collect::<std::result::Result<_, _>>()?;
        let changed = (&self.buckets, &self.regions)
            .transaction(|(buckets, regions)| {
                let mut changed = 0usize;
                for k in &keys {
                    let Some(v) = buckets.get(k)? else { continue };
                    let Some(mut b) = Bucket::decode(&v) else {
                        return abort(ProductionError::Corrupt(hex::encode(k)));
                    };
                    if b.status >= target {
                        continue;
                    }
                    let from = b.status;
                    b.coverage.cover(window, target);
                    // A bucket stored before coverage was kept: its readings are the ones
                    // whose interval starts in it.
                    let to = match b.coverage.status() {
                        Some(s) => s,
                        None if window.0 <= u64_at(k, 32).unwrap_or(0) => target,
                        None => from,
                    };
                    if to <= from {
                        buckets.insert(k, &b.encode()[..])?;
                        continue;
                    }
                    b.status = to;
                    b.evidence = Some(evidence);
                    buckets.insert(k, &b.encode()[..])?;
                    if let (Some(p), Some(start)) = (&prefix, u64_at(k, 32)) {
                        move_region_readings(regions, p, start, from, to, b.readings)?;
                    }
                    changed += 1;
                }
                Ok(changed)
            })
            .map_err(flatten)?;
        if changed > 0 {
            // Every day of the range read (a superset of the buckets changed).
            let mut last_day = None;
            for start in keys.iter().filter_map(|k| u64_at(k, 32)) {
                if last_day != Some(start / 86_400) {
                    last_day = Some(start / 86_400);
                    self.changes.touch_device(&device.0, start);
                    if !region.is_empty() {
                        self.changes.touch_region(&region, start);
                    }
                }
            }
        }
        Ok(changed)
    }

    /// A device's series over `[from, to)` in steps of `step` seconds (a multiple of
    /// [`BUCKET_S`] dividing a day), at most `limit` intervals with readings per page.
    pub fn device_series(
        &self,
        device: &DeviceId,
        from: u64,
        to: u64,
        step: u64,
        limit: usize,
    ) -> Result<Page> {
        let range = self
            .buckets
            .range(device_key(device, from)..device_key(device, to));
        series(
            range.map(|item| {
                let (k, v) = item?;
                let start =
                    u64_at(&k, 32).ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
                let b =
                    Bucket::decode(&v).ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
                Ok((start, b))
            }),
            step,
            limit,
        )
    }

    /// A region's series (sums over its devices), like [`Production::device_series`]; an
    /// unknown or over-long region has no points.
    pub fn region_series(
        &self,
        region: &str,
        from: u64,
        to: u64,
        step: u64,
        limit: usize,
    ) -> Result<Page> {
        let Some(prefix) = region_prefix(region) else {
            return Ok(Page {
                points: Vec::new(),
                next: None,
            });
        };
        let at = prefix.len();
        let range = self
            .regions
            .range(region_key(&prefix, from)..region_key(&prefix, to));
        series(
            range.map(|item| {
                let (k, v) = item?;
                let start =
                    u64_at(&k, at).ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
                let r = RegionBucket::decode(&v)
                    .ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
                Ok((
                    start,
                    Bucket {
                        wh: r.wh,
                        gpu_ms: r.gpu_ms,
                        readings: r.readings(),
                        status: r.status(),
                        evidence: None,
                        coverage: Coverage::default(),
                    },
                ))
            }),
            step,
            limit,
        )
    }

    /// One device's entry, if it has production.
    pub fn device(&self, device: &DeviceId) -> Result<Option<DeviceEntry>> {
        match self.devices.get(device.0)? {
            None => Ok(None),
            Some(v) => DeviceEntry::decode(&v)
                .map(Some)
                .ok_or_else(|| ProductionError::Corrupt(device.to_string())),
        }
    }

    /// Devices with production in id order, starting after `after`, at most `limit`; and
    /// whether more follow.
    pub fn devices(
        &self,
        after: Option<&DeviceId>,
        limit: usize,
    ) -> Result<(Vec<(DeviceId, DeviceEntry)>, bool)> {
        let iter = match after {
            Some(d) => self.devices.range::<&[u8], _>((
                std::ops::Bound::Excluded(&d.0[..]),
                std::ops::Bound::Unbounded,
            )),
            None => self.devices.iter(),
        };
        let mut out = Vec::with_capacity(limit.min(1024));
        for item in iter {
            let (k, v) = item?;
            if out.len() >= limit {
                return Ok((out, true));
            }
            let id: [u8; 32] = k
                .as_ref()
                .try_into()
                .map_err(|_| ProductionError::Corrupt(hex::encode(&k)))?;
            let e =
                DeviceEntry::decode(&v).ok_or_else(|| ProductionError::Corrupt(hex::encode(&k)))?;
            out.push((DeviceId(id), e));
        }
        Ok((out, false))
    }
}

type TxResult<T> = std::result::Result<T, ConflictableTransactionError<ProductionError>>;

/// Adds a reading to its device's entry (creating it with its resolved region); returns the
/// device's region if it counts in one.
fn add_device(
    devices: &TransactionalTree,
    device: &DeviceId,
    kind: &'static str,
    wh: u64,
    gpu_ms: u64,
    bucket: u64,
    regions: &[(DeviceId, String)],
) -> TxResult<Option<String>> {
    let overflow =
        || ConflictableTransactionError::Abort(ProductionError::Overflow(device.to_string()));
    let mut e = match devices.get(device.0)? {
        Some(v) => match DeviceEntry::decode(&v) {
            Some(e) => e,
            None => return abort(ProductionError::Corrupt(device.to_string())),
        },
        None => DeviceEntry {
            kind,
            region: regions
                .iter()
                .find(|(d, _)| d == device)
                .map(|(_, r)| r.clone())
                .unwrap_or_default(),
            wh: 0,
            gpu_ms: 0,
            readings: 0,
            first_bucket: bucket,
            last_bucket: bucket,
        },
    };
    e.wh = e.wh.checked_add(wh).ok_or_else(overflow)?;
    e.gpu_ms = e.gpu_ms.checked_add(gpu_ms).ok_or_else(overflow)?;
    e.readings = e.readings.checked_add(1).ok_or_else(overflow)?;
    e.first_bucket = e.first_bucket.min(bucket);
    e.last_bucket = e.last_bucket.max(bucket);
    devices.insert(&device.0[..], e.encode())?;
    Ok(region_prefix(&e.region).map(|_| e.region))
}

/// Adds a reading to its device bucket and its region bucket. A bucket upgraded before falls
/// back to `reported` (its evidence does not cover the new reading).
fn add_bucket(
    buckets: &TransactionalTree,
    regions: &TransactionalTree,
    device: &DeviceId,
    region: Option<&str>,
    interval: (u64, u64),
    wh: u64,
    gpu_ms: u64,
) -> TxResult<()> {
    let bucket = bucket_of(interval.0);
    let overflow =
        || ConflictableTransactionError::Abort(ProductionError::Overflow(device.to_string()));
    let bk = device_key(device, bucket);
    let mut b = match buckets.get(bk)? {
        Some(v) => match Bucket::decode(&v) {
            Some(b) => b,
            None => return abort(ProductionError::Corrupt(hex::encode(bk))),
        },
        None => Bucket::default(),
    };
    let was = b.status;
    let before = b.readings;
    b.wh = b.wh.checked_add(wh).ok_or_else(overflow)?;
    b.gpu_ms = b.gpu_ms.checked_add(gpu_ms).ok_or_else(overflow)?;
    b.readings = b.readings.checked_add(1).ok_or_else(overflow)?;
    b.status = Status::Reported;
    b.evidence = None;
    // Not in any window already reported (its epoch's commitment was fixed without it), and
    // part of what a window must now cover.
    b.coverage.cut(interval.0, interval.1);
    b.coverage.extent = Some(match b.coverage.extent {
        Some((lo, hi)) => (lo.min(interval.0), hi.max(interval.1)),
        // A bucket stored before coverage was kept: its earlier readings started in it.
        None if before > 0 => (bucket.min(interval.0), (bucket + BUCKET_S).max(interval.1)),
        None => interval,
    });
    buckets.insert(&bk[..], &b.encode()[..])?;
    if let Some(prefix) = region.and_then(region_prefix) {
        let rk = region_key(&prefix, bucket);
        let mut r = match regions.get(&rk)? {
            Some(v) => match RegionBucket::decode(&v) {
                Some(r) => r,
                None => return abort(ProductionError::Corrupt(hex::encode(&rk))),
            },
            None => RegionBucket::default(),
        };
        r.wh = r.wh.checked_add(wh).ok_or_else(overflow)?;
        r.gpu_ms = r.gpu_ms.checked_add(gpu_ms).ok_or_else(overflow)?;
        // The device's earlier readings in this bucket fall back to reported with it.
        move_counts(&mut r, was, Status::Reported, before).ok_or_else(overflow)?;
        let slot = r
            .by_status
            .get_mut(Status::Reported as usize)
            .ok_or_else(overflow)?;
        *slot = slot.checked_add(1).ok_or_else(overflow)?;
        regions.insert(rk, &r.encode()[..])?;
    }
    Ok(())
}

fn move_counts(r: &mut RegionBucket, from: Status, to: Status, n: u64) -> Option<()> {
    if from == to || n == 0 {
        return Some(());
    }
    let f = r.by_status.get_mut(from as usize)?;
    *f = f.checked_sub(n)?;
    let t = r.by_status.get_mut(to as usize)?;
    *t = t.checked_add(n)?;
    Some(())
}

fn move_region_readings(
    regions: &TransactionalTree,
    prefix: &[u8],
    bucket: u64,
    from: Status,
    to: Status,
    n: u64,
) -> TxResult<()> {
    let rk = region_key(prefix, bucket);
    let Some(v) = regions.get(&rk)? else {
        return abort(ProductionError::Corrupt(hex::encode(&rk)));
    };
    let Some(mut r) = RegionBucket::decode(&v) else {
        return abort(ProductionError::Corrupt(hex::encode(&rk)));
    };
    if move_counts(&mut r, from, to, n).is_none() {
        return abort(ProductionError::Corrupt(hex::encode(&rk)));
    }
    regions.insert(rk, &r.encode()[..])?;
    Ok(())
}

fn event(r: &Reading, region: Option<String>) -> ProductionEventView {
    let (interval_start, interval_len, wh, gpu_ms, kind) = match r.body {
        ReadingBody::Energy(e) => (
            e.interval_start_s,
            e.interval_len_s,
            e.energy_wh,
            0,
            "energy",
        ),
        ReadingBody::Gpu(g) => (g.interval_start_s, g.interval_len_s, 0, g.gpu_ms, "gpu"),
        ReadingBody::Storage(_) => (0, 0, 0, 0, "storage"),
    };
    ProductionEventView {
        device: Hex32(r.device.0),
        seq: r.seq,
        kind: kind.to_string(),
        region: region.unwrap_or_default(),
        interval_start: format_rfc3339(interval_start),
        interval_len_s: interval_len,
        energy_wh: wh,
        gpu_ms,
        status: BucketStatusView::Reported,
    }
}

/// Folds sorted 5-minute buckets into intervals of `step` seconds; stops after `limit`
/// intervals or [`MAX_BUCKETS_PER_PAGE`] buckets, at an interval boundary.
fn series(
    buckets: impl Iterator<Item = Result<(u64, Bucket)>>,
    step: u64,
    limit: usize,
) -> Result<Page> {
    let step = step.max(BUCKET_S);
    let mut points: Vec<Point> = Vec::new();
    let mut read = 0usize;
    for item in buckets {
        let (start, b) = item?;
        let interval = start - start % step;
        let same = points.last().is_some_and(|p| p.start == interval);
        if !same && (points.len() >= limit || read >= MAX_BUCKETS_PER_PAGE) {
            return Ok(Page {
                points,
                next: Some(interval),
            });
        }
        read = read.saturating_add(1);
        if !same {
            points.push(Point {
                start: interval,
                wh: 0,
                gpu_ms: 0,
                readings: 0,
                status: b.status,
                evidence: Vec::new(),
            });
        }
        let Some(p) = points.last_mut() else {
            continue;
        };
        p.wh = p.wh.saturating_add(b.wh);
        p.gpu_ms = p.gpu_ms.saturating_add(b.gpu_ms);
        p.readings = p.readings.saturating_add(b.readings);
        p.status = p.status.min(b.status);
        if let Some(e) = b.evidence {
            if !p.evidence.contains(&e) {
                p.evidence.push(e);
            }
        }
    }
    Ok(Page { points, next: None })
}

/// The API view of an evidence reference.
pub fn evidence_view(e: &Evidence) -> EvidenceRefView {
    EvidenceRefView {
        epoch: e.epoch,
        proof: e.proof.map(Hex32),
        l1_tx: e.l1_tx.map(Hex32),
        l1_block: e.l1_block,
    }
}
