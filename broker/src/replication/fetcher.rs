//! The follower side of replication: one fetcher task per leader broker, carrying every
//! partition this broker follows from it (docs/architecture.md §5).
//!
//! A partition that starts following (new leader or new leader epoch) first truncates:
//! it asks the leader where its latest epoch ends (OffsetForLeaderEpoch, KIP-101/279)
//! and cuts its log there, repeating for older epochs while they diverge. Then it
//! fetches from its LEO in long polls; what arrives is appended unchanged — and, when
//! the topic acknowledges only after fsync, fsynced before the next fetch reports the
//! new LEO, so an acks=all acknowledgement means the record is on disk on every ISR
//! member. The follower's high watermark is `min(leader HW, own LEO)`.
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use spate_metadata::ids::{LeaderEpoch, NodeId};
use spate_metadata::ErrorCode;
use spate_proto::replication::replication_client::ReplicationClient;
use spate_proto::replication::{
    EpochQuery, FetchPartition, OffsetForLeaderEpochRequest, ReplicaFetchRequest,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tracing::Instrument;

use super::MAX_MESSAGE_BYTES;
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::faults::{FaultLayer, Faulted};
use crate::partition::replica_state::{self, Truncation};
use crate::partition::{Partition, RoleChange, TopicPartition};
use tower::Layer;

/// The listener name brokers register their replication endpoint under.
pub const REPLICATION_LISTENER: &str = "REPLICATION";

/// Kafka error codes a fetcher reacts to.
/// Where a followed partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Ask the leader where our latest epoch ends, and truncate.
    Truncate,
    /// Fetch from our LEO.
    Fetch,
}

#[derive(Clone)]
struct Followed {
    partition: Arc<Partition>,
    leader_epoch: i32,
    phase: Phase,
    /// Not before this instant (after an error).
    retry_at: Option<Instant>,
}

type Followers = Arc<Mutex<BTreeMap<TopicPartition, Followed>>>;

struct Fetcher {
    partitions: Followers,
    wake: Arc<Notify>,
    task: JoinHandle<()>,
}

/// What follower fetchers need from their broker: a narrow handle, so this module does not
/// depend on the broker state that holds it.
pub trait FetcherContext: Send + Sync + 'static {
    /// This broker's id.
    fn node_id(&self) -> i32;
    /// Our registration's broker epoch (-1 until registered).
    fn broker_epoch(&self) -> i64;
    /// How long a follower fetch may wait at the leader (`replica.fetch.wait.max.ms`).
    fn max_wait(&self) -> Duration;
    /// The layer every replication channel goes through (injected link faults).
    fn transport_layer(&self) -> FaultLayer;
    /// The leader's registered replication endpoint ("host:port"), from metadata.
    fn replication_address(&self, leader: NodeId) -> Option<String>;
    /// The partition this broker hosts now under that name (a deleted and re-created
    /// topic is another partition).
    fn hosted(&self, tp: &TopicPartition) -> Option<Arc<Partition>>;
}

/// Every fetcher of this broker, by leader.
#[derive(Default)]
pub struct ReplicaFetchers {
    fetchers: Mutex<HashMap<NodeId, Fetcher>>,
}

impl ReplicaFetchers {
    /// Applies role changes from a metadata image: partitions that now follow a leader
    /// join that leader's fetcher (truncating first); the others leave every fetcher.
    pub fn apply(
        &self,
        state: &Arc<dyn FetcherContext>,
        changes: &[(Arc<Partition>, RoleChange)],
        shutdown: &watch::Receiver<bool>,
    ) {
        let mut fetchers = self.fetchers.lock();
        for (partition, change) in changes {
            let target = match change {
                RoleChange::Unchanged => continue,
                RoleChange::Leading | RoleChange::Leaderless => None,
                RoleChange::Follow {
                    leader,
                    leader_epoch,
                } => Some((*leader, *leader_epoch)),
            };
            for (id, f) in fetchers.iter() {
                if target.is_none_or(|(leader, _)| leader != *id)
                    && f.partitions.lock().remove(&partition.tp).is_some()
                {
                    f.wake.notify_one();
                }
            }
            let Some((leader, leader_epoch)) = target else {
                continue;
            };
            let fetcher = fetchers.entry(leader).or_insert_with(|| {
                let partitions: Followers = Arc::default();
                let wake = Arc::new(Notify::new());
                let task = tokio::spawn(run(
                    state.clone(),
                    leader,
                    partitions.clone(),
                    wake.clone(),
                    shutdown.clone(),
                ));
                Fetcher {
                    partitions,
                    wake,
                    task,
                }
            });
            tracing::info!(partition = %partition.tp, leader = leader.0, leader_epoch, "following");
            fetcher.partitions.lock().insert(
                partition.tp.clone(),
                Followed {
                    partition: partition.clone(),
                    leader_epoch,
                    phase: Phase::Truncate,
                    retry_at: None,
                },
            );
            fetcher.wake.notify_one();
        }
    }

    /// Stops every fetcher.
    pub fn stop_all(&self) {
        for (_, f) in self.fetchers.lock().drain() {
            f.task.abort();
        }
    }
}

/// Settings of one fetch round.
const FETCH_MIN_BYTES: i32 = 1;
const FETCH_MAX_BYTES: i32 = 32 * 1024 * 1024;
/// How long a partition waits after an error that more metadata will resolve.
const WAIT_FOR_METADATA: Duration = Duration::from_millis(300);
/// How long after an error the leader may resolve soon (it has not seen the epoch yet).
const RETRY_SOON: Duration = Duration::from_millis(50);
/// Back-off after a transport error.
const TRANSPORT_BACKOFF: Duration = Duration::from_millis(100);

async fn run(
    state: Arc<dyn FetcherContext>,
    leader: NodeId,
    partitions: Followers,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut client: Option<(String, LeaderClient)> = None;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let now = Instant::now();
        let ready: Vec<(TopicPartition, Followed)> = {
            let mut map = partitions.lock();
            // Partitions removed from this broker (topic deleted) stop here, and so do
            // those whose log failed: a replica on a failed disk reports nothing more, or
            // the leader would count data that never became durable here.
            map.retain(|tp, f| {
                let keep = state
                    .hosted(tp)
                    .is_some_and(|p| Arc::ptr_eq(&p, &f.partition))
                    && !f.partition.is_failed();
                if !keep && f.partition.is_failed() {
                    tracing::warn!(partition = %tp, "log failed; no longer fetching it");
                }
                keep
            });
            map.iter()
                .filter(|(_, f)| f.retry_at.is_none_or(|t| t <= now))
                .map(|(tp, f)| (tp.clone(), f.clone()))
                .collect()
        };
        if ready.is_empty() {
            let next_retry = partitions
                .lock()
                .values()
                .filter_map(|f| f.retry_at)
                .min()
                .unwrap_or(now + Duration::from_secs(1));
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep_until(next_retry) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        let Some(addr) = state.replication_address(leader) else {
            sleep_or_wake(&wake, WAIT_FOR_METADATA, &mut shutdown).await;
            continue;
        };
        let rpc = match &client {
            Some((a, c)) if *a == addr => c.clone(),
            _ => match connect(&addr, state.transport_layer()) {
                Ok(c) => {
                    client = Some((addr.clone(), c.clone()));
                    c
                }
                Err(e) => {
                    tracing::warn!(leader = leader.0, %addr, error = %e, "bad replication address");
                    sleep_or_wake(&wake, WAIT_FOR_METADATA, &mut shutdown).await;
                    continue;
                }
            },
        };
        let truncating: Vec<_> = ready
            .iter()
            .filter(|(_, f)| f.phase == Phase::Truncate)
            .cloned()
            .collect();
        if !truncating.is_empty()
            && !truncate_round(&*state, rpc.clone(), &partitions, truncating).await
        {
            sleep_or_wake(&wake, TRANSPORT_BACKOFF, &mut shutdown).await;
            continue;
        }
        // Partitions that were fetching, and those whose truncation just finished.
        let now = Instant::now();
        let fetching: Vec<_> = partitions
            .lock()
            .iter()
            .filter(|(_, f)| f.phase == Phase::Fetch && f.retry_at.is_none_or(|t| t <= now))
            .map(|(tp, f)| (tp.clone(), f.clone()))
            .collect();
        let span = tracing::debug_span!(
            "replica_fetch",
            leader = leader.0,
            partitions = fetching.len()
        );
        if !fetch_round(&*state, rpc, &partitions, fetching, &wake)
            .instrument(span)
            .await
        {
            sleep_or_wake(&wake, TRANSPORT_BACKOFF, &mut shutdown).await;
        }
    }
}

async fn sleep_or_wake(wake: &Notify, pause: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        _ = tokio::time::sleep(pause) => {}
        _ = wake.notified() => {}
        _ = shutdown.changed() => {}
    }
}

/// A replication client of one leader, through the broker's transport layer.
type LeaderClient = ReplicationClient<Faulted<Channel>>;

fn connect(addr: &str, layer: FaultLayer) -> Result<LeaderClient, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?;
    let channel = spate_controller_client::source::bind(endpoint)
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        // A leader behind a partition keeps the connection open but silent.
        .http2_keep_alive_interval(spate_controller_client::KEEPALIVE_INTERVAL)
        .keep_alive_timeout(spate_controller_client::KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .connect_lazy();
    Ok(ReplicationClient::new(layer.layer(channel))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Updates a followed partition if it is still the same follow (same epoch).
fn update(partitions: &Followers, tp: &TopicPartition, epoch: i32, f: impl FnOnce(&mut Followed)) {
    if let Some(entry) = partitions.lock().get_mut(tp) {
        if entry.leader_epoch == epoch {
            f(entry);
        }
    }
}

fn retry_after(partitions: &Followers, tp: &TopicPartition, epoch: i32, pause: Duration) {
    update(partitions, tp, epoch, |f| {
        f.retry_at = Some(Instant::now() + pause)
    });
}

/// One OffsetForLeaderEpoch round for partitions that must truncate; a partition whose
/// answer is final moves on to fetching. False on a transport error.
async fn truncate_round(
    state: &dyn FetcherContext,
    mut rpc: LeaderClient,
    partitions: &Followers,
    truncating: Vec<(TopicPartition, Followed)>,
) -> bool {
    let mut queries = Vec::new();
    let mut asked = Vec::new();
    for (tp, f) in truncating {
        let (entries, leo) = f.partition.epoch_entries();
        let hw = f.partition.high_watermark();
        match replica_state::epoch_to_ask(&entries) {
            // No epochs: nothing is known to diverge above the HW only.
            None => {
                let target = hw.min(leo);
                finish_truncation(partitions, &tp, &f, target, false);
            }
            Some(epoch) => {
                queries.push(EpochQuery {
                    topic_id: f.partition.topic_id.to_vec(),
                    partition: tp.partition,
                    current_leader_epoch: f.leader_epoch,
                    leader_epoch: epoch.0,
                });
                asked.push((tp, f, entries, leo, hw, epoch));
            }
        }
    }
    if queries.is_empty() {
        return true;
    }
    let request = OffsetForLeaderEpochRequest {
        replica_id: state.node_id(),
        partitions: queries,
    };
    let response = match tokio::time::timeout(
        Duration::from_secs(10),
        rpc.offset_for_leader_epoch(request),
    )
    .await
    {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(error = %status, "OffsetForLeaderEpoch failed");
            return false;
        }
        Err(_) => return false,
    };
    for (tp, f, entries, leo, hw, epoch) in asked {
        let Some(answer) = response
            .partitions
            .iter()
            .find(|a| a.partition == tp.partition && a.topic_id == f.partition.topic_id)
        else {
            retry_after(partitions, &tp, f.leader_epoch, WAIT_FOR_METADATA);
            continue;
        };
        if answer.error_code != 0 {
            let pause = if answer.error_code == ErrorCode::UnknownLeaderEpoch.proto_code() {
                RETRY_SOON
            } else {
                WAIT_FOR_METADATA
            };
            tracing::debug!(partition = %tp, code = answer.error_code, message = %answer.error_message, "epoch query refused");
            retry_after(partitions, &tp, f.leader_epoch, pause);
            continue;
        }
        let leader_answer = Some((LeaderEpoch(answer.leader_epoch), answer.end_offset));
        match replica_state::truncation_step(&entries, leo, hw, epoch, leader_answer) {
            Ok(Truncation::Done(offset)) => finish_truncation(partitions, &tp, &f, offset, false),
            Ok(Truncation::Partial(offset)) => {
                // Our epoch diverged: cut to its end and ask again about the one before.
                if let Err(e) = f
                    .partition
                    .truncate_as_follower(f.leader_epoch, offset, false)
                {
                    tracing::warn!(partition = %tp, error = %e, "truncation failed");
                    retry_after(partitions, &tp, f.leader_epoch, WAIT_FOR_METADATA);
                    continue;
                }
                // Each partial round must drop the epoch asked, or the next asks it again.
                let latest = f.partition.latest_epoch();
                if latest.is_some_and(|e| e >= epoch.0) {
                    tracing::error!(partition = %tp, asked = epoch.0, "truncation made no progress; retrying later");
                    retry_after(partitions, &tp, f.leader_epoch, WAIT_FOR_METADATA);
                }
            }
            Err(e) => {
                tracing::warn!(partition = %tp, error = %e, "cannot decide truncation");
                retry_after(partitions, &tp, f.leader_epoch, WAIT_FOR_METADATA);
            }
        }
    }
    true
}

fn finish_truncation(
    partitions: &Followers,
    tp: &TopicPartition,
    f: &Followed,
    offset: i64,
    restart: bool,
) {
    match f
        .partition
        .truncate_as_follower(f.leader_epoch, offset, restart)
    {
        Ok(_) => update(partitions, tp, f.leader_epoch, |e| {
            e.phase = Phase::Fetch;
            e.retry_at = None;
        }),
        Err(e) => {
            tracing::warn!(partition = %tp, error = %e, "truncation failed");
            retry_after(partitions, tp, f.leader_epoch, WAIT_FOR_METADATA);
        }
    }
}

/// One long-poll fetch for every partition in the fetch phase. False on a transport
/// error.
async fn fetch_round(
    state: &dyn FetcherContext,
    mut rpc: LeaderClient,
    partitions: &Followers,
    fetching: Vec<(TopicPartition, Followed)>,
    wake: &Notify,
) -> bool {
    if fetching.is_empty() {
        return true;
    }
    let mut offsets = HashMap::new();
    let wants: Vec<FetchPartition> = fetching
        .iter()
        .map(|(tp, f)| {
            let (start, leo) = f.partition.log_bounds();
            offsets.insert(tp.clone(), leo);
            FetchPartition {
                topic_id: f.partition.topic_id.to_vec(),
                partition: tp.partition,
                current_leader_epoch: f.leader_epoch,
                fetch_offset: leo,
                log_start_offset: start,
            }
        })
        .collect();
    let max_wait = state.max_wait();
    let request = ReplicaFetchRequest {
        replica_id: state.node_id(),
        broker_epoch: state.broker_epoch(),
        max_wait_ms: max_wait.as_millis() as i32,
        min_bytes: FETCH_MIN_BYTES,
        max_bytes: FETCH_MAX_BYTES,
        partitions: wants,
    };
    let response = tokio::select! {
        r = tokio::time::timeout(max_wait + Duration::from_secs(10), rpc.fetch(request)) => r,
        // New partitions or a new epoch: start a round that includes them. Only the
        // request is abandoned, never the handling of an answer.
        _ = wake.notified() => return true,
    };
    let response = match response {
        Ok(Ok(r)) => r.into_inner(),
        Ok(Err(status)) => {
            tracing::debug!(error = %status, "replica fetch failed");
            return false;
        }
        Err(_) => return false,
    };
    let mut to_sync = Vec::new();
    for (tp, f) in &fetching {
        let Some(data) = response
            .partitions
            .iter()
            .find(|d| d.partition == tp.partition && d.topic_id == f.partition.topic_id)
        else {
            continue;
        };
        match ErrorCode::from_wire(data.error_code) {
            ErrorCode::None => {
                let appended = f.partition.append_as_follower(
                    f.leader_epoch,
                    &data.records,
                    data.high_watermark,
                    data.log_start_offset,
                    now_ms(),
                );
                match appended {
                    Ok(leo) => {
                        if !data.records.is_empty() && f.partition.settings().sync_before_ack {
                            to_sync.push((f.partition.clone(), leo));
                        }
                    }
                    // Our role changed under us: the next image re-adds the partition.
                    Err(BrokerError::NotLeaderOrFollower { .. }) => {}
                    Err(e) => {
                        tracing::warn!(partition = %tp, error = %e, "cannot append fetched batches; truncating again");
                        update(partitions, tp, f.leader_epoch, |e| {
                            e.phase = Phase::Truncate;
                            e.retry_at = Some(Instant::now() + WAIT_FOR_METADATA);
                        });
                    }
                }
            }
            ErrorCode::OffsetOutOfRange => {
                let fetch_offset = offsets.get(tp).copied().unwrap_or(0);
                if data.log_start_offset >= 0 && fetch_offset < data.log_start_offset {
                    // The leader deleted what we would fetch next: start over at its log start.
                    finish_truncation(partitions, tp, f, data.log_start_offset, true);
                } else {
                    // We are ahead of the leader: find the divergence again.
                    update(partitions, tp, f.leader_epoch, |e| {
                        e.phase = Phase::Truncate
                    });
                }
            }
            ErrorCode::UnknownLeaderEpoch => {
                retry_after(partitions, tp, f.leader_epoch, RETRY_SOON)
            }
            other => {
                tracing::debug!(partition = %tp, code = %other, message = %data.error_message, "replica fetch refused");
                retry_after(partitions, tp, f.leader_epoch, WAIT_FOR_METADATA);
            }
        }
    }
    // Report nothing as held before it is on disk (when acks wait for fsync): the next
    // fetch's offset tells the leader what we hold.
    let waits = to_sync.iter().map(|(p, leo)| async move {
        if let Err(e) = p.wait_durable(*leo).await {
            tracing::warn!(partition = %p.tp, error = %e, "follower fsync failed");
        }
    });
    futures::future::join_all(waits).await;
    // A partition whose fsync just failed is out before any further round could report
    // its (not durable) log end offset.
    partitions.lock().retain(|_, f| !f.partition.is_failed());
    true
}
