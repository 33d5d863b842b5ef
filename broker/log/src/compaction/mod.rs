//! Log compaction, Kafka's log cleaner for one log: keep the latest record of every key.
//!
//! A pass works on the *cleanable* sealed segments: oldest first, each wholly below the
//! first uncleanable offset the caller names (the high watermark), below the recovery
//! point (fsynced), and older than `min.compaction.lag.ms`. Those below the clean point
//! (where the last pass stopped, checkpointed in `cleaner-offset-checkpoint`) are the
//! clean section; the rest are dirty. A pass maps every key of the dirty segments to its
//! latest offset (bounded by the dedupe buffer, at segment boundaries), then rewrites the
//! segments up to the mapped end, in groups that fit one segment, dropping:
//! - a record whose key appears again later in the mapped range;
//! - a keyless record (a compacted log cannot hold one; produce refuses them);
//! - a tombstone (null value) in a segment last written before the delete horizon: the
//!   clean section's last write minus `delete.retention.ms`, as Kafka's legacy rule, so a
//!   tombstone survives at least one pass and `delete.retention.ms` after it.
//!
//! What is kept is kept exactly: offsets, timestamps, keys, values and headers, and batch
//! boundaries (see `filter.rs`). The last batch of every segment stays (emptied when all
//! its records go), so every segment still ends where it did and recovery never sees a
//! hole between segments; so does the last batch of each producer in the range (producer
//! state rebuilds from it, as Kafka keeps it).
//!
//! The work is split so the owner's lock is held only for the cheap steps:
//! [`Log::plan_clean`] snapshots the segments (under the lock), [`CleanPlan::run`] reads
//! and writes files (no lock: sealed segments do not change), and
//! [`Log::install_cleaned`] swaps them in (under the lock), first checking that the
//! segments are still the ones it read (retention or truncation may have moved on).
//!
//! # Swap protocol (crash safety)
//! A group's cleaned segment is written as `<base>.cleaned` and fsynced. Installing it:
//! 1. rename `<base>.cleaned` to `<base>.swap`, fsync the directory: the commit point;
//! 2. remove the old segments' files (indexes first), fsync the directory;
//! 3. rename `<base>.swap` to `<base>.log`, write its indexes, fsync the directory.
//!
//! Opening a log removes any `.cleaned` file (the old segments are intact) and completes
//! any `.swap`: it removes the segments the swap covers (base offsets from the swap's base
//! to its end, which is exact since the last batch stays) and renames it. A crash at any
//! point so yields the old segments or the new ones, never a mix with a hole. Readers
//! that took a view before a swap keep reading the old files through their open handles.

mod filter;
mod offset_map;

use std::collections::HashMap;
use std::sync::Arc;

use tracing::warn;

use crate::batch::RecordBatchView;
use crate::checkpoint;
use crate::error::LogError;
use crate::scanner::HeaderScanner;
use crate::segment::{file_name, remove_segment_files, Segment, LOG_EXT};
use crate::storage::{LogDir, OpenMode, StorageFile};
use crate::Log;

use filter::{filter_batch, Filtered};
use offset_map::OffsetMap;

/// Checkpoint of the clean point: where the last pass's key map ended.
pub(crate) const CLEANER_CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// A cleaned segment written but not committed.
pub(crate) const CLEANED_EXT: &str = "cleaned";
/// A cleaned segment committed but not yet renamed into place.
pub(crate) const SWAP_EXT: &str = "swap";

/// Settings of a cleaning pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Most bytes the key map may take (`log.cleaner.dedupe.buffer.size`).
    pub dedupe_buffer_bytes: usize,
    /// How long a tombstone stays after the pass that could first remove it
    /// (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// A segment is cleanable only once its newest record is this old
    /// (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// Most bytes a pass reads and writes per second
    /// (`log.cleaner.io.max.bytes.per.second`; None: unthrottled).
    pub io_max_bytes_per_second: Option<u64>,
}

impl Default for CleanerConfig {
    /// Kafka's defaults: 128 MiB, 1 day, 0.
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: 128 << 20,
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_compaction_lag_ms: 0,
            io_max_bytes_per_second: None,
        }
    }
}

/// Paces a pass's I/O to a byte rate by sleeping (the pass runs on its own thread).
#[derive(Debug)]
struct Throttle {
    rate: Option<u64>,
    started: std::time::Instant,
    bytes: u64,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Self {
        Throttle {
            rate: rate.filter(|r| *r > 0),
            started: std::time::Instant::now(),
            bytes: 0,
        }
    }

    /// Counts `n` bytes of I/O, sleeping until the rate allows them.
    fn spend(&mut self, n: u64) {
        let Some(rate) = self.rate else {
            return;
        };
        self.bytes += n;
        let due = std::time::Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
}

/// How much of a log's cleanable part a pass would rewrite: the cleaner picks the log
/// with the largest dirty ratio above `min.cleanable.dirty.ratio`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dirtiness {
    /// Bytes of cleanable segments below the clean point.
    pub clean_bytes: u64,
    /// Bytes of cleanable segments at or above it.
    pub dirty_bytes: u64,
    /// Largest timestamp of the oldest dirty segment (-1 when none), for
    /// `max.compaction.lag.ms`.
    pub first_dirty_timestamp: i64,
}

impl Dirtiness {
    /// Dirty bytes over all cleanable bytes (0 when there are none).
    pub fn ratio(&self) -> f64 {
        let total = self.clean_bytes + self.dirty_bytes;
        if total == 0 {
            0.0
        } else {
            self.dirty_bytes as f64 / total as f64
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanStats {
    /// Segment bytes read (map building and rewriting).
    pub bytes_read: u64,
    /// Segment bytes written.
    pub bytes_written: u64,
    /// Records dropped.
    pub records_removed: u64,
    /// Distinct keys in the map.
    pub keys: usize,
    /// Segments rewritten, and what they became.
    pub segments_before: usize,
    /// Segments they became.
    pub segments_after: usize,
}

/// One cleanable segment as the plan saw it.
#[derive(Debug, Clone)]
struct SegmentSnapshot {
    base: i64,
    next_offset: i64,
    size: u64,
    last_modified_ms: i64,
    file: Arc<dyn StorageFile>,
}

/// The segments a pass works on, taken under the owner's lock.
#[derive(Debug)]
pub struct CleanPlan {
    dir: LogDir,
    segments: Vec<SegmentSnapshot>,
    /// Index of the first dirty segment.
    first_dirty: usize,
    delete_horizon_ms: i64,
    dedupe_buffer_bytes: usize,
    io_max_bytes_per_second: Option<u64>,
    segment_bytes: u64,
    index_interval: u32,
    now_ms: i64,
}

/// One group of old segments and the segment that replaces them.
#[derive(Debug)]
struct CleanedGroup {
    old: Vec<(i64, u64, i64)>,
    segment: Segment,
}

/// A pass's result, ready to install.
#[derive(Debug)]
pub struct Cleaned {
    dir: LogDir,
    groups: Vec<CleanedGroup>,
    clean_point: i64,
    stats: CleanStats,
}

impl Cleaned {
    /// What the pass did.
    pub fn stats(&self) -> CleanStats {
        self.stats
    }

    /// Removes the written files without installing them.
    pub fn discard(self) -> Result<(), LogError> {
        for g in self.groups {
            self.dir
                .remove_if_present(&file_name(g.segment.base_offset(), CLEANED_EXT))?;
        }
        Ok(())
    }
}

impl Log {
    /// The clean point: offsets below it were covered by a pass's key map.
    pub fn clean_point(&self) -> i64 {
        self.clean_point
    }

    /// The cleanable sealed segments, oldest first.
    fn cleanable(
        &self,
        first_uncleanable: i64,
        now_ms: i64,
        min_lag_ms: i64,
    ) -> impl Iterator<Item = &Segment> {
        let bound = first_uncleanable.min(self.recovery_point);
        self.sealed.values().take_while(move |s| {
            s.next_offset() <= bound
                && (min_lag_ms <= 0 || s.max_timestamp() <= now_ms.saturating_sub(min_lag_ms))
        })
    }

    /// How dirty the log is below `first_uncleanable`.
    pub fn dirtiness(
        &self,
        first_uncleanable: i64,
        now_ms: i64,
        config: &CleanerConfig,
    ) -> Dirtiness {
        let mut d = Dirtiness {
            first_dirty_timestamp: -1,
            ..Dirtiness::default()
        };
        for s in self.cleanable(first_uncleanable, now_ms, config.min_compaction_lag_ms) {
            if s.next_offset() <= self.clean_point {
                d.clean_bytes += s.size();
            } else {
                if d.dirty_bytes == 0 {
                    d.first_dirty_timestamp = s.max_timestamp();
                }
                d.dirty_bytes += s.size();
            }
        }
        d
    }

    /// Snapshots what a pass below `first_uncleanable` would work on; None when nothing
    /// is dirty.
    pub fn plan_clean(
        &self,
        first_uncleanable: i64,
        now_ms: i64,
        config: &CleanerConfig,
    ) -> Option<CleanPlan> {
        let segments: Vec<SegmentSnapshot> = self
            .cleanable(first_uncleanable, now_ms, config.min_compaction_lag_ms)
            .map(|s| SegmentSnapshot {
                base: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                last_modified_ms: s.last_modified_ms(),
                file: Arc::clone(s.file()),
            })
            .collect();
        let first_dirty = segments
            .iter()
            .position(|s| s.next_offset > self.clean_point)?;
        let delete_horizon_ms = segments[..first_dirty]
            .iter()
            .map(|s| s.last_modified_ms)
            .max()
            .map_or(i64::MIN, |ms| ms.saturating_sub(config.delete_retention_ms));
        Some(CleanPlan {
            dir: self.dir.clone(),
            segments,
            first_dirty,
            delete_horizon_ms,
            dedupe_buffer_bytes: config.dedupe_buffer_bytes,
            io_max_bytes_per_second: config.io_max_bytes_per_second,
            segment_bytes: self.config.effective_segment_bytes(),
            index_interval: self.config.index_interval_bytes,
            now_ms,
        })
    }

    /// Swaps a pass's segments in (see the module's swap protocol). Returns None, after
    /// removing the pass's files, when the log changed under the pass (a segment it read
    /// is gone or different).
    pub fn install_cleaned(&mut self, cleaned: Cleaned) -> Result<Option<CleanStats>, LogError> {
        let current = |(base, size, next): &(i64, u64, i64)| {
            self.sealed
                .get(base)
                .is_some_and(|s| s.size() == *size && s.next_offset() == *next)
        };
        if !cleaned.groups.iter().all(|g| g.old.iter().all(current)) {
            cleaned.discard()?;
            return Ok(None);
        }
        let Cleaned {
            dir,
            groups,
            clean_point,
            stats,
        } = cleaned;
        if !groups.is_empty() {
            self.mark_dirty()?;
        }
        for group in groups {
            let mut segment = group.segment;
            let base = segment.base_offset();
            dir.rename(&file_name(base, CLEANED_EXT), &file_name(base, SWAP_EXT))?;
            dir.sync()?;
            for (old, _, _) in &group.old {
                self.sealed.remove(old);
                remove_segment_files(&dir, *old)?;
            }
            dir.sync()?;
            dir.rename(&file_name(base, SWAP_EXT), &file_name(base, LOG_EXT))?;
            segment.write_indexes()?;
            dir.sync()?;
            self.sealed.insert(base, segment);
        }
        if clean_point > self.clean_point {
            self.clean_point = clean_point;
            checkpoint::write_offset(&self.dir, CLEANER_CHECKPOINT_FILE, clean_point)?;
        }
        Ok(Some(stats))
    }

    /// After a truncation: offsets at or above the new end are no longer covered.
    pub(crate) fn lower_clean_point(&mut self, end: i64) -> Result<(), LogError> {
        if self.clean_point > end {
            self.clean_point = end;
            checkpoint::write_offset(&self.dir, CLEANER_CHECKPOINT_FILE, end)?;
        }
        Ok(())
    }
}

/// The batches of a segment snapshot, each read whole (and paced by `throttle`).
fn for_each_batch(
    s: &SegmentSnapshot,
    throttle: &mut Throttle,
    f: &mut dyn FnMut(&RecordBatchView<'_>, bool) -> Result<(), LogError>,
) -> Result<u64, LogError> {
    let mut scanner = HeaderScanner::new(&*s.file, 0, s.size);
    let mut buf = Vec::new();
    let mut next = scanner.next_header()?;
    while let Some((pos, h)) = next {
        buf.resize(h.size(), 0);
        s.file.read_exact_at(&mut buf, pos)?;
        throttle.spend(buf.len() as u64);
        next = scanner.next_header()?;
        let view = RecordBatchView::new(&buf)?;
        view.validate_crc()?;
        f(&view, next.is_none())?;
    }
    Ok(s.size)
}

/// Keys of one batch with their absolute offsets (a control batch has none).
fn batch_keys(view: &RecordBatchView<'_>) -> Result<Vec<(Vec<u8>, i64)>, LogError> {
    let mut keys = Vec::new();
    let mut collect = |r: &crate::records::RecordRef<'_>, offset: i64| {
        if let Some(k) = r.key {
            keys.push((k.to_vec(), offset));
        }
        true
    };
    if !view.header().is_control() {
        filter_batch(view, false, &mut collect)?;
    }
    Ok(keys)
}

impl CleanPlan {
    /// Builds the key map and writes the cleaned segments (`.cleaned`, fsynced). Reads
    /// and writes files only; the log may go on serving meanwhile.
    pub fn run(self) -> Result<Cleaned, LogError> {
        let mut stats = CleanStats::default();
        let mut throttle = Throttle::new(self.io_max_bytes_per_second);
        let mut map = OffsetMap::new(self.dedupe_buffer_bytes);
        // The map covers whole segments: `mapped` of them from the first dirty one.
        let mut mapped_end = self.first_dirty;
        'segments: for (i, s) in self.segments.iter().enumerate().skip(self.first_dirty) {
            let mut full = false;
            stats.bytes_read += for_each_batch(s, &mut throttle, &mut |view, _| {
                if full {
                    return Ok(());
                }
                let keys = batch_keys(view)?;
                let bytes = keys.iter().map(|(k, _)| k.len()).sum();
                if !map.has_room_for(keys.len(), bytes) {
                    full = true;
                    return Ok(());
                }
                for (k, offset) in keys {
                    map.put(&k, offset);
                }
                Ok(())
            })?;
            if full {
                if i == self.first_dirty {
                    return Err(LogError::InvalidRecord(format!(
                        "log.cleaner.dedupe.buffer.size ({} bytes) cannot hold the keys of the segment at offset {}",
                        self.dedupe_buffer_bytes, s.base
                    )));
                }
                // Entries of this segment's first batches stay: each names a record that
                // exists (in this segment, which this pass does not rewrite), so dropping
                // what it supersedes loses nothing.
                break 'segments;
            }
            mapped_end = i + 1;
        }
        stats.keys = map.len();
        let range = &self.segments[..mapped_end];
        // The last batch of each producer in the range stays, emptied if need be.
        let mut last_of_producer: HashMap<i64, i64> = HashMap::new();
        for s in range {
            let mut scanner = HeaderScanner::new(&*s.file, 0, s.size);
            while let Some((_, h)) = scanner.next_header()? {
                if h.producer_id >= 0 {
                    last_of_producer.insert(h.producer_id, h.base_offset);
                }
            }
        }
        let mut groups = Vec::new();
        for group in group_segments(range, self.segment_bytes) {
            match self.clean_group(group, &map, &last_of_producer, &mut stats, &mut throttle) {
                Ok(Some(g)) => groups.push(g),
                Ok(None) => {}
                Err(e) => {
                    let cleaned = Cleaned {
                        dir: self.dir.clone(),
                        groups,
                        clean_point: 0,
                        stats,
                    };
                    if let Err(cleanup) = cleaned.discard() {
                        warn!(error = %cleanup, "could not remove the files of a failed cleaning pass");
                    }
                    self.dir
                        .remove_if_present(&file_name(group[0].base, CLEANED_EXT))?;
                    return Err(e);
                }
            }
        }
        stats.segments_before = groups.iter().map(|g| g.old.len()).sum();
        stats.segments_after = groups.len();
        Ok(Cleaned {
            dir: self.dir,
            groups,
            clean_point: range.last().map_or(i64::MIN, |s| s.next_offset),
            stats,
        })
    }

    /// Rewrites one group into `<base>.cleaned`; None when it is a single segment that
    /// loses nothing (rewriting it would only cost I/O).
    fn clean_group(
        &self,
        group: &[SegmentSnapshot],
        map: &OffsetMap,
        last_of_producer: &HashMap<i64, i64>,
        stats: &mut CleanStats,
        throttle: &mut Throttle,
    ) -> Result<Option<CleanedGroup>, LogError> {
        let base = group[0].base;
        let file = self
            .dir
            .open(&file_name(base, CLEANED_EXT), OpenMode::CreateTruncate)?;
        let mut segment = Segment::empty(&self.dir, base, file, self.now_ms);
        let mut removed = 0;
        let mut written = 0;
        for s in group {
            let written_before = written;
            let drop_tombstones = s.last_modified_ms <= self.delete_horizon_ms;
            stats.bytes_read += for_each_batch(s, throttle, &mut |view, last_in_segment| {
                let h = *view.header();
                let keep_empty = last_in_segment
                    || (h.producer_id >= 0
                        && last_of_producer.get(&h.producer_id) == Some(&h.base_offset));
                let (out, gone) = filter_batch(view, keep_empty, &mut |r, offset| {
                    let Some(key) = r.key else {
                        return false;
                    };
                    if map.get(key).is_some_and(|latest| latest > offset) {
                        return false;
                    }
                    !(r.is_tombstone && drop_tombstones)
                })?;
                removed += gone.0;
                let bytes: &[u8] = match &out {
                    Filtered::Kept(b) => b,
                    Filtered::Rewritten(b) => b,
                    Filtered::Dropped => return Ok(()),
                };
                let header = crate::batch::BatchHeader::parse(bytes)?;
                segment.append(bytes, &[(0, header)], self.index_interval, self.now_ms)?;
                written += bytes.len() as u64;
                Ok(())
            })?;
            // Writes are paced per segment (reads per batch).
            throttle.spend(written - written_before);
        }
        if group.len() == 1 && removed == 0 {
            drop(segment);
            self.dir.remove(&file_name(base, CLEANED_EXT))?;
            return Ok(None);
        }
        segment.seal();
        segment.file().sync_all()?;
        segment.set_last_modified_ms(
            group
                .iter()
                .map(|s| s.last_modified_ms)
                .max()
                .unwrap_or(self.now_ms),
        );
        stats.records_removed += removed;
        stats.bytes_written += written;
        Ok(Some(CleanedGroup {
            old: group
                .iter()
                .map(|s| (s.base, s.size, s.next_offset))
                .collect(),
            segment,
        }))
    }
}

/// Consecutive segments grouped so each group's bytes fit one segment and its offsets
/// one segment's u32 relative offsets.
fn group_segments(segments: &[SegmentSnapshot], segment_bytes: u64) -> Vec<&[SegmentSnapshot]> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < segments.len() {
        let mut end = start + 1;
        let mut bytes = segments[start].size;
        while let Some(next) = segments.get(end) {
            let fits = bytes + next.size <= segment_bytes
                && next.next_offset - segments[start].base <= u32::MAX as i64;
            if !fits {
                break;
            }
            bytes += next.size;
            end += 1;
        }
        groups.push(&segments[start..end]);
        start = end;
    }
    groups
}

/// On open: removes uncommitted `.cleaned` files and completes committed `.swap` ones.
/// `names` are the directory's entries; returns whether it changed anything.
pub(crate) fn finish_interrupted_swaps(dir: &LogDir, names: &[String]) -> Result<bool, LogError> {
    let mut changed = false;
    for name in names {
        let Some((stem, ext)) = name.split_once('.') else {
            continue;
        };
        let Ok(base) = stem.parse::<i64>() else {
            continue;
        };
        if ext == CLEANED_EXT {
            dir.remove(name)?;
            changed = true;
        } else if ext == SWAP_EXT {
            let file = dir.open(name, OpenMode::Existing)?;
            let mut scanner = HeaderScanner::new(&*file, 0, file.len()?);
            let mut end = base;
            while let Some((_, h)) = scanner.next_header()? {
                end = h.last_offset().saturating_add(1);
            }
            drop(file);
            for other in names {
                if let Some((b, LOG_EXT)) = other
                    .split_once('.')
                    .and_then(|(s, e)| Some((s.parse::<i64>().ok()?, e)))
                {
                    if (base..end.max(base + 1)).contains(&b) {
                        remove_segment_files(dir, b)?;
                    }
                }
            }
            dir.sync()?;
            dir.rename(name, &file_name(base, LOG_EXT))?;
            dir.sync()?;
            warn!(dir = %dir.path().display(), base, end, "completed a segment swap interrupted by a crash");
            changed = true;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod throttle_tests {
    use super::Throttle;

    #[test]
    fn a_throttle_paces_io_to_its_rate() {
        let started = std::time::Instant::now();
        let mut t = Throttle::new(Some(100_000));
        for _ in 0..10 {
            t.spend(2_000);
        }
        // 20 kB at 100 kB/s: at least 0.2 s.
        assert!(started.elapsed() >= std::time::Duration::from_millis(200));
        let started = std::time::Instant::now();
        let mut free = Throttle::new(None);
        free.spend(u64::MAX / 2);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
