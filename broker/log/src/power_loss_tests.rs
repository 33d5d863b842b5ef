//! The power-loss storage itself, and the log and its checkpoints under power cuts: what
//! was fsynced before the cut is all there, byte for byte, and nothing else is invented.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use crate::batch::batches;
use crate::power_loss::{FaultOn, IoFault, PowerLossFs};
use crate::storage::{LocalFs, LogDir, OpenMode, Storage};
use crate::test_util::simple_batch;
use crate::{Log, LogConfig};

fn on(fs: &Arc<PowerLossFs>, path: &Path) -> LogDir {
    LogDir::new(fs.clone() as Arc<dyn Storage>, path)
}

#[test]
fn synced_data_survives_and_unsynced_data_can_vanish() {
    let tmp = tempfile::tempdir().unwrap();
    let mut vanished = 0;
    for seed in 0..32 {
        let path = tmp.path().join(format!("d{seed}"));
        let fs = PowerLossFs::new();
        let dir = on(&fs, &path);
        dir.create().unwrap();
        let f = dir.open("a", OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"durable|", 0).unwrap();
        f.sync_data().unwrap();
        dir.sync().unwrap();
        f.write_all_at(b"volatile", 8).unwrap();
        fs.power_cut(seed).unwrap();
        let data = std::fs::read(path.join("a")).unwrap();
        assert!(data.starts_with(b"durable|"), "seed {seed}: {data:?}");
        // What is left of the unsynced write is a prefix of it, never other bytes.
        assert!(
            b"durable|volatile".starts_with(&data),
            "seed {seed}: {data:?}"
        );
        if data.len() < 16 {
            vanished += 1;
        }
        assert!(
            fs.open(&path.join("a"), OpenMode::Existing).is_err(),
            "dead after the cut"
        );
    }
    assert!(vanished > 0, "some cut drops or tears the unsynced write");
}

#[test]
fn a_new_file_needs_its_directory_synced() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut kept, mut lost) = (0, 0);
    for seed in 0..32 {
        let path = tmp.path().join(format!("d{seed}"));
        let fs = PowerLossFs::new();
        let dir = on(&fs, &path);
        dir.create().unwrap();
        let f = dir.open("new", OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"x", 0).unwrap();
        f.sync_all().unwrap();
        fs.power_cut(seed).unwrap();
        if path.join("new").exists() {
            kept += 1;
            assert_eq!(std::fs::read(path.join("new")).unwrap(), b"x");
        } else {
            lost += 1;
        }
        // Synced directory: always there.
        let fs = PowerLossFs::new();
        let dir = on(&fs, &path);
        let f = dir.open("synced", OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"y", 0).unwrap();
        f.sync_all().unwrap();
        dir.sync().unwrap();
        fs.power_cut(seed).unwrap();
        assert_eq!(std::fs::read(path.join("synced")).unwrap(), b"y");
    }
    assert!(kept > 0 && lost > 0, "kept {kept}, lost {lost}");
}

#[test]
fn unsynced_renames_and_removals_can_be_undone() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut reverted, mut stayed) = (0, 0);
    for seed in 0..32 {
        let path = tmp.path().join(format!("d{seed}"));
        let fs = PowerLossFs::new();
        let dir = on(&fs, &path);
        dir.create().unwrap();
        dir.write_atomic("target", b"old").unwrap();
        dir.write_atomic("gone", b"g").unwrap();
        // Replace `target` and remove `gone` without syncing the directory.
        let f = dir.open("target.tmp", OpenMode::CreateTruncate).unwrap();
        f.write_all_at(b"new", 0).unwrap();
        f.sync_all().unwrap();
        fs.rename(&path.join("target.tmp"), &path.join("target"))
            .unwrap();
        fs.remove_file(&path.join("gone")).unwrap();
        assert_eq!(dir.list().unwrap().len(), 1, "stashes are hidden");
        fs.power_cut(seed).unwrap();
        let target = std::fs::read(path.join("target")).unwrap();
        assert!(target == b"old" || target == b"new", "{target:?}");
        if target == b"old" {
            reverted += 1;
        } else {
            stayed += 1;
        }
        // The rename is older than the removal: a kept removal implies a kept rename.
        if !path.join("gone").exists() {
            assert_eq!(target, b"new");
        }
        let names: Vec<String> = std::fs::read_dir(&path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with(".powerloss")),
            "no stash left: {names:?}"
        );
    }
    assert!(reverted > 0 && stayed > 0);
}

#[test]
fn injected_faults_fail_only_what_they_name() {
    let tmp = tempfile::tempdir().unwrap();
    let fs = PowerLossFs::new();
    let a = on(&fs, &tmp.path().join("a"));
    let b = on(&fs, &tmp.path().join("b"));
    a.create().unwrap();
    b.create().unwrap();
    let fa = a.open("f", OpenMode::CreateTruncate).unwrap();
    let fb = b.open("f", OpenMode::CreateTruncate).unwrap();
    fs.inject(IoFault {
        under: tmp.path().join("a"),
        on: FaultOn::Syncs,
    });
    fa.write_all_at(b"1", 0).unwrap();
    let err = fa.sync_data().unwrap_err();
    assert!(err.to_string().contains("os error 5"), "{err}");
    fb.write_all_at(b"1", 0).unwrap();
    fb.sync_data().unwrap();
    fs.inject(IoFault {
        under: tmp.path().join("b"),
        on: FaultOn::Writes,
    });
    assert!(fb.write_all_at(b"2", 1).is_err());
    fs.clear_faults();
    fa.sync_data().unwrap();
    fb.write_all_at(b"2", 1).unwrap();
}

/// One step of a log's life before the power cut.
#[derive(Debug, Clone)]
enum Step {
    /// Append a batch of `records` records of `value_len`-byte values.
    Append { records: usize, value_len: usize },
    /// Fsync everything appended so far (what an acknowledgement waits for).
    Flush,
    /// Checkpoint the high watermark at the flushed offset.
    CheckpointHw,
    /// Move the log start to the middle of what is durable.
    DeleteRecords,
    /// Close cleanly and open again on the same storage.
    Reopen,
    /// A new leader epoch starts at the LEO.
    NewEpoch,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1usize..5, 1usize..400).prop_map(|(records, value_len)| Step::Append { records, value_len }),
        3 => Just(Step::Flush),
        1 => Just(Step::CheckpointHw),
        1 => Just(Step::DeleteRecords),
        1 => Just(Step::Reopen),
        1 => Just(Step::NewEpoch),
    ]
}

fn config() -> LogConfig {
    LogConfig {
        // Small segments: rolls, several files and directory syncs in every run.
        segment_bytes: 2048,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Every batch below the flushed offset survives a power cut byte for byte, the log
    /// start and the HW checkpoint are what was last made durable, and everything the
    /// reopened log serves is a batch that was appended at that offset.
    #[test]
    fn the_log_keeps_what_was_flushed_through_a_power_cut(
        steps in proptest::collection::vec(step(), 1..60),
        seed in any::<u64>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("t-0");
        let fs = PowerLossFs::new();
        let mut log = Log::open_in(on(&fs, &path), config(), 0).unwrap();
        let mut stored: BTreeMap<i64, Bytes> = BTreeMap::new();
        let mut flushed = 0i64;
        let mut hw_checkpoint: Option<i64> = None;
        let mut log_start = 0i64;
        let mut epoch = 0;
        log.assign_epoch(epoch, 0).unwrap();
        for (i, s) in steps.iter().enumerate() {
            match s {
                Step::Append { records, value_len } => {
                    let mut batch = simple_batch(i as i64, *records, *value_len);
                    let info = log.append_as_leader(&mut batch, epoch, i as i64).unwrap();
                    let bytes = log.read(info.first_offset, 1, i64::MAX, true).unwrap();
                    stored.insert(info.first_offset, bytes);
                }
                Step::Flush => {
                    log.flush().unwrap();
                    flushed = log.log_end_offset();
                }
                Step::CheckpointHw => {
                    log.checkpoint_high_watermark(flushed).unwrap();
                    hw_checkpoint = Some(flushed);
                }
                Step::DeleteRecords => {
                    let target = log_start + (flushed - log_start) / 2;
                    if target > log_start {
                        log_start = log.delete_records_before(target).unwrap();
                    }
                }
                Step::NewEpoch => {
                    epoch += 1;
                    log.assign_epoch(epoch, log.log_end_offset()).unwrap();
                }
                Step::Reopen => {
                    // A clean close flushes everything.
                    flushed = log.log_end_offset();
                    log.close().unwrap();
                    log = Log::open_in(on(&fs, &path), config(), i as i64).unwrap();
                }
            }
        }
        let before_cut = log.log_end_offset();
        fs.power_cut(seed).unwrap();
        drop(log);
        let log = Log::open_in(LogDir::new(LocalFs::shared(), &path), config(), 1_000).unwrap();
        let leo = log.log_end_offset();
        prop_assert!(leo >= flushed, "LEO {leo} below the flushed offset {flushed}");
        prop_assert!(leo <= before_cut);
        prop_assert_eq!(log.log_start_offset(), log_start);
        prop_assert_eq!(log.high_watermark_checkpoint(), hw_checkpoint);
        // Everything served is exactly what was appended at that offset, and everything
        // flushed (above the log start) is served.
        let mut offset = log.log_start_offset();
        while offset < leo {
            let got = log.read(offset, 1, i64::MAX, true).unwrap();
            let batch = batches(&got).next();
            prop_assert!(batch.is_some(), "nothing served at {} below the LEO {} (start {}, {} segments)", offset, leo, log.log_start_offset(), log.segment_count());
            let batch = batch.unwrap().unwrap();
            let base = batch.header().base_offset;
            let want = stored.get(&base);
            prop_assert!(want.is_some(), "batch at {} was never appended", base);
            prop_assert_eq!(batch.as_bytes(), &want.unwrap()[..]);
            // The epoch cache agrees with the batches it describes.
            let cached = log
                .leader_epoch_cache()
                .entries()
                .iter()
                .rev()
                .find(|e| e.start_offset <= base.max(log.log_start_offset()))
                .map(|e| e.epoch);
            prop_assert_eq!(cached, Some(batch.header().partition_leader_epoch), "epoch of the batch at {}", base);
            offset = batch.header().last_offset() + 1;
        }
        prop_assert_eq!(offset, leo);
    }
}
