//! The ledger's canonical binary codec.
//!
//! One encoding per value, so that signatures and the state root are well defined:
//!
//! - integers are fixed-width big-endian (`u8`, `u16`, `u32`, `u64`);
//! - `bool` is one byte, `0` or `1` (anything else is rejected);
//! - fixed arrays (`[u8; 32]` keys and digests, `[u8; 64]` signatures) are written raw;
//! - variable byte strings and UTF-8 strings are a `u32` length followed by the bytes;
//! - `Option<T>` is a `0` byte, or a `1` byte followed by `T`;
//! - enums are a one-byte tag followed by the variant's fields in declaration order;
//! - structs are their fields in declaration order, nothing else (no field names, no padding).
//!
//! Decoding is strict: unknown tags, non-canonical booleans, invalid UTF-8, lengths beyond the
//! input and trailing bytes are errors, so every value has exactly one encoding.

use crate::error::TxError;

/// Largest variable-length field the decoder accepts (bytes). Transactions are small; this
/// only bounds allocations made while decoding untrusted input.
pub const MAX_FIELD_LEN: usize = 64 * 1024;

/// Appends canonical encodings to a byte vector.
#[derive(Debug, Default, Clone)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Appends raw bytes (fixed-width fields).
    pub fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(bytes);
        self
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a big-endian `u16`.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Appends a big-endian `u32`.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Appends a big-endian `u64`.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.raw(&v.to_be_bytes())
    }

    /// Appends a boolean as `0` or `1`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }

    /// Appends a `u32` length prefix and the bytes. Lengths above `u32::MAX` cannot occur for
    /// values that passed validation; they are clamped so that encoding never panics.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(v)
    }

    /// Appends a length-prefixed UTF-8 string.
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
}

/// Reads canonical encodings from untrusted bytes; every read is bounds-checked.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless every byte was consumed.
    pub fn finish(&self) -> Result<(), TxError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(TxError::Malformed("trailing bytes"))
        }
    }

    /// Takes `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], TxError> {
        if n > self.buf.len() {
            return Err(TxError::Malformed("truncated"));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// Takes a fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], TxError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, TxError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, TxError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, TxError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// Reads a big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, TxError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads a canonical boolean.
    pub fn bool(&mut self) -> Result<bool, TxError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(TxError::Malformed("non-canonical boolean")),
        }
    }

    /// Reads a length-prefixed byte string of at most [`MAX_FIELD_LEN`] bytes.
    pub fn bytes(&mut self) -> Result<&'a [u8], TxError> {
        let len = usize::try_from(self.u32()?).map_err(|_| TxError::Malformed("length"))?;
        if len > MAX_FIELD_LEN {
            return Err(TxError::Malformed("field too long"));
        }
        self.take(len)
    }

    /// Reads a length-prefixed byte string of at most `max` bytes: for the few fields that are
    /// larger than [`MAX_FIELD_LEN`] by design (proof envelopes), bounded by their own limit.
    pub fn long_bytes(&mut self, max: usize) -> Result<&'a [u8], TxError> {
        let len = usize::try_from(self.u32()?).map_err(|_| TxError::Malformed("length"))?;
        if len > max {
            return Err(TxError::Malformed("field too long"));
        }
        self.take(len)
    }

    /// Reads a length-prefixed UTF-8 string.
    pub fn string(&mut self) -> Result<String, TxError> {
        let b = self.bytes()?;
        core::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| TxError::Malformed("invalid utf-8"))
    }

    /// Reads an option tag: `false` for `None`, `true` when a value follows.
    pub fn option_tag(&mut self) -> Result<bool, TxError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(TxError::Malformed("bad option tag")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_primitives() {
        let mut w = Writer::new();
        w.u8(7)
            .u16(300)
            .u32(70_000)
            .u64(u64::MAX)
            .bool(true)
            .str("région");
        let bytes = w.into_bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u16(), Ok(300));
        assert_eq!(r.u32(), Ok(70_000));
        assert_eq!(r.u64(), Ok(u64::MAX));
        assert_eq!(r.bool(), Ok(true));
        assert_eq!(r.string().as_deref(), Ok("région"));
        assert_eq!(r.finish(), Ok(()));
    }

    #[test]
    fn rejects_truncation_bad_bool_and_huge_lengths() {
        assert!(Reader::new(&[0, 1]).u32().is_err());
        assert!(Reader::new(&[2]).bool().is_err());
        assert!(Reader::new(&[0xff, 0xff, 0xff, 0xff]).bytes().is_err());
        let r = Reader::new(&[1]);
        assert!(r.finish().is_err());
    }
}
