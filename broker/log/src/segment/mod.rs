//! One segment: a `.log` file of batches, named by its base offset, with its offset and
//! time indexes kept in memory.
//!
//! Writes go through `write_all_at` (pwrite) and reads through `read_exact_at` (pread),
//! so the file has no cursor and can be read through `&self` while another thread holds
//! a shared handle to fsync it. All file access goes through the storage seam. `load.rs` opens existing segments (trust or recover).

use std::io;
use std::sync::Arc;

use crate::batch::BatchHeader;
use crate::checkpoint::write_replace;
use crate::error::LogError;
use crate::index::OffsetIndex;
use crate::scanner::HeaderScanner;
use crate::storage::{LogDir, OpenMode, StorageFile};
use crate::time_index::TimeIndex;

mod load;
pub(crate) use load::Cut;

/// Extension of segment data files.
pub(crate) const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_EXT: &str = "timeindex";

/// `<base offset, 20 digits>.<ext>`, Kafka's naming, so files sort by offset.
pub(crate) fn file_name(base_offset: i64, ext: &str) -> String {
    format!("{base_offset:020}.{ext}")
}

/// How much of a segment's on-disk state `open` may believe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadMode {
    /// Data is known durable: load index files, scan only the tail past the last entry.
    Trusted,
    /// Data may be torn: validate every batch's CRC and truncate at the first bad one.
    Recover,
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    dir: LogDir,
    base_offset: i64,
    file: Arc<dyn StorageFile>,
    size: u64,
    next_offset: i64,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// Largest batch max timestamp, -1 (Kafka's NO_TIMESTAMP) when none.
    max_timestamp: i64,
    /// Base offset of the first batch that reached `max_timestamp`.
    offset_of_max_timestamp: i64,
    /// First batch's max timestamp, what time-based rolling measures from (as Kafka).
    first_batch_timestamp: i64,
    /// Clock at creation or open, the roll fallback for batches without timestamps.
    created_ms: i64,
    /// Clock at the last append (or file mtime), the retention fallback without timestamps.
    last_modified_ms: i64,
    bytes_since_index: u64,
    /// Whether `.index`/`.timeindex` on disk match the memory copies.
    indexes_on_disk: bool,
}

impl Segment {
    /// A segment with no batches over `file` (a new one, or one the cleaner writes).
    pub(crate) fn empty(
        dir: &LogDir,
        base_offset: i64,
        file: Arc<dyn StorageFile>,
        now_ms: i64,
    ) -> Segment {
        Segment {
            dir: dir.clone(),
            base_offset,
            file,
            size: 0,
            next_offset: base_offset,
            index: OffsetIndex::new(base_offset),
            time_index: TimeIndex::new(base_offset),
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            first_batch_timestamp: -1,
            created_ms: now_ms,
            last_modified_ms: now_ms,
            bytes_since_index: 0,
            indexes_on_disk: false,
        }
    }

    /// Creates a new empty segment, replacing any leftover files of the same name.
    pub(crate) fn create(dir: &LogDir, base_offset: i64, now_ms: i64) -> io::Result<Segment> {
        let file = dir.open(&file_name(base_offset, LOG_EXT), OpenMode::CreateTruncate)?;
        let mut seg = Segment::empty(dir, base_offset, file, now_ms);
        seg.remove_index_files()?;
        Ok(seg)
    }

    /// Re-derives end offset, max timestamp and index spacing from the last index entry
    /// on, relying on the time index's last entry for everything before it.
    fn rebuild_tail_state(&mut self) -> Result<(), LogError> {
        let (indexed_offset, start) = self.index.last().unwrap_or((self.base_offset, 0));
        (self.max_timestamp, self.offset_of_max_timestamp) =
            self.time_index.last().unwrap_or((-1, -1));
        self.next_offset = self.base_offset;
        self.bytes_since_index = self.size - start;
        let mut scanner = HeaderScanner::new(&*self.file, start, self.size);
        let mut expected = indexed_offset;
        while let Some((pos, h)) = scanner.next_header()? {
            let misplaced = if pos == start && start > 0 {
                h.base_offset != indexed_offset
            } else {
                h.base_offset < expected
            };
            if misplaced || !self.fits(&h) {
                return Err(LogError::CorruptRecord(format!(
                    "batch at position {pos} has base offset {}, expected {expected} or more",
                    h.base_offset
                )));
            }
            if h.max_timestamp > self.max_timestamp {
                (self.max_timestamp, self.offset_of_max_timestamp) =
                    (h.max_timestamp, h.base_offset);
            }
            expected = h.last_offset().saturating_add(1);
            self.next_offset = expected;
        }
        if self.size == 0 {
            self.first_batch_timestamp = -1;
        }
        Ok(())
    }

    /// Whether a batch's offsets fit this segment's u32 relative offsets.
    fn fits(&self, h: &BatchHeader) -> bool {
        h.base_offset >= self.base_offset && h.last_offset() - self.base_offset <= u32::MAX as i64
    }

    /// Advances the in-memory state over a batch written at `pos`.
    fn track(&mut self, h: &BatchHeader, pos: u64, interval: u32) {
        if pos == 0 {
            self.first_batch_timestamp = h.max_timestamp;
        }
        if h.max_timestamp > self.max_timestamp {
            (self.max_timestamp, self.offset_of_max_timestamp) = (h.max_timestamp, h.base_offset);
        }
        if self.bytes_since_index > interval as u64 {
            self.index.append(h.base_offset, pos);
            self.time_index
                .maybe_append(self.max_timestamp, self.offset_of_max_timestamp);
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += h.size() as u64;
        self.next_offset = h.last_offset().saturating_add(1);
        self.size = pos + h.size() as u64;
        self.indexes_on_disk = false;
    }

    /// Appends already validated batches; `batches` gives each one's position within
    /// `bytes` and its (final) header.
    pub(crate) fn append(
        &mut self,
        bytes: &[u8],
        batches: &[(usize, BatchHeader)],
        interval: u32,
        now_ms: i64,
    ) -> io::Result<()> {
        // One write for the whole append; state only moves once it has succeeded, so a
        // failed write leaves bytes past `size` that the next append overwrites.
        self.file.write_all_at(bytes, self.size)?;
        let start = self.size;
        for (rel, h) in batches {
            self.track(h, start + *rel as u64, interval);
        }
        self.last_modified_ms = now_ms;
        Ok(())
    }

    /// The first batch whose last offset is at or above `offset`, as (position, header).
    /// The file position the offset index gives for `offset`: the start of a batch at
    /// or before the one holding it (in memory, no I/O).
    pub(crate) fn index_position(&self, offset: i64) -> u64 {
        self.index.lookup(offset).1
    }

    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>, LogError> {
        let (_, start) = self.index.lookup(offset);
        let mut scanner = self.scanner(start);
        while let Some((pos, h)) = scanner.next_header()? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
        }
        Ok(None)
    }

    /// Cuts the segment before the batch holding `offset` (batch boundary); returns the
    /// segment's new end offset.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<i64, LogError> {
        let Some((pos, h)) = self.find_batch(offset)? else {
            return Ok(self.next_offset);
        };
        self.file.set_len(pos)?;
        self.size = pos;
        self.index.truncate_from(h.base_offset);
        self.time_index.truncate_from(h.base_offset);
        self.rebuild_tail_state()?;
        // Index files on disk may describe the cut bytes; a later open must not trust them.
        self.remove_index_files()?;
        Ok(self.next_offset)
    }

    /// Adds the final time index entry, as Kafka does when a segment stops being active.
    pub(crate) fn seal(&mut self) {
        if self
            .time_index
            .maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        {
            self.indexes_on_disk = false;
        }
    }

    /// Writes `.index` and `.timeindex` (fsynced, renamed into place) unless current.
    pub(crate) fn write_indexes(&mut self) -> io::Result<()> {
        if self.indexes_on_disk {
            return Ok(());
        }
        write_replace(
            &self.dir,
            &file_name(self.base_offset, INDEX_EXT),
            &self.index.encode(),
        )?;
        write_replace(
            &self.dir,
            &file_name(self.base_offset, TIME_INDEX_EXT),
            &self.time_index.encode(),
        )?;
        self.indexes_on_disk = true;
        Ok(())
    }

    fn remove_index_files(&mut self) -> io::Result<()> {
        self.indexes_on_disk = false;
        for ext in [INDEX_EXT, TIME_INDEX_EXT] {
            self.dir
                .remove_if_present(&file_name(self.base_offset, ext))?;
        }
        Ok(())
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(self) -> io::Result<()> {
        remove_segment_files(&self.dir, self.base_offset)
    }

    /// Calls `f` with every batch header in the segment.
    pub(crate) fn for_each_header(&self, f: &mut dyn FnMut(&BatchHeader)) -> Result<(), LogError> {
        let mut scanner = self.scanner(0);
        while let Some((_, h)) = scanner.next_header()? {
            f(&h);
        }
        Ok(())
    }

    /// A header scanner from `pos` to the end of the segment's data.
    pub(crate) fn scanner(&self, pos: u64) -> HeaderScanner<'_> {
        HeaderScanner::new(&*self.file, pos, self.size)
    }

    /// Reads `buf.len()` bytes at `pos`.
    pub(crate) fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, pos)
    }

    /// Shared handle for fsyncing without the log's lock.
    pub(crate) fn file(&self) -> &Arc<dyn StorageFile> {
        &self.file
    }

    /// Offset of the segment's first possible record (its name).
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the segment's last batch.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    /// Bytes of batch data.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Largest batch max timestamp, -1 when none.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.max_timestamp
    }

    /// Base offset of the batch that first reached `max_timestamp`.
    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        self.offset_of_max_timestamp
    }

    /// Time index lookup: where a scan for `timestamp` may start.
    pub(crate) fn time_lookup(&self, timestamp: i64) -> i64 {
        self.time_index
            .lookup_before(timestamp)
            .unwrap_or(self.base_offset)
    }

    /// Offset index lookup: (offset, position) at or before `offset`.
    pub(crate) fn index_lookup(&self, offset: i64) -> (i64, u64) {
        self.index.lookup(offset)
    }

    /// How long the segment has been filling, for `segment.ms`: measured on `reference_ms`
    /// (incoming batch timestamp or clock) from the first batch's timestamp, or from
    /// creation when batches carry none.
    pub(crate) fn roll_age_ms(&self, reference_ms: i64, now_ms: i64) -> i64 {
        if self.first_batch_timestamp >= 0 {
            reference_ms.saturating_sub(self.first_batch_timestamp)
        } else {
            now_ms.saturating_sub(self.created_ms)
        }
    }

    /// Clock at the last write (or the file's mtime when opened).
    pub(crate) fn last_modified_ms(&self) -> i64 {
        self.last_modified_ms
    }

    /// Sets the last-write time (a cleaned segment takes the newest of those it replaces).
    pub(crate) fn set_last_modified_ms(&mut self, ms: i64) {
        self.last_modified_ms = ms;
    }

    /// The timestamp retention compares against: largest record time, else last write.
    pub(crate) fn retention_timestamp(&self) -> i64 {
        if self.max_timestamp >= 0 {
            self.max_timestamp
        } else {
            self.last_modified_ms
        }
    }
}

/// Removes the data and index files of the segment at `base_offset` (absent ones are fine).
pub(crate) fn remove_segment_files(dir: &LogDir, base_offset: i64) -> io::Result<()> {
    // Indexes first: a crash in between leaves a log file, which recovery re-indexes.
    for ext in [INDEX_EXT, TIME_INDEX_EXT, LOG_EXT] {
        dir.remove_if_present(&file_name(base_offset, ext))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::batches;
    use crate::test_util::simple_batch;

    fn append_batches(seg: &mut Segment, first_offset: i64, n: usize) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        let mut offset = first_offset;
        for i in 0..n {
            let mut b = simple_batch(1_000 + i as i64, 3, 100);
            crate::batch::RecordBatchMut::new(&mut b)
                .unwrap()
                .set_base_offset(offset);
            let h = *batches(&b).next().unwrap().unwrap().header();
            out.push((offset, seg.size()));
            seg.append(&b, &[(0, h)], 500, 0).unwrap();
            offset = h.last_offset() + 1;
        }
        out
    }

    #[test]
    fn append_index_and_find() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(&LogDir::local(dir.path()), 10, 0).unwrap();
        let placed = append_batches(&mut seg, 10, 20);
        assert_eq!(seg.next_offset(), 70);
        assert!(!seg.index.entries().is_empty());
        for (offset, pos) in &placed {
            for o in *offset..*offset + 3 {
                let (p, h) = seg.find_batch(o).unwrap().unwrap();
                assert_eq!((p, h.base_offset), (*pos, *offset));
            }
        }
        assert!(seg.find_batch(70).unwrap().is_none());
        assert_eq!(seg.max_timestamp(), 1_021);
    }

    #[test]
    fn trusted_reopen_matches_and_truncate_cuts_at_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = Segment::create(&LogDir::local(dir.path()), 0, 0).unwrap();
        append_batches(&mut seg, 0, 20);
        seg.seal();
        seg.write_indexes().unwrap();
        let (index, time_index, max) = (
            seg.index.clone(),
            seg.time_index.clone(),
            seg.max_timestamp(),
        );
        drop(seg);
        let (mut seg, cut) = Segment::open(
            &LogDir::local(dir.path()),
            0,
            LoadMode::Trusted,
            500,
            0,
            &mut |_| {},
        )
        .unwrap();
        assert!(!cut.is_cut());
        assert!(seg.indexes_on_disk, "trusted load must not rebuild");
        assert_eq!(
            (
                &seg.index,
                &seg.time_index,
                seg.max_timestamp(),
                seg.next_offset()
            ),
            (&index, &time_index, max, 60)
        );

        assert_eq!(
            seg.truncate_to(31).unwrap(),
            30,
            "offset 31 is inside the batch [30, 32]"
        );
        assert_eq!(seg.max_timestamp(), 1_011);
        let (recovered, _) = Segment::open(
            &LogDir::local(dir.path()),
            0,
            LoadMode::Recover,
            500,
            0,
            &mut |_| {},
        )
        .unwrap();
        assert_eq!(recovered.next_offset(), 30);
        assert_eq!(recovered.index, seg.index);
    }
}
