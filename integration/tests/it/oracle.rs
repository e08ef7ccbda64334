//! Oracle under faults: the anchoring validators killed with `kill -9` while a real L1 runs.
//!
//! Four validators with consensus anchor every epoch on anvil through the `GroundtruthOracle`
//! contract ([`TestNetBuilder::l1`](groundtruth_integration::TestNetBuilder::l1)). The poster
//! (the validator with the lowest operator address) is killed twice and another validator
//! once, at random (seeded) moments, each restarted on its data directory. While each is down
//! the others keep finalizing and L1 keeps accepting epochs (the next in line takes over after
//! the failover). In the end, read from the chain itself (`EpochAnchored` logs through
//! `eth_getLogs`, the contract's stored hashes): every epoch up to the target is anchored
//! exactly once, with the roots every validator's ledger holds for it, and the restarted poster
//! posts again. Skips with a message when anvil is not installed, fails under `CI=true`.
//!
//! `GROUNDTRUTH_FAULT_SEED=<seed>` replays a run.

use anyhow::{bail, ensure, Context, Result};
use groundtruth_integration::{
    address_of, fault_seed, l1_unavailable, operator_key, AnchoredLog, Genesis, TestNet,
};
use groundtruth_node::oracle::devnet::validator_l1_key;
use serde_json::Value;
use std::time::{Duration, Instant};

const ALL: [usize; 4] = [0, 1, 2, 3];
/// Timed epochs of a few seconds; without devices each commits (empty) once the validators'
/// audit loops have voted to close it and attested.
const EPOCH_S: u64 = 5;
/// Seconds from now to the start of epoch 0, enough to start four validators and the L1.
const STARTUP_S: u64 = 3;
/// Epochs anchored at least, from 0.
const MIN_EPOCHS: u64 = 6;

/// `Some(reason)` when the test cannot run here; an error when it must (CI).
fn skip() -> Result<Option<String>> {
    let Some(why) = l1_unavailable() else {
        return Ok(None);
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        bail!("the oracle fault test must run under CI=true: {why}");
    }
    Ok(Some(why))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `0x`-less lowercase hex of a JSON string (the API serves roots bare, L1 values with `0x`).
fn hex_of(v: &Value) -> String {
    let s = v.as_str().unwrap_or_default();
    s.strip_prefix("0x").unwrap_or(s).to_ascii_lowercase()
}

/// `0x`-less lowercase hex of a 32-byte value.
fn hex_b256(b: &groundtruth_oracle::B256) -> String {
    let s = format!("{b:x}");
    s.strip_prefix("0x").unwrap_or(&s).to_string()
}

#[test]
fn oracle_validators_killed_at_random_anchor_every_epoch_exactly_once() -> Result<()> {
    use rand::seq::SliceRandom;
    use rand::{Rng, SeedableRng};
    if let Some(why) = skip()? {
        eprintln!(
            "SKIPPED oracle_validators_killed_at_random_anchor_every_epoch_exactly_once: {why}"
        );
        return Ok(());
    }
    let started = Instant::now();
    let mut rng = rand::rngs::StdRng::seed_from_u64(fault_seed("oracle kill -9"));
    let mut net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .genesis(
            Genesis::devnet()?
                .timed(EPOCH_S, unix_now() + STARTUP_S)
                .param("audit_deadline_epochs", 1),
        )
        .l1(true)
        .configure(|_, cfg| {
            cfg.audit.enabled = true;
            cfg.audit.grace = Duration::from_secs(1);
            cfg.audit.poll = Duration::from_millis(300);
            cfg.audit.resend_after = Duration::from_secs(5);
        })
        .build()?;
    // The poster: lowest operator address (all four hold equal stake and an L1 key).
    let poster = ALL
        .into_iter()
        .min_by_key(|i| address_of(&operator_key(*i)).0)
        .context("no validator")?;
    eprintln!("poster: validator {poster}");
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    // L1 anchors the first epoch with everyone up.
    net.l1()?.wait_next_epoch(1, Duration::from_secs(60))?;

    // The poster twice and a random other validator once, in a random order.
    let others: Vec<usize> = ALL.into_iter().filter(|i| *i != poster).collect();
    let other = *others.choose(&mut rng).context("no other validator")?;
    let mut victims = vec![poster, poster, other];
    victims.shuffle(&mut rng);
    // Epochs L1 accepted while the poster was dead that it cannot have sent before dying.
    let mut taken_over = Vec::new();
    for (round, victim) in victims.into_iter().enumerate() {
        std::thread::sleep(Duration::from_millis(rng.gen_range(500..3000)));
        net.node_mut(victim).kill9();
        // Read once it is dead: a transaction it left pending can only anchor this epoch.
        let next = net.l1()?.next_epoch()?;
        eprintln!(
            "round {round}: killed validator {victim} with L1 at epoch {next} ({:.1?} in)",
            started.elapsed()
        );
        let others: Vec<usize> = ALL.into_iter().filter(|i| *i != victim).collect();
        // The other three hold 3/4 of the stake: they keep finalizing...
        net.wait_advance(&others, 2, Duration::from_secs(30))?;
        // ...and L1 keeps accepting epochs without it: without the poster, the next in line
        // takes over after the failover.
        let more = if victim == poster {
            taken_over.push(next + 1);
            2
        } else {
            1
        };
        net.l1()?
            .wait_next_epoch(next + more, Duration::from_secs(60))
            .with_context(|| format!("round {round}: L1 stalled with validator {victim} down"))?;
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..2000)));
        net.node_mut(victim).restart()?;
        eprintln!(
            "round {round}: restarted validator {victim} with L1 at epoch {} ({:.1?} in)",
            net.l1()?.next_epoch()?,
            started.elapsed()
        );
    }

    // Anchoring goes on with everyone back: a few more epochs, at least MIN_EPOCHS in all.
    let after_faults = net.l1()?.next_epoch()?;
    let target = MIN_EPOCHS.max(after_faults + 3);
    net.l1()?
        .wait_next_epoch(target, Duration::from_secs(90))
        .context("L1 stalled after the restarts")?;
    let top = ALL.iter().map(|i| net.node(*i).height()).max().unwrap_or(0);
    net.wait_height(&ALL, top + 2, Duration::from_secs(30))?;
    eprintln!(
        "L1 at epoch {} ({:.1?} in)",
        net.l1()?.next_epoch()?,
        started.elapsed()
    );

    // Exactly once, from the chain: one EpochAnchored log per epoch, none twice.
    let l1 = net.l1()?;
    let logs = l1.anchored_logs()?;
    let mut seen = std::collections::BTreeMap::<u64, Vec<&AnchoredLog>>::new();
    for log in &logs {
        seen.entry(log.commitment.epoch).or_default().push(log);
    }
    for (epoch, v) in &seen {
        ensure!(
            v.len() == 1,
            "epoch {epoch} anchored {} times on L1: {v:?}",
            v.len()
        );
    }
    for epoch in 0..target {
        let log = seen
            .get(&epoch)
            .and_then(|v| v.first())
            .with_context(|| format!("epoch {epoch} has no EpochAnchored log on L1"))?;
        let hash = log.commitment.struct_hash();
        ensure!(
            l1.commitment_hash(epoch)? == Some(hash),
            "epoch {epoch}: the contract stores another hash than its log's commitment"
        );
        // The anchored roots are the ledger's, on every validator, and each validator's
        // oracle reads back the same anchor.
        let views = net.wait_epoch(&ALL, epoch, Duration::from_secs(30), |v| {
            v["commitment"].is_object() && v["l1"].is_object()
        })?;
        for (i, v) in ALL.iter().zip(&views) {
            let c = &v["commitment"];
            let c1 = &log.commitment;
            for (name, ledger, anchored) in [
                ("readings_root", &c["readings_root"], &c1.readings_root),
                ("totals_root", &c["totals_root"], &c1.verified_totals_root),
                ("proofs_root", &c["proofs_root"], &c1.proof_digests_root),
                ("state_root", &c["state_root"], &c1.ledger_state_root),
            ] {
                ensure!(
                    hex_of(ledger) == hex_b256(anchored),
                    "epoch {epoch}: validator {i}'s {name} is {ledger}, L1 holds {anchored}"
                );
            }
            let a = &v["l1"];
            ensure!(
                hex_of(&a["commitment_hash"]) == hex_b256(&hash)
                    && hex_of(&a["tx"]) == hex_b256(&log.tx)
                    && a["block"].as_u64() == Some(log.block),
                "epoch {epoch}: validator {i} serves anchor {a}, L1's log is {log:?}"
            );
        }
    }

    // Who posted each epoch (validator index, from the transactions' senders).
    let l1_keys: Vec<_> = ALL
        .iter()
        .map(|i| validator_l1_key(*i).map(|k| k.address()))
        .collect::<Result<_, _>>()?;
    let mut posters = Vec::new();
    for (epoch, v) in &seen {
        if let Some(log) = v.first() {
            let from = l1.sender_of(log.tx)?;
            posters.push((*epoch, l1_keys.iter().position(|a| *a == from)));
        }
    }
    eprintln!("(epoch, posting validator): {posters:?}");
    for e in &taken_over {
        let by = posters.iter().find(|(x, _)| x == e).and_then(|(_, by)| *by);
        ensure!(
            by.is_some_and(|v| v != poster),
            "epoch {e}, anchored while the poster was dead, was posted by {by:?}"
        );
    }
    // The restarted poster is not stuck: it posted at least one epoch anchored after the
    // faults (the others only step in after the failover).
    let posted_after: Vec<u64> = posters
        .iter()
        .filter(|(e, by)| (after_faults..target).contains(e) && *by == Some(poster))
        .map(|(e, _)| *e)
        .collect();
    ensure!(
        !posted_after.is_empty(),
        "the poster (validator {poster}) posted none of epochs {after_faults}..{target} after its restarts"
    );
    eprintln!(
        "epochs 0..{target} anchored exactly once; the poster posted {posted_after:?} after the faults; {:.1?} in all",
        started.elapsed()
    );
    Ok(())
}
