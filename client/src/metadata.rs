//! A snapshot of cluster metadata (brokers, topics, partition leaders) built from Metadata
//! responses. Pure data: the cluster module fetches, this module interprets.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::types::{LeaderEpoch, NodeId};

/// A broker as Metadata lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    /// The broker's id.
    pub id: NodeId,
    /// Advertised host.
    pub host: String,
    /// Advertised Kafka port.
    pub port: i32,
    /// Rack, if configured.
    pub rack: Option<String>,
}

impl BrokerInfo {
    /// `host:port`, ready for `connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            // An IPv6 literal needs brackets before the port.
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// One partition's placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition index.
    pub partition: i32,
    /// Current leader; `None` while offline or electing.
    pub leader: Option<NodeId>,
    /// The leader's epoch (-1 if unknown).
    pub leader_epoch: LeaderEpoch,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas.
    pub isr: Vec<NodeId>,
    /// Replicas that are offline.
    pub offline_replicas: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966); `None` when the answer came from Metadata,
    /// which does not carry them.
    pub elr: Option<Vec<NodeId>>,
    /// Replicas last known to be eligible; `None` as for `elr`.
    pub last_known_elr: Option<Vec<NodeId>>,
    /// A partition-level error code, if any (e.g. LEADER_NOT_AVAILABLE).
    pub error: Option<ResponseError>,
}

/// One topic as Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic name.
    pub name: String,
    /// Topic id (nil when the broker does not send ids).
    pub topic_id: Uuid,
    /// Whether it is internal (e.g. `__consumer_offsets`).
    pub is_internal: bool,
    /// A topic-level error code, e.g. UNKNOWN_TOPIC_OR_PARTITION.
    pub error: Option<ResponseError>,
    /// Partitions sorted by index.
    pub partitions: Vec<PartitionInfo>,
}

/// Everything one Metadata response said, merged over earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// Cluster id, if the broker reports one.
    pub cluster_id: Option<String>,
    /// The controller (in KRaft: a broker that forwards admin requests).
    pub controller: Option<NodeId>,
    /// Live brokers by id.
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// Topics by name.
    pub topics: HashMap<String, TopicMetadata>,
}

impl Metadata {
    /// Interprets a Metadata response.
    pub fn from_response(resp: &MetadataResponse) -> Self {
        let brokers = resp
            .brokers
            .iter()
            .map(|b| {
                let id = NodeId(b.node_id.0);
                let info = BrokerInfo {
                    id,
                    host: b.host.to_string(),
                    port: b.port,
                    rack: b.rack.as_ref().map(|r| r.to_string()),
                };
                (id, info)
            })
            .collect();
        let mut topics = HashMap::new();
        for t in &resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.0.to_string()) else {
                continue;
            };
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: (p.leader_id.0 >= 0).then_some(NodeId(p.leader_id.0)),
                    leader_epoch: LeaderEpoch(p.leader_epoch),
                    replicas: p.replica_nodes.iter().map(|n| NodeId(n.0)).collect(),
                    isr: p.isr_nodes.iter().map(|n| NodeId(n.0)).collect(),
                    offline_replicas: p.offline_replicas.iter().map(|n| NodeId(n.0)).collect(),
                    elr: None,
                    last_known_elr: None,
                    error: ResponseError::try_from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            let meta = TopicMetadata {
                name: name.clone(),
                topic_id: t.topic_id,
                is_internal: t.is_internal,
                error: ResponseError::try_from_code(t.error_code),
                partitions,
            };
            topics.insert(name, meta);
        }
        Metadata {
            cluster_id: resp.cluster_id.as_ref().map(|c| c.to_string()),
            controller: (resp.controller_id.0 >= 0).then_some(NodeId(resp.controller_id.0)),
            brokers,
            topics,
        }
    }

    /// Folds a newer snapshot in. With `requested = None` (all topics) the newer topic list
    /// replaces ours; otherwise only the requested topics are replaced.
    pub fn merge(&self, newer: Metadata, requested: Option<&[String]>) -> Metadata {
        let topics = match requested {
            None => newer.topics,
            Some(names) => {
                let mut topics = self.topics.clone();
                for name in names {
                    topics.remove(name);
                }
                topics.extend(newer.topics);
                topics
            }
        };
        Metadata {
            cluster_id: newer.cluster_id,
            controller: newer.controller,
            brokers: newer.brokers,
            topics,
        }
    }

    /// The topic, or the error that explains why it cannot be used.
    pub fn topic(&self, name: &str) -> Result<&TopicMetadata> {
        let t = self.topics.get(name).ok_or_else(|| unknown_topic(name))?;
        match t.error {
            None => Ok(t),
            Some(code) => Err(Error::kafka(
                code,
                None,
                format!("metadata for topic '{name}'"),
            )),
        }
    }

    /// Number of partitions of a usable topic.
    pub fn partition_count(&self, name: &str) -> Result<usize> {
        let t = self.topic(name)?;
        if t.partitions.is_empty() {
            // Seen right after creation, before the partitions reach this broker.
            return Err(Error::kafka(
                ResponseError::LeaderNotAvailable,
                None,
                format!("topic '{name}' has no partitions yet"),
            ));
        }
        Ok(t.partitions.len())
    }

    /// The leader of a partition, if it is known and connectable.
    pub fn leader(&self, topic: &str, partition: i32) -> Result<NodeId> {
        let t = self.topic(topic)?;
        let p = t
            .partitions
            .get(usize::try_from(partition).unwrap_or(usize::MAX))
            .filter(|p| p.partition == partition)
            .or_else(|| t.partitions.iter().find(|p| p.partition == partition))
            .ok_or_else(|| {
                Error::kafka(
                    ResponseError::UnknownTopicOrPartition,
                    None,
                    format!(
                        "topic '{topic}' has {} partitions; partition {partition} does not exist",
                        t.partitions.len()
                    ),
                )
            })?;
        match p.leader {
            Some(id) if self.brokers.contains_key(&id) => Ok(id),
            _ => Err(Error::kafka(
                p.error.unwrap_or(ResponseError::LeaderNotAvailable),
                None,
                format!("leader of {topic}-{partition}"),
            )),
        }
    }

    /// Address of a broker.
    pub fn broker_addr(&self, id: NodeId) -> Option<String> {
        self.brokers.get(&id).map(BrokerInfo::addr)
    }
}

fn unknown_topic(name: &str) -> Error {
    Error::kafka(
        ResponseError::UnknownTopicOrPartition,
        None,
        format!("topic '{name}'"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::metadata_response::{
        MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
    };
    use kafka_protocol::messages::{BrokerId, TopicName};
    use kafka_protocol::protocol::StrBytes;

    fn response() -> MetadataResponse {
        let mut r = MetadataResponse::default();
        r.controller_id = BrokerId(1);
        r.brokers = vec![1, 2]
            .into_iter()
            .map(|id| {
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(id))
                    .with_host(StrBytes::from_static_str("localhost"))
                    .with_port(9090 + id)
            })
            .collect();
        let parts = (0..3)
            .rev()
            .map(|i| {
                MetadataResponsePartition::default()
                    .with_partition_index(i)
                    .with_leader_id(BrokerId(if i == 2 { -1 } else { 1 + i % 2 }))
                    .with_replica_nodes(vec![BrokerId(1), BrokerId(2)])
                    .with_isr_nodes(vec![BrokerId(1)])
            })
            .collect();
        let topic = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("orders"))))
            .with_partitions(parts);
        let gone = MetadataResponseTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str("gone"))))
            .with_error_code(3);
        r.topics = vec![topic, gone];
        r
    }

    #[test]
    fn leaders_and_errors() {
        let m = Metadata::from_response(&response());
        assert_eq!(m.controller, Some(NodeId(1)));
        assert_eq!(m.broker_addr(NodeId(2)).as_deref(), Some("localhost:9092"));
        assert_eq!(m.partition_count("orders").ok(), Some(3));
        assert_eq!(m.leader("orders", 0).ok(), Some(NodeId(1)));
        assert_eq!(m.leader("orders", 1).ok(), Some(NodeId(2)));
        let no_leader = m.leader("orders", 2).err().and_then(|e| e.kafka_code());
        assert_eq!(no_leader, Some(ResponseError::LeaderNotAvailable));
        let out_of_range = m
            .leader("orders", 7)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            out_of_range.contains("has 3 partitions; partition 7 does not exist"),
            "{out_of_range}"
        );
        let gone = m.partition_count("gone").err().and_then(|e| e.kafka_code());
        assert_eq!(gone, Some(ResponseError::UnknownTopicOrPartition));
        assert!(m
            .leader("nope", 0)
            .is_err_and(|e| e.needs_metadata_refresh()));
    }

    #[test]
    fn merge_replaces_only_requested_topics() {
        let old = Metadata::from_response(&response());
        let mut newer = response();
        newer.topics.truncate(1);
        newer.topics[0].partitions.truncate(1);
        let merged = old.merge(
            Metadata::from_response(&newer),
            Some(&["orders".to_string()]),
        );
        assert_eq!(merged.partition_count("orders").ok(), Some(1));
        assert!(merged.topics.contains_key("gone"));
        let all = old.merge(Metadata::from_response(&newer), None);
        assert!(!all.topics.contains_key("gone"));
    }
}
