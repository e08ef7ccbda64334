//! The embedded broker's TLS front over real sockets: a device logs in over TLS and its reading
//! reaches a validator; an idle connection that never sends a ClientHello does not stall other
//! handshakes (the rumqttd listener bug the front exists to avoid); a client that does not trust
//! the certificate is refused.

use groundtruth_device_sdk::{login_token, topics, DeviceKey, ReadingKind};
use groundtruth_node::ingest::broker::{self, BrokerAuth, BrokerConfig};
use groundtruth_node::ingest::registry::{DeviceRecord, Registry, SharedRegistry};
use groundtruth_node::ingest::tls;
use prometheus_client::metrics::counter::Counter;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn connects(eventloop: &mut EventLoop) -> bool {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_log_in_over_tls_and_idle_connections_do_not_stall_handshakes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.cert.pem()).expect("write cert");
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).expect("write key");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, other.cert.pem()).expect("write");

    let key = DeviceKey::from_seed(&[31; 32]);
    let registry = Registry::from_records([(
        key.device_id(),
        DeviceRecord {
            kind: ReadingKind::Energy,
            capacity: 1000,
        },
    )]);
    let plain = free_addr();
    broker::start(&BrokerConfig {
        listen: plain,
        max_payload_bytes: 1024,
        max_inflight: 100,
        max_connections: 100,
        auth: Some(BrokerAuth {
            registry: SharedRegistry::new(registry),
            secrets: Arc::new(HashMap::from([(
                "validator:v0".to_string(),
                broker::secret_hash("validator secret"),
            )])),
            max_skew_s: 300,
            refused_logins: Counter::default(),
            refused_packets: Counter::default(),
        }),
    })
    .expect("broker");
    let secure = free_addr();
    tls::serve(
        tls::TlsFrontConfig {
            listen: secure,
            broker: plain,
            handshake_timeout: Duration::from_secs(2),
            max_connections: 100,
        },
        tls::server_config(&cert_file, &key_file).expect("server config"),
    )
    .await
    .expect("tls front");

    // A validator over TLS, trusting the certificate.
    let trust = tls::client_config(&cert_file).expect("client config");
    let mut vo = MqttOptions::new("validator:v0:ab12:0of1", "localhost", secure.port());
    vo.set_credentials("validator:v0", "validator secret");
    vo.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        trust.clone(),
    )));
    let (validator, mut vloop) = AsyncClient::new(vo, 10);
    assert!(connects(&mut vloop).await, "validator logs in over TLS");
    validator
        .subscribe("gt/v1/readings/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (got_tx, mut got_rx) = tokio::sync::mpsc::channel::<String>(10);
    tokio::spawn(async move {
        while let Ok(ev) = vloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = got_tx.send(p.topic).await;
            }
        }
    });

    // Idle connections that never start a handshake.
    let _idle: Vec<tokio::net::TcpStream> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(
                tokio::net::TcpStream::connect(secure)
                    .await
                    .expect("idle connect"),
            );
        }
        v
    };

    // The device still logs in at once, over TLS, and its reading reaches the validator.
    let id = key.device_id().to_string();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut o = MqttOptions::new(id.clone(), "localhost", secure.port());
    o.set_credentials(id.clone(), login_token(&key, &id, now));
    o.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(trust)));
    let (device, mut dloop) = AsyncClient::new(o, 10);
    assert!(
        connects(&mut dloop).await,
        "device logs in over TLS beside idle connections"
    );
    device
        .publish(
            topics::readings_topic(&key.device_id()),
            QoS::AtLeastOnce,
            false,
            vec![1u8; 8],
        )
        .await
        .expect("publish");
    tokio::spawn(async move { while dloop.poll().await.is_ok() {} });
    let got = tokio::time::timeout(Duration::from_secs(5), got_rx.recv())
        .await
        .expect("validator receives the reading over TLS");
    assert_eq!(
        got.as_deref(),
        Some(topics::readings_topic(&key.device_id()).as_str())
    );

    // A client that trusts another certificate is refused at the handshake.
    let mut bad = MqttOptions::new(id.clone(), "localhost", secure.port());
    bad.set_credentials(id.clone(), login_token(&key, &id, now));
    bad.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        tls::client_config(&other_ca).expect("config"),
    )));
    let (_c, mut bloop) = AsyncClient::new(bad, 10);
    assert!(
        !connects(&mut bloop).await,
        "an untrusted certificate is refused"
    );
}
