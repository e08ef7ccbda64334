//! Deterministic keys, signed objects and a small devnet genesis for tests (this crate's, and
//! the consensus adapter's). Keys come from fixed seeds: never use them outside tests.

use ed25519_dalek::{Signer, SigningKey};
use groundtruth_device_sdk::{
    DeviceId, DeviceKey, EnergyReading, Reading, ReadingBody, SignedReading,
};

use crate::evidence::{vote_sign_bytes, SignedVote, VoteKind};
use crate::genesis::{
    Genesis, GenesisAccount, GenesisDevice, GenesisProvider, GenesisValidator, Params,
};
use crate::state::State;
use crate::tx::{possession_sign_bytes, SignedTx, Tx, TxBody};
use crate::types::{Address, Amount, DeviceKind, Height};

/// Chain id of test networks.
pub const CHAIN_ID: &str = "groundtruth-test";

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
