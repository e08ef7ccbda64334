//! Transactions, their canonical encoding and signatures, and blocks.
//!
//! Encoding (all integers big-endian, see [`crate::codec`]):
//!
//! ```text
//! Tx       := signer[32] nonce:u64 fee:u64 body
//! SignedTx := Tx signature[64]
//! body     := tag:u8 fields        (tags in TxBody's docs)
//! Block    := height:u64 proposer:Option<[32]> count:u32 (len:u32 SignedTx)*
//! ```
//!
//! The signer signs `TX_DOMAIN ‖ u32 len ‖ chain_id ‖ Tx` with its ed25519 key; the chain id
//! (from genesis) keeps a transaction from being replayed on another network. Signatures are
//! verified with ZIP-215 (`ed25519-consensus`), the same rule as device readings.

use groundtruth_device_sdk::DeviceId;

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::evidence::Evidence;
use crate::types::{
    decode_device, encode_device, Address, Amount, ConsensusKey, DeviceKind, Epoch, Height,
};

/// Domain tag of the transaction signing message.
pub const TX_DOMAIN: &[u8] = b"groundtruth/v1/tx\0";
/// Domain tag of a device key's proof of possession.
pub const POSSESSION_DOMAIN: &[u8] = b"groundtruth/v1/device-possession\0";
/// Largest encoded transaction accepted (bytes): an audit or storage proof transaction
/// ([`TxBody::carries_proof`]). Every other type must fit [`MAX_PLAIN_TX_LEN`]; a proof is
/// also bounded by the genesis `max_audit_proof_bytes` / `max_storage_proof_bytes`.
pub const MAX_TX_LEN: usize = 4 * 1024 * 1024 + 1024;
/// Largest encoded transaction of any type but `SubmitAuditProof` and `SubmitStorageProof`
/// (bytes).
pub const MAX_PLAIN_TX_LEN: usize = 16 * 1024;

/// What a transaction does. The encoding tag of each variant is given in brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxBody {
    /// \[1\] Moves liquid balance to another account.
    Transfer {
        /// Recipient.
        to: Address,
        /// Amount moved (positive).
        amount: Amount,
    },
    /// \[2\] Makes the signer a validator operator with `stake` bonded under `consensus_key`.
    /// It enters the validator set at the next epoch boundary.
    CreateValidator {
        /// Key that signs consensus votes (never used before, not weak).
        consensus_key: ConsensusKey,
        /// Initial self-stake, at least `min_validator_stake`.
        stake: Amount,
    },
    /// \[3\] Bonds more self-stake to the signer's validator.
    Bond {
        /// Amount bonded (positive).
        amount: Amount,
    },
    /// \[4\] Starts unbonding self-stake; released after `unbonding_epochs`. The stake left must
    /// be zero or at least `min_validator_stake`.
    Unbond {
        /// Amount unbonded (positive).
        amount: Amount,
    },
    /// \[5\] Returns a jailed validator to eligibility once its jail period is over.
    Unjail,
    /// \[6\] Makes the signer a provider with `stake` bonded.
    RegisterProvider {
        /// Initial stake, at least `min_provider_stake`.
        stake: Amount,
        /// Merkle root of the data a storage provider commits to (zero if none).
        data_root: [u8; 32],
    },
    /// \[7\] Bonds more provider stake.
    ProviderBond {
        /// Amount (positive).
        amount: Amount,
    },
    /// \[8\] Unbonds provider stake. While it owns active devices the stake left must stay at
    /// least `min_provider_stake`.
    ProviderUnbond {
        /// Amount (positive).
        amount: Amount,
    },
    /// \[9\] Registers a device owned by the signer (a provider).
    RegisterDevice {
        /// Device public key (never used before, not weak).
        device: DeviceId,
        /// Energy, GPU or storage.
        kind: DeviceKind,
        /// Capacity in the kind's unit (positive).
        capacity: u64,
        /// Region label, at most 64 bytes, no control characters.
        region: String,
        /// Device key's signature over [`possession_sign_bytes`] for the signer.
        possession: [u8; 64],
    },
    /// \[10\] Moves a device record to a new key; the old key is retired for good.
    RotateDeviceKey {
        /// Current key.
        old: DeviceId,
        /// New key (never used before, not weak).
        new: DeviceId,
        /// New key's signature over [`possession_sign_bytes`] for the signer.
        possession: [u8; 64],
        /// First sequence number the new key signs: the old key's readings from this sequence
        /// number on are not the device's, so they are refused as evidence.
        from_seq: u64,
    },
    /// \[11\] Retires a device; its key can never be registered again.
    RetireDevice {
        /// Device key.
        device: DeviceId,
    },
    /// \[12\] Submits the metered-output proof of one agreed audit batch of an ended epoch
    /// (signer: the batch's assigned auditor; after the deadline, any committee member). The
    /// ledger verifies the proof while applying the block and checks it against the agreed
    /// batch commitment; a proof that fails verification slashes its signer.
    SubmitAuditProof {
        /// Epoch audited.
        epoch: Epoch,
        /// Operator of the batch's assigned auditor (the batch proven).
        batch: Address,
        /// The proof envelope (`groundtruth-proofs` encoding).
        proof: Vec<u8>,
    },
    /// \[13\] Submits misbehaviour evidence; a valid one slashes the offender.
    SubmitEvidence(Evidence),
    /// \[14\] Delegates stake to a validator (adds to its voting power at the next epoch
    /// boundary; slashed with it). Delegators earn no rewards in this version.
    Delegate {
        /// The validator's operator address.
        validator: Address,
        /// Amount (positive).
        amount: Amount,
    },
    /// \[15\] Starts unbonding delegated stake; released after `unbonding_epochs`.
    Undelegate {
        /// The validator's operator address.
        validator: Address,
        /// Amount (positive, at most the delegation).
        amount: Amount,
    },
    /// \[16\] Attests the readings of an ended epoch (signer: operator of an active
    /// validator that was in the epoch's committee; once per epoch and validator, within
    /// `attestation_window_epochs`): one commitment per audit batch, built from the validator's
    /// store. ≥ 2/3 of the committee's power on one readings root (over the batches) fixes it;
    /// a differing attestation flags its signer.
    AttestReadings {
        /// The ended epoch attested.
        epoch: Epoch,
        /// The batches, in auditor order (see [`crate::attestation::BatchCommitment`]).
        batches: Vec<crate::attestation::BatchCommitment>,
    },
    /// \[17\] Votes to close the current epoch (signer: operator of an active validator; once
    /// per epoch; only when epochs are reading-time windows). A validator sends it once its
    /// clock passed the epoch window's end plus its grace; the epoch ends after the block in
    /// which the votes reach ≥ 2/3 of the set's power.
    CloseEpoch {
        /// The current epoch.
        epoch: Epoch,
    },
    /// \[18\] Sets the Ethereum (L1) key that signs the epoch commitments anchored on L1 for
    /// the signer's validator (signer: a validator's operator, not removed). The key proves
    /// possession by signing [`crate::l1key::l1_key_digest`] for this chain and operator;
    /// an address held by another validator is refused.
    SetL1Key {
        /// The key's Ethereum address.
        address: crate::l1key::L1Address,
        /// `r ‖ s ‖ v` secp256k1 signature over [`crate::l1key::l1_key_digest`].
        signature: [u8; 65],
    },
    /// \[19\] Commits a storage device's data (signer: the device's owner; once per device,
    /// while it is active): the Merkle root of its 1 KiB chunks as
    /// `groundtruth_proofs::por::commit_path` builds it. Every epoch from the current one on
    /// is challenged (see [`crate::storage`]).
    CommitStorage {
        /// The storage device (its current key).
        device: DeviceId,
        /// Merkle root (canonical bytes of a Rescue digest).
        root: [u8; 32],
        /// Tree depth, 1..=44.
        depth: u8,
        /// Number of chunks, 1..=2^depth.
        num_chunks: u64,
    },
    /// \[20\] Answers a storage device's challenge for an ended epoch (signer: the device's
    /// owner; during epochs `epoch + 1 ..= epoch + storage_deadline_epochs`). The ledger checks
    /// the statement against the commitment and the challenge it derives, then verifies the
    /// retrievability STARK: a pass is recorded; a proof that fails verification is a fault.
    SubmitStorageProof {
        /// The challenged epoch.
        epoch: Epoch,
        /// The storage device (any of its keys).
        device: DeviceId,
        /// The proof envelope (`groundtruth-proofs` encoding), at most
        /// `max_storage_proof_bytes`.
        proof: Vec<u8>,
    },
    /// \[21\] A committee member's verdict on a provider audit of an ended epoch (signer: the
    /// operator of an active validator in [`crate::State::provider_audit_committee`] for the
    /// epoch and device; once per (epoch, device, kind); during epochs
    /// `epoch + 1 ..= epoch + attestation_window_epochs`). Reports holding ≥ 2/3 of the
    /// committee's weight with one verdict decide the round (see [`crate::provider_audit`]).
    ReportProviderAudit {
        /// The audited epoch.
        epoch: Epoch,
        /// The device (any of its keys).
        device: DeviceId,
        /// Spot retrieval (storage device) or GPU capacity (GPU device).
        kind: crate::provider_audit::ProviderAuditKind,
        /// The member's verdict.
        passed: bool,
        /// The challenge seed used: must be the ledger's
        /// ([`crate::State::provider_audit_seed`]).
        seed: [u8; 32],
        /// Blake3 of the provider's response (GPU: `Matrix::digest` of the product).
        response_digest: [u8; 32],
        /// Request to complete response, ms, as the member measured it.
        elapsed_ms: u32,
        /// Measured throughput (GPU: multiply-adds per second; retrieval: bytes per second).
        measured_per_s: u64,
    },
    /// \[22\] Registers (or replaces) a GPU device's claimed spec (signer: the device's
    /// owner, while the device is active). The device is GPU-challenged in every sealed epoch
    /// from then on, with a deadline set from the claim.
    RegisterGpuSpec {
        /// The GPU device (any of its keys).
        device: DeviceId,
        /// Model label, at most 64 bytes, no control characters.
        model: String,
        /// Number of GPUs (positive).
        count: u32,
        /// Claimed exact field multiply-adds per second on the challenge (positive).
        claimed_mac_per_s: u64,
    },
}

/// The bytes a device key signs to prove that `owner` may register it:
/// `POSSESSION_DOMAIN ‖ u32 len ‖ chain_id ‖ owner[32] ‖ device[32]`.
pub fn possession_sign_bytes(chain_id: &str, owner: &Address, device: &DeviceId) -> Vec<u8> {
    let mut w = Writer::new();
    w.raw(POSSESSION_DOMAIN)
        .str(chain_id)
        .raw(&owner.0)
        .raw(&device.0);
    w.into_bytes()
}

impl TxBody {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Transfer { to, amount } => {
                w.u8(1);
                to.encode(w);
                w.u64(*amount);
            }
            Self::CreateValidator {
                consensus_key,
                stake,
            } => {
                w.u8(2);
                consensus_key.encode(w);
                w.u64(*stake);
            }
            Self::Bond { amount } => {
                w.u8(3).u64(*amount);
            }
            Self::Unbond { amount } => {
                w.u8(4).u64(*amount);
            }
            Self::Unjail => {
                w.u8(5);
            }
            Self::RegisterProvider { stake, data_root } => {
                w.u8(6).u64(*stake).raw(data_root);
            }
            Self::ProviderBond { amount } => {
                w.u8(7).u64(*amount);
            }
            Self::ProviderUnbond { amount } => {
                w.u8(8).u64(*amount);
            }
            Self::RegisterDevice {
                device,
                kind,
                capacity,
                region,
                possession,
            } => {
                w.u8(9);
                encode_device(device, w);
                w.u8(kind.tag()).u64(*capacity).str(region).raw(possession);
            }
            Self::RotateDeviceKey {
                old,
                new,
                possession,
                from_seq,
            } => {
                w.u8(10);
                encode_device(old, w);
                encode_device(new, w);
                w.raw(possession);
                w.u64(*from_seq);
            }
            Self::RetireDevice { device } => {
                w.u8(11);
                encode_device(device, w);
            }
            Self::SubmitAuditProof {
                epoch,
                batch,
                proof,
            } => {
                w.u8(12).u64(*epoch);
                batch.encode(w);
                w.bytes(proof);
            }
            Self::SubmitEvidence(e) => {
                w.u8(13);
                e.encode(w);
            }
            Self::Delegate { validator, amount } => {
                w.u8(14);
                validator.encode(w);
                w.u64(*amount);
            }
            Self::Undelegate { validator, amount } => {
                w.u8(15);
                validator.encode(w);
                w.u64(*amount);
            }
            Self::AttestReadings { epoch, batches } => {
                w.u8(16)
                    .u64(*epoch)
                    .u32(u32::try_from(batches.len()).unwrap_or(u32::MAX));
                for b in batches {
                    b.encode(w);
                }
            }
            Self::CloseEpoch { epoch } => {
                w.u8(17).u64(*epoch);
            }
            Self::SetL1Key { address, signature } => {
                w.u8(18).raw(&address.0).raw(signature);
            }
            Self::CommitStorage {
                device,
                root,
                depth,
                num_chunks,
            } => {
                w.u8(19);
                encode_device(device, w);
                w.raw(root).u8(*depth).u64(*num_chunks);
            }
            Self::SubmitStorageProof {
                epoch,
                device,
                proof,
            } => {
                w.u8(20).u64(*epoch);
                encode_device(device, w);
                w.bytes(proof);
            }
            Self::ReportProviderAudit {
                epoch,
                device,
                kind,
                passed,
                seed,
                response_digest,
                elapsed_ms,
                measured_per_s,
            } => {
                w.u8(21).u64(*epoch);
                encode_device(device, w);
                w.u8(kind.tag())
                    .bool(*passed)
                    .raw(seed)
                    .raw(response_digest)
                    .u32(*elapsed_ms)
                    .u64(*measured_per_s);
            }
            Self::RegisterGpuSpec {
                device,
                model,
                count,
                claimed_mac_per_s,
            } => {
                w.u8(22);
                encode_device(device, w);
                w.str(model).u32(*count).u64(*claimed_mac_per_s);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(match r.u8()? {
            1 => Self::Transfer {
                to: Address::decode(r)?,
                amount: r.u64()?,
            },
            2 => Self::CreateValidator {
                consensus_key: Address::decode(r)?,
                stake: r.u64()?,
            },
            3 => Self::Bond { amount: r.u64()? },
            4 => Self::Unbond { amount: r.u64()? },
            5 => Self::Unjail,
            6 => Self::RegisterProvider {
                stake: r.u64()?,
                data_root: r.array()?,
            },
            7 => Self::ProviderBond { amount: r.u64()? },
            8 => Self::ProviderUnbond { amount: r.u64()? },
            9 => Self::RegisterDevice {
                device: decode_device(r)?,
                kind: DeviceKind::decode(r)?,
                capacity: r.u64()?,
                region: r.string()?,
                possession: r.array()?,
            },
            10 => Self::RotateDeviceKey {
                old: decode_device(r)?,
                new: decode_device(r)?,
                possession: r.array()?,
                from_seq: r.u64()?,
            },
            11 => Self::RetireDevice {
                device: decode_device(r)?,
            },
            12 => Self::SubmitAuditProof {
                epoch: r.u64()?,
                batch: Address::decode(r)?,
                proof: r.long_bytes(MAX_TX_LEN)?.to_vec(),
            },
            13 => Self::SubmitEvidence(Evidence::decode(r)?),
            14 => Self::Delegate {
                validator: Address::decode(r)?,
                amount: r.u64()?,
            },
            15 => Self::Undelegate {
                validator: Address::decode(r)?,
                amount: r.u64()?,
            },
            16 => {
                let epoch = r.u64()?;
                let n = usize::try_from(r.u32()?)
                    .map_err(|_| TxError::Malformed("too many batches"))?;
                if n > crate::attestation::MAX_BATCHES {
                    return Err(TxError::Malformed("too many batches"));
                }
                let mut batches = Vec::with_capacity(n);
                for _ in 0..n {
                    batches.push(crate::attestation::BatchCommitment::decode(r)?);
                }
                Self::AttestReadings { epoch, batches }
            }
            17 => Self::CloseEpoch { epoch: r.u64()? },
            18 => Self::SetL1Key {
                address: crate::l1key::L1Address(r.array()?),
                signature: r.array()?,
            },
            19 => Self::CommitStorage {
                device: decode_device(r)?,
                root: r.array()?,
                depth: r.u8()?,
                num_chunks: r.u64()?,
            },
            20 => Self::SubmitStorageProof {
                epoch: r.u64()?,
                device: decode_device(r)?,
                proof: r.long_bytes(MAX_TX_LEN)?.to_vec(),
            },
            21 => Self::ReportProviderAudit {
                epoch: r.u64()?,
                device: decode_device(r)?,
                kind: crate::provider_audit::ProviderAuditKind::decode(r)?,
                passed: r.bool()?,
                seed: r.array()?,
                response_digest: r.array()?,
                elapsed_ms: r.u32()?,
                measured_per_s: r.u64()?,
            },
            22 => Self::RegisterGpuSpec {
                device: decode_device(r)?,
                model: r.string()?,
                count: r.u32()?,
                claimed_mac_per_s: r.u64()?,
            },
            _ => return Err(TxError::Malformed("unknown transaction type")),
        })
    }

    /// Short snake_case name of the transaction type, for metrics and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Transfer { .. } => "transfer",
            Self::CreateValidator { .. } => "create_validator",
            Self::Bond { .. } => "bond",
            Self::Unbond { .. } => "unbond",
            Self::Unjail => "unjail",
            Self::RegisterProvider { .. } => "register_provider",
            Self::ProviderBond { .. } => "provider_bond",
            Self::ProviderUnbond { .. } => "provider_unbond",
            Self::RegisterDevice { .. } => "register_device",
            Self::RotateDeviceKey { .. } => "rotate_device_key",
            Self::RetireDevice { .. } => "retire_device",
            Self::SubmitAuditProof { .. } => "submit_audit_proof",
            Self::CloseEpoch { .. } => "close_epoch",
            Self::SubmitEvidence(_) => "submit_evidence",
            Self::Delegate { .. } => "delegate",
            Self::Undelegate { .. } => "undelegate",
            Self::AttestReadings { .. } => "attest_readings",
            Self::SetL1Key { .. } => "set_l1_key",
            Self::CommitStorage { .. } => "commit_storage",
            Self::SubmitStorageProof { .. } => "submit_storage_proof",
            Self::ReportProviderAudit { .. } => "report_provider_audit",
            Self::RegisterGpuSpec { .. } => "register_gpu_spec",
        }
    }

    /// Whether this body carries a proof envelope (`SubmitAuditProof`, `SubmitStorageProof`):
    /// only those may exceed [`MAX_PLAIN_TX_LEN`].
    pub fn carries_proof(&self) -> bool {
        matches!(
            self,
            Self::SubmitAuditProof { .. } | Self::SubmitStorageProof { .. }
        )
    }
}

/// An unsigned transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tx {
    /// The signer's public key (its account address).
    pub signer: Address,
    /// Must equal the signer's account nonce.
    pub nonce: u64,
    /// Fee paid to the block proposer's operator (at least `min_fee`; may be 0 by default).
    pub fee: Amount,
    /// What the transaction does.
    pub body: TxBody,
}

impl Tx {
    /// Canonical bytes of the unsigned transaction.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.encode_into(&mut w);
        w.into_bytes()
    }

    fn encode_into(&self, w: &mut Writer) {
        self.signer.encode(w);
        w.u64(self.nonce).u64(self.fee);
        self.body.encode(w);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            signer: Address::decode(r)?,
            nonce: r.u64()?,
            fee: r.u64()?,
            body: TxBody::decode(r)?,
        })
    }

    /// The message the signer signs: `TX_DOMAIN ‖ u32 len ‖ chain_id ‖ Tx bytes`.
    pub fn sign_bytes(&self, chain_id: &str) -> Vec<u8> {
        let mut w = Writer::new();
        w.raw(TX_DOMAIN).str(chain_id);
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// Signs with `key`, which should be the signer's key.
    pub fn sign(self, chain_id: &str, key: &ed25519_dalek::SigningKey) -> SignedTx {
        use ed25519_dalek::Signer;
        let signature = key.sign(&self.sign_bytes(chain_id)).to_bytes();
        SignedTx {
            tx: self,
            signature,
        }
    }
}

/// A transaction with its signer's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    /// The transaction.
    pub tx: Tx,
    /// ed25519 signature over [`Tx::sign_bytes`].
    pub signature: [u8; 64],
}

impl SignedTx {
    /// Canonical bytes (what travels in mempools and blocks).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        self.tx.encode_into(&mut w);
        w.raw(&self.signature);
        w.into_bytes()
    }

    /// Decodes canonical bytes (strict: no trailing bytes; at most [`MAX_TX_LEN`] for an audit
    /// or storage proof and [`MAX_PLAIN_TX_LEN`] for anything else). Does not check the
    /// signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        if bytes.len() > MAX_TX_LEN {
            return Err(TxError::Malformed("transaction too large"));
        }
        let mut r = Reader::new(bytes);
        let tx = Tx::decode_from(&mut r)?;
        let signature = r.array()?;
        r.finish()?;
        if bytes.len() > MAX_PLAIN_TX_LEN && !tx.body.carries_proof() {
            return Err(TxError::Malformed("transaction too large"));
        }
        Ok(Self { tx, signature })
    }

    /// blake3 of the canonical bytes; identifies the transaction.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Checks the signature (ZIP-215) under the signer's key for `chain_id`.
    pub fn verify(&self, chain_id: &str) -> Result<(), TxError> {
        crate::evidence::verify_sig(
            &self.tx.signer,
            &self.signature,
            &self.tx.sign_bytes(chain_id),
        )
        .map_err(|_| TxError::BadSignature)
    }
}

/// A decided block as the consensus engine hands it to the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    /// Height; must be the state's height + 1.
    pub height: Height,
    /// Consensus key of the proposer; fees go to its operator (burned if unknown or absent).
    pub proposer: Option<ConsensusKey>,
    /// Transactions in order.
    pub txs: Vec<SignedTx>,
}

impl Block {
    /// Canonical bytes (see the module docs).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u64(self.height);
        match &self.proposer {
            None => {
                w.u8(0);
            }
            Some(p) => {
                w.u8(1);
                p.encode(&mut w);
            }
        }
        w.u32(u32::try_from(self.txs.len()).unwrap_or(u32::MAX));
        for tx in &self.txs {
            w.bytes(&tx.encode());
        }
        w.into_bytes()
    }

    /// Decodes canonical bytes (strict).
    pub fn decode(bytes: &[u8]) -> Result<Self, TxError> {
        let mut r = Reader::new(bytes);
        let height = r.u64()?;
        let proposer = if r.option_tag()? {
            Some(Address::decode(&mut r)?)
        } else {
            None
        };
        let count = r.u32()?;
        let mut txs = Vec::new();
        for _ in 0..count {
            txs.push(SignedTx::decode(r.long_bytes(MAX_TX_LEN)?)?);
        }
        r.finish()?;
        Ok(Self {
            height,
            proposer,
            txs,
        })
    }

    /// blake3 of the canonical bytes.
    pub fn hash(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }
}
