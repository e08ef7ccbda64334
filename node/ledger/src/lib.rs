//! groundtruth ledger: the replicated state machine.
//!
//! Accounts and balances; validators with bonded self-stake and delegations, an unbonding
//! period and jailing; providers with bonded stake; the device registry (registration with
//! proof of possession, key rotation, retirement); epochs that are either block counts or
//! reading-time windows closed by ≥ 2/3 of the validators' power (`CloseEpoch`); each ended
//! epoch sealed with a sampling beacon ([`sampling`]) that assigns devices to auditors; the
//! agreement of ≥ 2/3 of stake on each epoch's readings, one commitment per audit batch
//! (`AttestReadings`, [`State::fixed_readings_root`]); audit proofs the ledger verifies itself
//! while applying the block (`SubmitAuditProof`: a STARK from `groundtruth-proofs`, checked
//! against the agreed batch; a failing proof slashes its submitter); per-epoch commitments
//! ([`State::epoch_commitment`], what L1 anchors); rewards for verified work minted per
//! epoch; slashing with a reason code and the evidence stored beside it (device equivocation,
//! validator double-sign, a failing audit proof, a storage device's faults). Storage devices
//! commit the Merkle root of their data (`CommitStorage`); every epoch the ledger derives
//! each one's retrievability challenge from the seal ([`storage`]), verifies the provider's
//! proof itself (`SubmitStorageProof`) and records missed deadlines as faults, suspending
//! then slashing. Audits the ledger cannot verify itself (spot retrieval of storage chunks,
//! GPU capacity challenges checked with Freivalds' algorithm) are decided by a beacon-drawn
//! committee: ≥ 2/3 of its weight must report one verdict (`ReportProviderAudit`,
//! [`provider_audit`]); GPU devices register their claimed throughput (`RegisterGpuSpec`).
//! Signed transactions with nonces ([`tx`]),
//! validators' Ethereum keys registered with a proof of possession ([`l1key`]);
//! blocks ([`apply_block`]), the validator set for the BFT engine ([`State::validator_set`])
//! and a state root ([`State::state_root`]).
//!
//! The transition is a pure, deterministic function of the state and the block: this crate
//! must not do I/O, read a clock, draw randomness, spawn tasks or depend on tokio, libp2p or
//! sled; it uses the proofs crate's verifier only (deterministic). Every map is a
//! `BTreeMap`; arithmetic on transaction data is checked; nothing panics on input; a rejected
//! transaction changes nothing.
//!
//! ```text
//! genesis.toml ─► Genesis::from_toml ─► State::from_genesis
//! decided Block ─► apply_block ─► BlockOutcome { results, events, state_root }
//!                       └─ epoch boundary (block count, or CloseEpoch votes ≥ 2/3)
//!                              ─► end_epoch (seal, rewards, unbonding, set, due commitments)
//! ```

pub mod admission;
mod attestation;
pub mod codec;
mod commitment;
mod error;
pub mod evidence;
mod genesis;
pub mod l1key;
pub mod provider_audit;
pub mod sampling;
mod state;
pub mod storage;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod tx;
mod types;

mod apply;

pub use admission::{select_payable, AdmitError, PendingPool};
pub use apply::{
    apply_block, apply_raw_block, apply_tx, check_envelope, check_signed, check_tx, end_epoch,
    BlockContext, BlockOutcome, Event, TxReceipt,
};
pub use attestation::{
    proofs_root, readings_root, totals_root, BatchAudit, BatchCommitment, EpochCommitment,
    EpochReadings, EpochSeal, ReadingsAttestation,
};
pub use commitment::WriteSet;
pub use error::{InvariantError, LedgerError, Result, SnapshotError, TxError};
pub use evidence::{
    vote_sign_bytes, DoubleSignEvidence, Evidence, SignedVote, SlashEvidence, VoteKind,
};
pub use genesis::{
    Genesis, GenesisAccount, GenesisDevice, GenesisProvider, GenesisValidator, Params, BP_ONE,
    DEFAULT_CHAIN_ID,
};
pub use groundtruth_device_sdk::{DeviceId, SignedReading};
pub use l1key::{l1_key_digest, verify_l1_possession, L1Address};
pub use provider_audit::{
    GpuChallenge, GpuSpec, ProviderAuditDecision, ProviderAuditKind, ProviderAuditReport,
    ProviderAuditRound,
};
pub use state::{AccountRewards, State, STATE_ROOT_CONTEXT};
pub use storage::{
    StorageAudit, StorageCommitment, StorageFault, StorageFaultKind, StorageOutcome,
};
pub use tx::{possession_sign_bytes, Block, SignedTx, Tx, TxBody};
pub use types::{
    Account, Address, Amount, AuditKind, AuditRecord, AuditResult, AuditSubject, ConsensusKey,
    Device, DeviceKind, DeviceStatus, Epoch, Height, Offender, Provider, RewardTotal, SlashReason,
    SlashRecord, StakeRole, Supply, UnbondingEntry, Validator, ValidatorStatus, MAX_REGION_LEN,
};
