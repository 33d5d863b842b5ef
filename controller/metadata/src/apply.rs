//! `MetadataImage::apply`: the pure state machine over metadata records.
//!
//! Every handler validates before it mutates, so an `Err` leaves the image untouched; the
//! controller and the brokers then skip the same record and stay identical.

use std::collections::BTreeSet;

use spate_proto::metadata::metadata_record::Record;
use spate_proto::metadata::{
    BrokerReplicasOfflineRecord, ConfigRecord, ConfigResourceType, MetadataBatch, MetadataRecord,
    PartitionChangeRecord, PartitionRecord, ProducerIdBlockRecord, RegisterBrokerRecord,
    ReplicaRef, TopicRecord,
};

use super::{
    BrokerRegistration, ConfigResource, MetadataError, MetadataImage, PartitionImage, TopicImage,
};
use crate::ids::{BrokerEpoch, LeaderEpoch, NodeId, PartitionEpoch, TopicId};

impl MetadataImage {
    /// Applies one record committed at `offset`. On error the image is unchanged.
    ///
    /// A `RegisterBroker` record with a negative `broker_epoch` takes `offset` as its epoch:
    /// the controller cannot know the log index before the commit, so it writes -1 and the
    /// state machine fills it in (snapshots then carry the resolved, positive value).
    pub fn apply(&mut self, offset: u64, record: &MetadataRecord) -> Result<(), MetadataError> {
        let Some(record) = &record.record else {
            return Err(MetadataError::EmptyRecord(offset));
        };
        match record {
            Record::RegisterBroker(r) => self.apply_register(offset, r)?,
            Record::FenceBroker(r) => self.set_fenced(r.broker_id, r.broker_epoch, true)?,
            Record::UnfenceBroker(r) => self.set_fenced(r.broker_id, r.broker_epoch, false)?,
            Record::Topic(r) => self.apply_topic(r)?,
            Record::Partition(r) => self.apply_partition(r)?,
            Record::PartitionChange(r) => self.apply_partition_change(r)?,
            Record::RemoveTopic(r) => self.apply_remove_topic(&r.topic_id)?,
            Record::Config(r) => self.apply_config(r)?,
            Record::ProducerIdBlock(r) => self.apply_producer_ids(r)?,
            Record::BrokerReplicasOffline(r) => self.apply_replicas_offline(r)?,
        }
        self.advance_to(offset);
        Ok(())
    }

    /// Applies a batch as streamed by `WatchMetadata`: a snapshot replaces the image, a delta
    /// at or below the current offset is a duplicate and is ignored. Returns the records that
    /// were skipped (the same ones the controller skipped), for logging.
    pub fn apply_batch(&mut self, batch: &MetadataBatch) -> Vec<MetadataError> {
        if batch.snapshot {
            let (image, errors) = MetadataImage::from_records(batch.offset, &batch.records);
            *self = image;
            return errors;
        }
        if batch.offset <= self.offset && self.offset != 0 {
            return Vec::new();
        }
        let errors = batch
            .records
            .iter()
            .filter_map(|r| self.apply(batch.offset, r).err())
            .collect();
        self.advance_to(batch.offset);
        errors
    }

    fn apply_register(
        &mut self,
        offset: u64,
        r: &RegisterBrokerRecord,
    ) -> Result<(), MetadataError> {
        let id = NodeId::from_wire(r.broker_id)
            .ok_or_else(|| invalid(format!("broker id {} is negative", r.broker_id)))?;
        let epoch = if r.broker_epoch < 0 {
            i64::try_from(offset).map_err(|_| invalid(format!("offset {offset} overflows")))?
        } else {
            r.broker_epoch
        };
        let registration = BrokerRegistration {
            id,
            epoch: BrokerEpoch(epoch),
            incarnation_id: r.incarnation_id.clone(),
            endpoints: r.endpoints.clone(),
            rack: (!r.rack.is_empty()).then(|| r.rack.clone()),
            fenced: r.fenced,
            offline_replicas: replica_set(&r.offline_replicas)?,
            log_dir_id: r.log_dir_id.clone(),
        };
        self.brokers.insert(id, registration);
        Ok(())
    }

    fn apply_replicas_offline(
        &mut self,
        r: &BrokerReplicasOfflineRecord,
    ) -> Result<(), MetadataError> {
        let offline = replica_set(&r.offline_replicas)?;
        let id = NodeId(r.broker_id);
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if broker.epoch.0 != r.broker_epoch {
            return Err(MetadataError::StaleBrokerEpoch {
                broker: id,
                current: broker.epoch,
                got: BrokerEpoch(r.broker_epoch),
            });
        }
        broker.offline_replicas = offline;
        Ok(())
    }

    fn set_fenced(
        &mut self,
        broker_id: i32,
        epoch: i64,
        fenced: bool,
    ) -> Result<(), MetadataError> {
        let id = NodeId(broker_id);
        let broker = self
            .brokers
            .get_mut(&id)
            .ok_or(MetadataError::UnknownBroker(id))?;
        if broker.epoch.0 != epoch {
            return Err(MetadataError::StaleBrokerEpoch {
                broker: id,
                current: broker.epoch,
                got: BrokerEpoch(epoch),
            });
        }
        broker.fenced = fenced;
        Ok(())
    }

    fn apply_topic(&mut self, r: &TopicRecord) -> Result<(), MetadataError> {
        let id = topic_id(&r.topic_id)?;
        if r.name.is_empty() {
            return Err(invalid("a topic record has an empty name".to_string()));
        }
        if self.topic_ids.contains_key(&r.name) {
            return Err(MetadataError::TopicExists(r.name.clone()));
        }
        if let Some(existing) = self.topics.get(&id) {
            return Err(MetadataError::TopicExists(existing.name.clone()));
        }
        self.topic_ids.insert(r.name.clone(), id);
        let topic = TopicImage {
            name: r.name.clone(),
            id,
            partitions: Default::default(),
        };
        self.topics.insert(id, topic);
        Ok(())
    }

    fn apply_partition(&mut self, r: &PartitionRecord) -> Result<(), MetadataError> {
        let id = topic_id(&r.topic_id)?;
        let topic = self
            .topics
            .get_mut(&id)
            .ok_or(MetadataError::UnknownTopic(id))?;
        if r.partition < 0 {
            return Err(invalid(format!(
                "partition index {} is negative",
                r.partition
            )));
        }
        let replicas = node_ids(&r.replicas)?;
        let isr = node_ids(&r.isr)?;
        let leader = NodeId::from_wire(r.leader);
        let elr = node_ids(&r.elr)?;
        let last_known_elr = node_ids(&r.last_known_elr)?;
        check_replica_sets(&replicas, &isr, leader)?;
        check_elr(&replicas, &isr, &elr, &last_known_elr)?;
        // A PartitionRecord replaces the partition, as Kafka's replay does.
        let partition = PartitionImage {
            replicas,
            isr,
            elr,
            last_known_elr,
            leader,
            leader_epoch: LeaderEpoch(r.leader_epoch),
            partition_epoch: PartitionEpoch(r.partition_epoch),
        };
        topic.partitions.insert(r.partition, partition);
        Ok(())
    }

    fn apply_partition_change(&mut self, r: &PartitionChangeRecord) -> Result<(), MetadataError> {
        let id = topic_id(&r.topic_id)?;
        let topic = self
            .topics
            .get_mut(&id)
            .ok_or(MetadataError::UnknownTopic(id))?;
        let Some(current) = topic.partitions.get_mut(&r.partition) else {
            return Err(MetadataError::UnknownPartition {
                topic: topic.name.clone(),
                partition: r.partition,
            });
        };
        let replicas = match &r.replicas {
            Some(list) => node_ids(&list.ids)?,
            None => current.replicas.clone(),
        };
        let isr = match &r.isr {
            Some(list) => node_ids(&list.ids)?,
            None => current.isr.clone(),
        };
        let elr = match &r.elr {
            Some(list) => node_ids(&list.ids)?,
            None => current.elr.clone(),
        };
        let last_known_elr = match &r.last_known_elr {
            Some(list) => node_ids(&list.ids)?,
            None => current.last_known_elr.clone(),
        };
        let leader = r.leader.map_or(current.leader, NodeId::from_wire);
        check_replica_sets(&replicas, &isr, leader)?;
        check_elr(&replicas, &isr, &elr, &last_known_elr)?;
        // docs/architecture.md §4: every change bumps the partition epoch; a new leader bumps the leader epoch.
        if leader != current.leader {
            current.leader_epoch = current.leader_epoch.next();
        }
        current.partition_epoch = current.partition_epoch.next();
        current.replicas = replicas;
        current.isr = isr;
        current.elr = elr;
        current.last_known_elr = last_known_elr;
        current.leader = leader;
        Ok(())
    }

    fn apply_remove_topic(&mut self, raw_id: &[u8]) -> Result<(), MetadataError> {
        let id = topic_id(raw_id)?;
        let topic = self
            .topics
            .remove(&id)
            .ok_or(MetadataError::UnknownTopic(id))?;
        self.topic_ids.remove(&topic.name);
        self.configs.remove(&ConfigResource::Topic(topic.name));
        for broker in self.brokers.values_mut() {
            broker.offline_replicas.retain(|(t, _)| *t != id);
        }
        Ok(())
    }

    fn apply_config(&mut self, r: &ConfigRecord) -> Result<(), MetadataError> {
        if r.name.is_empty() {
            return Err(invalid("a config record has an empty key".to_string()));
        }
        let resource = match ConfigResourceType::try_from(r.resource_type) {
            Ok(ConfigResourceType::ConfigResourceTopic) => {
                if !self.topic_ids.contains_key(&r.resource_name) {
                    return Err(invalid(format!(
                        "config for topic '{}', which does not exist",
                        r.resource_name
                    )));
                }
                ConfigResource::Topic(r.resource_name.clone())
            }
            Ok(ConfigResourceType::ConfigResourceBroker) => {
                ConfigResource::Broker(r.resource_name.clone())
            }
            _ => {
                return Err(invalid(format!(
                    "unknown config resource type {}",
                    r.resource_type
                )))
            }
        };
        match &r.value {
            Some(value) => {
                self.configs
                    .entry(resource)
                    .or_default()
                    .insert(r.name.clone(), value.clone());
            }
            None => {
                if let Some(map) = self.configs.get_mut(&resource) {
                    map.remove(&r.name);
                    if map.is_empty() {
                        self.configs.remove(&resource);
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_producer_ids(&mut self, r: &ProducerIdBlockRecord) -> Result<(), MetadataError> {
        if r.next_producer_id < self.next_producer_id {
            return Err(invalid(format!(
                "producer id block would move next id back from {} to {}",
                self.next_producer_id, r.next_producer_id
            )));
        }
        self.next_producer_id = r.next_producer_id;
        Ok(())
    }
}

fn invalid(message: String) -> MetadataError {
    MetadataError::Invalid(message)
}

fn topic_id(raw: &[u8]) -> Result<TopicId, MetadataError> {
    TopicId::from_bytes(raw).map_err(|e| invalid(e.to_string()))
}

fn replica_set(raw: &[ReplicaRef]) -> Result<BTreeSet<(TopicId, i32)>, MetadataError> {
    raw.iter()
        .map(|r| Ok((topic_id(&r.topic_id)?, r.partition)))
        .collect()
}

fn node_ids(raw: &[i32]) -> Result<Vec<NodeId>, MetadataError> {
    raw.iter()
        .map(|&id| {
            NodeId::from_wire(id).ok_or_else(|| invalid(format!("replica id {id} is negative")))
        })
        .collect()
}

/// Replicas are non-empty and unique; the ISR is a unique subset of them; the leader, if
/// any, is in the ISR (docs/architecture.md §5: the ISR always contains the leader).
/// The ELR and last-known ELR are sets of replicas, apart from the ISR and each other.
fn check_elr(
    replicas: &[NodeId],
    isr: &[NodeId],
    elr: &[NodeId],
    last_known_elr: &[NodeId],
) -> Result<(), MetadataError> {
    let replica_set: BTreeSet<_> = replicas.iter().collect();
    let isr_set: BTreeSet<_> = isr.iter().collect();
    let elr_set: BTreeSet<_> = elr.iter().collect();
    let last_set: BTreeSet<_> = last_known_elr.iter().collect();
    let sets_of_replicas = elr_set.len() == elr.len()
        && last_set.len() == last_known_elr.len()
        && elr_set.is_subset(&replica_set)
        && last_set.is_subset(&replica_set);
    if !sets_of_replicas || !elr_set.is_disjoint(&isr_set) || !elr_set.is_disjoint(&last_set) {
        return Err(invalid(format!(
            "ELR {elr:?} / last-known ELR {last_known_elr:?} are not disjoint sets of replicas {replicas:?} outside ISR {isr:?}"
        )));
    }
    Ok(())
}

fn check_replica_sets(
    replicas: &[NodeId],
    isr: &[NodeId],
    leader: Option<NodeId>,
) -> Result<(), MetadataError> {
    if replicas.is_empty() {
        return Err(invalid(
            "a partition needs at least one replica".to_string(),
        ));
    }
    let replica_set: BTreeSet<_> = replicas.iter().collect();
    if replica_set.len() != replicas.len() {
        return Err(invalid(format!("duplicate replicas in {replicas:?}")));
    }
    let isr_set: BTreeSet<_> = isr.iter().collect();
    if isr_set.len() != isr.len() || !isr_set.is_subset(&replica_set) {
        return Err(invalid(format!(
            "ISR {isr:?} is not a set of replicas {replicas:?}"
        )));
    }
    if let Some(leader) = leader {
        if !isr_set.contains(&leader) {
            return Err(invalid(format!("leader {leader} is not in ISR {isr:?}")));
        }
    }
    Ok(())
}
