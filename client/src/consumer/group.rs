//! A classic-protocol group consumer: FindCoordinator, JoinGroup, SyncGroup (the leader runs
//! the RANGE assignor), a Heartbeat task, OffsetFetch/OffsetCommit and LeaveGroup. Fetching
//! is the assign-only [`Consumer`]'s: the group only decides which partitions and where.
//! Coordinator lookup, error reactions and the heartbeat task are in
//! [`super::coordinator`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::task::JoinHandle;

use super::assignor::{self, PROTOCOL_TYPE, RANGE};
use super::coordinator::{reaction, Coordinator, Heartbeat, Reaction};
use super::{Consumer, ConsumerRecord};
use crate::admin::groups::{
    commit_checked, fetch_committed_on, is_coordinator_error, CommitIdentity,
};
use crate::cluster::Cluster;
use crate::config::{ConsumerConfig, OffsetReset, StartOffset};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::types::TopicPartition;

/// Rounds of JoinGroup/SyncGroup before giving up on a group that keeps rebalancing.
const MAX_JOIN_ROUNDS: u32 = 20;

/// Group consumer settings; defaults follow the Java client.
#[derive(Debug, Clone)]
pub struct GroupConsumerConfig {
    /// Fetch and connection settings; `offset_reset` is `auto.offset.reset`.
    pub consumer: ConsumerConfig,
    /// The group to join.
    pub group_id: String,
    /// How long the coordinator waits for a heartbeat before expelling the member.
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// How often to heartbeat; well under a third of the session timeout.
    pub heartbeat_interval: Duration,
    /// Commit consumed positions this often from `poll`; `None` commits only on request.
    pub auto_commit_interval: Option<Duration>,
}

impl GroupConsumerConfig {
    /// Defaults for `group_id` with the given bootstrap servers (`auto.offset.reset=latest`).
    pub fn new(bootstrap: impl Into<String>, group_id: impl Into<String>) -> Self {
        let mut consumer = ConsumerConfig::new(bootstrap);
        consumer.offset_reset = OffsetReset::Latest;
        Self {
            consumer,
            group_id: group_id.into(),
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            auto_commit_interval: Some(Duration::from_secs(5)),
        }
    }
}

/// A member of a consumer group that reads the partitions the group assigns it.
pub struct GroupConsumer {
    cluster: Arc<Cluster>,
    config: GroupConsumerConfig,
    topics: Vec<String>,
    fetcher: Consumer,
    coordinator: Coordinator,
    member_id: String,
    /// -1 while not a member of any generation.
    generation_id: i32,
    assignment: Vec<TopicPartition>,
    /// Positions the coordinator already has, so unchanged ones are not committed again.
    committed: BTreeMap<TopicPartition, i64>,
    /// An error the heartbeat task or a commit saw; the next `poll` acts on it.
    pending: Arc<Mutex<Option<Error>>>,
    heartbeat: Option<JoinHandle<()>>,
    last_commit: Instant,
}

impl GroupConsumer {
    /// Connects and joins the group.
    pub async fn connect(config: GroupConsumerConfig, topics: &[String]) -> Result<GroupConsumer> {
        let cluster = Cluster::connect(config.consumer.client.clone()).await?;
        Self::join(cluster, config, topics).await
    }

    /// Joins `config.group_id` subscribed to `topics`, waits for the first assignment and
    /// positions each assigned partition at its committed offset (else per `offset_reset`).
    pub async fn join(
        cluster: Arc<Cluster>,
        config: GroupConsumerConfig,
        topics: &[String],
    ) -> Result<GroupConsumer> {
        if topics.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "group '{}': subscribe to at least one topic",
                config.group_id
            )));
        }
        let mut topics = topics.to_vec();
        topics.sort();
        topics.dedup();
        let mut this = GroupConsumer {
            fetcher: Consumer::with_cluster(cluster.clone(), config.consumer.clone()),
            coordinator: Coordinator {
                cluster: cluster.clone(),
                group: config.group_id.clone(),
                node: None,
            },
            cluster,
            config,
            topics,
            member_id: String::new(),
            generation_id: -1,
            assignment: Vec::new(),
            committed: Default::default(),
            pending: Arc::new(Mutex::new(None)),
            heartbeat: None,
            last_commit: Instant::now(),
        };
        this.rejoin().await?;
        Ok(this)
    }

    /// The partitions this member owns in the current generation.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assignment
    }

    /// The member id the coordinator gave this consumer.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The current generation, -1 when not in one.
    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    /// The offset of the next record `poll` returns for `tp`.
    pub fn position(&self, tp: &TopicPartition) -> Option<i64> {
        self.fetcher.position(tp)
    }

    /// Moves `tp` (an assigned partition) so the next poll and commit start at `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) {
        if self.assignment.contains(tp) {
            self.fetcher.seek(tp, offset);
        }
    }

    /// Records from the assigned partitions, waiting up to `timeout` for some. Rejoins first
    /// when the group rebalanced and auto-commits when due.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_member().await?;
            self.maybe_auto_commit().await;
            let records = if self.assignment.is_empty() {
                // More members than partitions: idle, heartbeating, until a rebalance.
                let left = deadline.saturating_duration_since(Instant::now());
                tokio::time::sleep(left.min(self.config.consumer.max_wait)).await;
                Vec::new()
            } else {
                self.fetcher.poll().await?
            };
            if !records.is_empty() || Instant::now() >= deadline {
                return Ok(records);
            }
        }
    }

    /// Commits the positions of the assigned partitions (the records polled so far).
    pub async fn commit(&mut self) -> Result<()> {
        if self.generation_id < 0 {
            return Ok(());
        }
        let offsets: Vec<(TopicPartition, i64)> = self
            .assignment
            .iter()
            .filter_map(|tp| self.fetcher.position(tp).map(|o| (tp.clone(), o)))
            .filter(|(tp, o)| self.committed.get(tp) != Some(o))
            .collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let who = CommitIdentity {
            generation_id: self.generation_id,
            member_id: self.member_id.clone(),
        };
        let group = self.config.group_id.clone();
        let results = self
            .coordinator
            .call(|conn| {
                let (group, who, offsets) = (&group, &who, &offsets);
                async move { commit_checked(&conn, group, who, offsets).await }
            })
            .await?;
        self.last_commit = Instant::now();
        let mut failed = None;
        for ((tp, r), (_, offset)) in results.into_iter().zip(&offsets) {
            match r {
                Ok(()) => {
                    self.committed.insert(tp, *offset);
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        match failed {
            None => Ok(()),
            Some(e) => {
                if matches!(reaction(&e), Reaction::Rejoin | Reaction::RejoinAsNewMember) {
                    self.set_pending(e.clone());
                }
                Err(e)
            }
        }
    }

    /// Commits, stops heartbeating and leaves the group so it rebalances at once rather than
    /// after the session timeout. Returns the commit's error, if any, after leaving.
    pub async fn close(mut self) -> Result<()> {
        let committed = self.commit().await;
        self.stop_heartbeat();
        if !self.member_id.is_empty() {
            if let Err(e) = self.leave().await {
                tracing::warn!(group = %self.config.group_id, error = %e, "leave group failed");
            }
        }
        committed
    }

    async fn maybe_auto_commit(&mut self) {
        let Some(every) = self.config.auto_commit_interval else {
            return;
        };
        if self.last_commit.elapsed() < every {
            return;
        }
        if let Err(e) = self.commit().await {
            tracing::warn!(group = %self.config.group_id, error = %e, "auto-commit failed");
        }
        self.last_commit = Instant::now();
    }

    fn set_pending(&self, e: Error) {
        if let Ok(mut p) = self.pending.lock() {
            p.get_or_insert(e);
        }
    }

    /// Acts on what the heartbeat task or a commit reported: rejoin, or fail.
    async fn ensure_member(&mut self) -> Result<()> {
        let pending = self.pending.lock().ok().and_then(|mut p| p.take());
        let Some(e) = pending else {
            return Ok(());
        };
        match reaction(&e) {
            Reaction::Rejoin => {
                if e.kafka_code() == Some(ResponseError::RebalanceInProgress)
                    && self.config.auto_commit_interval.is_some()
                {
                    // The generation is still valid while rebalancing: keep what was read.
                    if let Err(e) = self.commit().await {
                        tracing::info!(error = %e, "commit before rejoin failed");
                    }
                }
            }
            Reaction::RejoinAsNewMember => self.member_id.clear(),
            Reaction::FindCoordinator => self.coordinator.node = None,
            Reaction::Fatal => return Err(e),
        }
        tracing::info!(group = %self.config.group_id, reason = %e, "rejoining the group");
        self.rejoin().await
    }

    /// Drops the current assignment, joins, and positions the new partitions. Partitions
    /// the same member keeps (a rejoin after a coordinator move, or a rebalance that
    /// leaves them here) go on from where it was, as Kafka's consumer keeps their
    /// positions: nobody else can have read them meanwhile, and going back to the last
    /// commit would hand the application records it already has.
    async fn rejoin(&mut self) -> Result<()> {
        self.stop_heartbeat();
        let old = std::mem::take(&mut self.assignment);
        let member_before = self.member_id.clone();
        let positions: BTreeMap<TopicPartition, i64> = old
            .iter()
            .filter_map(|tp| self.fetcher.position(tp).map(|o| (tp.clone(), o)))
            .collect();
        self.fetcher.unassign(&old);
        self.generation_id = -1;
        let subscription = assignor::encode_subscription(&self.topics)?;
        let mut round = 0;
        let assignment = loop {
            round += 1;
            match self.join_and_sync(&subscription).await {
                Ok(a) => break a,
                Err(e) if round < MAX_JOIN_ROUNDS => match reaction(&e) {
                    Reaction::Rejoin => {}
                    Reaction::RejoinAsNewMember => self.member_id.clear(),
                    Reaction::FindCoordinator | Reaction::Fatal => return Err(e),
                },
                Err(e) => return Err(e),
            }
            tokio::time::sleep(self.cluster.config().backoff(round.min(4))).await;
        };
        tracing::info!(
            group = %self.config.group_id,
            generation = self.generation_id,
            member = %self.member_id,
            partitions = assignment.len(),
            "joined"
        );
        let kept = if !member_before.is_empty() && member_before == self.member_id {
            positions
        } else {
            BTreeMap::new()
        };
        self.position_partitions(&assignment, &kept).await?;
        self.assignment = assignment;
        self.last_commit = Instant::now();
        self.start_heartbeat();
        Ok(())
    }

    /// One JoinGroup (repeated once for MEMBER_ID_REQUIRED, KIP-394) and its SyncGroup.
    async fn join_and_sync(&mut self, subscription: &Bytes) -> Result<Vec<TopicPartition>> {
        let group = self.config.group_id.clone();
        let resp = loop {
            let member_id = self.member_id.clone();
            let config = &self.config;
            let resp = self
                .coordinator
                .call(|conn| {
                    let member_id = &member_id;
                    async move { join_request(&conn, config, member_id, subscription).await }
                })
                .await?;
            let err = Error::from_code(resp.error_code, None, format!("join group '{group}'"));
            match err {
                Some(e) if e.kafka_code() == Some(ResponseError::MemberIdRequired) => {
                    self.member_id = resp.member_id.to_string();
                }
                Some(e) => return Err(e),
                None => break resp,
            }
        };
        self.member_id = resp.member_id.to_string();
        let generation_id = resp.generation_id;
        let assignments = if resp.leader == resp.member_id {
            self.assign(&resp).await?
        } else {
            Vec::new()
        };
        let protocol_name = resp.protocol_name.clone();
        let member_id = self.member_id.clone();
        let timeout = self_timeout(&self.config);
        let assignment = self
            .coordinator
            .call(|conn| {
                let (group, member_id, assignments, protocol_name) =
                    (&group, &member_id, &assignments, &protocol_name);
                async move {
                    let version = conn.api_version(ApiKey::SyncGroup)?;
                    let mut req = SyncGroupRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.clone())))
                        .with_generation_id(generation_id)
                        .with_member_id(StrBytes::from_string(member_id.clone()))
                        .with_assignments(assignments.clone());
                    if version >= 5 {
                        req.protocol_type = Some(StrBytes::from_static_str(PROTOCOL_TYPE));
                        req.protocol_name = protocol_name
                            .clone()
                            .or(Some(StrBytes::from_static_str(RANGE)));
                    }
                    let resp = conn.request_with_timeout(version, &req, timeout).await?;
                    match Error::from_code(resp.error_code, None, format!("sync group '{group}'")) {
                        Some(e) => Err(e),
                        None => Ok(resp.assignment),
                    }
                }
            })
            .await?;
        self.generation_id = generation_id;
        assignor::decode_assignment(&assignment)
    }

    /// The leader's job: decode every member's subscription and range-assign.
    async fn assign(&self, resp: &JoinGroupResponse) -> Result<Vec<SyncGroupRequestAssignment>> {
        let mut subscriptions = Vec::with_capacity(resp.members.len());
        for m in &resp.members {
            match assignor::decode_subscription(&m.metadata) {
                Ok(topics) => subscriptions.push((m.member_id.to_string(), topics)),
                Err(e) => {
                    // Such a member gets nothing rather than stalling the whole group.
                    tracing::warn!(member = %m.member_id, error = %e, "bad subscription");
                    subscriptions.push((m.member_id.to_string(), Vec::new()));
                }
            }
        }
        let mut topics: Vec<String> = subscriptions
            .iter()
            .flat_map(|(_, t)| t.iter().cloned())
            .collect();
        topics.sort();
        topics.dedup();
        let meta = self.cluster.refresh(Some(&topics)).await?;
        let counts = topics
            .iter()
            .filter_map(|t| {
                let n = meta.partition_count(t).ok()?;
                Some((t.clone(), i32::try_from(n).ok()?))
            })
            .collect();
        let mut out = Vec::with_capacity(subscriptions.len());
        for (member, partitions) in assignor::range_assign(&subscriptions, &counts) {
            out.push(
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member))
                    .with_assignment(assignor::encode_assignment(&partitions)?),
            );
        }
        Ok(out)
    }

    /// Starts each partition at its `kept` position, else at its committed offset, else
    /// per `offset_reset`.
    async fn position_partitions(
        &mut self,
        assignment: &[TopicPartition],
        kept: &BTreeMap<TopicPartition, i64>,
    ) -> Result<()> {
        if assignment.is_empty() {
            self.committed.clear();
            return Ok(());
        }
        let group = self.config.group_id.clone();
        let committed = self
            .coordinator
            .call(|conn| {
                let group = &group;
                async move { fetch_committed_on(&conn, group, Some(assignment)).await }
            })
            .await?;
        let mut fresh = Vec::new();
        for tp in assignment {
            match kept.get(tp).or_else(|| committed.get(tp)) {
                Some(&o) => self.fetcher.seek(tp, o),
                None => fresh.push(tp.clone()),
            }
        }
        if !fresh.is_empty() {
            let start = match self.config.consumer.offset_reset {
                OffsetReset::Earliest => StartOffset::Earliest,
                OffsetReset::Latest => StartOffset::Latest,
                OffsetReset::None => {
                    return Err(Error::InvalidArgument(format!(
                    "group '{group}' has no committed offset for {} and auto.offset.reset is none",
                    fresh[0]
                )))
                }
            };
            self.fetcher.assign(&fresh, start).await?;
        }
        self.committed = committed;
        Ok(())
    }

    fn start_heartbeat(&mut self) {
        let beat = Heartbeat {
            coordinator: self.coordinator.clone(),
            member_id: self.member_id.clone(),
            generation_id: self.generation_id,
            interval: self.config.heartbeat_interval,
            pending: self.pending.clone(),
        };
        self.heartbeat = Some(tokio::spawn(beat.run()));
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    async fn leave(&mut self) -> Result<()> {
        let group = self.config.group_id.clone();
        let member_id = self.member_id.clone();
        self.coordinator
            .call(|conn| {
                let (group, member_id) = (&group, &member_id);
                async move {
                    let version = conn.api_version(ApiKey::LeaveGroup)?;
                    let mut req = LeaveGroupRequest::default()
                        .with_group_id(GroupId(StrBytes::from_string(group.clone())));
                    let id = StrBytes::from_string(member_id.clone());
                    if version >= 3 {
                        let mut m = MemberIdentity::default().with_member_id(id);
                        if version >= 5 {
                            m.reason = Some(StrBytes::from_static_str("the consumer is closing"));
                        }
                        req.members = vec![m];
                    } else {
                        req.member_id = id;
                    }
                    let resp = conn.request(version, &req).await?;
                    let context = format!("leave group '{group}'");
                    let code = resp
                        .members
                        .iter()
                        .map(|m| m.error_code)
                        .find(|c| *c != 0)
                        .unwrap_or(resp.error_code);
                    match Error::from_code(code, None, context) {
                        // Already expelled: nothing to leave.
                        Some(e) if e.kafka_code() == Some(ResponseError::UnknownMemberId) => Ok(()),
                        Some(e) => Err(e),
                        None => Ok(()),
                    }
                }
            })
            .await?;
        self.member_id.clear();
        self.generation_id = -1;
        Ok(())
    }
}

impl Drop for GroupConsumer {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

/// JoinGroup may be held by the coordinator for up to the rebalance timeout.
async fn join_request(
    conn: &Connection,
    config: &GroupConsumerConfig,
    member_id: &str,
    subscription: &Bytes,
) -> Result<JoinGroupResponse> {
    let version = conn.api_version(ApiKey::JoinGroup)?;
    let mut req = JoinGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(config.group_id.clone())))
        .with_session_timeout_ms(millis(config.session_timeout))
        .with_member_id(StrBytes::from_string(member_id.to_string()))
        .with_protocol_type(StrBytes::from_static_str(PROTOCOL_TYPE))
        .with_protocols(vec![JoinGroupRequestProtocol::default()
            .with_name(StrBytes::from_static_str(RANGE))
            .with_metadata(subscription.clone())]);
    if version >= 1 {
        req.rebalance_timeout_ms = millis(config.rebalance_timeout);
    }
    let resp = conn
        .request_with_timeout(version, &req, self_timeout(config))
        .await?;
    // Coordinator moves fail the call so that `Coordinator::call` looks it up again.
    if let Some(e) = Error::from_code(
        resp.error_code,
        None,
        format!("join group '{}'", config.group_id),
    )
    .filter(is_coordinator_error)
    {
        return Err(e);
    }
    Ok(resp)
}

/// How long JoinGroup and SyncGroup may take: the coordinator holds them for a rebalance.
fn self_timeout(config: &GroupConsumerConfig) -> Duration {
    config
        .consumer
        .client
        .request_timeout
        .saturating_add(config.rebalance_timeout)
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_java_client() {
        let c = GroupConsumerConfig::new("x:1", "g");
        assert_eq!(c.session_timeout, Duration::from_secs(45));
        assert_eq!(c.rebalance_timeout, Duration::from_secs(300));
        assert_eq!(c.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(c.consumer.offset_reset, OffsetReset::Latest);
        assert_eq!(millis(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
