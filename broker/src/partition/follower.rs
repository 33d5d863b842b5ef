//! The follower's paths through the partition core: following a leader, appending the
//! leader's batches (then taking its high watermark and log start, capped by what we
//! hold), and truncating as KIP-101/279 decide.
use super::core::{batch_headers, Effects, PartitionCore, Role};
use super::producer_state::ProducerStateManager;
use super::replica_state;
use super::types::{Assignment, RoleChange};
use crate::error::{NotServing, Result};

impl PartitionCore {
    /// The assignment names another broker leader (or none): follow it.
    pub(super) fn follow(&mut self, a: &Assignment, fx: &mut Effects) -> RoleChange {
        let changed = match &self.role {
            Role::Follower {
                leader,
                leader_epoch,
                ..
            } => *leader != a.leader || *leader_epoch != a.leader_epoch,
            Role::Leader(_) => true,
        };
        let isr_size = a.isr.len();
        self.role = Role::Follower {
            leader: a.leader,
            leader_epoch: a.leader_epoch,
            isr_size,
        };
        self.publish(fx, |p| {
            let moved = p.leading_epoch.is_some() || p.isr_size != isr_size;
            p.leading_epoch = None;
            p.isr_size = isr_size;
            moved
        });
        if !changed {
            return RoleChange::Unchanged;
        }
        match a.leader {
            Some(leader) => RoleChange::Follow {
                leader,
                leader_epoch: a.leader_epoch,
            },
            None => RoleChange::Leaderless,
        }
    }

    /// Checks that we still follow at `leader_epoch`.
    fn ensure_following(&self, leader_epoch: i32) -> Result<()> {
        self.ensure_online()?;
        self.ensure_open()?;
        match &self.role {
            Role::Follower {
                leader_epoch: e, ..
            } if *e == leader_epoch => Ok(()),
            _ => Err(self.not_serving(NotServing::NoLongerFollowing { leader_epoch })),
        }
    }

    /// Follower append of the leader's batches, while still following at
    /// `leader_epoch`; then the high watermark and log start the leader reported
    /// (capped by what we hold). Returns the new LEO. When acknowledgements wait on fsync
    /// the caller waits for the durable offset before reporting the new LEO.
    pub fn append_as_follower(
        &mut self,
        leader_epoch: i32,
        records: &[u8],
        leader_hw: i64,
        leader_log_start: i64,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<i64> {
        self.ensure_following(leader_epoch)?;
        if !records.is_empty() {
            if let Err(e) = self.log.append_as_follower(records, now_ms) {
                return Err(self.on_write_error("follower append", e, fx));
            }
            self.producers.replay(batch_headers(records).iter());
            self.flush_if_acks_wait(fx);
        }
        let leo = self.log.log_end_offset();
        let start_target = leader_log_start.min(leader_hw).min(leo);
        if start_target > self.log.log_start_offset() {
            if let Err(e) = self.log.delete_records_before(start_target) {
                tracing::warn!(partition = %self.tp, error = %e, "cannot follow the leader's log start");
            }
        }
        let hw = replica_state::follower_high_watermark(leader_hw, leo);
        self.publish(fx, |p| {
            let moved = p.log_end_offset != leo || hw > p.high_watermark;
            p.log_end_offset = leo;
            p.high_watermark = p.high_watermark.max(hw);
            moved
        });
        Ok(leo)
    }

    /// Follower truncation (KIP-101/279) to `offset`, while still following at
    /// `leader_epoch`. `restart` drops the whole log and starts it empty at `offset`
    /// (the leader's log start moved past ours). Returns the new LEO.
    pub fn truncate_as_follower(
        &mut self,
        leader_epoch: i32,
        offset: i64,
        restart: bool,
        now_ms: i64,
        fx: &mut Effects,
    ) -> Result<i64> {
        self.ensure_following(leader_epoch)?;
        let before = self.log.log_end_offset();
        let result = if restart {
            self.log.truncate_fully_and_start_at(offset)
        } else {
            self.log.truncate_to(offset)
        };
        if let Err(e) = result {
            self.fail(format!("truncation failed: {e}"), fx);
            return Err(e.into());
        }
        let leo = self.log.log_end_offset();
        let start = self.log.log_start_offset();
        if restart {
            self.producers = ProducerStateManager::new();
        } else {
            self.producers.truncated_to(leo);
        }
        if leo != before || restart {
            tracing::info!(partition = %self.tp, from = before, to = leo, restart, "truncated as follower");
            // The saved producer state may describe batches that are gone now.
            self.save_producer_state(now_ms, true);
        }
        self.publish(fx, |p| {
            p.log_end_offset = leo;
            p.durable = p.durable.min(leo);
            p.high_watermark = p.high_watermark.min(leo).max(start.min(leo));
            true
        });
        Ok(leo)
    }
}
