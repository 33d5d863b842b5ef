//! Walking the batch headers of a segment file without reading the records.

use super::batch::{frame_size, BatchHeader, HEADER_LEN};
use super::error::LogError;
use super::storage::StorageFile;

/// Header reader over a file region, buffered so that scanning small batches does not
/// cost one syscall each.
pub(crate) struct HeaderScanner<'a> {
    file: &'a dyn StorageFile,
    pos: u64,
    end: u64,
    buf: Vec<u8>,
    buf_start: u64,
}

const SCAN_CHUNK: u64 = 8 * 1024;

impl<'a> HeaderScanner<'a> {
    /// Scans batch headers in `file` from `pos` up to `end`.
    pub(crate) fn new(file: &'a dyn StorageFile, pos: u64, end: u64) -> Self {
        HeaderScanner {
            file,
            pos,
            end,
            buf: Vec::new(),
            buf_start: 0,
        }
    }

    /// Position of the next batch.
    pub(crate) fn position(&self) -> u64 {
        self.pos
    }

    /// The next batch's (position, header); `None` at the end; an error for a torn or
    /// garbled header (the position then stays on it).
    pub(crate) fn next_header(&mut self) -> Result<Option<(u64, BatchHeader)>, LogError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let remaining = self.end - self.pos;
        let want = remaining.min(HEADER_LEN as u64);
        let buffered_end = self.buf_start + self.buf.len() as u64;
        if self.pos < self.buf_start || self.pos + want > buffered_end {
            let len = remaining.min(SCAN_CHUNK) as usize;
            self.buf.resize(len, 0);
            self.file.read_exact_at(&mut self.buf, self.pos)?;
            self.buf_start = self.pos;
        }
        let from = (self.pos - self.buf_start) as usize;
        let prefix = self.buf.get(from..from + want as usize).unwrap_or_default();
        let size = frame_size(prefix, remaining, self.pos)?;
        let header = BatchHeader::parse(prefix)?;
        let at = self.pos;
        self.pos += size as u64;
        Ok(Some((at, header)))
    }
}
