//! Integration tests of the validators' swarm over real TCP sockets on 127.0.0.1.
#![allow(clippy::unwrap_used)]

mod allowlist;
mod gossip;
mod readings;
mod support;
