//! The oracle service: anchors each committed epoch on Ethereum (L1).
//!
//! Every validator with an L1 key (`[oracle] l1_key_file`) signs, for the epoch L1 expects next
//! (`nextEpoch` of the contract), the EIP-712 digest of its commitment (the ledger's
//! [`groundtruth_ledger::EpochCommitment`] roots under the L1 validator set's nonce) and serves
//! the signature at `GET /v1/epochs/{n}/l1-signature`. The L1 validator set follows the ledger:
//! the set that signs epoch `n` is the epoch's committee (from its seal) restricted to the
//! validators with a registered L1 key, weighted by voting power. When it differs from the
//! contract's set, validators of the contract's set also sign the update (nonce + 1), and the
//! epoch is signed under the new nonce: the update is installed before the epoch is accepted.
//!
//! One validator posts: the member of the signing set with the lowest operator address; the
//! next ones take over after `failover` each while L1 stands still. The poster collects the
//! signatures from `http_peers` until two thirds of the L1 weight, then calls
//! `updateValidatorSet` and `submitEpoch` through [`groundtruth_oracle::Oracle`], which reads L1
//! before every send (an epoch already anchored is not posted again, a transaction still
//! pending is waited for), waits for `confirmations` and retries with backoff. Everything is
//! derived from what L1 says on each poll, so a restarted poster resumes where L1 stands and an
//! anchor a reorg dropped is posted again.
//!
//! A validator whose ledger record lacks its L1 key (or holds another) registers it with
//! `SetL1Key` and the key's proof of possession.

pub mod devnet;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use groundtruth_ledger::{Address as LedgerAddress, L1Address, State, TxBody, ValidatorStatus};
use groundtruth_oracle::{
    Address, Anchor, CompactSignature, Eip712Domain, EpochCommitment, Oracle, PrivateKeySigner,
    Quorum, Submission, ValidatorSet, B256,
};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Most epochs whose signatures a node keeps to serve.
const KEPT_SIGNATURES: usize = 64;
/// Anchors re-read on every poll (the most recent epochs, where a reorg may still act).
const RECHECKED_ANCHORS: u64 = 8;
/// Older anchors looked up per poll when filling the cache after a start.
const ANCHOR_FILL_PER_POLL: u64 = 16;
/// A `SetL1Key` not reflected on the ledger after this long is sent again.
const L1_KEY_RESEND: Duration = Duration::from_secs(60);

/// `[oracle]`: anchoring committed epochs on L1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OracleSection {
    /// Run the service (needs consensus, an operator key and an L1 key).
    pub enabled: bool,
    /// The L1 JSON-RPC endpoint (`http://`).
    pub l1_rpc: String,
    /// Address of the deployed `GroundtruthOracle` (`0x` + 40 hex).
    pub contract: Option<Address>,
    /// File holding this validator's L1 secret key (64 hex characters, `0x` optional).
    pub l1_key_file: Option<PathBuf>,
    /// Blocks on top of an anchoring transaction (itself included) before it counts.
    pub confirmations: u64,
    /// How often the service reads L1 and the ledger.
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// How long L1 may stand still on a ready epoch before the next validator in line posts.
    #[serde(with = "humantime_serde")]
    pub failover: Duration,
    /// How long to wait for a transaction's confirmations before reading L1 again.
    #[serde(with = "humantime_serde")]
    pub receipt_timeout: Duration,
    /// Other validators' APIs (`host:port` or `http://host:port`), asked for their signatures.
    pub http_peers: Vec<String>,
}

impl Default for OracleSection {
    fn default() -> Self {
        Self {
            enabled: false,
            l1_rpc: "http://127.0.0.1:8545".into(),
            contract: None,
            l1_key_file: None,
            confirmations: 2,
            poll: Duration::from_secs(2),
            failover: Duration::from_secs(30),
            receipt_timeout: Duration::from_secs(60),
            http_peers: Vec::new(),
        }
    }
}

/// Why the service cannot start.
#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    /// A configuration value is missing or invalid.
    #[error("[oracle] {0}")]
    Config(String),
    /// The L1 client refused its configuration.
    #[error(transparent)]
    Client(#[from] groundtruth_oracle::Error),
}

/// Reads an L1 secret key file (64 hex characters, `0x` optional, surrounding space ignored).
pub fn load_l1_key(path: &std::path::Path) -> Result<PrivateKeySigner, OracleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| OracleError::Config(format!("l1_key_file {}: {e}", path.display())))?;
    let hex = text.trim();
    let hex = hex.strip_prefix("0x").unwrap_or(hex);
    let bytes: B256 = hex.parse().map_err(|_| {
        OracleError::Config(format!(
            "l1_key_file {}: expected 64 hex characters",
            path.display()
        ))
    })?;
    PrivateKeySigner::from_bytes(&bytes)
        .map_err(|e| OracleError::Config(format!("l1_key_file {}: {e}", path.display())))
}

/// A signature as served: `r`, `s`, `v` (27 or 28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureView {
    /// r.
    pub r: B256,
    /// s (lower half).
    pub s: B256,
    /// 27 + parity.
    pub v: u8,
}

impl From<CompactSignature> for SignatureView {
    fn from(s: CompactSignature) -> Self {
        Self {
            r: s.r,
            s: s.s,
            v: s.v,
        }
    }
}

impl From<SignatureView> for CompactSignature {
    fn from(s: SignatureView) -> Self {
        Self {
            r: s.r,
            s: s.s,
            v: s.v,
        }
    }
}

/// A validator set update this validator signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUpdateView {
    /// The new set's nonce.
    pub nonce: u64,
    /// Its L1 addresses, increasing.
    pub members: Vec<Address>,
    /// Their weights.
    pub weights: Vec<u64>,
    /// Signature over the update's EIP-712 digest.
    pub signature: SignatureView,
}

/// `GET /v1/epochs/{n}/l1-signature`: this validator's signatures for anchoring epoch `n`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct L1SignatureView {
    /// The epoch.
    pub epoch: u64,
    /// This validator's L1 address.
    pub signer: Address,
    /// Nonce of the set that signs the epoch.
    pub set_nonce: u64,
    /// The commitment's EIP-712 struct hash (what L1 stores).
    pub commitment_hash: B256,
    /// Signature over the commitment's EIP-712 digest (absent when this validator is not in the
    /// signing set).
    pub signature: Option<SignatureView>,
    /// The set update to install first, when L1's set is not the ledger's (signed when this
    /// validator is in L1's current set).
    pub set_update: Option<SetUpdateView>,
}

/// `"l1"` of `GET /v1/epochs/{n}`: where the epoch is anchored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct L1AnchorView {
    /// L1 block holding the anchoring transaction.
    pub block: u64,
    /// The transaction.
    pub tx: B256,
    /// The commitment's EIP-712 struct hash L1 stores.
    pub commitment_hash: B256,
}

/// What the service shares with the API: signatures to serve and anchors seen on L1.
#[derive(Debug, Default)]
pub struct OracleShared {
    signatures: Mutex<BTreeMap<u64, L1SignatureView>>,
    anchors: Mutex<BTreeMap<u64, Anchor>>,
    /// The oldest epoch whose anchor a reader (the production read model) still needs.
    wanted_from: Mutex<Option<u64>>,
}

impl OracleShared {
    /// This validator's signatures for `epoch`, if it signed.
    pub fn signature(&self, epoch: u64) -> Option<L1SignatureView> {
        self.signatures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&epoch)
            .cloned()
    }

    /// Where `epoch` is anchored, as last read from L1.
    pub fn anchor(&self, epoch: u64) -> Option<L1AnchorView> {
        self.anchors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&epoch)
            .map(|a| L1AnchorView {
                block: a.block,
                tx: a.tx,
                commitment_hash: a.commitment_hash,
            })
    }

    /// Asks the service to read anchors back from `epoch` on (a few per poll), for a reader
    /// catching up after a restart; by default only the most recent epochs are read.
    pub fn want_anchors_from(&self, epoch: u64) {
        *self.wanted_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(epoch);
    }

    fn take_wanted(&self) -> Option<u64> {
        self.wanted_from
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn put_signature(&self, view: L1SignatureView) {
        let mut m = self.signatures.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(view.epoch, view);
        while m.len() > KEPT_SIGNATURES {
            m.pop_first();
        }
    }

    fn set_anchor(&self, epoch: u64, anchor: Option<Anchor>) {
        let mut m = self.anchors.lock().unwrap_or_else(|e| e.into_inner());
        match anchor {
            Some(a) => m.insert(epoch, a),
            None => m.remove(&epoch),
        };
    }
}

/// What the ledger says about one committed epoch, for L1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochInput {
    /// The epoch.
    pub epoch: u64,
    /// Readings root.
    pub readings_root: B256,
    /// Verified totals root.
    pub totals_root: B256,
    /// Proof digests root.
    pub proofs_root: B256,
    /// Sealed state root.
    pub state_root: B256,
    /// The epoch's committee members with an L1 key: (operator, L1 address, voting power),
    /// by operator.
    pub members: Vec<(LedgerAddress, Address, u64)>,
}

/// The L1 address type of the oracle crate for a ledger one.
pub fn l1_address(a: &L1Address) -> Address {
    Address::from(a.0)
}

/// The epoch's commitment and L1 signers from the ledger, once committed (`None` before, or
/// when no committee member has an L1 key).
pub fn epoch_input(st: &State, epoch: u64) -> Option<EpochInput> {
    let c = st.epoch_commitment(epoch)?;
    let seal = st.epoch_seal(epoch)?;
    let members: Vec<(LedgerAddress, Address, u64)> = seal
        .committee
        .iter()
        .filter_map(|(op, power)| {
            let v = st.validator(op)?;
            let a = v.l1_address?;
            (*power > 0).then_some((*op, l1_address(&a), *power))
        })
        .collect();
    if members.is_empty() {
        return None;
    }
    Some(EpochInput {
        epoch,
        readings_root: B256::from(c.readings_root),
        totals_root: B256::from(c.totals_root),
        proofs_root: B256::from(c.proofs_root),
        state_root: B256::from(c.state_root),
        members,
    })
}

/// What to post for one epoch given L1's current set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The set to install first (signed by L1's current set), when the ledger's differs.
    pub update: Option<ValidatorSet>,
    /// The set that signs the epoch (the update, or L1's current set).
    pub signing_set: ValidatorSet,
    /// The commitment, under the signing set's nonce.
    pub commitment: EpochCommitment,
}

/// The plan for `input` when L1 holds `l1_set`.
pub fn plan(input: &EpochInput, l1_set: &ValidatorSet) -> groundtruth_oracle::Result<Plan> {
    let nonce = l1_set.nonce().saturating_add(1);
    let ledger_set = ValidatorSet::new(
        nonce,
        input.members.iter().map(|(_, a, w)| (*a, *w)).collect(),
    )?;
    let (update, signing_set) = if ledger_set.members() == l1_set.members() {
        (None, l1_set.clone())
    } else {
        (Some(ledger_set.clone()), ledger_set)
    };
    let commitment = EpochCommitment {
        epoch: input.epoch,
        readings_root: input.readings_root,
        verified_totals_root: input.totals_root,
        proof_digests_root: input.proofs_root,
        ledger_state_root: input.state_root,
        set_nonce: signing_set.nonce(),
    };
    Ok(Plan {
        update,
        signing_set,
        commitment,
    })
}

/// This validator's place in the posting order of `input` (members by operator address), if
/// it is a member.
pub fn poster_rank(input: &EpochInput, me: Address) -> Option<usize> {
    // `members` is by operator already (the seal's order); sort anyway, it is cheap.
    let mut ops: Vec<(LedgerAddress, Address)> =
        input.members.iter().map(|(o, a, _)| (*o, *a)).collect();
    ops.sort_by_key(|(o, _)| *o);
    ops.iter().position(|(_, a)| *a == me)
}

/// This validator's signatures for `plan`.
pub fn sign_plan(
    key: &PrivateKeySigner,
    domain: &Eip712Domain,
    l1_set: &ValidatorSet,
    plan: &Plan,
) -> groundtruth_oracle::Result<L1SignatureView> {
    let me = key.address();
    let signature = match plan.signing_set.weight_of(me) {
        Some(_) => Some(
            groundtruth_oracle::sign_digest(key, &plan.commitment.signing_hash(domain))?.into(),
        ),
        None => None,
    };
    let set_update = match (&plan.update, l1_set.weight_of(me)) {
        (Some(u), Some(_)) => Some(SetUpdateView {
            nonce: u.nonce(),
            members: u.addresses(),
            weights: u.members().iter().map(|(_, w)| *w).collect(),
            signature: groundtruth_oracle::sign_digest(key, &u.update_signing_hash(domain))?.into(),
        }),
        _ => None,
    };
    Ok(L1SignatureView {
        epoch: plan.commitment.epoch,
        signer: me,
        set_nonce: plan.commitment.set_nonce,
        commitment_hash: plan.commitment.struct_hash(),
        signature,
        set_update,
    })
}

/// The quorums to post `plan`, from the signature views collected (own included): the set
/// update's signatures (when there is one) and the epoch's; `Err(NoQuorum)` while short.
#[allow(clippy::type_complexity)]
pub fn quorums(
    domain: &Eip712Domain,
    l1_set: &ValidatorSet,
    plan: &Plan,
    views: &[L1SignatureView],
) -> groundtruth_oracle::Result<(Option<Vec<CompactSignature>>, Vec<CompactSignature>)> {
    let update = match &plan.update {
        Some(u) => {
            let mut q = Quorum::new(l1_set, u.update_signing_hash(domain));
            for v in views {
                if let Some(s) = v.set_update.as_ref().filter(|s| s.nonce == u.nonce()) {
                    q.add(s.signature.into());
                }
            }
            Some(q.finish()?)
        }
        None => None,
    };
    let mut q = Quorum::new(&plan.signing_set, plan.commitment.signing_hash(domain));
    for v in views {
        if let Some(s) = v.signature {
            q.add(s.into());
        }
    }
    Ok((update, q.finish()?))
}

/// The 65-byte `r ‖ s ‖ v` proof of possession of `key` for `operator` on `chain_id`.
pub fn l1_key_proof(
    key: &PrivateKeySigner,
    chain_id: &str,
    operator: &LedgerAddress,
) -> groundtruth_oracle::Result<(L1Address, [u8; 65])> {
    let address = L1Address(key.address().into_array());
    let digest = groundtruth_ledger::l1_key_digest(chain_id, operator, &address);
    let sig = groundtruth_oracle::sign_digest(key, &B256::from(digest))?;
    let mut out = [0u8; 65];
    out[..32].copy_from_slice(sig.r.as_slice());
    out[32..64].copy_from_slice(sig.s.as_slice());
    out[64] = sig.v;
    Ok((address, out))
}

/// Reads the ledger's committed state.
pub trait LedgerSource: Send + Sync + 'static {
    /// Runs `f` on the committed state.
    fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R;
}

impl<T: crate::audit::LedgerView> LedgerSource for T {
    fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        crate::audit::LedgerView::with_state(self, f)
    }
}

/// The running service's parts.
pub struct Service<L: LedgerSource> {
    /// The ledger.
    pub ledger: Arc<L>,
    /// This validator's operator, when it signs ledger transactions.
    pub operator: Option<LedgerAddress>,
    /// Where `SetL1Key` bodies go (the operator's submitter).
    pub ops: Option<mpsc::Sender<TxBody>>,
    /// The configuration.
    pub config: OracleSection,
    /// The L1 key.
    pub key: PrivateKeySigner,
    /// Shared with the API.
    pub shared: Arc<OracleShared>,
}

/// A client of the configured contract posting with `key`.
pub fn client(config: &OracleSection, key: PrivateKeySigner) -> Result<Oracle, OracleError> {
    let contract = config
        .contract
        .ok_or_else(|| OracleError::Config("contract is required".into()))?;
    let mut c = groundtruth_oracle::Config::new(config.l1_rpc.clone(), contract);
    c.confirmations = config.confirmations;
    c.receipt_timeout = config.receipt_timeout;
    c.retry.max_attempts = 3;
    c.retry.max_backoff = Duration::from_secs(5);
    Ok(Oracle::new(c, key)?)
}

impl<L: LedgerSource> Service<L> {
    /// Runs until the task is dropped.
    pub async fn run(self) -> Result<(), OracleError> {
        let oracle = client(&self.config, self.key.clone())?;
        let mut tick = tokio::time::interval(self.config.poll.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut domain: Option<Eip712Domain> = None;
        let mut ready_since: Option<(u64, Instant)> = None;
        let mut key_sent: Option<Instant> = None;
        let mut filled_from: Option<u64> = None;
        loop {
            tick.tick().await;
            self.register_key(&mut key_sent).await;
            let d = match &domain {
                Some(d) => d.clone(),
                None => match oracle.domain().await {
                    Ok(d) => {
                        domain = Some(d.clone());
                        d
                    }
                    Err(e) => {
                        tracing::warn!(target: "node::oracle", error = %e, "L1 unreachable");
                        continue;
                    }
                },
            };
            let (next, set) = match tokio::try_join!(oracle.next_epoch(), oracle.validator_set()) {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(target: "node::oracle", error = %e, "reading L1 failed");
                    continue;
                }
            };
            self.refresh_anchors(&oracle, next, &mut filled_from).await;
            let Some(input) = self.ledger.with_state(|st| epoch_input(st, next)) else {
                continue;
            };
            let plan = match plan(&input, &set) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(target: "node::oracle", epoch = next, error = %e, "no L1 set for the epoch");
                    continue;
                }
            };
            let own = match sign_plan(&self.key, &d, &set, &plan) {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(target: "node::oracle", epoch = next, error = %e, "signing failed");
                    continue;
                }
            };
            self.shared.put_signature(own.clone());
            let since = match ready_since {
                Some((e, at)) if e == next => at,
                _ => {
                    let now = Instant::now();
                    ready_since = Some((next, now));
                    now
                }
            };
            let Some(rank) = poster_rank(&input, self.key.address()) else {
                continue;
            };
            let turn = self
                .config
                .failover
                .saturating_mul(u32::try_from(rank).unwrap_or(u32::MAX));
            if since.elapsed() < turn {
                continue;
            }
            self.post(&oracle, &d, &set, &plan, own).await;
        }
    }

    /// Sends `SetL1Key` when the ledger does not hold this validator's L1 key.
    async fn register_key(&self, sent: &mut Option<Instant>) {
        let (Some(op), Some(ops)) = (self.operator, &self.ops) else {
            return;
        };
        let me = L1Address(self.key.address().into_array());
        let (chain_id, needed) = self.ledger.with_state(|st| {
            let needed = st
                .validator(&op)
                .is_some_and(|v| v.status != ValidatorStatus::Removed && v.l1_address != Some(me));
            (st.chain_id().to_string(), needed)
        });
        if !needed || sent.is_some_and(|t| t.elapsed() < L1_KEY_RESEND) {
            return;
        }
        match l1_key_proof(&self.key, &chain_id, &op) {
            Ok((address, signature)) => {
                if ops
                    .send(TxBody::SetL1Key { address, signature })
                    .await
                    .is_ok()
                {
                    tracing::info!(target: "node::oracle", %address, "registering the L1 key on the ledger");
                    *sent = Some(Instant::now());
                }
            }
            Err(e) => tracing::warn!(target: "node::oracle", error = %e, "L1 key proof failed"),
        }
    }

    /// Re-reads the most recent anchors (a reorg may drop them) and fills older ones.
    async fn refresh_anchors(&self, oracle: &Oracle, next: u64, filled_from: &mut Option<u64>) {
        let recent = next.saturating_sub(RECHECKED_ANCHORS);
        let mut first =
            filled_from.unwrap_or_else(|| recent.saturating_sub(KEPT_SIGNATURES as u64));
        if let Some(w) = self.shared.take_wanted() {
            first = first.min(w);
        }
        let older_end = recent.min(first.saturating_add(ANCHOR_FILL_PER_POLL));
        for e in (first..older_end).chain(recent..next) {
            match oracle.anchor_of(e).await {
                Ok(a) => self.shared.set_anchor(e, a),
                Err(e) => {
                    tracing::debug!(target: "node::oracle", error = %e, "reading an anchor failed");
                    return;
                }
            }
        }
        *filled_from = Some(older_end);
    }

    async fn post(
        &self,
        oracle: &Oracle,
        domain: &Eip712Domain,
        set: &ValidatorSet,
        plan: &Plan,
        own: L1SignatureView,
    ) {
        let epoch = plan.commitment.epoch;
        let mut views = vec![own];
        views.extend(collect(&self.config.http_peers, epoch).await);
        let (update, sigs) = match quorums(domain, set, plan, &views) {
            Ok(q) => q,
            Err(e) => {
                tracing::debug!(target: "node::oracle", epoch, error = %e, "waiting for signatures");
                return;
            }
        };
        if let (Some(new_set), Some(update_sigs)) = (&plan.update, update) {
            match oracle.update_validator_set(new_set, &update_sigs).await {
                Ok(Submission::Anchored { tx, block, .. }) => {
                    tracing::info!(target: "node::oracle", nonce = new_set.nonce(), %tx, block, "L1 validator set updated")
                }
                Ok(Submission::AlreadyAnchored) => {}
                Err(e) => {
                    tracing::warn!(target: "node::oracle", epoch, error = %e, "updating the L1 validator set failed");
                    return;
                }
            }
        }
        match oracle.submit_epoch(&plan.commitment, &sigs).await {
            Ok(Submission::Anchored {
                tx,
                block,
                gas_used,
            }) => {
                tracing::info!(target: "node::oracle", epoch, %tx, block, gas_used, "epoch anchored on L1");
                // Confirmed now; read it back so a reorg that already dropped it is seen (the
                // next poll posts again from what L1 says).
                match oracle.anchor_of(epoch).await {
                    Ok(a) => {
                        if a.is_none() {
                            tracing::warn!(target: "node::oracle", epoch, %tx, "anchor gone from L1 after confirmations (reorg); posting again");
                        }
                        self.shared.set_anchor(epoch, a);
                    }
                    Err(e) => {
                        tracing::debug!(target: "node::oracle", error = %e, "reading the anchor back failed")
                    }
                }
            }
            Ok(Submission::AlreadyAnchored) => {
                tracing::debug!(target: "node::oracle", epoch, "already anchored")
            }
            // Another validator's anchor won the race and is still confirming: the next poll
            // reads it from L1.
            Err(e) if e.is_already_anchored() => {
                tracing::debug!(target: "node::oracle", epoch, "anchored by another validator, confirming")
            }
            Err(e) => tracing::warn!(target: "node::oracle", epoch, error = %e, "anchoring failed"),
        }
    }
}

/// Asks each peer for its signatures of `epoch` (2 s each, in parallel; failures skipped).
async fn collect(peers: &[String], epoch: u64) -> Vec<L1SignatureView> {
    let mut tasks = Vec::new();
    for p in peers {
        let p = p.clone();
        tasks.push(tokio::task::spawn_blocking(move || {
            let c = groundtruth_api::ApiClient::new(&p)
                .ok()?
                .with_timeout(Duration::from_secs(2));
            let v = c
                .get_json(&format!("/v1/epochs/{epoch}/l1-signature"))
                .ok()?;
            serde_json::from_value::<L1SignatureView>(v).ok()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(Some(v)) = t.await {
            if v.epoch == epoch {
                out.push(v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u8) -> PrivateKeySigner {
        PrivateKeySigner::from_bytes(&B256::repeat_byte(i)).expect("key")
    }

    fn input(members: &[(u8, &PrivateKeySigner, u64)]) -> EpochInput {
        EpochInput {
            epoch: 5,
            readings_root: B256::repeat_byte(1),
            totals_root: B256::repeat_byte(2),
            proofs_root: B256::repeat_byte(3),
            state_root: B256::repeat_byte(4),
            members: members
                .iter()
                .map(|(o, k, w)| (LedgerAddress([*o; 32]), k.address(), *w))
                .collect(),
        }
    }

    #[test]
    fn same_set_signs_under_l1_nonce_changed_set_updates_first() {
        let keys: Vec<_> = (1..=4).map(key).collect();
        let members: Vec<_> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (i as u8, k, 10))
            .collect();
        let inp = input(&members);
        let l1 =
            ValidatorSet::new(3, keys.iter().map(|k| (k.address(), 10)).collect()).expect("set");
        let p = plan(&inp, &l1).expect("plan");
        assert!(p.update.is_none());
        assert_eq!(p.commitment.set_nonce, 3);

        // The ledger's committee lost validator 3: the update (nonce 4) comes first, signed
        // by L1's current set; the epoch is signed under nonce 4 by the new set only.
        let inp2 = input(&members[..3]);
        let p2 = plan(&inp2, &l1).expect("plan");
        let u = p2.update.clone().expect("update");
        assert_eq!(u.nonce(), 4);
        assert_eq!(p2.commitment.set_nonce, 4);
        let domain = groundtruth_oracle::domain(1, Address::repeat_byte(7));
        let views: Vec<_> = keys
            .iter()
            .map(|k| sign_plan(k, &domain, &l1, &p2).expect("sign"))
            .collect();
        assert!(views[3].signature.is_none() && views[3].set_update.is_some());
        let (upd, sigs) = quorums(&domain, &l1, &p2, &views).expect("quorum");
        assert_eq!(upd.map(|s| s.len()), Some(3));
        assert_eq!(sigs.len(), 2, "two of three members of weight 10 reach 2/3");
        // Under quorum: one signer is not enough.
        assert!(quorums(&domain, &l1, &p2, &views[..1]).is_err());
    }

    #[test]
    fn poster_is_lowest_operator() {
        let (a, b) = (key(1), key(2));
        let inp = input(&[(9, &a, 1), (3, &b, 1)]);
        assert_eq!(poster_rank(&inp, b.address()), Some(0));
        assert_eq!(poster_rank(&inp, a.address()), Some(1));
        assert_eq!(poster_rank(&inp, key(3).address()), None);
    }

    #[test]
    fn key_proof_verifies_on_the_ledger() {
        let k = key(5);
        let op = LedgerAddress([8; 32]);
        let (address, sig) = l1_key_proof(&k, "chain", &op).expect("proof");
        assert!(groundtruth_ledger::verify_l1_possession(
            "chain", &op, &address, &sig
        ));
        assert!(!groundtruth_ledger::verify_l1_possession(
            "other", &op, &address, &sig
        ));
    }
}
