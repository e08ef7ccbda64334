//! The crate's one error type. Each variant names the check that failed.

use crate::envelope::StatementKind;

/// Result alias for this crate.
pub type Result<T> = core::result::Result<T, ProofError>;

/// Everything that can go wrong while building, encoding or checking a proof.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The envelope bytes are malformed (truncated, bad magic, trailing bytes, bad lengths).
    #[error("malformed proof envelope: {0}")]
    Decode(&'static str),
    /// The envelope has a format version this build does not know.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(u16),
    /// The caller asked to verify one statement kind but the envelope claims another.
    #[error("envelope holds a {found} statement, expected {expected}")]
    WrongStatement {
        /// Kind the caller expected.
        expected: StatementKind,
        /// Kind found in the envelope.
        found: StatementKind,
    },
    /// The public inputs are out of the ranges the statement supports.
    #[error("invalid public inputs: {0}")]
    InvalidPublicInputs(&'static str),
    /// The statement's parameters (value width, chunk size, …) are not the ones this build proves.
    #[error("unsupported statement parameters: {0}")]
    UnsupportedParameters(&'static str),
    /// The proof's options are not the options of the security level the envelope states.
    #[error("proof options do not match the stated security level")]
    OptionsMismatch,
    /// The proof bytes do not deserialise.
    #[error("proof bytes do not decode: {0}")]
    ProofDecode(String),
    /// The proof's trace shape (length, widths) is not the one the statement implies.
    #[error("proof trace shape does not match the statement: {0}")]
    TraceShape(&'static str),
    /// The STARK verifier rejected the proof against the public inputs.
    #[error("STARK verification failed: {0}")]
    Verification(#[from] winter_verifier::VerifierError),
    /// A reading is larger than its device's cap (refused by the honest prover).
    #[error("device {device} reading {index}: value {value} exceeds cap {cap}")]
    ReadingOverCap {
        /// Position of the device in the batch.
        device: usize,
        /// Position of the reading within the device.
        index: usize,
        /// The reading's interval value.
        value: u64,
        /// The device's cap.
        cap: u64,
    },
    /// Signed reading fields do not form the series a metered statement describes.
    #[error("reading {index}: {what}")]
    ReadingMismatch {
        /// Position of the reading in the input.
        index: usize,
        /// What does not hold.
        what: &'static str,
    },
    /// The prover's input is not well formed (empty device, too many readings, …).
    #[error("invalid prover input: {0}")]
    InvalidInput(&'static str),
    /// A chunk opening does not lead to the committed root (natively checked).
    #[error("opening {sample} (chunk {index}) does not lead to the committed root")]
    OpeningMismatch {
        /// Sample number in the challenge.
        sample: usize,
        /// Chunk index of the opening.
        index: u64,
    },
    /// A response does not answer the challenge (wrong count, index, chunk or path length).
    #[error("response does not match the challenge: {0}")]
    ResponseShape(&'static str),
    /// Reading the data to commit failed.
    #[error("i/o error: {0}")]
    Io(String),
    /// The winterfell prover failed.
    #[error("prover failed: {0}")]
    Prover(String),
}

impl From<std::io::Error> for ProofError {
    fn from(e: std::io::Error) -> Self {
        ProofError::Io(e.to_string())
    }
}
