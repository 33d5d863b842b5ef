//! Appends: the leader validates, assigns offsets and stamps batches; a follower stores
//! the leader's batches as they are. Both roll the active segment first when needed.

use super::batch::{self, BatchHeader, RecordBatchMut, RecordsSummary};
use super::config::TimestampType;
use super::error::LogError;
use super::recovery::MAX_BASE_OFFSET;
use super::Log;

/// What an append stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first record appended.
    pub first_offset: i64,
    /// Offset of the last record appended (`first_offset - 1` for an empty append).
    pub last_offset: i64,
    /// Largest batch timestamp appended (-1 if none).
    pub max_timestamp: i64,
    /// Offset of the first record with `max_timestamp` (batch base offset where the
    /// records were not walked: compressed batches, follower appends).
    pub offset_of_max_timestamp: i64,
    /// The broker time stamped into the batches under LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Records appended.
    pub record_count: u32,
    /// Bytes appended.
    pub bytes: usize,
}

impl AppendInfo {
    fn empty(first_offset: i64, bytes: usize) -> Self {
        AppendInfo {
            first_offset,
            last_offset: first_offset - 1,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            log_append_time: -1,
            record_count: 0,
            bytes,
        }
    }

    fn observe(&mut self, timestamp: i64, offset: i64) {
        if timestamp > self.max_timestamp {
            self.max_timestamp = timestamp;
            self.offset_of_max_timestamp = offset;
        }
    }
}

/// A validated batch waiting for its offsets.
struct Planned {
    start: usize,
    header: BatchHeader,
    records: Option<RecordsSummary>,
}

impl Log {
    /// Leader append: validates every batch of `records` (concatenated v2 batches),
    /// assigns offsets from the LEO, stamps `leader_epoch` (and LogAppendTime when so
    /// configured) in place, rolls the segment by size or age, and appends. Nothing is
    /// written unless every batch validates.
    pub fn append_as_leader(
        &mut self,
        records: &mut [u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.observe_clock(now_ms);
        let plan = self.validate_for_leader(records, now_ms)?;
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        let first_offset = self.log_end_offset();
        let mut info = AppendInfo::empty(first_offset, records.len());
        if log_append_time {
            info.log_append_time = now_ms;
        }
        let mut next = first_offset;
        let mut placed = Vec::with_capacity(plan.len());
        for p in plan {
            let slice = records
                .get_mut(p.start..p.start + p.header.size())
                .ok_or_else(|| LogError::CorruptRecord("batch moved during append".to_string()))?;
            let mut batch = RecordBatchMut::new(slice)?;
            batch.set_base_offset(next);
            batch.set_partition_leader_epoch(leader_epoch);
            if log_append_time {
                // Every record now carries the append time; the first one is "the"
                // record with the largest timestamp, as Kafka reports it.
                batch.set_log_append_time(now_ms);
                info.observe(now_ms, first_offset);
            } else {
                // As Kafka, the header's max timestamp is rewritten from the records (when
                // they are readable) so a producer's header cannot mislead the time index,
                // and a CreateTime topic stores CreateTime batches.
                let (max_ts, offset_of_max) = match p.records {
                    Some(walked) => (
                        walked.max_timestamp,
                        next + walked.offset_delta_of_max as i64,
                    ),
                    None => (p.header.max_timestamp, next),
                };
                if max_ts != p.header.max_timestamp || p.header.is_log_append_time() {
                    batch.set_create_time(max_ts);
                }
                info.observe(max_ts, offset_of_max);
            }
            let header = BatchHeader::parse(slice)?;
            if header.last_offset() >= MAX_BASE_OFFSET {
                return Err(LogError::InvalidOffset(format!(
                    "append would take offsets past {MAX_BASE_OFFSET}"
                )));
            }
            info.record_count = info
                .record_count
                .saturating_add(header.records_count as u32);
            next = header.last_offset() + 1;
            placed.push((p.start, header));
        }
        info.last_offset = next - 1;
        self.mark_dirty()?;
        self.maybe_roll(records.len(), info.last_offset, info.max_timestamp, now_ms)?;
        // Kafka's maybeAssignEpochStartOffset: a leader's first append in a new epoch
        // starts that epoch, even if the partition layer did not assign it.
        if leader_epoch >= 0
            && self
                .epoch_cache
                .latest_epoch()
                .is_none_or(|e| leader_epoch > e)
            && self.epoch_cache.assign(leader_epoch, first_offset)
        {
            self.persist_epochs()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active.append(records, &placed, interval, now_ms)?;
        Ok(info)
    }

    /// Checks every batch before anything is touched.
    fn validate_for_leader(&self, records: &[u8], now_ms: i64) -> Result<Vec<Planned>, LogError> {
        if records.len() > i32::MAX as usize {
            return Err(LogError::MessageTooLarge {
                size: records.len() as u64,
                max: i32::MAX as u64,
            });
        }
        let mut plan = Vec::new();
        let mut iter = batch::batches(records);
        loop {
            let start = iter.position();
            let Some(view) = iter.next().transpose()? else {
                break;
            };
            let size = view.as_bytes().len() as u64;
            let max = self.config.max_message_bytes as u64;
            if size > max {
                return Err(LogError::MessageTooLarge { size, max });
            }
            let header = view.header();
            if header.is_control() {
                return Err(LogError::InvalidRecord(
                    "clients may not write control batches (transaction markers are the broker's)"
                        .to_string(),
                ));
            }
            if header.is_transactional() {
                return Err(LogError::InvalidRecord(
                    "a transactional batch needs a transactional producer, and this broker has no transactions yet"
                        .to_string(),
                ));
            }
            let walked = view.validate_with(self.config.keys_required)?;
            if self.config.timestamp_type == TimestampType::CreateTime {
                let header = view.header();
                let (min, max) = match &walked {
                    Some(w) if w.min_timestamp <= w.max_timestamp => {
                        (w.min_timestamp, w.max_timestamp)
                    }
                    _ => (header.base_timestamp, header.max_timestamp),
                };
                self.check_timestamps(min, max, now_ms)?;
            }
            plan.push(Planned {
                start,
                header: *view.header(),
                records: walked,
            });
        }
        if plan.is_empty() {
            return Err(LogError::InvalidRecord(
                "produce request holds no record batches".to_string(),
            ));
        }
        Ok(plan)
    }

    /// KIP-937: CreateTime timestamps must lie within `[now - before.max.ms, now +
    /// after.max.ms]`; -1 (no timestamp) is allowed, as Kafka does.
    fn check_timestamps(&self, min: i64, max: i64, now_ms: i64) -> Result<(), LogError> {
        let before = self.config.timestamp_before_max_ms;
        let after = self.config.timestamp_after_max_ms;
        if min >= 0 && now_ms.saturating_sub(min) > before {
            return Err(LogError::InvalidTimestamp(format!(
                "timestamp {min} is {} ms behind the broker's clock ({now_ms}); the topic allows {before} ms (message.timestamp.before.max.ms)",
                now_ms.saturating_sub(min)
            )));
        }
        if max >= 0 && max.saturating_sub(now_ms) > after {
            return Err(LogError::InvalidTimestamp(format!(
                "timestamp {max} is {} ms ahead of the broker's clock ({now_ms}); the topic allows {after} ms (message.timestamp.after.max.ms)",
                max.saturating_sub(now_ms)
            )));
        }
        Ok(())
    }

    /// Follower append: stores the leader's batches unchanged. The first must start at
    /// the LEO and offsets must increase; CRCs are checked. Size limits are not applied,
    /// as in Kafka: a follower must accept whatever its leader accepted.
    pub fn append_as_follower(
        &mut self,
        records: &[u8],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        self.observe_clock(now_ms);
        let leo = self.log_end_offset();
        let mut info = AppendInfo::empty(leo, records.len());
        let mut placed: Vec<(usize, BatchHeader)> = Vec::new();
        let mut iter = batch::batches(records);
        let mut expected = leo;
        loop {
            let start = iter.position();
            let Some(view) = iter.next().transpose()? else {
                break;
            };
            view.validate_crc()?;
            let h = *view.header();
            // A compacted leader's log has gaps where whole batches were cleaned away:
            // the next batch may start past the LEO, never before it.
            if placed.is_empty() && h.base_offset < leo {
                return Err(LogError::InvalidOffset(format!(
                    "follower append starts at offset {} but the log end offset is {leo}",
                    h.base_offset
                )));
            }
            if h.base_offset < expected {
                return Err(LogError::InvalidOffset(format!(
                    "batch at offset {} overlaps the previous one ending at {}",
                    h.base_offset,
                    expected - 1
                )));
            }
            info.observe(h.max_timestamp, h.base_offset);
            info.record_count = info
                .record_count
                .saturating_add(h.records_count.max(0) as u32);
            expected = h.last_offset().saturating_add(1);
            placed.push((start, h));
        }
        if placed.is_empty() {
            return Ok(info);
        }
        info.last_offset = expected - 1;
        if info.last_offset > MAX_BASE_OFFSET {
            return Err(LogError::InvalidOffset(format!(
                "append would take offsets past {MAX_BASE_OFFSET}"
            )));
        }
        self.mark_dirty()?;
        self.maybe_roll(records.len(), info.last_offset, info.max_timestamp, now_ms)?;
        if info.last_offset - self.active.base_offset() > u32::MAX as i64 {
            return Err(LogError::InvalidOffset(format!(
                "offsets {}..={} span more than a segment can index",
                info.first_offset, info.last_offset
            )));
        }
        let mut epochs_changed = false;
        for (_, h) in &placed {
            let epoch = h.partition_leader_epoch;
            if epoch >= 0 && self.epoch_cache.latest_epoch().is_none_or(|e| epoch > e) {
                epochs_changed |= self.epoch_cache.assign(epoch, h.base_offset);
            }
        }
        if epochs_changed {
            self.persist_epochs()?;
        }
        let interval = self.config.index_interval_bytes;
        self.active.append(records, &placed, interval, now_ms)?;
        Ok(info)
    }

    /// Rolls before an append of `bytes` ending at `last_offset` when the active segment
    /// would grow past `segment.bytes`, is older than `segment.ms` (measured as Kafka
    /// does, from its first batch's timestamp to the incoming `max_timestamp`), or could
    /// not index the offsets.
    fn maybe_roll(
        &mut self,
        bytes: usize,
        last_offset: i64,
        max_timestamp: i64,
        now_ms: i64,
    ) -> Result<(), LogError> {
        let active = &self.active;
        if active.size() == 0 {
            return Ok(());
        }
        let too_big = active.size() + bytes as u64 > self.config.effective_segment_bytes();
        let too_old = active.roll_age_ms(max_timestamp, now_ms) > self.config.segment_ms;
        let offsets_overflow = last_offset - active.base_offset() > u32::MAX as i64;
        if too_big || too_old || offsets_overflow {
            self.roll(now_ms)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::batch::{batches, RecordBatchMut};
    use crate::test_util::*;
    use crate::{EpochEntry, Log, LogConfig, LogError, TimestampType};

    fn open(config: LogConfig) -> (tempfile::TempDir, Log) {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), config, 0).unwrap();
        (dir, log)
    }

    #[test]
    fn create_time_outside_the_topic_window_is_refused() {
        let (_dir, mut log) = open(LogConfig {
            timestamp_before_max_ms: 1_000,
            timestamp_after_max_ms: 1_000,
            ..LogConfig::default()
        });
        let now = 100_000;
        for (ts, ok) in [
            (98_999, false),
            (99_000, true),
            (100_990, true),
            (101_500, false),
        ] {
            // Two records: timestamps ts and ts + 1.
            let got = log.append_as_leader(&mut simple_batch(ts, 2, 4), 0, now);
            match got {
                Ok(_) => assert!(ok, "timestamp {ts} accepted"),
                Err(LogError::InvalidTimestamp(m)) => {
                    assert!(!ok, "timestamp {ts} refused: {m}");
                    assert!(m.contains("message.timestamp."), "{m}");
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
        assert_eq!(log.log_end_offset(), 4, "refused batches store nothing");
        // Kafka 4's default refuses only the far future; LogAppendTime ignores the window.
        let (_dir, mut log) = open(LogConfig::default());
        assert!(log
            .append_as_leader(&mut simple_batch(0, 1, 4), 0, now)
            .is_ok());
        assert!(log
            .append_as_leader(&mut simple_batch(now + 3_600_001, 1, 4), 0, now)
            .is_err());
        let (_dir, mut log) = open(LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            timestamp_after_max_ms: 0,
            ..LogConfig::default()
        });
        assert!(log
            .append_as_leader(&mut simple_batch(now * 2, 1, 4), 0, now)
            .is_ok());
    }

    #[test]
    fn leader_assigns_offsets_and_stamps_epoch() {
        let (_dir, mut log) = open(LogConfig::default());
        let mut two = simple_batch(100, 3, 10);
        two.extend(simple_batch(200, 2, 10));
        let info = log.append_as_leader(&mut two, 4, 1_000).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset, info.record_count),
            (0, 4, 5)
        );
        assert_eq!((info.max_timestamp, info.offset_of_max_timestamp), (201, 4));
        assert_eq!(info.log_append_time, -1);
        let info = log
            .append_as_leader(&mut simple_batch(50, 1, 10), 4, 1_000)
            .unwrap();
        assert_eq!((info.first_offset, info.last_offset), (5, 5));
        let all = log.read(0, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(batch_offsets(&all), vec![(0, 2), (3, 4), (5, 5)]);
        for b in batches(&all) {
            let b = b.unwrap();
            assert_eq!(b.header().partition_leader_epoch, 4);
            b.validate().unwrap();
        }
        assert_eq!(
            log.leader_epoch_cache().entries(),
            &[EpochEntry {
                epoch: 4,
                start_offset: 0
            }]
        );
    }

    #[test]
    fn log_append_time_is_stamped() {
        let (_dir, mut log) = open(LogConfig {
            timestamp_type: TimestampType::LogAppendTime,
            ..LogConfig::default()
        });
        let info = log
            .append_as_leader(&mut simple_batch(5, 3, 10), 0, 777)
            .unwrap();
        assert_eq!(
            (
                info.log_append_time,
                info.max_timestamp,
                info.offset_of_max_timestamp
            ),
            (777, 777, 0)
        );
        let data = log.read(0, usize::MAX, i64::MAX, false).unwrap();
        let b = batches(&data).next().unwrap().unwrap();
        assert!(b.header().is_log_append_time());
        assert_eq!(b.header().max_timestamp, 777);
        b.validate_crc().unwrap();
    }

    #[test]
    fn bad_batches_are_rejected_with_nothing_written() {
        let (_dir, mut log) = open(LogConfig {
            max_message_bytes: 500,
            ..LogConfig::default()
        });
        log.append_as_leader(&mut simple_batch(1, 1, 10), 0, 1)
            .unwrap();
        let good = simple_batch(1, 2, 10);

        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 1;
        let mut bad_magic = good.clone();
        bad_magic[16] = 1;
        let mut bad_count = good.clone();
        bad_count[57..61].copy_from_slice(&5i32.to_be_bytes());
        RecordBatchMut::new(&mut bad_count)
            .unwrap()
            .set_max_timestamp(2);
        let oversized = simple_batch(1, 2, 400);
        // Transactional (bit 4) and control (bit 5) batches are not a client's to write
        // while the broker has no transactions.
        let with_attributes = |attributes: i16| {
            let records = crate::test_util::encode_records(&[TestRecord::value(b"t")]);
            crate::test_util::batch_with(0, 1, 1, attributes, records)
        };
        let transactional = with_attributes(0x10);
        let control = with_attributes(0x20);

        type Check = fn(&LogError) -> bool;
        let cases: Vec<(Vec<u8>, Check)> = vec![
            (bad_crc, |e| matches!(e, LogError::CorruptRecord(_))),
            (bad_magic, |e| matches!(e, LogError::UnsupportedMagic(1))),
            (bad_count, |e| matches!(e, LogError::InvalidRecord(_))),
            (
                transactional,
                |e| matches!(e, LogError::InvalidRecord(m) if m.contains("transactional")),
            ),
            (
                control,
                |e| matches!(e, LogError::InvalidRecord(m) if m.contains("control")),
            ),
            (oversized, |e| {
                matches!(e, LogError::MessageTooLarge { max: 500, .. })
            }),
            (good[..good.len() - 4].to_vec(), |e| {
                matches!(e, LogError::CorruptRecord(_))
            }),
        ];
        for (bad, expected) in cases {
            // A good batch first: it must not be written either.
            let mut records = good.clone();
            records.extend(bad);
            let err = log.append_as_leader(&mut records, 0, 1).unwrap_err();
            assert!(expected(&err), "unexpected error {err}");
            assert_eq!(log.log_end_offset(), 1);
            assert_eq!(log.size_bytes(), simple_batch(1, 1, 10).len() as u64);
        }
        let err = log.append_as_leader(&mut [], 0, 1).unwrap_err();
        assert!(matches!(err, LogError::InvalidRecord(_)), "{err}");
    }

    #[test]
    fn follower_appends_at_leo_and_learns_epochs() {
        let (_dir, mut leader) = open(LogConfig::default());
        leader
            .append_as_leader(&mut simple_batch(1, 3, 10), 1, 1)
            .unwrap();
        leader
            .append_as_leader(&mut simple_batch(2, 3, 10), 2, 1)
            .unwrap();
        let data = leader.read(0, usize::MAX, i64::MAX, false).unwrap();

        let (_dir2, mut follower) = open(LogConfig {
            max_message_bytes: 10,
            ..LogConfig::default()
        });
        let info = follower.append_as_follower(&data, 1).unwrap();
        assert_eq!(
            (info.first_offset, info.last_offset, info.record_count),
            (0, 5, 6)
        );
        assert_eq!(follower.log_end_offset(), 6);
        // Batches from before the LEO overlap what the follower holds.
        let err = follower
            .append_as_follower(&data[simple_batch(1, 3, 10).len()..], 1)
            .unwrap_err();
        assert!(matches!(err, LogError::InvalidOffset(_)), "{err}");
        assert_eq!(
            follower.leader_epoch_cache().entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 3
                }
            ]
        );
        assert_eq!(follower.read(0, usize::MAX, i64::MAX, false).unwrap(), data);
        let empty = follower.append_as_follower(&[], 1).unwrap();
        assert_eq!((empty.first_offset, empty.last_offset), (6, 5));
    }

    #[test]
    fn rolls_by_size_and_by_age() {
        let batch_len = simple_batch(0, 2, 50).len() as u64;
        let (_dir, mut log) = open(LogConfig {
            segment_bytes: batch_len * 3,
            segment_ms: 1_000,
            ..LogConfig::default()
        });
        for _ in 0..3 {
            log.append_as_leader(&mut simple_batch(0, 2, 50), 0, 0)
                .unwrap();
        }
        assert_eq!(log.segment_count(), 1, "exactly full is not over");
        log.append_as_leader(&mut simple_batch(0, 2, 50), 0, 0)
            .unwrap();
        assert_eq!(log.segment_count(), 2);
        // Age: batch timestamps 1_000 ms past the segment's first batch are not enough...
        log.append_as_leader(&mut simple_batch(999, 2, 50), 0, 999)
            .unwrap();
        assert_eq!(log.segment_count(), 2);
        // ...more than segment.ms is.
        log.append_as_leader(&mut simple_batch(1_001, 2, 50), 0, 1_002)
            .unwrap();
        assert_eq!(log.segment_count(), 3);
        assert_eq!(log.log_end_offset(), 12);
    }
}
