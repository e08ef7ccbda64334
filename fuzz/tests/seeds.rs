//! The seed generator: valid encodings of every message kind each target decodes, made with
//! the crates' own encoders (signed readings, every ledger transaction type, every consensus
//! message type, real metered and retrievability proofs, a queue directory written by a real
//! queue, CBOR request bodies, `POST /txs` bodies).
//!
//! `seeds_are_accepted` checks that each seed is accepted by its target (so a codec change
//! that breaks the seeds is noticed). `write_seeds` (ignored) refreshes the seed files under
//! `fuzz/corpus/<target>/seed-*`:
//!
//! ```text
//! cargo test -p groundtruth-fuzz --test seeds -- --ignored write_seeds
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use bytes::Bytes;

type Seeds = Vec<(&'static str, String, Vec<u8>)>;

fn reading_frames(out: &mut Seeds) {
    use groundtruth_device_sdk::topics::encode_resend_request;
    use groundtruth_device_sdk::{
        DeviceKey, EnergyReading, GpuReading, Reading, ReadingBody, StorageHeartbeat,
    };
    let key = DeviceKey::from_seed(&[7; 32]);
    let bodies = [
        (
            "energy",
            ReadingBody::Energy(EnergyReading {
                interval_start_s: 1_700_000_000,
                interval_len_s: 300,
                energy_wh: 412,
                register_wh: 98_765,
            }),
        ),
        (
            "gpu",
            ReadingBody::Gpu(GpuReading {
                interval_start_s: 1_700_000_300,
                interval_len_s: 60,
                gpu_ms: 59_000,
                utilisation_bp: 9_500,
                energy_wh: 11,
            }),
        ),
        (
            "storage",
            ReadingBody::Storage(StorageHeartbeat {
                data_root: [9; 32],
                capacity_bytes: 1 << 40,
            }),
        ),
    ];
    for (i, (name, body)) in bodies.into_iter().enumerate() {
        let reading = Reading {
            device: key.device_id(),
            seq: 41 + i as u64,
            timestamp_ms: 1_700_000_000_123,
            body,
        };
        out.push(("reading_frame", name.into(), key.sign(reading).to_frame()));
    }
    out.push((
        "reading_frame",
        "resend-request".into(),
        encode_resend_request(1234).to_vec(),
    ));
}

fn signed_txs() -> Vec<(String, Vec<u8>)> {
    use groundtruth_ledger::evidence::{DoubleSignEvidence, Evidence, VoteKind};
    use groundtruth_ledger::l1key::L1Address;
    use groundtruth_ledger::testkit::{
        address, device_id, energy_reading, key, sign_tx, vote, TestNet,
    };
    use groundtruth_ledger::{BatchCommitment, DeviceKind, TxBody};

    let net = TestNet::new(4, 3);
    let st = net.state().expect("test state");
    let u = &net.users[0];
    let dev = key(250);
    let bodies = vec![
        (
            "transfer",
            TxBody::Transfer {
                to: address(u),
                amount: 5,
            },
        ),
        (
            "create-validator",
            TxBody::CreateValidator {
                consensus_key: address(&dev),
                stake: 9,
            },
        ),
        ("bond", TxBody::Bond { amount: 1 }),
        ("unbond", TxBody::Unbond { amount: 2 }),
        ("unjail", TxBody::Unjail),
        (
            "register-provider",
            TxBody::RegisterProvider {
                stake: 3,
                data_root: [7; 32],
            },
        ),
        ("provider-bond", TxBody::ProviderBond { amount: 4 }),
        ("provider-unbond", TxBody::ProviderUnbond { amount: 5 }),
        (
            "register-device",
            TxBody::RegisterDevice {
                device: device_id(&dev),
                kind: DeviceKind::Gpu,
                capacity: 8,
                region: "FR".into(),
                possession: [9; 64],
            },
        ),
        (
            "rotate-device-key",
            TxBody::RotateDeviceKey {
                old: device_id(&dev),
                new: device_id(u),
                possession: [1; 64],
                from_seq: 77,
            },
        ),
        (
            "retire-device",
            TxBody::RetireDevice {
                device: device_id(&dev),
            },
        ),
        (
            "submit-audit-proof",
            TxBody::SubmitAuditProof {
                epoch: 3,
                batch: address(u),
                proof: vec![1, 2, 3, 4, 5],
            },
        ),
        (
            "device-equivocation",
            TxBody::SubmitEvidence(Evidence::DeviceEquivocation {
                a: energy_reading(200, 1, 5),
                b: energy_reading(200, 1, 6),
            }),
        ),
        (
            "double-sign",
            TxBody::SubmitEvidence(Evidence::DoubleSign(DoubleSignEvidence {
                validator_key: address(&dev),
                vote_a: vote(&dev, VoteKind::Prevote, 4, 0, [1; 32]),
                vote_b: vote(&dev, VoteKind::Prevote, 4, 0, [2; 32]),
            })),
        ),
        (
            "delegate",
            TxBody::Delegate {
                validator: address(&dev),
                amount: 6,
            },
        ),
        (
            "undelegate",
            TxBody::Undelegate {
                validator: address(&dev),
                amount: 6,
            },
        ),
        (
            "attest-readings",
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
        ),
        ("close-epoch", TxBody::CloseEpoch { epoch: 9 }),
        (
            "set-l1-key",
            TxBody::SetL1Key {
                address: L1Address([3; 20]),
                signature: [4; 65],
            },
        ),
        (
            "commit-storage",
            TxBody::CommitStorage {
                device: device_id(&dev),
                root: [0; 32],
                depth: 10,
                num_chunks: 1000,
            },
        ),
        (
            "submit-storage-proof",
            TxBody::SubmitStorageProof {
                epoch: 3,
                device: device_id(&dev),
                proof: vec![1, 2, 3, 4],
            },
        ),
        (
            "report-provider-audit",
            TxBody::ReportProviderAudit {
                epoch: 4,
                device: device_id(&dev),
                kind: groundtruth_ledger::provider_audit::ProviderAuditKind::GpuCapacity,
                passed: false,
                seed: [6; 32],
                response_digest: [7; 32],
                elapsed_ms: 1500,
                measured_per_s: 1_000_000,
            },
        ),
        (
            "register-gpu-spec",
            TxBody::RegisterGpuSpec {
                device: device_id(&dev),
                model: "H200".into(),
                count: 1,
                claimed_mac_per_s: 5_000_000_000,
            },
        ),
    ];
    bodies
        .into_iter()
        .map(|(name, body)| (name.to_string(), sign_tx(&st, u, 1, body).encode()))
        .collect()
}

fn ledger(out: &mut Seeds) {
    use groundtruth_ledger::{Block, SignedTx};
    let txs = signed_txs();
    for (name, bytes) in &txs {
        out.push(("ledger_tx", name.clone(), bytes.clone()));
    }
    let block = Block {
        height: 7,
        proposer: None,
        txs: txs
            .iter()
            .take(3)
            .map(|(_, b)| SignedTx::decode(b).unwrap())
            .collect(),
    };
    // Accepted as a block, not as a transaction: the target still checks it is canonical.
    out.push(("ledger_tx", "block".into(), block.encode()));
}

fn consensus(out: &mut Seeds) {
    use groundtruth_consensus::block::Block;
    use groundtruth_consensus::types::{
        Address, BlockHash, GtContext, Height, Proposal, ProposalInit, ProposalPart, Vote,
    };
    use groundtruth_consensus::GtCodec;
    use malachitebft_app_channel::app::consensus::{
        LivenessMsg, ProposedValue, SignedConsensusMsg,
    };
    use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
    use malachitebft_app_channel::app::types::codec::Codec;
    use malachitebft_app_channel::app::types::core::{
        NilOrVal, PolkaCertificate, PolkaSignature, Round, SignedMessage, ValidatorProof, Validity,
        VoteType,
    };
    use malachitebft_app_channel::app::types::sync;
    use malachitebft_app_channel::app::types::{Keypair, PeerId};
    use malachitebft_signing_ed25519::Signature;

    fn push<T>(out: &mut Seeds, kind: u8, name: &str, msg: &T)
    where
        GtCodec: Codec<T>,
    {
        let mut bytes = vec![kind];
        bytes.extend_from_slice(&Codec::<T>::encode(&GtCodec, msg).unwrap());
        out.push(("consensus_msg", name.into(), bytes));
    }
    let sig = Signature::from_bytes([5; 64]);
    let addr = Address([3; 32]);
    let hash = BlockHash([4; 32]);
    let vote = Vote {
        vote_type: VoteType::Precommit,
        height: Height(9),
        round: Round::new(1),
        value: NilOrVal::Val(hash),
        validator: addr,
        extension: None,
    };
    let nil_vote = Vote {
        vote_type: VoteType::Prevote,
        value: NilOrVal::Nil,
        ..vote.clone()
    };
    let proposal = Proposal {
        height: Height(9),
        round: Round::new(2),
        value: hash,
        pol_round: Round::Nil,
        proposer: addr,
    };
    push(
        out,
        0,
        "vote",
        &SignedConsensusMsg::<GtContext>::Vote(SignedMessage::new(vote.clone(), sig)),
    );
    push(
        out,
        0,
        "proposal",
        &SignedConsensusMsg::<GtContext>::Proposal(SignedMessage::new(proposal, sig)),
    );
    push(
        out,
        1,
        "liveness-vote",
        &LivenessMsg::<GtContext>::Vote(SignedMessage::new(nil_vote, sig)),
    );
    let polka = PolkaCertificate::<GtContext> {
        height: Height(9),
        round: Round::new(1),
        value_id: hash,
        polka_signatures: vec![
            PolkaSignature::new(addr, sig),
            PolkaSignature::new(Address([8; 32]), sig),
        ],
    };
    push(
        out,
        1,
        "liveness-polka",
        &LivenessMsg::<GtContext>::PolkaCertificate(polka.clone()),
    );
    let init = ProposalPart::Init(ProposalInit {
        height: Height(9),
        round: Round::new(0),
        pol_round: Round::Nil,
        proposer: addr,
    });
    push(out, 2, "part-init", &init);
    push(
        out,
        2,
        "part-data",
        &ProposalPart::Data(Bytes::from_static(b"block bytes")),
    );
    push(out, 2, "part-fin", &ProposalPart::Fin(sig));
    push(
        out,
        3,
        "stream-data",
        &StreamMessage::new(
            StreamId::new(Bytes::from_static(b"stream-1")),
            0,
            StreamContent::Data(init),
        ),
    );
    push(
        out,
        3,
        "stream-fin",
        &StreamMessage::<ProposalPart>::new(
            StreamId::new(Bytes::from_static(b"stream-1")),
            3,
            StreamContent::Fin,
        ),
    );
    push(
        out,
        4,
        "validator-proof",
        &ValidatorProof::<GtContext>::new(vec![1; 32], vec![2; 38], sig),
    );
    let kp = Keypair::ed25519_from_bytes([9; 32]).unwrap();
    let peer = PeerId::from_bytes(&kp.public().to_peer_id().to_bytes()).unwrap();
    push(
        out,
        5,
        "sync-status",
        &sync::Status::<GtContext> {
            peer_id: peer,
            tip_height: Height(20),
            history_min_height: Height(1),
        },
    );
    push(
        out,
        6,
        "sync-request",
        &sync::Request::<GtContext>::ValueRequest(malachitebft_sync::ValueRequest::new(
            Height(3)..=Height(5),
        )),
    );
    push(
        out,
        7,
        "sync-response-empty",
        &sync::Response::<GtContext>::ValueResponse(malachitebft_sync::ValueResponse::new(
            Height(3),
            vec![],
        )),
    );
    push(
        out,
        8,
        "proposed-value",
        &ProposedValue::<GtContext> {
            height: Height(9),
            round: Round::new(1),
            valid_round: Round::Nil,
            proposer: addr,
            value: hash,
            validity: Validity::Valid,
        },
    );
    push(out, 9, "polka", &polka);
    let block = Block {
        height: 4,
        prev_state_root: [2; 32],
        txs: vec![Bytes::from_static(b"tx-a"), Bytes::from_static(b"tx-b")],
    };
    let mut b = vec![10];
    b.extend_from_slice(&block.encode());
    out.push(("consensus_msg", "block".into(), b));
}

fn proofs(out: &mut Seeds) {
    use groundtruth_proofs::{por, Challenge, DeviceSeries, Epoch, SecurityLevel};
    let series = vec![
        DeviceSeries {
            id: [1; 32],
            cap: 1000,
            start_register: 5_000,
            first_seq: 100,
            first_interval_start: 1_700_000_000,
            interval_len: 300,
            values: vec![10, 20, 30, 1000, 0, 7],
        },
        DeviceSeries {
            id: [2; 32],
            cap: 50,
            start_register: 0,
            first_seq: 200,
            first_interval_start: 1_700_000_014,
            interval_len: 300,
            values: vec![50, 49, 1],
        },
    ];
    let env = groundtruth_proofs::prove_metered(
        &Epoch::covering(1, &series),
        &series,
        SecurityLevel::Default100,
    )
    .unwrap();
    out.push(("proof_envelope", "metered".into(), env.to_bytes().unwrap()));

    let data: Vec<u8> = (0..9_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let c = por::commit_reader(&data[..], 12, None).unwrap();
    let ch = Challenge {
        root: c.root,
        depth: 12,
        num_chunks: c.num_chunks,
        seed: [3; 32],
        k: 2,
    };
    let resp = por::respond_reader(&data[..], &ch, None).unwrap();
    let env =
        groundtruth_proofs::prove_retrievability(&ch, &resp, SecurityLevel::Default100).unwrap();
    out.push((
        "proof_envelope",
        "retrievability".into(),
        env.to_bytes().unwrap(),
    ));
}

fn queue(out: &mut Seeds) {
    use groundtruth_device_sdk::{
        DeviceKey, EnergyReading, OfflineQueue, QueueConfig, Reading, ReadingBody,
    };
    let dir = tempfile::tempdir().unwrap();
    let key = DeviceKey::from_seed(&[4; 32]);
    {
        let mut q = OfflineQueue::open(QueueConfig::new(dir.path())).unwrap();
        for i in 0..5u64 {
            q.append(|seq| {
                key.sign(Reading {
                    device: key.device_id(),
                    seq,
                    timestamp_ms: 1_700_000_000_000 + i,
                    body: ReadingBody::Energy(EnergyReading {
                        interval_start_s: 1_700_000_000 + 300 * i,
                        interval_len_s: 300,
                        energy_wh: 10 + i,
                        register_wh: 1_000 + 10 * i,
                    }),
                })
            })
            .unwrap();
        }
        q.ack_until(2).unwrap();
    }
    let log = std::fs::read(dir.path().join("queue.log")).unwrap();
    let cursor = std::fs::read(dir.path().join("cursor")).unwrap();
    let mut raw = vec![2];
    raw.extend_from_slice(&cursor);
    raw.extend_from_slice(&log);
    out.push(("queue_log", "acked-2-of-5".into(), raw));
    let mut none = vec![0];
    none.extend_from_slice(&log);
    out.push(("queue_log", "no-cursor".into(), none.clone()));
    // A torn last record: recovery cuts it off.
    none.truncate(none.len() - 7);
    out.push(("queue_log", "torn-tail".into(), none));
    let mut made = vec![1];
    made.extend_from_slice(&1u64.to_be_bytes());
    made.extend_from_slice(&5u64.to_be_bytes());
    made.extend_from_slice(&log);
    out.push(("queue_log", "made-cursor".into(), made));
    out.push(("queue_log", "empty".into(), b"\0GTQLOG\0\x01".to_vec()));
}

fn p2p(out: &mut Seeds) {
    use groundtruth_p2p::{ReadingsRequest, Refusal, READINGS_PROTOCOL};
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::{cbor::codec::Codec as Cbor, Codec};
    use libp2p::StreamProtocol;

    let protocol = StreamProtocol::new(READINGS_PROTOCOL);
    let mut codec = Cbor::<ReadingsRequest, Refusal>::default();
    let req = ReadingsRequest {
        device: [6; 32],
        from_seq: 10,
        to_seq: 4_000,
    };
    let mut w = Cursor::new(vec![1u8]);
    w.set_position(1);
    futures_ready(codec.write_request(&protocol, &mut w, req));
    out.push(("p2p_message", "readings-request".into(), w.into_inner()));
    for (name, refusal) in [
        ("refusal-busy", Refusal::Busy),
        ("refusal-range", Refusal::RangeTooLarge { max: 4096 }),
    ] {
        let mut w = Cursor::new(vec![2u8]);
        w.set_position(1);
        futures_ready(codec.write_response(&protocol, &mut w, refusal));
        out.push(("p2p_message", name.into(), w.into_inner()));
    }
    let (_, tx) = signed_txs().swap_remove(0);
    let mut gossip = vec![0];
    gossip.extend_from_slice(&tx);
    out.push(("p2p_message", "tx-gossip".into(), gossip));
}

fn futures_ready<F: std::future::Future<Output = std::io::Result<()>>>(fut: F) {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(matches!(
        fut.as_mut().poll(&mut cx),
        std::task::Poll::Ready(Ok(()))
    ));
}

fn api(out: &mut Seeds) {
    let txs: Vec<Vec<u8>> = signed_txs().into_iter().take(3).map(|(_, b)| b).collect();
    out.push((
        "api_body",
        "batch-3".into(),
        groundtruth_api::encode_batch(&txs),
    ));
    out.push((
        "api_body",
        "batch-1".into(),
        groundtruth_api::encode_batch(&txs[..1]),
    ));
    out.push(("api_body", "time".into(), b"2024-05-01T10:00:00Z".to_vec()));
}

/// Every seed: (target, name, bytes).
fn seeds() -> Seeds {
    let mut out = Vec::new();
    reading_frames(&mut out);
    ledger(&mut out);
    consensus(&mut out);
    proofs(&mut out);
    queue(&mut out);
    p2p(&mut out);
    api(&mut out);
    out
}

#[test]
fn seeds_are_accepted() {
    let seeds = seeds();
    for (name, _) in groundtruth_fuzz::TARGETS {
        assert!(
            seeds.iter().any(|(t, _, _)| t == name),
            "no seed for {name}"
        );
    }
    for (target, name, bytes) in &seeds {
        let run = groundtruth_fuzz::target(target).expect("known target");
        // A query value and a resend request feed a target's second decoder, not its main
        // one; everything else must be accepted.
        if *name == "time" || *name == "resend-request" {
            run(bytes);
            continue;
        }
        assert!(run(bytes), "{target}/{name} is not accepted by its target");
    }
}

#[test]
#[ignore = "writes the seed files; run it after a codec change"]
fn write_seeds() {
    for (target, name, bytes) in seeds() {
        let dir = groundtruth_fuzz::corpus_dir(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
    }
}
