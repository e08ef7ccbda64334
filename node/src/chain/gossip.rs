//! The current mempool gossip: every transaction a client submits to this node is forwarded
//! once, in batches, to each configured peer's `POST /txs` (see the module docs of
//! `crate::chain` for the limits). One task and one bounded queue per peer keep a client's
//! transactions in order; a full queue drops (counted in the log), it never blocks admission.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::client::{encode_batch, request_async, FORWARDED_HEADER};

/// Transactions queued per peer.
const QUEUE: usize = 50_000;
/// Most transactions in one forwarded batch.
const MAX_BATCH_TXS: usize = 4096;
/// Most bytes in one forwarded batch.
const MAX_BATCH_BYTES: usize = 2 << 20;

/// Handle to the per-peer forwarding tasks.
#[derive(Clone, Default)]
pub(crate) struct Forwarder {
    peers: Vec<(String, mpsc::Sender<Bytes>)>,
}

impl Forwarder {
    /// Starts one forwarding task per peer (`host:port` of its HTTP API).
    pub fn spawn(peers: &[String]) -> Self {
        let peers = peers
            .iter()
            .map(|peer| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(forward(peer.clone(), rx));
                (peer.clone(), tx)
            })
            .collect();
        Self { peers }
    }

    /// Queues `tx` for every peer.
    pub fn push(&self, tx: Bytes) {
        for (peer, q) in &self.peers {
            if q.try_send(tx.clone()).is_err() {
                tracing::debug!(target: "node::chain::gossip", %peer, "forward queue full; transaction not forwarded");
            }
        }
    }
}

async fn forward(peer: String, mut rx: mpsc::Receiver<Bytes>) {
    let mut failures = 0u64;
    while let Some(first) = rx.recv().await {
        let mut bytes = first.len();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH_TXS && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(t) => {
                    bytes += t.len();
                    batch.push(t);
                }
                Err(_) => break,
            }
        }
        let body = encode_batch(&batch);
        let result = request_async(
            &peer,
            "POST",
            "/txs",
            &body,
            &[(FORWARDED_HEADER, "1")],
            Duration::from_secs(10),
        )
        .await;
        match result {
            Ok((200, _)) => failures = 0,
            Ok((status, _)) => {
                tracing::warn!(target: "node::chain::gossip", %peer, status, txs = batch.len(), "peer refused a forwarded batch")
            }
            Err(e) => {
                failures += 1;
                // Log the first failure of a streak and then every 100th.
                if failures % 100 == 1 {
                    tracing::warn!(target: "node::chain::gossip", %peer, error = %e, txs = batch.len(), "forwarding failed; batch dropped");
                }
            }
        }
    }
}
