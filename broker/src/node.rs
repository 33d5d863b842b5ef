//! A combined node: a controller quorum member and a broker in one process, the broker
//! reaching the controller over loopback gRPC like any remote broker would. `spate dev`
//! and the in-process test clusters start nodes through here.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use spate_controller::node::{self as controller, ControllerConfig, ControllerHandle};
use tokio::net::TcpListener;

use crate::{Broker, BrokerConfig};

/// What a single combined node needs.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id (controller and broker share it).
    pub node_id: i32,
    /// Data directory (controller state and partition logs).
    pub data_dir: PathBuf,
    /// Kafka listener address (port 0: any free port).
    pub kafka_addr: SocketAddr,
    /// Controller gRPC address (port 0: any free port).
    pub controller_addr: SocketAddr,
    /// Host advertised to clients (default: the Kafka listener's IP).
    pub advertised_host: Option<String>,
    /// Default partition count for new topics.
    pub num_partitions: i32,
    /// Auto-create topics on Metadata.
    pub auto_create_topics: bool,
}

impl NodeConfig {
    /// A node on 127.0.0.1 with free ports, storing data in `data_dir`.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            node_id: 1,
            data_dir: data_dir.into(),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            controller_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            advertised_host: None,
            num_partitions: 1,
            auto_create_topics: true,
        }
    }
}

/// A running combined node.
pub struct Node {
    /// The broker.
    pub broker: Broker,
    /// The controller.
    pub controller: ControllerHandle,
    /// Bound Kafka address.
    pub kafka_addr: SocketAddr,
    /// Bound controller address.
    pub controller_addr: SocketAddr,
}

impl Node {
    /// Starts controller then broker, and waits until the broker is registered and unfenced.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        if config.num_partitions < 1 {
            bail!(
                "num.partitions must be at least 1, got {}",
                config.num_partitions
            );
        }
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let cluster_id = meta_properties(&config.data_dir, config.node_id)?;
        let controller_listener = TcpListener::bind(config.controller_addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on controller address {} (is another spate running?)",
                    config.controller_addr
                )
            })?;
        let controller_addr = controller_listener.local_addr()?;
        let controller_config = ControllerConfig {
            node_id: config.node_id as u64,
            data_dir: config.data_dir.clone(),
            voters: vec![(config.node_id as u64, controller_addr.to_string())],
            default_num_partitions: config.num_partitions,
            default_replication_factor: 1,
            ..ControllerConfig::default()
        };
        let controller = controller::start(controller_config, controller_listener)
            .await
            .context("cannot start the controller")?;
        controller
            .wait_for_leader(Duration::from_secs(30))
            .await
            .context("the controller quorum elected no leader within 30 s")?;
        let kafka_listener = TcpListener::bind(config.kafka_addr)
            .await
            .with_context(|| format!("cannot listen on Kafka address {}", config.kafka_addr))?;
        let kafka_addr = kafka_listener.local_addr()?;
        let mut broker_config = BrokerConfig::new(config.node_id, &config.data_dir);
        broker_config.advertised_host = config
            .advertised_host
            .unwrap_or_else(|| kafka_addr.ip().to_string());
        broker_config.controller_addrs = vec![controller_addr.to_string()];
        broker_config.cluster_id = cluster_id;
        broker_config.auto_create_topics = config.auto_create_topics;
        broker_config.num_partitions = config.num_partitions;
        broker_config.default_replication_factor = 1;
        let broker = Broker::start(broker_config, kafka_listener)
            .await
            .context("cannot start the broker")?;
        if !broker.wait_ready(Duration::from_secs(30)).await {
            bail!("broker did not become ready within 30 s (registered and unfenced with the controller)");
        }
        Ok(Node {
            broker,
            controller,
            kafka_addr,
            controller_addr,
        })
    }

    /// Clean shutdown: broker first (flushes logs), then controller.
    pub async fn shutdown(self) {
        self.broker.shutdown().await;
        if let Err(e) = self.controller.shutdown().await {
            tracing::warn!(error = %e, "controller did not shut down cleanly");
        }
    }
}

/// Reads or creates `meta.properties` (cluster id and node id, as Kafka keeps them), so a
/// data dir is never silently reused by another node.
pub fn meta_properties(dir: &Path, node_id: i32) -> anyhow::Result<String> {
    let path = dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
                .map(|v| v.trim().to_string())
        };
        let stored_node =
            get("node.id").with_context(|| format!("{} has no node.id", path.display()))?;
        if stored_node != node_id.to_string() {
            bail!(
                "{} belongs to node {stored_node}, not node {node_id}",
                path.display()
            );
        }
        return get("cluster.id").with_context(|| format!("{} has no cluster.id", path.display()));
    }
    let cluster_id = random_cluster_id();
    let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    let tmp = dir.join("meta.properties.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(cluster_id)
}

/// A random cluster id in Kafka's style (22 URL-safe characters).
fn random_cluster_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
