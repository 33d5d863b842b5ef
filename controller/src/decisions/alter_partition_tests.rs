use spate_proto::controller::{AlterPartitionTopic, IsrMember};

use super::*;
use spate_metadata::ids::{LeaderEpoch, PartitionEpoch};
use spate_metadata::BrokerRegistration;

const TOPIC: [u8; 16] = [7; 16];

fn topic_id() -> TopicId {
    TopicId::from_random(TOPIC)
}

fn ids(v: &[i32]) -> Vec<NodeId> {
    v.iter().map(|&i| NodeId(i)).collect()
}

/// Brokers 1..=3 (those in `fenced` fenced; broker 4 is a replica but never registered)
/// and topic "t" whose partition 0 has replicas [1, 2, 3, 4], leader 1, leader epoch 3,
/// partition epoch 5 and this ISR.
fn image(fenced: &[i32], isr: &[i32]) -> MetadataImage {
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
    img.apply(off, &records::topic("t", topic_id())).unwrap();
    let p = PartitionImage {
        replicas: ids(&[1, 2, 3, 4]),
        isr: ids(isr),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        leader: Some(NodeId(1)),
        leader_epoch: LeaderEpoch(3),
        partition_epoch: PartitionEpoch(5),
    };
    img.apply(off, &records::partition(topic_id(), 0, &p))
        .unwrap();
    img
}

fn epoch(img: &MetadataImage, id: i32) -> i64 {
    img.broker(NodeId(id)).map_or(-1, |b| b.epoch.0)
}

/// The ISR as the leader saw it, with each member's current epoch.
fn members(img: &MetadataImage, isr: &[i32]) -> Vec<IsrMember> {
    isr.iter()
        .map(|&id| IsrMember {
            broker_id: id,
            broker_epoch: epoch(img, id),
        })
        .collect()
}

fn data(leader_epoch: i32, partition_epoch: i32, new_isr: Vec<IsrMember>) -> AlterPartitionData {
    AlterPartitionData {
        partition: 0,
        leader_epoch,
        partition_epoch,
        new_isr,
    }
}

/// A request from broker `from` (with its current epoch) for t-0.
fn req(img: &MetadataImage, from: i32, parts: Vec<AlterPartitionData>) -> AlterPartitionRequest {
    AlterPartitionRequest {
        broker_id: from,
        broker_epoch: epoch(img, from),
        topics: vec![AlterPartitionTopic {
            topic_id: topic_id().to_bytes(),
            partitions: parts,
        }],
    }
}

/// The error code of the only partition result, and that no record was produced.
fn refused(img: &MetadataImage, r: &AlterPartitionRequest) -> i32 {
    let res = alter_partition(img, r);
    assert!(res.records.is_empty(), "{res:?}");
    assert_eq!(res.response.error_code, 0);
    let p = &res.response.topics[0].partitions[0];
    assert!(p.isr.is_empty() && p.partition_epoch == -1, "{p:?}");
    p.error_code
}

fn t0(img: &MetadataImage) -> &PartitionImage {
    img.partition(topic_id(), 0).unwrap()
}

#[test]
fn shrink_commits_the_new_isr_and_predicts_the_applied_state() {
    let img = image(&[], &[1, 2, 3]);
    let res = alter_partition(
        &img,
        &req(&img, 1, vec![data(3, 5, members(&img, &[1, 3]))]),
    );
    assert_eq!(res.records.len(), 1);
    let got = &res.response.topics[0].partitions[0];
    assert_eq!(got.error_code, 0, "{}", got.error_message);
    assert_eq!(
        (
            got.leader,
            got.leader_epoch,
            got.isr.clone(),
            got.partition_epoch
        ),
        (1, 3, vec![1, 3], 6)
    );
    let mut after = img.clone();
    after.apply(100, &res.records[0]).unwrap();
    let p = t0(&after);
    assert_eq!(p.isr, ids(&[1, 3]));
    assert_eq!(p.partition_epoch, PartitionEpoch(6));
    assert_eq!(
        (p.leader, p.leader_epoch),
        (Some(NodeId(1)), LeaderEpoch(3))
    );
    // The prediction is what the image holds after apply.
    let mut resp = res.response.clone();
    refresh_from_image(&after, &mut resp);
    assert_eq!(resp, res.response);
}

#[test]
fn expansion_with_the_members_current_broker_epoch_is_accepted() {
    let img = image(&[], &[1]);
    let res = alter_partition(
        &img,
        &req(&img, 1, vec![data(3, 5, members(&img, &[1, 2]))]),
    );
    assert_eq!(res.records.len(), 1);
    assert_eq!(res.response.topics[0].partitions[0].isr, vec![1, 2]);
}

#[test]
fn unchanged_isr_succeeds_without_a_record() {
    let img = image(&[], &[1, 2]);
    let res = alter_partition(
        &img,
        &req(&img, 1, vec![data(3, 5, members(&img, &[1, 2]))]),
    );
    assert!(res.records.is_empty());
    let got = &res.response.topics[0].partitions[0];
    assert_eq!(
        (got.error_code, got.partition_epoch, got.isr.clone()),
        (0, 5, vec![1, 2])
    );
}

#[test]
fn stale_or_unknown_requester_epoch_refuses_the_whole_request() {
    let img = image(&[], &[1, 2]);
    let mut r = req(&img, 1, vec![data(3, 5, members(&img, &[1]))]);
    r.broker_epoch -= 1;
    let res = alter_partition(&img, &r);
    assert!(res.records.is_empty());
    assert_eq!(res.response.error_code, 77);
    assert!(res.response.topics.is_empty());
    r.broker_id = 9;
    assert_eq!(alter_partition(&img, &r).response.error_code, 77);
}

#[test]
fn unknown_topic_id_and_partition() {
    let img = image(&[], &[1, 2]);
    let mut r = req(&img, 1, vec![data(3, 5, members(&img, &[1]))]);
    r.topics[0].partitions[0].partition = 4;
    assert_eq!(
        refused(&img, &r),
        ErrorCode::UnknownTopicOrPartition.proto_code()
    );
    let msg = &alter_partition(&img, &r).response.topics[0].partitions[0].error_message;
    assert_eq!(
        msg,
        "topic 't' has 1 partitions; partition 4 does not exist"
    );
    r.topics[0].topic_id = TopicId::from_random([9; 16]).to_bytes();
    assert_eq!(refused(&img, &r), ErrorCode::UnknownTopicId.proto_code());
    r.topics[0].topic_id = vec![1, 2, 3];
    assert_eq!(refused(&img, &r), ErrorCode::UnknownTopicId.proto_code());
}

#[test]
fn epochs_ahead_of_the_controller_answer_not_controller() {
    let img = image(&[], &[1, 2]);
    let isr = members(&img, &[1]);
    assert_eq!(
        refused(&img, &req(&img, 1, vec![data(4, 5, isr.clone())])),
        41
    );
    assert_eq!(refused(&img, &req(&img, 1, vec![data(3, 6, isr)])), 41);
}

#[test]
fn older_leader_epoch_is_fenced_even_from_a_former_leader() {
    let img = image(&[], &[1, 2]);
    assert_eq!(
        refused(&img, &req(&img, 1, vec![data(2, 5, members(&img, &[1]))])),
        74
    );
    // A former leader with its old epoch: fenced before the leader check.
    assert_eq!(
        refused(&img, &req(&img, 2, vec![data(2, 5, members(&img, &[2]))])),
        74
    );
}

#[test]
fn non_leader_with_current_epochs_is_an_invalid_request() {
    let img = image(&[], &[1, 2]);
    let r = req(&img, 2, vec![data(3, 5, members(&img, &[1, 2]))]);
    assert_eq!(refused(&img, &r), ErrorCode::InvalidRequest.proto_code());
}

#[test]
fn stale_partition_epoch_loses_the_compare_and_set() {
    let img = image(&[], &[1, 2]);
    let r = req(&img, 1, vec![data(3, 4, members(&img, &[1]))]);
    assert_eq!(
        refused(&img, &r),
        ErrorCode::InvalidUpdateVersion.proto_code()
    );
}

#[test]
fn malformed_isr_is_an_invalid_request() {
    let img = image(&[], &[1, 2]);
    for isr in [vec![], vec![1, 1], vec![1, 5], vec![2, 3]] {
        let r = req(&img, 1, vec![data(3, 5, members(&img, &isr))]);
        assert_eq!(refused(&img, &r), 42, "ISR {isr:?}");
    }
}

#[test]
fn fenced_unregistered_or_restarted_members_are_ineligible() {
    let img = image(&[3], &[1]);
    let isr_with = |id: i32, epoch: i64| {
        let mut m = members(&img, &[1]);
        m.push(IsrMember {
            broker_id: id,
            broker_epoch: epoch,
        });
        m
    };
    let cases = [
        ("fenced", isr_with(3, epoch(&img, 3))),
        ("not registered", isr_with(4, 1)),
        ("restarted", isr_with(2, epoch(&img, 2) - 1)),
        ("without a broker epoch", isr_with(2, UNKNOWN_BROKER_EPOCH)),
    ];
    for (why, isr) in cases {
        let r = req(&img, 1, vec![data(3, 5, isr)]);
        let res = alter_partition(&img, &r);
        let p = &res.response.topics[0].partitions[0];
        assert_eq!(p.error_code, 107, "{why}");
        assert!(res.records.is_empty(), "{why}");
        assert!(p.error_message.contains(why), "{why}: {}", p.error_message);
    }
}

#[test]
fn members_already_in_the_isr_may_omit_their_epoch_but_not_carry_a_wrong_one() {
    let img = image(&[], &[1, 2, 3]);
    let mut isr = members(&img, &[1, 2]);
    isr[1].broker_epoch = UNKNOWN_BROKER_EPOCH;
    let res = alter_partition(&img, &req(&img, 1, vec![data(3, 5, isr.clone())]));
    assert_eq!(res.records.len(), 1);
    isr[1].broker_epoch = epoch(&img, 2) + 1;
    assert_eq!(refused(&img, &req(&img, 1, vec![data(3, 5, isr)])), 107);
}

#[test]
fn a_partition_listed_twice_is_decided_once() {
    let img = image(&[], &[1, 2, 3]);
    let shrink = data(3, 5, members(&img, &[1, 2]));
    let res = alter_partition(&img, &req(&img, 1, vec![shrink.clone(), shrink]));
    assert_eq!(res.records.len(), 1);
    let codes: Vec<_> = res.response.topics[0]
        .partitions
        .iter()
        .map(|p| p.error_code)
        .collect();
    assert_eq!(codes, vec![0, 42]);
}

#[test]
fn refresh_reads_the_committed_state_for_successes_only() {
    let img = image(&[], &[1, 2, 3]);
    let mut r = req(&img, 1, vec![data(3, 5, members(&img, &[1, 2]))]);
    r.topics[0].partitions.push(data(3, 5, members(&img, &[1])));
    r.topics[0].partitions[1].partition = 8;
    let res = alter_partition(&img, &r);
    let mut after = img.clone();
    after.apply(100, &res.records[0]).unwrap();
    // Something else changed the partition after ours: the reply shows it.
    let isr = ids(&[1]);
    after
        .apply(
            101,
            &records::partition_change(topic_id(), 0, None, Some(&isr)),
        )
        .unwrap();
    let mut resp = res.response;
    refresh_from_image(&after, &mut resp);
    let got: Vec<_> = resp.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.isr.clone(), p.partition_epoch))
        .collect();
    assert_eq!(got, vec![(0, vec![1], 7), (3, vec![], -1)]);
}
