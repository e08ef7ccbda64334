//! One builder for the test swarms: identities from ed25519 seeds, nodes on ephemeral ports,
//! and polling with deadlines.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use groundtruth_p2p::{
    peer_id_of, Inbound, Multiaddr, NoReadings, P2p, P2pConfig, P2pHandle, PeerId, ReadingsSource,
    Topic, Verdict,
};
use tokio::sync::{mpsc, watch};

/// Long enough for a loaded 2-core machine; tests poll and return as soon as they can.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// A validator identity: its consensus secret and the peer id derived from its public key.
#[derive(Clone, Copy)]
pub struct Identity {
    pub secret: [u8; 32],
    pub peer: PeerId,
}

pub fn identity(seed: u8) -> Identity {
    let secret = [seed; 32];
    let public = SigningKey::from_bytes(&secret).verifying_key().to_bytes();
    Identity {
        secret,
        peer: peer_id_of(public).expect("valid public key"),
    }
}

pub fn config(bootstrap: Vec<Multiaddr>) -> P2pConfig {
    P2pConfig {
        listen: "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr"),
        bootstrap,
        heartbeat_interval: Duration::from_millis(200),
        discovery_interval: Duration::from_millis(300),
        request_timeout: Duration::from_secs(5),
        ..P2pConfig::default()
    }
}

pub struct Node {
    pub id: Identity,
    pub handle: P2pHandle,
    pub inbound: Option<mpsc::Receiver<Inbound>>,
    pub allowed: watch::Sender<HashSet<PeerId>>,
}

impl Node {
    pub async fn start(id: Identity, allowed: &[Identity], config: P2pConfig) -> Node {
        Self::start_with(id, allowed, config, Arc::new(NoReadings)).await
    }

    pub async fn start_with(
        id: Identity,
        allowed: &[Identity],
        config: P2pConfig,
        source: Arc<dyn ReadingsSource>,
    ) -> Node {
        // Logs with RUST_LOG (e.g. `node::p2p=debug`), captured per test.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (tx, rx) = watch::channel(allowed.iter().map(|i| i.peer).collect());
        let (handle, inbound) = P2p::spawn(config, id.secret, rx, source)
            .await
            .expect("p2p starts");
        assert_eq!(
            handle.local_peer_id(),
            id.peer,
            "libp2p id follows the consensus key"
        );
        Node {
            id,
            handle,
            inbound: Some(inbound),
            allowed: tx,
        }
    }

    /// This node's address, with its peer id.
    pub fn addr(&self) -> Multiaddr {
        format!("{}/p2p/{}", self.handle.listen_addrs()[0], self.id.peer)
            .parse()
            .expect("multiaddr")
    }

    pub async fn connected(&self) -> HashSet<PeerId> {
        self.handle
            .connected_peers()
            .await
            .expect("task alive")
            .into_iter()
            .collect()
    }

    /// Runs an application on the inbound channel: `judge` decides each message; every
    /// delivered message is reported on the returned channel as (author, topic, data).
    pub fn run_app(
        &mut self,
        judge: fn(&[u8]) -> Verdict,
    ) -> mpsc::UnboundedReceiver<(PeerId, Topic, Vec<u8>)> {
        let mut inbound = self.inbound.take().expect("app started once");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(msg) = inbound.recv().await {
                let Inbound {
                    topic,
                    source,
                    data,
                    validation,
                    ..
                } = msg;
                validation.report(judge(&data));
                let _ = tx.send((source, topic, data));
            }
        });
        rx
    }
}

pub fn accept_all(_: &[u8]) -> Verdict {
    Verdict::Accept
}

/// Polls `probe` every 50 ms until it returns `Some`, or panics after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every node is connected to every other one and sees it subscribed to `topic`.
pub async fn full_mesh(nodes: &[&Node], topic: Topic) {
    for a in nodes {
        let want: HashSet<PeerId> = nodes
            .iter()
            .map(|n| n.id.peer)
            .filter(|p| *p != a.id.peer)
            .collect();
        eventually("every peer subscribed", || async {
            let got: HashSet<PeerId> = a
                .handle
                .topic_peers(topic)
                .await
                .expect("alive")
                .into_iter()
                .collect();
            want.is_subset(&got).then_some(())
        })
        .await;
    }
}

/// Publishes, retrying while no peer is subscribed yet.
pub async fn publish(node: &Node, topic: Topic, data: &[u8]) {
    eventually("publish accepted", || async {
        match node.handle.publish(topic, data.to_vec()).await {
            Ok(()) => Some(()),
            Err(groundtruth_p2p::P2pError::NoPeers(_)) => None,
            Err(e) => panic!("publish failed: {e}"),
        }
    })
    .await
}

/// Waits for a message with exactly `data` on `rx`, returning its author; other messages seen
/// meanwhile are returned too.
pub async fn receive(
    rx: &mut mpsc::UnboundedReceiver<(PeerId, Topic, Vec<u8>)>,
    data: &[u8],
) -> (PeerId, Topic, Vec<(PeerId, Topic, Vec<u8>)>) {
    let mut others = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some((src, topic, d)) = rx.recv().await {
            if d == data {
                return Some((src, topic));
            }
            others.push((src, topic, d));
        }
        None
    })
    .await;
    match found {
        Ok(Some((src, topic))) => (src, topic, others),
        _ => panic!("message {:?} not delivered", String::from_utf8_lossy(data)),
    }
}

/// Everything delivered on `rx` within `quiet` (a bounded wait for things that must not come).
pub async fn drain_for(
    rx: &mut mpsc::UnboundedReceiver<(PeerId, Topic, Vec<u8>)>,
    quiet: Duration,
) -> Vec<(PeerId, Topic, Vec<u8>)> {
    let mut out = Vec::new();
    let end = tokio::time::Instant::now() + quiet;
    while let Ok(Some(m)) = tokio::time::timeout_at(end, rx.recv()).await {
        out.push(m);
    }
    out
}
