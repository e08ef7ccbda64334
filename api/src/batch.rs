//! The `POST /txs` body: `(u32 big-endian length ‖ bytes)*`.

use bytes::Bytes;

/// Why a batch body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// More entries than allowed.
    #[error("more than {max} entries")]
    TooManyEntries {
        /// The limit.
        max: usize,
    },
    /// An entry is longer than a transaction may be.
    #[error("entry {index} claims {len} bytes; at most {max}")]
    EntryTooLarge {
        /// Its position.
        index: usize,
        /// Its declared length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The body ends inside a length prefix or an entry.
    #[error("truncated at byte {offset}")]
    Truncated {
        /// Where the incomplete part starts.
        offset: usize,
    },
}

/// Encodes transactions for `POST /txs`. An entry longer than `u32::MAX` bytes cannot be
/// encoded; such a batch is refused by the server anyway, and is written with a
/// `u32::MAX` length (a body the server reads as truncated).
pub fn encode_batch<T: AsRef<[u8]>>(txs: &[T]) -> Vec<u8> {
    let total = txs.iter().fold(0usize, |n, t| {
        n.saturating_add(t.as_ref().len()).saturating_add(4)
    });
    let mut out = Vec::with_capacity(total);
    for t in txs {
        let t = t.as_ref();
        out.extend_from_slice(&u32::try_from(t.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// Splits a batch body into entries (zero-copy slices of `body`). Checks the entry count and
/// each declared length against the limits before taking the entry; allocates only the list of
/// entries already read, never from a count or length found in the body.
pub fn decode_batch(
    body: &Bytes,
    max_entries: usize,
    max_entry: usize,
) -> Result<Vec<Bytes>, BatchError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < body.len() {
        if out.len() >= max_entries {
            return Err(BatchError::TooManyEntries { max: max_entries });
        }
        let prefix: [u8; 4] = body
            .get(offset..offset.saturating_add(4))
            .and_then(|p| p.try_into().ok())
            .ok_or(BatchError::Truncated { offset })?;
        let declared = u32::from_be_bytes(prefix);
        let len = usize::try_from(declared)
            .ok()
            .filter(|l| *l <= max_entry)
            .ok_or(BatchError::EntryTooLarge {
                index: out.len(),
                len: u64::from(declared),
                max: max_entry,
            })?;
        let start = offset.saturating_add(4);
        let end = start.saturating_add(len);
        if end > body.len() {
            return Err(BatchError::Truncated { offset });
        }
        out.push(body.slice(start..end));
        offset = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_bodies() {
        let b = Bytes::from(encode_batch(&[b"ab".to_vec(), Vec::new(), b"xyz".to_vec()]));
        assert_eq!(
            decode_batch(&b, 10, 10),
            Ok(vec![
                Bytes::from_static(b"ab"),
                Bytes::new(),
                Bytes::from_static(b"xyz")
            ])
        );
        assert_eq!(decode_batch(&Bytes::new(), 10, 10), Ok(Vec::new()));
        let cut = b.slice(..b.len() - 1);
        assert_eq!(
            decode_batch(&cut, 10, 10),
            Err(BatchError::Truncated { offset: 10 })
        );
        assert_eq!(
            decode_batch(&Bytes::from_static(&[0, 0]), 10, 10),
            Err(BatchError::Truncated { offset: 0 })
        );
        assert_eq!(
            decode_batch(&b, 2, 10),
            Err(BatchError::TooManyEntries { max: 2 })
        );
        assert_eq!(
            decode_batch(&b, 10, 2),
            Err(BatchError::EntryTooLarge {
                index: 2,
                len: 3,
                max: 2
            })
        );
    }

    #[test]
    fn a_huge_declared_length_is_refused_before_slicing() {
        let body = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert_eq!(
            decode_batch(&body, 10, 16 * 1024),
            Err(BatchError::EntryTooLarge {
                index: 0,
                len: u64::from(u32::MAX),
                max: 16 * 1024
            })
        );
    }
}
