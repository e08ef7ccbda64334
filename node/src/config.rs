//! Typed node configuration. Precedence: defaults → TOML file → `GROUNDTRUTH__SECTION__KEY`
//! environment variables → command-line flags (applied by the CLI).

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Errors loading configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file (or an environment override) is not valid TOML for this schema.
    #[error("parsing {origin}: {message}")]
    Parse {
        /// Where the bad text came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("invalid configuration: {key}: {message}")]
    Invalid {
        /// `section.key`.
        key: &'static str,
        /// What is wrong and what would do.
        message: String,
    },
}

/// Everything a validator node needs to run.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Storage and identity.
    pub node: NodeSection,
    /// Where readings arrive.
    pub mqtt: MqttSection,
    /// Ingest pipeline sizes.
    pub ingest: IngestSection,
    /// Prometheus endpoint.
    pub metrics: MetricsSection,
    /// Replicated ledger (BFT consensus); off by default.
    pub consensus: ConsensusSection,
    /// The validator's audit loop (with consensus, an operator key and timed epochs).
    pub audit: crate::audit::AuditSection,
    /// The validators' own swarm (with consensus): gossip and readings replication.
    pub p2p: crate::chain::swarm::P2pSection,
    /// Anchoring committed epochs on L1 (with consensus, an operator key and an L1 key).
    pub oracle: crate::oracle::OracleSection,
    /// How long raw readings are kept (with consensus and timed epochs).
    pub retention: crate::retention::RetentionSection,
    /// The HTTP API's per-client rate limit.
    pub api: ApiSection,
}

/// The HTTP API served on `[metrics] listen`: the per-client-IP rate limit of its public read
/// routes (`/v1/…`, `/openapi.json`, `/docs`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    /// Requests per second each client IP (IPv6: each /64) may make, refilled continuously;
    /// more are answered `429 rate_limited` with `Retry-After`. 0 disables the limit.
    /// Default 50.
    pub rate_limit_per_s: u32,
    /// Requests a client may make at once above the rate. Default 100.
    pub rate_limit_burst: u32,
}

impl Default for ApiSection {
    fn default() -> Self {
        let d = groundtruth_api::ApiConfig::default();
        Self {
            rate_limit_per_s: d.rate_limit_per_s,
            rate_limit_burst: d.rate_limit_burst,
        }
    }
}

/// Storage and identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSection {
    /// Human-readable node name, used in the MQTT client id and logs.
    pub name: String,
    /// Directory holding the sled database.
    pub data_dir: PathBuf,
    /// Genesis file: the device registry until the ledger takes it over.
    pub genesis: PathBuf,
    /// This node is part of a devnet: it may run the devnet chain id and the well-known devnet
    /// keys (derived from seeds anyone knows). Without it the node refuses both.
    pub devnet: bool,
}

impl Default for NodeSection {
    fn default() -> Self {
        Self {
            name: "node0".into(),
            data_dir: PathBuf::from(".devnet/node0"),
            genesis: PathBuf::from("configs/genesis.toml"),
            devnet: false,
        }
    }
}

/// Where readings arrive: an embedded rumqttd broker, or an external broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MqttSection {
    /// Start an embedded broker listening on `listen`.
    pub embedded: bool,
    /// Listen address of the embedded broker.
    pub listen: SocketAddr,
    /// Broker the node subscribes to (`mqtt://host:port`); the embedded one by default.
    pub url: String,
    /// Largest MQTT payload accepted, bytes (frames are at most 154 bytes).
    pub max_payload_bytes: usize,
    /// Unacknowledged QoS 1 messages the broker may have in flight to this node.
    pub max_inflight: u16,
    /// MQTT connections the node reads readings over; the 16 readings partitions are spread
    /// over them. More than one lifts a broker's per-connection in-flight window (rumqttd's is
    /// fixed at 100 messages), which otherwise caps ingest with acks after every flush.
    pub connections: u8,
    /// Keep-alive interval.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// The embedded broker requires logins and enforces the topic rules (devices publish only
    /// to their own topic, only validators read readings; see `ingest::broker`). Off only for
    /// tests and benchmarks on loopback: a node refuses to start an open broker elsewhere.
    pub auth: bool,
    /// Credentials of validators and gateways for the embedded broker: lines
    /// `validator:<name> <blake3 hex of secret>` or `gateway:<name> <…>`.
    pub credentials_file: Option<PathBuf>,
    /// This node's own broker secret (file holding it), used with username
    /// `validator:<node name>` when its broker requires logins.
    pub password_file: Option<PathBuf>,
    /// Largest clock difference accepted in a device's login token.
    #[serde(with = "humantime_serde")]
    pub login_skew: Duration,
    /// TLS listener of the embedded broker (terminated in the node, relayed to `listen`);
    /// needs `tls_cert_file` and `tls_key_file`.
    pub tls_listen: Option<SocketAddr>,
    /// Certificate chain (PEM) of the TLS listener.
    pub tls_cert_file: Option<PathBuf>,
    /// Private key (PEM) of the TLS listener.
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) this node's client trusts when `url` is `mqtts://host:port`.
    pub tls_ca_file: Option<PathBuf>,
}

impl Default for MqttSection {
    fn default() -> Self {
        Self {
            embedded: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            url: "mqtt://127.0.0.1:1883".into(),
            max_payload_bytes: 1024,
            max_inflight: 1000,
            connections: 4,
            keep_alive: Duration::from_secs(30),
            auth: false,
            credentials_file: None,
            password_file: None,
            login_skew: Duration::from_secs(300),
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_ca_file: None,
        }
    }
}

/// Ingest pipeline sizes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSection {
    /// Most readings verified in one signature batch.
    pub verify_batch: usize,
    /// Most readings made durable by one flush (group commit) before they are acknowledged.
    pub commit_batch: usize,
    /// Capacity of each bounded queue between pipeline stages; must exceed the broker's
    /// in-flight window so the MQTT event loop never waits on it.
    pub queue_capacity: usize,
    /// How often a device with a sequence gap is asked to resend, at most.
    #[serde(with = "humantime_serde")]
    pub resend_interval: Duration,
    /// Readings one device may send at once before its rate applies (checked before the
    /// signature): enough for a device delivering a day of 5-minute readings after an outage.
    pub device_burst: u32,
    /// Sustained readings per second one device may send.
    pub device_rate_per_s: f64,
    /// How far in the future (node clock) a reading's interval may end.
    #[serde(with = "humantime_serde")]
    pub max_clock_skew: Duration,
}

impl Default for IngestSection {
    fn default() -> Self {
        Self {
            verify_batch: 256,
            commit_batch: 1024,
            queue_capacity: 8192,
            resend_interval: Duration::from_secs(5),
            device_burst: 1000,
            device_rate_per_s: 20.0,
            max_clock_skew: Duration::from_secs(120),
        }
    }
}

/// Prometheus endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSection {
    /// Address serving `/metrics` and `/healthz`.
    pub listen: SocketAddr,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

/// The replicated ledger: Malachite BFT between validators, the ledger state machine, the
/// transaction API. Without it (`enabled = false`) the node checks devices against the
/// genesis file only.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusSection {
    /// Run consensus and the ledger.
    pub enabled: bool,
    /// Address the consensus libp2p swarm listens on: `host:port` or `/ip4/A/tcp/P`.
    pub listen: String,
    /// Other validators' consensus addresses (same forms as `listen`).
    pub peers: Vec<String>,
    /// Other validators' HTTP endpoints (`host:port` of their metrics/API server): accepted
    /// transactions are forwarded there once (the mempool gossip).
    pub http_peers: Vec<String>,
    /// Key file (`groundtruth keygen` format) holding the consensus (vote-signing) key.
    pub key_file: PathBuf,
    /// Key file of this validator's operator account: signs slashing transactions built from
    /// evidence. Optional; without it evidence is logged, not submitted.
    pub operator_key_file: Option<PathBuf>,
    /// Consensus home (write-ahead log, decided blocks); `<data_dir>/consensus` when empty.
    pub home: Option<PathBuf>,
    /// Minimum duration of a height.
    #[serde(with = "humantime_serde")]
    pub block_time: Duration,
    /// Round-0 propose timeout.
    #[serde(with = "humantime_serde")]
    pub timeout_propose: Duration,
    /// Prevote timeout.
    #[serde(with = "humantime_serde")]
    pub timeout_prevote: Duration,
    /// Precommit timeout.
    #[serde(with = "humantime_serde")]
    pub timeout_precommit: Duration,
    /// Vote rebroadcast interval.
    #[serde(with = "humantime_serde")]
    pub timeout_rebroadcast: Duration,
    /// Largest encoded block, bytes.
    pub max_block_bytes: usize,
    /// Most pending transactions in the mempool.
    pub mempool_max_txs: usize,
    /// How often peers are told our height (drives catch-up).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
}

impl Default for ConsensusSection {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:26656".into(),
            peers: Vec::new(),
            http_peers: Vec::new(),
            key_file: PathBuf::from("consensus.key"),
            operator_key_file: None,
            home: None,
            block_time: Duration::from_millis(500),
            timeout_propose: Duration::from_millis(1500),
            timeout_prevote: Duration::from_millis(500),
            timeout_precommit: Duration::from_millis(500),
            timeout_rebroadcast: Duration::from_millis(2500),
            max_block_bytes: 1 << 20,
            mempool_max_txs: 50_000,
            sync_interval: Duration::from_secs(1),
        }
    }
}

impl NodeConfig {
    /// Loads defaults, then the file (if any), then `GROUNDTRUTH__SECTION__KEY` overrides.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        origin: p.display().to_string(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        apply_env_overrides(&mut table, std::env::vars())?;
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                origin: path.map_or_else(|| "defaults".into(), |p| p.display().to_string()),
                message: e.to_string(),
            })
    }
}

impl NodeConfig {
    /// Checks values a node cannot run with, with a message naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.into(),
            })
        };
        if self.node.name.is_empty() || self.node.name.contains([':', '/', '#', '+', ' ']) {
            return bad(
                "node.name",
                "must be non-empty, without ':', '/', '#', '+' or spaces (it is part of MQTT ids)",
            );
        }
        if let Err((key, message)) = self.retention.validate() {
            return bad(key, &message);
        }
        if self.ingest.verify_batch == 0 {
            return bad("ingest.verify_batch", "must be at least 1");
        }
        if self.ingest.commit_batch == 0 {
            return bad("ingest.commit_batch", "must be at least 1");
        }
        if self.ingest.queue_capacity < usize::from(self.mqtt.max_inflight) {
            return bad("ingest.queue_capacity", "must be at least mqtt.max_inflight, or the MQTT loop waits on ingest with acks pending");
        }
        if self.ingest.device_burst == 0 {
            return bad("ingest.device_burst", "must be at least 1");
        }
        if !(self.ingest.device_rate_per_s.is_finite() && self.ingest.device_rate_per_s > 0.0) {
            return bad("ingest.device_rate_per_s", "must be a positive number");
        }
        if self.mqtt.max_payload_bytes < groundtruth_device_sdk::MAX_FRAME_LEN {
            return bad(
                "mqtt.max_payload_bytes",
                "must be at least the largest reading frame",
            );
        }
        if self.mqtt.connections == 0 {
            return bad("mqtt.connections", "must be at least 1");
        }
        if self.mqtt.max_inflight == 0 {
            return bad("mqtt.max_inflight", "must be at least 1");
        }
        let (tls_url, plain_url) = match self.mqtt.url.strip_prefix("mqtts://") {
            Some(rest) => (true, rest),
            None => (false, self.mqtt.url.as_str()),
        };
        if groundtruth_device_sdk::topics::broker_address(plain_url).is_none() {
            return bad("mqtt.url", "expected mqtt://host:port or mqtts://host:port");
        }
        if tls_url && self.mqtt.tls_ca_file.is_none() {
            return bad(
                "mqtt.tls_ca_file",
                "an mqtts:// url needs the CA certificate(s) to trust",
            );
        }
        if self.mqtt.tls_listen.is_some()
            && (self.mqtt.tls_cert_file.is_none() || self.mqtt.tls_key_file.is_none())
        {
            return bad("mqtt.tls_listen", "needs tls_cert_file and tls_key_file");
        }
        if self.mqtt.embedded && !self.mqtt.auth && !self.mqtt.listen.ip().is_loopback() {
            return bad(
                "mqtt.auth",
                "an embedded broker listening beyond loopback must require logins (auth = true)",
            );
        }
        if self.consensus.enabled {
            for peer in std::iter::once(&self.consensus.listen).chain(&self.consensus.peers) {
                if !is_peer_addr(peer) {
                    return Err(ConfigError::Invalid {
                        key: "consensus.peers",
                        message: format!(
                            "{peer:?}: expected host:port or /ip4|ip6|dns4|dns6|dns/HOST/tcp/PORT"
                        ),
                    });
                }
            }
            if self.consensus.max_block_bytes == 0 || self.consensus.mempool_max_txs == 0 {
                return bad(
                    "consensus.max_block_bytes",
                    "block and mempool limits must be at least 1",
                );
            }
        }
        Ok(())
    }
}

/// Whether `s` is `host:port` or a `/ip4|ip6|dns4|dns6|dns/HOST/tcp/PORT` multiaddr.
fn is_peer_addr(s: &str) -> bool {
    let port_ok = |p: &str| p.parse::<u16>().is_ok_and(|p| p != 0);
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6" | "dns4" | "dns6" | "dns", host, "tcp", port] => {
            !host.is_empty() && port_ok(port)
        }
        _ => s
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port_ok(port)),
    }
}

/// Applies `GROUNDTRUTH__SECTION__KEY=value` variables onto a TOML table. Values are parsed as
/// TOML when they can be (numbers, booleans), else taken as strings.
fn apply_env_overrides(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> Result<(), ConfigError> {
    for (key, value) in vars {
        let Some(rest) = key.strip_prefix("GROUNDTRUTH__") else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        let [section, field] = parts.as_slice() else {
            return Err(ConfigError::Parse {
                origin: key.clone(),
                message: "expected GROUNDTRUTH__SECTION__KEY".into(),
            });
        };
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(value));
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => {
                t.insert(field.clone(), parsed);
            }
            _ => {
                return Err(ConfigError::Parse {
                    origin: key.clone(),
                    message: format!("{section} is not a section"),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_key() {
        assert!(NodeConfig::default().validate().is_ok());
        let mut c = NodeConfig::default();
        c.ingest.commit_batch = 0;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "ingest.commit_batch",
                ..
            })
        ));
        let mut c = NodeConfig::default();
        c.mqtt.listen = SocketAddr::from(([0, 0, 0, 0], 1883));
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "mqtt.auth",
                ..
            })
        ));
        c.mqtt.auth = true;
        assert!(c.validate().is_ok());
        let mut c = NodeConfig::default();
        c.consensus.enabled = true;
        c.consensus.peers = vec![
            "/ip4/10.0.0.1/tcp/27000".into(),
            "/dns4/v2.internal/tcp/27000".into(),
        ];
        assert!(c.validate().is_ok());
        c.consensus.peers.push("/ip4/10.0.0.1/udp/27000".into());
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Invalid {
                key: "consensus.peers",
                ..
            })
        ));
    }

    #[test]
    fn env_overrides_file_values() {
        let mut t: toml::Table = "[mqtt]\nembedded = true\n".parse().unwrap_or_default();
        let vars = vec![
            (
                "GROUNDTRUTH__MQTT__EMBEDDED".to_string(),
                "false".to_string(),
            ),
            (
                "GROUNDTRUTH__NODE__NAME".to_string(),
                "validator-7".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        apply_env_overrides(&mut t, vars.into_iter()).expect("overrides apply");
        let cfg: NodeConfig = toml::Value::Table(t).try_into().expect("valid config");
        assert!(!cfg.mqtt.embedded);
        assert_eq!(cfg.node.name, "validator-7");
        assert_eq!(cfg.ingest, IngestSection::default());
    }

    #[test]
    fn api_rate_limit_from_file_and_env() {
        let d = NodeConfig::default();
        assert_eq!((d.api.rate_limit_per_s, d.api.rate_limit_burst), (50, 100));
        let mut t: toml::Table = "[api]\nrate_limit_per_s = 7\nrate_limit_burst = 9\n"
            .parse()
            .unwrap_or_default();
        let file: NodeConfig = toml::Value::Table(t.clone()).try_into().unwrap_or_default();
        assert_eq!(
            (file.api.rate_limit_per_s, file.api.rate_limit_burst),
            (7, 9)
        );
        let vars = vec![(
            "GROUNDTRUTH__API__RATE_LIMIT_PER_S".to_string(),
            "0".to_string(),
        )];
        assert!(apply_env_overrides(&mut t, vars.into_iter()).is_ok());
        let env: NodeConfig = toml::Value::Table(t).try_into().unwrap_or_default();
        assert_eq!((env.api.rate_limit_per_s, env.api.rate_limit_burst), (0, 9));
        let api = crate::chain::read_model::api_config_for(&env);
        assert_eq!((api.rate_limit_per_s, api.rate_limit_burst), (0, 9));
        let bad: Result<NodeConfig, _> =
            toml::Value::Table("[api]\nrate_limit = 1\n".parse().unwrap_or_default()).try_into();
        assert!(bad.is_err(), "unknown keys are refused");
    }

    #[test]
    fn malformed_override_is_an_error() {
        let mut t = toml::Table::new();
        let vars = vec![("GROUNDTRUTH__MQTT".to_string(), "1".to_string())];
        assert!(apply_env_overrides(&mut t, vars.into_iter()).is_err());
    }
}
