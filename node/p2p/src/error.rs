//! The crate's one error type.

use std::time::Duration;

use libp2p::PeerId;

use crate::topic::Topic;
use crate::wire::Refusal;

/// Result alias for this crate.
pub type Result<T, E = P2pError> = std::result::Result<T, E>;

/// Everything that can go wrong in the validators' p2p layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum P2pError {
    /// The 32-byte consensus secret could not be turned into a libp2p key.
    #[error("invalid ed25519 secret key: {0}")]
    InvalidSecret(String),
    /// A consensus public key is not a valid ed25519 point.
    #[error("invalid ed25519 consensus public key: {0}")]
    InvalidPublicKey(String),
    /// A configuration value is out of range.
    #[error("invalid p2p configuration: {0}")]
    Config(String),
    /// Building the transport or the behaviour failed.
    #[error("p2p transport setup failed: {0}")]
    Transport(String),
    /// The swarm could not listen on the configured address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The configured listen address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A message is larger than `max_message_bytes`.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    MessageTooLarge {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// No connected peer is subscribed to the topic yet (the mesh has not formed): retry later.
    #[error("no connected peer is subscribed to {0}; retry once peers are connected")]
    NoPeers(Topic),
    /// The same bytes were already published on this topic recently.
    #[error("this message was already published on {0}")]
    Duplicate(Topic),
    /// Any other gossipsub publish failure.
    #[error("publish on {topic} failed: {reason}")]
    Publish {
        /// The topic.
        topic: Topic,
        /// Why.
        reason: String,
    },
    /// A readings request whose range is empty, reversed or longer than allowed.
    #[error("readings range {from}..={to} is reversed or longer than {max} sequence numbers")]
    InvalidRange {
        /// First sequence number asked for.
        from: u64,
        /// Last sequence number asked for (inclusive).
        to: u64,
        /// The longest range allowed.
        max: u64,
    },
    /// The peer is not in the current allow-list.
    #[error("peer {0} is not in the allow-list")]
    NotAllowed(PeerId),
    /// The serving peer refused the request.
    #[error("the peer refused the readings request: {0}")]
    Refused(Refusal),
    /// The request could not be delivered or answered (dial failure, timeout, connection closed,
    /// unsupported protocol, or a response the codec rejected as oversized or malformed).
    #[error("request to {peer} failed: {reason}")]
    Request {
        /// The peer asked.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The response decoded but breaks the request's limits.
    #[error("response from {peer} breaks the limits: {reason}")]
    BadResponse {
        /// The peer that answered.
        peer: PeerId,
        /// Which limit.
        reason: String,
    },
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The p2p task has shut down (or panicked); the handle is no longer usable.
    #[error("the p2p task has stopped")]
    Stopped,
}
