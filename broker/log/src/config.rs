//! Per-partition log settings (the topic configs that shape storage).

/// Which timestamp the batches of a topic carry (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp every batch with the broker's clock at append.
    LogAppendTime,
}

/// Storage settings of one partition's log; defaults follow Kafka's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment before it grows past this.
    pub segment_bytes: u64,
    /// `segment.ms`: roll once incoming batches are this much newer than the active
    /// segment's first batch (Kafka's measure; the clock when batches carry no time).
    pub segment_ms: i64,
    /// `retention.ms`: delete segments whose largest timestamp is older; -1 = unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest segments while the log is larger; -1 = unlimited.
    pub retention_bytes: i64,
    /// `index.interval.bytes`: bytes between two offset index entries.
    pub index_interval_bytes: u32,
    /// `max.message.bytes`: largest accepted batch, log overhead included.
    pub max_message_bytes: u32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far a CreateTime timestamp may lie behind
    /// the broker's clock (Kafka's default: unbounded, so backfills are accepted).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far it may lie ahead (Kafka 4's default:
    /// one hour, so a skewed client clock cannot stamp records far in the future).
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` contains `compact`: every record needs a key (the cleaner keeps
    /// the latest record per key; a keyless one has none to be kept by).
    pub keys_required: bool,
}

/// One hour in milliseconds, Kafka 4's default for `message.timestamp.after.max.ms`.
pub const ONE_HOUR_MS: i64 = 60 * 60 * 1000;

/// Seven days in milliseconds, Kafka's default for `segment.ms` and `retention.ms`.
const SEVEN_DAYS_MS: i64 = 7 * 24 * 60 * 60 * 1000;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: SEVEN_DAYS_MS,
            retention_ms: SEVEN_DAYS_MS,
            retention_bytes: -1,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: ONE_HOUR_MS,
            keys_required: false,
        }
    }
}

impl LogConfig {
    /// Segment size limit actually applied: index entries hold u32 positions, and Kafka
    /// caps `segment.bytes` at `i32::MAX`, so every batch starts below 2 GiB.
    pub(crate) fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(i32::MAX as u64)
    }
}
