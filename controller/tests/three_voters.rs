//! A first check of the 3-voter path: initialize from node 1, replicate, fail over.

mod common;

use std::time::Duration;

use common::{add_broker, create_req, eventually_within, heartbeat};
use spate_controller::{start, ControllerConfig, ControllerHandle};
use spate_controller_client::ControllerClient;
use tokio::net::TcpListener;

/// Longer than `common::WAIT`: elections and snapshot installation across three voters.
const WAIT: Duration = Duration::from_secs(30);

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
    let epoch = add_broker(&mut c, 1).await;
    let res = c.create_topics(create_req("one", 2, 1)).await.unwrap();
    assert_eq!(
        res.topics[0].error_code, 0,
        "{}",
        res.topics[0].error_message
    );
    for n in nodes.iter().flatten() {
        eventually_within(WAIT, "replication to every voter", || async {
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
    assert_eq!(heartbeat(&mut c, 1, epoch, false).await.error_code, 0);
    let res = c.create_topics(create_req("two", 2, 1)).await.unwrap();
    assert_eq!(
        res.topics[0].error_code, 0,
        "{}",
        res.topics[0].error_message
    );
    for i in 0..6 {
        let res = c
            .create_topics(create_req(&format!("more-{i}"), 2, 1))
            .await
            .unwrap();
        assert_eq!(
            res.topics[0].error_code, 0,
            "{}",
            res.topics[0].error_message
        );
    }
    let survivor = nodes.iter().flatten().next().unwrap();
    eventually_within(WAIT, "the survivors purge their log", || async {
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
    eventually_within(WAIT, "restarted voter catches up", || async {
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
