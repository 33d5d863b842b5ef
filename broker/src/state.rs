//! [`BrokerState`]: what every connection and background task of one broker shares. It
//! holds the subsystems (metadata image, partitions, controller link, fetchers, groups,
//! metrics) and nothing above them: handlers, the Kafka server and the wiring in
//! `broker.rs` use it; the subsystems it holds never name it (see docs/architecture.md).
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::Duration;

use spate_metadata::ids::NodeId;

use tokio::sync::watch;

use crate::config::BrokerConfig;
use crate::faults::{FaultLayer, LinkFaults};
use crate::fetch_session::FetchSessionCache;
use crate::metadata::controller_link::ControllerLink;
use crate::metadata::MetadataCache;
use crate::metrics::ScrapeSources;
use crate::partition::{Partition, TopicPartition};
use crate::replica_manager::ReplicaManager;
use crate::replication::fetcher::{FetcherContext, ReplicaFetchers, REPLICATION_LISTENER};
use crate::replication::isr_queue::IsrUpdater;

/// State shared by every connection and background task of one broker.
pub struct BrokerState {
    /// Start-up settings.
    pub config: BrokerConfig,
    /// The Kafka endpoints this broker registers, one per listener (advertised host and
    /// port; port 0 in the config resolved to the bound port), inter-broker listener first.
    pub endpoints: Vec<spate_proto::metadata::Endpoint>,
    /// Set once a controlled shutdown (drain) began: heartbeats keep asking the controller
    /// to keep us fenced and leaderless, and we are not ready any more.
    pub draining: watch::Sender<bool>,
    /// Metadata image followed from the controller.
    pub metadata: MetadataCache,
    /// Hosted partitions.
    pub replicas: ReplicaManager,
    /// Link to the active controller.
    pub controller: ControllerLink,
    /// Incremental fetch sessions.
    pub fetch_sessions: FetchSessionCache,
    /// The log directory's id (see [`crate::log_dir_id`]).
    pub log_dir_id: String,
    /// Our registration's broker epoch (-1 until registered).
    pub broker_epoch: AtomicI64,
    /// The port other brokers fetch from.
    pub replication_port: u16,
    /// Follower fetchers, one per leader.
    pub fetchers: ReplicaFetchers,
    /// ISR changes on their way to the controller.
    pub isr_updater: IsrUpdater,
    /// Injected link faults (tests).
    pub faults: Arc<LinkFaults>,
    /// Prometheus metrics.
    pub metrics: crate::metrics::Metrics,
    /// Consumer groups coordinated here.
    pub groups: crate::group::coordinator::GroupCoordinator,
    /// Producer ids for InitProducerId.
    pub producer_ids: crate::producer_ids::ProducerIdBlocks,
    /// Connection and memory limits of the Kafka listeners.
    pub limits: Arc<crate::limits::NetworkLimits>,
}

impl BrokerState {
    /// A broker state wired to nothing (a controller address nobody listens on), for
    /// unit tests of what reads it.
    #[cfg(test)]
    pub(crate) fn unconnected(dir: &std::path::Path) -> BrokerState {
        use crate::config::BrokerConfig;
        let mut config = BrokerConfig::new(1, dir);
        config.controller.addrs = vec!["127.0.0.1:1".to_string()];
        let faults = std::sync::Arc::new(crate::faults::LinkFaults::default());
        BrokerState {
            endpoints: Vec::new(),
            draining: tokio::sync::watch::Sender::new(false),
            metadata: Default::default(),
            replicas: crate::replica_manager::ReplicaManager::new(
                1,
                config.logs(),
                config.topics.configs.clone(),
            ),
            controller: crate::metadata::controller_link::ControllerLink::new(
                &config.controller,
                faults.clone(),
            ),
            fetch_sessions: crate::fetch_session::FetchSessionCache::new(10),
            broker_epoch: std::sync::atomic::AtomicI64::new(-1),
            log_dir_id: "test-log-dir".to_string(),
            replication_port: 9093,
            fetchers: Default::default(),
            isr_updater: Default::default(),
            faults,
            producer_ids: Default::default(),
            groups: crate::group::coordinator::GroupCoordinator::new(config.groups.clone()),
            metrics: Default::default(),
            limits: crate::limits::NetworkLimits::new(config.network.limits.clone()),
            config,
        }
    }

    /// What the scrape-time gauges are computed from.
    pub fn scrape_sources(&self) -> ScrapeSources {
        ScrapeSources {
            image: self.metadata.image(),
            partitions: self.replicas.all(),
            node_id: self.config.node_id,
            committed_offsets: self.groups.committed_offsets(),
            offline_replicas: self.replicas.offline_replicas().len(),
            log_failures: self.replicas.failures().count(),
            open_connections: self.limits.open_connections(),
            queued_request_bytes: self.limits.queued_request_bytes(),
            fetch_memory_bytes: self.limits.fetch_memory_in_use(),
        }
    }
}

impl FetcherContext for BrokerState {
    fn node_id(&self) -> i32 {
        self.config.node_id
    }

    fn broker_epoch(&self) -> i64 {
        self.broker_epoch.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn max_wait(&self) -> Duration {
        self.config.replication.fetch_max_wait
    }

    fn transport_layer(&self) -> FaultLayer {
        FaultLayer::new(self.faults.clone())
    }

    fn replication_address(&self, leader: NodeId) -> Option<String> {
        let image = self.metadata.image();
        let broker = image.broker(leader)?;
        let ep = broker
            .endpoints
            .iter()
            .find(|e| e.listener == REPLICATION_LISTENER)?;
        Some(format!("{}:{}", ep.host, ep.port))
    }

    fn hosted(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.replicas.get(&tp.topic, tp.partition)
    }
}
