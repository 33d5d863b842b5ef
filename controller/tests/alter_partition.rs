//! AlterPartition end to end on a one-voter controller over gRPC: a partition leader
//! shrinks and expands the ISR with the partition epoch it knows (compare-and-set), and
//! the controller refuses stale epochs, restarted followers (KIP-903) and non-leaders.

mod common;

use common::*;
use spate_controller::ControllerHandle;
use spate_metadata::ids::NodeId;
use spate_proto::controller::*;

/// t-0 as the controller's image holds it: (topic id, leader, ISR, leader epoch,
/// partition epoch).
fn state(node: &ControllerHandle) -> (Vec<u8>, Option<i32>, Vec<i32>, i32, i32) {
    let image = node.image();
    let t = image.topic_by_name("t").unwrap();
    let p = &t.partitions[&0];
    (
        t.id.to_bytes(),
        p.leader.map(|l| l.0),
        p.isr.iter().map(|n| n.0).collect(),
        p.leader_epoch.0,
        p.partition_epoch.0,
    )
}

/// An AlterPartition for t-0 from `from`, with the epochs the image holds unless
/// `partition_epoch` overrides it; `isr` is (broker, broker epoch) pairs.
fn alter(
    node: &ControllerHandle,
    from: (i32, i64),
    partition_epoch: Option<i32>,
    isr: &[(i32, i64)],
) -> AlterPartitionRequest {
    let (topic_id, _, _, leader_epoch, current) = state(node);
    AlterPartitionRequest {
        broker_id: from.0,
        broker_epoch: from.1,
        topics: vec![AlterPartitionTopic {
            topic_id,
            partitions: vec![AlterPartitionData {
                partition: 0,
                leader_epoch,
                partition_epoch: partition_epoch.unwrap_or(current),
                new_isr: isr
                    .iter()
                    .map(|&(broker_id, broker_epoch)| IsrMember {
                        broker_id,
                        broker_epoch,
                    })
                    .collect(),
            }],
        }],
    }
}

/// The only partition result, after checking the request-level code is NONE.
fn only(resp: &AlterPartitionResponse) -> &AlterPartitionPartitionResult {
    assert_eq!(resp.error_code, 0, "{}", resp.error_message);
    &resp.topics[0].partitions[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_shrinks_and_expands_the_isr_with_compare_and_set() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_leader(long_session_config(dir.path())).await;
    let mut c = client(&node);
    let epochs = add_brokers(&mut c).await;
    let (e1, e2, e3) = (epochs[0], epochs[1], epochs[2]);
    create_topic_t(&mut c).await;
    let (_, leader, isr, leader_epoch, pe0) = state(&node);
    assert_eq!((leader, isr), (Some(1), vec![1, 2, 3]));

    // Shrink: committed, partition epoch +1, leader and leader epoch unchanged.
    let shrink = alter(&node, (1, e1), None, &[(1, e1), (2, e2)]);
    let resp = c.alter_partition(shrink.clone()).await.unwrap();
    let got = only(&resp);
    assert_eq!(got.error_code, 0, "{}", got.error_message);
    assert_eq!(
        (
            got.leader,
            got.leader_epoch,
            got.isr.clone(),
            got.partition_epoch
        ),
        (1, leader_epoch, vec![1, 2], pe0 + 1)
    );
    assert!(resp.metadata_offset > 0);
    let (_, _, isr, _, pe1) = state(&node);
    assert_eq!((isr, pe1), (vec![1, 2], pe0 + 1));

    // The same request again carries the old partition epoch: it lost the compare-and-set
    // (INVALID_UPDATE_VERSION).
    let resp = c.alter_partition(shrink).await.unwrap();
    assert_eq!(only(&resp).error_code, 95, "{}", only(&resp).error_message);
    assert_eq!(resp.metadata_offset, 0);
    assert_eq!(state(&node).4, pe1);

    // Expand back with broker 3's current epoch.
    let expand = alter(&node, (1, e1), None, &[(1, e1), (2, e2), (3, e3)]);
    let got = only(&c.alter_partition(expand).await.unwrap()).clone();
    assert_eq!(got.error_code, 0, "{}", got.error_message);
    assert_eq!((got.isr, got.partition_epoch), (vec![1, 2, 3], pe1 + 1));

    // Broker 3 restarts: its new registration takes it out of the ISR and gives it a new
    // epoch. An expansion naming the epoch the leader saw before is refused (KIP-903).
    let e3_new = add_broker(&mut c, 3).await;
    assert!(e3_new > e3);
    assert!(node.image().is_unfenced(NodeId(3)));
    assert_eq!(state(&node).2, vec![1, 2]);
    let pe = state(&node).4;
    let stale = alter(&node, (1, e1), None, &[(1, e1), (2, e2), (3, e3)]);
    let resp = c.alter_partition(stale).await.unwrap();
    let got = only(&resp);
    assert_eq!(got.error_code, 107, "{}", got.error_message);
    assert!(
        got.error_message.contains("restarted"),
        "{}",
        got.error_message
    );
    assert_eq!(state(&node).4, pe, "nothing committed");
    let fresh = alter(&node, (1, e1), None, &[(1, e1), (2, e2), (3, e3_new)]);
    assert_eq!(only(&c.alter_partition(fresh).await.unwrap()).error_code, 0);
    assert_eq!(state(&node).2, vec![1, 2, 3]);

    // A follower asking with the current epochs is not the leader: INVALID_REQUEST, as
    // Kafka's controller answers (a stale leader epoch would be FENCED_LEADER_EPOCH).
    let pe = state(&node).4;
    let follower = alter(&node, (2, e2), None, &[(1, e1), (2, e2)]);
    let resp = c.alter_partition(follower).await.unwrap();
    let got = only(&resp);
    assert_eq!(got.error_code, 42, "{}", got.error_message);
    assert!(
        got.error_message.contains("not the leader"),
        "{}",
        got.error_message
    );
    assert_eq!(state(&node).4, pe);

    // A stale requester epoch refuses the whole request.
    let zombie = alter(&node, (1, e1 - 1), None, &[(1, e1)]);
    let resp = c.alter_partition(zombie).await.unwrap();
    assert_eq!(resp.error_code, 77, "{}", resp.error_message);
    assert!(resp.topics.is_empty());
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_is_not_the_active_controller_answers_not_controller() {
    // Node 2 of a quorum whose node 1 never starts: no leader, so no active controller.
    let dir = tempfile::tempdir().unwrap();
    let node = start_leaderless(dir.path()).await;
    let mut raw = raw_client(&node).await;
    let resp = raw
        .alter_partition(AlterPartitionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.error_code, 41, "{}", resp.error_message);
    // The client library treats that as "try another controller" and runs out of them.
    let mut c = client(&node).with_retry(few_retries());
    let err = c
        .alter_partition(AlterPartitionRequest::default())
        .await
        .unwrap_err();
    assert!(err.is_retriable(), "{err:?}");
    node.shutdown().await.unwrap();
}
