//! The cleaner's key → latest offset map over the dirty part of a log, bounded in bytes
//! (`log.cleaner.dedupe.buffer.size`). Keys are kept whole, not hashed: Kafka keeps a
//! 16-byte digest per key and accepts that two keys may collide (the older one's latest
//! value then vanishes); an exact map cannot lose a live key.
use std::collections::HashMap;

/// What one entry costs besides its key bytes (the offset, the key's length and the
/// table's own slot), counted against the bound.
const ENTRY_OVERHEAD: usize = 48;

/// Latest offset per key, holding at most `limit` bytes of entries.
#[derive(Debug)]
pub(crate) struct OffsetMap {
    latest: HashMap<Box<[u8]>, i64>,
    bytes: usize,
    limit: usize,
}

impl OffsetMap {
    /// An empty map of at most `limit` bytes.
    pub(crate) fn new(limit: usize) -> Self {
        OffsetMap {
            latest: HashMap::new(),
            bytes: 0,
            limit,
        }
    }

    /// Whether `keys` more keys of `key_bytes` bytes in all would still fit (as if each
    /// were new).
    pub(crate) fn has_room_for(&self, keys: usize, key_bytes: usize) -> bool {
        self.bytes
            .saturating_add(keys.saturating_mul(ENTRY_OVERHEAD))
            .saturating_add(key_bytes)
            <= self.limit
    }

    /// Records that `key` appears at `offset` (offsets come in increasing order, so the
    /// last call for a key names its latest record).
    pub(crate) fn put(&mut self, key: &[u8], offset: i64) {
        match self.latest.get_mut(key) {
            Some(latest) => *latest = offset,
            None => {
                self.bytes += key.len() + ENTRY_OVERHEAD;
                self.latest.insert(key.into(), offset);
            }
        }
    }

    /// The latest offset of `key` in the mapped range.
    pub(crate) fn get(&self, key: &[u8]) -> Option<i64> {
        self.latest.get(key).copied()
    }

    /// Distinct keys mapped.
    pub(crate) fn len(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_and_counts_each_key_once() {
        let mut map = OffsetMap::new(2 * (ENTRY_OVERHEAD + 1));
        assert!(map.has_room_for(2, 2));
        assert!(!map.has_room_for(3, 3));
        map.put(b"a", 1);
        map.put(b"a", 5);
        map.put(b"b", 2);
        assert_eq!(
            (map.get(b"a"), map.get(b"b"), map.get(b"c")),
            (Some(5), Some(2), None)
        );
        assert_eq!(map.len(), 2);
        assert!(!map.has_room_for(1, 1));
        assert!(map.has_room_for(0, 0));
    }
}
