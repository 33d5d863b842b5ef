//! One partition replica on this broker: its log, its leader state, and the progress
//! (durable offset, high watermark) that acknowledgements and fetches wait on.
//!
//! Appends happen under the log's lock; fsyncs do not (group commit, see [`flusher`]):
//! while one fsync runs, later appends queue up and the next fsync covers them all.
pub mod flusher;
pub mod replica_state;
pub mod settings;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};

pub use settings::PartitionSettings;

use crate::error::{BrokerError, Result};
use crate::log::{AppendInfo, Log, LogConfig, LogError};

/// A topic name and partition index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Offsets that waiters watch. Published whenever one of them moves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every offset below this is fsynced.
    pub durable: i64,
    /// Consumers may read below this.
    pub high_watermark: i64,
    /// Set once the log failed (I/O error): the partition is offline here.
    pub failed: Option<String>,
}

/// Leadership facts from the metadata image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderState {
    /// Whether this broker leads the partition.
    pub is_leader: bool,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// Members of the ISR, the leader included.
    pub isr_size: usize,
}

/// A partition replica hosted by this broker.
pub struct Partition {
    /// Name and index.
    pub tp: TopicPartition,
    /// Topic id the log belongs to (a re-created topic gets a fresh log).
    pub topic_id: [u8; 16],
    log: Mutex<Log>,
    leader: Mutex<LeaderState>,
    settings: Mutex<PartitionSettings>,
    progress: watch::Sender<Progress>,
    flush_wanted: Notify,
    closed: AtomicBool,
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir` and starts its flusher.
    pub fn open(
        dir: &Path,
        tp: TopicPartition,
        topic_id: [u8; 16],
        log_config: LogConfig,
        settings: PartitionSettings,
        now_ms: i64,
    ) -> Result<Arc<Partition>> {
        let mut log = Log::open(dir, log_config, now_ms)?;
        // Recovery checked the tail's CRCs, but after a process crash it may still sit
        // only in the page cache: fsync it before anyone may read it or count on it, so a
        // later power loss cannot take back offsets a consumer has already seen.
        log.flush()?;
        let leo = log.log_end_offset();
        let (progress, _) = watch::channel(Progress {
            durable: leo,
            high_watermark: leo,
            failed: None,
        });
        let partition = Arc::new(Partition {
            tp,
            topic_id,
            log: Mutex::new(log),
            leader: Mutex::new(LeaderState {
                is_leader: false,
                leader_epoch: -1,
                isr_size: 1,
            }),
            settings: Mutex::new(settings),
            progress,
            flush_wanted: Notify::new(),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(flusher::run(partition.clone()));
        Ok(partition)
    }

    /// Current leadership state.
    pub fn leader_state(&self) -> LeaderState {
        *self.leader.lock()
    }

    /// Applies leadership from the metadata image; a new leader epoch starts at our LEO.
    pub fn set_leader_state(
        &self,
        is_leader: bool,
        leader_epoch: i32,
        isr_size: usize,
    ) -> Result<()> {
        let mut leader = self.leader.lock();
        if is_leader && leader_epoch > leader.leader_epoch {
            let mut log = self.log.lock();
            let leo = log.log_end_offset();
            let latest = log.leader_epoch_cache().latest_epoch();
            if latest.is_none_or(|e| e < leader_epoch) {
                log.assign_epoch(leader_epoch, leo)?;
            }
        }
        *leader = LeaderState {
            is_leader,
            leader_epoch,
            isr_size,
        };
        drop(leader);
        // The ISR may have changed what the high watermark can be.
        self.advance_high_watermark();
        Ok(())
    }

    /// Current settings derived from topic configs.
    pub fn settings(&self) -> PartitionSettings {
        self.settings.lock().clone()
    }

    /// Applies changed topic configs.
    pub fn update_config(&self, log_config: LogConfig, settings: PartitionSettings) {
        self.log.lock().set_config(log_config);
        *self.settings.lock() = settings;
        // A switch to fsync-per-ack must not leave earlier appends un-synced.
        self.flush_wanted.notify_one();
    }

    /// Checks a client-supplied leader epoch against ours (KIP-320); -1 means "not given".
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<LeaderState> {
        let state = self.leader_state();
        if client_epoch >= 0 && client_epoch < state.leader_epoch {
            return Err(BrokerError::FencedLeaderEpoch(format!(
                "{}: leader epoch {client_epoch} is older than the current {}",
                self.tp, state.leader_epoch
            )));
        }
        if client_epoch > state.leader_epoch {
            return Err(BrokerError::UnknownLeaderEpoch(format!(
                "{}: leader epoch {client_epoch} is newer than the current {}",
                self.tp, state.leader_epoch
            )));
        }
        Ok(state)
    }

    fn ensure_leader(&self) -> Result<LeaderState> {
        self.ensure_online()?;
        let state = self.leader_state();
        if !state.is_leader {
            return Err(BrokerError::NotLeaderOrFollower(format!(
                "this broker does not lead {}",
                self.tp
            )));
        }
        Ok(state)
    }

    fn ensure_online(&self) -> Result<()> {
        match &self.progress.borrow().failed {
            Some(reason) => Err(BrokerError::StorageOffline(format!(
                "{}: {reason}",
                self.tp
            ))),
            None => Ok(()),
        }
    }

    /// Leader append of client batches; returns where they landed. Acknowledgement
    /// waits are separate ([`Partition::wait_durable`], [`Partition::wait_high_watermark`]).
    pub fn append_as_leader(&self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.ensure_online()?;
        let mut buf = records.to_vec();
        let (info, sync) = {
            // Hold the leader state across the append (lock order: leader, then log), so
            // leadership cannot change between the check and the write, and the batch is
            // stamped with the epoch that is current when it lands.
            let leader = self.leader.lock();
            if !leader.is_leader {
                return Err(BrokerError::NotLeaderOrFollower(format!(
                    "this broker does not lead {}",
                    self.tp
                )));
            }
            let state = *leader;
            let mut log = self.log.lock();
            let info = match log.append_as_leader(&mut buf, state.leader_epoch, now_ms) {
                Ok(info) => info,
                Err(LogError::Io(e)) => {
                    // A write error (disk full, I/O error) leaves the tail unknown: take the
                    // partition offline here rather than acknowledge on a broken log.
                    drop(log);
                    drop(leader);
                    self.fail(format!("append failed: {e}"));
                    return Err(LogError::Io(e).into());
                }
                Err(e) => return Err(e.into()),
            };
            let sync = self.settings.lock().sync_before_ack;
            drop(log);
            drop(leader);
            (info, sync)
        };
        if sync {
            self.flush_wanted.notify_one();
        } else {
            self.advance_high_watermark();
        }
        Ok(info)
    }

    /// Recomputes the high watermark. With one replica it is the LEO, or the durable
    /// offset when acknowledgements wait for fsync (so no consumer ever reads data a
    /// crash could take back). With other ISR members it cannot move here: followers do
    /// not fetch yet (replication is future work), so nothing is known to be on them, and
    /// acks=all waits — as Kafka does while followers lag and the ISR has not shrunk.
    fn advance_high_watermark(&self) {
        if self.leader_state().isr_size > 1 {
            return;
        }
        let leo = self.log.lock().log_end_offset();
        let sync = self.settings.lock().sync_before_ack;
        self.progress.send_if_modified(|p| {
            let target = if sync { p.durable.min(leo) } else { leo };
            if target > p.high_watermark {
                p.high_watermark = target;
                true
            } else {
                false
            }
        });
    }

    /// Resolves once every offset below `end` is fsynced.
    pub async fn wait_durable(&self, end: i64) -> Result<()> {
        self.wait_for(|p| p.durable >= end).await
    }

    /// Resolves once the high watermark reaches `end`.
    pub async fn wait_high_watermark(&self, end: i64) -> Result<()> {
        self.wait_for(|p| p.high_watermark >= end).await
    }

    /// Resolves once `reached` holds, or with an error once the partition fails.
    async fn wait_for(&self, reached: impl Fn(&Progress) -> bool) -> Result<()> {
        let mut rx = self.progress.subscribe();
        let p = rx
            .wait_for(|p| reached(p) || p.failed.is_some())
            .await
            .map_err(|_| BrokerError::StorageOffline(format!("{} closed", self.tp)))?;
        match &p.failed {
            Some(reason) => Err(BrokerError::StorageOffline(format!(
                "{}: {reason}",
                self.tp
            ))),
            None => Ok(()),
        }
    }

    /// A receiver that changes whenever durable offset or high watermark move.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Current high watermark.
    pub fn high_watermark(&self) -> i64 {
        self.progress.borrow().high_watermark
    }

    /// Log start offset.
    pub fn log_start_offset(&self) -> i64 {
        self.log.lock().log_start_offset()
    }

    /// Log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    /// Reads committed batches (below the high watermark) for a consumer.
    /// Returns the records and the high watermark that bounded them.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> Result<(Bytes, i64)> {
        self.ensure_online()?;
        let hw = self.high_watermark();
        let log = self.log.lock();
        Ok((log.read(offset, max_bytes, hw, min_one_batch)?, hw))
    }

    /// Runs `f` with the log locked, for lookups (ListOffsets, epochs).
    pub fn with_log<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        f(&mut self.log.lock())
    }

    /// Leader-side DeleteRecords: `offset` -1 means the high watermark.
    pub fn delete_records_before(&self, offset: i64) -> Result<i64> {
        self.ensure_leader()?;
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let start = self.log_start_offset();
        if target < 0 || target > hw {
            return Err(crate::log::LogError::OffsetOutOfRange {
                offset: target,
                log_start_offset: start,
                log_end_offset: hw,
            }
            .into());
        }
        Ok(self.log.lock().delete_records_before(target)?)
    }

    /// Periodic work: retention, and fsync for topics that flush on an interval.
    pub fn maintain(&self, now_ms: i64) {
        let retention = self.log.lock().enforce_retention(now_ms);
        if let Err(e) = retention {
            self.fail(format!("retention failed: {e}"));
        }
        let settings = self.settings();
        if !settings.sync_before_ack && settings.flush_due(now_ms) {
            self.flush_wanted.notify_one();
        }
    }

    /// Takes the partition offline on this broker after a storage error.
    pub fn fail(&self, reason: String) {
        tracing::error!(partition = %self.tp, %reason, "partition log failed; offline on this broker");
        self.progress.send_modify(|p| p.failed = Some(reason));
    }

    /// Stops the flusher and closes the log cleanly (flush, indexes, checkpoints).
    pub fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::SeqCst);
        self.flush_wanted.notify_one();
        let mut log = self.log.lock();
        log.flush()?;
        let leo = log.log_end_offset();
        log.close_in_place()?;
        drop(log);
        // Acknowledgements still waiting on this fsync complete instead of timing out.
        self.progress.send_if_modified(|p| {
            let moved = leo > p.durable;
            p.durable = p.durable.max(leo);
            moved
        });
        self.advance_high_watermark();
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}
