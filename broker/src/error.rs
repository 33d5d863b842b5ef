//! The broker's error type and the one place that maps errors to Kafka error codes.
use spate_metadata::ErrorCode;

use spate_log::LogError;

/// Why a broker operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic or partition does not exist (in this broker's metadata image).
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// This broker does not lead the partition.
    #[error("{0}")]
    NotLeaderOrFollower(String),
    /// The partition has no leader right now.
    #[error("{0}")]
    LeaderNotAvailable(String),
    /// The caller's leader epoch is older than ours.
    #[error("{0}")]
    FencedLeaderEpoch(String),
    /// The caller's leader epoch is newer than ours.
    #[error("{0}")]
    UnknownLeaderEpoch(String),
    /// Fewer in-sync replicas than `min.insync.replicas`.
    #[error("{0}")]
    NotEnoughReplicas(String),
    /// Appended, but the ISR shrank below `min.insync.replicas` before it was committed.
    #[error("{0}")]
    NotEnoughReplicasAfterAppend(String),
    /// The request is malformed or contradictory.
    #[error("{0}")]
    InvalidRequest(String),
    /// The partition's log is unusable on this broker (I/O error, disk full).
    #[error("partition offline on this broker: {0}")]
    StorageOffline(String),
    /// The controller could not be reached or is not the active one.
    #[error("controller unavailable: {0}")]
    ControllerUnavailable(String),
    /// Waiting for replication or for the controller took longer than allowed.
    #[error("{0}")]
    Timeout(String),
    /// An error from the partition log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An idempotent producer's batch is out of sequence or from a fenced epoch.
    #[error(transparent)]
    Sequence(#[from] crate::partition::producer_state::SequenceError),
}

impl BrokerError {
    /// The Kafka error this maps to.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BrokerError::UnknownTopicOrPartition(_) => ErrorCode::UnknownTopicOrPartition,
            BrokerError::NotLeaderOrFollower(_) => ErrorCode::NotLeaderOrFollower,
            BrokerError::LeaderNotAvailable(_) => ErrorCode::LeaderNotAvailable,
            BrokerError::FencedLeaderEpoch(_) => ErrorCode::FencedLeaderEpoch,
            BrokerError::UnknownLeaderEpoch(_) => ErrorCode::UnknownLeaderEpoch,
            BrokerError::NotEnoughReplicas(_) => ErrorCode::NotEnoughReplicas,
            BrokerError::NotEnoughReplicasAfterAppend(_) => ErrorCode::NotEnoughReplicasAfterAppend,
            BrokerError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            BrokerError::StorageOffline(_) => ErrorCode::KafkaStorageError,
            BrokerError::ControllerUnavailable(_) => ErrorCode::NotController,
            BrokerError::Timeout(_) => ErrorCode::RequestTimedOut,
            BrokerError::Log(e) => log_error_code(e),
            BrokerError::Sequence(e) => e.error_code(),
        }
    }

    /// The Kafka error code this maps to.
    pub fn code(&self) -> i16 {
        self.error_code().code()
    }
}

fn log_error_code(e: &LogError) -> ErrorCode {
    match e {
        LogError::Io(_) => ErrorCode::KafkaStorageError,
        LogError::CorruptRecord(_) => ErrorCode::CorruptMessage,
        LogError::InvalidRecord(_) => ErrorCode::InvalidRecord,
        LogError::MessageTooLarge { .. } => ErrorCode::MessageTooLarge,
        LogError::UnsupportedMagic(_) => ErrorCode::UnsupportedForMessageFormat,
        LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        LogError::InvalidOffset(_) => ErrorCode::InvalidRequest,
    }
}

/// Result alias for broker operations.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared table agrees with the protocol crate's on every code both know: the same
    /// value, the same name, the same retriability.
    #[test]
    fn the_one_table_matches_kafka_protocol() {
        use kafka_protocol::error::ResponseError;
        for &code in ErrorCode::ALL {
            let Some(theirs) = ResponseError::try_from_code(code.code()) else {
                assert_eq!(code, ErrorCode::None);
                continue;
            };
            assert!(
                !matches!(theirs, ResponseError::Unknown(_)),
                "{code} unknown to kafka-protocol"
            );
            assert_eq!(format!("{theirs:?}"), format!("{code:?}"));
            assert_eq!(theirs.is_retriable(), code.is_retriable(), "{code}");
        }
    }

    #[test]
    fn log_errors_map_to_kafka_codes() {
        let crc = BrokerError::from(LogError::CorruptRecord("bad crc".into()));
        assert_eq!(crc.code(), 2);
        let big = BrokerError::from(LogError::MessageTooLarge { size: 10, max: 1 });
        assert_eq!(big.code(), 10);
        let range = BrokerError::from(LogError::OffsetOutOfRange {
            offset: 9,
            log_start_offset: 0,
            log_end_offset: 1,
        });
        assert_eq!(range.code(), 1);
        assert_eq!(BrokerError::NotLeaderOrFollower("x".into()).code(), 6);
        assert_eq!(BrokerError::FencedLeaderEpoch("x".into()).code(), 74);
    }
}
