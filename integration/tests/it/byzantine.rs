//! A validator that double-votes, through the consensus engine's own path: validator 3 runs
//! with `GROUNDTRUTH_BYZANTINE=double-vote@<from>..<to>`, which puts Malachite's byzantine
//! network proxy between its engine and its swarm; at those heights every vote it signs is
//! followed by a conflicting one (a vote for the block by a nil vote), signed with its key and
//! gossiped on the real consensus network. The honest validators' engines detect the
//! equivocation (`MisbehaviorEvidence` in `Finalized`), hand it to the node, which submits it as
//! a ledger transaction; the ledger verifies it and slashes once per height. Several heights,
//! because on a loaded machine the conflicting vote of one height may reach the honest engines
//! only after they decided it (too late to be evidence); the ledger's rule makes the outcome
//! exact anyway: every validator's ledger shows the same slashes, at least one and at most one
//! per equivocating height, each burning exactly the genesis parameter of the stake left.

use anyhow::{ensure, Context, Result};
use groundtruth_integration::{seed_address, Genesis, TestNet};
use serde_json::Value;
use std::time::Duration;

/// Basis points of stake a double vote burns (set in genesis; the devnet default is 500).
const SLASH_BP: u64 = 700;
/// The heights at which validator 3 equivocates.
const FROM: u64 = 4;
const TO: u64 = 9;

fn stake_of(view: &Value, operator: &str) -> Option<u64> {
    view["validators"]
        .as_array()?
        .iter()
        .find(|v| v["operator"] == operator)?["stake"]
        .as_u64()
}

fn double_sign_slashes<'a>(view: &'a Value, operator: &str) -> Vec<&'a Value> {
    view["slashes"].as_array().map_or(Vec::new(), |s| {
        s.iter()
            .filter(|r| r["reason"] == "double_sign" && r["offender"]["validator"] == operator)
            .collect()
    })
}

#[test]
fn double_vote_through_the_engine_slashes_on_every_validator() -> Result<()> {
    const BYZANTINE: usize = 3;
    let all = [0, 1, 2, 3];
    // Devnet operator keys are seeds 10 + i.
    let offender = seed_address(10 + BYZANTINE as u8);
    let net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(Genesis::devnet()?.param("slash_double_sign_bp", SLASH_BP as i64))
        .node_env(
            BYZANTINE,
            "GROUNDTRUTH_BYZANTINE",
            &format!("double-vote@{FROM}..{TO}"),
        )
        .build()?;

    // The offender's stake before the equivocation (genesis bonded stake).
    net.wait_height(&[0], 1, Duration::from_secs(40))?;
    let (_, before) = net.node(0).api().get_json("/state/validators")?;
    let stake = stake_of(&before, &offender).context("offender not in the validator set")?;
    ensure!(
        before["height"].as_u64().is_some_and(|h| h < FROM),
        "the network passed height {FROM} before the first look: {}",
        before["height"]
    );
    ensure!(
        double_sign_slashes(&before, &offender).is_empty(),
        "slashed before misbehaving"
    );

    let views = net.wait_all(&all, "/state/validators", Duration::from_secs(75), |v| {
        !double_sign_slashes(v, &offender).is_empty()
    })?;
    // Give the evidence of the last equivocating height, and duplicates (every honest
    // validator submits its own), blocks to land in.
    let h = views
        .iter()
        .filter_map(|v| v["height"].as_u64())
        .max()
        .unwrap_or(0);
    net.wait_height(&all, h.max(TO) + 4, Duration::from_secs(40))?;

    let mut lists = Vec::new();
    let mut heights = Vec::new();
    for i in all {
        let (_, v) = net.node(i).api().get_json("/state/validators")?;
        heights.push(v["height"].as_u64().unwrap_or(0));
        let slashes: Vec<Value> = double_sign_slashes(&v, &offender)
            .into_iter()
            .cloned()
            .collect();
        ensure!(
            (1..=(TO - FROM + 1) as usize).contains(&slashes.len()),
            "validator {i}: {} double-sign slashes of validator {BYZANTINE} for {} equivocating heights: {}",
            slashes.len(),
            TO - FROM + 1,
            v["slashes"]
        );
        // Each slash burns exactly SLASH_BP of the stake left before it.
        let mut left = stake;
        for s in &slashes {
            let burn = left * SLASH_BP / 10_000;
            ensure!(
                s["amount"].as_u64() == Some(burn),
                "validator {i}: slash amount {} for stake {left} at {SLASH_BP} bp",
                s["amount"]
            );
            left -= burn;
        }
        ensure!(
            stake_of(&v, &offender) == Some(left),
            "validator {i}: offender's stake {:?}, expected {left} ({stake} less {} slashes of {SLASH_BP} bp)",
            stake_of(&v, &offender),
            slashes.len()
        );
        // Honest validators keep their stake.
        for j in (0..4).filter(|j| *j != BYZANTINE) {
            let honest = seed_address(10 + j as u8);
            ensure!(
                stake_of(&v, &honest) == stake_of(&before, &honest),
                "validator {i}: honest validator {j}'s stake changed"
            );
        }
        lists.push(slashes);
    }
    // Read at slightly different heights: compare what each had applied by the lowest one.
    let common = heights.iter().min().copied().unwrap_or(0);
    let upto = |l: &Vec<Value>| -> Vec<Value> {
        l.iter()
            .filter(|s| s["height"].as_u64().is_some_and(|h| h <= common))
            .cloned()
            .collect()
    };
    ensure!(
        lists.windows(2).all(|w| upto(&w[0]) == upto(&w[1])),
        "the validators' ledgers list different slashes up to height {common}: {lists:?}"
    );
    // The offender's log shows the proxy equivocated; the honest ones saw it as evidence.
    let byz_log = std::fs::read_to_string(net.node(BYZANTINE).log_path())?;
    ensure!(
        byz_log.contains("BYZANTINE: Equivocating vote"),
        "validator {BYZANTINE}'s byzantine proxy never equivocated"
    );
    let detected = (0..BYZANTINE)
        .filter(|i| {
            std::fs::read_to_string(net.node(*i).log_path())
                .is_ok_and(|l| l.contains("double vote"))
        })
        .count();
    ensure!(detected > 0, "no honest engine reported the double vote");
    Ok(())
}
