//! Test vectors (`test-vectors/v1.json`): generated deterministically here, checked here.
//!
//! Regenerate after an intended protocol change with
//! `cargo test -p groundtruth-device-sdk --test it -- --ignored regenerate_vectors`.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use groundtruth_device_sdk::{
    verify_batch, DeviceId, DeviceKey, EnergyReading, GpuReading, Reading, ReadingBody,
    SignedReading, StorageHeartbeat, DOMAIN_TAG, PROTOCOL_VERSION,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/test-vectors/v1.json");

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// Seed `i`: the first 32 bytes of ChaCha20 seeded with `seed_from_u64(i)`.
fn seed(i: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    rand_chacha::ChaCha20Rng::seed_from_u64(i).fill_bytes(&mut s);
    s
}

fn reading_bytes(r: &Reading) -> Vec<u8> {
    let mut b = vec![0u8; r.encoded_len()];
    let n = r.encode_into(&mut b).unwrap();
    b.truncate(n);
    b
}

fn message(r: &Reading) -> Vec<u8> {
    let mut m = DOMAIN_TAG.to_vec();
    m.extend_from_slice(&reading_bytes(r));
    m
}

fn body_json(body: &ReadingBody) -> Value {
    // Integers are decimal strings: u64 values do not fit a JSON double.
    match body {
        ReadingBody::Energy(e) => json!({
            "kind": "energy",
            "interval_start_s": e.interval_start_s.to_string(),
            "interval_len_s": e.interval_len_s.to_string(),
            "energy_wh": e.energy_wh.to_string(),
            "register_wh": e.register_wh.to_string(),
        }),
        ReadingBody::Gpu(g) => json!({
            "kind": "gpu",
            "interval_start_s": g.interval_start_s.to_string(),
            "interval_len_s": g.interval_len_s.to_string(),
            "gpu_ms": g.gpu_ms.to_string(),
            "utilisation_bp": g.utilisation_bp.to_string(),
            "energy_wh": g.energy_wh.to_string(),
        }),
        ReadingBody::Storage(s) => json!({
            "kind": "storage",
            "data_root_hex": hex::encode(s.data_root),
            "capacity_bytes": s.capacity_bytes.to_string(),
        }),
    }
}

/// (name, seed index, seq, timestamp_ms, body) of every valid vector.
fn cases() -> Vec<(&'static str, u64, u64, u64, ReadingBody)> {
    let root: [u8; 32] = core::array::from_fn(|i| i as u8);
    vec![
        (
            "energy-typical",
            0,
            0,
            1_767_225_600_000,
            ReadingBody::Energy(EnergyReading {
                interval_start_s: 1_767_225_300,
                interval_len_s: 300,
                energy_wh: 412,
                register_wh: 1_234_567,
            }),
        ),
        (
            "energy-minimum",
            1,
            0,
            0,
            ReadingBody::Energy(EnergyReading {
                interval_start_s: 0,
                interval_len_s: 1,
                energy_wh: 0,
                register_wh: 0,
            }),
        ),
        (
            "energy-maximum",
            2,
            u64::MAX,
            u64::MAX,
            ReadingBody::Energy(EnergyReading {
                interval_start_s: u64::MAX,
                interval_len_s: u32::MAX,
                energy_wh: u64::MAX,
                register_wh: u64::MAX,
            }),
        ),
        (
            "gpu-typical",
            0,
            1,
            1_767_225_601_250,
            ReadingBody::Gpu(GpuReading {
                interval_start_s: 1_767_225_300,
                interval_len_s: 300,
                gpu_ms: 2_365_000,
                utilisation_bp: 7_883,
                energy_wh: 58,
            }),
        ),
        (
            "gpu-full-utilisation",
            3,
            0x0102_0304_0506_0708,
            1,
            ReadingBody::Gpu(GpuReading {
                interval_start_s: 0x1122_3344_5566_7788,
                interval_len_s: 0x99aa_bbcc,
                gpu_ms: u64::MAX,
                utilisation_bp: 10_000,
                energy_wh: 0,
            }),
        ),
        (
            "storage-typical",
            4,
            42,
            1_767_225_600_000,
            ReadingBody::Storage(StorageHeartbeat {
                data_root: root,
                capacity_bytes: 1_000_000_000_000,
            }),
        ),
        (
            "storage-extremes",
            5,
            7,
            1_767_225_600_000,
            ReadingBody::Storage(StorageHeartbeat {
                data_root: [0xff; 32],
                capacity_bytes: u64::MAX,
            }),
        ),
    ]
}

fn signed_case(seed_index: u64, seq: u64, ts: u64, body: ReadingBody) -> SignedReading {
    let key = DeviceKey::from_seed(&seed(seed_index));
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: ts,
        body,
    })
}

fn frame_hex(s: &SignedReading) -> String {
    hex::encode(s.to_frame())
}

/// An adversarial signature and what each verification rule says about it.
struct Adversarial {
    name: &'static str,
    frame: Vec<u8>,
    /// ZIP-215 (ours, single and batch).
    zip215: bool,
    /// Cofactorless, ed25519-dalek `verify_strict`.
    strict: bool,
    weak_key: bool,
    note: &'static str,
}

fn adversarial() -> Vec<Adversarial> {
    let reading_for = |device: DeviceId| Reading {
        device,
        seq: 5,
        timestamp_ms: 1_767_225_600_000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: 1_767_225_300,
            interval_len_s: 300,
            energy_wh: 412,
            register_wh: 1_234_567,
        }),
    };
    let frame = |r: &Reading, sig: [u8; 64]| {
        let mut f = reading_bytes(r);
        f.extend_from_slice(&sig);
        f
    };
    let mut out = Vec::new();

    // 1. Small-order public key (the identity) with R = identity, s = 0: both sides of the
    //    verification equation are the identity, so it "verifies" for every message.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let r = reading_for(DeviceId(identity));
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&identity);
    out.push(Adversarial {
        name: "small-order-key",
        frame: frame(&r, sig),
        zip215: true,
        strict: false,
        weak_key: true,
        note: "accepted by ZIP-215 in single and batch mode alike; such keys are refused at registration (DeviceId::is_weak)",
    });

    // 2. Non-canonical S: a valid signature with L added to s.
    let key = DeviceKey::from_seed(&seed(0));
    let r = reading_for(key.device_id());
    let good = key.sign(r);
    let mut sig = good.signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
        sig[32 + i] = v as u8;
        carry = v >> 8;
    }
    assert_eq!(carry, 0);
    out.push(Adversarial {
        name: "non-canonical-s",
        frame: frame(&r, sig),
        zip215: false,
        strict: false,
        weak_key: false,
        note: "s + L encodes the same scalar but is not < L: rejected",
    });

    // 3. Cofactored-only: R = r·B + T with T of order 8, s = r + k·a. Then
    //    s·B − R − k·A = −T: not the identity (cofactorless check fails) but 8·(−T) is
    //    (ZIP-215's cofactored check passes).
    let seed0 = seed(0);
    let h = Sha512::digest(seed0);
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&h[..32]);
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a_bytes);
    let big_a = (ED25519_BASEPOINT_POINT * a).compress();
    assert_eq!(big_a.to_bytes(), key.device_id().0);
    let msg = message(&r);
    let nonce = Sha512::new()
        .chain_update(b"groundtruth test vector nonce")
        .chain_update(&msg)
        .finalize();
    let rr = Scalar::from_bytes_mod_order_wide(&nonce.into());
    let big_r = (ED25519_BASEPOINT_POINT * rr + EIGHT_TORSION[1]).compress();
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(big_r.as_bytes())
            .chain_update(big_a.as_bytes())
            .chain_update(&msg)
            .finalize()
            .into(),
    );
    let s = rr + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    assert!(CompressedEdwardsY(sig[..32].try_into().unwrap())
        .decompress()
        .is_some());
    out.push(Adversarial {
        name: "cofactored-only",
        frame: frame(&r, sig),
        zip215: true,
        strict: false,
        weak_key: false,
        note: "R carries an order-8 component: cofactorless verification (verify_strict) rejects, ZIP-215's cofactored equation accepts, single and batch alike",
    });
    out
}

/// Frames that must not decode: (name, frame, error name).
fn invalid_frames() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let (_, i, seq, ts, body) = cases()[0];
    let good = signed_case(i, seq, ts, body).to_frame();
    let mut v = Vec::new();
    let mut f = good.clone();
    f.push(0);
    v.push(("trailing-byte", f, "BadLength"));
    v.push(("missing-byte", good[..good.len() - 1].to_vec(), "BadLength"));
    v.push(("empty", Vec::new(), "Truncated"));
    for (name, version) in [("version-0", 0u8), ("version-2", 2)] {
        let mut f = good.clone();
        f[0] = version;
        v.push((name, f, "UnsupportedVersion"));
    }
    for (name, kind) in [("kind-0", 0u8), ("kind-4", 4)] {
        let mut f = good.clone();
        f[1] = kind;
        v.push((name, f, "UnknownKind"));
    }
    let mut f = good.clone();
    f[1] = 2; // an energy-length frame labelled gpu
    v.push(("kind-length-mismatch", f, "BadLength"));
    let zero = signed_case(
        0,
        0,
        0,
        ReadingBody::Energy(EnergyReading {
            interval_start_s: 0,
            interval_len_s: 0,
            energy_wh: 0,
            register_wh: 0,
        }),
    );
    v.push(("zero-interval", zero.to_frame(), "InvalidField"));
    let over = signed_case(
        0,
        0,
        0,
        ReadingBody::Gpu(GpuReading {
            interval_start_s: 0,
            interval_len_s: 300,
            gpu_ms: 0,
            utilisation_bp: 10_001,
            energy_wh: 0,
        }),
    );
    v.push(("utilisation-over-10000", over.to_frame(), "InvalidField"));
    v
}

/// Frames that decode but whose signature must not verify: (name, frame).
fn tampered_frames() -> Vec<(&'static str, Vec<u8>)> {
    let (_, i, seq, ts, body) = cases()[0];
    let good = signed_case(i, seq, ts, body);
    let frame = good.to_frame();
    let mut v = Vec::new();
    let mut f = frame.clone();
    f[60] ^= 1; // inside energy_wh
    v.push(("reading-bit-flipped", f));
    let mut f = frame.clone();
    let last = f.len() - 1;
    f[last - 40] ^= 0x80;
    v.push(("signature-bit-flipped", f));
    let mut f = frame.clone();
    f[2..34].copy_from_slice(&DeviceKey::from_seed(&seed(1)).device_id().0);
    v.push(("other-device-id", f));
    // Signed without the domain tag.
    use ed25519_dalek::Signer;
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed(i));
    let sig = dalek.sign(&reading_bytes(&good.reading)).to_bytes();
    let mut f = reading_bytes(&good.reading);
    f.extend_from_slice(&sig);
    v.push(("signed-without-domain-tag", f));
    v
}

fn generate() -> Value {
    let valid: Vec<Value> = cases()
        .into_iter()
        .map(|(name, i, seq, ts, body)| {
            let s = signed_case(i, seq, ts, body);
            json!({
                "name": name,
                "seed_hex": hex::encode(seed(i)),
                "device_hex": s.reading.device.to_string(),
                "seq": seq.to_string(),
                "timestamp_ms": ts.to_string(),
                "body": body_json(&body),
                "reading_hex": hex::encode(reading_bytes(&s.reading)),
                "signed_message_hex": hex::encode(message(&s.reading)),
                "signature_hex": hex::encode(s.signature),
                "frame_hex": frame_hex(&s),
            })
        })
        .collect();
    let invalid: Vec<Value> = invalid_frames()
        .into_iter()
        .map(|(name, f, err)| json!({"name": name, "frame_hex": hex::encode(f), "error": err}))
        .collect();
    let tampered: Vec<Value> = tampered_frames()
        .into_iter()
        .map(|(name, f)| json!({"name": name, "frame_hex": hex::encode(f)}))
        .collect();
    let adv: Vec<Value> = adversarial()
        .into_iter()
        .map(|a| {
            json!({
                "name": a.name,
                "frame_hex": hex::encode(a.frame),
                "zip215_valid": a.zip215,
                "cofactorless_strict_valid": a.strict,
                "weak_key": a.weak_key,
                "note": a.note,
            })
        })
        .collect();
    json!({
        "protocol_version": PROTOCOL_VERSION,
        "domain_tag_hex": hex::encode(DOMAIN_TAG),
        "description": "groundtruth device protocol v1 test vectors; see device-sdk/PROTOCOL.md. Integers are decimal strings. seed_hex is the RFC 8032 private key; signatures are deterministic ed25519 over signed_message_hex = domain_tag ‖ reading bytes; frame = reading bytes ‖ signature.",
        "valid": valid,
        "invalid_frames": invalid,
        "bad_signatures": tampered,
        "adversarial_signatures": adv,
    })
}

fn render() -> String {
    let mut s = serde_json::to_string_pretty(&generate()).unwrap();
    s.push('\n');
    s
}

#[test]
#[ignore = "writes test-vectors/v1.json; run after an intended protocol change"]
fn regenerate_vectors() {
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/test-vectors")).unwrap();
    std::fs::write(PATH, render()).unwrap();
}

fn load() -> Value {
    let text = std::fs::read_to_string(PATH).expect("test-vectors/v1.json (regenerate_vectors)");
    serde_json::from_str(&text).unwrap()
}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn num(v: &Value) -> u64 {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn vector_file_matches_generator() {
    assert_eq!(
        load(),
        generate(),
        "run the ignored test regenerate_vectors"
    );
}

#[test]
fn valid_vectors_rederive() {
    let file = load();
    assert_eq!(unhex(&file["domain_tag_hex"]), DOMAIN_TAG);
    let valid = file["valid"].as_array().unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let seed: [u8; 32] = unhex(&v["seed_hex"]).try_into().unwrap();
        let key = DeviceKey::from_seed(&seed);
        assert_eq!(
            key.device_id().0.to_vec(),
            unhex(&v["device_hex"]),
            "{name}"
        );
        let b = &v["body"];
        let body = match b["kind"].as_str().unwrap() {
            "energy" => ReadingBody::Energy(EnergyReading {
                interval_start_s: num(&b["interval_start_s"]),
                interval_len_s: num(&b["interval_len_s"]).try_into().unwrap(),
                energy_wh: num(&b["energy_wh"]),
                register_wh: num(&b["register_wh"]),
            }),
            "gpu" => ReadingBody::Gpu(GpuReading {
                interval_start_s: num(&b["interval_start_s"]),
                interval_len_s: num(&b["interval_len_s"]).try_into().unwrap(),
                gpu_ms: num(&b["gpu_ms"]),
                utilisation_bp: num(&b["utilisation_bp"]).try_into().unwrap(),
                energy_wh: num(&b["energy_wh"]),
            }),
            "storage" => ReadingBody::Storage(StorageHeartbeat {
                data_root: unhex(&b["data_root_hex"]).try_into().unwrap(),
                capacity_bytes: num(&b["capacity_bytes"]),
            }),
            other => panic!("unknown kind {other}"),
        };
        kinds.insert(b["kind"].as_str().unwrap().to_string());
        let reading = Reading {
            device: key.device_id(),
            seq: num(&v["seq"]),
            timestamp_ms: num(&v["timestamp_ms"]),
            body,
        };
        let bytes = unhex(&v["reading_hex"]);
        assert_eq!(reading_bytes(&reading), bytes, "{name}: encoding");
        assert_eq!(
            Reading::decode(&bytes).unwrap(),
            reading,
            "{name}: decoding"
        );
        let mut msg = DOMAIN_TAG.to_vec();
        msg.extend_from_slice(&bytes);
        assert_eq!(msg, unhex(&v["signed_message_hex"]), "{name}: message");
        let signed = key.sign(reading);
        assert_eq!(
            signed.signature.to_vec(),
            unhex(&v["signature_hex"]),
            "{name}: signature"
        );
        let mut frame = bytes.clone();
        frame.extend_from_slice(&signed.signature);
        assert_eq!(frame, unhex(&v["frame_hex"]), "{name}: frame");
        let decoded = SignedReading::decode_frame(&frame).unwrap();
        assert_eq!(decoded.verify(), Ok(()), "{name}: verify");
        // An independent ed25519 implementation agrees (these are ordinary signatures).
        let vk = ed25519_dalek::VerifyingKey::from_bytes(&key.device_id().0).unwrap();
        let sig = ed25519_dalek::Signature::from_bytes(&signed.signature);
        assert!(vk.verify_strict(&msg, &sig).is_ok(), "{name}: dalek");
    }
    assert_eq!(kinds.len(), 3, "every kind has a vector");
}

#[test]
fn invalid_and_tampered_vectors_fail() {
    let file = load();
    for v in file["invalid_frames"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let err = SignedReading::decode_frame(&unhex(&v["frame_hex"])).expect_err(name);
        let got = format!("{err:?}");
        assert!(
            got.starts_with(v["error"].as_str().unwrap()),
            "{name}: {got}"
        );
    }
    for v in file["bad_signatures"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let s = SignedReading::decode_frame(&unhex(&v["frame_hex"])).expect(name);
        assert!(s.verify().is_err(), "{name} verifies");
        let flags = verify_batch(&[s], rand_chacha::ChaCha20Rng::seed_from_u64(1));
        assert_eq!(flags, vec![false], "{name} batch");
    }
}

#[test]
fn adversarial_vectors_single_and_batch_agree() {
    let file = load();
    let (_, i, seq, ts, body) = cases()[0];
    let honest = signed_case(i, seq, ts, body);
    for v in file["adversarial_signatures"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let s = SignedReading::decode_frame(&unhex(&v["frame_hex"])).expect(name);
        let expected = v["zip215_valid"].as_bool().unwrap();
        assert_eq!(s.verify().is_ok(), expected, "{name}: single");
        assert_eq!(
            s.reading.device.is_weak(),
            v["weak_key"].as_bool().unwrap(),
            "{name}: weak"
        );
        for seed in 0..8 {
            let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            assert_eq!(
                verify_batch(&[s], rng),
                vec![expected],
                "{name}: batch of one"
            );
            let rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
            assert_eq!(
                verify_batch(&[honest, s, honest], rng),
                vec![true, expected, true],
                "{name}: mixed batch"
            );
        }
        if expected {
            // The batch equation itself accepts it (not just the per-item fallback).
            let mut verifier = ed25519_consensus::batch::Verifier::new();
            let mut msg = DOMAIN_TAG.to_vec();
            msg.extend_from_slice(&reading_bytes(&s.reading));
            verifier.queue((
                ed25519_consensus::VerificationKeyBytes::from(s.reading.device.0),
                ed25519_consensus::Signature::from(s.signature),
                &msg[..],
            ));
            assert!(verifier
                .verify(rand_chacha::ChaCha20Rng::seed_from_u64(3))
                .is_ok());
        }
        // What the cofactorless rule (ed25519-dalek verify_strict) would say: it differs,
        // which is why every path uses ZIP-215.
        let strict = ed25519_dalek::VerifyingKey::from_bytes(&s.reading.device.0)
            .map(|vk| {
                let mut msg = DOMAIN_TAG.to_vec();
                msg.extend_from_slice(&reading_bytes(&s.reading));
                vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&s.signature))
                    .is_ok()
            })
            .unwrap_or(false);
        assert_eq!(
            strict,
            v["cofactorless_strict_valid"].as_bool().unwrap(),
            "{name}: strict"
        );
    }
}
