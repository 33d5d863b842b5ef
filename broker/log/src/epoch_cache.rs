//! Leader epoch cache (Kafka's `LeaderEpochFileCache`): which leader epoch began at which
//! offset. Followers use it through OffsetsForLeaderEpoch (KIP-101, KIP-279) to find
//! where their log diverges from the leader's. The `Log` persists it after each change.

use tracing::warn;

/// One leader epoch and the first offset written in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// First offset appended under that epoch.
    pub start_offset: i64,
}

/// Sequence of epochs with strictly increasing epochs and non-decreasing start offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

/// Epoch returned when none is known.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Offset returned when none is known.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

impl LeaderEpochCache {
    /// A cache holding `entries` (taken as already ordered, e.g. from the checkpoint).
    pub fn from_entries(entries: Vec<EpochEntry>) -> Self {
        let mut cache = LeaderEpochCache::default();
        for e in entries {
            cache.assign(e.epoch, e.start_offset);
        }
        cache
    }

    /// All entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset`; returns whether anything changed.
    ///
    /// As in Kafka, entries that would break monotonicity (an epoch at or above
    /// `epoch`, or a start offset at or above `start_offset`) are dropped first: the new
    /// assignment is the authoritative one.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        if let Some(latest) = self.entries.last() {
            if latest.epoch == epoch && latest.start_offset <= start_offset {
                return false;
            }
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        if self.entries.len() != before {
            warn!(
                epoch,
                start_offset,
                removed = before - self.entries.len(),
                "leader epoch assignment dropped conflicting newer entries"
            );
        }
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Drops entries starting at or after `end_offset` (after a truncation to it).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Moves the cache's start to `start_offset` (log start moved): entries wholly below
    /// it go, and the epoch covering it now starts there.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self
            .entries
            .partition_point(|e| e.start_offset <= start_offset);
        let Some(keep_from) = covering.checked_sub(1) else {
            return false;
        };
        let changed = keep_from > 0 || self.entries[keep_from].start_offset != start_offset;
        self.entries.drain(..keep_from);
        if let Some(first) = self.entries.first_mut() {
            first.start_offset = start_offset;
        }
        changed
    }

    /// Drops everything.
    pub(crate) fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// OffsetsForLeaderEpoch answer for `requested`: the largest known epoch at or below
    /// it and where that epoch ended (the next epoch's start, or `log_end_offset` for the
    /// latest). (-1, -1) when the cache is empty or `requested` is above every epoch.
    ///
    /// A request below the earliest known epoch gets (`requested`, earliest start
    /// offset), as Kafka answers, so the follower truncates to where known history
    /// begins instead of keeping a possibly divergent prefix.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        let undefined = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        let Some(latest) = self.entries.last() else {
            return undefined;
        };
        if requested < 0 {
            return undefined;
        }
        if requested == latest.epoch {
            return (latest.epoch, log_end_offset);
        }
        // First entry with a higher epoch: where `requested`'s era ended.
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let Some(next) = self.entries.get(higher) else {
            return undefined;
        };
        match higher.checked_sub(1).and_then(|i| self.entries.get(i)) {
            Some(floor) => (floor.epoch, next.start_offset),
            None => (requested, next.start_offset),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        LeaderEpochCache::from_entries(
            entries
                .iter()
                .map(|&(epoch, start_offset)| EpochEntry {
                    epoch,
                    start_offset,
                })
                .collect(),
        )
    }

    #[test]
    fn end_offsets_follow_kafka() {
        let c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert_eq!(c.end_offset_for(6, 40), (6, 40));
        assert_eq!(c.end_offset_for(3, 40), (3, 25));
        assert_eq!(
            c.end_offset_for(4, 40),
            (3, 25),
            "unknown epoch maps to the floor epoch"
        );
        assert_eq!(c.end_offset_for(2, 40), (1, 10));
        assert_eq!(c.end_offset_for(7, 40), (-1, -1));
        assert_eq!(
            c.end_offset_for(0, 40),
            (0, 0),
            "below earliest: requested epoch, earliest start"
        );
        assert_eq!(LeaderEpochCache::default().end_offset_for(1, 5), (-1, -1));
    }

    #[test]
    fn assign_keeps_monotonic() {
        let mut c = cache(&[(1, 0), (3, 10)]);
        assert!(!c.assign(3, 12), "same epoch, later offset: no change");
        assert!(c.assign(3, 8), "same epoch, earlier offset replaces");
        assert_eq!(
            c.entries().last(),
            Some(&EpochEntry {
                epoch: 3,
                start_offset: 8
            })
        );
        assert!(c.assign(2, 5), "older epoch drops newer entries");
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 2,
                    start_offset: 5
                }
            ]
        );
    }

    #[test]
    fn truncation_from_both_ends() {
        let mut c = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert!(c.truncate_from_end(25));
        assert_eq!(c.latest_epoch(), Some(3));
        assert!(c.truncate_from_start(12));
        assert_eq!(
            c.entries(),
            &[EpochEntry {
                epoch: 3,
                start_offset: 12
            }]
        );
        assert!(
            !c.truncate_from_start(5),
            "nothing below the first entry to move"
        );
    }
}
