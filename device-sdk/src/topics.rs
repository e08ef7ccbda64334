//! MQTT topic layout (PROTOCOL.md, "Topics").

use crate::reading::DeviceId;

/// Prefix of every groundtruth topic; the version changes when the layout does.
pub const PREFIX: &str = "gt/v1";

/// Filter a validator subscribes to for every device's readings.
pub const READINGS_FILTER: &str = "gt/v1/readings/+";

/// Topic a device publishes its signed readings to: `gt/v1/readings/<device id hex>`.
pub fn readings_topic(device: &DeviceId) -> String {
    format!("{PREFIX}/readings/{device}")
}

/// Parses the device id out of a readings topic; `None` if the topic is not one.
pub fn device_of_readings_topic(topic: &str) -> Option<DeviceId> {
    let hex_id = topic.strip_prefix("gt/v1/readings/")?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).ok()?;
    Some(DeviceId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_round_trip() {
        let id = DeviceId([7u8; 32]);
        let t = readings_topic(&id);
        assert_eq!(device_of_readings_topic(&t), Some(id));
        assert_eq!(device_of_readings_topic("gt/v1/readings/zz"), None);
        assert_eq!(device_of_readings_topic("other/topic"), None);
    }
}
