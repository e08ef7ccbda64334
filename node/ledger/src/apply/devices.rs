//! The device registry: register, rotate a key, retire.

use crate::error::TxError;
use crate::tx::TxBody;
use crate::types::*;

use super::*;
use crate::tx::possession_sign_bytes;
use groundtruth_device_sdk::DeviceId;

/// Checks a device transaction; returns its commit.
pub(super) fn check(
    stage: &mut Stage<'_>,
    signer: Address,
    body: &TxBody,
    ctx: &BlockContext,
) -> core::result::Result<Commit, TxError> {
    let st = stage.state;
    let p = &st.params;
    match body {
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
                rotated_at_seq: Vec::new(),
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
            from_seq,
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
            rec.rotated_at_seq.push(*from_seq);
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
            let d = owned_active_device(st, &signer, device)?;
            // A storage commitment stops being challenged from this epoch on; earlier epochs'
            // challenges stay due.
            let storage = st.storage_key_of(d);
            let (device, epoch) = (*device, st.epoch);
            Ok(Box::new(move |st, ev| {
                if let Some(d) = st.devices.get_mut(&device) {
                    d.status = DeviceStatus::Retired;
                }
                if let Some(c) = storage.and_then(|k| st.storage.get_mut(&k)) {
                    c.closed_from.get_or_insert(epoch);
                }
                ev.push(Event::DeviceRetired { device });
            }))
        }
        _ => Err(TxError::Malformed("not a device transaction")),
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
    match d.status {
        DeviceStatus::Active => {}
        DeviceStatus::Retired => return Err(TxError::DeviceRetired),
        DeviceStatus::Suspended => return Err(TxError::DeviceSuspended),
    }
    Ok(d)
}
