//! The node's oracle logic against a real anvil: the plan (set update before the epoch), the
//! validators' signatures as served, the quorum the poster assembles, and the L1 client posting
//! them. Skips with a message when anvil is not installed (CI installs it: scripts/setup.sh),
//! fails under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use alloy::providers::Provider;
use groundtruth_ledger::Address as LedgerAddress;
use groundtruth_node::oracle::{plan, quorums, sign_plan, EpochInput, L1SignatureView};
use groundtruth_oracle::anvil::{self, Anvil};
use groundtruth_oracle::bindings::GroundtruthOracle::GroundtruthOracleErrors as Refused;
use groundtruth_oracle::{
    Config, Eip712Domain, Error, Oracle, PrivateKeySigner, RetryConfig, Submission, ValidatorSet,
    B256,
};

fn start_anvil() -> Option<Anvil> {
    if !anvil::is_installed() {
        let msg = format!(
            "anvil not found at {} (run scripts/setup.sh or set {})",
            anvil::binary_path().display(),
            anvil::ANVIL_ENV
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
        eprintln!("SKIPPED: {msg}");
        return None;
    }
    Some(Anvil::spawn().expect("anvil starts"))
}

fn key(i: u8) -> PrivateKeySigner {
    PrivateKeySigner::from_bytes(&groundtruth_oracle::keccak256([b'v', i])).expect("key")
}

/// Epoch `epoch` as the ledger would give it, with committee members `who` (power 10 each).
fn input(epoch: u64, who: &[u8]) -> EpochInput {
    let root = |t: u8| groundtruth_oracle::keccak256([&epoch.to_be_bytes()[..], &[t]].concat());
    EpochInput {
        epoch,
        readings_root: root(1),
        totals_root: root(2),
        proofs_root: root(3),
        state_root: root(4),
        members: who
            .iter()
            .map(|i| (LedgerAddress([*i; 32]), key(*i).address(), 10))
            .collect(),
    }
}

struct Net {
    _anvil: Anvil,
    url: String,
    oracle: Oracle,
    domain: Eip712Domain,
}

async fn net(members: &[u8]) -> Option<Net> {
    let anvil = start_anvil()?;
    let url = anvil.url();
    let set = ValidatorSet::new(1, members.iter().map(|i| (key(*i).address(), 10)).collect())
        .expect("set");
    let contract = Oracle::deploy(&url, anvil::dev_key(2).expect("key"), 1, &set)
        .await
        .expect("deploys");
    let oracle = poster(&url, contract);
    let domain = oracle.domain().await.expect("domain");
    Some(Net {
        _anvil: anvil,
        url,
        oracle,
        domain,
    })
}

fn poster(url: &str, contract: groundtruth_oracle::Address) -> Oracle {
    let mut c = Config::new(url, contract);
    c.confirmations = 1;
    c.receipt_timeout = Duration::from_secs(5);
    c.retry = RetryConfig {
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        max_attempts: 20,
    };
    Oracle::new(c, anvil::dev_key(0).expect("key")).expect("client")
}

/// Every member of `signers` signs epoch `inp` as the node serves it.
async fn views(n: &Net, inp: &EpochInput, signers: &[u8]) -> Vec<L1SignatureView> {
    let l1 = n.oracle.validator_set().await.expect("set");
    let p = plan(inp, &l1).expect("plan");
    signers
        .iter()
        .map(|i| sign_plan(&key(*i), &n.domain, &l1, &p).expect("sign"))
        .collect()
}

/// What the poster does for one epoch: plan from L1, quorum from the views, update, submit.
async fn post(n: &Net, inp: &EpochInput, signers: &[u8]) -> groundtruth_oracle::Result<Submission> {
    let l1 = n.oracle.validator_set().await?;
    let p = plan(inp, &l1)?;
    let vs = views(n, inp, signers).await;
    let (update, sigs) = quorums(&n.domain, &l1, &p, &vs)?;
    if let (Some(new_set), Some(u)) = (&p.update, update) {
        n.oracle.update_validator_set(new_set, &u).await?;
    }
    n.oracle.submit_epoch(&p.commitment, &sigs).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_anchor_in_order_and_a_set_change_is_installed_first() {
    let Some(n) = net(&[1, 2, 3, 4]).await else {
        return;
    };
    let all = [1, 2, 3, 4];
    // In order: 1 anchors; 3 before 2 is a gap.
    assert!(matches!(
        post(&n, &input(1, &all), &all).await,
        Ok(Submission::Anchored { .. })
    ));
    assert!(matches!(
        post(&n, &input(3, &all), &all).await,
        Err(Error::Gap { epoch: 3, next: 2 })
    ));
    let a1 = n
        .oracle
        .anchor_of(1)
        .await
        .expect("read")
        .expect("anchored");
    assert!(a1.block > 0);

    // The ledger's committee of epoch 2 gained validator 5 and lost 4: the epoch signed under
    // the new set is refused while L1 still holds the old one...
    let changed = [1, 2, 3, 5];
    let l1 = n.oracle.validator_set().await.expect("set");
    let p = plan(&input(2, &changed), &l1).expect("plan");
    assert_eq!(p.update.as_ref().map(ValidatorSet::nonce), Some(2));
    let vs = views(&n, &input(2, &changed), &[1, 2, 3, 4, 5]).await;
    let (_, sigs) = quorums(&n.domain, &l1, &p, &vs).expect("quorum");
    assert!(matches!(
        n.oracle.submit_epoch(&p.commitment, &sigs).await,
        Err(Error::Rejected(_))
    ));
    // ...and accepted once the update, signed by the old set, is installed first.
    assert!(matches!(
        post(&n, &input(2, &changed), &[1, 2, 3, 4, 5]).await,
        Ok(Submission::Anchored { .. })
    ));
    let now = n.oracle.validator_set().await.expect("set");
    assert_eq!(now.nonce(), 2);
    assert_eq!(now.weight_of(key(5).address()), Some(10));
    assert_eq!(now.weight_of(key(4).address()), None);
    assert_eq!(n.oracle.next_epoch().await.expect("next"), 3);
    // The removed validator's signature no longer counts.
    assert!(matches!(
        post(&n, &input(3, &changed), &[4, 1]).await,
        Err(Error::NoQuorum { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_under_quorum_submissions_are_refused() {
    let Some(n) = net(&[1, 2, 3, 4]).await else {
        return;
    };
    let inp = input(1, &[1, 2, 3, 4]);
    let l1 = n.oracle.validator_set().await.expect("set");
    let p = plan(&inp, &l1).expect("plan");
    // Two of four: the poster does not even send.
    let two = views(&n, &inp, &[1, 2]).await;
    assert!(matches!(
        quorums(&n.domain, &l1, &p, &two),
        Err(Error::NoQuorum {
            signed: 20,
            total: 40
        })
    ));
    // Sent anyway, the contract refuses it.
    let d = p.commitment.signing_hash(&n.domain);
    let mut sigs: Vec<_> = [1u8, 2]
        .iter()
        .map(|i| {
            (
                key(*i).address(),
                groundtruth_oracle::sign_digest(&key(*i), &d).unwrap(),
            )
        })
        .collect();
    sigs.sort_by_key(|(a, _)| *a);
    let sigs: Vec<_> = sigs.into_iter().map(|(_, s)| s).collect();
    assert!(matches!(
        n.oracle.submit_epoch(&p.commitment, &sigs).await,
        Err(Error::Rejected(Refused::InsufficientQuorum(_)))
    ));
    // Forged: three outsiders' keys sign the commitment.
    let mut forged: Vec<_> = [7u8, 8, 9]
        .iter()
        .map(|i| {
            (
                key(*i).address(),
                groundtruth_oracle::sign_digest(&key(*i), &d).unwrap(),
            )
        })
        .collect();
    forged.sort_by_key(|(a, _)| *a);
    let forged: Vec<_> = forged.into_iter().map(|(_, s)| s).collect();
    assert!(matches!(
        n.oracle.submit_epoch(&p.commitment, &forged).await,
        Err(Error::Rejected(Refused::UnknownSigner(_)))
    ));
    // Members' signatures over another commitment do not anchor this one.
    let other = input(1, &[1, 2, 3, 4]);
    let mut tampered = plan(&other, &l1).expect("plan");
    tampered.commitment.readings_root = B256::repeat_byte(0xee);
    let full = views(&n, &inp, &[1, 2, 3, 4]).await;
    let (_, good) = quorums(&n.domain, &l1, &p, &full).expect("quorum");
    assert!(matches!(
        n.oracle.submit_epoch(&tampered.commitment, &good).await,
        Err(Error::Rejected(Refused::UnknownSigner(_)))
    ));
    assert_eq!(n.oracle.next_epoch().await.expect("next"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poster_killed_mid_submission_resumes_without_double_posting() {
    let Some(n) = net(&[1, 2, 3]).await else {
        return;
    };
    let all = [1, 2, 3];
    let provider = groundtruth_oracle::provider_for(&n.url, anvil::dev_key(1).unwrap()).unwrap();
    let poster_address = n.oracle.poster();
    // Blocks stop: the transaction waits in the mempool.
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .expect("automine off");
    let inp = input(1, &all);
    let l1 = n.oracle.validator_set().await.unwrap();
    let p = plan(&inp, &l1).unwrap();
    let vs = views(&n, &inp, &all).await;
    let (_, sigs) = quorums(&n.domain, &l1, &p, &vs).unwrap();
    let (c, s) = (p.commitment, sigs.clone());
    let first = n.oracle.clone();
    let task = tokio::spawn(async move { first.submit_epoch(&c, &s).await });
    // Wait until the transaction is in the mempool, then kill the poster.
    let mut sent = false;
    for _ in 0..100 {
        if provider
            .get_transaction_count(poster_address)
            .pending()
            .await
            .unwrap()
            == 1
        {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "the first poster sent its transaction");
    task.abort();
    // A restarted poster sees the pending transaction and does not send another; once blocks
    // come again it finds the epoch anchored.
    let restarted = poster(&n.url, n.oracle.config().contract);
    let again = tokio::spawn(async move { restarted.submit_epoch(&p.commitment, &sigs).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _: () = provider
        .raw_request("evm_setAutomine".into(), (true,))
        .await
        .expect("automine on");
    let _: String = provider
        .raw_request("evm_mine".into(), ())
        .await
        .expect("mine");
    let r = again.await.unwrap();
    assert!(matches!(r, Ok(Submission::AlreadyAnchored)), "{r:?}");
    assert_eq!(
        provider
            .get_transaction_count(poster_address)
            .await
            .unwrap(),
        1,
        "exactly one transaction from the poster"
    );
    assert_eq!(n.oracle.next_epoch().await.unwrap(), 2);
}
