//! The crate's one error type.

/// Result alias for this crate.
pub type Result<T, E = ProviderError> = std::result::Result<T, E>;

/// What can stop the agent or fail one of its steps.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Reading the data or a key failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The data cannot be committed or served (empty, too large, changed since start).
    #[error("data: {0}")]
    Data(String),
    /// A chunk index past the data.
    #[error("no chunk {0}")]
    NoSuchChunk(u64),
    /// The proofs library refused the data or failed to prove.
    #[error("proofs: {0}")]
    Proof(#[from] groundtruth_proofs::ProofError),
    /// A GPU challenge could not be computed.
    #[error("gpu: {0}")]
    Gpu(String),
    /// The node's API failed or refused.
    #[error("node api: {0}")]
    Api(#[from] groundtruth_api::ClientError),
    /// The ledger rejected a transaction while applying its block.
    #[error("ledger rejected {what}: {reason}")]
    Rejected {
        /// Which transaction.
        what: &'static str,
        /// The ledger's reason code.
        reason: String,
    },
    /// A transaction did not reach a block in time.
    #[error("{0} not in a block in time")]
    NotIncluded(&'static str),
    /// The configuration is inconsistent.
    #[error("config: {0}")]
    Config(String),
    /// The provider network failed.
    #[error("p2p: {0}")]
    P2p(#[from] groundtruth_p2p::P2pError),
    /// A device key file could not be read or written.
    #[error("key: {0}")]
    Key(#[from] groundtruth_device_sdk::Error),
}
