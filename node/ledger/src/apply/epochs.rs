//! The epoch boundary: the epoch's seal (sampling beacon, committee), rewards, matured
//! unbonding, the next validator set, closed attestation windows, and (timed epochs) the
//! commitment of the epoch whose audit window just closed.

use std::collections::BTreeMap;

use crate::attestation::EpochSeal;
use crate::sampling::epoch_beacon;
use crate::types::*;

use super::evidence::fraction;
use super::*;

/// The epoch boundary, run after the last block of an epoch: seals the epoch (its sampling
/// beacon and its committee, see [`seal_epoch`]), pays the epoch's audit rewards, releases
/// matured unbonding entries, moves to the next epoch, recomputes the validator set from
/// bonded stake, drops the attestations of epochs whose attestation window closed (fixed
/// roots and flags stay), and drops the audit records and reward entries of epochs that left
/// the `history_epochs` window ([`State::history_floor`]). Cannot fail.
///
/// Rewards: `R = params.reward_for_epoch(epoch)`; `auditor_share_bp` of it is split among
/// the validators that recorded audits during the epoch, pro rata to their number of audits;
/// the rest among the owners of subjects that passed, pro rata to `work_units`, and of
/// providers whose audits settled as passed with this epoch (see [`provider_work`]). Shares
/// are rounded down and only what is paid is minted, so `minted` is exact.
pub fn end_epoch(state: &mut State) -> Vec<Event> {
    let mut events = Vec::new();
    let epoch = state.epoch;

    // 0. The seal: beacon and committee, from the state after the closing block's txs.
    let seal = seal_epoch(state);
    events.push(Event::EpochSealed {
        epoch,
        beacon: seal.beacon,
    });
    state.seals.insert(epoch, seal);

    // 0b. Storage challenges whose deadline ends with this epoch: a missing outcome is a fault
    // (before unbonding releases, so the stake at fault is still there).
    super::storage::missed_deadlines(state, &mut events);

    // 1. Rewards for audits recorded during this epoch: they audit an epoch at most
    // `2·audit_deadline_epochs + 1` back (the reassignment window), or this one.
    let mut auditors: BTreeMap<Address, u128> = BTreeMap::new();
    let mut workers: BTreeMap<Address, u128> = BTreeMap::new();
    let reach = state
        .params
        .audit_deadline_epochs
        .saturating_mul(2)
        .saturating_add(1);
    for (_, records) in state.audits.range(epoch.saturating_sub(reach)..=epoch) {
        for a in records.values() {
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
    provider_work(state, epoch, &mut workers);
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
            state.record_reward(epoch, addr, amount);
            events.push(Event::RewardPaid {
                epoch,
                to: addr,
                amount,
            });
        }
        state.supply.minted = state.supply.minted.saturating_add(minted);
        paid = minted;
    }

    // 1b. Timed epochs: the epoch whose reassignment window closes with this one is committed
    // with whatever was verified (its missing batches stay unpaid).
    if state.params.timed_epochs() {
        let window = state.params.audit_deadline_epochs.saturating_mul(2);
        if let Some(due) = epoch.checked_sub(window) {
            let height = state.height;
            super::audits::record_commitment(state, due, height, &mut events);
        }
        state.close_votes.clear();
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
    if set != *state.active_set {
        state.active_set.replace(set);
        events.push(Event::ValidatorSetChanged);
    }
    // 4. Attestation windows that closed: epoch `e` is attested up to epoch `e + window`.
    let window = state.params.attestation_window_epochs;
    let closed: Vec<(Epoch, Address)> = state
        .attestations
        .keys()
        .take_while(|(e, _)| e.saturating_add(window) < state.epoch)
        .copied()
        .collect();
    for k in closed {
        state.attestations.remove(&k);
    }
    // 5. Per-epoch history past `history_epochs`: the audit records and reward entries of
    // epochs ≤ epoch − history_epochs go (the state keeps the last `history_epochs` ended
    // epochs; each account's reward total stays). The farthest back any reader of the ledger
    // looks is `2·audit_deadline_epochs + 1` (step 1 above), which `Params::validate` keeps
    // below `history_epochs`.
    let floor = state.history_floor();
    state.prune_history(floor);
    events.push(Event::EpochEnded {
        epoch,
        minted: paid,
    });
    events
}

/// The seal of the epoch ending now: the committee is the validator set that served during it
/// (operator → voting power), the beacon is [`epoch_beacon`] over the chain id, the epoch, the
/// closing block's height and the state root after that block's transactions, before any write
/// of the boundary itself.
///
/// Grinding: that root is known only once the closing block is decided, but its proposer
/// chooses the block's transactions and can try many variants to pick a beacon it likes (see
/// [`crate::sampling`]). The seal does not prevent that; a threshold or VRF beacon would.
fn seal_epoch(state: &State) -> EpochSeal {
    let root = state.state_root();
    let mut committee: Vec<(Address, u64)> = state
        .active_set
        .iter()
        .filter_map(|(k, p)| state.consensus_keys.get(k).map(|op| (*op, *p)))
        .filter(|(_, p)| *p > 0)
        .collect();
    committee.sort_by_key(|(a, _)| *a);
    committee.dedup_by(|a, b| a.0 == b.0);
    EpochSeal {
        epoch: state.epoch,
        closed_at_height: state.height,
        beacon: epoch_beacon(&state.chain_id, state.epoch, state.height, &root),
        committee,
        state_root: root,
        commitment: None,
    }
}

/// Providers' work settled at the end of `epoch`, added to `workers` (owner → units):
///
/// * **storage**: challenged epoch `x = epoch − max(storage_deadline_epochs,
///   attestation_window_epochs)`, whose proof window and spot-retrieval report window have
///   both closed: a device whose proof for `x` verified (`StorageOutcome::Passed`), with no
///   decided spot-retrieval failure for `x`, still active and not slashed, earns
///   `num_chunks · storage_work_units_per_chunk`;
/// * **GPU**: epoch `y = epoch − attestation_window_epochs`, whose report window has closed: a
///   capacity round the committee decided passed earns `count · gpu_work_units_per_gpu`,
///   scaled by `median measured / claimed` when below spec.
///
/// Each (epoch, device) settles at exactly one boundary, so nothing is paid twice. What a
/// provider earns rests on the ledger's own check (the STARK) or on ≥ 2/3 of a committee.
pub(super) fn provider_work(state: &State, epoch: Epoch, workers: &mut BTreeMap<Address, u128>) {
    use crate::provider_audit::ProviderAuditKind;
    use crate::storage::StorageOutcome;
    let p = &state.params;
    let (lo, hi) = (DeviceId([0; 32]), DeviceId([0xff; 32]));
    let active = |key: &DeviceId| {
        state
            .device_by_any_key(key)
            .is_some_and(|d| d.status == DeviceStatus::Active)
    };
    let settle = p.storage_deadline_epochs.max(p.attestation_window_epochs);
    if let (Some(x), true) = (
        epoch.checked_sub(settle),
        p.storage_work_units_per_chunk > 0,
    ) {
        for ((_, key), audit) in state.storage_audits.range((x, lo)..=(x, hi)) {
            if audit.outcome != StorageOutcome::Passed || !active(key) {
                continue;
            }
            let spot_failed = state
                .provider_audits
                .get(&(x, *key, ProviderAuditKind::Retrieval))
                .and_then(|r| r.decision)
                .is_some_and(|d| !d.passed);
            let Some(rec) = state.storage.get(key).filter(|r| !r.slashed) else {
                continue;
            };
            if spot_failed {
                continue;
            }
            let units = u128::from(rec.num_chunks) * u128::from(p.storage_work_units_per_chunk);
            *workers.entry(rec.owner).or_default() += units;
        }
    }
    if let (Some(y), true) = (
        epoch.checked_sub(p.attestation_window_epochs),
        p.gpu_work_units_per_gpu > 0,
    ) {
        let range = (y, lo, ProviderAuditKind::Retrieval)..=(y, hi, ProviderAuditKind::GpuCapacity);
        for ((_, key, kind), round) in state.provider_audits.range(range) {
            if *kind != ProviderAuditKind::GpuCapacity || !active(key) {
                continue;
            }
            let (Some(d), Some(spec)) = (
                round.decision.filter(|d| d.passed),
                state.gpu_specs.get(key),
            ) else {
                continue;
            };
            let full = u128::from(spec.count) * u128::from(p.gpu_work_units_per_gpu);
            let units = if d.below_spec {
                full * u128::from(d.median_measured_per_s.min(spec.claimed_mac_per_s))
                    / u128::from(spec.claimed_mac_per_s.max(1))
            } else {
                full
            };
            *workers.entry(round.owner).or_default() += units;
        }
    }
}
