//! Removing data: retention and DeleteRecords at the front, truncation at the back.
//!
//! Crash ordering: checkpoints that make the log claim less (log start up, recovery
//! point down, epochs cleared) are written before files change; segments are deleted
//! newest first, so an interrupted deletion leaves a consistent prefix.

use std::mem;

use super::error::LogError;
use super::recovery::MAX_BASE_OFFSET;
use super::segment::{remove_segment_files, Segment};
use super::Log;

impl Log {
    /// DeleteRecords: moves the log start to `offset` (the caller checks it against the
    /// high watermark; it must not pass the LEO) and deletes the sealed segments wholly
    /// below it. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        let leo = self.log_end_offset();
        if offset < 0 || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        self.advance_log_start(offset)?;
        let start = self.log_start_offset;
        self.delete_oldest_while(|seg| seg.next_offset() <= start)?;
        Ok(self.log_start_offset)
    }

    /// Retention by time (segment's largest timestamp older than `retention.ms`) and
    /// size (`retention.bytes`): deletes whole segments from the oldest, moving the log
    /// start. Rolls the active segment first when `segment.ms` has passed, or when it is
    /// itself wholly expired (as Kafka does), so that it can go too. Only segments wholly
    /// below `high_watermark` are eligible (as Kafka): what the ISR has not all got yet
    /// is never deleted, whatever its timestamps or the log's size. Returns how many
    /// segments were deleted.
    pub fn enforce_retention(
        &mut self,
        now_ms: i64,
        high_watermark: i64,
    ) -> Result<usize, LogError> {
        self.observe_clock(now_ms);
        if self.active.size() > 0
            && self.active.roll_age_ms(now_ms, now_ms) > self.config.segment_ms
        {
            self.roll(now_ms)?;
        }
        // Leftovers of DeleteRecords interrupted between checkpoint and file deletion.
        let start = self.log_start_offset;
        let mut deleted = self.delete_oldest_while(|seg| seg.next_offset() <= start)?;

        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            let expired = |seg: &Segment| {
                seg.next_offset() <= high_watermark
                    && now_ms.saturating_sub(seg.retention_timestamp()) > retention_ms
            };
            if self.active.size() > 0 && expired(&self.active) && self.sealed.values().all(expired)
            {
                self.roll(now_ms)?;
            }
            deleted += self.delete_oldest_while(expired)?;
        }

        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            deleted += self.delete_oldest_while(|seg| {
                let size = seg.size() as i64;
                let over = excess >= size && seg.next_offset() <= high_watermark;
                if over {
                    excess -= size;
                }
                over
            })?;
        }
        self.advance_log_start(self.first_base_offset())?;
        Ok(deleted)
    }

    /// Deletes sealed segments from the oldest while `pred` holds; the active one stays.
    fn delete_oldest_while(
        &mut self,
        mut pred: impl FnMut(&Segment) -> bool,
    ) -> Result<usize, LogError> {
        let mut deleted = 0;
        while let Some(entry) = self.sealed.first_entry() {
            if !pred(entry.get()) {
                break;
            }
            let seg = entry.remove();
            // The log start must never point into a deleted segment, even after a crash.
            let next_base = self.first_base_offset();
            self.advance_log_start(next_base)?;
            seg.delete_files()?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Truncates so the log ends at `offset`, at a batch boundary: a batch holding
    /// `offset` goes whole, so the LEO may end up at that batch's base offset. Indexes,
    /// epoch cache and recovery point follow. At or past the LEO only epochs starting
    /// there are dropped.
    pub fn truncate_to(&mut self, offset: i64) -> Result<(), LogError> {
        if offset < 0 {
            return Err(LogError::InvalidOffset(format!(
                "cannot truncate to negative offset {offset}"
            )));
        }
        if offset >= self.log_end_offset() {
            // No data to drop, but an epoch that starts at (or after) `offset` holds no
            // record and must go: a follower truncating to the start of its empty latest
            // epoch would otherwise ask the leader about that epoch forever.
            if self.epoch_cache.truncate_from_end(offset) {
                self.persist_epochs()?;
            }
            return Ok(());
        }
        if offset < self.first_base_offset() {
            return self.truncate_fully_and_start_at(offset);
        }
        let containing = if offset >= self.active.base_offset() {
            self.active.base_offset()
        } else {
            self.sealed
                .range(..=offset)
                .next_back()
                .map_or(self.active.base_offset(), |(base, _)| *base)
        };
        self.mark_dirty()?;
        // Everything in the segment holding `offset` may be rewritten: the checkpoint
        // must not vouch for it before it is.
        let durable = self.recovery_point;
        self.lower_recovery_point(containing)?;
        while self.active.base_offset() > offset {
            let Some((_, previous)) = self.sealed.pop_last() else {
                break;
            };
            mem::replace(&mut self.active, previous).delete_files()?;
        }
        let leo = self.active.truncate_to(offset)?;
        // Bytes below the new end were not touched, so what was durable stays durable.
        self.recovery_point = durable.min(leo);
        self.pending_flushes.cap(leo);
        if self.epoch_cache.truncate_from_end(leo) {
            self.persist_epochs()?;
        }
        if self.log_start_offset > leo {
            self.log_start_offset = leo;
            self.persist_log_start()?;
        }
        self.lower_clean_point(leo)?;
        self.dir.sync()?;
        Ok(())
    }

    /// Drops every segment and restarts the log, empty, at `offset` (a follower whose
    /// fetch offset fell below the leader's log start).
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<(), LogError> {
        if !(0..=MAX_BASE_OFFSET).contains(&offset) {
            return Err(LogError::InvalidOffset(format!(
                "cannot restart the log at offset {offset}"
            )));
        }
        self.mark_dirty()?;
        if self.epoch_cache.clear() {
            self.persist_epochs()?;
        }
        self.lower_recovery_point(self.log_start_offset.min(offset))?;
        self.pending_flushes.cap(offset);
        remove_segment_files(&self.dir, self.active.base_offset())?;
        while let Some((_, seg)) = self.sealed.pop_last() {
            seg.delete_files()?;
        }
        self.active = Segment::create(&self.dir, offset, self.clock_ms)?;
        self.log_start_offset = offset;
        self.persist_log_start()?;
        self.recovery_point = offset;
        self.persist_recovery_point()?;
        self.lower_clean_point(offset)?;
        self.dir.sync()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use crate::{EpochEntry, Log, LogConfig, LogError};

    /// One 3-record batch per append, each in its own segment; batch i has timestamps
    /// 1000i..1000i+2 and offsets 3i..3i+2.
    fn one_batch_segments(n: i64, config: LogConfig) -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 1,
                ..config
            },
            0,
        )
        .unwrap();
        for i in 0..n {
            log.append_as_leader(&mut simple_batch(1_000 * i, 3, 20), 0, 1_000 * i)
                .unwrap();
        }
        assert_eq!(log.segment_count() as i64, n);
        (dir, log)
    }

    #[test]
    fn retention_by_time_deletes_old_segments() {
        let (_dir, mut log) = one_batch_segments(
            5,
            LogConfig {
                retention_ms: 2_500,
                ..LogConfig::default()
            },
        );
        // Segment i's largest timestamp is 1000i + 2; at 4_000 those up to i = 1 are > 2_500 ms old.
        assert_eq!(log.enforce_retention(4_000, i64::MAX).unwrap(), 2);
        assert_eq!(log.log_start_offset(), 6);
        assert!(matches!(
            log.read(0, 100, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(
            batch_offsets(&log.read(6, usize::MAX, i64::MAX, true).unwrap())[0],
            (6, 8)
        );
        // Far in the future everything expired: the active segment is rolled and goes too.
        assert_eq!(log.enforce_retention(100_000, i64::MAX).unwrap(), 3);
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (15, 15, 1)
        );
        let info = log
            .append_as_leader(&mut simple_batch(100_000, 1, 1), 0, 100_000)
            .unwrap();
        assert_eq!(info.first_offset, 15);
    }

    #[test]
    fn retention_never_deletes_what_the_high_watermark_has_not_passed() {
        // Five one-batch segments of 3 records: offsets 0-2, 3-5, ..., the last active.
        let (_dir, mut log) = one_batch_segments(
            5,
            LogConfig {
                retention_ms: 1,
                retention_bytes: 0,
                ..LogConfig::default()
            },
        );
        // Everything expired by time and by size, but the ISR has only offsets below 7:
        // the segments ending at 3 and 6 may go, the one holding 6..9 may not.
        assert_eq!(log.enforce_retention(100_000, 7).unwrap(), 2);
        assert_eq!(log.log_start_offset(), 6);
        assert_eq!(log.segment_count(), 3);
        // Nothing replicated: nothing deleted, and the active segment stays.
        assert_eq!(log.enforce_retention(200_000, 6).unwrap(), 0);
        assert_eq!(log.log_end_offset(), 15);
        assert_eq!(log.log_start_offset(), 6);
        // Once the HW reaches the end, even the (rolled) active segment may go.
        log.enforce_retention(300_000, 15).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (15, 15));
    }

    #[test]
    fn retention_by_size_keeps_the_newest() {
        let (_dir, mut log) = one_batch_segments(5, LogConfig::default());
        let seg = log.size_bytes() / 5;
        log.set_config(LogConfig {
            retention_bytes: (2 * seg + 1) as i64,
            ..log.config().clone()
        });
        assert_eq!(
            log.enforce_retention(5_000, i64::MAX).unwrap(),
            2,
            "deletes while still over the limit"
        );
        assert_eq!(log.log_start_offset(), 6);
        assert_eq!(log.size_bytes(), 3 * seg);
    }

    #[test]
    fn segment_ms_rolls_an_idle_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(
            dir.path(),
            LogConfig {
                segment_ms: 100,
                ..LogConfig::default()
            },
            0,
        )
        .unwrap();
        log.append_as_leader(&mut simple_batch(10, 1, 1), 0, 10)
            .unwrap();
        assert_eq!(log.enforce_retention(110, i64::MAX).unwrap(), 0);
        assert_eq!(log.segment_count(), 1);
        log.enforce_retention(111, i64::MAX).unwrap();
        assert_eq!(log.segment_count(), 2);
    }

    #[test]
    fn delete_records_moves_start_and_drops_segments() {
        let (_dir, mut log) = one_batch_segments(4, LogConfig::default());
        log.assign_epoch(0, 0).unwrap();
        assert_eq!(log.delete_records_before(4).unwrap(), 4);
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.delete_records_before(2).unwrap(), 4, "never backwards");
        assert_eq!(
            batch_offsets(&log.read(4, usize::MAX, i64::MAX, true).unwrap())[0],
            (3, 5)
        );
        assert!(matches!(
            log.delete_records_before(13),
            Err(LogError::OffsetOutOfRange { .. })
        ));
        assert_eq!(log.delete_records_before(12).unwrap(), 12);
        assert_eq!(log.segment_count(), 1, "the active segment stays");
        assert_eq!(
            log.leader_epoch_cache().entries(),
            &[EpochEntry {
                epoch: 0,
                start_offset: 12
            }]
        );
        assert!(log.read(12, 100, i64::MAX, true).unwrap().is_empty());
    }

    #[test]
    fn truncate_at_and_inside_batches() {
        let dir = tempfile::tempdir().unwrap();
        let len = simple_batch(0, 3, 20).len() as u64;
        let mut log = Log::open(
            dir.path(),
            LogConfig {
                segment_bytes: 2 * len,
                ..LogConfig::default()
            },
            0,
        )
        .unwrap();
        for (i, epoch) in [1, 1, 2, 2, 3, 3].into_iter().enumerate() {
            log.append_as_leader(&mut simple_batch(i as i64, 3, 20), epoch, 0)
                .unwrap();
        }
        log.flush().unwrap();
        assert_eq!(
            (
                log.log_end_offset(),
                log.segment_count(),
                log.recovery_point()
            ),
            (18, 3, 18)
        );
        log.truncate_to(15).unwrap();
        assert_eq!((log.log_end_offset(), log.recovery_point()), (15, 15));
        log.truncate_to(13).unwrap();
        assert_eq!(
            log.log_end_offset(),
            12,
            "13 is inside [12, 14]: that batch goes whole"
        );
        assert_eq!(
            log.segment_count(),
            3,
            "the emptied segment stays as the active one"
        );
        assert_eq!(log.end_offset_for_epoch(2), (2, 12));
        assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(2));
        log.truncate_to(7).unwrap();
        assert_eq!((log.log_end_offset(), log.segment_count()), (6, 2));
        assert_eq!(log.end_offset_for_epoch(1), (1, 6));
        assert!(log.truncate_to(100).is_ok());
        let info = log
            .append_as_leader(&mut simple_batch(0, 3, 20), 4, 0)
            .unwrap();
        assert_eq!(info.first_offset, 6);
        assert_eq!(
            batch_offsets(&log.read(0, usize::MAX, i64::MAX, true).unwrap()),
            vec![(0, 2), (3, 5), (6, 8)]
        );
    }

    #[test]
    fn truncating_to_the_end_drops_an_empty_latest_epoch() {
        // A leader of epoch 2 that appended nothing, now a follower asked to cut at 3.
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        log.append_as_leader(&mut simple_batch(0, 3, 20), 0, 0)
            .unwrap();
        log.assign_epoch(2, 3).unwrap();
        log.truncate_to(3).unwrap();
        assert_eq!(log.log_end_offset(), 3);
        assert_eq!(log.leader_epoch_cache().latest_epoch(), Some(0));
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(
            log.leader_epoch_cache().latest_epoch(),
            Some(0),
            "the dropped epoch stays dropped after a restart"
        );
    }

    #[test]
    fn truncate_fully_restarts_empty() {
        let (dir, mut log) = one_batch_segments(3, LogConfig::default());
        log.assign_epoch(2, 0).unwrap();
        log.truncate_fully_and_start_at(50).unwrap();
        assert_eq!(
            (
                log.log_start_offset(),
                log.log_end_offset(),
                log.segment_count()
            ),
            (50, 50, 1)
        );
        assert!(log.leader_epoch_cache().entries().is_empty());
        let info = log
            .append_as_follower(
                &{
                    let mut b = simple_batch(1, 2, 5);
                    crate::batch::RecordBatchMut::new(&mut b)
                        .unwrap()
                        .set_base_offset(50);
                    b
                },
                1,
            )
            .unwrap();
        assert_eq!(info.last_offset, 51);
        drop(log);
        let log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!((log.log_start_offset(), log.log_end_offset()), (50, 52));
    }
}
