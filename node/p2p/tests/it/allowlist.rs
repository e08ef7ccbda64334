//! The allow-list: outsiders cannot connect, their gossip is never delivered, and a peer
//! removed at runtime is disconnected.

use std::collections::HashSet;
use std::time::Duration;

use groundtruth_p2p::Topic;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_from_a_peer_outside_the_allow_list_is_not_delivered() {
    let (a, b, c) = (identity(51), identity(52), identity(53));
    // A allows only B. B also allows C (its allow-list is behind A's, say), so C's gossip
    // reaches B and B would relay it to A.
    let mut na = Node::start(a, &[a, b], config(vec![])).await;
    let mut nb = Node::start(b, &[a, b, c], config(vec![na.addr()])).await;
    let nc = Node::start(c, &[a, b, c], config(vec![na.addr(), nb.addr()])).await;
    let (mut ra, mut rb) = (na.run_app(accept_all), nb.run_app(accept_all));
    full_mesh(&[&na, &nb], Topic::Transactions).await;
    full_mesh(&[&nb, &nc], Topic::Transactions).await;

    publish(&nc, Topic::Transactions, b"from outsider").await;
    let (src, _, _) = receive(&mut rb, b"from outsider").await;
    assert_eq!(src, c.peer);
    publish(&nb, Topic::Transactions, b"from b").await;
    let (_, _, before) = receive(&mut ra, b"from b").await;
    // Several heartbeats: time for B to forward or gossip C's message to A.
    let after = drain_for(&mut ra, Duration::from_millis(1500)).await;
    assert!(
        before
            .iter()
            .chain(after.iter())
            .all(|(src, _, _)| *src != c.peer),
        "gossip authored by a non-allowed peer reached A's application"
    );
    // C never holds a connection to A, though it keeps dialling A's bootstrap address.
    assert!(!na.connected().await.contains(&c.peer));
    assert!(!nc.connected().await.contains(&a.peer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_peer_from_the_allow_list_disconnects_it() {
    let (a, b) = (identity(61), identity(62));
    let na = Node::start(a, &[a, b], config(vec![])).await;
    let mut nb = Node::start(b, &[a, b], config(vec![na.addr()])).await;
    let mut rb = nb.run_app(accept_all);
    full_mesh(&[&na, &nb], Topic::Readings).await;

    na.allowed.send_replace(HashSet::from([a.peer]));
    eventually("A and B disconnected", || async {
        (!na.connected().await.contains(&b.peer) && !nb.connected().await.contains(&a.peer))
            .then_some(())
    })
    .await;
    // B still allows A and keeps redialling (discovery every 300 ms); A refuses every time.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(!na.connected().await.contains(&b.peer));
    assert!(!nb.connected().await.contains(&a.peer));

    // Allowed again: B's next dial gets through and gossip flows.
    na.allowed.send_replace(HashSet::from([a.peer, b.peer]));
    full_mesh(&[&na, &nb], Topic::Readings).await;
    publish(&na, Topic::Readings, b"welcome back").await;
    receive(&mut rb, b"welcome back").await;
}
