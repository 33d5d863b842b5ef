//! Helpers shared by the controller's integration tests (`mod common;` in each test file).
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use spate_controller::{start, ControllerConfig, ControllerHandle};
use spate_controller_client::{ControllerClient, RetryPolicy};
use spate_proto::controller::*;
use spate_proto::metadata::ReplicaList;
use tokio::net::TcpListener;
use tonic::transport::Channel;

/// How long a test waits for a leader, an offset or an `eventually` condition.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `check` until it holds, for at most [`WAIT`] (no fixed sleeps where a condition
/// can be polled).
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    eventually_within(WAIT, what, check).await
}

/// [`eventually`] with an explicit time limit.
pub async fn eventually_within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Starts a controller on a fresh 127.0.0.1 port; does not wait for a leader.
pub async fn start_node(config: ControllerConfig) -> ControllerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    start(config, listener).await.unwrap()
}

/// Starts a controller on a fresh 127.0.0.1 port and waits until it knows a leader.
pub async fn start_leader(config: ControllerConfig) -> ControllerHandle {
    let node = start_node(config).await;
    node.wait_for_leader(WAIT).await.unwrap();
    node
}

/// A one-voter config (node 1) with long broker sessions, for tests that do not keep
/// their fake brokers heartbeating.
pub fn long_session_config(dir: &Path) -> ControllerConfig {
    let mut config = ControllerConfig::single(1, dir);
    config.session_timeout = Duration::from_secs(120);
    config
}

/// Starts node 2 of a two-voter quorum whose node 1 never starts: it must not initialize,
/// so it never has a leader and is never the active controller.
pub async fn start_leaderless(dir: &Path) -> ControllerHandle {
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ControllerConfig::new(2, dir, vec![(1, dead.to_string()), (2, String::new())]);
    start_node(config).await
}

/// The retrying client library, pointed at `node` only.
pub fn client(node: &ControllerHandle) -> ControllerClient {
    ControllerClient::connect([node.local_addr().to_string()]).unwrap()
}

/// A retry policy that gives up almost at once.
pub fn few_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        backoff: Duration::from_millis(1),
        ..Default::default()
    }
}

/// The bare generated gRPC client for `node`: no retries, no redirects.
pub async fn raw_client(node: &ControllerHandle) -> controller_client::ControllerClient<Channel> {
    let channel = Channel::from_shared(format!("http://{}", node.local_addr()))
        .unwrap()
        .connect()
        .await
        .unwrap();
    controller_client::ControllerClient::new(channel)
}

/// One heartbeat from broker `id` with `epoch`, claiming to have caught up to its own
/// registration; returns the response unchecked.
pub async fn heartbeat(
    client: &mut ControllerClient,
    id: i32,
    epoch: i64,
    want_fence: bool,
) -> BrokerHeartbeatResponse {
    let req = BrokerHeartbeatRequest {
        broker_id: id,
        broker_epoch: epoch,
        metadata_offset: epoch as u64,
        want_fence,
        ..Default::default()
    };
    client.broker_heartbeat(req).await.unwrap()
}

/// Registers broker `id` (incarnation `inc-{id}`) and heartbeats once it has caught up,
/// so it is unfenced; returns its broker epoch.
pub async fn add_broker(client: &mut ControllerClient, id: i32) -> i64 {
    let reg = client
        .register_broker(RegisterBrokerRequest {
            broker_id: id,
            incarnation_id: format!("inc-{id}"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reg.error_code, 0, "{}", reg.error_message);
    assert!(reg.broker_epoch > 0);
    let hb = heartbeat(client, id, reg.broker_epoch, false).await;
    assert_eq!(hb.error_code, 0, "{}", hb.error_message);
    assert!(!hb.is_fenced && hb.is_caught_up);
    reg.broker_epoch
}

/// [`add_broker`] for brokers 1..=3; returns their epochs in that order.
pub async fn add_brokers(client: &mut ControllerClient) -> Vec<i64> {
    let mut epochs = Vec::new();
    for id in 1..=3 {
        epochs.push(add_broker(client, id).await);
    }
    epochs
}

/// A request creating topic `name` with `partitions` partitions of `rf` replicas.
pub fn create_req(name: &str, partitions: i32, rf: i32) -> CreateTopicsRequest {
    CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        }],
        validate_only: false,
    }
}

/// Creates topic "t", one partition on replicas [1, 2, 3]: broker 1 is the preferred
/// leader and leads.
pub async fn create_topic_t(client: &mut ControllerClient) {
    let res = client
        .create_topics(CreateTopicsRequest {
            topics: vec![CreatableTopic {
                name: "t".into(),
                num_partitions: -1,
                replication_factor: -1,
                assignments: vec![ReplicaList { ids: vec![1, 2, 3] }],
                ..Default::default()
            }],
            validate_only: false,
        })
        .await
        .unwrap();
    let t = &res.topics[0];
    assert_eq!(t.error_code, 0, "{}", t.error_message);
}
