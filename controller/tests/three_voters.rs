//! A first check of the 3-voter path: initialize from node 1, replicate, fail over.

use std::future::Future;
use std::time::{Duration, Instant};

use spate_controller::{start, ControllerClient, ControllerConfig, ControllerHandle};
use spate_proto::controller::*;
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(30);

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn create_req(name: &str) -> CreateTopicsRequest {
    CreateTopicsRequest {
        topics: vec![CreatableTopic {
            name: name.into(),
            num_partitions: 2,
            replication_factor: 1,
            ..Default::default()
        }],
        validate_only: false,
    }
}

async fn start_voter(
    id: u64,
    dir: &std::path::Path,
    listener: TcpListener,
    voters: &[(u64, String)],
) -> ControllerHandle {
    let mut config = ControllerConfig::new(id, dir, voters.to_vec());
    // Snapshot often and keep no log behind it, so a voter that was down catches up by
    // snapshot installation over the network.
    config.raft.snapshot_every_entries = 3;
    config.raft.keep_logs_after_snapshot = 0;
    start(config, listener).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_replicate_and_fail_over() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let voters: Vec<(u64, String)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap().to_string()))
        .collect();
    let addrs: Vec<String> = voters.iter().map(|v| v.1.clone()).collect();
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(Some(
            start_voter(i as u64 + 1, dirs[i].path(), l, &voters).await,
        ));
    }
    let leader = nodes[0]
        .as_ref()
        .unwrap()
        .wait_for_leader(WAIT)
        .await
        .unwrap();

    let mut c = ControllerClient::connect(addrs.clone()).unwrap();
    let reg = c
        .register_broker(RegisterBrokerRequest {
            broker_id: 1,
            incarnation_id: "b1".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(reg.error_code, 0, "{}", reg.error_message);
    let hb = BrokerHeartbeatRequest {
        broker_id: 1,
        broker_epoch: reg.broker_epoch,
        metadata_offset: reg.broker_epoch as u64,
        ..Default::default()
    };
    assert!(!c.broker_heartbeat(hb).await.unwrap().is_fenced);
    let res = c.create_topics(create_req("one")).await.unwrap();
    assert_eq!(
        res.topics[0].error_code, 0,
        "{}",
        res.topics[0].error_message
    );
    for n in nodes.iter().flatten() {
        eventually("replication to every voter", || async {
            n.image().topic_by_name("one").is_some()
        })
        .await;
    }

    // Stop the leader; the other two elect a new one and keep serving.
    let old = nodes[(leader - 1) as usize].take().unwrap();
    let old_last_log = old.raft().metrics().borrow().last_log_index.unwrap_or(0);
    old.shutdown().await.unwrap();
    // The broker keeps its session alive through the failover (the new leader grants a
    // fresh one anyway); the retrying client finds the new leader.
    assert_eq!(c.broker_heartbeat(hb).await.unwrap().error_code, 0);
    let res = c.create_topics(create_req("two")).await.unwrap();
    assert_eq!(
        res.topics[0].error_code, 0,
        "{}",
        res.topics[0].error_message
    );
    for i in 0..6 {
        let res = c
            .create_topics(create_req(&format!("more-{i}")))
            .await
            .unwrap();
        assert_eq!(
            res.topics[0].error_code, 0,
            "{}",
            res.topics[0].error_message
        );
    }
    let survivor = nodes.iter().flatten().next().unwrap();
    eventually("the survivors purge their log", || async {
        let purged = survivor.raft().metrics().borrow().purged;
        // Beyond the stopped voter's log: it can only catch up by snapshot.
        purged.is_some_and(|p| p.index > old_last_log)
    })
    .await;
    let new_leader = survivor.wait_for_leader(WAIT).await.unwrap();
    assert_ne!(new_leader, leader);

    // The old leader restarts from its own state and catches up.
    let listener = TcpListener::bind(voters[(leader - 1) as usize].1.as_str())
        .await
        .unwrap();
    let back = start_voter(
        leader,
        dirs[(leader - 1) as usize].path(),
        listener,
        &voters,
    )
    .await;
    eventually("restarted voter catches up", || async {
        back.image().topic_by_name("more-5").is_some()
    })
    .await;
    assert_eq!(
        back.image().topic_by_name("one").map(|t| t.id),
        survivor.image().topic_by_name("one").map(|t| t.id)
    );
    back.shutdown().await.unwrap();
    for n in nodes.into_iter().flatten() {
        n.shutdown().await.unwrap();
    }
}
