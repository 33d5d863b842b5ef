//! Answers that must be Kafka's, found by running real clients' own test suites against
//! Spate: raw-protocol requests against an in-process node, asserting what a Kafka 4
//! broker answers. Real-client versions of these live in `tests/python/test_compat.py`.
use std::time::Duration;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use spate::node::{Node, NodeConfig};
use spate_metadata::ErrorCode;
use spate_tests::{RawConnection, TestNode};

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(conn: &mut RawConnection, topic: &str, partitions: i32) {
    create_topic_with(conn, topic, partitions, &[]).await
}

async fn create_topic_with(
    conn: &mut RawConnection,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let code = spate_tests::cluster::create_topic(conn, topic, partitions, 1, configs).await;
    assert_eq!(code, 0, "creating {topic}");
}

fn commit_partition(partition: i32, offset: i64) -> OffsetCommitRequestPartition {
    OffsetCommitRequestPartition::default()
        .with_partition_index(partition)
        .with_committed_offset(offset)
}

/// (topic, partition, error) of every partition in an OffsetCommit response.
fn commit_codes(resp: &OffsetCommitResponse) -> Vec<(String, i32, i16)> {
    resp.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_commit_for_an_unknown_topic_or_partition_is_refused_per_partition() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "known", 2).await;
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            OffsetCommitRequestTopic::default()
                .with_name(name("known"))
                .with_partitions(vec![commit_partition(0, 5), commit_partition(7, 5)]),
            OffsetCommitRequestTopic::default()
                .with_name(name("never-created"))
                .with_partitions(vec![commit_partition(0, 3)]),
        ]);
    spate_tests::cluster::find_coordinator(&mut conn, "g").await;
    // The coordinator's shard may still be loading.
    let mut codes = Vec::new();
    for _ in 0..100 {
        let resp: OffsetCommitResponse = conn.request(ApiKey::OffsetCommit, 8, &req).await.unwrap();
        codes = commit_codes(&resp);
        let retriable = [
            ErrorCode::CoordinatorNotAvailable.code(),
            ErrorCode::CoordinatorLoadInProgress.code(),
            ErrorCode::NotCoordinator.code(),
        ];
        if !codes.iter().any(|(_, _, c)| retriable.contains(c)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(
        codes,
        vec![
            ("known".to_string(), 0, 0),
            ("known".to_string(), 7, unknown),
            ("never-created".to_string(), 0, unknown),
        ]
    );

    // Only the known partition was stored.
    let fetch = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_topics(None);
    let resp: OffsetFetchResponse = conn.request(ApiKey::OffsetFetch, 7, &fetch).await.unwrap();
    let stored: Vec<(String, i32, i64)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.name.0.to_string(), p.partition_index, p.committed_offset))
        })
        .collect();
    assert_eq!(stored, vec![("known".to_string(), 0, 5)]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cleanly_stopped_node_registers_again_before_its_old_session_would_expire() {
    let dir = tempfile::tempdir().unwrap();
    // A session far longer than the start-up wait: a restart that had to wait for the
    // old session to expire would fail to become ready.
    let config = NodeConfig {
        session_timeout: Duration::from_secs(120),
        wait_ready: Some(Duration::from_secs(30)),
        ..NodeConfig::ephemeral(dir.path())
    };
    let node = Node::start(config.clone()).await.unwrap();
    let shutdown = node
        .controlled_shutdown(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(shutdown.completed(), "{shutdown:?}");
    node.shutdown().await;

    let again = Node::start(config).await;
    assert!(
        again.is_ok(),
        "restart on the same data did not become ready: {:?}",
        again.err()
    );
    again.unwrap().shutdown().await;
}

/// (value, source) of every config of `topic`.
async fn topic_configs(conn: &mut RawConnection, topic: &str) -> Vec<(String, String, i8)> {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    let req =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))]);
    let resp: DescribeConfigsResponse = conn
        .request(ApiKey::DescribeConfigs, 4, &req)
        .await
        .unwrap();
    resp.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), value, c.config_source)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_alter_configs_replaces_every_override_of_the_topic() {
    use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic_with(
        &mut conn,
        "legacy",
        1,
        &[("retention.ms", "3600000"), ("segment.bytes", "1048576")],
    )
    .await;
    let alter = |configs: &[(&str, Option<&str>)]| {
        AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("legacy"))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )])
    };
    let code = |r: AlterConfigsResponse| r.responses[0].error_code;
    for version in [0, 1, 2] {
        let resp = conn
            .request(
                ApiKey::AlterConfigs,
                version,
                &alter(&[("retention.ms", Some("7200000"))]),
            )
            .await
            .unwrap();
        assert_eq!(code(resp), 0, "v{version}");
    }
    let configs = topic_configs(&mut conn, "legacy").await;
    let get = |k: &str| configs.iter().find(|c| c.0 == k).cloned().unwrap();
    const DYNAMIC_TOPIC: i8 = 1;
    assert_eq!(
        get("retention.ms"),
        ("retention.ms".into(), "7200000".into(), DYNAMIC_TOPIC)
    );
    assert_eq!(
        get("segment.bytes").1,
        "1073741824",
        "left out: back to its default"
    );
    assert_ne!(get("segment.bytes").2, DYNAMIC_TOPIC);

    // Validated as IncrementalAlterConfigs: a bad value or a null one changes nothing.
    let bad = conn
        .request(
            ApiKey::AlterConfigs,
            2,
            &alter(&[("retention.ms", Some("soon"))]),
        )
        .await
        .unwrap();
    assert_eq!(code(bad), ErrorCode::InvalidConfig.code());
    let null = conn
        .request(ApiKey::AlterConfigs, 2, &alter(&[("retention.ms", None)]))
        .await
        .unwrap();
    assert_eq!(code(null), ErrorCode::InvalidRequest.code());
    let unknown = conn
        .request(
            ApiKey::AlterConfigs,
            2,
            &alter(&[("no.such.config", Some("1"))]),
        )
        .await
        .unwrap();
    assert_eq!(code(unknown), ErrorCode::InvalidConfig.code());
    let configs = topic_configs(&mut conn, "legacy").await;
    assert!(configs.contains(&("retention.ms".into(), "7200000".into(), DYNAMIC_TOPIC)));
    node.stop().await;
}

/// Kafka 4.0's highest version of each API Spate implements, as a 4.0 broker advertises
/// them (clients such as kafka-python infer the broker's release from these).
const KAFKA_4_0_MAX: &[(ApiKey, i16)] = &[
    (ApiKey::Produce, 12),
    (ApiKey::ListOffsets, 10),
    (ApiKey::Metadata, 13),
    (ApiKey::OffsetCommit, 9),
    (ApiKey::OffsetFetch, 9),
    (ApiKey::FindCoordinator, 6),
    (ApiKey::JoinGroup, 9),
    (ApiKey::Heartbeat, 4),
    (ApiKey::LeaveGroup, 5),
    (ApiKey::SyncGroup, 5),
    (ApiKey::DescribeGroups, 6),
    (ApiKey::ListGroups, 5),
    (ApiKey::ApiVersions, 4),
    (ApiKey::CreateTopics, 7),
    (ApiKey::DeleteTopics, 6),
    (ApiKey::DeleteRecords, 2),
    (ApiKey::InitProducerId, 5),
    (ApiKey::OffsetForLeaderEpoch, 4),
    (ApiKey::DescribeConfigs, 4),
    (ApiKey::AlterConfigs, 2),
    (ApiKey::CreatePartitions, 3),
    (ApiKey::DeleteGroups, 2),
    (ApiKey::ElectLeaders, 2),
    (ApiKey::IncrementalAlterConfigs, 1),
    (ApiKey::OffsetDelete, 0),
    (ApiKey::DescribeCluster, 2),
    (ApiKey::DescribeTopicPartitions, 0),
    (ApiKey::AlterReplicaLogDirs, 2),
    (ApiKey::DescribeLogDirs, 4),
    (ApiKey::DescribeQuorum, 2),
    (ApiKey::Fetch, 17),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_reach_kafka_4_0_for_every_implemented_api() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let resp: ApiVersionsResponse = conn
        .request(ApiKey::ApiVersions, 4, &ApiVersionsRequest::default())
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    let max = |key: ApiKey| {
        resp.api_keys
            .iter()
            .find(|k| k.api_key == key as i16)
            .map(|k| k.max_version)
    };
    for (key, kafka) in KAFKA_4_0_MAX {
        assert_eq!(max(*key), Some(*kafka), "{key:?}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_offsets_v9_answers_the_tiered_storage_queries() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "tiers", 1).await;
    let batch = spate_tests::encode_batch(
        &[b"a".as_slice(), b"b", b"c"],
        kafka_protocol::records::Compression::None,
    )
    .unwrap();
    let (code, _) = spate_tests::cluster::produce(&mut conn, "tiers", 0, -1, 10_000, batch)
        .await
        .unwrap();
    assert_eq!(code, 0);
    let mut answers = Vec::new();
    for query in [-1, -2, -4, -5] {
        let req = ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(name("tiers"))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(query)])]);
        let resp: ListOffsetsResponse = conn.request(ApiKey::ListOffsets, 9, &req).await.unwrap();
        let p = &resp.topics[0].partitions[0];
        answers.push((query, p.error_code, p.offset));
    }
    // Latest 3, earliest 0; earliest-local is the log start (no segment is remote);
    // latest-tiered is -1 (nothing is tiered), as Kafka with remote storage off.
    assert_eq!(
        answers,
        vec![(-1, 0, 3), (-2, 0, 0), (-4, 0, 0), (-5, 0, -1)]
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_and_list_groups_answer_as_kafka_4() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    spate_tests::cluster::find_coordinator(&mut conn, "nobody-here").await;
    let describe = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_static_str("nobody-here"))]);
    // The offsets topic may still be coming up: retry what is retriable.
    let mut answer = (0, String::new());
    for attempt in 0.. {
        let resp: DescribeGroupsResponse = conn
            .request(ApiKey::DescribeGroups, 6, &describe)
            .await
            .unwrap();
        let g = &resp.groups[0];
        answer = (g.error_code, g.group_state.to_string());
        let retriable = [
            ErrorCode::CoordinatorNotAvailable.code(),
            ErrorCode::CoordinatorLoadInProgress.code(),
            ErrorCode::NotCoordinator.code(),
        ];
        if !retriable.contains(&g.error_code) || attempt > 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // v6 (KIP-1043): an unknown group is GROUP_ID_NOT_FOUND, not an empty Dead group.
    assert_eq!(
        answer,
        (ErrorCode::GroupIdNotFound.code(), "Dead".to_string())
    );
    let old: DescribeGroupsResponse = conn
        .request(ApiKey::DescribeGroups, 5, &describe)
        .await
        .unwrap();
    assert_eq!(
        (
            old.groups[0].error_code,
            old.groups[0].group_state.to_string()
        ),
        (0, "Dead".to_string())
    );

    // A group with a committed offset exists (Empty, classic).
    create_topic(&mut conn, "listed", 1).await;
    let commit = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("listed-group")))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(name("listed"))
            .with_partitions(vec![commit_partition(0, 1)])]);
    for attempt in 0.. {
        let resp: OffsetCommitResponse = conn
            .request(ApiKey::OffsetCommit, 9, &commit)
            .await
            .unwrap();
        if commit_codes(&resp)[0].2 == 0 {
            break;
        }
        assert!(attempt < 150, "{:?}", commit_codes(&resp));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let list = |types: &[&'static str]| {
        ListGroupsRequest::default()
            .with_types_filter(types.iter().map(|t| StrBytes::from_static_str(t)).collect())
    };
    let ids = |r: ListGroupsResponse| -> Vec<String> {
        r.groups.iter().map(|g| g.group_id.to_string()).collect()
    };
    let all: ListGroupsResponse = conn
        .request(ApiKey::ListGroups, 5, &list(&[]))
        .await
        .unwrap();
    assert_eq!(ids(all), vec!["listed-group".to_string()]);
    let classic: ListGroupsResponse = conn
        .request(ApiKey::ListGroups, 5, &list(&["Classic"]))
        .await
        .unwrap();
    assert_eq!(classic.groups[0].group_type.to_string(), "classic");
    let consumer: ListGroupsResponse = conn
        .request(ApiKey::ListGroups, 5, &list(&["consumer"]))
        .await
        .unwrap();
    assert!(ids(consumer).is_empty(), "no KIP-848 consumer groups here");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v10_and_fetch_v16_name_the_new_leader_and_describe_cluster_v2_the_fenced_broker() {
    use spate_tests::cluster::{Cluster, ClusterOptions};
    let mut cluster = Cluster::start_with(ClusterOptions::default()).await;
    let mut conn = cluster.connect(1).await;
    let code = spate_tests::cluster::create_topic(&mut conn, "hints", 1, 3, &[]).await;
    assert_eq!(code, 0);
    let leader = cluster.wait_partition_ready("hints", 0, 3).await;
    let follower = (1..=3).find(|&i| i != leader).unwrap();
    let (_, _, epoch) = cluster.partition_state("hints", 0).unwrap();

    // A produce sent to a follower: NOT_LEADER_OR_FOLLOWER, with the leader to go to.
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    let batch = spate_tests::encode_batch(
        &[b"x".as_slice()],
        kafka_protocol::records::Compression::None,
    )
    .unwrap();
    let req = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name("hints"))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let mut to_follower = cluster.connect(follower).await;
    // The follower's own image may not have the topic yet (UNKNOWN_TOPIC_OR_PARTITION).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let resp: ProduceResponse = to_follower
            .request(ApiKey::Produce, 10, &req)
            .await
            .unwrap();
        let code = resp.responses[0].partition_responses[0].error_code;
        if code != ErrorCode::UnknownTopicOrPartition.code() || std::time::Instant::now() > deadline
        {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let p = &resp.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (leader, epoch)
    );
    let endpoints: Vec<(i32, i32)> = resp
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port))
        .collect();
    assert_eq!(
        endpoints,
        vec![(
            leader,
            cluster.node(leader).kafka_addr.unwrap().port() as i32
        )]
    );
    // v9 has no such fields: nothing is sent for them.
    let old: ProduceResponse = to_follower.request(ApiKey::Produce, 9, &req).await.unwrap();
    assert!(old.node_endpoints.is_empty());

    // A Fetch v16 sent to the follower: the same hints, by topic id.
    let id = topic_id(&mut to_follower, "hints").await;
    let resp: FetchResponse = to_follower
        .request(ApiKey::Fetch, 16, &fetch_by_id(id, &[0], 0, -1, &[]))
        .await
        .unwrap();
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
    assert_eq!(
        (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
        (leader, epoch)
    );
    let fetch_endpoints: Vec<(i32, i32)> = resp
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port))
        .collect();
    assert_eq!(fetch_endpoints, endpoints);
    let old: FetchResponse = to_follower
        .request(ApiKey::Fetch, 15, &fetch_by_id(id, &[0], 0, -1, &[]))
        .await
        .unwrap();
    assert!(old.node_endpoints.is_empty());
    assert_eq!(
        old.responses[0].partitions[0].current_leader,
        Default::default()
    );

    // DescribeCluster v2: a stopped (fenced) broker is listed only when asked for, marked.
    cluster.stop(follower).await;
    let live = (1..=3).find(|&i| i != follower).unwrap();
    let mut conn = cluster.connect(live).await;
    let describe = |fenced: bool| {
        DescribeClusterRequest::default()
            .with_endpoint_type(1)
            .with_include_fenced_brokers(fenced)
    };
    let mut listed = Vec::new();
    for attempt in 0.. {
        let resp: DescribeClusterResponse = conn
            .request(ApiKey::DescribeCluster, 2, &describe(true))
            .await
            .unwrap();
        listed = resp
            .brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect::<Vec<_>>();
        if listed.iter().any(|(id, fenced)| *id == follower && *fenced) || attempt > 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let expected: Vec<(i32, bool)> = (1..=3).map(|i| (i, i == follower)).collect();
    assert_eq!(listed, expected);
    let resp: DescribeClusterResponse = conn
        .request(ApiKey::DescribeCluster, 2, &describe(false))
        .await
        .unwrap();
    assert_eq!(resp.brokers.len(), 2);
    // Brokers do not answer for the controllers (endpoint type 2), as Kafka's.
    let resp: DescribeClusterResponse = conn
        .request(
            ApiKey::DescribeCluster,
            2,
            &DescribeClusterRequest::default().with_endpoint_type(2),
        )
        .await
        .unwrap();
    assert_eq!(resp.error_code, ErrorCode::UnsupportedEndpointType.code());
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_quorum_answers_only_for_the_metadata_log() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    let ask = |topic: &str, partition: i32| {
        TopicData::default()
            .with_topic_name(name(topic))
            .with_partitions(vec![
                PartitionData::default().with_partition_index(partition)
            ])
    };
    let req = DescribeQuorumRequest::default().with_topics(vec![
        ask("__cluster_metadata", 0),
        ask("__cluster_metadata", 1),
        ask("other", 0),
    ]);
    let resp: DescribeQuorumResponse = conn.request(ApiKey::DescribeQuorum, 2, &req).await.unwrap();
    assert_eq!(resp.error_code, 0);
    let codes: Vec<i16> = resp
        .topics
        .iter()
        .map(|t| t.partitions[0].error_code)
        .collect();
    let unknown = ErrorCode::UnknownTopicOrPartition.code();
    assert_eq!(codes, vec![0, unknown, unknown]);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.leader_id.0, 1);
    assert!(p.leader_epoch >= 1 && p.high_watermark > 0, "{p:?}");
    let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
    assert_eq!(voters, vec![1]);
    assert!(
        p.current_voters[0].log_end_offset >= p.high_watermark,
        "{p:?}"
    );
    let nodes: Vec<i32> = resp.nodes.iter().map(|n| n.node_id.0).collect();
    assert_eq!(nodes, vec![1]);
    assert_eq!(resp.nodes[0].listeners[0].name.as_str(), "CONTROLLER");
    node.stop().await;
}

/// A Fetch v17 of `partitions` of the topic with `id` from offset 0, in session
/// `session_id` at `epoch`, forgetting `forget`.
fn fetch_by_id(
    id: uuid::Uuid,
    partitions: &[i32],
    session_id: i32,
    epoch: i32,
    forget: &[(uuid::Uuid, i32)],
) -> FetchRequest {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
    let topics = if partitions.is_empty() {
        vec![]
    } else {
        vec![FetchTopic::default().with_topic_id(id).with_partitions(
            partitions
                .iter()
                .map(|p| {
                    FetchPartition::default()
                        .with_partition(*p)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)
                        .with_current_leader_epoch(-1)
                })
                .collect(),
        )]
    };
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(
            forget
                .iter()
                .map(|(id, p)| {
                    ForgottenTopic::default()
                        .with_topic_id(*id)
                        .with_partitions(vec![*p])
                })
                .collect(),
        )
}

/// (topic id, partition, error, record count) of every partition in a Fetch response.
fn fetched(resp: &FetchResponse) -> Vec<(uuid::Uuid, i32, i16, usize)> {
    resp.responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let mut records = p.records.clone().unwrap_or_default();
                let mut count = 0;
                while !records.is_empty() {
                    let set =
                        kafka_protocol::records::RecordBatchDecoder::decode(&mut records).unwrap();
                    count += set.records.len();
                }
                (t.topic_id, p.partition_index, p.error_code, count)
            })
        })
        .collect()
}

async fn topic_id(conn: &mut RawConnection, topic: &str) -> uuid::Uuid {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    let req = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic)))
    ]));
    let resp: MetadataResponse = conn.request(ApiKey::Metadata, 12, &req).await.unwrap();
    assert_eq!(resp.topics[0].error_code, 0);
    resp.topics[0].topic_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_v13_and_later_name_topics_by_id() {
    let node = TestNode::start().await.unwrap();
    let mut conn = RawConnection::connect(node.kafka_addr()).await.unwrap();
    create_topic(&mut conn, "ids", 2).await;
    for partition in [0, 1] {
        let batch = spate_tests::encode_batch(
            &[b"a".as_slice(), b"b".as_slice()],
            kafka_protocol::records::Compression::None,
        )
        .unwrap();
        let (code, _) =
            spate_tests::cluster::produce(&mut conn, "ids", partition, -1, 10_000, batch)
                .await
                .unwrap();
        assert_eq!(code, 0);
    }
    let id = topic_id(&mut conn, "ids").await;
    let unknown = uuid::Uuid::from_bytes([9; 16]);

    // Sessionless: the records come back under the topic's id, with no name; an id the
    // broker does not know is UNKNOWN_TOPIC_ID.
    for version in [13, 15, 16, 17] {
        let resp: FetchResponse = conn
            .request(ApiKey::Fetch, version, &fetch_by_id(id, &[0], 0, -1, &[]))
            .await
            .unwrap();
        assert_eq!(resp.error_code, 0);
        assert_eq!(fetched(&resp), vec![(id, 0, 0, 2)], "v{version}");
        assert!(resp.responses[0].topic.0.is_empty());
        let resp: FetchResponse = conn
            .request(
                ApiKey::Fetch,
                version,
                &fetch_by_id(unknown, &[0], 0, -1, &[]),
            )
            .await
            .unwrap();
        assert_eq!(
            fetched(&resp),
            vec![(unknown, 0, ErrorCode::UnknownTopicId.code(), 0)],
            "v{version}"
        );
    }

    // A session by id: partitions are kept and forgotten by id, and an incremental fetch
    // that names topics by name (v12) is refused, as is the reverse.
    let resp: FetchResponse = conn
        .request(ApiKey::Fetch, 17, &fetch_by_id(id, &[0, 1], 0, 0, &[]))
        .await
        .unwrap();
    let session = resp.session_id;
    assert!(session > 0);
    assert_eq!(fetched(&resp), vec![(id, 0, 0, 2), (id, 1, 0, 2)]);
    let resp: FetchResponse = conn
        .request(ApiKey::Fetch, 12, &fetch_by_id(id, &[], session, 1, &[]))
        .await
        .unwrap();
    assert_eq!(resp.error_code, ErrorCode::FetchSessionTopicIdError.code());
    // The incremental fetch at the epoch the refused one used: partition 1 forgotten,
    // partition 0 read again from the session's offset.
    let resp: FetchResponse = conn
        .request(
            ApiKey::Fetch,
            17,
            &fetch_by_id(id, &[], session, 1, &[(id, 1)]),
        )
        .await
        .unwrap();
    assert_eq!(resp.error_code, 0);
    assert_eq!(fetched(&resp), vec![(id, 0, 0, 2)]);
    let named = conn
        .request::<_, FetchResponse>(
            ApiKey::Fetch,
            12,
            &FetchRequest::default()
                .with_session_epoch(0)
                .with_max_wait_ms(0),
        )
        .await
        .unwrap()
        .session_id;
    let resp: FetchResponse = conn
        .request(ApiKey::Fetch, 17, &fetch_by_id(id, &[], named, 1, &[]))
        .await
        .unwrap();
    assert_eq!(resp.error_code, ErrorCode::FetchSessionTopicIdError.code());

    // The topic deleted and created again under the same name: the session's old id is
    // UNKNOWN_TOPIC_ID, not the new topic's records.
    let req = DeleteTopicsRequest::default()
        .with_topic_names(vec![name("ids")])
        .with_timeout_ms(10_000);
    let del: DeleteTopicsResponse = conn.request(ApiKey::DeleteTopics, 5, &req).await.unwrap();
    assert_eq!(del.responses[0].error_code, 0);
    create_topic(&mut conn, "ids", 1).await;
    let new_id = topic_id(&mut conn, "ids").await;
    assert_ne!(new_id, id);
    let resp: FetchResponse = conn
        .request(ApiKey::Fetch, 17, &fetch_by_id(id, &[], session, 2, &[]))
        .await
        .unwrap();
    assert_eq!(
        fetched(&resp),
        vec![(id, 0, ErrorCode::UnknownTopicId.code(), 0)]
    );
    let fresh = loop {
        let resp: FetchResponse = conn
            .request(ApiKey::Fetch, 17, &fetch_by_id(new_id, &[0], 0, -1, &[]))
            .await
            .unwrap();
        let got = fetched(&resp);
        // The new partition's replica opens just after the topic is created.
        if got[0].2 != ErrorCode::NotLeaderOrFollower.code()
            && got[0].2 != ErrorCode::LeaderNotAvailable.code()
        {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(fresh, vec![(new_id, 0, 0, 0)]);
    node.stop().await;
}
