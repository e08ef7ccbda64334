//! The agent's run loop: register, serve the provider network, prove each epoch, heartbeat.

use std::collections::BTreeSet;
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use groundtruth_device_sdk::{DeviceId, DeviceKey};
use groundtruth_ledger::{possession_sign_bytes, DeviceKind, TxBody};
use groundtruth_p2p::{
    Frame, PeerId, ProviderNet, ProviderRefusal, ProviderRequest, ProviderResponse, ProviderService,
};
use groundtruth_proofs::freivalds;
use groundtruth_proofs::{Challenge, SecurityLevel};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{Fault, ProviderConfig, ProviderKind};
use crate::error::{ProviderError, Result};
use crate::ledger::Ledger;
use crate::store::ChunkStore;

const TARGET: &str = "provider";

/// What the agent needs from the chain's genesis parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainParams {
    /// `storage_challenge_k`.
    pub storage_challenge_k: u32,
    /// `storage_deadline_epochs`.
    pub storage_deadline_epochs: u64,
}

/// The computed answer to a GPU challenge: `A·B` for the matrices `seed` derives, encoded
/// (with one element off when `wrong`).
pub fn gpu_product(seed: &[u8; 32], n: u32, wrong: bool) -> Result<Vec<u8>> {
    let (a, b) = freivalds::challenge_matrices(seed, n);
    let c = freivalds::multiply(&a, &b).map_err(|e| ProviderError::Gpu(e.to_string()))?;
    if !wrong {
        return Ok(c.encode());
    }
    let mut data = c.data().to_vec();
    if let Some(x) = data.first_mut() {
        *x = freivalds::add(*x, 1);
    }
    let bad = freivalds::Matrix::new(n, data).map_err(|e| ProviderError::Gpu(e.to_string()))?;
    Ok(bad.encode())
}

/// What the agent serves on the provider network.
struct Service {
    kind: ProviderKind,
    store: Option<Arc<ChunkStore>>,
    fault: Fault,
    /// Milliseconds spent computing GPU challenges (reported in heartbeats).
    gpu_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl ProviderService for Service {
    fn serve(&self, peer: PeerId, request: ProviderRequest) -> Option<ProviderResponse> {
        match (request, self.kind) {
            (ProviderRequest::FetchChunk { index }, ProviderKind::Storage) => {
                match &self.fault {
                    Fault::NeverServe => {
                        debug!(target: TARGET, %peer, index, "not serving (fault: never_serve)");
                        return None;
                    }
                    Fault::ServeSlowly { delay } => std::thread::sleep(*delay),
                    _ => {}
                }
                let store = self.store.as_ref()?;
                match store.opening(index) {
                    Ok(o) => Some(ProviderResponse::Chunk {
                        data: Frame(o.chunk),
                        path: o.path,
                    }),
                    Err(_) => Some(ProviderResponse::Refused(ProviderRefusal::NoSuchChunk)),
                }
            }
            (
                ProviderRequest::GpuChallenge {
                    epoch,
                    seed,
                    nonce,
                    n,
                },
                ProviderKind::Gpu,
            ) => {
                let seed = freivalds::member_seed(&seed, &nonce);
                let started = Instant::now();
                if let Fault::GpuSlow { delay } = &self.fault {
                    std::thread::sleep(*delay);
                }
                let wrong = matches!(self.fault, Fault::GpuWrongProduct);
                match gpu_product(&seed, n, wrong) {
                    Ok(m) => {
                        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
                        self.gpu_ms.fetch_add(ms, Ordering::Relaxed);
                        info!(target: TARGET, %peer, epoch, n, ms, "answered a GPU challenge");
                        Some(ProviderResponse::Product { matrix: Frame(m) })
                    }
                    Err(e) => {
                        warn!(target: TARGET, error = %e, "GPU challenge failed");
                        None
                    }
                }
            }
            _ => Some(ProviderResponse::Refused(ProviderRefusal::Unsupported)),
        }
    }
}

/// Writes pseudo-random data (ChaCha20 from `seed`) to `path`.
pub fn create_data(path: &std::path::Path, bytes: u64, seed: u64) -> Result<()> {
    use rand::RngCore;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut left = bytes;
    let mut buf = vec![0u8; 64 * 1024];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        let part = buf
            .get_mut(..n)
            .ok_or(ProviderError::Data("buffer".into()))?;
        rng.fill_bytes(part);
        f.write_all(part)?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

/// The chunks a `DeleteChunks` fault loses: `⌈fraction · num_chunks⌉` distinct indices drawn
/// with `seed`.
pub fn lost_chunks(num_chunks: u64, fraction: f64, seed: u64) -> Vec<u64> {
    let want = ((num_chunks as f64) * fraction).ceil() as u64;
    let mut all: Vec<u64> = (0..num_chunks).collect();
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    all.shuffle(&mut rng);
    all.truncate(usize::try_from(want.min(num_chunks)).unwrap_or(0));
    all.sort_unstable();
    all
}

/// Zeroes chunks of a single data file (the fault's "deletion").
fn zero_chunks(path: &std::path::Path, chunks: &[u64]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let len = f.metadata()?.len();
    let size = groundtruth_proofs::por::CHUNK_SIZE as u64;
    for &i in chunks {
        let start = i.saturating_mul(size);
        if start >= len {
            continue;
        }
        let n = usize::try_from(size.min(len - start)).unwrap_or(0);
        f.seek(SeekFrom::Start(start))?;
        f.write_all(&vec![0u8; n])?;
    }
    f.sync_all()?;
    Ok(())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProviderError::Config(format!("worker task failed: {e}")))?
}

/// Registration: provider (if needed), device (if needed), then the data commitment or the
/// GPU spec. Storage commitments are made once; a second `CommitStorage` is refused as
/// `storage_committed`, which is fine.
fn register(
    ledger: &Ledger,
    config: &ProviderConfig,
    device_key: &SigningKey,
    store: Option<&ChunkStore>,
) -> Result<()> {
    let device = DeviceId(device_key.verifying_key().to_bytes());
    let data_root = store.map(|s| s.commitment().root).unwrap_or([0; 32]);
    if !ledger.is_provider()? {
        info!(target: TARGET, stake = config.stake, "registering the provider");
        ledger.send(
            "register_provider",
            TxBody::RegisterProvider {
                stake: config.stake,
                data_root,
            },
        )?;
    }
    if !ledger.device_registered(&device.0)? {
        let (kind, capacity) = match (config.kind, store, &config.gpu) {
            (ProviderKind::Storage, Some(s), _) => (DeviceKind::Storage, s.commitment().data_len),
            (ProviderKind::Gpu, _, Some(g)) => (DeviceKind::Gpu, u64::from(g.count)),
            _ => {
                return Err(ProviderError::Config(
                    "no [storage] or [gpu] section".into(),
                ))
            }
        };
        let chain_id = ledger.chain_id()?;
        let possession = device_key
            .sign(&possession_sign_bytes(&chain_id, &ledger.owner(), &device))
            .to_bytes();
        info!(target: TARGET, device = %device, ?kind, capacity, "registering the device");
        ledger.send(
            "register_device",
            TxBody::RegisterDevice {
                device,
                kind,
                capacity,
                region: config.region.clone(),
                possession,
            },
        )?;
    }
    match (config.kind, store, &config.gpu) {
        (ProviderKind::Storage, Some(s), _) => {
            let c = s.commitment();
            info!(target: TARGET, root = %hex::encode(c.root), depth = c.depth, chunks = c.num_chunks, "committing the data");
            match ledger.send(
                "commit_storage",
                TxBody::CommitStorage {
                    device,
                    root: c.root,
                    depth: c.depth,
                    num_chunks: c.num_chunks,
                },
            ) {
                Err(ProviderError::Rejected { reason, .. }) if reason == "storage_committed" => {
                    info!(target: TARGET, "data already committed");
                }
                other => other?,
            }
        }
        (ProviderKind::Gpu, _, Some(g)) => {
            info!(target: TARGET, model = %g.model, count = g.count, claimed_mac_per_s = g.claimed_mac_per_s, "registering the GPU spec");
            ledger.send(
                "register_gpu_spec",
                TxBody::RegisterGpuSpec {
                    device,
                    model: g.model.clone(),
                    count: g.count,
                    claimed_mac_per_s: g.claimed_mac_per_s,
                },
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// Proves `epoch`'s challenge from the store and submits it. `Ok(true)`: done with the epoch
/// (applied, or refused for good); `Ok(false)`: try again later.
fn prove_epoch(
    ledger: &Ledger,
    store: &ChunkStore,
    device: &DeviceId,
    epoch: u64,
    k: u32,
) -> Result<bool> {
    let Some(beacon) = ledger.beacon(epoch)? else {
        return Ok(false);
    };
    let c = store.commitment();
    let challenge = Challenge {
        root: c.root,
        depth: c.depth,
        num_chunks: c.num_chunks,
        seed: groundtruth_ledger::storage::storage_seed(&beacon, epoch, device),
        k,
    };
    let started = Instant::now();
    let response = store.respond(&challenge)?;
    let envelope = match groundtruth_proofs::prove_retrievability(
        &challenge,
        &response,
        SecurityLevel::default(),
    ) {
        Ok(e) => e,
        Err(e) => {
            // The data no longer opens to the committed root (lost chunks): nothing valid
            // can be sent; the ledger records the missed deadline.
            warn!(target: TARGET, epoch, error = %e, "cannot prove this epoch's challenge");
            return Ok(true);
        }
    };
    let proof = envelope.to_bytes()?;
    let prove_ms = started.elapsed().as_millis();
    match ledger.send(
        "submit_storage_proof",
        TxBody::SubmitStorageProof {
            epoch,
            device: *device,
            proof,
        },
    ) {
        Ok(()) => {
            info!(target: TARGET, epoch, prove_ms, "storage proof accepted");
            Ok(true)
        }
        Err(ProviderError::Rejected { reason, .. }) => {
            warn!(target: TARGET, epoch, %reason, "storage proof refused");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Runs the agent until `stop` turns true. The caller has validated `config` and read
/// `params` from the chain's genesis.
pub async fn run(
    config: ProviderConfig,
    params: ChainParams,
    stop: watch::Receiver<bool>,
) -> Result<()> {
    config.validate()?;
    let owner = {
        let k = groundtruth_device_sdk::keys::load(&config.owner_key_file)?;
        SigningKey::from_bytes(&k.seed())
    };
    let device_key: DeviceKey =
        groundtruth_device_sdk::keys::load_or_generate(&config.device_key_file)?;
    let device_seed = device_key.seed();
    let signing = SigningKey::from_bytes(&device_seed);
    let device = DeviceId(signing.verifying_key().to_bytes());
    info!(target: TARGET, device = %device, kind = ?config.kind, "provider agent starting");

    let store = match (&config.kind, &config.storage) {
        (ProviderKind::Storage, Some(s)) => {
            let s = s.clone();
            let store = blocking(move || {
                if !s.data.exists() {
                    if let Some(bytes) = s.create_bytes {
                        create_data(&s.data, bytes, s.create_seed)?;
                    }
                }
                let bar = groundtruth_proofs::por::progress_bar();
                let store = ChunkStore::open(
                    &s.data,
                    s.depth,
                    Some(&|done, total| {
                        bar.set_length(total);
                        bar.set_position(done);
                    }),
                )?;
                bar.finish_and_clear();
                Ok(store)
            })
            .await?;
            let c = store.commitment();
            info!(target: TARGET, root = %hex::encode(c.root), depth = c.depth, chunks = c.num_chunks, bytes = c.data_len, "data committed locally");
            Some(Arc::new(store))
        }
        _ => None,
    };

    let ledger = Ledger::new(&config.node, owner, config.fee)?;
    {
        let (l, c, k, s) = (
            ledger.clone(),
            config.clone(),
            signing.clone(),
            store.clone(),
        );
        // Registration retries until the node answers (it may still be starting).
        let mut tries = 0u32;
        loop {
            let (l, c, k, s) = (l.clone(), c.clone(), k.clone(), s.clone());
            match blocking(move || register(&l, &c, &k, s.as_deref())).await {
                Ok(()) => break,
                Err(e @ ProviderError::Rejected { .. }) => return Err(e),
                Err(e) if tries < 60 => {
                    tries += 1;
                    debug!(target: TARGET, error = %e, "registration failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
    // Epochs from the one current at commitment on are challenged (an earlier epoch is
    // refused as not challenged, harmlessly).
    let since = {
        let l = ledger.clone();
        blocking(move || l.status()).await?.epoch
    };
    info!(target: TARGET, since, "registered");

    // The provider network: serve only the current validator set.
    let (allow_tx, allow_rx) = watch::channel(Default::default());
    let gpu_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let service = Arc::new(Service {
        kind: config.kind,
        store: store.clone(),
        fault: config.fault.clone(),
        gpu_ms: gpu_ms.clone(),
    });
    let net = ProviderNet::provider(config.net.clone(), device_seed, allow_rx, service).await?;
    info!(target: TARGET, peer = %net.local_peer_id(), dial = ?config.net.dial, "provider network started");

    let heartbeat = match &config.heartbeat {
        Some(h) => Some(start_heartbeats(
            h,
            DeviceKey::from_seed(&device_seed),
            &config,
            store.as_deref(),
            gpu_ms,
        )?),
        None => None,
    };

    let deleted = AtomicBool::new(false);
    let mut done: BTreeSet<u64> = BTreeSet::new();
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_allow = Instant::now() - Duration::from_secs(3600);
    let mut stop = stop;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            break;
        }
        if last_allow.elapsed() >= Duration::from_secs(5) {
            let l = ledger.clone();
            match blocking(move || l.validator_peers()).await {
                Ok(set) => {
                    last_allow = Instant::now();
                    allow_tx.send_if_modified(|cur| {
                        let changed = *cur != set;
                        *cur = set;
                        changed
                    });
                }
                Err(e) => debug!(target: TARGET, error = %e, "cannot read the validator set"),
            }
        }
        let Some(store) = &store else { continue };
        let l = ledger.clone();
        let current = match blocking(move || l.status()).await {
            Ok(s) => s.epoch,
            Err(e) => {
                debug!(target: TARGET, error = %e, "node unreachable");
                continue;
            }
        };
        if let Fault::DeleteChunks {
            fraction,
            from_epoch,
            seed,
        } = config.fault
        {
            if current >= from_epoch && !deleted.swap(true, Ordering::Relaxed) {
                let lost = lost_chunks(store.num_chunks(), fraction, seed);
                if let Some(s) = &config.storage {
                    let (path, lost2) = (s.data.clone(), lost.clone());
                    blocking(move || zero_chunks(&path, &lost2)).await?;
                }
                warn!(target: TARGET, epoch = current, lost = lost.len(), of = store.num_chunks(), "fault: chunks deleted");
            }
        }
        for epoch in since..current {
            if done.contains(&epoch)
                || current > epoch.saturating_add(params.storage_deadline_epochs)
            {
                continue;
            }
            let (l, s, k) = (ledger.clone(), store.clone(), params.storage_challenge_k);
            match blocking(move || prove_epoch(&l, &s, &device, epoch, k)).await {
                Ok(true) => {
                    done.insert(epoch);
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(target: TARGET, epoch, error = %e, "storage proof not sent; retrying")
                }
            }
        }
        // Forget epochs past every deadline.
        let floor = current.saturating_sub(params.storage_deadline_epochs.saturating_add(1));
        done = done.split_off(&floor);
    }
    if let Some(h) = heartbeat {
        h.abort();
    }
    net.shutdown().await;
    info!(target: TARGET, "provider agent stopped");
    Ok(())
}

fn start_heartbeats(
    h: &crate::config::HeartbeatSection,
    key: DeviceKey,
    config: &ProviderConfig,
    store: Option<&ChunkStore>,
    gpu_ms: Arc<std::sync::atomic::AtomicU64>,
) -> Result<tokio::task::JoinHandle<()>> {
    use groundtruth_device_sdk::{GpuReading, ReadingBody, StorageHeartbeat};
    let (host, port) = h
        .broker
        .rsplit_once(':')
        .and_then(|(h, p)| p.parse::<u16>().ok().map(|p| (h.to_string(), p)))
        .ok_or_else(|| {
            ProviderError::Config(format!(
                "heartbeat broker {:?}: expected host:port",
                h.broker
            ))
        })?;
    let publisher = groundtruth_device_sdk::Publisher::start(
        key,
        groundtruth_device_sdk::PublisherConfig::new(host, port, h.queue_dir.clone()),
    )?;
    let interval = h.interval;
    let storage = store.map(|s| (s.commitment().root, s.commitment().data_len));
    let gpus = config.gpu.as_ref().map(|g| g.count).unwrap_or(0);
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            let now_ms = u64::try_from(now.as_millis()).unwrap_or(u64::MAX);
            let body = match storage {
                Some((data_root, capacity_bytes)) => ReadingBody::Storage(StorageHeartbeat {
                    data_root,
                    capacity_bytes,
                }),
                None => {
                    let len = u32::try_from(interval.as_secs().max(1)).unwrap_or(u32::MAX);
                    let used = gpu_ms.swap(0, Ordering::Relaxed);
                    let cap = u64::from(len)
                        .saturating_mul(1000)
                        .saturating_mul(u64::from(gpus.max(1)));
                    ReadingBody::Gpu(GpuReading {
                        interval_start_s: now.as_secs().saturating_sub(u64::from(len)),
                        interval_len_s: len,
                        gpu_ms: used.min(cap),
                        utilisation_bp: u16::try_from(
                            used.min(cap).saturating_mul(10_000) / cap.max(1),
                        )
                        .unwrap_or(10_000),
                        energy_wh: 0,
                    })
                }
            };
            if let Err(e) = publisher.publish(now_ms, body) {
                debug!(target: TARGET, error = %e, "heartbeat not queued");
            }
        }
    }))
}
