//! Effective topic configuration: the controller's config definitions (defaults) with a
//! topic's dynamic overrides from the metadata image, and its translation into the log's
//! settings.
use std::collections::BTreeMap;

use spate_metadata::config_defs;
use spate_metadata::topic_defaults::TopicDefaults;
use spate_metadata::MetadataImage;

use spate_log::{LogConfig, TimestampType};

/// Every known topic config of `topic` with its value (override, else the broker's
/// default).
pub fn effective(
    image: &MetadataImage,
    topic: &str,
    defaults: &TopicDefaults,
) -> BTreeMap<String, String> {
    defaults.effective(image.topic_config(topic))
}

/// Whether `name` is set on the topic itself (rather than defaulted).
pub fn is_override(image: &MetadataImage, topic: &str, name: &str) -> bool {
    image.topic_config(topic).contains_key(name)
}

/// The log settings of a topic's effective configs.
pub fn log_config(configs: &BTreeMap<String, String>) -> LogConfig {
    let d = LogConfig::default();
    // Overrides parsed as validation parses them (the definition's default otherwise).
    let long = |k: &str, default: i64| {
        configs
            .get(k)
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(default)
    };
    // Retention by time and size is the "delete" cleanup policy: without it (e.g.
    // `cleanup.policy=""`) Kafka keeps every segment, as does this log.
    let policy = |item: &str| {
        configs
            .get("cleanup.policy")
            .is_none_or(|p| config_defs::list_items(p).contains(&item))
    };
    let deletes = policy("delete");
    let compacts = configs.get("cleanup.policy").is_some() && policy("compact");
    let unless_kept = |v: i64| if deletes { v } else { -1 };
    LogConfig {
        segment_bytes: long("segment.bytes", d.segment_bytes as i64).max(1) as u64,
        segment_ms: long("segment.ms", d.segment_ms),
        retention_ms: unless_kept(long("retention.ms", d.retention_ms)),
        retention_bytes: unless_kept(long("retention.bytes", d.retention_bytes)),
        index_interval_bytes: long("index.interval.bytes", d.index_interval_bytes as i64)
            .clamp(1, u32::MAX as i64) as u32,
        max_message_bytes: long("max.message.bytes", d.max_message_bytes as i64)
            .clamp(0, u32::MAX as i64) as u32,
        timestamp_type: match configs.get("message.timestamp.type").map(String::as_str) {
            Some("LogAppendTime") => TimestampType::LogAppendTime,
            _ => TimestampType::CreateTime,
        },
        timestamp_before_max_ms: long("message.timestamp.before.max.ms", d.timestamp_before_max_ms),
        timestamp_after_max_ms: long("message.timestamp.after.max.ms", d.timestamp_after_max_ms),
        keys_required: compacts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_the_log_config() {
        let mut c = BTreeMap::new();
        c.insert("segment.bytes".to_string(), "1024".to_string());
        c.insert("retention.ms".to_string(), "-1".to_string());
        c.insert(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        );
        let lc = log_config(&c);
        assert_eq!(lc.segment_bytes, 1024);
        assert_eq!(lc.retention_ms, -1);
        assert!(matches!(lc.timestamp_type, TimestampType::LogAppendTime));
    }

    #[test]
    fn retention_applies_only_under_the_delete_policy() {
        let mut c = BTreeMap::new();
        c.insert("retention.ms".to_string(), "1000".to_string());
        c.insert("retention.bytes".to_string(), "4096".to_string());
        assert_eq!(log_config(&c).retention_ms, 1000);
        c.insert("cleanup.policy".to_string(), "delete".to_string());
        assert_eq!(log_config(&c).retention_bytes, 4096);
        c.insert("cleanup.policy".to_string(), String::new());
        let kept = log_config(&c);
        assert_eq!((kept.retention_ms, kept.retention_bytes), (-1, -1));
    }

    #[test]
    fn compacted_topics_require_keys_and_keep_retention_only_with_delete() {
        let mut c = BTreeMap::new();
        assert!(!log_config(&c).keys_required);
        c.insert("retention.ms".to_string(), "1000".to_string());
        c.insert("cleanup.policy".to_string(), "compact".to_string());
        let compact = log_config(&c);
        assert!(compact.keys_required);
        assert_eq!(compact.retention_ms, -1);
        c.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        let both = log_config(&c);
        assert!(both.keys_required);
        assert_eq!(both.retention_ms, 1000);
    }

    #[test]
    fn every_known_config_has_a_value() {
        let image = MetadataImage::default();
        let c = effective(&image, "t", &TopicDefaults::default());
        assert!(c.contains_key("retention.ms"));
        assert!(c.contains_key("flush.messages"));
        assert_eq!(c.len(), config_defs::TOPIC_CONFIGS.len());
    }

    #[test]
    fn a_broker_default_policy_compacts_topics_without_their_own() {
        let image = MetadataImage::default();
        let mut defaults = TopicDefaults::default();
        assert!(!log_config(&effective(&image, "t", &defaults)).keys_required);
        defaults.set("log.cleanup.policy", "compact").unwrap();
        let lc = log_config(&effective(&image, "t", &defaults));
        assert!(lc.keys_required);
        assert_eq!(lc.retention_ms, -1, "compact alone keeps every segment");
    }
}
