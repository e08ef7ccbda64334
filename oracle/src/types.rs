//! The messages validators sign, and their EIP-712 digests computed on the Rust side.

use alloy::primitives::{aliases::U96, Address, B256};
use alloy::sol_types::{eip712_domain, Eip712Domain, SolStruct};

use crate::bindings::GroundtruthOracle as abi;
use crate::error::{Error, Result};

/// EIP-712 domain name of the contract.
pub const DOMAIN_NAME: &str = "GroundtruthOracle";
/// EIP-712 domain version of the contract.
pub const DOMAIN_VERSION: &str = "1";
/// The most validators a set may hold (the contract's `MAX_VALIDATORS`).
pub const MAX_VALIDATORS: usize = 256;

mod typed {
    // Written from the EIP-712 type strings, independently of the contract's ABI, so the tests
    // compare two derivations of the same digest.
    alloy::sol! {
        struct EpochCommitment {
            uint64 epoch;
            bytes32 readingsRoot;
            bytes32 verifiedTotalsRoot;
            bytes32 proofDigestsRoot;
            bytes32 ledgerStateRoot;
            uint64 setNonce;
        }
        struct ValidatorSetUpdate {
            uint64 setNonce;
            address[] members;
            uint96[] weights;
        }
    }
}

/// The contract's EIP-712 domain on chain `chain_id` at `contract`.
pub fn domain(chain_id: u64, contract: Address) -> Eip712Domain {
    eip712_domain! {
        name: DOMAIN_NAME,
        version: DOMAIN_VERSION,
        chain_id: chain_id,
        verifying_contract: contract,
    }
}

/// What the validators sign for one epoch and what L1 anchors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochCommitment {
    /// The epoch number.
    pub epoch: u64,
    /// Root of the epoch's accepted readings.
    pub readings_root: B256,
    /// Root of the verified production totals.
    pub verified_totals_root: B256,
    /// Root of the digests of the proofs verified in the epoch.
    pub proof_digests_root: B256,
    /// The ledger's state root at the epoch's end.
    pub ledger_state_root: B256,
    /// Nonce of the validator set that signs it.
    pub set_nonce: u64,
}

impl EpochCommitment {
    fn typed(&self) -> typed::EpochCommitment {
        typed::EpochCommitment {
            epoch: self.epoch,
            readingsRoot: self.readings_root,
            verifiedTotalsRoot: self.verified_totals_root,
            proofDigestsRoot: self.proof_digests_root,
            ledgerStateRoot: self.ledger_state_root,
            setNonce: self.set_nonce,
        }
    }

    /// The EIP-712 struct hash: what the contract stores for the epoch.
    pub fn struct_hash(&self) -> B256 {
        self.typed().eip712_hash_struct()
    }

    /// The EIP-712 digest the validators sign.
    pub fn signing_hash(&self, domain: &Eip712Domain) -> B256 {
        self.typed().eip712_signing_hash(domain)
    }

    pub(crate) fn to_abi(self) -> abi::EpochCommitment {
        abi::EpochCommitment {
            epoch: self.epoch,
            readingsRoot: self.readings_root,
            verifiedTotalsRoot: self.verified_totals_root,
            proofDigestsRoot: self.proof_digests_root,
            ledgerStateRoot: self.ledger_state_root,
            setNonce: self.set_nonce,
        }
    }
}

impl From<&abi::EpochAnchored> for EpochCommitment {
    fn from(e: &abi::EpochAnchored) -> Self {
        EpochCommitment {
            epoch: e.epoch,
            readings_root: e.readingsRoot,
            verified_totals_root: e.verifiedTotalsRoot,
            proof_digests_root: e.proofDigestsRoot,
            ledger_state_root: e.ledgerStateRoot,
            set_nonce: e.setNonce,
        }
    }
}

/// A validator set as the contract holds it: L1 signing addresses, strictly increasing, each with
/// a positive weight, under a nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorSet {
    nonce: u64,
    members: Vec<(Address, u64)>,
    total: u128,
}

impl ValidatorSet {
    /// Builds a set from members in any order; refuses duplicates, zero weights, an empty set
    /// and more than [`MAX_VALIDATORS`] members.
    pub fn new(nonce: u64, mut members: Vec<(Address, u64)>) -> Result<Self> {
        if members.is_empty() {
            return Err(Error::InvalidSet("empty"));
        }
        if members.len() > MAX_VALIDATORS {
            return Err(Error::InvalidSet("too many members"));
        }
        members.sort_unstable_by_key(|(a, _)| *a);
        let mut total: u128 = 0;
        let mut last: Option<Address> = None;
        for (addr, weight) in &members {
            if *weight == 0 {
                return Err(Error::InvalidSet("zero weight"));
            }
            if *addr == Address::ZERO || last == Some(*addr) {
                return Err(Error::InvalidSet("zero or duplicate address"));
            }
            last = Some(*addr);
            total = total
                .checked_add(u128::from(*weight))
                .ok_or(Error::InvalidSet("total weight overflows"))?;
        }
        Ok(ValidatorSet {
            nonce,
            members,
            total,
        })
    }

    /// The set's nonce (the genesis set has nonce 1).
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    /// Members by increasing address.
    pub fn members(&self) -> &[(Address, u64)] {
        &self.members
    }

    /// Sum of the weights.
    pub fn total_weight(&self) -> u128 {
        self.total
    }

    /// The weight of `who`, if a member.
    pub fn weight_of(&self, who: Address) -> Option<u64> {
        self.members
            .binary_search_by_key(&who, |(a, _)| *a)
            .ok()
            .and_then(|i| self.members.get(i))
            .map(|(_, w)| *w)
    }

    /// Whether `signed` is at least two thirds of the total weight (the contract's rule).
    pub fn is_quorum(&self, signed: u128) -> bool {
        // Weights are u64 and at most MAX_VALIDATORS of them, so 3 * total fits in u128.
        match (signed.checked_mul(3), self.total.checked_mul(2)) {
            (Some(s), Some(t)) => s >= t,
            _ => false,
        }
    }

    /// The addresses, as the contract takes them.
    pub fn addresses(&self) -> Vec<Address> {
        self.members.iter().map(|(a, _)| *a).collect()
    }

    /// The weights, as the contract takes them.
    pub fn weights_u96(&self) -> Vec<U96> {
        self.members.iter().map(|(_, w)| U96::from(*w)).collect()
    }

    /// The EIP-712 digest the current set signs to install `self` (whose nonce must be the
    /// current nonce plus one).
    pub fn update_signing_hash(&self, domain: &Eip712Domain) -> B256 {
        typed::ValidatorSetUpdate {
            setNonce: self.nonce,
            members: self.addresses(),
            weights: self.weights_u96(),
        }
        .eip712_signing_hash(domain)
    }
}
