//! Produce: validate and append each partition's batches in request order, then wait
//! for what `acks` demands: nothing (0), the leader's append — and its fsync when the
//! topic flushes before acknowledging — (1), or the high watermark passing the batch
//! (all), bounded by the request's timeout.
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse, TopicName};
use spate_metadata::ErrorCode;
use spate_metadata::MetadataImage;

use super::leader_hints::LeaderHints;
use super::{leader_partition, str_bytes};
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::partition::{AckPoint, Partition};
use crate::server::context::{Outcome, PendingResponse, RequestContext};
use spate_log::AppendInfo;

/// What happened to one partition's batches before any waiting.
enum Appended {
    /// Landed in the log at this leader epoch; acks wait on it.
    Done(Arc<Partition>, AppendInfo, i32),
    Failed(Refusal),
}

/// Why a partition's batches were not appended (or not acknowledged).
struct Refusal {
    code: i16,
    message: String,
    /// The record that made a batch invalid: its index in the batch and why (Produce
    /// v8+ `record_errors`, as Kafka's LogValidator reports them).
    record: Option<(i32, String)>,
}

impl Refusal {
    fn new(code: i16, message: String) -> Refusal {
        Refusal {
            code,
            message,
            record: None,
        }
    }

    fn of(e: &BrokerError) -> Refusal {
        let record = match e {
            BrokerError::Log(spate_log::LogError::InvalidRecordAt { index, reason }) => {
                Some((*index, reason.clone()))
            }
            _ => None,
        };
        Refusal {
            code: e.code(),
            message: e.to_string(),
            record,
        }
    }
}

/// Appends now; returns the response future (None for acks=0).
pub fn handle(ctx: &RequestContext, req: ProduceRequest) -> Option<PendingResponse> {
    let acks = req.acks;
    let now = now_ms();
    let valid_acks = matches!(acks, -1..=1);
    let mut topics: Vec<(TopicName, Vec<(i32, Appended)>)> =
        Vec::with_capacity(req.topic_data.len());
    for topic in req.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for p in topic.partition_data {
            let outcome = if !valid_acks {
                Appended::Failed(Refusal::new(
                    ErrorCode::InvalidRequiredAcks.code(),
                    format!("acks must be -1, 0 or 1, got {acks}"),
                ))
            } else if name == crate::group::coordinator::OFFSETS_TOPIC {
                // Internal: only the group coordinator writes it (Kafka refuses it too).
                Appended::Failed(Refusal::new(
                    ErrorCode::InvalidTopicException.code(),
                    format!("cannot append to the internal topic {name}"),
                ))
            } else if req.transactional_id.is_some() {
                Appended::Failed(Refusal::new(
                    ErrorCode::TransactionalIdAuthorizationFailed.code(),
                    "transactions are not supported by this broker".to_string(),
                ))
            } else {
                append(ctx, &name, p.index, p.records.as_deref(), acks, now)
            };
            if let Appended::Failed(r) = &outcome {
                tracing::debug!(topic = %name, partition = p.index, code = r.code, msg = %r.message, "produce rejected");
            }
            partitions.push((p.index, outcome));
        }
        topics.push((topic.name, partitions));
    }
    for (name, partitions) in &topics {
        for (_, outcome) in partitions {
            if let Appended::Done(_, info, _) = outcome {
                let m = &ctx.state.metrics;
                m.bytes_in(name.0.as_str(), info.bytes as u64, info.record_count as u64);
            }
        }
    }
    if acks == 0 {
        // No response is owed, so an error can only be signalled as Kafka does: by closing
        // the connection, which makes the client refresh its metadata.
        let failed = topics
            .iter()
            .any(|(_, parts)| parts.iter().any(|(_, o)| matches!(o, Appended::Failed(..))));
        return failed.then(|| -> PendingResponse { Box::pin(async { Outcome::Close }) });
    }
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let version = ctx.api_version;
    let state = ctx.state.clone();
    let listener = ctx.session.listener.clone();
    Some(ctx.later(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut responses = Vec::with_capacity(topics.len());
        for (name, partitions) in topics {
            let mut results = Vec::with_capacity(partitions.len());
            for (index, outcome) in partitions {
                let result = match outcome {
                    Appended::Done(partition, info, epoch) => {
                        // Left on drop too (the connection closed while waiting).
                        let waiting = state.metrics.purgatory_entry();
                        let acked = await_acks(&partition, &info, epoch, acks, deadline).await;
                        drop(waiting);
                        match acked {
                            Ok(()) => Ok((info, partition.log_start_offset())),
                            Err(e) => Err(Refusal::of(&e)),
                        }
                    }
                    Appended::Failed(refusal) => Err(refusal),
                };
                results.push(partition_response(index, result, version));
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_partition_responses(results),
            );
        }
        let mut response = ProduceResponse::default();
        if version >= 10 {
            let endpoints = leader_hints(&state.metadata.image(), &listener, &mut responses);
            response = response.with_node_endpoints(endpoints);
        }
        response.with_responses(responses)
    }))
}

/// KIP-951 (Produce v10+): a partition refused with NOT_LEADER_OR_FOLLOWER names its
/// current leader, and the response carries the endpoints of the leaders named.
fn leader_hints(
    image: &MetadataImage,
    listener: &str,
    responses: &mut [TopicProduceResponse],
) -> Vec<NodeEndpoint> {
    let not_leader = ErrorCode::NotLeaderOrFollower.code();
    let mut hints = LeaderHints::new(image);
    for topic in responses.iter_mut() {
        for p in topic
            .partition_responses
            .iter_mut()
            .filter(|p| p.error_code == not_leader)
        {
            if let Some((leader, epoch)) = hints.leader(topic.name.0.as_str(), p.index) {
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

fn append(
    ctx: &RequestContext,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    acks: i16,
    now: i64,
) -> Appended {
    let result = (|| {
        let p = leader_partition(&ctx.state, topic, partition)?;
        let Some(records) = records.filter(|r| !r.is_empty()) else {
            return Err(BrokerError::Log(spate_log::LogError::InvalidRecord(
                "produce request carries no record batches".into(),
            )));
        };
        // acks=all is refused before appending when the committed ISR is too small.
        let min_insync = (acks == -1).then(|| p.settings().min_insync_replicas.max(1) as usize);
        let (info, epoch) = p.append_as_leader(records, min_insync, now)?;
        Ok((p, info, epoch))
    })();
    match result {
        Ok((p, info, epoch)) => Appended::Done(p, info, epoch),
        Err(e) => Appended::Failed(Refusal::of(&e)),
    }
}

async fn await_acks(
    partition: &Partition,
    info: &AppendInfo,
    leader_epoch: i32,
    acks: i16,
    deadline: tokio::time::Instant,
) -> Result<(), BrokerError> {
    let end = info.last_offset + 1;
    let point = AckPoint::for_request(acks, &partition.settings());
    let wait = partition.wait_acknowledged(end, leader_epoch, point);
    match tokio::time::timeout_at(deadline, wait).await {
        Ok(result) => result,
        Err(_) => Err(BrokerError::AckTimeout {
            partition: partition.tp.clone(),
            acks,
        }),
    }
}

fn partition_response(
    index: i32,
    result: Result<(AppendInfo, i64), Refusal>,
    version: i16,
) -> PartitionProduceResponse {
    let base = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok((info, log_start)) => base
            .with_error_code(0)
            .with_base_offset(info.first_offset)
            .with_log_append_time_ms(info.log_append_time)
            .with_log_start_offset(if version >= 5 { log_start } else { -1 }),
        Err(refusal) => {
            let record_errors = match (version >= 8, refusal.record) {
                (true, Some((index, reason))) => vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(index)
                    .with_batch_index_error_message(Some(str_bytes(reason)))],
                _ => Vec::new(),
            };
            base.with_error_code(refusal.code)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1)
                .with_record_errors(record_errors)
                .with_error_message((version >= 8).then(|| str_bytes(refusal.message)))
        }
    }
}
