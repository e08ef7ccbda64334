//! The multi-broker layout of the design (DESIGN.md, "No single broker or validator may be a
//! point of failure"): validators each embedding a broker and reading only from it, devices
//! spread over the brokers, readings replicated between validators over their swarm.
//!
//! Four validators, not three: with three equal stakes, killing one leaves 2/3 of the stake,
//! which does not finalize (a quorum needs more than 2/3), so the kill would stop the ledger
//! and the state-root check would test nothing. Validators 0, 1 and 2 have devices on their
//! brokers; validator 3 embeds a broker no device uses, so everything it holds came through
//! replication (or a fetch from peers).

use anyhow::{ensure, Result};
use groundtruth_device_sdk::{
    topics, DeviceKey, EnergyReading, Publisher, PublisherConfig, ReadingBody,
};
use groundtruth_integration::mqtt::{energy_frame, publish_all};
use groundtruth_integration::{seed_address, Broker, Genesis, TestNet};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const ALL: [usize; 4] = [0, 1, 2, 3];
/// Validators whose brokers have devices.
const BROKERS: usize = 3;
/// Honest devices, spread round-robin over the three brokers.
const DEVICES: u8 = 9;
/// Registered capacity (W): 100 Wh per 300 s interval fits.
const CAPACITY: u64 = 5000;
/// Devnet provider (seed 100) owning every test device (`Genesis::energy_device`).
const PROVIDER_SEED: u8 = 100;
/// The validator (and broker) killed.
const VICTIM: usize = 0;

/// An honest device: its key and the real SDK publisher (durable queue, resend handling,
/// failover to the next broker in its list).
struct Device {
    key: DeviceKey,
    publisher: Publisher,
    /// Readings made so far (seqs `0..made`).
    made: u64,
}

impl Device {
    /// Makes `n` more readings (100 Wh each, continuous register); the publisher delivers them.
    fn make(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            let seq = self.made;
            let start = 1_700_000_000 + seq * 300;
            let signed = self.publisher.publish(
                (start + 300) * 1000,
                ReadingBody::Energy(EnergyReading {
                    interval_start_s: start,
                    interval_len_s: 300,
                    energy_wh: 100,
                    register_wh: (seq + 1) * 100,
                }),
            )?;
            ensure!(signed.reading.seq == seq, "the publisher skipped a seq");
            self.made += 1;
        }
        Ok(())
    }
}

/// Every `device:seq` of the honest devices' readings, as `groundtruth store accepted` prints.
fn expected(devices: &[Device]) -> BTreeSet<String> {
    devices
        .iter()
        .flat_map(|d| (0..d.made).map(move |s| format!("{}:{s}", d.key.device_id())))
        .collect()
}

/// Waits until every publisher has its readings acknowledged by some broker.
fn flush_all(rt: &tokio::runtime::Runtime, devices: &[Device], timeout: Duration) -> Result<()> {
    for (i, d) in devices.iter().enumerate() {
        ensure!(
            rt.block_on(d.publisher.flush(timeout)),
            "device {i}: readings not acknowledged within {timeout:?}: {:?}",
            d.publisher.status()
        );
    }
    Ok(())
}

/// Three validators with their own brokers, nine devices spread over them, the fourth
/// validator without devices. Validator 0 (with its broker) is killed with `kill -9` while its
/// devices have readings in flight; they fail over to the next broker in their list and keep
/// publishing, and readings validator 0's broker had acknowledged but never delivered are
/// resent when a validator asks for the gap. Meanwhile one device sends two different readings
/// with one seq to two different brokers. Then validator 0 restarts (with an empty broker:
/// its devices stay where they moved) and fetches what it missed from its peers. In the end
/// every validator holds exactly every honest device's readings, readings published to one
/// broker reached the others only through replication, they agree on the state root, and the
/// equivocation was caught at ingest on every live validator and slashed once.
#[test]
fn a_killed_broker_loses_no_reading_and_a_split_equivocation_is_caught() -> Result<()> {
    let started = Instant::now();
    let seed = |i: usize| [120 + i as u8; 32];
    let keys: Vec<DeviceKey> = (0..usize::from(DEVICES))
        .map(|i| DeviceKey::from_seed(&seed(i)))
        .collect();
    let cheat = DeviceKey::from_seed(&[119; 32]);
    let genesis = keys
        .iter()
        .chain(std::iter::once(&cheat))
        .try_fold(Genesis::devnet()?.epoch_length(1000), |g, k| {
            Ok::<_, anyhow::Error>(g.energy_device(k, CAPACITY))
        })?;
    let mut net = TestNet::builder()
        .validators(4)
        .consensus(true)
        .broker(Broker::EmbeddedInEach)
        .genesis(genesis)
        .build()?;
    net.wait_height(&ALL, 1, Duration::from_secs(30))?;
    // Each validator reads only its own broker.
    for i in ALL {
        let n = net.node(i);
        ensure!(
            n.config().mqtt.url == format!("mqtt://{}", n.broker()),
            "validator {i} reads {} instead of its own broker {}",
            n.config().mqtt.url,
            n.broker()
        );
    }
    let brokers: Vec<_> = (0..BROKERS).map(|i| net.node(i).broker()).collect();

    // Nine devices, each with the real publisher: its home broker first, then the others.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let queues = tempfile::tempdir()?;
    let mut devices = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        let home = i % BROKERS;
        let order: Vec<_> = (0..BROKERS)
            .map(|k| brokers[(home + k) % BROKERS])
            .collect();
        let mut c = PublisherConfig::new(
            order[0].ip().to_string(),
            order[0].port(),
            queues.path().join(format!("d{i}")),
        );
        c.fallback_brokers = order[1..]
            .iter()
            .map(|a| (a.ip().to_string(), a.port()))
            .collect();
        c.reconnect_delay = Duration::from_millis(200);
        c.keep_alive = Duration::from_secs(5);
        let publisher = {
            let _rt = rt.enter();
            Publisher::start(DeviceKey::from_seed(&seed(i)), c)?
        };
        devices.push(Device {
            key,
            publisher,
            made: 0,
        });
    }

    // 1. Everything up: 10 readings a device reach every validator.
    for d in &mut devices {
        d.make(10)?;
    }
    flush_all(&rt, &devices, Duration::from_secs(15))?;
    let total = |devices: &[Device]| devices.iter().map(|d| d.made).sum::<u64>();
    for i in ALL {
        net.node(i)
            .wait_stored(total(&devices), Duration::from_secs(20))?;
    }

    // 2. Ten more each, and validator 0 dies with its broker while they are on their way:
    // what its broker held (acknowledged to the device or not) is gone with it.
    for d in &mut devices {
        d.make(10)?;
    }
    let promised = net.node(VICTIM).stored_accepted();
    let killed_at = net.node(VICTIM).height();
    net.node_mut(VICTIM).kill9();
    eprintln!(
        "killed validator {VICTIM} (and its broker) at height {killed_at} holding {promised} readings; {:.1} s in",
        started.elapsed().as_secs_f64()
    );
    let live = [1, 2, 3];

    // Its devices move to the next broker and keep publishing; all devices make ten more.
    for d in &mut devices {
        d.make(10)?;
    }
    flush_all(&rt, &devices, Duration::from_secs(20))?;

    // 3. Meanwhile a device signs seq 0 twice and sends one to broker 1, the other to broker 2:
    // neither broker alone sees a conflict.
    let cheat_topic = topics::readings_topic(&cheat.device_id());
    let a = energy_frame(&cheat, 0, 120, 120);
    let b = energy_frame(&cheat, 0, 200, 200);
    publish_all(brokers[1], &cheat_topic, std::slice::from_ref(&a))?;
    publish_all(brokers[2], &cheat_topic, std::slice::from_ref(&b))?;

    // The three live validators (3/4 of the stake) keep finalizing and get every reading,
    // including those validator 0's broker swallowed (asked again of the devices, which now
    // sit on broker 1) and one copy of the cheat's seq 0.
    let want = total(&devices) + 1;
    for i in live {
        net.node(i).wait_stored(want, Duration::from_secs(30))?;
    }
    net.wait_height(&live, killed_at + 3, Duration::from_secs(30))?;

    // The equivocation is caught at ingest on every live validator (each holds one copy and
    // receives the other, from its broker or a peer), and the ledger slashes the owner once.
    let provider = seed_address(PROVIDER_SEED);
    for i in live {
        net.node(i)
            .wait_outcome("equivocation", 1, Duration::from_secs(20), || Ok(()))?;
    }
    let until = Instant::now() + Duration::from_secs(30);
    while net.node(1).api().device_equivocation_slashes(&provider)? == 0 {
        ensure!(
            Instant::now() < until,
            "the split equivocation was never slashed"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // 4. Validator 0 comes back with an empty broker; its devices stay where they moved. The
    // devices' next readings reach it by replication; what it missed while down it fetches
    // from its peers (the sequence gap), since no device will ever resend on its broker.
    net.node_mut(VICTIM).restart()?;
    // Devices keep making a reading each every half second (the first may be gossiped before
    // the restarted validator has joined the mesh) until it holds all of them.
    let until = Instant::now() + Duration::from_secs(30);
    for round in 0.. {
        for d in &mut devices {
            d.make(1)?;
        }
        flush_all(&rt, &devices, Duration::from_secs(15))?;
        std::thread::sleep(Duration::from_millis(500));
        if round >= 2 && net.node(VICTIM).stored_accepted() >= total(&devices) {
            break;
        }
        ensure!(
            Instant::now() < until,
            "restarted validator {VICTIM} holds {} readings of the devices' {} after 30 s",
            net.node(VICTIM).stored_accepted(),
            total(&devices)
        );
    }
    let honest = total(&devices);
    for i in live {
        net.node(i)
            .wait_stored(honest + 1, Duration::from_secs(30))?;
    }
    net.node(VICTIM)
        .wait_stored(honest, Duration::from_secs(30))?;

    // Readings published to broker 0 reached validators 1 and 2 only through replication (each
    // reads only its own broker), and validator 3 has no device at all.
    for i in ALL {
        let m = net.node(i).metrics()?;
        let gossip =
            m.get("groundtruth_p2p_gossip_received_total{topic=\"readings\",verdict=\"accept\"}");
        ensure!(
            gossip >= 1.0,
            "validator {i} received no replicated readings ({gossip})"
        );
    }

    let resends: Vec<u64> = ALL
        .iter()
        .map(|i| {
            net.node(*i).metrics().map_or(0, |m| {
                m.get("groundtruth_ingest_resend_requests_total") as u64
            })
        })
        .collect();
    eprintln!(
        "gap (resend and peer fetch) requests per validator since its last start: {resends:?}"
    );

    // They agree on the state, including the restarted validator.
    let h = ALL.iter().map(|i| net.node(*i).height()).max().unwrap_or(0);
    net.wait_height(&ALL, h, Duration::from_secs(30))?;
    net.agreed_root(&ALL, h)?;
    for i in ALL {
        let n = net.node(i).api().device_equivocation_slashes(&provider)?;
        ensure!(
            n == 1,
            "validator {i}: {n} device-equivocation slashes of the owner, want exactly 1"
        );
    }

    // Every validator holds exactly every honest device's readings; each live one also the
    // cheat's seq 0, once (the copy it saw first).
    let expected_all = expected(&devices);
    ensure!(
        expected_all.len() as u64 == honest,
        "the devices made {honest} readings"
    );
    for d in devices {
        rt.block_on(d.publisher.shutdown());
    }
    let cheat_id = cheat.device_id().to_string();
    for i in ALL {
        let listed = net.node_mut(i).stop_and_list_accepted()?;
        let (cheats, honest_listed): (Vec<String>, Vec<String>) =
            listed.into_iter().partition(|s| s.starts_with(&cheat_id));
        let honest_listed: BTreeSet<String> = honest_listed.into_iter().collect();
        ensure!(
            honest_listed == expected_all,
            "validator {i} holds {} honest readings, want exactly {}",
            honest_listed.len(),
            expected_all.len()
        );
        if i != VICTIM {
            ensure!(
                cheats == vec![format!("{cheat_id}:0")],
                "validator {i} holds {cheats:?} of the equivocating device, want its seq 0 once"
            );
        }
    }
    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
