//! What the broker tests share: free ports, an embedded broker with logins for a set of energy
//! devices and one validator (`validator:v0` / `validator secret`), and a CONNACK wait.
#![allow(dead_code)]

use groundtruth_device_sdk::{DeviceKey, ReadingKind};
use groundtruth_node::ingest::broker::{self, BrokerAuth, BrokerConfig};
use groundtruth_node::ingest::registry::{DeviceRecord, Registry, SharedRegistry};
use prometheus_client::metrics::counter::Counter;
use rumqttc::{Event, EventLoop, Packet};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The validator's login on the test broker.
pub const VALIDATOR_SECRET: &str = "validator secret";

/// A loopback address whose port was free a moment ago.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

/// The broker's refusal counters.
pub struct Refusals {
    /// Logins refused by the auth hook.
    pub logins: Counter,
    /// Packets refused by the ACL.
    pub packets: Counter,
}

/// Starts an embedded broker on `listen` requiring logins, with `devices` registered.
pub fn start_broker(listen: SocketAddr, devices: &[&DeviceKey]) -> Refusals {
    let record = DeviceRecord {
        kind: ReadingKind::Energy,
        capacity: 1000,
    };
    let registry = Registry::from_records(devices.iter().map(|k| (k.device_id(), record)));
    let refusals = Refusals {
        logins: Counter::default(),
        packets: Counter::default(),
    };
    broker::start(&BrokerConfig {
        listen,
        max_payload_bytes: 1024,
        max_inflight: 100,
        max_connections: 100,
        auth: Some(BrokerAuth {
            registry: SharedRegistry::new(registry),
            secrets: Arc::new(HashMap::from([(
                "validator:v0".to_string(),
                broker::secret_hash(VALIDATOR_SECRET),
            )])),
            max_skew_s: 300,
            refused_logins: refusals.logins.clone(),
            refused_packets: refusals.packets.clone(),
        }),
        oversized: Default::default(),
    })
    .expect("broker starts");
    refusals
}

/// Polls until CONNACK (true) or a connection error or 5 s without one (false).
pub async fn connects(eventloop: &mut EventLoop) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}
