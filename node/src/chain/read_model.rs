//! The node's implementation of [`groundtruth_api::ReadModel`]: ledger views copied out of the
//! committed state, admission through [`Core::submit`], liveness and readiness from the ingest
//! committer's heartbeat and from consensus progress (last decided height and when).
//!
//! What it must not do: hold the ledger lock longer than a copy, or decide anything the ledger
//! decides (admission is `Core::submit`, i.e. `check_tx`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use groundtruth_api::{
    AccountRewardsView, AccountValidatorView, AccountView, ApiConfig, BlockTxView, BlockView,
    CheckView, DeviceStatusView, DeviceView, EpochRewardView, HealthView, Hex32, OffenderView,
    Origin, ProviderView, ReadError, ReadModel, Rejection, SetMemberView, SlashView, StatusView,
    Submitted, TxOutcomeView, ValidatorStatusView, ValidatorView, ValidatorsView,
    ACCOUNT_RECENT_REWARDS,
};
use groundtruth_ledger::{
    tx::MAX_TX_LEN, Address, DeviceId, DeviceStatus, Offender, ValidatorStatus,
};

use super::{Chain, Core, Rejected};
use crate::config::NodeConfig;
use crate::ingest::registry::{GenesisDevices, SharedRegistry};
use crate::metrics::Heartbeat;
use crate::production::{
    evidence_view, Page as ProductionPage, Production, ProductionError, RegionResolver,
};
use groundtruth_api::{DevicesPage, SeriesPage, SeriesPoint, SeriesRequest};

/// How stale a signal may be before `/healthz` or `/readyz` fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthBounds {
    /// `/healthz` fails when the ingest committer has not looped for this long (it loops at
    /// least every 500 ms when idle). Also the start-up grace before its first beat.
    pub ingest_stall: Duration,
    /// `/healthz` fails when consensus has decided nothing for this long.
    pub consensus_stall: Duration,
    /// `/readyz` fails unless a block was decided within this long (since this node started).
    pub ready_block_age: Duration,
}

impl HealthBounds {
    /// Bounds for a chain producing a block every `block_time`: stall after
    /// max(60 s, 100 blocks), ready within max(10 s, 20 blocks); ingest stall 30 s.
    pub fn for_block_time(block_time: Duration) -> Self {
        Self {
            ingest_stall: Duration::from_secs(30),
            consensus_stall: Duration::from_secs(60).max(block_time.saturating_mul(100)),
            ready_block_age: Duration::from_secs(10).max(block_time.saturating_mul(20)),
        }
    }
}

/// Last decided height and when this node saw it.
#[derive(Debug)]
struct Progress {
    /// (height, when it was decided; `None` before the first decision since start).
    last: Mutex<(u64, Option<Instant>)>,
}

impl Progress {
    /// Follows the consensus handle's commit notifications.
    fn follow(core: &Core) -> Arc<Self> {
        let mut rx = core.handle.subscribe();
        let start = rx.borrow().height;
        let progress = Arc::new(Self {
            last: Mutex::new((start, None)),
        });
        let p = progress.clone();
        tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let height = rx.borrow_and_update().height;
                *p.last.lock().unwrap_or_else(|e| e.into_inner()) = (height, Some(Instant::now()));
            }
        });
        progress
    }

    fn get(&self) -> (u64, Option<Instant>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The read model served by the node's API.
pub struct NodeReadModel {
    chain: Option<(Arc<Core>, Arc<Progress>)>,
    registry: SharedRegistry,
    ingest: Heartbeat,
    bounds: HealthBounds,
    started: Instant,
    /// The verified production read model (`/v1/…`); `None`: those routes answer `not_served`.
    production: Option<Production>,
}

impl std::fmt::Debug for NodeReadModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeReadModel")
            .field("ledger", &self.chain.is_some())
            .field("bounds", &self.bounds)
            .finish()
    }
}

/// The API limits the node serves with: the ledger's transaction size, defaults otherwise.
pub fn api_config() -> ApiConfig {
    ApiConfig {
        // An audit proof transaction (default `max_audit_proof_bytes` 768 KiB) with room to
        // spare; the ledger's own bound (`MAX_TX_LEN`) is larger than a public endpoint needs.
        max_tx_bytes: MAX_TX_LEN.min(1024 * 1024),
        ..ApiConfig::default()
    }
}

/// [`api_config`] with the node config's `[api]` section (the per-client rate limit).
pub fn api_config_for(config: &NodeConfig) -> ApiConfig {
    ApiConfig {
        rate_limit_per_s: config.api.rate_limit_per_s,
        rate_limit_burst: config.api.rate_limit_burst,
        ..api_config()
    }
}

/// The node's API router (`/tx`, `/txs`, `/status`, `/state/…`, `/healthz`, `/readyz`):
/// the ledger routes answer `404 not_served` when `chain` is `None`. Must run inside tokio.
pub fn api_router(
    config: &NodeConfig,
    chain: Option<&Chain>,
    registry: SharedRegistry,
    ingest: Heartbeat,
) -> axum::Router {
    api_router_with_production(config, chain, registry, ingest, None)
}

impl NodeReadModel {
    /// A read model over `chain` (if consensus runs) and ingest. Must run inside tokio (it
    /// follows consensus commits on a task).
    pub fn new(
        chain: Option<&Chain>,
        registry: SharedRegistry,
        ingest: Heartbeat,
        bounds: HealthBounds,
    ) -> Self {
        let chain = chain.map(|c| {
            let progress = Progress::follow(&c.core);
            (c.core.clone(), progress)
        });
        Self {
            chain,
            registry,
            ingest,
            bounds,
            started: Instant::now(),
            production: None,
        }
    }

    /// Serves `/v1/production/…`, `/v1/devices` and `/v1/events` from `production`.
    pub fn with_production(mut self, production: Option<Production>) -> Self {
        self.production = production;
        self
    }

    fn production(&self) -> Result<&Production, ReadError> {
        self.production
            .as_ref()
            .ok_or(ReadError::NotServed("production read model"))
    }

    fn core(&self) -> Result<&Core, ReadError> {
        self.chain
            .as_ref()
            .map(|(c, _)| &**c)
            .ok_or(ReadError::NotServed("ledger"))
    }

    fn ingest_alive(&self) -> CheckView {
        match self.ingest.since_last() {
            Some(d) if d <= self.bounds.ingest_stall => {
                CheckView::new("ingest", true, format!("committer looped {d:.1?} ago"))
            }
            Some(d) => CheckView::new("ingest", false, format!("committer stalled for {d:.1?}")),
            None if self.started.elapsed() <= self.bounds.ingest_stall => {
                CheckView::new("ingest", true, "starting")
            }
            None => CheckView::new("ingest", false, "committer never started"),
        }
    }
}

fn validator_status(s: ValidatorStatus) -> ValidatorStatusView {
    match s {
        ValidatorStatus::Active => ValidatorStatusView::Active,
        ValidatorStatus::Jailed { until_epoch } => {
            ValidatorStatusView::JailedUntilEpoch(until_epoch)
        }
        ValidatorStatus::Removed => ValidatorStatusView::Removed,
    }
}

fn rejection(r: Rejected) -> Rejection {
    match r.reason {
        "mempool_full" => Rejection::overloaded(r.reason, r.detail),
        "stopped" => Rejection::unavailable(r.reason, r.detail),
        _ => Rejection::invalid(r.reason, r.detail),
    }
}

/// The node's API router: [`api_router`]'s routes, the epochs routes when `chain` is set, and
/// the `/v1` production routes served from `production` (the instance ingest records into
/// through `crate::ingest::spawn_with_production`; `None`: they answer `404 not_served`).
pub fn api_router_with_production(
    config: &NodeConfig,
    chain: Option<&Chain>,
    registry: SharedRegistry,
    ingest: Heartbeat,
    production: Option<Production>,
) -> axum::Router {
    let model = NodeReadModel::new(
        chain,
        registry,
        ingest,
        HealthBounds::for_block_time(config.consensus.block_time),
    )
    .with_production(production);
    let router = groundtruth_api::router(Arc::new(model), api_config_for(config));
    match chain {
        Some(c) => router.merge(super::epochs_api::routes(c.core.clone())),
        None => router,
    }
}

/// Where the production model finds a device's region: the committed ledger when consensus
/// runs, else the genesis file's `[[devices]]` (read once; an unreadable file: no regions).
pub fn production_regions(config: &NodeConfig, chain: Option<&Chain>) -> RegionResolver {
    if let Some(c) = chain {
        let core = c.core.clone();
        return Arc::new(move |d: &groundtruth_device_sdk::DeviceId| {
            let l = core.shared.read();
            let id = DeviceId(d.0);
            l.state
                .device(&id)
                .or_else(|| l.state.device_by_any_key(&id))
                .map(|dev| dev.region.clone())
        });
    }
    let regions: std::collections::HashMap<[u8; 32], String> =
        std::fs::read_to_string(&config.node.genesis)
            .ok()
            .and_then(|t| toml::from_str::<GenesisDevices>(&t).ok())
            .map(|g| {
                g.devices
                    .into_iter()
                    .filter_map(|e| {
                        let mut id = [0u8; 32];
                        hex::decode_to_slice(&e.id, &mut id).ok()?;
                        Some((id, e.region))
                    })
                    .collect()
            })
            .unwrap_or_default();
    Arc::new(move |d: &groundtruth_device_sdk::DeviceId| regions.get(&d.0).cloned())
}

/// Raises each epoch the oracle service sees anchored on L1 to `anchored` in `production`
/// and issues the certificates it closes ([`crate::production::anchored`]). Returns whether
/// it started (it needs the oracle service: start it first).
pub fn follow_anchored(chain: &Chain, production: Production) -> bool {
    match chain.core.shared.oracle.get() {
        Some(o) => {
            crate::production::anchored::spawn(chain.core.clone(), o.clone(), production);
            true
        }
        None => false,
    }
}

/// Starts retention of raw readings against the committed ledger ([`crate::retention`]), once
/// `after` (the read model's catch-up) is done.
pub fn start_retention(
    chain: &Chain,
    store: crate::ingest::store::Store,
    production: Option<Production>,
    section: &crate::retention::RetentionSection,
    metrics: crate::retention::RetentionMetrics,
    after: Option<std::thread::JoinHandle<()>>,
) {
    crate::retention::spawn(
        chain.core.clone(),
        store,
        production,
        section.clone(),
        metrics,
        after,
    );
}

fn production_failed(e: ProductionError) -> ReadError {
    tracing::error!(target: "node::production", error = %e, "production read failed");
    ReadError::Unavailable("the production read model could not be read".into())
}

fn series_page(page: ProductionPage) -> SeriesPage {
    SeriesPage {
        points: page
            .points
            .into_iter()
            .map(|p| SeriesPoint {
                start: p.start,
                energy_wh: p.wh,
                gpu_ms: p.gpu_ms,
                readings: p.readings,
                status: p.status.view(),
                evidence: p.evidence.iter().map(evidence_view).collect(),
            })
            .collect(),
        next: page.next,
    }
}

/// `GET /state/account/{address}` from a committed state: balance, nonce, validator and
/// provider records, and the rewards the ledger paid (total, epochs, the latest
/// [`ACCOUNT_RECENT_REWARDS`]).
fn account_view(state: &groundtruth_ledger::State, address: &Hex32) -> AccountView {
    let a = Address(address.0);
    let acc = state.account(&a);
    let rewards = state.rewards_of(&a, ACCOUNT_RECENT_REWARDS);
    AccountView {
        address: *address,
        balance: acc.balance,
        nonce: acc.nonce,
        validator: state.validator(&a).map(|v| AccountValidatorView {
            consensus_key: Hex32(v.consensus_key.0),
            stake: v.stake,
            status: validator_status(v.status),
            jail_count: v.jail_count,
        }),
        provider: state.provider(&a).map(|p| ProviderView {
            stake: p.stake,
            data_root: Hex32(p.data_root),
        }),
        rewards: AccountRewardsView {
            total: rewards.total,
            epochs: rewards.epochs,
            recent: rewards
                .recent
                .into_iter()
                .map(|(epoch, amount)| EpochRewardView { epoch, amount })
                .collect(),
        },
    }
}

impl ReadModel for NodeReadModel {
    fn device_production(
        &self,
        id: &Hex32,
        request: &SeriesRequest,
    ) -> Result<Option<SeriesPage>, ReadError> {
        let p = self.production()?;
        let device = groundtruth_device_sdk::DeviceId(id.0);
        if p.device(&device).map_err(production_failed)?.is_none() {
            // Registered but without production yet: an empty series; otherwise unknown.
            return Ok(self
                .registry
                .load()
                .get(&device)
                .map(|_| SeriesPage::default()));
        }
        p.device_series(
            &device,
            request.from,
            request.to,
            request.step_s,
            request.limit,
        )
        .map(|page| Some(series_page(page)))
        .map_err(production_failed)
    }

    fn production_changes(&self) -> Option<Arc<groundtruth_api::ProductionChanges>> {
        self.production.as_ref().map(Production::changes)
    }

    fn region_production(
        &self,
        region: &str,
        request: &SeriesRequest,
    ) -> Result<SeriesPage, ReadError> {
        self.production()?
            .region_series(
                region,
                request.from,
                request.to,
                request.step_s,
                request.limit,
            )
            .map(series_page)
            .map_err(production_failed)
    }

    fn production_devices(
        &self,
        after: Option<&Hex32>,
        limit: usize,
    ) -> Result<DevicesPage, ReadError> {
        let after = after.map(|h| groundtruth_device_sdk::DeviceId(h.0));
        let (devices, more) = self
            .production()?
            .devices(after.as_ref(), limit)
            .map_err(production_failed)?;
        Ok(DevicesPage {
            devices: devices.iter().map(|(id, e)| e.view(id)).collect(),
            more,
        })
    }

    fn production_events(
        &self,
    ) -> Option<tokio::sync::broadcast::Receiver<groundtruth_api::ProductionEventView>> {
        self.production.as_ref().map(Production::subscribe)
    }

    fn certificates(
        &self,
        request: &groundtruth_api::market::CertificatesRequest,
    ) -> Result<groundtruth_api::market::CertificatesPage, ReadError> {
        let q = crate::production::CertificateQuery {
            device: request
                .device
                .map(|d| groundtruth_device_sdk::DeviceId(d.0)),
            from: request.from,
            to: request.to,
            after: request.after.map(|(h, d)| (h, d.0)),
            limit: request.limit,
        };
        let (certs, next) = self
            .production()?
            .certificates(&q)
            .map_err(production_failed)?;
        let guard = self.chain.as_ref().map(|(c, _)| c.shared.read());
        let st = guard.as_ref().map(|l| &l.state);
        Ok(groundtruth_api::market::CertificatesPage {
            certificates: certs
                .iter()
                .map(|c| crate::production::market::certificate_view(c, st))
                .collect(),
            next: next.map(|(h, d)| (h, Hex32(d))),
        })
    }

    fn certificate(
        &self,
        id: &Hex32,
    ) -> Result<Option<groundtruth_api::market::CertificateView>, ReadError> {
        let c = self
            .production()?
            .certificate(&id.0)
            .map_err(production_failed)?;
        let guard = self.chain.as_ref().map(|(c, _)| c.shared.read());
        let st = guard.as_ref().map(|l| &l.state);
        Ok(c.map(|c| crate::production::market::certificate_view(&c, st)))
    }

    fn network_validators(
        &self,
    ) -> Result<groundtruth_api::market::NetworkValidatorsView, ReadError> {
        let l = self.core()?.shared.read();
        Ok(crate::production::market::network_validators(&l.state))
    }

    fn slashes(
        &self,
        before: Option<u64>,
        limit: usize,
    ) -> Result<groundtruth_api::market::SlashesPage, ReadError> {
        let l = self.core()?.shared.read();
        Ok(crate::production::market::slashes(&l.state, before, limit))
    }

    fn providers(
        &self,
        after: Option<&Hex32>,
        limit: usize,
    ) -> Result<groundtruth_api::market::ProvidersPage, ReadError> {
        let l = self.core()?.shared.read();
        Ok(crate::production::market::providers(&l.state, after, limit))
    }

    fn verify_proof(
        &self,
        proof: Bytes,
        frames: Option<Vec<Bytes>>,
    ) -> Result<groundtruth_api::market::VerdictView, groundtruth_api::market::VerifyError> {
        // The ledger's own cap when it runs; the API's default otherwise.
        let cap = self
            .chain
            .as_ref()
            .map(|(c, _)| c.shared.read().state.params().max_audit_proof_bytes as usize)
            .unwrap_or(api_config().max_proof_bytes);
        let checked = crate::production::market::check_proof(&proof, frames.as_deref(), cap)?;
        let mut verdict = checked.verdict;
        if let (Some((core, _)), Some(epoch)) = (&self.chain, checked.epoch) {
            let l = core.shared.read();
            verdict.ledger =
                crate::production::market::ledger_match(&l.state, epoch, &verdict.proof_digest);
        }
        Ok(verdict)
    }

    fn status(&self) -> Result<StatusView, ReadError> {
        let core = self.core()?;
        let l = core.shared.read();
        Ok(StatusView {
            chain_id: l.state.chain_id().to_string(),
            height: l.state.height(),
            epoch: l.state.epoch(),
            state_root: Hex32(l.root),
            mempool: core.handle.mempool_len() as u64,
            validator: Hex32(core.handle.address()),
        })
    }

    fn account(&self, address: &Hex32) -> Result<AccountView, ReadError> {
        let core = self.core()?;
        let l = core.shared.read();
        Ok(account_view(&l.state, address))
    }

    fn device(&self, id: &Hex32) -> Result<Option<DeviceView>, ReadError> {
        let core = self.core()?;
        let id = DeviceId(id.0);
        let l = core.shared.read();
        let Some(d) = l
            .state
            .device(&id)
            .or_else(|| l.state.device_by_any_key(&id))
        else {
            return Ok(None);
        };
        Ok(Some(DeviceView {
            id: Hex32(d.id.0),
            owner: d.owner.map(|o| Hex32(o.0)),
            kind: d.kind.name().to_string(),
            capacity: d.capacity,
            region: d.region.clone(),
            status: match d.status {
                DeviceStatus::Active => DeviceStatusView::Active,
                DeviceStatus::Retired => DeviceStatusView::Retired,
                DeviceStatus::Suspended => DeviceStatusView::Suspended,
            },
            registered_at: d.registered_at,
            previous_keys: d.previous_keys.iter().map(|k| Hex32(k.0)).collect(),
            height: l.state.height(),
        }))
    }

    fn validators(&self) -> Result<ValidatorsView, ReadError> {
        let core = self.core()?;
        let l = core.shared.read();
        let s = &l.state;
        Ok(ValidatorsView {
            height: s.height(),
            epoch: s.epoch(),
            set: s
                .validator_set()
                .into_iter()
                .map(|(k, power)| SetMemberView {
                    consensus_key: Hex32(k.0),
                    power,
                })
                .collect(),
            validators: s
                .validators()
                .map(|v| ValidatorView {
                    operator: Hex32(v.operator.0),
                    consensus_key: Hex32(v.consensus_key.0),
                    stake: v.stake,
                    delegated: s.delegated_to(&v.operator),
                    status: validator_status(v.status),
                    jail_count: v.jail_count,
                })
                .collect(),
            slashes: s
                .slashes()
                .iter()
                .map(|r| SlashView {
                    id: r.id,
                    height: r.height,
                    offender: match r.offender {
                        Offender::Validator(a) => OffenderView::Validator(Hex32(a.0)),
                        Offender::Provider(a) => OffenderView::Provider(Hex32(a.0)),
                    },
                    reason: r.reason.code().to_string(),
                    amount: r.amount,
                    jailed: r.jailed,
                    removed: r.removed,
                    explain: r.explain(),
                })
                .collect(),
        })
    }

    fn tx(&self, hash: &Hex32) -> Result<Option<TxOutcomeView>, ReadError> {
        let core = self.core()?;
        Ok(core
            .shared
            .tx_outcome(&hash.0)
            .map(|(height, outcome)| TxOutcomeView {
                hash: *hash,
                height,
                ok: outcome.is_none(),
                reason: outcome.map(str::to_string),
            }))
    }

    fn block(&self, height: u64) -> Result<Option<BlockView>, ReadError> {
        let core = self.core()?;
        Ok(core.shared.block(height).map(|b| BlockView {
            height: b.height,
            state_root: Hex32(b.state_root),
            txs: b
                .txs
                .iter()
                .map(|(h, r)| BlockTxView {
                    hash: Hex32(*h),
                    ok: r.is_none(),
                    reason: r.map(str::to_string),
                })
                .collect(),
        }))
    }

    fn submit_tx(&self, raw: Bytes, origin: Origin) -> Result<Submitted, Rejection> {
        let core = self
            .core()
            .map_err(|e| Rejection::unavailable("no_ledger", e.to_string()))?;
        core.submit(raw, origin == Origin::Client)
            .map(|(hash, new)| Submitted {
                hash: Hex32(hash),
                new,
            })
            .map_err(rejection)
    }

    fn health(&self) -> HealthView {
        let mut checks = vec![self.ingest_alive()];
        if let Some((_, progress)) = &self.chain {
            let (height, at) = progress.get();
            let since = at.map_or_else(|| self.started.elapsed(), |t| t.elapsed());
            let ok = since <= self.bounds.consensus_stall;
            let detail = match at {
                Some(_) => format!("height {height} decided {since:.1?} ago"),
                None => format!("nothing decided since start {since:.1?} ago (height {height})"),
            };
            checks.push(CheckView::new("consensus", ok, detail));
        }
        HealthView::from_checks(checks)
    }

    fn readiness(&self) -> HealthView {
        let devices = self.registry.load().len();
        let serving = self.ingest.serving();
        let mut checks = vec![CheckView::new(
            "ingest",
            serving,
            if serving {
                format!("serving; {devices} devices registered")
            } else {
                format!("store not scanned yet; {devices} devices registered")
            },
        )];
        if let Some((_, progress)) = &self.chain {
            let (height, at) = progress.get();
            let check = match at {
                Some(t) if t.elapsed() <= self.bounds.ready_block_age => CheckView::new(
                    "consensus",
                    true,
                    format!("height {height} decided {:.1?} ago", t.elapsed()),
                ),
                Some(t) => CheckView::new(
                    "consensus",
                    false,
                    format!("height {height} decided {:.1?} ago", t.elapsed()),
                ),
                None => CheckView::new(
                    "consensus",
                    false,
                    format!("no block decided since start (height {height})"),
                ),
            };
            checks.push(check);
        }
        HealthView::from_checks(checks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::registry::Registry;

    fn model(ingest: Heartbeat, bounds: HealthBounds) -> NodeReadModel {
        NodeReadModel {
            chain: None,
            registry: SharedRegistry::new(Registry::from_records(std::iter::empty())),
            ingest,
            bounds,
            started: Instant::now(),
            production: None,
        }
    }

    #[test]
    fn ingest_heartbeat_drives_health_and_readiness() {
        let beat = Heartbeat::new();
        let m = model(
            beat.clone(),
            HealthBounds::for_block_time(Duration::from_millis(500)),
        );
        // Not beaten yet: alive within the start-up grace, not ready.
        assert!(m.health().ok);
        assert!(!m.readiness().ok);
        beat.beat();
        assert!(!m.readiness().ok, "scanning the store is not serving");
        beat.beat_serving();
        assert!(m.health().ok && m.readiness().ok);
        // A zero stall bound: any beat is too old once time passes.
        let strict = model(
            beat.clone(),
            HealthBounds {
                ingest_stall: Duration::ZERO,
                ..HealthBounds::for_block_time(Duration::from_millis(500))
            },
        );
        std::thread::sleep(Duration::from_millis(5));
        let h = strict.health();
        assert!(!h.ok);
        assert!(h.checks.iter().any(|c| c.name == "ingest" && !c.ok));
    }

    #[test]
    fn without_a_ledger_reads_are_not_served() {
        let m = model(
            Heartbeat::new(),
            HealthBounds::for_block_time(Duration::from_secs(1)),
        );
        assert_eq!(m.status().err(), Some(ReadError::NotServed("ledger")));
        assert_eq!(
            m.submit_tx(Bytes::from_static(b"x"), Origin::Client)
                .err()
                .map(|r| r.reason),
            Some("no_ledger".to_string())
        );
    }

    /// The `/v1` production routes over a real sled production model, through the router on a
    /// real listener: the served day equals the readings recorded, a registered device without
    /// readings has an empty series, an unregistered one is `404 unknown_device`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn production_routes_serve_the_sled_model(
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody};
        let dir = tempfile::tempdir()?;
        let production = Production::open(dir.path(), Arc::new(|_: &_| Some("DE-BY".into())))?;
        let meter = DeviceKey::from_seed(&[1; 32]);
        let idle = DeviceKey::from_seed(&[2; 32]);
        let day = 1_714_521_600u64; // 2024-05-01T00:00:00Z
        let readings: Vec<Reading> = (0..288u64)
            .map(|i| Reading {
                device: meter.device_id(),
                seq: i,
                timestamp_ms: (day + i * 300 + 300) * 1000,
                body: ReadingBody::Energy(EnergyReading {
                    interval_start_s: day + i * 300,
                    interval_len_s: 300,
                    energy_wh: i % 7,
                    register_wh: 0,
                }),
            })
            .collect();
        production.record(&readings)?;
        let registry = SharedRegistry::new(Registry::from_records(
            [meter.device_id(), idle.device_id()].map(|d| {
                (
                    d,
                    crate::ingest::registry::DeviceRecord {
                        kind: groundtruth_device_sdk::ReadingKind::Energy,
                        capacity: 10_000,
                    },
                )
            }),
        ));
        let model = NodeReadModel::new(
            None,
            registry,
            Heartbeat::new(),
            HealthBounds::for_block_time(Duration::from_secs(1)),
        )
        .with_production(Some(production));
        let api = groundtruth_api::router(Arc::new(model), api_config());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(groundtruth_api::serve(listener, api));
        let (meter_id, idle_id) = (meter.device_id(), idle.device_id());
        tokio::task::spawn_blocking(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let c = groundtruth_api::ApiClient::new(&addr.to_string())?;
                let range = "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z";
                let day_total: u64 = (0..288u64).map(|i| i % 7).sum();
                let v = c.get_json(&format!(
                    "/v1/production/devices/{meter_id}?{range}&granularity=1d"
                ))?;
                assert_eq!(v["points"][0]["energy_wh"], day_total);
                assert_eq!(v["points"][0]["readings"], 288);
                assert_eq!(v["points"][0]["status"], "reported");
                let v = c.get_json(&format!(
                    "/v1/production/devices/{meter_id}?{range}&granularity=5m&limit=1000"
                ))?;
                assert_eq!(v["points"].as_array().map(Vec::len), Some(288));
                let v = c.get_json(&format!(
                    "/v1/production/regions/DE-BY?{range}&granularity=1h"
                ))?;
                let hours = v["points"].as_array().ok_or("points")?;
                let sum: u64 = hours.iter().filter_map(|p| p["energy_wh"].as_u64()).sum();
                assert_eq!((hours.len(), sum), (24, day_total));
                let v = c.get_json(&format!("/v1/production/devices/{idle_id}?{range}"))?;
                assert_eq!(v["points"].as_array().map(Vec::len), Some(0));
                let missing = c.request(
                    "GET",
                    &format!("/v1/production/devices/{}?{range}", "ab".repeat(32)),
                    &[],
                    &[],
                )?;
                assert_eq!(missing.status, 404);
                let v = c.get_json("/v1/devices")?;
                assert_eq!(v["devices"].as_array().map(Vec::len), Some(1));
                Ok(())
            },
        )
        .await??;
        server.abort();
        Ok(())
    }

    /// The API's series cache over the sled model: an answer is reused while nothing changes,
    /// and a reading recorded or a status raised on that day (by ingest and the audit loop,
    /// straight into `Production`) is served at the next request, for the device and its
    /// region.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cached_series_follow_recorded_readings_and_status_upgrades(
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        use crate::production::StatusUpgrade;
        use groundtruth_device_sdk::{DeviceKey, EnergyReading, Reading, ReadingBody};
        let dir = tempfile::tempdir()?;
        let production = Production::open(dir.path(), Arc::new(|_: &_| Some("DE-BY".into())))?;
        let meter = DeviceKey::from_seed(&[3; 32]);
        let day = 1_714_521_600u64; // 2024-05-01T00:00:00Z
        let meter_id = meter.device_id();
        let reading = move |i: u64| Reading {
            device: meter_id,
            seq: i,
            timestamp_ms: (day + i * 300 + 300) * 1000,
            body: ReadingBody::Energy(EnergyReading {
                interval_start_s: day + i * 300,
                interval_len_s: 300,
                energy_wh: 10,
                register_wh: 0,
            }),
        };
        production.record(&(0..100).map(reading).collect::<Vec<_>>())?;
        let model = NodeReadModel::new(
            None,
            SharedRegistry::new(Registry::from_records(std::iter::empty())),
            Heartbeat::new(),
            HealthBounds::for_block_time(Duration::from_secs(1)),
        )
        .with_production(Some(production.clone()));
        let config = ApiConfig {
            rate_limit_per_s: 0,
            ..api_config()
        };
        assert!(
            config.series_cache_bytes > 0,
            "the node serves with the cache on"
        );
        let api = groundtruth_api::router(Arc::new(model), config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(groundtruth_api::serve(listener, api));
        tokio::task::spawn_blocking(
            move || -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
                let c = groundtruth_api::ApiClient::new(&addr.to_string())?;
                let range = "from=2024-05-01T00:00:00Z&to=2024-05-02T00:00:00Z&granularity=5m";
                let device = format!("/v1/production/devices/{meter_id}?{range}");
                let region = format!("/v1/production/regions/DE-BY?{range}");
                let points = |path: &str| -> Result<Vec<serde_json::Value>, String> {
                    let v = c.get_json(path).map_err(|e| e.to_string())?;
                    v["points"]
                        .as_array()
                        .cloned()
                        .ok_or_else(|| "points".into())
                };
                // Served from the encoded cache (`If-None-Match: *` is answered 304 there only).
                let cached = c.request("GET", &device, &[], &[("if-none-match", "*")])?;
                assert_eq!(cached.status, 304, "the cache is on");
                assert_eq!(points(&device)?.len(), 100);
                assert_eq!(points(&region)?.len(), 100);

                // Ingest records 50 more readings of the same day.
                production
                    .record(&(100..150).map(reading).collect::<Vec<_>>())
                    .map_err(|e| e.to_string())?;
                let now = points(&device)?;
                assert_eq!(now.len(), 150, "a recorded reading is served");
                assert_eq!(points(&region)?.len(), 150);

                // The audit loop raises the first hour to attested.
                production
                    .upgrade(
                        &meter_id,
                        (day, day + 3600),
                        StatusUpgrade::Attested { epoch: 7 },
                    )
                    .map_err(|e| e.to_string())?;
                let now = points(&device)?;
                assert_eq!(
                    now.first().map(|p| p["status"].clone()),
                    Some("attested".into())
                );
                assert_eq!(
                    now.get(12).map(|p| p["status"].clone()),
                    Some("reported".into())
                );
                let r = points(&region)?;
                assert_eq!(
                    r.first().map(|p| p["status"].clone()),
                    Some("attested".into())
                );
                Ok(())
            },
        )
        .await??;
        server.abort();
        Ok(())
    }

    /// An account's rewards as the API serves them come from the ledger's record: a GPU
    /// owner paid for two committee-passed rounds shows both payouts (newest first), their
    /// total (its balance's growth) and the count; an account never paid shows zeros.
    #[test]
    #[allow(clippy::unwrap_used)]
    fn account_view_shows_the_rewards_the_ledger_paid() {
        use groundtruth_ledger::testkit::{address, device_id, key, sign_tx, TestNet, GPU_DEVICE};
        use groundtruth_ledger::{Epoch, ProviderAuditKind, TxBody};
        let n = TestNet::new(4, 4);
        let mut st = n.state().unwrap();
        let gpu = device_id(&key(GPU_DEVICE));
        let owner = address(&n.users[0]);
        let claim = 50_000_000;
        let spec = TxBody::RegisterGpuSpec {
            device: gpu,
            model: "H200".into(),
            count: 1,
            claimed_mac_per_s: claim,
        };
        let tx = sign_tx(&st, &n.users[0], 0, spec);
        n.block(&mut st, vec![tx]).unwrap();
        let advance = |st: &mut groundtruth_ledger::State, to: Epoch| {
            while st.epoch() < to {
                n.block(st, vec![]).unwrap();
            }
        };
        // Rounds of epochs 0 and 1, each passed by 3 of the 4 equal validators.
        for e in [0, 1] {
            advance(&mut st, e + 1);
            let kind = ProviderAuditKind::GpuCapacity;
            let seed = st.provider_audit_seed(e, &gpu, kind).unwrap();
            let txs = (0..3)
                .map(|i| {
                    sign_tx(
                        &st,
                        &n.operators[i],
                        0,
                        TxBody::ReportProviderAudit {
                            epoch: e,
                            device: gpu,
                            kind,
                            passed: true,
                            seed,
                            response_digest: [7; 32],
                            elapsed_ms: 100,
                            measured_per_s: claim,
                        },
                    )
                })
                .collect();
            n.block(&mut st, txs).unwrap();
        }
        let before = st.account(&owner).balance;
        let w = st.params().attestation_window_epochs;
        advance(&mut st, w + 3);
        let v = account_view(&st, &Hex32(owner.0));
        assert_eq!(v.balance, st.account(&owner).balance);
        // Each listed payout is the ledger's record for (epoch, owner), newest first, and
        // together they are what the balance grew by.
        let epochs: Vec<Epoch> = v.rewards.recent.iter().map(|r| r.epoch).collect();
        assert_eq!(epochs, vec![w + 1, w]);
        for r in &v.rewards.recent {
            assert!(r.amount > 0);
            assert!(st.rewards_for_epoch(r.epoch).contains(&(owner, r.amount)));
        }
        let listed: u64 = v.rewards.recent.iter().map(|r| r.amount).sum();
        assert_eq!(v.rewards.total, listed);
        assert_eq!(v.rewards.total, v.balance - before);
        assert_eq!(v.rewards.epochs, 2);
        assert!(v.provider.is_some());
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["rewards"]["total"], listed);
        assert_eq!(json["rewards"]["recent"][0]["epoch"], w + 1);

        let never = account_view(&st, &Hex32(address(&n.users[3]).0));
        assert_eq!(never.rewards, AccountRewardsView::default());
    }

    #[test]
    fn block_time_scales_the_bounds() {
        let b = HealthBounds::for_block_time(Duration::from_secs(2));
        assert_eq!(b.consensus_stall, Duration::from_secs(200));
        assert_eq!(b.ready_block_age, Duration::from_secs(40));
        let fast = HealthBounds::for_block_time(Duration::from_millis(100));
        assert_eq!(fast.ready_block_age, Duration::from_secs(10));
    }
}
