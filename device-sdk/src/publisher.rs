//! The MQTT publisher: sign, queue durably, deliver in order with QoS 1.
//!
//! [`Publisher::publish`] assigns the next sequence number, signs, appends the frame to the
//! [`OfflineQueue`] (fsync) and returns. A background task owns the MQTT connection and
//! publishes pending frames, oldest first, to [`topics::readings_topic`] with QoS 1, advancing
//! the queue's acknowledgement cursor as PUBACKs arrive.
//!
//! # Session and login (PROTOCOL.md, "MQTT session")
//!
//! By default the client id and username are the device id in lower-case hex and the password
//! is a fresh [`login_token`](crate::login_token) signed at every connection attempt with the
//! system clock; [`Credentials`] also allows a fixed username and password (an external broker
//! with a password file) or none. The session is persistent (`clean_session = false`), so the
//! broker keeps the resend subscription and queues resend requests while the device is away.
//! Keep-alive is 30 s by default, every publish is QoS 1 and none is retained.
//!
//! # Who retransmits what
//!
//! The durable queue is the only retransmission state. rumqttc moves un-acknowledged publishes
//! (and requests still in its channel) into its in-memory `pending` list when a connection
//! drops, and would replay them if the broker resumes the session. The task empties that list
//! after every connection error, so rumqttc never retransmits; after every CONNACK the task
//! rewinds to the queue's cursor and republishes from there, in order. A reading whose PUBACK was lost with the connection is therefore published
//! again (validators drop byte-identical duplicates); an acknowledged one never is, also not
//! after a restart, since the cursor is on disk.
//!
//! rumqttc reports the packet id it gave each publish as `Event::Outgoing(Outgoing::Publish(pkid))`,
//! in the order the requests were handed to it; the task keeps a FIFO of what it handed over to
//! pair them, then maps PUBACK packet ids back to sequence numbers. Only this task sends
//! requests, and only between CONNACK and the next connection error, so no request from an old
//! connection can reach a new one and shift that pairing; events rumqttc had buffered when a
//! connection failed (a publish it numbered whose write then failed) are settled against the
//! old connection right after the error, never paired with the next one's. The task never cancels rumqttc's
//! `poll` future (which could lose a half-written packet); it keeps it pinned and waits for new
//! readings beside it.
//!
//! # Resend requests
//!
//! The task subscribes to [`topics::resend_topic`]. A request (a big-endian `u64` from-seq)
//! republishes every retained, acknowledged reading from that sequence number on, unchanged
//! (PROTOCOL.md, "Resend requests"). Whoever can publish on that topic can ask, so the device
//! bounds what asking costs it: a payload longer than [`topics::MAX_RESEND_REQUEST_LEN`] is
//! refused unread, and two token buckets ([`ResendLimits`]) cap the requests served and the
//! readings resent per minute; resends beyond the reading budget wait for it to refill. Every
//! refusal is counted in [`ResendStats`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use std::time::{SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::login::login_token;
use crate::queue::{OfflineQueue, QueueConfig};
use crate::ratelimit::TokenBucket;
use crate::reading::{DeviceId, Reading, ReadingBody};
use crate::signing::{DeviceKey, SignedReading, MAX_FRAME_LEN};
use crate::topics;

/// TLS settings for the broker connection (feature `tls`, rustls).
#[cfg(feature = "tls")]
#[derive(Clone)]
pub struct TlsConfig {
    /// PEM-encoded CA certificate(s) the broker's certificate must chain to.
    pub ca_pem: Vec<u8>,
    /// Optional client certificate chain and private key, both PEM, for mutual TLS.
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

#[cfg(feature = "tls")]
impl core::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("ca_pem_len", &self.ca_pem.len())
            .field(
                "client_auth",
                &self.client_auth.as_ref().map(|_| "redacted"),
            )
            .finish()
    }
}

/// What the publisher logs in to the broker with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// A groundtruth broker's rule (PROTOCOL.md, "MQTT session"): username = client id =
    /// device id in lower-case hex, password = a login token signed by the device key with the
    /// system clock, fresh at every connection attempt. The client id must be left at its
    /// default.
    #[default]
    DeviceToken,
    /// A fixed username and password, e.g. for an external broker with a password file.
    Password {
        /// MQTT username.
        username: String,
        /// MQTT password.
        password: String,
    },
    /// No username or password (a broker without authentication, e.g. in tests).
    Anonymous,
}

impl core::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::DeviceToken => f.write_str("DeviceToken"),
            Self::Password { username, .. } => f
                .debug_struct("Password")
                .field("username", username)
                .field("password", &"redacted")
                .finish(),
            Self::Anonymous => f.write_str("Anonymous"),
        }
    }
}

/// Device-side bounds on resend requests (PROTOCOL.md, "Resend requests"). Each is a token
/// bucket of that many tokens refilled at that rate per minute; zero turns resending off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResendLimits {
    /// Resend requests served per minute (burst of the same size). Default 30.
    pub requests_per_minute: u32,
    /// Readings resent per minute (burst of the same size). Default 600.
    pub readings_per_minute: u32,
}

impl Default for ResendLimits {
    fn default() -> Self {
        Self {
            requests_per_minute: 30,
            readings_per_minute: 600,
        }
    }
}

/// How the publisher reaches its broker and where it keeps its queue.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Broker host name or IP address.
    pub broker_host: String,
    /// Broker port (1883 for plain MQTT, 8883 for MQTT over TLS by convention).
    pub broker_port: u16,
    /// Further brokers (host, port), tried in this order after the first when a connection
    /// attempt fails: e.g. other validators' embedded brokers, so that a device whose broker
    /// died keeps delivering (PROTOCOL.md, "Several brokers"). Empty by default. After a
    /// connection drops, the same broker is tried once more before moving on; the device stays
    /// on whichever broker accepts it. Every one gets the same login, TLS and session settings.
    pub fallback_brokers: Vec<(String, u16)>,
    /// MQTT client id; `None` (the default, and the protocol's rule) uses the device id in
    /// lower-case hex. A second connection with the same id takes the session over.
    pub client_id: Option<String>,
    /// Username and password. Default [`Credentials::DeviceToken`].
    pub credentials: Credentials,
    /// Bounds on what resend requests can make the device send.
    pub resend_limits: ResendLimits,
    /// MQTT keep-alive: how often the client pings an idle connection. Zero disables it;
    /// otherwise at least one second. Default 30 s.
    pub keep_alive: Duration,
    /// Most QoS 1 publishes awaiting PUBACK at once. Default 32.
    pub inflight: NonZeroU16,
    /// Pause between reconnection attempts. Default 1 s.
    pub reconnect_delay: Duration,
    /// Directory of the durable offline queue; one publisher per directory.
    pub queue_dir: PathBuf,
    /// Most unacknowledged readings kept; beyond it [`Publisher::publish`] fails with
    /// [`Error::QueueFull`]. Default 10 000.
    pub max_queue_entries: NonZeroUsize,
    /// How many acknowledged readings stay on disk to answer resend requests. Default 1 024.
    pub retain_acked: usize,
    /// TLS for the broker connection; `None` connects in plain TCP.
    #[cfg(feature = "tls")]
    pub tls: Option<TlsConfig>,
}

impl PublisherConfig {
    /// Defaults for a broker at `host:port`, with the queue in `queue_dir`: client id and
    /// username the device id, a fresh login token as password, 30 s keep-alive.
    pub fn new(
        broker_host: impl Into<String>,
        broker_port: u16,
        queue_dir: impl Into<PathBuf>,
    ) -> Self {
        let queue = QueueConfig::new(queue_dir);
        Self {
            broker_host: broker_host.into(),
            broker_port,
            fallback_brokers: Vec::new(),
            client_id: None,
            credentials: Credentials::DeviceToken,
            resend_limits: ResendLimits::default(),
            keep_alive: Duration::from_secs(30),
            inflight: NonZeroU16::new(32).unwrap_or(NonZeroU16::MIN),
            reconnect_delay: Duration::from_secs(1),
            queue_dir: queue.dir,
            max_queue_entries: queue.max_entries,
            retain_acked: queue.retain_acked,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// The client id this configuration connects with for `device`.
    pub fn effective_client_id(&self, device: &DeviceId) -> String {
        self.client_id.clone().unwrap_or_else(|| device.to_string())
    }

    /// Connection options for the first broker, then each fallback, in order.
    fn endpoint_options(&self, device: &DeviceId) -> Result<Vec<MqttOptions>> {
        std::iter::once((self.broker_host.as_str(), self.broker_port))
            .chain(self.fallback_brokers.iter().map(|(h, p)| (h.as_str(), *p)))
            .map(|(host, port)| self.mqtt_options(device, host, port))
            .collect()
    }

    fn mqtt_options(&self, device: &DeviceId, host: &str, port: u16) -> Result<MqttOptions> {
        if host.is_empty() {
            return Err(Error::Config("broker host must not be empty".into()));
        }
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return Err(Error::Config(
                "keep_alive must be zero or at least one second".into(),
            ));
        }
        let client_id = self.effective_client_id(device);
        if client_id.is_empty() {
            return Err(Error::Config("client_id must not be empty".into()));
        }
        if self.credentials == Credentials::DeviceToken && client_id != device.to_string() {
            return Err(Error::Config(
                "with Credentials::DeviceToken the client id must be the device id in hex".into(),
            ));
        }
        let mut o = MqttOptions::new(&client_id, host, port);
        o.set_keep_alive(self.keep_alive)
            .set_inflight(self.inflight.get())
            // Non-empty client id (checked above), so rumqttc accepts a persistent session.
            .set_clean_session(false)
            .set_max_packet_size(MAX_INCOMING_PACKET, MAX_OUTGOING_PACKET);
        if let Credentials::Password { username, password } = &self.credentials {
            o.set_credentials(username, password);
        }
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            o.set_transport(rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Simple {
                ca: tls.ca_pem.clone(),
                alpn: None,
                client_auth: tls.client_auth.clone(),
            }));
        }
        Ok(o)
    }
}

/// Largest MQTT packet the device accepts from the broker. A bigger one ends the connection
/// (rumqttc's rule), so brokers must cap payloads below it (PROTOCOL.md, "Size bounds").
pub const MAX_INCOMING_PACKET: usize = 16 * 1024;
/// Largest MQTT packet the device sends (frames are at most 154 bytes).
const MAX_OUTGOING_PACKET: usize = 4 * 1024;

/// What resend requests have made the publisher do since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResendStats {
    /// Requests served (they passed the size and rate checks).
    pub requests_served: u64,
    /// Requests refused unread: payload longer than [`topics::MAX_RESEND_REQUEST_LEN`].
    pub requests_oversize: u64,
    /// Requests refused: payload shorter than 8 bytes.
    pub requests_malformed: u64,
    /// Requests refused by the request rate limit.
    pub requests_rate_limited: u64,
    /// Readings republished for requests.
    pub readings_resent: u64,
    /// Times resending paused because the reading budget was spent.
    pub readings_throttled: u64,
}

/// A snapshot of the publisher's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublisherStatus {
    /// The sequence number the next reading gets.
    pub next_seq: u64,
    /// The first sequence number not yet acknowledged by the broker.
    pub acked_next: u64,
    /// Whether the task currently holds a connection acknowledged by the broker.
    pub connected: bool,
    /// Resend requests handled and refused.
    pub resend: ResendStats,
}

impl PublisherStatus {
    /// Readings waiting for the broker's PUBACK.
    pub fn pending(&self) -> u64 {
        self.next_seq - self.acked_next
    }
}

struct Shared {
    queue: Mutex<OfflineQueue>,
    wake: Notify,
    status: watch::Sender<PublisherStatus>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, OfflineQueue> {
        // A panic while holding the lock cannot leave the queue inconsistent on disk (every
        // change is durable before memory changes), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Signs readings, queues them durably and publishes them over MQTT (see the module docs).
///
/// Create it inside a tokio runtime: [`Publisher::start`] spawns the background task there.
pub struct Publisher {
    key: Arc<DeviceKey>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl core::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Publisher")
            .field("device", &self.key.device_id())
            .field("status", &self.status())
            .finish()
    }
}

impl Publisher {
    /// Opens the queue in `config.queue_dir` (discarding a torn tail) and starts the background
    /// task on the current tokio runtime. Readings left unacknowledged by an earlier run are
    /// published first, in order.
    pub fn start(key: DeviceKey, config: PublisherConfig) -> Result<Self> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::Config("Publisher::start needs a tokio runtime".into()))?;
        let device = key.device_id();
        let endpoints = config.endpoint_options(&device)?;
        let options = endpoints
            .first()
            .cloned()
            .ok_or_else(|| Error::Config("no broker".into()))?;
        let queue = OfflineQueue::open(QueueConfig {
            dir: config.queue_dir.clone(),
            max_entries: config.max_queue_entries,
            retain_acked: config.retain_acked,
        })?;
        let status = PublisherStatus {
            next_seq: queue.next_seq(),
            acked_next: queue.acked_next(),
            connected: false,
            resend: ResendStats::default(),
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            status: watch::Sender::new(status),
        });
        let window = usize::from(config.inflight.get());
        // Requests this task hands to rumqttc never exceed the window plus one subscription.
        let (client, eventloop) = AsyncClient::new(options, window + 4);
        let key = Arc::new(key);
        let login = (config.credentials == Credentials::DeviceToken)
            .then(|| (Arc::clone(&key), config.effective_client_id(&device)));
        let clock = tokio::time::Instant::now();
        let driver = Driver {
            login,
            clock,
            request_bucket: TokenBucket::new(config.resend_limits.requests_per_minute, 0),
            reading_bucket: TokenBucket::new(config.resend_limits.readings_per_minute, 0),
            resend_wake: None,
            shared: Arc::clone(&shared),
            client,
            readings_topic: topics::readings_topic(&device),
            resend_topic: topics::resend_topic(&device),
            window,
            reconnect_delay: config.reconnect_delay,
            endpoints,
            endpoint: 0,
            connected: false,
            failed_attempts: 0,
            sent_next: status.acked_next,
            awaiting_pkid: VecDeque::new(),
            inflight: HashMap::new(),
            acked_above: BTreeSet::new(),
            resend: None,
        };
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = runtime.spawn(driver.run(eventloop, stop_rx));
        tracing::info!(
            target: "device_sdk::publisher",
            %device, broker = %format!("{}:{}", config.broker_host, config.broker_port),
            next_seq = status.next_seq, pending = status.pending(),
            "publisher started"
        );
        Ok(Self {
            key,
            shared,
            stop: Some(stop_tx),
            task: Some(task),
        })
    }

    /// The device id readings are signed for.
    pub fn device_id(&self) -> DeviceId {
        self.key.device_id()
    }

    /// Signs `body` with the next sequence number and `timestamp_ms` (Unix milliseconds),
    /// appends it to the durable queue and returns it; the background task publishes it.
    ///
    /// Blocks for one `fdatasync`; in latency-sensitive async code call it from
    /// `tokio::task::spawn_blocking`. Fails with [`Error::QueueFull`] (consuming no sequence
    /// number) when `max_queue_entries` readings are unacknowledged, and with
    /// [`Error::InvalidField`] for a body the protocol forbids.
    pub fn publish(&self, timestamp_ms: u64, body: ReadingBody) -> Result<SignedReading> {
        validate_body(&body)?;
        let device = self.key.device_id();
        let signed = {
            let mut queue = self.shared.queue();
            let signed = queue.append(|seq| {
                self.key.sign(Reading {
                    device,
                    seq,
                    timestamp_ms,
                    body,
                })
            })?;
            let next_seq = queue.next_seq();
            self.shared.status.send_modify(|s| s.next_seq = next_seq);
            signed
        };
        self.shared.wake.notify_one();
        Ok(signed)
    }

    /// The publisher's progress now.
    pub fn status(&self) -> PublisherStatus {
        *self.shared.status.borrow()
    }

    /// Waits until every reading published so far is acknowledged by the broker, or `timeout`
    /// passes; returns whether everything was acknowledged.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let target = self.status().next_seq;
        let mut rx = self.shared.status.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.acked_next >= target))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops the background task and waits for it to end. Unacknowledged readings stay in the
    /// queue for the next [`Publisher::start`] on the same directory.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Dropping a publisher aborts its task without waiting; the queue directory stays claimed
/// until the task has actually stopped. To reopen the same directory, use
/// [`Publisher::shutdown`] instead, which waits.
impl Drop for Publisher {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Rejects bodies that would not decode, so a device never signs a reading validators refuse.
fn validate_body(body: &ReadingBody) -> Result<()> {
    let (interval_len_s, utilisation_bp) = match body {
        ReadingBody::Energy(e) => (e.interval_len_s, 0),
        ReadingBody::Gpu(g) => (g.interval_len_s, g.utilisation_bp),
        ReadingBody::Storage(_) => (1, 0),
    };
    if interval_len_s == 0 {
        return Err(Error::InvalidField {
            field: "interval_len_s",
            reason: "must not be 0",
        });
    }
    if utilisation_bp > 10_000 {
        return Err(Error::InvalidField {
            field: "utilisation_bp",
            reason: "above 10000",
        });
    }
    Ok(())
}

/// What a publish handed to rumqttc carries.
#[derive(Clone, Copy, Debug)]
enum Tag {
    /// A pending reading; its PUBACK advances the cursor.
    Pending(u64),
    /// A retained reading republished on request; its PUBACK changes nothing.
    Resend,
}

/// The background task's state; it alone talks to rumqttc.
struct Driver {
    /// Key and client id to sign a fresh login token with before each connection attempt
    /// ([`Credentials::DeviceToken`]).
    login: Option<(Arc<DeviceKey>, String)>,
    /// Origin of the token buckets' millisecond clock.
    clock: tokio::time::Instant,
    /// Resend requests served per minute.
    request_bucket: TokenBucket,
    /// Readings resent per minute.
    reading_bucket: TokenBucket,
    /// When the reading budget has a token again, if resending waits for it.
    resend_wake: Option<tokio::time::Instant>,
    shared: Arc<Shared>,
    client: AsyncClient,
    readings_topic: String,
    resend_topic: String,
    window: usize,
    reconnect_delay: Duration,
    /// Connection options of every broker, the configured one first, then the fallbacks.
    endpoints: Vec<MqttOptions>,
    /// Which of `endpoints` the event loop connects to now.
    endpoint: usize,
    connected: bool,
    /// Connection attempts failed since the last CONNACK (the first is logged at `warn`).
    failed_attempts: u32,
    /// Next pending sequence number to hand to rumqttc.
    sent_next: u64,
    /// Publishes handed to rumqttc that it has not yet given a packet id, oldest first.
    awaiting_pkid: VecDeque<Tag>,
    /// Publishes on the wire awaiting PUBACK, by packet id.
    inflight: HashMap<u16, Tag>,
    /// Acknowledged sequence numbers above the queue's cursor (PUBACKs may come out of order).
    acked_above: BTreeSet<u64>,
    /// Retained readings still to republish for a resend request: next..end.
    resend: Option<(u64, u64)>,
}

impl Driver {
    async fn run(mut self, mut eventloop: EventLoop, mut stop: oneshot::Receiver<()>) {
        loop {
            if eventloop.network.is_none() {
                self.refresh_login(&mut eventloop.mqtt_options);
            }
            let polled = {
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    let wake_at = self.resend_wake;
                    tokio::select! {
                        biased;
                        _ = &mut stop => return,
                        r = &mut poll => break r,
                        () = self.shared.wake.notified() => self.fill(),
                        () = tokio::time::sleep_until(wake_at.unwrap_or_else(tokio::time::Instant::now)),
                            if wake_at.is_some() => {
                            self.resend_wake = None;
                            self.fill();
                        }
                    }
                }
            };
            match polled {
                Ok(event) => self.on_event(event),
                Err(e) => {
                    if self.connected {
                        tracing::warn!(target: "device_sdk::publisher", error = %e, "connection lost; readings stay queued");
                    } else if self.failed_attempts == 0 {
                        tracing::warn!(target: "device_sdk::publisher", error = %e, "cannot reach the broker; readings stay queued, retrying");
                    } else {
                        tracing::debug!(target: "device_sdk::publisher", error = %e, attempts = self.failed_attempts, "broker still unreachable");
                    }
                    self.failed_attempts = self.failed_attempts.saturating_add(1);
                    // A connection attempt failed (not a live connection dropped, which gets one
                    // more try on the same broker): move on to the next broker, if any.
                    if !self.connected {
                        self.next_endpoint(&mut eventloop.mqtt_options);
                    }
                    self.set_connected(false);
                    // Events rumqttc buffered before the error (a publish it numbered whose
                    // write then failed, a PUBACK read just before) belong to the dead
                    // connection. Left in its buffer they would come first after the next
                    // CONNACK and pair the new connection's publishes with old packet ids,
                    // so that a reading is never counted as acknowledged: settle them now.
                    while let Some(event) = eventloop.state.events.pop_front() {
                        self.on_event(event);
                    }
                    // The queue is the only retransmission state: drop rumqttc's replay list
                    // (publishes it would resend if the broker resumes the session).
                    eventloop.pending.clear();
                    tokio::select! {
                        _ = &mut stop => return,
                        () = tokio::time::sleep(self.reconnect_delay) => {}
                    }
                }
            }
        }
    }

    /// Switches the event loop's next connection to the next broker in the list (no-op with
    /// a single broker).
    fn next_endpoint(&mut self, options: &mut MqttOptions) {
        if self.endpoints.len() < 2 {
            return;
        }
        self.endpoint = self.endpoint.saturating_add(1) % self.endpoints.len();
        if let Some(next) = self.endpoints.get(self.endpoint) {
            *options = next.clone();
            let (host, port) = next.broker_address();
            tracing::info!(target: "device_sdk::publisher", broker = %format!("{host}:{port}"), "trying the next broker");
        }
    }

    /// Signs a fresh login token with the system clock (PROTOCOL.md, "MQTT session").
    fn refresh_login(&self, options: &mut MqttOptions) {
        let Some((key, client_id)) = &self.login else {
            return;
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_else(|_| {
                tracing::warn!(target: "device_sdk::publisher", "system clock before 1970; the broker will refuse the login token");
                0
            });
        options.set_credentials(client_id.as_str(), login_token(key, client_id, now));
    }

    /// Milliseconds since the task started, for the token buckets.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
        self.shared.status.send_modify(|s| s.connected = connected);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Incoming(Incoming::ConnAck(_)) => {
                // A clean session: rumqttc dropped whatever it held, so restart from the cursor.
                self.awaiting_pkid.clear();
                self.inflight.clear();
                self.acked_above.clear();
                self.sent_next = self.shared.queue().acked_next();
                self.failed_attempts = 0;
                self.set_connected(true);
                tracing::info!(target: "device_sdk::publisher", from_seq = self.sent_next, "connected");
                if let Err(e) = self
                    .client
                    .try_subscribe(self.resend_topic.clone(), QoS::AtLeastOnce)
                {
                    tracing::warn!(target: "device_sdk::publisher", error = %e, "cannot subscribe to resend requests");
                }
                self.fill();
            }
            Event::Outgoing(Outgoing::Publish(pkid)) => match self.awaiting_pkid.pop_front() {
                Some(tag) => {
                    self.inflight.insert(pkid, tag);
                }
                None => {
                    tracing::warn!(target: "device_sdk::publisher", pkid, "publish id for no request")
                }
            },
            Event::Incoming(Incoming::PubAck(ack)) => {
                match self.inflight.remove(&ack.pkid) {
                    Some(Tag::Pending(seq)) => self.on_acked(seq),
                    Some(Tag::Resend) => {}
                    None => {
                        tracing::debug!(target: "device_sdk::publisher", pkid = ack.pkid, "PUBACK for no publish")
                    }
                }
                self.fill();
            }
            Event::Incoming(Incoming::Publish(p)) if p.topic == self.resend_topic => {
                let len = p.payload.len();
                if len > topics::MAX_RESEND_REQUEST_LEN {
                    tracing::debug!(target: "device_sdk::publisher", len, "refusing oversize resend request");
                    self.count(|r| r.requests_oversize += 1);
                } else if let Some(from) = topics::decode_resend_request(&p.payload) {
                    if self.request_bucket.try_take(self.now_ms()) {
                        self.count(|r| r.requests_served += 1);
                        self.on_resend_request(from);
                    } else {
                        tracing::debug!(target: "device_sdk::publisher", from, "resend request over the rate limit");
                        self.count(|r| r.requests_rate_limited += 1);
                    }
                } else {
                    tracing::debug!(target: "device_sdk::publisher", len, "ignoring malformed resend request");
                    self.count(|r| r.requests_malformed += 1);
                }
                self.fill();
            }
            _ => {}
        }
    }

    fn count(&self, f: impl FnOnce(&mut ResendStats)) {
        self.shared.status.send_modify(|s| f(&mut s.resend));
    }

    fn on_acked(&mut self, seq: u64) {
        let mut queue = self.shared.queue();
        let mut next = queue.acked_next();
        if seq < next {
            return;
        }
        self.acked_above.insert(seq);
        while self.acked_above.contains(&next) {
            next += 1;
        }
        if next == queue.acked_next() {
            return;
        }
        match queue.ack_until(next) {
            Ok(()) => {
                self.acked_above.retain(|s| *s >= next);
                self.shared.status.send_modify(|s| s.acked_next = next);
            }
            // The PUBACKs stay recorded in `acked_above`; the next one retries the write.
            Err(e) => {
                tracing::error!(target: "device_sdk::publisher", error = %e, "cannot persist the acknowledgement cursor")
            }
        }
    }

    fn on_resend_request(&mut self, from: u64) {
        let queue = self.shared.queue();
        let start = from.max(queue.oldest_held());
        // Only acknowledged readings: pending ones are on their way anyway.
        let end = queue.acked_next();
        if start >= end {
            tracing::debug!(target: "device_sdk::publisher", from, "resend request for nothing retained");
            return;
        }
        let (start, end) = match self.resend {
            Some((s, e)) => (s.min(start), e.max(end)),
            None => (start, end),
        };
        tracing::info!(target: "device_sdk::publisher", from = start, to = end, "resending on request");
        self.resend = Some((start, end));
    }

    /// Hands rumqttc as many publishes as the window allows: pending readings in order first,
    /// then requested resends.
    fn fill(&mut self) {
        if !self.connected {
            return;
        }
        let now_ms = self.now_ms();
        let shared = Arc::clone(&self.shared);
        let queue = shared.queue();
        let mut resent = 0u64;
        let mut throttled = false;
        while self.awaiting_pkid.len() + self.inflight.len() < self.window {
            let (tag, seq) = if self.sent_next < queue.next_seq() {
                (Tag::Pending(self.sent_next), self.sent_next)
            } else if let Some((next, end)) = self.resend {
                if next >= end {
                    self.resend = None;
                    break;
                }
                if self.resend_wake.is_some() {
                    break;
                }
                if self.reading_bucket.available(now_ms) == 0 {
                    // Wait for the budget; a bucket that never refills ends the resend.
                    match self.reading_bucket.wait_ms(now_ms) {
                        Some(ms) => {
                            self.resend_wake =
                                Some(tokio::time::Instant::now() + Duration::from_millis(ms));
                            throttled = true;
                        }
                        None => self.resend = None,
                    }
                    break;
                }
                (Tag::Resend, next)
            } else {
                break;
            };
            let Some(frame) = queue.frame(seq) else {
                // A resend of a reading compacted away meanwhile: skip it.
                if let Tag::Resend = tag {
                    self.resend = self.resend.map(|(n, e)| (n + 1, e));
                    continue;
                }
                tracing::error!(target: "device_sdk::publisher", seq, "pending reading missing from the queue");
                break;
            };
            debug_assert!(frame.len() <= MAX_FRAME_LEN);
            match self.client.try_publish(
                self.readings_topic.clone(),
                QoS::AtLeastOnce,
                false,
                frame.to_vec(),
            ) {
                Ok(()) => {
                    self.awaiting_pkid.push_back(tag);
                    match tag {
                        Tag::Pending(_) => self.sent_next += 1,
                        Tag::Resend => {
                            self.reading_bucket.try_take(now_ms);
                            resent += 1;
                            self.resend = self.resend.map(|(n, e)| (n + 1, e));
                        }
                    }
                }
                // The request channel is full; the next event from rumqttc calls fill again.
                Err(_) => break,
            }
        }
        drop(queue);
        if resent > 0 || throttled {
            self.count(|r| {
                r.readings_resent += resent;
                r.readings_throttled += u64::from(throttled);
            });
        }
    }
}
