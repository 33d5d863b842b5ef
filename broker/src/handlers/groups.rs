//! The classic consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups and
//! OffsetDelete. Requests are mapped onto the [`GroupCoordinator`]; the group rules
//! themselves live in the pure [`crate::group`] state machine.
use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::group::coordinator::{partition_for, OffsetEntry, OFFSETS_TOPIC};
use crate::group::{GroupState, JoinRequest};
use crate::server::context::RequestContext;
use crate::state::BrokerState;
use spate_metadata::ErrorCode;

fn s(b: &StrBytes) -> String {
    b.to_string()
}

/// Partitions of `__consumer_offsets`, creating the topic when it does not exist yet
/// (then COORDINATOR_NOT_AVAILABLE: clients retry once it is there).
async fn offsets_partitions(state: &BrokerState) -> Result<i32, i16> {
    let existing = state
        .metadata
        .image()
        .topic_by_name(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32);
    if let Some(partitions) = existing {
        compact_offsets_topic(state).await;
        return Ok(partitions);
    }
    let brokers = state.metadata.image().unfenced_brokers().len().max(1);
    let rf = brokers.min(3) as i32;
    let req = spate_proto::controller::CreateTopicsRequest {
        topics: vec![spate_proto::controller::CreatableTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: state.config.topics.offsets_topic_partitions,
            replication_factor: rf,
            // As Kafka's: compacted (the latest offset and metadata of each group stay, so
            // a new coordinator's load is bounded by live groups, not commits ever made).
            configs: OFFSETS_TOPIC_CONFIGS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }],
        validate_only: false,
    };
    match super::admin::controller_call(state, |mut c| async move { c.create_topics(req).await })
        .await
    {
        Ok(resp) => {
            for t in resp
                .topics
                .iter()
                .filter(|t| t.error_code != 0 && t.error_code != 36)
            {
                tracing::warn!(code = t.error_code, msg = %t.error_message, "cannot create {OFFSETS_TOPIC}");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}"),
    }
    Err(ErrorCode::CoordinatorNotAvailable.code())
}

/// The configs `__consumer_offsets` is created with (Kafka's).
pub const OFFSETS_TOPIC_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.bytes", "104857600"),
];

/// Set while this process switches an existing `__consumer_offsets` to compaction.
static SWITCHING_TO_COMPACT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// An offsets topic created before compaction existed keeps every commit forever: it is
/// switched to `cleanup.policy=compact` (one attempt at a time; retried on the next
/// coordinator lookup if it fails).
async fn compact_offsets_topic(state: &BrokerState) {
    use std::sync::atomic::Ordering;
    let compacted = state
        .metadata
        .image()
        .topic_config(OFFSETS_TOPIC)
        .get("cleanup.policy")
        .is_some_and(|p| spate_metadata::config_defs::list_items(p).contains(&"compact"));
    if compacted || SWITCHING_TO_COMPACT.swap(true, Ordering::SeqCst) {
        return;
    }
    let req = spate_proto::controller::AlterConfigsRequest {
        resources: vec![spate_proto::controller::AlterConfigsResource {
            resource_type: spate_proto::metadata::ConfigResourceType::ConfigResourceTopic as i32,
            resource_name: OFFSETS_TOPIC.to_string(),
            configs: vec![spate_proto::controller::AlterableConfig {
                name: "cleanup.policy".to_string(),
                op: 0, // SET
                value: Some("compact".to_string()),
            }],
            replace: false,
        }],
        validate_only: false,
    };
    let outcome =
        super::admin::controller_call(state, |mut c| async move { c.alter_configs(req).await })
            .await;
    match outcome {
        Ok(resp) if resp.resources.iter().all(|r| r.error_code == 0) => {
            tracing::info!("switched {OFFSETS_TOPIC} to cleanup.policy=compact");
        }
        Ok(resp) => {
            tracing::warn!(?resp, "cannot switch {OFFSETS_TOPIC} to compaction");
        }
        Err(e) => tracing::warn!(error = %e, "cannot switch {OFFSETS_TOPIC} to compaction"),
    }
    SWITCHING_TO_COMPACT.store(false, Ordering::SeqCst);
}

/// The coordinator (leader of the group's offsets partition) of `key`.
async fn coordinator_of(
    state: &BrokerState,
    key: &str,
    listener: &str,
) -> Result<(i32, String, i32), i16> {
    let partitions = offsets_partitions(state).await?;
    let index = partition_for(key, partitions);
    let image = state.metadata.image();
    let leader = image
        .topic_by_name(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(&index))
        .and_then(|p| p.leader)
        .ok_or(ErrorCode::CoordinatorNotAvailable.code())?;
    let broker = image
        .broker(leader)
        .ok_or(ErrorCode::CoordinatorNotAvailable.code())?;
    let ep = broker
        .endpoints
        .iter()
        .find(|e| e.listener == listener)
        .ok_or(ErrorCode::CoordinatorNotAvailable.code())?;
    Ok((leader.0, ep.host.clone(), ep.port))
}

/// FindCoordinator (groups only; transactions are not supported).
pub async fn find_coordinator(
    ctx: &RequestContext,
    req: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let keys: Vec<String> = if ctx.api_version >= 4 {
        req.coordinator_keys.iter().map(s).collect()
    } else {
        vec![s(&req.key)]
    };
    let mut coordinators = Vec::new();
    for key in keys {
        let found = if req.key_type != 0 {
            Err(ErrorCode::CoordinatorNotAvailable.code())
        } else if key.is_empty() {
            Err(ErrorCode::InvalidGroupId.code())
        } else {
            coordinator_of(&ctx.state, &key, &ctx.session.listener).await
        };
        let c = match found {
            Ok((node, host, port)) => Coordinator::default()
                .with_key(str_bytes(key))
                .with_node_id(BrokerId(node))
                .with_host(str_bytes(host))
                .with_port(port)
                .with_error_code(0),
            Err(e) => Coordinator::default()
                .with_key(str_bytes(key))
                .with_node_id(BrokerId(-1))
                .with_host(str_bytes(""))
                .with_port(-1)
                .with_error_code(e),
        };
        coordinators.push(c);
    }
    if ctx.api_version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.pop().unwrap_or_default();
    FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port)
}

async fn partitions_or(state: &BrokerState) -> Result<i32, i16> {
    state
        .metadata
        .image()
        .topic_by_name(OFFSETS_TOPIC)
        .map(|t| t.partitions.len() as i32)
        .ok_or(ErrorCode::NotCoordinator.code())
}

/// JoinGroup.
pub async fn join_group(ctx: &RequestContext, req: JoinGroupRequest) -> JoinGroupResponse {
    let v = ctx.api_version;
    let failed = |code: i16, member: String| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_protocol_name((v < 7).then(|| str_bytes("")))
            .with_member_id(str_bytes(member))
    };
    let Ok(partitions) = partitions_or(&ctx.state).await else {
        return failed(ErrorCode::NotCoordinator.code(), s(&req.member_id));
    };
    let join = JoinRequest {
        member_id: s(&req.member_id),
        group_instance_id: req.group_instance_id.as_ref().map(s),
        client_id: ctx.client_id.clone(),
        client_host: format!("/{}", ctx.session.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: it is the session timeout.
        rebalance_timeout_ms: if v >= 1 {
            req.rebalance_timeout_ms
        } else {
            req.session_timeout_ms
        },
        protocol_type: s(&req.protocol_type),
        protocols: req
            .protocols
            .iter()
            .map(|p| (s(&p.name), p.metadata.clone()))
            .collect(),
        require_known_member_id: v >= 4,
        supports_skip_assignment: v >= 9,
        reason: req.reason.as_ref().map(s),
    };
    let group = s(&req.group_id.0);
    match ctx.state.groups.join(&group, partitions, join).await {
        Ok(r) => {
            let members = r
                .members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(if v >= 5 {
                            m.group_instance_id.map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect();
            JoinGroupResponse::default()
                .with_error_code(r.error.code())
                .with_generation_id(r.generation_id)
                .with_protocol_type(r.protocol_type.map(str_bytes))
                // Before v7 the name is not nullable: Kafka sends "" when there is none.
                .with_protocol_name(
                    r.protocol_name
                        .map(str_bytes)
                        .or_else(|| (v < 7).then(|| str_bytes(""))),
                )
                .with_leader(str_bytes(r.leader))
                .with_skip_assignment(v >= 9 && r.skip_assignment)
                .with_member_id(str_bytes(r.member_id))
                .with_members(members)
        }
        Err(code) => failed(code, s(&req.member_id)),
    }
}

/// SyncGroup.
pub async fn sync_group(ctx: &RequestContext, req: SyncGroupRequest) -> SyncGroupResponse {
    let Ok(partitions) = partitions_or(&ctx.state).await else {
        return SyncGroupResponse::default().with_error_code(ErrorCode::NotCoordinator.code());
    };
    let assignments: Vec<(String, Bytes)> = req
        .assignments
        .iter()
        .map(|a| (s(&a.member_id), a.assignment.clone()))
        .collect();
    let result = ctx
        .state
        .groups
        .sync(
            &s(&req.group_id.0),
            partitions,
            &s(&req.member_id),
            req.group_instance_id.as_ref().map(|i| i.as_str()),
            req.generation_id,
            req.protocol_type.as_ref().map(|p| p.as_str()),
            req.protocol_name.as_ref().map(|p| p.as_str()),
            assignments,
        )
        .await;
    match result {
        Ok(r) => SyncGroupResponse::default()
            .with_error_code(r.error.code())
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes))
            .with_assignment(r.assignment),
        Err(code) => SyncGroupResponse::default().with_error_code(code),
    }
}

/// Heartbeat.
pub async fn heartbeat(ctx: &RequestContext, req: HeartbeatRequest) -> HeartbeatResponse {
    let code = match partitions_or(&ctx.state).await {
        Ok(partitions) => match ctx.state.groups.heartbeat(
            &s(&req.group_id.0),
            partitions,
            &s(&req.member_id),
            req.group_instance_id.as_ref().map(|i| i.as_str()),
            req.generation_id,
        ) {
            Ok(e) => e.code(),
            Err(code) => code,
        },
        Err(code) => code,
    };
    HeartbeatResponse::default().with_error_code(code)
}

/// LeaveGroup (v3+: several members at once).
pub async fn leave_group(ctx: &RequestContext, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let v = ctx.api_version;
    let members: Vec<(String, Option<String>)> = if v >= 3 {
        req.members
            .iter()
            .map(|m| (s(&m.member_id), m.group_instance_id.as_ref().map(s)))
            .collect()
    } else {
        vec![(s(&req.member_id), None)]
    };
    let result = match partitions_or(&ctx.state).await {
        Ok(partitions) => {
            ctx.state
                .groups
                .leave(&s(&req.group_id.0), partitions, members.clone())
                .await
        }
        Err(code) => Err(code),
    };
    match result {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(codes) if v >= 3 => LeaveGroupResponse::default()
            .with_error_code(0)
            .with_members(
                members
                    .into_iter()
                    .zip(codes)
                    .map(|((m, i), e)| {
                        MemberResponse::default()
                            .with_member_id(str_bytes(m))
                            .with_group_instance_id(i.map(str_bytes))
                            .with_error_code(e.code())
                    })
                    .collect(),
            ),
        Ok(codes) => {
            LeaveGroupResponse::default().with_error_code(codes.first().map_or(0, |e| e.code()))
        }
    }
}

/// OffsetCommit.
pub async fn offset_commit(ctx: &RequestContext, req: OffsetCommitRequest) -> OffsetCommitResponse {
    let entries: Vec<OffsetEntry> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetEntry {
                topic: s(&t.name.0),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(s).unwrap_or_default(),
            })
        })
        .collect();
    // As Kafka: a partition the metadata does not know is answered
    // UNKNOWN_TOPIC_OR_PARTITION and not stored; the rest go to the coordinator.
    let image = ctx.state.metadata.image();
    let known: Vec<bool> = entries
        .iter()
        .map(|e| {
            image
                .topic_by_name(&e.topic)
                .is_some_and(|t| t.partitions.contains_key(&e.partition))
        })
        .collect();
    let to_store: Vec<OffsetEntry> = entries
        .iter()
        .zip(&known)
        .filter(|(_, k)| **k)
        .map(|(e, _)| e.clone())
        .collect();
    let stored = if to_store.is_empty() {
        Vec::new()
    } else {
        match partitions_or(&ctx.state).await {
            Ok(partitions) => ctx
                .state
                .groups
                .commit_offsets(
                    &s(&req.group_id.0),
                    partitions,
                    &s(&req.member_id),
                    req.group_instance_id.as_ref().map(|i| i.as_str()),
                    req.generation_id_or_member_epoch,
                    to_store.clone(),
                )
                .await
                .unwrap_or_else(|code| vec![code; to_store.len()]),
            Err(code) => vec![code; to_store.len()],
        }
    };
    let mut stored = stored.into_iter();
    let codes = known.iter().map(|k| {
        if *k {
            stored
                .next()
                .unwrap_or(ErrorCode::UnknownServerError.code())
        } else {
            ErrorCode::UnknownTopicOrPartition.code()
        }
    });
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (
        OffsetEntry {
            topic, partition, ..
        },
        code,
    ) in entries.into_iter().zip(codes)
    {
        let p = OffsetCommitResponsePartition::default()
            .with_partition_index(partition)
            .with_error_code(code);
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
            _ => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(topic)))
                    .with_partitions(vec![p]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

type Fetched = Vec<OffsetEntry>;

fn group_offsets(
    state: &BrokerState,
    partitions: Result<i32, i16>,
    group: &str,
    topics: Option<Vec<(String, Vec<i32>)>>,
) -> Result<Fetched, i16> {
    state.groups.fetch_offsets(group, partitions?, topics)
}

/// Rows grouped by topic, in order.
fn grouped<T>(rows: &Fetched, part: impl Fn(&OffsetEntry) -> T) -> Vec<(String, Vec<T>)> {
    let mut out: Vec<(String, Vec<T>)> = Vec::new();
    for row in rows {
        let p = part(row);
        match out.last_mut() {
            Some((t, ps)) if *t == row.topic => ps.push(p),
            _ => out.push((row.topic.clone(), vec![p])),
        }
    }
    out
}

/// OffsetFetch (v8+: several groups).
pub async fn offset_fetch(ctx: &RequestContext, req: OffsetFetchRequest) -> OffsetFetchResponse {
    let v = ctx.api_version;
    let partitions = partitions_or(&ctx.state).await;
    if v >= 8 {
        let groups = req
            .groups
            .iter()
            .map(|g| {
                let topics = g.topics.as_ref().map(|ts| {
                    ts.iter()
                        .map(|t| (s(&t.name.0), t.partition_indexes.clone()))
                        .collect()
                });
                match group_offsets(&ctx.state, partitions, &s(&g.group_id.0), topics) {
                    Ok(rows) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(0)
                        .with_topics(
                            grouped(&rows, |r| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(r.partition)
                                    .with_committed_offset(r.offset)
                                    .with_committed_leader_epoch(r.leader_epoch)
                                    .with_metadata(Some(str_bytes(r.metadata.clone())))
                                    .with_error_code(0)
                            })
                            .into_iter()
                            .map(|(t, ps)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(TopicName(str_bytes(t)))
                                    .with_partitions(ps)
                            })
                            .collect(),
                        ),
                    Err(code) => OffsetFetchResponseGroup::default()
                        .with_group_id(g.group_id.clone())
                        .with_error_code(code),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let topics = req.topics.as_ref().map(|ts| {
        ts.iter()
            .map(|t| (s(&t.name.0), t.partition_indexes.clone()))
            .collect()
    });
    match group_offsets(&ctx.state, partitions, &s(&req.group_id.0), topics) {
        Ok(rows) => OffsetFetchResponse::default()
            .with_error_code(0)
            .with_topics(
                grouped(&rows, |r| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(r.partition)
                        .with_committed_offset(r.offset)
                        .with_committed_leader_epoch(if v >= 5 { r.leader_epoch } else { -1 })
                        .with_metadata(Some(str_bytes(r.metadata.clone())))
                        .with_error_code(0)
                })
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(ps)
                })
                .collect(),
            ),
        // v0-v1 carry errors per partition only.
        Err(code) if v < 2 => {
            let rows: Fetched = req
                .topics
                .iter()
                .flatten()
                .flat_map(|t| {
                    t.partition_indexes
                        .iter()
                        .map(|p| OffsetEntry {
                            topic: s(&t.name.0),
                            partition: *p,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: String::new(),
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            OffsetFetchResponse::default().with_topics(
                grouped(&rows, |r| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(r.partition)
                        .with_committed_offset(-1)
                        .with_error_code(code)
                })
                .into_iter()
                .map(|(t, ps)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(TopicName(str_bytes(t)))
                        .with_partitions(ps)
                })
                .collect(),
            )
        }
        Err(code) => OffsetFetchResponse::default().with_error_code(code),
    }
}

/// DescribeGroups.
pub async fn describe_groups(
    ctx: &RequestContext,
    req: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let v = ctx.api_version;
    let partitions = partitions_or(&ctx.state).await;
    let groups = req
        .groups
        .iter()
        .map(|g| {
            let id = s(&g.0);
            let base = DescribedGroup::default().with_group_id(g.clone());
            match partitions.and_then(|p| ctx.state.groups.describe(&id, p)) {
                // v6 (KIP-1043): a group that does not exist is an error, not a Dead one.
                Ok(view) if v >= 6 && view.state == GroupState::Dead.name() => base
                    .with_error_code(ErrorCode::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(format!("group '{id}' not found"))))
                    .with_group_state(str_bytes(view.state))
                    .with_protocol_type(str_bytes(""))
                    .with_protocol_data(str_bytes("")),
                Ok(view) => base
                    .with_error_code(0)
                    .with_group_state(str_bytes(view.state))
                    .with_protocol_type(str_bytes(view.protocol_type))
                    .with_protocol_data(str_bytes(view.protocol))
                    .with_members(
                        view.members
                            .into_iter()
                            .map(|(m, i, c, h, meta, assign)| {
                                DescribedGroupMember::default()
                                    .with_member_id(str_bytes(m))
                                    .with_group_instance_id(if v >= 4 {
                                        i.map(str_bytes)
                                    } else {
                                        None
                                    })
                                    .with_client_id(str_bytes(c))
                                    .with_client_host(str_bytes(h))
                                    .with_member_metadata(meta)
                                    .with_member_assignment(assign)
                            })
                            .collect(),
                    ),
                Err(code) => base
                    .with_error_code(code)
                    .with_group_state(str_bytes(""))
                    .with_protocol_type(str_bytes(""))
                    .with_protocol_data(str_bytes("")),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// ListGroups: the groups this broker coordinates (clients ask every broker).
pub fn list_groups(ctx: &RequestContext, req: ListGroupsRequest) -> ListGroupsResponse {
    let v = ctx.api_version;
    let filter: Vec<String> = req
        .states_filter
        .iter()
        .map(|f| s(f).to_lowercase())
        .collect();
    let types: Vec<String> = req
        .types_filter
        .iter()
        .map(|t| s(t).to_lowercase())
        .collect();
    let groups = ctx
        .state
        .groups
        .list()
        .into_iter()
        .filter(|(_, _, state)| filter.is_empty() || filter.contains(&state.to_lowercase()))
        // v5 (KIP-848): every group here is a classic one.
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|(id, protocol_type, state)| {
            let g = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(id)))
                .with_protocol_type(str_bytes(protocol_type));
            let g = if v >= 4 {
                g.with_group_state(str_bytes(state))
            } else {
                g
            };
            if v >= 5 {
                g.with_group_type(str_bytes("classic"))
            } else {
                g
            }
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(0)
        .with_groups(groups)
}

/// DeleteGroups.
pub async fn delete_groups(ctx: &RequestContext, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let partitions = partitions_or(&ctx.state).await;
    let mut results = Vec::new();
    for g in &req.groups_names {
        let code = match partitions {
            Ok(p) => ctx
                .state
                .groups
                .delete_group(&s(&g.0), p)
                .await
                .unwrap_or_else(|c| c),
            Err(c) => c,
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(g.clone())
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

/// OffsetDelete.
pub async fn offset_delete(ctx: &RequestContext, req: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let topics: Vec<(String, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                s(&t.name.0),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let result = match partitions_or(&ctx.state).await {
        Ok(p) => {
            ctx.state
                .groups
                .delete_offsets(&s(&req.group_id.0), p, topics)
                .await
        }
        Err(c) => Err(c),
    };
    match result {
        Err(code) => OffsetDeleteResponse::default().with_error_code(code),
        Ok(rows) => {
            let mut out: Vec<OffsetDeleteResponseTopic> = Vec::new();
            for (topic, partition, code) in rows {
                let p = OffsetDeleteResponsePartition::default()
                    .with_partition_index(partition)
                    .with_error_code(code);
                match out.last_mut() {
                    Some(t) if t.name.0.as_str() == topic => t.partitions.push(p),
                    _ => out.push(
                        OffsetDeleteResponseTopic::default()
                            .with_name(TopicName(str_bytes(topic)))
                            .with_partitions(vec![p]),
                    ),
                }
            }
            OffsetDeleteResponse::default()
                .with_error_code(0)
                .with_topics(out)
        }
    }
}
