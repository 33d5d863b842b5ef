//! Replication on in-process three-node clusters, with faults injected at the brokers'
//! transports: acks=all survives losing the leader, an isolated leader acknowledges
//! nothing it cannot replicate and its divergent tail is truncated once it rejoins, a
//! slow follower leaves and rejoins the ISR, and min.insync.replicas is enforced.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::ApiKey;
use spate_tests::acks::{
    acked_at_least, batch, check_acked, kafka_addrs, produce_loop, wait_replicas_identical, History,
};
use spate_tests::cluster::{self, topic_name, Cluster, ClusterOptions};
use spate_tests::RawConnection;

const NOT_ENOUGH_REPLICAS: i16 = 19;
const NOT_ENOUGH_REPLICAS_AFTER_APPEND: i16 = 20;

/// ListOffsets latest for partition 0 as `replica_id`; (error code, offset).
async fn list_latest(conn: &mut RawConnection, topic: &str, replica_id: i32) -> (i16, i64) {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse};
    let req = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let resp: ListOffsetsResponse = conn.request(ApiKey::ListOffsets, 7, &req).await.unwrap();
    let p = &resp.topics[0].partitions[0];
    (p.error_code, p.offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_survives_losing_the_leader_and_replicas_converge() {
    let mut cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, "acked", 1, 3, &configs).await,
        0
    );
    cluster.wait_partition_ready("acked", 0, 3).await;

    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(parking_lot::Mutex::new(History::default()));
    let producer = tokio::spawn(produce_loop(
        kafka_addrs(&cluster),
        "acked",
        "a",
        100_000,
        stop.clone(),
        history.clone(),
    ));
    let wait_acked = |n: usize| acked_at_least(history.clone(), n);
    assert!(
        wait_acked(200).await,
        "acks=all writes were not acknowledged"
    );

    // Stop the leader under load; a new one takes over from the ISR.
    let (old_leader, _, old_epoch) = cluster.partition_state("acked", 0).unwrap();
    let old_leader = old_leader.unwrap();
    cluster.stop(old_leader).await;
    let before = history.lock().acked.len();
    assert!(
        wait_acked(before + 200).await,
        "no acks=all write was acknowledged after the leader stopped"
    );
    let (new_leader, isr, new_epoch) = cluster.partition_state("acked", 0).unwrap();
    assert_ne!(new_leader, Some(old_leader));
    assert!(new_epoch > old_epoch);
    assert_eq!(isr.len(), 2, "the stopped broker left the ISR: {isr:?}");

    // It comes back, catches up and rejoins the ISR.
    cluster.restart(old_leader).await;
    assert!(
        cluster
            .wait_for(Duration::from_secs(30), |c| c
                .partition_state("acked", 0)
                .is_some_and(|(_, isr, _)| isr.len() == 3))
            .await,
        "the restarted broker did not rejoin the ISR"
    );
    stop.store(true, Ordering::SeqCst);
    producer.await.unwrap();

    let leader = cluster.partition_state("acked", 0).unwrap().0.unwrap();
    let mut conn = cluster.connect(leader).await;
    let committed = cluster::read_all(&mut conn, "acked", 0).await.unwrap();
    check_acked(&history.lock(), &committed);
    wait_replicas_identical(&cluster, "acked", 0).await;

    // Any replica tells its own LEO to a debugging client (replica id -2); only the
    // leader serves consumers.
    let leo = cluster
        .replica(leader, "acked", 0)
        .unwrap()
        .log_end_offset();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut to_follower = cluster.connect(follower).await;
    assert_eq!(list_latest(&mut to_follower, "acked", -2).await, (0, leo));
    assert_eq!(list_latest(&mut to_follower, "acked", -1).await.0, 6);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolated_leader_acknowledges_nothing_and_its_divergent_tail_is_truncated() {
    let cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, "iso", 1, 3, &configs).await,
        0
    );
    cluster.wait_partition_ready("iso", 0, 3).await;
    let (leader, _, _) = cluster.partition_state("iso", 0).unwrap();
    let leader = leader.unwrap();
    let mut to_leader = cluster.connect(leader).await;
    for i in 0..10 {
        let (code, offset) = cluster::produce(
            &mut to_leader,
            "iso",
            0,
            -1,
            5_000,
            batch(&format!("ok-{i}")),
        )
        .await
        .unwrap();
        assert_eq!((code, offset), (0, i));
    }

    // Cut the leader off from its followers and the controllers. Clients still reach it:
    // acks=all writes land in its log but are never acknowledged.
    cluster.isolate(leader, true);
    for i in 0..3 {
        let (code, _) = cluster::produce(
            &mut to_leader,
            "iso",
            0,
            -1,
            1_500,
            batch(&format!("lost-{i}")),
        )
        .await
        .unwrap();
        assert_ne!(code, 0, "an isolated leader acknowledged an acks=all write");
    }
    assert!(
        cluster.replica(leader, "iso", 0).unwrap().log_end_offset() > 10,
        "the isolated leader should hold an unreplicated tail"
    );

    // The controller fences it and elects another ISR member, which takes writes.
    assert!(
        cluster
            .wait_for(Duration::from_secs(15), |c| c
                .partition_state("iso", 0)
                .is_some_and(|(l, _, _)| l.is_some() && l != Some(leader)))
            .await,
        "no new leader was elected"
    );
    let new_leader = cluster.partition_state("iso", 0).unwrap().0.unwrap();
    let mut to_new = cluster.connect(new_leader).await;
    for i in 0..5 {
        let (code, offset) =
            cluster::produce(&mut to_new, "iso", 0, -1, 5_000, batch(&format!("new-{i}")))
                .await
                .unwrap();
        assert_eq!((code, offset), (0, 10 + i));
    }

    // Healed, the old leader learns it lost leadership, refuses writes, truncates its
    // divergent tail and ends up with the new leader's log.
    cluster.isolate(leader, false);
    assert!(
        cluster
            .wait_for(Duration::from_secs(20), |c| !c
                .replica(leader, "iso", 0)
                .unwrap()
                .leader_state()
                .is_leader)
            .await
    );
    let (code, _) = cluster::produce(&mut to_leader, "iso", 0, -1, 1_000, batch("zombie"))
        .await
        .unwrap();
    assert_eq!(code, 6, "NOT_LEADER_OR_FOLLOWER from the deposed leader");
    wait_replicas_identical(&cluster, "iso", 0).await;
    let committed = cluster::read_all(&mut to_new, "iso", 0).await.unwrap();
    let values: Vec<String> = committed
        .iter()
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .collect();
    let expected: Vec<String> = (0..10)
        .map(|i| format!("ok-{i}"))
        .chain((0..5).map(|i| format!("new-{i}")))
        .collect();
    assert_eq!(values, expected);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_follower_leaves_the_isr_and_rejoins_once_caught_up() {
    let cluster = Cluster::start_with(ClusterOptions {
        replica_lag_time_max: Duration::from_secs(1),
        ..ClusterOptions::default()
    })
    .await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, "slow", 1, 3, &configs).await,
        0
    );
    cluster.wait_partition_ready("slow", 0, 3).await;
    let leader = cluster.partition_state("slow", 0).unwrap().0.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut to_leader = cluster.connect(leader).await;

    cluster.slow_replication(follower, Duration::from_millis(2_500));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    let shrunk = loop {
        let (code, _) = cluster::produce(
            &mut to_leader,
            "slow",
            0,
            -1,
            10_000,
            batch(&format!("s-{n}")),
        )
        .await
        .unwrap();
        assert_eq!(
            code, 0,
            "acks=all failed while the ISR still meets min.insync"
        );
        n += 1;
        let isr = cluster.partition_state("slow", 0).unwrap().1;
        if !isr.contains(&follower) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(shrunk, "the slow follower stayed in the ISR");
    // With the follower out, acks=all no longer waits for it.
    let started = Instant::now();
    for i in 0..20 {
        let (code, _) = cluster::produce(
            &mut to_leader,
            "slow",
            0,
            -1,
            10_000,
            batch(&format!("f-{i}")),
        )
        .await
        .unwrap();
        assert_eq!(code, 0);
    }
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "acks=all still waited for the removed follower ({:?})",
        started.elapsed()
    );

    cluster.slow_replication(follower, Duration::ZERO);
    assert!(
        cluster
            .wait_for(Duration::from_secs(20), |c| c
                .partition_state("slow", 0)
                .is_some_and(|(_, isr, _)| isr.contains(&follower)))
            .await,
        "the caught-up follower did not rejoin the ISR"
    );
    wait_replicas_identical(&cluster, "slow", 0).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_insync_replicas_refuses_acks_all_before_and_after_appending() {
    let cluster = Cluster::start_with(ClusterOptions {
        replica_lag_time_max: Duration::from_secs(1),
        ..ClusterOptions::default()
    })
    .await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "3")];
    assert_eq!(
        cluster::create_topic(&mut conn, "strict", 1, 3, &configs).await,
        0
    );
    cluster.wait_partition_ready("strict", 0, 3).await;
    let leader = cluster.partition_state("strict", 0).unwrap().0.unwrap();
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let mut to_leader = cluster.connect(leader).await;
    let (code, _) = cluster::produce(&mut to_leader, "strict", 0, -1, 10_000, batch("first"))
        .await
        .unwrap();
    assert_eq!(code, 0);

    // The follower falls behind while a write waits: the ISR shrinks under it.
    cluster.slow_replication(follower, Duration::from_secs(4));
    let (code, _) = cluster::produce(&mut to_leader, "strict", 0, -1, 30_000, batch("waiting"))
        .await
        .unwrap();
    assert_eq!(code, NOT_ENOUGH_REPLICAS_AFTER_APPEND);
    // Now the ISR is too small to start.
    let (code, _) = cluster::produce(&mut to_leader, "strict", 0, -1, 5_000, batch("refused"))
        .await
        .unwrap();
    assert_eq!(code, NOT_ENOUGH_REPLICAS);
    // acks=1 does not care.
    let (code, _) = cluster::produce(&mut to_leader, "strict", 0, 1, 5_000, batch("one"))
        .await
        .unwrap();
    assert_eq!(code, 0);

    cluster.slow_replication(follower, Duration::ZERO);
    assert!(
        cluster
            .wait_for(Duration::from_secs(20), |c| c
                .partition_state("strict", 0)
                .is_some_and(|(_, isr, _)| isr.len() == 3))
            .await
    );
    // The controller's image shows the expansion before the leader has applied it (from
    // the AlterPartition answer or its own image); min.insync is checked on the leader's.
    assert!(
        cluster
            .wait_for(Duration::from_secs(20), |c| c
                .replica(leader, "strict", 0)
                .is_some_and(|p| p.leader_state().isr_size == 3))
            .await,
        "the leader never counted the caught-up follower back in its ISR"
    );
    let (code, _) = cluster::produce(&mut to_leader, "strict", 0, -1, 10_000, batch("again"))
        .await
        .unwrap();
    assert_eq!(code, 0);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controlled_shutdown_moves_leadership_to_the_isr_before_the_broker_stops() {
    let mut cluster = Cluster::start().await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, "drained", 3, 3, &configs).await,
        0
    );
    for p in 0..3 {
        cluster.wait_partition_ready("drained", p, 3).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(parking_lot::Mutex::new(History::default()));
    let producer = tokio::spawn(produce_loop(
        kafka_addrs(&cluster),
        "drained",
        "d",
        100_000,
        stop.clone(),
        history.clone(),
    ));
    let acked = |n: usize| acked_at_least(history.clone(), n);
    assert!(acked(100).await, "acks=all writes were not acknowledged");

    // Drain the leader of partition 0 while it keeps running.
    let (leader, _, epoch) = cluster.partition_state("drained", 0).unwrap();
    let leader = leader.unwrap();
    let outcome = cluster
        .node(leader)
        .controlled_shutdown(Duration::from_secs(20))
        .await
        .unwrap();
    assert!(outcome.completed(), "{outcome:?}");
    // The controller moved every leadership away and took it out of every ISR at once,
    // and it stays fenced (heartbeats keep asking) although it is still up.
    let image = cluster
        .wait_image(Duration::from_secs(5), |i| {
            i.topic_by_name("drained").is_some_and(|t| {
                t.partitions.values().all(|p| {
                    p.leader.is_some_and(|l| l.0 != leader) && p.isr.iter().all(|r| r.0 != leader)
                })
            })
        })
        .await
        .expect("leadership and ISR membership moved off the drained broker");
    let p0 = &image.topic_by_name("drained").unwrap().partitions[&0];
    assert!(p0.leader_epoch.0 > epoch);
    let before = history.lock().acked.len();
    assert!(
        acked(before + 100).await,
        "acks=all writes stopped after the drain"
    );
    tokio::time::sleep(Duration::from_secs(3)).await; // several heartbeat intervals
    let state = cluster
        .node(leader)
        .broker
        .as_ref()
        .unwrap()
        .state()
        .clone();
    let me = spate_metadata::ids::NodeId(leader);
    assert!(
        state.metadata.image().broker(me).unwrap().fenced,
        "a draining broker must not be unfenced again"
    );
    let admin = cluster.admin_addr(leader);
    let ready = spate_tests::http::get(admin, "/readyz").await.unwrap();
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("\"not_draining\":false"),
        "{}",
        ready.body
    );

    // It stops and comes back: a new incarnation is unfenced and rejoins the ISRs.
    cluster.stop(leader).await;
    cluster.restart(leader).await;
    assert!(
        cluster
            .wait_for(Duration::from_secs(30), |c| (0..3).all(|p| c
                .partition_state("drained", p)
                .is_some_and(|(_, isr, _)| isr.len() == 3)))
            .await,
        "the restarted broker did not rejoin every ISR"
    );
    stop.store(true, Ordering::SeqCst);
    producer.await.unwrap();
    // The producer writes partition 0: every acknowledged value is there, once.
    let l = cluster.partition_state("drained", 0).unwrap().0.unwrap();
    let mut conn = cluster.connect(l).await;
    let committed = cluster::read_all(&mut conn, "drained", 0).await.unwrap();
    check_acked(&history.lock(), &committed);
}
