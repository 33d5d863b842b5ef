//! Per-partition behaviour derived from topic configs (the parts the log itself does
//! not need): when to fsync and how many replicas must be in sync.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Durability and acknowledgement settings of one partition.
#[derive(Debug, Clone)]
pub struct PartitionSettings {
    /// `flush.messages=1`: fsync before acknowledging (group commit).
    pub sync_before_ack: bool,
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
        let long = |k: &str, d: i64| configs.get(k).and_then(|v| v.parse().ok()).unwrap_or(d);
        PartitionSettings {
            sync_before_ack: long("flush.messages", 1) <= 1,
            flush_ms: long("flush.ms", 1000).max(0),
            min_insync_replicas: long("min.insync.replicas", 1).clamp(1, i32::MAX as i64) as i32,
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
}
