//! Per-device sequence tracking: which sequence numbers are settled (stored, accepted or
//! rejected), where the gaps are, and when to ask a device to resend. Pure: the caller passes
//! the time.

use groundtruth_device_sdk::DeviceId;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// Resend requests sent for one gap before it is reported as unfilled. The node keeps asking
/// after that, with the interval doubling up to [`MAX_RESEND_BACKOFF`]: a device that was
/// offline for hours still gets its readings in.
pub const MAX_RESEND_ATTEMPTS: u32 = 5;

/// Longest wait between two resend requests for the same gap.
pub const MAX_RESEND_BACKOFF: Duration = Duration::from_secs(60);

/// Farthest a reading's seq may be ahead of its device's first missing seq and still be
/// tracked (about ten years of 5-minute readings). Beyond it the reading is refused as
/// `seq_gap_too_far` and the device flagged, instead of opening a gap nobody can fill.
pub const MAX_SEQ_AHEAD: u64 = 1_000_000;

/// Most settled seqs held above a device's first gap: the tracker's memory per device.
pub const MAX_SETTLED_ABOVE_GAP: usize = 8192;

#[derive(Debug, Default)]
struct DeviceSeqs {
    /// Every seq below this is settled.
    next: u64,
    /// Settled seqs above `next`.
    above: BTreeSet<u64>,
    last_request: Option<Instant>,
    attempts: u32,
}

/// What the tracker asks the caller to do about gaps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapAction {
    /// Ask `device` to resend from `from_seq`.
    Resend {
        /// Device with a gap.
        device: DeviceId,
        /// First missing sequence number.
        from_seq: u64,
    },
    /// The gap at `from_seq` did not fill after [`MAX_RESEND_ATTEMPTS`] requests.
    Unfilled {
        /// Device with a gap.
        device: DeviceId,
        /// First missing sequence number.
        from_seq: u64,
    },
}

/// Sequence tracking for every device.
#[derive(Debug, Default)]
pub struct GapTracker {
    devices: HashMap<DeviceId, DeviceSeqs>,
}

impl GapTracker {
    /// Records that (device, seq) is settled.
    pub fn settle(&mut self, device: DeviceId, seq: u64) {
        let d = self.devices.entry(device).or_default();
        if seq < d.next {
            return;
        }
        if seq == d.next {
            d.next += 1;
            while d.above.remove(&d.next) {
                d.next += 1;
            }
            d.attempts = 0;
        } else {
            d.above.insert(seq);
        }
    }

    /// Records that every seq of `device` below `floor` is settled (retention pruned them:
    /// see [`crate::ingest::store::Store::pruned_below`]).
    pub fn settle_below(&mut self, device: DeviceId, floor: u64) {
        let d = self.devices.entry(device).or_default();
        if floor <= d.next {
            return;
        }
        d.next = floor;
        d.above = d.above.split_off(&floor);
        while d.above.remove(&d.next) {
            d.next += 1;
        }
        d.attempts = 0;
    }

    /// Whether settling (device, seq) keeps the device's tracking within bounds: `seq` at most
    /// [`MAX_SEQ_AHEAD`] beyond the first missing seq, and at most [`MAX_SETTLED_ABOVE_GAP`]
    /// seqs held above a gap. Seqs already below the first gap always fit.
    pub fn can_track(&self, device: &DeviceId, seq: u64) -> bool {
        let Some(d) = self.devices.get(device) else {
            return seq <= MAX_SEQ_AHEAD;
        };
        seq <= d.next || (seq - d.next <= MAX_SEQ_AHEAD && d.above.len() < MAX_SETTLED_ABOVE_GAP)
    }

    /// Whether (device, seq) is settled, i.e. something is stored there. Exact: every stored
    /// reading is settled here, at start-up and as it is written.
    pub fn is_settled(&self, device: &DeviceId, seq: u64) -> bool {
        self.devices
            .get(device)
            .is_some_and(|d| seq < d.next || d.above.contains(&seq))
    }

    /// Number of devices with a gap.
    pub fn open_gaps(&self) -> usize {
        self.devices
            .values()
            .filter(|d| !d.above.is_empty())
            .count()
    }

    /// The first missing seq of a device, if it has a gap.
    pub fn gap_of(&self, device: &DeviceId) -> Option<u64> {
        self.devices
            .get(device)
            .filter(|d| !d.above.is_empty())
            .map(|d| d.next)
    }

    /// `device`'s first gap as `(first missing seq, last missing seq)`: from the first
    /// unsettled seq up to the one below the lowest settled seq above it. `None` without a gap.
    pub fn first_gap(&self, device: &DeviceId) -> Option<(u64, u64)> {
        let d = self.devices.get(device)?;
        let above = d.above.first()?;
        Some((d.next, above.checked_sub(1)?))
    }

    /// Gaps that are due a resend request at `now`: the first at once, then after `interval`,
    /// doubling per attempt up to [`MAX_RESEND_BACKOFF`]. A gap still open after
    /// [`MAX_RESEND_ATTEMPTS`] requests is also reported once as unfilled.
    pub fn due(&mut self, now: Instant, interval: Duration) -> Vec<GapAction> {
        let mut actions = Vec::new();
        for (device, d) in &mut self.devices {
            if d.above.is_empty() {
                continue;
            }
            let doublings = d.attempts.saturating_sub(1).min(16);
            let backoff = interval
                .saturating_mul(1u32 << doublings)
                .min(MAX_RESEND_BACKOFF);
            if d.last_request
                .is_some_and(|t| now.duration_since(t) < backoff)
            {
                continue;
            }
            d.last_request = Some(now);
            d.attempts = d.attempts.saturating_add(1);
            if d.attempts == MAX_RESEND_ATTEMPTS + 1 {
                actions.push(GapAction::Unfilled {
                    device: *device,
                    from_seq: d.next,
                });
            }
            actions.push(GapAction::Resend {
                device: *device,
                from_seq: d.next,
            });
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_gap_spans_the_missing_seqs_below_the_lowest_settled_one_above() {
        let dev = DeviceId([9u8; 32]);
        let mut g = GapTracker::default();
        assert_eq!(g.first_gap(&dev), None);
        for seq in [0, 1, 5, 6, 9] {
            g.settle(dev, seq);
        }
        assert_eq!(g.first_gap(&dev), Some((2, 4)));
        for seq in 2..5 {
            g.settle(dev, seq);
        }
        // The next gap: 7..=8.
        assert_eq!(g.first_gap(&dev), Some((7, 8)));
        g.settle(dev, 7);
        g.settle(dev, 8);
        assert_eq!(g.first_gap(&dev), None);
    }

    #[test]
    fn memory_per_device_is_bounded() {
        let dev = DeviceId([8u8; 32]);
        let mut g = GapTracker::default();
        assert!(g.can_track(&dev, MAX_SEQ_AHEAD));
        assert!(!g.can_track(&dev, MAX_SEQ_AHEAD + 1));
        g.settle(dev, 0);
        // Seq 1 is missing; fill the window above it.
        for seq in 2..(2 + MAX_SETTLED_ABOVE_GAP as u64) {
            assert!(g.can_track(&dev, seq));
            g.settle(dev, seq);
        }
        assert!(!g.can_track(&dev, 1_000_000), "far ahead");
        assert!(!g.can_track(&dev, 9000), "window above the gap is full");
        assert!(g.can_track(&dev, 1), "filling the gap always fits");
        g.settle(dev, 1);
        assert_eq!(g.open_gaps(), 0);
        assert!(g.can_track(&dev, 9000));
    }

    #[test]
    fn settling_below_a_floor_closes_what_it_covers() {
        let dev = DeviceId([6u8; 32]);
        let mut g = GapTracker::default();
        for s in [10, 11, 13] {
            g.settle(dev, s);
        }
        assert_eq!(g.gap_of(&dev), Some(0));
        g.settle_below(dev, 10);
        assert!(g.is_settled(&dev, 0) && g.is_settled(&dev, 11));
        assert_eq!(g.gap_of(&dev), Some(12));
        g.settle_below(dev, 5); // never goes back
        assert_eq!(g.gap_of(&dev), Some(12));
    }

    #[test]
    fn gaps_open_close_and_give_up() {
        let dev = DeviceId([5u8; 32]);
        let mut g = GapTracker::default();
        g.settle(dev, 0);
        g.settle(dev, 1);
        assert_eq!(g.open_gaps(), 0);
        g.settle(dev, 4);
        assert_eq!(g.gap_of(&dev), Some(2));
        assert!(g.is_settled(&dev, 1) && g.is_settled(&dev, 4));
        assert!(!g.is_settled(&dev, 2) && !g.is_settled(&dev, 5));
        assert!(!g.is_settled(&DeviceId([6u8; 32]), 0));
        let t0 = Instant::now();
        let step = Duration::from_secs(1);
        assert_eq!(
            g.due(t0, step),
            vec![GapAction::Resend {
                device: dev,
                from_seq: 2
            }]
        );
        assert!(g.due(t0, step).is_empty(), "rate limited");
        g.settle(dev, 2);
        g.settle(dev, 3);
        assert_eq!(g.open_gaps(), 0);
        g.settle(dev, 9);
        let mut t = t0;
        let (mut unfilled, mut requests) = (0, 0);
        for _ in 0..600 {
            t += step;
            let actions = g.due(t, step);
            unfilled += actions
                .iter()
                .filter(|a| matches!(a, GapAction::Unfilled { .. }))
                .count();
            requests += actions
                .iter()
                .filter(|a| matches!(a, GapAction::Resend { .. }))
                .count();
        }
        assert_eq!(unfilled, 1, "reported once");
        // 1, 2, 4, … 32 s apart, then every 60 s: about 15 requests in 10 minutes, not 600.
        assert!((12..=20).contains(&requests), "{requests} requests");
        for seq in 4..9 {
            g.settle(dev, seq);
        }
        assert_eq!(g.open_gaps(), 0);
    }
}
