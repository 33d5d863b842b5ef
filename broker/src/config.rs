//! Broker settings: what `spate dev` and `spate server` hand to [`crate::Broker::start`].
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use spate_log::{LocalFs, LogDir, Storage};

/// Default largest request frame accepted (Kafka's `socket.request.max.bytes`).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 100 * 1024 * 1024;

/// Kafka's default `fetch.max.bytes` (55 MiB).
pub const DEFAULT_FETCH_MAX_BYTES: usize = 55 * 1024 * 1024;

/// Kafka's default `replica.fetch.response.max.bytes` (10 MiB).
pub const DEFAULT_REPLICA_FETCH_RESPONSE_MAX_BYTES: usize = 10 * 1024 * 1024;

/// The listener name of a single-listener broker (Kafka's default name).
pub const DEFAULT_LISTENER_NAME: &str = "PLAINTEXT";

/// Kafka's default `log.retention.check.interval.ms`: 5 minutes.
pub const DEFAULT_LOG_RETENTION_CHECK_INTERVAL: Duration = Duration::from_secs(300);

/// One named Kafka listener as clients are told to reach it. A client is given the
/// brokers' endpoints of the listener it connected to (Kafka's internal/external listener
/// split: containers get container host names, the host gets published ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    /// Listener name (`PLAINTEXT`, `INTERNAL`, `EXTERNAL`, ...); every listener speaks
    /// plaintext Kafka.
    pub name: String,
    /// Host advertised for this listener.
    pub advertised_host: String,
    /// Port advertised for this listener; 0 means "the port the listener bound".
    pub advertised_port: u16,
}

impl ListenerSpec {
    /// The `PLAINTEXT` listener advertised as `host:port`.
    pub fn plaintext(host: &str, port: u16) -> Self {
        ListenerSpec {
            name: DEFAULT_LISTENER_NAME.to_string(),
            advertised_host: host.to_string(),
            advertised_port: port,
        }
    }
}

/// Everything a broker needs to know at start-up: the node's identity, and one section
/// per subsystem, each handed to the subsystem it configures.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// This broker's node id (Kafka's `node.id`).
    pub node_id: i32,
    /// Root of this node's data: partition logs live under `logs/`.
    pub data_dir: PathBuf,
    /// The filesystem `data_dir` is on: the real one, or a simulated one that can lose
    /// power or fail writes in tests (`spate_log::storage`).
    pub storage: Arc<dyn Storage>,
    /// Rack, for rack-aware placement.
    pub rack: Option<String>,
    /// Cluster id reported in Metadata and DescribeCluster.
    pub cluster_id: String,
    /// The Kafka front end.
    pub network: NetworkConfig,
    /// The link to the controller quorum.
    pub controller: ControllerLinkConfig,
    /// Replication between brokers.
    pub replication: ReplicationConfig,
    /// Defaults for topics this broker creates or reports.
    pub topics: TopicDefaults,
    /// The classic group coordinator's limits and delays.
    pub groups: GroupConfig,
    /// How often interval flushes and checkpoints run.
    pub log_maintenance_interval: Duration,
    /// `log.retention.check.interval.ms`: how often retention runs (Kafka's default,
    /// 5 minutes).
    pub log_retention_check_interval: Duration,
    /// The log cleaner (compacted topics).
    pub log_cleaner: LogCleanerConfig,
}

/// The log cleaner's broker settings (Kafka's `log.cleaner.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCleanerConfig {
    /// `log.cleaner.enable`.
    pub enabled: bool,
    /// `log.cleaner.threads`: passes that may run at once.
    pub threads: usize,
    /// `log.cleaner.dedupe.buffer.size`: key-map bytes, shared by the threads.
    pub dedupe_buffer_bytes: usize,
    /// `log.cleaner.backoff.ms`: the pause between looks for a log to clean.
    pub backoff: Duration,
    /// `log.cleaner.io.max.bytes.per.second`, per thread (None: unthrottled).
    pub io_max_bytes_per_second: Option<u64>,
}

impl Default for LogCleanerConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        LogCleanerConfig {
            enabled: true,
            threads: 1,
            dedupe_buffer_bytes: 128 << 20,
            backoff: Duration::from_secs(15),
            io_max_bytes_per_second: None,
        }
    }
}

/// The Kafka front end: listeners and request limits.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Kafka listeners, in the order of the bound sockets handed to
    /// [`crate::Broker::start`]. The first is the inter-broker listener: its advertised host
    /// is also where peers reach this broker's replication port.
    pub listeners: Vec<ListenerSpec>,
    /// Largest request frame accepted; larger ones close the connection before allocation.
    pub max_request_bytes: usize,
    /// `fetch.max.bytes`: the most a consumer fetch response carries, whatever the
    /// client asks (the first batch found still comes whole, KIP-74).
    pub fetch_max_bytes: usize,
    /// How many incremental fetch sessions (KIP-227) are cached.
    pub fetch_session_slots: usize,
    /// Connection and memory limits of the Kafka listeners.
    pub limits: ConnectionLimits,
}

/// Default `max.connections`: Kafka's is unlimited, which lets one runaway client exhaust
/// the broker's file descriptors.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Default `max.connections.per.ip`.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1_000;

/// Default `connections.max.idle.ms` (Kafka's: 10 minutes).
pub const DEFAULT_CONNECTIONS_MAX_IDLE: Duration = Duration::from_secs(600);

/// Default `queued.max.request.bytes`: Kafka's is unlimited; this holds two or more
/// requests of the largest size (`socket.request.max.bytes`, 100 MiB).
pub const DEFAULT_QUEUED_MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

/// Default `fetch.memory.max.bytes`.
pub const DEFAULT_FETCH_MEMORY_MAX_BYTES: usize = 256 * 1024 * 1024;

/// Connection and memory limits of the Kafka listeners (`crate::limits`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// `max.connections`: connections open at once, over all listeners.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections open at once from one client address.
    pub max_connections_per_ip: usize,
    /// `connections.max.idle.ms`: a connection with no complete request and no response
    /// owed for this long is closed.
    pub idle_timeout: Duration,
    /// `queued.max.request.bytes`: request bytes in flight broker-wide before reading
    /// stops (None: unlimited, Kafka's -1).
    pub queued_max_request_bytes: Option<usize>,
    /// `fetch.memory.max.bytes` (Spate's): consumer fetch response bytes being read or
    /// waiting to be written, broker-wide; beyond it fetches get smaller responses.
    pub fetch_memory_max_bytes: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            idle_timeout: DEFAULT_CONNECTIONS_MAX_IDLE,
            queued_max_request_bytes: Some(DEFAULT_QUEUED_MAX_REQUEST_BYTES),
            fetch_memory_max_bytes: DEFAULT_FETCH_MEMORY_MAX_BYTES,
        }
    }
}

/// The link to the controller quorum.
#[derive(Debug, Clone)]
pub struct ControllerLinkConfig {
    /// Controller addresses (`host:port`), tried in order.
    pub addrs: Vec<String>,
    /// Broker heartbeat interval towards the controller.
    pub heartbeat_interval: Duration,
    /// `broker.session.timeout.ms`: the controller fences a broker silent this long, so a
    /// broker that has not reached it for this long reports itself not ready.
    pub session_timeout: Duration,
}

/// Replication between brokers.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// `replica.lag.time.max.ms`: a follower that has not reached the leader's LEO for
    /// this long leaves the ISR.
    pub lag_time_max: Duration,
    /// `replica.fetch.wait.max.ms`: how long a follower fetch parks at the leader.
    pub fetch_max_wait: Duration,
    /// `replica.fetch.response.max.bytes`: the most a leader's answer to one follower
    /// fetch carries (the first batch still comes whole).
    pub fetch_response_max_bytes: usize,
    /// Port advertised to other brokers for replication; 0 means the bound port.
    pub advertised_port: u16,
    /// Host advertised to other brokers for replication; `None` means the first
    /// listener's advertised host.
    pub advertised_host: Option<String>,
}

/// Defaults for topics this broker creates or reports.
#[derive(Debug, Clone)]
pub struct TopicDefaults {
    /// Create unknown topics on Metadata requests that allow it.
    pub auto_create: bool,
    /// `num.partitions`: partitions of topics created without a count (applied by the
    /// controller; reported here).
    pub num_partitions: i32,
    /// `default.replication.factor`: likewise.
    pub default_replication_factor: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when created.
    pub offsets_topic_partitions: i32,
    /// Topic configs' broker-wide defaults (`log.cleanup.policy`, `log.retention.ms`, ...)
    /// for topics without their own value.
    pub configs: spate_metadata::topic_defaults::TopicDefaults,
}

impl BrokerConfig {
    /// Defaults for a broker with `node_id` storing data under `data_dir`.
    pub fn new(node_id: i32, data_dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            node_id,
            data_dir: data_dir.into(),
            storage: LocalFs::shared(),
            rack: None,
            cluster_id: String::new(),
            network: NetworkConfig {
                listeners: vec![ListenerSpec::plaintext("127.0.0.1", 0)],
                max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
                fetch_max_bytes: DEFAULT_FETCH_MAX_BYTES,
                fetch_session_slots: 1000,
                limits: ConnectionLimits::default(),
            },
            controller: ControllerLinkConfig {
                addrs: Vec::new(),
                heartbeat_interval: Duration::from_millis(1000),
                session_timeout: Duration::from_secs(9),
            },
            replication: ReplicationConfig {
                lag_time_max: Duration::from_secs(10),
                fetch_max_wait: Duration::from_millis(500),
                fetch_response_max_bytes: DEFAULT_REPLICA_FETCH_RESPONSE_MAX_BYTES,
                advertised_port: 0,
                advertised_host: None,
            },
            topics: TopicDefaults {
                auto_create: true,
                num_partitions: 1,
                default_replication_factor: 1,
                offsets_topic_partitions: 10,
                configs: Default::default(),
            },
            groups: GroupConfig::default(),
            log_maintenance_interval: Duration::from_millis(500),
            log_retention_check_interval: DEFAULT_LOG_RETENTION_CHECK_INTERVAL,
            log_cleaner: LogCleanerConfig::default(),
        }
    }

    /// Directory holding all partition logs.
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }

    /// [`BrokerConfig::data_dir`] on its storage.
    pub fn data(&self) -> LogDir {
        LogDir::new(self.storage.clone(), &self.data_dir)
    }

    /// [`BrokerConfig::log_dir`] on its storage.
    pub fn logs(&self) -> LogDir {
        LogDir::new(self.storage.clone(), self.log_dir())
    }
}

/// Limits and delays that apply to every classic group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: smallest session timeout a member may ask for.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: largest session timeout a member may ask for.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long an Empty group waits for more members
    /// before completing its first join.
    pub initial_rebalance_delay_ms: i64,
    /// `group.max.size`: most members a group accepts.
    pub max_size: usize,
    /// How long a new member may wait for its first join response before it is dropped
    /// (Kafka's fixed `NewMemberJoinTimeoutMs`); new members cannot heartbeat yet.
    pub new_member_join_timeout_ms: i64,
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
        }
    }
}
