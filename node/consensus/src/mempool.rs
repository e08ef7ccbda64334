//! A bounded in-memory mempool: FIFO, deduplicated by hash, emptied of transactions as
//! blocks that contain them are committed.
//!
//! TODO(mempool gossip): transactions only reach the proposer if they are submitted to it.
//! Malachite's own libp2p swarm has no channel for application messages (the app-channel
//! only lets the app publish proposal parts), so gossip must go over the node's own libp2p
//! swarm; that swarm calls [`crate::Handle::submit_tx`] on every validator.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use crate::app::Admission;
use crate::error::{Error, Result};

type TxHash = [u8; 32];

fn tx_hash(tx: &[u8]) -> TxHash {
    *blake3::hash(tx).as_bytes()
}

struct Inner {
    queue: VecDeque<(TxHash, Bytes)>,
    known: HashSet<TxHash>,
    bytes: usize,
}

/// Shared, bounded transaction pool.
#[derive(Clone)]
pub(crate) struct Mempool {
    inner: Arc<Mutex<Inner>>,
    max_txs: usize,
    max_bytes: usize,
    max_tx_bytes: usize,
    admission: Option<Arc<dyn Admission>>,
}

impl Mempool {
    pub fn new(
        max_txs: usize,
        max_bytes: usize,
        max_tx_bytes: usize,
        admission: Option<Arc<dyn Admission>>,
    ) -> Self {
        Self {
            admission,
            inner: Arc::new(Mutex::new(Inner {
                queue: VecDeque::new(),
                known: HashSet::new(),
                bytes: 0,
            })),
            max_txs,
            max_bytes,
            max_tx_bytes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated in a way that
        // matters (worst case a stale byte count), so recover from poisoning.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a transaction. Returns `false` if it was already pending.
    pub fn submit(&self, tx: Bytes) -> Result<bool> {
        if tx.len() > self.max_tx_bytes {
            return Err(Error::TxTooLarge {
                size: tx.len(),
                max: self.max_tx_bytes,
            });
        }
        let h = tx_hash(&tx);
        let mut inner = self.lock();
        if inner.known.contains(&h) {
            return Ok(false);
        }
        if inner.queue.len() >= self.max_txs
            || inner.bytes.saturating_add(tx.len()) > self.max_bytes
        {
            return Err(Error::MempoolFull(inner.queue.len()));
        }
        if let Some(a) = &self.admission {
            a.admit(&h, &tx).map_err(|r| Error::Refused {
                reason: r.reason,
                detail: r.detail,
            })?;
        }
        inner.bytes += tx.len();
        inner.known.insert(h);
        inner.queue.push_back((h, tx));
        Ok(true)
    }

    /// The oldest pending transactions whose encoded size fits in `max_bytes` (left pending
    /// until a block containing them is committed).
    pub fn candidates(&self, max_bytes: usize) -> Vec<Bytes> {
        let inner = self.lock();
        let mut out = Vec::new();
        let mut used = 0usize;
        for (_, tx) in &inner.queue {
            let cost = tx.len().saturating_add(4);
            if used.saturating_add(cost) > max_bytes {
                break;
            }
            used += cost;
            out.push(tx.clone());
        }
        out
    }

    /// Drops transactions included in a committed block, and those the application says can
    /// no longer be included ([`Admission::after_commit`]).
    pub fn remove_committed(&self, txs: &[Bytes]) {
        let mut hashes: HashSet<TxHash> = txs.iter().map(|t| tx_hash(t)).collect();
        if let Some(a) = &self.admission {
            hashes.extend(a.after_commit());
        }
        if hashes.is_empty() {
            return;
        }
        let mut inner = self.lock();
        if !hashes.iter().any(|h| inner.known.contains(h)) {
            return;
        }
        let mut freed = 0usize;
        inner.queue.retain(|(h, tx)| {
            let keep = !hashes.contains(h);
            if !keep {
                freed += tx.len();
            }
            keep
        });
        inner.bytes = inner.bytes.saturating_sub(freed);
        for h in &hashes {
            inner.known.remove(h);
        }
    }

    /// Number of pending transactions.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_dedup_and_removal() {
        let m = Mempool::new(2, 100, 10, None);
        assert!(m.submit(Bytes::from_static(b"a")).expect("ok"));
        assert!(!m.submit(Bytes::from_static(b"a")).expect("dup"));
        assert!(m.submit(Bytes::from_static(b"b")).expect("ok"));
        assert!(matches!(
            m.submit(Bytes::from_static(b"c")),
            Err(Error::MempoolFull(2))
        ));
        assert!(matches!(
            m.submit(Bytes::from(vec![0; 11])),
            Err(Error::TxTooLarge { .. })
        ));
        assert_eq!(m.candidates(5).len(), 1);
        m.remove_committed(&[Bytes::from_static(b"a")]);
        assert_eq!(m.len(), 1);
        assert_eq!(m.candidates(100), vec![Bytes::from_static(b"b")]);
    }

    /// An admission that admits transactions starting with `ok` and, after each commit,
    /// evicts what the test queued.
    struct Prefix {
        evict: Mutex<Vec<TxHash>>,
    }

    impl Admission for Prefix {
        fn admit(&self, _hash: &TxHash, tx: &[u8]) -> std::result::Result<(), crate::Refusal> {
            if tx.starts_with(b"ok") {
                Ok(())
            } else {
                Err(crate::Refusal {
                    reason: "cannot_pay_fee",
                    detail: "no".into(),
                })
            }
        }
        fn after_commit(&self) -> Vec<TxHash> {
            std::mem::take(&mut *self.evict.lock().unwrap_or_else(|e| e.into_inner()))
        }
    }

    #[test]
    fn admission_refuses_and_evicts() {
        let adm = Arc::new(Prefix {
            evict: Mutex::new(Vec::new()),
        });
        let m = Mempool::new(10, 1000, 100, Some(adm.clone()));
        assert!(matches!(
            m.submit(Bytes::from_static(b"broke")),
            Err(Error::Refused {
                reason: "cannot_pay_fee",
                ..
            })
        ));
        assert_eq!(m.len(), 0);
        for tx in [&b"ok1"[..], b"ok2", b"ok3"] {
            assert!(m.submit(Bytes::copy_from_slice(tx)).expect("admitted"));
        }
        // A block commits ok1; the application says ok3 became unpayable.
        adm.evict
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(tx_hash(b"ok3"));
        m.remove_committed(&[Bytes::from_static(b"ok1")]);
        assert_eq!(m.candidates(1000), vec![Bytes::from_static(b"ok2")]);
        // ok3 may come back (it is no longer known).
        assert!(m.submit(Bytes::from_static(b"ok3")).expect("readmitted"));
    }
}
