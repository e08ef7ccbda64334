//! Epoch seals, audit sampling from the ledger, and readings attestations.

use super::*;
use crate::attestation::{check_batches, readings_root, ReadingsAttestation, MAX_BATCHES};

/// Two views of an epoch's readings: the commitment byte of validator 0's only batch.
const A: u8 = 0xaa;
const B: u8 = 0xbb;

/// One batch of 10 readings for validator 0, commitment `[view; 32]`.
fn view(n: &TestNet, view: u8) -> Vec<BatchCommitment> {
    vec![BatchCommitment {
        auditor: op(n, 0),
        commitment: [view; 32],
        readings: 10,
    }]
}

/// The readings root of `view` for `epoch`.
fn root(n: &TestNet, epoch: Epoch, v: u8) -> [u8; 32] {
    readings_root(epoch, &view(n, v))
}

fn attest(st: &State, n: &TestNet, i: usize, epoch: Epoch, v: u8) -> SignedTx {
    sign_tx(
        st,
        &n.operators[i],
        0,
        TxBody::AttestReadings {
            epoch,
            batches: view(n, v),
        },
    )
}

fn op(n: &TestNet, i: usize) -> Address {
    address(&n.operators[i])
}

fn flagged_ops(st: &State, epoch: Epoch) -> Vec<Address> {
    st.flagged(epoch).iter().map(|a| a.validator).collect()
}

#[test]
fn an_ended_epoch_is_sealed_with_a_beacon_and_its_committee() {
    let (n, mut st) = net();
    assert!(st.epoch_seal(0).is_none());
    assert!(st.audit_assignment(0).is_none());
    advance_to_epoch(&mut st, 2);
    let s0 = st.epoch_seal(0).unwrap().clone();
    let s1 = st.epoch_seal(1).unwrap().clone();
    assert_eq!((s0.epoch, s0.closed_at_height), (0, 4));
    assert_eq!((s1.epoch, s1.closed_at_height), (1, 8));
    assert_ne!(s0.beacon, s1.beacon);
    let mut committee: Vec<_> = (0..4).map(|i| (op(&n, i), 10_000)).collect();
    committee.sort();
    assert_eq!(s0.committee, committee);
    assert_eq!(s0.total_power(), 40_000);

    // Another node applying the same blocks seals the same beacon and assigns the same way.
    let (_, mut other) = net();
    advance_to_epoch(&mut other, 2);
    assert_eq!(other.epoch_seal(0), Some(&s0));
    let a = st.audit_assignment(0).unwrap();
    assert_eq!(other.audit_assignment(0).unwrap(), a);
    // Every active device gets `audit_redundancy` (1) auditor from the committee.
    assert_eq!(a.len(), st.devices().count());
    for auditors in a.values() {
        assert_eq!(auditors.len(), 1);
        assert!(committee.iter().any(|(o, _)| Some(o) == auditors.first()));
    }

    // A different closing block (one transfer) gives another beacon.
    let (n2, mut third) = net();
    while third.height() < 3 {
        let b = Block {
            height: third.height() + 1,
            proposer: None,
            txs: vec![],
        };
        apply_block(&mut third, &b).unwrap();
    }
    let tx = sign_tx(
        &third,
        &n2.users[0],
        0,
        TxBody::Transfer {
            to: address(&n2.users[1]),
            amount: 1,
        },
    );
    let b = Block {
        height: 4,
        proposer: None,
        txs: vec![tx],
    };
    let out = apply_block(&mut third, &b).unwrap();
    assert!(out
        .end_block_events
        .iter()
        .any(|e| matches!(e, Event::EpochSealed { epoch: 0, .. })));
    assert_ne!(third.epoch_seal(0).unwrap().beacon, s0.beacon);
}

#[test]
fn two_thirds_of_equal_validators_fix_the_root_and_a_late_dissenter_is_flagged() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    st.accept(&attest(&st, &n, 0, 0, A));
    st.accept(&attest(&st, &n, 1, 0, A));
    assert!(st.fixed_readings_root(0).is_none(), "2 of 4 is not 2/3");
    let (ra, rb) = (root(&n, 0, A), root(&n, 0, B));
    assert_eq!(st.attestation_tally(0).get(&(ra, 10)), Some(&20_000));
    let r = st.accept(&attest(&st, &n, 2, 0, A));
    assert!(r.events.contains(&Event::ReadingsFixed {
        epoch: 0,
        root: ra,
        readings: 10
    }));
    let fixed = st.fixed_readings_root(0).unwrap().clone();
    assert_eq!((fixed.root, fixed.readings), (ra, 10));
    assert_eq!(fixed.fixed_at_height, st.height() + 1);
    // The agreed batches are stored, none audited yet.
    assert_eq!(fixed.batches, vec![(view(&n, A)[0], None)]);
    assert!(!fixed.fully_audited());
    // An untimed chain has no audits: the epoch is not committed.
    assert!(st.epoch_commitment(0).is_none());
    assert!(st.flagged(0).is_empty());

    // The fourth sees another root: flagged, the fixed root stays.
    let r = st.accept(&attest(&st, &n, 3, 0, B));
    assert!(r.events.contains(&Event::AttestationFlagged {
        epoch: 0,
        validator: op(&n, 3)
    }));
    assert_eq!(st.fixed_readings_root(0), Some(&fixed));
    assert_eq!(flagged_ops(&st, 0), vec![op(&n, 3)]);
    assert_eq!(st.flagged(0)[0].readings_root, rb);
    assert_eq!(st.attestations(0).len(), 4);

    // Once per epoch and validator, whether it agreed or not.
    for i in [0, 3] {
        let tx = attest(&st, &n, i, 0, A);
        st.reject(&tx, TxError::DuplicateAttestation);
    }
}

#[test]
fn an_early_dissenter_is_flagged_when_the_root_is_fixed() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    st.accept(&attest(&st, &n, 3, 0, B));
    st.accept(&attest(&st, &n, 0, 0, A));
    st.accept(&attest(&st, &n, 1, 0, A));
    assert!(st.fixed_readings_root(0).is_none());
    assert!(st.flagged(0).is_empty(), "nothing is flagged before a fix");
    st.accept(&attest(&st, &n, 2, 0, A));
    assert_eq!(st.fixed_readings_root(0).unwrap().root, root(&n, 0, A));
    assert_eq!(flagged_ops(&st, 0), vec![op(&n, 3)]);
    // The same commitment with another reading count, or under another auditor, is another
    // view: the root covers every field of every batch.
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    let mut count = view(&n, A);
    count[0].readings = 11;
    let mut auditor = view(&n, A);
    auditor[0].auditor = op(&n, 1);
    for batches in [&count, &auditor] {
        assert_ne!(readings_root(0, batches), root(&n, 0, A));
    }
    st.accept(&sign_tx(
        &st,
        &n.operators[0],
        0,
        TxBody::AttestReadings {
            epoch: 0,
            batches: count,
        },
    ));
    st.accept(&sign_tx(
        &st,
        &n.operators[1],
        0,
        TxBody::AttestReadings {
            epoch: 0,
            batches: auditor,
        },
    ));
    st.accept(&attest(&st, &n, 2, 0, A));
    assert!(st.fixed_readings_root(0).is_none(), "1 of 4 on view A");
    st.accept(&attest(&st, &n, 3, 0, A));
    assert!(st.fixed_readings_root(0).is_none(), "2 of 4 on view A");
    assert!(st.flagged(0).is_empty());
}

#[test]
fn attestation_rejections_change_nothing() {
    let (n, mut st) = net();
    // No epoch has ended yet: epoch 0 is the current one.
    let tx = attest(&st, &n, 0, 0, A);
    st.reject(&tx, TxError::AttestationEpoch { current: 0, got: 0 });
    advance_to_epoch(&mut st, 1);
    // Not a validator.
    let tx = sign_tx(
        &st,
        &n.users[0],
        0,
        TxBody::AttestReadings {
            epoch: 0,
            batches: view(&n, A),
        },
    );
    st.reject(&tx, TxError::NotActiveValidator);
    // The current and future epochs.
    for e in [1, 2, u64::MAX] {
        let tx = attest(&st, &n, 0, e, A);
        st.reject(&tx, TxError::AttestationEpoch { current: 1, got: e });
    }
    // A validator that joined after the epoch was not in its committee.
    let newcomer = &n.users[2];
    st.accept(&sign_tx(
        &st,
        newcomer,
        0,
        TxBody::CreateValidator {
            consensus_key: address(&key(77)),
            stake: 10_000,
        },
    ));
    advance_to_epoch(&mut st, 2);
    let body = |epoch| TxBody::AttestReadings {
        epoch,
        batches: view(&n, A),
    };
    let tx = sign_tx(&st, newcomer, 0, body(0));
    st.reject(&tx, TxError::NotInCommittee);
    // It was in epoch 1's committee? No: it joined the set at the end of epoch 1.
    let tx = sign_tx(&st, newcomer, 0, body(1));
    st.reject(&tx, TxError::NotInCommittee);
    // The window (2 epochs): epoch 0 is attestable in epochs 1 and 2, not in 3.
    st.accept(&attest(&st, &n, 0, 0, A));
    advance_to_epoch(&mut st, 3);
    let tx = attest(&st, &n, 1, 0, A);
    st.reject(&tx, TxError::AttestationEpoch { current: 3, got: 0 });
    assert!(st.attestations(0).is_empty(), "closed window dropped");
    st.accept(&sign_tx(&st, newcomer, 0, body(2)));
}

#[test]
fn a_jailed_validator_cannot_attest() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    let ev = double_sign(&n, 1, 2);
    st.accept(&sign_tx(&st, &n.users[0], 0, ev));
    assert!(st.validator(&op(&n, 1)).unwrap().status != ValidatorStatus::Active);
    let tx = attest(&st, &n, 1, 0, A);
    st.reject(&tx, TxError::NotActiveValidator);
}

/// Validator 0 with `big` stake, three others with 10 000 each.
fn weighted(big: Amount) -> (TestNet, State) {
    let mut n = TestNet::new(4, 4);
    n.genesis.validators[0].stake = big;
    let mut st = n.state().unwrap();
    advance_to_epoch(&mut st, 1);
    (n, st)
}

#[test]
fn one_validator_fixes_alone_only_with_two_thirds_of_the_stake() {
    // 60 000 of 90 000: exactly 2/3.
    let (n, mut st) = weighted(60_000);
    assert_eq!(st.epoch_seal(0).unwrap().total_power(), 90_000);
    st.accept(&attest(&st, &n, 0, 0, A));
    assert_eq!(st.fixed_readings_root(0).unwrap().root, root(&n, 0, A));
    // The three others together (1/3) could not have overruled it: they are flagged.
    for i in 1..4 {
        st.accept(&attest(&st, &n, i, 0, B));
    }
    assert_eq!(st.fixed_readings_root(0).unwrap().root, root(&n, 0, A));
    assert_eq!(st.flagged(0).len(), 3);

    // 59 999 of 89 999: one short of 2/3; it needs one more validator.
    let (n, mut st) = weighted(59_999);
    st.accept(&attest(&st, &n, 0, 0, A));
    assert!(st.fixed_readings_root(0).is_none());
    st.accept(&attest(&st, &n, 1, 0, A));
    assert_eq!(st.fixed_readings_root(0).unwrap().root, root(&n, 0, A));

    // And the three small ones (30 000 of 90 000) cannot fix without it.
    let (n, mut st) = weighted(60_000);
    for i in 1..4 {
        st.accept(&attest(&st, &n, i, 0, B));
    }
    assert!(st.fixed_readings_root(0).is_none());
    assert!(st.flagged(0).is_empty());
}

#[test]
fn attestation_tables_are_in_the_root_and_the_snapshot() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    for i in 0..3 {
        st.accept(&attest(&st, &n, i, 0, A));
    }
    let before = st.clone();
    // Two states that differ only by one attestation have different roots.
    let mut other = st.clone();
    other.attestations.insert(
        (0, op(&n, 3)),
        ReadingsAttestation {
            epoch: 0,
            validator: op(&n, 3),
            readings_root: root(&n, 0, A),
            readings: 10,
            height: 7,
        },
    );
    assert_ne!(other.state_root(), st.state_root());
    assert_ne!(other.flat_root(), st.flat_root());
    // And by one flag.
    let mut flagged = st.clone();
    let rec = *st.attestations(0)[0];
    flagged.flagged.insert((0, rec.validator), rec);
    assert_ne!(flagged.state_root(), st.state_root());

    st.accept(&attest(&st, &n, 3, 0, B));
    assert_ne!(st.state_root(), before.state_root());
    assert!(!st.flagged(0).is_empty() && st.fixed_readings_root(0).is_some());
    let root = st.state_root();
    let back = State::from_snapshot(&st.snapshot()).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.state_root(), root);
    let back = State::from_entries(st.entries()).unwrap();
    assert_eq!(back, st);
    assert_eq!(back.state_root(), root);
    // Committed incrementally (a block), the tree agrees with a rebuild from the entries.
    let block = Block {
        height: st.height() + 1,
        proposer: None,
        txs: vec![],
    };
    let out = apply_block(&mut st, &block).unwrap();
    assert_eq!(
        out.state_root,
        State::from_entries(st.entries()).unwrap().state_root()
    );
}

#[test]
fn sampling_and_attestation_params_are_validated() {
    let mut p = Params::default();
    assert_eq!((p.audit_redundancy, p.attestation_window_epochs), (1, 2));
    p.audit_redundancy = 0;
    assert!(p.validate().is_err());
    p.audit_redundancy = crate::sampling::MAX_REDUNDANCY + 1;
    assert!(p.validate().is_err());
    p.audit_redundancy = crate::sampling::MAX_REDUNDANCY;
    p.validate().unwrap();
    p.attestation_window_epochs = 0;
    assert!(p.validate().is_err());

    let mut n = TestNet::new(4, 4);
    n.genesis.params.audit_redundancy = 3;
    let mut st = n.state().unwrap();
    advance_to_epoch(&mut st, 1);
    for auditors in st.audit_assignment(0).unwrap().values() {
        assert_eq!(auditors.len(), 3);
    }
}

#[test]
fn malformed_batch_lists_are_refused() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    let b = |i: usize, readings| BatchCommitment {
        auditor: op(&n, i),
        commitment: [i as u8; 32],
        readings,
    };
    let mut ordered = [op(&n, 0), op(&n, 1)];
    ordered.sort();
    let (lo, hi) = if ordered[0] == op(&n, 0) {
        (0, 1)
    } else {
        (1, 0)
    };
    let cases = [
        (vec![b(hi, 1), b(lo, 1)], "batches not in auditor order"),
        (vec![b(lo, 1), b(lo, 2)], "batches not in auditor order"),
        (vec![b(lo, 1), b(hi, 0)], "empty batch"),
    ];
    for (batches, why) in cases {
        let tx = sign_tx(
            &st,
            &n.operators[0],
            0,
            TxBody::AttestReadings { epoch: 0, batches },
        );
        st.reject(&tx, TxError::Malformed(why));
    }
    assert!(st.attestations(0).is_empty());
    // Ordered, positive: the total is the sum; too many batches are refused.
    assert_eq!(check_batches(&[b(lo, 3), b(hi, 4)]), Ok(7));
    let many: Vec<_> = (0..=MAX_BATCHES)
        .map(|i| BatchCommitment {
            auditor: Address([0; 32]),
            commitment: [0; 32],
            readings: i as u64 + 1,
        })
        .collect();
    assert_eq!(
        check_batches(&many),
        Err(TxError::Malformed("too many batches"))
    );
    assert_eq!(
        check_batches(&[b(lo, u64::MAX), b(hi, 1)]),
        Err(TxError::Overflow)
    );
}

#[test]
fn an_epoch_fixed_without_batches_is_committed_at_once() {
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    let empty = |st: &State, i: usize| {
        sign_tx(
            st,
            &n.operators[i],
            0,
            TxBody::AttestReadings {
                epoch: 0,
                batches: vec![],
            },
        )
    };
    st.accept(&empty(&st, 0));
    st.accept(&empty(&st, 1));
    assert!(st.epoch_commitment(0).is_none());
    let r = st.accept(&empty(&st, 2));
    let c = *st.epoch_commitment(0).unwrap();
    assert_eq!(
        (c.batches, c.audited_batches, c.verified_readings),
        (0, 0, 0)
    );
    assert_eq!(c.readings_root, readings_root(0, &[]));
    assert_eq!(c.state_root, st.epoch_seal(0).unwrap().state_root);
    assert_eq!(c.height, st.height() + 1);
    assert!(r.events.contains(&Event::EpochCommitted {
        epoch: 0,
        digest: c.digest(st.chain_id()),
        audited_batches: 0,
        batches: 0,
    }));
    // It is in the state root and survives a snapshot and the entries.
    let back = State::from_snapshot(&st.snapshot()).unwrap();
    assert_eq!(back.epoch_commitment(0), Some(&c));
    assert_eq!(back.state_root(), st.state_root());
    let back = State::from_entries(st.entries()).unwrap();
    assert_eq!(back, st);
}
