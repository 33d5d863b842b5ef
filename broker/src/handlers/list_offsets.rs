//! ListOffsets: earliest (log start), latest (high watermark; the LSO equals it while
//! there are no transactions), max timestamp (KIP-734), earliest local (v8, KIP-1005:
//! without tiered storage every segment is local, so the log start) and latest tiered
//! (v9: nothing is tiered, so -1, as Kafka answers with remote storage off), or the first
//! offset whose batch's max timestamp is at or after a time.
//!
//! Only consumers (replica id -1) are bounded by the high watermark; any other replica id
//! sees up to the log end offset, as Kafka's isolation rule. Replica id -2 (Kafka's
//! DEBUGGING_REPLICA_ID) may ask any replica, follower included, e.g. for its LEO.
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use super::{hosted_partition, leader_partition, per_partition};
use crate::error::{BrokerError, Result};
use crate::partition::Partition;
use crate::server::context::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// `replica_id` of a consumer.
const CONSUMER_REPLICA_ID: i32 = -1;
/// `replica_id` of a debugging tool: any replica answers, not only the leader.
const DEBUGGING_REPLICA_ID: i32 = -2;

/// Answers every partition from its leader (here), or from any local replica for
/// [`DEBUGGING_REPLICA_ID`].
pub fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let replica_id = req.replica_id.0;
    let topics = per_partition(
        req.topics,
        |t| (t.name, t.partitions),
        |name, p| {
            let part = if replica_id == DEBUGGING_REPLICA_ID {
                hosted_partition(&ctx.state, name, p.partition_index)
            } else {
                leader_partition(&ctx.state, name, p.partition_index)
            };
            let result = part.and_then(|part| {
                // An epoch of -1 passes: the client does not know one.
                let state = part.check_leader_epoch(p.current_leader_epoch)?;
                let bound =
                    fetchable_bound(replica_id, part.high_watermark(), part.log_end_offset());
                let (offset, timestamp) = lookup(&part, p.timestamp, bound)?;
                Ok((offset, timestamp, state.leader_epoch))
            });
            let base =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            match result {
                Ok((offset, timestamp, epoch)) => base
                    .with_error_code(0)
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // The field exists from v4 on; setting it earlier fails to encode.
                    .with_leader_epoch(if ctx.api_version >= 4 { epoch } else { -1 }),
                Err(e) => base
                    .with_error_code(e.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
            }
        },
        |name, partitions| {
            ListOffsetsTopicResponse::default()
                .with_name(name)
                .with_partitions(partitions)
        },
    );
    ListOffsetsResponse::default().with_topics(topics)
}

/// The end of what `replica_id` may learn of: consumers stop at the high watermark,
/// anyone else (a broker, a debugging tool) at the log end offset.
fn fetchable_bound(replica_id: i32, high_watermark: i64, log_end_offset: i64) -> i64 {
    if replica_id == CONSUMER_REPLICA_ID {
        high_watermark
    } else {
        log_end_offset
    }
}

/// (offset, timestamp) for one query, seeing only offsets below `bound` (see
/// [`fetchable_bound`]); (-1, -1) when no record matches.
fn lookup(part: &Partition, query: i64, bound: i64) -> Result<(i64, i64)> {
    match query {
        LATEST => Ok((bound, -1)),
        EARLIEST | EARLIEST_LOCAL => Ok((part.log_start_offset(), -1)),
        LATEST_TIERED => Ok((-1, -1)),
        MAX_TIMESTAMP => {
            let Some((offset, ts)) = part.max_timestamp_offset() else {
                return Ok((-1, -1));
            };
            // The log knows the batch; the record with the largest timestamp (the first
            // of equals, as Kafka) is found inside it.
            let found = refine_in_batch(part, offset, bound, |t| t >= ts).unwrap_or((offset, ts));
            Ok(if found.0 < bound { found } else { (-1, -1) })
        }
        ts if ts >= 0 => {
            let Some((offset, batch_max)) = part.offset_for_timestamp(ts)? else {
                return Ok((-1, -1));
            };
            // The first *record* at or after `ts` may sit inside the batch.
            let found =
                refine_in_batch(part, offset, bound, |t| t >= ts).unwrap_or((offset, batch_max));
            // Consumers must not learn of offsets above the high watermark (their bound).
            Ok(if found.0 < bound { found } else { (-1, -1) })
        }
        other => Err(BrokerError::InvalidRequest(format!(
            "ListOffsets timestamp {other} is not a time nor one of -1 to -5"
        ))),
    }
}

/// Within the batch holding `offset`, the first record whose timestamp satisfies
/// `wanted`, as (offset, timestamp). Decompresses the batch: ListOffsets is rare enough.
fn refine_in_batch(
    part: &Partition,
    offset: i64,
    hw: i64,
    wanted: impl Fn(i64) -> bool,
) -> Option<(i64, i64)> {
    let mut bytes = part.read_below(offset, 1, hw).ok()?;
    let set = RecordBatchDecoder::decode(&mut bytes).ok()?;
    set.records
        .iter()
        .filter(|r| r.offset >= offset)
        .find(|r| wanted(r.timestamp))
        .map(|r| (r.offset, r.timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_consumers_are_bounded_by_the_high_watermark() {
        assert_eq!(fetchable_bound(CONSUMER_REPLICA_ID, 10, 15), 10);
        assert_eq!(fetchable_bound(DEBUGGING_REPLICA_ID, 10, 15), 15);
        assert_eq!(fetchable_bound(3, 10, 15), 15);
    }
}
