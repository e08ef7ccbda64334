//! The MQTT publisher: sign, queue durably, deliver in order with QoS 1.
//!
//! [`Publisher::publish`] assigns the next sequence number, signs, appends the frame to the
//! [`OfflineQueue`] (fsync) and returns. A background task owns the MQTT connection and
//! publishes pending frames, oldest first, to [`topics::readings_topic`] with QoS 1, advancing
//! the queue's acknowledgement cursor as PUBACKs arrive.
//!
//! # Who retransmits what
//!
//! The durable queue is the only retransmission state. The client connects with
//! `clean_session = true`; rumqttc moves un-acknowledged publishes into its in-memory `pending`
//! list when a connection drops, but discards that list when the broker's CONNACK says no
//! session is present, which a clean session always does. So nothing is retransmitted by
//! rumqttc; after every CONNACK the task rewinds to the queue's cursor and republishes from
//! there, in order. A reading whose PUBACK was lost with the connection is therefore published
//! again (validators drop byte-identical duplicates); an acknowledged one never is, also not
//! after a restart, since the cursor is on disk.
//!
//! rumqttc reports the packet id it gave each publish as `Event::Outgoing(Outgoing::Publish(pkid))`,
//! in the order the requests were handed to it; the task keeps a FIFO of what it handed over to
//! pair them, then maps PUBACK packet ids back to sequence numbers. Only this task sends
//! requests, and only between CONNACK and the next connection error, so no request from an old
//! connection can reach a new one and shift that pairing. The task never cancels rumqttc's
//! `poll` future (which could lose a half-written packet); it keeps it pinned and waits for new
//! readings beside it.
//!
//! # Resend requests
//!
//! The task subscribes to [`topics::resend_topic`]. A request (a big-endian `u64` from-seq)
//! republishes every retained, acknowledged reading from that sequence number on, unchanged
//! (PROTOCOL.md, "Resend").

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::num::{NonZeroU16, NonZeroUsize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions, Outgoing, QoS};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::queue::{OfflineQueue, QueueConfig};
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

/// How the publisher reaches its broker and where it keeps its queue.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Broker host name or IP address.
    pub broker_host: String,
    /// Broker port (1883 for plain MQTT, 8883 for MQTT over TLS by convention).
    pub broker_port: u16,
    /// MQTT client id; must be unique per broker (a second connection with the same id kicks
    /// the first off). The device id's hex is a good choice.
    pub client_id: String,
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
    /// Defaults for a broker at `host:port`, with the queue in `queue_dir`.
    pub fn new(
        broker_host: impl Into<String>,
        broker_port: u16,
        client_id: impl Into<String>,
        queue_dir: impl Into<PathBuf>,
    ) -> Self {
        let queue = QueueConfig::new(queue_dir);
        Self {
            broker_host: broker_host.into(),
            broker_port,
            client_id: client_id.into(),
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

    fn mqtt_options(&self) -> Result<MqttOptions> {
        if !self.keep_alive.is_zero() && self.keep_alive < Duration::from_secs(1) {
            return Err(Error::Config(
                "keep_alive must be zero or at least one second".into(),
            ));
        }
        if self.client_id.is_empty() {
            return Err(Error::Config("client_id must not be empty".into()));
        }
        let mut o = MqttOptions::new(&self.client_id, &self.broker_host, self.broker_port);
        o.set_keep_alive(self.keep_alive)
            .set_inflight(self.inflight.get())
            .set_clean_session(true)
            .set_max_packet_size(16 * 1024, 16 * 1024);
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

/// A snapshot of the publisher's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublisherStatus {
    /// The sequence number the next reading gets.
    pub next_seq: u64,
    /// The first sequence number not yet acknowledged by the broker.
    pub acked_next: u64,
    /// Whether the task currently holds a connection acknowledged by the broker.
    pub connected: bool,
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
    key: DeviceKey,
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
        let options = config.mqtt_options()?;
        let queue = OfflineQueue::open(QueueConfig {
            dir: config.queue_dir.clone(),
            max_entries: config.max_queue_entries,
            retain_acked: config.retain_acked,
        })?;
        let status = PublisherStatus {
            next_seq: queue.next_seq(),
            acked_next: queue.acked_next(),
            connected: false,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            status: watch::Sender::new(status),
        });
        let window = usize::from(config.inflight.get());
        // Requests this task hands to rumqttc never exceed the window plus one subscription.
        let (client, eventloop) = AsyncClient::new(options, window + 4);
        let device = key.device_id();
        let driver = Driver {
            shared: Arc::clone(&shared),
            client,
            readings_topic: topics::readings_topic(&device),
            resend_topic: topics::resend_topic(&device),
            window,
            reconnect_delay: config.reconnect_delay,
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
    shared: Arc<Shared>,
    client: AsyncClient,
    readings_topic: String,
    resend_topic: String,
    window: usize,
    reconnect_delay: Duration,
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
            let polled = {
                let poll = eventloop.poll();
                tokio::pin!(poll);
                loop {
                    tokio::select! {
                        biased;
                        _ = &mut stop => return,
                        r = &mut poll => break r,
                        () = self.shared.wake.notified() => self.fill(),
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
                    self.set_connected(false);
                    tokio::select! {
                        _ = &mut stop => return,
                        () = tokio::time::sleep(self.reconnect_delay) => {}
                    }
                }
            }
        }
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
                match topics::decode_resend_request(&p.payload) {
                    Some(from) => self.on_resend_request(from),
                    None => tracing::debug!(
                        target: "device_sdk::publisher",
                        len = p.payload.len(),
                        "ignoring malformed resend request"
                    ),
                }
                self.fill();
            }
            _ => {}
        }
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
        let queue = self.shared.queue();
        while self.awaiting_pkid.len() + self.inflight.len() < self.window {
            let (tag, seq) = if self.sent_next < queue.next_seq() {
                (Tag::Pending(self.sent_next), self.sent_next)
            } else if let Some((next, end)) = self.resend {
                if next >= end {
                    self.resend = None;
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
                        Tag::Resend => self.resend = self.resend.map(|(n, e)| (n + 1, e)),
                    }
                }
                // The request channel is full; the next event from rumqttc calls fill again.
                Err(_) => break,
            }
        }
    }
}
