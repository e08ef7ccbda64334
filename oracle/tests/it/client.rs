//! The client: resuming from L1 after a restart, never posting twice, refusing conflicts,
//! retrying with backoff.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy::providers::Provider;
use groundtruth_oracle::{
    CompactSignature, Config, EpochCommitment, Error, Oracle, Quorum, RetryConfig, Submission,
};

use crate::harness::{commitment, Net};

/// Epochs `1..=n`, each with a quorum collected from every validator (as the node would).
fn epochs(net: &Net, n: u64) -> BTreeMap<u64, (EpochCommitment, Vec<CompactSignature>)> {
    (1..=n)
        .map(|e| {
            let c = commitment(e, 1, 0);
            let digest = c.signing_hash(&net.domain);
            let mut q = Quorum::new(&net.set, digest);
            for s in net.sign(&digest, 0..net.keys.len()) {
                q.add(s);
            }
            (e, (c, q.finish().expect("quorum")))
        })
        .collect()
}

#[tokio::test]
async fn restarted_client_resumes_from_l1_without_double_posting() {
    let Some(net) = Net::start(7).await else {
        return;
    };
    let all = epochs(&net, 6);
    let upto = |limit: u64| {
        let all = &all;
        move |e: u64| {
            if e <= limit {
                all.get(&e).cloned()
            } else {
                None
            }
        }
    };

    let first = net.new_client();
    assert_eq!(first.catch_up(upto(3)).await.expect("first run"), 3);
    assert_eq!(net.poster_nonce().await, 3);
    drop(first);

    // A new instance (a restarted poster) is offered everything from epoch 1 again.
    let second = net.new_client();
    assert_eq!(
        second.catch_up(upto(6)).await.expect("second run"),
        3,
        "only epochs 4..6 are sent"
    );
    assert_eq!(
        net.poster_nonce().await,
        6,
        "one transaction per epoch in all"
    );
    for (e, (c, _)) in &all {
        assert_eq!(
            second.anchored_commitment(*e).await.expect("read"),
            Some(*c)
        );
    }

    // Re-submitting an anchored epoch sends nothing.
    let (c2, sigs2) = &all[&2];
    assert_eq!(
        second.submit_epoch(c2, sigs2).await.expect("noop"),
        Submission::AlreadyAnchored
    );
    assert_eq!(second.catch_up(upto(6)).await.expect("third run"), 0);
    assert_eq!(net.poster_nonce().await, 6);

    // A different commitment for an anchored epoch is a conflict, an epoch ahead of L1 a gap;
    // neither sends anything.
    let other = commitment(2, 1, 7);
    let sigs = net.sign_epoch(&other, 0..5);
    assert!(matches!(
        second.submit_epoch(&other, &sigs).await,
        Err(Error::Conflict { epoch: 2, .. })
    ));
    let ahead = commitment(9, 1, 0);
    let sigs = net.sign_epoch(&ahead, 0..5);
    assert!(matches!(
        second.submit_epoch(&ahead, &sigs).await,
        Err(Error::Gap { epoch: 9, next: 7 })
    ));
    assert_eq!(net.poster_nonce().await, 6);
}

#[tokio::test]
async fn in_flight_transaction_is_not_sent_again() {
    let Some(net) = Net::start(4).await else {
        return;
    };
    let all = epochs(&net, 1);
    let (c1, sigs1) = all[&1].clone();
    // Stop mining: the first client's transaction stays in the mempool past its receipt timeout.
    let _: serde_json::Value = net
        .provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .expect("automine off");
    let mut config = net.oracle.config().clone();
    config.receipt_timeout = Duration::from_millis(500);
    let first = Oracle::new(
        config.clone(),
        groundtruth_oracle::anvil::dev_key(0).expect("key"),
    )
    .expect("client");
    let err = first
        .submit_epoch(&c1, &sigs1)
        .await
        .expect_err("not mined");
    assert!(matches!(err, Error::GaveUp { attempts: 3, .. }), "{err}");
    drop(first);

    // A restarted client sees the pending transaction and refuses to send another.
    let second = net.new_client();
    let err = second.submit_epoch(&c1, &sigs1).await.expect_err("pending");
    let Error::GaveUp { last, .. } = err else {
        panic!("{err}")
    };
    assert!(
        matches!(
            *last,
            Error::PendingTransaction {
                pending: 1,
                mined: 0,
                ..
            }
        ),
        "{last}"
    );

    // Once mined, the epoch is anchored by that one transaction.
    let _: serde_json::Value = net
        .provider
        .raw_request("evm_mine".into(), ())
        .await
        .expect("mine");
    assert_eq!(
        second.submit_epoch(&c1, &sigs1).await.expect("anchored"),
        Submission::AlreadyAnchored
    );
    assert_eq!(net.poster_nonce().await, 1);
}

#[tokio::test]
async fn unreachable_node_is_retried_then_given_up() {
    // A port nothing listens on: every attempt fails at the transport and is retried.
    let port = groundtruth_oracle::anvil::free_port().expect("port");
    let mut config = Config::new(
        format!("http://127.0.0.1:{port}"),
        groundtruth_oracle::Address::repeat_byte(1),
    );
    config.retry = RetryConfig {
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        max_attempts: 4,
    };
    let key =
        groundtruth_oracle::PrivateKeySigner::from_bytes(&groundtruth_oracle::B256::repeat_byte(3))
            .expect("key");
    let client = Oracle::new(config, key).expect("client");
    let err = client
        .submit_epoch(&commitment(1, 1, 0), &[])
        .await
        .expect_err("unreachable");
    assert!(
        matches!(err, Error::GaveUp { attempts: 4, ref last } if last.is_transient()),
        "{err}"
    );
}

#[test]
fn config_refuses_zero_confirmations_and_parses_durations() {
    let toml_like = serde_json::json!({
        "rpc_url": "http://127.0.0.1:8545",
        "contract": "0x0000000000000000000000000000000000000001",
        "confirmations": 0,
        "retry": { "initial_backoff": "250ms", "max_backoff": "10s", "max_attempts": 5 }
    });
    let config: Config = serde_json::from_value(toml_like).expect("parses");
    assert_eq!(config.retry.initial_backoff, Duration::from_millis(250));
    let key =
        groundtruth_oracle::PrivateKeySigner::from_bytes(&groundtruth_oracle::B256::repeat_byte(3))
            .expect("key");
    assert!(matches!(Oracle::new(config, key), Err(Error::Config(_))));
}
