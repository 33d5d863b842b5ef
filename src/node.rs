//! A combined node: a controller quorum member and a broker in one process, the broker
//! reaching the controller over loopback gRPC like any remote broker would. `spate dev`
//! and the in-process test clusters start nodes through here.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use spate_controller::node::{self as controller, ControllerConfig, ControllerHandle};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use spate_broker::storage::{LocalFs, Storage};
use spate_broker::{Broker, BrokerConfig};

/// Which parts of Spate a node runs (Kafka's `process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Member of the controller quorum.
    pub controller: bool,
    /// Serves Kafka clients and hosts partitions.
    pub broker: bool,
}

impl Roles {
    /// Both roles ("combined"), as `spate dev` and small clusters run.
    pub const COMBINED: Roles = Roles {
        controller: true,
        broker: true,
    };
}

/// What a node needs. Start from [`NodeConfig::ephemeral`] and override fields.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Node id (controller and broker share it).
    pub node_id: i32,
    /// Data directory (controller state and partition logs).
    pub data_dir: PathBuf,
    /// The filesystem the broker's data (partition logs, its metadata image) is on: the
    /// real one unless a test puts it on a simulated one. The controller's Raft state is
    /// always on the real filesystem.
    pub storage: Arc<dyn Storage>,
    /// Kafka listener address (port 0: any free port): the inter-broker listener, named
    /// [`NodeConfig::listener_name`].
    pub kafka_addr: SocketAddr,
    /// Name of the listener at `kafka_addr` (`PLAINTEXT` unless set).
    pub listener_name: String,
    /// More named Kafka listeners (for example an `EXTERNAL` one for clients outside a
    /// container network), each with its own advertised address.
    pub extra_listeners: Vec<ExtraListener>,
    /// Controller gRPC address (port 0: any free port).
    pub controller_addr: SocketAddr,
    /// Replication gRPC address other brokers fetch from (port 0: any free port).
    pub replication_addr: SocketAddr,
    /// HTTP admin address (`admin.listener`; port 0: any free port; `None`: no admin
    /// server).
    pub admin_addr: Option<SocketAddr>,
    /// `replica.lag.time.max.ms`: how long a follower may lag before leaving the ISR.
    pub replica_lag_time_max: Duration,
    /// Controller: how often leadership moves back to preferred replicas.
    pub leader_imbalance_check_interval: Duration,
    /// Broker: `log.retention.check.interval.ms`.
    pub log_retention_check_interval: Duration,
    /// Broker: the log cleaner's settings (`log.cleaner.*`).
    pub log_cleaner: spate_broker::config::LogCleanerConfig,
    /// Broker: topic configs' broker-wide defaults (`log.cleanup.policy`, ...).
    pub topic_defaults: spate_metadata::topic_defaults::TopicDefaults,
    /// Broker: the group coordinator's limits and initial rebalance delay.
    pub groups: spate_broker::config::GroupConfig,
    /// `cluster.id`: the id a new data directory is formatted with (default: derived from
    /// the voters of a multi-voter quorum, random for a single node); an existing data
    /// directory with another id is refused.
    pub cluster_id: Option<String>,
    /// Where peers reach the replication service (host, port); default: the first
    /// listener's advertised host and the bound replication port.
    pub replication_advertised: Option<(String, u16)>,
    /// Partitions of `__consumer_offsets` when a broker creates it.
    pub offsets_topic_partitions: i32,
    /// Host advertised to clients (default: the Kafka listener's IP).
    pub advertised_host: Option<String>,
    /// Port advertised to clients (default: the bound Kafka port).
    pub advertised_port: Option<u16>,
    /// Default partition count for new topics.
    pub num_partitions: i32,
    /// Default replication factor for new topics.
    pub default_replication_factor: i32,
    /// Auto-create topics on Metadata.
    pub auto_create_topics: bool,
    /// Roles this node runs.
    pub roles: Roles,
    /// The controller quorum as (node id, "host:port"); empty means this node alone. The
    /// local entry may be empty or use port 0: the bound controller address is used.
    pub voters: Vec<(u64, String)>,
    /// Rack of this broker.
    pub rack: Option<String>,
    /// Controller: fence a broker after this long without a heartbeat.
    pub session_timeout: Duration,
    /// Broker: heartbeat interval.
    pub heartbeat_interval: Duration,
    /// Largest request frame.
    pub max_request_bytes: usize,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: usize,
    /// `replica.fetch.response.max.bytes`.
    pub replica_fetch_response_max_bytes: usize,
    /// Connection and memory limits of the Kafka listeners.
    pub connection_limits: spate_broker::config::ConnectionLimits,
    /// How long [`Node::start`] waits for the broker to be registered and unfenced
    /// (`None`: do not wait, e.g. while the rest of a cluster is still starting).
    pub wait_ready: Option<Duration>,
}

impl NodeConfig {
    /// A combined node on 127.0.0.1 with free ports, storing data in `data_dir`.
    pub fn ephemeral(data_dir: impl Into<PathBuf>) -> Self {
        NodeConfig {
            node_id: 1,
            data_dir: data_dir.into(),
            storage: LocalFs::shared(),
            kafka_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            listener_name: spate_broker::config::DEFAULT_LISTENER_NAME.to_string(),
            extra_listeners: Vec::new(),
            controller_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            replication_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_addr: None,
            replica_lag_time_max: Duration::from_secs(10),
            offsets_topic_partitions: 10,
            cluster_id: None,
            replication_advertised: None,
            leader_imbalance_check_interval: Duration::from_secs(300),
            log_retention_check_interval:
                spate_broker::config::DEFAULT_LOG_RETENTION_CHECK_INTERVAL,
            log_cleaner: Default::default(),
            topic_defaults: Default::default(),
            groups: Default::default(),
            advertised_host: None,
            advertised_port: None,
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            roles: Roles::COMBINED,
            voters: Vec::new(),
            rack: None,
            session_timeout: Duration::from_secs(9),
            heartbeat_interval: Duration::from_secs(1),
            max_request_bytes: spate_broker::config::DEFAULT_MAX_REQUEST_BYTES,
            fetch_max_bytes: spate_broker::config::DEFAULT_FETCH_MAX_BYTES,
            replica_fetch_response_max_bytes:
                spate_broker::config::DEFAULT_REPLICA_FETCH_RESPONSE_MAX_BYTES,
            connection_limits: Default::default(),
            wait_ready: Some(Duration::from_secs(30)),
        }
    }
}

/// A Kafka listener besides the first one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraListener {
    /// Listener name; clients connecting here get this listener's endpoints.
    pub name: String,
    /// Bind address (port 0: any free port).
    pub addr: SocketAddr,
    /// Advertised host (default: the bound IP).
    pub advertised_host: Option<String>,
    /// Advertised port (default: the bound port).
    pub advertised_port: Option<u16>,
}

/// A running node.
pub struct Node {
    /// The broker, when this node has the broker role.
    pub broker: Option<Broker>,
    /// The controller, when this node has the controller role (shared with the admin
    /// server).
    pub controller: Option<Arc<ControllerHandle>>,
    /// Bound Kafka address of the first listener (broker role).
    pub kafka_addr: Option<SocketAddr>,
    /// Every bound Kafka listener by name, first listener first (broker role).
    pub kafka_addrs: Vec<(String, SocketAddr)>,
    /// Bound controller address (controller role).
    pub controller_addr: Option<SocketAddr>,
    /// Bound HTTP admin address, when [`NodeConfig::admin_addr`] is set.
    pub admin_addr: Option<SocketAddr>,
    admin: Option<AdminServer>,
}

/// The running admin HTTP server and its stop signal.
struct AdminServer {
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Node {
    /// Starts the controller (if that role is set) and then the broker (if set); with
    /// `wait_ready`, waits until the broker is registered and unfenced.
    pub async fn start(config: NodeConfig) -> anyhow::Result<Node> {
        if config.num_partitions < 1 {
            bail!(
                "num.partitions must be at least 1, got {}",
                config.num_partitions
            );
        }
        if !config.roles.controller && !config.roles.broker {
            bail!("process.roles is empty: a node must be a controller, a broker or both");
        }
        // Bound first, so a taken port fails before anything else starts.
        let admin_listener = match config.admin_addr {
            Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
                format!("cannot listen on admin address {addr} (admin.listener)")
            })?),
            None => None,
        };
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let wanted_cluster_id = config
            .cluster_id
            .clone()
            .or_else(|| (config.voters.len() > 1).then(|| cluster_id_of_voters(&config.voters)));
        let cluster_id = meta_properties(
            &config.data_dir,
            config.node_id,
            wanted_cluster_id.as_deref(),
            config.cluster_id.is_some(),
        )?;

        let mut controller = None;
        let mut controller_addr = None;
        if config.roles.controller {
            let listener = TcpListener::bind(config.controller_addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on controller address {} (is another spate running?)",
                        config.controller_addr
                    )
                })?;
            let bound = listener.local_addr()?;
            let me = config.node_id as u64;
            let mut voters = config.voters.clone();
            if voters.is_empty() {
                voters.push((me, bound.to_string()));
            }
            for (id, addr) in voters.iter_mut() {
                if *id == me && (addr.is_empty() || addr.ends_with(":0")) {
                    *addr = bound.to_string();
                }
            }
            let controller_config = ControllerConfig {
                node_id: me,
                data_dir: config.data_dir.clone(),
                voters,
                session_timeout: config.session_timeout,
                heartbeat_interval: config.heartbeat_interval,
                default_num_partitions: config.num_partitions,
                default_replication_factor: config.default_replication_factor,
                leader_imbalance_check_interval: config.leader_imbalance_check_interval,
                ..ControllerConfig::default()
            };
            let handle = controller::start(controller_config, listener)
                .await
                .context("cannot start the controller")?;
            if config.voters.len() <= 1 {
                // Alone in the quorum, we elect ourselves at once: wait for it, so the broker's
                // first registration succeeds instead of backing off.
                handle
                    .wait_for_leader(Duration::from_secs(30))
                    .await
                    .context("the one-voter controller elected no leader within 30 s")?;
            }
            controller_addr = Some(bound);
            controller = Some(Arc::new(handle));
        }

        let mut broker = None;
        let mut kafka_addr = None;
        let mut kafka_addrs = Vec::new();
        if config.roles.broker {
            let kafka_listener = TcpListener::bind(config.kafka_addr)
                .await
                .with_context(|| format!("cannot listen on Kafka address {}", config.kafka_addr))?;
            let bound = kafka_listener.local_addr()?;
            let replication_listener = TcpListener::bind(config.replication_addr)
                .await
                .with_context(|| {
                    format!(
                        "cannot listen on replication address {}",
                        config.replication_addr
                    )
                })?;
            let mut broker_config = BrokerConfig::new(config.node_id, &config.data_dir);
            broker_config.log_retention_check_interval = config.log_retention_check_interval;
            broker_config.log_cleaner = config.log_cleaner.clone();
            broker_config.topics.configs = config.topic_defaults.clone();
            broker_config.groups = config.groups.clone();
            broker_config.network.listeners = vec![spate_broker::config::ListenerSpec {
                name: config.listener_name.clone(),
                advertised_host: config
                    .advertised_host
                    .clone()
                    .unwrap_or_else(|| bound.ip().to_string()),
                advertised_port: config.advertised_port.unwrap_or(0),
            }];
            kafka_addrs.push((config.listener_name.clone(), bound));
            let mut sockets = vec![kafka_listener];
            for extra in &config.extra_listeners {
                let socket = TcpListener::bind(extra.addr).await.with_context(|| {
                    format!(
                        "cannot listen on Kafka address {} (listener {})",
                        extra.addr, extra.name
                    )
                })?;
                let extra_bound = socket.local_addr()?;
                broker_config
                    .network
                    .listeners
                    .push(spate_broker::config::ListenerSpec {
                        name: extra.name.clone(),
                        advertised_host: extra
                            .advertised_host
                            .clone()
                            .unwrap_or_else(|| extra_bound.ip().to_string()),
                        advertised_port: extra.advertised_port.unwrap_or(0),
                    });
                kafka_addrs.push((extra.name.clone(), extra_bound));
                sockets.push(socket);
            }
            broker_config.controller.addrs = if config.voters.is_empty() {
                controller_addr.iter().map(|a| a.to_string()).collect()
            } else {
                config
                    .voters
                    .iter()
                    .map(|(id, addr)| match controller_addr {
                        Some(local)
                            if *id == config.node_id as u64
                                && (addr.is_empty() || addr.ends_with(":0")) =>
                        {
                            local.to_string()
                        }
                        _ => addr.clone(),
                    })
                    .collect()
            };
            if broker_config.controller.addrs.is_empty() {
                bail!("controller.quorum.voters is empty: a broker needs controllers to register with");
            }
            broker_config.cluster_id = cluster_id;
            broker_config.storage = config.storage.clone();
            broker_config.topics.auto_create = config.auto_create_topics;
            broker_config.topics.num_partitions = config.num_partitions;
            broker_config.topics.default_replication_factor = config.default_replication_factor;
            broker_config.rack = config.rack.clone();
            broker_config.controller.heartbeat_interval = config.heartbeat_interval;
            broker_config.controller.session_timeout = config.session_timeout;
            broker_config.network.max_request_bytes = config.max_request_bytes;
            broker_config.network.fetch_max_bytes = config.fetch_max_bytes;
            broker_config.network.limits = config.connection_limits.clone();
            broker_config.replication.fetch_response_max_bytes =
                config.replica_fetch_response_max_bytes;
            broker_config.replication.lag_time_max = config.replica_lag_time_max;
            broker_config.topics.offsets_topic_partitions = config.offsets_topic_partitions;
            if let Some((host, port)) = &config.replication_advertised {
                broker_config.replication.advertised_host = Some(host.clone());
                broker_config.replication.advertised_port = *port;
            }
            let started = Broker::start(broker_config, sockets, replication_listener)
                .await
                .context("cannot start the broker")?;
            if let Some(timeout) = config.wait_ready {
                if !started.wait_ready(timeout).await {
                    bail!(
                        "broker did not become ready within {} s (registered and unfenced with the controller)",
                        timeout.as_secs()
                    );
                }
            }
            kafka_addr = Some(bound);
            broker = Some(started);
        }
        let mut admin_addr = None;
        let mut admin = None;
        if let Some(listener) = admin_listener {
            admin_addr = Some(listener.local_addr()?);
            let (shutdown, shutdown_rx) = watch::channel(false);
            let task = tokio::spawn(crate::admin_http::serve(
                listener,
                broker.as_ref().map(|b: &Broker| b.state().clone()),
                controller.clone(),
                shutdown_rx,
            ));
            let task = tokio::spawn(async move {
                match task.await {
                    Ok(Err(e)) => tracing::error!(error = %e, "admin HTTP server stopped"),
                    Err(e) => tracing::error!(error = %e, "admin HTTP server panicked"),
                    Ok(Ok(())) => {}
                }
            });
            tracing::info!(addr = ?admin_addr, "admin HTTP listening");
            admin = Some(AdminServer { shutdown, task });
        }
        Ok(Node {
            broker,
            controller,
            kafka_addr,
            kafka_addrs,
            controller_addr,
            admin_addr,
            admin,
        })
    }

    /// Controlled shutdown of the broker role (see [`spate_broker::controlled_shutdown`]): waits
    /// at most `timeout` for leadership to move away. `None` without a broker role.
    pub async fn controlled_shutdown(
        &self,
        timeout: Duration,
    ) -> Option<spate_broker::controlled_shutdown::ControlledShutdown> {
        match &self.broker {
            Some(broker) => Some(broker.controlled_shutdown(timeout).await),
            None => None,
        }
    }

    /// Clean shutdown: admin server first (it holds the broker and controller), then the
    /// broker (flushes logs), then the controller.
    pub async fn shutdown(self) {
        if let Some(admin) = self.admin {
            let _ = admin.shutdown.send(true);
            let mut task = admin.task;
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
                let _ = task.await;
            }
        }
        if let Some(broker) = self.broker {
            broker.shutdown().await;
        }
        if let Some(controller) = self.controller {
            match Arc::try_unwrap(controller) {
                Ok(controller) => {
                    if let Err(e) = controller.shutdown().await {
                        tracing::warn!(error = %e, "controller did not shut down cleanly");
                    }
                }
                Err(_) => tracing::warn!(
                    "controller handle still shared elsewhere; dropped without a clean shutdown"
                ),
            }
        }
    }
}

/// Reads or creates `meta.properties` (cluster id and node id, as Kafka keeps them), so a
/// data dir is never silently reused by another node.
///
/// A new data directory takes `wanted` (else a random id). An existing one keeps its id,
/// unless `strict` (the id was configured) and it differs: that is another cluster's data.
pub fn meta_properties(
    dir: &Path,
    node_id: i32,
    wanted: Option<&str>,
    strict: bool,
) -> anyhow::Result<String> {
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
        let stored =
            get("cluster.id").with_context(|| format!("{} has no cluster.id", path.display()))?;
        if let Some(wanted) = wanted.filter(|w| *w != stored) {
            if strict {
                bail!(
                    "{} holds cluster.id {stored}, but cluster.id {wanted} is configured: this data belongs to another cluster",
                    path.display()
                );
            }
            tracing::warn!(stored = %stored, derived = %wanted, "keeping the cluster id this data directory was created with");
        }
        return Ok(stored);
    }
    let cluster_id = wanted.map_or_else(random_cluster_id, str::to_string);
    let text = format!("version=1\ncluster.id={cluster_id}\nnode.id={node_id}\n");
    let tmp = dir.join("meta.properties.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(cluster_id)
}

/// The cluster id every node of a quorum derives alike when none is configured: 22
/// URL-safe characters from checksums of the sorted voter list, so the brokers of one
/// cluster report one id (clients refuse to mix clusters) without a formatting step.
pub fn cluster_id_of_voters(voters: &[(u64, String)]) -> String {
    let mut sorted: Vec<String> = voters.iter().map(|(id, a)| format!("{id}@{a}")).collect();
    sorted.sort();
    let text = sorted.join(",");
    let bits: Vec<u32> = (0u8..4)
        .map(|salt| crc32c::crc32c_append(crc32c::crc32c(&[salt]), text.as_bytes()))
        .collect();
    let wide = bits
        .iter()
        .fold(0u128, |acc, b| (acc << 32) | u128::from(*b));
    spate_metadata::ids::url_safe_id(wide)
}

/// A random cluster id in Kafka's style (22 URL-safe characters).
fn random_cluster_id() -> String {
    spate_metadata::ids::url_safe_id(rand::random())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_in_any_order_derive_one_cluster_id() {
        let a = vec![(1, "a:9093".to_string()), (2, "b:9093".to_string())];
        let b = vec![(2, "b:9093".to_string()), (1, "a:9093".to_string())];
        let id = cluster_id_of_voters(&a);
        assert_eq!(id.len(), 22);
        assert_eq!(id, cluster_id_of_voters(&b));
        assert_ne!(id, cluster_id_of_voters(&a[..1]));
    }

    #[test]
    fn meta_properties_keeps_its_id_and_refuses_another_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let id = meta_properties(dir.path(), 3, Some("derived-id"), false).unwrap();
        assert_eq!(id, "derived-id");
        // A later start keeps the stored id whatever is derived now...
        assert_eq!(
            meta_properties(dir.path(), 3, Some("other"), false).unwrap(),
            id
        );
        assert_eq!(meta_properties(dir.path(), 3, None, false).unwrap(), id);
        // ...but a configured id that differs means someone else's data.
        let e = meta_properties(dir.path(), 3, Some("other"), true).unwrap_err();
        assert!(e.to_string().contains("belongs to another cluster"), "{e}");
        let e = meta_properties(dir.path(), 4, None, false).unwrap_err();
        assert!(e.to_string().contains("belongs to node 3"), "{e}");
        let fresh = tempfile::tempdir().unwrap();
        assert_eq!(
            meta_properties(fresh.path(), 1, None, false).unwrap().len(),
            22
        );
    }
}
