//! Metered output (and the epoch batch proof): a sequence of readings from one or many devices,
//! each interval value in `[0, cap]` for its device, each device's register advancing by exactly
//! its interval values, each device's total the sum of its values, all bound to a Rescue-Prime
//! commitment computed inside the proof. See `PROOFS.md` for the constraints.

pub(crate) mod air;
#[cfg(feature = "prover")]
pub(crate) mod prover;
#[cfg(all(test, feature = "prover"))]
#[allow(clippy::unwrap_used)]
mod tests;

use winter_crypto::hashers::Rp64_256;
use winter_math::{fields::f64::BaseElement, FieldElement};

use crate::error::{ProofError, Result};
use crate::field::{digest_to_bytes, fe, Digest4};
use crate::rescue::{self, STATE_WIDTH};

/// Interval values and caps must be below `2^VALUE_BITS`.
pub const VALUE_BITS: u32 = 32;
/// Largest allowed cap.
pub const MAX_CAP: u64 = (1 << VALUE_BITS) - 1;
/// Largest committed interval value (any larger reading cannot be committed: it is over every cap).
pub const MAX_VALUE: u64 = MAX_CAP;
/// Largest number of readings in one proof (keeps every running sum far below the field modulus).
pub const MAX_READINGS: u64 = 1 << 24;
/// Registers must stay below this bound (start + total included).
pub const MAX_REGISTER: u64 = 1 << 62;
/// Largest number of devices in one proof.
pub const MAX_DEVICES: u64 = 1 << 20;
/// Base-8 digits used for the range check of `cap − value` (11 digits = 33 bits ≥ `VALUE_BITS`).
pub const DIGITS: usize = 11;
/// Device index is packed above the value in the hashed element: `e = v + 2^DEV_SHIFT · device`.
pub const DEV_SHIFT: u32 = 33;
/// Domain-separation tag of the commitment's initial capacity.
pub const DOMAIN_TAG: &[u8] = b"groundtruth/metered/v2";

/// The epoch a metered proof is about: its number and its time window `[start_s, end_s)`, Unix
/// seconds. Every reading's interval must lie inside the window.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub struct Epoch {
    /// Epoch number (from the ledger).
    pub number: u64,
    /// First second of the window.
    pub start_s: u64,
    /// First second after the window.
    pub end_s: u64,
}

impl Epoch {
    /// The smallest window holding every interval of `series` (for tools that have no ledger
    /// epoch at hand).
    pub fn covering(number: u64, series: &[DeviceSeries]) -> Self {
        let start_s = series
            .iter()
            .map(|s| s.first_interval_start)
            .min()
            .unwrap_or(0);
        let end_s = series
            .iter()
            .filter_map(|s| s.interval_end())
            .max()
            .unwrap_or(start_s);
        Self {
            number,
            start_s,
            end_s,
        }
    }
}

/// One device's readings for the period, as the prover sees them. Reading `j` (from 0) has
/// sequence number `first_seq + j`, interval `[first_interval_start + j·interval_len, +interval_len)`
/// and signed register (after the interval) `start_register + values[0] + … + values[j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeries {
    /// Device identity (its registered 32-byte id).
    pub id: [u8; 32],
    /// Largest value one interval may carry (registered capacity × interval length).
    pub cap: u64,
    /// The device's cumulative register before its first reading in this period.
    pub start_register: u64,
    /// Sequence number of the first reading.
    pub first_seq: u64,
    /// Interval start of the first reading, Unix seconds.
    pub first_interval_start: u64,
    /// Interval length of every reading, seconds (non-zero).
    pub interval_len: u32,
    /// Interval values, in sequence order.
    pub values: Vec<u64>,
}

impl DeviceSeries {
    /// End (exclusive) of the last interval, `None` on overflow.
    pub fn interval_end(&self) -> Option<u64> {
        let n = u64::try_from(self.values.len()).ok()?;
        n.checked_mul(u64::from(self.interval_len))?
            .checked_add(self.first_interval_start)
    }
}

/// The fields of one signed reading that a metered proof binds (device-sdk's `Reading` with an
/// energy body maps as `device = device.0`, `seq`, `interval_start_s`, `interval_len_s`,
/// `value = energy_wh`, `register = register_wh`; a kind without a signed register passes its
/// running total). Readings are given device after device in batch order, each device's in
/// sequence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingFields {
    /// Device id (public key).
    pub device: [u8; 32],
    /// Sequence number.
    pub seq: u64,
    /// Interval start, Unix seconds.
    pub interval_start_s: u64,
    /// Interval length, seconds.
    pub interval_len_s: u32,
    /// Interval value.
    pub value: u64,
    /// Cumulative register at the end of the interval.
    pub register: u64,
}

/// Groups signed reading fields into the prover's series, refusing anything the statement would
/// not describe: a sequence gap, an interval gap or overlap, a change of interval length, a
/// register that does not advance by exactly the value, a value above [`MAX_VALUE`], or a device
/// that reappears after another. `cap_of` gives each device's registered cap.
pub fn series_from_readings(
    readings: &[ReadingFields],
    mut cap_of: impl FnMut(&[u8; 32]) -> u64,
) -> Result<Vec<DeviceSeries>> {
    let mut out: Vec<DeviceSeries> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<ReadingFields> = None;
    for (i, r) in readings.iter().enumerate() {
        if r.value > MAX_VALUE {
            return Err(ProofError::ReadingMismatch {
                index: i,
                what: "value above 2^32 - 1",
            });
        }
        let continues = matches!(last, Some(p) if p.device == r.device);
        if continues {
            let (Some(p), Some(cur)) = (last, out.last_mut()) else {
                return Err(ProofError::InvalidInput("internal grouping"));
            };
            if p.seq.checked_add(1) != Some(r.seq) {
                return Err(ProofError::ReadingMismatch {
                    index: i,
                    what: "sequence number is not the previous one plus 1",
                });
            }
            if r.interval_len_s != p.interval_len_s {
                return Err(ProofError::ReadingMismatch {
                    index: i,
                    what: "interval length changed within a device",
                });
            }
            if p.interval_start_s.checked_add(u64::from(p.interval_len_s))
                != Some(r.interval_start_s)
            {
                return Err(ProofError::ReadingMismatch {
                    index: i,
                    what: "interval does not start where the previous one ended",
                });
            }
            if p.register.checked_add(r.value) != Some(r.register) {
                return Err(ProofError::ReadingMismatch {
                    index: i,
                    what: "register does not advance by the interval value",
                });
            }
            cur.values.push(r.value);
        } else {
            if !seen.insert(r.device) {
                return Err(ProofError::ReadingMismatch {
                    index: i,
                    what: "device reappears after another device",
                });
            }
            let start_register =
                r.register
                    .checked_sub(r.value)
                    .ok_or(ProofError::ReadingMismatch {
                        index: i,
                        what: "register below the interval value",
                    })?;
            out.push(DeviceSeries {
                id: r.device,
                cap: cap_of(&r.device),
                start_register,
                first_seq: r.seq,
                first_interval_start: r.interval_start_s,
                interval_len: r.interval_len_s,
                values: vec![r.value],
            });
        }
        last = Some(*r);
    }
    Ok(out)
}

/// Groups signed reading fields into runs, the way validators build an epoch's audit batch:
/// readings come device after device, each device's in ascending sequence order; a device's
/// readings continue one run while the sequence number, the interval, the interval length and
/// the register all continue, and start a new run of the same device otherwise (a missing or
/// rejected reading, a register reset). Refuses a value above [`MAX_VALUE`], a register below its
/// interval value, a device that reappears after another, and a run that does not start after
/// the previous run of its device (sequence number and interval). `cap_of` gives each device's
/// cap for an interval length.
pub fn runs_from_readings(
    readings: &[ReadingFields],
    mut cap_of: impl FnMut(&[u8; 32], u32) -> u64,
) -> Result<Vec<DeviceSeries>> {
    let mut out: Vec<DeviceSeries> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut last: Option<ReadingFields> = None;
    for (i, r) in readings.iter().enumerate() {
        let mismatch = |what| ProofError::ReadingMismatch { index: i, what };
        if r.value > MAX_VALUE {
            return Err(mismatch("value above 2^32 - 1"));
        }
        if r.interval_len_s == 0 {
            return Err(mismatch("interval length 0"));
        }
        let start_register = r
            .register
            .checked_sub(r.value)
            .ok_or(mismatch("register below the interval value"))?;
        let same_device = matches!(last, Some(p) if p.device == r.device);
        if let (true, Some(p)) = (same_device, last) {
            let continues = p.seq.checked_add(1) == Some(r.seq)
                && p.interval_len_s == r.interval_len_s
                && p.interval_start_s.checked_add(u64::from(p.interval_len_s))
                    == Some(r.interval_start_s)
                && p.register.checked_add(r.value) == Some(r.register);
            if continues {
                if let Some(cur) = out.last_mut() {
                    cur.values.push(r.value);
                    last = Some(*r);
                    continue;
                }
            }
            let prev_end = p
                .interval_start_s
                .checked_add(u64::from(p.interval_len_s))
                .ok_or(mismatch("interval end overflows"))?;
            if r.seq <= p.seq || r.interval_start_s < prev_end {
                return Err(mismatch("run does not start after the previous run"));
            }
        } else if !seen.insert(r.device) {
            return Err(mismatch("device reappears after another device"));
        }
        out.push(DeviceSeries {
            id: r.device,
            cap: cap_of(&r.device, r.interval_len_s),
            start_register,
            first_seq: r.seq,
            first_interval_start: r.interval_start_s,
            interval_len: r.interval_len_s,
            values: vec![r.value],
        });
        last = Some(*r);
    }
    Ok(out)
}

/// The readings commitment recomputed from signed reading fields (see
/// [`series_from_readings`] for what is refused). Caps are not part of the commitment.
pub fn commitment_from_readings(epoch: &Epoch, readings: &[ReadingFields]) -> Result<[u8; 32]> {
    let series = series_from_readings(readings, |_| MAX_CAP)?;
    readings_commitment(epoch, &series)
}

/// What the proof states about one device (public).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTotal {
    /// Device identity.
    pub id: [u8; 32],
    /// Cap every interval value was checked against.
    pub cap: u64,
    /// Register before the first reading.
    pub start_register: u64,
    /// Sum of the device's interval values.
    pub total: u64,
    /// Sequence number of the first reading.
    pub first_seq: u64,
    /// Sequence number of the last reading (readings `first_seq..=last_seq`, no gap).
    pub last_seq: u64,
    /// Interval start of the first reading, Unix seconds.
    pub first_interval_start: u64,
    /// Interval length of every reading, seconds.
    pub interval_len: u32,
}

impl DeviceTotal {
    /// Register after the last reading (`start_register + total`).
    pub fn end_register(&self) -> u64 {
        self.start_register.saturating_add(self.total)
    }

    /// Number of readings (`last_seq − first_seq + 1`), `None` if `last_seq < first_seq`.
    pub fn count(&self) -> Option<u64> {
        self.last_seq
            .checked_sub(self.first_seq)
            .and_then(|c| c.checked_add(1))
    }

    /// End (exclusive) of the last interval, `None` on overflow or a bad seq range.
    pub fn interval_end(&self) -> Option<u64> {
        self.count()?
            .checked_mul(u64::from(self.interval_len))?
            .checked_add(self.first_interval_start)
    }
}

/// The public statement of a metered-output proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredStatement {
    /// Epoch and time window every reading lies in.
    pub epoch: Epoch,
    /// Rescue-Prime commitment to the readings (see [`readings_commitment`]).
    pub commitment: [u8; 32],
    /// Number of readings over all devices.
    pub num_readings: u64,
    /// Devices in batch order.
    pub devices: Vec<DeviceTotal>,
}

impl MeteredStatement {
    /// Statement for a batch of readings (computes totals and commitment; checks the input).
    pub fn for_readings(epoch: &Epoch, series: &[DeviceSeries]) -> Result<Self> {
        let n = validate_series(epoch, series)?;
        let devices = series
            .iter()
            .map(|s| DeviceTotal {
                id: s.id,
                cap: s.cap,
                start_register: s.start_register,
                total: s.values.iter().sum(),
                first_seq: s.first_seq,
                last_seq: s.first_seq + (s.values.len() as u64 - 1),
                first_interval_start: s.first_interval_start,
                interval_len: s.interval_len,
            })
            .collect();
        Ok(Self {
            epoch: *epoch,
            commitment: readings_commitment(epoch, series)?,
            num_readings: n,
            devices,
        })
    }

    /// Checks the ranges the AIR relies on (all values far below the field modulus), that the
    /// seq ranges add up to the reading count and that every interval lies in the epoch window.
    pub fn validate(&self) -> Result<()> {
        let d = self.devices.len() as u64;
        if d == 0 || d > MAX_DEVICES {
            return Err(ProofError::InvalidPublicInputs("device count out of range"));
        }
        if self.num_readings < d || self.num_readings > MAX_READINGS {
            return Err(ProofError::InvalidPublicInputs(
                "reading count out of range",
            ));
        }
        let mut n: u64 = 0;
        for dev in &self.devices {
            if dev.cap > MAX_CAP {
                return Err(ProofError::InvalidPublicInputs("cap above 2^32 - 1"));
            }
            let count = dev
                .count()
                .ok_or(ProofError::InvalidPublicInputs("last seq below first seq"))?;
            if count > MAX_READINGS {
                return Err(ProofError::InvalidPublicInputs("seq range too long"));
            }
            n = n.saturating_add(count);
            // total ≤ cap × readings
            if dev.total > dev.cap.saturating_mul(count) {
                return Err(ProofError::InvalidPublicInputs(
                    "total above cap × readings",
                ));
            }
            match dev.start_register.checked_add(dev.total) {
                Some(end) if end < MAX_REGISTER => {}
                _ => return Err(ProofError::InvalidPublicInputs("register out of range")),
            }
            if dev.interval_len == 0 {
                return Err(ProofError::InvalidPublicInputs("interval length 0"));
            }
            match dev.interval_end() {
                Some(end)
                    if dev.first_interval_start >= self.epoch.start_s
                        && end <= self.epoch.end_s => {}
                _ => {
                    return Err(ProofError::InvalidPublicInputs(
                        "intervals outside the epoch window",
                    ))
                }
            }
        }
        if n != self.num_readings {
            return Err(ProofError::InvalidPublicInputs(
                "seq ranges do not add up to the reading count",
            ));
        }
        if crate::field::digest_from_bytes(&self.commitment).is_none() {
            return Err(ProofError::InvalidPublicInputs(
                "commitment is not canonical",
            ));
        }
        Ok(())
    }

    pub(crate) fn air_inputs(&self) -> Result<air::MeteredPublic> {
        self.validate()?;
        let commitment = crate::field::digest_from_bytes(&self.commitment).ok_or(
            ProofError::InvalidPublicInputs("commitment is not canonical"),
        )?;
        let n = usize::try_from(self.num_readings)
            .map_err(|_| ProofError::InvalidPublicInputs("reading count out of range"))?;
        Ok(air::MeteredPublic {
            commitment,
            iv: initial_capacity(
                &self.epoch,
                self.num_readings,
                self.devices.iter().map(Header::from),
            ),
            num_readings: n,
            devices: self
                .devices
                .iter()
                .map(|d| {
                    [
                        fe(d.cap),
                        fe(d.start_register),
                        fe(d.total),
                        fe(d.last_seq - d.first_seq),
                    ]
                })
                .collect(),
        })
    }
}

/// Per-device data bound through the commitment's initial capacity.
pub(crate) struct Header {
    id: [u8; 32],
    first_seq: u64,
    count: u64,
    first_interval_start: u64,
    interval_len: u32,
    start_register: u64,
}

impl From<&DeviceTotal> for Header {
    fn from(d: &DeviceTotal) -> Self {
        Header {
            id: d.id,
            first_seq: d.first_seq,
            count: d.count().unwrap_or(0),
            first_interval_start: d.first_interval_start,
            interval_len: d.interval_len,
            start_register: d.start_register,
        }
    }
}

impl From<&DeviceSeries> for Header {
    fn from(s: &DeviceSeries) -> Self {
        Header {
            id: s.id,
            first_seq: s.first_seq,
            count: s.values.len() as u64,
            first_interval_start: s.first_interval_start,
            interval_len: s.interval_len,
            start_register: s.start_register,
        }
    }
}

/// Checks a batch and returns its number of readings.
pub(crate) fn validate_series(epoch: &Epoch, series: &[DeviceSeries]) -> Result<u64> {
    if series.is_empty() || series.len() as u64 > MAX_DEVICES {
        return Err(ProofError::InvalidInput("device count out of range"));
    }
    let mut n: u64 = 0;
    for (di, s) in series.iter().enumerate() {
        if s.values.is_empty() {
            return Err(ProofError::InvalidInput("a device has no readings"));
        }
        if s.cap > MAX_CAP {
            return Err(ProofError::InvalidInput("cap above 2^32 - 1"));
        }
        if s.interval_len == 0 {
            return Err(ProofError::InvalidInput("interval length 0"));
        }
        match s.interval_end() {
            Some(end) if s.first_interval_start >= epoch.start_s && end <= epoch.end_s => {}
            _ => {
                return Err(ProofError::InvalidInput(
                    "intervals outside the epoch window",
                ))
            }
        }
        if s.first_seq.checked_add(s.values.len() as u64).is_none() {
            return Err(ProofError::InvalidInput("seq range overflows"));
        }
        let mut total: u64 = 0;
        for (i, &v) in s.values.iter().enumerate() {
            if v > s.cap {
                return Err(ProofError::ReadingOverCap {
                    device: di,
                    index: i,
                    value: v,
                    cap: s.cap,
                });
            }
            total = total.saturating_add(v);
        }
        match s.start_register.checked_add(total) {
            Some(end) if end < MAX_REGISTER => {}
            _ => return Err(ProofError::InvalidInput("register out of range")),
        }
        n = n.saturating_add(s.values.len() as u64);
    }
    if n > MAX_READINGS {
        return Err(ProofError::InvalidInput("too many readings"));
    }
    Ok(n)
}

/// Capacity the sponge starts from: Blake3 of the domain tag, the epoch and its window, the
/// reading count and, per device in batch order, `id | first_seq | count | first interval start
/// | interval length | start register` (integers little-endian u64), read as four u64 limbs
/// reduced into the field. The proof checks that the in-AIR sponge starts here, so it binds all
/// of these; only the verifier and native code compute it, never the AIR.
pub(crate) fn initial_capacity(
    epoch: &Epoch,
    num_readings: u64,
    devices: impl ExactSizeIterator<Item = Header>,
) -> Digest4 {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN_TAG);
    for v in [
        epoch.number,
        epoch.start_s,
        epoch.end_s,
        num_readings,
        devices.len() as u64,
    ] {
        h.update(&v.to_le_bytes());
    }
    for d in devices {
        h.update(&d.id);
        for v in [
            d.first_seq,
            d.count,
            d.first_interval_start,
            u64::from(d.interval_len),
            d.start_register,
        ] {
            h.update(&v.to_le_bytes());
        }
    }
    let bytes = h.finalize();
    let mut out = [BaseElement::ZERO; 4];
    for (o, c) in out.iter_mut().zip(bytes.as_bytes().chunks_exact(8)) {
        let mut limb = [0u8; 8];
        limb.copy_from_slice(c);
        *o = fe(u64::from_le_bytes(limb));
    }
    out
}

/// The element hashed for one reading: `value + 2^33 · device_index`.
#[inline]
pub(crate) fn encode(device: u64, value: u64) -> BaseElement {
    fe(value) + fe(1u64 << DEV_SHIFT) * fe(device)
}

/// Rows needed by `n` readings: one permutation per 8 readings, plus the initial permutation,
/// rounded up to a power of two (minimum 8).
pub fn trace_length(num_readings: usize) -> usize {
    let blocks = num_readings.div_ceil(rescue::CYCLE);
    ((blocks + 1) * rescue::CYCLE).next_power_of_two()
}

/// The readings commitment: a Rescue-Prime (Rp64_256) sponge whose capacity starts at
/// the initial capacity (Blake3 of the epoch and the per-device headers, see PROOFS.md), permuted once, then absorbing 8 encoded readings per permutation
/// (`value + 2^33·device_index`, padded with `2^33·device_count`). The digest is lanes 4..8.
pub fn readings_commitment(epoch: &Epoch, series: &[DeviceSeries]) -> Result<[u8; 32]> {
    let n = validate_series(epoch, series)?;
    let iv = initial_capacity(epoch, n, series.iter().map(Header::from));
    let mut state = [BaseElement::ZERO; STATE_WIDTH];
    state[..4].copy_from_slice(&iv);
    Rp64_256::apply_permutation(&mut state);
    let pad = encode(series.len() as u64, 0);
    let mut elems = series
        .iter()
        .enumerate()
        .flat_map(|(d, s)| s.values.iter().map(move |&v| encode(d as u64, v)));
    let blocks = usize::try_from(n).map_err(|_| ProofError::InvalidInput("too many readings"))?;
    for _ in 0..blocks.div_ceil(8) {
        for lane in state[4..].iter_mut() {
            *lane += elems.next().unwrap_or(pad);
        }
        Rp64_256::apply_permutation(&mut state);
    }
    Ok(digest_to_bytes(&[state[4], state[5], state[6], state[7]]))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod runs_tests {
    use super::*;

    fn r(device: u8, seq: u64, value: u64, register: u64) -> ReadingFields {
        ReadingFields {
            device: [device; 32],
            seq,
            interval_start_s: 1_000 + seq * 10,
            interval_len_s: 10,
            value,
            register,
        }
    }

    #[test]
    fn a_gap_starts_a_new_run_of_the_same_device() {
        let readings = [r(1, 0, 5, 5), r(1, 1, 5, 10), r(1, 3, 5, 20), r(2, 7, 1, 1)];
        let runs = runs_from_readings(&readings, |_, _| 10).unwrap();
        assert_eq!(runs.len(), 3);
        assert_eq!(
            (runs[0].id, runs[0].first_seq, runs[0].values.len()),
            ([1; 32], 0, 2)
        );
        assert_eq!(
            (runs[1].id, runs[1].first_seq, runs[1].start_register),
            ([1; 32], 3, 15)
        );
        assert_eq!(runs[2].id, [2; 32]);
        // A register that does not continue also splits, with its own start register.
        let reset = [r(1, 0, 5, 5), r(1, 1, 5, 100)];
        let runs = runs_from_readings(&reset, |_, _| 10).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[1].start_register, 95);
        // The commitment of the split batch differs from the batch without the later run.
        let epoch = Epoch {
            number: 0,
            start_s: 1_000,
            end_s: 2_000,
        };
        let full = readings_commitment(&epoch, &runs_from_readings(&readings, |_, _| 10).unwrap());
        let fewer = readings_commitment(
            &epoch,
            &runs_from_readings(&readings[..2], |_, _| 10).unwrap(),
        );
        assert_ne!(full.unwrap(), fewer.unwrap());
    }

    #[test]
    fn runs_that_go_back_or_devices_that_reappear_are_refused() {
        let back = [r(1, 5, 1, 1), r(1, 3, 1, 2)];
        assert!(runs_from_readings(&back, |_, _| 10).is_err());
        let reappears = [r(1, 0, 1, 1), r(2, 0, 1, 1), r(1, 1, 1, 2)];
        assert!(runs_from_readings(&reappears, |_, _| 10).is_err());
        let mut overlapping = [r(1, 0, 1, 1), r(1, 2, 1, 2)];
        overlapping[1].interval_start_s = overlapping[0].interval_start_s + 5;
        assert!(runs_from_readings(&overlapping, |_, _| 10).is_err());
        let too_big = [r(1, 0, MAX_VALUE + 1, MAX_VALUE + 1)];
        assert!(runs_from_readings(&too_big, |_, _| 10).is_err());
    }
}
