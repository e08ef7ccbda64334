//! Gossip delivery, size bounds and the cut-off of a peer whose messages are rejected.

use std::time::Duration;

use groundtruth_p2p::{P2pError, Topic, Verdict};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_on_one_peer_reaches_the_other_two() {
    let (a, b, c) = (identity(1), identity(2), identity(3));
    let all = [a, b, c];
    let mut na = Node::start(a, &all, config(vec![])).await;
    // B and C know only A; C finds B through A (Kademlia).
    let mut nb = Node::start(b, &all, config(vec![na.addr()])).await;
    let mut nc = Node::start(c, &all, config(vec![na.addr()])).await;
    let (mut ra, mut rb, mut rc) = (
        na.run_app(accept_all),
        nb.run_app(accept_all),
        nc.run_app(accept_all),
    );
    full_mesh(&[&na, &nb, &nc], Topic::Transactions).await;

    publish(&nb, Topic::Transactions, b"tx from b").await;
    for rx in [&mut ra, &mut rc] {
        let (src, topic, _) = receive(rx, b"tx from b").await;
        assert_eq!((src, topic), (b.peer, Topic::Transactions));
    }
    // Each topic arrives on its own topic, from any publisher.
    publish(&nc, Topic::Attestations, b"attestation from c").await;
    for rx in [&mut ra, &mut rb] {
        let (src, topic, _) = receive(rx, b"attestation from c").await;
        assert_eq!((src, topic), (c.peer, Topic::Attestations));
    }
    // The publisher itself does not get its own message back.
    assert!(drain_for(&mut rb, Duration::from_millis(300))
        .await
        .iter()
        .all(|(src, _, _)| *src != b.peer));
    for n in [&na, &nb, &nc] {
        n.handle.shutdown().await;
    }
    // After shutdown the handle reports the task as stopped.
    assert_eq!(
        na.handle.publish(Topic::Readings, b"late".to_vec()).await,
        Err(P2pError::Stopped)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_size_limit_is_not_delivered() {
    let (a, b) = (identity(11), identity(12));
    let both = [a, b];
    let small = groundtruth_p2p::P2pConfig {
        max_message_bytes: 1024,
        ..config(vec![])
    };
    let mut na = Node::start(a, &both, small.clone()).await;
    // B allows itself far larger messages than A accepts.
    let big = groundtruth_p2p::P2pConfig {
        max_message_bytes: 64 * 1024,
        ..config(vec![na.addr()])
    };
    let nb = Node::start(b, &both, big).await;
    let mut ra = na.run_app(accept_all);
    full_mesh(&[&na, &nb], Topic::Readings).await;

    // Just over A's payload limit, and 40 times over: both decode, both are refused.
    publish(&nb, Topic::Readings, &vec![b'x'; 1025]).await;
    publish(&nb, Topic::Readings, &vec![b'y'; 40_000]).await;
    // Publish small messages until one arrives (its link to A survived the big ones).
    let mut seen = Vec::new();
    let start = std::time::Instant::now();
    for i in 0.. {
        assert!(start.elapsed() < DEADLINE, "no small message got through");
        publish(
            &nb,
            Topic::Readings,
            format!("small after big {i}").as_bytes(),
        )
        .await;
        let got = drain_for(&mut ra, Duration::from_millis(200)).await;
        let arrived = got
            .iter()
            .any(|(_, _, d)| d.starts_with(b"small after big"));
        seen.extend(got);
        if arrived {
            break;
        }
    }
    seen.extend(drain_for(&mut ra, Duration::from_secs(1)).await);
    for (_, _, data) in &seen {
        assert!(
            data.len() <= 1024,
            "oversized message of {} bytes delivered",
            data.len()
        );
    }
    // A exactly-at-limit message still passes.
    publish(&nb, Topic::Readings, &vec![b'z'; 1024]).await;
    receive(&mut ra, &vec![b'z'; 1024]).await;
    // And A refuses to publish what it would not accept.
    assert!(matches!(
        na.handle.publish(Topic::Readings, vec![0; 1025]).await,
        Err(P2pError::MessageTooLarge {
            len: 1025,
            max: 1024
        })
    ));
}

fn reject_bad(data: &[u8]) -> Verdict {
    if data.starts_with(b"bad") {
        Verdict::Reject
    } else {
        Verdict::Accept
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_whose_messages_are_rejected_is_cut_off_while_honest_peers_flow() {
    let (a, b, x) = (identity(21), identity(22), identity(23));
    let all = [a, b, x];
    let mut na = Node::start(a, &all, config(vec![])).await;
    let mut nb = Node::start(b, &all, config(vec![na.addr()])).await;
    let nx = Node::start(x, &all, config(vec![na.addr(), nb.addr()])).await;
    let mut ra = na.run_app(reject_bad);
    let _rb = nb.run_app(reject_bad);
    full_mesh(&[&na, &nb, &nx], Topic::Transactions).await;

    // X keeps sending invalid messages; A's application rejects every one it sees.
    const SENT: usize = 40;
    let sender = nx.handle.clone();
    let flood = tokio::spawn(async move {
        for i in 0..SENT {
            let _ = sender
                .publish(Topic::Transactions, format!("bad {i}").into_bytes())
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    // A disconnects X once its score falls under the graylist threshold.
    eventually("A cuts X off", || async {
        (!na.connected().await.contains(&x.peer)).then_some(())
    })
    .await;
    let score = na.handle.peer_score(x.peer).await.expect("alive");
    assert!(
        score.is_some_and(|s| s < -80.0),
        "X's score at A: {score:?}"
    );
    flood.await.expect("flood task");

    // The honest peer still gets through, after all of X's messages were sent.
    publish(&nb, Topic::Transactions, b"honest tx").await;
    let (src, _, seen) = receive(&mut ra, b"honest tx").await;
    assert_eq!(src, b.peer);
    let late = drain_for(&mut ra, Duration::from_millis(500)).await;
    let from_x = seen
        .iter()
        .chain(late.iter())
        .filter(|(src, _, _)| *src == x.peer)
        .count();
    // Three rejections graylist X (-10 × 3² < -80); a few more may be in flight meanwhile.
    assert!(
        from_x <= 8,
        "{from_x} of {SENT} invalid messages from X reached A's application"
    );
    // X stays cut off: it keeps trying to reconnect (it allows A) and is refused.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!na.connected().await.contains(&x.peer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_the_message_rate_is_throttled_then_cut_off() {
    let (a, b) = (identity(71), identity(72));
    let both = [a, b];
    let strict = groundtruth_p2p::P2pConfig {
        max_messages_per_peer_per_sec: 1,
        message_burst: 3,
        ..config(vec![])
    };
    let mut na = Node::start(a, &both, strict).await;
    let nb = Node::start(b, &both, config(vec![na.addr()])).await;
    let mut ra = na.run_app(accept_all);
    full_mesh(&[&na, &nb], Topic::Transactions).await;

    // 30 valid messages as fast as B can publish them: A takes the burst, then rejects the
    // excess, which graylists B.
    for i in 0..30 {
        let _ = nb
            .handle
            .publish(Topic::Transactions, format!("valid {i}").into_bytes())
            .await;
    }
    eventually("A cuts the flooding peer off", || async {
        (!na.connected().await.contains(&b.peer)).then_some(())
    })
    .await;
    let delivered = drain_for(&mut ra, Duration::from_millis(500)).await.len();
    assert!(
        (1..=6).contains(&delivered),
        "{delivered} of 30 messages delivered at 1/s with a burst of 3"
    );
}
