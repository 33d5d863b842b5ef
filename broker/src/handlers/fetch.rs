//! Fetch for consumers: committed data (below the high watermark) from the leader, long
//! polling until `min_bytes` are available or `max_wait_ms` passes, within `max_bytes`
//! for the response and `partition_max_bytes` per partition — except that the first
//! batch found is returned whole even when larger (KIP-74), so consumers always make
//! progress. Incremental fetch sessions (KIP-227) as the Java client uses them.
//!
//! Fetch v13 and later name topics by id (KIP-516): an id this broker's metadata does not
//! know is answered UNKNOWN_TOPIC_ID, and one whose local log belongs to another
//! incarnation of the topic INCONSISTENT_TOPIC_ID. From v16, a partition refused because
//! this broker does not lead it (or at a stale leader epoch) names its current leader,
//! and the response carries the leaders' endpoints (KIP-951).
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::FetchTopic;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use spate_metadata::ids::TopicId;
use spate_metadata::{ErrorCode, MetadataImage};
use tokio::sync::watch;

use super::leader_hints::LeaderHints;
use super::{leader_partition, str_bytes};
use crate::delayed::{self, Attempt};
use crate::error::BrokerError;
use crate::fetch_session::{FetchPartition, FetchTarget, LastSent, TopicRef};
use crate::limits::{FetchMemory, Limit};
use crate::partition::{read_views, FirstBatch, Partition, Progress, TopicPartition};
use crate::server::context::{PendingResponse, RequestContext};
use crate::state::BrokerState;

/// The longest a fetch may park, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// The first Fetch version that names topics by id (KIP-516).
const TOPIC_IDS_FROM: i16 = 13;

/// The first Fetch version whose refusals name the current leader (KIP-951).
const LEADER_HINTS_FROM: i16 = 16;

/// One partition this fetch covers, its topic resolved against the metadata image.
struct Target {
    key: FetchPartition,
    /// The partition by name, or the error code for a topic id this broker cannot
    /// resolve.
    resolved: Result<TopicPartition, i16>,
    fetch: FetchTarget,
    last_sent: Option<LastSent>,
}

/// One partition's part of the answer.
struct Answer {
    key: FetchPartition,
    /// Known when the topic resolved.
    tp: Option<TopicPartition>,
    error: i16,
    high_watermark: i64,
    log_start_offset: i64,
    records: Bytes,
    last_sent_before: Option<LastSent>,
}

impl Answer {
    /// Whether an incremental response must include this partition.
    fn has_news(&self) -> bool {
        self.error != 0
            || !self.records.is_empty()
            || self.last_sent_before.as_ref().is_none_or(|l| {
                l.high_watermark != self.high_watermark
                    || l.log_start_offset != self.log_start_offset
            })
    }
}

/// Reserves the response's bound from the connection's response budget, in request order
/// (a connection pipelining fetches waits here, without reading further requests, until
/// earlier responses are written), then starts the fetch; the whole of it (including the
/// wait) runs as the pending response, which holds the reservation until written.
pub async fn handle(ctx: &RequestContext, req: FetchRequest) -> PendingResponse {
    let state = ctx.state.clone();
    let version = ctx.api_version;
    let listener = ctx.session.listener.clone();
    let max_bytes = response_bound(state.config.network.fetch_max_bytes, req.max_bytes);
    let (held, waited) = ctx.session.responses.reserve(max_bytes).await;
    if waited {
        state.limits.hit(
            &state.metrics,
            Limit::ConnectionResponseBytes,
            format_args!(
                "a fetch from {} waited for the connection's earlier responses to be written",
                ctx.session.peer
            ),
        );
    }
    ctx.later_holding(async move {
        let (mut response, memory) = fetch(state.clone(), req, version, max_bytes).await;
        if version >= LEADER_HINTS_FROM {
            let endpoints = leader_hints(&state.metadata.image(), &listener, &mut response);
            response = response.with_node_endpoints(endpoints);
        }
        let held = match memory {
            Some(memory) => held.with_fetch_memory(memory),
            None => held,
        };
        (response, held)
    })
}

/// The most a response carries: the broker's fetch.max.bytes bounds every response,
/// whatever the client asks (a non-positive max_bytes asks for the broker's limit).
fn response_bound(broker_max: usize, asked: i32) -> usize {
    if asked <= 0 {
        broker_max
    } else {
        (asked as usize).min(broker_max)
    }
}

/// How a request of `version` names `topic`.
fn topic_ref(version: i16, topic: &FetchTopicName) -> TopicRef {
    if version >= TOPIC_IDS_FROM {
        TopicRef::Id(*topic.id.as_bytes())
    } else {
        TopicRef::Name(topic.name.0.to_string())
    }
}

/// A topic's name and id fields, as both the fetched and the forgotten topics carry them.
struct FetchTopicName<'a> {
    name: &'a TopicName,
    id: &'a uuid::Uuid,
}

impl<'a> From<&'a FetchTopic> for FetchTopicName<'a> {
    fn from(t: &'a FetchTopic) -> Self {
        FetchTopicName {
            name: &t.topic,
            id: &t.topic_id,
        }
    }
}

/// The partition a fetch names, by name, once its topic is resolved (an id the image
/// does not know is UNKNOWN_TOPIC_ID).
fn resolve(image: &MetadataImage, key: &FetchPartition) -> Result<TopicPartition, i16> {
    let topic = match &key.topic {
        TopicRef::Name(name) => name.clone(),
        TopicRef::Id(id) => match image.topic(TopicId(uuid::Uuid::from_bytes(*id))) {
            Some(t) => t.name.clone(),
            None => return Err(ErrorCode::UnknownTopicId.code()),
        },
    };
    Ok(TopicPartition {
        topic,
        partition: key.partition,
    })
}

/// The leader replica a target reads from: led here, of the topic id asked for (when
/// the request named one), at the leader epoch the client expects.
fn serving_partition(
    state: &BrokerState,
    key: &FetchPartition,
    tp: &TopicPartition,
    current_leader_epoch: i32,
) -> crate::error::Result<Arc<Partition>> {
    let p = leader_partition(state, &tp.topic, tp.partition)?;
    if let TopicRef::Id(asked) = key.topic {
        if p.topic_id != asked {
            return Err(BrokerError::InconsistentTopicId {
                partition: tp.clone(),
                asked: uuid::Uuid::from_bytes(asked),
                log: uuid::Uuid::from_bytes(p.topic_id),
            });
        }
    }
    p.check_leader_epoch(current_leader_epoch)?;
    Ok(p)
}

/// The response, and the broker's fetch memory its records took.
async fn fetch(
    state: Arc<BrokerState>,
    req: FetchRequest,
    version: i16,
    max_bytes: usize,
) -> (FetchResponse, Option<FetchMemory>) {
    let requested: Vec<(FetchPartition, FetchTarget)> = req
        .topics
        .iter()
        .flat_map(|t| {
            let topic = topic_ref(version, &FetchTopicName::from(t));
            t.partitions.iter().map(move |p| {
                (
                    FetchPartition {
                        topic: topic.clone(),
                        partition: p.partition,
                    },
                    FetchTarget {
                        fetch_offset: p.fetch_offset,
                        max_bytes: p.partition_max_bytes,
                        current_leader_epoch: p.current_leader_epoch,
                    },
                )
            })
        })
        .collect();
    let forgotten: Vec<FetchPartition> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let name = FetchTopicName {
                name: &t.topic,
                id: &t.topic_id,
            };
            let topic = topic_ref(version, &name);
            t.partitions.iter().map(move |p| FetchPartition {
                topic: topic.clone(),
                partition: *p,
            })
        })
        .collect();
    let session = match state.fetch_sessions.resolve(
        req.session_id,
        req.session_epoch,
        version >= TOPIC_IDS_FROM,
        requested,
        forgotten,
    ) {
        Ok(r) => r,
        Err(code) => {
            let response = FetchResponse::default()
                .with_error_code(code)
                .with_session_id(0);
            return (response, None);
        }
    };
    let image = state.metadata.image();
    let targets: Vec<Target> = session
        .targets
        .into_iter()
        .map(|(key, fetch, last_sent)| Target {
            resolved: resolve(&image, &key),
            key,
            fetch,
            last_sent,
        })
        .collect();
    drop(image);
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // Subscribed before the first read, so an append between a read and the wait still
    // wakes the fetch.
    let watched: Vec<watch::Receiver<Progress>> = targets
        .iter()
        .filter_map(|t| t.resolved.as_ref().ok())
        .filter_map(|tp| {
            state
                .replicas
                .get(&tp.topic, tp.partition)
                .map(|p| p.subscribe())
        })
        .collect();
    let targets = Arc::new(targets);
    // Each read takes its share of the broker's fetch memory (less than max_bytes under
    // pressure, never waiting); a parked fetch holds only what its last read returned.
    let (answers, memory) = delayed::complete_async(watched, Some(deadline), || {
        let state = state.clone();
        let targets = targets.clone();
        async move {
            let memory = state.limits.take_fetch_memory(max_bytes);
            let answers = read_all(&state, &targets, memory.bytes).await;
            let bytes: usize = answers.iter().map(|a| a.records.len()).sum();
            let any_error = answers.iter().any(|a| a.error != 0);
            if bytes >= min_bytes || any_error || max_wait.is_zero() {
                Attempt::Done((answers, memory))
            } else {
                Attempt::Wait((answers, memory))
            }
        }
    })
    .await;
    if memory.cut {
        state.limits.hit(
            &state.metrics,
            Limit::FetchMemory,
            format_args!(
                "a fetch got {} of the {max_bytes} bytes it may carry: fetch.memory.max.bytes is in use",
                memory.bytes
            ),
        );
    }
    for a in answers.iter().filter(|a| !a.records.is_empty()) {
        if let Some(tp) = &a.tp {
            state
                .metrics
                .bytes_out(&tp.topic, a.records.len() as u64, record_count(&a.records));
        }
    }
    let session_id = session.session_id;
    let mut sent = Vec::new();
    let mut topics: Vec<(TopicRef, FetchableTopicResponse)> = Vec::new();
    for a in answers {
        if session.incremental && !a.has_news() {
            continue;
        }
        sent.push((
            a.key.clone(),
            LastSent {
                high_watermark: a.high_watermark,
                log_start_offset: a.log_start_offset,
            },
        ));
        let data = PartitionData::default()
            .with_partition_index(a.key.partition)
            .with_error_code(a.error)
            .with_high_watermark(a.high_watermark)
            .with_last_stable_offset(a.high_watermark)
            .with_log_start_offset(a.log_start_offset)
            .with_aborted_transactions(None)
            .with_records(Some(a.records));
        match topics.last_mut() {
            Some((topic, t)) if *topic == a.key.topic => t.partitions.push(data),
            _ => {
                let t = match &a.key.topic {
                    TopicRef::Name(name) => FetchableTopicResponse::default()
                        .with_topic(TopicName(str_bytes(name.clone()))),
                    TopicRef::Id(id) => {
                        FetchableTopicResponse::default().with_topic_id(uuid::Uuid::from_bytes(*id))
                    }
                };
                topics.push((a.key.topic.clone(), t.with_partitions(vec![data])));
            }
        }
    }
    state.fetch_sessions.record_sent(session_id, sent);
    let response = FetchResponse::default()
        .with_error_code(0)
        .with_session_id(session_id)
        .with_responses(topics.into_iter().map(|(_, t)| t).collect());
    (response, Some(memory))
}

/// KIP-951 (Fetch v16+): a partition refused with NOT_LEADER_OR_FOLLOWER or
/// FENCED_LEADER_EPOCH names its current leader, and the response carries the endpoints
/// of the leaders named.
fn leader_hints(
    image: &MetadataImage,
    listener: &str,
    response: &mut FetchResponse,
) -> Vec<NodeEndpoint> {
    let moved = [
        ErrorCode::NotLeaderOrFollower.code(),
        ErrorCode::FencedLeaderEpoch.code(),
    ];
    let mut hints = LeaderHints::new(image);
    for topic in response.responses.iter_mut() {
        let name = if topic.topic.0.is_empty() {
            match image.topic(TopicId(topic.topic_id)) {
                Some(t) => t.name.clone(),
                None => continue,
            }
        } else {
            topic.topic.0.to_string()
        };
        for p in topic
            .partitions
            .iter_mut()
            .filter(|p| moved.contains(&p.error_code))
        {
            if let Some((leader, epoch)) = hints.leader(&name, p.partition_index) {
                p.current_leader = LeaderIdAndEpoch::default()
                    .with_leader_id(BrokerId(leader))
                    .with_leader_epoch(epoch);
            }
        }
    }
    hints
        .endpoints(listener)
        .into_iter()
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect()
}

/// Records in `records`, from the batch headers (no record is decoded); a trailing
/// partial batch is not counted.
fn record_count(records: &[u8]) -> u64 {
    spate_log::batch::batches(records)
        .map_while(Result::ok)
        .map(|b| b.header().records_count.max(0) as u64)
        .sum()
}

/// Reads every target once within the response budget: each partition's view is taken
/// under its lock without I/O, then every segment read happens on a blocking thread, so
/// neither the partition's appends nor the async workers wait on the disk.
async fn read_all(state: &BrokerState, targets: &[Target], max_bytes: usize) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(targets.len());
    let mut views = Vec::with_capacity(targets.len());
    for target in targets {
        let mut answer = Answer {
            key: target.key.clone(),
            tp: target.resolved.as_ref().ok().cloned(),
            error: 0,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            last_sent_before: target.last_sent.clone(),
        };
        let partition_max = (target.fetch.max_bytes.max(0) as usize).min(max_bytes);
        let view = target.resolved.clone().and_then(|tp| {
            serving_partition(state, &target.key, &tp, target.fetch.current_leader_epoch)
                .and_then(|p| {
                    answer.log_start_offset = p.log_start_offset();
                    p.committed_view(target.fetch.fetch_offset, partition_max)
                })
                .map_err(|e| e.code())
        });
        match view {
            Ok((view, hw)) => {
                // Report the high watermark that bounds the read.
                answer.high_watermark = hw;
                views.push(Some((view, partition_max)));
            }
            Err(code) => {
                answer.error = code;
                views.push(None);
            }
        }
        answers.push(answer);
    }
    let read = read_views(views, max_bytes, FirstBatch::UntilData).await;
    match read {
        Ok(results) => {
            for (answer, result) in answers.iter_mut().zip(results) {
                match result {
                    Some(Ok(records)) => answer.records = records,
                    Some(Err(e)) => answer.error = BrokerError::from(e).code(),
                    None => {}
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "fetch read task failed");
            for answer in answers.iter_mut().filter(|a| a.error == 0) {
                answer.error = ErrorCode::KafkaStorageError.code();
            }
        }
    }
    answers
}
