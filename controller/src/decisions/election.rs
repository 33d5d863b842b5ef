//! Leader election and ISR changes (docs/architecture.md §4), after Kafka's
//! `PartitionChangeBuilder` with eligible leader replicas (KIP-966):
//!
//! - While the ISR is at least `min.insync.replicas`, the ELR is empty. When a change
//!   leaves it smaller, the members that leave (and the ELR so far) become eligible: the
//!   leader's HW cannot advance while the ISR is below min.insync (strict min-ISR), so
//!   they hold everything below it.
//! - The new leader is the live leader if it stays in the ISR, else the first replica in
//!   `replicas` order that is in the ISR and alive, else (ISR empty) the first live ELR
//!   member, which then forms the ISR alone.
//! - With none, the partition goes offline unless unclean election is allowed: then the
//!   last-known ELR is preferred, then any live replica.
//! - A replica whose log may have lost data (a new log directory) never stays in the ELR:
//!   it moves to the last-known ELR.

use std::collections::BTreeSet;

use spate_proto::metadata::MetadataRecord;

use spate_metadata::config_defs;
use spate_metadata::ids::{NodeId, TopicId};
use spate_metadata::records::{self, PartitionDelta};
use spate_metadata::{MetadataImage, PartitionImage};

/// A topic's election settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRules {
    /// `unclean.leader.election.enable`.
    pub unclean: bool,
    /// `min.insync.replicas` (at least 1).
    pub min_insync: usize,
}

impl Default for TopicRules {
    fn default() -> Self {
        TopicRules {
            unclean: false,
            min_insync: 1,
        }
    }
}

impl TopicRules {
    /// The rules in effect for `topic` (its overrides, else the defaults).
    pub fn of(image: &MetadataImage, topic: &str) -> TopicRules {
        TopicRules::from_configs(image.topic_config(topic))
    }

    /// The rules of a topic with these config overrides.
    pub fn from_configs(configs: &std::collections::BTreeMap<String, String>) -> TopicRules {
        TopicRules {
            unclean: config_defs::effective(configs, "unclean.leader.election.enable")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            min_insync: usize::try_from(config_defs::effective_long(
                configs,
                "min.insync.replicas",
            ))
            .unwrap_or(1)
            .max(1),
        }
    }
}

/// Builds the `PartitionChange` (if any) that moves one partition to a target ISR and a
/// leader elected among live brokers, keeping the ELR.
#[derive(Debug, Clone)]
pub struct PartitionChangeBuilder<'a> {
    topic: TopicId,
    index: i32,
    current: &'a PartitionImage,
    target_isr: Vec<NodeId>,
    rules: TopicRules,
    preferred: bool,
    lost: Vec<NodeId>,
}

impl<'a> PartitionChangeBuilder<'a> {
    /// Starts from the partition's current state under the topic's rules.
    pub fn new(topic: TopicId, index: i32, current: &'a PartitionImage, rules: TopicRules) -> Self {
        PartitionChangeBuilder {
            topic,
            index,
            current,
            target_isr: current.isr.clone(),
            rules,
            preferred: false,
            lost: Vec::new(),
        }
    }

    /// The ISR the partition should end up with (before any ELR or unclean election).
    pub fn with_isr(mut self, isr: Vec<NodeId>) -> Self {
        self.target_isr = isr;
        self
    }

    /// Allows (or forbids) electing an out-of-sync replica when no ISR or ELR member is
    /// alive, whatever the topic says (an explicit unclean ElectLeaders).
    pub fn unclean(mut self, allowed: bool) -> Self {
        self.rules.unclean = allowed;
        self
    }

    /// Moves leadership to the preferred (first) replica when it is in the ISR and alive,
    /// even if the current leader is fine (Kafka's `Election.PREFERRED`).
    pub fn preferred(mut self, on: bool) -> Self {
        self.preferred = on;
        self
    }

    /// Replicas whose log may have lost data: they leave the ELR (Kafka's unclean
    /// shutdown replicas; here, a broker that came back with a new log directory).
    pub fn lost_logs(mut self, lost: Vec<NodeId>) -> Self {
        self.lost = lost;
        self
    }

    /// KIP-966's target ELR and last-known ELR for the target ISR, in replica order.
    fn target_elr(&self) -> (Vec<NodeId>, Vec<NodeId>) {
        let current = self.current;
        let isr = &self.target_isr;
        if isr.len() >= self.rules.min_insync {
            return (Vec::new(), Vec::new());
        }
        let candidates: BTreeSet<NodeId> =
            current.elr.iter().chain(&current.isr).copied().collect();
        let elr: Vec<NodeId> = current
            .replicas
            .iter()
            .copied()
            .filter(|r| candidates.contains(r) && !isr.contains(r) && !self.lost.contains(r))
            .collect();
        let last_known = current
            .replicas
            .iter()
            .copied()
            .filter(|r| candidates.contains(r) || current.last_known_elr.contains(r))
            .filter(|r| !isr.contains(r) && !elr.contains(r))
            .collect();
        (elr, last_known)
    }

    /// The change record, or `None` when nothing changes.
    pub fn build(self, alive: impl Fn(NodeId) -> bool) -> Option<MetadataRecord> {
        let current = self.current;
        let replicas = &current.replicas;
        let (mut elr, mut last_known) = self.target_elr();
        let mut isr = self.target_isr;
        // Electable cleanly: in the ISR, or in the ELR once the ISR is empty.
        let valid =
            |r: NodeId| (isr.contains(&r) || (isr.is_empty() && elr.contains(&r))) && alive(r);
        let preferred = replicas
            .first()
            .copied()
            .filter(|&r| self.preferred && valid(r));
        // A live leader that stays in the ISR keeps leading: moving leadership for no
        // reason would bump the leader epoch and stall producers.
        let kept = current.leader.filter(|&l| valid(l));
        let clean = preferred
            .or(kept)
            .or_else(|| replicas.iter().copied().find(|&r| valid(r)));
        let leader = match clean {
            Some(l) => {
                if !isr.contains(&l) {
                    // Elected from the ELR: it holds the HW, so it is the ISR now.
                    isr = vec![l];
                    elr.retain(|&r| r != l);
                }
                Some(l)
            }
            None if self.rules.unclean => {
                let chosen = replicas
                    .iter()
                    .copied()
                    .find(|r| last_known.contains(r) && alive(*r))
                    .or_else(|| replicas.iter().copied().find(|&r| alive(r)));
                if let Some(c) = chosen {
                    // Unclean election: the new leader's log is the truth now, so the ISR
                    // is just it and nobody else is known to be eligible.
                    tracing::warn!(
                        partition = self.index,
                        leader = c.0,
                        "unclean leader election: acknowledged records may be lost"
                    );
                    isr = vec![c];
                    elr.clear();
                    last_known.clear();
                }
                chosen
            }
            None => None,
        };
        let delta = PartitionDelta {
            leader: (leader != current.leader).then_some(leader),
            isr: (isr != current.isr).then_some(isr.as_slice()),
            elr: (elr != current.elr).then_some(elr.as_slice()),
            last_known_elr: (last_known != current.last_known_elr).then_some(last_known.as_slice()),
        };
        (!delta.is_empty()).then(|| records::partition_change_of(self.topic, self.index, delta))
    }
}

/// Whether the topic sets `unclean.leader.election.enable=true`.
pub fn unclean_allowed(image: &MetadataImage, topic: &str) -> bool {
    TopicRules::of(image, topic).unclean
}

/// Partition changes for fencing `broker`: for every partition it led or sat in the ISR
/// of, it leaves the ISR (the last member too: it stays eligible through the ELR) and a
/// new leader is elected if it led.
pub fn on_broker_fenced(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics().values() {
        let rules = TopicRules::of(image, &topic.name);
        for (&index, p) in &topic.partitions {
            if p.leader != Some(broker) && !p.isr.contains(&broker) {
                continue;
            }
            let alive = |n: NodeId| n != broker && image.can_serve(n, topic.id, index);
            let isr = p.isr.iter().copied().filter(|&n| n != broker).collect();
            let change = PartitionChangeBuilder::new(topic.id, index, p, rules).with_isr(isr);
            out.extend(change.build(alive));
        }
    }
    out
}

/// Partition changes once `broker` re-registers with a new log directory: every log it
/// had is gone, so it leaves every ISR and ELR it is in (Kafka's handling of an unclean
/// shutdown, KIP-966). Without this, a broker that lost its disk while it was the last
/// member could be elected over the acknowledged records it no longer has.
pub fn on_broker_logs_lost(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics().values() {
        let rules = TopicRules::of(image, &topic.name);
        for (&index, p) in &topic.partitions {
            if !p.isr.contains(&broker) && !p.elr.contains(&broker) {
                continue;
            }
            let alive = |n: NodeId| n != broker && image.can_serve(n, topic.id, index);
            let isr = p.isr.iter().copied().filter(|&n| n != broker).collect();
            let change = PartitionChangeBuilder::new(topic.id, index, p, rules)
                .with_isr(isr)
                .lost_logs(vec![broker]);
            out.extend(change.build(alive));
        }
    }
    out
}

/// Partition changes once `broker` reports that recovery cut the logs of `cut` partitions
/// (a torn or garbled tail): those replicas may hold less than they acknowledged, so they
/// leave the ELR for the last-known ELR, as Kafka drops a broker's replicas from the ELR
/// after an unclean shutdown (here per partition, only where data was cut).
pub fn on_replicas_cut(
    image: &MetadataImage,
    broker: NodeId,
    cut: &BTreeSet<(TopicId, i32)>,
) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for &(topic_id, index) in cut {
        let Some(topic) = image.topics().get(&topic_id) else {
            continue;
        };
        let Some(p) = topic.partitions.get(&index) else {
            continue;
        };
        if !p.elr.contains(&broker) {
            continue;
        }
        let alive = |n: NodeId| n != broker && image.can_serve(n, topic_id, index);
        let change =
            PartitionChangeBuilder::new(topic_id, index, p, TopicRules::of(image, &topic.name))
                .lost_logs(vec![broker]);
        out.extend(change.build(alive));
    }
    out
}

/// Partition changes once `broker` reports the logs of `offline` partitions failed (Kafka's
/// handling of an offline log directory): where it led, a new leader is elected from the
/// rest of the ISR; it leaves those ISRs (into the ELR when the ISR falls below
/// min.insync, as on fencing).
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
        let isr = p.isr.iter().copied().filter(|&n| n != broker).collect();
        let alive = |n: NodeId| n != broker && image.can_serve(n, topic_id, index);
        let change =
            PartitionChangeBuilder::new(topic_id, index, p, TopicRules::of(image, &topic.name))
                .with_isr(isr);
        out.extend(change.build(alive));
    }
    out
}

/// Partition changes once `broker` is unfenced: offline partitions it can lead get it as
/// leader (Kafka's `handleBrokerUnfenced`): as the ISR, as an ELR member once the ISR is
/// empty, or through an unclean election where the topic allows one.
pub fn on_broker_unfenced(image: &MetadataImage, broker: NodeId) -> Vec<MetadataRecord> {
    let mut out = Vec::new();
    for topic in image.topics().values() {
        let rules = TopicRules::of(image, &topic.name);
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
                let change = PartitionChangeBuilder::new(topic.id, index, p, rules);
                out.extend(change.build(alive));
            }
        }
    }
    out
}

/// Partition changes after a topic's `min.insync.replicas` changed to `rules.min_insync`:
/// where the ISR now meets it, the HW may advance again, so the ELR (eligible only while
/// it could not) is cleared (Kafka, KAFKA-16540).
pub fn on_min_insync_changed(
    image: &MetadataImage,
    topic: TopicId,
    rules: TopicRules,
) -> Vec<MetadataRecord> {
    let Some(t) = image.topic(topic) else {
        return Vec::new();
    };
    t.partitions
        .iter()
        .filter(|(_, p)| !p.elr.is_empty() || !p.last_known_elr.is_empty())
        .filter_map(|(&index, p)| {
            let alive = |n: NodeId| image.can_serve(n, topic, index);
            PartitionChangeBuilder::new(topic, index, p, rules).build(alive)
        })
        .collect()
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
            elr: Vec::new(),
            last_known_elr: Vec::new(),
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
        let r = PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
            .with_isr(ids(&[2, 3]))
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (None, Some(vec![2, 3])));
    }

    #[test]
    fn first_replica_in_isr_and_alive_wins() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(1));
        let r = PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
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
        let r = PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
            .build(alive)
            .unwrap();
        assert_eq!(fields(&r), (Some(-1), None));
        let r = PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
            .unclean(true)
            .build(alive)
            .unwrap();
        assert_eq!(fields(&r), (Some(3), Some(vec![3])));
    }

    #[test]
    fn preferred_election_overrides_a_healthy_leader_only_when_the_first_replica_can_lead() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(2));
        let r = PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
            .preferred(true)
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (Some(1), None));
        // Replica 1 fenced: the live leader stays, nothing to commit.
        assert!(
            PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
                .preferred(true)
                .build(|n| n != NodeId(1))
                .is_none()
        );
        // Without the flag a healthy leader is kept.
        assert!(
            PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
                .build(|_| true)
                .is_none()
        );
    }

    #[test]
    fn nothing_to_change_gives_no_record() {
        let part = p(&[1, 2], &[1, 2], Some(1));
        assert!(
            PartitionChangeBuilder::new(T, 0, &part, TopicRules::default())
                .build(|_| true)
                .is_none()
        );
        let offline = p(&[1, 2], &[1], None);
        assert!(
            PartitionChangeBuilder::new(T, 0, &offline, TopicRules::default())
                .build(|_| false)
                .is_none()
        );
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
                log_dir_id: String::new(),
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

    /// (elr, last_known_elr) of a change record: `None` for absent fields.
    fn elr_fields(r: &MetadataRecord) -> (Option<Vec<i32>>, Option<Vec<i32>>) {
        match &r.record {
            Some(Record::PartitionChange(c)) => (
                c.elr.as_ref().map(|l| l.ids.clone()),
                c.last_known_elr.as_ref().map(|l| l.ids.clone()),
            ),
            other => panic!("not a partition change: {other:?}"),
        }
    }

    fn with_elr(mut part: PartitionImage, elr: &[i32], last_known: &[i32]) -> PartitionImage {
        part.elr = ids(elr);
        part.last_known_elr = ids(last_known);
        part
    }

    const MIN2: TopicRules = TopicRules {
        unclean: false,
        min_insync: 2,
    };

    #[test]
    fn shrinking_below_min_insync_makes_the_leavers_eligible() {
        let part = p(&[1, 2, 3], &[1, 2, 3], Some(1));
        // Down to min.insync: nobody is eligible outside the ISR, nothing to record.
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .with_isr(ids(&[1, 2]))
            .build(|_| true)
            .unwrap();
        assert_eq!(elr_fields(&r), (None, None));
        // Below it: the member that leaves stays eligible.
        let part = p(&[1, 2, 3], &[1, 2], Some(1));
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .with_isr(ids(&[1]))
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (None, Some(vec![1])));
        assert_eq!(elr_fields(&r), (Some(vec![2]), None));
    }

    #[test]
    fn an_empty_isr_elects_a_live_elr_member_which_becomes_the_isr() {
        // ISR [1] below min.insync 2, 2 eligible; 1 is fenced.
        let part = with_elr(p(&[1, 2, 3], &[1], Some(1)), &[2], &[]);
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .with_isr(vec![])
            .build(|n| n != NodeId(1))
            .unwrap();
        assert_eq!(fields(&r), (Some(2), Some(vec![2])));
        assert_eq!(elr_fields(&r), (Some(vec![1]), None));
    }

    #[test]
    fn an_out_of_sync_replica_is_never_elected_cleanly() {
        // 3 left while the ISR still met min.insync: it may lack committed records.
        let part = with_elr(p(&[1, 2, 3], &[], None), &[1, 2], &[]);
        assert!(PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .build(|n| n == NodeId(3))
            .is_none());
        // Unclean, it is: the ISR is just it and nobody else is eligible.
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .unclean(true)
            .build(|n| n == NodeId(3))
            .unwrap();
        assert_eq!(fields(&r), (Some(3), Some(vec![3])));
        assert_eq!(elr_fields(&r), (Some(vec![]), None));
    }

    #[test]
    fn a_lost_log_leaves_the_elr_for_the_last_known_elr() {
        let part = with_elr(p(&[1, 2, 3], &[], None), &[1, 2], &[]);
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .lost_logs(ids(&[1]))
            .build(|n| n == NodeId(1))
            .unwrap();
        // 1 is alive but came back empty: not elected, no longer eligible.
        assert_eq!(fields(&r), (None, None));
        assert_eq!(elr_fields(&r), (Some(vec![2]), Some(vec![1])));
        // An unclean election prefers the last-known ELR over other live replicas.
        let part = with_elr(p(&[1, 2, 3], &[], None), &[], &[2]);
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .unclean(true)
            .build(|n| n != NodeId(1))
            .unwrap();
        assert_eq!(fields(&r), (Some(2), Some(vec![2])));
        assert_eq!(elr_fields(&r), (None, Some(vec![])));
    }

    #[test]
    fn meeting_min_insync_again_clears_the_elr() {
        let part = with_elr(p(&[1, 2, 3], &[2], Some(2)), &[1], &[3]);
        let r = PartitionChangeBuilder::new(T, 0, &part, MIN2)
            .with_isr(ids(&[2, 3]))
            .build(|_| true)
            .unwrap();
        assert_eq!(fields(&r), (None, Some(vec![2, 3])));
        assert_eq!(elr_fields(&r), (Some(vec![]), Some(vec![])));
    }

    #[test]
    fn lowering_min_insync_clears_an_elr_the_hw_may_now_outrun() {
        let mut img = image(
            &[1, 2, 3],
            &[],
            &[with_elr(p(&[1, 2, 3], &[1, 2], Some(1)), &[3], &[])],
        );
        let t = *img.topic_names().get("t").unwrap();
        // Still below: ISR 2 < 3, the HW stays frozen and 3 stays eligible.
        let rules = TopicRules {
            unclean: false,
            min_insync: 3,
        };
        assert!(on_min_insync_changed(&img, t, rules).is_empty());
        let rules = TopicRules {
            unclean: false,
            min_insync: 2,
        };
        let out = on_min_insync_changed(&img, t, rules);
        assert_eq!(out.len(), 1);
        assert_eq!(elr_fields(&out[0]), (Some(vec![]), None));
        img.apply(60, &out[0]).unwrap();
        assert!(img.partition(t, 0).unwrap().elr.is_empty());
    }

    #[test]
    fn fencing_everyone_keeps_the_last_members_eligible_and_unfencing_one_elects_it() {
        // min.insync 1 (the default): the ELR only records the last member.
        let mut img = image(&[1, 2], &[], &[p(&[1, 2], &[1], Some(1))]);
        let out = on_broker_fenced(&img, NodeId(1));
        assert_eq!(fields(&out[0]), (Some(-1), Some(vec![])));
        assert_eq!(elr_fields(&out[0]), (Some(vec![1]), None));
        img.apply(
            60,
            &records::fence_broker(NodeId(1), img.broker(NodeId(1)).unwrap().epoch),
        )
        .unwrap();
        img.apply(61, &out[0]).unwrap();
        // 2 was out of sync: unfencing it elects nobody; unfencing 1 elects 1.
        assert!(on_broker_unfenced(&img, NodeId(2)).is_empty());
        let out = on_broker_unfenced(&img, NodeId(1));
        assert_eq!(fields(&out[0]), (Some(1), Some(vec![1])));
        assert_eq!(elr_fields(&out[0]), (Some(vec![]), None));
    }

    #[test]
    fn logs_lost_takes_the_broker_out_of_every_isr_and_elr() {
        let img = image(
            &[1, 2, 3],
            &[],
            &[
                with_elr(p(&[1, 2, 3], &[], None), &[1, 2], &[]),
                p(&[1, 2, 3], &[2, 3], Some(2)),
            ],
        );
        let out = on_broker_logs_lost(&img, NodeId(1));
        assert_eq!(out.len(), 1, "1 is in nothing of partition 1");
        assert_eq!(fields(&out[0]), (Some(2), Some(vec![2])));
        assert_eq!(elr_fields(&out[0]), (Some(vec![]), Some(vec![1])));
    }

    #[test]
    fn fencing_moves_leadership_and_shrinks_isr_and_the_last_member_becomes_eligible() {
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
                (Some(-1), Some(vec![])),
            ]
        );
        assert_eq!(elr_fields(&out[2]), (Some(vec![1]), None));
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
