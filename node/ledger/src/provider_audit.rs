//! Provider audits decided by a committee: spot retrieval of storage chunks and GPU capacity
//! challenges. Neither is a STARK the ledger can check itself, so an outcome is recorded only
//! when members of a committee drawn from the epoch's beacon by stake, holding ≥ 2/3 of the
//! committee's weight, report the same verdict. No single validator decides anything.
//!
//! # Who triggers what, and what it costs
//!
//! ```text
//!  GPU device (kind gpu)
//!    RegisterGpuSpec { device, model, count, claimed_mac_per_s }  (signer: the owner; fee)
//!      stores the claim; the device is challenged from the next sealed epoch on
//!      (re-sending it replaces the claim)
//!  storage device (kind storage) with a CommitStorage commitment: challenged as in
//!      crate::storage, and spot-retrieved here
//!
//!  end of epoch e: the seal fixes beacon_e; anyone derives, per audited device
//!    committee  = State::provider_audit_committee(e, device)
//!                 (Pool::draw over beacon' = derive_key(COMMITTEE_CONTEXT, beacon_e),
//!                  provider_committee_size members by stake, all validators if fewer)
//!    GPU:       State::gpu_challenge(e, device) = { seed, n = gpu_challenge_n, deadline_ms }
//!               A, B = groundtruth_proofs::freivalds::challenge_matrices(seed, n)
//!    storage:   State::retrieval_challenge(e, device) = retrieval_spot_chunks chunk indices
//!
//!  epochs e+1 ..= e+attestation_window_epochs: each member, independently,
//!    GPU:     sends the seed, times the product C, checks it with Freivalds (its own private
//!             rounds seed), passed = correct ∧ elapsed ≤ deadline_ms;
//!             measured_per_s = n³·1000 / elapsed_ms (multiply-adds per second)
//!    storage: fetches the chunks with their paths over libp2p, checks them against the
//!             committed root and times them; passed = all served right within its deadline
//!    and signs ReportProviderAudit { epoch: e, device, kind, passed, seed, response_digest,
//!                                    elapsed_ms, measured_per_s }          (fee: min_fee)
//!
//!  the report that brings one verdict to ≥ 2/3 of the committee's weight decides the round:
//!    Retrieval  fail → StorageFaultKind::RetrievalFailed fault on the commitment, counted with
//!                      missed deadlines and failing proofs: suspend at
//!                      storage_faults_to_suspend, slash slash_storage_fault_bp at
//!                      storage_faults_to_slash (crate::storage)
//!    GpuCapacity fail → the owner's provider stake is slashed slash_failed_gpu_bp, once, with
//!                      the failing reports as the evidence (reporter: LEDGER_REPORTER)
//!    GpuCapacity pass → recorded with the median measured throughput of the passing reports;
//!                      below the claim it is recorded below_spec (no slash)
//!    Retrieval  pass → recorded
//!  reports after the decision are recorded and change nothing
//! ```
//!
//! A round that never reaches 2/3 (conflicting reports, members offline) decides nothing.
//! A decided spot-retrieval failure and a failed or missed proof of the same epoch are two
//! faults (possession and retrieval are separate promises).
//! A validator pays the fee of each report; providers pay for `RegisterGpuSpec`. Rejected
//! reports (not a member, a duplicate, outside the window, a device of another kind, a seed
//! other than the ledger's, a pass past the deadline) change nothing but the fee.
//!
//! # Limits
//!
//! The GPU seed is public from the seal on. Members therefore do not challenge with it
//! directly: each mixes in a fresh nonce of its own when it asks
//! (`groundtruth_proofs::freivalds::member_seed`), so the product cannot be computed before
//! the request. The ledger does not see the nonce (it cannot recheck a member's timing either:
//! that is why a committee decides); a wrong product is caught with Freivalds' false-accept
//! bound `(1/p)^rounds` under the member's private rounds seed.
//! Weights are the members' powers in the epoch's seal.

use groundtruth_device_sdk::DeviceId;

use crate::codec::{Reader, Writer};
use crate::error::TxError;
use crate::types::{Address, DeviceKind, Epoch, Height};

/// Key derivation context of the committee draw's beacon.
pub const COMMITTEE_CONTEXT: &str = "groundtruth ledger provider audit committee v1";
/// Key derivation context of a GPU challenge seed.
pub const GPU_SEED_CONTEXT: &str = "groundtruth ledger gpu challenge v1";
/// Key derivation context of a spot-retrieval seed.
pub const RETRIEVAL_SEED_CONTEXT: &str = "groundtruth ledger retrieval spot-check v1";
/// Largest `provider_committee_size` (bounds a round's reports and a slash's evidence).
pub const MAX_PROVIDER_COMMITTEE: u8 = 64;
/// Largest `retrieval_spot_chunks`.
pub const MAX_SPOT_CHUNKS: u32 = 64;
/// Longest GPU model label, bytes.
pub const MAX_GPU_MODEL_LEN: usize = 64;
/// Fixed allowance in every GPU deadline for transfer and scheduling, milliseconds.
pub const GPU_DEADLINE_ALLOWANCE_MS: u64 = 2_000;
/// Slack factor on the compute time the claim implies.
pub const GPU_DEADLINE_SLACK: u64 = 2;

/// Which committee audit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ProviderAuditKind {
    /// Timed fetch of beacon-chosen chunks of a storage device.
    Retrieval,
    /// Timed random matrix product of a GPU device, checked with Freivalds' algorithm.
    GpuCapacity,
}

impl ProviderAuditKind {
    /// Encoding tag.
    pub const fn tag(self) -> u8 {
        match self {
            Self::Retrieval => 1,
            Self::GpuCapacity => 2,
        }
    }

    /// Lower-case name (`retrieval`, `gpu_capacity`).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Retrieval => "retrieval",
            Self::GpuCapacity => "gpu_capacity",
        }
    }

    /// Parses [`ProviderAuditKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Retrieval, Self::GpuCapacity]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The device kind this audit applies to.
    pub const fn device_kind(self) -> DeviceKind {
        match self {
            Self::Retrieval => DeviceKind::Storage,
            Self::GpuCapacity => DeviceKind::Gpu,
        }
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        match r.u8()? {
            1 => Ok(Self::Retrieval),
            2 => Ok(Self::GpuCapacity),
            _ => Err(TxError::Malformed("unknown provider audit kind")),
        }
    }
}

/// A GPU device's registered claim (`RegisterGpuSpec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuSpec {
    /// The device key that registered it (the record's key; stays across key rotations).
    pub device: DeviceId,
    /// The device's owner.
    pub owner: Address,
    /// Model label (at most [`MAX_GPU_MODEL_LEN`] bytes, no control characters).
    pub model: String,
    /// Number of GPUs behind the agent (positive).
    pub count: u32,
    /// Claimed throughput on the challenge: exact field multiply-adds per second
    /// (`n³ / seconds` for an `n × n` product over the Goldilocks field), positive.
    pub claimed_mac_per_s: u64,
    /// Epoch in which it was (last) registered.
    pub since_epoch: Epoch,
}

impl GpuSpec {
    pub(crate) fn encode(&self, w: &mut Writer) {
        crate::types::encode_device(&self.device, w);
        self.owner.encode(w);
        w.str(&self.model)
            .u32(self.count)
            .u64(self.claimed_mac_per_s)
            .u64(self.since_epoch);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            device: crate::types::decode_device(r)?,
            owner: Address::decode(r)?,
            model: check_model(r.string()?)?,
            count: r.u32()?,
            claimed_mac_per_s: r.u64()?,
            since_epoch: r.u64()?,
        })
    }
}

/// Checks a GPU model label's length and characters.
pub(crate) fn check_model(model: String) -> Result<String, TxError> {
    if model.len() > MAX_GPU_MODEL_LEN || model.chars().any(char::is_control) {
        return Err(TxError::InvalidText("gpu model"));
    }
    Ok(model)
}

/// A GPU device's challenge for an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuChallenge {
    /// Seed of the matrices (`freivalds::challenge_matrices(seed, n)`).
    pub seed: [u8; 32],
    /// Matrix dimension (`gpu_challenge_n`).
    pub n: u32,
    /// Time the provider has from the request to the product, ms ([`gpu_deadline_ms`]).
    pub deadline_ms: u32,
}

/// The GPU deadline for an `n × n` product on a device claiming `claimed_mac_per_s`:
/// `GPU_DEADLINE_ALLOWANCE_MS + ⌈GPU_DEADLINE_SLACK · n³ · 1000 / claimed⌉`, saturating at
/// `u32::MAX` (a zero claim gives `u32::MAX`).
pub fn gpu_deadline_ms(n: u32, claimed_mac_per_s: u64) -> u32 {
    if claimed_mac_per_s == 0 {
        return u32::MAX;
    }
    let n = u128::from(n);
    let work = n
        .saturating_mul(n)
        .saturating_mul(n)
        .saturating_mul(u128::from(GPU_DEADLINE_SLACK))
        .saturating_mul(1000);
    let compute = work.div_ceil(u128::from(claimed_mac_per_s));
    let total = compute.saturating_add(u128::from(GPU_DEADLINE_ALLOWANCE_MS));
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The throughput a member reports for a GPU challenge answered in `elapsed_ms`:
/// `n³ · 1000 / elapsed_ms` multiply-adds per second (an `elapsed_ms` of 0 counts as 1),
/// saturating at `u64::MAX`.
pub fn gpu_measured_per_s(n: u32, elapsed_ms: u32) -> u64 {
    let n = u128::from(n);
    let work = n.saturating_mul(n).saturating_mul(n).saturating_mul(1000);
    u64::try_from(work / u128::from(elapsed_ms.max(1))).unwrap_or(u64::MAX)
}

fn derive(context: &str, beacon: &[u8; 32], epoch: Epoch, device: &DeviceId) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    h.update(beacon);
    h.update(&epoch.to_be_bytes());
    h.update(&device.0);
    *h.finalize().as_bytes()
}

/// A GPU device's challenge seed: `blake3::derive_key(GPU_SEED_CONTEXT)` over
/// `beacon[32] ‖ epoch u64 BE ‖ device[32]` (`device`: the key that registered the spec).
pub fn gpu_seed(beacon: &[u8; 32], epoch: Epoch, device: &DeviceId) -> [u8; 32] {
    derive(GPU_SEED_CONTEXT, beacon, epoch, device)
}

/// A storage device's spot-retrieval seed: `blake3::derive_key(RETRIEVAL_SEED_CONTEXT)` over
/// `beacon[32] ‖ epoch u64 BE ‖ device[32]` (`device`: the key that committed).
pub fn retrieval_seed(beacon: &[u8; 32], epoch: Epoch, device: &DeviceId) -> [u8; 32] {
    derive(RETRIEVAL_SEED_CONTEXT, beacon, epoch, device)
}

/// The beacon the committee of an epoch is drawn with:
/// `blake3::derive_key(COMMITTEE_CONTEXT)` over the epoch's beacon (so the committee is not
/// the device's audit assignment).
pub fn committee_beacon(beacon: &[u8; 32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(COMMITTEE_CONTEXT);
    h.update(beacon);
    *h.finalize().as_bytes()
}

/// The chunk indices of a spot retrieval: `min(count, num_chunks)` distinct indices below
/// `num_chunks`, each the next 8 bytes (u64 little-endian) of the Blake3 XOF of `seed` reduced
/// modulo `num_chunks`, repeats skipped. Empty when `num_chunks` is 0.
pub fn spot_indices(seed: &[u8; 32], num_chunks: u64, count: u32) -> Vec<u64> {
    let want = u64::from(count).min(num_chunks);
    let mut out: Vec<u64> = Vec::new();
    if want == 0 {
        return out;
    }
    let mut xof = blake3::Hasher::new_derive_key(RETRIEVAL_SEED_CONTEXT)
        .update(seed)
        .finalize_xof();
    // `want ≤ 64` distinct values out of `num_chunks ≥ want`: a draw repeats with probability
    // below 64/65 at worst, so 64·64 draws end the loop in practice; the bound keeps it finite.
    let mut draws = 0u32;
    while (out.len() as u64) < want && draws < 64 * 64 {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        draws += 1;
        let i = u64::from_le_bytes(b) % num_chunks;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// One committee member's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderAuditReport {
    /// Operator of the reporting validator.
    pub validator: Address,
    /// Its verdict.
    pub passed: bool,
    /// Blake3 of what the provider returned (`Matrix::digest` of the product; for retrieval,
    /// of the chunks served), zero if nothing came back.
    pub response_digest: [u8; 32],
    /// Time from request to complete response, as the member measured it, ms.
    pub elapsed_ms: u32,
    /// Throughput the member measured (GPU: multiply-adds per second; retrieval: bytes per
    /// second).
    pub measured_per_s: u64,
    /// Height of the block that recorded it.
    pub height: Height,
}

impl ProviderAuditReport {
    pub(crate) fn encode(&self, w: &mut Writer) {
        self.validator.encode(w);
        w.bool(self.passed)
            .raw(&self.response_digest)
            .u32(self.elapsed_ms)
            .u64(self.measured_per_s)
            .u64(self.height);
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            validator: Address::decode(r)?,
            passed: r.bool()?,
            response_digest: r.array()?,
            elapsed_ms: r.u32()?,
            measured_per_s: r.u64()?,
            height: r.u64()?,
        })
    }
}

pub(crate) fn encode_reports(reports: &[ProviderAuditReport], w: &mut Writer) {
    w.u32(u32::try_from(reports.len()).unwrap_or(u32::MAX));
    for x in reports {
        x.encode(w);
    }
}

pub(crate) fn decode_reports(r: &mut Reader<'_>) -> Result<Vec<ProviderAuditReport>, TxError> {
    let n = r.u32()?;
    if n > u32::from(MAX_PROVIDER_COMMITTEE) {
        return Err(TxError::Malformed("too many provider audit reports"));
    }
    (0..n).map(|_| ProviderAuditReport::decode(r)).collect()
}

/// How a round was decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderAuditDecision {
    /// The verdict reports holding ≥ 2/3 of the committee's weight agreed on.
    pub passed: bool,
    /// Height of the block whose report decided it.
    pub height: Height,
    /// Median (lower) `measured_per_s` of the agreeing reports.
    pub median_measured_per_s: u64,
    /// A GPU pass whose median throughput is below the registered claim.
    pub below_spec: bool,
}

/// Every report for one (epoch, device, kind), and the decision once reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderAuditRound {
    /// The audited epoch.
    pub epoch: Epoch,
    /// The audited device's record key (the key that committed or registered the spec).
    pub device: DeviceId,
    /// Which audit.
    pub kind: ProviderAuditKind,
    /// The device's owner.
    pub owner: Address,
    /// The challenge seed every report carried (the ledger's).
    pub seed: [u8; 32],
    /// Reports in the order recorded (one per committee member at most).
    pub reports: Vec<ProviderAuditReport>,
    /// The decision, once reports with one verdict reached ≥ 2/3 of the committee's weight.
    pub decision: Option<ProviderAuditDecision>,
}

impl ProviderAuditRound {
    pub(crate) fn encode(&self, w: &mut Writer) {
        w.u64(self.epoch);
        crate::types::encode_device(&self.device, w);
        w.u8(self.kind.tag());
        self.owner.encode(w);
        w.raw(&self.seed);
        encode_reports(&self.reports, w);
        match &self.decision {
            None => w.u8(0),
            Some(d) => w
                .u8(1)
                .bool(d.passed)
                .u64(d.height)
                .u64(d.median_measured_per_s)
                .bool(d.below_spec),
        };
    }

    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, TxError> {
        Ok(Self {
            epoch: r.u64()?,
            device: crate::types::decode_device(r)?,
            kind: ProviderAuditKind::decode(r)?,
            owner: Address::decode(r)?,
            seed: r.array()?,
            reports: decode_reports(r)?,
            decision: if r.option_tag()? {
                Some(ProviderAuditDecision {
                    passed: r.bool()?,
                    height: r.u64()?,
                    median_measured_per_s: r.u64()?,
                    below_spec: r.bool()?,
                })
            } else {
                None
            },
        })
    }
}

/// The lower median of `values` (0 when empty).
pub(crate) fn lower_median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    let mid = values.len().saturating_sub(1) / 2;
    values.get(mid).copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_follows_the_claim() {
        // 256³ = 16.8 M multiply-adds at 16.8 M/s: 1 s of compute, 2 s with slack, + 2 s.
        assert_eq!(gpu_deadline_ms(256, 256 * 256 * 256), 4_000);
        assert_eq!(gpu_deadline_ms(256, u64::MAX), 2_001);
        assert_eq!(gpu_deadline_ms(256, 0), u32::MAX);
        assert_eq!(gpu_deadline_ms(2048, 1), u32::MAX);
        // Answering exactly at the claim's pace measures the claim.
        assert_eq!(gpu_measured_per_s(256, 1_000), 256 * 256 * 256);
        assert_eq!(gpu_measured_per_s(256, 0), 256 * 256 * 256 * 1000);
    }

    #[test]
    fn spot_indices_are_distinct_bounded_and_seeded() {
        let a = spot_indices(&[1; 32], 1_000, 4);
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|i| *i < 1_000));
        let mut d = a.clone();
        d.sort_unstable();
        d.dedup();
        assert_eq!(d.len(), 4);
        assert_eq!(a, spot_indices(&[1; 32], 1_000, 4));
        assert_ne!(a, spot_indices(&[2; 32], 1_000, 4));
        let mut all = spot_indices(&[1; 32], 3, 4);
        all.sort_unstable();
        assert_eq!(all, vec![0, 1, 2]);
        assert!(spot_indices(&[1; 32], 0, 4).is_empty());
    }

    #[test]
    fn median_is_the_lower_one() {
        assert_eq!(lower_median(vec![]), 0);
        assert_eq!(lower_median(vec![5]), 5);
        assert_eq!(lower_median(vec![9, 1, 5, 7]), 5);
        assert_eq!(lower_median(vec![9, 1, 5]), 5);
    }

    #[test]
    fn round_round_trips() {
        let round = ProviderAuditRound {
            epoch: 3,
            device: DeviceId([7; 32]),
            kind: ProviderAuditKind::GpuCapacity,
            owner: Address([8; 32]),
            seed: [9; 32],
            reports: vec![ProviderAuditReport {
                validator: Address([1; 32]),
                passed: true,
                response_digest: [2; 32],
                elapsed_ms: 10,
                measured_per_s: 11,
                height: 12,
            }],
            decision: Some(ProviderAuditDecision {
                passed: true,
                height: 12,
                median_measured_per_s: 11,
                below_spec: true,
            }),
        };
        let mut w = Writer::new();
        round.encode(&mut w);
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(ProviderAuditRound::decode(&mut r), Ok(round));
        assert_eq!(r.finish(), Ok(()));
    }
}
