//! Misbehaviour evidence and its checks.
//!
//! Signatures are checked with `ed25519-consensus` (ZIP-215), the same rule the device SDK
//! applies on every path, so no two validators can disagree about a piece of evidence.

use groundtruth_device_sdk::{SignedReading, MAX_FRAME_LEN};

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::types::{Address, AuditKind, AuditRecord, AuditSubject, ConsensusKey, Epoch, Height};

/// Domain tag of the consensus vote message (see [`vote_sign_bytes`]).
pub const VOTE_DOMAIN: &[u8] = b"groundtruth/v1/vote\0";

/// Largest `reason` of an [`InvalidProofClaim`], bytes.
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
    const fn tag(self) -> u8 {
        match self {
            Self::Prevote => 1,
            Self::Precommit => 2,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Prevote),
            2 => Ok(Self::Precommit),
            _ => Err(TxError::Malformed("unknown vote kind")),
        }
    }
}

/// The exact bytes a validator's consensus key signs for a vote:
///
/// `VOTE_DOMAIN ‖ u32 len ‖ chain_id ‖ kind (1 prevote, 2 precommit) ‖ height u64 BE ‖
/// round u32 BE ‖ value_hash [32]` (an all-zero `value_hash` is a nil vote).
///
/// The consensus adapter must sign its votes over these bytes so that the engine's
/// equivocation evidence can be checked by the ledger.
pub fn vote_sign_bytes(
    chain_id: &str,
    kind: VoteKind,
    height: Height,
    round: u32,
    value_hash: &[u8; 32],
) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(VOTE_DOMAIN)
        .str(chain_id)
        .u8(kind.tag())
        .u64(height)
        .u32(round)
        .raw(value_hash);
    w.into_bytes()
}

/// One signed consensus vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignedVote {
    /// Prevote or precommit.
    pub kind: VoteKind,
    /// Consensus height.
    pub height: Height,
    /// Consensus round.
    pub round: u32,
    /// Hash of the value voted for; all zeros for nil.
    pub value_hash: [u8; 32],
    /// ed25519 signature over [`vote_sign_bytes`].
    pub signature: [u8; 64],
}

impl SignedVote {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.kind.tag())
            .u64(self.height)
            .u32(self.round)
            .raw(&self.value_hash)
            .raw(&self.signature);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            kind: VoteKind::decode(r)?,
            height: r.u64()?,
            round: r.u32()?,
            value_hash: r.array()?,
            signature: r.array()?,
        })
    }

    fn verify(&self, chain_id: &str, key: &ConsensusKey) -> Result<(), TxError> {
        let msg = vote_sign_bytes(
            chain_id,
            self.kind,
            self.height,
            self.round,
            &self.value_hash,
        );
        verify_sig(key, &self.signature, &msg).map_err(|_| TxError::EvidenceSignature)
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
    /// Checks that the two votes conflict and both signatures verify (ZIP-215).
    pub fn verify(&self, chain_id: &str) -> Result<(), TxError> {
        let (a, b) = (&self.vote_a, &self.vote_b);
        if a.kind != b.kind || a.height != b.height || a.round != b.round {
            return Err(TxError::InvalidEvidence(
                "votes differ in kind, height or round",
            ));
        }
        if a.value_hash == b.value_hash {
            return Err(TxError::InvalidEvidence("votes are for the same value"));
        }
        a.verify(chain_id, &self.validator_key)?;
        b.verify(chain_id, &self.validator_key)
    }
}

/// A validator's claim that another validator's recorded proof fails verification.
///
/// The ledger cannot run the proof verifier in this version (it must not depend on the proofs
/// crate), so it checks only that the accused really recorded an audit with this proof digest,
/// and records the claim with the reporter's name. Claims are therefore trusted statements by
/// an active validator; a false claim is itself on record and attributable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidProofClaim {
    /// Operator of the validator that recorded the failing proof.
    pub accused: Address,
    /// Epoch of the audit.
    pub epoch: Epoch,
    /// Subject of the audit.
    pub subject: AuditSubject,
    /// Kind of the audit.
    pub kind: AuditKind,
    /// Digest of the proof that fails verification; must match the audit record.
    pub proof_digest: [u8; 32],
    /// What the verifier said, at most 256 bytes.
    pub reason: String,
}

impl InvalidProofClaim {
    fn encode(&self, w: &mut Writer) {
        self.accused.encode(w);
        w.u64(self.epoch);
        self.subject.encode(w);
        w.u8(self.kind.tag())
            .raw(&self.proof_digest)
            .str(&self.reason);
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            accused: Address::decode(r)?,
            epoch: r.u64()?,
            subject: AuditSubject::decode(r)?,
            kind: AuditKind::decode(r)?,
            proof_digest: r.array()?,
            reason: r.string()?,
        })
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
    /// A claim that a recorded proof fails verification (submitted by a validator).
    InvalidProof(InvalidProofClaim),
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
            Self::InvalidProof(c) => {
                w.u8(3);
                c.encode(w);
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
            3 => Ok(Self::InvalidProof(InvalidProofClaim::decode(r)?)),
            _ => Err(TxError::Malformed("unknown evidence kind")),
        }
    }
}

/// The evidence stored beside a slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlashEvidence {
    /// Evidence submitted in a transaction and checked by the ledger.
    Submitted(Evidence),
    /// A failed retrievability or GPU-capacity audit recorded by a validator.
    FailedAudit(AuditRecord),
}

impl SlashEvidence {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::Submitted(e) => {
                w.u8(1);
                e.encode(w);
            }
            Self::FailedAudit(a) => {
                w.u8(2);
                a.encode(w);
            }
        }
    }
}

/// ZIP-215 verification of an ed25519 signature.
pub(crate) fn verify_sig(key: &Address, sig: &[u8; 64], msg: &[u8]) -> Result<(), ()> {
    let vk = ed25519_consensus::VerificationKey::try_from(key.0).map_err(|_| ())?;
    vk.verify(&ed25519_consensus::Signature::from(*sig), msg)
        .map_err(|_| ())
}
