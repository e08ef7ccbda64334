//! What the API serves: plain serde data, no node or ledger types. The JSON of every view is
//! the wire format (the CLI, the integration tests and outside clients read it), so a field is
//! renamed or removed only with a new route.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 32 bytes (an address, device id, consensus key, hash or root), written as 64 lower-case
/// hex characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hex32(pub [u8; 32]);

impl fmt::Display for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hex32 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex32({self})")
    }
}

/// A string that is not 64 hex characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected 64 hex characters")]
pub struct BadHex32;

impl FromStr for Hex32 {
    type Err = BadHex32;

    fn from_str(s: &str) -> Result<Self, BadHex32> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| BadHex32)?;
        Ok(Self(out))
    }
}

impl From<[u8; 32]> for Hex32 {
    fn from(b: [u8; 32]) -> Self {
        Self(b)
    }
}

impl Serialize for Hex32 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Hex32 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `GET /status`: the committed chain head and this validator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// Chain id (part of every transaction's signed bytes).
    pub chain_id: String,
    /// Last committed height.
    pub height: u64,
    /// Current epoch.
    pub epoch: u64,
    /// State root after the last committed block.
    pub state_root: Hex32,
    /// Transactions waiting in this node's mempool.
    pub mempool: u64,
    /// This validator's consensus address.
    pub validator: Hex32,
}

/// A validator's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ValidatorStatusView {
    /// In the set (`"active"`).
    Active,
    /// Jailed until the epoch (`{"jailed_until_epoch": n}`).
    JailedUntilEpoch(u64),
    /// Removed for good (`"removed"`).
    Removed,
}

/// The validator record of an account (`GET /state/account/…`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountValidatorView {
    /// Key it signs consensus votes with.
    pub consensus_key: Hex32,
    /// Bonded self-stake.
    pub stake: u64,
    /// Active, jailed or removed.
    pub status: ValidatorStatusView,
    /// How often it was jailed.
    pub jail_count: u32,
}

/// The provider record of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProviderView {
    /// Bonded stake.
    pub stake: u64,
    /// Committed data root (zero if none).
    pub data_root: Hex32,
}

/// Payouts listed in [`AccountRewardsView::recent`]: the latest this many.
pub const ACCOUNT_RECENT_REWARDS: usize = 16;

/// One epoch's reward paid to an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EpochRewardView {
    /// The epoch whose end paid it.
    pub epoch: u64,
    /// Amount minted to the account's balance.
    pub amount: u64,
}

/// Rewards the ledger paid an account: at each epoch end, the auditor share (for audits the
/// account's validator recorded) and the work share (for verified work of the devices and
/// storage/GPU rounds it owns) together, as the ledger records them per (epoch, account).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountRewardsView {
    /// Sum of every payout since genesis (already part of `balance` when paid), from the
    /// ledger's running per-account total: exact whatever the ledger pruned.
    pub total: u64,
    /// Epochs whose end paid the account something, since genesis.
    pub epochs: u64,
    /// The latest payouts (at most 16), newest first, among the epochs the ledger still keeps
    /// per-epoch entries of: the last `history_epochs` (a genesis parameter, default 16), so
    /// older payouts are counted in `total` and `epochs` but no longer listed.
    pub recent: Vec<EpochRewardView>,
}

/// `GET /state/account/<hex>` (an unknown account has zero balance and nonce).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AccountView {
    /// The address asked for.
    pub address: Hex32,
    /// Liquid balance.
    pub balance: u64,
    /// Next nonce the ledger expects.
    pub nonce: u64,
    /// Its validator record, if it runs one.
    pub validator: Option<AccountValidatorView>,
    /// Its provider record, if it is one.
    pub provider: Option<ProviderView>,
    /// Rewards paid to it (zeros and an empty list when none).
    #[serde(default)]
    pub rewards: AccountRewardsView,
}

/// A device's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatusView {
    /// Its readings are accepted.
    Active,
    /// Retired; its readings are rejected.
    Retired,
    /// Suspended after an equivocation slash; its readings are rejected.
    Suspended,
}

/// `GET /state/device/<hex>` (by current or previous key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// Current key.
    pub id: Hex32,
    /// Owning provider (`None` for genesis devices without one).
    pub owner: Option<Hex32>,
    /// `energy`, `gpu` or `storage`.
    pub kind: String,
    /// Capacity in the kind's unit.
    pub capacity: u64,
    /// Region label (may be empty).
    pub region: String,
    /// Active or retired.
    pub status: DeviceStatusView,
    /// Height it was registered at (0: genesis).
    pub registered_at: u64,
    /// Keys it used before, oldest first.
    pub previous_keys: Vec<Hex32>,
    /// Committed height this view was read at.
    pub height: u64,
}

/// One member of the current consensus set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMemberView {
    /// Its consensus key.
    pub consensus_key: Hex32,
    /// Voting power.
    pub power: u64,
}

/// A validator in `GET /state/validators`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorView {
    /// Operator account.
    pub operator: Hex32,
    /// Consensus key.
    pub consensus_key: Hex32,
    /// Bonded self-stake.
    pub stake: u64,
    /// Stake delegated to it.
    pub delegated: u64,
    /// Active, jailed or removed.
    pub status: ValidatorStatusView,
    /// How often it was jailed.
    pub jail_count: u32,
}

/// Whose stake a slash took.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffenderView {
    /// A validator, by operator (`{"validator": "<hex>"}`).
    Validator(Hex32),
    /// A provider (`{"provider": "<hex>"}`).
    Provider(Hex32),
}

/// One slash, with its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlashView {
    /// Sequence number.
    pub id: u64,
    /// Height of the block that applied it.
    pub height: u64,
    /// Whose stake.
    pub offender: OffenderView,
    /// Stable reason code.
    pub reason: String,
    /// Amount burned.
    pub amount: u64,
    /// Whether the validator was jailed.
    pub jailed: bool,
    /// Whether the validator was removed.
    pub removed: bool,
    /// One line for humans.
    pub explain: String,
}

/// `GET /state/validators`: the set, every validator and every slash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidatorsView {
    /// Committed height.
    pub height: u64,
    /// Current epoch.
    pub epoch: u64,
    /// The consensus set now.
    pub set: Vec<SetMemberView>,
    /// Every validator record.
    pub validators: Vec<ValidatorView>,
    /// Every slash, oldest first.
    pub slashes: Vec<SlashView>,
}

/// `GET /tx/<hash>`: the outcome of a recently committed transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcomeView {
    /// Its hash.
    pub hash: Hex32,
    /// Height of the block that holds it.
    pub height: u64,
    /// Applied (`true`) or rejected by the ledger while applying the block.
    pub ok: bool,
    /// The ledger's reason code when rejected.
    pub reason: Option<String>,
}

/// One transaction of a block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockTxView {
    /// Its hash.
    pub hash: Hex32,
    /// Applied or rejected.
    pub ok: bool,
    /// The ledger's reason code when rejected.
    pub reason: Option<String>,
}

/// `GET /block/<height>`: a recent block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Its height.
    pub height: u64,
    /// State root after it.
    pub state_root: Hex32,
    /// Its transactions in block order.
    pub txs: Vec<BlockTxView>,
}

/// `POST /tx` accepted a transaction into the mempool (not yet committed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// Its hash (what `GET /tx/<hash>` takes).
    pub hash: Hex32,
    /// `false` if it was already pending.
    pub new: bool,
}

/// One refused entry of a `POST /txs` batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedView {
    /// Stable reason code (the ledger's, or `mempool_full`, `stopped`, …).
    pub reason: String,
    /// For humans.
    pub detail: String,
}

/// The outcome of one entry of a `POST /txs` batch, in batch order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum BatchItem {
    /// Admitted (`{"hash","new"}`).
    Submitted(Submitted),
    /// Refused (`{"reason","detail"}`).
    Rejected(RejectedView),
}

/// One named check of `/healthz` or `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckView {
    /// What is checked (`ingest`, `consensus`, …).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen (e.g. `last progress 1.2 s ago`).
    pub detail: String,
}

impl CheckView {
    /// A check result.
    pub fn new(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ok,
            detail: detail.into(),
        }
    }
}

/// `/healthz` and `/readyz`: passed when every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HealthView {
    /// All checks passed.
    pub ok: bool,
    /// Each check.
    pub checks: Vec<CheckView>,
}

impl HealthView {
    /// `ok` is the conjunction of the checks (an empty list passes).
    pub fn from_checks(checks: Vec<CheckView>) -> Self {
        Self {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

impl utoipa::PartialSchema for Hex32 {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^[0-9a-f]{64}$"))
            .description(Some(
                "32 bytes as 64 lower-case hex characters (key, id, hash or root)",
            ))
            .into()
    }
}

impl utoipa::ToSchema for Hex32 {}

/// The interval length of a production series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Granularity {
    /// Five minutes (`"5m"`), the bucket the node keeps.
    #[serde(rename = "5m")]
    FiveMinutes,
    /// Fifteen minutes (`"15m"`).
    #[serde(rename = "15m")]
    FifteenMinutes,
    /// One hour (`"1h"`).
    #[serde(rename = "1h")]
    Hour,
    /// One UTC day (`"1d"`).
    #[serde(rename = "1d")]
    Day,
}

impl Granularity {
    /// Every granularity, finest first.
    pub const ALL: [Self; 4] = [
        Self::FiveMinutes,
        Self::FifteenMinutes,
        Self::Hour,
        Self::Day,
    ];

    /// Its length in seconds (each divides a day; intervals are aligned to the Unix epoch,
    /// so days are UTC days).
    pub const fn seconds(self) -> u64 {
        match self {
            Self::FiveMinutes => 300,
            Self::FifteenMinutes => 900,
            Self::Hour => 3600,
            Self::Day => 86_400,
        }
    }

    /// Its query-string form (`5m`, `15m`, `1h`, `1d`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FiveMinutes => "5m",
            Self::FifteenMinutes => "15m",
            Self::Hour => "1h",
            Self::Day => "1d",
        }
    }

    /// Parses the query-string form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// How far a production value is established, weakest first.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BucketStatusView {
    /// Signed readings accepted by the node; not yet covered by an epoch commitment.
    Reported,
    /// Covered by an epoch readings commitment fixed on the ledger by ≥ 2/3 of stake.
    Attested,
    /// Covered by an audit proof the ledger verified.
    Verified,
    /// Its epoch commitment is anchored on L1.
    Anchored,
}

/// The evidence behind a value above `reported`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EvidenceRefView {
    /// Epoch whose commitment covers it.
    pub epoch: u64,
    /// Digest of the audit proof (`verified`, `anchored`).
    pub proof: Option<Hex32>,
    /// L1 transaction hash of the anchor (`anchored`).
    pub l1_tx: Option<Hex32>,
    /// L1 block holding that transaction (`anchored`).
    #[serde(default)]
    pub l1_block: Option<u64>,
}

/// One interval of a production series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductionPointView {
    /// Interval start, RFC 3339 UTC.
    pub start: String,
    /// Interval end (exclusive), RFC 3339 UTC.
    pub end: String,
    /// Energy produced, Wh (energy meters; 0 for GPU agents).
    pub energy_wh: u64,
    /// GPU time delivered, milliseconds (GPU agents; 0 for energy meters).
    pub gpu_ms: u64,
    /// Readings summed (each counts whole in the 5-minute bucket holding its start).
    pub readings: u64,
    /// The weakest status of the 5-minute buckets summed.
    pub status: BucketStatusView,
    /// Distinct evidence of those buckets (empty while `reported`; device series only).
    pub evidence: Vec<EvidenceRefView>,
}

/// `GET /v1/production/devices/{id}` and `GET /v1/production/regions/{region}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductionSeriesView {
    /// `device` or `region`.
    pub subject: String,
    /// The device id (hex) or region label asked for.
    pub id: String,
    /// Interval length.
    pub granularity: Granularity,
    /// Range start asked for, RFC 3339 UTC.
    pub from: String,
    /// Range end asked for (exclusive), RFC 3339 UTC.
    pub to: String,
    /// Intervals with readings, oldest first; intervals without readings are absent.
    pub points: Vec<ProductionPointView>,
    /// Pass as `cursor` (with the same query) for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A device with production (`GET /v1/devices`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceProductionSummaryView {
    /// Device id.
    pub id: Hex32,
    /// `energy` or `gpu`.
    pub kind: String,
    /// Region label (may be empty).
    pub region: String,
    /// Energy, Wh, all time.
    pub energy_wh: u64,
    /// GPU time, ms, all time.
    pub gpu_ms: u64,
    /// Readings counted.
    pub readings: u64,
    /// Start of its first 5-minute interval, RFC 3339 UTC.
    pub first_interval: String,
    /// Start of its last 5-minute interval, RFC 3339 UTC.
    pub last_interval: String,
}

/// `GET /v1/devices`: one page of devices with production, in id order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DevicesPageView {
    /// The devices.
    pub devices: Vec<DeviceProductionSummaryView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// One newly accepted reading, as `GET /v1/events` streams it (event `production`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ProductionEventView {
    /// Device id.
    pub device: Hex32,
    /// Its sequence number.
    pub seq: u64,
    /// `energy` or `gpu`.
    pub kind: String,
    /// Region label (may be empty).
    pub region: String,
    /// Interval start, RFC 3339 UTC.
    pub interval_start: String,
    /// Interval length, seconds.
    pub interval_len_s: u32,
    /// Energy, Wh.
    pub energy_wh: u64,
    /// GPU time, ms.
    pub gpu_ms: u64,
    /// Always `reported` when first streamed.
    pub status: BucketStatusView,
}

/// Sent on `GET /v1/events` (event `lagged`) when this client fell behind and missed events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LaggedView {
    /// Events this client missed.
    pub dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hex32_round_trips_and_rejects_bad_text() -> Result<(), serde_json::Error> {
        let h = Hex32([0xab; 32]);
        let s = serde_json::to_string(&h)?;
        assert_eq!(s, format!("\"{}\"", "ab".repeat(32)));
        assert_eq!(serde_json::from_str::<Hex32>(&s).ok(), Some(h));
        assert!(serde_json::from_str::<Hex32>("\"abc\"").is_err());
        assert_eq!("zz".parse::<Hex32>(), Err(BadHex32));
        Ok(())
    }

    #[test]
    fn json_shapes_match_the_wire_format() -> Result<(), serde_json::Error> {
        let z = Hex32([0; 32]);
        let zs = "00".repeat(32);
        let acc = AccountView {
            address: z,
            balance: 5,
            nonce: 1,
            validator: Some(AccountValidatorView {
                consensus_key: z,
                stake: 9,
                status: ValidatorStatusView::JailedUntilEpoch(3),
                jail_count: 1,
            }),
            provider: None,
            rewards: AccountRewardsView {
                total: 30,
                epochs: 2,
                recent: vec![
                    EpochRewardView {
                        epoch: 4,
                        amount: 10,
                    },
                    EpochRewardView {
                        epoch: 2,
                        amount: 20,
                    },
                ],
            },
        };
        assert_eq!(
            serde_json::to_value(&acc)?,
            json!({"address": zs, "balance": 5, "nonce": 1, "provider": null,
                   "validator": {"consensus_key": zs, "stake": 9,
                                 "status": {"jailed_until_epoch": 3}, "jail_count": 1},
                   "rewards": {"total": 30, "epochs": 2,
                               "recent": [{"epoch": 4, "amount": 10}, {"epoch": 2, "amount": 20}]}})
        );
        assert_eq!(
            serde_json::to_value(ValidatorStatusView::Active)?,
            json!("active")
        );
        assert_eq!(
            serde_json::to_value(OffenderView::Provider(z))?,
            json!({"provider": zs})
        );
        let items = vec![
            BatchItem::Submitted(Submitted { hash: z, new: true }),
            BatchItem::Rejected(RejectedView {
                reason: "bad_nonce".into(),
                detail: "x".into(),
            }),
        ];
        let v = serde_json::to_value(&items)?;
        assert_eq!(
            v,
            json!([{"hash": zs, "new": true}, {"reason": "bad_nonce", "detail": "x"}])
        );
        assert_eq!(serde_json::from_value::<Vec<BatchItem>>(v)?, items);
        Ok(())
    }
}
