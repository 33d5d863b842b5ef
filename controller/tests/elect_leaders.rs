//! Preferred-leader election end to end on a one-voter controller over gRPC: the
//! ElectLeaders RPC and the periodic rebalance move leadership back to the first replica.

mod common;

use std::time::Duration;

use common::*;
use spate_controller::types::RecordBatch;
use spate_controller::ControllerHandle;
use spate_controller_client::ControllerClient;
use spate_metadata::ids::{LeaderEpoch, NodeId};
use spate_metadata::records;
use spate_proto::controller::*;

/// A one-voter controller with long sessions (these tests do not keep fake brokers
/// heartbeating) that rebalances leaders every `rebalance_every`, if given.
async fn start_with_rebalance(
    dir: &std::path::Path,
    rebalance_every: Option<Duration>,
) -> ControllerHandle {
    let mut config = long_session_config(dir);
    config.auto_leader_rebalance = rebalance_every.is_some();
    if let Some(every) = rebalance_every {
        config.leader_imbalance_check_interval = every;
    }
    start_leader(config).await
}

/// (leader, isr, leader epoch) of t-0.
fn state(node: &ControllerHandle) -> (Option<i32>, Vec<i32>, LeaderEpoch) {
    let image = node.image();
    let p = &image.topic_by_name("t").unwrap().partitions[&0];
    (
        p.leader.map(|l| l.0),
        p.isr.iter().map(|n| n.0).collect(),
        p.leader_epoch,
    )
}

/// Broker 1 shuts down (controlled: leadership moves to 2 and 1 leaves the ISR) and
/// comes back, unfenced but out of the ISR.
async fn bounce_preferred_leader(node: &ControllerHandle, c: &mut ControllerClient, epoch1: i64) {
    let hb = heartbeat(c, 1, epoch1, true).await;
    assert_eq!(hb.error_code, 0, "{}", hb.error_message);
    assert!(hb.is_fenced);
    assert_eq!(state(node).0, Some(2));
    assert_eq!(state(node).1, vec![2, 3]);
    let hb = heartbeat(c, 1, epoch1, false).await;
    assert_eq!(hb.error_code, 0, "{}", hb.error_message);
    assert!(!hb.is_fenced);
    assert!(node.image().is_unfenced(NodeId(1)));
    assert_eq!(state(node).0, Some(2));
}

/// Broker 1 rejoins the ISR of t-0. The controller has no AlterPartition RPC yet (the
/// partition leader would ask for this), so the record it would commit is written through
/// Raft directly. Returns the leader epoch, which the rejoin does not change.
async fn readmit_to_isr(node: &ControllerHandle) -> LeaderEpoch {
    let (leader, _, epoch) = state(node);
    assert_eq!(leader, Some(2));
    let topic = node.image().topic_by_name("t").unwrap().id;
    let isr = [NodeId(2), NodeId(3), NodeId(1)];
    let rejoin = records::partition_change(topic, 0, None, Some(&isr));
    node.raft()
        .client_write(RecordBatch::encode(&[rejoin]))
        .await
        .unwrap();
    epoch
}

fn elect_req(partitions: Vec<i32>) -> ElectLeadersRequest {
    ElectLeadersRequest {
        election_type: ElectionType::Preferred as i32,
        all_partitions: false,
        topics: vec![ElectLeadersTopic {
            name: "t".into(),
            partitions,
        }],
    }
}

fn codes(resp: &ElectLeadersResponse) -> Vec<(i32, i32)> {
    resp.results
        .iter()
        .map(|r| (r.partition, r.error_code))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elect_leaders_moves_leadership_back_to_the_preferred_replica() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with_rebalance(dir.path(), None).await;
    let mut c = client(&node);
    let epochs = add_brokers(&mut c).await;
    create_topic_t(&mut c).await;
    assert_eq!(state(&node).0, Some(1));

    let resp = c.elect_leaders(elect_req(vec![0])).await.unwrap();
    assert_eq!(codes(&resp), vec![(0, 84)], "preferred already leads");
    assert_eq!(resp.metadata_offset, 0, "nothing committed");

    // Fenced and back, but out of the ISR: not available yet.
    bounce_preferred_leader(&node, &mut c, epochs[0]).await;
    let resp = c.elect_leaders(elect_req(vec![0, 9])).await.unwrap();
    assert_eq!(codes(&resp), vec![(0, 80), (9, 3)]);
    assert!(resp.results[0].error_message.contains("not in the ISR"));

    // Re-admitted to the ISR: the election moves leadership back.
    let epoch_before = readmit_to_isr(&node).await;
    assert_eq!(state(&node).0, Some(2));
    let resp = c.elect_leaders(elect_req(vec![0])).await.unwrap();
    assert_eq!(resp.error_code, 0, "{}", resp.error_message);
    assert_eq!(codes(&resp), vec![(0, 0)]);
    assert!(resp.metadata_offset > 0);
    node.wait_for_offset(resp.metadata_offset, WAIT)
        .await
        .unwrap();
    let (leader, isr, epoch_after) = state(&node);
    assert_eq!(leader, Some(1));
    assert_eq!(isr, vec![2, 3, 1], "the ISR is untouched");
    assert!(
        epoch_after > epoch_before,
        "{epoch_after:?} > {epoch_before:?}"
    );

    // Unclean election on a partition with a leader needs nothing.
    let mut unclean = elect_req(vec![0]);
    unclean.election_type = ElectionType::Unclean as i32;
    assert_eq!(
        codes(&c.elect_leaders(unclean).await.unwrap()),
        vec![(0, 84)]
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn periodic_rebalance_moves_leadership_back_to_the_preferred_replica() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with_rebalance(dir.path(), Some(Duration::from_millis(200))).await;
    let mut c = client(&node);
    let epochs = add_brokers(&mut c).await;
    create_topic_t(&mut c).await;
    // Out of the ISR, broker 1 stays a follower whatever the rebalance does.
    bounce_preferred_leader(&node, &mut c, epochs[0]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(state(&node).0, Some(2));
    let epoch_before = readmit_to_isr(&node).await;
    eventually(
        "the rebalance to move leadership back to broker 1",
        || async { state(&node).0 == Some(1) },
    )
    .await;
    let (_, isr, epoch_after) = state(&node);
    assert_eq!(isr, vec![2, 3, 1]);
    assert!(
        epoch_after > epoch_before,
        "{epoch_after:?} > {epoch_before:?}"
    );
    node.shutdown().await.unwrap();
}
