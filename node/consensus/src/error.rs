//! The crate's error type.

use std::path::PathBuf;

/// Errors of the consensus crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bytes from the network, the WAL or the store did not decode.
    #[error("decoding failed: {0}")]
    Codec(#[from] CodecError),
    /// The decided-block store failed.
    #[error("block store: {0}")]
    Store(#[from] sled::Error),
    /// A file or directory under the home directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The application returned an empty validator set (no member with voting power).
    #[error("the application gave no validator with voting power for height {0}")]
    EmptyValidatorSet(u64),
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The Malachite engine failed to start or stopped.
    #[error("consensus engine: {0}")]
    Engine(String),
    /// The store holds data that contradicts itself or the application.
    #[error("inconsistent state: {0}")]
    Inconsistent(String),
    /// The node has stopped; the handle can no longer be used.
    #[error("consensus node has stopped")]
    Stopped,
    /// The application refused the transaction (see [`crate::Admission`]).
    #[error("transaction refused ({reason}): {detail}")]
    Refused {
        /// Stable reason code.
        reason: &'static str,
        /// Detail.
        detail: String,
    },
    /// The application could not apply a decided block; the node stopped.
    #[error(transparent)]
    Commit(#[from] crate::app::CommitError),
    /// The mempool is full.
    #[error("mempool full ({0} transactions)")]
    MempoolFull(usize),
    /// A transaction is larger than a block may be.
    #[error("transaction of {size} bytes exceeds the block limit of {max} bytes")]
    TxTooLarge {
        /// Size of the transaction.
        size: usize,
        /// The limit.
        max: usize,
    },
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A decoding failure. Never panics: every length is checked against the input first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended early.
    #[error("unexpected end of input")]
    Eof,
    /// Bytes were left after a complete message.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A field held a value outside its domain.
    #[error("invalid {0}")]
    Invalid(&'static str),
}
