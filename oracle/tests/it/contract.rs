//! The contract itself: what it accepts, everything it refuses, its events and views.

use alloy::primitives::{aliases::U96, Address, U256};
use alloy::sol_types::SolEvent;
use groundtruth_oracle::bindings::GroundtruthOracle::{self as abi, GroundtruthOracleErrors as E};
use groundtruth_oracle::{CompactSignature, EpochCommitment, ValidatorSet};

use crate::harness::{abi_sig, commitment, validator_key, Net};

/// secp256k1 group order.
fn order() -> U256 {
    "0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"
        .parse()
        .expect("n")
}

#[tokio::test]
async fn rust_digests_match_the_contract() {
    let Some(net) = Net::start(4).await else {
        return;
    };
    let c = commitment(1, 1, 0);
    let on_chain = net
        .raw
        .epochDigest(abi_commitment(&c))
        .call()
        .await
        .expect("call");
    assert_eq!(on_chain, c.signing_hash(&net.domain));
    assert_eq!(
        net.raw.domainSeparator().call().await.expect("call"),
        net.domain.separator()
    );
    let next = ValidatorSet::new(
        2,
        (3..9)
            .map(|i| (validator_key(i).address(), i as u64))
            .collect(),
    )
    .expect("set");
    let on_chain = net
        .raw
        .setUpdateDigest(2, next.addresses(), next.weights_u96())
        .call()
        .await
        .expect("call");
    assert_eq!(on_chain, next.update_signing_hash(&net.domain));
}

#[tokio::test]
async fn anchors_in_order_with_events_and_views() {
    let Some(net) = Net::start(7).await else {
        return;
    };
    assert_eq!(net.oracle.next_epoch().await.expect("next"), 1);
    let latest = net.raw.latestEpoch().call().await.expect("latest");
    assert_eq!((latest.count, latest.epoch), (0, 0));
    let mut anchored = Vec::new();
    for epoch in 1..=3 {
        let c = commitment(epoch, 1, 0);
        let receipt = net
            .raw_submit(&c, &net.sign_epoch(&c, 0..5))
            .await
            .expect("accepted");
        let events: Vec<abi::EpochAnchored> = receipt
            .inner
            .logs()
            .iter()
            .filter_map(|l| abi::EpochAnchored::decode_log_data(l.data()).ok())
            .collect();
        assert_eq!(events.len(), 1, "one event per anchor");
        assert_eq!(EpochCommitment::from(&events[0]), c);
        assert_eq!(events[0].commitmentHash, c.struct_hash());
        anchored.push(c);
    }
    let latest = net.raw.latestEpoch().call().await.expect("latest");
    assert_eq!((latest.count, latest.epoch), (3, 3));
    assert_eq!(net.oracle.next_epoch().await.expect("next"), 4);
    for c in &anchored {
        assert_eq!(
            net.oracle.commitment_hash(c.epoch).await.expect("view"),
            Some(c.struct_hash())
        );
        assert!(net
            .raw
            .isAnchored(abi_commitment(c))
            .call()
            .await
            .expect("view"));
        assert_eq!(
            net.oracle.anchored_commitment(c.epoch).await.expect("read"),
            Some(*c)
        );
        let mut other = *c;
        other.ledger_state_root = alloy::primitives::B256::repeat_byte(0xee);
        assert!(!net
            .raw
            .isAnchored(abi_commitment(&other))
            .call()
            .await
            .expect("view"));
    }
    assert_eq!(net.oracle.commitment_hash(4).await.expect("view"), None);
    assert_eq!(net.oracle.anchored_commitment(4).await.expect("read"), None);
    assert_eq!(net.oracle.validator_set().await.expect("set"), net.set);
    let w = net
        .raw
        .weightOf(net.keys[3].address())
        .call()
        .await
        .expect("view");
    assert_eq!(w, U96::from(10u64));
    assert_eq!(
        net.raw
            .weightOf(Address::repeat_byte(7))
            .call()
            .await
            .expect("view"),
        U96::ZERO
    );
}

#[tokio::test]
async fn every_epoch_rejection() {
    let Some(net) = Net::start(7).await else {
        return;
    };
    let c1 = commitment(1, 1, 0);
    net.raw_submit(&c1, &net.sign_epoch(&c1, 0..5))
        .await
        .expect("epoch 1");
    let c2 = commitment(2, 1, 0);
    let good = net.sign_epoch(&c2, 0..5);

    // A signature by a key outside the set (a forgery) recovers to a non-member.
    let outsider = validator_key(100);
    let mut forged = net.sign_epoch(&c2, 0..4);
    forged.push(
        groundtruth_oracle::sign_digest(&outsider, &c2.signing_hash(&net.domain)).expect("sign"),
    );
    sort_by_signer(&mut forged, &c2, &net);
    assert!(
        matches!(net.raw_submit(&c2, &forged).await, Err(E::UnknownSigner(e)) if e.signer == outsider.address())
    );

    // Members' signatures over another commitment do not count for this one.
    let other = commitment(2, 1, 9);
    assert!(matches!(
        net.raw_submit(&c2, &net.sign_epoch(&other, 0..5)).await,
        Err(E::UnknownSigner(_))
    ));

    // Under quorum: 4 of 7 equal weights, and none at all.
    let under = net.sign_epoch(&c2, 0..4);
    assert!(matches!(
        net.raw_submit(&c2, &under).await,
        Err(E::InsufficientQuorum(e)) if e.signedWeight == U256::from(40) && e.totalWeight == U256::from(70)
    ));
    assert!(matches!(
        net.raw_submit(&c2, &[]).await,
        Err(E::InsufficientQuorum(_))
    ));

    // The same signer twice, and signers out of order.
    let mut dup = net.sign_epoch(&c2, 0..4);
    dup.insert(1, dup[0]);
    assert!(
        matches!(net.raw_submit(&c2, &dup).await, Err(E::SignersNotSorted(e)) if e.index == U256::from(1))
    );
    let mut unsorted = good.clone();
    unsorted.swap(2, 3);
    assert!(
        matches!(net.raw_submit(&c2, &unsorted).await, Err(E::SignersNotSorted(e)) if e.index == U256::from(3))
    );

    // The high-s twin of a valid signature (ecrecover alone would accept it).
    let mut malleable = good.clone();
    let s = U256::from_be_bytes(malleable[2].s.0);
    malleable[2] = CompactSignature {
        r: malleable[2].r,
        s: (order() - s).into(),
        v: 55 - malleable[2].v,
    };
    assert!(
        matches!(net.raw_submit(&c2, &malleable).await, Err(E::MalleableSignature(e)) if e.index == U256::from(2))
    );

    // A signature that recovers to no address.
    let mut invalid = good.clone();
    invalid[0].v = 29;
    assert!(
        matches!(net.raw_submit(&c2, &invalid).await, Err(E::InvalidSignature(e)) if e.index == U256::ZERO)
    );

    // A gap (epoch 3 before 2) and a duplicate (epoch 1 again, even with fresh signatures).
    let c3 = commitment(3, 1, 0);
    assert!(matches!(
        net.raw_submit(&c3, &net.sign_epoch(&c3, 0..5)).await,
        Err(E::EpochGap(e)) if e.epoch == 3 && e.nextEpoch == 2
    ));
    assert!(matches!(
        net.raw_submit(&c1, &net.sign_epoch(&c1, 0..7)).await,
        Err(E::EpochAlreadyAnchored(e)) if e.epoch == 1
    ));
    let c1b = commitment(1, 1, 5);
    assert!(matches!(
        net.raw_submit(&c1b, &net.sign_epoch(&c1b, 0..7)).await,
        Err(E::EpochAlreadyAnchored(_))
    ));

    // A commitment naming a set nonce other than the current one.
    for nonce in [0, 2] {
        let stale = commitment(2, nonce, 0);
        assert!(matches!(
            net.raw_submit(&stale, &net.sign_epoch(&stale, 0..7)).await,
            Err(E::StaleValidatorSet(e)) if e.given == nonce && e.current == 1
        ));
    }

    // None of the refusals changed anything; the good submission still goes through.
    assert_eq!(net.oracle.next_epoch().await.expect("next"), 2);
    net.raw_submit(&c2, &good).await.expect("epoch 2");
    assert_eq!(
        net.oracle.anchored_commitment(2).await.expect("read"),
        Some(c2)
    );
}

#[tokio::test]
async fn quorum_is_two_thirds_of_weight_not_of_heads() {
    // Weights 5,1,1,1,1,1: total 10, quorum 20/3, so 7 passes and 6 does not.
    let Some(net) = Net::start_weighted(&[5, 1, 1, 1, 1, 1]).await else {
        return;
    };
    let c = commitment(1, 1, 0);
    assert!(matches!(
        net.raw_submit(&c, &net.sign_epoch(&c, [0, 1])).await,
        Err(E::InsufficientQuorum(_))
    ));
    assert!(matches!(
        net.raw_submit(&c, &net.sign_epoch(&c, 1..6)).await,
        Err(E::InsufficientQuorum(_))
    ));
    net.raw_submit(&c, &net.sign_epoch(&c, [0, 1, 2]))
        .await
        .expect("7 of 10");
    // Exactly two thirds passes: 3 equal validators, 2 signatures.
    let Some(net) = Net::start(3).await else {
        return;
    };
    let c = commitment(1, 1, 0);
    net.raw_submit(&c, &net.sign_epoch(&c, [0, 2]))
        .await
        .expect("2 of 3");
}

#[tokio::test]
async fn set_update_with_quorum_then_old_set_refused() {
    let Some(net) = Net::start(4).await else {
        return;
    };
    let c1 = commitment(1, 1, 0);
    net.raw_submit(&c1, &net.sign_epoch(&c1, 0..3))
        .await
        .expect("epoch 1");

    // New set: validators 2..6 (2 and 3 stay, 0 and 1 leave), signed by 3 of the old 4.
    let new_keys: Vec<_> = (2..6).map(validator_key).collect();
    let next =
        ValidatorSet::new(2, new_keys.iter().map(|k| (k.address(), 20)).collect()).expect("set");
    let digest = next.update_signing_hash(&net.domain);

    // Refused: under quorum, wrong nonce, malformed sets.
    let under = net.sign(&digest, 0..2);
    assert!(matches!(
        update(&net, &next, &under).await,
        Err(E::InsufficientQuorum(_))
    ));
    let wrong_nonce = ValidatorSet::new(3, next.members().to_vec()).expect("set");
    let sigs = net.sign(&wrong_nonce.update_signing_hash(&net.domain), 0..4);
    assert!(matches!(
        update(&net, &wrong_nonce, &sigs).await,
        Err(E::SetNonceMismatch(e)) if e.given == 3 && e.expected == 2
    ));
    let a = next.addresses();
    let w = next.weights_u96();
    let malformed: Vec<(Vec<Address>, Vec<U96>)> = vec![
        (vec![], vec![]),
        (vec![a[1], a[0]], vec![w[0], w[1]]),
        (vec![a[0], a[0]], vec![w[0], w[1]]),
        (vec![a[0], a[1]], vec![w[0], U96::ZERO]),
        (vec![a[0], a[1]], vec![w[0]]),
        (vec![Address::ZERO, a[1]], vec![w[0], w[1]]),
    ];
    for (members, weights) in malformed {
        let d = net
            .raw
            .setUpdateDigest(2, members.clone(), weights.clone())
            .call()
            .await
            .expect("digest");
        let sigs: Vec<_> = net.sign(&d, 0..4).iter().map(abi_sig).collect();
        let err = net
            .raw
            .updateValidatorSet(2, members, weights, sigs)
            .send()
            .await
            .expect_err("refused");
        assert!(
            matches!(
                err.as_decoded_interface_error::<E>(),
                Some(E::InvalidValidatorSet(_))
            ),
            "{err}"
        );
    }

    // Accepted with quorum, through the client.
    let sigs = net.sign(&digest, [0, 1, 3]);
    assert!(matches!(
        net.oracle
            .update_validator_set(&next, &sigs)
            .await
            .expect("update"),
        groundtruth_oracle::Submission::Anchored { .. }
    ));
    assert_eq!(net.oracle.validator_set().await.expect("set"), next);
    let logs = net
        .raw
        .ValidatorSetUpdated_filter()
        .from_block(0)
        .query()
        .await
        .expect("logs");
    assert_eq!(logs.len(), 2, "genesis and the update");
    assert_eq!(logs[1].0.setNonce, 2);
    assert_eq!(logs[1].0.members, next.addresses());
    // The same update again: already installed for the client, a nonce mismatch for the contract.
    assert_eq!(
        net.oracle
            .update_validator_set(&next, &sigs)
            .await
            .expect("noop"),
        groundtruth_oracle::Submission::AlreadyAnchored
    );
    assert!(matches!(
        update(&net, &next, &sigs).await,
        Err(E::SetNonceMismatch(_))
    ));

    // The old set is refused: its nonce is stale, and its departed members no longer count.
    let c2_old = commitment(2, 1, 0);
    assert!(matches!(
        net.raw_submit(&c2_old, &net.sign_epoch(&c2_old, 0..4)).await,
        Err(E::StaleValidatorSet(e)) if e.given == 1 && e.current == 2
    ));
    let c2 = commitment(2, 2, 0);
    assert!(matches!(
        net.raw_submit(&c2, &net.sign_epoch(&c2, 0..4)).await,
        Err(E::UnknownSigner(_))
    ));
    assert_eq!(
        net.raw
            .weightOf(validator_key(0).address())
            .call()
            .await
            .expect("view"),
        U96::ZERO
    );
    // The new set anchors (validators 2..5 are keys 2..5 of a fresh signing helper).
    let mut sigs: Vec<_> = new_keys[..3]
        .iter()
        .map(|k| groundtruth_oracle::sign_digest(k, &c2.signing_hash(&net.domain)).expect("sign"))
        .collect();
    sort_by_signer(&mut sigs, &c2, &net);
    net.raw_submit(&c2, &sigs).await.expect("new set anchors");
}

async fn update(net: &Net, set: &ValidatorSet, sigs: &[CompactSignature]) -> Result<(), E> {
    match net
        .raw
        .updateValidatorSet(
            set.nonce(),
            set.addresses(),
            set.weights_u96(),
            sigs.iter().map(abi_sig).collect(),
        )
        .send()
        .await
    {
        Ok(p) => {
            assert!(p.get_receipt().await.expect("receipt").status());
            Ok(())
        }
        Err(e) => Err(e
            .as_decoded_interface_error::<E>()
            .unwrap_or_else(|| panic!("not a contract error: {e}"))),
    }
}

fn sort_by_signer(sigs: &mut [CompactSignature], c: &EpochCommitment, net: &Net) {
    let d = c.signing_hash(&net.domain);
    sigs.sort_by_key(|s| s.recover(&d));
}

fn abi_commitment(c: &EpochCommitment) -> abi::EpochCommitment {
    abi::EpochCommitment {
        epoch: c.epoch,
        readingsRoot: c.readings_root,
        verifiedTotalsRoot: c.verified_totals_root,
        proofDigestsRoot: c.proof_digests_root,
        ledgerStateRoot: c.ledger_state_root,
        setNonce: c.set_nonce,
    }
}
