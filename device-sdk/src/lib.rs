//! groundtruth device SDK: the wire protocol's reference implementation.
//!
//! What a device signs and publishes, byte for byte (see `PROTOCOL.md`): reading types for
//! energy meters, GPU agents and storage providers, one signed envelope for all of them, its
//! canonical versioned encoding, ed25519 signing, and the one verification rule every
//! validator applies (ZIP-215, identical for single and batch verification).
//!
//! The core (types, encoding, signing, verification) is `no_std` and allocation-free so that
//! microcontroller firmware can embed it. With the `std` feature (default) the crate adds key
//! files, a durable offline queue and an MQTT publisher.
//!
//! This crate must not depend on libp2p, winterfell, sled or axum.
#![cfg_attr(not(feature = "std"), no_std)]

mod error;
mod login;
pub mod ratelimit;
mod reading;
mod signing;

pub use error::{Error, Result};
#[cfg(feature = "std")]
pub use login::login_token;
pub use login::{
    login_token_ascii, login_token_bytes, verify_login, LoginError, DEFAULT_LOGIN_SKEW_SECS,
    LOGIN_CLIENT_ID_LEN, LOGIN_DOMAIN_TAG, LOGIN_TOKEN_HEX_LEN, LOGIN_TOKEN_LEN,
    MAX_LOGIN_CLIENT_ID_LEN,
};
pub use reading::{
    DeviceId, EnergyReading, GpuReading, Reading, ReadingBody, ReadingKind, StorageHeartbeat,
    PROTOCOL_VERSION,
};
#[cfg(feature = "std")]
pub use signing::verify_batch;
pub use signing::{DeviceKey, SignedReading, DOMAIN_TAG, MAX_FRAME_LEN, SIGNATURE_LEN};

#[cfg(feature = "std")]
pub mod keys;
#[cfg(feature = "std")]
mod publisher;
#[cfg(feature = "std")]
pub mod queue;
#[cfg(feature = "std")]
pub mod topics;

#[cfg(feature = "tls")]
pub use publisher::TlsConfig;
#[cfg(feature = "std")]
pub use publisher::{
    Credentials, Publisher, PublisherConfig, PublisherStatus, ResendLimits, ResendStats,
    MAX_INCOMING_PACKET,
};
#[cfg(feature = "std")]
pub use queue::{OfflineQueue, QueueConfig};
