//! The read-model trait the node implements: views out, raw signed transactions in.

use bytes::Bytes;

use crate::market::{
    CertificateView, CertificatesPage, CertificatesRequest, NetworkValidatorsView, ProvidersPage,
    SlashesPage, VerdictView, VerifyError,
};
use crate::views::{
    AccountView, BlockView, BucketStatusView, DeviceProductionSummaryView, DeviceView,
    EvidenceRefView, HealthView, Hex32, ProductionEventView, StatusView, Submitted, TxOutcomeView,
    ValidatorsView,
};

/// A validated production query: `[from, to)` in Unix seconds, both multiples of `step_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesRequest {
    /// First interval start (or the cursor's), Unix seconds.
    pub from: u64,
    /// End of the range (exclusive), Unix seconds.
    pub to: u64,
    /// Interval length, seconds (300, 900, 3600 or 86400).
    pub step_s: u64,
    /// Most intervals with readings to return.
    pub limit: usize,
}

/// One interval of a series, as the model answers it (the router formats the times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesPoint {
    /// Interval start, Unix seconds.
    pub start: u64,
    /// Energy, Wh.
    pub energy_wh: u64,
    /// GPU time, ms.
    pub gpu_ms: u64,
    /// Readings summed.
    pub readings: u64,
    /// Weakest status of its buckets.
    pub status: BucketStatusView,
    /// Distinct evidence of its buckets.
    pub evidence: Vec<EvidenceRefView>,
}

/// A page of a series.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SeriesPage {
    /// Intervals with readings, oldest first, at most the request's `limit`.
    pub points: Vec<SeriesPoint>,
    /// Start of the next interval to read, when the range has more (the router turns it into
    /// an opaque cursor).
    pub next: Option<u64>,
}

/// A page of devices with production.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DevicesPage {
    /// Devices in id order, at most the asked limit.
    pub devices: Vec<DeviceProductionSummaryView>,
    /// Whether devices follow the last one.
    pub more: bool,
}

/// What a read model without production answers.
const NO_PRODUCTION: ReadError = ReadError::NotServed("production read model");

/// Who handed us a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A client: the node may forward it to its peers.
    Client,
    /// Another validator forwarded it (header [`crate::FORWARDED_HEADER`]): never forwarded again.
    Peer,
}

/// How a refused transaction is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionKind {
    /// The transaction is wrong (undecodable, bad signature, bad nonce, …): `400`.
    Invalid,
    /// The node is full (mempool): `503` with `Retry-After`; the same bytes may pass later.
    Overloaded,
    /// The node cannot take transactions now (consensus stopped): `503`.
    Unavailable,
}

/// Why a transaction was not admitted: a stable `reason` code for programs and a `detail`
/// for humans (it must not carry internals: paths, addresses of peers, stack traces).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Rejection {
    /// How it is answered.
    pub kind: RejectionKind,
    /// Stable code (the ledger's, e.g. `bad_nonce`, or `mempool_full`, `stopped`).
    pub reason: String,
    /// For humans.
    pub detail: String,
}

impl Rejection {
    /// A transaction the ledger refuses.
    pub fn invalid(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(RejectionKind::Invalid, reason, detail)
    }

    /// A transaction refused because the node is full.
    pub fn overloaded(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(RejectionKind::Overloaded, reason, detail)
    }

    /// A transaction refused because the node cannot take any now.
    pub fn unavailable(reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(RejectionKind::Unavailable, reason, detail)
    }

    fn new(kind: RejectionKind, reason: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            detail: detail.into(),
        }
    }
}

/// Why a read could not be answered (a missing object is `Ok(None)`, not an error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// This node does not serve it (e.g. the ledger, on a node without consensus): `404`,
    /// reason `not_served`.
    #[error("this node does not serve the {0}")]
    NotServed(&'static str),
    /// Temporarily not answerable: `503`, reason `unavailable`.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// What the API reads and writes through. Methods are synchronous (the router calls them on
/// tokio's blocking pool) and must not block for long: a read takes a lock, copies what the
/// view needs and returns.
pub trait ReadModel: Send + Sync + 'static {
    /// `GET /status`.
    fn status(&self) -> Result<StatusView, ReadError>;
    /// `GET /state/account/<hex>` (an unknown account is a zero account, not `None`).
    fn account(&self, address: &Hex32) -> Result<AccountView, ReadError>;
    /// `GET /state/device/<hex>`, by current or previous key.
    fn device(&self, id: &Hex32) -> Result<Option<DeviceView>, ReadError>;
    /// `GET /state/validators`.
    fn validators(&self) -> Result<ValidatorsView, ReadError>;
    /// `GET /tx/<hash>`: `None` until the transaction is in a (recent) committed block.
    fn tx(&self, hash: &Hex32) -> Result<Option<TxOutcomeView>, ReadError>;
    /// `GET /block/<height>`: `None` if not a recent committed block.
    fn block(&self, height: u64) -> Result<Option<BlockView>, ReadError>;
    /// `POST /tx` and each entry of `POST /txs`: check a raw signed transaction and queue it.
    /// `raw` is at most [`crate::ApiConfig::max_tx_bytes`] long.
    fn submit_tx(&self, raw: Bytes, origin: Origin) -> Result<Submitted, Rejection>;
    /// `GET /healthz`: is the process alive and making progress (restart it if not)?
    fn health(&self) -> HealthView;
    /// `GET /readyz`: should it get traffic (caught up, registry loaded)?
    fn readiness(&self) -> HealthView;

    /// `GET /v1/production/devices/{id}`: `None` if the device is unknown (neither registered
    /// nor with production). Default: `404 not_served`.
    fn device_production(
        &self,
        id: &Hex32,
        request: &SeriesRequest,
    ) -> Result<Option<SeriesPage>, ReadError> {
        let _ = (id, request);
        Err(NO_PRODUCTION)
    }

    /// `GET /v1/production/regions/{region}` (an unknown region has no points). Default:
    /// `404 not_served`.
    fn region_production(
        &self,
        region: &str,
        request: &SeriesRequest,
    ) -> Result<SeriesPage, ReadError> {
        let _ = (region, request);
        Err(NO_PRODUCTION)
    }

    /// `GET /v1/devices`: devices with production in id order after `after`, at most `limit`.
    /// Default: `404 not_served`.
    fn production_devices(
        &self,
        after: Option<&Hex32>,
        limit: usize,
    ) -> Result<DevicesPage, ReadError> {
        let _ = (after, limit);
        Err(NO_PRODUCTION)
    }

    /// Change counters the model bumps after each committed change to a device-day or
    /// region-day of production ([`crate::ProductionChanges`]): with them the router keeps
    /// encoded series answers and serves them while the days they cover are unchanged.
    /// Default `None`: every series is read from the model.
    fn production_changes(&self) -> Option<std::sync::Arc<crate::ProductionChanges>> {
        None
    }

    /// `GET /v1/events`: a receiver of newly accepted production (a bounded broadcast; a slow
    /// receiver loses the oldest events). Default `None`: `404 not_served`.
    fn production_events(&self) -> Option<tokio::sync::broadcast::Receiver<ProductionEventView>> {
        None
    }

    /// `GET /v1/certificates`. Default: `404 not_served`.
    fn certificates(&self, request: &CertificatesRequest) -> Result<CertificatesPage, ReadError> {
        let _ = request;
        Err(NO_PRODUCTION)
    }

    /// `GET /v1/certificates/{id}`: `None` if this node issued no such certificate. Default:
    /// `404 not_served`.
    fn certificate(&self, id: &Hex32) -> Result<Option<CertificateView>, ReadError> {
        let _ = id;
        Err(NO_PRODUCTION)
    }

    /// `GET /v1/validators`. Default: `404 not_served`.
    fn network_validators(&self) -> Result<NetworkValidatorsView, ReadError> {
        Err(NO_LEDGER)
    }

    /// `GET /v1/slashes`: newest first, ids below `before`, at most `limit`. Default:
    /// `404 not_served`.
    fn slashes(&self, before: Option<u64>, limit: usize) -> Result<SlashesPage, ReadError> {
        let _ = (before, limit);
        Err(NO_LEDGER)
    }

    /// `GET /v1/providers`: by address after `after`, at most `limit`. Default:
    /// `404 not_served`.
    fn providers(&self, after: Option<&Hex32>, limit: usize) -> Result<ProvidersPage, ReadError> {
        let _ = (after, limit);
        Err(NO_LEDGER)
    }

    /// `POST /v1/proofs/verify`: verifies `proof` (at most
    /// [`crate::ApiConfig::max_proof_bytes`]) and, when given, the signed `frames` behind it.
    /// Runs on the blocking pool under a small semaphore. Default: `404 not_served`.
    fn verify_proof(
        &self,
        proof: Bytes,
        frames: Option<Vec<Bytes>>,
    ) -> Result<VerdictView, VerifyError> {
        let _ = (proof, frames);
        Err(VerifyError::Read(ReadError::NotServed("proof verifier")))
    }
}

/// What a read model without a ledger answers.
const NO_LEDGER: ReadError = ReadError::NotServed("ledger");
