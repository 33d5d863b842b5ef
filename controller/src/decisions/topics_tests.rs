use rand::rngs::StdRng;
use rand::SeedableRng;
use spate_proto::controller::PartitionCountChange;
use spate_proto::metadata::metadata_record::Record;
use spate_proto::metadata::ReplicaList;

use super::*;
use spate_metadata::ids::BrokerEpoch;
use spate_metadata::BrokerRegistration;

/// Brokers 1..=3 unfenced, 4 fenced.
fn image() -> MetadataImage {
    let mut img = MetadataImage::new();
    for id in 1..=4 {
        let b = BrokerRegistration {
            id: NodeId(id),
            epoch: BrokerEpoch(-1),
            incarnation_id: "i".into(),
            endpoints: vec![],
            rack: None,
            fenced: id == 4,
            offline_replicas: Default::default(),
            log_dir_id: String::new(),
        };
        img.apply(id as u64, &records::register_broker(&b, None))
            .unwrap();
    }
    img
}

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

fn topic(name: &str, partitions: i32, rf: i32) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: partitions,
        replication_factor: rf,
        ..Default::default()
    }
}

fn create(
    img: &MetadataImage,
    topics: Vec<CreatableTopic>,
) -> ControllerResult<CreateTopicsResponse> {
    let req = CreateTopicsRequest {
        topics,
        validate_only: false,
    };
    create_topics(
        img,
        &req,
        &TopicDefaults {
            num_partitions: 2,
            replication_factor: 3,
        },
        &mut rng(),
    )
}

fn codes(res: &CreateTopicsResponse) -> Vec<i32> {
    res.topics.iter().map(|t| t.error_code).collect()
}

fn commit(img: &mut MetadataImage, offset: u64, records: &[MetadataRecord]) {
    for r in records {
        img.apply(offset, r).unwrap();
    }
}

#[test]
fn creates_topic_partition_and_config_records() {
    let mut img = image();
    let mut t = topic("orders", 6, 2);
    t.configs.insert("retention.ms".into(), "1000".into());
    let res = create(&img, vec![t]);
    let r = &res.response.topics[0];
    assert_eq!(
        (r.error_code, r.num_partitions, r.replication_factor),
        (0, 6, 2)
    );
    let kinds: Vec<_> = res
        .records
        .iter()
        .map(|r| match r.record {
            Some(Record::Topic(_)) => 'T',
            Some(Record::Config(_)) => 'C',
            Some(Record::Partition(_)) => 'P',
            _ => '?',
        })
        .collect();
    assert_eq!(kinds.iter().collect::<String>(), "TCPPPPPP");
    commit(&mut img, 10, &res.records);
    let t = img.topic_by_name("orders").unwrap();
    assert_eq!(t.id.to_bytes(), r.topic_id);
    assert_eq!(
        img.topic_config("orders")
            .get("retention.ms")
            .map(String::as_str),
        Some("1000")
    );
    let mut leaders = BTreeSet::new();
    for p in t.partitions.values() {
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(
            (p.leader_epoch, p.partition_epoch),
            (LeaderEpoch(0), PartitionEpoch(0))
        );
        assert!(
            !p.replicas.contains(&NodeId(4)),
            "fenced brokers get no replicas"
        );
        leaders.insert(p.leader);
    }
    assert_eq!(leaders.len(), 3, "leaders spread over the brokers");
}

#[test]
fn same_seed_same_decision() {
    let img = image();
    assert_eq!(
        create(&img, vec![topic("a", 3, 2)]),
        create(&img, vec![topic("a", 3, 2)])
    );
}

#[test]
fn defaults_apply_for_minus_one() {
    let res = create(&image(), vec![topic("d", -1, -1)]);
    let r = &res.response.topics[0];
    assert_eq!(
        (r.error_code, r.num_partitions, r.replication_factor),
        (0, 2, 3)
    );
}

#[test]
fn bad_names_are_invalid_topic_exception() {
    let long = "x".repeat(250);
    for name in ["", ".", "..", long.as_str(), "a/b", "héllo", "a b"] {
        let res = create(&image(), vec![topic(name, 1, 1)]);
        assert_eq!(codes(&res.response), vec![17], "{name:?}");
        assert!(res.records.is_empty());
    }
    assert!(validate_topic_name(&"x".repeat(249)).is_ok());
    assert!(validate_topic_name("a-b_c.D9").is_ok());
}

#[test]
fn existing_and_colliding_names() {
    let mut img = image();
    let recs = create(&img, vec![topic("a.b", 1, 1)]).records;
    commit(&mut img, 10, &recs);
    assert_eq!(
        codes(&create(&img, vec![topic("a.b", 1, 1)]).response),
        vec![36]
    );
    let res = create(&img, vec![topic("a_b", 1, 1)]);
    assert_eq!(codes(&res.response), vec![17]);
    assert!(res.response.topics[0].error_message.contains("collides"));
    // Two new topics that collide with each other in one request.
    assert_eq!(
        codes(&create(&img, vec![topic("x.y", 1, 1), topic("x_y", 1, 1)]).response),
        vec![0, 17]
    );
}

#[test]
fn partition_and_replication_factor_errors() {
    let img = image();
    let res = create(
        &img,
        vec![
            topic("p0", 0, 1),
            topic("pn", -5, 1),
            topic("r0", 1, 0),
            topic("r4", 1, 4),
            topic("big", MAX_PARTITIONS + 1, 1),
        ],
    );
    assert_eq!(codes(&res.response), vec![37, 37, 38, 38, 37]);
    assert!(res.response.topics[3].error_message.contains("3 available"));
    assert!(res.records.is_empty());
}

#[test]
fn one_request_creates_at_most_max_partitions_per_request_and_the_rest_is_throttled() {
    let per_topic = 40_000;
    let res = create(
        &image(),
        vec![
            topic("a", per_topic, 1),
            topic("b", per_topic, 1),
            topic("c", per_topic, 1),
            topic("d", 100, 1),
        ],
    );
    // a and b (80 000) fit; c would make 120 000 (throttled, retriable); d still fits.
    assert_eq!(codes(&res.response), vec![0, 0, 89, 0]);
    assert!(res.response.topics[2].error_message.contains("retry"));
    let created: usize = res
        .records
        .iter()
        .filter(|r| matches!(r.record, Some(Record::Partition(_))))
        .count();
    assert_eq!(created as i64, 2 * i64::from(per_topic) + 100);
    assert!(created as i64 <= MAX_PARTITIONS_PER_REQUEST);
}

#[test]
fn bad_configs_are_invalid_config() {
    let mut bad_value = topic("c1", 1, 1);
    bad_value
        .configs
        .insert("retention.ms".into(), "abc".into());
    let mut unknown = topic("c2", 1, 1);
    unknown.configs.insert("no.such".into(), "1".into());
    let res = create(&image(), vec![bad_value, unknown]);
    assert_eq!(codes(&res.response), vec![40, 40]);
    assert_eq!(
        res.response.topics[0].error_message,
        "retention.ms must be a long >= -1, got 'abc'"
    );
}

#[test]
fn validate_only_commits_nothing() {
    let req = CreateTopicsRequest {
        topics: vec![topic("v", 3, 2), topic("v.", 0, 1)],
        validate_only: true,
    };
    let res = create_topics(&image(), &req, &TopicDefaults::default(), &mut rng());
    assert!(res.records.is_empty());
    assert_eq!(codes(&res.response), vec![0, 37]);
    assert_eq!(
        (
            res.response.topics[0].num_partitions,
            res.response.topics[0].topic_id.len()
        ),
        (3, 0)
    );
}

#[test]
fn duplicate_names_in_one_request_are_invalid_request() {
    let res = create(
        &image(),
        vec![topic("d", 1, 1), topic("e", 1, 1), topic("d", 1, 1)],
    );
    assert_eq!(codes(&res.response), vec![42, 0, 42]);
}

fn manual_topic(name: &str, assignment: &[&[i32]]) -> CreatableTopic {
    CreatableTopic {
        name: name.into(),
        num_partitions: -1,
        replication_factor: -1,
        assignments: assignment
            .iter()
            .map(|ids| ReplicaList { ids: ids.to_vec() })
            .collect(),
        ..Default::default()
    }
}

#[test]
fn explicit_assignments_are_validated() {
    let mut img = image();
    let res = create(
        &img,
        vec![
            manual_topic("ok", &[&[3, 1], &[4, 2]]),
            manual_topic("len", &[&[1, 2], &[1]]),
            manual_topic("unknown", &[&[1, 9]]),
            manual_topic("dup", &[&[2, 2]]),
            manual_topic("fenced", &[&[4]]),
            CreatableTopic {
                num_partitions: 2,
                ..manual_topic("both", &[&[1]])
            },
        ],
    );
    assert_eq!(codes(&res.response), vec![0, 39, 39, 39, 38, 42]);
    commit(&mut img, 10, &res.records);
    let t = img.topic_by_name("ok").unwrap();
    assert_eq!(t.partitions[&0].leader, Some(NodeId(3)));
    // The fenced replica is assigned but not in the ISR, and does not lead.
    assert_eq!(
        (t.partitions[&1].leader, &t.partitions[&1].isr),
        (Some(NodeId(2)), &vec![NodeId(2)])
    );
}

#[test]
fn delete_topics_decisions() {
    let mut img = image();
    let recs = create(&img, vec![topic("a", 1, 1), topic("b", 1, 1)]).records;
    commit(&mut img, 10, &recs);
    let req = DeleteTopicsRequest {
        names: vec!["a".into(), "zz".into(), "b".into(), "b".into()],
    };
    let res = delete_topics(&img, &req);
    let got: Vec<_> = res.response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(got, vec![0, 3, 42, 42]);
    commit(&mut img, 11, &res.records);
    assert!(img.topic_by_name("a").is_none());
    assert!(img.topic_by_name("b").is_some());
}

#[test]
fn create_partitions_decisions() {
    let mut img = image();
    let recs = create(&img, vec![topic("a", 2, 2)]).records;
    commit(&mut img, 10, &recs);
    let change = |name: &str, count| PartitionCountChange {
        name: name.into(),
        count,
        assignments: Vec::new(),
    };
    let req = CreatePartitionsRequest {
        topics: vec![change("a", 5), change("zz", 3)],
        validate_only: false,
    };
    let res = create_partitions(&img, &req, &mut rng());
    let got: Vec<_> = res.response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(got, vec![0, 3]);
    assert_eq!(res.records.len(), 3);
    commit(&mut img, 11, &res.records);
    let t = img.topic_by_name("a").unwrap();
    assert_eq!(
        t.partitions.keys().copied().collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert!(t.partitions.values().all(|p| p.replicas.len() == 2));
    for count in [5, 3] {
        let req = CreatePartitionsRequest {
            topics: vec![change("a", count)],
            validate_only: false,
        };
        let res = create_partitions(&img, &req, &mut rng());
        assert_eq!(res.response.topics[0].error_code, 37);
        assert!(res.response.topics[0]
            .error_message
            .contains("has 5 partitions"));
    }
    let req = CreatePartitionsRequest {
        topics: vec![change("a", 9)],
        validate_only: true,
    };
    let res = create_partitions(&img, &req, &mut rng());
    assert_eq!(
        (res.response.topics[0].error_code, res.records.len()),
        (0, 0)
    );
}

#[test]
fn create_partitions_with_explicit_assignments_is_validated_as_kafka() {
    // Brokers 1-3 unfenced, 4 fenced (see `image`); topic "a" has replication factor 2.
    let mut img = image();
    let recs = create(&img, vec![topic("a", 1, 2)]).records;
    commit(&mut img, 10, &recs);
    let change = |count, lists: &[&[i32]]| CreatePartitionsRequest {
        topics: vec![PartitionCountChange {
            name: "a".into(),
            count,
            assignments: lists
                .iter()
                .map(|ids| ReplicaList { ids: ids.to_vec() })
                .collect(),
        }],
        validate_only: false,
    };
    let code = |req: &CreatePartitionsRequest| {
        let res = create_partitions(&img, req, &mut rng());
        (res.response.topics[0].error_code, res.records.len())
    };
    assert_eq!(
        code(&change(3, &[&[1, 2]])),
        (39, 0),
        "one list per new partition"
    );
    assert_eq!(
        code(&change(2, &[&[1]])),
        (39, 0),
        "the topic's replication factor"
    );
    assert_eq!(code(&change(2, &[&[2, 2]])), (39, 0), "a broker twice");
    assert_eq!(code(&change(2, &[&[1, 9]])), (39, 0), "an unknown broker");
    assert_eq!(code(&change(2, &[&[]])), (39, 0), "no replicas");

    let res = create_partitions(&img, &change(3, &[&[3, 1], &[4, 2]]), &mut rng());
    assert_eq!(res.response.topics[0].error_code, 0);
    commit(&mut img, 11, &res.records);
    let t = img.topic_by_name("a").unwrap();
    assert_eq!(t.partitions[&1].replicas, vec![NodeId(3), NodeId(1)]);
    assert_eq!(t.partitions[&1].leader, Some(NodeId(3)));
    // The fenced broker is a replica, not in the ISR, and does not lead.
    assert_eq!(
        (t.partitions[&2].leader, &t.partitions[&2].isr),
        (Some(NodeId(2)), &vec![NodeId(2)])
    );
}
