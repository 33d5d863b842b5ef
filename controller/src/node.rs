//! Starting and stopping a controller node: sled in `data_dir/controller`, openraft, and
//! the Raft + Controller gRPC services on one listener.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::metrics::WaitError;
use openraft::{BasicNode, SnapshotPolicy};
use spate_proto::controller::DescribeQuorumResponse;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::StreamExt;

use crate::decisions::TopicDefaults;
use crate::error::ControllerError;
use crate::network::{raft_server, NetworkFactory};
use crate::service::{liveness, rebalance, ControllerService};
use crate::store::{self, MetadataView};
use crate::types::{RaftNodeId, SpateRaft};
use spate_metadata::MetadataImage;

/// Raft timing and snapshot knobs; the defaults suit a LAN and a small metadata log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftTuning {
    /// Leader heartbeat period (ms).
    pub heartbeat_ms: u64,
    /// Lower bound of the randomized election timeout (ms).
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomized election timeout (ms).
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Log entries kept behind the last snapshot, so a briefly lagging voter catches up
    /// from the log instead of a full snapshot transfer.
    pub keep_logs_after_snapshot: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 150,
            election_timeout_min_ms: 600,
            election_timeout_max_ms: 1200,
            snapshot_every_entries: 5000,
            keep_logs_after_snapshot: 1000,
        }
    }
}

/// How to run one controller node.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This node's Raft id; stable across restarts.
    pub node_id: u64,
    /// Data lives in `data_dir/controller`.
    pub data_dir: PathBuf,
    /// All voters as (id, "host:port"). The local entry may use port 0 or be empty when
    /// the caller binds an ephemeral port: the listener's address is used instead.
    pub voters: Vec<(u64, String)>,
    /// A broker without a heartbeat for this long is fenced.
    pub session_timeout: Duration,
    /// How often brokers are expected to heartbeat (must be below the session timeout).
    pub heartbeat_interval: Duration,
    /// `num.partitions` for topics created without a count.
    pub default_num_partitions: i32,
    /// `default.replication.factor` for topics created without one.
    pub default_replication_factor: i32,
    /// Kafka's `auto.leader.rebalance.enable`: periodically move leadership back to
    /// preferred replicas.
    pub auto_leader_rebalance: bool,
    /// Kafka's `leader.imbalance.check.interval.seconds` (default 300 s).
    pub leader_imbalance_check_interval: Duration,
    /// Raft timing.
    pub raft: RaftTuning,
}

impl Default for ControllerConfig {
    /// Node 1 alone, data in `./spate-data` (as `spate dev`).
    fn default() -> Self {
        ControllerConfig::single(1, "spate-data")
    }
}

impl ControllerConfig {
    /// A config with Kafka-like defaults (9 s sessions, 1 s heartbeats, 1 partition, RF 1).
    pub fn new(
        node_id: u64,
        data_dir: impl Into<PathBuf>,
        voters: Vec<(u64, String)>,
    ) -> ControllerConfig {
        ControllerConfig {
            node_id,
            data_dir: data_dir.into(),
            voters,
            session_timeout: Duration::from_secs(9),
            heartbeat_interval: Duration::from_secs(1),
            default_num_partitions: 1,
            default_replication_factor: 1,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval: Duration::from_secs(300),
            raft: RaftTuning::default(),
        }
    }

    /// A one-voter quorum of just this node.
    pub fn single(node_id: u64, data_dir: impl Into<PathBuf>) -> ControllerConfig {
        ControllerConfig::new(node_id, data_dir, vec![(node_id, String::new())])
    }

    fn validate(&self) -> Result<(), ControllerError> {
        let bad = |m: String| Err(ControllerError::Config(m));
        if !self.voters.iter().any(|(id, _)| *id == self.node_id) {
            return bad(format!(
                "node {} is not in the voter list {:?}",
                self.node_id, self.voters
            ));
        }
        let mut ids: Vec<u64> = self.voters.iter().map(|v| v.0).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.voters.len() {
            return bad(format!("duplicate voter ids in {:?}", self.voters));
        }
        if self.voters.len() > 1
            && self
                .voters
                .iter()
                .any(|(id, a)| *id != self.node_id && a.is_empty())
        {
            return bad("every other voter needs an address".to_string());
        }
        if self.heartbeat_interval >= self.session_timeout {
            return bad(format!(
                "heartbeat interval {:?} must be below the session timeout {:?}",
                self.heartbeat_interval, self.session_timeout
            ));
        }
        if self.default_num_partitions <= 0 || self.default_replication_factor <= 0 {
            return bad("default partitions and replication factor must be positive".to_string());
        }
        if self.auto_leader_rebalance && self.leader_imbalance_check_interval.is_zero() {
            return bad("the leader imbalance check interval must be positive".to_string());
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, ControllerError> {
        let config = openraft::Config {
            cluster_name: "spate-controller".to_string(),
            heartbeat_interval: self.raft.heartbeat_ms,
            election_timeout_min: self.raft.election_timeout_min_ms,
            election_timeout_max: self.raft.election_timeout_max_ms,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.raft.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.raft.keep_logs_after_snapshot,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ControllerError::Config(e.to_string()))
    }
}

/// A running controller node.
pub struct ControllerHandle {
    node_id: RaftNodeId,
    raft: SpateRaft,
    view: MetadataView,
    service: ControllerService,
    local_addr: SocketAddr,
    shutdown_tx: watch::Sender<bool>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    liveness: JoinHandle<()>,
    rebalance: Option<JoinHandle<()>>,
    db: sled::Db,
}

/// How long to wait for a previous instance in this process to release the sled lock.
const DB_LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens sled, waiting briefly if a just-stopped instance still holds the file lock.
async fn open_db(path: &Path) -> Result<sled::Db, ControllerError> {
    let deadline = Instant::now() + DB_LOCK_WAIT;
    loop {
        let p = path.to_path_buf();
        let opened = tokio::task::spawn_blocking(move || sled::Config::new().path(p).open())
            .await
            .map_err(|e| ControllerError::Raft(format!("sled open task failed: {e}")))?;
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Starts a controller node serving on `listener` (bind port 0 and read `local_addr`).
/// A fresh cluster is initialized by the lowest voter id; a restarted node resumes from
/// its own state.
pub async fn start(
    config: ControllerConfig,
    listener: TcpListener,
) -> Result<ControllerHandle, ControllerError> {
    config.validate()?;
    let local_addr = listener.local_addr()?;
    let raft_config = Arc::new(config.raft_config()?);
    let db = open_db(&config.data_dir.join("controller")).await?;
    let (log, sm, view) = store::open(&db)?;
    let network = NetworkFactory::new(config.node_id);
    let raft = openraft::Raft::new(config.node_id, raft_config, network, log, sm)
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let defaults = TopicDefaults {
        num_partitions: config.default_num_partitions,
        replication_factor: config.default_replication_factor,
    };
    let service = ControllerService::new(
        config.node_id,
        raft.clone(),
        view.clone(),
        config.session_timeout,
        defaults,
        shutdown_rx.clone(),
    );
    let router = tonic::transport::Server::builder()
        .add_service(raft_server(raft.clone()))
        .add_service(service.clone().into_server());
    let mut stop = shutdown_rx.clone();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        // TCP_NODELAY: the builder's setting does not reach connections we accept ourselves,
        // and Nagle plus delayed ACKs would add ~40 ms to small Raft and admin messages.
        TcpListenerStream::new(listener).map(|conn| {
            if let Ok(stream) = &conn {
                let _ = stream.set_nodelay(true);
            }
            conn
        }),
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
    ));
    let tick = liveness::tick_for(config.session_timeout);
    let rebalance = config.auto_leader_rebalance.then(|| {
        let interval = config.leader_imbalance_check_interval;
        tokio::spawn(rebalance::run(
            service.clone(),
            interval,
            shutdown_rx.clone(),
        ))
    });
    let liveness = tokio::spawn(liveness::run(service.clone(), tick, shutdown_rx));

    let handle = ControllerHandle {
        node_id: config.node_id,
        raft,
        view,
        service,
        local_addr,
        shutdown_tx,
        server,
        liveness,
        rebalance,
        db,
    };
    if let Err(e) = initialize_if_fresh(&handle.raft, &config, local_addr).await {
        let _ = handle.shutdown().await;
        return Err(e);
    }
    tracing::info!(node = config.node_id, addr = %local_addr, "controller started");
    Ok(handle)
}

/// Initializes the cluster on its first start: only the lowest voter id does it, so
/// exactly one node proposes the initial membership.
async fn initialize_if_fresh(
    raft: &SpateRaft,
    config: &ControllerConfig,
    local: SocketAddr,
) -> Result<(), ControllerError> {
    if raft
        .is_initialized()
        .await
        .map_err(|e| ControllerError::Raft(e.to_string()))?
    {
        return Ok(());
    }
    let lowest = config.voters.iter().map(|v| v.0).min();
    if lowest != Some(config.node_id) {
        tracing::info!(
            node = config.node_id,
            "waiting for node {lowest:?} to initialize the quorum"
        );
        return Ok(());
    }
    let members: BTreeMap<RaftNodeId, BasicNode> = config
        .voters
        .iter()
        .map(|(id, addr)| {
            let own_ephemeral = *id == config.node_id && (addr.is_empty() || addr.ends_with(":0"));
            let addr = if own_ephemeral {
                local.to_string()
            } else {
                addr.clone()
            };
            (*id, BasicNode { addr })
        })
        .collect();
    match raft.initialize(members).await {
        Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        Err(e) => Err(ControllerError::Raft(format!(
            "initializing the quorum failed: {e}"
        ))),
    }
}

fn wait_error(e: WaitError, what: &str) -> ControllerError {
    match e {
        WaitError::Timeout(t, _) => ControllerError::Timeout(format!("{what} after {t:?}")),
        WaitError::ShuttingDown => ControllerError::ShuttingDown,
    }
}

impl ControllerHandle {
    /// The address both gRPC services listen on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    /// A copy of the currently applied metadata image.
    pub fn image(&self) -> MetadataImage {
        self.view.image()
    }

    /// A read handle on the applied metadata (image, offsets, change broadcast).
    pub fn view(&self) -> &MetadataView {
        &self.view
    }

    /// The openraft node, for membership changes and metrics.
    pub fn raft(&self) -> &SpateRaft {
        &self.raft
    }

    /// Waits until some node is leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64, ControllerError> {
        let m = self
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|e| wait_error(e, "no leader elected"))?;
        m.current_leader
            .ok_or_else(|| ControllerError::Timeout("no leader elected".to_string()))
    }

    /// Waits until this node has applied the metadata batch at `offset`.
    pub async fn wait_for_offset(
        &self,
        offset: u64,
        timeout: Duration,
    ) -> Result<(), ControllerError> {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(offset), "metadata offset")
            .await
            .map_err(|e| wait_error(e, &format!("offset {offset} not applied")))?;
        Ok(())
    }

    /// Builds a snapshot now (normally done every `snapshot_every_entries`).
    pub async fn trigger_snapshot(&self) -> Result<(), ControllerError> {
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ControllerError::Raft(e.to_string()))
    }

    /// Leader, term and indexes, as `DescribeQuorum` reports them.
    pub fn describe_quorum(&self) -> DescribeQuorumResponse {
        self.service.describe_quorum_now()
    }

    /// Stops serving, shuts Raft down and flushes sled. Watch streams end with UNAVAILABLE.
    pub async fn shutdown(self) -> Result<(), ControllerError> {
        let _ = self.shutdown_tx.send(true);
        let _ = self.liveness.await;
        if let Some(rebalance) = self.rebalance {
            let _ = rebalance.await;
        }
        let mut server = self.server;
        match tokio::time::timeout(Duration::from_secs(5), &mut server).await {
            Ok(Ok(Err(e))) => {
                tracing::warn!(error = %e, "controller gRPC server stopped with an error")
            }
            Ok(_) => {}
            Err(_) => {
                tracing::warn!("controller gRPC server did not stop in 5 s; aborting it");
                server.abort();
            }
        }
        self.raft
            .shutdown()
            .await
            .map_err(|e| ControllerError::Raft(format!("raft shutdown: {e}")))?;
        self.db.flush_async().await?;
        tracing::info!(node = self.node_id, "controller stopped");
        Ok(())
    }
}
