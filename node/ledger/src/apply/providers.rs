//! Providers: register, bond, unbond.

use crate::error::TxError;
use crate::tx::TxBody;
use crate::types::*;

use super::*;

/// Checks a provider transaction; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    match body {
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
            // A storage commitment still challenged (its device may be suspended) keeps the
            // stake bonded too: it may yet be slashed for it.
            let has_active = st
                .devices
                .values()
                .any(|d| d.owner == Some(signer) && d.status == DeviceStatus::Active)
                || st
                    .storage
                    .values()
                    .any(|c| c.owner == signer && !c.slashed && c.closed_from.is_none());
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
        _ => Err(TxError::Malformed("not a provider transaction")),
    }
}
