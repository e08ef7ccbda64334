//! The node's MQTT connections to the broker: each reads its partitions into the bounded ingest
//! queue, taking a slot before it reads so that a slow ingest pushes back on the broker.

use super::Inbound;
use crate::metrics::IngestMetrics;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Room the node's MQTT connections allow above `max_payload_bytes` in an incoming packet's
/// remaining length (topic, packet id, payload). A broker must never deliver more: the
/// connection would fail on that message and, its session being persistent, be redelivered it
/// after every reconnect. The embedded broker's own limit stays below this
/// ([`super::broker::PACKET_HEADROOM`]); an external broker's must be set to match.
pub const CLIENT_PACKET_HEADROOM: usize = 512;

/// Largest remaining length the node's MQTT connections accept, for `max_payload_bytes`.
pub const fn client_packet_limit(max_payload_bytes: usize) -> usize {
    max_payload_bytes.saturating_add(CLIENT_PACKET_HEADROOM)
}

/// Reads one MQTT connection into the ingest queue until ingest stops.
pub async fn read_loop(
    connection: usize,
    mut eventloop: rumqttc::EventLoop,
    client: AsyncClient,
    partitions: Vec<String>,
    generation: Arc<AtomicU64>,
    tx: tokio::sync::mpsc::Sender<Inbound>,
    metrics: IngestMetrics,
) {
    loop {
        // Take a slot in the ingest queue before reading from the broker: when ingest is
        // behind, the node stops reading (TCP back-pressure reaches the broker) instead of
        // blocking with a message in hand while acks wait to be sent.
        let Ok(slot) = tx.reserve().await else {
            tracing::error!(target: "node::mqtt", connection, "ingest stopped; leaving the MQTT loop");
            return;
        };
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                let generation = generation.load(Ordering::Acquire);
                slot.send(Inbound {
                    publish,
                    connection,
                    generation,
                });
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                generation.fetch_add(1, Ordering::AcqRel);
                tracing::info!(target: "node::mqtt", connection, session_present = ack.session_present, "connected to broker");
                for filter in &partitions {
                    if let Err(e) = client.try_subscribe(filter.clone(), QoS::AtLeastOnce) {
                        tracing::error!(target: "node::mqtt", connection, error = %e, "subscribe failed");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.mqtt_errors.inc();
                tracing::warn!(target: "node::mqtt", connection, error = %e, "broker connection lost; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
