//! The consensus [`Application`] over the ledger state machine: applies decided blocks,
//! persists the state, answers the validator set per height and turns engine evidence into
//! slashing transactions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use groundtruth_consensus::{Application, DecidedBlock, Evidence, EvidenceKind, ValidatorInfo};
use groundtruth_ledger::{
    apply_raw_block, DoubleSignEvidence, Evidence as LedgerEvidence, SignedTx, State, TxBody,
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
            | TxBody::RetireDevice { .. })
    )
}

impl Application for ChainApp {
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

    fn commit(&mut self, block: &DecidedBlock) -> [u8; 32] {
        let started = Instant::now();
        let mut ledger = self.shared.write();
        // The engine does not tell the application who proposed, so fees are burned.
        let outcome = match apply_raw_block(&mut ledger.state, block.height, None, &block.txs) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(target: "node::chain", height = block.height, error = %e, "decided block does not apply; state unchanged");
                return ledger.root;
            }
        };
        ledger.root = outcome.state_root;
        let snapshot = ledger.state.snapshot();
        let next_set = set_of(&ledger.state);
        let devices_changed = block
            .txs
            .iter()
            .zip(&outcome.results)
            .any(|(tx, r)| r.is_ok() && touches_devices(tx));
        let registry = devices_changed.then(|| registry_of(&ledger.state));
        drop(ledger);

        if let Some(r) = registry {
            tracing::info!(target: "node::chain", height = block.height, devices = r.len(), "device registry refreshed from the ledger");
            self.shared.registry.store(r);
        }
        self.history
            .insert(block.height.saturating_add(1), next_set);
        while self.history.len() > SET_HISTORY {
            self.history.pop_first();
        }
        if let Err(e) = self.store.save(block.height, &snapshot) {
            tracing::error!(target: "node::chain", height = block.height, error = %e, "persisting the ledger state failed; a restart replays from the last saved height");
        }
        let txs = block
            .txs
            .iter()
            .zip(&outcome.results)
            .map(|(tx, r)| {
                (
                    *blake3::hash(tx).as_bytes(),
                    r.as_ref().err().map(|e| e.reason()),
                )
            })
            .collect::<Vec<_>>();
        let rejected = txs.iter().filter(|(_, r)| r.is_some()).count();
        tracing::debug!(target: "node::chain", height = block.height, txs = txs.len(), rejected, root = %hex::encode(outcome.state_root), took_ms = started.elapsed().as_millis() as u64, "block applied");
        if outcome.validator_set_changed {
            tracing::info!(target: "node::chain", height = block.height, "validator set changed");
        }
        self.shared.record(BlockSummary {
            height: block.height,
            state_root: outcome.state_root,
            txs,
        });
        outcome.state_root
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
