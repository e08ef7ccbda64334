//! The agent's view of the ledger through a validator's HTTP API (blocking client): status,
//! epoch beacons, the validator set, and signed transactions sent and waited for.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use groundtruth_api::{ApiClient, Hex32, StatusView};
use groundtruth_ledger::{Address, Tx, TxBody};
use groundtruth_p2p::PeerId;

use crate::error::{ProviderError, Result};

/// How long a transaction may take to reach a block.
const INCLUSION_TIMEOUT: Duration = Duration::from_secs(60);
/// HTTP timeout.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A signing client for one node.
#[derive(Debug, Clone)]
pub struct Ledger {
    api: ApiClient,
    owner: SigningKey,
    fee: u64,
}

impl Ledger {
    /// A client for the node at `url`, signing with `owner`.
    pub fn new(url: &str, owner: SigningKey, fee: u64) -> Result<Self> {
        Ok(Self {
            api: ApiClient::new(url)?
                .with_timeout(HTTP_TIMEOUT)
                .with_max_response(8 << 20),
            owner,
            fee,
        })
    }

    /// The owner's address.
    pub fn owner(&self) -> Address {
        Address(self.owner.verifying_key().to_bytes())
    }

    /// The raw API client.
    pub fn api(&self) -> &ApiClient {
        &self.api
    }

    /// `GET /status`.
    pub fn status(&self) -> Result<StatusView> {
        Ok(self.api.status()?)
    }

    /// The beacon of a sealed epoch (`GET /v1/epochs/{e}`), `None` before its seal.
    pub fn beacon(&self, epoch: u64) -> Result<Option<[u8; 32]>> {
        let v = self.api.get_json(&format!("/v1/epochs/{epoch}"))?;
        let Some(h) = v["beacon"].as_str() else {
            return Ok(None);
        };
        let mut out = [0u8; 32];
        hex::decode_to_slice(h, &mut out)
            .map_err(|_| ProviderError::Data(format!("beacon of epoch {epoch} is not hex")))?;
        Ok(Some(out))
    }

    /// The PeerIds of the current consensus set (whom a provider serves).
    pub fn validator_peers(&self) -> Result<HashSet<PeerId>> {
        let v = self.api.validators()?;
        Ok(v.set
            .iter()
            .filter_map(|m| groundtruth_p2p::peer_id_of(m.consensus_key.0).ok())
            .collect())
    }

    /// Whether the owner is a provider already.
    pub fn is_provider(&self) -> Result<bool> {
        Ok(self.api.account(&Hex32(self.owner().0))?.provider.is_some())
    }

    /// Whether `device` is registered (any status).
    pub fn device_registered(&self, device: &[u8; 32]) -> Result<bool> {
        Ok(self.api.device(&Hex32(*device))?.is_some())
    }

    /// Signs `body` with the next nonce, submits it and waits for its block. `Ok(())` when
    /// the ledger applied it, [`ProviderError::Rejected`] with the reason code when it did not.
    pub fn send(&self, what: &'static str, body: TxBody) -> Result<()> {
        let status = self.status()?;
        let nonce = self.api.account(&Hex32(self.owner().0))?.nonce;
        let tx = Tx {
            signer: self.owner(),
            nonce,
            fee: self.fee,
            body,
        }
        .sign(&status.chain_id, &self.owner);
        let submitted = self
            .api
            .submit_tx(&tx.encode())
            .map_err(|e| match e.reason() {
                Some(r) => ProviderError::Rejected {
                    what,
                    reason: r.to_string(),
                },
                None => ProviderError::Api(e),
            })?;
        let until = Instant::now() + INCLUSION_TIMEOUT;
        loop {
            if let Some(o) = self.api.tx(&submitted.hash)? {
                return if o.ok {
                    Ok(())
                } else {
                    Err(ProviderError::Rejected {
                        what,
                        reason: o.reason.unwrap_or_default(),
                    })
                };
            }
            if Instant::now() > until {
                return Err(ProviderError::NotIncluded(what));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The chain id (signed into possession proofs).
    pub fn chain_id(&self) -> Result<String> {
        Ok(self.status()?.chain_id)
    }
}
