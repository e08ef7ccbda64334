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

use winter_crypto::{hashers::Rp64_256, ElementHasher};
use winter_math::{fields::f64::BaseElement, FieldElement};

use crate::error::{ProofError, Result};
use crate::field::{digest_to_bytes, fe, Digest4};
use crate::rescue::{self, STATE_WIDTH};

/// Interval values and caps must be below `2^VALUE_BITS`.
pub const VALUE_BITS: u32 = 32;
/// Largest allowed cap.
pub const MAX_CAP: u64 = (1 << VALUE_BITS) - 1;
/// Largest number of readings in one proof (keeps every running sum far below the field modulus).
pub const MAX_READINGS: u64 = 1 << 24;
/// Registers must stay below this bound (start + total included).
pub const MAX_REGISTER: u64 = 1 << 62;
/// Largest number of devices in one proof.
pub const MAX_DEVICES: u64 = 1 << 20;
/// Base-8 digits used for each range check (11 digits = 33 bits ≥ `VALUE_BITS`).
pub const DIGITS: usize = 11;
/// Device index is packed above the value in the hashed element: `e = v + 2^DEV_SHIFT · device`.
pub const DEV_SHIFT: u32 = 33;
/// Domain-separation tag of the commitment's initial capacity.
pub const DOMAIN_TAG: &[u8] = b"groundtruth/metered/v1";

/// One device's readings for the period, as the prover sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSeries {
    /// Device identity (its registered 32-byte id).
    pub id: [u8; 32],
    /// Largest value one interval may carry (registered capacity × interval length).
    pub cap: u64,
    /// The device's cumulative register before its first reading in this period.
    pub start_register: u64,
    /// Interval values, in sequence order.
    pub values: Vec<u64>,
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
}

impl DeviceTotal {
    /// Register after the last reading (`start_register + total`).
    pub fn end_register(&self) -> u64 {
        self.start_register.saturating_add(self.total)
    }
}

/// The public statement of a metered-output proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeteredStatement {
    /// Rescue-Prime commitment to the readings (see [`readings_commitment`]).
    pub commitment: [u8; 32],
    /// Number of readings over all devices.
    pub num_readings: u64,
    /// Devices in batch order.
    pub devices: Vec<DeviceTotal>,
}

impl MeteredStatement {
    /// Statement for a batch of readings (computes totals and commitment; checks the input).
    pub fn for_readings(series: &[DeviceSeries]) -> Result<Self> {
        let n = validate_series(series)?;
        let devices = series
            .iter()
            .map(|s| DeviceTotal {
                id: s.id,
                cap: s.cap,
                start_register: s.start_register,
                total: s.values.iter().sum(),
            })
            .collect();
        Ok(Self {
            commitment: readings_commitment(series)?,
            num_readings: n,
            devices,
        })
    }

    /// Checks the ranges the AIR relies on (all values far below the field modulus).
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
        for dev in &self.devices {
            if dev.cap > MAX_CAP {
                return Err(ProofError::InvalidPublicInputs("cap above 2^32 - 1"));
            }
            // total ≤ cap × readings
            if dev.total > MAX_CAP.saturating_mul(MAX_READINGS) {
                return Err(ProofError::InvalidPublicInputs("total out of range"));
            }
            match dev.start_register.checked_add(dev.total) {
                Some(end) if end < MAX_REGISTER => {}
                _ => return Err(ProofError::InvalidPublicInputs("register out of range")),
            }
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
        let ids: Vec<[u8; 32]> = self.devices.iter().map(|d| d.id).collect();
        let n = usize::try_from(self.num_readings)
            .map_err(|_| ProofError::InvalidPublicInputs("reading count out of range"))?;
        Ok(air::MeteredPublic {
            commitment,
            iv: initial_capacity(self.num_readings, &ids),
            num_readings: n,
            devices: self
                .devices
                .iter()
                .map(|d| [fe(d.cap), fe(d.start_register), fe(d.total)])
                .collect(),
        })
    }
}

/// Checks a batch and returns its number of readings.
pub(crate) fn validate_series(series: &[DeviceSeries]) -> Result<u64> {
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

/// Capacity the sponge starts from: Rescue hash of the domain tag, the reading count and the
/// ordered device ids. It binds the ids and the length into the commitment.
pub(crate) fn initial_capacity(num_readings: u64, ids: &[[u8; 32]]) -> Digest4 {
    let mut bytes = Vec::with_capacity(DOMAIN_TAG.len() + 16 + 32 * ids.len());
    bytes.extend_from_slice(DOMAIN_TAG);
    bytes.extend_from_slice(&num_readings.to_le_bytes());
    bytes.extend_from_slice(&(ids.len() as u64).to_le_bytes());
    for id in ids {
        bytes.extend_from_slice(id);
    }
    // Bytes → elements: the byte length, then 7-byte little-endian limbs (always < modulus).
    // (winterfell 0.13.1's `Rp64_256::hash` mishandles inputs over 56 bytes with a partial
    // last limb, so we pack the bytes ourselves and use `hash_elements`.)
    let mut elems = Vec::with_capacity(1 + bytes.len().div_ceil(7));
    elems.push(fe(bytes.len() as u64));
    for c in bytes.chunks(7) {
        let mut limb = [0u8; 8];
        limb[..c.len()].copy_from_slice(c);
        elems.push(fe(u64::from_le_bytes(limb)));
    }
    let d = Rp64_256::hash_elements(&elems);
    let e = d.as_elements();
    [e[0], e[1], e[2], e[3]]
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
/// [`initial_capacity`], permuted once, then absorbing 8 encoded readings per permutation
/// (`value + 2^33·device_index`, padded with `2^33·device_count`). The digest is lanes 4..8.
pub fn readings_commitment(series: &[DeviceSeries]) -> Result<[u8; 32]> {
    let n = validate_series(series)?;
    let ids: Vec<[u8; 32]> = series.iter().map(|s| s.id).collect();
    let iv = initial_capacity(n, &ids);
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
