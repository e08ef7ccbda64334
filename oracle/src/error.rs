//! The crate's error type.

use alloy::primitives::{Address, B256};

use crate::bindings::GroundtruthOracle::GroundtruthOracleErrors;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can go wrong while signing, collecting or anchoring.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration cannot be used (bad URL, zero confirmations...).
    #[error("invalid oracle configuration: {0}")]
    Config(String),
    /// A validator set is empty, too large, unsorted, has a zero weight or overflows.
    #[error("invalid validator set: {0}")]
    InvalidSet(&'static str),
    /// The local anvil node could not be found or started.
    #[error("anvil: {0}")]
    Anvil(String),
    /// Signing with a local key failed.
    #[error("signing failed: {0}")]
    Signing(String),
    /// The signatures collected hold less than two thirds of the set's weight.
    #[error("no quorum: signatures hold weight {signed} of {total}")]
    NoQuorum {
        /// Weight of the valid, distinct signers collected.
        signed: u128,
        /// The set's total weight.
        total: u128,
    },
    /// L1 holds a different commitment for this epoch: our ledger and L1 disagree.
    #[error("epoch {epoch}: L1 anchors {on_l1}, ours is {ours}")]
    Conflict {
        /// The epoch.
        epoch: u64,
        /// The struct hash L1 holds.
        on_l1: B256,
        /// The struct hash of the commitment we hold.
        ours: B256,
    },
    /// The epoch cannot be posted before the epochs before it.
    #[error("epoch {epoch} is ahead of L1, which expects epoch {next} next")]
    Gap {
        /// The epoch we tried to post.
        epoch: u64,
        /// The epoch L1 accepts next.
        next: u64,
    },
    /// The epoch precedes the first epoch the contract accepts.
    #[error("epoch {epoch} precedes the contract's first epoch {first}")]
    BeforeFirstEpoch {
        /// The epoch we tried to post.
        epoch: u64,
        /// The contract's first epoch.
        first: u64,
    },
    /// The poster account has a transaction still pending (ours from before a restart, perhaps):
    /// nothing is sent until it settles.
    #[error("account {account} has pending transactions (pending nonce {pending}, mined {mined})")]
    PendingTransaction {
        /// The poster's address.
        account: Address,
        /// Its nonce counting pending transactions.
        pending: u64,
        /// Its nonce counting mined transactions.
        mined: u64,
    },
    /// The contract refused the call with one of its own errors.
    #[error("the contract refused: {0:?}")]
    Rejected(GroundtruthOracleErrors),
    /// The transaction was mined but reverted.
    #[error("transaction {0} reverted")]
    Reverted(B256),
    /// JSON-RPC, transport, ABI or receipt error (retried when transient).
    #[error(transparent)]
    Contract(#[from] alloy::contract::Error),
    /// The attempts allowed by [`crate::RetryConfig`] are spent; the last error is kept.
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp {
        /// How many attempts were made.
        attempts: u32,
        /// The last error seen.
        last: Box<Error>,
    },
}

impl Error {
    /// Whether trying again later may succeed (connection trouble, timeouts, a pending
    /// transaction, node-side refusals that are not the contract's).
    pub fn is_transient(&self) -> bool {
        use alloy::contract::Error as C;
        use alloy::transports::RpcError;
        match self {
            Error::PendingTransaction { .. } => true,
            Error::Contract(C::TransportError(e)) => match e {
                RpcError::Transport(_) | RpcError::NullResp => true,
                // A JSON-RPC error without revert data (nonce too low, underpriced...).
                RpcError::ErrorResp(p) => p.as_revert_data().is_none(),
                _ => false,
            },
            Error::Contract(C::PendingTransactionError(_)) => true,
            _ => false,
        }
    }

    /// Whether L1 refused the epoch because it is anchored already: another validator's
    /// transaction won the race (it may still be confirming). Not a failure of the network.
    pub fn is_already_anchored(&self) -> bool {
        match self {
            Error::Rejected(GroundtruthOracleErrors::EpochAlreadyAnchored(_)) => true,
            Error::GaveUp { last, .. } => last.is_already_anchored(),
            _ => false,
        }
    }

    /// Turns a contract call error into [`Error::Rejected`] when it carries one of the contract's
    /// own revert reasons.
    pub(crate) fn from_call(e: alloy::contract::Error) -> Self {
        match e.as_decoded_interface_error::<GroundtruthOracleErrors>() {
            Some(reason) => Error::Rejected(reason),
            None => Error::Contract(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::GroundtruthOracle::{EpochAlreadyAnchored, GroundtruthOracleErrors as E};

    #[test]
    fn already_anchored_is_recognised_also_after_retries() {
        let lost = Error::Rejected(E::EpochAlreadyAnchored(EpochAlreadyAnchored {
            epoch: 3,
            nextEpoch: 4,
        }));
        assert!(lost.is_already_anchored());
        let retried = Error::GaveUp {
            attempts: 3,
            last: Box::new(lost),
        };
        assert!(retried.is_already_anchored());
        assert!(!Error::Reverted(B256::ZERO).is_already_anchored());
        assert!(!Error::Gap { epoch: 5, next: 4 }.is_already_anchored());
    }
}
