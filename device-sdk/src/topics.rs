//! MQTT topic layout (PROTOCOL.md, "Topics").

use crate::reading::DeviceId;

/// Prefix of every groundtruth topic; the version changes when the layout does.
pub const PREFIX: &str = "gt/v1";

/// Filter a validator subscribes to for every device's readings.
pub const READINGS_FILTER: &str = "gt/v1/readings/+/+";

/// Number of readings partitions: the first hex digit of the device id. A validator may spread
/// them over several MQTT connections (per-device order is kept, since a device's readings all
/// travel in one partition) to lift a broker's per-connection in-flight window.
pub const READINGS_PARTITIONS: u8 = 16;

/// The partition of a device: the first hex digit of its id (0..16).
pub fn readings_partition(device: &DeviceId) -> u8 {
    device.0[0] >> 4
}

/// Topic a device publishes its signed readings to:
/// `gt/v1/readings/<partition hex digit>/<device id hex>`.
pub fn readings_topic(device: &DeviceId) -> String {
    format!(
        "{PREFIX}/readings/{:x}/{device}",
        readings_partition(device)
    )
}

/// Filter for one partition's readings: `gt/v1/readings/<partition hex digit>/+`.
pub fn readings_partition_filter(partition: u8) -> String {
    format!("{PREFIX}/readings/{:x}/+", partition % READINGS_PARTITIONS)
}

/// Parses the device id out of a readings topic; `None` if the topic is not one, or names a
/// partition that is not the device's.
pub fn device_of_readings_topic(topic: &str) -> Option<DeviceId> {
    let rest = topic.strip_prefix("gt/v1/readings/")?;
    let (partition, hex_id) = rest.split_once('/')?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    let device = DeviceId(id);
    (partition.len() == 1 && u8::from_str_radix(partition, 16).ok()? == readings_partition(&device))
        .then_some(device)
}

/// Filter a validator's resend requests travel on, for every device: `gt/v1/resend/+`.
pub const RESEND_FILTER: &str = "gt/v1/resend/+";

/// Topic a validator publishes a resend request for one device to, and the device subscribes
/// to: `gt/v1/resend/<device id hex>`. The payload is [`encode_resend_request`]'s.
pub fn resend_topic(device: &DeviceId) -> String {
    format!("{PREFIX}/resend/{device}")
}

/// Parses the device id out of a resend topic; `None` if the topic is not one.
pub fn device_of_resend_topic(topic: &str) -> Option<DeviceId> {
    let hex_id = topic.strip_prefix("gt/v1/resend/")?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(DeviceId(id))
}

/// Length of a resend request's payload: one big-endian u64, the first sequence number wanted.
pub const RESEND_REQUEST_LEN: usize = 8;

/// Longest resend-request payload a device reads. Anything longer is refused unread and
/// counted (`ResendStats::requests_oversize`); the protocol's requests are exactly
/// [`RESEND_REQUEST_LEN`] bytes.
pub const MAX_RESEND_REQUEST_LEN: usize = RESEND_REQUEST_LEN;

/// Payload of a resend request asking for every retained reading with `seq >= from_seq`.
pub fn encode_resend_request(from_seq: u64) -> [u8; RESEND_REQUEST_LEN] {
    from_seq.to_be_bytes()
}

/// Decodes a resend request's payload; `None` unless it is exactly 8 bytes.
pub fn decode_resend_request(payload: &[u8]) -> Option<u64> {
    let bytes: [u8; RESEND_REQUEST_LEN] = payload.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Splits a broker address `mqtt://host:port` (or `tcp://host:port`, or bare `host:port`) into
/// host and port; `None` when it is not of that form.
pub fn broker_address(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("mqtt://")
        .or_else(|| url.strip_prefix("tcp://"))
        .unwrap_or(url);
    let (host, port) = rest.rsplit_once(':')?;
    let port = port.trim_end_matches('/').parse().ok()?;
    (!host.is_empty()).then(|| (host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_round_trip() {
        let id = DeviceId([7u8; 32]);
        let t = readings_topic(&id);
        assert_eq!(device_of_readings_topic(&t), Some(id));
        assert_eq!(t, format!("gt/v1/readings/0/{id}"));
        assert_eq!(device_of_readings_topic("gt/v1/readings/zz"), None);
        assert_eq!(
            device_of_readings_topic(&format!("gt/v1/readings/1/{id}")),
            None
        );
        assert_eq!(
            device_of_readings_topic(&format!("gt/v1/readings/00/{id}")),
            None
        );
        assert_eq!(
            device_of_readings_topic(&format!("gt/v1/readings/{id}")),
            None
        );
        let high = DeviceId([0xa7; 32]);
        assert_eq!(readings_topic(&high), format!("gt/v1/readings/a/{high}"));
        assert_eq!(device_of_readings_topic(&readings_topic(&high)), Some(high));
        assert_eq!(readings_partition_filter(10), "gt/v1/readings/a/+");
        assert_eq!(device_of_readings_topic("other/topic"), None);
    }

    #[test]
    fn resend_topic_and_payload_round_trip() {
        let id = DeviceId([9u8; 32]);
        let t = resend_topic(&id);
        assert!(t.starts_with("gt/v1/resend/"));
        assert_eq!(device_of_resend_topic(&t), Some(id));
        assert_eq!(device_of_resend_topic(&readings_topic(&id)), None);
        assert_eq!(decode_resend_request(&encode_resend_request(42)), Some(42));
        assert_eq!(decode_resend_request(&[0u8; 7]), None);
        assert_eq!(decode_resend_request(&[0u8; 9]), None);
    }

    #[test]
    fn broker_addresses() {
        assert_eq!(
            broker_address("mqtt://127.0.0.1:1883"),
            Some(("127.0.0.1".into(), 1883))
        );
        assert_eq!(
            broker_address("tcp://broker:9/"),
            Some(("broker".into(), 9))
        );
        assert_eq!(broker_address("localhost:9"), Some(("localhost".into(), 9)));
        assert_eq!(broker_address("mqtt://nohost"), None);
        assert_eq!(broker_address("mqtt://:1"), None);
        assert_eq!(broker_address("mqtt://h:99999"), None);
    }
}
