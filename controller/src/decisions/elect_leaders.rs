//! ElectLeaders (Kafka API 43, KIP-460) and the periodic preferred-leader rebalance
//! (Kafka's `auto.leader.rebalance.enable`): move leadership back to each partition's
//! preferred replica — the first in `replicas` (docs/architecture.md §4) — once it is back in the ISR.

use std::collections::{BTreeMap, BTreeSet};

use spate_proto::controller::{
    ElectLeadersPartitionResult, ElectLeadersRequest, ElectLeadersResponse, ElectionType,
};

use super::election::{PartitionChangeBuilder, TopicRules};
use super::ControllerResult;
use crate::error::ErrorCode;
use spate_metadata::ids::NodeId;
use spate_metadata::{MetadataImage, PartitionImage, TopicImage};

/// Which rule picks the new leader (Kafka's `ElectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Election {
    /// The first replica, if it is in the ISR and unfenced.
    Preferred,
    /// Any live replica of a partition that has no leader, in the ISR or not.
    Unclean,
}

/// What happened to one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElectionOutcome {
    /// A `PartitionChange` makes this broker the leader.
    Elected(NodeId),
    /// Nothing to do: the preferred replica already leads (or, unclean, some replica does).
    NotNeeded,
    /// The preferred replica is out of the ISR, fenced, or there is none.
    PreferredNotAvailable(String),
    /// Unclean election found no live replica.
    EligibleNotAvailable,
    /// No such topic or partition.
    UnknownPartition(String),
}

impl ElectionOutcome {
    /// The Kafka error code of this outcome.
    pub fn code(&self) -> i32 {
        match self {
            ElectionOutcome::Elected(_) => ErrorCode::None.proto_code(),
            ElectionOutcome::NotNeeded => ErrorCode::ElectionNotNeeded.proto_code(),
            ElectionOutcome::PreferredNotAvailable(_) => {
                ErrorCode::PreferredLeaderNotAvailable.proto_code()
            }
            ElectionOutcome::EligibleNotAvailable => {
                ErrorCode::EligibleLeadersNotAvailable.proto_code()
            }
            ElectionOutcome::UnknownPartition(_) => ErrorCode::UnknownTopicOrPartition.proto_code(),
        }
    }
}

/// The outcome for one topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionElection {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// What happened.
    pub outcome: ElectionOutcome,
}

impl PartitionElection {
    fn message(&self) -> String {
        let tp = format!("{}-{}", self.topic, self.partition);
        match &self.outcome {
            ElectionOutcome::Elected(_) => String::new(),
            ElectionOutcome::NotNeeded => format!("{tp}: the leader is already the one asked for"),
            ElectionOutcome::EligibleNotAvailable => {
                format!("{tp}: no live replica to elect; start one of its brokers")
            }
            ElectionOutcome::PreferredNotAvailable(m) | ElectionOutcome::UnknownPartition(m) => {
                m.clone()
            }
        }
    }
}

/// Preferred-leader election for `partitions` (topic name, index), or for every partition
/// when `None`; with `None`, partitions already led by their preferred replica are left
/// out of the results, as Kafka does.
pub fn elect_preferred_leaders(
    image: &MetadataImage,
    partitions: Option<&[(String, i32)]>,
) -> ControllerResult<Vec<PartitionElection>> {
    elect(image, Election::Preferred, partitions)
}

/// Elections of kind `election` for `partitions`, or every partition when `None`. All
/// changes commit as one batch; each bumps its partition's leader epoch on apply.
pub fn elect(
    image: &MetadataImage,
    election: Election,
    partitions: Option<&[(String, i32)]>,
) -> ControllerResult<Vec<PartitionElection>> {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut decide = |topic: &TopicImage, index: i32, p: &PartitionImage| {
        let (outcome, record) = elect_one(image, election, topic, index, p);
        records.extend(record);
        PartitionElection {
            topic: topic.name.clone(),
            partition: index,
            outcome,
        }
    };
    match partitions {
        None => {
            for topic in image.topics().values() {
                for (&index, p) in &topic.partitions {
                    let r = decide(topic, index, p);
                    if r.outcome != ElectionOutcome::NotNeeded {
                        results.push(r);
                    }
                }
            }
        }
        Some(asked) => {
            // Duplicates in a request are answered once.
            let asked: BTreeSet<&(String, i32)> = asked.iter().collect();
            for (name, index) in asked {
                let found = image
                    .topic_by_name(name)
                    .map(|t| (t, t.partitions.get(index)));
                match found {
                    Some((t, Some(p))) => results.push(decide(t, *index, p)),
                    _ => results.push(unknown(found.map(|f| f.0), name, *index)),
                }
            }
        }
    }
    ControllerResult {
        records,
        response: results,
    }
}

fn unknown(topic: Option<&TopicImage>, name: &str, index: i32) -> PartitionElection {
    let message = match topic {
        None => format!("topic '{name}' does not exist"),
        Some(t) => format!(
            "topic '{name}' has {} partitions; partition {index} does not exist",
            t.partitions.len()
        ),
    };
    PartitionElection {
        topic: name.to_string(),
        partition: index,
        outcome: ElectionOutcome::UnknownPartition(message),
    }
}

fn elect_one(
    image: &MetadataImage,
    election: Election,
    topic: &TopicImage,
    index: i32,
    p: &PartitionImage,
) -> (
    ElectionOutcome,
    Option<spate_proto::metadata::MetadataRecord>,
) {
    let alive = |n: NodeId| image.can_serve(n, topic.id, index);
    let builder =
        PartitionChangeBuilder::new(topic.id, index, p, TopicRules::of(image, &topic.name));
    let tp = format!("{}-{index}", topic.name);
    match election {
        Election::Preferred => {
            let Some(&preferred) = p.replicas.first() else {
                let m = format!("{tp} has no replicas");
                return (ElectionOutcome::PreferredNotAvailable(m), None);
            };
            if p.leader == Some(preferred) {
                return (ElectionOutcome::NotNeeded, None);
            }
            let why = if !p.isr.contains(&preferred) {
                Some(format!(
                    "{tp}: preferred replica {preferred} is not in the ISR {:?}; it must catch up first",
                    p.isr.iter().map(|n| n.0).collect::<Vec<_>>()
                ))
            } else if !alive(preferred) {
                Some(format!(
                    "{tp}: preferred replica {preferred} is fenced or its log failed"
                ))
            } else {
                None
            };
            if let Some(m) = why {
                return (ElectionOutcome::PreferredNotAvailable(m), None);
            }
            match builder.preferred(true).build(alive) {
                Some(r) => (ElectionOutcome::Elected(preferred), Some(r)),
                None => (ElectionOutcome::NotNeeded, None),
            }
        }
        Election::Unclean => {
            // Kafka: a partition with a leader needs no unclean election.
            if p.leader.is_some() {
                return (ElectionOutcome::NotNeeded, None);
            }
            // Asked for explicitly, so the topic's `unclean.leader.election.enable` does not apply.
            let record = builder.unclean(true).build(alive);
            let leader = record.as_ref().and_then(new_leader);
            match (record, leader) {
                (Some(r), Some(l)) => (ElectionOutcome::Elected(l), Some(r)),
                _ => (ElectionOutcome::EligibleNotAvailable, None),
            }
        }
    }
}

fn new_leader(r: &spate_proto::metadata::MetadataRecord) -> Option<NodeId> {
    use spate_proto::metadata::metadata_record::Record;
    match &r.record {
        Some(Record::PartitionChange(c)) => c.leader.and_then(NodeId::from_wire),
        _ => None,
    }
}

/// The ElectLeaders RPC: validates the request and runs [`elect`].
pub fn elect_leaders(
    image: &MetadataImage,
    req: &ElectLeadersRequest,
) -> ControllerResult<ElectLeadersResponse> {
    let election = match ElectionType::try_from(req.election_type) {
        Ok(ElectionType::Preferred) => Election::Preferred,
        Ok(ElectionType::Unclean) => Election::Unclean,
        Err(_) => {
            return ControllerResult::response_only(ElectLeadersResponse {
                error_code: ErrorCode::InvalidRequest.proto_code(),
                error_message: format!(
                    "unknown election type {}; use 0 (preferred) or 1 (unclean)",
                    req.election_type
                ),
                ..Default::default()
            })
        }
    };
    let asked: Vec<(String, i32)> = req
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.name.clone(), p)))
        .collect();
    let partitions = (!req.all_partitions).then_some(asked.as_slice());
    let result = elect(image, election, partitions);
    // Group by topic so the broker's answer lists each topic once.
    let mut grouped: BTreeMap<(String, i32), PartitionElection> = BTreeMap::new();
    for r in result.response {
        grouped.insert((r.topic.clone(), r.partition), r);
    }
    let results = grouped
        .into_values()
        .map(|r| ElectLeadersPartitionResult {
            error_code: r.outcome.code(),
            error_message: r.message(),
            topic: r.topic,
            partition: r.partition,
        })
        .collect();
    ControllerResult {
        records: result.records,
        response: ElectLeadersResponse {
            error_code: 0,
            error_message: String::new(),
            results,
            metadata_offset: 0,
        },
    }
}

#[cfg(test)]
#[path = "elect_leaders_tests.rs"]
mod tests;
