//! The crate's one error type, and the mapping from Kafka error codes to it.

use std::sync::Arc;

use kafka_protocol::ResponseError;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a Kafka cluster.
///
/// `Clone` because one failed produce batch completes many record futures with the same error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A socket operation failed.
    #[error("I/O error talking to {addr}: {source}")]
    Io {
        /// The peer address.
        addr: String,
        /// The underlying error.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The connection closed (or was closed after a timeout) before a response arrived.
    #[error("connection to {0} closed before the response arrived")]
    ConnectionClosed(String),
    /// No response within the request timeout.
    #[error("request {api} to {addr} timed out after {ms} ms")]
    Timeout {
        /// The API name, e.g. `Produce`.
        api: String,
        /// The peer address.
        addr: String,
        /// The timeout that expired.
        ms: u64,
    },
    /// Bytes on the wire did not make sense (bad frame, undecodable body, bad record batch).
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker supports no version of an API that this client can speak.
    #[error("broker {addr} supports no version of {api} that this client speaks ({detail})")]
    UnsupportedVersion {
        /// The API name.
        api: String,
        /// The peer address.
        addr: String,
        /// Both version ranges.
        detail: String,
    },
    /// The broker answered with a Kafka error code.
    #[error("{}", .0)]
    Kafka(KafkaError),
    /// The caller passed something unusable (bad bootstrap string, partition out of range).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No broker could be reached.
    #[error("no broker reachable (tried {0})")]
    NoBrokers(String),
    /// The producer or consumer was shut down.
    #[error("client is closed")]
    Closed,
}

impl Error {
    /// A Kafka error code with the broker's message and what we were doing.
    pub fn kafka(code: ResponseError, message: Option<String>, context: impl Into<String>) -> Self {
        Error::Kafka(KafkaError {
            code,
            message,
            context: context.into(),
        })
    }

    /// Builds the error for a non-zero code; `None` for 0 (success).
    pub fn from_code(
        code: i16,
        message: Option<String>,
        context: impl Into<String>,
    ) -> Option<Self> {
        ResponseError::try_from_code(code).map(|code| Self::kafka(code, message, context))
    }

    /// The Kafka error code, if the broker sent one.
    pub fn kafka_code(&self) -> Option<ResponseError> {
        match self {
            Error::Kafka(e) => Some(e.code),
            _ => None,
        }
    }

    /// Whether retrying (after a metadata refresh) may succeed: transport trouble and Kafka's
    /// retriable codes.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::ConnectionClosed(_) | Error::Timeout { .. } => true,
            Error::Kafka(e) => e.code.is_retriable(),
            _ => false,
        }
    }

    /// Whether cached metadata is probably stale (leader moved, topic just created).
    pub fn needs_metadata_refresh(&self) -> bool {
        match self {
            Error::Io { .. } | Error::ConnectionClosed(_) | Error::Timeout { .. } => true,
            Error::Kafka(e) => matches!(
                e.code,
                ResponseError::NotLeaderOrFollower
                    | ResponseError::UnknownTopicOrPartition
                    | ResponseError::LeaderNotAvailable
                    | ResponseError::NotController
                    | ResponseError::FencedLeaderEpoch
                    | ResponseError::UnknownLeaderEpoch
                    | ResponseError::UnknownTopicId
            ),
            _ => false,
        }
    }

    pub(crate) fn io(addr: &str, source: std::io::Error) -> Self {
        Error::Io {
            addr: addr.to_string(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn protocol(what: impl std::fmt::Display) -> Self {
        Error::Protocol(what.to_string())
    }
}

/// A Kafka error code as the broker sent it, with its message and our context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaError {
    /// The code.
    pub code: ResponseError,
    /// The broker's error message, when the API carries one.
    pub message: Option<String>,
    /// What the client was doing, e.g. "create topic 'orders'".
    pub context: String,
}

impl std::fmt::Display for KafkaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} ({})",
            self.context,
            code_name(self.code),
            self.code.code()
        )?;
        match &self.message {
            Some(m) if !m.is_empty() => write!(f, ": {m}"),
            _ => Ok(()),
        }
    }
}

/// Kafka's own spelling of an error code, e.g. `NOT_LEADER_OR_FOLLOWER`.
///
/// kafka-protocol names the variants in CamelCase; operators know the SCREAMING_SNAKE names
/// from Kafka's docs and logs, so convert.
pub fn code_name(code: ResponseError) -> String {
    if let ResponseError::Unknown(c) = code {
        return format!("UNKNOWN_CODE_{c}");
    }
    let camel = format!("{code:?}");
    let mut out = String::with_capacity(camel.len() + 8);
    let mut prev_lower = false;
    for ch in camel.chars() {
        if ch.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        out.push(ch.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_match_kafka_spelling() {
        assert_eq!(
            code_name(ResponseError::NotLeaderOrFollower),
            "NOT_LEADER_OR_FOLLOWER"
        );
        assert_eq!(
            code_name(ResponseError::UnknownTopicOrPartition),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            code_name(ResponseError::InvalidReplicationFactor),
            "INVALID_REPLICATION_FACTOR"
        );
        assert_eq!(code_name(ResponseError::Unknown(999)), "UNKNOWN_CODE_999");
    }

    #[test]
    fn display_carries_code_message_and_context() {
        let e = Error::from_code(38, Some("RF 3 > 1 brokers".into()), "create topic 't'");
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            text,
            "create topic 't': INVALID_REPLICATION_FACTOR (38): RF 3 > 1 brokers"
        );
        assert!(Error::from_code(0, None, "x").is_none());
    }
}
