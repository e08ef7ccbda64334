//! The current mempool gossip: every transaction a client submits to this node is forwarded
//! once, in batches, to each configured peer's `POST /txs` (see the module docs of
//! `crate::chain` for the limits), with the API's typed client
//! ([`groundtruth_api::ApiClient::forward_txs`]) on the blocking pool. One task and one bounded
//! queue per peer keep a client's transactions in order; a full queue drops (counted in the
//! log), it never blocks admission. To be replaced by libp2p gossip.

use std::time::Duration;

use bytes::Bytes;
use groundtruth_api::{ApiClient, DEFAULT_MAX_BATCH_BODY, DEFAULT_MAX_BATCH_ENTRIES};
use tokio::sync::mpsc;

/// Transactions queued per peer.
const QUEUE: usize = 50_000;
/// Most transactions in one forwarded batch (the peer's default entry limit).
const MAX_BATCH_TXS: usize = DEFAULT_MAX_BATCH_ENTRIES;
/// Most bytes in one forwarded batch body, length prefixes included (the peer's default
/// body limit).
const MAX_BATCH_BYTES: usize = DEFAULT_MAX_BATCH_BODY;
/// Timeout of one forward.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Handle to the per-peer forwarding tasks.
#[derive(Clone, Default)]
pub(crate) struct Forwarder {
    peers: Vec<(String, mpsc::Sender<Bytes>)>,
}

impl Forwarder {
    /// Starts one forwarding task per peer (`host:port` or `http://host:port` of its API).
    pub fn spawn(peers: &[String]) -> Self {
        let peers = peers
            .iter()
            .filter_map(|peer| match ApiClient::new(peer) {
                Ok(client) => {
                    let (tx, rx) = mpsc::channel(QUEUE);
                    tokio::spawn(forward(client.with_timeout(TIMEOUT), rx));
                    Some((peer.clone(), tx))
                }
                Err(e) => {
                    tracing::warn!(target: "node::chain::gossip", %peer, error = %e, "not a peer API address; transactions are not forwarded to it");
                    None
                }
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

/// Takes queued transactions into batches within the peer's limits; `carry` holds a
/// transaction that did not fit the previous batch.
fn next_batch(
    first: Bytes,
    rx: &mut mpsc::Receiver<Bytes>,
    carry: &mut Option<Bytes>,
) -> Vec<Bytes> {
    let mut bytes = first.len().saturating_add(4);
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_TXS {
        let Ok(t) = rx.try_recv() else { break };
        let size = t.len().saturating_add(4);
        if bytes.saturating_add(size) > MAX_BATCH_BYTES {
            *carry = Some(t);
            break;
        }
        bytes += size;
        batch.push(t);
    }
    batch
}

async fn forward(client: ApiClient, mut rx: mpsc::Receiver<Bytes>) {
    let peer = client.authority().to_string();
    let mut failures = 0u64;
    let mut carry = None;
    loop {
        let first = match carry.take() {
            Some(t) => t,
            None => match rx.recv().await {
                Some(t) => t,
                None => return,
            },
        };
        let batch = next_batch(first, &mut rx, &mut carry);
        let txs = batch.len();
        let c = client.clone();
        let result = tokio::task::spawn_blocking(move || c.forward_txs(&batch)).await;
        match result {
            Ok(Ok(_)) => failures = 0,
            Ok(Err(e)) if e.status().is_some() => {
                tracing::warn!(target: "node::chain::gossip", %peer, error = %e, txs, "peer refused a forwarded batch")
            }
            Ok(Err(e)) => {
                failures += 1;
                // Log the first failure of a streak and then every 100th.
                if failures % 100 == 1 {
                    tracing::warn!(target: "node::chain::gossip", %peer, error = %e, txs, "forwarding failed; batch dropped");
                }
            }
            Err(e) => {
                tracing::error!(target: "node::chain::gossip", %peer, error = %e, "forwarding task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batches_stay_within_the_peer_limits() {
        let (tx, mut rx) = mpsc::channel(QUEUE);
        // 100 transactions of 16 KiB: about 1.6 MiB, more than one body.
        for i in 0..100u8 {
            assert!(tx.try_send(Bytes::from(vec![i; 16 * 1024])).is_ok());
        }
        let mut carry = None;
        let mut total = 0;
        let mut batches = 0;
        let mut next = rx.try_recv().ok();
        while let Some(first) = next {
            let batch = next_batch(first, &mut rx, &mut carry);
            let body = groundtruth_api::encode_batch(&batch).len();
            assert!(body <= MAX_BATCH_BYTES, "batch body {body}");
            assert!(batch.len() <= MAX_BATCH_TXS);
            total += batch.len();
            batches += 1;
            next = carry.take().or_else(|| rx.try_recv().ok());
        }
        assert_eq!(total, 100, "nothing lost between batches");
        assert_eq!(batches, 2);
    }
}
