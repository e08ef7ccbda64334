//! The ledger's errors: why a transaction was rejected, and what can go wrong with a block or
//! a genesis file.

use groundtruth_device_sdk::DeviceId;

use crate::types::{Address, Amount, ConsensusKey, Epoch, Height};

/// Why a transaction was rejected. A rejected transaction changes nothing: no nonce bump, no
/// fee, no state. [`TxError::reason`] gives a stable, low-cardinality code for metrics labels
/// and API responses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The bytes are not a canonical encoding (truncated, trailing bytes, unknown tag…).
    #[error("malformed transaction: {0}")]
    Malformed(&'static str),
    /// The transaction signature does not verify under the signer's key for this chain.
    #[error("transaction signature does not verify")]
    BadSignature,
    /// A key (signer, consensus key or device key) is not a valid ed25519 key or has small order.
    #[error("weak or invalid public key: {0}")]
    WeakKey(&'static str),
    /// The nonce is not the signer's next nonce.
    #[error("bad nonce: expected {expected}, got {got}")]
    BadNonce {
        /// The account's next nonce.
        expected: u64,
        /// The transaction's nonce.
        got: u64,
    },
    /// The fee is below the chain's minimum.
    #[error("fee {got} below the minimum {min}")]
    FeeTooLow {
        /// Minimum fee (parameter `min_fee`).
        min: Amount,
        /// Fee offered.
        got: Amount,
    },
    /// The signer's balance cannot cover the fee and the amount moved.
    #[error("insufficient funds: {needed} needed, {available} available")]
    InsufficientFunds {
        /// Fee plus amount.
        needed: Amount,
        /// Liquid balance.
        available: Amount,
    },
    /// An amount that must be positive is zero.
    #[error("amount must be positive")]
    ZeroAmount,
    /// A sum would overflow.
    #[error("arithmetic overflow")]
    Overflow,
    /// The signer already operates a validator.
    #[error("signer already operates a validator")]
    ValidatorExists,
    /// The consensus key belongs (or belonged) to another validator.
    #[error("consensus key already in use")]
    ConsensusKeyInUse,
    /// The signer (or the accused) operates no validator.
    #[error("unknown validator")]
    UnknownValidator,
    /// The validator was removed and cannot bond or unjail again.
    #[error("validator was removed")]
    ValidatorRemoved,
    /// The stake would fall below the minimum (and is not zero where zero is allowed).
    #[error("stake {got} below the minimum {min}")]
    StakeBelowMinimum {
        /// Parameter minimum.
        min: Amount,
        /// Stake the transaction would leave.
        got: Amount,
    },
    /// More stake is unbonded than is bonded.
    #[error("insufficient stake: {bonded} bonded, {requested} requested")]
    InsufficientStake {
        /// Bonded stake.
        bonded: Amount,
        /// Amount requested.
        requested: Amount,
    },
    /// `Unjail` for a validator that is not jailed.
    #[error("validator is not jailed")]
    NotJailed,
    /// `Unjail` before the jail period ends.
    #[error("validator is jailed until epoch {until_epoch}")]
    StillJailed {
        /// First epoch at which unjailing is allowed.
        until_epoch: Epoch,
    },
    /// The signer is already a provider.
    #[error("signer is already a provider")]
    ProviderExists,
    /// The signer (or the owner) is not a registered provider.
    #[error("unknown provider")]
    UnknownProvider,
    /// A provider with active devices cannot unbond below the minimum stake.
    #[error("provider still has active devices")]
    ProviderHasDevices,
    /// The device key is registered, or was used by a device before.
    #[error("device key already used")]
    DeviceKeyUsed,
    /// No device with this key.
    #[error("unknown device")]
    UnknownDevice,
    /// The device was retired.
    #[error("device is retired")]
    DeviceRetired,
    /// The device was suspended for equivocation; it cannot be rotated or retired.
    #[error("device is suspended")]
    DeviceSuspended,
    /// The signer does not own the device.
    #[error("signer does not own the device")]
    NotDeviceOwner,
    /// The device key's proof of possession does not verify.
    #[error("device proof of possession does not verify")]
    BadPossession,
    /// A text field (region, reason) is empty, too long or holds control characters.
    #[error("invalid text field {0}")]
    InvalidText(&'static str),
    /// A device capacity of zero.
    #[error("device capacity must be positive")]
    ZeroCapacity,
    /// Only validators in the current set may submit audits or proof claims.
    #[error("signer is not an active validator")]
    NotActiveValidator,
    /// An audit is accepted only for an ended epoch, until `2·audit_deadline_epochs` after it.
    #[error("audit for epoch {got} outside the accepted window (current epoch {current})")]
    AuditEpoch {
        /// Current epoch.
        current: Epoch,
        /// Epoch named in the audit.
        got: Epoch,
    },
    /// The proof's statement does not match the agreed batch or the ledger's records
    /// (explained); the proof itself verified, so its signer is not slashed.
    #[error("audit does not match the agreed batch: {0}")]
    AuditMismatch(&'static str),
    /// Audits and epoch closing need timed epochs (`epoch_duration_s > 0`).
    #[error("epochs are not reading-time windows on this chain")]
    UntimedEpochs,
    /// No readings root is fixed for the epoch yet, or it has no batch for this auditor.
    #[error("no agreed batch for this epoch and auditor")]
    UnknownBatch,
    /// The batch is still its assigned auditor's to prove (before the deadline).
    #[error("batch assigned to another validator until its deadline")]
    NotAssigned,
    /// The proof is larger than `max_audit_proof_bytes`.
    #[error("audit proof of {got} bytes above the limit of {max}")]
    ProofTooLarge {
        /// Limit.
        max: u32,
        /// Size submitted.
        got: usize,
    },
    /// `CloseEpoch` names another epoch than the current one.
    #[error("close vote for epoch {got}, current epoch is {current}")]
    CloseEpoch {
        /// Current epoch.
        current: Epoch,
        /// Epoch named.
        got: Epoch,
    },
    /// The signer already voted to close this epoch.
    #[error("duplicate close vote")]
    DuplicateCloseVote,
    /// This (epoch, subject, kind) was audited already.
    #[error("duplicate audit")]
    DuplicateAudit,
    /// The evidence does not show misbehaviour (explained).
    #[error("invalid evidence: {0}")]
    InvalidEvidence(&'static str),
    /// A signature inside the evidence does not verify.
    #[error("evidence signature does not verify")]
    EvidenceSignature,
    /// The evidence is older than `evidence_max_age_epochs`.
    #[error("evidence from epoch {evidence_epoch} is too old (current epoch {current}, max age {max_age})")]
    EvidenceTooOld {
        /// Epoch of the misbehaviour.
        evidence_epoch: Epoch,
        /// Current epoch.
        current: Epoch,
        /// Parameter `evidence_max_age_epochs`.
        max_age: Epoch,
    },
    /// A reading signed by a device key that was rotated away before its sequence number.
    #[error("reading signed by a key rotated away before sequence {seq}")]
    RotatedKey {
        /// The reading's sequence number.
        seq: u64,
    },
    /// This misbehaviour was already punished.
    #[error("duplicate evidence")]
    DuplicateEvidence,
    /// The offender named by the evidence is not on the ledger.
    #[error("offender unknown to the ledger")]
    UnknownOffender,
    /// Readings are attested only for an epoch that has ended, within
    /// `attestation_window_epochs` after it.
    #[error("attestation for epoch {got} outside the accepted window (current epoch {current})")]
    AttestationEpoch {
        /// Current epoch.
        current: Epoch,
        /// Epoch named in the attestation.
        got: Epoch,
    },
    /// The signer was not in the validator set that served during the attested epoch.
    #[error("signer was not in the attested epoch's committee")]
    NotInCommittee,
    /// The signer already attested this epoch's readings.
    #[error("duplicate attestation")]
    DuplicateAttestation,
    /// The L1 key's proof of possession does not recover to the address for this chain and
    /// operator.
    #[error("the L1 key's proof of possession does not verify")]
    BadL1Possession,
    /// Another validator already registered this L1 address.
    #[error("L1 address already registered by another validator")]
    L1KeyInUse,
    /// Storage commitments and proofs are for storage devices only.
    #[error("not a storage device")]
    NotStorageDevice,
    /// The device already committed its data (a commitment is fixed for the device's life).
    #[error("storage already committed for this device")]
    StorageCommitted,
    /// The commitment's parameters are out of range (explained).
    #[error("invalid storage commitment: {0}")]
    InvalidStorageCommitment(&'static str),
    /// The device has no storage commitment.
    #[error("device has no storage commitment")]
    NoStorageCommitment,
    /// A storage proof is accepted only for an ended epoch, until `storage_deadline_epochs`
    /// after it.
    #[error("storage proof for epoch {got} outside the accepted window (current epoch {current})")]
    StorageEpoch {
        /// Current epoch.
        current: Epoch,
        /// Epoch named in the proof.
        got: Epoch,
    },
    /// The epoch's challenge does not apply to the device (before its commitment, after its
    /// retirement or its slash).
    #[error("device not challenged for this epoch")]
    NotChallenged,
    /// The storage proof's statement is not the ledger's challenge (explained: seed, root,
    /// depth, chunk count, k, kind); it was not verified, so it is no fault.
    #[error("storage proof does not answer the ledger's challenge: {0}")]
    StorageMismatch(&'static str),
    /// The device is not of the kind the transaction applies to (a GPU spec for a non-GPU
    /// device, a retrieval report for a non-storage device, …).
    #[error("device is of kind {}, the transaction needs {}", found.name(), expected.name())]
    WrongDeviceKind {
        /// Kind the transaction needs.
        expected: crate::types::DeviceKind,
        /// Kind of the device.
        found: crate::types::DeviceKind,
    },
    /// A provider audit report is accepted only for an ended epoch, until
    /// `attestation_window_epochs` after it.
    #[error("provider audit report for epoch {got} outside the accepted window (current epoch {current})")]
    ProviderAuditEpoch {
        /// Current epoch.
        current: Epoch,
        /// Epoch named in the report.
        got: Epoch,
    },
    /// The signer already reported this (epoch, device, kind).
    #[error("duplicate provider audit report")]
    DuplicateReport,
    /// The report does not match the ledger's challenge (explained: seed, deadline).
    #[error("provider audit report does not match the ledger's challenge: {0}")]
    ProviderAuditMismatch(&'static str),
    /// A GPU capacity challenge needs the device's registered spec (`RegisterGpuSpec`).
    #[error("GPU device has no registered spec")]
    NoGpuSpec,
}

impl TxError {
    /// A stable snake_case code for this rejection, for metric labels and API responses.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::BadSignature => "bad_signature",
            Self::WeakKey(_) => "weak_key",
            Self::BadNonce { .. } => "bad_nonce",
            Self::FeeTooLow { .. } => "fee_too_low",
            Self::InsufficientFunds { .. } => "insufficient_funds",
            Self::ZeroAmount => "zero_amount",
            Self::Overflow => "overflow",
            Self::ValidatorExists => "validator_exists",
            Self::ConsensusKeyInUse => "consensus_key_in_use",
            Self::UnknownValidator => "unknown_validator",
            Self::ValidatorRemoved => "validator_removed",
            Self::StakeBelowMinimum { .. } => "stake_below_minimum",
            Self::InsufficientStake { .. } => "insufficient_stake",
            Self::NotJailed => "not_jailed",
            Self::StillJailed { .. } => "still_jailed",
            Self::ProviderExists => "provider_exists",
            Self::UnknownProvider => "unknown_provider",
            Self::ProviderHasDevices => "provider_has_devices",
            Self::DeviceKeyUsed => "device_key_used",
            Self::UnknownDevice => "unknown_device",
            Self::DeviceRetired => "device_retired",
            Self::DeviceSuspended => "device_suspended",
            Self::NotDeviceOwner => "not_device_owner",
            Self::BadPossession => "bad_possession",
            Self::InvalidText(_) => "invalid_text",
            Self::ZeroCapacity => "zero_capacity",
            Self::NotActiveValidator => "not_active_validator",
            Self::AuditEpoch { .. } => "audit_epoch",
            Self::AuditMismatch(_) => "audit_mismatch",
            Self::UntimedEpochs => "untimed_epochs",
            Self::UnknownBatch => "unknown_batch",
            Self::NotAssigned => "not_assigned",
            Self::ProofTooLarge { .. } => "proof_too_large",
            Self::CloseEpoch { .. } => "close_epoch",
            Self::DuplicateCloseVote => "duplicate_close_vote",
            Self::DuplicateAudit => "duplicate_audit",
            Self::InvalidEvidence(_) => "invalid_evidence",
            Self::EvidenceSignature => "evidence_bad_signature",
            Self::EvidenceTooOld { .. } => "evidence_too_old",
            Self::RotatedKey { .. } => "rotated_key",
            Self::DuplicateEvidence => "duplicate_evidence",
            Self::UnknownOffender => "unknown_offender",
            Self::AttestationEpoch { .. } => "attestation_epoch",
            Self::NotInCommittee => "not_in_committee",
            Self::DuplicateAttestation => "duplicate_attestation",
            Self::BadL1Possession => "bad_l1_possession",
            Self::L1KeyInUse => "l1_key_in_use",
            Self::NotStorageDevice => "not_storage_device",
            Self::StorageCommitted => "storage_committed",
            Self::InvalidStorageCommitment(_) => "invalid_storage_commitment",
            Self::NoStorageCommitment => "no_storage_commitment",
            Self::StorageEpoch { .. } => "storage_epoch",
            Self::NotChallenged => "not_challenged",
            Self::StorageMismatch(_) => "storage_mismatch",
            Self::WrongDeviceKind { .. } => "wrong_device_kind",
            Self::ProviderAuditEpoch { .. } => "provider_audit_epoch",
            Self::DuplicateReport => "duplicate_report",
            Self::ProviderAuditMismatch(_) => "provider_audit_mismatch",
            Self::NoGpuSpec => "no_gpu_spec",
        }
    }
}

/// Errors outside a single transaction: a block that does not follow the state, or a genesis
/// file that cannot become a state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    /// The block's height is not the next height.
    #[error("block height {got} does not follow state height {expected_previous}")]
    BlockHeight {
        /// The state's current height (the block must be one above).
        expected_previous: Height,
        /// The block's height.
        got: Height,
    },
    /// The genesis file does not parse.
    #[error("genesis does not parse: {0}")]
    GenesisParse(String),
    /// A state snapshot does not decode or breaks an invariant.
    #[error("invalid state snapshot: {0}")]
    Snapshot(#[from] SnapshotError),
    /// The in-memory state tree failed (a bug: the node must stop).
    #[error("state tree: {0}")]
    Commitment(String),
    /// The genesis file parses but is inconsistent (explained).
    #[error("invalid genesis: {0}")]
    Genesis(String),
}

/// Result of block-level and genesis operations.
pub type Result<T> = core::result::Result<T, LedgerError>;

/// An invariant every state must hold, broken (see [`crate::State::check_invariants`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvariantError {
    /// The supply counters overflow `u64`.
    #[error("supply counters overflow")]
    SupplyOverflow,
    /// What is held differs from genesis + minted − burned.
    #[error("supply: held {held} != genesis + minted - burned {expected}")]
    Supply {
        /// Balances, stakes, delegations and unbonding entries.
        held: u128,
        /// `genesis + minted - burned`.
        expected: u128,
    },
    /// The validator set names an unknown key, or a validator that is not active.
    #[error("validator set holds {0} which is unknown or not active")]
    ActiveSet(ConsensusKey),
    /// The consensus-key index misses a validator.
    #[error("consensus key index misses {0}")]
    ConsensusKeyIndex(Address),
    /// A removed validator still holds stake.
    #[error("removed validator {0} holds stake")]
    RemovedWithStake(Address),
    /// The device-key index disagrees with a device record.
    #[error("device index broken for {0}")]
    DeviceIndex(DeviceId),
    /// A zero delegation, or one to an unknown validator.
    #[error("bad delegation {delegator} -> {validator}")]
    Delegation {
        /// Validator operator.
        validator: Address,
        /// Delegator.
        delegator: Address,
    },
    /// The unbonding id counter is behind the entries.
    #[error("unbonding id counter behind entries")]
    UnbondingCounter,
    /// A storage commitment or audit names a device key the ledger never registered, or is
    /// kept under another key than its own.
    #[error("storage record broken for {0}")]
    StorageIndex(DeviceId),
    /// The per-account reward totals disagree with the rewards paid: a recipient's entries
    /// still held exceed its total or its count of paid epochs, or the totals do not add up to
    /// the supply minted (`None`).
    #[error("reward index broken for {0:?}")]
    RewardIndex(Option<Address>),
}

/// Why a state snapshot or a persisted state cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes do not decode canonically.
    #[error("does not decode: {0}")]
    Decode(#[from] TxError),
    /// The parameters are out of range.
    #[error("parameters: {0}")]
    Params(String),
    /// The decoded state breaks an invariant.
    #[error("invariant: {0}")]
    Invariant(#[from] InvariantError),
    /// The recomputed state root differs from the one stored beside the state.
    #[error("state root mismatch at height {height}: stored {stored}, recomputed {recomputed}")]
    RootMismatch {
        /// Height of the stored state.
        height: Height,
        /// Root stored beside the state (hex).
        stored: String,
        /// Root recomputed from the stored entries (hex).
        recomputed: String,
    },
    /// A persisted entry is unknown or in the wrong place.
    #[error("bad entry: {0}")]
    Entry(&'static str),
}
