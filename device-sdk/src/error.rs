//! The SDK's error type.

/// Everything that can go wrong in the SDK.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The frame is shorter or longer than its kind requires.
    #[error("frame length {got} does not match the {expected} bytes its kind requires")]
    BadLength {
        /// Length that the version and kind require.
        expected: usize,
        /// Length received.
        got: usize,
    },
    /// The frame is too short to hold even the header.
    #[error("frame of {0} bytes is shorter than the header")]
    Truncated(usize),
    /// The version byte is not one this implementation speaks.
    #[error("unsupported protocol version {0}")]
    UnsupportedVersion(u8),
    /// The kind byte names no known reading kind.
    #[error("unknown reading kind {0}")]
    UnknownKind(u8),
    /// A field holds a value the protocol forbids (e.g. utilisation above 100 %).
    #[error("invalid field {field}: {reason}")]
    InvalidField {
        /// Field name as in PROTOCOL.md.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The device id is not a valid ed25519 public key encoding.
    #[error("device id is not a valid ed25519 public key")]
    BadDeviceKey,
    /// The signature does not verify under the device key.
    #[error("signature does not verify under the device key")]
    BadSignature,
    /// An output buffer is too small.
    #[error("output buffer of {got} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A key file could not be read or written.
    #[cfg(feature = "std")]
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// Path of the key file.
        path: std::string::String,
        /// What went wrong.
        reason: std::string::String,
    },
    /// The durable queue failed.
    #[cfg(feature = "std")]
    #[error("offline queue: {0}")]
    Queue(std::string::String),
    /// The offline queue holds its maximum number of readings.
    #[cfg(feature = "std")]
    #[error("offline queue is full ({0} readings waiting)")]
    QueueFull(usize),
    /// A configuration value is unusable.
    #[cfg(feature = "std")]
    #[error("invalid configuration: {0}")]
    Config(std::string::String),
    /// The publisher's background task has stopped (it was shut down or failed).
    #[cfg(feature = "std")]
    #[error("publisher has stopped")]
    PublisherStopped,
    /// The MQTT client failed.
    #[cfg(feature = "std")]
    #[error("mqtt: {0}")]
    Mqtt(std::string::String),
}

/// Result with the SDK's error.
pub type Result<T> = core::result::Result<T, Error>;
