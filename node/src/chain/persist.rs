//! The ledger state on disk, written incrementally: one sled tree holding every state entry
//! (`e ‖ key → value`, see `State::entries`) and one meta record (`height ‖ root`). Each
//! block writes only the entries it changed, with the new height and root, in one atomic
//! batch. On start the entries are read back, the state and its tree rebuilt, and the
//! recomputed root must equal the stored one: a corrupted store stops the node.

use std::path::Path;

use groundtruth_ledger::{SnapshotError, State, WriteSet};

const META_KEY: &[u8] = b"m";
const ENTRY_PREFIX: u8 = b'e';
/// The full snapshot the first version of this store wrote (read once, then converted).
const LEGACY_STATE_KEY: &[u8] = b"state";

/// Why the stored state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// sled failed.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// The meta record is malformed.
    #[error("malformed meta record ({0} bytes, expected 40)")]
    Meta(usize),
    /// The entries do not make a valid state.
    #[error("stored entries: {0}")]
    State(#[from] SnapshotError),
    /// The legacy snapshot does not load.
    #[error("legacy snapshot: {0}")]
    Legacy(String),
    /// The entries' recomputed root is not the root stored with them: the store is corrupt.
    #[error("state root mismatch at height {height}: stored {stored}, recomputed {recomputed}")]
    RootMismatch {
        /// Stored height.
        height: u64,
        /// Root stored with the entries (hex).
        stored: String,
        /// Root of the state rebuilt from the entries (hex).
        recomputed: String,
    },
}

/// The persisted ledger state.
pub(crate) struct StateStore {
    db: sled::Db,
    tree: sled::Tree,
}

fn entry_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(ENTRY_PREFIX);
    k.extend_from_slice(key);
    k
}

fn meta(height: u64, root: &[u8; 32]) -> Vec<u8> {
    let mut v = Vec::with_capacity(40);
    v.extend_from_slice(&height.to_be_bytes());
    v.extend_from_slice(root);
    v
}

impl StateStore {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> sled::Result<Self> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .open()?;
        let tree = db.open_tree("ledger")?;
        Ok(Self { db, tree })
    }

    /// The tree of audit proofs seen in committed blocks (key `epoch (8, BE) ‖ batch (32) ‖
    /// blake3 of the proof (32)`, value the envelope bytes): evidence the API serves.
    pub fn proofs_tree(&self) -> sled::Result<sled::Tree> {
        self.db.open_tree("audit_proofs")
    }

    /// The stored state, rebuilt from its entries, with its root checked against the stored
    /// one; `None` for an empty store.
    pub fn load(&self) -> Result<Option<State>, PersistError> {
        let Some(m) = self.tree.get(META_KEY)? else {
            return self.load_legacy();
        };
        let (h, r) = m.split_at_checked(8).ok_or(PersistError::Meta(m.len()))?;
        let height = <[u8; 8]>::try_from(h)
            .map(u64::from_be_bytes)
            .map_err(|_| PersistError::Meta(m.len()))?;
        let stored = <[u8; 32]>::try_from(r).map_err(|_| PersistError::Meta(m.len()))?;
        let mut entries = Vec::new();
        for kv in self.tree.scan_prefix([ENTRY_PREFIX]) {
            let (k, v) = kv?;
            entries.push((k.get(1..).unwrap_or_default().to_vec(), v.to_vec()));
        }
        let state = State::from_entries(entries)?;
        let recomputed = state.state_root();
        if recomputed != stored || state.height() != height {
            return Err(PersistError::RootMismatch {
                height,
                stored: hex::encode(stored),
                recomputed: hex::encode(recomputed),
            });
        }
        Ok(Some(state))
    }

    /// Reads the old single-snapshot format and rewrites it as entries.
    fn load_legacy(&self) -> Result<Option<State>, PersistError> {
        let Some(v) = self.tree.get(LEGACY_STATE_KEY)? else {
            return Ok(None);
        };
        let state = State::from_snapshot(v.get(8..).unwrap_or_default())
            .map_err(|e| PersistError::Legacy(e.to_string()))?;
        self.init(&state)?;
        self.tree.remove(LEGACY_STATE_KEY)?;
        self.db.flush()?;
        Ok(Some(state))
    }

    /// Writes a whole state (genesis, or a converted legacy snapshot) in one batch.
    pub fn init(&self, state: &State) -> sled::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in state.entries() {
            batch.insert(entry_key(&k), v);
        }
        batch.insert(META_KEY, meta(state.height(), &state.state_root()));
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Saves what block `height` wrote, with the root after it, atomically and durably.
    pub fn save(&self, height: u64, root: &[u8; 32], writes: &WriteSet) -> sled::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(entry_key(k), v.as_slice()),
                None => batch.remove(entry_key(k)),
            }
        }
        batch.insert(META_KEY, meta(height, root));
        self.tree.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Overwrites one stored entry (tests: simulate corruption).
    #[cfg(test)]
    fn corrupt(&self, key: &[u8], value: &[u8]) -> sled::Result<()> {
        self.tree.insert(entry_key(key), value)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use groundtruth_ledger::testkit::{address, sign_tx, TestNet};
    use groundtruth_ledger::{apply_block, Block, TxBody};

    /// Genesis, then two blocks of transfers, persisted incrementally.
    fn chain(store: &StateStore) -> State {
        let n = TestNet::new(4, 4);
        let mut st = n.state().expect("genesis");
        store.init(&st).expect("init");
        for _ in 0..2 {
            let tx = sign_tx(
                &st,
                &n.users[2],
                1,
                TxBody::Transfer {
                    to: address(&n.users[3]),
                    amount: 5,
                },
            );
            let block = Block {
                height: st.height() + 1,
                proposer: None,
                txs: vec![tx],
            };
            let out = apply_block(&mut st, &block).expect("block");
            assert!(!out.writes.is_empty() && out.writes.len() < st.entries().len());
            store
                .save(out.height, &out.state_root, &out.writes)
                .expect("save");
        }
        st
    }

    #[test]
    fn incremental_saves_load_back_to_the_same_state_and_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(dir.path()).expect("open");
        assert!(store.load().expect("empty").is_none());
        let st = chain(&store);
        drop(store);
        let store = StateStore::open(dir.path()).expect("reopen");
        let back = store.load().expect("load").expect("some");
        assert_eq!(back, st);
        assert_eq!(back.height(), 2);
        assert_eq!(back.state_root(), st.state_root());
    }

    #[test]
    fn a_corrupted_entry_is_refused_with_a_root_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(dir.path()).expect("open");
        let st = chain(&store);
        // Change one account's nonce: the entry still decodes and every invariant holds, but
        // it is not the state the stored root commits to.
        let (key, mut value) = st
            .entries()
            .into_iter()
            .find(|(k, _)| k.first() == Some(&1))
            .expect("an account entry");
        if let Some(last) = value.last_mut() {
            *last ^= 7;
        }
        store.corrupt(&key, &value).expect("corrupt");
        match store.load() {
            Err(PersistError::RootMismatch { height: 2, .. }) => {}
            other => panic!(
                "expected a root mismatch, got {:?}",
                other.map(|s| s.is_some())
            ),
        }
    }
}
