//! Misbehaviour evidence and its checks.
//!
//! Signatures are checked with `ed25519-consensus` (ZIP-215), the same rule the device SDK
//! applies on every path, so no two validators can disagree about a piece of evidence.

use groundtruth_device_sdk::{SignedReading, MAX_FRAME_LEN};

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::types::{Address, ConsensusKey, Epoch, Height};

/// Domain tag of a consensus vote's signing bytes; identical to the BFT adapter's
/// (`node/consensus`, `types::VOTE_DOMAIN`), so the engine's own votes are the evidence.
pub const VOTE_DOMAIN: &[u8] = b"groundtruth/consensus/vote/v1";

/// Largest verifier message stored with a [`SlashEvidence::BadAuditProof`], bytes.
pub const MAX_REASON_LEN: usize = 256;

/// Tendermint vote type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VoteKind {
    /// First-phase vote.
    Prevote,
    /// Second-phase vote.
    Precommit,
}

impl VoteKind {
    /// Tag in the signing bytes and in this crate's codec: 0 prevote, 1 precommit.
    const fn tag(self) -> u8 {
        match self {
            Self::Prevote => 0,
            Self::Precommit => 1,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            0 => Ok(Self::Prevote),
            1 => Ok(Self::Precommit),
            _ => Err(TxError::Malformed("unknown vote kind")),
        }
    }
}

/// The exact bytes a validator's consensus key signs for a vote, as the BFT adapter
/// (`node/consensus`, `types::Vote::to_sign_bytes`) writes them:
///
/// `VOTE_DOMAIN ‖ kind u8 (0 prevote, 1 precommit) ‖ height u64 BE ‖ round i64 BE ‖
/// (0 for nil | 1 ‖ value_hash[32]) ‖ validator[32]`.
///
/// There is no chain id in these bytes: a validator must not reuse its consensus key on
/// another network (its votes there would count as evidence here).
pub fn vote_sign_bytes(
    kind: VoteKind,
    height: Height,
    round: u32,
    value: Option<&[u8; 32]>,
    validator: &ConsensusKey,
) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(VOTE_DOMAIN)
        .u8(kind.tag())
        .u64(height)
        .u64(u64::from(round));
    match value {
        None => w.u8(0),
        Some(h) => w.u8(1).raw(h),
    };
    w.raw(&validator.0);
    w.into_bytes()
}

/// One signed consensus vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedVote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Consensus height.
    pub height: Height,
    /// Consensus round (non-negative; the engine's `i64` round).
    pub round: u32,
    /// Hash of the block voted for; `None` for a nil vote.
    pub value: Option<[u8; 32]>,
    /// ed25519 signature over [`vote_sign_bytes`].
    pub signature: [u8; 64],
}

impl SignedVote {
    /// Parses the engine's signing bytes (see [`vote_sign_bytes`]) into the signer's key and
    /// the vote, so that the adapter can turn the engine's equivocation evidence (signing
    /// bytes and signatures) into [`DoubleSignEvidence`]. Does not check the signature.
    pub fn from_sign_bytes(
        message: &[u8],
        signature: [u8; 64],
    ) -> Result<(ConsensusKey, Self), TxError> {
        let rest = message
            .strip_prefix(VOTE_DOMAIN)
            .ok_or(TxError::InvalidEvidence("not a vote"))?;
        let mut r = Reader::new(rest);
        let kind = VoteKind::decode(&mut r)?;
        let height = r.u64()?;
        let round = u32::try_from(r.u64()?).map_err(|_| TxError::InvalidEvidence("bad round"))?;
        let value = if r.option_tag()? {
            Some(r.array()?)
        } else {
            None
        };
        let validator = Address::decode(&mut r)?;
        r.finish()?;
        Ok((
            validator,
            Self {
                kind,
                height,
                round,
                value,
                signature,
            },
        ))
    }

    /// The signing bytes of this vote by `validator`.
    pub fn sign_bytes(&self, validator: &ConsensusKey) -> Vec<u8> {
        vote_sign_bytes(
            self.kind,
            self.height,
            self.round,
            self.value.as_ref(),
            validator,
        )
    }

    fn encode(&self, w: &mut Writer) {
        w.u8(self.kind.tag()).u64(self.height).u32(self.round);
        match &self.value {
            None => w.u8(0),
            Some(h) => w.u8(1).raw(h),
        };
        w.raw(&self.signature);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            kind: VoteKind::decode(r)?,
            height: r.u64()?,
            round: r.u32()?,
            value: if r.option_tag()? {
                Some(r.array()?)
            } else {
                None
            },
            signature: r.array()?,
        })
    }

    fn verify(&self, key: &ConsensusKey) -> Result<(), TxError> {
        verify_sig(key, &self.signature, &self.sign_bytes(key))
            .map_err(|_| TxError::EvidenceSignature)
    }
}

/// Two conflicting votes by one consensus key: same kind, height and round, different values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoubleSignEvidence {
    /// The validator's consensus key.
    pub validator_key: ConsensusKey,
    /// First vote.
    pub vote_a: SignedVote,
    /// Second vote.
    pub vote_b: SignedVote,
}

impl DoubleSignEvidence {
    /// Builds the evidence from the engine's two signing byte strings and signatures (as the
    /// adapter's equivocation evidence carries them); both must be votes by one key. Does not
    /// check signatures: [`DoubleSignEvidence::verify`] and the ledger do.
    pub fn from_sign_bytes(
        first: (&[u8], [u8; 64]),
        second: (&[u8], [u8; 64]),
    ) -> Result<Self, TxError> {
        let (ka, vote_a) = SignedVote::from_sign_bytes(first.0, first.1)?;
        let (kb, vote_b) = SignedVote::from_sign_bytes(second.0, second.1)?;
        if ka != kb {
            return Err(TxError::InvalidEvidence("votes by different validators"));
        }
        Ok(Self {
            validator_key: ka,
            vote_a,
            vote_b,
        })
    }

    /// Checks that the two votes conflict and both signatures verify (ZIP-215).
    pub fn verify(&self) -> Result<(), TxError> {
        let (a, b) = (&self.vote_a, &self.vote_b);
        if a.kind != b.kind || a.height != b.height || a.round != b.round {
            return Err(TxError::InvalidEvidence(
                "votes differ in kind, height or round",
            ));
        }
        if a.value == b.value {
            return Err(TxError::InvalidEvidence("votes are for the same value"));
        }
        a.verify(&self.validator_key)?;
        b.verify(&self.validator_key)
    }
}

/// Evidence anyone may submit in a `SubmitEvidence` transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evidence {
    /// Two readings from one device with one sequence number and different bytes.
    DeviceEquivocation {
        /// First reading.
        a: SignedReading,
        /// Second reading.
        b: SignedReading,
    },
    /// A validator's conflicting votes.
    DoubleSign(DoubleSignEvidence),
}

/// Checks device equivocation: same device and sequence number, different bytes, both
/// signatures valid under the SDK's rule.
pub fn check_device_equivocation(a: &SignedReading, b: &SignedReading) -> Result<(), TxError> {
    if a.reading.device != b.reading.device {
        return Err(TxError::InvalidEvidence("readings from different devices"));
    }
    if a.reading.seq != b.reading.seq {
        return Err(TxError::InvalidEvidence(
            "readings with different sequence numbers",
        ));
    }
    if a.reading == b.reading {
        return Err(TxError::InvalidEvidence("readings are identical"));
    }
    a.verify().map_err(|_| TxError::EvidenceSignature)?;
    b.verify().map_err(|_| TxError::EvidenceSignature)
}

fn encode_frame(r: &SignedReading, w: &mut Writer) {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = r.encode_frame(&mut buf).unwrap_or(0);
    w.bytes(buf.get(..n).unwrap_or(&[]));
}

fn decode_frame(r: &mut Reader<'_>) -> Result<SignedReading, TxError> {
    SignedReading::decode_frame(r.bytes()?).map_err(|_| TxError::Malformed("bad reading frame"))
}

impl Evidence {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::DeviceEquivocation { a, b } => {
                w.u8(1);
                encode_frame(a, w);
                encode_frame(b, w);
            }
            Self::DoubleSign(d) => {
                w.u8(2);
                d.validator_key.encode(w);
                d.vote_a.encode(w);
                d.vote_b.encode(w);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::DeviceEquivocation {
                a: decode_frame(r)?,
                b: decode_frame(r)?,
            }),
            2 => Ok(Self::DoubleSign(DoubleSignEvidence {
                validator_key: Address::decode(r)?,
                vote_a: SignedVote::decode(r)?,
                vote_b: SignedVote::decode(r)?,
            })),
            _ => Err(TxError::Malformed("unknown evidence kind")),
        }
    }
}

/// The evidence stored beside a slash.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // few records, kept inline like the evidence they hold
pub enum SlashEvidence {
    /// Evidence submitted in a transaction and checked by the ledger.
    Submitted(Evidence),
    /// An audit proof that failed the ledger's own verification: the transaction that carried
    /// it is in the block at the slash's height, so anyone can re-run the verifier on it.
    BadAuditProof {
        /// Epoch of the batch.
        epoch: Epoch,
        /// The batch (its assigned auditor).
        batch: Address,
        /// blake3 of the proof bytes as submitted.
        proof_digest: [u8; 32],
        /// What the verifier said (at most [`MAX_REASON_LEN`] bytes).
        reason: String,
    },
    /// A storage device reached `storage_faults_to_slash` faults (missed deadlines, failing
    /// proofs): each names the challenged epoch, so anyone can recompute the challenge from
    /// that epoch's seal and check the ledger's records (see [`crate::storage`]).
    StorageFaults {
        /// The commitment's key ([`crate::storage::StorageCommitment::device`]).
        device: groundtruth_device_sdk::DeviceId,
        /// The committed root the challenges were for.
        root: [u8; 32],
        /// The faults, oldest first.
        faults: Vec<crate::storage::StorageFault>,
    },
    /// A committee decided (≥ 2/3 of its weight) that a provider failed a GPU capacity
    /// challenge: the failing reports (anyone recomputes the challenge from the epoch's seal and
    /// the committee from [`crate::State::provider_audit_committee`]).
    ProviderAudit {
        /// The audited epoch.
        epoch: Epoch,
        /// The device's record key.
        device: groundtruth_device_sdk::DeviceId,
        /// Which audit.
        kind: crate::provider_audit::ProviderAuditKind,
        /// The challenge seed.
        seed: [u8; 32],
        /// The reports that decided the failure.
        reports: Vec<crate::provider_audit::ProviderAuditReport>,
    },
}

impl SlashEvidence {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::Submitted(e) => {
                w.u8(1);
                e.encode(w);
            }
            Self::BadAuditProof {
                epoch,
                batch,
                proof_digest,
                reason,
            } => {
                w.u8(3).u64(*epoch);
                batch.encode(w);
                w.raw(proof_digest).str(reason);
            }
            Self::StorageFaults {
                device,
                root,
                faults,
            } => {
                w.u8(4);
                crate::types::encode_device(device, w);
                w.raw(root);
                crate::storage::encode_faults(faults, w);
            }
            Self::ProviderAudit {
                epoch,
                device,
                kind,
                seed,
                reports,
            } => {
                w.u8(5).u64(*epoch);
                crate::types::encode_device(device, w);
                w.u8(kind.tag()).raw(seed);
                crate::provider_audit::encode_reports(reports, w);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Submitted(Evidence::decode(r)?)),
            3 => Ok(Self::BadAuditProof {
                epoch: r.u64()?,
                batch: Address::decode(r)?,
                proof_digest: r.array()?,
                reason: r.string()?,
            }),
            4 => Ok(Self::StorageFaults {
                device: crate::types::decode_device(r)?,
                root: r.array()?,
                faults: crate::storage::decode_faults(r)?,
            }),
            5 => Ok(Self::ProviderAudit {
                epoch: r.u64()?,
                device: crate::types::decode_device(r)?,
                kind: crate::provider_audit::ProviderAuditKind::decode(r)?,
                seed: r.array()?,
                reports: crate::provider_audit::decode_reports(r)?,
            }),
            _ => Err(TxError::Malformed("unknown slash evidence")),
        }
    }
}

/// ZIP-215 verification of an ed25519 signature.
pub(crate) fn verify_sig(key: &Address, sig: &[u8; 64], msg: &[u8]) -> Result<(), ()> {
    let vk = ed25519_consensus::VerificationKey::try_from(key.0).map_err(|_| ())?;
    vk.verify(&ed25519_consensus::Signature::from(*sig), msg)
        .map_err(|_| ())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testkit::{address, key};
    use ed25519_dalek::Signer;

    /// The layout written out by hand, as `node/consensus` signs votes.
    fn adapter_layout(
        kind: u8,
        height: u64,
        round: i64,
        value: Option<[u8; 32]>,
        v: &Address,
    ) -> Vec<u8> {
        let mut m = b"groundtruth/consensus/vote/v1".to_vec();
        m.push(kind);
        m.extend_from_slice(&height.to_be_bytes());
        m.extend_from_slice(&round.to_be_bytes());
        match value {
            None => m.push(0),
            Some(h) => {
                m.push(1);
                m.extend_from_slice(&h);
            }
        }
        m.extend_from_slice(&v.0);
        m
    }

    #[test]
    fn vote_sign_bytes_match_the_adapter_layout_and_parse_back() {
        let k = key(40);
        let a = address(&k);
        let val = adapter_layout(1, 7, 2, Some([9; 32]), &a);
        assert_eq!(
            vote_sign_bytes(VoteKind::Precommit, 7, 2, Some(&[9; 32]), &a),
            val
        );
        let nil = adapter_layout(1, 7, 2, None, &a);
        assert_eq!(vote_sign_bytes(VoteKind::Precommit, 7, 2, None, &a), nil);

        let (sa, sn) = (k.sign(&val).to_bytes(), k.sign(&nil).to_bytes());
        let ev = DoubleSignEvidence::from_sign_bytes((&val, sa), (&nil, sn)).unwrap();
        assert_eq!(ev.validator_key, a);
        assert_eq!(ev.vote_a.value, Some([9; 32]));
        assert_eq!(ev.vote_b.value, None);
        assert_eq!(ev.verify(), Ok(()));

        // Another validator's vote, a proposal, trailing bytes, a negative round: rejected.
        let other = adapter_layout(1, 7, 2, None, &address(&key(41)));
        assert!(DoubleSignEvidence::from_sign_bytes((&val, sa), (&other, sn)).is_err());
        let mut longer = nil.clone();
        longer.push(0);
        assert!(SignedVote::from_sign_bytes(&longer, sn).is_err());
        assert!(SignedVote::from_sign_bytes(b"groundtruth/consensus/proposal/v1", sn).is_err());
        let negative = adapter_layout(0, 7, -1, None, &a);
        assert!(SignedVote::from_sign_bytes(&negative, sn).is_err());
    }
}
