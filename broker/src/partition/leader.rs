//! The leader's paths through the partition core: taking leadership, client appends
//! (with the idempotent producer's sequence checks), serving follower fetches (which
//! move the high watermark and propose ISR expansions), ISR shrink and commit, and
//! DeleteRecords.
use spate_metadata::ids::{LeaderEpoch, NodeId, PartitionEpoch};

use super::core::{
    batch_headers, check_epoch, duplicate_of, raise_hw, Effects, PartitionCore, Role,
};
use super::producer_state::{AppendCheck, ProducerStateManager};
use super::replica_state::{IsrChange, LeaderStart, ReplicaState, ReplicaStateError};
use super::types::{Assignment, FollowerFetch, FollowerFetchRequest, RoleChange};
use crate::error::{BrokerError, NotServing, Result};
use spate_log::{AppendInfo, LogError};

impl PartitionCore {
    /// The assignment names this broker leader: start a new leadership at our LEO, or,
    /// at the same leader epoch, take a committed ISR change.
    pub(super) fn lead(
        &mut self,
        a: &Assignment,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<RoleChange> {
        if let Role::Leader(rs) = &mut self.role {
            if rs.leader_epoch().0 == a.leader_epoch {
                let hw = if a.partition_epoch > rs.partition_epoch().0 {
                    rs.on_isr_committed(a.isr.clone(), PartitionEpoch(a.partition_epoch))
                        .unwrap_or_else(|e| {
                            tracing::warn!(partition = %self.tp, error = %e, "ignoring ISR update");
                            None
                        })
                } else {
                    None
                };
                let isr_size = rs.isr().len();
                self.publish(fx, |p| {
                    let moved = p.isr_size != isr_size;
                    p.isr_size = isr_size;
                    moved | raise_hw(p, hw)
                });
                return Ok(RoleChange::Unchanged);
            }
        }
        let leo = self.log.log_end_offset();
        if self
            .log
            .leader_epoch_cache()
            .latest_epoch()
            .is_none_or(|e| e < a.leader_epoch)
        {
            self.log.assign_epoch(a.leader_epoch, leo)?;
        }
        let p = self.progress();
        let start = LeaderStart {
            local_id: self.local_id,
            leader_epoch: LeaderEpoch(a.leader_epoch),
            partition_epoch: PartitionEpoch(a.partition_epoch),
            replicas: a.replicas.clone(),
            isr: a.isr.clone(),
            log_end_offset: leo,
            durable_offset: p.durable.min(leo),
            high_watermark: p.high_watermark.min(leo),
            leader_epoch_start_offset: leo,
            fsync_before_ack: self.settings.sync_before_ack,
            min_insync: self.settings.min_insync_replicas.max(1) as usize,
        };
        let rs = ReplicaState::become_leader(start, now_ms)
            .map_err(|e| BrokerError::InvalidRequest(format!("{}: cannot lead: {e}", self.tp)))?;
        let hw = rs.high_watermark();
        let isr_size = rs.isr().len();
        self.role = Role::Leader(Box::new(rs));
        self.publish(fx, |p| {
            p.leading_epoch = Some(a.leader_epoch);
            p.isr_size = isr_size;
            p.log_end_offset = leo;
            raise_hw(p, Some(hw));
            true
        });
        tracing::info!(partition = %self.tp, leader_epoch = a.leader_epoch, leo, hw, isr = ?a.isr, "leading");
        Ok(RoleChange::Leading)
    }

    /// Leader append of client batches; returns where they landed and the leader epoch
    /// they were written in (acknowledgement waits are bound to it). With `min_insync`
    /// (acks=all), refuses before appending when the committed ISR is smaller
    /// (NOT_ENOUGH_REPLICAS). With `expected_epoch`, appends only while still leading
    /// at that epoch: internal writers that must not write into a later leadership.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        min_insync: Option<usize>,
        expected_epoch: Option<i32>,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<(AppendInfo, i32)> {
        self.ensure_online()?;
        self.ensure_open()?;
        let Role::Leader(rs) = &self.role else {
            return Err(self.not_leader());
        };
        let epoch = rs.leader_epoch().0;
        if expected_epoch.is_some_and(|e| e != epoch) {
            return Err(self.not_leader());
        }
        if let Some(min) = min_insync {
            rs.can_accept_acks_all(min)
                .map_err(|e| BrokerError::NotEnoughReplicas {
                    partition: self.tp.clone(),
                    isr_size: e.isr_size,
                    min_insync: e.min_insync,
                })?;
        }
        if let Some(duplicate) =
            check_sequences(&self.producers, records, self.log.log_end_offset())?
        {
            return Ok((duplicate, epoch));
        }
        let mut buf = records.to_vec();
        let info = match self.log.append_as_leader(&mut buf, epoch, now_ms) {
            Ok(info) => info,
            Err(e) => return Err(self.on_write_error("append", e, fx)),
        };
        // `buf` now carries the assigned offsets.
        self.producers.replay(batch_headers(&buf).iter());
        let leo = self.log.log_end_offset();
        let Role::Leader(rs) = &mut self.role else {
            unreachable!("the role was checked above and the core is locked");
        };
        let hw = rs.on_leader_append(leo).unwrap_or_else(|e| {
            tracing::error!(partition = %self.tp, error = %e, "replica state rejected an append");
            None
        });
        self.publish(fx, |p| {
            p.log_end_offset = leo;
            raise_hw(p, hw);
            true
        });
        self.flush_if_acks_wait(fx);
        Ok((info, epoch))
    }

    /// A follower's fetch at the leader: records what it holds (it has everything below
    /// `fetch_offset`), may advance the high watermark or propose an ISR expansion, and
    /// returns the batches from `fetch_offset` on.
    pub fn serve_follower_fetch(
        &mut self,
        want: &FollowerFetchRequest,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<FollowerFetch> {
        let FollowerFetchRequest {
            follower,
            broker_epoch,
            current_leader_epoch,
            fetch_offset,
            max_bytes,
        } = *want;
        self.ensure_online()?;
        let Role::Leader(rs) = &mut self.role else {
            return Err(self.not_leader());
        };
        check_epoch(&self.tp, current_leader_epoch, rs.leader_epoch().0)?;
        let (log_start, leo) = (self.log.log_start_offset(), self.log.log_end_offset());
        if fetch_offset < log_start || fetch_offset > leo {
            return Err(LogError::OffsetOutOfRange {
                offset: fetch_offset,
                log_start_offset: log_start,
                log_end_offset: leo,
            }
            .into());
        }
        let outcome = rs
            .on_follower_fetch(follower, fetch_offset, broker_epoch, now_ms)
            .map_err(|e| match e {
                ReplicaStateError::NotAFollower(_) => BrokerError::NotLeaderOrFollower {
                    partition: self.tp.clone(),
                    broker: self.local_id,
                    why: NotServing::NotAReplica { replica: follower },
                },
                other => BrokerError::InvalidRequest(format!("{}: {other}", self.tp)),
            })?;
        let high_watermark = rs.high_watermark();
        let view = self.log.read_view(fetch_offset, leo, max_bytes)?;
        self.publish(fx, |p| raise_hw(p, outcome.high_watermark));
        Ok(FollowerFetch {
            view,
            high_watermark,
            log_start_offset: log_start,
            log_end_offset: leo,
            isr_change: outcome.isr_change,
        })
    }

    /// Leader: proposes removing followers that lagged longer than `lag_ms`.
    pub fn maybe_shrink_isr(&mut self, now_ms: i64, lag_ms: i64) -> Option<IsrChange> {
        match &mut self.role {
            Role::Leader(rs) => rs.maybe_shrink_isr(now_ms, lag_ms),
            Role::Follower { .. } => None,
        }
    }

    /// The ISR change this leader has in flight, if any (to retry after a lost answer).
    pub fn pending_isr_change(&self) -> Option<IsrChange> {
        match &self.role {
            Role::Leader(rs) => rs.pending_isr_change().cloned(),
            Role::Follower { .. } => None,
        }
    }

    /// The controller committed an ISR for this leadership (AlterPartition answer).
    pub fn on_isr_committed(
        &mut self,
        leader_epoch: i32,
        isr: Vec<NodeId>,
        partition_epoch: i32,
        fx: &mut Effects,
    ) {
        let Role::Leader(rs) = &mut self.role else {
            return;
        };
        if rs.leader_epoch().0 != leader_epoch {
            return;
        }
        let hw = match rs.on_isr_committed(isr, PartitionEpoch(partition_epoch)) {
            Ok(hw) => hw,
            Err(e) => {
                tracing::debug!(partition = %self.tp, error = %e, "ignoring ISR answer");
                return;
            }
        };
        let isr_size = rs.isr().len();
        tracing::info!(partition = %self.tp, partition_epoch, isr_size, "ISR change committed");
        self.publish(fx, |p| {
            let moved = p.isr_size != isr_size;
            p.isr_size = isr_size;
            moved | raise_hw(p, hw)
        });
    }

    /// The controller refused `change` for certain: drop it if it is still pending.
    pub fn on_isr_change_rejected(&mut self, change: &IsrChange, fx: &mut Effects) {
        let hw = match &mut self.role {
            Role::Leader(rs) if rs.pending_isr_change() == Some(change) => {
                rs.on_isr_change_rejected()
            }
            _ => None,
        };
        self.publish(fx, |p| raise_hw(p, hw));
    }

    /// The leader's view of its replicas: (replica, LEO if known), the leader first.
    pub fn replica_log_end_offsets(&self) -> Vec<(NodeId, Option<i64>)> {
        match &self.role {
            Role::Leader(rs) => {
                let mut out = vec![(self.local_id, Some(rs.log_end_offset()))];
                out.extend(rs.followers().map(|(id, f)| (id, f.log_end_offset)));
                out
            }
            Role::Follower { .. } => vec![(self.local_id, Some(self.log.log_end_offset()))],
        }
    }

    /// Leader-side DeleteRecords: `offset` -1 means the high watermark. Returns the new
    /// log start.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.ensure_online()?;
        if !matches!(self.role, Role::Leader(_)) {
            return Err(self.not_leader());
        }
        let hw = self.progress().high_watermark;
        let target = if offset == -1 { hw } else { offset };
        if target < 0 || target > hw {
            return Err(LogError::OffsetOutOfRange {
                offset: target,
                log_start_offset: self.log.log_start_offset(),
                log_end_offset: hw,
            }
            .into());
        }
        Ok(self.log.delete_records_before(target)?)
    }
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
                return Ok(Some(duplicate_of(&meta)));
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
