//! Typed configuration of the validators' swarm.

use std::time::Duration;

use libp2p::Multiaddr;
use serde::{Deserialize, Serialize};

use crate::error::{P2pError, Result};

/// Room left in a gossipsub RPC frame for the envelope around one message's bytes (protobuf
/// framing, topic, sequence number, author and its 64-byte signature).
pub const GOSSIP_ENVELOPE_BYTES: usize = 1024;

/// Floor of the gossipsub frame limit. Gossipsub 0.49 drops a peer's whole inbound gossip
/// stream (not just the message) when one frame exceeds the limit, and control frames (IHAVE
/// lists of up to 5000 ids) must fit too; so the frame limit never goes below this, and
/// messages over `max_message_bytes` but under the frame limit are refused one by one.
pub const MIN_TRANSMIT_BYTES: usize = 256 * 1024;

/// Configuration of [`crate::P2p`]. Every field has a default (`P2pConfig::default()`), and the
/// struct reads from TOML with `#[serde(default)]`, durations as `"10s"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct P2pConfig {
    /// Address to listen on, e.g. `/ip4/0.0.0.0/tcp/27100` (port 0 picks a free port).
    pub listen: Multiaddr,
    /// Addresses dialled at start and whenever no peer is connected. An address ending in
    /// `/p2p/<peer id>` is dialled only while that peer is allowed and not connected.
    pub bootstrap: Vec<Multiaddr>,
    /// Largest gossip message payload, in bytes; larger ones are refused on publish and dropped
    /// (penalising the sender) on receipt.
    pub max_message_bytes: usize,
    /// Capacity of the channel delivering inbound gossip to the application. When it is full,
    /// further messages are ignored (not forwarded) until the application catches up.
    pub inbound_capacity: usize,
    /// Capacity of the command channel from [`crate::P2pHandle`]s to the swarm task.
    pub command_capacity: usize,
    /// Sustained gossip messages per second accepted from one connected peer (messages it
    /// relays included); beyond the burst, messages are rejected and count against its score.
    pub max_messages_per_peer_per_sec: u32,
    /// Burst allowance of the per-peer rate limit.
    pub message_burst: u32,
    /// Longest readings range (sequence numbers, inclusive) one request may ask for.
    pub max_readings_range: u64,
    /// Most bytes of frames in one readings response (the server stops before exceeding it).
    pub max_response_bytes: usize,
    /// Longest time window of one inventory request.
    #[serde(with = "humantime_serde")]
    pub max_inventory_window: Duration,
    /// Most devices in one inventory page (the asker pages on).
    pub max_inventory_entries: usize,
    /// Readings requests served at once; more are refused as busy.
    pub max_concurrent_serves: usize,
    /// Deadline of one readings request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Gossipsub heartbeat.
    #[serde(with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// How often to look for allowed peers that are not connected (Kademlia query and dials).
    #[serde(with = "humantime_serde")]
    pub discovery_interval: Duration,
    /// How long a peer that was cut off for misbehaviour (score under the graylist threshold)
    /// is refused before it may reconnect. Its gossipsub score is kept meanwhile.
    #[serde(with = "humantime_serde")]
    pub misbehaviour_cooldown: Duration,
    /// Idle connections are closed after this long.
    #[serde(with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// Incoming connections still in the handshake at once (before the allow-list can act).
    pub max_pending_incoming: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
}

impl Default for P2pConfig {
    fn default() -> Self {
        Self {
            listen: Multiaddr::empty()
                .with(libp2p::multiaddr::Protocol::Ip4([0, 0, 0, 0].into()))
                .with(libp2p::multiaddr::Protocol::Tcp(27100)),
            bootstrap: Vec::new(),
            max_message_bytes: 256 * 1024,
            inbound_capacity: 1024,
            command_capacity: 256,
            max_messages_per_peer_per_sec: 500,
            message_burst: 1000,
            max_readings_range: 4096,
            max_response_bytes: 4 * 1024 * 1024,
            max_inventory_window: Duration::from_secs(86_400),
            // 56 bytes an entry: ~460 KB a page, under the response limit.
            max_inventory_entries: 8192,
            max_concurrent_serves: 16,
            request_timeout: Duration::from_secs(10),
            heartbeat_interval: Duration::from_secs(1),
            discovery_interval: Duration::from_secs(30),
            misbehaviour_cooldown: Duration::from_secs(600),
            idle_connection_timeout: Duration::from_secs(120),
            max_pending_incoming: 32,
            max_connections_per_peer: 2,
        }
    }
}

impl P2pConfig {
    /// Checks the values that would otherwise fail deep inside libp2p, or make no sense.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(P2pError::Config(what.to_string()));
        if self.max_message_bytes == 0 || self.max_message_bytes > 16 * 1024 * 1024 {
            return bad("max_message_bytes must be in 1..=16 MiB");
        }
        if self.inbound_capacity == 0 || self.command_capacity == 0 {
            return bad("channel capacities must be positive");
        }
        if self.max_messages_per_peer_per_sec == 0 || self.message_burst == 0 {
            return bad("the per-peer message rate and burst must be positive");
        }
        if self.max_readings_range == 0 || self.max_readings_range > 1 << 20 {
            return bad("max_readings_range must be in 1..=1048576");
        }
        if self.max_response_bytes == 0 || self.max_response_bytes > 64 * 1024 * 1024 {
            return bad("max_response_bytes must be in 1..=64 MiB");
        }
        if self.max_inventory_entries == 0 || self.max_inventory_entries > 65_536 {
            return bad("max_inventory_entries must be in 1..=65536");
        }
        if self.max_inventory_window.is_zero() {
            return bad("max_inventory_window must be positive");
        }
        if self.max_concurrent_serves == 0 {
            return bad("max_concurrent_serves must be positive");
        }
        for (name, d) in [
            ("request_timeout", self.request_timeout),
            ("heartbeat_interval", self.heartbeat_interval),
            ("discovery_interval", self.discovery_interval),
            ("idle_connection_timeout", self.idle_connection_timeout),
        ] {
            if d.is_zero() {
                return Err(P2pError::Config(format!("{name} must be positive")));
            }
        }
        if self.max_pending_incoming == 0 || self.max_connections_per_peer == 0 {
            return bad("connection limits must be positive");
        }
        Ok(())
    }

    /// The gossipsub RPC frame limit derived from `max_message_bytes` (at least
    /// [`MIN_TRANSMIT_BYTES`]).
    pub fn max_transmit_bytes(&self) -> usize {
        self.max_message_bytes
            .saturating_add(GOSSIP_ENVELOPE_BYTES)
            .max(MIN_TRANSMIT_BYTES)
    }

    /// The codec limit on a readings response: the frame bytes plus CBOR headers (at most 9
    /// bytes per frame) and the envelope.
    pub fn max_response_wire_bytes(&self) -> u64 {
        let per_frame = self.max_readings_range.saturating_mul(9);
        (self.max_response_bytes as u64)
            .saturating_add(per_frame)
            .saturating_add(64)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_round_trips() {
        let c = P2pConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: P2pConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn partial_toml_takes_defaults_and_bad_values_are_refused() {
        let c: P2pConfig = toml::from_str(
            "listen = \"/ip4/127.0.0.1/tcp/0\"\nrequest_timeout = \"3s\"\nmax_readings_range = 10\n",
        )
        .unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(3));
        assert_eq!(c.max_readings_range, 10);
        assert_eq!(c.max_message_bytes, P2pConfig::default().max_message_bytes);
        let bad = P2pConfig {
            max_message_bytes: 0,
            ..P2pConfig::default()
        };
        assert!(matches!(bad.validate(), Err(P2pError::Config(_))));
        assert!(toml::from_str::<P2pConfig>("nonsense = 1").is_err());
    }
}
