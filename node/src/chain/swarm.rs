//! The validators' own libp2p swarm (`groundtruth-p2p`) wired into the node:
//!
//! ```text
//! ledger validator set ──(every 2 s)──► allowed peer ids (consensus key ⇒ PeerId)
//! POST /tx accepted ──► publish groundtruth/tx/1 ──► peers: Core::submit (gossipsub relays)
//! reading accepted from this node's broker ──► batches ──► gossip groundtruth/readings/1
//!       ──► peers: signature checked, then into their ingest pipeline like an MQTT message
//! /groundtruth/readings/2 requests ◄──► this node's store (frames by device and seq range,
//!       a window's inventory per device); the audit loop fills from peers with the same protocol
//! ```
//!
//! Verdicts: a transaction that does not decode or whose signature fails, and a readings message
//! with an undecodable frame or a bad signature, are `Reject` (the relaying peer is penalised
//! and, repeated, cut off); anything else an honest peer might send (a stale nonce, a full
//! queue) is `Ignore`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use groundtruth_device_sdk::{topics::readings_topic, SignedReading};
use groundtruth_p2p::{Inbound as GossipIn, P2p, P2pConfig, P2pHandle, PeerId, Topic, Verdict};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::Core;
use crate::ingest::store::Store;
use crate::ingest::{Inbound, REPLICATED_GENERATION};

/// Gossip received on the validators' swarm, by topic and verdict.
#[derive(Clone, Debug, Default)]
pub struct SwarmMetrics {
    /// Messages received, labelled `topic` (`tx`, `readings`, `attestations`) and `verdict`
    /// (`accept`, `reject`, `ignore`).
    pub received: Family<Vec<(String, String)>, Counter>,
}

impl SwarmMetrics {
    /// Registers under `groundtruth_p2p_*`.
    pub fn register(registry: &mut prometheus_client::registry::Registry) -> Self {
        let m = Self::default();
        registry.register(
            "groundtruth_p2p_gossip_received",
            "Gossip messages received on the validators' swarm, by topic and verdict",
            m.received.clone(),
        );
        m
    }

    fn record(&self, topic: Topic, verdict: Verdict) {
        let topic = match topic {
            Topic::Transactions => "tx",
            Topic::Readings => "readings",
            Topic::Attestations => "attestations",
        };
        let verdict = match verdict {
            Verdict::Accept => "accept",
            Verdict::Reject => "reject",
            Verdict::Ignore => "ignore",
        };
        self.received
            .get_or_create(&vec![
                ("topic".to_string(), topic.to_string()),
                ("verdict".to_string(), verdict.to_string()),
            ])
            .inc();
    }
}

/// Most frames one replicated readings message carries.
pub const MAX_FRAMES_PER_MESSAGE: usize = 256;
/// How long a partial batch of frames waits before it is published.
const BATCH_DELAY: Duration = Duration::from_millis(50);

/// `[p2p]`: the validators' swarm (runs only with consensus).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct P2pSection {
    /// Run it (transaction gossip, readings replication and fetch).
    pub enabled: bool,
    /// Listen multiaddr, e.g. `/ip4/0.0.0.0/tcp/27100`.
    pub listen: String,
    /// Other validators' multiaddrs to dial first.
    pub bootstrap: Vec<String>,
    /// Largest gossip payload, bytes (every validator should use the same value; an audit
    /// proof transaction must fit).
    pub max_message_bytes: usize,
}

impl Default for P2pSection {
    fn default() -> Self {
        Self {
            enabled: true,
            // Any free port: a validator that others should dial sets a fixed one and lists
            // the others in `bootstrap`.
            listen: "/ip4/0.0.0.0/tcp/0".into(),
            bootstrap: Vec::new(),
            // An audit proof transaction (up to the default `max_audit_proof_bytes`, 768 KiB)
            // must fit.
            max_message_bytes: 1024 * 1024,
        }
    }
}

impl P2pSection {
    fn swarm_config(&self) -> Result<P2pConfig, String> {
        let parse = |s: &str| {
            s.parse::<groundtruth_p2p::Multiaddr>()
                .map_err(|e| format!("p2p address {s:?}: {e}"))
        };
        let config = P2pConfig {
            listen: parse(&self.listen)?,
            bootstrap: self
                .bootstrap
                .iter()
                .map(|b| parse(b))
                .collect::<Result<_, _>>()?,
            max_message_bytes: self.max_message_bytes,
            ..P2pConfig::default()
        };
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }
}

/// The node's store as the swarm's readings source (the ledger says which devices an
/// inventory covers).
struct StoreSource(Store, Arc<Core>);

impl groundtruth_p2p::ReadingsSource for StoreSource {
    fn frames(&self, device: &[u8; 32], from: u64, to: u64, max: usize) -> Vec<Vec<u8>> {
        let id = groundtruth_device_sdk::DeviceId(*device);
        let mut out = Vec::new();
        let mut bytes = 0usize;
        for seq in from..=to {
            let Ok(Some((crate::ingest::store::Status::Accepted, frame))) = self.0.get(&id, seq)
            else {
                continue;
            };
            bytes = bytes.saturating_add(frame.len());
            if bytes > max {
                break;
            }
            out.push(frame.to_vec());
        }
        out
    }

    fn inventory(
        &self,
        start_s: u64,
        end_s: u64,
        after: Option<[u8; 32]>,
        max_entries: usize,
    ) -> groundtruth_p2p::Inventory {
        let devices = crate::audit::fill::metered_devices(&self.1.shared.read().state);
        crate::audit::fill::inventory_page(&self.0, &devices, start_s, end_s, after, max_entries)
            .unwrap_or_else(|e| {
                tracing::warn!(target: "node::p2p", error = %e, "inventory from the store failed");
                groundtruth_p2p::Inventory::default()
            })
    }
}

/// The ledger's validator set as peer ids.
fn allowed_of(core: &Core) -> HashSet<PeerId> {
    let set = core.shared.read().state.validator_set();
    set.iter()
        .filter_map(|(k, _)| groundtruth_p2p::peer_id_of(k.0).ok())
        .collect()
}

/// What ingest feeds the swarm.
pub(crate) struct FromIngest {
    /// Frames accepted from this node's broker, to replicate.
    pub(crate) replicate: mpsc::Receiver<Bytes>,
    /// Sequence gaps to fetch from peers.
    pub(crate) gaps: mpsc::Receiver<crate::ingest::GapFill>,
}

/// Starts the swarm; returns its handle. Transactions admitted with `forward` are gossiped from
/// now on (instead of the HTTP forwarder), and `ingest` receives peers' readings.
pub(crate) async fn start(
    section: &P2pSection,
    consensus_secret: [u8; 32],
    core: Arc<Core>,
    store: Store,
    ingest: mpsc::Sender<Inbound>,
    from_ingest: FromIngest,
    metrics: SwarmMetrics,
) -> Result<P2pHandle, String> {
    let FromIngest {
        replicate: replicate_rx,
        gaps: gap_rx,
    } = from_ingest;
    let config = section.swarm_config()?;
    let (allowed_tx, allowed_rx) = watch::channel(allowed_of(&core));
    let (handle, inbound) = P2p::spawn(
        config,
        consensus_secret,
        allowed_rx,
        Arc::new(StoreSource(store, core.clone())),
    )
    .await
    .map_err(|e| e.to_string())?;
    tracing::info!(target: "node::p2p", peer = %handle.local_peer_id(), listen = ?handle.listen_addrs(), "validator swarm started");

    // The allowed set follows the ledger.
    let c = core.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tick.tick().await;
            let now = allowed_of(&c);
            allowed_tx.send_if_modified(|cur| {
                if *cur == now {
                    false
                } else {
                    *cur = now;
                    true
                }
            });
            if allowed_tx.is_closed() {
                return;
            }
        }
    });

    // Outbound transactions.
    let (tx_out, mut tx_rx) = mpsc::channel::<Bytes>(4096);
    if core.gossip.set(tx_out).is_err() {
        return Err("the swarm was started twice".into());
    }
    let h = handle.clone();
    tokio::spawn(async move {
        while let Some(raw) = tx_rx.recv().await {
            if let Err(e) = h.publish(Topic::Transactions, raw.to_vec()).await {
                tracing::debug!(target: "node::p2p", error = %e, "transaction not gossiped");
            }
        }
    });

    // Outbound readings, batched.
    tokio::spawn(replicate(handle.clone(), replicate_rx));

    // Filling from peers, for the audit loop and for ingest's sequence gaps.
    let fill = crate::audit::fill::PeerFill {
        p2p: handle.clone(),
        ingest: ingest.clone(),
    };
    let _ = core.peer_fill.set(fill.clone());
    tokio::spawn(fill_gaps(fill, gap_rx));

    // Inbound gossip.
    tokio::spawn(inbound_loop(core, ingest, inbound, metrics));
    Ok(handle)
}

/// Fetches the sequence gaps ingest reports from peers, one at a time.
async fn fill_gaps(
    fill: crate::audit::fill::PeerFill,
    mut rx: mpsc::Receiver<crate::ingest::GapFill>,
) {
    while let Some(gap) = rx.recv().await {
        let device = groundtruth_ledger::DeviceId(gap.device.0);
        let frames = fill.fill_gap(device, gap.from_seq, gap.to_seq).await;
        if frames > 0 {
            tracing::info!(target: "node::p2p", device = %gap.device, from = gap.from_seq, to = gap.to_seq, frames, "filled a sequence gap from peers");
        }
    }
}

/// Batches frames accepted from this node's broker into readings messages.
async fn replicate(handle: P2pHandle, mut rx: mpsc::Receiver<Bytes>) {
    loop {
        let Some(first) = rx.recv().await else {
            return;
        };
        let mut frames = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while frames.len() < MAX_FRAMES_PER_MESSAGE {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => frames.push(f),
                Ok(None) | Err(_) => break,
            }
        }
        let mut body = Vec::with_capacity(frames.iter().map(|f| f.len() + 2).sum());
        for f in &frames {
            body.extend_from_slice(&u16::try_from(f.len()).unwrap_or(0).to_be_bytes());
            body.extend_from_slice(f);
        }
        if let Err(e) = handle.publish(Topic::Readings, body).await {
            tracing::debug!(target: "node::p2p", error = %e, frames = frames.len(), "readings not replicated");
        }
    }
}

/// Splits a readings message (`(u16 BE len ‖ frame)*`, at most [`MAX_FRAMES_PER_MESSAGE`]).
pub fn split_readings(data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
        let frame = rest.get(2..2 + len)?;
        out.push(frame);
        if out.len() > MAX_FRAMES_PER_MESSAGE {
            return None;
        }
        rest = rest.get(2 + len..)?;
    }
    Some(out)
}

async fn inbound_loop(
    core: Arc<Core>,
    ingest: mpsc::Sender<Inbound>,
    mut rx: mpsc::Receiver<GossipIn>,
    metrics: SwarmMetrics,
) {
    while let Some(msg) = rx.recv().await {
        let verdict = match msg.topic {
            Topic::Transactions => {
                let core = core.clone();
                let data = Bytes::from(msg.data);
                match tokio::task::spawn_blocking(move || core.submit(data, false)).await {
                    Ok(Ok(_)) => Verdict::Accept,
                    Ok(Err(r))
                        if matches!(r.reason, "malformed" | "bad_signature" | "weak_key") =>
                    {
                        Verdict::Reject
                    }
                    _ => Verdict::Ignore,
                }
            }
            Topic::Readings => readings(&ingest, &msg.data),
            Topic::Attestations => Verdict::Ignore,
        };
        metrics.record(msg.topic, verdict);
        msg.validation.report(verdict);
    }
}

/// Checks a readings message (every frame decodes and its signature verifies) and hands its
/// frames to ingest, which applies every other check as for a broker's message.
fn readings(ingest: &mpsc::Sender<Inbound>, data: &[u8]) -> Verdict {
    let Some(frames) = split_readings(data) else {
        return Verdict::Reject;
    };
    let mut decoded = Vec::with_capacity(frames.len());
    for f in &frames {
        match SignedReading::decode_frame(f) {
            Ok(r) if r.verify().is_ok() => decoded.push(r),
            _ => return Verdict::Reject,
        }
    }
    for (r, f) in decoded.iter().zip(frames) {
        let publish = rumqttc::Publish::new(
            readings_topic(&r.reading.device),
            rumqttc::QoS::AtMostOnce,
            f.to_vec(),
        );
        let inbound = Inbound {
            publish,
            connection: 0,
            generation: REPLICATED_GENERATION,
        };
        if ingest.try_send(inbound).is_err() {
            // Ingest is saturated: do not forward what we could not take.
            return Verdict::Ignore;
        }
    }
    Verdict::Accept
}
