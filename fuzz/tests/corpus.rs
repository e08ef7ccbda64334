//! Replays every kept corpus file (seeds and minimized crashers) through its target, then a
//! fixed number of seeded mutations of them, so the ordinary test run covers the fuzz
//! targets. A failure prints the target, the file or the mutation's bytes in hex.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Mutated inputs per target in the ordinary test run (debug build: keep it fast);
/// `GROUNDTRUTH_FUZZ_MUTATIONS` overrides it (a quick campaign without AFL).
fn mutations() -> usize {
    std::env::var("GROUNDTRUTH_FUZZ_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn corpus(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = groundtruth_fuzz::corpus_dir(name);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect()
}

fn run_caught(target: groundtruth_fuzz::Target, data: &[u8]) -> Result<bool, String> {
    std::panic::catch_unwind(|| target(data)).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

/// One random edit of the kind a fuzzer makes.
fn mutate(rng: &mut ChaCha8Rng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = v.len();
        match rng.gen_range(0..7) {
            0 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let i = rng.gen_range(0..len);
                v[i] = [0, 1, 0x7f, 0x80, 0xff][rng.gen_range(0..5)];
            }
            2 if len > 0 => v.truncate(rng.gen_range(0..len)),
            3 => {
                let at = rng.gen_range(0..=len);
                let extra: Vec<u8> = (0..rng.gen_range(1..16)).map(|_| rng.gen()).collect();
                v.splice(at..at, extra);
            }
            4 if len >= 4 => {
                // A length-like field set to an extreme.
                let i = rng.gen_range(0..len - 3);
                let word = [0u32, 1, 0xff, 0xffff, u32::MAX, len as u32][rng.gen_range(0..6)];
                v[i..i + 4].copy_from_slice(&word.to_be_bytes());
            }
            5 if !other.is_empty() => {
                let cut = rng.gen_range(0..=len);
                let from = rng.gen_range(0..other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => v = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect(),
        }
    }
    v
}

fn replay(name: &str) {
    let target = groundtruth_fuzz::target(name).expect("known target");
    let files = corpus(name);
    assert!(!files.is_empty(), "fuzz/corpus/{name}/ is empty");
    let mut accepted = 0;
    for (file, data) in &files {
        match run_caught(target, data) {
            Ok(true) => accepted += 1,
            Ok(false) => {}
            Err(msg) => panic!("{name}: corpus file {file} fails: {msg}"),
        }
    }
    assert!(
        accepted > 0,
        "{name}: no corpus file is accepted (do the seeds still decode?)"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(0x6775_7a7a ^ name.len() as u64);
    for i in 0..mutations() {
        let base = &files[rng.gen_range(0..files.len())].1;
        let other = &files[rng.gen_range(0..files.len())].1;
        let input = mutate(&mut rng, base, other);
        if let Err(msg) = run_caught(target, &input) {
            panic!("{name}: mutation {i} fails: {msg}\ninput: {}", hex(&input));
        }
    }
}

#[test]
fn reading_frame() {
    replay("reading_frame");
}

#[test]
fn ledger_tx() {
    replay("ledger_tx");
}

#[test]
fn consensus_msg() {
    replay("consensus_msg");
}

#[test]
fn proof_envelope() {
    replay("proof_envelope");
}

#[test]
fn queue_log() {
    replay("queue_log");
}

#[test]
fn p2p_message() {
    replay("p2p_message");
}

#[test]
fn api_body() {
    replay("api_body");
}

#[test]
fn every_target_has_a_replay_test() {
    let names: Vec<&str> = groundtruth_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        [
            "reading_frame",
            "ledger_tx",
            "consensus_msg",
            "proof_envelope",
            "queue_log",
            "p2p_message",
            "api_body"
        ]
    );
}
