//! Durable segmented log of one partition: segments, indexes, recovery, retention and
//! checkpoints. It knows nothing of partitions, replication or Kafka requests (the broker
//! builds those on top); see docs/architecture.md for where it sits.
//!
//! # Layout
//! - `lib.rs` — [`Log`]: the segment map, offsets, checkpoints, epochs, close.
//! - `append.rs` — leader and follower appends, segment rolling.
//! - `read.rs` — fetch reads, timestamp lookups (ListOffsets).
//! - `retention.rs` — retention, DeleteRecords, truncation.
//! - `flush.rs` — group-commit fsync jobs and the recovery point.
//! - `compaction/` — the log cleaner: key map, batch filtering, crash-safe segment swap;
//!   `compress.rs` compresses kept records again.
//! - `recovery.rs` — opening a partition directory, crash recovery.
//! - `segment/` — one `.log` file with its in-memory indexes (`mod.rs`), and opening an
//!   existing one by trusting its index files or recovering it (`load.rs`);
//!   `scanner.rs` walks a segment's batch headers.
//! - `index.rs`, `time_index.rs` — sparse offset and time indexes.
//! - `batch.rs` — RecordBatch v2 views, validation, in-place stamping.
//! - `records.rs` — walking the records of an uncompressed batch.
//! - `checkpoint.rs`, `epoch_cache.rs`, `config.rs`, `error.rs`; `test_util.rs` builds
//!   test batches.
//!
//! # On disk
//! One directory per partition holding `<base offset:020>.log` segments with their
//! `.index` (relative offset u32, position u32) and `.timeindex` (timestamp i64, relative
//! offset u32) files, and the text checkpoints `recovery-point-offset-checkpoint`,
//! `log-start-offset-checkpoint` and `leader-epoch-checkpoint`. A `clean-shutdown`
//! marker, written last by [`Log::close`], lets the next open trust the index files.
//! Indexes live in memory; their files are written when a segment is sealed and on close.
//!
//! # Invariants
//! - Segments never overlap; the active segment is the last one and the only one written.
//! - Every offset below the recovery point is fsynced; the checkpointed recovery point
//!   never exceeds it, so recovery only re-validates data that may be torn.
//! - `log_start_offset <= log_end_offset`.

mod append;
pub mod batch;
mod checkpoint;
mod compaction;
mod compress;
mod config;
mod decompress;
mod epoch_cache;
mod error;
mod flush;
mod index;
#[cfg(any(test, feature = "test-util"))]
pub mod power_loss;
#[cfg(test)]
mod power_loss_tests;
mod read;
mod records;
mod recovery;
mod retention;
mod scanner;
mod segment;
pub mod storage;
#[cfg(any(test, feature = "test-util"))]
#[cfg_attr(not(test), allow(dead_code))]
pub mod test_util;
mod time_index;

use std::collections::BTreeMap;
use std::mem;
use std::path::Path;
use std::time::Instant;

pub use append::AppendInfo;
pub use compaction::{CleanPlan, CleanStats, Cleaned, CleanerConfig, Dirtiness};
pub use config::{LogConfig, TimestampType};
pub use epoch_cache::{EpochEntry, LeaderEpochCache, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use error::LogError;
pub use flush::FlushJob;
pub use read::ReadView;
pub use storage::{LocalFs, LogDir, OpenMode, Storage, StorageFile};

use checkpoint::{LOG_START_FILE, RECOVERY_POINT_FILE};
use flush::PendingFlushes;
use segment::Segment;

/// The log of one partition: segments on disk, offsets, leader epochs.
#[derive(Debug)]
pub struct Log {
    dir: LogDir,
    config: LogConfig,
    /// Sealed segments by base offset; all below `active`.
    sealed: BTreeMap<i64, Segment>,
    /// The segment appends go to (kept apart so there is always one).
    active: Segment,
    log_start_offset: i64,
    recovery_point: i64,
    /// Value in the recovery-point checkpoint file; never above `recovery_point`.
    checkpointed_recovery_point: i64,
    recovery_checkpoint_at: Option<Instant>,
    epoch_cache: LeaderEpochCache,
    pending_flushes: PendingFlushes,
    /// Largest clock value seen, for segment creation in calls that take no clock.
    clock_ms: i64,
    /// The clean-shutdown marker exists (after `close_in_place`); cleared by any write.
    marked_clean: bool,
    /// Opening it cut bytes or segments off its tail (see [`Log::recovery_cut`]).
    recovery_cut: bool,
    /// Offsets below it were covered by a cleaning pass's key map (compacted logs).
    clean_point: i64,
}

impl Log {
    /// Opens (creating if missing) the partition directory `dir`, recovering after an
    /// unclean stop.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        Log::open_in(LogDir::local(dir), config, now_ms)
    }

    /// [`Log::open`] on any storage (a simulated filesystem in crash tests).
    pub fn open_in(dir: LogDir, config: LogConfig, now_ms: i64) -> Result<Log, LogError> {
        let loaded = recovery::load(&dir, &config, now_ms)?;
        // An unreadable checkpoint only costs a pass over data already clean.
        let clean_point = checkpoint::read_offset(&dir, compaction::CLEANER_CHECKPOINT_FILE)
            .ok()
            .flatten()
            .unwrap_or(0)
            .min(loaded.active.next_offset());
        Ok(Log {
            dir,
            config,
            sealed: loaded.sealed,
            active: loaded.active,
            log_start_offset: loaded.log_start_offset,
            recovery_point: loaded.recovery_point,
            checkpointed_recovery_point: loaded.recovery_point,
            recovery_checkpoint_at: None,
            epoch_cache: loaded.epoch_cache,
            pending_flushes: PendingFlushes::default(),
            clock_ms: now_ms,
            marked_clean: false,
            recovery_cut: loaded.cut,
            clean_point,
        })
    }

    /// Whether opening the log cut garbled bytes (a batch that fails its CRC or header
    /// checks, not merely a torn tail that was never flushed): it may hold less than it
    /// acknowledged before the stop, so the replica is no longer known to hold
    /// everything below the high watermark.
    pub fn recovery_cut(&self) -> bool {
        self.recovery_cut
    }

    /// The settings in force.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings; they apply from the next append or retention pass.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// First readable offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record gets (LEO).
    pub fn log_end_offset(&self) -> i64 {
        self.active.next_offset()
    }

    /// Every offset below this one is fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Bytes of batch data over all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments().map(Segment::size).sum()
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }

    /// The leader epoch cache.
    pub fn leader_epoch_cache(&self) -> &LeaderEpochCache {
        &self.epoch_cache
    }

    /// Records that `epoch` starts at `start_offset` (a new leader assigns its epoch at
    /// its LEO) and checkpoints the cache.
    pub fn assign_epoch(&mut self, epoch: i32, start_offset: i64) -> Result<(), LogError> {
        if epoch < 0 || start_offset < 0 {
            return Err(LogError::InvalidOffset(format!(
                "cannot assign leader epoch {epoch} at offset {start_offset}: both must be >= 0"
            )));
        }
        if self.epoch_cache.assign(epoch, start_offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }

    /// The checkpointed high watermark, if one was written (a corrupt file counts as none:
    /// the high watermark then restarts from the log start and is re-earned).
    pub fn high_watermark_checkpoint(&self) -> Option<i64> {
        checkpoint::read_offset(&self.dir, checkpoint::HIGH_WATERMARK_FILE)
            .ok()
            .flatten()
    }

    /// Checkpoints the high watermark (atomically; called periodically, not per append).
    pub fn checkpoint_high_watermark(&self, high_watermark: i64) -> Result<(), LogError> {
        checkpoint::write_offset(&self.dir, checkpoint::HIGH_WATERMARK_FILE, high_watermark)?;
        Ok(())
    }

    /// The saved producer-state snapshot, if any (its content is checked by its reader).
    pub fn producer_state_snapshot(&self) -> Option<Vec<u8>> {
        self.dir.read(checkpoint::PRODUCER_STATE_FILE).ok()
    }

    /// Saves a producer-state snapshot atomically.
    pub fn save_producer_state_snapshot(&self, bytes: &[u8]) -> Result<(), LogError> {
        checkpoint::write_atomic(&self.dir, checkpoint::PRODUCER_STATE_FILE, bytes)?;
        Ok(())
    }

    /// OffsetsForLeaderEpoch (KIP-101/279): the largest epoch at or below `epoch` and
    /// where it ended (the next epoch's start, or the LEO for the latest); (-1, -1) if
    /// unknown. Below the earliest epoch: (`epoch`, earliest start), as Kafka answers.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epoch_cache
            .end_offset_for(epoch, self.log_end_offset())
    }

    /// Flushes, writes indexes and checkpoints, then the clean-shutdown marker.
    pub fn close(mut self) -> Result<(), LogError> {
        self.close_in_place()
    }

    /// [`Log::close`] for owners that keep the `Log` behind a lock. Should the log be
    /// written again, the first write removes the marker, so it stays truthful.
    pub fn close_in_place(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.active.seal();
        for seg in self.sealed.values_mut() {
            seg.write_indexes()?;
        }
        self.active.write_indexes()?;
        self.recovery_point = self.log_end_offset();
        self.persist_recovery_point()?;
        self.persist_log_start()?;
        self.persist_epochs()?;
        // Written last: its presence promises that everything above is complete.
        checkpoint::write_atomic(&self.dir, recovery::CLEAN_SHUTDOWN_FILE, b"")?;
        self.marked_clean = true;
        Ok(())
    }

    /// Before data changes: a clean-shutdown marker would make the next open trust
    /// indexes that no longer describe the data.
    fn mark_dirty(&mut self) -> Result<(), LogError> {
        if self.marked_clean {
            self.dir.remove(recovery::CLEAN_SHUTDOWN_FILE)?;
            self.dir.sync()?;
            self.marked_clean = false;
        }
        Ok(())
    }

    /// Removes the partition directory and everything in it.
    pub fn delete(self) -> Result<(), LogError> {
        let dir = self.dir.clone();
        drop(self);
        dir.remove_all()?;
        Ok(())
    }

    /// All segments, oldest first.
    fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.sealed.values().chain(std::iter::once(&self.active))
    }

    /// Segments from the one that may hold `offset` on.
    fn segments_from(&self, offset: i64) -> impl Iterator<Item = &Segment> {
        let from = if offset >= self.active.base_offset() {
            self.active.base_offset()
        } else {
            self.sealed
                .range(..=offset)
                .next_back()
                .map_or(i64::MIN, |(base, _)| *base)
        };
        self.sealed
            .range(from..)
            .map(|(_, s)| s)
            .chain(std::iter::once(&self.active))
    }

    /// Base offset of the oldest segment.
    fn first_base_offset(&self) -> i64 {
        self.sealed
            .keys()
            .next()
            .copied()
            .unwrap_or(self.active.base_offset())
    }

    fn observe_clock(&mut self, now_ms: i64) {
        self.clock_ms = self.clock_ms.max(now_ms);
    }

    /// Seals the active segment and starts a new one at the LEO (no-op when empty).
    fn roll(&mut self, now_ms: i64) -> Result<(), LogError> {
        if self.active.size() == 0 {
            return Ok(());
        }
        self.mark_dirty()?;
        self.active.seal();
        self.active.write_indexes()?;
        let fresh = Segment::create(&self.dir, self.log_end_offset(), now_ms)?;
        let sealed = mem::replace(&mut self.active, fresh);
        self.sealed.insert(sealed.base_offset(), sealed);
        // The new file's directory entry must be durable before data in it is reported
        // flushed; fsyncing the file alone does not cover its name.
        self.dir.sync()?;
        Ok(())
    }

    fn persist_log_start(&self) -> Result<(), LogError> {
        checkpoint::write_offset(&self.dir, LOG_START_FILE, self.log_start_offset)?;
        Ok(())
    }

    fn persist_epochs(&self) -> Result<(), LogError> {
        checkpoint::write_epochs(&self.dir, self.epoch_cache.entries())?;
        Ok(())
    }

    fn persist_recovery_point(&mut self) -> Result<(), LogError> {
        checkpoint::write_offset(&self.dir, RECOVERY_POINT_FILE, self.recovery_point)?;
        self.checkpointed_recovery_point = self.recovery_point;
        self.recovery_checkpoint_at = Some(Instant::now());
        Ok(())
    }

    /// Moves the log start forward to `offset` (never back), checkpointing it and
    /// trimming the epoch cache.
    fn advance_log_start(&mut self, offset: i64) -> Result<(), LogError> {
        if offset <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = offset;
        self.persist_log_start()?;
        if self.epoch_cache.truncate_from_start(offset) {
            self.persist_epochs()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn clean_close_and_reopen_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topic-0");
        let config = LogConfig {
            segment_bytes: 2_000,
            index_interval_bytes: 300,
            ..LogConfig::default()
        };
        let mut log = Log::open(&path, config.clone(), 0).unwrap();
        log.assign_epoch(3, 0).unwrap();
        for i in 0..30 {
            log.append_as_leader(&mut simple_batch(10 * i, 4, 50), 3, 10 * i)
                .unwrap();
        }
        let before = log.read(0, usize::MAX, i64::MAX, true).unwrap();
        let segments = log.segment_count();
        assert!(segments > 3);
        log.close().unwrap();
        assert!(path.join(recovery::CLEAN_SHUTDOWN_FILE).exists());

        let log = Log::open(&path, config, 1_000).unwrap();
        assert!(
            !path.join(recovery::CLEAN_SHUTDOWN_FILE).exists(),
            "marker is consumed"
        );
        assert_eq!(log.log_end_offset(), 120);
        assert!(!log.recovery_cut());
        assert_eq!(log.recovery_point(), 120);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(log.read(0, usize::MAX, i64::MAX, true).unwrap(), before);
        assert_eq!(
            log.leader_epoch_cache().entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 0
            }]
        );
        assert_eq!(log.end_offset_for_epoch(3), (3, 120));
        log.delete().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn divergent_follower_reconciles_through_leader_epochs() {
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut a = Log::open(da.path(), LogConfig::default(), 0).unwrap();
        let mut b = Log::open(db.path(), LogConfig::default(), 0).unwrap();
        // Epoch 1: A leads, B replicates three batches, then A appends two B never sees.
        a.assign_epoch(1, 0).unwrap();
        for _ in 0..3 {
            a.append_as_leader(&mut simple_batch(1, 3, 8), 1, 1)
                .unwrap();
        }
        b.append_as_follower(&a.read(0, usize::MAX, i64::MAX, false).unwrap(), 1)
            .unwrap();
        for _ in 0..2 {
            a.append_as_leader(&mut simple_batch(2, 3, 8), 1, 2)
                .unwrap();
        }
        // Epoch 2: B leads from its LEO (9) and appends.
        b.assign_epoch(2, b.log_end_offset()).unwrap();
        for _ in 0..2 {
            b.append_as_leader(&mut simple_batch(3, 2, 8), 2, 3)
                .unwrap();
        }
        assert_eq!(b.end_offset_for_epoch(2), (2, 13));
        // A returns as follower: where did its latest epoch end on the leader?
        let latest = a.leader_epoch_cache().latest_epoch().unwrap();
        let (epoch, end) = b.end_offset_for_epoch(latest);
        assert_eq!((epoch, end), (1, 9));
        a.truncate_to(end.min(a.log_end_offset())).unwrap();
        assert_eq!(a.log_end_offset(), 9);
        let missing = b
            .read(a.log_end_offset(), usize::MAX, i64::MAX, false)
            .unwrap();
        a.append_as_follower(&missing, 4).unwrap();
        assert_eq!(
            a.read(0, usize::MAX, i64::MAX, false).unwrap(),
            b.read(0, usize::MAX, i64::MAX, false).unwrap()
        );
        assert_eq!(a.leader_epoch_cache(), b.leader_epoch_cache());
        assert_eq!(
            a.end_offset_for_epoch(0),
            (0, 0),
            "below the earliest epoch"
        );
        assert_eq!(
            a.end_offset_for_epoch(3),
            (-1, -1),
            "above the latest epoch"
        );
    }

    #[test]
    fn log_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Log>();
        check::<FlushJob>();
    }
}
