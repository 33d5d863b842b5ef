//! The crate's error type and the one place that maps internal errors to Kafka error codes.

use crate::metadata::MetadataError;

/// The Kafka error codes the controller answers with (values from Kafka's `Errors` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i16)]
pub enum ErrorCode {
    /// Success.
    None = 0,
    /// Anything we could not classify; the message says more.
    UnknownServerError = -1,
    /// The topic or partition does not exist.
    UnknownTopicOrPartition = 3,
    /// The broker is not the partition's leader (or follower) it claims to be.
    NotLeaderOrFollower = 6,
    /// The request timed out (e.g. no Raft quorum).
    RequestTimedOut = 7,
    /// The topic name breaks Kafka's naming rules.
    InvalidTopicException = 17,
    /// A topic with this name already exists.
    TopicAlreadyExists = 36,
    /// The partition count is invalid.
    InvalidPartitions = 37,
    /// The replication factor is invalid or above the live brokers.
    InvalidReplicationFactor = 38,
    /// An explicit replica assignment is invalid.
    InvalidReplicaAssignment = 39,
    /// A config key or value is invalid.
    InvalidConfig = 40,
    /// This node is not the active controller; retry on another.
    NotController = 41,
    /// The request is malformed (duplicates, conflicting fields).
    InvalidRequest = 42,
    /// The leader epoch in the request is older than the partition's.
    FencedLeaderEpoch = 74,
    /// The broker epoch in the request is not the broker's current one.
    StaleBrokerEpoch = 77,
    /// No topic has this id.
    UnknownTopicId = 100,
    /// Another live broker already registered with this id.
    DuplicateBrokerRegistration = 101,
    /// A proposed ISR member is fenced, unregistered, or restarted since (KIP-903).
    IneligibleReplica = 107,
    /// The partition epoch in the request is not the current one (compare-and-set lost).
    InvalidUpdateVersion = 95,
}

impl ErrorCode {
    /// The code as carried by the controller's protobuf responses.
    pub fn code(self) -> i32 {
        self as i16 as i32
    }

    /// Kafka's constant name, for log lines and messages.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::None => "NONE",
            ErrorCode::UnknownServerError => "UNKNOWN_SERVER_ERROR",
            ErrorCode::UnknownTopicOrPartition => "UNKNOWN_TOPIC_OR_PARTITION",
            ErrorCode::NotLeaderOrFollower => "NOT_LEADER_OR_FOLLOWER",
            ErrorCode::RequestTimedOut => "REQUEST_TIMED_OUT",
            ErrorCode::InvalidTopicException => "INVALID_TOPIC_EXCEPTION",
            ErrorCode::TopicAlreadyExists => "TOPIC_ALREADY_EXISTS",
            ErrorCode::InvalidPartitions => "INVALID_PARTITIONS",
            ErrorCode::InvalidReplicationFactor => "INVALID_REPLICATION_FACTOR",
            ErrorCode::InvalidReplicaAssignment => "INVALID_REPLICA_ASSIGNMENT",
            ErrorCode::InvalidConfig => "INVALID_CONFIG",
            ErrorCode::NotController => "NOT_CONTROLLER",
            ErrorCode::InvalidRequest => "INVALID_REQUEST",
            ErrorCode::FencedLeaderEpoch => "FENCED_LEADER_EPOCH",
            ErrorCode::StaleBrokerEpoch => "STALE_BROKER_EPOCH",
            ErrorCode::UnknownTopicId => "UNKNOWN_TOPIC_ID",
            ErrorCode::DuplicateBrokerRegistration => "DUPLICATE_BROKER_REGISTRATION",
            ErrorCode::IneligibleReplica => "INELIGIBLE_REPLICA",
            ErrorCode::InvalidUpdateVersion => "INVALID_UPDATE_VERSION",
        }
    }
}

/// A request-level failure decided by the controller: a Kafka code plus a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.name())]
pub struct ApiError {
    /// The Kafka error code.
    pub code: ErrorCode,
    /// What happened and, where useful, what to do.
    pub message: String,
}

impl ApiError {
    /// Builds an error from a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// Everything that can go wrong in the controller crate.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    /// This node is not the Raft leader; `leader` is the current one if known.
    #[error("this node is not the active controller (current leader: {})", fmt_leader(*.leader))]
    NotController {
        /// The leader this node knows of.
        leader: Option<u64>,
    },
    /// The sled database failed.
    #[error("controller storage: {0}")]
    Sled(#[from] sled::Error),
    /// openraft reported a storage failure (boxed: openraft's error is large).
    #[error("raft storage: {0}")]
    RaftStorage(Box<openraft::StorageError<u64>>),
    /// openraft failed in a way the caller cannot fix by retrying elsewhere.
    #[error("raft: {0}")]
    Raft(String),
    /// A local I/O error.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// Connecting to a controller failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A gRPC call failed.
    #[error("rpc failed: {0}")]
    Rpc(Box<tonic::Status>),
    /// Bytes from disk or from the network did not decode.
    #[error("decode: {0}")]
    Decode(String),
    /// The controller configuration is unusable.
    #[error("invalid controller config: {0}")]
    Config(String),
    /// A wait ran out of time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The node is shutting down.
    #[error("the controller is shutting down")]
    ShuttingDown,
    /// A metadata record did not apply.
    #[error("metadata: {0}")]
    Metadata(#[from] MetadataError),
    /// A decision failed with a Kafka error.
    #[error(transparent)]
    Api(#[from] ApiError),
}

fn fmt_leader(leader: Option<u64>) -> String {
    leader.map_or_else(|| "unknown".to_string(), |l| l.to_string())
}

impl From<openraft::StorageError<u64>> for ControllerError {
    fn from(e: openraft::StorageError<u64>) -> Self {
        ControllerError::RaftStorage(Box::new(e))
    }
}

impl From<tonic::Status> for ControllerError {
    fn from(s: tonic::Status) -> Self {
        ControllerError::Rpc(Box::new(s))
    }
}

impl ControllerError {
    /// The Kafka error code a client should see for this error (the single mapping point).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ControllerError::NotController { .. } | ControllerError::ShuttingDown => {
                ErrorCode::NotController
            }
            ControllerError::Timeout(_) => ErrorCode::RequestTimedOut,
            ControllerError::Api(e) => e.code,
            ControllerError::Rpc(s) => match s.code() {
                tonic::Code::Unavailable => ErrorCode::NotController,
                tonic::Code::DeadlineExceeded => ErrorCode::RequestTimedOut,
                _ => ErrorCode::UnknownServerError,
            },
            _ => ErrorCode::UnknownServerError,
        }
    }

    /// Whether retrying on another (or the same, later) controller may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ControllerError::NotController { .. }
            | ControllerError::ShuttingDown
            | ControllerError::Timeout(_)
            | ControllerError::Transport(_) => true,
            ControllerError::Rpc(s) => {
                matches!(
                    s.code(),
                    tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
                )
            }
            _ => false,
        }
    }

    /// The error as an [`ApiError`] for a response body.
    pub fn to_api(&self) -> ApiError {
        match self {
            ControllerError::Api(e) => e.clone(),
            other => ApiError::new(other.error_code(), other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_kafka() {
        assert_eq!(ErrorCode::NotController.code(), 41);
        assert_eq!(ErrorCode::UnknownServerError.code(), -1);
        assert_eq!(ErrorCode::StaleBrokerEpoch.code(), 77);
        assert_eq!(ErrorCode::InvalidTopicException.code(), 17);
        assert_eq!(ErrorCode::NotLeaderOrFollower.code(), 6);
        assert_eq!(ErrorCode::FencedLeaderEpoch.code(), 74);
        assert_eq!(ErrorCode::UnknownTopicId.code(), 100);
        assert_eq!(ErrorCode::IneligibleReplica.code(), 107);
        assert_eq!(ErrorCode::InvalidUpdateVersion.code(), 95);
    }

    #[test]
    fn internal_errors_map_to_one_code_each() {
        let e = ControllerError::NotController { leader: Some(2) };
        assert_eq!(e.error_code(), ErrorCode::NotController);
        assert!(e.to_string().contains("current leader: 2"));
        assert!(e.is_retriable());
        let e = ControllerError::Api(ApiError::new(ErrorCode::InvalidConfig, "bad"));
        assert_eq!(e.to_api(), ApiError::new(ErrorCode::InvalidConfig, "bad"));
        let e = ControllerError::from(tonic::Status::unavailable("down"));
        assert_eq!(e.error_code(), ErrorCode::NotController);
        assert_eq!(
            ControllerError::Decode("x".into()).error_code(),
            ErrorCode::UnknownServerError
        );
    }
}
