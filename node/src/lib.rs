//! The groundtruth validator node as a library: ingest (MQTT in, checks, durable store, embedded
//! broker), the replicated ledger service (`chain`), metrics, and the wiring that runs them
//! (`node::run`). The `groundtruth` binary lives in `node/cli`.
//!
//! Folders: `ingest/` is everything from an MQTT message to a durable outcome and its PUBACK
//! (pure checks in `ingest::checks` and `ingest::gaps`); `chain/` is the ledger behind Malachite;
//! `audit` is the loop that closes epochs, attests what was read and proves assigned batches.
//! This crate must not depend on the simulator or `anyhow`.

pub mod audit;
pub mod chain;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod node;
pub mod oracle;
pub mod production;
pub mod retention;
