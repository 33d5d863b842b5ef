//! The group itself: its state, members, timers, and the rebalance steps shared by
//! join, sync, leave and the timers.
use std::collections::BTreeMap;

use bytes::Bytes;
use indexmap::{IndexMap, IndexSet};

use super::member::Member;
use super::messages::{Delivery, JoinResponse, JoinedMember, SyncResponse};
use crate::config::GroupConfig;
use spate_metadata::ErrorCode;

/// The classic group states, as DescribeGroups names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members (offsets may still be kept).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Deleted or unloaded; every request is refused.
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// The pending completion of the join phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JoinTimer {
    pub(super) deadline_ms: i64,
    /// Set while an Empty group waits `initial_rebalance_delay_ms` for more members;
    /// such a join never completes early, only at its deadline.
    pub(super) initial: Option<InitialDelay>,
}

/// Kafka's `InitialDelayedJoin`: each expiry extends the wait if members arrived
/// meanwhile, until the rebalance timeout is used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InitialDelay {
    pub(super) delay_ms: i64,
    pub(super) remaining_ms: i64,
}

/// A classic consumer group as a pure state machine: methods take a request and the time
/// and return the responses to deliver now; the caller holds pending requests.
///
/// The caller's own JoinGroup is keyed by `req.member_id`, or by `fresh_member_id` when
/// that is empty, whether it is answered at once or later.
#[derive(Debug, Clone)]
pub struct Group {
    pub(super) group_id: String,
    pub(super) config: GroupConfig,
    pub(super) state: GroupState,
    pub(super) generation_id: i32,
    pub(super) protocol_type: Option<String>,
    pub(super) protocol_name: Option<String>,
    pub(super) leader: Option<String>,
    /// In join order, which makes leader choice and responses deterministic.
    pub(super) members: IndexMap<String, Member>,
    /// `group.instance.id` -> member id.
    pub(super) static_members: BTreeMap<String, String>,
    /// KIP-394 members given an id but not yet rejoined with it -> expiry.
    pub(super) pending_members: IndexMap<String, i64>,
    /// Members of the current generation that have not sent SyncGroup.
    pub(super) pending_sync: IndexSet<String>,
    pub(super) join_timer: Option<JoinTimer>,
    pub(super) sync_deadline_ms: Option<i64>,
    /// A member joined during the initial delay of generation 0.
    pub(super) new_member_added: bool,
}

impl Group {
    /// A new, Empty group.
    pub fn new(group_id: String, config: GroupConfig) -> Self {
        Group {
            group_id,
            config,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: BTreeMap::new(),
            pending_members: IndexMap::new(),
            pending_sync: IndexSet::new(),
            join_timer: None,
            sync_deadline_ms: None,
            new_member_added: false,
        }
    }

    /// The group id.
    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    /// The current state.
    pub fn state(&self) -> GroupState {
        self.state
    }

    /// The current generation; 0 before the first join completes.
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The protocol type of the members, e.g. `"consumer"`.
    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol selected for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    /// The leader's member id.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// The members, in join order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// One member.
    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// Whether `member_id` was handed out by MEMBER_ID_REQUIRED and not used yet.
    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains_key(member_id)
    }

    /// DeleteGroups' verdict: only an Empty group may be deleted.
    pub fn check_deletable(&self) -> ErrorCode {
        match self.state {
            GroupState::Empty => ErrorCode::None,
            GroupState::Dead => ErrorCode::GroupIdNotFound,
            _ => ErrorCode::NonEmptyGroup,
        }
    }

    /// Kafka's `isStaticMemberFenced`: the instance id belongs to another member id.
    pub(super) fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|instance| self.static_members.get(instance))
            .is_some_and(|owner| owner != member_id)
    }

    /// The longest rebalance timeout of the members: how long a rebalance may wait.
    pub(super) fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    pub(super) fn num_awaiting_join(&self) -> usize {
        self.members.values().filter(|m| m.awaiting_join).count()
    }

    /// Protocols every member supports, in the first member's order of preference.
    pub(super) fn candidate_protocols(&self) -> Vec<String> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .protocols
            .iter()
            .map(|(name, _)| name.clone())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect()
    }

    /// Kafka's `supportsProtocols`: a joiner must share the protocol type and at least one
    /// protocol every current member supports.
    pub(super) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        let candidates = self.candidate_protocols();
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| candidates.iter().any(|c| c == name))
    }

    /// Each member votes for its most preferred candidate; most votes wins, ties going
    /// to the protocol voted for first in join order.
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    /// Adds a member; the first member sets the protocol type and becomes leader.
    pub(super) fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.member_id.clone());
        }
        if let Some(instance) = &member.group_instance_id {
            self.static_members
                .insert(instance.clone(), member.member_id.clone());
        }
        self.pending_members.shift_remove(&member.member_id);
        self.members.insert(member.member_id.clone(), member);
    }

    /// Removes a member without answering anything; a removed leader is replaced by the
    /// oldest remaining member.
    pub(super) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let member = self.members.shift_remove(member_id)?;
        if let Some(instance) = &member.group_instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_sync.shift_remove(member_id);
        if self.pending_sync.is_empty() {
            self.sync_deadline_ms = None;
        }
        Some(member)
    }

    /// Kafka's `removeMemberAndUpdateGroup`: answer the member's held requests, drop it,
    /// and rebalance (or let a waiting rebalance complete without it).
    pub(super) fn remove_member_and_update(
        &mut self,
        member_id: &str,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        let Some(member) = self.remove_member(member_id) else {
            return;
        };
        if member.awaiting_join {
            // Empty member id, so a live client simply joins again as new.
            let response = JoinResponse::error("", ErrorCode::UnknownMemberId);
            out.push(Delivery::Join(member.member_id.clone(), response));
        }
        if member.awaiting_sync {
            let response = SyncResponse::error(ErrorCode::UnknownMemberId);
            out.push(Delivery::Sync(member.member_id.clone(), response));
        }
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now_ms, out)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, out),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(super) fn maybe_prepare_rebalance(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(now_ms, out);
        }
    }

    /// Enter PreparingRebalance: held syncs fail, and the join phase gets its deadline
    /// (the initial delay for an Empty group, else the rebalance timeout).
    fn prepare_rebalance(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ErrorCode::RebalanceInProgress, now_ms, out);
        }
        self.sync_deadline_ms = None;
        self.pending_sync.clear();
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        let was_empty = self.state == GroupState::Empty;
        self.state = GroupState::PreparingRebalance;
        if was_empty {
            let delay_ms = self.config.initial_rebalance_delay_ms;
            self.join_timer = Some(JoinTimer {
                deadline_ms: now_ms + delay_ms,
                initial: Some(InitialDelay {
                    delay_ms,
                    remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
                }),
            });
        } else {
            self.join_timer = Some(JoinTimer {
                deadline_ms: now_ms + rebalance_timeout_ms,
                initial: None,
            });
            self.try_complete_join(now_ms, out);
        }
    }

    /// Clears every assignment and fails held syncs with `error`.
    fn reset_and_propagate_assignment_error(
        &mut self,
        error: ErrorCode,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if member.awaiting_sync {
                member.awaiting_sync = false;
                member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
                out.push(Delivery::Sync(
                    member.member_id.clone(),
                    SyncResponse::error(error),
                ));
            }
        }
    }

    /// Completes the join phase early once every member and every KIP-394 pending member
    /// has joined; never during the initial delay.
    pub(super) fn try_complete_join(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        let early_allowed = self.join_timer.is_some_and(|t| t.initial.is_none());
        if self.state == GroupState::PreparingRebalance
            && early_allowed
            && self.num_awaiting_join() == self.members.len()
            && self.pending_members.is_empty()
        {
            self.complete_join(now_ms, out);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, pick a leader
    /// that did, start the next generation and answer every held join.
    pub(super) fn complete_join(&mut self, now_ms: i64, out: &mut Vec<Delivery>) {
        self.join_timer = None;
        self.new_member_added = false;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|m| !m.awaiting_join && m.group_instance_id.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove_member(&member_id);
        }
        if !self.elect_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait another round
            // for them to rejoin or for their sessions to expire.
            self.join_timer = Some(JoinTimer {
                deadline_ms: now_ms + self.rebalance_timeout_ms().max(1),
                initial: None,
            });
            return;
        }
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.leader = None;
            self.state = GroupState::Empty;
            return;
        }
        self.protocol_name = self.select_protocol();
        self.state = GroupState::CompletingRebalance;
        let leader_view = self.joined_members();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in ids {
            let is_leader = self.leader.as_deref() == Some(member_id.as_str());
            let response = self.join_success(&member_id, is_leader.then(|| leader_view.clone()));
            let member = &mut self.members[&member_id];
            if member.awaiting_join {
                member.awaiting_join = false;
                out.push(Delivery::Join(member_id.clone(), response));
            }
            member.is_new = false;
            member.heartbeat_deadline_ms = now_ms + i64::from(member.session_timeout_ms);
            self.pending_sync.insert(member_id);
        }
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
    }

    /// Keeps the leader if it rejoined, else picks the first member that did.
    fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.as_deref() else {
            return false;
        };
        if self.members.get(leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join) {
            Some(joined) => {
                self.leader = Some(joined.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Every member with its metadata for the selected protocol, for the leader.
    pub(super) fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol).cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// A successful join response for the current generation.
    pub(super) fn join_success(
        &self,
        member_id: &str,
        members: Option<Vec<JoinedMember>>,
    ) -> JoinResponse {
        JoinResponse {
            error: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: members.unwrap_or_default(),
            skip_assignment: false,
        }
    }
}
