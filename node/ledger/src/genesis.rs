//! Genesis: the chain's parameters and initial accounts, validators, providers and devices,
//! as a TOML file (`configs/genesis.toml`).
//!
//! ```toml
//! chain_id = "groundtruth-devnet"
//!
//! [params]                      # every field optional; defaults in `Params::default`
//! epoch_length = 100            # blocks per epoch
//! unbonding_epochs = 2
//!
//! [[accounts]]
//! address = "<64 hex>"
//! balance = 1000000
//!
//! [[validators]]
//! operator = "<64 hex>"         # account that signs ledger txs, receives rewards
//! consensus_key = "<64 hex>"    # key that signs votes
//! stake = 100000
//! l1_address = "0x<40 hex>"     # optional: its Ethereum signing key (else SetL1Key)
//!
//! [[providers]]
//! address = "<64 hex>"
//! stake = 10000
//! data_root = "<64 hex>"        # optional
//!
//! [[devices]]                   # the format ingest reads too (node/src/registry.rs)
//! id = "<64 hex>"
//! kind = "energy"               # energy | gpu | storage
//! capacity = 5000               # peak W | number of GPUs | bytes
//! region = "DE-BY"              # optional
//! owner = "<64 hex>"            # optional; a provider's address
//! ```

use serde::{Deserialize, Serialize};

use crate::error::{LedgerError, Result};
use crate::types::{Address, Amount, DeviceKind};

/// Basis points in one whole (100 %).
pub const BP_ONE: u16 = 10_000;

/// Default [`Params::history_epochs`]: 16 epochs (16 minutes of the devnet's 60-second epochs),
/// above the `2·audit_deadline_epochs + 1 = 5` the default deadline needs.
pub const DEFAULT_HISTORY_EPOCHS: u64 = 16;

/// Chain parameters. Every field has a default, so a genesis file names only what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Params {
    /// Blocks per epoch (positive). The validator set, rewards and unbonding change only at
    /// the last block of an epoch.
    pub epoch_length: u64,
    /// Epochs an unbonding entry waits before its stake returns to the balance.
    pub unbonding_epochs: u64,
    /// Least self-stake of a validator (it may also unbond to exactly zero).
    pub min_validator_stake: Amount,
    /// Least stake of a provider that owns active devices.
    pub min_provider_stake: Amount,
    /// Largest validator set (top stakes win; ties broken by consensus key).
    pub max_validators: u32,
    /// Epochs a jailed validator waits before `Unjail` is accepted.
    pub jail_epochs: u64,
    /// A validator jailed this many times is removed.
    pub jail_threshold: u32,
    /// Share of a validator's stake burned for a double sign, basis points.
    pub slash_double_sign_bp: u16,
    /// Share of a provider's stake burned for a device equivocation, basis points.
    pub slash_device_equivocation_bp: u16,
    /// Share of a provider's stake burned for a failed retrievability challenge, basis points.
    pub slash_failed_retrievability_bp: u16,
    /// Share of a provider's stake burned for a failed GPU challenge, basis points.
    pub slash_failed_gpu_bp: u16,
    /// Share of a validator's stake burned for a proof that fails verification, basis points.
    pub slash_invalid_proof_bp: u16,
    /// Reward minted at the end of epoch 0; see [`Params::reward_for_epoch`].
    pub reward_per_epoch: Amount,
    /// The reward halves every this many epochs (0: never).
    pub reward_halving_epochs: u64,
    /// Share of each epoch's reward paid to auditing validators (per audit recorded), basis
    /// points; the rest is paid to owners of passing subjects by work units.
    pub auditor_share_bp: u16,
    /// How many epochs evidence stays admissible: a double vote at a height in epoch `e`, or
    /// other evidence about epoch `e`, is refused from epoch
    /// `e + evidence_max_age_epochs + 1` on. `unbonding_epochs` must be at least this, so stake
    /// cannot leave before its faults can be proven.
    pub evidence_max_age_epochs: u64,
    /// Least fee a transaction must pay (default 1: a transaction always costs its sender
    /// something, so a key without funds cannot fill blocks).
    pub min_fee: Amount,
    /// Validators drawn to audit each device in an epoch (1..=16; see
    /// [`crate::sampling::assign`]).
    pub audit_redundancy: u8,
    /// How many epochs after an epoch ends its readings may still be attested: an
    /// `AttestReadings` for epoch `e` is accepted from epoch `e + 1` to epoch
    /// `e + attestation_window_epochs` (positive); the epoch's pending attestations are then
    /// dropped (a fixed root and the flags stay).
    pub attestation_window_epochs: u64,
    /// Length of an epoch's reading-time window, seconds. 0: epochs are `epoch_length`
    /// blocks (no audits). Positive: epoch `e` covers readings whose intervals lie in
    /// `[genesis_time_s + e·epoch_duration_s, genesis_time_s + (e+1)·epoch_duration_s)`, and it
    /// ends at the block in which validators holding ≥ 2/3 of the set's power have sent
    /// `CloseEpoch` (each sends it once its clock passed the window's end plus its grace).
    pub epoch_duration_s: u64,
    /// Start of epoch 0's window, Unix seconds (used when `epoch_duration_s > 0`).
    pub genesis_time_s: u64,
    /// Epochs the assigned auditor has to deliver a batch's proof after the readings root was
    /// fixed: an audit of epoch `e` from its assigned auditor is accepted until the end of epoch
    /// `e + audit_deadline_epochs`; after that any validator of the committee may prove the
    /// batch (reassignment) until `e + 2·audit_deadline_epochs`, when the epoch commitment is
    /// recorded with whatever was verified.
    pub audit_deadline_epochs: u64,
    /// Largest audit proof envelope a `SubmitAuditProof` may carry, bytes (bounds both the
    /// block space and the verification cost one transaction can demand).
    pub max_audit_proof_bytes: u32,
    /// Chunks challenged per storage device and epoch (`k`, 1..=4096; see
    /// [`crate::storage`]). A proof covers `k` rounded up to a power of two samples. A
    /// provider that lost a fraction `f` of its chunks passes one epoch with probability
    /// `(1 − f)^k`.
    pub storage_challenge_k: u32,
    /// Epochs a storage provider has to prove an epoch's challenge: the proof for epoch `e`
    /// is accepted during epochs `e + 1 ..= e + storage_deadline_epochs`; without a valid one by
    /// the end of epoch `e + storage_deadline_epochs`, the ledger records a missed-deadline
    /// fault. Positive, at most `unbonding_epochs` (stake cannot leave before its last
    /// challenge is due).
    pub storage_deadline_epochs: u64,
    /// Faults (missed deadlines and failing proofs, counted over the commitment's life) after
    /// which a storage device is suspended (out of the registry; still challenged).
    pub storage_faults_to_suspend: u32,
    /// Faults after which the device's owner is slashed `slash_storage_fault_bp`, with the
    /// faults as the evidence; the commitment is then closed (no more challenges). At least
    /// `storage_faults_to_suspend`, at most 64.
    pub storage_faults_to_slash: u32,
    /// Share of a provider's stake burned when one of its storage devices reaches
    /// `storage_faults_to_slash` faults, basis points.
    pub slash_storage_fault_bp: u16,
    /// Largest retrievability proof envelope a `SubmitStorageProof` may carry, bytes (k = 100
    /// at depth 30 makes ≈ 62 KB).
    pub max_storage_proof_bytes: u32,
    /// Members of each provider audit committee (spot retrieval, GPU capacity), drawn from
    /// the epoch's beacon by stake; all validators when the set is smaller. 1..=64. An outcome
    /// needs reports from ≥ 2/3 of the committee's weight (see [`crate::provider_audit`]).
    pub provider_committee_size: u8,
    /// Dimension `n` of a GPU capacity challenge (`n × n` matrices; 1..=2048). A check costs
    /// a member `3·n²` multiply-adds per Freivalds round, the product `n³`.
    pub gpu_challenge_n: u32,
    /// Chunks a committee member fetches per storage device and epoch in a spot retrieval
    /// (1..=64).
    pub retrieval_spot_chunks: u32,
    /// Work units a storage device earns per committed 1 KiB chunk for a settled epoch it
    /// passed (a ledger-verified retrievability proof and no decided spot-retrieval failure);
    /// they share the epoch's work pool with metered output (see
    /// [`crate::apply::end_epoch`]). 0: storage earns nothing.
    pub storage_work_units_per_chunk: u64,
    /// Work units a GPU device earns per registered GPU for an epoch whose capacity challenge
    /// the committee decided passed (scaled by measured/claimed throughput when below spec).
    /// 0: GPU capacity earns nothing.
    pub gpu_work_units_per_gpu: u64,
    /// Epochs of per-epoch history the ledger keeps: at the end of epoch `E` the audit records
    /// and the per-(epoch, recipient) reward entries of epochs `≤ E − history_epochs` are
    /// dropped from the state (and its root), so the state holds those of the last
    /// `history_epochs` ended epochs. Each account's running reward total is kept for good
    /// (see [`crate::State::rewards_of`]). Above `2·audit_deadline_epochs + 1`: the epoch
    /// boundary reads audits that far back (rewards, and the commitment recorded when an
    /// epoch's reassignment window closes).
    pub history_epochs: u64,
}

impl Default for Params {
    fn default() -> Self {
        Self {
            epoch_length: 100,
            unbonding_epochs: 2,
            min_validator_stake: 1_000,
            min_provider_stake: 100,
            max_validators: 100,
            jail_epochs: 1,
            jail_threshold: 3,
            slash_double_sign_bp: 500,
            slash_device_equivocation_bp: 1_000,
            slash_failed_retrievability_bp: 500,
            slash_failed_gpu_bp: 500,
            slash_invalid_proof_bp: 1_000,
            reward_per_epoch: 1_000,
            reward_halving_epochs: 0,
            auditor_share_bp: 2_000,
            evidence_max_age_epochs: 2,
            min_fee: 1,
            audit_redundancy: 1,
            attestation_window_epochs: 2,
            epoch_duration_s: 0,
            genesis_time_s: 0,
            audit_deadline_epochs: 2,
            // A batch proof carries its public device table (~100 bytes a device): 10,000
            // meters over 4 auditors make ~270 KB envelopes.
            max_audit_proof_bytes: 768 * 1024,
            // k = 100: a provider that deleted 5 % of its chunks survives an epoch with
            // probability 0.95^100 ≈ 0.6 %.
            storage_challenge_k: 100,
            storage_deadline_epochs: 1,
            storage_faults_to_suspend: 2,
            storage_faults_to_slash: 3,
            slash_storage_fault_bp: 500,
            max_storage_proof_bytes: 256 * 1024,
            provider_committee_size: 16,
            gpu_challenge_n: 256,
            retrieval_spot_chunks: 4,
            storage_work_units_per_chunk: 1,
            gpu_work_units_per_gpu: 1_000,
            history_epochs: DEFAULT_HISTORY_EPOCHS,
        }
    }
}

impl Params {
    /// The reading-time window `[start, end)` of `epoch`, Unix seconds; `None` when epochs are
    /// counted in blocks (`epoch_duration_s == 0`) or the window overflows.
    pub fn epoch_window(&self, epoch: u64) -> Option<(u64, u64)> {
        if self.epoch_duration_s == 0 {
            return None;
        }
        let start = epoch
            .checked_mul(self.epoch_duration_s)?
            .checked_add(self.genesis_time_s)?;
        Some((start, start.checked_add(self.epoch_duration_s)?))
    }

    /// Whether epochs are reading-time windows closed by validators' `CloseEpoch` votes.
    pub fn timed_epochs(&self) -> bool {
        self.epoch_duration_s > 0
    }

    /// The reward schedule: `reward_per_epoch >> (epoch / reward_halving_epochs)`, or the
    /// constant `reward_per_epoch` when halving is off. Only the part actually paid out is
    /// minted (an epoch without audits mints nothing; rounding remainders are not minted).
    pub fn reward_for_epoch(&self, epoch: u64) -> Amount {
        if self.reward_halving_epochs == 0 {
            return self.reward_per_epoch;
        }
        let halvings = epoch / self.reward_halving_epochs;
        u32::try_from(halvings)
            .ok()
            .and_then(|h| self.reward_per_epoch.checked_shr(h))
            .unwrap_or(0)
    }

    /// Checks ranges (positive epoch length, basis points ≤ 10 000, …).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(LedgerError::Genesis(format!("params: {m}")));
        if self.epoch_length == 0 {
            return bad("epoch_length must be positive");
        }
        if self.max_validators == 0 {
            return bad("max_validators must be positive");
        }
        if self.jail_threshold == 0 {
            return bad("jail_threshold must be positive");
        }
        if self.audit_redundancy == 0 || self.audit_redundancy > crate::sampling::MAX_REDUNDANCY {
            return bad("audit_redundancy must be in 1..=16");
        }
        if self.attestation_window_epochs == 0 {
            return bad("attestation_window_epochs must be positive");
        }
        if self.audit_deadline_epochs == 0 {
            return bad("audit_deadline_epochs must be positive");
        }
        let reach = self
            .audit_deadline_epochs
            .saturating_mul(2)
            .saturating_add(1);
        if self.history_epochs <= reach {
            return bad("history_epochs must be above 2·audit_deadline_epochs + 1");
        }
        if self.timed_epochs() && self.epoch_window(1 << 32).is_none() {
            return bad("genesis_time_s + epoch_duration_s · 2^32 overflows");
        }
        if self.max_audit_proof_bytes > 4 * 1024 * 1024 {
            return bad("max_audit_proof_bytes above 4 MiB");
        }
        if self.storage_challenge_k == 0
            || self.storage_challenge_k > groundtruth_proofs::por::MAX_K
        {
            return bad("storage_challenge_k must be in 1..=4096");
        }
        if self.storage_deadline_epochs == 0 || self.storage_deadline_epochs > self.unbonding_epochs
        {
            return bad("storage_deadline_epochs must be in 1..=unbonding_epochs");
        }
        if self.storage_faults_to_suspend == 0
            || self.storage_faults_to_slash < self.storage_faults_to_suspend
            || self.storage_faults_to_slash > crate::storage::MAX_STORAGE_FAULTS
        {
            return bad(
                "storage faults: 1 <= storage_faults_to_suspend <= storage_faults_to_slash <= 64",
            );
        }
        if self.max_storage_proof_bytes > 4 * 1024 * 1024 {
            return bad("max_storage_proof_bytes above 4 MiB");
        }
        if self.provider_committee_size == 0
            || self.provider_committee_size > crate::provider_audit::MAX_PROVIDER_COMMITTEE
        {
            return bad("provider_committee_size must be in 1..=64");
        }
        if self.gpu_challenge_n == 0 || self.gpu_challenge_n > groundtruth_proofs::freivalds::MAX_N
        {
            return bad("gpu_challenge_n must be in 1..=2048");
        }
        if self.retrieval_spot_chunks == 0
            || self.retrieval_spot_chunks > crate::provider_audit::MAX_SPOT_CHUNKS
        {
            return bad("retrieval_spot_chunks must be in 1..=64");
        }
        if self.unbonding_epochs < self.evidence_max_age_epochs {
            return bad(
                "unbonding_epochs must be at least evidence_max_age_epochs (stake must not leave before its faults can be proven)",
            );
        }
        for (name, bp) in [
            ("slash_double_sign_bp", self.slash_double_sign_bp),
            (
                "slash_device_equivocation_bp",
                self.slash_device_equivocation_bp,
            ),
            (
                "slash_failed_retrievability_bp",
                self.slash_failed_retrievability_bp,
            ),
            ("slash_failed_gpu_bp", self.slash_failed_gpu_bp),
            ("slash_invalid_proof_bp", self.slash_invalid_proof_bp),
            ("slash_storage_fault_bp", self.slash_storage_fault_bp),
            ("auditor_share_bp", self.auditor_share_bp),
        ] {
            if bp > BP_ONE {
                return bad(&format!("{name} above 10000"));
            }
        }
        Ok(())
    }

    pub(crate) fn encode(&self, w: &mut crate::codec::Writer) {
        w.u64(self.epoch_length)
            .u64(self.unbonding_epochs)
            .u64(self.min_validator_stake)
            .u64(self.min_provider_stake)
            .u32(self.max_validators)
            .u64(self.jail_epochs)
            .u32(self.jail_threshold)
            .u16(self.slash_double_sign_bp)
            .u16(self.slash_device_equivocation_bp)
            .u16(self.slash_failed_retrievability_bp)
            .u16(self.slash_failed_gpu_bp)
            .u16(self.slash_invalid_proof_bp)
            .u64(self.reward_per_epoch)
            .u64(self.reward_halving_epochs)
            .u16(self.auditor_share_bp)
            .u64(self.evidence_max_age_epochs)
            .u64(self.min_fee)
            .u8(self.audit_redundancy)
            .u64(self.attestation_window_epochs)
            .u64(self.epoch_duration_s)
            .u64(self.genesis_time_s)
            .u64(self.audit_deadline_epochs)
            .u32(self.max_audit_proof_bytes)
            .u32(self.storage_challenge_k)
            .u64(self.storage_deadline_epochs)
            .u32(self.storage_faults_to_suspend)
            .u32(self.storage_faults_to_slash)
            .u16(self.slash_storage_fault_bp)
            .u32(self.max_storage_proof_bytes)
            .u8(self.provider_committee_size)
            .u32(self.gpu_challenge_n)
            .u32(self.retrieval_spot_chunks)
            .u64(self.storage_work_units_per_chunk)
            .u64(self.gpu_work_units_per_gpu)
            .u64(self.history_epochs);
    }

    pub(crate) fn decode(
        r: &mut crate::codec::Reader<'_>,
    ) -> core::result::Result<Self, crate::error::TxError> {
        Ok(Self {
            epoch_length: r.u64()?,
            unbonding_epochs: r.u64()?,
            min_validator_stake: r.u64()?,
            min_provider_stake: r.u64()?,
            max_validators: r.u32()?,
            jail_epochs: r.u64()?,
            jail_threshold: r.u32()?,
            slash_double_sign_bp: r.u16()?,
            slash_device_equivocation_bp: r.u16()?,
            slash_failed_retrievability_bp: r.u16()?,
            slash_failed_gpu_bp: r.u16()?,
            slash_invalid_proof_bp: r.u16()?,
            reward_per_epoch: r.u64()?,
            reward_halving_epochs: r.u64()?,
            auditor_share_bp: r.u16()?,
            evidence_max_age_epochs: r.u64()?,
            min_fee: r.u64()?,
            audit_redundancy: r.u8()?,
            attestation_window_epochs: r.u64()?,
            epoch_duration_s: r.u64()?,
            genesis_time_s: r.u64()?,
            audit_deadline_epochs: r.u64()?,
            max_audit_proof_bytes: r.u32()?,
            storage_challenge_k: r.u32()?,
            storage_deadline_epochs: r.u64()?,
            storage_faults_to_suspend: r.u32()?,
            storage_faults_to_slash: r.u32()?,
            slash_storage_fault_bp: r.u16()?,
            max_storage_proof_bytes: r.u32()?,
            provider_committee_size: r.u8()?,
            gpu_challenge_n: r.u32()?,
            retrieval_spot_chunks: r.u32()?,
            storage_work_units_per_chunk: r.u64()?,
            gpu_work_units_per_gpu: r.u64()?,
            history_epochs: r.u64()?,
        })
    }
}

/// An initial account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisAccount {
    /// Account address (ed25519 public key, hex).
    pub address: Address,
    /// Liquid balance.
    pub balance: Amount,
}

/// An initial validator (active from block 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisValidator {
    /// Operator account.
    pub operator: Address,
    /// Vote-signing key.
    pub consensus_key: Address,
    /// Bonded self-stake (at least `min_validator_stake`).
    pub stake: Amount,
    /// Ethereum address of its L1 signing key (`0x` + 40 hex), for a network whose keys are
    /// known at genesis (the devnet's are well-known seeds); otherwise registered later with
    /// `SetL1Key` and its proof of possession.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l1_address: Option<crate::l1key::L1Address>,
}

/// An initial provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisProvider {
    /// Provider account.
    pub address: Address,
    /// Bonded stake.
    pub stake: Amount,
    /// Committed data root (storage providers), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_root: Option<Address>,
}

/// An initial device, in the `[[devices]]` format that ingest also reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenesisDevice {
    /// Device public key, hex.
    pub id: Address,
    /// `energy`, `gpu` or `storage`.
    pub kind: DeviceKind,
    /// Capacity in the kind's unit: peak watts, number of GPUs, bytes.
    pub capacity: u64,
    /// Region label (may be empty).
    #[serde(default)]
    pub region: String,
    /// Owning provider's address; empty or absent for none.
    #[serde(
        default,
        deserialize_with = "de_opt_address",
        serialize_with = "ser_opt_address"
    )]
    pub owner: Option<Address>,
}

fn de_opt_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> core::result::Result<Option<Address>, D::Error> {
    let s = String::deserialize(d)?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

fn ser_opt_address<S: serde::Serializer>(
    a: &Option<Address>,
    s: S,
) -> core::result::Result<S::Ok, S::Error> {
    match a {
        Some(a) => s.collect_str(a),
        None => s.serialize_str(""),
    }
}

/// The whole genesis file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    /// Network name, signed into every transaction and vote (default `groundtruth-devnet`, so
    /// that a devices-only file written by `groundtruth sim --write-genesis` parses too).
    #[serde(default = "default_chain_id")]
    pub chain_id: String,
    /// Chain parameters.
    #[serde(default)]
    pub params: Params,
    /// Initial accounts.
    #[serde(default)]
    pub accounts: Vec<GenesisAccount>,
    /// Initial validators.
    #[serde(default)]
    pub validators: Vec<GenesisValidator>,
    /// Initial providers.
    #[serde(default)]
    pub providers: Vec<GenesisProvider>,
    /// Initial devices.
    #[serde(default)]
    pub devices: Vec<GenesisDevice>,
}

fn default_chain_id() -> String {
    DEFAULT_CHAIN_ID.to_owned()
}

/// Chain id of a genesis file that names none.
pub const DEFAULT_CHAIN_ID: &str = "groundtruth-devnet";

impl Genesis {
    /// Parses TOML text (the caller reads the file; this crate does no I/O).
    pub fn from_toml(text: &str) -> Result<Self> {
        toml::from_str(text).map_err(|e| LedgerError::GenesisParse(e.to_string()))
    }
}
