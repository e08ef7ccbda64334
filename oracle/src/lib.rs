//! groundtruth L1 anchoring: the Solidity contract (`contracts/`) that accepts one commitment per
//! epoch signed by validators holding ≥ 2/3 of the weight, and the Rust client that signs,
//! collects, posts and reads those commitments over Ethereum JSON-RPC.
//!
//! - [`EpochCommitment`] and [`ValidatorSet`] with their EIP-712 digests, computed here and checked
//!   against the contract's own by the tests;
//! - [`sign_digest`] and [`Quorum`]: a validator's L1 key signs a digest; signatures are verified,
//!   deduplicated and trimmed to a sorted quorum, as the contract wants them;
//! - [`Oracle`]: the client. It reads what L1 has anchored before sending anything, so a restarted
//!   client resumes where L1 stands and never posts an epoch twice;
//! - [`anvil::Anvil`]: a local Ethereum node (the `anvil` binary that `scripts/setup.sh` installs)
//!   for the devnet, the tests and the gas benchmark.
//!
//! This crate must not depend on node internals: the node hands it roots and signatures.

mod client;
mod error;
mod signing;
mod types;

pub mod anvil;
pub mod bindings;

pub use client::{provider_for, Anchor, Config, Oracle, RetryConfig, Submission};
pub use error::{Error, Result};
pub use signing::{sign_digest, CompactSignature, Quorum};
pub use types::{
    domain, EpochCommitment, ValidatorSet, DOMAIN_NAME, DOMAIN_VERSION, MAX_VALIDATORS,
};

/// Re-exported so callers name the same types as this crate.
pub use alloy::primitives::{keccak256, Address, B256};
/// The local signer type validators and posters use for their L1 keys.
pub use alloy::signers::local::PrivateKeySigner;
/// The EIP-712 domain type [`domain`] returns.
pub use alloy::sol_types::Eip712Domain;
