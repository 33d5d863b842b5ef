//! Storage faults on in-process three-node clusters whose brokers keep their data on a
//! simulated storage (`PowerLossFs`): a log whose disk fails moves leadership and ISR
//! membership away while the broker serves the rest, and a follower whose fsync failed
//! is never counted towards the high watermark.
use std::time::Duration;

use spate_log::power_loss::{FaultOn, IoFault};
use spate_tests::acks::batch;
use spate_tests::cluster::{self, Cluster, ClusterOptions};
use spate_tests::http;

const KAFKA_STORAGE_ERROR: i16 = 56;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;

fn options() -> ClusterOptions {
    ClusterOptions {
        simulated_storage: true,
        ..ClusterOptions::default()
    }
}

/// The value of an unlabelled sample in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_log_hands_leadership_over_and_the_broker_serves_the_rest() {
    let cluster = Cluster::start_with(options()).await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, "disk", 1, 3, &configs).await,
        0
    );
    assert_eq!(
        cluster::create_topic(&mut conn, "others", 6, 3, &configs).await,
        0
    );
    let victim = cluster.wait_partition_ready("disk", 0, 3).await;
    let mut leader_conn = cluster.connect(victim).await;
    let (code, _) = cluster::produce(&mut leader_conn, "disk", 0, -1, 5_000, batch("before"))
        .await
        .unwrap();
    assert_eq!(code, 0);

    // The victim's disk fails under this one partition.
    cluster.storage(victim).inject(IoFault {
        under: cluster.partition_dir(victim, "disk", 0),
        on: FaultOn::Writes,
    });
    let (code, _) = cluster::produce(&mut leader_conn, "disk", 0, -1, 5_000, batch("lost"))
        .await
        .unwrap();
    assert!(
        [KAFKA_STORAGE_ERROR, NOT_LEADER_OR_FOLLOWER].contains(&code),
        "a write on a failed log is refused, got {code}"
    );
    let moved = cluster
        .wait_for(Duration::from_secs(15), |c| {
            c.partition_state("disk", 0)
                .is_some_and(|(leader, isr, _)| {
                    leader.is_some_and(|l| l != victim) && !isr.contains(&victim)
                })
        })
        .await;
    assert!(
        moved,
        "leadership and ISR membership left the failed log: {:?}",
        cluster.partition_state("disk", 0)
    );
    let new_leader = cluster.wait_partition_ready("disk", 0, 2).await;
    let mut conn = cluster.connect(new_leader).await;
    let (code, _) = cluster::produce(&mut conn, "disk", 0, -1, 5_000, batch("after"))
        .await
        .unwrap();
    assert_eq!(code, 0, "the new leader takes acks=all writes");
    let values: Vec<_> = cluster::read_all(&mut conn, "disk", 0)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(values, vec![batch_value("before"), batch_value("after")]);

    // The victim keeps serving the partitions it leads on healthy directories.
    let led_by_victim = (0..6)
        .find(|p| {
            cluster
                .partition_state("others", *p)
                .is_some_and(|(l, _, _)| l == Some(victim))
        })
        .expect("the victim leads some partition of the other topic");
    let (code, _) = cluster::produce(
        &mut leader_conn,
        "others",
        led_by_victim,
        -1,
        5_000,
        batch("fine"),
    )
    .await
    .unwrap();
    assert_eq!(code, 0, "other partitions on the broker are served");

    // Readiness and metrics say so.
    let ready = http::get(cluster.admin_addr(victim), "/readyz")
        .await
        .unwrap();
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("\"logs_online\":false"),
        "{}",
        ready.body
    );
    let metrics = http::get(cluster.admin_addr(victim), "/metrics")
        .await
        .unwrap();
    assert_eq!(
        sample(&metrics.body, "spate_replicas_offline"),
        Some(1.0),
        "{}",
        metrics.body
    );
    assert_eq!(
        sample(&metrics.body, "spate_log_failures_total"),
        Some(1.0),
        "{}",
        metrics.body
    );
    let healthy = (1..=3).find(|id| *id != victim).unwrap();
    let ready = http::get(cluster.admin_addr(healthy), "/readyz")
        .await
        .unwrap();
    assert_eq!(ready.status, 200, "{}", ready.body);
    cluster.shutdown().await;
}

fn batch_value(v: &str) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(v.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_whose_fsync_failed_is_not_counted_towards_the_high_watermark() {
    let cluster = Cluster::start_with(options()).await;
    let mut conn = cluster.connect(1).await;
    // Every replica must hold an acknowledged write.
    let configs = [("min.insync.replicas", "3")];
    assert_eq!(
        cluster::create_topic(&mut conn, "fsync", 1, 3, &configs).await,
        0
    );
    let leader = cluster.wait_partition_ready("fsync", 0, 3).await;
    let mut conn = cluster.connect(leader).await;
    let (code, _) = cluster::produce(&mut conn, "fsync", 0, -1, 5_000, batch("durable"))
        .await
        .unwrap();
    assert_eq!(code, 0);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    cluster.storage(follower).inject(IoFault {
        under: cluster.partition_dir(follower, "fsync", 0),
        on: FaultOn::Syncs,
    });
    let (code, offset) = cluster::produce(&mut conn, "fsync", 0, -1, 5_000, batch("never"))
        .await
        .unwrap();
    assert_ne!(
        code, 0,
        "acknowledged at {offset} although a replica never made it durable"
    );
    // The leader never heard the failed follower hold it.
    let seen = cluster
        .replica(leader, "fsync", 0)
        .unwrap()
        .replica_log_end_offsets()
        .into_iter()
        .find(|(id, _)| id.0 == follower)
        .and_then(|(_, leo)| leo);
    assert!(
        seen.is_none_or(|leo| leo <= 1),
        "the leader counts the follower at {seen:?}"
    );
    let p = cluster.replica(follower, "fsync", 0).unwrap();
    assert!(p.is_failed(), "the follower's log is offline");
    cluster.shutdown().await;
}
