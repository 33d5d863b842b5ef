//! JoinGroup: new, pending (KIP-394), current and static (KIP-345) members.
use bytes::Bytes;

use super::member::Member;
use super::messages::{Delivery, JoinRequest, JoinResponse};
use super::state::{Group, GroupState};
use spate_metadata::ErrorCode;

impl Group {
    /// Handles a JoinGroup and returns the responses to deliver now: possibly the
    /// caller's own (an error, MEMBER_ID_REQUIRED, or a join that completed at once),
    /// joins of others completed by this one, and held syncs failed because this join
    /// started a rebalance.
    ///
    /// The caller's response, now or later, is keyed by `req.member_id`, or by
    /// `fresh_member_id` when that is empty; `fresh_member_id` is used only if a new id
    /// is handed out.
    pub fn join(
        &mut self,
        req: JoinRequest,
        fresh_member_id: String,
        now_ms: i64,
    ) -> Vec<Delivery> {
        let caller = if req.member_id.is_empty() {
            fresh_member_id.clone()
        } else {
            req.member_id.clone()
        };
        let mut out = Vec::new();
        let reply = |out: &mut Vec<Delivery>, member_id: &str, error| {
            out.push(Delivery::Join(
                caller.clone(),
                JoinResponse::error(member_id, error),
            ));
        };
        let timeout = req.session_timeout_ms;
        if timeout < self.config.min_session_timeout_ms
            || timeout > self.config.max_session_timeout_ms
        {
            reply(&mut out, &req.member_id, ErrorCode::InvalidSessionTimeout);
        } else if self.state == GroupState::Dead {
            // Being deleted or unloaded: the client rediscovers the coordinator.
            reply(&mut out, &req.member_id, ErrorCode::CoordinatorNotAvailable);
        } else if !self.accepts_joining_member(&req) {
            // A current member over the limit is dropped too (Kafka: the limit may have
            // been lowered, and the last members to rejoin are the ones kicked out).
            self.remove_member(&req.member_id);
            reply(&mut out, "", ErrorCode::GroupMaxSizeReached);
        } else if !self.supports_protocols(&req.protocol_type, &req.protocols) {
            reply(
                &mut out,
                &req.member_id,
                ErrorCode::InconsistentGroupProtocol,
            );
        } else if req.member_id.is_empty() {
            self.join_new_member(req, fresh_member_id, now_ms, &mut out);
        } else {
            self.join_current_member(req, now_ms, &mut out);
        }
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now_ms, &mut out);
            // A zero initial delay is due at once rather than on the next tick.
            if self.join_timer.is_some_and(|t| t.deadline_ms <= now_ms) {
                self.on_join_deadline(now_ms, &mut out);
            }
        }
        out
    }

    /// Kafka's `acceptJoiningMember`; a static member replacing its old id counts as
    /// the member it replaces.
    fn accepts_joining_member(&self, req: &JoinRequest) -> bool {
        let member_id = match (&req.group_instance_id, req.member_id.is_empty()) {
            (Some(instance), true) => self
                .static_members
                .get(instance)
                .cloned()
                .unwrap_or_default(),
            _ => req.member_id.clone(),
        };
        let max = self.config.max_size;
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            // Counting members that rejoined (not all members) lets the last ones to
            // rejoin be the ones turned away.
            GroupState::PreparingRebalance => {
                self.members
                    .get(&member_id)
                    .is_some_and(|m| m.awaiting_join)
                    || self.num_awaiting_join() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(&member_id) || self.members.len() < max
            }
        }
    }

    fn join_new_member(
        &mut self,
        req: JoinRequest,
        fresh_member_id: String,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        if let Some(instance) = &req.group_instance_id {
            match self.static_members.get(instance).cloned() {
                Some(old_member_id) => {
                    self.replace_static_member(&old_member_id, fresh_member_id, req, now_ms, out)
                }
                None => self.add_member_and_rebalance(fresh_member_id, req, now_ms, out),
            }
        } else if req.require_known_member_id {
            // KIP-394: hand out the id first so a client that times out on a long join
            // does not leave an anonymous member behind.
            let deadline = now_ms + i64::from(req.session_timeout_ms);
            self.pending_members
                .insert(fresh_member_id.clone(), deadline);
            let response = JoinResponse::error(&fresh_member_id, ErrorCode::MemberIdRequired);
            out.push(Delivery::Join(fresh_member_id, response));
        } else {
            self.add_member_and_rebalance(fresh_member_id, req, now_ms, out);
        }
    }

    fn join_current_member(&mut self, req: JoinRequest, now_ms: i64, out: &mut Vec<Delivery>) {
        let member_id = req.member_id.clone();
        let instance = req.group_instance_id.as_deref();
        let reply = |out: &mut Vec<Delivery>, error| {
            out.push(Delivery::Join(
                member_id.clone(),
                JoinResponse::error(&member_id, error),
            ));
        };
        if instance.is_none() && self.pending_members.contains_key(&member_id) {
            self.add_member_and_rebalance(member_id.clone(), req, now_ms, out);
            return;
        }
        if self.is_fenced(instance, &member_id) {
            reply(out, ErrorCode::FencedInstanceId);
            return;
        }
        let unknown_instance = instance.is_some_and(|i| !self.static_members.contains_key(i));
        let Some(member) = self.members.get(&member_id) else {
            reply(out, ErrorCode::UnknownMemberId);
            return;
        };
        if unknown_instance {
            reply(out, ErrorCode::UnknownMemberId);
            return;
        }
        let unchanged = member.matches(&req.protocols);
        let is_leader = self.leader.as_deref() == Some(member_id.as_str());
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(req, now_ms, out),
            // Same metadata: it probably missed the join response, so resend it.
            GroupState::CompletingRebalance if unchanged => {
                let members = is_leader.then(|| self.joined_members());
                let response = self.join_success(&member_id, members);
                out.push(Delivery::Join(member_id, response));
            }
            // The leader rejoining asks for a rebalance: assignments may depend on things
            // member metadata does not show, such as topic metadata.
            GroupState::Stable if unchanged && !is_leader => {
                let response = self.join_success(&member_id, None);
                out.push(Delivery::Join(member_id, response));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(req, now_ms, out)
            }
            GroupState::Empty | GroupState::Dead => reply(out, ErrorCode::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        self.add_member(Member {
            member_id,
            group_instance_id: req.group_instance_id,
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout_ms: req.session_timeout_ms,
            rebalance_timeout_ms: req.rebalance_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req.protocols,
            assignment: Bytes::new(),
            awaiting_join: true,
            awaiting_sync: false,
            is_new: true,
            // A new member cannot heartbeat while its first join is held, so the join
            // itself times out instead of the session.
            heartbeat_deadline_ms: now_ms + self.config.new_member_join_timeout_ms,
        });
        self.maybe_prepare_rebalance(now_ms, out);
    }

    fn update_member_and_rebalance(
        &mut self,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        if let Some(member) = self.members.get_mut(&req.member_id) {
            member.protocols = req.protocols;
            member.session_timeout_ms = req.session_timeout_ms;
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
            member.awaiting_join = true;
        }
        self.maybe_prepare_rebalance(now_ms, out);
    }

    /// KIP-345: a known `group.instance.id` joining without a member id takes over the
    /// old member (and its assignment); the old id is fenced. In Stable, if the selected
    /// protocol stays the same, there is no rebalance.
    fn replace_static_member(
        &mut self,
        old_member_id: &str,
        new_member_id: String,
        req: JoinRequest,
        now_ms: i64,
        out: &mut Vec<Delivery>,
    ) {
        let previous_leader = self.leader.clone().unwrap_or_default();
        let Some((index, _, mut member)) = self.members.shift_remove_full(old_member_id) else {
            return;
        };
        if member.awaiting_join {
            let response = JoinResponse::error(old_member_id, ErrorCode::FencedInstanceId);
            out.push(Delivery::Join(old_member_id.to_string(), response));
        }
        if member.awaiting_sync {
            let response = super::messages::SyncResponse::error(ErrorCode::FencedInstanceId);
            out.push(Delivery::Sync(old_member_id.to_string(), response));
        }
        member.member_id = new_member_id.clone();
        member.client_id = req.client_id;
        member.client_host = req.client_host;
        member.protocols = req.protocols;
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.awaiting_join = true;
        member.awaiting_sync = false;
        member.heartbeat_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
        self.members
            .shift_insert(index, new_member_id.clone(), member);
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), new_member_id.clone());
        }
        if self.leader.as_deref() == Some(old_member_id) {
            self.leader = Some(new_member_id.clone());
        }
        if self.pending_sync.shift_remove(old_member_id) {
            self.pending_sync.insert(new_member_id.clone());
        }
        match self.state {
            GroupState::Stable if self.select_protocol() == self.protocol_name => {
                let is_leader = self.leader.as_deref() == Some(new_member_id.as_str());
                let mut response = if req.supports_skip_assignment {
                    // KIP-814: the restarted leader learns it leads but must keep the
                    // current assignment, which a Stable group would not redistribute.
                    let mut response =
                        self.join_success(&new_member_id, is_leader.then(|| self.joined_members()));
                    response.skip_assignment = is_leader;
                    response
                } else {
                    // Older clients: name the old leader id so the restarted leader does
                    // not believe it leads and compute an assignment nobody would get.
                    let mut response = self.join_success(&new_member_id, None);
                    response.leader = previous_leader;
                    response
                };
                response.member_id = new_member_id.clone();
                if let Some(member) = self.members.get_mut(&new_member_id) {
                    member.awaiting_join = false;
                }
                out.push(Delivery::Join(new_member_id, response));
            }
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(now_ms, out)
            }
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
        }
    }
}
