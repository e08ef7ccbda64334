//! The ledger's records: accounts, validators, providers, devices, audits, unbonding entries,
//! slashes and rewards, with their canonical encodings (see [`crate::codec`]).

use core::fmt;
use core::str::FromStr;

use groundtruth_device_sdk::DeviceId;

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::evidence::SlashEvidence;

/// Token amounts in base units. `u64` keeps amounts representable in TOML and JSON numbers;
/// the whole supply must fit (checked at genesis and on every mint).
pub type Amount = u64;
/// Block height; genesis is height 0, the first block is height 1.
pub type Height = u64;
/// Epoch number; block `h ≥ 1` belongs to epoch `(h - 1) / epoch_length`.
pub type Epoch = u64;

/// An ed25519 public key (32 bytes, compressed Edwards y): the address of an account, a
/// validator operator or a provider, and the type of validators' consensus keys.
///
/// Displayed and (de)serialised as 64 lower-case hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Address(pub [u8; 32]);

/// A validator's consensus (vote-signing) key, as handed to the BFT engine.
pub type ConsensusKey = Address;

impl Address {
    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// True when the bytes are not a valid ed25519 key or the key has small order; such keys
    /// are rejected as signers, consensus keys and device keys (anyone can forge for them).
    pub fn is_weak(&self) -> bool {
        DeviceId(self.0).is_weak()
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.raw(&self.0);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self(r.array()?))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Address({})", hex::encode(&self.0[..8]))
    }
}

impl FromStr for Address {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Self(out))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<DeviceId> for Address {
    fn from(d: DeviceId) -> Self {
        Self(d.0)
    }
}

pub(crate) fn encode_device(d: &DeviceId, w: &mut Writer) {
    w.raw(&d.0);
}

pub(crate) fn decode_device(r: &mut Reader<'_>) -> Result<DeviceId, TxError> {
    Ok(DeviceId(r.array()?))
}

/// An account: liquid balance and the next transaction nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Account {
    /// Liquid (unbonded) balance.
    pub balance: Amount,
    /// Nonce the account's next transaction must carry; starts at 0.
    pub nonce: u64,
}

impl Account {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.balance).u64(self.nonce);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            balance: r.u64()?,
            nonce: r.u64()?,
        })
    }
}

/// An account's rewards since genesis, kept for good in the hashed state (table 19) while the
/// per-(epoch, recipient) entries are kept only for `history_epochs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewardTotal {
    /// Sum of every payout.
    pub total: Amount,
    /// Epochs whose end paid it something.
    pub epochs: u64,
}

impl RewardTotal {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.total).u64(self.epochs);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            total: r.u64()?,
            epochs: r.u64()?,
        })
    }
}

/// Where a validator stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidatorStatus {
    /// Eligible for the validator set at the next epoch boundary.
    Active,
    /// Zero voting power; may `Unjail` from `until_epoch` on if its stake is still at the minimum.
    Jailed {
        /// First epoch at which `Unjail` is accepted.
        until_epoch: Epoch,
    },
    /// Permanently out (too many jailings, or stake below the minimum after a slash). Its stake
    /// was moved to unbonding; its consensus key can never be used again.
    Removed,
}

/// A validator: an operator account that bonded self-stake under a consensus key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validator {
    /// Operator account (signs ledger transactions, receives rewards and fees).
    pub operator: Address,
    /// Key the validator signs consensus votes with; what the BFT engine sees.
    pub consensus_key: ConsensusKey,
    /// Bonded self-stake. Voting power at the next epoch boundary is this plus the stake
    /// delegated to it ([`crate::State::delegated_to`]).
    pub stake: Amount,
    /// Active, jailed or removed.
    pub status: ValidatorStatus,
    /// How often it was jailed; removal at `params.jail_threshold`.
    pub jail_count: u32,
    /// Ethereum address of the key that signs the epoch commitments anchored on L1
    /// (registered with a proof of possession, see [`crate::l1key`]); `None` until set.
    pub l1_address: Option<crate::l1key::L1Address>,
}

impl Validator {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.operator.encode(w);
        self.consensus_key.encode(w);
        w.u64(self.stake);
        match self.status {
            ValidatorStatus::Active => w.u8(1),
            ValidatorStatus::Jailed { until_epoch } => w.u8(2).u64(until_epoch),
            ValidatorStatus::Removed => w.u8(3),
        };
        w.u32(self.jail_count);
        match &self.l1_address {
            None => w.u8(0),
            Some(a) => w.u8(1).raw(&a.0),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            operator: Address::decode(r)?,
            consensus_key: Address::decode(r)?,
            stake: r.u64()?,
            status: match r.u8()? {
                1 => ValidatorStatus::Active,
                2 => ValidatorStatus::Jailed {
                    until_epoch: r.u64()?,
                },
                3 => ValidatorStatus::Removed,
                _ => return Err(TxError::Malformed("unknown validator status")),
            },
            jail_count: r.u32()?,
            l1_address: if r.option_tag()? {
                Some(crate::l1key::L1Address(r.array()?))
            } else {
                None
            },
        })
    }
}

/// A provider: an account that bonded stake to own devices (meters, storage, GPUs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    /// The provider's account.
    pub address: Address,
    /// Bonded stake; slashed for its devices' misbehaviour.
    pub stake: Amount,
    /// Merkle root of the data a storage provider committed to at registration (zero if none).
    pub data_root: [u8; 32],
    /// Height at which it registered (0 for genesis).
    pub registered_at: Height,
}

impl Provider {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.address.encode(w);
        w.u64(self.stake)
            .raw(&self.data_root)
            .u64(self.registered_at);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            address: Address::decode(r)?,
            stake: r.u64()?,
            data_root: r.array()?,
            registered_at: r.u64()?,
        })
    }
}

/// What a device measures; fixes the unit of its capacity.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Energy meter; capacity is peak power in watts.
    Energy,
    /// GPU agent; capacity is the number of GPUs it reports for.
    Gpu,
    /// Storage provider agent; capacity is bytes offered.
    Storage,
}

impl DeviceKind {
    /// The most one interval of `interval_len_s` seconds may carry for a device of this kind
    /// and `capacity`, in the metered unit (Wh for energy: `capacity·len/3600` rounded down;
    /// GPU-milliseconds for GPU: `capacity·len·1000`), the same bound ingest applies. `None`
    /// for storage (not metered output) or when it does not fit a proof's cap (2^32 − 1).
    pub fn metered_cap(self, capacity: u64, interval_len_s: u32) -> Option<u64> {
        let c = u128::from(capacity);
        let len = u128::from(interval_len_s);
        let cap = match self {
            Self::Energy => c.checked_mul(len)? / 3600,
            Self::Gpu => c.checked_mul(len)?.checked_mul(1000)?,
            Self::Storage => return None,
        };
        u64::try_from(cap)
            .ok()
            .filter(|c| *c <= groundtruth_proofs::metered::MAX_CAP)
    }

    /// Lower-case name (`energy`, `gpu`, `storage`), as in genesis files and metrics.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Energy => "energy",
            Self::Gpu => "gpu",
            Self::Storage => "storage",
        }
    }

    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::Energy => 1,
            Self::Gpu => 2,
            Self::Storage => 3,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Energy),
            2 => Ok(Self::Gpu),
            3 => Ok(Self::Storage),
            _ => Err(TxError::Malformed("unknown device kind")),
        }
    }
}

/// Largest region string, bytes.
pub const MAX_REGION_LEN: usize = 64;

/// Checks a region: at most 64 bytes, no control characters (empty means unknown).
pub(crate) fn check_region(region: &str) -> Result<(), TxError> {
    if region.len() > MAX_REGION_LEN || region.chars().any(char::is_control) {
        return Err(TxError::InvalidText("region"));
    }
    Ok(())
}

/// Whether a device may still report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Registered and reporting.
    Active,
    /// Retired by its owner; its key can never be registered again.
    Retired,
    /// Suspended for equivocation (slashed once for the incident); it no longer reports, and
    /// further evidence against it is a duplicate.
    Suspended,
}

/// A registered device. The record is keyed by its current key; keys it used before
/// (rotations) are listed in `previous_keys` and can never be registered again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Current public key (what its readings are signed with).
    pub id: DeviceId,
    /// Owning provider (`None` only for genesis devices listed without an owner).
    pub owner: Option<Address>,
    /// Energy, GPU or storage.
    pub kind: DeviceKind,
    /// Capacity in the kind's unit (see [`DeviceKind`]); used by ingest's plausibility checks.
    pub capacity: u64,
    /// Free-form region label (e.g. a bidding zone such as `DE-LU`), at most 64 bytes; empty
    /// when unknown.
    pub region: String,
    /// Active or retired.
    pub status: DeviceStatus,
    /// Height of registration (0 for genesis).
    pub registered_at: Height,
    /// Keys this device used before, oldest first.
    pub previous_keys: Vec<DeviceId>,
    /// For each of `previous_keys`, the first sequence number signed by its successor: that
    /// key's readings from this sequence number on are not the device's.
    pub rotated_at_seq: Vec<u64>,
}

impl Device {
    /// Whether `key` may sign reading `seq` of this device: its current key always, a previous
    /// key only below the sequence number at which it was rotated away.
    pub fn key_valid_for_seq(&self, key: &DeviceId, seq: u64) -> bool {
        if *key == self.id {
            return true;
        }
        self.previous_keys
            .iter()
            .zip(&self.rotated_at_seq)
            .any(|(k, cut)| k == key && seq < *cut)
    }
}

impl Device {
    pub(crate) fn encode(&self, w: &mut Writer) {
        encode_device(&self.id, w);
        match &self.owner {
            None => {
                w.u8(0);
            }
            Some(o) => {
                w.u8(1);
                o.encode(w);
            }
        }
        w.u8(self.kind.tag()).u64(self.capacity).str(&self.region);
        w.u8(match self.status {
            DeviceStatus::Active => 1,
            DeviceStatus::Retired => 2,
            DeviceStatus::Suspended => 3,
        });
        w.u64(self.registered_at);
        w.u32(u32::try_from(self.previous_keys.len()).unwrap_or(u32::MAX));
        for (k, cut) in self.previous_keys.iter().zip(&self.rotated_at_seq) {
            encode_device(k, w);
            w.u64(*cut);
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        let id = decode_device(r)?;
        let owner = if r.option_tag()? {
            Some(Address::decode(r)?)
        } else {
            None
        };
        let kind = DeviceKind::decode(r)?;
        let capacity = r.u64()?;
        let region = r.string()?;
        let status = match r.u8()? {
            1 => DeviceStatus::Active,
            2 => DeviceStatus::Retired,
            3 => DeviceStatus::Suspended,
            _ => return Err(TxError::Malformed("unknown device status")),
        };
        let registered_at = r.u64()?;
        let n = r.u32()?;
        let mut previous_keys = Vec::new();
        let mut rotated_at_seq = Vec::new();
        for _ in 0..n {
            previous_keys.push(decode_device(r)?);
            rotated_at_seq.push(r.u64()?);
        }
        Ok(Self {
            id,
            owner,
            kind,
            capacity,
            region,
            status,
            registered_at,
            previous_keys,
            rotated_at_seq,
        })
    }
}

/// Which stake an unbonding entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StakeRole {
    /// A validator's self-stake.
    Validator,
    /// A provider's stake.
    Provider,
    /// Stake delegated to the validator with this operator address.
    Delegation {
        /// The validator's operator.
        validator: Address,
    },
}

impl StakeRole {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Validator => {
                w.u8(1);
            }
            Self::Provider => {
                w.u8(2);
            }
            Self::Delegation { validator } => {
                w.u8(3);
                validator.encode(w);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Validator),
            2 => Ok(Self::Provider),
            3 => Ok(Self::Delegation {
                validator: Address::decode(r)?,
            }),
            _ => Err(TxError::Malformed("unknown stake role")),
        }
    }
}

/// Stake on its way out: still slashable, released to the owner's balance at maturity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnbondingEntry {
    /// Account that receives the stake.
    pub owner: Address,
    /// Validator or provider stake.
    pub role: StakeRole,
    /// Amount still unbonding (reduced by slashes).
    pub amount: Amount,
    /// Released to `owner` at the end of this epoch (created in epoch `e`, it matures at
    /// `e + unbonding_epochs`).
    pub matures_at_epoch: Epoch,
}

impl UnbondingEntry {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.owner.encode(w);
        self.role.encode(w);
        w.u64(self.amount).u64(self.matures_at_epoch);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            owner: Address::decode(r)?,
            role: StakeRole::decode(r)?,
            amount: r.u64()?,
            matures_at_epoch: r.u64()?,
        })
    }
}

/// What an audit examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditSubject {
    /// One device (energy output, GPU hours, GPU capacity, storage agent).
    Device(DeviceId),
    /// A provider as a whole (retrievability of its committed data).
    Provider(Address),
}

impl AuditSubject {
    pub(crate) fn encode(&self, w: &mut Writer) {
        match self {
            Self::Device(d) => {
                w.u8(1);
                encode_device(d, w);
            }
            Self::Provider(a) => {
                w.u8(2);
                a.encode(w);
            }
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Device(decode_device(r)?)),
            2 => Ok(Self::Provider(Address::decode(r)?)),
            _ => Err(TxError::Malformed("unknown audit subject")),
        }
    }
}

/// What kind of audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuditKind {
    /// STARK of metered energy output (energy device).
    EnergyOutput,
    /// STARK of metered GPU-hours (GPU device).
    GpuHours,
    /// Random chunk challenge + proof of retrievability (storage device or provider). A fail
    /// slashes the provider.
    StorageRetrievability,
    /// Random matrix challenge checked with Freivalds (GPU device). A fail slashes the provider.
    GpuCapacity,
}

impl AuditKind {
    /// The kind named `name` (see [`AuditKind::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::EnergyOutput,
            Self::GpuHours,
            Self::StorageRetrievability,
            Self::GpuCapacity,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// Lower-case name for metrics and logs.
    pub const fn name(self) -> &'static str {
        match self {
            Self::EnergyOutput => "energy_output",
            Self::GpuHours => "gpu_hours",
            Self::StorageRetrievability => "storage_retrievability",
            Self::GpuCapacity => "gpu_capacity",
        }
    }

    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::EnergyOutput => 1,
            Self::GpuHours => 2,
            Self::StorageRetrievability => 3,
            Self::GpuCapacity => 4,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::EnergyOutput),
            2 => Ok(Self::GpuHours),
            3 => Ok(Self::StorageRetrievability),
            4 => Ok(Self::GpuCapacity),
            _ => Err(TxError::Malformed("unknown audit kind")),
        }
    }

    /// Whether this kind applies to a device of `kind`.
    pub fn fits_device(self, kind: DeviceKind) -> bool {
        matches!(
            (self, kind),
            (Self::EnergyOutput, DeviceKind::Energy)
                | (Self::GpuHours, DeviceKind::Gpu)
                | (Self::GpuCapacity, DeviceKind::Gpu)
                | (Self::StorageRetrievability, DeviceKind::Storage)
        )
    }
}

/// Pass or fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditResult {
    /// The subject's claim holds; rewarded by `work_units`.
    Pass,
    /// The claim does not hold; retrievability and GPU-capacity fails slash the provider.
    Fail,
}

impl AuditResult {
    pub(crate) const fn tag(self) -> u8 {
        match self {
            Self::Pass => 1,
            Self::Fail => 2,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Pass),
            2 => Ok(Self::Fail),
            _ => Err(TxError::Malformed("unknown audit result")),
        }
    }
}

/// One audit, as recorded by the validator that ran it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditRecord {
    /// Epoch whose work was audited.
    pub epoch: Epoch,
    /// Operator of the auditing validator.
    pub validator: Address,
    /// Device or provider audited.
    pub subject: AuditSubject,
    /// Which audit.
    pub kind: AuditKind,
    /// Pass or fail.
    pub result: AuditResult,
    /// blake3 digest of the proof (the proof itself lives off-ledger).
    pub proof_digest: [u8; 32],
    /// Verified work (Wh, GPU-ms, bytes held…); weights the subject's reward on a pass.
    pub work_units: u64,
    /// Height of the block that recorded it.
    pub height: Height,
    /// Epoch of the block that recorded it (rewards are paid at the end of this epoch).
    pub recorded_in_epoch: Epoch,
}

impl AuditRecord {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch);
        self.validator.encode(w);
        self.subject.encode(w);
        w.u8(self.kind.tag())
            .u8(self.result.tag())
            .raw(&self.proof_digest)
            .u64(self.work_units)
            .u64(self.height)
            .u64(self.recorded_in_epoch);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            epoch: r.u64()?,
            validator: Address::decode(r)?,
            subject: AuditSubject::decode(r)?,
            kind: AuditKind::decode(r)?,
            result: AuditResult::decode(r)?,
            proof_digest: r.array()?,
            work_units: r.u64()?,
            height: r.u64()?,
            recorded_in_epoch: r.u64()?,
        })
    }
}

/// Why a stake was slashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SlashReason {
    /// Two different readings signed by one device with one sequence number.
    DeviceEquivocation,
    /// A storage provider failed a retrievability challenge.
    FailedRetrievability,
    /// A GPU provider failed a capacity challenge.
    FailedGpuChallenge,
    /// A validator signed two different votes for one height, round and vote type.
    DoubleSign,
    /// A validator submitted a proof that fails verification (claimed by another validator).
    InvalidProof,
}

impl SlashReason {
    /// Stable snake_case code, for metrics, the API and explanations.
    pub const fn code(self) -> &'static str {
        match self {
            Self::DeviceEquivocation => "device_equivocation",
            Self::FailedRetrievability => "failed_retrievability",
            Self::FailedGpuChallenge => "failed_gpu_challenge",
            Self::DoubleSign => "double_sign",
            Self::InvalidProof => "invalid_proof",
        }
    }

    const fn tag(self) -> u8 {
        match self {
            Self::DeviceEquivocation => 1,
            Self::FailedRetrievability => 2,
            Self::FailedGpuChallenge => 3,
            Self::DoubleSign => 4,
            Self::InvalidProof => 5,
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(match r.u8()? {
            1 => Self::DeviceEquivocation,
            2 => Self::FailedRetrievability,
            3 => Self::FailedGpuChallenge,
            4 => Self::DoubleSign,
            5 => Self::InvalidProof,
            _ => return Err(TxError::Malformed("unknown slash reason")),
        })
    }
}

/// Whose stake was slashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Offender {
    /// A validator, by operator address.
    Validator(Address),
    /// A provider, by address.
    Provider(Address),
}

impl Offender {
    fn encode(&self, w: &mut Writer) {
        match self {
            Self::Validator(a) => {
                w.u8(1);
                a.encode(w);
            }
            Self::Provider(a) => {
                w.u8(2);
                a.encode(w);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Validator(Address::decode(r)?)),
            2 => Ok(Self::Provider(Address::decode(r)?)),
            _ => Err(TxError::Malformed("unknown offender")),
        }
    }
}

/// An explainable, appeal-free slash: who, why, how much, on what evidence, when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlashRecord {
    /// Sequence number of the slash (0, 1, 2, …).
    pub id: u64,
    /// Height of the block that applied it.
    pub height: Height,
    /// Epoch of that block.
    pub epoch: Epoch,
    /// Whose stake.
    pub offender: Offender,
    /// Why.
    pub reason: SlashReason,
    /// Amount burned: the slash fraction of each piece of stake at risk (bonded, delegated to
    /// a validator, unbonding from either).
    pub amount: Amount,
    /// Account that submitted the evidence (the auditing validator's operator for failed audits).
    pub reporter: Address,
    /// The evidence, as checked by the ledger.
    pub evidence: SlashEvidence,
    /// Whether the validator was jailed by this slash.
    pub jailed: bool,
    /// Whether the validator was removed by this slash.
    pub removed: bool,
}

impl SlashRecord {
    /// A one-line human explanation.
    pub fn explain(&self) -> String {
        let who = match self.offender {
            Offender::Validator(a) => format!("validator {a}"),
            Offender::Provider(a) => format!("provider {a}"),
        };
        let mut s = format!(
            "slash #{} at height {} (epoch {}): {who} lost {} for {} reported by {}",
            self.id,
            self.height,
            self.epoch,
            self.amount,
            self.reason.code(),
            self.reporter
        );
        if self.removed {
            s.push_str("; removed");
        } else if self.jailed {
            s.push_str("; jailed");
        }
        s
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.id).u64(self.height).u64(self.epoch);
        self.offender.encode(w);
        w.u8(self.reason.tag()).u64(self.amount);
        self.reporter.encode(w);
        self.evidence.encode(w);
        w.bool(self.jailed).bool(self.removed);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            id: r.u64()?,
            height: r.u64()?,
            epoch: r.u64()?,
            offender: Offender::decode(r)?,
            reason: SlashReason::decode(r)?,
            amount: r.u64()?,
            reporter: Address::decode(r)?,
            evidence: SlashEvidence::decode(r)?,
            jailed: r.bool()?,
            removed: r.bool()?,
        })
    }
}

/// Running totals that make supply accounting checkable:
/// `sum of balances + stakes + unbonding == genesis + minted − burned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Supply {
    /// Total at genesis.
    pub genesis: Amount,
    /// Minted since genesis (audit rewards).
    pub minted: Amount,
    /// Burned since genesis (slashes, and fees when no proposer account is known).
    pub burned: Amount,
}

impl Supply {
    /// `genesis + minted − burned`, or `None` on overflow/underflow (an invariant violation).
    pub fn expected_total(&self) -> Option<Amount> {
        self.genesis
            .checked_add(self.minted)?
            .checked_sub(self.burned)
    }

    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.genesis).u64(self.minted).u64(self.burned);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            genesis: r.u64()?,
            minted: r.u64()?,
            burned: r.u64()?,
        })
    }
}
