//! Runs a validator node: registry, store, optional embedded broker, metrics endpoint, MQTT
//! subscription and the ingest threads.

use crate::ingest::broker::{self, BrokerConfig};
use crate::config::NodeConfig;
use crate::ingest::{self, Inbound, IngestContext};
use crate::metrics::{self, IngestMetrics};
use crate::ingest::registry::{Registry, RegistryError, SharedRegistry};
use crate::ingest::store::{Store, StoreError};
use groundtruth_device_sdk::topics;
use rumqttc::{AsyncClient, MqttOptions};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The device registry could not be loaded.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store could not be opened.
    #[error("store at {0}: {1}")]
    Store(String, StoreError),
    /// The broker URL is not `mqtt://host:port`.
    #[error("broker url {0:?} is not of the form mqtt://host:port")]
    BrokerUrl(String),
    /// The replicated ledger could not start.
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    /// A socket or thread could not be set up.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
}

/// Splits `mqtt://host:port` (or `tcp://`, or bare `host:port`) into host and port.
pub fn parse_broker_url(url: &str) -> Result<(String, u16), NodeError> {
    topics::broker_address(url).ok_or_else(|| NodeError::BrokerUrl(url.into()))
}

/// The node's metrics registry and the handles into it.
pub struct Telemetry {
    /// Everything served on `/metrics`.
    pub registry: prometheus_client::registry::Registry,
    /// Ingest counters.
    pub ingest: IngestMetrics,
}

impl Default for Telemetry {
    fn default() -> Self {
        let mut registry = prometheus_client::registry::Registry::default();
        let ingest = IngestMetrics::register(&mut registry);
        Self { registry, ingest }
    }
}

/// Runs the node until `shutdown` completes.
pub async fn run(
    config: NodeConfig,
    telemetry: Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    // With consensus, devices come from the replicated ledger; without, from the genesis file.
    let chain = if config.consensus.enabled {
        Some(crate::chain::Chain::start(&config).await?)
    } else {
        None
    };
    let registry = match &chain {
        Some(c) => c.registry(),
        None => SharedRegistry::new(Registry::load(&config.node.genesis)?),
    };
    let store = Store::open(&config.node.data_dir)
        .map_err(|e| NodeError::Store(config.node.data_dir.display().to_string(), e))?;
    tracing::info!(target: "node", name = %config.node.name, devices = registry.load().len(), data_dir = %config.node.data_dir.display(), "starting");

    if config.mqtt.embedded {
        broker::start(&BrokerConfig {
            listen: config.mqtt.listen,
            max_payload_bytes: config.mqtt.max_payload_bytes,
            max_inflight: 1000,
            max_connections: 10_000,
        })
        .map_err(|e| NodeError::Io("embedded broker", e))?;
        tracing::info!(target: "node::broker", listen = %config.mqtt.listen, "embedded MQTT broker listening");
    }

    let ingest_metrics = telemetry.ingest.clone();
    let prometheus = Arc::new(telemetry.registry);
    let listener_addr = config.metrics.listen;
    let api = crate::chain::read_model::api_router(
        &config,
        chain.as_ref(),
        registry.clone(),
        ingest_metrics.heartbeat.clone(),
    );
    tokio::spawn(async move {
        if let Err(e) = metrics::serve_with(listener_addr, prometheus, api).await {
            tracing::error!(target: "node::metrics", error = %e, "metrics endpoint stopped");
        }
    });
    tracing::info!(target: "node::metrics", listen = %listener_addr, "serving the API, /metrics, /healthz and /readyz");

    let (host, port) = parse_broker_url(&config.mqtt.url)?;
    let connections = usize::from(
        config
            .mqtt
            .connections
            .clamp(1, topics::READINGS_PARTITIONS),
    );
    let (tx, rx) = tokio::sync::mpsc::channel::<Inbound>(config.ingest.queue_capacity);
    let mut clients = Vec::with_capacity(connections);
    let mut generations = Vec::with_capacity(connections);
    let mut loops = tokio::task::JoinSet::new();
    for connection in 0..connections {
        // One persistent session per connection, each holding a fixed set of partitions.
        let client_id = format!(
            "groundtruth-{}-{connection}of{connections}",
            config.node.name
        );
        let mut options = MqttOptions::new(client_id, host.clone(), port);
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(config.mqtt.keep_alive)
            .set_max_packet_size(config.mqtt.max_payload_bytes + 512, 4096)
            .set_inflight(config.mqtt.max_inflight);
        let (client, eventloop) = AsyncClient::new(options, config.ingest.queue_capacity);
        let generation = Arc::new(AtomicU64::new(0));
        let partitions: Vec<String> = (0..topics::READINGS_PARTITIONS)
            .filter(|p| usize::from(*p) % connections == connection)
            .map(topics::readings_partition_filter)
            .collect();
        loops.spawn(ingest::mqtt::read_loop(
            connection,
            eventloop,
            client.clone(),
            partitions,
            generation.clone(),
            tx.clone(),
            ingest_metrics.clone(),
        ));
        clients.push(client);
        generations.push(generation);
    }
    drop(tx);
    let ctx = IngestContext {
        config: config.ingest.clone(),
        max_payload: config.mqtt.max_payload_bytes,
        registry,
        store,
        metrics: ingest_metrics.clone(),
        clients,
        generations,
        evidence: chain.as_ref().map(|c| c.evidence_sender()),
    };
    let _threads = ingest::spawn(ctx, rx).map_err(|e| NodeError::Io("ingest threads", e))?;
    let mqtt_loop = async move { while loops.join_next().await.is_some() {} };
    tokio::select! {
        () = mqtt_loop => {}
        () = shutdown => tracing::info!(target: "node", "shutting down"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        assert_eq!(
            parse_broker_url("mqtt://127.0.0.1:1883").ok(),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            parse_broker_url("localhost:9").ok(),
            Some(("localhost".into(), 9))
        );
        assert!(parse_broker_url("mqtt://nohost").is_err());
        assert!(parse_broker_url("mqtt://:1").is_err());
    }
}
