//! Integration tests of the device SDK: codec and signatures, test vectors, key files, the
//! durable queue across restarts, and the MQTT publisher against a real in-process broker.
#![allow(missing_docs, clippy::unwrap_used)]

mod codec;
mod mqtt;
mod queue;
mod support;
mod vectors;
