//! One local chain with the contract deployed and a validator set of known keys.

use alloy::primitives::{keccak256, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::sol_types::Eip712Domain;
use groundtruth_oracle::anvil::{self, Anvil};
use groundtruth_oracle::bindings::GroundtruthOracle::{
    self as abi, GroundtruthOracleErrors, GroundtruthOracleInstance,
};
use groundtruth_oracle::{
    sign_digest, Address, CompactSignature, Config, EpochCommitment, Oracle, PrivateKeySigner,
    RetryConfig, ValidatorSet,
};

/// Starts anvil, or says why not: a missing binary skips the test locally and fails it in CI.
pub fn start_anvil() -> Option<Anvil> {
    if !anvil::is_installed() {
        let msg = format!(
            "anvil not found at {} (run scripts/setup.sh or set {})",
            anvil::binary_path().display(),
            anvil::ANVIL_ENV
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    Some(Anvil::spawn().expect("anvil starts"))
}

/// A validator's L1 key, derived from its index.
pub fn validator_key(i: usize) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&keccak256(format!("groundtruth validator {i}")))
        .expect("valid key")
}

/// The commitment for `epoch`, with roots derived from it and `salt`.
pub fn commitment(epoch: u64, set_nonce: u64, salt: u8) -> EpochCommitment {
    let root = |tag: u8| keccak256([&epoch.to_be_bytes()[..], &[tag, salt]].concat());
    EpochCommitment {
        epoch,
        readings_root: root(1),
        verified_totals_root: root(2),
        proof_digests_root: root(3),
        ledger_state_root: root(4),
        set_nonce,
    }
}

/// A chain with the contract deployed (by dev account 2) and a client posting from dev account 0.
pub struct Net {
    /// Kept alive: dropping it kills the node.
    pub _anvil: Anvil,
    pub keys: Vec<PrivateKeySigner>,
    pub set: ValidatorSet,
    pub oracle: Oracle,
    /// The contract seen from dev account 1, for calls the client would refuse to make.
    pub raw: GroundtruthOracleInstance<DynProvider>,
    pub provider: DynProvider,
    pub domain: Eip712Domain,
}

impl Net {
    /// Validators `0..n` with equal weights 10; first epoch 1.
    pub async fn start(n: usize) -> Option<Net> {
        Self::start_weighted(&vec![10; n]).await
    }

    /// Validators `0..weights.len()` with these weights; first epoch 1.
    pub async fn start_weighted(weights: &[u64]) -> Option<Net> {
        let anvil = start_anvil()?;
        let keys: Vec<PrivateKeySigner> = (0..weights.len()).map(validator_key).collect();
        let set = ValidatorSet::new(
            1,
            keys.iter()
                .zip(weights)
                .map(|(k, w)| (k.address(), *w))
                .collect(),
        )
        .expect("set");
        let url = anvil.url();
        let address = Oracle::deploy(&url, anvil::dev_key(2).expect("key"), 1, &set)
            .await
            .expect("deploys");
        let mut config = Config::new(url.clone(), address);
        config.confirmations = 1;
        config.retry = RetryConfig {
            initial_backoff: std::time::Duration::from_millis(50),
            max_backoff: std::time::Duration::from_millis(200),
            max_attempts: 3,
        };
        let oracle = Oracle::new(config, anvil::dev_key(0).expect("key")).expect("client");
        let provider = groundtruth_oracle::provider_for(&url, anvil::dev_key(1).expect("key"))
            .expect("provider");
        let raw = abi::new(address, provider.clone());
        let domain = oracle.domain().await.expect("domain");
        Some(Net {
            _anvil: anvil,
            keys,
            set,
            oracle,
            raw,
            provider,
            domain,
        })
    }

    /// A client like `self.oracle` (a new instance, as after a restart).
    pub fn new_client(&self) -> Oracle {
        Oracle::new(
            self.oracle.config().clone(),
            anvil::dev_key(0).expect("key"),
        )
        .expect("client")
    }

    /// Signatures of validators `who` over `digest`, sorted by signer address.
    pub fn sign(
        &self,
        digest: &B256,
        who: impl IntoIterator<Item = usize>,
    ) -> Vec<CompactSignature> {
        let mut sigs: Vec<(Address, CompactSignature)> = who
            .into_iter()
            .map(|i| {
                (
                    self.keys[i].address(),
                    sign_digest(&self.keys[i], digest).expect("sign"),
                )
            })
            .collect();
        sigs.sort_by_key(|(a, _)| *a);
        sigs.into_iter().map(|(_, s)| s).collect()
    }

    /// Signatures of validators `who` over `c`, sorted.
    pub fn sign_epoch(
        &self,
        c: &EpochCommitment,
        who: impl IntoIterator<Item = usize>,
    ) -> Vec<CompactSignature> {
        self.sign(&c.signing_hash(&self.domain), who)
    }

    /// Sends `submitEpoch` from dev account 1, bypassing the client's checks; the contract's
    /// error if it refuses.
    pub async fn raw_submit(
        &self,
        c: &EpochCommitment,
        sigs: &[CompactSignature],
    ) -> Result<alloy::rpc::types::TransactionReceipt, GroundtruthOracleErrors> {
        let c = abi::EpochCommitment {
            epoch: c.epoch,
            readingsRoot: c.readings_root,
            verifiedTotalsRoot: c.verified_totals_root,
            proofDigestsRoot: c.proof_digests_root,
            ledgerStateRoot: c.ledger_state_root,
            setNonce: c.set_nonce,
        };
        let sigs = sigs.iter().map(abi_sig).collect();
        match self.raw.submitEpoch(c, sigs).send().await {
            Ok(p) => {
                let r = p.get_receipt().await.expect("receipt");
                assert!(r.status(), "mined but reverted");
                Ok(r)
            }
            Err(e) => Err(e
                .as_decoded_interface_error::<GroundtruthOracleErrors>()
                .unwrap_or_else(|| panic!("not a contract error: {e}"))),
        }
    }

    /// Transactions sent from the client's account so far.
    pub async fn poster_nonce(&self) -> u64 {
        self.provider
            .get_transaction_count(self.oracle.poster())
            .await
            .expect("nonce")
    }
}

/// The contract's form of a signature.
pub fn abi_sig(s: &CompactSignature) -> abi::Signature {
    abi::Signature {
        r: s.r,
        s: s.s,
        v: s.v,
    }
}
