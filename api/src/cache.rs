//! The production series' response cache: encoded (and pre-compressed) answers of
//! `GET /v1/production/{devices,regions}/…`, reused until the data behind them changes.
//!
//! Invalidation is by [`ProductionChanges`], a fixed table of change counters the read model
//! bumps after it commits a change to a device-day or a region-day (a reading counted, a
//! status raised). A cached answer carries the sum of the counters of the days it covers, read
//! *before* its data was read; it is served only while that sum is unchanged. Counters only
//! grow, so any change to a covered day after the read is seen; two keys sharing a counter
//! (the table is hashed) only cost a spurious miss. Nothing here can serve data older than a
//! change the model has finished committing.
//!
//! The cache is bounded by the bytes it holds ([`crate::ApiConfig::series_cache_bytes`]); when
//! full, the least recently used answers go first.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::http::HeaderValue;
use bytes::Bytes;

use crate::views::Hex32;

/// Counters in the table (a power of two).
const SLOTS: usize = 1 << 14;
const DAY_S: u64 = 86_400;

/// Change counters per device-day and region-day, shared by the read model (which bumps them
/// after each committed change) and the API (which reads them to validate cached answers).
#[derive(Debug)]
pub struct ProductionChanges {
    slots: Box<[AtomicU64]>,
}

impl Default for ProductionChanges {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser: every input bit moves every output bit.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn device_seed(device: &[u8; 32]) -> u64 {
    device.chunks_exact(8).fold(0u64, |acc, c| {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        mix(acc ^ u64::from_le_bytes(w))
    })
}

fn region_seed(region: &str) -> u64 {
    // FNV-1a, then a distinct tag so that regions and devices spread apart.
    let h = region.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(h ^ 0x5245_4749_4f4e)
}

impl ProductionChanges {
    fn slot(&self, seed: u64, day: u64) -> &AtomicU64 {
        static SPARE: AtomicU64 = AtomicU64::new(0);
        let i = (mix(seed ^ day.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize) & (SLOTS - 1);
        // `i < SLOTS == slots.len()`: the spare is never used.
        self.slots.get(i).unwrap_or(&SPARE)
    }

    /// Records that the device's data for the UTC day holding `t` (Unix seconds) changed. Call
    /// it after the change is committed (readable).
    pub fn touch_device(&self, device: &[u8; 32], t: u64) {
        self.slot(device_seed(device), t / DAY_S)
            .fetch_add(1, Ordering::AcqRel);
    }

    /// Records that the region's data for the UTC day holding `t` changed (after the commit).
    pub fn touch_region(&self, region: &str, t: u64) {
        self.slot(region_seed(region), t / DAY_S)
            .fetch_add(1, Ordering::AcqRel);
    }

    fn stamp(&self, seed: u64, from: u64, to: u64) -> u64 {
        if to <= from {
            return 0;
        }
        let (first, last) = (from / DAY_S, (to - 1) / DAY_S);
        (first..=last).fold(0u64, |acc, day| {
            acc.wrapping_add(self.slot(seed, day).load(Ordering::Acquire))
        })
    }

    /// The sum of the device's counters over the days meeting `[from, to)`: unchanged as long
    /// as nothing the device answers for that range changed.
    pub fn device_stamp(&self, device: &[u8; 32], from: u64, to: u64) -> u64 {
        self.stamp(device_seed(device), from, to)
    }

    /// [`ProductionChanges::device_stamp`] for a region.
    pub fn region_stamp(&self, region: &str, from: u64, to: u64) -> u64 {
        self.stamp(region_seed(region), from, to)
    }
}

/// What a cached answer is for: the subject and every query value the body depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) subject: Subject,
    /// The query's `from` (echoed in the body).
    pub(crate) from: u64,
    /// Where this page starts (`from`, or the cursor's interval).
    pub(crate) start: u64,
    pub(crate) to: u64,
    pub(crate) step: u64,
    pub(crate) limit: usize,
}

/// A series' subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    Device(Hex32),
    Region(String),
}

/// An encoded answer: the JSON, its gzip form and its entity tag.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) json: Bytes,
    pub(crate) gzip: Option<Bytes>,
    pub(crate) etag: HeaderValue,
}

impl Encoded {
    /// Encodes `json` once: gzip (when it is worth it) and a strong entity tag of the JSON.
    pub(crate) fn new(json: Vec<u8>) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        json.hash(&mut h);
        let etag = HeaderValue::from_str(&format!("\"{:016x}-{:x}\"", h.finish(), json.len()))
            .unwrap_or_else(|_| HeaderValue::from_static("\"0\""));
        let gzip = (json.len() > 256).then(|| gzip(&json)).flatten();
        Self {
            json: Bytes::from(json),
            gzip,
            etag,
        }
    }

    fn bytes(&self) -> usize {
        self.json.len() + self.gzip.as_ref().map_or(0, Bytes::len) + 64
    }
}

fn gzip(data: &[u8]) -> Option<Bytes> {
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 8),
        flate2::Compression::default(),
    );
    e.write_all(data).ok()?;
    e.finish().ok().map(Bytes::from)
}

struct Entry {
    stamp: u64,
    used: AtomicU64,
    encoded: Arc<Encoded>,
}

#[derive(Default)]
struct Table {
    map: HashMap<SeriesKey, Entry>,
    bytes: usize,
}

/// Bounded cache of encoded series answers.
pub(crate) struct SeriesCache {
    max_bytes: usize,
    clock: AtomicU64,
    table: Mutex<Table>,
}

impl std::fmt::Debug for SeriesCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesCache")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl SeriesCache {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            clock: AtomicU64::new(0),
            table: Mutex::new(Table::default()),
        }
    }

    /// The answer cached for `key` if it was built at `stamp`.
    pub(crate) fn get(&self, key: &SeriesKey, stamp: u64) -> Option<Arc<Encoded>> {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        let e = t.map.get(key)?;
        if e.stamp != stamp {
            return None;
        }
        e.used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        Some(e.encoded.clone())
    }

    /// Keeps `encoded` for `key`, built from data read after `stamp` was taken. Answers larger
    /// than an eighth of the budget are not kept.
    pub(crate) fn put(&self, key: SeriesKey, stamp: u64, encoded: Arc<Encoded>) {
        let size = encoded.bytes();
        if size > self.max_bytes / 8 {
            return;
        }
        let used = AtomicU64::new(self.clock.fetch_add(1, Ordering::Relaxed));
        let mut t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = t.map.insert(
            key,
            Entry {
                stamp,
                used,
                encoded,
            },
        ) {
            t.bytes = t.bytes.saturating_sub(old.encoded.bytes());
        }
        t.bytes = t.bytes.saturating_add(size);
        if t.bytes > self.max_bytes {
            // Down to 3/4 of the budget, least recently used first (amortises the sort).
            let mut by_use: Vec<(u64, SeriesKey)> = t
                .map
                .iter()
                .map(|(k, e)| (e.used.load(Ordering::Relaxed), k.clone()))
                .collect();
            by_use.sort_unstable_by_key(|(u, _)| *u);
            let target = self.max_bytes / 4 * 3;
            for (_, k) in by_use {
                if t.bytes <= target {
                    break;
                }
                if let Some(e) = t.map.remove(&k) {
                    t.bytes = t.bytes.saturating_sub(e.encoded.bytes());
                }
            }
        }
    }

    /// (answers, bytes) held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> (usize, usize) {
        let t = self.table.lock().unwrap_or_else(|e| e.into_inner());
        (t.map.len(), t.bytes)
    }
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `*` with a non-zero quality).
pub(crate) fn accepts_gzip(value: Option<&HeaderValue>) -> bool {
    let Some(s) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut gzip = None;
    let mut star = None;
    for item in s.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q > 0.0);
        } else if name == "*" {
            star = Some(q > 0.0);
        }
    }
    gzip.or(star).unwrap_or(false)
}

/// Whether `If-None-Match` names `etag` (or is `*`).
pub(crate) fn not_modified(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(s) = if_none_match.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let tag = etag.as_bytes();
    s.split(',').map(str::trim).any(|t| {
        t == "*" || t.as_bytes() == tag || t.strip_prefix("W/").map(str::as_bytes) == Some(tag)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8, start: u64) -> SeriesKey {
        SeriesKey {
            subject: Subject::Device(Hex32([n; 32])),
            from: 0,
            start,
            to: DAY_S,
            step: 300,
            limit: 288,
        }
    }

    #[test]
    fn a_change_to_a_covered_day_invalidates() {
        let c = ProductionChanges::default();
        let d = [7u8; 32];
        let s0 = c.device_stamp(&d, DAY_S, 2 * DAY_S);
        c.touch_device(&d, 3 * DAY_S + 5);
        // Another day of the same device: only a collision could change it.
        let other = c.device_stamp(&d, DAY_S, 2 * DAY_S);
        c.touch_device(&d, DAY_S + 600);
        let s1 = c.device_stamp(&d, DAY_S, 2 * DAY_S);
        assert_ne!(s1, other, "a change inside the range moves the stamp");
        assert!(s1 > s0);
        // A range over several days sees a change to any of them.
        let w0 = c.device_stamp(&d, 0, 10 * DAY_S);
        c.touch_device(&d, 9 * DAY_S + 1);
        assert_ne!(c.device_stamp(&d, 0, 10 * DAY_S), w0);
        // The end is exclusive: a change on the day starting at `to` is outside.
        let r0 = c.region_stamp("DE-BY", 0, DAY_S);
        c.touch_region("DE-BY", DAY_S);
        c.touch_region("FR", 0);
        let r1 = c.region_stamp("DE-BY", 0, DAY_S);
        c.touch_region("DE-BY", DAY_S - 1);
        let r2 = c.region_stamp("DE-BY", 0, DAY_S);
        assert_ne!(r2, r1);
        assert!(r1 >= r0);
    }

    #[test]
    fn served_only_at_its_stamp_and_bounded_by_bytes() {
        let cache = SeriesCache::new(64 * 1024);
        let enc = Arc::new(Encoded::new(vec![b'x'; 1000]));
        cache.put(key(1, 0), 5, enc.clone());
        assert!(cache.get(&key(1, 0), 5).is_some());
        assert!(cache.get(&key(1, 0), 6).is_none(), "stale stamp");
        assert!(cache.get(&key(1, 300), 5).is_none(), "another page");
        for n in 0..200u8 {
            cache.put(key(n, 0), 1, enc.clone());
            let (_, bytes) = cache.held();
            assert!(bytes <= 64 * 1024, "{bytes}");
        }
        // The most recently used survive eviction.
        assert!(cache.get(&key(199, 0), 1).is_some());
        assert!(cache.get(&key(0, 0), 1).is_none());
        // An answer over an eighth of the budget is not kept.
        let big = Arc::new(Encoded::new(vec![b'y'; 10_000]));
        cache.put(key(250, 0), 1, big);
        assert!(cache.get(&key(250, 0), 1).is_none());
    }

    #[test]
    fn encoding_and_conditional_headers() {
        let json = br#"{"points":[1,2,3]}"#.repeat(40);
        let e = Encoded::new(json.clone());
        let gz = e.gzip.clone().unwrap_or_default();
        let mut back = Vec::new();
        let mut d = flate2::read::GzDecoder::new(&gz[..]);
        assert!(std::io::Read::read_to_end(&mut d, &mut back).is_ok());
        assert_eq!(back, json);
        assert_eq!(
            e.etag,
            Encoded::new(json.clone()).etag,
            "same body, same tag"
        );
        assert_ne!(e.etag, Encoded::new(b"{}".repeat(300)).etag);

        let h = |s: &'static str| HeaderValue::from_static(s);
        assert!(accepts_gzip(Some(&h("gzip, deflate, br"))));
        assert!(accepts_gzip(Some(&h("br;q=1.0, gzip;q=0.8"))));
        assert!(accepts_gzip(Some(&h("*"))));
        assert!(!accepts_gzip(Some(&h("gzip;q=0"))));
        assert!(!accepts_gzip(Some(&h("identity"))));
        assert!(!accepts_gzip(Some(&h("*, gzip;q=0"))));
        assert!(!accepts_gzip(None));

        let tag = e.etag.clone();
        let weak = HeaderValue::from_str(&format!("W/{}", tag.to_str().unwrap_or(""))).ok();
        assert!(not_modified(Some(&tag), &tag));
        assert!(not_modified(weak.as_ref(), &tag));
        assert!(not_modified(Some(&h("*")), &tag));
        assert!(not_modified(
            HeaderValue::from_str(&format!("\"nope\", {}", tag.to_str().unwrap_or("")))
                .ok()
                .as_ref(),
            &tag
        ));
        assert!(!not_modified(Some(&h("\"nope\"")), &tag));
        assert!(!not_modified(None, &tag));
    }
}
