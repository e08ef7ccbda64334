//! Test vectors (`test-vectors/v1.json`): generated deterministically here, checked here.
//!
//! Regenerate after an intended protocol change with
//! `cargo test -p groundtruth-device-sdk --test it -- --ignored regenerate_vectors`.

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
use curve25519_dalek::edwards::CompressedEdwardsY;
use curve25519_dalek::scalar::Scalar;
use groundtruth_device_sdk::{
    login_token, verify_batch, verify_login, DeviceId, DeviceKey, EnergyReading, GpuReading,
    LoginError, Reading, ReadingBody, SignedReading, StorageHeartbeat, DEFAULT_LOGIN_SKEW_SECS,
    DOMAIN_TAG, LOGIN_DOMAIN_TAG, PROTOCOL_VERSION,
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
    /// RFC 8032 with its decoding rules enforced and the cofactorless equation
    /// ([`rfc8032_strict`]).
    rfc8032: bool,
    /// Cofactorless, ed25519-dalek `verify_strict`.
    strict: bool,
    weak_key: bool,
    canonical_key: bool,
    note: &'static str,
}

/// The field prime p = 2^255 − 19, little-endian.
const P: [u8; 32] = [
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
];

/// The identity point (x = 0, y = 1), canonical encoding.
fn identity_canonical() -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 1;
    b
}

/// The identity with the sign bit set: "negative zero" (x = 0 cannot be negative).
fn identity_negative_zero() -> [u8; 32] {
    let mut b = identity_canonical();
    b[31] |= 0x80;
    b
}

/// The identity as y = p + 1: a non-canonical encoding (y ≥ p).
fn identity_non_canonical() -> [u8; 32] {
    let mut b = P;
    b[0] += 1;
    b
}

/// RFC 8032 §5.1.7 read strictly: A and R must be canonical encodings (§5.1.3: y < p, no
/// negative zero), s < L, and the cofactorless equation [s]B = R + [k]A must hold. Small-order
/// points are not refused (RFC 8032 does not ask for it).
fn rfc8032_strict(a_bytes: &[u8; 32], sig: &[u8; 64], msg: &[u8]) -> bool {
    let decode = |b: [u8; 32]| {
        let p = CompressedEdwardsY(b).decompress()?;
        (p.compress().to_bytes() == b).then_some(p)
    };
    let r_bytes: [u8; 32] = sig[..32].try_into().unwrap();
    let (Some(a), Some(r)) = (decode(*a_bytes), decode(r_bytes)) else {
        return false;
    };
    let Some(s) =
        Option::<Scalar>::from(Scalar::from_canonical_bytes(sig[32..].try_into().unwrap()))
    else {
        return false;
    };
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r_bytes)
            .chain_update(a_bytes)
            .chain_update(msg)
            .finalize()
            .into(),
    );
    ED25519_BASEPOINT_POINT * s == r + a * k
}

/// The secret scalar a of seed `i` (RFC 8032 §5.1.5 clamping).
fn secret_scalar(i: u64) -> Scalar {
    let h = Sha512::digest(seed(i));
    let mut a_bytes = [0u8; 32];
    a_bytes.copy_from_slice(&h[..32]);
    a_bytes[0] &= 248;
    a_bytes[31] &= 127;
    a_bytes[31] |= 64;
    Scalar::from_bytes_mod_order(a_bytes)
}

/// A signature with a chosen R encoding whose discrete log is `r`: s = r + k·a, with
/// k = SHA-512(R bytes ‖ A bytes ‖ msg) over the bytes exactly as encoded.
fn sign_with_r(
    r_bytes: [u8; 32],
    r: Scalar,
    a: Scalar,
    a_bytes: &[u8; 32],
    msg: &[u8],
) -> [u8; 64] {
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new()
            .chain_update(r_bytes)
            .chain_update(a_bytes)
            .chain_update(msg)
            .finalize()
            .into(),
    );
    let s = r + k * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&r_bytes);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
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
        rfc8032: true,
        strict: false,
        weak_key: true,
        canonical_key: true,
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
        rfc8032: false,
        strict: false,
        weak_key: false,
        canonical_key: true,
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
        rfc8032: false,
        strict: false,
        weak_key: false,
        canonical_key: true,
        note: "R carries an order-8 component: cofactorless verification (verify_strict) rejects, ZIP-215's cofactored equation accepts, single and batch alike",
    });

    // 4-6. R is the identity (r = 0, s = k·a) under the honest key, encoded three ways.
    let a = secret_scalar(0);
    let a_bytes = key.device_id().0;
    for (name, r_bytes, rfc, note) in [
        (
            "r-identity",
            identity_canonical(),
            true,
            "R = identity, canonical: valid for RFC 8032 and ZIP-215; verify_strict and libsodium refuse a small-order R",
        ),
        (
            "negative-zero-r",
            identity_negative_zero(),
            false,
            "R = identity encoded with the sign bit set (x = 0 is never negative): RFC 8032 decoding fails, ZIP-215 decodes it as the identity and accepts",
        ),
        (
            "non-canonical-r",
            identity_non_canonical(),
            false,
            "R = identity encoded as y = p + 1: RFC 8032 decoding refuses y >= p, ZIP-215 reduces y mod p and accepts",
        ),
    ] {
        let sig = sign_with_r(r_bytes, Scalar::ZERO, a, &a_bytes, &msg);
        out.push(Adversarial {
            name,
            frame: frame(&r, sig),
            zip215: true,
            rfc8032: rfc,
            strict: false,
            weak_key: false,
            canonical_key: true,
            note,
        });
    }

    // 7-8. A non-canonical encoding of the identity as the key, R = identity, s = 0.
    for (name, a_bytes, note) in [
        (
            "non-canonical-a",
            identity_non_canonical(),
            "A = identity encoded as y = p + 1: RFC 8032 decoding fails, ZIP-215 accepts (any message); weak and non-canonical, refused at registration",
        ),
        (
            "negative-zero-a",
            identity_negative_zero(),
            "A = identity with the sign bit set: RFC 8032 decoding fails, ZIP-215 accepts (any message); weak and non-canonical, refused at registration",
        ),
    ] {
        let r = reading_for(DeviceId(a_bytes));
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&identity_canonical());
        out.push(Adversarial {
            name,
            frame: frame(&r, sig),
            zip215: true,
            rfc8032: false,
            strict: false,
            weak_key: true,
            canonical_key: false,
            note,
        });
    }
    out
}

/// The honest reading of `cases()[0]` signed twice by its key: deterministically, and with
/// another nonce. Both verify under every rule; ingest treats the second as a duplicate.
fn resigned() -> (SignedReading, SignedReading) {
    let (_, i, seq, ts, body) = cases()[0];
    let first = signed_case(i, seq, ts, body);
    let msg = message(&first.reading);
    let nonce = Sha512::new()
        .chain_update(b"groundtruth test vector second nonce")
        .chain_update(&msg)
        .finalize();
    let r = Scalar::from_bytes_mod_order_wide(&nonce.into());
    let r_bytes = (ED25519_BASEPOINT_POINT * r).compress().to_bytes();
    let signature = sign_with_r(r_bytes, r, secret_scalar(i), &first.reading.device.0, &msg);
    (
        first,
        SignedReading {
            reading: first.reading,
            signature,
        },
    )
}

/// The same (device, seq) with a different reading, both honestly signed: equivocation.
fn equivocating() -> (SignedReading, SignedReading) {
    let (_, i, seq, ts, body) = cases()[0];
    let first = signed_case(i, seq, ts, body);
    let ReadingBody::Energy(mut e) = body else {
        unreachable!("case 0 is energy")
    };
    e.energy_wh += 1;
    e.register_wh += 1;
    (first, signed_case(i, seq, ts, ReadingBody::Energy(e)))
}

/// Login-token cases: (name, signer seed, device seed, client id, username, issued,
/// password override, now, expected error name or "ok").
struct LoginCase {
    name: &'static str,
    signer: u64,
    device: u64,
    client_id: String,
    username: String,
    issued: u64,
    password: Option<String>,
    now: u64,
    expected: &'static str,
}

const LOGIN_T: u64 = 1_767_225_600;

fn login_cases() -> Vec<LoginCase> {
    let id = |i: u64| DeviceKey::from_seed(&seed(i)).device_id().to_string();
    let case = |name, now, expected| LoginCase {
        name,
        signer: 0,
        device: 0,
        client_id: id(0),
        username: id(0),
        issued: LOGIN_T,
        password: None,
        now,
        expected,
    };
    let valid_token = login_token(&DeviceKey::from_seed(&seed(0)), &id(0), LOGIN_T);
    vec![
        case("valid", LOGIN_T, "ok"),
        case("valid-oldest", LOGIN_T + 300, "ok"),
        case("valid-newest", LOGIN_T - 300, "ok"),
        case("stale", LOGIN_T + 301, "Stale"),
        case("future", LOGIN_T - 301, "Future"),
        LoginCase {
            signer: 1,
            ..case("wrong-key", LOGIN_T, "BadSignature")
        },
        LoginCase {
            // Device 1's own valid token, presented under device 0's client id.
            password: Some(login_token(
                &DeviceKey::from_seed(&seed(1)),
                &id(1),
                LOGIN_T,
            )),
            ..case("other-devices-token", LOGIN_T, "BadSignature")
        },
        LoginCase {
            password: Some(valid_token.to_uppercase()),
            ..case("upper-case-hex", LOGIN_T, "TokenNotHex")
        },
        LoginCase {
            password: Some(format!("{}z", &valid_token[..143])),
            ..case("not-hex", LOGIN_T, "TokenNotHex")
        },
        LoginCase {
            password: Some(valid_token[..142].to_string()),
            ..case("short", LOGIN_T, "TokenLength")
        },
        LoginCase {
            password: Some(format!("{valid_token}00")),
            ..case("long", LOGIN_T, "TokenLength")
        },
        LoginCase {
            username: "validator:x".into(),
            ..case("username-differs", LOGIN_T, "UsernameMismatch")
        },
        LoginCase {
            client_id: id(0).to_uppercase(),
            username: id(0).to_uppercase(),
            ..case("client-id-upper-case", LOGIN_T, "ClientIdMismatch")
        },
    ]
}

fn login_message(client_id: &str, t: u64) -> Vec<u8> {
    let mut m = LOGIN_DOMAIN_TAG.to_vec();
    m.extend_from_slice(client_id.as_bytes());
    m.extend_from_slice(&t.to_be_bytes());
    m
}

fn login_password(c: &LoginCase) -> String {
    c.password.clone().unwrap_or_else(|| {
        login_token(
            &DeviceKey::from_seed(&seed(c.signer)),
            &c.client_id,
            c.issued,
        )
    })
}

fn login_error_name(e: LoginError) -> &'static str {
    match e {
        LoginError::ClientIdMismatch => "ClientIdMismatch",
        LoginError::UsernameMismatch => "UsernameMismatch",
        LoginError::TokenLength { .. } => "TokenLength",
        LoginError::TokenNotHex => "TokenNotHex",
        LoginError::Stale { .. } => "Stale",
        LoginError::Future { .. } => "Future",
        LoginError::WeakKey => "WeakKey",
        LoginError::BadSignature => "BadSignature",
    }
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
                "rfc8032_strict_valid": a.rfc8032,
                "cofactorless_strict_valid": a.strict,
                "weak_key": a.weak_key,
                "canonical_key": a.canonical_key,
                "note": a.note,
            })
        })
        .collect();
    let (first, second) = resigned();
    let (honest, other) = equivocating();
    let identity = vec![
        json!({
            "name": "resigned-same-reading",
            "first_frame_hex": hex::encode(first.to_frame()),
            "second_frame_hex": hex::encode(second.to_frame()),
            "expected": "duplicate",
            "note": "the same reading bytes under two different valid signatures (another nonce): the second is a duplicate, not equivocation",
        }),
        json!({
            "name": "different-reading-same-seq",
            "first_frame_hex": hex::encode(honest.to_frame()),
            "second_frame_hex": hex::encode(other.to_frame()),
            "expected": "equivocation",
            "note": "two different validly signed readings with one (device, seq)",
        }),
    ];
    let login: Vec<Value> = login_cases()
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "signer_seed_hex": hex::encode(seed(c.signer)),
                "device_hex": DeviceKey::from_seed(&seed(c.device)).device_id().to_string(),
                "client_id": c.client_id,
                "username": c.username,
                "issued_unix": c.issued.to_string(),
                "signed_message_hex": hex::encode(login_message(&c.client_id, c.issued)),
                "password": login_password(c),
                "now_unix": c.now.to_string(),
                "max_skew_secs": DEFAULT_LOGIN_SKEW_SECS.to_string(),
                "expected": c.expected,
            })
        })
        .collect();
    json!({
        "protocol_version": PROTOCOL_VERSION,
        "login_domain_tag_hex": hex::encode(LOGIN_DOMAIN_TAG),
        "domain_tag_hex": hex::encode(DOMAIN_TAG),
        "description": "groundtruth device protocol v1 test vectors; see device-sdk/PROTOCOL.md. Integers are decimal strings. seed_hex is the RFC 8032 private key; signatures are deterministic ed25519 over signed_message_hex = domain_tag ‖ reading bytes; frame = reading bytes ‖ signature.",
        "valid": valid,
        "invalid_frames": invalid,
        "bad_signatures": tampered,
        "adversarial_signatures": adv,
        "reading_identity": identity,
        "login_tokens": login,
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
        let mut msg = DOMAIN_TAG.to_vec();
        msg.extend_from_slice(&reading_bytes(&s.reading));
        assert_eq!(
            rfc8032_strict(&s.reading.device.0, &s.signature, &msg),
            v["rfc8032_strict_valid"].as_bool().unwrap(),
            "{name}: rfc8032"
        );
        assert_eq!(
            s.reading.device.is_canonical(),
            v["canonical_key"].as_bool().unwrap(),
            "{name}: canonical"
        );
        // Every adversarial vector differs between ZIP-215 and at least one stricter rule, or
        // is refused by all: none is in the file for nothing.
        assert!(
            !expected || !strict || !v["rfc8032_strict_valid"].as_bool().unwrap(),
            "{name}"
        );
    }
    // The honest signatures pass the reference RFC 8032 check too.
    let mut msg = DOMAIN_TAG.to_vec();
    msg.extend_from_slice(&reading_bytes(&honest.reading));
    assert!(rfc8032_strict(
        &honest.reading.device.0,
        &honest.signature,
        &msg
    ));
}

#[test]
fn reading_identity_vectors() {
    let file = load();
    for v in file["reading_identity"].as_array().unwrap() {
        let name = v["name"].as_str().unwrap();
        let a = SignedReading::decode_frame(&unhex(&v["first_frame_hex"])).unwrap();
        let b = SignedReading::decode_frame(&unhex(&v["second_frame_hex"])).unwrap();
        assert_eq!(a.verify(), Ok(()), "{name}");
        assert_eq!(b.verify(), Ok(()), "{name}");
        assert_eq!(
            (a.reading.device, a.reading.seq),
            (b.reading.device, b.reading.seq),
            "{name}: one identity"
        );
        assert_ne!(a.signature, b.signature, "{name}: two signatures");
        // The rule: compare reading bytes (the frame without its last 64 bytes).
        let same_reading = reading_bytes(&a.reading) == reading_bytes(&b.reading);
        let verdict = if same_reading {
            "duplicate"
        } else {
            "equivocation"
        };
        assert_eq!(verdict, v["expected"].as_str().unwrap(), "{name}");
    }
}

#[test]
fn login_token_vectors() {
    let file = load();
    assert_eq!(unhex(&file["login_domain_tag_hex"]), LOGIN_DOMAIN_TAG);
    let cases = file["login_tokens"].as_array().unwrap();
    assert!(cases.iter().any(|c| c["expected"] == "ok"));
    for v in cases {
        let name = v["name"].as_str().unwrap();
        let signer = DeviceKey::from_seed(&unhex(&v["signer_seed_hex"]).try_into().unwrap());
        let device = DeviceId(unhex(&v["device_hex"]).try_into().unwrap());
        let client_id = v["client_id"].as_str().unwrap();
        let issued = num(&v["issued_unix"]);
        let password = v["password"].as_str().unwrap();
        let mut msg = LOGIN_DOMAIN_TAG.to_vec();
        msg.extend_from_slice(client_id.as_bytes());
        msg.extend_from_slice(&issued.to_be_bytes());
        assert_eq!(msg, unhex(&v["signed_message_hex"]), "{name}: message");
        let got = verify_login(
            &device,
            client_id,
            v["username"].as_str().unwrap(),
            password,
            num(&v["now_unix"]),
            num(&v["max_skew_secs"]),
        );
        let got = got.map_or_else(login_error_name, |()| "ok");
        assert_eq!(got, v["expected"].as_str().unwrap(), "{name}");
        if got == "ok" {
            // Reproducible: the token is time ‖ the deterministic signature of the message.
            assert_eq!(login_token(&signer, client_id, issued), password, "{name}");
            let token = hex::decode(password).unwrap();
            assert_eq!(&token[..8], &issued.to_be_bytes(), "{name}");
            let vk = ed25519_dalek::VerifyingKey::from_bytes(&device.0).unwrap();
            let sig = ed25519_dalek::Signature::from_slice(&token[8..]).unwrap();
            assert!(vk.verify_strict(&msg, &sig).is_ok(), "{name}: dalek");
        }
    }
}
