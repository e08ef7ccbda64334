//! Storage audits: data commitments of storage devices, the per-epoch challenge the ledger
//! derives for each, and what it records.
//!
//! # The state machine, per storage device
//!
//! ```text
//!  RegisterDevice (kind storage)
//!        │  CommitStorage { device, root, depth, num_chunks }   (signer: the owner; once)
//!        ▼
//!  committed in epoch s ── every epoch e ≥ s is challenged ──────────────────────────────┐
//!        │  end of epoch e: the seal fixes beacon_e; anyone derives                        │
//!        │    seed = storage_seed(beacon_e, e, device)   (the key that committed)          │
//!        │    Challenge { root, depth, num_chunks, seed, k = storage_challenge_k }         │
//!        │    indices = Challenge::indices()  (blake3(tag ‖ seed ‖ i) mod num_chunks)      │
//!        │  epochs e+1 ..= e+D (D = storage_deadline_epochs):                              │
//!        │    SubmitStorageProof { epoch: e, device, proof }  (signer: the owner)          │
//!        │      statement ≠ (root, depth, num_chunks, seed, k)  → rejected (fee only)      │
//!        │      STARK verifies                                  → Passed for e             │
//!        │      STARK fails                                     → fault (bad proof) for e  │
//!        │  end of epoch e+D, no record for e                   → fault (missed) for e     │
//!        ▼                                                                                 │
//!  faults = storage_faults_to_suspend → device Suspended (out of the registry, still      │
//!                                       challenged)                                       │
//!  faults = storage_faults_to_slash   → owner's provider stake slashed                    │
//!                                       slash_storage_fault_bp, evidence = the faults;     │
//!                                       the commitment is closed (no more challenges) ◄────┘
//!  RetireDevice in epoch r            → epochs ≥ r are not challenged; epochs < r still are
//! ```
//!
//! Faults count over the commitment's life (a pass does not erase one): a provider that lost
//! part of its data passes some epochs by luck, and only a cumulative count catches it.
//!
//! # Detection
//!
//! A provider that deleted a fraction `f` of its chunks answers an epoch's challenge only if
//! none of its `k' = next_pow2(k)` samples hits a deleted chunk (indices are uniform over the
//! chunks, drawn with replacement): it survives one epoch with probability `(1 − f)^k'` ≤
//! `(1 − f)^k`, and `n` epochs with `(1 − f)^(k'·n)`. To catch it with probability at least
//! `p` takes `n = ⌈ln(1 − p) / (k'·ln(1 − f))⌉` epochs ([`epochs_to_detect`]); reaching
//! `storage_faults_to_slash = m` faults takes, in expectation, `m / (1 − (1 − f)^k')` epochs.
//! With k = 100 (128 samples) and f = 0.1, one epoch is missed with probability
//! `0.9^128 ≈ 1.4·10⁻⁶`.
//!
//! # Why the seed cannot be chosen
//!
//! The seed hashes the epoch's beacon (known only after the epoch's closing block, see
//! [`crate::sampling`]) with the device key that made the commitment, which never changes for
//! the commitment's life (a key rotation does not move it: rotating keys to shop for a seed
//! gains nothing). The commitment precedes the seal of every epoch it is challenged for.

use groundtruth_device_sdk::DeviceId;
use groundtruth_proofs::Challenge;

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::evidence::MAX_REASON_LEN;
use crate::types::{decode_device, encode_device, Address, Epoch, Height};

/// Key derivation context of a storage challenge seed.
pub const STORAGE_SEED_CONTEXT: &str = "groundtruth ledger storage challenge v1";
/// Largest `storage_faults_to_slash` (bounds the evidence stored with a slash).
pub const MAX_STORAGE_FAULTS: u32 = 64;
/// Reporter of slashes the ledger applies by itself (missed deadlines, failing storage
/// proofs): the zero address, which no key signs for.
pub const LEDGER_REPORTER: Address = Address([0; 32]);

/// The challenge seed of `device` for `epoch`:
/// `blake3::derive_key(STORAGE_SEED_CONTEXT)` over `beacon[32] ‖ epoch u64 BE ‖ device[32]`,
/// where `beacon` is the epoch's sealed beacon and `device` the key that made the commitment.
pub fn storage_seed(beacon: &[u8; 32], epoch: Epoch, device: &DeviceId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(STORAGE_SEED_CONTEXT);
    h.update(beacon);
    h.update(&epoch.to_be_bytes());
    h.update(&device.0);
    *h.finalize().as_bytes()
}

/// Epochs needed to catch, with probability at least `p`, a provider that deleted a fraction
/// `f` of its chunks when `k` chunks are challenged per epoch (`k` rounded up to a power of two,
/// as the proof samples): `⌈ln(1 − p) / (k'·ln(1 − f))⌉`. `None` when `f` or `p` is not in
/// `(0, 1)` or `k` is 0. For planning and tests; not consensus code.
pub fn epochs_to_detect(f: f64, k: u32, p: f64) -> Option<u64> {
    if !(f > 0.0 && f < 1.0 && p > 0.0 && p < 1.0) || k == 0 {
        return None;
    }
    let samples = f64::from(k.checked_next_power_of_two()?);
    let n = ((1.0 - p).ln() / (samples * (1.0 - f).ln())).ceil();
    // `n` is positive and finite here; the cast saturates.
    Some((n as u64).max(1))
}

/// What a storage device committed to, and its audit history's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageCommitment {
    /// The device key that made the commitment (the record's key; stays when the device
    /// rotates its key).
    pub device: DeviceId,
    /// The device's owner (the provider that proves and is slashed).
    pub owner: Address,
    /// Merkle root of the data (canonical bytes of a Rescue digest,
    /// `groundtruth_proofs::por`).
    pub root: [u8; 32],
    /// Tree depth (`2^depth` leaves).
    pub depth: u8,
    /// Number of 1 KiB chunks (leaves in use).
    pub num_chunks: u64,
    /// Epoch in which it was committed: the first epoch challenged.
    pub since_epoch: Epoch,
    /// Height of the block that recorded it.
    pub committed_at: Height,
    /// First epoch no longer challenged (the device was retired during it), if any.
    pub closed_from: Option<Epoch>,
    /// Whether the owner was slashed for this commitment's faults (no more challenges).
    pub slashed: bool,
    /// Faults so far, oldest first (at most [`MAX_STORAGE_FAULTS`]).
    pub faults: Vec<StorageFault>,
}

impl StorageCommitment {
    /// Whether `epoch`'s challenge applies to this commitment.
    pub fn challenged(&self, epoch: Epoch) -> bool {
        !self.slashed && epoch >= self.since_epoch && self.closed_from.is_none_or(|c| epoch < c)
    }

    /// The challenge of `epoch` given its sealed `beacon`, with `k` chunks.
    pub fn challenge(&self, beacon: &[u8; 32], epoch: Epoch, k: u32) -> Challenge {
        Challenge {
            root: self.root,
            depth: self.depth,
            num_chunks: self.num_chunks,
            seed: storage_seed(beacon, epoch, &self.device),
            k,
        }
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        encode_device(&self.device, w);
        self.owner.encode(w);
        w.raw(&self.root)
            .u8(self.depth)
            .u64(self.num_chunks)
            .u64(self.since_epoch)
            .u64(self.committed_at);
        match self.closed_from {
            None => w.u8(0),
            Some(e) => w.u8(1).u64(e),
        };
        w.bool(self.slashed);
        encode_faults(&self.faults, w);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            device: decode_device(r)?,
            owner: Address::decode(r)?,
            root: r.array()?,
            depth: r.u8()?,
            num_chunks: r.u64()?,
            since_epoch: r.u64()?,
            committed_at: r.u64()?,
            closed_from: if r.option_tag()? {
                Some(r.u64()?)
            } else {
                None
            },
            slashed: r.bool()?,
            faults: decode_faults(r)?,
        })
    }
}

/// Why an epoch's challenge counts against a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageFaultKind {
    /// No valid proof by the deadline.
    Missed,
    /// A proof for the ledger's challenge that does not verify (the transaction is in the
    /// block at the audit's height).
    BadProof {
        /// blake3 of the proof bytes.
        proof_digest: [u8; 32],
    },
    /// A committee decided (≥ 2/3 of its weight) that the device failed the epoch's spot
    /// retrieval; the reports are in the round ([`crate::State::provider_audit`]).
    RetrievalFailed,
}

/// One fault: the epoch whose challenge failed, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageFault {
    /// The challenged epoch.
    pub epoch: Epoch,
    /// Missed deadline or failing proof.
    pub kind: StorageFaultKind,
}

impl StorageFault {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch);
        match &self.kind {
            StorageFaultKind::Missed => w.u8(1),
            StorageFaultKind::BadProof { proof_digest } => w.u8(2).raw(proof_digest),
            StorageFaultKind::RetrievalFailed => w.u8(3),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let epoch = r.u64()?;
        let kind = match r.u8()? {
            1 => StorageFaultKind::Missed,
            2 => StorageFaultKind::BadProof {
                proof_digest: r.array()?,
            },
            3 => StorageFaultKind::RetrievalFailed,
            _ => return Err(TxError::Malformed("unknown storage fault")),
        };
        Ok(Self { epoch, kind })
    }
}

pub(crate) fn encode_faults(faults: &[StorageFault], w: &mut Writer) {
    w.u32(u32::try_from(faults.len()).unwrap_or(u32::MAX));
    for f in faults {
        f.encode(w);
    }
}

pub(crate) fn decode_faults(r: &mut Reader<'_>) -> Result<Vec<StorageFault>, TxError> {
    let n = r.u32()?;
    if n > MAX_STORAGE_FAULTS {
        return Err(TxError::Malformed("too many storage faults"));
    }
    (0..n).map(|_| StorageFault::decode(r)).collect()
}

/// How an epoch's storage challenge ended for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageOutcome {
    /// A proof for the ledger's challenge verified.
    Passed,
    /// A proof for the ledger's challenge failed verification (a fault).
    Failed {
        /// What the verifier said (at most 256 bytes).
        reason: String,
    },
    /// No valid proof by the deadline (a fault).
    Missed,
}

/// The record of one device's storage challenge for one epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageAudit {
    /// The challenged epoch.
    pub epoch: Epoch,
    /// The commitment's key ([`StorageCommitment::device`]).
    pub device: DeviceId,
    /// Passed, failed or missed.
    pub outcome: StorageOutcome,
    /// blake3 of the proof bytes (zero when missed).
    pub proof_digest: [u8; 32],
    /// Height of the block that recorded it.
    pub height: Height,
}

impl StorageAudit {
    /// Whether this outcome counts as a fault.
    pub fn is_fault(&self) -> bool {
        !matches!(self.outcome, StorageOutcome::Passed)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch);
        encode_device(&self.device, w);
        match &self.outcome {
            StorageOutcome::Passed => w.u8(1),
            StorageOutcome::Failed { reason } => w.u8(2).str(reason),
            StorageOutcome::Missed => w.u8(3),
        };
        w.raw(&self.proof_digest).u64(self.height);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let epoch = r.u64()?;
        let device = decode_device(r)?;
        let outcome = match r.u8()? {
            1 => StorageOutcome::Passed,
            2 => {
                let reason = r.string()?;
                if reason.len() > MAX_REASON_LEN {
                    return Err(TxError::Malformed("storage failure reason too long"));
                }
                StorageOutcome::Failed { reason }
            }
            3 => StorageOutcome::Missed,
            _ => return Err(TxError::Malformed("unknown storage outcome")),
        };
        Ok(Self {
            epoch,
            device,
            outcome,
            proof_digest: r.array()?,
            height: r.u64()?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn seed_depends_on_beacon_epoch_and_device() {
        let d = DeviceId([7; 32]);
        let s = storage_seed(&[1; 32], 3, &d);
        assert_eq!(s, storage_seed(&[1; 32], 3, &d));
        assert_ne!(s, storage_seed(&[2; 32], 3, &d));
        assert_ne!(s, storage_seed(&[1; 32], 4, &d));
        assert_ne!(s, storage_seed(&[1; 32], 3, &DeviceId([8; 32])));
    }

    #[test]
    fn detection_epochs_follow_the_formula() {
        // k = 100 → 128 samples; f = 0.01: survival 0.99^128 ≈ 0.276 per epoch; to catch with
        // p = 0.99 takes ⌈ln 0.01 / (128 ln 0.99)⌉ = ⌈3.58⌉ = 4 epochs.
        assert_eq!(epochs_to_detect(0.01, 100, 0.99), Some(4));
        assert!(0.99f64.powi(128 * 3) > 0.01 && 0.99f64.powi(128 * 4) <= 0.01);
        // f = 0.1: one epoch is enough.
        assert_eq!(epochs_to_detect(0.1, 100, 0.999_99), Some(1));
        // k = 4, f = 0.1: 0.9^4 = 0.656 per epoch; p = 0.95 needs ⌈ln 0.05 / (4 ln 0.9)⌉ = 8.
        assert_eq!(epochs_to_detect(0.1, 4, 0.95), Some(8));
        assert_eq!(epochs_to_detect(0.0, 4, 0.95), None);
        assert_eq!(epochs_to_detect(0.1, 0, 0.95), None);
        assert_eq!(epochs_to_detect(0.1, 4, 1.0), None);
    }

    #[test]
    fn records_round_trip() {
        let c = StorageCommitment {
            device: DeviceId([1; 32]),
            owner: Address([2; 32]),
            root: [3; 32],
            depth: 5,
            num_chunks: 20,
            since_epoch: 4,
            committed_at: 17,
            closed_from: Some(9),
            slashed: true,
            faults: vec![
                StorageFault {
                    epoch: 5,
                    kind: StorageFaultKind::Missed,
                },
                StorageFault {
                    epoch: 6,
                    kind: StorageFaultKind::BadProof {
                        proof_digest: [4; 32],
                    },
                },
            ],
        };
        let mut w = Writer::new();
        c.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(StorageCommitment::decode(&mut r).unwrap(), c);
        r.finish().unwrap();
        for outcome in [
            StorageOutcome::Passed,
            StorageOutcome::Failed { reason: "x".into() },
            StorageOutcome::Missed,
        ] {
            let a = StorageAudit {
                epoch: 3,
                device: DeviceId([5; 32]),
                outcome,
                proof_digest: [6; 32],
                height: 8,
            };
            let mut w = Writer::new();
            a.encode(&mut w);
            let bytes = w.into_bytes();
            let mut r = Reader::new(&bytes);
            assert_eq!(StorageAudit::decode(&mut r).unwrap(), a);
            r.finish().unwrap();
        }
    }

    #[test]
    fn challenged_epochs() {
        let mut c = StorageCommitment {
            device: DeviceId([1; 32]),
            owner: Address([2; 32]),
            root: [0; 32],
            depth: 3,
            num_chunks: 8,
            since_epoch: 2,
            committed_at: 9,
            closed_from: None,
            slashed: false,
            faults: vec![],
        };
        assert!(!c.challenged(1));
        assert!(c.challenged(2) && c.challenged(100));
        c.closed_from = Some(5);
        assert!(c.challenged(4) && !c.challenged(5));
        c.slashed = true;
        assert!(!c.challenged(3));
    }
}
