//! The embedded broker's TLS front over real sockets: a device logs in over TLS and its reading
//! reaches a validator; an idle connection that never sends a ClientHello does not stall other
//! handshakes (the rumqttd listener bug the front exists to avoid); a client that does not trust
//! the certificate is refused.

mod support;

use groundtruth_device_sdk::{login_token, topics, DeviceKey};
use groundtruth_node::ingest::tls;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{connects, free_addr, start_broker, VALIDATOR_SECRET};

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
    let plain = free_addr();
    start_broker(plain, &[&key]);
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
    vo.set_credentials("validator:v0", VALIDATOR_SECRET);
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
