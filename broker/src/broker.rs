//! Wiring: [`Broker::start`] binds nothing itself (the caller passes a bound listener, so
//! tests can use port 0), starts the controller link, metadata follower, maintenance and
//! the Kafka listener, and returns a handle that shuts them all down cleanly.
use std::net::SocketAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use spate_metadata::ids::NodeId;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::config::BrokerConfig;
use crate::controlled_shutdown::ControlledShutdown;
use crate::faults::{FaultLayer, LinkFaults};
use crate::fetch_session::FetchSessionCache;
use crate::metadata::controller_link::ControllerLink;
use crate::metadata::{follower, MetadataCache};
use crate::replica_manager::ReplicaManager;
use crate::replication::fetcher::ReplicaFetchers;
use crate::replication::isr_queue::IsrUpdater;
use crate::replication::isr_updater;
use crate::replication::server::ReplicationService;
use crate::server::listener;
use crate::state::BrokerState;

/// A running broker.
pub struct Broker {
    state: Arc<BrokerState>,
    local_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Starts serving Kafka on `listeners` (one bound socket per entry of
    /// `config.network.listeners`, in that order) and replication on `replication_listener`.
    pub async fn start(
        config: BrokerConfig,
        listeners: Vec<TcpListener>,
        replication_listener: TcpListener,
    ) -> std::io::Result<Broker> {
        if listeners.is_empty() || listeners.len() != config.network.listeners.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "{} Kafka listener sockets for {} configured listeners",
                    listeners.len(),
                    config.network.listeners.len()
                ),
            ));
        }
        let local_addr = listeners[0].local_addr()?;
        let replication_addr = replication_listener.local_addr()?;
        config.logs().create()?;
        let log_dir_id = crate::log_dir_id::load_or_create(&config.logs())?;
        let mut endpoints = Vec::with_capacity(listeners.len());
        for (spec, socket) in config.network.listeners.iter().zip(&listeners) {
            let port = match spec.advertised_port {
                0 => socket.local_addr()?.port(),
                p => p,
            };
            endpoints.push(spate_proto::metadata::Endpoint {
                listener: spec.name.clone(),
                host: spec.advertised_host.clone(),
                port: i32::from(port),
            });
        }
        let faults = Arc::new(LinkFaults::default());
        let state = Arc::new(BrokerState {
            endpoints,
            draining: tokio::sync::watch::Sender::new(false),
            metadata: MetadataCache::default(),
            replicas: ReplicaManager::new(
                config.node_id,
                config.logs(),
                config.topics.configs.clone(),
            ),
            controller: ControllerLink::new(&config.controller, faults.clone()),
            fetch_sessions: FetchSessionCache::new(config.network.fetch_session_slots),
            broker_epoch: AtomicI64::new(-1),
            log_dir_id,
            replication_port: if config.replication.advertised_port == 0 {
                replication_addr.port()
            } else {
                config.replication.advertised_port
            },
            fetchers: ReplicaFetchers::default(),
            isr_updater: IsrUpdater::default(),
            faults,
            producer_ids: Default::default(),
            groups: crate::group::coordinator::GroupCoordinator::new(config.groups.clone()),
            metrics: Default::default(),
            limits: crate::limits::NetworkLimits::new(config.network.limits.clone()),
            config,
        });
        let (shutdown, shutdown_rx) = watch::channel(false);
        let replication = ReplicationService::new(state.clone()).into_server();
        let mut stop = shutdown_rx.clone();
        let faults_in = state.faults.clone();
        let replication_server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .tcp_nodelay(true)
                // Injected link faults act on the transport, not in the service.
                .layer(FaultLayer::new(faults_in))
                .add_service(replication)
                .serve_with_incoming_shutdown(
                    // The builder's TCP_NODELAY applies only to listeners tonic binds itself:
                    // without it, Nagle plus delayed ACKs add ~40 ms to every fetch answer.
                    no_delay(replication_listener),
                    async move {
                        let _ = stop.wait_for(|s| *s).await;
                    },
                )
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "replication service stopped");
            }
        });
        let mut tasks = vec![
            replication_server,
            tokio::spawn(isr_updater::run(state.clone(), shutdown_rx.clone())),
            tokio::spawn(isr_updater::expire_lagging(
                state.clone(),
                shutdown_rx.clone(),
            )),
            tokio::spawn(follower::run(state.clone(), shutdown_rx.clone())),
            tokio::spawn(maintenance(state.clone(), shutdown_rx.clone())),
            tokio::spawn(crate::log_cleaner::run(state.clone(), shutdown_rx.clone())),
        ];
        for (socket, spec) in listeners.into_iter().zip(&state.config.network.listeners) {
            let name: Arc<str> = Arc::from(spec.name.as_str());
            tasks.push(tokio::spawn(listener::run(
                socket,
                name,
                state.clone(),
                shutdown_rx.clone(),
            )));
        }
        tracing::info!(node_id = state.config.node_id, addr = %local_addr, replication = %replication_addr, "broker listening");
        Ok(Broker {
            state,
            local_addr,
            shutdown,
            tasks,
        })
    }

    /// Address the Kafka listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Shared state (tests and the admin endpoints read it).
    pub fn state(&self) -> &Arc<BrokerState> {
        &self.state
    }

    /// Whether the broker is registered and unfenced in the metadata it follows.
    pub fn is_ready(&self) -> bool {
        let image = self.state.metadata.image();
        image
            .broker(NodeId(self.state.config.node_id))
            .is_some_and(|b| !b.fenced)
    }

    /// Controlled shutdown: see [`crate::controlled_shutdown`].
    pub async fn controlled_shutdown(&self, timeout: Duration) -> ControlledShutdown {
        crate::controlled_shutdown::run(&self.state, timeout).await
    }

    /// Waits until [`Broker::is_ready`] or the timeout.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let node = self.state.config.node_id;
        let image = self
            .state
            .metadata
            .wait_until(timeout, |i| {
                i.broker(NodeId(node)).is_some_and(|b| !b.fenced)
            })
            .await;
        image.broker(NodeId(node)).is_some_and(|b| !b.fenced)
    }

    /// Stops accepting, stops background tasks, flushes and closes every log.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.state.fetchers.stop_all();
        self.state.groups.resign_all();
        for task in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.replicas.close_all()).await;
        tracing::info!("broker stopped");
    }
}

/// Accepted connections with TCP_NODELAY set (small replication answers go out at once).
pub fn no_delay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        if let Ok(stream) = &conn {
            let _ = stream.set_nodelay(true);
        }
        conn
    })
}

/// Interval flushes and checkpoints every `log_maintenance_interval`; retention every
/// `log.retention.check.interval.ms`, the first one interval after start (as Kafka's
/// log manager: records backfilled with old timestamps are not deleted the moment they
/// are acknowledged).
async fn maintenance(state: Arc<BrokerState>, mut shutdown: watch::Receiver<bool>) {
    let mut ticker = tokio::time::interval(state.config.log_maintenance_interval);
    let every = state.config.log_retention_check_interval;
    let mut next_retention = tokio::time::Instant::now() + every;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let now = tokio::time::Instant::now();
                let retention = now >= next_retention;
                if retention {
                    next_retention = now + every;
                }
                let s = state.clone();
                let _ = tokio::task::spawn_blocking(move || s.replicas.maintain(now_ms(), retention)).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
