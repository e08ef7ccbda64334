//! Blocks: what consensus orders. A block is a list of opaque transactions at a height,
//! linked to the application state root after the previous height.

use bytes::Bytes;

use crate::codec::{Reader, Writer};
use crate::error::CodecError;
use crate::types::BlockHash;

/// Version byte at the start of every encoded block.
const BLOCK_VERSION: u8 = 1;
/// blake3 key-derivation context for block hashes.
const BLOCK_HASH_CONTEXT: &str = "groundtruth consensus block v1";

/// A block: the transactions decided at one height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Height of this block (1-based).
    pub height: u64,
    /// The application's state root after the previous height (all zeros before height 1).
    /// Validators reject a block whose `prev_state_root` differs from their own, so a decided
    /// block certifies that ≥2/3 of the voting power agreed on the state before it.
    pub prev_state_root: [u8; 32],
    /// Opaque transactions, in execution order.
    pub txs: Vec<Bytes>,
}

impl Block {
    /// Canonical encoding (the bytes that are hashed, streamed and stored).
    pub fn encode(&self) -> Bytes {
        let mut w = Writer::with_capacity(
            1 + 8 + 32 + 4 + self.txs.iter().map(|t| 4 + t.len()).sum::<usize>(),
        );
        w.u8(BLOCK_VERSION);
        w.u64(self.height);
        w.raw(&self.prev_state_root);
        w.len(self.txs.len());
        for tx in &self.txs {
            w.bytes(tx);
        }
        w.finish()
    }

    /// Decodes a block; rejects unknown versions and trailing bytes.
    pub fn decode(bytes: Bytes) -> Result<Self, CodecError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != BLOCK_VERSION {
            return Err(CodecError::Invalid("block version"));
        }
        let height = r.u64()?;
        let prev_state_root = r.array::<32>()?;
        let n = r.count(4)?;
        let mut txs = Vec::with_capacity(n);
        for _ in 0..n {
            txs.push(r.bytes()?);
        }
        r.end()?;
        Ok(Self {
            height,
            prev_state_root,
            txs,
        })
    }

    /// Hash of the canonical encoding.
    pub fn hash(&self) -> BlockHash {
        hash_encoded(&self.encode())
    }
}

/// Hash of an encoded block.
pub fn hash_encoded(encoded: &[u8]) -> BlockHash {
    let mut h = blake3::Hasher::new_derive_key(BLOCK_HASH_CONTEXT);
    h.update(encoded);
    BlockHash(*h.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hash() {
        let b = Block {
            height: 7,
            prev_state_root: [3; 32],
            txs: vec![Bytes::from_static(b"a"), Bytes::new()],
        };
        let enc = b.encode();
        assert_eq!(Block::decode(enc.clone()).expect("decode"), b);
        assert_eq!(hash_encoded(&enc), b.hash());
        let mut longer = enc.to_vec();
        longer.push(0);
        assert!(Block::decode(longer.into()).is_err());
        assert!(Block::decode(enc.slice(..enc.len() - 1)).is_err());
    }
}
