//! The readings request-response protocol, `/groundtruth/readings/2` (CBOR bodies): a
//! device's frames by sequence range, and the inventory of what a peer holds for a time window
//! (how a validator that missed readings finds what to fetch).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The protocol id of the readings request-response protocol.
pub const READINGS_PROTOCOL: &str = "/groundtruth/readings/2";

/// Ask a peer for a device's signed frames with sequence numbers `from_seq..=to_seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadingsRequest {
    /// The device's ed25519 public key.
    pub device: [u8; 32],
    /// First sequence number wanted.
    pub from_seq: u64,
    /// Last sequence number wanted, inclusive.
    pub to_seq: u64,
}

impl ReadingsRequest {
    /// How many sequence numbers the range covers, or `None` if it is reversed (or covers all
    /// 2^64 values, which no limit allows).
    pub fn len(&self) -> Option<u64> {
        self.to_seq
            .checked_sub(self.from_seq)
            .and_then(|d| d.checked_add(1))
    }

    /// Whether the range is reversed (covers no sequence number).
    pub fn is_empty(&self) -> bool {
        self.to_seq < self.from_seq
    }

    /// Whether the range is within `max` sequence numbers and not reversed.
    pub fn is_within(&self, max: u64) -> bool {
        matches!(self.len(), Some(n) if n <= max)
    }
}

/// A request of the readings protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A device's frames by sequence range.
    Frames(ReadingsRequest),
    /// What the peer holds for a time window, device by device.
    Inventory(InventoryRequest),
}

/// Ask a peer which readings it holds whose interval lies in `[start_s, end_s)`: one
/// [`InventoryEntry`] per device, in device order, starting after `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryRequest {
    /// Window start, Unix seconds.
    pub start_s: u64,
    /// Window end (exclusive), Unix seconds.
    pub end_s: u64,
    /// Resume after this device (the last one of the previous page).
    pub after: Option<[u8; 32]>,
}

impl InventoryRequest {
    /// Whether the window is non-empty and at most `max_s` long.
    pub fn is_within(&self, max_s: u64) -> bool {
        self.end_s > self.start_s && self.end_s - self.start_s <= max_s
    }
}

/// What a peer holds of one device in a window: enough to tell whether the asker misses
/// something (a different count or bounds) and which range to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    /// The device's ed25519 public key.
    pub device: [u8; 32],
    /// Accepted readings held in the window.
    pub count: u32,
    /// Lowest sequence number among them.
    pub first_seq: u64,
    /// Highest sequence number among them.
    pub last_seq: u64,
}

impl InventoryEntry {
    /// Whether the entry is self-consistent (`count` readings fit in `first..=last`).
    pub fn is_consistent(&self) -> bool {
        self.count > 0
            && self.first_seq <= self.last_seq
            && u64::from(self.count) <= (self.last_seq - self.first_seq).saturating_add(1)
    }
}

/// One page of a peer's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Inventory {
    /// Devices in ascending order, each after the request's `after`.
    pub entries: Vec<InventoryEntry>,
    /// More devices follow: ask again after the last entry.
    pub more: bool,
}

/// Why a peer refused a readings request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// The range is reversed or longer than the server's limit.
    RangeTooLarge {
        /// The server's limit on the number of sequence numbers per request.
        max: u64,
    },
    /// The server is already serving as many requests as it allows.
    Busy,
    /// The inventory window is empty or longer than the server's limit.
    WindowTooLong {
        /// The server's limit, seconds.
        max_s: u64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RangeTooLarge { max } => {
                write!(f, "range reversed or longer than {max} sequence numbers")
            }
            Refusal::Busy => f.write_str("server busy"),
            Refusal::WindowTooLong { max_s } => {
                write!(f, "inventory window empty or longer than {max_s} s")
            }
        }
    }
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadingsResponse {
    /// The frames the server holds in the range, in sequence order, possibly cut short by the
    /// response byte limit (ask again from the next sequence number).
    Frames(Vec<Frame>),
    /// One page of the server's inventory for the window.
    Inventory(Inventory),
    /// The request was refused.
    Refused(Refusal),
}

/// One signed frame, as opaque bytes (encoded as a CBOR byte string, not an array of integers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(pub Vec<u8>);

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Frame {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = Frame;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Frame, E> {
                Ok(Frame(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Frame, E> {
                Ok(Frame(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Frame, A::Error> {
                // Accepted for robustness; the size limit of the codec bounds it.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(Frame(out))
            }
        }
        deserializer.deserialize_byte_buf(FrameVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn range_length_is_checked() {
        let r = |from_seq, to_seq| ReadingsRequest {
            device: [0; 32],
            from_seq,
            to_seq,
        };
        assert_eq!(r(5, 5).len(), Some(1));
        assert_eq!(r(0, 4095).len(), Some(4096));
        assert!(r(0, 4095).is_within(4096));
        assert!(!r(0, 4096).is_within(4096));
        assert_eq!(r(6, 5).len(), None);
        assert!(!r(6, 5).is_within(4096));
        assert_eq!(r(0, u64::MAX).len(), None);
        assert!(!r(0, u64::MAX).is_within(u64::MAX));
    }

    #[test]
    fn inventory_windows_and_entries_are_checked() {
        let w = |start_s, end_s| InventoryRequest {
            start_s,
            end_s,
            after: None,
        };
        assert!(w(0, 60).is_within(60));
        assert!(!w(0, 61).is_within(60));
        assert!(!w(60, 60).is_within(60));
        assert!(!w(61, 60).is_within(60));
        let e = |count, first_seq, last_seq| InventoryEntry {
            device: [0; 32],
            count,
            first_seq,
            last_seq,
        };
        assert!(e(3, 10, 12).is_consistent());
        assert!(e(2, 10, 12).is_consistent());
        assert!(!e(4, 10, 12).is_consistent());
        assert!(!e(0, 10, 12).is_consistent());
        assert!(!e(1, 12, 10).is_consistent());
        assert!(e(1, u64::MAX, u64::MAX).is_consistent());
    }
}
