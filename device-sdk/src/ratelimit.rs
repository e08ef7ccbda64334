//! A token bucket with the time as a parameter (no clock inside, `no_std`).
//!
//! The publisher uses two per device to bound what resend requests can make it do
//! (PROTOCOL.md, "Resend requests"): requests per minute and resent readings per minute.

/// Fractions of a token: one token is this many units, so that `per_minute` tokens a minute
/// is exactly `per_minute` units a millisecond, in integers.
const UNITS_PER_TOKEN: u64 = 60_000;

/// Holds up to `per_minute` tokens and gains `per_minute` tokens a minute, continuously.
/// Starts full. A bucket with `per_minute = 0` never grants anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    per_minute: u32,
    /// Current fill, in 1/60000 tokens.
    units: u64,
    /// Time of the last refill, milliseconds on the caller's monotonic clock.
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket of `per_minute` tokens at time `now_ms`.
    pub fn new(per_minute: u32, now_ms: u64) -> Self {
        Self {
            per_minute,
            units: Self::capacity_units(per_minute),
            last_ms: now_ms,
        }
    }

    fn capacity_units(per_minute: u32) -> u64 {
        u64::from(per_minute).saturating_mul(UNITS_PER_TOKEN)
    }

    /// The configured rate (and burst).
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn refill(&mut self, now_ms: u64) {
        // A clock that goes backwards refills nothing.
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let gained = elapsed.saturating_mul(u64::from(self.per_minute));
        self.units = self
            .units
            .saturating_add(gained)
            .min(Self::capacity_units(self.per_minute));
    }

    /// Whole tokens available at `now_ms`.
    pub fn available(&mut self, now_ms: u64) -> u64 {
        self.refill(now_ms);
        self.units / UNITS_PER_TOKEN
    }

    /// Takes one token if there is one; returns whether it did.
    pub fn try_take(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        match self.units.checked_sub(UNITS_PER_TOKEN) {
            Some(rest) => {
                self.units = rest;
                true
            }
            None => false,
        }
    }

    /// Milliseconds from `now_ms` until a token is available (0 if one is); `None` for a
    /// bucket that never refills.
    pub fn wait_ms(&mut self, now_ms: u64) -> Option<u64> {
        self.refill(now_ms);
        if self.units >= UNITS_PER_TOKEN {
            return Some(0);
        }
        if self.per_minute == 0 {
            return None;
        }
        let missing = UNITS_PER_TOKEN - self.units;
        Some(missing.div_ceil(u64::from(self.per_minute)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_at_the_rate() {
        let mut b = TokenBucket::new(6, 1_000);
        for _ in 0..6 {
            assert!(b.try_take(1_000));
        }
        assert!(!b.try_take(1_000));
        // One token every 10 s.
        assert_eq!(b.wait_ms(1_000), Some(10_000));
        assert!(!b.try_take(10_999));
        assert_eq!(b.wait_ms(10_999), Some(1));
        assert!(b.try_take(11_000));
        assert!(!b.try_take(11_000));
        // A long pause refills to the burst, never beyond.
        assert_eq!(b.available(10_000_000), 6);
        for _ in 0..6 {
            assert!(b.try_take(10_000_000));
        }
        assert!(!b.try_take(10_000_000));
    }

    #[test]
    fn zero_rate_never_grants_and_clock_going_back_is_harmless() {
        let mut z = TokenBucket::new(0, 0);
        assert!(!z.try_take(u64::MAX));
        assert_eq!(z.wait_ms(5), None);
        let mut b = TokenBucket::new(1, 60_000);
        assert!(b.try_take(60_000));
        assert!(!b.try_take(0));
        assert!(!b.try_take(119_999));
        assert!(b.try_take(120_000));
        let mut big = TokenBucket::new(u32::MAX, 0);
        assert!(big.try_take(u64::MAX));
        assert_eq!(big.available(u64::MAX), u64::from(u32::MAX) - 1);
    }
}
