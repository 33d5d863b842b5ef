//! In-process three-node clusters (each node a controller voter and a broker, on
//! 127.0.0.1): quorum election, replica placement, controller failover, fencing of a
//! silent broker, re-registration with a new broker epoch, and zombie rejection.
use std::time::{Duration, Instant};

use spate::node::{Node, NodeConfig};
use spate_metadata::ids::NodeId;
use spate_proto::controller::BrokerHeartbeatRequest;
use spate_tests::cluster::{self, free_port, Cluster};
use spate_tests::RawConnection;

const SESSION: Duration = Duration::from_secs(3);

/// CreateTopics through node `node`; returns the error code.
async fn create_topic(node: &Node, name: &str, partitions: i32, rf: i16) -> i16 {
    let mut conn = RawConnection::connect(node.kafka_addr.unwrap())
        .await
        .unwrap();
    cluster::create_topic(&mut conn, name, partitions, rf, &[]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_places_replicas_on_every_broker_and_spreads_leaders() {
    let cluster = Cluster::start().await;
    assert!(cluster.active_controller().is_some());
    assert_eq!(create_topic(cluster.node(2), "spread", 6, 3).await, 0);
    let image = cluster
        .wait_image(Duration::from_secs(10), |i| {
            i.topic_by_name("spread").is_some()
        })
        .await
        .unwrap();
    let topic = image.topic_by_name("spread").unwrap();
    assert_eq!(topic.partitions.len(), 6);
    let mut leaders = std::collections::BTreeSet::new();
    for p in topic.partitions.values() {
        let mut replicas: Vec<i32> = p.replicas.iter().map(|r| r.0).collect();
        replicas.sort();
        assert_eq!(replicas, vec![1, 2, 3]);
        leaders.insert(p.leader.unwrap().0);
    }
    assert_eq!(
        leaders.into_iter().collect::<Vec<_>>(),
        vec![1, 2, 3],
        "leaders spread over all brokers"
    );
    // RF above the live brokers is refused.
    assert_eq!(
        create_topic(cluster.node(1), "too-wide", 1, 4).await,
        38,
        "INVALID_REPLICATION_FACTOR"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_active_controller_keeps_committed_metadata_and_admin_working() {
    let mut cluster = Cluster::start().await;
    assert_eq!(create_topic(cluster.node(1), "before", 3, 3).await, 0);
    let old = cluster.active_controller().unwrap();
    cluster.stop(old).await;
    let started = Instant::now();
    let survivor = (1..=3).find(|id| *id != old).unwrap();
    assert_eq!(create_topic(cluster.node(survivor), "after", 1, 2).await, 0);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "CreateTopics took {:?} after failover",
        started.elapsed()
    );
    let new = cluster.active_controller().unwrap();
    assert_ne!(new, old);
    let image = cluster
        .wait_image(Duration::from_secs(5), |i| {
            i.topic_by_name("after").is_some()
        })
        .await
        .unwrap();
    assert!(
        image.topic_by_name("before").is_some(),
        "a committed topic was lost in failover"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_broker_is_fenced_then_rejoins_with_a_new_epoch() {
    let mut cluster = Cluster::start().await;
    assert_eq!(create_topic(cluster.node(1), "moves", 6, 3).await, 0);
    cluster
        .wait_image(Duration::from_secs(10), |i| {
            i.topic_by_name("moves").is_some()
        })
        .await
        .unwrap();
    // Stop a broker that is not the active controller, so only its heartbeats stop.
    let active = cluster.active_controller().unwrap();
    let victim = (1..=3).find(|id| *id != active).unwrap();
    let old_epoch = cluster
        .node(active)
        .controller
        .as_ref()
        .unwrap()
        .image()
        .broker(NodeId(victim))
        .unwrap()
        .epoch;
    cluster.stop(victim).await;
    let started = Instant::now();
    let image = cluster
        .wait_image(SESSION + Duration::from_secs(5), |i| {
            let fenced = i.broker(NodeId(victim)).is_some_and(|b| b.fenced);
            let led = i.topic_by_name("moves").is_some_and(|t| {
                t.partitions
                    .values()
                    .any(|p| p.leader == Some(NodeId(victim)))
            });
            fenced && !led
        })
        .await
        .expect("the silent broker is fenced and leads nothing");
    assert!(
        started.elapsed() <= SESSION + Duration::from_secs(2),
        "fencing took {:?}",
        started.elapsed()
    );
    for p in image.topic_by_name("moves").unwrap().partitions.values() {
        assert!(p.leader.is_some(), "every partition has a live leader");
        assert!(!p.isr.contains(&NodeId(victim)));
    }

    // A zombie heartbeating with its old epoch is refused.
    let addrs = cluster.controller_addrs();
    let mut client = spate_controller_client::ControllerClient::connect(addrs).unwrap();
    cluster.restart(victim).await;
    // (A restarted voter briefly serves its own stale image, so ask for the new epoch.)
    let image = cluster
        .wait_image(Duration::from_secs(10), |i| {
            i.broker(NodeId(victim))
                .is_some_and(|b| !b.fenced && b.epoch > old_epoch)
        })
        .await
        .expect("the restarted broker re-registers with a new epoch and is unfenced");
    let zombie = client
        .broker_heartbeat(BrokerHeartbeatRequest {
            broker_id: victim,
            broker_epoch: old_epoch.0,
            metadata_offset: image.offset(),
            want_fence: false,
            want_shutdown: false,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(zombie.error_code, 77, "STALE_BROKER_EPOCH");
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_controller_and_broker_roles() {
    let dir = tempfile::tempdir().unwrap();
    let controller_port = free_port();
    let voters = vec![(1u64, format!("127.0.0.1:{controller_port}"))];
    let controller = Node::start(NodeConfig {
        node_id: 1,
        roles: spate::node::Roles {
            controller: true,
            broker: false,
        },
        controller_addr: format!("127.0.0.1:{controller_port}").parse().unwrap(),
        voters: voters.clone(),
        ..NodeConfig::ephemeral(dir.path().join("controller"))
    })
    .await
    .unwrap();
    assert!(controller.broker.is_none() && controller.kafka_addr.is_none());
    let broker = Node::start(NodeConfig {
        node_id: 2,
        roles: spate::node::Roles {
            controller: false,
            broker: true,
        },
        voters,
        ..NodeConfig::ephemeral(dir.path().join("broker"))
    })
    .await
    .unwrap();
    assert!(broker.controller.is_none());
    // The broker-only node registered with the controller-only node and serves Kafka.
    let image = controller.controller.as_ref().unwrap().image();
    assert!(image.is_unfenced(NodeId(2)));
    assert!(
        image.broker(NodeId(1)).is_none(),
        "a controller-only node is not a broker"
    );
    assert_eq!(create_topic(&broker, "roles", 2, 1).await, 0);
    broker.shutdown().await;
    controller.shutdown().await;
}
