//! The partition core (docs/architecture.md §4): one struct, under one lock, holding a
//! replica's log, role, replica state, producer state and settings. Its methods take an
//! input and record in [`Effects`] what the handle must do once the lock is released
//! (publish progress, wake the flusher); they never block on anything but the log's own
//! file I/O, and never spawn or wait. Leader paths live in [`super::leader`], follower
//! paths in [`super::follower`].

use spate_log::batch::{self, BatchHeader};
use spate_log::{
    AppendInfo, CleanPlan, CleanStats, Cleaned, CleanerConfig, Dirtiness, FlushJob, Log, LogConfig,
    LogDir, LogError,
};
use spate_metadata::ids::NodeId;

use super::producer_state::ProducerStateManager;
use super::replica_state::ReplicaState;
use super::settings::{CompactionSettings, PartitionSettings};
use super::types::{Assignment, LeaderState, Progress, RoleChange};
use crate::error::{BrokerError, NotServing, Result};
use crate::topic_partition::TopicPartition;

/// How long an idempotent producer's state is kept after its last write (Kafka's
/// `producer.id.expiration.ms`).
const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// Bytes read per step when replaying the log into producer state.
const REPLAY_CHUNK: usize = 8 * 1024 * 1024;

/// What the handle does after releasing the core's lock.
#[derive(Debug, Default)]
#[must_use]
pub struct Effects {
    /// Progress to publish to waiters, with its version (a later version always wins,
    /// whatever order the handles publish in).
    pub publish: Option<(u64, Progress)>,
    /// Wake the flusher: something was appended that acknowledgements wait to see
    /// fsynced, or a flush is due.
    pub flush: bool,
    /// The log just failed: the broker must tell the controller.
    pub failed: bool,
}

/// This replica's role in the partition.
pub(super) enum Role {
    Follower {
        leader: Option<NodeId>,
        leader_epoch: i32,
        isr_size: usize,
    },
    Leader(Box<ReplicaState>),
}

impl Role {
    pub(super) fn leader_epoch(&self) -> i32 {
        match self {
            Role::Leader(rs) => rs.leader_epoch().0,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }
}

/// One partition replica's state. See the module docs.
pub struct PartitionCore {
    pub(super) tp: TopicPartition,
    pub(super) local_id: NodeId,
    pub(super) log: Log,
    pub(super) role: Role,
    pub(super) settings: PartitionSettings,
    /// Idempotent producers' epochs and last batches.
    pub(super) producers: ProducerStateManager,
    /// Map end offset of the last producer-state snapshot saved.
    producers_saved: i64,
    /// High watermark of the last checkpoint written.
    hw_checkpointed: i64,
    /// The progress as it stands; the handle publishes copies of it.
    progress: Progress,
    version: u64,
    /// Set once the partition is removed from this broker: nothing may be written after
    /// its final flush.
    closed: bool,
}

impl PartitionCore {
    /// Opens (recovering if needed) the log in `dir`. The replica starts as a follower
    /// of nobody; [`PartitionCore::apply_assignment`] gives it a role.
    pub fn open(
        dir: LogDir,
        tp: TopicPartition,
        local_id: NodeId,
        log_config: LogConfig,
        settings: PartitionSettings,
        now_ms: i64,
    ) -> Result<PartitionCore> {
        let mut log = Log::open_in(dir, log_config, now_ms)?;
        // Recovery checked the tail's CRCs, but after a process crash it may still sit
        // only in the page cache: fsync it before anyone may read it or count on it, so a
        // later power loss cannot take back offsets a consumer has already seen.
        log.flush()?;
        let leo = log.log_end_offset();
        // The high watermark restarts from its checkpoint: what lies above it may never
        // have reached the other replicas, and a leader must earn it again before a
        // consumer may read it.
        let hw = log
            .high_watermark_checkpoint()
            .unwrap_or(0)
            .clamp(log.log_start_offset(), leo);
        let snapshot = log
            .producer_state_snapshot()
            .and_then(|bytes| ProducerStateManager::decode_snapshot(&bytes).ok());
        let producers = rebuild_producer_state(&log, snapshot);
        Ok(PartitionCore {
            tp,
            local_id,
            producers_saved: producers.map_end_offset(),
            producers,
            log,
            role: Role::Follower {
                leader: None,
                leader_epoch: -1,
                isr_size: 0,
            },
            settings,
            hw_checkpointed: hw,
            progress: Progress {
                log_end_offset: leo,
                durable: leo,
                high_watermark: hw,
                leading_epoch: None,
                isr_size: 0,
                failed: None,
            },
            version: 0,
            closed: false,
        })
    }

    /// The progress as it stands (what the handle last published, or newer).
    pub fn progress(&self) -> &Progress {
        &self.progress
    }

    /// Applies `update` to the progress; when it says it moved, the new progress is
    /// published after the lock is released.
    pub(super) fn publish(&mut self, fx: &mut Effects, update: impl FnOnce(&mut Progress) -> bool) {
        if update(&mut self.progress) {
            self.version += 1;
            fx.publish = Some((self.version, self.progress.clone()));
        }
    }

    /// Wakes the flusher when acknowledgements wait on fsync, or when `flush.messages`
    /// records are not yet durable.
    pub(super) fn flush_if_acks_wait(&self, fx: &mut Effects) {
        let unflushed = self.log.log_end_offset() - self.progress.durable;
        if self.settings.sync_before_ack || unflushed >= self.settings.flush_messages {
            fx.flush = true;
        }
    }

    /// Current leadership state.
    pub fn leader_state(&self) -> LeaderState {
        match &self.role {
            Role::Leader(rs) => LeaderState {
                is_leader: true,
                leader_epoch: rs.leader_epoch().0,
                isr_size: rs.isr().len(),
            },
            Role::Follower {
                leader_epoch,
                isr_size,
                ..
            } => LeaderState {
                is_leader: false,
                leader_epoch: *leader_epoch,
                isr_size: *isr_size,
            },
        }
    }

    /// Applies the partition's state from a metadata image (or an AlterPartition answer
    /// with the same leader epoch): become leader, follow another broker, or take a
    /// committed ISR change.
    pub fn apply_assignment(
        &mut self,
        a: &Assignment,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<RoleChange> {
        if a.leader_epoch < self.role.leader_epoch() {
            // An image older than what we act on already: metadata only moves forward,
            // so this is a late duplicate.
            return Ok(RoleChange::Unchanged);
        }
        if a.leader == Some(self.local_id) {
            self.lead(a, now_ms, fx)
        } else {
            Ok(self.follow(a, fx))
        }
    }

    /// Current settings derived from topic configs.
    pub fn settings(&self) -> &PartitionSettings {
        &self.settings
    }

    /// Applies changed topic configs.
    pub fn update_config(
        &mut self,
        log_config: LogConfig,
        settings: PartitionSettings,
        fx: &mut Effects,
    ) {
        if let Role::Leader(rs) = &mut self.role {
            rs.set_fsync_before_ack(settings.sync_before_ack);
            let hw = rs.set_min_insync(settings.min_insync_replicas.max(1) as usize);
            if hw.is_some() {
                self.publish(fx, |p| {
                    raise_hw(p, hw);
                    true
                });
            }
        }
        self.log.set_config(log_config);
        self.settings = settings;
        // A switch to fsync-per-ack must not leave earlier appends un-synced.
        fx.flush = true;
    }

    pub(super) fn ensure_online(&self) -> Result<()> {
        match &self.progress.failed {
            Some(reason) => Err(BrokerError::StorageOffline {
                partition: self.tp.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Fails once the partition is closed (removed from this broker).
    pub(super) fn ensure_open(&self) -> Result<()> {
        if self.closed {
            return Err(self.not_serving(NotServing::NotHosted));
        }
        Ok(())
    }

    pub(super) fn not_leader(&self) -> BrokerError {
        self.not_serving(NotServing::NotLeader)
    }

    pub(super) fn not_serving(&self, why: NotServing) -> BrokerError {
        BrokerError::NotLeaderOrFollower {
            partition: self.tp.clone(),
            broker: self.local_id,
            why,
        }
    }

    /// Whether the partition was closed.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the log failed (the partition is offline here).
    pub fn is_failed(&self) -> bool {
        self.progress.failed.is_some()
    }

    // ---- named queries (for ListOffsets, OffsetForLeaderEpoch, replay, metrics) ----

    /// Log start offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The end offset of `epoch` (KIP-101): the start of the first later epoch, or the
    /// LEO; with the largest epoch not above `epoch`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.end_offset_for_epoch(epoch)
    }

    /// The latest leader epoch in the log's epoch cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.log.leader_epoch_cache().latest_epoch()
    }

    /// The epoch cache's entries and the LEO (for choosing the epoch a truncating
    /// follower asks about).
    pub fn epoch_entries(&self) -> (Vec<spate_log::EpochEntry>, i64) {
        (
            self.log.leader_epoch_cache().entries().to_vec(),
            self.log.log_end_offset(),
        )
    }

    /// The offset and timestamp of the record with the largest timestamp.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        self.log.max_timestamp_offset()
    }

    /// The first batch with a record at or after `timestamp`: its offset and max
    /// timestamp.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        Ok(self.log.offset_for_timestamp(timestamp)?)
    }

    /// Reads batches from `offset` below `upto` (at least one whole batch), for readers
    /// that see uncommitted data: replay of internal topics and lookups.
    pub fn read_below(&self, offset: i64, max_bytes: usize, upto: i64) -> Result<bytes::Bytes> {
        Ok(self.log.read(offset, max_bytes, upto, true)?)
    }

    /// A view of the committed batches (below the high watermark) from `offset` for a
    /// consumer, to read without the lock; with the high watermark that bounds it.
    pub fn committed_view(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<(spate_log::ReadView, i64)> {
        self.ensure_online()?;
        let hw = self.progress.high_watermark;
        Ok((self.log.read_view(offset, hw, max_bytes)?, hw))
    }

    /// Reads committed batches (below the high watermark) for a consumer; returns the
    /// records and the high watermark that bounded them.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(bytes::Bytes, i64)> {
        self.ensure_online()?;
        let hw = self.progress.high_watermark;
        Ok((self.log.read(offset, max_bytes, hw, min_one_batch)?, hw))
    }

    /// Bytes on disk and segment count.
    pub fn storage_stats(&self) -> (u64, usize) {
        (self.log.size_bytes(), self.log.segment_count())
    }

    /// Idempotent producers known here.
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    // ---- durability and upkeep ----

    /// The fsync the flusher should run next (outside the lock), if anything is
    /// unsynced.
    pub fn flush_job(&self) -> Option<FlushJob> {
        if self.is_failed() {
            return None;
        }
        self.log.flush_job()
    }

    /// The flusher's fsync up to `upto` ended with `synced`: record what the log now
    /// holds as durable (a truncation while the job ran caps what it may claim), or take
    /// the partition offline.
    pub fn complete_flush(
        &mut self,
        upto: i64,
        synced: std::result::Result<(), String>,
        fx: &mut Effects,
    ) {
        let durable = synced.and_then(|()| {
            self.log
                .complete_flush(upto)
                .map(|()| self.log.recovery_point())
                .map_err(|e| e.to_string())
        });
        match durable {
            Ok(durable) => self.on_flushed(durable, fx),
            Err(reason) => self.fail(format!("fsync failed: {reason}"), fx),
        }
    }

    /// Everything below `durable` is fsynced.
    fn on_flushed(&mut self, durable: i64, fx: &mut Effects) {
        let hw = match &mut self.role {
            Role::Leader(rs) => rs.on_leader_flushed(durable),
            Role::Follower { .. } => None,
        };
        self.publish(fx, |p| {
            let mut moved = false;
            if durable > p.durable {
                p.durable = durable;
                moved = true;
            }
            moved | raise_hw(p, hw)
        });
    }

    /// Retention by time and size, below the high watermark (every
    /// `log.retention.check.interval.ms`).
    pub fn enforce_retention(&mut self, now_ms: i64, fx: &mut Effects) {
        let hw = self.progress.high_watermark;
        if let Err(e) = self.log.enforce_retention(now_ms, hw) {
            self.fail(format!("retention failed: {e}"), fx);
        }
    }

    /// A compacted log's cleaning settings and how dirty it is below the high watermark;
    /// None when the topic is not compacted or the log failed.
    pub fn cleaning_state(
        &self,
        now_ms: i64,
        cleaner: &CleanerConfig,
    ) -> Option<(Dirtiness, CompactionSettings)> {
        let settings = self.settings.compaction.clone()?;
        if self.is_failed() {
            return None;
        }
        let config = cleaner_config(cleaner, &settings);
        let dirtiness = self
            .log
            .dirtiness(self.progress.high_watermark, now_ms, &config);
        Some((dirtiness, settings))
    }

    /// Snapshots a cleaning pass below the high watermark (the cleaner runs it without
    /// the lock); None when not compacted, failed, or nothing is dirty.
    pub fn plan_clean(&self, now_ms: i64, cleaner: &CleanerConfig) -> Option<CleanPlan> {
        let settings = self.settings.compaction.as_ref()?;
        if self.is_failed() {
            return None;
        }
        self.log.plan_clean(
            self.progress.high_watermark,
            now_ms,
            &cleaner_config(cleaner, settings),
        )
    }

    /// Swaps a pass's segments in. A failure part way leaves the log's files for
    /// recovery to finish (see the cleaner's swap protocol), so it fails the replica as
    /// any storage error does. None when the log changed under the pass.
    pub fn install_cleaned(&mut self, cleaned: Cleaned, fx: &mut Effects) -> Option<CleanStats> {
        if self.is_failed() {
            if let Err(e) = cleaned.discard() {
                tracing::warn!(partition = %self.tp, error = %e, "cannot remove a cleaning pass's files");
            }
            return None;
        }
        match self.log.install_cleaned(cleaned) {
            Ok(stats) => stats,
            Err(e) => {
                self.fail(format!("installing cleaned segments failed: {e}"), fx);
                None
            }
        }
    }

    /// Periodic work: fsync for topics that flush on an interval, the high-watermark
    /// checkpoint and the producer-state snapshot.
    pub fn maintain(&mut self, now_ms: i64, fx: &mut Effects) {
        if !self.settings.sync_before_ack && self.settings.flush_due(now_ms) {
            fx.flush = true;
        }
        self.checkpoint_high_watermark(fx);
        self.save_producer_state(now_ms, false);
    }

    /// Expires idle producers and saves the producer state when it moved (or `force`).
    pub(super) fn save_producer_state(&mut self, now_ms: i64, force: bool) {
        let expired = self.producers.expire(now_ms, PRODUCER_EXPIRATION_MS);
        let end = self.producers.map_end_offset();
        if !force && expired == 0 && self.producers_saved == end {
            return;
        }
        match self
            .log
            .save_producer_state_snapshot(&self.producers.encode_snapshot())
        {
            Ok(()) => self.producers_saved = end,
            Err(e) => {
                tracing::warn!(partition = %self.tp, error = %e, "cannot save producer state")
            }
        }
    }

    fn checkpoint_high_watermark(&mut self, fx: &mut Effects) {
        // Capped by the LEO: the checkpoint must never get ahead of the log.
        let hw = self.progress.high_watermark.min(self.log.log_end_offset());
        if self.hw_checkpointed == hw {
            return;
        }
        if let Err(e) = self.log.checkpoint_high_watermark(hw) {
            // The disk under this log fails: as Kafka's failed log directory, the
            // partition goes offline here rather than carry on half-written.
            if let LogError::Io(io) = &e {
                self.fail(format!("high watermark checkpoint failed: {io}"), fx);
            } else {
                tracing::warn!(partition = %self.tp, error = %e, "cannot checkpoint the high watermark");
            }
            return;
        }
        self.hw_checkpointed = hw;
    }

    /// Takes the partition offline on this broker after a storage error.
    pub fn fail(&mut self, reason: String, fx: &mut Effects) {
        if self.progress.failed.is_some() {
            return;
        }
        tracing::error!(partition = %self.tp, %reason, "partition log failed; offline on this broker");
        fx.failed = true;
        self.publish(fx, |p| {
            p.failed = Some(reason);
            true
        });
    }

    /// A write to the log failed: an I/O error leaves the tail unknown, so the partition
    /// goes offline here rather than acknowledge on a broken log. Other errors (a bad
    /// batch) leave it as it was.
    pub(super) fn on_write_error(
        &mut self,
        what: &str,
        e: LogError,
        fx: &mut Effects,
    ) -> BrokerError {
        if let LogError::Io(io) = &e {
            self.fail(format!("{what} failed: {io}"), fx);
        }
        e.into()
    }

    /// Closes the log cleanly (flush, indexes, checkpoints); later writes fail.
    /// Acknowledgements still waiting on an fsync complete.
    pub fn close(&mut self, now_ms: i64, fx: &mut Effects) -> Result<()> {
        self.closed = true;
        fx.flush = true;
        self.log.flush()?;
        let leo = self.log.log_end_offset();
        self.checkpoint_high_watermark(fx);
        self.save_producer_state(now_ms, true);
        self.log.close_in_place()?;
        self.on_flushed(leo, fx);
        Ok(())
    }
}

/// Raises the high watermark to `hw` (never lowers it); whether it moved.
pub(super) fn raise_hw(p: &mut Progress, hw: Option<i64>) -> bool {
    match hw {
        Some(hw) if hw > p.high_watermark => {
            p.high_watermark = hw;
            true
        }
        _ => false,
    }
}

/// KIP-320 epoch check: -1 means "not given"; older is fenced, newer unknown here.
pub(super) fn check_epoch(tp: &TopicPartition, given: i32, ours: i32) -> Result<()> {
    if given >= 0 && given < ours {
        return Err(BrokerError::FencedLeaderEpoch {
            partition: tp.clone(),
            given,
            current: ours,
        });
    }
    if given > ours {
        return Err(BrokerError::UnknownLeaderEpoch {
            partition: tp.clone(),
            given,
            current: ours,
        });
    }
    Ok(())
}

/// Replays the batch headers of `log` from `state`'s map end offset (or the log start,
/// when the snapshot is ahead of the log) into `state`.
fn rebuild_producer_state(log: &Log, state: Option<ProducerStateManager>) -> ProducerStateManager {
    let leo = log.log_end_offset();
    let mut state = state
        .filter(|s| s.map_end_offset() <= leo)
        .unwrap_or_default();
    let mut next = state.map_end_offset().max(log.log_start_offset());
    while next < leo {
        let Ok(chunk) = log.read(next, REPLAY_CHUNK, leo, true) else {
            break;
        };
        let headers = batch_headers(&chunk);
        let Some(last) = headers.last() else { break };
        next = last.last_offset() + 1;
        state.replay(headers.iter());
    }
    state
}

/// Headers of the batches in `records` (stops at the first malformed one).
pub(super) fn batch_headers(records: &[u8]) -> Vec<BatchHeader> {
    batch::batches(records)
        .map_while(|v| v.ok().map(|v| *v.header()))
        .collect()
}

/// An append that wrote nothing: a retried batch already in the log, answered with
/// where it landed.
pub(super) fn duplicate_of(meta: &super::producer_state::BatchMetadata) -> AppendInfo {
    AppendInfo {
        first_offset: meta.first_offset,
        last_offset: meta.last_offset,
        max_timestamp: meta.max_timestamp,
        offset_of_max_timestamp: -1,
        log_append_time: -1,
        record_count: 0,
        bytes: 0,
    }
}

/// A pass's settings: the broker's cleaner ones with the topic's.
fn cleaner_config(cleaner: &CleanerConfig, topic: &CompactionSettings) -> CleanerConfig {
    CleanerConfig {
        delete_retention_ms: topic.delete_retention_ms,
        min_compaction_lag_ms: topic.min_compaction_lag_ms,
        ..cleaner.clone()
    }
}
