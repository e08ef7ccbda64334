//! Validators and delegations: create, bond, unbond, unjail, delegate, undelegate; unbonding entries.

use crate::error::TxError;
use crate::tx::TxBody;
use crate::types::*;

use super::*;

/// Checks a staking transaction; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    _ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    match body {
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
                l1_address: None,
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
        TxBody::SetL1Key { address, signature } => {
            let v = st
                .validators
                .get(&signer)
                .ok_or(TxError::UnknownValidator)?;
            if v.status == ValidatorStatus::Removed {
                return Err(TxError::ValidatorRemoved);
            }
            if !crate::l1key::verify_l1_possession(&st.chain_id, &signer, address, signature) {
                return Err(TxError::BadL1Possession);
            }
            if st
                .validators
                .values()
                .any(|o| o.operator != signer && o.l1_address == Some(*address))
            {
                return Err(TxError::L1KeyInUse);
            }
            let address = *address;
            Ok(Box::new(move |st, ev| {
                if let Some(v) = st.validators.get_mut(&signer) {
                    v.l1_address = Some(address);
                }
                ev.push(Event::L1KeySet {
                    operator: signer,
                    address,
                });
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
        _ => Err(TxError::Malformed("not a staking transaction")),
    }
}

pub(super) fn active_validator<'s>(
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

/// A new unbonding entry, computed in the check phase.
pub(super) struct UnbondingPlan {
    id: u64,
    next_id: u64,
    entry: UnbondingEntry,
}

impl UnbondingPlan {
    pub(super) fn commit(self, st: &mut State, ev: &mut Vec<Event>) {
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

pub(super) fn plan_unbonding(
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
