//! The durable, bounded offline queue behind the publisher.
//!
//! A device signs a reading, appends it here, and only then hands it to the network, so a
//! reading that any broker or validator has seen is on disk first. The queue directory holds
//! two files:
//!
//! - `queue.log`: an 8-byte header (`GTQLOG\0\x01`) and then records, each
//!   `len: u32 BE ‖ crc32(frame): u32 BE ‖ frame`, where `frame` is a signed reading's wire
//!   frame (PROTOCOL.md). Records hold contiguous sequence numbers. Every append is followed by
//!   `fdatasync` before it returns.
//! - `cursor`: `"GTQC" ‖ 1 ‖ 0 0 0 ‖ acked_next: u64 BE ‖ next_seq: u64 BE ‖ crc32: u32 BE`
//!   (28 bytes; the CRC covers the 24 bytes before it), replaced atomically (write a temporary
//!   file, fsync, rename, fsync the directory). `acked_next` is the first sequence number not yet
//!   acknowledged: every reading below it was PUBACKed. `next_seq` carries the sequence counter
//!   across compactions that empty the log.
//!
//! # Crash guarantees (process crash or power loss, with an honest `fsync`)
//!
//! - **Sequence numbers never repeat.** A sequence number becomes durable with its record
//!   (`fdatasync` before [`OfflineQueue::append`] returns, so before anyone sees the reading).
//!   On open the counter resumes at `max(cursor.next_seq, last record + 1)`. A record torn by a
//!   crash was never returned to anyone, so reusing its number is safe. The cursor is rewritten
//!   (with `next_seq`) before the log is ever truncated or compacted.
//! - **No gaps.** The counter advances only when a record is durable, so a crash cannot skip a
//!   number.
//! - **Torn tails are discarded.** On open the log is scanned; the first incomplete record, bad
//!   CRC or undecodable frame ends it. If what follows fits in one record it is a torn append and
//!   is cut off (logged at `warn`). If more follows, the damage is not a crash artefact, and
//!   [`OfflineQueue::open`] refuses the queue rather than guess the counter.
//! - **Unacknowledged readings survive.** Everything at or above `acked_next` stays in the log
//!   until acknowledged; open fails loudly if the log does not cover `acked_next..next_seq`.
//! - **Acknowledged readings are not re-sent after a restart**, except those acknowledged in the
//!   instant between the PUBACK arriving and the cursor's fsync; validators drop those as
//!   byte-identical duplicates.
//!
//! # Bounds
//!
//! At most `max_entries` unacknowledged readings. When full, [`OfflineQueue::append`] fails with
//! [`Error::QueueFull`] and assigns no sequence number: the *newest* reading is refused rather
//! than the oldest dropped, because dropping a signed reading would leave a gap validators can
//! never fill, while the caller can fold the refused interval into a later reading (an energy
//! meter's cumulative register loses nothing). Besides those, the last `retain_acked`
//! acknowledged readings are kept for resend requests. Acknowledged readings beyond that are
//! garbage; the log is compacted (rewritten with only what is kept) once the garbage outnumbers
//! what is kept (and at least 64 records), or simply truncated when nothing needs keeping. The
//! log thus holds fewer than `2 × (max_entries + retain_acked) + 64` records, and memory holds
//! the kept frames (at most `max_entries + retain_acked`, each at most
//! [`MAX_FRAME_LEN`] bytes).
//!
//! One writer at a time may own a queue directory: two would reuse sequence numbers. Within a
//! process [`OfflineQueue::open`] enforces this (a second open of the same directory fails until
//! the first queue is dropped); across processes it is the deployment's job (one device
//! agent per queue directory).

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::keys::sync_dir;
use crate::signing::{SignedReading, MAX_FRAME_LEN};

const LOG_FILE: &str = "queue.log";
const LOG_TMP: &str = "queue.log.tmp";
const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const LOG_HEADER: &[u8; 8] = b"GTQLOG\0\x01";
const RECORD_HEADER: usize = 8;
const MAX_RECORD: usize = RECORD_HEADER + MAX_FRAME_LEN;
const CURSOR_MAGIC: &[u8; 4] = b"GTQC";
const CURSOR_LEN: usize = 28;
const MIN_COMPACTION: u64 = 64;

/// Queue directories open in this process (canonical paths).
static OPEN_DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// Marks a directory as open in this process for as long as it lives.
#[derive(Debug)]
struct DirClaim(PathBuf);

impl DirClaim {
    fn take(dir: &Path) -> Result<Self> {
        let canonical =
            fs::canonicalize(dir).map_err(|e| qerr(dir, format!("cannot resolve: {e}")))?;
        let mut open = OPEN_DIRS.lock().unwrap_or_else(|p| p.into_inner());
        if !open.insert(canonical.clone()) {
            return Err(qerr(
                dir,
                "already open in this process; shut the other publisher or queue down first",
            ));
        }
        Ok(Self(canonical))
    }
}

impl Drop for DirClaim {
    fn drop(&mut self) {
        OPEN_DIRS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// Where and how big the offline queue is.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    /// Directory holding the queue's files; created if missing. One process per directory.
    pub dir: PathBuf,
    /// Most unacknowledged readings held; appending beyond it fails with
    /// [`Error::QueueFull`]. Default 10 000 (about 35 days of 5-minute readings).
    pub max_entries: NonZeroUsize,
    /// How many of the most recently acknowledged readings are kept for resend requests.
    /// Default 1 024.
    pub retain_acked: usize,
}

impl QueueConfig {
    /// Defaults for a queue in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            max_entries: NonZeroUsize::new(10_000).unwrap_or(NonZeroUsize::MIN),
            retain_acked: 1_024,
        }
    }
}

/// A durable queue of signed reading frames with a persisted acknowledgement cursor and
/// sequence counter. See the module documentation for the format and guarantees.
#[derive(Debug)]
pub struct OfflineQueue {
    config: QueueConfig,
    log: File,
    log_len: u64,
    /// Sequence number of the first record in the log file (`next_seq` when it is empty).
    log_first: u64,
    /// Frames of `mem_first..next_seq`.
    frames: VecDeque<Vec<u8>>,
    mem_first: u64,
    acked_next: u64,
    next_seq: u64,
    /// Set when a failed write could not be rolled back; every later append fails.
    poisoned: bool,
    _claim: DirClaim,
}

fn qerr(path: &Path, what: impl core::fmt::Display) -> Error {
    Error::Queue(format!("{}: {what}", path.display()))
}

impl OfflineQueue {
    /// Opens (or creates) the queue in `config.dir`, discarding a torn tail record.
    pub fn open(config: QueueConfig) -> Result<Self> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(|e| qerr(&dir, format!("cannot create: {e}")))?;
        let claim = DirClaim::take(&dir)?;
        for tmp in [LOG_TMP, CURSOR_TMP] {
            let p = dir.join(tmp);
            if p.exists() {
                fs::remove_file(&p).map_err(|e| qerr(&p, format!("cannot remove: {e}")))?;
            }
        }
        let (cursor_acked, cursor_next) = read_cursor(&dir.join(CURSOR_FILE))?;

        let log_path = dir.join(LOG_FILE);
        let mut log = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(|e| qerr(&log_path, format!("cannot open: {e}")))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes)
            .map_err(|e| qerr(&log_path, format!("cannot read: {e}")))?;

        if bytes.len() < LOG_HEADER.len() {
            if !LOG_HEADER.starts_with(&bytes) {
                return Err(qerr(&log_path, "not a groundtruth queue log"));
            }
            // New, or its creation was interrupted: (re)write the header.
            log.set_len(0)
                .and_then(|()| log.seek(SeekFrom::Start(0)))
                .and_then(|_| log.write_all(LOG_HEADER))
                .and_then(|()| log.sync_all())
                .map_err(|e| qerr(&log_path, format!("cannot initialise: {e}")))?;
            sync_dir(&dir).map_err(|e| qerr(&dir, format!("cannot sync: {e}")))?;
            bytes = LOG_HEADER.to_vec();
        } else if &bytes[..LOG_HEADER.len()] != LOG_HEADER {
            return Err(qerr(&log_path, "not a groundtruth queue log (bad header)"));
        }

        let scan = scan_log(&bytes, &log_path)?;
        if scan.end < bytes.len() {
            tracing::warn!(
                target: "device_sdk::queue",
                path = %log_path.display(),
                offset = scan.end,
                discarded_bytes = bytes.len() - scan.end,
                "discarding torn record at the end of the queue log"
            );
            log.set_len(scan.end as u64)
                .and_then(|()| log.sync_all())
                .map_err(|e| qerr(&log_path, format!("cannot truncate torn tail: {e}")))?;
        }

        let (log_first, log_end) = match (scan.records.first(), scan.records.last()) {
            (Some(first), Some(last)) => (first.0, last.0 + 1),
            _ => (cursor_next, cursor_next),
        };
        let next_seq = cursor_next.max(log_end);
        let acked_next = cursor_acked;
        if acked_next > next_seq {
            return Err(qerr(
                &dir,
                format!(
                    "cursor acknowledges up to {acked_next} but only {next_seq} readings exist"
                ),
            ));
        }
        if acked_next < next_seq
            && (scan.records.is_empty() || log_first > acked_next || log_end != next_seq)
        {
            return Err(qerr(
                &log_path,
                format!(
                    "log does not hold the unacknowledged readings {acked_next}..{next_seq}; refusing to continue"
                ),
            ));
        }
        let log_first = if scan.records.is_empty() {
            next_seq
        } else {
            log_first
        };
        let mem_first = log_first.max(acked_next.saturating_sub(config.retain_acked as u64));
        let frames = scan
            .records
            .into_iter()
            .filter(|(seq, _)| *seq >= mem_first)
            .map(|(_, range)| bytes[range].to_vec())
            .collect();

        let mut queue = Self {
            config,
            log,
            log_len: scan.end as u64,
            log_first,
            frames,
            mem_first,
            acked_next,
            next_seq,
            poisoned: false,
            _claim: claim,
        };
        tracing::debug!(
            target: "device_sdk::queue",
            next_seq, acked_next, pending = queue.pending_len(),
            "offline queue opened"
        );
        queue.maybe_compact()?;
        Ok(queue)
    }

    /// The sequence number the next appended reading gets.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The first sequence number not yet acknowledged; every reading below it was.
    pub fn acked_next(&self) -> u64 {
        self.acked_next
    }

    /// Number of readings waiting for acknowledgement.
    pub fn pending_len(&self) -> usize {
        usize::try_from(self.next_seq - self.acked_next).unwrap_or(usize::MAX)
    }

    /// The oldest sequence number whose frame is still held (acknowledged and retained, or
    /// pending); equal to [`next_seq`](Self::next_seq) when nothing is held.
    pub fn oldest_held(&self) -> u64 {
        self.mem_first
    }

    /// The wire frame of reading `seq`, if it is pending or retained.
    pub fn frame(&self, seq: u64) -> Option<&[u8]> {
        let idx = usize::try_from(seq.checked_sub(self.mem_first)?).ok()?;
        self.frames.get(idx).map(Vec::as_slice)
    }

    /// The frames waiting for acknowledgement, oldest first, with their sequence numbers.
    pub fn pending(&self) -> impl Iterator<Item = (u64, &[u8])> {
        (self.acked_next..self.next_seq).filter_map(move |seq| self.frame(seq).map(|f| (seq, f)))
    }

    /// Appends the reading `make` signs for the next sequence number, durably (`fdatasync`)
    /// before returning it. Fails with [`Error::QueueFull`] (assigning no number) when
    /// `max_entries` readings are unacknowledged.
    pub fn append(&mut self, make: impl FnOnce(u64) -> SignedReading) -> Result<SignedReading> {
        if self.poisoned {
            return Err(qerr(
                &self.config.dir,
                "an earlier write failed and could not be undone; reopen the queue",
            ));
        }
        let pending = self.pending_len();
        if pending >= self.config.max_entries.get() {
            return Err(Error::QueueFull(pending));
        }
        let seq = self.next_seq;
        let signed = make(seq);
        if signed.reading.seq != seq {
            return Err(Error::InvalidField {
                field: "seq",
                reason: "must be the sequence number the queue assigned",
            });
        }
        let frame = signed.to_frame();
        let record = encode_record(&frame);
        let path = self.config.dir.join(LOG_FILE);
        let written = self
            .log
            .seek(SeekFrom::Start(self.log_len))
            .and_then(|_| self.log.write_all(&record))
            .and_then(|()| self.log.sync_data());
        if let Err(e) = written {
            // Undo a partial record so later appends do not land behind garbage.
            if self
                .log
                .set_len(self.log_len)
                .and_then(|()| self.log.sync_data())
                .is_err()
            {
                self.poisoned = true;
            }
            return Err(qerr(&path, format!("cannot append: {e}")));
        }
        self.log_len += record.len() as u64;
        self.frames.push_back(frame);
        self.next_seq += 1;
        Ok(signed)
    }

    /// Records that every reading below `acked_next` was acknowledged: persists the cursor
    /// (fsync), drops frames no longer retained, and compacts the log when due. Values at or
    /// below the current cursor are ignored.
    pub fn ack_until(&mut self, acked_next: u64) -> Result<()> {
        if acked_next <= self.acked_next {
            return Ok(());
        }
        if acked_next > self.next_seq {
            return Err(Error::InvalidField {
                field: "acked_next",
                reason: "beyond the last appended reading",
            });
        }
        write_cursor(&self.config.dir, acked_next, self.next_seq)?;
        self.acked_next = acked_next;
        let keep_from = acked_next
            .saturating_sub(self.config.retain_acked as u64)
            .max(self.mem_first);
        while self.mem_first < keep_from {
            self.frames.pop_front();
            self.mem_first += 1;
        }
        self.maybe_compact()
    }

    /// Compacts when the log's garbage (records no longer held) is worth removing.
    fn maybe_compact(&mut self) -> Result<()> {
        let garbage = self.mem_first - self.log_first;
        if garbage == 0 {
            return Ok(());
        }
        let path = self.config.dir.join(LOG_FILE);
        if self.frames.is_empty() {
            // Everything is acknowledged and nothing is retained: the cursor already carries
            // `next_seq`, so the log can simply be emptied.
            write_cursor(&self.config.dir, self.acked_next, self.next_seq)?;
            self.log
                .set_len(LOG_HEADER.len() as u64)
                .and_then(|()| self.log.sync_all())
                .map_err(|e| qerr(&path, format!("cannot truncate: {e}")))?;
            self.log_len = LOG_HEADER.len() as u64;
            self.log_first = self.next_seq;
            self.mem_first = self.next_seq;
            return Ok(());
        }
        if garbage < MIN_COMPACTION.max(self.frames.len() as u64) {
            return Ok(());
        }
        // Rewrite the held records into a new log and swap it in atomically. The cursor on disk
        // already covers everything the rewrite drops.
        let tmp = self.config.dir.join(LOG_TMP);
        let mut out = Vec::with_capacity(
            LOG_HEADER.len()
                + self
                    .frames
                    .iter()
                    .map(|f| f.len() + RECORD_HEADER)
                    .sum::<usize>(),
        );
        out.extend_from_slice(LOG_HEADER);
        for f in &self.frames {
            out.extend_from_slice(&encode_record(f));
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| qerr(&tmp, format!("cannot create: {e}")))?;
        file.write_all(&out)
            .and_then(|()| file.sync_all())
            .map_err(|e| qerr(&tmp, format!("cannot write: {e}")))?;
        fs::rename(&tmp, &path).map_err(|e| qerr(&path, format!("cannot replace: {e}")))?;
        sync_dir(&self.config.dir)
            .map_err(|e| qerr(&self.config.dir, format!("cannot sync: {e}")))?;
        tracing::debug!(
            target: "device_sdk::queue",
            dropped = garbage, kept = self.frames.len(),
            "compacted the queue log"
        );
        self.log = file;
        self.log_len = out.len() as u64;
        self.log_first = self.mem_first;
        Ok(())
    }
}

fn encode_record(frame: &[u8]) -> Vec<u8> {
    let mut record = Vec::with_capacity(RECORD_HEADER + frame.len());
    // Frames are at most MAX_FRAME_LEN bytes, far below u32::MAX.
    record.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    record.extend_from_slice(&crc32fast::hash(frame).to_be_bytes());
    record.extend_from_slice(frame);
    record
}

struct Scan {
    /// (seq, byte range of the frame) of each valid record.
    records: Vec<(u64, core::ops::Range<usize>)>,
    /// Offset just past the last valid record.
    end: usize,
}

fn scan_log(bytes: &[u8], path: &Path) -> Result<Scan> {
    let mut records: Vec<(u64, core::ops::Range<usize>)> = Vec::new();
    let mut at = LOG_HEADER.len();
    loop {
        let rest = bytes.get(at..).unwrap_or_default();
        if rest.is_empty() {
            break;
        }
        match parse_record(rest) {
            Some((len, crc_ok)) if crc_ok => {
                let frame_range = at + RECORD_HEADER..at + RECORD_HEADER + len;
                let frame = bytes.get(frame_range.clone()).unwrap_or_default();
                // A record with a good CRC was written whole: if it does not decode or breaks
                // the sequence, the log is damaged, not torn.
                let signed = SignedReading::decode_frame(frame).map_err(|e| {
                    qerr(path, format!("record at offset {at} does not decode: {e}"))
                })?;
                let seq = signed.reading.seq;
                if let Some((prev, _)) = records.last() {
                    if Some(seq) != prev.checked_add(1) {
                        return Err(qerr(
                            path,
                            format!("record at offset {at} has seq {seq} after {prev}"),
                        ));
                    }
                }
                records.push((seq, frame_range));
                at += RECORD_HEADER + len;
            }
            _ => {
                if rest.len() > MAX_RECORD {
                    return Err(qerr(
                        path,
                        format!(
                            "damaged record at offset {at} with {} bytes after it; this is not a torn append, refusing to guess the sequence counter",
                            rest.len()
                        ),
                    ));
                }
                break;
            }
        }
    }
    Ok(Scan { records, end: at })
}

/// `Some((frame length, crc matches))` when a whole record of plausible length is present.
fn parse_record(rest: &[u8]) -> Option<(usize, bool)> {
    let len = u32::from_be_bytes(rest.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_be_bytes(rest.get(4..8)?.try_into().ok()?);
    if len > MAX_FRAME_LEN {
        return None;
    }
    let frame = rest.get(RECORD_HEADER..RECORD_HEADER + len)?;
    Some((len, crc32fast::hash(frame) == crc))
}

fn read_cursor(path: &Path) -> Result<(u64, u64)> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(qerr(path, format!("cannot read: {e}"))),
    };
    // The cursor is replaced by rename, so it is never torn: any damage is real corruption.
    let ok = bytes.len() == CURSOR_LEN
        && &bytes[0..4] == CURSOR_MAGIC
        && bytes[4..8] == [1, 0, 0, 0]
        && crc32fast::hash(&bytes[..24]).to_be_bytes() == bytes[24..28];
    if !ok {
        return Err(qerr(path, "damaged cursor file"));
    }
    let word = |r: core::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[r]);
        u64::from_be_bytes(b)
    };
    Ok((word(8..16), word(16..24)))
}

fn write_cursor(dir: &Path, acked_next: u64, next_seq: u64) -> Result<()> {
    let mut bytes = Vec::with_capacity(CURSOR_LEN);
    bytes.extend_from_slice(CURSOR_MAGIC);
    bytes.extend_from_slice(&[1, 0, 0, 0]);
    bytes.extend_from_slice(&acked_next.to_be_bytes());
    bytes.extend_from_slice(&next_seq.to_be_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_be_bytes());
    let tmp = dir.join(CURSOR_TMP);
    let path = dir.join(CURSOR_FILE);
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        sync_dir(dir)
    };
    write().map_err(|e| qerr(&path, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DeviceKey, EnergyReading, Reading, ReadingBody};

    fn key() -> DeviceKey {
        DeviceKey::from_seed(&[4u8; 32])
    }

    fn signer(key: &DeviceKey) -> impl Fn(u64) -> SignedReading + '_ {
        move |seq| {
            key.sign(Reading {
                device: key.device_id(),
                seq,
                timestamp_ms: 1_700_000_000_000 + seq,
                body: ReadingBody::Energy(EnergyReading {
                    interval_start_s: 1_700_000_000 + 300 * seq,
                    interval_len_s: 300,
                    energy_wh: seq,
                    register_wh: seq * 10,
                }),
            })
        }
    }

    fn cfg(dir: &Path, max: usize, retain: usize) -> QueueConfig {
        QueueConfig {
            dir: dir.to_path_buf(),
            max_entries: NonZeroUsize::new(max).expect("nonzero"),
            retain_acked: retain,
        }
    }

    #[test]
    fn appends_survive_reopen_and_seq_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        {
            let mut q = OfflineQueue::open(cfg(dir.path(), 100, 4)).expect("open");
            for _ in 0..5 {
                q.append(&sign).expect("append");
            }
            q.ack_until(2).expect("ack");
        }
        let mut q = OfflineQueue::open(cfg(dir.path(), 100, 4)).expect("reopen");
        assert_eq!(q.next_seq(), 5);
        assert_eq!(q.acked_next(), 2);
        let pending: Vec<u64> = q.pending().map(|(s, _)| s).collect();
        assert_eq!(pending, vec![2, 3, 4]);
        let f = q.frame(3).expect("frame");
        assert_eq!(
            SignedReading::decode_frame(f).expect("decode").reading.seq,
            3
        );
        assert_eq!(q.append(&sign).expect("append").reading.seq, 5);
    }

    #[test]
    fn full_queue_refuses_without_consuming_a_seq() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        let mut q = OfflineQueue::open(cfg(dir.path(), 3, 0)).expect("open");
        for _ in 0..3 {
            q.append(&sign).expect("append");
        }
        assert_eq!(q.append(&sign).err(), Some(Error::QueueFull(3)));
        assert_eq!(q.next_seq(), 3);
        q.ack_until(1).expect("ack");
        assert_eq!(q.append(&sign).expect("append").reading.seq, 3);
    }

    #[test]
    fn a_directory_is_opened_once_per_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = OfflineQueue::open(cfg(dir.path(), 3, 0)).expect("open");
        let err = OfflineQueue::open(cfg(&dir.path().join("."), 3, 0)).expect_err("second open");
        assert!(err.to_string().contains("already open"), "{err}");
        drop(q);
        OfflineQueue::open(cfg(dir.path(), 3, 0)).expect("open after drop");
    }

    #[test]
    fn wrong_seq_is_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        let mut q = OfflineQueue::open(cfg(dir.path(), 3, 0)).expect("open");
        assert!(q.append(|s| sign(s + 1)).is_err());
        assert_eq!(q.next_seq(), 0);
    }

    #[test]
    fn torn_tail_is_discarded_and_seq_reused_only_for_the_torn_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        {
            let mut q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("open");
            for _ in 0..3 {
                q.append(&sign).expect("append");
            }
        }
        let log = dir.path().join(LOG_FILE);
        let len = fs::metadata(&log).expect("meta").len();
        // Cut the last record in half, as a crash during its write would.
        let f = OpenOptions::new().write(true).open(&log).expect("open");
        f.set_len(len - 40).expect("truncate");
        drop(f);
        let q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("reopen");
        assert_eq!(q.next_seq(), 2);
        assert_eq!(q.pending().count(), 2);
        // Garbage appended after a good record (a torn header) is also cut.
        drop(q);
        let mut f = OpenOptions::new().append(true).open(&log).expect("open");
        f.write_all(&[0xff, 0xff, 0, 1, 2]).expect("write");
        drop(f);
        let q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("reopen");
        assert_eq!(q.next_seq(), 2);
    }

    #[test]
    fn damage_in_the_middle_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        {
            let mut q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("open");
            for _ in 0..5 {
                q.append(&sign).expect("append");
            }
        }
        let log = dir.path().join(LOG_FILE);
        let mut bytes = fs::read(&log).expect("read");
        bytes[LOG_HEADER.len() + RECORD_HEADER + 3] ^= 1;
        fs::write(&log, &bytes).expect("write");
        let err = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect_err("must refuse");
        assert!(err.to_string().contains("not a torn append"), "{err}");
    }

    #[test]
    fn compaction_keeps_retained_and_pending() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        let mut q = OfflineQueue::open(cfg(dir.path(), 1000, 8)).expect("open");
        for _ in 0..200 {
            q.append(&sign).expect("append");
        }
        let before = fs::metadata(dir.path().join(LOG_FILE)).expect("m").len();
        q.ack_until(190).expect("ack");
        let after = fs::metadata(dir.path().join(LOG_FILE)).expect("m").len();
        assert!(after < before / 5, "{before} -> {after}");
        assert_eq!(q.oldest_held(), 182);
        assert!(q.frame(181).is_none());
        assert!(q.frame(182).is_some());
        drop(q);
        let q = OfflineQueue::open(cfg(dir.path(), 1000, 8)).expect("reopen");
        assert_eq!(q.next_seq(), 200);
        assert_eq!(q.acked_next(), 190);
        assert_eq!(q.oldest_held(), 182);
        assert_eq!(
            q.pending().map(|(s, _)| s).collect::<Vec<_>>(),
            (190..200).collect::<Vec<_>>()
        );
    }

    #[test]
    fn everything_acked_without_retention_empties_the_log_but_keeps_the_counter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        {
            let mut q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("open");
            for _ in 0..7 {
                q.append(&sign).expect("append");
            }
            q.ack_until(7).expect("ack");
            let len = fs::metadata(dir.path().join(LOG_FILE)).expect("m").len();
            assert_eq!(len, LOG_HEADER.len() as u64);
        }
        let mut q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("reopen");
        assert_eq!(q.next_seq(), 7);
        assert_eq!(q.append(&sign).expect("append").reading.seq, 7);
    }

    #[test]
    fn missing_unacked_records_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key();
        let sign = signer(&k);
        {
            let mut q = OfflineQueue::open(cfg(dir.path(), 100, 0)).expect("open");
            for _ in 0..3 {
                q.append(&sign).expect("append");
            }
            q.ack_until(1).expect("ack");
        }
        fs::remove_file(dir.path().join(LOG_FILE)).expect("rm");
        assert!(OfflineQueue::open(cfg(dir.path(), 100, 0)).is_err());
    }
}
