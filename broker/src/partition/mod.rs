//! One partition replica on this broker: its log, its role (leader, holding the
//! [`ReplicaState`] of its followers, or follower of another broker), and the progress
//! (log end, durable offset, high watermark) that acknowledgements and fetches wait on.
//!
//! Appends happen under the log's lock; fsyncs do not (group commit, see [`flusher`]):
//! while one fsync runs, later appends queue up and the next fsync covers them all.
//! Lock order: role, then log, then settings.
pub mod flusher;
pub mod producer_state;
pub mod replica_state;
pub mod settings;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use spate_metadata::ids::{BrokerEpoch, NodeId, PartitionEpoch};
use tokio::sync::{watch, Notify};

pub use producer_state::{AppendCheck, ProducerStateManager, SequenceError};
pub use replica_state::{IsrChange, ReplicaState, ReplicaStateError};
pub use settings::PartitionSettings;

use crate::error::{BrokerError, Result};
use replica_state::LeaderStart;
use spate_log::batch::{self, BatchHeader};
use spate_log::{AppendInfo, Log, LogConfig, LogError};

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
    /// The local log end offset.
    pub log_end_offset: i64,
    /// Every offset below this is fsynced.
    pub durable: i64,
    /// Consumers may read below this.
    pub high_watermark: i64,
    /// The leader epoch while this replica leads; `None` while it follows.
    pub leading_epoch: Option<i32>,
    /// Members of the committed ISR.
    pub isr_size: usize,
    /// Set once the log failed (I/O error): the partition is offline here.
    pub failed: Option<String>,
}

/// Leadership facts as this replica holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaderState {
    /// Whether this broker leads the partition.
    pub is_leader: bool,
    /// Current leader epoch.
    pub leader_epoch: i32,
    /// Members of the ISR, the leader included.
    pub isr_size: usize,
}

/// The partition's state in a metadata image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Assigned replicas; the first is the preferred leader.
    pub replicas: Vec<NodeId>,
    /// Committed ISR.
    pub isr: Vec<NodeId>,
    /// The leader, `None` while offline.
    pub leader: Option<NodeId>,
    /// Leader epoch.
    pub leader_epoch: i32,
    /// Partition epoch.
    pub partition_epoch: i32,
}

/// What applying an [`Assignment`] changed for this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Same role and epoch as before.
    Unchanged,
    /// This replica now leads (stop fetching).
    Leading,
    /// Follow `leader` from `leader_epoch` on: truncate as KIP-279 says, then fetch.
    Follow {
        /// The leader to fetch from.
        leader: NodeId,
        /// Its epoch.
        leader_epoch: i32,
    },
    /// No leader for now (stop fetching).
    Leaderless,
}

enum Role {
    Follower {
        leader: Option<NodeId>,
        leader_epoch: i32,
        isr_size: usize,
    },
    Leader(Box<ReplicaState>),
}

/// A leader's answer to one follower fetch.
#[derive(Debug, Clone)]
pub struct FollowerFetch {
    /// Batches from the fetch offset on (up to the leader's LEO).
    pub records: Bytes,
    /// The leader's high watermark after this fetch.
    pub high_watermark: i64,
    /// The leader's log start.
    pub log_start_offset: i64,
    /// The leader's LEO.
    pub log_end_offset: i64,
    /// An ISR expansion to propose to the controller.
    pub isr_change: Option<IsrChange>,
}

/// A partition replica hosted by this broker.
pub struct Partition {
    /// Name and index.
    pub tp: TopicPartition,
    /// Topic id the log belongs to (a re-created topic gets a fresh log).
    pub topic_id: [u8; 16],
    local_id: NodeId,
    log: Mutex<Log>,
    role: Mutex<Role>,
    settings: Mutex<PartitionSettings>,
    progress: watch::Sender<Progress>,
    flush_wanted: Notify,
    hw_checkpointed: AtomicI64,
    /// Idempotent producers' epochs and last batches (locked after the log).
    producers: Mutex<ProducerStateManager>,
    /// Map end offset of the last producer-state snapshot saved.
    producers_saved: AtomicI64,
    closed: AtomicBool,
}

/// How long an idempotent producer's state is kept after its last write (Kafka's
/// `producer.id.expiration.ms`).
const PRODUCER_EXPIRATION_MS: i64 = 24 * 3600 * 1000;
/// Bytes read per step when replaying the log into producer state.
const REPLAY_CHUNK: usize = 8 * 1024 * 1024;

/// Replays the batch headers of `log` from `state`'s map end offset (or the log start,
/// when the snapshot is ahead of the log) into `state`.
fn rebuild_producer_state(log: &Log, state: Option<ProducerStateManager>) -> ProducerStateManager {
    let leo = log.log_end_offset();
    let mut state = state
        .filter(|s| s.map_end_offset() <= leo)
        .unwrap_or_default();
    let mut next = state.map_end_offset().max(log.log_start_offset());
    while next < leo {
        let Ok(chunk) = log.read(next, REPLAY_CHUNK, leo, true) else {
            break;
        };
        let headers: Vec<BatchHeader> = batch::batches(&chunk)
            .map_while(|v| v.ok().map(|v| *v.header()))
            .collect();
        let Some(last) = headers.last() else { break };
        next = last.last_offset() + 1;
        state.replay(headers.iter());
    }
    state
}

/// Headers of the batches in `records` (stops at the first malformed one).
fn batch_headers(records: &[u8]) -> Vec<BatchHeader> {
    batch::batches(records)
        .map_while(|v| v.ok().map(|v| *v.header()))
        .collect()
}

impl Partition {
    /// Opens (recovering if needed) the log in `dir` and starts its flusher. The replica
    /// starts as a follower of nobody; [`Partition::apply_assignment`] gives it a role.
    pub fn open(
        dir: &Path,
        tp: TopicPartition,
        topic_id: [u8; 16],
        local_id: NodeId,
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
        // The high watermark restarts from its checkpoint: what lies above it may never
        // have reached the other replicas, and a leader must earn it again before a
        // consumer may read it.
        let hw = log
            .high_watermark_checkpoint()
            .unwrap_or(0)
            .clamp(log.log_start_offset(), leo);
        let snapshot = log
            .producer_state_snapshot()
            .and_then(|bytes| ProducerStateManager::decode_snapshot(&bytes).ok());
        let producers = rebuild_producer_state(&log, snapshot);
        let producers_saved = producers.map_end_offset();
        let (progress, _) = watch::channel(Progress {
            log_end_offset: leo,
            durable: leo,
            high_watermark: hw,
            leading_epoch: None,
            isr_size: 0,
            failed: None,
        });
        let partition = Arc::new(Partition {
            tp,
            topic_id,
            local_id,
            log: Mutex::new(log),
            role: Mutex::new(Role::Follower {
                leader: None,
                leader_epoch: -1,
                isr_size: 0,
            }),
            settings: Mutex::new(settings),
            progress,
            flush_wanted: Notify::new(),
            hw_checkpointed: AtomicI64::new(hw),
            producers: Mutex::new(producers),
            producers_saved: AtomicI64::new(producers_saved),
            closed: AtomicBool::new(false),
        });
        tokio::spawn(flusher::run(partition.clone()));
        Ok(partition)
    }

    /// Current leadership state.
    pub fn leader_state(&self) -> LeaderState {
        match &*self.role.lock() {
            Role::Leader(rs) => LeaderState {
                is_leader: true,
                leader_epoch: rs.leader_epoch().0,
                isr_size: rs.isr().len(),
            },
            Role::Follower {
                leader_epoch,
                isr_size,
                ..
            } => LeaderState {
                is_leader: false,
                leader_epoch: *leader_epoch,
                isr_size: *isr_size,
            },
        }
    }

    /// Applies the partition's state from a metadata image (or an AlterPartition answer
    /// with the same leader epoch): become leader, follow another broker, or take a
    /// committed ISR change. A new leader epoch starts at our LEO.
    pub fn apply_assignment(&self, a: &Assignment, now_ms: i64) -> Result<RoleChange> {
        let mut role = self.role.lock();
        let current_epoch = match &*role {
            Role::Leader(rs) => rs.leader_epoch().0,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        };
        if a.leader_epoch < current_epoch {
            // An image older than what we act on already: metadata only moves forward,
            // so this is a late duplicate.
            return Ok(RoleChange::Unchanged);
        }
        if a.leader == Some(self.local_id) {
            if let Role::Leader(rs) = &mut *role {
                if rs.leader_epoch().0 == a.leader_epoch {
                    let hw = if a.partition_epoch > rs.partition_epoch().0 {
                        match rs.on_isr_committed(a.isr.clone(), PartitionEpoch(a.partition_epoch))
                        {
                            Ok(hw) => hw,
                            Err(e) => {
                                tracing::warn!(partition = %self.tp, error = %e, "ignoring ISR update");
                                None
                            }
                        }
                    } else {
                        None
                    };
                    let isr_size = rs.isr().len();
                    drop(role);
                    self.publish(|p| {
                        let mut moved = p.isr_size != isr_size;
                        p.isr_size = isr_size;
                        moved |= raise_hw(p, hw);
                        moved
                    });
                    return Ok(RoleChange::Unchanged);
                }
            }
            let fsync_before_ack = self.settings.lock().sync_before_ack;
            let (leo, start) = {
                let mut log = self.log.lock();
                let leo = log.log_end_offset();
                let latest = log.leader_epoch_cache().latest_epoch();
                if latest.is_none_or(|e| e < a.leader_epoch) {
                    log.assign_epoch(a.leader_epoch, leo)?;
                }
                let p = self.progress.borrow().clone();
                let start = LeaderStart {
                    local_id: self.local_id,
                    leader_epoch: spate_metadata::ids::LeaderEpoch(a.leader_epoch),
                    partition_epoch: PartitionEpoch(a.partition_epoch),
                    replicas: a.replicas.clone(),
                    isr: a.isr.clone(),
                    log_end_offset: leo,
                    durable_offset: p.durable.min(leo),
                    high_watermark: p.high_watermark.min(leo),
                    leader_epoch_start_offset: leo,
                    fsync_before_ack,
                };
                (leo, start)
            };
            let rs = ReplicaState::become_leader(start, now_ms).map_err(|e| {
                BrokerError::InvalidRequest(format!("{}: cannot lead: {e}", self.tp))
            })?;
            let hw = rs.high_watermark();
            let isr_size = rs.isr().len();
            *role = Role::Leader(Box::new(rs));
            drop(role);
            self.publish(|p| {
                p.leading_epoch = Some(a.leader_epoch);
                p.isr_size = isr_size;
                p.log_end_offset = leo;
                raise_hw(p, Some(hw));
                true
            });
            tracing::info!(partition = %self.tp, leader_epoch = a.leader_epoch, leo, hw, isr = ?a.isr, "leading");
            return Ok(RoleChange::Leading);
        }
        let changed = match &*role {
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => *leader != a.leader || *leader_epoch != a.leader_epoch,
            Role::Leader(_) => true,
        };
        *role = Role::Follower {
            leader: a.leader,
            leader_epoch: a.leader_epoch,
            isr_size: a.isr.len(),
        };
        drop(role);
        let isr_size = a.isr.len();
        self.publish(|p| {
            let moved = p.leading_epoch.is_some() || p.isr_size != isr_size;
            p.leading_epoch = None;
            p.isr_size = isr_size;
            moved
        });
        if !changed {
            return Ok(RoleChange::Unchanged);
        }
        Ok(match a.leader {
            Some(leader) => RoleChange::Follow {
                leader,
                leader_epoch: a.leader_epoch,
            },
            None => RoleChange::Leaderless,
        })
    }

    /// Current settings derived from topic configs.
    pub fn settings(&self) -> PartitionSettings {
        self.settings.lock().clone()
    }

    /// Applies changed topic configs.
    pub fn update_config(&self, log_config: LogConfig, settings: PartitionSettings) {
        let fsync = settings.sync_before_ack;
        if let Role::Leader(rs) = &mut *self.role.lock() {
            rs.set_fsync_before_ack(fsync);
        }
        self.log.lock().set_config(log_config);
        *self.settings.lock() = settings;
        // A switch to fsync-per-ack must not leave earlier appends un-synced.
        self.flush_wanted.notify_one();
    }

    /// Checks a client-supplied leader epoch against ours (KIP-320); -1 means "not given".
    pub fn check_leader_epoch(&self, client_epoch: i32) -> Result<LeaderState> {
        let state = self.leader_state();
        check_epoch(&self.tp, client_epoch, state.leader_epoch)?;
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

    /// Fails once the partition is closed (removed from this broker): nothing may be
    /// written after its final flush.
    fn ensure_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(BrokerError::NotLeaderOrFollower(format!(
                "{} is no longer hosted on this broker",
                self.tp
            )));
        }
        Ok(())
    }

    /// Checks, under the role lock, that we still follow at `leader_epoch`.
    fn ensure_following(&self, role: &Role, leader_epoch: i32) -> Result<()> {
        self.ensure_open()?;
        match role {
            Role::Follower {
                leader_epoch: e, ..
            } if *e == leader_epoch => Ok(()),
            _ => Err(BrokerError::NotLeaderOrFollower(format!(
                "{}: no longer following at leader epoch {leader_epoch}",
                self.tp
            ))),
        }
    }

    fn not_leader(&self) -> BrokerError {
        BrokerError::NotLeaderOrFollower(format!(
            "broker {} does not lead {}",
            self.local_id.0, self.tp
        ))
    }

    /// Leader append of client batches; returns where they landed and the leader epoch
    /// they were written in (acknowledgement waits are bound to it). With
    /// `min_insync` (acks=all), refuses before appending when the committed ISR is
    /// smaller (NOT_ENOUGH_REPLICAS).
    pub fn append_as_leader(
        &self,
        records: &[u8],
        min_insync: Option<usize>,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32)> {
        self.append_checked(records, min_insync, None, now_ms)
    }

    /// Leader append only while still leading at `leader_epoch` (checked under the role
    /// lock, before anything is written): internal writers that must not write into a
    /// later leadership of this broker.
    pub fn append_in_epoch(
        &self,
        records: &[u8],
        min_insync: Option<usize>,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_checked(records, min_insync, Some(leader_epoch), now_ms)
            .map(|(info, _)| info)
    }

    fn append_checked(
        &self,
        records: &[u8],
        min_insync: Option<usize>,
        expected_epoch: Option<i32>,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32)> {
        self.ensure_online()?;
        let mut buf = records.to_vec();
        // Hold the role across the append, so leadership cannot change between the check
        // and the write, and the batch is stamped with the epoch current when it lands.
        let mut role = self.role.lock();
        self.ensure_open()?;
        let Role::Leader(rs) = &mut *role else {
            return Err(self.not_leader());
        };
        if expected_epoch.is_some_and(|e| e != rs.leader_epoch().0) {
            return Err(self.not_leader());
        }
        if let Some(min) = min_insync {
            rs.can_accept_acks_all(min)
                .map_err(|e| BrokerError::NotEnoughReplicas(format!("{}: {e}", self.tp)))?;
        }
        let epoch = rs.leader_epoch().0;
        let mut log = self.log.lock();
        let mut producers = self.producers.lock();
        if let Some(duplicate) = check_sequences(&producers, &buf, log.log_end_offset())? {
            // A retried batch already in the log: answer with where it landed.
            return Ok((duplicate, epoch));
        }
        let info = match log.append_as_leader(&mut buf, epoch, now_ms) {
            Ok(info) => info,
            Err(LogError::Io(e)) => {
                // A write error (disk full, I/O error) leaves the tail unknown: take the
                // partition offline here rather than acknowledge on a broken log.
                drop(producers);
                drop(log);
                drop(role);
                self.fail(format!("append failed: {e}"));
                return Err(LogError::Io(e).into());
            }
            Err(e) => return Err(e.into()),
        };
        // `buf` now carries the assigned offsets.
        producers.replay(batch_headers(&buf).iter());
        drop(producers);
        let leo = log.log_end_offset();
        drop(log);
        let hw = rs.on_leader_append(leo).unwrap_or_else(|e| {
            tracing::error!(partition = %self.tp, error = %e, "replica state rejected an append");
            None
        });
        drop(role);
        let sync = self.settings.lock().sync_before_ack;
        self.publish(|p| {
            p.log_end_offset = leo;
            raise_hw(p, hw);
            true
        });
        if sync {
            self.flush_wanted.notify_one();
        }
        Ok((info, epoch))
    }

    /// A follower's fetch at the leader: records what it holds (it has everything below
    /// `fetch_offset`), may advance the high watermark or propose an ISR expansion, and
    /// returns the batches from `fetch_offset` on.
    pub fn serve_follower_fetch(
        &self,
        follower: NodeId,
        broker_epoch: BrokerEpoch,
        current_leader_epoch: i32,
        fetch_offset: i64,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<FollowerFetch> {
        self.ensure_online()?;
        let mut role = self.role.lock();
        let Role::Leader(rs) = &mut *role else {
            return Err(self.not_leader());
        };
        check_epoch(&self.tp, current_leader_epoch, rs.leader_epoch().0)?;
        let log = self.log.lock();
        let (log_start, leo) = (log.log_start_offset(), log.log_end_offset());
        if fetch_offset < log_start || fetch_offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: log_start,
                log_end_offset: leo,
            }
            .into());
        }
        let outcome =
            rs.on_follower_fetch(follower, fetch_offset, broker_epoch, now_ms)
                .map_err(|e| match e {
                    ReplicaStateError::NotAFollower(_) => BrokerError::NotLeaderOrFollower(
                        format!("{}: broker {} is not a replica: {e}", self.tp, follower.0),
                    ),
                    other => BrokerError::InvalidRequest(format!("{}: {other}", self.tp)),
                })?;
        let records = log.read(fetch_offset, max_bytes, leo, true)?;
        drop(log);
        let high_watermark = rs.high_watermark();
        drop(role);
        if outcome.high_watermark.is_some() {
            self.publish(|p| raise_hw(p, outcome.high_watermark));
        }
        Ok(FollowerFetch {
            records,
            high_watermark,
            log_start_offset: log_start,
            log_end_offset: leo,
            isr_change: outcome.isr_change,
        })
    }

    /// Follower append of the leader's batches, while still following at
    /// `leader_epoch`; then the high watermark and log start the leader reported
    /// (capped by what we hold). Returns the new LEO. When acknowledgements wait on fsync
    /// the caller waits for [`Partition::wait_durable`] before reporting the new LEO.
    pub fn append_as_follower(
        &self,
        leader_epoch: i32,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
        now_ms: i64,
    ) -> Result<i64> {
        self.ensure_online()?;
        let role = self.role.lock();
        self.ensure_following(&role, leader_epoch)?;
        let mut log = self.log.lock();
        if !records.is_empty() {
            let appended = log.append_as_follower(records, now_ms);
            if appended.is_ok() {
                self.producers.lock().replay(batch_headers(records).iter());
            }
            if let Err(e) = appended {
                if let LogError::Io(io) = &e {
                    let reason = format!("follower append failed: {io}");
                    drop(log);
                    drop(role);
                    self.fail(reason);
                }
                return Err(e.into());
            }
        }
        let leo = log.log_end_offset();
        let start_target = leader_log_start.min(leader_hw).min(leo);
        if start_target > log.log_start_offset() {
            if let Err(e) = log.delete_records_before(start_target) {
                tracing::warn!(partition = %self.tp, error = %e, "cannot follow the leader's log start");
            }
        }
        drop(log);
        drop(role);
        let hw = replica_state::follower_high_watermark(leader_hw, leo);
        self.publish(|p| {
            p.log_end_offset = leo;
            raise_hw(p, Some(hw));
            true
        });
        if !records.is_empty() && self.settings.lock().sync_before_ack {
            self.flush_wanted.notify_one();
        }
        Ok(leo)
    }

    /// Follower truncation (KIP-101/279) to `offset`, while still following at
    /// `leader_epoch`. `restart` drops the whole log and starts it empty at `offset`
    /// (the leader's log start moved past ours). Returns the new LEO.
    pub fn truncate_as_follower(
        &self,
        leader_epoch: i32,
        offset: i64,
        restart: bool,
    ) -> Result<i64> {
        self.ensure_online()?;
        let role = self.role.lock();
        self.ensure_following(&role, leader_epoch)?;
        let mut log = self.log.lock();
        let before = log.log_end_offset();
        let result = if restart {
            log.truncate_fully_and_start_at(offset)
        } else {
            log.truncate_to(offset)
        };
        if let Err(e) = result {
            let reason = format!("truncation failed: {e}");
            drop(log);
            drop(role);
            self.fail(reason);
            return Err(e.into());
        }
        let leo = log.log_end_offset();
        let start = log.log_start_offset();
        {
            let mut producers = self.producers.lock();
            if restart {
                *producers = ProducerStateManager::new();
            } else {
                producers.truncated_to(leo);
            }
        }
        drop(log);
        drop(role);
        if leo != before || restart {
            tracing::info!(partition = %self.tp, from = before, to = leo, restart, "truncated as follower");
            // The saved producer state may describe batches that are gone now.
            self.save_producer_state(crate::clock::now_ms(), true);
        }
        self.publish(|p| {
            p.log_end_offset = leo;
            p.durable = p.durable.min(leo);
            p.high_watermark = p.high_watermark.min(leo).max(start.min(leo));
            true
        });
        Ok(leo)
    }

    /// Leader: proposes removing followers that lagged longer than `lag_ms`.
    pub fn maybe_shrink_isr(&self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        match &mut *self.role.lock() {
            Role::Leader(rs) => rs.maybe_shrink_isr(now_ms, lag_ms),
            Role::Follower { .. } => None,
        }
    }

    /// The ISR change this leader has in flight, if any (to retry after a lost answer).
    pub fn pending_isr_change(&self) -> Option<IsrChange> {
        match &*self.role.lock() {
            Role::Leader(rs) => rs.pending_isr_change().cloned(),
            Role::Follower { .. } => None,
        }
    }

    /// The controller committed an ISR for this leadership (AlterPartition answer).
    pub fn on_isr_committed(&self, leader_epoch: i32, isr: Vec<NodeId>, partition_epoch: i32) {
        let committed = match &mut *self.role.lock() {
            Role::Leader(rs) if rs.leader_epoch().0 == leader_epoch => {
                match rs.on_isr_committed(isr, PartitionEpoch(partition_epoch)) {
                    Ok(hw) => Some((hw, rs.isr().len())),
                    Err(e) => {
                        tracing::debug!(partition = %self.tp, error = %e, "ignoring ISR answer");
                        None
                    }
                }
            }
            _ => None,
        };
        if let Some((hw, isr_size)) = committed {
            tracing::info!(partition = %self.tp, partition_epoch, isr_size, "ISR change committed");
            self.publish(|p| {
                let moved = p.isr_size != isr_size;
                p.isr_size = isr_size;
                moved | raise_hw(p, hw)
            });
        }
    }

    /// The controller refused `change` for certain: drop it if it is still pending.
    pub fn on_isr_change_rejected(&self, change: &IsrChange) {
        let hw = match &mut *self.role.lock() {
            Role::Leader(rs) if rs.pending_isr_change() == Some(change) => {
                rs.on_isr_change_rejected()
            }
            _ => None,
        };
        self.publish(|p| raise_hw(p, hw));
    }

    /// The leader's view of its replicas: (replica, LEO if known), the leader first.
    pub fn replica_log_end_offsets(&self) -> Vec<(NodeId, Option<i64>)> {
        match &*self.role.lock() {
            Role::Leader(rs) => {
                let mut out = vec![(self.local_id, Some(rs.log_end_offset()))];
                out.extend(rs.followers().map(|(id, f)| (id, f.log_end_offset)));
                out
            }
            Role::Follower { .. } => vec![(self.local_id, Some(self.log_end_offset()))],
        }
    }

    /// Applies `update` to the published progress; `update` says whether it moved.
    fn publish(&self, update: impl FnOnce(&mut Progress) -> bool) {
        self.progress.send_if_modified(update);
    }

    /// Resolves once every offset below `end` is fsynced.
    pub async fn wait_durable(&self, end: i64) -> Result<()> {
        self.wait_for(|p| p.durable >= end).await.map(|_| ())
    }

    /// acks=1 with fsync: resolves once `end` is durable while still leading at
    /// `leader_epoch`.
    pub async fn wait_leader_durable(&self, end: i64, leader_epoch: i32) -> Result<()> {
        let p = self
            .wait_for(|p| p.leading_epoch != Some(leader_epoch) || p.durable >= end)
            .await?;
        if p.leading_epoch != Some(leader_epoch) {
            return Err(self.lost_leadership(leader_epoch));
        }
        Ok(())
    }

    /// acks=all: resolves once the high watermark passes `end` while still leading at
    /// `leader_epoch`; NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is then smaller than
    /// `min_insync`.
    pub async fn wait_high_watermark(
        &self,
        end: i64,
        leader_epoch: i32,
        min_insync: usize,
    ) -> Result<()> {
        let p = self
            .wait_for(|p| p.leading_epoch != Some(leader_epoch) || p.high_watermark >= end)
            .await?;
        if p.leading_epoch != Some(leader_epoch) {
            return Err(self.lost_leadership(leader_epoch));
        }
        if p.isr_size < min_insync {
            return Err(BrokerError::NotEnoughReplicasAfterAppend(format!(
                "{}: written, but the ISR shrank to {} members, below min.insync.replicas={min_insync}",
                self.tp, p.isr_size
            )));
        }
        Ok(())
    }

    fn lost_leadership(&self, leader_epoch: i32) -> BrokerError {
        BrokerError::NotLeaderOrFollower(format!(
            "{}: leadership at epoch {leader_epoch} ended before the write was acknowledged",
            self.tp
        ))
    }

    /// Resolves once `reached` holds, or with an error once the partition fails.
    async fn wait_for(&self, reached: impl Fn(&Progress) -> bool) -> Result<Progress> {
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
            None => Ok(p.clone()),
        }
    }

    /// A receiver that changes whenever an offset, the role or the ISR size moves.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// The current progress.
    pub fn progress(&self) -> Progress {
        self.progress.borrow().clone()
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
        self.ensure_online()?;
        if !self.leader_state().is_leader {
            return Err(self.not_leader());
        }
        let hw = self.high_watermark();
        let target = if offset == -1 { hw } else { offset };
        let start = self.log_start_offset();
        if target < 0 || target > hw {
            return Err(spate_log::LogError::OffsetOutOfRange {
                offset: target,
                log_start_offset: start,
                log_end_offset: hw,
            }
            .into());
        }
        Ok(self.log.lock().delete_records_before(target)?)
    }

    /// Periodic work: retention, fsync for topics that flush on an interval, and the
    /// high-watermark checkpoint.
    pub fn maintain(&self, now_ms: i64) {
        let retention = self.log.lock().enforce_retention(now_ms);
        if let Err(e) = retention {
            self.fail(format!("retention failed: {e}"));
        }
        let settings = self.settings();
        if !settings.sync_before_ack && settings.flush_due(now_ms) {
            self.flush_wanted.notify_one();
        }
        self.checkpoint_high_watermark();
        self.save_producer_state(now_ms, false);
    }

    /// Expires idle producers and saves the producer state when it moved (or `force`).
    fn save_producer_state(&self, now_ms: i64, force: bool) {
        let log = self.log.lock();
        let bytes = {
            let mut producers = self.producers.lock();
            let expired = producers.expire(now_ms, PRODUCER_EXPIRATION_MS);
            let end = producers.map_end_offset();
            if !force && expired == 0 && self.producers_saved.load(Ordering::Relaxed) == end {
                return;
            }
            (producers.encode_snapshot(), end)
        };
        match log.save_producer_state_snapshot(&bytes.0) {
            Ok(()) => self.producers_saved.store(bytes.1, Ordering::Relaxed),
            Err(e) => {
                tracing::warn!(partition = %self.tp, error = %e, "cannot save producer state")
            }
        }
    }

    /// Idempotent producers known here (tests, metrics).
    pub fn producer_count(&self) -> usize {
        self.producers.lock().len()
    }

    fn checkpoint_high_watermark(&self) {
        // Under the log lock and capped by the LEO: a truncation publishes its lower high
        // watermark only after releasing the lock, and the checkpoint must not get ahead.
        let log = self.log.lock();
        let hw = self.high_watermark().min(log.log_end_offset());
        if self.hw_checkpointed.load(Ordering::Relaxed) == hw {
            return;
        }
        if let Err(e) = log.checkpoint_high_watermark(hw) {
            tracing::warn!(partition = %self.tp, error = %e, "cannot checkpoint the high watermark");
            return;
        }
        self.hw_checkpointed.store(hw, Ordering::Relaxed);
    }

    /// Takes the partition offline on this broker after a storage error.
    pub fn fail(&self, reason: String) {
        tracing::error!(partition = %self.tp, %reason, "partition log failed; offline on this broker");
        self.progress.send_modify(|p| p.failed = Some(reason));
    }

    /// Called by the flusher once everything below `durable` is fsynced.
    fn on_flushed(&self, durable: i64) {
        let hw = match &mut *self.role.lock() {
            Role::Leader(rs) => rs.on_leader_flushed(durable),
            Role::Follower { .. } => None,
        };
        self.publish(|p| {
            let mut moved = false;
            if durable > p.durable {
                p.durable = durable;
                moved = true;
            }
            moved | raise_hw(p, hw)
        });
    }

    /// Stops the flusher and closes the log cleanly (flush, indexes, checkpoints).
    pub fn close(&self) -> Result<()> {
        {
            // Under the role lock: an append in progress finishes first (and is covered
            // by the flush below); later ones see the partition closed.
            let _role = self.role.lock();
            self.closed.store(true, Ordering::SeqCst);
        }
        self.flush_wanted.notify_one();
        let leo = {
            let mut log = self.log.lock();
            log.flush()?;
            log.log_end_offset()
        };
        self.checkpoint_high_watermark();
        self.save_producer_state(crate::clock::now_ms(), true);
        self.log.lock().close_in_place()?;
        // Acknowledgements still waiting on this fsync complete instead of timing out.
        self.on_flushed(leo);
        Ok(())
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

/// Raises the published high watermark to `hw` (never lowers it); whether it moved.
fn raise_hw(p: &mut Progress, hw: Option<i64>) -> bool {
    match hw {
        Some(hw) if hw > p.high_watermark => {
            p.high_watermark = hw;
            true
        }
        _ => false,
    }
}

/// KIP-320 epoch check: -1 means "not given"; older is fenced, newer unknown here.
fn check_epoch(tp: &TopicPartition, given: i32, ours: i32) -> Result<()> {
    if given >= 0 && given < ours {
        return Err(BrokerError::FencedLeaderEpoch(format!(
            "{tp}: leader epoch {given} is older than the current {ours}"
        )));
    }
    if given > ours {
        return Err(BrokerError::UnknownLeaderEpoch(format!(
            "{tp}: leader epoch {given} is newer than the current {ours}"
        )));
    }
    Ok(())
}

/// Checks the idempotent batches of a client record set against the producer state;
/// `Some` when the set is a retry of batches already in the log (Kafka answers the whole
/// request with the duplicate's offsets and appends nothing). Several batches of one
/// producer in one request are checked in order, each against the state the ones before
/// it would leave.
fn check_sequences(
    producers: &ProducerStateManager,
    records: &[u8],
    log_end_offset: i64,
) -> Result<Option<AppendInfo>> {
    let headers = batch_headers(records);
    if headers.iter().all(|h| h.producer_id < 0) {
        return Ok(None);
    }
    let mut scratch: Option<ProducerStateManager> = None;
    let mut next_offset = log_end_offset;
    for h in &headers {
        let count = i64::from(h.last_offset_delta) + 1;
        if h.producer_id >= 0 {
            let state = scratch.as_ref().unwrap_or(producers);
            if let AppendCheck::Duplicate(meta) = state.check(h)? {
                return Ok(Some(AppendInfo {
                    first_offset: meta.first_offset,
                    last_offset: meta.last_offset,
                    max_timestamp: meta.max_timestamp,
                    offset_of_max_timestamp: -1,
                    log_append_time: -1,
                    record_count: 0,
                    bytes: 0,
                }));
            }
            if headers.len() > 1 {
                let mut placed = *h;
                placed.base_offset = next_offset;
                scratch
                    .get_or_insert_with(|| producers.clone())
                    .on_append(&placed);
            }
        }
        next_offset += count;
    }
    Ok(None)
}
