//! Reads: Fetch byte ranges (whole batches, no re-encoding) and ListOffsets lookups.

use std::sync::Arc;

use bytes::Bytes;
use tracing::warn;

use super::batch::RecordBatchView;
use super::error::LogError;
use super::scanner::HeaderScanner;
use super::segment::Segment;
use super::storage::StorageFile;
use super::Log;

/// What a read needs of the log, taken under the log's lock without any I/O: the
/// segment files that may hold the range, each with the position to start scanning at and
/// its size at that moment. [`ReadView::read`] then does the I/O with no lock held (on a
/// blocking thread, for a caller on an async runtime).
///
/// Segment files only grow while a view exists, except when a log is truncated (a new
/// follower) or a segment deleted (retention): a deleted file stays readable through its
/// open handle, and bytes a truncation removed are caught as a short read or a bad
/// header, which the view reports as an error rather than return.
#[derive(Debug, Clone)]
pub struct ReadView {
    offset: i64,
    max_offset: i64,
    segments: Vec<SegmentView>,
}

#[derive(Debug, Clone)]
struct SegmentView {
    file: Arc<dyn StorageFile>,
    /// Where the batch holding `offset` (or any later one) may start.
    scan_from: u64,
    /// The segment's size when the view was taken.
    end: u64,
}

impl Log {
    /// Whole batches from the one holding `offset`, at most `max_bytes` in total — except
    /// that with `min_one_batch` the first batch comes whole even when larger (KIP-74).
    /// Stops before any batch whose base offset is at or above `max_offset` (e.g. the
    /// high watermark). Empty at the LEO; `OffsetOutOfRange` outside
    /// `[log_start_offset, log_end_offset]`.
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<Bytes, LogError> {
        self.read_view(offset, max_offset, max_bytes)?
            .read(max_bytes, min_one_batch)
    }

    /// The view [`Log::read`] reads through: segments that may hold batches from `offset`
    /// below `max_offset`, enough for `max_bytes` (the first batch of the range is always
    /// covered). No I/O.
    pub fn read_view(
        &self,
        offset: i64,
        max_offset: i64,
        max_bytes: usize,
    ) -> Result<ReadView, LogError> {
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let mut segments = Vec::new();
        let mut covered = 0u64;
        if offset < leo {
            for seg in self.segments_from(offset) {
                if seg.base_offset() >= max_offset {
                    break;
                }
                let scan_from = if seg.base_offset() <= offset {
                    seg.index_position(offset)
                } else {
                    0
                };
                let end = seg.size();
                if scan_from >= end {
                    continue;
                }
                covered += end - scan_from;
                segments.push(SegmentView {
                    file: Arc::clone(seg.file()),
                    scan_from,
                    end,
                });
                // The index entry may lie up to an index interval before `offset`.
                if covered
                    >= (max_bytes as u64).saturating_add(self.config.index_interval_bytes as u64)
                {
                    break;
                }
            }
        }
        Ok(ReadView {
            offset,
            max_offset,
            segments,
        })
    }
}

impl ReadView {
    /// Reads the batches: whole batches holding offsets from the view's `offset` on,
    /// below its `max_offset`, at most `max_bytes` (the first whole even when larger, with
    /// `min_one_batch`). Blocking file I/O.
    pub fn read(&self, max_bytes: usize, min_one_batch: bool) -> Result<Bytes, LogError> {
        let mut ranges: Vec<(&SegmentView, u64, u64)> = Vec::new();
        let mut total = 0usize;
        let mut done = false;
        for seg in &self.segments {
            if done {
                break;
            }
            let mut scanner = HeaderScanner::new(&*seg.file, seg.scan_from, seg.end);
            let mut start = None;
            let mut end = seg.scan_from;
            while let Some((pos, h)) = scanner.next_header()? {
                if h.last_offset() < self.offset {
                    // Before the wanted offset (the index entry is sparse).
                    end = pos + h.size() as u64;
                    continue;
                }
                let size = h.size();
                let fits = total.saturating_add(size) <= max_bytes;
                if h.base_offset >= self.max_offset || !(fits || total == 0 && min_one_batch) {
                    done = true;
                    break;
                }
                start.get_or_insert(pos);
                total += size;
                end = pos + size as u64;
                if total >= max_bytes {
                    done = true;
                    break;
                }
            }
            if let Some(start) = start {
                ranges.push((seg, start, end));
            }
        }
        let mut out = vec![0u8; total];
        let mut at = 0usize;
        for (seg, start, end) in ranges {
            let len = (end - start) as usize;
            let buf = out.get_mut(at..at + len).ok_or_else(|| {
                LogError::CorruptRecord("segment changed during read".to_string())
            })?;
            seg.file.read_exact_at(buf, start)?;
            at += len;
        }
        Ok(Bytes::from(out))
    }

    /// Bytes the view may read at most (the segments' sizes from where it starts).
    pub fn upper_bound(&self) -> u64 {
        self.segments.iter().map(|s| s.end - s.scan_from).sum()
    }
}

impl Log {
    /// ListOffsets by time: the first offset whose batch max timestamp is at or above
    /// `timestamp`, with that batch's max timestamp; `None` if no batch qualifies.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>, LogError> {
        let log_start = self.log_start_offset;
        for seg in self.segments() {
            // Segment maxima grow with the log's prefix only loosely, so each segment
            // is checked, but one whose max is below the target cannot hold the answer.
            if seg.max_timestamp() < timestamp || seg.next_offset() <= log_start {
                continue;
            }
            let from = seg.time_lookup(timestamp).max(log_start);
            let (_, position) = seg.index_lookup(from);
            let mut scanner = seg.scanner(position);
            while let Some((_, h)) = scanner.next_header()? {
                if h.max_timestamp >= timestamp && h.last_offset() >= log_start {
                    return Ok(Some((h.base_offset.max(log_start), h.max_timestamp)));
                }
            }
        }
        Ok(None)
    }

    /// KIP-734 (ListOffsets -3): (offset, timestamp) of the record with the largest
    /// timestamp, the first such one; `None` for a log without timestamps.
    pub fn max_timestamp_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<&Segment> = None;
        for seg in self.segments() {
            if seg.size() > 0 && best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp()) {
                best = Some(seg);
            }
        }
        let seg = best.filter(|s| s.max_timestamp() >= 0 && s.offset_of_max_timestamp() >= 0)?;
        let batch_offset = seg.offset_of_max_timestamp();
        let exact = exact_offset_of_max(seg, batch_offset, seg.max_timestamp()).unwrap_or_else(|e| {
            warn!(error = %e, batch_offset, "cannot read the max-timestamp batch; answering with its base offset");
            None
        });
        Some((exact.unwrap_or(batch_offset), seg.max_timestamp()))
    }
}

/// Walks the records of the batch at `batch_offset` for the first one stamped
/// `timestamp`. Only uncompressed CreateTime batches can be walked without decoding;
/// for the others the batch's base offset stands in (Kafka decompresses here).
fn exact_offset_of_max(
    seg: &Segment,
    batch_offset: i64,
    timestamp: i64,
) -> Result<Option<i64>, LogError> {
    let Some((pos, h)) = seg.find_batch(batch_offset)? else {
        return Ok(None);
    };
    if h.compression() != 0 || h.is_log_append_time() {
        return Ok(None);
    }
    let mut buf = vec![0u8; h.size()];
    seg.read_exact_at(&mut buf, pos)?;
    let walked = RecordBatchView::new(&buf)?.validate()?;
    Ok(walked
        .filter(|w| w.max_timestamp == timestamp)
        .map(|w| h.base_offset + w.offset_delta_of_max as i64))
}

#[cfg(test)]
mod tests {
    use crate::test_util::*;
    use crate::{Log, LogConfig, LogError};

    #[test]
    fn a_view_reads_what_was_there_when_it_was_taken_without_the_log() {
        let (_dir, mut log, _) = filled();
        let all = log.read(0, usize::MAX, i64::MAX, true).unwrap();
        let view = log.read_view(0, i64::MAX, usize::MAX).unwrap();
        let partial = log.read_view(7, 12, usize::MAX).unwrap();
        // Appends after the view was taken are not in it.
        log.append_as_leader(&mut simple_batch(5_000, 3, 40), 0, 5_000)
            .unwrap();
        assert_eq!(view.read(usize::MAX, true).unwrap(), all);
        // From inside a batch (offset 7 is in 6..8), up to the batch at 12 excluded.
        let got = partial.read(usize::MAX, true).unwrap();
        assert_eq!(batch_offsets(&got), vec![(6, 8), (9, 11)]);
        // Budget and the first-batch rule, as Log::read.
        assert_eq!(batch_offsets(&view.read(1, true).unwrap()), vec![(0, 2)]);
        assert!(view.read(1, false).unwrap().is_empty());
        // A truncation under a view makes its read fail cleanly, not return garbage.
        let view = log.read_view(24, i64::MAX, usize::MAX).unwrap();
        log.truncate_to(24).unwrap();
        match view.read(usize::MAX, true) {
            Err(LogError::Io(_) | LogError::CorruptRecord(_)) => {}
            other => panic!("read over truncated bytes: {other:?}"),
        }
    }

    /// 10 batches of 3 records (offsets 3i..3i+2, timestamps 100i..100i+2), 4 segments.
    fn filled() -> (tempfile::TempDir, Log, usize) {
        let dir = tempfile::tempdir().unwrap();
        let len = simple_batch(0, 3, 40).len();
        let config = LogConfig {
            segment_bytes: 3 * len as u64,
            index_interval_bytes: 1,
            ..LogConfig::default()
        };
        let mut log = Log::open(dir.path(), config, 0).unwrap();
        for i in 0..10 {
            log.append_as_leader(&mut simple_batch(100 * i, 3, 40), 0, 100 * i)
                .unwrap();
        }
        assert_eq!(log.segment_count(), 4);
        (dir, log, len)
    }

    #[test]
    fn read_returns_whole_batches_within_limits() {
        let (_dir, log, len) = filled();
        let r = log.read(4, usize::MAX, i64::MAX, false).unwrap();
        assert_eq!(
            batch_offsets(&r)[0],
            (3, 5),
            "a read inside a batch starts at that batch"
        );
        assert_eq!(batch_offsets(&r).len(), 9, "reads cross segments");
        assert_eq!(
            batch_offsets(&log.read(0, 2 * len + 5, i64::MAX, false).unwrap()).len(),
            2
        );
        assert!(log.read(0, len - 1, i64::MAX, false).unwrap().is_empty());
        let one = log.read(0, len - 1, i64::MAX, true).unwrap();
        assert_eq!(
            batch_offsets(&one),
            vec![(0, 2)],
            "KIP-74: first batch even if too big"
        );
        assert_eq!(
            batch_offsets(&log.read(0, 0, i64::MAX, true).unwrap()).len(),
            1
        );
        assert_eq!(
            batch_offsets(&log.read(0, usize::MAX, 7, false).unwrap()).len(),
            3,
            "max_offset 7 stops before base 9"
        );
        assert!(log.read(7, usize::MAX, 6, true).unwrap().is_empty());
        assert!(
            log.read(30, usize::MAX, i64::MAX, true).unwrap().is_empty(),
            "LEO reads are empty"
        );
        assert!(matches!(
            log.read(31, 10, i64::MAX, true),
            Err(LogError::OffsetOutOfRange {
                offset: 31,
                log_end_offset: 30,
                ..
            })
        ));
        assert!(matches!(
            log.read(-1, 10, i64::MAX, true),
            Err(LogError::OffsetOutOfRange { .. })
        ));
    }

    #[test]
    fn timestamp_lookups() {
        let (_dir, mut log, _) = filled();
        assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((0, 2)));
        assert_eq!(log.offset_for_timestamp(3).unwrap(), Some((3, 102)));
        assert_eq!(log.offset_for_timestamp(502).unwrap(), Some((15, 502)));
        assert_eq!(log.offset_for_timestamp(503).unwrap(), Some((18, 602)));
        assert_eq!(log.offset_for_timestamp(903).unwrap(), None);
        assert_eq!(log.max_timestamp_offset(), Some((29, 902)));
        log.delete_records_before(16).unwrap();
        assert_eq!(
            log.offset_for_timestamp(0).unwrap(),
            Some((16, 502)),
            "never below the log start"
        );
    }

    #[test]
    fn max_timestamp_offset_finds_the_exact_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert_eq!(log.max_timestamp_offset(), None);
        let recs: Vec<TestRecord> = [5, 90, 7, 90]
            .iter()
            .map(|&d| TestRecord {
                timestamp_delta: d,
                ..TestRecord::value(b"x")
            })
            .collect();
        log.append_as_leader(&mut simple_batch(0, 2, 1), 0, 0)
            .unwrap();
        log.append_as_leader(&mut encode_batch(0, 1_000, &recs, 0), 0, 0)
            .unwrap();
        log.append_as_leader(&mut simple_batch(1_050, 2, 1), 0, 0)
            .unwrap();
        assert_eq!(log.max_timestamp_offset(), Some((3, 1_090)));
    }
}
