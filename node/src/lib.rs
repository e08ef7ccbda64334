//! The groundtruth validator node: MQTT ingest (decode, batch signature checks, registry,
//! sequence and plausibility checks), durable storage in sled, metrics, and the CLI that
//! wires every crate of the workspace into the `groundtruth` binary.

pub mod cli;
