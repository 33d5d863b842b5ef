//! Opening an existing segment: trusting its index files, or recovering it by
//! validating every batch and cutting a torn tail.

use std::io;
use std::sync::Arc;

use tracing::warn;

use super::{file_name, LoadMode, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::batch::{BatchHeader, CRC_COVERAGE_START, LOG_OVERHEAD};
use crate::error::LogError;
use crate::index::OffsetIndex;
use crate::scanner::HeaderScanner;
use crate::storage::{LogDir, OpenMode, StorageFile};
use crate::time_index::TimeIndex;

/// What recovery cut off a segment's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cut {
    /// Nothing: every byte is a valid batch.
    Nothing,
    /// A torn tail: a last batch shorter than it declares, too few bytes for a header,
    /// or zeros (file space whose data never reached the disk). With acks waiting for
    /// fsync, such a batch was never acknowledged.
    Torn,
    /// Complete bytes that do not check out (CRC mismatch, bad header, batches out of
    /// order): data the log held may be gone.
    Garbled,
}

impl Cut {
    /// Whether anything was cut.
    pub(crate) fn is_cut(self) -> bool {
        self != Cut::Nothing
    }
}

/// Whether the bytes at `at` look like a torn tail rather than damage (see [`Cut`]).
fn torn_at(file: &dyn StorageFile, at: u64, file_len: u64) -> io::Result<bool> {
    let remaining = file_len.saturating_sub(at);
    if remaining < LOG_OVERHEAD as u64 {
        return Ok(true);
    }
    let mut head = [0u8; LOG_OVERHEAD];
    file.read_exact_at(&mut head, at)?;
    if head.iter().all(|&b| b == 0) {
        return Ok(true);
    }
    let length = i32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    Ok(length >= 0 && LOG_OVERHEAD as u64 + length as u64 > remaining)
}

impl Segment {
    /// Opens an existing segment. Returns it and what recovery cut off its end.
    /// `on_batch` sees every batch validated by a `Recover` scan.
    pub(crate) fn open(
        dir: &LogDir,
        base_offset: i64,
        mode: LoadMode,
        interval: u32,
        now_ms: i64,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<(Segment, Cut), LogError> {
        let file = dir.open(&file_name(base_offset, LOG_EXT), OpenMode::Existing)?;
        let size = file.len()?;
        let modified_ms = file.modified_ms();
        let mut seg = Segment::empty(dir, base_offset, file, now_ms);
        seg.size = size;
        if let Some(ms) = modified_ms {
            seg.last_modified_ms = ms;
        }
        if mode == LoadMode::Trusted && seg.load_trusted()? {
            return Ok((seg, Cut::Nothing));
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
    /// torn, garbled or out-of-order batch. Returns what it cut.
    fn recover(
        &mut self,
        interval: u32,
        on_batch: &mut dyn FnMut(&BatchHeader),
    ) -> Result<Cut, LogError> {
        let file = Arc::clone(&self.file);
        let file_len = file.len()?;
        let now = self.created_ms;
        *self = Segment {
            last_modified_ms: self.last_modified_ms,
            ..Segment::empty(&self.dir, self.base_offset, Arc::clone(&file), now)
        };
        let mut scanner = HeaderScanner::new(&*file, 0, file_len);
        let mut buf = Vec::new();
        let mut cut = Cut::Garbled;
        let valid_end = loop {
            let at = scanner.position();
            let (pos, h) = match scanner.next_header() {
                Ok(Some(found)) => found,
                Ok(None) => {
                    cut = Cut::Nothing;
                    break at;
                }
                Err(LogError::Io(e)) => return Err(e.into()),
                Err(e) => {
                    warn!(segment = self.base_offset, position = at, error = %e, "truncating torn or garbled tail");
                    if torn_at(&*file, at, file_len)? {
                        cut = Cut::Torn;
                    }
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
            Ok(cut)
        } else {
            Ok(Cut::Nothing)
        }
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
