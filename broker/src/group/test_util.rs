//! Hand-made requests and small assertions shared by the group tests.
use bytes::Bytes;

use super::{Delivery, ErrorCode, Group, GroupConfig, JoinRequest, JoinResponse, SyncResponse};

pub(super) const SESSION_MS: i32 = 10_000;
pub(super) const REBALANCE_MS: i32 = 30_000;
pub(super) const DELAY_MS: i64 = 3_000;
/// When [`form`] completes the join of several members: they arrived during the
/// initial delay, so Kafka waits one delay more.
pub(super) const FORMED_MS: i64 = 2 * DELAY_MS;

pub(super) fn config() -> GroupConfig {
    GroupConfig {
        initial_rebalance_delay_ms: DELAY_MS,
        ..GroupConfig::default()
    }
}

pub(super) fn group() -> Group {
    Group::new("g".to_string(), config())
}

pub(super) fn meta(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// A v3-style join (no KIP-394 round) offering `protocols` with metadata `<name>-<id>`.
pub(super) fn join_req(member_id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_string(),
        group_instance_id: None,
        client_id: "client".to_string(),
        client_host: "/127.0.0.1".to_string(),
        session_timeout_ms: SESSION_MS,
        rebalance_timeout_ms: REBALANCE_MS,
        protocol_type: "consumer".to_string(),
        protocols: protocols
            .iter()
            .map(|p| (p.to_string(), meta(&format!("{p}-{member_id}"))))
            .collect(),
        require_known_member_id: false,
        supports_skip_assignment: true,
        reason: None,
    }
}

/// A join of a new member (empty member id) whose metadata names `id`, the id it will get.
pub(super) fn new_req(id: &str, protocols: &[&str]) -> JoinRequest {
    JoinRequest {
        member_id: String::new(),
        ..join_req(id, protocols)
    }
}

pub(super) fn static_req(member_id: &str, instance: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance.to_string()),
        ..join_req(member_id, &["range"])
    }
}

/// The join responses among `deliveries`, by member id.
pub(super) fn joins(deliveries: &[Delivery]) -> Vec<(&str, &JoinResponse)> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Join(id, r) => Some((id.as_str(), r)),
            Delivery::Sync(..) => None,
        })
        .collect()
}

/// The sync responses among `deliveries`, by member id.
pub(super) fn syncs(deliveries: &[Delivery]) -> Vec<(&str, &SyncResponse)> {
    deliveries
        .iter()
        .filter_map(|d| match d {
            Delivery::Sync(id, r) => Some((id.as_str(), r)),
            Delivery::Join(..) => None,
        })
        .collect()
}

/// The single join response to `member_id`.
pub(super) fn join_for<'a>(deliveries: &'a [Delivery], member_id: &str) -> &'a JoinResponse {
    let found: Vec<_> = joins(deliveries)
        .into_iter()
        .filter(|(id, _)| *id == member_id)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one join response for {member_id}: {deliveries:?}"
    );
    found[0].1
}

/// Joins `ids` (in order) at time 0 and runs the initial delay; returns the completed joins.
pub(super) fn form(group: &mut Group, ids: &[&str]) -> Vec<Delivery> {
    for id in ids {
        let out = group.join(new_req(id, &["range"]), id.to_string(), 0);
        assert!(out.is_empty(), "joins wait for the initial delay: {out:?}");
    }
    group.tick(FORMED_MS)
}

/// Forms the group and completes the sync with assignment `a-<id>` for each member.
pub(super) fn form_stable(group: &mut Group, ids: &[&str], now_ms: i64) {
    form(group, ids);
    let generation = group.generation_id();
    let leader = group.leader().unwrap().to_string();
    for id in ids.iter().filter(|id| **id != leader) {
        let out = group.sync(id, None, generation, None, None, Vec::new(), now_ms);
        assert!(out.is_empty());
    }
    let assignments = ids
        .iter()
        .map(|id| (id.to_string(), meta(&format!("a-{id}"))))
        .collect();
    let out = group.sync(&leader, None, generation, None, None, assignments, now_ms);
    assert_eq!(out.len(), ids.len());
    assert!(out.iter().all(|(_, r)| r.error == ErrorCode::None));
}
