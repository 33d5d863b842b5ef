//! The leader side of replication: the `Replication` gRPC service followers fetch from.
//!
//! A fetch records each follower's LEO (its fetch offset) in the partition's replica
//! state — which may advance the high watermark and release acks=all produces — and
//! long-polls until there is data, an error, or the wait ends. ISR expansions it
//! triggers go to the [`IsrUpdater`](super::isr_updater::IsrUpdater).
use std::sync::Arc;
use std::time::Duration;

use spate_metadata::ids::{BrokerEpoch, NodeId, TopicId};
use spate_proto::replication::replication_server::{Replication, ReplicationServer};
use spate_proto::replication::{
    EpochEnd, FetchedPartition, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
    ReplicaFetchRequest, ReplicaFetchResponse,
};
use tonic::{Request, Response, Status};

use crate::clock::now_ms;
use crate::delayed::{self, Attempt};
use crate::error::{BrokerError, NotServing};
use crate::partition::{read_views, FirstBatch, FollowerFetchRequest, Partition, TopicPartition};
use crate::state::BrokerState;
use spate_log::LogError;

use super::MAX_MESSAGE_BYTES;

/// The longest a follower fetch may park.
const MAX_WAIT_CAP: Duration = Duration::from_secs(10);

/// Serves followers of partitions this broker leads.
#[derive(Clone)]
pub struct ReplicationService {
    state: Arc<BrokerState>,
}

impl ReplicationService {
    /// A service over this broker's partitions.
    pub fn new(state: Arc<BrokerState>) -> Self {
        ReplicationService { state }
    }

    /// The tonic server for it.
    pub fn into_server(self) -> ReplicationServer<Self> {
        ReplicationServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn partition(&self, topic_id: &[u8], index: i32) -> Result<Arc<Partition>, BrokerError> {
        let id = uuid::Uuid::from_slice(topic_id)
            .map_err(|_| BrokerError::InvalidRequest("topic id must be 16 bytes".into()))?;
        let image = self.state.metadata.image();
        let topic = image
            .topics()
            .get(&TopicId(id))
            .ok_or(BrokerError::UnknownTopicId { id })?;
        self.state
            .replicas
            .get(&topic.name, index)
            .filter(|p| p.topic_id == *id.as_bytes())
            .ok_or_else(|| BrokerError::NotLeaderOrFollower {
                partition: TopicPartition::new(topic.name.as_str(), index),
                broker: NodeId(self.state.config.node_id),
                why: NotServing::NotHosted,
            })
    }
}

fn failed(topic_id: Vec<u8>, partition: i32, e: &BrokerError) -> FetchedPartition {
    // An out-of-range answer says where the leader's log is, so the follower can decide
    // between truncating and restarting at the leader's log start.
    let (log_start_offset, log_end_offset) = match e {
        BrokerError::Log(LogError::OffsetOutOfRange {
            log_start_offset,
            log_end_offset,
            ..
        }) => (*log_start_offset, *log_end_offset),
        _ => (-1, -1),
    };
    FetchedPartition {
        topic_id,
        partition,
        error_code: e.code() as i32,
        high_watermark: -1,
        log_start_offset,
        records: Vec::new().into(),
        log_end_offset,
        error_message: e.to_string(),
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        let req = request.into_inner();
        let follower = NodeId(req.replica_id);
        let broker_epoch = BrokerEpoch(req.broker_epoch);
        let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
        let deadline = tokio::time::Instant::now() + max_wait;
        let min_bytes = req.min_bytes.max(0) as usize;
        // replica.fetch.response.max.bytes bounds every answer, whatever the follower asks
        // (the first batch still comes whole, or a follower could never pass it).
        let limit = self.state.config.replication.fetch_response_max_bytes;
        let max_bytes = if req.max_bytes <= 0 {
            limit
        } else {
            (req.max_bytes as usize).min(limit)
        };
        let partitions: Vec<_> = req
            .partitions
            .iter()
            .map(|p| (p, self.partition(&p.topic_id, p.partition)))
            .collect();
        // Subscribe before the first read, so an append between a read and the wait
        // wakes the fetch (the delayed-operation contract, docs/architecture.md §5).
        let watched: Vec<_> = partitions
            .iter()
            .filter_map(|(_, p)| p.as_ref().ok().map(|p| p.subscribe()))
            .collect();
        let partitions = &partitions;
        let attempt = || async move {
            // Under each partition's lock: record the follower's offset, take a view.
            let mut any_error = false;
            let mut out = Vec::with_capacity(partitions.len());
            let mut views = Vec::with_capacity(partitions.len());
            for (want, part) in partitions {
                let p = match part {
                    Ok(p) => p,
                    Err(e) => {
                        any_error = true;
                        out.push(failed(want.topic_id.clone(), want.partition, e));
                        views.push(None);
                        continue;
                    }
                };
                let request = FollowerFetchRequest {
                    follower,
                    broker_epoch,
                    current_leader_epoch: want.current_leader_epoch,
                    fetch_offset: want.fetch_offset,
                    max_bytes,
                };
                match p.serve_follower_fetch(&request, now_ms()) {
                    Ok(fetched) => {
                        if let Some(change) = fetched.isr_change {
                            self.state.isr_updater.propose(p.clone(), change);
                        }
                        out.push(FetchedPartition {
                            topic_id: want.topic_id.clone(),
                            partition: want.partition,
                            error_code: 0,
                            high_watermark: fetched.high_watermark,
                            log_start_offset: fetched.log_start_offset,
                            records: Default::default(),
                            log_end_offset: fetched.log_end_offset,
                            error_message: String::new(),
                        });
                        views.push(Some(fetched.view));
                    }
                    Err(e) => {
                        any_error = true;
                        out.push(failed(want.topic_id.clone(), want.partition, &e));
                        views.push(None);
                    }
                }
            }
            // Off every lock (and, when large, off the async workers): the segment reads.
            let mut bytes = 0usize;
            if views.iter().flatten().any(|v| v.upper_bound() > 0) {
                let views = views
                    .into_iter()
                    .map(|v| v.map(|v| (v, usize::MAX)))
                    .collect();
                let read = read_views(views, max_bytes, FirstBatch::EveryPartition).await;
                match read {
                    Ok(results) => {
                        for (slot, result) in out.iter_mut().zip(results) {
                            match result {
                                Some(Ok(records)) => {
                                    bytes += records.len();
                                    slot.records = records;
                                }
                                Some(Err(e)) => {
                                    any_error = true;
                                    let e = BrokerError::from(e);
                                    *slot = failed(slot.topic_id.clone(), slot.partition, &e);
                                }
                                None => {}
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "replica fetch read task failed");
                        any_error = true;
                    }
                }
            }
            if bytes >= min_bytes.max(1) || any_error {
                Attempt::Done(out)
            } else {
                Attempt::Wait(out)
            }
        };
        let out = delayed::complete_async(watched, Some(deadline), attempt).await;
        Ok(Response::new(ReplicaFetchResponse {
            error_code: 0,
            partitions: out,
        }))
    }

    async fn offset_for_leader_epoch(
        &self,
        request: Request<OffsetForLeaderEpochRequest>,
    ) -> Result<Response<OffsetForLeaderEpochResponse>, Status> {
        let req = request.into_inner();
        let partitions = req
            .partitions
            .into_iter()
            .map(|q| {
                let answer = self.partition(&q.topic_id, q.partition).and_then(|p| {
                    let state = p.check_leader_epoch(q.current_leader_epoch)?;
                    if !state.is_leader {
                        return Err(BrokerError::NotLeaderOrFollower {
                            partition: p.tp.clone(),
                            broker: NodeId(self.state.config.node_id),
                            why: NotServing::NotLeader,
                        });
                    }
                    Ok(p.end_offset_for_epoch(q.leader_epoch))
                });
                match answer {
                    Ok((epoch, end)) => EpochEnd {
                        topic_id: q.topic_id,
                        partition: q.partition,
                        error_code: 0,
                        leader_epoch: epoch,
                        end_offset: end,
                        error_message: String::new(),
                    },
                    Err(e) => EpochEnd {
                        topic_id: q.topic_id,
                        partition: q.partition,
                        error_code: e.code() as i32,
                        leader_epoch: -1,
                        end_offset: -1,
                        error_message: e.to_string(),
                    },
                }
            })
            .collect();
        Ok(Response::new(OffsetForLeaderEpochResponse { partitions }))
    }
}
