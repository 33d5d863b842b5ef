//! The crate's error type and the one place that maps it to a Kafka error code.

use spate_metadata::MetadataError;
pub use spate_metadata::{ApiError, ErrorCode};

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
