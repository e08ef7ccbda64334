//! The L1 client: reads what the contract has anchored, posts epoch commitments and validator set
//! updates, waits for confirmations and retries with backoff without ever posting twice.

use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::BlockNumberOrTag;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::Eip712Domain;
use serde::{Deserialize, Serialize};

use crate::bindings::GroundtruthOracle::{
    self as abi, GroundtruthOracleErrors, GroundtruthOracleInstance,
};
use crate::error::{Error, Result};
use crate::signing::CompactSignature;
use crate::types::{domain, EpochCommitment, ValidatorSet};

/// How failed attempts are retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Wait before the first retry; doubled after each failure.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// The longest wait between attempts.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Attempts in all, the first included (at least 1).
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_attempts: 10,
        }
    }
}

/// How to reach the contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// JSON-RPC endpoint (`http://`; this build carries no TLS stack).
    pub rpc_url: String,
    /// Address of the deployed `GroundtruthOracle`.
    pub contract: Address,
    /// Blocks a transaction must have on top of it (itself included) before it counts (≥ 1).
    #[serde(default = "default_confirmations")]
    pub confirmations: u64,
    /// How long to wait for those confirmations before treating the attempt as failed (the next
    /// attempt reads L1 first, so a late transaction is not sent again).
    #[serde(default = "default_receipt_timeout", with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetryConfig,
}

fn default_confirmations() -> u64 {
    2
}

fn default_receipt_timeout() -> Duration {
    Duration::from_secs(120)
}

impl Config {
    /// A configuration with the defaults for everything but the endpoint and the contract.
    pub fn new(rpc_url: impl Into<String>, contract: Address) -> Self {
        Config {
            rpc_url: rpc_url.into(),
            contract,
            confirmations: default_confirmations(),
            receipt_timeout: default_receipt_timeout(),
            retry: RetryConfig::default(),
        }
    }
}

/// What [`Oracle::submit_epoch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submission {
    /// L1 already held exactly this commitment; nothing was sent.
    AlreadyAnchored,
    /// Our transaction anchored it.
    Anchored {
        /// The transaction.
        tx: B256,
        /// The block that holds it.
        block: u64,
        /// Gas it used.
        gas_used: u64,
    },
}

/// Where an epoch is anchored on L1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    /// The epoch.
    pub epoch: u64,
    /// The commitment's struct hash the contract stores.
    pub commitment_hash: B256,
    /// The block that holds the anchoring transaction.
    pub block: u64,
    /// The anchoring transaction.
    pub tx: B256,
}

/// A typed client of one deployed `GroundtruthOracle`, posting from one L1 account.
///
/// Every write first reads what L1 holds: an epoch already anchored with the same commitment is
/// reported as [`Submission::AlreadyAnchored`] and not sent again, so a new instance after a
/// restart resumes from L1 without double-posting.
#[derive(Debug, Clone)]
pub struct Oracle {
    config: Config,
    poster: Address,
    provider: DynProvider,
    contract: GroundtruthOracleInstance<DynProvider>,
}

/// A JSON-RPC provider that signs with `key`. It asks the node for the account's pending nonce on
/// every transaction instead of caching it: a send refused before it left (say, a revert found
/// while estimating gas) must not burn a nonce, and a restarted process must not reuse one.
pub fn provider_for(rpc_url: &str, key: PrivateKeySigner) -> Result<DynProvider> {
    let url = rpc_url
        .parse()
        .map_err(|e| Error::Config(format!("rpc_url {rpc_url:?}: {e}")))?;
    Ok(ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(key))
        .connect_http(url)
        .erased())
}

impl Oracle {
    /// A client of `config.contract` that pays for its transactions with `poster`. Connects
    /// lazily: nothing is sent until a method is called.
    pub fn new(config: Config, poster: PrivateKeySigner) -> Result<Self> {
        if config.confirmations == 0 {
            return Err(Error::Config("confirmations must be at least 1".into()));
        }
        if config.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        let poster_address = poster.address();
        let provider = provider_for(&config.rpc_url, poster)?;
        let contract = abi::new(config.contract, provider.clone());
        Ok(Oracle {
            config,
            poster: poster_address,
            provider,
            contract,
        })
    }

    /// Deploys a new contract whose first epoch is `first_epoch` and whose genesis set is
    /// `genesis` (its nonce is ignored: the genesis set has nonce 1). Returns its address.
    pub async fn deploy(
        rpc_url: &str,
        deployer: PrivateKeySigner,
        first_epoch: u64,
        genesis: &ValidatorSet,
    ) -> Result<Address> {
        let provider = provider_for(rpc_url, deployer)?;
        let address = abi::deploy_builder(
            provider,
            first_epoch,
            genesis.addresses(),
            genesis.weights_u96(),
        )
        .deploy()
        .await
        .map_err(Error::from_call)?;
        tracing::info!(target: "oracle::client", %address, first_epoch, "contract deployed");
        Ok(address)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The L1 account that posts.
    pub fn poster(&self) -> Address {
        self.poster
    }

    /// The contract's EIP-712 domain (reads the chain id).
    pub async fn domain(&self) -> Result<Eip712Domain> {
        let chain_id = self
            .provider
            .get_chain_id()
            .await
            .map_err(|e| Error::Contract(e.into()))?;
        Ok(domain(chain_id, self.config.contract))
    }

    /// The epoch the contract accepts next.
    pub async fn next_epoch(&self) -> Result<u64> {
        self.contract
            .nextEpoch()
            .call()
            .await
            .map_err(Error::from_call)
    }

    /// The struct hash L1 holds for `epoch`, if anchored.
    pub async fn commitment_hash(&self, epoch: u64) -> Result<Option<B256>> {
        let h = self
            .contract
            .commitmentHash(epoch)
            .call()
            .await
            .map_err(Error::from_call)?;
        Ok((h != B256::ZERO).then_some(h))
    }

    /// The commitment anchored for `epoch`, read from the contract's event and checked against the
    /// hash in its storage.
    pub async fn anchored_commitment(&self, epoch: u64) -> Result<Option<EpochCommitment>> {
        let Some(stored) = self.commitment_hash(epoch).await? else {
            return Ok(None);
        };
        let events = self
            .contract
            .EpochAnchored_filter()
            .topic1(alloy::primitives::U256::from(epoch))
            .from_block(BlockNumberOrTag::Earliest)
            .query()
            .await
            .map_err(Error::from_call)?;
        Ok(events
            .iter()
            .map(|(e, _)| EpochCommitment::from(e))
            .find(|c| c.epoch == epoch && c.struct_hash() == stored))
    }

    /// Where `epoch` is anchored (block and transaction of its `EpochAnchored` event whose
    /// commitment matches the contract's storage), if it is. Read afresh each call, so an anchor
    /// a reorg dropped disappears.
    pub async fn anchor_of(&self, epoch: u64) -> Result<Option<Anchor>> {
        let Some(stored) = self.commitment_hash(epoch).await? else {
            return Ok(None);
        };
        let events = self
            .contract
            .EpochAnchored_filter()
            .topic1(alloy::primitives::U256::from(epoch))
            .from_block(BlockNumberOrTag::Earliest)
            .query()
            .await
            .map_err(Error::from_call)?;
        Ok(events.iter().find_map(|(e, log)| {
            let c = EpochCommitment::from(e);
            (c.epoch == epoch && c.struct_hash() == stored).then_some(Anchor {
                epoch,
                commitment_hash: stored,
                block: log.block_number.unwrap_or_default(),
                tx: log.transaction_hash.unwrap_or_default(),
            })
        }))
    }

    /// The chain id of the L1 node.
    pub async fn chain_id(&self) -> Result<u64> {
        self.provider
            .get_chain_id()
            .await
            .map_err(|e| Error::Contract(e.into()))
    }

    /// The validator set the contract holds now.
    pub async fn validator_set(&self) -> Result<ValidatorSet> {
        let r = self
            .contract
            .validatorSet()
            .call()
            .await
            .map_err(Error::from_call)?;
        let members = r
            .addrs
            .into_iter()
            .zip(r.weights)
            .map(|(a, w)| {
                u64::try_from(w)
                    .map(|w| (a, w))
                    .map_err(|_| Error::InvalidSet("weight above u64"))
            })
            .collect::<Result<Vec<_>>>()?;
        ValidatorSet::new(r.nonce, members)
    }

    /// Anchors `commitment` with `signatures` (a sorted quorum, see [`crate::Quorum`]), waiting
    /// for the configured confirmations and retrying transient failures with backoff. Reads L1
    /// before every attempt: if the epoch is already anchored with this commitment nothing is
    /// sent; with another one, [`Error::Conflict`].
    pub async fn submit_epoch(
        &self,
        commitment: &EpochCommitment,
        signatures: &[CompactSignature],
    ) -> Result<Submission> {
        let sigs: Vec<abi::Signature> = signatures.iter().map(|s| s.to_abi()).collect();
        self.with_retry("submit_epoch", || self.try_submit_epoch(commitment, &sigs))
            .await
    }

    async fn try_submit_epoch(
        &self,
        c: &EpochCommitment,
        sigs: &[abi::Signature],
    ) -> Result<Submission> {
        if let Some(done) = self.check_anchored(c).await? {
            return Ok(done);
        }
        let next = self.next_epoch().await?;
        if c.epoch > next {
            return Err(Error::Gap {
                epoch: c.epoch,
                next,
            });
        }
        if c.epoch < next {
            let first = self
                .contract
                .firstEpoch()
                .call()
                .await
                .map_err(Error::from_call)?;
            return Err(Error::BeforeFirstEpoch {
                epoch: c.epoch,
                first,
            });
        }
        self.require_no_pending().await?;
        let sent = self
            .contract
            .submitEpoch(c.to_abi(), sigs.to_vec())
            .send()
            .await;
        let pending = match sent {
            Ok(p) => p,
            Err(e) => {
                let err = Error::from_call(e);
                // Someone anchored it between our read and our send: fine if it is ours.
                if let Error::Rejected(GroundtruthOracleErrors::EpochAlreadyAnchored(_)) = err {
                    if let Some(done) = self.check_anchored(c).await? {
                        return Ok(done);
                    }
                }
                return Err(err);
            }
        };
        let tx = *pending.tx_hash();
        tracing::info!(target: "oracle::client", epoch = c.epoch, %tx, "epoch sent");
        let receipt = pending
            .with_required_confirmations(self.config.confirmations)
            .with_timeout(Some(self.config.receipt_timeout))
            .get_receipt()
            .await
            .map_err(|e| Error::Contract(e.into()))?;
        if !receipt.status() {
            return Err(Error::Reverted(tx));
        }
        let block = receipt.block_number.unwrap_or_default();
        tracing::info!(target: "oracle::client", epoch = c.epoch, %tx, block, gas = receipt.gas_used, "epoch anchored");
        Ok(Submission::Anchored {
            tx,
            block,
            gas_used: receipt.gas_used,
        })
    }

    /// `Some(AlreadyAnchored)` if L1 holds exactly `c`, an error if it holds another commitment
    /// for that epoch, `None` if the epoch is not anchored.
    async fn check_anchored(&self, c: &EpochCommitment) -> Result<Option<Submission>> {
        match self.commitment_hash(c.epoch).await? {
            None => Ok(None),
            Some(h) if h == c.struct_hash() => {
                tracing::debug!(target: "oracle::client", epoch = c.epoch, "already anchored");
                Ok(Some(Submission::AlreadyAnchored))
            }
            Some(h) => Err(Error::Conflict {
                epoch: c.epoch,
                on_l1: h,
                ours: c.struct_hash(),
            }),
        }
    }

    /// Refuses to send while the poster has a transaction in the mempool (one sent before a
    /// restart, or one whose confirmations timed out): it may be the very epoch we would send.
    async fn require_no_pending(&self) -> Result<()> {
        let p = &self.provider;
        let pending = p
            .get_transaction_count(self.poster)
            .pending()
            .await
            .map_err(|e| Error::Contract(e.into()))?;
        let mined = p
            .get_transaction_count(self.poster)
            .latest()
            .await
            .map_err(|e| Error::Contract(e.into()))?;
        if pending > mined {
            return Err(Error::PendingTransaction {
                account: self.poster,
                pending,
                mined,
            });
        }
        Ok(())
    }

    /// Posts every epoch L1 is missing, from the one it expects next, asking `source` for each
    /// commitment and its signatures until it has none. Returns how many were sent. This is how a
    /// restarted poster resumes: where L1 stands, not where it remembers.
    pub async fn catch_up<F>(&self, mut source: F) -> Result<u64>
    where
        F: FnMut(u64) -> Option<(EpochCommitment, Vec<CompactSignature>)>,
    {
        let mut sent = 0u64;
        let mut epoch = self.with_retry("next_epoch", || self.next_epoch()).await?;
        while let Some((c, sigs)) = source(epoch) {
            if c.epoch != epoch {
                return Err(Error::Gap {
                    epoch: c.epoch,
                    next: epoch,
                });
            }
            if let Submission::Anchored { .. } = self.submit_epoch(&c, &sigs).await? {
                sent = sent.saturating_add(1);
            }
            epoch = match epoch.checked_add(1) {
                Some(e) => e,
                None => break,
            };
        }
        Ok(sent)
    }

    /// Installs `new_set` (nonce = current + 1) with `signatures` of the current set over
    /// [`ValidatorSet::update_signing_hash`]. Like [`Oracle::submit_epoch`], reads L1 first and
    /// does nothing if that set is already installed.
    pub async fn update_validator_set(
        &self,
        new_set: &ValidatorSet,
        signatures: &[CompactSignature],
    ) -> Result<Submission> {
        let sigs: Vec<abi::Signature> = signatures.iter().map(|s| s.to_abi()).collect();
        self.with_retry("update_validator_set", || async {
            let current = self.validator_set().await?;
            if current == *new_set {
                return Ok(Submission::AlreadyAnchored);
            }
            self.require_no_pending().await?;
            let pending = self
                .contract
                .updateValidatorSet(new_set.nonce(), new_set.addresses(), new_set.weights_u96(), sigs.clone())
                .send()
                .await
                .map_err(Error::from_call)?;
            let tx = *pending.tx_hash();
            let receipt = pending
                .with_required_confirmations(self.config.confirmations)
                .with_timeout(Some(self.config.receipt_timeout))
                .get_receipt()
                .await
                .map_err(|e| Error::Contract(e.into()))?;
            if !receipt.status() {
                return Err(Error::Reverted(tx));
            }
            tracing::info!(target: "oracle::client", nonce = new_set.nonce(), %tx, "validator set updated");
            Ok(Submission::Anchored { tx, block: receipt.block_number.unwrap_or_default(), gas_used: receipt.gas_used })
        })
        .await
    }

    async fn with_retry<T, F, Fut>(&self, what: &'static str, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let retry = &self.config.retry;
        let mut backoff = retry.initial_backoff;
        let mut tries: u32 = 0;
        loop {
            tries = tries.saturating_add(1);
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transient() && tries < retry.max_attempts => {
                    tracing::warn!(target: "oracle::client", what, attempt = tries, error = %e, ?backoff, "retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = backoff.saturating_mul(2).min(retry.max_backoff);
                }
                Err(e) if e.is_transient() => {
                    return Err(Error::GaveUp {
                        attempts: tries,
                        last: Box::new(e),
                    });
                }
                Err(e) => return Err(e),
            }
        }
    }
}
