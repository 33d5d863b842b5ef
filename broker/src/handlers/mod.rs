//! One module per Kafka API. Handlers read the metadata image and hosted partitions from
//! [`crate::state::BrokerState`] and never panic on request contents.
pub mod admin;
pub mod api_versions;
pub mod cluster;
pub mod configs;
pub mod delete_records;
pub mod elect_leaders;
pub mod fetch;
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod offset_for_leader_epoch;
pub mod produce;

use std::sync::Arc;

use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::state::BrokerState;

/// The local leader replica of `topic`/`partition`, or the Kafka error explaining why not.
pub fn leader_partition(
    state: &BrokerState,
    topic: &str,
    partition: i32,
) -> Result<Arc<Partition>> {
    let image = state.metadata.image();
    let Some(t) = image.topic_by_name(topic) else {
        return Err(BrokerError::UnknownTopicOrPartition(format!(
            "topic '{topic}' does not exist"
        )));
    };
    let Some(p) = t.partitions.get(&partition) else {
        return Err(BrokerError::UnknownTopicOrPartition(format!(
            "topic '{topic}' has {} partitions; partition {partition} does not exist",
            t.partitions.len()
        )));
    };
    if p.leader.is_none() {
        return Err(BrokerError::LeaderNotAvailable(format!(
            "{topic}-{partition} has no leader"
        )));
    }
    if p.leader.map(|l| l.0) != Some(state.config.node_id) {
        return Err(BrokerError::NotLeaderOrFollower(format!(
            "broker {} does not lead {topic}-{partition}",
            state.config.node_id
        )));
    }
    let local = state.replicas.get(topic, partition).ok_or_else(|| {
        BrokerError::NotLeaderOrFollower(format!(
            "{topic}-{partition} is not open on this broker yet"
        ))
    })?;
    if !local.leader_state().is_leader {
        return Err(BrokerError::NotLeaderOrFollower(format!(
            "{topic}-{partition}: leadership not yet applied here"
        )));
    }
    Ok(local)
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
