//! The consensus [`Application`] over the ledger state machine: applies decided blocks,
//! persists the state, answers the validator set per height and turns engine evidence into
//! slashing transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use groundtruth_consensus::{
    Admission, Application, CommitError, DecidedBlock, Evidence, EvidenceKind, Refusal,
    ValidatorInfo,
};
use groundtruth_ledger::{
    apply_raw_block, select_payable, BlockOutcome, DoubleSignEvidence, Event,
    Evidence as LedgerEvidence, SignedTx, State, TxBody,
};
use tokio::sync::mpsc;

use super::persist::StateStore;
use super::{registry_of, BlockSummary, Shared};

/// Validator sets remembered for past heights (asked again only around restarts).
const SET_HISTORY: usize = 1024;

/// The ledger as consensus drives it.
pub(crate) struct ChainApp {
    pub shared: Arc<Shared>,
    pub store: StateStore,
    /// Validator set per height, for heights at or below the current state's.
    pub history: BTreeMap<u64, Vec<ValidatorInfo>>,
    /// Slashing transaction bodies for the evidence submitter.
    pub slashes: mpsc::Sender<TxBody>,
    /// Set once this node cannot follow the chain any more (see [`super::Chain::halted`]).
    pub halt: tokio::sync::watch::Sender<Option<String>>,
}

impl ChainApp {
    fn halt(&self, error: CommitError) -> CommitError {
        tracing::error!(target: "node::chain", height = error.height, reason = %error.reason, "halting: the ledger cannot follow the chain");
        let _ = self.halt.send(Some(error.to_string()));
        error
    }
}

pub(crate) fn set_of(state: &State) -> Vec<ValidatorInfo> {
    state
        .validator_set()
        .into_iter()
        .map(|(key, power)| ValidatorInfo {
            public_key: key.0,
            voting_power: power,
        })
        .collect()
}

fn touches_devices(tx: &[u8]) -> bool {
    matches!(
        SignedTx::decode(tx).map(|s| s.tx.body),
        Ok(TxBody::RegisterDevice { .. }
            | TxBody::RotateDeviceKey { .. }
            | TxBody::RetireDevice { .. }
            | TxBody::SubmitEvidence(LedgerEvidence::DeviceEquivocation { .. }))
    )
}

/// Whether ingest's device registry must be rebuilt after this block: a device transaction
/// took effect, a device was suspended (by a transaction: a decided GPU or retrieval round, a
/// storage fault; or at the epoch boundary: a missed storage deadline), or an epoch ended
/// (whatever the boundary changed is seen at once, not at the next device transaction).
fn registry_stale(txs: &[Bytes], outcome: &BlockOutcome) -> bool {
    let suspended = |events: &[Event]| {
        events
            .iter()
            .any(|e| matches!(e, Event::DeviceSuspended { .. }))
    };
    outcome.epoch_ended.is_some()
        || suspended(&outcome.end_block_events)
        || txs.iter().zip(&outcome.results).any(|(tx, r)| {
            matches!(r, Ok(rc) if (rc.failed.is_none() && touches_devices(tx)) || suspended(&rc.events))
        })
}

/// The mempool's door: the ledger's [`groundtruth_ledger::PendingPool`] over the committed
/// state (nonce window, fees reserved against the balance, the next nonce checked in full).
pub(crate) struct LedgerAdmission {
    pub shared: Arc<Shared>,
}

impl Admission for LedgerAdmission {
    fn admit(&self, hash: &[u8; 32], tx: &[u8]) -> Result<(), Refusal> {
        let refuse = |reason: &'static str, detail: String| Refusal { reason, detail };
        let stx = SignedTx::decode(tx).map_err(|e| refuse(e.reason(), e.to_string()))?;
        let mut pool = self.shared.pool();
        let ledger = self.shared.read();
        pool.admit(&ledger.state, &stx, *hash)
            .map_err(|e| refuse(e.reason(), e.to_string()))
    }

    fn after_commit(&self) -> Vec<[u8; 32]> {
        let mut pool = self.shared.pool();
        let ledger = self.shared.read();
        pool.after_commit(&ledger.state)
    }
}

impl Application for ChainApp {
    fn admission(&self) -> Option<Arc<dyn Admission>> {
        Some(Arc::new(LedgerAdmission {
            shared: self.shared.clone(),
        }))
    }

    fn prepare_block(&mut self, _height: u64, candidates: Vec<Bytes>) -> Vec<Bytes> {
        // Only what will at least pay its fee, in nonce order per sender.
        let ledger = self.shared.read();
        let keep = select_payable(&ledger.state, &candidates);
        drop(ledger);
        keep.into_iter()
            .filter_map(|i| candidates.get(i).cloned())
            .collect()
    }

    fn validator_set(&self, height: u64) -> Vec<ValidatorInfo> {
        let ledger = self.shared.read();
        if height == ledger.state.height().saturating_add(1) {
            return set_of(&ledger.state);
        }
        match self.history.get(&height) {
            Some(set) => set.clone(),
            None => set_of(&ledger.state),
        }
    }

    fn validate_block(&self, _height: u64, txs: &[Bytes]) -> bool {
        // Invalid transactions are rejected one by one when the block is applied; a block is
        // refused only for bytes no honest proposer would include.
        // (Decoding also bounds the size.)
        txs.iter().all(|tx| SignedTx::decode(tx).is_ok())
    }

    fn commit(&mut self, block: &DecidedBlock) -> Result<[u8; 32], CommitError> {
        let started = Instant::now();
        let mut ledger = self.shared.write();
        // The engine does not tell the application who proposed, so fees are burned.
        let outcome = match apply_raw_block(&mut ledger.state, block.height, None, &block.txs) {
            Ok(o) => o,
            Err(e) => {
                // The chain decided a block this state cannot follow: halt rather than diverge.
                drop(ledger);
                return Err(self.halt(CommitError {
                    height: block.height,
                    reason: format!("decided block does not apply: {e}"),
                }));
            }
        };
        ledger.root = outcome.state_root;
        let next_set = set_of(&ledger.state);
        let registry = registry_stale(&block.txs, &outcome).then(|| registry_of(&ledger.state));
        drop(ledger);
        // Keep every audit proof the block carried (verified or the evidence of a slash), so
        // the API can serve it; same database as the state, made durable with it below.
        for (tx, r) in block.txs.iter().zip(&outcome.results) {
            if r.is_err() {
                continue;
            }
            if let Ok(stx) = SignedTx::decode(tx) {
                if let TxBody::SubmitAuditProof {
                    epoch,
                    batch,
                    proof,
                } = &stx.tx.body
                {
                    let digest = *blake3::hash(proof).as_bytes();
                    let key = super::proof_key(*epoch, batch, &digest);
                    if let Err(e) = self.shared.proofs.insert(key, proof.as_slice()) {
                        tracing::warn!(target: "node::chain", error = %e, "audit proof not kept");
                    }
                }
            }
        }

        if let Some(r) = registry {
            tracing::info!(target: "node::chain", height = block.height, devices = r.len(), "device registry refreshed from the ledger");
            self.shared.registry.store(r);
        }
        self.history
            .insert(block.height.saturating_add(1), next_set);
        while self.history.len() > SET_HISTORY {
            self.history.pop_first();
        }
        let persisted = Instant::now();
        if let Err(e) = self
            .store
            .save(block.height, &outcome.state_root, &outcome.writes)
        {
            // The next block's writes would land on a store that missed these: stop. A
            // restart loads the last saved height and replays from the block store.
            return Err(self.halt(CommitError {
                height: block.height,
                reason: format!("persisting the ledger state failed: {e}"),
            }));
        }
        let persist_ms = persisted.elapsed().as_millis() as u64;
        let txs = block
            .txs
            .iter()
            .zip(&outcome.results)
            .map(|(tx, r)| {
                (
                    *blake3::hash(tx).as_bytes(),
                    match r {
                        Err(e) => Some(e.reason()),
                        Ok(rc) => rc.failed.as_ref().map(|e| e.reason()),
                    },
                )
            })
            .collect::<Vec<_>>();
        let rejected = txs.iter().filter(|(_, r)| r.is_some()).count();
        tracing::debug!(target: "node::chain", height = block.height, txs = txs.len(), rejected, root = %hex::encode(outcome.state_root), writes = outcome.writes.len(), persist_ms, took_ms = started.elapsed().as_millis() as u64, "block applied");
        if outcome.validator_set_changed {
            tracing::info!(target: "node::chain", height = block.height, "validator set changed");
        }
        self.shared.record(BlockSummary {
            height: block.height,
            state_root: outcome.state_root,
            txs,
        });
        Ok(outcome.state_root)
    }

    fn on_misbehavior(&mut self, evidence: Evidence) {
        if evidence.kind != EvidenceKind::DoubleVote {
            tracing::warn!(target: "node::chain", validator = %hex::encode(evidence.validator), height = evidence.height, "double proposal seen; the ledger accepts only double votes as evidence");
            return;
        }
        match DoubleSignEvidence::from_sign_bytes(
            (&evidence.first.message, evidence.first.signature),
            (&evidence.second.message, evidence.second.signature),
        ) {
            Ok(ev) => {
                tracing::warn!(target: "node::chain", validator = %hex::encode(evidence.validator), height = evidence.height, "double vote; submitting slashing evidence");
                let body = TxBody::SubmitEvidence(LedgerEvidence::DoubleSign(ev));
                if self.slashes.try_send(body).is_err() {
                    tracing::warn!(target: "node::chain", "evidence queue full; double-vote evidence dropped");
                }
            }
            Err(e) => {
                tracing::warn!(target: "node::chain", error = %e, "engine evidence is not ledger evidence")
            }
        }
    }

    fn last_committed(&self) -> Option<(u64, [u8; 32])> {
        let ledger = self.shared.read();
        let h = ledger.state.height();
        (h > 0).then_some((h, ledger.root))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::registry::SharedRegistry;
    use groundtruth_consensus::CommitCertificate;
    use groundtruth_ledger::testkit::{address, sign_tx, TestNet};
    use std::sync::{Mutex, RwLock};

    fn app(dir: &std::path::Path) -> (ChainApp, tokio::sync::watch::Receiver<Option<String>>) {
        app_over(dir, TestNet::new(4, 4).state().expect("genesis"))
    }

    fn app_over(
        dir: &std::path::Path,
        state: State,
    ) -> (ChainApp, tokio::sync::watch::Receiver<Option<String>>) {
        let store = StateStore::open(dir).expect("store");
        store.init(&state).expect("init");
        let root = state.state_root();
        let shared = Arc::new(Shared {
            registry: SharedRegistry::new(super::super::registry_of(&state)),
            ledger: RwLock::new(super::super::Ledger { state, root }),
            pool: Mutex::new(groundtruth_ledger::PendingPool::new(16)),
            recent: Mutex::new(Default::default()),
            proofs: store.proofs_tree().expect("proofs tree"),
            ingest: std::sync::OnceLock::new(),
            oracle: std::sync::OnceLock::new(),
        });
        let (halt, halt_rx) = tokio::sync::watch::channel(None);
        let (slashes, _) = mpsc::channel(1);
        let app = ChainApp {
            shared,
            store,
            history: BTreeMap::new(),
            slashes,
            halt,
        };
        (app, halt_rx)
    }

    fn block(height: u64, txs: Vec<Bytes>) -> DecidedBlock {
        DecidedBlock {
            height,
            txs,
            certificate: CommitCertificate {
                height,
                round: 0,
                block_hash: [0; 32],
                signatures: Vec::new(),
            },
        }
    }

    #[test]
    fn a_decided_block_that_does_not_apply_halts_and_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut app, halt) = app(dir.path());
        let before = app.shared.read().root;
        // Height 5 does not follow height 0: this state cannot follow that chain.
        let err = app.commit(&block(5, Vec::new())).expect_err("must halt");
        assert_eq!(err.height, 5);
        assert!(halt.borrow().is_some(), "halt not signalled");
        assert_eq!(app.shared.read().root, before);
        assert_eq!(app.shared.read().state.height(), 0);
    }

    #[test]
    fn committed_blocks_persist_incrementally_and_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = TestNet::new(4, 4);
        let root = {
            let (mut app, halt) = app(dir.path());
            let st = app.shared.read().state.clone();
            let tx = sign_tx(
                &st,
                &n.users[2],
                1,
                TxBody::Transfer {
                    to: address(&n.users[3]),
                    amount: 9,
                },
            );
            let root = app
                .commit(&block(1, vec![Bytes::from(tx.encode())]))
                .expect("commit");
            assert!(halt.borrow().is_none());
            root
        };
        let store = StateStore::open(dir.path()).expect("reopen");
        let back = store.load().expect("load").expect("state");
        assert_eq!(back.height(), 1);
        assert_eq!(back.state_root(), root);
        assert_eq!(back.account(&address(&n.users[3])).balance, 1_000_009);
    }

    /// A storage device suspended at an epoch boundary (its proof for epoch 0 missed the
    /// deadline, recorded when epoch 1 ends; no transaction in that block) leaves ingest's
    /// registry with that block, not at the next device transaction.
    #[test]
    fn a_suspension_at_an_epoch_boundary_refreshes_the_registry() {
        use groundtruth_ledger::testkit::{device_id, key, STORAGE_DEVICE};
        let dir = tempfile::tempdir().expect("tempdir");
        let mut n = TestNet::new(4, 4);
        n.genesis.params.storage_deadline_epochs = 1;
        n.genesis.params.storage_faults_to_suspend = 1;
        let (mut app, _halt) = app_over(dir.path(), n.state().expect("genesis"));
        let dev = device_id(&key(STORAGE_DEVICE));
        let data = vec![7u8; 10_000];
        let c = groundtruth_proofs::por::commit_reader(&data[..], 4, None).expect("commit");
        let st = app.shared.read().state.clone();
        let tx = sign_tx(
            &st,
            &n.users[0],
            0,
            TxBody::CommitStorage {
                device: dev,
                root: c.root,
                depth: c.depth,
                num_chunks: c.num_chunks,
            },
        );
        app.commit(&block(1, vec![Bytes::from(tx.encode())]))
            .expect("commit");
        let in_registry = |app: &ChainApp| app.shared.registry.load().get(&dev).is_some();
        assert!(in_registry(&app));
        let epoch_length = st.params().epoch_length;
        let mut height = 1;
        // Empty blocks up to the end of epoch 1, where epoch 0's missed proof suspends it.
        while app.shared.read().state.epoch() < 2 {
            height += 1;
            app.commit(&block(height, Vec::new())).expect("commit");
            let suspended = app
                .shared
                .read()
                .state
                .device(&dev)
                .is_some_and(|d| d.status == groundtruth_ledger::DeviceStatus::Suspended);
            assert_eq!(in_registry(&app), !suspended, "height {height}");
        }
        assert_eq!(height, 2 * epoch_length);
        assert!(!in_registry(&app), "suspended at the boundary");
    }
}
