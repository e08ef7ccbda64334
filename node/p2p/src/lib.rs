//! The validators' own libp2p network, beside Malachite's consensus swarm.
//!
//! Malachite's swarm carries only consensus channels, so everything else validators exchange
//! travels here, on a second swarm with its own port: mempool transactions, replicated readings
//! frames and epoch attestations over gossipsub, and fetching a device's readings from a peer
//! or the inventory of a time window over request-response (`/groundtruth/readings/2`). See `README.md` for the protocol ids and
//! limits.
//!
//! * **Identity.** The libp2p key is the validator's ed25519 consensus key
//!   ([`keypair_from_secret`]), so a validator's [`PeerId`] follows from its ledger identity
//!   ([`peer_id_of`]).
//! * **Allow-list.** Only peers in the set passed through a [`tokio::sync::watch`] channel may
//!   hold a connection; gossip whose signed author is outside the set is ignored and never
//!   forwarded. The set may change at any time; removed peers are disconnected.
//! * **Validation.** Gossip is delivered to the application on a bounded channel as
//!   [`Inbound`]; nothing is forwarded until the application reports a [`Verdict`]. Rejections
//!   lower the sender's gossipsub score; a peer under the graylist threshold is cut off.
//! * **Bounds.** Message sizes, per-peer message rate, request ranges, response bytes,
//!   concurrent requests, pending connections and every channel are bounded.
//!
//! What it must not do: interpret the bytes it carries (the node validates them), run its own
//! runtime (it spawns onto the caller's tokio runtime), or touch Malachite's swarm.

mod config;
mod error;
mod identity;
pub mod provider;
mod service;
mod topic;
mod wire;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use libp2p::gossipsub::MessageId;
use tokio::sync::{mpsc, oneshot, watch};

pub use config::{P2pConfig, GOSSIP_ENVELOPE_BYTES, MIN_TRANSMIT_BYTES};
pub use error::{P2pError, Result};
pub use identity::{keypair_from_secret, peer_id_of};
pub use libp2p::{Multiaddr, PeerId};
pub use provider::{
    ProviderNet, ProviderNetConfig, ProviderNetHandle, ProviderRefusal, ProviderRequest,
    ProviderResponse, ProviderService, PROVIDER_PROTOCOL,
};
pub use topic::Topic;
pub use wire::{
    Frame, Inventory, InventoryEntry, InventoryRequest, ReadingsRequest, Refusal, READINGS_PROTOCOL,
};

/// The identify protocol version of this network. A peer announcing another one (for
/// instance Malachite's swarm, which has the same [`PeerId`], dialled on the wrong port) is
/// disconnected.
pub const PROTOCOL_VERSION: &str = "/groundtruth/p2p/1.0.0";

/// The Kademlia protocol id of this network (distinct from any other swarm's DHT).
pub const KAD_PROTOCOL: &str = "/groundtruth/kad/1.0.0";

/// Where the serving side of `/groundtruth/readings/2` gets frames and inventories. The node implements it over
/// its readings store. It is called on a blocking thread, at most
/// [`P2pConfig::max_concurrent_serves`] at a time.
pub trait ReadingsSource: Send + Sync + 'static {
    /// The signed frames of `device` with sequence numbers in `from..=to`, in sequence order,
    /// stopping before the frame that would bring the total past `max` bytes. Missing sequence
    /// numbers are simply absent.
    fn frames(&self, device: &[u8; 32], from: u64, to: u64, max: usize) -> Vec<Vec<u8>>;

    /// What it holds of readings whose interval lies in `[start_s, end_s)`: one entry per
    /// device with any, in ascending device order, devices after `after` only, at most
    /// `max_entries` (with `more` set when it stopped early). Holds nothing by default.
    fn inventory(
        &self,
        _start_s: u64,
        _end_s: u64,
        _after: Option<[u8; 32]>,
        _max_entries: usize,
    ) -> Inventory {
        Inventory::default()
    }
}

/// A [`ReadingsSource`] that holds nothing (every request gets an empty answer).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReadings;

impl ReadingsSource for NoReadings {
    fn frames(&self, _: &[u8; 32], _: u64, _: u64, _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }
}

/// The application's decision on one inbound gossip message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Valid: deliver it and forward it to the mesh.
    Accept,
    /// Provably invalid (bad signature, malformed): drop it and penalise the peer that sent it.
    /// Use only for what an honest peer would never forward.
    Reject,
    /// Not useful (stale, already known, cannot judge): drop it without penalty.
    Ignore,
}

/// The application's pending verdict on an [`Inbound`] message. Report it within a few
/// heartbeats; dropping it unreported counts as [`Verdict::Ignore`].
#[derive(Debug)]
pub struct Validation {
    id: MessageId,
    propagated_by: PeerId,
    reports: Option<mpsc::Sender<service::Report>>,
}

impl Validation {
    /// Reports the verdict to the swarm task. Returns `false` if it could not be queued (the
    /// task is gone or overloaded); gossipsub then drops the message on its own after a few
    /// heartbeats, like [`Verdict::Ignore`].
    pub fn report(mut self, verdict: Verdict) -> bool {
        self.send(verdict)
    }

    fn send(&mut self, verdict: Verdict) -> bool {
        let Some(tx) = self.reports.take() else {
            return false;
        };
        let report = service::Report {
            id: self.id.clone(),
            propagated_by: self.propagated_by,
            verdict,
        };
        match tx.try_send(report) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(target: "node::p2p", error = %e, "validation report dropped");
                false
            }
        }
    }
}

impl Drop for Validation {
    fn drop(&mut self) {
        if self.reports.is_some() {
            self.send(Verdict::Ignore);
        }
    }
}

/// One gossip message delivered to the application, awaiting its verdict.
#[derive(Debug)]
pub struct Inbound {
    /// The topic it arrived on.
    pub topic: Topic,
    /// Its author, authenticated by the gossipsub signature; always in the allow-list.
    pub source: PeerId,
    /// The connected peer that relayed it to us (the one penalised on [`Verdict::Reject`]).
    pub propagated_by: PeerId,
    /// The payload, at most [`P2pConfig::max_message_bytes`].
    pub data: Vec<u8>,
    /// Report [`Verdict`] here.
    pub validation: Validation,
}

/// Entry point: spawns the swarm task.
#[derive(Debug)]
pub struct P2p;

impl P2p {
    /// Builds the swarm from the validator's 32-byte ed25519 consensus `secret`, starts
    /// listening on `config.listen`, dials the bootstrap addresses, and spawns the event loop on
    /// the current tokio runtime. `allowed` carries the set of peers allowed to connect (the
    /// current validator set, see [`peer_id_of`]); `source` serves readings requests.
    ///
    /// Returns once the listener is up, with the handle and the channel of inbound gossip.
    /// The task stops on [`P2pHandle::shutdown`] or when every handle is dropped.
    pub async fn spawn(
        config: P2pConfig,
        secret: [u8; 32],
        allowed: watch::Receiver<HashSet<PeerId>>,
        source: Arc<dyn ReadingsSource>,
    ) -> Result<(P2pHandle, mpsc::Receiver<Inbound>)> {
        service::spawn(config, secret, allowed, source).await
    }
}

/// A cheap, clonable handle to the swarm task.
#[derive(Debug, Clone)]
pub struct P2pHandle {
    commands: mpsc::Sender<service::Command>,
    local_peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    max_message_bytes: usize,
    max_readings_range: u64,
    request_timeout: Duration,
}

impl P2pHandle {
    /// This validator's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// The addresses the swarm listened on when it started (with the real port when the
    /// configured one was 0).
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> service::Command) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(make(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// Publishes `data` on `topic` to the allowed peers subscribed to it. Fails with
    /// [`P2pError::NoPeers`] before any peer is connected and subscribed (retry later), and
    /// with [`P2pError::Duplicate`] for bytes already published on the topic recently.
    pub async fn publish(&self, topic: Topic, data: Vec<u8>) -> Result<()> {
        if data.len() > self.max_message_bytes {
            return Err(P2pError::MessageTooLarge {
                len: data.len(),
                max: self.max_message_bytes,
            });
        }
        self.ask(|reply| service::Command::Publish { topic, data, reply })
            .await?
    }

    /// Fetches `device`'s frames in `from_seq..=to_seq` from `peer`. The answer may be cut
    /// short by the response byte limit (ask again from the next sequence number). A reversed
    /// or over-long range is refused locally; the peer may refuse too
    /// ([`P2pError::Refused`]); an oversized or malformed response is an error.
    pub async fn fetch_readings(&self, peer: PeerId, req: ReadingsRequest) -> Result<Vec<Vec<u8>>> {
        if !req.is_within(self.max_readings_range) {
            return Err(P2pError::InvalidRange {
                from: req.from_seq,
                to: req.to_seq,
                max: self.max_readings_range,
            });
        }
        // The request-response timeout fires first; this outer one only guards a stalled task.
        let deadline = self.request_timeout.saturating_add(Duration::from_secs(2));
        let fut = self.ask(|reply| service::Command::Fetch { peer, req, reply });
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r?,
            Err(_) => Err(P2pError::Timeout(deadline)),
        }
    }

    /// Asks `peer` which readings it holds for the window `[start_s, end_s)` (one page, see
    /// [`InventoryRequest`]). The answer is checked: devices strictly ascending after `after`,
    /// every entry self-consistent, at most the configured page size.
    pub async fn inventory(&self, peer: PeerId, req: InventoryRequest) -> Result<Inventory> {
        let deadline = self.request_timeout.saturating_add(Duration::from_secs(2));
        let fut = self.ask(|reply| service::Command::Inventory { peer, req, reply });
        match tokio::time::timeout(deadline, fut).await {
            Ok(r) => r?,
            Err(_) => Err(P2pError::Timeout(deadline)),
        }
    }

    /// The peers with an open connection.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>> {
        self.ask(service::Command::ConnectedPeers).await
    }

    /// The connected peers subscribed to `topic` (publishing needs at least one).
    pub async fn topic_peers(&self, topic: Topic) -> Result<Vec<PeerId>> {
        self.ask(|reply| service::Command::TopicPeers { topic, reply })
            .await
    }

    /// The gossipsub score this node holds for `peer`, if it knows the peer.
    pub async fn peer_score(&self, peer: PeerId) -> Result<Option<f64>> {
        self.ask(|reply| service::Command::PeerScore { peer, reply })
            .await
    }

    /// Records an address for `peer` (e.g. from the ledger) and dials it if the peer is
    /// allowed and not connected.
    pub async fn add_peer_address(&self, peer: PeerId, addr: Multiaddr) -> Result<()> {
        self.commands
            .send(service::Command::AddAddress { peer, addr })
            .await
            .map_err(|_| P2pError::Stopped)
    }

    /// Stops the swarm task, closing every connection, and waits for it to finish.
    /// Idempotent: on a stopped task it returns at once.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self
            .commands
            .send(service::Command::Shutdown(tx))
            .await
            .is_ok()
        {
            let _ = rx.await;
        }
    }
}
