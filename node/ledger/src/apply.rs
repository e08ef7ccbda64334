//! The state transition: transactions, blocks and epoch boundaries.
//!
//! Every transaction is applied in two phases. The check phase reads the state, checks
//! everything (signature, nonce, fee, the body's rules) and computes every new value with
//! checked arithmetic, staging balance changes; it returns a commit closure. The commit phase
//! only writes precomputed values and cannot fail. So a rejected transaction changes nothing,
//! and [`check_tx`] (the check phase alone) is exact for mempools.

use std::collections::BTreeMap;

use groundtruth_device_sdk::DeviceId;

use crate::error::{LedgerError, Result, TxError};
use crate::evidence::{check_device_equivocation, Evidence, SlashEvidence, MAX_REASON_LEN};
use crate::genesis::BP_ONE;
use crate::state::State;
use crate::tx::{possession_sign_bytes, Block, SignedTx, TxBody};
use crate::types::{
    check_region, Address, Amount, AuditKind, AuditRecord, AuditResult, AuditSubject, ConsensusKey,
    Device, DeviceStatus, Epoch, Height, Offender, Provider, SlashReason, SlashRecord, StakeRole,
    UnbondingEntry, Validator, ValidatorStatus,
};

/// What the block being applied says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockContext {
    /// Height of the block.
    pub height: Height,
    /// Consensus key of its proposer; fees go to its operator's account (burned if `None` or
    /// unknown).
    pub proposer: Option<ConsensusKey>,
}

/// Something that happened, for logs, the API and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A fee was paid (`to: None`: burned).
    FeePaid {
        /// Payer.
        from: Address,
        /// Proposer's operator, or `None` when burned.
        to: Option<Address>,
        /// Amount.
        amount: Amount,
    },
    /// Liquid balance moved.
    Transfer {
        /// Sender.
        from: Address,
        /// Recipient.
        to: Address,
        /// Amount.
        amount: Amount,
    },
    /// A validator was created.
    ValidatorCreated {
        /// Operator.
        operator: Address,
        /// Consensus key.
        consensus_key: ConsensusKey,
        /// Initial stake.
        stake: Amount,
    },
    /// Stake was bonded (validator or provider).
    Bonded {
        /// Owner.
        owner: Address,
        /// Which stake.
        role: StakeRole,
        /// Amount added.
        amount: Amount,
    },
    /// Stake started unbonding.
    Unbonding {
        /// Owner.
        owner: Address,
        /// Which stake.
        role: StakeRole,
        /// Amount.
        amount: Amount,
        /// Entry id.
        id: u64,
        /// Released at the end of this epoch.
        matures_at_epoch: Epoch,
    },
    /// An unbonding entry matured and its stake returned to the balance.
    UnbondingReleased {
        /// Entry id.
        id: u64,
        /// Owner credited.
        owner: Address,
        /// Amount credited.
        amount: Amount,
    },
    /// A validator left jail.
    Unjailed {
        /// Operator.
        operator: Address,
    },
    /// A provider registered.
    ProviderRegistered {
        /// Provider.
        address: Address,
        /// Initial stake.
        stake: Amount,
    },
    /// A device registered.
    DeviceRegistered {
        /// Device key.
        device: DeviceId,
        /// Owner.
        owner: Address,
    },
    /// A device key was rotated.
    DeviceKeyRotated {
        /// Retired key.
        old: DeviceId,
        /// New key.
        new: DeviceId,
    },
    /// A device was retired.
    DeviceRetired {
        /// Device key.
        device: DeviceId,
    },
    /// An audit was recorded.
    AuditRecorded {
        /// Epoch audited.
        epoch: Epoch,
        /// Subject.
        subject: AuditSubject,
        /// Kind.
        kind: AuditKind,
        /// Result.
        result: AuditResult,
    },
    /// Stake was slashed (see the slash record for the evidence).
    Slashed {
        /// Slash id (index into [`State::slashes`]).
        id: u64,
        /// Offender.
        offender: Offender,
        /// Reason.
        reason: SlashReason,
        /// Amount burned.
        amount: Amount,
    },
    /// A validator was jailed (zero voting power at once).
    Jailed {
        /// Operator.
        operator: Address,
        /// First epoch at which it may unjail.
        until_epoch: Epoch,
    },
    /// A validator was removed for good.
    ValidatorRemoved {
        /// Operator.
        operator: Address,
    },
    /// A reward was minted for audited work.
    RewardPaid {
        /// Epoch rewarded.
        epoch: Epoch,
        /// Recipient.
        to: Address,
        /// Amount minted.
        amount: Amount,
    },
    /// An epoch ended.
    EpochEnded {
        /// The epoch that ended.
        epoch: Epoch,
        /// Total minted for it.
        minted: Amount,
    },
    /// The validator set changed (at an epoch boundary, or by jailing/removal).
    ValidatorSetChanged,
}

/// The result of an accepted transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxReceipt {
    /// blake3 of the signed transaction's canonical bytes.
    pub tx_hash: [u8; 32],
    /// Signer.
    pub signer: Address,
    /// Nonce consumed.
    pub nonce: u64,
    /// Fee paid.
    pub fee: Amount,
    /// What happened.
    pub events: Vec<Event>,
}

/// The result of a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockOutcome {
    /// Height applied.
    pub height: Height,
    /// One result per transaction, in block order.
    pub results: Vec<core::result::Result<TxReceipt, TxError>>,
    /// Events of the end of the block (epoch boundary: rewards, releases, set change).
    pub end_block_events: Vec<Event>,
    /// The epoch that ended with this block, if any.
    pub epoch_ended: Option<Epoch>,
    /// Whether [`State::validator_set`] differs from before the block.
    pub validator_set_changed: bool,
    /// State root after the block.
    pub state_root: [u8; 32],
}

/// Balance changes and burns staged during the check phase; reads see staged values.
struct Stage<'a> {
    state: &'a State,
    balances: BTreeMap<Address, Amount>,
    burned: Amount,
}

impl<'a> Stage<'a> {
    fn new(state: &'a State) -> Self {
        Self {
            state,
            balances: BTreeMap::new(),
            burned: 0,
        }
    }

    fn balance(&self, a: &Address) -> Amount {
        self.balances
            .get(a)
            .copied()
            .unwrap_or_else(|| self.state.account(a).balance)
    }

    fn debit(&mut self, a: &Address, amount: Amount) -> core::result::Result<(), TxError> {
        let available = self.balance(a);
        let left = available
            .checked_sub(amount)
            .ok_or(TxError::InsufficientFunds {
                needed: amount,
                available,
            })?;
        self.balances.insert(*a, left);
        Ok(())
    }

    fn credit(&mut self, a: &Address, amount: Amount) -> core::result::Result<(), TxError> {
        let new = self
            .balance(a)
            .checked_add(amount)
            .ok_or(TxError::Overflow)?;
        self.balances.insert(*a, new);
        Ok(())
    }

    fn burn(&mut self, amount: Amount) -> core::result::Result<(), TxError> {
        self.burned = self.burned.checked_add(amount).ok_or(TxError::Overflow)?;
        self.state
            .supply
            .burned
            .checked_add(self.burned)
            .ok_or(TxError::Overflow)?;
        Ok(())
    }
}

/// Writes a check phase's results; cannot fail.
type Commit = Box<dyn FnOnce(&mut State, &mut Vec<Event>)>;

/// Checks a transaction against the state without changing it: exactly the checks
/// [`apply_tx`] makes. For mempools and proposers.
pub fn check_tx(
    state: &State,
    tx: &SignedTx,
    ctx: &BlockContext,
) -> core::result::Result<(), TxError> {
    check(state, tx, ctx).map(|_| ())
}

struct Checked {
    balances: BTreeMap<Address, Amount>,
    burned: Amount,
    next_nonce: u64,
    fee_to: Option<Address>,
    commit: Commit,
}

fn check(st: &State, stx: &SignedTx, ctx: &BlockContext) -> core::result::Result<Checked, TxError> {
    let tx = &stx.tx;
    if tx.signer.is_weak() {
        return Err(TxError::WeakKey("signer"));
    }
    stx.verify(&st.chain_id)?;
    let expected = st.account(&tx.signer).nonce;
    if tx.nonce != expected {
        return Err(TxError::BadNonce {
            expected,
            got: tx.nonce,
        });
    }
    let next_nonce = expected.checked_add(1).ok_or(TxError::Overflow)?;
    if tx.fee < st.params.min_fee {
        return Err(TxError::FeeTooLow {
            min: st.params.min_fee,
            got: tx.fee,
        });
    }
    let mut stage = Stage::new(st);
    stage.debit(&tx.signer, tx.fee)?;
    let fee_to = ctx
        .proposer
        .and_then(|k| st.consensus_keys.get(&k))
        .copied();
    match &fee_to {
        Some(op) => stage.credit(op, tx.fee)?,
        None => stage.burn(tx.fee)?,
    }
    let commit = check_body(&mut stage, &tx.signer, &tx.body, ctx)?;
    Ok(Checked {
        balances: stage.balances,
        burned: stage.burned,
        next_nonce,
        fee_to,
        commit,
    })
}

/// Applies one transaction. On error nothing changed.
pub fn apply_tx(
    state: &mut State,
    tx: &SignedTx,
    ctx: &BlockContext,
) -> core::result::Result<TxReceipt, TxError> {
    let checked = check(state, tx, ctx)?;
    // Commit phase: only precomputed writes from here on.
    let signer = tx.tx.signer;
    for (a, b) in checked.balances {
        state.accounts.entry(a).or_default().balance = b;
    }
    state.accounts.entry(signer).or_default().nonce = checked.next_nonce;
    state.supply.burned = state.supply.burned.saturating_add(checked.burned);
    let mut events = vec![Event::FeePaid {
        from: signer,
        to: checked.fee_to,
        amount: tx.tx.fee,
    }];
    (checked.commit)(state, &mut events);
    Ok(TxReceipt {
        tx_hash: tx.hash(),
        signer,
        nonce: tx.tx.nonce,
        fee: tx.tx.fee,
        events,
    })
}

fn positive(amount: Amount) -> core::result::Result<(), TxError> {
    if amount == 0 {
        Err(TxError::ZeroAmount)
    } else {
        Ok(())
    }
}

fn check_body(
    stage: &mut Stage<'_>,
    signer: &Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    let signer = *signer;
    match body {
        TxBody::Transfer { to, amount } => {
            positive(*amount)?;
            stage.debit(&signer, *amount)?;
            stage.credit(to, *amount)?;
            let (to, amount) = (*to, *amount);
            Ok(Box::new(move |st, ev| {
                st.accounts.entry(to).or_default();
                ev.push(Event::Transfer {
                    from: signer,
                    to,
                    amount,
                });
            }))
        }
        TxBody::CreateValidator {
            consensus_key,
            stake,
        } => {
            if st.validators.contains_key(&signer) {
                return Err(TxError::ValidatorExists);
            }
            if consensus_key.is_weak() {
                return Err(TxError::WeakKey("consensus key"));
            }
            if st.consensus_keys.contains_key(consensus_key) {
                return Err(TxError::ConsensusKeyInUse);
            }
            positive(*stake)?;
            if *stake < p.min_validator_stake {
                return Err(TxError::StakeBelowMinimum {
                    min: p.min_validator_stake,
                    got: *stake,
                });
            }
            stage.debit(&signer, *stake)?;
            let v = Validator {
                operator: signer,
                consensus_key: *consensus_key,
                stake: *stake,
                status: ValidatorStatus::Active,
                jail_count: 0,
            };
            Ok(Box::new(move |st, ev| {
                ev.push(Event::ValidatorCreated {
                    operator: signer,
                    consensus_key: v.consensus_key,
                    stake: v.stake,
                });
                st.consensus_keys.insert(v.consensus_key, signer);
                st.validators.insert(signer, v);
            }))
        }
        TxBody::Bond { amount } => {
            positive(*amount)?;
            let v = st
                .validators
                .get(&signer)
                .ok_or(TxError::UnknownValidator)?;
            if v.status == ValidatorStatus::Removed {
                return Err(TxError::ValidatorRemoved);
            }
            let new = v.stake.checked_add(*amount).ok_or(TxError::Overflow)?;
            stage.debit(&signer, *amount)?;
            let amount = *amount;
            Ok(Box::new(move |st, ev| {
                if let Some(v) = st.validators.get_mut(&signer) {
                    v.stake = new;
                }
                ev.push(Event::Bonded {
                    owner: signer,
                    role: StakeRole::Validator,
                    amount,
                });
            }))
        }
        TxBody::Unbond { amount } => {
            positive(*amount)?;
            let v = st
                .validators
                .get(&signer)
                .ok_or(TxError::UnknownValidator)?;
            let left = v
                .stake
                .checked_sub(*amount)
                .ok_or(TxError::InsufficientStake {
                    bonded: v.stake,
                    requested: *amount,
                })?;
            if left != 0 && left < p.min_validator_stake {
                return Err(TxError::StakeBelowMinimum {
                    min: p.min_validator_stake,
                    got: left,
                });
            }
            let entry = plan_unbonding(st, signer, StakeRole::Validator, *amount)?;
            Ok(Box::new(move |st, ev| {
                if let Some(v) = st.validators.get_mut(&signer) {
                    v.stake = left;
                }
                entry.commit(st, ev);
            }))
        }
        TxBody::Unjail => {
            let v = st
                .validators
                .get(&signer)
                .ok_or(TxError::UnknownValidator)?;
            match v.status {
                ValidatorStatus::Removed => return Err(TxError::ValidatorRemoved),
                ValidatorStatus::Active => return Err(TxError::NotJailed),
                ValidatorStatus::Jailed { until_epoch } if st.epoch < until_epoch => {
                    return Err(TxError::StillJailed { until_epoch })
                }
                ValidatorStatus::Jailed { .. } => {}
            }
            if v.stake < p.min_validator_stake || v.stake == 0 {
                return Err(TxError::StakeBelowMinimum {
                    min: p.min_validator_stake,
                    got: v.stake,
                });
            }
            Ok(Box::new(move |st, ev| {
                if let Some(v) = st.validators.get_mut(&signer) {
                    v.status = ValidatorStatus::Active;
                }
                ev.push(Event::Unjailed { operator: signer });
            }))
        }
        TxBody::RegisterProvider { stake, data_root } => {
            if st.providers.contains_key(&signer) {
                return Err(TxError::ProviderExists);
            }
            positive(*stake)?;
            if *stake < p.min_provider_stake {
                return Err(TxError::StakeBelowMinimum {
                    min: p.min_provider_stake,
                    got: *stake,
                });
            }
            stage.debit(&signer, *stake)?;
            let rec = Provider {
                address: signer,
                stake: *stake,
                data_root: *data_root,
                registered_at: ctx.height,
            };
            Ok(Box::new(move |st, ev| {
                ev.push(Event::ProviderRegistered {
                    address: signer,
                    stake: rec.stake,
                });
                st.providers.insert(signer, rec);
            }))
        }
        TxBody::ProviderBond { amount } => {
            positive(*amount)?;
            let pr = st.providers.get(&signer).ok_or(TxError::UnknownProvider)?;
            let new = pr.stake.checked_add(*amount).ok_or(TxError::Overflow)?;
            stage.debit(&signer, *amount)?;
            let amount = *amount;
            Ok(Box::new(move |st, ev| {
                if let Some(pr) = st.providers.get_mut(&signer) {
                    pr.stake = new;
                }
                ev.push(Event::Bonded {
                    owner: signer,
                    role: StakeRole::Provider,
                    amount,
                });
            }))
        }
        TxBody::ProviderUnbond { amount } => {
            positive(*amount)?;
            let pr = st.providers.get(&signer).ok_or(TxError::UnknownProvider)?;
            let left = pr
                .stake
                .checked_sub(*amount)
                .ok_or(TxError::InsufficientStake {
                    bonded: pr.stake,
                    requested: *amount,
                })?;
            let has_active = st
                .devices
                .values()
                .any(|d| d.owner == Some(signer) && d.status == DeviceStatus::Active);
            if left < p.min_provider_stake && has_active {
                return Err(TxError::ProviderHasDevices);
            }
            let entry = plan_unbonding(st, signer, StakeRole::Provider, *amount)?;
            Ok(Box::new(move |st, ev| {
                if let Some(pr) = st.providers.get_mut(&signer) {
                    pr.stake = left;
                }
                entry.commit(st, ev);
            }))
        }
        TxBody::RegisterDevice {
            device,
            kind,
            capacity,
            region,
            possession,
        } => {
            if *capacity == 0 {
                return Err(TxError::ZeroCapacity);
            }
            check_region(region)?;
            if device.is_weak() {
                return Err(TxError::WeakKey("device"));
            }
            if st.device_keys.contains_key(device) {
                return Err(TxError::DeviceKeyUsed);
            }
            let pr = st.providers.get(&signer).ok_or(TxError::UnknownProvider)?;
            if pr.stake < p.min_provider_stake {
                return Err(TxError::StakeBelowMinimum {
                    min: p.min_provider_stake,
                    got: pr.stake,
                });
            }
            let msg = possession_sign_bytes(&st.chain_id, &signer, device);
            crate::evidence::verify_sig(&Address(device.0), possession, &msg)
                .map_err(|_| TxError::BadPossession)?;
            let rec = Device {
                id: *device,
                owner: Some(signer),
                kind: *kind,
                capacity: *capacity,
                region: region.clone(),
                status: DeviceStatus::Active,
                registered_at: ctx.height,
                previous_keys: Vec::new(),
            };
            Ok(Box::new(move |st, ev| {
                ev.push(Event::DeviceRegistered {
                    device: rec.id,
                    owner: signer,
                });
                st.device_keys.insert(rec.id, rec.id);
                st.devices.insert(rec.id, rec);
            }))
        }
        TxBody::RotateDeviceKey {
            old,
            new,
            possession,
        } => {
            let d = owned_active_device(st, &signer, old)?;
            if new.is_weak() {
                return Err(TxError::WeakKey("device"));
            }
            if st.device_keys.contains_key(new) {
                return Err(TxError::DeviceKeyUsed);
            }
            let msg = possession_sign_bytes(&st.chain_id, &signer, new);
            crate::evidence::verify_sig(&Address(new.0), possession, &msg)
                .map_err(|_| TxError::BadPossession)?;
            let mut rec = d.clone();
            rec.previous_keys.push(*old);
            rec.id = *new;
            let (old, new) = (*old, *new);
            Ok(Box::new(move |st, ev| {
                st.devices.remove(&old);
                for k in &rec.previous_keys {
                    st.device_keys.insert(*k, new);
                }
                st.device_keys.insert(new, new);
                st.devices.insert(new, rec);
                ev.push(Event::DeviceKeyRotated { old, new });
            }))
        }
        TxBody::RetireDevice { device } => {
            owned_active_device(st, &signer, device)?;
            let device = *device;
            Ok(Box::new(move |st, ev| {
                if let Some(d) = st.devices.get_mut(&device) {
                    d.status = DeviceStatus::Retired;
                }
                ev.push(Event::DeviceRetired { device });
            }))
        }
        TxBody::SubmitAudit {
            epoch,
            subject,
            kind,
            result,
            proof_digest,
            work_units,
        } => {
            active_validator(st, &signer)?;
            if !(*epoch == st.epoch || epoch.checked_add(1) == Some(st.epoch)) {
                return Err(TxError::AuditEpoch {
                    current: st.epoch,
                    got: *epoch,
                });
            }
            let owner = match subject {
                AuditSubject::Device(id) => {
                    let d = st.devices.get(id).ok_or(TxError::UnknownDevice)?;
                    if !kind.fits_device(d.kind) {
                        return Err(TxError::AuditSubjectMismatch);
                    }
                    d.owner
                }
                AuditSubject::Provider(a) => {
                    if !st.providers.contains_key(a) {
                        return Err(TxError::UnknownProvider);
                    }
                    if *kind != AuditKind::StorageRetrievability {
                        return Err(TxError::AuditSubjectMismatch);
                    }
                    Some(*a)
                }
            };
            if st.audit(*epoch, subject, *kind).is_some() {
                return Err(TxError::DuplicateAudit);
            }
            let record = AuditRecord {
                epoch: *epoch,
                validator: signer,
                subject: *subject,
                kind: *kind,
                result: *result,
                proof_digest: *proof_digest,
                work_units: *work_units,
                height: ctx.height,
                recorded_in_epoch: st.epoch,
            };
            let slash_reason = match (result, kind) {
                (AuditResult::Fail, AuditKind::StorageRetrievability) => Some((
                    SlashReason::FailedRetrievability,
                    p.slash_failed_retrievability_bp,
                )),
                (AuditResult::Fail, AuditKind::GpuCapacity) => {
                    Some((SlashReason::FailedGpuChallenge, p.slash_failed_gpu_bp))
                }
                _ => None,
            };
            let slash = match (slash_reason, owner) {
                (Some((reason, bp)), Some(owner)) => Some(plan_slash(
                    stage,
                    Offender::Provider(owner),
                    reason,
                    bp,
                    signer,
                    SlashEvidence::FailedAudit(record),
                    ctx,
                )?),
                _ => None,
            };
            Ok(Box::new(move |st, ev| {
                ev.push(Event::AuditRecorded {
                    epoch: record.epoch,
                    subject: record.subject,
                    kind: record.kind,
                    result: record.result,
                });
                st.audits
                    .entry(record.epoch)
                    .or_default()
                    .insert((record.subject, record.kind), record);
                if let Some(s) = slash {
                    s.commit(st, ev);
                }
            }))
        }
        TxBody::SubmitEvidence(evidence) => check_evidence(stage, signer, evidence, ctx),
        TxBody::Delegate { validator, amount } => {
            positive(*amount)?;
            let v = st
                .validators
                .get(validator)
                .ok_or(TxError::UnknownValidator)?;
            if v.status == ValidatorStatus::Removed {
                return Err(TxError::ValidatorRemoved);
            }
            let key = (*validator, signer);
            let new = st
                .delegations
                .get(&key)
                .copied()
                .unwrap_or(0)
                .checked_add(*amount)
                .ok_or(TxError::Overflow)?;
            stage.debit(&signer, *amount)?;
            let amount = *amount;
            Ok(Box::new(move |st, ev| {
                st.delegations.insert(key, new);
                ev.push(Event::Bonded {
                    owner: signer,
                    role: StakeRole::Delegation { validator: key.0 },
                    amount,
                });
            }))
        }
        TxBody::Undelegate { validator, amount } => {
            positive(*amount)?;
            let key = (*validator, signer);
            let bonded = st.delegations.get(&key).copied().unwrap_or(0);
            let left = bonded
                .checked_sub(*amount)
                .ok_or(TxError::InsufficientStake {
                    bonded,
                    requested: *amount,
                })?;
            let entry = plan_unbonding(
                st,
                signer,
                StakeRole::Delegation {
                    validator: *validator,
                },
                *amount,
            )?;
            Ok(Box::new(move |st, ev| {
                if left == 0 {
                    st.delegations.remove(&key);
                } else {
                    st.delegations.insert(key, left);
                }
                entry.commit(st, ev);
            }))
        }
    }
}

fn owned_active_device<'s>(
    st: &'s State,
    signer: &Address,
    id: &DeviceId,
) -> core::result::Result<&'s Device, TxError> {
    let d = st.devices.get(id).ok_or(TxError::UnknownDevice)?;
    if d.owner.as_ref() != Some(signer) {
        return Err(TxError::NotDeviceOwner);
    }
    if d.status == DeviceStatus::Retired {
        return Err(TxError::DeviceRetired);
    }
    Ok(d)
}

fn active_validator<'s>(
    st: &'s State,
    signer: &Address,
) -> core::result::Result<&'s Validator, TxError> {
    let v = st
        .validators
        .get(signer)
        .ok_or(TxError::NotActiveValidator)?;
    if !st.active_set.contains_key(&v.consensus_key) {
        return Err(TxError::NotActiveValidator);
    }
    Ok(v)
}

fn check_evidence(
    stage: &mut Stage<'_>,
    signer: Address,
    evidence: &Evidence,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    let stored = SlashEvidence::Submitted(evidence.clone());
    match evidence {
        Evidence::DeviceEquivocation { a, b } => {
            check_device_equivocation(a, b)?;
            let (dev, seq) = (a.reading.device, a.reading.seq);
            let d = st.device_by_any_key(&dev).ok_or(TxError::UnknownOffender)?;
            let owner = d.owner.ok_or(TxError::UnknownOffender)?;
            let dup = st.slashes.iter().any(|s| match &s.evidence {
                SlashEvidence::Submitted(Evidence::DeviceEquivocation { a, .. }) => {
                    a.reading.device == dev && a.reading.seq == seq
                }
                _ => false,
            });
            if dup {
                return Err(TxError::DuplicateEvidence);
            }
            let plan = plan_slash(
                stage,
                Offender::Provider(owner),
                SlashReason::DeviceEquivocation,
                p.slash_device_equivocation_bp,
                signer,
                stored,
                ctx,
            )?;
            Ok(Box::new(move |st, ev| plan.commit(st, ev)))
        }
        Evidence::DoubleSign(ds) => {
            ds.verify()?;
            let operator = *st
                .consensus_keys
                .get(&ds.validator_key)
                .ok_or(TxError::UnknownOffender)?;
            let height = ds.vote_a.height;
            let dup = st.slashes.iter().any(|s| match &s.evidence {
                SlashEvidence::Submitted(Evidence::DoubleSign(o)) => {
                    o.validator_key == ds.validator_key && o.vote_a.height == height
                }
                _ => false,
            });
            if dup {
                return Err(TxError::DuplicateEvidence);
            }
            let plan = plan_slash(
                stage,
                Offender::Validator(operator),
                SlashReason::DoubleSign,
                p.slash_double_sign_bp,
                signer,
                stored,
                ctx,
            )?;
            Ok(Box::new(move |st, ev| plan.commit(st, ev)))
        }
        Evidence::InvalidProof(c) => {
            active_validator(st, &signer)?;
            if c.reason.is_empty()
                || c.reason.len() > MAX_REASON_LEN
                || c.reason.chars().any(char::is_control)
            {
                return Err(TxError::InvalidText("reason"));
            }
            if c.accused == signer {
                return Err(TxError::InvalidEvidence("a validator cannot accuse itself"));
            }
            if !st.validators.contains_key(&c.accused) {
                return Err(TxError::UnknownOffender);
            }
            let matches = st
                .audit(c.epoch, &c.subject, c.kind)
                .is_some_and(|a| a.validator == c.accused && a.proof_digest == c.proof_digest);
            if !matches {
                return Err(TxError::InvalidEvidence(
                    "no audit by the accused with this proof digest",
                ));
            }
            let dup = st.slashes.iter().any(|s| match &s.evidence {
                SlashEvidence::Submitted(Evidence::InvalidProof(o)) => {
                    o.epoch == c.epoch && o.subject == c.subject && o.kind == c.kind
                }
                _ => false,
            });
            if dup {
                return Err(TxError::DuplicateEvidence);
            }
            let plan = plan_slash(
                stage,
                Offender::Validator(c.accused),
                SlashReason::InvalidProof,
                p.slash_invalid_proof_bp,
                signer,
                stored,
                ctx,
            )?;
            Ok(Box::new(move |st, ev| plan.commit(st, ev)))
        }
    }
}

/// A new unbonding entry, computed in the check phase.
struct UnbondingPlan {
    id: u64,
    next_id: u64,
    entry: UnbondingEntry,
}

impl UnbondingPlan {
    fn commit(self, st: &mut State, ev: &mut Vec<Event>) {
        ev.push(Event::Unbonding {
            owner: self.entry.owner,
            role: self.entry.role,
            amount: self.entry.amount,
            id: self.id,
            matures_at_epoch: self.entry.matures_at_epoch,
        });
        st.unbonding.insert(self.id, self.entry);
        st.next_unbonding_id = self.next_id;
    }
}

fn plan_unbonding(
    st: &State,
    owner: Address,
    role: StakeRole,
    amount: Amount,
) -> core::result::Result<UnbondingPlan, TxError> {
    let id = st.next_unbonding_id;
    Ok(UnbondingPlan {
        id,
        next_id: id.checked_add(1).ok_or(TxError::Overflow)?,
        entry: UnbondingEntry {
            owner,
            role,
            amount,
            matures_at_epoch: st
                .epoch
                .checked_add(st.params.unbonding_epochs)
                .ok_or(TxError::Overflow)?,
        },
    })
}

/// A slash, computed in the check phase.
struct SlashPlan {
    record: SlashRecord,
    new_bonded: Amount,
    delegation_cuts: Vec<((Address, Address), Amount)>,
    unbonding_cuts: Vec<(u64, Amount)>,
    new_status: Option<ValidatorStatus>,
    new_jail_count: u32,
    removal_entry: Option<UnbondingPlan>,
}

/// `base * bp / 10 000`, rounded down, without overflow.
fn fraction(base: Amount, bp: u16) -> Amount {
    let v = u128::from(base) * u128::from(bp.min(BP_ONE)) / u128::from(BP_ONE);
    Amount::try_from(v).unwrap_or(base)
}

/// Plans a slash of `bp` of each piece of the offender's stake at risk: its bonded stake,
/// for a validator the stake delegated to it, and the unbonding entries of either (each
/// piece rounded down). A validator is jailed, or removed when this is its `jail_threshold`-th
/// jailing or its stake falls below `min_validator_stake`; a removed validator's remaining
/// stake starts unbonding.
fn plan_slash(
    stage: &mut Stage<'_>,
    offender: Offender,
    reason: SlashReason,
    bp: u16,
    reporter: Address,
    evidence: SlashEvidence,
    ctx: &BlockContext,
) -> core::result::Result<SlashPlan, TxError> {
    let st = stage.state;
    let p = &st.params;
    let bonded = match offender {
        Offender::Validator(a) => st.validators.get(&a).map(|v| v.stake).unwrap_or(0),
        Offender::Provider(a) => st.providers.get(&a).map(|p| p.stake).unwrap_or(0),
    };
    let cut = |x: Amount| fraction(x, bp);
    let new_bonded = bonded - cut(bonded);
    let mut amount = cut(bonded);
    let mut delegation_cuts = Vec::new();
    if let Offender::Validator(op) = offender {
        for (d, a) in st.delegations_to(&op) {
            let c = cut(a);
            if c > 0 {
                amount = amount.checked_add(c).ok_or(TxError::Overflow)?;
                delegation_cuts.push(((op, d), a - c));
            }
        }
    }
    let mut unbonding_cuts = Vec::new();
    for (id, u) in &st.unbonding {
        let at_risk = match (offender, u.role) {
            (Offender::Validator(op), StakeRole::Validator) => u.owner == op,
            (Offender::Validator(op), StakeRole::Delegation { validator }) => validator == op,
            (Offender::Provider(pr), StakeRole::Provider) => u.owner == pr,
            _ => false,
        };
        let c = cut(u.amount);
        if at_risk && c > 0 {
            amount = amount.checked_add(c).ok_or(TxError::Overflow)?;
            unbonding_cuts.push((*id, u.amount - c));
        }
    }
    stage.burn(amount)?;

    let mut new_status = None;
    let mut new_jail_count = 0;
    let mut removal_entry = None;
    let (mut jailed, mut removed) = (false, false);
    if let Offender::Validator(a) = offender {
        if let Some(v) = st.validators.get(&a) {
            new_jail_count = v.jail_count;
            if v.status != ValidatorStatus::Removed {
                new_jail_count = v.jail_count.saturating_add(1);
                if new_jail_count >= p.jail_threshold
                    || new_bonded < p.min_validator_stake
                    || new_bonded == 0
                {
                    removed = true;
                    new_status = Some(ValidatorStatus::Removed);
                    if new_bonded > 0 {
                        removal_entry =
                            Some(plan_unbonding(st, a, StakeRole::Validator, new_bonded)?);
                    }
                } else {
                    jailed = true;
                    new_status = Some(ValidatorStatus::Jailed {
                        until_epoch: st
                            .epoch
                            .checked_add(p.jail_epochs)
                            .ok_or(TxError::Overflow)?,
                    });
                }
            }
        }
    }
    let id = u64::try_from(st.slashes.len()).map_err(|_| TxError::Overflow)?;
    Ok(SlashPlan {
        record: SlashRecord {
            id,
            height: ctx.height,
            epoch: st.epoch,
            offender,
            reason,
            amount,
            reporter,
            evidence,
            jailed,
            removed,
        },
        new_bonded: if removed { 0 } else { new_bonded },
        delegation_cuts,
        unbonding_cuts,
        new_status,
        new_jail_count,
        removal_entry,
    })
}

impl SlashPlan {
    fn commit(self, st: &mut State, ev: &mut Vec<Event>) {
        let r = &self.record;
        match r.offender {
            Offender::Validator(a) => {
                if let Some(v) = st.validators.get_mut(&a) {
                    v.stake = self.new_bonded;
                    v.jail_count = self.new_jail_count;
                    if let Some(s) = self.new_status {
                        v.status = s;
                        if st.active_set.remove(&v.consensus_key).is_some() {
                            ev.push(Event::ValidatorSetChanged);
                        }
                    }
                }
            }
            Offender::Provider(a) => {
                if let Some(p) = st.providers.get_mut(&a) {
                    p.stake = self.new_bonded;
                }
            }
        }
        for (key, left) in &self.delegation_cuts {
            if *left == 0 {
                st.delegations.remove(key);
            } else {
                st.delegations.insert(*key, *left);
            }
        }
        for (id, left) in &self.unbonding_cuts {
            if *left == 0 {
                st.unbonding.remove(id);
            } else if let Some(u) = st.unbonding.get_mut(id) {
                u.amount = *left;
            }
        }
        ev.push(Event::Slashed {
            id: r.id,
            offender: r.offender,
            reason: r.reason,
            amount: r.amount,
        });
        if let (Offender::Validator(operator), Some(s)) = (r.offender, self.new_status) {
            match s {
                ValidatorStatus::Jailed { until_epoch } => ev.push(Event::Jailed {
                    operator,
                    until_epoch,
                }),
                ValidatorStatus::Removed => ev.push(Event::ValidatorRemoved { operator }),
                ValidatorStatus::Active => {}
            }
        }
        if let Some(e) = self.removal_entry {
            e.commit(st, ev);
        }
        st.slashes.push(self.record);
    }
}

/// Applies a decided block: its transactions in order (rejected ones change nothing and are
/// reported in [`BlockOutcome::results`]), then, at the last block of an epoch, the epoch
/// boundary ([`end_epoch`]). Fails only when the height does not follow the state's.
pub fn apply_block(state: &mut State, block: &Block) -> Result<BlockOutcome> {
    apply_block_inner(
        state,
        block.height,
        block.proposer,
        block.txs.iter().map(|t| Ok(std::borrow::Cow::Borrowed(t))),
    )
}

/// Like [`apply_block`], for a block whose transactions are still canonical bytes (as the
/// consensus engine decides them): a transaction that does not decode is rejected with
/// [`TxError::Malformed`] in its slot, like any other invalid transaction.
pub fn apply_raw_block<T: AsRef<[u8]>>(
    state: &mut State,
    height: Height,
    proposer: Option<ConsensusKey>,
    txs: &[T],
) -> Result<BlockOutcome> {
    apply_block_inner(
        state,
        height,
        proposer,
        txs.iter()
            .map(|b| SignedTx::decode(b.as_ref()).map(std::borrow::Cow::Owned)),
    )
}

fn apply_block_inner<'a, I>(
    state: &mut State,
    height: Height,
    proposer: Option<ConsensusKey>,
    txs: I,
) -> Result<BlockOutcome>
where
    I: Iterator<Item = core::result::Result<std::borrow::Cow<'a, SignedTx>, TxError>>,
{
    let next = state.height.checked_add(1);
    if next != Some(height) {
        return Err(LedgerError::BlockHeight {
            expected_previous: state.height,
            got: height,
        });
    }
    let before = state.validator_set();
    let ctx = BlockContext { height, proposer };
    let results = txs
        .map(|tx| tx.and_then(|tx| apply_tx(state, &tx, &ctx)))
        .collect();
    state.height = height;
    let mut end_block_events = Vec::new();
    let mut epoch_ended = None;
    if height.is_multiple_of(state.params.epoch_length) {
        epoch_ended = Some(state.epoch);
        end_block_events = end_epoch(state);
    }
    let validator_set_changed = state.validator_set() != before;
    Ok(BlockOutcome {
        height,
        results,
        end_block_events,
        epoch_ended,
        validator_set_changed,
        state_root: state.state_root(),
    })
}

/// The epoch boundary, run after the last block of an epoch: pays the epoch's audit
/// rewards, releases matured unbonding entries, moves to the next epoch and recomputes the
/// validator set from bonded stake. Cannot fail.
///
/// Rewards: `R = params.reward_for_epoch(epoch)`; `auditor_share_bp` of it is split among
/// the validators that recorded audits during the epoch, pro rata to their number of audits;
/// the rest among the owners of subjects that passed, pro rata to `work_units`. Shares are
/// rounded down and only what is paid is minted, so `minted` is exact.
pub fn end_epoch(state: &mut State) -> Vec<Event> {
    let mut events = Vec::new();
    let epoch = state.epoch;

    // 1. Rewards for audits recorded during this epoch (they audit this or the previous one).
    let mut auditors: BTreeMap<Address, u128> = BTreeMap::new();
    let mut workers: BTreeMap<Address, u128> = BTreeMap::new();
    let window = [epoch.checked_sub(1), Some(epoch)];
    for e in window.into_iter().flatten() {
        for a in state.audits.get(&e).into_iter().flat_map(BTreeMap::values) {
            if a.recorded_in_epoch != epoch {
                continue;
            }
            *auditors.entry(a.validator).or_default() += 1;
            if a.result == AuditResult::Pass && a.work_units > 0 {
                let owner = match a.subject {
                    AuditSubject::Device(id) => state.device_by_any_key(&id).and_then(|d| d.owner),
                    AuditSubject::Provider(p) => Some(p),
                };
                if let Some(o) = owner {
                    *workers.entry(o).or_default() += u128::from(a.work_units);
                }
            }
        }
    }
    let reward = state.params.reward_for_epoch(epoch);
    let auditor_pool = fraction(reward, state.params.auditor_share_bp);
    let work_pool = reward - auditor_pool;
    let mut payouts: BTreeMap<Address, Amount> = BTreeMap::new();
    for (pool, weights) in [(auditor_pool, &auditors), (work_pool, &workers)] {
        let total: u128 = weights.values().sum();
        if total == 0 {
            continue;
        }
        for (addr, w) in weights {
            let share = u128::from(pool) * w / total;
            let share = Amount::try_from(share).unwrap_or(0);
            if share > 0 {
                let e = payouts.entry(*addr).or_default();
                *e = e.saturating_add(share);
            }
        }
    }
    let minted: Amount = payouts
        .values()
        .try_fold(0u64, |acc, v| acc.checked_add(*v))
        .unwrap_or(Amount::MAX);
    let fits = state
        .supply
        .minted
        .checked_add(minted)
        .and_then(|m| state.supply.genesis.checked_add(m))
        .is_some();
    let mut paid = 0;
    if fits {
        for (addr, amount) in payouts {
            // Each balance is at most the total supply, which fits, so this cannot saturate.
            let acct = state.accounts.entry(addr).or_default();
            acct.balance = acct.balance.saturating_add(amount);
            state.rewards.insert((epoch, addr), amount);
            events.push(Event::RewardPaid {
                epoch,
                to: addr,
                amount,
            });
        }
        state.supply.minted = state.supply.minted.saturating_add(minted);
        paid = minted;
    }

    // 2. Matured unbonding entries.
    let matured: Vec<u64> = state
        .unbonding
        .iter()
        .filter(|(_, u)| u.matures_at_epoch <= epoch)
        .map(|(id, _)| *id)
        .collect();
    for id in matured {
        if let Some(u) = state.unbonding.remove(&id) {
            let acct = state.accounts.entry(u.owner).or_default();
            acct.balance = acct.balance.saturating_add(u.amount);
            events.push(Event::UnbondingReleased {
                id,
                owner: u.owner,
                amount: u.amount,
            });
        }
    }

    // 3. Next epoch, new validator set.
    state.epoch = epoch.saturating_add(1);
    let set = state.compute_validator_set();
    if set != state.active_set {
        state.active_set = set;
        events.push(Event::ValidatorSetChanged);
    }
    events.push(Event::EpochEnded {
        epoch,
        minted: paid,
    });
    events
}

#[cfg(test)]
#[path = "apply_tests.rs"]
mod tests;
