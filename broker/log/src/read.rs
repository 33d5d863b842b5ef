//! Reads: Fetch byte ranges (whole batches, no re-encoding) and ListOffsets lookups.

use bytes::Bytes;
use tracing::warn;

use super::batch::RecordBatchView;
use super::error::LogError;
use super::segment::Segment;
use super::Log;

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
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let mut ranges: Vec<(&Segment, u64, u64)> = Vec::new();
        let mut total = 0usize;
        let mut done = offset == leo;
        for seg in self.segments_from(offset) {
            if done {
                break;
            }
            let Some((start, _)) = seg.find_batch(offset)? else {
                continue;
            };
            let mut end = start;
            let mut scanner = seg.scanner(start);
            while let Some((pos, h)) = scanner.next_header()? {
                let size = h.size();
                let fits = total.saturating_add(size) <= max_bytes;
                if h.base_offset >= max_offset || !(fits || total == 0 && min_one_batch) {
                    done = true;
                    break;
                }
                total += size;
                end = pos + size as u64;
                if total >= max_bytes {
                    done = true;
                    break;
                }
            }
            if end > start {
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
            seg.read_exact_at(buf, start)?;
            at += len;
        }
        Ok(Bytes::from(out))
    }

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
