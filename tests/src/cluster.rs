//! In-process three-node clusters (each node a controller voter and a broker, on
//! 127.0.0.1 with ephemeral ports), with raw Kafka produce/fetch helpers and link-fault
//! injection, for the cluster and replication tests.
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use spate::node::{Node, NodeConfig};
use spate_broker::partition::Partition;
use spate_log::power_loss::PowerLossFs;
use spate_metadata::MetadataImage;
use std::sync::Arc;

use crate::RawConnection;

/// Options of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Controller session timeout (a silent broker is fenced after it).
    pub session_timeout: Duration,
    /// Broker heartbeat interval.
    pub heartbeat_interval: Duration,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max: Duration,
    /// Put every broker's data on a [`PowerLossFs`] (power cuts, injected I/O errors).
    pub simulated_storage: bool,
    /// `log.cleaner.backoff.ms`.
    pub log_cleaner_backoff: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            session_timeout: Duration::from_secs(3),
            heartbeat_interval: Duration::from_millis(300),
            replica_lag_time_max: Duration::from_secs(10),
            simulated_storage: false,
            log_cleaner_backoff: spate_broker::config::LogCleanerConfig::default().backoff,
        }
    }
}

/// Three combined nodes, ids 1..=3.
pub struct Cluster {
    configs: Vec<NodeConfig>,
    nodes: Vec<Option<Node>>,
    /// Each node's simulated storage, with [`ClusterOptions::simulated_storage`].
    storages: Vec<Option<Arc<PowerLossFs>>>,
    _dir: tempfile::TempDir,
}

/// A free port on 127.0.0.1 (released before use; fine for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Kafka topic name.
pub fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

impl Cluster {
    /// Starts three nodes with default options and waits until all are unfenced.
    pub async fn start() -> Cluster {
        Cluster::start_with(ClusterOptions::default()).await
    }

    /// Starts three nodes and waits until all are unfenced. Ports are picked free and then
    /// bound, so a parallel test can take one in between: on a bind failure the attempt is
    /// torn down and repeated with fresh ports.
    pub async fn start_with(options: ClusterOptions) -> Cluster {
        for attempt in 1..=5 {
            match Cluster::try_start(&options).await {
                Ok(cluster) => {
                    cluster
                        .wait_image(Duration::from_secs(30), |img| {
                            img.unfenced_brokers().len() == 3
                        })
                        .await
                        .expect("three unfenced brokers");
                    return cluster;
                }
                Err(e) if attempt < 5 => {
                    tracing::warn!(error = %e, attempt, "cluster did not start; retrying with fresh ports")
                }
                Err(e) => panic!("cluster did not start: {e:#}"),
            }
        }
        unreachable!("the last attempt panics")
    }

    async fn try_start(options: &ClusterOptions) -> anyhow::Result<Cluster> {
        let dir = tempfile::tempdir()?;
        let controller_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let voters: Vec<(u64, String)> = (0..3)
            .map(|i| (i as u64 + 1, format!("127.0.0.1:{}", controller_ports[i])))
            .collect();
        let storages: Vec<Option<Arc<PowerLossFs>>> = (0..3)
            .map(|_| options.simulated_storage.then(PowerLossFs::new))
            .collect();
        let configs: Vec<NodeConfig> = (0..3)
            .map(|i| NodeConfig {
                storage: match &storages[i] {
                    Some(fs) => fs.clone(),
                    None => spate_broker::storage::LocalFs::shared(),
                },
                node_id: i as i32 + 1,
                controller_addr: format!("127.0.0.1:{}", controller_ports[i])
                    .parse()
                    .unwrap(),
                kafka_addr: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                admin_addr: Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
                voters: voters.clone(),
                session_timeout: options.session_timeout,
                heartbeat_interval: options.heartbeat_interval,
                replica_lag_time_max: options.replica_lag_time_max,
                log_cleaner: spate_broker::config::LogCleanerConfig {
                    backoff: options.log_cleaner_backoff,
                    ..Default::default()
                },
                wait_ready: None,
                ..NodeConfig::ephemeral(dir.path().join(format!("node{}", i + 1)))
            })
            .collect();
        let started = futures::future::join_all(configs.iter().cloned().map(Node::start)).await;
        let mut nodes = Vec::new();
        let mut failure = None;
        for n in started {
            match n {
                Ok(node) => nodes.push(Some(node)),
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            for node in nodes.into_iter().flatten() {
                node.shutdown().await;
            }
            return Err(e);
        }
        Ok(Cluster {
            configs,
            nodes,
            storages,
            _dir: dir,
        })
    }

    /// A live node.
    pub fn node(&self, id: i32) -> &Node {
        self.nodes[id as usize - 1]
            .as_ref()
            .expect("node is running")
    }

    /// Node `id`'s bound HTTP admin address.
    pub fn admin_addr(&self, id: i32) -> std::net::SocketAddr {
        self.node(id).admin_addr.expect("admin server is running")
    }

    /// Whether node `id` runs.
    pub fn is_running(&self, id: i32) -> bool {
        self.nodes[id as usize - 1].is_some()
    }

    /// Every live node.
    pub fn live(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().flatten()
    }

    /// The active controller's node id, if a live node knows one.
    pub fn active_controller(&self) -> Option<i32> {
        self.live()
            .filter_map(|n| n.controller.as_ref())
            .map(|c| c.describe_quorum())
            .find(|q| q.has_leader)
            .map(|q| q.leader_id as i32)
    }

    /// Polls live controllers' images until `ready` holds on one of them.
    pub async fn wait_image(
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

    /// Polls until `ready` holds, or the timeout.
    pub async fn wait_for(&self, timeout: Duration, ready: impl Fn(&Cluster) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready(self) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        ready(self)
    }

    /// The newest controller image a live node has (a restarted controller may still be
    /// replaying an old one).
    pub fn newest_image(&self) -> Option<MetadataImage> {
        self.live()
            .filter_map(|n| n.controller.as_ref())
            .map(|c| c.image())
            .max_by_key(|i| i.offset())
    }

    /// The leader and ISR of a partition in the newest controller image a live node has.
    pub fn partition_state(
        &self,
        topic: &str,
        partition: i32,
    ) -> Option<(Option<i32>, Vec<i32>, i32)> {
        let image = self.newest_image()?;
        let p = image
            .topic_by_name(topic)?
            .partitions
            .get(&partition)?
            .clone();
        let mut isr: Vec<i32> = p.isr.iter().map(|n| n.0).collect();
        isr.sort();
        Some((p.leader.map(|l| l.0), isr, p.leader_epoch.0))
    }

    /// Waits until the partition has a leader that has taken up leadership and an ISR of
    /// `isr_size`; returns the leader.
    pub async fn wait_partition_ready(&self, topic: &str, partition: i32, isr_size: usize) -> i32 {
        let ready = self
            .wait_for(Duration::from_secs(20), |c| {
                c.partition_state(topic, partition)
                    .is_some_and(|(leader, isr, epoch)| {
                        isr.len() == isr_size
                            && leader.is_some_and(|l| {
                                c.is_running(l)
                                    && c.replica(l, topic, partition).is_some_and(|p| {
                                        let s = p.leader_state();
                                        s.is_leader && s.leader_epoch == epoch
                                    })
                            })
                    })
            })
            .await;
        assert!(
            ready,
            "{topic}-{partition} got no leader with an ISR of {isr_size}"
        );
        self.partition_state(topic, partition).unwrap().0.unwrap()
    }

    /// The local replica of a partition on node `id`.
    pub fn replica(&self, id: i32, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.node(id)
            .broker
            .as_ref()?
            .state()
            .replicas
            .get(topic, partition)
    }

    /// Cuts node `id` off from its peers and the controllers (or heals it).
    pub fn isolate(&self, id: i32, isolated: bool) {
        self.node(id)
            .broker
            .as_ref()
            .unwrap()
            .state()
            .faults
            .set_isolated(isolated);
    }

    /// Delays node `id`'s replication requests (sent and served).
    pub fn slow_replication(&self, id: i32, delay: Duration) {
        self.node(id)
            .broker
            .as_ref()
            .unwrap()
            .state()
            .faults
            .set_replication_delay(delay);
    }

    /// Cleanly stops node `id`.
    pub async fn stop(&mut self, id: i32) {
        if let Some(node) = self.nodes[id as usize - 1].take() {
            node.shutdown().await;
        }
    }

    /// Starts node `id` again on its data directory (on a fresh simulated storage after
    /// a power cut: a rebooted machine).
    pub async fn restart(&mut self, id: i32) {
        let i = id as usize - 1;
        if self.storages[i].as_ref().is_some_and(|fs| fs.is_dead()) {
            let fs = PowerLossFs::new();
            self.configs[i].storage = fs.clone();
            self.storages[i] = Some(fs);
        }
        let node = Node::start(self.configs[i].clone()).await.unwrap();
        self.nodes[i] = Some(node);
    }

    /// Node `id`'s simulated storage (needs [`ClusterOptions::simulated_storage`]).
    pub fn storage(&self, id: i32) -> Arc<PowerLossFs> {
        self.storages[id as usize - 1]
            .clone()
            .expect("the cluster runs on simulated storage")
    }

    /// Node `id`'s data directory.
    pub fn data_dir(&self, id: i32) -> std::path::PathBuf {
        self.configs[id as usize - 1].data_dir.clone()
    }

    /// The directory of node `id`'s log of `topic`-`partition`.
    pub fn partition_dir(&self, id: i32, topic: &str, partition: i32) -> std::path::PathBuf {
        self.data_dir(id)
            .join("logs")
            .join(format!("{topic}-{partition}"))
    }

    /// Cuts node `id`'s power: its storage forgets what was not durable (chosen by
    /// `seed`), then the node stops without writing anything more. The controller's Raft
    /// state is on the real filesystem and survives whole.
    pub async fn power_cut(&mut self, id: i32, seed: u64) -> spate_log::power_loss::CutReport {
        let report = self.storage(id).power_cut(seed).expect("power cut");
        self.stop(id).await;
        report
    }

    /// Stops every node.
    pub async fn shutdown(mut self) {
        for id in 1..=3 {
            self.stop(id).await;
        }
    }

    /// Every node's controller address.
    pub fn controller_addrs(&self) -> Vec<String> {
        self.configs
            .iter()
            .map(|c| c.controller_addr.to_string())
            .collect()
    }

    /// A raw Kafka connection to node `id`.
    pub async fn connect(&self, id: i32) -> RawConnection {
        RawConnection::connect(self.node(id).kafka_addr.unwrap())
            .await
            .unwrap()
    }
}

/// FindCoordinator for `group` until it answers (at most 30 s), as a client does first
/// (the first one creates `__consumer_offsets`); returns the coordinator's node id.
pub async fn find_coordinator(conn: &mut RawConnection, group: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let resp: FindCoordinatorResponse = conn
            .request(
                ApiKey::FindCoordinator,
                3,
                &FindCoordinatorRequest::default()
                    .with_key(StrBytes::from_string(group.to_string()))
                    .with_key_type(0),
            )
            .await
            .unwrap();
        if resp.error_code == 0 {
            return resp.node_id.0;
        }
        assert!(
            Instant::now() < deadline,
            "no coordinator: {}",
            resp.error_code
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// CreateTopics through `conn`; returns the error code.
pub async fn create_topic(
    conn: &mut RawConnection,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[(&str, &str)],
) -> i16 {
    let req = CreateTopicsRequest::default()
        .with_timeout_ms(15_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(topic_name(name))
            .with_num_partitions(partitions)
            .with_replication_factor(rf)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let resp: CreateTopicsResponse = conn.request(ApiKey::CreateTopics, 7, &req).await.unwrap();
    resp.topics[0].error_code
}

/// Produce of one batch; (error code, base offset). Transport errors are `Err`.
pub async fn produce(
    conn: &mut RawConnection,
    name: &str,
    partition: i32,
    acks: i16,
    timeout_ms: i32,
    batch: Bytes,
) -> anyhow::Result<(i16, i64)> {
    let req = ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(name))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch))])]);
    let resp: ProduceResponse = conn.request(ApiKey::Produce, 9, &req).await?;
    let p = &resp.responses[0].partition_responses[0];
    Ok((p.error_code, p.base_offset))
}

/// Fetches committed records from `offset` on; (error code, high watermark, (offset, value)).
pub async fn fetch(
    conn: &mut RawConnection,
    name: &str,
    partition: i32,
    offset: i64,
) -> anyhow::Result<(i16, i64, Vec<(i64, Bytes)>)> {
    let req = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 * 1024 * 1024)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(name))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(8 * 1024 * 1024)
                .with_current_leader_epoch(-1)])]);
    let resp: FetchResponse = conn.request(ApiKey::Fetch, 12, &req).await?;
    let p = &resp.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(mut records) = p.records.clone() {
        while !records.is_empty() {
            let set = RecordBatchDecoder::decode(&mut records)?;
            for r in set.records {
                if r.offset >= offset {
                    values.push((r.offset, r.value.unwrap_or_default()));
                }
            }
        }
    }
    Ok((p.error_code, p.high_watermark, values))
}

/// Every committed record of a partition from offset 0, through `conn`.
pub async fn read_all(
    conn: &mut RawConnection,
    name: &str,
    partition: i32,
) -> anyhow::Result<Vec<(i64, Bytes)>> {
    let mut out = Vec::new();
    let mut next = 0;
    loop {
        let (code, hw, values) = fetch(conn, name, partition, next).await?;
        anyhow::ensure!(code == 0, "fetch error {code}");
        if let Some((last, _)) = values.last() {
            next = last + 1;
        }
        out.extend(values);
        if next >= hw {
            return Ok(out);
        }
    }
}
