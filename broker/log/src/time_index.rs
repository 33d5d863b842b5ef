//! Sparse time index of one segment: max timestamp so far -> offset of the batch that
//! first reached it.
//!
//! Entries are appended at the offset index's intervals (and when a segment is sealed)
//! only when the segment's max timestamp grows, so both fields increase. The `.timeindex`
//! file holds 12-byte big-endian entries: timestamp i64, relative offset u32.

/// Size of one encoded entry.
pub(crate) const TIME_INDEX_ENTRY_LEN: usize = 12;

/// One time index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeIndexEntry {
    /// Largest timestamp in the segment up to and including the batch below.
    pub timestamp: i64,
    /// Base offset of that batch minus the segment base offset.
    pub relative_offset: u32,
}

/// The time index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TimeIndex {
    base_offset: i64,
    entries: Vec<TimeIndexEntry>,
}

impl TimeIndex {
    /// An empty index for a segment starting at `base_offset`.
    pub(crate) fn new(base_offset: i64) -> Self {
        TimeIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// Adds (`timestamp`, `offset`) if the timestamp grows and the offset does not shrink.
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> bool {
        let Some(Ok(relative_offset)) = offset.checked_sub(self.base_offset).map(u32::try_from)
        else {
            return false;
        };
        if let Some(last) = self.entries.last() {
            if timestamp <= last.timestamp || relative_offset < last.relative_offset {
                return false;
            }
        }
        self.entries.push(TimeIndexEntry {
            timestamp,
            relative_offset,
        });
        true
    }

    /// Offset of the last entry whose timestamp is strictly below `timestamp`: every
    /// batch before that one has a smaller max timestamp, so a scan may start there.
    pub(crate) fn lookup_before(&self, timestamp: i64) -> Option<i64> {
        let n = self.entries.partition_point(|e| e.timestamp < timestamp);
        n.checked_sub(1)
            .and_then(|i| self.entries.get(i))
            .map(|e| self.base_offset + e.relative_offset as i64)
    }

    /// The last entry as (timestamp, absolute offset).
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|e| (e.timestamp, self.base_offset + e.relative_offset as i64))
    }

    /// Drops entries pointing at batches at or above `offset`.
    pub(crate) fn truncate_from(&mut self, offset: i64) {
        self.entries
            .retain(|e| self.base_offset + (e.relative_offset as i64) < offset);
    }

    /// The `.timeindex` file bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * TIME_INDEX_ENTRY_LEN);
        for e in &self.entries {
            out.extend_from_slice(&e.timestamp.to_be_bytes());
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
        }
        out
    }

    /// Parses a `.timeindex` file; entries must increase and point below `next_offset`.
    pub(crate) fn decode(base_offset: i64, bytes: &[u8], next_offset: i64) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(TIME_INDEX_ENTRY_LEN) {
            return Err(format!(
                "length {} is not a multiple of {TIME_INDEX_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = TimeIndex::new(base_offset);
        for c in bytes.chunks_exact(TIME_INDEX_ENTRY_LEN) {
            let timestamp = i64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            let relative_offset = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            let offset = base_offset + relative_offset as i64;
            if offset >= next_offset {
                return Err(format!(
                    "entry offset {offset} at or past the segment end {next_offset}"
                ));
            }
            if !index.maybe_append(timestamp, offset) {
                return Err(format!(
                    "entry ({timestamp}, {relative_offset}) out of order"
                ));
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookup_before_is_strict() {
        let mut t = TimeIndex::new(10);
        assert!(t.maybe_append(100, 10));
        assert!(t.maybe_append(200, 15));
        assert!(!t.maybe_append(200, 20), "timestamps must grow");
        assert_eq!(t.lookup_before(100), None);
        assert_eq!(t.lookup_before(101), Some(10));
        assert_eq!(t.lookup_before(200), Some(10));
        assert_eq!(t.lookup_before(201), Some(15));
        t.truncate_from(15);
        assert_eq!(t.last(), Some((100, 10)));
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(base in 0i64..1_000_000, start in -1_000i64..1_000_000, steps in proptest::collection::vec((1i64..10_000, 0u32..1000), 0..50)) {
            let mut t = TimeIndex::new(base);
            let (mut ts, mut off) = (start, base);
            for (d_ts, d_off) in steps {
                ts += d_ts;
                off += d_off as i64;
                prop_assert!(t.maybe_append(ts, off));
            }
            let bytes = t.encode();
            let back = TimeIndex::decode(base, &bytes, off + 1).unwrap();
            prop_assert_eq!(back, t);
        }
    }
}
