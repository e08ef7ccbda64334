//! `groundtruth broker`: run the embedded MQTT broker on its own, open (no logins, no topic
//! rules), for tests and benchmarks on loopback. A broker devices reach is embedded in a
//! validator (which knows the registry to check device logins) or an external cluster.

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
    anyhow::ensure!(
        args.listen.ip().is_loopback(),
        "the standalone broker is open (no logins): it listens on loopback only; embed the broker in a validator with mqtt.auth = true to serve devices"
    );
    groundtruth_node::ingest::broker::start(&groundtruth_node::ingest::broker::BrokerConfig {
        listen: args.listen,
        max_payload_bytes: 1024,
        max_inflight: 1000,
        max_connections: 10_000,
        auth: None,
        oversized: Default::default(),
    })?;
    tracing::info!(target: "node::broker", listen = %args.listen, "MQTT broker listening");
    loop {
        std::thread::park();
    }
}
