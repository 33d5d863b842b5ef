//! CreateTopics, DeleteTopics and CreatePartitions decisions, with Kafka's error codes.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rand::Rng;
use spate_proto::controller::{
    CreatableTopic, CreatableTopicResult, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    PartitionCountChange, TopicResult,
};
use spate_proto::metadata::MetadataRecord;

use super::placement::{self, Candidate};
use super::{ControllerResult, TopicDefaults};
use crate::error::{ApiError, ErrorCode};
use spate_metadata::config_defs;
use spate_metadata::ids::{LeaderEpoch, NodeId, PartitionEpoch, TopicId};
pub use spate_metadata::topic_name::validate_topic_name;
use spate_metadata::{records, ConfigResource, MetadataImage, PartitionImage};

/// The most partitions one topic may have; guards memory against absurd requests.
pub const MAX_PARTITIONS: i32 = 100_000;

/// The most partitions one CreateTopics request (or one Metadata request's auto-creation)
/// may create in all; the topics beyond it are answered THROTTLING_QUOTA_EXCEEDED, which
/// clients retry (as for Kafka's controller mutation quota, KIP-599), so a large batch
/// goes through in several requests instead of one commit of unbounded size.
pub const MAX_PARTITIONS_PER_REQUEST: i64 = 100_000;

/// Partitions `topic` asks for (before placement, which is the costly part).
fn asked_partitions(topic: &CreatableTopic, defaults: &TopicDefaults) -> i64 {
    if !topic.assignments.is_empty() {
        topic.assignments.len() as i64
    } else if topic.num_partitions == -1 {
        i64::from(defaults.num_partitions)
    } else {
        i64::from(topic.num_partitions.max(0))
    }
}

/// Names that differ only by '.' vs '_' collide in Kafka's metric names, so Kafka refuses them.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Names that appear more than once in one request (Kafka rejects all copies).
fn duplicates<'a>(names: impl Iterator<Item = &'a str>) -> BTreeSet<&'a str> {
    let mut seen = BTreeSet::new();
    names.filter(|n| !seen.insert(*n)).collect()
}

fn duplicate_error(name: &str) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        format!("topic '{name}' appears more than once in the request"),
    )
}

/// A topic the request may create: its id, records and shape.
struct NewTopic {
    id: TopicId,
    records: Vec<MetadataRecord>,
    partitions: i32,
    replication_factor: i32,
}

/// Decides a CreateTopics request. `rng` supplies topic ids and placement offsets.
pub fn create_topics(
    image: &MetadataImage,
    req: &CreateTopicsRequest,
    defaults: &TopicDefaults,
    rng: &mut impl Rng,
) -> ControllerResult<CreateTopicsResponse> {
    let dups = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let brokers = placement::candidates(image);
    let mut taken_ids = BTreeSet::new();
    let mut taken_keys: BTreeMap<String, String> = image
        .topic_names()
        .keys()
        .map(|n| (collision_key(n), n.clone()))
        .collect();
    let mut all_records = Vec::new();
    let mut results = Vec::new();
    let mut partitions_created: i64 = 0;
    for topic in &req.topics {
        let asked = asked_partitions(topic, defaults);
        let outcome = if dups.contains(topic.name.as_str()) {
            Err(duplicate_error(&topic.name))
        } else if asked <= i64::from(MAX_PARTITIONS)
            && partitions_created + asked > MAX_PARTITIONS_PER_REQUEST
        {
            Err(ApiError::new(
                ErrorCode::ThrottlingQuotaExceeded,
                format!("this request already creates {partitions_created} partitions and may create at most {MAX_PARTITIONS_PER_REQUEST}; retry this topic in another request"),
            ))
        } else {
            create_one(
                image,
                topic,
                defaults,
                &brokers,
                &taken_keys,
                &taken_ids,
                rng,
            )
        };
        let mut result = CreatableTopicResult {
            name: topic.name.clone(),
            ..Default::default()
        };
        match outcome {
            Ok(new) => {
                partitions_created += i64::from(new.partitions);
                taken_ids.insert(new.id);
                taken_keys.insert(collision_key(&topic.name), topic.name.clone());
                result.num_partitions = new.partitions;
                result.replication_factor = new.replication_factor;
                // validate_only creates nothing, so there is no id to report.
                if !req.validate_only {
                    result.topic_id = new.id.to_bytes();
                    all_records.extend(new.records);
                }
            }
            Err(e) => {
                result.error_code = e.code.proto_code();
                result.error_message = e.message;
                result.num_partitions = -1;
                result.replication_factor = -1;
            }
        }
        results.push(result);
    }
    ControllerResult {
        records: all_records,
        response: CreateTopicsResponse { topics: results },
    }
}

fn create_one(
    image: &MetadataImage,
    topic: &CreatableTopic,
    defaults: &TopicDefaults,
    brokers: &[Candidate],
    taken_keys: &BTreeMap<String, String>,
    taken_ids: &BTreeSet<TopicId>,
    rng: &mut impl Rng,
) -> Result<NewTopic, ApiError> {
    let name = &topic.name;
    validate_topic_name(name)?;
    if image.topic_by_name(name).is_some() {
        return Err(ApiError::new(
            ErrorCode::TopicAlreadyExists,
            format!("topic '{name}' already exists"),
        ));
    }
    if let Some(other) = taken_keys.get(&collision_key(name)) {
        return Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("topic '{name}' collides with existing topic '{other}' ('.' and '_' are the same in metric names)"),
        ));
    }
    let configs = validate_configs(&topic.configs)?;
    let assignment = if topic.assignments.is_empty() {
        placed(topic, defaults, brokers, rng)?
    } else {
        manual(image, topic)?
    };
    let id = fresh_topic_id(image, taken_ids, rng)?;
    let mut out = vec![records::topic(name, id)];
    let resource = ConfigResource::Topic(name.clone());
    out.extend(
        configs
            .iter()
            .map(|(k, v)| records::config(&resource, k, Some(v))),
    );
    for (index, p) in assignment.iter().enumerate() {
        let index = i32::try_from(index).map_err(|_| too_many_partitions(index))?;
        out.push(records::partition(id, index, p));
    }
    let replication_factor = assignment.first().map_or(0, |p| p.replicas.len());
    Ok(NewTopic {
        id,
        records: out,
        partitions: i32::try_from(assignment.len()).unwrap_or(i32::MAX),
        replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
    })
}

fn too_many_partitions(count: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidPartitions,
        format!("{count} partitions is above the limit of {MAX_PARTITIONS}"),
    )
}

/// Validates request configs; sorted so the records are deterministic.
fn validate_configs(
    configs: &HashMap<String, String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    let sorted: BTreeMap<String, String> = configs
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &sorted {
        config_defs::validate(k, v).map_err(|m| ApiError::new(ErrorCode::InvalidConfig, m))?;
    }
    Ok(sorted)
}

/// A fresh partition: leader is the first ISR member, epochs start at 0.
fn new_partition(replicas: Vec<NodeId>, isr: Vec<NodeId>) -> PartitionImage {
    PartitionImage {
        leader: isr.first().copied(),
        replicas,
        isr,
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
    }
}

fn placed(
    topic: &CreatableTopic,
    defaults: &TopicDefaults,
    brokers: &[Candidate],
    rng: &mut impl Rng,
) -> Result<Vec<PartitionImage>, ApiError> {
    let partitions = if topic.num_partitions == -1 {
        defaults.num_partitions
    } else {
        topic.num_partitions
    };
    if partitions <= 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("number of partitions must be larger than 0, got {partitions}"),
        ));
    }
    if partitions > MAX_PARTITIONS {
        return Err(too_many_partitions(partitions));
    }
    let rf = if topic.replication_factor == -1 {
        defaults.replication_factor
    } else {
        topic.replication_factor
    };
    if rf <= 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            format!("replication factor must be larger than 0, got {rf}"),
        ));
    }
    let start = if brokers.is_empty() {
        0
    } else {
        rng.random_range(0..brokers.len())
    };
    let assignment = placement::place(brokers, 0, partitions, rf, start)?;
    Ok(assignment
        .into_iter()
        .map(|r| new_partition(r.clone(), r))
        .collect())
}

/// Validates an explicit assignment as KRaft does: unique, registered brokers, the same
/// replication factor everywhere, and at least one unfenced replica per partition.
fn manual(image: &MetadataImage, topic: &CreatableTopic) -> Result<Vec<PartitionImage>, ApiError> {
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "set either an explicit assignment or num_partitions/replication_factor, not both",
        ));
    }
    if topic.assignments.len() > MAX_PARTITIONS as usize {
        return Err(too_many_partitions(topic.assignments.len()));
    }
    let rf = topic.assignments.first().map_or(0, |a| a.ids.len());
    let mut out = Vec::with_capacity(topic.assignments.len());
    for (p, list) in topic.assignments.iter().enumerate() {
        let p = i32::try_from(p).unwrap_or(i32::MAX);
        out.push(assigned_partition(
            image,
            p,
            &list.ids,
            rf,
            ErrorCode::InvalidReplicationFactor,
        )?);
    }
    Ok(out)
}

/// One partition of an explicit assignment, validated as KRaft validates it: replicas
/// given, each once, each a registered broker, `rf` of them (the topic's replication
/// factor), and at least one unfenced (else `all_fenced`: Kafka answers CreateTopics
/// with INVALID_REPLICATION_FACTOR, CreatePartitions with INVALID_REPLICA_ASSIGNMENT).
fn assigned_partition(
    image: &MetadataImage,
    p: i32,
    ids: &[i32],
    rf: usize,
    all_fenced: ErrorCode,
) -> Result<PartitionImage, ApiError> {
    let bad = |m: String| Err(ApiError::new(ErrorCode::InvalidReplicaAssignment, m));
    let replicas: Vec<NodeId> = ids.iter().map(|&i| NodeId(i)).collect();
    if replicas.is_empty() {
        return bad(format!("partition {p} has no replicas"));
    }
    if replicas.len() != rf {
        return bad(format!(
            "all partitions need the same number of replicas; partition {p} has {}, the topic's others have {rf}",
            replicas.len()
        ));
    }
    if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
        return bad(format!("partition {p} lists a broker twice: {ids:?}"));
    }
    if let Some(missing) = replicas.iter().find(|r| image.broker(**r).is_none()) {
        return bad(format!(
            "partition {p} names broker {missing}, which is not registered"
        ));
    }
    let isr: Vec<NodeId> = replicas
        .iter()
        .copied()
        .filter(|&r| image.is_unfenced(r))
        .collect();
    if isr.is_empty() {
        return Err(ApiError::new(
            all_fenced,
            format!("all brokers assigned to partition {p} are fenced or in controlled shutdown"),
        ));
    }
    Ok(new_partition(replicas, isr))
}

fn fresh_topic_id(
    image: &MetadataImage,
    taken: &BTreeSet<TopicId>,
    rng: &mut impl Rng,
) -> Result<TopicId, ApiError> {
    // A 122-bit random id practically never collides; the bound only keeps this total.
    for _ in 0..16 {
        let id = TopicId::from_random(rng.random());
        if id != TopicId::ZERO && image.topic(id).is_none() && !taken.contains(&id) {
            return Ok(id);
        }
    }
    Err(ApiError::new(
        ErrorCode::UnknownServerError,
        "could not pick an unused topic id",
    ))
}

fn topic_result(name: &str, outcome: Result<(), ApiError>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name: name.to_string(),
            error_code: 0,
            error_message: String::new(),
        },
        Err(e) => TopicResult {
            name: name.to_string(),
            error_code: e.code.proto_code(),
            error_message: e.message,
        },
    }
}

/// Decides a DeleteTopics request.
pub fn delete_topics(
    image: &MetadataImage,
    req: &DeleteTopicsRequest,
) -> ControllerResult<DeleteTopicsResponse> {
    let dups = duplicates(req.names.iter().map(String::as_str));
    let mut out = Vec::new();
    let mut results = Vec::new();
    for name in &req.names {
        let outcome = if dups.contains(name.as_str()) {
            Err(duplicate_error(name))
        } else if let Some(t) = image.topic_by_name(name) {
            out.push(records::remove_topic(t.id));
            Ok(())
        } else {
            Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("topic '{name}' does not exist"),
            ))
        };
        results.push(topic_result(name, outcome));
    }
    ControllerResult {
        records: out,
        response: DeleteTopicsResponse { topics: results },
    }
}

/// Decides a CreatePartitions request: new partitions keep the topic's replication factor.
pub fn create_partitions(
    image: &MetadataImage,
    req: &CreatePartitionsRequest,
    rng: &mut impl Rng,
) -> ControllerResult<CreatePartitionsResponse> {
    let dups = duplicates(req.topics.iter().map(|t| t.name.as_str()));
    let brokers = placement::candidates(image);
    let mut out = Vec::new();
    let mut results = Vec::new();
    for change in &req.topics {
        let outcome = if dups.contains(change.name.as_str()) {
            Err(duplicate_error(&change.name))
        } else {
            grow(image, change, &brokers, rng).map(|records| {
                if !req.validate_only {
                    out.extend(records);
                }
            })
        };
        results.push(topic_result(&change.name, outcome));
    }
    ControllerResult {
        records: out,
        response: CreatePartitionsResponse { topics: results },
    }
}

fn grow(
    image: &MetadataImage,
    change: &PartitionCountChange,
    brokers: &[Candidate],
    rng: &mut impl Rng,
) -> Result<Vec<MetadataRecord>, ApiError> {
    let (name, count) = (change.name.as_str(), change.count);
    let topic = image.topic_by_name(name).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnknownTopicOrPartition,
            format!("topic '{name}' does not exist"),
        )
    })?;
    let current = topic
        .partitions
        .keys()
        .next_back()
        .map_or(0, |&p| p.saturating_add(1));
    if count <= current {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            format!("topic '{name}' has {current} partitions; the new count must be larger, got {count}"),
        ));
    }
    if count > MAX_PARTITIONS {
        return Err(too_many_partitions(count));
    }
    let rf = topic
        .partitions
        .values()
        .map(|p| p.replicas.len())
        .max()
        .unwrap_or(1);
    if !change.assignments.is_empty() {
        // Explicit replicas for the new partitions, one list each (Kafka's rules).
        let added = count - current;
        if change.assignments.len() != added as usize {
            return Err(ApiError::new(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "adding {added} partition(s) to '{name}' needs {added} assignment(s), got {}",
                    change.assignments.len()
                ),
            ));
        }
        return change
            .assignments
            .iter()
            .zip(current..)
            .map(|(list, index)| {
                let p = assigned_partition(
                    image,
                    index,
                    &list.ids,
                    rf,
                    ErrorCode::InvalidReplicaAssignment,
                )?;
                Ok(records::partition(topic.id, index, &p))
            })
            .collect();
    }
    let rf = i32::try_from(rf).unwrap_or(i32::MAX);
    let start = if brokers.is_empty() {
        0
    } else {
        rng.random_range(0..brokers.len())
    };
    let assignment = placement::place(brokers, current, count - current, rf, start)?;
    Ok(assignment
        .into_iter()
        .zip(current..)
        .map(|(r, index)| records::partition(topic.id, index, &new_partition(r.clone(), r)))
        .collect())
}

#[cfg(test)]
#[path = "topics_tests.rs"]
mod tests;
