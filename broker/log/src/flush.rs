//! Group commit: one fsync covers every batch appended since the last one.
//!
//! The partition takes a [`FlushJob`] under its lock, runs it without the lock (the job
//! holds shared file handles), then calls [`Log::complete_flush`] under the lock again. A
//! truncation in between must not let a job vouch for bytes written after it, so the
//! log remembers each job it handed out and caps its claim at any truncation point.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::warn;

use super::error::LogError;
use super::storage::StorageFile;
use super::Log;

/// Minimum spacing of recovery-point checkpoint writes (each costs three fsyncs).
const RECOVERY_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Jobs remembered at once; forgetting one only keeps the recovery point lower.
const MAX_PENDING: usize = 64;

/// An fsync of the segment files holding unflushed data; runs without the log's lock.
#[derive(Debug)]
pub struct FlushJob {
    /// Once `run` succeeds, every offset below this one is durable.
    pub upto: i64,
    files: Vec<Arc<dyn StorageFile>>,
}

impl FlushJob {
    /// Fsyncs (`sync_data`) every file of the job.
    pub fn run(&self) -> io::Result<()> {
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    upto: i64,
    /// Highest offset the job may still vouch for (lowered by truncations).
    cap: i64,
}

/// Jobs handed out and not yet completed.
#[derive(Debug, Default)]
pub(crate) struct PendingFlushes(Mutex<Vec<Pending>>);

impl PendingFlushes {
    fn register(&self, upto: i64) {
        let mut pending = self.0.lock();
        if pending.len() >= MAX_PENDING {
            pending.remove(0);
        }
        pending.push(Pending { upto, cap: upto });
    }

    /// After a truncation to `offset`: bytes at or past it may be rewritten, so no job
    /// issued before may vouch for them.
    pub(crate) fn cap(&self, offset: i64) {
        for p in self.0.lock().iter_mut() {
            p.cap = p.cap.min(offset);
        }
    }

    /// Removes a job with this `upto` and returns what it may vouch for. With several
    /// candidates the most capped goes first: always safe, and once all of them have
    /// completed the result is the same whatever the order.
    fn take(&self, upto: i64) -> Option<i64> {
        let mut pending = self.0.lock();
        let (i, p) = pending
            .iter()
            .enumerate()
            .filter(|(_, p)| p.upto == upto)
            .min_by_key(|(_, p)| p.cap)?;
        let claim = p.cap;
        pending.remove(i);
        Some(claim)
    }
}

impl Log {
    /// A job fsyncing every segment with data at or above the recovery point; `None`
    /// when everything is already durable.
    pub fn flush_job(&self) -> Option<FlushJob> {
        let upto = self.log_end_offset();
        if upto <= self.recovery_point {
            return None;
        }
        let files = self
            .segments()
            .filter(|s| s.size() > 0 && s.next_offset() > self.recovery_point)
            .map(|s| Arc::clone(s.file()))
            .collect();
        self.pending_flushes.register(upto);
        Some(FlushJob { upto, files })
    }

    /// Records that the job for `upto` (from [`Log::flush_job`]) has run: the recovery
    /// point becomes `max(current, upto)`, less if the log was truncated meanwhile. The
    /// checkpoint file follows at most about once a second (and always on close).
    pub fn complete_flush(&mut self, upto: i64) -> Result<(), LogError> {
        let Some(claim) = self.pending_flushes.take(upto) else {
            warn!(upto, dir = %self.dir.path().display(), "complete_flush for a job this log did not issue; ignored");
            return Ok(());
        };
        let durable = claim.min(upto).min(self.log_end_offset());
        if durable > self.recovery_point {
            self.recovery_point = durable;
        }
        let due = self
            .recovery_checkpoint_at
            .is_none_or(|at| at.elapsed() >= RECOVERY_CHECKPOINT_INTERVAL);
        if due && self.recovery_point != self.checkpointed_recovery_point {
            self.persist_recovery_point()?;
        }
        Ok(())
    }

    /// Runs a flush job inline.
    pub fn flush(&mut self) -> Result<(), LogError> {
        if let Some(job) = self.flush_job() {
            job.run()?;
            self.complete_flush(job.upto)?;
        }
        Ok(())
    }

    /// Before bytes at or past `offset` may be rewritten: lowers the recovery point and
    /// its checkpoint to at most `offset`.
    pub(crate) fn lower_recovery_point(&mut self, offset: i64) -> Result<(), LogError> {
        if self.recovery_point > offset {
            self.recovery_point = offset;
        }
        // A checkpoint above bytes that get rewritten would let a crash skip their
        // recovery, so this one is written now, not throttled.
        if self.checkpointed_recovery_point > self.recovery_point {
            self.persist_recovery_point()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::test_util::simple_batch;
    use crate::{Log, LogConfig};

    #[test]
    fn group_commit_advances_recovery_point() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        assert!(log.flush_job().is_none());
        log.append_as_leader(&mut simple_batch(1, 5, 10), 0, 1)
            .unwrap();
        let job = log.flush_job().unwrap();
        log.append_as_leader(&mut simple_batch(1, 5, 10), 0, 1)
            .unwrap();
        assert_eq!(job.upto, 5);
        job.run().unwrap();
        log.complete_flush(job.upto).unwrap();
        assert_eq!(log.recovery_point(), 5);
        log.flush().unwrap();
        assert_eq!(log.recovery_point(), 10);
        assert!(log.flush_job().is_none());
    }

    #[test]
    fn job_from_before_a_truncation_cannot_vouch_for_rewritten_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = Log::open(dir.path(), LogConfig::default(), 0).unwrap();
        for _ in 0..4 {
            log.append_as_leader(&mut simple_batch(1, 5, 10), 0, 1)
                .unwrap();
        }
        let stale = log.flush_job().unwrap();
        assert_eq!(stale.upto, 20);
        log.truncate_to(10).unwrap();
        for _ in 0..2 {
            log.append_as_leader(&mut simple_batch(1, 5, 10), 0, 1)
                .unwrap();
        }
        let fresh = log.flush_job().unwrap();
        assert_eq!(fresh.upto, 20);
        stale.run().unwrap();
        log.complete_flush(stale.upto).unwrap();
        assert_eq!(
            log.recovery_point(),
            10,
            "the stale job only covers what survived"
        );
        fresh.run().unwrap();
        log.complete_flush(fresh.upto).unwrap();
        assert_eq!(log.recovery_point(), 20);
        log.complete_flush(99).unwrap();
        assert_eq!(log.recovery_point(), 20, "unknown jobs are ignored");
    }
}
