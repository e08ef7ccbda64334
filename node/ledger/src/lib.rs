//! groundtruth ledger: the replicated state machine.
//!
//! Accounts and balances; validators with bonded self-stake and delegations, an unbonding
//! period and jailing; providers with bonded stake; the device registry (registration with
//! proof of possession, key rotation, retirement); audit records per epoch; rewards for
//! audited work minted on a per-epoch schedule; slashing with a reason code and the evidence stored beside it (device
//! equivocation, failed retrievability or GPU challenge, validator double-sign, a proof that
//! fails verification). Signed transactions with nonces ([`tx`]), blocks ([`apply_block`]),
//! epoch boundaries ([`end_epoch`]) that seal each epoch with a sampling beacon ([`sampling`]),
//! the agreement of ≥ 2/3 of stake on each epoch's readings root (`AttestReadings`,
//! [`State::fixed_readings_root`]), the validator set for the BFT engine
//! ([`State::validator_set`]) and a state root ([`State::state_root`]).
//!
//! The transition is a pure, deterministic function of the state and the block: this crate
//! must not do I/O, read a clock, draw randomness, spawn tasks or depend on tokio, libp2p,
//! sled or the proofs crate. Every map is a `BTreeMap`; arithmetic on transaction data is
//! checked; nothing panics on input; a rejected transaction changes nothing.
//!
//! ```text
//! genesis.toml ─► Genesis::from_toml ─► State::from_genesis
//! decided Block ─► apply_block ─► BlockOutcome { results, events, state_root }
//!                       └─ last block of an epoch ─► end_epoch (rewards, unbonding, set)
//! ```

pub mod admission;
mod attestation;
pub mod codec;
mod commitment;
mod error;
pub mod evidence;
mod genesis;
pub mod sampling;
mod state;
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
    readings_root, BatchAudit, BatchCommitment, EpochCommitment, EpochReadings, EpochSeal,
    ReadingsAttestation,
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
pub use state::{State, STATE_ROOT_CONTEXT};
pub use tx::{possession_sign_bytes, Block, SignedTx, Tx, TxBody};
pub use types::{
    Account, Address, Amount, AuditKind, AuditRecord, AuditResult, AuditSubject, ConsensusKey,
    Device, DeviceKind, DeviceStatus, Epoch, Height, Offender, Provider, SlashReason, SlashRecord,
    StakeRole, Supply, UnbondingEntry, Validator, ValidatorStatus, MAX_REGION_LEN,
};
