//! Evidence of misbehaviour and slashing.

use crate::error::TxError;
use crate::evidence::{check_device_equivocation, Evidence, SlashEvidence};
use crate::genesis::BP_ONE;
use crate::types::*;

use super::staking::{plan_unbonding, UnbondingPlan};
use super::*;

pub(super) fn check_evidence(
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
            if !d.key_valid_for_seq(&dev, seq) {
                return Err(TxError::RotatedKey { seq });
            }
            let owner = d.owner.ok_or(TxError::UnknownOffender)?;
            // One slash per incident: the first one suspends the device, so any further
            // evidence against it (same or other sequence numbers) is a duplicate.
            if d.status == DeviceStatus::Suspended {
                return Err(TxError::DuplicateEvidence);
            }
            let device = d.id;
            let plan = plan_slash(
                stage,
                Offender::Provider(owner),
                SlashReason::DeviceEquivocation,
                p.slash_device_equivocation_bp,
                signer,
                stored,
                ctx,
            )?;
            Ok(Box::new(move |st, ev| {
                plan.commit(st, ev);
                if let Some(d) = st.devices.get_mut(&device) {
                    d.status = DeviceStatus::Suspended;
                }
                ev.push(Event::DeviceSuspended { device });
            }))
        }
        Evidence::DoubleSign(ds) => {
            ds.verify()?;
            check_age(st, epoch_of(st, ds.vote_a.height))?;
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
    }
}

/// The epoch of block `height`: with block-counted epochs block `h ≥ 1` is in epoch
/// `(h − 1) / epoch_length`; with timed epochs it is the first sealed epoch that closed at or
/// after `h`, or the current one.
fn epoch_of(st: &State, height: Height) -> Epoch {
    if st.params.timed_epochs() {
        return st
            .seals
            .iter()
            .find(|(_, s)| s.closed_at_height >= height)
            .map_or(st.epoch, |(e, _)| *e);
    }
    height.saturating_sub(1) / st.params.epoch_length.max(1)
}

/// Refuses evidence of misbehaviour in `epoch` once it is older than
/// `evidence_max_age_epochs` (the unbonding period is at least that long, so the stake at
/// fault has not left yet).
fn check_age(st: &State, epoch: Epoch) -> core::result::Result<(), TxError> {
    let max_age = st.params.evidence_max_age_epochs;
    if st.epoch > epoch.saturating_add(max_age) {
        return Err(TxError::EvidenceTooOld {
            evidence_epoch: epoch,
            current: st.epoch,
            max_age,
        });
    }
    Ok(())
}

/// A slash, computed in the check phase.
pub(super) struct SlashPlan {
    record: SlashRecord,
    new_bonded: Amount,
    delegation_cuts: Vec<((Address, Address), Amount)>,
    unbonding_cuts: Vec<(u64, Amount)>,
    new_status: Option<ValidatorStatus>,
    new_jail_count: u32,
    removal_entry: Option<UnbondingPlan>,
}

/// `base * bp / 10 000`, rounded down, without overflow.
pub(super) fn fraction(base: Amount, bp: u16) -> Amount {
    let v = u128::from(base) * u128::from(bp.min(BP_ONE)) / u128::from(BP_ONE);
    Amount::try_from(v).unwrap_or(base)
}

/// Plans a slash of `bp` of each piece of the offender's stake at risk: its bonded stake,
/// for a validator the stake delegated to it, and the unbonding entries of either (each
/// piece rounded down). A validator is jailed, or removed when this is its `jail_threshold`-th
/// jailing or its stake falls below `min_validator_stake`; a removed validator's remaining
/// stake starts unbonding.
pub(super) fn plan_slash(
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
    pub(super) fn commit(self, st: &mut State, ev: &mut Vec<Event>) {
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
