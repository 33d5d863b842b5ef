//! Opening a partition directory: list segments, read checkpoints, recover after an
//! unclean stop.
//!
//! After a clean close (marker present) every segment's index files are trusted. After
//! a crash, segments wholly below the checkpointed recovery point are fsynced and
//! trusted likewise; from the segment holding the recovery point on, every batch's CRC
//! is checked and the first torn, garbled or invalid batch cuts the log there (later
//! segments are deleted). A corrupt checkpoint falls back to a safe value with a warning.

use std::collections::BTreeMap;

use tracing::{error, warn};

use super::checkpoint::{
    self, ReadError, LEADER_EPOCH_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, TMP_SUFFIX,
};
use super::config::LogConfig;
use super::epoch_cache::LeaderEpochCache;
use super::error::LogError;
use super::segment::{
    remove_segment_files, Cut, LoadMode, Segment, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT,
};
use super::storage::LogDir;

/// Marker written last by a clean close.
pub(crate) const CLEAN_SHUTDOWN_FILE: &str = "clean-shutdown";
/// Files other layers keep in the partition directory (the topic id, as Kafka's).
const KNOWN_FOREIGN_FILES: &[&str] = &["partition.metadata"];
/// Largest offset the log accepts: a base offset plus a u32 relative offset must not
/// overflow i64.
pub(crate) const MAX_BASE_OFFSET: i64 = i64::MAX - u32::MAX as i64 - 1;

/// What `load` hands to `Log::open`.
pub(crate) struct Loaded {
    pub sealed: BTreeMap<i64, Segment>,
    pub active: Segment,
    pub log_start_offset: i64,
    pub recovery_point: i64,
    pub epoch_cache: LeaderEpochCache,
    /// Recovery cut garbled bytes (not just a torn, never-flushed tail) or dropped
    /// overlapping segments: the log may hold less than it acknowledged before the stop.
    pub cut: bool,
}

struct Listing {
    bases: Vec<i64>,
    clean: bool,
}

/// Segment base offset encoded in a file name, if it is one of ours.
fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let base: i64 = stem.parse().ok()?;
    (base <= MAX_BASE_OFFSET).then_some((base, ext))
}

/// Lists segment files; removes stray temporaries and index files without a segment.
fn list_dir(dir: &LogDir) -> Result<Listing, LogError> {
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    let mut clean = false;
    for file_name in dir.list()? {
        let Some(name) = file_name.to_str() else {
            warn!(dir = %dir.path().display(), name = ?file_name, "ignoring file with a non UTF-8 name");
            continue;
        };
        if name.ends_with(TMP_SUFFIX) {
            // A write interrupted before its rename: the previous version still holds.
            dir.remove(name)?;
            continue;
        }
        if name == CLEAN_SHUTDOWN_FILE {
            clean = true;
            continue;
        }
        if [
            RECOVERY_POINT_FILE,
            LOG_START_FILE,
            LEADER_EPOCH_FILE,
            crate::compaction::CLEANER_CHECKPOINT_FILE,
        ]
        .contains(&name)
            || KNOWN_FOREIGN_FILES.contains(&name)
        {
            continue;
        }
        match parse_segment_name(name) {
            Some((base, LOG_EXT)) => logs.push(base),
            Some((base, INDEX_EXT | TIME_INDEX_EXT)) => indexes.push((base, name.to_string())),
            _ => {
                warn!(dir = %dir.path().display(), name, "ignoring unexpected file in partition directory")
            }
        }
    }
    logs.sort_unstable();
    for (base, name) in indexes {
        if logs.binary_search(&base).is_err() {
            warn!(path = %dir.join(&name).display(), "removing index file without a segment");
            dir.remove(&name)?;
        }
    }
    Ok(Listing { bases: logs, clean })
}

/// A checkpoint value, or `fallback` with a warning naming the file when it is corrupt.
fn or_fallback<T>(
    read: Result<Option<T>, ReadError>,
    fallback: Option<T>,
    what: &str,
) -> Result<Option<T>, LogError> {
    match read {
        Ok(value) => Ok(value),
        Err(ReadError::Io(e)) => Err(e.into()),
        Err(e @ ReadError::Corrupt { .. }) => {
            warn!(error = %e, "{what}");
            Ok(fallback)
        }
    }
}

/// Opens or creates the partition directory `dir` and recovers it.
pub(crate) fn load(dir: &LogDir, config: &LogConfig, now_ms: i64) -> Result<Loaded, LogError> {
    dir.create()?;
    let names: Vec<String> = dir
        .list()?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .collect();
    crate::compaction::finish_interrupted_swaps(dir, &names)?;
    let Listing { bases, clean } = list_dir(dir)?;
    let checkpointed_rp = or_fallback(
        checkpoint::read_offset(dir, RECOVERY_POINT_FILE),
        None,
        "recovery point unreadable; recovering every segment",
    )?;
    // Without a checkpoint nothing is known durable: 0 is always safe.
    let rp_floor = checkpointed_rp.unwrap_or(0);
    let checkpointed_start = or_fallback(
        checkpoint::read_offset(dir, LOG_START_FILE),
        None,
        "log start offset unreadable; using the first segment's base offset",
    )?;
    let (mut cache, epochs_readable) = match checkpoint::read_epochs(dir) {
        Ok(entries) => (
            LeaderEpochCache::from_entries(entries.unwrap_or_default()),
            true,
        ),
        Err(e @ ReadError::Corrupt { .. }) => {
            warn!(error = %e, "leader epoch checkpoint unreadable; rebuilding it from batch headers");
            (LeaderEpochCache::default(), false)
        }
        Err(ReadError::Io(e)) => return Err(e.into()),
    };
    let mut epochs_changed = false;
    let mut learn_epoch = |epoch: i32, base_offset: i64| {
        // As Kafka's segment recovery: batches of a newer epoch than the cache knows
        // start that epoch (covers a checkpoint write lost in the crash).
        if epoch >= 0 && cache.latest_epoch().is_none_or(|e| epoch > e) {
            epochs_changed |= cache.assign(epoch, base_offset);
        }
    };

    let mut segments: Vec<Segment> = Vec::new();
    let mut previous_recovered = false;
    let mut lost = false;
    for (i, &base) in bases.iter().enumerate() {
        if let Some(prev) = segments.last() {
            if base < prev.next_offset() {
                error!(dir = %dir.path().display(), base, previous_end = prev.next_offset(),
                    "segment overlaps its predecessor; dropping it and every later segment");
                drop_segments(dir, &bases[i..])?;
                lost = true;
                break;
            }
            if previous_recovered && base > prev.next_offset() {
                // The recovered segment lost its tail (a power loss kept a later file's
                // data but not all of this one's): what follows would leave a hole. None
                // of it was ever flushed, since a flush covers every file above the
                // recovery point at once.
                warn!(dir = %dir.path().display(), base, previous_end = prev.next_offset(),
                    "gap after a recovered segment; dropping every later segment");
                drop_segments(dir, &bases[i..])?;
                break;
            }
        }
        let next_base = bases.get(i + 1).copied();
        let mode = if clean || next_base.is_some_and(|n| n <= rp_floor) {
            LoadMode::Trusted
        } else {
            LoadMode::Recover
        };
        previous_recovered = mode == LoadMode::Recover;
        let (seg, cut) = Segment::open(
            dir,
            base,
            mode,
            config.index_interval_bytes,
            now_ms,
            &mut |h| learn_epoch(h.partition_leader_epoch, h.base_offset),
        )?;
        segments.push(seg);
        if cut.is_cut() {
            // Later segments were written after the torn bytes; keeping them would leave
            // a hole in the log. A torn tail (and what follows it) was never flushed, so
            // never acknowledged; garbled bytes may have been.
            drop_segments(dir, &bases[i + 1..])?;
            lost |= cut == Cut::Garbled;
            break;
        }
    }

    let active = match segments.pop() {
        Some(seg) => seg,
        None => Segment::create(
            dir,
            checkpointed_start.unwrap_or(0).clamp(0, MAX_BASE_OFFSET),
            now_ms,
        )?,
    };
    let sealed: BTreeMap<i64, Segment> =
        segments.into_iter().map(|s| (s.base_offset(), s)).collect();
    let leo = active.next_offset();
    let first_base = sealed
        .keys()
        .next()
        .copied()
        .unwrap_or(active.base_offset());
    let log_start_offset = checkpointed_start
        .unwrap_or(first_base)
        .max(first_base)
        .min(leo);
    let recovery_point = if clean { leo } else { rp_floor.min(leo) };

    if !epochs_readable {
        cache = LeaderEpochCache::default();
        for seg in sealed.values().chain(std::iter::once(&active)) {
            seg.for_each_header(&mut |h| {
                if h.partition_leader_epoch >= 0
                    && cache
                        .latest_epoch()
                        .is_none_or(|e| h.partition_leader_epoch > e)
                {
                    cache.assign(h.partition_leader_epoch, h.base_offset);
                }
            })?;
        }
        epochs_changed = true;
    }
    epochs_changed |= cache.truncate_from_end(leo);
    epochs_changed |= cache.truncate_from_start(log_start_offset);
    if epochs_changed {
        checkpoint::write_epochs(dir, cache.entries())?;
    }
    if checkpointed_start != Some(log_start_offset) {
        checkpoint::write_offset(dir, LOG_START_FILE, log_start_offset)?;
    }
    // A checkpoint above the recovered end would vouch for bytes appended later.
    if checkpointed_rp != Some(recovery_point) {
        checkpoint::write_offset(dir, RECOVERY_POINT_FILE, recovery_point)?;
    }
    let mut sealed = sealed;
    for seg in sealed.values_mut() {
        seg.write_indexes()?;
    }
    if clean {
        // From here on a crash must lead to recovery again.
        dir.remove(CLEAN_SHUTDOWN_FILE)?;
    }
    dir.sync()?;
    Ok(Loaded {
        sealed,
        active,
        log_start_offset,
        recovery_point,
        epoch_cache: cache,
        cut: lost,
    })
}

fn drop_segments(dir: &LogDir, bases: &[i64]) -> Result<(), LogError> {
    // Newest first, so an interruption still leaves a prefix of the log.
    for &base in bases.iter().rev() {
        warn!(dir = %dir.path().display(), base, "deleting segment after the recovered end of the log");
        remove_segment_files(dir, base)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::PathBuf;

    use proptest::prelude::*;

    use super::*;
    use crate::batch::batches;
    use crate::test_util::*;
    use crate::{EpochEntry, Log};

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 1_000,
            index_interval_bytes: 200,
            ..LogConfig::default()
        }
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_complete_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        let mut stored = fill(&mut log, 20, 1);
        log.flush().unwrap();
        stored.extend(fill(&mut log, 6, 1));
        drop(log);
        let last = segment_files(dir.path()).pop().unwrap();
        let batches_in_last = layout(&last);
        let (pos, base, _, size) = *batches_in_last.last().unwrap();
        OpenOptions::new()
            .write(true)
            .open(&last)
            .unwrap()
            .set_len((pos + size / 2) as u64)
            .unwrap();

        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), base);
        assert!(
            !log.recovery_cut(),
            "a torn, never-flushed tail loses nothing acknowledged"
        );
        assert_eq!(
            fs::metadata(&last).unwrap().len(),
            pos as u64,
            "torn bytes are removed"
        );
        stored.pop();
        assert_readable(&log, &stored);
        let info = log
            .append_as_leader(&mut simple_batch(0, 2, 5), 1, 0)
            .unwrap();
        assert_eq!(info.first_offset, base);
    }

    #[test]
    fn flipped_byte_truncates_from_that_batch_and_drops_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        let stored = fill(&mut log, 30, 1);
        assert!(log.segment_count() >= 4);
        drop(log);
        let files = segment_files(dir.path());
        let victim = &files[1];
        let (pos, base, _, size) = layout(victim)[1];
        let mut data = fs::read(victim).unwrap();
        data[pos + size - 3] ^= 0x40;
        fs::write(victim, data).unwrap();

        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), base);
        assert!(
            log.recovery_cut(),
            "garbled bytes may have been acknowledged"
        );
        assert_eq!(
            log.segment_count(),
            2,
            "segments after the bad batch are gone"
        );
        assert_eq!(segment_files(dir.path()).len(), 2);
        let kept: Vec<_> = stored
            .iter()
            .filter(|b| batches(b).next().unwrap().unwrap().header().base_offset < base)
            .cloned()
            .collect();
        assert_readable(&log, &kept);
    }

    #[test]
    fn garbage_after_the_last_batch_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        let stored = fill(&mut log, 12, 1);
        let leo = log.log_end_offset();
        drop(log);
        let last = segment_files(dir.path()).pop().unwrap();
        let good_len = fs::metadata(&last).unwrap().len();
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&[0xab; 97]).unwrap();
        drop(f);

        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(fs::metadata(&last).unwrap().len(), good_len);
        assert_readable(&log, &stored);
    }

    #[test]
    fn missing_index_files_are_rebuilt_after_a_clean_close() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        let stored = fill(&mut log, 25, 1);
        let ts_answer = log.offset_for_timestamp(155).unwrap();
        log.close().unwrap();
        for entry in fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
            {
                fs::remove_file(path).unwrap();
            }
        }
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_readable(&log, &stored);
        assert_eq!(log.offset_for_timestamp(155).unwrap(), ts_answer);
        let first = segment_files(dir.path())[0].with_extension("index");
        assert!(first.exists(), "sealed segments get their index files back");
    }

    #[test]
    fn corrupt_checkpoints_fall_back_safely() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        fill(&mut log, 5, 2);
        let stored = fill(&mut log, 5, 7);
        log.flush().unwrap();
        drop(log);
        fs::write(dir.path().join(RECOVERY_POINT_FILE), "zero\n").unwrap();
        fs::write(dir.path().join(LEADER_EPOCH_FILE), "0\n9\n").unwrap();
        fs::write(dir.path().join(LOG_START_FILE), [0xff, 0xfe]).unwrap();
        let log = Log::open(dir.path(), config(), 0).unwrap();
        assert_readable(&log, &stored);
        assert_eq!(log.log_start_offset(), 0);
        let entries = log.leader_epoch_cache().entries();
        assert_eq!(entries.len(), 2);
        assert_eq!(
            entries[0],
            EpochEntry {
                epoch: 2,
                start_offset: 0
            }
        );
        assert_eq!(entries[1].epoch, 7);
        assert!(
            checkpoint::read_epochs(&LogDir::local(dir.path()))
                .unwrap()
                .is_some(),
            "rewritten"
        );
    }

    #[test]
    fn directory_hygiene() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        fill(&mut log, 3, 1);
        drop(log);
        let p = dir.path();
        fs::write(p.join("notes.txt"), "keep me").unwrap();
        fs::write(p.join("partition.metadata"), "version: 0\n").unwrap();
        fs::write(p.join("00000000000000000999.index"), [0u8; 8]).unwrap();
        fs::write(p.join(format!("{RECOVERY_POINT_FILE}.tmp")), "0\n1\n5").unwrap();
        Log::open(p, config(), 0).unwrap();
        assert!(p.join("notes.txt").exists());
        assert!(p.join("partition.metadata").exists());
        assert!(!p.join("00000000000000000999.index").exists());
        assert!(!p.join(format!("{RECOVERY_POINT_FILE}.tmp")).exists());
    }

    #[test]
    fn writes_after_close_in_place_clear_the_marker() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        fill(&mut log, 3, 1);
        log.close_in_place().unwrap();
        assert!(dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
        fill(&mut log, 1, 1);
        assert!(!dir.path().join(CLEAN_SHUTDOWN_FILE).exists());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn reopen_after_cut_keeps_every_complete_batch(
            shapes in proptest::collection::vec((1usize..5, 0usize..120), 1..30),
            cut_fraction in 0.0f64..=1.0,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), config(), 0).unwrap();
            let mut stored = Vec::new();
            for (i, (n, len)) in shapes.iter().enumerate() {
                let info = log.append_as_leader(&mut simple_batch(i as i64, *n, *len), 0, 0).unwrap();
                stored.push((info.first_offset, log.read(info.first_offset, 1, i64::MAX, true).unwrap()));
            }
            drop(log);
            let last = segment_files(dir.path()).pop().unwrap();
            let seg_base: i64 = last.file_stem().unwrap().to_str().unwrap().parse().unwrap();
            let len = fs::metadata(&last).unwrap().len();
            let cut = (len as f64 * cut_fraction) as usize;
            OpenOptions::new().write(true).open(&last).unwrap().set_len(cut as u64).unwrap();
            let complete: Vec<_> = layout_of_prefix(&stored, seg_base, cut);
            let expected_leo = complete.last().map_or(seg_base, |(_, last)| last + 1);

            let log = Log::open(dir.path(), config(), 0).unwrap();
            prop_assert_eq!(log.log_end_offset(), expected_leo);
            for (base, bytes) in stored.iter().filter(|(base, _)| *base < expected_leo) {
                prop_assert_eq!(&log.read(*base, 1, i64::MAX, true).unwrap(), bytes);
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
        #[test]
        fn reopen_after_random_corruption_keeps_only_valid_batches(
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), any::<u8>()), 1..6),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut log = Log::open(dir.path(), config(), 0).unwrap();
            fill(&mut log, 15, 1);
            drop(log);
            let files = segment_files(dir.path());
            for (file, at, byte) in flips {
                let path = at_index(&files, file);
                let mut data = fs::read(path).unwrap();
                if !data.is_empty() {
                    let i = at.index(data.len());
                    data[i] ^= byte | 1;
                    fs::write(path, data).unwrap();
                }
            }
            let log = Log::open(dir.path(), config(), 0).unwrap();
            let mut offset = log.log_start_offset();
            while offset < log.log_end_offset() {
                let data = log.read(offset, 1, i64::MAX, true).unwrap();
                let view = crate::batch::RecordBatchView::new(&data).unwrap();
                view.validate_crc().unwrap();
                prop_assert!(view.header().last_offset() >= offset);
                offset = view.header().last_offset() + 1;
            }
        }
    }

    fn at_index(files: &[PathBuf], i: prop::sample::Index) -> &PathBuf {
        &files[i.index(files.len())]
    }

    /// Batches of the last segment (from `seg_base`) wholly inside its first `cut` bytes,
    /// as (base, last) offsets.
    fn layout_of_prefix(
        stored: &[(i64, bytes::Bytes)],
        seg_base: i64,
        cut: usize,
    ) -> Vec<(i64, i64)> {
        let mut pos = 0;
        let mut out = Vec::new();
        for (base, bytes) in stored.iter().filter(|(base, _)| *base >= seg_base) {
            pos += bytes.len();
            if pos > cut {
                break;
            }
            let last = batches(bytes)
                .next()
                .unwrap()
                .unwrap()
                .header()
                .last_offset();
            out.push((*base, last));
        }
        out
    }
}
