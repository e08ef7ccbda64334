//! Test scaffolding: an in-process rumqttd broker, a TCP gate in front of it (so a test decides
//! when the broker is reachable), and a subscriber that collects frames.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use groundtruth_device_sdk::{DeviceKey, Publisher, PublisherConfig, SignedReading};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Starts rumqttd on a free port in its own threads; it lives until the test process ends.
pub fn start_broker() -> SocketAddr {
    start_broker_with(None, |_| {})
}

/// How a test broker authenticates: a password map, and/or an auth hook set by `hook`.
pub fn start_broker_with(
    passwords: Option<HashMap<String, String>>,
    hook: impl FnOnce(&mut rumqttd::ServerSettings),
) -> SocketAddr {
    use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut server = ServerSettings {
        name: "v4-test".into(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 20_480,
            max_inflight_count: 100,
            auth: passwords,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    hook(&mut server);
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 100,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 2,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    std::thread::spawn(move || {
        let mut broker = Broker::new(config);
        let _ = broker.start();
    });
    // Wait until it accepts connections.
    for _ in 0..200 {
        if std::net::TcpStream::connect(listen).is_ok() {
            return listen;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("broker did not start on {listen}");
}

/// A TCP forwarder on a fixed port: closed, the broker is unreachable (connection refused);
/// open, connections are forwarded to the broker. Closing also cuts live connections.
pub struct Gate {
    pub port: u16,
    target: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Gate {
    pub fn new(target: SocketAddr) -> Self {
        Self {
            port: free_port(),
            target,
            tasks: Arc::default(),
        }
    }

    pub async fn open(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        let target = self.target;
        let tasks = Arc::clone(&self.tasks);
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().await.push(conn);
            }
        });
        self.tasks.lock().await.push(accept);
    }

    pub async fn close(&self) {
        for t in self.tasks.lock().await.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

/// A subscriber to one topic; every message's payload arrives on `rx`.
pub struct Subscriber {
    pub client: AsyncClient,
    pub rx: mpsc::Receiver<Vec<u8>>,
    task: JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to `broker` and subscribes to `filter` with QoS 1; returns once SUBACKed.
    pub async fn connect(broker: SocketAddr, filter: &str) -> Self {
        Self::connect_as(broker, filter, None).await
    }

    /// As [`Subscriber::connect`], logging in with `login` (username, password).
    pub async fn connect_as(broker: SocketAddr, filter: &str, login: Option<(&str, &str)>) -> Self {
        let mut opts = MqttOptions::new(
            format!("test-sub-{}", free_port()),
            broker.ip().to_string(),
            broker.port(),
        );
        opts.set_keep_alive(Duration::from_secs(5));
        if let Some((user, pass)) = login {
            opts.set_credentials(user, pass);
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        client.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        let (tx, rx) = mpsc::channel(4096);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::SubAck(_))) => {
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        if tx.send(p.payload.to_vec()).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(5), ready_rx)
            .await
            .expect("SUBACK in time")
            .unwrap();
        Self { client, rx, task }
    }

    /// The next frame, decoded and signature-checked, or `None` after `wait`.
    pub async fn next_reading(&mut self, wait: Duration) -> Option<SignedReading> {
        let payload = tokio::time::timeout(wait, self.rx.recv()).await.ok()??;
        let s = SignedReading::decode_frame(&payload).expect("frame decodes");
        s.verify().expect("signature verifies");
        Some(s)
    }

    /// Exactly the next `n` readings' sequence numbers (fails the test on a timeout).
    pub async fn take_seqs(&mut self, n: usize) -> Vec<u64> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let s = self
                .next_reading(Duration::from_secs(5))
                .await
                .unwrap_or_else(|| panic!("only {} of {n} readings arrived: {out:?}", out.len()));
            out.push(s.reading.seq);
        }
        out
    }
}

/// A publisher config for a broker at 127.0.0.1:`port` with fast reconnects (default
/// credentials: the device id and a login token).
pub fn publisher_config(port: u16, dir: &std::path::Path) -> PublisherConfig {
    let mut c = PublisherConfig::new("127.0.0.1", port, dir);
    c.reconnect_delay = Duration::from_millis(50);
    c.keep_alive = Duration::from_secs(5);
    c.inflight = std::num::NonZeroU16::new(8).unwrap();
    c
}

pub fn test_key(n: u8) -> DeviceKey {
    DeviceKey::from_seed(&[n; 32])
}

pub fn start_publisher(key_seed: u8, port: u16, dir: &std::path::Path) -> Publisher {
    Publisher::start(test_key(key_seed), publisher_config(port, dir)).unwrap()
}
