//! Storage audits with real retrievability STARKs: commitments, the ledger-derived
//! challenge, proofs verified while applying the block, faults (failing proofs, missed
//! deadlines), suspension and slashing.

use groundtruth_proofs::por::{commit_reader, respond_reader};
use groundtruth_proofs::{prove_retrievability, Challenge, DataCommitment, SecurityLevel};

use super::*;
use crate::storage::{
    storage_seed, StorageFault, StorageFaultKind, StorageOutcome, LEDGER_REPORTER,
};

/// The fastest level the verifier accepts.
const LEVEL: SecurityLevel = SecurityLevel::Default100;
/// Smallest useful tree: 16 leaves.
const DEPTH: u8 = 4;
/// Chunks challenged per epoch (2 samples: a 1 024-row trace, fast in a debug build).
const K: u32 = 2;
/// Slash of the tests, basis points (10 %).
const SLASH_BP: u16 = 1_000;

/// A block-counted test network with small storage challenges: `k` = 2, deadline 1 epoch,
/// suspended at 2 faults, slashed 10 % at 3.
fn storage_net() -> (TestNet, State) {
    let mut n = TestNet::new(4, 4);
    n.genesis.params.storage_challenge_k = K;
    n.genesis.params.storage_deadline_epochs = 1;
    n.genesis.params.storage_faults_to_suspend = 2;
    n.genesis.params.storage_faults_to_slash = 3;
    n.genesis.params.slash_storage_fault_bp = SLASH_BP;
    let st = n.state().unwrap();
    (n, st)
}

/// 10 KiB of data (10 chunks, the last one partial) derived from `seed`.
fn data(seed: u8) -> Vec<u8> {
    (0..10_000u32)
        .map(|i| (i.wrapping_mul(31) ^ u32::from(seed).wrapping_mul(97)) as u8)
        .collect()
}

fn commitment(data: &[u8]) -> DataCommitment {
    commit_reader(data, DEPTH, None).unwrap()
}

fn commit_body(dev: DeviceId, c: &DataCommitment) -> TxBody {
    TxBody::CommitStorage {
        device: dev,
        root: c.root,
        depth: c.depth,
        num_chunks: c.num_chunks,
    }
}

/// A proof of `challenge` over `data` (the provider's side: one streaming pass, then the STARK).
fn prove(challenge: &Challenge, data: &[u8]) -> Vec<u8> {
    let response = respond_reader(data, challenge, None).unwrap();
    prove_retrievability(challenge, &response, LEVEL)
        .unwrap()
        .to_bytes()
        .unwrap()
}

fn submit(st: &State, k: &SigningKey, epoch: Epoch, dev: DeviceId, proof: Vec<u8>) -> SignedTx {
    sign_tx(
        st,
        k,
        0,
        TxBody::SubmitStorageProof {
            epoch,
            device: dev,
            proof,
        },
    )
}

fn storage_dev() -> DeviceId {
    device_id(&key(STORAGE_DEVICE))
}

/// The network with user 0's storage device committed to `data(1)` in epoch 0.
fn committed() -> (TestNet, State, Vec<u8>) {
    let (n, mut st) = storage_net();
    let bytes = data(1);
    let tx = sign_tx(
        &st,
        &n.users[0],
        0,
        commit_body(storage_dev(), &commitment(&bytes)),
    );
    assert_eq!(st.accept(&tx).failed, None);
    (n, st, bytes)
}

fn faults(st: &State, dev: &DeviceId) -> Vec<StorageFault> {
    st.storage_commitment(dev).unwrap().faults.clone()
}

#[test]
fn commitments_are_checked_and_fixed() {
    let (n, mut st) = storage_net();
    let c = commitment(&data(1));
    let owner = &n.users[0];
    // Only the owner, only a storage device, only ranges the AIR supports.
    let tx = sign_tx(&st, &n.users[1], 0, commit_body(storage_dev(), &c));
    st.reject(&tx, TxError::NotDeviceOwner);
    let energy = device_id(&key(ENERGY_DEVICE));
    let tx = sign_tx(&st, owner, 0, commit_body(energy, &c));
    st.reject(&tx, TxError::NotStorageDevice);
    let tx = sign_tx(&st, owner, 0, commit_body(device_id(&key(99)), &c));
    st.reject(&tx, TxError::UnknownDevice);
    let mut bad = c.clone();
    bad.num_chunks = 17; // 2^4 leaves
    let tx = sign_tx(&st, owner, 0, commit_body(storage_dev(), &bad));
    st.reject(
        &tx,
        TxError::InvalidStorageCommitment("chunk count out of range"),
    );
    let mut bad = c.clone();
    bad.depth = 45;
    let tx = sign_tx(&st, owner, 0, commit_body(storage_dev(), &bad));
    st.reject(&tx, TxError::InvalidStorageCommitment("depth out of range"));
    let mut bad = c.clone();
    bad.root = [0xff; 32]; // not a canonical field element
    let tx = sign_tx(&st, owner, 0, commit_body(storage_dev(), &bad));
    st.reject(
        &tx,
        TxError::InvalidStorageCommitment("root is not canonical"),
    );

    let tx = sign_tx(&st, owner, 0, commit_body(storage_dev(), &c));
    let r = st.accept(&tx);
    assert_eq!(r.failed, None);
    let rec = st.storage_commitment(&storage_dev()).unwrap();
    assert_eq!((rec.root, rec.depth, rec.num_chunks), (c.root, DEPTH, 10));
    assert_eq!((rec.owner, rec.since_epoch), (address(owner), 0));
    // Fixed for the device's life.
    let other = commitment(&data(2));
    let tx = sign_tx(&st, owner, 0, commit_body(storage_dev(), &other));
    st.reject(&tx, TxError::StorageCommitted);

    // The new tables are in the state root and survive both persistence paths.
    let again = State::from_entries(st.entries()).unwrap();
    assert_eq!(again.state_root(), st.state_root());
    assert_eq!(State::from_snapshot(&st.snapshot()).unwrap(), st);
}

#[test]
fn honest_provider_passes_every_epoch() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    let owner = &n.users[0];
    let mut seeds = Vec::new();
    for epoch in 0..4 {
        // Not before the epoch is sealed.
        assert!(st.storage_challenge(epoch, &dev).is_none());
        advance_to_epoch(&mut st, epoch + 1);
        let ch = st.storage_challenge(epoch, &dev).unwrap();
        // The challenge anyone recomputes from the seal and the commitment.
        let beacon = st.epoch_seal(epoch).unwrap().beacon;
        assert_eq!(ch.seed, storage_seed(&beacon, epoch, &dev));
        assert_eq!((ch.k, ch.depth, ch.num_chunks), (K, DEPTH, 10));
        assert!(ch.indices().unwrap().iter().all(|i| *i < 10));
        seeds.push(ch.seed);

        let proof = prove(&ch, &bytes);
        let digest = *blake3::hash(&proof).as_bytes();
        let r = st.accept(&submit(&st, owner, epoch, dev, proof.clone()));
        assert_eq!(r.failed, None);
        assert!(r.events.contains(&Event::StorageProofVerified {
            epoch,
            device: dev,
            owner: address(owner),
        }));
        let a = st.storage_audit(epoch, &dev).unwrap();
        assert_eq!(a.outcome, StorageOutcome::Passed);
        assert_eq!(a.proof_digest, digest);
        // One outcome per (epoch, device).
        let tx = submit(&st, owner, epoch, dev, proof);
        st.reject(&tx, TxError::DuplicateAudit);
    }
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 4, "each epoch has its own seed");
    // The end of epoch 4 closed epoch 3's window: every deadline so far was met.
    advance_to_epoch(&mut st, 5);
    assert!(faults(&st, &dev).is_empty());
    assert_eq!(st.storage_audits_for_epoch(3).len(), 1);
    assert_eq!(st.device(&dev).unwrap().status, DeviceStatus::Active);
    assert!(st.slashes().is_empty());
    assert_eq!(st.provider(&address(owner)).unwrap().stake, 1_000);
    // Rewards: epoch x settles at the end of epoch x + max(storage_deadline_epochs = 1,
    // attestation_window_epochs = 2): epochs 0, 1, 2 were paid at the ends of 2, 3, 4, each
    // from the work pool (the only worker), and nothing before.
    let paid = |e: Epoch| -> Amount {
        st.rewards_for_epoch(e)
            .iter()
            .filter(|(a, _)| *a == address(owner))
            .map(|(_, x)| *x)
            .sum()
    };
    assert_eq!(paid(0) + paid(1), 0);
    let pool = st.params().reward_for_epoch(2)
        - st.params().reward_for_epoch(2) * Amount::from(st.params().auditor_share_bp) / 10_000;
    for e in 2..=4 {
        assert_eq!(paid(e), pool, "epoch {e}");
    }
    st.check_invariants().unwrap();
}

#[test]
fn a_proof_with_another_seed_is_rejected_and_costs_its_fee() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    let owner = &n.users[0];
    advance_to_epoch(&mut st, 1);
    let honest = st.storage_challenge(0, &dev).unwrap();
    // A seed the provider would like better (here: any other one).
    let chosen = Challenge {
        seed: [7; 32],
        ..honest.clone()
    };
    let tx = sign_tx(
        &st,
        owner,
        5,
        TxBody::SubmitStorageProof {
            epoch: 0,
            device: dev,
            proof: prove(&chosen, &bytes),
        },
    );
    let before = st.account(&address(owner));
    st.reject(&tx, TxError::StorageMismatch("seed is not the ledger's"));
    let after = st.account(&address(owner));
    assert_eq!(after.balance, before.balance - 5);
    assert_eq!(after.nonce, before.nonce + 1);
    // Not a fault: nothing is recorded, and the honest proof is still accepted in time.
    assert!(st.storage_audit(0, &dev).is_none());
    let r = st.accept(&submit(&st, owner, 0, dev, prove(&honest, &bytes)));
    assert_eq!(r.failed, None);
    assert!(faults(&st, &dev).is_empty());
}

#[test]
fn a_proof_over_another_root_is_rejected() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    advance_to_epoch(&mut st, 1);
    let honest = st.storage_challenge(0, &dev).unwrap();
    // Other data, answered for the ledger's seed: a valid proof of the wrong root.
    let other = data(2);
    let c = commitment(&other);
    let ch = Challenge {
        root: c.root,
        ..honest.clone()
    };
    let tx = submit(&st, &n.users[0], 0, dev, prove(&ch, &other));
    st.reject(
        &tx,
        TxError::StorageMismatch("root is not the committed one"),
    );
    // Nor fewer chunks than the ledger asks for, nor garbage, nor too many bytes.
    let ch = Challenge { k: 1, ..honest };
    let tx = submit(&st, &n.users[0], 0, dev, prove(&ch, &bytes));
    st.reject(
        &tx,
        TxError::StorageMismatch("k is not storage_challenge_k"),
    );
    let tx = submit(&st, &n.users[0], 0, dev, vec![1, 2, 3]);
    st.reject(&tx, TxError::StorageMismatch("envelope does not decode"));
    let max = st.params().max_storage_proof_bytes;
    let tx = submit(&st, &n.users[0], 0, dev, vec![0; max as usize + 1]);
    st.reject(
        &tx,
        TxError::ProofTooLarge {
            max,
            got: max as usize + 1,
        },
    );
}

#[test]
fn only_the_owner_submits_and_only_inside_the_window() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    // Epoch 0 is not sealed yet.
    let tx = submit(&st, &n.users[0], 0, dev, vec![]);
    st.reject(&tx, TxError::StorageEpoch { current: 0, got: 0 });
    advance_to_epoch(&mut st, 1);
    let proof = prove(&st.storage_challenge(0, &dev).unwrap(), &bytes);
    // Another provider, a validator: not the owner, whatever the proof.
    for k in [&n.users[1], &n.operators[0]] {
        let tx = submit(&st, k, 0, dev, proof.clone());
        st.reject(&tx, TxError::NotDeviceOwner);
    }
    // A device without a commitment.
    let tx = submit(
        &st,
        &n.users[0],
        0,
        device_id(&key(GPU_DEVICE)),
        proof.clone(),
    );
    st.reject(&tx, TxError::NoStorageCommitment);
    // After the deadline (1 epoch), the proof is refused; the epoch was a missed fault.
    advance_to_epoch(&mut st, 2);
    let tx = submit(&st, &n.users[0], 0, dev, proof);
    st.reject(&tx, TxError::StorageEpoch { current: 2, got: 0 });
    assert_eq!(
        st.storage_audit(0, &dev).unwrap().outcome,
        StorageOutcome::Missed
    );
}

#[test]
fn a_proof_for_another_devices_challenge_fails() {
    let (n, mut st, bytes) = committed();
    let owner = &n.users[0];
    let (a, b_key) = (storage_dev(), key(203));
    let b = device_id(&b_key);
    let reg = TxBody::RegisterDevice {
        device: b,
        kind: DeviceKind::Storage,
        capacity: 1 << 20,
        region: String::new(),
        possession: possession(st.chain_id(), &address(owner), &b_key),
    };
    st.accept(&sign_tx(&st, owner, 0, reg));
    // Both devices commit the very same data: only the seed tells their challenges apart.
    let tx = sign_tx(&st, owner, 0, commit_body(b, &commitment(&bytes)));
    assert_eq!(st.accept(&tx).failed, None);
    advance_to_epoch(&mut st, 1);
    let (ca, cb) = (
        st.storage_challenge(0, &a).unwrap(),
        st.storage_challenge(0, &b).unwrap(),
    );
    assert_eq!(ca.root, cb.root);
    assert_ne!(ca.seed, cb.seed);
    let proof_a = prove(&ca, &bytes);
    let tx = submit(&st, owner, 0, b, proof_a.clone());
    st.reject(&tx, TxError::StorageMismatch("seed is not the ledger's"));
    assert_eq!(st.accept(&submit(&st, owner, 0, a, proof_a)).failed, None);
    assert_eq!(
        st.accept(&submit(&st, owner, 0, b, prove(&cb, &bytes)))
            .failed,
        None
    );
}

#[test]
fn a_proof_that_does_not_verify_is_a_fault() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    let owner = &n.users[0];
    advance_to_epoch(&mut st, 1);
    let ch = st.storage_challenge(0, &dev).unwrap();
    let mut proof = prove(&ch, &bytes);
    // The last bytes are the proof-of-work nonce: the statement still matches, the STARK fails.
    let last = proof.len() - 1;
    proof[last] ^= 0x55;
    let digest = *blake3::hash(&proof).as_bytes();
    let r = st.accept(&submit(&st, owner, 0, dev, proof));
    assert_eq!(r.failed, None);
    assert!(r.events.contains(&Event::StorageFault {
        epoch: 0,
        device: dev,
        owner: address(owner),
        kind: StorageFaultKind::BadProof {
            proof_digest: digest
        },
        faults: 1,
    }));
    let a = st.storage_audit(0, &dev).unwrap();
    assert!(matches!(a.outcome, StorageOutcome::Failed { .. }));
    assert_eq!(a.proof_digest, digest);
    // The fault stands: an honest proof for the same epoch is now a duplicate.
    let tx = submit(&st, owner, 0, dev, prove(&ch, &bytes));
    st.reject(&tx, TxError::DuplicateAudit);
    // The deadline does not count the epoch twice; epoch 1, unanswered, is the second fault
    // (recorded at the end of epoch 2), which suspends the device.
    advance_to_epoch(&mut st, 2);
    assert_eq!(faults(&st, &dev).len(), 1);
    advance_to_epoch(&mut st, 3);
    assert_eq!(
        faults(&st, &dev)
            .iter()
            .map(|f| f.epoch)
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    assert_eq!(st.device(&dev).unwrap().status, DeviceStatus::Suspended);
}

#[test]
fn missed_deadlines_suspend_then_slash_with_the_faults_as_evidence() {
    let (n, mut st) = storage_net();
    // User 1 owns one energy device; it retires it and runs one storage device, so its stake
    // is held only by the storage commitment.
    let owner = &n.users[1];
    let energy = device_id(&key(ENERGY_DEVICE_2));
    st.accept(&sign_tx(
        &st,
        owner,
        0,
        TxBody::RetireDevice { device: energy },
    ));
    let dev_key = key(204);
    let dev = device_id(&dev_key);
    let reg = TxBody::RegisterDevice {
        device: dev,
        kind: DeviceKind::Storage,
        capacity: 1 << 20,
        region: String::new(),
        possession: possession(st.chain_id(), &address(owner), &dev_key),
    };
    st.accept(&sign_tx(&st, owner, 0, reg));
    let tx = sign_tx(&st, owner, 0, commit_body(dev, &commitment(&data(3))));
    assert_eq!(st.accept(&tx).failed, None);
    let stake = st.provider(&address(owner)).unwrap().stake;
    assert_eq!(stake, 1_000);
    let burned = st.supply().burned;

    // Deadline 1: epoch e's fault is recorded at the end of epoch e + 1.
    advance_to_epoch(&mut st, 1);
    assert!(faults(&st, &dev).is_empty());
    advance_to_epoch(&mut st, 2);
    assert_eq!(
        faults(&st, &dev),
        vec![StorageFault {
            epoch: 0,
            kind: StorageFaultKind::Missed
        }]
    );
    assert_eq!(st.device(&dev).unwrap().status, DeviceStatus::Active);
    advance_to_epoch(&mut st, 3);
    assert_eq!(faults(&st, &dev).len(), 2);
    assert_eq!(st.device(&dev).unwrap().status, DeviceStatus::Suspended);
    assert!(st.slashes().is_empty());
    // Suspended, still challenged: the stake may not leave below the minimum.
    let tx = sign_tx(&st, owner, 0, TxBody::ProviderUnbond { amount: 950 });
    st.reject(&tx, TxError::ProviderHasDevices);

    // The third fault slashes 10 % of the provider's stake, once, with the faults as evidence.
    let b = Block {
        height: st.height() + 1,
        proposer: None,
        txs: vec![],
    };
    let mut last = None;
    while st.epoch() < 4 {
        let b = Block {
            height: st.height() + 1,
            ..b.clone()
        };
        last = Some(apply_block(&mut st, &b).unwrap());
    }
    let out = last.unwrap();
    let cut = stake * u64::from(SLASH_BP) / 10_000;
    assert_eq!(cut, 100);
    assert!(out.end_block_events.contains(&Event::Slashed {
        id: 0,
        offender: Offender::Provider(address(owner)),
        reason: SlashReason::FailedRetrievability,
        amount: cut,
    }));
    assert_eq!(st.provider(&address(owner)).unwrap().stake, stake - cut);
    assert_eq!(st.supply().burned, burned + cut);
    let s = &st.slashes()[0];
    assert_eq!(s.reporter, LEDGER_REPORTER);
    let expected: Vec<StorageFault> = (0..3)
        .map(|epoch| StorageFault {
            epoch,
            kind: StorageFaultKind::Missed,
        })
        .collect();
    assert_eq!(
        s.evidence,
        SlashEvidence::StorageFaults {
            device: dev,
            root: commitment(&data(3)).root,
            faults: expected,
        }
    );
    for e in 0..3 {
        assert_eq!(
            st.storage_audit(e, &dev).unwrap().outcome,
            StorageOutcome::Missed
        );
    }
    // Closed: no more challenges, faults or slashes; the stake may now leave.
    assert!(st.storage_commitment(&dev).unwrap().slashed);
    advance_to_epoch(&mut st, 8);
    assert_eq!(st.slashes().len(), 1);
    assert_eq!(faults(&st, &dev).len(), 3);
    assert!(st.storage_challenge(5, &dev).is_none());
    let tx = sign_tx(&st, owner, 0, TxBody::ProviderUnbond { amount: 900 });
    assert_eq!(st.accept(&tx).failed, None);
    st.check_invariants().unwrap();
    assert_eq!(
        State::from_entries(st.entries()).unwrap().state_root(),
        st.state_root()
    );
}

#[test]
fn retiring_ends_future_challenges_not_due_ones() {
    let (n, mut st, bytes) = committed();
    let dev = storage_dev();
    let owner = &n.users[0];
    advance_to_epoch(&mut st, 1);
    // Retired during epoch 1: epoch 0 is still due, epoch 1 is not challenged.
    st.accept(&sign_tx(
        &st,
        owner,
        0,
        TxBody::RetireDevice { device: dev },
    ));
    advance_to_epoch(&mut st, 2);
    assert_eq!(
        st.storage_audit(0, &dev).unwrap().outcome,
        StorageOutcome::Missed
    );
    assert!(st.storage_challenge(1, &dev).is_none());
    let tx = submit(
        &st,
        owner,
        1,
        dev,
        prove(&st.storage_challenge(0, &dev).unwrap(), &bytes),
    );
    st.reject(&tx, TxError::NotChallenged);
    advance_to_epoch(&mut st, 4);
    assert_eq!(faults(&st, &dev).len(), 1);
}

#[test]
fn a_key_rotation_does_not_move_the_challenge() {
    let (n, mut st, bytes) = committed();
    let old = storage_dev();
    let owner = &n.users[0];
    let new_key = key(205);
    let new = device_id(&new_key);
    let tx = sign_tx(
        &st,
        owner,
        0,
        TxBody::RotateDeviceKey {
            old,
            new,
            possession: possession(st.chain_id(), &address(owner), &new_key),
            from_seq: 0,
        },
    );
    st.accept(&tx);
    advance_to_epoch(&mut st, 1);
    // The seed is the committing key's, whichever key names the device.
    let ch = st.storage_challenge(0, &new).unwrap();
    assert_eq!(Some(ch.clone()), st.storage_challenge(0, &old));
    let beacon = st.epoch_seal(0).unwrap().beacon;
    assert_eq!(ch.seed, storage_seed(&beacon, 0, &old));
    assert_eq!(
        st.accept(&submit(&st, owner, 0, new, prove(&ch, &bytes)))
            .failed,
        None
    );
    assert_eq!(
        st.storage_audit(0, &old).unwrap().outcome,
        StorageOutcome::Passed
    );
}

#[test]
fn genesis_checks_the_storage_params() {
    let mut p = TestNet::params();
    p.storage_challenge_k = 0;
    assert!(p.validate().is_err());
    p.storage_challenge_k = 4_097;
    assert!(p.validate().is_err());
    p.storage_challenge_k = 4_096;
    p.validate().unwrap();
    p.storage_deadline_epochs = p.unbonding_epochs + 1;
    assert!(p.validate().is_err());
    p.storage_deadline_epochs = 1;
    p.storage_faults_to_slash = p.storage_faults_to_suspend - 1;
    assert!(p.validate().is_err());
    p.storage_faults_to_slash = 65;
    assert!(p.validate().is_err());
    p.storage_faults_to_slash = 3;
    p.slash_storage_fault_bp = 10_001;
    assert!(p.validate().is_err());
    // A genesis that names none of them gets the defaults.
    let g = Genesis::from_toml("[params]\nepoch_length = 5\n").unwrap();
    assert_eq!(g.params.storage_challenge_k, 100);
    assert_eq!(g.params.storage_faults_to_slash, 3);
    let g = Genesis::from_toml("[params]\nstorage_challenge_k = 8\nslash_storage_fault_bp = 50\n")
        .unwrap();
    assert_eq!(
        (
            g.params.storage_challenge_k,
            g.params.slash_storage_fault_bp
        ),
        (8, 50)
    );
}
