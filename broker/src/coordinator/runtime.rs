//! [`CoordinatorRuntime`]: shards per internal-topic partition, load by replay, writes
//! that wait for the high watermark, hand-over and timers (see the module docs of
//! [`crate::coordinator`]).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{MappedMutexGuard, Mutex, MutexGuard};
use spate_metadata::ErrorCode;
use tokio::sync::watch;

use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::partition::{Partition, RoleChange};

/// How long a committed write may take before the operation fails.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often shards' timers are ticked.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read per step when loading a shard.
const LOAD_CHUNK: usize = 8 * 1024 * 1024;
/// Pause before a failed load is tried again.
const LOAD_RETRY: Duration = Duration::from_secs(1);

/// What a coordinator keeps per internal-topic partition: its state, rebuilt from the
/// partition's records and changed by the operations the coordinator serves.
pub trait CoordinatorShard: Send + Sized + 'static {
    /// A record of the internal topic.
    type Record: Send + 'static;

    /// Encodes records as one batch to append.
    fn encode(records: &[Self::Record], now_ms: i64) -> Result<Bytes, String>;

    /// Load: applies the batches in `chunk`, read from the partition in log order;
    /// `last_offset` is the offset of the chunk's last record.
    fn replay(&mut self, chunk: Bytes, last_offset: i64);

    /// The load reached the end of the log: the shard serves from now on.
    fn on_loaded(&mut self, now_ms: i64);

    /// Advances the shard's timers; returns the writes they call for.
    fn tick(&mut self, now_ms: i64) -> Vec<TimerWrite<Self>>;

    /// Leadership moved: answer every waiting operation (their clients look for the new
    /// coordinator). The shard is dropped afterwards.
    fn resign(&mut self);
}

/// A write a timer asks for, and what to do with the shard once it committed (the log
/// offset of its last record) or failed.
pub struct TimerWrite<S: CoordinatorShard> {
    /// Records to write.
    pub records: Vec<S::Record>,
    /// Runs on the live shard after the write.
    pub then: Box<dyn FnOnce(&mut S, Result<i64, ErrorCode>) + Send>,
}

/// Where a shard is in its life.
enum Slot<S> {
    /// Replaying its partition: operations answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    /// Serving.
    Live(S),
    /// Leadership moved: operations answer NOT_COORDINATOR.
    Resigned,
}

/// One shard: the partition it lives in, the leader epoch it writes in, its state.
pub struct ShardHandle<S: CoordinatorShard> {
    partition: Arc<Partition>,
    leader_epoch: i32,
    slot: Mutex<Slot<S>>,
    stop: watch::Sender<bool>,
}

impl<S: CoordinatorShard> ShardHandle<S> {
    /// The partition this shard lives in.
    pub fn partition(&self) -> &Arc<Partition> {
        &self.partition
    }

    /// The shard's state, locked, unless it resigned (NOT_COORDINATOR) or is still
    /// loading (COORDINATOR_LOAD_IN_PROGRESS).
    pub fn live(&self) -> Result<MappedMutexGuard<'_, S>, ErrorCode> {
        MutexGuard::try_map(self.slot.lock(), |slot| match slot {
            Slot::Live(shard) => Some(shard),
            _ => None,
        })
        .map_err(|slot| match *slot {
            Slot::Loading => ErrorCode::CoordinatorLoadInProgress,
            _ => ErrorCode::NotCoordinator,
        })
    }

    /// Appends `records` in this shard's leader epoch and waits until they are
    /// committed; returns the log offset of the last one (-1 when there were none).
    /// NOT_COORDINATOR once leadership moved, COORDINATOR_NOT_AVAILABLE otherwise.
    pub async fn write(&self, records: Vec<S::Record>) -> Result<i64, ErrorCode> {
        if records.is_empty() {
            return Ok(-1);
        }
        let bytes = S::encode(&records, now_ms()).map_err(|e| {
            tracing::error!(partition = %self.partition.tp, error = %e, "cannot encode coordinator records");
            ErrorCode::CoordinatorNotAvailable
        })?;
        let min_insync = self.partition.settings().min_insync_replicas.max(1) as usize;
        let written = async {
            let info = self.partition.append_in_epoch(
                &bytes,
                Some(min_insync),
                self.leader_epoch,
                now_ms(),
            )?;
            self.partition
                .wait_high_watermark(info.last_offset + 1, self.leader_epoch, min_insync)
                .await
                .map(|()| info.last_offset)
        };
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => {
                tracing::warn!(partition = %self.partition.tp, error = %e, "coordinator write failed");
                Err(write_error(&e))
            }
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable),
        }
    }

    /// Leadership moved: answer every waiting operation and stop the timers.
    fn resign(&self) {
        // send_replace: stored even when the timer task has not subscribed yet.
        self.stop.send_replace(true);
        if let Slot::Live(mut shard) = std::mem::replace(&mut *self.slot.lock(), Slot::Resigned) {
            shard.resign();
        }
        tracing::info!(partition = %self.partition.tp, "coordinator shard resigned");
    }
}

/// The error a coordinator operation answers when its write failed.
fn write_error(e: &BrokerError) -> ErrorCode {
    if e.is_leadership_lost() {
        ErrorCode::NotCoordinator
    } else {
        ErrorCode::CoordinatorNotAvailable
    }
}

/// Every shard of one internal topic that this broker leads.
pub struct CoordinatorRuntime<S: CoordinatorShard> {
    topic: &'static str,
    shards: Mutex<HashMap<i32, Arc<ShardHandle<S>>>>,
    new_shard: Arc<dyn Fn(i32) -> S + Send + Sync>,
}

impl<S: CoordinatorShard> CoordinatorRuntime<S> {
    /// A runtime for the partitions of `topic`; `new_shard` builds the empty shard of a
    /// partition index before its load.
    pub fn new(topic: &'static str, new_shard: impl Fn(i32) -> S + Send + Sync + 'static) -> Self {
        CoordinatorRuntime {
            topic,
            shards: Mutex::new(HashMap::new()),
            new_shard: Arc::new(new_shard),
        }
    }

    /// Reacts to role changes of the topic's partitions: load a shard on becoming
    /// leader, resign it otherwise.
    pub fn on_role_changes(&self, changes: &[(Arc<Partition>, RoleChange)]) {
        for (partition, change) in changes {
            if partition.tp.topic != self.topic {
                continue;
            }
            let index = partition.tp.partition;
            if let Some(old) = self.shards.lock().remove(&index) {
                old.resign();
            }
            if *change != RoleChange::Leading {
                continue;
            }
            let handle = Arc::new(ShardHandle {
                partition: partition.clone(),
                leader_epoch: partition.leader_state().leader_epoch,
                slot: Mutex::new(Slot::Loading),
                stop: watch::channel(false).0,
            });
            self.shards.lock().insert(index, handle.clone());
            tokio::spawn(load_and_run(handle, self.new_shard.clone()));
        }
    }

    /// Resigns every shard (shutdown).
    pub fn resign_all(&self) {
        for (_, shard) in self.shards.lock().drain() {
            shard.resign();
        }
    }

    /// The shard of partition `index`: NOT_COORDINATOR unless this broker leads it,
    /// COORDINATOR_LOAD_IN_PROGRESS until its load finished.
    pub fn shard(&self, index: i32) -> Result<Arc<ShardHandle<S>>, ErrorCode> {
        let shard = self
            .shards
            .lock()
            .get(&index)
            .cloned()
            .ok_or(ErrorCode::NotCoordinator)?;
        drop(shard.live()?);
        Ok(shard)
    }

    /// Every shard that serves (loaded, not resigned), for listings and metrics.
    pub fn live_shards(&self) -> Vec<Arc<ShardHandle<S>>> {
        let shards: Vec<_> = self.shards.lock().values().cloned().collect();
        shards.into_iter().filter(|s| s.live().is_ok()).collect()
    }
}

/// Loads the shard from its partition (starting over from an empty shard on read
/// errors), then ticks its timers until it resigns.
async fn load_and_run<S: CoordinatorShard>(
    handle: Arc<ShardHandle<S>>,
    new_shard: Arc<dyn Fn(i32) -> S + Send + Sync>,
) {
    let mut stop = handle.stop.subscribe();
    let shard = loop {
        if *stop.borrow() {
            return;
        }
        let (partition, new_shard, stopped) =
            (handle.partition.clone(), new_shard.clone(), stop.clone());
        let load = move || {
            let mut shard = new_shard(partition.tp.partition);
            replay_all(&partition, &mut shard, &stopped).map(|()| shard)
        };
        let error = match tokio::task::spawn_blocking(load).await {
            Ok(Ok(shard)) => break shard,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(partition = %handle.partition.tp, error, "loading the coordinator shard failed; retrying");
        tokio::select! {
            _ = tokio::time::sleep(LOAD_RETRY) => {}
            _ = stop.changed() => return,
        }
    };
    {
        let mut slot = handle.slot.lock();
        if !matches!(*slot, Slot::Loading) {
            return;
        }
        let mut shard = shard;
        shard.on_loaded(now_ms());
        *slot = Slot::Live(shard);
    }
    tracing::info!(partition = %handle.partition.tp, "coordinator shard loaded");
    let mut ticker = tokio::time::interval(TICK);
    let writing = Arc::new(AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let writes = match handle.live() {
            Ok(mut shard) => shard.tick(now_ms()),
            Err(_) => return,
        };
        // Writes never hold up the timers: at most one batch of them at a time (the
        // next tick asks again for what is still due).
        if writes.is_empty() || writing.swap(true, Ordering::SeqCst) {
            continue;
        }
        let (handle, writing) = (handle.clone(), writing.clone());
        tokio::spawn(async move {
            for w in writes {
                let result = handle.write(w.records).await;
                if let Ok(mut shard) = handle.live() {
                    (w.then)(&mut shard, result);
                }
            }
            writing.store(false, Ordering::SeqCst);
        });
    }
}

/// Replays the partition from its log start to the LEO seen at the start (or until the
/// shard resigns).
fn replay_all<S: CoordinatorShard>(
    partition: &Partition,
    shard: &mut S,
    stop: &watch::Receiver<bool>,
) -> Result<(), BrokerError> {
    let (mut next, end) = partition.log_bounds();
    while next < end && !*stop.borrow() {
        let chunk = partition.read_below(next, LOAD_CHUNK, end)?;
        let Some(last) = spate_log::batch::batches(&chunk)
            .map_while(|v| v.ok().map(|v| v.header().last_offset()))
            .last()
        else {
            break;
        };
        next = last + 1;
        shard.replay(chunk, last);
    }
    Ok(())
}
