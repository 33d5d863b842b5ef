//! `spate-client`: a Kafka client (admin, producer, consumer) on the Kafka wire protocol.
//!
//! # Layout
//! - [`connection`]: one TCP connection — framing, correlation ids, pipelining, ApiVersions.
//! - [`codec`]: request/response frame encoding, pure.
//! - [`versions`]: the API versions this client speaks and the pick against a broker.
//! - [`metadata`]: a metadata snapshot (brokers, topics, leaders), pure.
//! - [`cluster`]: bootstrap, cached metadata, one connection per broker, retry with refresh.
//! - [`admin`]: topic and config administration, offsets, record deletion, cluster view.
//! - [`producer`]: batching producer (partitioner, accumulator, sender).
//! - [`consumer`]: assign-only consumer with a Fetch loop, and the group consumer.
//! - [`error`], [`config`], [`types`]: the shared vocabulary.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod cluster;
pub mod codec;
pub mod config;
pub mod connection;
pub mod consumer;
pub mod error;
pub mod http;
pub mod metadata;
pub mod producer;
pub mod types;
pub mod versions;

pub use admin::Admin;
pub use cluster::Cluster;
pub use config::{ClientConfig, ConsumerConfig, OffsetReset, ProducerConfig, StartOffset};
pub use consumer::{Consumer, ConsumerRecord, GroupConsumer, GroupConsumerConfig};
pub use error::{Error, KafkaError, Result};
/// The protocol crate this client is built on, for callers that need its types.
pub use kafka_protocol;
pub use kafka_protocol::ResponseError;
pub use producer::{DeliveryFuture, Producer, RecordMetadata};
pub use types::{Acks, Compression, Header, LeaderEpoch, NodeId, TopicPartition};
