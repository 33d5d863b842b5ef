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
    // As a client does: find the coordinator first (this creates __consumer_offsets).
    for attempt in 0.. {
        let resp: FindCoordinatorResponse = conn
            .request(
                ApiKey::FindCoordinator,
                3,
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_static_str("g"))
                    .with_key_type(0),
            )
            .await
            .unwrap();
        if resp.error_code == 0 {
            break;
        }
        assert!(attempt < 150, "no coordinator: {}", resp.error_code);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
