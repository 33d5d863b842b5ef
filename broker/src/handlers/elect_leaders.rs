//! ElectLeaders (API 43, KIP-460): forwarded to the active controller, which commits the
//! leader changes; we answer once our own image has applied them, so the client's next
//! Metadata request here already shows the new leaders.
use std::collections::BTreeMap;

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use spate_proto::controller as pb;

use super::admin::controller_call;
use super::str_bytes;
use crate::server::context::RequestContext;

/// ElectLeaders: preferred (type 0, the only one in v0) or unclean (type 1).
pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> ElectLeadersResponse {
    let state = &ctx.state;
    // Kafka: a null topic list means every partition.
    let topics: Vec<pb::ElectLeadersTopic> = req
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| pb::ElectLeadersTopic {
            name: t.topic.0.to_string(),
            partitions: t.partitions.clone(),
        })
        .collect();
    let pb_req = pb::ElectLeadersRequest {
        election_type: i32::from(req.election_type),
        all_partitions: req.topic_partitions.is_none(),
        topics: topics.clone(),
    };
    let result = controller_call(state, |mut c| async move { c.elect_leaders(pb_req).await }).await;
    let resp = match result {
        Ok(resp) => resp,
        Err(e) => return request_error(ctx.api_version, &topics, e.code(), e.to_string()),
    };
    if resp.error_code != 0 {
        return request_error(
            ctx.api_version,
            &topics,
            resp.error_code as i16,
            resp.error_message,
        );
    }
    if resp.metadata_offset > 0 {
        let offset = resp.metadata_offset;
        state
            .metadata
            .wait_until(super::admin::settle_timeout(req.timeout_ms), |img| {
                img.offset() >= offset
            })
            .await;
    }
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for r in resp.results {
        by_topic.entry(r.topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(r.partition)
                .with_error_code(r.error_code as i16)
                .with_error_message(
                    (!r.error_message.is_empty()).then(|| str_bytes(r.error_message)),
                ),
        );
    }
    let results = by_topic
        .into_iter()
        .map(|(topic, partitions)| {
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(topic)))
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// A request-level failure: the top-level code (v1+) and, as Kafka does, the same error
/// for every partition asked about (the only place v0 can carry it).
fn request_error(
    version: i16,
    topics: &[pb::ElectLeadersTopic],
    code: i16,
    message: String,
) -> ElectLeadersResponse {
    let results = topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| {
                    PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes(message.clone())))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(TopicName(str_bytes(t.name.clone())))
                .with_partition_result(partitions)
        })
        .collect();
    let top_level = if version >= 1 { code } else { 0 };
    ElectLeadersResponse::default()
        .with_error_code(top_level)
        .with_replica_election_results(results)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    fn topics() -> Vec<pb::ElectLeadersTopic> {
        vec![pb::ElectLeadersTopic {
            name: "t".into(),
            partitions: vec![0, 1],
        }]
    }

    /// v0 has no top-level error code: setting one would fail encoding.
    #[test]
    fn request_errors_encode_in_every_version() {
        for version in 0..=2 {
            let resp = request_error(version, &topics(), 41, "no controller".into());
            let mut buf = bytes::BytesMut::new();
            resp.encode(&mut buf, version).unwrap();
            assert_eq!(resp.error_code, if version == 0 { 0 } else { 41 });
            let parts = &resp.replica_election_results[0].partition_result;
            assert!(parts.iter().all(|p| p.error_code == 41));
        }
    }
}
