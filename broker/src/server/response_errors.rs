//! Whether a response reports an error anywhere (top level or any topic, partition,
//! group or member), so request metrics count errors per API and version without
//! decoding what was sent.
use kafka_protocol::messages::*;

/// A response that may carry Kafka error codes.
pub trait ResponseErrors {
    /// True when any error code in the response is not NONE.
    fn has_error(&self) -> bool;
}

macro_rules! errors {
    ($ty:ty, |$r:ident| $body:expr) => {
        impl ResponseErrors for $ty {
            fn has_error(&self) -> bool {
                let $r = self;
                $body
            }
        }
    };
}

errors!(ApiVersionsResponse, |r| r.error_code != 0);
errors!(MetadataResponse, |r| r.error_code != 0
    || r.topics.iter().any(|t| t.error_code != 0));
errors!(ProduceResponse, |r| r.responses.iter().any(|t| t
    .partition_responses
    .iter()
    .any(|p| p.error_code != 0)));
errors!(FetchResponse, |r| r.error_code != 0
    || r.responses
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));
errors!(ListOffsetsResponse, |r| r
    .topics
    .iter()
    .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));
errors!(CreateTopicsResponse, |r| r
    .topics
    .iter()
    .any(|t| t.error_code != 0));
errors!(DeleteTopicsResponse, |r| r
    .responses
    .iter()
    .any(|t| t.error_code != 0));
errors!(CreatePartitionsResponse, |r| r
    .results
    .iter()
    .any(|t| t.error_code != 0));
errors!(DescribeConfigsResponse, |r| r
    .results
    .iter()
    .any(|t| t.error_code != 0));
errors!(IncrementalAlterConfigsResponse, |r| r
    .responses
    .iter()
    .any(|t| t.error_code != 0));
errors!(DescribeClusterResponse, |r| r.error_code != 0);
errors!(DeleteRecordsResponse, |r| r
    .topics
    .iter()
    .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));
errors!(OffsetForLeaderEpochResponse, |r| r
    .topics
    .iter()
    .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));
errors!(ElectLeadersResponse, |r| r.error_code != 0
    || r.replica_election_results.iter().any(|t| t
        .partition_result
        .iter()
        .any(|p| p.error_code != 0)));
errors!(InitProducerIdResponse, |r| r.error_code != 0);
errors!(FindCoordinatorResponse, |r| r.error_code != 0
    || r.coordinators.iter().any(|c| c.error_code != 0));
errors!(JoinGroupResponse, |r| r.error_code != 0);
errors!(SyncGroupResponse, |r| r.error_code != 0);
errors!(HeartbeatResponse, |r| r.error_code != 0);
errors!(LeaveGroupResponse, |r| r.error_code != 0
    || r.members.iter().any(|m| m.error_code != 0));
errors!(OffsetCommitResponse, |r| r
    .topics
    .iter()
    .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));
errors!(OffsetFetchResponse, |r| r.error_code != 0
    || r.topics
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.error_code != 0))
    || r.groups.iter().any(|g| {
        g.error_code != 0
            || g.topics
                .iter()
                .any(|t| t.partitions.iter().any(|p| p.error_code != 0))
    }));
errors!(DescribeGroupsResponse, |r| r
    .groups
    .iter()
    .any(|g| g.error_code != 0));
errors!(ListGroupsResponse, |r| r.error_code != 0);
errors!(DeleteGroupsResponse, |r| r
    .results
    .iter()
    .any(|g| g.error_code != 0));
errors!(OffsetDeleteResponse, |r| r.error_code != 0
    || r.topics
        .iter()
        .any(|t| t.partitions.iter().any(|p| p.error_code != 0)));

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn nested_error_codes_count() {
        let ok = ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
            .with_partition_responses(vec![PartitionProduceResponse::default()])]);
        assert!(!ok.has_error());
        let failed =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default(),
                    PartitionProduceResponse::default().with_error_code(6),
                ])]);
        assert!(failed.has_error());
        assert!(HeartbeatResponse::default().with_error_code(27).has_error());
    }
}
