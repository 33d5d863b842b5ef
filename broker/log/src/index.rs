//! Sparse offset index of one segment: batch base offset -> byte position.
//!
//! Kept in memory as a sorted `Vec`; the `.index` file (8-byte big-endian entries:
//! relative offset u32, position u32) is written when the segment is sealed or the log
//! closes, and read back on a clean open. A lookup gives a position at or before the
//! wanted batch; the caller scans batch headers forward from there.

/// Size of one encoded entry.
pub(crate) const INDEX_ENTRY_LEN: usize = 8;

/// One index entry, relative to the segment's base offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    /// Batch base offset minus the segment base offset.
    pub relative_offset: u32,
    /// Byte position of that batch in the segment file.
    pub position: u32,
}

/// The offset index of one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetIndex {
    base_offset: i64,
    entries: Vec<IndexEntry>,
}

impl OffsetIndex {
    /// An empty index for a segment starting at `base_offset`.
    pub(crate) fn new(base_offset: i64) -> Self {
        OffsetIndex {
            base_offset,
            entries: Vec::new(),
        }
    }

    /// The entries, in increasing order.
    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Adds an entry for the batch at `offset`/`position`; ignored unless both grow and
    /// fit the u32 fields (rolling keeps them in range, so this is a safety net).
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> bool {
        let relative = offset.checked_sub(self.base_offset).map(u32::try_from);
        let (Some(Ok(relative_offset)), Ok(position)) = (relative, u32::try_from(position)) else {
            return false;
        };
        if let Some(last) = self.entries.last() {
            if relative_offset <= last.relative_offset || position <= last.position {
                return false;
            }
        }
        self.entries.push(IndexEntry {
            relative_offset,
            position,
        });
        true
    }

    /// Largest entry at or below `offset` as (absolute offset, position); the segment
    /// start when none.
    pub(crate) fn lookup(&self, offset: i64) -> (i64, u64) {
        let n = self
            .entries
            .partition_point(|e| self.base_offset + e.relative_offset as i64 <= offset);
        match n.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(e) => (
                self.base_offset + e.relative_offset as i64,
                e.position as u64,
            ),
            None => (self.base_offset, 0),
        }
    }

    /// The last entry as (absolute offset, position).
    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.entries.last().map(|e| {
            (
                self.base_offset + e.relative_offset as i64,
                e.position as u64,
            )
        })
    }

    /// Drops entries for batches at or above `offset`.
    pub(crate) fn truncate_from(&mut self, offset: i64) {
        let keep = self
            .entries
            .partition_point(|e| self.base_offset + (e.relative_offset as i64) < offset);
        self.entries.truncate(keep);
    }

    /// The `.index` file bytes.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * INDEX_ENTRY_LEN);
        for e in &self.entries {
            out.extend_from_slice(&e.relative_offset.to_be_bytes());
            out.extend_from_slice(&e.position.to_be_bytes());
        }
        out
    }

    /// Parses an `.index` file; entries must strictly increase and lie below
    /// `segment_size` (anything else means a stale or torn file, to be rebuilt).
    pub(crate) fn decode(
        base_offset: i64,
        bytes: &[u8],
        segment_size: u64,
    ) -> Result<Self, String> {
        if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
            return Err(format!(
                "length {} is not a multiple of {INDEX_ENTRY_LEN}",
                bytes.len()
            ));
        }
        let mut index = OffsetIndex::new(base_offset);
        for chunk in bytes.chunks_exact(INDEX_ENTRY_LEN) {
            let relative_offset = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let position = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if position as u64 >= segment_size {
                return Err(format!(
                    "position {position} beyond segment size {segment_size}"
                ));
            }
            if !index.append(base_offset + relative_offset as i64, position as u64) {
                return Err(format!(
                    "entry ({relative_offset}, {position}) out of order"
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
    fn lookup_finds_floor_entry() {
        let mut idx = OffsetIndex::new(100);
        assert_eq!(idx.lookup(150), (100, 0));
        assert!(idx.append(110, 4000));
        assert!(idx.append(130, 9000));
        assert!(!idx.append(120, 9500), "offsets must grow");
        assert_eq!(idx.lookup(109), (100, 0));
        assert_eq!(idx.lookup(110), (110, 4000));
        assert_eq!(idx.lookup(129), (110, 4000));
        assert_eq!(idx.lookup(1_000), (130, 9000));
        idx.truncate_from(130);
        assert_eq!(idx.last(), Some((110, 4000)));
    }

    #[test]
    fn decode_rejects_torn_and_unordered_files() {
        assert!(OffsetIndex::decode(0, &[0u8; 7], 100).is_err());
        let mut idx = OffsetIndex::new(0);
        idx.append(5, 50);
        let bytes = idx.encode();
        assert!(
            OffsetIndex::decode(0, &bytes, 40).is_err(),
            "position past the end"
        );
        let mut twice = bytes.clone();
        twice.extend(&bytes);
        assert!(OffsetIndex::decode(0, &twice, 100).is_err());
    }

    proptest! {
        #[test]
        fn decode_encode_round_trip(base in 0i64..1_000_000, steps in proptest::collection::vec((1u32..1000, 1u32..100_000), 0..50)) {
            let mut idx = OffsetIndex::new(base);
            let (mut off, mut pos) = (base, 0u64);
            for (d_off, d_pos) in steps {
                off += d_off as i64;
                pos += d_pos as u64;
                prop_assert!(idx.append(off, pos));
            }
            let bytes = idx.encode();
            prop_assert_eq!(bytes.len(), idx.entries().len() * INDEX_ENTRY_LEN);
            let back = OffsetIndex::decode(base, &bytes, pos + 1).unwrap();
            prop_assert_eq!(back, idx);
        }
    }
}
