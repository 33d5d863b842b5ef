//! Server configuration for `spate server`: a TOML file, overridden by `SPATE_*`
//! environment variables, overridden by command-line flags (flag > env > file > default).
//!
//! Keys carry Kafka's names where Kafka has one (`node.id`, `listeners`, ...); the full
//! list, with defaults and meaning, is in `docs/configuration.md`. Everything after reading
//! the file is one pure function, [`resolve`], so every rule is tested without I/O.
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use spate_metadata::ids::NodeId;
use spate_metadata::topic_defaults::{self, TopicDefaults};

/// A key's default: a value parsed like any other, or none (required, optional or derived).
#[derive(Clone, Copy)]
enum KeyDefault {
    Value(&'static str),
    Required,
    None,
}

/// Every key `spate server` knows, in documentation order.
const KEYS: &[(&str, KeyDefault)] = &[
    ("node.id", KeyDefault::Required),
    ("process.roles", KeyDefault::Value("broker,controller")),
    ("listeners", KeyDefault::Value("PLAINTEXT://127.0.0.1:9092")),
    ("advertised.listeners", KeyDefault::None),
    ("inter.broker.listener.name", KeyDefault::None),
    ("controller.listener", KeyDefault::Value("127.0.0.1:9093")),
    ("controller.quorum.voters", KeyDefault::Required),
    ("log.dirs", KeyDefault::Value("./spate-data")),
    ("broker.rack", KeyDefault::None),
    ("num.partitions", KeyDefault::Value("1")),
    ("default.replication.factor", KeyDefault::Value("1")),
    ("auto.create.topics.enable", KeyDefault::Value("true")),
    ("broker.session.timeout.ms", KeyDefault::Value("9000")),
    ("broker.heartbeat.interval.ms", KeyDefault::Value("1000")),
    ("socket.request.max.bytes", KeyDefault::Value("104857600")),
    ("fetch.max.bytes", KeyDefault::Value("57671680")),
    (
        "replica.fetch.response.max.bytes",
        KeyDefault::Value("10485760"),
    ),
    ("max.connections", KeyDefault::Value("10000")),
    ("max.connections.per.ip", KeyDefault::Value("1000")),
    ("connections.max.idle.ms", KeyDefault::Value("600000")),
    ("queued.max.request.bytes", KeyDefault::Value("268435456")),
    ("fetch.memory.max.bytes", KeyDefault::Value("268435456")),
    ("admin.listener", KeyDefault::Value("127.0.0.1:9095")),
    ("replication.listener", KeyDefault::Value("127.0.0.1:9094")),
    ("replica.lag.time.max.ms", KeyDefault::Value("10000")),
    ("offsets.topic.num.partitions", KeyDefault::Value("10")),
    ("controlled.shutdown.timeout.ms", KeyDefault::Value("30000")),
    (
        "leader.imbalance.check.interval.seconds",
        KeyDefault::Value("300"),
    ),
    (
        "log.retention.check.interval.ms",
        KeyDefault::Value("300000"),
    ),
    ("log.cleaner.enable", KeyDefault::Value("true")),
    ("log.cleaner.threads", KeyDefault::Value("1")),
    (
        "log.cleaner.dedupe.buffer.size",
        KeyDefault::Value("134217728"),
    ),
    ("log.cleaner.backoff.ms", KeyDefault::Value("15000")),
    (
        "log.cleaner.io.max.bytes.per.second",
        KeyDefault::Value("-1"),
    ),
    (
        "group.initial.rebalance.delay.ms",
        KeyDefault::Value("3000"),
    ),
    ("group.min.session.timeout.ms", KeyDefault::Value("6000")),
    ("group.max.session.timeout.ms", KeyDefault::Value("1800000")),
    ("cluster.id", KeyDefault::None),
    ("replication.advertised.listener", KeyDefault::None),
    ("outbound.source.ip", KeyDefault::None),
];

/// Other names for a key: `data.dir` is Spate's (and `spate dev`'s) name for `log.dirs`.
const ALIASES: &[(&str, &str)] = &[("data.dir", "log.dirs")];

/// The key a name stands for, if it is a key, an alias of one, or the broker-level name
/// of a topic config's default (`log.cleanup.policy`, ...).
fn canonical(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|(k, _)| *k)
        .find(|k| *k == name)
        .or_else(|| ALIASES.iter().find(|(a, _)| *a == name).map(|(_, k)| *k))
        .or_else(|| topic_defaults::broker_names().find(|k| *k == name))
}

/// Every accepted name: keys, aliases and topic-config defaults.
fn all_names() -> impl Iterator<Item = &'static str> {
    KEYS.iter()
        .map(|(k, _)| *k)
        .chain(ALIASES.iter().map(|(a, _)| *a))
        .chain(topic_defaults::broker_names())
}

/// The environment variable for a key: `node.id` -> `SPATE_NODE_ID`.
pub fn env_var(key: &str) -> String {
    format!("SPATE_{}", key.to_ascii_uppercase().replace('.', "_"))
}

/// The command-line flag for a key: `node.id` -> `--node-id`.
pub fn flag(key: &str) -> String {
    format!("--{}", key.replace('.', "-"))
}

/// Where a value came from; shown in the start-up log and in error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// Computed from other keys (`advertised.listeners` from `listeners`).
    Derived,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl Source {
    /// " (from X)" for values a user set, nothing for defaults.
    fn note(&self) -> String {
        match self {
            Source::Default | Source::Derived => String::new(),
            other => format!(" (from {other})"),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::Derived => f.write_str("derived"),
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Env(v) | Source::Flag(v) => f.write_str(v),
        }
    }
}

/// Why a configuration was refused; each message names the key, the value and what is
/// expected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {error}", .path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{}: not valid TOML: {message}", .path.display())]
    Syntax { path: PathBuf, message: String },
    /// A key in the file that Spate does not know (a typo must not pass unnoticed).
    #[error("{}: unknown key '{key}'{hint}", .path.display())]
    UnknownKey {
        path: PathBuf,
        key: String,
        hint: String,
    },
    /// A required key has no value anywhere.
    #[error(
        "{key} is required: set it in the config file, as {} or with {}",
        env_var(key),
        flag(key)
    )]
    Missing { key: &'static str },
    /// A value that does not parse or is out of range.
    #[error("{key}: '{value}' {problem}{}", .origin.note())]
    Invalid {
        key: &'static str,
        value: String,
        problem: String,
        origin: Source,
    },
    /// Values that contradict each other.
    #[error("{key}: {message}")]
    Conflict { key: &'static str, message: String },
    /// A topic config's broker-wide default that is refused (the message names the key).
    #[error("{message}{}", .origin.note())]
    TopicDefault { message: String, origin: Source },
}

/// The roles a node plays (`process.roles`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// Serves Kafka clients and hosts partitions.
    pub broker: bool,
    /// Is a voter of the controller quorum.
    pub controller: bool,
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [(self.broker, "broker"), (self.controller, "controller")]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
            .collect();
        f.write_str(&names.join(","))
    }
}

/// A host name or IP and a port, as advertised to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// One named Kafka listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaListener {
    /// Listener name, upper case (`PLAINTEXT` when a listener is given without one).
    pub name: String,
    /// Bind address.
    pub bind: SocketAddr,
    /// Address clients connecting to this listener are given for every broker.
    pub advertised: HostPort,
}

/// A member of the controller quorum (`ID@HOST:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    /// The voter's node id.
    pub id: NodeId,
    /// Its controller listener, as other nodes reach it.
    pub addr: HostPort,
}

impl fmt::Display for Voter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.id.0, self.addr)
    }
}

/// A validated server configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `node.id`.
    pub node_id: NodeId,
    /// `node.id = 'hostname'`: the node id was taken from the host name's ordinal.
    pub node_id_from_hostname: bool,
    /// `process.roles`.
    pub roles: Roles,
    /// `listeners` with their `advertised.listeners`: where the Kafka protocol is served
    /// and what clients of each listener are told to connect to. The inter-broker
    /// listener (`inter.broker.listener.name`, else the first listed) comes first.
    pub listeners: Vec<KafkaListener>,
    /// `controller.listener`: where the controller's gRPC service binds.
    pub controller_listener: SocketAddr,
    /// `controller.quorum.voters`.
    pub voters: Vec<Voter>,
    /// `log.dirs` / `data.dir`.
    pub data_dir: PathBuf,
    /// `broker.rack`.
    pub rack: Option<String>,
    /// `num.partitions`.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `broker.session.timeout.ms`.
    pub session_timeout: Duration,
    /// `broker.heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `socket.request.max.bytes`.
    pub socket_request_max_bytes: i32,
    /// `fetch.max.bytes`: the most one consumer fetch response carries.
    pub fetch_max_bytes: i32,
    /// `replica.fetch.response.max.bytes`: the most one follower fetch answer carries.
    pub replica_fetch_response_max_bytes: i32,
    /// `max.connections`, `max.connections.per.ip`, `connections.max.idle.ms` and
    /// `queued.max.request.bytes`.
    pub connection_limits: spate_broker::config::ConnectionLimits,
    /// `admin.listener`: where the HTTP admin endpoint (health, readiness, metrics) binds.
    pub admin_listener: SocketAddr,
    /// `replication.listener`: where followers fetch from this broker (gRPC).
    pub replication_listener: SocketAddr,
    /// `replica.lag.time.max.ms`: a follower lagging this long leaves the ISR.
    pub replica_lag_time_max: Duration,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when created.
    pub offsets_topic_partitions: i32,
    /// `controlled.shutdown.timeout.ms`: how long a stopping broker waits for leadership
    /// to move away (0: stop at once).
    pub controlled_shutdown_timeout: Duration,
    /// `leader.imbalance.check.interval.seconds`: how often the active controller moves
    /// leadership back to preferred replicas.
    pub leader_imbalance_check_interval: Duration,
    /// `log.retention.check.interval.ms`: how often retention deletes expired segments.
    pub log_retention_check_interval: Duration,
    /// `log.cleaner.enable`, `log.cleaner.threads`, `log.cleaner.dedupe.buffer.size`,
    /// `log.cleaner.backoff.ms` and `log.cleaner.io.max.bytes.per.second`.
    pub log_cleaner: spate_broker::config::LogCleanerConfig,
    /// `group.initial.rebalance.delay.ms`, `group.min.session.timeout.ms` and
    /// `group.max.session.timeout.ms`.
    pub groups: spate_broker::config::GroupConfig,
    /// `cluster.id`: the id a new data directory is created with (default: derived from
    /// the voters, so all nodes agree); a data directory of another cluster is refused.
    pub cluster_id: Option<String>,
    /// `replication.advertised.listener`: where other brokers reach this broker's
    /// replication service (default: the inter-broker listener's host and the bound port).
    pub replication_advertised: Option<HostPort>,
    /// `outbound.source.ip`: the local address outbound gRPC connections start from.
    pub outbound_source_ip: Option<IpAddr>,
    /// Topic configs' broker-wide defaults, under Kafka's broker-level names
    /// (`log.cleanup.policy`, `log.retention.ms`, `log.cleaner.min.cleanable.ratio`, ...).
    pub topic_defaults: TopicDefaults,
    /// Where each key's value came from.
    pub sources: BTreeMap<&'static str, Source>,
}

impl ServerConfig {
    /// Reads the file (if any) and resolves it with the environment and the flags.
    pub fn load(
        path: Option<&Path>,
        env: &BTreeMap<String, String>,
        flags: &ConfigFlags,
    ) -> Result<ServerConfig, ConfigError> {
        let text = match path {
            Some(p) => Some(
                std::fs::read_to_string(p).map_err(|error| ConfigError::Read {
                    path: p.to_path_buf(),
                    error,
                })?,
            ),
            None => None,
        };
        let file = path.zip(text.as_deref());
        resolve_on_host(file, env, flags, hostname().as_deref())
    }

    /// The effective value of every key and where it came from, for the start-up log.
    pub fn effective(&self) -> Vec<(&'static str, String, Source)> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "(unset)".to_string());
        let voters: Vec<String> = self.voters.iter().map(Voter::to_string).collect();
        let values = [
            match self.node_id_from_hostname {
                true => format!("{} (the host name's ordinal)", self.node_id.0),
                false => self.node_id.0.to_string(),
            },
            self.roles.to_string(),
            join(
                self.listeners
                    .iter()
                    .map(|l| format!("{}://{}", l.name, l.bind)),
            ),
            join(
                self.listeners
                    .iter()
                    .map(|l| format!("{}://{}", l.name, l.advertised)),
            ),
            self.listeners[0].name.clone(),
            self.controller_listener.to_string(),
            voters.join(","),
            self.data_dir.display().to_string(),
            opt(&self.rack),
            self.num_partitions.to_string(),
            self.default_replication_factor.to_string(),
            self.auto_create_topics.to_string(),
            self.session_timeout.as_millis().to_string(),
            self.heartbeat_interval.as_millis().to_string(),
            self.socket_request_max_bytes.to_string(),
            self.fetch_max_bytes.to_string(),
            self.replica_fetch_response_max_bytes.to_string(),
            self.connection_limits.max_connections.to_string(),
            self.connection_limits.max_connections_per_ip.to_string(),
            self.connection_limits.idle_timeout.as_millis().to_string(),
            self.connection_limits
                .queued_max_request_bytes
                .map_or_else(|| "-1".to_string(), |b| b.to_string()),
            self.connection_limits.fetch_memory_max_bytes.to_string(),
            self.admin_listener.to_string(),
            self.replication_listener.to_string(),
            self.replica_lag_time_max.as_millis().to_string(),
            self.offsets_topic_partitions.to_string(),
            self.controlled_shutdown_timeout.as_millis().to_string(),
            self.leader_imbalance_check_interval.as_secs().to_string(),
            self.log_retention_check_interval.as_millis().to_string(),
            self.log_cleaner.enabled.to_string(),
            self.log_cleaner.threads.to_string(),
            self.log_cleaner.dedupe_buffer_bytes.to_string(),
            self.log_cleaner.backoff.as_millis().to_string(),
            self.log_cleaner
                .io_max_bytes_per_second
                .map_or_else(|| "-1".to_string(), |b| b.to_string()),
            self.groups.initial_rebalance_delay_ms.to_string(),
            self.groups.min_session_timeout_ms.to_string(),
            self.groups.max_session_timeout_ms.to_string(),
            opt(&self.cluster_id),
            self.replication_advertised
                .as_ref()
                .map_or_else(|| "(derived)".to_string(), HostPort::to_string),
            self.outbound_source_ip
                .map_or_else(|| "(unset)".to_string(), |ip| ip.to_string()),
        ];
        let source = |key: &str| self.sources.get(key).cloned().unwrap_or(Source::Default);
        let keys = KEYS
            .iter()
            .zip(values)
            .map(|((key, _), value)| (*key, value));
        keys.chain(self.topic_defaults.by_broker_name())
            .map(|(key, value)| (key, value, source(key)))
            .collect()
    }
}

/// `SPATE_*` variables that name no key (nor a CLI setting): probably typos, reported at
/// start-up with the nearest key. Kubernetes' service links (`SPATE_PORT`,
/// `SPATE_SERVICE_HOST`, ... for a Service called `spate`) land here too.
pub fn unknown_env(env: &BTreeMap<String, String>) -> Vec<(String, String)> {
    const CLI: &[&str] = &[
        "SPATE_CONFIG",
        "SPATE_BOOTSTRAP",
        "SPATE_CONTROLLERS",
        "SPATE_BIN",
    ];
    env.keys()
        .filter(|var| !CLI.contains(&var.as_str()))
        .filter(|var| !all_names().any(|name| env_var(name) == **var))
        .map(|var| {
            let name = var.trim_start_matches("SPATE_").to_ascii_lowercase();
            (var.clone(), hint(&name))
        })
        .collect()
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(",")
}

/// The `SPATE_*` variables of this process (non-Unicode ones are skipped).
pub fn spate_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("SPATE_"))
        .collect()
}

/// One flag per key (kebab-case of the key); values are checked by [`resolve`] so that a
/// bad flag gets the same message as a bad file entry.
#[derive(clap::Args, Debug, Default, Clone)]
pub struct ConfigFlags {
    /// node.id: this node's id (>= 0).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// process.roles: broker, controller or broker,controller.
    #[arg(long, value_name = "ROLES")]
    pub process_roles: Option<String>,
    /// listeners: Kafka listeners NAME://IP:PORT, comma separated, e.g.
    /// INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:29092.
    #[arg(long, value_name = "LISTENER")]
    pub listeners: Option<String>,
    /// advertised.listeners: per listener, the address its clients are given, e.g.
    /// INTERNAL://kafka-0:9092,EXTERNAL://127.0.0.1:29092.
    #[arg(long, value_name = "LISTENER")]
    pub advertised_listeners: Option<String>,
    /// inter.broker.listener.name: the listener whose advertised host peers use (default: the first).
    #[arg(long, value_name = "NAME")]
    pub inter_broker_listener_name: Option<String>,
    /// controller.listener: controller gRPC bind address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub controller_listener: Option<String>,
    /// controller.quorum.voters: ID@HOST:PORT[,ID@HOST:PORT...].
    #[arg(long, value_name = "VOTERS")]
    pub controller_quorum_voters: Option<String>,
    /// log.dirs: data directory (same as --data-dir).
    #[arg(long, value_name = "DIR")]
    pub log_dirs: Option<String>,
    /// data.dir: data directory (same as --log-dirs).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// broker.rack: rack or zone of this broker.
    #[arg(long, value_name = "RACK")]
    pub broker_rack: Option<String>,
    /// num.partitions: partitions of topics created without a count.
    #[arg(long, value_name = "N")]
    pub num_partitions: Option<String>,
    /// default.replication.factor: replicas of topics created without one.
    #[arg(long, value_name = "N")]
    pub default_replication_factor: Option<String>,
    /// auto.create.topics.enable: create unknown topics on Metadata (true|false).
    #[arg(long, value_name = "BOOL")]
    pub auto_create_topics_enable: Option<String>,
    /// broker.session.timeout.ms: a broker silent this long is fenced.
    #[arg(long, value_name = "MS")]
    pub broker_session_timeout_ms: Option<String>,
    /// broker.heartbeat.interval.ms: how often a broker heartbeats.
    #[arg(long, value_name = "MS")]
    pub broker_heartbeat_interval_ms: Option<String>,
    /// socket.request.max.bytes: largest request frame accepted.
    #[arg(long, value_name = "BYTES")]
    pub socket_request_max_bytes: Option<String>,
    /// fetch.max.bytes: the most one consumer fetch response carries.
    #[arg(long, value_name = "BYTES")]
    pub fetch_max_bytes: Option<String>,
    /// replica.fetch.response.max.bytes: the most one follower fetch answer carries.
    #[arg(long, value_name = "BYTES")]
    pub replica_fetch_response_max_bytes: Option<String>,
    /// max.connections: Kafka connections open at once; more are closed at once.
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// max.connections.per.ip: Kafka connections open at once from one client address.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<String>,
    /// connections.max.idle.ms: close a connection with no request for this long.
    #[arg(long, value_name = "MS")]
    pub connections_max_idle_ms: Option<String>,
    /// queued.max.request.bytes: request bytes in flight before reading pauses (-1: no limit).
    #[arg(long, value_name = "BYTES")]
    pub queued_max_request_bytes: Option<String>,
    /// fetch.memory.max.bytes: consumer fetch response bytes held broker-wide before
    /// fetches get smaller responses.
    #[arg(long, value_name = "BYTES")]
    pub fetch_memory_max_bytes: Option<String>,
    /// admin.listener: HTTP admin bind address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub admin_listener: Option<String>,
    /// replication.listener: replication gRPC bind address, HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub replication_listener: Option<String>,
    /// replica.lag.time.max.ms: a follower lagging this long leaves the ISR.
    #[arg(long, value_name = "MS")]
    pub replica_lag_time_max_ms: Option<String>,
    /// offsets.topic.num.partitions: partitions of __consumer_offsets when it is created.
    #[arg(long, value_name = "N")]
    pub offsets_topic_num_partitions: Option<String>,
    /// controlled.shutdown.timeout.ms: on SIGTERM, wait this long for leadership to move
    /// to other in-sync replicas before stopping (0: stop at once).
    #[arg(long, value_name = "MS")]
    pub controlled_shutdown_timeout_ms: Option<String>,
    /// leader.imbalance.check.interval.seconds: how often leadership moves back to the
    /// preferred replicas.
    #[arg(long, value_name = "SECONDS")]
    pub leader_imbalance_check_interval_seconds: Option<String>,
    /// log.retention.check.interval.ms: how often retention deletes expired segments.
    #[arg(long, value_name = "MS")]
    pub log_retention_check_interval_ms: Option<String>,
    /// log.cleaner.enable: run the log cleaner (compacted topics).
    #[arg(long, value_name = "BOOL")]
    pub log_cleaner_enable: Option<String>,
    /// log.cleaner.threads: cleaning passes that may run at once.
    #[arg(long, value_name = "N")]
    pub log_cleaner_threads: Option<String>,
    /// log.cleaner.dedupe.buffer.size: bytes of the cleaner's key map, shared by its threads.
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_dedupe_buffer_size: Option<String>,
    /// log.cleaner.backoff.ms: pause between the cleaner's looks for a log to clean.
    #[arg(long, value_name = "MS")]
    pub log_cleaner_backoff_ms: Option<String>,
    /// log.cleaner.io.max.bytes.per.second: I/O rate of each cleaning pass (-1: unthrottled).
    #[arg(long, value_name = "BYTES")]
    pub log_cleaner_io_max_bytes_per_second: Option<String>,
    /// group.initial.rebalance.delay.ms: how long a new group waits for more members
    /// before its first rebalance.
    #[arg(long, value_name = "MS")]
    pub group_initial_rebalance_delay_ms: Option<String>,
    /// group.min.session.timeout.ms: the smallest session timeout a consumer may ask for.
    #[arg(long, value_name = "MS")]
    pub group_min_session_timeout_ms: Option<String>,
    /// group.max.session.timeout.ms: the largest session timeout a consumer may ask for.
    #[arg(long, value_name = "MS")]
    pub group_max_session_timeout_ms: Option<String>,
    /// cluster.id: the cluster's id (default: derived from the voter list).
    #[arg(long, value_name = "ID")]
    pub cluster_id: Option<String>,
    /// replication.advertised.listener: HOST:PORT peers fetch from (default: the
    /// inter-broker listener's host and the bound replication port).
    #[arg(long, value_name = "HOST:PORT")]
    pub replication_advertised_listener: Option<String>,
    /// outbound.source.ip: local IP outbound gRPC connections (Raft, controller,
    /// replication) start from.
    #[arg(long, value_name = "IP")]
    pub outbound_source_ip: Option<String>,
}

impl ConfigFlags {
    /// The flags given, by key name.
    fn given(&self) -> Vec<(&'static str, &String)> {
        let all = [
            ("node.id", &self.node_id),
            ("process.roles", &self.process_roles),
            ("listeners", &self.listeners),
            ("advertised.listeners", &self.advertised_listeners),
            (
                "inter.broker.listener.name",
                &self.inter_broker_listener_name,
            ),
            ("controller.listener", &self.controller_listener),
            ("controller.quorum.voters", &self.controller_quorum_voters),
            ("log.dirs", &self.log_dirs),
            ("data.dir", &self.data_dir),
            ("broker.rack", &self.broker_rack),
            ("num.partitions", &self.num_partitions),
            (
                "default.replication.factor",
                &self.default_replication_factor,
            ),
            ("auto.create.topics.enable", &self.auto_create_topics_enable),
            ("broker.session.timeout.ms", &self.broker_session_timeout_ms),
            (
                "broker.heartbeat.interval.ms",
                &self.broker_heartbeat_interval_ms,
            ),
            ("socket.request.max.bytes", &self.socket_request_max_bytes),
            ("fetch.max.bytes", &self.fetch_max_bytes),
            (
                "replica.fetch.response.max.bytes",
                &self.replica_fetch_response_max_bytes,
            ),
            ("max.connections", &self.max_connections),
            ("max.connections.per.ip", &self.max_connections_per_ip),
            ("connections.max.idle.ms", &self.connections_max_idle_ms),
            ("queued.max.request.bytes", &self.queued_max_request_bytes),
            ("fetch.memory.max.bytes", &self.fetch_memory_max_bytes),
            ("admin.listener", &self.admin_listener),
            ("replication.listener", &self.replication_listener),
            ("replica.lag.time.max.ms", &self.replica_lag_time_max_ms),
            (
                "offsets.topic.num.partitions",
                &self.offsets_topic_num_partitions,
            ),
            (
                "controlled.shutdown.timeout.ms",
                &self.controlled_shutdown_timeout_ms,
            ),
            (
                "leader.imbalance.check.interval.seconds",
                &self.leader_imbalance_check_interval_seconds,
            ),
            (
                "log.retention.check.interval.ms",
                &self.log_retention_check_interval_ms,
            ),
            ("log.cleaner.enable", &self.log_cleaner_enable),
            ("log.cleaner.threads", &self.log_cleaner_threads),
            (
                "log.cleaner.dedupe.buffer.size",
                &self.log_cleaner_dedupe_buffer_size,
            ),
            ("log.cleaner.backoff.ms", &self.log_cleaner_backoff_ms),
            (
                "log.cleaner.io.max.bytes.per.second",
                &self.log_cleaner_io_max_bytes_per_second,
            ),
            (
                "group.initial.rebalance.delay.ms",
                &self.group_initial_rebalance_delay_ms,
            ),
            (
                "group.min.session.timeout.ms",
                &self.group_min_session_timeout_ms,
            ),
            (
                "group.max.session.timeout.ms",
                &self.group_max_session_timeout_ms,
            ),
            ("cluster.id", &self.cluster_id),
            (
                "replication.advertised.listener",
                &self.replication_advertised_listener,
            ),
            ("outbound.source.ip", &self.outbound_source_ip),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
            .collect()
    }
}

/// One source's values: (name as given, raw value, source).
type Layer = Vec<(&'static str, String, Source)>;

/// A raw value and where it came from.
#[derive(Debug, Clone)]
struct Setting {
    value: String,
    origin: Source,
}

/// Merges the file (path and text), the environment and the flags, then validates.
/// Pure: the caller does the reading.
#[cfg(test)]
pub fn resolve(
    file: Option<(&Path, &str)>,
    env: &BTreeMap<String, String>,
    flags: &ConfigFlags,
) -> Result<ServerConfig, ConfigError> {
    resolve_on_host(file, env, flags, None)
}

/// [`resolve`] on a host called `hostname` (for `node.id.from.hostname`).
pub fn resolve_on_host(
    file: Option<(&Path, &str)>,
    env: &BTreeMap<String, String>,
    flags: &ConfigFlags,
    hostname: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let mut merged = BTreeMap::new();
    if let Some((path, text)) = file {
        overlay(&mut merged, file_layer(path, text)?)?;
    }
    let env_layer = all_names()
        .filter_map(|name| {
            let var = env_var(name);
            let value = env.get(&var)?.clone();
            Some((name, value, Source::Env(var)))
        })
        .collect();
    overlay(&mut merged, env_layer)?;
    let flag_layer = flags
        .given()
        .into_iter()
        .map(|(name, v)| (name, v.clone(), Source::Flag(flag(name))))
        .collect();
    overlay(&mut merged, flag_layer)?;
    for (key, default) in KEYS {
        if let KeyDefault::Value(v) = default {
            merged.entry(*key).or_insert_with(|| Setting {
                value: v.to_string(),
                origin: Source::Default,
            });
        }
    }
    validate(merged, hostname)
}

/// Lays one source's values over the lower ones; a key and its alias set to different
/// values in the same source is a contradiction.
fn overlay(merged: &mut BTreeMap<&'static str, Setting>, layer: Layer) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<&'static str, (&'static str, String)> = BTreeMap::new();
    for (name, value, origin) in layer {
        let Some(key) = canonical(name) else {
            // Layers are built from known names only (unknown file keys are refused when
            // the file is read), so this cannot happen; never panic over a config either way.
            debug_assert!(false, "unknown name '{name}' in a config layer");
            continue;
        };
        if let Some((other, prev)) = seen.get(key) {
            if *prev != value {
                return Err(ConfigError::Conflict {
                    key,
                    message: format!(
                        "{other} = '{prev}' and {name} = '{value}' name the same setting{}; set one",
                        origin.note()
                    ),
                });
            }
        }
        seen.insert(key, (name, value.clone()));
        merged.insert(key, Setting { value, origin });
    }
    Ok(())
}

/// The file's keys, flattened: `node.id = 1` (a TOML dotted key), `"node.id" = 1` and
/// `[node] id = 1` all mean `node.id`. Arrays become comma lists.
fn file_layer(path: &Path, text: &str) -> Result<Layer, ConfigError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut flat = Vec::new();
    flatten("", &table, &mut flat);
    let mut layer = Vec::new();
    for (name, value) in flat {
        let Some(canon) = canonical(&name) else {
            return Err(ConfigError::UnknownKey {
                path: path.to_path_buf(),
                hint: hint(&name),
                key: name,
            });
        };
        let origin = Source::File(path.to_path_buf());
        let text = scalar(value).ok_or_else(|| ConfigError::Invalid {
            key: canon,
            value: value.to_string(),
            problem: "is not a value or a list of values".to_string(),
            origin: origin.clone(),
        })?;
        // Keep the alias as written, so a clash with its key can be reported by name.
        let name = all_names().find(|n| *n == name).unwrap_or(canon);
        layer.push((name, text, origin));
    }
    Ok(layer)
}

fn flatten<'a>(prefix: &str, table: &'a toml::Table, out: &mut Vec<(String, &'a toml::Value)>) {
    for (k, v) in table {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&name, t, out),
            other => out.push((name, other)),
        }
    }
}

/// A TOML value as the text a flag would carry; `None` for tables and nested arrays.
fn scalar(v: &toml::Value) -> Option<String> {
    Some(match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    toml::Value::Array(_) | toml::Value::Table(_) => None,
                    other => scalar(other),
                })
                .collect();
            parts?.join(",")
        }
        toml::Value::Table(_) => return None,
    })
}

/// " (did you mean 'node.id'?)" for a near miss such as `node_id` or `node.idd`.
fn hint(name: &str) -> String {
    let normalized = name.replace(['_', '-'], ".").to_ascii_lowercase();
    all_names()
        .map(|k| (edit_distance(&normalized, k), k))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, k)| format!(" (did you mean '{k}'?)"))
        .unwrap_or_default()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Parses one key's raw value with `parse`, which returns the problem in words.
fn field<T>(
    settings: &BTreeMap<&'static str, Setting>,
    key: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    let Some(s) = settings.get(key) else {
        return Ok(None);
    };
    parse(s.value.trim())
        .map(Some)
        .map_err(|problem| ConfigError::Invalid {
            key,
            value: s.value.clone(),
            problem,
            origin: s.origin.clone(),
        })
}

/// Like [`field`] for a key that always has a value (a default or required).
fn required<T>(
    settings: &BTreeMap<&'static str, Setting>,
    key: &'static str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    field(settings, key, parse)?.ok_or(ConfigError::Missing { key })
}

/// This machine's host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`).
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

/// The ordinal a StatefulSet gives its pods: `spate-2` (or `spate-2.svc...`) -> 2.
fn hostname_ordinal(hostname: &str) -> Option<i32> {
    let first_label = hostname.split('.').next()?;
    let (_, ordinal) = first_label.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ordinal.parse().ok()
}

/// `node.id`: an integer, or `hostname` for the host name's ordinal (StatefulSet pods).
fn node_id(
    settings: &BTreeMap<&'static str, Setting>,
    hostname: Option<&str>,
) -> Result<(NodeId, bool), ConfigError> {
    let parsed = required(settings, "node.id", |s| match s {
        "hostname" => {
            let host = hostname.unwrap_or("");
            hostname_ordinal(host).map(|id| (NodeId(id), true)).ok_or_else(|| {
                format!("takes the ordinal of the host name, but '{host}' does not end in -N (as StatefulSet pods spate-0, spate-1... do)")
            })
        }
        _ => parse_int::<i32>(s, 0, i32::MAX, "a node id (an integer >= 0, or 'hostname')")
            .map(|id| (NodeId(id), false)),
    })?;
    Ok(parsed)
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("is not true or false".to_string()),
    }
}

/// Turns merged raw values into a [`ServerConfig`], checking every rule.
fn validate(
    settings: BTreeMap<&'static str, Setting>,
    hostname: Option<&str>,
) -> Result<ServerConfig, ConfigError> {
    let (node_id, node_id_from_hostname) = node_id(&settings, hostname)?;
    let roles = required(&settings, "process.roles", parse_roles)?;
    let binds = required(&settings, "listeners", parse_listeners)?;
    let controller_listener = required(&settings, "controller.listener", parse_bind)?;
    let voters = match settings.get("controller.quorum.voters") {
        None => {
            return Err(ConfigError::Missing {
                key: "controller.quorum.voters",
            })
        }
        Some(s) => {
            parse_voters(s.value.trim()).map_err(|(value, problem)| ConfigError::Invalid {
                key: "controller.quorum.voters",
                value,
                problem,
                origin: s.origin.clone(),
            })?
        }
    };
    let data_dir = required(&settings, "log.dirs", parse_dir)?;
    let rack = field(&settings, "broker.rack", |s| match s {
        "" => Err("is empty; leave broker.rack unset instead".to_string()),
        s => Ok(s.to_string()),
    })?;
    let num_partitions = required(&settings, "num.partitions", |s| {
        parse_int(s, 1, i32::MAX, "an integer >= 1")
    })?;
    let default_replication_factor = required(&settings, "default.replication.factor", |s| {
        parse_int(s, 1, i16::MAX, "an integer from 1 to 32767")
    })?;
    let auto_create_topics = required(&settings, "auto.create.topics.enable", parse_bool)?;
    let millis = |s: &str| {
        parse_int(s, 1, u32::MAX, "a number of milliseconds >= 1")
            .map(|ms| Duration::from_millis(ms.into()))
    };
    let session_timeout = required(&settings, "broker.session.timeout.ms", millis)?;
    let heartbeat_interval = required(&settings, "broker.heartbeat.interval.ms", millis)?;
    let byte_count = |s: &str| parse_int(s, 1, i32::MAX, "a byte count from 1 to 2147483647");
    let socket_request_max_bytes = required(&settings, "socket.request.max.bytes", byte_count)?;
    let fetch_max_bytes = required(&settings, "fetch.max.bytes", byte_count)?;
    let replica_fetch_response_max_bytes =
        required(&settings, "replica.fetch.response.max.bytes", byte_count)?;
    let count = |s: &str| parse_int(s, 1, 1_000_000usize, "an integer from 1 to 1000000");
    let connection_limits = spate_broker::config::ConnectionLimits {
        max_connections: required(&settings, "max.connections", count)?,
        max_connections_per_ip: required(&settings, "max.connections.per.ip", count)?,
        idle_timeout: required(&settings, "connections.max.idle.ms", millis)?,
        queued_max_request_bytes: required(&settings, "queued.max.request.bytes", |s| match s {
            "-1" => Ok(None),
            s => parse_int(
                s,
                1,
                i64::MAX as usize,
                "a byte count >= 1, or -1 for no limit",
            )
            .map(Some),
        })?,
        fetch_memory_max_bytes: required(&settings, "fetch.memory.max.bytes", |s| {
            parse_int(s, 1, u32::MAX as usize, "a byte count from 1 to 4294967295")
        })?,
    };
    let admin_listener = required(&settings, "admin.listener", parse_bind)?;
    let replication_listener = required(&settings, "replication.listener", parse_bind)?;
    let replica_lag_time_max = required(&settings, "replica.lag.time.max.ms", millis)?;
    let offsets_topic_partitions = required(&settings, "offsets.topic.num.partitions", |s| {
        parse_int(s, 1, 1000, "an integer from 1 to 1000")
    })?;
    let controlled_shutdown_timeout = required(&settings, "controlled.shutdown.timeout.ms", |s| {
        parse_int(
            s,
            0,
            600_000u64,
            "a number of milliseconds from 0 to 600000",
        )
        .map(Duration::from_millis)
    })?;
    let leader_imbalance_check_interval =
        required(&settings, "leader.imbalance.check.interval.seconds", |s| {
            parse_int(s, 1, 86_400u64, "a number of seconds from 1 to 86400")
                .map(Duration::from_secs)
        })?;
    let log_retention_check_interval =
        required(&settings, "log.retention.check.interval.ms", millis)?;
    let mut topic_defaults = TopicDefaults::default();
    for name in topic_defaults::broker_names() {
        if let Some(s) = settings.get(name) {
            topic_defaults
                .set(name, s.value.trim())
                .map_err(|e| ConfigError::TopicDefault {
                    message: e.to_string(),
                    origin: s.origin.clone(),
                })?;
        }
    }
    let log_cleaner = spate_broker::config::LogCleanerConfig {
        enabled: required(&settings, "log.cleaner.enable", parse_bool)?,
        threads: required(&settings, "log.cleaner.threads", |s| {
            parse_int(s, 1, 64usize, "an integer from 1 to 64")
        })?,
        // Kafka's floor: each thread's map must hold something.
        dedupe_buffer_bytes: required(&settings, "log.cleaner.dedupe.buffer.size", |s| {
            parse_int(
                s,
                1 << 20,
                usize::MAX,
                "a number of bytes of at least 1048576",
            )
        })?,
        backoff: required(&settings, "log.cleaner.backoff.ms", millis)?,
        io_max_bytes_per_second: required(&settings, "log.cleaner.io.max.bytes.per.second", |s| {
            match s.trim() {
                "-1" => Ok(None),
                v => parse_int(v, 1, u64::MAX, "-1 (unthrottled) or a number of bytes >= 1")
                    .map(Some),
            }
        })?,
    };
    let session_ms = |s: &str| parse_int(s, 1, i32::MAX, "a number of milliseconds >= 1");
    let groups = spate_broker::config::GroupConfig {
        initial_rebalance_delay_ms: required(&settings, "group.initial.rebalance.delay.ms", |s| {
            parse_int(
                s,
                0,
                300_000i64,
                "a number of milliseconds from 0 to 300000",
            )
        })?,
        min_session_timeout_ms: required(&settings, "group.min.session.timeout.ms", session_ms)?,
        max_session_timeout_ms: required(&settings, "group.max.session.timeout.ms", session_ms)?,
        ..spate_broker::config::GroupConfig::default()
    };
    let cluster_id = field(&settings, "cluster.id", |s| {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| s.to_string())
            .ok_or_else(|| "is not 1 to 64 letters, digits, - or _".to_string())
    })?;
    let replication_advertised = field(&settings, "replication.advertised.listener", |s| {
        parse_host_port(s).ok_or_else(|| "is not HOST:PORT with a port from 1 to 65535".to_string())
    })?;
    let outbound_source_ip = field(&settings, "outbound.source.ip", |s| {
        s.parse::<IpAddr>()
            .ok()
            .filter(|ip| !ip.is_unspecified())
            .ok_or_else(|| "is not a specific IP address of this host".to_string())
    })?;
    let multi_node = voters.len() > 1 || !roles.controller;
    let mut sources: BTreeMap<&'static str, Source> = settings
        .iter()
        .map(|(k, s)| (*k, s.origin.clone()))
        .collect();
    let advertised = field(&settings, "advertised.listeners", parse_advertised)?;
    if advertised.is_none() {
        sources.insert("advertised.listeners", Source::Derived);
    }
    let inter_broker = field(&settings, "inter.broker.listener.name", |s| {
        parse_listener_name(s).map_err(|e| format!("is not a listener name: {e}"))
    })?;
    let listeners = pair_listeners(
        binds,
        advertised.unwrap_or_default(),
        inter_broker,
        multi_node,
    )?;

    let config = ServerConfig {
        node_id,
        node_id_from_hostname,
        roles,
        listeners,
        controller_listener,
        voters,
        data_dir,
        rack,
        num_partitions,
        default_replication_factor,
        auto_create_topics,
        session_timeout,
        heartbeat_interval,
        socket_request_max_bytes,
        fetch_max_bytes,
        replica_fetch_response_max_bytes,
        connection_limits,
        admin_listener,
        replication_listener,
        replica_lag_time_max,
        offsets_topic_partitions,
        controlled_shutdown_timeout,
        leader_imbalance_check_interval,
        log_retention_check_interval,
        log_cleaner,
        groups,
        cluster_id,
        replication_advertised,
        outbound_source_ip,
        topic_defaults,
        sources,
    };
    check_rules(&config)?;
    Ok(config)
}

/// The rules that relate keys to each other.
fn check_rules(c: &ServerConfig) -> Result<(), ConfigError> {
    let (node_id, roles, voters) = (c.node_id, c.roles, &c.voters);
    let (heartbeat_interval, session_timeout) = (c.heartbeat_interval, c.session_timeout);
    let in_voters = voters.iter().any(|v| v.id == node_id);
    let listed: Vec<String> = voters.iter().map(Voter::to_string).collect();
    if roles.controller && !in_voters {
        return Err(ConfigError::Conflict {
            key: "controller.quorum.voters",
            message: format!(
                "node.id {} has the controller role but is not among the voters '{}'; add {}@HOST:PORT or drop controller from process.roles",
                node_id.0,
                listed.join(","),
                node_id.0
            ),
        });
    }
    if !roles.controller && in_voters {
        return Err(ConfigError::Conflict {
            key: "process.roles",
            message: format!(
                "node.id {} is a voter in controller.quorum.voters but process.roles '{roles}' has no controller role; add controller or remove it from the voters",
                node_id.0
            ),
        });
    }
    if heartbeat_interval >= session_timeout {
        return Err(ConfigError::Conflict {
            key: "broker.heartbeat.interval.ms",
            message: format!(
                "{} must be less than broker.session.timeout.ms ({}), or a healthy broker would be fenced between heartbeats",
                heartbeat_interval.as_millis(),
                session_timeout.as_millis()
            ),
        });
    }
    if c.groups.min_session_timeout_ms > c.groups.max_session_timeout_ms {
        return Err(ConfigError::Conflict {
            key: "group.min.session.timeout.ms",
            message: format!(
                "{} is above group.max.session.timeout.ms ({}); no consumer could join",
                c.groups.min_session_timeout_ms, c.groups.max_session_timeout_ms
            ),
        });
    }
    let mut binds = vec![("admin.listener", c.admin_listener)];
    if roles.broker {
        binds.extend(c.listeners.iter().map(|l| ("listeners", l.bind)));
        binds.push(("replication.listener", c.replication_listener));
    }
    if roles.controller {
        binds.push(("controller.listener", c.controller_listener));
    }
    check_port_clashes(&binds)?;
    Ok(())
}

/// Two listeners of one node cannot bind the same port (port 0 picks a free one).
fn check_port_clashes(binds: &[(&'static str, SocketAddr)]) -> Result<(), ConfigError> {
    for (i, (a, addr_a)) in binds.iter().enumerate() {
        for (b, addr_b) in &binds[i + 1..] {
            let overlap = addr_a.ip() == addr_b.ip()
                || addr_a.ip().is_unspecified()
                || addr_b.ip().is_unspecified();
            if addr_a.port() != 0 && addr_a.port() == addr_b.port() && overlap {
                return Err(ConfigError::Conflict {
                    key: b,
                    message: format!(
                        "{addr_b} clashes with {a} ({addr_a}); give each listener its own port"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Gives each bound listener its advertised address (given, or derived from the bind
/// address) and puts the inter-broker listener first.
fn pair_listeners(
    binds: Vec<(String, SocketAddr)>,
    advertised: Vec<(String, HostPort)>,
    inter_broker: Option<String>,
    multi_node: bool,
) -> Result<Vec<KafkaListener>, ConfigError> {
    if let Some((name, _)) = advertised
        .iter()
        .find(|(n, _)| !binds.iter().any(|(b, _)| b == n))
    {
        return Err(ConfigError::Conflict {
            key: "advertised.listeners",
            message: format!(
                "names listener {name}, which is not in listeners ({})",
                join(binds.iter().map(|(n, _)| n.clone()))
            ),
        });
    }
    let mut out = Vec::with_capacity(binds.len());
    for (name, bind) in binds {
        let advertised = match advertised.iter().find(|(n, _)| *n == name) {
            Some((_, hp)) => hp.clone(),
            None => derive_advertised(&name, bind, multi_node)?,
        };
        out.push(KafkaListener {
            name,
            bind,
            advertised,
        });
    }
    if let Some(inter) = inter_broker {
        let Some(i) = out.iter().position(|l| l.name == inter) else {
            return Err(ConfigError::Conflict {
                key: "inter.broker.listener.name",
                message: format!(
                    "'{inter}' is not in listeners ({})",
                    join(out.iter().map(|l| l.name.clone()))
                ),
            });
        };
        let first = out.remove(i);
        out.insert(0, first);
    }
    Ok(out)
}

/// The advertised address when none is set: the listener, with a wildcard IP replaced by
/// loopback — which only works when every client and peer runs on this host.
fn derive_advertised(
    name: &str,
    listener: SocketAddr,
    multi_node: bool,
) -> Result<HostPort, ConfigError> {
    let ip = listener.ip();
    if ip.is_unspecified() && multi_node {
        return Err(ConfigError::Conflict {
            key: "advertised.listeners",
            message: format!(
                "has no entry for listener '{name}://{listener}', which binds every interface, so there is no one address to give clients and peers of a multi-node cluster; add {name}://HOST:{} with the name this node is reached by",
                listener.port()
            ),
        });
    }
    let ip = match ip {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        other => other,
    };
    Ok(HostPort {
        host: ip.to_string(),
        port: listener.port(),
    })
}

fn parse_int<T: std::str::FromStr + PartialOrd>(
    s: &str,
    min: T,
    max: T,
    what: &str,
) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(v) if v >= min && v <= max => Ok(v),
        _ => Err(format!("is not {what}")),
    }
}

fn parse_roles(s: &str) -> Result<Roles, String> {
    let mut roles = Roles {
        broker: false,
        controller: false,
    };
    for role in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let slot = match role {
            "broker" => &mut roles.broker,
            "controller" => &mut roles.controller,
            other => {
                return Err(format!(
                    "has unknown role '{other}'; expected broker, controller or broker,controller"
                ))
            }
        };
        if *slot {
            return Err(format!("lists {role} twice"));
        }
        *slot = true;
    }
    if !roles.broker && !roles.controller {
        return Err("is empty; expected broker, controller or broker,controller".to_string());
    }
    Ok(roles)
}

/// A listener name: letters, digits and `_`, upper-cased. Names of Kafka's security
/// protocols other than PLAINTEXT are refused: every Spate listener is plaintext.
fn parse_listener_name(name: &str) -> Result<String, String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper.is_empty()
        || !upper
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(format!(
            "listener name '{name}' is not letters, digits and _"
        ));
    }
    if matches!(upper.as_str(), "SSL" | "SASL_PLAINTEXT" | "SASL_SSL") {
        return Err(format!(
            "uses listener '{name}'; every listener serves PLAINTEXT (TLS and SASL are not supported)"
        ));
    }
    if upper == "REPLICATION" {
        return Err(
            "uses the reserved listener name 'REPLICATION' (replication.listener is that one)"
                .to_string(),
        );
    }
    Ok(upper)
}

/// A comma list of `NAME://ADDRESS` (`NAME://` may be left out for a single `PLAINTEXT`
/// listener); `parse` reads the address. Names must be unique.
fn parse_named<T>(
    s: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<(String, T)>, String> {
    let mut out: Vec<(String, T)> = Vec::new();
    let entries: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    for entry in entries.iter().copied() {
        let (name, rest) = match entry.split_once("://") {
            Some((name, rest)) => (parse_listener_name(name)?, rest),
            None => ("PLAINTEXT".to_string(), entry),
        };
        if out.iter().any(|(n, _)| *n == name) {
            return Err(format!("lists listener {name} twice"));
        }
        let value = parse(rest).map_err(|e| match entries.len() {
            1 => e,
            _ => format!("has '{entry}', which {e}"),
        })?;
        out.push((name, value));
    }
    if out.is_empty() {
        return Err("is empty; expected NAME://HOST:PORT[,NAME://HOST:PORT...]".to_string());
    }
    Ok(out)
}

/// `listeners`: `NAME://IP:PORT[,...]`, e.g. `INTERNAL://0.0.0.0:9092,EXTERNAL://0.0.0.0:29092`.
fn parse_listeners(s: &str) -> Result<Vec<(String, SocketAddr)>, String> {
    parse_named(s, parse_bind)
}

/// A bind address: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or `:PORT` (all interfaces).
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected =
        "is not IP:PORT (a listener binds an IP address; put host names in advertised.listeners)";
    let (host, port) = s.rsplit_once(':').ok_or(expected)?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("has no valid port (0-65535): {expected}"))?;
    match host {
        "" => Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        "localhost" => Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
        _ => Err(expected.to_string()),
    }
}

/// `HOST:PORT` or `[IPv6]:PORT` that another machine can dial: any host name, a port > 0.
fn parse_host_port(s: &str) -> Option<HostPort> {
    let (host, port) = s.rsplit_once(':')?;
    let host = match host.strip_prefix('[') {
        Some(h) => h.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':');
    if host.is_empty() || !host.chars().all(valid) {
        return None;
    }
    Some(HostPort {
        host: host.to_string(),
        port,
    })
}

/// `advertised.listeners`: `NAME://HOST:PORT[,...]` for some or all listeners.
fn parse_advertised(s: &str) -> Result<Vec<(String, HostPort)>, String> {
    parse_named(s, |a| {
        let hp = parse_host_port(a).ok_or("is not HOST:PORT with a port from 1 to 65535")?;
        if hp
            .host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            return Err("is a wildcard address clients cannot connect to; advertise this node's host name or IP".to_string());
        }
        Ok(hp)
    })
}

/// `ID@HOST:PORT[,ID@HOST:PORT...]`; on error, the offending text (the entry that does
/// not parse, or the whole list) and the problem.
fn parse_voters(s: &str) -> Result<Vec<Voter>, (String, String)> {
    if s.is_empty() {
        let problem = "is empty; expected ID@HOST:PORT[,ID@HOST:PORT...]";
        return Err((String::new(), problem.to_string()));
    }
    let mut voters: Vec<Voter> = Vec::new();
    for entry in s.split(',').map(str::trim) {
        let bad = || {
            let problem = "is not ID@HOST:PORT (ID >= 0, PORT 1-65535)";
            (entry.to_string(), problem.to_string())
        };
        let (id, addr) = entry.split_once('@').ok_or_else(bad)?;
        let id = parse_int::<i32>(id, 0, i32::MAX, "").map_err(|_| bad())?;
        let addr = parse_host_port(addr).ok_or_else(bad)?;
        if voters.iter().any(|v| v.id.0 == id) {
            return Err((s.to_string(), format!("lists voter id {id} twice")));
        }
        voters.push(Voter {
            id: NodeId(id),
            addr,
        });
    }
    Ok(voters)
}

fn parse_dir(s: &str) -> Result<PathBuf, String> {
    let dirs: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    match dirs.as_slice() {
        [] => Err("is empty; expected a directory path".to_string()),
        [one] => Ok(PathBuf::from(one)),
        _ => {
            Err("lists more than one directory; Spate keeps all data in one directory".to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    /// Both voters-and-id keys every valid config needs.
    const MIN: &str = "node.id = 1\ncontroller.quorum.voters = '1@localhost:9093'\n";

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        flags: ConfigFlags,
    }

    fn run(
        file: Option<&str>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Result<ServerConfig, ConfigError> {
        let env: BTreeMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let argv = std::iter::once("spate").chain(args.iter().copied());
        let flags = Cli::try_parse_from(argv).unwrap().flags;
        resolve(file.map(|t| (Path::new("spate.toml"), t)), &env, &flags)
    }

    fn file(text: &str) -> ServerConfig {
        run(Some(text), &[], &[]).unwrap()
    }

    fn error(text: &str) -> String {
        run(Some(text), &[], &[]).unwrap_err().to_string()
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let c = file(MIN);
        assert_eq!(c.node_id, NodeId(1));
        assert_eq!(
            c.roles,
            Roles {
                broker: true,
                controller: true
            }
        );
        assert_eq!(c.listeners[0].bind, "127.0.0.1:9092".parse().unwrap());
        assert_eq!(
            c.listeners[0].advertised,
            HostPort {
                host: "127.0.0.1".into(),
                port: 9092
            }
        );
        assert_eq!(c.controller_listener, "127.0.0.1:9093".parse().unwrap());
        assert_eq!(
            c.voters,
            [Voter {
                id: NodeId(1),
                addr: HostPort {
                    host: "localhost".into(),
                    port: 9093
                }
            }]
        );
        assert_eq!(c.data_dir, PathBuf::from("./spate-data"));
        assert_eq!(c.rack, None);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.default_replication_factor, 1);
        assert!(c.auto_create_topics);
        assert_eq!(c.session_timeout, Duration::from_millis(9000));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(1000));
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.admin_listener, "127.0.0.1:9095".parse().unwrap());
        assert_eq!(c.sources["num.partitions"], Source::Default);
        assert_eq!(c.sources["advertised.listeners"], Source::Derived);
        assert_eq!(c.sources["node.id"], Source::File("spate.toml".into()));
        assert_eq!(c.effective().len(), KEYS.len());
    }

    #[test]
    fn connection_limits_default_to_the_broker_defaults_and_parse_with_kafka_names() {
        assert_eq!(file(MIN).connection_limits, Default::default());
        let c = file(&format!(
            "{MIN}max.connections = 50\n\"max.connections.per.ip\" = 5\nconnections.max.idle.ms = 2000\nqueued.max.request.bytes = -1\nfetch.memory.max.bytes = 1000000\n"
        ));
        // TOML cannot have both max.connections and max.connections.per.ip as dotted keys
        // (the first is a value, not a table): one of them is quoted.
        let l = &c.connection_limits;
        assert_eq!((l.max_connections, l.max_connections_per_ip), (50, 5));
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.fetch_memory_max_bytes, 1_000_000);
        assert_eq!(
            l.queued_max_request_bytes, None,
            "-1 is no limit, as in Kafka"
        );
        let e = error(&format!("{MIN}queued.max.request.bytes = 0\n"));
        assert!(
            e.contains("queued.max.request.bytes") && e.contains("-1"),
            "{e}"
        );
        let e = error(&format!("{MIN}max.connections = 0\n"));
        assert!(e.contains("max.connections"), "{e}");
    }

    #[test]
    fn dotted_quoted_and_table_keys_mean_the_same() {
        let dotted = file(&format!(
            "{MIN}broker.rack = 'a'\nprocess.roles = ['broker', 'controller']\n"
        ));
        let quoted = file(&format!(
            "{MIN}\"broker.rack\" = 'a'\n\"process.roles\" = 'broker,controller'\n"
        ));
        let table = file(&format!(
            "{MIN}[broker]\nrack = 'a'\n[process]\nroles = 'controller,broker'\n"
        ));
        assert_eq!(dotted.rack.as_deref(), Some("a"));
        assert_eq!(dotted, quoted);
        assert_eq!(dotted, table);
    }

    #[test]
    fn precedence_is_flag_then_env_then_file_then_default() {
        let text = format!(
            "{MIN}num.partitions = 2\ndefault.replication.factor = 2\nbroker.rack = 'file'\n"
        );
        let env = [("SPATE_NUM_PARTITIONS", "3"), ("SPATE_BROKER_RACK", "env")];
        let c = run(Some(&text), &env, &["--num-partitions", "4"]).unwrap();
        assert_eq!(c.num_partitions, 4);
        assert_eq!(
            c.sources["num.partitions"],
            Source::Flag("--num-partitions".into())
        );
        assert_eq!(c.rack.as_deref(), Some("env"));
        assert_eq!(
            c.sources["broker.rack"],
            Source::Env("SPATE_BROKER_RACK".into())
        );
        assert_eq!(c.default_replication_factor, 2);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        // No file at all: env and flags alone are enough.
        let env = [
            ("SPATE_NODE_ID", "5"),
            ("SPATE_CONTROLLER_QUORUM_VOTERS", "5@h:9093"),
        ];
        let c = run(None, &env, &["--node-id", "5"]).unwrap();
        assert_eq!(c.node_id, NodeId(5));
    }

    #[test]
    fn data_dir_is_an_alias_of_log_dirs() {
        assert_eq!(
            file(&format!("{MIN}data.dir = '/d'\n")).data_dir,
            PathBuf::from("/d")
        );
        let c = run(
            Some(&format!("{MIN}log.dirs = '/file'\n")),
            &[("SPATE_DATA_DIR", "/env")],
            &[],
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/env"));
        let c = run(
            Some(MIN),
            &[("SPATE_DATA_DIR", "/env")],
            &["--log-dirs", "/flag"],
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/flag"));
        let e = error(&format!("{MIN}log.dirs = '/a'\ndata.dir = '/b'\n"));
        assert!(
            e.starts_with("log.dirs: ") && e.contains("name the same setting"),
            "{e}"
        );
        let e = error(&format!("{MIN}log.dirs = ['/a', '/b']\n"));
        assert!(e.contains("lists more than one directory"), "{e}");
    }

    #[test]
    fn unknown_file_key_is_an_error_naming_it() {
        let e = error(&format!("{MIN}num.partition = 3\n"));
        assert_eq!(
            e,
            "spate.toml: unknown key 'num.partition' (did you mean 'num.partitions'?)"
        );
        let e = error(&format!("{MIN}node_id = 1\n"));
        assert!(
            e.contains("unknown key 'node_id' (did you mean 'node.id'?)"),
            "{e}"
        );
        let e = error(&format!("{MIN}[tls]\nenabled = true\n"));
        assert_eq!(e, "spate.toml: unknown key 'tls.enabled'");
    }

    #[test]
    fn bad_toml_and_non_scalar_values_are_errors() {
        assert!(error("node.id = \n").starts_with("spate.toml: not valid TOML"));
        let e = error(&format!("{MIN}[[listeners]]\nport = 1\n"));
        assert!(
            e.starts_with("listeners: ") && e.contains("is not a value"),
            "{e}"
        );
    }

    #[test]
    fn node_id_is_required_and_non_negative() {
        let e = error("controller.quorum.voters = '1@h:9093'\n");
        assert_eq!(
            e,
            "node.id is required: set it in the config file, as SPATE_NODE_ID or with --node-id"
        );
        let e = run(Some(MIN), &[("SPATE_NODE_ID", "-1")], &[])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "node.id: '-1' is not a node id (an integer >= 0, or 'hostname') (from SPATE_NODE_ID)"
        );
        assert!(
            error("node.id = 'one'\ncontroller.quorum.voters = '1@h:9093'")
                .starts_with("node.id: 'one'")
        );
    }

    #[test]
    fn voters_are_required_and_parsed() {
        let e = error("node.id = 1\n");
        assert!(e.starts_with("controller.quorum.voters is required"), "{e}");
        let e = error("node.id = 1\ncontroller.quorum.voters = '1@host'\n");
        assert_eq!(
            e,
            "controller.quorum.voters: '1@host' is not ID@HOST:PORT (ID >= 0, PORT 1-65535) (from spate.toml)"
        );
        for bad in [
            "x@h:9093",
            "1@h:0",
            "1@h:99999",
            "1@:9093",
            "1h:9093",
            "1@h h:9093",
            "",
        ] {
            let text = format!("node.id = 1\ncontroller.quorum.voters = '1@h:9093,{bad}'\n");
            assert!(
                error(&text).starts_with(&format!(
                    "controller.quorum.voters: '{bad}' is not ID@HOST:PORT"
                )),
                "{bad}"
            );
        }
        let c = file("node.id = 2\ncontroller.quorum.voters = ['1@a:9093', '2@[::1]:9093', '3@c.example:19093']\nadvertised.listeners = 'b:9092'\n");
        let listed: Vec<String> = c.voters.iter().map(Voter::to_string).collect();
        assert_eq!(listed, ["1@a:9093", "2@[::1]:9093", "3@c.example:19093"]);
    }

    #[test]
    fn duplicate_voter_ids_are_an_error() {
        let e = error("node.id = 1\ncontroller.quorum.voters = '1@a:9093,2@b:9093,1@c:9093'\n");
        assert!(
            e.ends_with("lists voter id 1 twice (from spate.toml)"),
            "{e}"
        );
    }

    #[test]
    fn controller_role_and_voter_membership_must_agree() {
        let e = error("node.id = 4\ncontroller.quorum.voters = '1@a:9093'\n");
        assert!(e.starts_with("controller.quorum.voters: node.id 4 has the controller role but is not among the voters '1@a:9093'"), "{e}");
        let e = error("node.id = 1\nprocess.roles = 'broker'\ncontroller.quorum.voters = '1@a:9093'\nadvertised.listeners = 'a:9092'\n");
        assert!(e.starts_with("process.roles: node.id 1 is a voter"), "{e}");
        let c =
            file("node.id = 4\nprocess.roles = 'broker'\ncontroller.quorum.voters = '1@a:9093'\n");
        assert_eq!(
            c.roles,
            Roles {
                broker: true,
                controller: false
            }
        );
    }

    #[test]
    fn roles_must_be_known_distinct_and_not_empty() {
        let with = |roles: &str| error(&format!("{MIN}process.roles = '{roles}'\n"));
        assert!(with("").contains("is empty"));
        assert!(with("broker,worker").contains("has unknown role 'worker'"));
        assert!(with("controller,controller").contains("lists controller twice"));
        let c = file(&format!("{MIN}process.roles = 'controller'\n"));
        assert_eq!(c.roles.to_string(), "controller");
    }

    #[test]
    fn heartbeat_must_be_shorter_than_session_timeout() {
        let e = error(&format!("{MIN}broker.session.timeout.ms = 1000\n"));
        assert!(e.starts_with("broker.heartbeat.interval.ms: 1000 must be less than broker.session.timeout.ms (1000)"), "{e}");
        assert!(error(&format!("{MIN}broker.heartbeat.interval.ms = 0\n"))
            .contains("milliseconds >= 1"));
        let c = file(&format!(
            "{MIN}broker.session.timeout.ms = 3000\nbroker.heartbeat.interval.ms = 500\n"
        ));
        assert_eq!(c.heartbeat_interval, Duration::from_millis(500));
    }

    #[test]
    fn listener_addresses_and_ports_must_parse() {
        for key in ["listeners", "controller.listener", "admin.listener"] {
            let e = error(&format!("{MIN}{key} = '127.0.0.1:70000'\n"));
            assert!(
                e.starts_with(&format!("{key}: '127.0.0.1:70000' has no valid port")),
                "{e}"
            );
        }
        let e = error(&format!("{MIN}listeners = 'SSL://0.0.0.0:9092'\n"));
        assert!(e.contains("uses listener 'SSL'"), "{e}");
        let e = error(&format!("{MIN}listeners = 'PLAINTEXT://kafka-0:9092'\n"));
        assert!(e.contains("put host names in advertised.listeners"), "{e}");
        let e = error(&format!(
            "{MIN}listeners = 'PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093'\n"
        ));
        assert!(e.contains("uses listener 'SSL'"), "{e}");
        assert_eq!(
            file(&format!("{MIN}listeners = 'PLAINTEXT://:9092'\n")).listeners[0].bind,
            "0.0.0.0:9092".parse().unwrap()
        );
        assert_eq!(
            file(&format!("{MIN}listeners = 'localhost:9092'\n")).listeners[0].bind,
            "127.0.0.1:9092".parse().unwrap()
        );
        assert_eq!(
            file(&format!("{MIN}listeners = '[::1]:9092'\n")).listeners[0].bind,
            "[::1]:9092".parse().unwrap()
        );
    }

    #[test]
    fn listeners_of_one_node_cannot_share_a_port() {
        let e = error(&format!("{MIN}listeners = '0.0.0.0:9093'\n"));
        assert!(
            e.starts_with(
                "controller.listener: 127.0.0.1:9093 clashes with listeners (0.0.0.0:9093)"
            ),
            "{e}"
        );
        let e = error(&format!("{MIN}admin.listener = '127.0.0.1:9092'\n"));
        assert!(
            e.starts_with("listeners: 127.0.0.1:9092 clashes with admin.listener"),
            "{e}"
        );
        // A controller-only node does not bind the Kafka listener.
        file("node.id = 1\nprocess.roles = 'controller'\ncontroller.quorum.voters = '1@h:9092'\ncontroller.listener = '127.0.0.1:9092'\n");
        file(&format!(
            "{MIN}listeners = '127.0.0.1:0'\ncontroller.listener = '127.0.0.1:0'\n"
        ));
    }

    #[test]
    fn advertised_listener_is_derived_or_validated() {
        let c = file(&format!("{MIN}listeners = 'PLAINTEXT://0.0.0.0:9092'\n"));
        assert_eq!(c.listeners[0].advertised.to_string(), "127.0.0.1:9092");
        let c = file(&format!("{MIN}listeners = '[::]:9092'\n"));
        assert_eq!(c.listeners[0].advertised.to_string(), "[::1]:9092");
        let c = file(&format!("{MIN}listeners = '10.0.0.5:9092'\n"));
        assert_eq!(c.listeners[0].advertised.to_string(), "10.0.0.5:9092");
        let three = "node.id = 1\ncontroller.quorum.voters = '1@a:9093,2@b:9093,3@c:9093'\nlisteners = '0.0.0.0:9092'\n";
        let e = error(three);
        assert!(e.starts_with("advertised.listeners: has no entry for listener 'PLAINTEXT://0.0.0.0:9092', which binds every interface"), "{e}");
        let c = file(&format!(
            "{three}advertised.listeners = 'PLAINTEXT://kafka-0.spate:9092'\n"
        ));
        assert_eq!(
            c.listeners[0].advertised,
            HostPort {
                host: "kafka-0.spate".into(),
                port: 9092
            }
        );
        let e = error(&format!("{MIN}advertised.listeners = '0.0.0.0:9092'\n"));
        assert!(e.contains("wildcard address"), "{e}");
        let e = error(&format!("{MIN}advertised.listeners = 'kafka:0'\n"));
        assert!(e.contains("is not HOST:PORT"), "{e}");
    }

    #[test]
    fn internal_and_external_listeners_each_get_their_advertised_address() {
        let three = "node.id = 2\ncontroller.quorum.voters = '1@a:9093,2@b:9093,3@c:9093'\n";
        let c = file(&format!(
            "{three}listeners = 'external://0.0.0.0:29092,INTERNAL://0.0.0.0:9092'\nadvertised.listeners = 'INTERNAL://spate-2:9092,EXTERNAL://127.0.0.1:29093'\ninter.broker.listener.name = 'internal'\n"
        ));
        let got: Vec<String> = c
            .listeners
            .iter()
            .map(|l| format!("{} {} {}", l.name, l.bind, l.advertised))
            .collect();
        // The inter-broker listener comes first whatever the order in `listeners`.
        assert_eq!(
            got,
            [
                "INTERNAL 0.0.0.0:9092 spate-2:9092",
                "EXTERNAL 0.0.0.0:29092 127.0.0.1:29093"
            ]
        );
        let effective = c.effective();
        let value = |k: &str| {
            effective
                .iter()
                .find(|(key, ..)| *key == k)
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(value("inter.broker.listener.name"), "INTERNAL");
        assert_eq!(
            value("advertised.listeners"),
            "INTERNAL://spate-2:9092,EXTERNAL://127.0.0.1:29093"
        );
        // Without inter.broker.listener.name the first listed is the inter-broker one.
        let c = file(&format!(
            "{three}listeners = 'A://0.0.0.0:1,B://0.0.0.0:2'\nadvertised.listeners = 'A://x:1,B://y:2'\n"
        ));
        assert_eq!(c.listeners[0].name, "A");

        let e = error(&format!(
            "{three}listeners = 'A://0.0.0.0:1,B://0.0.0.0:2'\nadvertised.listeners = 'A://x:1'\n"
        ));
        assert!(
            e.contains("has no entry for listener 'B://0.0.0.0:2'"),
            "{e}"
        );
        let e = error(&format!(
            "{three}listeners = 'A://10.0.0.1:1'\nadvertised.listeners = 'C://x:1'\n"
        ));
        assert!(
            e.contains("names listener C, which is not in listeners (A)"),
            "{e}"
        );
        let e = error(&format!(
            "{MIN}listeners = 'A://127.0.0.1:1,a://127.0.0.1:2'\n"
        ));
        assert!(e.contains("lists listener A twice"), "{e}");
        let e = error(&format!(
            "{MIN}listeners = 'A://127.0.0.1:1,B://127.0.0.1:1'\n"
        ));
        assert!(e.contains("clashes with listeners"), "{e}");
        let e = error(&format!(
            "{MIN}listeners = 'A://127.0.0.1:1,B://127.0.0.1:x'\n"
        ));
        assert!(
            e.contains("has 'B://127.0.0.1:x', which has no valid port"),
            "{e}"
        );
        let e = error(&format!("{MIN}inter.broker.listener.name = 'X'\n"));
        assert!(e.contains("'X' is not in listeners (PLAINTEXT)"), "{e}");
        let e = error(&format!("{MIN}listeners = 'REPLICATION://127.0.0.1:1'\n"));
        assert!(e.contains("reserved listener name"), "{e}");
    }

    #[test]
    fn replication_address_and_source_ip_are_validated() {
        let c = file(&format!(
            "{MIN}replication.advertised.listener = 'proxy:7001'\noutbound.source.ip = '127.0.0.12'\n"
        ));
        assert_eq!(c.replication_advertised.unwrap().to_string(), "proxy:7001");
        assert_eq!(c.outbound_source_ip, Some("127.0.0.12".parse().unwrap()));
        let e = error(&format!("{MIN}outbound.source.ip = '0.0.0.0'\n"));
        assert!(e.contains("is not a specific IP address"), "{e}");
        let e = error(&format!("{MIN}replication.advertised.listener = 'proxy'\n"));
        assert!(e.contains("is not HOST:PORT"), "{e}");
    }

    #[test]
    fn log_cleaner_keys_are_kafkas_and_checked() {
        let c = file(MIN);
        assert_eq!(
            c.log_cleaner,
            spate_broker::config::LogCleanerConfig::default()
        );
        let c = file(&format!(
            "{MIN}log.cleaner.threads = 2\nlog.cleaner.backoff.ms = 100\n\
             log.cleaner.dedupe.buffer.size = 2097152\nlog.cleaner.io.max.bytes.per.second = 1000\n\
             log.cleaner.enable = false\n"
        ));
        assert_eq!(c.log_cleaner.threads, 2);
        assert_eq!(c.log_cleaner.backoff, Duration::from_millis(100));
        assert_eq!(c.log_cleaner.dedupe_buffer_bytes, 2 << 20);
        assert_eq!(c.log_cleaner.io_max_bytes_per_second, Some(1000));
        assert!(!c.log_cleaner.enabled);
        for bad in [
            "log.cleaner.threads = 0",
            "log.cleaner.dedupe.buffer.size = 1000",
            "log.cleaner.io.max.bytes.per.second = 0",
            "log.cleaner.enable = maybe",
        ] {
            let e = error(&format!("{MIN}{bad}\n"));
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn topic_config_defaults_take_kafkas_broker_names() {
        assert_eq!(file(MIN).topic_defaults, TopicDefaults::default());
        let c = file(&format!(
            "{MIN}log.cleanup.policy = 'compact'\nlog.cleaner.min.cleanable.ratio = 0.1\n"
        ));
        assert_eq!(c.topic_defaults.get("cleanup.policy"), Some("compact"));
        assert_eq!(
            c.topic_defaults.get("min.cleanable.dirty.ratio"),
            Some("0.1")
        );
        assert!(c
            .effective()
            .iter()
            .any(|(k, v, s)| *k == "log.cleanup.policy"
                && v == "compact"
                && *s == Source::File("spate.toml".into())));
        // The environment names them too.
        let c = run(Some(MIN), &[("SPATE_LOG_RETENTION_MS", "1000")], &[]).unwrap();
        assert_eq!(c.topic_defaults.get("retention.ms"), Some("1000"));
        let e = error(&format!("{MIN}log.cleanup.policy = 'shred'\n"));
        assert!(
            e.contains("log.cleanup.policy must be a list of delete|compact, got 'shred'"),
            "{e}"
        );
        let e = error(&format!("{MIN}min.insync.replicas = 2\n"));
        assert!(e.contains("set it per topic"), "{e}");
    }

    #[test]
    fn retention_runs_every_check_interval_five_minutes_by_default() {
        assert_eq!(
            file(MIN).log_retention_check_interval,
            Duration::from_secs(300)
        );
        let c = file(&format!("{MIN}log.retention.check.interval.ms = 1500\n"));
        assert_eq!(c.log_retention_check_interval, Duration::from_millis(1500));
        let e = error(&format!("{MIN}log.retention.check.interval.ms = 0\n"));
        assert!(e.contains("log.retention.check.interval.ms"), "{e}");
    }

    #[test]
    fn group_keys_default_to_kafkas_and_are_checked() {
        let g = file(MIN).groups;
        assert_eq!(
            (
                g.initial_rebalance_delay_ms,
                g.min_session_timeout_ms,
                g.max_session_timeout_ms
            ),
            (3000, 6000, 1_800_000)
        );
        let c = file(&format!(
            "{MIN}group.initial.rebalance.delay.ms = 0\ngroup.min.session.timeout.ms = 1000\n"
        ));
        assert_eq!(
            (
                c.groups.initial_rebalance_delay_ms,
                c.groups.min_session_timeout_ms
            ),
            (0, 1000)
        );
        let e = error(&format!(
            "{MIN}group.min.session.timeout.ms = 9000\ngroup.max.session.timeout.ms = 8000\n"
        ));
        assert!(e.contains("no consumer could join"), "{e}");
        let e = error(&format!("{MIN}group.initial.rebalance.delay.ms = -1\n"));
        assert!(e.contains("group.initial.rebalance.delay.ms"), "{e}");
    }

    #[test]
    fn unknown_spate_variables_are_reported_with_the_nearest_key() {
        let env: BTreeMap<String, String> = [
            "SPATE_NODE_ID",
            "SPATE_NODE_IDD",
            "SPATE_BOOTSTRAP",
            "SPATE_PORT",
            "SPATE_LEADER_IMBALANCE_CHECK_INTERVAL_SECONDS",
        ]
        .iter()
        .map(|k| (k.to_string(), "1".to_string()))
        .collect();
        assert_eq!(
            unknown_env(&env),
            vec![
                (
                    "SPATE_NODE_IDD".to_string(),
                    " (did you mean 'node.id'?)".to_string()
                ),
                ("SPATE_PORT".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn node_id_comes_from_the_hostname_ordinal_when_asked() {
        let on = |host: Option<&str>| {
            resolve_on_host(
                Some((Path::new("spate.toml"), "node.id = 'hostname'\ncontroller.quorum.voters = '0@spate-0.h:9093,1@spate-1.h:9093,2@spate-2.h:9093'\nadvertised.listeners = 'x:9092'\n")),
                &BTreeMap::new(),
                &ConfigFlags::default(),
                host,
            )
        };
        let c = on(Some("spate-2")).unwrap();
        assert_eq!(c.node_id, NodeId(2));
        assert!(c.node_id_from_hostname);
        assert_eq!(c.effective()[0].1, "2 (the host name's ordinal)");
        assert_eq!(hostname_ordinal("spate-12.spate-headless.ns.svc"), Some(12));
        assert_eq!(hostname_ordinal("my-cluster-3"), Some(3));
        for bad in ["spate", "spate-", "spate-x1", "spate-1a", ""] {
            assert_eq!(hostname_ordinal(bad), None, "{bad}");
        }
        let e = on(Some("laptop")).unwrap_err().to_string();
        assert!(e.contains("'laptop' does not end in -N"), "{e}");
        let e = on(None).unwrap_err().to_string();
        assert!(e.contains("'' does not end in -N"), "{e}");
    }

    #[test]
    fn numbers_and_booleans_are_range_checked() {
        assert!(error(&format!("{MIN}num.partitions = 0\n"))
            .starts_with("num.partitions: '0' is not an integer >= 1"));
        assert!(error(&format!("{MIN}default.replication.factor = 40000\n"))
            .contains("from 1 to 32767"));
        assert!(error(&format!("{MIN}socket.request.max.bytes = 0\n")).contains("byte count"));
        assert!(error(&format!("{MIN}socket.request.max.bytes = 1.5\n")).contains("byte count"));
        assert!(error(&format!("{MIN}auto.create.topics.enable = 'yes'\n"))
            .contains("is not true or false"));
        assert!(error(&format!("{MIN}broker.rack = ''\n")).contains("leave broker.rack unset"));
        let c = run(Some(MIN), &[], &["--auto-create-topics-enable", "false"]).unwrap();
        assert!(!c.auto_create_topics);
    }

    #[test]
    fn every_key_and_alias_has_a_flag_and_an_env_var() {
        let cmd = <Cli as clap::CommandFactory>::command();
        let longs: Vec<String> = cmd
            .get_arguments()
            .filter_map(|a| a.get_long())
            .map(|l| format!("--{l}"))
            .collect();
        // Topic-config defaults (`log.cleanup.policy`, ...) are set in the file or the
        // environment only.
        let flagged = all_names().filter(|n| topic_defaults::topic_key_of(n).is_none());
        for name in flagged {
            assert!(longs.contains(&flag(name)), "no flag for {name}");
        }
        assert_eq!(longs.len(), KEYS.len() + ALIASES.len());
        assert_eq!(
            env_var("controller.quorum.voters"),
            "SPATE_CONTROLLER_QUORUM_VOTERS"
        );
        assert_eq!(ConfigFlags::default().given().len(), 0);
        // Every env var is read.
        for name in all_names() {
            // A blank is a valid empty list for `log.cleanup.policy`; no topic config takes this.
            let bad = match topic_defaults::topic_key_of(name) {
                Some(_) => "x!",
                None => " ",
            };
            let e = run(Some(MIN), &[(&env_var(name), bad)], &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains(&env_var(name)), "{name}: {e}");
        }
    }

    #[test]
    fn examples_in_the_docs_are_valid() {
        let doc = include_str!("../docs/configuration.md");
        let blocks: Vec<&str> = doc
            .split("```toml\n")
            .skip(1)
            .map(|b| b.split("```").next().unwrap())
            .collect();
        assert_eq!(blocks.len(), 3);
        let three = file(blocks[0]);
        assert_eq!(three.voters.len(), 3);
        assert_eq!(three.listeners[0].advertised.host, "kafka-1.example");
        let env = [
            ("SPATE_NODE_ID", "2"),
            (
                "SPATE_ADVERTISED_LISTENERS",
                "PLAINTEXT://kafka-2.example:9092",
            ),
        ];
        assert_eq!(run(Some(blocks[0]), &env, &[]).unwrap().node_id, NodeId(2));
        assert_eq!(file(blocks[1]).data_dir, PathBuf::from("./spate-data"));
        for name in topic_defaults::broker_names() {
            assert!(
                doc.contains(&format!("`{name}`")),
                "{name} is not documented"
            );
        }
        let defaults = file(&format!("{MIN}{}", blocks[2])).topic_defaults;
        assert_eq!(defaults.get("cleanup.policy"), Some("compact"));
        assert_eq!(defaults.get("min.cleanable.dirty.ratio"), Some("0.1"));
    }
}
