//! The cleaner against a model ("latest value per key", offsets preserved), and the
//! segment swap under a crash at every step.
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::batch::batches;
use crate::decompress::decompress;
use crate::power_loss::PowerLossFs;
use crate::records::split_records;
use crate::storage::Storage;
use crate::test_util::{encode_batch, TestRecord};
use crate::LogConfig;

/// (key, value) of one record; value None is a tombstone, key None a keyless record.
type Entry = (Option<u8>, Option<Vec<u8>>);

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

fn cleaner(dedupe: usize) -> CleanerConfig {
    CleanerConfig {
        dedupe_buffer_bytes: dedupe,
        delete_retention_ms: 0,
        min_compaction_lag_ms: 0,
        io_max_bytes_per_second: None,
    }
}

fn batch(entries: &[Entry]) -> Vec<u8> {
    let records: Vec<TestRecord> = entries
        .iter()
        .enumerate()
        .map(|(i, (k, v))| TestRecord {
            timestamp_delta: i as i64,
            key: k.map(|k| vec![b'k', k]),
            value: v.clone(),
            headers: vec![(b"h".to_vec(), k.map(|k| vec![k]))],
        })
        .collect();
    encode_batch(0, 1_000, &records, 0)
}

/// Every record the log holds: offset → (key, value).
fn contents(log: &Log) -> BTreeMap<i64, Entry> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, false)
        .unwrap();
    let mut out = BTreeMap::new();
    for b in batches(&bytes) {
        let b = b.unwrap();
        b.validate_crc().unwrap();
        let h = *b.header();
        let records = match h.compression() {
            0 => b.records().to_vec(),
            c => decompress(c as u16, b.records(), usize::MAX).unwrap(),
        };
        for r in split_records(&records).unwrap() {
            let key = r.key.map(|k| k[1]);
            out.insert(
                h.base_offset + r.offset_delta,
                (key, r.value.map(<[u8]>::to_vec)),
            );
        }
    }
    out
}

/// One full pass below the LEO; what it did (None when nothing was dirty).
fn clean(log: &mut Log, now_ms: i64, config: &CleanerConfig) -> Option<CleanStats> {
    try_clean(log, now_ms, config).unwrap()
}

/// [`clean`], with a failed pass as an error.
fn try_clean(
    log: &mut Log,
    now_ms: i64,
    config: &CleanerConfig,
) -> Result<Option<CleanStats>, LogError> {
    let Some(plan) = log.plan_clean(log.log_end_offset(), now_ms, config) else {
        return Ok(None);
    };
    let cleaned = plan.run()?;
    log.install_cleaned(cleaned)
}

/// Checks what the log holds against what was written: every record it holds is the one
/// written at its offset, and the latest record of every key is there (tombstones
/// excepted: they may go).
fn check_against(log: &Log, written: &BTreeMap<i64, Entry>) {
    let held = contents(log);
    for (offset, entry) in &held {
        assert_eq!(written.get(offset), Some(entry), "offset {offset}");
    }
    let mut latest: BTreeMap<u8, (i64, &Entry)> = BTreeMap::new();
    for (offset, entry) in written {
        if let Some(k) = entry.0 {
            latest.insert(k, (*offset, entry));
        }
    }
    for (k, (offset, entry)) in latest {
        if entry.1.is_some() {
            assert_eq!(
                held.get(&offset),
                Some(entry),
                "latest value of key {k} at {offset}"
            );
        }
    }
}

fn append_all(log: &mut Log, batches: &[Vec<Entry>], now_ms: i64) -> BTreeMap<i64, Entry> {
    let mut written = BTreeMap::new();
    for entries in batches {
        let first = log.log_end_offset();
        log.append_as_leader(&mut batch(entries), 0, now_ms)
            .unwrap();
        for (i, e) in entries.iter().enumerate() {
            written.insert(first + i as i64, e.clone());
        }
    }
    written
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prop_oneof![9 => (0u8..8).prop_map(Some), 1 => Just(None)],
        prop_oneof![4 => proptest::collection::vec(any::<u8>(), 0..20).prop_map(Some), 1 => Just(None)],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any stream, cleaned at any points with any map size: what is held is what was
    /// written at that offset and every key's latest value stays; once everything is
    /// cleaned twice, exactly the latest value of each key is left.
    #[test]
    fn a_compacted_log_is_the_latest_value_per_key(
        rounds in proptest::collection::vec(proptest::collection::vec(proptest::collection::vec(entry(), 1..4), 1..8), 1..5),
        dedupe_keys in 2usize..12,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), config(), 0).unwrap();
        let cfg = cleaner(dedupe_keys * 64);
        let mut written = BTreeMap::new();
        let mut now = 0;
        for round in &rounds {
            now += 1_000;
            written.extend(append_all(&mut log, round, now));
            log.roll(now).unwrap();
            log.flush().unwrap();
            let before = contents(&log);
            match try_clean(&mut log, now, &cfg) {
                Ok(_) => {}
                // A map too small for the first dirty segment fails the pass, harmlessly.
                Err(e) => {
                    prop_assert!(e.to_string().contains("dedupe"), "{}", e);
                    prop_assert_eq!(contents(&log), before);
                }
            }
            check_against(&log, &written);
            // Reads from any offset find the next record kept.
            for from in log.log_start_offset()..log.log_end_offset() {
                let bytes = log.read(from, 1, i64::MAX, true).unwrap();
                prop_assert!(!bytes.is_empty(), "nothing read from {}", from);
            }
        }
        // Everything sealed and mapped, then one more pass after a newer segment:
        // only the latest value of each key is left, its tombstones gone.
        let big = cleaner(1 << 20);
        now += 1_000;
        let _ = clean(&mut log, now, &big);
        let sentinel_at = log.log_end_offset();
        written.extend(append_all(&mut log, &[vec![(Some(200), Some(b"end".to_vec()))]], now + 1));
        log.roll(now + 1).unwrap();
        log.flush().unwrap();
        let _ = clean(&mut log, now + 2, &big);
        check_against(&log, &written);
        let mut expected: BTreeMap<u8, (i64, Entry)> = BTreeMap::new();
        for (offset, e) in written.range(..sentinel_at) {
            if let Some(k) = e.0 {
                expected.insert(k, (*offset, e.clone()));
            }
        }
        let expected: BTreeMap<i64, Entry> = expected
            .into_values()
            .filter(|(_, e)| e.1.is_some())
            .collect();
        let held: BTreeMap<i64, Entry> = contents(&log).into_iter().filter(|(o, _)| *o < sentinel_at).collect();
        prop_assert_eq!(held, expected);
        // Reopened, the log is the same (the last batches kept every segment's end).
        let before = contents(&log);
        let end = log.log_end_offset();
        drop(log);
        let log = Log::open(dir.path(), config(), now + 3).unwrap();
        prop_assert_eq!(log.log_end_offset(), end);
        prop_assert_eq!(contents(&log), before);
    }
}

#[test]
fn segments_shrink_and_merge_and_the_active_one_is_never_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let rounds: Vec<Vec<Entry>> = (0..40)
        .map(|i| vec![(Some(i % 3), Some(vec![b'v'; 30]))])
        .collect();
    let mut written = append_all(&mut log, &rounds, 10);
    log.flush().unwrap();
    let segments = log.segment_count();
    assert!(segments > 4);
    let stats = clean(&mut log, 20, &cleaner(1 << 20)).unwrap();
    assert!(stats.records_removed > 0, "{stats:?}");
    assert!(stats.bytes_written < stats.bytes_read);
    check_against(&log, &written);
    // The shrunk segments are grouped into fewer by the next pass.
    written.extend(append_all(&mut log, &rounds, 15));
    log.flush().unwrap();
    let segments = log.segment_count();
    let stats = clean(&mut log, 25, &cleaner(1 << 20)).unwrap();
    assert!(stats.segments_after < stats.segments_before, "{stats:?}");
    assert!(log.segment_count() < segments);
    check_against(&log, &written);
    // The active segment's records are all still there.
    let active_from = log.active.base_offset();
    let held = contents(&log);
    for offset in active_from..log.log_end_offset() {
        assert!(held.contains_key(&offset), "active offset {offset}");
    }
    // Nothing new is dirty: no pass.
    assert!(clean(&mut log, 30, &cleaner(1 << 20)).is_none());
    written.extend(append_all(&mut log, &rounds[..1], 40));
    check_against(&log, &written);
}

#[test]
fn a_map_too_small_for_one_segment_fails_the_pass_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let keys: Vec<Vec<Entry>> = vec![(0..8).map(|k| (Some(k), Some(vec![1]))).collect()];
    let written = append_all(&mut log, &keys, 1);
    log.roll(1).unwrap();
    log.flush().unwrap();
    let plan = log
        .plan_clean(log.log_end_offset(), 2, &cleaner(100))
        .unwrap();
    let err = plan.run().unwrap_err();
    assert!(err.to_string().contains("dedupe"), "{err}");
    assert_eq!(contents(&log), written);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(CLEANED_EXT))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn a_pass_over_segments_that_changed_meanwhile_is_not_installed() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let rounds: Vec<Vec<Entry>> = (0..30)
        .map(|i| vec![(Some(i % 2), Some(vec![b'v'; 30]))])
        .collect();
    append_all(&mut log, &rounds, 1);
    log.flush().unwrap();
    let cleaned = log
        .plan_clean(log.log_end_offset(), 2, &cleaner(1 << 20))
        .unwrap()
        .run()
        .unwrap();
    // A follower's truncation takes away segments the pass read.
    log.truncate_to(log.log_end_offset() / 2).unwrap();
    let before = contents(&log);
    assert_eq!(log.install_cleaned(cleaned).unwrap(), None);
    assert_eq!(contents(&log), before);
}

#[test]
fn a_follower_appends_past_a_gap_a_compacted_leader_left() {
    let (dl, df) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut leader = Log::open(dl.path(), config(), 0).unwrap();
    let rounds: Vec<Vec<Entry>> = (0..30)
        .map(|i| {
            vec![
                (Some(i % 2), Some(vec![b'v'; 30])),
                (Some(9), Some(vec![1])),
            ]
        })
        .collect();
    let written = append_all(&mut leader, &rounds, 1);
    leader.flush().unwrap();
    clean(&mut leader, 2, &cleaner(1 << 20)).unwrap();
    let mut follower = Log::open(df.path(), config(), 0).unwrap();
    while follower.log_end_offset() < leader.log_end_offset() {
        let bytes = leader
            .read(follower.log_end_offset(), 200, i64::MAX, true)
            .unwrap();
        follower.append_as_follower(&bytes, 3).unwrap();
    }
    assert_eq!(contents(&follower), contents(&leader));
    check_against(&follower, &written);
}

/// A storage over a power-loss one that dies after `budget` changes: every later
/// change fails, as if the machine stopped there.
#[derive(Debug)]
struct DiesAfter {
    inner: Arc<PowerLossFs>,
    budget: Arc<AtomicI64>,
}

impl DiesAfter {
    fn spend(budget: &AtomicI64) -> io::Result<()> {
        if budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(io::Error::other("stopped (simulated crash)"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct DyingFile {
    inner: Arc<dyn StorageFile>,
    budget: Arc<AtomicI64>,
}

impl StorageFile for DyingFile {
    fn read_exact_at(&self, buf: &mut [u8], pos: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, pos)
    }
    fn write_all_at(&self, buf: &[u8], pos: u64) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.write_all_at(buf, pos)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn modified_ms(&self) -> Option<i64> {
        self.inner.modified_ms()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.sync_data()
    }
    fn sync_all(&self) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.sync_all()
    }
}

impl Storage for DiesAfter {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<std::ffi::OsString>> {
        self.inner.list_dir(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Arc<dyn StorageFile>> {
        if mode == OpenMode::CreateTruncate {
            DiesAfter::spend(&self.budget)?;
        }
        Ok(Arc::new(DyingFile {
            inner: self.inner.open(path, mode)?,
            budget: self.budget.clone(),
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.remove_file(path)
    }
    fn remove_dir_all(&self, dir: &Path) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.remove_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        DiesAfter::spend(&self.budget)?;
        self.inner.sync_dir(dir)
    }
}

/// A crash at every step of a pass and its swap, as a kill and as a power cut: the reopened log holds either the old or the new segments, every
/// record it holds is the one written there, and every key's latest value is there.
#[test]
fn a_crash_at_any_step_of_a_swap_leaves_the_old_or_the_new_log() {
    let tmp = tempfile::tempdir().unwrap();
    // Keys 5 and 6 are written once, in the first (oldest) segments: losing a segment
    // the swap replaces would lose them.
    let mut rounds: Vec<Vec<Entry>> = vec![vec![(Some(5), Some(b"only".to_vec()))]];
    rounds.extend((0..24).map(|i| {
        vec![
            (Some(i % 3), Some(vec![b'v'; 40])),
            (Some(7), (i % 5 != 0).then(|| vec![i])),
        ]
    }));
    rounds.insert(3, vec![(Some(6), Some(b"once".to_vec()))]);
    let mut steps_seen = 0;
    let mut outcomes = (0, 0);
    // Each step twice: a process kill (every change so far stays, as the page cache
    // keeps it) and a power cut (changes not yet made durable may vanish).
    for run in 0.. {
        let (budget, power_cut) = (run / 2, run % 2 == 1);
        let path = tmp.path().join(format!("r{run}"));
        let fs = PowerLossFs::new();
        let counter = Arc::new(AtomicI64::new(i64::MAX));
        let storage = Arc::new(DiesAfter {
            inner: fs.clone(),
            budget: counter.clone(),
        });
        let mut log =
            Log::open_in(LogDir::new(storage as Arc<dyn Storage>, &path), config(), 0).unwrap();
        let written = append_all(&mut log, &rounds, 1);
        log.flush().unwrap();
        let before = contents(&log);
        // From here on, `budget` changes succeed.
        counter.store(budget, Ordering::SeqCst);
        let result = log
            .plan_clean(log.log_end_offset(), 2, &cleaner(1 << 20))
            .ok_or(LogError::InvalidRecord("nothing to clean".into()))
            .and_then(CleanPlan::run)
            .and_then(|c| log.install_cleaned(c));
        let finished = result.is_ok();
        let after_in_memory = finished.then(|| contents(&log));
        drop(log);
        if power_cut {
            fs.power_cut(budget as u64).unwrap();
        }
        let log = Log::open_in(
            LogDir::new(PowerLossFs::new() as Arc<dyn Storage>, &path),
            config(),
            3,
        )
        .unwrap();
        let held = contents(&log);
        check_against(&log, &written);
        assert_eq!(log.log_end_offset(), *written.keys().last().unwrap() + 1);
        if held == before {
            outcomes.0 += 1;
        } else {
            outcomes.1 += 1;
        }
        if let Some(after) = after_in_memory {
            assert_eq!(held, after, "a finished pass is durable");
            steps_seen = budget;
            if power_cut {
                break;
            }
        }
        assert!(budget < 500, "the pass never finished");
    }
    assert!(steps_seen > 10, "the pass took {steps_seen} changes");
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

/// A read that took its view before a swap keeps reading the old segments' bytes, whole
/// and correct, through its open file handles, while new reads see the cleaned log.
#[test]
fn a_reader_that_started_before_a_swap_reads_the_old_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = Log::open(dir.path(), config(), 0).unwrap();
    let rounds: Vec<Vec<Entry>> = (0..40)
        .map(|i| vec![(Some(i % 2), Some(vec![i; 30]))])
        .collect();
    let written = append_all(&mut log, &rounds, 1);
    log.flush().unwrap();
    let before = log.read(0, usize::MAX, i64::MAX, false).unwrap();
    let view = log.read_view(0, i64::MAX, usize::MAX).unwrap();
    let stats = clean(&mut log, 2, &cleaner(1 << 20)).unwrap();
    assert!(stats.records_removed > 0);
    assert_eq!(view.read(usize::MAX, false).unwrap(), before);
    let after = log.read(0, usize::MAX, i64::MAX, false).unwrap();
    assert!(after.len() < before.len());
    check_against(&log, &written);
}
