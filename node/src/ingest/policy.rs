//! The ingest policy: what happens to an authentic reading given what the node already holds
//! for its device. Pure (no I/O, no clock: the caller passes the time and what it read), so
//! every rule here is unit- and property-tested; `Committer::apply` only gathers the inputs
//! and carries out the verdict.
//!
//! Order of the rules (the spec, `device-sdk/PROTOCOL.md`, states the same order):
//! 1. something stored at (device, seq): same signed reading → duplicate, else equivocation;
//! 2. interval end (or heartbeat stamp) beyond `now + max_clock_skew` → refused for now, not
//!    stored (the device keeps it and resends it when asked);
//! 3. over the registered capacity → stored as rejected (authentic but implausible, on record);
//! 4. against the previous accepted reading (seq − 1): interval must start later and not
//!    overlap, and the energy register must advance by exactly the interval's energy; a break
//!    is stored as rejected with its own reason.

use super::checks::{decide, register_continues, within_capacity, Rejection, StoreDecision};
use super::registry::DeviceRecord;
use groundtruth_device_sdk::{Reading, ReadingBody};

/// Tunables of the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyConfig {
    /// How far in the future (seconds, node clock) a reading's interval may end.
    pub max_clock_skew_s: u64,
}

/// What the node already knows about the reading's device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// The frame stored at the same (device, seq), if any.
    pub existing: Option<&'a [u8]>,
    /// The accepted reading at seq − 1, if there is one.
    pub previous: Option<&'a ReadingBody>,
}

/// What to do with an authentic reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it as accepted.
    Accept,
    /// The same signed reading is already stored: acknowledge, store nothing.
    Duplicate,
    /// A different reading is stored at the same (device, seq): keep both as evidence.
    Equivocation,
    /// Store it as rejected (authentic, on record, its seq settled), for this reason.
    Record(Rejection),
    /// Do not store it now (it may become acceptable later), for this reason.
    Refuse(Rejection),
}

impl Verdict {
    /// The rejection reason, if the reading is not accepted.
    pub fn rejection(self) -> Option<Rejection> {
        match self {
            Self::Accept => None,
            Self::Duplicate => Some(Rejection::Duplicate),
            Self::Equivocation => Some(Rejection::Equivocation),
            Self::Record(r) | Self::Refuse(r) => Some(r),
        }
    }
}

/// Unix second at which the reading's interval ends (heartbeats: their timestamp).
pub fn reading_end_s(body: &ReadingBody, timestamp_ms: u64) -> u64 {
    match body {
        ReadingBody::Energy(e) => e
            .interval_start_s
            .saturating_add(u64::from(e.interval_len_s)),
        ReadingBody::Gpu(g) => g
            .interval_start_s
            .saturating_add(u64::from(g.interval_len_s)),
        ReadingBody::Storage(_) => timestamp_ms / 1000,
    }
}

/// The interval `[start, start + len)` of a metered reading; heartbeats have none.
fn interval(body: &ReadingBody) -> Option<(u64, u64)> {
    match body {
        ReadingBody::Energy(e) => Some((e.interval_start_s, u64::from(e.interval_len_s))),
        ReadingBody::Gpu(g) => Some((g.interval_start_s, u64::from(g.interval_len_s))),
        ReadingBody::Storage(_) => None,
    }
}

/// Checks that `next` follows `previous` in time: it starts later and does not overlap.
pub fn interval_follows(previous: &ReadingBody, next: &ReadingBody) -> Result<(), Rejection> {
    let (Some((p_start, p_len)), Some((n_start, _))) = (interval(previous), interval(next)) else {
        return Ok(());
    };
    if n_start <= p_start {
        return Err(Rejection::IntervalNotAdvancing);
    }
    if n_start < p_start.saturating_add(p_len) {
        return Err(Rejection::IntervalOverlap);
    }
    Ok(())
}

/// Judges an authentic (signature-checked, registered, right-kind) reading.
pub fn judge(
    reading: &Reading,
    frame: &[u8],
    record: &DeviceRecord,
    known: Known<'_>,
    now_unix_s: u64,
    config: PolicyConfig,
) -> Verdict {
    match decide(known.existing, frame) {
        StoreDecision::New => {}
        StoreDecision::Duplicate => return Verdict::Duplicate,
        StoreDecision::Equivocation => return Verdict::Equivocation,
    }
    if reading_end_s(&reading.body, reading.timestamp_ms)
        > now_unix_s.saturating_add(config.max_clock_skew_s)
    {
        return Verdict::Refuse(Rejection::FutureTimestamp);
    }
    if !within_capacity(&reading.body, record) {
        return Verdict::Record(Rejection::Implausible);
    }
    if let Some(previous) = known.previous {
        if let Err(r) = interval_follows(previous, &reading.body) {
            return Verdict::Record(r);
        }
        if !register_continues(previous, &reading.body) {
            return Verdict::Record(Rejection::RegisterDiscontinuity);
        }
    }
    Verdict::Accept
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundtruth_device_sdk::{DeviceKey, EnergyReading, ReadingKind};
    use proptest::prelude::*;

    const NOW: u64 = 1_800_000_000;
    const CFG: PolicyConfig = PolicyConfig {
        max_clock_skew_s: 120,
    };

    fn record() -> DeviceRecord {
        DeviceRecord {
            kind: ReadingKind::Energy,
            capacity: 6000,
        }
    }

    fn energy(start: u64, wh: u64, register: u64) -> Reading {
        let key = DeviceKey::from_seed(&[7u8; 32]);
        Reading {
            device: key.device_id(),
            seq: 1,
            timestamp_ms: (start + 300) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: start,
                interval_len_s: 300,
                energy_wh: wh,
                register_wh: register,
            }),
        }
    }

    fn frame(r: &Reading) -> Vec<u8> {
        DeviceKey::from_seed(&[7u8; 32]).sign(*r).to_frame()
    }

    fn judge_after(prev: &Reading, next: &Reading) -> Verdict {
        judge(
            next,
            &frame(next),
            &record(),
            Known {
                existing: None,
                previous: Some(&prev.body),
            },
            NOW,
            CFG,
        )
    }

    #[test]
    fn each_rule_has_its_reason() {
        let t = NOW - 3600;
        let prev = energy(t, 100, 1000);
        assert_eq!(
            judge_after(&prev, &energy(t + 300, 50, 1050)),
            Verdict::Accept
        );
        assert_eq!(
            judge_after(&prev, &energy(t + 300, 50, 1051)),
            Verdict::Record(Rejection::RegisterDiscontinuity)
        );
        assert_eq!(
            judge_after(&prev, &energy(t, 50, 1050)),
            Verdict::Record(Rejection::IntervalNotAdvancing)
        );
        assert_eq!(
            judge_after(&prev, &energy(t + 299, 50, 1050)),
            Verdict::Record(Rejection::IntervalOverlap)
        );
        assert_eq!(
            judge_after(&prev, &energy(t + 300, 501, 1501)),
            Verdict::Record(Rejection::Implausible)
        );
        // Ends exactly at now + skew: fine; one second later: refused, not stored.
        let edge = NOW + 120 - 300;
        assert_eq!(judge_after(&prev, &energy(edge, 1, 1001)), Verdict::Accept);
        assert_eq!(
            judge_after(&prev, &energy(edge + 1, 1, 1001)),
            Verdict::Refuse(Rejection::FutureTimestamp)
        );
        // A gap of intervals (device offline, nothing measured) is not an overlap.
        assert_eq!(
            judge_after(&prev, &energy(t + 900, 50, 1050)),
            Verdict::Accept
        );
    }

    #[test]
    fn resigned_reading_is_a_duplicate_and_a_different_one_equivocation() {
        let r = energy(NOW - 600, 10, 10);
        let stored = frame(&r);
        // A second, different valid encoding of the signature over the same bytes is a
        // duplicate; we model it by keeping the reading bytes and changing the signature bytes.
        let mut resigned = stored.clone();
        if let Some(last) = resigned.last_mut() {
            *last ^= 1;
        }
        let known = Known {
            existing: Some(&stored),
            previous: None,
        };
        assert_eq!(
            judge(&r, &resigned, &record(), known, NOW, CFG),
            Verdict::Duplicate
        );
        let other = energy(NOW - 600, 11, 11);
        assert_eq!(
            judge(&other, &frame(&other), &record(), known, NOW, CFG),
            Verdict::Equivocation
        );
    }

    proptest! {
        /// A chain of contiguous, register-consistent readings within capacity is accepted
        /// link by link; any break of contiguity is refused with an interval reason.
        #[test]
        fn contiguous_chains_accept_and_breaks_refuse(
            values in proptest::collection::vec(0u64..=500, 1..40),
            shift in 1u64..600,
        ) {
            let mut start = NOW - 100_000;
            let mut register = 0u64;
            let mut prev = energy(start, 0, 0);
            for v in values {
                start += 300;
                register += v;
                let next = energy(start, v, register);
                prop_assert_eq!(judge_after(&prev, &next), Verdict::Accept);
                let early = energy(start - shift.min(300), v, register);
                prop_assert!(matches!(
                    judge_after(&prev, &early),
                    Verdict::Record(Rejection::IntervalOverlap | Rejection::IntervalNotAdvancing)
                ));
                prev = next;
            }
        }
    }
}
