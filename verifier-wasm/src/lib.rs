//! groundtruth's batch verifier for the browser: given an audit proof envelope and the signed
//! frames behind it (as a node serves them), it checks, trusting no node,
//!
//! 1. every frame's ed25519 signature under its device id (the id is the public key), with the
//!    device SDK's one signature rule;
//! 2. the readings commitment recomputed from the frames, grouped into runs exactly as validators
//!    build an audit batch, equals the proof's; the frame count equals the proof's reading count;
//! 3. the STARK (winterfell) for the statement: per-device totals, contiguous seqs and intervals,
//!    each value within its cap and equal to its register's advance;
//! 4. optionally a claim: the sum of one device's frames over an interval, so a value shown by a
//!    node is tied to signed frames covered by a verified proof.
//!
//! [`verify_batch`] is the native API. The `ffi` module is the module's export surface for
//! `wasm32-unknown-unknown` (no wasm-bindgen): input slots filled by the host, one call that
//! runs the checks, a result code and a JSON message buffer. `api/explorer/verifier.js` is the
//! page's glue.
//!
//! What it does not check: that the proof's per-device caps equal the devices' registered
//! capacities, and that the epoch commitment holding this proof is the one anchored on L1 (both
//! need the ledger's state; `groundtruth verify --epoch N --api URL --l1 …` does them).
//!
//! Must not depend on networking, storage, threads or a source of randomness: it runs in a page.

use std::collections::BTreeMap;

use groundtruth_device_sdk::{ReadingBody, SignedReading};
use groundtruth_proofs::metered::readings_commitment;
use groundtruth_proofs::{
    runs_from_readings, MeteredStatement, ProofEnvelope, ProofError, ReadingFields,
};

pub mod ffi;
mod json;

/// Largest frames input accepted (bytes): far above any batch a ledger accepts a proof for.
pub const MAX_FRAMES_BYTES: usize = 64 << 20;
/// Largest proof envelope input accepted (bytes); the envelope decoder has its own tighter cap.
pub const MAX_PROOF_BYTES: usize = 16 << 20;

/// Why a batch was refused. Each variant names the check that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// An input is over its size limit.
    #[error("the {what} is {len} bytes; at most {max}")]
    TooLarge {
        /// Which input.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The proof envelope does not decode.
    #[error("the proof envelope does not decode: {0}")]
    Envelope(ProofError),
    /// The frames do not split into `(u32 BE len ‖ frame)*` or a frame does not decode.
    #[error("frame {index}: {what}")]
    Frame {
        /// Position of the frame.
        index: usize,
        /// What is wrong.
        what: String,
    },
    /// A frame's signature does not verify under its device id.
    #[error("frame {index} (device {device} seq {seq}): the signature does not verify")]
    Signature {
        /// Position of the frame.
        index: usize,
        /// Device id, hex.
        device: String,
        /// Its sequence number.
        seq: u64,
    },
    /// The STARK does not verify for the envelope's statement.
    #[error("the proof does not verify: {0}")]
    Proof(ProofError),
    /// The frames cannot be grouped into the batch the proof states.
    #[error("the frames do not form the batch: {0}")]
    Batch(ProofError),
    /// The commitment recomputed from the frames is not the proof's.
    #[error("the frames' commitment {frames} is not the proof's {proof}")]
    CommitmentMismatch {
        /// Recomputed from the frames, hex.
        frames: String,
        /// In the proof's statement, hex.
        proof: String,
    },
    /// The frames are not as many readings as the proof covers.
    #[error("{frames} metered frames, the proof covers {proof} readings")]
    CountMismatch {
        /// Metered frames given.
        frames: u64,
        /// Readings in the statement.
        proof: u64,
    },
}

impl VerifyError {
    /// The check that failed, as the page shows it: `input`, `envelope`, `frames`,
    /// `signature`, `stark`, `batch`, `commitment` or `count`.
    pub fn check(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "input",
            Self::Envelope(_) => "envelope",
            Self::Frame { .. } => "frames",
            Self::Signature { .. } => "signature",
            Self::Proof(_) => "stark",
            Self::Batch(_) => "batch",
            Self::CommitmentMismatch { .. } => "commitment",
            Self::CountMismatch { .. } => "count",
        }
    }
}

/// A value to tie to the frames: one device's readings whose interval starts in
/// `[from_s, to_s)` (how the API buckets readings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Device id.
    pub device: [u8; 32],
    /// First second of the range.
    pub from_s: u64,
    /// First second after the range.
    pub to_s: u64,
}

impl Claim {
    /// Encoded length: `device ‖ from_s (u64 BE) ‖ to_s (u64 BE)`.
    pub const LEN: usize = 48;

    /// Decodes `device ‖ from_s ‖ to_s`; `None` for any other length.
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let device: [u8; 32] = b.get(..32)?.try_into().ok()?;
        let from_s = u64::from_be_bytes(b.get(32..40)?.try_into().ok()?);
        let to_s = u64::from_be_bytes(b.get(40..48)?.try_into().ok()?);
        (b.len() == Self::LEN).then_some(Self {
            device,
            from_s,
            to_s,
        })
    }

    /// The encoding [`Claim::from_bytes`] reads.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..32].copy_from_slice(&self.device);
        out[32..40].copy_from_slice(&self.from_s.to_be_bytes());
        out[40..].copy_from_slice(&self.to_s.to_be_bytes());
        out
    }
}

/// What the frames say about a [`Claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimResult {
    /// The claim.
    pub claim: Claim,
    /// Sum of the device's interval values (Wh, or GPU-ms) in the range.
    pub value: u64,
    /// Readings summed.
    pub readings: u64,
    /// The device has a total in the proof's statement.
    pub in_statement: bool,
}

/// A batch that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// blake3 of the envelope bytes (the ledger's proof digest).
    pub proof_digest: [u8; 32],
    /// The proof's statement.
    pub statement: MeteredStatement,
    /// Frames checked (storage heartbeats included).
    pub frames: u64,
    /// The claim's result, when one was given.
    pub claim: Option<ClaimResult>,
}

/// Splits `(u32 BE len ‖ frame)*` and decodes each frame.
pub fn split_frames(bytes: &[u8]) -> Result<Vec<SignedReading>, VerifyError> {
    if bytes.len() > MAX_FRAMES_BYTES {
        return Err(VerifyError::TooLarge {
            what: "frames input",
            len: bytes.len(),
            max: MAX_FRAMES_BYTES,
        });
    }
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let index = out.len();
        let frame_err = |what: &str| VerifyError::Frame {
            index,
            what: what.to_string(),
        };
        let (len, tail) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| frame_err("truncated length prefix"))?;
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| frame_err("length does not fit"))?;
        if len > tail.len() {
            return Err(frame_err("truncated frame"));
        }
        let (frame, tail) = tail.split_at(len);
        let r = SignedReading::decode_frame(frame).map_err(|e| VerifyError::Frame {
            index,
            what: format!("does not decode: {e:?}"),
        })?;
        out.push(r);
        rest = tail;
    }
    Ok(out)
}

/// The metered fields of signed readings given device after device (each in sequence order),
/// as the validators' audit batches bind them: an energy reading its signed register, a GPU
/// reading the running total of its device's readings in the list; storage heartbeats are
/// skipped. The validators' audit loop uses this same function
/// (`groundtruth_node::audit::reading_fields` re-exports it), so the page and the network
/// cannot drift apart.
pub fn reading_fields(readings: &[SignedReading]) -> Vec<ReadingFields> {
    let mut out = Vec::with_capacity(readings.len());
    let mut running = 0u64;
    let mut current = None;
    for r in readings {
        if current != Some(r.reading.device) {
            current = Some(r.reading.device);
            running = 0;
        }
        let device = r.reading.device.0;
        let seq = r.reading.seq;
        match &r.reading.body {
            ReadingBody::Energy(e) => out.push(ReadingFields {
                device,
                seq,
                interval_start_s: e.interval_start_s,
                interval_len_s: e.interval_len_s,
                value: e.energy_wh,
                register: e.register_wh,
            }),
            ReadingBody::Gpu(g) => {
                running = running.saturating_add(g.gpu_ms);
                out.push(ReadingFields {
                    device,
                    seq,
                    interval_start_s: g.interval_start_s,
                    interval_len_s: g.interval_len_s,
                    value: g.gpu_ms,
                    register: running,
                });
            }
            ReadingBody::Storage(_) => {}
        }
    }
    out
}

/// Runs every check on one batch: `proof` is the envelope (as `GET
/// /v1/epochs/{n}/proofs/{auditor}` serves it), `frames` the signed frames (as `GET
/// /v1/epochs/{n}/frames/{auditor}` serves them).
pub fn verify_batch(
    proof: &[u8],
    frames: &[u8],
    claim: Option<&Claim>,
) -> Result<Verdict, VerifyError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(VerifyError::TooLarge {
            what: "proof envelope",
            len: proof.len(),
            max: MAX_PROOF_BYTES,
        });
    }
    let proof_digest = *blake3::hash(proof).as_bytes();
    let envelope = ProofEnvelope::from_bytes(proof).map_err(VerifyError::Envelope)?;
    let readings = split_frames(frames)?;
    for (index, r) in readings.iter().enumerate() {
        if r.verify().is_err() {
            return Err(VerifyError::Signature {
                index,
                device: r.reading.device.to_string(),
                seq: r.reading.seq,
            });
        }
    }
    let statement = groundtruth_proofs::verify_metered(&envelope).map_err(VerifyError::Proof)?;
    let caps: BTreeMap<([u8; 32], u32), u64> = statement
        .devices
        .iter()
        .map(|d| ((d.id, d.interval_len), d.cap))
        .collect();
    let fields = reading_fields(&readings);
    let series = runs_from_readings(&fields, |id, len| {
        caps.get(&(*id, len)).copied().unwrap_or(0)
    })
    .map_err(VerifyError::Batch)?;
    let commitment = readings_commitment(&statement.epoch, &series).map_err(VerifyError::Batch)?;
    if commitment != statement.commitment {
        return Err(VerifyError::CommitmentMismatch {
            frames: json::hex(&commitment),
            proof: json::hex(&statement.commitment),
        });
    }
    let metered = u64::try_from(fields.len()).unwrap_or(u64::MAX);
    if metered != statement.num_readings {
        return Err(VerifyError::CountMismatch {
            frames: metered,
            proof: statement.num_readings,
        });
    }
    let claim = claim.map(|c| {
        let (mut value, mut n) = (0u64, 0u64);
        for f in fields.iter().filter(|f| {
            f.device == c.device && f.interval_start_s >= c.from_s && f.interval_start_s < c.to_s
        }) {
            value = value.saturating_add(f.value);
            n = n.saturating_add(1);
        }
        ClaimResult {
            claim: *c,
            value,
            readings: n,
            in_statement: statement.devices.iter().any(|d| d.id == c.device),
        }
    });
    Ok(Verdict {
        proof_digest,
        statement,
        frames: u64::try_from(readings.len()).unwrap_or(u64::MAX),
        claim,
    })
}

#[cfg(test)]
mod tests;
