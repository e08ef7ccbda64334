//! The ed25519 signing provider: Malachite's `Signer` and `Verifier` over the signing bytes
//! defined in [`crate::types`].

use async_trait::async_trait;
use bytes::Bytes;

use malachitebft_app_channel::app::types::core::{
    SignedExtension, SignedMessage, SignedProposal, SignedVote, ValidatorProof, VoteExtensionScope,
};
use malachitebft_app_channel::{Signer, Verifier};
use malachitebft_signing_ed25519::{PrivateKey, PublicKey, Signature};

use malachitebft_app_channel::app::types::core::Value as _;

use crate::types::{GtContext, Proposal, Vote, EXTENSION_DOMAIN};

type SigningError = malachitebft_signing::Error;
type VerificationResultAlias = malachitebft_signing::VerificationResult;

/// Verifies ed25519 signatures of votes, proposals, extensions and validator proofs.
#[derive(Copy, Clone, Debug, Default)]
pub struct Ed25519Verifier;

/// Signs with this validator's key.
#[derive(Clone)]
pub struct Ed25519Signer {
    key: PrivateKey,
}

impl std::fmt::Debug for Ed25519Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ed25519Signer")
            .field("public_key", &self.key.public_key())
            .finish()
    }
}

impl Ed25519Signer {
    /// A signer for the given secret key.
    pub fn new(key: PrivateKey) -> Self {
        Self { key }
    }

    /// Signs arbitrary bytes.
    pub fn sign(&self, data: &[u8]) -> Signature {
        self.key.sign(data)
    }
}

fn verdict(ok: bool) -> VerificationResultAlias {
    VerificationResultAlias::from_bool(ok)
}

fn extension_bytes(scope: &VoteExtensionScope<GtContext>, extension: &Bytes) -> Vec<u8> {
    let mut out = Vec::with_capacity(EXTENSION_DOMAIN.len() + 8 + 8 + 32 + 32 + extension.len());
    out.extend_from_slice(EXTENSION_DOMAIN);
    out.extend_from_slice(&scope.height.0.to_be_bytes());
    out.extend_from_slice(&scope.round.as_i64().to_be_bytes());
    out.extend_from_slice(&scope.value_id.id().0);
    out.extend_from_slice(&scope.validator_address.0);
    out.extend_from_slice(extension);
    out
}

#[async_trait]
impl Verifier<GtContext> for Ed25519Verifier {
    async fn verify_signed_vote(
        &self,
        vote: &Vote,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResultAlias, SigningError> {
        Ok(verdict(
            public_key.verify(&vote.to_sign_bytes(), signature).is_ok(),
        ))
    }

    async fn verify_signed_proposal(
        &self,
        proposal: &Proposal,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResultAlias, SigningError> {
        Ok(verdict(
            public_key
                .verify(&proposal.to_sign_bytes(), signature)
                .is_ok(),
        ))
    }

    async fn verify_signed_vote_extension(
        &self,
        scope: &VoteExtensionScope<GtContext>,
        extension: &Bytes,
        signature: &Signature,
        public_key: &PublicKey,
    ) -> Result<VerificationResultAlias, SigningError> {
        Ok(verdict(
            public_key
                .verify(&extension_bytes(scope, extension), signature)
                .is_ok(),
        ))
    }

    async fn verify_validator_proof(
        &self,
        proof: &ValidatorProof<GtContext>,
    ) -> Result<VerificationResultAlias, SigningError> {
        let Ok(public_key) = proof.decoded_public_key() else {
            return Ok(verdict(false));
        };
        Ok(verdict(
            public_key
                .verify(&proof.preimage(), &proof.signature)
                .is_ok(),
        ))
    }
}

#[async_trait]
impl Signer<GtContext> for Ed25519Signer {
    async fn sign_vote(&self, vote: Vote) -> Result<SignedVote<GtContext>, SigningError> {
        let signature = self.sign(&vote.to_sign_bytes());
        Ok(SignedMessage::new(vote, signature))
    }

    async fn sign_proposal(
        &self,
        proposal: Proposal,
    ) -> Result<SignedProposal<GtContext>, SigningError> {
        let signature = self.sign(&proposal.to_sign_bytes());
        Ok(SignedMessage::new(proposal, signature))
    }

    async fn sign_vote_extension(
        &self,
        scope: VoteExtensionScope<GtContext>,
        extension: Bytes,
    ) -> Result<SignedExtension<GtContext>, SigningError> {
        let signature = self.sign(&extension_bytes(&scope, &extension));
        Ok(SignedMessage::new(extension, signature))
    }

    async fn sign_validator_proof(
        &self,
        public_key: Vec<u8>,
        peer_id: Vec<u8>,
    ) -> Result<ValidatorProof<GtContext>, SigningError> {
        let preimage = ValidatorProof::<GtContext>::signing_bytes(&public_key, &peer_id);
        let signature = self.sign(&preimage);
        Ok(ValidatorProof::new(public_key, peer_id, signature))
    }
}
