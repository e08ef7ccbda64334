//! Records of the epoch seal and of the agreement on what was read.
//!
//! At the end of an epoch the ledger writes an [`EpochSeal`]: the beacon for audit sampling and
//! the committee (operator → voting power) that served during the epoch. After that, each
//! committee member attests, by an `AttestReadings` transaction, the readings root it built
//! from its store ([`ReadingsAttestation`]). Once attestations carrying the same
//! `(readings_root, readings)` reach ≥ 2/3 of the committee's power, the ledger fixes it
//! ([`EpochReadings`]); a member whose attestation differs (before or after the fix) is
//! flagged for the epoch: it must fill its store from peers. Flagging is not slashing: another
//! view of the readings is not provably malicious.

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::types::{Address, Epoch, Height};

/// Largest committee a seal holds when decoded (the validator set is bounded by
/// `max_validators`, a `u32`; this bounds what a snapshot may ask us to allocate up front).
const MAX_DECODED_COMMITTEE: usize = 4_096;

/// What the ledger fixed at the end of an epoch, for sampling and attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochSeal {
    /// The epoch sealed.
    pub epoch: Epoch,
    /// Height of the block that closed it.
    pub closed_at_height: Height,
    /// The sampling beacon ([`crate::sampling::epoch_beacon`]).
    pub beacon: [u8; 32],
    /// The validator set that served during the epoch: (operator, voting power), ordered by
    /// operator, powers positive. It samples the epoch's audits and attests its readings.
    pub committee: Vec<(Address, u64)>,
}

impl EpochSeal {
    /// Total voting power of the committee (u128: cannot overflow).
    pub fn total_power(&self) -> u128 {
        self.committee.iter().map(|(_, p)| u128::from(*p)).sum()
    }

    /// Voting power of `operator` in the committee (0 if absent).
    pub fn power_of(&self, operator: &Address) -> u64 {
        self.committee
            .binary_search_by(|(a, _)| a.cmp(operator))
            .ok()
            .and_then(|i| self.committee.get(i))
            .map_or(0, |(_, p)| *p)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch)
            .u64(self.closed_at_height)
            .raw(&self.beacon)
            .u32(u32::try_from(self.committee.len()).unwrap_or(u32::MAX));
        for (a, p) in &self.committee {
            a.encode(w);
            w.u64(*p);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let epoch = r.u64()?;
        let closed_at_height = r.u64()?;
        let beacon = r.array()?;
        let n = r.u32()?;
        let n = usize::try_from(n).map_err(|_| TxError::Malformed("committee too large"))?;
        if n > MAX_DECODED_COMMITTEE {
            return Err(TxError::Malformed("committee too large"));
        }
        let mut committee: Vec<(Address, u64)> = Vec::with_capacity(n);
        for _ in 0..n {
            let a = Address::decode(r)?;
            let p = r.u64()?;
            if p == 0 || committee.last().is_some_and(|(l, _)| *l >= a) {
                return Err(TxError::Malformed("committee not canonical"));
            }
            committee.push((a, p));
        }
        Ok(Self {
            epoch,
            closed_at_height,
            beacon,
            committee,
        })
    }
}

/// One validator's attestation of an epoch's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingsAttestation {
    /// Epoch attested.
    pub epoch: Epoch,
    /// Operator of the attesting validator.
    pub validator: Address,
    /// Root over the per-device readings commitments the validator built from its store.
    pub readings_root: [u8; 32],
    /// Number of readings under the root.
    pub readings: u64,
    /// Height of the block that recorded it.
    pub height: Height,
}

impl ReadingsAttestation {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch);
        self.validator.encode(w);
        w.raw(&self.readings_root)
            .u64(self.readings)
            .u64(self.height);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            epoch: r.u64()?,
            validator: Address::decode(r)?,
            readings_root: r.array()?,
            readings: r.u64()?,
            height: r.u64()?,
        })
    }
}

/// An epoch's readings root, fixed once ≥ 2/3 of the committee's power attested it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochReadings {
    /// The epoch.
    pub epoch: Epoch,
    /// The agreed readings root.
    pub root: [u8; 32],
    /// The agreed number of readings.
    pub readings: u64,
    /// Height of the block whose attestation reached the threshold.
    pub fixed_at_height: Height,
}

impl EpochReadings {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch)
            .raw(&self.root)
            .u64(self.readings)
            .u64(self.fixed_at_height);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            epoch: r.u64()?,
            root: r.array()?,
            readings: r.u64()?,
            fixed_at_height: r.u64()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_seals_are_canonical() {
        let seal = EpochSeal {
            epoch: 3,
            closed_at_height: 16,
            beacon: [5; 32],
            committee: vec![(Address([1; 32]), 10), (Address([2; 32]), 30)],
        };
        let mut w = Writer::new();
        seal.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(EpochSeal::decode(&mut r).unwrap(), seal);
        r.finish().unwrap();
        assert_eq!(seal.total_power(), 40);
        assert_eq!(seal.power_of(&Address([2; 32])), 30);
        assert_eq!(seal.power_of(&Address([3; 32])), 0);

        let unordered = EpochSeal {
            committee: vec![(Address([2; 32]), 10), (Address([1; 32]), 30)],
            ..seal.clone()
        };
        let zero = EpochSeal {
            committee: vec![(Address([1; 32]), 0)],
            ..seal
        };
        for bad in [unordered, zero] {
            let mut w = Writer::new();
            bad.encode(&mut w);
            let bytes = w.into_bytes();
            assert!(EpochSeal::decode(&mut Reader::new(&bytes)).is_err());
        }

        let att = ReadingsAttestation {
            epoch: 2,
            validator: Address([9; 32]),
            readings_root: [8; 32],
            readings: 77,
            height: 12,
        };
        let mut w = Writer::new();
        att.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(
            ReadingsAttestation::decode(&mut Reader::new(&bytes)).unwrap(),
            att
        );
        let fixed = EpochReadings {
            epoch: 2,
            root: [8; 32],
            readings: 77,
            fixed_at_height: 13,
        };
        let mut w = Writer::new();
        fixed.encode(&mut w);
        let bytes = w.into_bytes();
        assert_eq!(
            EpochReadings::decode(&mut Reader::new(&bytes)).unwrap(),
            fixed
        );
    }
}
