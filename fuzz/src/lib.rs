//! Fuzz targets for every decoder of untrusted bytes in groundtruth.
//!
//! Each target is a plain function `fn(&[u8]) -> bool` (true when the input decoded) that feeds
//! the bytes to the real decoder a node, device or client runs on data from outside, and panics
//! when a property beyond "no panic" is broken: canonical decoders must re-encode an accepted
//! input to exactly the same bytes, size bounds must hold, and recovery must be idempotent.
//! The same functions run three ways:
//!
//! - `cargo test -p groundtruth-fuzz` replays every file under `fuzz/corpus/<target>/` and a
//!   fixed number of seeded mutations of them (`tests/corpus.rs`);
//! - `scripts/fuzz.sh` builds the `afl-target` binary (feature `afl`) with `cargo afl` and runs
//!   AFL++ on each target for a while, on the stable toolchain;
//! - a crasher saved under `fuzz/corpus/<target>/` is replayed by the ordinary test run forever
//!   after.
//!
//! What this crate must not do: carry its own copy of a decoder (it calls the crates' own), or
//! be depended on by any product crate.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use bytes::Bytes;

/// A fuzz target: feeds the bytes to a decoder and checks its properties; true when the input
/// was accepted (decoded) by the main decoder of the target.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by name (the name is also its corpus folder `fuzz/corpus/<name>/`).
pub const TARGETS: &[(&str, Target)] = &[
    ("reading_frame", reading_frame),
    ("ledger_tx", ledger_tx),
    ("consensus_msg", consensus_msg),
    ("proof_envelope", proof_envelope),
    ("queue_log", queue_log),
    ("p2p_message", p2p_message),
    ("api_body", api_body),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The corpus folder of a target: `fuzz/corpus/<name>/`.
pub fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

// ---- reading frames -------------------------------------------------------------------------

/// A device's signed reading frame as ingest receives it from MQTT (and as a peer replicates
/// it): `SignedReading::decode_frame` (what `node::ingest::checks` calls), then the signature
/// check. Also the device side's untrusted input, a resend request payload.
///
/// Checks: an accepted frame is at most `MAX_FRAME_LEN` bytes and re-encodes to exactly the
/// input (one encoding per reading); its reading part decodes alone to the same reading;
/// verification returns (ok or error) without panicking. A resend request that decodes
/// re-encodes to the same payload.
pub fn reading_frame(data: &[u8]) -> bool {
    use groundtruth_device_sdk::topics::{decode_resend_request, encode_resend_request};
    use groundtruth_device_sdk::{Reading, SignedReading, MAX_FRAME_LEN, SIGNATURE_LEN};

    if let Some(seq) = decode_resend_request(data) {
        assert_eq!(
            encode_resend_request(seq).as_slice(),
            data,
            "resend request re-encodes differently"
        );
    }
    let Ok(signed) = SignedReading::decode_frame(data) else {
        return false;
    };
    assert!(
        data.len() <= MAX_FRAME_LEN,
        "accepted frame over MAX_FRAME_LEN"
    );
    assert_eq!(signed.frame_len(), data.len(), "frame_len disagrees");
    assert_eq!(signed.to_frame(), data, "frame is not canonical");
    let reading = data
        .get(..data.len() - SIGNATURE_LEN)
        .map(Reading::decode)
        .and_then(Result::ok);
    assert_eq!(
        reading,
        Some(signed.reading),
        "reading part decodes differently"
    );
    let _ = signed.verify();
    true
}

// ---- ledger transactions --------------------------------------------------------------------

/// A ledger transaction as `POST /tx`, the mempool and transaction gossip receive it
/// (`SignedTx::decode`), and the same bytes as a ledger block (`Block::decode`).
///
/// Checks: an accepted transaction is at most `MAX_TX_LEN` bytes, and at most
/// `MAX_PLAIN_TX_LEN` unless it carries an audit or storage proof; it re-encodes to exactly the
/// input; its hash is the hash of the input; signature verification returns without panicking. An
/// accepted block re-encodes to exactly the input. True when either decoded.
pub fn ledger_tx(data: &[u8]) -> bool {
    use groundtruth_ledger::tx::{MAX_PLAIN_TX_LEN, MAX_TX_LEN};
    use groundtruth_ledger::{Block, SignedTx};

    let block = Block::decode(data).ok();
    if let Some(block) = &block {
        assert_eq!(block.encode(), data, "block is not canonical");
    }
    let Ok(tx) = SignedTx::decode(data) else {
        return block.is_some();
    };
    assert!(data.len() <= MAX_TX_LEN, "accepted tx over MAX_TX_LEN");
    if !tx.tx.body.carries_proof() {
        assert!(
            data.len() <= MAX_PLAIN_TX_LEN,
            "accepted plain tx over MAX_PLAIN_TX_LEN"
        );
    }
    assert_eq!(tx.encode(), data, "tx is not canonical");
    assert_eq!(
        tx.hash(),
        *blake3::hash(data).as_bytes(),
        "tx hash is not the hash of its bytes"
    );
    let _ = tx.verify("groundtruth-fuzz");
    true
}

// ---- consensus messages ---------------------------------------------------------------------

/// Which consensus message type the first input byte selects.
const CONSENSUS_KINDS: u8 = 11;

/// A message from a consensus peer (or a WAL entry read back): the first byte picks one of the
/// types `GtCodec` decodes (consensus votes and proposals, liveness messages, proposal-part
/// streams, validator proofs, sync status, requests and responses, proposed values, polka
/// certificates) or a consensus block, the rest is the message.
///
/// Checks: the codec is strict, so an accepted message re-encodes to exactly its bytes (no
/// malleable encodings that would give one vote two hashes).
pub fn consensus_msg(data: &[u8]) -> bool {
    use groundtruth_consensus::block::Block;
    use groundtruth_consensus::types::{GtContext, ProposalPart};
    use groundtruth_consensus::GtCodec;
    use malachitebft_app_channel::app::consensus::{
        LivenessMsg, ProposedValue, SignedConsensusMsg,
    };
    use malachitebft_app_channel::app::streaming::StreamMessage;
    use malachitebft_app_channel::app::types::codec::Codec;
    use malachitebft_app_channel::app::types::core::{PolkaCertificate, ValidatorProof};
    use malachitebft_app_channel::app::types::sync;

    fn canonical<T>(body: &[u8]) -> bool
    where
        GtCodec: Codec<T>,
    {
        let Ok(msg) = Codec::<T>::decode(&GtCodec, Bytes::copy_from_slice(body)) else {
            return false;
        };
        let again = Codec::<T>::encode(&GtCodec, &msg).ok();
        assert_eq!(
            again.as_deref(),
            Some(body),
            "{} is not canonical",
            std::any::type_name::<T>()
        );
        true
    }

    let Some((kind, body)) = data.split_first() else {
        return false;
    };
    match kind % CONSENSUS_KINDS {
        0 => canonical::<SignedConsensusMsg<GtContext>>(body),
        1 => canonical::<LivenessMsg<GtContext>>(body),
        2 => canonical::<ProposalPart>(body),
        3 => canonical::<StreamMessage<ProposalPart>>(body),
        4 => canonical::<ValidatorProof<GtContext>>(body),
        5 => canonical::<sync::Status<GtContext>>(body),
        6 => canonical::<sync::Request<GtContext>>(body),
        7 => canonical::<sync::Response<GtContext>>(body),
        8 => canonical::<ProposedValue<GtContext>>(body),
        9 => canonical::<PolkaCertificate<GtContext>>(body),
        _ => match Block::decode(Bytes::copy_from_slice(body)) {
            Ok(block) => {
                assert_eq!(block.encode(), body, "consensus block is not canonical");
                true
            }
            Err(_) => false,
        },
    }
}

// ---- proof envelopes ------------------------------------------------------------------------

/// A proof envelope as the ledger receives it inside a `SubmitAuditProof` transaction:
/// `ProofEnvelope::from_bytes`, then `verify_metered` (the ledger's entry) and `verify` (any
/// statement, as `groundtruth verify` does).
///
/// Checks: an accepted envelope is at most `MAX_ENVELOPE_BYTES`, its proof at most
/// `MAX_PROOF_BYTES`, it re-encodes to exactly the input and its digest is the hash of the
/// input; the verifiers return without panicking, and never through winterfell panicking on
/// hostile bytes (the bounded pre-parse must refuse them first); a proof that verifies gives
/// back the envelope's own statement.
pub fn proof_envelope(data: &[u8]) -> bool {
    use groundtruth_proofs::envelope::{MAX_ENVELOPE_BYTES, MAX_PROOF_BYTES};
    use groundtruth_proofs::{verify, verify_metered, ProofEnvelope, ProofError, Statement};

    fn no_caught_panic<T>(r: &Result<T, ProofError>) {
        if let Err(ProofError::ProofDecode(msg)) = r {
            assert!(
                !msg.contains("panicked"),
                "winterfell panicked on these bytes (caught): the pre-parse let them through"
            );
        }
    }

    let Ok(env) = ProofEnvelope::from_bytes(data) else {
        return false;
    };
    assert!(
        data.len() <= MAX_ENVELOPE_BYTES,
        "envelope over MAX_ENVELOPE_BYTES"
    );
    assert!(
        env.proof.len() <= MAX_PROOF_BYTES,
        "proof over MAX_PROOF_BYTES"
    );
    assert_eq!(
        env.to_bytes().ok().as_deref(),
        Some(data),
        "envelope is not canonical"
    );
    assert_eq!(
        env.digest().ok(),
        Some(*blake3::hash(data).as_bytes()),
        "digest is not the hash of the bytes"
    );
    let metered = verify_metered(&env);
    no_caught_panic(&metered);
    if let (Ok(s), Statement::MeteredOutput(stated)) = (&metered, &env.statement) {
        assert_eq!(s, stated, "verified statement differs from the envelope's");
    }
    let any = verify(&env);
    no_caught_panic(&any);
    if let Ok(s) = any {
        assert_eq!(
            s, env.statement,
            "verified statement differs from the envelope's"
        );
    }
    true
}

// ---- the device's offline queue log ---------------------------------------------------------

/// A scratch directory for queue logs, on tmpfs when there is one (fsync is then free).
fn queue_scratch() -> Option<&'static Path> {
    static DIR: OnceLock<Option<tempfile::TempDir>> = OnceLock::new();
    DIR.get_or_init(|| {
        let shm = Path::new("/dev/shm");
        if shm.is_dir() {
            if let Ok(d) = tempfile::Builder::new()
                .prefix("gt-fuzz-queue")
                .tempdir_in(shm)
            {
                return Some(d);
            }
        }
        tempfile::Builder::new()
            .prefix("gt-fuzz-queue")
            .tempdir()
            .ok()
    })
    .as_ref()
    .map(tempfile::TempDir::path)
}

/// The on-disk offline queue a device reopens after a crash or power loss (the log may be
/// torn, or damaged): `OfflineQueue::open` over a `queue.log` and a `cursor` made from the
/// input. Byte 0 picks the cursor: `% 3 == 0` none, `1` a valid cursor whose `acked_next` and
/// `next_seq` are the next 16 bytes (big-endian), `2` the next 28 bytes as the raw cursor
/// file. The rest is `queue.log` (its 8-byte header included).
///
/// Checks: an opened queue has `acked_next <= next_seq`; every pending sequence number has a
/// frame that decodes to a reading with that sequence number (unacknowledged readings
/// survive); opening the same directory again (recovery is idempotent) gives the same counters
/// and the same held frames.
pub fn queue_log(data: &[u8]) -> bool {
    use groundtruth_device_sdk::{OfflineQueue, QueueConfig, SignedReading};

    let Some((mode, rest)) = data.split_first() else {
        return false;
    };
    let (cursor, log): (Option<Vec<u8>>, &[u8]) = match mode % 3 {
        0 => (None, rest),
        1 => {
            let Some(words) = rest.get(..16) else {
                return false;
            };
            let mut c = Vec::with_capacity(28);
            c.extend_from_slice(b"GTQC");
            c.extend_from_slice(&[1, 0, 0, 0]);
            c.extend_from_slice(words);
            let crc = crc32(&c);
            c.extend_from_slice(&crc.to_be_bytes());
            (Some(c), rest.get(16..).unwrap_or_default())
        }
        _ => {
            let Some(raw) = rest.get(..28) else {
                return false;
            };
            (Some(raw.to_vec()), rest.get(28..).unwrap_or_default())
        }
    };
    let Some(dir) = queue_scratch() else {
        return false;
    };
    for f in ["queue.log", "queue.log.tmp", "cursor", "cursor.tmp"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    if std::fs::write(dir.join("queue.log"), log).is_err() {
        return false;
    }
    if let Some(c) = &cursor {
        if std::fs::write(dir.join("cursor"), c).is_err() {
            return false;
        }
    }
    let config = QueueConfig {
        dir: dir.to_path_buf(),
        max_entries: std::num::NonZeroUsize::MIN.saturating_add(63),
        retain_acked: 4,
    };
    type Held = (u64, u64, u64, Vec<(u64, Vec<u8>)>);
    let snapshot = |q: &OfflineQueue| -> Held {
        let held = (q.oldest_held()..q.next_seq())
            .filter_map(|s| q.frame(s).map(|f| (s, f.to_vec())))
            .collect();
        (q.acked_next(), q.next_seq(), q.oldest_held(), held)
    };
    let first = match OfflineQueue::open(config.clone()) {
        Ok(q) => {
            assert!(q.acked_next() <= q.next_seq(), "acked_next beyond next_seq");
            for seq in q.acked_next()..q.next_seq() {
                let frame = q.frame(seq);
                assert!(frame.is_some(), "pending reading {seq} has no frame");
                let decoded = frame.map(SignedReading::decode_frame);
                assert!(
                    matches!(&decoded, Some(Ok(r)) if r.reading.seq == seq),
                    "pending frame {seq} does not decode to its sequence number"
                );
            }
            snapshot(&q)
        }
        Err(_) => return false,
    };
    let second = OfflineQueue::open(config).map(|q| snapshot(&q));
    assert_eq!(
        second.as_ref().ok(),
        Some(&first),
        "reopening the recovered queue changed it: {:?}",
        second.as_ref().err()
    );
    true
}

/// CRC-32 (IEEE), as the queue's cursor uses; bitwise, the inputs are tiny.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

// ---- p2p messages ---------------------------------------------------------------------------

/// Largest `/groundtruth/readings` request the validators' swarm reads (as in
/// `groundtruth-p2p`'s service).
const MAX_REQUEST_WIRE_BYTES: u64 = 1024;

/// Drives a future that never waits (reads and writes on memory) to completion.
fn ready<F: std::future::Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => Some(v),
        std::task::Poll::Pending => None,
    }
}

/// A message from another validator on the validators' own swarm (`groundtruth-p2p`). Byte 0
/// picks: `% 3 == 0` a `groundtruth/tx/1` gossip payload (a `SignedTx`, decoded as the node's
/// inbound loop does), `1` a `/groundtruth/readings` request body through libp2p's CBOR
/// request-response codec with the service's size limit, `2` a refusal (the response's
/// refusal part) through the same codec.
///
/// Checks: a decoded request is re-encoded by the codec and decodes to the same value; the
/// range helpers agree (`is_within(max)` implies a non-reversed range of at most `max`);
/// gossip transactions keep the ledger target's properties.
pub fn p2p_message(data: &[u8]) -> bool {
    use groundtruth_p2p::{ReadingsRequest, Refusal, READINGS_PROTOCOL};
    use libp2p::futures::io::Cursor;
    use libp2p::request_response::{cbor::codec::Codec as Cbor, Codec};
    use libp2p::StreamProtocol;

    let Some((kind, body)) = data.split_first() else {
        return false;
    };
    let protocol = StreamProtocol::new(READINGS_PROTOCOL);
    match kind % 3 {
        0 => ledger_tx(body),
        1 => {
            let mut codec = Cbor::<ReadingsRequest, Refusal>::default()
                .set_request_size_maximum(MAX_REQUEST_WIRE_BYTES);
            let read = ready(codec.read_request(&protocol, &mut Cursor::new(body)));
            let Some(Ok(req)) = read else {
                return false;
            };
            if req.is_within(4096) {
                assert!(!req.is_empty(), "a reversed range passed is_within");
                assert!(
                    matches!(req.len(), Some(n) if n <= 4096),
                    "is_within disagrees with len"
                );
            }
            let mut out = Cursor::new(Vec::new());
            let wrote = ready(codec.write_request(&protocol, &mut out, req));
            assert!(matches!(wrote, Some(Ok(()))), "request does not re-encode");
            let again = ready(codec.read_request(&protocol, &mut Cursor::new(out.into_inner())));
            assert!(
                matches!(again, Some(Ok(r)) if r == req),
                "request does not round-trip"
            );
            true
        }
        _ => {
            let mut codec = Cbor::<ReadingsRequest, Refusal>::default();
            let read = ready(codec.read_response(&protocol, &mut Cursor::new(body)));
            let Some(Ok(refusal)) = read else {
                return false;
            };
            let mut out = Cursor::new(Vec::new());
            let wrote = ready(codec.write_response(&protocol, &mut out, refusal));
            assert!(matches!(wrote, Some(Ok(()))), "refusal does not re-encode");
            let again = ready(codec.read_response(&protocol, &mut Cursor::new(out.into_inner())));
            assert!(
                matches!(again, Some(Ok(r)) if r == refusal),
                "refusal does not round-trip"
            );
            true
        }
    }
}

// ---- API request bodies ---------------------------------------------------------------------

/// A `POST /txs` body as the API server reads it: `decode_batch` with the server's default
/// limits, then `SignedTx::decode` on every entry (what the handler does before admission).
/// The body is also read as a `from`/`to` query value (`parse_rfc3339`).
///
/// Checks: an accepted body has at most `max_batch_entries` entries, each at most
/// `max_tx_bytes`, and `encode_batch` of the entries gives back exactly the body; the entries
/// keep the ledger target's properties. A parsed time formats back to a time that parses to
/// the same second.
pub fn api_body(data: &[u8]) -> bool {
    use groundtruth_api::time::{format_rfc3339, parse_rfc3339};
    use groundtruth_api::{decode_batch, encode_batch, ApiConfig};

    if let Ok(Ok(secs)) = std::str::from_utf8(data).map(parse_rfc3339) {
        assert_eq!(
            parse_rfc3339(&format_rfc3339(secs)).ok(),
            Some(secs),
            "a parsed time does not format back"
        );
    }
    let cfg = ApiConfig::default();
    let body = Bytes::copy_from_slice(data);
    let Ok(entries) = decode_batch(&body, cfg.max_batch_entries, cfg.max_tx_bytes) else {
        return false;
    };
    assert!(
        entries.len() <= cfg.max_batch_entries,
        "too many entries accepted"
    );
    assert!(
        entries.iter().all(|e| e.len() <= cfg.max_tx_bytes),
        "an entry over max_tx_bytes accepted"
    );
    assert_eq!(encode_batch(&entries), data, "batch is not canonical");
    for e in &entries {
        ledger_tx(e);
    }
    true
}
