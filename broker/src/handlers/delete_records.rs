//! DeleteRecords: moves a partition's log start offset forward.
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use super::{leader_partition, per_partition};
use crate::server::context::RequestContext;

/// Applies each partition's deletion on its leader (here).
pub fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = per_partition(
        req.topics,
        |t| (t.name, t.partitions),
        |name, p| {
            let result = leader_partition(&ctx.state, name, p.partition_index)
                .and_then(|part| part.delete_records_before(p.offset));
            match result {
                Ok(low) => DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(low)
                    .with_error_code(0),
                Err(e) => DeleteRecordsPartitionResult::default()
                    .with_partition_index(p.partition_index)
                    .with_low_watermark(-1)
                    .with_error_code(e.code()),
            }
        },
        |name, partitions| {
            DeleteRecordsTopicResult::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    DeleteRecordsResponse::default().with_topics(topics)
}
