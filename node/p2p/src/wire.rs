//! The readings request-response protocol, `/groundtruth/readings/1` (CBOR bodies).

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The protocol id of the readings request-response protocol.
pub const READINGS_PROTOCOL: &str = "/groundtruth/readings/1";

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
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::RangeTooLarge { max } => {
                write!(f, "range reversed or longer than {max} sequence numbers")
            }
            Refusal::Busy => f.write_str("server busy"),
        }
    }
}

/// The answer to a [`ReadingsRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadingsResponse {
    /// The frames the server holds in the range, in sequence order, possibly cut short by the
    /// response byte limit (ask again from the next sequence number).
    Frames(Vec<Frame>),
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
}
