//! The provider network: `/groundtruth/provider/1`, a request-response protocol between
//! validators (auditors) and storage / GPU providers, on a swarm of its own.
//!
//! ```text
//!  provider agent ──dials──► validator's provider port (ProviderNetConfig::listen)
//!        ▲                              │
//!        └──── FetchChunk / GpuChallenge ◄┘  (the validator asks over the provider's connection)
//! ```
//!
//! * **Separate swarm, separate port.** A provider is not a validator: it never joins the
//!   validators' swarm (whose allow-list holds the validator set only), so it cannot gossip,
//!   fetch readings or reach consensus. On this swarm the validator side supports the protocol
//!   *outbound only* (it asks; it answers nothing), and the provider side *inbound only*.
//! * **Who is who.** A provider's libp2p key is its device key, so the [`PeerId`] a validator
//!   asks is `peer_id_of(device id)`, authenticated by the noise handshake: no advertisement,
//!   record or extra signature. A validator's key is its consensus key (the same [`PeerId`] as on
//!   the validators' swarm); a provider serves only the peers in its allow-list (the validator
//!   set it reads from the ledger) and drops the connection of anyone else.
//! * **Reachability.** The provider dials every validator's provider address (`dial`) and
//!   redials any that is not connected every `redial_interval`; connections stay open while
//!   idle for `idle_connection_timeout`. A provider not connected to a validator cannot be
//!   audited by it, which the validator records as not served.
//! * **Bounds.** Requests are at most 1 KiB; responses at most `max_response_bytes` (a GPU
//!   product of `max_gpu_n`² field elements, 8 bytes each: 2048 → 32 MiB); a `GpuChallenge`
//!   with `n` over `max_gpu_n` is refused by both sides; requests time out after
//!   `request_timeout`; a provider serves at most `max_concurrent_serves` at once.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use libp2p::futures::StreamExt;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    connection_limits, identify, noise, tcp, yamux, Multiaddr, PeerId, StreamProtocol, Swarm,
    SwarmBuilder,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::error::{P2pError, Result};
use crate::identity::keypair_from_secret;
use crate::wire::Frame;

const TARGET: &str = "node::p2p::provider";

/// The protocol id of the provider request-response protocol.
pub const PROVIDER_PROTOCOL: &str = "/groundtruth/provider/1";
/// The identify protocol version of the provider network (a peer announcing another one, such
/// as the validators' swarm dialled on the wrong port, is disconnected).
pub const PROVIDER_NET_VERSION: &str = "/groundtruth/provider-net/1.0.0";
/// Largest encoded request (a request is under 100 bytes).
const MAX_REQUEST_WIRE_BYTES: u64 = 1024;
/// Longest Merkle path a chunk answer may carry (the retrievability AIR's deepest tree is 44).
pub const MAX_PATH_LEN: usize = 64;
/// Bytes of one field element in a matrix encoding.
const ELEM_BYTES: u64 = 8;

/// A request a validator sends a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderRequest {
    /// A stored chunk with its Merkle path (storage providers).
    FetchChunk {
        /// Chunk index.
        index: u64,
    },
    /// Multiply the two `n×n` matrices derived from `seed` and return the product (GPU
    /// providers).
    GpuChallenge {
        /// The epoch the challenge is for.
        epoch: u64,
        /// The ledger's seed for the epoch and device.
        seed: [u8; 32],
        /// The asking validator's fresh nonce: both matrices derive from
        /// `groundtruth_proofs::freivalds::member_seed(seed, nonce)`, so the product cannot be
        /// computed before the request.
        nonce: [u8; 32],
        /// Matrix dimension.
        n: u32,
    },
}

/// Why a provider refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderRefusal {
    /// It does not offer this service (a storage provider asked for a product, or the
    /// reverse).
    Unsupported,
    /// The chunk index is past its data.
    NoSuchChunk,
    /// `n` is above its limit.
    TooLarge {
        /// Its limit.
        max_n: u32,
    },
    /// It is serving as many requests as it allows.
    Busy,
}

impl std::fmt::Display for ProviderRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unsupported => f.write_str("request not supported by this provider"),
            Self::NoSuchChunk => f.write_str("no such chunk"),
            Self::TooLarge { max_n } => write!(f, "matrix dimension above {max_n}"),
            Self::Busy => f.write_str("provider busy"),
        }
    }
}

/// The answer to a [`ProviderRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderResponse {
    /// The chunk's bytes and its sibling digests from the leaf level up.
    Chunk {
        /// Chunk bytes.
        data: Frame,
        /// Sibling digests, leaf level first.
        path: Vec<[u8; 32]>,
    },
    /// The product matrix, in the matrix encoding of `groundtruth_proofs::freivalds`.
    Product {
        /// Encoded matrix.
        matrix: Frame,
    },
    /// The request was refused.
    Refused(ProviderRefusal),
}

/// What a provider serves. Called on a blocking thread, at most
/// [`ProviderNetConfig::max_concurrent_serves`] at a time; `None` drops the request unanswered
/// (the asker sees a failure or a timeout).
pub trait ProviderService: Send + Sync + 'static {
    /// Answers one request from an allowed validator.
    fn serve(&self, peer: PeerId, request: ProviderRequest) -> Option<ProviderResponse>;
}

/// Configuration of the provider network (both sides). Reads from TOML with
/// `#[serde(default)]`, durations as `"30s"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderNetConfig {
    /// Where to listen: a validator's provider port (e.g. `/ip4/0.0.0.0/tcp/27200`); a
    /// provider normally listens nowhere (`None`).
    pub listen: Option<Multiaddr>,
    /// Addresses to dial and keep connected: the validators' provider ports (provider side).
    pub dial: Vec<Multiaddr>,
    /// Largest GPU challenge dimension asked or served.
    pub max_gpu_n: u32,
    /// Largest encoded response accepted (at least a `max_gpu_n` product).
    pub max_response_bytes: u64,
    /// Deadline of one request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often a provider redials validators it is not connected to.
    #[serde(with = "humantime_serde")]
    pub redial_interval: Duration,
    /// Idle connections are closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Incoming connections still in the handshake at once.
    pub max_pending_incoming: u32,
    /// Established incoming connections at once (a validator's bound on providers).
    pub max_established_incoming: u32,
    /// Requests a provider serves at once; more are refused as busy.
    pub max_concurrent_serves: usize,
}

impl Default for ProviderNetConfig {
    fn default() -> Self {
        Self {
            listen: None,
            dial: Vec::new(),
            max_gpu_n: 2048,
            max_response_bytes: product_bytes(2048).saturating_add(64 * 1024),
            request_timeout: Duration::from_secs(30),
            redial_interval: Duration::from_secs(5),
            idle_connection_timeout: Duration::from_secs(3600),
            max_pending_incoming: 64,
            max_established_incoming: 4096,
            max_concurrent_serves: 16,
        }
    }
}

/// Bytes of an encoded `n×n` product (8 bytes an element; the encoding's small header is in
/// the slack of [`ProviderNetConfig::max_response_bytes`]).
pub fn product_bytes(n: u32) -> u64 {
    u64::from(n)
        .saturating_mul(u64::from(n))
        .saturating_mul(ELEM_BYTES)
}

impl ProviderNetConfig {
    /// Checks the values that would otherwise fail inside libp2p or make no sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(P2pError::Config(what.to_string()));
        if self.max_gpu_n == 0 || self.max_gpu_n > 8192 {
            return bad("max_gpu_n must be in 1..=8192");
        }
        if self.max_response_bytes < product_bytes(self.max_gpu_n) {
            return bad("max_response_bytes must hold a max_gpu_n product (n² · 8 bytes)");
        }
        if self.max_response_bytes > 1 << 30 {
            return bad("max_response_bytes must be at most 1 GiB");
        }
        if self.request_timeout.is_zero() || self.redial_interval.is_zero() {
            return bad("request_timeout and redial_interval must be positive");
        }
        if self.max_concurrent_serves == 0 {
            return bad("max_concurrent_serves must be positive");
        }
        Ok(())
    }
}

enum Command {
    Request {
        peer: PeerId,
        req: ProviderRequest,
        reply: oneshot::Sender<Result<ProviderResponse>>,
    },
    Connected(oneshot::Sender<Vec<PeerId>>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to a provider-network swarm task (either side).
#[derive(Debug, Clone)]
pub struct ProviderNetHandle {
    commands: mpsc::Sender<Command>,
    local_peer_id: PeerId,
    listen_addrs: Vec<Multiaddr>,
    max_gpu_n: u32,
    request_timeout: Duration,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Request { peer, req, .. } => write!(f, "Request({peer}, {req:?})"),
            Command::Connected(_) => f.write_str("Connected"),
            Command::Shutdown(_) => f.write_str("Shutdown"),
        }
    }
}

impl ProviderNetHandle {
    /// This side's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Where it listens (with the real port when the configured one was 0); empty for a
    /// provider that only dials.
    pub fn listen_addrs(&self) -> &[Multiaddr] {
        &self.listen_addrs
    }

    /// Asks `peer` (a provider connected to this validator) and waits for its answer, at most
    /// `request_timeout`. A `GpuChallenge` above `max_gpu_n` is refused locally; an answer of
    /// the wrong kind, or a chunk path longer than [`MAX_PATH_LEN`], is
    /// [`P2pError::BadResponse`].
    pub async fn request(&self, peer: PeerId, req: ProviderRequest) -> Result<ProviderResponse> {
        if let ProviderRequest::GpuChallenge { n, .. } = req {
            if n == 0 || n > self.max_gpu_n {
                return Err(P2pError::Config(format!(
                    "GPU challenge dimension {n} outside 1..={}",
                    self.max_gpu_n
                )));
            }
        }
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Request {
                peer,
                req,
                reply: tx,
            })
            .await
            .map_err(|_| P2pError::Stopped)?;
        // The swarm's own timeout fires first; this one guards a stuck task.
        let wait = self.request_timeout.saturating_add(Duration::from_secs(5));
        let resp = tokio::time::timeout(wait, rx)
            .await
            .map_err(|_| P2pError::Timeout(self.request_timeout))?
            .map_err(|_| P2pError::Stopped)??;
        check_response(peer, &req, resp)
    }

    /// Peers connected right now.
    pub async fn connected_peers(&self) -> Result<Vec<PeerId>> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Connected(tx))
            .await
            .map_err(|_| P2pError::Stopped)?;
        rx.await.map_err(|_| P2pError::Stopped)
    }

    /// Stops the swarm task and waits until it has.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Shutdown(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn check_response(
    peer: PeerId,
    req: &ProviderRequest,
    resp: ProviderResponse,
) -> Result<ProviderResponse> {
    let bad = |reason: &str| {
        Err(P2pError::BadResponse {
            peer,
            reason: reason.to_string(),
        })
    };
    match (req, &resp) {
        (_, ProviderResponse::Refused(_)) => Ok(resp),
        (ProviderRequest::FetchChunk { .. }, ProviderResponse::Chunk { path, .. }) => {
            if path.len() > MAX_PATH_LEN {
                return bad("chunk path too long");
            }
            Ok(resp)
        }
        (ProviderRequest::GpuChallenge { .. }, ProviderResponse::Product { .. }) => Ok(resp),
        _ => bad("answer of the wrong kind"),
    }
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    rpc: request_response::cbor::Behaviour<ProviderRequest, ProviderResponse>,
}

/// Which side a swarm plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A validator: listens, asks, answers nothing.
    Auditor,
    /// A provider: dials, answers allowed peers, asks nothing.
    Provider,
}

/// Entry points of the provider network.
#[derive(Debug)]
pub struct ProviderNet;

impl ProviderNet {
    /// Starts a validator's side from its 32-byte consensus `secret`: listens on
    /// `config.listen` (required) and asks providers; it serves nothing.
    pub async fn auditor(config: ProviderNetConfig, secret: [u8; 32]) -> Result<ProviderNetHandle> {
        if config.listen.is_none() {
            return Err(P2pError::Config(
                "a validator's provider network needs a listen address".into(),
            ));
        }
        let (_tx, allowed) = watch::channel(HashSet::new());
        spawn(config, secret, Side::Auditor, allowed, None).await
    }

    /// Starts a provider's side from its 32-byte device `secret`: dials `config.dial` and keeps
    /// those connections up, and answers requests from the peers in `allowed` (the validator
    /// set) with `service`. Any other peer is disconnected.
    pub async fn provider(
        config: ProviderNetConfig,
        secret: [u8; 32],
        allowed: watch::Receiver<HashSet<PeerId>>,
        service: Arc<dyn ProviderService>,
    ) -> Result<ProviderNetHandle> {
        spawn(config, secret, Side::Provider, allowed, Some(service)).await
    }
}

fn transport_err(e: impl std::fmt::Display) -> P2pError {
    P2pError::Transport(e.to_string())
}

async fn spawn(
    config: ProviderNetConfig,
    secret: [u8; 32],
    side: Side,
    mut allowed_rx: watch::Receiver<HashSet<PeerId>>,
    service: Option<Arc<dyn ProviderService>>,
) -> Result<ProviderNetHandle> {
    config.validate()?;
    let keypair = keypair_from_secret(secret)?;
    let local = keypair.public().to_peer_id();
    let support = match side {
        Side::Auditor => ProtocolSupport::Outbound,
        Side::Provider => ProtocolSupport::Inbound,
    };
    let rpc = request_response::cbor::Behaviour::with_codec(
        request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(MAX_REQUEST_WIRE_BYTES)
            .set_response_size_maximum(config.max_response_bytes),
        [(StreamProtocol::new(PROVIDER_PROTOCOL), support)],
        request_response::Config::default()
            .with_request_timeout(config.request_timeout)
            .with_max_concurrent_streams(config.max_concurrent_serves.max(16)),
    );
    let identify = identify::Behaviour::new(
        identify::Config::new(PROVIDER_NET_VERSION.to_string(), keypair.public())
            .with_agent_version(format!(
                "groundtruth-provider-net/{}",
                env!("CARGO_PKG_VERSION")
            )),
    );
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some(config.max_pending_incoming))
            .with_max_established_incoming(Some(config.max_established_incoming))
            .with_max_established_per_peer(Some(2)),
    );
    let behaviour = Behaviour {
        limits,
        identify,
        rpc,
    };
    let idle = config.idle_connection_timeout;
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
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
        .build();

    let mut listen_addrs = Vec::new();
    if let Some(addr) = &config.listen {
        swarm
            .listen_on(addr.clone())
            .map_err(|e| P2pError::Listen {
                addr: addr.to_string(),
                reason: e.to_string(),
            })?;
        listen_addrs = wait_for_listener(&mut swarm, addr).await?;
        info!(target: TARGET, peer = %local, addrs = ?listen_addrs, "provider network listening");
    }

    let (cmd_tx, cmd_rx) = mpsc::channel(256);
    let (served_tx, served_rx) = mpsc::channel(config.max_concurrent_serves);
    let allowed = allowed_rx.borrow_and_update().clone();
    let handle = ProviderNetHandle {
        commands: cmd_tx,
        local_peer_id: local,
        listen_addrs,
        max_gpu_n: config.max_gpu_n,
        request_timeout: config.request_timeout,
    };
    let mut event_loop = EventLoop {
        swarm,
        side,
        config,
        allowed,
        allowed_rx,
        allowed_open: true,
        commands: cmd_rx,
        service,
        served_tx,
        served: served_rx,
        serving: 0,
        pending: HashMap::new(),
        dialed: HashMap::new(),
    };
    event_loop.redial();
    tokio::spawn(event_loop.run());
    Ok(handle)
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

type Served = (ResponseChannel<ProviderResponse>, Option<ProviderResponse>);

struct EventLoop {
    swarm: Swarm<Behaviour>,
    side: Side,
    config: ProviderNetConfig,
    allowed: HashSet<PeerId>,
    allowed_rx: watch::Receiver<HashSet<PeerId>>,
    allowed_open: bool,
    commands: mpsc::Receiver<Command>,
    service: Option<Arc<dyn ProviderService>>,
    served_tx: mpsc::Sender<Served>,
    served: mpsc::Receiver<Served>,
    serving: usize,
    pending: HashMap<OutboundRequestId, oneshot::Sender<Result<ProviderResponse>>>,
    /// Who answered at each dialled address (without its `/p2p/` suffix).
    dialed: HashMap<Multiaddr, PeerId>,
}

/// `addr` without a trailing `/p2p/<peer id>`.
fn without_peer(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

impl EventLoop {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.config.redial_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_event(event),
                command = self.commands.recv() => match command {
                    None => break None,
                    Some(Command::Shutdown(reply)) => break Some(reply),
                    Some(c) => self.on_command(c),
                },
                Some((channel, response)) = self.served.recv() => {
                    self.serving = self.serving.saturating_sub(1);
                    match response {
                        Some(r) => {
                            if self.swarm.behaviour_mut().rpc.send_response(channel, r).is_err() {
                                debug!(target: TARGET, "asker went away before the answer");
                            }
                        }
                        None => debug!(target: TARGET, "request dropped unanswered"),
                    }
                }
                changed = self.allowed_rx.changed(), if self.allowed_open => match changed {
                    Ok(()) => {
                        self.allowed = self.allowed_rx.borrow_and_update().clone();
                        self.drop_unallowed();
                    }
                    Err(_) => self.allowed_open = false,
                },
                _ = tick.tick() => self.redial(),
            }
        };
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(P2pError::Stopped));
        }
        drop(self.swarm);
        if let Some(reply) = shutdown {
            let _ = reply.send(());
        }
    }

    /// A provider keeps only validators connected.
    fn drop_unallowed(&mut self) {
        if self.side != Side::Provider {
            return;
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for p in peers {
            if !self.allowed.contains(&p) {
                debug!(target: TARGET, peer = %p, "not a validator; disconnecting");
                let _ = self.swarm.disconnect_peer_id(p);
            }
        }
    }

    /// Dials every configured address whose peer is not connected (the peer named by a
    /// `/p2p/…` suffix, or the one last reached at that address).
    fn redial(&mut self) {
        let connected: HashSet<PeerId> = self.swarm.connected_peers().copied().collect();
        for addr in self.config.dial.clone() {
            let peer = addr
                .iter()
                .last()
                .and_then(|p| match p {
                    libp2p::multiaddr::Protocol::P2p(peer) => Some(peer),
                    _ => None,
                })
                .or_else(|| self.dialed.get(&without_peer(&addr)).copied());
            let needed = peer.is_none_or(|p| !connected.contains(&p));
            if needed {
                if let Err(e) = self.swarm.dial(addr.clone()) {
                    debug!(target: TARGET, %addr, error = %e, "dial failed");
                }
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { peer, req, reply } => {
                if self.side != Side::Auditor {
                    let _ = reply.send(Err(P2pError::Config(
                        "a provider does not send requests".into(),
                    )));
                    return;
                }
                if !self.swarm.is_connected(&peer) {
                    let _ = reply.send(Err(P2pError::Request {
                        peer,
                        reason: "provider not connected".into(),
                    }));
                    return;
                }
                let id = self.swarm.behaviour_mut().rpc.send_request(&peer, req);
                self.pending.insert(id, reply);
            }
            Command::Connected(reply) => {
                let _ = reply.send(self.swarm.connected_peers().copied().collect());
            }
            Command::Shutdown(_) => {}
        }
    }

    fn on_request(
        &mut self,
        peer: PeerId,
        req: ProviderRequest,
        channel: ResponseChannel<ProviderResponse>,
    ) {
        let refuse = |this: &mut Self, channel, r| {
            let _ = this
                .swarm
                .behaviour_mut()
                .rpc
                .send_response(channel, ProviderResponse::Refused(r));
        };
        let Some(service) = self.service.clone() else {
            return;
        };
        if !self.allowed.contains(&peer) {
            debug!(target: TARGET, %peer, "request from a peer outside the validator set; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
            return;
        }
        if let ProviderRequest::GpuChallenge { n, .. } = req {
            if n == 0 || n > self.config.max_gpu_n {
                refuse(
                    self,
                    channel,
                    ProviderRefusal::TooLarge {
                        max_n: self.config.max_gpu_n,
                    },
                );
                return;
            }
        }
        if self.serving >= self.config.max_concurrent_serves {
            refuse(self, channel, ProviderRefusal::Busy);
            return;
        }
        self.serving += 1;
        let served = self.served_tx.clone();
        tokio::spawn(async move {
            let answer = tokio::task::spawn_blocking(move || service.serve(peer, req))
                .await
                .ok()
                .flatten();
            let _ = served.send((channel, answer)).await;
        });
    }

    fn on_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::Behaviour(BehaviourEvent::Rpc(event)) => match event {
                request_response::Event::Message { peer, message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => self.on_request(peer, request, channel),
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        if let Some(reply) = self.pending.remove(&request_id) {
                            let _ = reply.send(Ok(response));
                        }
                    }
                },
                request_response::Event::OutboundFailure {
                    peer,
                    request_id,
                    error,
                    ..
                } => {
                    if let Some(reply) = self.pending.remove(&request_id) {
                        let _ = reply.send(Err(P2pError::Request {
                            peer,
                            reason: error.to_string(),
                        }));
                    }
                }
                request_response::Event::InboundFailure { peer, error, .. } => {
                    debug!(target: TARGET, %peer, %error, "inbound provider request failed");
                }
                request_response::Event::ResponseSent { .. } => {}
            },
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) if info.protocol_version != PROVIDER_NET_VERSION => {
                warn!(target: TARGET, peer = %peer_id, version = %info.protocol_version, "wrong protocol version; disconnecting");
                let _ = self.swarm.disconnect_peer_id(peer_id);
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = &endpoint {
                    self.dialed.insert(without_peer(address), peer_id);
                }
                if self.side == Side::Provider && !self.allowed.contains(&peer_id) {
                    debug!(target: TARGET, peer = %peer_id, "connected to a peer outside the validator set; disconnecting");
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                }
                info!(target: TARGET, peer = %peer_id, addr = %endpoint.get_remote_address(), "provider network peer connected");
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                debug!(target: TARGET, peer = %peer_id, "provider network peer disconnected");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::identity::peer_id_of;

    struct Echo;
    impl ProviderService for Echo {
        fn serve(&self, _peer: PeerId, request: ProviderRequest) -> Option<ProviderResponse> {
            match request {
                ProviderRequest::FetchChunk { index } => Some(ProviderResponse::Chunk {
                    data: Frame(index.to_le_bytes().to_vec()),
                    path: vec![[7; 32]; 3],
                }),
                ProviderRequest::GpuChallenge { n, .. } => {
                    if n == 3 {
                        // Never answers.
                        return None;
                    }
                    Some(ProviderResponse::Product {
                        matrix: Frame(vec![1; usize::try_from(product_bytes(n)).unwrap()]),
                    })
                }
            }
        }
    }

    fn public(secret: [u8; 32]) -> [u8; 32] {
        keypair_from_secret(secret)
            .unwrap()
            .public()
            .try_into_ed25519()
            .unwrap()
            .to_bytes()
    }

    async fn wait_connected(h: &ProviderNetHandle, peer: PeerId) {
        for _ in 0..200 {
            if h.connected_peers().await.unwrap().contains(&peer) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{peer} never connected");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_provider_dials_a_validator_which_asks_it_and_only_validators_are_served() {
        let validator_secret = [41u8; 32];
        let provider_secret = [99u8; 32];
        let auditor = ProviderNet::auditor(
            ProviderNetConfig {
                listen: Some("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
                max_gpu_n: 64,
                max_response_bytes: product_bytes(64) + 1024,
                request_timeout: Duration::from_millis(800),
                ..ProviderNetConfig::default()
            },
            validator_secret,
        )
        .await
        .unwrap();
        let addr = auditor.listen_addrs()[0].clone();
        let validator_peer = peer_id_of(public(validator_secret)).unwrap();
        let (_allow_tx, allow_rx) = watch::channel(HashSet::from([validator_peer]));
        let provider = ProviderNet::provider(
            ProviderNetConfig {
                dial: vec![addr.clone()],
                max_gpu_n: 64,
                max_response_bytes: product_bytes(64) + 1024,
                redial_interval: Duration::from_millis(100),
                ..ProviderNetConfig::default()
            },
            provider_secret,
            allow_rx,
            Arc::new(Echo),
        )
        .await
        .unwrap();
        // The validator knows the provider's peer id from its device key alone.
        let provider_peer = peer_id_of(public(provider_secret)).unwrap();
        assert_eq!(provider.local_peer_id(), provider_peer);
        wait_connected(&auditor, provider_peer).await;

        let r = auditor
            .request(provider_peer, ProviderRequest::FetchChunk { index: 5 })
            .await
            .unwrap();
        assert_eq!(
            r,
            ProviderResponse::Chunk {
                data: Frame(5u64.to_le_bytes().to_vec()),
                path: vec![[7; 32]; 3]
            }
        );
        let r = auditor
            .request(
                provider_peer,
                ProviderRequest::GpuChallenge {
                    epoch: 1,
                    seed: [1; 32],
                    nonce: [2; 32],
                    n: 64,
                },
            )
            .await
            .unwrap();
        assert!(matches!(r, ProviderResponse::Product { matrix } if matrix.0.len() == 64 * 64 * 8));
        // Above the limit: refused before sending.
        assert!(auditor
            .request(
                provider_peer,
                ProviderRequest::GpuChallenge {
                    epoch: 1,
                    seed: [1; 32],
                    nonce: [2; 32],
                    n: 65,
                },
            )
            .await
            .is_err());
        // Unanswered: a failure within the timeout.
        assert!(auditor
            .request(
                provider_peer,
                ProviderRequest::GpuChallenge {
                    epoch: 1,
                    seed: [1; 32],
                    nonce: [2; 32],
                    n: 3,
                },
            )
            .await
            .is_err());
        // The provider cannot ask anything.
        assert!(provider
            .request(validator_peer, ProviderRequest::FetchChunk { index: 0 })
            .await
            .is_err());

        // A "validator" outside the provider's allow-list is disconnected and never served.
        let stranger = ProviderNet::auditor(
            ProviderNetConfig {
                listen: Some("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
                request_timeout: Duration::from_millis(800),
                ..ProviderNetConfig::default()
            },
            [77; 32],
        )
        .await
        .unwrap();
        let (_tx2, allow_rx2) = watch::channel(HashSet::from([validator_peer]));
        let _provider2 = ProviderNet::provider(
            ProviderNetConfig {
                dial: vec![stranger.listen_addrs()[0].clone()],
                redial_interval: Duration::from_millis(100),
                ..ProviderNetConfig::default()
            },
            [98; 32],
            allow_rx2,
            Arc::new(Echo),
        )
        .await
        .unwrap();
        let p2 = peer_id_of(public([98; 32])).unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(stranger
            .request(p2, ProviderRequest::FetchChunk { index: 0 })
            .await
            .is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_provider_reaches_every_validator_even_one_that_starts_late() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let late_addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let early = ProviderNet::auditor(
            ProviderNetConfig {
                listen: Some("/ip4/127.0.0.1/tcp/0".parse().unwrap()),
                ..ProviderNetConfig::default()
            },
            [41; 32],
        )
        .await
        .unwrap();
        let peers = HashSet::from([
            peer_id_of(public([41; 32])).unwrap(),
            peer_id_of(public([42; 32])).unwrap(),
        ]);
        let (_tx, rx) = watch::channel(peers);
        let provider = ProviderNet::provider(
            ProviderNetConfig {
                dial: vec![early.listen_addrs()[0].clone(), late_addr.clone()],
                redial_interval: Duration::from_millis(100),
                ..ProviderNetConfig::default()
            },
            [99; 32],
            rx,
            Arc::new(Echo),
        )
        .await
        .unwrap();
        let me = provider.local_peer_id();
        wait_connected(&early, me).await;
        // The second validator comes up after the provider's first dials failed.
        let late = ProviderNet::auditor(
            ProviderNetConfig {
                listen: Some(late_addr),
                ..ProviderNetConfig::default()
            },
            [42; 32],
        )
        .await
        .unwrap();
        wait_connected(&late, me).await;
    }
}
