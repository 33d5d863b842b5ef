//! Consumer-group requests that go to a group's coordinator (FindCoordinator, OffsetFetch,
//! OffsetCommit, DescribeGroups, DeleteGroups) or to every broker (ListGroups).
//!
//! The group consumer and the admin client share these; the join/sync/heartbeat protocol
//! lives in [`crate::consumer::group`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, OffsetCommitRequest, OffsetFetchRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::offsets::{topic_name, PartitionResults};
use crate::cluster::Cluster;
use crate::connection::Connection;
use crate::consumer::assignor;
use crate::error::{Error, Result};
use crate::types::{NodeId, TopicPartition};

/// FindCoordinator's key type for consumer groups (1 is transactions).
const KEY_TYPE_GROUP: i8 = 0;

/// A group as ListGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    /// The group id.
    pub group_id: String,
    /// "consumer" for consumer groups; empty for groups that only commit offsets.
    pub protocol_type: String,
    /// The state (Empty, Stable, ...), when the broker reports it (ListGroups v4+).
    pub state: Option<String>,
    /// The broker that listed it (its coordinator).
    pub coordinator: NodeId,
}

/// One member as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// The member id the coordinator gave it.
    pub member_id: String,
    /// The static instance id, if any (KIP-345).
    pub group_instance_id: Option<String>,
    /// The member's client id.
    pub client_id: String,
    /// The member's host as the coordinator saw it.
    pub client_host: String,
    /// Its partitions, decoded from the consumer protocol (empty for other protocols).
    pub assignment: Vec<TopicPartition>,
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Empty, PreparingRebalance, CompletingRebalance, Stable or Dead.
    pub state: String,
    /// "consumer" for consumer groups.
    pub protocol_type: String,
    /// The chosen assignment strategy, e.g. "range".
    pub protocol: String,
    /// The members.
    pub members: Vec<MemberDescription>,
    /// The coordinator that answered.
    pub coordinator: NodeId,
}

/// Whether an error means "ask FindCoordinator again".
pub fn is_coordinator_error(e: &Error) -> bool {
    matches!(
        e.kafka_code(),
        Some(
            ResponseError::NotCoordinator
                | ResponseError::CoordinatorNotAvailable
                | ResponseError::CoordinatorLoadInProgress
        )
    ) || matches!(
        e,
        Error::Io { .. } | Error::ConnectionClosed(_) | Error::Timeout { .. }
    )
}

/// Asks any broker which broker coordinates `group`, and makes sure its address is known.
pub async fn find_coordinator(cluster: &Cluster, group: &str) -> Result<NodeId> {
    let conn = cluster.any_connection().await?;
    let version = conn.api_version(ApiKey::FindCoordinator)?;
    let mut req = FindCoordinatorRequest::default();
    let key = StrBytes::from_string(group.to_string());
    if version >= 4 {
        req.coordinator_keys = vec![key];
    } else {
        req.key = key;
    }
    if version >= 1 {
        req.key_type = KEY_TYPE_GROUP;
    }
    let resp = conn.request(version, &req).await?;
    let context = format!("find the coordinator of group '{group}'");
    let node = if version >= 4 {
        let c = resp
            .coordinators
            .iter()
            .find(|c| c.key.as_str() == group)
            .or(resp.coordinators.first())
            .ok_or_else(|| Error::protocol(format!("{context}: no coordinator in response")))?;
        if let Some(e) = Error::from_code(
            c.error_code,
            c.error_message.as_ref().map(|m| m.to_string()),
            context,
        ) {
            return Err(e);
        }
        c.node_id.0
    } else {
        if let Some(e) = Error::from_code(
            resp.error_code,
            resp.error_message.as_ref().map(|m| m.to_string()),
            context,
        ) {
            return Err(e);
        }
        resp.node_id.0
    };
    let node = NodeId(node);
    if cluster.metadata().broker_addr(node).is_none() {
        cluster.refresh(Some(&[])).await?;
    }
    Ok(node)
}

/// Runs `op` on the coordinator of `group`, finding it again (with backoff) when it moved,
/// is loading, or the connection failed.
pub async fn on_coordinator<T, F, Fut>(cluster: &Cluster, group: &str, mut op: F) -> Result<T>
where
    F: FnMut(Arc<Connection>, NodeId) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        let r = async {
            let node = find_coordinator(cluster, group).await?;
            let conn = cluster.connection(node).await?;
            op(conn, node).await
        }
        .await;
        match r {
            Err(e) if is_coordinator_error(&e) && attempt < cluster.config().retries => {
                tracing::debug!(group, error = %e, attempt, "coordinator unavailable; retrying");
                tokio::time::sleep(cluster.config().backoff(attempt)).await;
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// OffsetFetch on one coordinator connection: the committed offset of each partition that
/// has one (`partitions = None`: every partition the group committed).
pub async fn fetch_committed_on(
    conn: &Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    let version = conn.api_version(ApiKey::OffsetFetch)?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in partitions.unwrap_or_default() {
        by_topic.entry(&tp.topic).or_default().push(tp.partition);
    }
    let mut req = OffsetFetchRequest::default();
    let group_id = GroupId(StrBytes::from_string(group.to_string()));
    if version >= 8 {
        let topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopics::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect()
        });
        req.groups = vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id)
            .with_topics(topics)];
    } else {
        req.group_id = group_id;
        req.topics = partitions.map(|_| {
            by_topic
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partition_indexes(ps.clone())
                })
                .collect()
        });
    }
    let resp = conn.request(version, &req).await?;
    let context = format!("fetch committed offsets of group '{group}'");
    let mut out = BTreeMap::new();
    if version >= 8 {
        let g = resp
            .groups
            .iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| Error::protocol(format!("{context}: group missing in response")))?;
        if let Some(e) = Error::from_code(g.error_code, None, context.clone()) {
            return Err(e);
        }
        for t in &g.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                collect_committed(&mut out, tp, p.committed_offset, p.error_code, &context)?;
            }
        }
    } else {
        if let Some(e) = Error::from_code(resp.error_code, None, context.clone()) {
            return Err(e);
        }
        for t in &resp.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                collect_committed(&mut out, tp, p.committed_offset, p.error_code, &context)?;
            }
        }
    }
    Ok(out)
}

fn collect_committed(
    out: &mut BTreeMap<TopicPartition, i64>,
    tp: TopicPartition,
    offset: i64,
    code: i16,
    context: &str,
) -> Result<()> {
    if let Some(e) = Error::from_code(code, None, format!("{context} ({tp})")) {
        return Err(e);
    }
    // -1: nothing committed for this partition.
    if offset >= 0 {
        out.insert(tp, offset);
    }
    Ok(())
}

/// The member a commit speaks for: a live member's generation and id, or [`Self::ADMIN`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitIdentity {
    /// The generation the member joined in; -1 for an admin commit.
    pub generation_id: i32,
    /// The member id; empty for an admin commit.
    pub member_id: String,
}

impl CommitIdentity {
    /// A commit from outside the group; the coordinator only accepts it while the group is
    /// empty.
    pub const ADMIN: CommitIdentity = CommitIdentity {
        generation_id: -1,
        member_id: String::new(),
    };
}

/// OffsetCommit on one coordinator connection; one result per partition.
pub async fn commit_on(
    conn: &Connection,
    group: &str,
    who: &CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<PartitionResults<()>> {
    let version = conn.api_version(ApiKey::OffsetCommit)?;
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (tp, offset) in offsets {
        let p = OffsetCommitRequestPartition::default()
            .with_partition_index(tp.partition)
            .with_committed_offset(*offset);
        match topics.iter_mut().find(|t| t.name.0.as_str() == &*tp.topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(&tp.topic))
                    .with_partitions(vec![p]),
            ),
        }
    }
    let req = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(who.generation_id)
        .with_member_id(StrBytes::from_string(who.member_id.clone()))
        .with_topics(topics);
    let resp = conn.request(version, &req).await?;
    Ok(offsets
        .iter()
        .map(|(tp, _)| {
            let found = resp
                .topics
                .iter()
                .filter(|t| t.name.0.as_str() == &*tp.topic)
                .flat_map(|t| t.partitions.iter())
                .find(|p| p.partition_index == tp.partition);
            let r = match found {
                None => Err(Error::protocol(format!(
                    "OffsetCommit response of group '{group}' has no entry for {tp}"
                ))),
                Some(p) => match Error::from_code(
                    p.error_code,
                    None,
                    format!("commit offset of {tp} for group '{group}'"),
                ) {
                    Some(e) => Err(e),
                    None => Ok(()),
                },
            };
            (tp.clone(), r)
        })
        .collect())
}

/// ListGroups on every broker, merged (each broker lists the groups it coordinates).
/// Brokers that fail are reported alongside the groups the others listed.
pub async fn list_groups(cluster: &Cluster) -> Result<(Vec<GroupListing>, Vec<Error>)> {
    let meta = cluster.refresh(Some(&[])).await?;
    let mut groups: BTreeMap<String, GroupListing> = BTreeMap::new();
    let mut failures = Vec::new();
    for &node in meta.brokers.keys() {
        let listed = async {
            let conn = cluster.connection(node).await?;
            let version = conn.api_version(ApiKey::ListGroups)?;
            let resp = conn.request(version, &ListGroupsRequest::default()).await?;
            match Error::from_code(
                resp.error_code,
                None,
                format!("list groups on broker {node}"),
            ) {
                Some(e) => Err(e),
                None => Ok((version, resp.groups)),
            }
        }
        .await;
        match listed {
            Ok((version, listed)) => {
                for g in listed {
                    let id = g.group_id.0.to_string();
                    groups.insert(
                        id.clone(),
                        GroupListing {
                            group_id: id,
                            protocol_type: g.protocol_type.to_string(),
                            state: (version >= 4).then(|| g.group_state.to_string()),
                            coordinator: node,
                        },
                    );
                }
            }
            Err(e) => failures.push(e),
        }
    }
    Ok((groups.into_values().collect(), failures))
}

/// DescribeGroups on the group's coordinator.
pub async fn describe_group(cluster: &Cluster, group: &str) -> Result<GroupDescription> {
    on_coordinator(cluster, group, |conn, node| async move {
        let version = conn.api_version(ApiKey::DescribeGroups)?;
        let req = DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let resp = conn.request(version, &req).await?;
        let g = resp
            .groups
            .into_iter()
            .find(|g| g.group_id.0.as_str() == group)
            .ok_or_else(|| {
                Error::protocol(format!(
                    "DescribeGroups response has no entry for group '{group}'"
                ))
            })?;
        if let Some(e) = Error::from_code(
            g.error_code,
            g.error_message.as_ref().map(|m| m.to_string()),
            format!("describe group '{group}'"),
        ) {
            return Err(e);
        }
        let consumer = g.protocol_type.as_str() == assignor::PROTOCOL_TYPE;
        let members = g
            .members
            .iter()
            .map(|m| MemberDescription {
                member_id: m.member_id.to_string(),
                group_instance_id: m.group_instance_id.as_ref().map(|s| s.to_string()),
                client_id: m.client_id.to_string(),
                client_host: m.client_host.to_string(),
                // An undecodable assignment shows as none rather than failing the describe.
                assignment: if consumer {
                    assignor::decode_assignment(&m.member_assignment).unwrap_or_default()
                } else {
                    Vec::new()
                },
            })
            .collect();
        Ok(GroupDescription {
            group_id: group.to_string(),
            state: g.group_state.to_string(),
            protocol_type: g.protocol_type.to_string(),
            protocol: g.protocol_data.to_string(),
            members,
            coordinator: node,
        })
    })
    .await
}

/// DeleteGroups, each group sent to its own coordinator; one result per group.
pub async fn delete_groups(cluster: &Cluster, groups: &[String]) -> Vec<(String, Result<()>)> {
    let mut out = Vec::with_capacity(groups.len());
    for group in groups {
        let r = on_coordinator(cluster, group, |conn, _| async move {
            let version = conn.api_version(ApiKey::DeleteGroups)?;
            let req = DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_string(group.clone()))]);
            let resp = conn.request(version, &req).await?;
            let r = resp
                .results
                .iter()
                .find(|r| r.group_id.0.as_str() == group.as_str())
                .ok_or_else(|| {
                    Error::protocol(format!(
                        "DeleteGroups response has no entry for group '{group}'"
                    ))
                })?;
            match Error::from_code(r.error_code, None, format!("delete group '{group}'")) {
                Some(e) => Err(e),
                None => Ok(()),
            }
        })
        .await;
        out.push((group.clone(), r));
    }
    out
}

/// Committed offsets of `group` (`partitions = None`: all it has committed).
pub async fn fetch_committed(
    cluster: &Cluster,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>> {
    on_coordinator(cluster, group, |conn, _| async move {
        fetch_committed_on(&conn, group, partitions).await
    })
    .await
}

/// Commits offsets for `group` as `who`; one result per partition.
pub async fn commit_offsets(
    cluster: &Cluster,
    group: &str,
    who: &CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<PartitionResults<()>> {
    on_coordinator(cluster, group, |conn, _| async move {
        commit_checked(&conn, group, who, offsets).await
    })
    .await
}

/// [`commit_on`], but a coordinator error on any partition fails the whole call so that
/// the caller finds the coordinator again and retries every partition.
pub async fn commit_checked(
    conn: &Connection,
    group: &str,
    who: &CommitIdentity,
    offsets: &[(TopicPartition, i64)],
) -> Result<PartitionResults<()>> {
    let results = commit_on(conn, group, who, offsets).await?;
    if let Some(e) = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .find(|e| is_coordinator_error(e))
    {
        return Err(e.clone());
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_errors_trigger_a_new_lookup() {
        let e = |c| Error::kafka(c, None, "x");
        assert!(is_coordinator_error(&e(ResponseError::NotCoordinator)));
        assert!(is_coordinator_error(&e(
            ResponseError::CoordinatorLoadInProgress
        )));
        assert!(is_coordinator_error(&e(
            ResponseError::CoordinatorNotAvailable
        )));
        assert!(is_coordinator_error(&Error::ConnectionClosed("a".into())));
        assert!(!is_coordinator_error(&e(ResponseError::IllegalGeneration)));
        assert!(!is_coordinator_error(&e(ResponseError::GroupIdNotFound)));
    }
}
