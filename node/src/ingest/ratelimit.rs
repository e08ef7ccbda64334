//! Per-device token buckets, checked before the signature so that one device's flood costs
//! the node no signature verifications and leaves other devices' readings flowing. Keyed by
//! the device the (broker-authenticated) topic names, and only for registered devices, so the
//! table is bounded by the registry. Pure: the caller passes the time.

use groundtruth_device_sdk::DeviceId;
use std::collections::HashMap;
use std::time::Instant;

/// Bucket sizes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateConfig {
    /// Readings a device may send at once (an offline device delivering its backlog).
    pub burst: u32,
    /// Sustained readings per second per device.
    pub per_second: f64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets for every device seen.
#[derive(Debug)]
pub struct DeviceRateLimiter {
    config: RateConfig,
    buckets: HashMap<DeviceId, Bucket>,
}

impl DeviceRateLimiter {
    /// An empty limiter.
    pub fn new(config: RateConfig) -> Self {
        Self {
            config,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `device` at `now`; `false` when its bucket is empty.
    pub fn allow(&mut self, device: DeviceId, now: Instant) -> bool {
        let burst = f64::from(self.config.burst.max(1));
        let b = self.buckets.entry(device).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.config.per_second).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Devices tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no device is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_and_devices_are_independent() {
        let mut l = DeviceRateLimiter::new(RateConfig {
            burst: 5,
            per_second: 2.0,
        });
        let (a, b) = (DeviceId([1; 32]), DeviceId([2; 32]));
        let t0 = Instant::now();
        assert_eq!((0..10).filter(|_| l.allow(a, t0)).count(), 5);
        assert!(l.allow(b, t0), "another device is not affected");
        assert!(!l.allow(a, t0));
        // One second refills two tokens.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..10).filter(|_| l.allow(a, t1)).count(), 2);
        // A long pause refills up to the burst, never beyond.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| l.allow(a, t2)).count(), 5);
        assert_eq!(l.len(), 2);
    }
}
