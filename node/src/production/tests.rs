//! The production model over a real sled database in a temporary directory.

use std::collections::HashMap;

use groundtruth_device_sdk::{DeviceKey, EnergyReading, GpuReading, StorageHeartbeat};

use super::*;

type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

const DAY: u64 = 1_714_521_600; // 2024-05-01T00:00:00Z

fn key(n: u8) -> DeviceKey {
    DeviceKey::from_seed(&[n; 32])
}

fn energy(k: &DeviceKey, seq: u64, start: u64, wh: u64) -> Reading {
    Reading {
        device: k.device_id(),
        seq,
        timestamp_ms: (start + 60) * 1000,
        body: ReadingBody::Energy(EnergyReading {
            interval_start_s: start,
            interval_len_s: 60,
            energy_wh: wh,
            register_wh: 0,
        }),
    }
}

fn gpu(k: &DeviceKey, seq: u64, start: u64, ms: u64) -> Reading {
    Reading {
        device: k.device_id(),
        seq,
        timestamp_ms: (start + 60) * 1000,
        body: ReadingBody::Gpu(GpuReading {
            interval_start_s: start,
            interval_len_s: 60,
            gpu_ms: ms,
            utilisation_bp: 5000,
            energy_wh: 9,
        }),
    }
}

/// Regions: devices 1..=3 in DE-BY, 4 in FR-IDF, the rest in none.
fn regions() -> RegionResolver {
    Arc::new(|d: &DeviceId| {
        (1..=3u8)
            .find(|n| key(*n).device_id() == *d)
            .map(|_| "DE-BY".to_string())
            .or_else(|| (key(4).device_id() == *d).then(|| "FR-IDF".to_string()))
    })
}

fn open(dir: &std::path::Path) -> Result<Production> {
    Production::open(dir, regions())
}

/// A deterministic spread of energy readings: device n, seq s, every 100 s, value from a
/// simple generator; returns them with the expected sum per (device, 5-min bucket).
fn fleet(devices: &[u8], per_device: u64) -> (Vec<Reading>, HashMap<(DeviceId, u64), u64>) {
    let mut out = Vec::new();
    let mut sums: HashMap<(DeviceId, u64), u64> = HashMap::new();
    let mut x: u64 = 0x9E37_79B9;
    for &n in devices {
        let k = key(n);
        for s in 0..per_device {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let wh = (x >> 33) % 500;
            let start = DAY + s * 100;
            out.push(energy(&k, s, start, wh));
            *sums.entry((k.device_id(), bucket_of(start))).or_default() += wh;
        }
    }
    (out, sums)
}

fn all_points(p: &Production, d: &DeviceId, from: u64, to: u64, step: u64) -> Result<Vec<Point>> {
    let mut points = Vec::new();
    let mut at = from;
    loop {
        let page = p.device_series(d, at, to, step, 7)?;
        points.extend(page.points);
        match page.next {
            Some(n) => at = n,
            None => return Ok(points),
        }
    }
}

#[test]
fn buckets_equal_the_sum_of_readings_and_redelivery_counts_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let (readings, sums) = fleet(&[1, 2, 4, 9], 200);
    for chunk in readings.chunks(37) {
        p.record(chunk)?;
    }
    // Redelivered (whole and in different chunks): nothing changes.
    assert_eq!(p.record(&readings)?, 0);
    for chunk in readings.chunks(5) {
        assert_eq!(p.record(chunk)?, 0);
    }
    assert_eq!(p.counters().recorded.load(Ordering::Relaxed), 800);
    assert_eq!(p.counters().already_counted.load(Ordering::Relaxed), 1600);
    for n in [1u8, 2, 4, 9] {
        let d = key(n).device_id();
        let points = all_points(&p, &d, DAY, DAY + 86_400, BUCKET_S)?;
        let expected: Vec<(u64, u64)> = {
            let mut v: Vec<(u64, u64)> = sums
                .iter()
                .filter(|((dd, _), _)| *dd == d)
                .map(|((_, b), wh)| (*b, *wh))
                .collect();
            v.sort();
            v
        };
        let got: Vec<(u64, u64)> = points.iter().map(|p| (p.start, p.wh)).collect();
        assert_eq!(got, expected, "device {n}");
        assert!(points
            .iter()
            .all(|p| p.status == Status::Reported && p.evidence.is_empty()));
        let entry = p.device(&d)?.ok_or("device entry")?;
        assert_eq!(entry.readings, 200);
        assert_eq!(entry.wh, expected.iter().map(|(_, w)| w).sum::<u64>());
    }
    // Reopened: the sums are durable and still idempotent.
    p.flush()?;
    drop(p);
    let p = open(dir.path())?;
    assert_eq!(p.record(&readings[..10])?, 0);
    Ok(())
}

#[test]
fn coarser_granularities_sum_buckets() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    // Two days of one reading per 5-minute bucket, 1 Wh + bucket index.
    let k = key(1);
    let readings: Vec<Reading> = (0..576u64)
        .map(|i| energy(&k, i, DAY + i * BUCKET_S, 1 + i))
        .collect();
    p.record(&readings)?;
    let d = k.device_id();
    for step in [300u64, 900, 3600, 86_400] {
        let points = all_points(&p, &d, DAY, DAY + 2 * 86_400, step)?;
        let per = step / BUCKET_S;
        assert_eq!(points.len() as u64, 576 / per, "step {step}");
        for (j, point) in points.iter().enumerate() {
            let j = j as u64;
            let expected: u64 = (j * per..(j + 1) * per).map(|i| 1 + i).sum();
            assert_eq!(point.start, DAY + j * step);
            assert_eq!(point.wh, expected, "step {step} interval {j}");
            assert_eq!(point.readings, per);
        }
    }
    // A range inside the data: only its intervals.
    let hour = p.device_series(&d, DAY + 3600, DAY + 3 * 3600, 3600, 100)?;
    assert_eq!(hour.points.len(), 2);
    assert_eq!(hour.next, None);
    assert_eq!(hour.points[0].wh, (12..24u64).map(|i| 1 + i).sum::<u64>());
    // Paging stops at `limit` intervals and resumes exactly there.
    let first = p.device_series(&d, DAY, DAY + 86_400, 900, 3)?;
    assert_eq!(first.points.len(), 3);
    assert_eq!(first.next, Some(DAY + 3 * 900));
    Ok(())
}

#[test]
fn region_totals_equal_the_sum_over_its_devices() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let (readings, _) = fleet(&[1, 2, 3, 4, 9], 150);
    p.record(&readings)?;
    for step in [300u64, 3600, 86_400] {
        let region = p.region_series("DE-BY", DAY, DAY + 86_400, step, 1000)?;
        let mut by_interval: HashMap<u64, (u64, u64)> = HashMap::new();
        for n in [1u8, 2, 3] {
            for point in all_points(&p, &key(n).device_id(), DAY, DAY + 86_400, step)? {
                let e = by_interval.entry(point.start).or_default();
                e.0 += point.wh;
                e.1 += point.readings;
            }
        }
        let mut expected: Vec<(u64, u64, u64)> = by_interval
            .into_iter()
            .map(|(s, (w, r))| (s, w, r))
            .collect();
        expected.sort();
        let got: Vec<(u64, u64, u64)> = region
            .points
            .iter()
            .map(|p| (p.start, p.wh, p.readings))
            .collect();
        assert_eq!(got, expected, "step {step}");
    }
    let fr = p.region_series("FR-IDF", DAY, DAY + 86_400, 86_400, 10)?;
    assert_eq!(fr.points.len(), 1);
    assert_eq!(fr.points[0].readings, 150);
    assert!(p
        .region_series("nowhere", DAY, DAY + 86_400, 86_400, 10)?
        .points
        .is_empty());
    assert!(p
        .region_series("", DAY, DAY + 86_400, 86_400, 10)?
        .points
        .is_empty());
    Ok(())
}

#[test]
fn gpu_and_storage_readings() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let g = key(5);
    let s = key(6);
    let storage = Reading {
        device: s.device_id(),
        seq: 0,
        timestamp_ms: DAY * 1000,
        body: ReadingBody::Storage(StorageHeartbeat {
            data_root: [1; 32],
            capacity_bytes: 1 << 40,
        }),
    };
    assert_eq!(
        p.record(&[
            gpu(&g, 0, DAY, 40_000),
            gpu(&g, 1, DAY + 60, 50_000),
            storage
        ])?,
        2
    );
    let page = p.device_series(&g.device_id(), DAY, DAY + 300, 300, 10)?;
    assert_eq!(page.points.len(), 1);
    assert_eq!((page.points[0].gpu_ms, page.points[0].wh), (90_000, 0));
    assert!(
        p.device(&s.device_id())?.is_none(),
        "storage has no production"
    );
    let entry = p.device(&g.device_id())?.ok_or("gpu entry")?;
    assert_eq!(entry.kind, "gpu");
    Ok(())
}

#[test]
fn upgrades_raise_status_with_evidence_and_late_readings_fall_back() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let k = key(1);
    let d = k.device_id();
    let readings: Vec<Reading> = (0..6u64)
        .map(|i| energy(&k, i, DAY + i * 300, 10))
        .collect();
    p.record(&readings)?;
    // Attest the first 3 buckets (epoch 7), then verify the first 2.
    assert_eq!(
        p.upgrade(&d, (DAY, DAY + 900), StatusUpgrade::Attested { epoch: 7 })?,
        3
    );
    assert_eq!(
        p.upgrade(
            &d,
            (DAY, DAY + 600),
            StatusUpgrade::Verified {
                epoch: 7,
                proof: [9; 32]
            }
        )?,
        2
    );
    // Never lowered.
    assert_eq!(
        p.upgrade(&d, (DAY, DAY + 600), StatusUpgrade::Attested { epoch: 7 })?,
        0
    );
    let page = p.device_series(&d, DAY, DAY + 1800, 300, 10)?;
    let statuses: Vec<Status> = page.points.iter().map(|p| p.status).collect();
    use Status::*;
    assert_eq!(
        statuses,
        [Verified, Verified, Attested, Reported, Reported, Reported]
    );
    assert_eq!(
        page.points[0].evidence,
        vec![Evidence {
            epoch: 7,
            proof: Some([9; 32]),
            l1_tx: None,
            l1_block: None,
        }]
    );
    // The 15-minute interval is as weak as its weakest bucket, with both evidences.
    let q = p.device_series(&d, DAY, DAY + 1800, 900, 10)?;
    assert_eq!(q.points[0].status, Attested);
    assert_eq!(q.points[0].evidence.len(), 2);
    // Region counts follow.
    let r = p.region_series("DE-BY", DAY, DAY + 1800, 300, 10)?;
    assert_eq!(
        r.points.iter().map(|p| p.status).collect::<Vec<_>>(),
        statuses
    );
    // A late reading in a verified bucket is not covered: back to reported.
    p.record(&[energy(&k, 6, DAY + 30, 5)])?;
    let page = p.device_series(&d, DAY, DAY + 300, 300, 10)?;
    assert_eq!((page.points[0].status, page.points[0].wh), (Reported, 15));
    assert!(page.points[0].evidence.is_empty());
    let r = p.region_series("DE-BY", DAY, DAY + 300, 300, 10)?;
    assert_eq!((r.points[0].status, r.points[0].readings), (Reported, 2));
    Ok(())
}

#[test]
fn catch_up_counts_what_the_store_has_exactly_once() -> TestResult {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("store"))?;
    let p = open(&dir.path().join("production"))?;
    let k = key(2);
    let mut total = 0;
    for seq in 0..50u64 {
        let r = energy(&k, seq, DAY + seq * 60, seq);
        total += seq;
        store.put(
            &r.device,
            seq,
            StoredStatus::Accepted,
            &k.sign(r).to_frame(),
        )?;
    }
    // One rejected (implausible) reading on record: not production.
    let rejected = energy(&k, 50, DAY, 1_000_000);
    store.put(
        &rejected.device,
        50,
        StoredStatus::Rejected,
        &k.sign(rejected).to_frame(),
    )?;
    // Ingest had recorded the first 20 before a crash.
    let first: Vec<Reading> = (0..20u64).map(|s| energy(&k, s, DAY + s * 60, s)).collect();
    p.record(&first)?;
    assert_eq!(p.catch_up(&store)?, 30);
    assert_eq!(p.catch_up(&store)?, 0);
    let entry = p.device(&k.device_id())?.ok_or("entry")?;
    assert_eq!((entry.readings, entry.wh), (50, total));
    Ok(())
}

#[test]
fn events_for_new_readings_only_and_devices_page() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let mut rx = p.subscribe();
    let r = energy(&key(3), 0, DAY, 42);
    p.record(&[r])?;
    p.record(&[r])?;
    let e = rx.try_recv()?;
    assert_eq!((e.seq, e.energy_wh, e.region.as_str()), (0, 42, "DE-BY"));
    assert_eq!(e.interval_start, "2024-05-01T00:00:00Z");
    assert!(rx.try_recv().is_err(), "a redelivery is not an event");
    for n in 10..15u8 {
        p.record(&[energy(&key(n), 0, DAY, 1)])?;
    }
    let (page1, more) = p.devices(None, 4)?;
    assert!(more);
    let (page2, more2) = p.devices(page1.last().map(|(d, _)| d), 4)?;
    assert!(!more2);
    let mut ids: Vec<DeviceId> = page1.iter().chain(&page2).map(|(d, _)| *d).collect();
    assert_eq!(ids.len(), 6);
    let sorted = {
        let mut s = ids.clone();
        s.sort();
        s
    };
    assert_eq!(ids, sorted);
    ids.dedup();
    assert_eq!(ids.len(), 6);
    Ok(())
}

fn anchored(epoch: u64, clock: EpochClock, audited: &[DeviceId], tx: u8) -> AnchoredEpoch {
    AnchoredEpoch {
        epoch,
        clock,
        audited: audited.iter().map(|d| (*d, [epoch as u8; 32])).collect(),
        anchor: L1Anchor {
            tx: [tx; 32],
            block: 100 + epoch,
            commitment_hash: [7; 32],
        },
    }
}

/// An hour spanning two 30-minute epochs is issued once, when the second is anchored, with
/// the exact energy of both halves and both epochs' evidence; replaying either anchor (or both)
/// issues nothing more and changes nothing.
#[test]
fn certificates_are_issued_once_per_device_hour_with_exact_energy() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let (k1, k2) = (key(1), key(2));
    let (d1, d2) = (k1.device_id(), k2.device_id());
    // Device 1: 12 readings over the hour [DAY, DAY+3600), 10 + i Wh. Device 2: one reading
    // in the first half only.
    let readings: Vec<Reading> = (0..12u64)
        .map(|i| energy(&k1, i, DAY + i * 300, 10 + i))
        .chain([energy(&k2, 0, DAY + 600, 500)])
        .collect();
    p.record(&readings)?;
    let clock = EpochClock {
        genesis_s: DAY,
        duration_s: 1800,
    };
    let e0 = anchored(0, clock, &[d1, d2], 0xa0);
    let e1 = anchored(1, clock, &[d1], 0xa1);

    let o = p.anchor_epoch(&e0, 1)?;
    assert_eq!(o.buckets, 6 + 1, "the first half's buckets of both devices");
    assert!(o.issued.is_empty(), "the hour is not closed yet");
    assert!(p.anchor_epoch(&e0, 2)?.issued.is_empty(), "replay: nothing");
    // The first half is anchored with its L1 transaction and block.
    let half = p.device_series(&d1, DAY, DAY + 1800, 1800, 10)?;
    assert_eq!(half.points[0].status, Status::Anchored);
    assert_eq!(
        half.points[0].evidence,
        vec![Evidence {
            epoch: 0,
            proof: Some([0; 32]),
            l1_tx: Some([0xa0; 32]),
            l1_block: Some(100),
        }]
    );

    let o = p.anchor_epoch(&e1, 3)?;
    assert_eq!(o.buckets, 6);
    let mut issued = o.issued.clone();
    issued.sort();
    let mut expected = vec![Certificate::id_of(&d1, DAY), Certificate::id_of(&d2, DAY)];
    expected.sort();
    assert_eq!(issued, expected);
    // Replays of both epochs, in any order: nothing new.
    assert!(p.anchor_epoch(&e1, 4)?.issued.is_empty());
    assert!(p.anchor_epoch(&e0, 5)?.issued.is_empty());
    assert_eq!(p.certificate_count(), 2);

    let c1 = p
        .certificate(&Certificate::id_of(&d1, DAY))?
        .ok_or("certificate of device 1")?;
    assert_eq!(
        c1.wh,
        (10..22).sum::<u64>(),
        "exactly the hour's 12 readings"
    );
    assert_eq!(c1.readings, 12);
    assert_eq!(c1.unanchored_wh, 0);
    assert_eq!((c1.start, c1.end), (DAY, DAY + 3600));
    assert_eq!(c1.issued_at, 3, "issued by the first anchor that closed it");
    assert_eq!(c1.region, "DE-BY");
    let epochs: Vec<(u64, Option<[u8; 32]>)> =
        c1.evidence.iter().map(|e| (e.epoch, e.l1_tx)).collect();
    assert_eq!(epochs, vec![(0, Some([0xa0; 32])), (1, Some([0xa1; 32]))]);
    let c2 = p
        .certificate(&Certificate::id_of(&d2, DAY))?
        .ok_or("certificate of device 2")?;
    assert_eq!((c2.wh, c2.readings), (500, 1));

    // A late reading in a certified hour: the bucket falls back to reported, the certificate
    // stays as issued and nothing is issued again.
    p.record(&[energy(&k1, 12, DAY + 3300, 1000)])?;
    assert!(p.anchor_epoch(&e1, 6)?.issued.is_empty());
    assert_eq!(
        p.certificate(&Certificate::id_of(&d1, DAY))?,
        Some(c1.clone())
    );

    // Listing: by time (both), by device, paged with the cursor.
    let all = CertificateQuery {
        device: None,
        from: DAY,
        to: DAY + 86_400,
        after: None,
        limit: 1,
    };
    let (page, next) = p.certificates(&all)?;
    assert_eq!(page.len(), 1);
    let next = next.ok_or("a second page")?;
    let (page2, end) = p.certificates(&CertificateQuery {
        after: Some(next),
        ..all
    })?;
    assert_eq!(page2.len(), 1);
    assert_eq!(end, None);
    assert_ne!(page[0].id, page2[0].id);
    let (mine, _) = p.certificates(&CertificateQuery {
        device: Some(d1),
        limit: 10,
        ..all
    })?;
    assert_eq!(mine, vec![c1]);
    let (none, _) = p.certificates(&CertificateQuery {
        from: DAY + 3600,
        limit: 10,
        ..all
    })?;
    assert!(none.is_empty());
    Ok(())
}

/// Energy of a bucket that is not anchored is not certified (and reported beside it); an
/// hour is issued only once all the epochs meeting it are anchored, whatever the order.
#[test]
fn only_anchored_buckets_are_certified_and_anchors_may_arrive_out_of_order() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let k = key(3);
    let d = k.device_id();
    let clock = EpochClock {
        genesis_s: DAY,
        duration_s: 1200,
    };
    let readings: Vec<Reading> = (0..12u64)
        .map(|i| energy(&k, i, DAY + i * 300, 100))
        .collect();
    p.record(&readings)?;
    // Epochs 2, then 0 (the device is not audited in epoch 1), then 1.
    assert!(p
        .anchor_epoch(&anchored(2, clock, &[d], 2), 1)?
        .issued
        .is_empty());
    assert!(p
        .anchor_epoch(&anchored(0, clock, &[d], 0), 1)?
        .issued
        .is_empty());
    let o = p.anchor_epoch(&anchored(1, clock, &[], 1), 9)?;
    assert_eq!(o.issued, vec![Certificate::id_of(&d, DAY)]);
    let c = p
        .certificate(&Certificate::id_of(&d, DAY))?
        .ok_or("certificate")?;
    assert_eq!(c.wh, 800, "epochs 0 and 2: 8 buckets of 100 Wh");
    assert_eq!(c.unanchored_wh, 400, "epoch 1's 4 buckets were not audited");
    assert_eq!(
        c.evidence.iter().map(|e| e.epoch).collect::<Vec<_>>(),
        vec![0, 2]
    );
    assert_eq!(p.l1_anchor(1)?.map(|a| a.block), Some(101));
    Ok(())
}

/// Epoch windows shorter than a bucket: a 5-minute bucket of 60-second readings is attested
/// only once windows covering all its readings were reported (in any order), and a reading
/// that arrives after its window was reported (so outside that epoch's commitment) drops the
/// bucket back to `reported`.
#[test]
fn a_bucket_spanning_several_epochs_is_raised_only_when_every_reading_is_covered() -> TestResult {
    let dir = tempfile::tempdir()?;
    let p = open(dir.path())?;
    let k = key(3);
    let d = k.device_id();
    // Readings at DAY + 0, 60, 120, 180 (seq 0..4); the one at DAY + 240 comes late.
    let readings: Vec<Reading> = (0..4u64).map(|i| energy(&k, i, DAY + i * 60, 5)).collect();
    p.record(&readings)?;
    let status = |p: &Production| -> std::result::Result<Status, Box<dyn std::error::Error>> {
        let page = p.device_series(&d, DAY, DAY + 300, 300, 10)?;
        Ok(page.points.first().map(|x| x.status).unwrap_or_default())
    };
    let attest = |e: u64| StatusUpgrade::Attested { epoch: e };
    // 60-second epochs, reported out of order: 1, 0, 3 leave a gap at epoch 2.
    assert_eq!(p.upgrade(&d, (DAY + 60, DAY + 120), attest(1))?, 0);
    assert_eq!(p.upgrade(&d, (DAY, DAY + 60), attest(0))?, 0);
    assert_eq!(p.upgrade(&d, (DAY + 180, DAY + 240), attest(3))?, 0);
    assert_eq!(status(&p)?, Status::Reported);
    assert_eq!(p.upgrade(&d, (DAY + 120, DAY + 180), attest(2))?, 1);
    assert_eq!(status(&p)?, Status::Attested);
    // Verified for epochs 0..3 only: still attested.
    for e in 0..3u64 {
        let w = (DAY + e * 60, DAY + (e + 1) * 60);
        p.upgrade(
            &d,
            w,
            StatusUpgrade::Verified {
                epoch: e,
                proof: [1; 32],
            },
        )?;
    }
    assert_eq!(status(&p)?, Status::Attested);
    // A reading of epoch 2's window arriving after epoch 2 was attested: not covered.
    p.record(&[energy(&k, 9, DAY + 150, 5)])?;
    assert_eq!(status(&p)?, Status::Reported);
    // Epoch 4 covering the rest does not cover it.
    p.upgrade(&d, (DAY + 240, DAY + 300), attest(4))?;
    assert_eq!(status(&p)?, Status::Reported);
    // The bucket survives a restart with its coverage.
    drop(p);
    let p = open(dir.path())?;
    assert_eq!(status(&p)?, Status::Reported);
    let page = p.device_series(&d, DAY, DAY + 300, 300, 10)?;
    assert_eq!(page.points.first().map(|x| x.readings), Some(5));
    Ok(())
}
