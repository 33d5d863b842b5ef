//! Spate's shared metadata layer: what the controller and every broker agree on, free of
//! openraft, sled and I/O.
//!
//! Layout:
//! - [`ids`]: newtypes for node ids, epochs and topic ids.
//! - the metadata image ([`MetadataImage`]) and its pure `apply` over [`records`]; snapshots
//!   are the image as records (`to_records`), as Kafka does.
//! - [`config_defs`]: topic config keys, defaults and validators.
//! - [`topic_defaults`]: broker-wide defaults of topic configs (`log.cleanup.policy`, ...).
//! - [`topic_name`]: Kafka's topic name rules.
//! - [`error_code`]: the one table of Kafka error codes, and [`ApiError`].
#![forbid(unsafe_code)]

pub mod config_defs;
pub mod error_code;
pub mod ids;
pub mod topic_defaults;
pub mod topic_name;

mod apply;
pub mod records;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use spate_proto::metadata::Endpoint;

use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, TopicId};

pub use error_code::{ApiError, ErrorCode};

/// Why a record could not be applied. The image is left unchanged when this is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The record's oneof was empty (written by a newer version, or corrupt).
    #[error("metadata record at offset {0} has no payload")]
    EmptyRecord(u64),
    /// A record named a topic id the image does not know.
    #[error("topic id {0} is not in the metadata image")]
    UnknownTopic(TopicId),
    /// A record named a partition the topic does not have.
    #[error("topic '{topic}' has no partition {partition}")]
    UnknownPartition {
        /// The topic's name.
        topic: String,
        /// The missing partition.
        partition: i32,
    },
    /// A record named a broker that never registered.
    #[error("broker {0} is not registered")]
    UnknownBroker(NodeId),
    /// A record carried a broker epoch that is not the broker's current registration.
    #[error("broker {broker} has epoch {current}, the record carries {got}")]
    StaleBrokerEpoch {
        /// The broker.
        broker: NodeId,
        /// Its current epoch.
        current: BrokerEpoch,
        /// The epoch in the record.
        got: BrokerEpoch,
    },
    /// A `TopicRecord` reused an existing name or id.
    #[error("topic '{0}' already exists")]
    TopicExists(String),
    /// A record's fields are inconsistent (bad id length, ISR outside replicas, ...).
    #[error("invalid metadata record: {0}")]
    Invalid(String),
}

/// One registered broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    /// The broker's id.
    pub id: NodeId,
    /// The offset of its latest registration.
    pub epoch: BrokerEpoch,
    /// A random id the broker picks per process start, to tell restarts from duplicates.
    pub incarnation_id: String,
    /// Where clients and peers reach it.
    pub endpoints: Vec<Endpoint>,
    /// Its rack, if configured.
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and are not in new ISRs.
    pub fenced: bool,
    /// Partitions whose log failed on this broker (its "offline log directories"): it
    /// leads none of them and is in none of their ISRs.
    pub offline_replicas: BTreeSet<(TopicId, i32)>,
    /// The id of its log directory ("" from a broker that does not send one). A new id
    /// on re-registration means its logs were lost.
    pub log_dir_id: String,
}

/// One partition's replica state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas. Empty only while offline with the last members in the ELR.
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966): out of the ISR but holding everything below
    /// the high watermark, electable when the ISR is empty.
    pub elr: Vec<NodeId>,
    /// Replicas that fell out of the ELR because their log may have lost data: preferred
    /// by an unclean election.
    pub last_known_elr: Vec<NodeId>,
    /// The leader, `None` while offline.
    pub leader: Option<NodeId>,
    /// Bumped on every leader change.
    pub leader_epoch: LeaderEpoch,
    /// Bumped on every change.
    pub partition_epoch: PartitionEpoch,
}

/// One topic and its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub id: TopicId,
    /// Partitions by index.
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The resource a dynamic config belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResource {
    /// A topic, by name.
    Topic(String),
    /// A broker, by id as a string ("" is the cluster-wide default, as Kafka).
    Broker(String),
}

/// The whole metadata state as of `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataImage {
    brokers: BTreeMap<NodeId, BrokerRegistration>,
    topics: BTreeMap<TopicId, TopicImage>,
    topic_ids: BTreeMap<String, TopicId>,
    configs: BTreeMap<ConfigResource, BTreeMap<String, String>>,
    next_producer_id: i64,
    offset: u64,
}

static NO_CONFIGS: BTreeMap<String, String> = BTreeMap::new();

impl MetadataImage {
    /// An empty image (offset 0).
    pub fn new() -> MetadataImage {
        MetadataImage::default()
    }

    /// The metadata offset of the last applied batch.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Moves the offset forward without changing anything else (a batch whose records were
    /// all skipped still counts as applied). Never moves it backwards.
    pub fn advance_to(&mut self, offset: u64) {
        self.offset = self.offset.max(offset);
    }

    /// The first producer id not yet handed out.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// All registered brokers, by id.
    pub fn brokers(&self) -> &BTreeMap<NodeId, BrokerRegistration> {
        &self.brokers
    }

    /// One broker's registration.
    pub fn broker(&self, id: NodeId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id)
    }

    /// Registered brokers that are not fenced, by id order.
    pub fn unfenced_brokers(&self) -> Vec<&BrokerRegistration> {
        self.brokers.values().filter(|b| !b.fenced).collect()
    }

    /// Whether the broker is registered and not fenced.
    pub fn is_unfenced(&self, id: NodeId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Whether the broker can serve its replica of a partition: unfenced, and its log of
    /// that partition has not failed. Elections and ISR changes ask this.
    pub fn can_serve(&self, id: NodeId, topic: TopicId, partition: i32) -> bool {
        self.brokers
            .get(&id)
            .is_some_and(|b| !b.fenced && !b.offline_replicas.contains(&(topic, partition)))
    }

    /// All topics, by id.
    pub fn topics(&self) -> &BTreeMap<TopicId, TopicImage> {
        &self.topics
    }

    /// Topic names with their ids, in name order.
    pub fn topic_names(&self) -> &BTreeMap<String, TopicId> {
        &self.topic_ids
    }

    /// One topic, by id.
    pub fn topic(&self, id: TopicId) -> Option<&TopicImage> {
        self.topics.get(&id)
    }

    /// One topic, by name.
    pub fn topic_by_name(&self, name: &str) -> Option<&TopicImage> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    /// One partition.
    pub fn partition(&self, topic: TopicId, partition: i32) -> Option<&PartitionImage> {
        self.topics
            .get(&topic)
            .and_then(|t| t.partitions.get(&partition))
    }

    /// Dynamic configs of any resource (empty when none are set).
    pub fn configs(&self, resource: &ConfigResource) -> &BTreeMap<String, String> {
        self.configs.get(resource).unwrap_or(&NO_CONFIGS)
    }

    /// Dynamic configs of a topic (defaults are in `config_defs`, not here).
    pub fn topic_config(&self, name: &str) -> &BTreeMap<String, String> {
        self.configs(&ConfigResource::Topic(name.to_string()))
    }

    /// Every resource that has dynamic configs.
    pub fn all_configs(&self) -> &BTreeMap<ConfigResource, BTreeMap<String, String>> {
        &self.configs
    }
}
