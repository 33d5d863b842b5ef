//! AlterPartition (Kafka API 56): a partition leader asks to shrink or expand the ISR
//! (docs/architecture.md §5), naming the partition epoch it knows so the change is a compare-and-set.
//! The checks, their order and their error codes are those of Kafka's
//! `ReplicationControlManager.alterPartition`, with KIP-903's broker-epoch check on ISR
//! members.

use std::collections::BTreeSet;

use spate_proto::controller::{
    AlterPartitionData, AlterPartitionPartitionResult, AlterPartitionRequest,
    AlterPartitionResponse, AlterPartitionTopicResult,
};
use spate_proto::metadata::MetadataRecord;

use super::election::{PartitionChangeBuilder, TopicRules};
use super::ControllerResult;
use crate::error::{ApiError, ErrorCode};
use spate_metadata::ids::{BrokerEpoch, NodeId, TopicId};
use spate_metadata::{records, MetadataImage, PartitionImage, TopicImage};

/// The broker epoch an ISR member carries when the leader does not know it; accepted only
/// for members already in the ISR (Kafka skips the check for -1, but an added member
/// without an epoch is exactly the KIP-903 hole).
pub const UNKNOWN_BROKER_EPOCH: i64 = -1;

/// Decides an AlterPartition request. Each accepted partition yields one
/// `PartitionChange` with the new ISR (the leader stays; applying it bumps the partition
/// epoch); its result carries the state the partition will have once that commits. An
/// ISR equal to the current one succeeds without a record.
pub fn alter_partition(
    image: &MetadataImage,
    req: &AlterPartitionRequest,
) -> ControllerResult<AlterPartitionResponse> {
    let requester = match check_requester(image, req) {
        Ok(id) => id,
        Err(e) => {
            return ControllerResult::response_only(AlterPartitionResponse {
                error_code: e.code.proto_code(),
                error_message: e.message,
                ..Default::default()
            })
        }
    };
    let mut records = Vec::new();
    let mut seen = BTreeSet::new();
    let mut topics = Vec::new();
    for t in &req.topics {
        let topic = TopicId::from_bytes(&t.topic_id)
            .ok()
            .and_then(|id| image.topic(id));
        let partitions = t
            .partitions
            .iter()
            .map(|data| {
                let outcome = match topic {
                    None => Err(ApiError::new(
                        ErrorCode::UnknownTopicId,
                        "no topic has this id; it may have been deleted",
                    )),
                    Some(_) if !seen.insert((t.topic_id.clone(), data.partition)) => {
                        Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("partition {} is listed twice", data.partition),
                        ))
                    }
                    Some(topic) => decide(image, requester, topic, data),
                };
                match outcome {
                    Ok((after, record)) => {
                        records.extend(record);
                        committed(data.partition, &after)
                    }
                    Err(e) => failed(data.partition, e),
                }
            })
            .collect();
        topics.push(AlterPartitionTopicResult {
            topic_id: t.topic_id.clone(),
            partitions,
        });
    }
    ControllerResult {
        records,
        response: AlterPartitionResponse {
            error_code: ErrorCode::None.proto_code(),
            error_message: String::new(),
            topics,
            metadata_offset: 0,
        },
    }
}

/// Kafka's `checkBrokerEpoch`: only the current registration of a broker may ask.
fn check_requester(image: &MetadataImage, req: &AlterPartitionRequest) -> Result<NodeId, ApiError> {
    let id = NodeId::from_wire(req.broker_id);
    match id.and_then(|id| image.broker(id)) {
        Some(b) if b.epoch.0 == req.broker_epoch => Ok(b.id),
        Some(b) => Err(ApiError::new(
            ErrorCode::StaleBrokerEpoch,
            format!(
                "broker {} has epoch {}, the request carries {}; re-register",
                b.id, b.epoch, req.broker_epoch
            ),
        )),
        None => Err(ApiError::new(
            ErrorCode::StaleBrokerEpoch,
            format!("broker {} is not registered; register first", req.broker_id),
        )),
    }
}

/// One partition: the state after the change and the record to commit (if any).
fn decide(
    image: &MetadataImage,
    requester: NodeId,
    topic: &TopicImage,
    data: &AlterPartitionData,
) -> Result<(PartitionImage, Option<MetadataRecord>), ApiError> {
    let tp = format!("{}-{}", topic.name, data.partition);
    let p = topic.partitions.get(&data.partition).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!(
                "topic '{}' has {} partitions; partition {} does not exist",
                topic.name,
                topic.partitions.len(),
                data.partition
            ),
        )
    })?;
    let isr = validate(image, requester, topic.id, &tp, p, data)?;
    let alive = |n: NodeId| image.can_serve(n, topic.id, data.partition);
    let rules = TopicRules::of(image, &topic.name);
    let Some(record) = PartitionChangeBuilder::new(topic.id, data.partition, p, rules)
        .with_isr(isr.clone())
        .build(alive)
    else {
        return Ok((p.clone(), None));
    };
    if changes_leader(&record) {
        // Kafka: a leader's AlterPartition never moves leadership. Validation keeps the
        // (live) leader in the ISR, so this only guards against a future rule change.
        return Err(ApiError::new(
            ErrorCode::NotLeaderOrFollower,
            format!("{tp}: the new ISR would move leadership away from broker {requester}"),
        ));
    }
    let mut after = p.clone();
    after.isr = isr;
    after.partition_epoch = after.partition_epoch.next();
    Ok((after, Some(record)))
}

/// Kafka's `validateAlterPartitionData`, in its order; returns the new ISR.
fn validate(
    image: &MetadataImage,
    requester: NodeId,
    topic: TopicId,
    tp: &str,
    p: &PartitionImage,
    data: &AlterPartitionData,
) -> Result<Vec<NodeId>, ApiError> {
    let err = |code, msg: String| Err(ApiError::new(code, format!("{tp}: {msg}")));
    // Epochs ahead of ours mean the leader saw metadata this controller has not: it is
    // probably no longer the active one, so the leader should look for another (Kafka).
    if data.leader_epoch > p.leader_epoch.0 || data.partition_epoch > p.partition_epoch.0 {
        return err(
            ErrorCode::NotController,
            format!(
                "the request's leader epoch {} / partition epoch {} are ahead of this controller's {} / {}",
                data.leader_epoch, data.partition_epoch, p.leader_epoch, p.partition_epoch
            ),
        );
    }
    if data.leader_epoch < p.leader_epoch.0 {
        return err(
            ErrorCode::FencedLeaderEpoch,
            format!(
                "leader epoch {} is older than the current {}; the partition has a new leader",
                data.leader_epoch, p.leader_epoch
            ),
        );
    }
    // With the leader epoch current, a requester other than the leader is a confused
    // broker, not a stale one: Kafka answers INVALID_REQUEST here.
    if p.leader != Some(requester) {
        return err(
            ErrorCode::InvalidRequest,
            format!(
                "broker {requester} is not the leader (the leader is {})",
                p.leader
                    .map_or_else(|| "none".to_string(), |l| l.to_string())
            ),
        );
    }
    if data.partition_epoch < p.partition_epoch.0 {
        return err(
            ErrorCode::InvalidUpdateVersion,
            format!(
                "partition epoch {} is not the current {}; apply the latest metadata and retry",
                data.partition_epoch, p.partition_epoch
            ),
        );
    }
    let isr: Vec<NodeId> = data.new_isr.iter().map(|m| NodeId(m.broker_id)).collect();
    let distinct: BTreeSet<NodeId> = isr.iter().copied().collect();
    if isr.is_empty() || distinct.len() != isr.len() || !isr.iter().all(|n| p.replicas.contains(n))
    {
        return err(
            ErrorCode::InvalidRequest,
            format!(
                "ISR {:?} must be non-empty, without duplicates, and drawn from the replicas {:?}",
                wire(&isr),
                wire(&p.replicas)
            ),
        );
    }
    if !isr.contains(&requester) {
        return err(
            ErrorCode::InvalidRequest,
            format!("ISR {:?} leaves out the leader {requester}", wire(&isr)),
        );
    }
    let ineligible: Vec<String> = data
        .new_isr
        .iter()
        .filter_map(|m| {
            ineligible(
                image,
                p,
                (topic, data.partition),
                NodeId(m.broker_id),
                m.broker_epoch,
            )
        })
        .collect();
    if !ineligible.is_empty() {
        return err(
            ErrorCode::IneligibleReplica,
            format!("ineligible ISR members: {}", ineligible.join(", ")),
        );
    }
    Ok(isr)
}

/// Why `member` may not be in the ISR, if it may not (Kafka's `ineligibleReplicasForIsr`).
/// KIP-903: a broker that restarted since the leader saw it fetch has a new epoch and may
/// have lost unflushed data, so the epoch the leader saw must be the current one.
fn ineligible(
    image: &MetadataImage,
    p: &PartitionImage,
    partition: (TopicId, i32),
    member: NodeId,
    epoch: i64,
) -> Option<String> {
    let Some(b) = image.broker(member) else {
        return Some(format!("{member} (not registered)"));
    };
    if b.fenced {
        return Some(format!("{member} (fenced)"));
    }
    if b.offline_replicas.contains(&partition) {
        return Some(format!("{member} (its log of this partition failed)"));
    }
    if epoch == UNKNOWN_BROKER_EPOCH {
        return (!p.isr.contains(&member))
            .then(|| format!("{member} (joining without a broker epoch)"));
    }
    (BrokerEpoch(epoch) != b.epoch).then(|| {
        format!(
            "{member} (broker epoch {epoch} is not its current {}: it restarted)",
            b.epoch
        )
    })
}

fn changes_leader(record: &MetadataRecord) -> bool {
    use spate_proto::metadata::metadata_record::Record;
    matches!(&record.record, Some(Record::PartitionChange(c)) if c.leader.is_some())
}

fn wire(ids: &[NodeId]) -> Vec<i32> {
    records::wire_ids(ids)
}

/// A success result carrying the partition's state.
pub fn committed(index: i32, p: &PartitionImage) -> AlterPartitionPartitionResult {
    AlterPartitionPartitionResult {
        partition: index,
        error_code: ErrorCode::None.proto_code(),
        error_message: String::new(),
        leader: NodeId::to_wire(p.leader),
        leader_epoch: p.leader_epoch.0,
        isr: wire(&p.isr),
        partition_epoch: p.partition_epoch.0,
    }
}

fn failed(index: i32, e: ApiError) -> AlterPartitionPartitionResult {
    AlterPartitionPartitionResult {
        partition: index,
        error_code: e.code.proto_code(),
        error_message: e.message,
        leader: -1,
        leader_epoch: -1,
        isr: Vec::new(),
        partition_epoch: -1,
    }
}

/// Rewrites the successful results from `image` (the state after the commit), so the
/// leader acts on what was committed rather than on what was predicted.
pub fn refresh_from_image(image: &MetadataImage, resp: &mut AlterPartitionResponse) {
    for t in &mut resp.topics {
        let Ok(topic) = TopicId::from_bytes(&t.topic_id) else {
            continue;
        };
        for r in t.partitions.iter_mut().filter(|r| r.error_code == 0) {
            if let Some(p) = image.partition(topic, r.partition) {
                *r = committed(r.partition, p);
            }
        }
    }
}

#[cfg(test)]
#[path = "alter_partition_tests.rs"]
mod tests;
