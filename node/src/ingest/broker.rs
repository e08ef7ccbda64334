//! The embedded MQTT broker (rumqttd), for a node that devices connect to directly, with
//! authentication and topic authorisation (`../shared/research/mqtt-auth.md`).
//!
//! - **Who** connects is decided by rumqttd's auth hook: a device logs in with client id =
//!   username = its device id in hex and a login token signed by its key
//!   ([`groundtruth_device_sdk::verify_login`]), and must be registered; a validator logs in as
//!   `validator:<name>` with a secret whose BLAKE3 hash is in the broker's credentials, and its
//!   client id must start with `validator:<name>:` (so nobody can take over its session by
//!   guessing the id). A fleet gateway (a concentrator publishing for many meters, like the
//!   simulator) logs in the same way as `gateway:<name>`; it is provisioned by the operator.
//! - **What** each may do is enforced by [`Acl`], a wrapper around rumqttd's v4 protocol that
//!   sees every packet before the router: a device may publish only to its own readings topic
//!   and subscribe only to its own resend topic; a gateway may publish readings for any device
//!   (each still carries its device's signature) and subscribe to resend requests; only
//!   validators subscribe to readings and publish resend requests; retained messages and wills
//!   are refused everywhere. A refused
//!   packet closes the connection (MQTT 3.1.1 has no per-packet refusal) and is counted.
//! - **How big** a packet may be: the broker's packet limit is [`packet_limit`], a little above
//!   `max_payload_bytes`, so a publish whose payload is only somewhat over the node's limit
//!   reaches ingest and is refused there as `oversize` (counted and acknowledged like any other
//!   rejection). A larger packet is refused by rumqttd as soon as its fixed header announces
//!   the size, before its body is buffered, and the connection is closed; [`SizeGuard`] sees
//!   that refusal (rumqttd's alerts and meters do not report it) and counts it in
//!   [`OversizeMeter`], logging at most one line per [`OVERSIZE_LOG_EVERY`].

use groundtruth_device_sdk::{topics, verify_login, DeviceId};
use prometheus_client::metrics::counter::Counter;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error as ProtocolError, Packet, Protocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::registry::SharedRegistry;

/// Username prefix of validators.
pub const VALIDATOR_USER_PREFIX: &str = "validator:";
/// Username prefix of fleet gateways.
pub const GATEWAY_USER_PREFIX: &str = "gateway:";

/// Room the embedded broker's packet limit leaves above `max_payload_bytes`: the readings
/// topic (81 bytes), its length prefix and the packet id take 85 of it, so a payload up to
/// 171 bytes over the node's limit still reaches ingest, which refuses and counts it as
/// `oversize`. It stays below the headroom the node's own MQTT connections allow on incoming
/// packets ([`super::mqtt::CLIENT_PACKET_HEADROOM`]), with room for the 2-byte packet id a
/// delivery may add, so nothing the broker accepts can be too large for the node's connection
/// (which would fail, reconnect and be redelivered the same message forever).
pub const PACKET_HEADROOM: usize = 256;
const _: () = assert!(PACKET_HEADROOM + 2 < super::mqtt::CLIENT_PACKET_HEADROOM);

/// The embedded broker's limit on a packet's remaining length (everything after the fixed
/// header: topic, packet id and payload) for a node limit of `max_payload_bytes`.
pub const fn packet_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_add(PACKET_HEADROOM)
}

/// At most one log line per this interval about packets over the broker's size limit.
pub const OVERSIZE_LOG_EVERY: Duration = Duration::from_secs(10);

/// Settings of the embedded broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// Largest payload a client may publish, bytes. The broker itself refuses only packets
    /// over [`packet_limit`] of this; ingest refuses payloads in between as `oversize`.
    pub max_payload_bytes: usize,
    /// QoS 1 messages a publishing client may have unacknowledged.
    pub max_inflight: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Authentication and authorisation; `None` runs an open broker (tests, benchmarks).
    pub auth: Option<BrokerAuth>,
    /// Counts packets refused for their size (open or authenticated broker alike).
    pub oversized: OversizeMeter,
}

/// Packets the broker refused for being over its size limit: counted (each closed its
/// connection, so this is also the number of connections closed for it) and logged at most
/// once per [`OVERSIZE_LOG_EVERY`], each line saying how many refusals it covers.
#[derive(Clone, Debug, Default)]
pub struct OversizeMeter {
    refused: Counter,
    log: Arc<Mutex<LogWindow>>,
}

impl OversizeMeter {
    /// A meter counting into `refused` (registered by the caller).
    pub fn new(refused: Counter) -> Self {
        Self {
            refused,
            log: Arc::default(),
        }
    }

    /// Packets refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Counts one refused packet of `packet_bytes` (remaining length) over `limit`.
    fn record(&self, packet_bytes: usize, limit: usize) {
        self.refused.inc();
        tracing::debug!(target: "node::broker", packet_bytes, limit, "MQTT packet over the size limit; connection closed");
        let covered = self
            .log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .note(Instant::now(), OVERSIZE_LOG_EVERY);
        if let Some(refusals) = covered {
            tracing::warn!(target: "node::broker", packet_bytes, limit, refusals, total = self.refused.get(), "MQTT packets over the broker's size limit refused, each closing its connection (refusals: since the previous line)");
        }
    }
}

/// When to write a rate-limited log line.
#[derive(Debug, Default)]
struct LogWindow {
    last: Option<Instant>,
    unlogged: u64,
}

impl LogWindow {
    /// Notes one incident at `now`. Returns how many incidents a line written now covers
    /// (this one and those since the previous line), or `None` within `every` of that line.
    fn note(&mut self, now: Instant, every: Duration) -> Option<u64> {
        self.unlogged = self.unlogged.saturating_add(1);
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < every)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A protocol wrapper that counts packets refused for their size: rumqttd's v4 reader returns
/// `PayloadSizeLimitExceeded` as soon as a fixed header announces more than the limit (before
/// the body is read), and the connection is then closed.
#[derive(Clone)]
pub struct SizeGuard<P> {
    inner: P,
    meter: OversizeMeter,
}

impl<P> SizeGuard<P> {
    /// Wraps `inner` (rumqttd's `V4`, or [`Acl`]).
    pub fn new(inner: P, meter: OversizeMeter) -> Self {
        Self { inner, meter }
    }
}

impl<P: Protocol> Protocol for SizeGuard<P> {
    fn read_mut(
        &mut self,
        stream: &mut bytes::BytesMut,
        max_size: usize,
    ) -> Result<Packet, ProtocolError> {
        let read = self.inner.read_mut(stream, max_size);
        if let Err(ProtocolError::PayloadSizeLimitExceeded(packet_bytes)) = &read {
            self.meter.record(*packet_bytes, max_size);
        }
        read
    }

    fn write(&self, packet: Packet, write: &mut bytes::BytesMut) -> Result<usize, ProtocolError> {
        self.inner.write(packet, write)
    }
}

/// Who may log in to the embedded broker.
#[derive(Clone)]
pub struct BrokerAuth {
    /// Registered devices (their id is their public key), swapped as the ledger changes.
    pub registry: SharedRegistry,
    /// Username (`validator:<name>` or `gateway:<name>`) → BLAKE3 hash of its secret.
    pub secrets: Arc<HashMap<String, [u8; 32]>>,
    /// Largest accepted clock difference for device login tokens, seconds.
    pub max_skew_s: u64,
    /// Logins refused.
    pub refused_logins: Counter,
    /// Packets refused by the ACL (each closes its connection).
    pub refused_packets: Counter,
}

impl std::fmt::Debug for BrokerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerAuth")
            .field("secrets", &self.secrets.len())
            .field("max_skew_s", &self.max_skew_s)
            .finish_non_exhaustive()
    }
}

/// Why broker credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("broker credentials {path}: {source}")]
    Read {
        /// File.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A line is not `<username> <64 hex>`.
    #[error("broker credentials {path} line {line}: expected `validator:<name>|gateway:<name> <blake3 hex of its secret>`")]
    Line {
        /// File.
        path: String,
        /// 1-based line number.
        line: usize,
    },
}

/// The hash the broker keeps of a validator secret.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// Reads broker credentials: one `<username> <blake3 hex of secret>` per line, usernames
/// `validator:<name>` or `gateway:<name>`; `#` comments.
pub fn load_credentials(path: &Path) -> Result<HashMap<String, [u8; 32]>, CredentialsError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = || CredentialsError::Line {
            path: path.display().to_string(),
            line: i + 1,
        };
        let (name, hash) = line.split_once(char::is_whitespace).ok_or_else(bad)?;
        if !matches!(
            claimed_role(name),
            Some(Role::Validator(_) | Role::Gateway(_))
        ) {
            return Err(bad());
        }
        let mut h = [0u8; 32];
        hex::decode_to_slice(hash.trim(), &mut h).map_err(|_| bad())?;
        out.insert(name.to_string(), h);
    }
    Ok(out)
}

/// What a connection has logged in as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A device, by id.
    Device(DeviceId),
    /// A validator, by name.
    Validator(String),
    /// A fleet gateway, by name.
    Gateway(String),
}

/// Why a login is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginRefused {
    /// No username.
    #[error("no username")]
    NoUsername,
    /// The username is neither a device id nor `validator:<name>`.
    #[error("unknown user")]
    UnknownUser,
    /// The device is not registered.
    #[error("device not registered")]
    UnregisteredDevice,
    /// The device's login token does not verify.
    #[error("device login: {0}")]
    Device(groundtruth_device_sdk::LoginError),
    /// Wrong validator or gateway secret, or a client id not bound to the username.
    #[error("validator or gateway login refused")]
    Secret,
}

/// The role a username claims (not yet authenticated).
pub fn claimed_role(username: &str) -> Option<Role> {
    if let Some(name) = username.strip_prefix(VALIDATOR_USER_PREFIX) {
        return (!name.is_empty()).then(|| Role::Validator(name.to_string()));
    }
    if let Some(name) = username.strip_prefix(GATEWAY_USER_PREFIX) {
        return (!name.is_empty()).then(|| Role::Gateway(name.to_string()));
    }
    let mut id = [0u8; 32];
    if username.len() == 64
        && username
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        hex::decode_to_slice(username, &mut id).ok()?;
        return Some(Role::Device(DeviceId(id)));
    }
    None
}

impl BrokerAuth {
    /// Authenticates one CONNECT. Pure but for the registry snapshot.
    pub fn check_login(
        &self,
        client_id: &str,
        username: &str,
        password: &str,
        now_unix: u64,
    ) -> Result<Role, LoginRefused> {
        if username.is_empty() {
            return Err(LoginRefused::NoUsername);
        }
        match claimed_role(username).ok_or(LoginRefused::UnknownUser)? {
            Role::Device(id) => {
                if self.registry.load().get(&id).is_none() {
                    return Err(LoginRefused::UnregisteredDevice);
                }
                verify_login(
                    &id,
                    client_id,
                    username,
                    password,
                    now_unix,
                    self.max_skew_s,
                )
                .map_err(LoginRefused::Device)?;
                Ok(Role::Device(id))
            }
            role @ (Role::Validator(_) | Role::Gateway(_)) => {
                let bound = client_id
                    .strip_prefix(username)
                    .is_some_and(|rest| rest.starts_with(':') && rest.len() > 1);
                let known = self.secrets.get(username);
                // Constant-time enough: compare fixed-size hashes of the secret.
                let ok = known.is_some_and(|h| {
                    let got = secret_hash(password);
                    h.iter()
                        .zip(got.iter())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
                });
                if bound && ok {
                    Ok(role)
                } else {
                    Err(LoginRefused::Secret)
                }
            }
        }
    }
}

/// Whether `role` may publish to `topic`.
pub fn may_publish(role: &Role, topic: &str) -> bool {
    match role {
        Role::Device(id) => topics::device_of_readings_topic(topic)
            .is_some_and(|d| d == *id && topic == topics::readings_topic(id)),
        Role::Gateway(_) => topics::device_of_readings_topic(topic)
            .is_some_and(|d| topic == topics::readings_topic(&d)),
        Role::Validator(_) => topics::device_of_resend_topic(topic).is_some(),
    }
}

/// Whether `role` may subscribe to `filter`.
pub fn may_subscribe(role: &Role, filter: &str) -> bool {
    match role {
        Role::Device(id) => filter == topics::resend_topic(id),
        Role::Gateway(_) => {
            filter == topics::RESEND_FILTER || topics::device_of_resend_topic(filter).is_some()
        }
        Role::Validator(_) => {
            filter == "gt/v1/readings/#"
                || (0..topics::READINGS_PARTITIONS)
                    .any(|p| filter == topics::readings_partition_filter(p))
                || topics::device_of_readings_topic(filter).is_some()
        }
    }
}

/// rumqttd's v4 protocol with our authorisation in front of the router. Cloned per
/// connection (it holds that connection's role).
#[derive(Clone)]
pub struct Acl {
    inner: V4,
    role: Option<Role>,
    refused: Counter,
}

impl Acl {
    /// A wrapper for a new connection.
    pub fn new(refused: Counter) -> Self {
        Self {
            inner: V4,
            role: None,
            refused,
        }
    }

    fn refuse(&self, what: &str) -> ProtocolError {
        self.refused.inc();
        tracing::debug!(target: "node::broker", role = ?self.role, what, "packet refused by the ACL; closing the connection");
        ProtocolError::InvalidProtocol
    }
}

impl Protocol for Acl {
    fn read_mut(
        &mut self,
        stream: &mut bytes::BytesMut,
        max_size: usize,
    ) -> Result<Packet, ProtocolError> {
        let packet = self.inner.read_mut(stream, max_size)?;
        match &packet {
            Packet::Connect(_, _, will, _, login) => {
                if self.role.is_some() {
                    return Err(self.refuse("second CONNECT"));
                }
                if will.is_some() {
                    return Err(self.refuse("will message"));
                }
                // The auth hook authenticates this same username before the router sees
                // anything; a claim it refuses never gets further than this packet.
                let role = login
                    .as_ref()
                    .and_then(|l| claimed_role(&l.username))
                    .ok_or_else(|| self.refuse("no valid username"))?;
                self.role = Some(role);
            }
            Packet::Publish(p, _) => {
                let Some(role) = &self.role else {
                    return Err(self.refuse("publish before CONNECT"));
                };
                let topic = std::str::from_utf8(&p.topic).unwrap_or("");
                if p.retain {
                    return Err(self.refuse("retained publish"));
                }
                if !may_publish(role, topic) {
                    return Err(self.refuse("publish topic"));
                }
            }
            Packet::Subscribe(s, _) => {
                let Some(role) = &self.role else {
                    return Err(self.refuse("subscribe before CONNECT"));
                };
                if s.filters.iter().any(|f| !may_subscribe(role, &f.path)) {
                    return Err(self.refuse("subscribe filter"));
                }
            }
            _ => {}
        }
        Ok(packet)
    }

    fn write(&self, packet: Packet, write: &mut bytes::BytesMut) -> Result<usize, ProtocolError> {
        self.inner.write(packet, write)
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Starts rumqttd on its own threads; returns once it is listening.
pub fn start(config: &BrokerConfig) -> std::io::Result<()> {
    let mut connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: packet_limit(config.max_payload_bytes),
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let refused_packets = match &config.auth {
        Some(auth) => {
            let refused = auth.refused_packets.clone();
            let auth = auth.clone();
            connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
                let auth = auth.clone();
                async move {
                    match auth.check_login(&client_id, &user, &pass, now_unix()) {
                        Ok(_) => true,
                        Err(e) => {
                            auth.refused_logins.inc();
                            tracing::debug!(target: "node::broker", %client_id, reason = %e, "login refused");
                            false
                        }
                    }
                }
            });
            refused
        }
        None => Counter::default(),
    };
    let server = rumqttd::ServerSettings {
        name: "v4".into(),
        listen: config.listen,
        tls: None,
        next_connection_delay_ms: 0,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: config.max_connections,
        max_outgoing_packet_count: 200,
        max_segment_size: 16 << 20,
        max_segment_count: 8,
        custom_segment: None,
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let router_tx = rumqttd::Router::new(0, router).spawn();
    let authorise = config.auth.is_some();
    let oversized = config.oversized.clone();
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(target: "node::broker", error = %e, "embedded broker runtime failed");
                    return;
                }
            };
            let result = runtime.block_on(async move {
                if authorise {
                    let protocol = SizeGuard::new(Acl::new(refused_packets), oversized);
                    rumqttd::Server::new(server, router_tx, protocol)
                        .start(rumqttd::LinkType::Remote)
                        .await
                } else {
                    rumqttd::Server::new(server, router_tx, SizeGuard::new(V4, oversized))
                        .start(rumqttd::LinkType::Remote)
                        .await
                }
            });
            if let Err(e) = result {
                tracing::error!(target: "node::broker", error = %e, "embedded broker stopped");
            }
        })?;
    // Wait until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(config.listen).is_ok() {
            return Ok(());
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("broker did not listen on {}", config.listen),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::registry::{DeviceRecord, Registry};
    use groundtruth_device_sdk::{login_token, DeviceKey, ReadingKind, DEFAULT_LOGIN_SKEW_SECS};

    fn auth_with(key: &DeviceKey) -> BrokerAuth {
        let registry = Registry::from_records([(
            key.device_id(),
            DeviceRecord {
                kind: ReadingKind::Energy,
                capacity: 1000,
            },
        )]);
        BrokerAuth {
            registry: SharedRegistry::new(registry),
            secrets: Arc::new(HashMap::from([
                ("validator:v0".to_string(), secret_hash("s3cret")),
                ("gateway:sim".to_string(), secret_hash("g4te")),
            ])),
            max_skew_s: DEFAULT_LOGIN_SKEW_SECS,
            refused_logins: Counter::default(),
            refused_packets: Counter::default(),
        }
    }

    #[test]
    fn logins() {
        let key = DeviceKey::from_seed(&[1; 32]);
        let other = DeviceKey::from_seed(&[2; 32]);
        let auth = auth_with(&key);
        let id = key.device_id().to_string();
        let now = 1_800_000_000;
        let token = login_token(&key, &id, now);
        assert_eq!(
            auth.check_login(&id, &id, &token, now),
            Ok(Role::Device(key.device_id()))
        );
        // Another device's token under this id, and an unregistered device.
        let forged = login_token(&other, &id, now);
        assert!(auth.check_login(&id, &id, &forged, now).is_err());
        let oid = other.device_id().to_string();
        assert_eq!(
            auth.check_login(&oid, &oid, &login_token(&other, &oid, now), now),
            Err(LoginRefused::UnregisteredDevice)
        );
        // Validators: secret and client-id binding.
        assert!(auth
            .check_login("validator:v0:abc:0", "validator:v0", "s3cret", now)
            .is_ok());
        assert!(auth
            .check_login("validator:v0:abc:0", "validator:v0", "guess", now)
            .is_err());
        assert!(
            auth.check_login(&id, "validator:v0", "s3cret", now)
                .is_err(),
            "a validator cannot take a device's client id"
        );
        assert!(auth.check_login("x", "", "", now).is_err());
        assert!(auth
            .check_login("gateway:sim:1", "gateway:sim", "g4te", now)
            .is_ok());
        assert!(
            auth.check_login("gateway:sim:1", "gateway:sim", "s3cret", now)
                .is_err(),
            "one user's secret does not open another"
        );
    }

    /// A v4 PUBLISH packet (QoS 0) of `payload_len` bytes on `topic`, as sent on the wire.
    fn publish_bytes(topic: &str, payload_len: usize) -> bytes::BytesMut {
        let publish =
            rumqttd::protocol::Publish::new(topic.to_string(), "x".repeat(payload_len), false);
        let mut out = bytes::BytesMut::new();
        let written = V4.write(Packet::Publish(publish, None), &mut out);
        assert!(written.is_ok(), "{written:?}");
        out
    }

    #[test]
    fn size_guard_counts_each_packet_refused_for_its_size_and_nothing_else() {
        let meter = OversizeMeter::default();
        let mut guard = SizeGuard::new(V4, meter.clone());
        let limit = packet_limit(1024);
        let topic = topics::readings_topic(&DeviceKey::from_seed(&[1; 32]).device_id());
        // Remaining length = 2 + topic + payload (QoS 0: no packet id).
        let largest = limit - 2 - topic.len();
        let mut at_limit = publish_bytes(&topic, largest);
        assert!(matches!(
            guard.read_mut(&mut at_limit, limit),
            Ok(Packet::Publish(..))
        ));
        // A packet whose body has not arrived yet is not a refusal.
        let mut partial = publish_bytes(&topic, largest);
        partial.truncate(20);
        assert!(matches!(
            guard.read_mut(&mut partial, limit),
            Err(ProtocolError::InsufficientBytes(_))
        ));
        assert_eq!(meter.refused(), 0);
        // One byte over: refused from its fixed header alone, before the body is buffered.
        let mut over = publish_bytes(&topic, largest + 1);
        over.truncate(5);
        assert!(matches!(
            guard.read_mut(&mut over, limit),
            Err(ProtocolError::PayloadSizeLimitExceeded(n)) if n == limit + 1
        ));
        assert_eq!(meter.refused(), 1);
        // Other protocol errors are not counted as oversized.
        let mut junk = bytes::BytesMut::from(&[0xf0u8, 0x00][..]);
        assert!(guard.read_mut(&mut junk, limit).is_err());
        assert_eq!(meter.refused(), 1);
        // Through the ACL too (the authenticated broker's wrapper).
        let mut acl = SizeGuard::new(Acl::new(Counter::default()), meter.clone());
        let mut big = publish_bytes(&topic, 4096);
        assert!(acl.read_mut(&mut big, limit).is_err());
        assert_eq!(meter.refused(), 2);
    }

    #[test]
    fn oversize_log_lines_are_rate_limited_and_cover_every_refusal() {
        let mut window = LogWindow::default();
        let t0 = Instant::now();
        let every = Duration::from_secs(10);
        assert_eq!(window.note(t0, every), Some(1));
        assert_eq!(window.note(t0 + Duration::from_secs(1), every), None);
        assert_eq!(window.note(t0 + Duration::from_secs(9), every), None);
        // The next line covers the two refusals it held back and its own.
        assert_eq!(window.note(t0 + Duration::from_secs(10), every), Some(3));
        assert_eq!(window.note(t0 + Duration::from_secs(11), every), None);
    }

    /// The real broker: a publish just under its packet limit reaches a subscriber with the
    /// node's own client limit (and ingest refuses it as `oversize`); one byte more closes the
    /// publisher's connection, is counted once and reaches nobody.
    #[test]
    fn the_embedded_broker_passes_near_limit_payloads_to_ingest_and_counts_larger_ones() {
        use rumqttc::{Client, Event, MqttOptions, Packet as P, QoS};
        const MAX_PAYLOAD: usize = 1024;
        let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let listen = free.local_addr().expect("its address");
        drop(free);
        let meter = OversizeMeter::default();
        let started = start(&BrokerConfig {
            listen,
            max_payload_bytes: MAX_PAYLOAD,
            max_inflight: 100,
            max_connections: 100,
            auth: None,
            oversized: meter.clone(),
        });
        assert!(started.is_ok(), "{started:?}");
        let client = |id: &str| {
            let mut o = MqttOptions::new(id, listen.ip().to_string(), listen.port());
            // The node's own client limit (`node.rs`).
            o.set_max_packet_size(
                crate::ingest::mqtt::client_packet_limit(MAX_PAYLOAD),
                64 * 1024,
            );
            Client::new(o, 10)
        };
        let (sub, mut sub_conn) = client("validator:v0:test:0");
        assert!(sub.subscribe("gt/v1/readings/#", QoS::AtLeastOnce).is_ok());
        let wait_for = |conn: &mut rumqttc::Connection, want: &dyn Fn(&Event) -> bool| {
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until {
                match conn.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(e)) if want(&e) => return true,
                    Ok(Err(_)) => return false,
                    _ => {}
                }
            }
            false
        };
        assert!(wait_for(&mut sub_conn, &|e| matches!(
            e,
            Event::Incoming(P::SubAck(_))
        )));
        let key = DeviceKey::from_seed(&[1; 32]);
        let topic = topics::readings_topic(&key.device_id());
        // QoS 1: remaining length = 2 + topic + 2 (packet id) + payload.
        let largest = packet_limit(MAX_PAYLOAD) - topic.len() - 4;
        assert!(largest > MAX_PAYLOAD);
        let (publisher, mut pub_conn) = client("near-limit");
        assert!(publisher
            .publish(topic.clone(), QoS::AtLeastOnce, false, vec![7u8; largest])
            .is_ok());
        assert!(wait_for(&mut pub_conn, &|e| matches!(
            e,
            Event::Incoming(P::PubAck(_))
        )));
        let delivered = std::cell::Cell::new(None);
        assert!(wait_for(&mut sub_conn, &|e| {
            if let Event::Incoming(P::Publish(p)) = e {
                delivered.set(Some(p.payload.len()));
            }
            delivered.get().is_some()
        }));
        assert_eq!(delivered.get(), Some(largest));
        let registry = crate::ingest::registry::Registry::from_records(std::iter::empty());
        let payload = vec![7u8; largest];
        assert_eq!(
            crate::ingest::precheck(&topic, &payload, MAX_PAYLOAD, &registry).err(),
            Some(crate::ingest::Rejection::Oversize)
        );
        assert_eq!(meter.refused(), 0);
        // One byte more: the broker closes the connection without a PUBACK.
        let (publisher, mut pub_conn) = client("over-limit");
        assert!(publisher
            .publish(topic, QoS::AtLeastOnce, false, vec![7u8; largest + 1])
            .is_ok());
        assert!(!wait_for(&mut pub_conn, &|e| matches!(
            e,
            Event::Incoming(P::PubAck(_))
        )));
        let until = Instant::now() + Duration::from_secs(5);
        while meter.refused() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(meter.refused(), 1);
        assert!(!wait_for(&mut sub_conn, &|e| matches!(
            e,
            Event::Incoming(P::Publish(_))
        )));
    }

    #[test]
    fn topic_rules() {
        let a = DeviceKey::from_seed(&[1; 32]).device_id();
        let b = DeviceKey::from_seed(&[2; 32]).device_id();
        let dev = Role::Device(a);
        let val = Role::Validator("v0".into());
        assert!(may_publish(&dev, &topics::readings_topic(&a)));
        assert!(!may_publish(&dev, &topics::readings_topic(&b)));
        assert!(!may_publish(&dev, &topics::resend_topic(&a)));
        assert!(!may_publish(&val, &topics::readings_topic(&a)));
        assert!(may_publish(&val, &topics::resend_topic(&a)));
        assert!(may_subscribe(&dev, &topics::resend_topic(&a)));
        assert!(!may_subscribe(&dev, &topics::resend_topic(&b)));
        assert!(!may_subscribe(&dev, "gt/v1/readings/#"));
        assert!(!may_subscribe(&dev, "#"));
        assert!(may_subscribe(&val, "gt/v1/readings/#"));
        assert!(may_subscribe(&val, &topics::readings_partition_filter(3)));
        assert!(!may_subscribe(&val, "#"));
        let gw = Role::Gateway("sim".into());
        assert!(may_publish(&gw, &topics::readings_topic(&b)));
        assert!(!may_publish(&gw, &topics::resend_topic(&b)));
        assert!(may_subscribe(&gw, topics::RESEND_FILTER));
        assert!(!may_subscribe(&gw, "gt/v1/readings/#"));
    }
}
