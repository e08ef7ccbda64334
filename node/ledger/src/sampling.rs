//! Epoch beacons and audit sampling: which validators audit which device in an epoch.
//!
//! When an epoch ends, the ledger seals it ([`crate::EpochSeal`]): a beacon derived from the
//! committed ledger ([`epoch_beacon`]) and the committee that served during the epoch (the
//! validator set, operator → voting power). [`assign`] then maps every device to
//! `redundancy` distinct validators, drawn without replacement with probability proportional
//! to stake, from a domain-separated blake3 XOF of `(beacon, epoch, device)`. It is a pure
//! function of committed data: any node recomputes the same assignment
//! ([`crate::State::audit_assignment`]).
//!
//! Each device's draw depends only on the beacon, the epoch, the device and the committee, not
//! on which other devices are listed, so devices registered or retired after the seal do not
//! move anyone else's auditors.
//!
//! # Where the beacon comes from, and its limits
//!
//! The beacon is `blake3::derive_key(BEACON_CONTEXT)` over the chain id, the epoch, the height
//! of the block that closes it and the state root after that block's transactions (before the
//! epoch boundary's own writes). That root is known only once the closing block is decided, so
//! no validator can compute the assignment while the epoch's readings are being collected.
//!
//! It is **not** unbiasable: the proposer of the closing block chooses which transactions it
//! includes and in which order, and each choice gives another state root, so it can compute the
//! beacon for many candidate blocks and propose the one whose assignment it prefers (grinding),
//! for example one that makes itself the auditor of a device it colludes with. Its reach is
//! bounded by one proposal per round and by the draw being stake-weighted (it cannot make
//! itself more likely than its stake on average, only pick among the few variants it can try
//! before the round times out), and by redundancy: with `redundancy ≥ 2` a device also gets
//! validators the proposer does not control. A threshold signature or VRF beacon (aggregated
//! over ≥ 2/3 of stake) would remove this and is the intended replacement.
//!
//! Arithmetic is integer only. A draw takes 16 XOF bytes as a `u128` and reduces it modulo the
//! remaining total stake; with stakes below 2^64 and at most 2^32 validators the total is below
//! 2^96, so the modulo bias is below 2^-32 per draw, and for realistic sets (≤ 1 000
//! validators, stake ≤ 2^64) below 2^-54. Work is O(devices × redundancy × validators).

use std::collections::BTreeMap;

use groundtruth_device_sdk::DeviceId;

use crate::types::{Address, Epoch, Height};

/// Key derivation context of the epoch beacon.
pub const BEACON_CONTEXT: &str = "groundtruth ledger epoch beacon v1";
/// Key derivation context of a device's draw.
pub const SAMPLING_CONTEXT: &str = "groundtruth ledger audit sampling v1";
/// Largest accepted `audit_redundancy` parameter (validators drawn per device).
pub const MAX_REDUNDANCY: u8 = 16;

/// Auditors per device, in draw order (the first is the primary auditor).
pub type Assignment = BTreeMap<DeviceId, Vec<Address>>;

/// The beacon sealed at the end of `epoch`: `blake3::derive_key(BEACON_CONTEXT)` over
/// `u32 len ‖ chain_id ‖ epoch u64 ‖ height u64 ‖ state_root[32]` (integers big-endian), where
/// `height` is the closing block's and `state_root` the root after its transactions. See the
/// module docs for what the closing block's proposer can bias.
pub fn epoch_beacon(
    chain_id: &str,
    epoch: Epoch,
    height: Height,
    state_root: &[u8; 32],
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(BEACON_CONTEXT);
    let len = u32::try_from(chain_id.len()).unwrap_or(u32::MAX);
    h.update(&len.to_be_bytes());
    h.update(chain_id.as_bytes());
    h.update(&epoch.to_be_bytes());
    h.update(&height.to_be_bytes());
    h.update(state_root);
    *h.finalize().as_bytes()
}

/// The validators a draw chooses from: positive weights, one entry per address, ordered by
/// address (so the order of the input does not matter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    entries: Vec<(Address, u128)>,
    total: u128,
}

impl Pool {
    /// Builds the pool: zero stakes are dropped, an address listed twice has its stakes
    /// summed.
    pub fn new(validators: &[(Address, u64)]) -> Self {
        let mut merged: BTreeMap<Address, u128> = BTreeMap::new();
        for (a, s) in validators {
            if *s > 0 {
                let e = merged.entry(*a).or_default();
                *e = e.saturating_add(u128::from(*s));
            }
        }
        let total = merged.values().fold(0u128, |acc, s| acc.saturating_add(*s));
        Self {
            entries: merged.into_iter().collect(),
            total,
        }
    }

    /// Validators with positive stake.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no validator has stake.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The auditors of one device: `min(redundancy, self.len())` distinct validators, drawn
    /// without replacement with probability proportional to stake.
    pub fn draw(
        &self,
        beacon: &[u8; 32],
        epoch: Epoch,
        device: &DeviceId,
        redundancy: u8,
    ) -> Vec<Address> {
        let want = usize::from(redundancy).min(self.entries.len());
        let mut out = Vec::with_capacity(want);
        if want == 0 {
            return out;
        }
        let mut h = blake3::Hasher::new_derive_key(SAMPLING_CONTEXT);
        h.update(beacon);
        h.update(&epoch.to_be_bytes());
        h.update(&device.0);
        let mut xof = h.finalize_xof();
        let mut taken = vec![false; self.entries.len()];
        let mut remaining = self.total;
        while out.len() < want && remaining > 0 {
            let mut buf = [0u8; 16];
            xof.fill(&mut buf);
            let mut target = u128::from_be_bytes(buf) % remaining;
            let mut pick = None;
            for (i, ((addr, w), t)) in self.entries.iter().zip(taken.iter()).enumerate() {
                if *t {
                    continue;
                }
                if target < *w {
                    pick = Some((i, *addr, *w));
                    break;
                }
                target -= *w;
            }
            // `target < remaining` = the sum of untaken weights, so a pick is always found.
            let Some((i, addr, w)) = pick else { break };
            if let Some(t) = taken.get_mut(i) {
                *t = true;
            }
            remaining = remaining.saturating_sub(w);
            out.push(addr);
        }
        out
    }
}

/// Assigns every device to `min(redundancy, validators with stake)` distinct auditing
/// validators, weighted by stake, from `beacon` (see the module docs). Pure and deterministic:
/// the result depends only on the arguments, not on their order. Zero-stake validators are
/// never drawn; with no staked validator every device gets an empty list.
pub fn assign(
    beacon: &[u8; 32],
    epoch: Epoch,
    devices: &[DeviceId],
    validators: &[(Address, u64)],
    redundancy: u8,
) -> Assignment {
    let pool = Pool::new(validators);
    devices
        .iter()
        .map(|d| (*d, pool.draw(beacon, epoch, d, redundancy)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn addr(i: u8) -> Address {
        Address([i; 32])
    }

    fn devices(n: u32) -> Vec<DeviceId> {
        (0..n)
            .map(|i| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&i.to_be_bytes());
                DeviceId(id)
            })
            .collect()
    }

    #[test]
    fn assignment_is_deterministic_and_order_independent() {
        let devs = devices(200);
        let vals = vec![(addr(1), 10), (addr(2), 20), (addr(3), 30)];
        let a = assign(&[7; 32], 3, &devs, &vals, 2);
        assert_eq!(a, assign(&[7; 32], 3, &devs, &vals, 2));
        let mut rev_devs = devs.clone();
        rev_devs.reverse();
        let mut rev_vals = vals.clone();
        rev_vals.reverse();
        assert_eq!(a, assign(&[7; 32], 3, &rev_devs, &rev_vals, 2));
        // A device's auditors do not depend on the other devices listed.
        let one = assign(&[7; 32], 3, &devs[5..6], &vals, 2);
        assert_eq!(one.get(&devs[5]), a.get(&devs[5]));
    }

    #[test]
    fn every_device_gets_min_redundancy_validators_distinct() {
        let devs = devices(300);
        let vals: Vec<_> = (1..=5).map(|i| (addr(i), u64::from(i) * 100)).collect();
        for r in [0u8, 1, 2, 3, 5, 9, MAX_REDUNDANCY] {
            let a = assign(&[1; 32], 0, &devs, &vals, r);
            assert_eq!(a.len(), devs.len());
            for auditors in a.values() {
                assert_eq!(auditors.len(), usize::from(r).min(vals.len()));
                let distinct: BTreeSet<_> = auditors.iter().collect();
                assert_eq!(distinct.len(), auditors.len());
            }
        }
    }

    #[test]
    fn zero_stake_validators_are_never_drawn() {
        let devs = devices(2_000);
        let vals = vec![(addr(1), 0), (addr(2), 5), (addr(3), 0), (addr(4), 5)];
        let a = assign(&[2; 32], 1, &devs, &vals, 4);
        for auditors in a.values() {
            assert_eq!(auditors.len(), 2);
            assert!(!auditors.contains(&addr(1)) && !auditors.contains(&addr(3)));
        }
        let none = assign(&[2; 32], 1, &devs[..3], &[(addr(1), 0)], 1);
        assert!(none.values().all(Vec::is_empty));
        let empty = assign(&[2; 32], 1, &devs[..3], &[], 3);
        assert!(empty.values().all(Vec::is_empty));
    }

    #[test]
    fn duplicate_validators_merge_their_stake() {
        let pool = Pool::new(&[(addr(1), 3), (addr(2), 4), (addr(1), 5)]);
        assert_eq!(pool, Pool::new(&[(addr(2), 4), (addr(1), 8)]));
        assert_eq!(pool.len(), 2);
        assert!(!pool.is_empty());
    }

    #[test]
    fn draws_follow_stake() {
        // 10 000 devices, stakes 1:3: the big validator should audit ~75 % of them.
        let devs = devices(10_000);
        let vals = vec![(addr(1), 1_000), (addr(2), 3_000)];
        let a = assign(&[9; 32], 42, &devs, &vals, 1);
        let big = a.values().filter(|v| v.first() == Some(&addr(2))).count();
        // 7 500 expected, σ ≈ 43: ±5 % of 10 000 is > 10 σ.
        assert!((7_000..=8_000).contains(&big), "big validator drew {big}");
        // Stakes 1:1:2 with redundancy 2: every device gets two of three; the heaviest is
        // most often first.
        let vals = vec![(addr(1), 1), (addr(2), 1), (addr(3), 2)];
        let a = assign(&[9; 32], 42, &devs, &vals, 2);
        let first3 = a.values().filter(|v| v.first() == Some(&addr(3))).count();
        assert!(
            (4_500..=5_500).contains(&first3),
            "first draw of 3: {first3}"
        );
        // P(3 in the pair) = 1/2 + 2 · 1/4 · 2/3 = 5/6.
        let has3 = a.values().filter(|v| v.contains(&addr(3))).count();
        assert!((7_833..=8_833).contains(&has3), "3 drawn for {has3}");
    }

    #[test]
    fn another_beacon_or_epoch_changes_the_assignment() {
        let devs = devices(1_000);
        let vals: Vec<_> = (1..=4).map(|i| (addr(i), 10)).collect();
        let a = assign(&[1; 32], 5, &devs, &vals, 1);
        let b = assign(&[2; 32], 5, &devs, &vals, 1);
        let c = assign(&[1; 32], 6, &devs, &vals, 1);
        let moved = |x: &Assignment| devs.iter().filter(|d| a.get(d) != x.get(d)).count();
        // ~3/4 of devices move with 4 equal validators.
        assert!(moved(&b) > 600, "{}", moved(&b));
        assert!(moved(&c) > 600, "{}", moved(&c));
    }

    #[test]
    fn beacon_binds_every_input() {
        let b = epoch_beacon("c", 1, 4, &[0; 32]);
        assert_ne!(b, epoch_beacon("d", 1, 4, &[0; 32]));
        assert_ne!(b, epoch_beacon("c", 2, 4, &[0; 32]));
        assert_ne!(b, epoch_beacon("c", 1, 5, &[0; 32]));
        assert_ne!(b, epoch_beacon("c", 1, 4, &[1; 32]));
        assert_eq!(b, epoch_beacon("c", 1, 4, &[0; 32]));
    }
}
