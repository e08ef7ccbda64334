//! Signing and sending ledger transactions from a test, as any client would: the ledger
//! crate's [`Tx`] signed with a devnet key, the nonce read from the API, `POST /tx`.

use anyhow::{bail, ensure, Context, Result};
use ed25519_dalek::SigningKey;
use groundtruth_ledger::{Address, Tx, TxBody};
use serde_json::Value;
use std::time::{Duration, Instant};

use crate::api::Api;

/// The operator key of devnet validator `i` (seed `[10 + i; 32]`, as the harness writes it).
pub fn operator_key(i: usize) -> SigningKey {
    let seed = 10u8.saturating_add(u8::try_from(i).unwrap_or(u8::MAX));
    SigningKey::from_bytes(&[seed; 32])
}

/// The account address of a signing key.
pub fn address_of(key: &SigningKey) -> Address {
    Address(key.verifying_key().to_bytes())
}

impl Api {
    /// The chain id from `GET /status`.
    pub fn chain_id(&self) -> Result<String> {
        let s = self.status()?;
        Ok(s["chain_id"]
            .as_str()
            .with_context(|| format!("no chain_id in /status: {s}"))?
            .to_string())
    }

    /// The next nonce the ledger expects from `address` (`GET /state/account/<hex>`).
    pub fn next_nonce(&self, address: &Address) -> Result<u64> {
        let (code, v) = self.get_json(&format!("/state/account/{address}"))?;
        ensure!(code == 200, "GET /state/account/{address}: {code} {v}");
        v["nonce"]
            .as_u64()
            .with_context(|| format!("no nonce in {v}"))
    }

    /// Signs `body` with `key` (next nonce from this node, the given fee) and posts it to
    /// `/tx`; the transaction's hash (hex).
    pub fn sign_and_submit(&self, key: &SigningKey, fee: u64, body: TxBody) -> Result<String> {
        let signer = address_of(key);
        let tx = Tx {
            signer,
            nonce: self.next_nonce(&signer)?,
            fee,
            body,
        }
        .sign(&self.chain_id()?, key);
        let r = self.post("/tx", &tx.encode())?;
        ensure!(r.status == 200, "POST /tx: {} {}", r.status, r.text());
        let v = r.json()?;
        Ok(v["hash"]
            .as_str()
            .with_context(|| format!("no hash in {v}"))?
            .to_string())
    }

    /// Waits until transaction `hash` is in a committed block; its outcome
    /// (`{hash, height, ok, reason}`).
    pub fn wait_tx(&self, hash: &str, timeout: Duration) -> Result<Value> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok((200, v)) = self.get_json(&format!("/tx/{hash}")) {
                return Ok(v);
            }
            if Instant::now() > until {
                bail!(
                    "transaction {hash} not in a block on {} within {timeout:?}",
                    self.addr
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
