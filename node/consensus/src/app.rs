//! The boundary between consensus and the replicated state machine.
//!
//! The application (the ledger) sees only plain data: heights, transaction bytes, public keys,
//! signatures and state roots. No Malachite type crosses this boundary, so the ledger can stay
//! a pure, deterministic crate.

use bytes::Bytes;

/// A validator as the application sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorInfo {
    /// ed25519 public key (also the validator's consensus address).
    pub public_key: [u8; 32],
    /// Voting power, e.g. bonded stake. Zero-power entries are ignored.
    pub voting_power: u64,
}

/// One precommit signature of a commit certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitSignature {
    /// The signer's public key.
    pub validator: [u8; 32],
    /// ed25519 signature over the precommit's signing bytes
    /// (see [`precommit_sign_bytes`]).
    pub signature: [u8; 64],
}

/// Proof that a block was decided: precommits from more than 2/3 of the voting power.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitCertificate {
    /// Height of the block.
    pub height: u64,
    /// Round in which it was decided.
    pub round: u32,
    /// Hash of the encoded block.
    pub block_hash: [u8; 32],
    /// Precommit signatures, sorted by validator.
    pub signatures: Vec<CommitSignature>,
}

/// The bytes a validator signed in its precommit for `block_hash` at `(height, round)`.
/// Lets anyone check a [`CommitCertificate`] with plain ed25519.
pub fn precommit_sign_bytes(
    height: u64,
    round: u32,
    block_hash: [u8; 32],
    validator: [u8; 32],
) -> Vec<u8> {
    crate::types::Vote {
        vote_type: malachitebft_app_channel::app::types::core::VoteType::Precommit,
        height: crate::types::Height(height),
        round: malachitebft_app_channel::app::types::core::Round::new(round),
        value: malachitebft_app_channel::app::types::core::NilOrVal::Val(crate::types::BlockHash(
            block_hash,
        )),
        validator: crate::types::Address(validator),
        extension: None,
    }
    .to_sign_bytes()
}

/// A decided block handed to [`Application::commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecidedBlock {
    /// Height (1-based, contiguous).
    pub height: u64,
    /// Transactions in execution order.
    pub txs: Vec<Bytes>,
    /// The certificate that decided it.
    pub certificate: CommitCertificate,
}

/// One signed consensus message inside evidence: the exact bytes signed and the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedBytes {
    /// The signing bytes (domain-separated; see `types::Vote::to_sign_bytes`).
    pub message: Vec<u8>,
    /// ed25519 signature over `message`.
    pub signature: [u8; 64],
}

/// What kind of equivocation.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EvidenceKind {
    /// Two different votes of one type for one height and round.
    DoubleVote,
    /// Two different proposals for one height and round.
    DoubleProposal,
}

/// Proof that a validator signed two conflicting messages; becomes a slashing transaction.
///
/// Self-contained: [`Evidence::verify`] (or any ed25519 library) checks it without consensus
/// state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    /// Kind of equivocation.
    pub kind: EvidenceKind,
    /// The offender's public key.
    pub validator: [u8; 32],
    /// Height of both messages.
    pub height: u64,
    /// Round of both messages.
    pub round: u32,
    /// First message.
    pub first: SignedBytes,
    /// Conflicting message.
    pub second: SignedBytes,
}

impl Evidence {
    /// Checks both signatures under `validator` and that the messages differ while sharing a
    /// domain tag, height and round (the bytes after the tag start with height and round for
    /// proposals, and with the vote type, height and round for votes).
    pub fn verify(&self) -> bool {
        use malachitebft_signing_ed25519::{PublicKey, Signature};
        let Ok(pk) = PublicKey::from_bytes(self.validator) else {
            return false;
        };
        let sig_ok = |m: &SignedBytes| {
            pk.verify(&m.message, &Signature::from_bytes(m.signature))
                .is_ok()
        };
        let (domain, prefix) = match self.kind {
            EvidenceKind::DoubleVote => (crate::types::VOTE_DOMAIN, 1 + 8 + 8),
            EvidenceKind::DoubleProposal => (crate::types::PROPOSAL_DOMAIN, 8 + 8),
        };
        let header = |m: &SignedBytes| {
            m.message
                .strip_prefix(domain)
                .and_then(|rest| rest.get(..prefix).map(<[u8]>::to_vec))
        };
        let (Some(a), Some(b)) = (header(&self.first), header(&self.second)) else {
            return false;
        };
        let mut expect = Vec::with_capacity(16);
        expect.extend_from_slice(&self.height.to_be_bytes());
        expect.extend_from_slice(&i64::from(self.round).to_be_bytes());
        a == b
            && a.ends_with(&expect)
            && self.first.message != self.second.message
            && sig_ok(&self.first)
            && sig_ok(&self.second)
    }
}

/// Why the application refused a transaction at the mempool's door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// Stable snake_case reason code (for metrics and API responses).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

/// The application's say over the mempool: what may enter, and what must leave after a block.
///
/// The mempool calls [`Admission::admit`] for every new transaction (after its own size,
/// duplicate and capacity checks, holding its lock, so calls are serialised) and
/// [`Admission::after_commit`] after every committed block. Implementations must be quick:
/// they run on the submitting task and on the consensus task.
pub trait Admission: Send + Sync + 'static {
    /// Whether `tx` (blake3 hash `hash`) may enter; on `Ok` the application counts it as
    /// pending until [`Admission::after_commit`] drops it.
    fn admit(&self, hash: &[u8; 32], tx: &[u8]) -> Result<(), Refusal>;

    /// Called after every committed block (the application's `commit` has returned): the
    /// hashes of pending transactions that can no longer be included (consumed nonces,
    /// unpayable fees…). The mempool drops them, and the block's own transactions.
    fn after_commit(&self) -> Vec<[u8; 32]>;
}

/// Why a decided block could not be applied: the node must halt rather than diverge.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("block {height} cannot be applied: {reason}")]
pub struct CommitError {
    /// Height of the block.
    pub height: u64,
    /// What went wrong.
    pub reason: String,
}

/// The replicated state machine driven by consensus.
///
/// Every method is called from the consensus task, one at a time, in height order, and must
/// be deterministic: all validators call `commit` with the same blocks and must reach the
/// same state root. Keep them fast (they run on the consensus event loop).
pub trait Application: Send + 'static {
    /// The validator set that decides block `height`, as `(public key, voting power)`.
    /// Called for the next height right after `commit` of the previous one (and at start-up),
    /// so a set that changes at an epoch boundary takes effect at the first height after it.
    /// Must not be empty.
    fn validator_set(&self, height: u64) -> Vec<ValidatorInfo>;

    /// Builds the transaction list of a block this node proposes at `height` from mempool
    /// `candidates` (oldest first, already bounded by the block size limit). Return the ones
    /// to include, in execution order; the default includes all of them.
    fn prepare_block(&mut self, height: u64, candidates: Vec<Bytes>) -> Vec<Bytes> {
        let _ = height;
        candidates
    }

    /// Whether a block proposed by another validator (or received through sync) is
    /// acceptable at `height`, given the state after `height - 1`. Must not change state.
    fn validate_block(&self, height: u64, txs: &[Bytes]) -> bool;

    /// Applies a decided block and returns the state root after it.
    ///
    /// `Err` means the application cannot follow the chain (a decided block that does not
    /// apply, state that cannot be persisted): the consensus node stops with
    /// [`crate::Error::Commit`] instead of voting on a state it does not have.
    fn commit(&mut self, block: &DecidedBlock) -> Result<[u8; 32], CommitError>;

    /// Who decides what enters the mempool (asked once, at start). Default: anything that
    /// fits.
    fn admission(&self) -> Option<std::sync::Arc<dyn Admission>> {
        None
    }

    /// Equivocation found by the engine in the last height. Typically queued as a slashing
    /// transaction for a later block.
    fn on_misbehavior(&mut self, evidence: Evidence);

    /// The last height applied and the state root after it, or `None` for a fresh state.
    /// On start-up, decided blocks above this height are replayed from the block store.
    fn last_committed(&self) -> Option<(u64, [u8; 32])>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use malachitebft_signing_ed25519::PrivateKey;

    fn signed(key: &PrivateKey, message: Vec<u8>) -> SignedBytes {
        let signature = key.sign(&message).to_bytes();
        SignedBytes { message, signature }
    }

    #[test]
    fn double_vote_evidence_verifies_and_rejects_tampering() {
        let key = PrivateKey::from([5; 32]);
        let validator = *key.public_key().as_bytes();
        let ev = Evidence {
            kind: EvidenceKind::DoubleVote,
            validator,
            height: 10,
            round: 2,
            first: signed(&key, precommit_sign_bytes(10, 2, [1; 32], validator)),
            second: signed(&key, precommit_sign_bytes(10, 2, [2; 32], validator)),
        };
        assert!(ev.verify());

        // Same message twice is no equivocation.
        let same = Evidence {
            second: ev.first.clone(),
            ..ev.clone()
        };
        assert!(!same.verify());
        // Different rounds are not conflicting.
        let other_round = Evidence {
            second: signed(&key, precommit_sign_bytes(10, 3, [2; 32], validator)),
            ..ev.clone()
        };
        assert!(!other_round.verify());
        // A forged signature fails.
        let mut forged = ev.clone();
        forged.second.signature[0] ^= 1;
        assert!(!forged.verify());
        // Another validator's key fails.
        let wrong_key = Evidence {
            validator: *PrivateKey::from([6; 32]).public_key().as_bytes(),
            ..ev
        };
        assert!(!wrong_key.verify());
    }
}
