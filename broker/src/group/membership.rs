//! SyncGroup, Heartbeat and LeaveGroup.
use bytes::Bytes;

use super::messages::{Delivery, SyncResponse};
use super::state::{Group, GroupState};
use spate_metadata::ErrorCode;

impl Group {
    /// Kafka's classic-group OffsetCommit validation (`ClassicGroup.validateOffsetCommit`).
    /// A commit with generation -1 is allowed while the group is Empty (admin tools,
    /// consumers assigning partitions themselves). A member's commit must carry the
    /// current generation, and is refused with REBALANCE_IN_PROGRESS only while the
    /// group completes a rebalance; while it prepares one, the current generation's
    /// owners may still commit (cooperative consumers commit in their revoke callback).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> ErrorCode {
        if self.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return ErrorCode::None;
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            let known = match group_instance_id {
                Some(instance) => match self.static_members.get(instance) {
                    None => Err(ErrorCode::UnknownMemberId),
                    Some(owner) if owner != member_id => Err(ErrorCode::FencedInstanceId),
                    Some(_) => Ok(()),
                },
                None if self.members.contains_key(member_id) => Ok(()),
                None => Err(ErrorCode::UnknownMemberId),
            };
            if let Err(code) = known {
                return code;
            }
            if generation_id != self.generation_id {
                return ErrorCode::IllegalGeneration;
            }
        } else {
            // No member id and no generation: only while the group is empty.
            return ErrorCode::UnknownMemberId;
        }
        if self.state == GroupState::CompletingRebalance {
            return ErrorCode::RebalanceInProgress;
        }
        ErrorCode::None
    }

    /// Handles a SyncGroup and returns the responses to deliver now. A follower's sync
    /// in CompletingRebalance is held (nothing returned) until the leader's sync, which
    /// stores the assignments (members it leaves out get empty bytes) and answers
    /// everyone held; the caller may persist [`Group::snapshot`] before delivering them.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Vec<(String, SyncResponse)> {
        let error = |code| vec![(member_id.to_string(), SyncResponse::error(code))];
        if self.state == GroupState::Dead {
            return error(ErrorCode::CoordinatorNotAvailable);
        }
        if self.is_fenced(group_instance_id, member_id) {
            return error(ErrorCode::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return error(ErrorCode::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return error(ErrorCode::IllegalGeneration);
        }
        let type_differs = protocol_type.is_some_and(|t| self.protocol_type.as_deref() != Some(t));
        let name_differs = protocol_name.is_some_and(|n| self.protocol_name.as_deref() != Some(n));
        if type_differs || name_differs {
            return error(ErrorCode::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::Empty | GroupState::Dead => error(ErrorCode::UnknownMemberId),
            GroupState::PreparingRebalance => error(ErrorCode::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                self.members[member_id].awaiting_sync = true;
                self.synced(member_id);
                if self.leader.as_deref() == Some(member_id) {
                    self.apply_assignment(assignments, now_ms)
                } else {
                    Vec::new()
                }
            }
            GroupState::Stable => {
                // A follower that syncs after the leader gets what was stored for it.
                self.synced(member_id);
                let member = &mut self.members[member_id];
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                let response = self.sync_success(member_id);
                vec![(member_id.to_string(), response)]
            }
        }
    }

    fn synced(&mut self, member_id: &str) {
        self.pending_sync.shift_remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
    }

    /// Stores the leader's assignment, answers every held sync and becomes Stable.
    fn apply_assignment(
        &mut self,
        assignments: Vec<(String, Bytes)>,
        now_ms: i64,
    ) -> Vec<(String, SyncResponse)> {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        for (member_id, assignment) in assignments {
            // Assignments for ids that are not members are ignored, as in Kafka.
            if let Some(member) = self.members.get_mut(&member_id) {
                member.assignment = assignment;
            }
        }
        self.state = GroupState::Stable;
        let mut out = Vec::new();
        let held: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_sync)
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in held {
            let response = self.sync_success(&member_id);
            let member = &mut self.members[&member_id];
            member.awaiting_sync = false;
            member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
            out.push((member_id, response));
        }
        out
    }

    fn sync_success(&self, member_id: &str) -> SyncResponse {
        SyncResponse {
            error: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self.members[member_id].assignment.clone(),
        }
    }

    /// Handles a Heartbeat: refreshes the member's session and tells it whether to rejoin.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> ErrorCode {
        if self.state == GroupState::Dead {
            return ErrorCode::CoordinatorNotAvailable;
        }
        if self.is_fenced(group_instance_id, member_id) {
            return ErrorCode::FencedInstanceId;
        }
        let state = self.state;
        let current_generation = self.generation_id;
        let Some(member) = self.members.get_mut(member_id) else {
            return ErrorCode::UnknownMemberId;
        };
        if generation_id != current_generation {
            return ErrorCode::IllegalGeneration;
        }
        match state {
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
            GroupState::PreparingRebalance => {
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                ErrorCode::RebalanceInProgress
            }
            // Members may heartbeat between their join response and their sync.
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                ErrorCode::None
            }
        }
    }

    /// Handles a LeaveGroup of one or more members, each given by member id, or by
    /// `""` plus `group.instance.id` (KIP-345 administrative removal). Returns an error
    /// per member, and responses to deliver: joins completed by the departure, held
    /// syncs failed by the rebalance it starts, and the leavers' own held requests.
    pub fn leave(
        &mut self,
        members: Vec<(String, Option<String>)>,
        now_ms: i64,
    ) -> (Vec<ErrorCode>, Vec<Delivery>) {
        let mut out = Vec::new();
        if self.state == GroupState::Dead {
            return (vec![ErrorCode::CoordinatorNotAvailable; members.len()], out);
        }
        let mut errors = Vec::with_capacity(members.len());
        for (member_id, instance) in members {
            let error = if member_id.is_empty() {
                match instance.and_then(|i| self.static_members.get(&i).cloned()) {
                    Some(current) => {
                        self.remove_member_and_update(&current, now_ms, &mut out);
                        ErrorCode::None
                    }
                    None => ErrorCode::UnknownMemberId,
                }
            } else if self.pending_members.shift_remove(&member_id).is_some() {
                self.try_complete_join(now_ms, &mut out);
                ErrorCode::None
            } else if self.is_fenced(instance.as_deref(), &member_id) {
                ErrorCode::FencedInstanceId
            } else if self.members.contains_key(&member_id) {
                self.remove_member_and_update(&member_id, now_ms, &mut out);
                ErrorCode::None
            } else {
                ErrorCode::UnknownMemberId
            };
            errors.push(error);
        }
        (errors, out)
    }
}
