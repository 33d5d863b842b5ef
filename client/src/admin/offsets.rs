//! ListOffsets and DeleteRecords: per-partition requests routed to each partition's leader.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DeleteRecordsRequest, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::types::{NodeId, TopicPartition};

/// Which offset ListOffsets should find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark (read_committed: the last stable offset).
    Latest,
    /// The offset of the record with the largest timestamp (KIP-734).
    MaxTimestamp,
    /// The first offset whose timestamp is at or after this (ms since the epoch).
    Timestamp(i64),
}

impl OffsetSpec {
    fn wire(self) -> i64 {
        match self {
            OffsetSpec::Earliest => -2,
            OffsetSpec::Latest => -1,
            OffsetSpec::MaxTimestamp => -3,
            OffsetSpec::Timestamp(t) => t,
        }
    }
}

/// A ListOffsets answer for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedOffset {
    /// The offset (-1 when no record matches a timestamp query).
    pub offset: i64,
    /// Timestamp of that record, or -1.
    pub timestamp: i64,
    /// Leader epoch of that record, or -1.
    pub leader_epoch: i32,
}

/// Per-partition results, in request order.
pub type PartitionResults<T> = Vec<(TopicPartition, Result<T>)>;

/// Groups partitions by leader; partitions whose leader cannot be found get their error.
async fn by_leader<T: Copy>(
    cluster: &Cluster,
    items: &[(TopicPartition, T)],
) -> (
    BTreeMap<NodeId, Vec<(TopicPartition, T)>>,
    PartitionResults<T>,
) {
    let mut groups: BTreeMap<NodeId, Vec<(TopicPartition, T)>> = BTreeMap::new();
    let mut failed = Vec::new();
    for (tp, item) in items {
        match cluster.leader(&tp.topic, tp.partition).await {
            Ok(node) => groups.entry(node).or_default().push((tp.clone(), *item)),
            Err(e) => failed.push((tp.clone(), Err(e))),
        }
    }
    (groups, failed)
}

/// Runs ListOffsets for each partition against its leader, retrying stale-leader errors.
/// A partition may appear more than once (e.g. earliest and latest); each gets its answer.
pub async fn list_offsets(
    cluster: &Arc<Cluster>,
    specs: &[(TopicPartition, OffsetSpec)],
    isolation_level: i8,
) -> Result<PartitionResults<ListedOffset>> {
    let mut results: Vec<Option<Result<ListedOffset>>> = vec![None; specs.len()];
    let mut pending: Vec<usize> = (0..specs.len()).collect();
    let mut attempt = 0;
    while !pending.is_empty() {
        // One request may name a partition once: later duplicates wait for the next round.
        let mut round: Vec<usize> = Vec::new();
        let mut later: Vec<usize> = Vec::new();
        for i in pending {
            if round.iter().any(|&j| specs[j].0 == specs[i].0) {
                later.push(i);
            } else {
                round.push(i);
            }
        }
        let items: Vec<(TopicPartition, usize)> =
            round.iter().map(|&i| (specs[i].0.clone(), i)).collect();
        let (groups, failed) = by_leader(cluster, &items).await;
        for (tp, r) in failed {
            if let (Err(e), Some(i)) = (r, items.iter().find(|(t, _)| *t == tp).map(|(_, i)| *i)) {
                results[i] = Some(Err(e));
            }
        }
        let mut retry = Vec::new();
        for (node, group) in groups {
            let asked: Vec<(TopicPartition, OffsetSpec)> = group
                .iter()
                .map(|(tp, i)| (tp.clone(), specs[*i].1))
                .collect();
            match list_offsets_on(cluster, node, &asked, isolation_level, CONSUMER_REPLICA_ID).await
            {
                Ok(answers) => {
                    for ((_, r), (_, i)) in answers.into_iter().zip(group.iter()) {
                        match r {
                            Err(e) if e.is_retriable() && attempt < cluster.config().retries => {
                                retry.push(*i)
                            }
                            r => results[*i] = Some(r),
                        }
                    }
                }
                Err(e) if e.is_retriable() && attempt < cluster.config().retries => {
                    retry.extend(group.iter().map(|(_, i)| *i))
                }
                Err(e) => {
                    for (_, i) in &group {
                        results[*i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        if !retry.is_empty() {
            tokio::time::sleep(cluster.config().backoff(attempt)).await;
            let topics: Vec<String> = retry
                .iter()
                .map(|&i| specs[i].0.topic.to_string())
                .collect();
            let _ = cluster.refresh(Some(&topics)).await;
            attempt += 1;
        }
        retry.extend(later);
        pending = retry;
    }
    Ok(specs
        .iter()
        .zip(results)
        .map(|((tp, _), r)| {
            (
                tp.clone(),
                r.unwrap_or_else(|| Err(Error::protocol("no ListOffsets result"))),
            )
        })
        .collect())
}

/// `replica_id` of a consumer: bounded by the high watermark, answered by leaders only.
const CONSUMER_REPLICA_ID: i32 = -1;
/// Kafka's DEBUGGING_REPLICA_ID: any replica answers, latest is its log end offset.
const DEBUGGING_REPLICA_ID: i32 = -2;

/// Each partition's log end offset as broker `node`'s replica holds it (ListOffsets latest
/// with the debugging replica id), leader or follower alike; no retries.
pub async fn replica_log_end_offsets(
    cluster: &Cluster,
    node: NodeId,
    partitions: &[TopicPartition],
) -> Result<PartitionResults<i64>> {
    let items: Vec<(TopicPartition, OffsetSpec)> = partitions
        .iter()
        .map(|tp| (tp.clone(), OffsetSpec::Latest))
        .collect();
    let answers = list_offsets_on(cluster, node, &items, 0, DEBUGGING_REPLICA_ID).await?;
    Ok(answers
        .into_iter()
        .map(|(tp, r)| (tp, r.map(|o| o.offset)))
        .collect())
}

async fn list_offsets_on(
    cluster: &Cluster,
    node: NodeId,
    items: &[(TopicPartition, OffsetSpec)],
    isolation_level: i8,
    replica_id: i32,
) -> Result<PartitionResults<ListedOffset>> {
    let conn = cluster.connection(node).await?;
    let version = conn.api_version(ApiKey::ListOffsets)?;
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for (tp, spec) in items {
        let p = ListOffsetsPartition::default()
            .with_partition_index(tp.partition)
            .with_timestamp(spec.wire());
        match topics.iter_mut().find(|t| t.name.0.as_str() == &*tp.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                ListOffsetsTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    // Always set: the default (0) would claim to be broker 0.
    let mut req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics);
    if version >= 2 {
        req.isolation_level = isolation_level;
    }
    if version >= 10 {
        req.timeout_ms =
            i32::try_from(cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    }
    let resp = conn.request(version, &req).await?;
    Ok(items
        .iter()
        .map(|(tp, _)| {
            let found = resp
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == &*tp.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == tp.partition);
            let r = match found {
                None => Err(Error::protocol(format!(
                    "ListOffsets response has no entry for {tp}"
                ))),
                Some(p) => {
                    match Error::from_code(p.error_code, None, format!("list offsets of {tp}")) {
                        Some(e) => Err(e),
                        None => Ok(ListedOffset {
                            offset: p.offset,
                            timestamp: p.timestamp,
                            leader_epoch: p.leader_epoch,
                        }),
                    }
                }
            };
            (tp.clone(), r)
        })
        .collect())
}

/// Runs DeleteRecords (delete everything below `offset`) on each partition's leader; the
/// result is the new low watermark.
pub async fn delete_records(
    cluster: &Arc<Cluster>,
    items: &[(TopicPartition, i64)],
) -> Result<PartitionResults<i64>> {
    let (groups, mut out) = by_leader(cluster, items).await;
    let timeout_ms =
        i32::try_from(cluster.config().request_timeout.as_millis()).unwrap_or(i32::MAX);
    for (node, group) in groups {
        let answered = async {
            let conn = cluster.connection(node).await?;
            let version = conn.api_version(ApiKey::DeleteRecords)?;
            let mut topics: Vec<DeleteRecordsTopic> = Vec::new();
            for (tp, offset) in &group {
                let p = DeleteRecordsPartition::default()
                    .with_partition_index(tp.partition)
                    .with_offset(*offset);
                match topics.iter_mut().find(|t| t.name.0.as_str() == &*tp.topic) {
                    Some(t) => t.partitions.push(p),
                    None => topics.push(
                        DeleteRecordsTopic::default()
                            .with_name(topic_name(&tp.topic))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            let req = DeleteRecordsRequest::default()
                .with_topics(topics)
                .with_timeout_ms(timeout_ms);
            conn.request(version, &req).await
        }
        .await;
        for (tp, _) in group {
            let r = match &answered {
                Err(e) => Err(e.clone()),
                Ok(resp) => {
                    let found = resp
                        .topics
                        .iter()
                        .filter(|t| t.name.0.as_str() == &*tp.topic)
                        .flat_map(|t| t.partitions.iter())
                        .find(|p| p.partition_index == tp.partition);
                    match found {
                        None => Err(Error::protocol(format!(
                            "DeleteRecords response has no entry for {tp}"
                        ))),
                        Some(p) => match Error::from_code(
                            p.error_code,
                            None,
                            format!("delete records of {tp}"),
                        ) {
                            Some(e) => Err(e),
                            None => Ok(p.low_watermark),
                        },
                    }
                }
            };
            out.push((tp, r));
        }
    }
    Ok(out)
}

/// A topic name in kafka-protocol's wrapper.
pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}
