//! The producer's background task: drains ready batches, sends one Produce request per
//! leader and in-flight slot, completes or re-queues batches from the response.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::batch::{BatchAck, ProducerBatch, BATCH_HEADER};
use super::idempotence::{ProducerIdentity, Settle};
use super::Inner;
use crate::error::{Error, Result};
use crate::types::{Acks, NodeId};

/// How long the sender sleeps when nothing is pending (it is woken on new batches anyway).
const IDLE: Duration = Duration::from_secs(1);

/// Runs until the producer closes and every batch is done.
pub(super) async fn run(inner: Arc<Inner>) {
    let mut last_refresh = Instant::now();
    loop {
        let now = Instant::now();
        let meta = inner.cluster.metadata();
        let max_in_flight = inner.config.client.max_in_flight.max(1);
        let (drained, finished, topics, needs_id) = {
            let Ok(mut guard) = inner.state.lock() else {
                return;
            };
            let st = &mut *guard;
            let force = st.flushing > 0 || st.closing;
            let in_flight = &mut st.in_flight;
            let drained = st.acc.drain(
                now,
                force,
                |t, p| meta.leader(t, p).ok(),
                |node| {
                    let n = in_flight.entry(node).or_default();
                    let free = *n < max_in_flight;
                    if free {
                        *n += 1;
                    }
                    free
                },
            );
            let finished =
                st.closing && st.acc.is_empty() && st.in_flight.values().all(|n| *n == 0);
            let stale = now.duration_since(last_refresh) >= inner.config.metadata_max_age;
            let needs_id = st
                .acc
                .sequencer_mut()
                .is_some_and(|s| s.identity().is_none());
            (drained, finished, stale.then(|| st.acc.topics()), needs_id)
        };
        if needs_id {
            start_init(&inner);
        }
        for mut batch in drained.expired {
            let err = Error::Timeout {
                api: "Produce (delivery timeout)".into(),
                addr: batch.tp.to_string(),
                ms: inner.config.delivery_timeout.as_millis() as u64,
            };
            finish(&inner, &mut batch, Err(err));
        }
        if !drained.unknown_leaders.is_empty() {
            request_refresh(&inner, drained.unknown_leaders);
        } else if let Some(topics) = topics.filter(|t| !t.is_empty()) {
            last_refresh = now;
            request_refresh(&inner, topics);
        }
        let sent = !drained.requests.is_empty();
        for (node, batches) in drained.requests {
            tokio::spawn(send_request(inner.clone(), node, batches));
        }
        if finished {
            return;
        }
        if sent {
            // One batch per partition per pass: look again at once for the next ones.
            tokio::task::yield_now().await;
            continue;
        }
        let until = drained.next_wake.unwrap_or(now + IDLE);
        tokio::select! {
            _ = inner.wake.notified() => {}
            _ = tokio::time::sleep_until(until.into()) => {}
        }
    }
}

/// Sends one request and settles each of its batches.
async fn send_request(inner: Arc<Inner>, node: NodeId, mut batches: Vec<ProducerBatch>) {
    let result = produce(&inner, node, &mut batches).await;
    let acked_at = Instant::now();
    let outcomes: Vec<(ProducerBatch, Result<BatchAck>)> = batches
        .into_iter()
        .map(|b| {
            let outcome = outcome_of(&result, &b, node, acked_at);
            (b, outcome)
        })
        .collect();
    let mut done = Vec::new();
    let mut refresh: Vec<String> = Vec::new();
    match inner.state.lock() {
        Ok(mut st) => {
            if let Some(n) = st.in_flight.get_mut(&node) {
                *n = n.saturating_sub(1);
            }
            for (mut batch, outcome) in outcomes {
                let can_retry = batch.attempts < inner.config.retries;
                // Settled under the lock so sequence state and queue order change together.
                let settle = match st.acc.sequencer_mut() {
                    Some(seqr) => seqr.settle(&mut batch, outcome, can_retry),
                    // Not idempotent: a retry after a timeout may duplicate the batch.
                    None => match outcome {
                        Err(e) if e.is_retriable() && can_retry => Settle::Retry(e),
                        other => Settle::Complete(other),
                    },
                };
                match settle {
                    Settle::Complete(r) => done.push((batch, r)),
                    Settle::Retry(e) => {
                        tracing::debug!(tp = %batch.tp, attempt = batch.attempts, error = %e, "retrying batch");
                        if e.needs_metadata_refresh()
                            && !refresh.iter().any(|t| **t == *batch.tp.topic)
                        {
                            refresh.push(batch.tp.topic.to_string());
                        }
                        batch.retry_at =
                            acked_at.checked_add(inner.config.client.backoff(batch.attempts));
                        batch.attempts = batch.attempts.saturating_add(1);
                        if let Some(b) = st.acc.reenqueue(batch) {
                            done.push((b, Err(Error::Closed)));
                        }
                    }
                }
            }
        }
        Err(_) => done.extend(outcomes),
    }
    for (mut b, r) in done {
        finish(&inner, &mut b, r);
    }
    if !refresh.is_empty() {
        request_refresh(&inner, refresh);
    }
    inner.wake.notify_one();
}

/// What the response (or the request's failure) says about one batch.
fn outcome_of(
    result: &Result<Option<ProduceResponse>>,
    batch: &ProducerBatch,
    node: NodeId,
    acked_at: Instant,
) -> Result<BatchAck> {
    match result {
        Err(e) => Err(e.clone()),
        Ok(None) => Ok(BatchAck {
            base_offset: -1,
            log_append_time: -1,
            acked_at,
        }),
        Ok(Some(resp)) => match find_partition(resp, batch) {
            Some(p) => match Error::from_code(
                p.error_code,
                p.error_message.as_ref().map(|m| m.to_string()),
                format!("produce to {}", batch.tp),
            ) {
                None => Ok(BatchAck {
                    base_offset: p.base_offset,
                    log_append_time: p.log_append_time_ms,
                    acked_at,
                }),
                Some(e) => Err(e),
            },
            None => Err(Error::protocol(format!(
                "Produce response from broker {node} has no entry for {}",
                batch.tp
            ))),
        },
    }
}

/// Gets a producer id in the background (idempotent producer), retrying with backoff, then
/// wakes the sender. Nothing is sent before it succeeds; records wait up to their delivery
/// timeout.
fn start_init(inner: &Arc<Inner>) {
    if inner.initializing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        let mut attempt = 0;
        loop {
            match init_producer_id(&inner).await {
                Ok(id) => {
                    tracing::debug!(
                        producer_id = id.producer_id,
                        epoch = id.epoch,
                        "producer id assigned"
                    );
                    if let Ok(mut st) = inner.state.lock() {
                        if let Some(s) = st.acc.sequencer_mut() {
                            s.set_identity(id);
                        }
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "InitProducerId failed; retrying");
                    let give_up = inner
                        .state
                        .lock()
                        .map_or(true, |st| st.closing && st.acc.is_empty());
                    if give_up {
                        break;
                    }
                    tokio::time::sleep(inner.config.client.backoff(attempt)).await;
                    attempt = attempt.saturating_add(1);
                }
            }
        }
        inner.initializing.store(false, Ordering::Release);
        inner.wake.notify_one();
    });
}

/// InitProducerId without a transactional id: a fresh producer id and epoch.
async fn init_producer_id(inner: &Inner) -> Result<ProducerIdentity> {
    let conn = inner.cluster.any_connection().await?;
    let version = conn.api_version(ApiKey::InitProducerId)?;
    let req = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let resp = conn.request(version, &req).await?;
    if let Some(e) = Error::from_code(resp.error_code, None, "InitProducerId") {
        return Err(e);
    }
    Ok(ProducerIdentity {
        producer_id: resp.producer_id.0,
        epoch: resp.producer_epoch,
    })
}

async fn produce(
    inner: &Inner,
    node: NodeId,
    batches: &mut [ProducerBatch],
) -> Result<Option<ProduceResponse>> {
    let conn = inner.cluster.connection(node).await?;
    let version = conn.api_version(ApiKey::Produce)?;
    let mut topic_data: Vec<TopicProduceData> = Vec::new();
    for batch in batches.iter_mut() {
        let records = batch.encode(inner.config.compression)?;
        let data = PartitionProduceData::default()
            .with_index(batch.tp.partition)
            .with_records(Some(records));
        match topic_data
            .iter_mut()
            .find(|t| t.name.0.as_str() == &*batch.tp.topic)
        {
            Some(t) => t.partition_data.push(data),
            None => topic_data.push(
                TopicProduceData::default()
                    .with_name(TopicName(StrBytes::from_string(batch.tp.topic.to_string())))
                    .with_partition_data(vec![data]),
            ),
        }
    }
    let timeout_ms = i32::try_from(inner.config.produce_timeout.as_millis()).unwrap_or(i32::MAX);
    let req = ProduceRequest::default()
        .with_acks(inner.config.acks.wire())
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data);
    if inner.config.acks == Acks::None {
        conn.send_oneway(version, &req).await?;
        return Ok(None);
    }
    // The broker may hold an acks=all request for its timeout; wait a little longer than that.
    let wait = inner.config.client.request_timeout.max(
        inner
            .config
            .produce_timeout
            .saturating_add(Duration::from_secs(5)),
    );
    Ok(Some(conn.request_with_timeout(version, &req, wait).await?))
}

fn find_partition<'a>(
    resp: &'a ProduceResponse,
    batch: &ProducerBatch,
) -> Option<&'a PartitionProduceResponse> {
    resp.responses
        .iter()
        .filter(|t| t.name.0.as_str() == &*batch.tp.topic)
        .flat_map(|t| t.partition_responses.iter())
        .find(|p| p.index == batch.tp.partition)
}

/// Completes a batch for good: futures, buffer memory, the flush counter.
pub(super) fn finish(inner: &Inner, batch: &mut ProducerBatch, result: Result<BatchAck>) {
    if let Err(e) = &result {
        tracing::debug!(tp = %batch.tp, error = %e, "batch failed");
    }
    batch.complete(result);
    let held = batch.bytes.saturating_sub(BATCH_HEADER);
    inner.memory.add_permits(held);
    inner.outstanding.send_modify(|n| *n = n.saturating_sub(1));
}

/// Refreshes metadata of `topics` in the background, at most one refresh at a time and at
/// most one per retry backoff, then wakes the sender.
fn request_refresh(inner: &Arc<Inner>, topics: Vec<String>) {
    if inner.refreshing.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = inner.clone();
    tokio::spawn(async move {
        if let Err(e) = inner.cluster.refresh(Some(&topics)).await {
            tracing::debug!(error = %e, "metadata refresh failed");
        }
        tokio::time::sleep(inner.config.client.retry_backoff).await;
        inner.refreshing.store(false, Ordering::Release);
        inner.wake.notify_one();
    });
}
