//! Validators' Ethereum (L1) signing keys and their proof of possession.
//!
//! A validator's L1 key signs the epoch commitments the oracle anchors on Ethereum. Before the
//! ledger records the key's address on the validator, the key proves it belongs to that
//! operator on this chain: it signs
//!
//! ```text
//! inner  = keccak256(L1_KEY_DOMAIN ‖ u32 len ‖ chain_id ‖ operator[32] ‖ address[20])
//! digest = keccak256("\x19Ethereum Signed Message:\n32" ‖ inner)      (EIP-191, personal_sign)
//! ```
//!
//! as a 65-byte `r ‖ s ‖ v` secp256k1 signature (`v` 27 or 28, or 0 or 1; `s` in the lower
//! half of the group order). The ledger recovers the signer (`k256`, the curve crate alloy
//! already compiles) and accepts only when it is `address`. The EIP-191 prefix keeps the
//! signature from being a valid Ethereum transaction or EIP-712 message, and lets any Ethereum
//! wallet produce it with `personal_sign` over `inner`.

use core::fmt;
use core::str::FromStr;

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha3::{Digest, Keccak256};

use crate::codec::Writer;
use crate::types::Address;

/// Domain tag of an L1 key's proof of possession.
pub const L1_KEY_DOMAIN: &[u8] = b"groundtruth/v1/l1-key\0";

/// An Ethereum address (the last 20 bytes of the keccak of the public key).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct L1Address(pub [u8; 20]);

impl fmt::Display for L1Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for L1Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for L1Address {
    type Err = &'static str;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        let mut out = [0u8; 20];
        hex::decode_to_slice(s, &mut out).map_err(|_| "expected 40 hex characters")?;
        Ok(Self(out))
    }
}

impl Serialize for L1Address {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for L1Address {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

fn keccak(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Keccak256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The 32-byte message a wallet signs with `personal_sign` (see the module docs).
pub fn l1_key_message(chain_id: &str, operator: &Address, address: &L1Address) -> [u8; 32] {
    let mut w = Writer::new();
    w.raw(L1_KEY_DOMAIN)
        .str(chain_id)
        .raw(&operator.0)
        .raw(&address.0);
    keccak(&[&w.into_bytes()])
}

/// The digest the L1 key signs: the EIP-191 hash of [`l1_key_message`].
pub fn l1_key_digest(chain_id: &str, operator: &Address, address: &L1Address) -> [u8; 32] {
    let inner = l1_key_message(chain_id, operator, address);
    keccak(&[b"\x19Ethereum Signed Message:\n32", &inner])
}

/// The address of an uncompressed secp256k1 public key.
fn address_of(key: &VerifyingKey) -> L1Address {
    let point = key.to_encoded_point(false);
    let bytes = point.as_bytes();
    let h = keccak(&[bytes.get(1..).unwrap_or_default()]);
    let mut out = [0u8; 20];
    out.copy_from_slice(h.get(12..).unwrap_or(&[0u8; 20]));
    L1Address(out)
}

/// The address that signed `digest` with `sig` (`r ‖ s ‖ v`), if the signature is well formed
/// and low-s.
pub fn recover_l1_signer(digest: &[u8; 32], sig: &[u8; 65]) -> Option<L1Address> {
    let (rs, v) = sig.split_at(64);
    let v = *v.first()?;
    let parity = match v {
        0 | 27 => 0u8,
        1 | 28 => 1u8,
        _ => return None,
    };
    let signature = Signature::from_slice(rs).ok()?;
    if signature.normalize_s().is_some() {
        return None;
    }
    let recid = RecoveryId::from_byte(parity)?;
    let key = VerifyingKey::recover_from_prehash(digest, &signature, recid).ok()?;
    Some(address_of(&key))
}

/// Whether `sig` proves that the key of `address` consents to be `operator`'s L1 key on
/// `chain_id`.
pub fn verify_l1_possession(
    chain_id: &str,
    operator: &Address,
    address: &L1Address,
    sig: &[u8; 65],
) -> bool {
    recover_l1_signer(&l1_key_digest(chain_id, operator, address), sig) == Some(*address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    fn sign(key: &SigningKey, digest: &[u8; 32]) -> [u8; 65] {
        let (sig, recid) = key.sign_prehash_recoverable(digest).expect("sign");
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&sig.to_bytes());
        out[64] = 27 + recid.to_byte();
        out
    }

    #[test]
    fn known_key_has_its_known_address() {
        // Private key 1: its address is well known.
        let mut k = [0u8; 32];
        k[31] = 1;
        let key = SigningKey::from_slice(&k).expect("key");
        assert_eq!(
            address_of(key.verifying_key()).to_string(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }

    #[test]
    fn possession_binds_chain_operator_and_address() {
        let key = SigningKey::from_slice(&[7u8; 32]).expect("key");
        let addr = address_of(key.verifying_key());
        let op = Address([1; 32]);
        let sig = sign(&key, &l1_key_digest("c", &op, &addr));
        assert!(verify_l1_possession("c", &op, &addr, &sig));
        assert!(!verify_l1_possession("other", &op, &addr, &sig));
        assert!(!verify_l1_possession("c", &Address([2; 32]), &addr, &sig));
        assert!(!verify_l1_possession("c", &op, &L1Address([9; 20]), &sig));
        let mut bad = sig;
        bad[64] = 30;
        assert!(!verify_l1_possession("c", &op, &addr, &bad));
    }
}
