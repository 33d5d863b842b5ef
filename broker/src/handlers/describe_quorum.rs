//! DescribeQuorum (55) on the Kafka port, as `kafka-metadata-quorum describe` and
//! `Admin.describeMetadataQuorum` use it: the broker asks the controller quorum and
//! answers for Kafka's metadata log, `__cluster_metadata` partition 0 (here the Raft log
//! of the controller quorum): leader, epoch (the Raft term), high watermark (the commit
//! index) and each voter's log end (the index the leader knows it has replicated).
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use spate_metadata::ErrorCode;

use super::str_bytes;
use crate::server::context::RequestContext;

/// Kafka's name of the metadata log.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The listener name controllers advertise here.
const CONTROLLER_LISTENER: &str = "CONTROLLER";

/// Answers each asked partition: only `__cluster_metadata` partition 0 exists.
pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let quorum =
        super::admin::controller_call(&ctx.state, |mut c| async move { c.describe_quorum().await })
            .await;
    let quorum = match quorum {
        Ok(q) => q,
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(e.code())
                .with_error_message(Some(str_bytes(e.to_string())))
        }
    };
    let leader = if quorum.has_leader {
        i32::try_from(quorum.leader_id).unwrap_or(-1)
    } else {
        -1
    };
    let voters: Vec<ReplicaState> = quorum
        .voters
        .iter()
        .map(|v| {
            ReplicaState::default()
                .with_replica_id(BrokerId(i32::try_from(v.node_id).unwrap_or(-1)))
                .with_log_end_offset(i64::try_from(v.matched_index).unwrap_or(-1))
                .with_last_fetch_timestamp(-1)
                .with_last_caught_up_timestamp(-1)
        })
        .collect();
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let known = t.topic_name.0.as_str() == METADATA_TOPIC;
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let base = PartitionData::default().with_partition_index(p.partition_index);
                    if known && p.partition_index == 0 {
                        base.with_error_code(0)
                            .with_leader_id(BrokerId(leader))
                            .with_leader_epoch(i32::try_from(quorum.term).unwrap_or(i32::MAX))
                            .with_high_watermark(
                                i64::try_from(quorum.commit_index).unwrap_or(i64::MAX),
                            )
                            .with_current_voters(voters.clone())
                    } else {
                        base.with_error_code(ErrorCode::UnknownTopicOrPartition.code())
                            .with_leader_id(BrokerId(-1))
                    }
                })
                .collect();
            TopicData::default()
                .with_topic_name(t.topic_name)
                .with_partitions(partitions)
        })
        .collect();
    // v2: where each voter listens (its Raft address).
    let nodes = if ctx.api_version >= 2 {
        quorum
            .voters
            .iter()
            .filter_map(|v| {
                let (host, port) = v.address.rsplit_once(':')?;
                Some(
                    Node::default()
                        .with_node_id(BrokerId(i32::try_from(v.node_id).ok()?))
                        .with_listeners(vec![Listener::default()
                            .with_name(str_bytes(CONTROLLER_LISTENER))
                            .with_host(str_bytes(host.to_string()))
                            .with_port(port.parse().ok()?)]),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeQuorumResponse::default()
        .with_error_code(0)
        .with_topics(topics)
        .with_nodes(nodes)
}
