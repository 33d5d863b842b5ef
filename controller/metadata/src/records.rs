//! Constructors for metadata records, so decisions and snapshots build them one way.

use spate_proto::metadata::metadata_record::Record;
use std::collections::BTreeSet;

use spate_proto::metadata::{
    BrokerReplicasOfflineRecord, ConfigRecord, ConfigResourceType, FenceBrokerRecord,
    MetadataRecord, PartitionChangeRecord, PartitionRecord, ProducerIdBlockRecord,
    RegisterBrokerRecord, RemoveTopicRecord, ReplicaList, ReplicaRef, TopicRecord,
    UnfenceBrokerRecord,
};

use super::{BrokerRegistration, ConfigResource, PartitionImage};
use crate::ids::{BrokerEpoch, NodeId, TopicId};

/// Wraps a record payload into a `MetadataRecord`.
pub fn wrap(record: Record) -> MetadataRecord {
    MetadataRecord {
        record: Some(record),
    }
}

/// Node ids as wire integers.
pub fn wire_ids(ids: &[NodeId]) -> Vec<i32> {
    ids.iter().map(|n| n.0).collect()
}

/// A registration; `epoch: None` lets `apply` take the record's offset as the epoch.
pub fn register_broker(b: &BrokerRegistration, epoch: Option<BrokerEpoch>) -> MetadataRecord {
    wrap(Record::RegisterBroker(RegisterBrokerRecord {
        broker_id: b.id.0,
        broker_epoch: epoch.map_or(-1, |e| e.0),
        incarnation_id: b.incarnation_id.clone(),
        endpoints: b.endpoints.clone(),
        rack: b.rack.clone().unwrap_or_default(),
        fenced: b.fenced,
        offline_replicas: replica_refs(&b.offline_replicas),
        log_dir_id: b.log_dir_id.clone(),
    }))
}

/// Partitions as wire references.
pub fn replica_refs<'a>(replicas: impl IntoIterator<Item = &'a (TopicId, i32)>) -> Vec<ReplicaRef> {
    replicas
        .into_iter()
        .map(|(topic, partition)| ReplicaRef {
            topic_id: topic.to_bytes(),
            partition: *partition,
        })
        .collect()
}

/// Replaces the set of replicas a broker's registration cannot serve.
pub fn broker_replicas_offline(
    id: NodeId,
    epoch: BrokerEpoch,
    offline: &BTreeSet<(TopicId, i32)>,
) -> MetadataRecord {
    wrap(Record::BrokerReplicasOffline(BrokerReplicasOfflineRecord {
        broker_id: id.0,
        broker_epoch: epoch.0,
        offline_replicas: replica_refs(offline),
    }))
}

/// Fences a broker's current registration.
pub fn fence_broker(id: NodeId, epoch: BrokerEpoch) -> MetadataRecord {
    wrap(Record::FenceBroker(FenceBrokerRecord {
        broker_id: id.0,
        broker_epoch: epoch.0,
    }))
}

/// Unfences a broker's current registration.
pub fn unfence_broker(id: NodeId, epoch: BrokerEpoch) -> MetadataRecord {
    wrap(Record::UnfenceBroker(UnfenceBrokerRecord {
        broker_id: id.0,
        broker_epoch: epoch.0,
    }))
}

/// Creates a topic (partitions follow as `PartitionRecord`s).
pub fn topic(name: &str, id: TopicId) -> MetadataRecord {
    wrap(Record::Topic(TopicRecord {
        name: name.to_string(),
        topic_id: id.to_bytes(),
    }))
}

/// Creates (or replaces) a partition with the given state.
pub fn partition(topic: TopicId, index: i32, p: &PartitionImage) -> MetadataRecord {
    wrap(Record::Partition(PartitionRecord {
        topic_id: topic.to_bytes(),
        partition: index,
        replicas: wire_ids(&p.replicas),
        isr: wire_ids(&p.isr),
        leader: NodeId::to_wire(p.leader),
        leader_epoch: p.leader_epoch.0,
        partition_epoch: p.partition_epoch.0,
        elr: wire_ids(&p.elr),
        last_known_elr: wire_ids(&p.last_known_elr),
    }))
}

/// Changes a partition's leader or ISR; `None` fields stay as they are, `leader:
/// Some(None)` takes it offline.
pub fn partition_change(
    topic: TopicId,
    index: i32,
    leader: Option<Option<NodeId>>,
    isr: Option<&[NodeId]>,
) -> MetadataRecord {
    partition_change_of(
        topic,
        index,
        PartitionDelta {
            leader,
            isr,
            ..PartitionDelta::default()
        },
    )
}

/// The fields of one partition change; `None` stays as it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionDelta<'a> {
    /// The new leader (`Some(None)`: offline).
    pub leader: Option<Option<NodeId>>,
    /// The new ISR.
    pub isr: Option<&'a [NodeId]>,
    /// The new eligible leader replicas.
    pub elr: Option<&'a [NodeId]>,
    /// The new last-known ELR.
    pub last_known_elr: Option<&'a [NodeId]>,
}

impl PartitionDelta<'_> {
    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == PartitionDelta::default()
    }
}

/// Changes any of a partition's leader, ISR, ELR and last-known ELR.
pub fn partition_change_of(
    topic: TopicId,
    index: i32,
    delta: PartitionDelta<'_>,
) -> MetadataRecord {
    let list = |ids: &[NodeId]| ReplicaList { ids: wire_ids(ids) };
    wrap(Record::PartitionChange(PartitionChangeRecord {
        topic_id: topic.to_bytes(),
        partition: index,
        leader: delta.leader.map(NodeId::to_wire),
        isr: delta.isr.map(list),
        replicas: None,
        elr: delta.elr.map(list),
        last_known_elr: delta.last_known_elr.map(list),
    }))
}

/// Deletes a topic, its partitions and its configs.
pub fn remove_topic(id: TopicId) -> MetadataRecord {
    wrap(Record::RemoveTopic(RemoveTopicRecord {
        topic_id: id.to_bytes(),
    }))
}

/// Sets (`Some`) or deletes (`None`) one dynamic config key.
pub fn config(resource: &ConfigResource, name: &str, value: Option<&str>) -> MetadataRecord {
    let (resource_type, resource_name) = match resource {
        ConfigResource::Topic(n) => (ConfigResourceType::ConfigResourceTopic, n),
        ConfigResource::Broker(n) => (ConfigResourceType::ConfigResourceBroker, n),
    };
    wrap(Record::Config(ConfigRecord {
        resource_type: resource_type as i32,
        resource_name: resource_name.clone(),
        name: name.to_string(),
        value: value.map(str::to_string),
    }))
}

/// Records that producer ids below `next_producer_id` are handed out.
pub fn producer_id_block(
    broker: NodeId,
    epoch: BrokerEpoch,
    next_producer_id: i64,
) -> MetadataRecord {
    wrap(Record::ProducerIdBlock(ProducerIdBlockRecord {
        broker_id: broker.0,
        broker_epoch: epoch.0,
        next_producer_id,
    }))
}
