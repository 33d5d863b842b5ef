//! Opening an existing segment: trusting its index files, or recovering it by
//! validating every batch and cutting a torn tail.

use std::io;
use std::sync::Arc;

use tracing::warn;

use super::{file_name, LoadMode, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::batch::{BatchHeader, CRC_COVERAGE_START};
use crate::error::LogError;
use crate::index::OffsetIndex;
use crate::scanner::HeaderScanner;
use crate::storage::{LogDir, OpenMode, StorageFile};
use crate::time_index::TimeIndex;

impl Segment {
    /// Opens an existing segment. Returns it and whether recovery cut bytes off its end.
    /// `on_batch` sees every batch validated by a `Recover` scan.
    pub(crate) fn open(
        dir: &LogDir,
        base_offset: i64,
        mode: LoadMode,
        interval: u32,
        now_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(Segment, bool), LogError> {
        let file = dir.open(&file_name(base_offset, LOG_EXT), OpenMode::Existing)?;
        let size = file.len()?;
        let modified_ms = file.modified_ms();
        let mut seg = Segment::empty(dir, base_offset, file, now_ms);
        seg.size = size;
        if let Some(ms) = modified_ms {
            seg.last_modified_ms = ms;
        }
        if mode == LoadMode::Trusted && seg.load_trusted()? {
            return Ok((seg, false));
        }
        let truncated = seg.recover(interval, on_batch)?;
        Ok((seg, truncated))
    }

    /// Loads index files and scans the tail; `false` when anything does not add up.
    fn load_trusted(&mut self) -> io::Result<bool> {
        let dir = self.dir.clone();
        let read = |ext: &str| dir.read_if_present(&file_name(self.base_offset, ext));
        let (Some(index), Some(time_index)) = (read(INDEX_EXT)?, read(TIME_INDEX_EXT)?) else {
            warn!(
                segment = self.base_offset,
                "index files missing; rebuilding"
            );
            return Ok(false);
        };
        let decoded = OffsetIndex::decode(self.base_offset, &index, self.size).and_then(|i| {
            TimeIndex::decode(self.base_offset, &time_index, i64::MAX).map(|t| (i, t))
        });
        match decoded {
            Ok((i, t)) => (self.index, self.time_index) = (i, t),
            Err(reason) => {
                warn!(segment = self.base_offset, %reason, "index files unusable; rebuilding");
                return Ok(false);
            }
        }
        let tail = HeaderScanner::new(&*self.file, 0, self.size)
            .next_header()
            .map(|first| self.first_batch_timestamp = first.map_or(-1, |(_, h)| h.max_timestamp))
            .and_then(|()| self.rebuild_tail_state());
        match tail {
            Ok(()) => {}
            Err(LogError::Io(e)) => return Err(e),
            Err(e) => {
                warn!(segment = self.base_offset, error = %e, "segment does not match its index; recovering");
                return Ok(false);
            }
        }
        if self
            .time_index
            .last()
            .is_some_and(|(_, o)| o >= self.next_offset)
        {
            warn!(
                segment = self.base_offset,
                "time index points past the segment end; rebuilding"
            );
            return Ok(false);
        }
        self.indexes_on_disk = true;
        Ok(true)
    }

    /// Scans every batch with its CRC, rebuilding the indexes; cuts the file at the first
    /// torn, garbled or out-of-order batch. Returns whether it cut anything.
    fn recover(
        &mut self,
        interval: u32,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<bool, LogError> {
        let file = Arc::clone(&self.file);
        let file_len = file.len()?;
        let now = self.created_ms;
        *self = Segment {
            last_modified_ms: self.last_modified_ms,
            ..Segment::empty(&self.dir, self.base_offset, Arc::clone(&file), now)
        };
        let mut scanner = HeaderScanner::new(&*file, 0, file_len);
        let mut buf = Vec::new();
        let valid_end = loop {
            let at = scanner.position();
            let (pos, h) = match scanner.next_header() {
                Ok(Some(found)) => found,
                Ok(None) => break at,
                Err(LogError::Io(e)) => return Err(e.into()),
                Err(e) => {
                    warn!(segment = self.base_offset, position = at, error = %e, "truncating torn or garbled tail");
                    break at;
                }
            };
            if h.base_offset < self.next_offset || !self.fits(&h) {
                warn!(
                    segment = self.base_offset,
                    position = pos,
                    base_offset = h.base_offset,
                    expected = self.next_offset,
                    "truncating at out-of-order batch"
                );
                break pos;
            }
            let crc = crc_of(
                &*file,
                pos + CRC_COVERAGE_START,
                pos + h.size() as u64,
                &mut buf,
            )?;
            if crc != h.crc {
                warn!(
                    segment = self.base_offset,
                    position = pos,
                    base_offset = h.base_offset,
                    "truncating at batch with a CRC mismatch"
                );
                break pos;
            }
            self.track(&h, pos, interval);
            on_batch(&h);
        };
        if valid_end < file_len {
            file.set_len(valid_end)?;
        }
        Ok(valid_end < file_len)
    }
}

/// CRC-32C of `file[start..end]`, streamed through `buf` so a huge (possibly garbage)
/// length does not turn into a huge allocation.
fn crc_of(file: &dyn StorageFile, start: u64, end: u64, buf: &mut Vec<u8>) -> io::Result<u32> {
    const CHUNK: u64 = 64 * 1024;
    let mut crc = 0u32;
    let mut pos = start;
    while pos < end {
        let len = (end - pos).min(CHUNK) as usize;
        buf.resize(len, 0);
        file.read_exact_at(buf, pos)?;
        crc = crc32c::crc32c_append(crc, buf);
        pos += len as u64;
    }
    Ok(crc)
}
