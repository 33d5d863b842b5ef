//! What is persisted of a group (Kafka's GroupMetadata record) and how a new
//! coordinator restores it.
use bytes::Bytes;
use indexmap::IndexMap;

use super::member::Member;
use super::state::{Group, GroupState};
use crate::config::GroupConfig;

/// A group as persisted after each completed sync and whenever it becomes Empty; also
/// what DescribeGroups shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSnapshot {
    /// The group id.
    pub group_id: String,
    /// The protocol type, once any member joined.
    pub protocol_type: Option<String>,
    /// The selected protocol; `None` when Empty.
    pub protocol_name: Option<String>,
    /// The generation.
    pub generation_id: i32,
    /// The leader's member id.
    pub leader: Option<String>,
    /// The members, in join order.
    pub members: Vec<MemberSnapshot>,
}

/// One member as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    /// The member id.
    pub member_id: String,
    /// Its `group.instance.id`, if static.
    pub group_instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's address.
    pub client_host: String,
    /// Its rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
    /// Its assignment.
    pub assignment: Bytes,
}

impl Group {
    /// The group as it should be persisted; meaningful when Stable or Empty.
    pub fn snapshot(&self) -> GroupSnapshot {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        GroupSnapshot {
            group_id: self.group_id.clone(),
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            generation_id: self.generation_id,
            leader: self.leader.clone(),
            members: self
                .members
                .values()
                .map(|m| MemberSnapshot {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    metadata: m.metadata(protocol).cloned().unwrap_or_default(),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Restores a persisted group on a new coordinator: Stable with its members (each
    /// with a fresh session starting at `now_ms`), or Empty if it had none.
    pub fn from_snapshot(snapshot: GroupSnapshot, config: GroupConfig, now_ms: i64) -> Group {
        let mut group = Group::new(snapshot.group_id, config);
        group.generation_id = snapshot.generation_id;
        group.protocol_type = snapshot.protocol_type;
        let protocol_name = snapshot.protocol_name.unwrap_or_default();
        let mut members = IndexMap::new();
        for m in snapshot.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let member = Member {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: group.protocol_type.clone().unwrap_or_default(),
                protocols: vec![(protocol_name.clone(), m.metadata)],
                assignment: m.assignment,
                awaiting_join: false,
                awaiting_sync: false,
                is_new: false,
                heartbeat_deadline_ms: now_ms + i64::from(m.session_timeout_ms),
            };
            members.insert(m.member_id, member);
        }
        group.members = members;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
        } else {
            group.state = GroupState::Stable;
            group.protocol_name = Some(protocol_name);
            group.leader = snapshot
                .leader
                .filter(|leader| group.members.contains_key(leader))
                .or_else(|| group.members.keys().next().cloned());
        }
        group
    }
}
