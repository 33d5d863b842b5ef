//! The controller's decisions as pure functions over the metadata image, in Kafka's
//! `ControllerResult` pattern: each returns the records to commit plus the reply to send
//! once they are committed. No I/O; time and randomness are arguments.

pub mod alter_partition;
pub mod brokers;
pub mod configs;
pub mod elect_leaders;
pub mod election;
pub mod placement;
pub mod producer_ids;
pub mod sessions;
pub mod topics;

use spate_proto::metadata::MetadataRecord;

pub use alter_partition::alter_partition;
pub use brokers::{broker_heartbeat, fence_broker, register_broker};
pub use configs::alter_configs;
pub use elect_leaders::{elect_leaders, elect_preferred_leaders};
pub use producer_ids::{allocate_producer_ids, PRODUCER_ID_BLOCK_SIZE};
pub use sessions::BrokerSessions;
pub use topics::{create_partitions, create_topics, delete_topics, validate_topic_name};

/// Records to commit and the response to send once they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct ControllerResult<R> {
    /// Records to commit as one batch (empty: nothing to commit).
    pub records: Vec<MetadataRecord>,
    /// The reply.
    pub response: R,
}

impl<R> ControllerResult<R> {
    /// A result that commits nothing.
    pub fn response_only(response: R) -> Self {
        ControllerResult {
            records: Vec::new(),
            response,
        }
    }
}

/// Topic defaults used when a request says -1, as Kafka's `num.partitions` and
/// `default.replication.factor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicDefaults {
    /// Partitions for a topic created without a count.
    pub num_partitions: i32,
    /// Replication factor for a topic created without one.
    pub replication_factor: i32,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            num_partitions: 1,
            replication_factor: 1,
        }
    }
}
