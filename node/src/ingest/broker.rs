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

use groundtruth_device_sdk::{topics, verify_login, DeviceId};
use prometheus_client::metrics::counter::Counter;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error as ProtocolError, Packet, Protocol};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use super::registry::SharedRegistry;

/// Username prefix of validators.
pub const VALIDATOR_USER_PREFIX: &str = "validator:";
/// Username prefix of fleet gateways.
pub const GATEWAY_USER_PREFIX: &str = "gateway:";

/// Settings of the embedded broker.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// TCP listen address.
    pub listen: SocketAddr,
    /// Largest payload a client may publish, bytes.
    pub max_payload_bytes: usize,
    /// QoS 1 messages a publishing client may have unacknowledged.
    pub max_inflight: usize,
    /// Most simultaneous connections.
    pub max_connections: usize,
    /// Authentication and authorisation; `None` runs an open broker (tests, benchmarks).
    pub auth: Option<BrokerAuth>,
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
        max_payload_size: config.max_payload_bytes,
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
                    rumqttd::Server::new(server, router_tx, Acl::new(refused_packets))
                        .start(rumqttd::LinkType::Remote)
                        .await
                } else {
                    rumqttd::Server::new(server, router_tx, V4)
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
