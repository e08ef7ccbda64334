//! Committee-decided provider audits: GPU specs, the committee, reports, the ≥ 2/3 rule, and
//! what a decided outcome does (a storage fault, a GPU slash, below-spec records).

use super::*;
use crate::provider_audit::{gpu_deadline_ms, ProviderAuditKind, MAX_GPU_MODEL_LEN};
use crate::storage::{StorageFaultKind, LEDGER_REPORTER};

/// Claimed multiply-adds per second of the test GPU.
const CLAIM: u64 = 50_000_000;

fn gpu() -> DeviceId {
    device_id(&key(GPU_DEVICE))
}

fn storage() -> DeviceId {
    device_id(&key(STORAGE_DEVICE))
}

fn op(n: &TestNet, i: usize) -> Address {
    address(&n.operators[i])
}

fn spec_body(dev: DeviceId, claim: u64) -> TxBody {
    TxBody::RegisterGpuSpec {
        device: dev,
        model: "H200".into(),
        count: 1,
        claimed_mac_per_s: claim,
    }
}

/// Operator `i`'s report on `device` for `epoch` with the ledger's seed.
#[allow(clippy::too_many_arguments)]
fn report(
    st: &State,
    n: &TestNet,
    i: usize,
    epoch: Epoch,
    device: DeviceId,
    kind: ProviderAuditKind,
    passed: bool,
    measured: u64,
) -> SignedTx {
    let seed = st
        .provider_audit_seed(epoch, &device, kind)
        .unwrap_or([0; 32]);
    report_with(st, n, i, epoch, device, kind, passed, measured, seed, 100)
}

#[allow(clippy::too_many_arguments)]
fn report_with(
    st: &State,
    n: &TestNet,
    i: usize,
    epoch: Epoch,
    device: DeviceId,
    kind: ProviderAuditKind,
    passed: bool,
    measured: u64,
    seed: [u8; 32],
    elapsed_ms: u32,
) -> SignedTx {
    sign_tx(
        st,
        &n.operators[i],
        0,
        TxBody::ReportProviderAudit {
            epoch,
            device,
            kind,
            passed,
            seed,
            response_digest: [7; 32],
            elapsed_ms,
            measured_per_s: measured,
        },
    )
}

/// 4 equal validators (committee = all of them), user 0's GPU registered with [`CLAIM`] in
/// epoch 0, the state in epoch 1 (epoch 0 sealed).
fn gpu_net() -> (TestNet, State) {
    let n = TestNet::new(4, 4);
    let mut st = n.state().unwrap();
    let tx = sign_tx(&st, &n.users[0], 0, spec_body(gpu(), CLAIM));
    let r = st.accept(&tx);
    assert_eq!(r.failed, None);
    advance_to_epoch(&mut st, 1);
    (n, st)
}

fn gpu_slashes(st: &State, n: &TestNet) -> usize {
    st.slashes_of(&Offender::Provider(address(&n.users[0])))
        .iter()
        .filter(|s| s.reason == SlashReason::FailedGpuChallenge)
        .count()
}

fn decided(r: &TxReceipt) -> Option<(bool, bool)> {
    r.events.iter().find_map(|e| match e {
        Event::ProviderAuditDecided {
            passed, below_spec, ..
        } => Some((*passed, *below_spec)),
        _ => None,
    })
}

#[test]
fn gpu_specs_are_checked_and_replaceable() {
    let n = TestNet::new(4, 4);
    let mut st = n.state().unwrap();
    let owner = &n.users[0];
    let tx = sign_tx(&st, &n.users[1], 0, spec_body(gpu(), CLAIM));
    st.reject(&tx, TxError::NotDeviceOwner);
    let tx = sign_tx(&st, owner, 0, spec_body(storage(), CLAIM));
    st.reject(
        &tx,
        TxError::WrongDeviceKind {
            expected: DeviceKind::Gpu,
            found: DeviceKind::Storage,
        },
    );
    let tx = sign_tx(&st, owner, 0, spec_body(device_id(&key(99)), CLAIM));
    st.reject(&tx, TxError::UnknownDevice);
    let tx = sign_tx(&st, owner, 0, spec_body(gpu(), 0));
    st.reject(&tx, TxError::ZeroCapacity);
    let long = TxBody::RegisterGpuSpec {
        device: gpu(),
        model: "x".repeat(MAX_GPU_MODEL_LEN + 1),
        count: 1,
        claimed_mac_per_s: CLAIM,
    };
    let tx = sign_tx(&st, owner, 0, long);
    st.reject(&tx, TxError::InvalidText("gpu model"));
    assert!(st.gpu_spec(&gpu()).is_none());

    let tx = sign_tx(&st, owner, 0, spec_body(gpu(), CLAIM));
    st.accept(&tx);
    assert_eq!(st.gpu_spec(&gpu()).unwrap().claimed_mac_per_s, CLAIM);
    let tx = sign_tx(&st, owner, 0, spec_body(gpu(), CLAIM * 2));
    st.accept(&tx);
    assert_eq!(st.gpu_spec(&gpu()).unwrap().claimed_mac_per_s, CLAIM * 2);
    assert_eq!(st.gpu_specs.len(), 1);

    // Round trips through the codec, the snapshot and the entries.
    let back = SignedTx::decode(&tx.encode()).unwrap();
    assert_eq!(back, tx);
    assert_eq!(State::from_snapshot(&st.snapshot()).unwrap(), st);
    assert_eq!(
        State::from_entries(st.entries()).unwrap().state_root(),
        st.state_root()
    );
}

#[test]
fn challenges_come_from_the_seal_and_the_claim() {
    let n = TestNet::new(4, 4);
    let mut st = n.state().unwrap();
    // No spec: no GPU challenge; no commitment: no retrieval challenge.
    advance_to_epoch(&mut st, 1);
    assert!(st.gpu_challenge(0, &gpu()).is_none());
    assert!(st.retrieval_challenge(0, &storage()).is_empty());
    assert!(st.provider_audit_committee(0, &gpu()).is_empty());

    let (_, st) = gpu_net();
    assert!(
        st.gpu_challenge(1, &gpu()).is_none(),
        "epoch 1 is not sealed"
    );
    let c = st.gpu_challenge(0, &gpu()).unwrap();
    assert_eq!(c.n, 256);
    assert_eq!(c.deadline_ms, gpu_deadline_ms(256, CLAIM));
    let beacon = st.epoch_seal(0).unwrap().beacon;
    assert_eq!(c.seed, crate::provider_audit::gpu_seed(&beacon, 0, &gpu()));
    // Another node applying the same blocks derives the same challenge and committee.
    let (_, other) = gpu_net();
    assert_eq!(other.gpu_challenge(0, &gpu()), Some(c));
    let committee = st.provider_audit_committee(0, &gpu());
    assert_eq!(committee, other.provider_audit_committee(0, &gpu()));
    // 16 requested, 4 validators: all of them.
    let mut sorted = committee.clone();
    sorted.sort();
    let mut all: Vec<_> = st
        .epoch_seal(0)
        .unwrap()
        .committee
        .iter()
        .map(|(a, _)| *a)
        .collect();
    all.sort();
    assert_eq!(sorted, all);
}

#[test]
fn the_committee_is_drawn_by_stake_at_the_configured_size() {
    let mut n = TestNet::new(4, 4);
    n.genesis.params.provider_committee_size = 2;
    let mut st = n.state().unwrap();
    st.accept(&sign_tx(&st, &n.users[0], 0, spec_body(gpu(), CLAIM)));
    advance_to_epoch(&mut st, 1);
    let committee = st.provider_audit_committee(0, &gpu());
    assert_eq!(committee.len(), 2);
    let outsider = (0..4).find(|i| !committee.contains(&op(&n, *i))).unwrap();
    let members: Vec<usize> = (0..4).filter(|i| committee.contains(&op(&n, *i))).collect();
    let g = ProviderAuditKind::GpuCapacity;
    let tx = report(&st, &n, outsider, 0, gpu(), g, false, 0);
    st.reject(&tx, TxError::NotInCommittee);
    // One member of two (1/2 of the weight) decides nothing; both do.
    let r = st.accept(&report(&st, &n, members[0], 0, gpu(), g, false, 0));
    assert_eq!(decided(&r), None);
    let r = st.accept(&report(&st, &n, members[1], 0, gpu(), g, false, 0));
    assert_eq!(decided(&r), Some((false, false)));
    assert_eq!(gpu_slashes(&st, &n), 1);
}

#[test]
fn a_wrong_gpu_product_needs_two_thirds_and_slashes_once() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    let owner = address(&n.users[0]);
    let stake = st.provider(&owner).unwrap().stake;
    // 1 and 2 of 4 equal validators decide nothing.
    for i in 0..2 {
        let r = st.accept(&report(&st, &n, i, 0, gpu(), g, false, 0));
        assert_eq!(r.failed, None);
        assert_eq!(decided(&r), None);
        assert!(st.provider_audit(0, &gpu(), g).unwrap().decision.is_none());
        assert_eq!(gpu_slashes(&st, &n), 0);
    }
    // The third decides: the owner is slashed slash_failed_gpu_bp, with the reports.
    let r = st.accept(&report(&st, &n, 2, 0, gpu(), g, false, 0));
    assert_eq!(decided(&r), Some((false, false)));
    assert_eq!(gpu_slashes(&st, &n), 1);
    let bp = u64::from(st.params().slash_failed_gpu_bp);
    let cut = stake * bp / 10_000;
    assert_eq!(st.provider(&owner).unwrap().stake, stake - cut);
    let s = st.slashes().last().unwrap();
    assert_eq!(s.amount, cut);
    assert_eq!(s.reporter, LEDGER_REPORTER);
    // The device is suspended with the slash, so it is not challenged (and slashed) again.
    assert_eq!(st.device(&gpu()).unwrap().status, DeviceStatus::Suspended);
    assert!(st.gpu_challenge(0, &gpu()).is_none());
    match &s.evidence {
        SlashEvidence::ProviderAudit {
            epoch,
            device,
            kind,
            reports,
            ..
        } => {
            assert_eq!((*epoch, *device, *kind), (0, gpu(), g));
            assert_eq!(reports.len(), 3);
            assert!(reports.iter().all(|r| !r.passed));
        }
        other => panic!("unexpected evidence {other:?}"),
    }
    // A fourth report is refused (the suspended device is no longer challenged): no second
    // slash, and the decided round keeps its three reports.
    let r = st.accept(&report(&st, &n, 3, 0, gpu(), g, false, 0));
    assert!(r.failed.is_some());
    assert_eq!(decided(&r), None);
    assert_eq!(gpu_slashes(&st, &n), 1);
    assert_eq!(st.provider_audit(0, &gpu(), g).unwrap().reports.len(), 3);
    // The state with a round and a slash round-trips.
    assert_eq!(State::from_snapshot(&st.snapshot()).unwrap(), st);
    assert_eq!(
        State::from_entries(st.entries()).unwrap().state_root(),
        st.state_root()
    );
}

/// A GPU round decided passed pays its owner from the work pool once its report window has
/// closed (the end of epoch `0 + attestation_window_epochs`), once; a round decided below spec
/// pays in proportion to the measured throughput.
#[test]
fn a_passed_gpu_round_earns_work_rewards_once_settled() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    let owner = address(&n.users[0]);
    for i in 0..3 {
        let r = st.accept(&report(&st, &n, i, 0, gpu(), g, true, CLAIM));
        assert_eq!(r.failed, None);
    }
    // Epoch 1's round: below spec, half the claim.
    advance_to_epoch(&mut st, 2);
    for i in 0..3 {
        let r = st.accept(&report(&st, &n, i, 1, gpu(), g, true, CLAIM / 2));
        assert_eq!(r.failed, None);
    }
    let w = st.params().attestation_window_epochs;
    let before = st.account(&owner).balance;
    advance_to_epoch(&mut st, w + 3);
    let paid = |e: Epoch| -> Amount {
        st.rewards_for_epoch(e)
            .iter()
            .filter(|(a, _)| *a == owner)
            .map(|(_, x)| *x)
            .sum()
    };
    // The owner is the only worker either time, so both rounds take the whole work pool:
    // a single worker's share does not depend on its units (the scaling shows against others).
    assert!(paid(w) > 0 && paid(w + 1) > 0);
    assert_eq!(paid(w - 1) + paid(w + 2), 0);
    assert_eq!(st.account(&owner).balance, before + paid(w) + paid(w + 1));
    // The units: count · gpu_work_units_per_gpu, halved for the round at half the claim.
    let units = |e: Epoch| {
        let mut m = std::collections::BTreeMap::new();
        super::super::epochs::provider_work(&st, e, &mut m);
        m.get(&owner).copied().unwrap_or(0)
    };
    let full = u128::from(st.params().gpu_work_units_per_gpu);
    assert_eq!((units(w), units(w + 1)), (full, full / 2));
}

/// What an account was paid, by epoch and in total, is read back per account: the index
/// agrees with the rewards table (and the balance), survives a snapshot round trip, and an
/// account never paid reads as zero.
#[test]
fn rewards_are_listed_per_account_newest_first() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    let owner = address(&n.users[0]);
    for e in [0, 1] {
        advance_to_epoch(&mut st, e + 1);
        for i in 0..3 {
            let r = st.accept(&report(&st, &n, i, e, gpu(), g, true, CLAIM));
            assert_eq!(r.failed, None);
        }
    }
    let before = st.account(&owner).balance;
    let w = st.params().attestation_window_epochs;
    advance_to_epoch(&mut st, w + 3);
    let paid = |st: &State, e: Epoch| -> Amount {
        st.rewards_for_epoch(e)
            .iter()
            .filter(|(a, _)| *a == owner)
            .map(|(_, x)| *x)
            .sum()
    };
    let (first, second) = (paid(&st, w), paid(&st, w + 1));
    assert!(first > 0 && second > 0);

    let r = st.rewards_of(&owner, 10);
    assert_eq!(r.total, first + second);
    assert_eq!(r.total, st.account(&owner).balance - before);
    assert_eq!(r.epochs, 2);
    assert_eq!(r.recent, vec![(w + 1, second), (w, first)]);
    assert_eq!(st.rewards_of(&owner, 1).recent, vec![(w + 1, second)]);
    assert_eq!(st.rewards_of(&owner, 1).total, first + second);
    assert_eq!(
        st.rewards_of(&address(&n.users[3]), 10),
        crate::AccountRewards::default()
    );
    st.check_invariants().unwrap();

    let back = State::from_snapshot(&st.snapshot()).unwrap();
    assert_eq!(back.rewards_of(&owner, 10), r);
    assert_eq!(back, st);
}

#[test]
fn conflicting_reports_decide_nothing() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    for (i, passed) in [(0, true), (1, false), (2, true), (3, false)] {
        let r = st.accept(&report(&st, &n, i, 0, gpu(), g, passed, CLAIM));
        assert_eq!(decided(&r), None);
    }
    let round = st.provider_audit(0, &gpu(), g).unwrap();
    assert_eq!(round.reports.len(), 4);
    assert!(round.decision.is_none());
    assert_eq!(gpu_slashes(&st, &n), 0);
}

#[test]
fn a_slow_gpu_is_recorded_below_spec_not_slashed() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    let owner = address(&n.users[0]);
    let stake = st.provider(&owner).unwrap().stake;
    // Medians: [CLAIM/2, CLAIM/3, CLAIM·2] → lower median CLAIM/2 < CLAIM.
    for (i, m) in [(0, CLAIM / 2), (1, CLAIM / 3)] {
        st.accept(&report(&st, &n, i, 0, gpu(), g, true, m));
    }
    let r = st.accept(&report(&st, &n, 2, 0, gpu(), g, true, CLAIM * 2));
    assert_eq!(decided(&r), Some((true, true)));
    let d = st.provider_audit(0, &gpu(), g).unwrap().decision.unwrap();
    assert_eq!(d.median_measured_per_s, CLAIM / 2);
    assert!(d.below_spec && d.passed);
    assert_eq!(st.provider(&owner).unwrap().stake, stake);
    assert_eq!(st.slashes().len(), 0);

    // At the claim: a pass, not below spec.
    advance_to_epoch(&mut st, 2);
    for i in 0..2 {
        st.accept(&report(&st, &n, i, 1, gpu(), g, true, CLAIM));
    }
    let r = st.accept(&report(&st, &n, 2, 1, gpu(), g, true, CLAIM + 1));
    assert_eq!(decided(&r), Some((true, false)));
}

#[test]
fn reports_outside_the_rules_are_rejected() {
    let (n, mut st) = gpu_net();
    let g = ProviderAuditKind::GpuCapacity;
    let r = ProviderAuditKind::Retrieval;
    // Not a validator operator.
    let tx = sign_tx(
        &st,
        &n.users[2],
        0,
        TxBody::ReportProviderAudit {
            epoch: 0,
            device: gpu(),
            kind: g,
            passed: false,
            seed: st.provider_audit_seed(0, &gpu(), g).unwrap(),
            response_digest: [0; 32],
            elapsed_ms: 1,
            measured_per_s: 1,
        },
    );
    st.reject(&tx, TxError::NotActiveValidator);
    // The current epoch (not sealed) and a future one.
    let tx = report_with(&st, &n, 0, 1, gpu(), g, false, 0, [0; 32], 1);
    st.reject(&tx, TxError::ProviderAuditEpoch { current: 1, got: 1 });
    // A device of the wrong kind, an unknown one, a storage device without a commitment.
    let tx = report(&st, &n, 0, 0, gpu(), r, false, 0);
    st.reject(
        &tx,
        TxError::WrongDeviceKind {
            expected: DeviceKind::Storage,
            found: DeviceKind::Gpu,
        },
    );
    let tx = report(&st, &n, 0, 0, storage(), g, false, 0);
    st.reject(
        &tx,
        TxError::WrongDeviceKind {
            expected: DeviceKind::Gpu,
            found: DeviceKind::Storage,
        },
    );
    let tx = report(&st, &n, 0, 0, device_id(&key(99)), g, false, 0);
    st.reject(&tx, TxError::UnknownDevice);
    let tx = report(&st, &n, 0, 0, storage(), r, false, 0);
    st.reject(&tx, TxError::NoStorageCommitment);
    // A seed other than the ledger's; a pass past the deadline.
    let tx = report_with(&st, &n, 0, 0, gpu(), g, false, 0, [1; 32], 1);
    st.reject(
        &tx,
        TxError::ProviderAuditMismatch("seed is not the ledger's"),
    );
    let seed = st.provider_audit_seed(0, &gpu(), g).unwrap();
    let late = st.gpu_challenge(0, &gpu()).unwrap().deadline_ms + 1;
    let tx = report_with(&st, &n, 0, 0, gpu(), g, true, CLAIM, seed, late);
    st.reject(
        &tx,
        TxError::ProviderAuditMismatch("a pass after the deadline"),
    );
    // A late fail is a fail: accepted (and its encoding round-trips).
    let tx = report_with(&st, &n, 0, 0, gpu(), g, false, 0, seed, late);
    assert_eq!(SignedTx::decode(&tx.encode()).unwrap(), tx);
    st.accept(&tx);
    // A duplicate, even with another verdict.
    let tx = report(&st, &n, 0, 0, gpu(), g, true, CLAIM);
    st.reject(&tx, TxError::DuplicateReport);
    // After the window (attestation_window_epochs = 2): epoch 0 closes at the end of epoch 2.
    advance_to_epoch(&mut st, 3);
    let tx = report(&st, &n, 1, 0, gpu(), g, false, 0);
    st.reject(&tx, TxError::ProviderAuditEpoch { current: 3, got: 0 });
    // A GPU without a spec.
    let n2 = TestNet::new(4, 4);
    let mut plain = n2.state().unwrap();
    advance_to_epoch(&mut plain, 1);
    let tx = report_with(&plain, &n2, 0, 0, gpu(), g, false, 0, [0; 32], 1);
    plain.reject(&tx, TxError::NoGpuSpec);
}

/// The storage network: deadline and unbonding 4 epochs (so that missed proofs of epochs 0..3
/// are not due before the spot retrievals decide), suspended at 2 faults, slashed at 3.
fn storage_net() -> (TestNet, State) {
    let mut n = TestNet::new(4, 4);
    n.genesis.params.unbonding_epochs = 4;
    n.genesis.params.storage_deadline_epochs = 4;
    n.genesis.params.storage_challenge_k = 2;
    n.genesis.params.storage_faults_to_suspend = 2;
    n.genesis.params.storage_faults_to_slash = 3;
    let mut st = n.state().unwrap();
    let tx = sign_tx(
        &st,
        &n.users[0],
        0,
        TxBody::CommitStorage {
            device: storage(),
            root: [3; 32],
            depth: 10,
            num_chunks: 1_000,
        },
    );
    assert_eq!(st.accept(&tx).failed, None);
    (n, st)
}

#[test]
fn decided_retrieval_failures_suspend_then_slash() {
    let (n, mut st) = storage_net();
    let r = ProviderAuditKind::Retrieval;
    let owner = address(&n.users[0]);
    let stake = st.provider(&owner).unwrap().stake;
    advance_to_epoch(&mut st, 1);
    let idx = st.retrieval_challenge(0, &storage());
    assert_eq!(idx.len(), 4);
    assert!(idx.iter().all(|i| *i < 1_000));
    assert!(st.provider_audit_seed(0, &storage(), r).is_some());

    // A pass decided for epoch 0 is recorded; no fault.
    for i in 0..3 {
        st.accept(&report(&st, &n, i, 0, storage(), r, true, 1_000));
    }
    assert!(
        st.provider_audit(0, &storage(), r)
            .unwrap()
            .decision
            .unwrap()
            .passed
    );
    assert!(st.storage_commitment(&storage()).unwrap().faults.is_empty());

    // Epochs 1, 2, 3: three members report a failed retrieval each time.
    for e in 1..=3u64 {
        advance_to_epoch(&mut st, e + 1);
        // Two fail reports (1/2 of the weight) are no fault.
        for i in 0..2 {
            st.accept(&report(&st, &n, i, e, storage(), r, false, 0));
        }
        let before = st.storage_commitment(&storage()).unwrap().faults.len();
        assert_eq!(before, usize::try_from(e - 1).unwrap());
        let rec = st.accept(&report(&st, &n, 2, e, storage(), r, false, 0));
        assert_eq!(decided(&rec), Some((false, false)));
        let faults = st.storage_commitment(&storage()).unwrap().faults.clone();
        assert_eq!(faults.len(), before + 1);
        let last = faults.last().unwrap();
        assert_eq!(
            (last.epoch, last.kind),
            (e, StorageFaultKind::RetrievalFailed)
        );
        let status = st.device(&storage()).unwrap().status;
        let slashed = st
            .slashes_of(&Offender::Provider(owner))
            .iter()
            .filter(|s| s.reason == SlashReason::FailedRetrievability)
            .count();
        match e {
            1 => assert_eq!((status, slashed), (DeviceStatus::Active, 0)),
            2 => assert_eq!((status, slashed), (DeviceStatus::Suspended, 0)),
            _ => assert_eq!((status, slashed), (DeviceStatus::Suspended, 1)),
        }
        // The spot retrieval records no proof outcome: the proof for the epoch stays open.
        assert!(st.storage_audit(e, &storage()).is_none());
    }
    let bp = u64::from(st.params().slash_storage_fault_bp);
    assert_eq!(
        st.provider(&owner).unwrap().stake,
        stake - stake * bp / 10_000
    );
    // Slashed: no longer challenged, so no more reports.
    advance_to_epoch(&mut st, 5);
    assert!(st.retrieval_challenge(4, &storage()).is_empty());
    let tx = report_with(&st, &n, 0, 4, storage(), r, false, 0, [0; 32], 1);
    st.reject(&tx, TxError::NotChallenged);
}

#[test]
fn provider_audit_params_are_bounded() {
    let ok = Params::default();
    assert!(ok.validate().is_ok());
    for p in [
        Params {
            provider_committee_size: 0,
            ..ok.clone()
        },
        Params {
            provider_committee_size: 65,
            ..ok.clone()
        },
        Params {
            gpu_challenge_n: 0,
            ..ok.clone()
        },
        Params {
            gpu_challenge_n: 2049,
            ..ok.clone()
        },
        Params {
            retrieval_spot_chunks: 0,
            ..ok.clone()
        },
        Params {
            retrieval_spot_chunks: 65,
            ..ok.clone()
        },
    ] {
        assert!(p.validate().is_err(), "{p:?}");
    }
}
