//! The ledger state on disk: one sled tree holding `height ‖ snapshot` under one key, so the
//! height and the state it belongs to are written in one atomic insert.

use std::path::Path;

const STATE_KEY: &[u8] = b"state";

/// The persisted ledger state.
pub(crate) struct StateStore {
    db: sled::Db,
    tree: sled::Tree,
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> sled::Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(16 << 20)
            .open()?;
        let tree = db.open_tree("ledger")?;
        Ok(Self { db, tree })
    }

    /// The last saved `(height, snapshot)`, if any. `Err` names what is wrong.
    pub fn load(&self) -> Result<Option<(u64, Vec<u8>)>, String> {
        let Some(v) = self.tree.get(STATE_KEY).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let height = v
            .get(..8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_be_bytes)
            .ok_or("stored state shorter than its height")?;
        Ok(Some((height, v.get(8..).unwrap_or_default().to_vec())))
    }

    /// Saves the state after `height` and makes it durable.
    pub fn save(&self, height: u64, snapshot: &[u8]) -> sled::Result<()> {
        let mut v = Vec::with_capacity(8 + snapshot.len());
        v.extend_from_slice(&height.to_be_bytes());
        v.extend_from_slice(snapshot);
        self.tree.insert(STATE_KEY, v)?;
        self.db.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(dir.path()).expect("open");
        assert_eq!(store.load(), Ok(None));
        store.save(7, b"snap").expect("save");
        drop(store);
        let store = StateStore::open(dir.path()).expect("reopen");
        assert_eq!(store.load(), Ok(Some((7, b"snap".to_vec()))));
    }
}
