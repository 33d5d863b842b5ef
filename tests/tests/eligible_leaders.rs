//! Eligible leader replicas (KIP-966) on an in-process three-node cluster: the high
//! watermark stands still while the ISR is below min.insync.replicas, the replicas that
//! left meanwhile stay electable, and the "last replica standing" hole is closed: a
//! broker that was the partition's last ISR member and comes back with an empty log
//! directory is not elected over the acknowledged records it lost. Brokers are cut off
//! with link faults rather than stopped, so the controller quorum keeps a majority.
use std::time::Duration;

use spate_metadata::ids::NodeId;
use spate_metadata::PartitionImage;
use spate_tests::acks::batch;
use spate_tests::cluster::{self, Cluster};

use kafka_protocol::messages::describe_topic_partitions_request::TopicRequest;
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};

const TOPIC: &str = "eligible";
const ACKED: usize = 20;
const WAIT: Duration = Duration::from_secs(30);

fn nodes(ids: &[i32]) -> Vec<NodeId> {
    ids.iter().map(|&i| NodeId(i)).collect()
}

fn client_nodes(ids: &[i32]) -> Option<Vec<spate_client::NodeId>> {
    Some(ids.iter().map(|&i| spate_client::NodeId(i)).collect())
}

/// The partition in the newest controller image.
fn partition(cluster: &Cluster) -> Option<PartitionImage> {
    cluster
        .newest_image()?
        .topic_by_name(TOPIC)?
        .partitions
        .get(&0)
        .cloned()
}

/// Waits until the newest controller image shows the partition in a state `ready` likes.
async fn wait_partition(
    cluster: &Cluster,
    what: &str,
    ready: impl Fn(&PartitionImage) -> bool,
) -> PartitionImage {
    let reached = cluster
        .wait_for(WAIT, |c| partition(c).is_some_and(|p| ready(&p)))
        .await;
    let p = partition(cluster);
    assert!(reached, "the partition never reached: {what}; it is {p:?}");
    p.unwrap()
}

/// What happens to the last ISR member's storage while it is down.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Damage {
    /// A new, empty disk: its log directory (and its id) are gone.
    EmptyDisk,
    /// The same disk, but a byte of the partition's last batch flipped (recovery cuts
    /// the garbled batch, which may have been acknowledged).
    GarbledTail,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_last_isr_member_back_with_an_empty_disk_is_not_elected_and_an_eligible_replica_is() {
    last_replica_standing(Damage::EmptyDisk).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_last_isr_member_whose_log_tail_is_garbled_is_not_elected_either() {
    last_replica_standing(Damage::GarbledTail).await;
}

async fn last_replica_standing(damage: Damage) {
    let mut cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, TOPIC, 1, 3, &configs).await,
        0
    );
    let leader = cluster.wait_partition_ready(TOPIC, 0, 3).await;
    let mut others = (1..=3).filter(|&n| n != leader);
    let (eligible, stale) = (others.next().unwrap(), others.next().unwrap());

    let mut to_leader = cluster.connect(leader).await;
    for i in 0..ACKED {
        let (code, offset) = cluster::produce(
            &mut to_leader,
            TOPIC,
            0,
            -1,
            10_000,
            batch(&format!("acked-{i}")),
        )
        .await
        .unwrap();
        assert_eq!((code, offset), (0, i as i64));
    }

    // `stale` leaves while the ISR still meets min.insync: it is not eligible.
    cluster.isolate(stale, true);
    let p = wait_partition(&cluster, "ISR without the stale replica", |p| {
        p.isr.len() == 2
    })
    .await;
    assert!(p.elr.is_empty(), "{p:?}");
    // `eligible` leaves with the ISR at min.insync: it is.
    cluster.isolate(eligible, true);
    let p = wait_partition(&cluster, "ISR of the leader alone", |p| p.isr.len() == 1).await;
    assert_eq!(p.elr, nodes(&[eligible]));

    // Strict min-ISR: an acks=1 write lands on the leader but is not committed.
    let (code, offset) =
        cluster::produce(&mut to_leader, TOPIC, 0, 1, 10_000, batch("uncommitted"))
            .await
            .unwrap();
    assert_eq!((code, offset), (0, ACKED as i64));
    let replica = cluster.replica(leader, TOPIC, 0).unwrap();
    assert!(
        cluster
            .wait_for(WAIT, |_| replica.progress().log_end_offset
                == ACKED as i64 + 1)
            .await
    );
    assert_eq!(
        replica.high_watermark(),
        ACKED as i64,
        "HW moved with the ISR below min.insync"
    );
    drop((replica, to_leader));

    // The leader goes away too: nobody is in sync, both are eligible.
    cluster.stop(leader).await;
    let p = wait_partition(&cluster, "no leader", |p| {
        p.leader.is_none() && p.isr.is_empty()
    })
    .await;
    let mut elr = p.elr.clone();
    elr.sort();
    let mut want = nodes(&[leader, eligible]);
    want.sort();
    assert_eq!(elr, want);

    // It comes back damaged: its logs (or its log's tail) are gone, and so is its
    // eligibility.
    match damage {
        Damage::EmptyDisk => {
            std::fs::remove_dir_all(cluster.data_dir(leader).join("logs")).unwrap();
        }
        Damage::GarbledTail => {
            let segment = cluster
                .partition_dir(leader, TOPIC, 0)
                .join(format!("{:020}.log", 0));
            let mut bytes = std::fs::read(&segment).unwrap();
            let at = bytes.len() - 3;
            bytes[at] ^= 0x5a;
            std::fs::write(&segment, bytes).unwrap();
            // As after a crash: without the clean-shutdown marker the tail is checked.
            let marker = cluster
                .partition_dir(leader, TOPIC, 0)
                .join("clean-shutdown");
            let _ = std::fs::remove_file(marker);
        }
    }
    cluster.restart(leader).await;
    let p = wait_partition(&cluster, "the damaged broker out of the ELR", |p| {
        p.elr == nodes(&[eligible]) && p.last_known_elr == nodes(&[leader])
    })
    .await;
    assert_eq!(p.leader, None);
    // Unfenced (it has caught up with metadata), it still does not lead.
    assert!(cluster
        .wait_image(WAIT, |img| img.is_unfenced(NodeId(leader)))
        .await
        .is_some());
    let p = wait_partition(&cluster, "still offline", |p| p.elr == nodes(&[eligible])).await;
    assert_eq!(
        p.leader, None,
        "a broker with an empty log was elected: {p:?}"
    );

    // DescribeTopicPartitions and the admin client report it as it is.
    let mut conn = cluster.connect(leader).await;
    let req = DescribeTopicPartitionsRequest::default().with_topics(vec![
        TopicRequest::default().with_name(cluster::topic_name(TOPIC))
    ]);
    let resp: DescribeTopicPartitionsResponse = conn
        .request(ApiKey::DescribeTopicPartitions, 0, &req)
        .await
        .unwrap();
    let part = &resp.topics[0].partitions[0];
    assert_eq!(part.leader_id, BrokerId(-1));
    assert_eq!(
        part.eligible_leader_replicas,
        Some(vec![BrokerId(eligible)])
    );
    assert_eq!(part.last_known_elr, Some(vec![BrokerId(leader)]));
    let mut config =
        spate_client::ClientConfig::new(cluster.node(leader).kafka_addr.unwrap().to_string());
    config.client_id = "elr-test".to_string();
    let admin = spate_client::Admin::connect(config).await.unwrap();
    let described = admin.describe_topic(TOPIC).await.unwrap();
    assert_eq!(described.partitions[0].elr, client_nodes(&[eligible]));
    assert_eq!(
        described.partitions[0].last_known_elr,
        client_nodes(&[leader])
    );

    // The eligible replica returns: it is elected, alone in the ISR, with every
    // acknowledged record.
    cluster.isolate(eligible, false);
    let p = wait_partition(&cluster, "the eligible replica leading", |p| {
        p.leader == Some(NodeId(eligible))
    })
    .await;
    // Elected alone in the ISR; the damaged broker may already have caught up from it
    // and rejoined by the time we look, the still isolated one cannot have.
    assert!(
        p.isr.contains(&NodeId(eligible)) && !p.isr.contains(&NodeId(stale)),
        "{p:?}"
    );
    let mut from_new = cluster.connect(eligible).await;
    // Its HW may lag until the emptied broker rejoins (ISR below min.insync again), so
    // read the acknowledged records once the ISR is whole.
    cluster.isolate(stale, false);
    cluster.wait_partition_ready(TOPIC, 0, 3).await;
    let p = wait_partition(&cluster, "ELR cleared", |p| {
        p.elr.is_empty() && p.last_known_elr.is_empty()
    })
    .await;
    assert_eq!(p.leader, Some(NodeId(eligible)));
    let records = cluster::read_all(&mut from_new, TOPIC, 0).await.unwrap();
    let values: Vec<String> = records
        .iter()
        .take(ACKED)
        .map(|(_, v)| String::from_utf8_lossy(v).to_string())
        .collect();
    let want: Vec<String> = (0..ACKED).map(|i| format!("acked-{i}")).collect();
    assert_eq!(values, want, "acknowledged records were lost");
    admin.cluster().close();
    cluster.shutdown().await;
}
