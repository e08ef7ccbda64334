//! Typed configuration of a consensus node. Binaries read files; this crate takes structs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use malachitebft_app_channel::app::types::core::LinearTimeouts;

use crate::error::{Error, Result};

/// Round timeouts (Tendermint's `timeoutPropose`, `timeoutPrevote`, `timeoutPrecommit`),
/// each growing by its delta per round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// How long to wait for a proposal in round 0.
    pub propose: Duration,
    /// Added to `propose` per round.
    pub propose_delta: Duration,
    /// How long to wait for more prevotes after seeing 2/3 of any.
    pub prevote: Duration,
    /// Added to `prevote` per round.
    pub prevote_delta: Duration,
    /// How long to wait for more precommits after seeing 2/3 of any.
    pub precommit: Duration,
    /// Added to `precommit` per round.
    pub precommit_delta: Duration,
    /// After this long in a round, rebroadcast own votes (liveness under message loss).
    pub rebroadcast: Duration,
    /// Upper bound of any round timeout.
    pub max: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            propose: Duration::from_secs(3),
            propose_delta: Duration::from_millis(500),
            prevote: Duration::from_secs(1),
            prevote_delta: Duration::from_millis(500),
            precommit: Duration::from_secs(1),
            precommit_delta: Duration::from_millis(500),
            rebroadcast: Duration::from_secs(5),
            max: Duration::from_secs(60),
        }
    }
}

impl From<Timeouts> for LinearTimeouts {
    fn from(t: Timeouts) -> Self {
        LinearTimeouts {
            propose: t.propose,
            propose_delta: t.propose_delta,
            prevote: t.prevote,
            prevote_delta: t.prevote_delta,
            precommit: t.precommit,
            precommit_delta: t.precommit_delta,
            rebroadcast: t.rebroadcast,
            max_timeout: t.max,
        }
    }
}

/// Configuration of one consensus node.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsensusConfig {
    /// Directory for the engine's write-ahead log (`wal/`) and the block store (`blocks/`).
    pub home: PathBuf,
    /// Human-readable node name (logs, peer identification).
    pub moniker: String,
    /// TCP address Malachite's own libp2p swarm listens on.
    pub listen_addr: SocketAddr,
    /// Other validators' consensus listen addresses (persistent peers, redialed when lost).
    pub peers: Vec<SocketAddr>,
    /// The validator's ed25519 secret key (32-byte seed). The consensus address is its
    /// public key; the libp2p identity is derived from it (stable across restarts).
    pub signing_key: [u8; 32],
    /// Round timeouts.
    pub timeouts: Timeouts,
    /// Minimum duration of a height (`None`: start the next height as soon as one is decided).
    pub block_time: Option<Duration>,
    /// Maximum encoded size of a block, in bytes.
    pub max_block_bytes: usize,
    /// Size of the chunks a proposed block is streamed in, in bytes.
    pub part_bytes: usize,
    /// Maximum number of pending transactions in the mempool.
    pub mempool_max_txs: usize,
    /// Maximum total size of pending transactions in the mempool, in bytes.
    pub mempool_max_bytes: usize,
    /// How often to tell peers our decided height (drives catch-up through sync).
    pub sync_status_interval: Duration,
    /// Timeout of one sync request.
    pub sync_request_timeout: Duration,
    /// Deliberate misbehaviour, for fault tests only (`None` in every honest deployment).
    /// [`ConsensusConfig::new`] reads it from `GROUNDTRUTH_BYZANTINE`.
    pub byzantine: Option<Byzantine>,
}

/// Name of the environment variable that turns a validator byzantine (fault tests only).
pub const BYZANTINE_ENV: &str = "GROUNDTRUTH_BYZANTINE";

/// Deliberate misbehaviour of a validator, run through Malachite's own byzantine network proxy
/// (`arc-malachitebft-engine-byzantine`): the engine signs and gossips its honest message, then
/// the proxy signs and gossips a conflicting one with the same key. Exists so that the fault
/// suite exercises the engine's real evidence path; compiled in, inert unless configured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Byzantine {
    /// At each height of `from..=to`, every vote is followed by a conflicting vote (a non-nil
    /// vote by a nil one) of the same type and round: a double vote. A range lets a fault test
    /// stay deterministic on a loaded machine, where a conflicting vote may reach the honest
    /// engines only after they decided one height (and so too late to be evidence there).
    DoubleVote {
        /// The first height at which to equivocate.
        from: u64,
        /// The last height at which to equivocate.
        to: u64,
    },
}

impl Byzantine {
    /// Parses `double-vote@<height>` or `double-vote@<from>..<to>` (the value of
    /// [`BYZANTINE_ENV`]); heights start at 1 and a range holds at most 64 heights.
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            Error::Config(format!(
                "{BYZANTINE_ENV}={s}: expected double-vote@<height ≥ 1> or double-vote@<from>..<to>"
            ))
        };
        let (kind, heights) = s.trim().split_once('@').ok_or_else(bad)?;
        let (from, to) = heights.split_once("..").unwrap_or((heights, heights));
        let from: u64 = from.parse().map_err(|_| bad())?;
        let to: u64 = to.parse().map_err(|_| bad())?;
        match kind {
            "double-vote" if from > 0 && from <= to && to - from < 64 => {
                Ok(Self::DoubleVote { from, to })
            }
            _ => Err(bad()),
        }
    }

    /// The mode set in the environment, if any (a malformed value is an error, not ignored).
    pub fn from_env() -> Result<Option<Self>> {
        match std::env::var(BYZANTINE_ENV) {
            Ok(v) if !v.trim().is_empty() => Self::parse(&v).map(Some),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Debug for ConsensusConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsensusConfig")
            .field("home", &self.home)
            .field("moniker", &self.moniker)
            .field("listen_addr", &self.listen_addr)
            .field("peers", &self.peers)
            .field("signing_key", &"<redacted>")
            .field("timeouts", &self.timeouts)
            .field("block_time", &self.block_time)
            .field("max_block_bytes", &self.max_block_bytes)
            .field("part_bytes", &self.part_bytes)
            .field("mempool_max_txs", &self.mempool_max_txs)
            .field("mempool_max_bytes", &self.mempool_max_bytes)
            .field("sync_status_interval", &self.sync_status_interval)
            .field("sync_request_timeout", &self.sync_request_timeout)
            .field("byzantine", &self.byzantine)
            .finish()
    }
}

impl ConsensusConfig {
    /// A configuration with defaults for everything but the node's identity and addresses.
    pub fn new(
        home: impl Into<PathBuf>,
        signing_key: [u8; 32],
        listen_addr: SocketAddr,
        peers: Vec<SocketAddr>,
    ) -> Self {
        Self {
            home: home.into(),
            moniker: format!("validator-{listen_addr}"),
            listen_addr,
            peers,
            signing_key,
            timeouts: Timeouts::default(),
            block_time: Some(Duration::from_millis(500)),
            max_block_bytes: 1 << 20,
            part_bytes: 64 << 10,
            mempool_max_txs: 50_000,
            mempool_max_bytes: 64 << 20,
            sync_status_interval: Duration::from_secs(2),
            sync_request_timeout: Duration::from_secs(5),
            byzantine: None,
        }
    }

    /// Checks the limits are usable.
    pub fn validate(&self) -> Result<()> {
        if self.part_bytes == 0 || self.part_bytes > (1 << 20) {
            return Err(Error::Config("part_bytes must be in 1..=1 MiB".into()));
        }
        // Malachite's gossip limit is 4 MiB per message; sync responses are limited to 10 MiB.
        if self.max_block_bytes < 1024 || self.max_block_bytes > (4 << 20) {
            return Err(Error::Config(
                "max_block_bytes must be in 1 KiB..=4 MiB".into(),
            ));
        }
        if self.mempool_max_txs == 0 || self.mempool_max_bytes == 0 {
            return Err(Error::Config("mempool limits must be positive".into()));
        }
        if self.peers.contains(&self.listen_addr) {
            return Err(Error::Config("peers must not contain listen_addr".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byzantine_mode_parses_only_a_double_vote_at_positive_heights() {
        assert_eq!(
            Byzantine::parse("double-vote@7").ok(),
            Some(Byzantine::DoubleVote { from: 7, to: 7 })
        );
        assert_eq!(
            Byzantine::parse("double-vote@4..9").ok(),
            Some(Byzantine::DoubleVote { from: 4, to: 9 })
        );
        for bad in [
            "double-vote",
            "double-vote@0",
            "double-vote@x",
            "double-vote@0..3",
            "double-vote@5..4",
            "double-vote@1..100",
            "double-vote@3..",
            "amnesia@3",
            "",
        ] {
            assert!(Byzantine::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
