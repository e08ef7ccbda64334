//! Bounds-checked little-endian reading and writing for the envelope format.

use crate::error::{ProofError, Result};

/// Appends little-endian fields to a byte vector.
#[derive(Default)]
pub(crate) struct Writer(pub(crate) Vec<u8>);

impl Writer {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub(crate) fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn bytes(&mut self, v: &[u8]) {
        self.0.extend_from_slice(v);
    }
    /// Length-prefixed (u32) byte string.
    pub(crate) fn blob(&mut self, v: &[u8]) -> Result<()> {
        let len = u32::try_from(v.len()).map_err(|_| ProofError::Decode("blob over 4 GiB"))?;
        self.u32(len);
        self.bytes(v);
        Ok(())
    }
}

/// Reads little-endian fields from untrusted bytes; every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }
    pub(crate) fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.buf.len() < n {
            return Err(ProofError::Decode(what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    pub(crate) fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        let s = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }
    pub(crate) fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub(crate) fn blob(&mut self, what: &'static str) -> Result<&'a [u8]> {
        let len = usize::try_from(self.u32(what)?).map_err(|_| ProofError::Decode(what))?;
        self.take(len, what)
    }
    /// A `usize` in winterfell's variable-length (vint64) encoding: the number of trailing zero
    /// bits of the first byte plus one is the encoded length (a zero first byte means 8 more
    /// bytes follow).
    pub(crate) fn vint(&mut self, what: &'static str) -> Result<u64> {
        let first = *self.buf.first().ok_or(ProofError::Decode(what))?;
        let len = first.trailing_zeros() as usize + 1;
        if len == 9 {
            self.take(1, what)?;
            return self.u64(what);
        }
        let bytes = self.take(len, what)?;
        let mut limb = [0u8; 8];
        limb[..len].copy_from_slice(bytes);
        Ok(u64::from_le_bytes(limb) >> len)
    }
    /// A length read as `vint`, refused when larger than `limit` or than the bytes left divided
    /// by `unit` (the fewest bytes one counted item can take): no caller can be led to reserve
    /// memory the input cannot fill.
    pub(crate) fn vint_len(
        &mut self,
        unit: usize,
        limit: usize,
        what: &'static str,
    ) -> Result<usize> {
        let v = self.vint(what)?;
        let n = usize::try_from(v).map_err(|_| ProofError::Decode(what))?;
        if n > limit || n > self.remaining() / unit.max(1) {
            return Err(ProofError::Decode(what));
        }
        Ok(n)
    }
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }
    pub(crate) fn finish(&self, what: &'static str) -> Result<()> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(ProofError::Decode(what))
        }
    }
}
