//! A test device's side of MQTT: signed frames and a blocking QoS 1 client (rumqttc) that
//! reports what the broker did (CONNACK refusal, PUBACKs, a dropped connection).

use anyhow::{bail, Result};
use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody};
use rumqttc::{Client, Connection, ConnectionError, Event, MqttOptions, Outgoing, Packet, QoS};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A validly signed 5-minute energy reading's frame: interval `seq`, `energy_wh` in it,
/// register `register_wh` at its end.
pub fn energy_frame(key: &DeviceKey, seq: u64, energy_wh: u64, register_wh: u64) -> Vec<u8> {
    let interval_start_s = 1_700_000_000 + seq * 300;
    key.sign(Reading {
        device: key.device_id(),
        seq,
        timestamp_ms: (interval_start_s + 300) * 1000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s,
            interval_len_s: 300,
            energy_wh,
            register_wh,
        }),
    })
    .to_frame()
}

/// `n` contiguous plausible readings from `first_seq`, 100 Wh each (register from 0).
pub fn energy_frames(key: &DeviceKey, first_seq: u64, n: u64) -> Vec<Vec<u8>> {
    (first_seq..first_seq + n)
        .map(|s| energy_frame(key, s, 100, (s + 1) * 100))
        .collect()
}

/// A fresh client id (`test-client-<n>`), unique in this process.
pub fn fresh_client_id() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "test-client-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connected MQTT client.
pub struct MqttClient {
    client: Client,
    conn: Connection,
    broker: SocketAddr,
}

/// How a connection attempt ended.
#[derive(Debug)]
pub enum Connect {
    /// CONNACK accepted.
    Accepted(Box<MqttClient>),
    /// The broker refused (CONNACK code) or closed the connection.
    Refused(String),
}

impl std::fmt::Debug for MqttClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttClient")
            .field("broker", &self.broker)
            .finish()
    }
}

impl MqttClient {
    /// Connects with a clean session; `login` is (username, password).
    pub fn connect(
        broker: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Connect> {
        let mut opts = MqttOptions::new(client_id, broker.ip().to_string(), broker.port());
        opts.set_keep_alive(Duration::from_secs(5));
        if let Some((user, password)) = login {
            opts.set_credentials(user, password);
        }
        let (client, mut conn) = Client::new(opts, 64);
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            match conn.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                    return Ok(Connect::Accepted(Box::new(Self {
                        client,
                        conn,
                        broker,
                    })))
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                    return Ok(Connect::Refused(format!("{code:?}")))
                }
                Ok(Err(e)) => return Ok(Connect::Refused(e.to_string())),
            }
        }
        bail!("no CONNACK from {broker} within 10 s")
    }

    /// Connects or fails.
    pub fn connect_ok(
        broker: SocketAddr,
        client_id: &str,
        login: Option<(&str, &str)>,
    ) -> Result<Self> {
        match Self::connect(broker, client_id, login)? {
            Connect::Accepted(c) => Ok(*c),
            Connect::Refused(why) => bail!("{broker} refused {client_id}: {why}"),
        }
    }

    /// Publishes `frames` on `topic` (QoS 1) and waits up to `timeout` for their PUBACKs;
    /// returns how many were acknowledged before the timeout or the connection's end.
    pub fn publish(&mut self, topic: &str, frames: &[Vec<u8>], timeout: Duration) -> Result<usize> {
        let until = Instant::now() + timeout;
        let mut acked = 0;
        // The request channel is bounded: drive the connection whenever it is full.
        for frame in frames {
            while self
                .client
                .try_publish(topic, QoS::AtLeastOnce, false, frame.clone())
                .is_err()
            {
                match self.conn.recv_timeout(Duration::from_millis(10)) {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(_)) => return Ok(acked),
                }
                if Instant::now() > until {
                    return Ok(acked);
                }
            }
        }
        while acked < frames.len() && Instant::now() < until {
            match self.conn.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(_)) => break,
            }
        }
        Ok(acked)
    }

    /// Whether the connection is still up after driving it for `wait` (pings and all).
    pub fn is_alive(&mut self, wait: Duration) -> bool {
        let until = Instant::now() + wait;
        while Instant::now() < until {
            match self.conn.recv_timeout(Duration::from_millis(100)) {
                Ok(Ok(Event::Incoming(Packet::Disconnect))) | Ok(Err(_)) => return false,
                Ok(Ok(_)) | Err(_) => {}
            }
        }
        true
    }

    /// Sends DISCONNECT and drives the loop until it is on the wire.
    pub fn disconnect(mut self) {
        if self.client.disconnect().is_ok() {
            while let Ok(Ok(event)) = self.conn.recv_timeout(Duration::from_millis(500)) {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        }
    }
}

/// Publishes `frames` on `topic` from a fresh anonymous client and waits for every PUBACK.
pub fn publish_all(broker: SocketAddr, topic: &str, frames: &[Vec<u8>]) -> Result<()> {
    let mut c = MqttClient::connect_ok(broker, &fresh_client_id(), None)?;
    let acked = c.publish(topic, frames, Duration::from_secs(10))?;
    if acked < frames.len() {
        bail!(
            "{acked} of {} publishes acknowledged by {broker}",
            frames.len()
        );
    }
    c.disconnect();
    Ok(())
}
