//! The versioned proof envelope: statement kind, parameters, public inputs, security level and
//! winterfell proof bytes, with a stable byte encoding and a Blake3 digest.
//!
//! Encoding (version 2, all integers little-endian):
//! ```text
//! magic "GTPF" | version u16 | kind u8 | security level u8 | stated bits u16 |
//! public inputs (u32 length + bytes, kind-specific) | proof (u32 length + bytes)
//! ```
//! Metered public inputs: `value_bits u8 | epoch u64 | window start u64 | window end u64 |
//! commitment [32] | num_readings u64 | devices u32 | devices × (id [32] | cap u64 |
//! start_register u64 | total u64 | first_seq u64 | last_seq u64 | first interval start u64 |
//! interval length u32)`.
//! Retrievability public inputs: `chunk_size u32 | depth u8 | root [32] | seed [32] | k u32 |
//! num_chunks u64`.

use crate::codec::{Reader, Writer};
use crate::error::{ProofError, Result};
use crate::metered::{DeviceTotal, Epoch, MeteredStatement, VALUE_BITS};
use crate::options::SecurityLevel;
use crate::por::{RetrievabilityStatement, CHUNK_SIZE};

/// Envelope magic bytes.
pub const MAGIC: [u8; 4] = *b"GTPF";
/// Current envelope format version.
pub const VERSION: u16 = 2;
pub use crate::layout::MAX_PROOF_BYTES;
/// Largest envelope accepted: header, the largest public inputs (metered, every device at
/// [`crate::metered::MAX_DEVICES`]) and the largest proof.
pub const MAX_ENVELOPE_BYTES: usize = 64
    + PUBLIC_HEADER_BYTES
    + crate::metered::MAX_DEVICES as usize * DEVICE_BYTES
    + MAX_PROOF_BYTES;
/// Bytes of the metered public inputs before the device table.
const PUBLIC_HEADER_BYTES: usize = 1 + 24 + 32 + 8 + 4;
/// Bytes of one device in the metered public inputs.
const DEVICE_BYTES: usize = 32 + 8 * 6 + 4;

/// Which statement a proof is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatementKind {
    /// Metered output (one device or an epoch batch of many).
    MeteredOutput,
    /// Proof of retrievability.
    Retrievability,
}

impl StatementKind {
    fn code(self) -> u8 {
        match self {
            StatementKind::MeteredOutput => 1,
            StatementKind::Retrievability => 2,
        }
    }
}

impl core::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StatementKind::MeteredOutput => "metered-output",
            StatementKind::Retrievability => "retrievability",
        })
    }
}

/// A statement with its public inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// Metered output.
    MeteredOutput(MeteredStatement),
    /// Proof of retrievability.
    Retrievability(RetrievabilityStatement),
}

impl Statement {
    /// The statement's kind.
    pub fn kind(&self) -> StatementKind {
        match self {
            Statement::MeteredOutput(_) => StatementKind::MeteredOutput,
            Statement::Retrievability(_) => StatementKind::Retrievability,
        }
    }
}

/// A proof with everything needed to check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofEnvelope {
    /// What is proved, with its public inputs.
    pub statement: Statement,
    /// Security level (fixes the winterfell options the verifier accepts).
    pub security: SecurityLevel,
    /// winterfell proof bytes.
    pub proof: Vec<u8>,
}

impl ProofEnvelope {
    /// Stable byte encoding (see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut w = Writer::default();
        w.bytes(&MAGIC);
        w.u16(VERSION);
        w.u8(self.statement.kind().code());
        w.u8(self.security.code());
        w.u16(self.security.conjectured_bits() as u16);
        let mut p = Writer::default();
        match &self.statement {
            Statement::MeteredOutput(s) => {
                p.u8(VALUE_BITS as u8);
                p.u64(s.epoch.number);
                p.u64(s.epoch.start_s);
                p.u64(s.epoch.end_s);
                p.bytes(&s.commitment);
                p.u64(s.num_readings);
                p.u32(
                    u32::try_from(s.devices.len())
                        .map_err(|_| ProofError::Decode("too many devices"))?,
                );
                for d in &s.devices {
                    p.bytes(&d.id);
                    p.u64(d.cap);
                    p.u64(d.start_register);
                    p.u64(d.total);
                    p.u64(d.first_seq);
                    p.u64(d.last_seq);
                    p.u64(d.first_interval_start);
                    p.u32(d.interval_len);
                }
            }
            Statement::Retrievability(s) => {
                p.u32(s.chunk_size);
                p.u8(s.depth);
                p.bytes(&s.root);
                p.bytes(&s.seed);
                p.u32(s.k);
                p.u64(s.num_chunks);
            }
        }
        w.blob(&p.0)?;
        w.blob(&self.proof)?;
        Ok(w.0)
    }

    /// Decodes an envelope from untrusted bytes. Checks structure only; call
    /// [`crate::verify`] to check the proof.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_ENVELOPE_BYTES {
            return Err(ProofError::Decode(
                "envelope larger than MAX_ENVELOPE_BYTES",
            ));
        }
        let mut r = Reader::new(bytes);
        if r.array::<4>("missing magic")? != MAGIC {
            return Err(ProofError::Decode("bad magic"));
        }
        let version = r.u16("missing version")?;
        if version != VERSION {
            return Err(ProofError::UnsupportedVersion(version));
        }
        let kind = r.u8("missing statement kind")?;
        let security = SecurityLevel::from_code(r.u8("missing security level")?)
            .ok_or(ProofError::Decode("unknown security level"))?;
        let bits = r.u16("missing security bits")?;
        if u32::from(bits) != security.conjectured_bits() {
            return Err(ProofError::Decode(
                "stated security bits do not match the level",
            ));
        }
        let mut p = Reader::new(r.blob("truncated public inputs")?);
        let statement = match kind {
            1 => {
                if u32::from(p.u8("missing value bits")?) != VALUE_BITS {
                    return Err(ProofError::UnsupportedParameters("value bits"));
                }
                let epoch = Epoch {
                    number: p.u64("missing epoch")?,
                    start_s: p.u64("missing epoch window")?,
                    end_s: p.u64("missing epoch window")?,
                };
                let commitment = p.array::<32>("missing commitment")?;
                let num_readings = p.u64("missing reading count")?;
                let count = p.u32("missing device count")? as usize;
                // Never allocate more than the input can hold.
                if count > p.remaining() / DEVICE_BYTES {
                    return Err(ProofError::Decode("device count exceeds input"));
                }
                let mut devices = Vec::with_capacity(count);
                for _ in 0..count {
                    devices.push(DeviceTotal {
                        id: p.array::<32>("truncated device")?,
                        cap: p.u64("truncated device")?,
                        start_register: p.u64("truncated device")?,
                        total: p.u64("truncated device")?,
                        first_seq: p.u64("truncated device")?,
                        last_seq: p.u64("truncated device")?,
                        first_interval_start: p.u64("truncated device")?,
                        interval_len: p.u32("truncated device")?,
                    });
                }
                Statement::MeteredOutput(MeteredStatement {
                    epoch,
                    commitment,
                    num_readings,
                    devices,
                })
            }
            2 => {
                let chunk_size = p.u32("missing chunk size")?;
                if chunk_size as usize != CHUNK_SIZE {
                    return Err(ProofError::UnsupportedParameters("chunk size"));
                }
                Statement::Retrievability(RetrievabilityStatement {
                    chunk_size,
                    depth: p.u8("missing depth")?,
                    root: p.array::<32>("missing root")?,
                    seed: p.array::<32>("missing seed")?,
                    k: p.u32("missing k")?,
                    num_chunks: p.u64("missing chunk count")?,
                })
            }
            _ => return Err(ProofError::Decode("unknown statement kind")),
        };
        p.finish("trailing bytes in public inputs")?;
        let proof = r.blob("truncated proof")?;
        if proof.len() > MAX_PROOF_BYTES {
            return Err(ProofError::Decode("proof larger than MAX_PROOF_BYTES"));
        }
        let proof = proof.to_vec();
        r.finish("trailing bytes after proof")?;
        Ok(Self {
            statement,
            security,
            proof,
        })
    }

    /// Blake3 digest of the encoding: the id a ledger records for this proof.
    pub fn digest(&self) -> Result<[u8; 32]> {
        Ok(*blake3::hash(&self.to_bytes()?).as_bytes())
    }
}

/// What the verifier expects of the proof's trace.
pub(crate) struct Shape {
    pub length: usize,
    pub main_width: usize,
    pub aux_width: usize,
    pub aux_rands: usize,
}

/// Pre-parses winterfell proof bytes with bounded lengths ([`crate::layout`]), decodes them, checks options and trace shape against the statement, then
/// runs the STARK verifier. Any panic inside winterfell on hostile bytes becomes an error.
pub(crate) fn verify_stark<A>(
    proof_bytes: &[u8],
    level: SecurityLevel,
    shape: Shape,
    pubs: A::PublicInputs,
) -> Result<()>
where
    A: winter_air::Air<BaseField = winter_math::fields::f64::BaseElement>,
    A::PublicInputs: std::panic::UnwindSafe,
{
    use crate::options::CommitmentHasher;
    // Bounded pre-parse first: winterfell sizes allocations from lengths inside the proof.
    crate::layout::check(proof_bytes, level, &shape)?;
    let run = move || -> Result<()> {
        let proof = winter_air::proof::Proof::from_bytes(proof_bytes)
            .map_err(|e| ProofError::ProofDecode(e.to_string()))?;
        if proof.options() != &level.options_for(shape.length) {
            return Err(ProofError::OptionsMismatch);
        }
        let info = proof.trace_info();
        if info.length() != shape.length {
            return Err(ProofError::TraceShape("trace length"));
        }
        if info.main_trace_width() != shape.main_width
            || info.aux_segment_width() != shape.aux_width
            || (shape.aux_width > 0 && info.get_num_aux_segment_rand_elements() != shape.aux_rands)
        {
            return Err(ProofError::TraceShape("trace width"));
        }
        let acceptable =
            winter_verifier::AcceptableOptions::OptionSet(vec![level.options_for(shape.length)]);
        winter_verifier::verify::<
            A,
            CommitmentHasher,
            winter_crypto::DefaultRandomCoin<CommitmentHasher>,
            winter_crypto::MerkleTree<CommitmentHasher>,
        >(proof, pubs, &acceptable)?;
        Ok(())
    };
    std::panic::catch_unwind(run).unwrap_or(Err(ProofError::ProofDecode(
        "verifier panicked on malformed proof".into(),
    )))
}
