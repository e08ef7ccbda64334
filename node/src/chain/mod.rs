//! The replicated ledger inside the validator: the ledger state machine
//! (`groundtruth-ledger`) driven by Malachite BFT (`groundtruth-consensus`).
//!
//! ```text
//! POST /tx ─► mempool ─► admit (PendingPool: nonce window, fee reserved) ─► forwarded once to http_peers
//!                                    │
//!                       consensus decides a block
//!                                    ▼
//! ChainApp::commit ─► apply_raw_block ─► changed entries + root + height in sled (one batch)
//!                 ─► PendingPool::after_commit (drop consumed / unpayable)
//!                                     ─► device registry swapped for ingest
//! engine double vote / ingest device equivocation ─► SubmitEvidence signed by the operator
//! ```
//!
//! **Mempool gossip.** Malachite's app-channel cannot carry application messages, so a
//! transaction accepted through `POST /tx` (or `/txs`) is forwarded once, in batches, to every
//! configured `http_peers` endpoint with the `x-groundtruth-forwarded` header; a forwarded
//! transaction is admitted there but never forwarded again, and a transaction already pending
//! (same hash) is not forwarded twice. Limits: delivery is best effort (a peer that is down
//! misses the batch; the transaction still reaches a block through any validator that has it),
//! the peer list is static, and there is no transitive relay beyond one hop, so every validator
//! must list every other one.
//!
//! What this module must not do: interpret transactions beyond what the ledger says (admission,
//! `select_payable`, `apply_raw_block`),
//! or block the consensus task on I/O other than the one state write per block.

mod app;
pub(crate) mod epochs_api;
mod gossip;
mod persist;
pub mod read_model;
pub mod swarm;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use groundtruth_consensus::{ConsensusConfig, Handle, Timeouts};
use groundtruth_device_sdk::{ReadingKind, SignedReading};
use groundtruth_ledger::{
    Address, DeviceKind, DeviceStatus, Evidence, Genesis, PendingPool, SignedTx, State, Tx, TxBody,
    TxError,
};
use tokio::sync::mpsc;

use crate::config::NodeConfig;
use crate::ingest::registry::{DeviceRecord, Registry, SharedRegistry};

/// How many transactions one sender may have pending (nonces committed..committed + this, gap
/// free, fees reserved against the balance), so a client can send several per block.
pub const MAX_NONCE_AHEAD: u64 = 4096;
/// Decided blocks whose summaries `/block/<height>` serves.
const RECENT_BLOCKS: usize = 512;
/// Transaction outcomes `/tx/<hash>` remembers.
const RECENT_TXS: usize = 200_000;

/// Why the ledger service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The genesis file is unreadable or invalid.
    #[error("genesis {path}: {message}")]
    Genesis {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A key file is unreadable or invalid.
    #[error("key file: {0}")]
    Key(#[from] groundtruth_device_sdk::Error),
    /// A consensus address is neither `host:port` nor `/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT`
    /// (or its host name does not resolve).
    #[error("consensus address {0:?}: expected host:port or /ip4|ip6|dns4|dns6/HOST/tcp/PORT with a resolvable host")]
    Addr(String),
    /// The validators' swarm could not start.
    #[error("p2p: {0}")]
    Swarm(String),
    /// The state store could not be opened or read.
    #[error("ledger state at {path}: {message}")]
    Store {
        /// Directory.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The stored ledger state does not match the root stored with it (or does not load):
    /// the data directory is corrupt. The node refuses to start rather than diverge.
    #[error("ledger state at {path} is corrupt, refusing to start: {source}")]
    Corrupt {
        /// Directory.
        path: String,
        /// What is wrong (e.g. `PersistError::RootMismatch`).
        source: persist::PersistError,
    },
    /// The ledger could not apply or persist a decided block; the node stopped following the
    /// chain and must exit (non-zero). See [`Chain::halted`].
    #[error("ledger halted: {0}")]
    Halted(String),
    /// The consensus engine failed to start.
    #[error(transparent)]
    Consensus(#[from] groundtruth_consensus::Error),
}

/// Result of the ledger service.
pub type Result<T> = std::result::Result<T, ChainError>;

/// The ledger state with its root (kept so readers do not rehash the state).
pub(crate) struct Ledger {
    pub state: State,
    pub root: [u8; 32],
}

/// What `/block/<height>` serves.
#[derive(Debug, Clone)]
pub(crate) struct BlockSummary {
    pub height: u64,
    pub state_root: [u8; 32],
    /// Hash and rejection reason (`None`: applied) of each transaction, in block order.
    pub txs: Vec<([u8; 32], Option<&'static str>)>,
}

#[derive(Default)]
struct Recent {
    blocks: VecDeque<BlockSummary>,
    txs: HashMap<[u8; 32], (u64, Option<&'static str>)>,
    order: VecDeque<[u8; 32]>,
}

/// State shared by the consensus task, the API and the background tasks.
pub(crate) struct Shared {
    ledger: RwLock<Ledger>,
    /// The mempool's nonce- and fee-aware index (lock order: mempool, pool, ledger).
    pool: Mutex<PendingPool>,
    recent: Mutex<Recent>,
    registry: SharedRegistry,
    /// Audit proofs from committed blocks (see `persist::StateStore::proofs_tree`).
    pub proofs: sled::Tree,
    /// The ingest store, once the node opened it (for the frames behind a batch).
    pub ingest: std::sync::OnceLock<crate::ingest::store::Store>,
    /// The oracle service's signatures and L1 anchors, once it started.
    pub oracle: std::sync::OnceLock<Arc<crate::oracle::OracleShared>>,
}

/// Key of an audit proof in [`Shared::proofs`].
pub(crate) fn proof_key(epoch: u64, batch: &Address, digest: &[u8; 32]) -> [u8; 72] {
    let mut k = [0u8; 72];
    k[..8].copy_from_slice(&epoch.to_be_bytes());
    k[8..40].copy_from_slice(&batch.0);
    k[40..].copy_from_slice(digest);
    k
}

impl Shared {
    pub fn read(&self) -> RwLockReadGuard<'_, Ledger> {
        self.ledger.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, Ledger> {
        self.ledger.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn pool(&self) -> std::sync::MutexGuard<'_, PendingPool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn record(&self, block: BlockSummary) {
        let mut r = self.recent();
        for (hash, outcome) in &block.txs {
            if r.txs.insert(*hash, (block.height, *outcome)).is_none() {
                r.order.push_back(*hash);
            }
        }
        while r.order.len() > RECENT_TXS {
            if let Some(h) = r.order.pop_front() {
                r.txs.remove(&h);
            }
        }
        r.blocks.push_back(block);
        while r.blocks.len() > RECENT_BLOCKS {
            r.blocks.pop_front();
        }
    }

    pub fn block(&self, height: u64) -> Option<BlockSummary> {
        self.recent()
            .blocks
            .iter()
            .find(|b| b.height == height)
            .cloned()
    }

    pub fn tx_outcome(&self, hash: &[u8; 32]) -> Option<(u64, Option<&'static str>)> {
        self.recent().txs.get(hash).copied()
    }
}

/// The ingest registry view of the ledger: active devices under their current keys.
pub(crate) fn registry_of(state: &State) -> Registry {
    Registry::from_records(
        state
            .devices()
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| {
                let kind = match d.kind {
                    DeviceKind::Energy => ReadingKind::Energy,
                    DeviceKind::Gpu => ReadingKind::Gpu,
                    DeviceKind::Storage => ReadingKind::Storage,
                };
                (
                    d.id,
                    DeviceRecord {
                        kind,
                        capacity: d.capacity,
                    },
                )
            }),
    )
}

/// Why a transaction was not admitted.
#[derive(Debug, Clone)]
pub(crate) struct Rejected {
    /// Stable reason code (the ledger's, or `mempool_full`, `stopped`).
    pub reason: &'static str,
    /// Human-readable detail.
    pub detail: String,
}

impl From<TxError> for Rejected {
    fn from(e: TxError) -> Self {
        Self {
            reason: e.reason(),
            detail: e.to_string(),
        }
    }
}

/// Admission and submission: what the API and the evidence submitter share.
pub(crate) struct Core {
    pub shared: Arc<Shared>,
    pub handle: Handle,
    forwarder: gossip::Forwarder,
    /// Transactions to gossip on the validators' swarm, once it runs.
    gossip: std::sync::OnceLock<mpsc::Sender<Bytes>>,
    /// Fetching readings from peers (set once the swarm runs).
    pub(crate) peer_fill: std::sync::OnceLock<crate::audit::fill::PeerFill>,
}

impl Core {
    /// Queues `raw`: the mempool asks the ledger's admission ([`app::LedgerAdmission`]),
    /// which checks it against the committed state and the sender's pending transactions
    /// (nonce window of [`MAX_NONCE_AHEAD`], fees reserved). Returns its hash and whether it
    /// was new.
    pub fn submit(
        &self,
        raw: Bytes,
        forward: bool,
    ) -> std::result::Result<([u8; 32], bool), Rejected> {
        SignedTx::decode(&raw)?;
        let hash = *blake3::hash(&raw).as_bytes();
        let new = self.handle.submit_tx(raw.clone()).map_err(|e| Rejected {
            reason: match e {
                groundtruth_consensus::Error::Refused { reason, .. } => reason,
                groundtruth_consensus::Error::MempoolFull(_) => "mempool_full",
                groundtruth_consensus::Error::Stopped => "stopped",
                _ => "mempool",
            },
            detail: e.to_string(),
        })?;
        if new && forward {
            if let Some(g) = self.gossip.get() {
                if g.try_send(raw.clone()).is_err() {
                    tracing::debug!(target: "node::p2p", "gossip queue full; transaction not gossiped");
                }
            }
            // Also to any configured `http_peers` (none by default; the swarm is the path).
            self.forwarder.push(raw);
        }
        Ok((hash, new))
    }
}

/// What ingest hands to the validators' swarm ([`Chain::start_swarm`]).
#[derive(Debug, Clone)]
pub struct SwarmLinks {
    /// Frames accepted from this node's broker, to replicate to the other validators.
    pub replicate: mpsc::Sender<Bytes>,
    /// Sequence gaps to fetch from peers.
    pub gap_fill: mpsc::Sender<crate::ingest::GapFill>,
}

/// The running ledger service.
pub struct Chain {
    core: Arc<Core>,
    evidence: mpsc::Sender<(Vec<u8>, Vec<u8>)>,
    halt: tokio::sync::watch::Receiver<Option<String>>,
    /// Bodies the operator key signs and submits (evidence, audit loop).
    ops: mpsc::Sender<TxBody>,
    operator: Option<Address>,
    /// The consensus key's seed: the validator's identity on its own swarm too.
    consensus_secret: [u8; 32],
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("handle", &self.core.handle)
            .finish()
    }
}

/// Parses `ip:port` or `/ip4/A/tcp/P` (`/ip6/…` too).
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let resolve = |host: &str, port: &str| -> Result<SocketAddr> {
        let port: u16 = port.parse().map_err(|_| ChainError::Addr(s.into()))?;
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ChainError::Addr(s.into()))
    };
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        ["", "ip4" | "ip6", ip, "tcp", port] => format!("{ip}:{port}")
            .parse()
            .or_else(|_| format!("[{ip}]:{port}").parse())
            .map_err(|_| ChainError::Addr(s.into())),
        // Host names (as in configs/validator.toml) are resolved once, at start.
        ["", "dns" | "dns4" | "dns6", host, "tcp", port] => resolve(host, port),
        _ => match s.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => resolve(host, port),
            _ => Err(ChainError::Addr(s.into())),
        },
    }
}

fn load_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    let key = groundtruth_device_sdk::keys::load(path)?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&key.seed()))
}

impl Chain {
    /// Loads the ledger (last saved state, else genesis), starts consensus, the gossip
    /// forwarder and the evidence submitter. Must run inside a multi-threaded tokio runtime.
    pub async fn start(config: &NodeConfig) -> Result<Self> {
        let c = &config.consensus;
        let genesis_path = config.node.genesis.display().to_string();
        let genesis_err = |message: String| ChainError::Genesis {
            path: genesis_path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&config.node.genesis)
            .map_err(|e| genesis_err(e.to_string()))?;
        let genesis = Genesis::from_toml(&text).map_err(|e| genesis_err(e.to_string()))?;
        let genesis_state =
            State::from_genesis(&genesis).map_err(|e| genesis_err(e.to_string()))?;

        let state_dir = config.node.data_dir.join("chain");
        let store_err = |message: String| ChainError::Store {
            path: state_dir.display().to_string(),
            message,
        };
        let store = persist::StateStore::open(&state_dir).map_err(|e| store_err(e.to_string()))?;
        let loaded = store.load().map_err(|source| match source {
            persist::PersistError::Sled(e) => store_err(e.to_string()),
            source => ChainError::Corrupt {
                path: state_dir.display().to_string(),
                source,
            },
        })?;
        let state = match loaded {
            None => {
                store
                    .init(&genesis_state)
                    .map_err(|e| store_err(e.to_string()))?;
                genesis_state
            }
            Some(s) => {
                if s.chain_id() != genesis_state.chain_id() {
                    return Err(store_err(format!(
                        "saved state is of chain {}, the genesis of chain {}",
                        s.chain_id(),
                        genesis_state.chain_id()
                    )));
                }
                s
            }
        };
        tracing::info!(target: "node::chain", chain_id = state.chain_id(), height = state.height(), "ledger state loaded");
        let registry = SharedRegistry::new(registry_of(&state));
        let root = state.state_root();
        let mut history = std::collections::BTreeMap::new();
        history.insert(state.height().saturating_add(1), app::set_of(&state));
        let proofs = store.proofs_tree().map_err(|e| store_err(e.to_string()))?;
        let shared = Arc::new(Shared {
            ledger: RwLock::new(Ledger { state, root }),
            pool: Mutex::new(PendingPool::new(MAX_NONCE_AHEAD)),
            recent: Mutex::new(Recent::default()),
            registry,
            proofs,
            ingest: std::sync::OnceLock::new(),
            oracle: std::sync::OnceLock::new(),
        });

        let (slash_tx, slash_rx) = mpsc::channel::<TxBody>(256);
        let (halt_tx, halt_rx) = tokio::sync::watch::channel(None);
        let app = app::ChainApp {
            shared: shared.clone(),
            store,
            history,
            slashes: slash_tx.clone(),
            halt: halt_tx,
        };

        let signing_key = groundtruth_device_sdk::keys::load(&c.key_file)?.seed();
        let listen = parse_addr(&c.listen)?;
        let peers = c
            .peers
            .iter()
            .map(|p| parse_addr(p))
            .collect::<Result<Vec<_>>>()?;
        let home: PathBuf = c
            .home
            .clone()
            .unwrap_or_else(|| config.node.data_dir.join("consensus"));
        let mut cc = ConsensusConfig::new(home, signing_key, listen, peers);
        cc.moniker = config.node.name.clone();
        cc.block_time = Some(c.block_time);
        cc.timeouts = Timeouts {
            propose: c.timeout_propose,
            prevote: c.timeout_prevote,
            precommit: c.timeout_precommit,
            rebroadcast: c.timeout_rebroadcast,
            ..Timeouts::default()
        };
        cc.max_block_bytes = c.max_block_bytes;
        cc.mempool_max_txs = c.mempool_max_txs;
        cc.sync_status_interval = c.sync_interval;
        let handle = groundtruth_consensus::run(cc, app).await?;
        tracing::info!(target: "node::chain", listen = %listen, validator = %hex::encode(handle.address()), "consensus started");

        let forwarder = gossip::Forwarder::spawn(&c.http_peers);
        let core = Arc::new(Core {
            shared,
            handle,
            forwarder,
            gossip: std::sync::OnceLock::new(),
            peer_fill: std::sync::OnceLock::new(),
        });
        let operator = match &c.operator_key_file {
            Some(p) => Some(load_key(p)?),
            None => None,
        };
        let operator_address = operator
            .as_ref()
            .map(|k| Address(k.verifying_key().to_bytes()));
        tokio::spawn(submit_operator_txs(core.clone(), operator, slash_rx));
        let (evidence, evidence_rx) = mpsc::channel(256);
        tokio::spawn(device_evidence(evidence_rx, slash_tx.clone()));
        Ok(Self {
            core,
            evidence,
            halt: halt_rx,
            ops: slash_tx,
            operator: operator_address,
            consensus_secret: signing_key,
        })
    }

    /// The device registry ingest should check against (refreshed after each block).
    pub fn registry(&self) -> SharedRegistry {
        self.core.shared.registry.clone()
    }

    /// Resolves once the ledger has stopped following the chain (a decided block that does
    /// not apply, or state that cannot be persisted), with [`ChainError::Halted`]: consensus
    /// has stopped on this node, and the process must exit with a non-zero status. Pending
    /// forever while all is well.
    pub async fn halted(&self) -> ChainError {
        let mut rx = self.halt.clone();
        let reason = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone().unwrap_or_default(),
            Err(_) => "the ledger service stopped".to_string(),
        };
        ChainError::Halted(reason)
    }

    /// Starts the audit loop ([`crate::audit`]) over `store` when it can run: an operator key
    /// is configured, `[audit] enabled`, and the genesis has timed epochs. Returns whether it
    /// started.
    pub fn start_audits(
        &self,
        store: crate::ingest::store::Store,
        config: &crate::audit::AuditSection,
        registry: &mut prometheus_client::registry::Registry,
    ) -> bool {
        let _ = self.core.shared.ingest.set(store.clone());
        let timed = self.core.shared.read().state.params().timed_epochs();
        let Some(me) = self.operator else {
            if timed {
                tracing::warn!(target: "node::audit", "no operator_key_file: this validator will not close epochs, attest or audit");
            }
            return false;
        };
        if !config.enabled || !timed {
            return false;
        }
        crate::audit::providers::start(
            self.core.clone(),
            me,
            self.consensus_secret,
            config.providers.clone(),
            self.ops.clone(),
            crate::audit::providers::ProviderMetrics::register(registry),
        );
        let metrics = crate::audit::AuditMetrics::register(registry);
        tokio::spawn(crate::audit::run(
            self.core.clone(),
            store,
            me,
            config.clone(),
            self.ops.clone(),
            metrics,
        ));
        tracing::info!(target: "node::audit", operator = %me, "audit loop started");
        true
    }

    /// Starts the validators' swarm ([`swarm`]) when `[p2p] enabled`: transaction gossip
    /// (instead of HTTP forwarding), readings replication into `ingest`, readings fetch from
    /// `store`, and sequence gaps filled from peers. Returns the senders ingest hands accepted
    /// broker frames (for replication) and its sequence gaps (to fetch from peers) to.
    pub async fn start_swarm(
        &self,
        section: &swarm::P2pSection,
        store: crate::ingest::store::Store,
        ingest: mpsc::Sender<crate::ingest::Inbound>,
        metrics: swarm::SwarmMetrics,
    ) -> Result<Option<SwarmLinks>> {
        if !section.enabled {
            return Ok(None);
        }
        let (replicate_tx, replicate_rx) = mpsc::channel(16 * 1024);
        let (gap_tx, gap_rx) = mpsc::channel(1024);
        swarm::start(
            section,
            self.consensus_secret,
            self.core.clone(),
            store,
            ingest,
            swarm::FromIngest {
                replicate: replicate_rx,
                gaps: gap_rx,
            },
            metrics,
        )
        .await
        .map_err(ChainError::Swarm)?;
        Ok(Some(SwarmLinks {
            replicate: replicate_tx,
            gap_fill: gap_tx,
        }))
    }

    /// Starts the oracle service ([`crate::oracle`]) when `[oracle] enabled`: it signs each
    /// committed epoch with the L1 key, serves the signatures, posts in its turn and follows
    /// the anchors on L1. Returns whether it started.
    pub fn start_oracle(
        &self,
        config: &crate::oracle::OracleSection,
    ) -> std::result::Result<bool, crate::oracle::OracleError> {
        if !config.enabled {
            return Ok(false);
        }
        let path = config
            .l1_key_file
            .as_ref()
            .ok_or_else(|| crate::oracle::OracleError::Config("l1_key_file is required".into()))?;
        let key = crate::oracle::load_l1_key(path)?;
        // Fail now on a bad endpoint or a missing contract, not in the background.
        crate::oracle::client(config, key.clone())?;
        let shared = Arc::new(crate::oracle::OracleShared::default());
        let _ = self.core.shared.oracle.set(shared.clone());
        let service = crate::oracle::Service {
            ledger: self.core.clone(),
            operator: self.operator,
            ops: Some(self.ops.clone()),
            config: config.clone(),
            key,
            shared,
        };
        let l1 = service.key.address();
        tokio::spawn(async move {
            if let Err(e) = service.run().await {
                tracing::error!(target: "node::oracle", error = %e, "oracle service stopped");
            }
        });
        tracing::info!(target: "node::oracle", %l1, "oracle service started");
        Ok(true)
    }

    /// Marks verified production in `production` as each epoch commits: every device the
    /// epoch's audits verified gets its window's buckets raised to `verified`, with the proof
    /// digest, and the list is kept for anchoring
    /// ([`crate::production::Production::mark_verified_epoch`]). Idempotent (a status is never
    /// lowered), so at start it rescans from the oldest epoch the ledger still holds audits of
    /// (older ones were handled before). An epoch whose audits the ledger pruned before this
    /// task reached it (a node catching up applies blocks faster than this polls) is read back
    /// from the proofs the node kept from its blocks
    /// ([`crate::production::anchored::audits_from_proofs`]).
    pub fn follow_verified(&self, production: crate::production::Production) {
        /// Epochs looked at per poll.
        const PER_POLL: u64 = 256;
        enum Work {
            Ledger(
                u64,
                (u64, u64),
                Vec<crate::production::anchored::EpochAudit>,
            ),
            Proofs(u64, (u64, u64), groundtruth_ledger::EpochReadings),
        }
        let core = self.core.clone();
        tokio::spawn(async move {
            let mut next: Option<u64> = None;
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                tick.tick().await;
                let work = {
                    let l = core.shared.read();
                    let st = &l.state;
                    let mut at = next.unwrap_or_else(|| st.history_floor());
                    let end = st.epoch().min(at.saturating_add(PER_POLL));
                    let mut work = Vec::new();
                    while at < end {
                        if st.epoch_seal(at).is_none() {
                            break;
                        }
                        if st.epoch_commitment(at).is_none() {
                            // Not committed yet: wait for it before moving past it.
                            break;
                        }
                        if let Some(window) = st.params().epoch_window(at) {
                            match crate::production::anchored::ledger_epoch_audits(st, at) {
                                Some(audited) => work.push(Work::Ledger(at, window, audited)),
                                None => {
                                    if let Some(f) = st.fixed_readings_root(at) {
                                        work.push(Work::Proofs(at, window, f.clone()));
                                    }
                                }
                            }
                        }
                        at += 1;
                    }
                    next = Some(at);
                    work
                };
                if work.is_empty() {
                    continue;
                }
                let p = production.clone();
                let core = core.clone();
                let done = tokio::task::spawn_blocking(move || {
                    for w in work {
                        let (epoch, window, audited) = match w {
                            Work::Ledger(e, w, a) => (e, w, a),
                            Work::Proofs(e, w, fixed) => {
                                let audited = crate::production::anchored::audits_from_proofs(
                                    &fixed,
                                    |batch, digest| {
                                        let key = proof_key(e, batch, digest);
                                        core.shared.proofs.get(key).ok().flatten().map(|v| v.to_vec())
                                    },
                                );
                                tracing::info!(target: "node::chain", epoch = e, devices = audited.len(), "the ledger pruned the epoch's audits before the read model reached it: read back from the kept proofs");
                                (e, w, audited)
                            }
                        };
                        if let Err(e) = p.mark_verified_epoch(epoch, window, &audited) {
                            tracing::warn!(target: "node::chain", epoch, error = %e, "marking verified production failed");
                        }
                    }
                })
                .await;
                if done.is_err() {
                    tracing::warn!(target: "node::chain", "verified-production task failed");
                }
            }
        });
    }

    /// Where ingest sends device equivocation evidence (first frame, second frame).
    pub fn evidence_sender(&self) -> mpsc::Sender<(Vec<u8>, Vec<u8>)> {
        self.evidence.clone()
    }
}

/// Turns ingest's equivocation frames into `SubmitEvidence` bodies.
async fn device_evidence(
    mut rx: mpsc::Receiver<(Vec<u8>, Vec<u8>)>,
    slashes: mpsc::Sender<TxBody>,
) {
    while let Some((first, second)) = rx.recv().await {
        let (Ok(a), Ok(b)) = (
            SignedReading::decode_frame(&first),
            SignedReading::decode_frame(&second),
        ) else {
            tracing::warn!(target: "node::chain", "undecodable equivocation frames from ingest");
            continue;
        };
        tracing::warn!(target: "node::chain", device = %a.reading.device, seq = a.reading.seq, "device equivocation; submitting slashing evidence");
        let body = TxBody::SubmitEvidence(Evidence::DeviceEquivocation { a, b });
        if slashes.send(body).await.is_err() {
            return;
        }
    }
}

impl crate::audit::LedgerView for Core {
    fn with_state<R>(&self, f: impl FnOnce(&State) -> R) -> R {
        f(&self.shared.read().state)
    }

    fn peer_fill(&self) -> Option<crate::audit::fill::PeerFill> {
        self.peer_fill.get().cloned()
    }
}

/// Signs the operator's transactions (slashing evidence, the audit loop's votes, attestations
/// and proofs) with the operator key and submits them, one nonce after the other (a nonce not
/// committed within 30 s is reused).
async fn submit_operator_txs(
    core: Arc<Core>,
    operator: Option<ed25519_dalek::SigningKey>,
    mut rx: mpsc::Receiver<TxBody>,
) {
    let mut next: Option<(u64, Instant)> = None;
    while let Some(body) = rx.recv().await {
        let Some(key) = &operator else {
            tracing::warn!(target: "node::chain", kind = body.name(), "operator transaction not submitted: no operator_key_file configured");
            continue;
        };
        let signer = Address(key.verifying_key().to_bytes());
        let (chain_id, committed, fee) = {
            let pool = core.shared.pool();
            let l = core.shared.read();
            (
                l.state.chain_id().to_string(),
                pool.next_nonce(&l.state, &signer),
                l.state.params().min_fee,
            )
        };
        let kind = body.name();
        let nonce = match next {
            Some((n, at)) if n > committed && at.elapsed() < Duration::from_secs(30) => n,
            _ => committed,
        };
        let stx = Tx {
            signer,
            nonce,
            fee,
            body,
        }
        .sign(&chain_id, key);
        match core.submit(Bytes::from(stx.encode()), true) {
            Ok((hash, _)) => {
                tracing::info!(target: "node::chain", tx = %hex::encode(hash), nonce, kind, "operator transaction submitted");
                next = Some((nonce.saturating_add(1), Instant::now()));
            }
            Err(r) => {
                tracing::warn!(target: "node::chain", kind, reason = r.reason, detail = %r.detail, "operator transaction not admitted")
            }
        }
    }
}

#[cfg(test)]
mod addr_tests {
    use super::parse_addr;

    #[test]
    fn consensus_addresses_as_shipped_parse() {
        assert_eq!(
            parse_addr("/ip4/127.0.0.1/tcp/27000").ok(),
            Some("127.0.0.1:27000".parse().expect("addr"))
        );
        assert_eq!(
            parse_addr("127.0.0.1:27001").ok(),
            Some("127.0.0.1:27001".parse().expect("addr"))
        );
        // configs/validator.toml names its peers; with the hosts replaced by loopback they resolve.
        let text = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/validator.toml"),
        )
        .expect("validator.toml");
        let config: crate::config::NodeConfig = toml::from_str(
            &text
                .replace("validator-2.internal", "localhost")
                .replace("validator-3.internal", "localhost")
                .replace("validator-4.internal", "localhost"),
        )
        .expect("parses");
        for peer in &config.consensus.peers {
            let a = parse_addr(peer).expect("a shipped peer address resolves");
            assert!(a.ip().is_loopback(), "{peer} → {a}");
        }
        assert!(parse_addr(&config.consensus.listen).is_ok());
        assert!(parse_addr("/ip4/127.0.0.1/udp/27000").is_err());
        assert!(parse_addr("/dns4/no-such-host.invalid/tcp/1").is_err());
    }
}
