//! Power loss on in-process three-node clusters whose brokers keep their data on
//! `PowerLossFs`: a power cut forgets (or tears) everything a node had not fsynced, as a
//! machine losing power would, where SIGKILL keeps the page cache and hides a missing
//! fsync. Under an acks=all load (RF 3, min.insync.replicas 2), the power is cut to the
//! leader, to a follower, and to all three nodes at once; every acknowledged record
//! survives at its offset, exactly once, and the replicas converge.
//!
//! The controllers' Raft state is on the real filesystem and survives the cut whole (see
//! docs/architecture.md, "Not yet done").
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use spate_tests::acks::{
    acked_at_least, check_acked, kafka_addrs, produce_loop, wait_replicas_identical, History,
};
use spate_tests::cluster::{self, Cluster, ClusterOptions};

const TOPIC: &str = "powered";

async fn start() -> Cluster {
    let cluster = Cluster::start_with(ClusterOptions {
        simulated_storage: true,
        ..ClusterOptions::default()
    })
    .await;
    let mut conn = cluster.connect(1).await;
    let configs = [("min.insync.replicas", "2")];
    assert_eq!(
        cluster::create_topic(&mut conn, TOPIC, 1, 3, &configs).await,
        0
    );
    cluster.wait_partition_ready(TOPIC, 0, 3).await;
    cluster
}

/// A running acks=all load on the topic.
struct Load {
    stop: Arc<AtomicBool>,
    history: Arc<parking_lot::Mutex<History>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(cluster: &Cluster) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let history = Arc::new(parking_lot::Mutex::new(History::default()));
        let task = tokio::spawn(produce_loop(
            kafka_addrs(cluster),
            TOPIC,
            "v",
            100_000,
            stop.clone(),
            history.clone(),
        ));
        Load {
            stop,
            history,
            task,
        }
    }

    /// Waits until `more` writes beyond those acknowledged now are acknowledged.
    async fn acknowledges(&self, more: usize) {
        let target = self.history.lock().acked.len() + more;
        assert!(
            acked_at_least(self.history.clone(), target).await,
            "acks=all writes stopped being acknowledged"
        );
    }

    async fn finish(self) -> History {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        let history = std::mem::take(&mut *self.history.lock());
        history
    }
}

/// Waits for a full ISR again, then checks every acknowledged write and convergence.
async fn check(cluster: &Cluster, history: &History) {
    assert!(
        cluster
            .wait_for(Duration::from_secs(30), |c| c
                .partition_state(TOPIC, 0)
                .is_some_and(|(l, isr, _)| l.is_some() && isr.len() == 3))
            .await,
        "the ISR did not recover: {:?}",
        cluster.partition_state(TOPIC, 0)
    );
    let leader = cluster.wait_partition_ready(TOPIC, 0, 3).await;
    let mut conn = cluster.connect(leader).await;
    let committed = cluster::read_all(&mut conn, TOPIC, 0).await.unwrap();
    assert!(!history.acked.is_empty());
    check_acked(history, &committed);
    wait_replicas_identical(cluster, TOPIC, 0).await;
}

async fn cut_one(pick_leader: bool, seed: u64) {
    let mut cluster = start().await;
    let load = Load::start(&cluster);
    load.acknowledges(100).await;
    let leader = cluster.partition_state(TOPIC, 0).unwrap().0.unwrap();
    let victim = if pick_leader {
        leader
    } else {
        (1..=3).find(|id| *id != leader).unwrap()
    };
    let report = cluster.power_cut(victim, seed).await;
    tracing::info!(victim, ?report, "power cut");
    load.acknowledges(100).await;
    cluster.restart(victim).await;
    load.acknowledges(50).await;
    let history = load.finish().await;
    check(&cluster, &history).await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_the_leader_loses_no_acknowledged_write() {
    cut_one(true, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_a_follower_loses_no_acknowledged_write() {
    cut_one(false, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_loss_at_every_node_at_once_loses_no_acknowledged_write() {
    let mut cluster = start().await;
    let load = Load::start(&cluster);
    load.acknowledges(150).await;
    // All three at once: nothing is written anywhere after the first cut.
    let reports: Vec<_> = (1..=3)
        .map(|id| cluster.storage(id).power_cut(100 + id as u64).unwrap())
        .collect();
    tracing::info!(?reports, "power cut everywhere");
    for id in 1..=3 {
        cluster.stop(id).await;
    }
    let acked_before = load.history.lock().acked.len();
    for id in 1..=3 {
        cluster.restart(id).await;
    }
    load.acknowledges(50).await;
    let history = load.finish().await;
    assert!(history.acked.len() > acked_before);
    check(&cluster, &history).await;
    cluster.shutdown().await;
}
