use spate_proto::controller::ElectLeadersTopic;

use super::*;
use spate_metadata::ids::{BrokerEpoch, LeaderEpoch, PartitionEpoch, TopicId};
use spate_metadata::{records, BrokerRegistration};

fn ids(v: &[i32]) -> Vec<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

fn part(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionImage {
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

/// Brokers 1..=3 (those in `fenced` fenced) and topic "t" with these partitions.
fn image(fenced: &[i32], parts: &[PartitionImage]) -> MetadataImage {
    let mut img = MetadataImage::new();
    let mut off = 1;
    for id in 1..=3 {
        let b = BrokerRegistration {
            id: NodeId(id),
            epoch: BrokerEpoch(-1),
            incarnation_id: format!("inc-{id}"),
            endpoints: vec![],
            rack: None,
            fenced: fenced.contains(&id),
            offline_replicas: Default::default(),
            log_dir_id: String::new(),
        };
        img.apply(off, &records::register_broker(&b, None)).unwrap();
        off += 1;
    }
    let t = TopicId::from_random([7; 16]);
    img.apply(off, &records::topic("t", t)).unwrap();
    for (i, p) in parts.iter().enumerate() {
        img.apply(off, &records::partition(t, i as i32, p)).unwrap();
    }
    img
}

fn asked(v: &[(&str, i32)]) -> Vec<(String, i32)> {
    v.iter().map(|(t, p)| (t.to_string(), *p)).collect()
}

fn codes(r: &[PartitionElection]) -> Vec<(String, i32, i32)> {
    r.iter()
        .map(|e| (e.topic.clone(), e.partition, e.outcome.code()))
        .collect()
}

#[test]
fn preferred_replica_in_isr_takes_leadership_back_and_the_epoch_bumps() {
    let img = image(&[], &[part(&[1, 2, 3], &[1, 2, 3], Some(2))]);
    let res = elect_preferred_leaders(&img, Some(&asked(&[("t", 0)])));
    assert_eq!(
        res.response,
        vec![PartitionElection {
            topic: "t".into(),
            partition: 0,
            outcome: ElectionOutcome::Elected(NodeId(1)),
        }]
    );
    assert_eq!(res.records.len(), 1);
    let mut after = img.clone();
    after.apply(100, &res.records[0]).unwrap();
    let t = after.topic_by_name("t").unwrap();
    let p = &t.partitions[&0];
    assert_eq!(p.leader, Some(NodeId(1)));
    assert_eq!(p.isr, ids(&[1, 2, 3]), "the ISR is untouched");
    assert_eq!(p.leader_epoch, LeaderEpoch(4));
}

#[test]
fn preferred_leader_already_leading_needs_no_election() {
    let img = image(&[], &[part(&[1, 2], &[1, 2], Some(1))]);
    let res = elect_preferred_leaders(&img, Some(&asked(&[("t", 0)])));
    assert!(res.records.is_empty());
    assert_eq!(codes(&res.response), vec![("t".into(), 0, 84)]);
}

#[test]
fn preferred_replica_out_of_isr_or_fenced_is_not_available() {
    let img = image(
        &[3],
        &[
            part(&[1, 2], &[2], Some(2)),    // 1 is out of the ISR
            part(&[3, 2], &[3, 2], Some(2)), // 3 is fenced
        ],
    );
    let res = elect_preferred_leaders(&img, Some(&asked(&[("t", 0), ("t", 1)])));
    assert!(res.records.is_empty());
    assert_eq!(
        codes(&res.response),
        vec![("t".into(), 0, 80), ("t".into(), 1, 80)]
    );
    assert!(res.response[0].message().contains("not in the ISR"));
    assert!(res.response[1].message().contains("fenced"));
}

#[test]
fn unknown_topics_and_partitions_are_reported_and_duplicates_answered_once() {
    let img = image(&[], &[part(&[1], &[1], Some(1))]);
    let res = elect_preferred_leaders(&img, Some(&asked(&[("nope", 0), ("t", 7), ("t", 7)])));
    assert!(res.records.is_empty());
    assert_eq!(
        codes(&res.response),
        vec![("nope".into(), 0, 3), ("t".into(), 7, 3)]
    );
    assert_eq!(
        res.response[1].message(),
        "topic 't' has 1 partitions; partition 7 does not exist"
    );
}

#[test]
fn all_partitions_elects_where_possible_and_omits_the_ones_already_fine() {
    let img = image(
        &[],
        &[
            part(&[1, 2], &[1, 2], Some(2)), // elected
            part(&[2, 1], &[2, 1], Some(2)), // already preferred: omitted
            part(&[3, 1], &[1], Some(1)),    // 3 out of ISR: reported
            part(&[3, 2], &[3, 2], Some(2)), // elected
        ],
    );
    let res = elect_preferred_leaders(&img, None);
    assert_eq!(
        codes(&res.response),
        vec![("t".into(), 0, 0), ("t".into(), 2, 80), ("t".into(), 3, 0)]
    );
    assert_eq!(res.records.len(), 2);
    // Deterministic: the same image gives the same records.
    assert_eq!(elect_preferred_leaders(&img, None), res);
}

#[test]
fn unclean_election_only_touches_leaderless_partitions() {
    let img = image(
        &[1],
        &[
            part(&[1, 2], &[1], None),       // only 2 alive, out of ISR: elected
            part(&[1, 2], &[1, 2], Some(2)), // has a leader
            part(&[1], &[1], None),          // no live replica
        ],
    );
    let res = elect(
        &img,
        Election::Unclean,
        Some(&asked(&[("t", 0), ("t", 1), ("t", 2)])),
    );
    assert_eq!(
        codes(&res.response),
        vec![("t".into(), 0, 0), ("t".into(), 1, 84), ("t".into(), 2, 83)]
    );
    let mut after = img.clone();
    after.apply(100, &res.records[0]).unwrap();
    let p = &after.topic_by_name("t").unwrap().partitions[&0];
    assert_eq!((p.leader, p.isr.clone()), (Some(NodeId(2)), ids(&[2])));
}

#[test]
fn rpc_validates_the_election_type_and_maps_codes() {
    let img = image(&[], &[part(&[1, 2], &[1, 2], Some(2))]);
    let bad = elect_leaders(
        &img,
        &ElectLeadersRequest {
            election_type: 9,
            ..Default::default()
        },
    );
    assert!(bad.records.is_empty());
    assert_eq!(
        bad.response.error_code,
        ErrorCode::InvalidRequest.proto_code()
    );
    let ok = elect_leaders(
        &img,
        &ElectLeadersRequest {
            election_type: ElectionType::Preferred as i32,
            all_partitions: false,
            topics: vec![ElectLeadersTopic {
                name: "t".into(),
                partitions: vec![0, 5],
            }],
        },
    );
    assert_eq!(ok.records.len(), 1);
    let got: Vec<_> = ok
        .response
        .results
        .iter()
        .map(|r| (r.partition, r.error_code))
        .collect();
    assert_eq!(got, vec![(0, 0), (5, 3)]);
}
