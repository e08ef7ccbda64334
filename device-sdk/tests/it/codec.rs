//! Canonical encoding and signature properties.

use groundtruth_device_sdk::{
    verify_batch, DeviceId, DeviceKey, EnergyReading, Error, GpuReading, Reading, ReadingBody,
    ReadingKind, SignedReading, StorageHeartbeat, DOMAIN_TAG, MAX_FRAME_LEN, SIGNATURE_LEN,
};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;

fn arb_body() -> impl Strategy<Value = ReadingBody> {
    prop_oneof![
        (any::<u64>(), 1..=u32::MAX, any::<u64>(), any::<u64>()).prop_map(|(s, l, e, r)| {
            ReadingBody::Energy(EnergyReading {
                interval_start_s: s,
                interval_len_s: l,
                energy_wh: e,
                register_wh: r,
            })
        }),
        (
            any::<u64>(),
            1..=u32::MAX,
            any::<u64>(),
            0..=10_000u16,
            any::<u64>()
        )
            .prop_map(|(s, l, g, u, e)| {
                ReadingBody::Gpu(GpuReading {
                    interval_start_s: s,
                    interval_len_s: l,
                    gpu_ms: g,
                    utilisation_bp: u,
                    energy_wh: e,
                })
            }),
        (any::<[u8; 32]>(), any::<u64>()).prop_map(|(root, c)| {
            ReadingBody::Storage(StorageHeartbeat {
                data_root: root,
                capacity_bytes: c,
            })
        }),
    ]
}

fn arb_signed() -> impl Strategy<Value = SignedReading> {
    (any::<[u8; 32]>(), any::<u64>(), any::<u64>(), arb_body()).prop_map(|(seed, seq, ts, body)| {
        let key = DeviceKey::from_seed(&seed);
        key.sign(Reading {
            device: key.device_id(),
            seq,
            timestamp_ms: ts,
            body,
        })
    })
}

fn sample(seq: u64) -> SignedReading {
    let key = DeviceKey::from_seed(&[11u8; 32]);
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: 1_767_225_600_000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: 1_767_225_600,
            interval_len_s: 300,
            energy_wh: 412,
            register_wh: 9_000,
        }),
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn frame_round_trips_and_verifies(signed in arb_signed()) {
        let frame = signed.to_frame();
        prop_assert_eq!(frame.len(), signed.reading.body.kind().reading_len() + SIGNATURE_LEN);
        prop_assert!(frame.len() <= MAX_FRAME_LEN);
        let back = SignedReading::decode_frame(&frame).unwrap();
        prop_assert_eq!(back, signed);
        prop_assert_eq!(back.to_frame(), frame);
        prop_assert!(back.verify().is_ok());
    }

    #[test]
    fn any_flipped_bit_fails(signed in arb_signed(), idx in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut frame = signed.to_frame();
        let i = idx.index(frame.len());
        frame[i] ^= 1 << bit;
        // Either the frame no longer decodes, or its signature no longer verifies.
        if let Ok(tampered) = SignedReading::decode_frame(&frame) {
            prop_assert!(tampered.verify().is_err(), "flipped bit {} of byte {} still verifies", bit, i);
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = SignedReading::decode_frame(&bytes);
        let _ = Reading::decode(&bytes);
    }
}

#[test]
fn tampered_signature_fails() {
    let mut s = sample(1);
    s.signature[10] ^= 0x40;
    assert_eq!(s.verify(), Err(Error::BadSignature));
    let mut s = sample(1);
    s.reading.seq = 2;
    assert_eq!(s.verify(), Err(Error::BadSignature));
}

#[test]
fn signature_is_over_the_domain_tag() {
    use ed25519_dalek::Signer;
    let seed = [11u8; 32];
    let mut s = sample(0);
    let mut bytes = vec![0u8; s.reading.encoded_len()];
    s.reading.encode_into(&mut bytes).unwrap();
    // A signature over the bare reading bytes (no tag) must not verify.
    let dalek = ed25519_dalek::SigningKey::from_bytes(&seed);
    s.signature = dalek.sign(&bytes).to_bytes();
    assert_eq!(s.verify(), Err(Error::BadSignature));
    let mut tagged = DOMAIN_TAG.to_vec();
    tagged.extend_from_slice(&bytes);
    s.signature = dalek.sign(&tagged).to_bytes();
    assert_eq!(s.verify(), Ok(()));
}

#[test]
fn trailing_and_missing_bytes_are_rejected() {
    let frame = sample(0).to_frame();
    let mut long = frame.clone();
    long.push(0);
    assert!(matches!(
        SignedReading::decode_frame(&long),
        Err(Error::BadLength { .. })
    ));
    assert!(matches!(
        SignedReading::decode_frame(&frame[..frame.len() - 1]),
        Err(Error::BadLength { .. })
    ));
    let reading_len = ReadingKind::Energy.reading_len();
    let mut reading = frame[..reading_len].to_vec();
    reading.push(0);
    assert!(matches!(
        Reading::decode(&reading),
        Err(Error::BadLength { .. })
    ));
    assert_eq!(Reading::decode(&[]), Err(Error::Truncated(0)));
    assert_eq!(
        SignedReading::decode_frame(&[1; 10]),
        Err(Error::Truncated(10))
    );
}

#[test]
fn unknown_version_and_kind_are_rejected() {
    let frame = sample(0).to_frame();
    for v in [0u8, 2, 255] {
        let mut f = frame.clone();
        f[0] = v;
        assert_eq!(
            SignedReading::decode_frame(&f),
            Err(Error::UnsupportedVersion(v))
        );
    }
    for k in [0u8, 4, 255] {
        let mut f = frame.clone();
        f[1] = k;
        assert_eq!(SignedReading::decode_frame(&f), Err(Error::UnknownKind(k)));
    }
}

#[test]
fn out_of_range_fields_are_rejected() {
    let key = DeviceKey::from_seed(&[1u8; 32]);
    let zero_interval = key.sign(Reading {
        device: key.device_id(),
        seq: 0,
        timestamp_ms: 0,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: 0,
            interval_len_s: 0,
            energy_wh: 0,
            register_wh: 0,
        }),
    });
    assert!(matches!(
        SignedReading::decode_frame(&zero_interval.to_frame()),
        Err(Error::InvalidField {
            field: "interval_len_s",
            ..
        })
    ));
    let over = key.sign(Reading {
        device: key.device_id(),
        seq: 0,
        timestamp_ms: 0,
        body: ReadingBody::Gpu(GpuReading {
            interval_start_s: 0,
            interval_len_s: 60,
            gpu_ms: 0,
            utilisation_bp: 10_001,
            energy_wh: 0,
        }),
    });
    assert!(matches!(
        SignedReading::decode_frame(&over.to_frame()),
        Err(Error::InvalidField {
            field: "utilisation_bp",
            ..
        })
    ));
}

#[test]
fn batch_flags_match_single_verification() {
    let mut items: Vec<SignedReading> = (0..20).map(sample).collect();
    items[3].signature[0] ^= 1;
    items[17].reading.timestamp_ms += 1;
    items[9].reading.device = DeviceId([0xffu8; 32]); // not a point on the curve
    let rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
    let flags = verify_batch(&items, rng);
    let single: Vec<bool> = items.iter().map(|i| i.verify().is_ok()).collect();
    assert_eq!(flags, single);
    assert_eq!(flags.iter().filter(|f| !**f).count(), 3);
    let all_good: Vec<SignedReading> = (0..20).map(sample).collect();
    let flags = verify_batch(&all_good, rand_chacha::ChaCha20Rng::seed_from_u64(8));
    assert!(flags.iter().all(|f| *f));
}
