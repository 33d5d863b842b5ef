//! OffsetForLeaderEpoch (KIP-101/279): the end offset of a leader epoch, for clients
//! validating their position after a leader change.
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use super::{leader_partition, per_partition};
use crate::server::context::RequestContext;

/// Answers from the leader's epoch cache.
pub fn handle(
    ctx: &RequestContext,
    req: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = per_partition(
        req.topics,
        |t| (t.topic, t.partitions),
        |name, p| {
            let result = leader_partition(&ctx.state, name, p.partition).and_then(|part| {
                part.check_leader_epoch(p.current_leader_epoch)?;
                Ok(part.end_offset_for_epoch(p.leader_epoch))
            });
            match result {
                Ok((epoch, end)) => EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(0)
                    .with_leader_epoch(epoch)
                    .with_end_offset(end),
                Err(e) => EpochEndOffset::default()
                    .with_partition(p.partition)
                    .with_error_code(e.code())
                    .with_leader_epoch(-1)
                    .with_end_offset(-1),
            }
        },
        |topic, partitions| {
            OffsetForLeaderTopicResult::default()
                .with_topic(topic)
                .with_partitions(partitions)
        },
    );
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
