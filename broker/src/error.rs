//! The broker's error type and the one place that maps errors to Kafka error codes.
use spate_metadata::ErrorCode;

use spate_log::LogError;
use spate_metadata::ids::NodeId;

use crate::topic_partition::TopicPartition;

/// Why a broker operation failed. Variants carry the facts (partition, broker, epochs,
/// sizes); the message is rendered from them and the Kafka code comes from
/// [`BrokerError::error_code`], the one place errors meet the wire.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The topic does not exist in this broker's metadata image.
    #[error("topic '{topic}' does not exist")]
    UnknownTopic {
        /// The topic asked for.
        topic: String,
    },
    /// No topic has this id here.
    #[error("no topic with id {id} here")]
    UnknownTopicId {
        /// The id asked for.
        id: uuid::Uuid,
    },
    /// The replica here belongs to another incarnation of the topic than the id asked
    /// for (the topic was recreated and this broker has not caught up, or the client's
    /// metadata is old).
    #[error("{partition}: the log here is of topic id {log}, not {asked}")]
    InconsistentTopicId {
        /// The partition.
        partition: TopicPartition,
        /// The id the request named.
        asked: uuid::Uuid,
        /// The id of the log on this broker.
        log: uuid::Uuid,
    },
    /// The topic exists but not this partition.
    #[error("topic '{topic}' has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The partition asked for.
        partition: i32,
        /// How many the topic has.
        partitions: usize,
    },
    /// This broker cannot serve the partition in the role asked for.
    #[error("{partition}: {why} (broker {broker})")]
    NotLeaderOrFollower {
        /// The partition.
        partition: TopicPartition,
        /// This broker.
        broker: NodeId,
        /// What is missing.
        why: NotServing,
    },
    /// The partition has no leader right now.
    #[error("{partition} has no leader")]
    LeaderNotAvailable {
        /// The partition.
        partition: TopicPartition,
    },
    /// The caller's leader epoch is older than ours (KIP-320).
    #[error("{partition}: leader epoch {given} is older than the current {current}")]
    FencedLeaderEpoch {
        /// The partition.
        partition: TopicPartition,
        /// The epoch the caller sent.
        given: i32,
        /// Ours.
        current: i32,
    },
    /// The caller's leader epoch is newer than ours (KIP-320).
    #[error("{partition}: leader epoch {given} is newer than the current {current}")]
    UnknownLeaderEpoch {
        /// The partition.
        partition: TopicPartition,
        /// The epoch the caller sent.
        given: i32,
        /// Ours.
        current: i32,
    },
    /// acks=all refused before appending: the ISR is below `min.insync.replicas`.
    #[error("{partition}: ISR has {isr_size} members, below min.insync.replicas={min_insync}")]
    NotEnoughReplicas {
        /// The partition.
        partition: TopicPartition,
        /// Members of the committed ISR.
        isr_size: usize,
        /// The topic's `min.insync.replicas`.
        min_insync: usize,
    },
    /// Appended, but the ISR shrank below `min.insync.replicas` before it was committed.
    #[error("{partition}: written, but the ISR shrank to {isr_size} members, below min.insync.replicas={min_insync}")]
    NotEnoughReplicasAfterAppend {
        /// The partition.
        partition: TopicPartition,
        /// Members of the committed ISR when the HW passed the batch.
        isr_size: usize,
        /// The topic's `min.insync.replicas`.
        min_insync: usize,
    },
    /// The request is malformed or contradictory.
    #[error("{0}")]
    InvalidRequest(String),
    /// The partition's log is unusable on this broker (I/O error, disk full).
    #[error("{partition}: partition offline on this broker: {reason}")]
    StorageOffline {
        /// The partition.
        partition: TopicPartition,
        /// What failed.
        reason: String,
    },
    /// The controller could not be reached or is not the active one.
    #[error("controller unavailable: {0}")]
    ControllerUnavailable(String),
    /// A produce was not acknowledged within the request's timeout.
    #[error("{partition}: not acknowledged (acks={acks}) within the request timeout")]
    AckTimeout {
        /// The partition.
        partition: TopicPartition,
        /// The produce's acks.
        acks: i16,
    },
    /// An error from the partition log.
    #[error(transparent)]
    Log(#[from] LogError),
    /// An idempotent producer's batch is out of sequence or from a fenced epoch.
    #[error(transparent)]
    Sequence(#[from] crate::partition::producer_state::SequenceError),
}

/// Why a broker cannot serve a partition (NOT_LEADER_OR_FOLLOWER).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotServing {
    /// The metadata image names another leader (or this broker is not a replica).
    #[error("this broker does not lead it")]
    NotLeader,
    /// No replica of the partition lives on this broker (any more).
    #[error("not hosted on this broker")]
    NotHosted,
    /// The image names this broker leader, but the replica has not applied it yet.
    #[error("leadership not yet applied here")]
    LeadershipNotApplied,
    /// A follower's write for a leadership this replica no longer follows.
    #[error("no longer following at leader epoch {leader_epoch}")]
    NoLongerFollowing {
        /// The leader epoch the write belonged to.
        leader_epoch: i32,
    },
    /// The leadership a write waited in ended before it was acknowledged.
    #[error("leadership at epoch {leader_epoch} ended before the write was acknowledged")]
    LeadershipEnded {
        /// The leader epoch the write was appended in.
        leader_epoch: i32,
    },
    /// A follower fetch from a broker that is not a replica.
    #[error("broker {replica} is not a replica")]
    NotAReplica {
        /// The fetching broker.
        replica: NodeId,
    },
}

impl BrokerError {
    /// The Kafka error this maps to.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            BrokerError::UnknownTopic { .. } | BrokerError::UnknownPartition { .. } => {
                ErrorCode::UnknownTopicOrPartition
            }
            BrokerError::UnknownTopicId { .. } => ErrorCode::UnknownTopicId,
            BrokerError::InconsistentTopicId { .. } => ErrorCode::InconsistentTopicId,
            BrokerError::NotLeaderOrFollower { .. } => ErrorCode::NotLeaderOrFollower,
            BrokerError::LeaderNotAvailable { .. } => ErrorCode::LeaderNotAvailable,
            BrokerError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            BrokerError::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
            BrokerError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            BrokerError::NotEnoughReplicasAfterAppend { .. } => {
                ErrorCode::NotEnoughReplicasAfterAppend
            }
            BrokerError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            BrokerError::StorageOffline { .. } => ErrorCode::KafkaStorageError,
            BrokerError::ControllerUnavailable(_) => ErrorCode::NotController,
            BrokerError::AckTimeout { .. } => ErrorCode::RequestTimedOut,
            BrokerError::Log(e) => log_error_code(e),
            BrokerError::Sequence(e) => e.error_code(),
        }
    }

    /// The Kafka error code this maps to.
    pub fn code(&self) -> i16 {
        self.error_code().code()
    }

    /// Whether the partition cannot be served here any more (its leadership moved or
    /// its log failed): internal writers hand their work to the next leader.
    pub fn is_leadership_lost(&self) -> bool {
        matches!(
            self,
            BrokerError::NotLeaderOrFollower { .. } | BrokerError::StorageOffline { .. }
        )
    }
}

fn log_error_code(e: &LogError) -> ErrorCode {
    match e {
        LogError::Io(_) => ErrorCode::KafkaStorageError,
        LogError::CorruptRecord(_) => ErrorCode::CorruptMessage,
        LogError::InvalidRecord(_) | LogError::InvalidRecordAt { .. } => ErrorCode::InvalidRecord,
        LogError::InvalidTimestamp(_) => ErrorCode::InvalidTimestamp,
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
        let tp = TopicPartition::new("t", 0);
        let not_leader = BrokerError::NotLeaderOrFollower {
            partition: tp.clone(),
            broker: NodeId(1),
            why: NotServing::NotLeader,
        };
        assert_eq!(not_leader.code(), 6);
        assert_eq!(
            not_leader.to_string(),
            "t-0: this broker does not lead it (broker 1)"
        );
        let fenced = BrokerError::FencedLeaderEpoch {
            partition: tp,
            given: 3,
            current: 4,
        };
        assert_eq!(fenced.code(), 74);
        assert_eq!(
            fenced.to_string(),
            "t-0: leader epoch 3 is older than the current 4"
        );
    }
}
