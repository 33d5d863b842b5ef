//! In-process three-node clusters (each node a controller voter and a broker, on
//! 127.0.0.1): quorum election, replica placement, controller failover, fencing of a
//! silent broker, re-registration with a new broker epoch, and zombie rejection.
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use spate_broker::node::{Node, NodeConfig};
use spate_controller::ids::NodeId;
use spate_controller::metadata::MetadataImage;
use spate_proto::controller::BrokerHeartbeatRequest;
use spate_tests::RawConnection;

const SESSION: Duration = Duration::from_secs(3);

struct Cluster {
    configs: Vec<NodeConfig>,
    nodes: Vec<Option<Node>>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Cluster {
    async fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters: Vec<(u64, String)> = (0..3)
            .map(|i| (i as u64 + 1, format!("127.0.0.1:{}", controller_ports[i])))
            .collect();
        let configs: Vec<NodeConfig> = (0..3)
            .map(|i| NodeConfig {
                node_id: i as i32 + 1,
                controller_addr: format!("127.0.0.1:{}", controller_ports[i])
                    .parse()
                    .unwrap(),
                kafka_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                voters: voters.clone(),
                session_timeout: SESSION,
                heartbeat_interval: Duration::from_millis(300),
                wait_ready: None,
                ..NodeConfig::ephemeral(dir.path().join(format!("node{}", i + 1)))
            })
            .collect();
        let started = futures::future::join_all(configs.iter().cloned().map(Node::start)).await;
        let nodes = started.into_iter().map(|n| Some(n.unwrap())).collect();
        let cluster = Cluster {
            configs,
            nodes,
            _dir: dir,
        };
        cluster
            .wait_image(Duration::from_secs(30), |img| {
                img.unfenced_brokers().len() == 3
            })
            .await
            .expect("three unfenced brokers");
        cluster
    }

    fn node(&self, id: i32) -> &Node {
        self.nodes[id as usize - 1].as_ref().unwrap()
    }

    fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// The active controller's node id, if a live node knows one.
    fn active_controller(&self) -> Option<i32> {
        self.live()
            .filter_map(|n| n.controller.as_ref())
            .map(|c| c.describe_quorum())
            .find(|q| q.has_leader)
            .map(|q| q.leader_id as i32)
    }

    /// Polls live controllers' images until `ready` holds on one of them.
    async fn wait_image(
        &self,
        timeout: Duration,
        ready: impl Fn(&MetadataImage) -> bool,
    ) -> Option<MetadataImage> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            for n in self.live() {
                if let Some(c) = &n.controller {
                    let image = c.image();
                    if ready(&image) {
                        return Some(image);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    async fn stop(&mut self, id: i32) {
        if let Some(node) = self.nodes[id as usize - 1].take() {
            node.shutdown().await;
        }
    }

    async fn restart(&mut self, id: i32) {
        let node = Node::start(self.configs[id as usize - 1].clone())
            .await
            .unwrap();
        self.nodes[id as usize - 1] = Some(node);
    }

    async fn shutdown(mut self) {
        for id in 1..=3 {
            self.stop(id).await;
        }
    }
}

async fn create_topic(node: &Node, name: &str, partitions: i32, rf: i16) -> i16 {
    let mut conn = RawConnection::connect(node.kafka_addr.unwrap())
        .await
        .unwrap();
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)]);
    let resp: CreateTopicsResponse = conn.request(ApiKey::CreateTopics, 7, &req).await.unwrap();
    resp.topics[0].error_code
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
    let addrs: Vec<String> = cluster
        .configs
        .iter()
        .map(|c| c.controller_addr.to_string())
        .collect();
    let mut client = spate_controller::ControllerClient::connect(addrs).unwrap();
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
        roles: spate_broker::node::Roles {
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
        roles: spate_broker::node::Roles {
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
