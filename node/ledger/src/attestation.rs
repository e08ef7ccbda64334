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
    /// State root after the closing block's transactions (the beacon's input, and the state
    /// root the epoch commitment carries).
    pub state_root: [u8; 32],
    /// The epoch commitment, once every agreed batch is audited or the audit deadline passed.
    pub commitment: Option<EpochCommitment>,
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
        w.raw(&self.state_root);
        match &self.commitment {
            None => {
                w.u8(0);
            }
            Some(c) => {
                w.u8(1);
                c.encode(w);
            }
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
        let state_root = r.array()?;
        let commitment = match r.u8()? {
            0 => None,
            1 => Some(EpochCommitment::decode(r)?),
            _ => return Err(TxError::Malformed("bad commitment tag")),
        };
        Ok(Self {
            epoch,
            closed_at_height,
            beacon,
            committee,
            state_root,
            commitment,
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

/// Domain tag of the readings root over an epoch's audit batches.
pub const READINGS_ROOT_DOMAIN: &[u8] = b"groundtruth/v1/readings-root\0";
/// Domain tag of the verified-totals root of an epoch commitment.
pub const TOTALS_ROOT_DOMAIN: &[u8] = b"groundtruth/v1/totals-root\0";
/// Domain tag of the audit-proofs root of an epoch commitment.
pub const PROOFS_ROOT_DOMAIN: &[u8] = b"groundtruth/v1/proofs-root\0";
/// Domain tag of an epoch commitment's digest (what L1 anchors).
pub const COMMITMENT_DOMAIN: &[u8] = b"groundtruth/v1/epoch-commitment\0";
/// Most batches one attestation carries (one per committee member with readings).
pub const MAX_BATCHES: usize = 256;

/// One auditor's batch of an epoch: the readings of every device assigned to `auditor`
/// (device after device in id order, each in sequence order), as the metered-output commitment
/// ([`groundtruth_proofs::commitment_from_readings`]) over the epoch window binds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchCommitment {
    /// Operator of the validator assigned to prove the batch.
    pub auditor: Address,
    /// The Rescue-Prime readings commitment of the batch.
    pub commitment: [u8; 32],
    /// Number of readings in the batch (positive).
    pub readings: u64,
}

impl BatchCommitment {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.auditor.encode(w);
        w.raw(&self.commitment).u64(self.readings);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            auditor: Address::decode(r)?,
            commitment: r.array()?,
            readings: r.u64()?,
        })
    }
}

/// The readings root over an epoch's batches: blake3 of [`READINGS_ROOT_DOMAIN`], the epoch and
/// each batch's `auditor ‖ commitment ‖ readings` in auditor order (integers big-endian).
pub fn readings_root(epoch: Epoch, batches: &[BatchCommitment]) -> [u8; 32] {
    let mut w = Writer::new();
    w.raw(READINGS_ROOT_DOMAIN).u64(epoch);
    for b in batches {
        b.encode(&mut w);
    }
    *blake3::hash(&w.into_bytes()).as_bytes()
}

/// Checks that batches are in strictly increasing auditor order, non-empty, at most
/// [`MAX_BATCHES`], and returns their total reading count.
pub fn check_batches(batches: &[BatchCommitment]) -> Result<u64, TxError> {
    if batches.len() > MAX_BATCHES {
        return Err(TxError::Malformed("too many batches"));
    }
    let mut total: u64 = 0;
    for (i, b) in batches.iter().enumerate() {
        if b.readings == 0 {
            return Err(TxError::Malformed("empty batch"));
        }
        if i > 0 && batches.get(i - 1).is_some_and(|p| p.auditor >= b.auditor) {
            return Err(TxError::Malformed("batches not in auditor order"));
        }
        total = total.checked_add(b.readings).ok_or(TxError::Overflow)?;
    }
    Ok(total)
}

/// The verified-totals root of an epoch commitment: blake3 of [`TOTALS_ROOT_DOMAIN`], the epoch
/// and each verified device's `id ‖ audit kind tag ‖ total`, in (device, kind) order.
pub fn totals_root<'a>(
    epoch: Epoch,
    totals: impl IntoIterator<Item = (&'a [u8; 32], crate::types::AuditKind, u64)>,
) -> [u8; 32] {
    let mut w = Writer::new();
    w.raw(TOTALS_ROOT_DOMAIN).u64(epoch);
    for (id, kind, total) in totals {
        w.raw(id).u8(kind.tag()).u64(total);
    }
    *blake3::hash(&w.into_bytes()).as_bytes()
}

/// The audit-proofs root of an epoch commitment: blake3 of [`PROOFS_ROOT_DOMAIN`], the epoch and
/// each audited batch's `auditor ‖ proof digest`, in auditor order.
pub fn proofs_root<'a>(
    epoch: Epoch,
    proofs: impl IntoIterator<Item = (&'a Address, &'a [u8; 32])>,
) -> [u8; 32] {
    let mut w = Writer::new();
    w.raw(PROOFS_ROOT_DOMAIN).u64(epoch);
    for (auditor, digest) in proofs {
        auditor.encode(&mut w);
        w.raw(digest);
    }
    *blake3::hash(&w.into_bytes()).as_bytes()
}

/// An audit proof the ledger verified for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAudit {
    /// Operator that submitted the verified proof (the assigned auditor, or another validator
    /// after the deadline reassigned the batch).
    pub prover: Address,
    /// blake3 digest of the proof envelope.
    pub proof_digest: [u8; 32],
    /// Height of the block that verified it.
    pub height: Height,
}

/// An epoch's readings root, fixed once ≥ 2/3 of the committee's power attested it, with the
/// batches under it and the audits verified so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReadings {
    /// The epoch.
    pub epoch: Epoch,
    /// The agreed readings root ([`readings_root`] of `batches`).
    pub root: [u8; 32],
    /// The agreed number of readings.
    pub readings: u64,
    /// Height of the block whose attestation reached the threshold.
    pub fixed_at_height: Height,
    /// The agreed batches, in auditor order, each with its verified audit once there is one.
    pub batches: Vec<(BatchCommitment, Option<BatchAudit>)>,
}

impl EpochReadings {
    /// Whether every batch has a verified audit.
    pub fn fully_audited(&self) -> bool {
        self.batches.iter().all(|(_, a)| a.is_some())
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch)
            .raw(&self.root)
            .u64(self.readings)
            .u64(self.fixed_at_height)
            .u32(u32::try_from(self.batches.len()).unwrap_or(u32::MAX));
        for (b, a) in &self.batches {
            b.encode(w);
            match a {
                None => {
                    w.u8(0);
                }
                Some(a) => {
                    w.u8(1);
                    a.prover.encode(w);
                    w.raw(&a.proof_digest).u64(a.height);
                }
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let epoch = r.u64()?;
        let root = r.array()?;
        let readings = r.u64()?;
        let fixed_at_height = r.u64()?;
        let n = usize::try_from(r.u32()?).map_err(|_| TxError::Malformed("too many batches"))?;
        if n > MAX_BATCHES {
            return Err(TxError::Malformed("too many batches"));
        }
        let mut batches = Vec::with_capacity(n);
        for _ in 0..n {
            let b = BatchCommitment::decode(r)?;
            let a = match r.u8()? {
                0 => None,
                1 => Some(BatchAudit {
                    prover: Address::decode(r)?,
                    proof_digest: r.array()?,
                    height: r.u64()?,
                }),
                _ => return Err(TxError::Malformed("bad audit tag")),
            };
            batches.push((b, a));
        }
        Ok(Self {
            epoch,
            root,
            readings,
            fixed_at_height,
            batches,
        })
    }
}

/// What the ledger commits to for an epoch once its audits are done (or their deadline passed):
/// what the oracle anchors on L1 and the API serves. Verified production for the epoch is final
/// from here on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochCommitment {
    /// The epoch.
    pub epoch: Epoch,
    /// The agreed readings root (zero when no root was fixed in time).
    pub readings_root: [u8; 32],
    /// blake3 over [`TOTALS_ROOT_DOMAIN`], the epoch and each verified device's
    /// `id ‖ audit kind tag ‖ verified total`, in device order.
    pub totals_root: [u8; 32],
    /// blake3 over [`PROOFS_ROOT_DOMAIN`], the epoch and each audited batch's
    /// `auditor ‖ proof digest`, in auditor order.
    pub proofs_root: [u8; 32],
    /// State root sealed with the epoch ([`EpochSeal::state_root`]).
    pub state_root: [u8; 32],
    /// Batches agreed.
    pub batches: u32,
    /// Batches with a verified audit.
    pub audited_batches: u32,
    /// Readings under verified audits.
    pub verified_readings: u64,
    /// Height of the block that recorded the commitment.
    pub height: Height,
}

impl EpochCommitment {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch)
            .raw(&self.readings_root)
            .raw(&self.totals_root)
            .raw(&self.proofs_root)
            .raw(&self.state_root)
            .u32(self.batches)
            .u32(self.audited_batches)
            .u64(self.verified_readings)
            .u64(self.height);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            epoch: r.u64()?,
            readings_root: r.array()?,
            totals_root: r.array()?,
            proofs_root: r.array()?,
            state_root: r.array()?,
            batches: r.u32()?,
            audited_batches: r.u32()?,
            verified_readings: r.u64()?,
            height: r.u64()?,
        })
    }

    /// The digest L1 anchors: blake3 of [`COMMITMENT_DOMAIN`], the chain id and the epoch,
    /// readings root, totals root, proofs root and state root.
    pub fn digest(&self, chain_id: &str) -> [u8; 32] {
        let mut w = Writer::new();
        w.raw(COMMITMENT_DOMAIN)
            .str(chain_id)
            .u64(self.epoch)
            .raw(&self.readings_root)
            .raw(&self.totals_root)
            .raw(&self.proofs_root)
            .raw(&self.state_root);
        *blake3::hash(&w.into_bytes()).as_bytes()
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
            state_root: [6; 32],
            commitment: None,
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
        let batch = BatchCommitment {
            auditor: Address([4; 32]),
            commitment: [3; 32],
            readings: 77,
        };
        let fixed = EpochReadings {
            epoch: 2,
            root: readings_root(2, &[batch]),
            readings: 77,
            fixed_at_height: 13,
            batches: vec![
                (batch, None),
                (
                    batch,
                    Some(BatchAudit {
                        prover: Address([5; 32]),
                        proof_digest: [6; 32],
                        height: 14,
                    }),
                ),
            ],
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
