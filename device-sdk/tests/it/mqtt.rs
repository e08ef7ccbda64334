//! The publisher against a real broker (rumqttd, in process), with a gate that makes the
//! broker unreachable on demand.

use std::time::Duration;

use groundtruth_device_sdk::{
    keys, topics, EnergyReading, Error, Publisher, ReadingBody, SignedReading,
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
        let mut c = publisher_config(broker.port(), dir.path(), "device-3");
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

#[tokio::test]
async fn full_queue_refuses_new_readings_without_using_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = publisher_config(crate::support::free_port(), dir.path(), "device-4");
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
    let err = Publisher::start(test_key(5), publisher_config(1, dir.path(), "d")).unwrap_err();
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
