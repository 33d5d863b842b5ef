//! Per-partition behaviour derived from topic configs (the parts the log itself does
//! not need): when to fsync, how many replicas must be in sync, and how the log cleaner
//! treats a compacted topic.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use spate_metadata::config_defs;

/// Durability and acknowledgement settings of one partition.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    /// `flush.messages=1`: fsync before acknowledging (group commit).
    pub sync_before_ack: bool,
    /// `flush.messages`: otherwise fsync once this many records are not yet durable.
    pub flush_messages: i64,
    /// `flush.ms`: otherwise fsync at least this often.
    pub flush_ms: i64,
    /// `min.insync.replicas`.
    pub min_insync_replicas: i32,
    /// Set when `cleanup.policy` contains `compact`.
    pub compaction: Option<CompactionSettings>,
    /// When the last interval flush was requested.
    last_flush_ms: Arc<AtomicI64>,
}

impl PartitionSettings {
    /// Settings from effective topic configs (defaults already merged in).
    pub fn from_configs(configs: &BTreeMap<String, String>) -> Self {
        // Parsed as validation parses them, one definition for every path.
        let long = |k: &str| config_defs::effective_long(configs, k);
        let flush_messages = long("flush.messages").max(1);
        PartitionSettings {
            sync_before_ack: flush_messages <= 1,
            flush_messages,
            flush_ms: long("flush.ms").max(0),
            min_insync_replicas: long("min.insync.replicas").clamp(1, i32::MAX as i64) as i32,
            compaction: CompactionSettings::from_configs(configs),
            last_flush_ms: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Whether an interval flush is due at `now_ms` (and records that it is requested).
    pub fn flush_due(&self, now_ms: i64) -> bool {
        let last = self.last_flush_ms.load(Ordering::Relaxed);
        if now_ms - last >= self.flush_ms {
            self.last_flush_ms.store(now_ms, Ordering::Relaxed);
            true
        } else {
            false
        }
    }
}

/// How the log cleaner treats a compacted topic's partitions.
#[derive(Debug, Clone, PartialEq)]
pub struct CompactionSettings {
    /// `delete.retention.ms`: how long tombstones stay once they could go.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: records younger than this are not cleaned.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a log whose oldest dirty record is older than this is
    /// cleaned whatever its dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: the dirty share that makes a log worth cleaning.
    pub min_cleanable_dirty_ratio: f64,
}

impl CompactionSettings {
    /// The settings of a topic whose `cleanup.policy` contains `compact`, else None.
    pub fn from_configs(configs: &BTreeMap<String, String>) -> Option<Self> {
        let policy = config_defs::effective(configs, "cleanup.policy").unwrap_or("");
        if !config_defs::list_items(policy).contains(&"compact") {
            return None;
        }
        let long = |k: &str| config_defs::effective_long(configs, k);
        let ratio = config_defs::effective(configs, "min.cleanable.dirty.ratio")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(0.5);
        Some(CompactionSettings {
            delete_retention_ms: long("delete.retention.ms").max(0),
            min_compaction_lag_ms: long("min.compaction.lag.ms").max(0),
            max_compaction_lag_ms: long("max.compaction.lag.ms").max(1),
            min_cleanable_dirty_ratio: ratio,
        })
    }
}

impl Default for PartitionSettings {
    fn default() -> Self {
        PartitionSettings::from_configs(&BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_messages_one_means_fsync_before_ack() {
        let mut c = BTreeMap::new();
        assert!(PartitionSettings::from_configs(&c).sync_before_ack);
        c.insert("flush.messages".to_string(), "10000".to_string());
        c.insert("flush.ms".to_string(), "200".to_string());
        let s = PartitionSettings::from_configs(&c);
        assert!(!s.sync_before_ack);
        assert!(s.flush_due(1000));
        assert!(!s.flush_due(1100));
        assert!(s.flush_due(1200));
    }

    #[test]
    fn compaction_settings_exist_only_under_the_compact_policy() {
        let mut c = BTreeMap::new();
        assert_eq!(PartitionSettings::from_configs(&c).compaction, None);
        c.insert("cleanup.policy".to_string(), "compact, delete".to_string());
        c.insert("min.cleanable.dirty.ratio".to_string(), "0.1".to_string());
        c.insert("delete.retention.ms".to_string(), "5".to_string());
        let s = PartitionSettings::from_configs(&c).compaction.unwrap();
        assert_eq!(s.min_cleanable_dirty_ratio, 0.1);
        assert_eq!(s.delete_retention_ms, 5);
        assert_eq!(s.min_compaction_lag_ms, 0);
        assert_eq!(s.max_compaction_lag_ms, i64::MAX);
    }

    #[test]
    fn values_are_read_as_validation_reads_them() {
        let mut c = BTreeMap::new();
        // Validation trims, so " 2 " is a valid min.insync.replicas: it must mean 2.
        c.insert("min.insync.replicas".to_string(), " 2 ".to_string());
        c.insert("flush.messages".to_string(), "100 ".to_string());
        let s = PartitionSettings::from_configs(&c);
        assert_eq!(s.min_insync_replicas, 2);
        assert_eq!((s.sync_before_ack, s.flush_messages), (false, 100));
        // Kafka's defaults when unset.
        let d = PartitionSettings::default();
        assert_eq!(d.min_insync_replicas, 1);
        assert_eq!(d.flush_ms, 1000);
    }
}
