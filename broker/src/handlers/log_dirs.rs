//! DescribeLogDirs (35) and AlterReplicaLogDirs (34), as `kafka-log-dirs` and
//! reassignment tools use them. A Spate broker keeps every partition log in one log
//! directory (`<data dir>/logs`), so moving a replica between directories has nowhere to
//! go: a move into the directory it is already in is done, any other path is
//! LOG_DIR_NOT_FOUND, as Kafka answers for a directory it does not have.
use std::collections::BTreeMap;

use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, TopicName,
};
use spate_metadata::ErrorCode;

use super::str_bytes;
use crate::server::context::RequestContext;

/// Kafka's `UNKNOWN_VOLUME_BYTES`: the volume's size could not be read.
const UNKNOWN_VOLUME_BYTES: i64 = -1;

/// The one log directory with the size, lag (Kafka's: how far its log end is below the
/// high watermark, 0 on a leader) and future flag of each hosted partition asked for
/// (every one when `topics` is null), and the volume's total and usable bytes (v4).
pub fn describe(ctx: &RequestContext, req: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let state = &ctx.state;
    let dir = state.config.log_dir();
    let wanted: Option<BTreeMap<String, Vec<i32>>> = req.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.topic.0.to_string(), t.partitions))
            .collect()
    });
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for p in state.replicas.all() {
        let asked = wanted.as_ref().is_none_or(|w| {
            w.get(&p.tp.topic)
                .is_some_and(|parts| parts.contains(&p.tp.partition))
        });
        if !asked || p.is_failed() {
            continue;
        }
        let (size, _) = p.storage_stats();
        let lag = (p.high_watermark() - p.log_end_offset()).max(0);
        topics.entry(p.tp.topic.clone()).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(p.tp.partition)
                .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                .with_offset_lag(lag)
                .with_is_future_key(false),
        );
    }
    let topics = topics
        .into_iter()
        .map(|(name, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(TopicName(str_bytes(name)))
                .with_partitions(partitions)
        })
        .collect();
    let space = |f: fn(&std::path::Path) -> std::io::Result<u64>| {
        f(&dir)
            .ok()
            .and_then(|b| i64::try_from(b).ok())
            .unwrap_or(UNKNOWN_VOLUME_BYTES)
    };
    let (total, usable) = if ctx.api_version >= 4 {
        (
            space(|p| fs4::total_space(p)),
            space(|p| fs4::available_space(p)),
        )
    } else {
        (UNKNOWN_VOLUME_BYTES, UNKNOWN_VOLUME_BYTES)
    };
    let result = DescribeLogDirsResult::default()
        // Partitions whose log failed are left out, as Kafka leaves out offline logs;
        // the directory itself is in use.
        .with_error_code(0)
        .with_log_dir(str_bytes(dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default()
        .with_error_code(0)
        .with_results(vec![result])
}

/// Moves replicas between log directories: done for the directory they are in, refused
/// with LOG_DIR_NOT_FOUND for any other; a partition not hosted here is
/// REPLICA_NOT_AVAILABLE (Kafka's answer for an unknown replica).
pub fn alter(ctx: &RequestContext, req: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse {
    let state = &ctx.state;
    let ours = state.config.log_dir();
    let same_dir = |path: &str| {
        let asked = std::path::Path::new(path);
        asked == ours
            || std::fs::canonicalize(asked)
                .ok()
                .zip(std::fs::canonicalize(&ours).ok())
                .is_some_and(|(a, b)| a == b)
    };
    let mut results: Vec<AlterReplicaLogDirTopicResult> = Vec::new();
    for dir in req.dirs {
        let here = same_dir(dir.path.as_str());
        for topic in dir.topics {
            let partitions = topic
                .partitions
                .iter()
                .map(|&p| {
                    let code = if !here {
                        ErrorCode::LogDirNotFound.code()
                    } else if state.replicas.get(topic.name.0.as_str(), p).is_none() {
                        ErrorCode::ReplicaNotAvailable.code()
                    } else {
                        0
                    };
                    AlterReplicaLogDirPartitionResult::default()
                        .with_partition_index(p)
                        .with_error_code(code)
                })
                .collect();
            results.push(
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(topic.name)
                    .with_partitions(partitions),
            );
        }
    }
    AlterReplicaLogDirsResponse::default().with_results(results)
}
