use proptest::prelude::*;
use prost::Message;
use spate_proto::metadata::{metadata_record::Record, MetadataBatch, MetadataRecord};
use spate_proto::metadata::{PartitionChangeRecord, ReplicaList, TopicRecord};

use super::records;
use super::*;

fn broker(id: i32, fenced: bool) -> BrokerRegistration {
    BrokerRegistration {
        id: NodeId(id),
        epoch: BrokerEpoch(-1),
        incarnation_id: format!("inc-{id}"),
        endpoints: vec![Endpoint {
            listener: "PLAINTEXT".into(),
            host: "h".into(),
            port: 9092,
        }],
        rack: None,
        fenced,
        offline_replicas: Default::default(),
        log_dir_id: String::new(),
    }
}

fn tid(n: u8) -> TopicId {
    TopicId::from_random([n; 16])
}

fn part(replicas: &[i32], isr: &[i32], leader: Option<i32>) -> PartitionImage {
    PartitionImage {
        replicas: replicas.iter().map(|&i| NodeId(i)).collect(),
        isr: isr.iter().map(|&i| NodeId(i)).collect(),
        elr: Vec::new(),
        last_known_elr: Vec::new(),
        leader: leader.map(NodeId),
        leader_epoch: LeaderEpoch(0),
        partition_epoch: PartitionEpoch(0),
    }
}

/// Three unfenced brokers and topic "t" with one partition led by 1.
fn base() -> MetadataImage {
    let mut img = MetadataImage::new();
    for (off, id) in [(1, 1), (2, 2), (3, 3)] {
        img.apply(off, &records::register_broker(&broker(id, false), None))
            .unwrap();
    }
    img.apply(4, &records::topic("t", tid(1))).unwrap();
    img.apply(
        4,
        &records::partition(tid(1), 0, &part(&[1, 2, 3], &[1, 2, 3], Some(1))),
    )
    .unwrap();
    img
}

#[test]
fn register_takes_epoch_from_offset_unless_resolved() {
    let img = base();
    assert_eq!(img.broker(NodeId(2)).unwrap().epoch, BrokerEpoch(2));
    assert_eq!(img.offset(), 4);
    let mut img2 = MetadataImage::new();
    img2.apply(
        50,
        &records::register_broker(&broker(7, true), Some(BrokerEpoch(9))),
    )
    .unwrap();
    let b = img2.broker(NodeId(7)).unwrap();
    assert_eq!((b.epoch, b.fenced), (BrokerEpoch(9), true));
    assert!(img2.unfenced_brokers().is_empty());
}

#[test]
fn fence_and_unfence_check_the_epoch() {
    let mut img = base();
    img.apply(5, &records::fence_broker(NodeId(2), BrokerEpoch(2)))
        .unwrap();
    assert!(img.broker(NodeId(2)).unwrap().fenced);
    assert_eq!(img.unfenced_brokers().len(), 2);
    let stale = img.apply(6, &records::unfence_broker(NodeId(2), BrokerEpoch(1)));
    assert!(matches!(stale, Err(MetadataError::StaleBrokerEpoch { .. })));
    assert_eq!(img.offset(), 5, "a failed record leaves the offset alone");
    img.apply(6, &records::unfence_broker(NodeId(2), BrokerEpoch(2)))
        .unwrap();
    assert!(img.is_unfenced(NodeId(2)));
    let unknown = img.apply(7, &records::fence_broker(NodeId(9), BrokerEpoch(1)));
    assert_eq!(unknown, Err(MetadataError::UnknownBroker(NodeId(9))));
}

#[test]
fn topic_record_rejects_duplicates_and_bad_ids() {
    let mut img = base();
    assert!(matches!(
        img.apply(5, &records::topic("t", tid(2))),
        Err(MetadataError::TopicExists(_))
    ));
    assert!(matches!(
        img.apply(5, &records::topic("u", tid(1))),
        Err(MetadataError::TopicExists(_))
    ));
    let bad = records::wrap(Record::Topic(TopicRecord {
        name: "x".into(),
        topic_id: vec![1, 2],
    }));
    assert!(matches!(img.apply(5, &bad), Err(MetadataError::Invalid(_))));
    img.apply(5, &records::topic("u", tid(2))).unwrap();
    assert_eq!(img.topic_by_name("u").unwrap().id, tid(2));
}

#[test]
fn partition_record_validates_replica_sets() {
    let mut img = base();
    let unknown = img.apply(
        5,
        &records::partition(tid(9), 0, &part(&[1], &[1], Some(1))),
    );
    assert_eq!(unknown, Err(MetadataError::UnknownTopic(tid(9))));
    for bad in [
        part(&[], &[], None),
        part(&[1, 1], &[1], Some(1)),
        part(&[1], &[2], None),
        part(&[1, 2], &[2], Some(1)),
    ] {
        let r = img.apply(5, &records::partition(tid(1), 1, &bad));
        assert!(matches!(r, Err(MetadataError::Invalid(_))), "{bad:?}");
    }
    img.apply(
        5,
        &records::partition(tid(1), 1, &part(&[2, 3], &[2, 3], Some(2))),
    )
    .unwrap();
    assert_eq!(img.partition(tid(1), 1).unwrap().leader, Some(NodeId(2)));
}

#[test]
fn elr_fields_apply_and_must_be_disjoint_sets_of_replicas() {
    let mut img = base();
    let with = |isr: &[i32], elr: &[i32], last: &[i32]| {
        let mut p = part(&[1, 2, 3], isr, None);
        p.elr = elr.iter().map(|&i| NodeId(i)).collect();
        p.last_known_elr = last.iter().map(|&i| NodeId(i)).collect();
        p
    };
    for bad in [
        with(&[1], &[1], &[]),
        with(&[], &[2, 2], &[]),
        with(&[], &[4], &[]),
        with(&[], &[2], &[2]),
    ] {
        let r = img.apply(5, &records::partition(tid(1), 1, &bad));
        assert!(matches!(r, Err(MetadataError::Invalid(_))), "{bad:?}");
    }
    img.apply(5, &records::partition(tid(1), 1, &with(&[], &[1, 2], &[3])))
        .unwrap();
    let change = records::partition_change_of(
        tid(1),
        1,
        records::PartitionDelta {
            leader: Some(Some(NodeId(2))),
            isr: Some(&[NodeId(2)]),
            elr: Some(&[NodeId(1)]),
            ..Default::default()
        },
    );
    img.apply(6, &change).unwrap();
    let p = img.partition(tid(1), 1).unwrap();
    assert_eq!(
        (
            p.leader,
            p.isr.clone(),
            p.elr.clone(),
            p.last_known_elr.clone()
        ),
        (
            Some(NodeId(2)),
            vec![NodeId(2)],
            vec![NodeId(1)],
            vec![NodeId(3)]
        )
    );
    // A snapshot keeps them.
    let (copy, errors) = MetadataImage::from_records(6, &img.to_records());
    assert!(errors.is_empty());
    assert_eq!(copy.partition(tid(1), 1), img.partition(tid(1), 1));
}

#[test]
fn partition_change_bumps_epochs() {
    let mut img = base();
    // ISR shrink only: partition epoch moves, leader epoch does not.
    img.apply(
        5,
        &records::partition_change(tid(1), 0, None, Some(&[NodeId(1), NodeId(2)])),
    )
    .unwrap();
    let p = img.partition(tid(1), 0).unwrap();
    assert_eq!(
        (p.leader_epoch, p.partition_epoch),
        (LeaderEpoch(0), PartitionEpoch(1))
    );
    assert_eq!(p.isr, vec![NodeId(1), NodeId(2)]);
    // Leader change: both move.
    img.apply(
        6,
        &records::partition_change(tid(1), 0, Some(Some(NodeId(2))), Some(&[NodeId(2)])),
    )
    .unwrap();
    let p = img.partition(tid(1), 0).unwrap();
    assert_eq!(
        (p.leader, p.leader_epoch, p.partition_epoch),
        (Some(NodeId(2)), LeaderEpoch(1), PartitionEpoch(2))
    );
    // Offline.
    img.apply(7, &records::partition_change(tid(1), 0, Some(None), None))
        .unwrap();
    let p = img.partition(tid(1), 0).unwrap();
    assert_eq!((p.leader, p.leader_epoch), (None, LeaderEpoch(2)));
    // Replicas change with the ISR.
    let change = records::wrap(Record::PartitionChange(PartitionChangeRecord {
        topic_id: tid(1).to_bytes(),
        partition: 0,
        leader: Some(3),
        isr: Some(ReplicaList { ids: vec![3] }),
        replicas: Some(ReplicaList { ids: vec![3, 2] }),
        ..Default::default()
    }));
    img.apply(8, &change).unwrap();
    assert_eq!(
        img.partition(tid(1), 0).unwrap().replicas,
        vec![NodeId(3), NodeId(2)]
    );
}

#[test]
fn partition_change_errors_leave_image_unchanged() {
    let mut img = base();
    let before = img.clone();
    let missing = img.apply(9, &records::partition_change(tid(1), 5, None, None));
    assert!(matches!(
        missing,
        Err(MetadataError::UnknownPartition { partition: 5, .. })
    ));
    let leader_outside_isr = img.apply(
        9,
        &records::partition_change(tid(1), 0, Some(Some(NodeId(3))), Some(&[NodeId(1)])),
    );
    assert!(matches!(leader_outside_isr, Err(MetadataError::Invalid(_))));
    let unknown_topic = img.apply(9, &records::partition_change(tid(4), 0, None, None));
    assert_eq!(unknown_topic, Err(MetadataError::UnknownTopic(tid(4))));
    assert_eq!(img, before);
}

#[test]
fn remove_topic_drops_partitions_and_configs() {
    let mut img = base();
    img.apply(
        5,
        &records::config(
            &ConfigResource::Topic("t".into()),
            "retention.ms",
            Some("10"),
        ),
    )
    .unwrap();
    assert_eq!(
        img.topic_config("t")
            .get("retention.ms")
            .map(String::as_str),
        Some("10")
    );
    img.apply(6, &records::remove_topic(tid(1))).unwrap();
    assert!(img.topic_by_name("t").is_none());
    assert!(img.topic_config("t").is_empty());
    assert!(img.all_configs().is_empty());
    assert_eq!(
        img.apply(7, &records::remove_topic(tid(1))),
        Err(MetadataError::UnknownTopic(tid(1)))
    );
}

#[test]
fn config_records_set_delete_and_check_the_topic() {
    let mut img = base();
    let topic = ConfigResource::Topic("t".into());
    img.apply(5, &records::config(&topic, "segment.ms", Some("100")))
        .unwrap();
    img.apply(6, &records::config(&topic, "segment.ms", None))
        .unwrap();
    assert!(
        img.all_configs().is_empty(),
        "an emptied resource disappears"
    );
    let missing = img.apply(
        7,
        &records::config(&ConfigResource::Topic("nope".into()), "a", Some("b")),
    );
    assert!(matches!(missing, Err(MetadataError::Invalid(_))));
    img.apply(
        7,
        &records::config(&ConfigResource::Broker("1".into()), "x", Some("y")),
    )
    .unwrap();
    assert_eq!(img.configs(&ConfigResource::Broker("1".into())).len(), 1);
}

#[test]
fn producer_ids_only_move_forward() {
    let mut img = base();
    img.apply(
        5,
        &records::producer_id_block(NodeId(1), BrokerEpoch(1), 1000),
    )
    .unwrap();
    assert_eq!(img.next_producer_id(), 1000);
    let back = img.apply(
        6,
        &records::producer_id_block(NodeId(1), BrokerEpoch(1), 10),
    );
    assert!(matches!(back, Err(MetadataError::Invalid(_))));
}

#[test]
fn empty_record_is_an_error() {
    let mut img = base();
    assert_eq!(
        img.apply(5, &MetadataRecord { record: None }),
        Err(MetadataError::EmptyRecord(5))
    );
}

#[test]
fn apply_batch_handles_snapshots_and_duplicates() {
    let img = base();
    let mut follower = MetadataImage::new();
    let snap = MetadataBatch {
        offset: img.offset(),
        records: img.to_records(),
        snapshot: true,
    };
    assert!(follower.apply_batch(&snap).is_empty());
    assert_eq!(follower, img);
    let delta = MetadataBatch {
        offset: 5,
        records: vec![records::remove_topic(tid(1))],
        snapshot: false,
    };
    assert!(follower.apply_batch(&delta).is_empty());
    assert!(follower.topic_by_name("t").is_none());
    // A replayed delta is ignored rather than reported as an error.
    assert!(follower.apply_batch(&delta).is_empty());
    let bad = MetadataBatch {
        offset: 6,
        records: vec![records::remove_topic(tid(1))],
        snapshot: false,
    };
    assert_eq!(follower.apply_batch(&bad).len(), 1);
    assert_eq!(follower.offset(), 6);
}

/// An operation interpreted against the current image, so generated histories are mostly valid.
#[derive(Debug, Clone)]
enum Op {
    Register {
        id: i32,
        fenced: bool,
        rack: Option<u8>,
    },
    Fence {
        id: i32,
        fenced: bool,
    },
    CreateTopic {
        name: u8,
        seed: u8,
        partitions: i32,
        rf: usize,
    },
    Change {
        topic: usize,
        partition: i32,
        leader: Option<usize>,
        keep: usize,
    },
    Remove {
        topic: usize,
    },
    Config {
        topic: usize,
        key: u8,
        value: Option<u8>,
    },
    BrokerConfig {
        id: u8,
        value: Option<u8>,
    },
    ProducerIds {
        blocks: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..5i32, any::<bool>(), proptest::option::of(0..3u8))
            .prop_map(|(id, fenced, rack)| Op::Register { id, fenced, rack }),
        (0..5i32, any::<bool>()).prop_map(|(id, fenced)| Op::Fence { id, fenced }),
        (0..6u8, any::<u8>(), 1..4i32, 1..4usize).prop_map(|(name, seed, partitions, rf)| {
            Op::CreateTopic {
                name,
                seed,
                partitions,
                rf,
            }
        }),
        (
            0..6usize,
            0..4i32,
            proptest::option::of(0..3usize),
            1..4usize
        )
            .prop_map(|(topic, partition, leader, keep)| Op::Change {
                topic,
                partition,
                leader,
                keep
            }),
        (0..6usize).prop_map(|topic| Op::Remove { topic }),
        (0..6usize, 0..3u8, proptest::option::of(any::<u8>()))
            .prop_map(|(topic, key, value)| Op::Config { topic, key, value }),
        (0..3u8, proptest::option::of(any::<u8>()))
            .prop_map(|(id, value)| Op::BrokerConfig { id, value }),
        (1..4i64).prop_map(|blocks| Op::ProducerIds { blocks }),
    ]
}

fn to_record(img: &MetadataImage, op: &Op) -> Option<MetadataRecord> {
    let nth_topic = |n: usize| img.topics().values().nth(n % img.topics().len().max(1));
    Some(match op {
        Op::Register { id, fenced, rack } => {
            let mut b = broker(*id, *fenced);
            b.rack = rack.map(|r| format!("rack-{r}"));
            records::register_broker(&b, None)
        }
        Op::Fence { id, fenced } => {
            let b = img.broker(NodeId(*id))?;
            if *fenced {
                records::fence_broker(b.id, b.epoch)
            } else {
                records::unfence_broker(b.id, b.epoch)
            }
        }
        Op::CreateTopic { name, seed, .. } => records::topic(&format!("topic-{name}"), tid(*seed)),
        Op::Change {
            topic,
            partition,
            leader,
            keep,
        } => {
            let t = nth_topic(*topic)?;
            let p = t.partitions.get(partition)?;
            let isr: Vec<NodeId> = p.replicas.iter().copied().take(*keep).collect();
            let leader = leader.and_then(|l| isr.get(l).copied());
            records::partition_change(t.id, *partition, Some(leader), Some(&isr))
        }
        Op::Remove { topic } => records::remove_topic(nth_topic(*topic)?.id),
        Op::Config { topic, key, value } => {
            let t = nth_topic(*topic)?;
            let v = value.map(|v| v.to_string());
            records::config(
                &ConfigResource::Topic(t.name.clone()),
                &format!("k{key}"),
                v.as_deref(),
            )
        }
        Op::BrokerConfig { id, value } => {
            let v = value.map(|v| v.to_string());
            records::config(&ConfigResource::Broker(id.to_string()), "k", v.as_deref())
        }
        Op::ProducerIds { blocks } => records::producer_id_block(
            NodeId(0),
            BrokerEpoch(0),
            img.next_producer_id() + blocks * 1000,
        ),
    })
}

/// Partition records for a freshly created topic (kept apart so `to_record` stays one record).
fn partitions_for(op: &Op) -> Vec<MetadataRecord> {
    let Op::CreateTopic {
        seed,
        partitions,
        rf,
        ..
    } = op
    else {
        return Vec::new();
    };
    (0..*partitions)
        .map(|p| {
            let replicas: Vec<i32> = (0..*rf as i32).map(|r| (p + r) % 5).collect();
            records::partition(
                tid(*seed),
                p,
                &part(&replicas, &replicas, Some(replicas[0])),
            )
        })
        .collect()
}

proptest! {
    #[test]
    fn to_records_rebuilds_an_equal_image(ops in proptest::collection::vec(op(), 0..60)) {
        let mut img = MetadataImage::new();
        for (i, op) in ops.iter().enumerate() {
            let offset = i as u64 + 1;
            if let Some(r) = to_record(&img, op) {
                if img.apply(offset, &r).is_ok() {
                    for p in partitions_for(op) {
                        img.apply(offset, &p).unwrap();
                    }
                }
            }
        }
        let (rebuilt, errors) = MetadataImage::from_records(img.offset(), &img.to_records());
        prop_assert!(errors.is_empty(), "{errors:?}");
        prop_assert_eq!(rebuilt, img);
    }

    #[test]
    fn apply_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut img = base();
        if let Ok(record) = MetadataRecord::decode(bytes.as_slice()) {
            let _ = img.apply(99, &record);
        }
    }
}
