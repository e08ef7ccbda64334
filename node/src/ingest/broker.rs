//! The embedded MQTT broker (rumqttd), for a node that devices connect to directly.

use std::collections::HashMap;
use std::net::SocketAddr;

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
}

/// Starts rumqttd on its own threads; returns once it is listening.
pub fn start(config: &BrokerConfig) -> std::io::Result<()> {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 10_000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: config.max_inflight,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
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
    let rumqttd_config = rumqttd::Config {
        id: 0,
        router,
        v4: Some(HashMap::from([("v4".to_string(), server)])),
        ..Default::default()
    };
    let mut broker = rumqttd::Broker::new(rumqttd_config);
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            if let Err(e) = broker.start() {
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
