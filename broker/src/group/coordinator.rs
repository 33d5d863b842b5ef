//! The group coordinator (docs/architecture.md §7): for every partition of `__consumer_offsets` this
//! broker leads, a shard holding the groups that hash to it — their pure [`Group`]
//! state machines, committed offsets, and the JoinGroup/SyncGroup requests waiting for a
//! rebalance to complete. A shard rebuilds its groups by replaying the partition when
//! this broker becomes its leader, and writes offsets and group metadata to it,
//! answering only once they are committed (replicated like acks=all).
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::MappedMutexGuard;
use tokio::sync::oneshot;

use super::records::{self, CommittedOffset, OffsetsRecord};
use super::{
    Delivery, ErrorCode, Group, GroupConfig, GroupSnapshot, GroupState, JoinRequest, JoinResponse,
    SyncResponse,
};
use crate::clock::now_ms;
use crate::coordinator::{CoordinatorRuntime, CoordinatorShard, ShardHandle, TimerWrite};
use crate::partition::{Partition, RoleChange};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Largest offset metadata string accepted (Kafka's `offset.metadata.max.bytes`).
const MAX_METADATA_BYTES: usize = 4096;

/// Kafka's partition of a group: `abs(javaHashCode(group)) % partitions`.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    (h & 0x7fff_ffff) % partitions.max(1)
}

/// One group's state on its coordinator.
struct GroupEntry {
    group: Group,
    /// Committed offsets, each with the log offset of the record that set it (commits
    /// finish out of order; the log order decides).
    offsets: BTreeMap<(String, i32), (CommittedOffset, i64)>,
    joins: HashMap<String, oneshot::Sender<JoinResponse>>,
    syncs: HashMap<String, oneshot::Sender<SyncResponse>>,
    /// Fingerprint of the last group metadata written.
    persisted: Option<u64>,
    /// Since when the group has been Empty (offsets expire relative to it, KIP-211).
    empty_since: Option<i64>,
}

impl GroupEntry {
    fn new(group: Group) -> Self {
        GroupEntry {
            group,
            offsets: BTreeMap::new(),
            joins: HashMap::new(),
            syncs: HashMap::new(),
            persisted: None,
            empty_since: None,
        }
    }

    /// What the persisted group metadata depends on: generation, leader, state, and every
    /// member's id, instance id and assignment (a static member's replacement changes
    /// only its id).
    fn fingerprint(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.group.generation_id().hash(&mut h);
        self.group.leader().hash(&mut h);
        self.group.state().name().hash(&mut h);
        for m in self.group.members() {
            m.member_id.hash(&mut h);
            m.group_instance_id.hash(&mut h);
            m.assignment.hash(&mut h);
        }
        h.finish()
    }

    /// Hands responses to the requests waiting for them.
    fn deliver(&mut self, deliveries: Vec<Delivery>) {
        for d in deliveries {
            match d {
                Delivery::Join(member, response) => {
                    if let Some(tx) = self.joins.remove(&member) {
                        let _ = tx.send(response);
                    }
                }
                Delivery::Sync(member, response) => {
                    if let Some(tx) = self.syncs.remove(&member) {
                        let _ = tx.send(response);
                    }
                }
            }
        }
    }

    /// The group metadata to write (with its fingerprint), if it changed since the last
    /// committed write (only in Stable and Empty: the states a new coordinator can resume
    /// from). `persisted` is set once the write committed.
    fn metadata_to_persist(&self) -> Option<(GroupSnapshot, u64)> {
        let state = self.group.state();
        if !matches!(state, GroupState::Stable | GroupState::Empty) {
            return None;
        }
        let now = self.fingerprint();
        (self.persisted != Some(now)).then(|| (self.group.snapshot(), now))
    }
}

/// The groups of one `__consumer_offsets` partition this broker leads: a shard of the
/// [`CoordinatorRuntime`].
pub struct GroupShard {
    config: GroupConfig,
    /// `offsets.retention.minutes`: offsets of an empty group older than this expire.
    retention_ms: i64,
    groups: HashMap<String, GroupEntry>,
    /// What the replay found so far (until the load finished).
    loading: Loading,
}

/// The state a replay rebuilds: the last group metadata and committed offsets.
#[derive(Default)]
struct Loading {
    snapshots: HashMap<String, GroupSnapshot>,
    offsets: BTreeMap<(String, String, i32), (CommittedOffset, i64)>,
    /// Records that did not decode.
    skipped: usize,
}

impl GroupShard {
    fn new(config: GroupConfig, retention_ms: i64) -> Self {
        GroupShard {
            config,
            retention_ms,
            groups: HashMap::new(),
            loading: Loading::default(),
        }
    }

    /// The group `id`, created (Empty) when unknown.
    fn group(&mut self, id: &str) -> &mut GroupEntry {
        let config = &self.config;
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| GroupEntry::new(Group::new(id.to_string(), config.clone())))
    }
}

impl CoordinatorShard for GroupShard {
    type Record = OffsetsRecord;

    fn encode(records: &[OffsetsRecord], now_ms: i64) -> Result<Bytes, String> {
        records::encode(records, now_ms).map_err(|e| e.to_string())
    }

    fn replay(&mut self, chunk: Bytes, last_offset: i64) {
        let loading = &mut self.loading;
        let (decoded, bad) = records::decode(chunk);
        loading.skipped += bad;
        for r in decoded {
            match r {
                OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value: Some(v),
                } => {
                    loading
                        .offsets
                        .insert((group, topic, partition), (v, last_offset));
                }
                OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value: None,
                } => {
                    loading.offsets.remove(&(group, topic, partition));
                }
                OffsetsRecord::Group {
                    group,
                    value: Some(snapshot),
                } => {
                    loading.snapshots.insert(group, snapshot);
                }
                OffsetsRecord::Group { group, value: None } => {
                    loading.snapshots.remove(&group);
                    loading.offsets.retain(|(g, _, _), _| *g != group);
                }
            }
        }
    }

    fn on_loaded(&mut self, now_ms: i64) {
        let loading = std::mem::take(&mut self.loading);
        if loading.skipped > 0 {
            tracing::warn!(
                skipped = loading.skipped,
                "offsets records that did not decode were skipped"
            );
        }
        for (id, snapshot) in loading.snapshots {
            let group = Group::from_snapshot(snapshot, self.config.clone(), now_ms);
            let mut entry = GroupEntry::new(group);
            entry.persisted = Some(entry.fingerprint());
            self.groups.insert(id, entry);
        }
        for ((group, topic, partition), value) in loading.offsets {
            self.group(&group).offsets.insert((topic, partition), value);
        }
        tracing::info!(groups = self.groups.len(), "coordinating groups");
    }

    fn tick(&mut self, now: i64) -> Vec<TimerWrite<Self>> {
        let mut writes = Vec::new();
        let mut expired = Vec::new();
        for (id, entry) in self.groups.iter_mut() {
            if entry.group.next_deadline().is_some_and(|d| d <= now) {
                let deliveries = entry.group.tick(now);
                entry.deliver(deliveries);
            }
            if let Some((snapshot, fingerprint)) = entry.metadata_to_persist() {
                writes.push(metadata_write(id.clone(), snapshot, fingerprint));
            }
            // Offsets expire once the group has been empty for the retention time
            // (KIP-211), and are themselves older than it.
            if entry.group.state() == GroupState::Empty {
                let since = *entry.empty_since.get_or_insert(now);
                if now - since >= self.retention_ms {
                    expired.extend(tombstones(id, entry, Some(now - self.retention_ms), false));
                }
            } else {
                entry.empty_since = None;
            }
        }
        if !expired.is_empty() {
            writes.push(TimerWrite {
                records: expired.clone(),
                then: Box::new(move |shard: &mut GroupShard, written| {
                    let Ok(at) = written else { return };
                    for r in expired {
                        if let OffsetsRecord::Offset { ref group, .. } = r {
                            if let Some(entry) = shard.groups.get_mut(group) {
                                apply_offsets(entry, vec![r.clone()], at);
                            }
                        }
                    }
                }),
            });
        }
        writes
    }

    fn resign(&mut self) {
        for (_, mut entry) in self.groups.drain() {
            let deliveries = entry.group.shut_down();
            entry.deliver(deliveries);
        }
    }
}

/// The shard's state, or why it cannot serve.
fn live(shard: &ShardHandle<GroupShard>) -> CoordinatorResult<MappedMutexGuard<'_, GroupShard>> {
    shard.live().map_err(|e| e.code())
}

/// Writes records and waits for their commit; the log offset of the last one.
async fn write(
    shard: &ShardHandle<GroupShard>,
    batch: Vec<OffsetsRecord>,
) -> CoordinatorResult<i64> {
    shard.write(batch).await.map_err(|e| e.code())
}

/// Every shard this broker coordinates.
pub struct GroupCoordinator {
    runtime: CoordinatorRuntime<GroupShard>,
}

impl Default for GroupCoordinator {
    fn default() -> Self {
        GroupCoordinator::new(GroupConfig::default())
    }
}

/// One partition's offset as OffsetCommit carries it and OffsetFetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Committed offset (-1: none).
    pub offset: i64,
    /// Leader epoch of the committed position (-1: unknown).
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
}

/// Why a request cannot be served here.
pub type CoordinatorResult<T> = Result<T, i16>;

impl GroupCoordinator {
    /// A coordinator with these group settings.
    pub fn new(config: GroupConfig) -> Self {
        // Kafka's `offsets.retention.minutes` default: 7 days.
        let retention_ms = 7 * 24 * 3600 * 1000;
        GroupCoordinator {
            runtime: CoordinatorRuntime::new(OFFSETS_TOPIC, move |_| {
                GroupShard::new(config.clone(), retention_ms)
            }),
        }
    }

    /// Reacts to role changes of `__consumer_offsets` partitions: load a shard on
    /// becoming leader, drop it (answering waiting requests NOT_COORDINATOR) otherwise.
    pub fn on_role_changes(&self, changes: &[(Arc<Partition>, RoleChange)]) {
        self.runtime.on_role_changes(changes);
    }

    /// Drops every shard (shutdown).
    pub fn resign_all(&self) {
        self.runtime.resign_all();
    }

    /// The shard that owns `group`, if loaded here.
    fn shard(
        &self,
        group: &str,
        partitions: i32,
    ) -> CoordinatorResult<Arc<ShardHandle<GroupShard>>> {
        if group.is_empty() {
            return Err(ErrorCode::InvalidGroupId.code());
        }
        self.runtime
            .shard(partition_for(group, partitions))
            .map_err(|e| e.code())
    }

    /// JoinGroup: waits until the join completes (or the group answers at once).
    pub async fn join(
        &self,
        group_id: &str,
        partitions: i32,
        req: JoinRequest,
    ) -> CoordinatorResult<JoinResponse> {
        let shard = self.shard(group_id, partitions)?;
        let fresh = format!("{}-{}", req.client_id, uuid::Uuid::new_v4());
        let key = if req.member_id.is_empty() {
            fresh.clone()
        } else {
            req.member_id.clone()
        };
        let max_wait =
            Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64) + Duration::from_secs(10);
        let (tx, rx) = oneshot::channel();
        let persist = {
            let mut state = live(&shard)?;
            let entry = state.group(group_id);
            entry.joins.insert(key, tx);
            let deliveries = entry.group.join(req, fresh, now_ms());
            entry.deliver(deliveries);
            // A static member replaced in Stable changes the stored member ids.
            entry.metadata_to_persist()
        };
        if let Some((snapshot, fingerprint)) = persist {
            persist_metadata(&shard, group_id, snapshot, fingerprint).await;
        }
        wait(rx, max_wait).await
    }

    /// SyncGroup: the leader's assignment completes everyone; the group metadata is
    /// written before anyone is answered.
    #[allow(clippy::too_many_arguments)]
    pub async fn sync(
        &self,
        group_id: &str,
        partitions: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
    ) -> CoordinatorResult<SyncResponse> {
        let shard = self.shard(group_id, partitions)?;
        let (tx, rx) = oneshot::channel();
        let (ready, persist) = {
            let mut state = live(&shard)?;
            let Some(entry) = state.groups.get_mut(group_id) else {
                return Ok(SyncResponse::error(ErrorCode::UnknownMemberId));
            };
            entry.syncs.insert(member_id.to_string(), tx);
            let responses = entry.group.sync(
                member_id,
                group_instance_id,
                generation_id,
                protocol_type,
                protocol_name,
                assignments,
                now_ms(),
            );
            // Take the waiting requests out now; answer them once the metadata is stored.
            let ready: Vec<(oneshot::Sender<SyncResponse>, SyncResponse)> = responses
                .into_iter()
                .filter_map(|(m, r)| entry.syncs.remove(&m).map(|tx| (tx, r)))
                .collect();
            (ready, entry.metadata_to_persist())
        };
        if let Some((snapshot, fingerprint)) = persist {
            persist_metadata(&shard, group_id, snapshot, fingerprint).await;
        }
        for (tx, response) in ready {
            let _ = tx.send(response);
        }
        let max_wait = Duration::from_secs(300);
        wait(rx, max_wait).await
    }

    /// Heartbeat.
    pub fn heartbeat(
        &self,
        group_id: &str,
        partitions: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> CoordinatorResult<ErrorCode> {
        let shard = self.shard(group_id, partitions)?;
        let mut state = live(&shard)?;
        let Some(entry) = state.groups.get_mut(group_id) else {
            return Ok(ErrorCode::UnknownMemberId);
        };
        Ok(entry
            .group
            .heartbeat(member_id, group_instance_id, generation_id, now_ms()))
    }

    /// LeaveGroup for several members; per-member error codes.
    pub async fn leave(
        &self,
        group_id: &str,
        partitions: i32,
        members: Vec<(String, Option<String>)>,
    ) -> CoordinatorResult<Vec<ErrorCode>> {
        let shard = self.shard(group_id, partitions)?;
        let (codes, persist) = {
            let mut state = live(&shard)?;
            let Some(entry) = state.groups.get_mut(group_id) else {
                return Ok(vec![ErrorCode::UnknownMemberId; members.len()]);
            };
            let (codes, deliveries) = entry.group.leave(members, now_ms());
            entry.deliver(deliveries);
            (codes, entry.metadata_to_persist())
        };
        if let Some((snapshot, fingerprint)) = persist {
            persist_metadata(&shard, group_id, snapshot, fingerprint).await;
        }
        Ok(codes)
    }

    /// OffsetCommit: checks membership (unless the commit comes from outside the group:
    /// generation -1 and no member id, allowed while the group is empty), stores and
    /// waits for the commit. Per-partition error codes.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit_offsets(
        &self,
        group_id: &str,
        partitions: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        offsets: Vec<OffsetEntry>,
    ) -> CoordinatorResult<Vec<i16>> {
        let shard = self.shard(group_id, partitions)?;
        let group_check = {
            let mut state = live(&shard)?;
            let entry = state.group(group_id);
            entry
                .group
                .validate_offset_commit(member_id, group_instance_id, generation_id)
        };
        if group_check != ErrorCode::None {
            return Ok(vec![group_check.code(); offsets.len()]);
        }
        let now = now_ms();
        let mut codes = vec![0i16; offsets.len()];
        let mut batch = Vec::new();
        for (i, o) in offsets.iter().enumerate() {
            if o.metadata.len() > MAX_METADATA_BYTES {
                codes[i] = ErrorCode::OffsetMetadataTooLarge.code();
                continue;
            }
            batch.push(OffsetsRecord::Offset {
                group: group_id.to_string(),
                topic: o.topic.clone(),
                partition: o.partition,
                value: Some(CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp: now,
                }),
            });
        }
        let written = write(&shard, batch.clone()).await;
        match written {
            Ok(log_offset) => {
                if let Ok(mut state) = shard.live() {
                    apply_offsets(state.group(group_id), batch, log_offset);
                }
            }
            Err(code) => {
                for c in codes.iter_mut().filter(|c| **c == 0) {
                    *c = code;
                }
            }
        }
        Ok(codes)
    }

    /// OffsetFetch: committed offsets of `topics` (all when `None`): (topic, partition,
    /// offset, leader epoch, metadata); -1 for partitions without a commit.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: i32,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> CoordinatorResult<Vec<OffsetEntry>> {
        let shard = self.shard(group_id, partitions)?;
        let state = live(&shard)?;
        let offsets = state.groups.get(group_id).map(|e| &e.offsets);
        let entry = |topic: &str, partition: i32| {
            let c = offsets
                .and_then(|o| o.get(&(topic.to_string(), partition)))
                .map(|(c, _)| c);
            OffsetEntry {
                topic: topic.to_string(),
                partition,
                offset: c.map_or(-1, |c| c.offset),
                leader_epoch: c.map_or(-1, |c| c.leader_epoch),
                metadata: c.map(|c| c.metadata.clone()).unwrap_or_default(),
            }
        };
        Ok(match topics {
            Some(topics) => topics
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(|p| entry(t, *p)).collect::<Vec<_>>())
                .collect(),
            None => offsets
                .into_iter()
                .flatten()
                .map(|((t, p), _)| entry(t, *p))
                .collect(),
        })
    }

    /// DescribeGroups: the group (state Dead when unknown).
    pub fn describe(&self, group_id: &str, partitions: i32) -> CoordinatorResult<GroupView> {
        let shard = self.shard(group_id, partitions)?;
        let state = live(&shard)?;
        Ok(match state.groups.get(group_id) {
            Some(entry) => GroupView::of(&entry.group),
            None => GroupView::dead(group_id),
        })
    }

    /// Every committed offset of every group loaded here: (group, topic, partition,
    /// offset), for the consumer-lag metric.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let mut out = Vec::new();
        for shard in self.runtime.live_shards() {
            let Ok(state) = shard.live() else { continue };
            for (id, entry) in &state.groups {
                for ((topic, partition), (committed, _)) in &entry.offsets {
                    out.push((id.clone(), topic.clone(), *partition, committed.offset));
                }
            }
        }
        out
    }

    /// ListGroups: every group of every loaded shard here (with its protocol type and
    /// state name).
    pub fn list(&self) -> Vec<(String, String, &'static str)> {
        let mut out = Vec::new();
        for shard in self.runtime.live_shards() {
            let Ok(state) = shard.live() else { continue };
            for (id, entry) in &state.groups {
                if entry.group.state() == GroupState::Dead {
                    continue;
                }
                out.push((
                    id.clone(),
                    entry.group.protocol_type().unwrap_or_default().to_string(),
                    entry.group.state().name(),
                ));
            }
        }
        out.sort();
        out
    }

    /// DeleteGroups for one group: only an empty group; its offsets and metadata go.
    pub async fn delete_group(&self, group_id: &str, partitions: i32) -> CoordinatorResult<i16> {
        let shard = self.shard(group_id, partitions)?;
        let batch = {
            let mut state = live(&shard)?;
            let Some(entry) = state.groups.get(group_id) else {
                return Ok(ErrorCode::GroupIdNotFound.code());
            };
            let check = entry.group.check_deletable();
            if !check.is_ok() {
                return Ok(check.code());
            }
            let batch = tombstones(group_id, entry, None, true);
            // Gone from memory before the tombstones are written: a commit or join racing
            // the delete starts a new group, whose records land after the tombstones.
            if let Some(mut entry) = state.groups.remove(group_id) {
                let deliveries = entry.group.shut_down();
                entry.deliver(deliveries);
            }
            batch
        };
        match write(&shard, batch).await {
            Ok(_) => Ok(0),
            Err(code) => Ok(code),
        }
    }

    /// OffsetDelete: removes the offsets of `topics`' partitions, unless the (non-empty)
    /// group is subscribed to the topic (GROUP_SUBSCRIBED_TO_TOPIC).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: i32,
        topics: Vec<(String, Vec<i32>)>,
    ) -> CoordinatorResult<Vec<(String, i32, i16)>> {
        let shard = self.shard(group_id, partitions)?;
        let (batch, results) = {
            let state = live(&shard)?;
            let Some(entry) = state.groups.get(group_id) else {
                return Err(ErrorCode::GroupIdNotFound.code());
            };
            let subscribed = subscribed_topics(&entry.group);
            let mut batch = Vec::new();
            let mut results = Vec::new();
            for (topic, ps) in topics {
                for p in ps {
                    if subscribed.contains(&topic) {
                        results.push((topic.clone(), p, ErrorCode::GroupSubscribedToTopic.code()));
                        continue;
                    }
                    if entry.offsets.contains_key(&(topic.clone(), p)) {
                        batch.push(OffsetsRecord::Offset {
                            group: group_id.to_string(),
                            topic: topic.clone(),
                            partition: p,
                            value: None,
                        });
                    }
                    results.push((topic.clone(), p, 0));
                }
            }
            (batch, results)
        };
        let log_offset = write(&shard, batch.clone()).await?;
        if let Ok(mut state) = shard.live() {
            if let Some(entry) = state.groups.get_mut(group_id) {
                apply_offsets(entry, batch, log_offset);
            }
        }
        Ok(results)
    }
}

/// What DescribeGroups reports of a group.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// Group id.
    pub group_id: String,
    /// Kafka state name.
    pub state: &'static str,
    /// Protocol type ("consumer" for consumer groups).
    pub protocol_type: String,
    /// Selected protocol (assignor), when Stable or CompletingRebalance.
    pub protocol: String,
    /// (member id, instance id, client id, client host, metadata, assignment).
    pub members: Vec<(String, Option<String>, String, String, Bytes, Bytes)>,
}

impl GroupView {
    fn of(group: &Group) -> GroupView {
        let protocol = group.protocol_name().unwrap_or_default().to_string();
        GroupView {
            group_id: group.group_id().to_string(),
            state: group.state().name(),
            protocol_type: group.protocol_type().unwrap_or_default().to_string(),
            protocol: protocol.clone(),
            members: group
                .members()
                .map(|m| {
                    (
                        m.member_id.clone(),
                        m.group_instance_id.clone(),
                        m.client_id.clone(),
                        m.client_host.clone(),
                        m.metadata(&protocol).cloned().unwrap_or_default(),
                        m.assignment.clone(),
                    )
                })
                .collect(),
        }
    }

    fn dead(group_id: &str) -> GroupView {
        GroupView {
            group_id: group_id.to_string(),
            state: GroupState::Dead.name(),
            protocol_type: String::new(),
            protocol: String::new(),
            members: Vec::new(),
        }
    }
}

/// Topics the members of a consumer group subscribe to (from their protocol metadata).
fn subscribed_topics(group: &Group) -> Vec<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    if group.protocol_type() != Some("consumer") || group.members().count() == 0 {
        return Vec::new();
    }
    let protocol = group.protocol_name().unwrap_or_default().to_string();
    let mut topics = Vec::new();
    for m in group.members() {
        let Some(mut meta) = m.metadata(&protocol).cloned() else {
            continue;
        };
        if meta.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([meta[0], meta[1]]);
        let _ = bytes::Buf::get_i16(&mut meta);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut meta, version.clamp(0, 3)) {
            topics.extend(sub.topics.into_iter().map(|t| t.to_string()));
        }
    }
    topics
}

/// Applies offset records written at `log_offset` (the batch's last record): a value
/// set by a later record is kept, so concurrent commits end as the log orders them.
fn apply_offsets(entry: &mut GroupEntry, batch: Vec<OffsetsRecord>, log_offset: i64) {
    for r in batch {
        if let OffsetsRecord::Offset {
            topic,
            partition,
            value,
            ..
        } = r
        {
            let key = (topic, partition);
            if entry
                .offsets
                .get(&key)
                .is_some_and(|(_, at)| *at > log_offset)
            {
                continue;
            }
            match value {
                Some(v) => {
                    entry.offsets.insert(key, (v, log_offset));
                }
                None => {
                    entry.offsets.remove(&key);
                }
            }
        }
    }
}

/// The write of a group's metadata; it is marked persisted only once committed (a later
/// tick writes it again otherwise).
fn metadata_write(
    group_id: String,
    snapshot: GroupSnapshot,
    fingerprint: u64,
) -> TimerWrite<GroupShard> {
    TimerWrite {
        records: vec![OffsetsRecord::Group {
            group: group_id.clone(),
            value: Some(snapshot),
        }],
        then: Box::new(move |shard: &mut GroupShard, written| {
            mark_persisted(shard, &group_id, fingerprint, written)
        }),
    }
}

fn mark_persisted(
    shard: &mut GroupShard,
    group_id: &str,
    fingerprint: u64,
    written: Result<i64, ErrorCode>,
) {
    match written {
        Ok(_) => {
            if let Some(entry) = shard.groups.get_mut(group_id) {
                entry.persisted = Some(fingerprint);
            }
        }
        Err(code) => {
            tracing::warn!(
                group = group_id,
                code = code.code(),
                "group metadata not stored yet; retrying"
            );
        }
    }
}

/// Writes a group's metadata now (a request waits for it).
async fn persist_metadata(
    shard: &ShardHandle<GroupShard>,
    group_id: &str,
    snapshot: GroupSnapshot,
    fingerprint: u64,
) {
    let w = metadata_write(group_id.to_string(), snapshot, fingerprint);
    let written = shard.write(w.records).await;
    if let Ok(mut state) = shard.live() {
        (w.then)(&mut state, written);
    }
}

/// Tombstones for a group's offsets (those committed before `older_than`, or all) and,
/// with `group`, its metadata.
fn tombstones(
    group_id: &str,
    entry: &GroupEntry,
    older_than: Option<i64>,
    group: bool,
) -> Vec<OffsetsRecord> {
    let mut out: Vec<OffsetsRecord> = entry
        .offsets
        .iter()
        .filter(|(_, (c, _))| older_than.is_none_or(|t| c.commit_timestamp < t))
        .map(|((topic, partition), _)| OffsetsRecord::Offset {
            group: group_id.to_string(),
            topic: topic.clone(),
            partition: *partition,
            value: None,
        })
        .collect();
    if group {
        out.push(OffsetsRecord::Group {
            group: group_id.to_string(),
            value: None,
        });
    }
    out
}

async fn wait<T>(rx: oneshot::Receiver<T>, max_wait: Duration) -> CoordinatorResult<T> {
    match tokio::time::timeout(max_wait, rx).await {
        Ok(Ok(response)) => Ok(response),
        // The shard went away (leadership moved) or a newer request replaced this one.
        Ok(Err(_)) => Err(ErrorCode::NotCoordinator.code()),
        Err(_) => Err(ErrorCode::CoordinatorNotAvailable.code()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_follows_kafkas_hash() {
        // Java: "my-group".hashCode() == -1906497762; (h & 0x7fffffff) % 50 == 36.
        assert_eq!(partition_for("my-group", 50), 36);
        // Negative hash codes are masked, not negated (Kafka's Utils.abs).
        let h = partition_for("ÿÿÿÿÿÿÿÿ", 7);
        assert!((0..7).contains(&h));
        assert_eq!(partition_for("g", 1), 0);
    }
}

#[cfg(test)]
#[path = "shard_tests.rs"]
mod shard_tests;
