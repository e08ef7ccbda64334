//! Deterministic keys, signed objects and a small devnet genesis for tests (this crate's, and
//! the consensus adapter's). Keys come from fixed seeds: never use them outside tests.

use ed25519_dalek::{Signer, SigningKey};
use groundtruth_device_sdk::{
    DeviceId, DeviceKey, EnergyReading, Reading, ReadingBody, SignedReading,
};

use groundtruth_proofs::DeviceSeries;

use crate::apply::{apply_block, BlockOutcome};
use crate::attestation::BatchCommitment;
use crate::evidence::{vote_sign_bytes, SignedVote, VoteKind};
use crate::genesis::{
    Genesis, GenesisAccount, GenesisDevice, GenesisProvider, GenesisValidator, Params,
};
use crate::state::State;
use crate::tx::{possession_sign_bytes, Block, SignedTx, Tx, TxBody};
use crate::types::{Address, Amount, DeviceKind, Epoch, Height};

/// Chain id of test networks.
pub const CHAIN_ID: &str = "groundtruth-test";
/// Start of epoch 0's reading window on a timed test network ([`TestNet::new_timed`]), Unix
/// seconds.
pub const GENESIS_TIME_S: u64 = 1_700_000_000;
/// Length of an epoch's reading window on a timed test network, seconds.
pub const EPOCH_DURATION_S: u64 = 3_600;
/// Interval length of the readings [`metered_series`] builds, seconds.
pub const INTERVAL_S: u32 = 300;

/// The key with seed `[seed; 32]`.
pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// The address (public key) of a signing key.
pub fn address(k: &SigningKey) -> Address {
    Address(k.verifying_key().to_bytes())
}

/// The device id of a signing key.
pub fn device_id(k: &SigningKey) -> DeviceId {
    DeviceId(k.verifying_key().to_bytes())
}

/// Signs `body` from `signer` with the signer's next nonce in `state`.
pub fn sign_tx(state: &State, signer: &SigningKey, fee: Amount, body: TxBody) -> SignedTx {
    let a = address(signer);
    Tx {
        signer: a,
        nonce: state.account(&a).nonce,
        fee,
        body,
    }
    .sign(state.chain_id(), signer)
}

/// A device key's proof of possession for `owner`.
pub fn possession(chain_id: &str, owner: &Address, device: &SigningKey) -> [u8; 64] {
    device
        .sign(&possession_sign_bytes(chain_id, owner, &device_id(device)))
        .to_bytes()
}

/// A consensus vote for `value_hash` signed by `key`.
pub fn vote(
    key: &SigningKey,
    kind: VoteKind,
    height: Height,
    round: u32,
    value_hash: [u8; 32],
) -> SignedVote {
    let msg = vote_sign_bytes(kind, height, round, Some(&value_hash), &address(key));
    SignedVote {
        kind,
        height,
        round,
        value: Some(value_hash),
        signature: key.sign(&msg).to_bytes(),
    }
}

/// An energy reading signed by the device key with seed `[seed; 32]`.
pub fn energy_reading(seed: u8, seq: u64, energy_wh: u64) -> SignedReading {
    let k = DeviceKey::from_seed(&[seed; 32]);
    k.sign(Reading {
        device: k.device_id(),
        seq,
        timestamp_ms: 1_700_000_000_000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: 1_700_000_000,
            interval_len_s: 300,
            energy_wh,
            register_wh: 1_000 + energy_wh,
        }),
    })
}

/// Seeds of a [`TestNet`]: validator operators `10+i`, consensus keys `40+i`, users `100+i`,
/// providers are users 0 and 1, devices: user 0 owns energy `200`, gpu `201`, storage
/// `202`; user 1 owns energy `210`.
#[derive(Debug)]
pub struct TestNet {
    /// The genesis.
    pub genesis: Genesis,
    /// Validator operator keys.
    pub operators: Vec<SigningKey>,
    /// Validator consensus keys.
    pub consensus: Vec<SigningKey>,
    /// User keys (users 0 and 1 are providers).
    pub users: Vec<SigningKey>,
}

/// Device seeds of a [`TestNet`].
pub const ENERGY_DEVICE: u8 = 200;
/// GPU device of user 0.
pub const GPU_DEVICE: u8 = 201;
/// Storage device of user 0.
pub const STORAGE_DEVICE: u8 = 202;
/// Energy device of user 1.
pub const ENERGY_DEVICE_2: u8 = 210;

impl TestNet {
    /// Parameters for tests: 4-block epochs, 1 unbonding epoch, jail threshold 2, and
    /// `min_fee` 0 so that tests of one rule need not account for fees (shipped genesis files
    /// default to `min_fee` 1; tests of fees set it).
    pub fn params() -> Params {
        Params {
            epoch_length: 4,
            unbonding_epochs: 1,
            min_validator_stake: 1_000,
            min_provider_stake: 100,
            max_validators: 10,
            jail_epochs: 1,
            jail_threshold: 2,
            reward_per_epoch: 1_000,
            min_fee: 0,
            evidence_max_age_epochs: 1,
            ..Params::default()
        }
    }

    /// [`TestNet::params`] with timed epochs: one-hour reading windows from
    /// [`GENESIS_TIME_S`], closed by `CloseEpoch` votes; the default audit deadline (2 epochs
    /// for the assigned auditor, 2 more for reassignment).
    pub fn timed_params() -> Params {
        Params {
            epoch_duration_s: EPOCH_DURATION_S,
            genesis_time_s: GENESIS_TIME_S,
            ..Self::params()
        }
    }

    /// [`TestNet::new`] with [`TestNet::timed_params`].
    pub fn new_timed(validators: u8, users: u8) -> Self {
        let mut n = Self::new(validators, users);
        n.genesis.params = Self::timed_params();
        n
    }

    /// `CloseEpoch` votes for the state's current epoch from the operators at `voters`
    /// (indices into [`TestNet::operators`]).
    pub fn close_votes(&self, st: &State, voters: &[usize]) -> Vec<SignedTx> {
        voters
            .iter()
            .filter_map(|i| self.operators.get(*i))
            .map(|k| sign_tx(st, k, 0, TxBody::CloseEpoch { epoch: st.epoch() }))
            .collect()
    }

    /// Applies the next block with `txs` (no proposer).
    pub fn block(&self, st: &mut State, txs: Vec<SignedTx>) -> crate::Result<BlockOutcome> {
        let b = Block {
            height: st.height() + 1,
            proposer: None,
            txs,
        };
        apply_block(st, &b)
    }

    /// Ends the current epoch of a timed network: one block with a `CloseEpoch` vote from
    /// every operator (votes of inactive validators are refused in the block and do not
    /// count). Returns the block's outcome; its `epoch_ended` is `None` if the active voters
    /// hold less than 2/3 of the power.
    pub fn close_epoch(&self, st: &mut State) -> crate::Result<BlockOutcome> {
        let all: Vec<usize> = (0..self.operators.len()).collect();
        let txs = self.close_votes(st, &all);
        self.block(st, txs)
    }

    /// `validators` validators with stake 10 000 each, `users` users with balance 1 000 000
    /// (at least 2), users 0 and 1 providers with stake 1 000.
    pub fn new(validators: u8, users: u8) -> Self {
        let operators: Vec<_> = (0..validators).map(|i| key(10 + i)).collect();
        let consensus: Vec<_> = (0..validators).map(|i| key(40 + i)).collect();
        let users: Vec<_> = (0..users.max(2)).map(|i| key(100 + i)).collect();
        let dev = |seed: u8, kind, owner: &SigningKey| GenesisDevice {
            id: address(&key(seed)),
            kind,
            capacity: 5_000,
            region: "DE-BY".into(),
            owner: Some(address(owner)),
        };
        let genesis = Genesis {
            chain_id: CHAIN_ID.into(),
            params: Self::params(),
            accounts: operators
                .iter()
                .chain(users.iter())
                .map(|k| GenesisAccount {
                    address: address(k),
                    balance: 1_000_000,
                })
                .collect(),
            validators: operators
                .iter()
                .zip(consensus.iter())
                .map(|(o, c)| GenesisValidator {
                    operator: address(o),
                    consensus_key: address(c),
                    stake: 10_000,
                    l1_address: None,
                })
                .collect(),
            providers: users[..2]
                .iter()
                .map(|k| GenesisProvider {
                    address: address(k),
                    stake: 1_000,
                    data_root: None,
                })
                .collect(),
            devices: vec![
                dev(ENERGY_DEVICE, DeviceKind::Energy, &users[0]),
                dev(GPU_DEVICE, DeviceKind::Gpu, &users[0]),
                dev(STORAGE_DEVICE, DeviceKind::Storage, &users[0]),
                dev(ENERGY_DEVICE_2, DeviceKind::Energy, &users[1]),
            ],
        };
        Self {
            genesis,
            operators,
            consensus,
            users,
        }
    }

    /// The genesis state.
    pub fn state(&self) -> crate::Result<State> {
        State::from_genesis(&self.genesis)
    }
}

/// The readings window of `epoch` as a metered proof states it (`None` on an untimed chain).
pub fn proof_epoch(params: &Params, epoch: Epoch) -> Option<groundtruth_proofs::Epoch> {
    let (start_s, end_s) = params.epoch_window(epoch)?;
    Some(groundtruth_proofs::Epoch {
        number: epoch,
        start_s,
        end_s,
    })
}

/// A registered metered device's readings over `epoch`'s window, as a prover sees them:
/// `values` in consecutive [`INTERVAL_S`] intervals from the window's start, sequence numbers
/// from `epoch · 1 000`, register starting at 1 000, the cap the ledger derives from the
/// registered capacity ([`DeviceKind::metered_cap`]). `None` for an unknown or unmetered
/// device, or an untimed chain.
pub fn metered_series(
    st: &State,
    device: &DeviceId,
    epoch: Epoch,
    values: &[u64],
) -> Option<DeviceSeries> {
    let d = st.device(device)?;
    let window = st.params().epoch_window(epoch)?;
    Some(DeviceSeries {
        id: device.0,
        cap: d.kind.metered_cap(d.capacity, INTERVAL_S)?,
        start_register: 1_000,
        first_seq: epoch.checked_mul(1_000)?,
        first_interval_start: window.0,
        interval_len: INTERVAL_S,
        values: values.to_vec(),
    })
}

/// Groups devices' series into the audit batches of an ended `epoch`: each device goes to its
/// first drawn auditor ([`State::audit_assignment`]), devices in id order within a batch, and
/// batches in auditor order, each with its commitment
/// ([`groundtruth_proofs::metered::readings_commitment`]) as `AttestReadings` carries it.
/// `None` if the epoch is not sealed, a device is not assigned, or a series does not fit the
/// window.
pub fn audit_batches(
    st: &State,
    epoch: Epoch,
    series: &[DeviceSeries],
) -> Option<Vec<(BatchCommitment, Vec<DeviceSeries>)>> {
    let assignment = st.audit_assignment(epoch)?;
    let window = proof_epoch(st.params(), epoch)?;
    let mut groups: std::collections::BTreeMap<Address, Vec<DeviceSeries>> =
        std::collections::BTreeMap::new();
    for s in series {
        let auditor = *assignment.get(&DeviceId(s.id))?.first()?;
        groups.entry(auditor).or_default().push(s.clone());
    }
    groups
        .into_iter()
        .map(|(auditor, mut devices)| {
            devices.sort_by_key(|d| d.id);
            let commitment =
                groundtruth_proofs::metered::readings_commitment(&window, &devices).ok()?;
            let readings = devices
                .iter()
                .map(|d| u64::try_from(d.values.len()).unwrap_or(u64::MAX))
                .sum();
            Some((
                BatchCommitment {
                    auditor,
                    commitment,
                    readings,
                },
                devices,
            ))
        })
        .collect()
}
