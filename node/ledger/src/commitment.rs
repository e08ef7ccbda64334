//! The state commitment: a Jellyfish Merkle tree (`jmt`) over the state's entries, kept in
//! memory beside the ledger's maps and updated with only what each block changed.
//!
//! Every record of the state is one entry `key = tag u8 ‖ canonical key`,
//! `value = canonical encoding` (see [`crate::State::entries`]); the tree is keyed by
//! `blake3(key)`. The maps record which keys were written ([`Tracked`]); at the end of a block
//! those entries (and the header, and new slashes) are re-encoded and put into the tree as one
//! version, and the stale nodes are dropped at once (no history is kept). The state root is the
//! tree's root hash.

use std::collections::{btree_map, BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasherDefault;
use std::ops::Deref;
use std::sync::Arc;

use jmt::storage::{LeafNode, Node, NodeKey, TreeReader};
use jmt::{JellyfishMerkleTree, KeyHash, OwnedValue, Version};

/// blake3 as jmt's hasher.
pub(crate) struct Blake3(blake3::Hasher);

impl jmt::SimpleHasher for Blake3 {
    fn new() -> Self {
        Self(blake3::Hasher::new())
    }
    fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }
    fn finalize(self) -> [u8; 32] {
        *self.0.finalize().as_bytes()
    }
}

/// A map that remembers which keys were written since the last [`Tracked::clear_dirty`].
/// Reads go through `Deref` to the `BTreeMap`; every write goes through a method here, so no
/// write can escape the commitment.
///
/// A value that stands for several entries of the tree (an epoch's audit records) is dropped
/// with [`Tracked::prune`], which keeps it aside until the next [`Tracked::clear_dirty`] so
/// the state can delete each of its entries from the tree ([`Tracked::pruned`]).
#[derive(Debug, Clone)]
pub(crate) struct Tracked<K: Ord + Clone, V> {
    map: BTreeMap<K, V>,
    dirty: BTreeSet<K>,
    pruned: BTreeMap<K, V>,
}

impl<K: Ord + Clone, V> Default for Tracked<K, V> {
    fn default() -> Self {
        Self {
            map: BTreeMap::new(),
            dirty: BTreeSet::new(),
            pruned: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: PartialEq> PartialEq for Tracked<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map
    }
}

impl<K: Ord + Clone, V: Eq> Eq for Tracked<K, V> {}

impl<K: Ord + Clone, V> Deref for Tracked<K, V> {
    type Target = BTreeMap<K, V>;
    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

impl<'a, K: Ord + Clone, V> IntoIterator for &'a Tracked<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = btree_map::Iter<'a, K, V>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.iter()
    }
}

impl<K: Ord + Clone, V> Tracked<K, V> {
    pub fn entry(&mut self, k: K) -> btree_map::Entry<'_, K, V> {
        self.dirty.insert(k.clone());
        self.map.entry(k)
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.dirty.insert(k.clone());
        self.map.get_mut(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.dirty.insert(k.clone());
        self.map.insert(k, v)
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.dirty.insert(k.clone());
        self.map.remove(k)
    }

    /// Removes `k`, keeping its value aside (see [`Tracked::pruned`]) until the next
    /// [`Tracked::clear_dirty`]. Returns whether it was present.
    pub fn prune(&mut self, k: &K) -> bool {
        let Some(v) = self.map.remove(k) else {
            return false;
        };
        self.dirty.insert(k.clone());
        // The first value pruned since the last commit is the one the tree may hold.
        self.pruned.entry(k.clone()).or_insert(v);
        true
    }

    /// The value [`Tracked::prune`] removed under `k` since the last [`Tracked::clear_dirty`].
    pub fn pruned(&self, k: &K) -> Option<&V> {
        self.pruned.get(k)
    }

    /// Replaces the whole map (every old and new key is written).
    pub fn replace(&mut self, map: BTreeMap<K, V>) {
        self.dirty.extend(self.map.keys().cloned());
        self.dirty.extend(map.keys().cloned());
        self.map = map;
    }

    /// The keys written since the last [`Tracked::clear_dirty`].
    pub fn dirty(&self) -> &BTreeSet<K> {
        &self.dirty
    }

    /// Forgets the written keys and the pruned values (after a commit or a full rebuild).
    pub fn clear_dirty(&mut self) {
        self.dirty.clear();
        self.pruned.clear();
    }
}

/// A hash map with a fixed hasher (SipHash with zero keys): lookups only, never iterated, and
/// no random seed, so the ledger draws no randomness. The keys are blake3 outputs, so
/// colliding them on purpose costs a preimage search.
type FixedMap<K, V> = HashMap<K, V, BuildHasherDefault<std::collections::hash_map::DefaultHasher>>;

/// The live tree: nodes and the current value of each key.
#[derive(Debug, Clone, Default)]
struct Store {
    nodes: FixedMap<NodeKey, Node>,
    values: FixedMap<KeyHash, OwnedValue>,
}

impl TreeReader for Store {
    fn get_node_option(&self, node_key: &NodeKey) -> anyhow::Result<Option<Node>> {
        Ok(self.nodes.get(node_key).cloned())
    }

    fn get_value_option(
        &self,
        _max_version: Version,
        key_hash: KeyHash,
    ) -> anyhow::Result<Option<OwnedValue>> {
        // Only the latest version is kept and only the latest is asked for.
        Ok(self.values.get(&key_hash).cloned())
    }

    fn get_rightmost_leaf(&self) -> anyhow::Result<Option<(NodeKey, LeafNode)>> {
        // Used only to restore a tree from a stream of leaves, which this store never does.
        Ok(None)
    }
}

/// One entry changed by a block: its key and its new value (`None`: deleted).
pub type WriteSet = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// The tree beside the state. Cloning is cheap (shared until one copy writes).
#[derive(Clone, Default)]
pub(crate) struct Commitment {
    store: Arc<Store>,
    /// Version of the last update (`None`: empty tree).
    version: Option<Version>,
    root: [u8; 32],
    /// Slashes already in the tree (the slash list only grows).
    pub slashes: usize,
}

impl core::fmt::Debug for Commitment {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Commitment")
            .field("version", &self.version)
            .field("root", &hex::encode(self.root))
            .finish()
    }
}

/// The tree is derived data: two states with equal maps are equal.
impl PartialEq for Commitment {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Commitment {}

pub(crate) fn key_hash(key: &[u8]) -> KeyHash {
    KeyHash(*blake3::hash(key).as_bytes())
}

/// One new version of the tree: jmt's batch insertion when nothing is deleted (faster), its
/// general path otherwise.
fn put(
    store: &Store,
    writes: &[(Vec<u8>, Option<Vec<u8>>)],
    version: Version,
) -> anyhow::Result<(jmt::RootHash, jmt::storage::TreeUpdateBatch)> {
    let tree = JellyfishMerkleTree::<Store, Blake3>::new(store);
    let inserts: Option<Vec<(KeyHash, OwnedValue)>> = writes
        .iter()
        .map(|(k, v)| v.clone().map(|v| (key_hash(k), v)))
        .collect();
    match inserts {
        Some(set) if !set.is_empty() => {
            let (roots, batch) = tree.batch_put_value_sets(vec![set], None, version)?;
            let root = roots
                .first()
                .copied()
                .ok_or_else(|| anyhow::anyhow!("no root for the batch"))?;
            Ok((root, batch))
        }
        _ => {
            let set = writes.iter().map(|(k, v)| (key_hash(k), v.clone()));
            tree.put_value_set(set, version)
        }
    }
}

impl Commitment {
    /// Whether the tree holds `key` now.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.store.values.contains_key(&key_hash(key))
    }

    /// The current value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.store.values.get(&key_hash(key)).map(Vec::as_slice)
    }

    /// How many values and nodes the tree holds (its memory, roughly).
    #[cfg(test)]
    pub fn size(&self) -> (usize, usize) {
        (self.store.values.len(), self.store.nodes.len())
    }

    fn next_version(&self) -> Version {
        self.version.map_or(0, |v| v.saturating_add(1))
    }

    /// The root the tree would have after `writes`, without changing it.
    pub fn preview(&self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> anyhow::Result<[u8; 32]> {
        if writes.is_empty() {
            return Ok(self.root);
        }
        let (root, _) = put(&self.store, writes, self.next_version())?;
        Ok(root.0)
    }

    /// Puts `writes` into the tree as one new version, drops the nodes it made stale, and
    /// returns the new root.
    pub fn apply(&mut self, writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> anyhow::Result<[u8; 32]> {
        if writes.is_empty() {
            return Ok(self.root);
        }
        let version = self.next_version();
        let (root, batch) = put(&self.store, writes, version)?;
        let store = Arc::make_mut(&mut self.store);
        for stale in &batch.stale_node_index_batch {
            store.nodes.remove(&stale.node_key);
        }
        for (k, n) in batch.node_batch.nodes() {
            store.nodes.insert(k.clone(), n.clone());
        }
        for (k, v) in writes {
            match v {
                Some(v) => store.values.insert(key_hash(k), v.clone()),
                None => store.values.remove(&key_hash(k)),
            };
        }
        self.version = Some(version);
        self.root = root.0;
        Ok(self.root)
    }
}
