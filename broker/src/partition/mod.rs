//! One partition replica on this broker: its log, its role (leader, holding the
//! [`ReplicaState`] of its followers, or follower of another broker), and the progress
//! (log end, durable offset, high watermark) that acknowledgements and fetches wait on.
//!
//! [`PartitionCore`] holds all of it under one lock and is pure of tasks and waits;
//! [`Partition`] is the thin handle around it: it locks, calls the core, and after
//! unlocking applies the core's [`Effects`] (publish progress to waiters, wake the
//! flusher). Appends happen under the lock; fsyncs do not (group commit, see
//! [`flusher`]): while one fsync runs, later appends queue up and the next fsync covers
//! them all.
pub mod acks;
pub mod core;
#[cfg(test)]
mod core_tests;
pub mod flusher;
mod follower;
mod leader;
pub mod producer_state;
pub mod replica_state;
pub mod settings;
mod types;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use spate_metadata::ids::NodeId;
use tokio::sync::{watch, Notify};

pub use self::acks::AckPoint;
pub use self::core::{Effects, PartitionCore};
pub use crate::topic_partition::TopicPartition;
pub use producer_state::{AppendCheck, ProducerStateManager, SequenceError};
pub use replica_state::{IsrChange, ReplicaState, ReplicaStateError};
pub use settings::PartitionSettings;
pub use types::{
    Assignment, FollowerFetch, FollowerFetchRequest, LeaderState, LogFailures, Progress, RoleChange,
};

use crate::delayed::{self, Attempt};
use crate::error::{BrokerError, NotServing, Result};
use spate_log::{AppendInfo, LogConfig, LogDir};

/// A partition replica hosted by this broker: the handle around its [`PartitionCore`].
pub struct Partition {
    /// Name and index.
    pub tp: TopicPartition,
    /// Topic id the log belongs to (a re-created topic gets a fresh log).
    pub topic_id: [u8; 16],
    core: Mutex<PartitionCore>,
    progress: watch::Sender<Progress>,
    /// Version of the progress last published (see [`Effects::publish`]).
    published: AtomicU64,
    flush_wanted: Notify,
    /// Woken when this log fails, so the broker tells the controller at once.
    failures: Option<Arc<LogFailures>>,
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir` and starts its flusher. The replica
    /// starts as a follower of nobody; [`Partition::apply_assignment`] gives it a role.
    pub fn open(
        dir: LogDir,
        tp: TopicPartition,
        topic_id: [u8; 16],
        local_id: NodeId,
        log_config: LogConfig,
        settings: PartitionSettings,
        now_ms: i64,
        failures: Option<Arc<LogFailures>>,
    ) -> Result<Arc<Partition>> {
        let core = PartitionCore::open(dir, tp.clone(), local_id, log_config, settings, now_ms)?;
        let mut partition = Partition::new(core, topic_id);
        partition.failures = failures;
        let partition = Arc::new(partition);
        tokio::spawn(flusher::run(partition.clone()));
        Ok(partition)
    }

    /// The handle around `core` (no flusher: [`Partition::open`] starts one).
    fn new(core: PartitionCore, topic_id: [u8; 16]) -> Partition {
        let (progress, _) = watch::channel(core.progress().clone());
        Partition {
            tp: core.tp.clone(),
            topic_id,
            core: Mutex::new(core),
            progress,
            published: AtomicU64::new(0),
            flush_wanted: Notify::new(),
            failures: None,
        }
    }

    /// Runs `f` on the locked core, then applies its effects with the lock released.
    fn run<T>(&self, f: impl FnOnce(&mut PartitionCore, &mut Effects) -> T) -> T {
        let mut fx = Effects::default();
        let out = f(&mut self.core.lock(), &mut fx);
        self.apply(fx);
        out
    }

    /// Runs a read-only query on the locked core.
    fn query<T>(&self, f: impl FnOnce(&PartitionCore) -> T) -> T {
        f(&self.core.lock())
    }

    fn apply(&self, fx: Effects) {
        if let Some((version, progress)) = fx.publish {
            self.progress.send_if_modified(|p| {
                // Under the watch's lock: versions are applied in order, so a handle
                // that unlocked first but publishes last cannot move offsets back.
                if version <= self.published.load(Ordering::Relaxed) {
                    return false;
                }
                self.published.store(version, Ordering::Relaxed);
                let moved = *p != progress;
                *p = progress;
                moved
            });
        }
        if fx.flush {
            self.flush_wanted.notify_one();
        }
        if fx.failed {
            if let Some(failures) = &self.failures {
                failures.raise();
            }
        }
    }

    /// Current leadership state.
    pub fn leader_state(&self) -> LeaderState {
        self.query(|c| c.leader_state())
    }

    /// Applies the partition's state from a metadata image (or an AlterPartition answer
    /// with the same leader epoch): become leader, follow another broker, or take a
    /// committed ISR change. A new leader epoch starts at our LEO.
    pub fn apply_assignment(&self, a: &Assignment, now_ms: i64) -> Result<RoleChange> {
        self.run(|c, fx| c.apply_assignment(a, now_ms, fx))
    }

    /// Current settings derived from topic configs.
    pub fn settings(&self) -> PartitionSettings {
        self.query(|c| c.settings().clone())
    }

    /// Applies changed topic configs.
    pub fn update_config(&self, log_config: LogConfig, settings: PartitionSettings) {
        self.run(|c, fx| c.update_config(log_config, settings, fx))
    }

    /// Checks a client-supplied leader epoch against ours (KIP-320); -1 means "not given".
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<LeaderState> {
        let state = self.leader_state();
        self::core::check_epoch(&self.tp, client_epoch, state.leader_epoch)?;
        Ok(state)
    }

    /// Leader append of client batches; returns where they landed and the leader epoch
    /// they were written in (acknowledgement waits are bound to it). With
    /// `min_insync` (acks=all), refuses before appending when the committed ISR is
    /// smaller (NOT_ENOUGH_REPLICAS).
    pub fn append_as_leader(
        &self,
        records: &[u8],
        min_insync: Option<usize>,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32)> {
        self.run(|c, fx| c.append_as_leader(records, min_insync, None, now_ms, fx))
    }

    /// Leader append only while still leading at `leader_epoch` (checked before anything
    /// is written): internal writers that must not write into a later leadership of
    /// this broker.
    pub fn append_in_epoch(
        &self,
        records: &[u8],
        min_insync: Option<usize>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.run(|c, fx| c.append_as_leader(records, min_insync, Some(leader_epoch), now_ms, fx))
            .map(|(info, _)| info)
    }

    /// A follower's fetch at the leader (see [`PartitionCore::serve_follower_fetch`]).
    pub fn serve_follower_fetch(
        &self,
        want: &FollowerFetchRequest,
        now_ms: i64,
    ) -> Result<FollowerFetch> {
        self.run(|c, fx| c.serve_follower_fetch(want, now_ms, fx))
    }

    /// Follower append of the leader's batches (see
    /// [`PartitionCore::append_as_follower`]). When acknowledgements wait on fsync the
    /// caller waits for [`Partition::wait_durable`] before reporting the new LEO.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
        now_ms: i64,
    ) -> Result<i64> {
        self.run(|c, fx| {
            c.append_as_follower(
                leader_epoch,
                records,
                leader_hw,
                leader_log_start,
                now_ms,
                fx,
            )
        })
    }

    /// Follower truncation (see [`PartitionCore::truncate_as_follower`]).
    pub fn truncate_as_follower(
        &self,
        leader_epoch: i32,
        offset: i64,
        restart: bool,
    ) -> Result<i64> {
        let now = crate::clock::now_ms();
        self.run(|c, fx| c.truncate_as_follower(leader_epoch, offset, restart, now, fx))
    }

    /// Leader: proposes removing followers that lagged longer than `lag_ms`.
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        self.run(|c, _| c.maybe_shrink_isr(now_ms, lag_ms))
    }

    /// The ISR change this leader has in flight, if any (to retry after a lost answer).
    pub fn pending_isr_change(&self) -> Option<IsrChange> {
        self.query(|c| c.pending_isr_change())
    }

    /// The controller committed an ISR for this leadership (AlterPartition answer).
    pub fn on_isr_committed(&self, leader_epoch: i32, isr: Vec<NodeId>, partition_epoch: i32) {
        self.run(|c, fx| c.on_isr_committed(leader_epoch, isr, partition_epoch, fx))
    }

    /// The controller refused `change` for certain: drop it if it is still pending.
    pub fn on_isr_change_rejected(&self, change: &IsrChange) {
        self.run(|c, fx| c.on_isr_change_rejected(change, fx))
    }

    /// The leader's view of its replicas: (replica, LEO if known), the leader first.
    pub fn replica_log_end_offsets(&self) -> Vec<(NodeId, Option<i64>)> {
        self.query(|c| c.replica_log_end_offsets())
    }

    /// Resolves once every offset below `end` is fsynced.
    pub async fn wait_durable(&self, end: i64) -> Result<()> {
        self.wait_for(|p| p.durable >= end).await.map(|_| ())
    }

    /// Resolves once the batch ending before `end`, written while leading at
    /// `leader_epoch`, reached `point` (see [`AckPoint`]).
    pub async fn wait_acknowledged(
        &self,
        end: i64,
        leader_epoch: i32,
        point: AckPoint,
    ) -> Result<()> {
        match point {
            AckPoint::Appended => Ok(()),
            AckPoint::LeaderDurable => self.wait_leader_durable(end, leader_epoch).await,
            AckPoint::HighWatermark { min_insync } => {
                self.wait_high_watermark(end, leader_epoch, min_insync)
                    .await
            }
        }
    }

    /// acks=1 with fsync: resolves once `end` is durable while still leading at
    /// `leader_epoch`.
    pub async fn wait_leader_durable(&self, end: i64, leader_epoch: i32) -> Result<()> {
        let p = self
            .wait_for(|p| p.leading_epoch != Some(leader_epoch) || p.durable >= end)
            .await?;
        if p.leading_epoch != Some(leader_epoch) {
            return Err(self.lost_leadership(leader_epoch));
        }
        Ok(())
    }

    /// acks=all: resolves once the high watermark passes `end` while still leading at
    /// `leader_epoch`; NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is then smaller than
    /// `min_insync`, or shrinks below it while waiting (the HW stands still then, strict
    /// min-ISR, so waiting on would only end in a timeout; the client retries at once).
    pub async fn wait_high_watermark(
        &self,
        end: i64,
        leader_epoch: i32,
        min_insync: usize,
    ) -> Result<()> {
        let p = self
            .wait_for(|p| {
                p.leading_epoch != Some(leader_epoch)
                    || p.high_watermark >= end
                    || p.isr_size < min_insync
            })
            .await?;
        if p.leading_epoch != Some(leader_epoch) {
            return Err(self.lost_leadership(leader_epoch));
        }
        if p.isr_size < min_insync {
            return Err(BrokerError::NotEnoughReplicasAfterAppend {
                partition: self.tp.clone(),
                isr_size: p.isr_size,
                min_insync,
            });
        }
        Ok(())
    }

    fn lost_leadership(&self, leader_epoch: i32) -> BrokerError {
        self.query(|c| c.not_serving(NotServing::LeadershipEnded { leader_epoch }))
    }

    /// Resolves once `reached` holds, or with an error once the partition fails without
    /// it (see [`Progress::settled`]; a delayed operation without a deadline: callers
    /// bound it).
    async fn wait_for(&self, reached: impl Fn(&Progress) -> bool) -> Result<Progress> {
        let offline = |reason: &str| BrokerError::StorageOffline {
            partition: self.tp.clone(),
            reason: reason.to_string(),
        };
        delayed::complete(vec![self.progress.subscribe()], None, || {
            let p = self.progress.borrow();
            match p.settled(&reached) {
                Some(Ok(())) => Attempt::Done(Ok(p.clone())),
                Some(Err(reason)) => Attempt::Done(Err(offline(reason))),
                None => Attempt::Wait(Err(offline("closed"))),
            }
        })
        .await
    }

    /// A receiver that changes whenever an offset, the role or the ISR size moves.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The current progress.
    pub fn progress(&self) -> Progress {
        self.query(|c| c.progress().clone())
    }

    /// Current high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.query(|c| c.progress().high_watermark)
    }

    /// Log start offset.
    pub fn log_start_offset(&self) -> i64 {
        self.query(|c| c.log_start_offset())
    }

    /// Log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.query(|c| c.log_end_offset())
    }

    /// Reads committed batches (below the high watermark) for a consumer.
    /// Returns the records and the high watermark that bounded them.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(Bytes, i64)> {
        self.query(|c| c.read_committed(offset, max_bytes, min_one_batch))
    }

    /// What a consumer fetch from `offset` may read (committed batches), taken under the
    /// lock without I/O; read it with [`spate_log::ReadView::read`] off the lock.
    pub fn committed_view(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(spate_log::ReadView, i64)> {
        self.query(|c| c.committed_view(offset, max_bytes))
    }

    /// The log's start and end offsets, read together.
    pub fn log_bounds(&self) -> (i64, i64) {
        self.query(|c| (c.log_start_offset(), c.log_end_offset()))
    }

    /// The end offset of `epoch` with the largest epoch not above it (KIP-101).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.query(|c| c.end_offset_for_epoch(epoch))
    }

    /// The latest leader epoch in the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.query(|c| c.latest_epoch())
    }

    /// The log's leader-epoch entries and its LEO, read together.
    pub fn epoch_entries(&self) -> (Vec<spate_log::EpochEntry>, i64) {
        self.query(|c| c.epoch_entries())
    }

    /// The offset and timestamp of the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        self.query(|c| c.max_timestamp_offset())
    }

    /// The first batch with a record at or after `timestamp`: its offset and max
    /// timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        self.query(|c| c.offset_for_timestamp(timestamp))
    }

    /// Reads batches from `offset` below `upto`, committed or not (replay of internal
    /// topics, lookups).
    pub fn read_below(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<Bytes> {
        self.query(|c| c.read_below(offset, max_bytes, upto))
    }

    /// Bytes on disk and segment count.
    pub fn storage_stats(&self) -> (u64, usize) {
        self.query(|c| c.storage_stats())
    }

    /// Leader-side DeleteRecords: `offset` -1 means the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.run(|c, _| c.delete_records_before(offset))
    }

    /// Periodic work: fsync for topics that flush on an interval, and the
    /// high-watermark checkpoint.
    pub fn maintain(&self, now_ms: i64) {
        self.run(|c, fx| c.maintain(now_ms, fx))
    }

    /// Retention by time and size (only segments wholly below the high watermark).
    pub fn enforce_retention(&self, now_ms: i64) {
        self.run(|c, fx| c.enforce_retention(now_ms, fx))
    }

    /// See [`PartitionCore::cleaning_state`].
    pub fn cleaning_state(
        &self,
        now_ms: i64,
        cleaner: &spate_log::CleanerConfig,
    ) -> Option<(spate_log::Dirtiness, settings::CompactionSettings)> {
        self.query(|c| c.cleaning_state(now_ms, cleaner))
    }

    /// One cleaning pass: planned and installed under the lock, run (all the reading and
    /// writing) without it. Blocking: call it from a blocking thread. Err is the pass's
    /// own failure (the log stays as it was); Ok(None) when there was nothing to do.
    pub fn clean(
        &self,
        now_ms: i64,
        cleaner: &spate_log::CleanerConfig,
    ) -> std::result::Result<Option<spate_log::CleanStats>, spate_log::LogError> {
        let Some(plan) = self.query(|c| c.plan_clean(now_ms, cleaner)) else {
            return Ok(None);
        };
        let cleaned = plan.run()?;
        Ok(self.run(|c, fx| c.install_cleaned(cleaned, fx)))
    }

    /// Idempotent producers known here (tests, metrics).
    pub fn producer_count(&self) -> usize {
        self.query(|c| c.producer_count())
    }

    /// Takes the partition offline on this broker after a storage error.
    pub fn fail(&self, reason: String) {
        self.run(|c, fx| c.fail(reason, fx))
    }

    /// Whether its log failed (the replica is offline on this broker).
    pub fn is_failed(&self) -> bool {
        self.query(|c| c.is_failed())
    }

    /// Whether opening its log cut a torn or garbled tail: this replica may hold less
    /// than it acknowledged, so it must not count as an eligible leader (KIP-966's
    /// unclean-shutdown replicas).
    pub fn recovery_cut(&self) -> bool {
        self.query(|c| c.log.recovery_cut())
    }

    /// Stops the flusher and closes the log cleanly (flush, indexes, checkpoints).
    pub fn close(&self) -> Result<()> {
        let now = crate::clock::now_ms();
        self.run(|c, fx| c.close(now, fx))
    }
}

/// Reads of at most this many bytes run inline: they come from the page cache near the
/// log's tail (a follower's fetch, a caught-up consumer) and cost less than a hand-off to
/// a blocking thread, which showed as a few percent of 3-node acks=all throughput.
const INLINE_READ_MAX: u64 = 256 * 1024;

/// Where a fetch lets a partition's first batch come whole beyond the budget (KIP-74).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBatch {
    /// Only until the response holds data (consumer fetch: one batch always progresses).
    UntilData,
    /// For every partition (follower fetch: no replica may get stuck behind a batch).
    EveryPartition,
}

/// A read of one partition in a fetch: `Some(result)` for a partition that had a view.
pub type ViewRead = Option<std::result::Result<Bytes, spate_log::LogError>>;

/// Reads the views of one fetch in order, each within its own cap and all within
/// `max_bytes`, off every lock (and off the runtime when large, see
/// [`read_off_runtime`]). `None` views (partitions that answered an error) read nothing.
pub async fn read_views(
    views: Vec<Option<(spate_log::ReadView, usize)>>,
    max_bytes: usize,
    first: FirstBatch,
) -> std::result::Result<Vec<ViewRead>, tokio::task::JoinError> {
    let upper: u64 = views.iter().flatten().map(|(v, _)| v.upper_bound()).sum();
    read_off_runtime(upper, move || {
        let mut budget = max_bytes;
        let mut any_data = false;
        views
            .into_iter()
            .map(|view| {
                let (view, cap) = view?;
                let limit = cap.min(budget);
                let whole_first = first == FirstBatch::EveryPartition || !any_data;
                if limit == 0 && !whole_first {
                    return Some(Ok(Bytes::new()));
                }
                let records = view.read(limit, whole_first);
                if let Ok(r) = &records {
                    budget = budget.saturating_sub(r.len());
                    any_data |= !r.is_empty();
                }
                Some(records)
            })
            .collect()
    })
    .await
}

/// Runs a segment read of at most `bytes` (a [`spate_log::ReadView::upper_bound`] sum):
/// inline when small, else on a blocking thread so the async workers never wait on the
/// disk. The read itself never holds a partition's lock.
pub async fn read_off_runtime<T: Send + 'static>(
    bytes: u64,
    read: impl FnOnce() -> T + Send + 'static,
) -> std::result::Result<T, tokio::task::JoinError> {
    if bytes <= INLINE_READ_MAX {
        Ok(read())
    } else {
        tokio::task::spawn_blocking(read).await
    }
}
