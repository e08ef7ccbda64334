//! Readings attestations: each committee member attests one commitment per audit batch; ≥ 2/3
//! of an epoch's committee power on one readings root fixes it with its batches; differing
//! attestations flag their signer (no slashing).

use crate::attestation::{check_batches, readings_root, EpochReadings, ReadingsAttestation};
use crate::error::TxError;
use crate::tx::TxBody;
use crate::types::*;

use super::*;

/// Whether `power` is at least 2/3 of `total`: `3·power ≥ 2·total` in u128. Powers are u64
/// summed over a committee of at most `max_validators` (a u32), so sums stay below 2^96 and the
/// products below 2^98; the multiplications saturate anyway. A zero total never reaches it.
pub(crate) fn reaches_two_thirds(power: u128, total: u128) -> bool {
    total > 0 && power.saturating_mul(3) >= total.saturating_mul(2)
}

/// Checks an `AttestReadings` transaction; returns its commit.
///
/// Accepted from the operator of a validator in the current set that was also in the
/// attested epoch's committee (its power there weighs the attestation), once per epoch, for an
/// epoch that has ended and at most `attestation_window_epochs` ago. Before the epoch is fixed,
/// an attestation that brings one `(readings_root, readings)` to ≥ 2/3 of the committee's power
/// fixes it and flags every held attestation that differs; after, a differing attestation is
/// flagged at once.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let TxBody::AttestReadings { epoch, batches } = body else {
        return Err(TxError::Malformed("not an attestation transaction"));
    };
    let epoch = *epoch;
    let readings = check_batches(batches)?;
    let readings_root = readings_root(epoch, batches);
    active_validator(st, &signer)?;
    let window_end = epoch.saturating_add(st.params.attestation_window_epochs);
    if epoch >= st.epoch || st.epoch > window_end {
        return Err(TxError::AttestationEpoch {
            current: st.epoch,
            got: epoch,
        });
    }
    let seal = st.seals.get(&epoch).ok_or(TxError::AttestationEpoch {
        current: st.epoch,
        got: epoch,
    })?;
    let power = seal.power_of(&signer);
    if power == 0 {
        return Err(TxError::NotInCommittee);
    }
    if st.attestations.contains_key(&(epoch, signer)) || st.flagged.contains_key(&(epoch, signer)) {
        return Err(TxError::DuplicateAttestation);
    }
    let record = ReadingsAttestation {
        epoch,
        validator: signer,
        readings_root,
        readings,
        height: ctx.height,
    };
    let key = (readings_root, readings);
    let mut fixed = None;
    let mut flag = Vec::new();
    match st.fixed_readings.get(&epoch) {
        Some(f) => {
            if (f.root, f.readings) != key {
                flag.push(record);
            }
        }
        None => {
            let tally = st
                .attestation_tally(epoch)
                .get(&key)
                .copied()
                .unwrap_or(0)
                .checked_add(u128::from(power))
                .ok_or(TxError::Overflow)?;
            if reaches_two_thirds(tally, seal.total_power()) {
                fixed = Some(EpochReadings {
                    epoch,
                    root: readings_root,
                    readings,
                    fixed_at_height: ctx.height,
                    batches: batches.iter().map(|b| (*b, None)).collect(),
                });
                flag.extend(
                    st.attestations(epoch)
                        .into_iter()
                        .filter(|a| (a.readings_root, a.readings) != key)
                        .copied(),
                );
            }
        }
    }
    Ok(Box::new(move |st, ev| {
        st.attestations.insert((epoch, signer), record);
        ev.push(Event::ReadingsAttested {
            epoch,
            validator: signer,
            readings_root,
            readings,
        });
        let mut commit_now = false;
        if let Some(f) = fixed {
            ev.push(Event::ReadingsFixed {
                epoch,
                root: f.root,
                readings: f.readings,
            });
            // An epoch without readings has nothing to audit: its commitment is final now.
            commit_now = f.fully_audited();
            st.fixed_readings.insert(epoch, f);
        }
        for a in flag {
            st.flagged.insert((epoch, a.validator), a);
            ev.push(Event::AttestationFlagged {
                epoch,
                validator: a.validator,
            });
        }
        if commit_now {
            super::audits::record_commitment(st, epoch, record.height, ev);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::reaches_two_thirds;

    #[test]
    fn two_thirds_threshold_is_inclusive_and_exact() {
        assert!(reaches_two_thirds(2, 3));
        assert!(!reaches_two_thirds(1, 3));
        assert!(reaches_two_thirds(3, 4));
        assert!(!reaches_two_thirds(2, 4));
        assert!(!reaches_two_thirds(0, 0));
        // 2/3 of 3·10^30, exactly and one short.
        let total = 3 * 10u128.pow(30);
        assert!(reaches_two_thirds(2 * 10u128.pow(30), total));
        assert!(!reaches_two_thirds(2 * 10u128.pow(30) - 1, total));
    }
}
