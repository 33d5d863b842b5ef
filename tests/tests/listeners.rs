//! Named Kafka listeners: a client is given the endpoints of the listener it connected
//! to (the internal/external split of brokers in containers).
use std::time::Duration;

use spate::node::{ExtraListener, Node, NodeConfig};

async fn brokers_seen_through(addr: std::net::SocketAddr) -> Vec<(i32, String, i32)> {
    let mut config = spate_client::ClientConfig::new(addr.to_string());
    config.client_id = "listeners-test".to_string();
    let cluster = spate_client::Cluster::connect(config).await.unwrap();
    let seen = cluster
        .metadata()
        .brokers
        .values()
        .map(|b| (b.id.0, b.host.clone(), b.port))
        .collect();
    cluster.close();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_advertises_its_own_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = NodeConfig::ephemeral(dir.path());
    config.node_id = 7;
    config.listener_name = "INTERNAL".to_string();
    config.advertised_host = Some("127.0.0.1".to_string());
    config.extra_listeners = vec![ExtraListener {
        name: "EXTERNAL".to_string(),
        addr: "127.0.0.1:0".parse().unwrap(),
        advertised_host: Some("kafka.example.com".to_string()),
        advertised_port: Some(29092),
    }];
    config.wait_ready = Some(Duration::from_secs(30));
    let node = Node::start(config).await.unwrap();
    let names: Vec<&str> = node.kafka_addrs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["INTERNAL", "EXTERNAL"]);
    let internal = node.kafka_addrs[0].1;
    let external = node.kafka_addrs[1].1;

    assert_eq!(
        brokers_seen_through(internal).await,
        [(7, "127.0.0.1".to_string(), i32::from(internal.port()))]
    );
    assert_eq!(
        brokers_seen_through(external).await,
        [(7, "kafka.example.com".to_string(), 29092)]
    );
    // The registration carries both, plus replication on the inter-broker host.
    let state = node.broker.as_ref().unwrap().state().clone();
    let image = state.metadata.image();
    let registered: Vec<String> = image
        .broker(spate_metadata::ids::NodeId(7))
        .unwrap()
        .endpoints
        .iter()
        .map(|e| format!("{}={}", e.listener, e.host))
        .collect();
    assert_eq!(
        registered,
        [
            "INTERNAL=127.0.0.1",
            "EXTERNAL=kafka.example.com",
            "REPLICATION=127.0.0.1"
        ]
    );
    node.shutdown().await;
}
