//! Embeds the Malachite BFT engine (Tendermint, `arc-malachitebft-*` 0.8) in a groundtruth
//! validator.
//!
//! The crate implements Malachite's `Context` (heights, ed25519 addresses, stake-weighted
//! validator sets with weighted round-robin proposer selection, proposals, votes and block
//! parts), the ed25519 signing provider, a strict binary codec for everything on the wire and
//! in the WAL, a sled store of decided blocks and certificates, a bounded mempool, and the
//! app-channel event loop. The replicated state machine plugs in through [`Application`]
//! and sees no Malachite type.
//!
//! What this crate must not do: interpret transactions (the ledger does), read configuration
//! files (binaries do), or run its own libp2p protocols next to Malachite's swarm (the node's
//! swarm does; see the mempool TODO).
//!
//! ```no_run
//! # async fn demo(app: impl groundtruth_consensus::Application) -> groundtruth_consensus::Result<()> {
//! use groundtruth_consensus::{run, ConsensusConfig};
//! let config = ConsensusConfig::new("/var/lib/gt/consensus", [7; 32],
//!     "127.0.0.1:26656".parse().expect("addr"), vec![]);
//! let handle = run(config, app).await?;
//! handle.submit_tx(b"tx bytes".to_vec())?;
//! # Ok(()) }
//! ```

mod app;
pub mod block;
mod codec;
mod config;
mod error;
mod mempool;
mod node;
mod signing;
mod store;
mod streaming;
pub mod types;

pub use app::{
    precommit_sign_bytes, Admission, Application, CommitCertificate, CommitError, CommitSignature,
    DecidedBlock, Evidence, EvidenceKind, Refusal, SignedBytes, ValidatorInfo,
};
pub use codec::GtCodec;
pub use config::{Byzantine, ConsensusConfig, Timeouts, BYZANTINE_ENV};
pub use error::{CodecError, Error, Result};
pub use node::{run, Handle, Status};

/// Re-exported so applications can derive keys without depending on Malachite directly.
pub use malachitebft_signing_ed25519::PrivateKey;
