//! Per-partition behaviour derived from topic configs (the parts the log itself does
//! not need): when to fsync and how many replicas must be in sync.
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
