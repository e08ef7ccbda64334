//! A small in-memory read model for the router tests (a real implementation of the trait, not
//! a stand-in for another component: the node's lives in `groundtruth-node`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use bytes::Bytes;
use groundtruth_api::{
    AccountView, BlockView, CheckView, DeviceView, HealthView, Hex32, Origin, ReadError, ReadModel,
    Rejection, StatusView, Submitted, TxOutcomeView, ValidatorsView,
};

/// Accepts transactions whose first byte is `1`, refuses others with `bad_nonce`.
#[derive(Default)]
pub struct Model {
    /// `submit_tx` calls.
    pub submits: AtomicUsize,
    /// Calls with `Origin::Peer`.
    pub forwarded: AtomicUsize,
    /// `submit_tx` calls currently inside the model.
    pub inside: AtomicUsize,
    /// When set, `submit_tx` waits until it is cleared.
    pub hold: Mutex<bool>,
    released: Condvar,
    /// What `health()` reports.
    pub alive: Mutex<bool>,
}

impl Model {
    pub fn new() -> Self {
        Self {
            alive: Mutex::new(true),
            ..Self::default()
        }
    }

    pub fn release(&self) {
        if let Ok(mut h) = self.hold.lock() {
            *h = false;
        }
        self.released.notify_all();
    }
}

impl ReadModel for Model {
    fn status(&self) -> Result<StatusView, ReadError> {
        Ok(StatusView {
            chain_id: "test".into(),
            height: 7,
            epoch: 1,
            state_root: Hex32([1; 32]),
            mempool: 0,
            validator: Hex32([2; 32]),
        })
    }

    fn account(&self, address: &Hex32) -> Result<AccountView, ReadError> {
        Ok(AccountView {
            address: *address,
            balance: 10,
            nonce: 3,
            validator: None,
            provider: None,
            rewards: Default::default(),
        })
    }

    fn device(&self, _id: &Hex32) -> Result<Option<DeviceView>, ReadError> {
        Ok(None)
    }

    fn validators(&self) -> Result<ValidatorsView, ReadError> {
        Err(ReadError::NotServed("ledger"))
    }

    fn tx(&self, hash: &Hex32) -> Result<Option<TxOutcomeView>, ReadError> {
        Ok((hash.0[0] == 9).then(|| TxOutcomeView {
            hash: *hash,
            height: 5,
            ok: false,
            reason: Some("bad_nonce".into()),
        }))
    }

    fn block(&self, _height: u64) -> Result<Option<BlockView>, ReadError> {
        Ok(None)
    }

    fn submit_tx(&self, raw: Bytes, origin: Origin) -> Result<Submitted, Rejection> {
        self.submits.fetch_add(1, Ordering::SeqCst);
        if origin == Origin::Peer {
            self.forwarded.fetch_add(1, Ordering::SeqCst);
        }
        self.inside.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut held) = self.hold.lock() {
            while *held {
                held = match self.released.wait(held) {
                    Ok(h) => h,
                    Err(_) => break,
                };
            }
        }
        self.inside.fetch_sub(1, Ordering::SeqCst);
        match raw.first() {
            Some(1) => Ok(Submitted {
                hash: Hex32([raw.len() as u8; 32]),
                new: true,
            }),
            _ => Err(Rejection::invalid("bad_nonce", "expected nonce 3")),
        }
    }

    fn health(&self) -> HealthView {
        let alive = self.alive.lock().map(|a| *a).unwrap_or(false);
        HealthView::from_checks(vec![CheckView::new("ingest", alive, "heartbeat")])
    }

    fn readiness(&self) -> HealthView {
        HealthView::from_checks(vec![CheckView::new("consensus", true, "height 7")])
    }
}
