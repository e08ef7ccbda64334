//! Ledger identity → libp2p identity.
//!
//! A validator's libp2p key *is* its ed25519 consensus key, so its [`PeerId`] follows from the
//! public key recorded in the ledger's validator set, with no extra binding message.

use libp2p::identity::{ed25519, Keypair, PublicKey};
use libp2p::PeerId;

use crate::error::{P2pError, Result};

/// The libp2p keypair of a validator, from its 32-byte ed25519 consensus secret (the seed, as
/// `ed25519_dalek::SigningKey::to_bytes` returns it). The copy passed in is zeroed.
pub fn keypair_from_secret(mut secret: [u8; 32]) -> Result<Keypair> {
    let secret = ed25519::SecretKey::try_from_bytes(&mut secret)
        .map_err(|e| P2pError::InvalidSecret(e.to_string()))?;
    Ok(Keypair::from(ed25519::Keypair::from(secret)))
}

/// The [`PeerId`] a validator has on this network, from its 32-byte ed25519 consensus public
/// key. Fails only when the bytes are not a valid curve point.
pub fn peer_id_of(consensus_public_key: [u8; 32]) -> Result<PeerId> {
    let public = ed25519::PublicKey::try_from_bytes(&consensus_public_key)
        .map_err(|e| P2pError::InvalidPublicKey(e.to_string()))?;
    Ok(PublicKey::from(public).to_peer_id())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn peer_id_from_secret_matches_peer_id_of_public() {
        let secret = [7u8; 32];
        let kp = keypair_from_secret(secret).unwrap();
        let public = kp.public().try_into_ed25519().unwrap().to_bytes();
        assert_eq!(peer_id_of(public).unwrap(), kp.public().to_peer_id());
        // A different secret gives a different identity.
        let other = keypair_from_secret([8u8; 32]).unwrap();
        assert_ne!(other.public().to_peer_id(), kp.public().to_peer_id());
    }

    #[test]
    fn invalid_public_key_is_an_error() {
        // About half of all y coordinates have no curve point; among 64 candidates some must
        // fail, and each one fails with the typed error rather than a panic.
        let mut rejected = 0;
        for y in 2u8..66 {
            let mut bytes = [0u8; 32];
            bytes[0] = y;
            match peer_id_of(bytes) {
                Ok(_) => {}
                Err(P2pError::InvalidPublicKey(_)) => rejected += 1,
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert!(rejected > 0);
    }
}
