//! Property tests of the ledger state machine: random transaction sequences (valid and
//! invalid mixed) keep supply accounting exact, never change state on rejection, and replay
//! to the same state roots; forged or identical evidence is rejected; the codec round-trips
//! and never panics on garbage; the same on a timed-epoch network (epochs closed by
//! `CloseEpoch` votes, failing audit proofs slashing their submitters). Also parses every
//! genesis file in `configs/`.
#![allow(clippy::unwrap_used)]

use ed25519_dalek::SigningKey;
use groundtruth_ledger::testkit::{
    address, device_id, energy_reading, key, possession, sign_tx, vote, TestNet, CHAIN_ID,
    ENERGY_DEVICE, GPU_DEVICE, STORAGE_DEVICE,
};
use groundtruth_ledger::{
    apply_block, apply_raw_block, apply_tx, BatchCommitment, Block, BlockContext, DeviceKind,
    DoubleSignEvidence, Event, Evidence, Genesis, SignedTx, State, TxBody, TxError, VoteKind,
};
use proptest::prelude::*;

/// The body is rejected with `want`, but the transaction is still included: its fee is paid
/// (burned: no proposer) and its nonce consumed, and nothing else changes (no slash).
fn assert_body_rejected(st: &mut State, tx: &SignedTx, want: TxError) {
    let ctx = BlockContext {
        height: st.height() + 1,
        proposer: None,
    };
    assert_eq!(
        groundtruth_ledger::check_tx(st, tx, &ctx),
        Err(want.clone())
    );
    let before = st.account(&tx.tx.signer);
    let (slashes, burned) = (st.slashes().len(), st.supply().burned);
    let r = apply_tx(st, tx, &ctx).unwrap();
    assert_eq!(r.failed, Some(want));
    let after = st.account(&tx.tx.signer);
    assert_eq!(after.balance, before.balance - tx.tx.fee);
    assert_eq!(after.nonce, before.nonce + 1);
    assert_eq!(st.slashes().len(), slashes);
    assert_eq!(st.supply().burned, burned + tx.tx.fee);
}

/// Signers: validator operators 0..4 then users 0..4.
const SIGNERS: usize = 8;
/// Device key seeds the generator picks from (genesis devices and fresh ones).
const DEVICE_SEEDS: [u8; 8] = [
    ENERGY_DEVICE,
    GPU_DEVICE,
    STORAGE_DEVICE,
    210,
    180,
    181,
    182,
    183,
];

#[derive(Debug, Clone)]
enum Action {
    /// Attests the epoch `back` epochs ago: no batch (`root` 0), or one batch of operator 0
    /// with commitment `[root; 32]` and `root` readings.
    Attest {
        who: usize,
        back: u64,
        root: u8,
    },
    Delegate {
        who: usize,
        validator: usize,
        amount: u64,
    },
    Undelegate {
        who: usize,
        validator: usize,
        amount: u64,
    },
    Transfer {
        from: usize,
        to: usize,
        amount: u64,
        fee: u64,
    },
    CreateValidator {
        who: usize,
        ck: u8,
        stake: u64,
    },
    Bond {
        who: usize,
        amount: u64,
    },
    Unbond {
        who: usize,
        amount: u64,
    },
    Unjail {
        who: usize,
    },
    RegisterProvider {
        who: usize,
        stake: u64,
    },
    ProviderBond {
        who: usize,
        amount: u64,
    },
    ProviderUnbond {
        who: usize,
        amount: u64,
    },
    RegisterDevice {
        who: usize,
        dev: usize,
        kind: u8,
        capacity: u64,
    },
    Rotate {
        who: usize,
        old: usize,
        new: usize,
    },
    Retire {
        who: usize,
        dev: usize,
    },
    /// A `SubmitAuditProof` of `len` garbage bytes for the batch of operator `batch`, for the
    /// epoch `back` epochs ago.
    AuditProof {
        who: usize,
        batch: usize,
        back: u64,
        len: usize,
    },
    /// A `CloseEpoch` vote for the current epoch (or, `stale`, the previous one).
    CloseEpoch {
        who: usize,
        stale: bool,
    },
    DoubleSign {
        who: usize,
        validator: usize,
        height: u64,
    },
    Equivocation {
        who: usize,
        dev: usize,
        seq: u64,
    },
    ForgedEquivocation {
        who: usize,
        dev: usize,
        seq: u64,
    },
    BadSignature {
        who: usize,
    },
    StaleNonce {
        who: usize,
    },
    EndBlock,
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..5, 1u64..3_000, 5_000u64..20_000, Just(u64::MAX)]
}

/// Mostly validator operators, sometimes anyone.
fn operator() -> impl Strategy<Value = usize> {
    prop_oneof![3 => 0usize..4, 1 => 0..SIGNERS]
}

fn action() -> impl Strategy<Value = Action> {
    let s = 0..SIGNERS;
    let d = 0..DEVICE_SEEDS.len();
    prop_oneof![
        4 => (s.clone(), s.clone(), amount(), 0u64..3)
            .prop_map(|(from, to, amount, fee)| Action::Transfer { from, to, amount, fee }),
        1 => (s.clone(), 40u8..46, amount())
            .prop_map(|(who, ck, stake)| Action::CreateValidator { who, ck, stake }),
        2 => (operator(), amount()).prop_map(|(who, amount)| Action::Bond { who, amount }),
        2 => (operator(), amount()).prop_map(|(who, amount)| Action::Unbond { who, amount }),
        1 => operator().prop_map(|who| Action::Unjail { who }),
        1 => (s.clone(), amount()).prop_map(|(who, stake)| Action::RegisterProvider { who, stake }),
        1 => (s.clone(), amount()).prop_map(|(who, amount)| Action::ProviderBond { who, amount }),
        1 => (s.clone(), amount()).prop_map(|(who, amount)| Action::ProviderUnbond { who, amount }),
        2 => (s.clone(), d.clone(), 0u8..3, 0u64..10)
            .prop_map(|(who, dev, kind, capacity)| Action::RegisterDevice { who, dev, kind, capacity }),
        1 => (s.clone(), d.clone(), d.clone()).prop_map(|(who, old, new)| Action::Rotate { who, old, new }),
        1 => (s.clone(), d.clone()).prop_map(|(who, dev)| Action::Retire { who, dev }),
        3 => (operator(), 0usize..4, 0u64..4, 0usize..64)
            .prop_map(|(who, batch, back, len)| Action::AuditProof { who, batch, back, len }),
        3 => (operator(), prop::bool::weighted(0.1))
            .prop_map(|(who, stale)| Action::CloseEpoch { who, stale }),
        1 => (s.clone(), 0usize..4, 1u64..6)
            .prop_map(|(who, validator, height)| Action::DoubleSign { who, validator, height }),
        1 => (s.clone(), d.clone(), 0u64..3).prop_map(|(who, dev, seq)| Action::Equivocation { who, dev, seq }),
        1 => (s.clone(), d.clone(), 0u64..3)
            .prop_map(|(who, dev, seq)| Action::ForgedEquivocation { who, dev, seq }),
        2 => (s.clone(), 0usize..5, amount())
            .prop_map(|(who, validator, amount)| Action::Delegate { who, validator, amount }),
        2 => (s.clone(), 0usize..5, amount())
            .prop_map(|(who, validator, amount)| Action::Undelegate { who, validator, amount }),
        3 => (operator(), 0u64..4, prop_oneof![1 => Just(0u8), 4 => 1u8..3])
            .prop_map(|(who, back, root)| Action::Attest { who, back, root }),
        1 => s.clone().prop_map(|who| Action::BadSignature { who }),
        1 => s.prop_map(|who| Action::StaleNonce { who }),
        3 => Just(Action::EndBlock),
    ]
}

struct World {
    net: TestNet,
}

impl World {
    fn signer(&self, i: usize) -> &SigningKey {
        if i < 4 {
            &self.net.operators[i]
        } else {
            &self.net.users[i - 4]
        }
    }

    /// Builds the transaction for `a`, signed with the signer's next nonce in `st`.
    fn tx(&self, st: &State, a: &Action) -> Option<SignedTx> {
        let dev = |i: usize| key(DEVICE_SEEDS[i % DEVICE_SEEDS.len()]);
        let kinds = [DeviceKind::Energy, DeviceKind::Gpu, DeviceKind::Storage];
        Some(match a {
            Action::Transfer {
                from,
                to,
                amount,
                fee,
            } => sign_tx(
                st,
                self.signer(*from),
                *fee,
                TxBody::Transfer {
                    to: address(self.signer(*to)),
                    amount: *amount,
                },
            ),
            Action::CreateValidator { who, ck, stake } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::CreateValidator {
                    consensus_key: address(&key(*ck)),
                    stake: *stake,
                },
            ),
            Action::Bond { who, amount } => {
                sign_tx(st, self.signer(*who), 0, TxBody::Bond { amount: *amount })
            }
            Action::Unbond { who, amount } => {
                sign_tx(st, self.signer(*who), 0, TxBody::Unbond { amount: *amount })
            }
            Action::Unjail { who } => sign_tx(st, self.signer(*who), 0, TxBody::Unjail),
            Action::RegisterProvider { who, stake } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::RegisterProvider {
                    stake: *stake,
                    data_root: [1; 32],
                },
            ),
            Action::ProviderBond { who, amount } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::ProviderBond { amount: *amount },
            ),
            Action::ProviderUnbond { who, amount } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::ProviderUnbond { amount: *amount },
            ),
            Action::RegisterDevice {
                who,
                dev: d,
                kind,
                capacity,
            } => {
                let k = self.signer(*who);
                let dk = dev(*d);
                sign_tx(
                    st,
                    k,
                    0,
                    TxBody::RegisterDevice {
                        device: device_id(&dk),
                        kind: kinds[usize::from(*kind) % 3],
                        capacity: *capacity,
                        region: "EU".into(),
                        possession: possession(CHAIN_ID, &address(k), &dk),
                    },
                )
            }
            Action::Rotate { who, old, new } => {
                let k = self.signer(*who);
                let nk = dev(*new);
                sign_tx(
                    st,
                    k,
                    0,
                    TxBody::RotateDeviceKey {
                        old: device_id(&dev(*old)),
                        new: device_id(&nk),
                        possession: possession(CHAIN_ID, &address(k), &nk),
                        from_seq: 0,
                    },
                )
            }
            Action::Retire { who, dev: d } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::RetireDevice {
                    device: device_id(&dev(*d)),
                },
            ),
            Action::AuditProof {
                who,
                batch,
                back,
                len,
            } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::SubmitAuditProof {
                    epoch: st.epoch().saturating_sub(*back),
                    batch: address(self.signer(*batch)),
                    proof: vec![0x5a; *len],
                },
            ),
            Action::CloseEpoch { who, stale } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::CloseEpoch {
                    epoch: st.epoch().wrapping_sub(u64::from(*stale)),
                },
            ),
            Action::DoubleSign {
                who,
                validator,
                height,
            } => {
                let ck = &self.net.consensus[*validator];
                sign_tx(
                    st,
                    self.signer(*who),
                    0,
                    TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
                        validator_key: address(ck),
                        vote_a: vote(ck, VoteKind::Prevote, *height, 0, [1; 32]),
                        vote_b: vote(ck, VoteKind::Prevote, *height, 0, [2; 32]),
                    })),
                )
            }
            Action::Equivocation { who, dev: d, seq }
            | Action::ForgedEquivocation { who, dev: d, seq } => {
                let seed = DEVICE_SEEDS[*d % DEVICE_SEEDS.len()];
                let mut b = energy_reading(seed, *seq, 2);
                if matches!(a, Action::ForgedEquivocation { .. }) {
                    b.signature[5] ^= 0x40;
                }
                sign_tx(
                    st,
                    self.signer(*who),
                    0,
                    TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
                        a: energy_reading(seed, *seq, 1),
                        b,
                    }),
                )
            }
            Action::Delegate {
                who,
                validator,
                amount,
            } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::Delegate {
                    validator: address(self.signer(*validator)),
                    amount: *amount,
                },
            ),
            Action::Undelegate {
                who,
                validator,
                amount,
            } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::Undelegate {
                    validator: address(self.signer(*validator)),
                    amount: *amount,
                },
            ),
            Action::Attest { who, back, root } => sign_tx(
                st,
                self.signer(*who),
                0,
                TxBody::AttestReadings {
                    epoch: st.epoch().saturating_sub(*back),
                    batches: if *root == 0 {
                        vec![]
                    } else {
                        vec![BatchCommitment {
                            auditor: address(self.signer(0)),
                            commitment: [*root; 32],
                            readings: u64::from(*root),
                        }]
                    },
                },
            ),
            Action::BadSignature { who } => {
                let mut tx = sign_tx(
                    st,
                    self.signer(*who),
                    0,
                    TxBody::Transfer {
                        to: address(self.signer(0)),
                        amount: 1,
                    },
                );
                tx.signature[0] ^= 1;
                tx
            }
            Action::StaleNonce { who } => {
                let k = self.signer(*who);
                let mut tx = sign_tx(
                    st,
                    k,
                    0,
                    TxBody::Transfer {
                        to: address(k),
                        amount: 1,
                    },
                );
                if tx.tx.nonce == 0 {
                    tx.tx.nonce = 5;
                } else {
                    tx.tx.nonce -= 1;
                }
                tx.tx.clone().sign(CHAIN_ID, k)
            }
            Action::EndBlock => return None,
        })
    }
}

/// Supply tallied from events alone, independent of the state's own counters.
#[derive(Default, Debug)]
struct Tally {
    minted: u128,
    burned: u128,
}

impl Tally {
    fn add(&mut self, events: &[Event]) {
        for e in events {
            match e {
                Event::RewardPaid { amount, .. } => self.minted += u128::from(*amount),
                Event::Slashed { amount, .. } => self.burned += u128::from(*amount),
                Event::FeePaid {
                    to: None, amount, ..
                } => self.burned += u128::from(*amount),
                _ => {}
            }
        }
    }
}

/// Runs `actions` as blocks; returns the blocks, the per-block roots and how many txs passed.
fn run(world: &World, actions: &[Action]) -> (Vec<Block>, Vec<[u8; 32]>, usize) {
    let mut st = world.net.state().unwrap();
    let genesis_total = st.total_held();
    let mut tally = Tally::default();
    let mut blocks = Vec::new();
    let mut roots = Vec::new();
    let mut accepted = 0;
    let mut chunks: Vec<&[Action]> = actions.split(|a| matches!(a, Action::EndBlock)).collect();
    chunks.push(&[]); // always at least one trailing (possibly empty) block
    for (i, chunk) in chunks.iter().enumerate() {
        let height = st.height() + 1;
        let proposer = world.net.consensus.get(i % 5).map(address); // index 4: no proposer
        let ctx = BlockContext { height, proposer };
        // Build the block against a scratch copy so that nonces chain within the block, and
        // check that every rejection leaves the scratch state untouched.
        let mut scratch = st.clone();
        let mut txs = Vec::new();
        let mut expected = Vec::new();
        for a in *chunk {
            let Some(tx) = world.tx(&scratch, a) else {
                continue;
            };
            let root = scratch.state_root();
            let r = apply_tx(&mut scratch, &tx, &ctx);
            if let Err(e) = &r {
                assert_eq!(
                    scratch.state_root(),
                    root,
                    "rejected tx changed the root: {e}"
                );
                assert!(!e.reason().is_empty());
            }
            expected.push(r.map(|r| r.events));
            txs.push(tx);
        }
        let block = Block {
            height,
            proposer,
            txs,
        };
        let out = apply_block(&mut st, &block).unwrap();
        let got: Vec<_> = out
            .results
            .iter()
            .map(|r| r.clone().map(|r| r.events))
            .collect();
        assert_eq!(
            got, expected,
            "block results differ from tx-by-tx application"
        );
        for r in out.results.iter().flatten() {
            tally.add(&r.events);
            accepted += 1;
        }
        tally.add(&out.end_block_events);
        st.check_invariants().unwrap();
        // Supply: held == genesis + minted − burned, from independent event tallies.
        assert_eq!(st.total_held() + tally.burned, genesis_total + tally.minted);
        assert_eq!(u128::from(st.supply().minted), tally.minted);
        assert_eq!(u128::from(st.supply().burned), tally.burned);
        // No balance or stake exceeds the supply (u64 types rule out negatives; this rules
        // out wrapped "negative" values).
        for (_, acct) in st.accounts() {
            assert!(u128::from(acct.balance) <= st.total_held());
        }
        for (k, p) in st.validator_set() {
            let v = st.validator_by_consensus_key(&k).unwrap();
            assert!(p > 0 && v.status == groundtruth_ledger::ValidatorStatus::Active);
        }
        assert_eq!(out.state_root, st.state_root());
        // The snapshot reads back to the same state with the same root, the flat baseline
        // root is its keyed hash, and the state rebuilt from its entries (what the node
        // persists) has the root the tree reached incrementally.
        let snap = st.snapshot();
        let back = State::from_snapshot(&snap).unwrap();
        assert_eq!(back, st);
        assert_eq!(back.state_root(), out.state_root);
        let keyed = blake3::Hasher::new_derive_key(groundtruth_ledger::STATE_ROOT_CONTEXT)
            .update(&snap)
            .finalize();
        assert_eq!(*keyed.as_bytes(), st.flat_root());
        let rebuilt = State::from_entries(st.entries()).unwrap();
        assert_eq!(rebuilt, st);
        assert_eq!(rebuilt.state_root(), out.state_root);
        roots.push(out.state_root);
        blocks.push(block);
    }
    (blocks, roots, accepted)
}

/// Runs `actions`, then replays the blocks from genesis (decoded from their canonical bytes,
/// and as raw transaction bytes) and checks every root.
fn replay(world: &World, actions: &[Action]) -> Result<(), TestCaseError> {
    let (blocks, roots, _) = run(world, actions);
    let mut replica = world.net.state().unwrap();
    let mut raw_replica = world.net.state().unwrap();
    for (b, root) in blocks.iter().zip(&roots) {
        let decoded = Block::decode(&b.encode()).unwrap();
        let out = apply_block(&mut replica, &decoded).unwrap();
        prop_assert_eq!(&out.state_root, root);
        let raw: Vec<Vec<u8>> = b.txs.iter().map(SignedTx::encode).collect();
        let out = apply_raw_block(&mut raw_replica, b.height, b.proposer, &raw).unwrap();
        prop_assert_eq!(&out.state_root, root);
    }
    prop_assert_eq!(&replica, &raw_replica);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random mixed sequences: supply accounting exact, rejections change nothing, invariants
    /// hold after every block, and replay from genesis gives the same roots.
    #[test]
    fn random_sequences_conserve_supply_and_replay(actions in prop::collection::vec(action(), 1..80)) {
        replay(&World { net: TestNet::new(4, 4) }, &actions)?;
    }

    /// The same on a timed-epoch network: epochs end on `CloseEpoch` votes, garbage audit
    /// proofs for agreed batches slash their submitters.
    #[test]
    fn random_timed_sequences_conserve_supply_and_replay(actions in prop::collection::vec(action(), 1..80)) {
        replay(&World { net: TestNet::new_timed(4, 4) }, &actions)?;
    }

    /// Evidence whose second reading's signature was tampered with is rejected and changes
    /// nothing.
    #[test]
    fn equivocation_with_forged_signature_is_rejected(
        seq in any::<u64>(), byte in 0usize..64, bit in 0u8..8, wh in 1u64..1_000
    ) {
        let net = TestNet::new(4, 4);
        let mut st = net.state().unwrap();
        let a = energy_reading(ENERGY_DEVICE, seq, 0);
        let mut b = energy_reading(ENERGY_DEVICE, seq, wh);
        b.signature[byte] ^= 1 << bit;
        let tx = sign_tx(&st, &net.users[2], 0, TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b }));
        assert_body_rejected(&mut st, &tx, TxError::EvidenceSignature);
        prop_assert!(st.slashes().is_empty());
    }

    /// A reading altered after signing (same device and seq) does not verify either.
    #[test]
    fn equivocation_with_altered_reading_is_rejected(seq in any::<u64>(), wh in 1u64..1_000) {
        let net = TestNet::new(4, 4);
        let mut st = net.state().unwrap();
        let a = energy_reading(ENERGY_DEVICE, seq, 0);
        let mut b = a;
        b.reading.timestamp_ms = b.reading.timestamp_ms.wrapping_add(wh);
        let tx = sign_tx(&st, &net.users[2], 0, TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b }));
        assert_body_rejected(&mut st, &tx, TxError::EvidenceSignature);
    }

    /// Two identical readings are not equivocation.
    #[test]
    fn equivocation_with_identical_readings_is_rejected(seq in any::<u64>(), wh in any::<u64>()) {
        let net = TestNet::new(4, 4);
        let mut st = net.state().unwrap();
        let a = energy_reading(ENERGY_DEVICE, seq, wh);
        let tx = sign_tx(&st, &net.users[2], 0, TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b: a }));
        assert_body_rejected(&mut st, &tx, TxError::InvalidEvidence("readings are identical"));
    }

    /// A double-sign whose vote signature was tampered with is rejected.
    #[test]
    fn double_sign_with_forged_signature_is_rejected(height in any::<u64>(), byte in 0usize..64, bit in 0u8..8) {
        let net = TestNet::new(4, 4);
        let mut st = net.state().unwrap();
        let ck = &net.consensus[0];
        let mut vote_b = vote(ck, VoteKind::Precommit, height, 0, [2; 32]);
        vote_b.signature[byte] ^= 1 << bit;
        let ev = DoubleSignEvidence {
            validator_key: address(ck),
            vote_a: vote(ck, VoteKind::Precommit, height, 0, [1; 32]),
            vote_b,
        };
        let tx = sign_tx(&st, &net.users[2], 0, TxBody::SubmitEvidence(Evidence::DoubleSign(ev)));
        assert_body_rejected(&mut st, &tx, TxError::EvidenceSignature);
    }

    /// A snapshot with one byte changed either fails to load or loads a different state
    /// (never panics).
    #[test]
    fn corrupted_snapshots_are_rejected_or_differ(flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let st = TestNet::new(4, 4).state().unwrap();
        let mut snap = st.snapshot();
        let i = flip.index(snap.len());
        snap[i] ^= 1 << bit;
        if let Ok(other) = State::from_snapshot(&snap) {
            prop_assert_ne!(other.state_root(), st.state_root());
        }
        snap.truncate(i);
        prop_assert!(State::from_snapshot(&snap).is_err());
    }

    /// Decoding arbitrary bytes never panics; whatever decodes re-encodes to the same bytes.
    #[test]
    fn decoding_garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(tx) = SignedTx::decode(&bytes) {
            prop_assert_eq!(tx.encode(), bytes.clone());
        }
        if let Ok(b) = Block::decode(&bytes) {
            prop_assert_eq!(b.encode(), bytes);
        }
    }

    /// Transactions built from random actions round-trip through the codec; flipping any
    /// byte of a valid transaction makes it undecodable or changes its meaning (the
    /// signature then fails).
    #[test]
    fn tx_codec_round_trips(a in action(), flip in any::<prop::sample::Index>()) {
        let world = World { net: TestNet::new(4, 4) };
        let st = world.net.state().unwrap();
        if let Some(tx) = world.tx(&st, &a) {
            let bytes = tx.encode();
            prop_assert_eq!(&SignedTx::decode(&bytes).unwrap(), &tx);
            let mut bad = bytes.clone();
            let i = flip.index(bad.len());
            bad[i] ^= 0x01;
            if let Ok(t) = SignedTx::decode(&bad) {
                prop_assert!(t.verify(CHAIN_ID).is_err());
            }
        }
    }
}

/// A long deterministic run that accepts many transactions (guards the generator against
/// producing only rejections).
#[test]
fn mixed_run_accepts_a_fair_share() {
    let world = World {
        net: TestNet::new(4, 4),
    };
    let mut actions = Vec::new();
    for i in 0..200usize {
        actions.push(match i % 7 {
            0 => Action::Transfer {
                from: i % 8,
                to: (i + 3) % 8,
                amount: 10,
                fee: 1,
            },
            1 => Action::Attest {
                who: i % 4,
                back: 1,
                root: (i % 2) as u8 + 1,
            },
            2 => Action::Bond {
                who: i % 4,
                amount: 100,
            },
            3 => Action::Unbond {
                who: i % 4,
                amount: 50,
            },
            4 => Action::DoubleSign {
                who: 5,
                validator: i % 4,
                height: i as u64,
            },
            5 => Action::Equivocation {
                who: 6,
                dev: i % 4,
                seq: i as u64,
            },
            _ => Action::EndBlock,
        });
    }
    let (blocks, _, accepted) = run(&world, &actions);
    assert!(blocks.len() > 20);
    assert!(accepted > 60, "only {accepted} transactions accepted");
}

/// Every genesis file in `configs/` parses and builds a state.
#[test]
fn configs_genesis_parses() {
    let text = include_str!("../../../../configs/genesis.toml");
    let g = Genesis::from_toml(text).unwrap();
    let st = State::from_genesis(&g).unwrap();
    assert_eq!(st.chain_id(), "groundtruth-devnet");
    assert_eq!(st.validator_set().len(), 4);
    assert_eq!(st.devices().count(), 4);
    // Seeds named in the file's comments.
    assert!(st.validator_set().contains(&(address(&key(40)), 10_000)));
    assert!(st.device(&device_id(&key(ENERGY_DEVICE))).is_some());
    let p = st.params();
    assert_eq!(
        (
            p.provider_committee_size,
            p.gpu_challenge_n,
            p.retrieval_spot_chunks,
            p.storage_work_units_per_chunk,
            p.gpu_work_units_per_gpu
        ),
        (16, 256, 4, 1, 1000)
    );
    st.check_invariants().unwrap();
}

/// A devices-only file, as `groundtruth sim --write-genesis` writes it, parses too.
#[test]
fn devices_only_genesis_parses() {
    let text = format!(
        "# Devices of the simulated fleet\n\n[[devices]]\nid = \"{}\"\nkind = \"gpu\"\ncapacity = 4\nregion = \"zone-1\"\n",
        groundtruth_ledger::Address::from(device_id(&key(201)))
    );
    let g = Genesis::from_toml(&text).unwrap();
    let st = State::from_genesis(&g).unwrap();
    assert_eq!(st.devices().next().unwrap().owner, None);
    assert!(st.validator_set().is_empty());
}

/// A deterministic timed run: `CloseEpoch` votes end epochs (not block counts), an agreed
/// batch is attested, and a garbage proof for it slashes its submitter; the replay agrees
/// (guards the generator's timed actions against being only rejections).
#[test]
fn timed_run_closes_epochs_and_slashes_failing_proofs() {
    let world = World {
        net: TestNet::new_timed(4, 4),
    };
    let mut actions = Vec::new();
    for _ in 0..3 {
        for who in 0..3 {
            actions.push(Action::CloseEpoch { who, stale: false });
        }
        actions.push(Action::EndBlock);
        for who in 0..3 {
            actions.push(Action::Attest {
                who,
                back: 1,
                root: 1,
            });
        }
        actions.push(Action::AuditProof {
            who: 0,
            batch: 0,
            back: 1,
            len: 10,
        });
        for _ in 0..6 {
            actions.push(Action::EndBlock);
        }
    }
    replay(&world, &actions).unwrap();
    let (blocks, _, _) = run(&world, &actions);
    let mut st = world.net.state().unwrap();
    for b in &blocks {
        apply_block(&mut st, b).unwrap();
    }
    assert_eq!(st.epoch(), 3, "three close rounds, many more blocks");
    assert!(st.fixed_readings_root(0).is_some());
    let slashes = st.slashes();
    assert_eq!(
        slashes.len(),
        1,
        "operator 0 is jailed after its first failing proof"
    );
    assert_eq!(
        (slashes[0].offender, slashes[0].reason),
        (
            groundtruth_ledger::Offender::Validator(address(&world.net.operators[0])),
            groundtruth_ledger::SlashReason::InvalidProof
        )
    );
}
