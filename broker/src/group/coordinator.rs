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
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};

use super::records::{self, CommittedOffset, OffsetsRecord};
use super::{
    Delivery, ErrorCode, Group, GroupConfig, GroupSnapshot, GroupState, JoinRequest, JoinResponse,
    SyncResponse,
};
use crate::clock::now_ms;
use crate::error::BrokerError;
use crate::partition::{Partition, RoleChange};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a committed write may take before the request is answered with an error.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);
/// How often group timers (session expiry, rebalance timeouts) are checked.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read per step when loading a shard.
const LOAD_CHUNK: usize = 8 * 1024 * 1024;

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

struct ShardState {
    loaded: bool,
    /// Set once leadership moved: every operation then answers NOT_COORDINATOR.
    resigned: bool,
    groups: HashMap<String, GroupEntry>,
}

impl ShardState {
    /// The group `id`, created (Empty) when unknown.
    fn group(&mut self, id: &str, config: &GroupConfig) -> &mut GroupEntry {
        self.groups
            .entry(id.to_string())
            .or_insert_with(|| GroupEntry::new(Group::new(id.to_string(), config.clone())))
    }
}

/// The groups of one `__consumer_offsets` partition this broker leads.
struct Shard {
    partition: Arc<Partition>,
    leader_epoch: i32,
    state: Mutex<ShardState>,
    stop: watch::Sender<bool>,
}

impl Shard {
    /// The state, unless this shard resigned.
    fn live(&self) -> Result<parking_lot::MutexGuard<'_, ShardState>, i16> {
        let state = self.state.lock();
        if state.resigned {
            return Err(ErrorCode::NotCoordinator.code());
        }
        Ok(state)
    }

    /// Appends `batch` in this shard's leader epoch and waits until it is committed;
    /// returns the log offset of its last record.
    async fn write(&self, batch: Vec<OffsetsRecord>) -> Result<i64, i16> {
        if batch.is_empty() {
            return Ok(-1);
        }
        let bytes = records::encode(&batch, now_ms()).map_err(|e| {
            tracing::error!(error = %e, "cannot encode offsets records");
            ErrorCode::CoordinatorNotAvailable.code()
        })?;
        let min_insync = self.partition.settings().min_insync_replicas.max(1) as usize;
        let written = async {
            let info = self.partition.append_in_epoch(
                &bytes,
                Some(min_insync),
                self.leader_epoch,
                now_ms(),
            )?;
            self.partition
                .wait_high_watermark(info.last_offset + 1, self.leader_epoch, min_insync)
                .await
                .map(|()| info.last_offset)
        };
        match tokio::time::timeout(WRITE_TIMEOUT, written).await {
            Ok(Ok(offset)) => Ok(offset),
            Ok(Err(e)) => {
                tracing::warn!(partition = %self.partition.tp, error = %e, "offsets write failed");
                Err(match e {
                    BrokerError::NotLeaderOrFollower(_) | BrokerError::StorageOffline(_) => {
                        ErrorCode::NotCoordinator.code()
                    }
                    _ => ErrorCode::CoordinatorNotAvailable.code(),
                })
            }
            Err(_) => Err(ErrorCode::CoordinatorNotAvailable.code()),
        }
    }
}

/// Every shard this broker coordinates.
pub struct GroupCoordinator {
    shards: Mutex<HashMap<i32, Arc<Shard>>>,
    config: GroupConfig,
    /// `offsets.retention.minutes`: offsets of an empty group older than this expire.
    offsets_retention_ms: i64,
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
        GroupCoordinator {
            shards: Mutex::new(HashMap::new()),
            config,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
        }
    }

    /// Reacts to role changes of `__consumer_offsets` partitions: load a shard on
    /// becoming leader, drop it (answering waiting requests NOT_COORDINATOR) otherwise.
    pub fn on_role_changes(&self, changes: &[(Arc<Partition>, RoleChange)]) {
        for (partition, change) in changes {
            if partition.tp.topic != OFFSETS_TOPIC {
                continue;
            }
            let index = partition.tp.partition;
            if let Some(old) = self.shards.lock().remove(&index) {
                old.resign();
            }
            if *change == RoleChange::Leading {
                let shard = Arc::new(Shard {
                    partition: partition.clone(),
                    leader_epoch: partition.leader_state().leader_epoch,
                    state: Mutex::new(ShardState {
                        loaded: false,
                        resigned: false,
                        groups: HashMap::new(),
                    }),
                    stop: watch::channel(false).0,
                });
                self.shards.lock().insert(index, shard.clone());
                tokio::spawn(load_and_run(
                    shard,
                    self.config.clone(),
                    self.offsets_retention_ms,
                ));
            }
        }
    }

    /// Drops every shard (shutdown).
    pub fn resign_all(&self) {
        for (_, shard) in self.shards.lock().drain() {
            shard.resign();
        }
    }

    /// The shard that owns `group`, if loaded here.
    fn shard(&self, group: &str, partitions: i32) -> CoordinatorResult<Arc<Shard>> {
        if group.is_empty() {
            return Err(ErrorCode::InvalidGroupId.code());
        }
        let index = partition_for(group, partitions);
        let shard = self
            .shards
            .lock()
            .get(&index)
            .cloned()
            .ok_or(ErrorCode::NotCoordinator.code())?;
        if !shard.live()?.loaded {
            return Err(ErrorCode::CoordinatorLoadInProgress.code());
        }
        Ok(shard)
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
            let mut state = shard.live()?;
            let entry = state.group(group_id, &self.config);
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
            let mut state = shard.live()?;
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
        let mut state = shard.live()?;
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
            let mut state = shard.live()?;
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
            let mut state = shard.live()?;
            let entry = state.group(group_id, &self.config);
            commit_allowed(&entry.group, member_id, group_instance_id, generation_id)
        };
        if let Err(e) = group_check {
            return Ok(vec![e.code(); offsets.len()]);
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
        let written = shard.write(batch.clone()).await;
        match written {
            Ok(log_offset) => {
                let mut state = shard.state.lock();
                let entry = state.group(group_id, &self.config);
                apply_offsets(entry, batch, log_offset);
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
        let state = shard.live()?;
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
        let state = shard.live()?;
        Ok(match state.groups.get(group_id) {
            Some(entry) => GroupView::of(&entry.group),
            None => GroupView::dead(group_id),
        })
    }

    /// Every committed offset of every group loaded here: (group, topic, partition,
    /// offset), for the consumer-lag metric.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let shards: Vec<Arc<Shard>> = self.shards.lock().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards {
            let state = shard.state.lock();
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
        let shards: Vec<Arc<Shard>> = self.shards.lock().values().cloned().collect();
        let mut out = Vec::new();
        for shard in shards {
            let state = shard.state.lock();
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
            let mut state = shard.live()?;
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
        match shard.write(batch).await {
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
            let state = shard.live()?;
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
        let log_offset = shard.write(batch.clone()).await?;
        let mut state = shard.state.lock();
        if let Some(entry) = state.groups.get_mut(group_id) {
            apply_offsets(entry, batch, log_offset);
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

/// Kafka's OffsetCommit membership rules.
fn commit_allowed(
    group: &Group,
    member_id: &str,
    group_instance_id: Option<&str>,
    generation_id: i32,
) -> Result<(), ErrorCode> {
    if generation_id < 0 && member_id.is_empty() {
        // A commit from outside the group (admin tools, manual assignment).
        return if group.members().count() == 0 {
            Ok(())
        } else {
            Err(ErrorCode::UnknownMemberId)
        };
    }
    let Some(member) = group.member(member_id) else {
        return Err(ErrorCode::UnknownMemberId);
    };
    if group_instance_id.is_some() && member.group_instance_id.as_deref() != group_instance_id {
        return Err(ErrorCode::FencedInstanceId);
    }
    if group.state() == GroupState::CompletingRebalance {
        return Err(ErrorCode::RebalanceInProgress);
    }
    if generation_id != group.generation_id() {
        return Err(ErrorCode::IllegalGeneration);
    }
    Ok(())
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

/// Writes a group's metadata; marks it persisted only once committed (the timer task
/// retries otherwise).
async fn persist_metadata(
    shard: &Shard,
    group_id: &str,
    snapshot: GroupSnapshot,
    fingerprint: u64,
) {
    let record = OffsetsRecord::Group {
        group: group_id.to_string(),
        value: Some(snapshot),
    };
    match shard.write(vec![record]).await {
        Ok(_) => {
            if let Some(entry) = shard.state.lock().groups.get_mut(group_id) {
                entry.persisted = Some(fingerprint);
            }
        }
        Err(code) => {
            tracing::warn!(
                group = group_id,
                code,
                "group metadata not stored yet; retrying"
            );
        }
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

impl Shard {
    /// Leadership moved: answer every waiting request and stop the timers.
    fn resign(&self) {
        // send_replace: stored even when the timer task has not subscribed yet.
        self.stop.send_replace(true);
        let mut state = self.state.lock();
        state.resigned = true;
        for (_, mut entry) in state.groups.drain() {
            let deliveries = entry.group.shut_down();
            entry.deliver(deliveries);
        }
        state.loaded = false;
        tracing::info!(partition = %self.partition.tp, "no longer coordinating its groups");
    }
}

/// Loads the shard from its partition (retrying on read errors), then runs its timers
/// until it is dropped.
async fn load_and_run(shard: Arc<Shard>, config: GroupConfig, retention_ms: i64) {
    let mut stop = shard.stop.subscribe();
    let (snapshots, offsets) = loop {
        if *stop.borrow() {
            return;
        }
        let partition = shard.partition.clone();
        match tokio::task::spawn_blocking(move || load(&partition)).await {
            Ok(Ok(loaded)) => break loaded,
            Ok(Err(e)) => {
                tracing::error!(partition = %shard.partition.tp, error = %e, "loading groups failed; retrying")
            }
            Err(e) => {
                tracing::error!(partition = %shard.partition.tp, error = %e, "loading groups failed; retrying")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    };
    {
        let now = now_ms();
        let mut state = shard.state.lock();
        if state.resigned {
            return;
        }
        for (id, snapshot) in snapshots {
            let mut entry = GroupEntry::new(Group::from_snapshot(snapshot, config.clone(), now));
            entry.persisted = Some(entry.fingerprint());
            state.groups.insert(id, entry);
        }
        for ((group, topic, partition), value) in offsets {
            let entry = state.group(&group, &config);
            entry.offsets.insert((topic, partition), value);
        }
        state.loaded = true;
        tracing::info!(partition = %shard.partition.tp, groups = state.groups.len(), "coordinating groups");
    }
    let mut ticker = tokio::time::interval(TICK);
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        let now = now_ms();
        let mut metadata = Vec::new();
        let mut expired = Vec::new();
        {
            let mut state = shard.state.lock();
            for (id, entry) in state.groups.iter_mut() {
                let due = entry.group.next_deadline().is_some_and(|d| d <= now);
                if due {
                    let deliveries = entry.group.tick(now);
                    entry.deliver(deliveries);
                }
                if let Some((snapshot, fingerprint)) = entry.metadata_to_persist() {
                    metadata.push((id.clone(), snapshot, fingerprint));
                }
                // Offsets expire once the group has been empty for the retention time
                // (KIP-211), and are themselves older than it.
                if entry.group.state() == GroupState::Empty {
                    let since = *entry.empty_since.get_or_insert(now);
                    if now - since >= retention_ms {
                        expired.extend(tombstones(id, entry, Some(now - retention_ms), false));
                    }
                } else {
                    entry.empty_since = None;
                }
            }
        }
        // Writes never hold up the timers: at most one batch of them at a time.
        if (metadata.is_empty() && expired.is_empty())
            || writing.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            continue;
        }
        let (shard, writing) = (shard.clone(), writing.clone());
        tokio::spawn(async move {
            for (id, snapshot, fingerprint) in metadata {
                persist_metadata(&shard, &id, snapshot, fingerprint).await;
            }
            if !expired.is_empty() {
                if let Ok(at) = shard.write(expired.clone()).await {
                    let mut state = shard.state.lock();
                    for r in expired {
                        if let OffsetsRecord::Offset { ref group, .. } = r {
                            if let Some(entry) = state.groups.get_mut(group) {
                                apply_offsets(entry, vec![r.clone()], at);
                            }
                        }
                    }
                }
            }
            writing.store(false, std::sync::atomic::Ordering::SeqCst);
        });
    }
}

type Loaded = (
    HashMap<String, GroupSnapshot>,
    BTreeMap<(String, String, i32), (CommittedOffset, i64)>,
);

/// Replays the partition from its log start to its end.
fn load(partition: &Partition) -> Result<Loaded, BrokerError> {
    let mut groups = HashMap::new();
    let mut offsets = BTreeMap::new();
    let mut next = partition.log_start_offset();
    let end = partition.log_end_offset();
    let mut skipped = 0;
    while next < end {
        let chunk = partition.with_log(|log| log.read(next, LOAD_CHUNK, end, true))?;
        let headers: Vec<_> = spate_log::batch::batches(&chunk)
            .map_while(|v| v.ok().map(|v| *v.header()))
            .collect();
        let Some(last) = headers.last() else { break };
        let at = last.last_offset();
        next = at + 1;
        let (decoded, bad) = records::decode(chunk);
        skipped += bad;
        for r in decoded {
            match r {
                OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                } => match value {
                    Some(v) => {
                        offsets.insert((group, topic, partition), (v, at));
                    }
                    None => {
                        offsets.remove(&(group, topic, partition));
                    }
                },
                OffsetsRecord::Group { group, value } => match value {
                    Some(snapshot) => {
                        groups.insert(group, snapshot);
                    }
                    None => {
                        groups.remove(&group);
                        offsets.retain(|(g, _, _), _| *g != group);
                    }
                },
            }
        }
    }
    if skipped > 0 {
        tracing::warn!(partition = %partition.tp, skipped, "offsets records that did not decode were skipped");
    }
    Ok((groups, offsets))
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
