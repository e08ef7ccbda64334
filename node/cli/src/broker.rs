//! `groundtruth broker`: run the embedded MQTT broker on its own, e.g. shared by validators.

use std::process::ExitCode;

/// Arguments of `groundtruth broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub listen: std::net::SocketAddr,
}

/// Runs the broker until Ctrl-C.
pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    groundtruth_node::ingest::broker::start(&groundtruth_node::ingest::broker::BrokerConfig {
        listen: args.listen,
        max_payload_bytes: 1024,
        max_inflight: 1000,
        max_connections: 10_000,
    })?;
    tracing::info!(target: "node::broker", listen = %args.listen, "MQTT broker listening");
    loop {
        std::thread::park();
    }
}
