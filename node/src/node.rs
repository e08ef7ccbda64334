//! Runs a validator node: registry, store, optional embedded broker, metrics endpoint, MQTT
//! subscription and the ingest threads.

use crate::config::NodeConfig;
use crate::ingest::broker::{self, BrokerConfig};
use crate::ingest::registry::{Registry, RegistryError, SharedRegistry};
use crate::ingest::store::{Store, StoreError};
use crate::ingest::{self, Inbound, IngestContext};
use crate::metrics::{self, IngestMetrics};
use groundtruth_device_sdk::topics;
use prometheus_client::metrics::counter::Counter;
use rumqttc::{AsyncClient, MqttOptions};
use std::collections::HashMap;
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
    /// Devnet chain id or keys on a node not started with `node.devnet = true` / `--devnet`.
    #[error("{0}: anyone can sign with devnet keys; start with --devnet (node.devnet = true) only for a devnet")]
    DevnetIdentity(String),
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The production read model could not be opened.
    #[error("production read model: {0}")]
    Production(String),
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] ingest::tls::TlsError),
    /// The broker credentials file is invalid.
    #[error(transparent)]
    Credentials(#[from] broker::CredentialsError),
    /// A socket or thread could not be set up.
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    /// Storage failed while running (disk full, read-only, corrupt): ingest stopped without
    /// acknowledging anything it had not made durable.
    #[error("storage failed, stopping (nothing unacknowledged was lost; fix the data directory and restart): {0}")]
    Storage(StoreError),
    /// Ingest stopped for another reason.
    #[error("ingest stopped: {0}")]
    IngestStopped(String),
}

/// Splits `mqtt://host:port` (or `tcp://`, or bare `host:port`) into host and port.
pub fn parse_broker_url(url: &str) -> Result<(String, u16), NodeError> {
    topics::broker_address(url.strip_prefix("mqtts://").unwrap_or(url))
        .ok_or_else(|| NodeError::BrokerUrl(url.into()))
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
    mut telemetry: Telemetry,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), NodeError> {
    config.validate()?;
    if config.consensus.enabled && !config.node.devnet {
        refuse_devnet_identity(&config)?;
    }
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
    if let Some(chain) = &chain {
        chain.start_audits(store.clone(), &config.audit, &mut telemetry.registry);
        chain
            .start_oracle(&config.oracle)
            .map_err(|e| crate::config::ConfigError::Invalid {
                key: "oracle",
                message: e.to_string(),
            })?;
    }

    // This node's own login to the broker (when it requires one) and its session ids.
    let own_secret = own_broker_secret(&config)?;
    let session = session_suffix(&config.node.data_dir)?;
    if config.mqtt.embedded {
        let auth = if config.mqtt.auth {
            let mut secrets = match &config.mqtt.credentials_file {
                Some(path) => broker::load_credentials(path)?,
                None => HashMap::new(),
            };
            if let Some(secret) = &own_secret {
                secrets.insert(own_username(&config), broker::secret_hash(secret));
            }
            let refused_logins = Counter::default();
            let refused_packets = Counter::default();
            telemetry.registry.register(
                "groundtruth_broker_refused_logins",
                "Logins the embedded broker refused",
                refused_logins.clone(),
            );
            telemetry.registry.register(
                "groundtruth_broker_refused_packets",
                "Packets the embedded broker's ACL refused (each closed its connection)",
                refused_packets.clone(),
            );
            Some(broker::BrokerAuth {
                registry: registry.clone(),
                secrets: Arc::new(secrets),
                max_skew_s: config.mqtt.login_skew.as_secs(),
                refused_logins,
                refused_packets,
            })
        } else {
            None
        };
        let oversized = Counter::default();
        telemetry.registry.register(
            "groundtruth_broker_oversized_packets",
            "Packets over the embedded broker's size limit (each closed its connection before reaching ingest)",
            oversized.clone(),
        );
        broker::start(&BrokerConfig {
            listen: config.mqtt.listen,
            max_payload_bytes: config.mqtt.max_payload_bytes,
            max_inflight: 1000,
            max_connections: 10_000,
            auth,
            oversized: broker::OversizeMeter::new(oversized),
        })
        .map_err(|e| NodeError::Io("embedded broker", e))?;
        tracing::info!(target: "node::broker", listen = %config.mqtt.listen, auth = config.mqtt.auth, "embedded MQTT broker listening");
        if let (Some(listen), Some(cert), Some(key)) = (
            config.mqtt.tls_listen,
            &config.mqtt.tls_cert_file,
            &config.mqtt.tls_key_file,
        ) {
            let server = ingest::tls::server_config(cert, key)?;
            ingest::tls::serve(
                ingest::tls::TlsFrontConfig {
                    listen,
                    broker: config.mqtt.listen,
                    handshake_timeout: std::time::Duration::from_secs(10),
                    max_connections: 10_000,
                },
                server,
            )
            .await?;
            tracing::info!(target: "node::broker", %listen, "embedded MQTT broker's TLS listener");
        }
    }
    let client_tls = match (
        &config.mqtt.tls_ca_file,
        config.mqtt.url.starts_with("mqtts://"),
    ) {
        (Some(ca), true) => Some(ingest::tls::client_config(ca)?),
        _ => None,
    };

    let retention_metrics = (chain.is_some() && config.retention.enabled)
        .then(|| crate::retention::RetentionMetrics::register(&mut telemetry.registry));
    let swarm_metrics = crate::chain::swarm::SwarmMetrics::register(&mut telemetry.registry);
    let ingest_metrics = telemetry.ingest.clone();
    let prometheus = Arc::new(telemetry.registry);
    let listener_addr = config.metrics.listen;
    // Verified production per device and region (`/v1/production/…`), kept up to date by the
    // ingest committer and caught up from the store at start.
    let production = crate::production::Production::open(
        &config.node.data_dir.join("production"),
        crate::chain::read_model::production_regions(&config, chain.as_ref()),
    )
    .map_err(|e| NodeError::Production(e.to_string()))?;
    let caught_up = production
        .spawn_catch_up(store.clone())
        .map_err(|e| NodeError::Io("production catch-up", e))?;
    if let Some(chain) = &chain {
        chain.follow_verified(production.clone());
        crate::chain::read_model::follow_anchored(chain, production.clone());
        match retention_metrics {
            Some(metrics) => crate::chain::read_model::start_retention(
                chain,
                store.clone(),
                Some(production.clone()),
                &config.retention,
                metrics,
                Some(caught_up),
            ),
            None => {
                tracing::info!(target: "node::retention", "retention off: raw readings are kept")
            }
        }
    }
    let api = crate::chain::read_model::api_router_with_production(
        &config,
        chain.as_ref(),
        registry.clone(),
        ingest_metrics.heartbeat.clone(),
        Some(production.clone()),
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
        // One persistent session per connection, each holding a fixed set of partitions. The
        // id carries a random suffix kept in the data directory: stable across restarts (the
        // broker keeps the session) but not guessable (nobody can take the session over).
        let client_id = format!(
            "{}:{session}:{connection}of{connections}",
            own_username(&config)
        );
        let mut options = MqttOptions::new(client_id, host.clone(), port);
        if let Some(secret) = &own_secret {
            options.set_credentials(own_username(&config), secret.clone());
        }
        if let Some(tls) = &client_tls {
            options.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(tls.clone()),
            ));
        }
        options
            .set_clean_session(false)
            .set_manual_acks(true)
            .set_keep_alive(config.mqtt.keep_alive)
            .set_max_packet_size(
                ingest::mqtt::client_packet_limit(config.mqtt.max_payload_bytes),
                4096,
            )
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
    // Peers' replicated readings enter the same pipeline as the broker's.
    let swarm_tx = tx.clone();
    drop(tx);
    if let Some(c) = &chain {
        // Evidence is persisted at ingest before anything else; this resubmits it until the
        // ledger has acted on it (the device is suspended), so a full channel, a restart or a
        // lost transaction never drops a slashing.
        tokio::spawn(resubmit_evidence(
            store.clone(),
            registry.clone(),
            c.evidence_sender(),
            EVIDENCE_RESUBMIT_INTERVAL,
        ));
    }
    let links = match &chain {
        Some(c) => {
            c.start_swarm(&config.p2p, store.clone(), swarm_tx, swarm_metrics)
                .await?
        }
        None => None,
    };
    let ctx = IngestContext {
        config: config.ingest.clone(),
        max_payload: config.mqtt.max_payload_bytes,
        registry,
        store,
        metrics: ingest_metrics.clone(),
        clients,
        generations,
        evidence: chain.as_ref().map(|c| c.evidence_sender()),
        replicate: links.as_ref().map(|l| l.replicate.clone()),
        gap_fill: links.map(|l| l.gap_fill),
    };
    let threads = ingest::spawn_with_production(ctx, rx, Some(production))
        .map_err(|e| NodeError::Io("ingest threads", e))?;
    let mqtt_loop = async move { while loops.join_next().await.is_some() {} };
    let halted = async {
        match &chain {
            Some(c) => c.halted().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        e = halted => {
            tracing::error!(target: "node", error = %e, "ledger halted; stopping the node instead of diverging");
            Err(NodeError::Chain(e))
        }
        () = mqtt_loop => Err(NodeError::IngestStopped("every MQTT connection loop ended".into())),
        failed = threads.failed => match failed {
            Ok(e) => Err(NodeError::Storage(e)),
            Err(_) => Err(NodeError::IngestStopped("the ingest committer thread ended".into())),
        },
        () = shutdown => {
            tracing::info!(target: "node", "shutting down");
            Ok(())
        }
    }
}

/// How often stored device evidence the ledger has not acted on yet is resubmitted.
pub const EVIDENCE_RESUBMIT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(20);

/// Resubmits, every `every`, one stored equivocation per device that is still active on the
/// ledger (one incident slashes once; the ledger refuses the rest as duplicates).
async fn resubmit_evidence(
    store: Store,
    registry: SharedRegistry,
    evidence: tokio::sync::mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    every: std::time::Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let store = store.clone();
        let registry = registry.load();
        let pending = tokio::task::spawn_blocking(move || {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for item in store.evidence() {
                match item {
                    Ok((device, _, first, second)) => {
                        if registry.get(&device).is_some() && seen.insert(device) {
                            out.push((first, second));
                        }
                    }
                    Err(e) => {
                        tracing::error!(target: "node::chain", error = %e, "reading stored evidence failed");
                        break;
                    }
                }
            }
            out
        })
        .await
        .unwrap_or_default();
        for item in pending {
            if evidence.send(item).await.is_err() {
                return;
            }
        }
    }
}

/// Chain id of the devnet genesis (`configs/genesis.toml`).
pub const DEVNET_CHAIN_ID: &str = "groundtruth-devnet";

/// Refuses the devnet chain id and keys derived from a well-known seed (`[n; 32]`, as the
/// devnet's are) on a node not started as part of a devnet.
fn refuse_devnet_identity(config: &NodeConfig) -> Result<(), NodeError> {
    let text = std::fs::read_to_string(&config.node.genesis)
        .map_err(|e| NodeError::Io("reading the genesis file", e))?;
    let chain_id = text
        .parse::<toml::Table>()
        .ok()
        .and_then(|t| {
            t.get("chain_id")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| DEVNET_CHAIN_ID.to_string());
    if chain_id == DEVNET_CHAIN_ID {
        return Err(NodeError::DevnetIdentity(format!(
            "genesis {} has the devnet chain id {DEVNET_CHAIN_ID:?}",
            config.node.genesis.display()
        )));
    }
    let files =
        std::iter::once(&config.consensus.key_file).chain(&config.consensus.operator_key_file);
    for file in files {
        let Ok(key) = groundtruth_device_sdk::keys::load(file) else {
            continue; // the ledger service reports unreadable keys itself
        };
        let id = key.device_id();
        if (0..=u8::MAX)
            .any(|n| groundtruth_device_sdk::DeviceKey::from_seed(&[n; 32]).device_id() == id)
        {
            return Err(NodeError::DevnetIdentity(format!(
                "key {} is a well-known devnet key (seed [n; 32])",
                file.display()
            )));
        }
    }
    Ok(())
}

/// This node's broker username.
fn own_username(config: &NodeConfig) -> String {
    format!("{}{}", broker::VALIDATOR_USER_PREFIX, config.node.name)
}

/// This node's broker secret: from `mqtt.password_file`, or, for its own embedded broker with
/// logins required and no file, a fresh random one (nobody else needs it).
fn own_broker_secret(config: &NodeConfig) -> Result<Option<String>, NodeError> {
    if let Some(path) = &config.mqtt.password_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| NodeError::Io("reading mqtt.password_file", e))?;
        return Ok(Some(text.trim().to_string()));
    }
    if config.mqtt.embedded && config.mqtt.auth {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        return Ok(Some(hex::encode(bytes)));
    }
    Ok(None)
}

/// The random part of this node's MQTT client ids, created once per data directory.
fn session_suffix(data_dir: &std::path::Path) -> Result<String, NodeError> {
    let path = data_dir.join("mqtt-session-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let text = text.trim();
        if text.len() == 32 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(text.to_string());
        }
    }
    let mut bytes = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let id = hex::encode(bytes);
    std::fs::create_dir_all(data_dir)
        .map_err(|e| NodeError::Io("creating the data directory", e))?;
    std::fs::write(&path, &id).map_err(|e| NodeError::Io("writing the MQTT session id", e))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devnet_chain_id_and_keys_need_the_devnet_flag() {
        let dir = tempfile::tempdir().expect("tempdir");
        let genesis = dir.path().join("genesis.toml");
        let mut config = NodeConfig::default();
        config.node.genesis = genesis.clone();
        config.consensus.key_file = dir.path().join("consensus.key");
        std::fs::write(&genesis, "chain_id = \"groundtruth-devnet\"\n").expect("write");
        assert!(matches!(
            refuse_devnet_identity(&config),
            Err(NodeError::DevnetIdentity(_))
        ));
        std::fs::write(&genesis, "chain_id = \"groundtruth-mainnet\"\n").expect("write");
        groundtruth_device_sdk::keys::save(
            &groundtruth_device_sdk::DeviceKey::from_seed(&[40; 32]),
            &config.consensus.key_file,
        )
        .expect("save");
        assert!(matches!(
            refuse_devnet_identity(&config),
            Err(NodeError::DevnetIdentity(_))
        ));
        std::fs::remove_file(&config.consensus.key_file).expect("remove");
        groundtruth_device_sdk::keys::save(
            &groundtruth_device_sdk::DeviceKey::from_seed(&[
                7, 1, 9, 3, 5, 8, 2, 6, 4, 0, 7, 1, 9, 3, 5, 8, 2, 6, 4, 0, 7, 1, 9, 3, 5, 8, 2, 6,
                4, 0, 1, 2,
            ]),
            &config.consensus.key_file,
        )
        .expect("save");
        assert!(refuse_devnet_identity(&config).is_ok());
    }

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
