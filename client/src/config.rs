//! Client settings. Defaults follow the Java client where one exists.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::types::{Acks, Compression};

/// Settings shared by every client: where the cluster is and how patient to be.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port[,host:port]` to find the cluster.
    pub bootstrap: String,
    /// Sent in every request header; shows up in broker logs.
    pub client_id: String,
    /// How long to wait for one response (Fetch adds its `max_wait` on top).
    pub request_timeout: Duration,
    /// How long a TCP connect may take.
    pub connect_timeout: Duration,
    /// Most requests in flight on one connection (pipelining depth).
    pub max_in_flight: usize,
    /// Largest response frame accepted; bigger sizes close the connection before allocating.
    pub max_response_size: usize,
    /// How many times to refresh metadata and retry after a retriable error.
    pub retries: u32,
    /// First pause between retries; doubles each time up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Longest pause between retries.
    pub retry_backoff_max: Duration,
    /// Whether Metadata requests for unknown topics may auto-create them (producer behaviour).
    pub allow_auto_topic_creation: bool,
}

impl ClientConfig {
    /// Defaults with the given bootstrap servers.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            client_id: "spate-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_in_flight: 5,
            max_response_size: 100 * 1024 * 1024,
            retries: 8,
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            allow_auto_topic_creation: false,
        }
    }

    /// The backoff before retry number `attempt` (0-based): exponential, capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }
}

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// Acknowledgement level.
    pub acks: Acks,
    /// How long a non-full batch may wait for more records.
    pub linger: Duration,
    /// Target batch size in bytes (uncompressed estimate); a bigger record gets its own batch.
    pub batch_size: usize,
    /// Batch compression.
    pub compression: Compression,
    /// Largest Produce request; several partitions' batches share one request up to this.
    pub max_request_size: usize,
    /// Bytes of records buffered but not yet acknowledged before `send` waits.
    pub buffer_memory: usize,
    /// How long the broker may take to replicate (acks=all) before answering.
    pub produce_timeout: Duration,
    /// How often to refresh metadata of topics in use even without errors.
    pub metadata_max_age: Duration,
    /// How long a record may take from `send` to its ack, retries included, before failing.
    pub delivery_timeout: Duration,
    /// Sends of one batch after the first before it fails. Unbounded by default as in
    /// Kafka (`retries` = 2147483647 since KIP-91): `delivery_timeout` bounds retrying, so
    /// a leader failover longer than a few backoffs does not fail the records in flight.
    pub retries: u32,
    /// Idempotent producer (KIP-98): a producer id and per-partition sequence numbers let
    /// the broker drop duplicates from retries, and ordering holds across retries. Needs
    /// `acks = All` (other acks are refused) and caps `client.max_in_flight` at 5. Off by
    /// default here (the Java client defaults to on) to keep the plain producer's behaviour.
    pub enable_idempotence: bool,
}

impl ProducerConfig {
    /// Defaults with the given bootstrap servers.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        let mut client = ClientConfig::new(bootstrap);
        client.allow_auto_topic_creation = true;
        Self {
            client,
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 16 * 1024,
            compression: Compression::None,
            max_request_size: 1024 * 1024,
            buffer_memory: 32 * 1024 * 1024,
            produce_timeout: Duration::from_secs(30),
            metadata_max_age: Duration::from_secs(300),
            delivery_timeout: Duration::from_secs(120),
            retries: u32::MAX,
            enable_idempotence: false,
        }
    }

    /// Checks settings that cannot work together.
    pub fn validate(&self) -> Result<()> {
        if self.enable_idempotence && self.acks != Acks::All {
            return Err(Error::InvalidArgument(format!(
                "enable_idempotence needs acks=all, got acks={:?}; set acks to All or turn \
                 idempotence off",
                self.acks
            )));
        }
        Ok(())
    }
}

/// Where a consumer starts in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartOffset {
    /// The log start offset.
    Earliest,
    /// The high watermark: only records produced from now on.
    Latest,
    /// An explicit offset.
    Offset(i64),
    /// The first offset whose timestamp is at or after this many ms since the epoch.
    Timestamp(i64),
}

/// What the consumer does when its position is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// Jump to the log start.
    Earliest,
    /// Jump to the end.
    Latest,
    /// Return the error.
    None,
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection settings.
    pub client: ClientConfig,
    /// How long a broker may hold a Fetch waiting for `min_bytes`.
    pub max_wait: Duration,
    /// How many bytes a Fetch should gather before the broker answers.
    pub min_bytes: i32,
    /// Soft cap on one Fetch response (KIP-74: the first batch comes back whole anyway).
    pub max_bytes: i32,
    /// Soft cap per partition in one Fetch.
    pub partition_max_bytes: i32,
    /// 0 = read_uncommitted, 1 = read_committed.
    pub isolation_level: i8,
    /// What to do on OFFSET_OUT_OF_RANGE.
    pub offset_reset: OffsetReset,
}

impl ConsumerConfig {
    /// Defaults with the given bootstrap servers.
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            client: ClientConfig::new(bootstrap),
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 1024 * 1024,
            isolation_level: 0,
            offset_reset: OffsetReset::Earliest,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = ClientConfig::new("x:1");
        assert_eq!(c.backoff(0), Duration::from_millis(100));
        assert_eq!(c.backoff(1), Duration::from_millis(200));
        assert_eq!(c.backoff(3), Duration::from_millis(800));
        assert_eq!(c.backoff(4), Duration::from_secs(1));
        assert_eq!(c.backoff(40), Duration::from_secs(1));
    }

    #[test]
    fn idempotence_needs_acks_all() {
        let mut c = ProducerConfig::new("x:1");
        c.enable_idempotence = true;
        assert!(c.validate().is_ok());
        c.acks = Acks::Leader;
        assert!(c
            .validate()
            .is_err_and(|e| e.to_string().contains("acks=all")));
        c.enable_idempotence = false;
        assert!(c.validate().is_ok());
    }
}
