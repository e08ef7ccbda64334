//! The durable queue against a model: random appends, acknowledgements, restarts and crashes
//! in the middle of an append.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::num::NonZeroUsize;
use std::path::Path;

use groundtruth_device_sdk::{
    DeviceKey, EnergyReading, Error, OfflineQueue, QueueConfig, Reading, ReadingBody, SignedReading,
};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Append,
    /// Acknowledge up to this many more readings.
    Ack(u64),
    Reopen,
    /// Append, then crash with the record's last `cut` bytes never written.
    CrashDuringAppend(u64),
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Append),
        2 => (1u64..6).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
        1 => (1u64..150).prop_map(Op::CrashDuringAppend),
    ]
}

fn sign(key: &DeviceKey, seq: u64, salt: u64) -> SignedReading {
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: salt,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: seq * 300,
            interval_len_s: 300,
            energy_wh: salt,
            register_wh: seq,
        }),
    })
}

fn open(dir: &Path, max: usize, retain: usize) -> OfflineQueue {
    OfflineQueue::open(QueueConfig {
        dir: dir.to_path_buf(),
        max_entries: NonZeroUsize::new(max).unwrap(),
        retain_acked: retain,
    })
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn queue_matches_model(
        ops in prop::collection::vec(arb_op(), 1..40),
        max in 1usize..12,
        retain in 0usize..5,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let key = DeviceKey::from_seed(&[9u8; 32]);
        let mut q = open(dir.path(), max, retain);
        // Model: every frame ever returned by append, the cursor, the counter.
        let mut frames: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut acked = 0u64;
        let mut next = 0u64;
        for (salt, op) in ops.into_iter().enumerate() {
            let salt = salt as u64;
            match op {
                Op::Append => match q.append(|seq| sign(&key, seq, salt)) {
                    Ok(s) => {
                        prop_assert_eq!(s.reading.seq, next);
                        frames.insert(next, s.to_frame());
                        next += 1;
                    }
                    Err(Error::QueueFull(n)) => {
                        prop_assert_eq!(n as u64, next - acked);
                        prop_assert_eq!(n, max);
                    }
                    Err(e) => prop_assert!(false, "append failed: {e}"),
                },
                Op::Ack(n) => {
                    let to = (acked + n).min(next);
                    q.ack_until(to).unwrap();
                    acked = to;
                }
                Op::Reopen => {
                    drop(q);
                    q = open(dir.path(), max, retain);
                }
                Op::CrashDuringAppend(cut) => {
                    if next - acked >= max as u64 {
                        continue;
                    }
                    let log = dir.path().join("queue.log");
                    let before = std::fs::metadata(&log).unwrap().len();
                    q.append(|seq| sign(&key, seq, salt)).unwrap();
                    drop(q);
                    let after = std::fs::metadata(&log).unwrap().len();
                    let cut = cut.min(after - before);
                    let f = OpenOptions::new().write(true).open(&log).unwrap();
                    f.set_len(after - cut).unwrap();
                    drop(f);
                    // The torn reading was never returned to anyone: its number may be reused.
                    q = open(dir.path(), max, retain);
                }
            }
            // The model's counter never goes back, so equality means no number is reused.
            prop_assert_eq!(q.next_seq(), next);
            prop_assert_eq!(q.acked_next(), acked);
            let pending: Vec<(u64, Vec<u8>)> = q.pending().map(|(s, f)| (s, f.to_vec())).collect();
            let expected: Vec<(u64, Vec<u8>)> =
                (acked..next).map(|s| (s, frames[&s].clone())).collect();
            prop_assert_eq!(pending, expected);
            for s in acked.saturating_sub(retain as u64)..acked {
                prop_assert_eq!(q.frame(s), Some(&frames[&s][..]), "retained seq {}", s);
            }
        }
    }
}
