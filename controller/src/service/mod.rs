//! The `Controller` gRPC service (controller.proto). Admin and broker RPCs decide against
//! the applied image and commit through Raft; the reply goes out once the records are
//! applied. On a non-leader they answer NOT_CONTROLLER inside the response.

mod leader;
pub(crate) mod liveness;
pub(crate) mod rebalance;
mod watch;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;
use spate_proto::controller::controller_server::{Controller, ControllerServer};
use spate_proto::controller::*;
use spate_proto::metadata::MetadataBatch;
use tokio::sync::{mpsc, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::decisions::{self, BrokerSessions, TopicDefaults};
use crate::error::{ApiError, ControllerError};
use crate::network::MAX_MESSAGE_BYTES;
use crate::store::MetadataView;
use crate::types::{RaftNodeId, SpateRaft};
use spate_metadata::ids::NodeId;

/// State only the active controller's decisions touch, behind one async mutex.
pub(crate) struct DecisionState {
    pub(crate) sessions: BrokerSessions,
    /// The Raft term in which sessions were last reset; `None` forces a resync.
    pub(crate) active_term: Option<u64>,
    pub(crate) rng: StdRng,
}

pub(crate) struct Shared {
    pub(crate) node_id: RaftNodeId,
    pub(crate) raft: SpateRaft,
    pub(crate) view: MetadataView,
    pub(crate) decider: Mutex<DecisionState>,
    pub(crate) defaults: TopicDefaults,
    pub(crate) shutdown: tokio::sync::watch::Receiver<bool>,
}

/// The controller gRPC service; cheap to clone.
#[derive(Clone)]
pub struct ControllerService {
    pub(crate) shared: Arc<Shared>,
}

impl ControllerService {
    /// A service for Raft node `node_id`; `shutdown` ends watch streams when it turns true.
    pub fn new(
        node_id: RaftNodeId,
        raft: SpateRaft,
        view: MetadataView,
        session_timeout: Duration,
        defaults: TopicDefaults,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> ControllerService {
        let decider = DecisionState {
            sessions: BrokerSessions::new(session_timeout),
            active_term: None,
            rng: StdRng::from_os_rng(),
        };
        let shared = Shared {
            node_id,
            raft,
            view,
            decider: Mutex::new(decider),
            defaults,
            shutdown,
        };
        ControllerService {
            shared: Arc::new(shared),
        }
    }

    /// The tonic server for this service, with raised message size limits (a snapshot of
    /// a big cluster exceeds tonic's 4 MiB default).
    pub fn into_server(self) -> ControllerServer<ControllerService> {
        ControllerServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn topic_error(name: &str, e: &ApiError) -> TopicResult {
    TopicResult {
        name: name.to_string(),
        error_code: e.code.proto_code(),
        error_message: e.message.clone(),
    }
}

fn offset_as_epoch(offset: Option<u64>) -> i64 {
    offset.and_then(|o| i64::try_from(o).ok()).unwrap_or(-1)
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn create_topics(
        &self,
        request: Request<CreateTopicsRequest>,
    ) -> Result<Response<CreateTopicsResponse>, Status> {
        let req = request.into_inner();
        let defaults = self.shared.defaults;
        let res = self
            .decide(|img, st| decisions::create_topics(img, &req, &defaults, &mut st.rng))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                let topics = req.topics.iter().map(|t| CreatableTopicResult {
                    name: t.name.clone(),
                    error_code: e.code.proto_code(),
                    error_message: e.message.clone(),
                    num_partitions: -1,
                    replication_factor: -1,
                    ..Default::default()
                });
                CreateTopicsResponse {
                    topics: topics.collect(),
                }
            }
        }))
    }

    async fn delete_topics(
        &self,
        request: Request<DeleteTopicsRequest>,
    ) -> Result<Response<DeleteTopicsResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .decide(|img, _| decisions::delete_topics(img, &req))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                DeleteTopicsResponse {
                    topics: req.names.iter().map(|n| topic_error(n, &e)).collect(),
                }
            }
        }))
    }

    async fn create_partitions(
        &self,
        request: Request<CreatePartitionsRequest>,
    ) -> Result<Response<CreatePartitionsResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .decide(|img, st| decisions::create_partitions(img, &req, &mut st.rng))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                CreatePartitionsResponse {
                    topics: req
                        .topics
                        .iter()
                        .map(|t| topic_error(&t.name, &e))
                        .collect(),
                }
            }
        }))
    }

    async fn alter_configs(
        &self,
        request: Request<AlterConfigsRequest>,
    ) -> Result<Response<AlterConfigsResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .decide(|img, _| decisions::alter_configs(img, &req))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                let resources = req.resources.iter().map(|r| AlterConfigsResult {
                    resource_type: r.resource_type,
                    resource_name: r.resource_name.clone(),
                    error_code: e.code.proto_code(),
                    error_message: e.message.clone(),
                });
                AlterConfigsResponse {
                    resources: resources.collect(),
                }
            }
        }))
    }

    async fn register_broker(
        &self,
        request: Request<RegisterBrokerRequest>,
    ) -> Result<Response<RegisterBrokerResponse>, Status> {
        let req = request.into_inner();
        let now = Instant::now();
        let res = self
            .decide(|img, st| {
                let result = decisions::register_broker(img, &st.sessions, &req, now);
                if result.response.error_code == 0 {
                    st.sessions.touch(NodeId(req.broker_id), now);
                }
                result
            })
            .await;
        Ok(Response::new(match res {
            Ok((mut resp, offset)) => {
                if resp.error_code == 0 {
                    // The epoch is the offset the registration committed at (see decisions::brokers).
                    resp.broker_epoch = offset_as_epoch(offset);
                }
                resp
            }
            Err(e) => {
                let e = e.to_api();
                RegisterBrokerResponse {
                    error_code: e.code.proto_code(),
                    error_message: e.message,
                    broker_epoch: -1,
                }
            }
        }))
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let req = request.into_inner();
        let now = Instant::now();
        let res = self
            .decide(|img, st| decisions::broker_heartbeat(img, &mut st.sessions, &req, now))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                BrokerHeartbeatResponse {
                    error_code: e.code.proto_code(),
                    error_message: e.message,
                    is_fenced: true,
                    ..Default::default()
                }
            }
        }))
    }

    type WatchMetadataStream = ReceiverStream<Result<MetadataBatch, Status>>;

    async fn watch_metadata(
        &self,
        request: Request<WatchMetadataRequest>,
    ) -> Result<Response<Self::WatchMetadataStream>, Status> {
        // Only the active controller serves the stream (as KRaft brokers follow the leader):
        // a lagging voter, e.g. one that just restarted, would hand out an old image, and a
        // broker acting on it could drop partitions that still exist. `lead` also makes
        // sure the image holds everything committed before this term.
        drop(
            self.lead()
                .await
                .map_err(|e| Status::unavailable(e.to_string()))?,
        );
        let from = request.into_inner().from_offset;
        let (tx, rx) = mpsc::channel(watch::WATCH_BUFFER);
        let view = self.shared.view.clone();
        let me = self.shared.node_id;
        let mut metrics = self.shared.raft.metrics();
        let lost = async move {
            let _ = metrics.wait_for(|m| m.current_leader != Some(me)).await;
        };
        tokio::spawn(watch::forward(
            view,
            from,
            self.shared.shutdown.clone(),
            lost,
            tx,
        ));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn allocate_producer_ids(
        &self,
        request: Request<AllocateProducerIdsRequest>,
    ) -> Result<Response<AllocateProducerIdsResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .decide(|img, _| decisions::allocate_producer_ids(img, &req))
            .await;
        Ok(Response::new(match res {
            Ok((resp, _)) => resp,
            Err(e) => {
                let e = e.to_api();
                AllocateProducerIdsResponse {
                    error_code: e.code.proto_code(),
                    error_message: e.message,
                    first_producer_id: -1,
                    count: 0,
                }
            }
        }))
    }

    async fn elect_leaders(
        &self,
        request: Request<ElectLeadersRequest>,
    ) -> Result<Response<ElectLeadersResponse>, Status> {
        let req = request.into_inner();
        let res = self
            .decide(|img, _| decisions::elect_leaders(img, &req))
            .await;
        Ok(Response::new(match res {
            Ok((mut resp, offset)) => {
                resp.metadata_offset = offset.unwrap_or(0);
                resp
            }
            Err(e) => {
                let e = e.to_api();
                ElectLeadersResponse {
                    error_code: e.code.proto_code(),
                    error_message: e.message,
                    ..Default::default()
                }
            }
        }))
    }

    async fn alter_partition(
        &self,
        request: Request<AlterPartitionRequest>,
    ) -> Result<Response<AlterPartitionResponse>, Status> {
        let req = request.into_inner();
        Ok(Response::new(
            match self.alter_partition_committed(&req).await {
                Ok(resp) => resp,
                Err(e) => {
                    let e = e.to_api();
                    AlterPartitionResponse {
                        error_code: e.code.proto_code(),
                        error_message: e.message,
                        ..Default::default()
                    }
                }
            },
        ))
    }

    async fn describe_quorum(
        &self,
        _request: Request<DescribeQuorumRequest>,
    ) -> Result<Response<DescribeQuorumResponse>, Status> {
        Ok(Response::new(self.describe_quorum_now()))
    }
}

impl ControllerService {
    /// AlterPartition through decide-then-commit. Unlike [`Self::decide`] the decision
    /// lock is held until the reply is built, so the ISR and partition epoch it reports
    /// are the ones this commit produced and no later decision's.
    async fn alter_partition_committed(
        &self,
        req: &AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, ControllerError> {
        let mut st = self.lead().await?;
        let result = self
            .shared
            .view
            .with_image(|img| decisions::alter_partition(img, req));
        let mut resp = result.response;
        if result.records.is_empty() {
            return Ok(resp);
        }
        resp.metadata_offset = self.propose(&mut st, result.records).await?;
        self.shared
            .view
            .with_image(|img| decisions::alter_partition::refresh_from_image(img, &mut resp));
        drop(st);
        Ok(resp)
    }

    /// Quorum state from openraft's metrics and the applied state.
    pub(crate) fn describe_quorum_now(&self) -> DescribeQuorumResponse {
        let rx = self.shared.raft.metrics();
        let m = rx.borrow();
        let membership = m.membership_config.membership();
        let voters = membership
            .voter_ids()
            .map(|id| VoterState {
                node_id: id,
                address: membership
                    .get_node(&id)
                    .map(|n| n.addr.clone())
                    .unwrap_or_default(),
                matched_index: m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).copied().flatten())
                    .map_or(0, |l| l.index),
            })
            .collect();
        DescribeQuorumResponse {
            leader_id: m.current_leader.unwrap_or_default(),
            has_leader: m.current_leader.is_some(),
            term: m.current_term,
            commit_index: self.shared.view.committed_index().unwrap_or(0),
            applied_index: m.last_applied.map_or(0, |l| l.index),
            voters,
        }
    }
}

impl From<ControllerError> for Status {
    fn from(e: ControllerError) -> Status {
        match e {
            ControllerError::Rpc(s) => *s,
            other if other.is_retriable() => Status::unavailable(other.to_string()),
            other => Status::internal(other.to_string()),
        }
    }
}
