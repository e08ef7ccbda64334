//! The ledger state, its queries, its invariants and its root.

use std::collections::BTreeMap;

use groundtruth_device_sdk::DeviceId;

use crate::attestation::{EpochReadings, EpochSeal, ReadingsAttestation};
use crate::codec::{Reader, Writer};
use crate::commitment::{Commitment, Tracked, WriteSet};
use crate::error::{InvariantError, LedgerError, Result, SnapshotError, TxError};
use crate::genesis::{Genesis, Params};
use crate::provider_audit::{GpuChallenge, GpuSpec, ProviderAuditKind, ProviderAuditRound};
use crate::storage::{StorageAudit, StorageCommitment};
use crate::types::{
    check_region, Account, Address, Amount, AuditKind, AuditRecord, AuditSubject, ConsensusKey,
    Device, DeviceStatus, Epoch, Height, Offender, Provider, RewardTotal, SlashRecord, Supply,
    UnbondingEntry, Validator, ValidatorStatus,
};

/// Key under which the state root is derived (blake3 `derive_key` context).
pub const STATE_ROOT_CONTEXT: &str = "groundtruth ledger state root v1";

/// The whole replicated state. Every map is a `BTreeMap`, so iteration (and therefore the
/// state root and end-of-epoch processing) is deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    pub(crate) chain_id: String,
    pub(crate) params: Params,
    pub(crate) height: Height,
    pub(crate) epoch: Epoch,
    pub(crate) supply: Supply,
    pub(crate) accounts: Tracked<Address, Account>,
    /// Validators by operator.
    pub(crate) validators: Tracked<Address, Validator>,
    /// Derived index: consensus key (ever used) → operator. Not hashed into the root.
    pub(crate) consensus_keys: BTreeMap<ConsensusKey, Address>,
    /// The current validator set: consensus key → voting power. Recomputed at epoch
    /// boundaries; jailing or removal takes a validator out at once.
    pub(crate) active_set: Tracked<ConsensusKey, u64>,
    pub(crate) providers: Tracked<Address, Provider>,
    /// Devices by current key.
    pub(crate) devices: Tracked<DeviceId, Device>,
    /// Derived index: every device key ever used → the record's current key. Not hashed.
    pub(crate) device_keys: BTreeMap<DeviceId, DeviceId>,
    pub(crate) unbonding: Tracked<u64, UnbondingEntry>,
    pub(crate) next_unbonding_id: u64,
    /// Operators that voted `CloseEpoch` for the current epoch (timed epochs; part of the
    /// header entry, cleared at each boundary).
    pub(crate) close_votes: std::collections::BTreeSet<Address>,
    /// Delegated stake: (validator operator, delegator) → amount (never zero).
    pub(crate) delegations: Tracked<(Address, Address), Amount>,
    /// Audit records by audited epoch, of the last `history_epochs` epochs (older ones are
    /// pruned at each epoch boundary).
    pub(crate) audits: Tracked<Epoch, BTreeMap<(AuditSubject, AuditKind), AuditRecord>>,
    pub(crate) slashes: Vec<SlashRecord>,
    /// Rewards paid: (epoch, recipient) → amount, of the last `history_epochs` epochs.
    pub(crate) rewards: Tracked<(Epoch, Address), Amount>,
    /// Every recipient's rewards since genesis (total, paid epochs), kept for good.
    pub(crate) reward_totals: Tracked<Address, RewardTotal>,
    /// Seals of ended epochs: beacon and committee (see [`crate::sampling`]).
    pub(crate) seals: Tracked<Epoch, EpochSeal>,
    /// Readings attestations of epochs still inside their attestation window, by (epoch,
    /// validator operator): at most one per committee member and epoch.
    pub(crate) attestations: Tracked<(Epoch, Address), ReadingsAttestation>,
    /// Fixed readings roots, by epoch (kept for good).
    pub(crate) fixed_readings: Tracked<Epoch, EpochReadings>,
    /// Attestations that differ from the fixed root, by (epoch, validator) (kept for good).
    pub(crate) flagged: Tracked<(Epoch, Address), ReadingsAttestation>,
    /// Storage commitments, by the key that committed (see [`crate::storage`]).
    pub(crate) storage: Tracked<DeviceId, StorageCommitment>,
    /// Storage challenge outcomes, by (challenged epoch, commitment key).
    pub(crate) storage_audits: Tracked<(Epoch, DeviceId), StorageAudit>,
    /// GPU specs, by the key that registered them (see [`crate::provider_audit`]).
    pub(crate) gpu_specs: Tracked<DeviceId, GpuSpec>,
    /// Committee-decided provider audits, by (epoch, record key, kind) (kept for good).
    pub(crate) provider_audits: Tracked<(Epoch, DeviceId, ProviderAuditKind), ProviderAuditRound>,
    /// The authenticated map over all of the above (derived; see [`crate::commitment`]).
    pub(crate) commitment: Commitment,
}

/// Rewards paid to one account ([`State::rewards_of`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountRewards {
    /// Sum of every payout since genesis.
    pub total: Amount,
    /// Epochs whose end paid it something.
    pub epochs: u64,
    /// The latest payouts asked for, newest first: (epoch, amount), among those of the last
    /// `history_epochs` epochs (the ledger keeps no older per-epoch entries).
    pub recent: Vec<(Epoch, Amount)>,
}

impl State {
    /// A state with no entries: the one place that lists every table, so a new table cannot be
    /// forgotten by one of the constructors (genesis, entries, snapshot).
    fn empty(chain_id: String, params: Params) -> State {
        State {
            chain_id,
            params,
            height: 0,
            epoch: 0,
            supply: Supply::default(),
            accounts: Tracked::default(),
            validators: Tracked::default(),
            consensus_keys: BTreeMap::new(),
            active_set: Tracked::default(),
            providers: Tracked::default(),
            devices: Tracked::default(),
            device_keys: BTreeMap::new(),
            unbonding: Tracked::default(),
            next_unbonding_id: 0,
            close_votes: std::collections::BTreeSet::new(),
            delegations: Tracked::default(),
            audits: Tracked::default(),
            slashes: Vec::new(),
            rewards: Tracked::default(),
            reward_totals: Tracked::default(),
            seals: Tracked::default(),
            attestations: Tracked::default(),
            fixed_readings: Tracked::default(),
            flagged: Tracked::default(),
            storage: Tracked::default(),
            storage_audits: Tracked::default(),
            gpu_specs: Tracked::default(),
            provider_audits: Tracked::default(),
            commitment: Commitment::default(),
        }
    }

    /// Builds the state at height 0 from a genesis, checking it: valid parameters, no weak
    /// or duplicate keys, validators at the minimum stake, a supply that fits in `u64`.
    pub fn from_genesis(g: &Genesis) -> Result<Self> {
        let bad = |m: String| Err(LedgerError::Genesis(m));
        g.params.validate()?;
        if g.chain_id.is_empty() || g.chain_id.len() > 64 {
            return bad("chain_id must be 1..=64 bytes".into());
        }
        let mut st = State::empty(g.chain_id.clone(), g.params.clone());
        let mut total: Amount = 0;
        let add = |total: &mut Amount, v: Amount| -> Result<()> {
            *total = total
                .checked_add(v)
                .ok_or_else(|| LedgerError::Genesis("total supply overflows u64".into()))?;
            Ok(())
        };
        for a in &g.accounts {
            if a.address.is_weak() {
                return bad(format!("account {} is a weak key", a.address));
            }
            let acct = Account {
                balance: a.balance,
                nonce: 0,
            };
            if st.accounts.insert(a.address, acct).is_some() {
                return bad(format!("account {} listed twice", a.address));
            }
            add(&mut total, a.balance)?;
        }
        for v in &g.validators {
            if v.operator.is_weak() || v.consensus_key.is_weak() {
                return bad(format!("validator {} has a weak key", v.operator));
            }
            if v.stake == 0 || v.stake < g.params.min_validator_stake {
                return bad(format!("validator {} below the minimum stake", v.operator));
            }
            if st
                .consensus_keys
                .insert(v.consensus_key, v.operator)
                .is_some()
            {
                return bad(format!("consensus key {} listed twice", v.consensus_key));
            }
            let rec = Validator {
                operator: v.operator,
                consensus_key: v.consensus_key,
                stake: v.stake,
                status: ValidatorStatus::Active,
                jail_count: 0,
                l1_address: v.l1_address,
            };
            if let Some(a) = v.l1_address {
                if st.validators.values().any(|o| o.l1_address == Some(a)) {
                    return bad(format!("L1 address {a} listed twice"));
                }
            }
            if st.validators.insert(v.operator, rec).is_some() {
                return bad(format!("validator operator {} listed twice", v.operator));
            }
            add(&mut total, v.stake)?;
        }
        for p in &g.providers {
            if p.address.is_weak() {
                return bad(format!("provider {} is a weak key", p.address));
            }
            let rec = Provider {
                address: p.address,
                stake: p.stake,
                data_root: p.data_root.map(|r| r.0).unwrap_or([0; 32]),
                registered_at: 0,
            };
            if st.providers.insert(p.address, rec).is_some() {
                return bad(format!("provider {} listed twice", p.address));
            }
            add(&mut total, p.stake)?;
        }
        for d in &g.devices {
            let id = DeviceId(d.id.0);
            if id.is_weak() {
                return bad(format!("device {} is a weak key", d.id));
            }
            if check_region(&d.region).is_err() {
                return bad(format!("device {}: invalid region", d.id));
            }
            let rec = Device {
                id,
                owner: d.owner,
                kind: d.kind,
                capacity: d.capacity,
                region: d.region.clone(),
                status: DeviceStatus::Active,
                registered_at: 0,
                previous_keys: Vec::new(),
                rotated_at_seq: Vec::new(),
            };
            if st.devices.insert(id, rec).is_some() {
                return bad(format!("device {} listed twice", d.id));
            }
            st.device_keys.insert(id, id);
        }
        st.supply.genesis = total;
        let set = st.compute_validator_set();
        st.active_set.replace(set);
        st.rebuild_commitment()
            .map_err(|e| LedgerError::Genesis(e.to_string()))?;
        Ok(st)
    }

    /// The network name signed into transactions and votes.
    pub fn chain_id(&self) -> &str {
        &self.chain_id
    }

    /// Chain parameters.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Height of the last applied block (0 at genesis).
    pub fn height(&self) -> Height {
        self.height
    }

    /// The epoch the next block belongs to.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Supply counters (genesis, minted, burned).
    pub fn supply(&self) -> Supply {
        self.supply
    }

    /// An account; absent accounts read as zero balance, nonce 0.
    pub fn account(&self, address: &Address) -> Account {
        self.accounts.get(address).copied().unwrap_or_default()
    }

    /// All accounts that were ever touched.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// A validator by operator address.
    pub fn validator(&self, operator: &Address) -> Option<&Validator> {
        self.validators.get(operator)
    }

    /// A validator by consensus key (including removed validators).
    pub fn validator_by_consensus_key(&self, key: &ConsensusKey) -> Option<&Validator> {
        self.consensus_keys
            .get(key)
            .and_then(|op| self.validators.get(op))
    }

    /// All validators (active, jailed and removed), by operator.
    pub fn validators(&self) -> impl Iterator<Item = &Validator> {
        self.validators.values()
    }

    /// The validator set for the consensus engine: `(consensus key, voting power)`, voting
    /// power = self-stake + delegated stake at the last epoch boundary, highest first (ties by
    /// key). Jailed and removed validators are absent (zero power).
    pub fn validator_set(&self) -> Vec<(ConsensusKey, u64)> {
        let mut v: Vec<_> = self.active_set.iter().map(|(k, p)| (*k, *p)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    /// Stake `delegator` delegated to the validator operated by `validator` (0 if none).
    pub fn delegation(&self, validator: &Address, delegator: &Address) -> Amount {
        self.delegations
            .get(&(*validator, *delegator))
            .copied()
            .unwrap_or(0)
    }

    /// Delegations to one validator, by delegator.
    pub fn delegations_to(&self, validator: &Address) -> Vec<(Address, Amount)> {
        self.delegations
            .range((*validator, Address([0; 32]))..=(*validator, Address([0xff; 32])))
            .map(|((_, d), a)| (*d, *a))
            .collect()
    }

    /// Total stake delegated to one validator (fits in `u64`: it is part of the supply).
    pub fn delegated_to(&self, validator: &Address) -> Amount {
        self.delegations
            .range((*validator, Address([0; 32]))..=(*validator, Address([0xff; 32])))
            .fold(0u64, |acc, (_, a)| acc.saturating_add(*a))
    }

    /// Total voting power of the current set.
    pub fn total_voting_power(&self) -> u64 {
        self.active_set
            .values()
            .fold(0u64, |acc, p| acc.saturating_add(*p))
    }

    /// A provider by address.
    pub fn provider(&self, address: &Address) -> Option<&Provider> {
        self.providers.get(address)
    }

    /// All providers.
    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    /// A device by its current key (`None` for unknown and for rotated-away keys).
    pub fn device(&self, id: &DeviceId) -> Option<&Device> {
        self.devices.get(id)
    }

    /// The device record that uses or once used `id` (follows key rotations).
    pub fn device_by_any_key(&self, id: &DeviceId) -> Option<&Device> {
        self.device_keys
            .get(id)
            .and_then(|cur| self.devices.get(cur))
    }

    /// All devices, by current key.
    pub fn devices(&self) -> impl Iterator<Item = &Device> {
        self.devices.values()
    }

    /// Devices owned by `owner` (active and retired).
    pub fn devices_by_owner(&self, owner: &Address) -> Vec<&Device> {
        self.devices
            .values()
            .filter(|d| d.owner.as_ref() == Some(owner))
            .collect()
    }

    /// Every slash, oldest first.
    pub fn slashes(&self) -> &[SlashRecord] {
        &self.slashes
    }

    /// Slashes of one offender.
    pub fn slashes_of(&self, offender: &Offender) -> Vec<&SlashRecord> {
        self.slashes
            .iter()
            .filter(|s| &s.offender == offender)
            .collect()
    }

    /// The oldest epoch whose audit records and reward entries the state still holds: those of
    /// older epochs were pruned (see [`Params::history_epochs`]).
    pub fn history_floor(&self) -> Epoch {
        self.epoch.saturating_sub(self.params.history_epochs)
    }

    /// Whether `epoch`'s audit records and reward entries were pruned from the state
    /// ([`State::history_floor`]): then [`State::audits_for_epoch`] and
    /// [`State::rewards_for_epoch`] read empty whatever the epoch held.
    pub fn history_pruned(&self, epoch: Epoch) -> bool {
        epoch < self.history_floor()
    }

    /// Audits of an epoch (by the epoch audited), ordered by subject and kind. Empty for an
    /// epoch older than [`State::history_floor`].
    pub fn audits_for_epoch(&self, epoch: Epoch) -> Vec<&AuditRecord> {
        self.audits
            .get(&epoch)
            .map(|m| m.values().collect())
            .unwrap_or_default()
    }

    /// One audit.
    pub fn audit(
        &self,
        epoch: Epoch,
        subject: &AuditSubject,
        kind: AuditKind,
    ) -> Option<&AuditRecord> {
        self.audits.get(&epoch)?.get(&(*subject, kind))
    }

    /// Rewards paid at the end of `epoch`, by recipient. Empty for an epoch older than
    /// [`State::history_floor`].
    pub fn rewards_for_epoch(&self, epoch: Epoch) -> Vec<(Address, Amount)> {
        self.rewards
            .range((epoch, Address([0; 32]))..=(epoch, Address([0xff; 32])))
            .map(|((_, a), v)| (*a, *v))
            .collect()
    }

    /// Rewards paid to `address` since genesis (audit and work shares together, as
    /// [`crate::apply::end_epoch`] pays them): the total and how many epochs paid it (from the
    /// running totals, exact after pruning), and its `recent` latest payouts, newest first,
    /// among the epochs still held (the last `history_epochs`). O(epochs held · log n).
    pub fn rewards_of(&self, address: &Address, recent: usize) -> AccountRewards {
        let Some(t) = self.reward_totals.get(address) else {
            return AccountRewards::default();
        };
        // Walk the epochs that hold any reward entry, newest first.
        let mut out = Vec::new();
        let mut below = self.rewards.keys().next_back().map(|(e, _)| *e);
        while let Some(e) = below {
            if out.len() >= recent {
                break;
            }
            if let Some(v) = self.rewards.get(&(e, *address)) {
                out.push((e, *v));
            }
            below = e.checked_sub(1).and_then(|prev| {
                self.rewards
                    .range(..=(prev, Address([0xff; 32])))
                    .next_back()
                    .map(|((x, _), _)| *x)
            });
        }
        AccountRewards {
            total: t.total,
            epochs: t.epochs,
            recent: out,
        }
    }

    /// Records a reward paid at the end of `epoch` (once per recipient and epoch): the
    /// per-epoch entry and the recipient's running total.
    pub(crate) fn record_reward(&mut self, epoch: Epoch, to: Address, amount: Amount) {
        let old = self.rewards.insert((epoch, to), amount);
        let t = self.reward_totals.entry(to).or_default();
        // A sum of paid rewards, each minted under the supply: it cannot saturate while the
        // supply fits.
        t.total = t
            .total
            .saturating_sub(old.unwrap_or(0))
            .saturating_add(amount);
        if old.is_none() {
            t.epochs = t.epochs.saturating_add(1);
        }
    }

    /// Drops the audit records and reward entries of every epoch before `floor` (through the
    /// tracked maps, so the tree deletes their entries with the next commit). Returns how
    /// many audit records and reward entries went.
    pub(crate) fn prune_history(&mut self, floor: Epoch) -> (usize, usize) {
        let epochs: Vec<Epoch> = self.audits.range(..floor).map(|(e, _)| *e).collect();
        let mut audits = 0usize;
        for e in epochs {
            audits = audits.saturating_add(self.audits.get(&e).map_or(0, BTreeMap::len));
            self.audits.prune(&e);
        }
        let rewards: Vec<(Epoch, Address)> = self
            .rewards
            .range(..(floor, Address([0; 32])))
            .map(|(k, _)| *k)
            .collect();
        for k in &rewards {
            self.rewards.remove(k);
        }
        (audits, rewards.len())
    }

    /// The seal of an ended epoch: its sampling beacon and the committee that served in it.
    pub fn epoch_seal(&self, epoch: Epoch) -> Option<&EpochSeal> {
        self.seals.get(&epoch)
    }

    /// Which validators audit which device for an ended `epoch` (`None` if it has not ended):
    /// [`crate::sampling::assign`] over the epoch's beacon and committee, for the devices
    /// active now, with `audit_redundancy` validators each. A device's auditors depend only on
    /// the seal and the device, so every node computes the same list for it at any later
    /// height.
    pub fn audit_assignment(&self, epoch: Epoch) -> Option<crate::sampling::Assignment> {
        let seal = self.seals.get(&epoch)?;
        let devices: Vec<DeviceId> = self
            .devices
            .values()
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| d.id)
            .collect();
        Some(crate::sampling::assign(
            &seal.beacon,
            epoch,
            &devices,
            &seal.committee,
            self.params.audit_redundancy,
        ))
    }

    /// Whether the `CloseEpoch` votes for the current epoch carry ≥ 2/3 of the active set's
    /// power.
    pub fn close_votes_reach_two_thirds(&self) -> bool {
        let total: u128 = self.active_set.values().map(|p| u128::from(*p)).sum();
        let voted: u128 = self
            .active_set
            .iter()
            .filter(|(k, _)| {
                self.consensus_keys
                    .get(*k)
                    .is_some_and(|op| self.close_votes.contains(op))
            })
            .map(|(_, p)| u128::from(*p))
            .sum();
        crate::apply::reaches_two_thirds(voted, total)
    }

    /// Whether `operator` runs a validator in the current set.
    pub fn is_active_operator(&self, operator: &Address) -> bool {
        self.validators
            .get(operator)
            .is_some_and(|v| self.active_set.contains_key(&v.consensus_key))
    }

    /// Operators that voted to close the current epoch.
    pub fn close_votes(&self) -> impl Iterator<Item = &Address> {
        self.close_votes.iter()
    }

    /// The commitment of `epoch`, once recorded.
    pub fn epoch_commitment(&self, epoch: Epoch) -> Option<&crate::attestation::EpochCommitment> {
        self.seals.get(&epoch)?.commitment.as_ref()
    }

    /// The readings root fixed for `epoch` by ≥ 2/3 of its committee's power, if any.
    pub fn fixed_readings_root(&self, epoch: Epoch) -> Option<&EpochReadings> {
        self.fixed_readings.get(&epoch)
    }

    /// Readings attestations recorded for `epoch`, by validator (empty once the epoch's
    /// attestation window has closed).
    pub fn attestations(&self, epoch: Epoch) -> Vec<&ReadingsAttestation> {
        self.attestations
            .range((epoch, Address([0; 32]))..=(epoch, Address([0xff; 32])))
            .map(|(_, a)| a)
            .collect()
    }

    /// Power attesting each `(readings_root, readings)` of `epoch`, from the attestations
    /// still held, weighted by the epoch's committee (u128: cannot overflow).
    pub fn attestation_tally(&self, epoch: Epoch) -> BTreeMap<([u8; 32], u64), u128> {
        let mut tally: BTreeMap<([u8; 32], u64), u128> = BTreeMap::new();
        if let Some(seal) = self.seals.get(&epoch) {
            for a in self.attestations(epoch) {
                let t = tally.entry((a.readings_root, a.readings)).or_default();
                *t = t.saturating_add(u128::from(seal.power_of(&a.validator)));
            }
        }
        tally
    }

    /// Validators flagged for `epoch`: their attestation differs from the fixed root, so they
    /// must fill their store from peers. Each with what it attested.
    pub fn flagged(&self, epoch: Epoch) -> Vec<&ReadingsAttestation> {
        self.flagged
            .range((epoch, Address([0; 32]))..=(epoch, Address([0xff; 32])))
            .map(|(_, a)| a)
            .collect()
    }

    /// The storage commitment of a device, by any of its keys (the record is kept under the
    /// key that committed, see [`crate::storage`]).
    pub fn storage_commitment(&self, device: &DeviceId) -> Option<&StorageCommitment> {
        let d = self.device_by_any_key(device)?;
        self.storage_key_of(d).and_then(|k| self.storage.get(&k))
    }

    /// Every storage commitment, by the key that committed.
    pub fn storage_commitments(&self) -> impl Iterator<Item = &StorageCommitment> {
        self.storage.values()
    }

    /// The key under which `device`'s storage commitment is kept (its current or a previous
    /// key), if it has one.
    pub(crate) fn storage_key_of(&self, device: &crate::types::Device) -> Option<DeviceId> {
        core::iter::once(&device.id)
            .chain(device.previous_keys.iter())
            .find(|k| self.storage.contains_key(k))
            .copied()
    }

    /// The storage challenge of `device` (any of its keys) for an ended `epoch`: the committed
    /// root, depth and chunk count, the seed [`crate::storage::storage_seed`] derives from the
    /// epoch's beacon, and `storage_challenge_k`; its chunk indices are
    /// `Challenge::indices()`. `None` before the epoch is sealed, or when the epoch is not
    /// challenged for the device.
    pub fn storage_challenge(
        &self,
        epoch: Epoch,
        device: &DeviceId,
    ) -> Option<groundtruth_proofs::Challenge> {
        let seal = self.seals.get(&epoch)?;
        let c = self.storage_commitment(device)?;
        c.challenged(epoch)
            .then(|| c.challenge(&seal.beacon, epoch, self.params.storage_challenge_k))
    }

    /// The outcome of `device`'s (any of its keys) storage challenge for `epoch`, once
    /// recorded.
    pub fn storage_audit(&self, epoch: Epoch, device: &DeviceId) -> Option<&StorageAudit> {
        let d = self.device_by_any_key(device)?;
        let k = self.storage_key_of(d)?;
        self.storage_audits.get(&(epoch, k))
    }

    /// Storage challenge outcomes of `epoch`, by commitment key.
    pub fn storage_audits_for_epoch(&self, epoch: Epoch) -> Vec<&StorageAudit> {
        self.storage_audits
            .range((epoch, DeviceId([0; 32]))..=(epoch, DeviceId([0xff; 32])))
            .map(|(_, a)| a)
            .collect()
    }

    /// The key under which `device`'s GPU spec is kept (its current or a previous key).
    pub(crate) fn gpu_spec_key_of(&self, device: &crate::types::Device) -> Option<DeviceId> {
        core::iter::once(&device.id)
            .chain(device.previous_keys.iter())
            .find(|k| self.gpu_specs.contains_key(k))
            .copied()
    }

    /// The registered GPU spec of `device` (any of its keys).
    pub fn gpu_spec(&self, device: &DeviceId) -> Option<&GpuSpec> {
        let d = self.device_by_any_key(device)?;
        self.gpu_spec_key_of(d).and_then(|k| self.gpu_specs.get(&k))
    }

    /// The record key a provider audit of `device` (any of its keys) is kept under, with the
    /// audit's kind: the storage commitment's key (retrieval) or the GPU spec's (GPU capacity).
    /// `None` for a device with neither.
    pub(crate) fn provider_audit_key(
        &self,
        device: &DeviceId,
    ) -> Option<(DeviceId, ProviderAuditKind)> {
        let d = self.device_by_any_key(device)?;
        match d.kind {
            crate::types::DeviceKind::Storage => self
                .storage_key_of(d)
                .map(|k| (k, ProviderAuditKind::Retrieval)),
            crate::types::DeviceKind::Gpu => self
                .gpu_spec_key_of(d)
                .map(|k| (k, ProviderAuditKind::GpuCapacity)),
            crate::types::DeviceKind::Energy => None,
        }
    }

    /// The committee that audits `device` (any of its keys) for an ended `epoch`: up to
    /// `provider_committee_size` distinct validators of the epoch's seal, drawn without
    /// replacement by stake ([`crate::sampling::Pool::draw`]) with the beacon
    /// [`crate::provider_audit::committee_beacon`] and the device's record key (all validators
    /// when the set is smaller). Empty before the seal and for a device that is not audited
    /// (no storage commitment or GPU spec).
    pub fn provider_audit_committee(&self, epoch: Epoch, device: &DeviceId) -> Vec<Address> {
        let (Some(seal), Some((key, _))) =
            (self.seals.get(&epoch), self.provider_audit_key(device))
        else {
            return Vec::new();
        };
        crate::sampling::Pool::new(&seal.committee).draw(
            &crate::provider_audit::committee_beacon(&seal.beacon),
            epoch,
            &key,
            self.params.provider_committee_size,
        )
    }

    /// The GPU capacity challenge of `device` (any of its keys) for an ended `epoch`: the seed
    /// [`crate::provider_audit::gpu_seed`] derives from the epoch's beacon, `gpu_challenge_n`,
    /// and the deadline [`crate::provider_audit::gpu_deadline_ms`] sets from the registered
    /// claim. `None` before the seal, for a device without a GPU spec, and for one that is no
    /// longer active.
    pub fn gpu_challenge(&self, epoch: Epoch, device: &DeviceId) -> Option<GpuChallenge> {
        let seal = self.seals.get(&epoch)?;
        let d = self.device_by_any_key(device)?;
        if d.status != DeviceStatus::Active {
            return None;
        }
        let spec = self.gpu_specs.get(&self.gpu_spec_key_of(d)?)?;
        let n = self.params.gpu_challenge_n;
        Some(GpuChallenge {
            seed: crate::provider_audit::gpu_seed(&seal.beacon, epoch, &spec.device),
            n,
            deadline_ms: crate::provider_audit::gpu_deadline_ms(n, spec.claimed_mac_per_s),
        })
    }

    /// The chunk indices committee members fetch from storage `device` (any of its keys) for
    /// an ended `epoch`: `retrieval_spot_chunks` distinct indices
    /// ([`crate::provider_audit::spot_indices`]) from the seed
    /// [`crate::provider_audit::retrieval_seed`] derives from the epoch's beacon. Empty before
    /// the seal or when the epoch is not challenged for the device.
    pub fn retrieval_challenge(&self, epoch: Epoch, device: &DeviceId) -> Vec<u64> {
        self.retrieval_seed(epoch, device)
            .map(|(seed, chunks)| {
                crate::provider_audit::spot_indices(
                    &seed,
                    chunks,
                    self.params.retrieval_spot_chunks,
                )
            })
            .unwrap_or_default()
    }

    fn retrieval_seed(&self, epoch: Epoch, device: &DeviceId) -> Option<([u8; 32], u64)> {
        let seal = self.seals.get(&epoch)?;
        let c = self.storage_commitment(device)?;
        c.challenged(epoch).then(|| {
            (
                crate::provider_audit::retrieval_seed(&seal.beacon, epoch, &c.device),
                c.num_chunks,
            )
        })
    }

    /// The seed a `ReportProviderAudit` for (`epoch`, `device`, `kind`) must carry: the GPU
    /// challenge's seed, or the spot retrieval's. `None` when no such challenge exists.
    pub fn provider_audit_seed(
        &self,
        epoch: Epoch,
        device: &DeviceId,
        kind: ProviderAuditKind,
    ) -> Option<[u8; 32]> {
        match kind {
            ProviderAuditKind::GpuCapacity => self.gpu_challenge(epoch, device).map(|c| c.seed),
            ProviderAuditKind::Retrieval => self.retrieval_seed(epoch, device).map(|(s, _)| s),
        }
    }

    /// The round of a provider audit (reports and decision), by any of the device's keys.
    pub fn provider_audit(
        &self,
        epoch: Epoch,
        device: &DeviceId,
        kind: ProviderAuditKind,
    ) -> Option<&ProviderAuditRound> {
        let (key, k) = self.provider_audit_key(device)?;
        if k != kind {
            return None;
        }
        self.provider_audits.get(&(epoch, key, kind))
    }

    /// Provider audit rounds of `epoch`, by record key and kind.
    pub fn provider_audits_for_epoch(&self, epoch: Epoch) -> Vec<&ProviderAuditRound> {
        let lo = (epoch, DeviceId([0; 32]), ProviderAuditKind::Retrieval);
        let hi = (epoch, DeviceId([0xff; 32]), ProviderAuditKind::GpuCapacity);
        self.provider_audits
            .range(lo..=hi)
            .map(|(_, a)| a)
            .collect()
    }

    /// Pending unbonding entries, by id.
    pub fn unbonding_entries(&self) -> impl Iterator<Item = (&u64, &UnbondingEntry)> {
        self.unbonding.iter()
    }

    /// Sum of every balance, bonded and delegated stake and unbonding entry (u128: cannot
    /// overflow).
    pub fn total_held(&self) -> u128 {
        let balances: u128 = self.accounts.values().map(|a| u128::from(a.balance)).sum();
        let vstake: u128 = self.validators.values().map(|v| u128::from(v.stake)).sum();
        let pstake: u128 = self.providers.values().map(|p| u128::from(p.stake)).sum();
        let unb: u128 = self.unbonding.values().map(|u| u128::from(u.amount)).sum();
        let del: u128 = self.delegations.values().map(|a| u128::from(*a)).sum();
        balances + vstake + pstake + unb + del
    }

    /// Checks the invariants every state must hold; returns what is broken.
    ///
    /// - supply: held == genesis + minted − burned;
    /// - delegations are positive and point at known validators;
    /// - the validator set holds only active validators, with power == stake at most;
    /// - indexes agree with the records they derive from.
    pub fn check_invariants(&self) -> core::result::Result<(), InvariantError> {
        let expected = self
            .supply
            .expected_total()
            .ok_or(InvariantError::SupplyOverflow)?;
        if self.total_held() != u128::from(expected) {
            return Err(InvariantError::Supply {
                held: self.total_held(),
                expected: u128::from(expected),
            });
        }
        for (key, power) in &self.active_set {
            let v = self
                .validator_by_consensus_key(key)
                .ok_or(InvariantError::ActiveSet(*key))?;
            if v.status != ValidatorStatus::Active || *power == 0 {
                return Err(InvariantError::ActiveSet(*key));
            }
        }
        for v in self.validators.values() {
            if self.consensus_keys.get(&v.consensus_key) != Some(&v.operator) {
                return Err(InvariantError::ConsensusKeyIndex(v.operator));
            }
            if v.status == ValidatorStatus::Removed && v.stake != 0 {
                return Err(InvariantError::RemovedWithStake(v.operator));
            }
        }
        let totals: u128 = self
            .reward_totals
            .values()
            .map(|t| u128::from(t.total))
            .sum();
        if totals != u128::from(self.supply.minted) {
            return Err(InvariantError::RewardIndex(None));
        }
        let mut held: BTreeMap<Address, (u128, u64)> = BTreeMap::new();
        for ((_, a), v) in self.rewards.iter() {
            let h = held.entry(*a).or_default();
            h.0 = h.0.saturating_add(u128::from(*v));
            h.1 = h.1.saturating_add(1);
        }
        for (a, (sum, n)) in held {
            let fits = self
                .reward_totals
                .get(&a)
                .is_some_and(|t| u128::from(t.total) >= sum && t.epochs >= n);
            if !fits {
                return Err(InvariantError::RewardIndex(Some(a)));
            }
        }
        for (id, d) in &self.devices {
            if &d.id != id || self.device_keys.get(id) != Some(id) {
                return Err(InvariantError::DeviceIndex(*id));
            }
            for k in &d.previous_keys {
                if self.device_keys.get(k) != Some(id) {
                    return Err(InvariantError::DeviceIndex(*k));
                }
            }
        }
        for ((v, d), a) in &self.delegations {
            if *a == 0 || !self.validators.contains_key(v) {
                return Err(InvariantError::Delegation {
                    validator: *v,
                    delegator: *d,
                });
            }
        }
        if self
            .max_unbonding_id()
            .is_some_and(|m| m >= self.next_unbonding_id)
        {
            return Err(InvariantError::UnbondingCounter);
        }
        for (k, c) in &self.storage {
            if &c.device != k || !self.device_keys.contains_key(k) {
                return Err(InvariantError::StorageIndex(*k));
            }
        }
        for ((e, k), a) in &self.storage_audits {
            if a.epoch != *e || a.device != *k || !self.storage.contains_key(k) {
                return Err(InvariantError::StorageIndex(*k));
            }
        }
        for (k, g) in &self.gpu_specs {
            if &g.device != k || !self.device_keys.contains_key(k) {
                return Err(InvariantError::StorageIndex(*k));
            }
        }
        Ok(())
    }

    fn max_unbonding_id(&self) -> Option<u64> {
        self.unbonding.keys().next_back().copied()
    }

    /// The validator set bonded stake gives: active validators whose self-stake is at or
    /// above the minimum, with power = self-stake + delegated stake, top `max_validators` by
    /// power (ties by consensus key).
    pub(crate) fn compute_validator_set(&self) -> BTreeMap<ConsensusKey, u64> {
        let mut eligible: Vec<(ConsensusKey, u64)> = self
            .validators
            .values()
            .filter(|v| {
                v.status == ValidatorStatus::Active
                    && v.stake > 0
                    && v.stake >= self.params.min_validator_stake
            })
            .map(|v| {
                let power = v.stake.saturating_add(self.delegated_to(&v.operator));
                (v.consensus_key, power)
            })
            .collect();
        eligible.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let max = usize::try_from(self.params.max_validators).unwrap_or(usize::MAX);
        eligible.into_iter().take(max).collect()
    }

    /// The state root: the root of the Jellyfish Merkle tree over [`State::entries`]
    /// (blake3), including writes not yet folded in by a block (computed on the side, without
    /// changing the tree). Cost: O(changed entries × log state).
    ///
    /// Should the in-memory tree be broken (a bug), the root reads as `[0xff; 32]`, which
    /// matches no real state, so the node's root check stops it.
    pub fn state_root(&self) -> [u8; 32] {
        let writes = self.collect_writes();
        self.commitment.preview(&writes).unwrap_or([0xff; 32])
    }

    /// The root of the old flat commitment: `blake3::derive_key(STATE_ROOT_CONTEXT)` over the
    /// whole [`State::snapshot`], O(state). Kept as the baseline of the per-block benchmark.
    pub fn flat_root(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key(STATE_ROOT_CONTEXT);
        self.write_canonical(&mut |b| {
            h.update(b);
        });
        *h.finalize().as_bytes()
    }

    /// Folds every write since the last call into the tree (one new version, stale nodes
    /// dropped) and returns the new root with the entries written, for incremental
    /// persistence. `apply_block` calls it once per block.
    pub fn commit(&mut self) -> Result<([u8; 32], WriteSet)> {
        let writes = self.collect_writes();
        let root = self
            .commitment
            .apply(&writes)
            .map_err(|e| LedgerError::Commitment(e.to_string()))?;
        self.clear_dirty();
        self.commitment.slashes = self.slashes.len();
        Ok((root, writes))
    }

    fn clear_dirty(&mut self) {
        self.accounts.clear_dirty();
        self.validators.clear_dirty();
        self.active_set.clear_dirty();
        self.providers.clear_dirty();
        self.devices.clear_dirty();
        self.unbonding.clear_dirty();
        self.delegations.clear_dirty();
        self.audits.clear_dirty();
        self.rewards.clear_dirty();
        self.reward_totals.clear_dirty();
        self.seals.clear_dirty();
        self.attestations.clear_dirty();
        self.fixed_readings.clear_dirty();
        self.flagged.clear_dirty();
        self.storage.clear_dirty();
        self.storage_audits.clear_dirty();
        self.gpu_specs.clear_dirty();
        self.provider_audits.clear_dirty();
    }

    /// Builds the tree from scratch over every entry.
    fn rebuild_commitment(&mut self) -> core::result::Result<(), SnapshotError> {
        self.commitment = Commitment::default();
        let writes: WriteSet = self
            .entries()
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect();
        self.commitment
            .apply(&writes)
            .map_err(|e| SnapshotError::Params(format!("state tree: {e}")))?;
        self.clear_dirty();
        self.commitment.slashes = self.slashes.len();
        Ok(())
    }

    /// Every entry of the state, keys ascending within each table: `(tag ‖ key, value)` in
    /// canonical encodings. Tags: 0 header (chain id, params, height, epoch, supply, next
    /// unbonding id), 1 accounts, 2 validators, 3 validator set, 4 providers, 5 devices,
    /// 6 unbonding entries, 7 audits, 8 slashes, 9 rewards, 10 delegations, 11 epoch seals,
    /// 12 readings attestations, 13 fixed readings roots, 14 flagged attestations, 15 storage
    /// commitments, 16 storage audits, 17 GPU specs, 18 provider audit rounds, 19 reward totals.
    /// What the state root commits to, and what the node persists ([`State::from_entries`] reads it back).
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![(entry_key::header(), self.header_bytes())];
        for (a, acc) in self.accounts.iter() {
            out.push((entry_key::account(a), enc(|w| acc.encode(w))));
        }
        for (a, v) in self.validators.iter() {
            out.push((entry_key::validator(a), enc(|w| v.encode(w))));
        }
        for (k, p) in self.active_set.iter() {
            out.push((
                entry_key::active(k),
                enc(|w| {
                    w.u64(*p);
                }),
            ));
        }
        for (a, p) in self.providers.iter() {
            out.push((entry_key::provider(a), enc(|w| p.encode(w))));
        }
        for (id, d) in self.devices.iter() {
            out.push((entry_key::device(id), enc(|w| d.encode(w))));
        }
        for (id, u) in self.unbonding.iter() {
            out.push((entry_key::unbonding(*id), enc(|w| u.encode(w))));
        }
        for a in self.audits.values().flat_map(BTreeMap::values) {
            out.push((entry_key::audit(a), enc(|w| a.encode(w))));
        }
        for s in &self.slashes {
            out.push((entry_key::slash(s.id), enc(|w| s.encode(w))));
        }
        for ((e, a), v) in self.rewards.iter() {
            out.push((
                entry_key::reward(*e, a),
                enc(|w| {
                    w.u64(*v);
                }),
            ));
        }
        for ((v, d), a) in self.delegations.iter() {
            out.push((
                entry_key::delegation(v, d),
                enc(|w| {
                    w.u64(*a);
                }),
            ));
        }
        for (e, s) in self.seals.iter() {
            out.push((entry_key::seal(*e), enc(|w| s.encode(w))));
        }
        for ((e, v), a) in self.attestations.iter() {
            out.push((entry_key::attestation(*e, v), enc(|w| a.encode(w))));
        }
        for (e, f) in self.fixed_readings.iter() {
            out.push((entry_key::fixed_readings(*e), enc(|w| f.encode(w))));
        }
        for ((e, v), a) in self.flagged.iter() {
            out.push((entry_key::flagged(*e, v), enc(|w| a.encode(w))));
        }
        for (d, c) in self.storage.iter() {
            out.push((entry_key::storage(d), enc(|w| c.encode(w))));
        }
        for ((e, d), a) in self.storage_audits.iter() {
            out.push((entry_key::storage_audit(*e, d), enc(|w| a.encode(w))));
        }
        for (d, g) in self.gpu_specs.iter() {
            out.push((entry_key::gpu_spec(d), enc(|w| g.encode(w))));
        }
        for ((e, d, k), a) in self.provider_audits.iter() {
            out.push((entry_key::provider_audit(*e, d, *k), enc(|w| a.encode(w))));
        }
        for (a, t) in self.reward_totals.iter() {
            out.push((entry_key::reward_total(a), enc(|w| t.encode(w))));
        }
        out
    }

    fn header_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.str(&self.chain_id);
        self.params.encode(&mut w);
        w.u64(self.height).u64(self.epoch);
        self.supply.encode(&mut w);
        w.u64(self.next_unbonding_id);
        self.encode_close_votes(&mut w);
        w.into_bytes()
    }

    fn encode_close_votes(&self, w: &mut Writer) {
        w.u32(u32::try_from(self.close_votes.len()).unwrap_or(u32::MAX));
        for a in &self.close_votes {
            a.encode(w);
        }
    }

    fn decode_close_votes(
        r: &mut Reader<'_>,
    ) -> core::result::Result<std::collections::BTreeSet<Address>, TxError> {
        let n = r.u32()?;
        if n > 4_096 {
            return Err(TxError::Malformed("too many close votes"));
        }
        let mut out = std::collections::BTreeSet::new();
        for _ in 0..n {
            if !out.insert(Address::decode(r)?) {
                return Err(TxError::Malformed("duplicate close vote"));
            }
        }
        Ok(out)
    }

    /// The entries written since the last [`State::commit`] whose value differs from the
    /// tree's (`None`: deleted).
    fn collect_writes(&self) -> WriteSet {
        let mut out = WriteSet::new();
        let c = &self.commitment;
        let mut put = |key: Vec<u8>, value: Option<Vec<u8>>| match &value {
            Some(v) if c.get(&key) == Some(v.as_slice()) => {}
            None if !c.contains(&key) => {}
            _ => out.push((key, value)),
        };
        put(entry_key::header(), Some(self.header_bytes()));
        for a in self.accounts.dirty() {
            let v = self.accounts.get(a).map(|x| enc(|w| x.encode(w)));
            put(entry_key::account(a), v);
        }
        for a in self.validators.dirty() {
            let v = self.validators.get(a).map(|x| enc(|w| x.encode(w)));
            put(entry_key::validator(a), v);
        }
        for k in self.active_set.dirty() {
            let v = self.active_set.get(k).map(|p| {
                enc(|w| {
                    w.u64(*p);
                })
            });
            put(entry_key::active(k), v);
        }
        for a in self.providers.dirty() {
            let v = self.providers.get(a).map(|x| enc(|w| x.encode(w)));
            put(entry_key::provider(a), v);
        }
        for id in self.devices.dirty() {
            let v = self.devices.get(id).map(|x| enc(|w| x.encode(w)));
            put(entry_key::device(id), v);
        }
        for id in self.unbonding.dirty() {
            let v = self.unbonding.get(id).map(|x| enc(|w| x.encode(w)));
            put(entry_key::unbonding(*id), v);
        }
        // Within an epoch audits are only ever added: re-put the records of every epoch
        // written, and delete those of an epoch pruned as a whole.
        for e in self.audits.dirty() {
            let now = self.audits.get(e);
            for a in now.into_iter().flat_map(BTreeMap::values) {
                put(entry_key::audit(a), Some(enc(|w| a.encode(w))));
            }
            for a in self.audits.pruned(e).into_iter().flat_map(BTreeMap::values) {
                if !now.is_some_and(|m| m.contains_key(&(a.subject, a.kind))) {
                    put(entry_key::audit(a), None);
                }
            }
        }
        for s in self
            .slashes
            .get(self.commitment.slashes..)
            .unwrap_or_default()
        {
            put(entry_key::slash(s.id), Some(enc(|w| s.encode(w))));
        }
        for k in self.rewards.dirty() {
            let v = self.rewards.get(k).map(|x| {
                enc(|w| {
                    w.u64(*x);
                })
            });
            put(entry_key::reward(k.0, &k.1), v);
        }
        for k in self.delegations.dirty() {
            let v = self.delegations.get(k).map(|x| {
                enc(|w| {
                    w.u64(*x);
                })
            });
            put(entry_key::delegation(&k.0, &k.1), v);
        }
        for e in self.seals.dirty() {
            let v = self.seals.get(e).map(|x| enc(|w| x.encode(w)));
            put(entry_key::seal(*e), v);
        }
        for k in self.attestations.dirty() {
            let v = self.attestations.get(k).map(|x| enc(|w| x.encode(w)));
            put(entry_key::attestation(k.0, &k.1), v);
        }
        for e in self.fixed_readings.dirty() {
            let v = self.fixed_readings.get(e).map(|x| enc(|w| x.encode(w)));
            put(entry_key::fixed_readings(*e), v);
        }
        for k in self.flagged.dirty() {
            let v = self.flagged.get(k).map(|x| enc(|w| x.encode(w)));
            put(entry_key::flagged(k.0, &k.1), v);
        }
        for d in self.storage.dirty() {
            let v = self.storage.get(d).map(|x| enc(|w| x.encode(w)));
            put(entry_key::storage(d), v);
        }
        for k in self.storage_audits.dirty() {
            let v = self.storage_audits.get(k).map(|x| enc(|w| x.encode(w)));
            put(entry_key::storage_audit(k.0, &k.1), v);
        }
        for d in self.gpu_specs.dirty() {
            let v = self.gpu_specs.get(d).map(|x| enc(|w| x.encode(w)));
            put(entry_key::gpu_spec(d), v);
        }
        for k in self.provider_audits.dirty() {
            let v = self.provider_audits.get(k).map(|x| enc(|w| x.encode(w)));
            put(entry_key::provider_audit(k.0, &k.1, k.2), v);
        }
        for a in self.reward_totals.dirty() {
            let v = self.reward_totals.get(a).map(|x| enc(|w| x.encode(w)));
            put(entry_key::reward_total(a), v);
        }
        out
    }

    /// Rebuilds a state from its [`State::entries`] (in any order), checking each key against
    /// its value, the invariants, and building the tree. The caller compares
    /// [`State::state_root`] with the root it stored.
    pub fn from_entries<K, V, I>(entries: I) -> core::result::Result<Self, SnapshotError>
    where
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut header = None;
        let mut st = State::empty(String::new(), Params::default());
        let mut slashes = BTreeMap::new();
        for (k, v) in entries {
            let (k, v) = (k.as_ref(), v.as_ref());
            let (tag, key) = k.split_first().ok_or(SnapshotError::Entry("empty key"))?;
            let mut r = Reader::new(v);
            let mut kr = Reader::new(key);
            let mismatch = SnapshotError::Entry("key does not match its value");
            match tag {
                0 => {
                    let chain_id = r.string()?;
                    let params = Params::decode(&mut r)?;
                    let (height, epoch) = (r.u64()?, r.u64()?);
                    let supply = Supply::decode(&mut r)?;
                    let next = r.u64()?;
                    let votes = Self::decode_close_votes(&mut r)?;
                    header = Some((chain_id, params, height, epoch, supply, next, votes));
                }
                1 => {
                    let a = Address::decode(&mut kr)?;
                    st.accounts.insert(a, Account::decode(&mut r)?);
                }
                2 => {
                    let a = Address::decode(&mut kr)?;
                    let v = Validator::decode(&mut r)?;
                    if v.operator != a {
                        return Err(mismatch);
                    }
                    st.validators.insert(a, v);
                }
                3 => {
                    let a = Address::decode(&mut kr)?;
                    st.active_set.insert(a, r.u64()?);
                }
                4 => {
                    let a = Address::decode(&mut kr)?;
                    let p = Provider::decode(&mut r)?;
                    if p.address != a {
                        return Err(mismatch);
                    }
                    st.providers.insert(a, p);
                }
                5 => {
                    let id = crate::types::decode_device(&mut kr)?;
                    let d = Device::decode(&mut r)?;
                    if d.id != id {
                        return Err(mismatch);
                    }
                    st.devices.insert(id, d);
                }
                6 => {
                    let id = kr.u64()?;
                    st.unbonding.insert(id, UnbondingEntry::decode(&mut r)?);
                }
                7 => {
                    let a = AuditRecord::decode(&mut r)?;
                    if entry_key::audit(&a).get(1..) != Some(key) {
                        return Err(mismatch);
                    }
                    st.audits
                        .entry(a.epoch)
                        .or_default()
                        .insert((a.subject, a.kind), a);
                }
                8 => {
                    let id = kr.u64()?;
                    let s = SlashRecord::decode(&mut r)?;
                    if s.id != id {
                        return Err(mismatch);
                    }
                    slashes.insert(id, s);
                }
                9 => {
                    let e = kr.u64()?;
                    let a = Address::decode(&mut kr)?;
                    st.rewards.insert((e, a), r.u64()?);
                }
                10 => {
                    let v = Address::decode(&mut kr)?;
                    let d = Address::decode(&mut kr)?;
                    st.delegations.insert((v, d), r.u64()?);
                }
                11 => {
                    let e = kr.u64()?;
                    let s = EpochSeal::decode(&mut r)?;
                    if s.epoch != e {
                        return Err(mismatch);
                    }
                    st.seals.insert(e, s);
                }
                12 | 14 => {
                    let e = kr.u64()?;
                    let v = Address::decode(&mut kr)?;
                    let a = ReadingsAttestation::decode(&mut r)?;
                    if a.epoch != e || a.validator != v {
                        return Err(mismatch);
                    }
                    if *tag == 12 {
                        st.attestations.insert((e, v), a);
                    } else {
                        st.flagged.insert((e, v), a);
                    }
                }
                13 => {
                    let e = kr.u64()?;
                    let f = EpochReadings::decode(&mut r)?;
                    if f.epoch != e {
                        return Err(mismatch);
                    }
                    st.fixed_readings.insert(e, f);
                }
                15 => {
                    let d = crate::types::decode_device(&mut kr)?;
                    let c = StorageCommitment::decode(&mut r)?;
                    if c.device != d {
                        return Err(mismatch);
                    }
                    st.storage.insert(d, c);
                }
                16 => {
                    let e = kr.u64()?;
                    let d = crate::types::decode_device(&mut kr)?;
                    let a = StorageAudit::decode(&mut r)?;
                    if a.epoch != e || a.device != d {
                        return Err(mismatch);
                    }
                    st.storage_audits.insert((e, d), a);
                }
                17 => {
                    let d = crate::types::decode_device(&mut kr)?;
                    let g = GpuSpec::decode(&mut r)?;
                    if g.device != d {
                        return Err(mismatch);
                    }
                    st.gpu_specs.insert(d, g);
                }
                18 => {
                    let e = kr.u64()?;
                    let d = crate::types::decode_device(&mut kr)?;
                    let k = ProviderAuditKind::decode(&mut kr)?;
                    let a = ProviderAuditRound::decode(&mut r)?;
                    if a.epoch != e || a.device != d || a.kind != k {
                        return Err(mismatch);
                    }
                    st.provider_audits.insert((e, d, k), a);
                }
                19 => {
                    let a = Address::decode(&mut kr)?;
                    st.reward_totals.insert(a, RewardTotal::decode(&mut r)?);
                }
                _ => return Err(SnapshotError::Entry("unknown table")),
            }
            r.finish()?;
            if *tag != 7 && *tag != 0 {
                kr.finish()?;
            }
        }
        let (chain_id, params, height, epoch, supply, next, votes) =
            header.ok_or(SnapshotError::Entry("no header"))?;
        params
            .validate()
            .map_err(|e| SnapshotError::Params(e.to_string()))?;
        st.chain_id = chain_id;
        st.params = params;
        st.height = height;
        st.epoch = epoch;
        st.supply = supply;
        st.next_unbonding_id = next;
        st.close_votes = votes;
        for (i, (id, s)) in slashes.into_iter().enumerate() {
            if u64::try_from(i).ok() != Some(id) {
                return Err(SnapshotError::Entry("slash ids not contiguous"));
            }
            st.slashes.push(s);
        }
        st.rebuild_indexes();
        st.check_invariants()?;
        st.rebuild_commitment()?;
        Ok(st)
    }

    fn rebuild_indexes(&mut self) {
        for v in self.validators.values() {
            self.consensus_keys.insert(v.consensus_key, v.operator);
        }
        for (id, d) in self.devices.iter() {
            self.device_keys.insert(*id, *id);
            for k in &d.previous_keys {
                self.device_keys.insert(*k, *id);
            }
        }
    }

    /// The whole state in one canonical encoding (what [`State::flat_root`] hashes);
    /// [`State::from_snapshot`] reads it back.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_canonical(&mut |b| out.extend_from_slice(b));
        out
    }

    /// Reads a [`State::snapshot`] back, rebuilding derived indexes and checking the
    /// invariants. `from_snapshot(s)?.state_root()` is the root of the state that wrote `s`.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Self> {
        let bad = |e: TxError| LedgerError::Snapshot(SnapshotError::Decode(e));
        let mut r = Reader::new(bytes);
        let mut st = Self::read_canonical(&mut r).map_err(bad)?;
        r.finish().map_err(bad)?;
        st.params
            .validate()
            .map_err(|e| SnapshotError::Params(e.to_string()))?;
        st.rebuild_indexes();
        st.check_invariants().map_err(SnapshotError::Invariant)?;
        st.rebuild_commitment()?;
        Ok(st)
    }

    fn write_canonical(&self, sink: &mut dyn FnMut(&[u8])) {
        let mut w = Writer::new();
        w.str(&self.chain_id);
        self.params.encode(&mut w);
        w.u64(self.height).u64(self.epoch);
        self.supply.encode(&mut w);
        w.u64(self.next_unbonding_id);
        self.encode_close_votes(&mut w);
        sink(&w.into_bytes());

        fn table<I, F>(sink: &mut dyn FnMut(&[u8]), tag: u8, len: usize, items: I, mut f: F)
        where
            I: Iterator,
            F: FnMut(&mut Writer, I::Item),
        {
            let mut w = Writer::new();
            w.u8(tag).u64(u64::try_from(len).unwrap_or(u64::MAX));
            for item in items {
                f(&mut w, item);
            }
            sink(&w.into_bytes());
        }

        table(
            sink,
            1,
            self.accounts.len(),
            self.accounts.iter(),
            |w, (a, acc)| {
                a.encode(w);
                acc.encode(w);
            },
        );
        table(
            sink,
            2,
            self.validators.len(),
            self.validators.values(),
            |w, v| v.encode(w),
        );
        table(
            sink,
            3,
            self.active_set.len(),
            self.active_set.iter(),
            |w, (k, p)| {
                k.encode(w);
                w.u64(*p);
            },
        );
        table(
            sink,
            4,
            self.providers.len(),
            self.providers.values(),
            |w, p| p.encode(w),
        );
        table(
            sink,
            5,
            self.devices.len(),
            self.devices.values(),
            |w, d| d.encode(w),
        );
        table(
            sink,
            6,
            self.unbonding.len(),
            self.unbonding.iter(),
            |w, (id, u)| {
                w.u64(*id);
                u.encode(w);
            },
        );
        let audit_count = self.audits.values().map(BTreeMap::len).sum();
        table(
            sink,
            7,
            audit_count,
            self.audits.values().flat_map(BTreeMap::values),
            |w, a| a.encode(w),
        );
        table(sink, 8, self.slashes.len(), self.slashes.iter(), |w, s| {
            s.encode(w)
        });
        table(
            sink,
            9,
            self.rewards.len(),
            self.rewards.iter(),
            |w, ((e, a), v)| {
                w.u64(*e);
                a.encode(w);
                w.u64(*v);
            },
        );
        table(
            sink,
            10,
            self.delegations.len(),
            self.delegations.iter(),
            |w, ((v, d), a)| {
                v.encode(w);
                d.encode(w);
                w.u64(*a);
            },
        );
        table(sink, 11, self.seals.len(), self.seals.values(), |w, s| {
            s.encode(w)
        });
        table(
            sink,
            12,
            self.attestations.len(),
            self.attestations.values(),
            |w, a| a.encode(w),
        );
        table(
            sink,
            13,
            self.fixed_readings.len(),
            self.fixed_readings.values(),
            |w, f| f.encode(w),
        );
        table(
            sink,
            14,
            self.flagged.len(),
            self.flagged.values(),
            |w, a| a.encode(w),
        );
        table(
            sink,
            15,
            self.storage.len(),
            self.storage.values(),
            |w, c| c.encode(w),
        );
        table(
            sink,
            16,
            self.storage_audits.len(),
            self.storage_audits.values(),
            |w, a| a.encode(w),
        );
        table(
            sink,
            17,
            self.gpu_specs.len(),
            self.gpu_specs.values(),
            |w, g| g.encode(w),
        );
        table(
            sink,
            18,
            self.provider_audits.len(),
            self.provider_audits.values(),
            |w, a| a.encode(w),
        );
        table(
            sink,
            19,
            self.reward_totals.len(),
            self.reward_totals.iter(),
            |w, (a, t)| {
                a.encode(w);
                t.encode(w);
            },
        );
    }

    fn read_canonical(r: &mut Reader<'_>) -> core::result::Result<Self, TxError> {
        let chain_id = r.string()?;
        let params = Params::decode(r)?;
        let height = r.u64()?;
        let epoch = r.u64()?;
        let supply = Supply::decode(r)?;
        let next_unbonding_id = r.u64()?;
        let close_votes = Self::decode_close_votes(r)?;
        let mut st = State {
            height,
            epoch,
            supply,
            next_unbonding_id,
            close_votes,
            ..State::empty(chain_id, params)
        };
        fn table(
            r: &mut Reader<'_>,
            tag: u8,
            mut f: impl FnMut(&mut Reader<'_>) -> core::result::Result<(), TxError>,
        ) -> core::result::Result<(), TxError> {
            if r.u8()? != tag {
                return Err(TxError::Malformed("snapshot table out of order"));
            }
            for _ in 0..r.u64()? {
                f(r)?;
            }
            Ok(())
        }
        // Keys must come strictly ascending, as they were written: one encoding per state.
        fn ascending<K: Ord>(last: &mut Option<K>, k: K) -> core::result::Result<(), TxError> {
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(TxError::Malformed("snapshot keys out of order"));
            }
            *last = Some(k);
            Ok(())
        }
        let mut last = None;
        table(r, 1, |r| {
            let a = Address::decode(r)?;
            ascending(&mut last, a)?;
            st.accounts.insert(a, Account::decode(r)?);
            Ok(())
        })?;
        let mut last = None;
        table(r, 2, |r| {
            let v = Validator::decode(r)?;
            ascending(&mut last, v.operator)?;
            st.validators.insert(v.operator, v);
            Ok(())
        })?;
        let mut last = None;
        table(r, 3, |r| {
            let k = Address::decode(r)?;
            ascending(&mut last, k)?;
            st.active_set.insert(k, r.u64()?);
            Ok(())
        })?;
        let mut last = None;
        table(r, 4, |r| {
            let p = Provider::decode(r)?;
            ascending(&mut last, p.address)?;
            st.providers.insert(p.address, p);
            Ok(())
        })?;
        let mut last = None;
        table(r, 5, |r| {
            let d = Device::decode(r)?;
            ascending(&mut last, d.id)?;
            st.devices.insert(d.id, d);
            Ok(())
        })?;
        let mut last = None;
        table(r, 6, |r| {
            let id = r.u64()?;
            ascending(&mut last, id)?;
            st.unbonding.insert(id, UnbondingEntry::decode(r)?);
            Ok(())
        })?;
        let mut last = None;
        table(r, 7, |r| {
            let a = AuditRecord::decode(r)?;
            ascending(&mut last, (a.epoch, a.subject, a.kind))?;
            st.audits
                .entry(a.epoch)
                .or_default()
                .insert((a.subject, a.kind), a);
            Ok(())
        })?;
        table(r, 8, |r| {
            let s = SlashRecord::decode(r)?;
            if usize::try_from(s.id).ok() != Some(st.slashes.len()) {
                return Err(TxError::Malformed("slash ids not contiguous"));
            }
            st.slashes.push(s);
            Ok(())
        })?;
        let mut last = None;
        table(r, 9, |r| {
            let e = r.u64()?;
            let a = Address::decode(r)?;
            ascending(&mut last, (e, a))?;
            st.rewards.insert((e, a), r.u64()?);
            Ok(())
        })?;
        let mut last = None;
        table(r, 10, |r| {
            let v = Address::decode(r)?;
            let d = Address::decode(r)?;
            ascending(&mut last, (v, d))?;
            st.delegations.insert((v, d), r.u64()?);
            Ok(())
        })?;
        let mut last = None;
        table(r, 11, |r| {
            let s = EpochSeal::decode(r)?;
            ascending(&mut last, s.epoch)?;
            st.seals.insert(s.epoch, s);
            Ok(())
        })?;
        let mut last = None;
        table(r, 12, |r| {
            let a = ReadingsAttestation::decode(r)?;
            ascending(&mut last, (a.epoch, a.validator))?;
            st.attestations.insert((a.epoch, a.validator), a);
            Ok(())
        })?;
        let mut last = None;
        table(r, 13, |r| {
            let f = EpochReadings::decode(r)?;
            ascending(&mut last, f.epoch)?;
            st.fixed_readings.insert(f.epoch, f);
            Ok(())
        })?;
        let mut last = None;
        table(r, 14, |r| {
            let a = ReadingsAttestation::decode(r)?;
            ascending(&mut last, (a.epoch, a.validator))?;
            st.flagged.insert((a.epoch, a.validator), a);
            Ok(())
        })?;
        let mut last = None;
        table(r, 15, |r| {
            let c = StorageCommitment::decode(r)?;
            ascending(&mut last, c.device)?;
            st.storage.insert(c.device, c);
            Ok(())
        })?;
        let mut last = None;
        table(r, 16, |r| {
            let a = StorageAudit::decode(r)?;
            ascending(&mut last, (a.epoch, a.device))?;
            st.storage_audits.insert((a.epoch, a.device), a);
            Ok(())
        })?;
        let mut last = None;
        table(r, 17, |r| {
            let g = GpuSpec::decode(r)?;
            ascending(&mut last, g.device)?;
            st.gpu_specs.insert(g.device, g);
            Ok(())
        })?;
        let mut last = None;
        table(r, 18, |r| {
            let a = ProviderAuditRound::decode(r)?;
            ascending(&mut last, (a.epoch, a.device, a.kind))?;
            st.provider_audits.insert((a.epoch, a.device, a.kind), a);
            Ok(())
        })?;
        let mut last = None;
        table(r, 19, |r| {
            let a = Address::decode(r)?;
            ascending(&mut last, a)?;
            st.reward_totals.insert(a, RewardTotal::decode(r)?);
            Ok(())
        })?;
        Ok(st)
    }
}

fn enc(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
    let mut w = Writer::new();
    f(&mut w);
    w.into_bytes()
}

/// Keys of the state's entries: `tag ‖ canonical key`.
mod entry_key {
    use super::*;
    use crate::types::encode_device;

    fn key(tag: u8, f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(tag);
        f(&mut w);
        w.into_bytes()
    }
    pub fn header() -> Vec<u8> {
        vec![0]
    }
    pub fn account(a: &Address) -> Vec<u8> {
        key(1, |w| a.encode(w))
    }
    pub fn validator(a: &Address) -> Vec<u8> {
        key(2, |w| a.encode(w))
    }
    pub fn active(k: &ConsensusKey) -> Vec<u8> {
        key(3, |w| k.encode(w))
    }
    pub fn provider(a: &Address) -> Vec<u8> {
        key(4, |w| a.encode(w))
    }
    pub fn device(id: &DeviceId) -> Vec<u8> {
        key(5, |w| encode_device(id, w))
    }
    pub fn unbonding(id: u64) -> Vec<u8> {
        key(6, |w| {
            w.u64(id);
        })
    }
    pub fn audit(a: &AuditRecord) -> Vec<u8> {
        key(7, |w| {
            w.u64(a.epoch);
            a.subject.encode(w);
            w.u8(a.kind.tag());
        })
    }
    pub fn slash(id: u64) -> Vec<u8> {
        key(8, |w| {
            w.u64(id);
        })
    }
    pub fn reward(e: Epoch, a: &Address) -> Vec<u8> {
        key(9, |w| {
            w.u64(e);
            a.encode(w);
        })
    }
    pub fn delegation(v: &Address, d: &Address) -> Vec<u8> {
        key(10, |w| {
            v.encode(w);
            d.encode(w);
        })
    }
    pub fn seal(e: Epoch) -> Vec<u8> {
        key(11, |w| {
            w.u64(e);
        })
    }
    pub fn attestation(e: Epoch, v: &Address) -> Vec<u8> {
        key(12, |w| {
            w.u64(e);
            v.encode(w);
        })
    }
    pub fn fixed_readings(e: Epoch) -> Vec<u8> {
        key(13, |w| {
            w.u64(e);
        })
    }
    pub fn flagged(e: Epoch, v: &Address) -> Vec<u8> {
        key(14, |w| {
            w.u64(e);
            v.encode(w);
        })
    }
    pub fn storage(d: &DeviceId) -> Vec<u8> {
        key(15, |w| encode_device(d, w))
    }
    pub fn storage_audit(e: Epoch, d: &DeviceId) -> Vec<u8> {
        key(16, |w| {
            w.u64(e);
            encode_device(d, w);
        })
    }
    pub fn gpu_spec(d: &DeviceId) -> Vec<u8> {
        key(17, |w| encode_device(d, w))
    }
    pub fn provider_audit(e: Epoch, d: &DeviceId, k: ProviderAuditKind) -> Vec<u8> {
        key(18, |w| {
            w.u64(e);
            encode_device(d, w);
            w.u8(k.tag());
        })
    }
    pub fn reward_total(a: &Address) -> Vec<u8> {
        key(19, |w| a.encode(w))
    }
}
