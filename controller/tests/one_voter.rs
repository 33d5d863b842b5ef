//! End-to-end tests of a one-voter controller over real gRPC on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use spate_controller::{ControllerConfig, ErrorCode, MetadataImage};
use spate_metadata::ids::NodeId;
use spate_proto::controller::*;
use spate_proto::metadata::metadata_record::Record;
use spate_proto::metadata::MetadataBatch;

async fn next_batch(stream: &mut tonic::Streaming<MetadataBatch>) -> MetadataBatch {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("watch timed out")
        .unwrap()
        .expect("stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_survives_restart_and_watchers_see_snapshot_then_delta() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_leader(ControllerConfig::single(1, dir.path())).await;
    let mut c = client(&node);
    add_broker(&mut c, 1).await;

    let mut watch = c.watch_metadata(0).await.unwrap();
    let snapshot = next_batch(&mut watch).await;
    assert!(snapshot.snapshot);
    let mut broker_image = MetadataImage::new();
    assert!(broker_image.apply_batch(&snapshot).is_empty());
    assert!(broker_image.is_unfenced(NodeId(1)));

    let res = c.create_topics(create_req("orders", 3, 1)).await.unwrap();
    let t = &res.topics[0];
    assert_eq!(
        (t.error_code, t.num_partitions, t.replication_factor),
        (0, 3, 1),
        "{}",
        t.error_message
    );
    assert_eq!(t.topic_id.len(), 16);

    let delta = next_batch(&mut watch).await;
    assert!(!delta.snapshot && delta.offset > snapshot.offset);
    let kinds: Vec<_> = delta
        .records
        .iter()
        .filter_map(|r| r.record.as_ref())
        .map(|r| matches!(r, Record::Topic(_)))
        .collect();
    assert_eq!(kinds, vec![true, false, false, false]);
    assert!(broker_image.apply_batch(&delta).is_empty());

    // A watcher that is already current gets an empty "caught up" batch first, not a snapshot.
    let mut current = c.watch_metadata(delta.offset).await.unwrap();
    let marker = next_batch(&mut current).await;
    assert!(!marker.snapshot && marker.records.is_empty());
    assert_eq!(marker.offset, delta.offset);
    assert_eq!(
        broker_image,
        node.image(),
        "a broker following the stream has the controller's image"
    );

    // Snapshot now, then change more, so the restart uses both a snapshot and the log.
    node.trigger_snapshot().await.unwrap();
    eventually("snapshot", || async {
        node.raft().metrics().borrow().snapshot.is_some()
    })
    .await;
    let res = c.create_topics(create_req("payments", 1, 1)).await.unwrap();
    assert_eq!(res.topics[0].error_code, 0);
    assert!(broker_image
        .apply_batch(&next_batch(&mut watch).await)
        .is_empty());
    let before = node.image();
    assert_eq!(broker_image, before);
    node.shutdown().await.unwrap();
    // The stream ends when the controller goes away.
    let end = tokio::time::timeout(WAIT, watch.message())
        .await
        .expect("stream did not end");
    assert!(!matches!(end, Ok(Some(_))), "{end:?}");

    let node = start_leader(ControllerConfig::single(1, dir.path())).await;
    eventually("replay after restart", || async { node.image() == before }).await;
    let mut c = client(&node);
    let again = c.create_topics(create_req("orders", 3, 1)).await.unwrap();
    assert_eq!(
        again.topics[0].error_code,
        ErrorCode::TopicAlreadyExists.proto_code()
    );
    let topic_id = node.image().topic_by_name("orders").unwrap().id.to_bytes();
    assert_eq!(
        topic_id, t.topic_id,
        "the topic keeps its id across restarts"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_fences_broker_and_moves_leadership() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ControllerConfig::single(1, dir.path());
    config.session_timeout = Duration::from_millis(800);
    config.heartbeat_interval = Duration::from_millis(100);
    let node = start_leader(config).await;
    let mut c = client(&node);
    let epoch1 = add_broker(&mut c, 1).await;
    add_broker(&mut c, 2).await;
    let res = c.create_topics(create_req("t", 4, 2)).await.unwrap();
    assert_eq!(
        res.topics[0].error_code, 0,
        "{}",
        res.topics[0].error_message
    );

    // Broker 1 keeps heartbeating; broker 2 goes silent.
    let mut hb_client = c.clone();
    let keep_alive = tokio::spawn(async move {
        loop {
            let _ = heartbeat(&mut hb_client, 1, epoch1, false).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    eventually("broker 2 fenced", || async {
        !node.image().is_unfenced(NodeId(2))
    })
    .await;
    let image = node.image();
    assert!(image.is_unfenced(NodeId(1)));
    for p in image.topic_by_name("t").unwrap().partitions.values() {
        assert_eq!(p.leader, Some(NodeId(1)), "{p:?}");
        assert_eq!(p.isr, vec![NodeId(1)]);
    }
    keep_alive.abort();

    // A stale epoch is refused; a fresh registration plus a caught-up heartbeat unfences.
    assert_eq!(
        heartbeat(&mut c, 2, 1, false).await.error_code,
        ErrorCode::StaleBrokerEpoch.proto_code()
    );
    add_broker(&mut c, 2).await;
    assert!(node.image().is_unfenced(NodeId(2)));
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_quorum_description_and_admin_errors() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_leader(ControllerConfig::single(1, dir.path())).await;
    let mut c = client(&node);
    let epoch = add_broker(&mut c, 1).await;
    let a = c
        .allocate_producer_ids(AllocateProducerIdsRequest {
            broker_id: 1,
            broker_epoch: epoch,
        })
        .await
        .unwrap();
    let b = c
        .allocate_producer_ids(AllocateProducerIdsRequest {
            broker_id: 1,
            broker_epoch: epoch,
        })
        .await
        .unwrap();
    assert_eq!(
        (a.first_producer_id, a.count, b.first_producer_id),
        (0, 1000, 1000)
    );

    let q = c.describe_quorum().await.unwrap();
    assert!(q.has_leader && q.leader_id == 1 && q.term >= 1);
    assert!(
        q.applied_index > 0 && q.commit_index >= q.applied_index,
        "{q:?}"
    );
    assert_eq!(q.voters.len(), 1);
    assert_eq!(q.voters[0].address, node.local_addr().to_string());

    let res = c.create_topics(create_req("bad/name", 1, 1)).await.unwrap();
    assert_eq!(
        res.topics[0].error_code,
        ErrorCode::InvalidTopicException.proto_code()
    );
    let res = c.create_topics(create_req("big-rf", 1, 3)).await.unwrap();
    assert_eq!(
        res.topics[0].error_code,
        ErrorCode::InvalidReplicationFactor.proto_code()
    );
    let res = c
        .delete_topics(DeleteTopicsRequest {
            names: vec!["nope".into()],
        })
        .await
        .unwrap();
    assert_eq!(
        res.topics[0].error_code,
        ErrorCode::UnknownTopicOrPartition.proto_code()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_leader_answers_not_controller() {
    // Node 2 of a quorum whose node 1 never starts: it must not initialize, so no leader.
    let dir = tempfile::tempdir().unwrap();
    let node = start_leaderless(dir.path()).await;
    let mut c = client(&node).with_retry(few_retries());
    let err = c.create_topics(create_req("x", 1, 1)).await.unwrap_err();
    assert_eq!(err.error_code(), ErrorCode::NotController);
    let mut raw = raw_client(&node).await;
    let res = raw
        .create_topics(create_req("x", 1, 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(res.topics[0].error_code, 41);
    let hb = raw
        .broker_heartbeat(BrokerHeartbeatRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(hb.error_code, 41);
    node.shutdown().await.unwrap();
}
