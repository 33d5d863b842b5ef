//! ListOffsets: earliest (log start), latest (high watermark; the LSO equals it while
//! there are no transactions), max timestamp (KIP-734), or the first offset whose
//! batch's max timestamp is at or after a time.
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::records::RecordBatchDecoder;

use super::leader_partition;
use crate::error::Result;
use crate::partition::Partition;
use crate::server::dispatch::RequestContext;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

/// Answers every partition from its leader (here).
pub fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> ListOffsetsResponse {
    let topics = req
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| {
                    let result =
                        leader_partition(&ctx.state, &name, p.partition_index).and_then(|part| {
                            let state = part.check_leader_epoch(p.current_leader_epoch)?;
                            let (offset, timestamp) = lookup(&part, p.timestamp)?;
                            Ok((offset, timestamp, state.leader_epoch))
                        });
                    let base = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index);
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
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (offset, timestamp) for one query; (-1, -1) when no record matches.
fn lookup(part: &Partition, query: i64) -> Result<(i64, i64)> {
    let hw = part.high_watermark();
    match query {
        LATEST => Ok((hw, -1)),
        EARLIEST => Ok((part.log_start_offset(), -1)),
        MAX_TIMESTAMP => {
            let Some((offset, ts)) = part.with_log(|log| log.max_timestamp_offset()) else {
                return Ok((-1, -1));
            };
            // The log knows the batch; the record with the largest timestamp (the first
            // of equals, as Kafka) is found inside it.
            let found = refine_in_batch(part, offset, hw, |t| t >= ts).unwrap_or((offset, ts));
            Ok(if found.0 < hw { found } else { (-1, -1) })
        }
        ts if ts >= 0 => {
            let Some((offset, batch_max)) = part.with_log(|log| log.offset_for_timestamp(ts))?
            else {
                return Ok((-1, -1));
            };
            // The first *record* at or after `ts` may sit inside the batch.
            let found =
                refine_in_batch(part, offset, hw, |t| t >= ts).unwrap_or((offset, batch_max));
            // Consumers must not learn of offsets above the high watermark.
            Ok(if found.0 < hw { found } else { (-1, -1) })
        }
        other => Err(crate::error::BrokerError::InvalidRequest(format!(
            "ListOffsets timestamp {other} is not a time nor one of -1, -2, -3"
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
    let mut bytes = part.with_log(|log| log.read(offset, 1, hw, true)).ok()?;
    let set = RecordBatchDecoder::decode(&mut bytes).ok()?;
    set.records
        .iter()
        .filter(|r| r.offset >= offset)
        .find(|r| wanted(r.timestamp))
        .map(|r| (r.offset, r.timestamp))
}
