//! The groundtruth validator node: MQTT ingest (decode, batch signature checks, registry,
//! sequence and plausibility checks), durable storage in sled, metrics, and the CLI that
//! wires every crate of the workspace into the `groundtruth` binary.
//!
//! Pure checks live in `ingest::checks` and `ingest::gaps`; threads, sockets and disks at the
//! edges (`ingest`, `service`, `broker`, `store`).

pub mod broker;
pub mod chain;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod registry;
pub mod service;
pub mod store;
