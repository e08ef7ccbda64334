//! The embedded broker with logins and the ACL, over real TCP with real MQTT clients: a device
//! cannot publish to another device's topic, cannot take over another device's session, cannot
//! retain; a validator receives only what devices may publish.

mod support;

use groundtruth_device_sdk::{login_token, topics, DeviceKey};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::{connects, free_addr, start_broker, VALIDATOR_SECRET};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn device_options(addr: SocketAddr, client_id: &str, key: &DeviceKey) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    o.set_credentials(client_id, login_token(key, client_id, now()));
    o.set_keep_alive(Duration::from_secs(5));
    o
}

/// Polls until the connection fails (true) or `within` passes (false).
async fn is_cut(eventloop: &mut EventLoop, within: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, eventloop.poll()).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return true,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_are_confined_to_their_own_topics_and_sessions() {
    let a = DeviceKey::from_seed(&[21; 32]);
    let b = DeviceKey::from_seed(&[22; 32]);
    let addr = free_addr();
    let refusals = start_broker(addr, &[&a, &b]);
    let (refused_logins, refused_packets) = (refusals.logins, refusals.packets);

    // The validator reads every reading.
    let mut vo = MqttOptions::new("validator:v0:7f3a9c:0of1", "127.0.0.1", addr.port());
    vo.set_credentials("validator:v0", VALIDATOR_SECRET);
    let (validator, mut vloop) = AsyncClient::new(vo, 100);
    assert!(connects(&mut vloop).await, "validator logs in");
    validator
        .subscribe("gt/v1/readings/#", QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    let (got_tx, mut got_rx) = tokio::sync::mpsc::channel::<String>(100);
    tokio::spawn(async move {
        while let Ok(ev) = vloop.poll().await {
            if let Event::Incoming(Packet::Publish(p)) = ev {
                let _ = got_tx.send(p.topic).await;
            }
        }
    });

    let a_id = a.device_id().to_string();
    let (dev_a, mut aloop) = AsyncClient::new(device_options(addr, &a_id, &a), 10);
    assert!(
        connects(&mut aloop).await,
        "device A logs in with its own token"
    );

    // Session takeover: B's key (or a guessed password) under A's client id is refused.
    let (_x, mut xloop) = AsyncClient::new(device_options(addr, &a_id, &b), 10);
    assert!(
        !connects(&mut xloop).await,
        "B's token under A's client id is refused"
    );
    let mut guess = MqttOptions::new(a_id.clone(), "127.0.0.1", addr.port());
    guess.set_credentials(a_id.clone(), "00".repeat(72));
    let (_y, mut yloop) = AsyncClient::new(guess, 10);
    assert!(!connects(&mut yloop).await, "a guessed password is refused");
    let (_z, mut zloop) = AsyncClient::new(
        MqttOptions::new("validator:v0:guess:0of1", "127.0.0.1", addr.port()),
        10,
    );
    assert!(!connects(&mut zloop).await, "no credentials, no session");
    assert!(refused_logins.get() >= 2, "both forged logins counted");

    // A publishes to its own topic: delivered; A is still connected (the takeovers failed).
    dev_a
        .publish(
            topics::readings_topic(&a.device_id()),
            QoS::AtLeastOnce,
            false,
            vec![1u8; 8],
        )
        .await
        .expect("publish");
    assert!(
        !is_cut(&mut aloop, Duration::from_millis(500)).await,
        "A keeps its session"
    );
    let first = tokio::time::timeout(Duration::from_secs(5), got_rx.recv())
        .await
        .expect("validator receives A's reading");
    assert_eq!(
        first.as_deref(),
        Some(topics::readings_topic(&a.device_id()).as_str())
    );

    // A publishes to B's topic: the broker cuts A and the validator never sees it.
    dev_a
        .publish(
            topics::readings_topic(&b.device_id()),
            QoS::AtLeastOnce,
            false,
            vec![2u8; 8],
        )
        .await
        .expect("queued");
    assert!(
        is_cut(&mut aloop, Duration::from_secs(5)).await,
        "spoofed topic cuts the connection"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), got_rx.recv())
            .await
            .is_err(),
        "nothing reached the validator"
    );

    // B may neither retain, nor read readings.
    let b_id = b.device_id().to_string();
    let (dev_b, mut bloop) = AsyncClient::new(device_options(addr, &b_id, &b), 10);
    assert!(connects(&mut bloop).await);
    dev_b
        .publish(
            topics::readings_topic(&b.device_id()),
            QoS::AtLeastOnce,
            true,
            vec![3u8; 8],
        )
        .await
        .expect("queued");
    assert!(
        is_cut(&mut bloop, Duration::from_secs(5)).await,
        "retained publish cuts the connection"
    );
    let (dev_b2, mut b2loop) = AsyncClient::new(device_options(addr, &b_id, &b), 10);
    assert!(connects(&mut b2loop).await);
    dev_b2
        .subscribe("gt/v1/readings/#", QoS::AtLeastOnce)
        .await
        .expect("queued");
    assert!(
        is_cut(&mut b2loop, Duration::from_secs(5)).await,
        "a device may not read readings"
    );
    assert!(refused_packets.get() >= 3);
}
