//! Time: session expiry, the join and sync deadlines, and shutting the group down.
use super::messages::{Delivery, JoinResponse, SyncResponse};
use super::state::{Group, GroupState, InitialDelay, JoinTimer};
use spate_metadata::ErrorCode;

impl Group {
    /// Runs every timer due at or before `now_ms`, in deadline order, each as of its own
    /// deadline: expired KIP-394 pending ids, member sessions, the join phase (initial
    /// delay or rebalance timeout) and the sync deadline. Returns the responses to
    /// deliver: completed joins, failed syncs, and expired members' held requests.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Some(due_ms) = self.next_deadline().filter(|&d| d <= now_ms) {
            self.fire(due_ms, &mut out);
        }
        out
    }

    /// The earliest instant at which [`Group::tick`] has work to do.
    pub fn next_deadline(&self) -> Option<i64> {
        if self.state == GroupState::Dead {
            return None;
        }
        let pending = self.pending_members.values().copied();
        let sessions = self
            .members
            .values()
            .filter(|m| !m.heartbeat_satisfied())
            .map(|m| m.heartbeat_deadline_ms);
        let join = self.join_timer.map(|t| t.deadline_ms);
        let sync = self
            .sync_deadline_ms
            .filter(|_| !self.pending_sync.is_empty());
        pending.chain(sessions).chain(join).chain(sync).min()
    }

    /// Fires everything due at `now_ms`; each step clears or moves its own deadline.
    fn fire(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, &deadline)| deadline <= now_ms)
            .map(|(id, _)| id.clone())
            .collect();
        for member_id in expired_pending {
            self.pending_members.shift_remove(&member_id);
            self.try_complete_join(now_ms, out);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.heartbeat_satisfied() && m.heartbeat_deadline_ms <= now_ms)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in expired {
            self.remove_member_and_update(&member_id, now_ms, out);
        }
        if self.join_timer.is_some_and(|t| t.deadline_ms <= now_ms) {
            self.on_join_deadline(now_ms, out);
        }
        if self.sync_deadline_ms.is_some_and(|d| d <= now_ms) {
            self.on_sync_deadline(now_ms, out);
        }
    }

    /// The join phase's deadline: extend the initial delay if members keep arriving
    /// (Kafka's `InitialDelayedJoin`), else complete with whoever rejoined.
    pub(super) fn on_join_deadline(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        let Some(timer) = self.join_timer else {
            return;
        };
        match timer.initial {
            Some(InitialDelay {
                delay_ms,
                remaining_ms,
            }) if self.new_member_added && remaining_ms > 0 => {
                self.new_member_added = false;
                let next_delay_ms = self.config.initial_rebalance_delay_ms.min(remaining_ms);
                self.join_timer = Some(JoinTimer {
                    deadline_ms: now_ms + next_delay_ms,
                    initial: Some(InitialDelay {
                        delay_ms: next_delay_ms,
                        remaining_ms: (remaining_ms - delay_ms).max(0),
                    }),
                });
            }
            _ => self.complete_join(now_ms, out),
        }
    }

    /// Members of the new generation that never sent SyncGroup are dropped, and the
    /// group rebalances without them.
    fn on_sync_deadline(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        self.sync_deadline_ms = None;
        if !matches!(
            self.state,
            GroupState::CompletingRebalance | GroupState::Stable
        ) {
            return;
        }
        let laggards: Vec<String> = self.pending_sync.drain(..).collect();
        for member_id in laggards {
            self.remove_member(&member_id);
        }
        self.maybe_prepare_rebalance(now_ms, out);
    }

    /// Marks the group Dead (deleted, or its coordinator moved away); every held join
    /// and sync gets NOT_COORDINATOR so the client looks for the new coordinator.
    pub fn shut_down(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        for member in self.members.values_mut() {
            if member.awaiting_join {
                member.awaiting_join = false;
                let response = JoinResponse::error(&member.member_id, ErrorCode::NotCoordinator);
                out.push(Delivery::Join(member.member_id.clone(), response));
            }
            if member.awaiting_sync {
                member.awaiting_sync = false;
                let response = SyncResponse::error(ErrorCode::NotCoordinator);
                out.push(Delivery::Sync(member.member_id.clone(), response));
            }
        }
        self.state = GroupState::Dead;
        self.join_timer = None;
        self.sync_deadline_ms = None;
        self.pending_members.clear();
        self.pending_sync.clear();
        out
    }
}
