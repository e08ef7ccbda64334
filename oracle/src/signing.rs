//! Validator signatures over EIP-712 digests, and the quorum the contract accepts.

use std::collections::BTreeMap;

use alloy::primitives::{Address, Signature, B256};
use alloy::signers::local::PrivateKeySigner;
use alloy::signers::SignerSync;

use crate::bindings::GroundtruthOracle as abi;
use crate::error::{Error, Result};
use crate::types::ValidatorSet;

/// A secp256k1 signature in the form the contract takes: `r`, `s` (lower half order only) and
/// `v` (27 or 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CompactSignature {
    /// The signature's r.
    pub r: B256,
    /// The signature's s.
    pub s: B256,
    /// 27 + y-parity.
    pub v: u8,
}

impl CompactSignature {
    /// The contract's form of `sig` (not normalised: a high-s `sig` stays high-s).
    pub fn from_signature(sig: &Signature) -> Self {
        CompactSignature {
            r: B256::from(sig.r()),
            s: B256::from(sig.s()),
            v: 27 + u8::from(sig.v()),
        }
    }

    /// The address that signed `digest`, if the signature is valid and low-s (the contract refuses
    /// high-s signatures, so this does too).
    pub fn recover(&self, digest: &B256) -> Option<Address> {
        let parity = match self.v {
            27 => false,
            28 => true,
            _ => return None,
        };
        let sig = Signature::from_scalars_and_parity(self.r, self.s, parity);
        if sig.normalize_s().is_some() {
            return None;
        }
        sig.recover_address_from_prehash(digest).ok()
    }

    pub(crate) fn to_abi(self) -> abi::Signature {
        abi::Signature {
            r: self.r,
            s: self.s,
            v: self.v,
        }
    }
}

/// Signs `digest` (an EIP-712 digest from [`crate::EpochCommitment::signing_hash`] or
/// [`ValidatorSet::update_signing_hash`]) with a validator's L1 key.
pub fn sign_digest(key: &PrivateKeySigner, digest: &B256) -> Result<CompactSignature> {
    let sig = key
        .sign_hash_sync(digest)
        .map_err(|e| Error::Signing(e.to_string()))?;
    // k256 signs low-s already; normalise in case another signer did not.
    let sig = sig.normalize_s().unwrap_or(sig);
    Ok(CompactSignature::from_signature(&sig))
}

/// Collects signatures over one digest from members of one set and hands back what the contract
/// wants: a quorum sorted by strictly increasing signer address. Invalid, duplicate and
/// non-member signatures are dropped as they arrive.
#[derive(Debug, Clone)]
pub struct Quorum<'a> {
    set: &'a ValidatorSet,
    digest: B256,
    by_signer: BTreeMap<Address, CompactSignature>,
}

impl<'a> Quorum<'a> {
    /// An empty collection for `digest`, signed by members of `set`.
    pub fn new(set: &'a ValidatorSet, digest: B256) -> Self {
        Quorum {
            set,
            digest,
            by_signer: BTreeMap::new(),
        }
    }

    /// Adds `sig`; returns the signer when it is a member not seen before.
    pub fn add(&mut self, sig: CompactSignature) -> Option<Address> {
        let signer = sig.recover(&self.digest)?;
        self.set.weight_of(signer)?;
        if self.by_signer.contains_key(&signer) {
            return None;
        }
        self.by_signer.insert(signer, sig);
        Some(signer)
    }

    /// Weight of the distinct members collected so far.
    pub fn signed_weight(&self) -> u128 {
        self.by_signer
            .keys()
            .filter_map(|a| self.set.weight_of(*a))
            .map(u128::from)
            .sum()
    }

    /// The fewest signatures, heaviest signers first, that reach two thirds of the weight, sorted
    /// by signer address; [`Error::NoQuorum`] when the collection does not reach it.
    pub fn finish(&self) -> Result<Vec<CompactSignature>> {
        let mut by_weight: Vec<(u64, Address)> = self
            .by_signer
            .keys()
            .filter_map(|a| self.set.weight_of(*a).map(|w| (w, *a)))
            .collect();
        by_weight.sort_unstable_by(|x, y| y.cmp(x));
        let mut signed: u128 = 0;
        let mut chosen: Vec<Address> = Vec::new();
        for (w, a) in by_weight {
            if self.set.is_quorum(signed) {
                break;
            }
            signed = signed.saturating_add(u128::from(w));
            chosen.push(a);
        }
        if !self.set.is_quorum(signed) {
            return Err(Error::NoQuorum {
                signed,
                total: self.set.total_weight(),
            });
        }
        chosen.sort_unstable();
        Ok(chosen
            .iter()
            .filter_map(|a| self.by_signer.get(a).copied())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{domain, EpochCommitment};

    fn key(i: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(i.saturating_add(1))).expect("valid key")
    }

    fn commitment() -> EpochCommitment {
        EpochCommitment {
            epoch: 7,
            readings_root: B256::repeat_byte(1),
            verified_totals_root: B256::repeat_byte(2),
            proof_digests_root: B256::repeat_byte(3),
            ledger_state_root: B256::repeat_byte(4),
            set_nonce: 1,
        }
    }

    #[test]
    fn quorum_is_sorted_minimal_and_refuses_outsiders() {
        let keys: Vec<_> = (0..7).map(key).collect();
        let set =
            ValidatorSet::new(1, keys.iter().map(|k| (k.address(), 10)).collect()).expect("set");
        let digest = commitment().signing_hash(&domain(1, Address::repeat_byte(9)));
        let mut q = Quorum::new(&set, digest);
        for k in &keys[..4] {
            assert!(q.add(sign_digest(k, &digest).expect("sign")).is_some());
        }
        assert!(matches!(
            q.finish(),
            Err(Error::NoQuorum {
                signed: 40,
                total: 70
            })
        ));
        // A duplicate and an outsider add nothing.
        assert!(q
            .add(sign_digest(&keys[0], &digest).expect("sign"))
            .is_none());
        assert!(q
            .add(sign_digest(&key(50), &digest).expect("sign"))
            .is_none());
        for k in &keys[4..] {
            q.add(sign_digest(k, &digest).expect("sign"));
        }
        let sigs = q.finish().expect("quorum");
        assert_eq!(sigs.len(), 5, "ceil(2*7/3) signatures suffice");
        let signers: Vec<Address> = sigs.iter().filter_map(|s| s.recover(&digest)).collect();
        assert_eq!(signers.len(), 5);
        assert!(
            signers.windows(2).all(|w| w[0] < w[1]),
            "strictly increasing"
        );
    }

    #[test]
    fn high_s_twin_does_not_recover() {
        let digest = B256::repeat_byte(0x42);
        let sig = key(0).sign_hash_sync(&digest).expect("sign");
        let low = CompactSignature::from_signature(&sig);
        assert_eq!(low.recover(&digest), Some(key(0).address()));
        let n = alloy::primitives::U256::from_be_slice(&[
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c,
            0xd0, 0x36, 0x41, 0x41,
        ]);
        let high = Signature::new(sig.r(), n - sig.s(), !sig.v());
        assert_eq!(
            high.recover_address_from_prehash(&digest).ok(),
            Some(key(0).address())
        );
        assert_eq!(
            CompactSignature::from_signature(&high).recover(&digest),
            None
        );
    }

    #[test]
    fn set_refuses_bad_members() {
        let a = Address::repeat_byte(1);
        assert!(ValidatorSet::new(1, vec![]).is_err());
        assert!(ValidatorSet::new(1, vec![(a, 0)]).is_err());
        assert!(ValidatorSet::new(1, vec![(a, 1), (a, 2)]).is_err());
        assert!(ValidatorSet::new(1, vec![(Address::ZERO, 1)]).is_err());
        let set = ValidatorSet::new(1, vec![(a, 1), (Address::repeat_byte(2), 2)]).expect("set");
        assert!(set.is_quorum(2) && !set.is_quorum(1));
    }
}
