//! Starting the engine, and the event loop that answers Malachite's requests on behalf of
//! the [`Application`].

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use malachitebft_app_channel::app::config::{
    self as mconfig, NodeConfig, P2pConfig, ValueSyncConfig,
};
use malachitebft_app_channel::app::consensus::{MisbehaviorEvidence, ProposedValue};
use malachitebft_app_channel::app::engine::host::{HeightParams, Next, SyncedValueOutcome};
use malachitebft_app_channel::app::net::Multiaddr;
use malachitebft_app_channel::app::streaming::{StreamContent, StreamId, StreamMessage};
use malachitebft_app_channel::app::types::codec::Codec;
use malachitebft_app_channel::app::types::core::{
    CommitCertificate, ExtendedCommitCertificate, LinearTimeouts, Round, Validity, VoteExtensions,
};
use malachitebft_app_channel::app::types::sync::RawDecidedValue;
use malachitebft_app_channel::app::types::{Keypair, LocallyProposedValue};
use malachitebft_app_channel::{
    AppMsg, ByzantineContext, Channels, ConsensusContext, EngineBuilder, EngineHandle,
    NetworkContext, NetworkIdentity, NetworkMsg, RequestContext, Signer as _, SyncContext,
    WalContext,
};
use malachitebft_engine_byzantine::{ByzantineConfig, Trigger};
use malachitebft_signing_ed25519::{PrivateKey, Signature};

use crate::app::{self, Application, DecidedBlock, Evidence, EvidenceKind, SignedBytes};
use crate::block::{hash_encoded, Block};
use crate::codec::GtCodec;
use crate::config::{Byzantine, ConsensusConfig};
use crate::error::{Error, Result};
use crate::mempool::Mempool;
use crate::signing::{Ed25519Signer, Ed25519Verifier};
use crate::store::Store;
use crate::streaming::{Assembled, PartStreams};
use crate::types::{
    parts_sign_bytes, Address, BlockHash, GtContext, Height, ProposalInit, ProposalPart,
    ValidatorSet,
};

/// Most heights served in one sync response.
const MAX_SYNC_BATCH: u64 = 64;
/// Most block bytes served in one sync response (Malachite refuses responses over 10 MiB; a
/// batch of 64 heights with proof-carrying blocks of up to 1 MiB each went past it, and a
/// validator one height behind could never catch up).
const MAX_SYNC_BYTES: usize = 6 << 20;
/// Most future-height proposals buffered until their height starts.
const MAX_PENDING: usize = 64;
/// Most proposal streams reassembled at once.
const MAX_OPEN_STREAMS: usize = 64;
/// Bytes of block-encoding overhead (version, height, root, count).
const BLOCK_OVERHEAD: usize = 1 + 8 + 32 + 4;

/// What the node has committed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Status {
    /// Last committed height (0 before the first block).
    pub height: u64,
    /// Application state root after it.
    pub state_root: [u8; 32],
}

/// A running consensus node.
pub struct Handle {
    mempool: Mempool,
    status: watch::Receiver<Status>,
    address: [u8; 32],
    engine: EngineHandle,
    app_task: JoinHandle<Result<()>>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("address", &Address(self.address))
            .field("status", &*self.status.borrow())
            .finish()
    }
}

impl Handle {
    /// Queues a transaction for inclusion in a block this node proposes.
    /// Returns `Ok(false)` if it is already pending.
    pub fn submit_tx(&self, tx: impl Into<Bytes>) -> Result<bool> {
        if self.app_task.is_finished() {
            return Err(Error::Stopped);
        }
        self.mempool.submit(tx.into())
    }

    /// Number of transactions waiting in the mempool.
    pub fn mempool_len(&self) -> usize {
        self.mempool.len()
    }

    /// The last committed height and state root.
    pub fn status(&self) -> Status {
        *self.status.borrow()
    }

    /// A receiver notified after every commit.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// This validator's public key (its consensus address).
    pub fn address(&self) -> [u8; 32] {
        self.address
    }

    /// Waits until the node stops; returns why.
    pub async fn wait(self) -> Result<()> {
        match self.app_task.await {
            Ok(r) => r,
            Err(e) => Err(Error::Engine(format!("event loop panicked: {e}"))),
        }
    }

    /// Stops the engine and the event loop.
    pub async fn shutdown(self) {
        self.engine.actor.stop(Some("shutdown".into()));
        self.app_task.abort();
        let _ = self.engine.handle.await;
    }
}

/// Malachite's node configuration, built from ours.
#[derive(Clone, Debug)]
struct EngineConfig {
    moniker: String,
    consensus: mconfig::ConsensusConfig,
    value_sync: ValueSyncConfig,
}

impl NodeConfig for EngineConfig {
    fn moniker(&self) -> &str {
        &self.moniker
    }
    fn consensus(&self) -> &mconfig::ConsensusConfig {
        &self.consensus
    }
    fn consensus_mut(&mut self) -> &mut mconfig::ConsensusConfig {
        &mut self.consensus
    }
    fn value_sync(&self) -> &ValueSyncConfig {
        &self.value_sync
    }
    fn value_sync_mut(&mut self) -> &mut ValueSyncConfig {
        &mut self.value_sync
    }
}

fn tcp_multiaddr(addr: std::net::SocketAddr) -> Result<Multiaddr> {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
        std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
    };
    format!("{ip}/tcp/{}", addr.port())
        .parse()
        .map_err(|e| Error::Config(format!("address {addr}: {e}")))
}

/// Starts a consensus node: replays decided blocks the application has not applied yet,
/// starts Malachite (network, WAL, sync, consensus actors) and the event loop.
///
/// Must be called inside a multi-threaded tokio runtime.
pub async fn run(config: ConsensusConfig, mut app: impl Application) -> Result<Handle> {
    config.validate()?;
    for dir in ["wal", "blocks"] {
        let path = config.home.join(dir);
        std::fs::create_dir_all(&path).map_err(|source| Error::Io { path, source })?;
    }
    let store = Store::open(&config.home.join("blocks"))?;
    let status = replay(&store, &mut app)?;
    info!(target: "consensus::node", height = status.height, "application state replayed");

    let key = PrivateKey::from(config.signing_key);
    let public_key = key.public_key();
    let address = Address(*public_key.as_bytes());
    let signer = Ed25519Signer::new(key.clone());

    // libp2p identity: derived from the signing key, distinct from it, stable across restarts.
    let net_secret = blake3::derive_key(
        "groundtruth consensus libp2p identity v1",
        &config.signing_key,
    );
    let keypair = Keypair::ed25519_from_bytes(net_secret)
        .map_err(|e| Error::Config(format!("network key: {e}")))?;
    let proof = signer
        .sign_validator_proof(
            public_key.as_bytes().to_vec(),
            keypair.public().to_peer_id().to_bytes(),
        )
        .await
        .map_err(|e| Error::Engine(format!("validator proof: {e}")))?;
    let proof_bytes = GtCodec.encode(&proof)?;
    let identity = NetworkIdentity::new_validator(
        config.moniker.clone(),
        keypair,
        address.to_string(),
        proof_bytes,
    );

    let p2p = P2pConfig {
        listen_addr: tcp_multiaddr(config.listen_addr)?,
        persistent_peers: config
            .peers
            .iter()
            .map(|p| tcp_multiaddr(*p))
            .collect::<Result<_>>()?,
        ..P2pConfig::default()
    };
    let engine_config = EngineConfig {
        moniker: config.moniker.clone(),
        consensus: mconfig::ConsensusConfig {
            p2p,
            ..mconfig::ConsensusConfig::default()
        },
        value_sync: ValueSyncConfig {
            enabled: true,
            status_update_interval: config.sync_status_interval,
            request_timeout: config.sync_request_timeout,
            ..ValueSyncConfig::default()
        },
    };

    let consensus_ctx = ConsensusContext::new_validator(
        address,
        Box::new(Ed25519Verifier),
        Box::new(signer.clone()),
    );
    let wal_ctx = WalContext::new(config.home.join("wal").join("consensus.wal"), GtCodec);
    let byzantine = match config.byzantine {
        Some(b) => Some(b),
        None => Byzantine::from_env()?,
    };
    let (channels, engine) = match byzantine {
        None => malachitebft_app_channel::start_engine(
            GtContext,
            engine_config,
            wal_ctx,
            NetworkContext::new(identity, GtCodec),
            consensus_ctx,
            SyncContext::new(GtCodec),
            RequestContext::new(64),
        )
        .await
        .map_err(|e| Error::Engine(e.to_string()))?,
        Some(mode) => {
            warn!(target: "consensus::byzantine", ?mode, "BYZANTINE validator: this node misbehaves on purpose (fault tests only)");
            let byz_config = match mode {
                Byzantine::DoubleVote { from, to } => ByzantineConfig::default()
                    .with_equivocate_votes(Trigger::AtHeights {
                        heights: (from..=to).collect(),
                    }),
            };
            EngineBuilder::new(GtContext, engine_config)
                .with_default_wal(wal_ctx)
                .with_byzantine_network(ByzantineContext {
                    identity,
                    codec: GtCodec,
                    config: byz_config,
                    signer: Box::new(signer.clone()),
                    address,
                    conflicting_value_fn: None,
                    // None: a non-nil vote is doubled by a nil one.
                    conflicting_vote_value_fn: None,
                })
                .await
                .map_err(|e| Error::Engine(e.to_string()))?
                .with_default_sync(SyncContext::new(GtCodec))
                .with_default_consensus(consensus_ctx)
                .with_default_request(RequestContext::new(64))
                .build()
                .await
                .map_err(|e| Error::Engine(e.to_string()))?
        }
    };

    let mempool = Mempool::new(
        config.mempool_max_txs,
        config.mempool_max_bytes,
        config.max_block_bytes.saturating_sub(BLOCK_OVERHEAD + 4),
        app.admission(),
    );
    let (status_tx, status_rx) = watch::channel(status);
    let state = State {
        app,
        store,
        mempool: mempool.clone(),
        signer,
        address,
        height: status.height.saturating_add(1),
        validator_set: None,
        last: status,
        streams: PartStreams::new(
            MAX_OPEN_STREAMS,
            config.max_block_bytes.saturating_add(1024),
        ),
        pending: BTreeMap::new(),
        stream_nonce: 0,
        timeouts: config.timeouts.into(),
        block_time: config.block_time,
        max_block_bytes: config.max_block_bytes,
        part_bytes: config.part_bytes,
        status_tx,
    };
    let app_task = tokio::spawn(event_loop(state, channels));

    Ok(Handle {
        mempool,
        status: status_rx,
        address: address.0,
        engine,
        app_task,
    })
}

/// Applies decided blocks the application has not seen (after a crash, or every start for an
/// in-memory application).
fn replay(store: &Store, app: &mut impl Application) -> Result<Status> {
    let (mut height, mut root) = app.last_committed().unwrap_or((0, [0; 32]));
    let max = store.max_decided_height()?.unwrap_or(0);
    if height > max {
        return Err(Error::Inconsistent(format!(
            "the application is at height {height} but the block store ends at {max}"
        )));
    }
    while height < max {
        let next = height + 1;
        let stored = store.get_decided(next)?.ok_or_else(|| {
            Error::Inconsistent(format!("decided block {next} missing from the store"))
        })?;
        let block = Block::decode(stored.block)?;
        if block.height != next || block.prev_state_root != root {
            return Err(Error::Inconsistent(format!(
                "stored block {next} does not extend the application state"
            )));
        }
        let certificate = app_certificate_ext(&stored.certificate);
        root = app.commit(&DecidedBlock {
            height: next,
            txs: block.txs,
            certificate,
        })?;
        height = next;
    }
    Ok(Status {
        height,
        state_root: root,
    })
}

fn app_certificate(c: &CommitCertificate<GtContext>) -> app::CommitCertificate {
    app::CommitCertificate {
        height: c.height.0,
        round: c.round.as_u32().unwrap_or(0),
        block_hash: c.value_id.0,
        signatures: c
            .commit_signatures
            .iter()
            .map(|s| app::CommitSignature {
                validator: s.address.0,
                signature: s.signature.to_bytes(),
            })
            .collect(),
    }
}

fn app_certificate_ext(c: &ExtendedCommitCertificate<GtContext>) -> app::CommitCertificate {
    app::CommitCertificate {
        height: c.height.0,
        round: c.round.as_u32().unwrap_or(0),
        block_hash: c.value_id.0,
        signatures: c
            .commit_signatures
            .iter()
            .map(|s| app::CommitSignature {
                validator: s.address.0,
                signature: s.signature.to_bytes(),
            })
            .collect(),
    }
}

struct State<A> {
    app: A,
    store: Store,
    mempool: Mempool,
    signer: Ed25519Signer,
    address: Address,
    /// Height consensus is working on.
    height: u64,
    /// Validator set of `height`.
    validator_set: Option<ValidatorSet>,
    /// Last committed height and root.
    last: Status,
    streams: PartStreams,
    /// Complete, not yet validated proposals for future heights.
    pending: BTreeMap<u64, Vec<Assembled>>,
    stream_nonce: u64,
    timeouts: LinearTimeouts,
    block_time: Option<Duration>,
    max_block_bytes: usize,
    part_bytes: usize,
    status_tx: watch::Sender<Status>,
}

type Net = mpsc::Sender<NetworkMsg<GtContext>>;

async fn event_loop<A: Application>(
    mut state: State<A>,
    mut channels: Channels<GtContext>,
) -> Result<()> {
    let net = channels.network.clone();
    while let Some(msg) = channels.consensus.recv().await {
        if let Err(e) = state.handle(msg, &net).await {
            error!(target: "consensus::app", error = %e, "consensus event loop stopped");
            return Err(e);
        }
    }
    Err(Error::Engine("consensus engine stopped".into()))
}

impl<A: Application> State<A> {
    fn height_params(&mut self, height: u64) -> Result<HeightParams<GtContext>> {
        let set = self.load_validator_set(height)?;
        Ok(HeightParams::new(set, self.timeouts, self.block_time))
    }

    fn load_validator_set(&mut self, height: u64) -> Result<ValidatorSet> {
        let members = self
            .app
            .validator_set(height)
            .into_iter()
            .map(|v| (v.public_key, v.voting_power));
        let set = ValidatorSet::new(members).ok_or(Error::EmptyValidatorSet(height))?;
        self.height = height;
        self.validator_set = Some(set.clone());
        Ok(set)
    }

    async fn handle(&mut self, msg: AppMsg<GtContext>, net: &Net) -> Result<()> {
        match msg {
            AppMsg::ConsensusReady { reply } => {
                let start = self.last.height.saturating_add(1);
                let params = self.height_params(start)?;
                info!(target: "consensus::app", height = start, validators = params.validator_set.validators().len(), "consensus ready");
                let _ = reply.send((Height(start), params));
            }

            AppMsg::StartedRound {
                height,
                round,
                proposer,
                role,
                reply_value,
            } => {
                debug!(target: "consensus::app", %height, %round, %proposer, ?role, "started round");
                if height.0 != self.height || self.validator_set.is_none() {
                    self.load_validator_set(height.0)?;
                }
                // Validate proposals that arrived before their height started.
                let mut values = Vec::new();
                self.pending = self.pending.split_off(&height.0);
                if let Some(list) = self.pending.remove(&height.0) {
                    for asm in list {
                        if let Some(v) = self.accept_proposal(asm)? {
                            values.push(v);
                        }
                    }
                }
                for v in self.store.get_undecided(height.0, round)? {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
                let _ = reply_value.send(values);
            }

            AppMsg::GetValue {
                height,
                round,
                timeout: _,
                reply,
            } => {
                let own = self
                    .store
                    .get_undecided(height.0, round)?
                    .into_iter()
                    .find(|v| v.proposer == self.address);
                let (hash, parts) = match own {
                    Some(v) => {
                        let parts = self.store.get_parts(height.0, &v.value)?.ok_or_else(|| {
                            Error::Inconsistent(format!("own proposal {} has no parts", v.value))
                        })?;
                        info!(target: "consensus::app", %height, %round, block = %v.value, "re-proposing the block built before");
                        (v.value, parts)
                    }
                    None => self.build_proposal(height.0, round)?,
                };
                let _ = reply.send(LocallyProposedValue::new(height, round, hash));
                self.publish(height.0, round, &parts, net).await?;
            }

            AppMsg::ReceivedProposalPart {
                from,
                published_by,
                part,
                reply,
            } => {
                let publisher = published_by.unwrap_or(from);
                let mut value = None;
                if let Some(asm) = self.streams.insert(publisher, part) {
                    let h = asm.init.height.0;
                    if h == self.height {
                        value = self.accept_proposal(asm)?;
                    } else if h > self.height && h <= self.height.saturating_add(2) {
                        let total: usize = self.pending.values().map(Vec::len).sum();
                        if total < MAX_PENDING {
                            self.pending.entry(h).or_default().push(asm);
                        }
                    }
                }
                let _ = reply.send(value);
            }

            AppMsg::Decided {
                certificate,
                extensions,
                reply,
            } => {
                self.store_decided(certificate, extensions)?;
                let _ = reply.send(());
            }

            AppMsg::Finalized {
                certificate,
                extensions,
                evidence,
                reply,
            } => {
                let height = certificate.height.0;
                self.report_evidence(&evidence);
                let next = match self.finalize(certificate, extensions) {
                    Ok(()) => Next::Start(Height(height + 1), self.height_params(height + 1)?),
                    Err(e) => {
                        error!(target: "consensus::app", height, error = %e, "cannot commit the decided block, restarting the height");
                        Next::Restart(Height(height), self.height_params(height)?)
                    }
                };
                let _ = reply.send(next);
            }

            AppMsg::GetHistoryMinHeight { reply } => {
                let min = self.store.min_decided_height()?.unwrap_or(0);
                let _ = reply.send(Height(min));
            }

            AppMsg::GetDecidedValues { range, reply } => {
                let start = range.start().0;
                let end = range.end().0.min(start.saturating_add(MAX_SYNC_BATCH - 1));
                let mut values = Vec::new();
                let mut bytes = 0usize;
                for h in start..=end {
                    match self.store.get_decided(h)? {
                        Some(d) => {
                            bytes = bytes.saturating_add(d.block.len());
                            // Always at least one height, so that any block can be synced.
                            if !values.is_empty() && bytes > MAX_SYNC_BYTES {
                                break;
                            }
                            values.push(RawDecidedValue::new(d.block, d.certificate));
                        }
                        None => break,
                    }
                }
                debug!(target: "consensus::sync", start, end, served = values.len(), "serving decided blocks");
                let _ = reply.send(values);
            }

            AppMsg::ProcessSyncedValue {
                height,
                round,
                proposer,
                value_bytes,
                reply,
            } => {
                let outcome = self.synced_value(height, round, proposer, value_bytes)?;
                let _ = reply.send(outcome);
            }

            AppMsg::RestreamProposal {
                height,
                round,
                value_id,
                ..
            } => {
                if let Some(parts) = self.store.get_parts(height.0, &value_id)? {
                    debug!(target: "consensus::app", %height, %round, block = %value_id, "restreaming proposal");
                    self.publish(height.0, round, &parts, net).await?;
                }
            }

            AppMsg::ExtendVote { reply, .. } => {
                let _ = reply.send(None);
            }

            AppMsg::VerifyVoteExtensions {
                extensions, reply, ..
            } => {
                // Vote extensions are disabled; accept whatever was signed.
                let _ = reply.send(extensions.into_iter().map(|(a, _)| (a, Ok(()))).collect());
            }
        }
        Ok(())
    }

    /// Builds, signs and stores (durably) a new block for `(height, round)`.
    fn build_proposal(
        &mut self,
        height: u64,
        round: Round,
    ) -> Result<(BlockHash, Vec<ProposalPart>)> {
        let budget = self.max_block_bytes.saturating_sub(BLOCK_OVERHEAD);
        let candidates = self.mempool.candidates(budget);
        let mut txs = self.app.prepare_block(height, candidates);
        // The application may not grow the block past the limit.
        let mut used = 0usize;
        txs.retain(|tx| {
            used = used.saturating_add(tx.len() + 4);
            used <= budget
        });
        let block = Block {
            height,
            prev_state_root: self.last.state_root,
            txs,
        };
        let encoded = block.encode();
        let hash = hash_encoded(&encoded);
        let init = ProposalInit {
            height: Height(height),
            round,
            pol_round: Round::Nil,
            proposer: self.address,
        };
        let signature = self.signer.sign(&parts_sign_bytes(&init, &hash));
        let mut parts = Vec::with_capacity(2 + encoded.len() / self.part_bytes + 1);
        parts.push(ProposalPart::Init(init));
        for chunk in encoded.chunks(self.part_bytes) {
            parts.push(ProposalPart::Data(encoded.slice_ref(chunk)));
        }
        parts.push(ProposalPart::Fin(signature));

        self.store.put_block(height, &hash, &encoded)?;
        self.store.put_parts(height, &hash, &parts)?;
        self.store.put_undecided(
            &ProposedValue {
                height: Height(height),
                round,
                valid_round: Round::Nil,
                proposer: self.address,
                value: hash,
                validity: Validity::Valid,
            },
            true,
        )?;
        info!(target: "consensus::app", height, %round, block = %hash, txs = block.txs.len(), bytes = encoded.len(), "proposing");
        Ok((hash, parts))
    }

    async fn publish(
        &mut self,
        height: u64,
        round: Round,
        parts: &[ProposalPart],
        net: &Net,
    ) -> Result<()> {
        self.stream_nonce = self.stream_nonce.wrapping_add(1);
        let mut id = Vec::with_capacity(20);
        id.extend_from_slice(&height.to_be_bytes());
        id.extend_from_slice(&round.as_u32().unwrap_or(u32::MAX).to_be_bytes());
        id.extend_from_slice(&self.stream_nonce.to_be_bytes());
        let stream_id = StreamId::new(Bytes::from(id));
        let mut seq = 0u64;
        for part in parts {
            let msg = StreamMessage::new(stream_id.clone(), seq, StreamContent::Data(part.clone()));
            net.send(NetworkMsg::PublishProposalPart(msg))
                .await
                .map_err(|_| Error::Engine("network actor stopped".into()))?;
            seq += 1;
        }
        net.send(NetworkMsg::PublishProposalPart(StreamMessage::new(
            stream_id,
            seq,
            StreamContent::Fin,
        )))
        .await
        .map_err(|_| Error::Engine("network actor stopped".into()))?;
        Ok(())
    }

    /// Checks a complete proposal for the current height: proposer, signature, block.
    /// Returns `None` for proposals that are not authentic (dropped), and a value with
    /// `Validity::Invalid` for authentic proposals of unacceptable blocks (voted nil).
    fn accept_proposal(&mut self, asm: Assembled) -> Result<Option<ProposedValue<GtContext>>> {
        let Some(set) = self.validator_set.as_ref() else {
            return Ok(None);
        };
        let init = &asm.init;
        let height = init.height.0;
        let expected = set.proposer(init.height, init.round);
        if expected.address != init.proposer {
            warn!(target: "consensus::app", height, round = %init.round, proposer = %init.proposer, "proposal from a validator that is not the round's proposer");
            return Ok(None);
        }
        let total: usize = asm.data.iter().map(Bytes::len).sum();
        let mut encoded = Vec::with_capacity(total);
        for d in &asm.data {
            encoded.extend_from_slice(d);
        }
        let encoded = Bytes::from(encoded);
        let hash = hash_encoded(&encoded);
        if expected
            .public_key
            .verify(&parts_sign_bytes(init, &hash), &asm.signature)
            .is_err()
        {
            warn!(target: "consensus::app", height, proposer = %init.proposer, "proposal with a bad signature");
            return Ok(None);
        }
        let validity = match Block::decode(encoded.clone()) {
            Ok(block)
                if block.height == height && block.prev_state_root == self.last.state_root =>
            {
                Validity::from_bool(self.app.validate_block(height, &block.txs))
            }
            Ok(_) => {
                warn!(target: "consensus::app", height, "proposed block does not extend our state");
                Validity::Invalid
            }
            Err(e) => {
                warn!(target: "consensus::app", height, error = %e, "proposed block does not decode");
                Validity::Invalid
            }
        };
        let value = ProposedValue {
            height: init.height,
            round: init.round,
            valid_round: init.pol_round,
            proposer: init.proposer,
            value: hash,
            validity,
        };
        self.store.put_block(height, &hash, &encoded)?;
        self.store.put_parts(height, &hash, &asm.parts)?;
        // Durable before the engine hears of it: its WAL remembers the proposal, and a node
        // killed now must still hold the block when it replays a decision for it.
        self.store.put_undecided(&value, true)?;
        debug!(target: "consensus::app", height, round = %init.round, block = %hash, ?validity, "received proposal");
        Ok(Some(value))
    }

    fn store_decided(
        &mut self,
        certificate: CommitCertificate<GtContext>,
        extensions: VoteExtensions<GtContext>,
    ) -> Result<()> {
        let height = certificate.height.0;
        let hash = certificate.value_id;
        let block = match self.store.get_block(height, &hash)? {
            Some(b) => b,
            None => match self.store.get_decided(height)? {
                Some(d) if d.certificate.value_id == hash => d.block,
                _ => {
                    return Err(Error::Inconsistent(format!(
                        "decided block {hash} at height {height} is unknown"
                    )))
                }
            },
        };
        let ext = ExtendedCommitCertificate::from_commit_certificate_and_extensions(
            certificate,
            extensions,
        );
        self.store.put_decided(&ext, &block)
    }

    fn finalize(
        &mut self,
        certificate: CommitCertificate<GtContext>,
        extensions: VoteExtensions<GtContext>,
    ) -> Result<()> {
        let height = certificate.height.0;
        let app_cert = app_certificate(&certificate);
        // Store again: the finalized certificate may carry more signatures.
        self.store_decided(certificate, extensions)?;
        if height <= self.last.height {
            return Ok(());
        }
        if height != self.last.height + 1 {
            return Err(Error::Inconsistent(format!(
                "finalized height {height} does not follow {}",
                self.last.height
            )));
        }
        let stored = self
            .store
            .get_decided(height)?
            .ok_or_else(|| Error::Inconsistent(format!("decided block {height} vanished")))?;
        let block = Block::decode(stored.block)?;
        if block.prev_state_root != self.last.state_root {
            error!(target: "consensus::app", height, "decided block was built on a different state root than ours");
        }
        let decided = DecidedBlock {
            height,
            txs: block.txs,
            certificate: app_cert,
        };
        let root = self.app.commit(&decided)?;
        self.mempool.remove_committed(&decided.txs);
        self.last = Status {
            height,
            state_root: root,
        };
        self.store.prune_undecided(height)?;
        let _ = self.status_tx.send(self.last);
        info!(target: "consensus::app", height, round = decided.certificate.round, txs = decided.txs.len(), root = %BlockHash(root), "committed");
        Ok(())
    }

    fn synced_value(
        &mut self,
        height: Height,
        round: Round,
        proposer: Address,
        value_bytes: Bytes,
    ) -> Result<SyncedValueOutcome<GtContext>> {
        let hash = hash_encoded(&value_bytes);
        let block = match Block::decode(value_bytes.clone()) {
            Ok(b) if b.height == height.0 => b,
            _ => {
                warn!(target: "consensus::sync", %height, "synced block does not decode");
                return Ok(SyncedValueOutcome::PeerFault);
            }
        };
        if block.prev_state_root != self.last.state_root {
            error!(target: "consensus::sync", %height, "synced block was built on a different state root than ours");
        }
        let value = ProposedValue {
            height,
            round,
            valid_round: Round::Nil,
            proposer,
            value: hash,
            // The engine checks the commit certificate for this hash; a certified block is
            // the chain's block whatever this node thinks of it.
            validity: Validity::Valid,
        };
        self.store.put_block(height.0, &hash, &value_bytes)?;
        self.store.put_undecided(&value, true)?;
        info!(target: "consensus::sync", %height, block = %hash, "synced block");
        Ok(SyncedValueOutcome::Verdict(value))
    }

    fn report_evidence(&mut self, evidence: &MisbehaviorEvidence<GtContext>) {
        if evidence.is_empty() {
            return;
        }
        let Some(set) = self.validator_set.clone() else {
            return;
        };
        for v in set.validators() {
            for (a, b) in evidence.votes.get(&v.address).into_iter().flatten() {
                let ev = Evidence {
                    kind: EvidenceKind::DoubleVote,
                    validator: v.address.0,
                    height: a.message.height.0,
                    round: a.message.round.as_u32().unwrap_or(0),
                    first: signed_bytes(a.message.to_sign_bytes(), &a.signature),
                    second: signed_bytes(b.message.to_sign_bytes(), &b.signature),
                };
                warn!(target: "consensus::evidence", validator = %v.address, height = ev.height, "double vote");
                self.app.on_misbehavior(ev);
            }
            for (a, b) in evidence.proposals.get(&v.address).into_iter().flatten() {
                let ev = Evidence {
                    kind: EvidenceKind::DoubleProposal,
                    validator: v.address.0,
                    height: a.message.height.0,
                    round: a.message.round.as_u32().unwrap_or(0),
                    first: signed_bytes(a.message.to_sign_bytes(), &a.signature),
                    second: signed_bytes(b.message.to_sign_bytes(), &b.signature),
                };
                warn!(target: "consensus::evidence", validator = %v.address, height = ev.height, "double proposal");
                self.app.on_misbehavior(ev);
            }
        }
    }
}

fn signed_bytes(message: Vec<u8>, signature: &Signature) -> SignedBytes {
    SignedBytes {
        message,
        signature: signature.to_bytes(),
    }
}
