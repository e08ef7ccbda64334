//! Publishing a fleet's messages over MQTT: several connections, QoS 1, paced in simulated
//! time or as fast as the broker takes them.

use crate::fleet::{Expect, Message};
use groundtruth_device_sdk::{topics, DeviceId};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Readings each device keeps for resend requests (like the SDK's retained history).
pub const HISTORY_PER_DEVICE: usize = 4096;

/// Most readings re-sent for one request; the validator asks again for what is still missing.
pub const MAX_RESEND_PER_REQUEST: usize = 32;

/// Per-device history of published readings, by seq, for answering resend requests.
type History = Arc<Mutex<HashMap<DeviceId, BTreeMap<u64, (String, Vec<u8>)>>>>;

/// Errors while publishing.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker URL is not `mqtt://host:port`.
    #[error("broker url {0:?} is not of the form mqtt://host:port")]
    BrokerUrl(String),
    /// The MQTT client refused a request.
    #[error("mqtt client: {0}")]
    Client(#[from] rumqttc::ClientError),
    /// The broker did not acknowledge everything in time.
    #[error("broker acknowledged {acked} of {sent} messages before the deadline")]
    Unacknowledged {
        /// Messages published.
        sent: u64,
        /// Messages acknowledged.
        acked: u64,
    },
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct PublishConfig {
    /// Broker, `mqtt://host:port`.
    pub broker: String,
    /// Parallel MQTT connections; devices are spread over them by index.
    pub connections: u32,
    /// QoS 1 messages in flight per connection.
    pub inflight: u16,
    /// Client id prefix. With credentials it must start with `<username>:` (the broker binds
    /// a gateway's client ids to its username).
    pub client_prefix: String,
    /// Username and secret of a fleet gateway (`gateway:<name>`) when the broker requires
    /// logins; the simulator publishes for many devices over few connections, like a gateway.
    pub credentials: Option<(String, String)>,
}

/// Counters shared with whoever shows progress.
#[derive(Debug, Default)]
pub struct PublishStats {
    /// Messages handed to the MQTT client.
    pub sent: AtomicU64,
    /// PUBACKs received.
    pub acked: AtomicU64,
    /// Readings re-sent because a validator asked for them.
    pub resent: AtomicU64,
}

/// A set of MQTT connections that publish messages for the devices assigned to them.
pub struct Publisher {
    clients: Vec<AsyncClient>,
    stats: Arc<PublishStats>,
    loops: Vec<tokio::task::JoinHandle<()>>,
    history: History,
}

impl Publisher {
    /// Connects (lazily: the connections are made by their event loops).
    pub fn connect(config: &PublishConfig, stats: Arc<PublishStats>) -> Result<Self, PublishError> {
        let (host, port) = topics::broker_address(&config.broker)
            .ok_or_else(|| PublishError::BrokerUrl(config.broker.clone()))?;
        let mut clients = Vec::new();
        let mut loops = Vec::new();
        let history: History = Arc::default();
        for c in 0..config.connections.max(1) {
            let mut options =
                MqttOptions::new(format!("{}-{c}", config.client_prefix), host.clone(), port);
            if let Some((user, secret)) = &config.credentials {
                options.set_credentials(user.clone(), secret.clone());
            }
            options
                .set_keep_alive(Duration::from_secs(30))
                .set_inflight(config.inflight)
                .set_clean_session(true);
            let (client, mut eventloop) =
                AsyncClient::new(options, usize::from(config.inflight) * 2);
            let stats = stats.clone();
            let history = history.clone();
            let resend_client = client.clone();
            loops.push(tokio::spawn(async move {
                loop {
                    match eventloop.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            stats.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        // The first connection answers validators' resend requests.
                        Ok(Event::Incoming(Packet::ConnAck(_))) if c == 0 => {
                            let _ = resend_client.try_subscribe(topics::RESEND_FILTER, QoS::AtLeastOnce);
                        }
                        Ok(Event::Incoming(Packet::Publish(p))) => {
                            let resend = resend_request(&p.topic, &p.payload).map(|(device, from)| {
                                let guard = history.lock().unwrap_or_else(|e| e.into_inner());
                                guard.get(&device).map(|h| h.range(from..).take(MAX_RESEND_PER_REQUEST).map(|(_, v)| v.clone()).collect::<Vec<_>>()).unwrap_or_default()
                            });
                            let resend = resend.unwrap_or_default();
                            tracing::info!(target: "sim::mqtt", topic = %p.topic, readings = resend.len(), "resend requested");
                            for (topic, payload) in resend {
                                // Best effort: the validator asks again if this is dropped.
                                if resend_client.try_publish(topic, QoS::AtLeastOnce, false, payload).is_ok() {
                                    stats.resent.fetch_add(1, Ordering::Relaxed);
                                    stats.sent.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(target: "sim::mqtt", error = %e, "connection error; retrying");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }));
            clients.push(client);
        }
        Ok(Self {
            clients,
            stats,
            loops,
            history,
        })
    }

    /// Publishes messages, each on the connection of its device, in order per device.
    pub async fn publish(&self, messages: &[Message]) -> Result<(), PublishError> {
        self.remember(messages);
        let n = self.clients.len();
        let mut per_conn: Vec<Vec<&Message>> = vec![Vec::new(); n];
        for m in messages {
            per_conn[m.device_index as usize % n].push(m);
        }
        let tasks = per_conn
            .into_iter()
            .zip(self.clients.iter().cloned())
            .map(|(msgs, client)| {
                let stats = self.stats.clone();
                let owned: Vec<(String, Vec<u8>)> = msgs
                    .into_iter()
                    .map(|m| (m.topic.clone(), m.payload.clone()))
                    .collect();
                tokio::spawn(async move {
                    for (topic, payload) in owned {
                        client
                            .publish(topic, QoS::AtLeastOnce, false, payload)
                            .await?;
                        stats.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok::<(), rumqttc::ClientError>(())
                })
            });
        for t in tasks.collect::<Vec<_>>() {
            match t.await {
                Ok(r) => r?,
                Err(e) => tracing::error!(target: "sim::mqtt", error = %e, "publisher task failed"),
            }
        }
        Ok(())
    }

    /// Keeps each device's readings (the first frame per seq) for resend requests. Called by
    /// [`Self::publish`]; a restarted simulator calls it with what it published last before it
    /// stopped (replayed from its seed), so it can still answer for those readings.
    pub fn remember(&self, messages: &[Message]) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        for m in messages {
            let Some((device, seq)) = m.key else { continue };
            if matches!(m.expect, Expect::Accepted | Expect::Implausible) {
                let h = history.entry(device).or_default();
                h.entry(seq)
                    .or_insert_with(|| (m.topic.clone(), m.payload.clone()));
                while h.len() > HISTORY_PER_DEVICE {
                    h.pop_first();
                }
            }
        }
    }

    /// Waits until every sent message is acknowledged, or acknowledgements stop coming for
    /// `stall` (a broker that restarted without the session forgets what it had not
    /// acknowledged; the validator's resend requests recover those readings), or `deadline`.
    /// Returns how many stayed unacknowledged.
    pub async fn wait_acked(
        &self,
        stall: Duration,
        deadline: Duration,
    ) -> Result<u64, PublishError> {
        let until = tokio::time::Instant::now() + deadline;
        let mut last_progress = (
            tokio::time::Instant::now(),
            self.stats.acked.load(Ordering::Relaxed),
        );
        loop {
            let now = tokio::time::Instant::now();
            let sent = self.stats.sent.load(Ordering::Relaxed);
            let acked = self.stats.acked.load(Ordering::Relaxed);
            if acked >= sent {
                return Ok(0);
            }
            if acked != last_progress.1 {
                last_progress = (now, acked);
            } else if now.duration_since(last_progress.0) >= stall {
                tracing::warn!(target: "sim::mqtt", unacknowledged = sent - acked, "acknowledgements stopped; readings lost by the broker are left to resend requests");
                return Ok(sent - acked);
            }
            if now >= until {
                return Err(PublishError::Unacknowledged { sent, acked });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Disconnects every connection.
    pub async fn disconnect(self) {
        for c in &self.clients {
            let _ = c.disconnect().await;
        }
        for l in self.loops {
            let _ = tokio::time::timeout(Duration::from_secs(2), l).await;
        }
    }
}

/// Parses a resend request (PROTOCOL.md, "Resend").
fn resend_request(topic: &str, payload: &[u8]) -> Option<(DeviceId, u64)> {
    Some((
        topics::device_of_resend_topic(topic)?,
        topics::decode_resend_request(payload)?,
    ))
}
