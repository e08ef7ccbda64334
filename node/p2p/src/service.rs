//! The swarm task: one event loop owning the swarm, driven by commands from handles.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::futures::StreamExt;
use libp2p::gossipsub::{
    self, IdentityTransform, MessageAcceptance, MessageAuthenticity, MessageId, PeerScoreParams,
    PeerScoreThresholds, PublishError, TopicScoreParams, ValidationMode,
    WhitelistSubscriptionFilter,
};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, NetworkBehaviour, SwarmEvent};
use libp2p::{
    allow_block_list, connection_limits, identify, kad, noise, tcp, yamux, Multiaddr, PeerId,
    StreamProtocol, Swarm, SwarmBuilder,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::config::P2pConfig;
use crate::error::{P2pError, Result};
use crate::identity::keypair_from_secret;
use crate::topic::Topic;
use crate::wire::{
    Frame, Inventory, InventoryRequest, ReadingsRequest, ReadingsResponse, Refusal, Request,
    READINGS_PROTOCOL,
};
use crate::{
    Inbound, P2pHandle, ReadingsSource, Validation, Verdict, KAD_PROTOCOL, PROTOCOL_VERSION,
};

const TARGET: &str = "node::p2p";
/// Most listen addresses taken from one identify message.
const MAX_IDENTIFY_ADDRS: usize = 8;
/// Gossip messages per gossipsub RPC frame.
const MAX_MESSAGES_PER_RPC: usize = 128;
/// Encoded readings request limit (a request is under 100 bytes).
const MAX_REQUEST_WIRE_BYTES: u64 = 1024;
/// Maintenance period: score checks, cooldown expiry, discovery.
const TICK: Duration = Duration::from_millis(500);

/// The gossipsub score under which a peer is cut off (gossipsub itself already ignores its
/// RPCs below this graylist threshold).
pub(crate) const GRAYLIST_THRESHOLD: f64 = -80.0;
/// Weight of the squared count of invalid messages (P4). With a topic weight of 1 and positive
/// contributions capped at [`TOPIC_SCORE_CAP`], three rejected messages in a short time
/// (-10 × 3² = -90) graylist a peer.
const INVALID_MESSAGE_WEIGHT: f64 = -10.0;
/// Cap on the positive part of the topic scores, so that good behaviour cannot buy room for
/// invalid messages.
const TOPIC_SCORE_CAP: f64 = 10.0;

/// A command from a [`P2pHandle`].
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        topic: Topic,
        data: Vec<u8>,
        reply: oneshot::Sender<Result<()>>,
    },
    Fetch {
        peer: PeerId,
        req: ReadingsRequest,
        reply: oneshot::Sender<Result<Vec<Vec<u8>>>>,
    },
    Inventory {
        peer: PeerId,
        req: InventoryRequest,
        reply: oneshot::Sender<Result<Inventory>>,
    },
    ConnectedPeers(oneshot::Sender<Vec<PeerId>>),
    TopicPeers {
        topic: Topic,
        reply: oneshot::Sender<Vec<PeerId>>,
    },
    PeerScore {
        peer: PeerId,
        reply: oneshot::Sender<Option<f64>>,
    },
    AddAddress {
        peer: PeerId,
        addr: Multiaddr,
    },
    Shutdown(oneshot::Sender<()>),
}

/// A verdict from a [`Validation`] handle.
#[derive(Debug)]
pub(crate) struct Report {
    pub(crate) id: MessageId,
    pub(crate) propagated_by: PeerId,
    pub(crate) verdict: Verdict,
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    allow: allow_block_list::Behaviour<allow_block_list::AllowedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour<IdentityTransform, WhitelistSubscriptionFilter>,
    readings: request_response::cbor::Behaviour<Request, ReadingsResponse>,
}

fn transport_err(e: impl std::fmt::Display) -> P2pError {
    P2pError::Transport(e.to_string())
}

fn gossipsub_behaviour(
    config: &P2pConfig,
    keypair: libp2p::identity::Keypair,
) -> Result<gossipsub::Behaviour<IdentityTransform, WhitelistSubscriptionFilter>> {
    let gs_config = gossipsub::ConfigBuilder::default()
        .validation_mode(ValidationMode::Strict)
        .validate_messages()
        // Content addressing: the same bytes on the same topic are one message, whoever
        // publishes them (a transaction gossiped by two validators is deduplicated).
        .message_id_fn(|m| {
            let mut h = blake3::Hasher::new();
            h.update(m.topic.as_str().as_bytes());
            h.update(&[0]);
            h.update(&m.data);
            MessageId::new(h.finalize().as_bytes())
        })
        .max_transmit_size(config.max_transmit_bytes())
        .max_messages_per_rpc(Some(MAX_MESSAGES_PER_RPC))
        .heartbeat_interval(config.heartbeat_interval)
        .heartbeat_initial_delay(config.heartbeat_interval)
        .build()
        .map_err(transport_err)?;
    let filter = WhitelistSubscriptionFilter(Topic::ALL.iter().map(|t| t.hash()).collect());
    let mut gs = gossipsub::Behaviour::new_with_subscription_filter(
        MessageAuthenticity::Signed(keypair),
        gs_config,
        filter,
    )
    .map_err(transport_err)?;

    let mut params = PeerScoreParams {
        topic_score_cap: TOPIC_SCORE_CAP,
        // Validators are a known set; several may share an address (a devnet on loopback).
        ip_colocation_factor_weight: 0.0,
        ..PeerScoreParams::default()
    };
    for topic in Topic::ALL {
        params.topics.insert(topic.hash(), topic_score_params());
    }
    let thresholds = PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST_THRESHOLD,
        ..PeerScoreThresholds::default()
    };
    gs.with_peer_score(params, thresholds)
        .map_err(transport_err)?;
    for topic in Topic::ALL {
        gs.subscribe(&topic.ident()).map_err(transport_err)?;
    }
    Ok(gs)
}

fn topic_score_params() -> TopicScoreParams {
    TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 0.1,
        first_message_deliveries_decay: 0.9,
        first_message_deliveries_cap: 50.0,
        // Quiet topics are normal (attestations once an epoch): no penalty for a silent mesh.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: INVALID_MESSAGE_WEIGHT,
        // Decays to nothing in about an hour (with the default 1 s decay interval).
        invalid_message_deliveries_decay: gossipsub::score_parameter_decay(Duration::from_secs(
            3600,
        )),
        ..TopicScoreParams::default()
    }
}

fn build_swarm(config: &P2pConfig, secret: [u8; 32]) -> Result<Swarm<Behaviour>> {
    let keypair = keypair_from_secret(secret)?;
    let local = keypair.public().to_peer_id();

    let gossipsub = gossipsub_behaviour(config, keypair.clone())?;

    let identify = identify::Behaviour::new(
        identify::Config::new(PROTOCOL_VERSION.to_string(), keypair.public())
            .with_agent_version(format!("groundtruth-p2p/{}", env!("CARGO_PKG_VERSION"))),
    );

    let mut kad_config = kad::Config::new(StreamProtocol::new(KAD_PROTOCOL));
    kad_config.set_record_filtering(kad::StoreInserts::FilterBoth);
    let mut kad =
        kad::Behaviour::with_config(local, kad::store::MemoryStore::new(local), kad_config);
    kad.set_mode(Some(kad::Mode::Server));

    let readings = request_response::cbor::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(MAX_REQUEST_WIRE_BYTES)
            .set_response_size_maximum(config.max_response_wire_bytes()),
        [(
            StreamProtocol::new(READINGS_PROTOCOL),
            ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_serves),
    );

    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_established_per_peer(Some(config.max_connections_per_peer)),
    );

    let behaviour = Behaviour {
        allow: allow_block_list::Behaviour::default(),
        limits,
        identify,
        kad,
        gossipsub,
        readings,
    };

    let idle = config.idle_connection_timeout;
    Ok(SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .map_err(transport_err)?
        .with_behaviour(move |_| behaviour)
        .map_err(transport_err)?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build())
}

pub(crate) async fn spawn(
    config: P2pConfig,
    secret: [u8; 32],
    mut allowed_rx: watch::Receiver<HashSet<PeerId>>,
    source: Arc<dyn ReadingsSource>,
) -> Result<(P2pHandle, mpsc::Receiver<Inbound>)> {
    config.validate()?;
    let mut swarm = build_swarm(&config, secret)?;
    let local = *swarm.local_peer_id();

    swarm
        .listen_on(config.listen.clone())
        .map_err(|e| P2pError::Listen {
            addr: config.listen.to_string(),
            reason: e.to_string(),
        })?;
    let listen_addrs = wait_for_listener(&mut swarm, &config.listen).await?;
    info!(target: TARGET, peer = %local, addrs = ?listen_addrs, "p2p listening");

    let (cmd_tx, cmd_rx) = mpsc::channel(config.command_capacity);
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
    // Every delivered message holds at most one report; the task drains this every turn.
    let (report_tx, report_rx) = mpsc::channel(config.inbound_capacity.saturating_mul(2));
    let (served_tx, served_rx) = mpsc::channel(config.max_concurrent_serves);

    let initial = allowed_rx.borrow_and_update().clone();
    let handle = P2pHandle {
        commands: cmd_tx,
        local_peer_id: local,
        listen_addrs,
        max_message_bytes: config.max_message_bytes,
        max_readings_range: config.max_readings_range,
        request_timeout: config.request_timeout,
    };
    let mut event_loop = EventLoop {
        swarm,
        local,
        allowed: HashSet::new(),
        allowed_rx,
        allowed_open: true,
        commands: cmd_rx,
        inbound: inbound_tx,
        report_tx,
        reports: report_rx,
        served_tx,
        served: served_rx,
        serving: 0,
        source,
        pending: HashMap::new(),
        buckets: HashMap::new(),
        cooldown: HashMap::new(),
        last_discovery: None,
        config,
    };
    event_loop.set_allowed(initial);
    event_loop.discover();
    tokio::spawn(event_loop.run());
    Ok((handle, inbound_rx))
}

async fn wait_for_listener(
    swarm: &mut Swarm<Behaviour>,
    addr: &Multiaddr,
) -> Result<Vec<Multiaddr>> {
    let fail = |reason: String| P2pError::Listen {
        addr: addr.to_string(),
        reason,
    };
    let wait = async {
        loop {
            match swarm.select_next_some().await {
                SwarmEvent::NewListenAddr { address, .. } => return Ok(vec![address]),
                SwarmEvent::ListenerClosed { reason, .. } => {
                    return Err(fail(format!("listener closed: {reason:?}")))
                }
                SwarmEvent::ListenerError { error, .. } => return Err(fail(error.to_string())),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .map_err(|_| fail("no listen address within 10 s".to_string()))?
}

/// Token bucket for one peer's inbound gossip.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

type FetchReply = oneshot::Sender<Result<Vec<Vec<u8>>>>;
type InventoryReply = oneshot::Sender<Result<Inventory>>;

/// An outbound request awaiting its answer.
enum Pending {
    Frames(PeerId, ReadingsRequest, FetchReply),
    Inventory(PeerId, InventoryRequest, InventoryReply),
}

impl Pending {
    fn peer(&self) -> PeerId {
        match self {
            Pending::Frames(peer, ..) | Pending::Inventory(peer, ..) => *peer,
        }
    }

    fn request(&self) -> Request {
        match self {
            Pending::Frames(_, req, _) => Request::Frames(*req),
            Pending::Inventory(_, req, _) => Request::Inventory(*req),
        }
    }

    fn fail(self, e: P2pError) {
        match self {
            Pending::Frames(_, _, reply) => {
                let _ = reply.send(Err(e));
            }
            Pending::Inventory(_, _, reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

struct EventLoop {
    swarm: Swarm<Behaviour>,
    config: P2pConfig,
    local: PeerId,
    /// The allow-list as last received (cooling peers included).
    allowed: HashSet<PeerId>,
    allowed_rx: watch::Receiver<HashSet<PeerId>>,
    allowed_open: bool,
    commands: mpsc::Receiver<Command>,
    inbound: mpsc::Sender<Inbound>,
    report_tx: mpsc::Sender<Report>,
    reports: mpsc::Receiver<Report>,
    served_tx: mpsc::Sender<(ResponseChannel<ReadingsResponse>, Option<ReadingsResponse>)>,
    served: mpsc::Receiver<(ResponseChannel<ReadingsResponse>, Option<ReadingsResponse>)>,
    serving: usize,
    source: Arc<dyn ReadingsSource>,
    pending: HashMap<OutboundRequestId, Pending>,
    buckets: HashMap<PeerId, Bucket>,
    /// Peers cut off for misbehaviour, until when.
    cooldown: HashMap<PeerId, Instant>,
    last_discovery: Option<Instant>,
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown_reply = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    None => break None,
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(command) => self.on_command(command),
                },
                Some(report) = self.reports.recv() => self.on_report(report),
                Some((channel, response)) = self.served.recv() => self.on_served(channel, response),
                changed = self.allowed_rx.changed(), if self.allowed_open => match changed {
                    Ok(()) => {
                        let set = self.allowed_rx.borrow_and_update().clone();
                        self.set_allowed(set);
                        self.discover();
                    }
                    Err(_) => {
                        warn!(target: TARGET, "allow-list sender dropped; keeping the last set");
                        self.allowed_open = false;
                    }
                },
                _ = tick.tick() => self.on_tick(),
            }
        };
        for (_, p) in self.pending.drain() {
            let peer = p.peer();
            p.fail(P2pError::Request {
                peer,
                reason: "p2p task shut down".to_string(),
            });
        }
        info!(target: TARGET, "p2p task stopped");
        drop(self.swarm);
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn is_cooling(&self, peer: &PeerId) -> bool {
        self.cooldown
            .get(peer)
            .is_some_and(|until| *until > Instant::now())
    }

    /// May `peer` hold a connection right now?
    fn admits(&self, peer: &PeerId) -> bool {
        *peer != self.local && self.allowed.contains(peer) && !self.is_cooling(peer)
    }

    fn set_allowed(&mut self, set: HashSet<PeerId>) {
        let removed: Vec<PeerId> = self.allowed.difference(&set).copied().collect();
        let added: Vec<PeerId> = set.difference(&self.allowed).copied().collect();
        self.allowed = set;
        let allow = &mut self.swarm.behaviour_mut().allow;
        for peer in &removed {
            // Closes every connection to it.
            allow.disallow_peer(*peer);
        }
        for peer in added.iter().filter(|p| !self.cooldown.contains_key(*p)) {
            allow.allow_peer(*peer);
        }
        for peer in &removed {
            self.swarm.behaviour_mut().kad.remove_peer(peer);
            self.buckets.remove(peer);
        }
        info!(
            target: TARGET,
            allowed = self.allowed.len(),
            added = added.len(),
            removed = removed.len(),
            "allow-list updated"
        );
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish { topic, data, reply } => {
                let r = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(topic.ident(), data)
                    .map(|_| ())
                    .map_err(|e| match e {
                        PublishError::NoPeersSubscribedToTopic => P2pError::NoPeers(topic),
                        PublishError::Duplicate => P2pError::Duplicate(topic),
                        other => P2pError::Publish {
                            topic,
                            reason: other.to_string(),
                        },
                    });
                let _ = reply.send(r);
            }
            Command::Fetch { peer, req, reply } => {
                self.request(Pending::Frames(peer, req, reply));
            }
            Command::Inventory { peer, req, reply } => {
                self.request(Pending::Inventory(peer, req, reply));
            }
            Command::ConnectedPeers(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::TopicPeers { topic, reply } => {
                let hash = topic.hash();
                let peers = self
                    .swarm
                    .behaviour()
                    .gossipsub
                    .all_peers()
                    .filter(|(_, topics)| topics.contains(&&hash))
                    .map(|(p, _)| *p)
                    .collect();
                let _ = reply.send(peers);
            }
            Command::PeerScore { peer, reply } => {
                let _ = reply.send(self.swarm.behaviour().gossipsub.peer_score(&peer));
            }
            Command::AddAddress { peer, addr } => {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, addr.clone());
                if self.admits(&peer) && !self.swarm.is_connected(&peer) {
                    self.dial(peer, vec![addr]);
                }
            }
            Command::Shutdown(_) => {}
        }
    }

    fn dial(&mut self, peer: PeerId, addresses: Vec<Multiaddr>) {
        let opts = DialOpts::peer_id(peer)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .addresses(addresses)
            .build();
        match self.swarm.dial(opts) {
            Ok(()) => debug!(target: TARGET, %peer, "dialling"),
            Err(DialError::NoAddresses) => {
                debug!(target: TARGET, %peer, "no known address; asking the DHT");
                self.swarm.behaviour_mut().kad.get_closest_peers(peer);
            }
            Err(DialError::DialPeerConditionFalse(_)) => {}
            Err(e) => debug!(target: TARGET, %peer, error = %e, "dial failed"),
        }
    }

    /// Dials bootstrap addresses and allowed peers that are not connected.
    fn discover(&mut self) {
        self.last_discovery = Some(Instant::now());
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for addr in self.config.bootstrap.clone() {
            match addr.iter().last() {
                Some(Protocol::P2p(peer)) => {
                    if self.admits(&peer) && !connected.contains(&peer) {
                        self.dial(peer, vec![addr]);
                    }
                }
                _ => {
                    if connected.is_empty() {
                        if let Err(e) = self.swarm.dial(addr.clone()) {
                            debug!(target: TARGET, %addr, error = %e, "bootstrap dial failed");
                        }
                    }
                }
            }
        }
        let missing: Vec<PeerId> = self
            .allowed
            .iter()
            .filter(|p| self.admits(p) && !connected.contains(*p))
            .copied()
            .collect();
        for peer in missing {
            self.dial(peer, Vec::new());
        }
        if !connected.is_empty() {
            // Learn addresses of validators we have not met from those we have.
            self.swarm.behaviour_mut().kad.get_closest_peers(self.local);
        }
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        // Cut off peers whose score fell under the graylist threshold.
        let graylisted: Vec<(PeerId, f64)> = self
            .swarm
            .connected_peers()
            .filter_map(|p| {
                let score = self.swarm.behaviour().gossipsub.peer_score(p)?;
                (score < GRAYLIST_THRESHOLD).then_some((*p, score))
            })
            .collect();
        for (peer, score) in graylisted {
            warn!(target: TARGET, %peer, score, "peer graylisted for invalid or excessive messages; disconnecting");
            let until = now
                .checked_add(self.config.misbehaviour_cooldown)
                .unwrap_or(now);
            self.cooldown.insert(peer, until);
            self.swarm.behaviour_mut().allow.disallow_peer(peer);
            self.buckets.remove(&peer);
        }
        // Let cooled-down peers back if they are still allowed.
        let expired: Vec<PeerId> = self
            .cooldown
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.cooldown.remove(&peer);
            if self.allowed.contains(&peer) {
                self.swarm.behaviour_mut().allow.allow_peer(peer);
            }
        }
        let due = self
            .last_discovery
            .is_none_or(|t| now.duration_since(t) >= self.config.discovery_interval);
        if due {
            self.discover();
        }
    }

    fn on_report(&mut self, report: Report) {
        let acceptance = match report.verdict {
            Verdict::Accept => MessageAcceptance::Accept,
            Verdict::Reject => MessageAcceptance::Reject,
            Verdict::Ignore => MessageAcceptance::Ignore,
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&report.id, &report.propagated_by, acceptance);
    }

    /// Takes one token from `peer`'s bucket; false when it is empty.
    fn rate_ok(&mut self, peer: PeerId) -> bool {
        let now = Instant::now();
        let rate = f64::from(self.config.max_messages_per_peer_per_sec);
        let burst = f64::from(self.config.message_burst);
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn on_gossip(&mut self, propagated_by: PeerId, id: MessageId, message: gossipsub::Message) {
        let verdict = |this: &mut Self, acceptance| {
            this.swarm
                .behaviour_mut()
                .gossipsub
                .report_message_validation_result(&id, &propagated_by, acceptance);
        };
        let (Some(topic), Some(source)) = (Topic::from_hash(&message.topic), message.source) else {
            // Strict validation and the subscription filter make this unreachable.
            verdict(self, MessageAcceptance::Reject);
            return;
        };
        if !self.rate_ok(propagated_by) {
            debug!(target: TARGET, peer = %propagated_by, %topic, "per-peer message rate exceeded");
            verdict(self, MessageAcceptance::Reject);
            return;
        }
        if message.data.len() > self.config.max_message_bytes {
            debug!(target: TARGET, peer = %propagated_by, len = message.data.len(), "oversized gossip message");
            verdict(self, MessageAcceptance::Reject);
            return;
        }
        if source == self.local || !self.allowed.contains(&source) {
            // Authored outside the validator set (or our own, echoed): never delivered nor
            // forwarded. Not the relay's fault if the sets differ for a moment, so no penalty.
            debug!(target: TARGET, %source, relay = %propagated_by, "gossip from a non-allowed author ignored");
            verdict(self, MessageAcceptance::Ignore);
            return;
        }
        let inbound = Inbound {
            topic,
            source,
            propagated_by,
            data: message.data,
            validation: Validation {
                id: id.clone(),
                propagated_by,
                reports: Some(self.report_tx.clone()),
            },
        };
        if let Err(e) = self.inbound.try_send(inbound) {
            // Full or closed: the dropped Validation queues an Ignore.
            debug!(target: TARGET, %topic, error = %e, "inbound gossip dropped: application channel unavailable");
        }
    }

    fn on_served(
        &mut self,
        channel: ResponseChannel<ReadingsResponse>,
        response: Option<ReadingsResponse>,
    ) {
        self.serving = self.serving.saturating_sub(1);
        match response {
            Some(response) => {
                if self
                    .swarm
                    .behaviour_mut()
                    .readings
                    .send_response(channel, response)
                    .is_err()
                {
                    debug!(target: TARGET, "readings requester went away before the answer");
                }
            }
            // The source panicked: dropping the channel tells the requester it failed.
            None => warn!(target: TARGET, "readings source failed; request dropped"),
        }
    }

    /// Sends a readings request to an allowed peer and remembers it until its answer.
    fn request(&mut self, pending: Pending) {
        let peer = pending.peer();
        if !self.admits(&peer) {
            pending.fail(P2pError::NotAllowed(peer));
            return;
        }
        let req = pending.request();
        let id = self.swarm.behaviour_mut().readings.send_request(&peer, req);
        debug!(target: TARGET, %peer, ?req, "readings request sent");
        self.pending.insert(id, pending);
    }

    fn on_readings_request(
        &mut self,
        peer: PeerId,
        req: Request,
        channel: ResponseChannel<ReadingsResponse>,
    ) {
        let max_range = self.config.max_readings_range;
        let max_window_s = self.config.max_inventory_window.as_secs();
        let refuse = |this: &mut Self, channel, refusal| {
            let _ = this
                .swarm
                .behaviour_mut()
                .readings
                .send_response(channel, ReadingsResponse::Refused(refusal));
        };
        if !self.admits(&peer) {
            // Only reachable in the instant between an allow-list change and the close.
            return;
        }
        match &req {
            Request::Frames(r) if !r.is_within(max_range) => {
                debug!(target: TARGET, %peer, from = r.from_seq, to = r.to_seq, "readings range refused");
                refuse(self, channel, Refusal::RangeTooLarge { max: max_range });
                return;
            }
            Request::Inventory(r) if !r.is_within(max_window_s) => {
                debug!(target: TARGET, %peer, start = r.start_s, end = r.end_s, "inventory window refused");
                refuse(
                    self,
                    channel,
                    Refusal::WindowTooLong {
                        max_s: max_window_s,
                    },
                );
                return;
            }
            _ => {}
        }
        if self.serving >= self.config.max_concurrent_serves {
            refuse(self, channel, Refusal::Busy);
            return;
        }
        self.serving += 1;
        let source = Arc::clone(&self.source);
        let served = self.served_tx.clone();
        let max_bytes = self.config.max_response_bytes;
        let max_entries = self.config.max_inventory_entries;
        tokio::spawn(async move {
            let work = tokio::task::spawn_blocking(move || match req {
                Request::Frames(r) => {
                    let frames = source.frames(&r.device, r.from_seq, r.to_seq, max_bytes);
                    ReadingsResponse::Frames(clip(frames, max_range, max_bytes))
                }
                Request::Inventory(r) => {
                    let mut inv = source.inventory(r.start_s, r.end_s, r.after, max_entries);
                    if inv.entries.len() > max_entries {
                        inv.entries.truncate(max_entries);
                        inv.more = true;
                    }
                    ReadingsResponse::Inventory(inv)
                }
            });
            let response = work.await.ok();
            let _ = served.send((channel, response)).await;
        });
    }

    fn on_readings_response(&mut self, id: OutboundRequestId, response: ReadingsResponse) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        match (pending, response) {
            (p, ReadingsResponse::Refused(refusal)) => p.fail(P2pError::Refused(refusal)),
            (Pending::Frames(peer, req, reply), ReadingsResponse::Frames(frames)) => {
                let _ = reply.send(check_response(
                    peer,
                    &req,
                    frames,
                    self.config.max_response_bytes,
                ));
            }
            (Pending::Inventory(peer, req, reply), ReadingsResponse::Inventory(inv)) => {
                let _ = reply.send(check_inventory(
                    peer,
                    &req,
                    inv,
                    self.config.max_inventory_entries,
                ));
            }
            (p, _) => {
                let peer = p.peer();
                debug!(target: TARGET, %peer, "readings answer of the wrong kind");
                p.fail(P2pError::BadResponse {
                    peer,
                    reason: "answer of the wrong kind".into(),
                });
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(event)) => match event {
                gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } => self.on_gossip(propagation_source, message_id, message),
                gossipsub::Event::SlowPeer { peer_id, .. } => {
                    debug!(target: TARGET, peer = %peer_id, "slow gossip peer");
                }
                other => debug!(target: TARGET, event = ?other, "gossipsub"),
            },
            SwarmEvent::Behaviour(BehaviourEvent::Readings(event)) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_readings_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => self.on_readings_response(request_id, response),
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    if let Some(p) = self.pending.remove(&request_id) {
                        p.fail(P2pError::Request {
                            peer,
                            reason: error.to_string(),
                        });
                    }
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    debug!(target: TARGET, %peer, %error, "inbound readings request failed");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != PROTOCOL_VERSION {
                    warn!(target: TARGET, peer = %peer_id, version = %info.protocol_version, "wrong protocol version; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                for addr in info.listen_addrs.into_iter().take(MAX_IDENTIFY_ADDRS) {
                    self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Kad(kad::Event::OutboundQueryProgressed {
                result: kad::QueryResult::GetClosestPeers(result),
                ..
            })) => {
                let peers = match result {
                    Ok(ok) => ok.peers,
                    Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
                };
                for info in peers {
                    if self.admits(&info.peer_id) && !self.swarm.is_connected(&info.peer_id) {
                        let addrs = info.addrs.into_iter().take(MAX_IDENTIFY_ADDRS).collect();
                        self.dial(info.peer_id, addrs);
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                info!(target: TARGET, peer = %peer_id, addr = %endpoint.get_remote_address(), "peer connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.buckets.remove(&peer_id);
                info!(target: TARGET, peer = %peer_id, cause = ?cause, "peer disconnected");
            }
            SwarmEvent::IncomingConnectionError {
                error,
                send_back_addr,
                ..
            } => {
                debug!(target: TARGET, addr = %send_back_addr, %error, "incoming connection refused");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(target: TARGET, peer = ?peer_id, %error, "outgoing connection failed");
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(target: TARGET, %address, "listening");
            }
            _ => {}
        }
    }
}

/// Keeps at most `max_count` frames and `max_bytes` bytes (a prefix), whatever the source
/// returned.
fn clip(frames: Vec<Vec<u8>>, max_count: u64, max_bytes: usize) -> Vec<Frame> {
    let mut total = 0usize;
    let mut out = Vec::new();
    for frame in frames {
        if out.len() as u64 >= max_count {
            break;
        }
        match total.checked_add(frame.len()) {
            Some(t) if t <= max_bytes => total = t,
            _ => break,
        }
        out.push(Frame(frame));
    }
    out
}

/// Checks a response against the request and our limits.
fn check_response(
    peer: PeerId,
    req: &ReadingsRequest,
    frames: Vec<Frame>,
    max_bytes: usize,
) -> Result<Vec<Vec<u8>>> {
    let bad = |reason: String| Err(P2pError::BadResponse { peer, reason });
    let asked = req.len().unwrap_or(0);
    if frames.len() as u64 > asked {
        return bad(format!("{} frames for a range of {asked}", frames.len()));
    }
    let mut total = 0usize;
    for f in &frames {
        total = match total.checked_add(f.0.len()) {
            Some(t) if t <= max_bytes => t,
            _ => return bad(format!("more than {max_bytes} bytes of frames")),
        };
    }
    Ok(frames.into_iter().map(|f| f.0).collect())
}

/// Checks an inventory page against the request and our limits: devices strictly ascending
/// and after `after`, every entry self-consistent, at most `max_entries`.
fn check_inventory(
    peer: PeerId,
    req: &InventoryRequest,
    inv: Inventory,
    max_entries: usize,
) -> Result<Inventory> {
    let bad = |reason: String| Err(P2pError::BadResponse { peer, reason });
    if inv.entries.len() > max_entries {
        return bad(format!("{} inventory entries", inv.entries.len()));
    }
    let mut prev = req.after;
    for e in &inv.entries {
        if prev.is_some_and(|p| e.device <= p) {
            return bad("inventory devices not strictly ascending".into());
        }
        if !e.is_consistent() {
            return bad(format!(
                "inventory entry of {} readings in {}..={}",
                e.count, e.first_seq, e.last_seq
            ));
        }
        prev = Some(e.device);
    }
    Ok(inv)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_a_prefix_within_both_limits() {
        let frames = vec![vec![1; 10], vec![2; 10], vec![3; 10]];
        assert_eq!(clip(frames.clone(), 10, 25).len(), 2);
        assert_eq!(clip(frames.clone(), 1, 1000).len(), 1);
        assert_eq!(clip(frames.clone(), 10, 30).len(), 3);
        assert!(clip(vec![vec![0; 100]], 10, 99).is_empty());
    }

    #[test]
    fn responses_breaking_the_request_are_errors() {
        let peer = PeerId::random();
        let req = ReadingsRequest {
            device: [1; 32],
            from_seq: 10,
            to_seq: 11,
        };
        let two = vec![Frame(vec![0; 4]), Frame(vec![1; 4])];
        assert_eq!(check_response(peer, &req, two.clone(), 8).unwrap().len(), 2);
        assert!(matches!(
            check_response(peer, &req, two.clone(), 7),
            Err(P2pError::BadResponse { .. })
        ));
        let mut three = two;
        three.push(Frame(vec![]));
        assert!(matches!(
            check_response(peer, &req, three, 100),
            Err(P2pError::BadResponse { .. })
        ));
    }
}
