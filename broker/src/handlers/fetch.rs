//! Fetch for consumers: committed data (below the high watermark) from the leader, long
//! polling until `min_bytes` are available or `max_wait_ms` passes, within `max_bytes`
//! for the response and `partition_max_bytes` per partition — except that the first
//! batch found is returned whole even when larger (KIP-74), so consumers always make
//! progress. Incremental fetch sessions (KIP-227) as the Java client uses them.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use tokio::sync::watch;

use super::{leader_partition, str_bytes};
use crate::delayed::{self, Attempt};
use crate::fetch_session::{FetchTarget, LastSent};
use crate::limits::{FetchMemory, Limit};
use crate::partition::{read_views, FirstBatch, Progress, TopicPartition};
use crate::server::context::{PendingResponse, RequestContext};
use crate::state::BrokerState;

/// The longest a fetch may park, whatever the client asks.
const MAX_WAIT_CAP: Duration = Duration::from_secs(30);

/// One partition's part of the answer.
struct Answer {
    tp: TopicPartition,
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
        let (response, memory) = fetch(state, req, max_bytes).await;
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

/// The response, and the broker's fetch memory its records took.
async fn fetch(
    state: Arc<BrokerState>,
    req: FetchRequest,
    max_bytes: usize,
) -> (FetchResponse, Option<FetchMemory>) {
    let requested: Vec<(TopicPartition, FetchTarget)> = req
        .topics
        .iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions.iter().map(move |p| {
                (
                    TopicPartition {
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
    let forgotten: Vec<TopicPartition> = req
        .forgotten_topics_data
        .iter()
        .flat_map(|t| {
            let topic = t.topic.0.to_string();
            t.partitions.iter().map(move |p| TopicPartition {
                topic: topic.clone(),
                partition: *p,
            })
        })
        .collect();
    let resolved =
        match state
            .fetch_sessions
            .resolve(req.session_id, req.session_epoch, requested, forgotten)
        {
            Ok(r) => r,
            Err(code) => {
                let response = FetchResponse::default()
                    .with_error_code(code)
                    .with_session_id(0);
                return (response, None);
            }
        };
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = req.min_bytes.max(0) as usize;
    // Subscribed before the first read, so an append between a read and the wait still
    // wakes the fetch.
    let watched: Vec<watch::Receiver<Progress>> = resolved
        .targets
        .iter()
        .filter_map(|(tp, _, _)| {
            state
                .replicas
                .get(&tp.topic, tp.partition)
                .map(|p| p.subscribe())
        })
        .collect();
    let targets = Arc::new(resolved.targets.clone());
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
        state.metrics.bytes_out(
            &a.tp.topic,
            a.records.len() as u64,
            record_count(&a.records),
        );
    }
    let session_id = resolved.session_id;
    let mut sent = Vec::new();
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for a in answers {
        if resolved.incremental && !a.has_news() {
            continue;
        }
        sent.push((
            a.tp.clone(),
            LastSent {
                high_watermark: a.high_watermark,
                log_start_offset: a.log_start_offset,
            },
        ));
        let data = PartitionData::default()
            .with_partition_index(a.tp.partition)
            .with_error_code(a.error)
            .with_high_watermark(a.high_watermark)
            .with_last_stable_offset(a.high_watermark)
            .with_log_start_offset(a.log_start_offset)
            .with_aborted_transactions(None)
            .with_records(Some(a.records));
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == a.tp.topic => t.partitions.push(data),
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(a.tp.topic.clone())))
                    .with_partitions(vec![data]),
            ),
        }
    }
    state.fetch_sessions.record_sent(session_id, sent);
    let response = FetchResponse::default()
        .with_error_code(0)
        .with_session_id(session_id)
        .with_responses(topics);
    (response, Some(memory))
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
async fn read_all(
    state: &BrokerState,
    targets: &[(TopicPartition, FetchTarget, Option<LastSent>)],
    max_bytes: usize,
) -> Vec<Answer> {
    let mut answers = Vec::with_capacity(targets.len());
    let mut views = Vec::with_capacity(targets.len());
    for (tp, target, last) in targets {
        let mut answer = Answer {
            tp: tp.clone(),
            error: 0,
            high_watermark: -1,
            log_start_offset: -1,
            records: Bytes::new(),
            last_sent_before: last.clone(),
        };
        let partition_max = (target.max_bytes.max(0) as usize).min(max_bytes);
        let view = leader_partition(state, &tp.topic, tp.partition)
            .and_then(|p| p.check_leader_epoch(target.current_leader_epoch).map(|_| p))
            .and_then(|p| {
                answer.log_start_offset = p.log_start_offset();
                p.committed_view(target.fetch_offset, partition_max)
            });
        match view {
            Ok((view, hw)) => {
                // Report the high watermark that bounds the read.
                answer.high_watermark = hw;
                views.push(Some((view, partition_max)));
            }
            Err(e) => {
                answer.error = e.code();
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
                    Some(Err(e)) => answer.error = crate::error::BrokerError::from(e).code(),
                    None => {}
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "fetch read task failed");
            for answer in answers.iter_mut().filter(|a| a.error == 0) {
                answer.error = spate_metadata::ErrorCode::KafkaStorageError.code();
            }
        }
    }
    answers
}
