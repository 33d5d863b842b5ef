//! The one error type of the log layer; the protocol layer maps it to Kafka error codes.

use thiserror::Error;

/// Everything that can go wrong while storing or reading a partition's log.
#[derive(Debug, Error)]
pub enum LogError {
    /// The disk or file system failed; the partition should go offline on this broker.
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that do not form a batch: bad CRC, truncated, garbled.
    #[error("corrupt record batch: {0}")]
    CorruptRecord(String),
    /// A well-formed batch that breaks a rule: record count, lengths, offsets.
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// One record of a batch breaks a rule (its framing, offset delta or timestamp):
    /// reported per record (Produce v8+ `record_errors`), the whole batch refused.
    #[error("invalid record batch: record {index}: {reason}")]
    InvalidRecordAt {
        /// The record's index in its batch (its offset delta).
        index: i32,
        /// What is wrong with it.
        reason: String,
    },
    /// A CreateTime timestamp outside the topic's `message.timestamp.before.max.ms` /
    /// `message.timestamp.after.max.ms` window around the broker's clock.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(String),
    /// A batch larger than the topic's `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds the {max}-byte limit (max.message.bytes); send smaller batches or raise the topic's max.message.bytes")]
    MessageTooLarge {
        /// Size of the offending batch, log overhead included.
        size: u64,
        /// The configured limit.
        max: u64,
    },
    /// A batch whose magic byte is not 2 (only RecordBatch v2 is stored).
    #[error("unsupported record batch magic {0}: only magic 2 (RecordBatch v2, Kafka 0.11+) is accepted")]
    UnsupportedMagic(i8),
    /// A read outside `[log_start_offset, log_end_offset]`.
    #[error("offset {offset} is out of range: the log holds offsets [{log_start_offset}, {log_end_offset})")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: i64,
        /// First offset still readable.
        log_start_offset: i64,
        /// Offset the next appended record will get.
        log_end_offset: i64,
    },
    /// An offset argument that does not fit the log's state (follower append not at LEO, negative).
    #[error("invalid offset: {0}")]
    InvalidOffset(String),
}
