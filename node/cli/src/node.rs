//! `groundtruth node`: run a validator.

use groundtruth_node::config::NodeConfig;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `groundtruth node`. Flags override the config file and the environment.
#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// Config file (TOML); defaults apply without one.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (sled database).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Genesis file with the device registry.
    #[arg(long)]
    pub genesis: Option<PathBuf>,
    /// Subscribe to this broker instead of (or as well as) the embedded one, `mqtt://host:port`.
    #[arg(long)]
    pub mqtt_url: Option<String>,
    /// Do not start the embedded broker.
    #[arg(long)]
    pub no_embedded_broker: bool,
    /// Embedded broker listen address.
    #[arg(long)]
    pub broker_listen: Option<std::net::SocketAddr>,
    /// Metrics listen address.
    #[arg(long)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Node name (MQTT client id suffix).
    #[arg(long)]
    pub name: Option<String>,
    /// Part of a devnet: allow the devnet chain id and the well-known devnet keys.
    #[arg(long)]
    pub devnet: bool,
}

impl NodeArgs {
    /// The configuration after file, environment and flags.
    pub fn resolve(&self) -> anyhow::Result<NodeConfig> {
        let mut c = NodeConfig::load(self.config.as_deref())?;
        if let Some(v) = &self.data_dir {
            c.node.data_dir = v.clone();
        }
        if let Some(v) = &self.genesis {
            c.node.genesis = v.clone();
        }
        if let Some(v) = &self.name {
            c.node.name = v.clone();
        }
        if let Some(v) = self.broker_listen {
            c.mqtt.listen = v;
            if self.mqtt_url.is_none() {
                c.mqtt.url = format!("mqtt://{v}");
            }
        }
        if let Some(v) = &self.mqtt_url {
            c.mqtt.url = v.clone();
        }
        if self.devnet {
            c.node.devnet = true;
        }
        if self.no_embedded_broker {
            c.mqtt.embedded = false;
        }
        if let Some(v) = self.metrics_listen {
            c.metrics.listen = v;
        }
        Ok(c)
    }
}

/// Runs `groundtruth node` until Ctrl-C.
pub fn run(args: NodeArgs) -> anyhow::Result<ExitCode> {
    let config = args.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(groundtruth_node::node::run(
        config,
        groundtruth_node::node::Telemetry::default(),
        async {
            let _ = tokio::signal::ctrl_c().await;
        },
    ))?;
    Ok(ExitCode::SUCCESS)
}
