//! Simulated fleets built on the device SDK: solar meters with a plausible production curve,
//! GPU agents and storage heartbeats, with per-device fault injection (inflated readings,
//! replays, equivocation, garbage, offline periods, forged signatures) and the exact outcome a
//! validator should reach for each message. Storage and GPU providers are real
//! `groundtruth provider` agents whose behaviour its [`providers`] module writes into their configs.
//!
//! Must not depend on node internals: it speaks only the wire protocol.

pub mod fleet;
pub mod providers;
pub mod publish;
pub mod solar;

pub use fleet::{
    expected_counts, metered_totals, Expect, FaultKind, Fleet, FleetConfig, Message, MeteredTotal,
};
pub use publish::{PublishConfig, PublishError, PublishStats, Publisher};
