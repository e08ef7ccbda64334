//! The publisher against a real broker (rumqttd, in process), with a gate that makes the
//! broker unreachable on demand.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use groundtruth_device_sdk::{
    keys, login_token, topics, verify_login, Credentials, DeviceId, EnergyReading, Error,
    Publisher, PublisherStatus, ReadingBody, ResendLimits, SignedReading, DEFAULT_LOGIN_SKEW_SECS,
};
use rumqttc::QoS;

use crate::support::{publisher_config, start_broker, start_publisher, test_key, Gate, Subscriber};

fn energy(i: u64) -> ReadingBody {
    ReadingBody::Energy(EnergyReading {
        interval_start_s: 1_767_225_600 + 300 * i,
        interval_len_s: 300,
        energy_wh: 100 + i,
        register_wh: 10_000 + 100 * i,
    })
}

fn publish_n(p: &Publisher, range: std::ops::Range<u64>) -> Vec<SignedReading> {
    range
        .map(|i| p.publish(1_767_225_600_000 + i, energy(i)).unwrap())
        .collect()
}

async fn wait_connected(p: &Publisher) {
    for _ in 0..500 {
        if p.status().connected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("publisher did not connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_readings_survive_restart_and_arrive_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(1).device_id();
    // The gate's port is closed: the broker is unreachable.
    let broker = start_broker();
    let gate = Gate::new(broker);

    // 1. Ten readings with the broker down.
    let p = start_publisher(1, gate.port, dir.path());
    let first = publish_n(&p, 0..10);
    assert_eq!(
        first.iter().map(|s| s.reading.seq).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(p.status().pending(), 10);
    assert!(!p.status().connected);
    p.shutdown().await;

    // 2. Restart: sequence numbers continue, nothing is lost.
    let p = start_publisher(1, gate.port, dir.path());
    assert_eq!(p.status().next_seq, 10);
    assert_eq!(p.status().acked_next, 0);
    let second = publish_n(&p, 10..15);
    assert_eq!(second[0].reading.seq, 10);

    // 3. The broker becomes reachable; a subscriber gets every reading exactly once, in order.
    let mut sub = Subscriber::connect(broker, &topics::readings_topic(&device)).await;
    gate.open().await;
    assert_eq!(sub.take_seqs(15).await, (0..15).collect::<Vec<_>>());
    assert!(p.flush(Duration::from_secs(5)).await, "all acknowledged");
    assert_eq!(p.status().acked_next, 15);
    p.shutdown().await;

    // 4. After another restart nothing acknowledged is re-sent: the next frame on the topic is
    //    the new reading, seq 15 (old ones would come first, the queue publishes in order).
    let p = start_publisher(1, gate.port, dir.path());
    assert_eq!(p.status().pending(), 0);
    wait_connected(&p).await;
    let fresh = publish_n(&p, 15..16);
    let got = sub.next_reading(Duration::from_secs(5)).await.unwrap();
    assert_eq!(got, fresh[0]);
    assert!(p.flush(Duration::from_secs(5)).await);
    p.shutdown().await;
    gate.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cut_mid_stream_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(2).device_id();
    let broker = start_broker();
    let gate = Gate::new(broker);
    gate.open().await;
    let mut sub = Subscriber::connect(broker, &topics::readings_topic(&device)).await;
    let p = start_publisher(2, gate.port, dir.path());
    wait_connected(&p).await;
    publish_n(&p, 0..20);
    assert!(p.flush(Duration::from_secs(5)).await);

    // Cut the live connection while readings are on their way (some typically handed to the
    // broker without their PUBACK back yet), publish more while it is down, then reopen.
    publish_n(&p, 20..40);
    gate.close().await;
    publish_n(&p, 40..60);
    gate.open().await;
    assert!(p.flush(Duration::from_secs(5)).await);

    // QoS 1 across a cut connection: a reading whose PUBACK was lost may come twice, but every
    // one arrives, and first arrivals are in order.
    let mut seen = Vec::new();
    while let Some(s) = sub.next_reading(Duration::from_millis(500)).await {
        if !seen.contains(&s.reading.seq) {
            seen.push(s.reading.seq);
        }
        if seen.len() == 60 {
            break;
        }
    }
    assert_eq!(seen, (0..60).collect::<Vec<_>>());
    p.shutdown().await;
    gate.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_request_republishes_retained_readings() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(3).device_id();
    let broker = start_broker();
    let mut sub = Subscriber::connect(broker, &topics::readings_topic(&device)).await;
    let p = Publisher::start(test_key(3), {
        let mut c = publisher_config(broker.port(), dir.path());
        c.retain_acked = 6;
        c
    })
    .unwrap();
    wait_connected(&p).await;
    let sent = publish_n(&p, 0..10);
    assert_eq!(sub.take_seqs(10).await, (0..10).collect::<Vec<_>>());
    assert!(p.flush(Duration::from_secs(5)).await);

    // Ask for everything from seq 2: only the last 6 acknowledged (4..10) are retained.
    sub.client
        .publish(
            topics::resend_topic(&device),
            QoS::AtLeastOnce,
            false,
            topics::encode_resend_request(2).to_vec(),
        )
        .await
        .unwrap();
    for expected in &sent[4..10] {
        let got = sub.next_reading(Duration::from_secs(5)).await.unwrap();
        assert_eq!(&got, expected, "byte-identical resend");
    }
    // A malformed request is ignored; the publisher keeps working.
    sub.client
        .publish(
            topics::resend_topic(&device),
            QoS::AtLeastOnce,
            false,
            vec![1, 2, 3],
        )
        .await
        .unwrap();
    let next = publish_n(&p, 10..11);
    assert_eq!(
        sub.next_reading(Duration::from_secs(5)).await.unwrap(),
        next[0]
    );
    p.shutdown().await;
}

/// A device given two brokers: while the first is reachable everything goes there; once it
/// dies (connection cut, then refused) the device moves to the second, delivers every reading
/// not yet acknowledged and those it makes from then on, in order, and answers resend
/// requests that reach it there (a validator behind the second broker asking for readings the
/// first had acknowledged but never delivered).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_to_the_next_broker_and_answers_resends_there() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(6).device_id();
    let (a, b) = (start_broker(), start_broker());
    let gate_a = Gate::new(a);
    gate_a.open().await;
    let mut sub_a = Subscriber::connect(a, &topics::readings_topic(&device)).await;
    let mut sub_b = Subscriber::connect(b, &topics::readings_topic(&device)).await;
    let p = Publisher::start(test_key(6), {
        let mut c = publisher_config(gate_a.port, dir.path());
        c.fallback_brokers = vec![("127.0.0.1".into(), b.port())];
        c
    })
    .unwrap();
    wait_connected(&p).await;
    let first = publish_n(&p, 0..10);
    assert_eq!(sub_a.take_seqs(10).await, (0..10).collect::<Vec<_>>());
    assert!(p.flush(Duration::from_secs(5)).await);
    assert!(
        sub_b
            .next_reading(Duration::from_millis(300))
            .await
            .is_none(),
        "nothing goes to the fallback while the first broker is up"
    );

    // The first broker dies with readings on their way (some handed to it, some not yet
    // acknowledged): its connection is cut and nothing listens on its port any more.
    publish_n(&p, 10..15);
    gate_a.close().await;
    publish_n(&p, 15..20);
    assert!(
        p.flush(Duration::from_secs(10)).await,
        "readings made after the first broker died are acknowledged by the second"
    );
    // What the first broker acknowledged before it died is not sent again; everything else
    // reaches the second, in order (first arrivals), so together they hold every reading.
    let mut on_a = std::collections::BTreeSet::new();
    while let Some(s) = sub_a.next_reading(Duration::from_millis(200)).await {
        on_a.insert(s.reading.seq);
    }
    let mut on_b = Vec::new();
    while let Some(s) = sub_b.next_reading(Duration::from_millis(500)).await {
        if !on_b.contains(&s.reading.seq) {
            on_b.push(s.reading.seq);
        }
    }
    assert!(
        on_b.windows(2).all(|w| w[0] < w[1]),
        "out of order: {on_b:?}"
    );
    let all: std::collections::BTreeSet<u64> = on_a.iter().chain(&on_b).copied().collect();
    assert_eq!(
        all,
        (10..20).collect(),
        "first broker {on_a:?}, second {on_b:?}"
    );
    assert!(
        on_b.contains(&19),
        "the second broker got the latest reading: {on_b:?}"
    );

    // A resend request on the second broker is answered there, byte for byte.
    sub_b
        .client
        .publish(
            topics::resend_topic(&device),
            QoS::AtLeastOnce,
            false,
            topics::encode_resend_request(5).to_vec(),
        )
        .await
        .unwrap();
    for expected in &first[5..10] {
        let got = sub_b.next_reading(Duration::from_secs(5)).await.unwrap();
        assert_eq!(
            &got, expected,
            "byte-identical resend through the fallback broker"
        );
    }
    p.shutdown().await;
}

#[tokio::test]
async fn full_queue_refuses_new_readings_without_using_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = publisher_config(crate::support::free_port(), dir.path());
    c.max_queue_entries = std::num::NonZeroUsize::new(3).unwrap();
    let p = Publisher::start(test_key(4), c).unwrap();
    publish_n(&p, 0..3);
    assert_eq!(p.publish(0, energy(3)), Err(Error::QueueFull(3)));
    assert_eq!(p.status().next_seq, 3);
    // Bodies validators would refuse are never signed.
    let bad = ReadingBody::Energy(EnergyReading {
        interval_start_s: 0,
        interval_len_s: 0,
        energy_wh: 0,
        register_wh: 0,
    });
    assert!(matches!(p.publish(0, bad), Err(Error::InvalidField { .. })));
    p.shutdown().await;
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = Publisher::start(test_key(5), publisher_config(1, dir.path())).unwrap_err();
    assert!(matches!(err, Error::Config(_)));
}

#[test]
fn key_file_round_trip_through_public_api() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.key");
    let k = keys::load_or_generate(&path).unwrap();
    let again = keys::load_or_generate(&path).unwrap();
    assert_eq!(k.device_id(), again.device_id());
    assert!(keys::save(&keys::generate(), &path).is_err());
}

/// Waits until `check` holds for the publisher's status, or fails after 5 s.
async fn wait_status(p: &Publisher, what: &str, check: impl Fn(&PublisherStatus) -> bool) {
    for _ in 0..500 {
        if check(&p.status()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: status {:?}", p.status());
}

const VALIDATOR: (&str, &str) = ("validator:test", "validator-secret");

/// A broker that logs devices in the way a groundtruth node does: the client id names a
/// registered device and the password is a valid login token for it ([`verify_login`]);
/// validators log in with a shared secret.
fn start_authenticating_broker(registered: Vec<DeviceId>) -> std::net::SocketAddr {
    let registered = std::sync::Arc::new(registered);
    crate::support::start_broker_with(None, move |server| {
        server.set_auth_handler(move |client_id: String, user: String, pass: String| {
            let registered = std::sync::Arc::clone(&registered);
            async move {
                if user == VALIDATOR.0 {
                    return pass == VALIDATOR.1;
                }
                let Some(device) = registered.iter().find(|d| d.to_string() == client_id) else {
                    return false;
                };
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                verify_login(
                    device,
                    &client_id,
                    &user,
                    &pass,
                    now,
                    DEFAULT_LOGIN_SKEW_SECS,
                )
                .is_ok()
            }
        });
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_logs_in_with_its_token_and_others_cannot_take_its_id() {
    let (a, b) = (test_key(10), test_key(11));
    let a_hex = a.device_id().to_string();
    let broker = start_authenticating_broker(vec![a.device_id(), b.device_id()]);
    let mut sub = Subscriber::connect_as(
        broker,
        &topics::readings_topic(&a.device_id()),
        Some(VALIDATOR),
    )
    .await;
    let dir_a = tempfile::tempdir().unwrap();
    let pa = Publisher::start(test_key(10), publisher_config(broker.port(), dir_a.path())).unwrap();
    wait_connected(&pa).await;
    let first = publish_n(&pa, 0..1);
    assert_eq!(
        sub.next_reading(Duration::from_secs(5)).await,
        Some(first[0])
    );

    // B, registered itself, tries A's client id with a token B signed for it: refused, and A
    // is not evicted.
    let dir_b = tempfile::tempdir().unwrap();
    let mut cb = publisher_config(broker.port(), dir_b.path());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    cb.client_id = Some(a_hex.clone());
    cb.credentials = Credentials::Password {
        username: a_hex.clone(),
        password: login_token(&b, &a_hex, now),
    };
    let pb = Publisher::start(test_key(11), cb).unwrap();
    // B's own valid token under A's client id: refused as well.
    let dir_c = tempfile::tempdir().unwrap();
    let mut cc = publisher_config(broker.port(), dir_c.path());
    cc.client_id = Some(a_hex.clone());
    cc.credentials = Credentials::Password {
        username: a_hex.clone(),
        password: login_token(&b, &b.device_id().to_string(), now),
    };
    let pc = Publisher::start(test_key(11), cc);
    // (Same key as pb: pick another queue dir, the queue lock is per directory.)
    let pc = pc.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(!pb.status().connected, "impersonation refused");
    assert!(!pc.status().connected, "another device's token refused");
    assert!(pa.status().connected, "A keeps its session");
    let second = publish_n(&pa, 1..2);
    assert_eq!(
        sub.next_reading(Duration::from_secs(5)).await,
        Some(second[0])
    );

    // With the default credentials the client id must be the device id.
    let dir_d = tempfile::tempdir().unwrap();
    let mut cd = publisher_config(broker.port(), dir_d.path());
    cd.client_id = Some("device-12".into());
    assert!(matches!(
        Publisher::start(test_key(12), cd),
        Err(Error::Config(_))
    ));
    pa.shutdown().await;
    pb.shutdown().await;
    pc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_username_and_password_for_a_password_file_broker() {
    let broker = crate::support::start_broker_with(
        Some(std::collections::HashMap::from([(
            "meter-7".to_string(),
            "s3cret".to_string(),
        )])),
        |_| {},
    );
    let device = test_key(13).device_id();
    let with = |password: &str, dir: &std::path::Path| {
        let mut c = publisher_config(broker.port(), dir);
        c.client_id = Some("meter-7".into());
        c.credentials = Credentials::Password {
            username: "meter-7".into(),
            password: password.into(),
        };
        c
    };
    let dir = tempfile::tempdir().unwrap();
    let wrong = Publisher::start(test_key(13), with("guess", dir.path())).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!wrong.status().connected);
    assert_eq!(
        format!("{:?}", with("s3cret", dir.path()).credentials),
        "Password { username: \"meter-7\", password: \"redacted\" }"
    );
    wrong.shutdown().await;
    let mut sub = Subscriber::connect_as(
        broker,
        &topics::readings_topic(&device),
        Some(("meter-7", "s3cret")),
    )
    .await;
    let p = Publisher::start(test_key(13), with("s3cret", dir.path())).unwrap();
    wait_connected(&p).await;
    let sent = publish_n(&p, 0..3);
    assert_eq!(sub.take_seqs(3).await, vec![0, 1, 2]);
    assert!(p.flush(Duration::from_secs(5)).await);
    assert_eq!(sent.len(), 3);
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_requests_are_size_capped_and_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(14).device_id();
    let broker = start_broker();
    let mut sub = Subscriber::connect(broker, &topics::readings_topic(&device)).await;
    let mut c = publisher_config(broker.port(), dir.path());
    c.retain_acked = 100;
    c.resend_limits = ResendLimits {
        requests_per_minute: 2,
        readings_per_minute: 5,
    };
    let p = Publisher::start(test_key(14), c).unwrap();
    wait_connected(&p).await;
    let sent = publish_n(&p, 0..20);
    assert_eq!(sub.take_seqs(20).await, (0..20).collect::<Vec<_>>());
    assert!(p.flush(Duration::from_secs(5)).await);

    let ask = |payload: Vec<u8>| {
        let client = sub.client.clone();
        async move {
            client
                .publish(
                    topics::resend_topic(&device),
                    QoS::AtLeastOnce,
                    false,
                    payload,
                )
                .await
                .unwrap();
        }
    };
    // Oversize (one byte over, and far over) and short payloads: refused, counted, and they
    // spend no request budget.
    ask(vec![0; topics::MAX_RESEND_REQUEST_LEN + 1]).await;
    ask(vec![0; 1000]).await;
    ask(vec![0; 3]).await;
    wait_status(&p, "oversize and malformed counted", |s| {
        s.resend.requests_oversize == 2 && s.resend.requests_malformed == 1
    })
    .await;
    assert_eq!(p.status().resend.requests_served, 0);

    // Four requests for everything: two are served, two are over the request budget, and of
    // the 20 readings asked for only the first 5 are resent (the reading budget), in order.
    for _ in 0..4 {
        ask(topics::encode_resend_request(0).to_vec()).await;
    }
    wait_status(&p, "requests limited", |s| {
        s.resend.requests_served == 2 && s.resend.requests_rate_limited == 2
    })
    .await;
    for expected in &sent[0..5] {
        let got = sub.next_reading(Duration::from_secs(5)).await.unwrap();
        assert_eq!(&got, expected);
    }
    assert_eq!(sub.next_reading(Duration::from_millis(1500)).await, None);
    let s = p.status().resend;
    assert_eq!(s.readings_resent, 5);
    assert!(s.readings_throttled >= 1);
    // New readings are not held back by the resend budget.
    let fresh = publish_n(&p, 20..21);
    assert_eq!(
        sub.next_reading(Duration::from_secs(5)).await,
        Some(fresh[0])
    );
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_limits_turn_resending_off() {
    let dir = tempfile::tempdir().unwrap();
    let device = test_key(15).device_id();
    let broker = start_broker();
    let mut sub = Subscriber::connect(broker, &topics::readings_topic(&device)).await;
    let mut c = publisher_config(broker.port(), dir.path());
    c.resend_limits = ResendLimits {
        requests_per_minute: 0,
        readings_per_minute: 0,
    };
    let p = Publisher::start(test_key(15), c).unwrap();
    wait_connected(&p).await;
    publish_n(&p, 0..3);
    assert_eq!(sub.take_seqs(3).await, vec![0, 1, 2]);
    assert!(p.flush(Duration::from_secs(5)).await);
    sub.client
        .publish(
            topics::resend_topic(&device),
            QoS::AtLeastOnce,
            false,
            topics::encode_resend_request(0).to_vec(),
        )
        .await
        .unwrap();
    wait_status(&p, "refused", |s| s.resend.requests_rate_limited == 1).await;
    assert_eq!(sub.next_reading(Duration::from_millis(500)).await, None);
    p.shutdown().await;
}
