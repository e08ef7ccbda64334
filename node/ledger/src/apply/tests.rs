//! Unit tests of every transaction: the happy path, and each rejection changing nothing.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::attestation::BatchCommitment;
use crate::evidence::{DoubleSignEvidence, VoteKind};
use crate::evidence::{Evidence, SlashEvidence};
use crate::genesis::{Genesis, Params};
use crate::testkit::*;
use crate::tx::Tx;
use crate::types::DeviceKind;
use crate::types::*;
use ed25519_dalek::SigningKey;
use groundtruth_device_sdk::DeviceId;

fn ctx(st: &State, proposer: Option<&SigningKey>) -> BlockContext {
    BlockContext {
        height: st.height() + 1,
        proposer: proposer.map(address),
    }
}

/// Test-only helpers; methods so that `st.accept(&sign_tx(&st, ..))` borrows cleanly.
trait Expect {
    /// Applies and asserts acceptance and the invariants.
    fn accept(&mut self, tx: &SignedTx) -> TxReceipt;
    /// Asserts rejection with `want`, and that neither the state nor its root changed.
    fn reject(&mut self, tx: &SignedTx, want: TxError);
}

impl Expect for State {
    fn accept(&mut self, tx: &SignedTx) -> TxReceipt {
        let c = ctx(self, None);
        let r = apply_tx(self, tx, &c);
        assert!(r.is_ok(), "expected acceptance, got {r:?}");
        self.check_invariants().unwrap();
        r.unwrap()
    }

    /// A transaction that is not chargeable changes nothing; one that is (envelope valid, fee
    /// payable) but whose body fails pays its fee (burned here: no proposer) and consumes its
    /// nonce, and changes nothing else.
    fn reject(&mut self, tx: &SignedTx, want: TxError) {
        let mut expected = self.clone();
        let c = ctx(self, None);
        assert_eq!(check_tx(self, tx, &c), Err(want.clone()));
        match apply_tx(self, tx, &c) {
            Err(e) => assert_eq!(e, want),
            Ok(r) => {
                assert_eq!(r.failed, Some(want.clone()));
                let a = expected.accounts.entry(tx.tx.signer).or_default();
                a.balance -= tx.tx.fee;
                a.nonce += 1;
                expected.supply.burned += tx.tx.fee;
            }
        }
        assert_eq!(
            self.state_root(),
            expected.state_root(),
            "unexpected change on {}",
            want.reason()
        );
        assert_eq!(*self, expected);
    }
}

fn net() -> (TestNet, State) {
    let n = TestNet::new(4, 4);
    let s = n.state().unwrap();
    (n, s)
}

/// Applies empty blocks until the state enters `epoch`.
fn advance_to_epoch(st: &mut State, epoch: Epoch) {
    while st.epoch() < epoch {
        let b = Block {
            height: st.height() + 1,
            proposer: None,
            txs: vec![],
        };
        apply_block(st, &b).unwrap();
    }
}

#[test]
fn transfer_moves_balance_bumps_nonce_and_pays_fee_to_proposer() {
    let (n, mut st) = net();
    let (alice, bob) = (&n.users[2], &n.users[3]);
    let tx = sign_tx(
        &st,
        alice,
        7,
        TxBody::Transfer {
            to: address(bob),
            amount: 100,
        },
    );
    let c = ctx(&st, Some(&n.consensus[0]));
    let r = apply_tx(&mut st, &tx, &c).unwrap();
    assert_eq!(r.nonce, 0);
    assert_eq!(st.account(&address(alice)).balance, 1_000_000 - 107);
    assert_eq!(st.account(&address(alice)).nonce, 1);
    assert_eq!(st.account(&address(bob)).balance, 1_000_100);
    assert_eq!(st.account(&address(&n.operators[0])).balance, 1_000_007);
    st.check_invariants().unwrap();
    // Without a known proposer the fee is burned.
    let tx = sign_tx(
        &st,
        alice,
        3,
        TxBody::Transfer {
            to: address(bob),
            amount: 1,
        },
    );
    st.accept(&tx);
    assert_eq!(st.supply().burned, 3);
}

#[test]
fn transfer_rejections_change_nothing() {
    let (n, mut st) = net();
    let (alice, bob) = (&n.users[2], &n.users[3]);
    let body = |amount| TxBody::Transfer {
        to: address(bob),
        amount,
    };
    // Tampered after signing.
    let mut tx = sign_tx(&st, alice, 0, body(1));
    tx.tx.body = body(2);
    st.reject(&tx, TxError::BadSignature);
    // Signed for another chain.
    let tx = Tx {
        signer: address(alice),
        nonce: 0,
        fee: 0,
        body: body(1),
    }
    .sign("other-chain", alice);
    st.reject(&tx, TxError::BadSignature);
    // Weak signer.
    let mut tx = sign_tx(&st, alice, 0, body(1));
    tx.tx.signer = Address([0; 32]);
    st.reject(&tx, TxError::WeakKey("signer"));
    // Wrong nonce (replay).
    let tx = sign_tx(&st, alice, 0, body(1));
    st.accept(&tx);
    st.reject(
        &tx,
        TxError::BadNonce {
            expected: 1,
            got: 0,
        },
    );
    // Insufficient funds, including the fee.
    let tx = sign_tx(&st, alice, 1, body(999_999));
    st.reject(
        &tx,
        TxError::InsufficientFunds {
            needed: 999_999,
            available: 999_998,
        },
    );
    let tx = sign_tx(&st, alice, 0, body(0));
    st.reject(&tx, TxError::ZeroAmount);
    // Fee below the minimum.
    st.params.min_fee = 5;
    let tx = sign_tx(&st, alice, 4, body(1));
    st.reject(&tx, TxError::FeeTooLow { min: 5, got: 4 });
}

#[test]
fn every_transaction_type_round_trips_through_the_codec() {
    let (n, st) = net();
    let u = &n.users[0];
    let dev = key(250);
    let bodies = vec![
        TxBody::Transfer {
            to: address(u),
            amount: 5,
        },
        TxBody::CreateValidator {
            consensus_key: address(&dev),
            stake: 9,
        },
        TxBody::Bond { amount: 1 },
        TxBody::Unbond { amount: 2 },
        TxBody::Unjail,
        TxBody::RegisterProvider {
            stake: 3,
            data_root: [7; 32],
        },
        TxBody::ProviderBond { amount: 4 },
        TxBody::ProviderUnbond { amount: 5 },
        TxBody::RegisterDevice {
            device: device_id(&dev),
            kind: DeviceKind::Gpu,
            capacity: 8,
            region: "FR".into(),
            possession: [9; 64],
        },
        TxBody::RotateDeviceKey {
            old: device_id(&dev),
            new: device_id(u),
            possession: [1; 64],
            from_seq: 77,
        },
        TxBody::RetireDevice {
            device: device_id(&dev),
        },
        TxBody::SubmitAuditProof {
            epoch: 3,
            batch: address(u),
            proof: vec![1, 2, 3, 4, 5],
        },
        TxBody::SubmitAuditProof {
            epoch: 0,
            batch: address(&dev),
            proof: vec![],
        },
        // Real batch proofs are ~100 KB at 1,000 readings: past the 64 KiB of ordinary fields.
        TxBody::SubmitAuditProof {
            epoch: 1,
            batch: address(&dev),
            proof: vec![7; 300 * 1024],
        },
        TxBody::CloseEpoch { epoch: 9 },
        TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
            a: energy_reading(200, 1, 5),
            b: energy_reading(200, 1, 6),
        }),
        TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
            validator_key: address(&dev),
            vote_a: vote(&dev, VoteKind::Prevote, 4, 0, [1; 32]),
            vote_b: vote(&dev, VoteKind::Prevote, 4, 0, [2; 32]),
        })),
        TxBody::AttestReadings {
            epoch: 6,
            batches: vec![
                BatchCommitment {
                    auditor: address(u),
                    commitment: [5; 32],
                    readings: 1_234,
                },
                BatchCommitment {
                    auditor: address(&dev),
                    commitment: [6; 32],
                    readings: 1,
                },
            ],
        },
        TxBody::AttestReadings {
            epoch: 7,
            batches: vec![],
        },
        TxBody::SetL1Key {
            address: crate::l1key::L1Address([3; 20]),
            signature: [4; 65],
        },
        TxBody::CommitStorage {
            device: device_id(&dev),
            root: [8; 32],
            depth: 30,
            num_chunks: 1 << 29,
        },
        TxBody::SubmitStorageProof {
            epoch: 5,
            device: device_id(&dev),
            proof: vec![9; 20_000],
        },
    ];
    let mut txs = Vec::new();
    for body in bodies {
        let tx = sign_tx(&st, u, 1, body);
        let bytes = tx.encode();
        assert_eq!(SignedTx::decode(&bytes).unwrap(), tx);
        // Truncations and trailing bytes are rejected.
        assert!(SignedTx::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(SignedTx::decode(&longer).is_err());
        txs.push(tx);
    }
    let block = Block {
        height: 1,
        proposer: Some(address(u)),
        txs,
    };
    assert_eq!(Block::decode(&block.encode()).unwrap(), block);
    assert_eq!(
        SignedTx::decode(&[0xff; 3]).unwrap_err().reason(),
        "malformed"
    );
}

#[test]
fn create_validator_bond_unbond_and_maturity() {
    let (n, mut st) = net();
    let (alice, ck) = (&n.users[2], key(77));
    let tx = sign_tx(
        &st,
        alice,
        0,
        TxBody::CreateValidator {
            consensus_key: address(&ck),
            stake: 2_000,
        },
    );
    st.accept(&tx);
    assert_eq!(st.validator(&address(alice)).unwrap().stake, 2_000);
    // Not in the set until the epoch boundary.
    assert!(!st.validator_set().iter().any(|(k, _)| *k == address(&ck)));
    advance_to_epoch(&mut st, 1);
    assert!(st.validator_set().contains(&(address(&ck), 2_000)));

    st.accept(&sign_tx(&st, alice, 0, TxBody::Bond { amount: 500 }));
    assert_eq!(st.validator(&address(alice)).unwrap().stake, 2_500);
    st.accept(&sign_tx(&st, alice, 0, TxBody::Unbond { amount: 1_500 }));
    assert_eq!(st.validator(&address(alice)).unwrap().stake, 1_000);
    let balance = st.account(&address(alice)).balance;
    // Matures at the end of epoch 1 + unbonding_epochs (1) = 2.
    advance_to_epoch(&mut st, 2);
    assert_eq!(st.account(&address(alice)).balance, balance);
    advance_to_epoch(&mut st, 3);
    assert_eq!(st.account(&address(alice)).balance, balance + 1_500);
    assert_eq!(st.unbonding_entries().count(), 0);
    assert!(st.validator_set().contains(&(address(&ck), 1_000)));
    st.check_invariants().unwrap();
}

#[test]
fn validator_rejections_change_nothing() {
    let (n, mut st) = net();
    let (op, alice) = (&n.operators[0], &n.users[2]);
    let create = |ck: Address, stake| TxBody::CreateValidator {
        consensus_key: ck,
        stake,
    };
    let tx = sign_tx(&st, op, 0, create(address(&key(77)), 2_000));
    st.reject(&tx, TxError::ValidatorExists);
    let tx = sign_tx(&st, alice, 0, create(address(&n.consensus[1]), 2_000));
    st.reject(&tx, TxError::ConsensusKeyInUse);
    let tx = sign_tx(&st, alice, 0, create(Address([0; 32]), 2_000));
    st.reject(&tx, TxError::WeakKey("consensus key"));
    let tx = sign_tx(&st, alice, 0, create(address(&key(77)), 999));
    st.reject(
        &tx,
        TxError::StakeBelowMinimum {
            min: 1_000,
            got: 999,
        },
    );
    let tx = sign_tx(&st, alice, 0, create(address(&key(77)), 2_000_000));
    st.reject(
        &tx,
        TxError::InsufficientFunds {
            needed: 2_000_000,
            available: 1_000_000,
        },
    );
    let tx = sign_tx(&st, alice, 0, TxBody::Bond { amount: 5 });
    st.reject(&tx, TxError::UnknownValidator);
    let tx = sign_tx(&st, op, 0, TxBody::Bond { amount: 0 });
    st.reject(&tx, TxError::ZeroAmount);
    let tx = sign_tx(&st, op, 0, TxBody::Unbond { amount: 10_001 });
    st.reject(
        &tx,
        TxError::InsufficientStake {
            bonded: 10_000,
            requested: 10_001,
        },
    );
    let tx = sign_tx(&st, op, 0, TxBody::Unbond { amount: 9_500 });
    st.reject(
        &tx,
        TxError::StakeBelowMinimum {
            min: 1_000,
            got: 500,
        },
    );
    let tx = sign_tx(&st, op, 0, TxBody::Unjail);
    st.reject(&tx, TxError::NotJailed);
    // Unbonding everything is allowed; the validator leaves the set at the boundary.
    st.accept(&sign_tx(&st, op, 0, TxBody::Unbond { amount: 10_000 }));
    advance_to_epoch(&mut st, 1);
    assert_eq!(st.validator_set().len(), 3);
}

fn double_sign(n: &TestNet, i: usize, height: Height) -> TxBody {
    let k = &n.consensus[i];
    TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
        validator_key: address(k),
        vote_a: vote(k, VoteKind::Precommit, height, 0, [1; 32]),
        vote_b: vote(k, VoteKind::Precommit, height, 0, [2; 32]),
    }))
}

#[test]
fn double_sign_slashes_jails_then_removes() {
    let (n, mut st) = net();
    let reporter = &n.users[2];
    let victim = address(&n.operators[1]);
    let r = st.accept(&sign_tx(&st, reporter, 0, double_sign(&n, 1, 3)));
    assert!(r.events.contains(&Event::Jailed {
        operator: victim,
        until_epoch: 1
    }));
    let v = st.validator(&victim).unwrap();
    assert_eq!(v.stake, 9_500); // 5 % of 10 000 burned
    assert_eq!(st.supply().burned, 500);
    assert_eq!(st.validator_set().len(), 3, "jailed: zero power at once");
    let slash = &st.slashes()[0];
    assert_eq!(slash.reason, SlashReason::DoubleSign);
    assert_eq!(slash.reporter, address(reporter));
    assert!(slash.jailed && !slash.removed);
    assert!(slash.explain().contains("double_sign"));

    // The same height again is a duplicate.
    let tx = sign_tx(&st, reporter, 0, double_sign(&n, 1, 3));
    st.reject(&tx, TxError::DuplicateEvidence);
    // Jailed until epoch 1.
    let tx = sign_tx(&st, &n.operators[1], 0, TxBody::Unjail);
    st.reject(&tx, TxError::StillJailed { until_epoch: 1 });
    advance_to_epoch(&mut st, 1);
    assert_eq!(
        st.validator_set().len(),
        3,
        "jailed stays out at the boundary"
    );
    st.accept(&sign_tx(&st, &n.operators[1], 0, TxBody::Unjail));
    advance_to_epoch(&mut st, 2);
    assert_eq!(st.validator_set().len(), 4);

    // Second jailing reaches the threshold (2): removed, stake unbonding.
    let r = st.accept(&sign_tx(&st, reporter, 0, double_sign(&n, 1, 9)));
    assert!(r
        .events
        .contains(&Event::ValidatorRemoved { operator: victim }));
    let v = st.validator(&victim).unwrap();
    assert_eq!((v.status, v.stake), (ValidatorStatus::Removed, 0));
    assert_eq!(st.unbonding_entries().count(), 1);
    let tx = sign_tx(&st, &n.operators[1], 0, TxBody::Bond { amount: 5 });
    st.reject(&tx, TxError::ValidatorRemoved);
    let tx = sign_tx(&st, &n.operators[1], 0, TxBody::Unjail);
    st.reject(&tx, TxError::ValidatorRemoved);
    // Evidence against a removed validator still slashes its unbonding stake.
    let before = st
        .unbonding_entries()
        .next()
        .map(|(_, u)| u.amount)
        .unwrap();
    st.accept(&sign_tx(&st, reporter, 0, double_sign(&n, 1, 10)));
    let after = st
        .unbonding_entries()
        .next()
        .map(|(_, u)| u.amount)
        .unwrap();
    assert!(after < before);
}

#[test]
fn double_sign_evidence_rejections() {
    let (n, mut st) = net();
    let reporter = &n.users[2];
    let k = &n.consensus[0];
    let ev = |a, b| {
        TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
            validator_key: address(k),
            vote_a: a,
            vote_b: b,
        }))
    };
    let v = |h, r, val| vote(k, VoteKind::Prevote, h, r, val);
    // Forged: second vote signed by another key.
    let forged = vote(&key(99), VoteKind::Prevote, 5, 0, [2; 32]);
    let tx = sign_tx(&st, reporter, 0, ev(v(5, 0, [1; 32]), forged));
    st.reject(&tx, TxError::EvidenceSignature);
    // Tampered value after signing.
    let mut b = v(5, 0, [2; 32]);
    b.value = Some([3; 32]);
    let tx = sign_tx(&st, reporter, 0, ev(v(5, 0, [1; 32]), b));
    st.reject(&tx, TxError::EvidenceSignature);
    let tx = sign_tx(&st, reporter, 0, ev(v(5, 0, [1; 32]), v(5, 0, [1; 32])));
    st.reject(
        &tx,
        TxError::InvalidEvidence("votes are for the same value"),
    );
    let tx = sign_tx(&st, reporter, 0, ev(v(5, 0, [1; 32]), v(5, 1, [2; 32])));
    st.reject(
        &tx,
        TxError::InvalidEvidence("votes differ in kind, height or round"),
    );
    // A well-formed double sign by a key the ledger does not know.
    let stranger = key(99);
    let tx = sign_tx(
        &st,
        reporter,
        0,
        TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
            validator_key: address(&stranger),
            vote_a: vote(&stranger, VoteKind::Prevote, 5, 0, [1; 32]),
            vote_b: vote(&stranger, VoteKind::Prevote, 5, 0, [2; 32]),
        })),
    );
    st.reject(&tx, TxError::UnknownOffender);
}

fn register_device_body(st: &State, owner: &SigningKey, dev: &SigningKey) -> TxBody {
    TxBody::RegisterDevice {
        device: device_id(dev),
        kind: DeviceKind::Energy,
        capacity: 4_000,
        region: "NL".into(),
        possession: possession(st.chain_id(), &address(owner), dev),
    }
}

#[test]
fn provider_register_bond_unbond() {
    let (n, mut st) = net();
    let (alice, p0) = (&n.users[2], &n.users[0]);
    let reg = |stake| TxBody::RegisterProvider {
        stake,
        data_root: [5; 32],
    };
    st.reject(
        &sign_tx(&st, alice, 0, reg(99)),
        TxError::StakeBelowMinimum { min: 100, got: 99 },
    );
    st.reject(&sign_tx(&st, p0, 0, reg(500)), TxError::ProviderExists);
    st.reject(
        &sign_tx(&st, alice, 0, TxBody::ProviderBond { amount: 5 }),
        TxError::UnknownProvider,
    );
    st.accept(&sign_tx(&st, alice, 0, reg(500)));
    assert_eq!(st.provider(&address(alice)).unwrap().data_root, [5; 32]);
    st.accept(&sign_tx(&st, alice, 0, TxBody::ProviderBond { amount: 50 }));
    assert_eq!(st.provider(&address(alice)).unwrap().stake, 550);
    // With an active device it cannot drop below the minimum.
    let dev = key(180);
    st.accept(&sign_tx(
        &st,
        alice,
        0,
        register_device_body(&st, alice, &dev),
    ));
    st.reject(
        &sign_tx(&st, alice, 0, TxBody::ProviderUnbond { amount: 451 }),
        TxError::ProviderHasDevices,
    );
    st.accept(&sign_tx(
        &st,
        alice,
        0,
        TxBody::ProviderUnbond { amount: 450 },
    ));
    // After retiring the device it may unbond everything.
    st.accept(&sign_tx(
        &st,
        alice,
        0,
        TxBody::RetireDevice {
            device: device_id(&dev),
        },
    ));
    st.accept(&sign_tx(
        &st,
        alice,
        0,
        TxBody::ProviderUnbond { amount: 100 },
    ));
    assert_eq!(st.provider(&address(alice)).unwrap().stake, 0);
}

#[test]
fn device_registration_and_rejections() {
    let (n, mut st) = net();
    let (p0, alice) = (&n.users[0], &n.users[2]);
    let dev = key(181);
    st.accept(&sign_tx(&st, p0, 0, register_device_body(&st, p0, &dev)));
    let d = st.device(&device_id(&dev)).unwrap();
    assert_eq!(d.owner, Some(address(p0)));
    assert_eq!(st.devices_by_owner(&address(p0)).len(), 4);
    // Already used.
    st.reject(
        &sign_tx(&st, p0, 0, register_device_body(&st, p0, &dev)),
        TxError::DeviceKeyUsed,
    );
    // Not a provider.
    let dev2 = key(182);
    st.reject(
        &sign_tx(&st, alice, 0, register_device_body(&st, alice, &dev2)),
        TxError::UnknownProvider,
    );
    // Possession proved for another owner.
    st.reject(
        &sign_tx(&st, p0, 0, register_device_body(&st, alice, &dev2)),
        TxError::BadPossession,
    );
    // Weak key.
    let mut body = register_device_body(&st, p0, &dev2);
    if let TxBody::RegisterDevice { device, .. } = &mut body {
        *device = DeviceId([0; 32]);
    }
    st.reject(&sign_tx(&st, p0, 0, body), TxError::WeakKey("device"));
    let mut body = register_device_body(&st, p0, &dev2);
    if let TxBody::RegisterDevice { capacity, .. } = &mut body {
        *capacity = 0;
    }
    st.reject(&sign_tx(&st, p0, 0, body), TxError::ZeroCapacity);
    for bad in ["x".repeat(65), "a\nb".to_string()] {
        let mut body = register_device_body(&st, p0, &dev2);
        if let TxBody::RegisterDevice { region, .. } = &mut body {
            *region = bad;
        }
        st.reject(&sign_tx(&st, p0, 0, body), TxError::InvalidText("region"));
    }
}

#[test]
fn device_rotation_and_retirement() {
    let (n, mut st) = net();
    let (p0, p1) = (&n.users[0], &n.users[1]);
    let old = key(ENERGY_DEVICE);
    let new = key(183);
    let rotate = |st: &State, owner: &SigningKey, old: &SigningKey, new: &SigningKey| {
        TxBody::RotateDeviceKey {
            old: device_id(old),
            new: device_id(new),
            possession: possession(st.chain_id(), &address(owner), new),
            from_seq: 10,
        }
    };
    st.reject(
        &sign_tx(&st, p1, 0, rotate(&st, p1, &old, &new)),
        TxError::NotDeviceOwner,
    );
    st.reject(
        &sign_tx(&st, p0, 0, rotate(&st, p1, &old, &new)),
        TxError::BadPossession,
    );
    st.reject(
        &sign_tx(&st, p0, 0, rotate(&st, p0, &old, &key(GPU_DEVICE))),
        TxError::DeviceKeyUsed,
    );
    st.accept(&sign_tx(&st, p0, 0, rotate(&st, p0, &old, &new)));
    assert!(st.device(&device_id(&old)).is_none());
    let d = st.device(&device_id(&new)).unwrap();
    assert_eq!(d.previous_keys, vec![device_id(&old)]);
    assert_eq!(
        st.device_by_any_key(&device_id(&old)).unwrap().id,
        device_id(&new)
    );
    // The old key is retired for good.
    st.reject(
        &sign_tx(&st, p0, 0, register_device_body(&st, p0, &old)),
        TxError::DeviceKeyUsed,
    );
    st.reject(
        &sign_tx(&st, p0, 0, rotate(&st, p0, &old, &key(184))),
        TxError::UnknownDevice,
    );
    let retire = |d: &SigningKey| TxBody::RetireDevice {
        device: device_id(d),
    };
    st.accept(&sign_tx(&st, p0, 0, retire(&new)));
    assert_eq!(
        st.device(&device_id(&new)).unwrap().status,
        DeviceStatus::Retired
    );
    st.reject(&sign_tx(&st, p0, 0, retire(&new)), TxError::DeviceRetired);
    st.reject(
        &sign_tx(&st, p0, 0, rotate(&st, p0, &new, &key(184))),
        TxError::DeviceRetired,
    );
}

#[test]
fn device_equivocation_slashes_owner_once() {
    let (n, mut st) = net();
    let reporter = &n.users[3];
    let p0 = address(&n.users[0]);
    let ev = |a, b| TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b });
    let a = energy_reading(ENERGY_DEVICE, 5, 10);
    let b = energy_reading(ENERGY_DEVICE, 5, 11);
    // Identical readings are not equivocation.
    st.reject(
        &sign_tx(&st, reporter, 0, ev(a, a)),
        TxError::InvalidEvidence("readings are identical"),
    );
    // Forged signature on the second reading.
    let mut forged = b;
    forged.signature[0] ^= 1;
    st.reject(
        &sign_tx(&st, reporter, 0, ev(a, forged)),
        TxError::EvidenceSignature,
    );
    st.reject(
        &sign_tx(
            &st,
            reporter,
            0,
            ev(a, energy_reading(ENERGY_DEVICE, 6, 11)),
        ),
        TxError::InvalidEvidence("readings with different sequence numbers"),
    );
    st.reject(
        &sign_tx(&st, reporter, 0, ev(a, energy_reading(GPU_DEVICE, 5, 11))),
        TxError::InvalidEvidence("readings from different devices"),
    );
    st.reject(
        &sign_tx(
            &st,
            reporter,
            0,
            ev(energy_reading(9, 5, 10), energy_reading(9, 5, 11)),
        ),
        TxError::UnknownOffender,
    );
    let r = st.accept(&sign_tx(&st, reporter, 0, ev(a, b)));
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::Slashed { amount: 100, .. })));
    assert_eq!(st.provider(&p0).unwrap().stake, 900);
    assert_eq!(st.slashes_of(&Offender::Provider(p0)).len(), 1);
    let stored = &st.slashes()[0].evidence;
    assert_eq!(
        stored,
        &SlashEvidence::Submitted(Evidence::DeviceEquivocation { a, b })
    );
    st.reject(
        &sign_tx(&st, reporter, 0, ev(b, a)),
        TxError::DuplicateEvidence,
    );
}

#[test]
fn apply_block_checks_height_and_reports_results() {
    let (n, mut st) = net();
    let alice = &n.users[2];
    let t1 = sign_tx(
        &st,
        alice,
        0,
        TxBody::Transfer {
            to: address(&n.users[3]),
            amount: 1,
        },
    );
    let bad = t1.clone(); // replays nonce 0
    let block = Block {
        height: 2,
        proposer: None,
        txs: vec![t1.clone()],
    };
    assert_eq!(
        apply_block(&mut st, &block).unwrap_err(),
        LedgerError::BlockHeight {
            expected_previous: 0,
            got: 2
        }
    );
    let block = Block {
        height: 1,
        proposer: Some(address(&n.consensus[0])),
        txs: vec![t1, bad],
    };
    let mut replica = n.state().unwrap();
    let out = apply_block(&mut st, &block).unwrap();
    assert!(out.results[0].is_ok());
    assert_eq!(out.results[1].as_ref().unwrap_err().reason(), "bad_nonce");
    assert_eq!(out.state_root, st.state_root());
    assert_eq!(
        apply_block(&mut replica, &block).unwrap().state_root,
        out.state_root
    );
    assert_eq!(st.height(), 1);
    assert_eq!(out.epoch_ended, None);

    // The same through raw bytes, with one undecodable transaction in the middle.
    let mut raw_replica = n.state().unwrap();
    let raw = vec![block.txs[0].encode(), vec![1, 2, 3], block.txs[1].encode()];
    let out_raw = apply_raw_block(&mut raw_replica, 1, block.proposer, &raw).unwrap();
    assert_eq!(out_raw.results.len(), 3);
    assert_eq!(
        out_raw.results[1].as_ref().unwrap_err().reason(),
        "malformed"
    );
    assert_eq!(out_raw.state_root, out.state_root);
}

#[test]
fn genesis_parses_and_rejects_bad_input() {
    let n = TestNet::new(2, 2);
    let text = toml::to_string(&n.genesis).unwrap();
    let g = Genesis::from_toml(&text).unwrap();
    assert_eq!(g, n.genesis);
    let st = State::from_genesis(&g).unwrap();
    assert_eq!(st.validator_set().len(), 2);
    assert_eq!(st.total_voting_power(), 20_000);
    assert_eq!(u128::from(st.supply().genesis), st.total_held());

    let mut g = n.genesis.clone();
    g.devices.push(g.devices[0].clone());
    assert!(State::from_genesis(&g).is_err());
    let mut g = n.genesis.clone();
    g.devices[0].id = Address([0; 32]);
    assert!(State::from_genesis(&g).is_err());
    let mut g = n.genesis.clone();
    g.params.slash_double_sign_bp = 10_001;
    assert!(State::from_genesis(&g).is_err());
    let mut g = n.genesis.clone();
    g.accounts[0].balance = u64::MAX;
    assert!(State::from_genesis(&g).is_err());
    assert!(Genesis::from_toml("chain_id = 3").is_err());
}

#[test]
fn reward_schedule_halves() {
    let p = Params {
        reward_per_epoch: 1_000,
        reward_halving_epochs: 10,
        ..Params::default()
    };
    assert_eq!(p.reward_for_epoch(9), 1_000);
    assert_eq!(p.reward_for_epoch(10), 500);
    assert_eq!(p.reward_for_epoch(25), 250);
    assert_eq!(p.reward_for_epoch(u64::MAX), 0);
}

#[test]
fn every_reason_code_is_snake_case() {
    let errs = [
        TxError::Malformed("x"),
        TxError::BadNonce {
            expected: 0,
            got: 1,
        },
        TxError::EvidenceSignature,
        TxError::StillJailed { until_epoch: 1 },
        TxError::AttestationEpoch { current: 1, got: 1 },
        TxError::NotInCommittee,
        TxError::DuplicateAttestation,
        TxError::AuditMismatch("x"),
        TxError::UntimedEpochs,
        TxError::UnknownBatch,
        TxError::NotAssigned,
        TxError::ProofTooLarge { max: 1, got: 2 },
        TxError::CloseEpoch { current: 1, got: 2 },
        TxError::DuplicateCloseVote,
        TxError::DuplicateAudit,
    ];
    for e in errs {
        assert!(e
            .reason()
            .chars()
            .all(|c| c.is_ascii_lowercase() || c == '_'));
    }
}

#[test]
fn delegation_adds_power_is_slashed_and_unbonds() {
    let (n, mut st) = net();
    let (alice, op) = (&n.users[2], address(&n.operators[0]));
    let delegate = |amount| TxBody::Delegate {
        validator: op,
        amount,
    };
    st.reject(
        &sign_tx(
            &st,
            alice,
            0,
            TxBody::Delegate {
                validator: address(alice),
                amount: 5,
            },
        ),
        TxError::UnknownValidator,
    );
    st.reject(&sign_tx(&st, alice, 0, delegate(0)), TxError::ZeroAmount);
    st.accept(&sign_tx(&st, alice, 0, delegate(4_000)));
    st.accept(&sign_tx(&st, alice, 0, delegate(1_000)));
    assert_eq!(st.delegation(&op, &address(alice)), 5_000);
    assert_eq!(st.delegated_to(&op), 5_000);
    advance_to_epoch(&mut st, 1);
    assert!(st
        .validator_set()
        .contains(&(address(&n.consensus[0]), 15_000)));

    // Undelegate part: it unbonds and is still slashable.
    let undelegate = |amount| TxBody::Undelegate {
        validator: op,
        amount,
    };
    st.reject(
        &sign_tx(&st, alice, 0, undelegate(5_001)),
        TxError::InsufficientStake {
            bonded: 5_000,
            requested: 5_001,
        },
    );
    st.accept(&sign_tx(&st, alice, 0, undelegate(1_000)));
    // Double sign: 5 % of self stake (500), of the delegation (200), of the unbonding (50).
    let r = st.accept(&sign_tx(&st, &n.users[3], 0, double_sign(&n, 0, 7)));
    assert!(r
        .events
        .iter()
        .any(|e| matches!(e, Event::Slashed { amount: 750, .. })));
    assert_eq!(st.delegation(&op, &address(alice)), 3_800);
    assert_eq!(st.unbonding_entries().next().unwrap().1.amount, 950);
    let balance = st.account(&address(alice)).balance;
    advance_to_epoch(&mut st, 3);
    assert_eq!(st.account(&address(alice)).balance, balance + 950);
    st.accept(&sign_tx(&st, alice, 0, undelegate(3_800)));
    assert!(st.delegations_to(&op).is_empty());
}

#[test]
fn one_equivocation_incident_slashes_once_and_suspends_the_device() {
    let (n, mut st) = net();
    let reporter = &n.users[3];
    let p0 = address(&n.users[0]);
    let ev = |seq| {
        TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
            a: energy_reading(ENERGY_DEVICE, seq, 10),
            b: energy_reading(ENERGY_DEVICE, seq, 11),
        })
    };
    let r = st.accept(&sign_tx(&st, reporter, 0, ev(5)));
    let id = device_id(&key(ENERGY_DEVICE));
    assert!(r.events.contains(&Event::DeviceSuspended { device: id }));
    assert_eq!(st.device(&id).unwrap().status, DeviceStatus::Suspended);
    // The same incident at other sequence numbers: no second slash.
    for seq in [6, 7, 4] {
        st.reject(
            &sign_tx(&st, reporter, 0, ev(seq)),
            TxError::DuplicateEvidence,
        );
    }
    assert_eq!(st.slashes_of(&Offender::Provider(p0)).len(), 1);
    assert_eq!(st.provider(&p0).unwrap().stake, 900);
    // A suspended device cannot be rotated back into service.
    let new = key(183);
    st.reject(
        &sign_tx(
            &st,
            &n.users[0],
            0,
            TxBody::RotateDeviceKey {
                old: id,
                new: device_id(&new),
                possession: possession(st.chain_id(), &p0, &new),
                from_seq: 100,
            },
        ),
        TxError::DeviceSuspended,
    );
}

#[test]
fn evidence_signed_by_a_rotated_away_key_after_the_rotation_is_refused() {
    let (n, mut st) = net();
    let (owner, reporter) = (&n.users[0], &n.users[3]);
    let new = key(183);
    st.accept(&sign_tx(
        &st,
        owner,
        0,
        TxBody::RotateDeviceKey {
            old: device_id(&key(ENERGY_DEVICE)),
            new: device_id(&new),
            possession: possession(st.chain_id(), &address(owner), &new),
            from_seq: 10,
        },
    ));
    let ev = |seq| {
        TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
            a: energy_reading(ENERGY_DEVICE, seq, 10),
            b: energy_reading(ENERGY_DEVICE, seq, 11),
        })
    };
    // The old key no longer speaks for the device from sequence 10 on (it may have leaked).
    st.reject(
        &sign_tx(&st, reporter, 0, ev(10)),
        TxError::RotatedKey { seq: 10 },
    );
    st.reject(
        &sign_tx(&st, reporter, 0, ev(500)),
        TxError::RotatedKey { seq: 500 },
    );
    // Before the rotation it did: that equivocation is the device's.
    st.accept(&sign_tx(&st, reporter, 0, ev(9)));
    assert_eq!(st.slashes().len(), 1);
}

#[test]
fn evidence_older_than_the_max_age_is_refused() {
    let (n, mut st) = net();
    let reporter = &n.users[3];
    // TestNet: 4-block epochs, evidence_max_age_epochs 1. A double vote at height 2 is in
    // epoch 0: admissible in epochs 0 and 1, too old from epoch 2.
    advance_to_epoch(&mut st, 1);
    let tx = sign_tx(&st, reporter, 0, double_sign(&n, 0, 2));
    let ctx = ctx(&st, None);
    assert_eq!(check_tx(&st, &tx, &ctx), Ok(()));
    advance_to_epoch(&mut st, 2);
    st.reject(
        &sign_tx(&st, reporter, 0, double_sign(&n, 0, 2)),
        TxError::EvidenceTooOld {
            evidence_epoch: 0,
            current: 2,
            max_age: 1,
        },
    );
    // A double vote of the current epoch is still accepted.
    let h = st.height() + 1;
    st.accept(&sign_tx(&st, reporter, 0, double_sign(&n, 0, h)));
}

#[test]
fn genesis_refuses_an_unbonding_period_shorter_than_the_evidence_max_age() {
    let mut g = TestNet::new(4, 4).genesis;
    g.params.unbonding_epochs = 1;
    g.params.evidence_max_age_epochs = 2;
    assert!(matches!(
        State::from_genesis(&g),
        Err(LedgerError::Genesis(m)) if m.contains("evidence_max_age_epochs")
    ));
    g.params.unbonding_epochs = 2;
    assert!(State::from_genesis(&g).is_ok());
}

#[test]
fn the_same_reading_with_another_signature_is_a_duplicate_not_equivocation() {
    let (n, mut st) = net();
    let a = energy_reading(ENERGY_DEVICE, 5, 10);
    let mut b = a;
    b.signature[10] ^= 0x40;
    assert_ne!(a.signature, b.signature);
    st.reject(
        &sign_tx(
            &st,
            &n.users[3],
            0,
            TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b }),
        ),
        TxError::InvalidEvidence("readings are identical"),
    );
    assert!(st.slashes().is_empty());
}

mod attestations;
mod audits;
mod l1keys;
mod provider_audit;
mod storage;
