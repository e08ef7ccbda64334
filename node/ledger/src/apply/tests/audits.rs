//! Audits the ledger verifies itself, on a timed network with real metered-output STARKs:
//! crediting and payment, a failing proof slashing its submitter, mismatches, assignment and
//! reassignment, duplicates, `CloseEpoch` votes and epoch commitments.

use groundtruth_proofs::{prove_metered, DeviceSeries, ProofEnvelope, SecurityLevel, Statement};

use super::*;
use crate::attestation::{readings_root, BatchAudit, EpochCommitment};
use crate::genesis::BP_ONE;

/// The fastest level the verifier accepts (it accepts exactly two).
const LEVEL: SecurityLevel = SecurityLevel::Default100;

/// The metered devices of a [`TestNet`] and their interval values in epoch 0 (energy in Wh,
/// cap 416 per 300 s at 5 kW; GPU in GPU-milliseconds).
const READINGS: [(u8, &[u64]); 3] = [
    (ENERGY_DEVICE, &[100, 200, 0, 50]),
    (GPU_DEVICE, &[7_000, 9_000, 1]),
    (ENERGY_DEVICE_2, &[300, 10]),
];

type Batches = Vec<(BatchCommitment, Vec<DeviceSeries>)>;

fn series(st: &State, epoch: Epoch, readings: &[(u8, &[u64])]) -> Vec<DeviceSeries> {
    readings
        .iter()
        .map(|(seed, values)| metered_series(st, &device_id(&key(*seed)), epoch, values).unwrap())
        .collect()
}

/// `AttestReadings` of `batches` for `epoch` from the operators at `voters`.
fn attest(
    n: &TestNet,
    st: &mut State,
    epoch: Epoch,
    batches: &[(BatchCommitment, Vec<DeviceSeries>)],
    voters: &[usize],
) {
    let batches: Vec<BatchCommitment> = batches.iter().map(|(b, _)| *b).collect();
    for i in voters {
        let tx = sign_tx(
            st,
            &n.operators[*i],
            0,
            TxBody::AttestReadings {
                epoch,
                batches: batches.clone(),
            },
        );
        st.accept(&tx);
    }
}

/// A timed network in epoch 1 whose epoch 0 readings ([`READINGS`]) are agreed in batches by
/// their drawn auditors (3 of 4 equal validators attested).
fn fixed_epoch0() -> (TestNet, State, Batches) {
    let n = TestNet::new_timed(4, 4);
    let mut st = n.state().unwrap();
    assert_eq!(n.close_epoch(&mut st).unwrap().epoch_ended, Some(0));
    let batches = audit_batches(&st, 0, &series(&st, 0, &READINGS)).unwrap();
    attest(&n, &mut st, 0, &batches, &[0, 1, 2]);
    let fixed = st.fixed_readings_root(0).unwrap();
    assert_eq!(fixed.batches.len(), batches.len());
    assert_eq!(fixed.readings, 9);
    assert!(batches.len() >= 2, "the fixture needs several batches");
    (n, st, batches)
}

fn operator<'a>(n: &'a TestNet, a: &Address) -> &'a SigningKey {
    n.operators.iter().find(|k| address(k) == *a).unwrap()
}

/// An operator of the committee that is not `a`.
fn other_than<'a>(n: &'a TestNet, a: &Address) -> &'a SigningKey {
    n.operators.iter().find(|k| address(k) != *a).unwrap()
}

fn prove(st: &State, epoch: Epoch, series: &[DeviceSeries]) -> Vec<u8> {
    let window = proof_epoch(st.params(), epoch).unwrap();
    prove_metered(&window, series, LEVEL)
        .unwrap()
        .to_bytes()
        .unwrap()
}

fn submit(st: &State, k: &SigningKey, epoch: Epoch, batch: Address, proof: Vec<u8>) -> SignedTx {
    sign_tx(
        st,
        k,
        0,
        TxBody::SubmitAuditProof {
            epoch,
            batch,
            proof,
        },
    )
}

fn kind_of(st: &State, id: &DeviceId) -> AuditKind {
    match st.device(id).unwrap().kind {
        DeviceKind::Energy => AuditKind::EnergyOutput,
        DeviceKind::Gpu => AuditKind::GpuHours,
        DeviceKind::Storage => unreachable!("storage is not metered"),
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    *blake3::hash(bytes).as_bytes()
}

/// Proves and submits every batch of epoch 0 from its assigned auditor.
fn prove_all(n: &TestNet, st: &mut State, batches: &[(BatchCommitment, Vec<DeviceSeries>)]) {
    for (b, devs) in batches {
        let tx = submit(
            st,
            operator(n, &b.auditor),
            0,
            b.auditor,
            prove(st, 0, devs),
        );
        assert_eq!(st.accept(&tx).failed, None);
    }
}

/// Closes epochs until the state is in `epoch`; returns the end-block events of each close.
fn close_until(n: &TestNet, st: &mut State, epoch: Epoch) -> Vec<Vec<Event>> {
    let mut out = Vec::new();
    while st.epoch() < epoch {
        let o = n.close_epoch(st).unwrap();
        assert!(o.epoch_ended.is_some());
        out.push(o.end_block_events);
    }
    out
}

fn flagged(st: &State, epoch: Epoch) -> Vec<Address> {
    st.flagged(epoch).iter().map(|a| a.validator).collect()
}

fn slashed(r: &TxReceipt) -> Vec<(Offender, SlashReason, Amount)> {
    r.events
        .iter()
        .filter_map(|e| match e {
            Event::Slashed {
                offender,
                reason,
                amount,
                ..
            } => Some((*offender, *reason, *amount)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_valid_proof_from_the_assigned_auditor_credits_the_totals_and_pays_at_the_epoch_end() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let proof = prove(&st, 0, devs0);
    let tx = submit(&st, operator(&n, &b0.auditor), 0, b0.auditor, proof.clone());
    let r = st.accept(&tx);
    assert_eq!(r.failed, None);
    assert!(r.events.contains(&Event::AuditVerified {
        epoch: 0,
        batch: b0.auditor,
        prover: b0.auditor,
        devices: devs0.len() as u64,
        readings: b0.readings,
    }));
    // One verified record per device of the batch: exactly its readings' sum.
    for s in devs0 {
        let id = DeviceId(s.id);
        let rec = st
            .audit(0, &AuditSubject::Device(id), kind_of(&st, &id))
            .unwrap();
        assert_eq!(rec.work_units, s.values.iter().sum::<u64>());
        assert_eq!(rec.validator, b0.auditor);
        assert_eq!(rec.result, AuditResult::Pass);
        assert_eq!(rec.proof_digest, digest(&proof));
        assert_eq!((rec.recorded_in_epoch, rec.height), (1, st.height() + 1));
    }
    // Nothing else is credited; the batch is marked audited, the others are still open.
    assert_eq!(st.audits_for_epoch(0).len(), devs0.len());
    let fixed = st.fixed_readings_root(0).unwrap();
    assert_eq!(
        fixed.batches[0].1,
        Some(BatchAudit {
            prover: b0.auditor,
            proof_digest: digest(&proof),
            height: st.height() + 1,
        })
    );
    assert!(fixed.batches[1..].iter().all(|(_, a)| a.is_none()));
    assert_eq!(fixed.fully_audited(), batches.len() == 1);
    assert!(st.slashes().is_empty());

    // The other batches; the last one commits the epoch.
    for (b, devs) in &batches[1..] {
        let tx = submit(
            &st,
            operator(&n, &b.auditor),
            0,
            b.auditor,
            prove(&st, 0, devs),
        );
        st.accept(&tx);
    }
    assert_eq!(st.audits_for_epoch(0).len(), READINGS.len());
    assert!(st.fixed_readings_root(0).unwrap().fully_audited());
    let c = *st.epoch_commitment(0).unwrap();
    assert_eq!(c.audited_batches as usize, batches.len());
    assert_eq!(c.verified_readings, 9);

    // At the end of the epoch the proofs were recorded in (1), the reward is paid: 20 % to
    // the auditors by records, 80 % to the owners by verified work, rounded down.
    let mut auditors: BTreeMap<Address, u128> = BTreeMap::new();
    let mut owners: BTreeMap<Address, u128> = BTreeMap::new();
    for (b, devs) in &batches {
        for s in devs {
            *auditors.entry(b.auditor).or_default() += 1;
            let owner = st.device(&DeviceId(s.id)).unwrap().owner.unwrap();
            *owners.entry(owner).or_default() += u128::from(s.values.iter().sum::<u64>());
        }
    }
    let reward = u128::from(st.params().reward_per_epoch);
    let auditor_pool = reward * u128::from(st.params().auditor_share_bp) / u128::from(BP_ONE);
    let mut expected: BTreeMap<Address, Amount> = BTreeMap::new();
    for (pool, weights) in [(auditor_pool, &auditors), (reward - auditor_pool, &owners)] {
        let total: u128 = weights.values().sum();
        for (a, w) in weights {
            *expected.entry(*a).or_default() += Amount::try_from(pool * w / total).unwrap();
        }
    }
    let before: BTreeMap<Address, Amount> = expected
        .keys()
        .map(|a| (*a, st.account(a).balance))
        .collect();
    let minted = st.supply().minted;
    close_until(&n, &mut st, 2);
    for (a, amount) in &expected {
        assert_eq!(st.account(a).balance, before[a] + amount, "paid to {a:?}");
    }
    let paid: Amount = expected.values().sum();
    assert_eq!(st.supply().minted, minted + paid);
    assert_eq!(
        st.rewards_for_epoch(1),
        expected.into_iter().collect::<Vec<_>>()
    );
    assert!(
        st.rewards_for_epoch(0).is_empty(),
        "nothing verified in epoch 0"
    );
    st.check_invariants().unwrap();
}

#[test]
fn one_proof_of_a_batch_of_several_devices_credits_each_device() {
    // Two validators, three metered devices: one auditor has at least two.
    let n = TestNet::new_timed(2, 4);
    let mut st = n.state().unwrap();
    assert_eq!(n.close_epoch(&mut st).unwrap().epoch_ended, Some(0));
    let batches = audit_batches(&st, 0, &series(&st, 0, &READINGS)).unwrap();
    attest(&n, &mut st, 0, &batches, &[0, 1]);
    let (b, devs) = batches.iter().find(|(_, d)| d.len() >= 2).unwrap();
    let r = st.accept(&submit(
        &st,
        operator(&n, &b.auditor),
        0,
        b.auditor,
        prove(&st, 0, devs),
    ));
    assert!(r.events.contains(&Event::AuditVerified {
        epoch: 0,
        batch: b.auditor,
        prover: b.auditor,
        devices: devs.len() as u64,
        readings: b.readings,
    }));
    assert_eq!(st.audits_for_epoch(0).len(), devs.len());
    for s in devs {
        let id = DeviceId(s.id);
        let rec = st
            .audit(0, &AuditSubject::Device(id), kind_of(&st, &id))
            .unwrap();
        assert_eq!(rec.work_units, s.values.iter().sum::<u64>());
    }
}

#[test]
fn a_tampered_proof_slashes_its_submitter_credits_nothing_and_leaves_the_batch_open() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let auditor = operator(&n, &b0.auditor);
    let good = prove(&st, 0, devs0);
    let mut env = ProofEnvelope::from_bytes(&good).unwrap();
    let mid = env.proof.len() / 2;
    env.proof[mid] ^= 0x01;
    let bad = env.to_bytes().unwrap();
    let (stake, burned) = (st.validator(&b0.auditor).unwrap().stake, st.supply().burned);
    let r = st.accept(&submit(&st, auditor, 0, b0.auditor, bad.clone()));
    assert_eq!(
        r.failed, None,
        "a failing proof is included: it is evidence"
    );
    let cut = stake * u64::from(st.params().slash_invalid_proof_bp) / u64::from(BP_ONE);
    assert_eq!(
        slashed(&r),
        vec![(
            Offender::Validator(b0.auditor),
            SlashReason::InvalidProof,
            cut
        )]
    );
    assert!(r.events.iter().any(|e| matches!(
        e,
        Event::AuditProofRejected { epoch: 0, batch, prover, reason }
            if *batch == b0.auditor && *prover == b0.auditor && !reason.is_empty()
    )));
    let v = st.validator(&b0.auditor).unwrap();
    assert_eq!(v.stake, stake - cut);
    assert_eq!(v.status, ValidatorStatus::Jailed { until_epoch: 2 });
    assert_eq!(st.supply().burned, burned + cut);
    let s = &st.slashes()[0];
    assert_eq!(s.reporter, b0.auditor);
    match &s.evidence {
        SlashEvidence::BadAuditProof {
            epoch,
            batch,
            proof_digest,
            reason,
        } => {
            assert_eq!((*epoch, *batch), (0, b0.auditor));
            assert_eq!(*proof_digest, digest(&bad));
            assert!(!reason.is_empty() && reason.len() <= crate::evidence::MAX_REASON_LEN);
        }
        other => panic!("unexpected evidence {other:?}"),
    }
    // Nothing credited; the batch is still open and nothing is committed.
    assert!(st.audits_for_epoch(0).is_empty());
    assert_eq!(st.fixed_readings_root(0).unwrap().batches[0].1, None);
    assert!(st.epoch_commitment(0).is_none());
    // The jailed auditor cannot try again; after the deadline another validator proves it.
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, good.clone()),
        TxError::NotActiveValidator,
    );
    close_until(&n, &mut st, 3);
    let other = other_than(&n, &b0.auditor);
    let tx = submit(&st, other, 0, b0.auditor, good);
    assert_eq!(st.accept(&tx).failed, None);
    assert_eq!(st.audits_for_epoch(0).len(), devs0.len());
    assert_eq!(st.slashes().len(), 1);
}

#[test]
fn a_proof_claiming_more_than_it_proves_or_not_a_proof_at_all_slashes_its_submitter() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let auditor = operator(&n, &b0.auditor);
    // The statement's first device total raised by one: the STARK no longer verifies.
    let mut env = ProofEnvelope::from_bytes(&prove(&st, 0, devs0)).unwrap();
    let Statement::MeteredOutput(s) = &mut env.statement else {
        panic!("metered proof expected");
    };
    s.devices[0].total += 1;
    let inflated = env.to_bytes().unwrap();
    let r = st.accept(&submit(&st, auditor, 0, b0.auditor, inflated));
    assert_eq!(
        slashed(&r),
        vec![(
            Offender::Validator(b0.auditor),
            SlashReason::InvalidProof,
            1_000
        )]
    );
    assert!(st.audits_for_epoch(0).is_empty());

    // Bytes that are no envelope at all are evidence too (of another, still active, auditor
    // after the deadline; the first one is jailed).
    close_until(&n, &mut st, 3);
    let other = other_than(&n, &b0.auditor);
    let r = st.accept(&submit(&st, other, 0, b0.auditor, vec![0xde, 0xad]));
    assert_eq!(
        slashed(&r),
        vec![(
            Offender::Validator(address(other)),
            SlashReason::InvalidProof,
            1_000
        )]
    );
    assert!(st.audits_for_epoch(0).is_empty());
    assert_eq!(st.fixed_readings_root(0).unwrap().batches[0].1, None);
}

#[test]
fn a_valid_proof_of_other_readings_is_a_mismatch_and_slashes_no_one() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let auditor = operator(&n, &b0.auditor);
    // One interval value changed (still within the cap): another commitment.
    let mut other = devs0.clone();
    other[0].values[0] += 1;
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, prove(&st, 0, &other)),
        TxError::AuditMismatch("readings commitment"),
    );
    // The same readings under a cap above the registered capacity's (caps are not in the
    // commitment; the ledger checks them against the registry).
    let mut capped = devs0.clone();
    capped[0].cap = groundtruth_proofs::metered::MAX_CAP;
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, prove(&st, 0, &capped)),
        TxError::AuditMismatch("cap is not the registered capacity's"),
    );
    // Readings of the next epoch's window.
    let next: Vec<_> = devs0
        .iter()
        .map(|s| metered_series(&st, &DeviceId(s.id), 1, &s.values).unwrap())
        .collect();
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, prove(&st, 1, &next)),
        TxError::AuditMismatch("epoch window"),
    );
    assert!(st.slashes().is_empty());
    assert!(st.audits_for_epoch(0).is_empty());
    assert_eq!(st.validator(&b0.auditor).unwrap().stake, 10_000);
    // The right proof is still accepted.
    let tx = submit(&st, auditor, 0, b0.auditor, prove(&st, 0, devs0));
    assert_eq!(st.accept(&tx).failed, None);
}

#[test]
fn a_batch_may_only_hold_devices_drawn_for_its_auditor() {
    // The committee agrees (wrongly) that a validator not drawn for the energy meter audits
    // it: the proof verifies and matches the commitment, but the ledger refuses the record.
    let n = TestNet::new_timed(4, 4);
    let mut st = n.state().unwrap();
    n.close_epoch(&mut st).unwrap();
    let energy = device_id(&key(ENERGY_DEVICE));
    let drawn = st.audit_assignment(0).unwrap()[&energy][0];
    let wrong = other_than(&n, &drawn);
    let devs = series(&st, 0, &READINGS[..1]);
    let window = proof_epoch(st.params(), 0).unwrap();
    let batch = BatchCommitment {
        auditor: address(wrong),
        commitment: groundtruth_proofs::metered::readings_commitment(&window, &devs).unwrap(),
        readings: 4,
    };
    attest(&n, &mut st, 0, &[(batch, devs.clone())], &[0, 1, 2]);
    assert!(st.fixed_readings_root(0).is_some());
    st.reject(
        &submit(&st, wrong, 0, address(wrong), prove(&st, 0, &devs)),
        TxError::AuditMismatch("device not drawn for this batch"),
    );
    assert!(st.audits_for_epoch(0).is_empty() && st.slashes().is_empty());
}

#[test]
fn only_the_assigned_auditor_proves_before_the_deadline_then_any_committee_member() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let other = other_than(&n, &b0.auditor);
    let proof = prove(&st, 0, devs0);
    // A newcomer joins the set at the end of epoch 1: not in epoch 0's committee.
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
    // audit_deadline_epochs = 2: epochs 1 and 2 are the assigned auditor's.
    assert_eq!(st.params().audit_deadline_epochs, 2);
    for epoch in [1, 2] {
        close_until(&n, &mut st, epoch);
        st.reject(
            &submit(&st, other, 0, b0.auditor, proof.clone()),
            TxError::NotAssigned,
        );
    }
    // Epochs 3 and 4: any validator of epoch 0's committee.
    close_until(&n, &mut st, 3);
    st.reject(
        &submit(&st, newcomer, 0, b0.auditor, proof.clone()),
        TxError::NotInCommittee,
    );
    let r = st.accept(&submit(&st, other, 0, b0.auditor, proof.clone()));
    assert!(r.events.contains(&Event::AuditVerified {
        epoch: 0,
        batch: b0.auditor,
        prover: address(other),
        devices: devs0.len() as u64,
        readings: b0.readings,
    }));
    for s in devs0 {
        let id = DeviceId(s.id);
        let rec = st
            .audit(0, &AuditSubject::Device(id), kind_of(&st, &id))
            .unwrap();
        assert_eq!((rec.validator, rec.recorded_in_epoch), (address(other), 3));
        assert_eq!(rec.work_units, s.values.iter().sum::<u64>());
    }
    let audit = st.fixed_readings_root(0).unwrap().batches[0].1.unwrap();
    assert_eq!(audit.prover, address(other));
    // After epoch 4 (0 + 2·deadline) the epoch is closed to proofs.
    close_until(&n, &mut st, 5);
    if let Some((b1, devs1)) = batches.get(1) {
        st.reject(
            &submit(
                &st,
                operator(&n, &b1.auditor),
                0,
                b1.auditor,
                prove(&st, 0, devs1),
            ),
            TxError::AuditEpoch { current: 5, got: 0 },
        );
    }
}

/// Audits of epoch `e` are recorded up to epoch `e + 2·audit_deadline_epochs`, and rewards go
/// by the epoch a record was made in; a proof recorded two or more epochs after its epoch (the
/// assigned auditor in `e + 2`, or any reassignment) must be paid like one recorded in `e + 1`.
#[test]
fn a_proof_recorded_late_in_its_window_is_paid() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    close_until(&n, &mut st, 2);
    let auditor = address(operator(&n, &b0.auditor));
    let before = st.account(&auditor).balance;
    st.accept(&submit(
        &st,
        operator(&n, &b0.auditor),
        0,
        b0.auditor,
        prove(&st, 0, devs0),
    ));
    assert_eq!(st.audits_for_epoch(0)[0].recorded_in_epoch, 2);
    close_until(&n, &mut st, 3);
    let paid = st
        .rewards_for_epoch(2)
        .into_iter()
        .find(|(a, _)| *a == auditor)
        .map(|(_, v)| v);
    assert!(
        paid.is_some_and(|v| v > 0),
        "auditor of a late proof unpaid"
    );
    assert_eq!(st.account(&auditor).balance, before + paid.unwrap_or(0));
    // And the devices' owners are paid for the verified work.
    let owner = st.device(&DeviceId(devs0[0].id)).unwrap().owner.unwrap();
    assert!(st
        .rewards_for_epoch(2)
        .iter()
        .any(|(a, v)| *a == owner && *v > 0));
}

#[test]
fn a_second_proof_of_a_batch_is_a_duplicate() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let auditor = operator(&n, &b0.auditor);
    let proof = prove(&st, 0, devs0);
    st.accept(&submit(&st, auditor, 0, b0.auditor, proof.clone()));
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, proof.clone()),
        TxError::DuplicateAudit,
    );
    // Also from another validator after the deadline.
    close_until(&n, &mut st, 3);
    st.reject(
        &submit(&st, other_than(&n, &b0.auditor), 0, b0.auditor, proof),
        TxError::DuplicateAudit,
    );
    assert_eq!(st.audits_for_epoch(0).len(), devs0.len());
    // Once the epoch is committed, every batch is closed.
    for (b, devs) in &batches[1..] {
        st.accept(&submit(
            &st,
            operator(&n, &b.auditor),
            0,
            b.auditor,
            prove(&st, 0, devs),
        ));
    }
    assert!(st.epoch_commitment(0).is_some());
    let (b, devs) = batches.last().unwrap();
    st.reject(
        &submit(
            &st,
            operator(&n, &b.auditor),
            0,
            b.auditor,
            prove(&st, 0, devs),
        ),
        TxError::DuplicateAudit,
    );
}

#[test]
fn audit_proof_rejections_change_nothing() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, devs0) = &batches[0];
    let auditor = operator(&n, &b0.auditor);
    let proof = prove(&st, 0, devs0);
    // Not a validator.
    st.reject(
        &submit(&st, &n.users[0], 0, b0.auditor, proof.clone()),
        TxError::NotActiveValidator,
    );
    // The current epoch (not ended) and future ones.
    for e in [1, 2, 99] {
        st.reject(
            &submit(&st, auditor, e, b0.auditor, proof.clone()),
            TxError::AuditEpoch { current: 1, got: e },
        );
    }
    // No batch of this auditor (a user address), and an epoch without a fixed root.
    st.reject(
        &submit(&st, auditor, 0, address(&n.users[0]), proof.clone()),
        TxError::UnknownBatch,
    );
    close_until(&n, &mut st, 2);
    st.reject(
        &submit(&st, auditor, 1, b0.auditor, proof.clone()),
        TxError::UnknownBatch,
    );
    // Larger than the genesis bound.
    st.params.max_audit_proof_bytes = 64;
    st.reject(
        &submit(&st, auditor, 0, b0.auditor, proof.clone()),
        TxError::ProofTooLarge {
            max: 64,
            got: proof.len(),
        },
    );
    assert!(st.slashes().is_empty() && st.audits_for_epoch(0).is_empty());

    // An untimed chain has no proofs and no close votes.
    let (n, mut st) = net();
    advance_to_epoch(&mut st, 1);
    st.reject(
        &sign_tx(
            &st,
            &n.operators[0],
            0,
            TxBody::SubmitAuditProof {
                epoch: 0,
                batch: address(&n.operators[0]),
                proof: proof.clone(),
            },
        ),
        TxError::UntimedEpochs,
    );
    st.reject(
        &sign_tx(&st, &n.operators[0], 0, TxBody::CloseEpoch { epoch: 1 }),
        TxError::UntimedEpochs,
    );
}

#[test]
fn close_votes_of_two_thirds_end_a_timed_epoch() {
    let n = TestNet::new_timed(4, 4);
    let mut st = n.state().unwrap();
    // Blocks alone do not end a timed epoch (epoch_length is 4).
    for _ in 0..9 {
        assert_eq!(n.block(&mut st, vec![]).unwrap().epoch_ended, None);
    }
    assert_eq!(st.epoch(), 0);
    // A vote for another epoch, and one from a non-validator, are refused.
    st.reject(
        &sign_tx(&st, &n.operators[0], 0, TxBody::CloseEpoch { epoch: 1 }),
        TxError::CloseEpoch { current: 0, got: 1 },
    );
    st.reject(
        &sign_tx(&st, &n.users[0], 0, TxBody::CloseEpoch { epoch: 0 }),
        TxError::NotActiveValidator,
    );
    // One of four equal validators, then two: not 2/3.
    for (i, voters) in [[0], [1]].iter().enumerate() {
        let txs = n.close_votes(&st, voters);
        let out = n.block(&mut st, txs).unwrap();
        assert!(out.results[0].as_ref().unwrap().failed.is_none());
        assert_eq!(out.epoch_ended, None);
        assert_eq!(st.close_votes().count(), i + 1);
        assert!(!st.close_votes_reach_two_thirds());
    }
    let votes: Vec<Address> = st.close_votes().copied().collect();
    let mut want = vec![address(&n.operators[0]), address(&n.operators[1])];
    want.sort();
    assert_eq!(votes, want);
    st.reject(&n.close_votes(&st, &[1])[0], TxError::DuplicateCloseVote);
    // The third ends the epoch after its block.
    let txs = n.close_votes(&st, &[2]);
    let height = st.height() + 1;
    let out = n.block(&mut st, txs).unwrap();
    assert!(out.results[0]
        .as_ref()
        .unwrap()
        .events
        .contains(&Event::CloseVoted {
            epoch: 0,
            validator: address(&n.operators[2]),
        }));
    assert_eq!(out.epoch_ended, Some(0));
    assert_eq!(st.epoch(), 1);
    assert_eq!(st.epoch_seal(0).unwrap().closed_at_height, height);
    assert_eq!(
        st.close_votes().count(),
        0,
        "votes are cleared at the boundary"
    );
    // A vote for the ended epoch is refused; the fourth validator's late vote too.
    st.reject(
        &sign_tx(&st, &n.operators[3], 0, TxBody::CloseEpoch { epoch: 0 }),
        TxError::CloseEpoch { current: 1, got: 0 },
    );

    // Stake-weighted: one validator with 2/3 of the power closes alone, the three others
    // together (1/3) cannot.
    let mut w = TestNet::new_timed(4, 4);
    w.genesis.validators[0].stake = 60_000;
    let mut st = w.state().unwrap();
    let txs = w.close_votes(&st, &[1, 2, 3]);
    assert_eq!(w.block(&mut st, txs).unwrap().epoch_ended, None);
    let txs = w.close_votes(&st, &[0]);
    assert_eq!(w.block(&mut st, txs).unwrap().epoch_ended, Some(0));
    // A jailed validator's vote does not count; 2/3 is of the active set's power.
    let mut st = n.state().unwrap();
    st.accept(&sign_tx(&st, &n.users[2], 0, double_sign(&n, 0, 1)));
    let txs = n.close_votes(&st, &[0, 1]);
    let out = n.block(&mut st, txs).unwrap();
    assert!(out.results[0].is_err() || out.results[0].as_ref().unwrap().failed.is_some());
    assert_eq!(out.epoch_ended, None, "1 of the 3 active validators");
    let txs = n.close_votes(&st, &[2]);
    assert_eq!(n.block(&mut st, txs).unwrap().epoch_ended, Some(0));
}

#[test]
fn the_epoch_commitment_is_recorded_at_the_last_proof_or_at_the_deadline() {
    let (n, mut st, batches) = fixed_epoch0();
    // Every batch but the last one proven (none if there is one batch).
    let proven = &batches[..batches.len() - 1];
    prove_all(&n, &mut st, proven);
    assert!(st.epoch_commitment(0).is_none());
    // Epoch 1 ends without any readings agreed.
    let events = close_until(&n, &mut st, 4);
    assert!(
        st.epoch_commitment(0).is_none(),
        "open until the end of epoch 4"
    );
    assert!(!events
        .concat()
        .iter()
        .any(|e| matches!(e, Event::EpochCommitted { .. })));
    // The end of epoch 4 = 0 + 2·deadline records what was verified.
    let height = st.height() + 1;
    let events = close_until(&n, &mut st, 5).concat();
    let c = *st.epoch_commitment(0).unwrap();
    let fixed = st.fixed_readings_root(0).unwrap();
    assert_eq!(c.readings_root, fixed.root);
    assert_eq!(
        c.readings_root,
        readings_root(0, &batches.iter().map(|b| b.0).collect::<Vec<_>>())
    );
    assert_eq!(c.state_root, st.epoch_seal(0).unwrap().state_root);
    assert_eq!(c.batches as usize, batches.len());
    assert_eq!(c.audited_batches as usize, proven.len());
    assert_eq!(
        c.verified_readings,
        proven.iter().map(|(b, _)| b.readings).sum::<u64>()
    );
    assert_eq!(c.height, height);
    assert!(events.contains(&Event::EpochCommitted {
        epoch: 0,
        digest: c.digest(st.chain_id()),
        audited_batches: c.audited_batches,
        batches: c.batches,
    }));
    // Epoch 1 had no agreed readings: committed at the end of epoch 5 with a zero root.
    assert!(st.epoch_commitment(1).is_none());
    close_until(&n, &mut st, 6);
    let c1 = st.epoch_commitment(1).unwrap();
    assert_eq!(
        (c1.readings_root, c1.batches, c1.audited_batches),
        ([0; 32], 0, 0)
    );
    // A late proof of the missing batch is refused.
    let (b, devs) = batches.last().unwrap();
    st.reject(
        &submit(
            &st,
            operator(&n, &b.auditor),
            0,
            b.auditor,
            prove(&st, 0, devs),
        ),
        TxError::AuditEpoch { current: 6, got: 0 },
    );
}

#[test]
fn the_commitment_digest_changes_with_any_verified_total() {
    let run = |bump: u64| {
        let n = TestNet::new_timed(4, 4);
        let mut st = n.state().unwrap();
        n.close_epoch(&mut st).unwrap();
        let mut readings: Vec<(u8, &[u64])> = READINGS.to_vec();
        let first: Vec<u64> = readings[0].1.iter().map(|v| v + bump).collect();
        readings[0].1 = &first;
        let batches = audit_batches(&st, 0, &series(&st, 0, &readings)).unwrap();
        attest(&n, &mut st, 0, &batches, &[0, 1, 2]);
        prove_all(&n, &mut st, &batches);
        *st.epoch_commitment(0).unwrap()
    };
    let (a, b) = (run(0), run(1));
    assert_eq!(run(0), a, "deterministic");
    assert_ne!(a.totals_root, b.totals_root);
    assert_ne!(a.digest(CHAIN_ID), b.digest(CHAIN_ID));
    // Each root the digest covers moves it, and so does the chain id.
    let flip = |f: fn(&mut EpochCommitment)| {
        let mut c = a;
        f(&mut c);
        c.digest(CHAIN_ID)
    };
    let d = a.digest(CHAIN_ID);
    assert_ne!(flip(|c| c.totals_root[0] ^= 1), d);
    assert_ne!(flip(|c| c.readings_root[0] ^= 1), d);
    assert_ne!(flip(|c| c.proofs_root[0] ^= 1), d);
    assert_ne!(flip(|c| c.state_root[0] ^= 1), d);
    assert_ne!(flip(|c| c.epoch += 1), d);
    assert_ne!(a.digest("other-chain"), d);
}

#[test]
fn no_single_validator_slashes_another_or_a_provider_by_itself() {
    let (n, mut st, batches) = fixed_epoch0();
    let (b0, _) = &batches[0];
    let victim = b0.auditor;
    let accuser = other_than(&n, &victim);
    let provider = address(&n.users[0]);
    let stakes = |st: &State| {
        (
            st.validator(&victim).unwrap().stake,
            st.provider(&provider).unwrap().stake,
        )
    };
    let start = stakes(&st);
    // A garbage "proof" for the victim's batch before the deadline: not its batch to prove.
    st.reject(
        &submit(&st, accuser, 0, victim, vec![1, 2, 3]),
        TxError::NotAssigned,
    );
    // Forged double-sign and equivocation evidence.
    let v = n
        .operators
        .iter()
        .position(|k| address(k) == victim)
        .unwrap();
    let mut ev = double_sign(&n, v, 3);
    if let TxBody::SubmitEvidence(Evidence::DoubleSign(d)) = &mut ev {
        d.vote_b.signature[0] ^= 1;
    }
    st.reject(&sign_tx(&st, accuser, 0, ev), TxError::EvidenceSignature);
    let mut b = energy_reading(ENERGY_DEVICE, 5, 11);
    b.signature[3] ^= 1;
    st.reject(
        &sign_tx(
            &st,
            accuser,
            0,
            TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
                a: energy_reading(ENERGY_DEVICE, 5, 10),
                b,
            }),
        ),
        TxError::EvidenceSignature,
    );
    // A dissenting attestation only flags its own signer, and nobody is slashed for it.
    let mut wrong = batches.clone();
    wrong[0].0.readings += 1;
    attest(&n, &mut st, 0, &wrong, &[3]);
    assert_eq!(flagged(&st, 0), vec![address(&n.operators[3])]);
    assert_eq!(stakes(&st), start);
    assert!(st.slashes().is_empty());
    // After the deadline a garbage proof for the victim's batch slashes the accuser only.
    close_until(&n, &mut st, 3);
    let r = st.accept(&submit(&st, accuser, 0, victim, vec![1, 2, 3]));
    assert_eq!(
        slashed(&r),
        vec![(
            Offender::Validator(address(accuser)),
            SlashReason::InvalidProof,
            1_000
        )]
    );
    assert_eq!(stakes(&st), start);
    assert!(st
        .slashes()
        .iter()
        .all(|s| s.offender == Offender::Validator(address(accuser))));
}

#[test]
fn a_timed_state_survives_snapshot_and_entries() {
    let (n, mut st, batches) = fixed_epoch0();
    // One batch verified, a failing proof for another (a slash with its evidence).
    let (b0, devs0) = &batches[0];
    st.accept(&submit(
        &st,
        operator(&n, &b0.auditor),
        0,
        b0.auditor,
        prove(&st, 0, devs0),
    ));
    if let Some((b1, _)) = batches.get(1) {
        st.accept(&submit(
            &st,
            operator(&n, &b1.auditor),
            0,
            b1.auditor,
            vec![9; 40],
        ));
    }
    // A pending close vote in the header, from validators still active (the beacon, hence who
    // was slashed above, depends on the state root).
    let active: Vec<usize> = (0..n.operators.len())
        .filter(|i| {
            st.validator(&address(&n.operators[*i]))
                .is_some_and(|v| v.status == ValidatorStatus::Active)
        })
        .collect();
    let txs = n.close_votes(&st, &active[active.len() - 1..]);
    n.block(&mut st, txs).unwrap();
    let check = |st: &State| {
        let root = st.state_root();
        let back = State::from_snapshot(&st.snapshot()).unwrap();
        assert_eq!(&back, st);
        assert_eq!(back.state_root(), root);
        assert_eq!(back.params(), st.params());
        let back = State::from_entries(st.entries()).unwrap();
        assert_eq!(&back, st);
        assert_eq!(back.state_root(), root);
    };
    assert_eq!(st.close_votes().count(), 1);
    check(&st);
    // A close vote changes the root.
    let mut other = st.clone();
    let tx = n.close_votes(&other, &active[..1]);
    n.block(&mut other, tx).unwrap();
    let mut same = st.clone();
    n.block(&mut same, vec![]).unwrap();
    assert_ne!(other.state_root(), same.state_root());
    // Everything proven (the jailed submitter's batch by reassignment) and committed.
    close_until(&n, &mut st, 3);
    for (b, devs) in &batches[1..] {
        let k = n
            .operators
            .iter()
            .find(|k| st.validator(&address(k)).unwrap().status == ValidatorStatus::Active)
            .unwrap();
        st.accept(&submit(&st, k, 0, b.auditor, prove(&st, 0, devs)));
    }
    assert!(st.epoch_commitment(0).is_some());
    check(&st);
    // Incremental commit agrees with a rebuild.
    let out = n.block(&mut st, vec![]).unwrap();
    assert_eq!(
        out.state_root,
        State::from_entries(st.entries()).unwrap().state_root()
    );
}

/// Two states that go through the same blocks, and a store of entries kept from genesis
/// by each block's write set (what a node persists).
struct Replicas {
    a: State,
    b: State,
    db: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Replicas {
    fn new(n: &TestNet) -> Self {
        let a = n.state().unwrap();
        let db = a.entries().into_iter().collect();
        Self {
            b: n.state().unwrap(),
            a,
            db,
        }
    }

    /// Applies one block of `txs` to both states (every transaction included and passed) and
    /// its writes to the store; the two roots agree.
    fn block(&mut self, n: &TestNet, txs: Vec<SignedTx>) -> BlockOutcome {
        let o = n.block(&mut self.a, txs.clone()).unwrap();
        for r in &o.results {
            assert_eq!(r.as_ref().map(|r| r.failed.clone()), Ok(None));
        }
        let ob = n.block(&mut self.b, txs).unwrap();
        assert_eq!(o.state_root, ob.state_root);
        assert_eq!(self.a.state_root(), o.state_root);
        for (k, v) in &o.writes {
            match v {
                Some(v) => self.db.insert(k.clone(), v.clone()),
                None => self.db.remove(k),
            };
        }
        o
    }

    /// Closes the current epoch on both states.
    fn close(&mut self, n: &TestNet) -> BlockOutcome {
        let votes = n.close_votes(&self.a, &[0, 1, 2, 3]);
        let o = self.block(n, votes);
        assert!(o.epoch_ended.is_some());
        o
    }

    /// Audits epoch `e` (the states are in `e + 1`): its readings agreed by three validators
    /// and every batch proved by its auditor, one transaction per block.
    fn audit(&mut self, n: &TestNet, e: Epoch) {
        let batches = audit_batches(&self.a, e, &series(&self.a, e, &READINGS)).unwrap();
        let commitments: Vec<BatchCommitment> = batches.iter().map(|(b, _)| *b).collect();
        for i in [0, 1, 2] {
            let body = TxBody::AttestReadings {
                epoch: e,
                batches: commitments.clone(),
            };
            let tx = sign_tx(&self.a, &n.operators[i], 0, body);
            self.block(n, vec![tx]);
        }
        for (b, devs) in &batches {
            let proof = prove(&self.a, e, devs);
            let tx = submit(&self.a, operator(n, &b.auditor), e, b.auditor, proof);
            self.block(n, vec![tx]);
        }
        assert_eq!(self.a.audits_for_epoch(e).len(), READINGS.len());
    }
}

/// `history_epochs` must leave room for the farthest read back (`2·audit_deadline_epochs + 1`).
#[test]
fn history_must_cover_the_audit_reassignment_window() {
    let mut p = TestNet::timed_params();
    let reach = 2 * p.audit_deadline_epochs + 1;
    p.history_epochs = reach;
    assert!(p.validate().is_err());
    p.history_epochs = reach + 1;
    p.validate().unwrap();
}

/// Audits and rewards of every epoch for twice the history window: the records and the
/// per-epoch reward entries of epochs past the window leave the state (and its tree: a tree
/// rebuilt from the surviving entries, or from a node's store kept by the blocks' write sets,
/// has the same root), the recent ones stay whole, the per-epoch tables stay bounded, and each
/// account's reward total still equals its balance growth, also after a snapshot reload.
#[test]
fn per_epoch_history_is_pruned_deterministically_and_reward_totals_stay_exact() {
    let mut n = TestNet::new_timed(4, 4);
    let reach = 2 * n.genesis.params.audit_deadline_epochs + 1;
    let h = reach + 1;
    n.genesis.params.history_epochs = h;
    let mut r = Replicas::new(&n);
    let accounts: Vec<Address> = r.a.accounts().map(|(a, _)| *a).collect();
    let before: BTreeMap<Address, Amount> = accounts
        .iter()
        .map(|a| (*a, r.a.account(a).balance))
        .collect();
    r.close(&n);
    // What each epoch's end paid, read while the ledger still holds it.
    let mut paid: BTreeMap<Address, (Amount, u64)> = BTreeMap::new();
    let mut max_held = 0usize;
    for e in 0..2 * h {
        r.audit(&n, e);
        let ended = r.close(&n).epoch_ended.unwrap();
        assert_eq!(ended, e + 1);
        let rewards = r.a.rewards_for_epoch(ended);
        assert!(!rewards.is_empty(), "epoch {ended} paid its auditors");
        for (a, x) in rewards {
            let p = paid.entry(a).or_default();
            p.0 += x;
            p.1 += 1;
        }
        let entries = r.a.entries();
        let of = |tag: u8| entries.iter().filter(|(k, _)| k[0] == tag).count();
        let held = (0..r.a.epoch())
            .filter(|x| !r.a.audits_for_epoch(*x).is_empty())
            .count();
        assert!(held as u64 <= h, "epoch {e}: {held} epochs of audits held");
        assert!(of(7) <= h as usize * READINGS.len());
        assert!(of(9) <= h as usize * accounts.len());
        max_held = max_held.max(of(7) + of(9));
    }
    let st = &r.a;
    let floor = st.history_floor();
    assert_eq!(floor, st.epoch() - h);
    assert!(floor > h, "ran past the window twice");
    // Old epochs: gone; the window: whole (the current epoch's predecessor is not audited yet).
    for e in 0..floor {
        assert!(st.history_pruned(e));
        assert!(st.audits_for_epoch(e).is_empty(), "epoch {e}");
        assert!(st.rewards_for_epoch(e).is_empty(), "epoch {e}");
    }
    for e in floor..st.epoch() - 1 {
        assert!(!st.history_pruned(e));
        assert_eq!(st.audits_for_epoch(e).len(), READINGS.len(), "epoch {e}");
    }
    for e in floor + 1..st.epoch() {
        assert!(!st.rewards_for_epoch(e).is_empty(), "epoch {e}");
    }
    // Bounded: the last epochs held as many entries as the steady state allows.
    assert!(max_held <= h as usize * (READINGS.len() + accounts.len()));

    // The tree dropped exactly what the maps dropped.
    let rebuilt = State::from_entries(st.entries()).unwrap();
    assert_eq!(rebuilt.state_root(), st.state_root());
    let stored = State::from_entries(r.db.clone()).unwrap();
    assert_eq!(stored.state_root(), st.state_root());
    assert_eq!(&stored, st);
    let back = State::from_snapshot(&st.snapshot()).unwrap();
    assert_eq!(back.state_root(), st.state_root());
    assert_eq!(&back, st);
    assert_eq!(r.b.state_root(), st.state_root());

    // Totals: exact after pruning and after reloads; `recent` lists only the window.
    assert!(!paid.is_empty());
    for (a, (total, epochs)) in &paid {
        let got = st.rewards_of(a, 1_000);
        assert_eq!(got.total, *total, "{a:?}");
        assert_eq!(got.epochs, *epochs, "{a:?}");
        assert_eq!(got.total, st.account(a).balance - before[a], "{a:?}");
        assert!(got.recent.len() as u64 <= h);
        assert!(got.recent.iter().all(|(e, _)| *e >= floor));
        assert!(
            got.recent.windows(2).all(|w| w[0].0 > w[1].0),
            "newest first"
        );
        let held: Vec<(Epoch, Amount)> = (floor..st.epoch())
            .rev()
            .filter_map(|e| {
                st.rewards_for_epoch(e)
                    .into_iter()
                    .find(|(x, _)| x == a)
                    .map(|(_, v)| (e, v))
            })
            .collect();
        assert_eq!(got.recent, held);
        assert_eq!(back.rewards_of(a, 1_000), got);
        assert_eq!(stored.rewards_of(a, 1_000), got);
    }
    let minted: Amount = paid.values().map(|(t, _)| t).sum();
    assert_eq!(st.supply().minted, minted);
    st.check_invariants().unwrap();
}

/// At scale: 400 audit records (each of a distinct provider, so 400 payouts) every epoch
/// for three history windows. Once the window is full the tree stops growing but for the one
/// seal each epoch adds; the reward totals stay one per recipient.
#[test]
fn the_state_tree_stays_flat_once_the_history_window_is_full() {
    const SUBJECTS: u16 = 400;
    let mut n = TestNet::new_timed(4, 4);
    n.genesis.params.reward_per_epoch = 1_000_000;
    let mut st = n.state().unwrap();
    let h = st.params().history_epochs;
    let validator = address(&n.operators[0]);
    let mut sizes = Vec::new();
    for e in 0..3 * h {
        for i in 0..SUBJECTS {
            let mut p = [0x5a; 32];
            p[..2].copy_from_slice(&i.to_be_bytes());
            let subject = AuditSubject::Provider(Address(p));
            let kind = AuditKind::EnergyOutput;
            let rec = AuditRecord {
                epoch: e,
                validator,
                subject,
                kind,
                result: AuditResult::Pass,
                proof_digest: [1; 32],
                work_units: 10,
                height: st.height(),
                recorded_in_epoch: e,
            };
            st.audits.entry(e).or_default().insert((subject, kind), rec);
        }
        assert_eq!(n.close_epoch(&mut st).unwrap().epoch_ended, Some(e));
        sizes.push(st.commitment.size());
    }
    let (full, end) = (sizes[2 * h as usize - 1], sizes[3 * h as usize - 1]);
    eprintln!(
        "tree (values, nodes) after {h}, {}, {} epochs: {:?} {full:?} {end:?}",
        2 * h,
        3 * h,
        sizes[h as usize - 1]
    );
    assert_eq!(end.0, full.0 + h as usize, "only the seals grow");
    assert!(end.1 <= full.1 + 2 * h as usize, "{full:?} → {end:?}");
    assert_eq!(st.audits.len() as u64, h);
    assert_eq!(st.reward_totals.len(), usize::from(SUBJECTS) + 1);
    assert_eq!(
        State::from_entries(st.entries()).unwrap().state_root(),
        st.state_root()
    );
    st.check_invariants().unwrap();
}
