//! One module per Kafka API. Handlers read the metadata image and hosted partitions from
//! [`crate::state::BrokerState`] and never panic on request contents.
pub mod admin;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod leader_hints;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use spate_metadata::ids::NodeId;
use spate_metadata::{MetadataImage, PartitionImage};

use crate::error::{BrokerError, NotServing, Result};
use crate::partition::{Partition, TopicPartition};
use crate::state::BrokerState;

/// The local leader replica of `topic`/`partition`, or the Kafka error explaining why not.
pub fn leader_partition(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<Arc<Partition>> {
    let image = state.metadata.image();
    let leader = known_partition(&image, topic, partition)?.leader;
    let not_serving = |why| BrokerError::NotLeaderOrFollower {
        partition: TopicPartition::new(topic, partition),
        broker: NodeId(state.config.node_id),
        why,
    };
    match leader {
        None => {
            return Err(BrokerError::LeaderNotAvailable {
                partition: TopicPartition::new(topic, partition),
            })
        }
        Some(l) if l.0 != state.config.node_id => return Err(not_serving(NotServing::NotLeader)),
        Some(_) => {}
    }
    let local = state
        .replicas
        .get(topic, partition)
        .ok_or_else(|| not_serving(NotServing::NotHosted))?;
    if !local.leader_state().is_leader {
        return Err(not_serving(NotServing::LeadershipNotApplied));
    }
    Ok(local)
}

/// The local replica (leader or follower) of `topic`/`partition`, or the Kafka error
/// explaining why not.
pub fn hosted_partition(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<Arc<Partition>> {
    known_partition(&state.metadata.image(), topic, partition)?;
    state
        .replicas
        .get(topic, partition)
        .ok_or_else(|| BrokerError::NotLeaderOrFollower {
            partition: TopicPartition::new(topic, partition),
            broker: NodeId(state.config.node_id),
            why: NotServing::NotHosted,
        })
}

/// The partition in the metadata image, or UNKNOWN_TOPIC_OR_PARTITION.
fn known_partition<'a>(
    image: &'a MetadataImage,
    topic: &str,
    partition: i32,
) -> Result<&'a PartitionImage> {
    let t = image
        .topic_by_name(topic)
        .ok_or_else(|| BrokerError::UnknownTopic {
            topic: topic.to_string(),
        })?;
    t.partitions
        .get(&partition)
        .ok_or_else(|| BrokerError::UnknownPartition {
            topic: topic.to_string(),
            partition,
            partitions: t.partitions.len(),
        })
}

/// The per-partition fan-out of requests shaped topics → partitions (ListOffsets,
/// DeleteRecords, OffsetForLeaderEpoch): `split` takes a topic apart into its name and
/// partition requests, `answer` answers one partition of the named topic, `topic_result`
/// builds the topic's entry from its name and answers, in request order.
pub fn per_partition<T, P, PR, TR>(
    topics: Vec<T>,
    split: impl Fn(T) -> (TopicName, Vec<P>),
    mut answer: impl FnMut(&str, P) -> PR,
    topic_result: impl Fn(TopicName, Vec<PR>) -> TR,
) -> Vec<TR> {
    topics
        .into_iter()
        .map(|t| {
            let (name, partitions) = split(t);
            let answers = partitions.into_iter().map(|p| answer(&name, p)).collect();
            topic_result(name, answers)
        })
        .collect()
}

/// A Kafka string from a Rust one.
pub fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}
