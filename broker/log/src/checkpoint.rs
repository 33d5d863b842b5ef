//! Checkpoint files of a partition directory, in Kafka's text format:
//! a version line (`0`), a count line, then one entry per line.
//!
//! Every write is atomic (write `<name>.tmp`, fsync, rename, fsync the directory), so a
//! crash leaves either the old or the new content; a stray `.tmp` is removed on open.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use super::epoch_cache::EpochEntry;
use super::storage::LogDir;

/// Every offset below this one is on disk (fsynced).
pub(crate) const RECOVERY_POINT_FILE: &str = "recovery-point-offset-checkpoint";
/// First offset still readable (moved by retention and DeleteRecords).
pub(crate) const LOG_START_FILE: &str = "log-start-offset-checkpoint";
/// Leader epoch -> start offset entries.
pub(crate) const LEADER_EPOCH_FILE: &str = "leader-epoch-checkpoint";
/// The high watermark last known here (Kafka's `replication-offset-checkpoint`): a
/// restarted leader starts from it instead of exposing an unreplicated tail.
pub(crate) const HIGH_WATERMARK_FILE: &str = "high-watermark-checkpoint";
/// The idempotent producers' state at some offset (see `partition::producer_state`).
pub(crate) const PRODUCER_STATE_FILE: &str = "producer-state-snapshot";
pub(crate) use crate::storage::TMP_SUFFIX;

const VERSION: &str = "0";

/// Writes `contents` to `dir/name` atomically and durably.
pub(crate) fn write_atomic(dir: &LogDir, name: &str, contents: &[u8]) -> io::Result<()> {
    dir.write_atomic(name, contents)
}

/// Replaces `dir/name` with fsynced `contents` through a rename; the caller fsyncs the
/// directory (once for several files).
pub(crate) fn write_replace(dir: &LogDir, name: &str, contents: &[u8]) -> io::Result<()> {
    dir.write_replace(name, contents)
}

fn encode_lines<I: IntoIterator<Item = String>>(count: usize, lines: I) -> String {
    let mut out = format!("{VERSION}\n{count}\n");
    for line in lines {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Returns the entry lines after checking the version and count.
fn decode_lines(text: &str) -> Result<Vec<&str>, String> {
    let mut lines = text.lines().map(str::trim);
    match lines.next() {
        Some(VERSION) => {}
        Some(v) => {
            return Err(format!(
                "unsupported version line {v:?}, expected {VERSION:?}"
            ))
        }
        None => return Err("empty file".to_string()),
    }
    let count: usize = lines
        .next()
        .ok_or("missing count line")?
        .parse()
        .map_err(|e| format!("bad count line: {e}"))?;
    let entries: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    if entries.len() != count {
        return Err(format!(
            "count line says {count} entries, file has {}",
            entries.len()
        ));
    }
    Ok(entries)
}

/// Text of a single-offset checkpoint.
pub(crate) fn encode_offset(offset: i64) -> String {
    encode_lines(1, [offset.to_string()])
}

/// Parses a single-offset checkpoint.
pub(crate) fn decode_offset(text: &str) -> Result<i64, String> {
    match decode_lines(text)?.as_slice() {
        [line] => line
            .parse()
            .map_err(|e| format!("bad offset {line:?}: {e}")),
        other => Err(format!("expected 1 entry, found {}", other.len())),
    }
}

/// Text of the leader epoch checkpoint.
pub(crate) fn encode_epochs(entries: &[EpochEntry]) -> String {
    encode_lines(
        entries.len(),
        entries
            .iter()
            .map(|e| format!("{} {}", e.epoch, e.start_offset)),
    )
}

/// Parses the leader epoch checkpoint (entries must have increasing epochs and offsets).
pub(crate) fn decode_epochs(text: &str) -> Result<Vec<EpochEntry>, String> {
    let mut out: Vec<EpochEntry> = Vec::new();
    for line in decode_lines(text)? {
        let mut parts = line.split_whitespace();
        let (Some(epoch), Some(start), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "bad entry {line:?}, expected \"epoch startOffset\""
            ));
        };
        let entry = EpochEntry {
            epoch: epoch
                .parse()
                .map_err(|e| format!("bad epoch in {line:?}: {e}"))?,
            start_offset: start
                .parse()
                .map_err(|e| format!("bad offset in {line:?}: {e}"))?,
        };
        if entry.epoch < 0 || entry.start_offset < 0 {
            return Err(format!("negative value in {line:?}"));
        }
        if let Some(prev) = out.last() {
            if entry.epoch <= prev.epoch || entry.start_offset < prev.start_offset {
                return Err(format!(
                    "entry {line:?} does not follow {} {}",
                    prev.epoch, prev.start_offset
                ));
            }
        }
        out.push(entry);
    }
    Ok(out)
}

/// Why a checkpoint file could not be read.
#[derive(Debug, Error)]
pub(crate) enum ReadError {
    /// The file system failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The file exists but does not parse; recovery falls back to a safe value.
    #[error("corrupt checkpoint file {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Reads `dir/name`; `None` when it does not exist.
fn read_text(dir: &LogDir, name: &str) -> Result<Option<String>, ReadError> {
    match dir.read_if_present(name)? {
        Some(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| ReadError::Corrupt {
                path: dir.join(name),
                reason: "not UTF-8 text".to_string(),
            }),
        None => Ok(None),
    }
}

fn corrupt(dir: &LogDir, name: &str, reason: String) -> ReadError {
    ReadError::Corrupt {
        path: dir.join(name),
        reason,
    }
}

/// Reads a single-offset checkpoint; `None` when missing.
pub(crate) fn read_offset(dir: &LogDir, name: &str) -> Result<Option<i64>, ReadError> {
    match read_text(dir, name)? {
        None => Ok(None),
        Some(text) => decode_offset(&text)
            .map(Some)
            .map_err(|r| corrupt(dir, name, r)),
    }
}

/// Writes a single-offset checkpoint.
pub(crate) fn write_offset(dir: &LogDir, name: &str, offset: i64) -> io::Result<()> {
    write_atomic(dir, name, encode_offset(offset).as_bytes())
}

/// Reads the leader epoch checkpoint; `None` when missing.
pub(crate) fn read_epochs(dir: &LogDir) -> Result<Option<Vec<EpochEntry>>, ReadError> {
    match read_text(dir, LEADER_EPOCH_FILE)? {
        None => Ok(None),
        Some(text) => decode_epochs(&text)
            .map(Some)
            .map_err(|r| corrupt(dir, LEADER_EPOCH_FILE, r)),
    }
}

/// Writes the leader epoch checkpoint.
pub(crate) fn write_epochs(dir: &LogDir, entries: &[EpochEntry]) -> io::Result<()> {
    write_atomic(dir, LEADER_EPOCH_FILE, encode_epochs(entries).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fs;

    #[test]
    fn files_round_trip_and_corruption_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LogDir::local(tmp.path());
        assert_eq!(read_offset(&dir, RECOVERY_POINT_FILE).unwrap(), None);
        write_offset(&dir, RECOVERY_POINT_FILE, 1234).unwrap();
        assert_eq!(read_offset(&dir, RECOVERY_POINT_FILE).unwrap(), Some(1234));
        let entries = vec![
            EpochEntry {
                epoch: 1,
                start_offset: 0,
            },
            EpochEntry {
                epoch: 3,
                start_offset: 50,
            },
        ];
        write_epochs(&dir, &entries).unwrap();
        assert_eq!(read_epochs(&dir).unwrap(), Some(entries));
        assert_eq!(
            fs::read_to_string(tmp.path().join(LEADER_EPOCH_FILE)).unwrap(),
            "0\n2\n1 0\n3 50\n"
        );

        fs::write(tmp.path().join(LOG_START_FILE), "0\n1\nbanana\n").unwrap();
        let err = read_offset(&dir, LOG_START_FILE).unwrap_err();
        assert!(err.to_string().contains(LOG_START_FILE), "{err}");
        fs::write(tmp.path().join(LEADER_EPOCH_FILE), "0\n2\n1 0\n").unwrap();
        assert!(matches!(read_epochs(&dir), Err(ReadError::Corrupt { .. })));
    }

    proptest! {
        #[test]
        fn offset_round_trip(offset in any::<i64>()) {
            prop_assert_eq!(decode_offset(&encode_offset(offset)), Ok(offset));
        }

        #[test]
        fn epochs_round_trip(steps in proptest::collection::vec((1i32..100, 0i64..1_000_000), 0..20)) {
            let (mut epoch, mut offset) = (0i32, 0i64);
            let entries: Vec<EpochEntry> = steps.into_iter().map(|(de, doff)| {
                epoch += de;
                offset += doff;
                EpochEntry { epoch, start_offset: offset }
            }).collect();
            prop_assert_eq!(decode_epochs(&encode_epochs(&entries)), Ok(entries));
        }

        #[test]
        fn decoders_never_panic(text in ".{0,80}") {
            let _ = decode_offset(&text);
            let _ = decode_epochs(&text);
        }
    }
}
