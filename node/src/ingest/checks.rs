//! The pure part of ingest: what makes a reading acceptable. No I/O, no clock.

use super::registry::{DeviceRecord, Registry};
use groundtruth_device_sdk::{topics, ReadingBody, SignedReading, SIGNATURE_LEN};

/// Why a message on a readings topic was not accepted. The names are metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rejection {
    /// Payload larger than the configured bound.
    Oversize,
    /// Payload is not a valid frame (bad length, version, kind or field).
    Malformed,
    /// The topic is not a readings topic, or names another device than the frame.
    TopicMismatch,
    /// The device id is not registered.
    UnknownDevice,
    /// The device is registered for another kind of reading.
    KindMismatch,
    /// The value is impossible for the device's registered capacity.
    Implausible,
    /// The signature does not verify under the device key.
    BadSignature,
    /// The identical reading is already stored (a replay or a redelivery).
    Duplicate,
    /// A different reading with the same (device, seq) is already stored: both are kept as
    /// evidence.
    Equivocation,
    /// The device sent more than its token bucket allows (checked before the signature).
    RateLimited,
    /// The interval does not start after the previous reading's interval.
    IntervalNotAdvancing,
    /// The interval starts before the previous reading's interval ended.
    IntervalOverlap,
    /// The interval ends (or the heartbeat is stamped) beyond now plus the allowed clock skew.
    FutureTimestamp,
    /// The register does not advance by exactly the interval's energy.
    RegisterDiscontinuity,
    /// The sequence number is too far ahead of the device's first missing one to be tracked.
    SeqGapTooFar,
}

impl Rejection {
    /// Every reason, for metrics pre-registration.
    pub const ALL: [Rejection; 15] = [
        Self::Oversize,
        Self::Malformed,
        Self::TopicMismatch,
        Self::UnknownDevice,
        Self::KindMismatch,
        Self::Implausible,
        Self::BadSignature,
        Self::Duplicate,
        Self::Equivocation,
        Self::RateLimited,
        Self::IntervalNotAdvancing,
        Self::IntervalOverlap,
        Self::FutureTimestamp,
        Self::RegisterDiscontinuity,
        Self::SeqGapTooFar,
    ];

    /// Stable snake_case name used as the `reason` metric label.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Oversize => "oversize",
            Self::Malformed => "malformed",
            Self::TopicMismatch => "topic_mismatch",
            Self::UnknownDevice => "unknown_device",
            Self::KindMismatch => "kind_mismatch",
            Self::Implausible => "implausible",
            Self::BadSignature => "bad_signature",
            Self::Duplicate => "duplicate",
            Self::Equivocation => "equivocation",
            Self::RateLimited => "rate_limited",
            Self::IntervalNotAdvancing => "interval_not_advancing",
            Self::IntervalOverlap => "interval_overlap",
            Self::FutureTimestamp => "future_timestamp",
            Self::RegisterDiscontinuity => "register_discontinuity",
            Self::SeqGapTooFar => "seq_gap_too_far",
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

/// Stateless checks before the signature: size, decoding, topic, registration and kind.
/// Cheap checks run first so junk never costs a signature verification. Capacity is checked
/// after the signature, so that an authentic but implausible reading is kept on record.
pub fn precheck(
    topic: &str,
    payload: &[u8],
    max_payload: usize,
    registry: &Registry,
) -> Result<SignedReading, Rejection> {
    if payload.len() > max_payload {
        return Err(Rejection::Oversize);
    }
    let signed = SignedReading::decode_frame(payload).map_err(|_| Rejection::Malformed)?;
    let topic_device = topics::device_of_readings_topic(topic).ok_or(Rejection::TopicMismatch)?;
    if topic_device != signed.reading.device {
        return Err(Rejection::TopicMismatch);
    }
    let record = registry
        .get(&signed.reading.device)
        .ok_or(Rejection::UnknownDevice)?;
    if record.kind != signed.reading.body.kind() {
        return Err(Rejection::KindMismatch);
    }
    Ok(signed)
}

/// Whether a reading's value fits the device's registered capacity.
pub fn within_capacity(body: &ReadingBody, record: &DeviceRecord) -> bool {
    let cap = u128::from(record.capacity);
    match body {
        // Wh in the interval ≤ peak W × interval seconds / 3600.
        ReadingBody::Energy(e) => {
            u128::from(e.energy_wh) * 3600 <= cap * u128::from(e.interval_len_s)
        }
        // GPU-ms ≤ GPUs × interval ms.
        ReadingBody::Gpu(g) => u128::from(g.gpu_ms) <= cap * u128::from(g.interval_len_s) * 1000,
        ReadingBody::Storage(s) => u128::from(s.capacity_bytes) <= cap,
    }
}

/// Whether an energy reading's register continues its predecessor's: the register advances by
/// exactly the interval's energy. Other kinds have no register.
pub fn register_continues(previous: &ReadingBody, next: &ReadingBody) -> bool {
    match (previous, next) {
        (ReadingBody::Energy(p), ReadingBody::Energy(n)) => {
            p.register_wh.checked_add(n.energy_wh) == Some(n.register_wh)
        }
        _ => true,
    }
}

/// What to do with an authentic reading given what is already stored at its (device, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreDecision {
    /// Nothing stored there yet.
    New,
    /// The same bytes are stored.
    Duplicate,
    /// Different bytes are stored: equivocation.
    Equivocation,
}

/// Compares a frame with what is stored at its (device, seq). Two frames carrying the same
/// signed reading bytes are a duplicate even if their signatures differ (ed25519 signatures are
/// not unique under ZIP-215, and a re-signed identical reading proves nothing): only a
/// different reading is equivocation.
pub fn decide(existing: Option<&[u8]>, frame: &[u8]) -> StoreDecision {
    match existing {
        None => StoreDecision::New,
        Some(stored) if reading_bytes(stored) == reading_bytes(frame) => StoreDecision::Duplicate,
        Some(_) => StoreDecision::Equivocation,
    }
}

/// The signed reading bytes of a frame (`reading ‖ signature`): everything but the signature.
fn reading_bytes(frame: &[u8]) -> &[u8] {
    frame
        .len()
        .checked_sub(SIGNATURE_LEN)
        .and_then(|n| frame.get(..n))
        .unwrap_or(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading};

    fn setup(capacity: u64) -> (DeviceKey, Registry) {
        let key = DeviceKey::from_seed(&[3u8; 32]);
        let registry = Registry::one_energy_meter(&key.device_id(), capacity);
        (key, registry)
    }

    fn energy(key: &DeviceKey, seq: u64, wh: u64, register: u64) -> SignedReading {
        key.sign(Reading {
            device: key.device_id(),
            seq,
            timestamp_ms: 0,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: 0,
                interval_len_s: 300,
                energy_wh: wh,
                register_wh: register,
            }),
        })
    }

    #[test]
    fn capacity_bound_is_exact() {
        // 6000 W for 300 s is exactly 500 Wh.
        let (key, registry) = setup(6000);
        let topic = topics::readings_topic(&key.device_id());
        let record = registry.get(&key.device_id()).copied().expect("registered");
        let ok = energy(&key, 0, 500, 500);
        assert!(precheck(&topic, &ok.to_frame(), 1024, &registry).is_ok());
        assert!(within_capacity(&ok.reading.body, &record));
        let over = energy(&key, 0, 501, 501);
        assert!(!within_capacity(&over.reading.body, &record));
    }

    #[test]
    fn rejects_by_reason() {
        let (key, registry) = setup(6000);
        let topic = topics::readings_topic(&key.device_id());
        let frame = energy(&key, 0, 10, 10).to_frame();
        assert_eq!(
            precheck(&topic, &frame, 10, &registry),
            Err(Rejection::Oversize)
        );
        assert_eq!(
            precheck(&topic, &frame[1..], 1024, &registry),
            Err(Rejection::Malformed)
        );
        assert_eq!(
            precheck("gt/v1/readings/00", &frame, 1024, &registry),
            Err(Rejection::TopicMismatch)
        );
        let stranger = DeviceKey::from_seed(&[9u8; 32]);
        let other = energy(&stranger, 0, 10, 10).to_frame();
        let other_topic = topics::readings_topic(&stranger.device_id());
        assert_eq!(
            precheck(&other_topic, &other, 1024, &registry),
            Err(Rejection::UnknownDevice)
        );
    }

    #[test]
    fn register_and_store_decisions() {
        let (key, _) = setup(6000);
        let a = energy(&key, 0, 10, 110);
        let b = energy(&key, 1, 5, 115);
        let c = energy(&key, 1, 5, 116);
        assert!(register_continues(&a.reading.body, &b.reading.body));
        assert!(!register_continues(&a.reading.body, &c.reading.body));
        let fa = a.to_frame();
        let fb = b.to_frame();
        assert_eq!(decide(None, &fa), StoreDecision::New);
        assert_eq!(decide(Some(&fa), &fa), StoreDecision::Duplicate);
        assert_eq!(decide(Some(&fa), &fb), StoreDecision::Equivocation);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Any bytes on any topic get a verdict, never a panic.
        #[test]
        fn arbitrary_input_never_panics(topic in ".{0,80}", payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let (key, registry) = setup(6000);
            let _ = precheck(&topic, &payload, 1024, &registry);
            let device_topic = topics::readings_topic(&key.device_id());
            let _ = precheck(&device_topic, &payload, 1024, &registry);
        }

        /// Flipping any byte of a valid frame never yields an accepted, differently-signed reading.
        #[test]
        fn tampered_frames_fail(index in 0usize..142, flip in 1u8..=255) {
            let (key, registry) = setup(6000);
            let topic = topics::readings_topic(&key.device_id());
            let mut frame = energy(&key, 3, 10, 110).to_frame();
            let i = index % frame.len();
            frame[i] ^= flip;
            if let Ok(signed) = precheck(&topic, &frame, 1024, &registry) {
                proptest::prop_assert!(signed.verify().is_err());
            }
        }
    }
}
