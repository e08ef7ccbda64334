//! `/groundtruth/readings/2`: fetching a device's frames, and a window's inventory, from a peer.

use std::collections::BTreeMap;
use std::sync::Arc;

use groundtruth_p2p::{
    Inventory, InventoryEntry, InventoryRequest, P2pConfig, P2pError, ReadingsRequest,
    ReadingsSource, Refusal,
};

use crate::support::*;

/// An in-memory readings store: (device, seq) → signed frame bytes.
struct Store(BTreeMap<([u8; 32], u64), Vec<u8>>);

impl ReadingsSource for Store {
    fn frames(&self, device: &[u8; 32], from: u64, to: u64, max: usize) -> Vec<Vec<u8>> {
        let mut total = 0;
        let mut out = Vec::new();
        for frame in self
            .0
            .range((*device, from)..=(*device, to))
            .map(|(_, f)| f)
        {
            total += frame.len();
            if total > max {
                break;
            }
            out.push(frame.clone());
        }
        out
    }

    /// Here a reading's interval start is its sequence number (seconds).
    fn inventory(
        &self,
        start_s: u64,
        end_s: u64,
        after: Option<[u8; 32]>,
        max_entries: usize,
    ) -> Inventory {
        let mut by_device: BTreeMap<[u8; 32], InventoryEntry> = BTreeMap::new();
        for (device, seq) in self.0.keys() {
            if *seq < start_s || *seq >= end_s || after.is_some_and(|a| *device <= a) {
                continue;
            }
            let e = by_device.entry(*device).or_insert(InventoryEntry {
                device: *device,
                count: 0,
                first_seq: *seq,
                last_seq: *seq,
            });
            e.count += 1;
            e.first_seq = e.first_seq.min(*seq);
            e.last_seq = e.last_seq.max(*seq);
        }
        let more = by_device.len() > max_entries;
        Inventory {
            entries: by_device.into_values().take(max_entries).collect(),
            more,
        }
    }
}

/// A source that answers inventories with devices out of order (a broken or lying peer).
struct Unordered;

impl ReadingsSource for Unordered {
    fn frames(&self, _: &[u8; 32], _: u64, _: u64, _: usize) -> Vec<Vec<u8>> {
        Vec::new()
    }

    fn inventory(&self, _: u64, _: u64, _: Option<[u8; 32]>, _: usize) -> Inventory {
        let e = |d: u8| InventoryEntry {
            device: [d; 32],
            count: 1,
            first_seq: 0,
            last_seq: 0,
        };
        Inventory {
            entries: vec![e(2), e(1)],
            more: false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_pages_through_devices_and_bad_answers_are_errors() {
    let (a, b, c) = (identity(51), identity(52), identity(53));
    let mut store = BTreeMap::new();
    for device in 1u8..=5 {
        // Device d holds seconds 0..10 except d itself.
        for seq in (0..10u64).filter(|s| *s != u64::from(device)) {
            store.insert(([device; 32], seq), frame(device, seq));
        }
    }
    let server = Node::start_with(
        a,
        &[a, b, c],
        P2pConfig {
            max_inventory_entries: 2,
            max_inventory_window: std::time::Duration::from_secs(100),
            ..config(vec![])
        },
        Arc::new(Store(store)),
    )
    .await;
    let liar = Node::start_with(c, &[a, b, c], config(vec![]), Arc::new(Unordered)).await;
    let client = Node::start(b, &[a, b, c], config(vec![server.addr(), liar.addr()])).await;
    eventually("connected", || async {
        let peers = client.connected().await;
        (peers.contains(&a.peer) && peers.contains(&c.peer)).then_some(())
    })
    .await;
    // Window [2, 6): device d misses d when 2 <= d < 6.
    let mut after = None;
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let page = client
            .handle
            .inventory(
                a.peer,
                InventoryRequest {
                    start_s: 2,
                    end_s: 6,
                    after,
                },
            )
            .await
            .unwrap();
        pages += 1;
        assert!(page.entries.len() <= 2);
        after = page.entries.last().map(|e| e.device);
        got.extend(page.entries);
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<(u8, u32, u64, u64)> = vec![
        (1, 4, 2, 5),
        (2, 3, 3, 5),
        (3, 3, 2, 5),
        (4, 3, 2, 5),
        (5, 3, 2, 4),
    ];
    let got: Vec<(u8, u32, u64, u64)> = got
        .iter()
        .map(|e| (e.device[0], e.count, e.first_seq, e.last_seq))
        .collect();
    assert_eq!(got, want);
    // A window past the server's limit is refused; an empty one too.
    let w = |start_s, end_s| InventoryRequest {
        start_s,
        end_s,
        after: None,
    };
    assert_eq!(
        client.handle.inventory(a.peer, w(0, 101)).await,
        Err(P2pError::Refused(Refusal::WindowTooLong { max_s: 100 }))
    );
    assert_eq!(
        client.handle.inventory(a.peer, w(5, 5)).await,
        Err(P2pError::Refused(Refusal::WindowTooLong { max_s: 100 }))
    );
    // Devices out of order are a bad answer, not data.
    assert!(matches!(
        client.handle.inventory(c.peer, w(0, 10)).await,
        Err(P2pError::BadResponse { .. })
    ));
}

fn frame(device: u8, seq: u64) -> Vec<u8> {
    format!("frame device={device} seq={seq}").into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_returns_the_sources_frames_and_refuses_over_long_ranges() {
    let (a, b, outsider) = (identity(31), identity(32), identity(33));
    let mut store = BTreeMap::new();
    for device in [1u8, 2] {
        for seq in 0..10_000u64 {
            // Device 1 has a gap at seq 5.
            if device == 1 && seq == 5 {
                continue;
            }
            store.insert(([device; 32], seq), frame(device, seq));
        }
    }
    let server = Node::start_with(
        a,
        &[a, b],
        P2pConfig {
            max_readings_range: 4096,
            ..config(vec![])
        },
        Arc::new(Store(store)),
    )
    .await;
    // The client's own range limit is larger, so the server's refusal is exercised.
    let client = Node::start(
        b,
        &[a, b],
        P2pConfig {
            max_readings_range: 10_000,
            ..config(vec![server.addr()])
        },
    )
    .await;
    eventually("connected", || async {
        client.connected().await.contains(&a.peer).then_some(())
    })
    .await;

    let req = |device: u8, from_seq, to_seq| ReadingsRequest {
        device: [device; 32],
        from_seq,
        to_seq,
    };
    let got = client
        .handle
        .fetch_readings(a.peer, req(1, 3, 7))
        .await
        .unwrap();
    let want: Vec<Vec<u8>> = [3, 4, 6, 7].iter().map(|s| frame(1, *s)).collect();
    assert_eq!(got, want);
    // Another device, a range at the server's limit.
    let got = client
        .handle
        .fetch_readings(a.peer, req(2, 100, 4195))
        .await
        .unwrap();
    assert_eq!(got.len(), 4096);
    assert_eq!(got.first(), Some(&frame(2, 100)));
    assert_eq!(got.last(), Some(&frame(2, 4195)));
    // Unknown device: empty.
    assert!(client
        .handle
        .fetch_readings(a.peer, req(9, 0, 10))
        .await
        .unwrap()
        .is_empty());

    // One past the server's limit: refused by the server.
    assert_eq!(
        client.handle.fetch_readings(a.peer, req(2, 0, 4096)).await,
        Err(P2pError::Refused(Refusal::RangeTooLarge { max: 4096 }))
    );
    // Past the client's own limit, or reversed: refused before sending.
    assert!(matches!(
        client
            .handle
            .fetch_readings(a.peer, req(2, 0, 10_000))
            .await,
        Err(P2pError::InvalidRange { max: 10_000, .. })
    ));
    assert!(matches!(
        client.handle.fetch_readings(a.peer, req(2, 8, 7)).await,
        Err(P2pError::InvalidRange { .. })
    ));
    assert!(matches!(
        client
            .handle
            .fetch_readings(a.peer, req(2, 0, u64::MAX))
            .await,
        Err(P2pError::InvalidRange { .. })
    ));
    // A peer outside the allow-list is not asked.
    assert_eq!(
        client
            .handle
            .fetch_readings(outsider.peer, req(1, 0, 1))
            .await,
        Err(P2pError::NotAllowed(outsider.peer))
    );
    // The server still answers after the refusals.
    let got = client
        .handle
        .fetch_readings(a.peer, req(1, 0, 0))
        .await
        .unwrap();
    assert_eq!(got, vec![frame(1, 0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_cut_at_the_byte_limit_and_oversized_answers_are_errors() {
    let (a, b) = (identity(41), identity(42));
    let mut store = BTreeMap::new();
    for seq in 0..100u64 {
        store.insert(([7; 32], seq), vec![seq as u8; 1000]);
    }
    let server = Node::start_with(
        a,
        &[a, b],
        P2pConfig {
            max_response_bytes: 10_000,
            ..config(vec![])
        },
        Arc::new(Store(store)),
    )
    .await;
    let client = Node::start(
        b,
        &[a, b],
        P2pConfig {
            max_response_bytes: 4_000,
            ..config(vec![server.addr()])
        },
    )
    .await;
    let req = ReadingsRequest {
        device: [7; 32],
        from_seq: 0,
        to_seq: 99,
    };
    // The server sends its limit's worth (10 frames of 1000 bytes), more than the client's
    // codec takes: an error, not a panic, and not a truncated success.
    let r = eventually("a decisive answer", || async {
        match client.handle.fetch_readings(a.peer, req).await {
            Err(P2pError::Request { reason, .. }) if reason.contains("Dial") => None,
            other => Some(other),
        }
    })
    .await;
    // Either the codec refuses the frame or the decoded answer breaks the byte cap.
    assert!(
        matches!(
            r,
            Err(P2pError::Request { .. } | P2pError::BadResponse { .. })
        ),
        "{r:?}"
    );

    // The other way round, the server's cap cuts the answer to a prefix.
    let got = server.handle.fetch_readings(b.peer, req).await;
    // B serves nothing (NoReadings): an empty answer, not an error.
    assert_eq!(got, Ok(vec![]));
    let got = client
        .handle
        .fetch_readings(a.peer, ReadingsRequest { to_seq: 2, ..req })
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
}
