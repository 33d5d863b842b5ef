//! The request table: every Kafka API this broker implements, in one entry each —
//! its version range (what ApiVersions advertises and dispatch accepts), its request
//! and response types (decode), its handler (route), and where its response carries
//! error codes (request metrics). Adding an API is one entry here plus its handler.
//!
//! Ranges are capped where a newer version needs a feature we do not have yet.
use bytes::Bytes;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::Decodable;

use super::context::{PendingResponse, RequestContext};
use super::response_errors::ResponseErrors;
use crate::handlers;

/// Generates, from one list of entries: `SUPPORTED`, the `Request` enum, the body
/// decoder, the router, and the `ResponseErrors` impls.
macro_rules! request_table {
    ($(
        $(#[doc = $doc:literal])*
        $name:ident($req:ty => $resp:ty) $min:literal..=$max:literal,
            route |$ctx:ident, $body:ident| $route:expr,
            errors |$r:ident| $errors:expr;
    )*) => {
        /// (API, lowest version, highest version) implemented by the broker.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[$((ApiKey::$name, $min, $max)),*];

        /// A decoded request body of an API we implement.
        #[derive(Debug)]
        #[allow(missing_docs)]
        pub enum Request {
            $($name($req)),*
        }

        /// Decodes the body of `key` in `version`; `None` for an API not in the table.
        pub(super) fn decode_body(
            key: ApiKey,
            body: &mut Bytes,
            version: i16,
        ) -> Option<anyhow::Result<Request>> {
            Some(match key {
                $(ApiKey::$name => <$req as Decodable>::decode(body, version).map(Request::$name),)*
                _ => return None,
            })
        }

        /// Runs the handler of a decoded request.
        pub(super) async fn route(ctx: RequestContext, request: Request) -> Option<PendingResponse> {
            match request {
                $(Request::$name($body) => {
                    let $ctx = ctx;
                    $route
                })*
            }
        }

        $(impl ResponseErrors for $resp {
            fn has_error(&self) -> bool {
                let $r = self;
                $errors
            }
        })*
    };
}

request_table! {
    /// v10+ answers NOT_LEADER_OR_FOLLOWER with the new leader (KIP-951); v12 only tells
    /// that the client knows KIP-890's transactions (none here); v13 (topic ids) is 4.1's.
    Produce(ProduceRequest => ProduceResponse) 3..=12,
        route |ctx, req| handlers::produce::handle(&ctx, req),
        errors |r| r.responses.iter().any(|t| t.partition_responses.iter().any(|p| p.error_code != 0));
    /// v13+ addresses topics by id.
    Fetch(FetchRequest => FetchResponse) 4..=17,
        route |ctx, req| Some(handlers::fetch::handle(&ctx, req).await),
        errors |r| r.error_code != 0 || r.responses.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    /// v8/v9 ask about tiered storage (none here: every segment is local).
    ListOffsets(ListOffsetsRequest => ListOffsetsResponse) 1..=10,
        route |ctx, req| Some(ctx.ready(&handlers::list_offsets::handle(&ctx, req))),
        errors |r| r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    Metadata(MetadataRequest => MetadataResponse) 0..=13,
        route |ctx, req| Some(ctx.ready(&handlers::metadata::handle(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.topics.iter().any(|t| t.error_code != 0);
    ApiVersions(ApiVersionsRequest => ApiVersionsResponse) 0..=4,
        route |ctx, _req| Some(ctx.ready(&handlers::api_versions::handle(&advertised()))),
        errors |r| r.error_code != 0;
    CreateTopics(CreateTopicsRequest => CreateTopicsResponse) 2..=7,
        route |ctx, req| Some(ctx.ready(&handlers::admin::create_topics(&ctx, req).await)),
        errors |r| r.topics.iter().any(|t| t.error_code != 0);
    DeleteTopics(DeleteTopicsRequest => DeleteTopicsResponse) 1..=6,
        route |ctx, req| Some(ctx.ready(&handlers::admin::delete_topics(&ctx, req).await)),
        errors |r| r.responses.iter().any(|t| t.error_code != 0);
    DeleteRecords(DeleteRecordsRequest => DeleteRecordsResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::delete_records::handle(&ctx, req))),
        errors |r| r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest => OffsetForLeaderEpochResponse) 2..=4,
        route |ctx, req| Some(ctx.ready(&handlers::offset_for_leader_epoch::handle(&ctx, req))),
        errors |r| r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    DescribeConfigs(DescribeConfigsRequest => DescribeConfigsResponse) 1..=4,
        route |ctx, req| Some(ctx.ready(&handlers::configs::describe(&ctx, req))),
        errors |r| r.results.iter().any(|t| t.error_code != 0);
    CreatePartitions(CreatePartitionsRequest => CreatePartitionsResponse) 0..=3,
        route |ctx, req| Some(ctx.ready(&handlers::admin::create_partitions(&ctx, req).await)),
        errors |r| r.results.iter().any(|t| t.error_code != 0);
    /// The legacy, replace-everything AlterConfigs.
    AlterConfigs(AlterConfigsRequest => AlterConfigsResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::configs::alter_legacy(&ctx, req).await)),
        errors |r| r.responses.iter().any(|t| t.error_code != 0);
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest => IncrementalAlterConfigsResponse) 0..=1,
        route |ctx, req| Some(ctx.ready(&handlers::configs::incremental_alter(&ctx, req).await)),
        errors |r| r.responses.iter().any(|t| t.error_code != 0);
    /// One log directory per broker: moves within it are done, to elsewhere refused.
    AlterReplicaLogDirs(AlterReplicaLogDirsRequest => AlterReplicaLogDirsResponse) 1..=2,
        route |ctx, req| Some(ctx.ready(&handlers::log_dirs::alter(&ctx, req))),
        errors |r| r.results.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    DescribeLogDirs(DescribeLogDirsRequest => DescribeLogDirsResponse) 1..=4,
        route |ctx, req| Some(ctx.ready(&handlers::log_dirs::describe(&ctx, req))),
        errors |r| r.error_code != 0 || r.results.iter().any(|d| d.error_code != 0);
    /// Answered for the controller quorum's log (`__cluster_metadata`).
    DescribeQuorum(DescribeQuorumRequest => DescribeQuorumResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::describe_quorum::handle(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    DescribeCluster(DescribeClusterRequest => DescribeClusterResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::cluster::describe(&ctx, req))),
        errors |r| r.error_code != 0;
    /// KIP-966: partitions with their ELR, paged.
    DescribeTopicPartitions(DescribeTopicPartitionsRequest => DescribeTopicPartitionsResponse) 0..=0,
        route |ctx, req| Some(ctx.ready(&handlers::describe_topic_partitions::handle(&ctx.state.metadata.image(), &req))),
        errors |r| r.topics.iter().any(|t| t.error_code != 0 || t.partitions.iter().any(|p| p.error_code != 0));
    ElectLeaders(ElectLeadersRequest => ElectLeadersResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::elect_leaders::handle(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.replica_election_results.iter().any(|t| t.partition_result.iter().any(|p| p.error_code != 0));
    InitProducerId(InitProducerIdRequest => InitProducerIdResponse) 0..=5,
        route |ctx, req| Some(ctx.ready(&handlers::init_producer_id::handle(&ctx, req).await)),
        errors |r| r.error_code != 0;
    FindCoordinator(FindCoordinatorRequest => FindCoordinatorResponse) 0..=6,
        route |ctx, req| Some(ctx.ready(&handlers::groups::find_coordinator(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.coordinators.iter().any(|c| c.error_code != 0);
    JoinGroup(JoinGroupRequest => JoinGroupResponse) 0..=9,
        route |ctx, req| Some(ctx.ready(&handlers::groups::join_group(&ctx, req).await)),
        errors |r| r.error_code != 0;
    SyncGroup(SyncGroupRequest => SyncGroupResponse) 0..=5,
        route |ctx, req| Some(ctx.ready(&handlers::groups::sync_group(&ctx, req).await)),
        errors |r| r.error_code != 0;
    Heartbeat(HeartbeatRequest => HeartbeatResponse) 0..=4,
        route |ctx, req| Some(ctx.ready(&handlers::groups::heartbeat(&ctx, req).await)),
        errors |r| r.error_code != 0;
    LeaveGroup(LeaveGroupRequest => LeaveGroupResponse) 0..=5,
        route |ctx, req| Some(ctx.ready(&handlers::groups::leave_group(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.members.iter().any(|m| m.error_code != 0);
    /// v9 carries a KIP-848 member epoch, which for a classic group is its generation.
    OffsetCommit(OffsetCommitRequest => OffsetCommitResponse) 2..=9,
        route |ctx, req| Some(ctx.ready(&handlers::groups::offset_commit(&ctx, req).await)),
        errors |r| r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
    OffsetFetch(OffsetFetchRequest => OffsetFetchResponse) 1..=9,
        route |ctx, req| Some(ctx.ready(&handlers::groups::offset_fetch(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)) || r.groups.iter().any(|g| { g.error_code != 0 || g.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0)) });
    DescribeGroups(DescribeGroupsRequest => DescribeGroupsResponse) 0..=6,
        route |ctx, req| Some(ctx.ready(&handlers::groups::describe_groups(&ctx, req).await)),
        errors |r| r.groups.iter().any(|g| g.error_code != 0);
    ListGroups(ListGroupsRequest => ListGroupsResponse) 0..=5,
        route |ctx, req| Some(ctx.ready(&handlers::groups::list_groups(&ctx, req))),
        errors |r| r.error_code != 0;
    DeleteGroups(DeleteGroupsRequest => DeleteGroupsResponse) 0..=2,
        route |ctx, req| Some(ctx.ready(&handlers::groups::delete_groups(&ctx, req).await)),
        errors |r| r.results.iter().any(|g| g.error_code != 0);
    OffsetDelete(OffsetDeleteRequest => OffsetDeleteResponse) 0..=0,
        route |ctx, req| Some(ctx.ready(&handlers::groups::offset_delete(&ctx, req).await)),
        errors |r| r.error_code != 0 || r.topics.iter().any(|t| t.partitions.iter().any(|p| p.error_code != 0));
}

/// APIs advertised from a lower version than dispatch serves, as Kafka 4 advertises them.
pub const ADVERTISED_FROM: &[(ApiKey, i16)] = &[(ApiKey::Produce, 0)];

/// What ApiVersions answers: [`SUPPORTED`] with the [`ADVERTISED_FROM`] minimums.
pub fn advertised() -> Vec<(ApiKey, i16, i16)> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            let from = ADVERTISED_FROM
                .iter()
                .find(|(k, _)| *k == key)
                .map_or(min, |(_, v)| (*v).min(min));
            (key, from, max)
        })
        .collect()
}
