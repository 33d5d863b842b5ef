//! Tests of the coordinator runtime over a real single-replica partition in a temporary
//! directory: a counting shard shows load by replay, committed writes, hand-over and
//! timers, without any group logic.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use spate_log::test_util::client_batch;
use spate_log::LogConfig;
use spate_metadata::ids::NodeId;
use spate_metadata::ErrorCode;

use super::{CoordinatorRuntime, CoordinatorShard, ShardHandle, TimerWrite};
use crate::clock::now_ms;
use crate::partition::{Assignment, Partition, PartitionSettings, RoleChange, TopicPartition};

const TOPIC: &str = "__test_state";

/// Counts the records of its partition; its timer writes once when asked to.
#[derive(Default)]
struct Counter {
    records: i64,
    last_offset: i64,
    loaded: bool,
    /// Set by the test: the next tick asks for a write of this many records.
    timer_write: Option<u32>,
    /// The result of the timer's write, once done.
    timer_result: Option<Result<i64, ErrorCode>>,
    resigned: Option<Arc<AtomicBool>>,
}

impl CoordinatorShard for Counter {
    type Record = u32;

    fn encode(records: &[u32], now_ms: i64) -> Result<Bytes, String> {
        let n: u32 = records.iter().sum();
        Ok(Bytes::from(client_batch(now_ms, n as usize, None)))
    }

    fn replay(&mut self, chunk: Bytes, last_offset: i64) {
        for batch in spate_log::batch::batches(&chunk) {
            self.records += i64::from(batch.unwrap().header().records_count);
        }
        self.last_offset = last_offset;
    }

    fn on_loaded(&mut self, _now_ms: i64) {
        self.loaded = true;
    }

    fn tick(&mut self, _now_ms: i64) -> Vec<TimerWrite<Self>> {
        let Some(n) = self.timer_write.take() else {
            return Vec::new();
        };
        vec![TimerWrite {
            records: vec![n],
            then: Box::new(|shard: &mut Counter, result| shard.timer_result = Some(result)),
        }]
    }

    fn resign(&mut self) {
        if let Some(flag) = &self.resigned {
            flag.store(true, Ordering::SeqCst);
        }
    }
}

fn assignment(leader: i32, leader_epoch: i32) -> Assignment {
    Assignment {
        replicas: vec![NodeId(1), NodeId(2)],
        isr: vec![NodeId(leader)],
        leader: Some(NodeId(leader)),
        leader_epoch,
        partition_epoch: leader_epoch,
    }
}

/// A partition of the internal topic on broker 1, led by it in epoch 0.
fn leading_partition(dir: &std::path::Path) -> Arc<Partition> {
    let tp = TopicPartition::new(TOPIC, 0);
    let p = Partition::open(
        spate_log::LogDir::local(dir),
        tp,
        [0; 16],
        NodeId(1),
        LogConfig::default(),
        PartitionSettings::default(),
        now_ms(),
        None,
    )
    .unwrap();
    assert_eq!(
        p.apply_assignment(&assignment(1, 0), now_ms()).unwrap(),
        RoleChange::Leading
    );
    p
}

/// Polls `f` until it returns `Some` (bounded: fails the test after 10 s).
async fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn loaded_shard(runtime: &CoordinatorRuntime<Counter>) -> Arc<ShardHandle<Counter>> {
    eventually(|| runtime.shard(0).ok()).await
}

#[tokio::test]
async fn a_shard_serves_only_after_replaying_its_partition() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    for n in [3, 4] {
        p.append_as_leader(&client_batch(now_ms(), n, None), None, now_ms())
            .unwrap();
    }
    let runtime = CoordinatorRuntime::new(TOPIC, |_| Counter::default());
    assert_eq!(runtime.shard(0).err(), Some(ErrorCode::NotCoordinator));

    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    let shard = loaded_shard(&runtime).await;
    let state = shard.live().unwrap();
    assert!(state.loaded);
    assert_eq!((state.records, state.last_offset), (7, 6));
}

#[tokio::test]
async fn role_changes_of_other_topics_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    let runtime = CoordinatorRuntime::new("__other", |_| Counter::default());
    runtime.on_role_changes(&[(p, RoleChange::Leading)]);
    assert_eq!(runtime.shard(0).err(), Some(ErrorCode::NotCoordinator));
    assert!(runtime.live_shards().is_empty());
}

#[tokio::test]
async fn a_write_answers_once_committed_and_the_next_leader_replays_it() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    let runtime = CoordinatorRuntime::new(TOPIC, |_| Counter::default());
    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    let shard = loaded_shard(&runtime).await;

    let last = shard.write(vec![2, 3]).await.unwrap();
    assert_eq!(last, 4);
    assert!(p.high_watermark() > last, "answered before the commit");
    assert_eq!(shard.write(Vec::new()).await, Ok(-1));

    // Hand-over: another broker leads; the old shard answers NOT_COORDINATOR.
    let change = p.apply_assignment(&assignment(2, 1), now_ms()).unwrap();
    runtime.on_role_changes(&[(p.clone(), change)]);
    assert_eq!(shard.live().err(), Some(ErrorCode::NotCoordinator));
    assert_eq!(runtime.shard(0).err(), Some(ErrorCode::NotCoordinator));

    // Leadership comes back: a fresh shard replays what the old one wrote.
    let change = p.apply_assignment(&assignment(1, 2), now_ms()).unwrap();
    runtime.on_role_changes(&[(p.clone(), change)]);
    let shard = loaded_shard(&runtime).await;
    assert_eq!(shard.live().unwrap().records, 5);
}

#[tokio::test]
async fn a_write_whose_leadership_ended_answers_not_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    let runtime = CoordinatorRuntime::new(TOPIC, |_| Counter::default());
    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    let shard = loaded_shard(&runtime).await;

    // The partition moved on to a new epoch before the runtime heard of it: the write
    // in the shard's epoch must not land.
    p.apply_assignment(&assignment(2, 1), now_ms()).unwrap();
    assert_eq!(shard.write(vec![1]).await, Err(ErrorCode::NotCoordinator));
    assert_eq!(p.log_end_offset(), 0);
}

#[tokio::test]
async fn resigning_lets_the_shard_answer_its_waiters() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    let flag = Arc::new(AtomicBool::new(false));
    let shared = flag.clone();
    let runtime = CoordinatorRuntime::new(TOPIC, move |_| Counter {
        resigned: Some(shared.clone()),
        ..Counter::default()
    });
    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    let shard = loaded_shard(&runtime).await;
    runtime.resign_all();
    assert!(flag.load(Ordering::SeqCst));
    assert_eq!(shard.live().err(), Some(ErrorCode::NotCoordinator));
    assert!(runtime.live_shards().is_empty());
}

#[tokio::test]
async fn timers_write_and_see_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    let runtime = CoordinatorRuntime::new(TOPIC, |_| Counter::default());
    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    let shard = loaded_shard(&runtime).await;
    shard.live().unwrap().timer_write = Some(4);

    let result = eventually(|| shard.live().unwrap().timer_result.clone()).await;
    assert_eq!(result, Ok(3));
    assert_eq!(p.log_end_offset(), 4);
    assert!(p.high_watermark() >= 4);
}

#[tokio::test]
async fn operations_wait_for_the_load() {
    let dir = tempfile::tempdir().unwrap();
    let p = leading_partition(dir.path());
    // A shard whose replay blocks until the test lets it go.
    let gate = Arc::new(Mutex::new(()));
    let held = gate.lock();
    struct Gated(Counter, Arc<Mutex<()>>);
    impl CoordinatorShard for Gated {
        type Record = u32;
        fn encode(records: &[u32], now_ms: i64) -> Result<Bytes, String> {
            Counter::encode(records, now_ms)
        }
        fn replay(&mut self, chunk: Bytes, last_offset: i64) {
            drop(self.1.lock());
            self.0.replay(chunk, last_offset)
        }
        fn on_loaded(&mut self, now_ms: i64) {
            self.0.on_loaded(now_ms)
        }
        fn tick(&mut self, _now_ms: i64) -> Vec<TimerWrite<Self>> {
            Vec::new()
        }
        fn resign(&mut self) {}
    }
    p.append_as_leader(&client_batch(now_ms(), 1, None), None, now_ms())
        .unwrap();
    let g = gate.clone();
    let runtime = CoordinatorRuntime::new(TOPIC, move |_| Gated(Counter::default(), g.clone()));
    runtime.on_role_changes(&[(p.clone(), RoleChange::Leading)]);
    // The replay cannot finish while the gate is held.
    assert_eq!(
        runtime.shard(0).err(),
        Some(ErrorCode::CoordinatorLoadInProgress)
    );
    drop(held);
    let shard = eventually(|| runtime.shard(0).ok()).await;
    assert_eq!(shard.live().unwrap().0.records, 1);
}
