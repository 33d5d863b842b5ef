//! The Spate broker: Kafka protocol front end, segmented log storage, partitions.
//!
//! Layout:
//! - [`server`]: `listener` accepts, `connection` frames bytes and keeps responses in
//!   order, `apis` is the request table (one entry per Kafka API), `dispatch` checks
//!   versions and routes.
//! - [`handlers`]: one module per Kafka API.
//! - log storage (segments of RecordBatch v2 bytes, indexes, recovery, retention,
//!   checkpoints, leader-epoch cache) is the `spate-log` crate below this one.
//! - [`partition`]: one replica — a core under one lock (log, role, replica and producer
//!   state) returning effects, the handle that applies them, group-commit flusher.
//! - [`delayed`]: the delayed operation (long poll with deadline and wake-up).
//! - [`coordinator`]: the coordinator runtime over internal-topic partitions.
//! - [`replica_manager`]: the partitions this broker hosts, reconciled with metadata.
//! - [`replication`]: the leader's replication service, follower fetchers, ISR changes.
//! - [`faults`]: link faults tests inject, as a layer on this broker's gRPC transports.
//! - [`metadata`]: the image followed from the controller, and the link to it.
//! - [`fetch_session`]: incremental fetch sessions (KIP-227).
//! - [`group`]: the classic consumer group protocol as a pure state machine, and its
//!   coordinator shard.
//! - [`log_dir_id`]: the log directory's identity, sent with every registration.
//! - [`topic_config`]: effective topic configs and the log settings they imply.
//! - [`error`]: the broker's errors and their single mapping to Kafka error codes.
//! - [`broker`]: wiring and shutdown. A node (controller + broker) and the admin HTTP
//!   port are started by the `spate` crate's wiring, above this one.
#![forbid(unsafe_code)]

pub mod broker;
pub mod clock;
pub mod config;
pub mod controlled_shutdown;
pub mod coordinator;
pub mod delayed;
pub mod error;
pub mod faults;
pub mod fetch_session;
pub mod group;
pub mod handlers;
pub mod limits;
pub mod log_cleaner;
pub mod log_dir_id;
pub mod metadata;
pub mod metrics;
pub mod partition;
pub mod producer_ids;
pub mod replica_manager;
pub mod replication;
pub mod server;
pub mod state;
pub mod topic_config;
pub mod topic_partition;
pub mod txn;

pub use broker::Broker;
pub use config::BrokerConfig;
/// The storage seam, for callers that put a broker on a simulated filesystem.
pub use spate_log::storage;
pub use state::BrokerState;
