//! `ControllerClient`: the generated gRPC client plus what every caller needs — several
//! controller addresses, and retries (with backoff, moving to the next address) when a
//! node is unavailable or answers NOT_CONTROLLER. Brokers and the CLI use it; it links
//! neither openraft nor sled, so brokers do not either.
//!
//! Layout: [`ControllerClient`] and [`RetryPolicy`] here, [`ClientError`] (its one error
//! type), [`source`] (the source address of this process's outbound gRPC connections).
#![forbid(unsafe_code)]

pub mod source;

use std::future::Future;
use std::time::Duration;

use spate_proto::controller::controller_client::ControllerClient as GrpcClient;
use spate_proto::controller::*;
use spate_proto::metadata::MetadataBatch;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};
use tower::util::BoxCloneSyncService;
use tower::{BoxError, Layer, Service, ServiceExt};

use spate_metadata::ErrorCode;

/// gRPC message size limit of controller and Raft traffic (tonic's 4 MiB default is too
/// small for a batch of entries, a snapshot chunk or a large metadata batch).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why a call to the controller quorum failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No controller answered as the active one within the retry policy.
    #[error("no active controller answered (last tried: {addr})")]
    NotController {
        /// The controller address tried last.
        addr: String,
    },
    /// The client was given unusable addresses.
    #[error("invalid controller client config: {0}")]
    Config(String),
    /// A gRPC call failed.
    #[error("rpc failed: {0}")]
    Rpc(Box<Status>),
}

impl From<Status> for ClientError {
    fn from(s: Status) -> Self {
        ClientError::Rpc(Box::new(s))
    }
}

impl ClientError {
    /// The Kafka error code a client of the broker should see (the single mapping point).
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ClientError::NotController { .. } => ErrorCode::NotController,
            ClientError::Config(_) => ErrorCode::UnknownServerError,
            ClientError::Rpc(s) => match s.code() {
                tonic::Code::Unavailable => ErrorCode::NotController,
                tonic::Code::DeadlineExceeded => ErrorCode::RequestTimedOut,
                _ => ErrorCode::UnknownServerError,
            },
        }
    }

    /// Whether retrying on another (or the same, later) controller may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::NotController { .. } => true,
            ClientError::Config(_) => false,
            ClientError::Rpc(s) => retriable(s),
        }
    }
}

/// Retry behaviour of [`ControllerClient`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included.
    pub attempts: u32,
    /// First pause between attempts; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Deadline of each attempt.
    pub request_timeout: Duration,
}

/// HTTP/2 keepalive of controller connections: how often to ping, and how long an
/// unanswered ping may take before the connection counts as dead.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// See [`KEEPALIVE_INTERVAL`].
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(3);

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 20,
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Whether a response says "ask another controller".
pub trait NotController {
    /// True when the whole response is NOT_CONTROLLER.
    fn is_not_controller(&self) -> bool;
}

fn all_not_controller(codes: impl Iterator<Item = i32>) -> bool {
    let mut any = false;
    for c in codes {
        if c != ErrorCode::NotController.proto_code() {
            return false;
        }
        any = true;
    }
    any
}

macro_rules! not_controller_by_list {
    ($ty:ty, $field:ident) => {
        impl NotController for $ty {
            fn is_not_controller(&self) -> bool {
                all_not_controller(self.$field.iter().map(|r| r.error_code))
            }
        }
    };
}

macro_rules! not_controller_by_code {
    ($ty:ty) => {
        impl NotController for $ty {
            fn is_not_controller(&self) -> bool {
                self.error_code == ErrorCode::NotController.proto_code()
            }
        }
    };
}

not_controller_by_list!(CreateTopicsResponse, topics);
not_controller_by_list!(DeleteTopicsResponse, topics);
not_controller_by_list!(CreatePartitionsResponse, topics);
not_controller_by_list!(AlterConfigsResponse, resources);
not_controller_by_code!(RegisterBrokerResponse);
not_controller_by_code!(BrokerHeartbeatResponse);
not_controller_by_code!(AllocateProducerIdsResponse);
not_controller_by_code!(ElectLeadersResponse);
not_controller_by_code!(AlterPartitionResponse);

impl NotController for DescribeQuorumResponse {
    fn is_not_controller(&self) -> bool {
        false
    }
}

impl NotController for Streaming<MetadataBatch> {
    fn is_not_controller(&self) -> bool {
        false
    }
}

fn retriable(status: &Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
    )
}

/// The transport of one controller address: its channel, possibly behind layers (a
/// broker's injected link faults). Its error is already a `Status` (a boxed error here
/// trips a compiler limitation on `Send` in the generated client's futures).
pub type Transport = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Status>;

/// A client of the controller quorum.
#[derive(Clone)]
pub struct ControllerClient {
    channels: Vec<(String, Transport)>,
    current: usize,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ControllerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addrs: Vec<_> = self.channels.iter().map(|c| &c.0).collect();
        f.debug_struct("ControllerClient")
            .field("addrs", &addrs)
            .field("current", &self.current)
            .finish()
    }
}

impl ControllerClient {
    /// A client for these controller addresses ("host:port" or URIs). Connections are made
    /// lazily, so controllers that are not up yet are fine; bad addresses are errors.
    pub fn connect<I, S>(addrs: I) -> Result<ControllerClient, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::connect_through(addrs, tower::layer::util::Identity::new())
    }

    /// Like [`ControllerClient::connect`], with every channel behind `layer`.
    pub fn connect_through<I, S, L>(addrs: I, layer: L) -> Result<ControllerClient, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
        L: Layer<Channel>,
        L::Service: Service<http::Request<Body>, Response = http::Response<Body>>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as Service<http::Request<Body>>>::Future: Send + 'static,
        <L::Service as Service<http::Request<Body>>>::Error: Into<BoxError>,
    {
        let mut channels = Vec::new();
        for addr in addrs {
            let addr: String = addr.into();
            let uri = if addr.contains("://") {
                addr.clone()
            } else {
                format!("http://{addr}")
            };
            let endpoint = Endpoint::from_shared(uri).map_err(|e| {
                ClientError::Config(format!("bad controller address '{addr}': {e}"))
            })?;
            let endpoint = source::bind(endpoint)
                .connect_timeout(Duration::from_secs(2))
                .tcp_nodelay(true)
                // A controller cut off by a partition does not close the connection: without
                // pings, a metadata stream or a call to it would hang until the partition
                // heals, and the broker would never move to the new active controller.
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_timeout(KEEPALIVE_TIMEOUT)
                .keep_alive_while_idle(true);
            let transport = layer
                .layer(endpoint.connect_lazy())
                .map_err(|e| Status::from_error(e.into()));
            channels.push((addr, BoxCloneSyncService::new(transport)));
        }
        if channels.is_empty() {
            return Err(ClientError::Config(
                "no controller addresses given".to_string(),
            ));
        }
        Ok(ControllerClient {
            channels,
            current: 0,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> ControllerClient {
        self.retry = retry;
        self
    }

    /// Starts the next call at controller `index` (e.g. the one that answered last).
    pub fn starting_at(mut self, index: usize) -> ControllerClient {
        self.current = index % self.channels.len();
        self
    }

    /// Index of the controller the next call goes to first (the last one that answered,
    /// after a successful call).
    pub fn current_index(&self) -> usize {
        self.current
    }

    /// The address the next call goes to first.
    pub fn current_addr(&self) -> &str {
        &self.channels[self.current].0
    }

    fn grpc(&self) -> GrpcClient<Transport> {
        GrpcClient::new(self.channels[self.current].1.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    fn rotate(&mut self) {
        self.current = (self.current + 1) % self.channels.len();
    }

    /// Calls `f` until it succeeds with a response that is not NOT_CONTROLLER, moving to
    /// the next address and backing off between attempts.
    async fn call<Req, Resp, F, Fut>(&mut self, req: Req, f: F) -> Result<Resp, ClientError>
    where
        Req: Clone,
        Resp: NotController,
        F: Fn(GrpcClient<Transport>, Request<Req>) -> Fut,
        Fut: Future<Output = Result<Response<Resp>, Status>>,
    {
        let mut backoff = self.retry.backoff;
        let mut last = ClientError::NotController {
            addr: self.current_addr().to_string(),
        };
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(self.retry.max_backoff);
            }
            let mut request = Request::new(req.clone());
            request.set_timeout(self.retry.request_timeout);
            match f(self.grpc(), request).await {
                Ok(resp) => {
                    let resp = resp.into_inner();
                    if !resp.is_not_controller() {
                        return Ok(resp);
                    }
                    last = ClientError::NotController {
                        addr: self.current_addr().to_string(),
                    };
                }
                Err(status) if retriable(&status) => last = status.into(),
                Err(status) => return Err(status.into()),
            }
            self.rotate();
        }
        Err(last)
    }

    /// CreateTopics on the active controller.
    pub async fn create_topics(
        &mut self,
        req: CreateTopicsRequest,
    ) -> Result<CreateTopicsResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.create_topics(r).await })
            .await
    }

    /// DeleteTopics on the active controller.
    pub async fn delete_topics(
        &mut self,
        req: DeleteTopicsRequest,
    ) -> Result<DeleteTopicsResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.delete_topics(r).await })
            .await
    }

    /// CreatePartitions on the active controller.
    pub async fn create_partitions(
        &mut self,
        req: CreatePartitionsRequest,
    ) -> Result<CreatePartitionsResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.create_partitions(r).await })
            .await
    }

    /// IncrementalAlterConfigs on the active controller.
    pub async fn alter_configs(
        &mut self,
        req: AlterConfigsRequest,
    ) -> Result<AlterConfigsResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.alter_configs(r).await })
            .await
    }

    /// Registers a broker; the response carries its new epoch.
    pub async fn register_broker(
        &mut self,
        req: RegisterBrokerRequest,
    ) -> Result<RegisterBrokerResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.register_broker(r).await })
            .await
    }

    /// Sends a broker heartbeat (use a short `RetryPolicy` so heartbeats do not pile up).
    pub async fn broker_heartbeat(
        &mut self,
        req: BrokerHeartbeatRequest,
    ) -> Result<BrokerHeartbeatResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.broker_heartbeat(r).await })
            .await
    }

    /// Allocates a block of producer ids.
    pub async fn allocate_producer_ids(
        &mut self,
        req: AllocateProducerIdsRequest,
    ) -> Result<AllocateProducerIdsResponse, ClientError> {
        self.call(
            req,
            |mut c, r| async move { c.allocate_producer_ids(r).await },
        )
        .await
    }

    /// ElectLeaders (preferred or unclean) on the active controller.
    pub async fn elect_leaders(
        &mut self,
        req: ElectLeadersRequest,
    ) -> Result<ElectLeadersResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.elect_leaders(r).await })
            .await
    }

    /// AlterPartition: a partition leader's ISR change, answered once committed.
    /// Partition-level NOT_CONTROLLER (epochs ahead of the controller) is returned to the
    /// caller rather than retried: only the caller can tell whether to wait or rediscover.
    pub async fn alter_partition(
        &mut self,
        req: AlterPartitionRequest,
    ) -> Result<AlterPartitionResponse, ClientError> {
        self.call(req, |mut c, r| async move { c.alter_partition(r).await })
            .await
    }

    /// Leader, term and indexes as the answering node sees them.
    pub async fn describe_quorum(&mut self) -> Result<DescribeQuorumResponse, ClientError> {
        self.call(DescribeQuorumRequest {}, |mut c, r| async move {
            c.describe_quorum(r).await
        })
        .await
    }

    /// Follows the metadata log from `from_offset` (0: start with a snapshot). Any voter
    /// serves it; reconnect with your last applied offset when the stream ends.
    pub async fn watch_metadata(
        &mut self,
        from_offset: u64,
    ) -> Result<Streaming<MetadataBatch>, ClientError> {
        // No per-request deadline: the stream is meant to stay open.
        let timeout = self.retry.request_timeout;
        self.retry.request_timeout = Duration::from_secs(365 * 24 * 3600);
        let res = self
            .call(
                WatchMetadataRequest { from_offset },
                |mut c, r| async move { c.watch_metadata(r).await },
            )
            .await;
        self.retry.request_timeout = timeout;
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_controller_means_every_result_says_so() {
        let r = |code| TopicResult {
            error_code: code,
            ..Default::default()
        };
        assert!(DeleteTopicsResponse {
            topics: vec![r(41), r(41)]
        }
        .is_not_controller());
        assert!(!DeleteTopicsResponse {
            topics: vec![r(41), r(0)]
        }
        .is_not_controller());
        assert!(!DeleteTopicsResponse { topics: vec![] }.is_not_controller());
        assert!(BrokerHeartbeatResponse {
            error_code: 41,
            ..Default::default()
        }
        .is_not_controller());
        assert!(AlterPartitionResponse {
            error_code: 41,
            ..Default::default()
        }
        .is_not_controller());
        assert!(!AlterPartitionResponse::default().is_not_controller());
    }

    #[test]
    fn connect_validates_addresses() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let _g = rt.enter();
        assert!(ControllerClient::connect(Vec::<String>::new()).is_err());
        assert!(ControllerClient::connect(["bad addr ^"]).is_err());
        let mut c = ControllerClient::connect(["127.0.0.1:1", "127.0.0.1:2"]).unwrap();
        assert_eq!(c.current_addr(), "127.0.0.1:1");
        c.rotate();
        c.rotate();
        assert_eq!(c.current_addr(), "127.0.0.1:1");
    }

    #[tokio::test]
    async fn unreachable_controllers_exhaust_retries_with_a_retriable_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let policy = RetryPolicy {
            attempts: 3,
            backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let mut c = ControllerClient::connect([format!("127.0.0.1:{port}")])
            .unwrap()
            .with_retry(policy);
        let err = c.describe_quorum().await.unwrap_err();
        assert!(err.is_retriable(), "{err:?}");
        assert_eq!(err.error_code(), ErrorCode::NotController);
    }
}
