//! Leader election and ISR changes (docs/architecture.md §4), after Kafka's `PartitionChangeBuilder`:
//! the new leader is the first replica in `replicas` order that is in the ISR and alive;
//! with none, the partition goes offline unless the topic allows unclean election.

use std::collections::BTreeSet;

use spate_proto::metadata::MetadataRecord;

use spate_metadata::config_defs;
use spate_metadata::ids::{NodeId, TopicId};
use spate_metadata::{records, MetadataImage, PartitionImage};

/// Builds the `PartitionChange` (if any) that moves one partition to a target ISR and a
/// leader elected among live brokers.
#[derive(Debug, Clone)]
pub struct PartitionChangeBuilder<'a> {
    topic: TopicId,
    index: i32,
    current: &'a PartitionImage,
    target_isr: Vec<NodeId>,
    unclean: bool,
    preferred: bool,
}

impl<'a> PartitionChangeBuilder<'a> {
    /// Starts from the partition's current state.
    pub fn new(topic: TopicId, index: i32, current: &'a PartitionImage) -> Self {
        PartitionChangeBuilder {
            topic,
            index,
            current,
            target_isr: current.isr.clone(),
            unclean: false,
            preferred: false,
        }
    }

    /// The ISR the partition should end up with (before any unclean election).
    pub fn with_isr(mut self, isr: Vec<NodeId>) -> Self {
        self.target_isr = isr;
        self
    }

    /// Allows electing an out-of-sync replica when no ISR member is alive.
    pub fn unclean(mut self, allowed: bool) -> Self {
        self.unclean = allowed;
        self
    }

    /// Moves leadership to the preferred (first) replica when it is in the ISR and alive,
    /// even if the current leader is fine (Kafka's `Election.PREFERRED`).
    pub fn preferred(mut self, on: bool) -> Self {
        self.preferred = on;
        self
    }

    /// The change record, or `None` when leader and ISR stay as they are.
    pub fn build(self, alive: impl Fn(NodeId) -> bool) -> Option<MetadataRecord> {
        let mut isr = self.target_isr;
        let replicas = &self.current.replicas;
        // A live leader that stays in the ISR keeps leading: moving leadership for no
        // reason would bump the leader epoch and stall producers.
        let kept = self.current.leader.filter(|l| alive(*l) && isr.contains(l));
        let preferred = replicas
            .first()
            .copied()
            .filter(|r| self.preferred && isr.contains(r) && alive(*r));
        let leader = preferred
            .or(kept)
            .or_else(|| {
                replicas
                    .iter()
                    .copied()
                    .find(|r| isr.contains(r) && alive(*r))
            })
            .or_else(|| {
                let chosen = replicas
                    .iter()
                    .copied()
                    .find(|r| alive(*r))
                    .filter(|_| self.unclean)?;
                // Unclean election: the new leader's log is the truth now, so the ISR is just it.
                isr = vec![chosen];
                Some(chosen)
            });
        let leader_changed = leader != self.current.leader;
        let isr_changed = isr != self.current.isr;
        if !leader_changed && !isr_changed {
            return None;
        }
        Some(records::partition_change(
            self.topic,
            self.index,
            leader_changed.then_some(leader),
            isr_changed.then_some(isr.as_slice()),
        ))
    }
}

/// Whether the topic sets `unclean.leader.election.enable=true`.
pub fn unclean_allowed(image: &MetadataImage, topic: &str) -> bool {
    config_defs::effective(image.topic_config(topic), "unclean.leader.election.enable")
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

/// Partition changes for fencing `broker`: for every partition it led or sat in the ISR
/// of, it leaves the ISR (unless it is the last member, as KRaft keeps the last one to
/// remember who has the data) and a new leader is elected if it led.
pub fn on_broker_fenced(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics().values() {
        let unclean = unclean_allowed(image, &topic.name);
        for (&index, p) in &topic.partitions {
            if p.leader != Some(broker) && !p.isr.contains(&broker) {
                continue;
            }
            let alive = |n: NodeId| n != broker && image.can_serve(n, topic.id, index);
            let isr = if p.isr == [broker] {
                p.isr.clone()
            } else {
                p.isr.iter().copied().filter(|&n| n != broker).collect()
            };
            let change = PartitionChangeBuilder::new(topic.id, index, p)
                .with_isr(isr)
                .unclean(unclean);
            out.extend(change.build(alive));
        }
    }
    out
}

/// Partition changes once `broker` reports the logs of `offline` partitions failed (Kafka's
/// handling of an offline log directory): where it led, a new leader is elected from the
/// rest of the ISR; it leaves those ISRs (unless it is the last member, which is kept to
/// remember who had the data, as on fencing).
pub fn on_replicas_offline(
    image: &MetadataImage,
    broker: NodeId,
    offline: &BTreeSet<(TopicId, i32)>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for &(topic_id, index) in offline {
        let Some(topic) = image.topics().get(&topic_id) else {
            continue;
        };
        let Some(p) = topic.partitions.get(&index) else {
            continue;
        };
        if p.leader != Some(broker) && !p.isr.contains(&broker) {
            continue;
        }
        let isr = if p.isr == [broker] {
            p.isr.clone()
        } else {
            p.isr.iter().copied().filter(|&n| n != broker).collect()
        };
        let alive = |n: NodeId| n != broker && image.can_serve(n, topic_id, index);
        let change = PartitionChangeBuilder::new(topic_id, index, p)
            .with_isr(isr)
            .unclean(unclean_allowed(image, &topic.name));
        out.extend(change.build(alive));
    }
    out
}

/// Partition changes once `broker` is unfenced: offline partitions it can lead get it as
/// leader (Kafka's `handleBrokerUnfenced`).
pub fn on_broker_unfenced(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics().values() {
        let unclean = unclean_allowed(image, &topic.name);
        for (&index, p) in &topic.partitions {
            // The broker is about to be unfenced; its failed logs still cannot lead.
            let alive = |n: NodeId| {
                image.can_serve(n, topic.id, index)
                    || (n == broker
                        && image
                            .broker(n)
                            .is_some_and(|b| !b.offline_replicas.contains(&(topic.id, index))))
            };
            if p.leader.is_none() && p.replicas.contains(&broker) {
                let change = PartitionChangeBuilder::new(topic.id, index, p).unclean(unclean);
                out.extend(change.build(alive));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_metadata::ids::{LeaderEpoch, PartitionEpoch};
    use spate_metadata::{BrokerRegistration, ConfigResource};
    use spate_proto::metadata::metadata_record::Record;

    fn ids(v: &[i32]) -> Vec<NodeId> {
        v.iter().map(|&i| NodeId(i)).collect()
    }

    fn p(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionImage {
        PartitionImage {
            replicas: ids(replicas),
            isr: ids(isr),
            leader: leader.map(NodeId),
            leader_epoch: LeaderEpoch(3),
            partition_epoch: PartitionEpoch(5),
        }
    }

    /// (leader, isr) of a change record: `None` for absent fields.
    fn fields(r: &MetadataRecord) -> (Option<i32>, Option<Vec<i32>>) {
        match &r.record {
            Some(Record::PartitionChange(c)) => (c.leader, c.isr.as_ref().map(|l| l.ids.clone())),
            other => panic!("not a partition change: {other:?}"),
        }
    }

    const T: TopicId = TopicId::ZERO;

    #[test]
    fn live_leader_in_isr_is_kept() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(2));
        let r = PartitionChangeBuilder::new(T, 0, &part)
            .with_isr(ids(&[2, 3]))
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (None, Some(vec![2, 3])));
    }

    #[test]
    fn first_replica_in_isr_and_alive_wins() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(1));
        let r = PartitionChangeBuilder::new(T, 0, &part)
            .with_isr(ids(&[3, 2]))
            .build(|n| n != NodeId(1))
            .unwrap();
        // Replica order decides, not ISR order.
        assert_eq!(fields(&r), (Some(2), Some(vec![3, 2])));
    }

    #[test]
    fn no_live_isr_member_goes_offline_unless_unclean() {
        let part = p(&[1, 2, 3], &[1], Some(1));
        let alive = |n: NodeId| n == NodeId(3);
        let r = PartitionChangeBuilder::new(T, 0, &part)
            .build(alive)
            .unwrap();
        assert_eq!(fields(&r), (Some(-1), None));
        let r = PartitionChangeBuilder::new(T, 0, &part)
            .unclean(true)
            .build(alive)
            .unwrap();
        assert_eq!(fields(&r), (Some(3), Some(vec![3])));
    }

    #[test]
    fn preferred_election_overrides_a_healthy_leader_only_when_the_first_replica_can_lead() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(2));
        let r = PartitionChangeBuilder::new(T, 0, &part)
            .preferred(true)
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (Some(1), None));
        // Replica 1 fenced: the live leader stays, nothing to commit.
        assert!(PartitionChangeBuilder::new(T, 0, &part)
            .preferred(true)
            .build(|n| n != NodeId(1))
            .is_none());
        // Without the flag a healthy leader is kept.
        assert!(PartitionChangeBuilder::new(T, 0, &part)
            .build(|_| true)
            .is_none());
    }

    #[test]
    fn nothing_to_change_gives_no_record() {
        let part = p(&[1, 2], &[1, 2], Some(1));
        assert!(PartitionChangeBuilder::new(T, 0, &part)
            .build(|_| true)
            .is_none());
        let offline = p(&[1, 2], &[1], None);
        assert!(PartitionChangeBuilder::new(T, 0, &offline)
            .build(|_| false)
            .is_none());
    }

    fn image(unfenced: &[i32], fenced: &[i32], parts: &[PartitionImage]) -> MetadataImage {
        let mut img = MetadataImage::new();
        let mut off = 1;
        for (&id, f) in unfenced
            .iter()
            .map(|i| (i, false))
            .chain(fenced.iter().map(|i| (i, true)))
        {
            let b = BrokerRegistration {
                id: NodeId(id),
                epoch: spate_metadata::ids::BrokerEpoch(-1),
                incarnation_id: String::new(),
                endpoints: vec![],
                rack: None,
                fenced: f,
                offline_replicas: Default::default(),
            };
            img.apply(off, &records::register_broker(&b, None)).unwrap();
            off += 1;
        }
        let t = TopicId::from_random([1; 16]);
        img.apply(off, &records::topic("t", t)).unwrap();
        for (i, part) in parts.iter().enumerate() {
            img.apply(off, &records::partition(t, i as i32, part))
                .unwrap();
        }
        img
    }

    #[test]
    fn fencing_moves_leadership_and_shrinks_isr_but_keeps_the_last_member() {
        let img = image(
            &[1, 2, 3],
            &[],
            &[
                p(&[1, 2, 3], &[1, 2, 3], Some(1)), // led by 1
                p(&[2, 1], &[2, 1], Some(2)),       // 1 only in ISR
                p(&[2, 3], &[2, 3], Some(2)),       // 1 not involved
                p(&[1, 2], &[1], Some(1)),          // 1 is the last ISR member
            ],
        );
        let out = on_broker_fenced(&img, NodeId(1));
        let got: Vec<_> = out.iter().map(fields).collect();
        assert_eq!(
            got,
            vec![
                (Some(2), Some(vec![2, 3])),
                (None, Some(vec![2])),
                (Some(-1), None),
            ]
        );
    }

    #[test]
    fn fencing_with_unclean_election_enabled_picks_a_live_replica() {
        let mut img = image(&[1, 2], &[], &[p(&[1, 2], &[1], Some(1))]);
        img.apply(
            50,
            &records::config(
                &ConfigResource::Topic("t".into()),
                "unclean.leader.election.enable",
                Some("true"),
            ),
        )
        .unwrap();
        let out = on_broker_fenced(&img, NodeId(1));
        assert_eq!(
            out.iter().map(fields).collect::<Vec<_>>(),
            vec![(Some(2), Some(vec![2]))]
        );
    }

    #[test]
    fn unfencing_brings_offline_partitions_back() {
        let img = image(
            &[2],
            &[1],
            &[
                p(&[1, 2], &[1], None),    // 1 is the ISR: it leads again
                p(&[2, 1], &[2], Some(2)), // online: untouched
                p(&[3, 1], &[3], None),    // 1 not in ISR, clean election only: stays offline
            ],
        );
        let out = on_broker_unfenced(&img, NodeId(1));
        assert_eq!(
            out.iter().map(fields).collect::<Vec<_>>(),
            vec![(Some(1), None)]
        );
    }
}
