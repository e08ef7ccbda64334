//! Persistent block store in sled: decided blocks with their certificates (served to peers
//! that sync, replayed into the application after a restart), and the undecided proposals of
//! the current height (so that a restarted proposer re-proposes the very same block instead of
//! equivocating).

use std::path::Path;

use bytes::Bytes;
use malachitebft_app_channel::app::consensus::ProposedValue;
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::{ExtendedCommitCertificate, Round};

use crate::codec::{self, GtCodec, Reader, Writer};
use crate::error::Result;
use crate::types::{BlockHash, GtContext, ProposalPart};

/// A decided block as stored.
#[derive(Clone, Debug)]
pub(crate) struct StoredDecided {
    pub certificate: ExtendedCommitCertificate<GtContext>,
    pub block: Bytes,
}

/// The sled-backed store.
pub(crate) struct Store {
    db: sled::Db,
    decided: sled::Tree,
    blocks: sled::Tree,
    parts: sled::Tree,
    undecided: sled::Tree,
}

fn hkey(height: u64, hash: &BlockHash) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..].copy_from_slice(&hash.0);
    k
}

fn ukey(height: u64, round: Round, hash: &BlockHash) -> [u8; 44] {
    let mut k = [0u8; 44];
    k[..8].copy_from_slice(&height.to_be_bytes());
    k[8..12].copy_from_slice(&round.as_u32().unwrap_or(u32::MAX).to_be_bytes());
    k[12..].copy_from_slice(&hash.0);
    k
}

fn key_height(k: &[u8]) -> Option<u64> {
    k.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let db = sled::Config::new().path(path).open()?;
        Ok(Self {
            decided: db.open_tree("decided")?,
            blocks: db.open_tree("blocks")?,
            parts: db.open_tree("parts")?,
            undecided: db.open_tree("undecided")?,
            db,
        })
    }

    /// Highest decided height.
    pub fn max_decided_height(&self) -> Result<Option<u64>> {
        Ok(self.decided.last()?.and_then(|(k, _)| key_height(&k)))
    }

    /// Lowest decided height still stored.
    pub fn min_decided_height(&self) -> Result<Option<u64>> {
        Ok(self.decided.first()?.and_then(|(k, _)| key_height(&k)))
    }

    /// Stores a decided block and its certificate, durably (fsync) before returning.
    pub fn put_decided(
        &self,
        certificate: &ExtendedCommitCertificate<GtContext>,
        block: &Bytes,
    ) -> Result<()> {
        let cert = codec::encode_ext_cert(certificate);
        let mut w = Writer::with_capacity(8 + cert.len() + block.len());
        w.bytes(&cert);
        w.bytes(block);
        self.decided
            .insert(certificate.height.0.to_be_bytes(), w.finish().to_vec())?;
        self.db.flush()?;
        Ok(())
    }

    /// The decided block at `height`, if stored.
    pub fn get_decided(&self, height: u64) -> Result<Option<StoredDecided>> {
        let Some(v) = self.decided.get(height.to_be_bytes())? else {
            return Ok(None);
        };
        let mut r = Reader::new(Bytes::from(v.to_vec()));
        let cert = r.bytes()?;
        let block = r.bytes()?;
        r.end()?;
        Ok(Some(StoredDecided {
            certificate: codec::decode_ext_cert(cert)?,
            block,
        }))
    }

    /// Remembers an undecided block (own, received or synced) by height and hash.
    pub fn put_block(&self, height: u64, hash: &BlockHash, block: &Bytes) -> Result<()> {
        self.blocks.insert(hkey(height, hash), block.to_vec())?;
        Ok(())
    }

    /// An undecided block by height and hash.
    pub fn get_block(&self, height: u64, hash: &BlockHash) -> Result<Option<Bytes>> {
        Ok(self
            .blocks
            .get(hkey(height, hash))?
            .map(|v| Bytes::from(v.to_vec())))
    }

    /// Remembers the signed parts of a proposal, for restreaming.
    pub fn put_parts(&self, height: u64, hash: &BlockHash, parts: &[ProposalPart]) -> Result<()> {
        self.parts
            .insert(hkey(height, hash), codec::encode_parts(parts).to_vec())?;
        Ok(())
    }

    /// The signed parts of a proposal.
    pub fn get_parts(&self, height: u64, hash: &BlockHash) -> Result<Option<Vec<ProposalPart>>> {
        match self.parts.get(hkey(height, hash))? {
            None => Ok(None),
            Some(v) => Ok(Some(codec::decode_parts(Bytes::from(v.to_vec()))?)),
        }
    }

    /// Records an undecided proposed value. `durable` flushes it (and the block and parts
    /// stored before it) to disk: own proposals, so that a restart re-proposes the same block,
    /// and received or synced ones, so that a decision the engine replays from its WAL after
    /// a crash finds its block.
    pub fn put_undecided(&self, value: &ProposedValue<GtContext>, durable: bool) -> Result<()> {
        let enc = GtCodec.encode(value)?;
        self.undecided.insert(
            ukey(value.height.0, value.round, &value.value),
            enc.to_vec(),
        )?;
        if durable {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Undecided values seen for `(height, round)`.
    pub fn get_undecided(
        &self,
        height: u64,
        round: Round,
    ) -> Result<Vec<ProposedValue<GtContext>>> {
        let mut prefix = [0u8; 12];
        prefix[..8].copy_from_slice(&height.to_be_bytes());
        prefix[8..].copy_from_slice(&round.as_u32().unwrap_or(u32::MAX).to_be_bytes());
        let mut out = Vec::new();
        for item in self.undecided.scan_prefix(prefix) {
            let (_, v) = item?;
            out.push(GtCodec.decode(Bytes::from(v.to_vec()))?);
        }
        Ok(out)
    }

    /// Drops everything undecided at heights `<= height`.
    pub fn prune_undecided(&self, height: u64) -> Result<()> {
        let end = height.saturating_add(1).to_be_bytes();
        for tree in [&self.blocks, &self.parts, &self.undecided] {
            let keys: Vec<sled::IVec> = tree
                .range(..end.as_slice())
                .keys()
                .collect::<std::result::Result<_, _>>()?;
            for k in keys {
                tree.remove(k)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Address, Height};
    use malachitebft_app_channel::app::types::core::Validity;

    #[test]
    fn decided_and_undecided_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("db")).expect("open");
        assert_eq!(store.max_decided_height().expect("max"), None);
        let cert = ExtendedCommitCertificate {
            height: Height(4),
            round: Round::new(1),
            value_id: BlockHash([9; 32]),
            commit_signatures: vec![],
        };
        store
            .put_decided(&cert, &Bytes::from_static(b"blk"))
            .expect("put");
        let got = store.get_decided(4).expect("get").expect("present");
        assert_eq!(got.certificate, cert);
        assert_eq!(got.block, Bytes::from_static(b"blk"));
        assert_eq!(store.max_decided_height().expect("max"), Some(4));

        let pv = ProposedValue {
            height: Height(5),
            round: Round::new(0),
            valid_round: Round::Nil,
            proposer: Address([1; 32]),
            value: BlockHash([2; 32]),
            validity: Validity::Valid,
        };
        store.put_undecided(&pv, true).expect("put");
        assert_eq!(
            store.get_undecided(5, Round::new(0)).expect("get"),
            vec![pv.clone()]
        );
        assert!(store
            .get_undecided(5, Round::new(1))
            .expect("get")
            .is_empty());
        store.prune_undecided(5).expect("prune");
        assert!(store
            .get_undecided(5, Round::new(0))
            .expect("get")
            .is_empty());
    }
}
